//! Gradual structured pruning: remove channels in several steps, fine-tuning between them, so
//! that the network adapts to each cut before the next (rather than losing half its channels
//! at once).
//!
//! Step `k` of `n` keeps, in every prunable group of the *original* graph, the channels a
//! fraction `ratio × k / n` removal leaves ([`prune::kept_channels`]); the channels dropped at
//! each step are the least important of the current (fine-tuned) weights ([`prune::importance`]).

use crate::error::CompileError;
use crate::ir::Graph;

use super::finetune::{finetune, FinetuneOptions, Targets};
use super::prune;

/// How to prune gradually.
#[derive(Debug, Clone, Copy)]
pub struct GradualOptions {
    /// Pruning steps (1 = one-shot pruning, then fine-tuning).
    pub steps: usize,
    /// Fine-tuning after every step but the last.
    pub between: FinetuneOptions,
    /// Fine-tuning after the last step.
    pub last: FinetuneOptions,
}

/// The group of `a` whose first producer is node `p`.
fn group_by_producer(a: &prune::Analysis, p: usize) -> Option<usize> {
    a.groups
        .iter()
        .position(|gr| gr.producers.first() == Some(&p))
}

/// Prunes `float` to remove the fraction `ratios[i]` of the channels of each group `i` of
/// `prune::analyze(float)` (frozen groups and groups past the end keep everything) in
/// `opts.steps` steps, fine-tuning on `inputs` / `targets` after each. Returns the pruned,
/// fine-tuned graph and the final fine-tuning loss.
///
/// Errors: those of [`prune::apply`] and [`finetune`].
pub fn prune_gradually(
    float: &Graph,
    ratios: &[f32],
    inputs: &[Vec<f32>],
    targets: &Targets,
    opts: &GradualOptions,
) -> Result<(Graph, f64), CompileError> {
    let original = prune::analyze(float);
    let steps = opts.steps.max(1);
    let mut g = float.clone();
    let mut loss = 0.0;
    for k in 1..=steps {
        let a = prune::analyze(&g);
        // Target channel counts of this step, mapped onto the current graph's groups by their
        // first producer (pruning keeps nodes, so node indices are stable).
        let mut counts: Vec<usize> = a.groups.iter().map(|gr| gr.channels).collect();
        for (i, gr) in original.groups.iter().enumerate() {
            let r = ratios.get(i).copied().unwrap_or(0.0) * k as f32 / steps as f32;
            if !gr.prunable() || r <= 0.0 {
                continue;
            }
            let Some(&p) = gr.producers.first() else {
                continue;
            };
            if let Some(j) = group_by_producer(&a, p) {
                counts[j] = prune::kept_channels(gr.channels, r).min(counts[j]);
            }
        }
        let plan = a.plan_counts(&g, &counts);
        g = prune::apply(&g, &a, &plan)?;
        let fo = if k == steps {
            &opts.last
        } else {
            &opts.between
        };
        if fo.epochs > 0 {
            let (t, l) = finetune(&g, inputs, targets, fo)?;
            g = t;
            loss = l;
        }
    }
    Ok((g, loss))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::float::prepare;

    #[test]
    fn gradual_pruning_reaches_the_one_shot_structure() {
        let g = prepare(&crate::tflite::import(crate::demo::FLOAT_TFLITE).unwrap()).unwrap();
        let a = prune::analyze(&g);
        let channels = |g: &Graph| -> Vec<usize> {
            prune::analyze(g)
                .groups
                .iter()
                .map(|gr| gr.channels)
                .collect()
        };
        let none = FinetuneOptions {
            epochs: 0,
            ..FinetuneOptions::default()
        };
        let opts = |steps| GradualOptions {
            steps,
            between: none,
            last: none,
        };
        for ratios in [vec![0.5; a.groups.len()], vec![0.0, 0.375, 0.625]] {
            let one_shot = prune::apply(&g, &a, &a.plan(&g, &ratios)).unwrap();
            for steps in [1, 3, 4] {
                let (p, _) =
                    prune_gradually(&g, &ratios, &[], &Targets::Labels(&[]), &opts(steps)).unwrap();
                assert_eq!(
                    channels(&p),
                    channels(&one_shot),
                    "{ratios:?} in {steps} steps"
                );
                assert_eq!(prune::macs(&p), prune::macs(&one_shot));
            }
        }
        assert_eq!(channels(&g), vec![16, 32, 32, 10]);
    }
}
