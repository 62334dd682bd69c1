//! Reading ONNX protobuf messages: attributes, constant tensors and value-info shapes.
//!
//! The protobuf types are `onnx-ir`'s (generated from the published `onnx.proto`). Everything
//! read here is checked: attribute types, tensor sizes against their shapes, element counts
//! against [`MAX_ELEMENTS`].

use onnx_ir::{AttributeProto, AttributeType, TensorProto, ValueInfoProto};

use crate::ir::{DataType, Quantization};

/// Largest element count accepted for one tensor (2^32): far beyond any model for a
/// microcontroller, small enough that byte sizes cannot overflow.
pub const MAX_ELEMENTS: usize = 1 << 32;

/// A constant tensor in ONNX layout (row-major over `dims`).
#[derive(Debug, Clone, PartialEq)]
pub struct Const {
    /// ONNX dimensions.
    pub dims: Vec<usize>,
    /// Element type (float64 is converted to float32 on reading).
    pub dtype: DataType,
    /// Raw little-endian data, `elements × dtype.size()` bytes.
    pub data: Vec<u8>,
    /// Quantization from a `DequantizeLinear` of this constant (axis over `dims`).
    pub quant: Option<Quantization>,
}

impl Const {
    /// Number of elements.
    pub fn elements(&self) -> usize {
        self.dims.iter().product()
    }

    /// A float32 constant.
    pub fn from_f32(dims: Vec<usize>, v: &[f32]) -> Const {
        Const {
            dims,
            dtype: DataType::Float32,
            data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            quant: None,
        }
    }

    /// The values as float32 (float32/float16 as they are; integer types converted without
    /// scaling), `None` for other types.
    pub fn f32s(&self) -> Option<Vec<f32>> {
        let d = &self.data;
        Some(match self.dtype {
            DataType::Float32 => d
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DataType::Float16 => d
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => self.ints()?.into_iter().map(|v| v as f32).collect(),
        })
    }

    /// The values as integers, `None` for non-integer types.
    pub fn ints(&self) -> Option<Vec<i64>> {
        let d = &self.data;
        Some(match self.dtype {
            DataType::Int8 => d.iter().map(|&b| i64::from(b as i8)).collect(),
            DataType::UInt8 | DataType::Bool => d.iter().map(|&b| i64::from(b)).collect(),
            DataType::Int16 => d
                .chunks_exact(2)
                .map(|b| i64::from(i16::from_le_bytes([b[0], b[1]])))
                .collect(),
            DataType::Int32 => d
                .chunks_exact(4)
                .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
            DataType::Int64 => d
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect(),
            _ => return None,
        })
    }
}

/// Product of `dims`, or an error when it exceeds [`MAX_ELEMENTS`].
pub fn checked_elements(dims: &[usize]) -> Result<usize, String> {
    dims.iter()
        .try_fold(1usize, |acc, &d| {
            acc.checked_mul(d).filter(|n| *n <= MAX_ELEMENTS)
        })
        .ok_or_else(|| format!("shape {dims:?} has more than 2^32 elements"))
}

/// The IR type of an ONNX `TensorProto.DataType` code, `Err` with its name for others.
pub fn data_type(code: i32) -> Result<DataType, String> {
    Ok(match code {
        1 => DataType::Float32,
        2 => DataType::UInt8,
        3 => DataType::Int8,
        5 => DataType::Int16,
        6 => DataType::Int32,
        7 => DataType::Int64,
        9 => DataType::Bool,
        10 => DataType::Float16,
        // float64 constants are converted to float32.
        11 => DataType::Float32,
        other => {
            let name = match other {
                0 => "UNDEFINED",
                4 => "UINT16",
                8 => "STRING",
                12 => "UINT32",
                13 => "UINT64",
                14 => "COMPLEX64",
                15 => "COMPLEX128",
                16 => "BFLOAT16",
                17..=20 => "FLOAT8",
                21 => "UINT4",
                22 => "INT4",
                _ => "unknown",
            };
            return Err(format!("element type {name} ({other}) is not supported"));
        }
    })
}

/// Decodes an (embedded) tensor.
pub fn tensor_const(t: &TensorProto) -> Result<Const, String> {
    // DataLocation EXTERNAL = 1.
    if t.data_location.value() == 1 || !t.external_data.is_empty() {
        return Err(format!(
            "tensor {:?} keeps its data in an external file; save the model with all tensors \
             inside the .onnx file",
            t.name
        ));
    }
    let mut dims = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        dims.push(
            usize::try_from(d)
                .map_err(|_| format!("tensor {:?} has a negative dimension {d}", t.name))?,
        );
    }
    let n = checked_elements(&dims).map_err(|e| format!("tensor {:?}: {e}", t.name))?;
    let dtype = data_type(t.data_type).map_err(|e| format!("tensor {:?}: {e}", t.name))?;
    let is_f64 = t.data_type == 11;
    let wrong = |have: usize, field: &str| {
        format!(
            "tensor {:?}: {field} holds {have} values/bytes, shape {dims:?} of {} needs {}",
            t.name,
            if is_f64 { "float64" } else { dtype.name() },
            if field == "raw_data" {
                n * if is_f64 { 8 } else { dtype.size() }
            } else {
                n
            }
        )
    };
    let data: Vec<u8> = if !t.raw_data.is_empty() {
        let esize = if is_f64 { 8 } else { dtype.size() };
        if t.raw_data.len() != n * esize {
            return Err(wrong(t.raw_data.len(), "raw_data"));
        }
        if is_f64 {
            t.raw_data
                .chunks_exact(8)
                .flat_map(|b| {
                    let v = f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                    (v as f32).to_le_bytes()
                })
                .collect()
        } else {
            t.raw_data.to_vec()
        }
    } else if is_f64 {
        if t.double_data.len() != n {
            return Err(wrong(t.double_data.len(), "double_data"));
        }
        t.double_data
            .iter()
            .flat_map(|v| (*v as f32).to_le_bytes())
            .collect()
    } else {
        match dtype {
            DataType::Float32 => {
                if t.float_data.len() != n {
                    return Err(wrong(t.float_data.len(), "float_data"));
                }
                t.float_data.iter().flat_map(|v| v.to_le_bytes()).collect()
            }
            DataType::Int64 => {
                if t.int64_data.len() != n {
                    return Err(wrong(t.int64_data.len(), "int64_data"));
                }
                t.int64_data.iter().flat_map(|v| v.to_le_bytes()).collect()
            }
            _ => {
                if t.int32_data.len() != n {
                    return Err(wrong(t.int32_data.len(), "int32_data"));
                }
                let v = &t.int32_data;
                match dtype.size() {
                    1 => v.iter().map(|&x| x as u8).collect(),
                    2 => v.iter().flat_map(|&x| (x as u16).to_le_bytes()).collect(),
                    _ => v.iter().flat_map(|&x| x.to_le_bytes()).collect(),
                }
            }
        }
    };
    Ok(Const {
        dims,
        dtype,
        data,
        quant: None,
    })
}

/// The element type and static shape of a graph input or output (a symbolic first dimension
/// is taken as batch 1).
pub fn value_info(v: &ValueInfoProto) -> Result<(DataType, Vec<usize>), String> {
    let ty = v
        .type_
        .as_ref()
        .filter(|t| t.has_tensor_type())
        .ok_or_else(|| format!("{:?} is not a tensor", v.name))?;
    let tt = ty.tensor_type();
    let dtype = data_type(tt.elem_type).map_err(|e| format!("{:?}: {e}", v.name))?;
    let shape = tt
        .shape
        .as_ref()
        .ok_or_else(|| format!("{:?} has no shape (static shapes are needed)", v.name))?;
    let mut dims = Vec::new();
    for (i, d) in shape.dim.iter().enumerate() {
        if d.has_dim_value() {
            let x = d.dim_value();
            dims.push(
                usize::try_from(x)
                    .map_err(|_| format!("{:?}: dimension {i} is {x} (negative)", v.name))?,
            );
        } else if i == 0 {
            dims.push(1);
        } else {
            return Err(format!(
                "{:?}: dimension {i} is symbolic ({:?}); only the batch dimension may be",
                v.name,
                d.dim_param()
            ));
        }
    }
    checked_elements(&dims).map_err(|e| format!("{:?}: {e}", v.name))?;
    Ok((dtype, dims))
}

/// The attributes of one node.
pub struct Attrs<'a>(pub &'a [AttributeProto]);

impl<'a> Attrs<'a> {
    fn get(&self, name: &str, ty: AttributeType) -> Result<Option<&'a AttributeProto>, String> {
        match self.0.iter().find(|a| a.name == name) {
            None => Ok(None),
            Some(a) => match a.type_.enum_value() {
                Ok(t) if t == ty || t == AttributeType::UNDEFINED => Ok(Some(a)),
                Ok(t) => Err(format!("attribute {name} has type {t:?}, expected {ty:?}")),
                Err(t) => Err(format!("attribute {name} has unknown type {t}")),
            },
        }
    }

    /// An INT attribute.
    pub fn int(&self, name: &str, default: i64) -> Result<i64, String> {
        Ok(self.get(name, AttributeType::INT)?.map_or(default, |a| a.i))
    }

    /// A FLOAT attribute.
    pub fn float(&self, name: &str, default: f32) -> Result<f32, String> {
        Ok(self
            .get(name, AttributeType::FLOAT)?
            .map_or(default, |a| a.f))
    }

    /// An INTS attribute.
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, String> {
        Ok(self.get(name, AttributeType::INTS)?.map(|a| a.ints.clone()))
    }

    /// A STRING attribute.
    pub fn string(&self, name: &str) -> Result<Option<String>, String> {
        Ok(self
            .get(name, AttributeType::STRING)?
            .map(|a| String::from_utf8_lossy(&a.s).into_owned()))
    }

    /// A TENSOR attribute.
    pub fn tensor(&self, name: &str) -> Result<Option<&'a TensorProto>, String> {
        Ok(self
            .get(name, AttributeType::TENSOR)?
            .and_then(|a| a.t.as_ref()))
    }

    /// The first attribute not in `known`, by name.
    pub fn unknown(&self, known: &[&str]) -> Option<&'a str> {
        self.0
            .iter()
            .map(|a| a.name.as_str())
            .find(|n| !known.contains(n))
    }
}
