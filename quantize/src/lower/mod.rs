//! Lowering: IR nodes → runtime operators with precomputed parameters.
//!
//! Each family module (`conv`, `depthwise`, ... mirroring `mote_runtime::ops`) exposes
//! `lower(ctx: &mut LowerCtx, node: &Node) -> Result<LoweredOp, CompileError>`. It checks that the
//! node is a variant the runtime implements (refusing anything else by op name and index),
//! computes everything TFLM computes at `Prepare` time (multipliers, shifts, clamp ranges, tables)
//! and returns the runtime parameter struct as bytes. Constants that only the kernel needs
//! (per-channel multipliers, shifts, tables) go into the constant pool with [`LowerCtx::add_const`].

pub mod activation;
pub mod arith;
pub mod concat;
pub mod conv;
pub mod depthwise;
pub mod float;
pub mod fully_connected;
pub mod int16;
pub mod pad;
pub mod pool;
pub mod quant_math;
pub mod quantize;
pub mod reduce;
pub mod schemes;
pub mod shape;
pub mod softmax;
pub mod sparse;

use mote_runtime::format::{align_up, OpCost};
use mote_runtime::OpKind;

use crate::error::CompileError;
use crate::ir::{Graph, Node, Operator, Tensor, TensorId};

/// One runtime operator produced from one IR node.
#[derive(Debug, Clone, PartialEq)]
pub struct LoweredOp {
    /// Runtime kind.
    pub kind: OpKind,
    /// Input tensors (graph ids; `None` for an absent optional input).
    pub inputs: Vec<Option<TensorId>>,
    /// Output tensors.
    pub outputs: Vec<TensorId>,
    /// The runtime parameter struct, as bytes (`bytemuck::bytes_of`).
    pub params: Vec<u8>,
    /// Scratch bytes the op needs in the arena.
    pub scratch_bytes: usize,
    /// MACs and bytes moved.
    pub cost: OpCost,
}

/// The constant section being built: 16-byte aligned blobs.
#[derive(Debug, Clone, Default)]
pub struct ConstPool {
    bytes: Vec<u8>,
}

impl ConstPool {
    /// Appends `data` at the next 16-byte boundary and returns its offset.
    pub fn add(&mut self, data: &[u8]) -> Result<u32, CompileError> {
        let offset = align_up(self.bytes.len());
        self.bytes.resize(offset, 0);
        self.bytes.extend_from_slice(data);
        u32::try_from(offset).map_err(|_| CompileError::Limit("constants exceed 4 GiB".to_string()))
    }
    /// The pool's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// Takes the bytes out.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// What a family's `lower` function works with.
pub struct LowerCtx<'g> {
    /// The graph being lowered (family code may add tensors, e.g. repacked weights).
    pub graph: &'g mut Graph,
    /// Index of the node being lowered (for error messages).
    pub index: usize,
    /// Constant pool for kernel-only constants.
    pub consts: &'g mut ConstPool,
    /// Also store matrix weights packed for the host SIMD kernels
    /// ([`crate::compile::WeightLayout::HostSimd`]).
    pub pack_weights: bool,
}

impl LowerCtx<'_> {
    /// Tensor `id`.
    pub fn tensor(&self, id: TensorId) -> &Tensor {
        &self.graph.tensors[id]
    }

    /// Input `k` of `node`, which must be present.
    pub fn input(&self, node: &Node, k: usize) -> Result<TensorId, CompileError> {
        node.inputs
            .get(k)
            .copied()
            .flatten()
            .ok_or_else(|| self.invalid(node, format!("input {k} is missing")))
    }

    /// Output `k` of `node`.
    pub fn output(&self, node: &Node, k: usize) -> Result<TensorId, CompileError> {
        node.outputs
            .get(k)
            .copied()
            .ok_or_else(|| self.invalid(node, format!("output {k} is missing")))
    }

    /// Adds a kernel-only constant (e.g. per-channel multipliers) and returns its offset.
    pub fn add_const(&mut self, data: &[u8]) -> Result<u32, CompileError> {
        self.consts.add(data)
    }

    /// Adds an `i32` array to the constant pool.
    pub fn add_i32s(&mut self, data: &[i32]) -> Result<u32, CompileError> {
        self.consts.add(bytemuck::cast_slice(data))
    }

    /// Adds a new tensor to the graph (e.g. weights in another layout) and returns its id.
    pub fn add_tensor(&mut self, t: Tensor) -> TensorId {
        self.graph.tensors.push(t);
        self.graph.tensors.len() - 1
    }

    /// An "unsupported variant" error for `node`.
    pub fn unsupported(&self, node: &Node, reason: impl Into<String>) -> CompileError {
        CompileError::Unsupported {
            index: self.index,
            op: node.op.name().to_string(),
            reason: reason.into(),
        }
    }

    /// An "invalid op" error for `node`.
    pub fn invalid(&self, node: &Node, what: impl Into<String>) -> CompileError {
        CompileError::InvalidOp {
            index: self.index,
            op: node.op.name().to_string(),
            what: what.into(),
        }
    }
}

/// Lowers one node with its family's rules.
pub fn lower_node(ctx: &mut LowerCtx, node: &Node) -> Result<LoweredOp, CompileError> {
    // float32 activations (float32 or float16 weights).
    if let Some(lowered) = float::lower(ctx, node) {
        return lowered;
    }
    // Packed int4 weights and 16x8 variants of the MAC families.
    if let Some(lowered) = schemes::lower(ctx, node) {
        return lowered;
    }
    // Element-wise ops and SOFTMAX with int16 activations.
    if let Some(lowered) = int16::lower(ctx, node) {
        return lowered;
    }
    match &node.op {
        Operator::Conv2d(_) => conv::lower(ctx, node),
        Operator::DepthwiseConv2d(_) => depthwise::lower(ctx, node),
        Operator::FullyConnected { .. } => fully_connected::lower(ctx, node),
        Operator::AveragePool2d(_) | Operator::MaxPool2d(_) => pool::lower(ctx, node),
        Operator::Add { .. } | Operator::Sub { .. } | Operator::Mul { .. } => {
            arith::lower(ctx, node)
        }
        Operator::Reshape | Operator::Squeeze => shape::lower(ctx, node),
        Operator::Softmax { .. } => softmax::lower(ctx, node),
        Operator::Logistic | Operator::Tanh | Operator::Relu | Operator::Relu6 => {
            activation::lower(ctx, node)
        }
        Operator::Quantize | Operator::Dequantize => quantize::lower(ctx, node),
        Operator::Concatenation { .. } => concat::lower(ctx, node),
        Operator::Pad => pad::lower(ctx, node),
        Operator::Mean { .. } => reduce::lower(ctx, node),
        Operator::Unsupported { .. } => Err(ctx.unsupported(node, "no runtime kernel")),
    }
}
