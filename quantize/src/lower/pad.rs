//! Lowering of PAD / PADV2 (int8, int16, int32, float32; up to 5-D as TFLM) to
//! `mote_runtime::ops::pad`.
//!
//! As in TFLM's `PadPrepare`: the paddings input is a constant `[rank, 2]` tensor (int32; int64
//! is also read here), every output dim must equal `in + before + after`, and the pad value is
//! the output zero point for int8 PAD, zero for the other PAD types, and the constant scalar third
//! input for PADV2 (for int8 it must share the output's scale and zero point). Input and output
//! quantization must match: the kernel moves bytes and does not rescale.

use mote_runtime::format::{OpCost, MAX_RANK};
use mote_runtime::ops::pad::PadParams;
use mote_runtime::OpKind;

use super::shape::{const_ints, per_tensor, read_bytes, sat32};
use super::{LowerCtx, LoweredOp};
use crate::error::CompileError;
use crate::ir::{DataType, Node, Operator};

/// Highest rank TFLM's PAD supports (`PadKernelMaxDimensionCount`).
const MAX_PAD_RANK: usize = 5;

/// Lowers a PAD or PADV2 node.
pub fn lower(ctx: &mut LowerCtx, node: &Node) -> Result<LoweredOp, CompileError> {
    if !matches!(node.op, Operator::Pad) {
        return Err(ctx.invalid(node, "not a PAD node"));
    }
    if !(2..=3).contains(&node.inputs.len()) || node.outputs.len() != 1 {
        return Err(ctx.invalid(node, "expects 2 or 3 inputs and 1 output"));
    }
    let input = ctx.input(node, 0)?;
    let paddings = ctx.input(node, 1)?;
    let value_id = node.inputs.get(2).copied().flatten();
    let output = ctx.output(node, 0)?;
    let (it, ot) = (ctx.tensor(input).clone(), ctx.tensor(output).clone());
    if !matches!(
        it.dtype,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Float32
    ) {
        return Err(ctx.unsupported(
            node,
            format!(
                "{} input (int8, int16, int32 and float32 are supported)",
                it.dtype
            ),
        ));
    }
    if ot.dtype != it.dtype {
        return Err(ctx.invalid(
            node,
            format!("input is {} but output is {}", it.dtype, ot.dtype),
        ));
    }
    let rank = it.shape.len();
    if rank > MAX_PAD_RANK.min(MAX_RANK) {
        return Err(ctx.unsupported(node, format!("rank {rank} input (TFLM pads up to 5-D)")));
    }
    if ot.shape.len() != rank {
        return Err(ctx.invalid(node, "output rank differs from the input rank"));
    }
    let pads = const_ints(ctx, node, paddings, "the paddings input", true)?;
    if pads.len() != 2 * rank {
        return Err(ctx.invalid(
            node,
            format!(
                "paddings hold {} values, a rank-{rank} input needs {}",
                pads.len(),
                2 * rank
            ),
        ));
    }
    let mut p = PadParams {
        before: [0; MAX_RANK],
        after: [0; MAX_RANK],
        pad_value: 0,
    };
    for k in 0..rank {
        let (b, a) = (pads[2 * k], pads[2 * k + 1]);
        if b < 0 || a < 0 {
            return Err(ctx.unsupported(node, format!("negative padding {b}, {a} on axis {k}")));
        }
        if it.shape[k] as i64 + b + a != ot.shape[k] as i64 {
            return Err(ctx.invalid(
                node,
                format!(
                    "output dim {k} is {}, input {} padded by ({b}, {a}) gives {}",
                    ot.shape[k],
                    it.shape[k],
                    it.shape[k] as i64 + b + a
                ),
            ));
        }
        p.before[k] = u32::try_from(b).map_err(|_| ctx.unsupported(node, "padding over 2^32"))?;
        p.after[k] = u32::try_from(a).map_err(|_| ctx.unsupported(node, "padding over 2^32"))?;
    }

    let quantized = matches!(it.dtype, DataType::Int8 | DataType::Int16);
    let mut out_q = None;
    if quantized {
        let (in_scale, in_zp) = per_tensor(ctx, node, input, "the input")?;
        let (out_scale, out_zp) = per_tensor(ctx, node, output, "the output")?;
        if in_scale != out_scale || in_zp != out_zp {
            return Err(ctx.unsupported(
                node,
                format!(
                    "output quantization (scale {out_scale}, zero point {out_zp}) differs from \
                     the input's (scale {in_scale}, zero point {in_zp}); PAD does not rescale"
                ),
            ));
        }
        out_q = Some((out_scale, out_zp));
    }
    match value_id {
        None => {
            // TFLM: int8 pads with the output zero point; int16, int32 and float32 with zero.
            if it.dtype == DataType::Int8 {
                let zp = out_q.map_or(0, |q| q.1);
                p.pad_value = u32::from(zp as i8 as u8);
            }
        }
        Some(v) => {
            let vt = ctx.tensor(v).clone();
            if vt.dtype != it.dtype {
                return Err(ctx.invalid(
                    node,
                    format!("constant value is {}, the input is {}", vt.dtype, it.dtype),
                ));
            }
            if vt.elements() != 1 {
                return Err(ctx.invalid(node, "the constant value must be a scalar"));
            }
            let data = vt.data.as_ref().ok_or_else(|| {
                ctx.unsupported(node, "PADV2 with a constant value computed at run time")
            })?;
            if it.dtype == DataType::Int8 {
                let (vs, vz) = per_tensor(ctx, node, v, "the constant value")?;
                if Some((vs, vz)) != out_q {
                    return Err(ctx.unsupported(
                        node,
                        "PADV2 constant value quantized differently from the output (TFLM \
                         requires the same scale and zero point)",
                    ));
                }
            }
            let mut bytes = [0u8; 4];
            let n = it.dtype.size().min(4).min(data.len());
            bytes[..n].copy_from_slice(&data[..n]);
            p.pad_value = u32::from_le_bytes(bytes);
        }
    }

    let (const_bytes_read, arena_bytes_read) = read_bytes(ctx, &[input]);
    Ok(LoweredOp {
        kind: OpKind::Pad,
        inputs: vec![Some(input)],
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
    use crate::ir::{Quantization, Tensor};

    fn params(op: &LoweredOp) -> PadParams {
        *bytemuck::from_bytes(&op.params)
    }

    #[test]
    fn pad_int8_uses_output_zero_point() {
        let q = Some((0.1, -7));
        let (op, _) = lower_one(
            Operator::Pad,
            vec![
                act(&[1, 2, 2, 3], DataType::Int8, q),
                ints(&[4, 2], &[0, 0, 1, 1, 2, 0, 0, 0]),
            ],
            act(&[1, 4, 4, 3], DataType::Int8, q),
        )
        .unwrap();
        let p = params(&op);
        assert_eq!(op.inputs, vec![Some(0)]);
        assert_eq!(&p.before[..4], &[0, 1, 2, 0]);
        assert_eq!(&p.after[..4], &[0, 1, 0, 0]);
        assert_eq!(p.pad_value, 0xf9);
    }

    #[test]
    fn padv2_float_value_and_int64_paddings() {
        let value = Tensor {
            name: String::new(),
            shape: vec![],
            dtype: DataType::Float32,
            quant: None,
            data: Some(2.5f32.to_le_bytes().to_vec()),
        };
        let paddings = Tensor {
            name: String::new(),
            shape: vec![2, 2],
            dtype: DataType::Int64,
            quant: None,
            data: Some(bytemuck::cast_slice(&[1i64, 0, 0, 3]).to_vec()),
        };
        let (op, _) = lower_one(
            Operator::Pad,
            vec![act(&[2, 2], DataType::Float32, None), paddings, value],
            act(&[3, 5], DataType::Float32, None),
        )
        .unwrap();
        let p = params(&op);
        assert_eq!((p.before[0], p.after[1]), (1, 3));
        assert_eq!(p.pad_value, 2.5f32.to_bits());
    }

    #[test]
    fn refuses_mismatches() {
        // Output dims inconsistent with the paddings.
        assert!(lower_one(
            Operator::Pad,
            vec![
                act(&[2, 2], DataType::Float32, None),
                ints(&[2, 2], &[1, 1, 1, 1])
            ],
            act(&[4, 5], DataType::Float32, None),
        )
        .is_err());
        // Requantizing pad.
        assert!(lower_one(
            Operator::Pad,
            vec![
                act(&[2, 2], DataType::Int8, Some((0.1, 0))),
                ints(&[2, 2], &[1, 1, 1, 1])
            ],
            act(&[4, 4], DataType::Int8, Some((0.2, 0))),
        )
        .is_err());
        // PADV2 int8 value with another zero point.
        let value = Tensor {
            name: String::new(),
            shape: vec![1],
            dtype: DataType::Int8,
            quant: Some(Quantization::per_tensor(0.1, 5)),
            data: Some(vec![3]),
        };
        assert!(lower_one(
            Operator::Pad,
            vec![
                act(&[2, 2], DataType::Int8, Some((0.1, 0))),
                ints(&[2, 2], &[1, 1, 1, 1]),
                value
            ],
            act(&[4, 4], DataType::Int8, Some((0.1, 0))),
        )
        .is_err());
        // Negative padding.
        assert!(lower_one(
            Operator::Pad,
            vec![
                act(&[3, 2], DataType::Float32, None),
                ints(&[2, 2], &[-1, 0, 0, 0])
            ],
            act(&[2, 2], DataType::Float32, None),
        )
        .is_err());
    }
}
