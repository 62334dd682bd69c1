//! Lowering of QUANTIZE and DEQUANTIZE to `mote_runtime::ops::quantize`.
//!
//! As TFLM's `PrepareQuantizeReference` / `DequantizePrepare`:
//! - float32 → int8/int16: the output's per-tensor scale and zero point (the kernel divides by
//!   the scale in single precision and rounds half away from zero);
//! - int → int: `QuantizeMultiplier(input_scale / output_scale)` in double precision, with both
//!   zero points;
//! - int8/uint8/int16 → float32: the input's scale and zero point.
//!
//! Only the dtype pairs TFLM accepts are lowered (see
//! `mote_runtime::ops::quantize::quantize_supported`); others (float32 → uint8, uint8 → uint8,
//! ...) are refused.

use mote_runtime::format::OpCost;
use mote_runtime::ops::quantize::{dequantize_supported, quantize_supported, QuantizeParams};
use mote_runtime::{DType, OpKind};

use super::quant_math::quantize_multiplier;
use super::shape::{per_tensor, read_bytes, sat32};
use super::{LowerCtx, LoweredOp};
use crate::error::CompileError;
use crate::ir::{Node, Operator};

/// Lowers a QUANTIZE or DEQUANTIZE node.
pub fn lower(ctx: &mut LowerCtx, node: &Node) -> Result<LoweredOp, CompileError> {
    let kind = match node.op {
        Operator::Quantize => OpKind::Quantize,
        Operator::Dequantize => OpKind::Dequantize,
        _ => return Err(ctx.invalid(node, "not a QUANTIZE or DEQUANTIZE node")),
    };
    if node.inputs.len() != 1 || node.outputs.len() != 1 {
        return Err(ctx.invalid(node, "expects 1 input and 1 output"));
    }
    let input = ctx.input(node, 0)?;
    let output = ctx.output(node, 0)?;
    let (it, ot) = (ctx.tensor(input).clone(), ctx.tensor(output).clone());
    let pair = (it.dtype.to_runtime(), ot.dtype.to_runtime());
    let supported = match pair {
        (Some(from), Some(to)) if kind == OpKind::Quantize => quantize_supported(from, to),
        (Some(from), Some(to)) => dequantize_supported(from, to),
        _ => false,
    };
    let (Some(from), Some(_)) = pair else {
        return Err(ctx.unsupported(node, format!("{} → {}", it.dtype, ot.dtype)));
    };
    if !supported {
        return Err(ctx.unsupported(
            node,
            format!("{} → {} (TFLM does not implement it)", it.dtype, ot.dtype),
        ));
    }
    if it.elements() != ot.elements() {
        return Err(ctx.invalid(
            node,
            format!(
                "input {:?} and output {:?} differ in size",
                it.shape, ot.shape
            ),
        ));
    }
    let mut p = QuantizeParams {
        scale: 0.0,
        input_zero_point: 0,
        output_zero_point: 0,
        multiplier: 0,
        shift: 0,
    };
    if kind == OpKind::Dequantize {
        let (s, z) = per_tensor(ctx, node, input, "the input")?;
        p.scale = s;
        p.input_zero_point = z;
    } else if from == DType::Float32 {
        let (s, z) = per_tensor(ctx, node, output, "the output")?;
        p.scale = s;
        p.output_zero_point = z;
    } else {
        let (in_s, in_z) = per_tensor(ctx, node, input, "the input")?;
        let (out_s, out_z) = per_tensor(ctx, node, output, "the output")?;
        let (m, s) = quantize_multiplier(f64::from(in_s) / f64::from(out_s));
        if !(-31..=31).contains(&s) {
            return Err(ctx.unsupported(
                node,
                format!("input/output scale ratio {} is out of range", in_s / out_s),
            ));
        }
        p.input_zero_point = in_z;
        p.output_zero_point = out_z;
        p.multiplier = m;
        p.shift = s;
    }

    let (const_bytes_read, arena_bytes_read) = read_bytes(ctx, &[input]);
    Ok(LoweredOp {
        kind,
        inputs: vec![Some(input)],
        outputs: vec![output],
        params: bytemuck::bytes_of(&p).to_vec(),
        scratch_bytes: 0,
        cost: OpCost {
            macs: ot.elements() as u64,
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
    use crate::ir::DataType;

    fn params(op: &LoweredOp) -> QuantizeParams {
        *bytemuck::from_bytes(&op.params)
    }

    #[test]
    fn float_to_int8_and_back() {
        let (op, _) = lower_one(
            Operator::Quantize,
            vec![act(&[1, 4], DataType::Float32, None)],
            act(&[1, 4], DataType::Int8, Some((0.5, -5))),
        )
        .unwrap();
        let p = params(&op);
        assert_eq!((p.scale, p.output_zero_point), (0.5, -5));
        let (op, _) = lower_one(
            Operator::Dequantize,
            vec![act(&[1, 4], DataType::Int8, Some((0.1, 3)))],
            act(&[1, 4], DataType::Float32, None),
        )
        .unwrap();
        let p = params(&op);
        assert_eq!((p.scale, p.input_zero_point), (0.1, 3));
    }

    #[test]
    fn requantize_multiplier() {
        let (op, _) = lower_one(
            Operator::Quantize,
            vec![act(&[6], DataType::Int8, Some((0.5, 3)))],
            act(&[6], DataType::Int8, Some((0.3, -1))),
        )
        .unwrap();
        let p = params(&op);
        assert_eq!((p.multiplier, p.shift), (1_789_569_636, 1));
        assert_eq!((p.input_zero_point, p.output_zero_point), (3, -1));
        let (op, _) = lower_one(
            Operator::Quantize,
            vec![act(&[6], DataType::UInt8, Some((0.5, 128)))],
            act(&[6], DataType::Int8, Some((0.5, 0))),
        )
        .unwrap();
        assert_eq!((params(&op).multiplier, params(&op).shift), (1 << 30, 1));
    }

    #[test]
    fn refuses_pairs_tflm_lacks() {
        for (from, to) in [
            (DataType::Float32, DataType::UInt8),
            (DataType::UInt8, DataType::UInt8),
            (DataType::Int32, DataType::Int32),
            (DataType::Float32, DataType::Float32),
        ] {
            let q = |d: DataType| (d != DataType::Float32).then_some((0.5f32, 0i64));
            assert!(
                lower_one(
                    Operator::Quantize,
                    vec![act(&[2], from, q(from))],
                    act(&[2], to, q(to)),
                )
                .is_err(),
                "{from} → {to}"
            );
        }
        assert!(lower_one(
            Operator::Dequantize,
            vec![act(&[2], DataType::Int32, Some((0.5, 0)))],
            act(&[2], DataType::Float32, None),
        )
        .is_err());
    }
}
