//! Host-side quantization arithmetic that mirrors TFLite's `quantization_util.cc` exactly,
//! so that precomputed multipliers equal the ones TFLM computes at `Prepare` time.

/// `frexp`: `x = m · 2^e` with `0.5 ≤ |m| < 1` (or `m = 0`).
pub fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale up first.
        let (m, e) = frexp(x * f64::powi(2.0, 64));
        return (m, e - 64);
    }
    let e = exp - 1022;
    let m = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (m, e)
}

/// TFLite's `QuantizeMultiplier`: a real multiplier as a Q31 significand and a power-of-two shift.
pub fn quantize_multiplier(double_multiplier: f64) -> (i32, i32) {
    if double_multiplier == 0.0 {
        return (0, 0);
    }
    let (q, mut shift) = frexp(double_multiplier);
    let mut q_fixed = (q * (1u64 << 31) as f64).round() as i64;
    if q_fixed == 1i64 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        shift = 0;
        q_fixed = 0;
    }
    (q_fixed as i32, shift)
}

/// TFLite's `QuantizeMultiplierSmallerThanOneExp` (the shift is ≤ 0).
pub fn quantize_multiplier_smaller_than_one_exp(double_multiplier: f64) -> (i32, i32) {
    quantize_multiplier(double_multiplier)
}

/// TFLite's `QuantizeMultiplierGreaterThanOne` (the shift is ≥ 0).
pub fn quantize_multiplier_greater_than_one(double_multiplier: f64) -> (i32, i32) {
    quantize_multiplier(double_multiplier)
}

/// Clamp range of a fused activation for a quantized output, as TFLM's
/// `CalculateActivationRangeQuantized` computes it.
pub fn activation_range_quantized(
    activation: crate::ir::Activation,
    scale: f32,
    zero_point: i32,
    qmin: i32,
    qmax: i32,
) -> Option<(i32, i32)> {
    use crate::ir::Activation;
    let quantize = |x: f32| -> i32 {
        // TFLM: zero_point + static_cast<int32_t>(TfLiteRound(f / scale)).
        zero_point.saturating_add((x / scale).round() as i32)
    };
    match activation {
        Activation::None => Some((qmin, qmax)),
        Activation::Relu => Some((qmin.max(quantize(0.0)), qmax)),
        Activation::Relu6 => Some((qmin.max(quantize(0.0)), qmax.min(quantize(6.0)))),
        Activation::ReluN1To1 => Some((qmin.max(quantize(-1.0)), qmax.min(quantize(1.0)))),
        Activation::Tanh | Activation::SignBit => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frexp_matches_c() {
        assert_eq!(frexp(1.0), (0.5, 1));
        assert_eq!(frexp(0.75), (0.75, 0));
        assert_eq!(frexp(-3.0), (-0.75, 2));
        assert_eq!(frexp(0.0), (0.0, 0));
        let (m, e) = frexp(1e-310);
        assert!((0.5..1.0).contains(&m));
        assert_eq!(e, -1029);
        assert_eq!(m * 2f64.powi(e + 64) / 2f64.powi(64), 1e-310);
    }

    #[test]
    fn multipliers() {
        assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
        assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
        assert_eq!(quantize_multiplier(0.0), (0, 0));
        // Rounds up to 2^31 and renormalises.
        let (m, s) = quantize_multiplier(0.999_999_999_9);
        assert_eq!((m, s), (1 << 30, 1));
    }
}
