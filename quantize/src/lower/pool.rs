//! Lowering of AVERAGE_POOL_2D and MAX_POOL_2D (int8, int16, float32; NHWC) to
//! `mote_runtime::ops::pool`.
//!
//! Parameters are computed as TFLM's `PoolingPrepare` does: the output size and the top/left
//! padding from `ComputePaddingHeightWidth` (SAME: `out = ceil(in / stride)`, padding
//! `max(0, (out − 1)·stride + filter − in) / 2`; VALID: `out = (in − filter) / stride + 1`, no
//! padding), the clamp range from `CalculateActivationRangeQuantized` (integers) or
//! `CalculateActivationRange` (float). TFLM requires the output quantization to equal the
//! input's (scales within 1e-6, equal zero points); anything else is refused.

use mote_runtime::format::OpCost;
use mote_runtime::ops::pool::PoolParams;
use mote_runtime::OpKind;

use super::quant_math::activation_range_quantized;
use super::shape::{int_range, per_tensor, sat32};
use super::{LowerCtx, LoweredOp};
use crate::error::CompileError;
use crate::ir::{Activation, DataType, Node, Operator, Padding, Pool2dOptions};

/// TFLM's `ComputeOutSize` (dilation 1), or `None` when it is not positive.
fn out_size(padding: Padding, input: usize, filter: usize, stride: usize) -> Option<usize> {
    let (i, f, s) = (input as i64, filter as i64, stride as i64);
    let out = match padding {
        Padding::Same => (i + s - 1) / s,
        Padding::Valid => (i + s - f) / s,
    };
    usize::try_from(out).ok().filter(|&o| o > 0)
}

/// TFLM's `ComputePaddingWithOffset`: the padding before the input (the extra one goes after).
fn pad_before(stride: usize, input: usize, filter: usize, out: usize) -> usize {
    let total = (out as i64 - 1) * stride as i64 + filter as i64 - input as i64;
    (total.max(0) / 2) as usize
}

/// In-bounds element count of every window along one axis.
fn window_counts(out: usize, stride: usize, pad: usize, filter: usize, input: usize) -> Vec<usize> {
    (0..out)
        .map(|o| {
            let origin = o as i64 * stride as i64 - pad as i64;
            let start = (-origin).max(0);
            let end = (filter as i64).min(input as i64 - origin);
            (end - start).max(0) as usize
        })
        .collect()
}

/// Lowers an AVERAGE_POOL_2D or MAX_POOL_2D node.
pub fn lower(ctx: &mut LowerCtx, node: &Node) -> Result<LoweredOp, CompileError> {
    let (kind, o): (OpKind, Pool2dOptions) = match &node.op {
        Operator::AveragePool2d(o) => (OpKind::AveragePool2d, *o),
        Operator::MaxPool2d(o) => (OpKind::MaxPool2d, *o),
        _ => return Err(ctx.invalid(node, "not a pooling node")),
    };
    if node.inputs.len() != 1 || node.outputs.len() != 1 {
        return Err(ctx.invalid(node, "expects 1 input and 1 output"));
    }
    let input = ctx.input(node, 0)?;
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
    if it.shape.len() != 4 || ot.shape.len() != 4 {
        return Err(ctx.unsupported(node, "only 4-D NHWC tensors are supported"));
    }
    if o.stride_h == 0 || o.stride_w == 0 || o.filter_h == 0 || o.filter_w == 0 {
        return Err(ctx.invalid(node, "stride and filter sizes must be at least 1"));
    }
    let [batch, in_h, in_w, depth] = [it.shape[0], it.shape[1], it.shape[2], it.shape[3]];
    let (out_h, out_w) = match (
        out_size(o.padding, in_h, o.filter_h, o.stride_h),
        out_size(o.padding, in_w, o.filter_w, o.stride_w),
    ) {
        (Some(h), Some(w)) => (h, w),
        _ => {
            return Err(ctx.invalid(
                node,
                format!(
                    "a {}x{} window does not fit the {}x{} input",
                    o.filter_h, o.filter_w, in_h, in_w
                ),
            ))
        }
    };
    if ot.shape != [batch, out_h, out_w, depth] {
        return Err(ctx.invalid(
            node,
            format!(
                "output shape {:?} differs from the computed [{batch}, {out_h}, {out_w}, {depth}]",
                ot.shape
            ),
        ));
    }
    let pad_h = pad_before(o.stride_h, in_h, o.filter_h, out_h);
    let pad_w = pad_before(o.stride_w, in_w, o.filter_w, out_w);
    let counts_h = window_counts(out_h, o.stride_h, pad_h, o.filter_h, in_h);
    let counts_w = window_counts(out_w, o.stride_w, pad_w, o.filter_w, in_w);
    if counts_h.contains(&0) || counts_w.contains(&0) {
        return Err(ctx.unsupported(node, "a pooling window lies entirely in the padding"));
    }
    let geometry = [o.stride_h, o.stride_w, o.filter_h, o.filter_w, pad_h, pad_w];
    if geometry.iter().any(|&v| v > i32::MAX as usize) {
        return Err(ctx.unsupported(node, "stride, filter or padding above 2^31"));
    }

    let mut p = PoolParams {
        stride_h: o.stride_h as u32,
        stride_w: o.stride_w as u32,
        filter_h: o.filter_h as u32,
        filter_w: o.filter_w as u32,
        pad_h: pad_h as u32,
        pad_w: pad_w as u32,
        act_min: 0,
        act_max: 0,
        act_min_f: f32::MIN,
        act_max_f: f32::MAX,
    };
    if it.dtype == DataType::Float32 {
        // CalculateActivationRange<float>.
        (p.act_min_f, p.act_max_f) = match o.activation {
            Activation::None => (f32::MIN, f32::MAX),
            Activation::Relu => (0.0, f32::MAX),
            Activation::ReluN1To1 => (-1.0, 1.0),
            Activation::Relu6 => (0.0, 6.0),
            a => return Err(ctx.unsupported(node, format!("fused activation {a:?}"))),
        };
    } else {
        let (in_scale, in_zp) = per_tensor(ctx, node, input, "the input")?;
        let (out_scale, out_zp) = per_tensor(ctx, node, output, "the output")?;
        if (f64::from(in_scale) - f64::from(out_scale)).abs() > 1.0e-6 || in_zp != out_zp {
            return Err(ctx.unsupported(
                node,
                format!(
                    "output quantization (scale {out_scale}, zero point {out_zp}) differs from \
                     the input's (scale {in_scale}, zero point {in_zp}); TFLM requires them equal"
                ),
            ));
        }
        let (qmin, qmax) = int_range(it.dtype).unwrap_or((-128, 127));
        let (lo, hi) = activation_range_quantized(o.activation, out_scale, out_zp, qmin, qmax)
            .ok_or_else(|| ctx.unsupported(node, format!("fused activation {:?}", o.activation)))?;
        if lo > hi {
            return Err(ctx.unsupported(
                node,
                format!(
                    "fused activation {:?} leaves an empty output range",
                    o.activation
                ),
            ));
        }
        (p.act_min, p.act_max) = (lo, hi);
        if kind == OpKind::AveragePool2d {
            let window = o.filter_h.min(in_h) as u64 * o.filter_w.min(in_w) as u64;
            if window.saturating_mul((-qmin) as u64) > i32::MAX as u64 {
                return Err(ctx.unsupported(node, "window too large for TFLM's int32 sum"));
            }
        }
    }

    // Elementary operations: one add or compare per in-bounds window element.
    let window_elems: u64 = counts_h.iter().sum::<usize>() as u64
        * counts_w.iter().sum::<usize>() as u64
        * (batch * depth) as u64;
    let elem = it.dtype.size() as u64;
    let read = window_elems * elem;
    Ok(LoweredOp {
        kind,
        inputs: vec![Some(input)],
        outputs: vec![output],
        params: bytemuck::bytes_of(&p).to_vec(),
        scratch_bytes: 0,
        cost: OpCost {
            macs: window_elems,
            const_bytes_read: 0,
            arena_bytes_read: u32::try_from(read).unwrap_or(u32::MAX),
            arena_bytes_written: sat32(ot.bytes()),
            reserved: 0,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::shape::testing::*;
    use super::*;

    fn opts(
        padding: Padding,
        stride: usize,
        filter: usize,
        activation: Activation,
    ) -> Pool2dOptions {
        Pool2dOptions {
            padding,
            stride_h: stride,
            stride_w: stride,
            filter_h: filter,
            filter_w: filter,
            activation,
        }
    }

    fn params(op: &LoweredOp) -> PoolParams {
        *bytemuck::from_bytes(&op.params)
    }

    #[test]
    fn same_padding_even_input_stride_two() {
        // in 4, filter 3, stride 2, SAME: out 2, total pad (1·2 + 3 − 4) = 1 → before 0.
        let q = Some((0.5, -3));
        let (op, _) = lower_one(
            Operator::AveragePool2d(opts(Padding::Same, 2, 3, Activation::None)),
            vec![act(&[1, 4, 4, 2], DataType::Int8, q)],
            act(&[1, 2, 2, 2], DataType::Int8, q),
        )
        .unwrap();
        let p = params(&op);
        assert_eq!((p.pad_h, p.pad_w), (0, 0));
        assert_eq!((p.act_min, p.act_max), (-128, 127));
        // Windows: rows 0..3 (3) and 2..4 (2) → (3 + 2)² · 2 channels.
        assert_eq!(op.cost.macs, 50);
    }

    #[test]
    fn same_padding_odd_total_and_relu6() {
        // in 6, filter 3, stride 1, SAME: total pad 2 → 1 before.
        let q = Some((0.1, -10));
        let (op, _) = lower_one(
            Operator::MaxPool2d(opts(Padding::Same, 1, 3, Activation::Relu6)),
            vec![act(&[1, 6, 6, 8], DataType::Int8, q)],
            act(&[1, 6, 6, 8], DataType::Int8, q),
        )
        .unwrap();
        let p = params(&op);
        assert_eq!((p.pad_h, p.pad_w), (1, 1));
        // relu6 in scale 0.1 zp -10: [-10, -10 + 60].
        assert_eq!((p.act_min, p.act_max), (-10, 50));
    }

    #[test]
    fn refuses_requantizing_pool_and_bad_shapes() {
        assert!(lower_one(
            Operator::AveragePool2d(opts(Padding::Valid, 2, 2, Activation::None)),
            vec![act(&[1, 4, 4, 1], DataType::Int8, Some((0.5, 0)))],
            act(&[1, 2, 2, 1], DataType::Int8, Some((0.25, 0))),
        )
        .is_err());
        assert!(lower_one(
            Operator::AveragePool2d(opts(Padding::Valid, 2, 2, Activation::None)),
            vec![act(&[1, 4, 4, 1], DataType::Int8, Some((0.5, 0)))],
            act(&[1, 3, 3, 1], DataType::Int8, Some((0.5, 0))),
        )
        .is_err());
        assert!(lower_one(
            Operator::MaxPool2d(opts(Padding::Valid, 2, 2, Activation::Tanh)),
            vec![act(&[1, 4, 4, 1], DataType::Float32, None)],
            act(&[1, 2, 2, 1], DataType::Float32, None),
        )
        .is_err());
    }

    #[test]
    fn float_relu_range() {
        let (op, _) = lower_one(
            Operator::MaxPool2d(opts(Padding::Valid, 2, 2, Activation::Relu)),
            vec![act(&[1, 4, 4, 1], DataType::Float32, None)],
            act(&[1, 2, 2, 1], DataType::Float32, None),
        )
        .unwrap();
        let p = params(&op);
        assert_eq!((p.act_min_f, p.act_max_f), (0.0, f32::MAX));
    }
}
