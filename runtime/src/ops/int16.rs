//! int16 activations with int8 weights (TFLite's 16x8 scheme, `mote quantize --scheme a16w8`):
//! CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED whose input is [`DType::Int16`].
//!
//! The arithmetic of TFLM's `reference_integer_ops::ConvPerChannel` /
//! `DepthwiseConvPerChannel` / `FullyConnected` instantiated for `int16_t` input, `int8_t`
//! filter and `int64_t` bias: symmetric activations (zero points 0, so `input_offset` and
//! `output_offset` must be 0), a 64-bit accumulator (`Σ w·x + bias`), then the 64-bit
//! [`multiply_by_quantized_multiplier_64`] and the clamp to the int16 activation range. The
//! parameter structs are the int8 ones, with these int16 ranges; the bias is [`DType::Int64`].
//! Switching precision between layers is a QUANTIZE int8 ↔ int16 (`ops::quantize`).

use super::accumulate::{self, Geometry};
use super::conv::{channel_quant, check_axis, dims4, ConvParams, LAYOUT_REFERENCE};
use super::depthwise::DepthwiseParams;
use super::fully_connected::FullyConnectedParams;
use super::{as_i8, as_typed, as_typed_mut, OpCtx, OpKind, OpMem};
use crate::error::Error;
use crate::format::DType;

/// Whether op `ctx` is a CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED with int16 input.
pub(crate) fn applies(ctx: &OpCtx) -> bool {
    matches!(
        ctx.kind,
        OpKind::Conv2d | OpKind::DepthwiseConv2d | OpKind::FullyConnected
    ) && matches!(ctx.input(0), Ok(Some((_, d))) if d.dtype() == Some(DType::Int16))
}

/// TFLite's `MultiplyByQuantizedMultiplier(int64_t x, int32_t multiplier, int shift)`: the
/// multiplier rounded to Q15, then a rounding right shift by `15 − shift` (`shift` in
/// `[-31, 7]`, the range [`validate`] accepts). Wrapping where TFLM's assumptions
/// (`|x| < 2^47`) would be violated, so it never panics.
#[inline]
pub fn multiply_by_quantized_multiplier_64(x: i64, multiplier: i32, shift: i32) -> i32 {
    let reduced: i64 = if multiplier < 0x7FFF_0000 {
        ((i64::from(multiplier)) + (1 << 15)) >> 16
    } else {
        0x7FFF
    };
    let total_shift = (15 - shift).clamp(1, 63) as u32;
    let round = 1i64 << (total_shift - 1);
    (x.wrapping_mul(reduced).wrapping_add(round) >> total_shift) as i32
}

/// Input, filter, output and bias dtypes: int16, int8, int16, int64 (optional).
fn check_io(ctx: &OpCtx, channels: usize) -> Result<(), Error> {
    ctx.expect_dtype(ctx.required_input(0)?, DType::Int16)?;
    ctx.expect_dtype(ctx.required_input(1)?, DType::Int8)?;
    ctx.expect_dtype(ctx.output(0)?, DType::Int16)?;
    if ctx.desc.output_count != 1 || !(2..=3).contains(&ctx.input_count()) {
        return Err(ctx.param_error("input_count / output_count"));
    }
    if ctx.input_count() == 3 {
        if let Some(b) = ctx.input(2)? {
            ctx.expect_dtype(b, DType::Int64)?;
            if b.1.elements() != channels as u64 {
                return Err(ctx.shape_error(b.0, "a bias with one int64 per output channel"));
            }
        }
    }
    Ok(())
}

/// Offsets 0, the clamp range inside int16, and per-channel shifts in `[-31, 7]`.
fn check_quant16(
    ctx: &OpCtx,
    offsets: [i32; 2],
    act: (i32, i32),
    q: (&[i32], &[i32]),
) -> Result<(), Error> {
    if offsets != [0, 0] {
        return Err(ctx.param_error("zero points (int16 activations are symmetric)"));
    }
    let r = i32::from(i16::MIN)..=i32::from(i16::MAX);
    if !r.contains(&act.0) || !(act.0..=i32::from(i16::MAX)).contains(&act.1) {
        return Err(ctx.param_error("activation range"));
    }
    if q.1.iter().any(|&s| !(-31..=7).contains(&s)) {
        return Err(ctx.param_error("output shift (16x8: in [-31, 7])"));
    }
    Ok(())
}

fn bias64<'a>(ctx: &OpCtx, mem: &OpMem<'a>) -> Result<Option<&'a [i64]>, Error> {
    if ctx.input_count() < 3 {
        return Ok(None);
    }
    match mem.input(2)? {
        None => Ok(None),
        Some(b) => as_typed::<i64>(b).map(Some),
    }
}

/// The 16x8 output stage: 64-bit sum + bias, rescale, clamp.
#[inline(always)]
fn stage16(
    acc: i64,
    bias: Option<&[i64]>,
    k: usize,
    c: usize,
    q: (&[i32], &[i32]),
    act: (i32, i32),
) -> i16 {
    let acc = acc.wrapping_add(bias.and_then(|b| b.get(c)).copied().unwrap_or(0));
    let m = q.0.get(k).copied().unwrap_or(0);
    let s = q.1.get(k).copied().unwrap_or(0);
    // `max`/`min`, not `clamp` (which panics when min > max); `check_quant16` proved
    // `act.0 ≤ act.1`, where both agree.
    multiply_by_quantized_multiplier_64(acc, m, s)
        .max(act.0)
        .min(act.1) as i16
}

fn geometry(p: [u32; 6]) -> Geometry {
    Geometry {
        stride: [p[0] as usize, p[1] as usize],
        dilation: [p[2] as usize, p[3] as usize],
        pad: [p[4] as usize, p[5] as usize],
    }
}

/// Checks a 16x8 op (see the module documentation).
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    check(ctx).map(|_| ())
}

/// What a checked 16x8 op needs to run.
enum Checked<'a> {
    Conv(&'a ConvParams, [[usize; 4]; 3]),
    Depthwise(&'a DepthwiseParams, [[usize; 4]; 3]),
    Fc(&'a FullyConnectedParams, [usize; 3]),
}

fn check<'a>(ctx: &OpCtx<'a>) -> Result<Checked<'a>, Error> {
    match ctx.kind {
        OpKind::Conv2d => {
            let p: &ConvParams = ctx.params()?;
            let is = dims4(ctx, ctx.required_input(0)?, "a 4-D NHWC input")?;
            let fs = dims4(ctx, ctx.required_input(1)?, "a 4-D OHWI filter")?;
            let os = dims4(ctx, ctx.output(0)?, "a 4-D NHWC output")?;
            let [out_c, f_h, f_w, f_ic] = fs;
            check_io(ctx, out_c)?;
            if is[0] != os[0] || out_c != os[3] || out_c != p.channel_count as usize {
                return Err(ctx.param_error("output channels or batches"));
            }
            // `checked_rem`: no division by zero when the input has no channels.
            if is[3].checked_rem(f_ic) != Some(0) || out_c.checked_rem(is[3] / f_ic) != Some(0) {
                return Err(ctx.param_error("groups"));
            }
            if p.layout != LAYOUT_REFERENCE || p.packed_offset != 0 || p.folded_bias_offset != 0 {
                return Err(ctx.param_error("layout (16x8 has the reference layout only)"));
            }
            check_axis(os[1], p.stride_h, f_h, p.dilation_h, p.pad_h)
                .map_err(|f| ctx.param_error(f))?;
            check_axis(os[2], p.stride_w, f_w, p.dilation_w, p.pad_w)
                .map_err(|f| ctx.param_error(f))?;
            let q = channel_quant(ctx, p.multipliers_offset, p.shifts_offset, out_c)?;
            check_quant16(
                ctx,
                [p.input_offset, p.output_offset],
                (p.act_min, p.act_max),
                q,
            )?;
            Ok(Checked::Conv(p, [is, fs, os]))
        }
        OpKind::DepthwiseConv2d => {
            let p: &DepthwiseParams = ctx.params()?;
            let is = dims4(ctx, ctx.required_input(0)?, "a 4-D NHWC input")?;
            let fs = dims4(ctx, ctx.required_input(1)?, "a 4-D 1×H×W×(C·M) filter")?;
            let os = dims4(ctx, ctx.output(0)?, "a 4-D NHWC output")?;
            check_io(ctx, os[3])?;
            let m = p.depth_multiplier as usize;
            if is[0] != os[0]
                || fs[0] != 1
                || m == 0
                || is[3].checked_mul(m) != Some(os[3])
                || fs[3] != os[3]
                || os[3] != p.channel_count as usize
            {
                return Err(ctx.param_error("depthwise shapes"));
            }
            check_axis(os[1], p.stride_h, fs[1], p.dilation_h, p.pad_h)
                .map_err(|f| ctx.param_error(f))?;
            check_axis(os[2], p.stride_w, fs[2], p.dilation_w, p.pad_w)
                .map_err(|f| ctx.param_error(f))?;
            let q = channel_quant(ctx, p.multipliers_offset, p.shifts_offset, os[3])?;
            check_quant16(
                ctx,
                [p.input_offset, p.output_offset],
                (p.act_min, p.act_max),
                q,
            )?;
            Ok(Checked::Depthwise(p, [is, fs, os]))
        }
        OpKind::FullyConnected => {
            let p: &FullyConnectedParams = ctx.params()?;
            let (input, weights, output) = (
                ctx.required_input(0)?,
                ctx.required_input(1)?,
                ctx.output(0)?,
            );
            let (out_f, in_f) = match weights.1.dims() {
                &[o, i] if o > 0 && i > 0 => (o as usize, i as usize),
                _ => return Err(ctx.shape_error(weights.0, "2-D weights [out, in], both non-zero")),
            };
            check_io(ctx, out_f)?;
            if output.1.dims().last().copied() != Some(out_f as u32) {
                return Err(ctx.shape_error(output.0, "an output ending with the weights' rows"));
            }
            let batches = output.1.elements() / out_f as u64;
            if input.1.elements() != batches * in_f as u64 {
                return Err(ctx.shape_error(input.0, "batches × the weights' columns elements"));
            }
            let count = p.channel_count as usize;
            if p.filter_offset != 0 || (count != 1 && count != out_f) {
                return Err(ctx.param_error("filter_offset / channel_count"));
            }
            if p.layout != LAYOUT_REFERENCE || p.packed_offset != 0 || p.folded_bias_offset != 0 {
                return Err(ctx.param_error("layout (16x8 has the reference layout only)"));
            }
            let q = channel_quant(ctx, p.multipliers_offset, p.shifts_offset, count)?;
            check_quant16(
                ctx,
                [p.input_offset, p.output_offset],
                (p.act_min, p.act_max),
                q,
            )?;
            Ok(Checked::Fc(p, [batches as usize, in_f, out_f]))
        }
        _ => Err(ctx.param_error("kind (int16 activations)")),
    }
}

/// Runs a 16x8 op.
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem) -> Result<(), Error> {
    let checked = check(ctx)?;
    let input: &[i16] = as_typed(mem.required_input(0)?)?;
    let weights = as_i8(mem.required_input(1)?);
    let bias = bias64(ctx, &mem)?;
    let output: &mut [i16] = as_typed_mut(mem.output)?;
    match checked {
        Checked::Conv(p, [is, fs, os]) => {
            let q = channel_quant(ctx, p.multipliers_offset, p.shifts_offset, fs[0])?;
            let act = (p.act_min, p.act_max);
            let g = geometry([
                p.stride_h,
                p.stride_w,
                p.dilation_h,
                p.dilation_w,
                p.pad_h,
                p.pad_w,
            ]);
            accumulate::conv(&g, is, input, 0, fs, weights, os, output, |a, c| {
                stage16(a, bias, c, c, q, act)
            })
        }
        Checked::Depthwise(p, [is, fs, os]) => {
            let q = channel_quant(ctx, p.multipliers_offset, p.shifts_offset, os[3])?;
            let act = (p.act_min, p.act_max);
            let g = geometry([
                p.stride_h,
                p.stride_w,
                p.dilation_h,
                p.dilation_w,
                p.pad_h,
                p.pad_w,
            ]);
            let m = p.depth_multiplier as usize;
            accumulate::depthwise(&g, m, is, input, 0, fs, weights, os, output, |a, c| {
                stage16(a, bias, c, c, q, act)
            })
        }
        Checked::Fc(p, [batches, in_f, out_f]) => {
            let count = p.channel_count as usize;
            let q = channel_quant(ctx, p.multipliers_offset, p.shifts_offset, count)?;
            let act = (p.act_min, p.act_max);
            let per_channel = count != 1;
            accumulate::fully_connected(
                batches,
                in_f,
                out_f,
                input,
                0,
                weights,
                0,
                output,
                |a, c| stage16(a, bias, if per_channel { c } else { 0 }, c, q, act),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplier_64_rounds_like_tflite() {
        // 0.5 = 2^30 in Q31 → reduced 2^14 (Q15); x·0.5 with round half up (+2^14 >> 15).
        assert_eq!(multiply_by_quantized_multiplier_64(100, 1 << 30, 0), 50);
        assert_eq!(multiply_by_quantized_multiplier_64(101, 1 << 30, 0), 51);
        assert_eq!(multiply_by_quantized_multiplier_64(-101, 1 << 30, 0), -50);
        assert_eq!(multiply_by_quantized_multiplier_64(100, 1 << 30, 1), 100);
        assert_eq!(multiply_by_quantized_multiplier_64(100, 1 << 30, -1), 25);
        // A multiplier at the top saturates the Q15 rounding at 0x7FFF.
        assert_eq!(
            multiply_by_quantized_multiplier_64(1 << 20, i32::MAX, 0),
            0x7FFF << 5
        );
        // No panic at the extremes.
        let _ = multiply_by_quantized_multiplier_64(i64::MAX, i32::MAX, 7);
        let _ = multiply_by_quantized_multiplier_64(i64::MIN, 0, -31);
    }
}
