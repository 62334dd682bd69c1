//! The float executor against LiteRT (builtin reference kernels) on the float models, and the
//! int8 PTQ pipeline end to end. Needs `--features float`.
#![cfg(feature = "float")]

use std::path::PathBuf;

use mote_quantize::calibrate::ObserverKind;
use mote_quantize::float::{default_device, prepare, FloatExecutor};
use mote_quantize::pipeline::quantize_graph;
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
        Some(f) => root().join("../../shared/models").join(f),
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

/// Max |mote − LiteRT| relative to max |LiteRT| over both cases.
fn check(name: &str, tol: f32) {
    let dir = root().join("tests/fixtures/float");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    let Some(path) = model_path(meta["model"].as_str().unwrap()) else {
        return;
    };
    let g = tflite::import_file(&path).unwrap();
    let fg = prepare(&g).unwrap();
    let exec = FloatExecutor::new(&fg, default_device());
    let xs = f32s(&dir.join(format!("{name}_inputs.bin")));
    let ys = f32s(&dir.join(format!("{name}_outputs.bin")));
    let (ni, no) = (xs.len() / 2, ys.len() / 2);
    let mut worst = 0f32;
    for c in 0..2 {
        let out = exec.outputs(&[xs[c * ni..(c + 1) * ni].to_vec()]).unwrap();
        let want = &ys[c * no..(c + 1) * no];
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        for (a, b) in out[0].iter().zip(want) {
            worst = worst.max((a - b).abs() / scale);
        }
    }
    eprintln!("{name}: max relative difference to LiteRT {worst:.2e}");
    assert!(worst <= tol, "{name}: {worst} > {tol}");
}

#[test]
fn hello_world_matches_litert() {
    check("hello_world_float", 1e-5);
}

#[test]
fn resnet_matches_litert() {
    check("pretrainedResnet", 1e-4);
}

#[test]
fn ad01_matches_litert() {
    check("ad01_fp32", 1e-5);
}

#[test]
fn digits_matches_litert() {
    check("digits_cnn_float", 1e-5);
}

#[test]
fn kws_hybrid_close_to_litert() {
    // LiteRT runs this hybrid model with dynamic int8 quantization of the activations, so it is
    // not a pure float reference: only closeness is checked.
    check("kws_ref_model_float32", 5e-2);
}

#[test]
fn digits_int8_ptq_end_to_end() {
    let a = root().join("assets");
    let g = tflite::import_file(a.join("digits_cnn_float.tflite")).unwrap();
    let x = f32s(&a.join("digits_test_f32.bin"));
    let samples: Vec<Vec<Vec<f32>>> = x.chunks_exact(64).map(|c| vec![c.to_vec()]).collect();
    let (cal, held) = samples.split_at(100);
    let q = quantize_graph(&g, cal, held, ObserverKind::MinMax, false).unwrap();
    eprintln!("{}", mote_quantize::fidelity::render(&q.report));
    assert!(
        q.report.top1_agreement >= 0.97,
        "{:?}",
        q.report.top1_agreement
    );
    assert!(
        q.report.output_sqnr_db > 15.0,
        "{}",
        q.report.output_sqnr_db
    );
    assert_eq!(q.report.layers.len(), g.nodes.len());
}
