//! gemmlowp-style fixed-point math on raw `i32` values, as TFLM's `fixedpoint.h` computes it.
//!
//! A fixed-point number with `integer_bits` integer bits is an `i32` raw value `r` standing for
//! `r / 2^(31 - integer_bits)`. These functions reproduce TFLM's (gemmlowp's) scalar
//! implementations bit for bit — including the non-saturating (wrapping) additions, the
//! saturating power-of-two shifts and the Newton–Raphson divisions — so that integer softmax,
//! logistic and tanh match TensorFlow Lite Micro exactly. Integer bits are runtime arguments
//! here (C++ uses template parameters); callers pass the same constants TFLM uses.

use crate::quant::{rounding_divide_by_pot, saturating_rounding_doubling_high_mul};

/// Fixed-point product: the integer bits of the operands add up (`a * b` in gemmlowp).
#[inline(always)]
pub fn fp_mul(a: i32, b: i32) -> i32 {
    saturating_rounding_doubling_high_mul(a, b)
}

/// `SaturatingRoundingMultiplyByPOT`: `x · 2^exponent`, saturating for a positive exponent,
/// rounding to nearest for a negative one.
#[inline(always)]
pub fn saturating_rounding_multiply_by_pot(x: i32, exponent: i32) -> i32 {
    if exponent > 0 {
        let exponent = exponent.min(31);
        let threshold: i32 = ((1i64 << (31 - exponent)) - 1) as i32;
        if x > threshold {
            i32::MAX
        } else if x < -threshold {
            i32::MIN
        } else {
            // |x| <= threshold, so the shift cannot overflow.
            ((x as i64) << exponent) as i32
        }
    } else if exponent < 0 {
        rounding_divide_by_pot(x, exponent.saturating_neg())
    } else {
        x
    }
}

/// `Rescale<dst_bits>(FixedPoint<src_bits>)`: changes the number of integer bits.
#[inline(always)]
pub fn rescale(x: i32, src_integer_bits: i32, dst_integer_bits: i32) -> i32 {
    saturating_rounding_multiply_by_pot(x, src_integer_bits - dst_integer_bits)
}

/// `RoundingHalfSum`: `(a + b) / 2`, rounded to nearest (ties away from zero).
#[inline(always)]
pub fn rounding_half_sum(a: i32, b: i32) -> i32 {
    let sum = a as i64 + b as i64;
    let sign = if sum >= 0 { 1 } else { -1 };
    ((sum + sign) / 2) as i32
}

/// The raw value of 1.0 (or the largest value below it when there are no integer bits);
/// `integer_bits` is clamped to `0..=30`.
#[inline(always)]
pub const fn one(integer_bits: i32) -> i32 {
    if integer_bits <= 0 {
        i32::MAX
    } else if integer_bits >= 30 {
        2
    } else {
        1i32 << (31 - integer_bits)
    }
}

/// `exp(a)` for `a` in `[-1/4, 0)`, `a` and the result with 0 integer bits.
pub fn exp_on_interval_between_negative_one_quarter_and_0_excl(a: i32) -> i32 {
    const CONSTANT_TERM: i32 = 1_895_147_668; // exp(-1/8)
    const CONSTANT_1_OVER_3: i32 = 715_827_883;
    // Taylor expansion around -1/8: x = a + 1/8 (1/8 is 1 << 28 with 0 integer bits).
    let x = a.wrapping_add(1 << 28);
    let x2 = fp_mul(x, x);
    let x3 = fp_mul(x2, x);
    let x4 = fp_mul(x2, x2);
    let x4_over_4 = saturating_rounding_multiply_by_pot(x4, -2);
    let poly = saturating_rounding_multiply_by_pot(
        fp_mul(x4_over_4.wrapping_add(x3), CONSTANT_1_OVER_3).wrapping_add(x2),
        -1,
    );
    CONSTANT_TERM.wrapping_add(fp_mul(CONSTANT_TERM, x.wrapping_add(poly)))
}

/// `exp(a)` for `a ≤ 0` with `integer_bits` integer bits (0..=29); the result has 0 integer bits.
pub fn exp_on_negative_values(a: i32, integer_bits: i32) -> i32 {
    let integer_bits = integer_bits.clamp(0, 29);
    let fractional_bits = 31 - integer_bits;
    let one_quarter: i32 = 1 << (fractional_bits - 2);
    let mask = one_quarter - 1;
    let a_mod_quarter_minus_one_quarter = (a & mask).wrapping_sub(one_quarter);
    let mut result = exp_on_interval_between_negative_one_quarter_and_0_excl(rescale(
        a_mod_quarter_minus_one_quarter,
        integer_bits,
        0,
    ));
    let remainder = a_mod_quarter_minus_one_quarter.wrapping_sub(a);

    // Barrel shifter: multiply by exp(-2^k) for each set bit of the remainder.
    const BARREL: [(i32, i32); 7] = [
        (-2, 1_672_461_947),
        (-1, 1_302_514_674),
        (0, 790_015_084),
        (1, 290_630_308),
        (2, 39_332_535),
        (3, 720_401),
        (4, 242),
    ];
    for &(exponent, multiplier) in BARREL.iter() {
        if integer_bits > exponent {
            let shift = fractional_bits + exponent; // in 0..=30 given the bounds above
            if remainder & (1i32 << shift) != 0 {
                result = fp_mul(result, multiplier);
            }
        }
    }

    if integer_bits > 5 {
        let clamp = -(1i32 << (36 - integer_bits)); // -32.0
        if a < clamp {
            result = 0;
        }
    }
    if a == 0 {
        result = one(0);
    }
    result
}

/// Newton–Raphson iteration shared by the two divisions below: returns `x ≈ 1 / half_denominator`
/// with 2 integer bits.
fn newton_raphson_reciprocal(half_denominator: i32) -> i32 {
    const CONSTANT_48_OVER_17: i32 = 1_515_870_810;
    const CONSTANT_NEG_32_OVER_17: i32 = -1_010_580_540;
    let one_f2 = one(2);
    let mut x = CONSTANT_48_OVER_17.wrapping_add(fp_mul(half_denominator, CONSTANT_NEG_32_OVER_17));
    for _ in 0..3 {
        let half_denominator_times_x = fp_mul(half_denominator, x);
        let one_minus_half_denominator_times_x = one_f2.wrapping_sub(half_denominator_times_x);
        x = x.wrapping_add(rescale(fp_mul(x, one_minus_half_denominator_times_x), 4, 2));
    }
    x
}

/// `1 / (1 + a)` for `a` in `[0, 1)`, 0 integer bits in and out.
pub fn one_over_one_plus_x_for_x_in_0_1(a: i32) -> i32 {
    let half_denominator = rounding_half_sum(a, one(0));
    let x = newton_raphson_reciprocal(half_denominator);
    // ExactMulByPot<-1> (2 → 1 integer bits, same raw), then Rescale<0>.
    rescale(x, 1, 0)
}

/// `(1 - a) / (1 + a)` for `a` in `[0, 1)`, 0 integer bits in and out.
pub fn one_minus_x_over_one_plus_x_for_x_in_0_1(a: i32) -> i32 {
    let half_denominator = rounding_half_sum(a, one(0));
    let x = newton_raphson_reciprocal(half_denominator);
    rescale(x.wrapping_sub(one(2)), 2, 0)
}

/// `tanh(a)` for any `a` with `integer_bits` integer bits (0..=28); the result has 0 integer bits.
pub fn tanh(a: i32, integer_bits: i32) -> i32 {
    let negative = a < 0;
    let n = if negative { a } else { a.wrapping_neg() };
    // -tanh(n) for n <= 0: (1 - exp(2n)) / (1 + exp(2n)); 2n is n with one more integer bit.
    let t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, integer_bits + 1));
    if a == 0 {
        0
    } else if negative {
        t.wrapping_neg()
    } else {
        t
    }
}

/// `logistic(a) = 1 / (1 + exp(-a))` for any `a` with `integer_bits` integer bits (0..=29);
/// the result has 0 integer bits.
pub fn logistic(a: i32, integer_bits: i32) -> i32 {
    let positive = a > 0;
    let abs_input = if positive { a } else { a.wrapping_neg() };
    let result_if_positive = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(
        abs_input.wrapping_neg(),
        integer_bits,
    ));
    let result_if_negative = one(0).wrapping_sub(result_if_positive);
    if a == 0 {
        1 << 30
    } else if positive {
        result_if_positive
    } else {
        result_if_negative
    }
}

/// TFLM's `GetReciprocal`: for `x > 0` with `x_integer_digits` integer bits, returns
/// `(1 / x` scaled into `[0.5, 1)` with 0 integer bits, `num_bits_over_unit)`.
pub fn get_reciprocal(x: i32, x_integer_digits: i32) -> (i32, i32) {
    let headroom_plus_one = (x as u32).leading_zeros() as i32;
    let num_bits_over_unit = x_integer_digits - headroom_plus_one;
    let shifted = (x as u32)
        .checked_shl(headroom_plus_one as u32)
        .unwrap_or(0)
        .wrapping_sub(1u32 << 31) as i32;
    (
        one_over_one_plus_x_for_x_in_0_1(shifted),
        num_bits_over_unit,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_f(raw: i32, integer_bits: i32) -> f64 {
        raw as f64 / (1u64 << (31 - integer_bits)) as f64
    }
    fn from_f(x: f64, integer_bits: i32) -> i32 {
        (x * (1u64 << (31 - integer_bits)) as f64).round() as i32
    }

    #[test]
    fn exp_is_accurate() {
        for ib in [0, 4, 5, 6] {
            for k in 0..200 {
                let x = -(k as f64) * 0.05;
                if x < -(1i64 << ib) as f64 {
                    continue;
                }
                let got = to_f(exp_on_negative_values(from_f(x, ib), ib), 0);
                assert!((got - x.exp()).abs() < 1e-6, "ib {ib} x {x}: {got}");
            }
        }
        assert_eq!(exp_on_negative_values(0, 5), i32::MAX);
    }

    #[test]
    fn reciprocal_and_logistic_and_tanh() {
        for k in 0..100 {
            let x = k as f64 / 100.0;
            let got = to_f(one_over_one_plus_x_for_x_in_0_1(from_f(x, 0)), 0);
            assert!((got - 1.0 / (1.0 + x)).abs() < 1e-7);
            let got = to_f(one_minus_x_over_one_plus_x_for_x_in_0_1(from_f(x, 0)), 0);
            assert!((got - (1.0 - x) / (1.0 + x)).abs() < 1e-7);
        }
        for k in -150..150 {
            let x = k as f64 * 0.1;
            let got = to_f(logistic(from_f(x, 4), 4), 0);
            assert!(
                (got - 1.0 / (1.0 + (-x).exp())).abs() < 1e-6,
                "logistic {x}"
            );
            let got = to_f(tanh(from_f(x, 4), 4), 0);
            assert!((got - x.tanh()).abs() < 1e-6, "tanh {x}");
        }
        assert_eq!(logistic(0, 4), 1 << 30);
        assert_eq!(tanh(0, 4), 0);
    }

    #[test]
    fn reciprocal_of_sum() {
        // 3.0 with 12 integer bits: 1/3 = (2/3) · 2^-1.
        let (r, bits) = get_reciprocal(3 << 19, 12);
        assert_eq!(bits, 1);
        assert!((to_f(r, 0) - 2.0 / 3.0).abs() < 1e-7);
    }

    #[test]
    fn pot_saturates() {
        assert_eq!(saturating_rounding_multiply_by_pot(1 << 30, 1), i32::MAX);
        assert_eq!(saturating_rounding_multiply_by_pot(-(1 << 30), 1), i32::MIN);
        assert_eq!(
            saturating_rounding_multiply_by_pot(-(1 << 30) - 1, 1),
            i32::MIN
        );
        assert_eq!(saturating_rounding_multiply_by_pot(5, -1), 3);
        assert_eq!(rounding_half_sum(3, 4), 4);
        assert_eq!(rounding_half_sum(-3, -4), -4);
    }
}
