//! The float reference executor: runs a float [`Graph`] over burn tensors.
//!
//! It is the reference for calibration ([`crate::calibrate`]) and for the fidelity report
//! ([`crate::fidelity`]). Tensors are kept in the IR's layout (NHWC) as `Vec<f32>`; the heavy
//! operators (convolutions, matrix products, pools, softmax, element-wise arithmetic) run on
//! burn tensors on the [`Device`] given to [`FloatExecutor::new`] (NdArray for calibration; any
//! other burn device works the same). Every tensor value of a run is returned, so that
//! observers can see every activation.
//!
//! [`prepare`] turns a float model as converters write it into a pure float graph first:
//! hybrid weights (int8 constants with a scale, consumed by float operators) and
//! DEQUANTIZE of constants (f16 or int8 weights) become float32 constants.

use burn::tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use burn::tensor::{activation, Device, Tensor, TensorData};

use crate::error::CompileError;
use crate::ir::{
    Activation, DataType, Graph, Node, Operator, Padding, Tensor as IrTensor, TensorId,
};

/// The NdArray (CPU) device used for calibration and fidelity runs.
#[allow(deprecated)] // burn 0.22 marks NdArray deprecated in favour of Flex; the brief fixes NdArray
pub fn default_device() -> Device {
    Device::ndarray()
}

/// Float32 data of a constant tensor (float32, float16, or int8/uint8/int32 with a
/// quantization scale, dequantized), or `None` for other constants.
pub fn const_f32(t: &IrTensor) -> Option<Vec<f32>> {
    let data = t.data.as_ref()?;
    let deq = |q: i64, i: usize| -> f32 {
        let qp = t.quant.as_ref();
        let (s, z) = match qp {
            Some(q) if q.scales.len() > 1 => {
                // Per-channel along q.axis.
                let inner: usize = t.shape.iter().skip(q.axis + 1).product();
                let dim = t.shape.get(q.axis).copied().unwrap_or(1).max(1);
                let c = (i / inner.max(1)) % dim;
                (
                    q.scales.get(c).copied().unwrap_or(0.0),
                    q.zero_points.get(c).copied().unwrap_or(0),
                )
            }
            Some(q) => (q.scale(), q.zero_point()),
            None => (1.0, 0),
        };
        ((q - z) as f32) * s
    };
    match t.dtype {
        DataType::Float32 => Some(
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        DataType::Float16 => Some(
            data.chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        ),
        DataType::Int8 if t.quant.is_some() => Some(
            data.iter()
                .enumerate()
                .map(|(i, &b)| deq(i64::from(b as i8), i))
                .collect(),
        ),
        DataType::UInt8 if t.quant.is_some() => Some(
            data.iter()
                .enumerate()
                .map(|(i, &b)| deq(i64::from(b), i))
                .collect(),
        ),
        DataType::Int32 if t.quant.is_some() => Some(
            data.chunks_exact(4)
                .enumerate()
                .map(|(i, b)| deq(i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])), i))
                .collect(),
        ),
        _ => None,
    }
}

/// Stores `v` as a float32 constant in `t`.
fn set_f32(t: &mut IrTensor, v: &[f32]) {
    t.dtype = DataType::Float32;
    t.quant = None;
    t.data = Some(v.iter().flat_map(|x| x.to_le_bytes()).collect());
}

/// Integer data of an int32/int64 constant.
pub fn const_ints(t: &IrTensor) -> Option<Vec<i64>> {
    let data = t.data.as_ref()?;
    match t.dtype {
        DataType::Int32 => Some(
            data.chunks_exact(4)
                .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
        ),
        DataType::Int64 => Some(
            data.chunks_exact(8)
                .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect(),
        ),
        _ => None,
    }
}

/// Which inputs of `op` are float weights or biases (dequantized by [`prepare`]).
fn weight_inputs(op: &Operator) -> &'static [usize] {
    match op {
        Operator::Conv2d(_) | Operator::DepthwiseConv2d(_) | Operator::FullyConnected { .. } => {
            &[1, 2]
        }
        _ => &[],
    }
}

/// Makes a float model a pure float graph: dequantizes hybrid weights, folds DEQUANTIZE of
/// constants, and checks that every activation is float32.
///
/// Errors: [`CompileError::Unsupported`] for a node the float executor cannot run, or a
/// non-float activation.
pub fn prepare(graph: &Graph) -> Result<Graph, CompileError> {
    let mut g = graph.clone();
    // Fold DEQUANTIZE of constants.
    let mut keep = Vec::with_capacity(g.nodes.len());
    for node in std::mem::take(&mut g.nodes) {
        if node.op == Operator::Dequantize {
            if let (Some(Some(i)), Some(&o)) = (node.inputs.first(), node.outputs.first()) {
                if g.tensors[*i].is_const() {
                    let v = const_f32(&g.tensors[*i]).ok_or_else(|| CompileError::Unsupported {
                        index: keep.len(),
                        op: "DEQUANTIZE".into(),
                        reason: format!("constant of type {}", g.tensors[*i].dtype),
                    })?;
                    set_f32(&mut g.tensors[o], &v);
                    continue;
                }
            }
        }
        keep.push(node);
    }
    g.nodes = keep;
    // Hybrid weights.
    for index in 0..g.nodes.len() {
        let node = g.nodes[index].clone();
        for &k in weight_inputs(&node.op) {
            let Some(Some(id)) = node.inputs.get(k) else {
                continue;
            };
            let t = &g.tensors[*id];
            if t.is_const() && t.dtype != DataType::Float32 {
                let v = const_f32(t).ok_or_else(|| CompileError::Unsupported {
                    index,
                    op: node.op.name().to_string(),
                    reason: format!("weight of type {} without quantization", t.dtype),
                })?;
                set_f32(&mut g.tensors[*id], &v);
            }
        }
        // Every non-constant input and output must be float32.
        for id in node.inputs.iter().flatten().chain(node.outputs.iter()) {
            let t = &g.tensors[*id];
            let int_operand = matches!(
                node.op,
                Operator::Reshape | Operator::Pad | Operator::Mean { .. }
            ) && t.is_const();
            if !int_operand && !t.is_const() && t.dtype != DataType::Float32 {
                return Err(CompileError::Unsupported {
                    index,
                    op: node.op.name().to_string(),
                    reason: format!(
                        "tensor {:?} is {}: not a float model (use `mote convert` for int8 models)",
                        t.name, t.dtype
                    ),
                });
            }
        }
        if let Operator::Unsupported { name } = &node.op {
            return Err(CompileError::Unsupported {
                index,
                op: name.clone(),
                reason: "the float executor does not know this operator".into(),
            });
        }
    }
    Ok(g)
}

/// Runs a float graph (prepared by [`prepare`]) on a burn device.
pub struct FloatExecutor<'g> {
    graph: &'g Graph,
    device: Device,
    consts: Vec<Option<Vec<f32>>>,
}

/// All tensor values of one run, by [`TensorId`] (`None` for integer constants and tensors
/// not computed).
pub type Values = Vec<Option<Vec<f32>>>;

impl<'g> FloatExecutor<'g> {
    /// An executor for `graph` (which must have been through [`prepare`]) on `device`.
    pub fn new(graph: &'g Graph, device: Device) -> Self {
        let consts = graph.tensors.iter().map(const_f32).collect();
        FloatExecutor {
            graph,
            device,
            consts,
        }
    }

    /// The graph.
    pub fn graph(&self) -> &Graph {
        self.graph
    }

    /// Runs the graph on `inputs` (one float32 vector per graph input, NHWC) and returns every
    /// tensor's value.
    pub fn run(&self, inputs: &[Vec<f32>]) -> Result<Values, CompileError> {
        let g = self.graph;
        if inputs.len() != g.inputs.len() {
            return Err(bad(format!(
                "the model has {} input(s), {} given",
                g.inputs.len(),
                inputs.len()
            )));
        }
        let mut vals: Values = self.consts.clone();
        for (k, (&id, v)) in g.inputs.iter().zip(inputs).enumerate() {
            if v.len() != g.tensors[id].elements() {
                return Err(bad(format!(
                    "input {k}: {} values, the model takes {}",
                    v.len(),
                    g.tensors[id].elements()
                )));
            }
            vals[id] = Some(v.clone());
        }
        for (index, node) in g.nodes.iter().enumerate() {
            let out = self.eval(index, node, &vals)?;
            let o = node.outputs[0];
            if out.len() != g.tensors[o].elements() {
                return Err(CompileError::InvalidOp {
                    index,
                    op: node.op.name().to_string(),
                    what: format!(
                        "computed {} values, output shape {:?} holds {}",
                        out.len(),
                        g.tensors[o].shape,
                        g.tensors[o].elements()
                    ),
                });
            }
            vals[o] = Some(out);
        }
        Ok(vals)
    }

    /// Runs the graph and returns only its outputs.
    pub fn outputs(&self, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, CompileError> {
        let mut vals = self.run(inputs)?;
        Ok(self
            .graph
            .outputs
            .iter()
            .map(|&o| vals[o].take().unwrap_or_default())
            .collect())
    }

    fn t4(&self, v: &[f32], shape: &[usize]) -> Tensor<4> {
        let s = shape4(shape);
        Tensor::from_data(TensorData::new(v.to_vec(), s.to_vec()), &self.device)
    }

    fn eval(&self, index: usize, node: &Node, vals: &Values) -> Result<Vec<f32>, CompileError> {
        let g = self.graph;
        let err = |what: String| CompileError::InvalidOp {
            index,
            op: node.op.name().to_string(),
            what,
        };
        let input = |k: usize| -> Result<(&[f32], &[usize]), CompileError> {
            let id = node
                .inputs
                .get(k)
                .copied()
                .flatten()
                .ok_or_else(|| err(format!("input {k} is absent")))?;
            let v = vals[id].as_deref().ok_or_else(|| {
                err(format!(
                    "input {k} ({:?}) has no float value",
                    g.tensors[id].name
                ))
            })?;
            Ok((v, &g.tensors[id].shape))
        };
        let opt_input = |k: usize| node.inputs.get(k).copied().flatten();
        let out_shape = &g.tensors[node.outputs[0]].shape;
        let out = match &node.op {
            Operator::Conv2d(o) | Operator::DepthwiseConv2d(o) => {
                let depthwise = matches!(node.op, Operator::DepthwiseConv2d(_));
                let (x, xs) = input(0)?;
                let (w, ws) = input(1)?;
                if xs.len() != 4 || ws.len() != 4 {
                    return Err(err("expects rank-4 input and filter".into()));
                }
                let (n, h, wd, c) = (xs[0], xs[1], xs[2], xs[3]);
                let (kh, kw) = (ws[1], ws[2]);
                let xt = self.t4(x, xs).permute([0, 3, 1, 2]);
                let (wt, groups) = if depthwise {
                    // [1, KH, KW, C·M] → [C·M, 1, KH, KW]
                    (self.t4(w, ws).permute([3, 0, 1, 2]), c)
                } else {
                    // OHWI → OIHW
                    let groups = if ws[3] == 0 || c % ws[3] != 0 {
                        return Err(err(format!("filter depth {} does not divide {c}", ws[3])));
                    } else {
                        c / ws[3]
                    };
                    (self.t4(w, ws).permute([0, 3, 1, 2]), groups)
                };
                let bias = match opt_input(2) {
                    Some(_) => {
                        let (b, _) = input(2)?;
                        Some(Tensor::<1>::from_data(
                            TensorData::new(b.to_vec(), [b.len()]),
                            &self.device,
                        ))
                    }
                    None => None,
                };
                let ph = same_pad(h, kh, o.stride_h, o.dilation_h, o.padding);
                let pw = same_pad(wd, kw, o.stride_w, o.dilation_w, o.padding);
                let opts = ConvOptions {
                    stride: [o.stride_h, o.stride_w],
                    padding: [ph, pw],
                    dilation: [o.dilation_h, o.dilation_w],
                    groups,
                };
                let y = conv2d(xt, wt, bias, opts).permute([0, 2, 3, 1]);
                let _ = n;
                apply_act(y, o.activation, &err)?.to_f32s()
            }
            Operator::FullyConnected {
                activation: act, ..
            } => {
                let (x, _) = input(0)?;
                let (w, ws) = input(1)?;
                if ws.len() != 2 || ws[1] == 0 || x.len() % ws[1] != 0 {
                    return Err(err(format!("weights {ws:?} do not fit the input")));
                }
                let rows = x.len() / ws[1];
                let xt = Tensor::<2>::from_data(
                    TensorData::new(x.to_vec(), [rows, ws[1]]),
                    &self.device,
                );
                let wt = Tensor::<2>::from_data(
                    TensorData::new(w.to_vec(), [ws[0], ws[1]]),
                    &self.device,
                );
                let mut y = xt.matmul(wt.transpose());
                if opt_input(2).is_some() {
                    let (b, _) = input(2)?;
                    let bt = Tensor::<2>::from_data(
                        TensorData::new(b.to_vec(), [1, b.len()]),
                        &self.device,
                    );
                    y = y + bt;
                }
                apply_act(y, *act, &err)?.to_f32s()
            }
            Operator::AveragePool2d(o) | Operator::MaxPool2d(o) => {
                let (x, xs) = input(0)?;
                if xs.len() != 4 {
                    return Err(err("expects a rank-4 input".into()));
                }
                let xt = self.t4(x, xs).permute([0, 3, 1, 2]);
                let ph = same_pad(xs[1], o.filter_h, o.stride_h, 1, o.padding);
                let pw = same_pad(xs[2], o.filter_w, o.stride_w, 1, o.padding);
                let y = if matches!(node.op, Operator::MaxPool2d(_)) {
                    max_pool2d(
                        xt,
                        MaxPoolOptions {
                            kernel_size: [o.filter_h, o.filter_w],
                            stride: [o.stride_h, o.stride_w],
                            padding: [ph, pw],
                            dilation: [1, 1],
                            ceil_mode: false,
                        },
                    )
                } else {
                    avg_pool2d(
                        xt,
                        AvgPoolOptions {
                            kernel_size: [o.filter_h, o.filter_w],
                            stride: [o.stride_h, o.stride_w],
                            padding: [ph, pw],
                            count_include_pad: false,
                            ceil_mode: false,
                        },
                    )
                };
                apply_act(y.permute([0, 2, 3, 1]), o.activation, &err)?.to_f32s()
            }
            Operator::Add { activation: act }
            | Operator::Sub { activation: act }
            | Operator::Mul { activation: act } => {
                let (a, as_) = input(0)?;
                let (b, bs) = input(1)?;
                if as_.len() > 4 || bs.len() > 4 {
                    return Err(err("rank above 4".into()));
                }
                let at = self.t4(a, as_);
                let bt = self.t4(b, bs);
                let y = match node.op {
                    Operator::Add { .. } => at + bt,
                    Operator::Sub { .. } => at - bt,
                    _ => at * bt,
                };
                apply_act(y, *act, &err)?.to_f32s()
            }
            Operator::Reshape | Operator::Squeeze => input(0)?.0.to_vec(),
            Operator::Softmax { beta } => {
                let (x, xs) = input(0)?;
                let last = xs.last().copied().unwrap_or(1).max(1);
                let xt = Tensor::<2>::from_data(
                    TensorData::new(x.to_vec(), [x.len() / last, last]),
                    &self.device,
                );
                activation::softmax(xt.mul_scalar(*beta), 1).to_f32s()
            }
            Operator::Logistic => {
                let (x, xs) = input(0)?;
                activation::sigmoid(self.t4(x, xs)).to_f32s()
            }
            Operator::Tanh => {
                let (x, xs) = input(0)?;
                self.t4(x, xs).tanh().to_f32s()
            }
            Operator::Relu => input(0)?.0.iter().map(|v| v.max(0.0)).collect(),
            Operator::Relu6 => input(0)?.0.iter().map(|v| v.clamp(0.0, 6.0)).collect(),
            Operator::Concatenation {
                axis,
                activation: act,
            } => {
                let mut parts = Vec::new();
                let mut rank = 0;
                for k in 0..node.inputs.len() {
                    let (x, xs) = input(k)?;
                    rank = xs.len();
                    parts.push(self.t4(x, xs));
                }
                if rank > 4 || *axis >= rank.max(1) {
                    return Err(err(format!("axis {axis} of rank {rank}")));
                }
                let y = Tensor::cat(parts, axis + 4 - rank);
                apply_act(y, *act, &err)?.to_f32s()
            }
            Operator::Pad => {
                let (x, xs) = input(0)?;
                let pid = opt_input(1).ok_or_else(|| err("no paddings".into()))?;
                let pads = const_ints(&g.tensors[pid])
                    .ok_or_else(|| err("paddings not constant".into()))?;
                let value = match opt_input(2) {
                    Some(_) => input(2)?.0.first().copied().unwrap_or(0.0),
                    None => 0.0,
                };
                pad_nd(x, xs, &pads, value, out_shape).ok_or_else(|| err("bad paddings".into()))?
            }
            Operator::Mean { .. } => {
                let (x, xs) = input(0)?;
                let aid = opt_input(1).ok_or_else(|| err("no axes".into()))?;
                let axes =
                    const_ints(&g.tensors[aid]).ok_or_else(|| err("axes not constant".into()))?;
                if xs.len() > 4 {
                    return Err(err("rank above 4".into()));
                }
                let mut t = self.t4(x, xs);
                let r = xs.len() as i64;
                for a in axes {
                    let a = if a < 0 { a + r } else { a };
                    if !(0..r).contains(&a) {
                        return Err(err(format!("axis {a} out of range")));
                    }
                    t = t.mean_dim((a + 4 - r) as usize);
                }
                t.to_f32s()
            }
            Operator::Quantize | Operator::Dequantize => {
                return Err(CompileError::Unsupported {
                    index,
                    op: node.op.name().to_string(),
                    reason: "quantize/dequantize of activations in a float model".into(),
                })
            }
            Operator::Unsupported { name } => {
                return Err(CompileError::Unsupported {
                    index,
                    op: name.clone(),
                    reason: "the float executor does not know this operator".into(),
                })
            }
        };
        Ok(out)
    }
}

/// Reads a burn tensor back as `Vec<f32>`.
trait ToF32s {
    fn to_f32s(self) -> Vec<f32>;
}

impl<const D: usize> ToF32s for Tensor<D> {
    fn to_f32s(self) -> Vec<f32> {
        Tensor::into_data(self)
            .try_into_vec::<f32>()
            .unwrap_or_default()
    }
}

fn apply_act<const D: usize>(
    y: Tensor<D>,
    act: Activation,
    err: &dyn Fn(String) -> CompileError,
) -> Result<Tensor<D>, CompileError> {
    Ok(match act {
        Activation::None => y,
        Activation::Relu => y.clamp_min(0.0),
        Activation::Relu6 => y.clamp(0.0, 6.0),
        Activation::ReluN1To1 => y.clamp(-1.0, 1.0),
        Activation::Tanh => y.tanh(),
        Activation::SignBit => return Err(err("fused SIGN_BIT".into())),
    })
}

/// `shape` left-padded with ones to rank 4.
fn shape4(shape: &[usize]) -> [usize; 4] {
    let mut s = [1usize; 4];
    let r = shape.len().min(4);
    s[4 - r..].copy_from_slice(&shape[shape.len() - r..]);
    s
}

/// TFLite padding (begin, end) of one spatial dimension.
pub fn same_pad(
    input: usize,
    filter: usize,
    stride: usize,
    dilation: usize,
    padding: Padding,
) -> (usize, usize) {
    match padding {
        Padding::Valid => (0, 0),
        Padding::Same => {
            let stride = stride.max(1);
            let out = input.div_ceil(stride);
            let eff = (filter.max(1) - 1) * dilation.max(1) + 1;
            let total = ((out.saturating_sub(1)) * stride + eff).saturating_sub(input);
            (total / 2, total - total / 2)
        }
    }
}

/// Constant padding of an N-d row-major tensor.
fn pad_nd(
    x: &[f32],
    xs: &[usize],
    pads: &[i64],
    value: f32,
    out_shape: &[usize],
) -> Option<Vec<f32>> {
    let r = xs.len();
    if pads.len() != 2 * r || out_shape.len() != r {
        return None;
    }
    let before: Vec<usize> = (0..r)
        .map(|d| usize::try_from(pads[2 * d]).ok())
        .collect::<Option<_>>()?;
    for d in 0..r {
        let after = usize::try_from(pads[2 * d + 1]).ok()?;
        if xs[d] + before[d] + after != out_shape[d] {
            return None;
        }
    }
    let mut out = vec![value; out_shape.iter().product()];
    let mut idx = vec![0usize; r];
    for &v in x {
        let mut o = 0;
        for d in 0..r {
            o = o * out_shape[d] + idx[d] + before[d];
        }
        out[o] = v;
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < xs[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Some(out)
}

fn bad(what: String) -> CompileError {
    CompileError::Malformed {
        format: "input",
        what,
    }
}

/// Convenience: the graph input ids and their shapes.
pub fn input_shapes(g: &Graph) -> Vec<(TensorId, Vec<usize>)> {
    g.inputs
        .iter()
        .map(|&i| (i, g.tensors[i].shape.clone()))
        .collect()
}
