//! The README's main job on the embedded default model: *fit* it to a microcontroller.
//!
//! The default model is the project's own float CNN for the UCI handwritten digits (8×8),
//! trained by `tools/train_digits.py` (Keras; `assets/digits_cnn_float.tflite`, see
//! `assets/README.md`). [`run`] fits it with `mote fit`'s pipeline ([`crate::fit`]) to the
//! default target ([`TARGET`], an STM32L4R5 / Cortex-M4) under a flash and RAM budget that the
//! unpruned int8 model does not meet ([`FLASH_BUDGET`], [`RAM_BUDGET`]): structured pruning,
//! fine-tuning on the committed training images, int8 quantization, compilation. It then runs
//! the fitted `.mote` over the held-out test set on the host runtime and reports flash, RAM,
//! MACs, accuracy (float / int8 before the fit / after the fit), measured host latency and the
//! target's estimated latency and energy.
//!
//! Candidate selection uses a validation split (the last fifth of the training images, not
//! used for fine-tuning); the reported accuracies are on the 360 test images, which the
//! search never sees.

// Without `float` only the model constants and the report type are built.
#![cfg_attr(not(feature = "float"), allow(unused_imports))]

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use mote_runtime::{Interpreter, Model};

use crate::error::CompileError;
use crate::inspect::group;
use crate::write::AlignedBytes;

/// The int8 model converted by the TFLite converter (used by the benchmarks and golden tests).
pub const MODEL_TFLITE: &[u8] = include_bytes!("../assets/digits_cnn_int8.tflite");
/// The default model: the same trained network in float32, the input of the fit.
pub const FLOAT_TFLITE: &[u8] = include_bytes!("../assets/digits_cnn_float.tflite");
/// Held-out test images, 64 int8 values each, quantized with the int8 model's input parameters.
pub const TEST_INPUTS: &[u8] = include_bytes!("../assets/digits_test_int8.bin");
/// The same test images as float32 (pixel / 16).
pub const TEST_F32: &[u8] = include_bytes!("../assets/digits_test_f32.bin");
/// Labels of the held-out test images.
pub const TEST_LABELS: &[u8] = include_bytes!("../assets/digits_test_labels.bin");
/// Training images, 64 pixel counts (0..16) each.
pub const TRAIN_U8: &[u8] = include_bytes!("../assets/digits_train_u8.bin");
/// Labels of the training images.
pub const TRAIN_LABELS: &[u8] = include_bytes!("../assets/digits_train_labels.bin");
/// Training provenance and reference accuracies.
pub const MODEL_INFO: &str = include_str!("../assets/digits_cnn.json");

/// The default target profile.
pub const TARGET: &str = "stm32l4r5";
/// The default flash budget, bytes of `.mote`: half the unpruned int8 model's (14,832 bytes).
pub const FLASH_BUDGET: usize = 7_416;
/// The default RAM budget, arena bytes: half the unpruned int8 model's (2,560 bytes).
pub const RAM_BUDGET: usize = 1_280;
/// Fine-tuning epochs of the demo's fit (`mote fit`'s default recipe otherwise).
pub const EPOCHS: usize = 20;

/// The test images as float32 vectors (pixel / 16).
pub fn test_images() -> Vec<Vec<f32>> {
    TEST_F32
        .chunks_exact(4 * 64)
        .map(|c| {
            c.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect()
}

/// The training images as float32 vectors (pixel / 16).
pub fn train_images() -> Vec<Vec<f32>> {
    TRAIN_U8
        .chunks_exact(64)
        .map(|c| c.iter().map(|&p| f32::from(p) / 16.0).collect())
        .collect()
}

/// What the demo measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoReport {
    /// Model name.
    pub model: String,
    /// Target profile id.
    pub target: String,
    /// Flash budget, bytes.
    pub flash_budget: usize,
    /// RAM budget, bytes.
    pub ram_budget: usize,
    /// Flash of the unpruned int8 model, bytes.
    pub int8_flash_bytes: usize,
    /// Arena of the unpruned int8 model, bytes.
    pub int8_arena_bytes: usize,
    /// MACs of the unpruned int8 model.
    pub int8_macs: u64,
    /// The chosen pruning ratio (fraction of channels removed per layer group).
    pub pruned_ratio: f32,
    /// The chosen precision recipe.
    pub recipe: String,
    /// Operators of the fitted model.
    pub ops: usize,
    /// `.mote` size of the fitted model (flash), as `mote inspect` reports it.
    pub flash_bytes: usize,
    /// Exact arena of the fitted model (RAM).
    pub arena_bytes: usize,
    /// MACs per inference of the fitted model.
    pub macs: u64,
    /// Test images.
    pub test_samples: usize,
    /// Test accuracy of the float model (mote's float executor).
    pub float_accuracy: f64,
    /// Test accuracy of the unpruned int8 model on the mote runtime.
    pub int8_accuracy: f64,
    /// Test accuracy of the fitted model on the mote runtime.
    pub fitted_accuracy: f64,
    /// Median host latency per inference of the fitted model, µs (wall clock, measured).
    pub median_us: f64,
    /// Fastest inference, µs.
    pub min_us: f64,
    /// Estimated latency on the target, µs.
    pub est_latency_us: f64,
    /// Estimated energy per inference on the target, µJ.
    pub est_energy_uj: f64,
    /// Wall time of the fit, s.
    pub fit_seconds: f64,
    /// The fit's plan and front, rendered.
    pub fit_report: String,
}

/// Runs the demo (needs the `float` feature).
#[cfg(not(feature = "float"))]
pub fn run() -> Result<DemoReport, CompileError> {
    Err(CompileError::Usage(
        "the demo fits a float model: build with the `float` feature".into(),
    ))
}

/// Runs the demo.
#[cfg(feature = "float")]
pub fn run() -> Result<DemoReport, CompileError> {
    use crate::fit::search::{self, Budget, FitData, FitOptions};

    let t0 = Instant::now();
    let target = crate::bench::target_by_id(TARGET)?;
    let float = crate::float::prepare(&crate::tflite::import(FLOAT_TFLITE)?)?;
    let mut train = train_images();
    let mut train_y = TRAIN_LABELS.to_vec();
    let split = train.len() - train.len() / 5;
    let val = train.split_off(split);
    let val_y = train_y.split_off(split);
    let data = FitData {
        calibration: train.iter().take(200).cloned().collect(),
        eval: val,
        eval_labels: Some(val_y),
        train: Some((train, train_y)),
        recover: Vec::new(),
    };
    let budget = Budget {
        flash: Some(FLASH_BUDGET),
        ram: Some(RAM_BUDGET),
        ..Budget::default()
    };
    // `mote fit`'s default recipe (one-shot pruning; labels mixed half and half with
    // distillation at temperature 2; shifted views) with EPOCHS instead of 60 epochs. Under
    // these budgets the search picks 50 % pruning (every layer at half width) in int8.
    let mut opts = FitOptions {
        ratios: vec![0.0, 0.25, 0.375, 0.5, 0.625],
        ..FitOptions::default()
    };
    opts.finetune.epochs = EPOCHS;
    opts.finetune_top = 1;
    let r = search::fit(&float, target, budget, &data, &opts)?;
    let fit_seconds = t0.elapsed().as_secs_f64();

    // Test accuracies: float, unpruned int8, fitted — all on the held-out test images.
    let test = test_images();
    let truth: Vec<usize> = TEST_LABELS.iter().map(|&l| usize::from(l)).collect();
    let float_acc = search::top1(&crate::fit::finetune::predict(&float, &test, 64)?, &truth);
    let ranges = search::calibrate_ranges(&float, &data.calibration)?;
    let q8 = crate::ptq::quantize_int8(&float, &ranges)?;
    let c8 = crate::compile::compile(q8.clone())?;
    let m8 = search::measure(&c8, target)?;
    let int8_acc = search::top1(&search::run_quantized(&q8, &c8, &test)?, &truth);

    // The fitted .mote on the host runtime: accuracy and wall-clock latency.
    let aligned = r.compiled.aligned();
    let model = Model::from_bytes(aligned.as_slice())?;
    let report = crate::inspect::report(&model);
    let mut arena = AlignedBytes::zeroed(model.arena_bytes());
    let mut interp = Interpreter::new(&model, arena.as_mut_slice())?;
    let (in_s, in_z) = r.graph.tensors[r.graph.inputs[0]]
        .scale_zp()
        .unwrap_or((1.0, 0));
    let mut correct = 0usize;
    let mut times: Vec<Duration> = Vec::with_capacity(test.len());
    for (x, &label) in test.iter().zip(TEST_LABELS) {
        interp.set_input_bytes(0, &crate::fidelity::quantize_i8(x, in_s, in_z))?;
        let t = Instant::now();
        interp.invoke()?;
        times.push(t.elapsed());
        let out = interp.output::<i8>(0)?;
        let mut best = 0;
        for (i, &v) in out.iter().enumerate() {
            if v > out[best] {
                best = i;
            }
        }
        if best == usize::from(label) {
            correct += 1;
        }
    }
    times.sort();
    let n = test.len();
    Ok(DemoReport {
        model: "digits CNN, float32 (UCI handwritten digits 8x8; trained by tools/train_digits.py)"
            .into(),
        target: TARGET.into(),
        flash_budget: FLASH_BUDGET,
        ram_budget: RAM_BUDGET,
        int8_flash_bytes: m8.flash,
        int8_arena_bytes: m8.arena,
        int8_macs: m8.macs,
        pruned_ratio: r.chosen.ratio,
        recipe: r.chosen.recipe.into(),
        ops: report.ops.len(),
        flash_bytes: report.flash_bytes,
        arena_bytes: report.arena_bytes,
        macs: report.macs,
        test_samples: n,
        float_accuracy: float_acc,
        int8_accuracy: int8_acc,
        fitted_accuracy: correct as f64 / n.max(1) as f64,
        median_us: times.get(n / 2).map_or(0.0, |t| t.as_secs_f64() * 1e6),
        min_us: times.first().map_or(0.0, |t| t.as_secs_f64() * 1e6),
        est_latency_us: r.chosen.est_latency_us,
        est_energy_uj: r.chosen.est_energy_uj,
        fit_seconds,
        fit_report: crate::fit::render(&r),
    })
}

/// Renders the report for a person.
pub fn render(r: &DemoReport) -> String {
    let mut s = String::new();
    s.push_str(&format!("model      {}\n", r.model));
    s.push_str(&format!(
        "fit        to {} with flash <= {} B and RAM <= {} B in {:.1} s: pruned {:.1} % of \
         channels, {}, fine-tuned\n",
        r.target,
        group(r.flash_budget as u64),
        group(r.ram_budget as u64),
        r.fit_seconds,
        100.0 * r.pruned_ratio,
        r.recipe
    ));
    s.push_str(&format!(
        "flash      {} bytes (.mote file; int8 before the fit {} bytes)\n",
        group(r.flash_bytes as u64),
        group(r.int8_flash_bytes as u64)
    ));
    s.push_str(&format!(
        "RAM        {} bytes arena (exact; int8 before the fit {} bytes)\n",
        group(r.arena_bytes as u64),
        group(r.int8_arena_bytes as u64)
    ));
    s.push_str(&format!(
        "compute    {} MACs per inference, {} ops (int8 before the fit {} MACs)\n",
        group(r.macs),
        r.ops,
        group(r.int8_macs)
    ));
    s.push_str(&format!(
        "accuracy   {:.2}% fitted on mote, {:.2}% int8 before the fit, {:.2}% float \
         (top-1 over {} held-out test images)\n",
        r.fitted_accuracy * 100.0,
        r.int8_accuracy * 100.0,
        r.float_accuracy * 100.0,
        r.test_samples
    ));
    s.push_str(&format!(
        "latency    {:.1} us median, {:.1} us min per inference (measured: host wall clock)\n",
        r.median_us, r.min_us
    ));
    s.push_str(&format!(
        "target     {} per inference on {} (estimated), {} (estimated)\n",
        crate::bench::fmt_us(r.est_latency_us),
        r.target,
        crate::bench::fmt_uj(r.est_energy_uj)
    ));
    s
}
