//! Lowering of ADD, SUB and MUL (int8, with broadcasting) to `mote_runtime::ops::arith`.
//!
//! Parameters are computed exactly as TFLM's `Prepare` does:
//! - ADD (`add_common.cc`, in double precision): `left_shift = 20`,
//!   `twice_max = 2 · max(s1, s2)`, input multipliers `sᵢ / twice_max`, output multiplier
//!   `twice_max / (2^20 · s_out)`, all via `QuantizeMultiplierSmallerThanOneExp`.
//! - SUB (`sub_common.cc`): the same recipe, but TFLM computes the real multipliers in single
//!   precision (`float`) before widening them to double — reproduced here bit for bit.
//! - MUL (`mul_common.cc`): one multiplier `s1 · s2 / s_out` (double) via `QuantizeMultiplier`.

use mote_runtime::format::OpCost;
use mote_runtime::ops::arith::{broadcast_shape, ArithParams};
use mote_runtime::OpKind;

use super::quant_math::{activation_range_quantized, quantize_multiplier};
use super::{LowerCtx, LoweredOp};
use crate::error::CompileError;
use crate::ir::{Activation, DataType, Node, Operator, TensorId};

/// Per-tensor int8 quantization `(scale, zero_point)` of tensor `id`, or an "unsupported" error
/// naming `what` (e.g. "input 1") when the tensor is not int8 with valid per-tensor parameters.
pub(crate) fn int8_per_tensor(
    ctx: &LowerCtx,
    node: &Node,
    id: TensorId,
    what: &str,
) -> Result<(f32, i32), CompileError> {
    let t = ctx.tensor(id);
    if t.dtype != DataType::Int8 {
        return Err(ctx.unsupported(
            node,
            format!("{what} is {}, only int8 is supported", t.dtype),
        ));
    }
    let q = t
        .quant
        .as_ref()
        .ok_or_else(|| ctx.unsupported(node, format!("{what} is int8 but not quantized")))?;
    if !q.is_per_tensor() {
        return Err(ctx.unsupported(node, format!("{what} is quantized per channel")));
    }
    let scale = q.scale();
    let zp = q.zero_point();
    if !(scale.is_finite() && scale > 0.0) {
        return Err(ctx.invalid(node, format!("{what} has scale {scale}")));
    }
    if !(-128..=127).contains(&zp) {
        return Err(ctx.invalid(node, format!("{what} has zero point {zp} outside int8")));
    }
    Ok((scale, zp as i32))
}

/// Bytes read from constants and from the arena by `inputs`.
pub(crate) fn input_bytes(ctx: &LowerCtx, inputs: &[TensorId]) -> (u32, u32) {
    let mut constant = 0usize;
    let mut arena = 0usize;
    for &id in inputs {
        let t = ctx.tensor(id);
        if t.is_const() {
            constant += t.bytes();
        } else {
            arena += t.bytes();
        }
    }
    (sat_u32(constant), sat_u32(arena))
}

/// `n` as `u32`, saturating.
pub(crate) fn sat_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// TFLite's `QuantizeMultiplierSmallerThanOneExp`, refusing what TFLM would abort on.
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

/// Lowers an ADD, SUB or MUL node.
pub fn lower(ctx: &mut LowerCtx, node: &Node) -> Result<LoweredOp, CompileError> {
    let (kind, activation) = match &node.op {
        Operator::Add { activation } => (OpKind::Add, *activation),
        Operator::Sub { activation } => (OpKind::Sub, *activation),
        Operator::Mul { activation } => (OpKind::Mul, *activation),
        _ => return Err(ctx.invalid(node, "not an ADD, SUB or MUL node")),
    };
    if node.inputs.len() != 2 || node.outputs.len() != 1 {
        return Err(ctx.invalid(node, "expects 2 inputs and 1 output"));
    }
    let in1 = ctx.input(node, 0)?;
    let in2 = ctx.input(node, 1)?;
    let out = ctx.output(node, 0)?;
    let (s1, zp1) = int8_per_tensor(ctx, node, in1, "input 1")?;
    let (s2, zp2) = int8_per_tensor(ctx, node, in2, "input 2")?;
    let (so, zpo) = int8_per_tensor(ctx, node, out, "the output")?;

    let shape1 = ctx.tensor(in1).shape.clone();
    let shape2 = ctx.tensor(in2).shape.clone();
    let out_shape = ctx.tensor(out).shape.clone();
    let (rank, bshape) = broadcast_shape(&shape1, &shape2).ok_or_else(|| {
        ctx.unsupported(
            node,
            format!("input shapes {shape1:?} and {shape2:?} do not broadcast (or rank > 6)"),
        )
    })?;
    if out_shape.as_slice() != &bshape[..rank] {
        return Err(ctx.invalid(
            node,
            format!(
                "output shape {out_shape:?} is not the broadcast shape {:?} of the inputs",
                &bshape[..rank]
            ),
        ));
    }

    if matches!(activation, Activation::Tanh | Activation::SignBit) {
        return Err(ctx.unsupported(node, format!("fused activation {activation:?}")));
    }
    let (activation_min, activation_max) =
        activation_range_quantized(activation, so, zpo, -128, 127)
            .ok_or_else(|| ctx.unsupported(node, format!("fused activation {activation:?}")))?;
    if activation_min > activation_max {
        return Err(ctx.unsupported(
            node,
            format!("fused activation {activation:?} gives an empty output range"),
        ));
    }

    let mut p = ArithParams {
        input1_offset: -zp1,
        input2_offset: -zp2,
        output_offset: zpo,
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
    match kind {
        OpKind::Add => {
            p.left_shift = 20;
            let twice_max = 2.0 * f64::from(s1.max(s2));
            let real1 = f64::from(s1) / twice_max;
            let real2 = f64::from(s2) / twice_max;
            let real_out = twice_max / (f64::from(1u32 << p.left_shift) * f64::from(so));
            (p.input1_multiplier, p.input1_shift) = smaller_than_one(ctx, node, real1, "input 1")?;
            (p.input2_multiplier, p.input2_shift) = smaller_than_one(ctx, node, real2, "input 2")?;
            (p.output_multiplier, p.output_shift) =
                smaller_than_one(ctx, node, real_out, "output")?;
        }
        OpKind::Sub => {
            // sub_common.cc computes these in float, then widens to double.
            p.left_shift = 20;
            let twice_max: f32 = 2.0 * s1.max(s2);
            let real1 = f64::from(s1 / twice_max);
            let real2 = f64::from(s2 / twice_max);
            let real_out = f64::from(twice_max / ((1u32 << p.left_shift) as f32 * so));
            (p.input1_multiplier, p.input1_shift) = smaller_than_one(ctx, node, real1, "input 1")?;
            (p.input2_multiplier, p.input2_shift) = smaller_than_one(ctx, node, real2, "input 2")?;
            (p.output_multiplier, p.output_shift) =
                smaller_than_one(ctx, node, real_out, "output")?;
        }
        _ => {
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

    let out_elems = ctx.tensor(out).elements();
    let (const_bytes_read, arena_bytes_read) = input_bytes(ctx, &[in1, in2]);
    Ok(LoweredOp {
        kind,
        inputs: vec![Some(in1), Some(in2)],
        outputs: vec![out],
        params: bytemuck::bytes_of(&p).to_vec(),
        scratch_bytes: 0,
        cost: OpCost {
            macs: out_elems as u64,
            const_bytes_read,
            arena_bytes_read,
            arena_bytes_written: sat_u32(ctx.tensor(out).bytes()),
            reserved: 0,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Graph, Quantization, Tensor};
    use crate::lower::ConstPool;

    fn t(shape: &[usize], scale: f32, zp: i64) -> Tensor {
        Tensor {
            name: String::new(),
            shape: shape.to_vec(),
            dtype: DataType::Int8,
            quant: Some(Quantization::per_tensor(scale, zp)),
            data: None,
        }
    }

    fn lower_one(op: Operator, tensors: Vec<Tensor>) -> Result<LoweredOp, CompileError> {
        let mut graph = Graph {
            tensors,
            ..Default::default()
        };
        let node = Node {
            op,
            inputs: vec![Some(0), Some(1)],
            outputs: vec![2],
        };
        let mut consts = ConstPool::default();
        let mut ctx = LowerCtx {
            graph: &mut graph,
            index: 0,
            consts: &mut consts,
            pack_weights: true,
        };
        lower(&mut ctx, &node)
    }

    fn params(op: &LoweredOp) -> ArithParams {
        *bytemuck::from_bytes(&op.params)
    }

    #[test]
    fn add_params_like_tflm() {
        let op = lower_one(
            Operator::Add {
                activation: Activation::Relu,
            },
            vec![t(&[1, 4], 0.5, 3), t(&[4], 0.25, -2), t(&[1, 4], 1.0, -10)],
        )
        .unwrap();
        let p = params(&op);
        assert_eq!(op.kind, OpKind::Add);
        assert_eq!(
            (p.input1_offset, p.input2_offset, p.output_offset),
            (-3, 2, -10)
        );
        assert_eq!(p.left_shift, 20);
        assert_eq!((p.input1_multiplier, p.input1_shift), (1 << 30, 0)); // 0.5
        assert_eq!((p.input2_multiplier, p.input2_shift), (1 << 30, -1)); // 0.25
        assert_eq!((p.output_multiplier, p.output_shift), (1 << 30, -19)); // 2^-20
        assert_eq!((p.activation_min, p.activation_max), (-10, 127));
        assert_eq!(op.cost.macs, 4);
    }

    #[test]
    fn sub_uses_float_arithmetic() {
        let op = lower_one(
            Operator::Sub {
                activation: Activation::None,
            },
            vec![t(&[3], 0.1, 0), t(&[3], 0.3, 0), t(&[3], 0.7, 0)],
        )
        .unwrap();
        let p = params(&op);
        let twice: f32 = 2.0 * 0.3f32;
        assert_eq!(
            (p.input1_multiplier, p.input1_shift),
            quantize_multiplier(f64::from(0.1f32 / twice))
        );
    }

    #[test]
    fn mul_params_and_refusals() {
        let op = lower_one(
            Operator::Mul {
                activation: Activation::Relu6,
            },
            vec![
                t(&[2, 1], 0.5, 0),
                t(&[1, 3], 0.25, 0),
                t(&[2, 3], 0.125, 0),
            ],
        )
        .unwrap();
        let p = params(&op);
        assert_eq!((p.output_multiplier, p.output_shift), (1 << 30, 1));
        assert_eq!((p.activation_min, p.activation_max), (0, 48));
        // Mismatched broadcast.
        assert!(lower_one(
            Operator::Mul {
                activation: Activation::None
            },
            vec![t(&[2], 0.5, 0), t(&[3], 0.5, 0), t(&[3], 0.5, 0)],
        )
        .is_err());
        // Wrong output shape.
        assert!(lower_one(
            Operator::Add {
                activation: Activation::None
            },
            vec![t(&[2], 0.5, 0), t(&[1], 0.5, 0), t(&[1, 2], 0.5, 0)],
        )
        .is_err());
        // Tanh fused.
        assert!(lower_one(
            Operator::Add {
                activation: Activation::Tanh
            },
            vec![t(&[2], 0.5, 0), t(&[2], 0.5, 0), t(&[2], 0.5, 0)],
        )
        .is_err());
        // int16 tensors.
        let mut a = t(&[2], 0.5, 0);
        a.dtype = DataType::Int16;
        assert!(lower_one(
            Operator::Add {
                activation: Activation::None
            },
            vec![a, t(&[2], 0.5, 0), t(&[2], 0.5, 0)],
        )
        .is_err());
    }
}
