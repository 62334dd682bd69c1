//! The compiler's error type: each error names what is wrong and where.

use thiserror::Error;

/// Everything that can go wrong while importing, compiling or writing a model.
#[derive(Debug, Error)]
pub enum CompileError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The source model is malformed.
    #[error("malformed {format} model: {what}")]
    Malformed {
        /// `TFLite`, `ONNX`, ...
        format: &'static str,
        /// What is wrong and where (byte offset, table, field).
        what: String,
    },
    /// An operator (or a variant of one) the compiler or runtime does not support.
    #[error("op {index} ({op}) is not supported: {reason}")]
    Unsupported {
        /// Index of the op in the source model's execution order.
        index: usize,
        /// Operator name, e.g. `SVDF`.
        op: String,
        /// Which variant or why.
        reason: String,
    },
    /// A tensor's shape, type or quantization does not fit its operator.
    #[error("op {index} ({op}): {what}")]
    InvalidOp {
        /// Index of the op.
        index: usize,
        /// Operator name.
        op: String,
        /// What is wrong.
        what: String,
    },
    /// The model does not fit a format limit (e.g. a tensor over 4 GiB).
    #[error("model exceeds a format limit: {0}")]
    Limit(String),
    /// A command asks for something this machine or build cannot do (unknown target profile,
    /// clock or meter unavailable, bad option value).
    #[error("{0}")]
    Usage(String),
    /// The written model failed the runtime's own validation (a compiler bug).
    #[error("internal error: the runtime refused the compiled model: {0}")]
    Runtime(#[from] mote_runtime::Error),
}
