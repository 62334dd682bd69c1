//! Whole-model latency on the host: each int8 reference model, compiled and run by mote.
//!
//! `cargo bench -p mote-benches --bench models`

use criterion::{criterion_group, criterion_main, Criterion};

use mote_quantize::compile::compile_tflite;
use mote_quantize::write::AlignedBytes;
use mote_runtime::{Interpreter, Model};

fn models(c: &mut Criterion) {
    let mut sources = vec![(
        "digits_cnn_int8".to_string(),
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../quantize/assets/digits_cnn_int8.tflite"
        ))
        .ok(),
    )];
    match mote_benches::shared_models() {
        Some(dir) => {
            for m in [
                "kws_ref_model",
                "pretrainedResnet_quant",
                "ad01_int8",
                "hello_world_int8",
            ] {
                sources.push((
                    m.to_string(),
                    std::fs::read(dir.join(format!("{m}.tflite"))).ok(),
                ));
            }
        }
        None => eprintln!("../shared/models is absent: benchmarking the project's own model only"),
    }
    let mut group = c.benchmark_group("invoke");
    for (name, bytes) in sources {
        let Some(bytes) = bytes else { continue };
        let compiled = match compile_tflite(&bytes) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{name}: {e}");
                continue;
            }
        };
        let aligned = compiled.aligned();
        let model = Model::from_bytes(aligned.as_slice()).expect("valid model");
        let mut arena = AlignedBytes::zeroed(model.arena_bytes());
        let mut interp = Interpreter::new(&model, arena.as_mut_slice()).expect("arena");
        for (i, b) in interp
            .input_bytes_mut(0)
            .expect("input")
            .iter_mut()
            .enumerate()
        {
            *b = (i * 7) as u8;
        }
        group.bench_function(&name, |b| b.iter(|| interp.invoke().expect("invoke")));
    }
    group.finish();
}

criterion_group!(benches, models);
criterion_main!(benches);
