//! What `mote inspect --plan` shows: every arena buffer of a model with its offset, size and the
//! ops during which it lives, and what sets the arena's size.
//!
//! The report is read back from a validated `.mote` file (so it describes exactly what the
//! runtime will do): a tensor lives from the op that writes it (op 0 for a model input) to the
//! last op that reads it (the last op for a model output); an op's scratch lives during that op.
//! Ops that compute in place (see `mote_runtime::format::OpFlags`) put their output on their
//! input's bytes; the report names the input each such output shares.

use std::path::Path;

use serde::Serialize;

use crate::error::CompileError;

use mote_runtime::format::{InPlace, OpFlags, Storage, NONE};
use mote_runtime::Model;

/// One buffer of the arena.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArenaRow {
    /// Tensor name, `tensor N` when unnamed, or `scratch of op N`.
    pub label: String,
    /// Tensor index in the file (`None` for scratch).
    pub tensor: Option<u32>,
    /// Offset in the arena.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
    /// First op (execution order) during which the bytes must hold.
    pub first: usize,
    /// Last op during which the bytes must hold.
    pub last: usize,
    /// How the op writing this tensor shares bytes with one of its inputs, e.g.
    /// `alias of t3` or `shift down from t3 (640 B)`.
    pub in_place: Option<String>,
    /// The tensor whose bytes this one takes over in place (the op's input it overwrites).
    pub takes_over: Option<u32>,
    /// Whether the buffer is alive at the op where the arena is fullest.
    pub at_peak: bool,
}

impl ArenaRow {
    /// One past the last byte.
    pub fn end(&self) -> usize {
        self.offset + self.size
    }
}

/// The arena plan of a model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArenaReport {
    /// Exact arena size in bytes.
    pub arena_bytes: usize,
    /// One label per op, execution order (`3 CONV_2D+ADD`).
    pub ops: Vec<String>,
    /// Buffers, by offset then first op.
    pub rows: Vec<ArenaRow>,
    /// The op where the arena is fullest: its highest live byte is the arena's end and, among
    /// such ops, the most bytes are live.
    pub peak_op: usize,
    /// Bytes held by live buffers at `peak_op` (counting shared bytes once).
    pub peak_live_bytes: usize,
}

/// The kind name of op `i`, with `+ADD` for a fused epilogue.
pub fn op_label(model: &Model, i: usize) -> String {
    let kind = model.op_kind(i).map_or("?", |k| k.name());
    let flags = model
        .ops()
        .get(i)
        .and_then(|d| OpFlags::from_u32(d.flags))
        .unwrap_or_default();
    if flags.chain {
        format!("{kind}+{kind}+ADD")
    } else if flags.epilogue_add {
        format!("{kind}+ADD")
    } else {
        kind.to_string()
    }
}

/// The parameters of op `i` as `mote inspect` shows them: the kind's fields (for a fused CONV_2D,
/// each convolution's and the ADD's), then how the op shares bytes with its input, if it does.
pub fn describe_params(model: &Model, i: usize) -> String {
    let (Some(kind), Some(bytes), Some(desc)) =
        (model.op_kind(i), model.op_params(i), model.ops().get(i))
    else {
        return String::new();
    };
    let flags = OpFlags::from_u32(desc.flags).unwrap_or_default();
    let conv = std::mem::size_of::<mote_runtime::ops::conv::ConvParams>();
    let mid = std::mem::size_of::<mote_runtime::ops::chain::MidShape>();
    let add = |b: &[u8]| crate::describe::params(mote_runtime::OpKind::Add, b);
    let mut s = match bytes.split_at_checked(conv) {
        Some((c, rest)) if flags.chain && rest.len() > conv + mid => {
            let shape: mote_runtime::ops::chain::MidShape =
                bytemuck::pod_read_unaligned(&rest[conv..conv + mid]);
            format!(
                "{} | then on {}x{}x{}: {} | ADD: {}",
                crate::describe::params(kind, c),
                shape.height,
                shape.width,
                shape.channels,
                crate::describe::params(kind, &rest[..conv]),
                add(&rest[conv + mid..])
            )
        }
        Some((c, a)) if flags.epilogue_add => {
            format!("{} | ADD: {}", crate::describe::params(kind, c), add(a))
        }
        _ => crate::describe::params(kind, bytes),
    };
    let shift = || {
        let (ins, outs) = model.op_io(i)?;
        let t = |x: u32| model.tensors().get(x as usize).map(|d| d.offset as i64);
        Some((t(*outs.first()?)? - t(*ins.first()?)?).unsigned_abs())
    };
    let note = match flags.in_place {
        InPlace::Separate => None,
        InPlace::Alias(k) => Some(format!("in place over input {k}")),
        InPlace::ShiftDown => Some(format!(
            "in place, output {} bytes below the input",
            shift().unwrap_or(0)
        )),
        InPlace::ShiftUp => Some(format!(
            "in place, output {} bytes above the input",
            shift().unwrap_or(0)
        )),
    };
    if let Some(n) = note {
        if !s.is_empty() {
            s.push_str(" | ");
        }
        s.push_str(&n);
    }
    s
}

/// Reads the arena plan back from a validated model.
pub fn report(model: &Model) -> ArenaReport {
    let n_ops = model.ops().len();
    let last_op = n_ops.saturating_sub(1);
    let tensors = model.tensors();
    let mut first: Vec<Option<usize>> = vec![None; tensors.len()];
    let mut last: Vec<Option<usize>> = vec![None; tensors.len()];
    let mut in_place: Vec<Option<(String, u32)>> = vec![None; tensors.len()];
    let touch =
        |t: u32, i: usize, first: &mut Vec<Option<usize>>, last: &mut Vec<Option<usize>>| {
            if let (Some(f), Some(l)) = (first.get_mut(t as usize), last.get_mut(t as usize)) {
                *f = Some(f.map_or(i, |x| x.min(i)));
                *l = Some(l.map_or(i, |x| x.max(i)));
            }
        };
    for k in 0..model.input_count() {
        if let Some(t) = model.input_tensor(k) {
            touch(t, 0, &mut first, &mut last);
        }
    }
    for i in 0..n_ops {
        let Some((ins, outs)) = model.op_io(i) else {
            continue;
        };
        for &t in ins.iter().chain(outs).filter(|&&t| t != NONE) {
            touch(t, i, &mut first, &mut last);
        }
        let flags = model
            .ops()
            .get(i)
            .and_then(|d| OpFlags::from_u32(d.flags))
            .unwrap_or_default();
        let (Some(&out), Some(&src)) = (outs.first(), ins.first()) else {
            continue;
        };
        let name = |t: u32| format!("t{t}");
        let note = match flags.in_place {
            InPlace::Separate => None,
            InPlace::Alias(k) => ins
                .get(k as usize)
                .filter(|&&t| t != NONE)
                .map(|&t| (format!("alias of {}", name(t)), t)),
            InPlace::ShiftDown | InPlace::ShiftUp => {
                let (o, s) = (
                    tensors.get(out as usize).map_or(0, |d| d.offset as i64),
                    tensors.get(src as usize).map_or(0, |d| d.offset as i64),
                );
                let dir = if flags.in_place == InPlace::ShiftDown {
                    "down"
                } else {
                    "up"
                };
                Some((
                    format!("shift {dir} from {} ({} B)", name(src), (o - s).abs()),
                    src,
                ))
            }
        };
        if let Some(slot) = in_place.get_mut(out as usize) {
            *slot = note;
        }
    }
    for k in 0..model.output_count() {
        if let Some(t) = model.output_tensor(k) {
            touch(t, last_op, &mut first, &mut last);
        }
    }
    let mut rows = Vec::new();
    for (t, d) in tensors.iter().enumerate() {
        if d.storage() != Some(Storage::Arena) {
            continue;
        }
        let (Some(f), Some(l)) = (first[t], last[t]) else {
            continue;
        };
        rows.push(ArenaRow {
            label: model
                .tensor_name(t)
                .filter(|s| !s.is_empty())
                .map_or_else(|| format!("tensor {t}"), str::to_string),
            tensor: Some(t as u32),
            offset: d.offset as usize,
            size: d.bytes as usize,
            first: f,
            last: l,
            in_place: in_place[t].as_ref().map(|(n, _)| n.clone()),
            takes_over: in_place[t].as_ref().map(|&(_, s)| s),
            at_peak: false,
        });
    }
    for (i, d) in model.ops().iter().enumerate() {
        if d.scratch_bytes > 0 {
            rows.push(ArenaRow {
                label: format!("scratch of op {i}"),
                tensor: None,
                offset: d.scratch_offset as usize,
                size: d.scratch_bytes as usize,
                first: i,
                last: i,
                in_place: None,
                takes_over: None,
                at_peak: false,
            });
        }
    }
    rows.sort_by_key(|r| (r.offset, r.first, r.tensor));
    // The op where the arena is fullest: among the ops whose highest live byte is the arena's
    // end, the one with the most bytes live (the first, if several).
    let live_at = |i: usize| {
        let mut live: Vec<(usize, usize)> = rows
            .iter()
            .filter(|r| r.first <= i && i <= r.last && r.size > 0)
            .map(|r| (r.offset, r.end()))
            .collect();
        let high = live.iter().map(|r| r.1).max().unwrap_or(0);
        (high, union_len(&mut live))
    };
    let peak_op = (0..n_ops.max(1))
        .max_by_key(|&i| (live_at(i), usize::MAX - i))
        .unwrap_or(0);
    let (_, peak_live_bytes) = live_at(peak_op);
    for r in rows.iter_mut() {
        r.at_peak = r.first <= peak_op && peak_op <= r.last && r.size > 0;
    }
    ArenaReport {
        arena_bytes: model.arena_bytes(),
        ops: (0..n_ops)
            .map(|i| format!("{i} {}", op_label(model, i)))
            .collect(),
        rows,
        peak_op,
        peak_live_bytes,
    }
}

/// A tensor name cut for tables and pictures: TFLite joins the names of fused nodes with `;`,
/// the first is kept, and at most 40 characters of it.
pub fn short_label(label: &str) -> String {
    let first = label.split(';').next().unwrap_or(label);
    if first.chars().count() <= 40 {
        first.to_string()
    } else {
        first.chars().take(39).collect::<String>() + "…"
    }
}

/// Total length of a union of byte ranges.
fn union_len(ranges: &mut [(usize, usize)]) -> usize {
    ranges.sort_unstable();
    let (mut total, mut end) = (0usize, 0usize);
    for &(s, e) in ranges.iter() {
        if e > end {
            total += e - s.max(end);
            end = e;
        }
    }
    total
}

/// The report as an aligned table.
pub fn render_text(r: &ArenaReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "arena {} bytes; fullest at op {} ({}), {} bytes live there (marked *)",
        crate::inspect::group(r.arena_bytes as u64),
        r.peak_op,
        r.ops.get(r.peak_op).map_or("", String::as_str),
        crate::inspect::group(r.peak_live_bytes as u64),
    );
    let _ = writeln!(s);
    let header = ["", "offset", "end", "size", "ops", "buffer", "in place"];
    let rows: Vec<[String; 7]> = r
        .rows
        .iter()
        .map(|b| {
            [
                if b.at_peak { "*" } else { "" }.to_string(),
                b.offset.to_string(),
                b.end().to_string(),
                b.size.to_string(),
                if b.first == b.last {
                    b.first.to_string()
                } else {
                    format!("{}..{}", b.first, b.last)
                },
                match b.tensor {
                    Some(t) => format!("t{t} {}", short_label(&b.label)),
                    None => b.label.clone(),
                },
                b.in_place.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut w = header.map(str::len);
    for row in &rows {
        for (w, c) in w.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut line = |c: [&str; 7]| {
        let text = format!(
            "{:<w0$} {:>w1$}  {:>w2$}  {:>w3$}  {:<w4$}  {:<w5$}  {}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            c[6],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4],
            w5 = w[5],
        );
        let _ = writeln!(s, "{}", text.trim_end());
    };
    line(header);
    for row in &rows {
        line([
            &row[0], &row[1], &row[2], &row[3], &row[4], &row[5], &row[6],
        ]);
    }
    s
}

/// `mote inspect --plan / --plan-svg`: prints the plan (as a table, or JSON with `json`) when
/// `print`, and draws it to `svg` when given.
pub fn plan_cmd(
    model: &Model,
    path: &Path,
    print: bool,
    json: bool,
    svg: Option<&Path>,
) -> Result<(), CompileError> {
    let r = report(model);
    if let Some(svg) = svg {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        crate::emit::write_file(svg, crate::plan_svg::render(&r, &name).as_bytes())?;
        if !print {
            println!(
                "{}: arena {} bytes, {} buffers -> {}",
                path.display(),
                crate::inspect::group(r.arena_bytes as u64),
                r.rows.len(),
                svg.display()
            );
        }
    }
    if print {
        if json {
            println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
        } else {
            print!("{}", render_text(&r));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_shortened() {
        assert_eq!(short_label("a/b;c/d"), "a/b");
        assert_eq!(short_label(&"x".repeat(50)).chars().count(), 40);
    }

    #[test]
    fn union_counts_shared_bytes_once() {
        assert_eq!(union_len(&mut [(0, 10), (5, 20), (30, 40)]), 30);
        assert_eq!(union_len(&mut []), 0);
    }
}
