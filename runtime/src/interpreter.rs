//! Running a validated model over a caller-owned arena.

use bytemuck::Pod;

use crate::error::{Error, Location};
use crate::format::{DType, TensorDesc, ALIGN};
use crate::model::Model;
use crate::ops::{self, OpMem};

/// Element types a tensor can be read or written as.
pub trait Element: Pod + sealed::Sealed {
    /// The matching tensor element type.
    const DTYPE: DType;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for i8 {}
    impl Sealed for u8 {}
    impl Sealed for i16 {}
    impl Sealed for i32 {}
    impl Sealed for f32 {}
}

impl Element for i8 {
    const DTYPE: DType = DType::Int8;
}
impl Element for u8 {
    const DTYPE: DType = DType::UInt8;
}
impl Element for i16 {
    const DTYPE: DType = DType::Int16;
}
impl Element for i32 {
    const DTYPE: DType = DType::Int32;
}
impl Element for f32 {
    const DTYPE: DType = DType::Float32;
}

/// A model bound to an arena, ready to run.
///
/// The arena holds every activation and scratch buffer; its size is [`Model::arena_bytes`],
/// exactly. Nothing is allocated.
pub struct Interpreter<'m, 'a> {
    model: &'m Model<'m>,
    arena: &'a mut [u8],
}

impl<'m, 'a> Interpreter<'m, 'a> {
    /// Binds `model` to `arena`, which must hold at least [`Model::arena_bytes`] bytes and start
    /// on a 16-byte boundary (use [`crate::Arena`]).
    pub fn new(model: &'m Model<'m>, arena: &'a mut [u8]) -> Result<Self, Error> {
        let needed = model.arena_bytes();
        if arena.len() < needed {
            return Err(Error::ArenaTooSmall {
                needed,
                given: arena.len(),
            });
        }
        if needed > 0 && (arena.as_ptr() as usize) % ALIGN != 0 {
            return Err(Error::Misaligned {
                at: Location::Arena,
                align: ALIGN,
            });
        }
        Ok(Interpreter { model, arena })
    }

    /// The model this interpreter runs.
    pub fn model(&self) -> &'m Model<'m> {
        self.model
    }

    fn io_desc(&self, at: Location) -> Result<&'m TensorDesc, Error> {
        match at {
            Location::Input(i) => self.model.input(i as usize),
            Location::Output(i) => self.model.output(i as usize),
            _ => None,
        }
        .ok_or(Error::NoSuchTensor { at })
    }

    fn bytes_of(&self, d: &TensorDesc) -> &[u8] {
        // Validated at load: arena tensors lie inside arena_bytes <= arena.len().
        let start = d.offset as usize;
        self.arena
            .get(start..start + d.bytes as usize)
            .unwrap_or(&[])
    }

    /// The bytes of input `i`, to be filled before [`Interpreter::invoke`].
    pub fn input_bytes_mut(&mut self, i: usize) -> Result<&mut [u8], Error> {
        let d = self.io_desc(Location::Input(i as u32))?;
        let start = d.offset as usize;
        self.arena
            .get_mut(start..start + d.bytes as usize)
            .ok_or(Error::NoSuchTensor {
                at: Location::Input(i as u32),
            })
    }

    /// The bytes of output `i`, valid after [`Interpreter::invoke`].
    pub fn output_bytes(&self, i: usize) -> Result<&[u8], Error> {
        let d = self.io_desc(Location::Output(i as u32))?;
        Ok(self.bytes_of(d))
    }

    /// Input `i` as a typed slice; `T` must match the tensor's element type.
    pub fn input_mut<T: Element>(&mut self, i: usize) -> Result<&mut [T], Error> {
        let at = Location::Input(i as u32);
        let d = self.io_desc(at)?;
        check_dtype::<T>(d, at)?;
        bytemuck::try_cast_slice_mut(self.input_bytes_mut(i)?).map_err(|_| Error::Misaligned {
            at,
            align: T::DTYPE.size(),
        })
    }

    /// Output `i` as a typed slice; `T` must match the tensor's element type.
    pub fn output<T: Element>(&self, i: usize) -> Result<&[T], Error> {
        let at = Location::Output(i as u32);
        let d = self.io_desc(at)?;
        check_dtype::<T>(d, at)?;
        bytemuck::try_cast_slice(self.output_bytes(i)?).map_err(|_| Error::Misaligned {
            at,
            align: T::DTYPE.size(),
        })
    }

    /// Copies `data` into input `i`; its length must equal the tensor's size in bytes.
    pub fn set_input_bytes(&mut self, i: usize, data: &[u8]) -> Result<(), Error> {
        let dst = self.input_bytes_mut(i)?;
        if dst.len() != data.len() {
            return Err(Error::WrongSize {
                at: Location::Input(i as u32),
                expected: dst.len(),
                given: data.len(),
            });
        }
        dst.copy_from_slice(data);
        Ok(())
    }

    /// Runs every operator once, in order. Ops that compute in place may overwrite the model's
    /// inputs (as in TFLM): set them before every call.
    pub fn invoke(&mut self) -> Result<(), Error> {
        for i in 0..self.model.ops().len() {
            self.invoke_op(i)?;
        }
        Ok(())
    }

    /// Runs operator `i` alone (its inputs must already be in the arena).
    pub fn invoke_op(&mut self, i: usize) -> Result<(), Error> {
        let ctx = self.model.op_ctx_loaded(i as u32)?;
        // The bytes the op writes: its output, or for an op computing over its own input the
        // span of both (validated to lie in the arena).
        let region = ops::inplace::region(&ctx)?;
        let (out_start, out_end) = (region.start, region.end);
        let scratch_start = ctx.desc.scratch_offset as usize;
        let scratch_len = ctx.desc.scratch_bytes as usize;
        let arena = &mut self.arena[..];
        let (below, rest) = arena.split_at_mut(out_start.min(arena.len()));
        let (output, above) = rest.split_at_mut((out_end - out_start).min(rest.len()));
        // Scratch lies entirely below or entirely above the output (validated).
        let (below, above, scratch): (&[u8], &[u8], &mut [u8]) = if scratch_len == 0 {
            (below, above, &mut [])
        } else if scratch_start + scratch_len <= out_start {
            // `scratch_start + scratch_len <= out_start <= below.len()` unless the arena is
            // shorter than validated: then an error, never a panic.
            let no_scratch = || Error::ArenaTooSmall {
                needed: scratch_start + scratch_len,
                given: out_start,
            };
            let (lo, s) = below
                .split_at_mut_checked(scratch_start)
                .ok_or_else(no_scratch)?;
            let (s, _) = s.split_at_mut_checked(scratch_len).ok_or_else(no_scratch)?;
            // Inputs never overlap scratch, so the part past the scratch is not needed.
            (lo, above, s)
        } else {
            let rel = scratch_start.saturating_sub(out_end).min(above.len());
            let (lo, s) = above.split_at_mut(rel);
            let len = scratch_len.min(s.len());
            let (s, _) = s.split_at_mut(len);
            // Inputs above the output that precede the scratch stay visible.
            (below, lo, s)
        };
        let mem = OpMem {
            below,
            above,
            above_start: out_end,
            output,
            scratch,
            ctx,
        };
        ops::eval(&ctx, mem)
    }
}

fn check_dtype<T: Element>(d: &TensorDesc, at: Location) -> Result<(), Error> {
    if d.dtype() != Some(T::DTYPE) {
        return Err(Error::WrongDType {
            at,
            actual: d.dtype().map_or("unknown", DType::name),
            requested: T::DTYPE.name(),
        });
    }
    Ok(())
}

/// A 16-byte aligned arena of `N` bytes, suitable for a `static`.
///
/// ```
/// static mut ARENA: mote_runtime::Arena<1024> = mote_runtime::Arena::new();
/// ```
#[repr(C, align(16))]
pub struct Arena<const N: usize>(pub [u8; N]);

impl<const N: usize> Arena<N> {
    /// A zeroed arena.
    pub const fn new() -> Self {
        Arena([0; N])
    }
    /// The arena as a byte slice.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl<const N: usize> Default for Arena<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Model bytes aligned to 16, e.g. from `include_bytes!` (see [`crate::include_model!`]).
#[repr(C, align(16))]
pub struct AlignedModel<const N: usize>(pub [u8; N]);

/// Embeds a `.mote` file aligned to 16 bytes and evaluates to `&'static [u8]`.
///
/// ```ignore
/// let bytes: &'static [u8] = mote_runtime::include_model!("model.mote");
/// ```
#[macro_export]
macro_rules! include_model {
    ($path:expr) => {{
        const LEN: usize = include_bytes!($path).len();
        static MODEL: $crate::AlignedModel<LEN> = $crate::AlignedModel(*include_bytes!($path));
        &MODEL.0[..]
    }};
}

#[allow(dead_code)]
fn _assert_pod<T: Pod>() {}
