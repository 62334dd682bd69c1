//! Serialising a compiled model to the `.mote` format (the layout in `mote_runtime::format`).

use mote_runtime::crc32::crc32;
use mote_runtime::format::{
    align_up, Header, OpCost, OpDesc, Section, SectionId, TensorDesc, FORMAT_VERSION, MAGIC, NONE,
    SECTION_COUNT,
};

use crate::error::CompileError;

/// Everything that goes into a `.mote` file, already laid out.
#[derive(Debug, Clone, Default)]
pub struct FileParts {
    /// Tensor descriptors.
    pub tensors: Vec<TensorDesc>,
    /// Operator descriptors.
    pub ops: Vec<OpDesc>,
    /// Tensor indices (op inputs/outputs, then model inputs/outputs at `io_start`).
    pub indices: Vec<u32>,
    /// Parameter bytes.
    pub params: Vec<u8>,
    /// Constant bytes.
    pub consts: Vec<u8>,
    /// Per-op costs.
    pub costs: Vec<OpCost>,
    /// Names (length-prefixed UTF-8).
    pub names: Vec<u8>,
    /// Number of model inputs.
    pub input_count: u16,
    /// Number of model outputs.
    pub output_count: u16,
    /// Start of the model's io indices.
    pub io_start: u32,
    /// Exact arena size.
    pub arena_bytes: u32,
}

impl FileParts {
    /// Appends a name and returns its offset (or [`NONE`] for an empty name).
    pub fn add_name(&mut self, name: &str) -> u32 {
        if name.is_empty() {
            return NONE;
        }
        let bytes = name.as_bytes();
        let len = bytes.len().min(u16::MAX as usize);
        let offset = self.names.len() as u32;
        self.names.extend_from_slice(&(len as u16).to_le_bytes());
        self.names.extend_from_slice(&bytes[..len]);
        offset
    }

    /// Lays the parts out and returns the file bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CompileError> {
        let header_len = std::mem::size_of::<Header>();
        let mut out = vec![0u8; header_len];
        let mut sections = [Section::default(); SECTION_COUNT];
        let mut put = |id: SectionId, data: &[u8], out: &mut Vec<u8>| -> Result<(), CompileError> {
            let offset = align_up(out.len());
            out.resize(offset, 0);
            out.extend_from_slice(data);
            sections[id as usize] = Section {
                offset: u32::try_from(offset).map_err(|_| limit())?,
                len: u32::try_from(data.len()).map_err(|_| limit())?,
            };
            Ok(())
        };
        put(
            SectionId::Tensors,
            bytemuck::cast_slice(&self.tensors),
            &mut out,
        )?;
        put(SectionId::Ops, bytemuck::cast_slice(&self.ops), &mut out)?;
        put(
            SectionId::Indices,
            bytemuck::cast_slice(&self.indices),
            &mut out,
        )?;
        put(SectionId::Params, &self.params, &mut out)?;
        put(SectionId::Consts, &self.consts, &mut out)?;
        put(
            SectionId::Costs,
            bytemuck::cast_slice(&self.costs),
            &mut out,
        )?;
        put(SectionId::Names, &self.names, &mut out)?;
        let file_len = align_up(out.len());
        out.resize(file_len, 0);
        let header = Header {
            magic: MAGIC,
            version: FORMAT_VERSION,
            flags: 0,
            file_len: u32::try_from(file_len).map_err(|_| limit())?,
            crc32: crc32(&out[header_len..]),
            arena_bytes: self.arena_bytes,
            tensor_count: self.tensors.len() as u32,
            op_count: self.ops.len() as u32,
            input_count: self.input_count,
            output_count: self.output_count,
            io_start: self.io_start,
            reserved: [0; 3],
            sections,
        };
        out[..header_len].copy_from_slice(bytemuck::bytes_of(&header));
        Ok(out)
    }
}

fn limit() -> CompileError {
    CompileError::Limit("the model is larger than 4 GiB".to_string())
}

/// Bytes held at a 16-byte aligned address, as `Model::from_bytes` requires.
#[derive(Debug, Clone)]
pub struct AlignedBytes {
    words: Vec<u128>,
    len: usize,
}

impl AlignedBytes {
    /// Copies `bytes` into aligned storage.
    pub fn new(bytes: &[u8]) -> Self {
        let mut words = vec![0u128; bytes.len().div_ceil(16)];
        bytemuck::cast_slice_mut::<u128, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        AlignedBytes {
            words,
            len: bytes.len(),
        }
    }
    /// A zeroed aligned buffer of `len` bytes (e.g. an arena).
    pub fn zeroed(len: usize) -> Self {
        AlignedBytes {
            words: vec![0u128; len.div_ceil(16)],
            len,
        }
    }
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &bytemuck::cast_slice::<u128, u8>(&self.words)[..self.len]
    }
    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<u128, u8>(&mut self.words)[..self.len]
    }
}
