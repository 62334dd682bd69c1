//! Link-time proof that the runtime's load-and-run path cannot panic.
//!
//! The firmware loads a model with [`Model::from_bytes`], binds an arena with
//! [`Interpreter::new`], writes the inputs, runs [`Interpreter::invoke`] and reads the outputs.
//! The model bytes, the arena and the inputs are read through `read_volatile`, so the optimiser
//! knows nothing about them: every operator kernel (every family, int8, int16, packed int4 and
//! float; checked at compile time below) and every validation branch stays reachable. It also
//! calls every function of ahead-of-time code (`mote_runtime::aot`) on descriptors read the same
//! way.
//!
//! The `#[panic_handler]` calls `mote_panic_path_reachable`, a symbol that exists nowhere. If
//! any panic path (a bounds check, an `unwrap`, a division by zero, an overflow check of a
//! `checked` API) survives optimisation, the handler is referenced and **linking fails** with
//! `undefined symbol: mote_panic_path_reachable`, naming the function that still calls it.
//! Profile: the firmware workspace's `release` (opt-level 3, fat LTO, codegen-units 1,
//! panic = "abort").
//!
//! ```sh
//! cd examples/firmware
//! cargo build --release -p mote-nopanic --target thumbv7em-none-eabihf   # must link
//! cargo build --release -p mote-nopanic --target thumbv7em-none-eabihf \
//!     --features deliberate-panic                                        # must NOT link
//! ```
#![no_std]
#![no_main]

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use cortex_m_rt::entry;
use mote_runtime::{Interpreter, Model};

// The proof covers every kernel: this build links every operator family and the kernels for
// int16 tensors, packed int4 weights and float tensors (no `select-ops`).
const _: () = {
    use mote_runtime::ops::select;
    let mut i = 0;
    while i < mote_runtime::OpKind::ALL.len() {
        assert!(
            select::linked(mote_runtime::OpKind::ALL[i]),
            "an op family is not linked"
        );
        i += 1;
    }
    assert!(
        select::INT16 && select::INT4 && select::FLOAT,
        "a dtype's kernels are not linked"
    );
};

/// Model bytes: empty here; the optimiser cannot see that, since they are read volatile.
static MODEL: mote_runtime::AlignedModel<0> = mote_runtime::AlignedModel([]);
/// Where the model bytes are taken from (read volatile, so any address and length are possible).
static mut MODEL_BYTES: &[u8] = &MODEL.0;
/// Arena bytes: 4 KiB (the micro:bit has 16 KiB of RAM); its length is also hidden from the
/// optimiser.
static mut ARENA: mote_runtime::Arena<4096> = mote_runtime::Arena::new();
/// Sink for the outputs, so that no computation is dead.
static mut SINK: u8 = 0;

#[entry]
fn main() -> ! {
    // SAFETY: single-threaded bare metal; these statics are accessed only here, by value
    // (volatile reads of a fat pointer and a slice length) or through one `&mut`.
    let (model_bytes, arena) = unsafe {
        let bytes: &'static [u8] = read_volatile(addr_of!(MODEL_BYTES));
        let arena: &'static mut [u8] = &mut (*addr_of_mut!(ARENA)).0;
        let len = read_volatile(&arena.len()).min(arena.len());
        (bytes, &mut arena[..len])
    };
    let _ = run(model_bytes, arena);
    let _ = run_aot(arena);
    loop {
        core::hint::spin_loop();
    }
}

/// Loads, binds, fills every input, invokes and folds every output into [`SINK`].
fn run(bytes: &[u8], arena: &mut [u8]) -> Result<(), mote_runtime::Error> {
    let model = Model::from_bytes(bytes)?;
    let mut interp = Interpreter::new(&model, arena)?;
    for i in 0..model.input_count() {
        for b in interp.input_bytes_mut(i)?.iter_mut() {
            // SAFETY: a volatile read of a plain `u8` static.
            *b = unsafe { read_volatile(addr_of!(SINK)) };
        }
    }
    interp.invoke()?;
    let mut acc = 0u8;
    for i in 0..model.output_count() {
        for &b in interp.output_bytes(i)? {
            acc = acc.wrapping_add(b);
        }
    }
    #[cfg(feature = "deliberate-panic")]
    {
        // An index the optimiser cannot prove in bounds: its check must survive and fail the link.
        let k = usize::from(acc);
        acc = acc.wrapping_add(bytes[k]);
    }
    // SAFETY: a volatile write of a plain `u8` static.
    unsafe { write_volatile(addr_of_mut!(SINK), acc) };
    Ok(())
}

/// Descriptors of ahead-of-time ops (`mote_runtime::aot`), read through volatile loads so that
/// the optimiser sees none of their shapes, offsets or slices.
mod aot_ops {
    use mote_runtime::aot::{
        ArithOp, ConcatOp, FcOp, Operand, Place, PoolOp, QuantizeOp, ShapedOp, SoftmaxOp, UnaryOp,
        WindowOp,
    };

    const PLACE: Place = Place {
        op: 0,
        input: (0, 0),
        output: (0, 0),
    };
    pub static mut WINDOW: WindowOp<'static> = WindowOp {
        place: PLACE,
        params: &[],
        shapes: [[0; 4]; 3],
        filter: &[],
        bias: None,
        multipliers: &[],
        shifts: &[],
    };
    pub static mut FC: FcOp<'static> = FcOp {
        place: PLACE,
        params: &[],
        dims: [0; 3],
        weights: &[],
        bias: None,
        multipliers: &[],
        shifts: &[],
    };
    pub static mut POOL: PoolOp<'static> = PoolOp {
        place: PLACE,
        params: &[],
        average: true,
        shapes: [[0; 4]; 2],
    };
    pub static mut SOFTMAX: SoftmaxOp<'static> = SoftmaxOp {
        place: PLACE,
        params: &[],
        depth: 0,
    };
    pub static mut COPY: Place = PLACE;
    pub static mut ARITH: ArithOp<'static> = ArithOp {
        op: 0,
        params: &[],
        inputs: [Operand::Arena(0, 0), Operand::Const(&[])],
        output: (0, 0),
        shapes: [&[], &[], &[]],
    };
    pub static mut UNARY: UnaryOp<'static> = UnaryOp {
        place: PLACE,
        params: &[],
    };
    pub static mut SHAPED: ShapedOp<'static> = ShapedOp {
        place: PLACE,
        params: &[],
        dims: &[],
    };
    pub static mut QUANTIZE: QuantizeOp<'static> = QuantizeOp {
        place: PLACE,
        params: &[],
    };
    pub static mut CONCAT: ConcatOp<'static> = ConcatOp {
        op: 0,
        inputs: &[(Operand::Arena(0, 0), 0), (Operand::Const(&[]), 0)],
        output: (0, 0),
        outer: 0,
        out_row: 0,
    };
}

/// Every function ahead-of-time code calls, on descriptors the optimiser cannot see.
fn run_aot(arena: &mut [u8]) -> Result<(), mote_runtime::Error> {
    use mote_runtime::aot;
    // SAFETY: single-threaded; plain loads of statics nothing else writes.
    let (w, f, p, s, c, a, u) = unsafe {
        (
            read_volatile(addr_of!(aot_ops::WINDOW)),
            read_volatile(addr_of!(aot_ops::FC)),
            read_volatile(addr_of!(aot_ops::POOL)),
            read_volatile(addr_of!(aot_ops::SOFTMAX)),
            read_volatile(addr_of!(aot_ops::COPY)),
            read_volatile(addr_of!(aot_ops::ARITH)),
            read_volatile(addr_of!(aot_ops::UNARY)),
        )
    };
    aot::conv2d_int8(arena, &w)?;
    aot::conv2d_int8_with_reference(arena, &w)?;
    aot::depthwise_conv2d_int8(arena, &w)?;
    aot::depthwise_conv2d_int8_with_reference(arena, &w)?;
    aot::fully_connected_int8(arena, &f)?;
    aot::fully_connected_int8_with_reference(arena, &f)?;
    aot::add_int8(arena, &a)?;
    aot::sub_int8(arena, &a)?;
    aot::mul_int8(arena, &a)?;
    aot::relu_int8(arena, &u)?;
    aot::relu6_int8(arena, &u)?;
    aot::logistic_int8(arena, &u)?;
    aot::tanh_int8(arena, &u)?;
    // SAFETY: as above.
    let (sh, q, cat) = unsafe {
        (
            read_volatile(addr_of!(aot_ops::SHAPED)),
            read_volatile(addr_of!(aot_ops::QUANTIZE)),
            read_volatile(addr_of!(aot_ops::CONCAT)),
        )
    };
    aot::pad_int8(arena, &sh)?;
    aot::mean_int8(arena, &sh)?;
    aot::requantize_i8_i8(arena, &q)?;
    aot::requantize_i8_u8(arena, &q)?;
    aot::requantize_u8_i8(arena, &q)?;
    aot::quantize_f32_i8(arena, &q)?;
    aot::dequantize_i8_f32(arena, &q)?;
    aot::concat_int8(arena, &cat)?;
    aot::pool_int8(arena, &p)?;
    aot::softmax_int8(arena, &s)?;
    aot::copy(arena, &c)?;
    // SAFETY: a volatile read of a plain `u8` static.
    let op = unsafe { read_volatile(addr_of!(SINK)) };
    Err(aot::no_such_op(usize::from(op)))
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    extern "C" {
        /// Defined nowhere: referencing it makes the link fail.
        fn mote_panic_path_reachable() -> !;
    }
    // SAFETY: never executes in a linked binary: the symbol does not exist.
    unsafe { mote_panic_path_reachable() }
}
