//! C API (feature `capi`): run `.mote` models from C, with no heap.
//!
//! The caller owns every byte: the model (16-byte aligned, e.g. in flash), the arena
//! ([`mote_arena_bytes`] bytes, 16-byte aligned) and the session handle's storage
//! ([`MOTE_SESSION_BYTES`] bytes, aligned to [`MOTE_SESSION_ALIGN`]). A session is an opaque
//! pointer into that storage; all three must outlive it. Every function returns a [`MoteStatus`]
//! (or a count) and never panics or unwinds across the boundary.
//!
//! ```c
//! #include "mote.h"
//! static uint8_t arena[MODEL_ARENA] __attribute__((aligned(16)));
//! static uint8_t storage[MOTE_SESSION_BYTES] __attribute__((aligned(MOTE_SESSION_ALIGN)));
//! MoteSession *s;
//! if (mote_session_init(storage, sizeof storage, model, model_len, arena, sizeof arena, &s) != MOTE_OK) ...
//! mote_set_input(s, 0, features, sizeof features);
//! mote_invoke(s);
//! mote_get_output(s, 0, scores, sizeof scores);
//! ```
//!
//! The header `runtime/include/mote.h` is generated from this file by cbindgen
//! (`runtime/cbindgen.toml`); a test checks that the committed header is current.
#![allow(unsafe_code)]

use core::ffi::{c_char, c_void};
use core::mem::{align_of, size_of};

use crate::error::Error;
use crate::format::MAX_RANK;
use crate::{Interpreter, Model};

/// Bytes of storage a session handle needs (at least; checked at compile time).
pub const MOTE_SESSION_BYTES: usize = 256;
/// Alignment the session storage needs.
pub const MOTE_SESSION_ALIGN: usize = 16;
/// Alignment the model bytes and the arena need.
pub const MOTE_ALIGN: usize = 16;
/// The most dimensions a tensor has.
pub const MOTE_MAX_RANK: usize = 6;

/// Result of every C API call.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoteStatus {
    /// Success.
    MoteOk = 0,
    /// A required pointer argument was NULL.
    MoteErrNull = 1,
    /// The model bytes are not a valid `.mote` file (truncated, corrupted, unsupported).
    MoteErrInvalidModel = 2,
    /// The model, arena or session storage is not aligned as required.
    MoteErrMisaligned = 3,
    /// The arena is smaller than the model needs.
    MoteErrArenaTooSmall = 4,
    /// The session storage is smaller than `MOTE_SESSION_BYTES`.
    MoteErrStorageTooSmall = 5,
    /// No input or output with that index.
    MoteErrNoSuchTensor = 6,
    /// A buffer's length does not match the tensor's size in bytes.
    MoteErrWrongSize = 7,
    /// The model uses an operator this runtime build does not include.
    MoteErrUnsupportedOp = 8,
    /// A profile buffer holds fewer entries than the model has operators.
    MoteErrProfileTooSmall = 9,
    /// Any other failure while running the model.
    MoteErrInvoke = 10,
}

impl From<Error> for MoteStatus {
    fn from(e: Error) -> Self {
        match e {
            Error::Truncated { .. }
            | Error::BadMagic
            | Error::UnsupportedVersion { .. }
            | Error::BadChecksum { .. }
            | Error::OutOfBounds { .. }
            | Error::InvalidField { .. }
            | Error::ShapeMismatch { .. } => MoteStatus::MoteErrInvalidModel,
            Error::UnsupportedOp { .. } => MoteStatus::MoteErrUnsupportedOp,
            Error::Misaligned { .. } => MoteStatus::MoteErrMisaligned,
            Error::ArenaTooSmall { .. } => MoteStatus::MoteErrArenaTooSmall,
            Error::NoSuchTensor { .. } => MoteStatus::MoteErrNoSuchTensor,
            Error::WrongSize { .. } | Error::WrongDType { .. } => MoteStatus::MoteErrWrongSize,
            Error::ProfileTooSmall { .. } => MoteStatus::MoteErrProfileTooSmall,
        }
    }
}

/// Shape, type and quantization of one input or output tensor.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct MoteTensorInfo {
    /// Element type: 1 = int8, 2 = uint8, 3 = int16, 4 = int32, 5 = float32 (the `.mote` codes).
    pub dtype: u32,
    /// Number of dimensions.
    pub rank: u32,
    /// Dimensions; entries past `rank` are 0.
    pub dims: [u32; MOTE_MAX_RANK],
    /// Size in bytes.
    pub bytes: usize,
    /// Quantization scale (0 when not quantized).
    pub scale: f32,
    /// Quantization zero point.
    pub zero_point: i32,
}

/// A model bound to its arena: the opaque handle the C API works on.
pub struct MoteSession {
    model: Model<'static>,
    arena: *mut u8,
    arena_len: usize,
}

const _: () = assert!(size_of::<MoteSession>() <= MOTE_SESSION_BYTES);
const _: () = assert!(align_of::<MoteSession>() <= MOTE_SESSION_ALIGN);
const _: () = assert!(MAX_RANK == MOTE_MAX_RANK);

impl MoteSession {
    fn interpreter(&mut self) -> Result<Interpreter<'_, '_>, Error> {
        // SAFETY: `arena` and `arena_len` come from the caller of `mote_session_init`, who keeps
        // the arena alive and unaliased for the session's lifetime (the documented contract);
        // the `&mut self` borrow makes this the only live slice over it.
        let arena = unsafe { core::slice::from_raw_parts_mut(self.arena, self.arena_len) };
        Interpreter::new(&self.model, arena)
    }
}

/// Borrows `len` bytes at `ptr` for the C caller's stated lifetime, or `None` when `ptr` is NULL.
///
/// # Safety
/// `ptr` must be NULL or point to `len` readable bytes that stay valid and unmodified for `'a`.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-null, and the caller guarantees `len` valid bytes for `'a`.
    Some(unsafe { core::slice::from_raw_parts(ptr, len) })
}

/// Turns a session pointer back into a reference, or `None` for NULL.
///
/// # Safety
/// `s` must be NULL or a pointer returned by [`mote_session_init`] whose storage is still alive.
unsafe fn session<'a>(s: *mut MoteSession) -> Option<&'a mut MoteSession> {
    // SAFETY: the caller passes a pointer `mote_session_init` wrote, to a live `MoteSession`.
    unsafe { s.as_mut() }
}

/// Validates `model` (`model_len` bytes, 16-byte aligned) and writes the arena bytes it needs to
/// `*arena_bytes`.
///
/// # Safety
/// `model` must point to `model_len` readable bytes; `arena_bytes` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mote_arena_bytes(
    model: *const u8,
    model_len: usize,
    arena_bytes: *mut usize,
) -> MoteStatus {
    // SAFETY: the caller guarantees `model_len` readable bytes at `model`.
    let Some(bytes) = (unsafe { bytes(model, model_len) }) else {
        return MoteStatus::MoteErrNull;
    };
    if arena_bytes.is_null() {
        return MoteStatus::MoteErrNull;
    }
    match Model::from_bytes(bytes) {
        Ok(m) => {
            // SAFETY: non-null and writable (caller contract).
            unsafe { arena_bytes.write(m.arena_bytes()) };
            MoteStatus::MoteOk
        }
        Err(e) => e.into(),
    }
}

/// Validates the model and binds it to the arena, building the session in `storage`
/// (`storage_len ≥ MOTE_SESSION_BYTES`, aligned to `MOTE_SESSION_ALIGN`); writes the handle to
/// `*session`.
///
/// # Safety
/// `storage`, `model` and `arena` must point to `storage_len`, `model_len` and `arena_len` valid
/// bytes that outlive the session; the arena and the storage must not be used otherwise while the
/// session lives; `session` must be writable.
#[no_mangle]
pub unsafe extern "C" fn mote_session_init(
    storage: *mut c_void,
    storage_len: usize,
    model: *const u8,
    model_len: usize,
    arena: *mut u8,
    arena_len: usize,
    session: *mut *mut MoteSession,
) -> MoteStatus {
    if storage.is_null() || arena.is_null() || session.is_null() {
        return MoteStatus::MoteErrNull;
    }
    if storage_len < size_of::<MoteSession>() {
        return MoteStatus::MoteErrStorageTooSmall;
    }
    if (storage as usize) % align_of::<MoteSession>() != 0 {
        return MoteStatus::MoteErrMisaligned;
    }
    // SAFETY: the caller guarantees the model bytes stay valid for the session's lifetime, which
    // the C contract stands in for 'static.
    let Some(bytes) = (unsafe { bytes::<'static>(model, model_len) }) else {
        return MoteStatus::MoteErrNull;
    };
    let model = match Model::from_bytes(bytes) {
        Ok(m) => m,
        Err(e) => return e.into(),
    };
    let mut s = MoteSession {
        model,
        arena,
        arena_len,
    };
    if let Err(e) = s.interpreter() {
        return e.into();
    }
    let slot = storage.cast::<MoteSession>();
    // SAFETY: `slot` is non-null, aligned for MoteSession (checked) and has room for it
    // (checked); the caller gives up the storage to the session.
    unsafe {
        slot.write(s);
        session.write(slot);
    }
    MoteStatus::MoteOk
}

/// Number of model inputs (0 for a NULL session).
///
/// # Safety
/// `s` must be NULL or a live session.
#[no_mangle]
pub unsafe extern "C" fn mote_input_count(s: *mut MoteSession) -> usize {
    // SAFETY: NULL or live (caller contract).
    unsafe { session(s) }.map_or(0, |s| s.model.input_count())
}

/// Number of model outputs (0 for a NULL session).
///
/// # Safety
/// `s` must be NULL or a live session.
#[no_mangle]
pub unsafe extern "C" fn mote_output_count(s: *mut MoteSession) -> usize {
    // SAFETY: NULL or live (caller contract).
    unsafe { session(s) }.map_or(0, |s| s.model.output_count())
}

/// Number of operators the model runs (0 for a NULL session).
///
/// # Safety
/// `s` must be NULL or a live session.
#[no_mangle]
pub unsafe extern "C" fn mote_op_count(s: *mut MoteSession) -> usize {
    // SAFETY: NULL or live (caller contract).
    unsafe { session(s) }.map_or(0, |s| s.model.ops().len())
}

fn info(d: &crate::format::TensorDesc) -> MoteTensorInfo {
    MoteTensorInfo {
        dtype: u32::from(d.dtype),
        rank: u32::from(d.rank),
        dims: d.shape,
        bytes: d.bytes as usize,
        scale: d.scale,
        zero_point: d.zero_point,
    }
}

/// Writes the description of input (`output == 0`) or output (`output != 0`) `index` to `*out`.
///
/// # Safety
/// `s` must be NULL or a live session; `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mote_tensor_info(
    s: *mut MoteSession,
    output: i32,
    index: usize,
    out: *mut MoteTensorInfo,
) -> MoteStatus {
    // SAFETY: NULL or live (caller contract).
    let Some(s) = (unsafe { session(s) }) else {
        return MoteStatus::MoteErrNull;
    };
    if out.is_null() {
        return MoteStatus::MoteErrNull;
    }
    let d = if output != 0 {
        s.model.output(index)
    } else {
        s.model.input(index)
    };
    let Some(d) = d else {
        return MoteStatus::MoteErrNoSuchTensor;
    };
    // SAFETY: non-null and writable (caller contract).
    unsafe { out.write(info(d)) };
    MoteStatus::MoteOk
}

/// Copies `len` bytes (exactly the tensor's size) from `data` into input `index`.
///
/// # Safety
/// `s` must be NULL or a live session; `data` must point to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn mote_set_input(
    s: *mut MoteSession,
    index: usize,
    data: *const u8,
    len: usize,
) -> MoteStatus {
    // SAFETY: NULL or live; `len` readable bytes at `data` (caller contract).
    let (Some(s), Some(data)) = (unsafe { session(s) }, unsafe { bytes(data, len) }) else {
        return MoteStatus::MoteErrNull;
    };
    match s
        .interpreter()
        .and_then(|mut i| i.set_input_bytes(index, data))
    {
        Ok(()) => MoteStatus::MoteOk,
        Err(e) => e.into(),
    }
}

/// Writes a pointer to the bytes of input `index` inside the arena to `*data` and its length to
/// `*len`, for filling in place before [`mote_invoke`].
///
/// # Safety
/// `s` must be NULL or a live session; `data` and `len` must be writable. The pointer is valid
/// while the session lives.
#[no_mangle]
pub unsafe extern "C" fn mote_input_buffer(
    s: *mut MoteSession,
    index: usize,
    data: *mut *mut u8,
    len: *mut usize,
) -> MoteStatus {
    // SAFETY: NULL or live (caller contract).
    let Some(s) = (unsafe { session(s) }) else {
        return MoteStatus::MoteErrNull;
    };
    if data.is_null() || len.is_null() {
        return MoteStatus::MoteErrNull;
    }
    let mut interp = match s.interpreter() {
        Ok(i) => i,
        Err(e) => return e.into(),
    };
    match interp.input_bytes_mut(index) {
        Ok(b) => {
            // SAFETY: both are non-null and writable (caller contract).
            unsafe {
                data.write(b.as_mut_ptr());
                len.write(b.len());
            }
            MoteStatus::MoteOk
        }
        Err(e) => e.into(),
    }
}

/// Runs the model once on the current inputs.
///
/// # Safety
/// `s` must be NULL or a live session.
#[no_mangle]
pub unsafe extern "C" fn mote_invoke(s: *mut MoteSession) -> MoteStatus {
    // SAFETY: NULL or live (caller contract).
    let Some(s) = (unsafe { session(s) }) else {
        return MoteStatus::MoteErrNull;
    };
    match s.interpreter().and_then(|mut i| i.invoke()) {
        Ok(()) => MoteStatus::MoteOk,
        Err(e) => e.into(),
    }
}

/// A caller-supplied monotonic clock for [`mote_invoke_profiled`]: returns ticks (cycles,
/// nanoseconds, ...) from any fixed origin.
pub type MoteClockFn = Option<unsafe extern "C" fn(ctx: *mut c_void) -> u64>;

/// Runs the model once, operator by operator, and writes each operator's elapsed ticks of
/// `clock` to `op_ticks[i]` (`op_ticks_len ≥ mote_op_count`).
///
/// # Safety
/// `s` must be NULL or a live session; `clock` must be safe to call with `clock_ctx`;
/// `op_ticks` must point to `op_ticks_len` writable `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn mote_invoke_profiled(
    s: *mut MoteSession,
    clock: MoteClockFn,
    clock_ctx: *mut c_void,
    op_ticks: *mut u64,
    op_ticks_len: usize,
) -> MoteStatus {
    // SAFETY: NULL or live (caller contract).
    let Some(s) = (unsafe { session(s) }) else {
        return MoteStatus::MoteErrNull;
    };
    let Some(clock) = clock else {
        return MoteStatus::MoteErrNull;
    };
    if op_ticks.is_null() {
        return MoteStatus::MoteErrNull;
    }
    let ops = s.model.ops().len();
    if op_ticks_len < ops {
        return MoteStatus::MoteErrProfileTooSmall;
    }
    // SAFETY: `op_ticks_len` writable entries (caller contract).
    let ticks = unsafe { core::slice::from_raw_parts_mut(op_ticks, op_ticks_len) };
    let mut interp = match s.interpreter() {
        Ok(i) => i,
        Err(e) => return e.into(),
    };
    for (i, t) in ticks.iter_mut().enumerate().take(ops) {
        // SAFETY: the caller guarantees `clock` may be called with `clock_ctx`.
        let start = unsafe { clock(clock_ctx) };
        if let Err(e) = interp.invoke_op(i) {
            return e.into();
        }
        // SAFETY: as above.
        let end = unsafe { clock(clock_ctx) };
        *t = end.wrapping_sub(start);
    }
    MoteStatus::MoteOk
}

/// Copies output `index` (exactly `len` bytes, the tensor's size) to `data`.
///
/// # Safety
/// `s` must be NULL or a live session; `data` must point to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn mote_get_output(
    s: *mut MoteSession,
    index: usize,
    data: *mut u8,
    len: usize,
) -> MoteStatus {
    // SAFETY: NULL or live (caller contract).
    let Some(s) = (unsafe { session(s) }) else {
        return MoteStatus::MoteErrNull;
    };
    if data.is_null() {
        return MoteStatus::MoteErrNull;
    }
    let interp = match s.interpreter() {
        Ok(i) => i,
        Err(e) => return e.into(),
    };
    match interp.output_bytes(index) {
        Ok(b) if b.len() == len => {
            // SAFETY: `len` writable bytes at `data` (caller contract), disjoint from the arena
            // slice we read (the caller may not pass arena memory while the session lives).
            unsafe { core::ptr::copy_nonoverlapping(b.as_ptr(), data, len) };
            MoteStatus::MoteOk
        }
        Ok(_) => MoteStatus::MoteErrWrongSize,
        Err(e) => e.into(),
    }
}

/// The operator name (TFLite builtin, e.g. `"CONV_2D"`) of op `index`, or NULL.
///
/// # Safety
/// `s` must be NULL or a live session.
#[no_mangle]
pub unsafe extern "C" fn mote_op_name(s: *mut MoteSession, index: usize) -> *const c_char {
    // SAFETY: NULL or live (caller contract).
    let Some(s) = (unsafe { session(s) }) else {
        return core::ptr::null();
    };
    match s.model.op_kind(index) {
        Some(k) => op_name_c(k).as_ptr(),
        None => core::ptr::null(),
    }
}

/// A NUL-terminated, static description of a [`MoteStatus`] value (any `int` is accepted).
#[no_mangle]
pub extern "C" fn mote_status_str(status: i32) -> *const c_char {
    let s: &'static core::ffi::CStr = match status {
        0 => c"ok",
        1 => c"a required pointer was NULL",
        2 => c"not a valid .mote model",
        3 => c"model, arena or session storage misaligned",
        4 => c"arena smaller than the model needs",
        5 => c"session storage smaller than MOTE_SESSION_BYTES",
        6 => c"no input or output with that index",
        7 => c"buffer length differs from the tensor's size",
        8 => c"operator not supported by this runtime",
        9 => c"profile buffer smaller than the op count",
        10 => c"inference failed",
        _ => c"unknown status",
    };
    s.as_ptr()
}

fn op_name_c(k: crate::OpKind) -> &'static core::ffi::CStr {
    use crate::OpKind::*;
    match k {
        Conv2d => c"CONV_2D",
        DepthwiseConv2d => c"DEPTHWISE_CONV_2D",
        FullyConnected => c"FULLY_CONNECTED",
        AveragePool2d => c"AVERAGE_POOL_2D",
        MaxPool2d => c"MAX_POOL_2D",
        Add => c"ADD",
        Sub => c"SUB",
        Mul => c"MUL",
        Reshape => c"RESHAPE",
        Squeeze => c"SQUEEZE",
        Softmax => c"SOFTMAX",
        Logistic => c"LOGISTIC",
        Tanh => c"TANH",
        Relu => c"RELU",
        Relu6 => c"RELU6",
        Quantize => c"QUANTIZE",
        Dequantize => c"DEQUANTIZE",
        Concatenation => c"CONCATENATION",
        Pad => c"PAD",
        Mean => c"MEAN",
        SparseConv2d => c"SPARSE_CONV_2D",
        SparseFullyConnected => c"SPARSE_FULLY_CONNECTED",
    }
}

/// The panic handler of the bare-metal static library (`libmote_runtime.a` for C firmware):
/// the runtime does not panic on its API paths, so reaching it is a bug; it parks the core.
#[cfg(all(target_os = "none", not(feature = "std"), not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn null_arguments_are_refused() {
        // SAFETY: NULL pointers are part of the contract and must be refused.
        unsafe {
            let mut n = 0usize;
            assert_eq!(
                mote_arena_bytes(core::ptr::null(), 0, &mut n),
                MoteStatus::MoteErrNull
            );
            assert_eq!(mote_invoke(core::ptr::null_mut()), MoteStatus::MoteErrNull);
            assert_eq!(mote_input_count(core::ptr::null_mut()), 0);
            assert!(mote_op_name(core::ptr::null_mut(), 0).is_null());
        }
    }

    #[test]
    fn c_op_names_are_the_rust_names() {
        // Two tables (a `&str` one for Rust, a `CStr` one here) so firmware that never calls the C
        // API links no UTF-8 validation; this keeps them from drifting apart.
        for k in crate::OpKind::ALL {
            assert_eq!(op_name_c(k).to_str(), Ok(k.name()), "{k:?}");
        }
    }

    #[test]
    fn garbage_model_is_an_error() {
        #[repr(align(16))]
        struct A([u8; 64]);
        let a = A([7; 64]);
        let mut n = 0usize;
        // SAFETY: valid pointer and length.
        let st = unsafe { mote_arena_bytes(a.0.as_ptr(), a.0.len(), &mut n) };
        assert_eq!(st, MoteStatus::MoteErrInvalidModel);
    }

    #[test]
    fn status_strings_are_nul_terminated() {
        // SAFETY: mote_status_str returns static C strings.
        let s =
            unsafe { core::ffi::CStr::from_ptr(mote_status_str(MoteStatus::MoteErrNull as i32)) };
        assert!(s.to_bytes().starts_with(b"a required"));
    }
}
