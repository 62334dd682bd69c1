//! Lowering of CONV_2D (int8) to `mote_runtime::ops::conv`.
//!
//! Parameters are computed as TFLM's `conv_common.cc` / `PopulateConvolutionQuantizationParams`
//! do: padding from `ComputePaddingHeightWidth` (with dilation), one multiplier and shift per
//! output channel from `double(input_scale) · double(filter_scale[c]) / double(output_scale)` via
//! `QuantizeMultiplier` (a per-tensor filter scale is broadcast), clamp range from
//! `CalculateActivationRangeQuantized`.
//!
//! The helpers here (activation/weight quantization, window geometry, per-channel multipliers) are
//! shared with DEPTHWISE_CONV_2D and FULLY_CONNECTED.

use mote_runtime::format::OpCost;
use mote_runtime::ops::conv::{
    expand_filter, ConvParams, Segments, LAYOUT_PACKED, LAYOUT_REFERENCE,
};
use mote_runtime::simd;
use mote_runtime::OpKind;

use super::quant_math::{activation_range_quantized, quantize_multiplier};
use super::{LowerCtx, LoweredOp};
use crate::error::CompileError;
use crate::ir::{Activation, Conv2dOptions, DataType, Node, Operator, Padding, TensorId};

/// Per-tensor int8 quantization `(scale, zero_point)` of activation tensor `id` (`what` names it
/// in errors, e.g. "the input").
pub(crate) fn int8_activation(
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
    let (scale, zp) = (q.scale(), q.zero_point());
    if !(scale.is_finite() && scale > 0.0) {
        return Err(ctx.invalid(node, format!("{what} has scale {scale}")));
    }
    if !(-128..=127).contains(&zp) {
        return Err(ctx.invalid(node, format!("{what} has zero point {zp} outside int8")));
    }
    Ok((scale, zp as i32))
}

/// The quantization of an int8 weight tensor, by how it applies to output channels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WeightQuant {
    /// One scale and zero point for the whole tensor.
    PerTensor {
        /// The scale.
        scale: f32,
        /// The zero point (int8).
        zero_point: i32,
    },
    /// One scale per output channel, all zero points 0.
    PerChannel(Vec<f32>),
}

/// Reads the quantization of int8 weights `id` with `channels` output channels.
///
/// Several scales are accepted only when they are one per output channel: `axis` is
/// `channel_axis`, or (`also_axis_zero`, for older depthwise files) axis 0 of size 1.
pub(crate) fn weight_quant(
    ctx: &LowerCtx,
    node: &Node,
    id: TensorId,
    channels: usize,
    channel_axis: usize,
    also_axis_zero: bool,
) -> Result<WeightQuant, CompileError> {
    let t = ctx.tensor(id);
    if t.dtype != DataType::Int8 {
        return Err(ctx.unsupported(
            node,
            format!("weights are {}, only int8 weights are supported", t.dtype),
        ));
    }
    let q = t
        .quant
        .as_ref()
        .ok_or_else(|| ctx.unsupported(node, "weights are int8 but not quantized"))?;
    if let Some(s) = q.scales.iter().find(|s| !(s.is_finite() && **s >= 0.0)) {
        return Err(ctx.invalid(node, format!("weights have scale {s}")));
    }
    if q.zero_points.len() != q.scales.len() {
        return Err(ctx.invalid(node, "weights have as many zero points as scales"));
    }
    if q.is_per_tensor() {
        let zp = q.zero_point();
        if !(-128..=127).contains(&zp) {
            return Err(ctx.invalid(node, format!("weights have zero point {zp} outside int8")));
        }
        return Ok(WeightQuant::PerTensor {
            scale: q.scale(),
            zero_point: zp as i32,
        });
    }
    let axis_ok =
        q.axis == channel_axis || (also_axis_zero && q.axis == 0 && t.shape.first() == Some(&1));
    if q.scales.len() != channels || !axis_ok {
        return Err(ctx.unsupported(
            node,
            format!(
                "weights quantized with {} scales along axis {} of shape {:?} (only per-tensor or \
                 one scale per output channel along axis {channel_axis} is supported)",
                q.scales.len(),
                q.axis,
                t.shape
            ),
        ));
    }
    if q.zero_points.iter().any(|&z| z != 0) {
        return Err(ctx.unsupported(
            node,
            "per-channel weights with non-zero zero points (the int8 spec requires symmetric weights)",
        ));
    }
    Ok(WeightQuant::PerChannel(q.scales.clone()))
}

/// One `QuantizeMultiplier(double(input_scale) · double(weight_scale) / double(output_scale))` per
/// weight scale, as TFLM's `PopulateConvolutionQuantizationParams` computes them; refuses shifts
/// outside `[-31, 30]` (TFLM would overflow there).
pub(crate) fn channel_multipliers(
    ctx: &LowerCtx,
    node: &Node,
    input_scale: f32,
    weight_scales: &[f32],
    output_scale: f32,
) -> Result<(Vec<i32>, Vec<i32>), CompileError> {
    let mut multipliers = Vec::with_capacity(weight_scales.len());
    let mut shifts = Vec::with_capacity(weight_scales.len());
    for &s in weight_scales {
        let real = f64::from(input_scale) * f64::from(s) / f64::from(output_scale);
        let (m, shift) = checked_multiplier(ctx, node, real)?;
        multipliers.push(m);
        shifts.push(shift);
    }
    Ok((multipliers, shifts))
}

/// TFLite's `QuantizeMultiplier(real)`, refusing results the runtime cannot apply exactly.
pub(crate) fn checked_multiplier(
    ctx: &LowerCtx,
    node: &Node,
    real: f64,
) -> Result<(i32, i32), CompileError> {
    if !(real.is_finite() && real >= 0.0) {
        return Err(ctx.invalid(
            node,
            format!("rescale factor {real} is not a finite positive number"),
        ));
    }
    let (m, shift) = quantize_multiplier(real);
    if !(-31..=30).contains(&shift) {
        return Err(ctx.unsupported(
            node,
            format!("rescale factor {real} is out of the Q31 multiplier range"),
        ));
    }
    Ok((m, shift))
}

/// The clamp range of fused activation `activation` for an int8 output.
pub(crate) fn int8_activation_range(
    ctx: &LowerCtx,
    node: &Node,
    activation: Activation,
    scale: f32,
    zero_point: i32,
) -> Result<(i32, i32), CompileError> {
    let (lo, hi) = activation_range_quantized(activation, scale, zero_point, -128, 127)
        .ok_or_else(|| ctx.unsupported(node, format!("fused activation {activation:?}")))?;
    if lo > hi {
        return Err(ctx.unsupported(
            node,
            format!("fused activation {activation:?} gives an empty output range"),
        ));
    }
    Ok((lo, hi))
}

/// The optional int32 bias (input 2) with `channels` elements.
pub(crate) fn optional_bias(
    ctx: &LowerCtx,
    node: &Node,
    channels: usize,
) -> Result<Option<TensorId>, CompileError> {
    let Some(id) = node.inputs.get(2).copied().flatten() else {
        return Ok(None);
    };
    let t = ctx.tensor(id);
    if t.dtype != DataType::Int32 {
        return Err(ctx.unsupported(
            node,
            format!(
                "bias is {}, only int32 bias is supported with int8",
                t.dtype
            ),
        ));
    }
    if t.elements() != channels {
        return Err(ctx.invalid(
            node,
            format!("bias has shape {:?}, expected {channels} elements", t.shape),
        ));
    }
    Ok(Some(id))
}

/// Packs the constant int8 weights `weights` (an `n × k` row-major matrix: `[out, in]`
/// fully-connected weights, or a CONV_2D filter expanded by `expand_filter` when `conv` gives
/// its shape and horizontal dilation) for the SIMD matrix kernels, and folds the input offset
/// into the bias. Returns `(layout, packed_offset, folded_bias_offset)` for the op's parameters;
/// weights or a bias that are not constant keep the reference layout only.
pub(crate) fn pack_matrix(
    ctx: &mut LowerCtx,
    node: &Node,
    weights: TensorId,
    bias: Option<TensorId>,
    conv: Option<([usize; 4], u32)>,
    input_offset: i32,
) -> Result<(u32, u32, u32), CompileError> {
    if !ctx.pack_weights {
        return Ok((LAYOUT_REFERENCE, 0, 0));
    }
    let Some(data) = ctx.tensor(weights).data.clone() else {
        return Ok((LAYOUT_REFERENCE, 0, 0));
    };
    let shape = ctx.tensor(weights).shape.clone();
    let n = shape.first().copied().unwrap_or(0);
    let raw: &[i8] = bytemuck::cast_slice(&data);
    let (w, k): (Vec<i8>, usize) = match conv {
        None => (raw.to_vec(), raw.len() / n.max(1)),
        Some((filter_shape, dilation_w)) => {
            let seg = Segments::of(filter_shape, dilation_w)
                .ok_or_else(|| ctx.unsupported(node, "filter too large to pack"))?;
            let mut w = vec![0i8; n * seg.k()];
            expand_filter(raw, filter_shape, dilation_w, &mut w)
                .map_err(|e| ctx.invalid(node, format!("expanding the filter: {e}")))?;
            (w, seg.k())
        }
    };
    if n * k != w.len() {
        return Err(ctx.invalid(node, "weight data does not match its shape"));
    }
    let bias: Option<Vec<i32>> = match bias {
        None => None,
        Some(b) => match &ctx.tensor(b).data {
            // A bias computed at run time cannot be folded offline.
            None => return Ok((LAYOUT_REFERENCE, 0, 0)),
            Some(d) if d.len() == 4 * n => Some(
                d.chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            Some(_) => return Err(ctx.invalid(node, "bias data does not match its shape")),
        },
    };
    let len =
        simd::packed_len(n, k).ok_or_else(|| ctx.unsupported(node, "weights too large to pack"))?;
    let mut packed = vec![0i8; len];
    simd::pack_weights(&w, n, k, &mut packed)
        .map_err(|e| ctx.invalid(node, format!("packing the weights: {e}")))?;
    let mut folded = vec![0i32; 2 * n];
    let (signed, unsigned) = folded.split_at_mut(n);
    simd::fold_bias(&w, n, k, bias.as_deref(), input_offset, signed, unsigned)
        .map_err(|e| ctx.invalid(node, format!("folding the bias: {e}")))?;
    let packed_offset = ctx.add_const(bytemuck::cast_slice(&packed))?;
    let folded_bias_offset = ctx.add_i32s(&folded)?;
    Ok((LAYOUT_PACKED, packed_offset, folded_bias_offset))
}

/// TFLM's `ComputeOutSize` (C integer division, which truncates toward zero).
fn out_size(padding: Padding, image: i64, filter: i64, stride: i64, dilation: i64) -> i64 {
    let effective = (filter - 1) * dilation + 1;
    match padding {
        Padding::Same => (image + stride - 1) / stride,
        Padding::Valid => (image + stride - effective) / stride,
    }
}

/// TFLM's `ComputePaddingWithOffset`: the leading padding (the odd extra goes at the end).
fn leading_pad(stride: i64, dilation: i64, image: i64, filter: i64, out: i64) -> i64 {
    let effective = (filter - 1) * dilation + 1;
    ((out - 1) * stride + effective - image).max(0) / 2
}

/// Padding `(top, left)` as TFLM's `ComputePaddingHeightWidth` computes it; checks strides and
/// dilations are ≥ 1 and that the output's height and width are the ones TFLM computes.
/// `hw` holds `[in_h, in_w, filter_h, filter_w, out_h, out_w]`.
pub(crate) fn window_padding(
    ctx: &LowerCtx,
    node: &Node,
    o: &Conv2dOptions,
    hw: [usize; 6],
) -> Result<(u32, u32), CompileError> {
    let [in_h, in_w, f_h, f_w, out_h, out_w] = hw.map(|v| v as i64);
    for (v, what) in [
        (o.stride_h, "stride_h"),
        (o.stride_w, "stride_w"),
        (o.dilation_h, "dilation_h_factor"),
        (o.dilation_w, "dilation_w_factor"),
    ] {
        if !(1..=i32::MAX as usize).contains(&v) {
            return Err(ctx.unsupported(node, format!("{what} = {v} (must be ≥ 1)")));
        }
    }
    let (sh, sw, dh, dw) = (
        o.stride_h as i64,
        o.stride_w as i64,
        o.dilation_h as i64,
        o.dilation_w as i64,
    );
    if f_h == 0 || f_w == 0 {
        return Err(ctx.invalid(node, "the filter has zero height or width"));
    }
    let want_h = out_size(o.padding, in_h, f_h, sh, dh);
    let want_w = out_size(o.padding, in_w, f_w, sw, dw);
    if (want_h, want_w) != (out_h, out_w) {
        return Err(ctx.invalid(
            node,
            format!(
                "output is {out_h}×{out_w} but {:?} padding with stride {sh}×{sw} and dilation \
                 {dh}×{dw} over a {in_h}×{in_w} input and a {f_h}×{f_w} filter gives \
                 {want_h}×{want_w}",
                o.padding
            ),
        ));
    }
    let pad_h = leading_pad(sh, dh, in_h, f_h, out_h);
    let pad_w = leading_pad(sw, dw, in_w, f_w, out_w);
    let fits = |v: i64| u32::try_from(v).ok().filter(|&v| v <= i32::MAX as u32);
    match (fits(pad_h), fits(pad_w)) {
        (Some(h), Some(w)) => Ok((h, w)),
        _ => Err(ctx.unsupported(node, "padding too large")),
    }
}

/// `[d0, d1, d2, d3]` of a rank-4 tensor, or an "invalid" error naming `what`.
pub(crate) fn shape4(
    ctx: &LowerCtx,
    node: &Node,
    id: TensorId,
    what: &str,
) -> Result<[usize; 4], CompileError> {
    let s = &ctx.tensor(id).shape;
    <[usize; 4]>::try_from(s.as_slice())
        .map_err(|_| ctx.unsupported(node, format!("{what} has shape {s:?}, expected rank 4")))
}

/// Bytes of tensor `id` split into (constant, arena).
pub(crate) fn split_bytes(ctx: &LowerCtx, id: TensorId) -> (usize, usize) {
    let t = ctx.tensor(id);
    if t.is_const() {
        (t.bytes(), 0)
    } else {
        (0, t.bytes())
    }
}

/// The cost of a window/matrix op: `macs`, the input, weights, optional bias and `channels`
/// multipliers + shifts read, the output written.
pub(crate) fn cost(
    ctx: &LowerCtx,
    macs: u64,
    reads: &[TensorId],
    channels: usize,
    output: TensorId,
) -> OpCost {
    let (mut constant, mut arena) = (channels * 8, 0usize);
    for &id in reads {
        let (c, a) = split_bytes(ctx, id);
        constant += c;
        arena += a;
    }
    let sat = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    OpCost {
        macs,
        const_bytes_read: sat(constant),
        arena_bytes_read: sat(arena),
        arena_bytes_written: sat(ctx.tensor(output).bytes()),
        reserved: 0,
    }
}

/// Lowers a CONV_2D node (int8 activations, int8 weights per channel or per tensor, int32 bias).
pub fn lower(ctx: &mut LowerCtx, node: &Node) -> Result<LoweredOp, CompileError> {
    let Operator::Conv2d(o) = &node.op else {
        return Err(ctx.invalid(node, "not a CONV_2D node"));
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
    let [out_c, f_h, f_w, f_ic] = shape4(ctx, node, filter, "the filter")?;
    let [o_batches, out_h, out_w, o_c] = shape4(ctx, node, output, "the output")?;
    if batches != o_batches || out_c != o_c {
        return Err(ctx.invalid(
            node,
            format!("input batch {batches} / filter outputs {out_c} do not match the output {o_batches}×…×{o_c}"),
        ));
    }
    if f_ic == 0 || in_c % f_ic != 0 || out_c % (in_c / f_ic).max(1) != 0 || in_c == 0 {
        return Err(ctx.unsupported(
            node,
            format!(
                "input channels {in_c} with filter input channels {f_ic} and {out_c} outputs \
                 (grouped convolution needs in = k × filter in and out divisible by k)"
            ),
        ));
    }
    let scales = match weight_quant(ctx, node, filter, out_c, 0, false)? {
        WeightQuant::PerChannel(s) => s,
        WeightQuant::PerTensor { scale, zero_point } => {
            if zero_point != 0 {
                return Err(ctx.unsupported(
                    node,
                    format!("weights with zero point {zero_point} (TFLM's int8 convolution assumes symmetric weights)"),
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
    let (layout, packed_offset, folded_bias_offset) = if in_c == f_ic {
        let filter_shape = [out_c, f_h, f_w, f_ic];
        // window_padding checked 1 ≤ dilation ≤ i32::MAX.
        let dilation_w = o.dilation_w as u32;
        pack_matrix(
            ctx,
            node,
            filter,
            bias,
            Some((filter_shape, dilation_w)),
            -in_zp,
        )?
    } else {
        // Grouped convolutions run the reference kernel.
        (LAYOUT_REFERENCE, 0, 0)
    };
    let u32_of = |v: usize, what: &str| {
        u32::try_from(v).map_err(|_| ctx.unsupported(node, format!("{what} {v} exceeds u32")))
    };
    let p = ConvParams {
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
        layout,
        packed_offset,
        folded_bias_offset,
    };
    let macs = (ctx.tensor(output).elements() as u64) * (f_h * f_w * f_ic) as u64;
    let mut reads = vec![input, filter];
    reads.extend(bias);
    let cost = cost(ctx, macs, &reads, out_c, output);
    Ok(LoweredOp {
        kind: OpKind::Conv2d,
        inputs: vec![Some(input), Some(filter), bias],
        outputs: vec![output],
        params: bytemuck::bytes_of(&p).to_vec(),
        scratch_bytes: 0,
        cost,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ir::{Graph, Quantization, Tensor};
    use crate::lower::ConstPool;

    pub(crate) fn act(shape: &[usize], scale: f32, zp: i64) -> Tensor {
        Tensor {
            name: String::new(),
            shape: shape.to_vec(),
            dtype: DataType::Int8,
            quant: Some(Quantization::per_tensor(scale, zp)),
            data: None,
        }
    }

    pub(crate) fn weights(shape: &[usize], scales: &[f32], axis: usize) -> Tensor {
        Tensor {
            name: String::new(),
            shape: shape.to_vec(),
            dtype: DataType::Int8,
            quant: Some(Quantization {
                scales: scales.to_vec(),
                zero_points: vec![0; scales.len()],
                axis,
            }),
            data: Some(vec![1; shape.iter().product()]),
        }
    }

    pub(crate) fn bias(n: usize) -> Tensor {
        Tensor {
            name: String::new(),
            shape: vec![n],
            dtype: DataType::Int32,
            quant: None,
            data: Some(vec![0; n * 4]),
        }
    }

    /// Lowers `node` of `graph`; returns the op and the constant pool.
    pub(crate) fn lower_in(
        graph: &mut Graph,
        node: &Node,
    ) -> Result<(LoweredOp, ConstPool), CompileError> {
        let mut consts = ConstPool::default();
        let mut ctx = LowerCtx {
            graph,
            index: 0,
            consts: &mut consts,
            pack_weights: true,
        };
        let op = crate::lower::lower_node(&mut ctx, node)?;
        Ok((op, consts))
    }

    /// `count` i32s at byte `offset` of the pool.
    pub(crate) fn pool_i32s(pool: &ConstPool, offset: u32, count: usize) -> Vec<i32> {
        let b = &pool.bytes()[offset as usize..offset as usize + count * 4];
        b.chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// Independent `QuantizeMultiplier`: the multiplier `m ∈ [2^30, 2^31)` and shift `s` with
    /// `real ≈ m · 2^(s − 31)`, found by scaling with powers of two (no frexp).
    pub(crate) fn reference_multiplier(real: f64) -> (i32, i32) {
        if real == 0.0 {
            return (0, 0);
        }
        let mut shift = 0i32;
        let mut x = real;
        while x >= 1.0 {
            x /= 2.0;
            shift += 1;
        }
        while x < 0.5 {
            x *= 2.0;
            shift -= 1;
        }
        let mut m = (x * 2147483648.0).round() as i64;
        if m == 1 << 31 {
            m /= 2;
            shift += 1;
        }
        (m as i32, shift)
    }

    pub(crate) fn opts(
        padding: Padding,
        stride: usize,
        dilation: usize,
        act: Activation,
    ) -> Conv2dOptions {
        Conv2dOptions {
            padding,
            stride_h: stride,
            stride_w: stride,
            dilation_h: dilation,
            dilation_w: dilation,
            activation: act,
            depth_multiplier: 1,
        }
    }

    fn conv_graph(
        input: Tensor,
        filter: Tensor,
        output: Tensor,
        o: Conv2dOptions,
        with_bias: bool,
    ) -> (Graph, Node) {
        let out_c = filter.shape[0];
        let mut g = Graph::default();
        g.tensors.push(input);
        g.tensors.push(filter);
        g.tensors.push(output);
        g.tensors.push(bias(out_c));
        let node = Node {
            op: Operator::Conv2d(o),
            inputs: vec![Some(0), Some(1), with_bias.then_some(3)],
            outputs: vec![2],
        };
        (g, node)
    }

    fn params_of(op: &LoweredOp) -> ConvParams {
        *bytemuck::from_bytes(&op.params)
    }

    #[test]
    fn same_padding_stride_2_per_channel() {
        // 1×10×9×3 input, 3×3 filter, stride 2, SAME: out 5×5; total pad h = 4·2+3−10 = 1 → 0,
        // w = 4·2+3−9 = 2 → 1.
        let scales = [0.01f32, 0.02, 0.003, 0.5];
        let (mut g, node) = conv_graph(
            act(&[1, 10, 9, 3], 0.05, -3),
            weights(&[4, 3, 3, 3], &scales, 0),
            act(&[1, 5, 5, 4], 0.1, 7),
            opts(Padding::Same, 2, 1, Activation::Relu6),
            true,
        );
        let (op, pool) = lower_in(&mut g, &node).unwrap();
        let p = params_of(&op);
        assert_eq!(op.kind, OpKind::Conv2d);
        assert_eq!((p.pad_h, p.pad_w), (0, 1));
        assert_eq!(
            (p.stride_h, p.stride_w, p.dilation_h, p.dilation_w),
            (2, 2, 1, 1)
        );
        assert_eq!((p.input_offset, p.output_offset), (3, 7));
        // RELU6: max(−128, 7 + round(0/0.1)) = 7, min(127, 7 + round(6/0.1)) = 67.
        assert_eq!((p.act_min, p.act_max), (7, 67));
        assert_eq!(p.channel_count, 4);
        let m = pool_i32s(&pool, p.multipliers_offset, 4);
        let s = pool_i32s(&pool, p.shifts_offset, 4);
        for c in 0..4 {
            let real = 0.05f32 as f64 * scales[c] as f64 / 0.1f32 as f64;
            assert_eq!((m[c], s[c]), reference_multiplier(real), "channel {c}");
        }
        assert_eq!(op.inputs, vec![Some(0), Some(1), Some(3)]);
        assert_eq!(op.cost.macs, 5 * 5 * 4 * 27);
        assert_eq!(op.cost.const_bytes_read, 108 + 16 + 32);
        assert_eq!(op.cost.arena_bytes_read, 270);
        assert_eq!(op.cost.arena_bytes_written, 100);
        assert_eq!(op.scratch_bytes, 0);
    }

    #[test]
    fn valid_dilated_per_tensor_broadcast_without_bias() {
        // 7×7 input, 3×3 filter dilated by 2 (effective 5), VALID, stride 1: out 3×3, no padding.
        let (mut g, node) = conv_graph(
            act(&[2, 7, 7, 2], 0.5, 0),
            weights(&[3, 3, 3, 2], &[0.25], 0),
            act(&[2, 3, 3, 3], 0.125, -1),
            opts(Padding::Valid, 1, 2, Activation::None),
            false,
        );
        let (op, pool) = lower_in(&mut g, &node).unwrap();
        let p = params_of(&op);
        assert_eq!((p.pad_h, p.pad_w), (0, 0));
        assert_eq!((p.act_min, p.act_max), (-128, 127));
        assert_eq!(op.inputs[2], None);
        // 0.5 · 0.25 / 0.125 = 1.0 → (2^30, 1) for every channel.
        assert_eq!(pool_i32s(&pool, p.multipliers_offset, 3), vec![1 << 30; 3]);
        assert_eq!(pool_i32s(&pool, p.shifts_offset, 3), vec![1; 3]);
    }

    #[test]
    fn same_padding_with_dilation() {
        // 6 wide, 3 taps dilated 3 (effective 7), stride 1, SAME: out 6, total pad 5·1+7−6 = 6 → 3.
        let (mut g, node) = conv_graph(
            act(&[1, 6, 6, 1], 0.5, 0),
            weights(&[1, 3, 3, 1], &[0.25], 0),
            act(&[1, 6, 6, 1], 0.125, 0),
            opts(Padding::Same, 1, 3, Activation::Relu),
            true,
        );
        let (op, _) = lower_in(&mut g, &node).unwrap();
        let p = params_of(&op);
        assert_eq!((p.pad_h, p.pad_w), (3, 3));
        assert_eq!((p.act_min, p.act_max), (0, 127));
    }

    #[test]
    fn grouped_conv_is_accepted() {
        let (mut g, node) = conv_graph(
            act(&[1, 4, 4, 6], 0.5, 0),
            weights(&[4, 1, 1, 3], &[0.1, 0.2, 0.3, 0.4], 0),
            act(&[1, 4, 4, 4], 0.125, 0),
            opts(Padding::Valid, 1, 1, Activation::None),
            true,
        );
        assert!(lower_in(&mut g, &node).is_ok());
    }

    #[test]
    fn refusals_name_the_variant() {
        let base = || {
            conv_graph(
                act(&[1, 4, 4, 2], 0.5, 0),
                weights(&[3, 3, 3, 2], &[0.1, 0.2, 0.3], 0),
                act(&[1, 2, 2, 3], 0.125, 0),
                opts(Padding::Valid, 1, 1, Activation::None),
                true,
            )
        };
        let err = |g: &mut Graph, n: &Node| lower_in(g, n).unwrap_err().to_string();
        assert!(lower_in(&mut base().0, &base().1).is_ok());

        let (mut g, n) = base();
        g.tensors[1].quant.as_mut().unwrap().axis = 1;
        assert!(err(&mut g, &n).contains("axis 1"));

        let (mut g, n) = base();
        g.tensors[1].dtype = DataType::Other("int4");
        assert!(err(&mut g, &n).contains("int4"));

        let (mut g, n) = base();
        g.tensors[0].dtype = DataType::Int16;
        let e = lower_in(&mut g, &n).map(|_| ()).map_err(|e| e.to_string());
        assert!(e.is_err(), "int16 input with an int8 output: {e:?}");

        let (mut g, n) = base();
        g.tensors[3].dtype = DataType::Int64;
        assert!(err(&mut g, &n).contains("int64"));

        let (mut g, n) = base();
        g.tensors[1].quant = Some(Quantization::per_tensor(0.1, 3));
        assert!(err(&mut g, &n).contains("zero point 3"));

        let (mut g, n) = base();
        g.tensors[1].quant.as_mut().unwrap().zero_points = vec![0, 1, 0];
        assert!(err(&mut g, &n).contains("non-zero zero points"));

        let (g0, mut n) = base();
        n.op = Operator::Conv2d(opts(Padding::Valid, 1, 1, Activation::Tanh));
        assert!(err(&mut g0.clone(), &n).contains("Tanh"));

        let (mut g, mut n) = base();
        n.op = Operator::Conv2d(opts(Padding::Valid, 0, 1, Activation::None));
        assert!(err(&mut g, &n).contains("stride_h = 0"));

        let (mut g, n) = base();
        g.tensors[2].shape = vec![1, 3, 3, 3];
        assert!(err(&mut g, &n).contains("gives 2×2"));

        let (mut g, n) = base();
        g.tensors[0].shape = vec![1, 4, 4, 3];
        assert!(err(&mut g, &n).contains("grouped"));
    }
}
