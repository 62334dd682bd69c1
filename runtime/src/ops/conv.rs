//! CONV_2D: int8 2-D convolution, bit-exact with TFLM's `reference_integer_ops::ConvPerChannel`.
//!
//! Inputs: 0 = input NHWC int8, 1 = filter OHWI int8 (per-channel symmetric), 2 = optional bias
//! int32 `[O]` ([`crate::format::NONE`] when absent). Output: NHWC int8.
//! Grouped convolution (input channels = k × filter input channels, `O` divisible by `k`) follows
//! TFLM: output channel `o` reads input channels `g·I .. (g+1)·I` with `g = o / (O / k)`.
//!
//! The window helpers (`valid_taps`, `requantize`, ...) are shared with DEPTHWISE_CONV_2D.

use core::ops::Range;

use bytemuck::{Pod, Zeroable};

use super::arith::ArithParams;
use super::inplace::{min_shift, RowGeometry, ShiftDirection};
use super::{as_i8, as_i8_mut, as_typed, OpCtx, OpMem};
use crate::error::{Error, Location};
use crate::format::{DType, TensorDesc};
use crate::quant::multiply_by_quantized_multiplier;
use crate::simd::{self, Isa};

/// Parameters of a CONV_2D op: everything TFLM computes in `Prepare`.
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct ConvParams {
    /// Vertical stride (≥ 1).
    pub stride_h: u32,
    /// Horizontal stride (≥ 1).
    pub stride_w: u32,
    /// Vertical dilation factor (≥ 1).
    pub dilation_h: u32,
    /// Horizontal dilation factor (≥ 1).
    pub dilation_w: u32,
    /// Rows of implicit zero padding above the input (TFLM `padding_values.height`).
    pub pad_h: u32,
    /// Columns of implicit zero padding left of the input (TFLM `padding_values.width`).
    pub pad_w: u32,
    /// `-input_zero_point`, in `[-127, 128]`.
    pub input_offset: i32,
    /// The output zero point, in `[-128, 127]`.
    pub output_offset: i32,
    /// Lower clamp of the fused activation (quantized), in `[-128, 127]`.
    pub act_min: i32,
    /// Upper clamp of the fused activation (quantized), `act_min ≤ act_max ≤ 127`.
    pub act_max: i32,
    /// Byte offset in the constant section of `channel_count` Q31 multipliers (`i32`, ≥ 0).
    pub multipliers_offset: u32,
    /// Byte offset in the constant section of `channel_count` shifts (`i32`, positive = left, in `[-31, 30]`).
    pub shifts_offset: u32,
    /// Number of output channels (= filter dimension 0 = output dimension 3).
    pub channel_count: u32,
    /// Weight layout for the SIMD kernels: [`LAYOUT_REFERENCE`] (the filter only) or
    /// [`LAYOUT_PACKED`] (also the filter packed by [`crate::simd::pack_weights`] and folded biases).
    pub layout: u32,
    /// With [`LAYOUT_PACKED`]: byte offset in the constant section of the filter packed as an
    /// `O × (H·W·I)` matrix ([`crate::simd::packed_len`] bytes). Else zero.
    pub packed_offset: u32,
    /// With [`LAYOUT_PACKED`]: byte offset in the constant section of `2·O` `i32` biases with the
    /// input offset folded in ([`crate::simd::fold_bias`]): the signed set, then the unsigned
    /// set. Else zero.
    pub folded_bias_offset: u32,
}

/// [`ConvParams::layout`] (and FULLY_CONNECTED's): only the reference filter layout is stored.
pub const LAYOUT_REFERENCE: u32 = 0;
/// [`ConvParams::layout`] (and FULLY_CONNECTED's): the filter is also stored packed for the
/// SIMD matrix kernels, with folded biases.
pub const LAYOUT_PACKED: u32 = 1;

/// Number of output channels accumulated together on the stack by the window kernels.
pub(crate) const CHUNK: usize = 32;

/// The error the pure kernels return when called with inconsistent shapes or parameters.
pub(crate) fn kernel_error(field: &'static str) -> Error {
    Error::InvalidField {
        at: Location::Arena,
        field,
    }
}

/// Checks that every input coordinate a window kernel computes along one axis fits in `i32`:
/// `(out − 1)·stride + (filter − 1)·dilation ≤ i32::MAX` and `pad ≤ i32::MAX`, with stride and
/// dilation ≥ 1.
pub(crate) fn check_axis(
    out: usize,
    stride: u32,
    filter: usize,
    dilation: u32,
    pad: u32,
) -> Result<(), &'static str> {
    if stride == 0 || stride > i32::MAX as u32 {
        return Err("stride (must be in 1..=i32::MAX)");
    }
    if dilation == 0 || dilation > i32::MAX as u32 {
        return Err("dilation (must be in 1..=i32::MAX)");
    }
    if pad > i32::MAX as u32 {
        return Err("padding");
    }
    let reach = (out.saturating_sub(1) as u64)
        .checked_mul(stride as u64)
        .and_then(|a| {
            (filter.saturating_sub(1) as u64)
                .checked_mul(dilation as u64)
                .and_then(|b| a.checked_add(b))
        });
    match reach {
        Some(r) if r <= i32::MAX as u64 => Ok(()),
        _ => Err("window reach (stride/dilation too large for the shape)"),
    }
}

/// Checks the quantization scalars shared by the int8 window and matrix kernels.
pub(crate) fn check_quant(
    input_offset: i32,
    output_offset: i32,
    act_min: i32,
    act_max: i32,
) -> Result<(), &'static str> {
    if !(-127..=128).contains(&input_offset) {
        return Err("input_offset");
    }
    if !(-128..=127).contains(&output_offset) {
        return Err("output_offset");
    }
    if !(-128..=127).contains(&act_min) || !(act_min..=127).contains(&act_max) {
        return Err("activation range");
    }
    Ok(())
}

/// Checks per-channel multipliers (≥ 0) and shifts (in `[-31, 30]`, TFLite's `QuantizeMultiplier` range).
#[inline(never)]
pub(crate) fn check_channel_quant(multipliers: &[i32], shifts: &[i32]) -> Result<(), &'static str> {
    if multipliers.len() != shifts.len() {
        return Err("multiplier/shift count");
    }
    // Non-short-circuiting folds, which the compiler vectorizes (this runs on every invoke).
    if multipliers.iter().fold(false, |bad, &m| bad | (m < 0)) {
        return Err("output multiplier");
    }
    if shifts
        .iter()
        .fold(false, |bad, &s| bad | !(-31..=30).contains(&s))
    {
        return Err("output shift");
    }
    Ok(())
}

/// The filter taps `f` in `0..filter` whose input coordinate `origin + f·dilation` lies in
/// `0..in_size` (a contiguous range, since the coordinate grows with `f`). Computed in `i64` so
/// that it cannot overflow on 32-bit targets.
#[inline]
pub(crate) fn valid_taps(
    origin: isize,
    dilation: usize,
    in_size: usize,
    filter: usize,
) -> Range<usize> {
    if dilation <= 1 {
        // No division (a 64-bit division is a library call on 32-bit cores, and this runs for
        // every output pixel of the Cortex-M kernels).
        let origin = origin as i64;
        let hi = (in_size as i64 - origin).max(0).min(filter as i64);
        return ((-origin).max(0).min(hi) as usize)..(hi as usize);
    }
    valid_taps_dilated(origin, dilation, in_size, filter)
}

/// [`valid_taps`] for a dilation above 1: out of line, as the divisions it needs take room in
/// every kernel that inlines `valid_taps` and dilated windows are rare.
#[inline(never)]
fn valid_taps_dilated(
    origin: isize,
    dilation: usize,
    in_size: usize,
    filter: usize,
) -> Range<usize> {
    let d = (dilation as i64).max(1);
    let origin = origin as i64;
    // First tap with origin + f·d ≥ 0.
    let lo = if origin >= 0 {
        0
    } else {
        (-origin + d - 1) / d
    };
    // Taps with origin + f·d < in_size, i.e. f < ceil((in_size − origin) / d).
    let room = in_size as i64 - origin;
    let hi = if room <= 0 { 0 } else { (room + d - 1) / d };
    let hi = hi.min(filter as i64);
    (lo.min(hi) as usize)..(hi as usize)
}

/// TFLM's int8 output stage: scale the accumulator, add the output zero point, clamp.
#[inline(always)]
pub(crate) fn requantize(
    acc: i32,
    multiplier: i32,
    shift: i32,
    output_offset: i32,
    act_min: i32,
    act_max: i32,
) -> i8 {
    let v = multiply_by_quantized_multiplier(acc, multiplier, shift).wrapping_add(output_offset);
    v.max(act_min).min(act_max) as i8
}

/// `Σ w·(x + x_offset)` over two equally long slices, with TFLM's 32-bit (wrapping) accumulator.
///
/// `x_offset` must lie in `[-127, 128]` (as [`check_quant`] ensures): then `x + x_offset` fits in
/// `i16` and each product is exact in `i32`, the form compilers turn into 16-bit multiply-adds.
#[inline(always)]
pub(crate) fn dot_offset(x: &[i8], w: &[i8], x_offset: i32) -> i32 {
    let off = x_offset as i16;
    x.iter().zip(w).fold(0i32, |acc, (&x, &w)| {
        acc.wrapping_add(i32::from(w) * i32::from(i16::from(x).wrapping_add(off)))
    })
}

/// Four dot products [`dot_offset`] of one input segment with four weight segments of its length.
#[inline(always)]
fn dot4_offset(x: &[i8], w: [&[i8]; 4], x_offset: i32) -> [i32; 4] {
    let off = x_offset as i16;
    let n = x.len();
    let [w0, w1, w2, w3] = w;
    // Callers pass weight segments of `x`'s length; `get` states it without a panic path.
    let (Some(w0), Some(w1), Some(w2), Some(w3)) =
        (w0.get(..n), w1.get(..n), w2.get(..n), w3.get(..n))
    else {
        return [0; 4];
    };
    let mut a = [0i32; 4];
    for i in 0..n {
        // i < n == len of every slice.
        let xv = i32::from(i16::from(x[i]).wrapping_add(off));
        a[0] = a[0].wrapping_add(i32::from(w0[i]) * xv);
        a[1] = a[1].wrapping_add(i32::from(w1[i]) * xv);
        a[2] = a[2].wrapping_add(i32::from(w2[i]) * xv);
        a[3] = a[3].wrapping_add(i32::from(w3[i]) * xv);
    }
    a
}

/// `s[start..start + len]`, or an empty slice when that range is not inside `s`.
///
/// For kernels whose indices `Model::from_bytes` validated (each call site says which check):
/// the empty fallback is never taken, it only keeps the bounds-check panic out of the binary.
#[inline(always)]
pub(crate) fn segment<T>(s: &[T], start: usize, len: usize) -> &[T] {
    s.get(start..)
        .and_then(|rest| rest.get(..len))
        .unwrap_or(&[])
}

/// Elements of a 4-D shape, or `None` on overflow.
pub(crate) fn elements4(s: [usize; 4]) -> Option<usize> {
    s.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// The 4 dimensions of tensor `t`, or a shape error naming `what`.
#[inline(never)]
pub(crate) fn dims4(
    ctx: &OpCtx,
    t: (u32, &TensorDesc),
    what: &'static str,
) -> Result<[usize; 4], Error> {
    match t.1.dims() {
        &[a, b, c, d] => Ok([a as usize, b as usize, c as usize, d as usize]),
        _ => Err(ctx.shape_error(t.0, what)),
    }
}

/// Checks shapes and parameters of a convolution; returns the number of groups.
fn check_conv(
    p: &ConvParams,
    input_shape: [usize; 4],
    filter_shape: [usize; 4],
    output_shape: [usize; 4],
) -> Result<usize, &'static str> {
    let [batches, _, _, in_c] = input_shape;
    let [out_c, f_h, f_w, f_ic] = filter_shape;
    let [o_batches, out_h, out_w, o_c] = output_shape;
    if batches != o_batches {
        return Err("batch size (input vs output)");
    }
    if out_c != o_c || out_c != p.channel_count as usize {
        return Err("output channels (filter dim 0, output dim 3, channel_count)");
    }
    if f_ic == 0 || in_c == 0 || in_c % f_ic != 0 {
        return Err("input channels (must be a multiple of the filter's input channels)");
    }
    let groups = in_c / f_ic;
    if groups == 0 || out_c % groups != 0 {
        return Err("output channels (must be a multiple of the number of groups)");
    }
    if p.layout > LAYOUT_PACKED
        || (p.layout == LAYOUT_REFERENCE && (p.packed_offset != 0 || p.folded_bias_offset != 0))
    {
        return Err("layout");
    }
    check_axis(out_h, p.stride_h, f_h, p.dilation_h, p.pad_h)?;
    check_axis(out_w, p.stride_w, f_w, p.dilation_w, p.pad_w)?;
    check_quant(p.input_offset, p.output_offset, p.act_min, p.act_max)?;
    Ok(groups)
}

/// Checks that slices hold exactly what their shapes say.
fn check_len(len: usize, shape: [usize; 4], what: &'static str) -> Result<(), &'static str> {
    if elements4(shape) == Some(len) {
        Ok(())
    } else {
        Err(what)
    }
}

/// Portable reference int8 CONV_2D (TFLM `ConvPerChannel`), NHWC input/output, OHWI filter.
///
/// `multipliers` and `shifts` hold one entry per output channel; `bias`, when present, too.
/// Returns an error (never panics) when shapes, slice lengths or parameters are inconsistent.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_int8(
    p: &ConvParams,
    input_shape: [usize; 4],
    input: &[i8],
    filter_shape: [usize; 4],
    filter: &[i8],
    bias: Option<&[i32]>,
    multipliers: &[i32],
    shifts: &[i32],
    output_shape: [usize; 4],
    output: &mut [i8],
) -> Result<(), Error> {
    let groups = check_conv(p, input_shape, filter_shape, output_shape).map_err(kernel_error)?;
    check_len(input.len(), input_shape, "input length").map_err(kernel_error)?;
    check_len(filter.len(), filter_shape, "filter length").map_err(kernel_error)?;
    check_len(output.len(), output_shape, "output length").map_err(kernel_error)?;
    let [batches, in_h, in_w, in_c] = input_shape;
    let [out_c, f_h, f_w, f_ic] = filter_shape;
    let [_, out_h, out_w, _] = output_shape;
    if multipliers.len() != out_c || bias.is_some_and(|b| b.len() != out_c) {
        return Err(kernel_error("per-channel array length"));
    }
    check_channel_quant(multipliers, shifts).map_err(kernel_error)?;
    if output.is_empty() {
        return Ok(());
    }
    // check_conv: groups >= 1 and out_c >= 1 (the output is not empty); `max(1)` says so to
    // the optimiser, which then drops the division-by-zero panic paths.
    let per_group = (out_c / groups.max(1)).max(1);
    let (stride_h, stride_w) = (p.stride_h as usize, p.stride_w as usize);
    let (dil_h, dil_w) = (p.dilation_h as usize, p.dilation_w as usize);
    // Contiguous row segments: one input channel group spanning whole pixels, unit dilation.
    // Builds with the DSP-extension kernels (`arm-dsp`) run this kernel only for the rare shapes
    // those do not take: they keep the shared general loop alone, which is smaller. Both give
    // the same (wrapping, so order-independent) sums.
    let contiguous_rows = !cfg!(feature = "arm-dsp") && groups == 1 && dil_w == 1;
    if !contiguous_rows {
        let g = GeneralWindow {
            input_shape,
            output_shape,
            filter_hw: [f_h, f_w],
            f_ic,
            per_group,
            w_oc: f_h * f_w * f_ic,
            w_tap: f_ic,
            stride: [stride_h, stride_w],
            pad: [p.pad_h as usize, p.pad_w as usize],
            dilation: [dil_h, dil_w],
            quant: [p.input_offset, p.output_offset, p.act_min, p.act_max],
        };
        window_general(&g, input, filter, bias, multipliers, shifts, output);
        return Ok(());
    }
    let mut out_pixels = output.chunks_exact_mut(out_c.max(1));
    for b in 0..batches {
        let in_batch = b * in_h * in_w * in_c;
        for oy in 0..out_h {
            // check_axis: oy·stride ≤ i32::MAX and pad ≤ i32::MAX, so this cannot overflow.
            let y0 = (oy * stride_h) as isize - p.pad_h as isize;
            let rows = valid_taps(y0, dil_h, in_h, f_h);
            for ox in 0..out_w {
                let x0 = (ox * stride_w) as isize - p.pad_w as isize;
                let cols = valid_taps(x0, dil_w, in_w, f_w);
                let Some(out_px) = out_pixels.next() else {
                    return Ok(());
                };
                for (block, outs) in out_px.chunks_mut(4).enumerate() {
                    let oc0 = block * 4;
                    let mut acc = [0i32; 4];
                    // Up to four output channels share each input row segment (none when no
                    // column is inside the input: then ix0 could lie past the row).
                    let rows = if cols.is_empty() { 0..0 } else { rows.clone() };
                    for fy in rows {
                        // valid_taps: 0 ≤ iy < in_h, cols lie in 0..f_w with ix in 0..in_w;
                        // in_c == f_ic and oc0 + outs.len() ≤ out_c, so every slice is in
                        // bounds.
                        let iy = (y0 + (fy * dil_h) as isize) as usize;
                        let ix0 = (x0 + cols.start as isize) as usize;
                        let n = cols.len() * in_c;
                        let x = segment(input, in_batch + (iy * in_w + ix0) * in_c, n);
                        let w = |k: usize| {
                            let at = ((oc0 + k) * f_h + fy) * f_w * f_ic + cols.start * f_ic;
                            segment(filter, at, n)
                        };
                        if outs.len() == 4 {
                            let d = dot4_offset(x, [w(0), w(1), w(2), w(3)], p.input_offset);
                            for (a, d) in acc.iter_mut().zip(d) {
                                *a = a.wrapping_add(d);
                            }
                        } else {
                            for (k, a) in acc.iter_mut().enumerate().take(outs.len()) {
                                *a = a.wrapping_add(dot_offset(x, w(k), p.input_offset));
                            }
                        }
                    }
                    for (k, (o, &a)) in outs.iter_mut().zip(acc.iter()).enumerate() {
                        let oc = oc0 + k;
                        // bias, multipliers and shifts hold out_c entries (checked above).
                        let a = a.wrapping_add(bias.and_then(|b| b.get(oc)).map_or(0, |&b| b));
                        let (Some(&m), Some(&sh)) = (multipliers.get(oc), shifts.get(oc)) else {
                            continue;
                        };
                        *o = requantize(a, m, sh, p.output_offset, p.act_min, p.act_max);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The geometry and output stage of [`window_general`]: a convolution whose output channel `oc`
/// reads input channels `g·f_ic .. (g + 1)·f_ic` of group `g = oc / per_group`, with the weight
/// of tap `(fy, fx)` and input channel `i` at `oc·w_oc + (fy·f_w + fx)·w_tap + i` — CONV_2D
/// (OHWI, any groups) and DEPTHWISE_CONV_2D (`1×H×W×(C·M)`: `f_ic` 1, `per_group` M, `w_oc` 1,
/// `w_tap` C·M) alike.
pub(crate) struct GeneralWindow {
    /// NHWC input shape.
    pub(crate) input_shape: [usize; 4],
    /// NHWC output shape.
    pub(crate) output_shape: [usize; 4],
    /// Filter height and width.
    pub(crate) filter_hw: [usize; 2],
    /// Input channels each output channel reads.
    pub(crate) f_ic: usize,
    /// Output channels per input channel group (≥ 1).
    pub(crate) per_group: usize,
    /// Weight stride between output channels.
    pub(crate) w_oc: usize,
    /// Weight stride between filter taps.
    pub(crate) w_tap: usize,
    /// Vertical and horizontal stride.
    pub(crate) stride: [usize; 2],
    /// Top and left padding.
    pub(crate) pad: [usize; 2],
    /// Vertical and horizontal dilation.
    pub(crate) dilation: [usize; 2],
    /// Input offset, output offset, activation minimum and maximum.
    pub(crate) quant: [i32; 4],
}

/// The general loop of the reference window kernels (one output channel at a time, any groups,
/// dilation and weight layout; see [`GeneralWindow`]), shared by CONV_2D and DEPTHWISE_CONV_2D
/// and kept out of line so that one copy serves both. The caller has checked shapes, lengths and
/// parameters (as [`conv2d_int8`] does); with inconsistent ones it computes garbage, never panics.
#[inline(never)]
pub(crate) fn window_general(
    g: &GeneralWindow,
    input: &[i8],
    filter: &[i8],
    bias: Option<&[i32]>,
    multipliers: &[i32],
    shifts: &[i32],
    output: &mut [i8],
) {
    let [batches, in_h, in_w, in_c] = g.input_shape;
    let [_, out_h, out_w, out_c] = g.output_shape;
    let [f_h, f_w] = g.filter_hw;
    let [input_offset, output_offset, act_min, act_max] = g.quant;
    let per_group = g.per_group.max(1);
    let mut out_pixels = output.chunks_exact_mut(out_c.max(1));
    for b in 0..batches {
        let in_batch = b * in_h * in_w * in_c;
        for oy in 0..out_h {
            // check_axis: oy·stride ≤ i32::MAX and pad ≤ i32::MAX, so this cannot overflow.
            let y0 = (oy * g.stride[0]) as isize - g.pad[0] as isize;
            let rows = valid_taps(y0, g.dilation[0], in_h, f_h);
            for ox in 0..out_w {
                let x0 = (ox * g.stride[1]) as isize - g.pad[1] as isize;
                let cols = valid_taps(x0, g.dilation[1], in_w, f_w);
                let Some(out_px) = out_pixels.next() else {
                    return;
                };
                for (oc, o) in out_px.iter_mut().enumerate() {
                    let group = oc / per_group;
                    let mut acc = 0i32;
                    for fy in rows.clone() {
                        // valid_taps: 0 ≤ iy < in_h.
                        let iy = (y0 + (fy * g.dilation[0]) as isize) as usize;
                        let row = in_batch + iy * in_w * in_c + group * g.f_ic;
                        for fx in cols.clone() {
                            // valid_taps: 0 ≤ ix < in_w; group·f_ic + f_ic ≤ in_c; the weight
                            // index lies inside the filter (checked shapes).
                            let ix = (x0 + (fx * g.dilation[1]) as isize) as usize;
                            let x = segment(input, row + ix * in_c, g.f_ic);
                            let w =
                                segment(filter, oc * g.w_oc + (fy * f_w + fx) * g.w_tap, g.f_ic);
                            acc = acc.wrapping_add(dot_offset(x, w, input_offset));
                        }
                    }
                    // bias, multipliers and shifts hold out_c entries (checked by the caller).
                    let acc = acc.wrapping_add(bias.and_then(|b| b.get(oc)).map_or(0, |&b| b));
                    let (Some(&m), Some(&sh)) = (multipliers.get(oc), shifts.get(oc)) else {
                        continue;
                    };
                    *o = requantize(acc, m, sh, output_offset, act_min, act_max);
                }
            }
        }
    }
}

/// Bytes of the largest stack buffer the SIMD paths stage activations in: a band of padded input
/// rows for a convolution, the rows of a fully-connected layer. An op whose smallest unit (one
/// output row's window rows, one input row) does not fit runs the reference kernel.
pub const STAGE_BYTES: usize = simd::STAGE_CAPACITY;

/// Most reduction steps (4 bytes each) a convolution's packed filter may have on the fast path:
/// the step offsets live in a stack table.
pub const MAX_STEPS: usize = 2048;

/// Bytes after the last staged row that a matrix kernel may read (and multiply by zero weights).
const SLACK: usize = 4;

/// The offline-packed weights of a CONV_2D or FULLY_CONNECTED op ([`LAYOUT_PACKED`]).
#[derive(Debug, Clone, Copy)]
pub struct PackedFilter<'a> {
    /// The `n × k` weight matrix packed by [`crate::simd::pack_weights`] (for CONV_2D, the filter
    /// expanded by [`expand_filter`] first).
    pub weights: &'a [i8],
    /// `bias + input_offset · Σ w` per output ([`crate::simd::fold_bias`], signed set).
    pub bias_signed: &'a [i32],
    /// `bias + (input_offset − 128) · Σ w` per output (unsigned set).
    pub bias_unsigned: &'a [i32],
}

impl<'a> PackedFilter<'a> {
    /// Reads the packed filter of an op with `n` outputs and reduction length `k`, when the
    /// compiler stored one (`layout`, `packed_offset` and `folded_bias_offset` as in
    /// [`ConvParams`]).
    pub(crate) fn read(
        ctx: &OpCtx<'a>,
        layout: u32,
        packed_offset: u32,
        folded_bias_offset: u32,
        n: usize,
        k: usize,
    ) -> Result<Option<PackedFilter<'a>>, Error> {
        match layout {
            LAYOUT_REFERENCE => Ok(None),
            LAYOUT_PACKED => {
                let len = simd::packed_len(n, k).ok_or(ctx.param_error("packed weight size"))?;
                let weights = ctx.const_array::<i8>(packed_offset, len)?;
                let count = n
                    .checked_mul(2)
                    .ok_or(ctx.param_error("folded bias size"))?;
                let biases = ctx.const_array::<i32>(folded_bias_offset, count)?;
                // `biases` holds `2·n` entries, so this splits at `n`; the `min` says so without
                // a panic path (`const_array` is out of line).
                let (bias_signed, bias_unsigned) = biases.split_at(n.min(biases.len()));
                Ok(Some(PackedFilter {
                    weights,
                    bias_signed,
                    bias_unsigned,
                }))
            }
            _ => Err(ctx.param_error("layout")),
        }
    }

    /// The folded bias for kernels reading activations in `enc`.
    pub(crate) fn bias(&self, enc: simd::Encoding) -> &'a [i32] {
        match enc {
            simd::Encoding::Signed => self.bias_signed,
            simd::Encoding::Unsigned => self.bias_unsigned,
        }
    }

    /// Whether the arrays have the sizes of an `n × k` matrix.
    pub(crate) fn fits(&self, n: usize, k: usize) -> bool {
        simd::packed_len(n, k) == Some(self.weights.len())
            && self.bias_signed.len() == n
            && self.bias_unsigned.len() == n
    }
}

/// How a CONV_2D filter's reduction is laid out in its packed matrix: `count` segments of `len`
/// filter bytes, each followed by zeros up to `padded` bytes (a multiple of 4), so that no
/// 4-byte step of the matrix kernels straddles two segments. A segment is one filter row
/// (`W·I` bytes, contiguous in the input when `dilation_w` is 1), else one tap (`I` bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    /// Segments per output channel.
    pub count: usize,
    /// Filter bytes per segment.
    pub len: usize,
    /// Bytes per segment in the packed matrix.
    pub padded: usize,
}

impl Segments {
    /// The segments of an OHWI filter of shape `filter_shape` with horizontal dilation
    /// `dilation_w`, or `None` on overflow.
    pub fn of(filter_shape: [usize; 4], dilation_w: u32) -> Option<Segments> {
        let [_, f_h, f_w, f_ic] = filter_shape;
        let (count, len) = if dilation_w == 1 {
            (f_h, f_w.checked_mul(f_ic)?)
        } else {
            (f_h.checked_mul(f_w)?, f_ic)
        };
        let padded = len.checked_add(3)? / 4 * 4;
        count.checked_mul(padded)?;
        Some(Segments { count, len, padded })
    }

    /// Columns of the packed matrix: `count · padded`.
    pub fn k(&self) -> usize {
        self.count * self.padded
    }
}

/// Expands an OHWI filter into the `O × segments.k()` matrix [`crate::simd::pack_weights`]
/// packs for CONV_2D: each segment's bytes, then zeros (see [`Segments`]).
pub fn expand_filter(
    filter: &[i8],
    filter_shape: [usize; 4],
    dilation_w: u32,
    out: &mut [i8],
) -> Result<(), Error> {
    let seg = Segments::of(filter_shape, dilation_w).ok_or(kernel_error("filter size"))?;
    let n = filter_shape[0];
    if elements4(filter_shape) != Some(filter.len()) || n.checked_mul(seg.k()) != Some(out.len()) {
        return Err(kernel_error("expanded filter length"));
    }
    out.fill(0);
    if seg.len == 0 {
        return Ok(());
    }
    for (dst, src) in out
        .chunks_exact_mut(seg.padded)
        .zip(filter.chunks_exact(seg.len))
    {
        dst[..seg.len].copy_from_slice(src);
    }
    Ok(())
}

/// The window geometry of a CONV_2D or DEPTHWISE_CONV_2D: `[height, width]` pairs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) filter: [usize; 2],
    pub(crate) stride: [usize; 2],
    pub(crate) dilation: [usize; 2],
    pub(crate) pad: [usize; 2],
}

impl Window {
    /// The geometry of a convolution with these parameters and filter height and width.
    pub(crate) fn of(p: &ConvParams, filter_hw: [usize; 2]) -> Window {
        Window {
            filter: filter_hw,
            stride: [p.stride_h as usize, p.stride_w as usize],
            dilation: [p.dilation_h as usize, p.dilation_w as usize],
            pad: [p.pad_h as usize, p.pad_w as usize],
        }
    }
}

/// The padded input a fast window op stages, band by band: rows of the input with `pad_w`
/// pixels of zero point on the left and enough on the right for every window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PaddedInput {
    /// Bytes per staged row.
    pub(crate) row_bytes: usize,
    /// Staged rows the window of one output row spans: `(H − 1)·dilation_h + 1`.
    window_rows: usize,
    /// Staged rows from one output row's window to the next: `stride_h`, or `window_rows`
    /// when that is smaller (the rows between two windows, which no window reads, are skipped:
    /// a 1×1 stride-2 convolution stages every other row).
    row_step: usize,
    /// Most output rows per band, so that a band fits the limit.
    pub(crate) band_rows: usize,
}

impl PaddedInput {
    /// The staging geometry of a window op in bands of at most `limit` (≤ [`STAGE_BYTES`])
    /// bytes, or `None` if one output row does not fit.
    pub(crate) fn of(
        win: &Window,
        input_shape: [usize; 4],
        output_shape: [usize; 4],
        limit: usize,
    ) -> Option<PaddedInput> {
        let [_, _, in_w, in_c] = input_shape;
        let [_, out_h, out_w, _] = output_shape;
        let eff_w = (win.filter[1].checked_sub(1)?).checked_mul(win.dilation[1])? + 1;
        let reach = (out_w.checked_sub(1)?).checked_mul(win.stride[1])? + eff_w;
        let width = reach.max(win.pad[1].checked_add(in_w)?);
        let row_bytes = width.checked_mul(in_c)?;
        let window_rows = (win.filter[0].checked_sub(1)?).checked_mul(win.dilation[0])? + 1;
        let first = window_rows.checked_mul(row_bytes)?.checked_add(SLACK)?;
        let limit = limit.min(STAGE_BYTES);
        if first > limit || row_bytes == 0 {
            return None;
        }
        let row_step = win.stride[0].min(window_rows);
        let step = row_step.checked_mul(row_bytes)?;
        let band_rows = ((limit - first) / step.max(1) + 1).min(out_h.max(1));
        Some(PaddedInput {
            row_bytes,
            window_rows,
            row_step,
            band_rows,
        })
    }

    /// Bytes staged for a band of `rows` output rows (with the slack a kernel may read).
    pub(crate) fn bytes(&self, rows: usize) -> usize {
        ((rows - 1) * self.row_step + self.window_rows) * self.row_bytes + SLACK
    }

    /// Bytes from one output row's staged window to the next's.
    pub(crate) fn y_stride(&self) -> usize {
        self.row_step * self.row_bytes
    }

    /// Stages the padded input rows of output rows `r0 .. r1` of batch `b` through `dst`
    /// ([`Self::bytes`] of them when the buffer is large enough): `pad_byte` in the padding,
    /// each input byte XOR `flip`. `input` is the whole NHWC input.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn stage(
        &self,
        win: &Window,
        input: &[u8],
        input_shape: [usize; 4],
        b: usize,
        [r0, r1]: [usize; 2],
        pad_byte: u8,
        flip: u8,
        dst: &mut simd::StageWriter,
    ) {
        let [_, in_h, in_w, in_c] = input_shape;
        let pad_left = win.pad[1] * in_c;
        let in_row = in_w * in_c;
        let pad_right = self.row_bytes.saturating_sub(pad_left + in_row);
        // row_bytes >= 1 (PaddedInput::of); `max(1)` drops the division-by-zero panic path.
        let rows = self.bytes(r1 - r0).saturating_sub(SLACK) / self.row_bytes.max(1);
        // row_step >= 1 (stride and window rows are); `max(1)` drops the division-by-zero
        // panic path.
        let step = self.row_step.max(1);
        // Staged row `i` is row `i % step` of output row `r0 + i / step`'s window (every row
        // from `r0`'s window on when `row_step` is the stride); padded row `py` is input row
        // `py − pad_h`. Counted up rather than divided per row.
        let (mut window_start, mut within) = (r0 * win.stride[0], 0usize);
        let row = |_: usize| {
            let py = window_start + within;
            within += 1;
            if within == step {
                within = 0;
                window_start += win.stride[0];
            }
            py.checked_sub(win.pad[0])
                .filter(|&y| y < in_h)
                .and_then(|iy| input.get((b * in_h + iy) * in_row..)?.get(..in_row))
        };
        dst.padded_rows(rows, row, [pad_left, in_row, pad_right], pad_byte, flip);
        dst.fill(SLACK, pad_byte);
    }
}

/// The SIMD tier a CONV_2D runs on, or `None` for the reference kernel: a packed filter, one
/// group, at most [`MAX_STEPS`] reduction steps, and one output row's window rows of padded
/// input within [`STAGE_BYTES`].
pub fn conv_fast_isa(
    isa: Option<Isa>,
    packed: bool,
    p: &ConvParams,
    [input_shape, filter_shape, output_shape]: [[usize; 4]; 3],
) -> Option<Isa> {
    let isa = isa?;
    let grouped = input_shape[3] != filter_shape[3];
    let seg = Segments::of(filter_shape, p.dilation_w)?;
    let steps = seg.k() / simd::BLOCK_K;
    let win = Window::of(p, [filter_shape[1], filter_shape[2]]);
    let staged = PaddedInput::of(&win, input_shape, output_shape, STAGE_BYTES).is_some();
    (packed && !grouped && (1..=MAX_STEPS).contains(&steps) && staged).then_some(isa)
}

/// CONV_2D with the fastest kernel available: `isa`'s matrix kernel over `packed` weights when
/// [`conv_fast_isa`] allows it, else [`conv2d_int8`]. Same arguments and results as
/// [`conv2d_int8`], bit for bit.
///
/// Out of line on microcontrollers: inlined into ahead-of-time code (`crate::aot`), the
/// reference path compiled about 20 % slower on the Cortex-M3 (KWS's 1×1 convolutions).
#[allow(clippy::too_many_arguments)]
#[cfg_attr(target_os = "none", inline(never))]
pub fn conv2d_int8_fast(
    isa: Option<Isa>,
    packed: Option<&PackedFilter>,
    p: &ConvParams,
    input_shape: [usize; 4],
    input: &[i8],
    filter_shape: [usize; 4],
    filter: &[i8],
    bias: Option<&[i32]>,
    multipliers: &[i32],
    shifts: &[i32],
    output_shape: [usize; 4],
    output: &mut [i8],
) -> Result<(), Error> {
    let shapes = [input_shape, filter_shape, output_shape];
    let fast = conv_fast_isa(isa, packed.is_some(), p, shapes);
    let (Some(isa), Some(packed)) = (fast, packed) else {
        return conv2d_int8(
            p,
            input_shape,
            input,
            filter_shape,
            filter,
            bias,
            multipliers,
            shifts,
            output_shape,
            output,
        );
    };
    check_len(filter.len(), filter_shape, "filter length").map_err(kernel_error)?;
    // The bias is folded into the packed filter's.
    let io = ConvIo::Split { input, output };
    conv_packed(isa, packed, p, shapes, multipliers, shifts, io, None)
}

/// CONV_2D over its own input (the in-place shift modes: the output `D` bytes below the input
/// in `buf` for [`ShiftDirection::Down`], above it for `Up`) on the fast path, in one pass with
/// [`ConvIo::Shared`], when [`conv_fast_isa`] allows it and `D` is at least
/// [`min_shift`] (the check the band-by-band driver makes). Returns `Ok(false)` when the caller
/// must run the band driver instead. Results equal [`conv2d_int8`]'s bit for bit.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_int8_fast_in_place(
    isa: Option<Isa>,
    packed: Option<&PackedFilter>,
    p: &ConvParams,
    shapes: [[usize; 4]; 3],
    multipliers: &[i32],
    shifts: &[i32],
    buf: &mut [i8],
    input_at: usize,
    output_at: usize,
    dir: ShiftDirection,
) -> Result<bool, Error> {
    let (Some(isa), Some(packed)) = (conv_fast_isa(isa, packed.is_some(), p, shapes), packed)
    else {
        return Ok(false);
    };
    let [input_shape, filter_shape, output_shape] = shapes;
    let g = RowGeometry::window(
        input_shape,
        output_shape,
        [filter_shape[1], filter_shape[2]],
        [p.stride_h as usize, p.stride_w as usize],
        [p.pad_h as usize, p.pad_w as usize],
        [p.dilation_h as usize, p.dilation_w as usize],
    );
    let shift = match dir {
        ShiftDirection::Down => input_at.checked_sub(output_at),
        ShiftDirection::Up => output_at.checked_sub(input_at),
    };
    match (shift, min_shift(&g, dir)) {
        (Some(d), Some(need)) if d as u64 >= need => {}
        _ => return Ok(false),
    }
    let io = ConvIo::Shared {
        buf,
        input_at,
        output_at,
        reverse: dir == ShiftDirection::Up,
    };
    conv_packed(isa, packed, p, shapes, multipliers, shifts, io, None)?;
    Ok(true)
}

/// Where a fast convolution reads its input and writes its output.
pub enum ConvIo<'a> {
    /// Separate input and output slices.
    Split {
        /// The input, NHWC.
        input: &'a [i8],
        /// The output, NHWC.
        output: &'a mut [i8],
    },
    /// One buffer holding both (the in-place shift modes): the input starts at `input_at`, the
    /// output at `output_at`. Output rows are produced in bands, first to last (last to first
    /// when `reverse`), each band's input staged before any of its outputs is written; so the
    /// result is [`conv2d_int8`]'s whenever no output pixel overlaps input that it or a later
    /// pixel (in production order) reads.
    Shared {
        /// The buffer.
        buf: &'a mut [i8],
        /// Offset of the input in `buf`.
        input_at: usize,
        /// Offset of the output in `buf`.
        output_at: usize,
        /// Produce pixels last to first.
        reverse: bool,
    },
}

impl ConvIo<'_> {
    /// Checks that the input (`in_len` bytes) and output (`out_len`) are where they should be.
    pub(crate) fn check(&self, in_len: usize, out_len: usize) -> Result<(), Error> {
        let ok = match self {
            ConvIo::Split { input, output } => input.len() == in_len && output.len() == out_len,
            ConvIo::Shared {
                buf,
                input_at,
                output_at,
                ..
            } => {
                let fits =
                    |at: usize, len: usize| at.checked_add(len).is_some_and(|e| e <= buf.len());
                fits(*input_at, in_len) && fits(*output_at, out_len)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(kernel_error("tensor length"))
        }
    }

    /// Whether output bands are produced last to first.
    pub(crate) fn reverse(&self) -> bool {
        matches!(self, ConvIo::Shared { reverse: true, .. })
    }

    /// The input bytes.
    pub(crate) fn input(&self, len: usize) -> &[u8] {
        match self {
            ConvIo::Split { input, .. } => bytemuck::cast_slice(input),
            // `conv_packed_in` checked that the span fits; `get` only spares a panic path.
            ConvIo::Shared { buf, input_at, .. } => {
                bytemuck::cast_slice(segment(buf, *input_at, len))
            }
        }
    }

    /// Output bytes `span`.
    pub(crate) fn output(&mut self, span: Range<usize>) -> &mut [i8] {
        match self {
            // Spans inside the checked output length (`conv_packed_in`); the empty fallback is
            // never taken (and the kernels would refuse it), it only spares a panic path.
            ConvIo::Split { output, .. } => output.get_mut(span).unwrap_or_default(),
            ConvIo::Shared { buf, output_at, .. } => buf
                .get_mut(*output_at + span.start..*output_at + span.end)
                .unwrap_or_default(),
        }
    }
}

/// An ADD fused after a convolution: each output is `ADD(conv, residual)` with TFLM's recipe,
/// the convolution's value being the int8 CONV_2D would have stored.
#[derive(Debug, Clone, Copy)]
pub struct AddEpilogue<'a> {
    /// The ADD's parameters.
    pub params: &'a ArithParams,
    /// Whether the residual is the ADD's first operand.
    pub residual_first: bool,
    /// The residual (the output's shape), or `None` when the output holds it on entry.
    pub residual: Option<&'a [i8]>,
}

/// CONV_2D on `isa`'s matrix kernel over a packed filter, reading and writing through `io`,
/// optionally with a fused ADD. Results equal [`conv2d_int8`]'s (followed by the ADD's) bit for
/// bit. Checks every shape and length; returns an error (never panics) on inconsistencies.
///
/// The input is staged in bands of output rows: the padded input rows the band's windows span
/// (zero point in the padding, and `x ^ 0x80` for tiers reading unsigned bytes), so that the
/// matrix kernel reads every window in place — implicit im2col.
#[allow(clippy::too_many_arguments)]
pub fn conv_packed(
    isa: Isa,
    packed: &PackedFilter,
    p: &ConvParams,
    shapes: [[usize; 4]; 3],
    multipliers: &[i32],
    shifts: &[i32],
    io: ConvIo,
    epilogue: Option<&AddEpilogue>,
) -> Result<(), Error> {
    let limit = STAGE_BYTES;
    conv_packed_in(
        isa,
        packed,
        p,
        shapes,
        multipliers,
        shifts,
        io,
        epilogue,
        limit,
    )
}

/// [`conv_packed`] with bands of at most `stage_limit` staged bytes (tests use small ones).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_packed_in(
    isa: Isa,
    packed: &PackedFilter,
    p: &ConvParams,
    shapes: [[usize; 4]; 3],
    multipliers: &[i32],
    shifts: &[i32],
    mut io: ConvIo,
    epilogue: Option<&AddEpilogue>,
    stage_limit: usize,
) -> Result<(), Error> {
    let [input_shape, filter_shape, output_shape] = shapes;
    check_conv(p, input_shape, filter_shape, output_shape).map_err(kernel_error)?;
    let in_len = elements4(input_shape).ok_or(kernel_error("input length"))?;
    let out_len = elements4(output_shape).ok_or(kernel_error("output length"))?;
    match &io {
        ConvIo::Split { input, output } => {
            if input.len() != in_len || output.len() != out_len {
                return Err(kernel_error("tensor length"));
            }
        }
        ConvIo::Shared {
            buf,
            input_at,
            output_at,
            ..
        } => {
            let fits = |at: usize, len: usize| at.checked_add(len).is_some_and(|e| e <= buf.len());
            if !fits(*input_at, in_len) || !fits(*output_at, out_len) {
                return Err(kernel_error("in-place buffer length"));
            }
        }
    }
    if let Some(e) = epilogue {
        if e.residual.is_some_and(|r| r.len() != out_len) {
            return Err(kernel_error("residual length"));
        }
        if matches!(io, ConvIo::Shared { .. }) && e.residual.is_none() {
            return Err(kernel_error("residual in a shared buffer"));
        }
    }
    let [batches, in_h, in_w, in_c] = input_shape;
    let [out_c, f_h, f_w, _] = filter_shape;
    let [_, out_h, out_w, _] = output_shape;
    let seg = Segments::of(filter_shape, p.dilation_w).ok_or(kernel_error("filter size"))?;
    let steps = seg.k() / simd::BLOCK_K;
    // [`conv_fast_isa`]'s conditions (the caller usually checked them, but this is public), from
    // the segments and staging geometry computed here anyway: one group, a step count in range,
    // and a staging geometry (within `stage_limit` ≤ STAGE_BYTES, so within STAGE_BYTES too).
    if input_shape[3] != filter_shape[3] || !(1..=MAX_STEPS).contains(&steps) {
        return Err(kernel_error("no fast kernel for this convolution"));
    }
    if multipliers.len() != out_c || !packed.fits(out_c, seg.k()) {
        return Err(kernel_error("per-channel array length"));
    }
    check_channel_quant(multipliers, shifts).map_err(kernel_error)?;
    let win = Window::of(p, [filter_shape[1], filter_shape[2]]);
    let staging = PaddedInput::of(&win, input_shape, output_shape, stage_limit)
        .ok_or(kernel_error("staging geometry"))?;
    if out_len == 0 {
        return Ok(());
    }
    let enc = isa.tier().encoding();
    // `check_channel_quant` above checked the multipliers and shifts: the matrix kernel calls
    // below skip that per-output scan (`gemm_checked_quant`), once per band.
    let q = simd::Requant {
        bias: Some(packed.bias(enc)),
        multipliers,
        shifts,
        output_offset: p.output_offset,
        act_min: p.act_min,
        act_max: p.act_max,
    };
    let (stride_h, stride_w) = (p.stride_h as usize, p.stride_w as usize);
    let (dil_h, dil_w) = (p.dilation_h as usize, p.dilation_w as usize);
    let pointwise = [f_h, f_w, stride_h, stride_w] == [1; 4]
        && p.pad_h == 0
        && p.pad_w == 0
        && (in_h, in_w) == (out_h, out_w);
    if let (ConvIo::Split { input, output }, None) = (&mut io, epilogue) {
        if pointwise && seg.padded == in_c && enc == simd::Encoding::Signed {
            // The input pixels are the matrix rows already.
            let a = simd::MatrixA {
                data: bytemuck::cast_slice(input),
                first: 0,
                // out_c >= 1: the output is not empty.
                rows: out_len / out_c.max(1),
                width: out_len / out_c.max(1),
                x_stride: in_c,
                y_stride: 0,
                k_steps: steps,
                k_offsets: None,
            };
            return simd::gemm_checked_quant(isa, &a, packed.weights, out_c, &q, output, out_c);
        }
    }
    // Where each reduction step reads, relative to the window's first byte.
    // Where each reduction step reads, relative to the window's first byte (inside the staged
    // window, which fits STAGE_BYTES, so the offsets fit u32): segment by segment, 4 bytes a step.
    let per_seg = seg.padded / simd::BLOCK_K;
    let row_step = dil_h * staging.row_bytes;
    let seg_start = move |g: usize| {
        if dil_w == 1 {
            g * row_step
        } else {
            // f_w >= 1 (check_axis); `max(1)` drops the division-by-zero panic path.
            (g / f_w.max(1)) * row_step + (g % f_w.max(1)) * dil_w * in_c
        }
    };
    // check_quant: input_offset ∈ [-127, 128], so the zero point is an int8.
    let zero_point = p.input_offset.wrapping_neg() as i8 as u8;
    let (pad_byte, flip) = match enc {
        simd::Encoding::Signed => (zero_point, 0u8),
        simd::Encoding::Unsigned => (zero_point ^ 0x80, 0x80u8),
    };
    // band_rows >= 1 and out_h >= 1 (PaddedInput::of, non-empty output): `max(1)` drops the
    // division-by-zero panic paths.
    let bands = out_h.div_ceil(staging.band_rows.max(1)).max(1);
    let total = batches * bands;
    let need = staging.bytes(staging.band_rows);
    let reverse = matches!(io, ConvIo::Shared { reverse: true, .. });
    let run = |koff: &[u32]| -> Result<(), Error> {
        simd::with_stage(need, |stage| {
            // Again inside the closure, where the optimiser no longer knows `bands >= 1`.
            let bands = bands.max(1);
            for t in 0..total {
                let t = if reverse { total - 1 - t } else { t };
                let (b, band) = (t / bands, t % bands);
                let r0 = band * staging.band_rows;
                let r1 = (r0 + staging.band_rows).min(out_h);
                let mut w = stage.writer();
                let input = io.input(in_len);
                staging.stage(
                    &win,
                    input,
                    input_shape,
                    b,
                    [r0, r1],
                    pad_byte,
                    flip,
                    &mut w,
                );
                let a_bytes = w.finish();
                let a = simd::MatrixA {
                    data: a_bytes,
                    first: 0,
                    rows: (r1 - r0) * out_w,
                    width: out_w,
                    x_stride: stride_w * in_c,
                    y_stride: staging.y_stride(),
                    k_steps: steps,
                    k_offsets: Some(koff),
                };
                let start = ((b * out_h + r0) * out_w) * out_c;
                let span = start..start + a.rows * out_c;
                match epilogue {
                    None => {
                        let out = io.output(span);
                        simd::gemm_checked_quant(isa, &a, packed.weights, out_c, &q, out, out_c)?;
                    }
                    Some(e) => {
                        // A tile of outputs at a time: the convolution into `tile`, then the ADD.
                        let mut tile = [0i8; EPILOGUE_BYTES];
                        let per = (EPILOGUE_BYTES / out_c.max(1)).max(1);
                        let mut first = 0;
                        while first < a.rows {
                            let rows = per.min(a.rows - first);
                            let sub = simd::MatrixA { first, rows, ..a };
                            let conv = tile
                                .get_mut(..rows * out_c)
                                .ok_or(kernel_error("epilogue tile"))?;
                            simd::gemm_checked_quant(
                                isa,
                                &sub,
                                packed.weights,
                                out_c,
                                &q,
                                conv,
                                out_c,
                            )?;
                            let s = span.start + first * out_c;
                            let out = io.output(s..s + rows * out_c);
                            match e.residual {
                                Some(res) => {
                                    let res = res
                                        .get(s..s + rows * out_c)
                                        .ok_or(kernel_error("residual length"))?;
                                    let (x, y) = if e.residual_first {
                                        (res, &*conv)
                                    } else {
                                        (&*conv, res)
                                    };
                                    simd::add_sub(isa, e.params, false, x, y, out)?;
                                }
                                // The output holds the residual: each element is read, then replaced.
                                None => {
                                    let first = e.residual_first;
                                    simd::add_sub_assign(isa, e.params, false, out, conv, first)?;
                                }
                            }
                            first += rows;
                        }
                    }
                }
            }
            Ok(())
        })
    };
    // `steps` = count · per_seg (seg.k() / 4).
    simd::with_segment_offsets(seg.count, per_seg, seg_start, run)
        .unwrap_or(Err(kernel_error("reduction steps")))
}

/// Bytes of the stack tile a fused epilogue stages convolution outputs in.
const EPILOGUE_BYTES: usize = 4096;

/// The per-channel multipliers and shifts of a window op.
pub(crate) fn channel_quant<'a>(
    ctx: &OpCtx<'a>,
    multipliers_offset: u32,
    shifts_offset: u32,
    count: usize,
) -> Result<(&'a [i32], &'a [i32]), Error> {
    let (m, s) = channel_quant_validated(ctx, multipliers_offset, shifts_offset, count)?;
    check_channel_quant(m, s).map_err(|f| ctx.param_error(f))?;
    Ok((m, s))
}

/// [`channel_quant`] on the invoke path of an op whose `validate` ran [`channel_quant`] on the
/// same offsets and count: the arrays only, without the per-channel value scan. Relies on the
/// invariant that `Model::from_bytes` validated every op over the model's bytes, which the
/// model borrows immutably (so they cannot have changed since): the values are the ones
/// `validate` accepted. Every access stays checked (a missing or short array is still an
/// error), and the host kernels check the values again in their public entry points
/// ([`conv_packed`], [`conv2d_int8`]), once per call rather than once per op and per call.
pub(crate) fn channel_quant_validated<'a>(
    ctx: &OpCtx<'a>,
    multipliers_offset: u32,
    shifts_offset: u32,
    count: usize,
) -> Result<(&'a [i32], &'a [i32]), Error> {
    let m = ctx.const_array::<i32>(multipliers_offset, count)?;
    let s = ctx.const_array::<i32>(shifts_offset, count)?;
    Ok((m, s))
}

/// Checks the optional int32 bias (input 2) holds `channels` elements.
pub(crate) fn check_bias(ctx: &OpCtx, channels: usize) -> Result<(), Error> {
    if ctx.input_count() < 2 || ctx.input_count() > 3 {
        return Err(ctx.param_error("input_count"));
    }
    if ctx.input_count() == 3 {
        if let Some(b) = ctx.input(2)? {
            ctx.expect_dtype(b, DType::Int32)?;
            if b.1.elements() != channels as u64 {
                return Err(ctx.shape_error(b.0, "a bias with one int32 per output channel"));
            }
        }
    }
    Ok(())
}

/// The optional bias of a window/matrix op as `i32`s.
pub(crate) fn bias_input<'a>(ctx: &OpCtx, mem: &OpMem<'a>) -> Result<Option<&'a [i32]>, Error> {
    if ctx.input_count() < 3 {
        return Ok(None);
    }
    match mem.input(2)? {
        None => Ok(None),
        Some(b) => as_typed::<i32>(b).map(Some),
    }
}

/// Tensor shapes of a convolution, checked against each other and the parameters.
pub(crate) fn conv_shapes(ctx: &OpCtx, p: &ConvParams) -> Result<[[usize; 4]; 3], Error> {
    let [is, fs, os] = int8_window_shapes(ctx, "a 4-D OHWI filter")?;
    check_conv(p, is, fs, os).map_err(|f| ctx.param_error(f))?;
    Ok([is, fs, os])
}

/// The 4-D shapes of the int8 input 0, filter (input 1, `filter` naming its layout in errors)
/// and output 0 of a window op (CONV_2D, DEPTHWISE_CONV_2D): one out-of-line copy for both.
#[inline(never)]
pub(crate) fn int8_window_shapes(
    ctx: &OpCtx,
    filter: &'static str,
) -> Result<[[usize; 4]; 3], Error> {
    let input = ctx.required_input(0)?;
    let weights = ctx.required_input(1)?;
    let output = ctx.output(0)?;
    ctx.expect_dtype(input, DType::Int8)?;
    ctx.expect_dtype(weights, DType::Int8)?;
    ctx.expect_dtype(output, DType::Int8)?;
    Ok([
        dims4(ctx, input, "a 4-D NHWC input")?,
        dims4(ctx, weights, filter)?,
        dims4(ctx, output, "a 4-D NHWC output")?,
    ])
}

/// Checks a CONV_2D op (see the module documentation).
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    let p: &ConvParams = ctx.params()?;
    if ctx.desc.output_count != 1 {
        return Err(ctx.param_error("output_count"));
    }
    let [_, fs, _] = conv_shapes(ctx, p)?;
    check_bias(ctx, fs[0])?;
    channel_quant(ctx, p.multipliers_offset, p.shifts_offset, fs[0])?;
    packed_filter(ctx, p, fs)?;
    Ok(())
}

/// The packed filter of a CONV_2D op, if the compiler stored one.
pub fn packed_filter<'a>(
    ctx: &OpCtx<'a>,
    p: &ConvParams,
    filter_shape: [usize; 4],
) -> Result<Option<PackedFilter<'a>>, Error> {
    let k = Segments::of(filter_shape, p.dilation_w)
        .ok_or(ctx.param_error("filter size"))?
        .k();
    let out_c = filter_shape[0];
    PackedFilter::read(
        ctx,
        p.layout,
        p.packed_offset,
        p.folded_bias_offset,
        out_c,
        k,
    )
}

/// The kernel a CONV_2D op runs on this CPU: a SIMD tier's name or `reference`.
pub(crate) fn kernel_name(ctx: &OpCtx) -> &'static str {
    // A fused ADD epilogue appends its parameters to the convolution's.
    let prefix = ctx.params.get(..core::mem::size_of::<ConvParams>());
    let Some(Ok(p)) = prefix.map(bytemuck::try_from_bytes::<ConvParams>) else {
        return "reference";
    };
    let Ok(shapes) = conv_shapes(ctx, p) else {
        return "reference";
    };
    let packed = matches!(packed_filter(ctx, p, shapes[1]), Ok(Some(_)));
    conv_fast_isa(Isa::best(), packed, p, shapes).map_or("reference", Isa::name)
}

/// Runs a CONV_2D op.
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem) -> Result<(), Error> {
    let p: &ConvParams = ctx.params()?;
    let [is, fs, os] = conv_shapes(ctx, p)?;
    // `validate` checked them (channel_quant); every kernel below checks them again.
    let (multipliers, shifts) =
        channel_quant_validated(ctx, p.multipliers_offset, p.shifts_offset, fs[0])?;
    let input = as_i8(mem.required_input(0)?);
    let filter = as_i8(mem.required_input(1)?);
    let bias = bias_input(ctx, &mem)?;
    let output = as_i8_mut(mem.output);
    #[cfg(all(target_arch = "arm", feature = "arm-mve"))]
    if crate::simd::mve::conv2d_int8(
        p,
        is,
        input,
        fs,
        filter,
        bias,
        multipliers,
        shifts,
        os,
        output,
    )
    .is_some()
    {
        return Ok(());
    }
    #[cfg(feature = "arm-dsp")]
    if crate::simd::arm_dsp::conv2d_int8(
        p,
        is,
        input,
        fs,
        filter,
        bias,
        multipliers,
        shifts,
        os,
        output,
    )
    .is_some()
    {
        return Ok(());
    }
    let packed = packed_filter(ctx, p, fs)?;
    conv2d_int8_fast(
        Isa::best(),
        packed.as_ref(),
        p,
        is,
        input,
        fs,
        filter,
        bias,
        multipliers,
        shifts,
        os,
        output,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::super::OpKind;
    use super::*;
    use crate::format::{OpDesc, Storage, NONE};

    /// One op with its tensors, parameters and constants, runnable through `validate` + `eval`.
    pub(crate) struct Harness {
        pub(crate) kind: OpKind,
        pub(crate) tensors: Vec<TensorDesc>,
        pub(crate) inputs: Vec<u32>,
        pub(crate) output: u32,
        pub(crate) params: Vec<u32>,
        consts: Vec<u128>,
        consts_len: usize,
        arena: Vec<u8>,
    }

    impl Harness {
        pub(crate) fn new(kind: OpKind) -> Self {
            Harness {
                kind,
                tensors: Vec::new(),
                inputs: Vec::new(),
                output: NONE,
                params: Vec::new(),
                consts: Vec::new(),
                consts_len: 0,
                arena: Vec::new(),
            }
        }

        fn desc(shape: &[u32], dtype: DType, storage: Storage, offset: u32) -> TensorDesc {
            let mut s = [0u32; 6];
            s[..shape.len()].copy_from_slice(shape);
            let bytes = shape.iter().product::<u32>() * dtype.size() as u32;
            TensorDesc {
                shape: s,
                rank: shape.len() as u8,
                dtype: dtype as u8,
                storage: storage as u8,
                reserved: 0,
                scale: 0.0,
                zero_point: 0,
                offset,
                bytes,
                name: NONE,
            }
        }

        /// Appends 16-byte aligned constant bytes; returns their offset.
        pub(crate) fn add_const(&mut self, data: &[u8]) -> u32 {
            let off = self.consts_len.div_ceil(16) * 16;
            let end = off + data.len();
            self.consts.resize(end.div_ceil(16), 0);
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut self.consts);
            bytes[off..end].copy_from_slice(data);
            self.consts_len = end;
            off as u32
        }

        pub(crate) fn add_i32s(&mut self, data: &[i32]) -> u32 {
            self.add_const(bytemuck::cast_slice(data))
        }

        /// Adds an input living in the arena.
        pub(crate) fn arena_input(&mut self, shape: &[u32], dtype: DType, data: &[u8]) {
            let off = self.arena.len().div_ceil(16) * 16;
            self.arena.resize(off, 0);
            self.arena.extend_from_slice(data);
            self.tensors
                .push(Self::desc(shape, dtype, Storage::Arena, off as u32));
            self.inputs.push(self.tensors.len() as u32 - 1);
        }

        /// Adds a constant input.
        pub(crate) fn const_input(&mut self, shape: &[u32], dtype: DType, data: &[u8]) {
            let off = self.add_const(data);
            self.tensors
                .push(Self::desc(shape, dtype, Storage::Const, off));
            self.inputs.push(self.tensors.len() as u32 - 1);
        }

        pub(crate) fn set_output(&mut self, shape: &[u32], dtype: DType) {
            self.tensors
                .push(Self::desc(shape, dtype, Storage::Arena, 0));
            self.output = self.tensors.len() as u32 - 1;
        }

        pub(crate) fn set_params<T: Pod>(&mut self, p: &T) {
            self.params = bytemuck::cast_slice(bytemuck::bytes_of(p)).to_vec();
        }

        fn io(&self) -> Vec<u32> {
            let mut io = self.inputs.clone();
            io.push(self.output);
            io
        }

        fn op_desc(&self) -> OpDesc {
            OpDesc {
                kind: self.kind as u16,
                input_count: self.inputs.len() as u8,
                output_count: 1,
                io_start: 0,
                params_offset: 0,
                params_len: (self.params.len() * 4) as u32,
                scratch_offset: 0,
                scratch_bytes: 0,
                name: NONE,
                flags: 0,
            }
        }

        /// Validates, then evaluates the op; returns the output bytes.
        pub(crate) fn run(&self) -> Result<Vec<u8>, Error> {
            let desc = self.op_desc();
            let io = self.io();
            let consts: &[u8] = bytemuck::cast_slice(&self.consts);
            let ctx = OpCtx {
                index: 0,
                kind: self.kind,
                desc: &desc,
                io: &io,
                params: bytemuck::cast_slice(&self.params),
                tensors: &self.tensors,
                consts: &consts[..self.consts_len],
            };
            super::super::validate(&ctx)?;
            let out_desc = self.tensors[self.output as usize];
            // 16-byte aligned copies, as in a real arena (a `Vec<u8>` may be anywhere: Miri
            // places it at random, and wider tensors must be aligned to their element).
            let n = out_desc.bytes as usize;
            let mut arena = vec![0u128; self.arena.len().div_ceil(16)];
            let arena: &mut [u8] = bytemuck::cast_slice_mut(&mut arena);
            let arena = &mut arena[..self.arena.len()];
            arena.copy_from_slice(&self.arena);
            let mut out = vec![0u128; n.div_ceil(16)];
            let out: &mut [u8] = &mut bytemuck::cast_slice_mut(&mut out)[..n];
            let mem = OpMem {
                below: arena,
                above: &[],
                above_start: usize::MAX,
                output: out,
                scratch: &mut [],
                ctx,
            };
            super::super::eval(&ctx, mem)?;
            Ok(out.to_vec())
        }
    }

    /// How many random cases a randomized test runs: `full` natively, `miri` under Miri, which
    /// runs the same code some thousand times slower (tools/ci/reliability.sh runs the reference
    /// kernels' tests under Miri with these counts and keeps the whole step within minutes).
    pub(crate) const fn cases(full: usize, miri: usize) -> usize {
        if cfg!(miri) {
            miri
        } else {
            full
        }
    }

    /// Whether combination `i` of an exhaustive test runs: every one natively, every 89th under
    /// Miri (a prime stride, so that fields and values vary).
    pub(crate) const fn sampled(i: usize) -> bool {
        i % cases(1, 89) == 0
    }

    pub(crate) fn bytes_i8(v: &[i8]) -> &[u8] {
        bytemuck::cast_slice(v)
    }

    /// A small deterministic generator for randomized tests (xorshift64*).
    pub(crate) struct Rng(pub u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        /// Uniform in `lo..=hi`.
        pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
            lo + (self.next() % ((hi - lo + 1) as u64)) as i64
        }
        pub(crate) fn i8s(&mut self, n: usize, lo: i64, hi: i64) -> [i8; 4096] {
            let mut v = [0i8; 4096];
            for x in v.iter_mut().take(n) {
                *x = self.range(lo, hi) as i8;
            }
            v
        }
        /// A TFLite-style multiplier in [2^30, 2^31) and a shift.
        pub(crate) fn quant(&mut self) -> (i32, i32) {
            (
                self.range(1 << 30, i32::MAX as i64) as i32,
                self.range(-12, 2) as i32,
            )
        }
    }

    /// The TFLM reference recipe, transcribed literally (independent of the kernel's loop order).
    /// Uses an i64 accumulator and asserts it never leaves the i32 range in these tests.
    #[allow(clippy::too_many_arguments)]
    fn naive_conv(
        p: &ConvParams,
        is: [usize; 4],
        input: &[i8],
        fs: [usize; 4],
        filter: &[i8],
        bias: Option<&[i32]>,
        mult: &[i32],
        shift: &[i32],
        os: [usize; 4],
        out: &mut [i8],
    ) {
        let groups = is[3] / fs[3];
        let per_group = fs[0] / groups;
        for b in 0..os[0] {
            for oy in 0..os[1] {
                for ox in 0..os[2] {
                    for oc in 0..os[3] {
                        let g = oc / per_group;
                        let mut acc: i64 = 0;
                        for fy in 0..fs[1] {
                            let iy = (oy * p.stride_h as usize) as i64 - p.pad_h as i64
                                + (fy * p.dilation_h as usize) as i64;
                            for fx in 0..fs[2] {
                                let ix = (ox * p.stride_w as usize) as i64 - p.pad_w as i64
                                    + (fx * p.dilation_w as usize) as i64;
                                if iy < 0 || ix < 0 || iy >= is[1] as i64 || ix >= is[2] as i64 {
                                    continue;
                                }
                                for ic in 0..fs[3] {
                                    let xi = ((b * is[1] + iy as usize) * is[2] + ix as usize)
                                        * is[3]
                                        + ic
                                        + g * fs[3];
                                    let wi = ((oc * fs[1] + fy) * fs[2] + fx) * fs[3] + ic;
                                    acc += filter[wi] as i64
                                        * (input[xi] as i64 + p.input_offset as i64);
                                }
                            }
                        }
                        if let Some(bias) = bias {
                            acc += bias[oc] as i64;
                        }
                        assert!(acc >= i32::MIN as i64 && acc <= i32::MAX as i64);
                        let v =
                            naive_mbqm(acc as i32, mult[oc], shift[oc]) + p.output_offset as i64;
                        let v = v.max(p.act_min as i64).min(p.act_max as i64);
                        out[((b * os[1] + oy) * os[2] + ox) * os[3] + oc] = v as i8;
                    }
                }
            }
        }
    }

    /// `MultiplyByQuantizedMultiplier` re-derived with i128 arithmetic: `x·2^left·m / 2^31`
    /// rounded half toward +∞ (gemmlowp's `SaturatingRoundingDoublingHighMul` nudge), then divided
    /// by `2^right` rounding half away from zero (`RoundingDivideByPOT`).
    pub(crate) fn naive_mbqm(x: i32, m: i32, shift: i32) -> i64 {
        let left = shift.max(0);
        let right = (-shift).max(0);
        let xs = (x as i64) << left;
        assert!(xs >= i32::MIN as i64 && xs <= i32::MAX as i64);
        let prod = xs as i128 * m as i128;
        // floor(prod / 2^31 + 1/2): `>>` on i128 is a floor division.
        let high = (prod + (1i128 << 30)) >> 31;
        // Round high / 2^right half away from zero.
        if right == 0 {
            return high as i64;
        }
        let d = 1i128 << right;
        let q = if high >= 0 {
            (high + d / 2) / d
        } else {
            -((-high + d / 2) / d)
        };
        q as i64
    }

    fn params(stride: u32, dil: u32, pad: u32, zp_in: i32, zp_out: i32, oc: usize) -> ConvParams {
        ConvParams {
            stride_h: stride,
            stride_w: stride,
            dilation_h: dil,
            dilation_w: dil,
            pad_h: pad,
            pad_w: pad,
            input_offset: -zp_in,
            output_offset: zp_out,
            act_min: -128,
            act_max: 127,
            multipliers_offset: 0,
            shifts_offset: 0,
            channel_count: oc as u32,
            layout: 0,
            packed_offset: 0,
            folded_bias_offset: 0,
        }
    }

    #[test]
    fn naive_mbqm_matches_runtime() {
        // Exact ties of both rounding steps.
        for x in (-3000..3000).step_by(cases(1, 97)) {
            for s in -4..=1 {
                assert_eq!(
                    naive_mbqm(x, 1 << 30, s),
                    multiply_by_quantized_multiplier(x, 1 << 30, s) as i64,
                    "x={x} s={s}"
                );
            }
        }
        let mut r = Rng(99);
        for _ in 0..cases(20000, 50) {
            let x = r.range(-(1 << 22), 1 << 22) as i32;
            let (m, s) = r.quant();
            assert_eq!(
                naive_mbqm(x, m, s),
                multiply_by_quantized_multiplier(x, m, s) as i64,
                "x={x} m={m} s={s}"
            );
        }
    }

    #[test]
    fn hand_computed_1x1() {
        // 1x1 conv, 2 input channels → 2 output channels, multiplier 0.5 (1<<30, shift 0).
        let p = ConvParams {
            input_offset: 1, // input zero point −1
            output_offset: 3,
            ..params(1, 1, 0, 0, 0, 2)
        };
        let input = [1i8, 2, -1, 4]; // 1x1x2x2 → two pixels
        let filter = [1i8, 1, 2, -1]; // oc0 = x0 + x1, oc1 = 2·x0 − x1 (with offsets)
        let bias = [10i32, -4];
        let mut out = [0i8; 4];
        conv2d_int8(
            &p,
            [1, 1, 2, 2],
            &input,
            [2, 1, 1, 2],
            &filter,
            Some(&bias),
            &[1 << 30, 1 << 30],
            &[0, 0],
            [1, 1, 2, 2],
            &mut out,
        )
        .unwrap();
        // TFLite's high multiply rounds ties toward +∞ (gemmlowp's nudge), so −1.5 → −1.
        // pixel 0: x+1 = (2, 3): oc0 = 5 + 10 = 15 → 7.5 → 8 (+3) = 11; oc1 = 4 − 3 − 4 = −3 → −1.5 → −1 (+3) = 2
        // pixel 1: x+1 = (0, 5): oc0 = 5 + 10 = 15 → 11; oc1 = −5 − 4 = −9 → −4.5 → −4 (+3) = −1
        assert_eq!(out, [11, 2, 11, -1]);
    }

    #[test]
    fn hand_computed_same_padding_3x3() {
        // 3x3 input of ones, 3x3 filter of ones, SAME padding (pad 1), stride 1:
        // each output = number of in-image taps (corners 4, edges 6, centre 9). Multiplier 1.0.
        let p = params(1, 1, 1, 0, 0, 1);
        let input = [1i8; 9];
        let filter = [1i8; 9];
        let mut out = [0i8; 9];
        conv2d_int8(
            &p,
            [1, 3, 3, 1],
            &input,
            [1, 3, 3, 1],
            &filter,
            None,
            &[1 << 30],
            &[1],
            [1, 3, 3, 1],
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [4, 6, 4, 6, 9, 6, 4, 6, 4]);
    }

    #[test]
    fn activation_clamps() {
        let p = ConvParams {
            act_min: 0,
            act_max: 5,
            ..params(1, 1, 0, 0, 0, 1)
        };
        let mut out = [0i8; 3];
        conv2d_int8(
            &p,
            [1, 1, 3, 1],
            &[-7, 3, 100],
            [1, 1, 1, 1],
            &[1],
            None,
            &[1 << 30],
            &[1],
            [1, 1, 3, 1],
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [0, 3, 5]);
    }

    #[test]
    fn grouped_conv() {
        // Input 4 channels, filter input channels 2 → 2 groups; 4 output channels (2 per group).
        let p = params(1, 1, 0, 0, 0, 4);
        let input = [1i8, 2, 3, 4];
        let filter = [1i8, 0, 0, 1, 1, 1, 1, -1];
        // oc0 = x0, oc1 = x1 (group 0); oc2 = x2 + x3, oc3 = x2 − x3 (group 1).
        let mut out = [0i8; 4];
        conv2d_int8(
            &p,
            [1, 1, 1, 4],
            &input,
            [4, 1, 1, 2],
            &filter,
            None,
            &[1 << 30; 4],
            &[1; 4],
            [1, 1, 1, 4],
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [1, 2, 7, -1]);
    }

    #[test]
    fn refuses_inconsistent_shapes() {
        let p = params(1, 1, 0, 0, 0, 1);
        let mut out = [0i8; 1];
        // Input length does not match its shape.
        assert!(conv2d_int8(
            &p,
            [1, 1, 1, 2],
            &[1],
            [1, 1, 1, 2],
            &[1, 1],
            None,
            &[1],
            &[0],
            [1, 1, 1, 1],
            &mut out
        )
        .is_err());
        // Input channels not a multiple of the filter's.
        assert!(conv2d_int8(
            &p,
            [1, 1, 1, 3],
            &[1, 1, 1],
            [1, 1, 1, 2],
            &[1, 1],
            None,
            &[1],
            &[0],
            [1, 1, 1, 1],
            &mut out
        )
        .is_err());
        // Zero stride.
        let bad = ConvParams { stride_h: 0, ..p };
        assert!(conv2d_int8(
            &bad,
            [1, 1, 1, 1],
            &[1],
            [1, 1, 1, 1],
            &[1],
            None,
            &[1],
            &[0],
            [1, 1, 1, 1],
            &mut out
        )
        .is_err());
        // Shift out of range.
        assert!(conv2d_int8(
            &p,
            [1, 1, 1, 1],
            &[1],
            [1, 1, 1, 1],
            &[1],
            None,
            &[1],
            &[31],
            [1, 1, 1, 1],
            &mut out
        )
        .is_err());
    }

    /// A 2-group conv, SAME padding, stride 2, with bias, as a harnessed op.
    fn conv_case() -> (Harness, ConvParams) {
        let mut h = Harness::new(OpKind::Conv2d);
        let mut r = Rng(7);
        let input = r.i8s(5 * 5 * 4, -128, 127);
        let filter = r.i8s(6 * 3 * 3 * 2, -127, 127);
        h.arena_input(&[1, 5, 5, 4], DType::Int8, bytes_i8(&input[..100]));
        h.const_input(&[6, 3, 3, 2], DType::Int8, bytes_i8(&filter[..108]));
        let bias: Vec<i32> = (0..6).map(|i| i * 100 - 250).collect();
        h.const_input(&[6], DType::Int32, bytemuck::cast_slice(&bias));
        h.set_output(&[1, 3, 3, 6], DType::Int8);
        let mults: Vec<i32> = (0..6).map(|i| (1 << 30) + i * 12345).collect();
        let shifts: Vec<i32> = (0..6).map(|i| -(i % 3) - 6).collect();
        let p = ConvParams {
            multipliers_offset: h.add_i32s(&mults),
            shifts_offset: h.add_i32s(&shifts),
            ..params(2, 1, 1, 3, -4, 6)
        };
        h.set_params(&p);
        (h, p)
    }

    #[test]
    fn through_validate_and_eval() {
        let (h, p) = conv_case();
        let got = h.run().unwrap();
        let mut r = Rng(7);
        let input = r.i8s(100, -128, 127);
        let filter = r.i8s(108, -127, 127);
        let bias: Vec<i32> = (0..6).map(|i| i * 100 - 250).collect();
        let mults: Vec<i32> = (0..6).map(|i| (1 << 30) + i * 12345).collect();
        let shifts: Vec<i32> = (0..6).map(|i| -(i % 3) - 6).collect();
        let mut want = [0i8; 54];
        naive_conv(
            &p,
            [1, 5, 5, 4],
            &input,
            [6, 3, 3, 2],
            &filter,
            Some(&bias),
            &mults,
            &shifts,
            [1, 3, 3, 6],
            &mut want,
        );
        assert_eq!(got, bytes_i8(&want));
        // The same op without bias (absent optional input).
        let (mut h, _) = conv_case();
        h.inputs[2] = NONE;
        let got = h.run().unwrap();
        naive_conv(
            &p,
            [1, 5, 5, 4],
            &input,
            [6, 3, 3, 2],
            &filter,
            None,
            &mults,
            &shifts,
            [1, 3, 3, 6],
            &mut want,
        );
        assert_eq!(got, bytes_i8(&want));
    }

    #[test]
    fn validate_refuses_corruptions() {
        let (h, p) = conv_case();
        assert!(h.run().is_ok());
        let with = |f: &dyn Fn(&mut ConvParams)| {
            let (mut h, mut p) = conv_case();
            f(&mut p);
            h.set_params(&p);
            h.run()
        };
        assert!(with(&|p| p.stride_w = 0).is_err());
        assert!(with(&|p| p.dilation_h = 0).is_err());
        assert!(with(&|p| p.channel_count = 5).is_err());
        assert!(with(&|p| p.multipliers_offset = 1 << 20).is_err());
        assert!(with(&|p| p.shifts_offset = 4).is_err()); // straddles into garbage / misaligned
        assert!(with(&|p| p.input_offset = 300).is_err());
        assert!(with(&|p| p.act_min = 10).is_ok());
        assert!(with(&|p| p.act_max = -129).is_err());
        assert!(with(&|p| p.pad_h = u32::MAX).is_err());
        assert!(with(&|p| p.stride_h = u32::MAX).is_err());
        assert!(with(&|p| p.layout = 2).is_err());
        assert!(with(&|p| p.packed_offset = 16).is_err());
        // Shifts out of range in the constant section.
        let (mut h, mut q) = conv_case();
        q.shifts_offset = h.add_i32s(&[40; 6]);
        h.set_params(&q);
        assert!(h.run().is_err());
        // Bias of the wrong type / length.
        let (mut h, _) = conv_case();
        h.tensors[2].dtype = DType::Int8 as u8;
        assert!(h.run().is_err());
        let (mut h, _) = conv_case();
        h.tensors[2].shape[0] = 5;
        h.tensors[2].bytes = 20;
        assert!(h.run().is_err());
        // Filter input channels not dividing the input channels.
        let (mut h, _) = conv_case();
        h.tensors[0].shape[3] = 3;
        h.tensors[0].bytes = 75;
        assert!(h.run().is_err());
        // Params of the wrong length.
        let (mut h, _) = conv_case();
        h.params.pop();
        assert!(h.run().is_err());
        // Input of rank 3.
        let (mut h, _) = conv_case();
        h.tensors[0].rank = 3;
        h.tensors[0].shape = [5, 5, 4, 0, 0, 0];
        assert!(h.run().is_err());
        let _ = p;
    }

    #[test]
    fn hostile_params_never_panic() {
        let mut r = Rng(31337);
        for _ in 0..cases(3000, 12) {
            let (mut h, _) = conv_case();
            for _ in 0..r.range(1, 4) {
                let k = r.range(0, h.params.len() as i64 - 1) as usize;
                h.params[k] = match r.range(0, 3) {
                    0 => r.next() as u32,
                    1 => r.range(0, 8) as u32,
                    2 => (r.range(-200, 200) as i32) as u32,
                    _ => u32::MAX - r.range(0, 3) as u32,
                };
            }
            let _ = h.run();
        }
    }

    #[test]
    fn special_param_values_never_panic() {
        // Every field of a pointwise and a 3×3 conv set to each boundary value.
        let values = [
            0u32,
            1,
            2,
            15,
            17,
            255,
            0x7FFF_FFFF,
            0x8000_0000,
            0xFFFF_FFFF,
        ];
        for (shape_in, shape_f, shape_out) in [
            ([1u32, 5, 5, 8], [8u32, 1, 1, 8], [1u32, 5, 5, 8]),
            ([1, 5, 5, 4], [8, 3, 3, 4], [1, 3, 3, 8]),
        ] {
            let build = || {
                let mut h = Harness::new(OpKind::Conv2d);
                let n_in = shape_in.iter().product::<u32>() as usize;
                let n_f = shape_f.iter().product::<u32>() as usize;
                h.arena_input(&shape_in, DType::Int8, &std::vec![1u8; n_in]);
                h.const_input(&shape_f, DType::Int8, &std::vec![1u8; n_f]);
                h.const_input(&[8], DType::Int32, &[0u8; 32]);
                h.set_output(&shape_out, DType::Int8);
                let p = ConvParams {
                    multipliers_offset: h.add_i32s(&[1 << 30; 8]),
                    shifts_offset: h.add_i32s(&[0; 8]),
                    ..params(1, 1, 0, 0, 0, 8)
                };
                h.set_params(&p);
                h
            };
            assert!(build().run().is_ok());
            let fields = build().params.len();
            let mut i = 0;
            for k in 0..fields {
                for &v in &values {
                    for &w in &values {
                        i += 1;
                        if !sampled(i) {
                            continue;
                        }
                        let mut h = build();
                        h.params[k] = v;
                        h.params[(k + 1) % fields] = w;
                        let _ = h.run();
                    }
                }
            }
        }
    }

    #[test]
    fn valid_taps_ranges() {
        assert_eq!(valid_taps(-1, 1, 3, 3), 1..3);
        assert_eq!(valid_taps(0, 1, 3, 3), 0..3);
        assert_eq!(valid_taps(1, 1, 3, 3), 0..2);
        assert_eq!(valid_taps(-3, 2, 5, 4), 2..4); // coords −3, −1, 1, 3
        assert_eq!(valid_taps(4, 2, 5, 4), 0..1); // coords 4, 6, ...
        assert!(valid_taps(5, 1, 5, 3).is_empty());
        assert!(valid_taps(-10, 1, 5, 3).is_empty());
        assert!(valid_taps(-3, 4, 2, 1).is_empty());
    }

    #[test]
    fn randomized_against_naive() {
        let mut r = Rng(0x1234_5678);
        for case in 0..cases(400, 4) {
            let groups = if r.range(0, 3) == 0 {
                r.range(2, 3) as usize
            } else {
                1
            };
            let f_ic = r.range(1, 5) as usize;
            let in_c = f_ic * groups;
            let out_c = groups * r.range(1, if groups == 1 { 9 } else { 4 }) as usize;
            let (f_h, f_w) = (r.range(1, 4) as usize, r.range(1, 4) as usize);
            let (in_h, in_w) = (r.range(1, 7) as usize, r.range(1, 7) as usize);
            let stride = r.range(1, 3) as u32;
            let dil = r.range(1, 2) as u32;
            let same = r.range(0, 1) == 1;
            let eff_h = (f_h - 1) * dil as usize + 1;
            let eff_w = (f_w - 1) * dil as usize + 1;
            // TFLM's ComputeOutSize / ComputePaddingWithOffset.
            let out_size = |i: usize, eff: usize| {
                if same {
                    i.div_ceil(stride as usize)
                } else {
                    (i + stride as usize).saturating_sub(eff) / stride as usize
                }
            };
            let (out_h, out_w) = (out_size(in_h, eff_h), out_size(in_w, eff_w));
            let pad = |o: usize, eff: usize, i: usize| {
                (((o as i64 - 1) * stride as i64 + eff as i64 - i as i64).max(0) / 2) as u32
            };
            let batches = r.range(1, 2) as usize;
            let zp_in = r.range(-128, 127) as i32;
            let zp_out = r.range(-128, 127) as i32;
            let mut p = params(stride, dil, 0, zp_in, zp_out, out_c);
            p.pad_h = pad(out_h, eff_h, in_h);
            p.pad_w = pad(out_w, eff_w, in_w);
            p.act_min = r.range(-128, 0) as i32;
            p.act_max = r.range(p.act_min as i64, 127) as i32;
            let is = [batches, in_h, in_w, in_c];
            let fs = [out_c, f_h, f_w, f_ic];
            let os = [batches, out_h, out_w, out_c];
            let input = r.i8s(elements4(is).unwrap(), -128, 127);
            let filter = r.i8s(elements4(fs).unwrap(), -127, 127);
            let mut bias = [0i32; 16];
            let mut mult = [0i32; 16];
            let mut shift = [0i32; 16];
            for c in 0..out_c {
                bias[c] = r.range(-20000, 20000) as i32;
                (mult[c], shift[c]) = r.quant();
            }
            let with_bias = r.range(0, 1) == 1;
            let bias_opt = with_bias.then_some(&bias[..out_c]);
            let n_out = elements4(os).unwrap();
            let mut got = [0i8; 4096];
            let mut want = [0i8; 4096];
            conv2d_int8(
                &p,
                is,
                &input[..elements4(is).unwrap()],
                fs,
                &filter[..elements4(fs).unwrap()],
                bias_opt,
                &mult[..out_c],
                &shift[..out_c],
                os,
                &mut got[..n_out],
            )
            .unwrap();
            naive_conv(
                &p,
                is,
                &input,
                fs,
                &filter,
                bias_opt,
                &mult,
                &shift,
                os,
                &mut want[..n_out],
            );
            assert_eq!(
                &got[..n_out],
                &want[..n_out],
                "case {case}: {p:?} {is:?} {fs:?}"
            );
        }
    }
}
