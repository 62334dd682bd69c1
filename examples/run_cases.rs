//! Runs a `.mote` model on every input case of a file and prints each case's outputs as hex, in
//! the bare-metal firmware's format (`case <i> out=<hex>`), so that runs on different machines
//! can be compared byte for byte (tools/ci/reliability.sh: x86 scalar and SIMD, aarch64 NEON).
//!
//! ```sh
//! cargo run --release -p mote-examples --example run_cases -- model.mote inputs.bin [cases]
//! ```
//! `inputs.bin` holds whole cases back to back, each case every input's bytes in order; `cases`
//! limits how many are run (default: all).

use mote_runtime::{Interpreter, Model};

/// 16-byte aligned storage (the runtime requires the alignment for the model and the arena).
fn aligned(len: usize) -> Vec<u128> {
    vec![0u128; len.div_ceil(16)]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model_path, inputs_path, rest @ ..] = args.as_slice() else {
        return Err("usage: run_cases MODEL.mote INPUTS.bin [CASES]".into());
    };
    let limit: usize = match rest.first() {
        Some(n) => n.parse()?,
        None => usize::MAX,
    };
    let file = std::fs::read(model_path)?;
    let mut model_buf = aligned(file.len());
    let model_bytes = &mut bytemuck::cast_slice_mut::<u128, u8>(&mut model_buf)[..file.len()];
    model_bytes.copy_from_slice(&file);
    let model = Model::from_bytes(model_bytes)?;

    let mut arena_buf = aligned(model.arena_bytes());
    let arena = &mut bytemuck::cast_slice_mut::<u128, u8>(&mut arena_buf)[..model.arena_bytes()];
    let mut interp = Interpreter::new(&model, arena)?;
    let case_bytes: usize = (0..model.input_count())
        .map(|i| model.input(i).map_or(0, |d| d.bytes as usize))
        .sum();
    let inputs = std::fs::read(inputs_path)?;
    if case_bytes == 0 || inputs.len() % case_bytes != 0 {
        return Err(format!(
            "{inputs_path}: {} bytes is not a whole number of {case_bytes}-byte cases",
            inputs.len()
        )
        .into());
    }
    for (case, input) in inputs.chunks_exact(case_bytes).take(limit).enumerate() {
        // Set every input before each invocation: in-place ops may overwrite them.
        let mut at = 0;
        for i in 0..model.input_count() {
            let n = interp.input_bytes_mut(i)?.len();
            interp.set_input_bytes(i, &input[at..at + n])?;
            at += n;
        }
        interp.invoke()?;
        let mut line = format!("case {case} out=");
        for k in 0..model.output_count() {
            for b in interp.output_bytes(k)? {
                line.push_str(&format!("{b:02x}"));
            }
        }
        println!("{line}");
    }
    Ok(())
}
