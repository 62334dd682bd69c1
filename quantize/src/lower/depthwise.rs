//! Lowering of DEPTHWISE_CONV_2D (int8) to `mote_runtime::ops::depthwise`.
//!
//! Parameters are computed as TFLM's `depthwise_conv_common.cc` does (the same recipe as CONV_2D,
//! see [`super::conv`]), with one multiplier per output channel `c·M + m`. The filter is
//! `1×H×W×(C·M)`; its scales may be per tensor (broadcast) or one per output channel along
//! `quantized_dimension` 3 (or 0 in older files, where dimension 0 has size 1). Anything else is
//! refused by name.

use mote_runtime::ops::depthwise::DepthwiseParams;
use mote_runtime::OpKind;

use super::conv::{
    channel_multipliers, cost, int8_activation, int8_activation_range, optional_bias, shape4,
    weight_quant, window_padding, WeightQuant,
};
use super::{LowerCtx, LoweredOp};
use crate::error::CompileError;
use crate::ir::{Node, Operator};

/// Lowers a DEPTHWISE_CONV_2D node (int8 activations, int8 weights, int32 bias, any depth multiplier).
pub fn lower(ctx: &mut LowerCtx, node: &Node) -> Result<LoweredOp, CompileError> {
    let Operator::DepthwiseConv2d(o) = &node.op else {
        return Err(ctx.invalid(node, "not a DEPTHWISE_CONV_2D node"));
    };
    if !(2..=3).contains(&node.inputs.len()) || node.outputs.len() != 1 {
        return Err(ctx.invalid(node, "expects 2 or 3 inputs and 1 output"));
    }
    let input = ctx.input(node, 0)?;
    let filter = ctx.input(node, 1)?;
    let output = ctx.output(node, 0)?;
    let (in_scale, in_zp) = int8_activation(ctx, node, input, "the input")?;
    let (out_scale, out_zp) = int8_activation(ctx, node, output, "the output")?;
    let [batches, in_h, in_w, in_c] = shape4(ctx, node, input, "the input")?;
    let [f_one, f_h, f_w, out_c] = shape4(ctx, node, filter, "the filter")?;
    let [o_batches, out_h, out_w, o_c] = shape4(ctx, node, output, "the output")?;
    if f_one != 1 {
        return Err(ctx.unsupported(
            node,
            format!("filter dimension 0 is {f_one} (a depthwise filter is 1×H×W×(C·M))"),
        ));
    }
    if batches != o_batches || out_c != o_c {
        return Err(ctx.invalid(
            node,
            format!(
                "input batch {batches} / filter channels {out_c} do not match the output \
                 {o_batches}×…×{o_c}"
            ),
        ));
    }
    if in_c == 0 || out_c % in_c != 0 {
        return Err(ctx.unsupported(
            node,
            format!("filter channels {out_c} are not a multiple of input channels {in_c}"),
        ));
    }
    let m = out_c / in_c;
    if o.depth_multiplier != m {
        return Err(ctx.unsupported(
            node,
            format!(
                "depth_multiplier option {} does not match the filter ({out_c} channels for \
                 {in_c} input channels; TFLM's kernel needs them consistent)",
                o.depth_multiplier
            ),
        ));
    }
    let scales = match weight_quant(ctx, node, filter, out_c, 3, true)? {
        WeightQuant::PerChannel(s) => s,
        WeightQuant::PerTensor { scale, zero_point } => {
            if zero_point != 0 {
                return Err(ctx.unsupported(
                    node,
                    format!(
                        "weights with zero point {zero_point} (TFLM's int8 depthwise convolution \
                         assumes symmetric weights)"
                    ),
                ));
            }
            vec![scale; out_c]
        }
    };
    let bias = optional_bias(ctx, node, out_c)?;
    let (pad_h, pad_w) = window_padding(ctx, node, o, [in_h, in_w, f_h, f_w, out_h, out_w])?;
    let (act_min, act_max) = int8_activation_range(ctx, node, o.activation, out_scale, out_zp)?;
    let (multipliers, shifts) = channel_multipliers(ctx, node, in_scale, &scales, out_scale)?;
    let multipliers_offset = ctx.add_i32s(&multipliers)?;
    let shifts_offset = ctx.add_i32s(&shifts)?;
    let u32_of = |v: usize, what: &str| {
        u32::try_from(v).map_err(|_| ctx.unsupported(node, format!("{what} {v} exceeds u32")))
    };
    let p = DepthwiseParams {
        stride_h: u32_of(o.stride_h, "stride")?,
        stride_w: u32_of(o.stride_w, "stride")?,
        dilation_h: u32_of(o.dilation_h, "dilation")?,
        dilation_w: u32_of(o.dilation_w, "dilation")?,
        pad_h,
        pad_w,
        input_offset: -in_zp,
        output_offset: out_zp,
        act_min,
        act_max,
        multipliers_offset,
        shifts_offset,
        channel_count: u32_of(out_c, "output channels")?,
        depth_multiplier: u32_of(m, "depth multiplier")?,
    };
    let macs = (ctx.tensor(output).elements() as u64) * (f_h * f_w) as u64;
    let mut reads = vec![input, filter];
    reads.extend(bias);
    let cost = cost(ctx, macs, &reads, out_c, output);
    Ok(LoweredOp {
        kind: OpKind::DepthwiseConv2d,
        inputs: vec![Some(input), Some(filter), bias],
        outputs: vec![output],
        params: bytemuck::bytes_of(&p).to_vec(),
        scratch_bytes: 0,
        cost,
    })
}

#[cfg(test)]
mod tests {
    use super::super::conv::tests::{
        act, bias, lower_in, opts, pool_i32s, reference_multiplier, weights,
    };
    use super::*;
    use crate::ir::{Activation, DataType, Graph, Padding, Quantization, Tensor};

    fn graph(
        input: Tensor,
        filter: Tensor,
        output: Tensor,
        mut o: crate::ir::Conv2dOptions,
    ) -> (Graph, Node) {
        let out_c = filter.shape[3];
        o.depth_multiplier = out_c / input.shape[3];
        let mut g = Graph::default();
        g.tensors.extend([input, filter, output, bias(out_c)]);
        let node = Node {
            op: Operator::DepthwiseConv2d(o),
            inputs: vec![Some(0), Some(1), Some(3)],
            outputs: vec![2],
        };
        (g, node)
    }

    fn params_of(op: &LoweredOp) -> DepthwiseParams {
        *bytemuck::from_bytes(&op.params)
    }

    #[test]
    fn per_channel_axis_3_multiplier_2() {
        let scales: Vec<f32> = (1..=6).map(|i| i as f32 * 0.003).collect();
        let (mut g, node) = graph(
            act(&[1, 8, 8, 3], 0.02, 5),
            weights(&[1, 3, 3, 6], &scales, 3),
            act(&[1, 4, 4, 6], 0.04, -2),
            opts(Padding::Same, 2, 1, Activation::ReluN1To1),
        );
        let (op, pool) = lower_in(&mut g, &node).unwrap();
        let p = params_of(&op);
        assert_eq!(op.kind, OpKind::DepthwiseConv2d);
        assert_eq!(p.depth_multiplier, 2);
        assert_eq!(p.channel_count, 6);
        // SAME, stride 2: out 4, total pad 3·2+3−8 = 1 → 0.
        assert_eq!((p.pad_h, p.pad_w), (0, 0));
        assert_eq!((p.input_offset, p.output_offset), (-5, -2));
        // RELU_N1_TO_1: −2 + round(∓1/0.04) = −2 ∓ 25.
        assert_eq!((p.act_min, p.act_max), (-27, 23));
        let m = pool_i32s(&pool, p.multipliers_offset, 6);
        let s = pool_i32s(&pool, p.shifts_offset, 6);
        for c in 0..6 {
            let real = f64::from(0.02f32) * f64::from(scales[c]) / f64::from(0.04f32);
            assert_eq!((m[c], s[c]), reference_multiplier(real), "channel {c}");
        }
        assert_eq!(op.cost.macs, 4 * 4 * 6 * 9);
        assert_eq!(op.cost.const_bytes_read, 54 + 24 + 48);
    }

    #[test]
    fn per_tensor_and_old_axis_0_layouts() {
        // Per-tensor: broadcast to every channel.
        let (mut g, node) = graph(
            act(&[1, 5, 5, 4], 0.5, 0),
            weights(&[1, 3, 3, 4], &[0.25], 0),
            act(&[1, 3, 3, 4], 0.125, 0),
            opts(Padding::Valid, 1, 1, Activation::None),
        );
        let (op, pool) = lower_in(&mut g, &node).unwrap();
        let p = params_of(&op);
        assert_eq!(pool_i32s(&pool, p.multipliers_offset, 4), vec![1 << 30; 4]);
        assert_eq!(pool_i32s(&pool, p.shifts_offset, 4), vec![1; 4]);
        // One scale per output channel declared along axis 0 (of size 1): per output channel.
        let scales = [0.1f32, 0.2, 0.3, 0.4];
        let (mut g, node) = graph(
            act(&[1, 5, 5, 4], 0.5, 0),
            weights(&[1, 3, 3, 4], &scales, 0),
            act(&[1, 3, 3, 4], 0.125, 0),
            opts(Padding::Valid, 1, 1, Activation::None),
        );
        let (op, pool) = lower_in(&mut g, &node).unwrap();
        let p = params_of(&op);
        let m = pool_i32s(&pool, p.multipliers_offset, 4);
        for c in 0..4 {
            let real = f64::from(0.5f32) * f64::from(scales[c]) / f64::from(0.125f32);
            assert_eq!(m[c], reference_multiplier(real).0);
        }
    }

    #[test]
    fn refusals_name_the_variant() {
        let base = || {
            graph(
                act(&[1, 5, 5, 2], 0.5, 0),
                weights(&[1, 3, 3, 4], &[0.1, 0.2, 0.3, 0.4], 3),
                act(&[1, 3, 3, 4], 0.125, 0),
                opts(Padding::Valid, 1, 1, Activation::None),
            )
        };
        let err = |(mut g, n): (Graph, Node)| lower_in(&mut g, &n).unwrap_err().to_string();
        let (mut g, n) = base();
        assert!(lower_in(&mut g, &n).is_ok());

        let (mut g, mut n) = base();
        n.op = Operator::DepthwiseConv2d(crate::ir::Conv2dOptions {
            depth_multiplier: 1,
            ..opts(Padding::Valid, 1, 1, Activation::None)
        });
        g.tensors[0].dtype = DataType::Int8;
        assert!(err((g, n)).contains("depth_multiplier option 1"));

        // Per-row scales (axis 1) do not mean one per output channel.
        let (mut g, n) = base();
        g.tensors[1].quant = Some(Quantization {
            scales: vec![0.1; 3],
            zero_points: vec![0; 3],
            axis: 1,
        });
        assert!(err((g, n)).contains("axis 1"));

        let (mut g, n) = base();
        g.tensors[1].shape = vec![2, 3, 3, 4];
        assert!(err((g, n)).contains("dimension 0 is 2"));

        let (mut g, n) = base();
        g.tensors[1].quant = Some(Quantization::per_tensor(0.1, -4));
        assert!(err((g, n)).contains("zero point -4"));

        let (mut g, n) = base();
        g.tensors[2].dtype = DataType::UInt8;
        assert!(err((g, n)).contains("uint8"));

        let (mut g, n) = base();
        g.tensors[0].shape = vec![1, 5, 5, 3];
        assert!(err((g, n)).contains("not a multiple"));
    }
}
