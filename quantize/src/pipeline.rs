//! The quantization pipeline: float model → calibration → int8 PTQ → `.mote` → fidelity report.
//!
//! Used by `mote quantize` and by the tests. Calibration data is a list of samples, each one
//! float32 vector per model input ([`load_samples`] reads them from files).

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

use crate::calibrate::{Calibrator, ObserverKind};
use crate::compile::{compile, Compiled};
use crate::error::CompileError;
use crate::fidelity::{Int8Runner, Report, ReportBuilder};
use crate::float::{self, FloatExecutor};
use crate::ir::Graph;
use crate::npy;
use crate::ptq;

/// One sample: a float32 vector per model input.
pub type Sample = Vec<Vec<f32>>;

/// A quantized model with its fidelity report.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// The prepared float graph (reference).
    pub float: Graph,
    /// The int8 graph.
    pub graph: Graph,
    /// The compiled `.mote`.
    pub compiled: Compiled,
    /// Fidelity on the held-out samples (empty report when none were given).
    pub report: Report,
}

fn bar(len: usize, show: bool, msg: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {elapsed}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg);
    pb
}

/// Observes every activation of `float` over `samples`.
pub fn calibrate(
    exec: &FloatExecutor,
    samples: &[Sample],
    observer: ObserverKind,
    progress: bool,
) -> Result<Calibrator, CompileError> {
    let g = exec.graph();
    let skip: Vec<bool> = g.tensors.iter().map(|t| t.is_const()).collect();
    let mut cal = Calibrator::new(g.tensors.len());
    let passes = if observer.needs_histogram() { 2 } else { 1 };
    let pb = bar(samples.len() * passes, progress, "calibrating");
    for s in samples {
        cal.observe_range(&exec.run(s)?, &skip);
        pb.inc(1);
    }
    if passes == 2 {
        for s in samples {
            cal.observe_hist(&exec.run(s)?, &skip);
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    Ok(cal)
}

/// Compares the compiled int8 model with the float reference on `heldout`.
pub fn fidelity(
    exec: &FloatExecutor,
    qgraph: &Graph,
    compiled: &Compiled,
    heldout: &[Sample],
    progress: bool,
) -> Result<Report, CompileError> {
    let g = exec.graph();
    let mut runner = Int8Runner::new(qgraph, compiled)?;
    let mut rb = ReportBuilder::default();
    let pb = bar(heldout.len(), progress, "evaluating");
    for s in heldout {
        let vals = exec.run(s)?;
        let (layers, outs) = runner.run_layers(s, true)?;
        let fl: Vec<&[f32]> = g
            .nodes
            .iter()
            .map(|n| vals[n.outputs[0]].as_deref().unwrap_or(&[]))
            .collect();
        let fout = vals[g.outputs[0]].as_deref().unwrap_or(&[]);
        let layers = float_node_layers(g, qgraph, layers);
        rb.add(
            g,
            &fl,
            &layers,
            fout,
            outs.first().map(Vec::as_slice).unwrap_or(&[]),
        );
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(rb.finish())
}

/// Re-indexes per-node layer outputs of quantized graph `q` by the nodes of float graph `f`:
/// identical when the node lists correspond one to one (int8, int4 weights), else by output
/// tensor name (mixed graphs have extra conversion nodes; see `ptq::quantize_mixed`).
fn float_node_layers(f: &Graph, q: &Graph, layers: Vec<Option<Vec<f32>>>) -> Vec<Option<Vec<f32>>> {
    if f.nodes.len() == q.nodes.len() {
        return layers;
    }
    let by_name: std::collections::HashMap<&str, usize> = q
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (q.tensors[n.outputs[0]].name.as_str(), i))
        .collect();
    f.nodes
        .iter()
        .map(|n| {
            let name = f.tensors[n.outputs[0]].name.as_str();
            by_name
                .get(name)
                .filter(|_| !name.is_empty())
                .and_then(|&i| layers.get(i).cloned().flatten())
        })
        .collect()
}

/// Bias correction: for each CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED node of quantized
/// graph `qg` with a bias, in graph order, the mean error per output channel of its output
/// (quantized minus float, over `samples`) is subtracted from its bias, and the model is
/// recompiled before the next node is measured, so that each node's estimate already includes
/// the corrections upstream (measuring every node on the uncorrected model would correct
/// errors propagated from upstream twice). Only values where neither the float nor the
/// quantized output is at a bound of the fused activation (`0` of a ReLU, `6` of a ReLU6)
/// count, so clamping does not bias the estimate. Returns the corrected graph.
///
/// `qg` must come from `ptq::quantize_mixed` on the float graph `exec` runs (tensor ids of the
/// float graph are kept); `compiled` is its compilation.
pub fn correct_biases(
    exec: &FloatExecutor,
    qg: &Graph,
    compiled: &Compiled,
    samples: &[Sample],
) -> Result<Graph, CompileError> {
    use crate::ir::{Activation, Operator};
    let lo_hi = |a: Activation| match a {
        Activation::Relu => (0.0, f32::INFINITY),
        Activation::Relu6 => (0.0, 6.0),
        Activation::ReluN1To1 => (-1.0, 1.0),
        _ => (f32::NEG_INFINITY, f32::INFINITY),
    };
    let mut out = qg.clone();
    let mut compiled = compiled.clone();
    for n in 0..qg.nodes.len() {
        let node = &qg.nodes[n];
        let act = match &node.op {
            Operator::Conv2d(o) | Operator::DepthwiseConv2d(o) => o.activation,
            Operator::FullyConnected { activation, .. } => *activation,
            _ => continue,
        };
        let Some(bid) = node.inputs.get(2).copied().flatten() else {
            continue;
        };
        let t = node.outputs[0];
        let c = qg.tensors[t].shape.last().copied().unwrap_or(1).max(1);
        let (mut sum, mut count) = (vec![0f64; c], vec![0u64; c]);
        let (lo, hi) = lo_hi(act);
        let mut runner = Int8Runner::new(&out, &compiled)?;
        for s in samples {
            let vals = exec.run(s)?;
            let (layers, _) = runner.run_layers(s, true)?;
            let (Some(Some(q)), Some(Some(f))) = (layers.get(n), vals.get(t)) else {
                continue;
            };
            for (i, (&qv, &fv)) in q.iter().zip(f.iter()).enumerate() {
                if fv > lo && fv < hi && qv > lo && qv < hi {
                    sum[i % c] += f64::from(qv) - f64::from(fv);
                    count[i % c] += 1;
                }
            }
        }
        if shift_bias(&mut out, bid, &sum, &count) {
            compiled = compile(out.clone())?;
        }
    }
    Ok(out)
}

/// Subtracts `sum[c] / count[c]` (real units) from channel `c` of quantized bias tensor `bid`
/// of `g`; whether anything changed.
fn shift_bias(g: &mut Graph, bid: usize, sum: &[f64], count: &[u64]) -> bool {
    let b = &mut g.tensors[bid];
    let Some(scales) = b.quant.as_ref().map(|q| q.scales.clone()) else {
        return false;
    };
    let Some(data) = b.data.as_mut() else {
        return false;
    };
    let width = b.dtype.size();
    let mut changed = false;
    for (c, chunk) in data.chunks_exact_mut(width).enumerate() {
        let (Some(&s), Some(&k), Some(&e)) =
            (scales.get(c).or(scales.first()), count.get(c), sum.get(c))
        else {
            continue;
        };
        if k == 0 || s <= 0.0 {
            continue;
        }
        let delta = (e / k as f64 / f64::from(s)).round();
        if delta == 0.0 {
            continue;
        }
        match width {
            4 => {
                let v = i32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                let v = (f64::from(v) - delta).clamp(f64::from(i32::MIN), f64::from(i32::MAX));
                chunk.copy_from_slice(&(v as i32).to_le_bytes());
                changed = true;
            }
            8 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(chunk);
                let v = i64::from_le_bytes(a) as f64 - delta;
                chunk.copy_from_slice(
                    &(v.clamp(-(2f64.powi(47)), 2f64.powi(47)) as i64).to_le_bytes(),
                );
                changed = true;
            }
            _ => {}
        }
    }
    changed
}

/// Data-driven refinements of a quantized model, on its calibration samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refinements {
    /// Round int4 weights by GPTQ ([`ptq::gptq`]) instead of to nearest.
    pub gptq: bool,
    /// Correct each layer's bias by the mean error of its output ([`correct_biases`]).
    pub bias_correction: bool,
}

/// Quantizes an imported float graph with the per-node precisions `choose` picks for the
/// prepared float graph (see `ptq::quantize_mixed`), with the [`Refinements`] asked for (on the
/// calibration samples), and measures it.
pub fn quantize_graph_scheme(
    graph: &Graph,
    calibration: &[Sample],
    heldout: &[Sample],
    observer: ObserverKind,
    choose: impl FnOnce(&Graph) -> Result<Vec<ptq::Precision>, CompileError>,
    refine: Refinements,
    progress: bool,
) -> Result<Quantized, CompileError> {
    let fg = float::prepare(graph)?;
    let exec = FloatExecutor::new(&fg, float::default_device());
    let cal = calibrate(&exec, calibration, observer, progress)?;
    let per_node = choose(&fg)?;
    let rounded = if refine.gptq && per_node.contains(&ptq::Precision::Int4Weights) {
        ptq::gptq::gptq_int4(&fg, &per_node, calibration)?
    } else {
        fg.clone()
    };
    let mut qg = ptq::quantize_mixed(&rounded, &cal.ranges(observer), &per_node)?;
    drop(rounded);
    let mut compiled = compile(qg.clone())?;
    if refine.bias_correction {
        qg = correct_biases(&exec, &qg, &compiled, calibration)?;
        compiled = compile(qg.clone())?;
    }
    let report = fidelity(&exec, &qg, &compiled, heldout, progress)?;
    drop(exec);
    Ok(Quantized {
        float: fg,
        graph: qg,
        compiled,
        report,
    })
}

/// Per-node precisions for `mote quantize`: `scheme` wherever it has a recipe (int8 elsewhere),
/// then each `N=PRECISION` of `overrides` for node `N` of the prepared float graph.
pub fn choose_precisions(
    fg: &Graph,
    scheme: &str,
    overrides: &[String],
) -> Result<Vec<ptq::Precision>, CompileError> {
    let bad = |reason: String| CompileError::Unsupported {
        index: 0,
        op: "quantize".into(),
        reason,
    };
    let parse = |name: &str| {
        ptq::Precision::from_name(name).ok_or_else(|| {
            bad(format!(
                "scheme {name:?}: expected one of int8, int4w, a16w8, f16"
            ))
        })
    };
    let base = parse(scheme)?;
    let mut per_node = base.for_graph(fg);
    for o in overrides {
        let (n, p) = o
            .split_once('=')
            .ok_or_else(|| bad(format!("--layer {o:?}: expected N=PRECISION")))?;
        let n: usize = n
            .trim()
            .parse()
            .map_err(|_| bad(format!("--layer {o:?}: {n:?} is not a node index")))?;
        let slot = per_node.get_mut(n).ok_or_else(|| {
            bad(format!(
                "--layer {o:?}: the model has {} nodes",
                fg.nodes.len()
            ))
        })?;
        *slot = parse(p.trim())?;
    }
    Ok(per_node)
}

/// Quantizes an imported float graph to int8 and measures it.
pub fn quantize_graph(
    graph: &Graph,
    calibration: &[Sample],
    heldout: &[Sample],
    observer: ObserverKind,
    progress: bool,
) -> Result<Quantized, CompileError> {
    let fg = float::prepare(graph)?;
    let exec = FloatExecutor::new(&fg, float::default_device());
    let cal = calibrate(&exec, calibration, observer, progress)?;
    let qg = ptq::quantize_int8(&fg, &cal.ranges(observer))?;
    let compiled = compile(qg.clone())?;
    let report = fidelity(&exec, &qg, &compiled, heldout, progress)?;
    drop(exec);
    Ok(Quantized {
        float: fg,
        graph: qg,
        compiled,
        report,
    })
}

/// Measures a published int8 TFLite model against a float reference on `heldout` (output SQNR
/// and top-1 agreement; no per-layer table since the graphs differ).
pub fn compare_published(
    float_graph: &Graph,
    int8_tflite: &[u8],
    heldout: &[Sample],
) -> Result<Report, CompileError> {
    let fg = float::prepare(float_graph)?;
    let exec = FloatExecutor::new(&fg, float::default_device());
    let qg = crate::tflite::import(int8_tflite)?;
    let compiled = compile(qg.clone())?;
    let mut runner = Int8Runner::new(&qg, &compiled)?;
    let mut rb = ReportBuilder::default();
    for s in heldout {
        let fout = exec.outputs(s)?;
        let (_, outs) = runner.run_layers(s, false)?;
        rb.add(&fg, &[], &[], &fout[0], &outs[0]);
    }
    Ok(rb.finish())
}

/// Reads samples for a model whose inputs hold `elements` values each: one `.npy` (float32,
/// first axis = samples, or one sample), a raw float32 file (a whole number of samples), or a
/// folder of such files (sorted by name). Single-input models only.
pub fn load_samples(path: &Path, elements: usize) -> Result<Vec<Sample>, CompileError> {
    let bad = |what: String| CompileError::Malformed {
        format: "calibration data",
        what,
    };
    let mut files = Vec::new();
    if path.is_dir() {
        let rd = std::fs::read_dir(path).map_err(|source| CompileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        for e in rd.flatten() {
            if e.path().is_file() {
                files.push(e.path());
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut out = Vec::new();
    for f in files {
        let t = npy::read(&f)?;
        if let Some(d) = &t.descr {
            if d != "<f4" {
                return Err(bad(format!(
                    "{}: holds {d}, expected float32 (<f4)",
                    f.display()
                )));
            }
        }
        if elements == 0 || t.bytes.len() % (4 * elements) != 0 {
            return Err(bad(format!(
                "{}: {} bytes is not a whole number of {elements}-value float32 samples",
                f.display(),
                t.bytes.len()
            )));
        }
        let v: Vec<f32> = t
            .bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        out.extend(v.chunks_exact(elements).map(|c| vec![c.to_vec()]));
    }
    if out.is_empty() {
        return Err(bad(format!("{}: no samples", path.display())));
    }
    Ok(out)
}

/// Whether `path` is a `.wav` file or a folder whose first file (by name) is one.
fn is_wav_input(path: &Path) -> bool {
    let is_wav = |p: &Path| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav"));
    if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.first().is_some_and(|f| is_wav(f))
    } else {
        is_wav(path)
    }
}

/// MFCC samples (`frontend::kws_windows_augmented`, a window every 100 ms, `augment`
/// perturbed copies, seed 0) of the `.wav` file `path` or of every `.wav` in folder `path`,
/// for a model whose input holds `elements` = 49 × 10 values.
pub fn wav_samples(
    path: &Path,
    elements: usize,
    augment: usize,
) -> Result<Vec<Sample>, CompileError> {
    use crate::frontend::{self, AudioAugment};
    let bad = |what: String| CompileError::Malformed {
        format: "calibration audio",
        what,
    };
    if elements != frontend::FRAMES * frontend::MFCC {
        return Err(bad(format!(
            "{}: .wav audio needs a keyword-spotting model with a 49 x 10 MFCC input; this \
             model's input holds {elements} values",
            path.display()
        )));
    }
    let mut files = Vec::new();
    if path.is_dir() {
        let rd = std::fs::read_dir(path).map_err(|source| CompileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        files.extend(rd.flatten().map(|e| e.path()).filter(|p| {
            p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav"))
        }));
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).map_err(|source| CompileError::Io {
            path: f.display().to_string(),
            source,
        })?;
        let (audio, rate) =
            frontend::read_wav_pcm16(&bytes).map_err(|e| bad(format!("{}: {e}", f.display())))?;
        let audio = frontend::resample(&audio, rate as usize, frontend::SAMPLE_RATE);
        let w = frontend::kws_windows_augmented(
            &audio,
            frontend::SAMPLE_RATE / 10,
            augment,
            &AudioAugment::default(),
            0,
        );
        out.extend(w.into_iter().map(|x| vec![x]));
    }
    if out.is_empty() {
        return Err(bad(format!(
            "{}: no 1-s window (the audio is shorter than 16,000 samples)",
            path.display()
        )));
    }
    Ok(out)
}

/// For an ONNX model with a rank-4 input (NHWC in mote, `nhwc`): transposes `samples` read
/// from `path` to NHWC when `path` (or, for a folder, its first file in name order) is an
/// `.npy` whose trailing dimensions are the ONNX model's NCHW `[C, H, W]` (and not already
/// `[H, W, C]`). Raw files and `.npy` files in NHWC are used as they are.
pub fn nchw_to_nhwc_samples(path: &Path, nhwc: &[usize], samples: Vec<Sample>) -> Vec<Sample> {
    let &[n, h, w, c] = nhwc else {
        return samples;
    };
    let first = if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.into_iter().next()
    } else {
        Some(path.to_path_buf())
    };
    let shape = first
        .and_then(|f| npy::read(&f).ok())
        .and_then(|t| t.shape)
        .unwrap_or_default();
    let tail = shape.len().saturating_sub(3);
    let is_nchw = shape.len() >= 3 && shape[tail..] == [c, h, w] && [c, h, w] != [h, w, c];
    if !is_nchw {
        return samples;
    }
    let nchw = [n, c, h, w];
    samples
        .into_iter()
        .map(|s| {
            s.into_iter()
                .map(|v| {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    let (t, _) = crate::onnx::permute(&bytes, 4, &nchw, &[0, 2, 3, 1]);
                    t.chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// Arguments of `mote quantize`.
#[derive(Debug, Clone, clap::Args)]
pub struct QuantizeArgs {
    /// The float model (.tflite, or .onnx: its rank-4 NCHW input becomes NHWC; `.npy`
    /// calibration data of the ONNX input's NCHW shape is transposed).
    pub model: std::path::PathBuf,
    /// Calibration samples: an .npy batch (float32), a raw float32 file, or a folder of them;
    /// or, for a keyword-spotting model with a 49 × 10 MFCC input, 16-bit PCM `.wav`
    /// audio (a file or a folder of them; other rates than 16 kHz are resampled), cut into 1-s MLPerf Tiny MFCC windows every 100 ms.
    #[arg(long)]
    pub calibration: std::path::PathBuf,
    /// With `.wav` calibration audio: also calibrate on this many randomly perturbed copies of
    /// it (`frontend::augment_audio` with its default settings: gain ±6 dB, a noise floor,
    /// time shifts).
    #[arg(long, default_value_t = 0)]
    pub augment: usize,
    /// Held-out samples for the fidelity report (same formats). Without it, the last 20 % of the
    /// calibration samples are held out and not used for calibration.
    #[arg(long)]
    pub heldout: Option<std::path::PathBuf>,
    /// Range observer: minmax, moving-average, percentile, entropy or mse.
    #[arg(long, default_value = "minmax")]
    pub observer: ObserverKind,
    /// Quantization scheme: int8, int4w (packed int4 weights), a16w8 (int16 activations,
    /// int8 weights; ops without a 16x8 kernel stay int8) or f16 (float16 weights, float32
    /// activations; ops without a float kernel stay int8).
    #[arg(long, default_value = "int8")]
    pub scheme: String,
    /// Correct each layer's bias by the mean error of its output over the calibration samples.
    #[arg(long)]
    pub bias_correction: bool,
    /// Round int4 weights to nearest instead of by GPTQ on the calibration samples (the
    /// default: each rounding error is carried onto the weights not yet rounded, so the layer's
    /// outputs stay close to the float ones).
    #[arg(long)]
    pub no_gptq: bool,
    /// Per-layer override `N=PRECISION` (node `N` of the prepared float graph, as numbered in
    /// the per-layer report), repeatable: e.g. `--scheme int4w --layer 0=int8`.
    #[arg(long = "layer")]
    pub layers: Vec<String>,
    /// Where to write the .mote file.
    #[arg(short, long)]
    pub output: std::path::PathBuf,
    /// Also write the fidelity report as JSON here.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Prune CONV_2D and FULLY_CONNECTED weights N:M before quantizing (e.g. `2:4`: at most 2
    /// non-zero weights in every 4 consecutive input channels; M in 2, 4, 16). The compiler
    /// then stores those layers without their zeros where that pays (`mote inspect` shows the
    /// encoding per op) and the runtime skips them.
    #[arg(long)]
    pub nm: Option<String>,
    /// Prune this fraction of each CONV_2D / FULLY_CONNECTED layer's weights (smallest
    /// magnitudes) before quantizing (unstructured: the layers stay dense in the file unless the
    /// zeros fall N:M; with `--nm` both apply).
    #[arg(long)]
    pub sparsity: Option<String>,
}

/// Prunes `graph` as `--sparsity` and `--nm` ask (unstructured first), printing what it did.
fn prune_for_cli(
    graph: &mut Graph,
    sparsity: Option<&str>,
    nm: Option<&str>,
) -> Result<(), CompileError> {
    use crate::fit::sparse::{prune, render, Sparsity};
    let mut steps = Vec::new();
    if let Some(f) = sparsity {
        steps.push(Sparsity::parse_fraction(f)?);
    }
    if let Some(s) = nm {
        steps.push(Sparsity::parse_nm(s)?);
    }
    for how in steps {
        let report = prune(graph, how);
        println!("pruned ({how:?}), per layer:");
        print!("{}", render(&report));
    }
    Ok(())
}

/// Runs `mote quantize`.
pub fn quantize_cmd(a: &QuantizeArgs) -> Result<(), CompileError> {
    if ptq::Precision::from_name(&a.scheme).is_none() {
        choose_precisions(&Graph::default(), &a.scheme, &[])?;
    }
    let bytes = std::fs::read(&a.model).map_err(|source| CompileError::Io {
        path: a.model.display().to_string(),
        source,
    })?;
    let is_onnx =
        a.model.extension().is_some_and(|e| e == "onnx") || crate::onnx::looks_like_onnx(&bytes);
    let mut graph = if is_onnx {
        crate::onnx::import(&bytes)?
    } else {
        crate::tflite::import(&bytes)?
    };
    prune_for_cli(&mut graph, a.sparsity.as_deref(), a.nm.as_deref())?;
    if graph.inputs.len() != 1 {
        return Err(CompileError::Unsupported {
            index: 0,
            op: "quantize".into(),
            reason: format!(
                "{} model inputs: only single-input models",
                graph.inputs.len()
            ),
        });
    }
    let elements = graph.tensors[graph.inputs[0]].elements();
    let in_shape = graph.tensors[graph.inputs[0]].shape.clone();
    let load = |p: &Path| -> Result<Vec<Sample>, CompileError> {
        let s = load_samples(p, elements)?;
        Ok(if is_onnx {
            nchw_to_nhwc_samples(p, &in_shape, s)
        } else {
            s
        })
    };
    let mut cal = if is_wav_input(&a.calibration) {
        wav_samples(&a.calibration, elements, a.augment)?
    } else {
        load(&a.calibration)?
    };
    let held = match &a.heldout {
        Some(p) if is_wav_input(p) => wav_samples(p, elements, 0)?,
        Some(p) => load(p)?,
        None => {
            let keep = cal.len() - cal.len() / 5;
            cal.split_off(keep.max(1).min(cal.len()))
        }
    };
    let q = quantize_graph_scheme(
        &graph,
        &cal,
        &held,
        a.observer,
        |fg| choose_precisions(fg, &a.scheme, &a.layers),
        Refinements {
            gptq: !a.no_gptq,
            bias_correction: a.bias_correction,
        },
        !a.quiet,
    )?;
    std::fs::write(&a.output, &q.compiled.bytes).map_err(|source| CompileError::Io {
        path: a.output.display().to_string(),
        source,
    })?;
    println!(
        "{} -> {}: {}, observer {}, {} calibration samples, {} bytes, arena {} bytes",
        a.model.display(),
        a.output.display(),
        a.scheme,
        a.observer,
        cal.len(),
        q.compiled.bytes.len(),
        q.compiled.arena_bytes
    );
    print!("{}", crate::fidelity::render(&q.report));
    if let Some(p) = &a.report {
        let json = serde_json::to_string_pretty(&q.report).unwrap_or_default();
        std::fs::write(p, json).map_err(|source| CompileError::Io {
            path: p.display().to_string(),
            source,
        })?;
    }
    Ok(())
}
