//! Float32 models compiled as they are (`mote convert` of a float `.tflite`) and run on the
//! mote runtime's float32 kernels (`mote_runtime::ops::float`, `float_pointwise`, float
//! pooling/MEAN/RESHAPE), against LiteRT's outputs (builtin reference kernels; fixtures of
//! `tools/fixtures/float_golden.py`); the same models with float16 weights (`--scheme f16`)
//! against the same outputs; a TFLite float16-weights model (`tools/fixtures/float16_tflite.py`)
//! against LiteRT's; and `mote quantize --scheme f16` /
//! `--layer N=f16` end to end through the command line (TFLite and ONNX digits CNN, its report,
//! `mote inspect`, `mote run` of the result against the float reference executor).
#![cfg(feature = "float")]

use std::path::{Path, PathBuf};
use std::process::Command;

use mote_quantize::compile::compile_tflite;
use mote_quantize::fidelity::Int8Runner;
use mote_quantize::float::{self, FloatExecutor};
use mote_quantize::{npy, tflite};
use mote_runtime::DType;

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
    use mote_quantize::pipeline::{choose_precisions, quantize_graph_scheme, Refinements};
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
        Refinements::default(),
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

// `mote quantize --scheme f16` through the command line.

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mote-f16-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tmp dir");
    d.join(name)
}

fn mote(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mote"))
        .args(args)
        .output()
        .expect("run mote");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// Calibration (128 training images) and held-out (the 360 test images) `.npy` files, NHWC.
fn data() -> (PathBuf, PathBuf, Vec<f32>) {
    let train: Vec<f32> = std::fs::read(root().join("assets/digits_train_u8.bin"))
        .expect("train")
        .iter()
        .take(128 * 64)
        .map(|&p| f32::from(p) / 16.0)
        .collect();
    let test_bytes = std::fs::read(root().join("assets/digits_test_f32.bin")).expect("test");
    let test: Vec<f32> = test_bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let (cal, held) = (tmp("cal.npy"), tmp("held.npy"));
    npy::write(&cal, &bytes(&train), DType::Float32, &[128, 8, 8, 1]).expect("npy");
    npy::write(
        &held,
        &test_bytes,
        DType::Float32,
        &[test.len() / 64, 8, 8, 1],
    )
    .expect("npy");
    (cal, held, test)
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("report")).expect("json")
}

#[test]
fn quantize_inspect_and_run_f16() {
    let (cal, held, test) = data();
    let model = root().join("assets/digits_cnn_float.tflite");
    let (out, json) = (tmp("digits_f16.mote"), tmp("digits_f16.json"));
    let (ok, stdout, err) = mote(&[
        "quantize",
        s(&model),
        "--calibration",
        s(&cal),
        "--heldout",
        s(&held),
        "--scheme",
        "f16",
        "-o",
        s(&out),
        "--report",
        s(&json),
        "--quiet",
    ]);
    assert!(ok, "{stdout}\n{err}");
    let r = report(&json);
    let sqnr = r["output_sqnr_db"].as_f64().unwrap_or(0.0);
    assert!(sqnr > 60.0, "output SQNR {sqnr} dB");
    assert_eq!(r["top1_agreement"].as_f64(), Some(1.0));
    let layers = r["layers"].as_array().expect("layers");
    assert!(!layers.is_empty());
    for l in layers {
        assert!(l["sqnr_db"].as_f64().unwrap_or(0.0) > 50.0, "{l}");
    }
    let (ok, stdout, err) = mote(&["inspect", s(&out)]);
    assert!(ok && stdout.contains("act_min=0"), "{stdout}\n{err}");
    let (ok, stdout, err) = mote(&["inspect", "--json", s(&out)]);
    assert!(ok && stdout.contains("\"float16\""), "{stdout}\n{err}");

    // `mote run` on one image: the float model's probabilities, to f16 weight rounding.
    let x = &test[..64];
    let (xin, yout) = (tmp("x.npy"), tmp("y.npy"));
    let xb: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    npy::write(&xin, &xb, DType::Float32, &[1, 8, 8, 1]).expect("npy");
    let (ok, stdout, err) = mote(&["run", s(&out), "-i", s(&xin), "-o", s(&yout)]);
    assert!(ok, "{stdout}\n{err}");
    let y = npy::parse_npy(&std::fs::read(&yout).expect("y")).expect("npy");
    let got: Vec<f32> = y
        .bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let g = tflite::import(&std::fs::read(&model).expect("model")).expect("import");
    let fg = float::prepare(&g).expect("prepare");
    let exec = FloatExecutor::new(&fg, float::default_device());
    let vals = exec.run(&[x.to_vec()]).expect("float run");
    let want = vals[fg.outputs[0]].as_ref().expect("output");
    assert_eq!(got.len(), want.len());
    for (a, b) in got.iter().zip(want) {
        assert!((a - b).abs() < 1e-3, "{got:?} vs {want:?}");
    }
}

#[test]
fn per_layer_f16_and_onnx_f16() {
    let (cal, held, _) = data();
    let model = root().join("assets/digits_cnn_float.tflite");
    let (out, json) = (tmp("digits_mixed.mote"), tmp("digits_mixed.json"));
    let (ok, stdout, err) = mote(&[
        "quantize",
        s(&model),
        "--calibration",
        s(&cal),
        "--heldout",
        s(&held),
        "--layer",
        "0=f16",
        "-o",
        s(&out),
        "--report",
        s(&json),
        "--quiet",
    ]);
    assert!(ok, "{stdout}\n{err}");
    let r = report(&json);
    assert!(
        r["layers"][0]["sqnr_db"].as_f64().unwrap_or(0.0) > 60.0,
        "{r}"
    );
    let (ok, stdout, _) = mote(&["inspect", "--json", s(&out)]);
    assert!(
        ok && stdout.contains("\"float16\"") && stdout.contains("QUANTIZE"),
        "{stdout}"
    );
    // A layer index out of range is refused by name.
    let (ok, _, err) = mote(&[
        "quantize",
        s(&model),
        "--calibration",
        s(&cal),
        "--scheme",
        "f16",
        "--layer",
        "99=int8",
        "-o",
        s(&tmp("bad.mote")),
        "--quiet",
    ]);
    assert!(!ok && err.contains("99"), "{err}");
    // The ONNX export of the same CNN (NCHW; C = 1, so NHWC samples hold the same bytes).
    let onnx = root().join("tests/fixtures/onnx/digits.onnx");
    let (out, json) = (tmp("digits_onnx_f16.mote"), tmp("digits_onnx_f16.json"));
    let (ok, stdout, err) = mote(&[
        "quantize",
        s(&onnx),
        "--calibration",
        s(&cal),
        "--heldout",
        s(&held),
        "--scheme",
        "f16",
        "-o",
        s(&out),
        "--report",
        s(&json),
        "--quiet",
    ]);
    assert!(ok, "{stdout}\n{err}");
    let sqnr = report(&json)["output_sqnr_db"].as_f64().unwrap_or(0.0);
    assert!(sqnr > 60.0, "ONNX f16 output SQNR {sqnr} dB");
}

/// `mote quantize` takes 16-kHz `.wav` audio as calibration (and held-out) data for a
/// keyword-spotting model: MFCC windows every 100 ms, `--augment N` perturbed copies; a model
/// without a 49 × 10 MFCC input refuses it.
#[test]
fn quantize_kws_from_wav_audio() {
    let Some(model) = model_path("shared:kws_ref_model_float32.tflite") else {
        return;
    };
    let data = model.parent().unwrap().join("../data");
    let (speech, marvin) = (
        data.join("speech_10s_16k.wav"),
        data.join("marvin_1s_16k.wav"),
    );
    let (out, json) = (tmp("kws_wav.mote"), tmp("kws_wav.json"));
    let (ok, stdout, err) = mote(&[
        "quantize",
        s(&model),
        "--calibration",
        s(&speech),
        "--augment",
        "1",
        "--heldout",
        s(&marvin),
        "--observer",
        "mse",
        "--bias-correction",
        "-o",
        s(&out),
        "--report",
        s(&json),
        "--quiet",
    ]);
    assert!(ok, "{stdout}\n{err}");
    // 91 windows of the 10-s speech (every 100 ms) and about as many of one perturbed copy.
    let n: usize = stdout
        .split(", ")
        .find_map(|p| p.strip_suffix(" calibration samples"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        (170..=182).contains(&n),
        "{n} calibration samples: {stdout}"
    );
    let r = report(&json);
    assert_eq!(r["samples"].as_u64(), Some(1), "{r}");
    assert!(r["output_sqnr_db"].as_f64().unwrap_or(0.0) > 10.0, "{r}");
    let digits = root().join("assets/digits_cnn_float.tflite");
    let (ok, _, err) = mote(&[
        "quantize",
        s(&digits),
        "--calibration",
        s(&speech),
        "-o",
        s(&tmp("bad_wav.mote")),
        "--quiet",
    ]);
    assert!(!ok && err.contains("49 x 10 MFCC"), "{err}");
}
