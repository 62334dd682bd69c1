//! SOFTMAX over the last dimension: int8 input, int8 or int16 output.
//!
//! TFLM's integer recipe (`reference_ops::Softmax` for int8 inputs): per row, the difference to
//! the row maximum is rescaled by `beta · input_scale` into a Q5.26 fixed-point number
//! (differences below `diff_min` contribute nothing), `exp` is evaluated with gemmlowp's
//! `exp_on_negative_values`, the exponentials are summed in Q12.19, the sum is inverted with
//! `one_over_one_plus_x_for_x_in_0_1`, and each output is `exp · (1/sum)` rounded to the output
//! scale (int8: 1/256, zero point −128; int16: 1/65536, zero point −32768).

use super::{as_i8, as_typed_mut, OpCtx, OpMem};
use crate::error::{Error, Location};
use crate::fixed_point::{exp_on_negative_values, fp_mul, get_reciprocal, rescale};
use crate::format::DType;
use crate::quant::rounding_divide_by_pot;

/// Parameters of SOFTMAX with int8 input (TFLM's `SoftmaxParams`, computed at compile time).
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct SoftmaxParams {
    /// Q31 multiplier of `beta · input_scale · 2^26` (capped at 2^31 − 1).
    pub input_multiplier: i32,
    /// Left shift of that multiplier (0..=31).
    pub input_left_shift: i32,
    /// Differences to the row maximum below this (≤ 0) give an output of zero probability.
    pub diff_min: i32,
    /// Reserved, zero.
    pub reserved: i32,
}

const SCALED_DIFF_INTEGER_BITS: i32 = 5;
const ACCUMULATION_INTEGER_BITS: i32 = 12;

/// Output element types of the int8 softmax.
pub trait SoftmaxOutput: Copy {
    /// Bits of the type (8 or 16).
    const BITS: i32;
    /// Smallest value, also the output zero point.
    const MIN: i32;
    /// Largest value.
    const MAX: i32;
    /// Narrows a value already clamped to `MIN..=MAX`.
    fn from_i32(v: i32) -> Self;
}

impl SoftmaxOutput for i8 {
    const BITS: i32 = 8;
    const MIN: i32 = i8::MIN as i32;
    const MAX: i32 = i8::MAX as i32;
    fn from_i32(v: i32) -> Self {
        v as i8
    }
}

impl SoftmaxOutput for i16 {
    const BITS: i32 = 16;
    const MIN: i32 = i16::MIN as i32;
    const MAX: i32 = i16::MAX as i32;
    fn from_i32(v: i32) -> Self {
        v as i16
    }
}

/// `exp(beta · input_scale · diff)` in Q0.31 for a difference `diff ≥ diff_min`.
#[inline(always)]
fn exp_of_diff(p: &SoftmaxParams, diff: i32) -> i32 {
    // MultiplyByQuantizedMultiplierGreaterThanOne.
    let rescaled = fp_mul(
        diff.wrapping_mul(1i32.wrapping_shl(p.input_left_shift as u32)),
        p.input_multiplier,
    );
    exp_on_negative_values(rescaled, SCALED_DIFF_INTEGER_BITS)
}

/// Longest row whose exponentials [`softmax_row`] keeps between its two passes (host builds).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub const CACHED_ROW: usize = 64;

/// Softmax of one row (int8 in, int8 or int16 out). On hosts, rows of up to [`CACHED_ROW`]
/// values evaluate each exponential once ([`softmax_row_cached`]) instead of once per pass.
pub fn softmax_row<T: SoftmaxOutput>(p: &SoftmaxParams, input: &[i8], output: &mut [T]) {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    return softmax_row_cached(p, input, output);
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    softmax_row_reference(p, input, output)
}

/// One output of the row: the value's exponential `exp` (Q0.31) scaled by the row's
/// reciprocal, shifted down by `exponent`, offset to `T`'s range and clamped (TFLM's output
/// pass).
#[inline(always)]
fn scaled_output<T: SoftmaxOutput>(shifted_scale: i32, exp: i32, exponent: i32) -> T {
    let unsat = rounding_divide_by_pot(fp_mul(shifted_scale, exp), exponent);
    T::from_i32(unsat.wrapping_add(T::MIN).clamp(T::MIN, T::MAX))
}

/// [`softmax_row_reference`] for rows of up to [`CACHED_ROW`] values (longer rows: the
/// reference), with each exponential computed once and kept for the output pass; same results,
/// bit for bit.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn softmax_row_cached<T: SoftmaxOutput>(p: &SoftmaxParams, input: &[i8], output: &mut [T]) {
    if input.len() > CACHED_ROW {
        softmax_row_reference(p, input, output);
        return;
    }
    let max_in_row = input.iter().copied().max().unwrap_or(i8::MIN) as i32;
    // The exponential of each value whose difference is at least `diff_min` (others unused).
    let mut exps = [0i32; CACHED_ROW];
    let mut sum_of_exps: i32 = 0; // Q12.19
    for (e, &x) in exps.iter_mut().zip(input) {
        let diff = x as i32 - max_in_row;
        if diff >= p.diff_min {
            *e = exp_of_diff(p, diff);
            sum_of_exps = sum_of_exps.wrapping_add(rescale(*e, 0, ACCUMULATION_INTEGER_BITS));
        }
    }
    let (shifted_scale, num_bits_over_unit) =
        get_reciprocal(sum_of_exps, ACCUMULATION_INTEGER_BITS);
    let exponent = num_bits_over_unit + 31 - T::BITS;
    for ((o, &x), &e) in output.iter_mut().zip(input).zip(exps.iter()) {
        let diff = x as i32 - max_in_row;
        *o = if diff >= p.diff_min {
            scaled_output(shifted_scale, e, exponent)
        } else {
            T::from_i32(T::MIN)
        };
    }
}

/// Reference softmax of one row (int8 in, int8 or int16 out).
pub fn softmax_row_reference<T: SoftmaxOutput>(p: &SoftmaxParams, input: &[i8], output: &mut [T]) {
    let max_in_row = input.iter().copied().max().unwrap_or(i8::MIN) as i32;
    let mut sum_of_exps: i32 = 0; // Q12.19
    for &x in input {
        let diff = x as i32 - max_in_row;
        if diff >= p.diff_min {
            sum_of_exps = sum_of_exps.wrapping_add(rescale(
                exp_of_diff(p, diff),
                0,
                ACCUMULATION_INTEGER_BITS,
            ));
        }
    }
    let (shifted_scale, num_bits_over_unit) =
        get_reciprocal(sum_of_exps, ACCUMULATION_INTEGER_BITS);
    // TFLM checks 0 <= exponent <= 31; rounding_divide_by_pot clamps it into range.
    let exponent = num_bits_over_unit + 31 - T::BITS;
    for (o, &x) in output.iter_mut().zip(input) {
        let diff = x as i32 - max_in_row;
        *o = if diff >= p.diff_min {
            scaled_output(shifted_scale, exp_of_diff(p, diff), exponent)
        } else {
            T::from_i32(T::MIN)
        };
    }
}

/// Reference softmax over the last dimension of length `depth` (int8 in, int8 or int16 out).
pub fn softmax_int8<T: SoftmaxOutput>(
    p: &SoftmaxParams,
    depth: usize,
    input: &[i8],
    output: &mut [T],
) -> Result<(), Error> {
    if input.is_empty() && output.is_empty() {
        return Ok(());
    }
    if input.len() != output.len() || depth == 0 || input.len() % depth != 0 {
        return Err(Error::InvalidField {
            at: Location::Arena,
            field: "softmax size",
        });
    }
    for (row_in, row_out) in input
        .chunks_exact(depth)
        .zip(output.chunks_exact_mut(depth))
    {
        softmax_row(p, row_in, row_out);
    }
    Ok(())
}

/// Checks a SOFTMAX op: int8 input of rank ≥ 1, same-shaped int8 or int16 output, sane params.
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    let p: &SoftmaxParams = ctx.params()?;
    if ctx.input_count() != 1 || ctx.desc.output_count != 1 {
        return Err(ctx.param_error("input_count"));
    }
    let input = ctx.required_input(0)?;
    let output = ctx.output(0)?;
    ctx.expect_dtype(input, DType::Int8)?;
    if !matches!(output.1.dtype(), Some(DType::Int8) | Some(DType::Int16)) {
        return Err(ctx.shape_error(output.0, "int8 or int16"));
    }
    if input.1.dims().is_empty() {
        return Err(ctx.shape_error(input.0, "rank >= 1"));
    }
    if input.1.dims() != output.1.dims() {
        return Err(ctx.shape_error(output.0, "the shape of the input"));
    }
    if p.input_multiplier < 0
        || !(0..=31).contains(&p.input_left_shift)
        || p.diff_min > 0
        || p.reserved != 0
    {
        return Err(ctx.param_error("softmax params"));
    }
    Ok(())
}

/// Runs a SOFTMAX op.
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem) -> Result<(), Error> {
    let p: &SoftmaxParams = ctx.params()?;
    let (_, din) = ctx.required_input(0)?;
    let (_, dout) = ctx.output(0)?;
    let depth = din.dims().last().copied().unwrap_or(1) as usize;
    let input = as_i8(mem.required_input(0)?);
    match dout.dtype() {
        Some(DType::Int8) => softmax_int8::<i8>(p, depth, input, as_typed_mut(mem.output)?),
        Some(DType::Int16) if super::select::INT16 => {
            softmax_int8::<i16>(p, depth, input, as_typed_mut(mem.output)?)
        }
        _ => Err(ctx.param_error("output dtype")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;

    /// Params as TFLM's CalculateSoftmaxParams computes them (double-rounding build).
    fn params(beta: f64, scale: f64) -> SoftmaxParams {
        let real = (beta * scale * (1u64 << 26) as f64).min(2147483647.0);
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
        let mut q = (m * (1u64 << 31) as f64).round() as i64;
        if q == 1 << 31 {
            q /= 2;
            e += 1;
        }
        let radius = (31.0 * (1u64 << 26) as f64 / (1u64 << e) as f64).floor() as i32;
        SoftmaxParams {
            input_multiplier: q as i32,
            input_left_shift: e,
            diff_min: -radius,
            reserved: 0,
        }
    }

    fn float_softmax(beta: f64, scale: f64, row: &[i8]) -> std::vec::Vec<f64> {
        let m = row.iter().copied().max().unwrap() as f64;
        let e: std::vec::Vec<f64> = row
            .iter()
            .map(|&x| (beta * scale * (x as f64 - m)).exp())
            .collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    #[test]
    fn uniform_row() {
        let p = params(1.0, 0.1);
        let input = [5i8; 4];
        let mut out = [0i8; 4];
        softmax_int8(&p, 4, &input, &mut out).unwrap();
        assert_eq!(out, [-64; 4]); // 0.25 · 256 − 128
    }

    #[test]
    fn rows_sum_to_about_one() {
        for &(beta, scale) in &[(1.0, 0.1), (0.5, 0.05), (2.0, 0.2), (1.0, 0.0039)] {
            let p = params(beta, scale);
            let input: std::vec::Vec<i8> = (0..30).map(|i| ((i * 53) % 256) as u8 as i8).collect();
            let mut out = std::vec![0i8; 30];
            softmax_int8(&p, 10, &input, &mut out).unwrap();
            for (row_in, row_out) in input.chunks(10).zip(out.chunks(10)) {
                let sum: i32 = row_out.iter().map(|&q| q as i32 + 128).sum();
                assert!(
                    (sum - 256).abs() <= 6,
                    "beta {beta} scale {scale}: sum {sum}"
                );
                let want = float_softmax(beta, scale, row_in);
                for (&q, w) in row_out.iter().zip(want) {
                    let got = (q as i32 + 128) as f64 / 256.0;
                    assert!((got - w).abs() <= 1.0 / 256.0 + 1e-9, "{got} vs {w}");
                }
            }
        }
    }

    #[test]
    fn int16_output() {
        let p = params(1.0, 0.1);
        let input = [0i8, 10, 20, 30];
        let mut out = [0i16; 4];
        softmax_int8(&p, 4, &input, &mut out).unwrap();
        let want = float_softmax(1.0, 0.1, &input);
        for (&q, w) in out.iter().zip(want) {
            let got = (q as i32 + 32768) as f64 / 65536.0;
            assert!((got - w).abs() < 2e-4, "{got} vs {w}");
        }
    }

    #[test]
    fn dominant_element_and_far_values() {
        // Large beta·scale: everything but the maximum falls below diff_min → −128.
        let p = params(1.0, 1.0);
        assert!(p.diff_min > -256);
        let input = [-128i8, 127, 0, 126];
        let mut out = [0i8; 4];
        softmax_int8(&p, 4, &input, &mut out).unwrap();
        assert_eq!(out[0], -128);
        assert_eq!(out[2], -128);
        assert!(out[1] > out[3]);
        // A single element row is certain.
        let mut one = [0i8; 1];
        softmax_int8(&p, 1, &[-7], &mut one).unwrap();
        assert_eq!(one, [127]);
    }

    #[test]
    fn rejects_ragged() {
        let p = params(1.0, 0.1);
        let mut out = [0i8; 5];
        assert!(softmax_int8(&p, 2, &[0; 5], &mut out).is_err());
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
        // A shorter row under Miri (tools/ci/reliability.sh), which runs it ~1000× slower.
        let n = super::super::conv::tests::cases(600, 96);
        let input: std::vec::Vec<i8> = (0..n).map(|i| (i % 256) as u8 as i8).collect();
        for (k, &v) in vals.iter().enumerate() {
            let w = vals[(k * 5 + 3) % vals.len()];
            let p = SoftmaxParams {
                input_multiplier: v,
                input_left_shift: w,
                diff_min: vals[(k * 3 + 1) % vals.len()],
                reserved: 0,
            };
            let mut out8 = std::vec![0i8; n];
            let mut out16 = std::vec![0i16; n];
            softmax_int8(&p, n, &input, &mut out8).unwrap();
            softmax_int8(&p, 6, &input, &mut out16).unwrap();
        }
        let mut none = [0i8; 0];
        softmax_int8(&params(1.0, 0.1), 0, &[], &mut none).unwrap();
    }

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        /// The cached row (one exponential per value) equals the reference for int8 and int16
        /// outputs, on any row length up to past [`CACHED_ROW`] and any valid params.
        #[test]
        fn cached_row_matches_reference(
            row in proptest::collection::vec(proptest::prelude::any::<i8>(), 0..=CACHED_ROW + 3),
            beta_scale in prop_oneof_scales(),
            diff_min_cut in 0i32..=300,
        ) {
            let mut p = params(1.0, beta_scale);
            if diff_min_cut < 255 {
                p.diff_min = p.diff_min.max(-diff_min_cut);
            }
            let (mut want8, mut got8) = (std::vec![0i8; row.len()], std::vec![0x55i8; row.len()]);
            softmax_row_reference(&p, &row, &mut want8);
            softmax_row_cached(&p, &row, &mut got8);
            proptest::prop_assert_eq!(&got8, &want8);
            let (mut want16, mut got16) =
                (std::vec![0i16; row.len()], std::vec![0x55i16; row.len()]);
            softmax_row_reference(&p, &row, &mut want16);
            softmax_row_cached(&p, &row, &mut got16);
            proptest::prop_assert_eq!(&got16, &want16);
            let mut via_dispatch = std::vec![0x55i8; row.len()];
            softmax_row(&p, &row, &mut via_dispatch);
            proptest::prop_assert_eq!(&via_dispatch, &want8);
        }
    }

    /// Input scales (times beta) from tiny to large, as real models use.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn prop_oneof_scales() -> impl proptest::strategy::Strategy<Value = f64> {
        use proptest::strategy::Strategy;
        (-12.0f64..4.0).prop_map(f64::exp2)
    }
}
