//! The ONNX importer: a `.onnx` model → [`Graph`], in mote's NHWC layout.
//!
//! The protobuf is parsed with the message types of the `onnx-ir` crate (generated from the
//! published `onnx.proto`); the conversion into mote's IR is this module's own, so that every
//! operator, attribute and layout decision is checked here and hostile input gives `Err`,
//! never a panic. Opsets 13–21 of the default domain are accepted.
//!
//! # Layout
//!
//! ONNX models are NCHW; the IR and the runtime are NHWC (TFLite's layout). Every rank-4
//! activation is converted: **the imported model's rank-4 inputs and outputs are NHWC**
//! (`[N, C, H, W]` in the ONNX model becomes `[N, H, W, C]` in the `.mote` file), so data for
//! it must be transposed (`mote quantize` does this for `.npy` calibration data whose shape is
//! the ONNX input's NCHW shape; see `pipeline::nchw_to_nhwc_samples`). Activations of
//! other ranks keep their ONNX layout. Constants are permuted where consumed: conv filters
//! OIHW → OHWI, depthwise filters `[C·M, 1, kh, kw]` → `[1, kh, kw, C·M]`, per-channel
//! constants of element-wise ops `[C, 1, 1]` → `[C]`; the axes of Concat, Softmax, Pad and
//! Flatten are remapped. A Flatten/Reshape of an NCHW tensor with spatial size > 1 followed
//! by Gemm/MatMul gets the NCHW→NHWC row permutation folded into the weights, so results
//! match; any other layout-changing Reshape of a rank-4 tensor is refused (the IR has no
//! transpose).
//!
//! # Operators
//!
//! Float: Conv (2-D; groups 1 or depthwise; pads, strides, dilations, auto_pad), Gemm, MatMul
//! (constant B), BatchNormalization (folded into a preceding Conv/Gemm/MatMul, else Mul+Add),
//! Relu, Clip (0..6 → RELU6, 0..∞ → RELU), MaxPool, AveragePool, GlobalAveragePool,
//! GlobalMaxPool, Add, Sub, Mul, Concat, Reshape, Flatten, Squeeze, Unsqueeze, Softmax,
//! Sigmoid, Tanh, Pad (constant mode), Identity, Dropout, Constant. Relu/Clip directly after
//! Conv/Gemm/MatMul/Add/Sub/Mul is fused into it.
//!
//! Quantized (QDQ, as written by onnxruntime's `quantize_static`): QuantizeLinear and
//! DequantizeLinear pairs give the int8 scale and zero point of the tensors around the float
//! operators; DequantizeLinear of constants gives int8 weights (per-tensor or per-channel) and
//! int32 biases; QLinearConv and QLinearMatMul are read the same way. uint8 tensors become int8
//! exactly: `q − 128` with zero point `zp − 128` (same scale). The result is an int8 graph as
//! from an int8 TFLite model. Where TFLite's int8 kernels need other parameters than the QDQ
//! model gives, a QUANTIZE (int8 → int8) node is inserted: before Concat inputs whose scale
//! differs from the output's, and after Sigmoid/Softmax/Tanh, which write TFLite's fixed output
//! scales (1/256, 1/128). Reshape, MaxPool and Pad outputs without their own QuantizeLinear keep
//! their input's parameters.
//!
//! # Why not `onnx_ir::OnnxGraphBuilder`
//!
//! Only `onnx-ir`'s protobuf message types are used. Its graph pipeline (type inference,
//! simplification, its own node configs) would still leave every NCHW→NHWC and QDQ decision to
//! this module, and the importer must give an error, never a panic, on any bytes (checked by
//! the `onnx_import` fuzz target and `quantize/tests/onnx_import.rs`), which is easiest to
//! guarantee over the plain decoded messages.
//!
//! Every other operator, attribute value or domain is refused by name
//! ([`CompileError::Unsupported`] naming the ONNX op type and node index).

mod builder;
mod layout;
mod ops;
mod proto;
mod qdq;

use std::path::Path;

use onnx_ir::Message;

use crate::error::CompileError;
use crate::ir::Graph;

pub use builder::import_model;
pub use layout::permute;
pub use proto::MAX_ELEMENTS;

/// Lowest and highest default-domain opset accepted.
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=21;

/// Whether `bytes` looks like an ONNX model (a protobuf `ModelProto` starting with its
/// `ir_version` field), as opposed to a TFLite flatbuffer or a `.mote` file.
pub fn looks_like_onnx(bytes: &[u8]) -> bool {
    // Field 1 (ir_version, varint) → tag 0x08.
    bytes.first() == Some(&0x08) && bytes.get(4..8) != Some(b"TFL3")
}

/// Imports an ONNX model from the bytes of a whole `.onnx` file.
///
/// Errors: [`CompileError::Malformed`] for bytes that are not a well-formed ONNX model,
/// [`CompileError::Unsupported`] for operators, attributes, opsets or types the importer does
/// not handle (by name and node index), [`CompileError::InvalidOp`] for operators whose
/// inputs do not fit them, [`CompileError::Limit`] for absurd sizes.
pub fn import(bytes: &[u8]) -> Result<Graph, CompileError> {
    let model = onnx_ir::ModelProto::parse_from_bytes(bytes).map_err(|e| {
        malformed(format!(
            "protobuf decoding failed: {e} (not an ONNX model?)"
        ))
    })?;
    import_model(&model)
}

/// Reads and imports a `.onnx` file.
pub fn import_file(path: impl AsRef<Path>) -> Result<Graph, CompileError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| CompileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    import(&bytes)
}

/// A malformed-model error.
fn malformed(what: impl Into<String>) -> CompileError {
    CompileError::Malformed {
        format: "ONNX",
        what: what.into(),
    }
}

/// Imports an int8 (QDQ) ONNX model and compiles it to a `.mote` file. A float ONNX model is
/// refused with a pointer to `mote quantize`.
pub fn compile(
    bytes: &[u8],
    options: crate::compile::CompileOptions,
) -> Result<crate::compile::Compiled, CompileError> {
    let g = import(bytes)?;
    let float_input = g
        .inputs
        .iter()
        .any(|&i| g.tensors[i].dtype == crate::ir::DataType::Float32);
    if float_input {
        return Err(CompileError::Unsupported {
            index: 0,
            op: "ONNX float model".into(),
            reason: "the runtime executes int8 models: quantize it with `mote quantize MODEL.onnx \
                     --calibration DATA -o OUT.mote`, or give an int8 QDQ model"
                .into(),
        });
    }
    crate::compile::compile_opts(g, options)
}
