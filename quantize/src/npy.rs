//! Reading and writing tensors as raw little-endian bytes or numpy `.npy` files.

use std::path::Path;

use crate::error::CompileError;

/// A tensor read from a file: its bytes, and, for `.npy`, its declared dtype and shape.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorFile {
    /// Raw little-endian element bytes.
    pub bytes: Vec<u8>,
    /// numpy dtype descriptor (e.g. `<i1`, `<f4`), for `.npy` files.
    pub descr: Option<String>,
    /// Shape, for `.npy` files.
    pub shape: Option<Vec<usize>>,
}

fn io_err(path: &Path, source: std::io::Error) -> CompileError {
    CompileError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn bad(path: &Path, what: &str) -> CompileError {
    CompileError::Malformed {
        format: "npy",
        what: format!("{}: {what}", path.display()),
    }
}

/// The numpy descriptor of a runtime dtype.
pub fn descr_of(dtype: mote_runtime::DType) -> &'static str {
    use mote_runtime::DType;
    match dtype {
        DType::Int8 => "|i1",
        DType::UInt8 => "|u1",
        DType::Int16 => "<i2",
        DType::Int32 => "<i4",
        DType::Float32 => "<f4",
        DType::Float16 => "<f2",
        DType::Int64 => "<i8",
        // numpy has no packed int4: such tensors are constants, never model I/O.
        DType::Int4 => "|i1",
    }
}

/// Whether a numpy descriptor names the same element type as `dtype`.
pub fn descr_matches(descr: &str, dtype: mote_runtime::DType) -> bool {
    let strip = |d: &str| d.trim_start_matches(['<', '|', '=']).to_string();
    strip(descr) == strip(descr_of(dtype))
}

/// Reads a tensor: `.npy` when the name ends so, raw bytes otherwise.
pub fn read(path: &Path) -> Result<TensorFile, CompileError> {
    let data = std::fs::read(path).map_err(|e| io_err(path, e))?;
    if path.extension().is_some_and(|e| e == "npy") {
        parse_npy(&data).map_err(|w| bad(path, &w))
    } else {
        Ok(TensorFile {
            bytes: data,
            descr: None,
            shape: None,
        })
    }
}

/// Parses `.npy` bytes (format versions 1–3, C order).
pub fn parse_npy(data: &[u8]) -> Result<TensorFile, String> {
    if data.len() < 10 || &data[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic)".into());
    }
    let major = data[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([data[8], data[9]]) as usize, 10),
        2 | 3 => {
            if data.len() < 12 {
                return Err("truncated header".into());
            }
            (
                u32::from_le_bytes([data[8], data[9], data[10], data[11]]) as usize,
                12,
            )
        }
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = data
        .get(start..start + header_len)
        .ok_or("truncated header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))?;
        let rest = &header[i + key.len() + 2..];
        let rest = rest.trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or("no descr")?
        .to_string();
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err("Fortran-order arrays are not supported".into());
    }
    let shape_txt = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or("no shape")?;
    let shape = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape entry {s}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TensorFile {
        bytes: data[start + header_len..].to_vec(),
        descr: Some(descr),
        shape: Some(shape),
    })
}

/// Encodes `bytes` as a `.npy` file with the given descriptor and shape.
pub fn to_npy(bytes: &[u8], descr: &str, shape: &[usize]) -> Vec<u8> {
    let shape_txt = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat(total.div_ceil(64) * 64 - total));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(bytes);
    out
}

/// Writes a tensor: `.npy` when the name ends so, raw bytes otherwise.
pub fn write(
    path: &Path,
    bytes: &[u8],
    dtype: mote_runtime::DType,
    shape: &[usize],
) -> Result<(), CompileError> {
    let data = if path.extension().is_some_and(|e| e == "npy") {
        to_npy(bytes, descr_of(dtype), shape)
    } else {
        bytes.to_vec()
    };
    std::fs::write(path, data).map_err(|e| io_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trip() {
        let bytes: Vec<u8> = (0..24).collect();
        let file = to_npy(&bytes, "<f4", &[2, 3]);
        assert_eq!(file.len() % 64, 24);
        let t = parse_npy(&file).unwrap();
        assert_eq!(t.bytes, bytes);
        assert_eq!(t.descr.as_deref(), Some("<f4"));
        assert_eq!(t.shape, Some(vec![2, 3]));
        let t = parse_npy(&to_npy(&[1, 2, 3], "|i1", &[3])).unwrap();
        assert_eq!(t.shape, Some(vec![3]));
    }

    #[test]
    fn npy_rejects_garbage() {
        assert!(parse_npy(b"hello").is_err());
        assert!(parse_npy(b"\x93NUMPY\x01\x00\xff\x00{").is_err());
    }
}
