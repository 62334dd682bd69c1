//! The compilation pipeline: IR graph → lowered ops → arena plan → `.mote` bytes.

use std::collections::HashMap;

use mote_runtime::format::{OpDesc, Storage, TensorDesc, MAX_RANK, NONE};
use mote_runtime::{Model, OpKind};

use crate::error::CompileError;
use crate::ir::{Graph, TensorId};
use crate::lower::{lower_node, ConstPool, LowerCtx, LoweredOp};
use crate::schedule::{schedule, Owner, ScheduleOptions};
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
    /// First op index (execution order) at which it is live.
    pub first: usize,
    /// Last op index (execution order) at which it is live.
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
    /// The lowered ops, in execution order (a CONV_2D with a fused ADD has both's inputs and
    /// parameters).
    pub ops: Vec<LoweredOp>,
    /// For each op in execution order, the IR nodes it implements (more than one when fused;
    /// the order may differ from the graph's).
    pub op_nodes: Vec<Vec<usize>>,
}

impl Compiled {
    /// The file bytes at an aligned address, ready for `Model::from_bytes`.
    pub fn aligned(&self) -> AlignedBytes {
        AlignedBytes::new(&self.bytes)
    }
}

/// How the compiler stores the weights of CONV_2D and FULLY_CONNECTED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightLayout {
    /// The TFLite layout only: the smallest file, run by the reference kernels and the Cortex-M
    /// DSP kernels. The layout for microcontrollers, and the default.
    #[default]
    Compact,
    /// Also packed in blocks of 16 outputs × 4 reduction bytes with the input offset folded into
    /// the bias, for the x86 and aarch64 SIMD kernels ([`mote_runtime::simd::pack_weights`]):
    /// several times faster on application processors, for about twice the weight bytes.
    HostSimd,
}

impl WeightLayout {
    /// The layout that suits a target profile: [`WeightLayout::HostSimd`] on application
    /// processors with SIMD (x86-64, aarch64), [`WeightLayout::Compact`] on microcontrollers.
    pub fn for_target(profile: &mote_targets::TargetProfile) -> Self {
        use mote_targets::Features;
        if profile.features.contains(Features::NEON) || profile.features.contains(Features::SSE41) {
            WeightLayout::HostSimd
        } else {
            WeightLayout::Compact
        }
    }

    /// The name used on the command line (`compact`, `host-simd`).
    pub fn name(self) -> &'static str {
        match self {
            WeightLayout::Compact => "compact",
            WeightLayout::HostSimd => "host-simd",
        }
    }
}

/// Everything the compiler may be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompileOptions {
    /// What the arena planner may do.
    pub schedule: ScheduleOptions,
    /// How matrix weights are stored.
    pub layout: WeightLayout,
    /// Never use the N:M sparse weight encoding (by default the compact layout stores a CONV_2D
    /// or FULLY_CONNECTED whose weights are N:M sparse without their zeros where that pays: see
    /// [`crate::lower::sparse`]).
    pub dense_weights: bool,
}

impl CompileOptions {
    /// What ahead-of-time code (`mote_runtime::aot`) needs: every tensor in its own bytes
    /// ([`ScheduleOptions::plain`]: nothing in place or fused) and dense weights (no N:M sparse
    /// ops), with the compact layout. `mote convert --emit-aot` and `mote bench --aot` compile so.
    pub fn ahead_of_time() -> Self {
        CompileOptions {
            schedule: ScheduleOptions::plain(),
            dense_weights: true,
            ..CompileOptions::default()
        }
    }

    /// Default planning with the given weight layout.
    pub fn with_layout(layout: WeightLayout) -> Self {
        CompileOptions {
            layout,
            ..CompileOptions::default()
        }
    }
}

/// Compiles `graph` to a `.mote` file, with the smallest arena the planner finds and the
/// compact weight layout (see [`WeightLayout`]).
pub fn compile(graph: Graph) -> Result<Compiled, CompileError> {
    compile_opts(graph, CompileOptions::default())
}

/// Compiles `graph` with the given planning options (e.g. [`ScheduleOptions::plain`] for one
/// buffer per tensor, in the original order) and the compact weight layout.
pub fn compile_with(graph: Graph, options: ScheduleOptions) -> Result<Compiled, CompileError> {
    compile_opts(
        graph,
        CompileOptions {
            schedule: options,
            ..CompileOptions::default()
        },
    )
}

/// Compiles `graph` with every option given.
pub fn compile_opts(mut graph: Graph, options: CompileOptions) -> Result<Compiled, CompileError> {
    crate::lower::float::fold_f16_dequantize(&mut graph);
    let mut consts = ConstPool::default();
    let nodes = graph.nodes.clone();
    let mut ops = Vec::with_capacity(nodes.len());
    for (index, node) in nodes.iter().enumerate() {
        let mut ctx = LowerCtx {
            graph: &mut graph,
            index,
            consts: &mut consts,
            pack_weights: options.layout == WeightLayout::HostSimd,
        };
        let op = lower_node(&mut ctx, node)?;
        let op = if options.layout == WeightLayout::Compact && !options.dense_weights {
            crate::lower::sparse::sparsify(&mut ctx, op)?
        } else {
            op
        };
        ops.push(op);
    }
    let mut schedule = options.schedule;
    // Hosts have RAM to spare: residual blocks take the band that runs fastest.
    schedule.wide_bands |= options.layout == WeightLayout::HostSimd;
    assemble_with(&graph, ops, consts, schedule)
}

/// Lays out lowered ops, plans the arena and writes the file.
pub fn assemble(
    graph: &Graph,
    ops: Vec<LoweredOp>,
    consts: ConstPool,
) -> Result<Compiled, CompileError> {
    assemble_with(graph, ops, consts, ScheduleOptions::default())
}

/// [`assemble`] with the given planning options.
pub fn assemble_with(
    graph: &Graph,
    ops: Vec<LoweredOp>,
    consts: ConstPool,
    options: ScheduleOptions,
) -> Result<Compiled, CompileError> {
    let sched = schedule(graph, &ops, options)?;
    sched
        .plan
        .check_tied(&sched.buffers, &sched.ties)
        .map_err(|e| CompileError::Limit(format!("arena planner bug: {e}")))?;
    let steps = &sched.steps;

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
    for s in steps {
        for &t in s.op.inputs.iter().flatten().chain(s.op.outputs.iter()) {
            use_tensor(t, &mut order);
        }
    }
    for &t in &graph.outputs {
        use_tensor(t, &mut order);
    }

    let arena = &sched.plan;
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
    let mut scratch_offset: HashMap<usize, usize> = HashMap::new();
    let mut placed = Vec::new();
    for (k, owner) in sched.owners.iter().enumerate() {
        let b = sched.buffers[k];
        let offset = arena.offsets[k];
        let (label, tensor) = match *owner {
            Owner::Tensor(t) => {
                arena_offset.insert(t, offset);
                let name = &graph.tensor(t).name;
                let label = if name.is_empty() {
                    format!("tensor {}", file_index[&t])
                } else {
                    name.clone()
                };
                (label, Some(file_index[&t]))
            }
            Owner::Scratch(i) => {
                scratch_offset.insert(i, offset);
                (
                    format!("scratch of op {i} ({})", steps[i].op.kind.name()),
                    None,
                )
            }
        };
        placed.push(PlacedBuffer {
            label,
            tensor,
            offset,
            size: b.size,
            first: b.first,
            last: b.last,
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

    for (i, s) in steps.iter().enumerate() {
        let op = &s.op;
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
        parts.ops.push(OpDesc {
            kind: op.kind as u16,
            input_count: u8::try_from(op.inputs.len())
                .map_err(|_| CompileError::Limit(format!("op {i} has over 255 inputs")))?,
            output_count: u8::try_from(op.outputs.len())
                .map_err(|_| CompileError::Limit(format!("op {i} has over 255 outputs")))?,
            io_start,
            params_offset,
            params_len: op.params.len() as u32,
            scratch_offset: scratch_offset.get(&i).copied().unwrap_or(0) as u32,
            scratch_bytes: op.scratch_bytes as u32,
            name: NONE,
            flags: s.flags.to_u32(),
        });
        parts.costs.push(op.cost);
    }
    parts.io_start = parts.indices.len() as u32;
    parts.input_count = graph.inputs.len() as u16;
    parts.output_count = graph.outputs.len() as u16;
    for t in graph.inputs.iter().chain(&graph.outputs) {
        parts.indices.push(file_index[t]);
    }

    check_scratch_sides(&parts)?;
    let bytes = parts.to_bytes()?;
    // The runtime's validation is the final check of the compiler's output.
    let aligned = AlignedBytes::new(&bytes);
    Model::from_bytes(aligned.as_slice())?;
    Ok(Compiled {
        bytes,
        arena_bytes: arena.arena_bytes,
        buffers: placed,
        op_nodes: steps.iter().map(|s| s.nodes.clone()).collect(),
        ops: steps.iter().map(|s| s.op.clone()).collect(),
    })
}

/// The interpreter hands an op the arena below and above the bytes it writes, minus its scratch:
/// an arena input between the scratch and those bytes would be out of its reach. The planner
/// does not guarantee otherwise, so this refuses such a layout instead of a failing `invoke`.
fn check_scratch_sides(parts: &FileParts) -> Result<(), CompileError> {
    for (i, d) in parts.ops.iter().enumerate() {
        if d.scratch_bytes == 0 {
            continue;
        }
        let io = &parts.indices[d.io_start as usize..];
        let tensor = |t: u32| parts.tensors.get(t as usize);
        let Some(out) = io
            .get(d.input_count as usize)
            .and_then(|&t| tensor(t))
            .map(|t| t.offset as usize)
        else {
            continue;
        };
        let s = d.scratch_offset as usize;
        let (lo, hi) = if s < out { (s, out) } else { (out, s) };
        let shifted = matches!(
            mote_runtime::format::OpFlags::from_u32(d.flags).map(|f| f.in_place),
            Some(mote_runtime::format::InPlace::ShiftDown | mote_runtime::format::InPlace::ShiftUp)
        );
        for (k, &t) in io[..d.input_count as usize].iter().enumerate() {
            // A shifted op's input 0 is part of the bytes it writes.
            if shifted && k == 0 {
                continue;
            }
            let Some(x) = tensor(t) else { continue };
            let at = x.offset as usize;
            if x.storage == Storage::Arena as u8 && x.bytes > 0 && lo < at && at < hi {
                return Err(CompileError::Limit(format!(
                    "arena planner: op {i}'s input {t} lies between its scratch and its output"
                )));
            }
        }
    }
    Ok(())
}

/// Compiles a TFLite flatbuffer.
pub fn compile_tflite(bytes: &[u8]) -> Result<Compiled, CompileError> {
    compile(crate::tflite::import(bytes)?)
}

/// [`compile_tflite`] with every option given.
pub fn compile_tflite_opts(
    bytes: &[u8],
    options: CompileOptions,
) -> Result<Compiled, CompileError> {
    compile_opts(crate::tflite::import(bytes)?, options)
}

/// The op kind names of a compiled model, for reports.
pub fn op_names(ops: &[LoweredOp]) -> Vec<&'static str> {
    ops.iter().map(|o| OpKind::name(o.kind)).collect()
}
