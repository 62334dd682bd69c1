//! Quantized ONNX (QDQ) models from onnxruntime's `quantize_static` (per-tensor and
//! per-channel weights; uint8 and int8 activations; fixtures by `tools/fixtures/onnx_cases.py`)
//! → mote's int8 IR → `.mote` → the mote runtime, against onnxruntime's outputs.
//!
//! onnxruntime requantizes in float (round half to even) where TFLite/mote use fixed-point
//! multipliers (and TFLite's int8 LOGISTIC is a fixed-point approximation written at scale
//! 1/256, requantized here to the model's output scale), so values may differ by one step of
//! a layer's scale (1 LSB), and such a step grows through later layers with gain > 1 (a
//! sigmoid after a conv turns one input step into about two output steps). Tolerance: every
//! output within [`MAX_LSB`] steps of onnxruntime's, and mote's output SQNR against the float
//! model at most [`MAX_SQNR_LOSS_DB`] below onnxruntime's own int8 SQNR (so mote's int8 result
//! is about as faithful as onnxruntime's; the CNN's 80 output values make the SQNR noisy:
//! mote 38.2 dB vs onnxruntime 40.0 dB per-channel, 39.2 vs 39.1 per-tensor). Measured (`cargo test -p mote-quantize --test onnx_qdq --
//! --nocapture`): MLP (MatMul/Gemm/Concat) 0–1 % of values differ, max 1 LSB; CNN (conv,
//! depthwise, maxpool, residual add, GAP, Gemm) 24–30 %, max 1 LSB; conv/avgpool/conv/sigmoid
//! 57–61 %, max 5 LSB; operator format (QLinearConv, depthwise QLinearConv, MaxPool, Flatten,
//! QLinearMatMul) 1.6 %, max 1 LSB.
#![cfg(feature = "float")]

use std::path::{Path, PathBuf};

use mote_quantize::compile::compile;
use mote_quantize::fidelity::Int8Runner;
use mote_quantize::ir::DataType;
use mote_quantize::{npy, onnx};

/// Largest accepted difference, in output quantization steps.
const MAX_LSB: f32 = 6.0;
/// Largest accepted loss of output SQNR (vs the float model) against onnxruntime's int8, dB.
const MAX_SQNR_LOSS_DB: f64 = 2.0;

/// SQNR of `q` against `reference`, dB.
fn sqnr(reference: &[f32], q: &[f32]) -> f64 {
    let (mut s, mut n) = (0f64, 0f64);
    for (r, x) in reference.iter().zip(q) {
        s += f64::from(*r) * f64::from(*r);
        n += f64::from(r - x) * f64::from(r - x);
    }
    10.0 * (s / n.max(1e-30)).log10()
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx/qdq")
}

fn read_f32(path: &Path) -> (Vec<f32>, Vec<usize>) {
    let t = npy::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v = t
        .bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (v, t.shape.unwrap_or_default())
}

/// One NCHW sample → NHWC (rank 4), as is otherwise.
fn to_nhwc(v: &[f32], shape: &[usize]) -> Vec<f32> {
    if shape.len() != 4 {
        return v.to_vec();
    }
    let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let (o, _) = onnx::permute(&b, 4, shape, &[0, 2, 3, 1]);
    o.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn from_nhwc(v: &[f32], shape: &[usize]) -> Vec<f32> {
    if shape.len() != 4 {
        return v.to_vec();
    }
    let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let (o, _) = onnx::permute(&b, 4, shape, &[0, 3, 1, 2]);
    o.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Runs `model` on every sample of `inputs` (first axis) with the mote runtime; returns
/// (max LSB difference, values that differ, values) against `want`, and mote's outputs.
pub fn compare(model: &Path, inputs: &Path, want: &Path) -> (f32, usize, usize, Vec<f32>) {
    let g = onnx::import_file(model).unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    let inp = &g.tensors[g.inputs[0]];
    assert_eq!(
        inp.dtype,
        DataType::Int8,
        "the QDQ model's input becomes int8"
    );
    let out = &g.tensors[g.outputs[0]];
    assert_eq!(out.dtype, DataType::Int8);
    let scale = out.quant.as_ref().expect("output quantized").scale();
    let out_shape = out.shape.clone();
    let in_shape = {
        let s = &inp.shape;
        if s.len() == 4 {
            vec![s[0], s[3], s[1], s[2]]
        } else {
            s.clone()
        }
    };
    let compiled = compile(g.clone()).unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    let mut runner = Int8Runner::new(&g, &compiled).expect("runner");
    let (x, _) = read_f32(inputs);
    let (y, _) = read_f32(want);
    let n_in: usize = in_shape.iter().product();
    let n_out: usize = out_shape.iter().product();
    let (mut worst, mut diff, mut total) = (0f32, 0, 0);
    let mut all = Vec::new();
    for (xi, yi) in x.chunks_exact(n_in).zip(y.chunks_exact(n_out)) {
        let (_, outs) = runner
            .run_layers(&[to_nhwc(xi, &in_shape)], false)
            .expect("run");
        let got = from_nhwc(&outs[0], &out_shape);
        all.extend_from_slice(&got);
        for (a, b) in got.iter().zip(yi) {
            let lsb = ((a - b) / scale).abs();
            worst = worst.max(lsb);
            diff += usize::from(lsb > 0.5);
            total += 1;
        }
    }
    (worst, diff, total, all)
}

#[test]
fn qdq_models_match_onnxruntime() {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir().join("cases.json")).expect("cases.json"))
            .expect("json");
    let cases = manifest["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 16);
    let mut failures = Vec::new();
    for c in cases {
        let name = c["name"].as_str().unwrap_or_default();
        let d = dir();
        let want = d.join(c["output"].as_str().unwrap_or_default());
        let (worst, diff, total, got) = compare(
            &d.join(format!("{name}.onnx")),
            &d.join(c["inputs"][0].as_str().unwrap_or_default()),
            &want,
        );
        let (reference, _) = read_f32(&d.join(c["float_output"].as_str().unwrap_or_default()));
        let (ort, _) = read_f32(&want);
        let (s_mote, s_ort) = (sqnr(&reference, &got), sqnr(&reference, &ort));
        let rate = diff as f64 / total as f64;
        println!(
            "{name:12} max {worst:.0} LSB, {diff}/{total} values differ ({:.1} %); SQNR vs \
             float: mote {s_mote:.1} dB, onnxruntime {s_ort:.1} dB",
            100.0 * rate
        );
        if worst > MAX_LSB + 0.01 || s_mote < s_ort - MAX_SQNR_LOSS_DB {
            failures.push(format!(
                "{name}: max {worst} LSB, SQNR {s_mote:.1} dB vs onnxruntime {s_ort:.1} dB"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn uint8_shift_is_exact() {
    // onnxruntime's uint8- and int8-activation versions of each model compute the same values
    // (the zero points differ by 128); mote's import of the uint8 one (q − 128, zp − 128)
    // must then give bit-identical outputs to its import of the int8 one.
    let d = dir();
    for m in [
        "cnn_pt", "cnn_pc", "mlp_pt", "mlp_pc", "pool_pt", "pool_pc", "qop_pt", "qop_pc",
    ] {
        let model = m.split('_').next().unwrap_or_default();
        let input = d.join(format!("{model}.in0.npy"));
        let (ou, _) = read_f32(&d.join(format!("{m}_u8.out.npy")));
        let (os, _) = read_f32(&d.join(format!("{m}_s8.out.npy")));
        assert_eq!(ou, os, "{m}: onnxruntime's uint8 and int8 versions differ");
        let (_, _, _, u) = compare(
            &d.join(format!("{m}_u8.onnx")),
            &input,
            &d.join(format!("{m}_u8.out.npy")),
        );
        let (_, _, _, s) = compare(
            &d.join(format!("{m}_s8.onnx")),
            &input,
            &d.join(format!("{m}_s8.out.npy")),
        );
        assert_eq!(u, s, "{m}: mote's uint8 and int8 imports differ");
    }
}
