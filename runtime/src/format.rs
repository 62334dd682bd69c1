//! The `.mote` file layout, defined once for the reader (this crate) and the writer (`mote-quantize`).
//!
//! A `.mote` file is little-endian and made of a fixed [`Header`] followed by sections. Every
//! section starts on a 16-byte boundary so that SIMD loads and `bytemuck` casts work straight from
//! flash. All structs here are plain `#[repr(C)]` [`bytemuck::Pod`] data: the writer serialises
//! them with `bytemuck::bytes_of`, the reader casts the bytes back without copying.
//!
//! ```text
//! offset 0   Header (112 bytes)       magic, version, length, CRC-32 of the body, arena size, section table
//!            TENSORS  [TensorDesc]   shape, dtype, quantization, storage (arena / constant)
//!            OPS      [OpDesc]       kind, where its tensor indices and parameters are
//!            INDICES  [u32]          op inputs/outputs and the model's inputs/outputs (tensor indices)
//!            PARAMS   bytes          per-op parameter structs (see `crate::params`), 4-byte aligned
//!            CONSTS   bytes          weights, biases, per-channel multipliers/shifts, tables; 16-byte aligned each
//!            COSTS    [OpCost]       per-op MACs and bytes moved (for latency and energy models)
//!            NAMES    bytes          optional UTF-8 names (tensor and op names), NUL-free, length-prefixed
//! ```

use bytemuck::{Pod, Zeroable};

/// The four bytes every `.mote` file starts with.
pub const MAGIC: [u8; 4] = *b"MOTE";
/// The format version this runtime reads and the compiler writes. A file with a newer version is refused.
/// Version 2: CONV_2D and FULLY_CONNECTED parameters name an optional packed weight layout.
pub const FORMAT_VERSION: u16 = 2;
/// Alignment, in bytes, of every section, of every constant, and of every arena tensor.
pub const ALIGN: usize = 16;
/// Largest tensor rank the format stores.
pub const MAX_RANK: usize = 6;
/// Marks an absent optional input (e.g. a fully connected layer without bias) or an absent name.
pub const NONE: u32 = u32::MAX;

/// Index of each section in [`Header::sections`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum SectionId {
    /// `[TensorDesc]`.
    Tensors = 0,
    /// `[OpDesc]`.
    Ops = 1,
    /// `[u32]` tensor indices.
    Indices = 2,
    /// Op parameter structs.
    Params = 3,
    /// Constant data.
    Consts = 4,
    /// `[OpCost]`, one per op.
    Costs = 5,
    /// Names and metadata.
    Names = 6,
}

/// Number of entries in the section table.
pub const SECTION_COUNT: usize = 8;

/// Location of one section, relative to the start of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct Section {
    /// Byte offset from the start of the file (multiple of [`ALIGN`]).
    pub offset: u32,
    /// Length in bytes.
    pub len: u32,
}

/// The fixed-size header at offset 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 4],
    /// [`FORMAT_VERSION`] of the writer.
    pub version: u16,
    /// Reserved flags, zero in version 1.
    pub flags: u16,
    /// Total length of the file in bytes.
    pub file_len: u32,
    /// CRC-32 (IEEE) of bytes `[size_of::<Header>()..file_len]`.
    pub crc32: u32,
    /// Exact arena size in bytes the model needs (activations and scratch).
    pub arena_bytes: u32,
    /// Number of tensors in the tensor section.
    pub tensor_count: u32,
    /// Number of operators, in execution order.
    pub op_count: u32,
    /// Number of model inputs.
    pub input_count: u16,
    /// Number of model outputs.
    pub output_count: u16,
    /// Start, in the index section, of the model's input tensor indices (outputs follow).
    pub io_start: u32,
    /// Reserved, zero.
    pub reserved: [u32; 3],
    /// Section table, indexed by [`SectionId`].
    pub sections: [Section; SECTION_COUNT],
}

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DType {
    /// Signed 8-bit integer.
    Int8 = 1,
    /// Unsigned 8-bit integer.
    UInt8 = 2,
    /// Signed 16-bit integer.
    Int16 = 3,
    /// Signed 32-bit integer.
    Int32 = 4,
    /// IEEE 754 single precision.
    Float32 = 5,
    /// Signed 4-bit integer, packed two per byte (constant weights only). Element `i` of the
    /// tensor (row-major) lives in byte `i / 2`: even `i` in the low nibble (bits 0..4), odd `i`
    /// in the high nibble (bits 4..8), as TFLite packs int4. A nibble is a two's-complement
    /// value in `[-8, 7]` (sign-extended from bit 3); the compiler writes `[-7, 7]` only. An odd
    /// element count leaves the last high nibble zero. The tensor holds `ceil(n / 2)` bytes.
    Int4 = 6,
    /// IEEE 754 half precision (binary16), little-endian (constant weights of the f16 scheme).
    Float16 = 7,
    /// Signed 64-bit integer (the bias of 16x8 convolutions and fully connected layers).
    Int64 = 8,
}

impl DType {
    /// Decodes the on-disk byte.
    pub const fn from_u8(v: u8) -> Option<DType> {
        match v {
            1 => Some(DType::Int8),
            2 => Some(DType::UInt8),
            3 => Some(DType::Int16),
            4 => Some(DType::Int32),
            5 => Some(DType::Float32),
            6 => Some(DType::Int4),
            7 => Some(DType::Float16),
            8 => Some(DType::Int64),
            _ => None,
        }
    }
    /// Size of one element in bytes (1 for the packed [`DType::Int4`]: the unit of alignment;
    /// see [`DType::storage_bytes`] for a tensor's length).
    pub const fn size(self) -> usize {
        match self {
            DType::Int8 | DType::UInt8 | DType::Int4 => 1,
            DType::Int16 | DType::Float16 => 2,
            DType::Int32 | DType::Float32 => 4,
            DType::Int64 => 8,
        }
    }
    /// Bytes a tensor of `elements` elements occupies (`ceil(n / 2)` for [`DType::Int4`]), or
    /// `None` on overflow.
    pub const fn storage_bytes(self, elements: u64) -> Option<u64> {
        match self {
            DType::Int4 => Some(elements / 2 + elements % 2),
            _ => elements.checked_mul(self.size() as u64),
        }
    }
    /// Lower-case name as used by TFLite and numpy (`int8`, `float32`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            DType::Int8 => "int8",
            DType::UInt8 => "uint8",
            DType::Int16 => "int16",
            DType::Int32 => "int32",
            DType::Float32 => "float32",
            DType::Int4 => "int4",
            DType::Float16 => "float16",
            DType::Int64 => "int64",
        }
    }
}

/// Where a tensor's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Storage {
    /// In the caller's arena at `TensorDesc::offset`.
    Arena = 0,
    /// In the file's constant section at `TensorDesc::offset` (zero-copy from flash).
    Const = 1,
}

impl Storage {
    /// Decodes the on-disk byte.
    pub const fn from_u8(v: u8) -> Option<Storage> {
        match v {
            0 => Some(Storage::Arena),
            1 => Some(Storage::Const),
            _ => None,
        }
    }
}

/// One tensor: shape, element type, quantization and where its bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct TensorDesc {
    /// Dimensions; entries past `rank` are zero.
    pub shape: [u32; MAX_RANK],
    /// Number of dimensions (0 for a scalar).
    pub rank: u8,
    /// [`DType`] as a byte.
    pub dtype: u8,
    /// [`Storage`] as a byte.
    pub storage: u8,
    /// Reserved, zero.
    pub reserved: u8,
    /// Quantization scale (per tensor); 0.0 when the tensor is not quantized or is per-channel.
    pub scale: f32,
    /// Quantization zero point (per tensor).
    pub zero_point: i32,
    /// Byte offset in the arena or in the constant section, by `storage`.
    pub offset: u32,
    /// Length in bytes (= element count × dtype size).
    pub bytes: u32,
    /// Offset of the name in the names section, or [`NONE`].
    pub name: u32,
}

impl TensorDesc {
    /// The dimensions actually used.
    pub fn dims(&self) -> &[u32] {
        let r = (self.rank as usize).min(MAX_RANK);
        &self.shape[..r]
    }
    /// Number of elements (1 for a scalar), saturating on overflow.
    #[inline(never)]
    pub fn elements(&self) -> u64 {
        self.dims()
            .iter()
            .fold(1u64, |acc, &d| acc.saturating_mul(d as u64))
    }
    /// Decoded element type, if valid.
    pub fn dtype(&self) -> Option<DType> {
        DType::from_u8(self.dtype)
    }
    /// Decoded storage, if valid.
    pub fn storage(&self) -> Option<Storage> {
        Storage::from_u8(self.storage)
    }
}

/// One operator in execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct OpDesc {
    /// [`crate::OpKind`] as a number.
    pub kind: u16,
    /// Number of inputs (including absent optional ones, stored as [`NONE`]).
    pub input_count: u8,
    /// Number of outputs.
    pub output_count: u8,
    /// Start of this op's tensor indices in the index section: inputs, then outputs.
    pub io_start: u32,
    /// Byte offset of this op's parameter struct in the params section.
    pub params_offset: u32,
    /// Length of the parameter struct in bytes.
    pub params_len: u32,
    /// Byte offset of this op's scratch buffer in the arena (when `scratch_bytes > 0`).
    pub scratch_offset: u32,
    /// Scratch bytes this op needs in the arena.
    pub scratch_bytes: u32,
    /// Offset of the op's name in the names section, or [`NONE`].
    pub name: u32,
    /// How the op shares arena bytes between its inputs and output, and fused epilogues: see
    /// [`OpFlags`] (zero: the output overlaps no input).
    pub flags: u32,
}

/// Decoded [`OpDesc::flags`]: how an op's output may share arena bytes with an input, and what
/// is fused after the op's own computation.
///
/// ```text
/// bits 0..4   in-place mode   0 = separate, 1 = alias, 2 = shift down, 3 = shift up
/// bits 8..16  alias input     the input index that the output aliases (mode 1 only)
/// bit  16     epilogue ADD    CONV_2D only: one more input (the residual, last), and the params
///                             are the op's own struct followed by an `ArithParams` (ADD)
/// bit  17     residual first  the residual is the ADD's first operand (else its second)
/// bit  18     chained conv    with bit 16, CONV_2D only: a second CONV_2D runs on this one's
///                             output, streamed row by row through the op's scratch, before the
///                             ADD (a residual block; see `ops::chain`)
/// others      zero
/// ```
///
/// The runtime allows exactly the overlap the mode names (see `ops::inplace`):
/// - separate: the output overlaps no input;
/// - alias: the output occupies exactly the bytes of input `k` (element-wise kinds, RESHAPE,
///   SQUEEZE, ADD/SUB/MUL on a non-broadcast input, QUANTIZE between types of one size, and the
///   residual of an epilogue ADD);
/// - shift down / up: CONV_2D or DEPTHWISE_CONV_2D computes over its own input 0 (or QUANTIZE /
///   DEQUANTIZE between types of different sizes, element by element): the output starts at least
///   a validated number of bytes below (down: rows computed first to last) or above (up: last to
///   first) the input, so that each band of output rows lands on input bytes no later row reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpFlags {
    /// The in-place mode.
    pub in_place: InPlace,
    /// A fused ADD after the op, with the residual as the last input.
    pub epilogue_add: bool,
    /// The residual is the ADD's first operand (TFLite's `input1`).
    pub residual_first: bool,
    /// A second CONV_2D follows the op's own, before the ADD (needs `epilogue_add`).
    pub chain: bool,
}

/// How an op's output shares arena bytes with its inputs (bits 0..16 of [`OpDesc::flags`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InPlace {
    /// The output overlaps no input.
    #[default]
    Separate,
    /// The output occupies exactly the bytes of the given input.
    Alias(u8),
    /// The output starts below input 0; output rows are computed first to last.
    ShiftDown,
    /// The output starts above input 0; output rows are computed last to first.
    ShiftUp,
}

impl OpFlags {
    const MODE_MASK: u32 = 0xF;
    const ALIAS_SHIFT: u32 = 8;
    const EPILOGUE_ADD: u32 = 1 << 16;
    const RESIDUAL_FIRST: u32 = 1 << 17;
    const CHAIN: u32 = 1 << 18;

    /// Decodes the on-disk word, or `None` if it sets an unknown bit or mode.
    #[inline(never)]
    pub const fn from_u32(v: u32) -> Option<OpFlags> {
        let known = Self::MODE_MASK
            | (0xFF << Self::ALIAS_SHIFT)
            | Self::EPILOGUE_ADD
            | Self::RESIDUAL_FIRST
            | Self::CHAIN;
        if v & !known != 0 {
            return None;
        }
        let k = ((v >> Self::ALIAS_SHIFT) & 0xFF) as u8;
        let in_place = match v & Self::MODE_MASK {
            0 => InPlace::Separate,
            1 => InPlace::Alias(k),
            2 => InPlace::ShiftDown,
            3 => InPlace::ShiftUp,
            _ => return None,
        };
        if k != 0 && !matches!(in_place, InPlace::Alias(_)) {
            return None;
        }
        let epilogue_add = v & Self::EPILOGUE_ADD != 0;
        let residual_first = v & Self::RESIDUAL_FIRST != 0;
        let chain = v & Self::CHAIN != 0;
        if (residual_first || chain) && !epilogue_add {
            return None;
        }
        Some(OpFlags {
            in_place,
            epilogue_add,
            residual_first,
            chain,
        })
    }

    /// The on-disk word.
    pub const fn to_u32(self) -> u32 {
        let mode = match self.in_place {
            InPlace::Separate => 0,
            InPlace::Alias(k) => 1 | ((k as u32) << Self::ALIAS_SHIFT),
            InPlace::ShiftDown => 2,
            InPlace::ShiftUp => 3,
        };
        mode | if self.epilogue_add {
            Self::EPILOGUE_ADD
        } else {
            0
        } | if self.residual_first {
            Self::RESIDUAL_FIRST
        } else {
            0
        } | if self.chain { Self::CHAIN } else { 0 }
    }
}

/// What one operator costs, counted by the compiler (for latency and energy models).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable, Default)]
#[repr(C)]
pub struct OpCost {
    /// Multiply-accumulates (or, for ops without MACs, elementary arithmetic operations).
    pub macs: u64,
    /// Bytes of constants read (weights, biases, tables: from flash).
    pub const_bytes_read: u32,
    /// Bytes of activations read from the arena.
    pub arena_bytes_read: u32,
    /// Bytes written to the arena.
    pub arena_bytes_written: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

/// Round `n` up to a multiple of [`ALIGN`].
pub const fn align_up(n: usize) -> usize {
    (n + (ALIGN - 1)) & !(ALIGN - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn struct_sizes_are_stable() {
        assert_eq!(size_of::<Header>(), 112);
        assert_eq!(core::mem::offset_of!(Header, sections), 48);
        assert_eq!(size_of::<TensorDesc>(), 48);
        assert_eq!(size_of::<OpDesc>(), 32);
        assert_eq!(size_of::<OpCost>(), 24);
        assert_eq!(size_of::<Header>() % ALIGN, 0);
    }

    #[test]
    fn op_flags_round_trip() {
        for in_place in [
            InPlace::Separate,
            InPlace::Alias(0),
            InPlace::Alias(3),
            InPlace::ShiftDown,
            InPlace::ShiftUp,
        ] {
            for (epilogue_add, residual_first, chain) in [
                (false, false, false),
                (true, false, false),
                (true, true, false),
                (true, false, true),
                (true, true, true),
            ] {
                let f = OpFlags {
                    in_place,
                    epilogue_add,
                    residual_first,
                    chain,
                };
                assert_eq!(OpFlags::from_u32(f.to_u32()), Some(f));
            }
        }
        assert_eq!(OpFlags::from_u32(0), Some(OpFlags::default()));
        assert_eq!(OpFlags::from_u32(4), None); // unknown mode
        assert_eq!(OpFlags::from_u32(1 << 19), None); // unknown bit
        assert_eq!(OpFlags::from_u32(1 << 18), None); // a chain without its ADD
        assert_eq!(OpFlags::from_u32(2 | (1 << 8)), None); // alias index outside alias mode
        assert_eq!(OpFlags::from_u32(1 << 17), None); // residual order without an epilogue
    }
}
