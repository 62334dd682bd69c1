//! Which operator kernels a build links: per-model op selection for small firmware, like TFLite
//! Micro's `MicroMutableOpResolver`.
//!
//! By default every kernel is linked. A firmware that enables the cargo feature `select-ops`
//! links only the families it also names with `op-*` features, e.g. for the MLPerf Tiny KWS model:
//!
//! ```toml
//! mote-runtime = { version = "0.1", default-features = false, features = [
//!     "select-ops", "op-conv", "op-depthwise", "op-pool", "op-shape", "op-fully-connected",
//!     "op-softmax",
//! ] }
//! ```
//!
//! `mote convert --emit-rust` prints the feature list a model needs. A model that uses a family
//! the build left out is refused by [`crate::Model::from_bytes`] with
//! [`Error::UnsupportedOp`], so `invoke` never reaches a missing kernel. The dispatch in
//! [`super::validate_kind`], [`super::eval_kind`] and [`super::inplace`] is guarded by the
//! constant [`linked`], so the compiler drops every kernel that is not selected.
//!
//! `select-ops` is the one feature that removes code: enable it only in a final binary (a
//! firmware), never in a library other crates depend on.

use super::{OpCtx, OpKind};
use crate::error::Error;
use crate::format::{DType, OpFlags};
use crate::Model;

/// Whether the cargo features link family feature `$f` (always, without `select-ops`).
macro_rules! family {
    ($f:literal) => {
        cfg!(any(not(feature = "select-ops"), feature = $f))
    };
}

/// Whether this build links the kernels of `kind` (its `op-*` family feature).
pub const fn linked(kind: OpKind) -> bool {
    match kind {
        OpKind::Conv2d => family!("op-conv"),
        OpKind::DepthwiseConv2d => family!("op-depthwise"),
        OpKind::FullyConnected => family!("op-fully-connected"),
        OpKind::AveragePool2d | OpKind::MaxPool2d => family!("op-pool"),
        OpKind::Add | OpKind::Sub | OpKind::Mul => family!("op-arith"),
        OpKind::Reshape | OpKind::Squeeze => family!("op-shape"),
        OpKind::Softmax => family!("op-softmax"),
        OpKind::Logistic | OpKind::Tanh | OpKind::Relu | OpKind::Relu6 => {
            family!("op-activation")
        }
        OpKind::Quantize | OpKind::Dequantize => family!("op-quantize"),
        OpKind::Concatenation => family!("op-concat"),
        OpKind::Pad => family!("op-pad"),
        OpKind::Mean => family!("op-mean"),
        OpKind::SparseConv2d | OpKind::SparseFullyConnected => family!("op-sparse"),
    }
}

/// Whether this build links the kernels for int16 tensors (16x8 CONV_2D, DEPTHWISE_CONV_2D,
/// FULLY_CONNECTED, int16 pooling and SOFTMAX output, ...): feature `dtype-int16`.
pub const INT16: bool = family!("dtype-int16");

/// Whether this build links the kernels for packed int4 weights: feature `dtype-int4`.
pub const INT4: bool = family!("dtype-int4");

/// Whether this build links the kernels for float tensors (float32, float16): feature
/// `dtype-float`.
pub const FLOAT: bool = family!("dtype-float");

/// Whether this build links kernels for tensors of `dtype` (int8, uint8, int32 and int64 always).
pub const fn dtype_linked(dtype: DType) -> bool {
    match dtype {
        DType::Int16 => INT16,
        DType::Int4 => INT4,
        DType::Float32 | DType::Float16 => FLOAT,
        DType::Int8 | DType::UInt8 | DType::Int32 | DType::Int64 => true,
    }
}

/// The cargo feature that links kernels for `dtype` (`None`: always linked).
pub const fn dtype_feature(dtype: DType) -> Option<&'static str> {
    match dtype {
        DType::Int16 => Some("dtype-int16"),
        DType::Int4 => Some("dtype-int4"),
        DType::Float32 | DType::Float16 => Some("dtype-float"),
        DType::Int8 | DType::UInt8 | DType::Int32 | DType::Int64 => None,
    }
}

/// Refuses op `ctx` when one of its tensors has a dtype whose kernels this build does not link
/// (called by [`super::validate`], so `eval` never meets such a tensor).
pub(crate) fn check_dtypes(ctx: &OpCtx) -> Result<(), Error> {
    if INT16 && INT4 && FLOAT {
        return Ok(());
    }
    for k in 0..ctx.input_count() {
        if let Some((_, d)) = ctx.input(k)? {
            if d.dtype().is_some_and(|t| !dtype_linked(t)) {
                return Err(not_linked(ctx));
            }
        }
    }
    for k in 0..ctx.desc.output_count as usize {
        let (_, d) = ctx.output(k)?;
        if d.dtype().is_some_and(|t| !dtype_linked(t)) {
            return Err(not_linked(ctx));
        }
    }
    Ok(())
}

/// Whether this build links the fused variants (an ADD epilogue, residual chains: `fused.rs`,
/// `chain.rs`): feature `op-fused`.
pub const FUSED: bool = family!("op-fused");

/// The cargo feature that links the kernels of `kind`.
pub const fn feature(kind: OpKind) -> &'static str {
    match kind {
        OpKind::Conv2d => "op-conv",
        OpKind::DepthwiseConv2d => "op-depthwise",
        OpKind::FullyConnected => "op-fully-connected",
        OpKind::AveragePool2d | OpKind::MaxPool2d => "op-pool",
        OpKind::Add | OpKind::Sub | OpKind::Mul => "op-arith",
        OpKind::Reshape | OpKind::Squeeze => "op-shape",
        OpKind::Softmax => "op-softmax",
        OpKind::Logistic | OpKind::Tanh | OpKind::Relu | OpKind::Relu6 => "op-activation",
        OpKind::Quantize | OpKind::Dequantize => "op-quantize",
        OpKind::Concatenation => "op-concat",
        OpKind::Pad => "op-pad",
        OpKind::Mean => "op-mean",
        OpKind::SparseConv2d | OpKind::SparseFullyConnected => "op-sparse",
    }
}

/// The `op-*` and `dtype-*` features `model` needs, each once, in a fixed order (for `select-ops` builds: what
/// `mote convert --emit-rust` and `mote bench --board` enable). Ops with unknown kinds or flags
/// are skipped (`Model::from_bytes` refuses those anyway).
pub fn required_features(model: &Model) -> impl Iterator<Item = &'static str> {
    let mut need = [false; ALL.len()];
    for (i, desc) in model.ops().iter().enumerate() {
        if let Some(kind) = model.op_kind(i) {
            let f = feature(kind);
            if let Some(k) = ALL.iter().position(|&a| a == f) {
                need[k] = true;
            }
        }
        if OpFlags::from_u32(desc.flags).is_some_and(|f| f.chain || f.epilogue_add) {
            need[ALL.len() - 1] = true;
        }
    }
    let mut dtypes = [false; DTYPES.len()];
    for t in model.tensors() {
        if let Some(f) = t.dtype().and_then(dtype_feature) {
            if let Some(k) = DTYPES.iter().position(|&a| a == f) {
                dtypes[k] = true;
            }
        }
    }
    let dtypes = DTYPES
        .into_iter()
        .zip(dtypes)
        .filter_map(|(f, n)| n.then_some(f));
    ALL.into_iter()
        .zip(need)
        .filter_map(|(f, n)| n.then_some(f))
        .chain(dtypes)
}

/// Every dtype feature.
pub const DTYPES: [&str; 3] = ["dtype-int16", "dtype-int4", "dtype-float"];

/// Every family feature, `op-fused` last.
pub const ALL: [&str; 14] = [
    "op-conv",
    "op-depthwise",
    "op-fully-connected",
    "op-pool",
    "op-arith",
    "op-shape",
    "op-softmax",
    "op-activation",
    "op-quantize",
    "op-concat",
    "op-pad",
    "op-mean",
    "op-sparse",
    "op-fused",
];

/// The error for an op whose kernels this build does not link.
pub fn not_linked(ctx: &OpCtx) -> Error {
    Error::UnsupportedOp {
        op: ctx.index,
        kind: ctx.desc.kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_feature_declared_in_the_manifest() {
        let manifest = include_str!("../../Cargo.toml");
        for v in 0..=u16::MAX {
            if let Some(kind) = OpKind::from_u16(v) {
                let f = feature(kind);
                assert!(ALL.contains(&f), "{f} missing in ALL");
                let declared = manifest
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(f));
                assert!(declared, "feature {f} missing in runtime/Cargo.toml");
                // Without `select-ops` (the test build) every family is linked.
                assert!(linked(kind) || cfg!(feature = "select-ops"));
            }
        }
        for f in DTYPES {
            assert!(
                manifest
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(f)),
                "{f}"
            );
        }
    }
}
