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

/// Arguments of `mote quantize`.
#[derive(Debug, Clone, clap::Args)]
pub struct QuantizeArgs {
    /// The float model (.tflite).
    pub model: std::path::PathBuf,
    /// Calibration samples: an .npy batch (float32), a raw float32 file, or a folder of them.
    #[arg(long)]
    pub calibration: std::path::PathBuf,
    /// Held-out samples for the fidelity report (same formats). Without it, the last 20 % of the
    /// calibration samples are held out and not used for calibration.
    #[arg(long)]
    pub heldout: Option<std::path::PathBuf>,
    /// Range observer: minmax, moving-average, percentile or entropy.
    #[arg(long, default_value = "minmax")]
    pub observer: ObserverKind,
    /// Quantization scheme (only int8 is implemented so far).
    #[arg(long, default_value = "int8")]
    pub scheme: String,
    /// Where to write the .mote file.
    #[arg(short, long)]
    pub output: std::path::PathBuf,
    /// Also write the fidelity report as JSON here.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `mote quantize`.
pub fn quantize_cmd(a: &QuantizeArgs) -> Result<(), CompileError> {
    if a.scheme != "int8" {
        return Err(CompileError::Unsupported {
            index: 0,
            op: "quantize".into(),
            reason: format!(
                "scheme {:?}: only int8 is implemented (a16w8, int4w and f16 need runtime kernels)",
                a.scheme
            ),
        });
    }
    let bytes = std::fs::read(&a.model).map_err(|source| CompileError::Io {
        path: a.model.display().to_string(),
        source,
    })?;
    let graph = crate::tflite::import(&bytes)?;
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
    let mut cal = load_samples(&a.calibration, elements)?;
    let held = match &a.heldout {
        Some(p) => load_samples(p, elements)?,
        None => {
            let keep = cal.len() - cal.len() / 5;
            cal.split_off(keep.max(1).min(cal.len()))
        }
    };
    let q = quantize_graph(&graph, &cal, &held, a.observer, !a.quiet)?;
    std::fs::write(&a.output, &q.compiled.bytes).map_err(|source| CompileError::Io {
        path: a.output.display().to_string(),
        source,
    })?;
    println!(
        "{} -> {}: int8, observer {}, {} calibration samples, {} bytes, arena {} bytes",
        a.model.display(),
        a.output.display(),
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
