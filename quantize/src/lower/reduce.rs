//! Lowering of MEAN (int8, int16, float32) to `mote_runtime::ops::reduce`.
//!
//! The axes come from the constant int32 second input (TFLM requires int32); negative axes are
//! normalised and duplicates dropped as TFLM's `ResolveAxis` does. For integer types the
//! multiplier is computed as TFLM's `PrepareMeanOrSumHelper` (`QuantizeMultiplier(in_scale /
//! out_scale)` in double precision) and `1/count` is folded in as `QuantizedMeanOrSum` does at
//! run time: `shift = min(floor(log2 count), 32, 31 + S)`, `M' = (M << shift) / count`,
//! `S' = S − shift`. Current TFLM takes this path for every int8/int16 MEAN, whether or not
//! the input and output quantization differ.

use mote_runtime::format::{OpCost, MAX_RANK};
use mote_runtime::ops::reduce::MeanParams;
use mote_runtime::OpKind;

use super::quant_math::quantize_multiplier;
use super::shape::{const_ints, per_tensor, read_bytes, sat32};
use super::{LowerCtx, LoweredOp};
use crate::error::CompileError;
use crate::ir::{DataType, Node, Operator};

/// Folds `1/count` into the multiplier `(m, s)` exactly as TFLM's `QuantizedMeanOrSum` does.
pub fn fold_count(m: i32, s: i32, count: u64) -> (i32, i32) {
    if count == 0 {
        return (m, s);
    }
    let shift = (63 - count.leading_zeros() as i32)
        .min(32)
        .min(31 + s)
        .max(0);
    let folded = ((i64::from(m) << shift) / count as i64) as i32;
    (folded, s - shift)
}

/// Lowers a MEAN node.
pub fn lower(ctx: &mut LowerCtx, node: &Node) -> Result<LoweredOp, CompileError> {
    if !matches!(node.op, Operator::Mean { .. }) {
        return Err(ctx.invalid(node, "not a MEAN node"));
    }
    if node.inputs.len() != 2 || node.outputs.len() != 1 {
        return Err(ctx.invalid(node, "expects 2 inputs (data, axes) and 1 output"));
    }
    let input = ctx.input(node, 0)?;
    let axes_id = ctx.input(node, 1)?;
    let output = ctx.output(node, 0)?;
    let (it, ot) = (ctx.tensor(input).clone(), ctx.tensor(output).clone());
    if !matches!(
        it.dtype,
        DataType::Int8 | DataType::Int16 | DataType::Float32
    ) {
        return Err(ctx.unsupported(
            node,
            format!("{} input (int8, int16 and float32 are supported)", it.dtype),
        ));
    }
    if ot.dtype != it.dtype {
        return Err(ctx.invalid(
            node,
            format!("input is {} but output is {}", it.dtype, ot.dtype),
        ));
    }
    let rank = it.shape.len();
    if rank > MAX_RANK {
        return Err(ctx.unsupported(node, format!("rank {rank} input (at most {MAX_RANK})")));
    }
    let axes = const_ints(ctx, node, axes_id, "the axes input", false)?;
    let mut mask = 0u32;
    for &a in &axes {
        let r = rank as i64;
        let k = if a < 0 { a + r } else { a };
        if !(0..r).contains(&k) {
            return Err(ctx.invalid(node, format!("axis {a} is out of range for rank {rank}")));
        }
        mask |= 1 << k;
    }
    let count: u64 = (0..rank)
        .filter(|k| mask & (1 << k) != 0)
        .map(|k| it.shape[k] as u64)
        .product();
    let kept: u64 = (0..rank)
        .filter(|k| mask & (1 << k) == 0)
        .map(|k| it.shape[k] as u64)
        .product();
    if kept != ot.elements() as u64 {
        return Err(ctx.invalid(
            node,
            format!(
                "output shape {:?} does not hold the {kept} means of input {:?} over axes {axes:?}",
                ot.shape, it.shape
            ),
        ));
    }
    let count32 = u32::try_from(count)
        .map_err(|_| ctx.unsupported(node, "more than 2^32 elements per mean"))?;

    let mut p = MeanParams {
        axes_mask: mask,
        count: count32,
        input_zero_point: 0,
        output_zero_point: 0,
        multiplier: 0,
        shift: 0,
    };
    if it.dtype != DataType::Float32 {
        let (in_scale, in_zp) = per_tensor(ctx, node, input, "the input")?;
        let (out_scale, out_zp) = per_tensor(ctx, node, output, "the output")?;
        let (m, s) = quantize_multiplier(f64::from(in_scale) / f64::from(out_scale));
        let (m, s) = fold_count(m, s, count);
        if !(-31..=31).contains(&s) {
            return Err(ctx.unsupported(
                node,
                format!(
                    "input/output scale ratio {} is out of range",
                    in_scale / out_scale
                ),
            ));
        }
        p.input_zero_point = in_zp;
        p.output_zero_point = out_zp;
        p.multiplier = m;
        p.shift = s;
    }

    let (const_bytes_read, arena_bytes_read) = read_bytes(ctx, &[input]);
    Ok(LoweredOp {
        kind: OpKind::Mean,
        inputs: vec![Some(input)],
        outputs: vec![output],
        params: bytemuck::bytes_of(&p).to_vec(),
        scratch_bytes: 0,
        cost: OpCost {
            macs: (it.elements() + ot.elements()) as u64,
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

    fn mean(keep_dims: bool) -> Operator {
        Operator::Mean { keep_dims }
    }

    fn params(op: &LoweredOp) -> MeanParams {
        *bytemuck::from_bytes(&op.params)
    }

    #[test]
    fn keep_dims_both_ways() {
        let q = Some((0.5, 0));
        for (keep, out) in [(true, vec![1, 1, 1, 3]), (false, vec![1, 3])] {
            let (op, _) = lower_one(
                mean(keep),
                vec![act(&[1, 4, 4, 3], DataType::Int8, q), ints(&[2], &[1, 2])],
                act(&out, DataType::Int8, q),
            )
            .unwrap();
            let p = params(&op);
            assert_eq!(op.inputs, vec![Some(0)]);
            assert_eq!((p.axes_mask, p.count), (0b0110, 16));
            // Scale ratio 1 = (2^30, 1); count 16: shift 4 → (2^30 · 16 / 16, 1 − 4).
            assert_eq!((p.multiplier, p.shift), (1 << 30, -3));
        }
    }

    #[test]
    fn negative_and_duplicate_axes() {
        let (op, _) = lower_one(
            mean(false),
            vec![
                act(&[2, 3, 4, 5], DataType::Int8, Some((0.5, 3))),
                ints(&[3], &[1, 1, -3]),
            ],
            act(&[2, 4, 5], DataType::Int8, Some((0.3, 0))),
        )
        .unwrap();
        let p = params(&op);
        assert_eq!((p.axes_mask, p.count), (0b0010, 3));
        assert_eq!(p.input_zero_point, 3);
        // QuantizeMultiplier(0.5f32 / 0.3f32) = (1789569636, 1); count 3 → shift 1: (2·M / 3, 0).
        assert_eq!((p.multiplier, p.shift), (1_193_046_424, 0));
    }

    #[test]
    fn fold_matches_tflm_examples() {
        // 0.5f32 / 0.7f32 → (1533916918, 0); count 5 → (1227133534, -2).
        assert_eq!(fold_count(1_533_916_918, 0, 5), (1_227_133_534, -2));
        // count 24 with ratio 1.
        assert_eq!(fold_count(1 << 30, 1, 24), (715_827_882, -3));
        assert_eq!(fold_count(1 << 30, 1, 1), (1 << 30, 1));
    }

    #[test]
    fn refuses_bad_axes_and_shapes() {
        let q = Some((0.5, 0));
        assert!(lower_one(
            mean(false),
            vec![act(&[2, 3], DataType::Int8, q), ints(&[1], &[2])],
            act(&[2], DataType::Int8, q),
        )
        .is_err());
        assert!(lower_one(
            mean(false),
            vec![act(&[2, 3], DataType::Int8, q), ints(&[1], &[1])],
            act(&[3], DataType::Int8, q),
        )
        .is_err());
        assert!(lower_one(
            mean(false),
            vec![act(&[2, 3], DataType::UInt8, q), ints(&[1], &[1])],
            act(&[2], DataType::UInt8, q),
        )
        .is_err());
    }
}
