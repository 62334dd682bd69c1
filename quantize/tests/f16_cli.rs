//! `mote quantize --scheme f16` and `--layer N=f16` end to end through the command line: the
//! digits CNN (TFLite and ONNX float models of `assets/`), its report, `mote inspect` and
//! `mote run` of the result against the float reference executor.
#![cfg(feature = "float")]

use std::path::{Path, PathBuf};
use std::process::Command;

use mote_quantize::float::{self, FloatExecutor};
use mote_quantize::{npy, tflite};
use mote_runtime::DType;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

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
