//! The TFLite importer: a `.tflite` flatbuffer → [`Graph`].
//!
//! The file is read with an own, safe reader over the published TFLite schema
//! (`tensorflow/lite/schema/schema.fbs`, schema version 3). Hostile input gives `Err`, never a
//! panic:
//!
//! 1. the flatbuffers [`Verifier`](flatbuffers::Verifier) runs over the buffer with this
//!    module's [`Verifiable`](flatbuffers::Verifiable) implementations of every table the
//!    importer reads (offsets, vtables, vector and string bounds, UTF-8, depth and size limits);
//! 2. every read is bounds-checked again by the reader itself;
//! 3. the model is validated semantically: tensor, buffer and operator-code indices in range,
//!    shapes non-negative and not overflowing, constant buffer sizes equal to shape × element
//!    size, quantization arrays consistent with each other and with the shape, option values
//!    within their enums.
//!
//! Only subgraph 0 is imported. A model with several subgraphs is accepted only if no operator
//! of subgraph 0 calls another subgraph (control flow, `CALL`, StableHLO bodies).
//!
//! Buffers stored outside the flatbuffer (`Buffer.offset`/`Buffer.size`, used by models over
//! 2 GB) are read from the same byte slice, so [`import`] must be given the whole file.
//!
//! Operators the IR models are mapped with their options (absent options tables give the
//! schema defaults); every other operator becomes [`Operator::Unsupported`] with its schema
//! name (`SVDF`, `CUSTOM(name)`, ...), so that lowering refuses it by name and index.

mod reader;
mod schema;

use std::path::Path;

use crate::error::CompileError;
use crate::ir::{
    Activation, Conv2dOptions, DataType, Graph, Node, Operator, Padding, Pool2dOptions,
    Quantization, Tensor, TensorId,
};
use reader::{Table, R};
use schema::{op, options_type};

/// Largest byte size accepted for one tensor (1 TiB): far beyond any model, small enough that
/// sums over tensors cannot overflow.
const MAX_TENSOR_BYTES: u64 = 1 << 40;
/// Largest sum of all tensor byte sizes accepted.
const MAX_TOTAL_TENSOR_BYTES: u64 = 1 << 52;

/// Imports a TFLite model from the bytes of a whole `.tflite` file.
///
/// Errors: [`CompileError::Malformed`] for anything that is not a well-formed TFLite model
/// (naming the table, index and field), [`CompileError::Unsupported`] for a model whose
/// operators call other subgraphs, [`CompileError::Limit`] for absurdly large tensors.
pub fn import(bytes: &[u8]) -> Result<Graph, CompileError> {
    Importer::new(bytes)?.import()
}

/// Reads and imports a `.tflite` file.
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
        format: "TFLite",
        what: what.into(),
    }
}

/// Adds context to a reader error.
trait Ctx<T> {
    /// Prefixes the error with `ctx()`.
    fn ctx(self, ctx: impl FnOnce() -> String) -> Result<T, CompileError>;
}

impl<T> Ctx<T> for R<T> {
    fn ctx(self, ctx: impl FnOnce() -> String) -> Result<T, CompileError> {
        self.map_err(|e| malformed(format!("{}: {e}", ctx())))
    }
}

/// Why an operator consuming a tensor cannot be handled even if its type is supported.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TensorFlag {
    /// Nothing special.
    Plain,
    /// Sparse encoding (`Tensor.sparsity`).
    Sparse,
    /// `QuantizationParameters.details` (custom quantization).
    CustomQuantization,
    /// `Tensor.is_variable`.
    Variable,
}

impl TensorFlag {
    /// The reason appended to the operator's name.
    fn reason(self) -> Option<&'static str> {
        match self {
            TensorFlag::Plain => None,
            TensorFlag::Sparse => Some("sparse tensor input"),
            TensorFlag::CustomQuantization => Some("custom-quantized tensor input"),
            TensorFlag::Variable => Some("variable tensor input"),
        }
    }
}

/// One operator code: the builtin code (`max(deprecated_builtin_code, builtin_code)`) and the
/// name used in messages.
struct OpCode {
    code: i32,
    name: String,
}

/// Import state.
struct Importer<'a> {
    bytes: &'a [u8],
    model: Table<'a>,
    /// Bytes of constant data copied so far (bounded against shared-buffer amplification).
    const_bytes: u64,
    /// Limit of `const_bytes`.
    const_budget: u64,
}

impl<'a> Importer<'a> {
    /// Checks the identifier, verifies the flatbuffer and finds the root table.
    fn new(bytes: &'a [u8]) -> Result<Self, CompileError> {
        if bytes.len() < 8 {
            return Err(malformed(format!(
                "file is {} bytes long, too short for a flatbuffer",
                bytes.len()
            )));
        }
        let ident = bytes.get(4..8).unwrap_or_default();
        if ident != schema::FILE_IDENTIFIER {
            return Err(malformed(format!(
                "file identifier is {:?}, expected \"TFL3\" (not a TFLite model?)",
                String::from_utf8_lossy(ident)
            )));
        }
        let len = bytes.len();
        let opts = flatbuffers::VerifierOptions {
            max_depth: 64,
            max_tables: 1_000_000,
            // Counts every visit of shared data again: bounds what the importer may copy.
            max_apparent_size: len.saturating_mul(4).max(1 << 20),
            ignore_missing_null_terminator: false,
        };
        let mut verifier = flatbuffers::Verifier::new(&opts, bytes);
        <flatbuffers::ForwardsUOffset<schema::ModelV> as flatbuffers::Verifiable>::run_verifier(
            &mut verifier,
            0,
        )
        .map_err(|e| {
            malformed(format!(
                "flatbuffer verification failed: {}",
                e.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            ))
        })?;
        let model = Table::root(bytes, "Model").ctx(|| "model".to_string())?;
        Ok(Importer {
            bytes,
            model,
            const_bytes: 0,
            const_budget: (len as u64).saturating_mul(4).max(1 << 20),
        })
    }

    /// Reads the whole model.
    fn import(mut self) -> Result<Graph, CompileError> {
        let m = self.model;
        let version = m
            .scalar::<u32>(schema::model::VERSION, "version", 0)
            .ctx(|| "model".into())?;
        if version != schema::SCHEMA_VERSION {
            return Err(malformed(format!(
                "Model.version is {version}, only schema version {} is supported",
                schema::SCHEMA_VERSION
            )));
        }
        let codes = self.operator_codes()?;
        let subgraphs = m
            .tables(schema::model::SUBGRAPHS, "subgraphs", "SubGraph")
            .ctx(|| "model".into())?
            .ok_or_else(|| malformed("Model.subgraphs is absent"))?;
        if subgraphs.len() == 0 {
            return Err(malformed("Model.subgraphs is empty"));
        }
        let sg = subgraphs.get(0).ctx(|| "model".into())?;
        self.subgraph(sg, &codes, subgraphs.len())
    }

    /// `Model.operator_codes`.
    fn operator_codes(&self) -> Result<Vec<OpCode>, CompileError> {
        use schema::opcode as f;
        let Some(v) = self
            .model
            .tables(
                schema::model::OPERATOR_CODES,
                "operator_codes",
                "OperatorCode",
            )
            .ctx(|| "model".into())?
        else {
            return Ok(Vec::new());
        };
        (0..v.len())
            .map(|i| {
                let where_ = || format!("operator_codes[{i}]");
                let t = v.get(i).ctx(|| "model".into())?;
                let deprecated = t
                    .scalar::<i8>(f::DEPRECATED_BUILTIN_CODE, "deprecated_builtin_code", 0)
                    .ctx(where_)?;
                let builtin = t
                    .scalar::<i32>(f::BUILTIN_CODE, "builtin_code", 0)
                    .ctx(where_)?;
                let code = builtin.max(i32::from(deprecated));
                if code < 0 {
                    return Err(malformed(format!(
                        "{}: builtin code {code} is negative",
                        where_()
                    )));
                }
                let name = if code == op::CUSTOM {
                    let custom = t
                        .string(f::CUSTOM_CODE, "custom_code")
                        .ctx(where_)?
                        .unwrap_or("");
                    format!("CUSTOM({custom})")
                } else {
                    schema::builtin_name(code)
                };
                Ok(OpCode { code, name })
            })
            .collect()
    }

    /// Imports subgraph 0.
    fn subgraph(
        &mut self,
        sg: Table<'a>,
        codes: &[OpCode],
        num_subgraphs: usize,
    ) -> Result<Graph, CompileError> {
        use schema::subgraph as f;
        let buffers = self
            .model
            .tables(schema::model::BUFFERS, "buffers", "Buffer")
            .ctx(|| "model".into())?;
        let num_buffers = buffers.map_or(0, |b| b.len());

        // Tensors.
        let mut tensors = Vec::new();
        let mut flags = Vec::new();
        let mut total_bytes: u64 = 0;
        if let Some(tv) = sg
            .tables(f::TENSORS, "tensors", "Tensor")
            .ctx(|| "subgraph 0".into())?
        {
            for i in 0..tv.len() {
                let t = tv.get(i).ctx(|| "subgraph 0".into())?;
                let (tensor, flag) = self.tensor(i, t, buffers, num_buffers)?;
                total_bytes = total_bytes.saturating_add(tensor.bytes() as u64);
                if total_bytes > MAX_TOTAL_TENSOR_BYTES {
                    return Err(CompileError::Limit(format!(
                        "the tensors of subgraph 0 total more than 2^52 bytes (at tensor {i})"
                    )));
                }
                tensors.push(tensor);
                flags.push(flag);
            }
        }
        let n = tensors.len();
        // Graph inputs and outputs.
        let mut io = [Vec::new(), Vec::new()];
        for (k, (voff, field)) in [(f::INPUTS, "inputs"), (f::OUTPUTS, "outputs")]
            .into_iter()
            .enumerate()
        {
            let list = sg
                .vector_or_empty::<i32>(voff, field)
                .ctx(|| "subgraph 0".into())?;
            for (j, v) in list.into_iter().enumerate() {
                io[k].push(tensor_index(v, n, || format!("subgraph 0 {field}[{j}]"))?);
            }
        }
        let [inputs, outputs] = io;

        // Operators.
        let mut nodes = Vec::new();
        if let Some(ov) = sg
            .tables(f::OPERATORS, "operators", "Operator")
            .ctx(|| "subgraph 0".into())?
        {
            for i in 0..ov.len() {
                let t = ov.get(i).ctx(|| "subgraph 0".into())?;
                let (node, code) = self.operator(i, t, codes, &tensors, &flags)?;
                if num_subgraphs > 1 && schema::SUBGRAPH_OPS.contains(&code) {
                    return Err(CompileError::Unsupported {
                        index: i,
                        op: node.op.name().to_string(),
                        reason: format!(
                            "it calls another subgraph; only single-subgraph models are \
                             supported (this model has {num_subgraphs} subgraphs)"
                        ),
                    });
                }
                nodes.push(node);
            }
        }

        Ok(Graph {
            tensors,
            nodes,
            inputs,
            outputs,
        })
    }

    /// Imports tensor `i` of subgraph 0.
    fn tensor(
        &mut self,
        i: usize,
        t: Table<'a>,
        buffers: Option<reader::TableVector<'a>>,
        num_buffers: usize,
    ) -> Result<(Tensor, TensorFlag), CompileError> {
        use schema::tensor as f;
        let name = t
            .string(f::NAME, "name")
            .ctx(|| format!("subgraph 0 tensor {i}"))?
            .unwrap_or("")
            .to_string();
        let where_ = || format!("subgraph 0 tensor {i} ({name:?})");

        let dims = t.vector_or_empty::<i32>(f::SHAPE, "shape").ctx(where_)?;
        let mut shape = Vec::with_capacity(dims.len());
        for (d, &v) in dims.iter().enumerate() {
            let v = usize::try_from(v)
                .map_err(|_| malformed(format!("{}: shape[{d}] is {v} (negative)", where_())))?;
            shape.push(v);
        }
        let ty = t.scalar::<i8>(f::TYPE, "type", 0).ctx(where_)?;
        let dtype = schema::tensor_type(ty);
        let bytes = tensor_bytes(&shape, dtype).ok_or_else(|| {
            CompileError::Limit(format!(
                "{}: shape {} × {} bytes exceeds 2^40 bytes",
                where_(),
                fmt_shape(&shape),
                dtype.size()
            ))
        })?;

        let mut flag = TensorFlag::Plain;
        if t.scalar::<bool>(f::IS_VARIABLE, "is_variable", false)
            .ctx(where_)?
        {
            flag = TensorFlag::Variable;
        }
        let sparse = t
            .table(f::SPARSITY, "sparsity", "SparsityParameters")
            .ctx(where_)?
            .is_some();
        if sparse {
            flag = TensorFlag::Sparse;
        }

        // Quantization.
        let mut quant = None;
        if let Some(q) = t
            .table(f::QUANTIZATION, "quantization", "QuantizationParameters")
            .ctx(where_)?
        {
            let details = q
                .scalar::<u8>(schema::quant::DETAILS_TYPE, "details_type", 0)
                .ctx(where_)?;
            if details != 0 {
                flag = TensorFlag::CustomQuantization;
            } else {
                quant =
                    quantization(q, &shape).map_err(|e| malformed(format!("{}: {e}", where_())))?;
            }
        }

        // Constant data.
        let buffer = t.scalar::<u32>(f::BUFFER, "buffer", 0).ctx(where_)? as usize;
        let mut data = None;
        if buffer != 0 {
            let Some(bv) = buffers.filter(|_| buffer < num_buffers) else {
                return Err(malformed(format!(
                    "{}: buffer index {buffer} out of range (model has {num_buffers} buffers)",
                    where_()
                )));
            };
            let b = bv.get(buffer).ctx(|| "model buffers".into())?;
            if let Some(raw) = self.buffer_data(buffer, b)? {
                let checked = !sparse && !matches!(dtype, DataType::Other(_));
                if checked && raw.len() as u64 != bytes {
                    return Err(malformed(format!(
                        "{}: buffer {buffer} holds {} bytes, but shape {} of {dtype} needs \
                         {bytes}",
                        where_(),
                        raw.len(),
                        fmt_shape(&shape)
                    )));
                }
                self.const_bytes = self.const_bytes.saturating_add(raw.len() as u64);
                if self.const_bytes > self.const_budget {
                    return Err(malformed(format!(
                        "{}: constant data shared between tensors adds up to more than {} bytes \
                         (4 × the file size)",
                        where_(),
                        self.const_budget
                    )));
                }
                data = Some(raw.to_vec());
            }
        }

        Ok((
            Tensor {
                name,
                shape,
                dtype,
                quant,
                data,
            },
            flag,
        ))
    }

    /// The data of buffer `index`: inline `data`, or `offset`/`size` into the file; `None`
    /// when empty.
    fn buffer_data(&self, index: usize, b: Table<'a>) -> Result<Option<&'a [u8]>, CompileError> {
        use schema::buffer as f;
        let where_ = || format!("buffers[{index}]");
        if let Some(v) = b.vector::<u8>(f::DATA, "data").ctx(where_)? {
            if !v.is_empty() {
                return Ok(Some(v.bytes()));
            }
        }
        let offset = b.scalar::<u64>(f::OFFSET, "offset", 0).ctx(where_)?;
        let size = b.scalar::<u64>(f::SIZE, "size", 0).ctx(where_)?;
        if offset > 1 && size > 0 {
            let range = usize::try_from(offset)
                .ok()
                .zip(usize::try_from(size).ok())
                .and_then(|(o, s)| Some(o..o.checked_add(s)?));
            return range
                .and_then(|r| self.bytes.get(r))
                .map(Some)
                .ok_or_else(|| {
                    malformed(format!(
                        "{}: external data at offset {offset}, size {size} lies outside the \
                         {}-byte file",
                        where_(),
                        self.bytes.len()
                    ))
                });
        }
        Ok(None)
    }

    /// Imports operator `i` of subgraph 0; returns the node and its builtin code.
    fn operator(
        &self,
        i: usize,
        t: Table<'a>,
        codes: &[OpCode],
        tensors: &[Tensor],
        flags: &[TensorFlag],
    ) -> Result<(Node, i32), CompileError> {
        use schema::operator as f;
        let where_ = || format!("subgraph 0 operator {i}");
        let index = t
            .scalar::<u32>(f::OPCODE_INDEX, "opcode_index", 0)
            .ctx(where_)? as usize;
        let code = codes.get(index).ok_or_else(|| {
            malformed(format!(
                "{}: opcode_index {index} out of range (model has {} operator codes)",
                where_(),
                codes.len()
            ))
        })?;
        let where_ = || format!("subgraph 0 operator {i} ({})", code.name);

        let mut inputs = Vec::new();
        for (k, v) in t
            .vector_or_empty::<i32>(f::INPUTS, "inputs")
            .ctx(where_)?
            .into_iter()
            .enumerate()
        {
            inputs.push(match v {
                -1 => None,
                v => Some(tensor_index(v, tensors.len(), || {
                    format!("{} inputs[{k}]", where_())
                })?),
            });
        }
        let mut outputs = Vec::new();
        for (k, v) in t
            .vector_or_empty::<i32>(f::OUTPUTS, "outputs")
            .ctx(where_)?
            .into_iter()
            .enumerate()
        {
            outputs.push(tensor_index(v, tensors.len(), || {
                format!("{} outputs[{k}]", where_())
            })?);
        }

        let opts_type = t
            .scalar::<u8>(f::BUILTIN_OPTIONS_TYPE, "builtin_options_type", 0)
            .ctx(where_)?;
        let opts = t
            .table(f::BUILTIN_OPTIONS, "builtin_options", "BuiltinOptions")
            .ctx(where_)?;
        // The options table if it has the expected union type, `None` (defaults) if absent.
        let options =
            |expected: u8, expected_name: &str| -> Result<Option<Table<'a>>, CompileError> {
                match (opts_type, opts) {
                    (options_type::NONE, _) | (_, None) => Ok(None),
                    (ty, Some(o)) if ty == expected => Ok(Some(o)),
                    (ty, Some(_)) => Err(malformed(format!(
                        "{}: builtin_options has union type {ty}, expected {expected_name} \
                     ({expected})",
                        where_()
                    ))),
                }
            };
        let opt_err = |e: String| malformed(format!("{}: {e}", where_()));

        let op = match code.code {
            op::CONV_2D => {
                use schema::conv2d_options as o;
                let opts = options(options_type::CONV2D, "Conv2DOptions")?;
                Operator::Conv2d(Conv2dOptions {
                    padding: padding(get(opts, o::PADDING, "padding", 0i8)?).map_err(opt_err)?,
                    stride_w: non_negative(get(opts, o::STRIDE_W, "stride_w", 0)?, "stride_w")
                        .map_err(opt_err)?,
                    stride_h: non_negative(get(opts, o::STRIDE_H, "stride_h", 0)?, "stride_h")
                        .map_err(opt_err)?,
                    dilation_w: non_negative(
                        get(opts, o::DILATION_W, "dilation_w_factor", 1)?,
                        "dilation_w_factor",
                    )
                    .map_err(opt_err)?,
                    dilation_h: non_negative(
                        get(opts, o::DILATION_H, "dilation_h_factor", 1)?,
                        "dilation_h_factor",
                    )
                    .map_err(opt_err)?,
                    activation: activation(get(
                        opts,
                        o::FUSED_ACTIVATION,
                        "fused_activation_function",
                        0,
                    )?)
                    .map_err(opt_err)?,
                    depth_multiplier: 1,
                })
            }
            op::DEPTHWISE_CONV_2D => {
                use schema::depthwise_options as o;
                let opts = options(options_type::DEPTHWISE_CONV2D, "DepthwiseConv2DOptions")?;
                Operator::DepthwiseConv2d(Conv2dOptions {
                    padding: padding(get(opts, o::PADDING, "padding", 0i8)?).map_err(opt_err)?,
                    stride_w: non_negative(get(opts, o::STRIDE_W, "stride_w", 0)?, "stride_w")
                        .map_err(opt_err)?,
                    stride_h: non_negative(get(opts, o::STRIDE_H, "stride_h", 0)?, "stride_h")
                        .map_err(opt_err)?,
                    dilation_w: non_negative(
                        get(opts, o::DILATION_W, "dilation_w_factor", 1)?,
                        "dilation_w_factor",
                    )
                    .map_err(opt_err)?,
                    dilation_h: non_negative(
                        get(opts, o::DILATION_H, "dilation_h_factor", 1)?,
                        "dilation_h_factor",
                    )
                    .map_err(opt_err)?,
                    activation: activation(get(
                        opts,
                        o::FUSED_ACTIVATION,
                        "fused_activation_function",
                        0,
                    )?)
                    .map_err(opt_err)?,
                    depth_multiplier: non_negative(
                        get(opts, o::DEPTH_MULTIPLIER, "depth_multiplier", 0)?,
                        "depth_multiplier",
                    )
                    .map_err(opt_err)?,
                })
            }
            op::AVERAGE_POOL_2D | op::MAX_POOL_2D => {
                use schema::pool2d_options as o;
                let opts = options(options_type::POOL2D, "Pool2DOptions")?;
                let p = Pool2dOptions {
                    padding: padding(get(opts, o::PADDING, "padding", 0i8)?).map_err(opt_err)?,
                    stride_w: non_negative(get(opts, o::STRIDE_W, "stride_w", 0)?, "stride_w")
                        .map_err(opt_err)?,
                    stride_h: non_negative(get(opts, o::STRIDE_H, "stride_h", 0)?, "stride_h")
                        .map_err(opt_err)?,
                    filter_w: non_negative(
                        get(opts, o::FILTER_W, "filter_width", 0)?,
                        "filter_width",
                    )
                    .map_err(opt_err)?,
                    filter_h: non_negative(
                        get(opts, o::FILTER_H, "filter_height", 0)?,
                        "filter_height",
                    )
                    .map_err(opt_err)?,
                    activation: activation(get(
                        opts,
                        o::FUSED_ACTIVATION,
                        "fused_activation_function",
                        0,
                    )?)
                    .map_err(opt_err)?,
                };
                if code.code == op::AVERAGE_POOL_2D {
                    Operator::AveragePool2d(p)
                } else {
                    Operator::MaxPool2d(p)
                }
            }
            op::FULLY_CONNECTED => {
                use schema::fc_options as o;
                let opts = options(options_type::FULLY_CONNECTED, "FullyConnectedOptions")?;
                let act = activation(get(
                    opts,
                    o::FUSED_ACTIVATION,
                    "fused_activation_function",
                    0,
                )?)
                .map_err(opt_err)?;
                let keep_num_dims = get(opts, o::KEEP_NUM_DIMS, "keep_num_dims", false)?;
                match get(opts, o::WEIGHTS_FORMAT, "weights_format", 0i8)? {
                    0 => Operator::FullyConnected {
                        activation: act,
                        keep_num_dims,
                    },
                    1 => Operator::Unsupported {
                        name: "FULLY_CONNECTED (weights_format SHUFFLED4x16INT8)".into(),
                    },
                    w => return Err(opt_err(format!("weights_format {w} is not in the schema"))),
                }
            }
            op::ADD | op::SUB | op::MUL => {
                use schema::arith_options as o;
                let (ty, ty_name) = match code.code {
                    op::ADD => (options_type::ADD, "AddOptions"),
                    op::SUB => (options_type::SUB, "SubOptions"),
                    _ => (options_type::MUL, "MulOptions"),
                };
                let opts = options(ty, ty_name)?;
                let activation = activation(get(
                    opts,
                    o::FUSED_ACTIVATION,
                    "fused_activation_function",
                    0,
                )?)
                .map_err(opt_err)?;
                match code.code {
                    op::ADD => Operator::Add { activation },
                    op::SUB => Operator::Sub { activation },
                    _ => Operator::Mul { activation },
                }
            }
            op::SOFTMAX => {
                let opts = options(options_type::SOFTMAX, "SoftmaxOptions")?;
                Operator::Softmax {
                    beta: get(opts, schema::softmax_options::BETA, "beta", 0.0f32)?,
                }
            }
            op::CONCATENATION => {
                use schema::concat_options as o;
                let opts = options(options_type::CONCATENATION, "ConcatenationOptions")?;
                let axis = get(opts, o::AXIS, "axis", 0i32)?;
                let activation = activation(get(
                    opts,
                    o::FUSED_ACTIVATION,
                    "fused_activation_function",
                    0,
                )?)
                .map_err(opt_err)?;
                let out = outputs
                    .first()
                    .and_then(|o| tensors.get(*o))
                    .ok_or_else(|| opt_err("CONCATENATION has no output tensor".into()))?;
                let rank = out.shape.len() as i64;
                let a = if axis < 0 {
                    i64::from(axis) + rank
                } else {
                    i64::from(axis)
                };
                if a < 0 || a >= rank {
                    return Err(opt_err(format!(
                        "axis {axis} out of range for the rank-{rank} output"
                    )));
                }
                Operator::Concatenation {
                    axis: a as usize,
                    activation,
                }
            }
            op::MEAN => {
                let opts = options(options_type::REDUCER, "ReducerOptions")?;
                Operator::Mean {
                    keep_dims: get(opts, schema::reducer_options::KEEP_DIMS, "keep_dims", false)?,
                }
            }
            op::RESHAPE => Operator::Reshape,
            op::SQUEEZE => Operator::Squeeze,
            op::LOGISTIC => Operator::Logistic,
            op::TANH => Operator::Tanh,
            op::RELU => Operator::Relu,
            op::RELU6 => Operator::Relu6,
            op::QUANTIZE => Operator::Quantize,
            op::DEQUANTIZE => Operator::Dequantize,
            op::PAD | op::PADV2 => Operator::Pad,
            _ => Operator::Unsupported {
                name: code.name.clone(),
            },
        };

        // Supported operators over tensors with encodings the IR does not model are refused by
        // name.
        let op = match op {
            Operator::Unsupported { .. } => op,
            op => {
                let reason = inputs
                    .iter()
                    .flatten()
                    .find_map(|t| flags.get(*t).and_then(|f| f.reason()));
                match reason {
                    Some(r) => Operator::Unsupported {
                        name: format!("{} ({r})", op.name()),
                    },
                    None => op,
                }
            }
        };
        return Ok((
            Node {
                op,
                inputs,
                outputs,
            },
            code.code,
        ));

        /// A scalar of an options table (the schema default when the table is absent).
        fn get<T: reader::Scalar>(
            opts: Option<Table<'_>>,
            voff: u16,
            field: &str,
            default: T,
        ) -> Result<T, CompileError> {
            match opts {
                None => Ok(default),
                Some(o) => o
                    .scalar(voff, field, default)
                    .map_err(|e| malformed(format!("builtin options: {e}"))),
            }
        }
    }
}

/// A shape for messages (long shapes abbreviated).
fn fmt_shape(shape: &[usize]) -> String {
    if shape.len() <= 8 {
        format!("{shape:?}")
    } else {
        format!("{:?}… (rank {})", &shape[..8], shape.len())
    }
}

/// Tensor index `v` of a subgraph with `n` tensors; `what()` says where it was found.
fn tensor_index(v: i32, n: usize, what: impl FnOnce() -> String) -> Result<TensorId, CompileError> {
    usize::try_from(v).ok().filter(|i| *i < n).ok_or_else(|| {
        malformed(format!(
            "{}: tensor index {v} out of range (subgraph 0 has {n} tensors)",
            what()
        ))
    })
}

/// Byte size of a tensor, `None` when it, or the product of any prefix of its dimensions,
/// exceeds [`MAX_TENSOR_BYTES`] (so that no later product over the shape can overflow, even
/// when a dimension is 0).
fn tensor_bytes(shape: &[usize], dtype: DataType) -> Option<u64> {
    shape.iter().try_fold(dtype.size() as u64, |acc, &d| {
        acc.checked_mul(d as u64).filter(|b| *b <= MAX_TENSOR_BYTES)
    })
}

/// Reads `QuantizationParameters` (no `details`) as TFLite's interpreter does: absent or empty
/// `scale` means not quantized; otherwise `zero_point` must have as many entries, and several
/// scales must match the size of `quantized_dimension`.
fn quantization(q: Table<'_>, shape: &[usize]) -> Result<Option<Quantization>, String> {
    use schema::quant as f;
    let scales = q.vector_or_empty::<f32>(f::SCALE, "scale")?;
    if scales.is_empty() {
        return Ok(None);
    }
    let zero_points = q
        .vector::<i64>(f::ZERO_POINT, "zero_point")?
        .map(|v| v.iter().collect::<Vec<_>>())
        .ok_or("quantization has scales but no zero_point")?;
    if zero_points.len() != scales.len() {
        return Err(format!(
            "quantization has {} scales but {} zero points",
            scales.len(),
            zero_points.len()
        ));
    }
    let dim = q.scalar::<i32>(f::QUANTIZED_DIMENSION, "quantized_dimension", 0)?;
    let axis = usize::try_from(dim)
        .ok()
        .filter(|d| shape.is_empty() || *d < shape.len())
        .ok_or_else(|| {
            format!(
                "quantized_dimension {dim} out of range for rank {}",
                shape.len()
            )
        })?;
    if scales.len() != 1 {
        let channels = shape.get(axis).copied();
        if channels != Some(scales.len()) {
            return Err(format!(
                "quantization has {} scales but dimension {axis} of shape {} is {}",
                scales.len(),
                fmt_shape(shape),
                channels.map_or("absent".to_string(), |c| c.to_string())
            ));
        }
    }
    Ok(Some(Quantization {
        scales,
        zero_points,
        axis,
    }))
}

/// `enum Padding`.
fn padding(v: i8) -> Result<Padding, String> {
    match v {
        0 => Ok(Padding::Same),
        1 => Ok(Padding::Valid),
        v => Err(format!(
            "padding {v} is not in the schema (SAME = 0, VALID = 1)"
        )),
    }
}

/// `enum ActivationFunctionType`.
fn activation(v: i8) -> Result<Activation, String> {
    match v {
        0 => Ok(Activation::None),
        1 => Ok(Activation::Relu),
        2 => Ok(Activation::ReluN1To1),
        3 => Ok(Activation::Relu6),
        4 => Ok(Activation::Tanh),
        5 => Ok(Activation::SignBit),
        v => Err(format!(
            "fused_activation_function {v} is not in the schema"
        )),
    }
}

/// An option that must not be negative.
fn non_negative(v: i32, field: &str) -> Result<usize, String> {
    usize::try_from(v).map_err(|_| format!("{field} is {v} (negative)"))
}
