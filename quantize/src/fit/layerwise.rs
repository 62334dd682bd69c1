//! Per-layer pruning plans, found greedily by sensitivity.
//!
//! Starting from the unpruned graph, [`greedy_counts`] repeatedly removes one *step* of
//! channels (an eighth of the group's original channels, at least one) from the prunable
//! channel group where it costs the least fidelity per weight removed: the cost of a trial is
//! the mean KL divergence of the pruned model's softmax from the float model's on a few
//! samples (no fine-tuning), its saving the weight elements it removes (flash). Every step
//! is one plan: per group, the channels it keeps.

use crate::error::CompileError;
use crate::ir::Graph;

use super::finetune::{logits, trainable};
use super::prune::{self, Analysis};

/// Weight and bias elements of the trainable layers of `g` (what flash holds, per byte at
/// int8 weights).
pub fn weight_elements(g: &Graph) -> usize {
    trainable(g)
        .iter()
        .map(|&id| g.tensors[id].elements())
        .sum()
}

fn softmax(v: &[f32]) -> Vec<f64> {
    let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = v.iter().map(|&x| f64::from(x - m).exp()).collect();
    let s: f64 = e.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    e.iter().map(|x| x / s).collect()
}

/// Mean KL(p ‖ q) of the softmaxes of two sets of logits.
fn mean_kl(p: &[Vec<f32>], q: &[Vec<f32>]) -> f64 {
    let n = p.len().max(1) as f64;
    p.iter()
        .zip(q)
        .map(|(a, b)| {
            let (pa, qb) = (softmax(a), softmax(b));
            pa.iter()
                .zip(&qb)
                .filter(|(x, _)| **x > 0.0)
                .map(|(x, y)| x * (x / y.max(1e-12)).ln())
                .sum::<f64>()
        })
        .sum::<f64>()
        / n
}

/// The greedy sequence of per-group channel counts (indexed like `a.groups`; frozen groups
/// keep all their channels), from the first step to the last possible one (every prunable
/// group down to one channel). `samples` are the model's inputs the fidelity is measured on.
///
/// Errors: those of [`prune::apply`] and [`logits`].
pub fn greedy_counts(
    float: &Graph,
    a: &Analysis,
    samples: &[Vec<f32>],
) -> Result<Vec<Vec<usize>>, CompileError> {
    let reference = logits(float, samples, 64)?;
    let mut counts: Vec<usize> = a.groups.iter().map(|gr| gr.channels).collect();
    let steps: Vec<usize> = a
        .groups
        .iter()
        .map(|gr| gr.channels.div_ceil(8).max(1))
        .collect();
    let mut weights = weight_elements(float);
    let mut kl = 0.0;
    let mut plans = Vec::new();
    loop {
        let mut best: Option<(f64, usize, usize, f64)> = None; // (cost per weight, group, weights, kl)
        for g in a.prunable() {
            if counts[g] <= 1 {
                continue;
            }
            let mut trial = counts.clone();
            trial[g] = counts[g].saturating_sub(steps[g]).max(1);
            let pg = prune::apply(float, a, &a.plan_counts(float, &trial))?;
            let w = weight_elements(&pg);
            let k = mean_kl(&reference, &logits(&pg, samples, 64)?);
            let per = (k - kl).max(0.0) / weights.saturating_sub(w).max(1) as f64;
            if best.is_none_or(|b| per < b.0) {
                best = Some((per, g, w, k));
            }
        }
        let Some((_, g, w, k)) = best else { break };
        counts[g] = counts[g].saturating_sub(steps[g]).max(1);
        weights = w;
        kl = k;
        plans.push(counts.clone());
    }
    Ok(plans)
}

/// The fraction of the prunable channels of `a` that `counts` removes.
pub fn removed_fraction(a: &Analysis, counts: &[usize]) -> f32 {
    let (mut total, mut removed) = (0usize, 0usize);
    for g in a.prunable() {
        let c = a.groups[g].channels;
        total += c;
        removed += c - counts.get(g).copied().unwrap_or(c).min(c);
    }
    removed as f32 / total.max(1) as f32
}

/// Per-group pruning ratios (as [`Analysis::plan`] and [`super::gradual`] take them) that
/// keep exactly `counts` channels.
pub fn ratios_of(a: &Analysis, counts: &[usize]) -> Vec<f32> {
    a.groups
        .iter()
        .zip(counts)
        .map(|(gr, &k)| {
            if gr.channels == 0 {
                0.0
            } else {
                1.0 - k.min(gr.channels) as f32 / gr.channels as f32
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::float::prepare;

    #[test]
    fn greedy_plans_shrink_one_step_at_a_time_and_round_trip_through_ratios() {
        let g = prepare(&crate::tflite::import(crate::demo::FLOAT_TFLITE).unwrap()).unwrap();
        let a = prune::analyze(&g);
        let xs: Vec<Vec<f32>> = crate::demo::train_images().into_iter().take(40).collect();
        let plans = greedy_counts(&g, &a, &xs).unwrap();
        // digits: groups of 16, 32, 32 channels (+ the frozen output), steps of 2, 4, 4 (the
        // last of each group from 2 or 4 to 1).
        assert_eq!(plans.len(), 8 + 8 + 8, "{plans:?}");
        let mut prev = a.groups.iter().map(|gr| gr.channels).collect::<Vec<_>>();
        let mut last_w = weight_elements(&g);
        for p in &plans {
            let changed: Vec<usize> = (0..p.len()).filter(|&i| p[i] != prev[i]).collect();
            assert_eq!(changed.len(), 1, "{prev:?} -> {p:?}");
            assert!(p[changed[0]] < prev[changed[0]]);
            assert!(removed_fraction(&a, p) > removed_fraction(&a, &prev));
            let plan = a.plan(&g, &ratios_of(&a, p));
            let pg = prune::apply(&g, &a, &plan).unwrap();
            let kept: Vec<usize> = prune::analyze(&pg)
                .groups
                .iter()
                .map(|gr| gr.channels)
                .collect();
            assert_eq!(&kept, p);
            let w = weight_elements(&pg);
            assert!(w < last_w);
            last_w = w;
            prev = p.clone();
        }
        assert_eq!(plans.last().unwrap()[..3], [1, 1, 1]);
    }
}
