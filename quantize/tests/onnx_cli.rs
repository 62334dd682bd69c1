//! `mote quantize` / `mote convert` / `mote inspect` on `.onnx` models.
#![cfg(feature = "float")]

use std::path::{Path, PathBuf};
use std::process::Command;

use mote_quantize::npy;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mote-onnx-cli-{}", std::process::id()));
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

/// Deterministic pseudo-random calibration data.
fn samples(n: usize, per: usize) -> Vec<f32> {
    let mut s = 0x1234_5678u32;
    (0..n * per)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 4.0 - 2.0
        })
        .collect()
}

#[test]
fn quantize_onnx_with_nchw_or_nhwc_calibration_data() {
    // Input [1, 3, 6, 5] NCHW: conv, BatchNorm (folded), Relu, Flatten, Gemm.
    let model = fixtures().join("node/mote_conv_bn_relu_flatten_gemm.onnx");
    let (n, c, h, w) = (40, 3, 6, 5);
    let nchw = samples(n, c * h * w);
    // The same samples in NHWC.
    let mut nhwc = vec![0f32; nchw.len()];
    for s in 0..n {
        for ci in 0..c {
            for y in 0..h {
                for x in 0..w {
                    nhwc[((s * h + y) * w + x) * c + ci] = nchw[((s * c + ci) * h + y) * w + x];
                }
            }
        }
    }
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let a = tmp("cal_nchw.npy");
    let b = tmp("cal_nhwc.npy");
    npy::write(
        &a,
        &bytes(&nchw),
        mote_runtime::DType::Float32,
        &[n, c, h, w],
    )
    .expect("npy");
    npy::write(
        &b,
        &bytes(&nhwc),
        mote_runtime::DType::Float32,
        &[n, h, w, c],
    )
    .expect("npy");
    let (oa, ob, report) = (tmp("a.mote"), tmp("b.mote"), tmp("a.json"));
    let m = model.to_str().unwrap_or_default();
    let (ok, out, err) = mote(&[
        "quantize",
        m,
        "--calibration",
        a.to_str().unwrap_or_default(),
        "-o",
        oa.to_str().unwrap_or_default(),
        "--report",
        report.to_str().unwrap_or_default(),
        "--quiet",
    ]);
    assert!(ok, "{out}\n{err}");
    let (ok, out, err) = mote(&[
        "quantize",
        m,
        "--calibration",
        b.to_str().unwrap_or_default(),
        "-o",
        ob.to_str().unwrap_or_default(),
        "--quiet",
    ]);
    assert!(ok, "{out}\n{err}");
    // NCHW data is transposed to the model's NHWC input: both give the same model.
    assert_eq!(
        std::fs::read(&oa).expect("a"),
        std::fs::read(&ob).expect("b")
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    let sqnr = r["output_sqnr_db"].as_f64().unwrap_or(0.0);
    assert!(sqnr > 20.0, "output SQNR {sqnr} dB");
    let (ok, out, _) = mote(&["inspect", oa.to_str().unwrap_or_default()]);
    assert!(ok && out.contains("FULLY_CONNECTED"), "{out}");
}

#[test]
fn convert_and_inspect_qdq_onnx() {
    let q = fixtures().join("digits_qdq.onnx");
    let out_path = tmp("digits_qdq.mote");
    let (ok, out, err) = mote(&[
        "convert",
        q.to_str().unwrap_or_default(),
        "-o",
        out_path.to_str().unwrap_or_default(),
    ]);
    assert!(ok, "{out}\n{err}");
    let (ok, out, err) = mote(&["inspect", q.to_str().unwrap_or_default()]);
    assert!(
        ok && out.contains("CONV_2D") && out.contains("SOFTMAX"),
        "{out}\n{err}"
    );
    // A float ONNX model cannot be converted without calibration.
    let f = fixtures().join("digits.onnx");
    let (ok, _, err) = mote(&["convert", f.to_str().unwrap_or_default(), "-o", "/dev/null"]);
    assert!(!ok && err.contains("mote quantize"), "{err}");
}
