//! Fine-tuning a (pruned) float graph with burn autodiff.
//!
//! [`forward`] is a differentiable, batched forward pass over the IR (NHWC kept as
//! `[batch, h, w, c]` burn tensors; the IR's leading batch dimension of 1 becomes `batch`).
//! [`finetune`] trains every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED weight and bias with
//! Adam: with labels, on cross-entropy; without labels, by distillation against a teacher's
//! outputs (soft cross-entropy on the teacher's probabilities when the graph ends in SOFTMAX,
//! mean squared error otherwise); with both, on a mix of the two ([`Targets::Distill`]:
//! cross-entropy on the labels plus Hinton's distillation on temperature-softened logits).
//! [`shifted`] augments image batches with one-pixel shifts.

use std::collections::BTreeMap;

use burn::tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use burn::tensor::{activation, Device, Tensor, TensorData};

use crate::error::CompileError;
use crate::float::{const_f32, const_ints, default_device, same_pad};
use crate::ir::{Activation, Graph, Operator, TensorId};

/// Training settings.
#[derive(Debug, Clone, Copy)]
pub struct FinetuneOptions {
    /// Passes over the training samples.
    pub epochs: usize,
    /// Samples per step.
    pub batch: usize,
    /// Adam learning rate (cosine-decayed to 0 over the run).
    pub lr: f64,
    /// Shuffling seed.
    pub seed: u64,
    /// With [`Targets::Distill`]: the weight of the distillation term (0 = labels only,
    /// 1 = teacher only).
    pub distill: f32,
    /// With [`Targets::Distill`]: the softmax temperature of the distillation term.
    pub temperature: f32,
    /// Quantization-aware fine-tuning: when non-zero, the forward pass sees the weights of
    /// every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED fake-quantized to this many bits,
    /// symmetric per output channel as [`crate::ptq`] quantizes them (`scale = max|w| / qmax`),
    /// with a straight-through gradient; the float weights are what is updated and returned.
    pub qat_bits: u8,
    /// Decoupled weight decay (AdamW): every step multiplies the weights (not the biases) by
    /// `1 − lr · weight_decay`. 0 = plain Adam.
    pub weight_decay: f64,
    /// Views per sample: when above 1, `inputs` (and the targets) hold `views` blocks of the
    /// same `inputs.len() / views` samples (e.g. [`shifted`] or [`shifted_grid`] copies), and
    /// every epoch visits each sample once, in a view drawn at random (so an epoch costs as
    /// much as one over the plain samples, and the views vary from epoch to epoch).
    pub views: usize,
    /// Keep a pruning mask: weights (of CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED) that are
    /// exactly zero at the start are never updated, so N:M or unstructured sparsity survives
    /// the fine-tuning while the other weights train (`crate::fit::sparse`).
    pub keep_zeros: bool,
}

impl Default for FinetuneOptions {
    fn default() -> Self {
        FinetuneOptions {
            epochs: 3,
            batch: 32,
            lr: 5e-3,
            seed: 0,
            distill: 0.0,
            temperature: 1.0,
            qat_bits: 0,
            weight_decay: 0.0,
            views: 1,
            keep_zeros: false,
        }
    }
}

/// What to fit: class labels, or a teacher's outputs (one vector per sample).
pub enum Targets<'a> {
    /// Class indices, one per sample.
    Labels(&'a [u8]),
    /// The teacher's graph outputs (probabilities after a SOFTMAX, or raw values).
    Teacher(&'a [Vec<f32>]),
    /// Class indices and the teacher's *logits* (see [`logits`]) for the same samples: the loss
    /// is `(1 − α)·CE(student, label) + α·T²·CE(softmax(student / T), softmax(teacher / T))`
    /// with `α` = [`FinetuneOptions::distill`] and `T` = [`FinetuneOptions::temperature`].
    Distill {
        /// Class indices, one per sample.
        labels: &'a [u8],
        /// The teacher's logits, one vector per sample.
        teacher: &'a [Vec<f32>],
    },
}

fn unsupported(index: usize, op: &str, reason: impl Into<String>) -> CompileError {
    CompileError::Unsupported {
        index,
        op: op.to_string(),
        reason: reason.into(),
    }
}

/// `[batch, …]` with the IR shape's dimensions after the first right-aligned into dims 1..=3.
pub(crate) fn canon(shape: &[usize], batch: usize) -> Option<[usize; 4]> {
    if shape.is_empty() || shape[0] != 1 || shape.len() > 4 {
        return None;
    }
    let mut s = [batch, 1, 1, 1];
    let rest = &shape[1..];
    s[4 - rest.len()..].copy_from_slice(rest);
    Some(s)
}

/// Constants shaped as the IR (left-padded to rank 4, no batch).
fn const4(v: &[f32], shape: &[usize], device: &Device) -> Tensor<4> {
    let mut s = [1usize; 4];
    let r = shape.len().min(4);
    s[4 - r..].copy_from_slice(&shape[shape.len() - r..]);
    Tensor::from_data(TensorData::new(v.to_vec(), s.to_vec()), device)
}

fn act(y: Tensor<4>, a: Activation) -> Result<Tensor<4>, String> {
    Ok(match a {
        Activation::None => y,
        Activation::Relu => y.clamp_min(0.0),
        Activation::Relu6 => y.clamp(0.0, 6.0),
        Activation::ReluN1To1 => y.clamp(-1.0, 1.0),
        Activation::Tanh => y.tanh(),
        Activation::SignBit => return Err("fused SIGN_BIT".into()),
    })
}

/// The trainable tensors of a graph: weights and biases of convolutions and dense layers.
pub fn trainable(g: &Graph) -> Vec<TensorId> {
    let mut ids: Vec<TensorId> = g
        .nodes
        .iter()
        .filter(|n| {
            matches!(
                n.op,
                Operator::Conv2d(_)
                    | Operator::DepthwiseConv2d(_)
                    | Operator::FullyConnected { .. }
            )
        })
        .flat_map(|n| [n.inputs.get(1), n.inputs.get(2)])
        .flatten()
        .copied()
        .flatten()
        .filter(|&id| const_f32(&g.tensors[id]).is_some())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The per-channel axis of each trainable tensor that is a weight (not a bias), as
/// [`crate::ptq`] quantizes it: 3 for DEPTHWISE_CONV_2D filters, 0 otherwise.
fn weight_axes(g: &Graph, ids: &[TensorId]) -> Vec<Option<usize>> {
    ids.iter()
        .map(|&id| {
            g.nodes.iter().find_map(|n| {
                if n.inputs.get(1).copied().flatten() != Some(id) {
                    return None;
                }
                match n.op {
                    Operator::DepthwiseConv2d(_) => Some(3),
                    Operator::Conv2d(_) | Operator::FullyConnected { .. } => Some(0),
                    _ => None,
                }
            })
        })
        .collect()
}

/// `fake_quant(w) − w` for symmetric per-channel quantization to `bits` along `axis`, with the
/// scales the quantizer uses: `max|w| / qmax` above 4 bits (int8), the error-minimizing
/// [`crate::ptq::clipped_scales`] at 4 bits and below.
fn fake_quant_delta(w: &[f32], shape: &[usize], axis: usize, bits: u8) -> Vec<f32> {
    let qmax = (1i32 << (bits.clamp(2, 16) - 1)) - 1;
    let channels = shape.get(axis).copied().unwrap_or(1).max(1);
    let inner: usize = shape.iter().skip(axis + 1).product::<usize>().max(1);
    let scales: Vec<f32> = if bits <= 4 {
        crate::ptq::clipped_scales(w, shape, axis, qmax)
    } else {
        let mut amax = vec![0f32; channels];
        for (i, &v) in w.iter().enumerate() {
            let c = (i / inner) % channels;
            amax[c] = amax[c].max(v.abs());
        }
        amax.iter().map(|&a| a / qmax as f32).collect()
    };
    let qmax = qmax as f32;
    w.iter()
        .enumerate()
        .map(|(i, &v)| {
            let s = scales[(i / inner) % channels];
            if s > 0.0 {
                (v / s).round().clamp(-qmax, qmax) * s - v
            } else {
                0.0
            }
        })
        .collect()
}

/// Runs `g` on a batch `x` (`batch` samples of the single input, concatenated) with parameter
/// tensors `params` (by tensor id; other constants are read from the graph). Returns the value
/// of `upto` (a tensor id) as `[batch, …]` (canonical rank 4).
///
/// Errors: [`CompileError::Unsupported`] for an operator or shape it cannot differentiate.
pub fn forward(
    g: &Graph,
    x: Tensor<4>,
    batch: usize,
    params: &BTreeMap<TensorId, Tensor<4>>,
    upto: TensorId,
    device: &Device,
) -> Result<Tensor<4>, CompileError> {
    let mut vals: Vec<Option<Tensor<4>>> = vec![None; g.tensors.len()];
    let Some(&inp) = g.inputs.first() else {
        return Err(unsupported(0, "fit", "the graph has no input"));
    };
    vals[inp] = Some(x);
    for (index, node) in g.nodes.iter().enumerate() {
        let name = node.op.name();
        let err = |r: String| unsupported(index, name, r);
        let get = |vals: &Vec<Option<Tensor<4>>>, k: usize| -> Result<Tensor<4>, CompileError> {
            let id = node
                .inputs
                .get(k)
                .copied()
                .flatten()
                .ok_or_else(|| err(format!("input {k} absent")))?;
            if let Some(p) = params.get(&id) {
                return Ok(p.clone());
            }
            if let Some(v) = &vals[id] {
                return Ok(v.clone());
            }
            let t = &g.tensors[id];
            let v = const_f32(t).ok_or_else(|| err(format!("input {k} has no float value")))?;
            Ok(const4(&v, &t.shape, device))
        };
        let out = node.outputs[0];
        let oshape = canon(&g.tensors[out].shape, batch)
            .ok_or_else(|| err(format!("output shape {:?}", g.tensors[out].shape)))?;
        let y: Tensor<4> = match &node.op {
            Operator::Conv2d(o) | Operator::DepthwiseConv2d(o) => {
                let depthwise = matches!(node.op, Operator::DepthwiseConv2d(_));
                let xid = node.inputs[0].ok_or_else(|| err("no input".into()))?;
                let xs = canon(&g.tensors[xid].shape, batch).ok_or_else(|| err("input".into()))?;
                let xt = get(&vals, 0)?.permute([0, 3, 1, 2]);
                let w = get(&vals, 1)?;
                let [_, kh, kw, wi] = w.dims();
                let (wt, groups) = if depthwise {
                    (w.permute([3, 0, 1, 2]), xs[3])
                } else {
                    if wi == 0 || xs[3] % wi != 0 {
                        return Err(err("filter depth".into()));
                    }
                    (w.permute([0, 3, 1, 2]), xs[3] / wi)
                };
                let bias = match node.inputs.get(2).copied().flatten() {
                    Some(_) => Some(get(&vals, 2)?.flatten::<1>(0, 3)),
                    None => None,
                };
                let opts = ConvOptions {
                    stride: [o.stride_h, o.stride_w],
                    padding: [
                        same_pad(xs[1], kh, o.stride_h, o.dilation_h, o.padding),
                        same_pad(xs[2], kw, o.stride_w, o.dilation_w, o.padding),
                    ],
                    dilation: [o.dilation_h, o.dilation_w],
                    groups,
                };
                let y = conv2d(xt, wt, bias, opts).permute([0, 2, 3, 1]);
                act(y, o.activation).map_err(err)?
            }
            Operator::FullyConnected { activation: a, .. } => {
                let w = get(&vals, 1)?;
                let [_, _, o, i] = w.dims();
                let x2: Tensor<2> = get(&vals, 0)?.reshape([batch, i]);
                let mut y = x2.matmul(w.reshape([o, i]).transpose());
                if node.inputs.get(2).copied().flatten().is_some() {
                    y = y + get(&vals, 2)?.reshape([1, o]);
                }
                act(y.reshape([batch, 1, 1, o]), *a).map_err(err)?
            }
            Operator::AveragePool2d(o) | Operator::MaxPool2d(o) => {
                let xt = get(&vals, 0)?;
                let [_, h, w, _] = xt.dims();
                let xt = xt.permute([0, 3, 1, 2]);
                let ph = same_pad(h, o.filter_h, o.stride_h, 1, o.padding);
                let pw = same_pad(w, o.filter_w, o.stride_w, 1, o.padding);
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
                act(y.permute([0, 2, 3, 1]), o.activation).map_err(err)?
            }
            Operator::Add { activation: a }
            | Operator::Sub { activation: a }
            | Operator::Mul { activation: a } => {
                let (p, q) = (get(&vals, 0)?, get(&vals, 1)?);
                let y = match node.op {
                    Operator::Add { .. } => p + q,
                    Operator::Sub { .. } => p - q,
                    _ => p * q,
                };
                act(y, *a).map_err(err)?
            }
            Operator::Reshape | Operator::Squeeze => get(&vals, 0)?.reshape(oshape),
            Operator::Softmax { beta } => {
                let x = get(&vals, 0)?;
                activation::softmax(x.mul_scalar(*beta), 3)
            }
            Operator::Logistic => activation::sigmoid(get(&vals, 0)?),
            Operator::Tanh => get(&vals, 0)?.tanh(),
            Operator::Relu => get(&vals, 0)?.clamp_min(0.0),
            Operator::Relu6 => get(&vals, 0)?.clamp(0.0, 6.0),
            Operator::Mean { .. } => {
                let xid = node.inputs[0].ok_or_else(|| err("no input".into()))?;
                let r = g.tensors[xid].shape.len() as i64;
                let aid = node.inputs.get(1).copied().flatten();
                let axes = aid
                    .and_then(|a| const_ints(&g.tensors[a]))
                    .ok_or_else(|| err("axes not constant".into()))?;
                let mut t = get(&vals, 0)?;
                for a in axes {
                    let a = if a < 0 { a + r } else { a };
                    if !(1..r).contains(&a) {
                        return Err(err(format!("mean over axis {a}")));
                    }
                    t = t.mean_dim((a + 4 - r) as usize);
                }
                t
            }
            Operator::Concatenation {
                axis,
                activation: a,
            } => {
                let r = g.tensors[out].shape.len();
                if *axis == 0 {
                    return Err(err("concatenation over the batch axis".into()));
                }
                let parts = (0..node.inputs.len())
                    .map(|k| get(&vals, k))
                    .collect::<Result<Vec<_>, _>>()?;
                act(Tensor::cat(parts, axis + 4 - r), *a).map_err(err)?
            }
            other => return Err(err(format!("{} is not differentiable here", other.name()))),
        };
        let y = if y.dims() == oshape {
            y
        } else {
            y.reshape(oshape)
        };
        vals[out] = Some(y);
        if out == upto {
            break;
        }
    }
    vals[upto]
        .take()
        .ok_or_else(|| unsupported(0, "fit", "the requested tensor was not computed"))
}

/// The tensor whose value is the logits: the input of a final SOFTMAX, else the output.
pub fn logits_tensor(g: &Graph) -> (TensorId, bool) {
    let out = g.outputs[0];
    for n in &g.nodes {
        if n.outputs[0] == out {
            if let (Operator::Softmax { .. }, Some(Some(i))) = (&n.op, n.inputs.first()) {
                return (*i, true);
            }
        }
    }
    (out, false)
}

/// Fine-tunes the weights and biases of `g` on `inputs` (one float vector per sample, the
/// single graph input) against `targets`; returns the trained graph and the mean loss of
/// the last epoch.
///
/// Errors: [`CompileError::Unsupported`] for a graph [`forward`] cannot differentiate, or
/// mismatched sample counts.
pub fn finetune(
    g: &Graph,
    inputs: &[Vec<f32>],
    targets: &Targets,
    opts: &FinetuneOptions,
) -> Result<(Graph, f64), CompileError> {
    let device = default_device().autodiff();
    let n = inputs.len();
    let tcount = match targets {
        Targets::Labels(l) => l.len(),
        Targets::Teacher(t) => t.len(),
        Targets::Distill { labels, teacher } => {
            if labels.len() == teacher.len() {
                labels.len()
            } else {
                usize::MAX
            }
        }
    };
    if n == 0 || tcount != n || g.inputs.len() != 1 || g.outputs.is_empty() {
        return Err(unsupported(
            0,
            "fit",
            format!("{n} samples, {tcount} targets, single-input graphs only"),
        ));
    }
    let inshape = g.tensors[g.inputs[0]].shape.clone();
    let in_elems: usize = inshape.iter().product();
    let (logits_id, softmax) = logits_tensor(g);
    let classes = g.tensors[logits_id].elements();
    let ids = trainable(g);
    let mut values: Vec<Vec<f32>> = ids
        .iter()
        .map(|&id| const_f32(&g.tensors[id]).unwrap_or_default())
        .collect();
    let shapes: Vec<Vec<usize>> = ids.iter().map(|&id| g.tensors[id].shape.clone()).collect();
    let axes = weight_axes(g, &ids);
    // The pruning mask (`keep_zeros`): weights at exactly zero stay there.
    let frozen: Vec<Vec<bool>> = values
        .iter()
        .zip(&axes)
        .map(|(v, axis)| {
            v.iter()
                .map(|&w| opts.keep_zeros && axis.is_some() && w == 0.0)
                .collect()
        })
        .collect();
    let mut m1: Vec<Vec<f32>> = values.iter().map(|v| vec![0.0; v.len()]).collect();
    let mut m2 = m1.clone();
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    let batch = opts.batch.max(1);
    let views = if opts.views > 1 && n % opts.views == 0 {
        opts.views
    } else {
        1
    };
    let base = n / views;
    let steps_per_epoch = base.div_ceil(batch);
    let total = (steps_per_epoch * opts.epochs).max(1);
    let mut perm: Vec<usize> = (0..base).collect();
    let mut order: Vec<usize> = perm.clone();
    let mut state = opts.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut step = 0usize;
    let mut last_loss = 0.0;
    for _ in 0..opts.epochs {
        for i in (1..base).rev() {
            perm.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        for (o, &i) in order.iter_mut().zip(&perm) {
            *o = if views > 1 {
                (next() % views as u64) as usize * base + i
            } else {
                i
            };
        }
        let mut sum = 0.0;
        for chunk in order.chunks(batch) {
            let b = chunk.len();
            let mut xb = Vec::with_capacity(b * in_elems);
            for &i in chunk {
                if inputs[i].len() != in_elems {
                    return Err(unsupported(0, "fit", "sample size differs from the input"));
                }
                xb.extend_from_slice(&inputs[i]);
            }
            let xs = canon(&inshape, b).ok_or_else(|| unsupported(0, "fit", "input shape"))?;
            let xt = Tensor::<4>::from_data(TensorData::new(xb, xs.to_vec()), &device);
            let leaves: Vec<Tensor<4>> = values
                .iter()
                .zip(&shapes)
                .map(|(v, s)| const4(v, s, &device).require_grad())
                .collect();
            let params: BTreeMap<TensorId, Tensor<4>> = ids
                .iter()
                .enumerate()
                .map(|(k, &id)| match axes[k] {
                    Some(axis) if opts.qat_bits > 0 => {
                        // Straight-through: the forward sees the quantized weights, the
                        // gradient flows to the float ones unchanged.
                        let d = fake_quant_delta(&values[k], &shapes[k], axis, opts.qat_bits);
                        (id, leaves[k].clone() + const4(&d, &shapes[k], &device))
                    }
                    _ => (id, leaves[k].clone()),
                })
                .collect();
            let y = forward(g, xt, b, &params, logits_id, &device)?.reshape([b, classes]);
            let one_hot = |l: &[u8]| {
                let mut t = vec![0f32; b * classes];
                for (j, &i) in chunk.iter().enumerate() {
                    let c = usize::from(l[i]).min(classes - 1);
                    t[j * classes + c] = 1.0;
                }
                Tensor::<2>::from_data(TensorData::new(t, [b, classes]), &device)
            };
            let loss: Tensor<1> = match targets {
                Targets::Labels(l) => {
                    burn::tensor::loss::cross_entropy_with_logits(y, one_hot(l)).reshape([1])
                }
                Targets::Distill { labels, teacher } => {
                    let temp = opts.temperature.max(1e-3);
                    let mut t = Vec::with_capacity(b * classes);
                    for &i in chunk {
                        let v = &teacher[i];
                        if v.len() != classes {
                            return Err(unsupported(0, "fit", "teacher logit count"));
                        }
                        t.extend(softmax_t(v, temp));
                    }
                    let tt = Tensor::<2>::from_data(TensorData::new(t, [b, classes]), &device);
                    let a = opts.distill.clamp(0.0, 1.0);
                    let ce =
                        burn::tensor::loss::cross_entropy_with_logits(y.clone(), one_hot(labels));
                    let kd = burn::tensor::loss::cross_entropy_with_logits(y.div_scalar(temp), tt);
                    (ce.mul_scalar(1.0 - a) + kd.mul_scalar(a * temp * temp)).reshape([1])
                }
                Targets::Teacher(tv) => {
                    let mut t = Vec::with_capacity(b * classes);
                    for &i in chunk {
                        let v = &tv[i];
                        if v.len() != classes {
                            return Err(unsupported(0, "fit", "teacher output size"));
                        }
                        t.extend_from_slice(v);
                    }
                    let tt = Tensor::<2>::from_data(TensorData::new(t, [b, classes]), &device);
                    if softmax {
                        burn::tensor::loss::cross_entropy_with_logits(y, tt).reshape([1])
                    } else {
                        (y - tt).powf_scalar(2.0).mean()
                    }
                }
            };
            sum += f64::from(
                loss.clone()
                    .into_data()
                    .try_into_vec::<f32>()
                    .unwrap_or_default()
                    .first()
                    .copied()
                    .unwrap_or(0.0),
            );
            let grads = loss.backward();
            let lr =
                opts.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos());
            step += 1;
            let t = step as i32;
            for k in 0..ids.len() {
                if opts.weight_decay > 0.0 && axes[k].is_some() {
                    let keep = (1.0 - lr * opts.weight_decay) as f32;
                    values[k].iter_mut().for_each(|w| *w *= keep);
                }
                let Some(gr) = leaves[k].grad(&grads) else {
                    continue;
                };
                let gv = gr.into_data().try_into_vec::<f32>().unwrap_or_default();
                for (j, &gj) in gv.iter().enumerate().take(values[k].len()) {
                    if frozen[k][j] {
                        continue;
                    }
                    let gj = f64::from(gj);
                    let a = b1 * f64::from(m1[k][j]) + (1.0 - b1) * gj;
                    let v = b2 * f64::from(m2[k][j]) + (1.0 - b2) * gj * gj;
                    m1[k][j] = a as f32;
                    m2[k][j] = v as f32;
                    let ah = a / (1.0 - b1.powi(t));
                    let vh = v / (1.0 - b2.powi(t));
                    values[k][j] -= (lr * ah / (vh.sqrt() + eps)) as f32;
                }
            }
        }
        last_loss = sum / steps_per_epoch as f64;
    }
    let mut out = g.clone();
    for (k, &id) in ids.iter().enumerate() {
        let t = &mut out.tensors[id];
        t.data = Some(values[k].iter().flat_map(|x| x.to_le_bytes()).collect());
    }
    Ok((out, last_loss))
}

/// `softmax(v / temp)`.
fn softmax_t(v: &[f32], temp: f32) -> Vec<f32> {
    let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = v.iter().map(|&x| ((x - m) / temp).exp()).collect();
    let s: f32 = e.iter().sum::<f32>().max(f32::MIN_POSITIVE);
    e.iter().map(|x| x / s).collect()
}

/// Image samples (`[1, h, w, c]` NHWC, flattened) followed by their copies shifted by one pixel
/// down, up, right and left (zero filled): five times the samples, in five blocks of
/// `inputs.len()`. `shape` is the graph input's shape; other ranks are returned unchanged.
pub fn shifted(inputs: &[Vec<f32>], shape: &[usize]) -> Vec<Vec<f32>> {
    let mut out = inputs.to_vec();
    let [1, h, w, c] = *shape else {
        return out;
    };
    for (dy, dx) in [(1i64, 0i64), (-1, 0), (0, 1), (0, -1)] {
        for x in inputs {
            let mut s = vec![0f32; x.len()];
            for y in 0..h as i64 {
                for xx in 0..w as i64 {
                    let (sy, sx) = (y - dy, xx - dx);
                    if sy < 0 || sx < 0 || sy >= h as i64 || sx >= w as i64 {
                        continue;
                    }
                    let d = ((y * w as i64 + xx) as usize) * c;
                    let from = ((sy * w as i64 + sx) as usize) * c;
                    if let (Some(dst), Some(src)) = (s.get_mut(d..d + c), x.get(from..from + c)) {
                        dst.copy_from_slice(src);
                    }
                }
            }
            out.push(s);
        }
    }
    out
}

/// Image samples (`[1, h, w, c]` NHWC, flattened) in nine views: shifted by `(dy, dx)` for
/// every `dy, dx ∈ {−1, 0, 1}` (zero filled), the unshifted samples first; nine blocks of
/// `inputs.len()` (use with [`FinetuneOptions::views`] = 9). Other ranks: returned unchanged.
pub fn shifted_grid(inputs: &[Vec<f32>], shape: &[usize]) -> Vec<Vec<f32>> {
    let [1, h, w, c] = *shape else {
        return inputs.to_vec();
    };
    let mut out = inputs.to_vec();
    for (dy, dx) in [
        (1i64, 0i64),
        (-1, 0),
        (0, 1),
        (0, -1),
        (1, 1),
        (1, -1),
        (-1, 1),
        (-1, -1),
    ] {
        out.extend(inputs.iter().map(|x| shift_one(x, h, w, c, dy, dx)));
    }
    out
}

fn shift_one(x: &[f32], h: usize, w: usize, c: usize, dy: i64, dx: i64) -> Vec<f32> {
    let mut s = vec![0f32; x.len()];
    for y in 0..h as i64 {
        for xx in 0..w as i64 {
            let (sy, sx) = (y - dy, xx - dx);
            if sy < 0 || sx < 0 || sy >= h as i64 || sx >= w as i64 {
                continue;
            }
            let d = ((y * w as i64 + xx) as usize) * c;
            let from = ((sy * w as i64 + sx) as usize) * c;
            if let (Some(dst), Some(src)) = (s.get_mut(d..d + c), x.get(from..from + c)) {
                dst.copy_from_slice(src);
            }
        }
    }
    s
}

/// The logits of `g` (the input of its final SOFTMAX, else its output) for many samples.
pub fn logits(g: &Graph, inputs: &[Vec<f32>], batch: usize) -> Result<Vec<Vec<f32>>, CompileError> {
    predict_at(g, inputs, batch, logits_tensor(g).0)
}

/// The outputs of `g` for many samples, batched, without gradients.
pub fn predict(
    g: &Graph,
    inputs: &[Vec<f32>],
    batch: usize,
) -> Result<Vec<Vec<f32>>, CompileError> {
    predict_at(g, inputs, batch, g.outputs[0])
}

fn predict_at(
    g: &Graph,
    inputs: &[Vec<f32>],
    batch: usize,
    out: TensorId,
) -> Result<Vec<Vec<f32>>, CompileError> {
    let device = default_device();
    let inshape = g.tensors[g.inputs[0]].shape.clone();
    let classes = g.tensors[out].elements();
    let mut res = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(batch.max(1)) {
        let b = chunk.len();
        let xb: Vec<f32> = chunk.iter().flatten().copied().collect();
        let xs = canon(&inshape, b).ok_or_else(|| unsupported(0, "fit", "input shape"))?;
        let xt = Tensor::<4>::from_data(TensorData::new(xb, xs.to_vec()), &device);
        let y = forward(g, xt, b, &BTreeMap::new(), out, &device)?;
        let v = y.into_data().try_into_vec::<f32>().unwrap_or_default();
        res.extend(v.chunks_exact(classes).map(<[f32]>::to_vec));
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::float::{prepare, FloatExecutor};

    #[test]
    fn fake_quant_matches_ptq_weights() {
        let mut state = 0x1234_5678_9abc_def1u64;
        for (shape, axis) in [
            (vec![6, 3, 3, 5], 0),
            (vec![1, 3, 3, 7], 3),
            (vec![10, 16], 0),
        ] {
            let n: usize = shape.iter().product();
            let w: Vec<f32> = (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % 2001) as f32 / 1000.0 - 1.0
                })
                .collect();
            let inner: usize = shape[axis + 1..].iter().product();
            let d8 = fake_quant_delta(&w, &shape, axis, 8);
            let (q8, s8) = crate::ptq::quantize_weights(&w, &shape, axis);
            let d4 = fake_quant_delta(&w, &shape, axis, 4);
            let (q4, s4) = crate::ptq::quantize_weights_int4(&w, &shape, axis);
            for i in 0..n {
                let c = (i / inner) % shape[axis];
                let want8 = f32::from(q8[i] as i8) * s8[c];
                let want4 = f32::from(q4[i]) * s4[c];
                assert!((w[i] + d8[i] - want8).abs() < 1e-6, "{shape:?} int8 {i}");
                assert!((w[i] + d4[i] - want4).abs() < 1e-6, "{shape:?} int4 {i}");
            }
        }
    }

    #[test]
    fn quantization_aware_distillation_trains_and_keeps_the_graph_shape() {
        let g = prepare(&crate::tflite::import(crate::demo::FLOAT_TFLITE).unwrap()).unwrap();
        let xs: Vec<Vec<f32>> = crate::demo::train_images().into_iter().take(96).collect();
        let ys = &crate::demo::TRAIN_LABELS[..96];
        let teacher = logits(&g, &xs, 32).unwrap();
        let opts = FinetuneOptions {
            epochs: 2,
            distill: 0.5,
            temperature: 2.0,
            qat_bits: 4,
            ..FinetuneOptions::default()
        };
        let targets = Targets::Distill {
            labels: ys,
            teacher: &teacher,
        };
        let (t, loss) = finetune(&g, &xs, &targets, &opts).unwrap();
        assert!(loss.is_finite() && loss > 0.0, "{loss}");
        for id in trainable(&g) {
            assert_eq!(t.tensors[id].shape, g.tensors[id].shape);
            assert_ne!(
                const_f32(&t.tensors[id]),
                const_f32(&g.tensors[id]),
                "{id} not trained"
            );
        }
        // Mismatched teacher and label counts are refused.
        let bad = Targets::Distill {
            labels: &ys[..10],
            teacher: &teacher,
        };
        assert!(finetune(&g, &xs, &bad, &opts).is_err());
    }

    #[test]
    fn shifted_moves_pixels_by_one_and_fills_zeros() {
        let x: Vec<f32> = (1..=6).map(|v| v as f32).collect(); // 2×3 image, 1 channel
        let s = shifted(std::slice::from_ref(&x), &[1, 2, 3, 1]);
        assert_eq!(s.len(), 5);
        assert_eq!(s[0], x);
        assert_eq!(s[1], vec![0.0, 0.0, 0.0, 1.0, 2.0, 3.0]); // down
        assert_eq!(s[2], vec![4.0, 5.0, 6.0, 0.0, 0.0, 0.0]); // up
        assert_eq!(s[3], vec![0.0, 1.0, 2.0, 0.0, 4.0, 5.0]); // right
        assert_eq!(s[4], vec![2.0, 3.0, 0.0, 5.0, 6.0, 0.0]); // left
                                                              // Not an image: unchanged.
        assert_eq!(shifted(std::slice::from_ref(&x), &[1, 6]), vec![x]);
    }

    #[test]
    fn shifted_grid_holds_the_nine_offsets() {
        let x: Vec<f32> = (1..=6).map(|v| v as f32).collect(); // 2×3 image, 1 channel
        let s = shifted_grid(std::slice::from_ref(&x), &[1, 2, 3, 1]);
        assert_eq!(s.len(), 9);
        assert_eq!(s[..5], shifted(std::slice::from_ref(&x), &[1, 2, 3, 1])[..]);
        assert_eq!(s[5], vec![0.0, 0.0, 0.0, 0.0, 1.0, 2.0]); // down-right
        assert_eq!(s[6], vec![0.0, 0.0, 0.0, 2.0, 3.0, 0.0]); // down-left
        assert_eq!(s[7], vec![0.0, 4.0, 5.0, 0.0, 0.0, 0.0]); // up-right
        assert_eq!(s[8], vec![5.0, 6.0, 0.0, 0.0, 0.0, 0.0]); // up-left
        assert_eq!(shifted_grid(std::slice::from_ref(&x), &[1, 6]), vec![x]);
    }

    #[test]
    fn batched_forward_matches_the_float_executor_on_digits() {
        let g = crate::tflite::import(crate::demo::FLOAT_TFLITE).unwrap();
        let g = prepare(&g).unwrap();
        let xs: Vec<Vec<f32>> = crate::demo::test_images().into_iter().take(20).collect();
        let exec = FloatExecutor::new(&g, default_device());
        let batched = predict(&g, &xs, 7).unwrap();
        for (x, b) in xs.iter().zip(&batched) {
            let r = exec.outputs(std::slice::from_ref(x)).unwrap();
            for (p, q) in r[0].iter().zip(b) {
                assert!((p - q).abs() < 1e-5, "{p} vs {q}");
            }
        }
    }
}
