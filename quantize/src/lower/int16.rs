//! Lowering of the element-wise ops and SOFTMAX with int16 activations (TFLite's 16x8 scheme)
//! to `mote_runtime::ops::int16_elementwise` and `mote_runtime::ops::int16_softmax`.
//!
//! Parameters are computed as TFLM's `Prepare` does for int16 tensors:
//! - ADD (`CalculateOpDataAdd`) / SUB (`CalculateOpDataSub`), both in double as the TFLM build
//!   of the goldens computes them for int16: `left_shift` 15, multipliers of `in_i / (2 · max_in)` and `2 · max_in / (2^15 · out)`.
//!   Zero points must be 0 (what the 16x8 converter produces; refused by name otherwise).
//! - MUL (`CalculateOpDataMul`): multiplier of `in1 · in2 / out`; TFLM requires zero points 0.
//! - RELU (`CalculateReluOpData<int16_t>`), RELU6 (`Relu6Prepare`): as int8, over int16.
//! - LOGISTIC / TANH: zero points 0, output scale 2⁻¹⁵ (`CheckedLog2`); a power-of-two input
//!   scale with `15 − 3 + log2(scale)` equal to 0 (LOGISTIC) or 0/1 (TANH) gives multiplier 0,
//!   else the input is rescaled to 1/(3·4096) with a 15-bit multiplier (doubled until above
//!   32767/2, truncated). The 256-entry table `round(65536 · sigmoid(i / 24))` goes to the
//!   constant section.
//! - SOFTMAX: output scale 1/32768 (±0.1 %) zero point 0; `QuantizeMultiplier(in_scale · beta /
//!   (10 / 65535))`; the `exp` table on `[-10, 0]` and the `1 / (1 + x)` table on `[0, 1]`
//!   built in f32 exactly as TFLM's `gen_lut<float, int16_t, int16_t>`.

use mote_runtime::format::OpCost;
use mote_runtime::ops::activation::{Relu6Params, ReluParams};
use mote_runtime::ops::arith::{broadcast_shape, ArithParams};
use mote_runtime::ops::int16_elementwise::{Sigmoid16Params, SIGMOID_TABLE_LEN};
use mote_runtime::ops::int16_softmax::{Softmax16Params, LUT_LEN};
use mote_runtime::OpKind;

use super::arith::{input_bytes, sat_u32};
use super::quant_math::{activation_range_quantized, quantize_multiplier};
use super::{LowerCtx, LoweredOp};
use crate::error::CompileError;
use crate::ir::{Activation, DataType, Node, Operator, TensorId};

/// Lowers `node` if it is an ADD, SUB, MUL, RELU, RELU6, LOGISTIC, TANH or SOFTMAX whose input
/// 0 is int16; `None` for anything else.
pub fn lower(ctx: &mut LowerCtx, node: &Node) -> Option<Result<LoweredOp, CompileError>> {
    let kind = match &node.op {
        Operator::Add { .. } => OpKind::Add,
        Operator::Sub { .. } => OpKind::Sub,
        Operator::Mul { .. } => OpKind::Mul,
        Operator::Relu => OpKind::Relu,
        Operator::Relu6 => OpKind::Relu6,
        Operator::Logistic => OpKind::Logistic,
        Operator::Tanh => OpKind::Tanh,
        Operator::Softmax { .. } => OpKind::Softmax,
        _ => return None,
    };
    let input = node.inputs.first().copied().flatten()?;
    if ctx.tensor(input).dtype != DataType::Int16 {
        return None;
    }
    Some(match kind {
        OpKind::Add | OpKind::Sub | OpKind::Mul => lower_binary(ctx, node, kind),
        OpKind::Softmax => lower_softmax(ctx, node),
        _ => lower_unary(ctx, node, kind),
    })
}

/// Per-tensor int16 quantization `(scale, zero_point)` of `id`, or an error naming `what`.
fn int16_per_tensor(
    ctx: &LowerCtx,
    node: &Node,
    id: TensorId,
    what: &str,
) -> Result<(f32, i32), CompileError> {
    let t = ctx.tensor(id);
    if t.dtype != DataType::Int16 {
        return Err(ctx.unsupported(
            node,
            format!(
                "{what} is {} with an int16 input 0 (only int16 → int16)",
                t.dtype
            ),
        ));
    }
    let q = t
        .quant
        .as_ref()
        .ok_or_else(|| ctx.unsupported(node, format!("{what} is int16 but not quantized")))?;
    if !q.is_per_tensor() {
        return Err(ctx.unsupported(node, format!("{what} is quantized per channel")));
    }
    let (scale, zp) = (q.scale(), q.zero_point());
    if !(scale.is_finite() && scale > 0.0) {
        return Err(ctx.invalid(node, format!("{what} has scale {scale}")));
    }
    if !(-32768..=32767).contains(&zp) {
        return Err(ctx.invalid(node, format!("{what} has zero point {zp} outside int16")));
    }
    Ok((scale, zp as i32))
}

fn symmetric(ctx: &LowerCtx, node: &Node, zps: &[i32]) -> Result<(), CompileError> {
    if zps.iter().any(|&z| z != 0) {
        return Err(ctx.unsupported(
            node,
            format!("int16 tensors with zero points {zps:?} (the 16x8 scheme needs 0)"),
        ));
    }
    Ok(())
}

fn smaller_than_one(
    ctx: &LowerCtx,
    node: &Node,
    real: f64,
    what: &str,
) -> Result<(i32, i32), CompileError> {
    if !(real > 0.0 && real < 1.0) {
        return Err(ctx.unsupported(
            node,
            format!("{what} rescale factor {real} is not in (0, 1) (TFLM requires it)"),
        ));
    }
    Ok(quantize_multiplier(real))
}

fn finish(
    ctx: &LowerCtx,
    kind: OpKind,
    inputs: &[TensorId],
    output: TensorId,
    params: Vec<u8>,
) -> LoweredOp {
    let (const_bytes_read, arena_bytes_read) = input_bytes(ctx, inputs);
    LoweredOp {
        kind,
        inputs: inputs.iter().map(|&t| Some(t)).collect(),
        outputs: vec![output],
        params,
        scratch_bytes: 0,
        cost: OpCost {
            macs: ctx.tensor(output).elements() as u64,
            const_bytes_read,
            arena_bytes_read,
            arena_bytes_written: sat_u32(ctx.tensor(output).bytes()),
            reserved: 0,
        },
    }
}

fn lower_binary(ctx: &mut LowerCtx, node: &Node, kind: OpKind) -> Result<LoweredOp, CompileError> {
    let activation = match &node.op {
        Operator::Add { activation }
        | Operator::Sub { activation }
        | Operator::Mul { activation } => *activation,
        _ => return Err(ctx.invalid(node, "not an ADD, SUB or MUL node")),
    };
    if node.inputs.len() != 2 || node.outputs.len() != 1 {
        return Err(ctx.invalid(node, "expects 2 inputs and 1 output"));
    }
    let (in1, in2, out) = (
        ctx.input(node, 0)?,
        ctx.input(node, 1)?,
        ctx.output(node, 0)?,
    );
    let (s1, z1) = int16_per_tensor(ctx, node, in1, "input 1")?;
    let (s2, z2) = int16_per_tensor(ctx, node, in2, "input 2")?;
    let (so, zo) = int16_per_tensor(ctx, node, out, "the output")?;
    symmetric(ctx, node, &[z1, z2, zo])?;
    let (shape1, shape2) = (&ctx.tensor(in1).shape, &ctx.tensor(in2).shape);
    let (rank, bshape) = broadcast_shape(shape1, shape2).ok_or_else(|| {
        ctx.unsupported(
            node,
            format!("input shapes {shape1:?} and {shape2:?} do not broadcast (or rank > 6)"),
        )
    })?;
    if ctx.tensor(out).shape.as_slice() != &bshape[..rank] {
        return Err(ctx.invalid(
            node,
            "output shape is not the broadcast shape of the inputs",
        ));
    }
    if matches!(activation, Activation::Tanh | Activation::SignBit) {
        return Err(ctx.unsupported(node, format!("fused activation {activation:?}")));
    }
    let (activation_min, activation_max) =
        activation_range_quantized(activation, so, 0, -32768, 32767)
            .filter(|(lo, hi)| lo <= hi)
            .ok_or_else(|| ctx.unsupported(node, format!("fused activation {activation:?}")))?;
    let mut p = ArithParams {
        input1_offset: 0,
        input2_offset: 0,
        output_offset: 0,
        left_shift: 0,
        input1_multiplier: 0,
        input1_shift: 0,
        input2_multiplier: 0,
        input2_shift: 0,
        output_multiplier: 0,
        output_shift: 0,
        activation_min,
        activation_max,
    };
    // ADD and SUB alike in double: the float-then-widen form of some `sub_common.cc` versions
    // differs from the TFLM build of the goldens on int16 SUB (`a16_sub_same`).
    let reals = matches!(kind, OpKind::Add | OpKind::Sub).then(|| {
        let twice_max = 2.0 * f64::from(s1.max(s2));
        (
            f64::from(s1) / twice_max,
            f64::from(s2) / twice_max,
            twice_max / (f64::from(1u32 << 15) * f64::from(so)),
        )
    });
    match reals {
        Some((r1, r2, ro)) => {
            p.left_shift = 15;
            (p.input1_multiplier, p.input1_shift) = smaller_than_one(ctx, node, r1, "input 1")?;
            (p.input2_multiplier, p.input2_shift) = smaller_than_one(ctx, node, r2, "input 2")?;
            (p.output_multiplier, p.output_shift) = smaller_than_one(ctx, node, ro, "output")?;
        }
        None => {
            let real = f64::from(s1) * f64::from(s2) / f64::from(so);
            (p.output_multiplier, p.output_shift) = quantize_multiplier(real);
            if !(-31..=30).contains(&p.output_shift) {
                return Err(ctx.unsupported(
                    node,
                    format!("output rescale factor {real} is out of range"),
                ));
            }
        }
    }
    Ok(finish(
        ctx,
        kind,
        &[in1, in2],
        out,
        bytemuck::bytes_of(&p).to_vec(),
    ))
}

/// TFLite's `CheckedLog2` (in float): the rounded log2 and whether `x` is a power of two.
fn checked_log2(x: f32) -> (i32, bool) {
    let l = x.ln() * (1.0f32 / 2.0f32.ln());
    let r = l.round();
    (r as i32, (l - r).abs() < 1e-3)
}

/// The LOGISTIC / TANH table: `sigmoid(i / 24)` in unsigned Q0.16 for `i` in `0..256`, each
/// entry moved by half the error of linear interpolation at the midpoint to the next one
/// (`round(f(i) − ((f(i) + f(i+1)) / 2 − f(i + ½)) / 2)` with `f(i) = 65536 · sigmoid(i / 24)`),
/// and the last entry the function's limit saturated (65535): the table TFLite's int16 kernels
/// interpolate in (checked bit-exact over every entry by the `a16_logistic_wide` and
/// `a16_tanh_wide` goldens).
pub fn sigmoid_table() -> Vec<u16> {
    let f = |i: f64| 65536.0 / (1.0 + (-i / 24.0).exp());
    (0..SIGMOID_TABLE_LEN)
        .map(|i| {
            if i + 1 == SIGMOID_TABLE_LEN {
                return u16::MAX;
            }
            let i = i as f64;
            let err = (f(i) + f(i + 1.0)) / 2.0 - f(i + 0.5);
            (f(i) - err / 2.0).round().min(65535.0) as u16
        })
        .collect()
}

fn lower_unary(ctx: &mut LowerCtx, node: &Node, kind: OpKind) -> Result<LoweredOp, CompileError> {
    if node.inputs.len() != 1 || node.outputs.len() != 1 {
        return Err(ctx.invalid(node, "expects 1 input and 1 output"));
    }
    let (input, output) = (ctx.input(node, 0)?, ctx.output(node, 0)?);
    let (si, zi) = int16_per_tensor(ctx, node, input, "the input")?;
    let (so, zo) = int16_per_tensor(ctx, node, output, "the output")?;
    if ctx.tensor(input).shape != ctx.tensor(output).shape {
        return Err(ctx.invalid(node, "output shape differs from the input shape"));
    }
    let params = match kind {
        OpKind::Relu => {
            let (output_multiplier, output_shift) =
                quantize_multiplier(f64::from(si) / f64::from(so));
            if !(-31..=30).contains(&output_shift) {
                return Err(ctx.unsupported(node, "input/output scale ratio is out of range"));
            }
            let p = ReluParams {
                input_offset: zi,
                output_offset: zo,
                output_multiplier,
                output_shift,
                activation_min: zo.max(-32768),
                activation_max: 32767,
            };
            bytemuck::bytes_of(&p).to_vec()
        }
        OpKind::Relu6 => {
            let q = (6.0f32 / si).round();
            if !q.is_finite() || q.abs() > 1e9 {
                return Err(ctx.unsupported(node, format!("input scale {si} is too small")));
            }
            let six = (q as i32 + zi).clamp(-32768, 32767);
            bytemuck::bytes_of(&Relu6Params { zero: zi, six }).to_vec()
        }
        _ => {
            symmetric(ctx, node, &[zi, zo])?;
            let (out_log2, out_pot) = checked_log2(so);
            if !out_pot || out_log2 != -15 {
                return Err(ctx.unsupported(
                    node,
                    format!("int16 output scale {so} (TFLM requires 2^-15)"),
                ));
            }
            let (in_log2, pot) = checked_log2(si);
            let shift = 12 + in_log2;
            let pot_shifts = if kind == OpKind::Logistic { 0 } else { 1 };
            let (input_multiplier, input_left_shift) = if pot && (0..=pot_shifts).contains(&shift) {
                (0, shift)
            } else {
                let mut m = f64::from(si) * 4096.0 * 3.0;
                let mut s = 0;
                while m <= 32767.0 / 2.0 && s <= 30 {
                    s += 1;
                    m *= 2.0;
                }
                if m > 32767.0 {
                    return Err(ctx.unsupported(
                        node,
                        format!("int16 input scale {si} is too large for the table (TFLM)"),
                    ));
                }
                (m as i32, s)
            };
            let table: Vec<u8> = sigmoid_table()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            let p = Sigmoid16Params {
                input_multiplier,
                input_left_shift,
                table_offset: ctx.add_const(&table)?,
                reserved: 0,
            };
            bytemuck::bytes_of(&p).to_vec()
        }
    };
    Ok(finish(ctx, kind, &[input], output, params))
}

/// TFLM's `gen_lut<float, int16_t, int16_t>` with output range `[-1, 1]`: 512 steps over
/// `[lo, hi]` plus the end point, each sample corrected by half its midpoint interpolation
/// error; computed in f32 like TFLM.
pub fn gen_lut16(f: impl Fn(f32) -> f32, lo: f32, hi: f32) -> Vec<i16> {
    let step = (hi - lo) / 512.0;
    let half_step = step / 2.0;
    let inv = 65536.0f32 / (1.0 - (-1.0));
    let clamp = |v: f32| v.clamp(-32768.0, 32767.0) as i16;
    let mut lut: Vec<i16> = (0..512)
        .map(|i| {
            let val = f(lo + i as f32 * step);
            let mid = f(lo + i as f32 * step + half_step);
            let next = f(lo + (i + 1) as f32 * step);
            let sample = (val * inv).round();
            let interp = ((next * inv + (val * inv).round()) / 2.0).round();
            let bias = ((interp - (mid * inv).round()) / 2.0).round();
            clamp(sample - bias)
        })
        .collect();
    lut.push(clamp((f(hi) * inv).round()));
    lut
}

fn lower_softmax(ctx: &mut LowerCtx, node: &Node) -> Result<LoweredOp, CompileError> {
    let Operator::Softmax { beta } = node.op else {
        return Err(ctx.invalid(node, "not a SOFTMAX node"));
    };
    if node.inputs.len() != 1 || node.outputs.len() != 1 {
        return Err(ctx.invalid(node, "expects 1 input and 1 output"));
    }
    let (input, output) = (ctx.input(node, 0)?, ctx.output(node, 0)?);
    let (si, _) = int16_per_tensor(ctx, node, input, "the input")?;
    let (so, zo) = int16_per_tensor(ctx, node, output, "the output")?;
    if zo != 0 || (so - 1.0 / 32768.0).abs() > 0.001 / 32768.0 {
        return Err(ctx.unsupported(
            node,
            format!("int16 output quantization must be scale 1/32768 zero point 0, got {so} {zo}"),
        ));
    }
    if ctx.tensor(input).shape != ctx.tensor(output).shape
        || ctx.tensor(input).shape.last().copied().unwrap_or(0) == 0
    {
        return Err(ctx.invalid(node, "input and output shapes (non-empty last dimension)"));
    }
    let real = f64::from(si) * f64::from(beta) / (10.0 / 65535.0);
    let (input_multiplier, input_left_shift) = quantize_multiplier(real);
    if !(real.is_finite() && real > 0.0 && (-31..=30).contains(&input_left_shift)) {
        return Err(ctx.unsupported(node, format!("input rescale factor {real} is out of range")));
    }
    let bytes = |t: Vec<i16>| -> Vec<u8> { t.iter().flat_map(|v| v.to_le_bytes()).collect() };
    let exp_lut = bytes(gen_lut16(|x| x.exp(), -10.0, 0.0));
    let recip_lut = bytes(gen_lut16(|x| 1.0 / (1.0 + x), 0.0, 1.0));
    debug_assert_eq!(exp_lut.len(), 2 * LUT_LEN);
    let p = Softmax16Params {
        input_multiplier,
        input_left_shift,
        exp_lut_offset: ctx.add_const(&exp_lut)?,
        recip_lut_offset: ctx.add_const(&recip_lut)?,
    };
    Ok(finish(
        ctx,
        OpKind::Softmax,
        &[input],
        output,
        bytemuck::bytes_of(&p).to_vec(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_table_is_sigmoid_in_q0_16() {
        let t = sigmoid_table();
        assert_eq!(t.len(), SIGMOID_TABLE_LEN);
        // sigmoid(0) = 1/2; then 65536 · sigmoid(4/24) = 35492.36, moved up by the curvature.
        assert_eq!(&t[..5], &[32768, 33451, 34133, 34813, 35493]);
        assert_eq!(&t[SIGMOID_TABLE_LEN - 2..], &[65534, 65535]);
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn softmax_tables_span_their_functions() {
        let e = gen_lut16(|x| x.exp(), -10.0, 0.0);
        assert_eq!(e.len(), LUT_LEN);
        assert_eq!(e[LUT_LEN - 1], 32767); // exp(0) = 1 saturates
        assert!(e[0] <= 2); // exp(-10) ≈ 4.5e-5
        let r = gen_lut16(|x| 1.0 / (1.0 + x), 0.0, 1.0);
        assert_eq!(r[0], 32767);
        assert_eq!(r[LUT_LEN - 1], 16384); // 1/2
    }

    #[test]
    fn checked_log2_finds_powers_of_two() {
        assert_eq!(checked_log2(1.0 / 32768.0), (-15, true));
        assert_eq!(checked_log2(0.25), (-2, true));
        assert!(!checked_log2(0.3).1);
    }
}
