//! The runtime's error type: every failure names what is wrong and where.

use core::fmt;

/// Which part of a `.mote` file an error refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The file header.
    Header,
    /// A section of the file, by [`crate::format::SectionId`] index.
    Section(usize),
    /// A tensor, by index.
    Tensor(u32),
    /// An operator, by index in execution order.
    Op(u32),
    /// A model input, by position.
    Input(u32),
    /// A model output, by position.
    Output(u32),
    /// The caller's arena.
    Arena,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Header => f.write_str("header"),
            Location::Section(i) => write!(f, "section {i}"),
            Location::Tensor(i) => write!(f, "tensor {i}"),
            Location::Op(i) => write!(f, "op {i}"),
            Location::Input(i) => write!(f, "input {i}"),
            Location::Output(i) => write!(f, "output {i}"),
            Location::Arena => f.write_str("arena"),
        }
    }
}

/// Everything that can go wrong when reading a model, binding an arena or running an inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The byte string is shorter than a field it must contain.
    Truncated {
        /// What was being read.
        at: Location,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The file does not start with `MOTE`.
    BadMagic,
    /// The file was written for a format version this runtime does not read.
    UnsupportedVersion {
        /// Version in the file.
        found: u16,
        /// Newest version this runtime reads.
        supported: u16,
    },
    /// The CRC-32 of the body does not match the header.
    BadChecksum {
        /// Checksum stored in the header.
        expected: u32,
        /// Checksum of the bytes.
        actual: u32,
    },
    /// Bytes that must be aligned are not (model buffer, section, tensor or arena).
    Misaligned {
        /// What is misaligned.
        at: Location,
        /// Required alignment in bytes.
        align: usize,
    },
    /// An offset or length points outside its section or the arena.
    OutOfBounds {
        /// Which item holds the offset.
        at: Location,
        /// Offset that was read.
        offset: usize,
        /// Length that was read.
        len: usize,
        /// Size of the region it must lie in.
        limit: usize,
    },
    /// A field holds a value that is not allowed.
    InvalidField {
        /// Which item holds the field.
        at: Location,
        /// Name of the field.
        field: &'static str,
    },
    /// A tensor's shape or type does not fit the operator that uses it.
    ShapeMismatch {
        /// Which op.
        op: u32,
        /// Which tensor.
        tensor: u32,
        /// What the op expected.
        expected: &'static str,
    },
    /// An operator kind or variant this runtime does not implement.
    UnsupportedOp {
        /// Which op.
        op: u32,
        /// The kind number from the file.
        kind: u16,
    },
    /// The arena is smaller than the model needs.
    ArenaTooSmall {
        /// Bytes the model needs.
        needed: usize,
        /// Bytes given.
        given: usize,
    },
    /// An input or output index does not exist.
    NoSuchTensor {
        /// The position asked for.
        at: Location,
    },
    /// A typed access used the wrong element type.
    WrongDType {
        /// Which input/output/tensor.
        at: Location,
        /// The tensor's element type.
        actual: &'static str,
        /// The type asked for.
        requested: &'static str,
    },
    /// Input data of the wrong size was given.
    WrongSize {
        /// Which input or output.
        at: Location,
        /// Bytes the tensor holds.
        expected: usize,
        /// Bytes given.
        given: usize,
    },
    /// A profile buffer ([`crate::profile::OpTiming`] slice) has fewer entries than the model has
    /// operators.
    ProfileTooSmall {
        /// Operators in the model.
        needed: usize,
        /// Entries given.
        given: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated { at, needed, available } => write!(
                f,
                "truncated model: {at} needs {needed} bytes but only {available} are there"
            ),
            Error::BadMagic => f.write_str("not a .mote file: the first four bytes are not \"MOTE\""),
            Error::UnsupportedVersion { found, supported } => write!(
                f,
                "model format version {found} is newer than this runtime reads (up to {supported}); upgrade mote-runtime"
            ),
            Error::BadChecksum { expected, actual } => write!(
                f,
                "corrupted model: CRC-32 of the body is {actual:#010x}, the header says {expected:#010x}"
            ),
            Error::Misaligned { at, align } => write!(
                f,
                "{at} is not aligned to {align} bytes (load models with mote_runtime::AlignedModel / include_model!, and use mote_runtime::Arena for arenas)"
            ),
            Error::OutOfBounds { at, offset, len, limit } => write!(
                f,
                "{at}: bytes {offset}..{} are outside the {limit}-byte region they must lie in",
                offset.saturating_add(len)
            ),
            Error::InvalidField { at, field } => write!(f, "{at}: invalid value in field `{field}`"),
            Error::ShapeMismatch { op, tensor, expected } => {
                write!(f, "op {op}: tensor {tensor} does not fit: expected {expected}")
            }
            Error::UnsupportedOp { op, kind } => {
                write!(f, "op {op}: operator kind {kind} is not supported by this runtime")
            }
            Error::ArenaTooSmall { needed, given } => write!(
                f,
                "arena too small: the model needs {needed} bytes, {given} were given"
            ),
            Error::NoSuchTensor { at } => write!(f, "{at} does not exist in this model"),
            Error::WrongDType { at, actual, requested } => {
                write!(f, "{at} holds {actual}, not {requested}")
            }
            Error::WrongSize { at, expected, given } => {
                write!(f, "{at} holds {expected} bytes, {given} were given")
            }
            Error::ProfileTooSmall { needed, given } => write!(
                f,
                "profile buffer too small: the model has {needed} ops, the buffer holds {given} entries"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}
