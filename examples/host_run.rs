//! Runs a `.mote` model on the host with nothing but `mote-runtime`.
//!
//! ```sh
//! cargo run --release -p mote-quantize --bin mote -- convert model.tflite -o model.mote
//! cargo run --release -p mote-examples --example host_run -- model.mote [input.bin]
//! ```
//! The input is raw little-endian bytes of input 0 (zeros when omitted). Prints output 0's bytes
//! and the median latency of 100 invocations.

use std::time::Instant;

use mote_runtime::{Interpreter, Model};

/// 16-byte aligned storage for the model and the arena (the runtime requires the alignment).
fn aligned(len: usize) -> Vec<u128> {
    vec![0u128; len.div_ceil(16)]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: host_run MODEL.mote [INPUT.bin]")?;
    let file = std::fs::read(&path)?;
    let mut model_buf = aligned(file.len());
    let model_bytes = &mut bytemuck_bytes(&mut model_buf)[..file.len()];
    model_bytes.copy_from_slice(&file);
    let model = Model::from_bytes(model_bytes)?;

    let mut arena_buf = aligned(model.arena_bytes());
    let arena = &mut bytemuck_bytes(&mut arena_buf)[..model.arena_bytes()];
    let mut interp = Interpreter::new(&model, arena)?;
    if let Some(input) = args.next() {
        interp.set_input_bytes(0, &std::fs::read(input)?)?;
    }
    let mut times = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        interp.invoke()?;
        times.push(t.elapsed());
    }
    times.sort();
    println!("output 0: {:?}", interp.output_bytes(0)?);
    println!(
        "arena {} bytes, flash {} bytes, median latency {:?} (host wall clock, 100 runs)",
        model.arena_bytes(),
        model.file_bytes(),
        times[times.len() / 2]
    );
    Ok(())
}

fn bytemuck_bytes(words: &mut [u128]) -> &mut [u8] {
    bytemuck::cast_slice_mut(words)
}
