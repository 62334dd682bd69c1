//! `mote`: compile TFLite models to `.mote`, inspect them and run them on the host.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use mote_quantize::compile::{compile_tflite_opts, CompileOptions, Compiled, WeightLayout};
use mote_quantize::write::AlignedBytes;
use mote_quantize::{inspect, npy, CompileError};
use mote_runtime::{Interpreter, Model};

/// mote: fit neural networks to microcontrollers.
#[derive(Parser)]
#[command(name = "mote", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure a model's latency on the host, per inference and per layer, and estimate its
    /// cycles, latency and energy on a target profile (`--target`). Reports say which figures
    /// are measured and which estimated.
    // A board runner (`--board`, QEMU instruction counts) plugs in as another
    // `mote_quantize::bench::LatencySource` beside `HostSource`.
    Bench(mote_quantize::bench::BenchArgs),
    /// List the target profiles (id, core, clock, flash, RAM, operating point), or show one.
    Targets(mote_quantize::bench::TargetsArgs),
    /// The main job on the embedded default model: compile it, run its held-out test set on
    /// the host runtime, and report flash, RAM, MACs, accuracy and latency.
    Demo {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Compile an int8 TFLite model to a .mote file (and/or Rust or C source).
    Convert {
        /// The .tflite model.
        input: PathBuf,
        /// Where to write the .mote file.
        #[arg(short, long, required_unless_present_any = ["emit_rust", "emit_c", "emit_aot"])]
        output: Option<PathBuf>,
        /// Also write the model as Rust source: an aligned byte array and `ARENA_BYTES`.
        #[arg(long, value_name = "FILE.rs")]
        emit_rust: Option<PathBuf>,
        /// Also write the model as a C header: an aligned array and `<NAME>_ARENA_BYTES`.
        #[arg(long, value_name = "FILE.h")]
        emit_c: Option<PathBuf>,
        /// Also write the model compiled ahead of time, as a Rust module whose ops call the
        /// kernels directly (`mote_runtime::aot`: the smallest firmware, no interpreter). Implies
        /// --plain and dense weights.
        #[arg(long, value_name = "FILE.rs")]
        emit_aot: Option<PathBuf>,
        /// Plan the arena without ops in place or fused: every tensor in its own bytes (a larger
        /// arena, simpler code).
        #[arg(long)]
        plain: bool,
        /// Weight layout: `compact` (smallest; microcontrollers) or `host-simd` (adds weights
        /// packed for the x86-64/aarch64 SIMD kernels, about twice the weight bytes). Default:
        /// the one --target suits, else compact.
        #[arg(long, value_parser = ["compact", "host-simd"])]
        layout: Option<String>,
        /// Target profile (see `mote targets`) whose weight layout to use.
        #[arg(long)]
        target: Option<String>,
    },
    /// Show a model's ops, shapes, parameters, MACs, flash and arena bytes.
    Inspect {
        /// A .mote or .tflite model.
        model: PathBuf,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Print the arena plan instead: each buffer's offset, size, first and last op.
        #[arg(long)]
        plan: bool,
        /// Draw the arena plan as an SVG picture (op index across, arena offset up).
        #[arg(long, value_name = "FILE.svg")]
        plan_svg: Option<PathBuf>,
    },
    /// Quantize a float TFLite model to an int8 .mote file with calibration data, and report
    /// its fidelity (per-layer SQNR, output SQNR, top-1 agreement) on held-out samples.
    #[cfg(feature = "float")]
    Quantize(mote_quantize::pipeline::QuantizeArgs),
    /// Fit a float TFLite model to a target's flash, RAM, latency and energy budgets: searches
    /// structured pruning × per-layer precision, fine-tunes, and writes the best .mote that
    /// meets every budget (latency and energy are estimates from the target's cost model).
    #[cfg(feature = "float")]
    Fit(mote_quantize::fit::FitArgs),
    /// Quantize a float model (needs a build with the `float` feature).
    #[cfg(not(feature = "float"))]
    Quantize {
        /// Arguments (ignored).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run a model once on the host runtime.
    Run {
        /// A .mote or .tflite model.
        model: PathBuf,
        /// Input tensor files, one per model input in order (raw little-endian bytes, or .npy).
        #[arg(short, long, required = true)]
        input: Vec<PathBuf>,
        /// Output tensor files, one per model output in order (raw, or .npy).
        #[arg(short, long, required = true)]
        output: Vec<PathBuf>,
    },
}

fn read_file(path: &Path) -> Result<Vec<u8>, CompileError> {
    std::fs::read(path).map_err(|source| CompileError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Loads a model as aligned `.mote` bytes, compiling a `.tflite` on the fly.
fn load_model(path: &Path) -> Result<AlignedBytes, CompileError> {
    let bytes = read_file(path)?;
    if bytes.starts_with(b"MOTE") {
        Ok(AlignedBytes::new(&bytes))
    } else {
        Ok(compile_model(path, &bytes, CompileOptions::default())?.aligned())
    }
}

/// Compiles a `.tflite` model, or an int8 (QDQ) `.onnx` model (by extension or content).
fn compile_model(
    path: &Path,
    bytes: &[u8],
    options: CompileOptions,
) -> Result<Compiled, CompileError> {
    #[cfg(feature = "onnx")]
    if path.extension().is_some_and(|e| e == "onnx") || mote_quantize::onnx::looks_like_onnx(bytes)
    {
        return mote_quantize::onnx::compile(bytes, options);
    }
    let _ = path;
    compile_tflite_opts(bytes, options)
}

/// The weight layout `--layout` names, else the one `--target` suits, else compact.
fn weight_layout(layout: Option<&str>, target: Option<&str>) -> Result<WeightLayout, CompileError> {
    match (layout, target) {
        (Some("host-simd"), _) => Ok(WeightLayout::HostSimd),
        (Some(_), _) => Ok(WeightLayout::Compact),
        (None, Some(id)) => mote_targets::by_id(id)
            .map(WeightLayout::for_target)
            .ok_or_else(|| {
                CompileError::Usage(format!("unknown target {id:?} (see `mote targets`)"))
            }),
        (None, None) => Ok(WeightLayout::Compact),
    }
}

fn convert(
    input: &Path,
    output: Option<&Path>,
    emit_rust: Option<&Path>,
    emit_c: Option<&Path>,
    emit_aot: Option<&Path>,
    plain: bool,
    layout: WeightLayout,
) -> Result<(), CompileError> {
    let mut options = if emit_aot.is_some() {
        CompileOptions::ahead_of_time()
    } else {
        CompileOptions::default()
    };
    options.layout = layout;
    if plain {
        options.schedule = mote_quantize::schedule::ScheduleOptions::plain();
    }
    let compiled: Compiled = compile_model(input, &read_file(input)?, options)?;
    let aligned = compiled.aligned();
    let model = Model::from_bytes(aligned.as_slice())?;
    let features: Vec<&str> = mote_runtime::ops::select::required_features(&model).collect();
    let mut written = Vec::new();
    if let Some(output) = output {
        mote_quantize::emit::write_file(output, &compiled.bytes)?;
        written.push(output.display().to_string());
    }
    written.extend(mote_quantize::emit::write_sources(
        &compiled.bytes,
        compiled.arena_bytes,
        &features,
        input,
        emit_rust,
        emit_c,
    )?);
    if let Some(path) = emit_aot {
        let source = mote_runtime::aot::rust_source(&model)
            .map_err(|e| mote_quantize::board::aot_error(&model, e))?;
        std::fs::write(path, source.code).map_err(|e| CompileError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        written.push(path.display().to_string());
    }
    let r = inspect::report(&model);
    println!(
        "{} -> {}: {} ops, flash {} bytes, arena {} bytes, {} MACs",
        input.display(),
        written.join(", "),
        r.ops.len(),
        inspect::group(r.flash_bytes as u64),
        inspect::group(r.arena_bytes as u64),
        inspect::group(r.macs)
    );
    println!(
        "runtime op selection for this model: --features select-ops,{}",
        features.join(",")
    );
    Ok(())
}

fn inspect_cmd(
    path: &Path,
    json: bool,
    plan: bool,
    plan_svg: Option<&Path>,
) -> Result<(), CompileError> {
    let aligned = load_model(path)?;
    let model = Model::from_bytes(aligned.as_slice())?;
    if plan || plan_svg.is_some() {
        return mote_quantize::arena_report::plan_cmd(&model, path, plan, json, plan_svg);
    }
    let r = inspect::report(&model);
    if json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        print!("{}", inspect::render_text(&r));
    }
    Ok(())
}

fn run(path: &Path, inputs: &[PathBuf], outputs: &[PathBuf]) -> Result<(), CompileError> {
    let aligned = load_model(path)?;
    let model = Model::from_bytes(aligned.as_slice())?;
    let usage = |what: String| CompileError::Malformed {
        format: "input",
        what,
    };
    if inputs.len() != model.input_count() {
        return Err(usage(format!(
            "the model has {} input(s), {} --input given",
            model.input_count(),
            inputs.len()
        )));
    }
    if outputs.len() != model.output_count() {
        return Err(usage(format!(
            "the model has {} output(s), {} --output given",
            model.output_count(),
            outputs.len()
        )));
    }
    let mut arena = AlignedBytes::zeroed(model.arena_bytes());
    let mut interp = Interpreter::new(&model, arena.as_mut_slice())?;
    for (i, p) in inputs.iter().enumerate() {
        let t = npy::read(p)?;
        let desc = model.input(i).ok_or(mote_runtime::Error::NoSuchTensor {
            at: mote_runtime::Location::Input(i as u32),
        })?;
        let dtype = desc
            .dtype()
            .ok_or_else(|| usage(format!("input {i}: bad dtype")))?;
        if let Some(d) = &t.descr {
            if !npy::descr_matches(d, dtype) {
                return Err(usage(format!(
                    "{}: holds {d} but input {i} is {}",
                    p.display(),
                    dtype.name()
                )));
            }
        }
        if t.bytes.len() != desc.bytes as usize {
            return Err(usage(format!(
                "{}: {} bytes, but input {i} ({} {:?}) takes {}",
                p.display(),
                t.bytes.len(),
                dtype.name(),
                desc.dims(),
                desc.bytes
            )));
        }
        interp.set_input_bytes(i, &t.bytes)?;
    }
    interp.invoke()?;
    for (k, p) in outputs.iter().enumerate() {
        let desc = model.output(k).ok_or(mote_runtime::Error::NoSuchTensor {
            at: mote_runtime::Location::Output(k as u32),
        })?;
        let dtype = desc
            .dtype()
            .ok_or_else(|| usage(format!("output {k}: bad dtype")))?;
        let shape: Vec<usize> = desc.dims().iter().map(|&d| d as usize).collect();
        npy::write(p, interp.output_bytes(k)?, dtype, &shape)?;
    }
    Ok(())
}

fn demo(json: bool) -> Result<(), CompileError> {
    let r = mote_quantize::demo::run()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        print!("{}", mote_quantize::demo::render(&r));
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Bench(a) => mote_quantize::bench::bench_cmd(a),
        Command::Targets(a) => mote_quantize::bench::targets_cmd(a),
        Command::Demo { json } => demo(*json),
        Command::Convert {
            input,
            output,
            emit_rust,
            emit_c,
            emit_aot,
            plain,
            layout,
            target,
        } => weight_layout(layout.as_deref(), target.as_deref()).and_then(|layout| {
            convert(
                input,
                output.as_deref(),
                emit_rust.as_deref(),
                emit_c.as_deref(),
                emit_aot.as_deref(),
                *plain,
                layout,
            )
        }),
        Command::Inspect {
            model,
            json,
            plan,
            plan_svg,
        } => inspect_cmd(model, *json, *plan, plan_svg.as_deref()),
        #[cfg(feature = "float")]
        Command::Quantize(a) => mote_quantize::pipeline::quantize_cmd(a),
        #[cfg(feature = "float")]
        Command::Fit(a) => mote_quantize::fit::fit_cmd(a),
        #[cfg(not(feature = "float"))]
        Command::Quantize { .. } => Err(CompileError::Unsupported {
            index: 0,
            op: "quantize".into(),
            reason: "this mote was built without the `float` feature \
                     (cargo build -p mote-quantize --features float)"
                .into(),
        }),
        Command::Run {
            model,
            input,
            output,
        } => run(model, input, output),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
