//! Ahead-of-time compiled models: a model as Rust code that calls the kernels directly, for the
//! smallest firmware (as Edge Impulse's EON compiler does for TFLite Micro).
//!
//! The interpreter ([`crate::Interpreter`]) reads any `.mote` file at run time: it validates the
//! file, decodes each op and dispatches to a kernel family, all of which is code in flash. An
//! ahead-of-time model does that work on the host instead. `rust_source` (feature `std`) reads
//! a `.mote` file with the same validation and writes a Rust module holding the constants as
//! typed arrays, one descriptor per op ([`WindowOp`], [`FcOp`], ...: every shape, offset and
//! parameter fixed) and one `invoke_op` function whose arms call the functions of this module.
//! The firmware then links only the kernels the model runs, and none of the reader, validation
//! or dispatch:
//!
//! ```ignore
//! mod kws { include!(concat!(env!("OUT_DIR"), "/kws_aot.rs")); }
//! static mut ARENA: mote_runtime::Arena<{ kws::ARENA_BYTES }> = mote_runtime::Arena::new();
//! let arena = unsafe { &mut ARENA.0 };
//! let (at, len) = kws::INPUTS[0];
//! arena[at..at + len].copy_from_slice(&features);
//! kws::invoke(arena)?;
//! ```
//!
//! What it covers: int8 models of CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, AVERAGE_POOL_2D,
//! MAX_POOL_2D, ADD, SUB, MUL, RELU, RELU6, LOGISTIC, TANH, PAD, MEAN, CONCATENATION, QUANTIZE
//! (between 8-bit types, or from float32) and DEQUANTIZE (to float32), RESHAPE, SQUEEZE and
//! SOFTMAX, planned without ops in place or fused and with dense weights (`mote convert
//! --emit-aot`, `mote bench --aot`). Anything else is refused by `rust_source` with an error
//! naming the op. The kernels are the interpreter's, so outputs are its own, byte for byte. On
//! cores with the DSP extension (feature `arm-dsp`) an op runs the DSP (or Helium) kernel, and the
//! reference kernel of its family is linked only when some op needs it: `rust_source` runs the
//! DSP kernels' own applicability checks on each op's shapes and parameters (their portable
//! stand-ins run on the host) and calls the `_with_reference` variant of the functions below only
//! for ops those kernels do not take.
//!
//! The functions below never panic: lengths that do not match give an [`Error`].

use crate::error::{Error, Location};
use crate::ops::activation;
use crate::ops::arith::ArithParams;
use crate::ops::conv::ConvParams;
use crate::ops::depthwise::DepthwiseParams;
use crate::ops::fully_connected::FullyConnectedParams;
use crate::ops::pad::PadParams;
use crate::ops::pool::PoolParams;
use crate::ops::quantize::{self, QuantizeParams};
use crate::ops::reduce::MeanParams;
use crate::ops::softmax::SoftmaxParams;
#[cfg(feature = "arm-dsp")]
use crate::ops::OpKind;
use crate::ops::{as_i8, as_i8_mut, as_typed, as_typed_mut};

#[cfg(feature = "std")]
mod generate;
#[cfg(feature = "std")]
pub use generate::{rust_source, AotSource};

/// The error for arena bytes an op cannot have (out of the arena, or an input overlapping the
/// output: an ahead-of-time plan has no op in place).
fn bad_bytes(op: u32) -> Error {
    Error::InvalidField {
        at: Location::Op(op),
        field: "AOT input and output bytes",
    }
}

/// `arena` split around an op's output bytes (`output`: offset and length): the bytes below
/// it, the output and the bytes above it.
struct Split<'a> {
    below: &'a [u8],
    output: &'a mut [u8],
    above: &'a [u8],
    above_start: usize,
}

impl<'a> Split<'a> {
    fn new(arena: &'a mut [u8], op: u32, output: (usize, usize)) -> Result<Self, Error> {
        let (below, rest) = arena.split_at_mut_checked(output.0).ok_or(bad_bytes(op))?;
        let (output_bytes, above) = rest.split_at_mut_checked(output.1).ok_or(bad_bytes(op))?;
        Ok(Split {
            below,
            output: output_bytes,
            above,
            above_start: output.0 + output.1,
        })
    }

    /// The input bytes `input` (offset and length), wholly below or wholly above the output.
    fn input(&self, op: u32, input: (usize, usize)) -> Result<&'a [u8], Error> {
        let (start, end) = (input.0, input.0 + input.1);
        let bytes = if end <= self.below.len() {
            self.below.get(start..end)
        } else if start >= self.above_start {
            let at = start - self.above_start;
            self.above.get(at..at + input.1)
        } else {
            None
        };
        bytes.ok_or(bad_bytes(op))
    }
}

/// An op's parameter struct from its words (as the `.mote` file stores them).
#[inline]
fn params<T: bytemuck::Pod>(op: u32, words: &[u32]) -> Result<&T, Error> {
    bytemuck::try_from_bytes(bytemuck::cast_slice(words)).map_err(|_| Error::InvalidField {
        at: Location::Op(op),
        field: "AOT params",
    })
}

/// The error of `invoke_op` for an index past the model's ops.
pub fn no_such_op(op: usize) -> Error {
    Error::InvalidField {
        at: Location::Op(u32::try_from(op).unwrap_or(u32::MAX)),
        field: "op index",
    }
}

/// The error for an op whose shapes this build's kernels do not take (see the module
/// documentation).
#[cfg(feature = "arm-dsp")]
fn no_kernel(op: u32, kind: OpKind) -> Error {
    Error::UnsupportedOp {
        op,
        kind: kind as u16,
    }
}

/// Where an op reads and writes: its index and its input's and output's bytes in the arena
/// (offset and length).
#[derive(Debug, Clone, Copy)]
pub struct Place {
    /// The op's index in execution order (for errors).
    pub op: u32,
    /// The input's offset and length in the arena.
    pub input: (usize, usize),
    /// The output's offset and length in the arena (not overlapping the input).
    pub output: (usize, usize),
}

impl Place {
    /// The op's input and output bytes in `arena`.
    fn io<'a>(&self, arena: &'a mut [u8]) -> Result<(&'a [u8], &'a mut [u8]), Error> {
        let split = Split::new(arena, self.op, self.output)?;
        let x = split.input(self.op, self.input)?;
        Ok((x, split.output))
    }

    /// [`Place::io`] as elements of `I` and `O`, as many of each (element-wise ops).
    fn elements<'a, I: bytemuck::Pod, O: bytemuck::Pod>(
        &self,
        arena: &'a mut [u8],
    ) -> Result<(&'a [I], &'a mut [O]), Error> {
        let (x, y) = self.io(arena)?;
        let (x, y) = (as_typed::<I>(x)?, as_typed_mut::<O>(y)?);
        if x.len() != y.len() {
            return Err(bad_bytes(self.op));
        }
        Ok((x, y))
    }
}

/// A CONV_2D or DEPTHWISE_CONV_2D op, int8, with everything fixed.
#[derive(Debug, Clone, Copy)]
pub struct WindowOp<'a> {
    /// Where it reads and writes.
    pub place: Place,
    /// Its parameter words ([`ConvParams`] or [`DepthwiseParams`]).
    pub params: &'a [u32],
    /// The input's, the filter's (OHWI, or `1×H×W×C` for depthwise) and the output's shapes.
    pub shapes: [[usize; 4]; 3],
    /// The filter.
    pub filter: &'a [i8],
    /// The bias, one per output channel.
    pub bias: Option<&'a [i32]>,
    /// Per-channel output multipliers (Q31).
    pub multipliers: &'a [i32],
    /// Per-channel output shifts.
    pub shifts: &'a [i32],
}

/// A FULLY_CONNECTED op, int8, reference weight layout, with everything fixed.
#[derive(Debug, Clone, Copy)]
pub struct FcOp<'a> {
    /// Where it reads and writes.
    pub place: Place,
    /// Its parameter words ([`FullyConnectedParams`]).
    pub params: &'a [u32],
    /// Batches, input features and output features.
    pub dims: [usize; 3],
    /// The weights, `[out, in]`.
    pub weights: &'a [i8],
    /// The bias, one per output.
    pub bias: Option<&'a [i32]>,
    /// Output multipliers (Q31): one, or one per output.
    pub multipliers: &'a [i32],
    /// Output shifts, as many as multipliers.
    pub shifts: &'a [i32],
}

/// An AVERAGE_POOL_2D or MAX_POOL_2D op, int8.
#[derive(Debug, Clone, Copy)]
pub struct PoolOp<'a> {
    /// Where it reads and writes.
    pub place: Place,
    /// Its parameter words ([`PoolParams`]).
    pub params: &'a [u32],
    /// AVERAGE_POOL_2D (else MAX_POOL_2D).
    pub average: bool,
    /// The input's and the output's shapes.
    pub shapes: [[usize; 4]; 2],
}

/// A SOFTMAX op, int8 in and out.
#[derive(Debug, Clone, Copy)]
pub struct SoftmaxOp<'a> {
    /// Where it reads and writes.
    pub place: Place,
    /// Its parameter words ([`SoftmaxParams`]).
    pub params: &'a [u32],
    /// Values per row.
    pub depth: usize,
}

/// Runs a CONV_2D op (one group) with the fastest kernel of this build. On a DSP build that
/// kernel must take the op's shapes (else [`Error::UnsupportedOp`]); `rust_source` checks
/// that and calls [`conv2d_int8_with_reference`] for ops it does not take.
#[inline(never)]
pub fn conv2d_int8(arena: &mut [u8], w: &WindowOp) -> Result<(), Error> {
    conv::<false>(arena, w)
}

/// [`conv2d_int8`], falling back to the reference kernel (also linked then) where the DSP
/// kernels do not take the op's shapes.
#[inline(never)]
pub fn conv2d_int8_with_reference(arena: &mut [u8], w: &WindowOp) -> Result<(), Error> {
    conv::<true>(arena, w)
}

#[inline(always)]
fn conv<const FALLBACK: bool>(arena: &mut [u8], w: &WindowOp) -> Result<(), Error> {
    let op = w.place.op;
    let p: &ConvParams = params(op, w.params)?;
    let (x, y) = w.place.io(arena)?;
    let [is, fs, os] = w.shapes;
    let (x, y) = (as_i8(x), as_i8_mut(y));
    let (filter, bias, m, s) = (w.filter, w.bias, w.multipliers, w.shifts);
    #[cfg(all(target_arch = "arm", feature = "arm-mve"))]
    if crate::simd::mve::conv2d_int8(p, is, x, fs, filter, bias, m, s, os, y).is_some() {
        return Ok(());
    }
    #[cfg(feature = "arm-dsp")]
    {
        let dsp = crate::simd::arm_dsp::conv2d_int8(p, is, x, fs, filter, bias, m, s, os, y);
        if dsp.is_some() {
            return Ok(());
        }
        if !FALLBACK {
            return Err(no_kernel(op, OpKind::Conv2d));
        }
    }
    let isa = crate::simd::Isa::best();
    crate::ops::conv::conv2d_int8_fast(isa, None, p, is, x, fs, filter, bias, m, s, os, y)
}

/// Runs a DEPTHWISE_CONV_2D op with the fastest kernel of this build (as [`conv2d_int8`]).
#[inline(never)]
pub fn depthwise_conv2d_int8(arena: &mut [u8], w: &WindowOp) -> Result<(), Error> {
    depthwise::<false>(arena, w)
}

/// [`depthwise_conv2d_int8`], falling back to the reference kernel where the DSP kernels do not
/// take the op (depth multiplier above 1, channels not a multiple of 4, a clamp other than
/// `[-128, 127]`, ...).
#[inline(never)]
pub fn depthwise_conv2d_int8_with_reference(arena: &mut [u8], w: &WindowOp) -> Result<(), Error> {
    depthwise::<true>(arena, w)
}

#[inline(always)]
fn depthwise<const FALLBACK: bool>(arena: &mut [u8], w: &WindowOp) -> Result<(), Error> {
    let op = w.place.op;
    let p: &DepthwiseParams = params(op, w.params)?;
    let (x, y) = w.place.io(arena)?;
    let [is, fs, os] = w.shapes;
    let (x, y) = (as_i8(x), as_i8_mut(y));
    let (filter, bias, m, s) = (w.filter, w.bias, w.multipliers, w.shifts);
    #[cfg(all(target_arch = "arm", feature = "arm-mve"))]
    if crate::simd::mve::depthwise_conv2d_int8(p, is, x, fs, filter, bias, m, s, os, y).is_some() {
        return Ok(());
    }
    #[cfg(feature = "arm-dsp")]
    {
        let dsp =
            crate::simd::arm_dsp::depthwise_conv2d_int8(p, is, x, fs, filter, bias, m, s, os, y);
        if dsp.is_some() {
            return Ok(());
        }
        if !FALLBACK {
            return Err(no_kernel(op, OpKind::DepthwiseConv2d));
        }
    }
    let isa = crate::simd::Isa::best();
    crate::ops::depthwise::depthwise_conv2d_int8_fast(isa, p, is, x, fs, filter, bias, m, s, os, y)
}

/// Runs a FULLY_CONNECTED op with the fastest kernel of this build (as [`conv2d_int8`]).
#[inline(never)]
pub fn fully_connected_int8(arena: &mut [u8], f: &FcOp) -> Result<(), Error> {
    fc::<false>(arena, f)
}

/// [`fully_connected_int8`], falling back to the reference kernel where the DSP kernels do not
/// take the op (asymmetric weights, more than 1024 inputs).
#[inline(never)]
pub fn fully_connected_int8_with_reference(arena: &mut [u8], f: &FcOp) -> Result<(), Error> {
    fc::<true>(arena, f)
}

#[inline(always)]
fn fc<const FALLBACK: bool>(arena: &mut [u8], f: &FcOp) -> Result<(), Error> {
    let op = f.place.op;
    let p: &FullyConnectedParams = params(op, f.params)?;
    let (x, y) = f.place.io(arena)?;
    let [b, i, o] = f.dims;
    let (x, y) = (as_i8(x), as_i8_mut(y));
    let (w, bias, m, s) = (f.weights, f.bias, f.multipliers, f.shifts);
    #[cfg(all(target_arch = "arm", feature = "arm-mve"))]
    if crate::simd::mve::fully_connected_int8(p, b, i, o, x, w, bias, m, s, y).is_some() {
        return Ok(());
    }
    #[cfg(feature = "arm-dsp")]
    {
        let dsp = crate::simd::arm_dsp::fully_connected_int8(p, b, i, o, x, w, bias, m, s, y);
        if dsp.is_some() {
            return Ok(());
        }
        if !FALLBACK {
            return Err(no_kernel(op, OpKind::FullyConnected));
        }
    }
    let isa = crate::simd::Isa::best();
    crate::ops::fully_connected::fully_connected_int8_fast(
        isa, None, p, b, i, o, x, w, bias, m, s, y,
    )
}

/// Runs an AVERAGE_POOL_2D or MAX_POOL_2D op.
#[inline(never)]
pub fn pool_int8(arena: &mut [u8], q: &PoolOp) -> Result<(), Error> {
    let op = q.place.op;
    let p: &PoolParams = params(op, q.params)?;
    let (x, y) = q.place.io(arena)?;
    let [is, os] = q.shapes;
    let (x, y) = (as_i8(x), as_i8_mut(y));
    let elements = |s: [usize; 4]| s.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if elements(is) != Some(x.len()) || elements(os) != Some(y.len()) {
        return Err(bad_bytes(op));
    }
    crate::ops::pool::pool_int8_fast(crate::simd::Isa::best(), q.average, p, is, x, os, y);
    Ok(())
}

/// Runs a SOFTMAX op.
#[inline(never)]
pub fn softmax_int8(arena: &mut [u8], s: &SoftmaxOp) -> Result<(), Error> {
    let p: &SoftmaxParams = params(s.place.op, s.params)?;
    let (x, y) = s.place.io(arena)?;
    crate::ops::softmax::softmax_int8::<i8>(p, s.depth, as_i8(x), as_i8_mut(y))
}

/// An input of an element-wise op: bytes in the arena (offset and length) or constant values.
#[derive(Debug, Clone, Copy)]
pub enum Operand<'a> {
    /// Offset and length in the arena (not overlapping the output).
    Arena(usize, usize),
    /// Constant values.
    Const(&'a [i8]),
}

/// An ADD, SUB or MUL op, int8, with broadcasting.
#[derive(Debug, Clone, Copy)]
pub struct ArithOp<'a> {
    /// The op's index in execution order (for errors).
    pub op: u32,
    /// Its parameter words ([`ArithParams`]).
    pub params: &'a [u32],
    /// Its two inputs.
    pub inputs: [Operand<'a>; 2],
    /// The output's offset and length in the arena.
    pub output: (usize, usize),
    /// The shapes of the two inputs and the output (ranks may differ: broadcasting).
    pub shapes: [&'a [usize]; 3],
}

impl<'a> ArithOp<'a> {
    /// The parameters, both inputs and the output, from `arena`.
    #[allow(clippy::type_complexity)]
    fn bind<'b>(
        &self,
        arena: &'b mut [u8],
    ) -> Result<(&'a ArithParams, [&'b [i8]; 2], &'b mut [i8]), Error>
    where
        'a: 'b,
    {
        let p: &ArithParams = params(self.op, self.params)?;
        let split = Split::new(arena, self.op, self.output)?;
        let operand = |o: Operand<'a>| -> Result<&'b [i8], Error> {
            match o {
                Operand::Arena(at, len) => split.input(self.op, (at, len)).map(as_i8),
                Operand::Const(values) => Ok(values),
            }
        };
        let [a, b] = self.inputs;
        let inputs = [operand(a)?, operand(b)?];
        Ok((p, inputs, as_i8_mut(split.output)))
    }
}

/// Runs an ADD op.
#[inline(never)]
pub fn add_int8(arena: &mut [u8], a: &ArithOp) -> Result<(), Error> {
    let (p, [x, y], out) = a.bind(arena)?;
    let [sx, sy, so] = a.shapes;
    let isa = crate::simd::Isa::best();
    crate::ops::arith::add_sub_int8_fast(isa, p, false, sx, x, sy, y, so, out)
}

/// Runs a SUB op.
#[inline(never)]
pub fn sub_int8(arena: &mut [u8], a: &ArithOp) -> Result<(), Error> {
    let (p, [x, y], out) = a.bind(arena)?;
    let [sx, sy, so] = a.shapes;
    let isa = crate::simd::Isa::best();
    crate::ops::arith::add_sub_int8_fast(isa, p, true, sx, x, sy, y, so, out)
}

/// Runs a MUL op.
#[inline(never)]
pub fn mul_int8(arena: &mut [u8], a: &ArithOp) -> Result<(), Error> {
    let (p, [x, y], out) = a.bind(arena)?;
    let [sx, sy, so] = a.shapes;
    crate::ops::arith::mul_int8(p, sx, x, sy, y, so, out)
}

/// A RELU, RELU6, LOGISTIC or TANH op, int8 in and out.
#[derive(Debug, Clone, Copy)]
pub struct UnaryOp<'a> {
    /// Where it reads and writes (as many bytes).
    pub place: Place,
    /// Its parameter words ([`activation::ReluParams`], [`activation::Relu6Params`] or
    /// [`activation::SigmoidParams`]).
    pub params: &'a [u32],
}

impl UnaryOp<'_> {
    /// Runs `kernel` with the op's parameters on its input and output.
    #[inline(always)]
    fn run<P: bytemuck::Pod>(
        &self,
        arena: &mut [u8],
        kernel: impl FnOnce(&P, &[i8], &mut [i8]),
    ) -> Result<(), Error> {
        let p: &P = params(self.place.op, self.params)?;
        let (x, y) = self.place.elements::<i8, i8>(arena)?;
        kernel(p, x, y);
        Ok(())
    }
}

/// Runs a RELU op.
#[inline(never)]
pub fn relu_int8(arena: &mut [u8], u: &UnaryOp) -> Result<(), Error> {
    u.run(arena, activation::relu_int8)
}

/// Runs a RELU6 op.
#[inline(never)]
pub fn relu6_int8(arena: &mut [u8], u: &UnaryOp) -> Result<(), Error> {
    u.run(arena, activation::relu6_int8)
}

/// Runs a LOGISTIC op.
#[inline(never)]
pub fn logistic_int8(arena: &mut [u8], u: &UnaryOp) -> Result<(), Error> {
    u.run(arena, activation::logistic_int8)
}

/// Runs a TANH op.
#[inline(never)]
pub fn tanh_int8(arena: &mut [u8], u: &UnaryOp) -> Result<(), Error> {
    u.run(arena, activation::tanh_int8)
}

/// A PAD or MEAN op, int8: its parameters and its input's shape.
#[derive(Debug, Clone, Copy)]
pub struct ShapedOp<'a> {
    /// Where it reads and writes.
    pub place: Place,
    /// Its parameter words ([`PadParams`] or [`MeanParams`]).
    pub params: &'a [u32],
    /// The input's shape.
    pub dims: &'a [usize],
}

/// Runs a PAD op (int8).
#[inline(never)]
pub fn pad_int8(arena: &mut [u8], o: &ShapedOp) -> Result<(), Error> {
    let p: &PadParams = params(o.place.op, o.params)?;
    let (x, y) = o.place.io(arena)?;
    crate::ops::pad::pad(p, 1, o.dims, x, y);
    Ok(())
}

/// Runs a MEAN op (int8).
#[inline(never)]
pub fn mean_int8(arena: &mut [u8], o: &ShapedOp) -> Result<(), Error> {
    let p: &MeanParams = params(o.place.op, o.params)?;
    let (x, y) = o.place.io(arena)?;
    crate::ops::reduce::mean_int8(p, o.dims, as_i8(x), as_i8_mut(y));
    Ok(())
}

/// A QUANTIZE op between 8-bit types (int8 to int8, int8 to uint8, uint8 to int8: a
/// requantization), from float32 to int8, or a DEQUANTIZE from int8 to float32.
#[derive(Debug, Clone, Copy)]
pub struct QuantizeOp<'a> {
    /// Where it reads and writes (as many bytes).
    pub place: Place,
    /// Its parameter words ([`QuantizeParams`]).
    pub params: &'a [u32],
}

impl QuantizeOp<'_> {
    /// Runs `convert` with the op's parameters on its input as `I` and its output as `O`.
    #[inline(always)]
    fn run<I: bytemuck::Pod, O: bytemuck::Pod>(
        &self,
        arena: &mut [u8],
        convert: impl FnOnce(&QuantizeParams, &[I], &mut [O]),
    ) -> Result<(), Error> {
        let p: &QuantizeParams = params(self.place.op, self.params)?;
        let (x, y) = self.place.elements::<I, O>(arena)?;
        convert(p, x, y);
        Ok(())
    }
}

/// Runs a QUANTIZE from float32 to int8.
#[inline(never)]
pub fn quantize_f32_i8(arena: &mut [u8], q: &QuantizeOp) -> Result<(), Error> {
    q.run(arena, quantize::quantize_f32::<i8>)
}

/// Runs a DEQUANTIZE from int8 to float32.
#[inline(never)]
pub fn dequantize_i8_f32(arena: &mut [u8], q: &QuantizeOp) -> Result<(), Error> {
    q.run(arena, quantize::dequantize::<i8>)
}

/// Runs a QUANTIZE from int8 to int8.
#[inline(never)]
pub fn requantize_i8_i8(arena: &mut [u8], q: &QuantizeOp) -> Result<(), Error> {
    q.run(arena, quantize::requantize::<i8, i8>)
}

/// Runs a QUANTIZE from int8 to uint8.
#[inline(never)]
pub fn requantize_i8_u8(arena: &mut [u8], q: &QuantizeOp) -> Result<(), Error> {
    q.run(arena, quantize::requantize::<i8, u8>)
}

/// Runs a QUANTIZE from uint8 to int8.
#[inline(never)]
pub fn requantize_u8_i8(arena: &mut [u8], q: &QuantizeOp) -> Result<(), Error> {
    q.run(arena, quantize::requantize::<u8, i8>)
}

/// A CONCATENATION op, int8: each input's rows, in order, side by side in the output's rows.
#[derive(Debug, Clone, Copy)]
pub struct ConcatOp<'a> {
    /// The op's index in execution order (for errors).
    pub op: u32,
    /// The inputs, and the bytes of one row of each (the dims from the axis on).
    pub inputs: &'a [(Operand<'a>, usize)],
    /// The output's offset and length in the arena.
    pub output: (usize, usize),
    /// Rows: the product of the dims before the axis.
    pub outer: usize,
    /// Bytes of one output row (the sum of the inputs').
    pub out_row: usize,
}

/// Runs a CONCATENATION op.
#[inline(never)]
pub fn concat_int8(arena: &mut [u8], c: &ConcatOp) -> Result<(), Error> {
    let split = Split::new(arena, c.op, c.output)?;
    let mut offset = 0;
    for &(operand, in_row) in c.inputs {
        let bytes = match operand {
            Operand::Arena(at, len) => split.input(c.op, (at, len))?,
            Operand::Const(values) => {
                bytemuck::try_cast_slice(values).map_err(|_| bad_bytes(c.op))?
            }
        };
        crate::ops::concat::concat_one(bytes, c.outer, in_row, split.output, c.out_row, offset);
        offset += in_row;
    }
    Ok(())
}

/// Runs a RESHAPE or SQUEEZE into other bytes: a copy.
#[inline(never)]
pub fn copy(arena: &mut [u8], place: &Place) -> Result<(), Error> {
    let (x, y) = place.elements::<u8, u8>(arena)?;
    y.copy_from_slice(x);
    Ok(())
}
