//! 2-D pooling over NHWC tensors: AVERAGE_POOL_2D and MAX_POOL_2D.
//!
//! Bit-exact with TFLM's reference kernels (`reference_integer_ops::AveragePool` / `MaxPool` for
//! int8 and int16, `reference_ops::AveragePool` / `MaxPool` for float32):
//! - the window of output `(y, x)` starts at `(y·stride_h − pad_h, x·stride_w − pad_w)` and is
//!   clipped to the input, so padded positions are never counted;
//! - integer average: the sum of the in-bounds elements divided by their count, rounded to the
//!   nearest integer with ties away from zero (`(acc ± count/2) / count` with C truncation);
//! - the result is clamped to the fused activation range.
//!
//! The output quantization equals the input's (TFLM requires it), so no rescaling happens.

use bytemuck::Pod;

use super::{as_typed, as_typed_mut, OpCtx, OpKind, OpMem};
use crate::error::Error;
use crate::format::{DType, TensorDesc};
use crate::simd::{self, Isa};

/// Parameters of AVERAGE_POOL_2D and MAX_POOL_2D (what TFLM computes in `PoolingPrepare`).
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct PoolParams {
    /// Vertical stride (≥ 1).
    pub stride_h: u32,
    /// Horizontal stride (≥ 1).
    pub stride_w: u32,
    /// Window height (≥ 1).
    pub filter_h: u32,
    /// Window width (≥ 1).
    pub filter_w: u32,
    /// Padding above the input (TFLM `padding_values.height`).
    pub pad_h: u32,
    /// Padding left of the input (TFLM `padding_values.width`).
    pub pad_w: u32,
    /// Lower clamp of the fused activation, integer kernels (in the output's quantized domain).
    pub act_min: i32,
    /// Upper clamp of the fused activation, integer kernels.
    pub act_max: i32,
    /// Lower clamp of the fused activation, float kernels.
    pub act_min_f: f32,
    /// Upper clamp of the fused activation, float kernels.
    pub act_max_f: f32,
}

/// Largest stride, window or padding accepted (keeps all index arithmetic inside `i64`).
const MAX_GEOMETRY: u32 = i32::MAX as u32;

/// Element types the pooling kernels run on.
trait PoolElem: Pod {
    const MIN: i32;
    const MAX: i32;
    fn to_i32(self) -> i32;
    fn from_i32(v: i32) -> Self;
}

impl PoolElem for i8 {
    const MIN: i32 = i8::MIN as i32;
    const MAX: i32 = i8::MAX as i32;
    fn to_i32(self) -> i32 {
        self as i32
    }
    fn from_i32(v: i32) -> Self {
        v as i8
    }
}

impl PoolElem for i16 {
    const MIN: i32 = i16::MIN as i32;
    const MAX: i32 = i16::MAX as i32;
    fn to_i32(self) -> i32 {
        self as i32
    }
    fn from_i32(v: i32) -> Self {
        v as i16
    }
}

/// The in-bounds part of one window along one axis: `origin + start .. origin + end`.
#[derive(Debug, Clone, Copy)]
struct Span {
    /// First input coordinate.
    first: usize,
    /// Number of in-bounds coordinates (≥ 1 for validated params).
    len: usize,
}

/// In-bounds input coordinates of the window of output coordinate `out` along one axis.
#[inline]
fn span(out: usize, stride: u32, pad: u32, filter: u32, input: usize) -> Span {
    let origin = out as i64 * stride as i64 - pad as i64;
    let start = (-origin).max(0);
    let end = (filter as i64).min(input as i64 - origin);
    if end <= start {
        return Span { first: 0, len: 0 };
    }
    Span {
        first: (origin + start) as usize,
        len: (end - start) as usize,
    }
}

/// `len` elements of one window row, `step` apart from `start` (empty when out of bounds).
#[inline]
fn row_iter<T>(input: &[T], start: usize, step: usize, len: usize) -> impl Iterator<Item = &T> {
    input
        .get(start..)
        .unwrap_or_default()
        .iter()
        .step_by(step.max(1))
        .take(len)
}

/// Checks the shapes common to the kernels; returns `(input_len, output_len)` or `None`.
fn lens(input_shape: [usize; 4], output_shape: [usize; 4]) -> Option<(usize, usize)> {
    if input_shape[0] != output_shape[0] || input_shape[3] != output_shape[3] {
        return None;
    }
    let n_in = input_shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))?;
    let n_out = output_shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))?;
    Some((n_in, n_out))
}

/// Visits every output pixel with its window: `f(output_index, y_span, x_span, input_base)`,
/// where `output_index` is the pixel's channel-0 output index and `input_base` the input index of
/// the window's first in-bounds element for channel 0.
#[inline]
fn for_each_window(
    p: &PoolParams,
    input_shape: [usize; 4],
    output_shape: [usize; 4],
    mut f: impl FnMut(usize, Span, Span, usize),
) {
    let [batches, in_h, in_w, depth] = input_shape;
    let [_, out_h, out_w, _] = output_shape;
    let mut o = 0usize;
    for b in 0..batches {
        for oy in 0..out_h {
            let ys = span(oy, p.stride_h, p.pad_h, p.filter_h, in_h);
            for ox in 0..out_w {
                let xs = span(ox, p.stride_w, p.pad_w, p.filter_w, in_w);
                let base = ((b * in_h + ys.first) * in_w + xs.first) * depth;
                f(o, ys, xs, base);
                o += depth;
            }
        }
    }
}

/// AVERAGE_POOL_2D (`average`) or MAX_POOL_2D over integers: one kernel for both (they walk
/// the same windows; only the reduction and the output stage differ), kept out of line so that
/// every caller shares one copy.
#[inline(never)]
fn pool_int<T: PoolElem>(
    average: bool,
    p: &PoolParams,
    input_shape: [usize; 4],
    input: &[T],
    output_shape: [usize; 4],
    output: &mut [T],
) {
    let Some((n_in, n_out)) = lens(input_shape, output_shape) else {
        return;
    };
    let (Some(input), Some(output)) = (input.get(..n_in), output.get_mut(..n_out)) else {
        return;
    };
    let [_, _, in_w, depth] = input_shape;
    let row = in_w * depth;
    for_each_window(p, input_shape, output_shape, |o, ys, xs, base| {
        let count = i32::try_from(ys.len.saturating_mul(xs.len)).unwrap_or(0);
        // `o + depth <= n_out`: outputs are visited in order, `depth` at a time.
        let Some(out) = output.get_mut(o..o + depth) else {
            return;
        };
        for (c, slot) in out.iter_mut().enumerate() {
            let mut acc: i32 = if average { 0 } else { T::MIN };
            for dy in 0..ys.len {
                // The window row's `xs.len` elements, `depth` apart (all inside the input for
                // validated shapes; a missing one ends the row early, never panics).
                let mut at = base + dy * row + c;
                for _ in 0..xs.len {
                    let Some(v) = input.get(at) else {
                        break;
                    };
                    let v = v.to_i32();
                    acc = if average {
                        acc.wrapping_add(v)
                    } else {
                        acc.max(v)
                    };
                    at += depth;
                }
            }
            if average {
                if count == 0 {
                    continue;
                }
                // C truncating division, as TFLM (validation keeps the sum far from overflow).
                let half = if acc > 0 { count / 2 } else { -(count / 2) };
                acc = acc.wrapping_add(half) / count;
            }
            let v = acc.max(p.act_min).min(p.act_max).clamp(T::MIN, T::MAX);
            *slot = T::from_i32(v);
        }
    });
}

/// TFLM's `ActivationFunctionWithMinMax` for floats: `std::min(std::max(x, lo), hi)` (NaN passes).
#[inline]
fn clamp_f32(x: f32, lo: f32, hi: f32) -> f32 {
    let y = if x < lo { lo } else { x };
    if hi < y {
        hi
    } else {
        y
    }
}

/// AVERAGE_POOL_2D, int8 (TFLM `reference_integer_ops::AveragePool`).
/// Shapes are NHWC; `input`/`output` must hold at least as many elements as their shapes.
pub fn average_pool_int8(
    p: &PoolParams,
    input_shape: [usize; 4],
    input: &[i8],
    output_shape: [usize; 4],
    output: &mut [i8],
) {
    pool_int(true, p, input_shape, input, output_shape, output)
}

/// AVERAGE_POOL_2D, int16 (TFLM `reference_integer_ops::AveragePool`, 16-bit overload).
pub fn average_pool_int16(
    p: &PoolParams,
    input_shape: [usize; 4],
    input: &[i16],
    output_shape: [usize; 4],
    output: &mut [i16],
) {
    pool_int(true, p, input_shape, input, output_shape, output)
}

/// MAX_POOL_2D, int8 (TFLM `reference_integer_ops::MaxPool`).
pub fn max_pool_int8(
    p: &PoolParams,
    input_shape: [usize; 4],
    input: &[i8],
    output_shape: [usize; 4],
    output: &mut [i8],
) {
    pool_int(false, p, input_shape, input, output_shape, output)
}

/// MAX_POOL_2D, int16 (TFLM `reference_integer_ops::MaxPool`, 16-bit overload).
pub fn max_pool_int16(
    p: &PoolParams,
    input_shape: [usize; 4],
    input: &[i16],
    output_shape: [usize; 4],
    output: &mut [i16],
) {
    pool_int(false, p, input_shape, input, output_shape, output)
}

/// Most channels the SIMD pooling paths keep accumulators for (more run the reference kernel).
pub const MAX_FAST_CHANNELS: usize = 1024;

/// The SIMD tier an int8 pooling op over `depth` channels runs on (`None`: the reference
/// kernel): the channels of a pixel are contiguous, so window rows are summed (or maxed) across
/// channels with the tier's vectors.
pub fn pool_fast_isa(isa: Option<Isa>, depth: usize) -> Option<Isa> {
    let isa = isa?;
    (1..=MAX_FAST_CHANNELS).contains(&depth).then_some(isa)
}

/// AVERAGE_POOL_2D (`average`) or MAX_POOL_2D, int8, with the fastest kernel available: `isa`'s
/// channel-vectorized loops when [`pool_fast_isa`] allows it, else [`average_pool_int8`] /
/// [`max_pool_int8`]. Same arguments and results, bit for bit.
pub fn pool_int8_fast(
    isa: Option<Isa>,
    average: bool,
    p: &PoolParams,
    input_shape: [usize; 4],
    input: &[i8],
    output_shape: [usize; 4],
    output: &mut [i8],
) {
    let depth = input_shape[3];
    let Some(isa) = pool_fast_isa(isa, depth) else {
        pool_int(average, p, input_shape, input, output_shape, output);
        return;
    };
    // Few channels (global pooling heads among others) keep small accumulators: no kilobytes of
    // zeroing per call.
    if depth <= SMALL_FAST_CHANNELS {
        pool_int8_simd::<SMALL_FAST_CHANNELS>(
            isa,
            average,
            p,
            input_shape,
            input,
            output_shape,
            output,
        )
    } else {
        pool_int8_simd::<MAX_FAST_CHANNELS>(
            isa,
            average,
            p,
            input_shape,
            input,
            output_shape,
            output,
        )
    }
}

/// Channel counts up to which [`pool_int8_fast`] uses small accumulator arrays.
const SMALL_FAST_CHANNELS: usize = 64;

/// [`pool_int8_fast`] on `isa` with accumulators for `N` channels (pixels of more channels
/// leave the output untouched; the caller picks `N ≥ depth`).
fn pool_int8_simd<const N: usize>(
    isa: Isa,
    average: bool,
    p: &PoolParams,
    input_shape: [usize; 4],
    input: &[i8],
    output_shape: [usize; 4],
    output: &mut [i8],
) {
    let depth = input_shape[3];
    let Some((n_in, n_out)) = lens(input_shape, output_shape) else {
        return;
    };
    let (Some(input), Some(output)) = (input.get(..n_in), output.get_mut(..n_out)) else {
        return;
    };
    let row = input_shape[2] * depth;
    let mut sums = [0i32; N];
    let mut maxima = [0i8; N];
    for_each_window(p, input_shape, output_shape, |o, ys, xs, base| {
        let Some(out) = output.get_mut(o..o + depth) else {
            return;
        };
        // The window's rows: `xs.len` whole pixels each.
        let rows = (0..ys.len).filter_map(|dy| input.get(base + dy * row..)?.get(..xs.len * depth));
        if average {
            let Some(acc) = sums.get_mut(..depth) else {
                return;
            };
            acc.fill(0);
            if xs.len * depth == row {
                // The window spans whole input rows (global pooling among others): its rows are
                // one contiguous run of pixels, summed in one pass.
                if let Some(run) = input.get(base..base + ys.len * row) {
                    simd::pool_sum(isa, run, acc);
                }
            } else {
                for r in rows {
                    simd::pool_sum(isa, r, acc);
                }
            }
            let count = i32::try_from(ys.len.saturating_mul(xs.len)).unwrap_or(0);
            if count == 0 {
                return;
            }
            // `count · 128 ≤ i32::MAX` (validation), as `pool_average_finish` requires.
            simd::pool_average_finish(isa, acc, count, p.act_min, p.act_max, out);
        } else {
            let Some(acc) = maxima.get_mut(..depth) else {
                return;
            };
            acc.fill(i8::MIN);
            for r in rows {
                simd::pool_max(isa, r, acc);
            }
            for (o, &m) in out.iter_mut().zip(acc.iter()) {
                *o = i32::from(m).max(p.act_min).min(p.act_max).clamp(-128, 127) as i8;
            }
        }
    });
}

/// The kernel a pooling op runs on this CPU: a SIMD tier's name or `reference`.
pub(crate) fn kernel_name(ctx: &OpCtx) -> &'static str {
    let Ok(input) = ctx.required_input(0) else {
        return "reference";
    };
    if input.1.dtype() != Some(DType::Int8) {
        return "reference";
    }
    pool_fast_isa(Isa::best(), shape4(input.1)[3]).map_or("reference", Isa::name)
}

/// AVERAGE_POOL_2D, float32 (TFLM `reference_ops::AveragePool`): the window is summed in
/// row-major order and divided by the in-bounds count.
pub fn average_pool_f32(
    p: &PoolParams,
    input_shape: [usize; 4],
    input: &[f32],
    output_shape: [usize; 4],
    output: &mut [f32],
) {
    let Some((n_in, n_out)) = lens(input_shape, output_shape) else {
        return;
    };
    let (Some(input), Some(output)) = (input.get(..n_in), output.get_mut(..n_out)) else {
        return;
    };
    let [_, _, in_w, depth] = input_shape;
    let row = in_w * depth;
    for_each_window(p, input_shape, output_shape, |o, ys, xs, base| {
        let count = ys.len.saturating_mul(xs.len) as f32;
        // `o + depth <= n_out`: outputs are visited in order, `depth` at a time.
        let Some(out) = output.get_mut(o..o + depth) else {
            return;
        };
        for (c, slot) in out.iter_mut().enumerate() {
            let mut total = 0.0f32;
            for dy in 0..ys.len {
                let start = base + dy * row + c;
                for v in row_iter(input, start, depth, xs.len) {
                    total += *v;
                }
            }
            *slot = clamp_f32(total / count, p.act_min_f, p.act_max_f);
        }
    });
}

/// MAX_POOL_2D, float32 (TFLM `reference_ops::MaxPool`).
pub fn max_pool_f32(
    p: &PoolParams,
    input_shape: [usize; 4],
    input: &[f32],
    output_shape: [usize; 4],
    output: &mut [f32],
) {
    let Some((n_in, n_out)) = lens(input_shape, output_shape) else {
        return;
    };
    let (Some(input), Some(output)) = (input.get(..n_in), output.get_mut(..n_out)) else {
        return;
    };
    let [_, _, in_w, depth] = input_shape;
    let row = in_w * depth;
    for_each_window(p, input_shape, output_shape, |o, ys, xs, base| {
        // `o + depth <= n_out`: outputs are visited in order, `depth` at a time.
        let Some(out) = output.get_mut(o..o + depth) else {
            return;
        };
        for (c, slot) in out.iter_mut().enumerate() {
            let mut m = f32::MIN;
            for dy in 0..ys.len {
                let start = base + dy * row + c;
                for v in row_iter(input, start, depth, xs.len) {
                    // std::max(m, v) == (m < v) ? v : m
                    if m < *v {
                        m = *v;
                    }
                }
            }
            *slot = clamp_f32(m, p.act_min_f, p.act_max_f);
        }
    });
}

pub(crate) fn shape4(t: &TensorDesc) -> [usize; 4] {
    let d = t.dims();
    let g = |i: usize| d.get(i).copied().unwrap_or(0) as usize;
    [g(0), g(1), g(2), g(3)]
}

/// Whether every window along one axis has at least one in-bounds element.
fn windows_nonempty(out: usize, stride: u32, pad: u32, filter: u32, input: usize) -> bool {
    if out == 0 {
        return true;
    }
    span(0, stride, pad, filter, input).len > 0 && span(out - 1, stride, pad, filter, input).len > 0
}

/// Checks an AVERAGE_POOL_2D / MAX_POOL_2D op.
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    let p: &PoolParams = ctx.params()?;
    if ctx.input_count() != 1 || ctx.desc.output_count != 1 {
        return Err(ctx.param_error("input_count"));
    }
    let input = ctx.required_input(0)?;
    let output = ctx.output(0)?;
    let dtype = input
        .1
        .dtype()
        .ok_or(ctx.shape_error(input.0, "a known dtype"))?;
    if !matches!(dtype, DType::Int8 | DType::Int16 | DType::Float32) {
        return Err(ctx.shape_error(input.0, "int8, int16 or float32"));
    }
    ctx.expect_dtype(output, dtype)?;
    if input.1.rank != 4 {
        return Err(ctx.shape_error(input.0, "a 4-D NHWC tensor"));
    }
    if output.1.rank != 4 {
        return Err(ctx.shape_error(output.0, "a 4-D NHWC tensor"));
    }
    let is = shape4(input.1);
    let os = shape4(output.1);
    if is[0] != os[0] || is[3] != os[3] {
        return Err(ctx.shape_error(output.0, "the input's batch and channel counts"));
    }
    for (v, name) in [
        (p.stride_h, "stride_h"),
        (p.stride_w, "stride_w"),
        (p.filter_h, "filter_h"),
        (p.filter_w, "filter_w"),
    ] {
        if v == 0 || v > MAX_GEOMETRY {
            return Err(ctx.param_error(name));
        }
    }
    if p.pad_h > MAX_GEOMETRY || p.pad_w > MAX_GEOMETRY {
        return Err(ctx.param_error("padding"));
    }
    let n_out = os[0] * os[1] * os[2] * os[3];
    if n_out > 0
        && (!windows_nonempty(os[1], p.stride_h, p.pad_h, p.filter_h, is[1])
            || !windows_nonempty(os[2], p.stride_w, p.pad_w, p.filter_w, is[2]))
    {
        return Err(ctx.shape_error(output.0, "pooling windows that overlap the input"));
    }
    match dtype {
        DType::Int8 | DType::Int16 => {
            let (lo, hi) = if dtype == DType::Int8 {
                (i8::MIN as i32, i8::MAX as i32)
            } else {
                (i16::MIN as i32, i16::MAX as i32)
            };
            if p.act_min > p.act_max || p.act_min < lo || p.act_max > hi {
                return Err(ctx.param_error("act_min/act_max"));
            }
            if ctx.kind == OpKind::AveragePool2d {
                // TFLM sums in int32: refuse windows whose sum could overflow.
                let window =
                    (p.filter_h as u64).min(is[1] as u64) * (p.filter_w as u64).min(is[2] as u64);
                if window.saturating_mul((-lo) as u64) > i32::MAX as u64 {
                    return Err(ctx.param_error("filter size (int32 sum overflow)"));
                }
            }
        }
        _ => {
            if p.act_min_f.is_nan() || p.act_max_f.is_nan() || p.act_min_f > p.act_max_f {
                return Err(ctx.param_error("act_min_f/act_max_f"));
            }
        }
    }
    Ok(())
}

/// Runs an AVERAGE_POOL_2D / MAX_POOL_2D op.
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem) -> Result<(), Error> {
    let p: &PoolParams = ctx.params()?;
    let input = ctx.required_input(0)?;
    let output = ctx.output(0)?;
    let is = shape4(input.1);
    let os = shape4(output.1);
    let x = mem.required_input(0)?;
    let avg = ctx.kind == OpKind::AveragePool2d;
    match input.1.dtype() {
        Some(DType::Int8) => {
            let (x, y) = (as_typed::<i8>(x)?, as_typed_mut::<i8>(mem.output)?);
            pool_int8_fast(Isa::best(), avg, p, is, x, os, y);
        }
        Some(DType::Int16) if super::select::INT16 => {
            let (x, y) = (as_typed::<i16>(x)?, as_typed_mut::<i16>(mem.output)?);
            if avg {
                average_pool_int16(p, is, x, os, y)
            } else {
                max_pool_int16(p, is, x, os, y)
            }
        }
        Some(DType::Float32) if super::select::FLOAT => {
            let (x, y) = (as_typed::<f32>(x)?, as_typed_mut::<f32>(mem.output)?);
            if avg {
                average_pool_f32(p, is, x, os, y)
            } else {
                max_pool_f32(p, is, x, os, y)
            }
        }
        _ => return Err(ctx.shape_error(input.0, "int8, int16 or float32")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(stride: u32, filter: u32, pad: u32) -> PoolParams {
        PoolParams {
            stride_h: stride,
            stride_w: stride,
            filter_h: filter,
            filter_w: filter,
            pad_h: pad,
            pad_w: pad,
            act_min: -128,
            act_max: 127,
            act_min_f: f32::MIN,
            act_max_f: f32::MAX,
        }
    }

    #[test]
    fn average_rounds_half_away_from_zero() {
        // 1x2x2x1 → 1x1x1x1, VALID 2x2.
        let p = params(2, 2, 0);
        let mut out = [0i8];
        // sum -6 / 4 = -1.5 → -2 ; sum 6 → 2 ; sum -5 → -1.25 → -1 ; sum 5 → 1
        for (inp, want) in [
            ([-3i8, -4, -5, 6], -2i8),
            ([3, 4, 5, -6], 2),
            ([-3, -4, -5, 7], -1),
            ([3, 4, 5, -7], 1),
            ([-1, -1, 0, 0], -1), // -0.5 → -1
            ([1, 1, 0, 0], 1),    // 0.5 → 1
            ([-1, 0, 0, 0], 0),   // -0.25 → 0
        ] {
            average_pool_int8(&p, [1, 2, 2, 1], &inp, [1, 1, 1, 1], &mut out);
            assert_eq!(out[0], want, "{inp:?}");
        }
    }

    #[test]
    fn average_same_padding_counts_only_inside() {
        // 1x3x3x1 input, 3x3 window, stride 1, SAME (pad 1): corner windows hold 4 elements.
        let p = params(1, 3, 1);
        let inp: [i8; 9] = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        let mut out = [0i8; 9];
        average_pool_int8(&p, [1, 3, 3, 1], &inp, [1, 3, 3, 1], &mut out);
        // (0,0): 1+2+4+5 = 12/4 = 3 ; (0,1): 1+2+3+4+5+6 = 21/6 = 3.5 → 4 ; centre 45/9 = 5
        // (0,2): 2+3+5+6 = 16/4 = 4 ; (1,0): 1+2+4+5+7+8 = 27/6 = 4.5 → 5 ; (1,2): 33/6 = 5.5 → 6
        // (2,0): 4+5+7+8 = 24/4 = 6 ; (2,1): 39/6 = 6.5 → 7 ; (2,2): 5+6+8+9 = 28/4 = 7
        assert_eq!(out, [3, 4, 4, 5, 5, 6, 6, 7, 7]);
    }

    #[test]
    fn stride_two_same_asymmetric() {
        // 1x4x4x2 input, 3x3 window, stride 2, SAME: out 2x2, total pad = 1 → pad_top = 0.
        let p = params(2, 3, 0);
        let mut inp = [0i8; 32];
        for (i, v) in inp.iter_mut().enumerate() {
            *v = i as i8 - 16;
        }
        let mut out = [0i8; 8];
        max_pool_int8(&p, [1, 4, 4, 2], &inp, [1, 2, 2, 2], &mut out);
        // Window (1,1) covers rows 2..4, cols 2..4 (clipped): max at (3,3).
        let at = |y: usize, x: usize, c: usize| inp[(y * 4 + x) * 2 + c];
        assert_eq!(out[0], at(2, 2, 0));
        assert_eq!(out[1], at(2, 2, 1));
        assert_eq!(out[6], at(3, 3, 0));
        assert_eq!(out[7], at(3, 3, 1));
        let mut avg = [0i8; 8];
        average_pool_int8(&p, [1, 4, 4, 2], &inp, [1, 2, 2, 2], &mut avg);
        // Output (1,1) channel 0: rows 2,3 × cols 2,3 → values at (2,2),(2,3),(3,2),(3,3).
        let s: i32 = [at(2, 2, 0), at(2, 3, 0), at(3, 2, 0), at(3, 3, 0)]
            .iter()
            .map(|&v| v as i32)
            .sum();
        assert_eq!(avg[6] as i32, (s + 2) / 4);
    }

    #[test]
    fn activation_clamp_applies() {
        let mut p = params(1, 1, 0);
        p.act_min = 0;
        p.act_max = 6;
        let inp = [-5i8, 3, 100];
        let mut out = [0i8; 3];
        max_pool_int8(&p, [1, 1, 3, 1], &inp, [1, 1, 3, 1], &mut out);
        assert_eq!(out, [0, 3, 6]);
        average_pool_int8(&p, [1, 1, 3, 1], &inp, [1, 1, 3, 1], &mut out);
        assert_eq!(out, [0, 3, 6]);
    }

    #[test]
    fn max_all_lowest_and_int16() {
        let mut p16 = params(2, 2, 0);
        p16.act_min = -32768;
        p16.act_max = 32767;
        let mut out = [0i16];
        max_pool_int16(
            &p16,
            [1, 2, 2, 1],
            &[-32768, -32768, -32768, -32768],
            [1, 1, 1, 1],
            &mut out,
        );
        assert_eq!(out[0], -32768);
        average_pool_int16(
            &p16,
            [1, 2, 2, 1],
            &[-30000, -30000, -30000, -30001],
            [1, 1, 1, 1],
            &mut out,
        );
        // -120001 / 4 = -30000.25 → -30000
        assert_eq!(out[0], -30000);
    }

    #[test]
    fn float_pools() {
        let p = params(1, 2, 0);
        let inp = [1.0f32, 2.0, 4.0, 8.0];
        let mut out = [0f32; 1];
        average_pool_f32(&p, [1, 2, 2, 1], &inp, [1, 1, 1, 1], &mut out);
        assert_eq!(out[0], 3.75);
        max_pool_f32(&p, [1, 2, 2, 1], &inp, [1, 1, 1, 1], &mut out);
        assert_eq!(out[0], 8.0);
        let mut r6 = p;
        r6.act_min_f = 0.0;
        r6.act_max_f = 6.0;
        max_pool_f32(&r6, [1, 2, 2, 1], &inp, [1, 1, 1, 1], &mut out);
        assert_eq!(out[0], 6.0);
    }

    #[test]
    fn short_slices_do_not_panic() {
        let p = params(1, 1, 0);
        let mut out = [0i8; 2];
        average_pool_int8(&p, [1, 2, 2, 1], &[1, 2], [1, 2, 2, 1], &mut out);
        max_pool_int8(&p, [1, 2, 2, 1], &[1, 2, 3, 4], [1, 2, 2, 1], &mut out);
    }
}
