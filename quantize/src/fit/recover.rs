//! Structured pruning that keeps the float model's function without labels or gradient
//! training: choose the channels by what removing each one costs ([`ablation_scores`]), fold
//! the removed channels' mean contribution into the next layer's bias ([`compensate`]), and
//! refit every pointwise layer by least squares to the float model's pre-activations
//! ([`reconstruct`]: layer-wise distillation, He et al., "Channel Pruning for Accelerating Very
//! Deep Neural Networks", ICCV 2017; Luo et al., ThiNet, ICCV 2017).
//!
//! Distillation by gradient steps on the output alone drifts wherever the calibration data do
//! not constrain the network (on the MLPerf Tiny KWS model it loses keywords the calibration
//! audio does not hold, even unpruned); refitting each layer to the float model's own
//! intermediate values keeps what every channel computes.

use std::collections::BTreeMap;

use crate::error::CompileError;
use crate::float::{default_device, FloatExecutor};
use crate::ir::{Graph, Operator, TensorId};

use super::finetune::predict;
use super::prune::{self, Analysis, PrunePlan};
use super::search::Sample;

/// Per consumer input tensor of every channel group: each channel's mean activation over the
/// samples and positions.
pub type ChannelMeans = BTreeMap<TensorId, Vec<f64>>;

fn f32s(g: &Graph, id: TensorId) -> Vec<f32> {
    g.tensors[id]
        .data
        .as_deref()
        .map(bytemuck::pod_collect_to_vec)
        .unwrap_or_default()
}

fn set_f32s(g: &mut Graph, id: TensorId, v: &[f32]) {
    g.tensors[id].data = Some(bytemuck::cast_slice(v).to_vec());
}

fn bad(index: usize, g: &Graph, what: impl Into<String>) -> CompileError {
    CompileError::InvalidOp {
        index,
        op: g.nodes[index].op.name().to_string(),
        what: what.into(),
    }
}

/// The mean activation of every channel of every group, as its consumers read it, over
/// `samples` (the float model's single input).
pub fn channel_means(
    float: &Graph,
    a: &Analysis,
    samples: &[Sample],
) -> Result<ChannelMeans, CompileError> {
    let exec = FloatExecutor::new(float, default_device());
    let mut sums = ChannelMeans::new();
    let mut counts: BTreeMap<TensorId, usize> = BTreeMap::new();
    for x in samples {
        let v = exec.run(std::slice::from_ref(x))?;
        for gr in &a.groups {
            for &n in &gr.consumers {
                let Some(Some(t)) = float.nodes[n].inputs.first().copied() else {
                    continue;
                };
                let Some(vals) = v[t].as_ref() else { continue };
                let e = sums.entry(t).or_insert_with(|| vec![0.0; gr.channels]);
                for (i, &y) in vals.iter().enumerate() {
                    e[i % gr.channels] += f64::from(y);
                }
                *counts.entry(t).or_default() += vals.len() / gr.channels.max(1);
            }
        }
    }
    for (t, s) in sums.iter_mut() {
        let n = counts.get(t).copied().unwrap_or(1).max(1) as f64;
        s.iter_mut().for_each(|v| *v /= n);
    }
    Ok(sums)
}

/// The output channels node `n` (with `outs` of them unpruned) keeps under `plan`.
fn kept_outputs(a: &Analysis, plan: &PrunePlan, n: usize, outs: usize) -> Vec<usize> {
    a.groups
        .iter()
        .enumerate()
        .find(|(_, g)| g.producers.contains(&n))
        .and_then(|(j, _)| plan.keep.get(j).cloned().flatten())
        .unwrap_or_else(|| (0..outs).collect())
}

/// Adds to every consumer's bias in `pruned` (= [`prune::apply`] of `float` for `plan`) what
/// the removed channels contributed on average: `Σ_removed w[o, ·, c] · mean[c]`.
pub fn compensate(
    float: &Graph,
    pruned: &mut Graph,
    a: &Analysis,
    plan: &PrunePlan,
    means: &ChannelMeans,
) {
    for (gi, gr) in a.groups.iter().enumerate() {
        let Some(Some(kept)) = plan.keep.get(gi) else {
            continue;
        };
        let removed: Vec<usize> = (0..gr.channels).filter(|c| !kept.contains(c)).collect();
        for &n in &gr.consumers {
            let node = &float.nodes[n];
            let (Some(Some(t)), Some(Some(w))) =
                (node.inputs.first().copied(), node.inputs.get(1).copied())
            else {
                continue;
            };
            let Some(mean) = means.get(&t) else { continue };
            let wv = f32s(float, w);
            let outs = float.tensors[w].shape.first().copied().unwrap_or(1).max(1);
            let inner = wv.len() / outs;
            let cin = gr.channels.max(1);
            let delta: Vec<f64> = (0..outs)
                .map(|o| {
                    let row = &wv[o * inner..(o + 1) * inner];
                    row.chunks_exact(cin)
                        .map(|k| {
                            removed
                                .iter()
                                .map(|&c| f64::from(k[c]) * mean[c])
                                .sum::<f64>()
                        })
                        .sum()
                })
                .collect();
            // The consumer's own output channels may be pruned too.
            let out_keep = kept_outputs(a, plan, n, outs);
            let Some(Some(pb)) = pruned.nodes[n].inputs.get(2).copied() else {
                continue;
            };
            let mut bv = f32s(pruned, pb);
            for (j, &o) in out_keep.iter().enumerate() {
                if let (Some(x), Some(d)) = (bv.get_mut(j), delta.get(o)) {
                    *x += *d as f32;
                }
            }
            set_f32s(pruned, pb, &bv);
        }
    }
}

/// `v` as probabilities: itself when it already is one (non-negative, summing to 1, as after
/// a SOFTMAX), else its softmax (logits).
fn probabilities(v: &[f32]) -> Vec<f64> {
    let sum: f64 = v.iter().map(|&x| f64::from(x)).sum();
    if v.iter().all(|&x| x >= 0.0) && (sum - 1.0).abs() < 1e-3 {
        return v.iter().map(|&x| f64::from(x)).collect();
    }
    let m = v.iter().fold(f32::MIN, |a, &b| a.max(b));
    let e: Vec<f64> = v.iter().map(|&x| f64::from(x - m).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|x| x / z).collect()
}

/// Mean KL(p ‖ q) of the outputs as probabilities (see [`probabilities`]; q clamped at 1e-6).
pub fn mean_kl(p: &[Vec<f32>], q: &[Vec<f32>]) -> f64 {
    let s: f64 = p
        .iter()
        .zip(q)
        .map(|(a, b)| {
            probabilities(a)
                .iter()
                .zip(probabilities(b))
                .filter(|(x, _)| **x > 0.0)
                .map(|(&x, y)| x * (x / y.max(1e-6)).ln())
                .sum::<f64>()
        })
        .sum();
    s / p.len().max(1) as f64
}

/// The cost of removing each channel alone, per group: the mean KL divergence of the model's
/// outputs on `samples` from the float model's when that channel is pruned and
/// [`compensate`]d (`means` from [`channel_means`] on the same or other samples; outputs as
/// probabilities, see [`mean_kl`]). Higher = more important; frozen groups get an empty vector.
///
/// Costs one forward pass over `samples` per prunable channel.
pub fn ablation_scores(
    float: &Graph,
    a: &Analysis,
    samples: &[Sample],
    means: &ChannelMeans,
) -> Result<Vec<Vec<f32>>, CompileError> {
    let teacher = predict(float, samples, 64)?;
    let mut scores = vec![Vec::new(); a.groups.len()];
    for gi in a.prunable() {
        let channels = a.groups[gi].channels;
        let mut s = Vec::with_capacity(channels);
        for c in 0..channels {
            let mut plan = PrunePlan {
                keep: vec![None; a.groups.len()],
            };
            plan.keep[gi] = Some((0..channels).filter(|&x| x != c).collect());
            let mut p = prune::apply(float, a, &plan)?;
            compensate(float, &mut p, a, &plan, means);
            s.push(mean_kl(&teacher, &predict(&p, samples, 64)?) as f32);
        }
        scores[gi] = s;
    }
    Ok(scores)
}

/// Refits, in node order, every 1×1 CONV_2D (and FULLY_CONNECTED with `refit_fc`) of
/// `pruned` (= [`prune::apply`] of `float` for `plan`) by ridge least squares, so that on
/// `samples` its pre-activation output, computed from the already refitted pruned model's
/// input, reproduces the float model's pre-activation output of that node (its kept output
/// channels). The ridge `lambda` (relative to the mean diagonal of the input's second moments)
/// pulls the weights towards the pruned layer's own float weights, so directions the samples do
/// not excite keep them.
///
/// Errors: the float executor's, or a layer whose shapes do not match the plan.
pub fn reconstruct(
    float: &Graph,
    pruned: &mut Graph,
    a: &Analysis,
    plan: &PrunePlan,
    samples: &[Sample],
    lambda: f64,
    refit_fc: bool,
) -> Result<(), CompileError> {
    let fexec = FloatExecutor::new(float, default_device());
    let fvals = samples
        .iter()
        .map(|x| fexec.run(std::slice::from_ref(x)))
        .collect::<Result<Vec<_>, _>>()?;
    for n in 0..pruned.nodes.len() {
        let pointwise = match &pruned.nodes[n].op {
            Operator::FullyConnected { .. } => refit_fc,
            Operator::Conv2d(_) => pruned.nodes[n]
                .inputs
                .get(1)
                .copied()
                .flatten()
                .is_some_and(|w| {
                    let s = &pruned.tensors[w].shape;
                    s.len() == 4 && s[1] == 1 && s[2] == 1
                }),
            _ => false,
        };
        if !pointwise {
            continue;
        }
        let ids = |g: &Graph, k: usize| g.nodes[n].inputs.get(k).copied().flatten();
        let (Some(xt), Some(wt), Some(bt)) = (ids(pruned, 0), ids(pruned, 1), ids(pruned, 2))
        else {
            continue;
        };
        let (Some(fxt), Some(fwt), Some(fbt)) = (ids(float, 0), ids(float, 1), ids(float, 2))
        else {
            continue;
        };
        let (fw, fb) = (f32s(float, fwt), f32s(float, fbt));
        let fouts = float.tensors[fwt].shape[0].max(1);
        let fin = fw.len() / fouts;
        let outs = pruned.tensors[wt].shape[0].max(1);
        let din = pruned.tensors[wt].elements() / outs;
        let out_keep = kept_outputs(a, plan, n, fouts);
        if out_keep.len() != outs {
            return Err(bad(n, pruned, "kept output channels do not match the plan"));
        }
        let pexec = FloatExecutor::new(pruned, default_device());
        let d = din + 1;
        let mut xtx = vec![0.0f64; d * d];
        let mut xty = vec![0.0f64; d * outs];
        let mut row = vec![0.0f64; d];
        for (x, fv) in samples.iter().zip(&fvals) {
            let pv = pexec.run(std::slice::from_ref(x))?;
            let (Some(px), Some(fx)) = (pv[xt].as_ref(), fv[fxt].as_ref()) else {
                return Err(bad(n, pruned, "input values missing"));
            };
            let positions = px.len() / din.max(1);
            if fx.len() / fin.max(1) != positions {
                return Err(bad(
                    n,
                    pruned,
                    "input positions differ from the float model's",
                ));
            }
            for p in 0..positions {
                for (r, &v) in row.iter_mut().zip(&px[p * din..(p + 1) * din]) {
                    *r = f64::from(v);
                }
                row[din] = 1.0;
                let fxp = &fx[p * fin..(p + 1) * fin];
                for (j, &o) in out_keep.iter().enumerate() {
                    let y = f64::from(fb[o])
                        + fw[o * fin..(o + 1) * fin]
                            .iter()
                            .zip(fxp)
                            .map(|(&w, &v)| f64::from(w) * f64::from(v))
                            .sum::<f64>();
                    for (i, &r) in row.iter().enumerate() {
                        xty[i * outs + j] += r * y;
                    }
                }
                for i in 0..d {
                    if row[i] == 0.0 {
                        continue;
                    }
                    for k in 0..d {
                        xtx[i * d + k] += row[i] * row[k];
                    }
                }
            }
        }
        let w0 = f32s(pruned, wt);
        let tr = (0..din).map(|i| xtx[i * d + i]).sum::<f64>() / din.max(1) as f64;
        for i in 0..din {
            xtx[i * d + i] += lambda * tr + 1e-12;
            for j in 0..outs {
                xty[i * outs + j] += lambda * tr * f64::from(w0[j * din + i]);
            }
        }
        xtx[din * d + din] += 1e-12;
        let Some(sol) = solve_spd(&xtx, &xty, d, outs) else {
            return Err(bad(n, pruned, "least-squares system is singular"));
        };
        let mut w = vec![0.0f32; outs * din];
        let mut b = vec![0.0f32; outs];
        for j in 0..outs {
            for i in 0..din {
                w[j * din + i] = sol[i * outs + j] as f32;
            }
            b[j] = sol[din * outs + j] as f32;
        }
        set_f32s(pruned, wt, &w);
        set_f32s(pruned, bt, &b);
    }
    Ok(())
}

/// Solves `A X = B` for symmetric positive definite `A` (`d × d`) and `B` (`d × m`), both
/// row-major, by Cholesky; `None` if `A` is not positive definite.
fn solve_spd(a: &[f64], b: &[f64], d: usize, m: usize) -> Option<Vec<f64>> {
    let l = crate::ptq::gptq::cholesky_lower(a, d)?;
    let mut x = b.to_vec();
    for c in 0..m {
        for i in 0..d {
            let s: f64 = (0..i).map(|k| l[i * d + k] * x[k * m + c]).sum();
            x[i * m + c] = (x[i * m + c] - s) / l[i * d + i];
        }
        for i in (0..d).rev() {
            let s: f64 = (i + 1..d).map(|k| l[k * d + i] * x[k * m + c]).sum();
            x[i * m + c] = (x[i * m + c] - s) / l[i * d + i];
        }
    }
    Some(x)
}
