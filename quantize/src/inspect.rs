//! What `mote inspect` reports about a model: ops, shapes, dtypes, parameters, MACs, memory.

use serde::Serialize;

use mote_runtime::format::{Storage, TensorDesc, NONE};
use mote_runtime::{Model, OpKind};

/// One tensor as reported.
#[derive(Debug, Clone, Serialize)]
pub struct TensorInfo {
    /// Index in the `.mote` file.
    pub index: u32,
    /// Name, if the file has one.
    pub name: String,
    /// Dimensions.
    pub shape: Vec<u32>,
    /// Element type (`int8`, `float32`, ...).
    pub dtype: &'static str,
    /// Quantization scale (0 when not quantized or per-channel).
    pub scale: f32,
    /// Quantization zero point.
    pub zero_point: i32,
    /// `arena` or `const`.
    pub storage: &'static str,
    /// Offset in the arena or the constant section.
    pub offset: u32,
    /// Size in bytes.
    pub bytes: u32,
}

/// One operator as reported.
#[derive(Debug, Clone, Serialize)]
pub struct OpInfo {
    /// Position in execution order.
    pub index: usize,
    /// TFLite builtin name of the kind.
    pub kind: &'static str,
    /// Input tensors (absent optional inputs omitted).
    pub inputs: Vec<TensorInfo>,
    /// Output tensors.
    pub outputs: Vec<TensorInfo>,
    /// Parameters, as `name=value` pairs.
    pub params: String,
    /// Multiply-accumulates.
    pub macs: u64,
    /// Constant bytes read (flash).
    pub const_bytes: u32,
    /// Scratch bytes in the arena.
    pub scratch_bytes: u32,
    /// How the op's weights are stored, for CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED and
    /// their sparse kinds: `dense int8`, `dense int4`, `N:M sparse`, ... with the weight bytes
    /// (sparse: values + positions); empty for ops without weights.
    pub weights: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Exact arena size in bytes.
    pub arena_bytes: usize,
    /// Size of the `.mote` file (what the model takes in flash).
    pub flash_bytes: usize,
    /// Bytes of constants (weights, biases, multipliers) within the file.
    pub const_bytes: usize,
    /// Total multiply-accumulates per inference.
    pub macs: u64,
    /// Model inputs.
    pub inputs: Vec<TensorInfo>,
    /// Model outputs.
    pub outputs: Vec<TensorInfo>,
    /// Operators in execution order.
    pub ops: Vec<OpInfo>,
}

fn tensor_info(model: &Model, index: u32) -> Option<TensorInfo> {
    let t: &TensorDesc = model.tensors().get(index as usize)?;
    Some(TensorInfo {
        index,
        name: model.tensor_name(index as usize).unwrap_or("").to_string(),
        shape: t.dims().to_vec(),
        dtype: t.dtype().map_or("?", |d| d.name()),
        scale: t.scale,
        zero_point: t.zero_point,
        storage: if t.storage() == Some(Storage::Const) {
            "const"
        } else {
            "arena"
        },
        offset: t.offset,
        bytes: t.bytes,
    })
}

/// Builds the report of a validated model.
pub fn report(model: &Model) -> Report {
    let mut ops = Vec::new();
    for (i, desc) in model.ops().iter().enumerate() {
        let (ins, outs) = model.op_io(i).unwrap_or((&[], &[]));
        let cost = model.costs().get(i).copied().unwrap_or_default();
        let kind = model.op_kind(i);
        let flags = mote_runtime::format::OpFlags::from_u32(desc.flags).unwrap_or_default();
        ops.push(OpInfo {
            index: i,
            kind: match kind {
                Some(OpKind::Conv2d) if flags.chain => "CONV_2D+CONV_2D+ADD",
                Some(OpKind::Conv2d) if flags.epilogue_add => "CONV_2D+ADD",
                k => k.map_or("?", |k| k.name()),
            },
            inputs: ins
                .iter()
                .filter(|&&t| t != NONE)
                .filter_map(|&t| tensor_info(model, t))
                .collect(),
            outputs: outs.iter().filter_map(|&t| tensor_info(model, t)).collect(),
            params: crate::arena_report::describe_params(model, i),
            macs: cost.macs,
            const_bytes: cost.const_bytes_read,
            scratch_bytes: desc.scratch_bytes,
            weights: weight_encoding(model, i, kind),
        });
    }
    Report {
        arena_bytes: model.arena_bytes(),
        flash_bytes: model.file_bytes(),
        const_bytes: model.consts().len(),
        macs: model.costs().iter().map(|c| c.macs).sum(),
        inputs: (0..model.input_count())
            .filter_map(|i| tensor_info(model, model.input_tensor(i)?))
            .collect(),
        outputs: (0..model.output_count())
            .filter_map(|i| tensor_info(model, model.output_tensor(i)?))
            .collect(),
        ops,
    }
}

/// [`OpInfo::weights`] of op `i`.
fn weight_encoding(model: &Model, i: usize, kind: Option<OpKind>) -> String {
    let (ins, _) = model.op_io(i).unwrap_or((&[], &[]));
    let bytes = |k: usize| {
        ins.get(k)
            .and_then(|&t| model.tensors().get(t as usize))
            .map_or(0, |t| t.bytes as u64)
    };
    match kind {
        Some(OpKind::SparseConv2d | OpKind::SparseFullyConnected) => {
            let (n, m) = model
                .op_params(i)
                .and_then(|b| {
                    bytemuck::try_pod_read_unaligned::<mote_runtime::ops::sparse::SparseParams>(b)
                        .ok()
                })
                .map_or((0, 0), |p| (p.n, p.m));
            format!("{n}:{m} sparse {} B", group(bytes(1) + bytes(3)))
        }
        Some(OpKind::Conv2d | OpKind::DepthwiseConv2d | OpKind::FullyConnected) => {
            let dtype = ins
                .get(1)
                .and_then(|&t| model.tensors().get(t as usize))
                .and_then(|t| t.dtype())
                .map_or("?", |d| d.name());
            format!("dense {dtype} {} B", group(bytes(1)))
        }
        _ => String::new(),
    }
}

fn shape_str(t: &TensorInfo) -> String {
    format!(
        "{}[{}]",
        t.dtype,
        t.shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x")
    )
}

/// Thousands separators for a human-readable figure.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Renders the report as aligned text tables.
pub fn render_text(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "flash {} bytes (constants {}), arena {} bytes, {} MACs per inference, {} ops",
        group(r.flash_bytes as u64),
        group(r.const_bytes as u64),
        group(r.arena_bytes as u64),
        group(r.macs),
        r.ops.len()
    );
    let _ = writeln!(s);
    for (title, list) in [("inputs", &r.inputs), ("outputs", &r.outputs)] {
        for (k, t) in list.iter().enumerate() {
            let _ = writeln!(
                s,
                "{:<7} {k}: {:<22} scale {:<12} zero_point {:<5} {}",
                title,
                shape_str(t),
                t.scale,
                t.zero_point,
                t.name
            );
        }
    }
    let _ = writeln!(s);
    let rows: Vec<[String; 7]> = r
        .ops
        .iter()
        .map(|o| {
            [
                o.index.to_string(),
                o.kind.to_string(),
                o.inputs
                    .iter()
                    .filter(|t| t.storage == "arena")
                    .map(shape_str)
                    .collect::<Vec<_>>()
                    .join(" "),
                o.outputs
                    .iter()
                    .map(shape_str)
                    .collect::<Vec<_>>()
                    .join(" "),
                group(o.macs),
                o.weights.clone(),
                o.params.clone(),
            ]
        })
        .collect();
    let header = [
        "#",
        "op",
        "inputs",
        "output",
        "MACs",
        "weights",
        "parameters",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: [&str; 7], s: &mut String| {
        let _ = writeln!(
            s,
            "{:>w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:>w4$}  {:<w5$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            cells[6],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4],
            w5 = widths[5],
        );
    };
    line(header, &mut s);
    for row in &rows {
        line(
            [
                &row[0], &row[1], &row[2], &row[3], &row[4], &row[5], &row[6],
            ],
            &mut s,
        );
    }
    s
}
