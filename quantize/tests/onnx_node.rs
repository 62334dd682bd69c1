//! ONNX node test cases (regenerated from the `onnx` package's case definitions by
//! `tools/fixtures/onnx_cases.py`) through the ONNX importer and the float executor, against
//! onnxruntime's outputs.
//!
//! Tolerance: |mote − onnxruntime| ≤ 1e-4 · (1 + |onnxruntime|) per element (float32 sums in
//! another order). Cases of operators or attributes mote does not import must be refused with
//! an `Unsupported` error naming the operator; the expected refusals are listed in
//! [`REFUSED`] with a piece of their message, and every other case must import and match.
#![cfg(feature = "float")]

use std::path::{Path, PathBuf};

use mote_quantize::float::{self, FloatExecutor};
use mote_quantize::ir::Graph;
use mote_quantize::onnx;
use mote_quantize::{npy, CompileError};

/// Absolute part of the tolerance, relative to 1 + |expected|.
const TOL: f32 = 1e-4;

/// Cases mote refuses, with a piece of the error message.
const REFUSED: &[(&str, &str)] = &[
    ("test_leakyrelu", "(LeakyRelu) is not supported"),
    ("test_leakyrelu_default", "(LeakyRelu) is not supported"),
    ("test_leakyrelu_example", "(LeakyRelu) is not supported"),
    (
        "test_gemm_all_attributes",
        "(Gemm) is not supported: transA = 1",
    ),
    (
        "test_gemm_default_matrix_bias",
        "(Gemm) is not supported: bias C of shape [3, 4]: only [N], [1, N] or a",
    ),
    (
        "test_gemm_transposeA",
        "(Gemm) is not supported: transA = 1",
    ),
    (
        "test_matmul_3d",
        "(MatMul) is not supported: B of shape [2, 4, 3]: only a constant rank-",
    ),
    (
        "test_matmul_4d",
        "(MatMul) is not supported: B of shape [1, 2, 4, 3]: only a constant ra",
    ),
    (
        "test_matmul_bcast",
        "(MatMul) is not supported: B of shape [1, 2, 4, 2]: only a constant ra",
    ),
    (
        "test_matmul_1d_3d",
        "(MatMul) is not supported: B of shape [2, 4, 1]: only a constant rank-",
    ),
    (
        "test_matmul_4d_1d",
        "(MatMul) is not supported: B of shape [3]: only a constant rank-2 B is",
    ),
    (
        "test_matmul_1d_1d",
        "(MatMul) is not supported: B of shape [3]: only a constant rank-2 B is",
    ),
    (
        "test_clip_example",
        "(Clip) is not supported: Clip to [-1, 1]: only [0, 6] (RELU6) and [0, ",
    ),
    (
        "test_clip",
        "(Clip) is not supported: Clip to [-1, 1]: only [0, 6] (RELU6) and [0, ",
    ),
    (
        "test_clip_inbounds",
        "(Clip) is not supported: Clip to [-5, 5]: only [0, 6] (RELU6) and [0, ",
    ),
    (
        "test_clip_outbounds",
        "(Clip) is not supported: Clip to [-5, 5]: only [0, 6] (RELU6) and [0, ",
    ),
    (
        "test_clip_splitbounds",
        "(Clip) is not supported: Clip to [-5, 5]: only [0, 6] (RELU6) and [0, ",
    ),
    (
        "test_clip_min_greater_than_max",
        "(Clip) is not supported: Clip to [2, 1]: only [0, 6] (RELU6) and [0, ∞",
    ),
    (
        "test_clip_default_inbounds",
        "(Clip) is not supported: Clip to [-inf, inf]: only [0, 6] (RELU6) and ",
    ),
    (
        "test_maxpool_1d_default",
        "(MaxPool) is not supported: only 2-D pools (rank-4 input) are supporte",
    ),
    (
        "test_maxpool_2d_ceil",
        "(MaxPool) is not supported: ceil_mode = 1 where it changes the output ",
    ),
    (
        "test_maxpool_2d_ceil_output_size_reduce_by_one",
        "(MaxPool) is not supported: ceil_mode = 1 where it changes the output ",
    ),
    (
        "test_maxpool_2d_dilations",
        "(MaxPool) is not supported: dilations [2, 2]",
    ),
    (
        "test_maxpool_3d_dilations",
        "(MaxPool) is not supported: only 2-D pools (rank-4 input) are supporte",
    ),
    (
        "test_maxpool_3d_dilations_use_ref_impl",
        "(MaxPool) is not supported: only 2-D pools (rank-4 input) are supporte",
    ),
    (
        "test_maxpool_with_argmax_2d_precomputed_strides",
        "(MaxPool) is not supported: storage_order = 1",
    ),
    (
        "test_averagepool_1d_default",
        "(AveragePool) is not supported: only 2-D pools (rank-4 input) are supp",
    ),
    (
        "test_averagepool_2d_ceil",
        "(AveragePool) is not supported: ceil_mode = 1 where it changes the out",
    ),
    (
        "test_averagepool_2d_ceil_last_window_starts_on_pad",
        "(AveragePool) is not supported: ceil_mode = 1 where it changes the out",
    ),
    (
        "test_averagepool_2d_dilations",
        "(AveragePool) is not supported: dilations [2, 2]",
    ),
    (
        "test_averagepool_2d_precomputed_pads_count_include_pad",
        "(AveragePool) is not supported: count_include_pad = 1 with padding",
    ),
    (
        "test_averagepool_3d_dilations_small",
        "(AveragePool) is not supported: only 2-D pools (rank-4 input) are supp",
    ),
    (
        "test_reshape_extended_dims",
        "(Reshape) is not supported: reshaping [2, 3, 4] to the NCHW shape [2, ",
    ),
    (
        "test_reshape_negative_extended_dims",
        "(Reshape) is not supported: reshaping [2, 3, 4] to the NCHW shape [1, ",
    ),
    (
        "test_reshape_zero_dim",
        "(Reshape) is not supported: reshaping [2, 3, 4] to the NCHW shape [2, ",
    ),
    (
        "test_reshape_zero_and_negative_dim",
        "(Reshape) is not supported: reshaping [2, 3, 4] to the NCHW shape [2, ",
    ),
    (
        "test_flatten_axis0",
        "(Flatten) is not supported: reshaping the NCHW tensor [2, 3, 4, 5] to ",
    ),
    (
        "test_flatten_axis1",
        "(graph output) is not supported: output \"b\" is an NCHW tensor flattene",
    ),
    (
        "test_flatten_axis2",
        "(Flatten) is not supported: reshaping the NCHW tensor [2, 3, 4, 5] to ",
    ),
    (
        "test_flatten_axis3",
        "(Flatten) is not supported: reshaping the NCHW tensor [2, 3, 4, 5] to ",
    ),
    (
        "test_flatten_negative_axis4",
        "(Flatten) is not supported: reshaping the NCHW tensor [2, 3, 4, 5] to ",
    ),
    (
        "test_flatten_negative_axis3",
        "(graph output) is not supported: output \"b\" is an NCHW tensor flattene",
    ),
    (
        "test_flatten_negative_axis2",
        "(Flatten) is not supported: reshaping the NCHW tensor [2, 3, 4, 5] to ",
    ),
    (
        "test_flatten_negative_axis1",
        "(Flatten) is not supported: reshaping the NCHW tensor [2, 3, 4, 5] to ",
    ),
    (
        "test_flatten_default_axis",
        "(graph output) is not supported: output \"b\" is an NCHW tensor flattene",
    ),
    (
        "test_squeeze",
        "(Squeeze) is not supported: reshaping the NCHW tensor [1, 3, 4, 5] to ",
    ),
    (
        "test_squeeze_negative_axes",
        "(Squeeze) is not supported: reshaping the NCHW tensor [1, 3, 1, 5] to ",
    ),
    (
        "test_unsqueeze_negative_axes",
        "(Unsqueeze) is not supported: reshaping the NCHW tensor [1, 3, 1, 5] t",
    ),
    (
        "test_unsqueeze_axis_0",
        "(Unsqueeze) is not supported: reshaping [3, 4, 5] to the NCHW shape [1",
    ),
    (
        "test_unsqueeze_axis_2",
        "(Unsqueeze) is not supported: reshaping [3, 4, 5] to the NCHW shape [3",
    ),
    (
        "test_softmax_axis_0",
        "(Softmax) is not supported: softmax over axis 0 of a rank-3 tensor: on",
    ),
    (
        "test_softmax_axis_1",
        "(Softmax) is not supported: softmax over axis 1 of a rank-3 tensor: on",
    ),
    (
        "test_batchnorm_example_training_mode",
        "(BatchNormalization) is not supported: training_mode = 1",
    ),
    (
        "test_batchnorm_epsilon_training_mode",
        "(BatchNormalization) is not supported: training_mode = 1",
    ),
    (
        "test_training_dropout",
        "(Dropout) is not supported: training_mode = true",
    ),
    (
        "test_training_dropout_default",
        "(Dropout) is not supported: training_mode = true",
    ),
    (
        "test_training_dropout_default_mask",
        "(Dropout) is not supported: training_mode = true",
    ),
    (
        "test_training_dropout_zero_ratio",
        "(Dropout) is not supported: training_mode = true",
    ),
    (
        "test_training_dropout_zero_ratio_mask",
        "(Dropout) is not supported: training_mode = true",
    ),
    (
        "test_training_dropout_mask",
        "(Dropout) is not supported: training_mode = true",
    ),
    (
        "test_convtranspose",
        "(ConvTranspose) is not supported: no converter",
    ),
    (
        "test_convtranspose_1d",
        "(ConvTranspose) is not supported: no converter",
    ),
    (
        "test_convtranspose_3d",
        "(ConvTranspose) is not supported: no converter",
    ),
    (
        "test_convtranspose_output_shape",
        "(ConvTranspose) is not supported: no converter",
    ),
    (
        "test_convtranspose_pad",
        "(ConvTranspose) is not supported: no converter",
    ),
    (
        "test_convtranspose_kernel_shape",
        "(ConvTranspose) is not supported: no converter",
    ),
    (
        "test_convtranspose_autopad_same",
        "(ConvTranspose) is not supported: no converter",
    ),
    (
        "test_convtranspose_dilations",
        "(ConvTranspose) is not supported: no converter",
    ),
    (
        "test_convtranspose_group_2",
        "(ConvTranspose) is not supported: no converter",
    ),
    (
        "test_convtranspose_group_2_image_3",
        "(ConvTranspose) is not supported: no converter",
    ),
    (
        "test_convtranspose_pads",
        "(ConvTranspose) is not supported: no converter",
    ),
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx/node")
}

/// Reads a float32 .npy as (values, shape).
pub fn read_f32(path: &Path) -> (Vec<f32>, Vec<usize>) {
    let t = npy::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(t.descr.as_deref(), Some("<f4"), "{}", path.display());
    let v = t
        .bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (v, t.shape.unwrap_or_default())
}

/// NCHW → NHWC for rank 4, unchanged otherwise.
pub fn to_ir(v: &[f32], shape: &[usize]) -> Vec<f32> {
    if shape.len() != 4 {
        return v.to_vec();
    }
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let (out, _) = onnx::permute(&bytes, 4, shape, &[0, 2, 3, 1]);
    f32s(&out)
}

/// NHWC (IR shape) → NCHW for rank 4, unchanged otherwise.
pub fn from_ir(v: &[f32], ir_shape: &[usize]) -> Vec<f32> {
    if ir_shape.len() != 4 {
        return v.to_vec();
    }
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let (out, _) = onnx::permute(&bytes, 4, ir_shape, &[0, 3, 1, 2]);
    f32s(&out)
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Imports and runs one case; returns the max error over the tolerance scale.
fn run_case(case: &serde_json::Value) -> Result<(f32, String), CompileError> {
    let d = dir();
    let name = case["name"].as_str().unwrap_or_default();
    let g: Graph = onnx::import_file(d.join(format!("{name}.onnx")))?;
    let fg = float::prepare(&g)?;
    let exec = FloatExecutor::new(&fg, float::default_device());
    let inputs: Vec<Vec<f32>> = case["inputs"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|f| {
            let (v, s) = read_f32(&d.join(f.as_str().unwrap_or_default()));
            to_ir(&v, &s)
        })
        .collect();
    let outs = exec.outputs(&inputs)?;
    let (want, wshape) = read_f32(&d.join(case["output"].as_str().unwrap_or_default()));
    let got = from_ir(&outs[0], &fg.tensors[fg.outputs[0]].shape);
    if got.len() != want.len() {
        return Ok((
            f32::INFINITY,
            format!("{} values, expected {} ({wshape:?})", got.len(), want.len()),
        ));
    }
    let mut worst = 0f32;
    let mut at = String::new();
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        let e = (a - b).abs() / (TOL * (1.0 + b.abs()));
        if e > worst || e.is_nan() {
            worst = if e.is_nan() { f32::INFINITY } else { e };
            at = format!("element {i}: mote {a}, onnxruntime {b}");
        }
    }
    Ok((worst, at))
}

#[test]
fn onnx_node_cases_match_onnxruntime() {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir().join("cases.json")).expect("cases.json"))
            .expect("json");
    let cases = manifest["cases"].as_array().expect("cases");
    assert!(cases.len() > 100, "{} cases", cases.len());
    for (name, _) in REFUSED {
        assert!(
            cases.iter().any(|c| c["name"] == *name),
            "REFUSED lists {name}, which is not a case"
        );
    }
    let mut failures = Vec::new();
    let (mut passed, mut refused) = (0, 0);
    let mut worst = (0f32, String::new());
    let mut refused_ops = std::collections::BTreeMap::<String, usize>::new();
    for case in cases {
        let name = case["name"].as_str().unwrap_or_default().to_string();
        let expected_refusal = REFUSED.iter().find(|(n, _)| *n == name).map(|(_, m)| *m);
        match (run_case(case), expected_refusal) {
            (Ok((e, at)), None) => {
                if e <= 1.0 {
                    passed += 1;
                    if e > worst.0 {
                        worst = (e, format!("{name}: {at}"));
                    }
                } else {
                    failures.push(format!("{name}: off by {e:.1}× the tolerance at {at}"));
                }
            }
            (Ok(_), Some(m)) => {
                failures.push(format!("{name}: imported, expected a refusal ({m})"))
            }
            (Err(e), Some(m)) => {
                let msg = e.to_string();
                if matches!(e, CompileError::Unsupported { .. }) && msg.contains(m) {
                    refused += 1;
                } else {
                    failures.push(format!("{name}: error {msg:?} does not contain {m:?}"));
                }
            }
            (Err(e), None) => {
                *refused_ops.entry(e.to_string()).or_default() += 1;
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    println!(
        "{passed} cases match onnxruntime, {refused} refused as expected; worst error \
         {:.3}× the tolerance ({})",
        worst.0, worst.1
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
