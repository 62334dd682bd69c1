//! A small, safe flatbuffer reader: tables, scalar fields, vectors and strings, with every
//! access bounds-checked. The importer runs the flatbuffers verifier first; this reader still
//! checks everything itself, so a gap in the verification gives an error, never a panic.
//!
//! Errors are plain strings naming the table, the field and the byte position; the importer adds
//! where in the model the table sits.

/// A read result: `Err` names what was out of bounds.
pub(crate) type R<T> = Result<T, String>;

/// A little-endian scalar stored in a flatbuffer.
pub(crate) trait Scalar: Copy {
    /// Size in bytes.
    const SIZE: usize;
    /// Decodes `SIZE` bytes (shorter input is zero-extended; callers always pass `SIZE`).
    fn from_le(bytes: &[u8]) -> Self;
}

/// Copies up to `N` bytes into an array (never panics).
fn arr<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    for (d, s) in a.iter_mut().zip(bytes) {
        *d = *s;
    }
    a
}

macro_rules! scalar {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            const SIZE: usize = core::mem::size_of::<$t>();
            fn from_le(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(arr(bytes))
            }
        }
    )*};
}
scalar!(u8, i8, u16, i32, u32, i64, u64, f32);

impl Scalar for bool {
    const SIZE: usize = 1;
    fn from_le(bytes: &[u8]) -> Self {
        bytes.first().is_some_and(|b| *b != 0)
    }
}

/// Reads a `T` at `pos`.
pub(crate) fn read<T: Scalar>(buf: &[u8], pos: usize) -> R<T> {
    pos.checked_add(T::SIZE)
        .and_then(|end| buf.get(pos..end))
        .map(T::from_le)
        .ok_or_else(|| {
            format!(
                "{}-byte read at offset {pos} is past the end of the {}-byte buffer",
                T::SIZE,
                buf.len()
            )
        })
}

/// Follows the uoffset stored at `pos`.
fn follow(buf: &[u8], pos: usize) -> R<usize> {
    let off = read::<u32>(buf, pos)? as usize;
    pos.checked_add(off)
        .filter(|p| *p < buf.len())
        .ok_or_else(|| format!("offset {off} at {pos} points past the end of the buffer"))
}

/// A table: its position and its vtable.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Table<'a> {
    buf: &'a [u8],
    pos: usize,
    vtable: usize,
    vtable_len: usize,
    /// The schema name of the table, for errors.
    name: &'static str,
}

impl<'a> Table<'a> {
    /// The table `name` at `pos`.
    pub(crate) fn at(buf: &'a [u8], pos: usize, name: &'static str) -> R<Self> {
        let soff = read::<i32>(buf, pos).map_err(|e| format!("table {name}: {e}"))?;
        let vtable = i64::try_from(pos)
            .ok()
            .and_then(|p| p.checked_sub(i64::from(soff)))
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| format!("table {name} at {pos}: vtable offset {soff} out of range"))?;
        let vtable_len = read::<u16>(buf, vtable)
            .map_err(|e| format!("table {name} at {pos}: vtable: {e}"))?
            as usize;
        if vtable_len < 4 || vtable_len % 2 != 0 || vtable.saturating_add(vtable_len) > buf.len() {
            return Err(format!(
                "table {name} at {pos}: vtable at {vtable} has invalid length {vtable_len}"
            ));
        }
        Ok(Table {
            buf,
            pos,
            vtable,
            vtable_len,
            name,
        })
    }

    /// The root table of a flatbuffer.
    pub(crate) fn root(buf: &'a [u8], name: &'static str) -> R<Self> {
        let pos = follow(buf, 0).map_err(|e| format!("root offset: {e}"))?;
        Table::at(buf, pos, name)
    }

    /// The absolute position of the field at vtable offset `voff`, if present.
    fn field(&self, voff: u16, field: &str) -> R<Option<usize>> {
        let voff = voff as usize;
        if voff + 2 > self.vtable_len {
            return Ok(None);
        }
        let off = read::<u16>(self.buf, self.vtable + voff)
            .map_err(|e| format!("{}.{field}: {e}", self.name))?;
        if off == 0 {
            return Ok(None);
        }
        Ok(Some(self.pos.saturating_add(off as usize)))
    }

    /// A scalar field, or `default` when absent.
    pub(crate) fn scalar<T: Scalar>(&self, voff: u16, field: &str, default: T) -> R<T> {
        match self.field(voff, field)? {
            None => Ok(default),
            Some(p) => read::<T>(self.buf, p).map_err(|e| format!("{}.{field}: {e}", self.name)),
        }
    }

    /// The position a reference field points at, if present.
    fn target(&self, voff: u16, field: &str) -> R<Option<usize>> {
        match self.field(voff, field)? {
            None => Ok(None),
            Some(p) => follow(self.buf, p)
                .map(Some)
                .map_err(|e| format!("{}.{field}: {e}", self.name)),
        }
    }

    /// A sub-table field, if present.
    pub(crate) fn table(&self, voff: u16, field: &str, name: &'static str) -> R<Option<Table<'a>>> {
        match self.target(voff, field)? {
            None => Ok(None),
            Some(p) => Table::at(self.buf, p, name)
                .map(Some)
                .map_err(|e| format!("{}.{field}: {e}", self.name)),
        }
    }

    /// The byte range of a vector of `elem_size`-byte elements (after its length), if present.
    fn vector_range(
        &self,
        voff: u16,
        field: &str,
        elem_size: usize,
    ) -> R<Option<core::ops::Range<usize>>> {
        let Some(p) = self.target(voff, field)? else {
            return Ok(None);
        };
        let err = |what: String| format!("{}.{field}: {what}", self.name);
        let len = read::<u32>(self.buf, p).map_err(err)? as usize;
        let start = p.saturating_add(4);
        match start.checked_add(len.saturating_mul(elem_size)) {
            Some(end) if end <= self.buf.len() => Ok(Some(start..end)),
            _ => Err(err(format!(
                "vector of {len} elements at {p} runs past the end of the {}-byte buffer",
                self.buf.len()
            ))),
        }
    }

    /// The raw bytes of a vector of `elem_size`-byte elements, if present.
    fn vector_bytes(&self, voff: u16, field: &str, elem_size: usize) -> R<Option<&'a [u8]>> {
        Ok(self
            .vector_range(voff, field, elem_size)?
            .and_then(|r| self.buf.get(r)))
    }

    /// A vector of scalars, if present.
    pub(crate) fn vector<T: Scalar>(&self, voff: u16, field: &str) -> R<Option<Vector<'a, T>>> {
        Ok(self
            .vector_bytes(voff, field, T::SIZE)?
            .map(|bytes| Vector {
                bytes,
                _t: core::marker::PhantomData,
            }))
    }

    /// A vector of scalars, empty when absent.
    pub(crate) fn vector_or_empty<T: Scalar>(&self, voff: u16, field: &str) -> R<Vec<T>> {
        Ok(self
            .vector::<T>(voff, field)?
            .map(|v| v.iter().collect())
            .unwrap_or_default())
    }

    /// A vector of tables, if present.
    pub(crate) fn tables(
        &self,
        voff: u16,
        field: &'static str,
        name: &'static str,
    ) -> R<Option<TableVector<'a>>> {
        let Some(range) = self.vector_range(voff, field, 4)? else {
            return Ok(None);
        };
        Ok(Some(TableVector {
            buf: self.buf,
            first: range.start,
            len: range.len() / 4,
            name,
            field,
        }))
    }

    /// A string field, if present.
    pub(crate) fn string(&self, voff: u16, field: &str) -> R<Option<&'a str>> {
        match self.vector_bytes(voff, field, 1)? {
            None => Ok(None),
            Some(b) => core::str::from_utf8(b)
                .map(Some)
                .map_err(|e| format!("{}.{field}: invalid UTF-8: {e}", self.name)),
        }
    }
}

/// A vector of scalars.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Vector<'a, T> {
    bytes: &'a [u8],
    _t: core::marker::PhantomData<T>,
}

impl<'a, T: Scalar + 'a> Vector<'a, T> {
    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len() / T::SIZE
    }
    /// Whether there are no elements.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The elements.
    pub(crate) fn iter(&self) -> impl Iterator<Item = T> + 'a {
        self.bytes.chunks_exact(T::SIZE).map(T::from_le)
    }
    /// The raw little-endian bytes.
    pub(crate) fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// A vector of tables.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TableVector<'a> {
    buf: &'a [u8],
    /// Absolute position of the first element's uoffset.
    first: usize,
    len: usize,
    name: &'static str,
    field: &'static str,
}

impl<'a> TableVector<'a> {
    /// Number of tables.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
    /// Table `i`.
    pub(crate) fn get(&self, i: usize) -> R<Table<'a>> {
        if i >= self.len {
            return Err(format!(
                "{}[{i}]: index out of range ({} elements)",
                self.field, self.len
            ));
        }
        let pos = self.first + 4 * i; // < buf.len(): the vector's bytes are in the buffer
        follow(self.buf, pos)
            .and_then(|p| Table::at(self.buf, p, self.name))
            .map_err(|e| format!("{}[{i}]: {e}", self.field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer holding one root table: `[root uoffset][vtable: len, inline size, field
    /// offsets…][padding][table: soffset to the vtable, body]`.
    fn table_buf(field_offsets: &[u16], table_body: &[u8]) -> Vec<u8> {
        let vt_len = 4 + 2 * field_offsets.len();
        let vt_pos = 4usize;
        let table_pos = vt_pos + vt_len + (4 - (vt_pos + vt_len) % 4) % 4;
        let mut b = vec![0u8; table_pos];
        b[0..4].copy_from_slice(&(table_pos as u32).to_le_bytes());
        b[vt_pos..vt_pos + 2].copy_from_slice(&(vt_len as u16).to_le_bytes());
        b[vt_pos + 2..vt_pos + 4].copy_from_slice(&(4 + table_body.len() as u16).to_le_bytes());
        for (k, off) in field_offsets.iter().enumerate() {
            let p = vt_pos + 4 + 2 * k;
            b[p..p + 2].copy_from_slice(&off.to_le_bytes());
        }
        b.extend_from_slice(&((table_pos - vt_pos) as i32).to_le_bytes());
        b.extend_from_slice(table_body);
        b
    }

    #[test]
    fn scalars_defaults_and_bounds() {
        // Field 0 at +4 (i32 = -7), field 1 absent, field 2 at +8 (u16 = 513).
        let b = table_buf(&[4, 0, 8], &[0xf9, 0xff, 0xff, 0xff, 1, 2, 0, 0]);
        let t = Table::root(&b, "T").unwrap();
        assert_eq!(t.scalar::<i32>(4, "a", 0).unwrap(), -7);
        assert_eq!(t.scalar::<i32>(6, "b", 42).unwrap(), 42);
        assert_eq!(t.scalar::<u16>(8, "c", 0).unwrap(), 513);
        // Past the vtable: absent.
        assert_eq!(t.scalar::<u8>(40, "d", 9).unwrap(), 9);
        // A field whose value lies past the end of the buffer.
        let e = t.scalar::<u64>(8, "c", 0).unwrap_err();
        assert!(e.contains("T.c: 8-byte read at offset"), "{e}");
    }

    #[test]
    fn bad_vtables_and_offsets() {
        let b = table_buf(&[4], &[0, 0, 0, 0]);
        // Root offset past the end.
        let mut bad = b.clone();
        bad[0..4].copy_from_slice(&1000u32.to_le_bytes());
        assert!(Table::root(&bad, "T").unwrap_err().contains("root offset"));
        // vtable before the start of the buffer.
        let mut bad = b.clone();
        let tp = u32::from_le_bytes(b[0..4].try_into().unwrap()) as usize;
        bad[tp..tp + 4].copy_from_slice(&(i32::MAX).to_le_bytes());
        assert!(Table::root(&bad, "T")
            .unwrap_err()
            .contains("vtable offset"));
        // Odd vtable length.
        let mut bad = b.clone();
        bad[4] = 5;
        assert!(Table::root(&bad, "T")
            .unwrap_err()
            .contains("invalid length 5"));
        // Reading a vector through a field holding garbage.
        let mut bad = b.clone();
        bad[tp + 4..tp + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        let t = Table::root(&bad, "T").unwrap();
        assert!(t.vector::<i32>(4, "v").is_err());
        assert!(t.tables(4, "v", "U").is_err());
        assert!(t.string(4, "v").is_err());
    }

    #[test]
    fn vectors_and_strings() {
        // Field 0: uoffset to a vector of two i32; field 1: uoffset to a 2-byte string.
        let mut body = vec![0u8; 8];
        // Table body starts at table_pos + 4; field 0 at table_pos + 4, field 1 at + 8.
        body.extend_from_slice(&2u32.to_le_bytes());
        body.extend_from_slice(&5i32.to_le_bytes());
        body.extend_from_slice(&(-6i32).to_le_bytes());
        body.extend_from_slice(&2u32.to_le_bytes());
        body.extend_from_slice(b"hi\0\0");
        // uoffsets are relative to their own position: vector at +12 from field 0 (pos +4).
        body[0..4].copy_from_slice(&8u32.to_le_bytes());
        body[4..8].copy_from_slice(&16u32.to_le_bytes());
        let b = table_buf(&[4, 8], &body);
        let t = Table::root(&b, "T").unwrap();
        let v = t.vector::<i32>(4, "v").unwrap().unwrap();
        assert_eq!((v.len(), v.iter().collect::<Vec<_>>()), (2, vec![5, -6]));
        assert_eq!(t.string(6, "s").unwrap(), Some("hi"));
        assert_eq!(
            t.vector_or_empty::<i32>(8, "absent").unwrap(),
            Vec::<i32>::new()
        );
        // A vector length running past the end.
        let mut bad = b.clone();
        let n = bad.len();
        bad[n - 20..n - 16].copy_from_slice(&1000u32.to_le_bytes());
        let e = Table::root(&bad, "T")
            .unwrap()
            .vector::<i32>(4, "v")
            .unwrap_err();
        assert!(e.contains("T.v: vector of 1000 elements"), "{e}");
    }
}
