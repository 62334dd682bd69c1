//! Element-wise activations on int8 tensors: RELU, RELU6, LOGISTIC and TANH.
//!
//! The integer recipes are TFLM's reference kernels:
//! - RELU (`ReluQuantized`): requantizes `input − in_zp` to the output scale with a Q31
//!   multiplier, adds the output zero point and clamps to `[max(-128, out_zp), 127]`.
//! - RELU6 (`Relu6Quantized`): clamps to the quantized 0 and 6 of the *input* quantization.
//! - LOGISTIC / TANH (`reference_integer_ops::Logistic` / `Tanh`): the input is rescaled to a
//!   Q4.27 fixed-point number (inputs beyond `input_range_radius` saturate) and gemmlowp's
//!   fixed-point logistic / tanh is evaluated; outputs have the fixed quantization of the spec
//!   (logistic: scale 1/256, zero point −128; tanh: scale 1/128, zero point 0).
//!
//! All four kinds may run in place (output sharing input 0's arena bytes).

use super::{as_i8, as_i8_mut, OpCtx, OpKind, OpMem};
use crate::error::Error;
use crate::fixed_point;
use crate::format::{DType, Storage};
use crate::quant::{multiply_by_quantized_multiplier, rounding_divide_by_pot};

/// Parameters of RELU (TFLM's `ReluParams`, int8).
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct ReluParams {
    /// Zero point of the input.
    pub input_offset: i32,
    /// Zero point of the output.
    pub output_offset: i32,
    /// Q31 multiplier of `input_scale / output_scale`.
    pub output_multiplier: i32,
    /// Shift of the multiplier (-31..=30).
    pub output_shift: i32,
    /// Lower clamp: `max(-128, out_zp + round(0 / out_scale))`.
    pub activation_min: i32,
    /// Upper clamp: 127.
    pub activation_max: i32,
}

/// Parameters of RELU6 (TFLM's `Relu6OpData`, int8).
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct Relu6Params {
    /// The quantized 0 of the input (its zero point): the lower clamp.
    pub zero: i32,
    /// The quantized 6.0 of the input, clamped to int8: the upper clamp.
    pub six: i32,
}

/// Parameters of LOGISTIC and TANH (TFLM's `OpDataLogistic` / tanh `OpData`, int8).
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct SigmoidParams {
    /// Zero point of the input.
    pub input_zero_point: i32,
    /// Inputs with `|q − zp| ≥ input_range_radius` saturate the output.
    pub input_range_radius: i32,
    /// Q31 multiplier of `input_scale · 2^27` (rescales the input to Q4.27).
    pub input_multiplier: i32,
    /// Left shift of that multiplier (0..=31).
    pub input_left_shift: i32,
}

/// One RELU element.
#[inline(always)]
pub fn relu_element(p: &ReluParams, x: i8) -> i8 {
    let v = p
        .output_offset
        .wrapping_add(multiply_by_quantized_multiplier(
            (x as i32).wrapping_sub(p.input_offset),
            p.output_multiplier,
            p.output_shift,
        ));
    v.max(p.activation_min).min(p.activation_max) as i8
}

/// One RELU6 element.
#[inline(always)]
pub fn relu6_element(p: &Relu6Params, x: i8) -> i8 {
    let v = x as i32;
    (if v > p.six {
        p.six
    } else if v < p.zero {
        p.zero
    } else {
        v
    }) as i8
}

/// One LOGISTIC element (output scale 1/256, zero point −128).
#[inline(always)]
pub fn logistic_element(p: &SigmoidParams, x: i8) -> i8 {
    let input = (x as i32).wrapping_sub(p.input_zero_point);
    if input <= p.input_range_radius.wrapping_neg() {
        i8::MIN
    } else if input >= p.input_range_radius {
        i8::MAX
    } else {
        let input_q4 =
            multiply_by_quantized_multiplier(input, p.input_multiplier, p.input_left_shift);
        let out_q0 = fixed_point::logistic(input_q4, 4);
        let out_q23 = rounding_divide_by_pot(out_q0, 31 - 8);
        out_q23.wrapping_add(-128).clamp(-128, 127) as i8
    }
}

/// One TANH element (output scale 1/128, zero point 0).
#[inline(always)]
pub fn tanh_element(p: &SigmoidParams, x: i8) -> i8 {
    let input = (x as i32).wrapping_sub(p.input_zero_point);
    if input <= p.input_range_radius.wrapping_neg() {
        i8::MIN
    } else if input >= p.input_range_radius {
        i8::MAX
    } else {
        let input_q4 =
            multiply_by_quantized_multiplier(input, p.input_multiplier, p.input_left_shift);
        let out_q0 = fixed_point::tanh(input_q4, 4);
        rounding_divide_by_pot(out_q0, 31 - 7).clamp(-128, 127) as i8
    }
}

/// Reference int8 RELU.
pub fn relu_int8(p: &ReluParams, input: &[i8], output: &mut [i8]) {
    map(input, output, |x| relu_element(p, x));
}

/// Reference int8 RELU6.
pub fn relu6_int8(p: &Relu6Params, input: &[i8], output: &mut [i8]) {
    map(input, output, |x| relu6_element(p, x));
}

/// Reference int8 LOGISTIC.
pub fn logistic_int8(p: &SigmoidParams, input: &[i8], output: &mut [i8]) {
    map(input, output, |x| logistic_element(p, x));
}

/// Reference int8 TANH.
pub fn tanh_int8(p: &SigmoidParams, input: &[i8], output: &mut [i8]) {
    map(input, output, |x| tanh_element(p, x));
}

fn map(input: &[i8], output: &mut [i8], f: impl Fn(i8) -> i8) {
    for (o, &x) in output.iter_mut().zip(input) {
        *o = f(x);
    }
}

/// Applies the int8 → int8 function `f` to `input` (or in place to `data` when `input` is
/// `None`). Large tensors go through a 256-entry table of `f` (same results, fewer evaluations).
fn apply(input: Option<&[i8]>, data: &mut [i8], f: impl Fn(i8) -> i8) {
    let n = data.len();
    if n > 256 {
        let mut table = [0i8; 256];
        for (i, t) in table.iter_mut().enumerate() {
            *t = f(i as u8 as i8);
        }
        let lookup = |x: i8| table[x as u8 as usize]; // u8 index < 256
        match input {
            Some(src) => map(src, data, lookup),
            None => data.iter_mut().for_each(|x| *x = lookup(*x)),
        }
    } else {
        match input {
            Some(src) => map(src, data, f),
            None => data.iter_mut().for_each(|x| *x = f(*x)),
        }
    }
}

/// Checks a RELU, RELU6, LOGISTIC or TANH op.
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    if ctx.input_count() != 1 || ctx.desc.output_count != 1 {
        return Err(ctx.param_error("input_count"));
    }
    let input = ctx.required_input(0)?;
    let output = ctx.output(0)?;
    ctx.expect_dtype(input, DType::Int8)?;
    ctx.expect_dtype(output, DType::Int8)?;
    if input.1.dims() != output.1.dims() {
        return Err(ctx.shape_error(output.0, "the shape of the input"));
    }
    match ctx.kind {
        OpKind::Relu => {
            let p: &ReluParams = ctx.params()?;
            if !(-128..=127).contains(&p.input_offset)
                || !(-128..=127).contains(&p.output_offset)
                || p.output_multiplier < 0
                || !(-31..=30).contains(&p.output_shift)
                || p.activation_min > p.activation_max
                || p.activation_min < -128
                || p.activation_max > 127
            {
                return Err(ctx.param_error("relu params"));
            }
        }
        OpKind::Relu6 => {
            let p: &Relu6Params = ctx.params()?;
            if !(-128..=127).contains(&p.zero) || !(-128..=127).contains(&p.six) {
                return Err(ctx.param_error("relu6 params"));
            }
        }
        OpKind::Logistic | OpKind::Tanh => {
            let p: &SigmoidParams = ctx.params()?;
            if !(-128..=127).contains(&p.input_zero_point)
                || p.input_range_radius < 0
                || p.input_multiplier < 0
                || !(0..=31).contains(&p.input_left_shift)
            {
                return Err(ctx.param_error("logistic/tanh params"));
            }
        }
        _ => {
            return Err(Error::UnsupportedOp {
                op: ctx.index,
                kind: ctx.desc.kind,
            })
        }
    }
    Ok(())
}

/// Whether the op runs in place: its input is the output's arena bytes.
fn in_place(ctx: &OpCtx) -> Result<bool, Error> {
    let (_, i) = ctx.required_input(0)?;
    let (_, o) = ctx.output(0)?;
    Ok(i.storage() == Some(Storage::Arena)
        && o.storage() == Some(Storage::Arena)
        && i.offset == o.offset
        && i.bytes == o.bytes
        && i.bytes > 0)
}

/// Runs a RELU, RELU6, LOGISTIC or TANH op, in place when the planner shared the buffer.
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem) -> Result<(), Error> {
    let input = if in_place(ctx)? {
        None
    } else {
        Some(as_i8(mem.required_input(0)?))
    };
    let out = as_i8_mut(mem.output);
    if input.is_some_and(|i| i.len() != out.len()) {
        return Err(ctx.param_error("input size"));
    }
    match ctx.kind {
        OpKind::Relu => {
            let p: &ReluParams = ctx.params()?;
            apply(input, out, |x| relu_element(p, x));
        }
        OpKind::Relu6 => {
            let p: &Relu6Params = ctx.params()?;
            apply(input, out, |x| relu6_element(p, x));
        }
        OpKind::Logistic => {
            let p: &SigmoidParams = ctx.params()?;
            apply(input, out, |x| logistic_element(p, x));
        }
        OpKind::Tanh => {
            let p: &SigmoidParams = ctx.params()?;
            apply(input, out, |x| tanh_element(p, x));
        }
        _ => {
            return Err(Error::UnsupportedOp {
                op: ctx.index,
                kind: ctx.desc.kind,
            })
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;

    /// LOGISTIC/TANH params for an input scale, computed as TFLM's Prepare does.
    fn sigmoid_params(scale: f64, zp: i32) -> SigmoidParams {
        let real = scale * (1u64 << 27) as f64;
        let mut e = 0;
        let mut m = real;
        while m >= 1.0 {
            m /= 2.0;
            e += 1;
        }
        while m < 0.5 {
            m *= 2.0;
            e -= 1;
        }
        let radius = (15.0 * (1u64 << 27) as f64 / (1u64 << e) as f64).floor() as i32;
        SigmoidParams {
            input_zero_point: zp,
            input_range_radius: radius,
            input_multiplier: (m * (1u64 << 31) as f64).round() as i32,
            input_left_shift: e,
        }
    }

    #[test]
    fn relu_requantizes_and_clamps() {
        // in scale 0.5 zp -10, out scale 0.25 zp -128: multiplier 2.0 = (1<<30, 2).
        let p = ReluParams {
            input_offset: -10,
            output_offset: -128,
            output_multiplier: 1 << 30,
            output_shift: 2,
            activation_min: -128,
            activation_max: 127,
        };
        let input = [-128i8, -10, -9, 0, 50, 127];
        let mut out = [0i8; 6];
        relu_int8(&p, &input, &mut out);
        // (x+10)*2 - 128, clamped at -128 and 127.
        assert_eq!(out, [-128, -128, -126, -108, -8, 127]);
    }

    #[test]
    fn relu6_clamps() {
        let p = Relu6Params { zero: -5, six: 20 };
        let input = [-128i8, -5, 0, 20, 21, 127];
        let mut out = [0i8; 6];
        relu6_int8(&p, &input, &mut out);
        assert_eq!(out, [-5, -5, 0, 20, 20, 20]);
    }

    #[test]
    fn logistic_matches_float_and_saturates() {
        let p = sigmoid_params(0.1, 3);
        for x in -128..=127i32 {
            let got = logistic_element(&p, x as i8) as i32;
            let real = 0.1 * (x - 3) as f64;
            let want = ((1.0 / (1.0 + (-real).exp())) * 256.0).round() as i32 - 128;
            assert!(
                (got - want.clamp(-128, 127)).abs() <= 1,
                "x {x}: {got} vs {want}"
            );
        }
        // Inputs at the radius saturate: with scale 0.1 the radius (150) lies beyond int8, so use
        // scale 1: 2^27 = 0.5 · 2^28, radius = floor(15 · 2^27 / 2^28) = 7.
        let p = sigmoid_params(1.0, 0);
        assert_eq!(p.input_range_radius, 7);
        assert_eq!(logistic_element(&p, 7), 127);
        assert_eq!(logistic_element(&p, -7), -128);
        assert_eq!(logistic_element(&p, 6), 127); // 256 · logistic(6) = 255.4 → 127
        assert_eq!(logistic_element(&p, -6), -127);
        assert_eq!(logistic_element(&p, 127), 127);
        assert_eq!(logistic_element(&p, -128), -128);
        assert_eq!(logistic_element(&p, 0), 0); // 0.5 · 256 − 128
    }

    #[test]
    fn tanh_matches_float_and_saturates() {
        let p = sigmoid_params(0.05, -7);
        for x in -128..=127i32 {
            let got = tanh_element(&p, x as i8) as i32;
            let real = 0.05 * (x + 7) as f64;
            let want = (real.tanh() * 128.0).round() as i32;
            assert!(
                (got - want.clamp(-128, 127)).abs() <= 1,
                "x {x}: {got} vs {want}"
            );
        }
        assert_eq!(tanh_element(&p, -7), 0);
        let p = sigmoid_params(1.0, 0);
        assert_eq!(tanh_element(&p, 100), 127);
        assert_eq!(tanh_element(&p, -100), -128);
    }

    #[test]
    fn table_path_equals_direct_path() {
        let p = sigmoid_params(0.07, 12);
        let input: std::vec::Vec<i8> = (0..1000).map(|i| (i * 37 % 256) as u8 as i8).collect();
        let mut direct = std::vec![0i8; 1000];
        logistic_int8(&p, &input, &mut direct);
        let mut via_table = std::vec![0i8; 1000];
        apply(Some(&input), &mut via_table, |x| logistic_element(&p, x));
        assert_eq!(direct, via_table);
        let mut in_place = input.clone();
        apply(None, &mut in_place, |x| logistic_element(&p, x));
        assert_eq!(direct, in_place);
    }

    #[test]
    fn extreme_params_do_not_panic() {
        let vals = [
            i32::MIN,
            i32::MIN + 1,
            -1000,
            -32,
            -31,
            -1,
            0,
            1,
            20,
            30,
            31,
            32,
            1 << 30,
            i32::MAX,
        ];
        for (k, &v) in vals.iter().enumerate() {
            let w = vals[(k * 5 + 3) % vals.len()];
            // Shifts come from validated params; quant.rs negates them, so keep them > i32::MIN.
            let (vs, ws) = (v.max(-1000), w.max(-1000));
            let r = ReluParams {
                input_offset: v,
                output_offset: w,
                output_multiplier: v,
                output_shift: ws,
                activation_min: w,
                activation_max: v,
            };
            let s = SigmoidParams {
                input_zero_point: w,
                input_range_radius: v,
                input_multiplier: w,
                input_left_shift: vs,
            };
            let r6 = Relu6Params { zero: v, six: w };
            for x in [-128i8, -1, 0, 1, 127] {
                relu_element(&r, x);
                relu6_element(&r6, x);
                logistic_element(&s, x);
                tanh_element(&s, x);
            }
        }
    }
}
