//! Reading and validating a `.mote` file in place.
//!
//! [`Model::from_bytes`] checks everything the interpreter later relies on — header, checksum,
//! section bounds and alignment, every tensor, every operator's indices, parameters and shapes —
//! so that `invoke` needs no further checks. Any byte string gives `Ok` or an `Err`, never a panic.

use core::mem::size_of;

use bytemuck::Pod;

use crate::crc32::crc32;
use crate::error::{Error, Location};
use crate::format::{
    DType, Header, OpCost, OpDesc, SectionId, Storage, TensorDesc, ALIGN, FORMAT_VERSION, MAGIC,
    MAX_RANK, NONE,
};
use crate::ops::{self, OpCtx, OpKind};

/// A validated `.mote` model borrowed from its bytes (zero-copy: weights stay where they are, e.g. in flash).
#[derive(Debug, Clone, Copy)]
pub struct Model<'a> {
    header: &'a Header,
    tensors: &'a [TensorDesc],
    ops: &'a [OpDesc],
    indices: &'a [u32],
    params: &'a [u8],
    consts: &'a [u8],
    costs: &'a [OpCost],
    names: &'a [u8],
}

/// Borrows `len` bytes at `offset` of `bytes`, or says where it fell outside.
pub(crate) fn sub(bytes: &[u8], offset: usize, len: usize, at: Location) -> Result<&[u8], Error> {
    let end = offset.checked_add(len).ok_or(Error::OutOfBounds {
        at,
        offset,
        len,
        limit: bytes.len(),
    })?;
    bytes.get(offset..end).ok_or(Error::OutOfBounds {
        at,
        offset,
        len,
        limit: bytes.len(),
    })
}

/// Casts bytes to a slice of `T`, refusing misaligned or ragged input.
pub(crate) fn cast_slice<T: Pod>(bytes: &[u8], at: Location) -> Result<&[T], Error> {
    bytemuck::try_cast_slice(bytes).map_err(|_| Error::Misaligned {
        at,
        align: core::mem::align_of::<T>(),
    })
}

impl<'a> Model<'a> {
    /// Validates `bytes` as a `.mote` model. `bytes` must start on a 16-byte boundary
    /// (see [`crate::AlignedModel`] and [`crate::include_model!`]).
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Model<'a>, Error> {
        let header_len = size_of::<Header>();
        if bytes.len() < header_len {
            return Err(Error::Truncated {
                at: Location::Header,
                needed: header_len,
                available: bytes.len(),
            });
        }
        if bytes.get(..4) != Some(&MAGIC[..]) {
            return Err(Error::BadMagic);
        }
        if (bytes.as_ptr() as usize) % ALIGN != 0 {
            return Err(Error::Misaligned {
                at: Location::Header,
                align: ALIGN,
            });
        }
        let header: &Header =
            bytemuck::try_from_bytes(sub(bytes, 0, header_len, Location::Header)?).map_err(
                |_| Error::Misaligned {
                    at: Location::Header,
                    align: ALIGN,
                },
            )?;
        if header.version == 0 || header.version > FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                found: header.version,
                supported: FORMAT_VERSION,
            });
        }
        if header.flags != 0 {
            return Err(Error::InvalidField {
                at: Location::Header,
                field: "flags",
            });
        }
        let file_len = header.file_len as usize;
        if file_len > bytes.len() {
            return Err(Error::Truncated {
                at: Location::Header,
                needed: file_len,
                available: bytes.len(),
            });
        }
        if file_len < header_len {
            return Err(Error::InvalidField {
                at: Location::Header,
                field: "file_len",
            });
        }
        let bytes = &bytes[..file_len];
        let actual = crc32(&bytes[header_len..]);
        if actual != header.crc32 {
            return Err(Error::BadChecksum {
                expected: header.crc32,
                actual,
            });
        }

        let section = |id: SectionId| -> Result<&'a [u8], Error> {
            let s = header.sections[id as usize];
            let at = Location::Section(id as usize);
            let offset = s.offset as usize;
            if s.len == 0 {
                return Ok(&[]);
            }
            if offset % ALIGN != 0 {
                return Err(Error::Misaligned { at, align: ALIGN });
            }
            if offset < header_len {
                return Err(Error::OutOfBounds {
                    at,
                    offset,
                    len: s.len as usize,
                    limit: file_len,
                });
            }
            sub(bytes, offset, s.len as usize, at)
        };

        let tensors: &[TensorDesc] = cast_slice(
            section(SectionId::Tensors)?,
            Location::Section(SectionId::Tensors as usize),
        )?;
        let ops: &[OpDesc] = cast_slice(
            section(SectionId::Ops)?,
            Location::Section(SectionId::Ops as usize),
        )?;
        let indices: &[u32] = cast_slice(
            section(SectionId::Indices)?,
            Location::Section(SectionId::Indices as usize),
        )?;
        let costs: &[OpCost] = cast_slice(
            section(SectionId::Costs)?,
            Location::Section(SectionId::Costs as usize),
        )?;
        let model = Model {
            header,
            tensors,
            ops,
            indices,
            params: section(SectionId::Params)?,
            consts: section(SectionId::Consts)?,
            costs,
            names: section(SectionId::Names)?,
        };
        if tensors.len() != header.tensor_count as usize {
            return Err(Error::InvalidField {
                at: Location::Header,
                field: "tensor_count",
            });
        }
        if ops.len() != header.op_count as usize {
            return Err(Error::InvalidField {
                at: Location::Header,
                field: "op_count",
            });
        }
        if costs.len() != ops.len() {
            return Err(Error::InvalidField {
                at: Location::Section(SectionId::Costs as usize),
                field: "len",
            });
        }
        model.validate_tensors()?;
        model.validate_io()?;
        model.validate_ops()?;
        Ok(model)
    }

    fn validate_tensors(&self) -> Result<(), Error> {
        let arena = self.arena_bytes();
        for (i, t) in self.tensors.iter().enumerate() {
            let at = Location::Tensor(i as u32);
            let dtype = t
                .dtype()
                .ok_or(Error::InvalidField { at, field: "dtype" })?;
            let storage = t.storage().ok_or(Error::InvalidField {
                at,
                field: "storage",
            })?;
            if t.rank as usize > MAX_RANK {
                return Err(Error::InvalidField { at, field: "rank" });
            }
            if t.shape[t.rank as usize..].iter().any(|&d| d != 0) {
                return Err(Error::InvalidField { at, field: "shape" });
            }
            // Packed int4 holds ceil(n / 2) bytes (see `DType::Int4`).
            let bytes = t
                .dims()
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
                .and_then(|n| dtype.storage_bytes(n))
                .filter(|&b| b <= u32::MAX as u64)
                .ok_or(Error::InvalidField { at, field: "shape" })?;
            if bytes != t.bytes as u64 {
                return Err(Error::InvalidField { at, field: "bytes" });
            }
            if !t.scale.is_finite() || t.scale < 0.0 {
                return Err(Error::InvalidField { at, field: "scale" });
            }
            if t.name != NONE && t.name as usize >= self.names.len() {
                return Err(Error::InvalidField { at, field: "name" });
            }
            let offset = t.offset as usize;
            let len = t.bytes as usize;
            match storage {
                Storage::Arena => {
                    if offset % dtype.size() != 0 {
                        return Err(Error::Misaligned {
                            at,
                            align: dtype.size(),
                        });
                    }
                    if offset.checked_add(len).is_none_or(|end| end > arena) {
                        return Err(Error::OutOfBounds {
                            at,
                            offset,
                            len,
                            limit: arena,
                        });
                    }
                }
                Storage::Const => {
                    if offset % ALIGN != 0 {
                        return Err(Error::Misaligned { at, align: ALIGN });
                    }
                    sub(self.consts, offset, len, at)?;
                }
            }
        }
        Ok(())
    }

    fn validate_io(&self) -> Result<(), Error> {
        let n = self.header.input_count as usize + self.header.output_count as usize;
        let start = self.header.io_start as usize;
        let io = start
            .checked_add(n)
            .and_then(|end| self.indices.get(start..end))
            .ok_or(Error::OutOfBounds {
                at: Location::Header,
                offset: start,
                len: n,
                limit: self.indices.len(),
            })?;
        for (k, &t) in io.iter().enumerate() {
            let at = if k < self.header.input_count as usize {
                Location::Input(k as u32)
            } else {
                Location::Output((k - self.header.input_count as usize) as u32)
            };
            let desc = self.tensors.get(t as usize).ok_or(Error::InvalidField {
                at,
                field: "tensor index",
            })?;
            if desc.storage() != Some(Storage::Arena) {
                return Err(Error::InvalidField {
                    at,
                    field: "storage",
                });
            }
        }
        Ok(())
    }

    fn validate_ops(&self) -> Result<(), Error> {
        let arena = self.arena_bytes();
        for i in 0..self.ops.len() {
            let ctx = self.op_ctx(i as u32)?;
            let at = Location::Op(i as u32);
            let desc = ctx.desc;
            for k in 0..desc.output_count as usize {
                let (_, t) = ctx.output(k)?;
                if t.storage() != Some(Storage::Arena) {
                    return Err(Error::InvalidField {
                        at,
                        field: "output storage",
                    });
                }
            }
            let scratch = desc.scratch_offset as usize
                ..(desc.scratch_offset as usize).saturating_add(desc.scratch_bytes as usize);
            if desc.scratch_bytes > 0
                && (scratch.end > arena || desc.scratch_offset as usize % ALIGN != 0)
            {
                return Err(Error::OutOfBounds {
                    at,
                    offset: scratch.start,
                    len: desc.scratch_bytes as usize,
                    limit: arena,
                });
            }
            // Outputs may not overlap inputs or scratch, except as the op's in-place mode
            // (`OpDesc::flags`) allows; `ops::validate` checks the mode's geometry.
            for k in 0..desc.output_count as usize {
                let (oi, o) = ctx.output(k)?;
                let out = o.offset as usize..o.offset as usize + o.bytes as usize;
                if desc.scratch_bytes > 0 && overlaps(&out, &scratch) {
                    return Err(Error::InvalidField {
                        at,
                        field: "scratch_offset",
                    });
                }
                for j in 0..desc.input_count as usize {
                    if let Some((ii, t)) = ctx.input(j)? {
                        if t.storage() != Some(Storage::Arena) {
                            continue;
                        }
                        let inp = t.offset as usize..t.offset as usize + t.bytes as usize;
                        if desc.scratch_bytes > 0 && overlaps(&inp, &scratch) {
                            return Err(Error::InvalidField {
                                at,
                                field: "scratch_offset",
                            });
                        }
                        let in_place_ok = ops::inplace::overlap_allowed(&ctx, j, &inp, &out);
                        if overlaps(&inp, &out) && !in_place_ok && !(ii == oi && inp.is_empty()) {
                            return Err(Error::ShapeMismatch {
                                op: i as u32,
                                tensor: oi,
                                expected: "an output that does not overlap its inputs in the arena",
                            });
                        }
                    }
                }
            }
            ops::validate(&ctx)?;
        }
        Ok(())
    }

    /// The context an op's validation and evaluation see, with its tensor indices and name
    /// checked (what [`Model::from_bytes`] relies on).
    pub(crate) fn op_ctx(&self, index: u32) -> Result<OpCtx<'a>, Error> {
        let ctx = self.op_ctx_loaded(index)?;
        let at = Location::Op(index);
        let desc = ctx.desc;
        for (k, &t) in ctx.io.iter().enumerate() {
            let optional = k < desc.input_count as usize;
            if !(t == NONE && optional) && t as usize >= self.tensors.len() {
                return Err(Error::InvalidField {
                    at,
                    field: "tensor index",
                });
            }
        }
        if desc.name != NONE && desc.name as usize >= self.names.len() {
            return Err(Error::InvalidField { at, field: "name" });
        }
        Ok(ctx)
    }

    /// [`Model::op_ctx`] without the checks of each tensor index and of the name, which
    /// validation made when the model was loaded (its bytes are borrowed immutably, so they
    /// still hold): for `invoke`. Every tensor is still looked up with checked accessors
    /// ([`OpCtx::input`], ...), so an index out of range gives an error, never a panic.
    ///
    /// Inlined on SIMD hosts: returned through memory, the context was read back wider than it
    /// was written, and the failed store forwarding cost about 0.05 µs of ad01_int8's 2.1 µs.
    #[cfg_attr(
        any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64"),
        inline(always)
    )]
    pub(crate) fn op_ctx_loaded(&self, index: u32) -> Result<OpCtx<'a>, Error> {
        let at = Location::Op(index);
        let desc = self
            .ops
            .get(index as usize)
            .ok_or(Error::NoSuchTensor { at })?;
        let kind = OpKind::from_u16(desc.kind).ok_or(Error::UnsupportedOp {
            op: index,
            kind: desc.kind,
        })?;
        let n = desc.input_count as usize + desc.output_count as usize;
        let start = desc.io_start as usize;
        let io = start
            .checked_add(n)
            .and_then(|end| self.indices.get(start..end))
            .ok_or(Error::OutOfBounds {
                at,
                offset: start,
                len: n,
                limit: self.indices.len(),
            })?;
        if desc.params_offset % 4 != 0 {
            return Err(Error::Misaligned { at, align: 4 });
        }
        let params = sub(
            self.params,
            desc.params_offset as usize,
            desc.params_len as usize,
            at,
        )?;
        Ok(OpCtx {
            index,
            kind,
            desc,
            io,
            params,
            tensors: self.tensors,
            consts: self.consts,
        })
    }

    /// Exact arena size in bytes this model needs.
    pub fn arena_bytes(&self) -> usize {
        self.header.arena_bytes as usize
    }
    /// Size of the model file in bytes (what it takes in flash).
    pub fn file_bytes(&self) -> usize {
        self.header.file_len as usize
    }
    /// All tensors.
    pub fn tensors(&self) -> &'a [TensorDesc] {
        self.tensors
    }
    /// All operators, in execution order.
    pub fn ops(&self) -> &'a [OpDesc] {
        self.ops
    }
    /// Per-op cost counts, one per op.
    pub fn costs(&self) -> &'a [OpCost] {
        self.costs
    }
    /// The constant section (weights, biases, multipliers).
    pub fn consts(&self) -> &'a [u8] {
        self.consts
    }
    /// The kind of op `index`.
    pub fn op_kind(&self, index: usize) -> Option<OpKind> {
        self.ops.get(index).and_then(|d| OpKind::from_u16(d.kind))
    }
    /// Tensor indices of op `index`'s inputs ([`NONE`] for an absent optional input) and outputs.
    pub fn op_io(&self, index: usize) -> Option<(&'a [u32], &'a [u32])> {
        let d = self.ops.get(index)?;
        let start = d.io_start as usize;
        let io = self
            .indices
            .get(start..start + d.input_count as usize + d.output_count as usize)?;
        Some(io.split_at(d.input_count as usize))
    }
    /// Raw parameter bytes of op `index`.
    pub fn op_params(&self, index: usize) -> Option<&'a [u8]> {
        let d = self.ops.get(index)?;
        self.params.get(
            d.params_offset as usize
                ..(d.params_offset as usize).checked_add(d.params_len as usize)?,
        )
    }
    /// Number of model inputs.
    pub fn input_count(&self) -> usize {
        self.header.input_count as usize
    }
    /// Number of model outputs.
    pub fn output_count(&self) -> usize {
        self.header.output_count as usize
    }
    /// Tensor index of model input `i`.
    pub fn input_tensor(&self, i: usize) -> Option<u32> {
        if i >= self.input_count() {
            return None;
        }
        self.indices.get(self.header.io_start as usize + i).copied()
    }
    /// Tensor index of model output `i`.
    pub fn output_tensor(&self, i: usize) -> Option<u32> {
        if i >= self.output_count() {
            return None;
        }
        self.indices
            .get(self.header.io_start as usize + self.input_count() + i)
            .copied()
    }
    /// Descriptor of model input `i`.
    pub fn input(&self, i: usize) -> Option<&'a TensorDesc> {
        self.tensors.get(self.input_tensor(i)? as usize)
    }
    /// Descriptor of model output `i`.
    pub fn output(&self, i: usize) -> Option<&'a TensorDesc> {
        self.tensors.get(self.output_tensor(i)? as usize)
    }
    /// The name stored at `offset` in the names section (as written by the compiler), if any.
    pub fn name(&self, offset: u32) -> Option<&'a str> {
        if offset == NONE {
            return None;
        }
        let at = offset as usize;
        let len_bytes = self.names.get(at..at.checked_add(2)?)?;
        let len = u16::from_le_bytes([len_bytes[0], len_bytes[1]]) as usize;
        let s = self.names.get(at + 2..(at + 2).checked_add(len)?)?;
        core::str::from_utf8(s).ok()
    }
    /// Name of tensor `index`, if the file has names.
    pub fn tensor_name(&self, index: usize) -> Option<&'a str> {
        self.name(self.tensors.get(index)?.name)
    }
    /// Bytes of a constant tensor (zero-copy), or `None` for an arena tensor.
    pub fn const_data(&self, index: usize) -> Option<&'a [u8]> {
        let t = self.tensors.get(index)?;
        if t.storage() != Some(Storage::Const) {
            return None;
        }
        self.consts
            .get(t.offset as usize..t.offset as usize + t.bytes as usize)
    }
    /// Element type of tensor `index`.
    pub fn dtype(&self, index: usize) -> Option<DType> {
        self.tensors.get(index)?.dtype()
    }
}

/// Whether two byte ranges share a byte.
pub(crate) fn overlaps(a: &core::ops::Range<usize>, b: &core::ops::Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}
