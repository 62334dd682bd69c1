//! Lowering of the float32 operators (`mote_runtime::ops::float`, `ops::float_pointwise`):
//! CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED with float32 or float16 weights (the `f16`
//! scheme), ADD, SUB, MUL, SOFTMAX, LOGISTIC, TANH, RELU and RELU6 — whenever input 0 is
//! float32. Pooling, MEAN, RESHAPE, PAD, CONCATENATION, QUANTIZE and DEQUANTIZE lower float32
//! in their own families.
//!
//! Nothing is precomputed but the padding and the fused activation's clamp range (`±∞` for
//! none); weights and biases go to the constant section as they are.

use mote_runtime::ops::float::{FloatConvParams, FloatFcParams};
use mote_runtime::ops::float_pointwise::{FloatArithParams, FloatSoftmaxParams};
use mote_runtime::OpKind;

use super::conv::{cost, shape4, window_padding};
use super::{LowerCtx, LoweredOp};
use crate::error::CompileError;
use crate::ir::{Activation, DataType, Graph, Node, Operator, TensorId};

/// Lowers `node` if its input 0 is float32 and its operator has a float kernel; `None` for
/// anything else (the integer lowerings apply).
pub fn lower(ctx: &mut LowerCtx, node: &Node) -> Option<Result<LoweredOp, CompileError>> {
    let input = node.inputs.first().copied().flatten()?;
    if ctx.tensor(input).dtype != DataType::Float32 {
        return None;
    }
    Some(match &node.op {
        Operator::Conv2d(_) | Operator::DepthwiseConv2d(_) => lower_window(ctx, node),
        Operator::FullyConnected { .. } => lower_fc(ctx, node),
        Operator::Add { activation }
        | Operator::Sub { activation }
        | Operator::Mul { activation } => lower_arith(ctx, node, *activation),
        Operator::Softmax { beta } => lower_unary(
            ctx,
            node,
            bytemuck::bytes_of(&FloatSoftmaxParams { beta: *beta }).to_vec(),
        ),
        Operator::Logistic | Operator::Tanh | Operator::Relu | Operator::Relu6 => {
            lower_unary(ctx, node, Vec::new())
        }
        _ => return None,
    })
}

/// The runtime kind of a node this module lowers.
fn kind(op: &Operator) -> OpKind {
    match op {
        Operator::Conv2d(_) => OpKind::Conv2d,
        Operator::DepthwiseConv2d(_) => OpKind::DepthwiseConv2d,
        Operator::FullyConnected { .. } => OpKind::FullyConnected,
        Operator::Add { .. } => OpKind::Add,
        Operator::Sub { .. } => OpKind::Sub,
        Operator::Mul { .. } => OpKind::Mul,
        Operator::Softmax { .. } => OpKind::Softmax,
        Operator::Logistic => OpKind::Logistic,
        Operator::Tanh => OpKind::Tanh,
        Operator::Relu => OpKind::Relu,
        _ => OpKind::Relu6,
    }
}

/// The float clamp range of a fused activation.
fn act_range(ctx: &LowerCtx, node: &Node, a: Activation) -> Result<(f32, f32), CompileError> {
    match a {
        Activation::None => Ok((f32::NEG_INFINITY, f32::INFINITY)),
        Activation::Relu => Ok((0.0, f32::INFINITY)),
        Activation::ReluN1To1 => Ok((-1.0, 1.0)),
        Activation::Relu6 => Ok((0.0, 6.0)),
        other => Err(ctx.unsupported(node, format!("fused activation {other:?} (float32)"))),
    }
}

/// Checks that tensors `ids` are float32 (naming `what`).
fn expect_f32(ctx: &LowerCtx, node: &Node, ids: &[(TensorId, &str)]) -> Result<(), CompileError> {
    for &(id, what) in ids {
        let d = ctx.tensor(id).dtype;
        if d != DataType::Float32 {
            return Err(ctx.unsupported(node, format!("{what} is {d}, expected float32")));
        }
    }
    Ok(())
}

/// Weights float32 or float16, optional bias float32 with `channels` values.
fn weights_and_bias(
    ctx: &LowerCtx,
    node: &Node,
    channels: usize,
) -> Result<(TensorId, Option<TensorId>), CompileError> {
    let w = ctx.input(node, 1)?;
    let d = ctx.tensor(w).dtype;
    if !matches!(d, DataType::Float32 | DataType::Float16) {
        return Err(ctx.unsupported(
            node,
            format!("weights are {d} under float32 activations (expected float32 or float16)"),
        ));
    }
    let bias = node.inputs.get(2).copied().flatten();
    if let Some(b) = bias {
        expect_f32(ctx, node, &[(b, "the bias")])?;
        if ctx.tensor(b).elements() != channels {
            return Err(ctx.invalid(
                node,
                format!(
                    "{} bias values for {channels} output channels",
                    ctx.tensor(b).elements()
                ),
            ));
        }
    }
    Ok((w, bias))
}

fn lower_window(ctx: &mut LowerCtx, node: &Node) -> Result<LoweredOp, CompileError> {
    let (Operator::Conv2d(o) | Operator::DepthwiseConv2d(o)) = &node.op else {
        return Err(ctx.invalid(node, "not a window op"));
    };
    if !(2..=3).contains(&node.inputs.len()) || node.outputs.len() != 1 {
        return Err(ctx.invalid(node, "expects 2 or 3 inputs and 1 output"));
    }
    let input = ctx.input(node, 0)?;
    let output = ctx.output(node, 0)?;
    expect_f32(ctx, node, &[(output, "the output")])?;
    let is = shape4(ctx, node, input, "the input")?;
    let os = shape4(ctx, node, output, "the output")?;
    let (filter, bias) = weights_and_bias(ctx, node, os[3])?;
    let fs = shape4(ctx, node, filter, "the filter")?;
    let depthwise = matches!(node.op, Operator::DepthwiseConv2d(_));
    let m = if depthwise {
        let m = os[3] / is[3].max(1);
        if fs[0] != 1 || is[3] * m != os[3] || fs[3] != os[3] {
            return Err(ctx.invalid(
                node,
                format!("depthwise shapes: input {is:?}, filter {fs:?}, output {os:?}"),
            ));
        }
        m
    } else {
        if fs[0] != os[3] || fs[3] == 0 || is[3] % fs[3] != 0 || os[3] % (is[3] / fs[3]).max(1) != 0
        {
            return Err(ctx.unsupported(
                node,
                format!("convolution shapes: input {is:?}, filter {fs:?}, output {os:?}"),
            ));
        }
        1
    };
    if is[0] != os[0] {
        return Err(ctx.invalid(node, "input and output batches differ"));
    }
    let (pad_h, pad_w) = window_padding(ctx, node, o, [is[1], is[2], fs[1], fs[2], os[1], os[2]])?;
    let (act_min, act_max) = act_range(ctx, node, o.activation)?;
    let p = FloatConvParams {
        // window_padding checked 1 ≤ stride, dilation ≤ i32::MAX.
        stride_h: o.stride_h as u32,
        stride_w: o.stride_w as u32,
        dilation_h: o.dilation_h as u32,
        dilation_w: o.dilation_w as u32,
        pad_h,
        pad_w,
        depth_multiplier: u32::try_from(m)
            .map_err(|_| ctx.unsupported(node, "depth multiplier"))?,
        act_min,
        act_max,
    };
    let taps = if depthwise {
        fs[1] * fs[2]
    } else {
        fs[1] * fs[2] * fs[3]
    };
    let macs = ctx.tensor(output).elements() as u64 * taps as u64;
    let mut reads = vec![input, filter];
    reads.extend(bias);
    Ok(LoweredOp {
        kind: kind(&node.op),
        inputs: vec![Some(input), Some(filter), bias],
        outputs: vec![output],
        params: bytemuck::bytes_of(&p).to_vec(),
        scratch_bytes: 0,
        cost: cost(ctx, macs, &reads, 0, output),
    })
}

fn lower_fc(ctx: &mut LowerCtx, node: &Node) -> Result<LoweredOp, CompileError> {
    let Operator::FullyConnected { activation, .. } = &node.op else {
        return Err(ctx.invalid(node, "not a FULLY_CONNECTED node"));
    };
    if !(2..=3).contains(&node.inputs.len()) || node.outputs.len() != 1 {
        return Err(ctx.invalid(node, "expects 2 or 3 inputs and 1 output"));
    }
    let input = ctx.input(node, 0)?;
    let output = ctx.output(node, 0)?;
    expect_f32(ctx, node, &[(output, "the output")])?;
    let w_shape = ctx.tensor(ctx.input(node, 1)?).shape.clone();
    let [out_n, in_n] = <[usize; 2]>::try_from(w_shape.as_slice())
        .ok()
        .filter(|&[o, i]| o > 0 && i > 0)
        .ok_or_else(|| {
            ctx.unsupported(
                node,
                format!("weights have shape {w_shape:?}, expected [out, in]"),
            )
        })?;
    let (weights, bias) = weights_and_bias(ctx, node, out_n)?;
    let out_shape = ctx.tensor(output).shape.clone();
    if out_shape.last() != Some(&out_n) {
        return Err(ctx.invalid(
            node,
            format!("output shape {out_shape:?} does not end with the weights' {out_n} rows"),
        ));
    }
    let batches = ctx.tensor(output).elements() / out_n;
    if ctx.tensor(input).elements() != batches * in_n {
        return Err(ctx.invalid(
            node,
            format!(
                "input has {} elements, expected {batches} × {in_n}",
                ctx.tensor(input).elements()
            ),
        ));
    }
    let (act_min, act_max) = act_range(ctx, node, *activation)?;
    let p = FloatFcParams { act_min, act_max };
    let mut reads = vec![input, weights];
    reads.extend(bias);
    let macs = (batches * out_n * in_n) as u64;
    Ok(LoweredOp {
        kind: OpKind::FullyConnected,
        inputs: vec![Some(input), Some(weights), bias],
        outputs: vec![output],
        params: bytemuck::bytes_of(&p).to_vec(),
        scratch_bytes: 0,
        cost: cost(ctx, macs, &reads, 0, output),
    })
}

fn lower_arith(
    ctx: &mut LowerCtx,
    node: &Node,
    activation: Activation,
) -> Result<LoweredOp, CompileError> {
    if node.inputs.len() != 2 || node.outputs.len() != 1 {
        return Err(ctx.invalid(node, "expects 2 inputs and 1 output"));
    }
    let (a, b, out) = (
        ctx.input(node, 0)?,
        ctx.input(node, 1)?,
        ctx.output(node, 0)?,
    );
    expect_f32(
        ctx,
        node,
        &[(a, "input 0"), (b, "input 1"), (out, "the output")],
    )?;
    let (act_min, act_max) = act_range(ctx, node, activation)?;
    let p = FloatArithParams { act_min, act_max };
    Ok(LoweredOp {
        kind: kind(&node.op),
        inputs: vec![Some(a), Some(b)],
        outputs: vec![out],
        params: bytemuck::bytes_of(&p).to_vec(),
        scratch_bytes: 0,
        cost: cost(ctx, 0, &[a, b], 0, out),
    })
}

fn lower_unary(
    ctx: &mut LowerCtx,
    node: &Node,
    params: Vec<u8>,
) -> Result<LoweredOp, CompileError> {
    if node.inputs.len() != 1 || node.outputs.len() != 1 {
        return Err(ctx.invalid(node, "expects 1 input and 1 output"));
    }
    let (x, out) = (ctx.input(node, 0)?, ctx.output(node, 0)?);
    expect_f32(ctx, node, &[(out, "the output")])?;
    if ctx.tensor(x).elements() != ctx.tensor(out).elements() {
        return Err(ctx.invalid(node, "input and output sizes differ"));
    }
    if matches!(node.op, Operator::Softmax { .. }) && ctx.tensor(x).shape != ctx.tensor(out).shape {
        return Err(ctx.invalid(node, "input and output shapes differ"));
    }
    Ok(LoweredOp {
        kind: kind(&node.op),
        inputs: vec![Some(x)],
        outputs: vec![out],
        params,
        scratch_bytes: 0,
        cost: cost(ctx, 0, &[x], 0, out),
    })
}

/// Folds every DEQUANTIZE of a float16 constant (TFLite's float16-weights models:
/// `target_spec.supported_types=[tf.float16]`) into its consumers, before lowering: the weights
/// of a float32 CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED read the float16 constant itself
/// (the runtime widens it as it goes), any other consumer (e.g. a bias) reads a float32
/// constant holding the exact widened values. A DEQUANTIZE left without consumers is removed;
/// one whose output is a graph output stays (and is refused by its lowering).
pub fn fold_f16_dequantize(graph: &mut Graph) {
    let mut removed: Vec<usize> = Vec::new();
    for d in 0..graph.nodes.len() {
        let node = &graph.nodes[d];
        let (Some(Some(src)), Some(&out)) = (node.inputs.first().copied(), node.outputs.first())
        else {
            continue;
        };
        let t = &graph.tensors[src];
        if node.op != Operator::Dequantize || t.dtype != DataType::Float16 || !t.is_const() {
            continue;
        }
        if graph.outputs.contains(&out) || graph.tensors[out].dtype != DataType::Float32 {
            continue;
        }
        let mut widened: Option<TensorId> = None;
        for c in 0..graph.nodes.len() {
            for k in 0..graph.nodes[c].inputs.len() {
                if graph.nodes[c].inputs[k] != Some(out) {
                    continue;
                }
                let n = &graph.nodes[c];
                let float_mac = k == 1
                    && matches!(
                        n.op,
                        Operator::Conv2d(_)
                            | Operator::DepthwiseConv2d(_)
                            | Operator::FullyConnected { .. }
                    )
                    && n.inputs[0].is_some_and(|i| graph.tensors[i].dtype == DataType::Float32);
                let with = if float_mac {
                    src
                } else {
                    *widened.get_or_insert_with(|| {
                        let h = &graph.tensors[src];
                        let data = h.data.as_deref().unwrap_or_default();
                        let f32s: Vec<u8> = data
                            .chunks_exact(2)
                            .flat_map(|b| {
                                half::f16::from_bits(u16::from_le_bytes([b[0], b[1]]))
                                    .to_f32()
                                    .to_le_bytes()
                            })
                            .collect();
                        let mut wide = graph.tensors[out].clone();
                        wide.data = Some(f32s);
                        wide.quant = None;
                        graph.tensors.push(wide);
                        graph.tensors.len() - 1
                    })
                };
                graph.nodes[c].inputs[k] = Some(with);
            }
        }
        removed.push(d);
    }
    let mut i = 0;
    graph.nodes.retain(|_| {
        i += 1;
        !removed.contains(&(i - 1))
    });
}
