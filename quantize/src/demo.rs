//! The README's main job on the embedded default model: compile it, run the held-out test set on
//! the host runtime, and report memory, MACs, accuracy and latency.
//!
//! The default model is the project's own: a small int8 CNN trained on the UCI handwritten digits
//! (8×8) by `tools/train_digits.py` and converted by the TFLite converter (see `assets/README.md`).

use std::time::{Duration, Instant};

use serde::Serialize;

use mote_runtime::{Interpreter, Model};

use crate::compile::compile_tflite;
use crate::error::CompileError;
use crate::inspect::{self, group};
use crate::write::AlignedBytes;

/// The default model, an int8 `.tflite`.
pub const MODEL_TFLITE: &[u8] = include_bytes!("../assets/digits_cnn_int8.tflite");
/// Held-out test images, 64 int8 values each, quantized with the model's input parameters.
pub const TEST_INPUTS: &[u8] = include_bytes!("../assets/digits_test_int8.bin");
/// Labels of the held-out test images.
pub const TEST_LABELS: &[u8] = include_bytes!("../assets/digits_test_labels.bin");
/// Training provenance and reference accuracies.
pub const MODEL_INFO: &str = include_str!("../assets/digits_cnn.json");

/// What the demo measured.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// Model name.
    pub model: String,
    /// Operators.
    pub ops: usize,
    /// `.mote` size (flash).
    pub flash_bytes: usize,
    /// Exact arena size (RAM).
    pub arena_bytes: usize,
    /// Smallest arena TensorFlow Lite Micro accepts for the same model (x86-64 build), if recorded.
    pub tflm_arena_bytes: Option<u64>,
    /// MACs per inference.
    pub macs: u64,
    /// Test images.
    pub test_samples: usize,
    /// Top-1 accuracy of the float model (recorded at training).
    pub float_accuracy: Option<f64>,
    /// Top-1 accuracy of the int8 model run by TensorFlow Lite Micro (recorded by `tools/eval_digits.py`).
    pub tflm_int8_accuracy: Option<f64>,
    /// Top-1 accuracy of the int8 model run by mote (measured now).
    pub int8_accuracy: f64,
    /// Median host latency per inference, microseconds (wall clock).
    pub median_us: f64,
    /// Fastest inference, microseconds.
    pub min_us: f64,
}

fn argmax(v: &[i8]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Runs the demo.
pub fn run() -> Result<DemoReport, CompileError> {
    let compiled = compile_tflite(MODEL_TFLITE)?;
    let aligned = compiled.aligned();
    let model = Model::from_bytes(aligned.as_slice())?;
    let report = inspect::report(&model);
    let mut arena = AlignedBytes::zeroed(model.arena_bytes());
    let mut interp = Interpreter::new(&model, arena.as_mut_slice())?;
    let input_len = model.input(0).map_or(0, |t| t.bytes as usize);
    if input_len == 0 || TEST_INPUTS.len() % input_len != 0 {
        return Err(CompileError::Malformed {
            format: "test set",
            what: "input size does not divide the test set".into(),
        });
    }
    let n = TEST_INPUTS.len() / input_len;
    let mut correct = 0usize;
    let mut times: Vec<Duration> = Vec::with_capacity(n);
    for (image, &label) in TEST_INPUTS.chunks_exact(input_len).zip(TEST_LABELS) {
        interp.set_input_bytes(0, image)?;
        let t = Instant::now();
        interp.invoke()?;
        times.push(t.elapsed());
        if argmax(interp.output::<i8>(0)?) == label as usize {
            correct += 1;
        }
    }
    times.sort();
    let info: serde_json::Value = serde_json::from_str(MODEL_INFO).unwrap_or_default();
    let num = |path: &[&str]| {
        path.iter()
            .try_fold(&info, |v, k| v.get(*k))
            .and_then(|v| v.as_f64())
    };
    Ok(DemoReport {
        model: "digits_cnn_int8 (UCI handwritten digits, 8x8; trained by tools/train_digits.py)"
            .into(),
        ops: report.ops.len(),
        flash_bytes: report.flash_bytes,
        arena_bytes: report.arena_bytes,
        tflm_arena_bytes: num(&["tflm_arena_bytes"]).map(|v| v as u64),
        tflm_int8_accuracy: num(&["accuracy", "int8_tflm_test"]),
        macs: report.macs,
        test_samples: n,
        float_accuracy: num(&["accuracy", "float_keras_test"]),
        int8_accuracy: correct as f64 / n as f64,
        median_us: times[n / 2].as_secs_f64() * 1e6,
        min_us: times[0].as_secs_f64() * 1e6,
    })
}

/// Renders the report for a person.
pub fn render(r: &DemoReport) -> String {
    let mut s = String::new();
    s.push_str(&format!("model      {}\n", r.model));
    s.push_str(&format!(
        "flash      {} bytes (.mote file: weights, parameters, graph)\n",
        group(r.flash_bytes as u64)
    ));
    s.push_str(&format!(
        "RAM        {} bytes arena (exact; planned by mote){}\n",
        group(r.arena_bytes as u64),
        r.tflm_arena_bytes.map_or(String::new(), |t| format!(
            "; TFLM needs {} bytes ({:.2}x)",
            group(t),
            r.arena_bytes as f64 / t as f64
        ))
    ));
    s.push_str(&format!(
        "compute    {} MACs per inference, {} ops\n",
        group(r.macs),
        r.ops
    ));
    s.push_str(&format!(
        "accuracy   int8 on mote {:.2}% top-1 over {} held-out images{}\n",
        r.int8_accuracy * 100.0,
        r.test_samples,
        match (r.float_accuracy, r.tflm_int8_accuracy) {
            (Some(f), Some(t)) => format!(
                " (float model {:.2}%, int8 on TFLM {:.2}%)",
                f * 100.0,
                t * 100.0
            ),
            (Some(f), None) => format!(" (float model {:.2}%)", f * 100.0),
            _ => String::new(),
        }
    ));
    s.push_str(&format!(
        "latency    {:.1} us median, {:.1} us min per inference (measured: host wall clock)\n",
        r.median_us, r.min_us
    ));
    s
}
