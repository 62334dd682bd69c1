//! Fixed-point arithmetic of the TFLite quantization spec (gemmlowp semantics), shared by the kernels.
//!
//! These functions reproduce `tflite::MultiplyByQuantizedMultiplier` and its helpers exactly,
//! including saturation and both rounding rules (the high multiply rounds ties toward +∞, the
//! power-of-two division rounds ties away from zero), so that int8 results match TensorFlow Lite
//! Micro bit for bit.

/// `SaturatingRoundingDoublingHighMul`: the high 32 bits of `2·a·b`, rounded, saturating the one
/// overflowing case (`a == b == i32::MIN`).
///
/// TFLite adds a sign-dependent nudge (`2^30`, or `1 − 2^30` for a negative product) and divides
/// by `2^31` truncating toward zero. For every product that equals adding `2^30` and shifting
/// right arithmetically (flooring): for `ab = −x < 0`, `−⌊(x + 2^30 − 1) / 2^31⌋ =
/// −⌈(x − 2^30) / 2^31⌉ = ⌊(2^30 − x) / 2^31⌋`. The floor form is one multiply-accumulate and a
/// shift on 32-bit cores (`SMLAL`) instead of a 64-bit signed division; the test below checks it
/// against the literal formula.
#[inline(always)]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    (((a as i64) * (b as i64) + (1 << 30)) >> 31) as i32
}

/// `RoundingDivideByPOT`: `x / 2^exponent` rounded to nearest, ties away from zero.
/// `exponent` must be in `0..=31`; larger values are clamped to 31.
#[inline(always)]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let exponent = exponent.clamp(0, 31) as u32;
    // 32-bit arithmetic only (a 64-bit shift is a call or several instructions on Cortex-M).
    let mask = ((1u32 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + ((x as u32) >> 31) as i32;
    (x >> exponent) + ((remainder > threshold) as i32)
}

/// `MultiplyByQuantizedMultiplier`: `x · multiplier · 2^shift` with a Q31 `multiplier`, TFLite rounding.
#[inline(always)]
pub fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    let left_shift = if shift > 0 { shift } else { 0 };
    // `-shift` for a non-positive shift, else 0, clamped to 31 (as `rounding_divide_by_pot`
    // does): one `USAT` on Arm.
    let right_shift = shift.wrapping_neg().clamp(0, 31);
    let shifted = x.wrapping_mul(1i32.wrapping_shl(left_shift as u32));
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(shifted, multiplier),
        right_shift,
    )
}

/// `MultiplyByQuantizedMultiplierSmallerThanOneExp`: used where the shift is known to be ≤ 0.
#[inline(always)]
pub fn multiply_by_quantized_multiplier_smaller_than_one_exp(
    x: i32,
    multiplier: i32,
    left_shift: i32,
) -> i32 {
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(x, multiplier),
        left_shift.wrapping_neg(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// TFLite's `SaturatingRoundingDoublingHighMul`, literally.
    fn srdhm_literal(a: i32, b: i32) -> i32 {
        if a == i32::MIN && b == i32::MIN {
            return i32::MAX;
        }
        let ab = (a as i64) * (b as i64);
        let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
        ((ab + nudge) / (1i64 << 31)) as i32
    }

    /// TFLite's `RoundingDivideByPOT`, literally (64-bit mask).
    fn rdbp_literal(x: i32, exponent: i32) -> i32 {
        let mask: i32 = ((1i64 << exponent) - 1) as i32;
        let remainder = x & mask;
        let threshold = (mask >> 1) + ((x < 0) as i32);
        (x >> exponent) + ((remainder > threshold) as i32)
    }

    /// Values around the rounding boundaries and the extremes.
    fn edgy() -> impl Strategy<Value = i32> {
        prop_oneof![
            any::<i32>(),
            Just(i32::MIN),
            Just(i32::MAX),
            Just(0),
            Just(-1),
            Just(1),
            (0u32..31, -2i32..=2, any::<bool>()).prop_map(|(k, d, neg)| {
                let v = (1i32 << k).wrapping_add(d);
                if neg {
                    v.wrapping_neg()
                } else {
                    v
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn doubling_high_mul_equals_tflite(a in edgy(), b in edgy()) {
            prop_assert_eq!(saturating_rounding_doubling_high_mul(a, b), srdhm_literal(a, b));
        }

        #[test]
        fn multiply_by_quantized_multiplier_equals_tflite(
            x in edgy(),
            m in edgy(),
            shift in prop_oneof![-40i32..=40, any::<i32>()],
        ) {
            // TFLite's composition, literally, with the literal helpers.
            let left = if shift > 0 { shift } else { 0 };
            let right = if shift > 0 { 0 } else { shift.wrapping_neg() };
            let shifted = x.wrapping_mul(1i32.wrapping_shl(left as u32));
            let want = rdbp_literal(srdhm_literal(shifted, m), right.clamp(0, 31));
            prop_assert_eq!(multiply_by_quantized_multiplier(x, m, shift), want);
        }

        #[test]
        fn divide_by_pot_equals_tflite(x in edgy(), e in 0i32..=31) {
            prop_assert_eq!(rounding_divide_by_pot(x, e), rdbp_literal(x, e));
        }
    }

    #[test]
    fn doubling_high_mul_ties_and_signs() {
        // Products exactly at ±(k + 1/2)·2^31 and one either side, both signs.
        for k in [0i64, 1, 2, 12345, (1 << 30) - 1] {
            for d in [-1i64, 0, 1] {
                let ab = (2 * k + 1) * (1i64 << 30) + d;
                for sign in [1i64, -1] {
                    // a·b = sign·ab with b = 2 (a = sign·ab / 2, when that is an integer).
                    let v = sign * ab;
                    if v % 2 == 0 && (v / 2).abs() <= i32::MAX as i64 {
                        let a = (v / 2) as i32;
                        assert_eq!(
                            saturating_rounding_doubling_high_mul(a, 2),
                            srdhm_literal(a, 2)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rounding_divide_rounds_half_away_from_zero() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(4, 1), 2);
        assert_eq!(rounding_divide_by_pot(-4, 1), -2);
        assert_eq!(rounding_divide_by_pot(7, 0), 7);
    }

    #[test]
    fn doubling_high_mul_saturates() {
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        assert_eq!(
            saturating_rounding_doubling_high_mul(1 << 30, 1 << 30),
            1 << 29
        );
    }

    #[test]
    fn multiplier_half() {
        // 0.5 as Q31 with shift 0.
        assert_eq!(multiply_by_quantized_multiplier(100, 1 << 30, 0), 50);
        assert_eq!(multiply_by_quantized_multiplier(101, 1 << 30, 0), 51);
        assert_eq!(multiply_by_quantized_multiplier(100, 1 << 30, 1), 100);
        assert_eq!(multiply_by_quantized_multiplier(100, 1 << 30, -1), 25);
    }
}
