//! How a lowered graph runs: which ops fuse, in which order the ops run, which ops compute in
//! place, and where every buffer lives in the arena.
//!
//! The search minimises the arena and, among plans of equal size, prefers the faster one (fewer
//! fused and shifted ops; the original order):
//!
//! 1. **Fusion.** A CONV_2D whose output feeds only an ADD (same shape, no broadcasting) can
//!    carry the ADD as an epilogue (`mote_runtime::ops::fused`): the intermediate is never
//!    stored, and the ADD's result can overwrite the residual. When that CONV_2D's input comes
//!    from another CONV_2D used nowhere else, the three can run as one residual block
//!    (`mote_runtime::ops::chain`) that keeps only a few rows of the first convolution's output
//!    in scratch and may write over its input. Subsets of the candidates are tried (all of them
//!    when there are at most 64, greedily beyond).
//! 2. **Order.** Topological orders of the ops: the original one, a greedy one that runs first
//!    the op that frees the most bytes, and the best few of a bounded enumeration ranked by their
//!    live-bytes peak.
//! 3. **In place.** For each op whose input dies there, the modes the runtime allows
//!    (`mote_runtime::ops::inplace`): alias for element-wise ops and reshapes, shift down / up
//!    (by the smallest distance the runtime accepts) for convolutions. Coordinate descent from a
//!    few starting points picks one mode per op.
//! 4. **Placement.** [`crate::plan::plan_tied`] places the buffers, keeping in-place pairs at
//!    their fixed distance.
//! 5. **Speed for free.** Each residual block then computes as many output rows per step as fit
//!    without growing the arena (fewer, larger kernel calls).

use std::collections::{HashMap, HashSet};

use mote_runtime::format::{align_up, DType, InPlace, OpFlags};
use mote_runtime::ops::chain;
use mote_runtime::ops::conv::ConvParams;
use mote_runtime::ops::depthwise::DepthwiseParams;
use mote_runtime::ops::inplace::{min_shift, RowGeometry, ShiftDirection};
use mote_runtime::OpKind;

use crate::error::CompileError;
use crate::ir::{Graph, TensorId};
use crate::lower::LoweredOp;
use crate::plan::{live_peak, plan_tied, ArenaPlan, Buffer, Tie};

/// What the search may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleOptions {
    /// Let ops compute in place.
    pub in_place: bool,
    /// Fuse CONV_2D + ADD.
    pub fuse: bool,
    /// Fuse CONV_2D + CONV_2D + ADD into one residual-block op streaming its intermediate
    /// (with `fuse`).
    pub chain: bool,
    /// Try other operator orders.
    pub reorder: bool,
    /// Give each residual block its widest band (fewest, largest kernel calls) even when the
    /// arena grows: speed over RAM, for hosts ([`crate::compile::WeightLayout::HostSimd`]).
    pub wide_bands: bool,
}

impl Default for ScheduleOptions {
    fn default() -> Self {
        ScheduleOptions {
            in_place: true,
            fuse: true,
            chain: true,
            reorder: true,
            wide_bands: false,
        }
    }
}

impl ScheduleOptions {
    /// No fusion, no reordering, nothing in place: every tensor in its own bytes.
    pub fn plain() -> Self {
        ScheduleOptions {
            in_place: false,
            fuse: false,
            chain: false,
            reorder: false,
            wide_bands: false,
        }
    }
}

/// One runtime op in execution order.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The op (a fused op has the CONV_2D's inputs plus the residual, and both params).
    pub op: LoweredOp,
    /// The lowered ops (= IR nodes) it implements, in the original numbering.
    pub nodes: Vec<usize>,
    /// In-place mode and fused epilogue.
    pub flags: OpFlags,
}

/// What an arena buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// An activation tensor of the graph.
    Tensor(TensorId),
    /// The scratch of the step with this index.
    Scratch(usize),
}

/// The chosen schedule: steps, buffers, ties and their placement.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The ops in execution order.
    pub steps: Vec<Step>,
    /// Every arena buffer (lifetimes in step indices).
    pub buffers: Vec<Buffer>,
    /// What each buffer holds.
    pub owners: Vec<Owner>,
    /// In-place ties between buffers.
    pub ties: Vec<Tie>,
    /// Offsets and arena size.
    pub plan: ArenaPlan,
    /// The in-place mode of each step.
    modes: Vec<Mode>,
}

/// The in-place mode of one step during the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Separate,
    Alias(u8),
    Down(usize),
    Up(usize),
}

impl Mode {
    /// A small cost for speed: shifted convolutions run band by band.
    fn penalty(self) -> usize {
        match self {
            Mode::Down(_) | Mode::Up(_) => 1,
            _ => 0,
        }
    }
    fn in_place(self) -> InPlace {
        match self {
            Mode::Separate => InPlace::Separate,
            Mode::Alias(k) => InPlace::Alias(k),
            Mode::Down(_) => InPlace::ShiftDown,
            Mode::Up(_) => InPlace::ShiftUp,
        }
    }
}

/// Above this many steps the search tries fewer orders, starting points and passes.
const LARGE: usize = 48;

/// Search score: arena bytes first, then the speed penalty.
type Score = (usize, usize);

/// A CONV_2D (`conv`) whose only consumer is the ADD `add`, with the ADD's other operand; with
/// `first`, also the CONV_2D before it (whose only consumer is `conv`): a residual block.
#[derive(Debug, Clone, Copy)]
struct Fusion {
    conv: usize,
    first: Option<usize>,
    add: usize,
    residual: TensorId,
    residual_first: bool,
}

fn is_int8(graph: &Graph, t: TensorId) -> bool {
    graph.tensor(t).dtype.to_runtime() == Some(DType::Int8)
}

/// Whether op `op`'s weights (input 1) are int8: the fused and in-place (shifted) window kernels
/// exist for int8 only (not for packed int4 weights or 16x8).
fn int8_weights(graph: &Graph, op: &LoweredOp) -> bool {
    op.inputs
        .get(1)
        .copied()
        .flatten()
        .is_some_and(|w| is_int8(graph, w))
}

/// Whether `op`'s weights (input 1) are int8 or packed int4: the window ops that run in place.
fn int8_or_int4_weights(graph: &Graph, op: &LoweredOp) -> bool {
    int8_weights(graph, op)
        || op
            .inputs
            .get(1)
            .copied()
            .flatten()
            .is_some_and(|w| graph.tensor(w).dtype == crate::ir::DataType::Int4)
}

fn fusion_candidates(graph: &Graph, ops: &[LoweredOp]) -> Vec<Fusion> {
    let mut consumers: HashMap<TensorId, Vec<usize>> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        for &t in op.inputs.iter().flatten() {
            consumers.entry(t).or_default().push(i);
        }
    }
    let mut out = Vec::new();
    for (p, op) in ops.iter().enumerate() {
        if op.kind != OpKind::Conv2d
            || op.outputs.len() != 1
            || op.inputs.len() != 3
            || !int8_weights(graph, op)
        {
            continue;
        }
        let t = op.outputs[0];
        if graph.outputs.contains(&t) {
            continue;
        }
        let Some([q]) = consumers.get(&t).map(Vec::as_slice) else {
            continue;
        };
        let add = &ops[*q];
        if add.kind != OpKind::Add || add.inputs.len() != 2 || add.outputs.len() != 1 {
            continue;
        }
        let (Some(a), Some(b)) = (add.inputs[0], add.inputs[1]) else {
            continue;
        };
        if a == b {
            continue;
        }
        let (residual, residual_first) = if a == t { (b, false) } else { (a, true) };
        let sum = add.outputs[0];
        let same =
            |x: TensorId| graph.tensor(x).shape == graph.tensor(t).shape && is_int8(graph, x);
        if same(residual) && same(sum) && same(t) && !graph.tensor(residual).is_const() {
            let f = Fusion {
                conv: p,
                first: None,
                add: *q,
                residual,
                residual_first,
            };
            out.push(f);
            // The CONV_2D before, if this one is its only consumer: a residual block.
            let Some(mid) = op.inputs[0] else { continue };
            let producer = ops.iter().position(|o| o.outputs.contains(&mid));
            let weights_const = op.inputs[1..]
                .iter()
                .flatten()
                .all(|&w| graph.tensor(w).is_const());
            if let Some(first) = producer {
                let p1 = &ops[first];
                let only = consumers.get(&mid).map(Vec::as_slice) == Some(&[p][..]);
                if p1.kind == OpKind::Conv2d
                    && int8_weights(graph, p1)
                    && p1.inputs.len() == 3
                    && p1.outputs.len() == 1
                    && only
                    && weights_const
                    && !graph.outputs.contains(&mid)
                    && graph.tensor(mid).shape.len() == 4
                    && is_int8(graph, mid)
                {
                    out.push(Fusion {
                        first: Some(first),
                        ..f
                    });
                }
            }
        }
    }
    out
}

fn dims4(graph: &Graph, t: TensorId) -> Option<[usize; 4]> {
    graph.tensor(t).shape.clone().try_into().ok()
}

/// The step of a residual block `f`: CONV_2D `first` → CONV_2D `conv` → ADD.
fn chain_step(graph: &Graph, ops: &[LoweredOp], f: &Fusion, first: usize) -> Option<Step> {
    let (p1, p2, q) = (&ops[first], &ops[f.conv], &ops[f.add]);
    let mid = p2.inputs.first().copied().flatten()?;
    let ms = dims4(graph, mid)?;
    let os = dims4(graph, *q.outputs.first()?)?;
    let f2 = dims4(graph, p2.inputs.get(1).copied().flatten()?)?;
    let c2: ConvParams = read_params(&p2.params)?;
    let scratch = chain::scratch_bytes(&c2, f2[1], ms, os, 1)?;
    let shape = chain::MidShape {
        height: u32::try_from(ms[1]).ok()?,
        width: u32::try_from(ms[2]).ok()?,
        channels: u32::try_from(ms[3]).ok()?,
        band_rows: 1,
    };
    let mut inputs = p1.inputs.clone();
    inputs.extend(p2.inputs[1..].iter().copied());
    inputs.push(Some(f.residual));
    let mut params = p1.params.clone();
    params.extend_from_slice(&p2.params);
    params.extend_from_slice(bytemuck::bytes_of(&shape));
    params.extend_from_slice(&q.params);
    let mut cost = p1.cost;
    for c in [p2.cost, q.cost] {
        cost.macs += c.macs;
        cost.const_bytes_read += c.const_bytes_read;
    }
    // The intermediate and the convolution's result are never written to the arena.
    cost.arena_bytes_written = q.cost.arena_bytes_written;
    cost.arena_bytes_read = p1
        .cost
        .arena_bytes_read
        .saturating_add(q.cost.arena_bytes_read)
        .saturating_sub(p2.cost.arena_bytes_written);
    Some(Step {
        op: LoweredOp {
            kind: OpKind::Conv2d,
            inputs,
            outputs: q.outputs.clone(),
            params,
            scratch_bytes: scratch.max(p1.scratch_bytes).max(p2.scratch_bytes),
            cost,
        },
        nodes: vec![first, f.conv, f.add],
        flags: OpFlags {
            in_place: InPlace::Separate,
            epilogue_add: true,
            residual_first: f.residual_first,
            chain: true,
        },
    })
}

/// The steps with the chosen fusions applied, in the original order (a fused op takes its ADD's
/// place).
fn apply_fusions(graph: &Graph, ops: &[LoweredOp], fusions: &[Fusion]) -> Option<Vec<Step>> {
    let absorbed: HashSet<usize> = fusions
        .iter()
        .flat_map(|f| [Some(f.conv), f.first])
        .flatten()
        .collect();
    let fused_add: HashMap<usize, &Fusion> = fusions.iter().map(|f| (f.add, f)).collect();
    let mut steps = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if absorbed.contains(&i) {
            continue;
        }
        if let Some(first) = fused_add.get(&i).and_then(|f| f.first) {
            steps.push(chain_step(graph, ops, fused_add[&i], first)?);
        } else if let Some(f) = fused_add.get(&i) {
            let conv = &ops[f.conv];
            let mut inputs = conv.inputs.clone();
            inputs.push(Some(f.residual));
            let mut params = conv.params.clone();
            params.extend_from_slice(&op.params);
            let mut cost = conv.cost;
            cost.macs += op.cost.macs;
            cost.const_bytes_read += op.cost.const_bytes_read;
            cost.arena_bytes_read = cost
                .arena_bytes_read
                .saturating_add(op.cost.arena_bytes_read)
                .saturating_sub(conv.cost.arena_bytes_written);
            cost.arena_bytes_written = op.cost.arena_bytes_written;
            steps.push(Step {
                op: LoweredOp {
                    kind: OpKind::Conv2d,
                    inputs,
                    outputs: op.outputs.clone(),
                    params,
                    scratch_bytes: conv.scratch_bytes,
                    cost,
                },
                nodes: vec![f.conv, f.add],
                flags: OpFlags {
                    in_place: InPlace::Separate,
                    epilogue_add: true,
                    residual_first: f.residual_first,
                    chain: false,
                },
            });
        } else {
            steps.push(Step {
                op: op.clone(),
                nodes: vec![i],
                flags: OpFlags::default(),
            });
        }
    }
    Some(steps)
}

/// Candidate execution orders (permutations of step indices), original first.
fn orders(graph: &Graph, steps: &[Step], reorder: bool) -> Vec<Vec<usize>> {
    let n = steps.len();
    let original: Vec<usize> = (0..n).collect();
    if !reorder || n < 2 {
        return vec![original];
    }
    let mut producer: HashMap<TensorId, usize> = HashMap::new();
    for (i, s) in steps.iter().enumerate() {
        for &t in &s.op.outputs {
            producer.insert(t, i);
        }
    }
    let deps: Vec<Vec<usize>> = steps
        .iter()
        .map(|s| {
            let mut d: Vec<usize> =
                s.op.inputs
                    .iter()
                    .flatten()
                    .filter_map(|t| producer.get(t).copied())
                    .collect();
            d.sort_unstable();
            d.dedup();
            d
        })
        .collect();
    let mut out = vec![original.clone()];
    // Greedy: among ready steps, the one that adds the fewest bytes (outputs − inputs dying).
    let bytes = |t: TensorId| {
        let x = graph.tensor(t);
        if x.is_const() {
            0
        } else {
            x.bytes() as i64
        }
    };
    let mut uses: HashMap<TensorId, usize> = HashMap::new();
    for s in steps {
        for &t in s.op.inputs.iter().flatten() {
            *uses.entry(t).or_default() += 1;
        }
    }
    let mut done = vec![false; n];
    let mut left = uses.clone();
    let mut greedy = Vec::with_capacity(n);
    for _ in 0..n {
        let ready = (0..n).filter(|&i| !done[i] && deps[i].iter().all(|&d| done[d]));
        let Some(best) = ready.min_by_key(|&i| {
            let s = &steps[i];
            let added: i64 = s.op.outputs.iter().map(|&t| bytes(t)).sum();
            let freed: i64 =
                s.op.inputs
                    .iter()
                    .flatten()
                    .filter(|t| left.get(t) == Some(&1) && !graph.outputs.contains(t))
                    .map(|&t| bytes(t))
                    .sum();
            (added - freed, i)
        }) else {
            break;
        };
        done[best] = true;
        for t in steps[best].op.inputs.iter().flatten() {
            if let Some(c) = left.get_mut(t) {
                *c = c.saturating_sub(1);
            }
        }
        greedy.push(best);
    }
    if greedy.len() == n && greedy != original {
        out.push(greedy);
    }
    // Bounded enumeration of topological orders, ranked by their live-bytes peak.
    let mut found: Vec<Vec<usize>> = Vec::new();
    let mut current = Vec::with_capacity(n);
    let mut done = vec![false; n];
    // Large graphs: fewer candidates, so that planning stays quick.
    let (cap, keep) = if n > LARGE { (16, 1) } else { (256, 4) };
    enumerate(&deps, &mut done, &mut current, &mut found, cap);
    let mut ranked: Vec<(usize, Vec<usize>)> = found
        .into_iter()
        .map(|o| (live_peak(&plain_buffers(graph, steps, &o)), o))
        .collect();
    ranked.sort();
    for (_, o) in ranked.into_iter().take(keep) {
        if !out.contains(&o) {
            out.push(o);
        }
    }
    out
}

fn enumerate(
    deps: &[Vec<usize>],
    done: &mut [bool],
    current: &mut Vec<usize>,
    found: &mut Vec<Vec<usize>>,
    cap: usize,
) {
    if found.len() >= cap {
        return;
    }
    if current.len() == deps.len() {
        found.push(current.clone());
        return;
    }
    for i in 0..deps.len() {
        if !done[i] && deps[i].iter().all(|&d| done[d]) {
            done[i] = true;
            current.push(i);
            enumerate(deps, done, current, found, cap);
            current.pop();
            done[i] = false;
            if found.len() >= cap {
                return;
            }
        }
    }
}

/// Buffers of `steps` run in `order`, nothing in place (for ranking orders).
fn plain_buffers(graph: &Graph, steps: &[Step], order: &[usize]) -> Vec<Buffer> {
    let ordered: Vec<&Step> = order.iter().map(|&i| &steps[i]).collect();
    let life = Lifetimes::new(graph, &ordered);
    let mut b: Vec<Buffer> = life
        .tensors
        .iter()
        .map(|&t| life.buffer(graph, t))
        .collect();
    for (i, s) in ordered.iter().enumerate() {
        if s.op.scratch_bytes > 0 {
            b.push(Buffer {
                size: s.op.scratch_bytes,
                first: i,
                last: i,
            });
        }
    }
    b
}

/// First and last step index of every arena tensor.
struct Lifetimes {
    tensors: Vec<TensorId>,
    first: HashMap<TensorId, usize>,
    last: HashMap<TensorId, usize>,
}

impl Lifetimes {
    fn new(graph: &Graph, steps: &[&Step]) -> Self {
        let mut tensors = Vec::new();
        let mut seen = HashSet::new();
        let mut first: HashMap<TensorId, usize> = HashMap::new();
        let mut last: HashMap<TensorId, usize> = HashMap::new();
        let mut add = |t: TensorId, tensors: &mut Vec<TensorId>| {
            if !graph.tensor(t).is_const() && seen.insert(t) {
                tensors.push(t);
            }
        };
        for &t in &graph.inputs {
            add(t, &mut tensors);
            first.insert(t, 0);
            last.insert(t, 0);
        }
        for (i, s) in steps.iter().enumerate() {
            for &t in s.op.inputs.iter().flatten() {
                add(t, &mut tensors);
                first.entry(t).or_insert(i);
                last.insert(t, i);
            }
            for &t in &s.op.outputs {
                add(t, &mut tensors);
                first.entry(t).or_insert(i);
                let l = last.entry(t).or_insert(i);
                *l = (*l).max(i);
            }
        }
        for &t in &graph.outputs {
            add(t, &mut tensors);
            first.entry(t).or_insert(0);
            last.insert(t, steps.len().saturating_sub(1));
        }
        Lifetimes {
            tensors,
            first,
            last,
        }
    }

    fn buffer(&self, graph: &Graph, t: TensorId) -> Buffer {
        Buffer {
            size: graph.tensor(t).bytes(),
            first: self.first.get(&t).copied().unwrap_or(0),
            last: self.last.get(&t).copied().unwrap_or(0),
        }
    }
}

/// One (fusion set, order) pair: the steps in order, their buffers and in-place options.
struct Problem<'g> {
    graph: &'g Graph,
    steps: Vec<Step>,
    life: Lifetimes,
    /// Buffer index of each arena tensor.
    index: HashMap<TensorId, usize>,
    /// Buffers: tensors, then scratch.
    buffers: Vec<Buffer>,
    owners: Vec<Owner>,
    /// Modes each step may use (Separate first).
    options: Vec<Vec<Mode>>,
}

impl<'g> Problem<'g> {
    fn new(graph: &'g Graph, steps: &[Step], order: &[usize], in_place: bool) -> Self {
        let steps: Vec<Step> = order.iter().map(|&i| steps[i].clone()).collect();
        let refs: Vec<&Step> = steps.iter().collect();
        let life = Lifetimes::new(graph, &refs);
        let mut buffers = Vec::new();
        let mut owners = Vec::new();
        let mut index = HashMap::new();
        for &t in &life.tensors {
            index.insert(t, buffers.len());
            buffers.push(life.buffer(graph, t));
            owners.push(Owner::Tensor(t));
        }
        for (i, s) in steps.iter().enumerate() {
            if s.op.scratch_bytes > 0 {
                buffers.push(Buffer {
                    size: s.op.scratch_bytes,
                    first: i,
                    last: i,
                });
                owners.push(Owner::Scratch(i));
            }
        }
        let mut p = Problem {
            graph,
            steps,
            life,
            index,
            buffers,
            owners,
            options: Vec::new(),
        };
        p.options = (0..p.steps.len())
            .map(|i| {
                let mut o = vec![Mode::Separate];
                if in_place {
                    o.extend(p.in_place_options(i));
                }
                o
            })
            .collect();
        p
    }

    /// Whether input `t` of step `i` dies there and may be overwritten by it.
    fn dies_at(&self, t: TensorId, i: usize) -> bool {
        let op = &self.steps[i].op;
        !self.graph.tensor(t).is_const()
            && self.life.last.get(&t) == Some(&i)
            && !self.graph.outputs.contains(&t)
            && op.inputs.iter().flatten().filter(|&&x| x == t).count() == 1
            && !op.outputs.contains(&t)
    }

    fn in_place_options(&self, i: usize) -> Vec<Mode> {
        let s = &self.steps[i];
        let op = &s.op;
        let g = self.graph;
        let Some(&out) = op.outputs.first() else {
            return Vec::new();
        };
        if op.outputs.len() != 1 || g.tensor(out).is_const() {
            return Vec::new();
        }
        let input = |k: usize| op.inputs.get(k).copied().flatten();
        let same_bytes = |t: TensorId| g.tensor(t).bytes() == g.tensor(out).bytes();
        let alias = |k: usize| -> Option<Mode> {
            let t = input(k)?;
            (self.dies_at(t, i) && same_bytes(t)).then_some(Mode::Alias(k as u8))
        };
        // The shift modes the runtime accepts, at the smallest aligned distance.
        let shifts = |geom: &RowGeometry| {
            [
                (ShiftDirection::Down, Mode::Down as fn(usize) -> Mode),
                (ShiftDirection::Up, Mode::Up as fn(usize) -> Mode),
            ]
            .into_iter()
            .filter_map(|(dir, mode)| Some(mode(align_up(min_shift(geom, dir)? as usize))))
            .collect::<Vec<Mode>>()
        };
        let mut o = Vec::new();
        if s.flags.chain {
            o.extend(self.chain_alias(i));
            return o;
        }
        if s.flags.epilogue_add {
            o.extend(alias(3));
            return o;
        }
        match op.kind {
            OpKind::Relu
            | OpKind::Relu6
            | OpKind::Logistic
            | OpKind::Tanh
            | OpKind::Reshape
            | OpKind::Squeeze => o.extend(alias(0)),
            OpKind::Quantize | OpKind::Dequantize => {
                let Some(x) = input(0).filter(|&t| self.dies_at(t, i)) else {
                    return o;
                };
                let (Some(a), Some(b)) = (
                    g.tensor(x).dtype.to_runtime(),
                    g.tensor(out).dtype.to_runtime(),
                ) else {
                    return o;
                };
                let float = a == DType::Float32 || b == DType::Float32;
                if !float && a.size() == b.size() && op.kind == OpKind::Quantize {
                    o.extend(alias(0));
                } else if a.size() != b.size() {
                    // Element by element, like a pointwise convolution.
                    let geom =
                        RowGeometry::pointwise(1, g.tensor(x).elements(), a.size(), b.size());
                    o.extend(shifts(&geom));
                }
            }
            OpKind::Add | OpKind::Sub | OpKind::Mul => {
                let int8 = op.inputs.iter().flatten().all(|&t| is_int8(g, t)) && is_int8(g, out);
                if int8 {
                    o.extend(alias(0));
                    o.extend(alias(1));
                }
            }
            OpKind::Conv2d | OpKind::DepthwiseConv2d
                if int8_or_int4_weights(g, op) && is_int8(g, out) =>
            {
                if let Some(geom) = self.window_geometry(i) {
                    o.extend(shifts(&geom));
                }
            }
            _ => {}
        }
        o
    }

    /// `Alias(5)` for residual block `i` if its output can overwrite its residual: the residual
    /// dies there, and when it is the block's input too, the runtime's row order allows it.
    fn chain_alias(&self, i: usize) -> Option<Mode> {
        let op = &self.steps[i].op;
        let g = self.graph;
        let (x, r) = (op.inputs.first().copied()??, op.inputs.get(5).copied()??);
        let out = *op.outputs.first()?;
        if g.tensor(r).bytes() != g.tensor(out).bytes() || g.tensor(r).is_const() {
            return None;
        }
        if r != x {
            return self.dies_at(r, i).then_some(Mode::Alias(5));
        }
        // The residual is the input (read twice by the op).
        if self.life.last.get(&r) != Some(&i) || g.outputs.contains(&r) {
            return None;
        }
        let p1: ConvParams = read_params(&op.params)?;
        let conv = std::mem::size_of::<ConvParams>();
        let p2: ConvParams = read_params(op.params.get(conv..)?)?;
        let shape: chain::MidShape = read_params(op.params.get(2 * conv..)?)?;
        let xs = dims4(g, x)?;
        let ms = [
            xs[0],
            shape.height as usize,
            shape.width as usize,
            shape.channels as usize,
        ];
        let f1 = dims4(g, op.inputs.get(1).copied()??)?;
        let f2 = dims4(g, op.inputs.get(3).copied()??)?;
        let os = dims4(g, out)?;
        chain::in_place_ok(&p1, f1[1], xs, ms, &p2, f2[1], os).then_some(Mode::Alias(5))
    }

    /// Row geometry of step `i` if it is a window op whose input 0 dies there and whose other
    /// inputs are constants.
    fn window_geometry(&self, i: usize) -> Option<RowGeometry> {
        let op = &self.steps[i].op;
        let g = self.graph;
        let x = op.inputs.first().copied().flatten()?;
        if !self.dies_at(x, i) || !is_int8(g, x) {
            return None;
        }
        if op.inputs[1..]
            .iter()
            .flatten()
            .any(|&t| !g.tensor(t).is_const())
        {
            return None;
        }
        let dims =
            |t: TensorId| -> Option<[usize; 4]> { g.tensor(t).shape.clone().try_into().ok() };
        let is = dims(x)?;
        let os = dims(op.outputs[0])?;
        let fs = dims(op.inputs.get(1).copied().flatten()?)?;
        let (stride, pad, dil) = match op.kind {
            OpKind::Conv2d => {
                let p: ConvParams = read_params(&op.params)?;
                (
                    [p.stride_h, p.stride_w],
                    [p.pad_h, p.pad_w],
                    [p.dilation_h, p.dilation_w],
                )
            }
            OpKind::DepthwiseConv2d => {
                let p: DepthwiseParams = read_params(&op.params)?;
                (
                    [p.stride_h, p.stride_w],
                    [p.pad_h, p.pad_w],
                    [p.dilation_h, p.dilation_w],
                )
            }
            _ => return None,
        };
        let u = |a: [u32; 2]| [a[0] as usize, a[1] as usize];
        Some(RowGeometry::window(
            is,
            os,
            [fs[1], fs[2]],
            u(stride),
            u(pad),
            u(dil),
        ))
    }

    fn ties(&self, modes: &[Mode]) -> Vec<Tie> {
        let mut ties = Vec::new();
        for (i, m) in modes.iter().enumerate() {
            let op = &self.steps[i].op;
            let (k, offset) = match *m {
                Mode::Separate => continue,
                Mode::Alias(k) => (k as usize, 0i64),
                Mode::Down(d) => (0, -(d as i64)),
                Mode::Up(u) => (0, u as i64),
            };
            let (Some(Some(t)), Some(o)) = (op.inputs.get(k), op.outputs.first()) else {
                continue;
            };
            ties.push(Tie {
                from: self.index[t],
                to: self.index[o],
                offset,
            });
        }
        ties
    }

    fn evaluate(&self, modes: &[Mode]) -> Option<(ArenaPlan, Score)> {
        let ties = self.ties(modes);
        let plan = plan_tied(&self.buffers, &ties).ok()?;
        let penalty = modes.iter().map(|m| m.penalty()).sum();
        let score = (plan.arena_bytes, penalty);
        Some((plan, score))
    }

    /// Coordinate descent over the modes from a few starting points.
    fn search(&self) -> Option<(Vec<Mode>, ArenaPlan, Score)> {
        let n = self.steps.len();
        let separate = vec![Mode::Separate; n];
        // Alias wherever possible, shifts alternating down and up along the graph.
        let mut zigzag = separate.clone();
        let mut down = separate.clone();
        let mut flip = false;
        for i in 0..n {
            let opts = &self.options[i];
            if let Some(&a) = opts.iter().find(|m| matches!(m, Mode::Alias(_))) {
                zigzag[i] = a;
                down[i] = a;
            } else {
                let want_up = flip;
                if let Some(&m) = opts.iter().find(|m| match m {
                    Mode::Up(_) => want_up,
                    Mode::Down(_) => !want_up,
                    _ => false,
                }) {
                    zigzag[i] = m;
                    flip = !flip;
                }
                if let Some(&m) = opts.iter().find(|m| matches!(m, Mode::Down(_))) {
                    down[i] = m;
                }
            }
        }
        let mut best: Option<(Vec<Mode>, ArenaPlan, Score)> = None;
        let large = n > LARGE;
        let starts = if large {
            vec![zigzag]
        } else {
            vec![zigzag, down, separate]
        };
        for start in starts {
            let Some((plan, score)) = self.evaluate(&start) else {
                continue;
            };
            let mut cur = (start, plan, score);
            for _pass in 0..if large { 2 } else { 4 } {
                let mut improved = false;
                for i in 0..n {
                    for &m in &self.options[i] {
                        if m == cur.0[i] {
                            continue;
                        }
                        let mut trial = cur.0.clone();
                        trial[i] = m;
                        if let Some((plan, score)) = self.evaluate(&trial) {
                            if score < cur.2 {
                                cur = (trial, plan, score);
                                improved = true;
                            }
                        }
                    }
                }
                if !improved {
                    break;
                }
            }
            if best.as_ref().is_none_or(|b| cur.2 < b.2) {
                best = Some(cur);
            }
        }
        best
    }

    fn into_schedule(self, modes: &[Mode], plan: ArenaPlan) -> Schedule {
        let ties = self.ties(modes);
        let mut steps = self.steps;
        for (s, m) in steps.iter_mut().zip(modes) {
            s.flags.in_place = m.in_place();
        }
        Schedule {
            modes: modes.to_vec(),
            steps,
            buffers: self.buffers,
            owners: self.owners,
            ties,
            plan,
        }
    }
}

fn read_params<T: bytemuck::Pod>(bytes: &[u8]) -> Option<T> {
    bytes
        .get(..std::mem::size_of::<T>())
        .map(bytemuck::pod_read_unaligned)
}

/// The best schedule of `steps` (fusions applied) over candidate orders.
fn best_for_steps(
    graph: &Graph,
    steps: &[Step],
    opts: ScheduleOptions,
) -> Option<(Schedule, Score)> {
    let fused = steps
        .iter()
        .map(|s| usize::from(s.flags.epilogue_add) + usize::from(s.flags.chain))
        .sum::<usize>();
    let mut best: Option<(Schedule, Score)> = None;
    for order in orders(graph, steps, opts.reorder) {
        let problem = Problem::new(graph, steps, &order, opts.in_place);
        let Some((modes, plan, score)) = problem.search() else {
            continue;
        };
        let score = (score.0, score.1 + fused);
        if best.as_ref().is_none_or(|b| score < b.1) {
            best = Some((problem.into_schedule(&modes, plan), score));
        }
    }
    best
}

/// Chooses fusions, order, in-place modes and offsets for the lowered `ops` of `graph`.
pub fn schedule(
    graph: &Graph,
    ops: &[LoweredOp],
    opts: ScheduleOptions,
) -> Result<Schedule, CompileError> {
    let candidates: Vec<Fusion> = if opts.fuse {
        fusion_candidates(graph, ops)
            .into_iter()
            .filter(|f| opts.chain || f.first.is_none())
            .collect()
    } else {
        Vec::new()
    };
    let run = |set: &[Fusion]| best_for_steps(graph, &apply_fusions(graph, ops, set)?, opts);
    let mut best = run(&[]);
    // Subsets to try exhaustively: each ADD fused with none or one of its CONV_2Ds.
    let mut per_add: HashMap<usize, usize> = HashMap::new();
    for f in &candidates {
        *per_add.entry(f.add).or_default() += 1;
    }
    let subsets: usize = per_add.values().map(|&n| n + 1).product();
    if candidates.len() <= 12 && subsets <= 64 {
        for mask in 1u32..(1 << candidates.len()) {
            let set: Vec<Fusion> = candidates
                .iter()
                .enumerate()
                .filter(|(k, _)| mask & (1 << k) != 0)
                .map(|(_, f)| *f)
                .collect();
            // An ADD takes at most one of the CONV_2Ds feeding it.
            let adds: HashSet<usize> = set.iter().map(|f| f.add).collect();
            if adds.len() != set.len() {
                continue;
            }
            if let Some(r) = run(&set) {
                if best.as_ref().is_none_or(|b| r.1 < b.1) {
                    best = Some(r);
                }
            }
        }
    } else {
        // Greedy: add the fusion that shrinks the arena most, while one does.
        let mut chosen: Vec<Fusion> = Vec::new();
        loop {
            let mut step_best: Option<(usize, (Schedule, Score))> = None;
            for (k, f) in candidates.iter().enumerate() {
                if chosen.iter().any(|c| c.add == f.add) {
                    continue;
                }
                let mut set = chosen.clone();
                set.push(*f);
                if let Some(r) = run(&set) {
                    if step_best.as_ref().is_none_or(|b| r.1 < b.1 .1) {
                        step_best = Some((k, r));
                    }
                }
            }
            match step_best {
                Some((k, r)) if best.as_ref().is_none_or(|b| r.1 .0 < b.1 .0) => {
                    chosen.push(candidates[k]);
                    best = Some(r);
                }
                _ => break,
            }
        }
    }
    let best = best
        .map(|(s, _)| s)
        .ok_or_else(|| CompileError::Limit("no arena plan found (planner bug)".into()))?;
    Ok(widen_bands(graph, best, opts))
}

/// Byte offset of `band_rows` in a residual block's parameters.
const BAND_ROWS_AT: usize = 2 * std::mem::size_of::<ConvParams>() + 12;

/// Raises each residual block's output rows per step (fewer, larger kernel calls: faster) as far
/// as the arena does not grow (with [`ScheduleOptions::wide_bands`]: as far as it goes).
fn widen_bands(graph: &Graph, mut sched: Schedule, opts: ScheduleOptions) -> Schedule {
    let order: Vec<usize> = (0..sched.steps.len()).collect();
    for i in 0..sched.steps.len() {
        let step = &sched.steps[i];
        if !step.flags.chain {
            continue;
        }
        let op = &step.op;
        let conv = std::mem::size_of::<ConvParams>();
        let (Some(p2), Some(shape), Some(f2), Some(out)) = (
            op.params.get(conv..).and_then(read_params::<ConvParams>),
            op.params
                .get(2 * conv..)
                .and_then(read_params::<chain::MidShape>),
            op.inputs
                .get(3)
                .copied()
                .flatten()
                .and_then(|t| dims4(graph, t)),
            op.outputs.first().and_then(|&t| dims4(graph, t)),
        ) else {
            continue;
        };
        let ms = [
            out[0],
            shape.height as usize,
            shape.width as usize,
            shape.channels as usize,
        ];
        let rows = out[1];
        let wider = [rows, 16, 8, 4, 2]
            .into_iter()
            .filter(|&k| k > 1 && k <= rows);
        for k in wider {
            let Some(scratch) = chain::scratch_bytes(&p2, f2[1], ms, out, k) else {
                continue;
            };
            let mut steps = sched.steps.clone();
            let op = &mut steps[i].op;
            op.params[BAND_ROWS_AT..BAND_ROWS_AT + 4].copy_from_slice(&(k as u32).to_le_bytes());
            op.scratch_bytes = scratch;
            for s in &mut steps {
                s.flags.in_place = InPlace::Separate;
            }
            let problem = Problem::new(graph, &steps, &order, opts.in_place);
            if let Some((plan, _)) = problem.evaluate(&sched.modes) {
                if opts.wide_bands || plan.arena_bytes <= sched.plan.arena_bytes {
                    let modes = sched.modes.clone();
                    sched = problem.into_schedule(&modes, plan);
                    break;
                }
            }
        }
    }
    sched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_default_to_everything() {
        let o = ScheduleOptions::default();
        assert!(o.in_place && o.fuse && o.reorder);
        assert!(!ScheduleOptions::plain().in_place);
    }

    /// Steps reading and writing the given graph tensors (the kind only matters for in-place
    /// options, which these tests turn off or make impossible).
    fn step(kind: OpKind, inputs: &[TensorId], output: TensorId, node: usize) -> Step {
        Step {
            op: LoweredOp {
                kind,
                inputs: inputs.iter().map(|&t| Some(t)).collect(),
                outputs: vec![output],
                params: Vec::new(),
                scratch_bytes: 0,
                cost: Default::default(),
            },
            nodes: vec![node],
            flags: OpFlags::default(),
        }
    }

    fn graph(sizes: &[usize], inputs: &[TensorId], outputs: &[TensorId]) -> Graph {
        use crate::ir::{DataType, Tensor};
        Graph {
            tensors: sizes
                .iter()
                .map(|&n| Tensor {
                    name: String::new(),
                    shape: vec![n],
                    dtype: DataType::Int8,
                    quant: None,
                    data: None,
                })
                .collect(),
            nodes: Vec::new(),
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
        }
    }

    #[test]
    fn reordering_finishes_a_branch_before_starting_the_next() {
        // x → a (big) → a2 (small); x → b (big) → b2 (small); (a2, b2) → out. Run in the order
        // a, b, a2, b2, both big tensors are alive together with x; finishing a's branch first
        // keeps one big tensor at a time.
        let g = graph(&[1000, 1000, 10, 1000, 10, 10], &[0], &[5]);
        let steps = vec![
            step(OpKind::Relu, &[0], 1, 0),
            step(OpKind::Relu, &[0], 3, 1),
            step(OpKind::Mean, &[1], 2, 2),
            step(OpKind::Mean, &[3], 4, 3),
            step(OpKind::Add, &[2, 4], 5, 4),
        ];
        let fixed = ScheduleOptions {
            reorder: false,
            ..ScheduleOptions::plain()
        };
        let reorder = ScheduleOptions {
            reorder: true,
            ..ScheduleOptions::plain()
        };
        let (a, _) = best_for_steps(&g, &steps, fixed).unwrap();
        let (b, _) = best_for_steps(&g, &steps, reorder).unwrap();
        assert!(a.plan.arena_bytes >= 3000, "{}", a.plan.arena_bytes);
        assert!(b.plan.arena_bytes < 2100, "{}", b.plan.arena_bytes);
        b.plan.check_tied(&b.buffers, &b.ties).unwrap();
        // The chosen order is a topological order of the graph.
        let order: Vec<usize> = b.steps.iter().map(|s| s.nodes[0]).collect();
        let pos = |n: usize| order.iter().position(|&x| x == n).unwrap();
        assert!(pos(0) < pos(2) && pos(1) < pos(3) && pos(2) < pos(4) && pos(3) < pos(4));
    }

    #[test]
    fn in_place_elementwise_chain_takes_one_buffer() {
        // x → relu → relu → relu: every output overwrites its input.
        let g = graph(&[4096, 4096, 4096, 4096], &[0], &[3]);
        let steps = vec![
            step(OpKind::Relu, &[0], 1, 0),
            step(OpKind::Relu, &[1], 2, 1),
            step(OpKind::Relu, &[2], 3, 2),
        ];
        let (s, _) = best_for_steps(&g, &steps, ScheduleOptions::default()).unwrap();
        assert_eq!(s.plan.arena_bytes, 4096);
        assert!(s
            .steps
            .iter()
            .all(|st| st.flags.in_place == InPlace::Alias(0)));
        s.plan.check_tied(&s.buffers, &s.ties).unwrap();
        let (p, _) = best_for_steps(&g, &steps, ScheduleOptions::plain()).unwrap();
        assert_eq!(p.plan.arena_bytes, 2 * 4096);
    }

    #[test]
    fn long_chains_run_in_place() {
        // 300 element-wise ops in a row (past the large-graph limit): one buffer.
        let n = 300;
        let g = graph(&vec![1024; n + 1], &[0], &[n]);
        let steps: Vec<Step> = (0..n).map(|i| step(OpKind::Relu, &[i], i + 1, i)).collect();
        let (s, _) = best_for_steps(&g, &steps, ScheduleOptions::default()).unwrap();
        assert_eq!(s.plan.arena_bytes, 1024);
        s.plan.check_tied(&s.buffers, &s.ties).unwrap();
    }

    #[test]
    fn mode_penalties_prefer_plain_ops() {
        assert!(Mode::Separate.penalty() < Mode::Down(16).penalty());
        assert_eq!(Mode::Alias(0).penalty(), 0);
        assert_eq!(Mode::Up(32).in_place(), InPlace::ShiftUp);
    }
}
