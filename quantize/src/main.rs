//! `mote`: compile TFLite models to `.mote`, inspect them and run them on the host.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use mote_quantize::compile::{compile_tflite, Compiled};
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
    /// The main job on the embedded default model: compile it, run its held-out test set on
    /// the host runtime, and report flash, RAM, MACs, accuracy and latency.
    Demo {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Compile an int8 TFLite model to a .mote file.
    Convert {
        /// The .tflite model.
        input: PathBuf,
        /// Where to write the .mote file.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Show a model's ops, shapes, parameters, MACs, flash and arena bytes.
    Inspect {
        /// A .mote or .tflite model.
        model: PathBuf,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
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
        Ok(compile_tflite(&bytes)?.aligned())
    }
}

fn convert(input: &Path, output: &Path) -> Result<(), CompileError> {
    let compiled: Compiled = compile_tflite(&read_file(input)?)?;
    std::fs::write(output, &compiled.bytes).map_err(|source| CompileError::Io {
        path: output.display().to_string(),
        source,
    })?;
    let aligned = compiled.aligned();
    let model = Model::from_bytes(aligned.as_slice())?;
    let r = inspect::report(&model);
    println!(
        "{} -> {}: {} ops, flash {} bytes, arena {} bytes, {} MACs",
        input.display(),
        output.display(),
        r.ops.len(),
        inspect::group(r.flash_bytes as u64),
        inspect::group(r.arena_bytes as u64),
        inspect::group(r.macs)
    );
    Ok(())
}

fn inspect_cmd(path: &Path, json: bool) -> Result<(), CompileError> {
    let aligned = load_model(path)?;
    let model = Model::from_bytes(aligned.as_slice())?;
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
        Command::Demo { json } => demo(*json),
        Command::Convert { input, output } => convert(input, output),
        Command::Inspect { model, json } => inspect_cmd(model, *json),
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
