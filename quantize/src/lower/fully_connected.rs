//! Lowering of FULLY_CONNECTED (int8) to `mote_runtime::ops::fully_connected`.
//!
//! Parameters are computed as TFLM's `fully_connected_common.cc` (`CalculateOpDataFullyConnected`)
//! does:
//! - per-tensor weights: `QuantizeMultiplier(double(float(input_scale · weight_scale)) /
//!   double(output_scale))` — the product is taken in single precision, as in TFLM's
//!   `GetQuantizedConvolutionMultipler` — with the weight zero point applied as `filter_offset`;
//!   with a bias, TFLM refuses the model unless `|input_scale·weight_scale − bias_scale| /
//!   output_scale ≤ 0.02` (in double), and so does this lowering.
//! - per-channel weights (one scale per output row, axis 0, zero points 0): `double(input_scale) ·
//!   double(weight_scale[c]) / double(output_scale)` per row; the weight zero point is not
//!   applied (TFLM's `FullyConnectedPerChannel` ignores it). The golden fixtures confirm that the
//!   reference TFLM flattens the output to `[batches, out]` here too, for outputs of any rank.
//!
//! The input (any rank) is read as `[batches, in]` with `batches = output elements / out`;
//! `keep_num_dims` only changes the output's shape, which comes from the output tensor.

use mote_runtime::ops::conv::LAYOUT_REFERENCE;
use mote_runtime::ops::fully_connected::FullyConnectedParams;
use mote_runtime::OpKind;

use super::conv::{
    channel_multipliers, checked_multiplier, cost, int8_activation, int8_activation_range,
    optional_bias, pack_matrix, weight_quant, WeightQuant,
};
use super::{LowerCtx, LoweredOp};
use crate::error::CompileError;
use crate::ir::{Node, Operator};

/// Lowers a FULLY_CONNECTED node (int8 activations, int8 weights per tensor or per output row,
/// int32 bias).
pub fn lower(ctx: &mut LowerCtx, node: &Node) -> Result<LoweredOp, CompileError> {
    let Operator::FullyConnected { activation, .. } = &node.op else {
        return Err(ctx.invalid(node, "not a FULLY_CONNECTED node"));
    };
    if !(2..=3).contains(&node.inputs.len()) || node.outputs.len() != 1 {
        return Err(ctx.invalid(node, "expects 2 or 3 inputs and 1 output"));
    }
    let input = ctx.input(node, 0)?;
    let weights = ctx.input(node, 1)?;
    let output = ctx.output(node, 0)?;
    let (in_scale, in_zp) = int8_activation(ctx, node, input, "the input")?;
    let (out_scale, out_zp) = int8_activation(ctx, node, output, "the output")?;
    let w_shape = ctx.tensor(weights).shape.clone();
    let [out_n, in_n] = <[usize; 2]>::try_from(w_shape.as_slice()).map_err(|_| {
        ctx.unsupported(
            node,
            format!("weights have shape {w_shape:?}, expected [out, in]"),
        )
    })?;
    if out_n == 0 || in_n == 0 {
        return Err(ctx.invalid(node, format!("weights have shape {w_shape:?}")));
    }
    let out_shape = ctx.tensor(output).shape.clone();
    if out_shape.last() != Some(&out_n) {
        return Err(ctx.invalid(
            node,
            format!("output shape {out_shape:?} does not end with the weights' {out_n} rows"),
        ));
    }
    let batches = ctx.tensor(output).elements() / out_n;
    let in_elems = ctx.tensor(input).elements();
    if in_elems != batches * in_n {
        return Err(ctx.invalid(
            node,
            format!(
                "input has {in_elems} elements, expected {batches} batches × {in_n} (weights {w_shape:?}, output {out_shape:?})"
            ),
        ));
    }
    let bias = optional_bias(ctx, node, out_n)?;
    let (act_min, act_max) = int8_activation_range(ctx, node, *activation, out_scale, out_zp)?;

    let (filter_offset, multipliers, shifts) =
        match weight_quant(ctx, node, weights, out_n, 0, false)? {
            WeightQuant::PerTensor { scale, zero_point } => {
                if let Some(b) = bias {
                    // TFLM's GetQuantizedConvolutionMultipler check, in double precision.
                    let bias_scale = ctx.tensor(b).quant.as_ref().map_or(0.0, |q| q.scale());
                    let product = f64::from(in_scale) * f64::from(scale);
                    let diff = (product - f64::from(bias_scale)).abs();
                    let ratio = diff / f64::from(out_scale);
                    if ratio.is_nan() || ratio > 0.02 {
                        return Err(ctx.unsupported(
                            node,
                            format!(
                                "bias scale {bias_scale} differs from input scale × weight scale \
                             {product} (TFLM refuses this model)"
                            ),
                        ));
                    }
                }
                // TFLM multiplies the two scales in float before widening to double.
                let real = f64::from(in_scale * scale) / f64::from(out_scale);
                let (m, s) = checked_multiplier(ctx, node, real)?;
                (-zero_point, vec![m], vec![s])
            }
            WeightQuant::PerChannel(scales) => {
                let (m, s) = channel_multipliers(ctx, node, in_scale, &scales, out_scale)?;
                (0, m, s)
            }
        };
    let multipliers_offset = ctx.add_i32s(&multipliers)?;
    let shifts_offset = ctx.add_i32s(&shifts)?;
    let (layout, packed_offset, folded_bias_offset) = if filter_offset == 0 {
        pack_matrix(ctx, node, weights, bias, None, -in_zp)?
    } else {
        // Asymmetric weights run the reference kernel.
        (LAYOUT_REFERENCE, 0, 0)
    };
    let p = FullyConnectedParams {
        input_offset: -in_zp,
        filter_offset,
        output_offset: out_zp,
        act_min,
        act_max,
        multipliers_offset,
        shifts_offset,
        channel_count: multipliers.len() as u32,
        layout,
        packed_offset,
        folded_bias_offset,
    };
    let macs = (batches as u64) * (out_n as u64) * (in_n as u64);
    let mut reads = vec![input, weights];
    reads.extend(bias);
    let cost = cost(ctx, macs, &reads, multipliers.len(), output);
    Ok(LoweredOp {
        kind: OpKind::FullyConnected,
        inputs: vec![Some(input), Some(weights), bias],
        outputs: vec![output],
        params: bytemuck::bytes_of(&p).to_vec(),
        scratch_bytes: 0,
        cost,
    })
}

#[cfg(test)]
mod tests {
    use super::super::conv::tests::{
        act, bias, lower_in, pool_i32s, reference_multiplier, weights,
    };
    use super::*;
    use crate::ir::{Activation, DataType, Graph, Quantization, Tensor};

    fn graph(input: Tensor, w: Tensor, output: Tensor, b: Option<Tensor>) -> (Graph, Node) {
        let mut g = Graph::default();
        let has_bias = b.is_some();
        g.tensors.extend([input, w, output]);
        g.tensors.extend(b);
        let node = Node {
            op: Operator::FullyConnected {
                activation: Activation::Relu,
                keep_num_dims: false,
            },
            inputs: vec![Some(0), Some(1), has_bias.then_some(3)],
            outputs: vec![2],
        };
        (g, node)
    }

    fn quantized_bias(n: usize, scale: f32) -> Tensor {
        Tensor {
            quant: Some(Quantization::per_tensor(scale, 0)),
            ..bias(n)
        }
    }

    fn params_of(op: &LoweredOp) -> FullyConnectedParams {
        *bytemuck::from_bytes(&op.params)
    }

    #[test]
    fn per_tensor_with_weight_zero_point_and_float_product() {
        let (si, sw, so) = (0.0235f32, 0.00731f32, 0.1377f32);
        let mut w = weights(&[10, 64], &[sw], 0);
        w.quant.as_mut().unwrap().zero_points = vec![-3];
        let (mut g, node) = graph(
            act(&[1, 1, 1, 64], si, -128),
            w,
            act(&[1, 10], so, -20),
            Some(quantized_bias(10, si * sw)),
        );
        let (op, pool) = lower_in(&mut g, &node).unwrap();
        let p = params_of(&op);
        assert_eq!(op.kind, OpKind::FullyConnected);
        assert_eq!(
            (p.input_offset, p.filter_offset, p.output_offset),
            (128, 3, -20)
        );
        assert_eq!((p.act_min, p.act_max), (-20, 127));
        assert_eq!(p.channel_count, 1);
        let real = f64::from(si * sw) / f64::from(so);
        assert_eq!(
            (
                pool_i32s(&pool, p.multipliers_offset, 1)[0],
                pool_i32s(&pool, p.shifts_offset, 1)[0]
            ),
            reference_multiplier(real)
        );
        assert_eq!(op.cost.macs, 640);
        assert_eq!(op.cost.const_bytes_read, 640 + 40 + 8);
        assert_eq!(op.cost.arena_bytes_read, 64);
        assert_eq!(op.cost.arena_bytes_written, 10);
    }

    #[test]
    fn float_product_differs_from_double_product_somewhere() {
        // The single-precision product matters: find scales where the two recipes disagree and
        // check that the lowering follows TFLM's float product.
        let mut found = false;
        for i in 1..2000 {
            let si = 0.001f32 * i as f32 + 0.0001;
            let (sw, so) = (0.003_141_592f32, 0.070_71f32);
            let float_way = reference_multiplier(f64::from(si * sw) / f64::from(so));
            let double_way = reference_multiplier(f64::from(si) * f64::from(sw) / f64::from(so));
            if float_way == double_way {
                continue;
            }
            found = true;
            let (mut g, node) = graph(
                act(&[2, 8], si, 0),
                weights(&[3, 8], &[sw], 0),
                act(&[2, 3], so, 0),
                None,
            );
            let (op, pool) = lower_in(&mut g, &node).unwrap();
            let p = params_of(&op);
            assert_eq!(pool_i32s(&pool, p.multipliers_offset, 1)[0], float_way.0);
            break;
        }
        assert!(found, "no scales where float and double products differ");
    }

    #[test]
    fn per_channel_rows() {
        let scales: Vec<f32> = (1..=5).map(|i| 0.001 * i as f32).collect();
        let (mut g, node) = graph(
            act(&[3, 4], 0.5, 1),
            weights(&[5, 4], &scales, 0),
            act(&[3, 5], 0.25, 0),
            Some(bias(5)),
        );
        let (op, pool) = lower_in(&mut g, &node).unwrap();
        let p = params_of(&op);
        assert_eq!((p.filter_offset, p.channel_count), (0, 5));
        let m = pool_i32s(&pool, p.multipliers_offset, 5);
        let s = pool_i32s(&pool, p.shifts_offset, 5);
        for c in 0..5 {
            let real = f64::from(0.5f32) * f64::from(scales[c]) / f64::from(0.25f32);
            assert_eq!((m[c], s[c]), reference_multiplier(real));
        }
        assert_eq!(op.cost.macs, 60);
    }

    #[test]
    fn keep_num_dims_output() {
        let (mut g, mut node) = graph(
            act(&[2, 3, 4], 0.5, 1),
            weights(&[5, 4], &[0.01], 0),
            act(&[2, 3, 5], 0.25, 0),
            None,
        );
        node.op = Operator::FullyConnected {
            activation: Activation::None,
            keep_num_dims: true,
        };
        let (op, _) = lower_in(&mut g, &node).unwrap();
        assert_eq!(op.cost.macs, 6 * 5 * 4);
        assert_eq!(op.inputs, vec![Some(0), Some(1), None]);
    }

    #[test]
    fn refusals_name_the_variant() {
        let base = || {
            graph(
                act(&[1, 4], 0.5, 0),
                weights(&[3, 4], &[0.1, 0.2, 0.3], 0),
                act(&[1, 3], 0.25, 0),
                Some(bias(3)),
            )
        };
        let err = |(mut g, n): (Graph, Node)| lower_in(&mut g, &n).unwrap_err().to_string();
        let (mut g, n) = base();
        assert!(lower_in(&mut g, &n).is_ok());

        // Per-tensor with a bias whose scale is far from input × weight scale.
        let (mut g, n) = base();
        g.tensors[1].quant = Some(Quantization::per_tensor(0.1, 0));
        g.tensors[3] = quantized_bias(3, 1.0);
        assert!(err((g, n)).contains("TFLM refuses"));

        // Per-channel weights with a rank-3 output are fine.
        let (mut g, n) = base();
        g.tensors[2].shape = vec![1, 1, 3];
        assert!(lower_in(&mut g, &n).is_ok());

        let (mut g, n) = base();
        g.tensors[1].quant.as_mut().unwrap().axis = 1;
        g.tensors[1].shape = vec![3, 3];
        g.tensors[0].shape = vec![1, 3];
        assert!(err((g, n)).contains("axis 1"));

        let (mut g, n) = base();
        g.tensors[1].dtype = DataType::Other("int4");
        assert!(err((g, n)).contains("int4"));

        let (mut g, n) = base();
        g.tensors[0].shape = vec![1, 5];
        assert!(err((g, n)).contains("input has 5 elements"));

        let (mut g, n) = base();
        g.tensors[2].shape = vec![1, 4];
        assert!(err((g, n)).contains("does not end with"));

        let (mut g, n) = base();
        g.tensors[1].shape = vec![3, 2, 2];
        assert!(err((g, n)).contains("expected [out, in]"));

        let (mut g, n) = base();
        g.tensors[1].quant.as_mut().unwrap().zero_points = vec![0, 2, 0];
        assert!(err((g, n)).contains("non-zero zero points"));
    }
}
