//! `mote fit`: shrink a float model to a device's flash, RAM, latency and energy budgets.
//!
//! The pipeline: import and [`crate::float::prepare`] the float model → [`prune::analyze`] its
//! channel groups → for every pruning ratio × precision recipe, [`prune::apply`] the plan,
//! calibrate, quantize ([`crate::ptq::quantize_mixed`]; recipes the compiler cannot build yet
//! are skipped and listed), compile, and measure (flash and arena exactly, as `mote inspect`
//! reports them; latency and energy *estimated* with the target's cost model, as
//! `mote bench --target`) → score each on held-out data on the runtime → fine-tune the least
//! pruned structures that meet the budgets ([`finetune`]: labels, distillation from the float
//! model, or a mix; optionally re-pruned gradually, [`gradual`]) → pick the best-scoring candidate that meets every budget ([`search::fit`]).

pub mod finetune;
pub mod front;
pub mod gradual;
pub mod layerwise;
pub mod prune;
pub mod recover;
pub mod search;
pub mod sparse;
pub mod synth;

use std::path::{Path, PathBuf};

use crate::error::CompileError;
use crate::inspect::group;
use crate::pipeline::load_samples;
use search::{Budget, FitData, FitOptions, FitResult, Sample};

/// Arguments of `mote fit`.
#[derive(Debug, Clone, clap::Args)]
pub struct FitArgs {
    /// The float model (.tflite).
    pub model: PathBuf,
    /// Target profile id (see `mote targets`).
    #[arg(long)]
    pub target: String,
    /// Flash budget: `.mote` bytes (suffixes k = 1000, K / KiB = 1024).
    #[arg(long)]
    pub flash: Option<String>,
    /// RAM budget: arena bytes (same suffixes).
    #[arg(long)]
    pub ram: Option<String>,
    /// Latency budget on the target, estimated: e.g. `800us`, `2ms` (plain numbers are µs).
    #[arg(long)]
    pub latency: Option<String>,
    /// Energy budget per inference on the target, estimated: e.g. `30uJ`, `1mJ` (plain: µJ).
    #[arg(long)]
    pub energy: Option<String>,
    /// Calibration samples: an .npy batch (float32), a raw float32 file, or a folder of them.
    /// Also the distillation set when there are no training labels.
    #[arg(long)]
    pub calibration: PathBuf,
    /// Held-out samples the candidates are scored on (default: the last 20 % of calibration).
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// Labels of `--eval` (raw uint8, one per sample, or an integer .npy): score = accuracy.
    /// Without labels the score is top-1 agreement with the float model.
    #[arg(long, requires = "eval")]
    pub labels: Option<PathBuf>,
    /// Labelled training samples for supervised fine-tuning after pruning (without them:
    /// distillation against the float model on the calibration samples).
    #[arg(long, requires = "train_labels")]
    pub train: Option<PathBuf>,
    /// Labels of `--train`.
    #[arg(long)]
    pub train_labels: Option<PathBuf>,
    /// Fine-tuning epochs (0 = no fine-tuning).
    #[arg(long, default_value_t = search::DEFAULT_EPOCHS)]
    pub epochs: usize,
    /// Fine-tuning learning rate (Adam, cosine-decayed to 0).
    #[arg(long, default_value_t = search::DEFAULT_LR)]
    pub lr: f64,
    /// Pruning steps of the fine-tuned structures (1 = one-shot pruning; e.g. 4 = remove the
    /// channels in 4 equal steps with fine-tuning between them).
    #[arg(long, default_value_t = 1)]
    pub steps: usize,
    /// Fine-tuning epochs between pruning steps.
    #[arg(long, default_value_t = 2)]
    pub between_epochs: usize,
    /// With `--train`: weight of distillation from the float model in the fine-tuning loss
    /// (0 = cross-entropy on the labels only, 1 = distillation only).
    #[arg(long, default_value_t = search::DEFAULT_DISTILL)]
    pub distill: f32,
    /// Softmax temperature of the distillation.
    #[arg(long, default_value_t = search::DEFAULT_TEMPERATURE)]
    pub temperature: f32,
    /// Augment fine-tuning images (inputs `[1, h, w, c]`) with one-pixel shifts: each epoch
    /// sees every image once, shifted by a random (dy, dx) ∈ {−1, 0, 1}² (the default).
    #[arg(long, overrides_with = "no_shift_augment")]
    pub shift_augment: bool,
    /// Fine-tune on the images as they are (no shift augmentation).
    #[arg(long)]
    pub no_shift_augment: bool,
    /// Without training labels: synthesize this many inputs per class of the float model from
    /// the calibration samples (gradient steps on the input towards the class, kept near the
    /// calibration data; only those the float model then puts in the class are kept) and add
    /// them to the distillation set, so classes the calibration data never shows are still
    /// taught (see `fit::synth`). 0 = off.
    #[arg(long, default_value_t = 0)]
    pub synthesize: usize,
    /// Pruning ratios to try, comma separated (fraction of channels removed per layer group).
    #[arg(long, value_delimiter = ',')]
    pub ratios: Option<Vec<f32>>,
    /// Also try per-layer plans: for each ratio, the plan of a greedy search that prunes, step
    /// by step, the layer whose channels cost the least fidelity per weight byte removed.
    #[arg(long)]
    pub per_layer: bool,
    /// Activation-range observer of the calibration: minmax, moving-average, percentile,
    /// entropy or mse.
    #[arg(long, default_value = "minmax")]
    pub observer: crate::calibrate::ObserverKind,
    /// Bias correction of the candidates that meet the budgets (layer by layer, on the
    /// calibration samples).
    #[arg(long)]
    pub bias_correction: bool,
    /// Round int4 weights to nearest instead of by GPTQ on the calibration samples (the
    /// default: each rounding error is carried onto the weights not yet rounded, so the layer's
    /// outputs stay close to the float ones).
    #[arg(long)]
    pub no_gptq: bool,
    /// How each pruned structure's channels are chosen: weight-norm (the largest filters) or
    /// ablation (the channels whose removal alone changes the outputs on the calibration
    /// samples most; one forward pass over them per channel).
    #[arg(long, default_value = "weight-norm")]
    pub select: search::Selection,
    /// Recover each pruned structure by layer-wise least squares to the float model's
    /// pre-activations on the calibration samples, instead of fine-tuning it.
    #[arg(long)]
    pub reconstruct: bool,
    /// More samples (same formats as `--calibration`) for `--select ablation` and
    /// `--reconstruct` only, never for quantization ranges: inputs that show what the model
    /// must keep but do not look like deployment inputs (e.g. synthesized keywords).
    #[arg(long, value_name = "DATA")]
    pub recover_data: Option<PathBuf>,
    /// Draw the explored candidates and their Pareto front as an SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Where to write the fitted .mote file.
    #[arg(short, long)]
    pub output: PathBuf,
}

fn usage(s: String) -> CompileError {
    CompileError::Usage(s)
}

/// Parses a byte count: `12000`, `12k` (×1000), `12K` / `12KiB` (×1024), `1M` / `1MiB`.
pub fn parse_bytes(s: &str) -> Result<usize, CompileError> {
    let t = s.trim();
    let (num, mul) = if let Some(n) = t.strip_suffix("KiB").or_else(|| t.strip_suffix('K')) {
        (n, 1024.0)
    } else if let Some(n) = t.strip_suffix("MiB").or_else(|| t.strip_suffix('M')) {
        (n, 1024.0 * 1024.0)
    } else if let Some(n) = t.strip_suffix('k').or_else(|| t.strip_suffix("kB")) {
        (n, 1000.0)
    } else {
        (t.strip_suffix('B').unwrap_or(t), 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| {
        usage(format!(
            "{s:?} is not a byte count (e.g. 20000, 20k, 20KiB)"
        ))
    })?;
    if v.is_nan() || v < 0.0 {
        return Err(usage(format!("{s:?}: negative")));
    }
    Ok((v * mul).floor() as usize)
}

/// Parses a quantity with unit suffixes (`units`: suffix → multiplier into the base unit);
/// plain numbers are in the base unit.
fn parse_unit(s: &str, units: &[(&str, f64)], what: &str) -> Result<f64, CompileError> {
    let t = s.trim();
    for (suf, mul) in units {
        if let Some(n) = t.strip_suffix(suf) {
            if let Ok(v) = n.trim().parse::<f64>() {
                return Ok(v * mul);
            }
        }
    }
    t.parse::<f64>()
        .map_err(|_| usage(format!("{s:?} is not a {what}")))
}

/// Parses a latency into µs (`800us`, `2ms`, `0.1s`, `800`).
pub fn parse_latency_us(s: &str) -> Result<f64, CompileError> {
    parse_unit(
        s,
        &[("us", 1.0), ("µs", 1.0), ("ms", 1e3), ("s", 1e6)],
        "latency (e.g. 800us, 2ms)",
    )
}

/// Parses an energy into µJ (`30uJ`, `1mJ`, `500nJ`, `30`).
pub fn parse_energy_uj(s: &str) -> Result<f64, CompileError> {
    parse_unit(
        s,
        &[
            ("uJ", 1.0),
            ("µJ", 1.0),
            ("nJ", 1e-3),
            ("mJ", 1e3),
            ("J", 1e6),
        ],
        "energy (e.g. 30uJ, 1mJ)",
    )
}

/// Reads class labels: a raw file of uint8 (one per sample) or an integer .npy.
pub fn load_labels(path: &Path) -> Result<Vec<u8>, CompileError> {
    let t = crate::npy::read(path)?;
    let bad = |what: String| CompileError::Malformed {
        format: "labels",
        what: format!("{}: {what}", path.display()),
    };
    let v: Vec<i64> = match t.descr.as_deref() {
        None | Some("|u1") | Some("|i1") => t.bytes.iter().map(|&b| i64::from(b)).collect(),
        Some("<i4") => t
            .bytes
            .chunks_exact(4)
            .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect(),
        Some("<i8") => t
            .bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect(),
        Some(d) => {
            return Err(bad(format!(
                "holds {d}; expected uint8 or int32/int64 labels"
            )))
        }
    };
    v.iter()
        .map(|&x| u8::try_from(x).map_err(|_| bad(format!("label {x} out of 0..=255"))))
        .collect()
}

/// Runs `mote fit`.
pub fn fit_cmd(a: &FitArgs) -> Result<(), CompileError> {
    let target = crate::bench::target_by_id(&a.target)?;
    let budget = Budget {
        flash: a.flash.as_deref().map(parse_bytes).transpose()?,
        ram: a.ram.as_deref().map(parse_bytes).transpose()?,
        latency_us: a.latency.as_deref().map(parse_latency_us).transpose()?,
        energy_uj: a.energy.as_deref().map(parse_energy_uj).transpose()?,
    };
    let bytes = std::fs::read(&a.model).map_err(|source| CompileError::Io {
        path: a.model.display().to_string(),
        source,
    })?;
    let graph = crate::tflite::import(&bytes)?;
    if graph.inputs.len() != 1 || graph.outputs.len() != 1 {
        return Err(usage(format!(
            "{}: {} inputs and {} outputs; mote fit takes single-input, single-output models",
            a.model.display(),
            graph.inputs.len(),
            graph.outputs.len()
        )));
    }
    let float = crate::float::prepare(&graph)?;
    let elements = float.tensors[float.inputs[0]].elements();
    let flat = |v: Vec<Vec<Vec<f32>>>| -> Vec<Sample> {
        v.into_iter().map(|mut s| s.swap_remove(0)).collect()
    };
    let mut calibration = flat(load_samples(&a.calibration, elements)?);
    let eval = match &a.eval {
        Some(p) => flat(load_samples(p, elements)?),
        None => {
            let keep = calibration.len() - calibration.len() / 5;
            calibration.split_off(keep.clamp(1, calibration.len()))
        }
    };
    if eval.is_empty() {
        return Err(usage("no held-out samples: give --eval".into()));
    }
    let eval_labels = a.labels.as_deref().map(load_labels).transpose()?;
    if let Some(l) = &eval_labels {
        if l.len() != eval.len() {
            return Err(usage(format!(
                "{} labels for {} eval samples",
                l.len(),
                eval.len()
            )));
        }
    }
    let train = match (&a.train, &a.train_labels) {
        (Some(x), Some(y)) => {
            let xs = flat(load_samples(x, elements)?);
            let ys = load_labels(y)?;
            if xs.len() != ys.len() {
                return Err(usage(format!(
                    "{} training labels for {} training samples",
                    ys.len(),
                    xs.len()
                )));
            }
            Some((xs, ys))
        }
        _ => None,
    };
    let recover = match &a.recover_data {
        Some(p) => flat(load_samples(p, elements)?),
        None => Vec::new(),
    };
    let data = FitData {
        calibration,
        eval,
        eval_labels,
        train,
        recover,
    };
    let mut opts = FitOptions {
        progress: !a.quiet && !a.json,
        ..FitOptions::default()
    };
    opts.finetune.epochs = a.epochs;
    opts.steps = a.steps;
    opts.between_epochs = a.between_epochs;
    opts.shift_augment = a.shift_augment || !a.no_shift_augment;
    opts.finetune.lr = a.lr;
    opts.per_layer = a.per_layer;
    opts.observer = a.observer;
    opts.bias_correction = a.bias_correction;
    opts.gptq = !a.no_gptq;
    opts.selection = a.select;
    opts.reconstruct = a.reconstruct;
    opts.finetune.distill = a.distill;
    opts.finetune.temperature = a.temperature;
    opts.synth.per_class = a.synthesize;
    if let Some(r) = &a.ratios {
        opts.ratios = r.clone();
    }
    let r = search::fit(&float, target, budget, &data, &opts)?;
    crate::emit::write_file(&a.output, &r.compiled.bytes)?;
    if let Some(p) = &a.plot {
        std::fs::write(p, front::render_svg(&r)).map_err(|source| CompileError::Io {
            path: p.display().to_string(),
            source,
        })?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        println!("{} -> {}", a.model.display(), a.output.display());
        print!("{}", render(&r));
    }
    Ok(())
}

fn pct(v: f64) -> String {
    format!("{:.2} %", 100.0 * v)
}

/// The fit report for a person: budgets, the chosen plan per layer, and the explored front.
pub fn render(r: &FitResult) -> String {
    let mut s = String::new();
    let c = &r.chosen;
    let b = &r.budget;
    let lim = |v: Option<String>| v.map_or("-".to_string(), |x| x);
    s.push_str(&format!("target     {}\n", r.target));
    s.push_str(&format!(
        "chosen     pruning {:.1} % of channels{}, {}{}\n",
        100.0 * c.ratio,
        if c.uniform {
            String::new()
        } else {
            " (per-layer plan, see below)".to_string()
        },
        c.recipe,
        if c.finetuned { ", fine-tuned" } else { "" }
    ));
    s.push_str(&format!(
        "flash      {} bytes (budget {})\n",
        group(c.flash_bytes as u64),
        lim(b.flash.map(|v| group(v as u64)))
    ));
    s.push_str(&format!(
        "RAM        {} bytes arena (budget {})\n",
        group(c.arena_bytes as u64),
        lim(b.ram.map(|v| group(v as u64)))
    ));
    s.push_str(&format!("compute    {} MACs\n", group(c.macs)));
    s.push_str(&format!(
        "latency    {} on {} (estimated; budget {})\n",
        crate::bench::fmt_us(c.est_latency_us),
        r.target,
        lim(b.latency_us.map(crate::bench::fmt_us))
    ));
    s.push_str(&format!(
        "energy     {} per inference (estimated; budget {})\n",
        crate::bench::fmt_uj(c.est_energy_uj),
        lim(b.energy_uj.map(crate::bench::fmt_uj))
    ));
    s.push_str(&format!(
        "{:<10} {} (float {}{})\n",
        if r.metric == "accuracy" {
            "accuracy"
        } else {
            "agreement"
        },
        pct(c.score),
        pct(r.float_score),
        r.int8_score
            .map_or(String::new(), |v| format!(", int8 unpruned {}", pct(v)))
    ));
    if !r.synthesized.is_empty() {
        s.push_str(&format!(
            "synthesized {} inputs for distillation, per class {:?}\n",
            r.synthesized.iter().sum::<usize>(),
            r.synthesized
        ));
    }
    s.push_str("\nplan per layer\n");
    s.push_str(&format!(
        "{:>4}  {:<18} {:<24} {:<6} {:>9} {:>8} {:>10}\n",
        "node", "op", "output", "prec", "channels", "flash B", "MACs"
    ));
    for l in &r.layers {
        if l.flash_bytes == 0 && l.macs == 0 && l.channels == l.channels_before {
            continue;
        }
        let mut name = l.name.clone();
        if name.len() > 24 {
            name = format!("…{}", &name[name.len() - 23..]);
        }
        s.push_str(&format!(
            "{:>4}  {:<18} {:<24} {:<6} {:>9} {:>8} {:>10}\n",
            l.node,
            l.op,
            name,
            l.precision,
            format!("{}/{}", l.channels, l.channels_before),
            group(l.flash_bytes),
            group(l.macs)
        ));
    }
    s.push_str(&front::render_table(r));
    for (name, why) in &r.unavailable {
        s.push_str(&format!("not available: {name} ({why})\n"));
    }
    s
}
