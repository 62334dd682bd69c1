//! SOFTMAX with int16 input and output (TFLite's 16x8 scheme): TFLM's
//! `reference_ops::SoftmaxInt16`.
//!
//! Per row of the last dimension: the difference to the row maximum is rescaled so that
//! `[-65535, 0]` covers `[-10, 0]` (Q31 `input_multiplier`, `input_left_shift` — TFLM's 32-bit
//! `MultiplyByQuantizedMultiplier`), recentred to int16 and looked up in a 513-entry table of
//! `exp` on `[-10, 0]`; the sum of the exponentials is normalised to its leading bit and looked
//! up in a 513-entry table of `1 / (1 + x)` on `[0, 1]`; each exponential times that
//! reciprocal, shifted back, is the output (scale 2⁻¹⁵, zero point 0, clamped to `[0, 32767]`).
//! Both tables are int16, interpolated linearly between entries (TFLM's
//! `generic_int16_table_lookup`), built by the compiler as TFLM's `gen_lut` does and stored in
//! the constant section. Everything wraps where C's would: no panics.

use super::{as_typed, as_typed_mut, OpCtx, OpKind, OpMem};
use crate::error::Error;
use crate::format::DType;
use crate::quant::multiply_by_quantized_multiplier;

/// Entries of each int16 softmax table (512 steps plus the end point).
pub const LUT_LEN: usize = 513;

/// Parameters of SOFTMAX with int16 tensors.
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct Softmax16Params {
    /// Q31 multiplier of `input_scale · beta / (10 / 65535)`.
    pub input_multiplier: i32,
    /// Its shift (TFLM's `QuantizeMultiplier` exponent), in `-31..=30`.
    pub input_left_shift: i32,
    /// Byte offset in the constant section of the [`LUT_LEN`] `i16` table of `exp` on `[-10, 0]`.
    pub exp_lut_offset: u32,
    /// Byte offset in the constant section of the [`LUT_LEN`] `i16` table of `1 / (1 + x)` on
    /// `[0, 1]`.
    pub recip_lut_offset: u32,
}

/// Whether op `ctx` is a SOFTMAX with an int16 input (this module's).
pub(crate) fn applies(ctx: &OpCtx) -> bool {
    ctx.kind == OpKind::Softmax && ctx.input_dtype(0) == Some(DType::Int16)
}

/// TFLM's interpolated lookup in a 513-entry int16 table over the int16 range.
#[inline(always)]
pub fn lut_lookup(value: i16, lut: &[i16]) -> i16 {
    let index = (256 + i32::from(value >> 7)) as usize; // in 0..=511
    let offset = i32::from(value & 0x7F);
    let base = lut.get(index).copied().unwrap_or(0);
    let slope = lut.get(index + 1).copied().unwrap_or(0).wrapping_sub(base);
    let delta = (i32::from(slope) * offset + 64) >> 7;
    i32::from(base).wrapping_add(delta) as i16
}

/// Softmax of one row `x` into `out` (same length).
pub fn softmax_row(
    p: &Softmax16Params,
    exp_lut: &[i16],
    recip_lut: &[i16],
    x: &[i16],
    out: &mut [i16],
) {
    let max = x.iter().copied().max().unwrap_or(0);
    let mut sum = 0i32;
    for (o, &v) in out.iter_mut().zip(x) {
        let diff = i32::from(v) - i32::from(max);
        let scaled = multiply_by_quantized_multiplier(diff, p.input_multiplier, p.input_left_shift);
        let sym = scaled.wrapping_add(32767).clamp(-32768, 32767) as i16;
        *o = lut_lookup(sym, exp_lut);
        sum = sum.wrapping_add(i32::from(*o));
    }
    // A valid model's sum is in [1, 2^31): its leading-zero count is in 1..=31.
    let headroom_plus_one = (sum as u32).leading_zeros().clamp(1, 31);
    let shifted = ((i64::from(sum) << (headroom_plus_one - 1)) + (1 << 13)) >> 14;
    let sym = (shifted as i32)
        .wrapping_sub((1 << 15) + (1 << 16))
        .clamp(-32768, 32767) as i16;
    let recip = i64::from(lut_lookup(sym, recip_lut));
    let right_shift = 31 - headroom_plus_one; // in 0..=30
    let round = if right_shift > 0 {
        1i64 << (right_shift - 1)
    } else {
        0
    };
    for o in out.iter_mut() {
        let r = ((i64::from(*o) * recip + round) >> right_shift) as i32;
        *o = r.clamp(0, 32767) as i16;
    }
}

fn row_len(ctx: &OpCtx) -> Result<usize, Error> {
    let (t, d) = ctx.required_input(0)?;
    match d.dims().last() {
        Some(&n) if n > 0 => Ok(n as usize),
        _ => Err(ctx.shape_error(t, "a non-empty last dimension")),
    }
}

/// Checks an int16 SOFTMAX: int16 input and output of one shape, sane parameters, both tables
/// inside the constant section.
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    let p: &Softmax16Params = ctx.params()?;
    if ctx.input_count() != 1 || ctx.desc.output_count != 1 {
        return Err(ctx.param_error("input_count"));
    }
    let (input, output) = (ctx.required_input(0)?, ctx.output(0)?);
    ctx.expect_dtype(input, DType::Int16)?;
    ctx.expect_dtype(output, DType::Int16)?;
    if input.1.dims() != output.1.dims() {
        return Err(ctx.shape_error(output.0, "the shape of the input"));
    }
    row_len(ctx)?;
    if p.input_multiplier < 0 || !(-31..=30).contains(&p.input_left_shift) {
        return Err(ctx.param_error("input multiplier/shift"));
    }
    ctx.const_array::<i16>(p.exp_lut_offset, LUT_LEN)?;
    ctx.const_array::<i16>(p.recip_lut_offset, LUT_LEN)?;
    Ok(())
}

/// Runs an int16 SOFTMAX.
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem) -> Result<(), Error> {
    let p: &Softmax16Params = ctx.params()?;
    let depth = row_len(ctx)?;
    let exp_lut = ctx.const_array::<i16>(p.exp_lut_offset, LUT_LEN)?;
    let recip_lut = ctx.const_array::<i16>(p.recip_lut_offset, LUT_LEN)?;
    let input: &[i16] = as_typed(mem.required_input(0)?)?;
    let output: &mut [i16] = as_typed_mut(mem.output)?;
    if input.len() != output.len() {
        return Err(ctx.param_error("input size"));
    }
    if depth == 0 {
        return Err(ctx.param_error("row length"));
    }
    // Row by row with `split_at_checked` rather than zipped `chunks_exact`, whose out-of-line
    // `Zip::new` divides by the chunk size (a division-by-zero panic path the no-panic link
    // check finds).
    let mut rest = (input, output);
    loop {
        let (x, o) = rest;
        let (Some((row, x_next)), Some((out, o_next))) =
            (x.split_at_checked(depth), o.split_at_mut_checked(depth))
        else {
            break;
        };
        softmax_row(p, exp_lut, recip_lut, row, out);
        rest = (x_next, o_next);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    /// Tables built like TFLM's `gen_lut` (f32), as the compiler does.
    fn lut(f: impl Fn(f32) -> f32, lo: f32, hi: f32) -> Vec<i16> {
        let step = (hi - lo) / 512.0;
        let inv = 65536.0f32 / 2.0;
        let mut t: Vec<i16> = (0..512)
            .map(|i| {
                let x = lo + i as f32 * step;
                let v = (f(x) * inv).round();
                let mid = (f(x + step / 2.0) * inv).round();
                let interp = ((f(lo + (i + 1) as f32 * step) * inv + v) / 2.0).round();
                let bias = ((interp - mid) / 2.0).round();
                (v - bias).clamp(-32768.0, 32767.0) as i16
            })
            .collect();
        t.push((f(hi) * inv).round().clamp(-32768.0, 32767.0) as i16);
        t
    }

    #[test]
    fn softmax_rows_sum_to_one_and_order_is_kept() {
        let e = lut(|x| x.exp(), -10.0, 0.0);
        let r = lut(|x| 1.0 / (1.0 + x), 0.0, 1.0);
        // Input scale 1/4096, beta 1: multiplier of (1/4096) / (10/65535) = 1.5999...
        let m = (1.0 / 4096.0) / (10.0 / 65535.0);
        let (q, e2) = {
            let mut e2 = 0;
            let mut q: f64 = m;
            while q >= 1.0 {
                q /= 2.0;
                e2 += 1;
            }
            (q, e2)
        };
        let p = Softmax16Params {
            input_multiplier: (q * 2147483648.0).round() as i32,
            input_left_shift: e2,
            exp_lut_offset: 0,
            recip_lut_offset: 0,
        };
        let x: Vec<i16> = [-2.0f32, -1.0, 0.0, 0.5, 1.0, 3.0]
            .iter()
            .map(|v| (v * 4096.0) as i16)
            .collect();
        let mut out = std::vec![0i16; x.len()];
        softmax_row(&p, &e, &r, &x, &mut out);
        let xs: Vec<f64> = x.iter().map(|&v| f64::from(v) / 4096.0).collect();
        let z: f64 = xs.iter().map(|v| (v - 3.0).exp()).sum();
        for (k, &o) in out.iter().enumerate() {
            let want = (xs[k] - 3.0).exp() / z;
            assert!(
                (f64::from(o) / 32768.0 - want).abs() < 2e-3,
                "{k}: {o} vs {want}"
            );
        }
        assert!(out.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn hostile_tables_and_params_do_not_panic() {
        let zeros = [0i16; LUT_LEN];
        for (m, s) in [(0, 0), (i32::MAX, 30), (1, -31)] {
            let p = Softmax16Params {
                input_multiplier: m,
                input_left_shift: s,
                exp_lut_offset: 0,
                recip_lut_offset: 0,
            };
            let mut out = [0i16; 3];
            softmax_row(&p, &zeros, &zeros, &[i16::MIN, 0, i16::MAX], &mut out);
            softmax_row(&p, &[], &[], &[1, 2, 3], &mut out);
        }
    }
}
