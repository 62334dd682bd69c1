//! Lowering of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED in the schemes beside int8:
//! packed int4 weights (`mote_runtime::ops::int4`) and 16x8 (`mote_runtime::ops::int16`).
//!
//! Both use the int8 parameter structs and the int8 lowering's arithmetic (TFLM's `Prepare`:
//! padding, per-channel `QuantizeMultiplier(input_scale · weight_scale / output_scale)`), so the
//! int8 family lowering runs on a *view* of the node in which the tensors look like int8: int4
//! weights unpacked to int8 and 16-bit activations relabelled int8 (zero point 0). Weights and
//! biases are hidden as non-constant in that view, so no SIMD packing is emitted (the runtime
//! kernels of these schemes read the reference layout only). Afterwards the real tensors are
//! restored, the 16x8 clamp range is recomputed over int16, and the costs are recounted.

use mote_runtime::ops::conv::ConvParams;
use mote_runtime::ops::depthwise::DepthwiseParams;
use mote_runtime::ops::fully_connected::FullyConnectedParams;
use mote_runtime::OpKind;

use super::conv::cost;
use super::quant_math::activation_range_quantized;
use super::{conv, depthwise, fully_connected, LowerCtx, LoweredOp};
use crate::error::CompileError;
use crate::ir::{Activation, DataType, Node, Operator, Tensor, TensorId};

/// Lowers `node` if it is a MAC op with int4 weights or int16 activations; `None` for anything
/// else (the int8 lowering applies).
pub fn lower(ctx: &mut LowerCtx, node: &Node) -> Option<Result<LoweredOp, CompileError>> {
    let activation = match &node.op {
        Operator::Conv2d(o) | Operator::DepthwiseConv2d(o) => o.activation,
        Operator::FullyConnected { activation, .. } => *activation,
        _ => return None,
    };
    let dtype = |k: usize| {
        node.inputs
            .get(k)
            .copied()
            .flatten()
            .map(|t| ctx.tensor(t).dtype)
    };
    let int4 = dtype(1) == Some(DataType::Int4);
    let int16 = dtype(0) == Some(DataType::Int16);
    if !int4 && !int16 {
        return None;
    }
    Some(lower_view(ctx, node, int4, int16, activation))
}

fn lower_view(
    ctx: &mut LowerCtx,
    node: &Node,
    int4: bool,
    int16: bool,
    activation: Activation,
) -> Result<LoweredOp, CompileError> {
    let ids: Vec<TensorId> = node
        .inputs
        .iter()
        .flatten()
        .copied()
        .chain(node.outputs.iter().copied())
        .collect();
    let saved: Vec<(TensorId, Tensor)> = ids.iter().map(|&t| (t, ctx.tensor(t).clone())).collect();
    if int4 && int16 {
        return Err(ctx.unsupported(node, "int4 weights with int16 activations"));
    }
    // The view: int8-looking activations (16x8), int8 weights and int32 bias without data.
    for (k, t) in node.inputs.iter().enumerate() {
        let Some(t) = *t else { continue };
        let tensor = &mut ctx.graph.tensors[t];
        match k {
            0 if int16 => tensor.dtype = DataType::Int8,
            1 => {
                tensor.dtype = DataType::Int8;
                tensor.data = None;
            }
            2 => {
                if int16 && tensor.dtype != DataType::Int64 {
                    restore(ctx, &saved);
                    return Err(ctx.unsupported(node, "16x8 needs an int64 bias"));
                }
                tensor.dtype = DataType::Int32;
                tensor.data = None;
            }
            _ => {}
        }
    }
    if int16 {
        for &o in &node.outputs {
            if ctx.tensor(o).dtype != DataType::Int16 {
                restore(ctx, &saved);
                return Err(ctx.unsupported(node, "int16 input with a non-int16 output"));
            }
            ctx.graph.tensors[o].dtype = DataType::Int8;
        }
    }
    let lowered = match &node.op {
        Operator::Conv2d(_) => conv::lower(ctx, node),
        Operator::DepthwiseConv2d(_) => depthwise::lower(ctx, node),
        _ => fully_connected::lower(ctx, node),
    };
    restore(ctx, &saved);
    let mut op = lowered?;
    if int16 {
        let out = ctx.output(node, 0)?;
        let (scale, zp) = ctx
            .tensor(out)
            .scale_zp()
            .ok_or_else(|| ctx.unsupported(node, "the output is not quantized"))?;
        if zp != 0 {
            return Err(ctx.unsupported(node, "int16 activations need zero point 0"));
        }
        let (lo, hi) = activation_range_quantized(activation, scale, 0, -32768, 32767)
            .filter(|(lo, hi)| lo <= hi)
            .ok_or_else(|| ctx.unsupported(node, format!("fused activation {activation:?}")))?;
        set_act_range(&mut op, lo, hi);
        if shifts(ctx, &op).iter().any(|s| !(-31..=7).contains(s)) {
            return Err(ctx.unsupported(
                node,
                "a 16x8 rescale factor needs a shift above 7 (TFLM's 64-bit rescale refuses it)",
            ));
        }
    }
    // Recount bytes with the real tensors (packed int4, 16-bit activations, 64-bit bias).
    let reads: Vec<TensorId> = op.inputs.iter().flatten().copied().collect();
    let channels = channel_count(&op);
    let output = ctx.output(node, 0)?;
    op.cost = cost(ctx, op.cost.macs, &reads, channels, output);
    Ok(op)
}

fn restore(ctx: &mut LowerCtx, saved: &[(TensorId, Tensor)]) {
    for (t, tensor) in saved {
        ctx.graph.tensors[*t] = tensor.clone();
    }
}

fn channel_count(op: &LoweredOp) -> usize {
    match op.kind {
        OpKind::Conv2d => read::<ConvParams>(op).map_or(0, |p| p.channel_count as usize),
        OpKind::DepthwiseConv2d => {
            read::<DepthwiseParams>(op).map_or(0, |p| p.channel_count as usize)
        }
        _ => read::<FullyConnectedParams>(op).map_or(0, |p| p.channel_count as usize),
    }
}

fn read<T: bytemuck::Pod>(op: &LoweredOp) -> Option<T> {
    (op.params.len() == std::mem::size_of::<T>()).then(|| bytemuck::pod_read_unaligned(&op.params))
}

fn set_act_range(op: &mut LoweredOp, lo: i32, hi: i32) {
    fn set<T: bytemuck::Pod>(op: &mut LoweredOp, f: impl Fn(&mut T)) {
        if let Some(mut p) = read::<T>(op) {
            f(&mut p);
            op.params = bytemuck::bytes_of(&p).to_vec();
        }
    }
    match op.kind {
        OpKind::Conv2d => set::<ConvParams>(op, |p| (p.act_min, p.act_max) = (lo, hi)),
        OpKind::DepthwiseConv2d => {
            set::<DepthwiseParams>(op, |p| (p.act_min, p.act_max) = (lo, hi))
        }
        _ => set::<FullyConnectedParams>(op, |p| (p.act_min, p.act_max) = (lo, hi)),
    }
}

/// The per-channel shifts the op's parameters point to in the constant pool.
fn shifts(ctx: &LowerCtx, op: &LoweredOp) -> Vec<i32> {
    let (offset, n) = match op.kind {
        OpKind::Conv2d => {
            read::<ConvParams>(op).map_or((0, 0), |p| (p.shifts_offset, p.channel_count))
        }
        OpKind::DepthwiseConv2d => {
            read::<DepthwiseParams>(op).map_or((0, 0), |p| (p.shifts_offset, p.channel_count))
        }
        _ => {
            read::<FullyConnectedParams>(op).map_or((0, 0), |p| (p.shifts_offset, p.channel_count))
        }
    };
    let start = offset as usize;
    ctx.consts
        .bytes()
        .get(start..start + 4 * n as usize)
        .map(|b| {
            b.chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
        .unwrap_or_default()
}
