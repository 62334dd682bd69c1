//! The compilation pipeline: IR graph → lowered ops → arena plan → `.mote` bytes.

use std::collections::HashMap;

use mote_runtime::format::{OpDesc, Storage, TensorDesc, MAX_RANK, NONE};
use mote_runtime::{Model, OpKind};

use crate::error::CompileError;
use crate::ir::{Graph, TensorId};
use crate::lower::{lower_node, ConstPool, LowerCtx, LoweredOp};
use crate::plan::{plan, ArenaPlan, Buffer};
use crate::write::{AlignedBytes, FileParts};

/// Where one arena buffer was placed, for reports (`mote inspect --plan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedBuffer {
    /// What the buffer holds: a tensor's name or `scratch of op N`.
    pub label: String,
    /// Tensor index in the `.mote` file, if it is a tensor.
    pub tensor: Option<u32>,
    /// Arena offset.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
    /// First op index at which it is live.
    pub first: usize,
    /// Last op index at which it is live.
    pub last: usize,
}

/// A compiled model.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The `.mote` file.
    pub bytes: Vec<u8>,
    /// Exact arena size.
    pub arena_bytes: usize,
    /// The arena plan, one entry per buffer.
    pub buffers: Vec<PlacedBuffer>,
    /// The lowered ops, in order.
    pub ops: Vec<LoweredOp>,
}

impl Compiled {
    /// The file bytes at an aligned address, ready for `Model::from_bytes`.
    pub fn aligned(&self) -> AlignedBytes {
        AlignedBytes::new(&self.bytes)
    }
}

/// Compiles `graph` to a `.mote` file.
pub fn compile(mut graph: Graph) -> Result<Compiled, CompileError> {
    let mut consts = ConstPool::default();
    let nodes = graph.nodes.clone();
    let mut ops = Vec::with_capacity(nodes.len());
    for (index, node) in nodes.iter().enumerate() {
        let mut ctx = LowerCtx {
            graph: &mut graph,
            index,
            consts: &mut consts,
        };
        ops.push(lower_node(&mut ctx, node)?);
    }
    assemble(&graph, ops, consts)
}

/// Lays out lowered ops, plans the arena and writes the file.
pub fn assemble(
    graph: &Graph,
    ops: Vec<LoweredOp>,
    consts: ConstPool,
) -> Result<Compiled, CompileError> {
    let n_ops = ops.len();
    // File tensor order: graph inputs, then first use in op order, then graph outputs.
    let mut order: Vec<TensorId> = Vec::new();
    let mut file_index: HashMap<TensorId, u32> = HashMap::new();
    let mut use_tensor = |t: TensorId, order: &mut Vec<TensorId>| {
        file_index.entry(t).or_insert_with(|| {
            order.push(t);
            (order.len() - 1) as u32
        });
    };
    for &t in &graph.inputs {
        use_tensor(t, &mut order);
    }
    for op in &ops {
        for &t in op.inputs.iter().flatten().chain(op.outputs.iter()) {
            use_tensor(t, &mut order);
        }
    }
    for &t in &graph.outputs {
        use_tensor(t, &mut order);
    }

    // Lifetimes of arena tensors.
    let mut first: HashMap<TensorId, usize> = HashMap::new();
    let mut last: HashMap<TensorId, usize> = HashMap::new();
    for &t in &graph.inputs {
        first.insert(t, 0);
        last.insert(t, 0);
    }
    for (i, op) in ops.iter().enumerate() {
        for &t in op.inputs.iter().flatten() {
            first.entry(t).or_insert(i);
            last.insert(t, i);
        }
        for &t in &op.outputs {
            first.entry(t).or_insert(i);
            let l = last.entry(t).or_insert(i);
            *l = (*l).max(i);
        }
    }
    for &t in &graph.outputs {
        first.entry(t).or_insert(0);
        last.insert(t, n_ops.saturating_sub(1));
    }

    let mut buffers = Vec::new();
    let mut labels = Vec::new();
    for &t in &order {
        let tensor = graph.tensor(t);
        if tensor.is_const() {
            continue;
        }
        buffers.push(Buffer {
            size: tensor.bytes(),
            first: first[&t],
            last: last[&t],
        });
        labels.push((Some(t), tensor.name.clone()));
    }
    for (i, op) in ops.iter().enumerate() {
        if op.scratch_bytes > 0 {
            buffers.push(Buffer {
                size: op.scratch_bytes,
                first: i,
                last: i,
            });
            labels.push((None, format!("scratch of op {i} ({})", op.kind.name())));
        }
    }
    let arena: ArenaPlan = plan(&buffers);
    arena
        .check(&buffers)
        .map_err(|e| CompileError::Limit(format!("arena planner bug: {e}")))?;

    let mut parts = FileParts {
        consts: consts.into_bytes(),
        arena_bytes: u32::try_from(arena.arena_bytes)
            .map_err(|_| CompileError::Limit("arena over 4 GiB".into()))?,
        ..FileParts::default()
    };
    let mut pool = ConstPool::default();
    // Re-open the pool so tensor data lands after the kernel constants.
    {
        let existing = std::mem::take(&mut parts.consts);
        pool.add(&existing)?;
    }
    let mut arena_offset: HashMap<TensorId, usize> = HashMap::new();
    let mut placed = Vec::new();
    for (k, (tensor, label)) in labels.iter().enumerate() {
        if let Some(t) = tensor {
            arena_offset.insert(*t, arena.offsets[k]);
        }
        placed.push(PlacedBuffer {
            label: if label.is_empty() {
                format!("tensor {}", tensor.map_or(0, |t| file_index[&t]))
            } else {
                label.clone()
            },
            tensor: tensor.map(|t| file_index[&t]),
            offset: arena.offsets[k],
            size: buffers[k].size,
            first: buffers[k].first,
            last: buffers[k].last,
        });
    }

    for &t in &order {
        let tensor = graph.tensor(t);
        let dtype = tensor.dtype.to_runtime().ok_or_else(|| {
            CompileError::Limit(format!(
                "tensor {t} ({}) has type {}, which the runtime does not hold",
                tensor.name, tensor.dtype
            ))
        })?;
        if tensor.shape.len() > MAX_RANK {
            return Err(CompileError::Limit(format!(
                "tensor {t} ({}) has rank {} (at most {MAX_RANK})",
                tensor.name,
                tensor.shape.len()
            )));
        }
        let mut shape = [0u32; MAX_RANK];
        for (d, &s) in shape.iter_mut().zip(&tensor.shape) {
            *d = u32::try_from(s)
                .map_err(|_| CompileError::Limit(format!("tensor {t} dimension {s}")))?;
        }
        let bytes = u32::try_from(tensor.bytes())
            .map_err(|_| CompileError::Limit(format!("tensor {t} over 4 GiB")))?;
        let (storage, offset) = match &tensor.data {
            Some(data) => {
                if data.len() != tensor.bytes() {
                    return Err(CompileError::Limit(format!(
                        "constant tensor {t} ({}) holds {} bytes, its shape needs {}",
                        tensor.name,
                        data.len(),
                        tensor.bytes()
                    )));
                }
                (Storage::Const, pool.add(data)?)
            }
            None => (Storage::Arena, arena_offset[&t] as u32),
        };
        let (scale, zero_point) = match &tensor.quant {
            Some(q) if q.is_per_tensor() => (q.scale(), q.zero_point() as i32),
            _ => (0.0, 0),
        };
        let name = parts.add_name(&tensor.name);
        parts.tensors.push(TensorDesc {
            shape,
            rank: tensor.shape.len() as u8,
            dtype: dtype as u8,
            storage: storage as u8,
            reserved: 0,
            scale,
            zero_point,
            offset,
            bytes,
            name,
        });
    }
    parts.consts = pool.into_bytes();

    for (i, op) in ops.iter().enumerate() {
        let io_start = parts.indices.len() as u32;
        for t in &op.inputs {
            parts.indices.push(t.map_or(NONE, |t| file_index[&t]));
        }
        for t in &op.outputs {
            parts.indices.push(file_index[t]);
        }
        let params_offset = parts.params.len() as u32;
        parts.params.extend_from_slice(&op.params);
        while parts.params.len() % 4 != 0 {
            parts.params.push(0);
        }
        let scratch_offset = placed
            .iter()
            .find(|b| b.tensor.is_none() && b.first == i && op.scratch_bytes > 0)
            .map_or(0, |b| b.offset as u32);
        parts.ops.push(OpDesc {
            kind: op.kind as u16,
            input_count: u8::try_from(op.inputs.len())
                .map_err(|_| CompileError::Limit(format!("op {i} has over 255 inputs")))?,
            output_count: u8::try_from(op.outputs.len())
                .map_err(|_| CompileError::Limit(format!("op {i} has over 255 outputs")))?,
            io_start,
            params_offset,
            params_len: op.params.len() as u32,
            scratch_offset,
            scratch_bytes: op.scratch_bytes as u32,
            name: NONE,
            reserved: 0,
        });
        parts.costs.push(op.cost);
    }
    parts.io_start = parts.indices.len() as u32;
    parts.input_count = graph.inputs.len() as u16;
    parts.output_count = graph.outputs.len() as u16;
    for t in graph.inputs.iter().chain(&graph.outputs) {
        parts.indices.push(file_index[t]);
    }

    let bytes = parts.to_bytes()?;
    // The runtime's validation is the final check of the compiler's output.
    let aligned = AlignedBytes::new(&bytes);
    Model::from_bytes(aligned.as_slice())?;
    Ok(Compiled {
        bytes,
        arena_bytes: arena.arena_bytes,
        buffers: placed,
        ops,
    })
}

/// Compiles a TFLite flatbuffer.
pub fn compile_tflite(bytes: &[u8]) -> Result<Compiled, CompileError> {
    compile(crate::tflite::import(bytes)?)
}

/// The op kind names of a compiled model, for reports.
pub fn op_names(ops: &[LoweredOp]) -> Vec<&'static str> {
    ops.iter().map(|o| OpKind::name(o.kind)).collect()
}
