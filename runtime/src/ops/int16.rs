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
    ) && ctx.input_dtype(0) == Some(DType::Int16)
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
    //! The 16x8 ops through `validate` + `eval` against TFLM's reference loops, transcribed
    //! literally below (output-major, padding by skipping taps), on random shapes and parameters.
    extern crate std;
    use std::vec::Vec;

    use super::super::conv::tests::{bytes_i8, cases, Harness, Rng};
    use super::*;

    fn i16s(r: &mut Rng, n: usize) -> Vec<i16> {
        (0..n)
            .map(|_| match r.range(0, 3) {
                0 => r.range(i64::from(i16::MIN), i64::from(i16::MAX)) as i16,
                1 => [i16::MIN, i16::MAX][r.range(0, 1) as usize],
                _ => r.range(-300, 300) as i16,
            })
            .collect()
    }

    fn i8s(r: &mut Rng, n: usize) -> Vec<i8> {
        (0..n).map(|_| r.range(-127, 127) as i8).collect()
    }

    /// Per-channel (multiplier, shift) and int64 biases: mostly scales that keep the outputs
    /// inside int16, sometimes any 16x8 shift (`[-31, 7]`) or a huge bias (saturating).
    fn quant(r: &mut Rng, n: usize) -> (Vec<i32>, Vec<i32>, Vec<i64>) {
        let m = (0..n).map(|_| r.range(1 << 30, i64::from(i32::MAX)) as i32);
        let m = m.collect();
        let s = (0..n)
            .map(|_| match r.range(0, 5) {
                0 => r.range(-31, 7),
                _ => r.range(-16, -4),
            } as i32)
            .collect();
        let b = (0..n)
            .map(|_| match r.range(0, 7) {
                0 => r.range(-(1 << 40), 1 << 40),
                _ => r.range(-(1 << 20), 1 << 20),
            })
            .collect();
        (m, s, b)
    }

    fn act(r: &mut Rng) -> (i32, i32) {
        if r.range(0, 2) == 0 {
            (i32::from(i16::MIN), i32::from(i16::MAX))
        } else {
            let lo = r.range(-32768, 1000) as i32;
            (lo, r.range(i64::from(lo), 32767) as i32)
        }
    }

    fn out16(acc: i64, m: i32, s: i32, act: (i32, i32)) -> i16 {
        let v = multiply_by_quantized_multiplier_64(acc, m, s);
        v.max(act.0).min(act.1) as i16
    }

    /// Runs a 16x8 op: int16 input, int8 weights, an optional int64 bias, int16 output.
    #[allow(clippy::too_many_arguments)]
    fn run<P: bytemuck::Pod>(
        kind: OpKind,
        params: impl Fn(u32, u32) -> P,
        shapes: [&[u32]; 3],
        x: &[i16],
        w: &[i8],
        bias: Option<&[i64]>,
        q: (&[i32], &[i32]),
    ) -> Result<Vec<i16>, Error> {
        let mut h = Harness::new(kind);
        let (m, s) = (h.add_i32s(q.0), h.add_i32s(q.1));
        h.set_params(&params(m, s));
        h.arena_input(shapes[0], DType::Int16, bytemuck::cast_slice(x));
        h.const_input(shapes[1], DType::Int8, bytes_i8(w));
        if let Some(b) = bias {
            h.const_input(&[b.len() as u32], DType::Int64, bytemuck::cast_slice(b));
        }
        h.set_output(shapes[2], DType::Int16);
        let out = h.run()?;
        Ok(out
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect())
    }

    /// Window geometry of one random case: (out size, stride, dilation, pad) per axis.
    fn axis(r: &mut Rng, input: usize, filter: usize) -> (usize, u32, u32, u32) {
        let (stride, dil) = (r.range(1, 2) as u32, r.range(1, 2) as u32);
        let pad = r.range(0, 2) as u32;
        let reach = (filter - 1) * dil as usize + 1;
        let out = (input + 2 * pad as usize).saturating_sub(reach) / stride as usize + 1;
        (out, stride, dil, pad)
    }

    #[test]
    fn conv_16x8_matches_tflm_loops() {
        let mut r = Rng(0x1608);
        let mut inside = 0;
        for case in 0..cases(150, 4) {
            let groups = r.range(1, 2) as usize;
            let f_ic = r.range(1, 3) as usize;
            let (in_c, out_c) = (f_ic * groups, groups * r.range(1, 3) as usize);
            let (b, in_h, in_w) = (
                r.range(1, 2) as usize,
                r.range(1, 5) as usize,
                r.range(1, 5) as usize,
            );
            let (f_h, f_w) = (r.range(1, 3) as usize, r.range(1, 3) as usize);
            let (out_h, sh, dh, ph) = axis(&mut r, in_h, f_h);
            let (out_w, sw, dw, pw) = axis(&mut r, in_w, f_w);
            let x = i16s(&mut r, b * in_h * in_w * in_c);
            let w = i8s(&mut r, out_c * f_h * f_w * f_ic);
            let (m, s, bias) = quant(&mut r, out_c);
            let bias = (r.range(0, 3) > 0).then_some(&bias[..]);
            let a = act(&mut r);
            let params = |mo, so| ConvParams {
                stride_h: sh,
                stride_w: sw,
                dilation_h: dh,
                dilation_w: dw,
                pad_h: ph,
                pad_w: pw,
                input_offset: 0,
                output_offset: 0,
                act_min: a.0,
                act_max: a.1,
                multipliers_offset: mo,
                shifts_offset: so,
                channel_count: out_c as u32,
                layout: LAYOUT_REFERENCE,
                packed_offset: 0,
                folded_bias_offset: 0,
            };
            let shapes: [&[u32]; 3] = [
                &[b as u32, in_h as u32, in_w as u32, in_c as u32],
                &[out_c as u32, f_h as u32, f_w as u32, f_ic as u32],
                &[b as u32, out_h as u32, out_w as u32, out_c as u32],
            ];
            let got = run(OpKind::Conv2d, params, shapes, &x, &w, bias, (&m, &s)).unwrap();
            // TFLM's ConvPerChannel<int16_t, int8_t, int64_t>.
            let mut want = Vec::new();
            let per_group = out_c / groups;
            for bi in 0..b {
                for oy in 0..out_h {
                    for ox in 0..out_w {
                        for oc in 0..out_c {
                            let g = oc / per_group;
                            let mut acc = 0i64;
                            for fy in 0..f_h {
                                let iy =
                                    (oy * sh as usize + fy * dh as usize) as i64 - i64::from(ph);
                                for fx in 0..f_w {
                                    let ix = (ox * sw as usize + fx * dw as usize) as i64
                                        - i64::from(pw);
                                    if iy < 0 || ix < 0 || iy >= in_h as i64 || ix >= in_w as i64 {
                                        continue;
                                    }
                                    let (iy, ix) = (iy as usize, ix as usize);
                                    for ic in 0..f_ic {
                                        let xv = x
                                            [((bi * in_h + iy) * in_w + ix) * in_c + g * f_ic + ic];
                                        let wv = w[((oc * f_h + fy) * f_w + fx) * f_ic + ic];
                                        acc += i64::from(xv) * i64::from(wv);
                                    }
                                }
                            }
                            acc += bias.map_or(0, |b| b[oc]);
                            want.push(out16(acc, m[oc], s[oc], a));
                        }
                    }
                }
            }
            assert_eq!(got, want, "case {case}: {shapes:?}");
            inside += want
                .iter()
                .filter(|&&v| v > a.0 as i16 && v < a.1 as i16)
                .count();
        }
        // Not all saturation: many outputs lie strictly inside the clamps (native run).
        assert!(
            cfg!(miri) || inside > 500,
            "{inside} outputs off the clamps"
        );
    }

    #[test]
    fn depthwise_16x8_matches_tflm_loops() {
        let mut r = Rng(0xd16);
        for case in 0..cases(150, 4) {
            let (in_c, mult) = (r.range(1, 4) as usize, r.range(1, 2) as usize);
            let out_c = in_c * mult;
            let (b, in_h, in_w) = (
                r.range(1, 2) as usize,
                r.range(1, 5) as usize,
                r.range(1, 5) as usize,
            );
            let (f_h, f_w) = (r.range(1, 3) as usize, r.range(1, 3) as usize);
            let (out_h, sh, dh, ph) = axis(&mut r, in_h, f_h);
            let (out_w, sw, dw, pw) = axis(&mut r, in_w, f_w);
            let x = i16s(&mut r, b * in_h * in_w * in_c);
            let w = i8s(&mut r, f_h * f_w * out_c);
            let (m, s, bias) = quant(&mut r, out_c);
            let bias = (r.range(0, 3) > 0).then_some(&bias[..]);
            let a = act(&mut r);
            let params = |mo, so| DepthwiseParams {
                stride_h: sh,
                stride_w: sw,
                dilation_h: dh,
                dilation_w: dw,
                pad_h: ph,
                pad_w: pw,
                input_offset: 0,
                output_offset: 0,
                act_min: a.0,
                act_max: a.1,
                multipliers_offset: mo,
                shifts_offset: so,
                channel_count: out_c as u32,
                depth_multiplier: mult as u32,
            };
            let shapes: [&[u32]; 3] = [
                &[b as u32, in_h as u32, in_w as u32, in_c as u32],
                &[1, f_h as u32, f_w as u32, out_c as u32],
                &[b as u32, out_h as u32, out_w as u32, out_c as u32],
            ];
            let got = run(
                OpKind::DepthwiseConv2d,
                params,
                shapes,
                &x,
                &w,
                bias,
                (&m, &s),
            );
            // TFLM's DepthwiseConvPerChannel<int16_t, int8_t, int64_t>.
            let mut want = Vec::new();
            for bi in 0..b {
                for oy in 0..out_h {
                    for ox in 0..out_w {
                        for ic in 0..in_c {
                            for mi in 0..mult {
                                let oc = ic * mult + mi;
                                let mut acc = 0i64;
                                for fy in 0..f_h {
                                    let iy = (oy * sh as usize + fy * dh as usize) as i64
                                        - i64::from(ph);
                                    for fx in 0..f_w {
                                        let ix = (ox * sw as usize + fx * dw as usize) as i64
                                            - i64::from(pw);
                                        if iy < 0
                                            || ix < 0
                                            || iy >= in_h as i64
                                            || ix >= in_w as i64
                                        {
                                            continue;
                                        }
                                        let (iy, ix) = (iy as usize, ix as usize);
                                        let xv = x[((bi * in_h + iy) * in_w + ix) * in_c + ic];
                                        let wv = w[(fy * f_w + fx) * out_c + oc];
                                        acc += i64::from(xv) * i64::from(wv);
                                    }
                                }
                                acc += bias.map_or(0, |b| b[oc]);
                                want.push(out16(acc, m[oc], s[oc], a));
                            }
                        }
                    }
                }
            }
            assert_eq!(got.unwrap(), want, "case {case}: {shapes:?}");
        }
    }

    #[test]
    fn fully_connected_16x8_matches_tflm_loops() {
        let mut r = Rng(0xfc16);
        for case in 0..cases(200, 6) {
            let (batches, in_f, out_f) = (
                r.range(1, 3) as usize,
                r.range(1, 20) as usize,
                r.range(1, 6) as usize,
            );
            let per_channel = r.range(0, 1) == 1;
            let count = if per_channel { out_f } else { 1 };
            let x = i16s(&mut r, batches * in_f);
            let w = i8s(&mut r, out_f * in_f);
            let (m, s, _) = quant(&mut r, count);
            let (_, _, bias) = quant(&mut r, out_f);
            let bias = (r.range(0, 3) > 0).then_some(&bias[..]);
            let a = act(&mut r);
            let params = |mo, so| FullyConnectedParams {
                input_offset: 0,
                filter_offset: 0,
                output_offset: 0,
                act_min: a.0,
                act_max: a.1,
                multipliers_offset: mo,
                shifts_offset: so,
                channel_count: count as u32,
                layout: LAYOUT_REFERENCE,
                packed_offset: 0,
                folded_bias_offset: 0,
            };
            let shapes: [&[u32]; 3] = [
                &[batches as u32, in_f as u32],
                &[out_f as u32, in_f as u32],
                &[batches as u32, out_f as u32],
            ];
            let got = run(
                OpKind::FullyConnected,
                params,
                shapes,
                &x,
                &w,
                bias,
                (&m, &s),
            );
            // TFLM's FullyConnected<int16_t, int8_t, int64_t> (per-channel when `count > 1`).
            let mut want = Vec::new();
            for bi in 0..batches {
                for o in 0..out_f {
                    let mut acc: i64 = (0..in_f)
                        .map(|i| i64::from(x[bi * in_f + i]) * i64::from(w[o * in_f + i]))
                        .sum();
                    acc += bias.map_or(0, |b| b[o]);
                    let c = if per_channel { o } else { 0 };
                    want.push(out16(acc, m[c], s[c], a));
                }
            }
            assert_eq!(got.unwrap(), want, "case {case}: {shapes:?}");
        }
    }

    #[test]
    fn refuses_what_16x8_cannot_run() {
        let mut r = Rng(7);
        let (m, s, bias) = quant(&mut r, 2);
        let x = i16s(&mut r, 2 * 3 * 3 * 2);
        let w = i8s(&mut r, 2 * 2 * 2 * 2);
        let shapes: [&[u32]; 3] = [&[2, 3, 3, 2], &[2, 2, 2, 2], &[2, 2, 2, 2]];
        let conv = |input_offset, act_max, shift_bad: bool| {
            let mut s = s.clone();
            if shift_bad {
                s[1] = 8;
            }
            run(
                OpKind::Conv2d,
                |mo, so| ConvParams {
                    stride_h: 1,
                    stride_w: 1,
                    dilation_h: 1,
                    dilation_w: 1,
                    pad_h: 0,
                    pad_w: 0,
                    input_offset,
                    output_offset: 0,
                    act_min: -32768,
                    act_max,
                    multipliers_offset: mo,
                    shifts_offset: so,
                    channel_count: 2,
                    layout: LAYOUT_REFERENCE,
                    packed_offset: 0,
                    folded_bias_offset: 0,
                },
                shapes,
                &x,
                &w,
                Some(&bias),
                (&m, &s),
            )
        };
        assert!(conv(0, 32767, false).is_ok());
        assert!(conv(1, 32767, false).is_err(), "a zero point");
        assert!(conv(0, 32768, false).is_err(), "a clamp outside int16");
        assert!(conv(0, 32767, true).is_err(), "a shift above 7");
    }

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
