//! End to end on a real labelled task: the project's digits CNN exported to ONNX (NCHW, built
//! by `tools/fixtures/onnx_cases.py` from the float TFLite model's weights) → mote.
//!
//! - float: the ONNX import runs in the float executor exactly like the TFLite float import;
//! - int8 by mote's PTQ (`pipeline::quantize_graph`, the path of `mote quantize`): the same
//!   accuracy on the 360 held-out images as quantizing the float TFLite model;
//! - int8 by onnxruntime's `quantize_static` (QDQ): imported, compiled and run by mote, its
//!   accuracy and outputs against onnxruntime's.
#![cfg(feature = "float")]

use std::path::{Path, PathBuf};

use mote_quantize::calibrate::ObserverKind;
use mote_quantize::compile::compile;
use mote_quantize::fidelity::{argmax, Int8Runner};
use mote_quantize::float::{self, FloatExecutor};
use mote_quantize::ir::Graph;
use mote_quantize::pipeline::{quantize_graph, Sample};
use mote_quantize::{npy, onnx, tflite};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn f32_file(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .expect("read")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The 360 test images (8×8×1: NCHW and NHWC hold the same bytes since C = 1) and labels.
fn test_set() -> (Vec<Sample>, Vec<u8>) {
    let x = f32_file(&root().join("assets/digits_test_f32.bin"));
    let labels = std::fs::read(root().join("assets/digits_test_labels.bin")).expect("labels");
    (
        x.chunks_exact(64).map(|c| vec![c.to_vec()]).collect(),
        labels,
    )
}

/// The first 200 training images, pixel / 16.
fn calibration() -> Vec<Sample> {
    let u = std::fs::read(root().join("assets/digits_train_u8.bin")).expect("train");
    u.chunks_exact(64)
        .take(200)
        .map(|c| vec![c.iter().map(|&p| f32::from(p) / 16.0).collect()])
        .collect()
}

fn float_outputs(g: &Graph, xs: &[Sample]) -> Vec<Vec<f32>> {
    let fg = float::prepare(g).expect("prepare");
    let exec = FloatExecutor::new(&fg, float::default_device());
    xs.iter()
        .map(|s| exec.outputs(s).expect("run").remove(0))
        .collect()
}

fn accuracy(outs: &[Vec<f32>], labels: &[u8]) -> f64 {
    let hits = outs
        .iter()
        .zip(labels)
        .filter(|(o, l)| argmax(o) == usize::from(**l))
        .count();
    hits as f64 / labels.len() as f64
}

fn int8_outputs(
    g: &Graph,
    compiled: &mote_quantize::compile::Compiled,
    xs: &[Sample],
) -> Vec<Vec<f32>> {
    let mut r = Int8Runner::new(g, compiled).expect("runner");
    xs.iter()
        .map(|s| r.run_layers(s, false).expect("run").1.remove(0))
        .collect()
}

#[test]
fn digits_onnx_float_and_mote_int8_match_the_tflite_path() {
    let (xs, labels) = test_set();
    let og = onnx::import_file(root().join("tests/fixtures/onnx/digits.onnx")).expect("onnx");
    let tg = tflite::import_file(root().join("assets/digits_cnn_float.tflite")).expect("tflite");
    // The importer fuses Relu into the convolutions: one op per TFLite op, plus the RESHAPE
    // of ONNX's Flatten.
    let names = |g: &Graph| {
        g.nodes
            .iter()
            .map(|n| n.op.name().to_string())
            .filter(|n| n != "RESHAPE")
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&og), names(&tg));

    let fo = float_outputs(&og, &xs);
    let ft = float_outputs(&tg, &xs);
    let max_diff = fo
        .iter()
        .flatten()
        .zip(ft.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let (acc_o, acc_t) = (accuracy(&fo, &labels), accuracy(&ft, &labels));
    println!("float: ONNX {acc_o:.4}, TFLite {acc_t:.4}, max |Δ prob| {max_diff:.2e}");
    assert!(max_diff < 1e-5, "float outputs differ by {max_diff}");
    assert_eq!(acc_o, acc_t);

    let cal = calibration();
    let qo = quantize_graph(&og, &cal, &[], ObserverKind::MinMax, false).expect("quantize onnx");
    let qt = quantize_graph(&tg, &cal, &[], ObserverKind::MinMax, false).expect("quantize tflite");
    let io = int8_outputs(&qo.graph, &qo.compiled, &xs);
    let it = int8_outputs(&qt.graph, &qt.compiled, &xs);
    let (ai, at) = (accuracy(&io, &labels), accuracy(&it, &labels));
    let same = io.iter().zip(&it).filter(|(a, b)| a == b).count();
    println!(
        "int8 (mote PTQ, minmax, 200 calibration images): ONNX {ai:.4}, TFLite {at:.4}; \
         identical outputs on {same}/360"
    );
    assert_eq!(
        ai, at,
        "int8 accuracy from ONNX differs from the TFLite path"
    );
    assert!(
        acc_o - ai <= 0.005 + 1e-9,
        "int8 loses {} points",
        100.0 * (acc_o - ai)
    );
}

#[test]
fn digits_qdq_from_onnxruntime_runs_in_mote() {
    let (xs, labels) = test_set();
    let g = onnx::import_file(root().join("tests/fixtures/onnx/digits_qdq.onnx")).expect("qdq");
    let compiled = compile(g.clone()).expect("compile");
    let outs = int8_outputs(&g, &compiled, &xs);
    let ort = npy::read(&root().join("tests/fixtures/onnx/digits_qdq.ort_out.npy")).expect("npy");
    let ort: Vec<f32> = ort
        .bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let scale = g.tensors[g.outputs[0]]
        .quant
        .as_ref()
        .map_or(1.0, |q| q.scale());
    let (mut worst, mut diff, mut far) = (0f32, 0usize, 0usize);
    for (a, b) in outs.iter().flatten().zip(&ort) {
        let l = ((a - b) / scale).abs();
        worst = worst.max(l);
        diff += usize::from(l > 0.5);
        far += usize::from(l > 1.5);
    }
    let ort_rows: Vec<Vec<f32>> = ort.chunks_exact(10).map(<[f32]>::to_vec).collect();
    let (acc, acc_ort) = (accuracy(&outs, &labels), accuracy(&ort_rows, &labels));
    let agree = outs
        .iter()
        .zip(&ort_rows)
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    println!(
        "QDQ digits: mote {acc:.4}, onnxruntime {acc_ort:.4}; top-1 agreement {agree}/360; \
         outputs: {diff}/3600 differ, {far} by more than 1 LSB, max {worst:.0} LSB"
    );
    // The softmax output amplifies logit differences of one step on near-ties: judged by
    // top-1 agreement, accuracy, and the share of outputs within one step.
    assert!(agree >= 357, "top-1 agreement {agree}/360");
    assert!((acc - acc_ort).abs() <= 2.0 / 360.0 + 1e-9);
    assert!(far <= 36, "{far}/3600 outputs more than 1 LSB off");
}
