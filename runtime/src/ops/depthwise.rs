//! DEPTHWISE_CONV_2D: int8 depthwise convolution, bit-exact with TFLM's
//! `reference_integer_ops::DepthwiseConvPerChannel`.
//!
//! Inputs: 0 = input NHWC int8 (`C` channels), 1 = filter `1×H×W×(C·M)` int8 (per-channel
//! symmetric), 2 = optional bias int32 `[C·M]`. Output: NHWC int8 with `C·M` channels, output
//! channel `c·M + m` reading input channel `c`.

use bytemuck::{Pod, Zeroable};

use super::conv::{
    bias_input, channel_quant, check_axis, check_bias, check_channel_quant, check_quant, elements4,
    int8_window_shapes, kernel_error, requantize, segment, valid_taps, window_general, ConvIo,
    GeneralWindow, PaddedInput, Window, CHUNK, STAGE_BYTES,
};
use super::inplace::{min_shift, RowGeometry, ShiftDirection};
use super::{as_i8, as_i8_mut, OpCtx, OpMem};
use crate::error::Error;
use crate::simd::{self, Isa};

/// Parameters of a DEPTHWISE_CONV_2D op: everything TFLM computes in `Prepare`.
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct DepthwiseParams {
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
    /// Number of output channels `C·M` (= filter dimension 3 = output dimension 3).
    pub channel_count: u32,
    /// Depth multiplier `M` (≥ 1): output channels per input channel.
    pub depth_multiplier: u32,
}

/// Checks shapes and parameters of a depthwise convolution.
fn check_depthwise(
    p: &DepthwiseParams,
    input_shape: [usize; 4],
    filter_shape: [usize; 4],
    output_shape: [usize; 4],
) -> Result<(), &'static str> {
    let [batches, _, _, in_c] = input_shape;
    let [f_one, f_h, f_w, f_c] = filter_shape;
    let [o_batches, out_h, out_w, out_c] = output_shape;
    if batches != o_batches {
        return Err("batch size (input vs output)");
    }
    if f_one != 1 {
        return Err("filter dimension 0 (must be 1)");
    }
    if p.depth_multiplier == 0 || in_c.checked_mul(p.depth_multiplier as usize) != Some(out_c) {
        return Err("depth_multiplier (output channels must be input channels × M)");
    }
    if f_c != out_c || out_c != p.channel_count as usize {
        return Err("output channels (filter dim 3, output dim 3, channel_count)");
    }
    check_axis(out_h, p.stride_h, f_h, p.dilation_h, p.pad_h)?;
    check_axis(out_w, p.stride_w, f_w, p.dilation_w, p.pad_w)?;
    check_quant(p.input_offset, p.output_offset, p.act_min, p.act_max)?;
    Ok(())
}

/// Portable reference int8 DEPTHWISE_CONV_2D (TFLM `DepthwiseConvPerChannel`), NHWC input/output,
/// `1×H×W×(C·M)` filter.
///
/// `multipliers` and `shifts` hold one entry per output channel; `bias`, when present, too.
/// Returns an error (never panics) when shapes, slice lengths or parameters are inconsistent.
#[allow(clippy::too_many_arguments)]
pub fn depthwise_conv2d_int8(
    p: &DepthwiseParams,
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
    check_depthwise(p, input_shape, filter_shape, output_shape).map_err(kernel_error)?;
    let lens_ok = elements4(input_shape) == Some(input.len())
        && elements4(filter_shape) == Some(filter.len())
        && elements4(output_shape) == Some(output.len());
    if !lens_ok {
        return Err(kernel_error("tensor length"));
    }
    let [batches, in_h, in_w, in_c] = input_shape;
    let [_, f_h, f_w, out_c] = filter_shape;
    let [_, out_h, out_w, _] = output_shape;
    if multipliers.len() != out_c || bias.is_some_and(|b| b.len() != out_c) {
        return Err(kernel_error("per-channel array length"));
    }
    check_channel_quant(multipliers, shifts).map_err(kernel_error)?;
    if output.is_empty() {
        return Ok(());
    }
    // check_depthwise: m >= 1, and out_c >= 1 as the output is not empty; `max(1)` lets the
    // optimiser drop the division-by-zero panic paths.
    let m = (p.depth_multiplier as usize).max(1);
    let (stride_h, stride_w) = (p.stride_h as usize, p.stride_w as usize);
    let (dil_h, dil_w) = (p.dilation_h as usize, p.dilation_w as usize);
    // A depth multiplier, and every shape on builds with the DSP-extension kernels (`arm-dsp`,
    // which run this kernel only for shapes those do not take), go to the general loop shared
    // with CONV_2D (smaller; the same products).
    if m != 1 || cfg!(feature = "arm-dsp") {
        let g = GeneralWindow {
            input_shape,
            output_shape,
            filter_hw: [f_h, f_w],
            f_ic: 1,
            per_group: m,
            w_oc: 1,
            w_tap: out_c,
            stride: [stride_h, stride_w],
            pad: [p.pad_h as usize, p.pad_w as usize],
            dilation: [dil_h, dil_w],
            quant: [p.input_offset, p.output_offset, p.act_min, p.act_max],
        };
        window_general(&g, input, filter, bias, multipliers, shifts, output);
        return Ok(());
    }
    // check_depthwise: input_offset ∈ [-127, 128], so x + off fits in i16.
    let off = p.input_offset as i16;
    let mut acc_buf = [0i32; CHUNK];
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
                for (chunk, out_chunk) in out_px.chunks_mut(CHUNK).enumerate() {
                    let c0 = chunk * CHUNK;
                    // chunks_mut(CHUNK): at most CHUNK outputs.
                    let Some(acc) = acc_buf.get_mut(..out_chunk.len()) else {
                        return Ok(());
                    };
                    acc.fill(0);
                    for fy in rows.clone() {
                        // valid_taps: 0 ≤ iy < in_h.
                        let iy = (y0 + (fy * dil_h) as isize) as usize;
                        for fx in cols.clone() {
                            // valid_taps: 0 ≤ ix < in_w, so the pixel lies in the input.
                            let ix = (x0 + (fx * dil_w) as isize) as usize;
                            let px = segment(input, in_batch + (iy * in_w + ix) * in_c, in_c);
                            // fy < f_h, fx < f_w and c0 + acc.len() ≤ out_c: inside the filter.
                            let w = segment(filter, (fy * f_w + fx) * out_c + c0, acc.len());
                            // m == 1, in_c == out_c: channel c reads input channel c.
                            let x = segment(px, c0, acc.len());
                            for ((a, &w), &x) in acc.iter_mut().zip(w).zip(x) {
                                *a = a.wrapping_add(
                                    i32::from(w) * i32::from(i16::from(x).wrapping_add(off)),
                                );
                            }
                        }
                    }
                    for (j, (o, &a)) in out_chunk.iter_mut().zip(acc.iter()).enumerate() {
                        let oc = c0 + j;
                        // bias, multipliers and shifts hold out_c entries (checked above).
                        let a = a.wrapping_add(bias.and_then(|b| b.get(oc)).map_or(0, |&b| b));
                        let (Some(&mul), Some(&sh)) = (multipliers.get(oc), shifts.get(oc)) else {
                            continue;
                        };
                        *o = requantize(a, mul, sh, p.output_offset, p.act_min, p.act_max);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Most taps (`H·W`) a depthwise convolution may have on the fast path.
pub const MAX_TAPS: usize = 32;

/// The window geometry of a depthwise convolution.
fn window(p: &DepthwiseParams, filter_shape: [usize; 4]) -> Window {
    Window {
        filter: [filter_shape[1], filter_shape[2]],
        stride: [p.stride_h as usize, p.stride_w as usize],
        dilation: [p.dilation_h as usize, p.dilation_w as usize],
        pad: [p.pad_h as usize, p.pad_w as usize],
    }
}

/// The SIMD tier a DEPTHWISE_CONV_2D runs on, or `None` for the reference kernel: depth
/// multiplier 1, at most [`MAX_TAPS`] taps, and one output row's window rows of padded input
/// within [`STAGE_BYTES`].
pub fn depthwise_fast_isa(
    isa: Option<Isa>,
    p: &DepthwiseParams,
    [input_shape, filter_shape, output_shape]: [[usize; 4]; 3],
) -> Option<Isa> {
    let isa = isa?;
    let taps = filter_shape[1].checked_mul(filter_shape[2])?;
    let win = window(p, filter_shape);
    let staged = PaddedInput::of(&win, input_shape, output_shape, STAGE_BYTES).is_some();
    (p.depth_multiplier == 1 && (1..=MAX_TAPS).contains(&taps) && staged).then_some(isa)
}

/// DEPTHWISE_CONV_2D with the fastest kernel available: `isa`'s kernel when
/// [`depthwise_fast_isa`] allows it, else [`depthwise_conv2d_int8`]. Same arguments and results
/// as [`depthwise_conv2d_int8`], bit for bit.
#[allow(clippy::too_many_arguments)]
pub fn depthwise_conv2d_int8_fast(
    isa: Option<Isa>,
    p: &DepthwiseParams,
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
    let Some(isa) = depthwise_fast_isa(isa, p, shapes) else {
        return depthwise_conv2d_int8(
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
    let io = ConvIo::Split { input, output };
    let q = DepthwiseQuant {
        filter,
        bias,
        multipliers,
        shifts,
    };
    depthwise_staged(isa, p, shapes, &q, io, STAGE_BYTES)
}

/// DEPTHWISE_CONV_2D over its own input (the in-place shift modes: the output `D` bytes below
/// the input in `buf` for [`ShiftDirection::Down`], above it for `Up`) on the fast path, in one
/// pass, when [`depthwise_fast_isa`] allows it and `D` is at least [`min_shift`] (the check the
/// band-by-band driver makes). Returns `Ok(false)` when the caller must run the band driver
/// instead. Results equal [`depthwise_conv2d_int8`]'s bit for bit.
#[allow(clippy::too_many_arguments)]
pub fn depthwise_conv2d_int8_fast_in_place(
    isa: Option<Isa>,
    p: &DepthwiseParams,
    shapes: [[usize; 4]; 3],
    filter: &[i8],
    bias: Option<&[i32]>,
    multipliers: &[i32],
    shifts: &[i32],
    buf: &mut [i8],
    input_at: usize,
    output_at: usize,
    dir: ShiftDirection,
) -> Result<bool, Error> {
    let Some(isa) = depthwise_fast_isa(isa, p, shapes) else {
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
    let q = DepthwiseQuant {
        filter,
        bias,
        multipliers,
        shifts,
    };
    depthwise_staged(isa, p, shapes, &q, io, STAGE_BYTES)?;
    Ok(true)
}

/// The filter and output stage of a depthwise convolution.
pub(crate) struct DepthwiseQuant<'a> {
    pub(crate) filter: &'a [i8],
    pub(crate) bias: Option<&'a [i32]>,
    pub(crate) multipliers: &'a [i32],
    pub(crate) shifts: &'a [i32],
}

/// DEPTHWISE_CONV_2D on `isa`'s kernel through `io`, the input staged in bands of padded rows
/// of at most `stage_limit` bytes (the zero point in the padding, so that padded taps add
/// nothing). Checks every shape and length; returns an error (never panics) on inconsistencies.
pub(crate) fn depthwise_staged(
    isa: Isa,
    p: &DepthwiseParams,
    shapes: [[usize; 4]; 3],
    q: &DepthwiseQuant,
    mut io: ConvIo,
    stage_limit: usize,
) -> Result<(), Error> {
    let [input_shape, filter_shape, output_shape] = shapes;
    if depthwise_fast_isa(Some(isa), p, shapes).is_none() {
        return Err(kernel_error(
            "no fast kernel for this depthwise convolution",
        ));
    }
    check_depthwise(p, input_shape, filter_shape, output_shape).map_err(kernel_error)?;
    let in_len = elements4(input_shape).ok_or(kernel_error("input length"))?;
    let out_len = elements4(output_shape).ok_or(kernel_error("output length"))?;
    io.check(in_len, out_len)?;
    let [batches, _, _, channels] = input_shape;
    let [_, f_h, f_w, _] = filter_shape;
    let [_, out_h, out_w, _] = output_shape;
    let lens_ok = elements4(filter_shape) == Some(q.filter.len())
        && q.multipliers.len() == channels
        && q.bias.is_none_or(|b| b.len() == channels);
    if !lens_ok {
        return Err(kernel_error("per-channel array length"));
    }
    check_channel_quant(q.multipliers, q.shifts).map_err(kernel_error)?;
    let win = window(p, filter_shape);
    let staging = PaddedInput::of(&win, input_shape, output_shape, stage_limit)
        .ok_or(kernel_error("staging geometry"))?;
    if out_len == 0 {
        return Ok(());
    }
    let mut taps = [0u32; MAX_TAPS];
    for (t, off) in taps[..f_h * f_w].iter_mut().enumerate() {
        let (fy, fx) = (t / f_w, t % f_w);
        let at = fy * win.dilation[0] * staging.row_bytes + fx * win.dilation[1] * channels;
        *off = u32::try_from(at).map_err(|_| kernel_error("staging offset"))?;
    }
    let rq = simd::Requant {
        bias: q.bias,
        multipliers: q.multipliers,
        shifts: q.shifts,
        output_offset: p.output_offset,
        act_min: p.act_min,
        act_max: p.act_max,
    };
    // check_quant: input_offset ∈ [-127, 128], so the zero point is an int8.
    let pad_byte = p.input_offset.wrapping_neg() as i8 as u8;
    let bands = out_h.div_ceil(staging.band_rows);
    let total = batches * bands;
    let need = staging.bytes(staging.band_rows);
    let reverse = io.reverse();
    simd::with_stage(need, |stage| {
        for t in 0..total {
            let t = if reverse { total - 1 - t } else { t };
            let (b, band) = (t / bands, t % bands);
            let r0 = band * staging.band_rows;
            let r1 = (r0 + staging.band_rows).min(out_h);
            let mut w = stage.writer();
            let input = io.input(in_len);
            staging.stage(&win, input, input_shape, b, [r0, r1], pad_byte, 0, &mut w);
            let staged = w.finish();
            let job = simd::DepthwiseJob {
                input: staged,
                rows: (r1 - r0) * out_w,
                width: out_w,
                x_stride: win.stride[1] * channels,
                y_stride: staging.y_stride(),
                taps: &taps[..f_h * f_w],
                channels,
                filter: q.filter,
                input_offset: p.input_offset,
            };
            let start = (b * out_h + r0) * out_w * channels;
            let out = io.output(start..start + job.rows * channels);
            simd::depthwise(isa, &job, &rq, out, channels)?;
        }
        Ok(())
    })
}

/// Tensor shapes of a depthwise convolution, checked against each other and the parameters.
pub(crate) fn depthwise_shapes(ctx: &OpCtx, p: &DepthwiseParams) -> Result<[[usize; 4]; 3], Error> {
    let [is, fs, os] = int8_window_shapes(ctx, "a 4-D 1×H×W×(C·M) filter")?;
    check_depthwise(p, is, fs, os).map_err(|f| ctx.param_error(f))?;
    Ok([is, fs, os])
}

/// Checks a DEPTHWISE_CONV_2D op (see the module documentation).
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    let p: &DepthwiseParams = ctx.params()?;
    if ctx.desc.output_count != 1 {
        return Err(ctx.param_error("output_count"));
    }
    let [_, fs, _] = depthwise_shapes(ctx, p)?;
    check_bias(ctx, fs[3])?;
    channel_quant(ctx, p.multipliers_offset, p.shifts_offset, fs[3])?;
    Ok(())
}

/// Runs a DEPTHWISE_CONV_2D op.
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem) -> Result<(), Error> {
    let p: &DepthwiseParams = ctx.params()?;
    let [is, fs, os] = depthwise_shapes(ctx, p)?;
    let (multipliers, shifts) = channel_quant(ctx, p.multipliers_offset, p.shifts_offset, fs[3])?;
    let input = as_i8(mem.required_input(0)?);
    let filter = as_i8(mem.required_input(1)?);
    let bias = bias_input(ctx, &mem)?;
    let output = as_i8_mut(mem.output);
    #[cfg(all(target_arch = "arm", feature = "arm-mve"))]
    if crate::simd::mve::depthwise_conv2d_int8(
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
    if crate::simd::arm_dsp::depthwise_conv2d_int8(
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
    depthwise_conv2d_int8_fast(
        Isa::best(),
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

/// The kernel a DEPTHWISE_CONV_2D op runs on this CPU: a SIMD tier's name or `reference`.
pub(crate) fn kernel_name(ctx: &OpCtx) -> &'static str {
    let Ok(p) = ctx.params::<DepthwiseParams>() else {
        return "reference";
    };
    let Ok(shapes) = depthwise_shapes(ctx, p) else {
        return "reference";
    };
    depthwise_fast_isa(Isa::best(), p, shapes).map_or("reference", Isa::name)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::super::conv::tests::{bytes_i8, cases, naive_mbqm, sampled, Harness, Rng};
    use super::super::OpKind;
    use super::*;
    use crate::format::DType;

    fn params(stride: u32, dil: u32, pad: u32, m: u32, channels: usize) -> DepthwiseParams {
        DepthwiseParams {
            stride_h: stride,
            stride_w: stride,
            dilation_h: dil,
            dilation_w: dil,
            pad_h: pad,
            pad_w: pad,
            input_offset: 0,
            output_offset: 0,
            act_min: -128,
            act_max: 127,
            multipliers_offset: 0,
            shifts_offset: 0,
            channel_count: channels as u32,
            depth_multiplier: m,
        }
    }

    /// TFLM's `DepthwiseConvPerChannel` loops, transcribed literally with an i64 accumulator.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        p: &DepthwiseParams,
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
        let m = p.depth_multiplier as usize;
        for b in 0..os[0] {
            for oy in 0..os[1] {
                for ox in 0..os[2] {
                    for ic in 0..is[3] {
                        for mm in 0..m {
                            let oc = mm + ic * m;
                            let mut acc: i64 = 0;
                            for fy in 0..fs[1] {
                                for fx in 0..fs[2] {
                                    let ix = (ox * p.stride_w as usize) as i64 - p.pad_w as i64
                                        + (fx * p.dilation_w as usize) as i64;
                                    let iy = (oy * p.stride_h as usize) as i64 - p.pad_h as i64
                                        + (fy * p.dilation_h as usize) as i64;
                                    if ix < 0 || iy < 0 || ix >= is[2] as i64 || iy >= is[1] as i64
                                    {
                                        continue;
                                    }
                                    let xi = ((b * is[1] + iy as usize) * is[2] + ix as usize)
                                        * is[3]
                                        + ic;
                                    let wi = (fy * fs[2] + fx) * fs[3] + oc;
                                    acc += filter[wi] as i64
                                        * (input[xi] as i64 + p.input_offset as i64);
                                }
                            }
                            if let Some(bias) = bias {
                                acc += bias[oc] as i64;
                            }
                            assert!(acc >= i32::MIN as i64 && acc <= i32::MAX as i64);
                            let v = naive_mbqm(acc as i32, mult[oc], shift[oc])
                                + p.output_offset as i64;
                            let v = v.max(p.act_min as i64).min(p.act_max as i64);
                            out[((b * os[1] + oy) * os[2] + ox) * os[3] + oc] = v as i8;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn hand_computed_multiplier_2() {
        // 1x1 input with 2 channels (3, −2), M = 2, 1x1 filter: outputs c·2+m.
        let p = DepthwiseParams {
            input_offset: 1,
            output_offset: -1,
            ..params(1, 1, 0, 2, 4)
        };
        let mut out = [0i8; 4];
        depthwise_conv2d_int8(
            &p,
            [1, 1, 1, 2],
            &[3, -2],
            [1, 1, 1, 4],
            &[1, 2, 3, -4],
            Some(&[0, 1, 2, 3]),
            &[1 << 30; 4],
            &[1; 4],
            [1, 1, 1, 4],
            &mut out,
        )
        .unwrap();
        // (x+1) = (4, −1): oc0 = 4, oc1 = 8+1, oc2 = −3+2, oc3 = 4+3 → −1 zero point.
        assert_eq!(out, [3, 8, -2, 6]);
    }

    #[test]
    fn hand_computed_same_padding() {
        // 3x3 input, 1 channel of ones, 3x3 filter of ones, pad 1 → counts of in-image taps.
        let p = params(1, 1, 1, 1, 1);
        let mut out = [0i8; 9];
        depthwise_conv2d_int8(
            &p,
            [1, 3, 3, 1],
            &[1; 9],
            [1, 3, 3, 1],
            &[1; 9],
            None,
            &[1 << 30],
            &[1],
            [1, 3, 3, 1],
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [4, 6, 4, 6, 9, 6, 4, 6, 4]);
    }

    /// A harnessed op with the data it was built from: input, filter, bias, multipliers, shifts.
    type Case = (
        Harness,
        DepthwiseParams,
        [[i8; 4096]; 2],
        Vec<i32>,
        Vec<i32>,
        Vec<i32>,
    );

    /// Depthwise 3x3, M = 2, stride 1, SAME, dilation 2, with bias, as a harnessed op.
    fn case(r: &mut Rng) -> Case {
        let mut h = Harness::new(OpKind::DepthwiseConv2d);
        let input = r.i8s(6 * 5 * 3, -128, 127);
        let filter = r.i8s(3 * 3 * 6, -127, 127);
        h.arena_input(&[1, 6, 5, 3], DType::Int8, bytes_i8(&input[..90]));
        h.const_input(&[1, 3, 3, 6], DType::Int8, bytes_i8(&filter[..54]));
        let bias: Vec<i32> = (0..6).map(|_| r.range(-3000, 3000) as i32).collect();
        h.const_input(&[6], DType::Int32, bytemuck::cast_slice(&bias));
        h.set_output(&[1, 6, 5, 6], DType::Int8);
        let (mults, shifts): (Vec<i32>, Vec<i32>) = (0..6).map(|_| r.quant()).unzip();
        let p = DepthwiseParams {
            multipliers_offset: h.add_i32s(&mults),
            shifts_offset: h.add_i32s(&shifts),
            input_offset: 17,
            output_offset: -9,
            ..params(1, 2, 2, 2, 6)
        };
        h.set_params(&p);
        (h, p, [input, filter], bias, mults, shifts)
    }

    #[test]
    fn through_validate_and_eval() {
        let (h, p, [input, filter], bias, mults, shifts) = case(&mut Rng(11));
        let got = h.run().unwrap();
        let mut want = [0i8; 180];
        naive(
            &p,
            [1, 6, 5, 3],
            &input,
            [1, 3, 3, 6],
            &filter,
            Some(&bias),
            &mults,
            &shifts,
            [1, 6, 5, 6],
            &mut want,
        );
        assert_eq!(got, bytes_i8(&want));
    }

    #[test]
    fn validate_refuses_corruptions() {
        let with = |f: &dyn Fn(&mut DepthwiseParams)| {
            let (mut h, mut p, ..) = case(&mut Rng(11));
            f(&mut p);
            h.set_params(&p);
            h.run()
        };
        assert!(with(&|_| ()).is_ok());
        assert!(with(&|p| p.depth_multiplier = 1).is_err());
        assert!(with(&|p| p.depth_multiplier = 0).is_err());
        assert!(with(&|p| p.channel_count = 3).is_err());
        assert!(with(&|p| p.stride_h = 0).is_err());
        assert!(with(&|p| p.output_offset = 128).is_err());
        assert!(with(&|p| p.multipliers_offset = u32::MAX).is_err());
        // Filter with dimension 0 ≠ 1.
        let (mut h, ..) = case(&mut Rng(11));
        h.tensors[1].shape = [2, 3, 3, 3, 0, 0];
        assert!(h.run().is_err());
    }

    #[test]
    fn hostile_params_never_panic() {
        let mut r = Rng(4242);
        for _ in 0..cases(3000, 12) {
            let (mut h, ..) = case(&mut Rng(5));
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
        let values = [
            0u32,
            1,
            2,
            3,
            15,
            17,
            255,
            0x7FFF_FFFF,
            0x8000_0000,
            0xFFFF_FFFF,
        ];
        let fields = case(&mut Rng(5)).0.params.len();
        let mut i = 0;
        for k in 0..fields {
            for &v in &values {
                for &w in &values {
                    i += 1;
                    if !sampled(i) {
                        continue;
                    }
                    let (mut h, ..) = case(&mut Rng(5));
                    h.params[k] = v;
                    h.params[(k + 1) % fields] = w;
                    let _ = h.run();
                }
            }
        }
    }

    #[test]
    fn refuses_bad_multiplier() {
        let p = params(1, 1, 0, 2, 2);
        let mut out = [0i8; 2];
        // 2 input channels × M=2 ≠ 2 output channels.
        assert!(depthwise_conv2d_int8(
            &p,
            [1, 1, 1, 2],
            &[1, 1],
            [1, 1, 1, 2],
            &[1, 1],
            None,
            &[1, 1],
            &[0, 0],
            [1, 1, 1, 2],
            &mut out,
        )
        .is_err());
        let p0 = params(1, 1, 0, 0, 2);
        assert!(depthwise_conv2d_int8(
            &p0,
            [1, 1, 1, 2],
            &[1, 1],
            [1, 1, 1, 2],
            &[1, 1],
            None,
            &[1, 1],
            &[0, 0],
            [1, 1, 1, 2],
            &mut out,
        )
        .is_err());
    }

    #[test]
    fn randomized_against_naive() {
        let mut r = Rng(0xdead_beef);
        for case in 0..cases(400, 12) {
            let in_c = r.range(1, 40) as usize;
            let m = if r.range(0, 2) == 0 {
                r.range(2, 3) as usize
            } else {
                1
            };
            let out_c = in_c * m;
            let (f_h, f_w) = (r.range(1, 3) as usize, r.range(1, 3) as usize);
            let (in_h, in_w) = (r.range(1, 4) as usize, r.range(1, 4) as usize);
            let stride = r.range(1, 2) as u32;
            let dil = r.range(1, 2) as u32;
            let same = r.range(0, 1) == 1;
            let eff_h = (f_h - 1) * dil as usize + 1;
            let eff_w = (f_w - 1) * dil as usize + 1;
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
            let mut p = params(stride, dil, 0, m as u32, out_c);
            p.pad_h = pad(out_h, eff_h, in_h);
            p.pad_w = pad(out_w, eff_w, in_w);
            p.input_offset = -(r.range(-128, 127) as i32);
            p.output_offset = r.range(-128, 127) as i32;
            p.act_min = r.range(-128, 0) as i32;
            p.act_max = r.range(p.act_min as i64, 127) as i32;
            let batches = r.range(1, 2) as usize;
            let is = [batches, in_h, in_w, in_c];
            let fs = [1, f_h, f_w, out_c];
            let os = [batches, out_h, out_w, out_c];
            let (ni, nf, no) = (
                elements4(is).unwrap(),
                elements4(fs).unwrap(),
                elements4(os).unwrap(),
            );
            let input = r.i8s(ni, -128, 127);
            let filter = r.i8s(nf, -127, 127);
            let mut bias = [0i32; 128];
            let mut mult = [0i32; 128];
            let mut shift = [0i32; 128];
            for c in 0..out_c {
                bias[c] = r.range(-30000, 30000) as i32;
                (mult[c], shift[c]) = r.quant();
            }
            let bias_opt = (r.range(0, 1) == 1).then_some(&bias[..out_c]);
            let mut got = [0i8; 4096];
            let mut want = [0i8; 4096];
            depthwise_conv2d_int8(
                &p,
                is,
                &input[..ni],
                fs,
                &filter[..nf],
                bias_opt,
                &mult[..out_c],
                &shift[..out_c],
                os,
                &mut got[..no],
            )
            .unwrap();
            naive(
                &p,
                is,
                &input,
                fs,
                &filter,
                bias_opt,
                &mult,
                &shift,
                os,
                &mut want[..no],
            );
            assert_eq!(&got[..no], &want[..no], "case {case}: {p:?} {is:?} {fs:?}");
        }
    }
}
