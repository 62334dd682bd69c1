//! Lowering of CONCATENATION (int8, int16, int32, float32; any number of inputs, any axis) to
//! `mote_runtime::ops::concat`.
//!
//! TFLM's `ConcatenationPrepare` requires no fused activation and equal input and output types,
//! and its int8 kernel copies bytes without rescaling. A byte copy is only right when every input
//! has the output's scale and zero point, so mismatched quantization is refused here (insert a
//! QUANTIZE to requantize the odd input).

use mote_runtime::format::{OpCost, MAX_RANK};
use mote_runtime::ops::concat::ConcatParams;
use mote_runtime::OpKind;

use super::shape::{per_tensor, read_bytes, sat32};
use super::{LowerCtx, LoweredOp};
use crate::error::CompileError;
use crate::ir::{Activation, DataType, Node, Operator};

/// Lowers a CONCATENATION node.
pub fn lower(ctx: &mut LowerCtx, node: &Node) -> Result<LoweredOp, CompileError> {
    let Operator::Concatenation { axis, activation } = node.op else {
        return Err(ctx.invalid(node, "not a CONCATENATION node"));
    };
    if activation != Activation::None {
        return Err(ctx.unsupported(
            node,
            format!("fused activation {activation:?} (TFLM supports none)"),
        ));
    }
    if node.inputs.is_empty() || node.outputs.len() != 1 {
        return Err(ctx.invalid(node, "expects at least 1 input and 1 output"));
    }
    if node.inputs.len() > u8::MAX as usize {
        return Err(ctx.unsupported(node, format!("{} inputs (at most 255)", node.inputs.len())));
    }
    let output = ctx.output(node, 0)?;
    let ot = ctx.tensor(output).clone();
    if !matches!(
        ot.dtype,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Float32
    ) {
        return Err(ctx.unsupported(
            node,
            format!(
                "{} tensors (int8, int16, int32 and float32 are supported)",
                ot.dtype
            ),
        ));
    }
    let rank = ot.shape.len();
    if rank > MAX_RANK {
        return Err(ctx.unsupported(node, format!("rank {rank} (at most {MAX_RANK})")));
    }
    if axis >= rank {
        return Err(ctx.invalid(node, format!("axis {axis} is out of range for rank {rank}")));
    }
    let quantized = matches!(ot.dtype, DataType::Int8 | DataType::Int16);
    let out_q = if quantized {
        Some(per_tensor(ctx, node, output, "the output")?)
    } else {
        None
    };
    let mut inputs = Vec::with_capacity(node.inputs.len());
    let mut total = 0usize;
    for k in 0..node.inputs.len() {
        let id = ctx.input(node, k)?;
        let t = ctx.tensor(id);
        if t.dtype != ot.dtype {
            return Err(ctx.invalid(
                node,
                format!("input {k} is {} but the output is {}", t.dtype, ot.dtype),
            ));
        }
        if t.shape.len() != rank
            || t.shape
                .iter()
                .zip(&ot.shape)
                .enumerate()
                .any(|(j, (a, b))| j != axis && a != b)
        {
            return Err(ctx.invalid(
                node,
                format!(
                    "input {k} shape {:?} does not fit output shape {:?} on axis {axis}",
                    t.shape, ot.shape
                ),
            ));
        }
        total += t.shape[axis];
        if let Some((os, oz)) = out_q {
            let (s, z) = per_tensor(ctx, node, id, &format!("input {k}"))?;
            if s != os || z != oz {
                return Err(ctx.unsupported(
                    node,
                    format!(
                        "input {k} is quantized with scale {s} zero point {z} but the output \
                         with scale {os} zero point {oz}; CONCATENATION copies bytes and needs \
                         equal quantization (requantize the input first)"
                    ),
                ));
            }
        }
        inputs.push(id);
    }
    if total != ot.shape[axis] {
        return Err(ctx.invalid(
            node,
            format!(
                "inputs sum to {total} along axis {axis}, the output has {}",
                ot.shape[axis]
            ),
        ));
    }

    let p = ConcatParams { axis: axis as u32 };
    let (const_bytes_read, arena_bytes_read) = read_bytes(ctx, &inputs);
    Ok(LoweredOp {
        kind: OpKind::Concatenation,
        inputs: inputs.into_iter().map(Some).collect(),
        outputs: vec![output],
        params: bytemuck::bytes_of(&p).to_vec(),
        scratch_bytes: 0,
        cost: OpCost {
            macs: 0,
            const_bytes_read,
            arena_bytes_read,
            arena_bytes_written: sat32(ot.bytes()),
            reserved: 0,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::shape::testing::*;
    use super::*;

    fn cat(axis: usize) -> Operator {
        Operator::Concatenation {
            axis,
            activation: Activation::None,
        }
    }

    #[test]
    fn axes_zero_middle_last() {
        let q = Some((0.25, 4));
        for (axis, a, b, o) in [
            (0, [1, 2, 3], [2, 2, 3], [3, 2, 3]),
            (1, [2, 1, 3], [2, 4, 3], [2, 5, 3]),
            (2, [2, 2, 1], [2, 2, 2], [2, 2, 3]),
        ] {
            let (op, _) = lower_one(
                cat(axis),
                vec![act(&a, DataType::Int8, q), act(&b, DataType::Int8, q)],
                act(&o, DataType::Int8, q),
            )
            .unwrap();
            let p: ConcatParams = *bytemuck::from_bytes(&op.params);
            assert_eq!(p.axis as usize, axis);
            assert_eq!(op.inputs.len(), 2);
        }
    }

    #[test]
    fn refuses_mismatched_quantization_and_activation() {
        let err = lower_one(
            cat(0),
            vec![
                act(&[1, 2], DataType::Int8, Some((0.25, 4))),
                act(&[1, 2], DataType::Int8, Some((0.5, 4))),
            ],
            act(&[2, 2], DataType::Int8, Some((0.25, 4))),
        )
        .unwrap_err();
        assert!(err.to_string().contains("input 1"), "{err}");
        assert!(lower_one(
            Operator::Concatenation {
                axis: 0,
                activation: Activation::Relu
            },
            vec![act(&[1, 2], DataType::Float32, None)],
            act(&[1, 2], DataType::Float32, None),
        )
        .is_err());
        assert!(lower_one(
            cat(1),
            vec![
                act(&[1, 2], DataType::Float32, None),
                act(&[2, 2], DataType::Float32, None)
            ],
            act(&[1, 4], DataType::Float32, None),
        )
        .is_err());
    }
}
