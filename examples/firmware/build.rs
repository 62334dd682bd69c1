//! Embeds the model and the inputs named by the environment, and picks the board's memory map.
//!
//! - `MOTE_MODEL`: path of the `.mote` file to embed (required).
//! - `MOTE_INPUTS`: raw input bytes, one or more cases of all model inputs back to back
//!   (default: one all-zeros case).
//! - `MOTE_BOARD`: a folder of `targets/boards/` (default: the board the target triple is for).

use std::env;
use std::fs;
use std::path::PathBuf;

use mote_runtime::Model;

fn default_board(target: &str) -> &'static str {
    match target {
        t if t.starts_with("thumbv7em") => "mps2-an386",
        t if t.starts_with("thumbv8m.main") => "mps3-an547",
        t if t.starts_with("thumbv7m") => "lm3s6965evb",
        t if t.starts_with("thumbv6m") => "microbit",
        _ => "mps2-an386",
    }
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let target = env::var("TARGET").unwrap();
    for var in ["MOTE_MODEL", "MOTE_INPUTS", "MOTE_BOARD"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    // Board memory map: copied to OUT_DIR, the only memory.x on the linker's search path.
    let board = env::var("MOTE_BOARD").unwrap_or_else(|_| default_board(&target).to_string());
    let boards = manifest.join("../../targets/boards");
    let memory = boards.join(&board).join("memory.x");
    let memory_x = fs::read(&memory)
        .unwrap_or_else(|e| panic!("MOTE_BOARD={board}: cannot read {}: {e}", memory.display()));
    fs::write(out.join("memory.x"), memory_x).unwrap();
    println!("cargo:rerun-if-changed={}", memory.display());
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");

    let model_path = env::var("MOTE_MODEL").unwrap_or_else(|_| {
        panic!("set MOTE_MODEL to the .mote file to embed (e.g. from `mote convert`)")
    });
    let model_bytes = fs::read(&model_path).unwrap_or_else(|e| panic!("{model_path}: {e}"));
    println!("cargo:rerun-if-changed={model_path}");
    let (arena, input_bytes, output_bytes) = model_sizes(&model_bytes, &model_path);
    fs::write(out.join("model.mote"), &model_bytes).unwrap();

    let inputs = match env::var("MOTE_INPUTS") {
        Ok(p) => {
            println!("cargo:rerun-if-changed={p}");
            fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
        }
        Err(_) => vec![0u8; input_bytes],
    };
    if input_bytes == 0 || inputs.is_empty() || inputs.len() % input_bytes != 0 {
        panic!(
            "MOTE_INPUTS holds {} bytes: not a whole number of cases of {input_bytes} bytes",
            inputs.len()
        );
    }
    fs::write(out.join("inputs.bin"), &inputs).unwrap();

    let generated = format!(
        "/// Arena bytes the model needs (its header's `arena_bytes`).\n\
         pub const ARENA_BYTES: usize = {arena};\n\
         /// Bytes of one case: every input, back to back.\n\
         pub const INPUT_BYTES: usize = {input_bytes};\n\
         /// Bytes of every output, back to back.\n\
         pub const OUTPUT_BYTES: usize = {output_bytes};\n\
         /// The embedded model, 16-byte aligned.\n\
         #[cfg(not(any(feature = \"baseline\", feature = \"aot\")))]\n\
         pub fn model() -> &'static [u8] {{ mote_runtime::include_model!({model:?}) }}\n\
         /// The input cases.\n\
         pub static INPUTS: [u8; {n}] = *include_bytes!({inputs:?});\n",
        model = out.join("model.mote"),
        inputs = out.join("inputs.bin"),
        n = inputs.len(),
    );
    fs::write(out.join("model.rs"), generated).unwrap();

    // The ahead-of-time model (feature `aot`): its ops as direct kernel calls.
    let aot = if env::var_os("CARGO_FEATURE_AOT").is_some() {
        let model = aligned(&model_bytes);
        let model = Model::from_bytes(&bytemuck::cast_slice(&model)[..model_bytes.len()])
            .unwrap_or_else(|e| panic!("{model_path}: not a valid .mote file: {e}"));
        mote_runtime::aot::rust_source(&model)
            .unwrap_or_else(|e| panic!("{model_path}: cannot be compiled ahead of time: {e}"))
            .code
    } else {
        String::new()
    };
    fs::write(out.join("aot.rs"), aot).unwrap();
}

/// `bytes` in 16-byte aligned storage (as the runtime reads a model).
fn aligned(bytes: &[u8]) -> Vec<u128> {
    let mut aligned = vec![0u128; bytes.len().div_ceil(16)];
    let view: &mut [u8] = bytemuck::cast_slice_mut(&mut aligned);
    view[..bytes.len()].copy_from_slice(bytes);
    aligned
}

/// Arena, input and output bytes of the model, read with the runtime's own validating reader.
fn model_sizes(bytes: &[u8], path: &str) -> (usize, usize, usize) {
    // Model::from_bytes wants 16-byte aligned bytes.
    let aligned = aligned(bytes);
    let model = Model::from_bytes(&bytemuck::cast_slice(&aligned)[..bytes.len()])
        .unwrap_or_else(|e| panic!("{path}: not a valid .mote file: {e}"));
    let input: usize = (0..model.input_count())
        .map(|i| model.input(i).map_or(0, |d| d.bytes as usize))
        .sum();
    let output: usize = (0..model.output_count())
        .map(|i| model.output(i).map_or(0, |d| d.bytes as usize))
        .sum();
    (model.arena_bytes(), input, output)
}
