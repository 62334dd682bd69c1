//! Float32 models compiled as they are (`mote convert` of a float `.tflite`) and run on the
//! mote runtime's float32 kernels (`mote_runtime::ops::float`, `float_pointwise`, float
//! pooling/MEAN/RESHAPE), against LiteRT's outputs (builtin reference kernels; fixtures of
//! `tools/fixtures/float_golden.py`); then the same models with float16 weights
//! (`--scheme f16`) against the float executor.
#![cfg(feature = "float")]

use std::path::PathBuf;

use mote_quantize::compile::compile_tflite;
use mote_quantize::fidelity::Int8Runner;
use mote_quantize::tflite;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn f32s(path: &PathBuf) -> Vec<f32> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn model_path(spec: &str) -> Option<PathBuf> {
    let p = match spec.strip_prefix("shared:") {
        // `MOTE_SHARED_MODELS` overrides the folder (e.g. from a git worktree elsewhere).
        Some(f) => std::env::var_os("MOTE_SHARED_MODELS")
            .map_or_else(|| root().join("../../shared/models"), PathBuf::from)
            .join(f),
        None => root().join("..").join(spec),
    };
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} is absent (CI always has ../shared/models)",
            p.display()
        );
        None
    }
}

/// Max |mote − LiteRT| relative to max |LiteRT| over the fixture's two inputs, for the float
/// model compiled as it is.
fn check(name: &str, tol: f32) {
    let dir = root().join("tests/fixtures/float");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    let Some(path) = model_path(meta["model"].as_str().unwrap()) else {
        return;
    };
    let bytes = std::fs::read(&path).unwrap();
    let graph = tflite::import(&bytes).unwrap();
    let compiled = compile_tflite(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut runner = Int8Runner::new(&graph, &compiled).unwrap();
    let xs = f32s(&dir.join(format!("{name}_inputs.bin")));
    let ys = f32s(&dir.join(format!("{name}_outputs.bin")));
    let (ni, no) = (xs.len() / 2, ys.len() / 2);
    let mut worst = 0f32;
    for c in 0..2 {
        let (_, out) = runner
            .run_layers(&[xs[c * ni..(c + 1) * ni].to_vec()], false)
            .unwrap();
        let want = &ys[c * no..(c + 1) * no];
        assert_eq!(out[0].len(), want.len(), "{name}");
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        for (a, b) in out[0].iter().zip(want) {
            worst = worst.max((a - b).abs() / scale);
        }
    }
    eprintln!(
        "{name}: float32 on the mote runtime, {} bytes, max relative difference to LiteRT {worst:.2e}",
        compiled.bytes.len()
    );
    assert!(worst <= tol, "{name}: {worst} > {tol}");
}

#[test]
fn digits_cnn_float32_matches_litert() {
    check("digits_cnn_float", 1e-5);
}

#[test]
fn hello_world_float32_matches_litert() {
    check("hello_world_float", 1e-5);
}

#[test]
fn ad01_float32_matches_litert() {
    check("ad01_fp32", 1e-5);
}

#[test]
fn kws_hybrid_model_is_refused_by_name() {
    // Its weights are int8 with float activations (dynamic-range quantization): no kernel runs
    // that mix; `mote convert` says which op and why (`mote quantize` handles the model).
    let dir = root().join("tests/fixtures/float");
    let Some(path) = model_path("shared:kws_ref_model_float32.tflite") else {
        return;
    };
    assert!(dir.join("kws_ref_model_float32.json").is_file());
    let err = compile_tflite(&std::fs::read(path).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("op 0 (CONV_2D)") && err.contains("weights are int8"),
        "{err}"
    );
}

#[test]
fn resnet_float32_matches_litert() {
    check("pretrainedResnet", 1e-4);
}

/// The model with float16 weights (`--scheme f16`, calibrated on the fixture's inputs) on the
/// mote runtime against LiteRT's float32 outputs: max relative difference ≤ `tol`.
fn check_f16(name: &str, tol: f32) {
    use mote_quantize::calibrate::ObserverKind;
    use mote_quantize::pipeline::{choose_precisions, quantize_graph_scheme};
    let dir = root().join("tests/fixtures/float");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    let Some(path) = model_path(meta["model"].as_str().unwrap()) else {
        return;
    };
    let graph = tflite::import(&std::fs::read(&path).unwrap()).unwrap();
    let xs = f32s(&dir.join(format!("{name}_inputs.bin")));
    let ys = f32s(&dir.join(format!("{name}_outputs.bin")));
    let (ni, no) = (xs.len() / 2, ys.len() / 2);
    let samples: Vec<Vec<Vec<f32>>> = (0..2)
        .map(|c| vec![xs[c * ni..(c + 1) * ni].to_vec()])
        .collect();
    let q = quantize_graph_scheme(
        &graph,
        &samples,
        &samples,
        ObserverKind::MinMax,
        |fg| choose_precisions(fg, "f16", &[]),
        false,
        false,
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut runner = Int8Runner::new(&q.graph, &q.compiled).unwrap();
    let mut worst = 0f32;
    for (c, s) in samples.iter().enumerate() {
        let (_, out) = runner.run_layers(s, false).unwrap();
        let want = &ys[c * no..(c + 1) * no];
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        for (a, b) in out[0].iter().zip(want) {
            worst = worst.max((a - b).abs() / scale);
        }
    }
    eprintln!(
        "{name}: f16 weights on the mote runtime, {} bytes, output SQNR {:.1} dB vs the float \
         executor, max relative difference to LiteRT {worst:.2e}",
        q.compiled.bytes.len(),
        q.report.output_sqnr_db
    );
    assert!(worst <= tol, "{name}: {worst} > {tol}");
}

#[test]
fn f16_weights_stay_close_to_litert_float32() {
    // Bounds about twice the measured differences (1.5e-3, 4.6e-4, 2.6e-4, 2.2e-3, 9.1e-3 on
    // 2026-11-28): half-precision weight rounding (relative 2^-11 each) through each network.
    // KWS's weights are int8 in the file (LiteRT runs its hybrid kernels); ResNet's 20 layers
    // and peaked outputs amplify the rounding most.
    check_f16("digits_cnn_float", 3e-3);
    check_f16("hello_world_float", 1e-3);
    check_f16("ad01_fp32", 1e-3);
    check_f16("kws_ref_model_float32", 5e-3);
    check_f16("pretrainedResnet", 2e-2);
}

/// A TFLite float16-weights model (`tools/fixtures/float16_tflite.py`: the layout of
/// TFLiteConverter's `supported_types=[tf.float16]`, FLOAT16 constants + DEQUANTIZE) compiled
/// as it is: the weights stay float16 in the `.mote` and the outputs match LiteRT's.
#[test]
fn tflite_float16_weights_model_matches_litert() {
    let dir = root().join("tests/fixtures/float");
    let bytes = std::fs::read(dir.join("digits_cnn_f16.tflite")).unwrap();
    let graph = tflite::import(&bytes).unwrap();
    let dequantizes = |g: &mote_quantize::ir::Graph| {
        g.nodes
            .iter()
            .filter(|n| n.op == mote_quantize::ir::Operator::Dequantize)
            .count()
    };
    assert_eq!(dequantizes(&graph), 10);
    let compiled = compile_tflite(&bytes).unwrap_or_else(|e| panic!("{e}"));
    let aligned = compiled.aligned();
    let model = mote_runtime::Model::from_bytes(aligned.as_slice()).unwrap();
    assert_eq!(model.ops().len(), 8, "every DEQUANTIZE folded");
    let f16_consts = model
        .tensors()
        .iter()
        .filter(|t| t.dtype() == Some(mote_runtime::DType::Float16))
        .count();
    assert_eq!(
        f16_consts, 5,
        "the 5 weight tensors stay float16 (biases widen to float32)"
    );
    let float32 =
        compile_tflite(&std::fs::read(root().join("assets/digits_cnn_float.tflite")).unwrap())
            .unwrap();
    assert!(compiled.bytes.len() < float32.bytes.len());
    let xs = f32s(&root().join("assets/digits_test_f32.bin"));
    let ys = f32s(&dir.join("digits_cnn_f16_outputs.bin"));
    let mut runner = Int8Runner::new(&graph, &compiled).unwrap();
    let mut worst = 0f32;
    for (c, want) in ys.chunks_exact(10).enumerate() {
        let (_, out) = runner
            .run_layers(&[xs[c * 64..(c + 1) * 64].to_vec()], false)
            .unwrap();
        for (a, b) in out[0].iter().zip(want) {
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!(
        "digits_cnn_f16.tflite: {} bytes as .mote (float32 weights: {}), max |mote - LiteRT| {worst:.2e} over {} images",
        compiled.bytes.len(),
        float32.bytes.len(),
        ys.len() / 10
    );
    assert!(worst <= 1e-6, "{worst}");
}
