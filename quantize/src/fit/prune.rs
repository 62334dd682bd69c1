//! Structured pruning on the float IR: remove whole output channels of CONV_2D and
//! FULLY_CONNECTED layers and the matching inputs downstream.
//!
//! [`analyze`] finds the *channel groups* of a prepared float graph: sets of activation
//! channels that must be pruned together. A CONV_2D or FULLY_CONNECTED output starts a group;
//! DEPTHWISE_CONV_2D (depth multiplier 1), pools, ReLUs, PAD (of spatial axes), MEAN (of
//! spatial axes) and RESHAPE / SQUEEZE (which keep channels innermost, e.g. the flatten in
//! front of a dense layer) carry a group through; ADD / SUB / MUL of two activations *tie*
//! their groups (a residual connection keeps the same channels on both sides, or none). A
//! group is *frozen* (not prunable) when it reaches a graph output, a CONCATENATION, a
//! depth multiplier above 1, a constant operand with per-channel values, or any operator
//! whose channel semantics this module does not know.
//!
//! [`apply`] then rewrites the graph for a [`PrunePlan`] (the channels each group keeps):
//! producers lose output rows (weights and biases), depthwise layers lose channels, consumers
//! lose the matching weight columns (input channels of a CONV_2D, the flattened features of a
//! FULLY_CONNECTED), and every activation tensor of the group shrinks, so MACs, flash and
//! arena all shrink. [`zero_removed`] zeroes the same channels in place instead: the pruned
//! graph computes exactly what the zeroed one does (tested below).

use std::collections::BTreeSet;

use crate::error::CompileError;
use crate::float::const_ints;
use crate::ir::{DataType, Graph, Operator, TensorId};

/// How a tensor's last axis maps to the channels of a group: element `i` of the last axis is
/// channel `i % channels` (channels innermost, as NHWC and its flattening keep them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChanMap {
    group: usize,
}

/// One set of channels that must be pruned together.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelGroup {
    /// Number of channels.
    pub channels: usize,
    /// Nodes whose output channels are the group's (CONV_2D / FULLY_CONNECTED producers).
    pub producers: Vec<usize>,
    /// DEPTHWISE_CONV_2D nodes whose per-channel weights follow the group.
    pub depthwise: Vec<usize>,
    /// Nodes that read the group's channels through their weights (CONV_2D input channels,
    /// FULLY_CONNECTED input features).
    pub consumers: Vec<usize>,
    /// Activation tensors whose last axis is made of the group's channels.
    pub tensors: Vec<TensorId>,
    /// Why the group cannot be pruned, if it cannot.
    pub frozen: Option<String>,
    /// Name for reports: the first producer's output tensor name.
    pub name: String,
}

impl ChannelGroup {
    /// Whether the group may be pruned.
    pub fn prunable(&self) -> bool {
        self.frozen.is_none() && !self.producers.is_empty()
    }
}

/// The channel groups of a graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// The groups (merged groups are removed; indices are stable only within this value).
    pub groups: Vec<ChannelGroup>,
    /// Per tensor: the group of its last axis, if any.
    tensor_group: Vec<Option<usize>>,
}

/// The channels each group keeps (sorted indices; `None` = keep all). Indexed like
/// [`Analysis::groups`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PrunePlan {
    /// Kept channel indices per group.
    pub keep: Vec<Option<Vec<usize>>>,
}

/// Union-find helper.
fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

fn last_dim(g: &Graph, id: TensorId) -> usize {
    g.tensors[id].shape.last().copied().unwrap_or(1)
}

/// Finds the channel groups of a prepared float graph (see [`crate::float::prepare`]).
pub fn analyze(g: &Graph) -> Analysis {
    struct Raw {
        channels: usize,
        producers: Vec<usize>,
        depthwise: Vec<usize>,
        consumers: Vec<usize>,
        frozen: Option<String>,
        name: String,
    }
    let mut raw: Vec<Raw> = Vec::new();
    let mut parent: Vec<usize> = Vec::new();
    let mut map: Vec<Option<ChanMap>> = vec![None; g.tensors.len()];
    let mut freeze_list: Vec<(usize, String)> = Vec::new();
    let mut unions: Vec<(usize, usize)> = Vec::new();
    let new_group = |raw: &mut Vec<Raw>, parent: &mut Vec<usize>, c: usize, name: String| {
        raw.push(Raw {
            channels: c,
            producers: Vec::new(),
            depthwise: Vec::new(),
            consumers: Vec::new(),
            frozen: None,
            name,
        });
        parent.push(raw.len() - 1);
        raw.len() - 1
    };
    for (index, node) in g.nodes.iter().enumerate() {
        let out = node.outputs[0];
        let in0 = node.inputs.first().copied().flatten();
        let m0 = in0.and_then(|i| map[i]);
        let what = format!("node {index} ({})", node.op.name());
        // Channel groups of the input must be consistent with the input's last axis.
        let carry = |map: &mut Vec<Option<ChanMap>>, freeze: &mut Vec<(usize, String)>| {
            if let (Some(m), Some(i)) = (m0, in0) {
                let _ = i;
                map[out] = Some(m);
            }
            let _ = freeze;
        };
        match &node.op {
            Operator::Conv2d(_) | Operator::FullyConnected { .. } => {
                if let Some(m) = m0 {
                    raw[m.group].consumers.push(index);
                }
                let c = last_dim(g, out);
                let gid = new_group(&mut raw, &mut parent, c, g.tensors[out].name.clone());
                raw[gid].producers.push(index);
                map[out] = Some(ChanMap { group: gid });
                // A FULLY_CONNECTED that keeps leading dims of a 3-D+ input: channels are still
                // the last axis, fine.
            }
            Operator::DepthwiseConv2d(o) => {
                if o.depth_multiplier != 1 {
                    if let Some(m) = m0 {
                        freeze_list.push((m.group, format!("{what}: depth multiplier above 1")));
                    }
                    let c = last_dim(g, out);
                    let gid = new_group(&mut raw, &mut parent, c, g.tensors[out].name.clone());
                    freeze_list.push((gid, format!("{what}: depth multiplier above 1")));
                    map[out] = Some(ChanMap { group: gid });
                } else if let Some(m) = m0 {
                    raw[m.group].depthwise.push(index);
                    map[out] = Some(m);
                }
            }
            Operator::AveragePool2d(_)
            | Operator::MaxPool2d(_)
            | Operator::Relu
            | Operator::Relu6
            | Operator::Logistic
            | Operator::Tanh => carry(&mut map, &mut freeze_list),
            Operator::Pad => {
                // Only spatial padding keeps channels.
                let ok = node
                    .inputs
                    .get(1)
                    .copied()
                    .flatten()
                    .and_then(|p| const_ints(&g.tensors[p]))
                    .is_some_and(|p| p.len() >= 2 && p[p.len() - 2..].iter().all(|&v| v == 0));
                if ok {
                    carry(&mut map, &mut freeze_list);
                } else if let Some(m) = m0 {
                    freeze_list.push((m.group, format!("{what}: pads the channel axis")));
                }
            }
            Operator::Mean { .. } => {
                let r = in0.map_or(0, |i| g.tensors[i].shape.len()) as i64;
                let ok = node
                    .inputs
                    .get(1)
                    .copied()
                    .flatten()
                    .and_then(|a| const_ints(&g.tensors[a]))
                    .is_some_and(|axes| {
                        axes.iter()
                            .all(|&a| (if a < 0 { a + r } else { a }) != r - 1)
                    });
                if ok && in0.is_some_and(|i| last_dim(g, i) == last_dim(g, out)) {
                    carry(&mut map, &mut freeze_list);
                } else if let Some(m) = m0 {
                    freeze_list.push((m.group, format!("{what}: reduces the channel axis")));
                }
            }
            Operator::Reshape | Operator::Squeeze => {
                if let (Some(m), Some(i)) = (m0, in0) {
                    let c = raw[m.group].channels;
                    let lin = last_dim(g, i);
                    let lout = last_dim(g, out);
                    // Channels stay innermost when the output's last axis is a whole number of
                    // channel blocks and the input's last axis is the channels (or whole blocks).
                    if c > 0 && lin % c == 0 && lout % c == 0 && lout >= lin {
                        map[out] = Some(m);
                    } else {
                        freeze_list.push((m.group, format!("{what}: moves the channel axis")));
                    }
                }
            }
            Operator::Add { .. } | Operator::Sub { .. } | Operator::Mul { .. } => {
                let mut acts: Vec<ChanMap> = Vec::new();
                let mut ok = true;
                for id in node.inputs.iter().flatten() {
                    let t = &g.tensors[*id];
                    if t.is_const() {
                        if t.elements() > 1 {
                            ok = false;
                        }
                    } else if let Some(m) = map[*id] {
                        if last_dim(g, *id) != last_dim(g, out) {
                            ok = false;
                        }
                        acts.push(m);
                    } else {
                        ok = false;
                    }
                }
                if ok && !acts.is_empty() {
                    for w in acts.windows(2) {
                        unions.push((w[0].group, w[1].group));
                        // Union eagerly so later lookups see one group.
                        let (a, b) = (find(&mut parent, w[0].group), find(&mut parent, w[1].group));
                        if a != b {
                            parent[b] = a;
                        }
                    }
                    map[out] = Some(acts[0]);
                } else {
                    for m in acts {
                        freeze_list.push((m.group, format!("{what}: operand shapes")));
                    }
                }
            }
            _ => {
                for id in node.inputs.iter().flatten() {
                    if let Some(m) = map[*id] {
                        freeze_list.push((m.group, format!("{what}: channels not tracked")));
                    }
                }
            }
        }
    }
    for &o in &g.outputs {
        if let Some(m) = map[o] {
            freeze_list.push((m.group, "reaches a graph output".into()));
        }
    }
    // Merge unions into roots.
    let n = raw.len();
    let roots: Vec<usize> = (0..n).map(|i| find(&mut parent, i)).collect();
    let mut root_index = vec![usize::MAX; n];
    let mut groups: Vec<ChannelGroup> = Vec::new();
    for i in 0..n {
        let r = roots[i];
        if root_index[r] == usize::MAX {
            root_index[r] = groups.len();
            groups.push(ChannelGroup {
                channels: raw[r].channels,
                producers: Vec::new(),
                depthwise: Vec::new(),
                consumers: Vec::new(),
                tensors: Vec::new(),
                frozen: None,
                name: raw[r].name.clone(),
            });
        }
        let gi = root_index[r];
        let gr = &mut groups[gi];
        gr.producers.extend(&raw[i].producers);
        gr.depthwise.extend(&raw[i].depthwise);
        gr.consumers.extend(&raw[i].consumers);
        if gr.frozen.is_none() {
            gr.frozen = raw[i].frozen.clone();
        }
        if raw[i].channels != gr.channels {
            gr.frozen = Some("tied channels differ in number".into());
        }
    }
    for (gid, why) in freeze_list {
        let gi = root_index[roots[gid]];
        if groups[gi].frozen.is_none() {
            groups[gi].frozen = Some(why);
        }
    }
    let tensor_group: Vec<Option<usize>> = map
        .iter()
        .map(|m| m.map(|m| root_index[roots[m.group]]))
        .collect();
    for (t, gidx) in tensor_group.iter().enumerate() {
        if let Some(gi) = gidx {
            groups[*gi].tensors.push(t);
        }
    }
    for gr in &mut groups {
        gr.producers.sort_unstable();
        gr.producers.dedup();
        gr.depthwise.sort_unstable();
        gr.depthwise.dedup();
        gr.consumers.sort_unstable();
        gr.consumers.dedup();
    }
    let _ = unions;
    Analysis {
        groups,
        tensor_group,
    }
}

fn f32s(g: &Graph, id: TensorId) -> Option<Vec<f32>> {
    let t = &g.tensors[id];
    if t.dtype != DataType::Float32 {
        return None;
    }
    Some(
        t.data
            .as_ref()?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

fn set_f32s(g: &mut Graph, id: TensorId, v: &[f32], shape: Vec<usize>) {
    let t = &mut g.tensors[id];
    t.data = Some(v.iter().flat_map(|x| x.to_le_bytes()).collect());
    t.shape = shape;
}

/// L2 norms of the output channels of a producer's weights (axis 0).
fn row_norms(g: &Graph, node: usize) -> Option<Vec<f32>> {
    let wid = g.nodes[node].inputs.get(1).copied().flatten()?;
    let w = f32s(g, wid)?;
    let rows = g.tensors[wid].shape.first().copied()?;
    let inner = w.len() / rows.max(1);
    Some(
        w.chunks_exact(inner.max(1))
            .map(|r| r.iter().map(|x| x * x).sum::<f32>().sqrt())
            .collect(),
    )
}

/// Per-channel importance of a group: the L2 norm of each channel's filter in every producer,
/// each producer's norms divided by their mean (so producers of different scale weigh the
/// same), summed. Higher = more important.
pub fn importance(g: &Graph, group: &ChannelGroup) -> Vec<f32> {
    let mut score = vec![0f32; group.channels];
    for &p in &group.producers {
        if let Some(n) = row_norms(g, p) {
            let mean = n.iter().sum::<f32>() / n.len().max(1) as f32;
            let mean = if mean > 0.0 { mean } else { 1.0 };
            for (s, v) in score.iter_mut().zip(&n) {
                *s += v / mean;
            }
        }
    }
    score
}

/// Channels kept of `channels` when a fraction `ratio` is removed: `ceil(channels × (1 − ratio))`,
/// at least one (with a tolerance of 1e-4 channel so that rounding in `ratio` does not add one).
pub fn kept_channels(channels: usize, ratio: f32) -> usize {
    let keep = channels as f64 * (1.0 - f64::from(ratio.clamp(0.0, 1.0)));
    ((keep - 1e-4).ceil().max(0.0) as usize).clamp(1, channels.max(1))
}

impl Analysis {
    /// The group of tensor `id`'s last axis.
    pub fn group_of(&self, id: TensorId) -> Option<usize> {
        self.tensor_group.get(id).copied().flatten()
    }

    /// A plan keeping, in every prunable group `i`, the `ceil(channels × (1 − ratios[i]))` most
    /// important channels (at least one). Groups past the end of `ratios` and frozen groups keep
    /// everything.
    pub fn plan(&self, g: &Graph, ratios: &[f32]) -> PrunePlan {
        self.plan_counts(g, &self.counts_for(ratios))
    }

    /// Channels kept per group for `ratios` (see [`kept_channels`]).
    fn counts_for(&self, ratios: &[f32]) -> Vec<usize> {
        self.groups
            .iter()
            .enumerate()
            .map(|(i, gr)| {
                let r = ratios.get(i).copied().unwrap_or(0.0).clamp(0.0, 1.0);
                kept_channels(gr.channels, r)
            })
            .collect()
    }

    /// A plan keeping, in every prunable group `i`, the `counts[i]` most important channels
    /// (clamped to `1..=channels`). Groups past the end of `counts` and frozen groups keep
    /// everything.
    pub fn plan_counts(&self, g: &Graph, counts: &[usize]) -> PrunePlan {
        self.plan_counts_by(counts, |_, gr| importance(g, gr))
    }

    /// A plan keeping, in every prunable group `i`, the `ceil(channels × (1 − ratios[i]))`
    /// channels with the highest `scores[i]` (e.g. [`super::recover::ablation_scores`]; a
    /// group without scores keeps its lowest-numbered channels).
    pub fn plan_scored(&self, ratios: &[f32], scores: &[Vec<f32>]) -> PrunePlan {
        self.plan_counts_by(&self.counts_for(ratios), |i, gr| {
            scores
                .get(i)
                .filter(|s| s.len() == gr.channels)
                .cloned()
                .unwrap_or_else(|| (0..gr.channels).map(|c| -(c as f32)).collect())
        })
    }

    /// [`Analysis::plan_counts`] with the channel scores of `score(group index, group)`.
    fn plan_counts_by(
        &self,
        counts: &[usize],
        score: impl Fn(usize, &ChannelGroup) -> Vec<f32>,
    ) -> PrunePlan {
        let keep = self
            .groups
            .iter()
            .enumerate()
            .map(|(i, gr)| {
                let k = counts
                    .get(i)
                    .copied()
                    .unwrap_or(gr.channels)
                    .clamp(1, gr.channels.max(1));
                if !gr.prunable() || k >= gr.channels {
                    return None;
                }
                let score = score(i, gr);
                let mut idx: Vec<usize> = (0..gr.channels).collect();
                idx.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
                let mut kept: Vec<usize> = idx[..k].to_vec();
                kept.sort_unstable();
                Some(kept)
            })
            .collect();
        PrunePlan { keep }
    }

    /// A plan with the same ratio in every prunable group.
    pub fn uniform(&self, g: &Graph, ratio: f32) -> PrunePlan {
        self.plan(g, &vec![ratio; self.groups.len()])
    }

    /// Indices of the prunable groups.
    pub fn prunable(&self) -> Vec<usize> {
        (0..self.groups.len())
            .filter(|&i| self.groups[i].prunable())
            .collect()
    }
}

fn bad(index: usize, g: &Graph, what: String) -> CompileError {
    CompileError::InvalidOp {
        index,
        op: g.nodes[index].op.name().to_string(),
        what,
    }
}

/// Selects, along `axis` of a row-major tensor of `shape`, the indices for which `keep_idx`
/// holds (`keep_idx(i)` for `i` in `0..shape[axis]`).
fn select_axis(v: &[f32], shape: &[usize], axis: usize, keep: &dyn Fn(usize) -> bool) -> Vec<f32> {
    let dim = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    let mut out = Vec::with_capacity(v.len());
    for o in 0..outer {
        for d in (0..dim).filter(|&d| keep(d)) {
            let s = (o * dim + d) * inner;
            out.extend_from_slice(&v[s..s + inner]);
        }
    }
    out
}

/// Rewrites `g` with the channels of `plan` removed. The graph must be the one `a` analysed.
///
/// Errors: [`CompileError::InvalidOp`] when a weight tensor is not a float32 constant.
pub fn apply(g: &Graph, a: &Analysis, plan: &PrunePlan) -> Result<Graph, CompileError> {
    let mut out = g.clone();
    // Weight tensors may be shared between nodes; rewrite each once.
    let mut done: BTreeSet<(TensorId, usize)> = BTreeSet::new();
    for (gi, gr) in a.groups.iter().enumerate() {
        let Some(Some(keep)) = plan.keep.get(gi) else {
            continue;
        };
        let c = gr.channels;
        let kept: Vec<bool> = (0..c).map(|i| keep.binary_search(&i).is_ok()).collect();
        let k = keep.len();
        let is_kept = |i: usize| kept[i % c];
        // Producers: rows of the weights, and the biases.
        for &p in gr.producers.iter().chain(&gr.depthwise) {
            let node = &g.nodes[p];
            let axis = if gr.depthwise.contains(&p) { 3 } else { 0 };
            for (slot, ax) in [(1usize, axis), (2usize, 0usize)] {
                let Some(id) = node.inputs.get(slot).copied().flatten() else {
                    continue;
                };
                if !done.insert((id, gi)) {
                    continue;
                }
                let t = &out.tensors[id];
                let v = f32s(&out, id)
                    .ok_or_else(|| bad(p, g, format!("input {slot} is not a float32 constant")))?;
                let mut shape = t.shape.clone();
                if shape.len() <= ax || shape[ax] != c {
                    return Err(bad(
                        p,
                        g,
                        format!("input {slot} shape {shape:?} has no {c}-channel axis {ax}"),
                    ));
                }
                let nv = select_axis(&v, &shape, ax, &|i| kept[i]);
                shape[ax] = k;
                set_f32s(&mut out, id, &nv, shape);
            }
        }
        // Consumers: input columns.
        for &cn in &gr.consumers {
            let node = &g.nodes[cn];
            let Some(wid) = node.inputs.get(1).copied().flatten() else {
                continue;
            };
            if !done.insert((wid, gi)) {
                continue;
            }
            let v = f32s(&out, wid)
                .ok_or_else(|| bad(cn, g, "weights are not a float32 constant".into()))?;
            let mut shape = out.tensors[wid].shape.clone();
            let ax = shape.len() - 1;
            if shape[ax] % c != 0 {
                return Err(bad(
                    cn,
                    g,
                    format!("weights {shape:?}: input axis is not whole {c}-channel blocks"),
                ));
            }
            let nv = select_axis(&v, &shape, ax, &is_kept);
            shape[ax] = shape[ax] / c * k;
            set_f32s(&mut out, wid, &nv, shape);
        }
        // Activations.
        for &t in &gr.tensors {
            let shape = &mut out.tensors[t].shape;
            if let Some(l) = shape.last_mut() {
                *l = *l / c * k;
            }
        }
    }
    // RESHAPE's optional shape operand follows its output.
    for node in &g.nodes {
        if node.op == Operator::Reshape {
            if let Some(Some(sid)) = node.inputs.get(1) {
                let shape = out.tensors[node.outputs[0]].shape.clone();
                let t = &mut out.tensors[*sid];
                if t.is_const() && t.dtype == DataType::Int32 && t.elements() == shape.len() {
                    t.data = Some(
                        shape
                            .iter()
                            .flat_map(|&d| (d as i32).to_le_bytes())
                            .collect(),
                    );
                }
            }
        }
    }
    Ok(out)
}

/// Zeroes, in place, the weights and biases that produce the channels `plan` removes (rows of
/// producers, channels of depthwise layers and their biases). The result computes exactly what
/// [`apply`]'s pruned graph computes, on the kept channels.
pub fn zero_removed(g: &Graph, a: &Analysis, plan: &PrunePlan) -> Graph {
    let mut out = g.clone();
    for (gi, gr) in a.groups.iter().enumerate() {
        let Some(Some(keep)) = plan.keep.get(gi) else {
            continue;
        };
        let c = gr.channels;
        for &p in gr.producers.iter().chain(&gr.depthwise) {
            let axis = if gr.depthwise.contains(&p) { 3 } else { 0 };
            for (slot, ax) in [(1usize, axis), (2usize, 0usize)] {
                let Some(id) = g.nodes[p].inputs.get(slot).copied().flatten() else {
                    continue;
                };
                let Some(mut v) = f32s(&out, id) else {
                    continue;
                };
                let shape = out.tensors[id].shape.clone();
                if shape.len() <= ax {
                    continue;
                }
                let inner: usize = shape[ax + 1..].iter().product();
                for (i, x) in v.iter_mut().enumerate() {
                    if keep.binary_search(&((i / inner.max(1)) % c)).is_err() {
                        *x = 0.0;
                    }
                }
                set_f32s(&mut out, id, &v, shape);
            }
        }
    }
    out
}

/// MACs of the convolutions and dense layers of a float graph (what pruning shrinks).
pub fn macs(g: &Graph) -> u64 {
    g.nodes
        .iter()
        .map(|n| {
            let w = n.inputs.get(1).copied().flatten();
            let out = &g.tensors[n.outputs[0]];
            match (&n.op, w) {
                (Operator::Conv2d(_), Some(w)) => {
                    let ws = &g.tensors[w].shape;
                    (out.elements() * ws.iter().skip(1).product::<usize>()) as u64
                }
                (Operator::DepthwiseConv2d(_), Some(w)) => {
                    let ws = &g.tensors[w].shape;
                    (out.elements() * ws.get(1).unwrap_or(&1) * ws.get(2).unwrap_or(&1)) as u64
                }
                (Operator::FullyConnected { .. }, Some(w)) => {
                    let ws = &g.tensors[w].shape;
                    (out.elements() * ws.get(1).copied().unwrap_or(1)) as u64
                }
                _ => 0,
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::float::{default_device, prepare, FloatExecutor};
    use crate::ir::{Activation, Conv2dOptions, Node, Padding, Pool2dOptions, Tensor};

    fn t(g: &mut Graph, shape: Vec<usize>, data: Option<Vec<f32>>) -> TensorId {
        g.tensors.push(Tensor {
            name: format!("t{}", g.tensors.len()),
            shape,
            dtype: DataType::Float32,
            quant: None,
            data: data.map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        });
        g.tensors.len() - 1
    }

    fn rnd(n: usize, seed: &mut u64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                ((*seed % 2000) as f32 / 1000.0) - 1.0
            })
            .collect()
    }

    fn conv(a: Activation, p: Padding) -> Conv2dOptions {
        Conv2dOptions {
            padding: p,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            activation: a,
            depth_multiplier: 1,
        }
    }

    /// conv → dw → conv ─┬─ add(residual with a second conv branch) → maxpool → pad →
    /// reshape (flatten) → fc → fc → softmax.
    fn net(seed: &mut u64) -> Graph {
        let mut g = Graph::default();
        let x = t(&mut g, vec![1, 6, 6, 2], None);
        g.inputs.push(x);
        let mut layer =
            |g: &mut Graph, op: Operator, inp: TensorId, ws: Vec<usize>, out: Vec<usize>| {
                let bl = if matches!(op, Operator::DepthwiseConv2d(_)) {
                    ws[3]
                } else {
                    ws[0]
                };
                let n: usize = ws.iter().product();
                let w = t(g, ws, Some(rnd(n, seed)));
                let b = t(g, vec![bl], Some(rnd(bl, seed)));
                let o = t(g, out, None);
                g.nodes.push(Node {
                    op,
                    inputs: vec![Some(inp), Some(w), Some(b)],
                    outputs: vec![o],
                });
                o
            };
        let c1 = layer(
            &mut g,
            Operator::Conv2d(conv(Activation::Relu, Padding::Same)),
            x,
            vec![6, 3, 3, 2],
            vec![1, 6, 6, 6],
        );
        let d1 = layer(
            &mut g,
            Operator::DepthwiseConv2d(conv(Activation::Relu6, Padding::Same)),
            c1,
            vec![1, 3, 3, 6],
            vec![1, 6, 6, 6],
        );
        let c2 = layer(
            &mut g,
            Operator::Conv2d(conv(Activation::None, Padding::Same)),
            d1,
            vec![8, 1, 1, 6],
            vec![1, 6, 6, 8],
        );
        let c3 = layer(
            &mut g,
            Operator::Conv2d(conv(Activation::None, Padding::Same)),
            c1,
            vec![8, 1, 1, 6],
            vec![1, 6, 6, 8],
        );
        let s = t(&mut g, vec![1, 6, 6, 8], None);
        g.nodes.push(Node {
            op: Operator::Add {
                activation: Activation::Relu,
            },
            inputs: vec![Some(c2), Some(c3)],
            outputs: vec![s],
        });
        let p = t(&mut g, vec![1, 3, 3, 8], None);
        g.nodes.push(Node {
            op: Operator::MaxPool2d(Pool2dOptions {
                padding: Padding::Valid,
                stride_h: 2,
                stride_w: 2,
                filter_h: 2,
                filter_w: 2,
                activation: Activation::None,
            }),
            inputs: vec![Some(s)],
            outputs: vec![p],
        });
        let pads = g.tensors.len();
        g.tensors.push(Tensor {
            name: "pads".into(),
            shape: vec![4, 2],
            dtype: DataType::Int32,
            quant: None,
            data: Some(
                [0i32, 0, 1, 0, 0, 1, 0, 0]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
        });
        let pd = t(&mut g, vec![1, 4, 4, 8], None);
        g.nodes.push(Node {
            op: Operator::Pad,
            inputs: vec![Some(p), Some(pads)],
            outputs: vec![pd],
        });
        let shp = g.tensors.len();
        g.tensors.push(Tensor {
            name: "shape".into(),
            shape: vec![2],
            dtype: DataType::Int32,
            quant: None,
            data: Some([1i32, 128].iter().flat_map(|v| v.to_le_bytes()).collect()),
        });
        let f = t(&mut g, vec![1, 128], None);
        g.nodes.push(Node {
            op: Operator::Reshape,
            inputs: vec![Some(pd), Some(shp)],
            outputs: vec![f],
        });
        let fc = |a| Operator::FullyConnected {
            activation: a,
            keep_num_dims: false,
        };
        let h = layer(&mut g, fc(Activation::Relu), f, vec![12, 128], vec![1, 12]);
        let l = layer(&mut g, fc(Activation::None), h, vec![5, 12], vec![1, 5]);
        let o = t(&mut g, vec![1, 5], None);
        g.nodes.push(Node {
            op: Operator::Softmax { beta: 1.0 },
            inputs: vec![Some(l)],
            outputs: vec![o],
        });
        g.outputs.push(o);
        g
    }

    #[test]
    fn groups_follow_depthwise_residuals_and_flatten() {
        let mut seed = 7;
        let g = net(&mut seed);
        let a = analyze(&g);
        let prunable: Vec<&ChannelGroup> = a.groups.iter().filter(|g| g.prunable()).collect();
        // conv1(+dw), the residual pair (c2, c3), fc hidden. The logits group is frozen.
        assert_eq!(prunable.len(), 3, "{:#?}", a.groups);
        let res = prunable.iter().find(|g| g.producers.len() == 2).unwrap();
        assert_eq!(res.channels, 8);
        assert_eq!(res.consumers.len(), 1, "the fc after the flatten");
        let first = prunable.iter().find(|g| g.channels == 6).unwrap();
        assert_eq!(first.depthwise.len(), 1);
        assert_eq!(
            first.consumers.len(),
            2,
            "c2 through the dw and c3 directly"
        );
        // The logits (5 channels, read by SOFTMAX and the graph output) stay.
        assert!(a
            .groups
            .iter()
            .any(|g| g.channels == 5 && !g.producers.is_empty() && g.frozen.is_some()));
    }

    #[test]
    fn pruned_graph_equals_zeroed_graph() {
        for seed0 in 1..6u64 {
            let mut seed = seed0 * 7919;
            let g = prepare(&net(&mut seed)).unwrap();
            let a = analyze(&g);
            let ratios: Vec<f32> = (0..a.groups.len())
                .map(|i| [0.5, 0.34, 0.25, 0.75][(i + seed0 as usize) % 4])
                .collect();
            let plan = a.plan(&g, &ratios);
            assert!(plan.keep.iter().flatten().count() >= 3);
            let pruned = apply(&g, &a, &plan).unwrap();
            let zeroed = zero_removed(&g, &a, &plan);
            assert!(macs(&pruned) < macs(&g));
            let ep = FloatExecutor::new(&pruned, default_device());
            let ez = FloatExecutor::new(&zeroed, default_device());
            for _ in 0..4 {
                let x = vec![rnd(72, &mut seed)];
                let yp = ep.outputs(&x).unwrap();
                let yz = ez.outputs(&x).unwrap();
                for (p, z) in yp[0].iter().zip(&yz[0]) {
                    assert!((p - z).abs() < 1e-5, "{p} vs {z}");
                }
            }
            // And it compiles after int8 quantization.
            let ranges =
                crate::fit::search::calibrate_ranges(&pruned, &[rnd(72, &mut seed)]).unwrap();
            let q = crate::ptq::quantize_int8(&pruned, &ranges).unwrap();
            crate::compile::compile(q).unwrap();
        }
    }
}
