//! Operators: one family per file, each with a portable reference kernel.
//!
//! Every family module exposes
//! - `validate(ctx: &OpCtx) -> Result<(), Error>`: called once by [`crate::Model::from_bytes`];
//!   checks parameters, shapes, dtypes and constant bounds so that `eval` cannot fail or panic, and
//! - `eval(ctx: &OpCtx, mem: OpMem) -> Result<(), Error>`: runs the op on arena memory,
//!
//! plus its parameter struct (`#[repr(C)]`, `Pod`), which the compiler writes into the `.mote` file.

use bytemuck::Pod;

use crate::error::{Error, Location};
use crate::format::{DType, OpDesc, Storage, TensorDesc, NONE};
use crate::model::{cast_slice, sub};

pub mod accumulate;
pub mod activation;
pub mod arith;
pub mod chain;
pub mod concat;
pub mod conv;
pub mod depthwise;
pub mod float;
pub mod float_pointwise;
pub mod fully_connected;
pub mod fused;
pub mod inplace;
pub mod int16;
pub mod int16_elementwise;
pub mod int16_softmax;
pub mod int4;
pub mod pad;
pub mod pool;
pub mod quantize;
pub mod reduce;
pub mod select;
pub mod shape;
pub mod softmax;
pub mod sparse;

/// Operator kinds of the `.mote` format. The numbers are part of the file format: never reuse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum OpKind {
    /// 2-D convolution (TFLite CONV_2D).
    Conv2d = 1,
    /// Depthwise 2-D convolution (DEPTHWISE_CONV_2D).
    DepthwiseConv2d = 2,
    /// Fully connected / dense (FULLY_CONNECTED).
    FullyConnected = 3,
    /// Average pooling (AVERAGE_POOL_2D).
    AveragePool2d = 4,
    /// Max pooling (MAX_POOL_2D).
    MaxPool2d = 5,
    /// Element-wise addition with broadcasting (ADD).
    Add = 6,
    /// Element-wise subtraction with broadcasting (SUB).
    Sub = 7,
    /// Element-wise multiplication with broadcasting (MUL).
    Mul = 8,
    /// Shape change without data change (RESHAPE).
    Reshape = 9,
    /// Removal of size-1 dimensions (SQUEEZE).
    Squeeze = 10,
    /// Softmax over the last dimension (SOFTMAX).
    Softmax = 11,
    /// Logistic sigmoid (LOGISTIC).
    Logistic = 12,
    /// Hyperbolic tangent (TANH).
    Tanh = 13,
    /// max(x, 0) (RELU).
    Relu = 14,
    /// min(max(x, 0), 6) (RELU6).
    Relu6 = 15,
    /// Float → int, or int → int requantization (QUANTIZE).
    Quantize = 16,
    /// Int → float (DEQUANTIZE).
    Dequantize = 17,
    /// Concatenation along one axis (CONCATENATION).
    Concatenation = 18,
    /// Constant padding (PAD, PADV2).
    Pad = 19,
    /// Mean over axes (MEAN).
    Mean = 20,
    /// CONV_2D with N:M sparse int8 weights stored without their zeros (see [`sparse`]).
    SparseConv2d = 40,
    /// FULLY_CONNECTED with N:M sparse int8 weights stored without their zeros (see [`sparse`]).
    SparseFullyConnected = 41,
}

impl OpKind {
    /// Every kind, in numbering order.
    pub const ALL: [OpKind; 22] = [
        OpKind::Conv2d,
        OpKind::DepthwiseConv2d,
        OpKind::FullyConnected,
        OpKind::AveragePool2d,
        OpKind::MaxPool2d,
        OpKind::Add,
        OpKind::Sub,
        OpKind::Mul,
        OpKind::Reshape,
        OpKind::Squeeze,
        OpKind::Softmax,
        OpKind::Logistic,
        OpKind::Tanh,
        OpKind::Relu,
        OpKind::Relu6,
        OpKind::Quantize,
        OpKind::Dequantize,
        OpKind::Concatenation,
        OpKind::Pad,
        OpKind::Mean,
        OpKind::SparseConv2d,
        OpKind::SparseFullyConnected,
    ];

    /// Decodes the on-disk number.
    pub fn from_u16(v: u16) -> Option<OpKind> {
        // A jump on the number rather than a search of `ALL` (this runs for every op invoked).
        Some(match v {
            1 => OpKind::Conv2d,
            2 => OpKind::DepthwiseConv2d,
            3 => OpKind::FullyConnected,
            4 => OpKind::AveragePool2d,
            5 => OpKind::MaxPool2d,
            6 => OpKind::Add,
            7 => OpKind::Sub,
            8 => OpKind::Mul,
            9 => OpKind::Reshape,
            10 => OpKind::Squeeze,
            11 => OpKind::Softmax,
            12 => OpKind::Logistic,
            13 => OpKind::Tanh,
            14 => OpKind::Relu,
            15 => OpKind::Relu6,
            16 => OpKind::Quantize,
            17 => OpKind::Dequantize,
            18 => OpKind::Concatenation,
            19 => OpKind::Pad,
            20 => OpKind::Mean,
            40 => OpKind::SparseConv2d,
            41 => OpKind::SparseFullyConnected,
            _ => return None,
        })
    }

    /// The TFLite builtin name of this kind (`CONV_2D`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            OpKind::Conv2d => "CONV_2D",
            OpKind::DepthwiseConv2d => "DEPTHWISE_CONV_2D",
            OpKind::FullyConnected => "FULLY_CONNECTED",
            OpKind::AveragePool2d => "AVERAGE_POOL_2D",
            OpKind::MaxPool2d => "MAX_POOL_2D",
            OpKind::Add => "ADD",
            OpKind::Sub => "SUB",
            OpKind::Mul => "MUL",
            OpKind::Reshape => "RESHAPE",
            OpKind::Squeeze => "SQUEEZE",
            OpKind::Softmax => "SOFTMAX",
            OpKind::Logistic => "LOGISTIC",
            OpKind::Tanh => "TANH",
            OpKind::Relu => "RELU",
            OpKind::Relu6 => "RELU6",
            OpKind::Quantize => "QUANTIZE",
            OpKind::Dequantize => "DEQUANTIZE",
            OpKind::Concatenation => "CONCATENATION",
            OpKind::Pad => "PAD",
            OpKind::Mean => "MEAN",
            OpKind::SparseConv2d => "SPARSE_CONV_2D",
            OpKind::SparseFullyConnected => "SPARSE_FULLY_CONNECTED",
        }
    }

    /// Whether the kernel is correct when its first input and its output share the same arena bytes.
    pub const fn allows_in_place(self) -> bool {
        matches!(
            self,
            OpKind::Reshape
                | OpKind::Squeeze
                | OpKind::Relu
                | OpKind::Relu6
                | OpKind::Logistic
                | OpKind::Tanh
        )
    }
}

/// What an operator sees of the model: its descriptor, tensors, parameters and the constants.
#[derive(Debug, Clone, Copy)]
pub struct OpCtx<'a> {
    /// Index of the op in execution order.
    pub index: u32,
    /// Decoded kind.
    pub kind: OpKind,
    /// The op's descriptor.
    pub desc: &'a OpDesc,
    /// Tensor indices: inputs, then outputs.
    pub io: &'a [u32],
    /// The op's parameter bytes.
    pub params: &'a [u8],
    /// All tensors of the model.
    pub tensors: &'a [TensorDesc],
    /// The constant section.
    pub consts: &'a [u8],
}

impl<'a> OpCtx<'a> {
    fn at(&self) -> Location {
        Location::Op(self.index)
    }

    /// Number of inputs (including absent optional ones).
    pub fn input_count(&self) -> usize {
        self.desc.input_count as usize
    }

    /// Input `k`: `None` if absent (optional input), else its tensor index and descriptor.
    #[inline(never)]
    pub fn input(&self, k: usize) -> Result<Option<(u32, &'a TensorDesc)>, Error> {
        if k >= self.input_count() {
            return Err(Error::InvalidField {
                at: self.at(),
                field: "input_count",
            });
        }
        let t = *self.io.get(k).ok_or(Error::InvalidField {
            at: self.at(),
            field: "io",
        })?;
        if t == NONE {
            return Ok(None);
        }
        let d = self.tensors.get(t as usize).ok_or(Error::InvalidField {
            at: self.at(),
            field: "tensor index",
        })?;
        Ok(Some((t, d)))
    }

    /// The element type of input `k`, or `None` when it is absent, out of range or of an unknown
    /// type. Cheaper than [`OpCtx::input`] (no error built) for the per-invoke tests of which
    /// kernel family an op belongs to (`int4::applies`, ...). Out of line: a call is as short
    /// as the lookup, at each of those tests.
    #[inline(never)]
    pub fn input_dtype(&self, k: usize) -> Option<DType> {
        if k >= self.input_count() {
            return None;
        }
        self.tensors.get(*self.io.get(k)? as usize)?.dtype()
    }

    /// Input `k`, which must be present.
    #[inline(never)]
    pub fn required_input(&self, k: usize) -> Result<(u32, &'a TensorDesc), Error> {
        self.input(k)?.ok_or(Error::InvalidField {
            at: self.at(),
            field: "missing required input",
        })
    }

    /// Output `k`: tensor index and descriptor.
    #[inline(never)]
    pub fn output(&self, k: usize) -> Result<(u32, &'a TensorDesc), Error> {
        if k >= self.desc.output_count as usize {
            return Err(Error::InvalidField {
                at: self.at(),
                field: "output_count",
            });
        }
        let t = *self
            .io
            .get(self.input_count() + k)
            .ok_or(Error::InvalidField {
                at: self.at(),
                field: "io",
            })?;
        let d = self.tensors.get(t as usize).ok_or(Error::InvalidField {
            at: self.at(),
            field: "tensor index",
        })?;
        Ok((t, d))
    }

    /// The op's parameter struct.
    pub fn params<T: Pod>(&self) -> Result<&'a T, Error> {
        if self.params.len() != core::mem::size_of::<T>() {
            return Err(Error::InvalidField {
                at: self.at(),
                field: "params_len",
            });
        }
        bytemuck::try_from_bytes(self.params).map_err(|_| Error::Misaligned {
            at: self.at(),
            align: core::mem::align_of::<T>(),
        })
    }

    /// `count` elements of `T` at byte `offset` of the constant section (e.g. per-channel multipliers).
    #[inline(never)]
    pub fn const_array<T: Pod>(&self, offset: u32, count: usize) -> Result<&'a [T], Error> {
        let len = count
            .checked_mul(core::mem::size_of::<T>())
            .ok_or(Error::InvalidField {
                at: self.at(),
                field: "const count",
            })?;
        cast_slice(
            sub(self.consts, offset as usize, len, self.at())?,
            self.at(),
        )
    }

    /// The bytes of constant input `k` (weights, bias), or an error if it is not a constant.
    pub fn const_input(&self, k: usize) -> Result<Option<&'a [u8]>, Error> {
        match self.input(k)? {
            None => Ok(None),
            Some((t, d)) => {
                if d.storage() != Some(Storage::Const) {
                    return Err(Error::ShapeMismatch {
                        op: self.index,
                        tensor: t,
                        expected: "a constant tensor",
                    });
                }
                sub(self.consts, d.offset as usize, d.bytes as usize, self.at()).map(Some)
            }
        }
    }

    /// Checks that tensor `t` has element type `dtype`.
    pub fn expect_dtype(&self, t: (u32, &TensorDesc), dtype: DType) -> Result<(), Error> {
        if t.1.dtype() != Some(dtype) {
            return Err(Error::ShapeMismatch {
                op: self.index,
                tensor: t.0,
                expected: dtype.name(),
            });
        }
        Ok(())
    }

    /// A shape error about tensor `t`.
    pub fn shape_error(&self, tensor: u32, expected: &'static str) -> Error {
        Error::ShapeMismatch {
            op: self.index,
            tensor,
            expected,
        }
    }

    /// An invalid-parameter error.
    pub fn param_error(&self, field: &'static str) -> Error {
        Error::InvalidField {
            at: self.at(),
            field,
        }
    }
}

/// The memory one op runs on: its inputs (arena or constants), its output and its scratch.
///
/// Built by splitting the arena around the output, so inputs and the output are disjoint borrows
/// without `unsafe` (validation guarantees they do not overlap, except for in-place kinds).
pub struct OpMem<'a> {
    /// Arena bytes before the output.
    pub(crate) below: &'a [u8],
    /// Arena bytes after the output (start at `above_start`).
    pub(crate) above: &'a [u8],
    pub(crate) above_start: usize,
    /// The output's bytes.
    pub output: &'a mut [u8],
    /// The op's scratch buffer (empty when it has none).
    pub scratch: &'a mut [u8],
    pub(crate) ctx: OpCtx<'a>,
}

impl<'a> OpMem<'a> {
    /// The bytes of input `k` (`None` when an optional input is absent). An input that is the
    /// output itself (in-place kinds) is not available here: read it from `output`.
    #[inline(never)]
    pub fn input(&self, k: usize) -> Result<Option<&'a [u8]>, Error> {
        let Some((t, d)) = self.ctx.input(k)? else {
            return Ok(None);
        };
        let at = Location::Tensor(t);
        let off = d.offset as usize;
        let len = d.bytes as usize;
        match d.storage() {
            Some(Storage::Const) => sub(self.ctx.consts, off, len, at).map(Some),
            Some(Storage::Arena) => {
                if off + len <= self.below.len() {
                    sub(self.below, off, len, at).map(Some)
                } else if off >= self.above_start {
                    sub(self.above, off - self.above_start, len, at).map(Some)
                } else if len == 0 {
                    Ok(Some(&[]))
                } else {
                    Err(Error::InvalidField {
                        at,
                        field: "offset (input overlaps output)",
                    })
                }
            }
            None => Err(Error::InvalidField {
                at,
                field: "storage",
            }),
        }
    }

    /// The bytes of tensor `d` when it is an arena tensor that lies wholly below or above the
    /// output, else `None` (no error built: for kernels' fast paths, whose general path reports
    /// what is wrong).
    #[cfg(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64"))]
    #[inline(always)]
    pub(crate) fn arena_input(&self, d: &TensorDesc) -> Option<&'a [u8]> {
        if d.storage != Storage::Arena as u8 {
            return None;
        }
        let off = d.offset as usize;
        let end = off.checked_add(d.bytes as usize)?;
        if end <= self.below.len() {
            self.below.get(off..end)
        } else {
            self.above
                .get(off.checked_sub(self.above_start)?..end.checked_sub(self.above_start)?)
        }
    }

    /// Input `k`, which must be present.
    pub fn required_input(&self, k: usize) -> Result<&'a [u8], Error> {
        self.input(k)?.ok_or(Error::InvalidField {
            at: Location::Op(self.ctx.index),
            field: "missing required input",
        })
    }
}

/// Views bytes as `i8`.
pub fn as_i8(b: &[u8]) -> &[i8] {
    bytemuck::cast_slice(b)
}

/// Views bytes as `i8`, mutably.
pub fn as_i8_mut(b: &mut [u8]) -> &mut [i8] {
    bytemuck::cast_slice_mut(b)
}

/// Views bytes as `T`, refusing misaligned or ragged slices.
pub fn as_typed<T: Pod>(b: &[u8]) -> Result<&[T], Error> {
    bytemuck::try_cast_slice(b).map_err(|_| Error::Misaligned {
        at: Location::Arena,
        align: core::mem::align_of::<T>(),
    })
}

/// Views bytes as `T` mutably, refusing misaligned or ragged slices.
pub fn as_typed_mut<T: Pod>(b: &mut [u8]) -> Result<&mut [T], Error> {
    bytemuck::try_cast_slice_mut(b).map_err(|_| Error::Misaligned {
        at: Location::Arena,
        align: core::mem::align_of::<T>(),
    })
}

/// Validates op `ctx`: with its family's rules, and for an op with flags (in place, fused) with
/// [`inplace`]'s.
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    select::check_dtypes(ctx)?;
    if ctx.desc.flags != 0 {
        return inplace::validate(ctx);
    }
    validate_kind(ctx)
}

/// Validates op `ctx` with its family's rules only.
pub(crate) fn validate_kind(ctx: &OpCtx) -> Result<(), Error> {
    match ctx.kind {
        // Other numeric schemes of the same families: packed int4 weights, 16x8.
        k @ (OpKind::Conv2d | OpKind::DepthwiseConv2d | OpKind::FullyConnected)
            if select::INT4 && select::linked(k) && int4::applies(ctx) =>
        {
            int4::validate(ctx)
        }
        k @ (OpKind::Conv2d | OpKind::DepthwiseConv2d | OpKind::FullyConnected)
            if select::INT16 && select::linked(k) && int16::applies(ctx) =>
        {
            int16::validate(ctx)
        }
        // int16 activations (16x8) of the element-wise families and SOFTMAX.
        k @ (OpKind::Add
        | OpKind::Sub
        | OpKind::Mul
        | OpKind::Relu
        | OpKind::Relu6
        | OpKind::Logistic
        | OpKind::Tanh)
            if select::INT16 && select::linked(k) && int16_elementwise::applies(ctx) =>
        {
            int16_elementwise::validate(ctx)
        }
        OpKind::Softmax
            if select::INT16 && select::linked(OpKind::Softmax) && int16_softmax::applies(ctx) =>
        {
            int16_softmax::validate(ctx)
        }
        // float32 activations (float32 or float16 weights): `float`, `float_pointwise`.
        k if select::FLOAT && select::linked(k) && float::applies(ctx) => float::validate(ctx),
        k if select::FLOAT && select::linked(k) && float_pointwise::applies(ctx) => {
            float_pointwise::validate(ctx)
        }
        OpKind::Conv2d if select::linked(OpKind::Conv2d) => conv::validate(ctx),
        OpKind::DepthwiseConv2d if select::linked(OpKind::DepthwiseConv2d) => {
            depthwise::validate(ctx)
        }
        OpKind::FullyConnected if select::linked(OpKind::FullyConnected) => {
            fully_connected::validate(ctx)
        }
        OpKind::AveragePool2d | OpKind::MaxPool2d if select::linked(OpKind::MaxPool2d) => {
            pool::validate(ctx)
        }
        OpKind::Add | OpKind::Sub | OpKind::Mul if select::linked(OpKind::Add) => {
            arith::validate(ctx)
        }
        OpKind::Reshape | OpKind::Squeeze if select::linked(OpKind::Reshape) => {
            shape::validate(ctx)
        }
        OpKind::Softmax if select::linked(OpKind::Softmax) => softmax::validate(ctx),
        OpKind::Logistic | OpKind::Tanh | OpKind::Relu | OpKind::Relu6
            if select::linked(OpKind::Relu) =>
        {
            activation::validate(ctx)
        }
        OpKind::Quantize | OpKind::Dequantize if select::linked(OpKind::Quantize) => {
            quantize::validate(ctx)
        }
        OpKind::Concatenation if select::linked(OpKind::Concatenation) => concat::validate(ctx),
        OpKind::Pad if select::linked(OpKind::Pad) => pad::validate(ctx),
        OpKind::Mean if select::linked(OpKind::Mean) => reduce::validate(ctx),
        OpKind::SparseConv2d | OpKind::SparseFullyConnected
            if select::linked(OpKind::SparseConv2d) =>
        {
            sparse::validate(ctx)
        }
        // Not linked in this build (`select-ops`): refused when the model is read.
        _ => Err(select::not_linked(ctx)),
    }
}

/// Runs op `ctx` on `mem` (in place or fused when its flags say so, see [`inplace`]).
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem) -> Result<(), Error> {
    if ctx.desc.flags != 0 {
        return inplace::eval(ctx, mem);
    }
    eval_kind(ctx, mem)
}

/// Runs op `ctx` on `mem` with its family's kernel.
pub(crate) fn eval_kind(ctx: &OpCtx, mem: OpMem) -> Result<(), Error> {
    match ctx.kind {
        // Other numeric schemes of the same families: packed int4 weights, 16x8.
        k @ (OpKind::Conv2d | OpKind::DepthwiseConv2d | OpKind::FullyConnected)
            if select::INT4 && select::linked(k) && int4::applies(ctx) =>
        {
            int4::eval(ctx, mem)
        }
        k @ (OpKind::Conv2d | OpKind::DepthwiseConv2d | OpKind::FullyConnected)
            if select::INT16 && select::linked(k) && int16::applies(ctx) =>
        {
            int16::eval(ctx, mem)
        }
        k @ (OpKind::Add
        | OpKind::Sub
        | OpKind::Mul
        | OpKind::Relu
        | OpKind::Relu6
        | OpKind::Logistic
        | OpKind::Tanh)
            if select::INT16 && select::linked(k) && int16_elementwise::applies(ctx) =>
        {
            int16_elementwise::eval(ctx, mem)
        }
        OpKind::Softmax
            if select::INT16 && select::linked(OpKind::Softmax) && int16_softmax::applies(ctx) =>
        {
            int16_softmax::eval(ctx, mem)
        }
        k if select::FLOAT && select::linked(k) && float::applies(ctx) => float::eval(ctx, mem),
        k if select::FLOAT && select::linked(k) && float_pointwise::applies(ctx) => {
            float_pointwise::eval(ctx, mem)
        }
        OpKind::Conv2d if select::linked(OpKind::Conv2d) => conv::eval(ctx, mem),
        OpKind::DepthwiseConv2d if select::linked(OpKind::DepthwiseConv2d) => {
            depthwise::eval(ctx, mem)
        }
        OpKind::FullyConnected if select::linked(OpKind::FullyConnected) => {
            fully_connected::eval(ctx, mem)
        }
        OpKind::AveragePool2d | OpKind::MaxPool2d if select::linked(OpKind::MaxPool2d) => {
            pool::eval(ctx, mem)
        }
        OpKind::Add | OpKind::Sub | OpKind::Mul if select::linked(OpKind::Add) => {
            arith::eval(ctx, mem)
        }
        OpKind::Reshape | OpKind::Squeeze if select::linked(OpKind::Reshape) => {
            shape::eval(ctx, mem)
        }
        OpKind::Softmax if select::linked(OpKind::Softmax) => softmax::eval(ctx, mem),
        OpKind::Logistic | OpKind::Tanh | OpKind::Relu | OpKind::Relu6
            if select::linked(OpKind::Relu) =>
        {
            activation::eval(ctx, mem)
        }
        OpKind::Quantize | OpKind::Dequantize if select::linked(OpKind::Quantize) => {
            quantize::eval(ctx, mem)
        }
        OpKind::Concatenation if select::linked(OpKind::Concatenation) => concat::eval(ctx, mem),
        OpKind::Pad if select::linked(OpKind::Pad) => pad::eval(ctx, mem),
        OpKind::Mean if select::linked(OpKind::Mean) => reduce::eval(ctx, mem),
        OpKind::SparseConv2d | OpKind::SparseFullyConnected
            if select::linked(OpKind::SparseConv2d) =>
        {
            sparse::eval(ctx, mem)
        }
        // Not linked in this build (`select-ops`): validation refused the model already.
        _ => Err(select::not_linked(ctx)),
    }
}

/// The name of the kernel implementation op `index` of `model` runs with on this build and CPU
/// (e.g. `reference`, `avx2`, `neon-dotprod`), as shown by `mote inspect` and `mote bench`.
///
/// It is decided by the same functions `invoke` uses (`conv::conv_fast_isa`, ...), so it names
/// what really runs: a SIMD tier when the op's shapes, parameters and data layout have a fast
/// path on this CPU, else `reference`.
pub fn kernel_name(model: &crate::Model, index: usize) -> &'static str {
    let Ok(ctx) = model.op_ctx(index as u32) else {
        return "reference";
    };
    match ctx.kind {
        OpKind::Conv2d => conv::kernel_name(&ctx),
        OpKind::FullyConnected => fully_connected::kernel_name(&ctx),
        OpKind::DepthwiseConv2d => depthwise::kernel_name(&ctx),
        OpKind::Add | OpKind::Sub | OpKind::Mul if !int16_elementwise::applies(&ctx) => {
            arith::kernel_name(&ctx)
        }
        OpKind::AveragePool2d | OpKind::MaxPool2d => pool::kernel_name(&ctx),
        _ => "reference",
    }
}

#[cfg(test)]
mod tests {
    use super::OpKind;

    #[test]
    fn from_u16_decodes_exactly_the_kinds() {
        for k in OpKind::ALL {
            assert_eq!(OpKind::from_u16(k as u16), Some(k));
        }
        let known = (0..=u16::MAX)
            .filter(|&v| OpKind::from_u16(v).is_some())
            .count();
        assert_eq!(known, OpKind::ALL.len());
    }
}
