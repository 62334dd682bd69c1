//! Post-training quantization: a float graph and activation ranges → an int8 graph following the
//! TFLite int8 quantization spec, ready for [`crate::compile::compile`].
//!
//! - Activations (graph inputs and every operator output): int8, asymmetric, per tensor.
//!   The range is widened to contain 0, `scale = (hi − lo) / 255`,
//!   `zero_point = clamp(round(−128 − lo / scale), −128, 127)`.
//! - Operators whose int8 kernels require it share their input's parameters: RESHAPE,
//!   SQUEEZE, MAX_POOL_2D, AVERAGE_POOL_2D, PAD; CONCATENATION gets the union range on its
//!   inputs and output. SOFTMAX and LOGISTIC outputs use scale 1/256, zero point −128; TANH
//!   scale 1/128, zero point 0.
//! - Weights of CONV_2D and FULLY_CONNECTED: int8 symmetric per output channel (axis 0);
//!   DEPTHWISE_CONV_2D per channel along axis 3. `scale = max|w| / 127`, values in [−127, 127].
//! - Biases: int32, `scale = input_scale × weight_scale[c]`, zero point 0.
//!
//! Graph inputs and outputs become int8 too (as the TFLite converter's full-integer mode with
//! int8 I/O); [`io_quant`] gives their parameters for feeding and reading the model.

use crate::error::CompileError;
use crate::ir::{DataType, Graph, Node, Operator, Quantization, Tensor, TensorId};

pub mod f16;
#[cfg(feature = "float")]
pub mod gptq;

/// Quantization parameters of an int8 activation with real range `[lo, hi]`.
pub fn activation_quant(lo: f32, hi: f32) -> (f32, i64) {
    let lo = lo.min(0.0);
    let hi = hi.max(0.0);
    let mut scale = (hi - lo) / 255.0;
    if scale.is_nan() || scale <= 0.0 || !scale.is_finite() {
        scale = 1.0 / 255.0;
    }
    let zp = (-128.0 - f64::from(lo) / f64::from(scale)).round();
    (scale, zp.clamp(-128.0, 127.0) as i64)
}

/// Symmetric per-channel int8 quantization of `w` (row-major, `shape`) along `axis`.
/// Returns the int8 bytes and the scales.
pub fn quantize_weights(w: &[f32], shape: &[usize], axis: usize) -> (Vec<u8>, Vec<f32>) {
    let channels = shape.get(axis).copied().unwrap_or(1).max(1);
    let inner: usize = shape.iter().skip(axis + 1).product::<usize>().max(1);
    let mut amax = vec![0f32; channels];
    for (i, &v) in w.iter().enumerate() {
        let c = (i / inner) % channels;
        amax[c] = amax[c].max(v.abs());
    }
    let scales: Vec<f32> = amax
        .iter()
        .map(|&a| if a > 0.0 { a / 127.0 } else { 1.0 })
        .collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / inner) % channels;
            ((v / scales[c]).round().clamp(-127.0, 127.0) as i8) as u8
        })
        .collect();
    (q, scales)
}

/// A scale and a zero point.
pub type QuantParams = (f32, i64);

/// The int8 parameters of the graph inputs and outputs of a quantized graph.
pub fn io_quant(g: &Graph) -> (Vec<QuantParams>, Vec<QuantParams>) {
    let f = |ids: &[TensorId]| {
        ids.iter()
            .map(|&i| g.tensors[i].scale_zp().unwrap_or((1.0, 0)))
            .collect()
    };
    (f(&g.inputs), f(&g.outputs))
}

fn f32s(t: &Tensor) -> Option<Vec<f32>> {
    if t.dtype != DataType::Float32 {
        return None;
    }
    let d = t.data.as_ref()?;
    Some(
        d.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

/// The numeric recipe of one layer, chosen per node by `mote quantize --scheme` and by `mote fit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// int8 per-channel weights, int8 activations (the TFLite int8 spec; bit-exact with TFLM).
    #[default]
    Int8,
    /// Packed int4 per-channel weights (two per byte), int8 activations.
    Int4Weights,
    /// int16 activations with int8 weights (TFLite's 16x8 scheme).
    A16W8,
    /// f16 weights, f32 activations and compute.
    F16,
}

impl Precision {
    /// Every precision, most compact first.
    pub const ALL: [Precision; 4] = [
        Precision::Int4Weights,
        Precision::Int8,
        Precision::A16W8,
        Precision::F16,
    ];

    /// The name used on the command line (`int8`, `int4w`, `a16w8`, `f16`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::Int8 => "int8",
            Precision::Int4Weights => "int4w",
            Precision::A16W8 => "a16w8",
            Precision::F16 => "f16",
        }
    }
}

impl Precision {
    /// Whether [`quantize_mixed`] has a recipe for `op` at this precision. Every operator
    /// with an int8 recipe accepts [`Precision::Int8`] and [`Precision::Int4Weights`] (which
    /// only changes the weights of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED); 16x8
    /// covers the MAC operators, pooling, reshapes, ADD/SUB/MUL, SOFTMAX, LOGISTIC, TANH,
    /// RELU/RELU6 and MEAN (the others stay int8 in a 16x8 model, behind conversions); f16
    /// covers the operators with float32 kernels (`ptq::f16`).
    pub fn has_recipe(self, op: &Operator) -> bool {
        match self {
            Precision::Int8 | Precision::Int4Weights => true,
            Precision::A16W8 => a16_op(op),
            Precision::F16 => f16::has_recipe(op),
        }
    }

    /// The per-node precisions of scheme `self` applied to a whole graph: `self` wherever it has
    /// a recipe, int8 elsewhere (what `mote quantize --scheme` uses).
    pub fn for_graph(self, float: &Graph) -> Vec<Precision> {
        float
            .nodes
            .iter()
            .map(|n| {
                if self.has_recipe(&n.op) {
                    self
                } else {
                    Precision::Int8
                }
            })
            .collect()
    }

    /// Parses a command-line name (`int8`, `int4w`, `a16w8`, `f16`).
    pub fn from_name(name: &str) -> Option<Precision> {
        Precision::ALL.into_iter().find(|p| p.name() == name)
    }
}

fn is_mac(op: &Operator) -> bool {
    matches!(
        op,
        Operator::Conv2d(_) | Operator::DepthwiseConv2d(_) | Operator::FullyConnected { .. }
    )
}

/// Operators with a 16x8 kernel in the runtime.
fn a16_op(op: &Operator) -> bool {
    is_mac(op)
        || a16_binary(op)
        || matches!(
            op,
            Operator::MaxPool2d(_)
                | Operator::AveragePool2d(_)
                | Operator::Reshape
                | Operator::Squeeze
                | Operator::Softmax { .. }
                | Operator::Logistic
                | Operator::Tanh
                | Operator::Relu
                | Operator::Relu6
                | Operator::Mean { .. }
        )
}

/// 16x8 element-wise ops whose inputs are all activations (a constant operand gets an int16
/// copy of its float values).
fn a16_binary(op: &Operator) -> bool {
    matches!(
        op,
        Operator::Add { .. } | Operator::Sub { .. } | Operator::Mul { .. }
    )
}

/// The output quantization of a 16x8 node that is not a MAC: `None` when it comes from the
/// calibrated range (ADD, SUB, MUL, MEAN), TFLite's fixed 2⁻¹⁵ (SOFTMAX, LOGISTIC, TANH),
/// otherwise the input's (pooling, reshapes, RELU, RELU6).
fn a16_fixed_quant(op: &Operator) -> Option<Option<QuantParams>> {
    match op {
        _ if a16_binary(op) || matches!(op, Operator::Mean { .. }) => None,
        Operator::Softmax { .. } | Operator::Logistic | Operator::Tanh => {
            Some(Some((1.0 / 32768.0, 0)))
        }
        _ => Some(None),
    }
}

/// Symmetric int16 parameters of an activation with real range `[lo, hi]` (zero point 0, as
/// TFLite's 16x8 scheme requires).
pub fn activation_quant16(lo: f32, hi: f32) -> QuantParams {
    let m = lo.abs().max(hi.abs());
    let scale = m / 32767.0;
    if scale.is_finite() && scale > 0.0 {
        (scale, 0)
    } else {
        (1.0 / 32767.0, 0)
    }
}

/// Symmetric per-channel int4 quantization of `w` along `axis`: values in `[-7, 7]`, one byte
/// per value (pack with `mote_runtime::ops::int4::pack_int4`), and the scales of
/// [`clipped_scales`] (each channel's scale minimizes its squared rounding error).
pub fn quantize_weights_int4(w: &[f32], shape: &[usize], axis: usize) -> (Vec<i8>, Vec<f32>) {
    let channels = shape.get(axis).copied().unwrap_or(1).max(1);
    let inner: usize = shape.iter().skip(axis + 1).product::<usize>().max(1);
    let scales = clipped_scales(w, shape, axis, 7);
    let q = w
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / inner) % channels;
            (v / scales[c]).round().clamp(-7.0, 7.0) as i8
        })
        .collect();
    (q, scales)
}

/// Per-channel scales (along `axis`) for symmetric quantization to `[-qmax, qmax]` that
/// minimize each channel's squared error `Σ (w − s·clamp(round(w / s)))²`, searched over
/// `s = α · max|w| / qmax` for α from 1 down to 0.5 in steps of 0.01 (clipping the largest
/// weights when that rounds the rest more finely; at 4 bits this typically halves the error of
/// `max|w| / qmax`). All-zero channels get 1.
pub fn clipped_scales(w: &[f32], shape: &[usize], axis: usize, qmax: i32) -> Vec<f32> {
    let channels = shape.get(axis).copied().unwrap_or(1).max(1);
    let inner: usize = shape.iter().skip(axis + 1).product::<usize>().max(1);
    let qmax = qmax.max(1) as f32;
    let mut per: Vec<Vec<f32>> = vec![Vec::new(); channels];
    for (i, &v) in w.iter().enumerate() {
        per[(i / inner) % channels].push(v);
    }
    let error = |v: &[f32], s: f32| -> f64 {
        v.iter()
            .map(|&v| {
                let d = f64::from(v) - f64::from((v / s).round().clamp(-qmax, qmax) * s);
                d * d
            })
            .sum()
    };
    per.iter()
        .map(|v| {
            let a = v.iter().fold(0f32, |m, x| m.max(x.abs()));
            if a <= 0.0 || !a.is_finite() {
                return 1.0;
            }
            let mut best = (error(v, a / qmax), a / qmax);
            for k in 1..=50 {
                let s = a * (1.0 - k as f32 / 100.0) / qmax;
                let e = error(v, s);
                if e < best.0 {
                    best = (e, s);
                }
            }
            best.1
        })
        .collect()
}

/// Quantizes the float bias `b` at scales `in_scale × weight_scale[c]` to int32 or int64 bytes.
fn quantize_bias(b: &[f32], in_scale: f32, w_scales: &[f32], wide: bool) -> (Vec<u8>, Vec<f32>) {
    let scales: Vec<f32> = w_scales.iter().map(|s| in_scale * s).collect();
    let data = b
        .iter()
        .zip(&scales)
        .flat_map(|(&v, &s)| {
            let q = (f64::from(v) / f64::from(s)).round();
            if wide {
                (q.clamp(-(2f64.powi(47)), 2f64.powi(47)) as i64)
                    .to_le_bytes()
                    .to_vec()
            } else {
                (q.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32)
                    .to_le_bytes()
                    .to_vec()
            }
        })
        .collect();
    (data, scales)
}

/// The activation domain a tensor lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Domain {
    Int8,
    Int16,
}

/// Quantizes a prepared float graph with one [`Precision`] per node (`per_node[i]` for
/// `float.nodes[i]`; nodes past the end of `per_node` get [`Precision::Int8`]), inserting the
/// conversions needed where neighbouring layers differ.
///
/// - [`Precision::Int8`]: as [`quantize_int8`] (an all-int8 call is exactly `quantize_int8`).
/// - [`Precision::Int4Weights`]: CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED weights become
///   packed int4, symmetric per channel (scales of [`clipped_scales`], values in `[-7, 7]`), the bias
///   is requantized to the new scales; activations stay int8. Other ops: as int8.
/// - [`Precision::A16W8`]: the node's activations are int16, symmetric (`scale = max(|lo|,
///   |hi|) / 32767`, zero point 0; pooling, reshapes, RELU and RELU6 keep their input's,
///   SOFTMAX / LOGISTIC / TANH output 2⁻¹⁵ as TFLite's 16x8), its weights int8 per channel, its
///   bias int64; a constant ADD/SUB/MUL operand is requantized to int16 from its float
///   values. A QUANTIZE (int8 ↔ int16 requantization) is inserted on every edge between an
///   int16 and an int8 node.
/// - [`Precision::F16`]: float16 weights, float32 activations, biases and arithmetic, with a
///   DEQUANTIZE / QUANTIZE on every edge to a quantized neighbour (see [`mod@f16`]); graph inputs
///   read only by f16 nodes and graph outputs of f16 nodes are float32.
///
/// Except where f16 makes them float32, the graph's inputs and outputs keep the int8 model's
/// types and parameters: an int16 output gets a final QUANTIZE back to int8 (the output tensor
/// keeps its name, the int16 one gets a `/int16` suffix), so a caller feeds and reads every
/// scheme the same way ([`io_quant`]).
///
/// Errors: [`CompileError::Unsupported`] naming the node and the precision it has no recipe for
/// (see [`Precision::has_recipe`]).
pub fn quantize_mixed(
    float: &Graph,
    ranges: &[Option<(f32, f32)>],
    per_node: &[Precision],
) -> Result<Graph, CompileError> {
    let prec = |i: usize| per_node.get(i).copied().unwrap_or_default();
    for (index, node) in float.nodes.iter().enumerate() {
        let p = prec(index);
        if !p.has_recipe(&node.op) {
            return Err(CompileError::Unsupported {
                index,
                op: node.op.name().to_string(),
                reason: format!("precision {} has no recipe for this operator", p.name()),
            });
        }
    }
    // f16: the integer recipes with int8 in its place, then the f16 nodes back to float.
    if (0..float.nodes.len()).any(|i| prec(i) == Precision::F16) {
        let is_f16: Vec<bool> = (0..float.nodes.len())
            .map(|i| prec(i) == Precision::F16)
            .collect();
        let integer: Vec<Precision> = (0..float.nodes.len())
            .map(|i| match prec(i) {
                Precision::F16 => Precision::Int8,
                p => p,
            })
            .collect();
        let g = quantize_mixed(float, ranges, &integer)?;
        return f16::apply(float, g, &is_f16);
    }
    let mut g = quantize_int8(float, ranges)?;
    if (0..float.nodes.len()).all(|i| prec(i) == Precision::Int8) {
        return Ok(g);
    }
    let unsupported = |index: usize, reason: String| CompileError::Unsupported {
        index,
        op: float.nodes[index].op.name().to_string(),
        reason,
    };
    // Int4 weights.
    for (index, node) in float.nodes.iter().enumerate() {
        if prec(index) != Precision::Int4Weights || !is_mac(&node.op) {
            continue;
        }
        let axis = if matches!(node.op, Operator::DepthwiseConv2d(_)) {
            3
        } else {
            0
        };
        let wid = node
            .inputs
            .get(1)
            .copied()
            .flatten()
            .ok_or_else(|| unsupported(index, "no weights".into()))?;
        let wt = &float.tensors[wid];
        let w = f32s(wt)
            .ok_or_else(|| unsupported(index, "weights are not float32 constants".into()))?;
        let (q, scales) = quantize_weights_int4(&w, &wt.shape, axis);
        let mut packed = vec![0u8; q.len().div_ceil(2)];
        mote_runtime::ops::int4::pack_int4(&q, &mut packed)
            .ok_or_else(|| unsupported(index, "int4 packing".into()))?;
        let in_scale = node.inputs[0]
            .and_then(|i| g.tensors[i].scale_zp())
            .map(|q| q.0)
            .ok_or_else(|| unsupported(index, "input not quantized".into()))?;
        let t = &mut g.tensors[wid];
        t.dtype = DataType::Int4;
        t.data = Some(packed);
        t.quant = Some(Quantization {
            zero_points: vec![0; scales.len()],
            scales: scales.clone(),
            axis,
        });
        if let Some(bid) = node.inputs.get(2).copied().flatten() {
            let b = f32s(&float.tensors[bid])
                .ok_or_else(|| unsupported(index, "bias is not a float32 constant".into()))?;
            let (data, bscales) = quantize_bias(&b, in_scale, &scales, false);
            let t = &mut g.tensors[bid];
            t.data = Some(data);
            t.quant = Some(Quantization {
                zero_points: vec![0; bscales.len()],
                scales: bscales,
                axis: 0,
            });
        }
    }
    if (0..float.nodes.len()).all(|i| prec(i) != Precision::A16W8) {
        return Ok(g);
    }
    // 16x8: rewrite the node list with int16 domains and conversions.
    let int8_quant: Vec<Option<Quantization>> = g.tensors.iter().map(|t| t.quant.clone()).collect();
    let mut domain: Vec<Domain> = vec![Domain::Int8; g.tensors.len()];
    let mut converted: std::collections::HashMap<(TensorId, Domain), TensorId> =
        std::collections::HashMap::new();
    let mut nodes = Vec::with_capacity(g.nodes.len());
    let old_nodes = std::mem::take(&mut g.nodes);
    for (index, mut node) in old_nodes.into_iter().enumerate() {
        let a16 = prec(index) == Precision::A16W8;
        let want = if a16 { Domain::Int16 } else { Domain::Int8 };
        for (k, slot) in node.inputs.iter_mut().enumerate() {
            let Some(t) = *slot else { continue };
            if a16 && a16_binary(&node.op) && g.tensors[t].is_const() {
                // A constant operand: an int16 copy of its float values.
                let c = *converted.entry((t, Domain::Int16)).or_insert_with(|| {
                    let v = f32s(&float.tensors[t]).unwrap_or_default();
                    let m = v.iter().fold(0f32, |m, x| m.max(x.abs()));
                    let (s, _) = activation_quant16(-m, m);
                    let data = v
                        .iter()
                        .flat_map(|x| {
                            ((x / s).round().clamp(-32767.0, 32767.0) as i16).to_le_bytes()
                        })
                        .collect();
                    let src = &g.tensors[t];
                    g.tensors.push(Tensor {
                        name: format!("{}/int16", src.name),
                        shape: src.shape.clone(),
                        dtype: DataType::Int16,
                        quant: Some(Quantization::per_tensor(s, 0)),
                        data: Some(data),
                    });
                    domain.push(Domain::Int16);
                    g.tensors.len() - 1
                });
                *slot = Some(c);
                continue;
            }
            if g.tensors[t].is_const()
                || domain[t] == want
                || (a16 && k > 0 && !a16_binary(&node.op))
            {
                continue;
            }
            let c = *converted.entry((t, want)).or_insert_with(|| {
                let src = &g.tensors[t];
                let (dtype, quant) = match want {
                    Domain::Int8 => (DataType::Int8, int8_quant[t].clone()),
                    Domain::Int16 => {
                        let (lo, hi) = ranges.get(t).copied().flatten().unwrap_or((-1.0, 1.0));
                        let (s, z) = activation_quant16(lo, hi);
                        (DataType::Int16, Some(Quantization::per_tensor(s, z)))
                    }
                };
                let tensor = Tensor {
                    name: format!("{}/{}", src.name, dtype.name()),
                    shape: src.shape.clone(),
                    dtype,
                    quant,
                    data: None,
                };
                g.tensors.push(tensor);
                domain.push(want);
                let id = g.tensors.len() - 1;
                nodes.push(Node {
                    op: Operator::Quantize,
                    inputs: vec![Some(t)],
                    outputs: vec![id],
                });
                id
            });
            *slot = Some(c);
        }
        if a16 {
            let out = node.outputs[0];
            let input = node.inputs.first().copied().flatten();
            let q = match a16_fixed_quant(&node.op) {
                _ if is_mac(&node.op) => None,
                Some(Some(q)) => Some(q),
                Some(None) => Some(
                    input
                        .and_then(|i| g.tensors[i].scale_zp())
                        .ok_or_else(|| unsupported(index, "input not quantized".into()))?,
                ),
                None => None,
            };
            let q = match q {
                Some(q) => q,
                None => {
                    let (lo, hi) = ranges.get(out).copied().flatten().ok_or_else(|| {
                        unsupported(index, format!("tensor {out} was never seen by calibration"))
                    })?;
                    activation_quant16(lo, hi)
                }
            };
            let t = &mut g.tensors[out];
            t.dtype = DataType::Int16;
            t.quant = Some(Quantization::per_tensor(q.0, q.1));
            domain[out] = Domain::Int16;
            if is_mac(&node.op) {
                let in_scale = input
                    .and_then(|i| g.tensors[i].scale_zp())
                    .map(|q| q.0)
                    .ok_or_else(|| unsupported(index, "input not quantized".into()))?;
                let w_scales = node
                    .inputs
                    .get(1)
                    .copied()
                    .flatten()
                    .and_then(|w| g.tensors[w].quant.as_ref().map(|q| q.scales.clone()))
                    .ok_or_else(|| unsupported(index, "weights not quantized".into()))?;
                if let Some(bid) = node.inputs.get(2).copied().flatten() {
                    let b = f32s(&float.tensors[bid]).ok_or_else(|| {
                        unsupported(index, "bias is not a float32 constant".into())
                    })?;
                    let (data, bscales) = quantize_bias(&b, in_scale, &w_scales, true);
                    let t = &mut g.tensors[bid];
                    t.dtype = DataType::Int64;
                    t.data = Some(data);
                    t.quant = Some(Quantization {
                        zero_points: vec![0; bscales.len()],
                        scales: bscales,
                        axis: 0,
                    });
                }
            }
        }
        nodes.push(node);
    }
    // Graph outputs keep the int8 model's type and parameters.
    for k in 0..g.outputs.len() {
        let t = g.outputs[k];
        if domain[t] == Domain::Int8 {
            continue;
        }
        let mut out = g.tensors[t].clone();
        out.dtype = DataType::Int8;
        out.quant = int8_quant[t].clone();
        g.tensors[t].name = format!("{}/int16", out.name);
        g.tensors.push(out);
        let id = g.tensors.len() - 1;
        nodes.push(Node {
            op: Operator::Quantize,
            inputs: vec![Some(t)],
            outputs: vec![id],
        });
        g.outputs[k] = id;
    }
    g.nodes = nodes;
    Ok(g)
}

/// Quantizes a prepared float graph (see `float::prepare`) with activation `ranges` (one per
/// tensor, from [`crate::calibrate::Calibrator::ranges`]).
///
/// Errors: [`CompileError::Unsupported`] for an operator without an int8 recipe, or an
/// activation that calibration never saw.
pub fn quantize_int8(float: &Graph, ranges: &[Option<(f32, f32)>]) -> Result<Graph, CompileError> {
    let mut g = float.clone();
    let unsupported = |index: usize, op: &Operator, reason: String| CompileError::Unsupported {
        index,
        op: op.name().to_string(),
        reason,
    };
    let act = |g: &mut Graph, id: TensorId, q: (f32, i64)| {
        let t = &mut g.tensors[id];
        t.dtype = DataType::Int8;
        t.quant = Some(Quantization::per_tensor(q.0, q.1));
    };
    let range_q = |id: TensorId, index: usize, op: &Operator| {
        ranges
            .get(id)
            .copied()
            .flatten()
            .map(|(lo, hi)| activation_quant(lo, hi))
            .ok_or_else(|| {
                unsupported(
                    index,
                    op,
                    format!("tensor {id} was never seen by calibration"),
                )
            })
    };
    for &i in &float.inputs {
        let q = range_q(i, 0, &Operator::Quantize)?;
        act(&mut g, i, q);
    }
    for (index, node) in float.nodes.iter().enumerate() {
        let op = &node.op;
        let out = node.outputs[0];
        let in0 = node.inputs.first().copied().flatten();
        let in_q = in0.and_then(|i| g.tensors[i].scale_zp());
        let q = match op {
            Operator::Reshape
            | Operator::Squeeze
            | Operator::MaxPool2d(_)
            | Operator::AveragePool2d(_)
            | Operator::Pad => {
                in_q.ok_or_else(|| unsupported(index, op, "input not quantized".into()))?
            }
            Operator::Softmax { .. } | Operator::Logistic => (1.0 / 256.0, -128),
            Operator::Tanh => (1.0 / 128.0, 0),
            Operator::Concatenation { .. } => {
                let mut lo = f32::INFINITY;
                let mut hi = f32::NEG_INFINITY;
                for id in node.inputs.iter().flatten().chain(node.outputs.iter()) {
                    if let Some((a, b)) = ranges.get(*id).copied().flatten() {
                        lo = lo.min(a);
                        hi = hi.max(b);
                    }
                }
                let q = activation_quant(lo, hi);
                for id in node.inputs.iter().flatten() {
                    if !g.tensors[*id].is_const() {
                        act(&mut g, *id, q);
                    }
                }
                q
            }
            Operator::Conv2d(_)
            | Operator::DepthwiseConv2d(_)
            | Operator::FullyConnected { .. }
            | Operator::Add { .. }
            | Operator::Sub { .. }
            | Operator::Mul { .. }
            | Operator::Relu
            | Operator::Relu6
            | Operator::Mean { .. } => range_q(out, index, op)?,
            _ => return Err(unsupported(index, op, "no int8 recipe".into())),
        };
        act(&mut g, out, q);
        // Weights and biases.
        if let Operator::Conv2d(_)
        | Operator::DepthwiseConv2d(_)
        | Operator::FullyConnected { .. } = op
        {
            let axis = if matches!(op, Operator::DepthwiseConv2d(_)) {
                3
            } else {
                0
            };
            let wid = node
                .inputs
                .get(1)
                .copied()
                .flatten()
                .ok_or_else(|| unsupported(index, op, "no weights".into()))?;
            let wt = &float.tensors[wid];
            let w = f32s(wt).ok_or_else(|| {
                unsupported(index, op, "weights are not float32 constants".into())
            })?;
            let (qw, scales) = quantize_weights(&w, &wt.shape, axis);
            let (in_scale, _) =
                in_q.ok_or_else(|| unsupported(index, op, "input not quantized".into()))?;
            {
                let t = &mut g.tensors[wid];
                t.dtype = DataType::Int8;
                t.data = Some(qw);
                t.quant = Some(Quantization {
                    zero_points: vec![0; scales.len()],
                    scales: scales.clone(),
                    axis,
                });
            }
            if let Some(bid) = node.inputs.get(2).copied().flatten() {
                let b = f32s(&float.tensors[bid]).ok_or_else(|| {
                    unsupported(index, op, "bias is not a float32 constant".into())
                })?;
                if b.len() != scales.len() {
                    return Err(unsupported(
                        index,
                        op,
                        format!("{} biases for {} channels", b.len(), scales.len()),
                    ));
                }
                let bscales: Vec<f32> = scales.iter().map(|s| in_scale * s).collect();
                let data = b
                    .iter()
                    .zip(&bscales)
                    .flat_map(|(&v, &s)| {
                        let q = (f64::from(v) / f64::from(s)).round();
                        (q.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32).to_le_bytes()
                    })
                    .collect();
                let t = &mut g.tensors[bid];
                t.dtype = DataType::Int32;
                t.data = Some(data);
                t.quant = Some(Quantization {
                    zero_points: vec![0; bscales.len()],
                    scales: bscales,
                    axis: 0,
                });
            }
        }
        // Float constants used as operands of arithmetic (e.g. ADD of a constant).
        if let Operator::Add { .. } | Operator::Sub { .. } | Operator::Mul { .. } = op {
            for id in node.inputs.iter().flatten() {
                if let Some(v) = f32s(&float.tensors[*id]) {
                    let lo = v.iter().copied().fold(0f32, f32::min);
                    let hi = v.iter().copied().fold(0f32, f32::max);
                    let (s, z) = activation_quant(lo, hi);
                    let t = &mut g.tensors[*id];
                    t.dtype = DataType::Int8;
                    t.data = Some(
                        v.iter()
                            .map(|&x| {
                                (((x / s).round() + z as f32).clamp(-128.0, 127.0) as i8) as u8
                            })
                            .collect(),
                    );
                    t.quant = Some(Quantization::per_tensor(s, z));
                }
            }
        }
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_params_contain_zero() {
        let (s, z) = activation_quant(0.0, 6.0);
        assert!((s - 6.0 / 255.0).abs() < 1e-7);
        assert_eq!(z, -128);
        let (s, z) = activation_quant(-1.0, 1.0);
        assert!((s - 2.0 / 255.0).abs() < 1e-7);
        // −128 − (−1 / (2/255)) = −0.5, rounded half away from zero.
        assert_eq!(z, -1);
    }

    #[test]
    fn weights_per_channel() {
        let w = [1.0, -0.5, 0.25, 0.0, 0.0, 0.0];
        let (q, s) = quantize_weights(&w, &[2, 3], 0);
        assert_eq!(s[0], 1.0 / 127.0);
        assert_eq!(s[1], 1.0);
        assert_eq!(q[0] as i8, 127);
        assert_eq!(q[1] as i8, -64);
        assert_eq!(q[3], 0);
    }
}
