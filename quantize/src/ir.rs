//! The compiler's one intermediate representation: a graph of tensors and operators.
//!
//! Every importer (TFLite today; ONNX and float models later) produces a [`Graph`]; every later
//! stage (quantization, pruning, lowering, planning) reads or rewrites one. Operators keep the
//! options of their source format in a normalised form ([`Operator`]); ops the compiler does not
//! know are kept as [`Operator::Unsupported`] with their name so that lowering can refuse them by
//! name and index.

use std::fmt;

/// Index of a tensor in [`Graph::tensors`].
pub type TensorId = usize;

/// Element types the IR can hold (a superset of what the runtime executes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// Signed 8-bit integer.
    Int8,
    /// Unsigned 8-bit integer.
    UInt8,
    /// Signed 16-bit integer.
    Int16,
    /// Signed 32-bit integer.
    Int32,
    /// Signed 64-bit integer.
    Int64,
    /// Signed 4-bit integer; constant data is packed two per byte in the runtime's order
    /// (`mote_runtime::DType::Int4`), so a tensor holds `ceil(n / 2)` bytes.
    Int4,
    /// IEEE 754 half precision.
    Float16,
    /// IEEE 754 single precision.
    Float32,
    /// Boolean (one byte).
    Bool,
    /// Any other type, by its source-format name.
    Other(&'static str),
}

impl DataType {
    /// Bytes per element (packed types report 1).
    pub fn size(self) -> usize {
        match self {
            DataType::Int8 | DataType::UInt8 | DataType::Bool | DataType::Other(_) => 1,
            DataType::Int4 => 1,
            DataType::Int16 | DataType::Float16 => 2,
            DataType::Int32 | DataType::Float32 => 4,
            DataType::Int64 => 8,
        }
    }
    /// numpy-style name.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Int8 => "int8",
            DataType::UInt8 => "uint8",
            DataType::Int16 => "int16",
            DataType::Int32 => "int32",
            DataType::Int64 => "int64",
            DataType::Int4 => "int4",
            DataType::Float16 => "float16",
            DataType::Float32 => "float32",
            DataType::Bool => "bool",
            DataType::Other(n) => n,
        }
    }
    /// The runtime element type, if the runtime can hold this type.
    pub fn to_runtime(self) -> Option<mote_runtime::DType> {
        use mote_runtime::DType as R;
        match self {
            DataType::Int8 => Some(R::Int8),
            DataType::UInt8 => Some(R::UInt8),
            DataType::Int16 => Some(R::Int16),
            DataType::Int32 => Some(R::Int32),
            DataType::Float32 => Some(R::Float32),
            DataType::Int4 => Some(R::Int4),
            DataType::Int64 => Some(R::Int64),
            DataType::Float16 => Some(R::Float16),
            _ => None,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Affine quantization: `real = scale × (q − zero_point)`, per tensor or per channel along `axis`.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantization {
    /// One scale per tensor, or one per channel along `axis`.
    pub scales: Vec<f32>,
    /// Zero points, as many as `scales`.
    pub zero_points: Vec<i64>,
    /// The channel axis for per-channel quantization (TFLite's `quantized_dimension`).
    pub axis: usize,
}

impl Quantization {
    /// Per-tensor quantization.
    pub fn per_tensor(scale: f32, zero_point: i64) -> Self {
        Quantization {
            scales: vec![scale],
            zero_points: vec![zero_point],
            axis: 0,
        }
    }
    /// Whether there is one scale for the whole tensor.
    pub fn is_per_tensor(&self) -> bool {
        self.scales.len() == 1
    }
    /// The per-tensor scale (the first one when per-channel).
    pub fn scale(&self) -> f32 {
        self.scales.first().copied().unwrap_or(0.0)
    }
    /// The per-tensor zero point (the first one when per-channel).
    pub fn zero_point(&self) -> i64 {
        self.zero_points.first().copied().unwrap_or(0)
    }
}

/// One tensor of the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Name from the source model (may be empty).
    pub name: String,
    /// Dimensions (empty for a scalar).
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DataType,
    /// Quantization parameters, if quantized.
    pub quant: Option<Quantization>,
    /// Constant data (raw little-endian), if this tensor is a constant.
    pub data: Option<Vec<u8>>,
}

impl Tensor {
    /// Number of elements.
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
    /// Size in bytes (`ceil(n / 2)` for packed int4).
    pub fn bytes(&self) -> usize {
        match self.dtype {
            DataType::Int4 => self.elements().div_ceil(2),
            _ => self.elements() * self.dtype.size(),
        }
    }
    /// Whether the tensor is a constant.
    pub fn is_const(&self) -> bool {
        self.data.is_some()
    }
    /// Per-tensor scale and zero point, or `None` when not quantized.
    pub fn scale_zp(&self) -> Option<(f32, i64)> {
        self.quant.as_ref().map(|q| (q.scale(), q.zero_point()))
    }
}

/// Padding scheme of convolutions and pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Output size = ceil(input / stride); pad evenly, extra at the end.
    Same,
    /// No padding.
    Valid,
}

/// Activation fused into an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// None.
    None,
    /// max(x, 0).
    Relu,
    /// clamp(x, -1, 1).
    ReluN1To1,
    /// clamp(x, 0, 6).
    Relu6,
    /// tanh (not supported fused).
    Tanh,
    /// sign bit (not supported fused).
    SignBit,
}

/// Options of 2-D convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// Padding scheme.
    pub padding: Padding,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Vertical dilation.
    pub dilation_h: usize,
    /// Horizontal dilation.
    pub dilation_w: usize,
    /// Fused activation.
    pub activation: Activation,
    /// Depth multiplier (depthwise only; 1 otherwise).
    pub depth_multiplier: usize,
}

/// Options of 2-D pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2dOptions {
    /// Padding scheme.
    pub padding: Padding,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Window height.
    pub filter_h: usize,
    /// Window width.
    pub filter_w: usize,
    /// Fused activation.
    pub activation: Activation,
}

/// An operator with its options.
#[derive(Debug, Clone, PartialEq)]
pub enum Operator {
    /// inputs: input NHWC, filter OHWI, bias (optional).
    Conv2d(Conv2dOptions),
    /// inputs: input NHWC, filter 1HW(C·M), bias (optional).
    DepthwiseConv2d(Conv2dOptions),
    /// inputs: input, weights [out, in], bias (optional).
    FullyConnected {
        /// Fused activation.
        activation: Activation,
        /// Keep the leading dimensions of the input instead of flattening to 2-D.
        keep_num_dims: bool,
    },
    /// Average pooling.
    AveragePool2d(Pool2dOptions),
    /// Max pooling.
    MaxPool2d(Pool2dOptions),
    /// Element-wise add with broadcasting.
    Add {
        /// Fused activation.
        activation: Activation,
    },
    /// Element-wise subtract with broadcasting.
    Sub {
        /// Fused activation.
        activation: Activation,
    },
    /// Element-wise multiply with broadcasting.
    Mul {
        /// Fused activation.
        activation: Activation,
    },
    /// Reshape (the new shape is the output tensor's shape).
    Reshape,
    /// Squeeze (the new shape is the output tensor's shape).
    Squeeze,
    /// Softmax over the last axis.
    Softmax {
        /// Inverse temperature.
        beta: f32,
    },
    /// Logistic sigmoid.
    Logistic,
    /// Hyperbolic tangent.
    Tanh,
    /// max(x, 0).
    Relu,
    /// clamp(x, 0, 6).
    Relu6,
    /// Quantize (float → int) or requantize (int → int).
    Quantize,
    /// Dequantize (int → float).
    Dequantize,
    /// Concatenation.
    Concatenation {
        /// Axis (non-negative, already normalised).
        axis: usize,
        /// Fused activation.
        activation: Activation,
    },
    /// Pad with the zero point (PAD) or an explicit constant (PADV2: third input).
    Pad,
    /// Mean over the axes given by the second (constant) input.
    Mean {
        /// Keep reduced dimensions as size 1.
        keep_dims: bool,
    },
    /// An operator the compiler does not support, by its source-format name.
    Unsupported {
        /// e.g. `SVDF`, or `CONV_2D (int16 activations)`.
        name: String,
    },
}

impl Operator {
    /// The TFLite-style name.
    pub fn name(&self) -> &str {
        match self {
            Operator::Conv2d(_) => "CONV_2D",
            Operator::DepthwiseConv2d(_) => "DEPTHWISE_CONV_2D",
            Operator::FullyConnected { .. } => "FULLY_CONNECTED",
            Operator::AveragePool2d(_) => "AVERAGE_POOL_2D",
            Operator::MaxPool2d(_) => "MAX_POOL_2D",
            Operator::Add { .. } => "ADD",
            Operator::Sub { .. } => "SUB",
            Operator::Mul { .. } => "MUL",
            Operator::Reshape => "RESHAPE",
            Operator::Squeeze => "SQUEEZE",
            Operator::Softmax { .. } => "SOFTMAX",
            Operator::Logistic => "LOGISTIC",
            Operator::Tanh => "TANH",
            Operator::Relu => "RELU",
            Operator::Relu6 => "RELU6",
            Operator::Quantize => "QUANTIZE",
            Operator::Dequantize => "DEQUANTIZE",
            Operator::Concatenation { .. } => "CONCATENATION",
            Operator::Pad => "PAD",
            Operator::Mean { .. } => "MEAN",
            Operator::Unsupported { name } => name,
        }
    }
}

/// One node of the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The operator and its options.
    pub op: Operator,
    /// Input tensors; `None` for an absent optional input.
    pub inputs: Vec<Option<TensorId>>,
    /// Output tensors.
    pub outputs: Vec<TensorId>,
}

/// A model: tensors, nodes in a valid execution order, and the graph's inputs and outputs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Graph {
    /// All tensors.
    pub tensors: Vec<Tensor>,
    /// Nodes in execution order.
    pub nodes: Vec<Node>,
    /// Graph inputs.
    pub inputs: Vec<TensorId>,
    /// Graph outputs.
    pub outputs: Vec<TensorId>,
}

impl Graph {
    /// The tensor `id`.
    pub fn tensor(&self, id: TensorId) -> &Tensor {
        &self.tensors[id]
    }
}
