//! The fit search: structured sparsity × per-layer precision, each candidate compiled and
//! measured exactly (flash = `.mote` bytes, RAM = planned arena), its latency and energy
//! *estimated* with the target's cost model, and its accuracy (with labels) or top-1 agreement
//! with the float model (without) measured on the runtime itself.

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use mote_runtime::{energy, Model};
use mote_targets::TargetProfile;

use super::finetune::{self, FinetuneOptions, Targets};
use super::gradual::{prune_gradually, GradualOptions};
use super::prune::{self, Analysis};
use super::recover;
use super::synth::{self, SynthOptions};
use crate::calibrate::{Calibrator, ObserverKind};
use crate::compile::{compile, Compiled};
use crate::error::CompileError;
use crate::fidelity::{argmax, Int8Runner};
use crate::float::{default_device, FloatExecutor};
use crate::ir::{Graph, Operator};
use crate::ptq::{self, Precision};

/// One sample: one float32 vector for the model's single input.
pub type Sample = Vec<f32>;

/// The budgets to meet (`None` = unconstrained).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Budget {
    /// `.mote` file bytes (flash).
    pub flash: Option<usize>,
    /// Arena bytes (RAM).
    pub ram: Option<usize>,
    /// Estimated latency per inference on the target, µs.
    pub latency_us: Option<f64>,
    /// Estimated energy per inference on the target, µJ.
    pub energy_uj: Option<f64>,
}

/// The data a fit uses.
#[derive(Debug, Clone, Default)]
pub struct FitData {
    /// Calibration samples (activation ranges; distillation inputs when there are no labels).
    pub calibration: Vec<Sample>,
    /// Held-out samples the candidates are scored on.
    pub eval: Vec<Sample>,
    /// Labels of `eval` (accuracy); without them the score is top-1 agreement with the float
    /// model.
    pub eval_labels: Option<Vec<u8>>,
    /// Labelled training samples for supervised fine-tuning (else: distillation on
    /// `calibration`).
    pub train: Option<(Vec<Sample>, Vec<u8>)>,
    /// More samples for recovering pruned structures only (channel ablation and least-squares
    /// reconstruction, with [`FitOptions::selection`] / [`FitOptions::reconstruct`]), e.g. inputs
    /// that show what the model must keep but do not look like deployment inputs (synthesized
    /// speech). Never used for activation ranges, GPTQ or bias correction.
    pub recover: Vec<Sample>,
}

/// Search settings.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// Uniform pruning ratios to try (fraction of channels removed in every prunable group).
    pub ratios: Vec<f32>,
    /// Precision recipes to try (see [`Recipe`]).
    pub recipes: Vec<Recipe>,
    /// Fine-tuning settings after the last pruning step (`epochs == 0` disables fine-tuning).
    /// The loss is [`Targets::Distill`] from the unpruned float model: with training labels,
    /// cross-entropy on them mixed with distillation by `finetune.distill` (default 0: labels
    /// only); without, distillation alone (the weight is forced to 1).
    pub finetune: FinetuneOptions,
    /// Pruning steps for the fine-tuned structures ([`super::gradual`]; 1 = one-shot).
    pub steps: usize,
    /// Fine-tuning epochs between pruning steps (same settings as `finetune` otherwise).
    pub between_epochs: usize,
    /// Augment the fine-tuning images with one-pixel shifts ([`finetune::shifted_grid`], one
    /// random view of the nine per sample and epoch; image inputs `[1, h, w, c]` only).
    pub shift_augment: bool,
    /// How many pruned structures to fine-tune (the least-pruned ones that meet the budgets).
    pub finetune_top: usize,
    /// Also explore per-layer plans: for every ratio, the plan of the greedy sensitivity
    /// search ([`super::layerwise::greedy_counts`]) that removes the closest fraction of the
    /// prunable channels, layer by layer where it costs the least fidelity per weight.
    pub per_layer: bool,
    /// Calibration samples used for ranges (the first ones).
    pub max_calibration: usize,
    /// Activation-range observer of the calibration (default: min/max).
    pub observer: ObserverKind,
    /// Bias correction ([`crate::pipeline::correct_biases`], on the calibration samples used
    /// for ranges) of every candidate that meets the budgets; candidates that do not are
    /// scored without it (it changes no size, only the bias values, and costs a compile and a
    /// pass over the samples per layer with a bias).
    pub bias_correction: bool,
    /// Round int4 weights by GPTQ ([`crate::ptq::gptq`], on the calibration samples used for
    /// ranges) in every candidate with int4 weights that meets the budgets (default: on); off,
    /// they are rounded to nearest.
    pub gptq: bool,
    /// How each structure's channels are chosen (default: by weight norm).
    pub selection: Selection,
    /// Recover every pruned structure by layer-wise least squares to the float model's
    /// pre-activations on the calibration samples ([`recover::reconstruct`]) instead of
    /// fine-tuning (default: off). Distillation by gradient steps drifts where the calibration
    /// samples do not constrain the network; this keeps what each kept channel computes.
    pub reconstruct: bool,
    /// At most this many of [`FitData::recover`]'s samples (evenly strided) join the
    /// calibration samples in channel ablation (default 1000): its cost is one forward pass
    /// over them per prunable channel.
    pub max_ablation: usize,
    /// Show progress bars.
    pub progress: bool,
    /// Teacher-guided input synthesis for label-free distillation ([`super::synth`]): with
    /// `synth.per_class > 0` and no training labels, inputs synthesized from the calibration
    /// samples for every class of the float model join the distillation set. Default: off.
    pub synth: SynthOptions,
}

/// How a pruned structure's channels are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Selection {
    /// The channels whose filters have the largest L2 norms ([`prune::importance`]).
    #[default]
    WeightNorm,
    /// The channels whose removal alone costs the most: KL divergence of the outputs from the
    /// float model's on the calibration samples ([`recover::ablation_scores`]; one forward
    /// pass over them per prunable channel).
    Ablation,
}

impl std::str::FromStr for Selection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "weight-norm" => Ok(Selection::WeightNorm),
            "ablation" => Ok(Selection::Ablation),
            _ => Err(format!("{s}: expected weight-norm or ablation")),
        }
    }
}

/// Ridge of [`recover::reconstruct`] in the search (relative to the mean input energy).
const RIDGE: f64 = 1e-3;

/// Default fine-tuning epochs of `mote fit`.
pub const DEFAULT_EPOCHS: usize = 60;
/// Default fine-tuning learning rate of `mote fit` (Adam, cosine-decayed to 0).
pub const DEFAULT_LR: f64 = 1e-2;
/// Default weight of the distillation from the float model when there are labels.
pub const DEFAULT_DISTILL: f32 = 0.5;
/// Default distillation temperature.
pub const DEFAULT_TEMPERATURE: f32 = 2.0;

impl Default for FitOptions {
    /// The default recipe of `mote fit`: one-shot pruning, then [`DEFAULT_EPOCHS`] epochs of
    /// Adam at [`DEFAULT_LR`] with cosine decay, on labels mixed half and half with
    /// distillation from the float model at temperature 2 (teacher logits on the same
    /// augmented views), images shifted by a random pixel offset per sample and epoch. On the
    /// first (width-1) digits CNN in int8 it beat labels-only fine-tuning at 37.5 % and 50 %
    /// structured pruning and varied less with the shuffling seed
    /// (`quantize/examples/fit_recipes.rs`); with int4 weights (quantized after fine-tuning) it
    /// did not. On the width-2 default model, 20 epochs of it keep 50 % pruning within one
    /// point of the float model (`quantize/tests/fit.rs`).
    fn default() -> Self {
        FitOptions {
            ratios: vec![0.0, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875],
            recipes: vec![Recipe::Int8, Recipe::Int4Big, Recipe::Int4W, Recipe::A16W8],
            finetune: FinetuneOptions {
                epochs: DEFAULT_EPOCHS,
                lr: DEFAULT_LR,
                distill: DEFAULT_DISTILL,
                temperature: DEFAULT_TEMPERATURE,
                ..FinetuneOptions::default()
            },
            steps: 1,
            between_epochs: 2,
            shift_augment: true,
            finetune_top: 2,
            per_layer: false,
            max_calibration: 100,
            observer: ObserverKind::MinMax,
            bias_correction: false,
            gptq: true,
            selection: Selection::WeightNorm,
            reconstruct: false,
            max_ablation: 1000,
            progress: false,
            synth: SynthOptions::default(),
        }
    }
}

/// A per-layer precision recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Recipe {
    /// Every layer int8.
    Int8,
    /// int4 weights in every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED, int8 elsewhere.
    Int4W,
    /// int4 weights only in the layers holding at least 20 % of the weight elements.
    Int4Big,
    /// int16 activations with int8 weights everywhere.
    A16W8,
}

impl Recipe {
    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Recipe::Int8 => "int8",
            Recipe::Int4W => "int4w",
            Recipe::Int4Big => "int4w-big",
            Recipe::A16W8 => "a16w8",
        }
    }

    /// Per-node precisions for `g`.
    pub fn per_node(self, g: &Graph) -> Vec<Precision> {
        let weights = |n: &crate::ir::Node| {
            n.inputs
                .get(1)
                .copied()
                .flatten()
                .map_or(0, |w| g.tensors[w].elements())
        };
        let is_w = |n: &crate::ir::Node| {
            matches!(
                n.op,
                Operator::Conv2d(_)
                    | Operator::DepthwiseConv2d(_)
                    | Operator::FullyConnected { .. }
            )
        };
        let total: usize = g.nodes.iter().filter(|n| is_w(n)).map(weights).sum();
        g.nodes
            .iter()
            .map(|n| match self {
                Recipe::Int8 => Precision::Int8,
                Recipe::A16W8 => Precision::A16W8,
                Recipe::Int4W if is_w(n) => Precision::Int4Weights,
                Recipe::Int4Big if is_w(n) && weights(n) * 5 >= total => Precision::Int4Weights,
                _ => Precision::Int8,
            })
            .collect()
    }
}

/// One layer of a candidate's plan.
#[derive(Debug, Clone, Serialize)]
pub struct LayerPlan {
    /// IR node index.
    pub node: usize,
    /// Operator.
    pub op: String,
    /// Output tensor name.
    pub name: String,
    /// Precision.
    pub precision: &'static str,
    /// Output channels kept.
    pub channels: usize,
    /// Output channels of the original model.
    pub channels_before: usize,
    /// Constant bytes in the `.mote` of the runtime op(s) computing this node.
    pub flash_bytes: u64,
    /// MACs of the runtime op(s) computing this node.
    pub macs: u64,
}

/// One explored candidate.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// Fraction of channels removed: in every prunable group for a uniform plan, of all the
    /// prunable channels for a per-layer one.
    pub ratio: f32,
    /// Whether the plan removes the same fraction of every prunable group (else: a per-layer
    /// plan of the greedy sensitivity search).
    pub uniform: bool,
    /// Channels kept per prunable group (in [`prune::analyze`] order).
    pub channels: Vec<usize>,
    /// Precision recipe.
    pub recipe: &'static str,
    /// `.mote` bytes (exact).
    pub flash_bytes: usize,
    /// Arena bytes (exact).
    pub arena_bytes: usize,
    /// MACs per inference.
    pub macs: u64,
    /// Estimated latency on the target, µs.
    pub est_latency_us: f64,
    /// Estimated energy on the target, µJ.
    pub est_energy_uj: f64,
    /// Accuracy or agreement on the eval set, 0..1.
    pub score: f64,
    /// Whether the weights were fine-tuned after pruning.
    pub finetuned: bool,
    /// Whether every budget is met.
    pub feasible: bool,
    /// Whether no other candidate is at least as good on every axis and better on one.
    pub pareto: bool,
}

/// The fit's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct FitResult {
    /// Target profile id.
    pub target: &'static str,
    /// The budgets.
    pub budget: Budget,
    /// What `score` measures.
    pub metric: &'static str,
    /// Score of the float model on the eval set.
    pub float_score: f64,
    /// Score of the unpruned all-int8 model.
    pub int8_score: Option<f64>,
    /// The chosen candidate.
    pub chosen: Candidate,
    /// Its plan per layer.
    pub layers: Vec<LayerPlan>,
    /// Every candidate explored (each structure after fine-tuning where it was fine-tuned).
    pub explored: Vec<Candidate>,
    /// Precision recipes that the compiler could not build, with the reason.
    pub unavailable: Vec<(String, String)>,
    /// The chosen `.mote`.
    #[serde(skip)]
    pub compiled: Compiled,
    /// The chosen int8 graph (for simulation / fidelity).
    #[serde(skip)]
    pub graph: Graph,
    /// The chosen pruned (and fine-tuned) float graph.
    #[serde(skip)]
    pub float: Graph,
    /// Per class of the float model: the synthesized inputs that reached it and joined the
    /// distillation set ([`FitOptions::synth`]; empty when synthesis was off).
    pub synthesized: Vec<usize>,
}

/// Activation ranges (min/max) of a float graph over `samples`.
pub fn calibrate_ranges(
    g: &Graph,
    samples: &[Sample],
) -> Result<Vec<Option<(f32, f32)>>, CompileError> {
    calibrate_ranges_with(g, samples, ObserverKind::MinMax)
}

/// Activation ranges of a float graph over `samples` by `observer` (a second pass over the
/// samples for the observers that need a histogram).
pub fn calibrate_ranges_with(
    g: &Graph,
    samples: &[Sample],
    observer: ObserverKind,
) -> Result<Vec<Option<(f32, f32)>>, CompileError> {
    let exec = FloatExecutor::new(g, default_device());
    let skip: Vec<bool> = g.tensors.iter().map(|t| t.is_const()).collect();
    let mut cal = Calibrator::new(g.tensors.len());
    for s in samples {
        cal.observe_range(&exec.run(std::slice::from_ref(s))?, &skip);
    }
    if observer.needs_histogram() {
        for s in samples {
            cal.observe_hist(&exec.run(std::slice::from_ref(s))?, &skip);
        }
    }
    Ok(cal.ranges(observer))
}

/// Measured figures of one compiled model.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// `.mote` bytes.
    pub flash: usize,
    /// Arena bytes.
    pub arena: usize,
    /// MACs.
    pub macs: u64,
    /// Estimated latency, µs.
    pub latency_us: f64,
    /// Estimated energy, µJ.
    pub energy_uj: f64,
}

/// Flash, arena, MACs and the target estimates of a compiled model, as `mote inspect` and
/// `mote bench --target` report them.
pub fn measure(c: &Compiled, target: &TargetProfile) -> Result<Measured, CompileError> {
    let aligned = c.aligned();
    let model = Model::from_bytes(aligned.as_slice())?;
    let e = energy::estimate_model(&model, target);
    Ok(Measured {
        flash: model.file_bytes(),
        arena: model.arena_bytes(),
        macs: model.costs().iter().map(|c| c.macs).sum(),
        latency_us: e.latency_us,
        energy_uj: e.energy_uj,
    })
}

/// Runs a compiled quantized model over `samples` on the runtime; returns its output vectors.
pub fn run_quantized(
    qg: &Graph,
    c: &Compiled,
    samples: &[Sample],
) -> Result<Vec<Vec<f32>>, CompileError> {
    let mut r = Int8Runner::new(qg, c)?;
    samples
        .iter()
        .map(|s| {
            let (_, mut outs) = r.run_layers(std::slice::from_ref(s), false)?;
            Ok(outs.swap_remove(0))
        })
        .collect()
}

/// Fraction of `outs` whose top-1 class equals `truth`.
pub fn top1(outs: &[Vec<f32>], truth: &[usize]) -> f64 {
    let ok = outs
        .iter()
        .zip(truth)
        .filter(|(o, t)| argmax(o) == **t)
        .count();
    ok as f64 / truth.len().max(1) as f64
}

impl Budget {
    /// Whether `m` meets every budget.
    pub fn met(&self, m: &Measured) -> bool {
        self.flash.is_none_or(|b| m.flash <= b)
            && self.ram.is_none_or(|b| m.arena <= b)
            && self.latency_us.is_none_or(|b| m.latency_us <= b)
            && self.energy_uj.is_none_or(|b| m.energy_uj <= b)
    }
}

struct Built {
    cand: Candidate,
    qgraph: Graph,
    compiled: Compiled,
    per_node: Vec<Precision>,
}

fn bar(len: usize, show: bool, msg: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {elapsed} {wide_msg}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg);
    pb
}

/// One pruned structure the search explores.
#[derive(Debug, Clone)]
struct Structure {
    /// See [`Candidate::ratio`].
    ratio: f32,
    /// Per-group pruning ratios.
    group_ratios: Vec<f32>,
    /// See [`Candidate::uniform`].
    uniform: bool,
}

/// What [`build`] refines in a candidate that meets the budgets, on the calibration samples
/// (the ones used for ranges): GPTQ rounding of int4 weights, then bias correction.
#[derive(Clone, Copy)]
struct Refine<'a> {
    samples: &'a [Sample],
    gptq: bool,
    bias_correction: bool,
}

#[allow(clippy::too_many_arguments)]
fn build(
    pf: &Graph,
    st: &Structure,
    recipe: Recipe,
    ranges: &[Option<(f32, f32)>],
    target: &TargetProfile,
    budget: &Budget,
    data: &FitData,
    truth: &[usize],
    finetuned: bool,
    refine: Refine<'_>,
) -> Result<Built, CompileError> {
    let per_node = recipe.per_node(pf);
    let mut qg = ptq::quantize_mixed(pf, ranges, &per_node)?;
    let mut compiled = compile(qg.clone())?;
    let mut m = measure(&compiled, target)?;
    let gptq = refine.gptq && per_node.contains(&ptq::Precision::Int4Weights);
    if budget.met(&m) && (gptq || refine.bias_correction) {
        let wrapped: Vec<Vec<Vec<f32>>> = refine.samples.iter().map(|s| vec![s.clone()]).collect();
        if gptq {
            let rounded = ptq::gptq::gptq_int4(pf, &per_node, &wrapped)?;
            qg = ptq::quantize_mixed(&rounded, ranges, &per_node)?;
            compiled = compile(qg.clone())?;
        }
        if refine.bias_correction {
            let exec = FloatExecutor::new(pf, default_device());
            qg = crate::pipeline::correct_biases(&exec, &qg, &compiled, &wrapped)?;
            compiled = compile(qg.clone())?;
        }
        m = measure(&compiled, target)?;
    }
    let outs = run_quantized(&qg, &compiled, &data.eval)?;
    let a = prune::analyze(pf);
    Ok(Built {
        cand: Candidate {
            ratio: st.ratio,
            uniform: st.uniform,
            channels: a
                .prunable()
                .into_iter()
                .map(|g| a.groups[g].channels)
                .collect(),
            recipe: recipe.name(),
            flash_bytes: m.flash,
            arena_bytes: m.arena,
            macs: m.macs,
            est_latency_us: m.latency_us,
            est_energy_uj: m.energy_uj,
            score: top1(&outs, truth),
            finetuned,
            feasible: budget.met(&m),
            pareto: false,
        },
        qgraph: qg,
        compiled,
        per_node,
    })
}

fn dominates(a: &Candidate, b: &Candidate) -> bool {
    let ge = a.flash_bytes <= b.flash_bytes
        && a.arena_bytes <= b.arena_bytes
        && a.est_latency_us <= b.est_latency_us
        && a.score >= b.score;
    let gt = a.flash_bytes < b.flash_bytes
        || a.arena_bytes < b.arena_bytes
        || a.est_latency_us < b.est_latency_us
        || a.score > b.score;
    ge && gt
}

/// Layer plan of a compiled candidate.
fn layer_plan(
    original: &Graph,
    pruned: &Graph,
    compiled: &Compiled,
    per_node: &[Precision],
) -> Vec<LayerPlan> {
    let aligned = compiled.aligned();
    let costs: Vec<(u64, u64)> = Model::from_bytes(aligned.as_slice())
        .map(|m| {
            m.costs()
                .iter()
                .map(|c| (u64::from(c.const_bytes_read), c.macs))
                .collect()
        })
        .unwrap_or_default();
    let mut per: Vec<(u64, u64)> = vec![(0, 0); pruned.nodes.len()];
    for (op, nodes) in compiled.op_nodes.iter().enumerate() {
        // Charge a fused op to its first node.
        if let (Some(&n), Some(&c)) = (nodes.iter().min(), costs.get(op)) {
            if n < per.len() {
                per[n].0 += c.0;
                per[n].1 += c.1;
            }
        }
    }
    pruned
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let o = n.outputs[0];
            let ch = |g: &Graph| {
                g.tensors[g.nodes[i].outputs[0]]
                    .shape
                    .last()
                    .copied()
                    .unwrap_or(1)
            };
            LayerPlan {
                node: i,
                op: n.op.name().to_string(),
                name: pruned.tensors[o].name.clone(),
                precision: per_node.get(i).copied().unwrap_or_default().name(),
                channels: ch(pruned),
                channels_before: if original.nodes.len() == pruned.nodes.len() {
                    ch(original)
                } else {
                    ch(pruned)
                },
                flash_bytes: per[i].0,
                macs: per[i].1,
            }
        })
        .collect()
}

/// The fine-tuning of pruned structures as the search does it: the samples (shift-augmented
/// views when [`FitOptions::shift_augment`]), their labels, the float model's logits on them,
/// and the schedule.
pub struct Tuner {
    inputs: Vec<Sample>,
    labels: Vec<u8>,
    teacher: Vec<Vec<f32>>,
    gradual: GradualOptions,
    synthesized: Vec<usize>,
}

impl Tuner {
    /// On the training samples with their labels (mixed with distillation from the unpruned
    /// float model by `opts.finetune.distill`), else distillation alone on the calibration
    /// samples (labelled with the float model's top-1, which then weighs nothing), joined by
    /// inputs synthesized from them for every class ([`synth::synthesize`]) when
    /// `opts.synth.per_class > 0`.
    ///
    /// Errors: those of [`finetune::logits`] and [`synth::synthesize`] on `float`.
    pub fn new(float: &Graph, data: &FitData, opts: &FitOptions) -> Result<Self, CompileError> {
        let mut synthesized = Vec::new();
        let mut distill_set;
        let (x, labels): (&[Sample], Option<&[u8]>) = match &data.train {
            Some((x, y)) => (x, Some(y)),
            None if opts.synth.per_class > 0 => {
                let s = synth::synthesize(float, &data.calibration, &opts.synth)?;
                synthesized = s.reached;
                distill_set = data.calibration.clone();
                for _ in 0..opts.synth.repeat.max(1) {
                    distill_set.extend(s.samples.iter().cloned());
                }
                (&distill_set, None)
            }
            None => (&data.calibration, None),
        };
        let inshape = &float.tensors[float.inputs[0]].shape;
        // Shift augmentation: the nine one-pixel-shifted views of every image, one drawn at
        // random per sample and epoch (an epoch costs what one over the plain images does).
        let inputs = if opts.shift_augment {
            finetune::shifted_grid(x, inshape)
        } else {
            x.to_vec()
        };
        let views = inputs.len() / x.len().max(1);
        let teacher = finetune::logits(float, &inputs, 64)?;
        let labels: Vec<u8> = match labels {
            Some(y) => (0..views).flat_map(|_| y.iter().copied()).collect(),
            None => teacher
                .iter()
                .map(|t| u8::try_from(argmax(t)).unwrap_or(u8::MAX))
                .collect(),
        };
        let last = FinetuneOptions {
            distill: if data.train.is_some() {
                opts.finetune.distill
            } else {
                1.0
            },
            views,
            ..opts.finetune
        };
        let gradual = GradualOptions {
            steps: opts.steps.max(1),
            between: FinetuneOptions {
                epochs: opts.between_epochs,
                ..last
            },
            last,
        };
        Ok(Tuner {
            inputs,
            labels,
            teacher,
            gradual,
            synthesized,
        })
    }

    /// The distillation / training inputs (the calibration or training samples, then the
    /// synthesized ones; every view of them with shift augmentation).
    pub fn inputs(&self) -> &[Sample] {
        &self.inputs
    }

    /// Per class: the synthesized inputs in the distillation set (empty without synthesis).
    pub fn synthesized(&self) -> &[usize] {
        &self.synthesized
    }

    /// Prunes `float` (the graph given to [`Tuner::new`]) to remove the fraction `ratios[i]`
    /// of the channels of each group `i` of [`prune::analyze`] and fine-tunes it
    /// ([`prune_gradually`]); returns the graph and the final loss.
    ///
    /// Errors: those of [`prune_gradually`].
    pub fn prune_and_tune(
        &self,
        float: &Graph,
        ratios: &[f32],
    ) -> Result<(Graph, f64), CompileError> {
        let targets = Targets::Distill {
            labels: &self.labels,
            teacher: &self.teacher,
        };
        prune_gradually(float, ratios, &self.inputs, &targets, &self.gradual)
    }

    /// The same with another shuffling seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.gradual.last.seed = seed;
        self.gradual.between.seed = seed;
        self
    }
}

/// Searches pruning ratio × precision recipe for the candidate meeting `budget` with the best
/// score; fine-tunes the best pruned structures.
///
/// `float` is a prepared float graph (see [`crate::float::prepare`]). Errors:
/// [`CompileError::Usage`] naming the smallest achievable figures and the layers that dominate
/// them when nothing meets the budgets; the compile error of the unpruned int8 model.
pub fn fit(
    float: &Graph,
    target: &'static TargetProfile,
    budget: Budget,
    data: &FitData,
    opts: &FitOptions,
) -> Result<FitResult, CompileError> {
    if data.eval.is_empty() || data.calibration.is_empty() {
        return Err(CompileError::Malformed {
            format: "fit data",
            what: "calibration and eval samples are required".into(),
        });
    }
    let analysis = prune::analyze(float);
    let cal: Vec<Sample> = data
        .calibration
        .iter()
        .take(opts.max_calibration.max(1))
        .cloned()
        .collect();
    let refine = Refine {
        samples: &cal,
        gptq: opts.gptq,
        bias_correction: opts.bias_correction,
    };
    // Pruning recovery sees the calibration samples and `data.recover`; ablation at most
    // `max_ablation` of the latter (evenly strided).
    let recovery: Vec<Sample> = cal.iter().chain(&data.recover).cloned().collect();
    let scores = match opts.selection {
        Selection::WeightNorm => None,
        Selection::Ablation => {
            let pb = bar(1, opts.progress, "ablation");
            let stride = data.recover.len().div_ceil(opts.max_ablation.max(1)).max(1);
            let set: Vec<Sample> = cal
                .iter()
                .chain(data.recover.iter().step_by(stride))
                .cloned()
                .collect();
            let means = recover::channel_means(float, &analysis, &set)?;
            let s = recover::ablation_scores(float, &analysis, &set, &means)?;
            pb.finish_and_clear();
            Some(s)
        }
    };
    let float_outs = finetune::predict(float, &data.eval, 64)?;
    let float_top: Vec<usize> = float_outs.iter().map(|o| argmax(o)).collect();
    let (metric, truth): (&'static str, Vec<usize>) = match &data.eval_labels {
        Some(l) => ("accuracy", l.iter().map(|&c| usize::from(c)).collect()),
        None => ("top-1 agreement with float", float_top.clone()),
    };
    let float_score = top1(&float_outs, &truth);
    let mut uniform = opts.ratios.clone();
    if !uniform.contains(&0.0) {
        uniform.insert(0, 0.0);
    }
    let groups = analysis.groups.len();
    let mut structures: Vec<Structure> = uniform
        .iter()
        .map(|&r| Structure {
            ratio: r,
            group_ratios: vec![r; groups],
            uniform: true,
        })
        .collect();
    if opts.per_layer {
        let greedy = super::layerwise::greedy_counts(float, &analysis, &cal)?;
        let mut picked: Vec<usize> = Vec::new();
        for &r in uniform.iter().filter(|&&r| r > 0.0) {
            let closest = (0..greedy.len()).min_by(|&a, &b| {
                let d = |i: usize| {
                    (super::layerwise::removed_fraction(&analysis, &greedy[i]) - r).abs()
                };
                d(a).total_cmp(&d(b))
            });
            if let Some(i) = closest.filter(|i| !picked.contains(i)) {
                picked.push(i);
                structures.push(Structure {
                    ratio: super::layerwise::removed_fraction(&analysis, &greedy[i]),
                    group_ratios: super::layerwise::ratios_of(&analysis, &greedy[i]),
                    uniform: false,
                });
            }
        }
    }
    let ratios: Vec<f32> = structures.iter().map(|st| st.ratio).collect();
    let total = structures.len() * opts.recipes.len();
    let pb = bar(total, opts.progress, "searching");
    let mut built: Vec<(usize, Built)> = Vec::new(); // (ratio index, built)
    let mut pruned: Vec<Graph> = Vec::new();
    let mut unavailable: Vec<(String, String)> = Vec::new();
    for (ri, st) in structures.iter().enumerate() {
        let plan = match &scores {
            Some(s) => analysis.plan_scored(&st.group_ratios, s),
            None => analysis.plan(float, &st.group_ratios),
        };
        let mut pf = prune::apply(float, &analysis, &plan)?;
        if opts.reconstruct && plan.keep.iter().any(Option::is_some) {
            recover::reconstruct(float, &mut pf, &analysis, &plan, &recovery, RIDGE, true)?;
        }
        let ranges = calibrate_ranges_with(&pf, &cal, opts.observer)?;
        for &recipe in &opts.recipes {
            pb.set_message(format!("ratio {:.3} {}", st.ratio, recipe.name()));
            match build(
                &pf, st, recipe, &ranges, target, &budget, data, &truth, false, refine,
            ) {
                Ok(b) => built.push((ri, b)),
                Err(e) => {
                    if ri == 0 && recipe == Recipe::Int8 {
                        return Err(e);
                    }
                    if !unavailable.iter().any(|(n, _)| n == recipe.name()) {
                        unavailable.push((recipe.name().to_string(), e.to_string()));
                    }
                }
            }
            pb.inc(1);
        }
        pruned.push(pf);
    }
    pb.finish_and_clear();
    let int8_score = built
        .iter()
        .find(|(ri, b)| *ri == 0 && b.cand.recipe == Recipe::Int8.name())
        .map(|(_, b)| b.cand.score);

    // Fine-tune the best feasible pruned structures.
    let mut synthesized = Vec::new();
    if opts.finetune.epochs > 0 && opts.finetune_top > 0 && !opts.reconstruct {
        // Pruning without fine-tuning says little about accuracy after it: fine-tune the
        // least-pruned structures that meet the budgets with some recipe.
        let mut feasible: Vec<usize> = built
            .iter()
            .filter(|(ri, b)| b.cand.feasible && ratios[*ri] > 0.0)
            .map(|(ri, _)| *ri)
            .collect();
        feasible.sort_unstable_by(|a, b| ratios[*a].total_cmp(&ratios[*b]));
        feasible.dedup();
        let chosen_ri: Vec<usize> = feasible.into_iter().take(opts.finetune_top).collect();
        let tuner = Tuner::new(float, data, opts)?;
        synthesized = tuner.synthesized().to_vec();
        let pb = bar(chosen_ri.len(), opts.progress, "fine-tuning");
        for ri in chosen_ri {
            pb.set_message(format!("ratio {:.3}", ratios[ri]));
            let (tuned, _loss) = tuner.prune_and_tune(float, &structures[ri].group_ratios)?;
            let ranges = calibrate_ranges_with(&tuned, &cal, opts.observer)?;
            let recipes: Vec<Recipe> = built
                .iter()
                .filter(|(r, _)| *r == ri)
                .filter_map(|(_, b)| {
                    opts.recipes
                        .iter()
                        .copied()
                        .find(|x| x.name() == b.cand.recipe)
                })
                .collect();
            let mut replaced = Vec::new();
            for recipe in recipes {
                let b = build(
                    &tuned,
                    &structures[ri],
                    recipe,
                    &ranges,
                    target,
                    &budget,
                    data,
                    &truth,
                    true,
                    refine,
                )?;
                replaced.push((ri, b));
            }
            built.retain(|(r, _)| *r != ri);
            built.extend(replaced);
            pruned[ri] = tuned;
            pb.inc(1);
        }
        pb.finish_and_clear();
    }

    // Pareto front.
    let cands: Vec<Candidate> = built.iter().map(|(_, b)| b.cand.clone()).collect();
    for (i, (_, b)) in built.iter_mut().enumerate() {
        b.cand.pareto = !cands
            .iter()
            .enumerate()
            .any(|(j, c)| j != i && dominates(c, &cands[i]));
    }
    let best = built
        .iter()
        .enumerate()
        .filter(|(_, (_, b))| b.cand.feasible)
        .max_by(|(_, (_, a)), (_, (_, b))| {
            a.cand
                .score
                .total_cmp(&b.cand.score)
                .then(b.cand.flash_bytes.cmp(&a.cand.flash_bytes))
                .then(b.cand.est_latency_us.total_cmp(&a.cand.est_latency_us))
        })
        .map(|(i, _)| i);
    let Some(best) = best else {
        return Err(impossible(&built, &ratios, &pruned, &budget, target));
    };
    let explored: Vec<Candidate> = built.iter().map(|(_, b)| b.cand.clone()).collect();
    let (ri, b) = built.swap_remove(best);
    let layers = layer_plan(float, &pruned[ri], &b.compiled, &b.per_node);
    Ok(FitResult {
        target: target.id,
        budget,
        metric,
        float_score,
        int8_score,
        chosen: b.cand,
        layers,
        explored,
        unavailable,
        compiled: b.compiled,
        graph: b.qgraph,
        float: pruned.swap_remove(ri),
        synthesized,
    })
}

/// The error for budgets nothing meets: the smallest achievable figures and the layers that
/// dominate each (in the candidate that achieves it).
fn impossible(
    built: &[(usize, Built)],
    ratios: &[f32],
    pruned: &[Graph],
    budget: &Budget,
    target: &TargetProfile,
) -> CompileError {
    let mut lines = vec![format!(
        "budgets impossible: no explored candidate meets every budget on {} ({} candidates: pruning up to {:.1} % of \
         channels × the available precisions)",
        target.id,
        built.len(),
        100.0 * ratios.iter().copied().fold(0.0, f32::max)
    )];
    let pick = |key: &dyn Fn(&Candidate) -> f64| {
        built
            .iter()
            .min_by(|a, b| key(&a.1.cand).total_cmp(&key(&b.1.cand)))
    };
    type Key = fn(&Candidate) -> f64;
    let rows: [(&str, Option<String>, Key, &str); 4] = [
        (
            "flash",
            budget.flash.map(|b| format!("{b} bytes")),
            |c| c.flash_bytes as f64,
            "bytes",
        ),
        (
            "RAM (arena)",
            budget.ram.map(|b| format!("{b} bytes")),
            |c| c.arena_bytes as f64,
            "bytes",
        ),
        (
            "latency (estimated)",
            budget.latency_us.map(|b| format!("{b} us")),
            |c| c.est_latency_us,
            "us",
        ),
        (
            "energy (estimated)",
            budget.energy_uj.map(|b| format!("{b} uJ")),
            |c| c.est_energy_uj,
            "uJ",
        ),
    ];
    for (name, asked, key, unit) in rows {
        let Some((ri, b)) = pick(&key) else { continue };
        let v = key(&b.cand);
        let vs = if unit == "bytes" {
            format!("{v:.0} bytes")
        } else {
            format!("{v:.1} {unit}")
        };
        let dom = dominating(name, b, &pruned[*ri], target);
        lines.push(format!(
            "  smallest {name}: {vs} (pruning {:.1} %, {}){}; dominated by {dom}",
            100.0 * b.cand.ratio,
            b.cand.recipe,
            asked.map_or(String::new(), |a| format!(", budget {a}")),
        ));
    }
    CompileError::Usage(lines.join("\n"))
}

fn dominating(what: &str, b: &Built, g: &Graph, target: &TargetProfile) -> String {
    let aligned = b.compiled.aligned();
    let Ok(model) = Model::from_bytes(aligned.as_slice()) else {
        return "?".into();
    };
    let label = |op: usize| {
        let n = b
            .compiled
            .op_nodes
            .get(op)
            .and_then(|v| v.iter().min())
            .copied();
        let kind = model.op_kind(op).map_or("?", |k| k.name());
        match n {
            Some(n) if n < g.nodes.len() => {
                format!("{kind} {:?}", g.tensors[g.nodes[n].outputs[0]].name)
            }
            _ => format!("op {op} {kind}"),
        }
    };
    let mut scores: Vec<(usize, f64)> = (0..model.ops().len())
        .map(|i| {
            let c = model.costs().get(i).copied().unwrap_or_default();
            let v = match what {
                "flash" => f64::from(c.const_bytes_read),
                "RAM (arena)" => {
                    let (ins, outs) = model.op_io(i).unwrap_or((&[], &[]));
                    ins.iter()
                        .chain(outs)
                        .filter_map(|&t| model.tensors().get(t as usize))
                        .filter(|t| t.storage() == Some(mote_runtime::format::Storage::Arena))
                        .map(|t| f64::from(t.bytes))
                        .sum::<f64>()
                        + f64::from(model.ops()[i].scratch_bytes)
                }
                _ => energy::estimate_op(&model, i, target).map_or(0.0, |e| e.latency_us),
            };
            (i, v)
        })
        .collect();
    let total: f64 = scores.iter().map(|s| s.1).sum::<f64>().max(1e-12);
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    let share = what != "RAM (arena)";
    scores
        .iter()
        .take(3)
        .map(|(i, v)| {
            if share {
                format!("{} ({:.0} %)", label(*i), 100.0 * v / total)
            } else {
                format!("{} ({v:.0} bytes live)", label(*i))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The analysis of a graph, re-exported for reports.
pub fn analysis(float: &Graph) -> Analysis {
    prune::analyze(float)
}
