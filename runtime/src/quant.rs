//! Fixed-point arithmetic of the TFLite quantization spec (gemmlowp semantics), shared by the kernels.
//!
//! These functions reproduce `tflite::MultiplyByQuantizedMultiplier` and its helpers exactly,
//! including saturation and both rounding rules (the high multiply rounds ties toward +∞, the
//! power-of-two division rounds ties away from zero), so that int8 results match TensorFlow Lite
//! Micro bit for bit.

/// `SaturatingRoundingDoublingHighMul`: the high 32 bits of `2·a·b`, rounded, saturating the one
/// overflowing case (`a == b == i32::MIN`).
#[inline(always)]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = (a as i64) * (b as i64);
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // Division truncating toward zero, as in C++.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// `RoundingDivideByPOT`: `x / 2^exponent` rounded to nearest, ties away from zero.
/// `exponent` must be in `0..=31`; larger values are clamped to 31.
#[inline(always)]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let exponent = exponent.clamp(0, 31);
    let mask: i32 = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + ((x < 0) as i32);
    (x >> exponent) + ((remainder > threshold) as i32)
}

/// `MultiplyByQuantizedMultiplier`: `x · multiplier · 2^shift` with a Q31 `multiplier`, TFLite rounding.
#[inline(always)]
pub fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    let left_shift = if shift > 0 { shift } else { 0 };
    let right_shift = if shift > 0 { 0 } else { shift.wrapping_neg() };
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
