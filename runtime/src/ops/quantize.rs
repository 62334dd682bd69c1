//! QUANTIZE (float → int, int → int requantization) and DEQUANTIZE (int → float).
//!
//! Bit-exact with TFLM (`quantize_common.cc`, `dequantize_common.cc`):
//! - float → int8/int16 (`reference_ops::AffineQuantize`): `round(x / scale) + zero_point`,
//!   clamped, where the division is in single precision and `round` is half away from zero. The
//!   float → int32 conversion follows the x86 `cvttss2si` result TFLM gets on the host (NaN and
//!   out-of-range values become `i32::MIN`), then the zero point is added with wrap-around.
//! - int → int (`reference_ops::Requantize`): `MultiplyByQuantizedMultiplier(x − in_zp, M, S) +
//!   out_zp`, clamped, with `(M, S)` from `input_scale / output_scale`. TFLM's int8↔uint8 "xor
//!   0x80" fast path gives the same bytes as this formula, so it needs no separate case.
//! - int → float (`reference_ops::Dequantize`): `scale · (x − zero_point)` in single precision.
//!
//! Supported pairs (the ones TFLM accepts): float32 → int8, int16; int8 → int8, uint8, int16,
//! int32; uint8 → int8; int16 → int8, int16, int32; int32 → int8, int16; and DEQUANTIZE of int8,
//! uint8, int16 to float32.

use bytemuck::Pod;

use super::{as_typed, as_typed_mut, OpCtx, OpKind, OpMem};
use crate::error::Error;
use crate::format::DType;
use crate::quant::multiply_by_quantized_multiplier;

/// Parameters of QUANTIZE and DEQUANTIZE.
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct QuantizeParams {
    /// Float → int: the output scale (divisor). Int → float: the input scale. Unused (0) for
    /// int → int.
    pub scale: f32,
    /// Zero point of the input (int → int, int → float).
    pub input_zero_point: i32,
    /// Zero point of the output (float → int, int → int).
    pub output_zero_point: i32,
    /// Int → int: Q31 multiplier of `input_scale / output_scale`.
    pub multiplier: i32,
    /// Int → int: power-of-two exponent going with `multiplier`, in `-31..=31`.
    pub shift: i32,
}

/// Integer element types of the quantize kernels.
pub trait QuantElem: Pod {
    /// Smallest value, as i32.
    const MIN: i32;
    /// Largest value, as i32.
    const MAX: i32;
    /// Widens to i32.
    fn to_i32(self) -> i32;
    /// Narrows from an i32 already inside `MIN..=MAX`.
    fn from_i32(v: i32) -> Self;
}

macro_rules! quant_elem {
    ($t:ty) => {
        impl QuantElem for $t {
            const MIN: i32 = <$t>::MIN as i32;
            const MAX: i32 = <$t>::MAX as i32;
            #[inline]
            fn to_i32(self) -> i32 {
                self as i32
            }
            #[inline]
            fn from_i32(v: i32) -> Self {
                v as $t
            }
        }
    };
}
quant_elem!(i8);
quant_elem!(u8);
quant_elem!(i16);
quant_elem!(i32);

/// `std::round` for `f32` (half away from zero), without `std`.
#[inline]
pub fn round_half_away(x: f32) -> f32 {
    // |x| ≥ 2^23 (or NaN/inf): already an integer.
    if x.is_nan() || x.abs() >= 8_388_608.0 {
        return x;
    }
    let t = x as i32 as f32; // truncation toward zero, exact here
    let frac = x - t; // exact: |x| < 2^23
    if frac >= 0.5 {
        t + 1.0
    } else if frac <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

/// `static_cast<int32_t>(float)` as x86 computes it (`cvttss2si`): truncation, and `i32::MIN`
/// for NaN and for values outside the i32 range.
#[inline]
pub fn f32_to_i32_x86(x: f32) -> i32 {
    if x.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&x) {
        i32::MIN
    } else {
        x as i32
    }
}

/// QUANTIZE float32 → integer (TFLM `AffineQuantize`).
pub fn quantize_f32<O: QuantElem>(p: &QuantizeParams, input: &[f32], output: &mut [O]) {
    for (o, &x) in output.iter_mut().zip(input) {
        let q = f32_to_i32_x86(round_half_away(x / p.scale)).wrapping_add(p.output_zero_point);
        *o = O::from_i32(q.clamp(O::MIN, O::MAX));
    }
}

/// QUANTIZE integer → integer (TFLM `Requantize`).
pub fn requantize<I: QuantElem, O: QuantElem>(p: &QuantizeParams, input: &[I], output: &mut [O]) {
    for (o, &x) in output.iter_mut().zip(input) {
        let v = x.to_i32().wrapping_sub(p.input_zero_point);
        let q = multiply_by_quantized_multiplier(v, p.multiplier, p.shift)
            .wrapping_add(p.output_zero_point);
        *o = O::from_i32(q.clamp(O::MIN, O::MAX));
    }
}

/// DEQUANTIZE integer → float32 (TFLM `Dequantize`).
pub fn dequantize<I: QuantElem>(p: &QuantizeParams, input: &[I], output: &mut [f32]) {
    for (o, &x) in output.iter_mut().zip(input) {
        *o = p.scale * x.to_i32().wrapping_sub(p.input_zero_point) as f32;
    }
}

/// Whether the runtime (and TFLM) implements QUANTIZE from `from` to `to`.
pub fn quantize_supported(from: DType, to: DType) -> bool {
    use DType::*;
    matches!(
        (from, to),
        (Float32, Int8)
            | (Float32, Int16)
            | (Int8, Int8)
            | (Int8, UInt8)
            | (Int8, Int16)
            | (Int8, Int32)
            | (UInt8, Int8)
            | (Int16, Int8)
            | (Int16, Int16)
            | (Int16, Int32)
            | (Int32, Int8)
            | (Int32, Int16)
    )
}

/// Whether the runtime (and TFLM) implements DEQUANTIZE from `from` to `to`.
pub fn dequantize_supported(from: DType, to: DType) -> bool {
    matches!(
        (from, to),
        (DType::Int8 | DType::UInt8 | DType::Int16, DType::Float32)
    )
}

/// Checks a QUANTIZE / DEQUANTIZE op.
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    let p: &QuantizeParams = ctx.params()?;
    if ctx.input_count() != 1 || ctx.desc.output_count != 1 {
        return Err(ctx.param_error("input_count"));
    }
    let input = ctx.required_input(0)?;
    let output = ctx.output(0)?;
    let from = input
        .1
        .dtype()
        .ok_or(ctx.shape_error(input.0, "a known dtype"))?;
    let to = output
        .1
        .dtype()
        .ok_or(ctx.shape_error(output.0, "a known dtype"))?;
    let ok = match ctx.kind {
        OpKind::Dequantize => dequantize_supported(from, to),
        _ => quantize_supported(from, to),
    };
    if !ok {
        return Err(ctx.shape_error(output.0, "a supported (input, output) dtype pair"));
    }
    if input.1.elements() != output.1.elements() {
        return Err(ctx.shape_error(output.0, "as many elements as the input"));
    }
    if ctx.kind == OpKind::Quantize
        && from != DType::Float32
        && (!(-31..=31).contains(&p.shift) || p.multiplier < 0)
    {
        return Err(ctx.param_error("multiplier/shift"));
    }
    Ok(())
}

fn requantize_from<I: QuantElem>(
    p: &QuantizeParams,
    input: &[I],
    to: DType,
    output: &mut [u8],
) -> Result<(), Error> {
    match to {
        DType::Int8 => requantize::<I, i8>(p, input, as_typed_mut(output)?),
        DType::UInt8 => requantize::<I, u8>(p, input, as_typed_mut(output)?),
        DType::Int16 => requantize::<I, i16>(p, input, as_typed_mut(output)?),
        DType::Int32 => requantize::<I, i32>(p, input, as_typed_mut(output)?),
        // Not a QUANTIZE output type (validation refuses the pair).
        DType::Float32 | DType::Int4 | DType::Float16 | DType::Int64 => {}
    }
    Ok(())
}

/// Runs a QUANTIZE / DEQUANTIZE op.
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem) -> Result<(), Error> {
    let p: &QuantizeParams = ctx.params()?;
    let (it, input) = ctx.required_input(0)?;
    let (_, output) = ctx.output(0)?;
    let (Some(from), Some(to)) = (input.dtype(), output.dtype()) else {
        return Err(ctx.shape_error(it, "a known dtype"));
    };
    let x = mem.required_input(0)?;
    let y = mem.output;
    match from {
        DType::Float32 => {
            let x: &[f32] = as_typed(x)?;
            match to {
                DType::Int8 => quantize_f32::<i8>(p, x, as_typed_mut(y)?),
                DType::Int16 => quantize_f32::<i16>(p, x, as_typed_mut(y)?),
                _ => return Err(ctx.shape_error(it, "a supported dtype pair")),
            }
        }
        _ if to == DType::Float32 => match from {
            DType::Int8 => dequantize::<i8>(p, as_typed(x)?, as_typed_mut(y)?),
            DType::UInt8 => dequantize::<u8>(p, as_typed(x)?, as_typed_mut(y)?),
            DType::Int16 => dequantize::<i16>(p, as_typed(x)?, as_typed_mut(y)?),
            _ => return Err(ctx.shape_error(it, "a supported dtype pair")),
        },
        DType::Int8 => requantize_from::<i8>(p, as_typed(x)?, to, y)?,
        DType::UInt8 => requantize_from::<u8>(p, as_typed(x)?, to, y)?,
        DType::Int16 => requantize_from::<i16>(p, as_typed(x)?, to, y)?,
        DType::Int32 => requantize_from::<i32>(p, as_typed(x)?, to, y)?,
        DType::Int4 | DType::Float16 | DType::Int64 => {
            return Err(ctx.shape_error(it, "a supported dtype pair"))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qp(scale: f32, izp: i32, ozp: i32, m: i32, s: i32) -> QuantizeParams {
        QuantizeParams {
            scale,
            input_zero_point: izp,
            output_zero_point: ozp,
            multiplier: m,
            shift: s,
        }
    }

    #[test]
    fn round_half_away_from_zero() {
        for (x, r) in [
            (0.5f32, 1.0f32),
            (-0.5, -1.0),
            (1.5, 2.0),
            (-1.5, -2.0),
            (2.5, 3.0),
            (-2.5, -3.0),
            (0.49999997, 0.0),
            (-0.49999997, -0.0),
            (8_388_607.5, 8_388_608.0),
            (1e10, 1e10),
        ] {
            assert_eq!(round_half_away(x), r, "{x}");
        }
        assert!(round_half_away(f32::NAN).is_nan());
    }

    #[test]
    fn float_to_int8_matches_tflm() {
        // TFLM outputs for scale 0.5, zero points -5 and 5 (x86 host build).
        let x = [
            0.25f32,
            -0.25,
            0.75,
            -0.75,
            1.25,
            -1.25,
            3e9,
            -3e9,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1_073_741_760.0,
            1e-45,
        ];
        let mut out = [0i8; 13];
        quantize_f32(&qp(0.5, 0, -5, 0, 0), &x, &mut out);
        assert_eq!(
            out,
            [-4, -6, -3, -7, -2, -8, 127, 127, 127, 127, 127, 127, -5]
        );
        quantize_f32(&qp(0.5, 0, 5, 0, 0), &x, &mut out);
        assert_eq!(
            out,
            [6, 4, 7, 3, 8, 2, -128, -128, -128, -128, -128, 127, 5]
        );
        let mut out16 = [0i16; 13];
        quantize_f32(&qp(0.5, 0, 0, 0, 0), &x, &mut out16);
        assert_eq!(
            out16,
            [1, -1, 2, -2, 3, -3, -32768, -32768, -32768, -32768, -32768, 32767, 0]
        );
    }

    #[test]
    fn requantize_matches_tflm() {
        // int8 (0.5, 3) → int8 (0.3, -1): QuantizeMultiplier(0.5f32 / 0.3f32) = (1789569636, 1).
        let x = [-128i8, -1, 0, 1, 5, 127];
        let mut out = [0i8; 6];
        requantize(&qp(0.0, 3, -1, 1_789_569_636, 1), &x, &mut out);
        assert_eq!(out, [-128, -8, -6, -4, 2, 127]);
        // int8 (0.5, 3) → uint8 (0.5, 131): scale 1 = (2^30, 1), the xor-0x80 case.
        let mut u = [0u8; 6];
        requantize(&qp(0.0, 3, 131, 1 << 30, 1), &x, &mut u);
        assert_eq!(u, [0, 127, 128, 129, 133, 255]);
        // uint8 (0.5, 128) → int8 (0.5, 0).
        let xu = [0u8, 1, 127, 128, 255];
        let mut o = [0i8; 5];
        requantize(&qp(0.0, 128, 0, 1 << 30, 1), &xu, &mut o);
        assert_eq!(o, [-128, -127, -1, 0, 127]);
    }

    #[test]
    fn dequantize_in_single_precision() {
        let x = [-128i8, -1, 0, 1, 5, 127];
        let mut out = [0f32; 6];
        dequantize(&qp(0.1, 3, 0, 0, 0), &x, &mut out);
        let want = [-131.0f32, -4.0, -3.0, -2.0, 2.0, 124.0].map(|v| 0.1f32 * v);
        assert_eq!(out, want);
        // TFLM prints -13.100000381469727 (single precision), not -13.1 rounded from double.
        assert_eq!(out[0].to_bits(), 0xc151_999a);
    }
}
