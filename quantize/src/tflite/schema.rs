//! The subset of the TFLite flatbuffer schema (`tensorflow/lite/schema/schema.fbs`) that the
//! importer reads: vtable offsets of the fields, enum values, builtin operator names, and the
//! [`flatbuffers::Verifiable`] implementations run over a file before it is read.
//!
//! A field with id `n` lives at vtable offset `4 + 2·n`; a union field takes two ids (its type
//! byte, then its value).

use flatbuffers::{ForwardsUOffset, InvalidFlatbuffer, Vector, Verifiable, Verifier};

/// The vtable offset of the field with schema id `id`.
const fn field(id: u16) -> u16 {
    4 + 2 * id
}

/// The schema version this importer reads (`Model.version`).
pub(crate) const SCHEMA_VERSION: u32 = 3;

/// The file identifier of TFLite flatbuffers.
pub(crate) const FILE_IDENTIFIER: &[u8; 4] = b"TFL3";

/// `table Model`.
pub(crate) mod model {
    use super::field;
    pub(crate) const VERSION: u16 = field(0);
    pub(crate) const OPERATOR_CODES: u16 = field(1);
    pub(crate) const SUBGRAPHS: u16 = field(2);
    pub(crate) const DESCRIPTION: u16 = field(3);
    pub(crate) const BUFFERS: u16 = field(4);
}

/// `table SubGraph`.
pub(crate) mod subgraph {
    use super::field;
    pub(crate) const TENSORS: u16 = field(0);
    pub(crate) const INPUTS: u16 = field(1);
    pub(crate) const OUTPUTS: u16 = field(2);
    pub(crate) const OPERATORS: u16 = field(3);
    pub(crate) const NAME: u16 = field(4);
}

/// `table Tensor`.
pub(crate) mod tensor {
    use super::field;
    pub(crate) const SHAPE: u16 = field(0);
    pub(crate) const TYPE: u16 = field(1);
    pub(crate) const BUFFER: u16 = field(2);
    pub(crate) const NAME: u16 = field(3);
    pub(crate) const QUANTIZATION: u16 = field(4);
    pub(crate) const IS_VARIABLE: u16 = field(5);
    pub(crate) const SPARSITY: u16 = field(6);
    pub(crate) const SHAPE_SIGNATURE: u16 = field(7);
}

/// `table QuantizationParameters`.
pub(crate) mod quant {
    use super::field;
    pub(crate) const SCALE: u16 = field(2);
    pub(crate) const ZERO_POINT: u16 = field(3);
    pub(crate) const DETAILS_TYPE: u16 = field(4);
    pub(crate) const DETAILS: u16 = field(5);
    pub(crate) const QUANTIZED_DIMENSION: u16 = field(6);
}

/// `table Buffer`.
pub(crate) mod buffer {
    use super::field;
    pub(crate) const DATA: u16 = field(0);
    pub(crate) const OFFSET: u16 = field(1);
    pub(crate) const SIZE: u16 = field(2);
}

/// `table OperatorCode`.
pub(crate) mod opcode {
    use super::field;
    pub(crate) const DEPRECATED_BUILTIN_CODE: u16 = field(0);
    pub(crate) const CUSTOM_CODE: u16 = field(1);
    pub(crate) const VERSION: u16 = field(2);
    pub(crate) const BUILTIN_CODE: u16 = field(3);
}

/// `table Operator`.
pub(crate) mod operator {
    use super::field;
    pub(crate) const OPCODE_INDEX: u16 = field(0);
    pub(crate) const INPUTS: u16 = field(1);
    pub(crate) const OUTPUTS: u16 = field(2);
    pub(crate) const BUILTIN_OPTIONS_TYPE: u16 = field(3);
    pub(crate) const BUILTIN_OPTIONS: u16 = field(4);
}

/// `table Conv2DOptions`.
pub(crate) mod conv2d_options {
    use super::field;
    pub(crate) const PADDING: u16 = field(0);
    pub(crate) const STRIDE_W: u16 = field(1);
    pub(crate) const STRIDE_H: u16 = field(2);
    pub(crate) const FUSED_ACTIVATION: u16 = field(3);
    pub(crate) const DILATION_W: u16 = field(4);
    pub(crate) const DILATION_H: u16 = field(5);
}

/// `table DepthwiseConv2DOptions`.
pub(crate) mod depthwise_options {
    use super::field;
    pub(crate) const PADDING: u16 = field(0);
    pub(crate) const STRIDE_W: u16 = field(1);
    pub(crate) const STRIDE_H: u16 = field(2);
    pub(crate) const DEPTH_MULTIPLIER: u16 = field(3);
    pub(crate) const FUSED_ACTIVATION: u16 = field(4);
    pub(crate) const DILATION_W: u16 = field(5);
    pub(crate) const DILATION_H: u16 = field(6);
}

/// `table Pool2DOptions`.
pub(crate) mod pool2d_options {
    use super::field;
    pub(crate) const PADDING: u16 = field(0);
    pub(crate) const STRIDE_W: u16 = field(1);
    pub(crate) const STRIDE_H: u16 = field(2);
    pub(crate) const FILTER_W: u16 = field(3);
    pub(crate) const FILTER_H: u16 = field(4);
    pub(crate) const FUSED_ACTIVATION: u16 = field(5);
}

/// `table FullyConnectedOptions`.
pub(crate) mod fc_options {
    use super::field;
    pub(crate) const FUSED_ACTIVATION: u16 = field(0);
    pub(crate) const WEIGHTS_FORMAT: u16 = field(1);
    pub(crate) const KEEP_NUM_DIMS: u16 = field(2);
}

/// `table SoftmaxOptions`.
pub(crate) mod softmax_options {
    use super::field;
    pub(crate) const BETA: u16 = field(0);
}

/// `table ConcatenationOptions`.
pub(crate) mod concat_options {
    use super::field;
    pub(crate) const AXIS: u16 = field(0);
    pub(crate) const FUSED_ACTIVATION: u16 = field(1);
}

/// `table AddOptions`, `SubOptions` and `MulOptions` (the activation is field 0 in all three).
pub(crate) mod arith_options {
    use super::field;
    pub(crate) const FUSED_ACTIVATION: u16 = field(0);
}

/// `table ReducerOptions`.
pub(crate) mod reducer_options {
    use super::field;
    pub(crate) const KEEP_DIMS: u16 = field(0);
}

/// Values of `union BuiltinOptions` (the type byte) that the importer reads.
pub(crate) mod options_type {
    pub(crate) const NONE: u8 = 0;
    pub(crate) const CONV2D: u8 = 1;
    pub(crate) const DEPTHWISE_CONV2D: u8 = 2;
    pub(crate) const POOL2D: u8 = 5;
    pub(crate) const FULLY_CONNECTED: u8 = 8;
    pub(crate) const SOFTMAX: u8 = 9;
    pub(crate) const CONCATENATION: u8 = 10;
    pub(crate) const ADD: u8 = 11;
    pub(crate) const MUL: u8 = 21;
    pub(crate) const REDUCER: u8 = 27;
    pub(crate) const SUB: u8 = 28;
}

/// Values of `enum BuiltinOperator` that the importer maps to IR operators.
pub(crate) mod op {
    pub(crate) const ADD: i32 = 0;
    pub(crate) const AVERAGE_POOL_2D: i32 = 1;
    pub(crate) const CONCATENATION: i32 = 2;
    pub(crate) const CONV_2D: i32 = 3;
    pub(crate) const DEPTHWISE_CONV_2D: i32 = 4;
    pub(crate) const DEQUANTIZE: i32 = 6;
    pub(crate) const FULLY_CONNECTED: i32 = 9;
    pub(crate) const LOGISTIC: i32 = 14;
    pub(crate) const MAX_POOL_2D: i32 = 17;
    pub(crate) const MUL: i32 = 18;
    pub(crate) const RELU: i32 = 19;
    pub(crate) const RELU6: i32 = 21;
    pub(crate) const RESHAPE: i32 = 22;
    pub(crate) const SOFTMAX: i32 = 25;
    pub(crate) const TANH: i32 = 28;
    pub(crate) const CALL: i32 = 31;
    pub(crate) const CUSTOM: i32 = 32;
    pub(crate) const PAD: i32 = 34;
    pub(crate) const MEAN: i32 = 40;
    pub(crate) const SUB: i32 = 41;
    pub(crate) const SQUEEZE: i32 = 43;
    pub(crate) const PADV2: i32 = 60;
    pub(crate) const QUANTIZE: i32 = 114;
    pub(crate) const IF: i32 = 118;
    pub(crate) const WHILE: i32 = 119;
    pub(crate) const CALL_ONCE: i32 = 129;
    pub(crate) const STABLEHLO_CUSTOM_CALL: i32 = 173;
    pub(crate) const STABLEHLO_REDUCE: i32 = 174;
    pub(crate) const STABLEHLO_SCATTER: i32 = 190;
    pub(crate) const STABLEHLO_REDUCE_WINDOW: i32 = 198;
    pub(crate) const STABLEHLO_SORT: i32 = 199;
    pub(crate) const STABLEHLO_WHILE: i32 = 200;
    pub(crate) const STABLEHLO_COMPOSITE: i32 = 206;
    pub(crate) const REDUCE_WINDOW: i32 = 205;
}

/// Builtin operators that carry subgraph indices in their options (control flow, calls and
/// StableHLO ops with bodies).
pub(crate) const SUBGRAPH_OPS: [i32; 12] = [
    op::CALL,
    op::IF,
    op::WHILE,
    op::CALL_ONCE,
    op::STABLEHLO_CUSTOM_CALL,
    op::STABLEHLO_REDUCE,
    op::STABLEHLO_SCATTER,
    op::STABLEHLO_REDUCE_WINDOW,
    op::STABLEHLO_SORT,
    op::STABLEHLO_WHILE,
    op::REDUCE_WINDOW,
    op::STABLEHLO_COMPOSITE,
];

/// Names of `enum BuiltinOperator`, indexed by value.
pub(crate) const BUILTIN_NAMES: [&str; 208] = [
    "ADD",
    "AVERAGE_POOL_2D",
    "CONCATENATION",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "DEPTH_TO_SPACE",
    "DEQUANTIZE",
    "EMBEDDING_LOOKUP",
    "FLOOR",
    "FULLY_CONNECTED",
    "HASHTABLE_LOOKUP",
    "L2_NORMALIZATION",
    "L2_POOL_2D",
    "LOCAL_RESPONSE_NORMALIZATION",
    "LOGISTIC",
    "LSH_PROJECTION",
    "LSTM",
    "MAX_POOL_2D",
    "MUL",
    "RELU",
    "RELU_N1_TO_1",
    "RELU6",
    "RESHAPE",
    "RESIZE_BILINEAR",
    "RNN",
    "SOFTMAX",
    "SPACE_TO_DEPTH",
    "SVDF",
    "TANH",
    "CONCAT_EMBEDDINGS",
    "SKIP_GRAM",
    "CALL",
    "CUSTOM",
    "EMBEDDING_LOOKUP_SPARSE",
    "PAD",
    "UNIDIRECTIONAL_SEQUENCE_RNN",
    "GATHER",
    "BATCH_TO_SPACE_ND",
    "SPACE_TO_BATCH_ND",
    "TRANSPOSE",
    "MEAN",
    "SUB",
    "DIV",
    "SQUEEZE",
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "STRIDED_SLICE",
    "BIDIRECTIONAL_SEQUENCE_RNN",
    "EXP",
    "TOPK_V2",
    "SPLIT",
    "LOG_SOFTMAX",
    "DELEGATE",
    "BIDIRECTIONAL_SEQUENCE_LSTM",
    "CAST",
    "PRELU",
    "MAXIMUM",
    "ARG_MAX",
    "MINIMUM",
    "LESS",
    "NEG",
    "PADV2",
    "GREATER",
    "GREATER_EQUAL",
    "LESS_EQUAL",
    "SELECT",
    "SLICE",
    "SIN",
    "TRANSPOSE_CONV",
    "SPARSE_TO_DENSE",
    "TILE",
    "EXPAND_DIMS",
    "EQUAL",
    "NOT_EQUAL",
    "LOG",
    "SUM",
    "SQRT",
    "RSQRT",
    "SHAPE",
    "POW",
    "ARG_MIN",
    "FAKE_QUANT",
    "REDUCE_PROD",
    "REDUCE_MAX",
    "PACK",
    "LOGICAL_OR",
    "ONE_HOT",
    "LOGICAL_AND",
    "LOGICAL_NOT",
    "UNPACK",
    "REDUCE_MIN",
    "FLOOR_DIV",
    "REDUCE_ANY",
    "SQUARE",
    "ZEROS_LIKE",
    "FILL",
    "FLOOR_MOD",
    "RANGE",
    "RESIZE_NEAREST_NEIGHBOR",
    "LEAKY_RELU",
    "SQUARED_DIFFERENCE",
    "MIRROR_PAD",
    "ABS",
    "SPLIT_V",
    "UNIQUE",
    "CEIL",
    "REVERSE_V2",
    "ADD_N",
    "GATHER_ND",
    "COS",
    "WHERE",
    "RANK",
    "ELU",
    "REVERSE_SEQUENCE",
    "MATRIX_DIAG",
    "QUANTIZE",
    "MATRIX_SET_DIAG",
    "ROUND",
    "HARD_SWISH",
    "IF",
    "WHILE",
    "NON_MAX_SUPPRESSION_V4",
    "NON_MAX_SUPPRESSION_V5",
    "SCATTER_ND",
    "SELECT_V2",
    "DENSIFY",
    "SEGMENT_SUM",
    "BATCH_MATMUL",
    "PLACEHOLDER_FOR_GREATER_OP_CODES",
    "CUMSUM",
    "CALL_ONCE",
    "BROADCAST_TO",
    "RFFT2D",
    "CONV_3D",
    "IMAG",
    "REAL",
    "COMPLEX_ABS",
    "HASHTABLE",
    "HASHTABLE_FIND",
    "HASHTABLE_IMPORT",
    "HASHTABLE_SIZE",
    "REDUCE_ALL",
    "CONV_3D_TRANSPOSE",
    "VAR_HANDLE",
    "READ_VARIABLE",
    "ASSIGN_VARIABLE",
    "BROADCAST_ARGS",
    "RANDOM_STANDARD_NORMAL",
    "BUCKETIZE",
    "RANDOM_UNIFORM",
    "MULTINOMIAL",
    "GELU",
    "DYNAMIC_UPDATE_SLICE",
    "RELU_0_TO_1",
    "UNSORTED_SEGMENT_PROD",
    "UNSORTED_SEGMENT_MAX",
    "UNSORTED_SEGMENT_SUM",
    "ATAN2",
    "UNSORTED_SEGMENT_MIN",
    "SIGN",
    "BITCAST",
    "BITWISE_XOR",
    "RIGHT_SHIFT",
    "STABLEHLO_LOGISTIC",
    "STABLEHLO_ADD",
    "STABLEHLO_DIVIDE",
    "STABLEHLO_MULTIPLY",
    "STABLEHLO_MAXIMUM",
    "STABLEHLO_RESHAPE",
    "STABLEHLO_CLAMP",
    "STABLEHLO_CONCATENATE",
    "STABLEHLO_BROADCAST_IN_DIM",
    "STABLEHLO_CONVOLUTION",
    "STABLEHLO_SLICE",
    "STABLEHLO_CUSTOM_CALL",
    "STABLEHLO_REDUCE",
    "STABLEHLO_ABS",
    "STABLEHLO_AND",
    "STABLEHLO_COSINE",
    "STABLEHLO_EXPONENTIAL",
    "STABLEHLO_FLOOR",
    "STABLEHLO_LOG",
    "STABLEHLO_MINIMUM",
    "STABLEHLO_NEGATE",
    "STABLEHLO_OR",
    "STABLEHLO_POWER",
    "STABLEHLO_REMAINDER",
    "STABLEHLO_RSQRT",
    "STABLEHLO_SELECT",
    "STABLEHLO_SUBTRACT",
    "STABLEHLO_TANH",
    "STABLEHLO_SCATTER",
    "STABLEHLO_COMPARE",
    "STABLEHLO_CONVERT",
    "STABLEHLO_DYNAMIC_SLICE",
    "STABLEHLO_DYNAMIC_UPDATE_SLICE",
    "STABLEHLO_PAD",
    "STABLEHLO_IOTA",
    "STABLEHLO_DOT_GENERAL",
    "STABLEHLO_REDUCE_WINDOW",
    "STABLEHLO_SORT",
    "STABLEHLO_WHILE",
    "STABLEHLO_GATHER",
    "STABLEHLO_TRANSPOSE",
    "DILATE",
    "STABLEHLO_RNG_BIT_GENERATOR",
    "REDUCE_WINDOW",
    "STABLEHLO_COMPOSITE",
    "COMPLEX",
];

/// The name of builtin operator `code` (`BUILTIN_<code>` for codes this table does not know).
pub(crate) fn builtin_name(code: i32) -> String {
    usize::try_from(code)
        .ok()
        .and_then(|i| BUILTIN_NAMES.get(i))
        .map(|s| (*s).to_string())
        .unwrap_or_else(|| format!("BUILTIN_{code}"))
}

/// `enum TensorType` → IR type (`Other` with the schema's lower-case name for types the IR does
/// not have, `Other("unknown")` for values past the schema).
pub(crate) fn tensor_type(t: i8) -> crate::ir::DataType {
    use crate::ir::DataType as D;
    match t {
        0 => D::Float32,
        1 => D::Float16,
        2 => D::Int32,
        3 => D::UInt8,
        4 => D::Int64,
        5 => D::Other("string"),
        6 => D::Bool,
        7 => D::Int16,
        8 => D::Other("complex64"),
        9 => D::Int8,
        10 => D::Other("float64"),
        11 => D::Other("complex128"),
        12 => D::Other("uint64"),
        13 => D::Other("resource"),
        14 => D::Other("variant"),
        15 => D::Other("uint32"),
        16 => D::Other("uint16"),
        17 => D::Other("int4"),
        18 => D::Other("bfloat16"),
        19 => D::Other("int2"),
        20 => D::Other("uint4"),
        21 => D::Other("float8_e4m3fn"),
        22 => D::Other("float8_e5m2"),
        _ => D::Other("unknown"),
    }
}

// ---------------------------------------------------------------------------------------------
// Verifiers. Each marker type verifies the fields of one table that the importer reads; fields
// it never reads are not visited (the reader bounds-checks every access regardless).

type VResult = Result<(), InvalidFlatbuffer>;
type TableVec<'a, T> = ForwardsUOffset<Vector<'a, ForwardsUOffset<T>>>;
type ScalarVec<'a, T> = ForwardsUOffset<Vector<'a, T>>;
type Str<'a> = ForwardsUOffset<&'a str>;

/// Verifies `table Model`.
pub(crate) struct ModelV;
/// Verifies `table SubGraph`.
pub(crate) struct SubGraphV;
/// Verifies `table Tensor`.
pub(crate) struct TensorV;
/// Verifies `table QuantizationParameters`.
pub(crate) struct QuantV;
/// Verifies `table Buffer`.
pub(crate) struct BufferV;
/// Verifies `table OperatorCode`.
pub(crate) struct OperatorCodeV;
/// Verifies `table Operator`.
pub(crate) struct OperatorV;
/// Verifies any table's header and vtable (for tables whose presence only is read).
pub(crate) struct AnyTableV;
/// Verifies `table Conv2DOptions`.
pub(crate) struct Conv2dOptionsV;
/// Verifies `table DepthwiseConv2DOptions`.
pub(crate) struct DepthwiseOptionsV;
/// Verifies `table Pool2DOptions`.
pub(crate) struct Pool2dOptionsV;
/// Verifies `table FullyConnectedOptions`.
pub(crate) struct FcOptionsV;
/// Verifies `table SoftmaxOptions`.
pub(crate) struct SoftmaxOptionsV;
/// Verifies `table ConcatenationOptions`.
pub(crate) struct ConcatOptionsV;
/// Verifies `table AddOptions`, `SubOptions`, `MulOptions`.
pub(crate) struct ArithOptionsV;
/// Verifies `table ReducerOptions`.
pub(crate) struct ReducerOptionsV;

impl Verifiable for ModelV {
    fn run_verifier(v: &mut Verifier, pos: usize) -> VResult {
        v.visit_table(pos)?
            .visit_field::<u32>("version", model::VERSION, false)?
            .visit_field::<TableVec<OperatorCodeV>>("operator_codes", model::OPERATOR_CODES, false)?
            .visit_field::<TableVec<SubGraphV>>("subgraphs", model::SUBGRAPHS, false)?
            .visit_field::<Str>("description", model::DESCRIPTION, false)?
            .visit_field::<TableVec<BufferV>>("buffers", model::BUFFERS, false)?
            .finish();
        Ok(())
    }
}

impl Verifiable for SubGraphV {
    fn run_verifier(v: &mut Verifier, pos: usize) -> VResult {
        v.visit_table(pos)?
            .visit_field::<TableVec<TensorV>>("tensors", subgraph::TENSORS, false)?
            .visit_field::<ScalarVec<i32>>("inputs", subgraph::INPUTS, false)?
            .visit_field::<ScalarVec<i32>>("outputs", subgraph::OUTPUTS, false)?
            .visit_field::<TableVec<OperatorV>>("operators", subgraph::OPERATORS, false)?
            .visit_field::<Str>("name", subgraph::NAME, false)?
            .finish();
        Ok(())
    }
}

impl Verifiable for TensorV {
    fn run_verifier(v: &mut Verifier, pos: usize) -> VResult {
        v.visit_table(pos)?
            .visit_field::<ScalarVec<i32>>("shape", tensor::SHAPE, false)?
            .visit_field::<i8>("type", tensor::TYPE, false)?
            .visit_field::<u32>("buffer", tensor::BUFFER, false)?
            .visit_field::<Str>("name", tensor::NAME, false)?
            .visit_field::<ForwardsUOffset<QuantV>>("quantization", tensor::QUANTIZATION, false)?
            .visit_field::<bool>("is_variable", tensor::IS_VARIABLE, false)?
            .visit_field::<ForwardsUOffset<AnyTableV>>("sparsity", tensor::SPARSITY, false)?
            .visit_field::<ScalarVec<i32>>("shape_signature", tensor::SHAPE_SIGNATURE, false)?
            .finish();
        Ok(())
    }
}

impl Verifiable for QuantV {
    fn run_verifier(v: &mut Verifier, pos: usize) -> VResult {
        v.visit_table(pos)?
            .visit_field::<ScalarVec<f32>>("scale", quant::SCALE, false)?
            .visit_field::<ScalarVec<i64>>("zero_point", quant::ZERO_POINT, false)?
            .visit_field::<u8>("details_type", quant::DETAILS_TYPE, false)?
            .visit_field::<ForwardsUOffset<AnyTableV>>("details", quant::DETAILS, false)?
            .visit_field::<i32>("quantized_dimension", quant::QUANTIZED_DIMENSION, false)?
            .finish();
        Ok(())
    }
}

impl Verifiable for BufferV {
    fn run_verifier(v: &mut Verifier, pos: usize) -> VResult {
        v.visit_table(pos)?
            .visit_field::<ScalarVec<u8>>("data", buffer::DATA, false)?
            .visit_field::<u64>("offset", buffer::OFFSET, false)?
            .visit_field::<u64>("size", buffer::SIZE, false)?
            .finish();
        Ok(())
    }
}

impl Verifiable for OperatorCodeV {
    fn run_verifier(v: &mut Verifier, pos: usize) -> VResult {
        v.visit_table(pos)?
            .visit_field::<i8>(
                "deprecated_builtin_code",
                opcode::DEPRECATED_BUILTIN_CODE,
                false,
            )?
            .visit_field::<Str>("custom_code", opcode::CUSTOM_CODE, false)?
            .visit_field::<i32>("version", opcode::VERSION, false)?
            .visit_field::<i32>("builtin_code", opcode::BUILTIN_CODE, false)?
            .finish();
        Ok(())
    }
}

impl Verifiable for OperatorV {
    fn run_verifier(v: &mut Verifier, pos: usize) -> VResult {
        v.visit_table(pos)?
            .visit_field::<u32>("opcode_index", operator::OPCODE_INDEX, false)?
            .visit_field::<ScalarVec<i32>>("inputs", operator::INPUTS, false)?
            .visit_field::<ScalarVec<i32>>("outputs", operator::OUTPUTS, false)?
            .visit_union::<u8, _>(
                "builtin_options_type",
                operator::BUILTIN_OPTIONS_TYPE,
                "builtin_options",
                operator::BUILTIN_OPTIONS,
                false,
                verify_builtin_options,
            )?
            .finish();
        Ok(())
    }
}

/// Verifies the `builtin_options` union value at `pos` (a uoffset) given its type byte.
fn verify_builtin_options(ty: u8, v: &mut Verifier, pos: usize) -> VResult {
    use options_type as t;
    match ty {
        t::CONV2D => {
            v.verify_union_variant::<ForwardsUOffset<Conv2dOptionsV>>("Conv2DOptions", pos)
        }
        t::DEPTHWISE_CONV2D => v.verify_union_variant::<ForwardsUOffset<DepthwiseOptionsV>>(
            "DepthwiseConv2DOptions",
            pos,
        ),
        t::POOL2D => {
            v.verify_union_variant::<ForwardsUOffset<Pool2dOptionsV>>("Pool2DOptions", pos)
        }
        t::FULLY_CONNECTED => {
            v.verify_union_variant::<ForwardsUOffset<FcOptionsV>>("FullyConnectedOptions", pos)
        }
        t::SOFTMAX => {
            v.verify_union_variant::<ForwardsUOffset<SoftmaxOptionsV>>("SoftmaxOptions", pos)
        }
        t::CONCATENATION => {
            v.verify_union_variant::<ForwardsUOffset<ConcatOptionsV>>("ConcatenationOptions", pos)
        }
        t::ADD | t::SUB | t::MUL => {
            v.verify_union_variant::<ForwardsUOffset<ArithOptionsV>>("Add/Sub/MulOptions", pos)
        }
        t::REDUCER => {
            v.verify_union_variant::<ForwardsUOffset<ReducerOptionsV>>("ReducerOptions", pos)
        }
        // Options of operators the importer does not read: never followed.
        _ => Ok(()),
    }
}

impl Verifiable for AnyTableV {
    fn run_verifier(v: &mut Verifier, pos: usize) -> VResult {
        v.visit_table(pos)?.finish();
        Ok(())
    }
}

impl Verifiable for Conv2dOptionsV {
    fn run_verifier(v: &mut Verifier, pos: usize) -> VResult {
        use conv2d_options as f;
        v.visit_table(pos)?
            .visit_field::<i8>("padding", f::PADDING, false)?
            .visit_field::<i32>("stride_w", f::STRIDE_W, false)?
            .visit_field::<i32>("stride_h", f::STRIDE_H, false)?
            .visit_field::<i8>("fused_activation_function", f::FUSED_ACTIVATION, false)?
            .visit_field::<i32>("dilation_w_factor", f::DILATION_W, false)?
            .visit_field::<i32>("dilation_h_factor", f::DILATION_H, false)?
            .finish();
        Ok(())
    }
}

impl Verifiable for DepthwiseOptionsV {
    fn run_verifier(v: &mut Verifier, pos: usize) -> VResult {
        use depthwise_options as f;
        v.visit_table(pos)?
            .visit_field::<i8>("padding", f::PADDING, false)?
            .visit_field::<i32>("stride_w", f::STRIDE_W, false)?
            .visit_field::<i32>("stride_h", f::STRIDE_H, false)?
            .visit_field::<i32>("depth_multiplier", f::DEPTH_MULTIPLIER, false)?
            .visit_field::<i8>("fused_activation_function", f::FUSED_ACTIVATION, false)?
            .visit_field::<i32>("dilation_w_factor", f::DILATION_W, false)?
            .visit_field::<i32>("dilation_h_factor", f::DILATION_H, false)?
            .finish();
        Ok(())
    }
}

impl Verifiable for Pool2dOptionsV {
    fn run_verifier(v: &mut Verifier, pos: usize) -> VResult {
        use pool2d_options as f;
        v.visit_table(pos)?
            .visit_field::<i8>("padding", f::PADDING, false)?
            .visit_field::<i32>("stride_w", f::STRIDE_W, false)?
            .visit_field::<i32>("stride_h", f::STRIDE_H, false)?
            .visit_field::<i32>("filter_width", f::FILTER_W, false)?
            .visit_field::<i32>("filter_height", f::FILTER_H, false)?
            .visit_field::<i8>("fused_activation_function", f::FUSED_ACTIVATION, false)?
            .finish();
        Ok(())
    }
}

impl Verifiable for FcOptionsV {
    fn run_verifier(v: &mut Verifier, pos: usize) -> VResult {
        use fc_options as f;
        v.visit_table(pos)?
            .visit_field::<i8>("fused_activation_function", f::FUSED_ACTIVATION, false)?
            .visit_field::<i8>("weights_format", f::WEIGHTS_FORMAT, false)?
            .visit_field::<bool>("keep_num_dims", f::KEEP_NUM_DIMS, false)?
            .finish();
        Ok(())
    }
}

impl Verifiable for SoftmaxOptionsV {
    fn run_verifier(v: &mut Verifier, pos: usize) -> VResult {
        v.visit_table(pos)?
            .visit_field::<f32>("beta", softmax_options::BETA, false)?
            .finish();
        Ok(())
    }
}

impl Verifiable for ConcatOptionsV {
    fn run_verifier(v: &mut Verifier, pos: usize) -> VResult {
        use concat_options as f;
        v.visit_table(pos)?
            .visit_field::<i32>("axis", f::AXIS, false)?
            .visit_field::<i8>("fused_activation_function", f::FUSED_ACTIVATION, false)?
            .finish();
        Ok(())
    }
}

impl Verifiable for ArithOptionsV {
    fn run_verifier(v: &mut Verifier, pos: usize) -> VResult {
        v.visit_table(pos)?
            .visit_field::<i8>(
                "fused_activation_function",
                arith_options::FUSED_ACTIVATION,
                false,
            )?
            .finish();
        Ok(())
    }
}

impl Verifiable for ReducerOptionsV {
    fn run_verifier(v: &mut Verifier, pos: usize) -> VResult {
        v.visit_table(pos)?
            .visit_field::<bool>("keep_dims", reducer_options::KEEP_DIMS, false)?
            .finish();
        Ok(())
    }
}
