//! Arena planning: buffer lifetimes → arena offsets.
//!
//! Every activation tensor and every op's scratch buffer is a [`Buffer`] with a size and a
//! lifetime (the first and last op index during which its bytes must stay intact). Two buffers
//! whose lifetimes intersect may not share bytes — unless a [`Tie`] joins them: an op that
//! computes in place fixes its output's offset relative to its input's (equal for element-wise
//! ops; a few rows below or above for in-place convolutions), and the runtime checks that the
//! kernel never reads a byte it already overwrote.
//!
//! Tied buffers form chains (an output is tied to at most one input, an input to at most one
//! output) that are placed as one unit. The planner places units greedily at the lowest 16-byte
//! aligned offset that conflicts with no placed buffer, in several orders (largest first, longest
//! first, largest area first, first used first), keeps the smallest arena, and reports its exact
//! size: the highest byte any buffer uses.

use std::collections::HashMap;

use mote_runtime::format::{align_up, ALIGN};

/// One region that needs arena bytes during a span of ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    /// Size in bytes.
    pub size: usize,
    /// First op index at which the bytes must be intact (written by or before this op).
    pub first: usize,
    /// Last op index at which the bytes are read.
    pub last: usize,
}

impl Buffer {
    /// Whether the lifetimes of two buffers intersect.
    pub fn lives_with(&self, other: &Buffer) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// Buffer `to` starts `offset` bytes after buffer `from` (negative: before), because an op
/// computes `to` over `from`'s bytes. The offset is a multiple of [`ALIGN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tie {
    /// Index of the input buffer.
    pub from: usize,
    /// Index of the output buffer.
    pub to: usize,
    /// `offset(to) − offset(from)`.
    pub offset: i64,
}

/// The result of planning: an offset per buffer and the arena size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArenaPlan {
    /// Offset of each buffer, in the order they were given.
    pub offsets: Vec<usize>,
    /// Exact arena size in bytes.
    pub arena_bytes: usize,
}

impl ArenaPlan {
    /// Checks that no two buffers alive at the same time share a byte.
    pub fn check(&self, buffers: &[Buffer]) -> Result<(), String> {
        self.check_tied(buffers, &[])
    }

    /// Checks that every tie holds exactly, every buffer is aligned and inside the arena, and no
    /// two buffers alive at the same time share a byte unless a tie joins them.
    pub fn check_tied(&self, buffers: &[Buffer], ties: &[Tie]) -> Result<(), String> {
        if self.offsets.len() != buffers.len() {
            return Err(format!(
                "{} offsets for {} buffers",
                self.offsets.len(),
                buffers.len()
            ));
        }
        for t in ties {
            let (Some(&a), Some(&b)) = (self.offsets.get(t.from), self.offsets.get(t.to)) else {
                return Err(format!("tie {t:?} names a missing buffer"));
            };
            if b as i64 - a as i64 != t.offset {
                return Err(format!(
                    "tie {t:?} not kept: buffer {} at {a}, buffer {} at {b}",
                    t.from, t.to
                ));
            }
        }
        let tied = |i: usize, j: usize| {
            ties.iter()
                .any(|t| (t.from == i && t.to == j) || (t.from == j && t.to == i))
        };
        for (i, a) in buffers.iter().enumerate() {
            let ra = self.offsets[i]..self.offsets[i] + a.size;
            if a.size > 0 && ra.end > self.arena_bytes {
                return Err(format!("buffer {i} ends past the arena"));
            }
            if a.size > 0 && ra.start % ALIGN != 0 {
                return Err(format!("buffer {i} at {} is not aligned", ra.start));
            }
            for (j, b) in buffers.iter().enumerate().skip(i + 1) {
                let rb = self.offsets[j]..self.offsets[j] + b.size;
                if a.size > 0
                    && b.size > 0
                    && a.lives_with(b)
                    && ra.start < rb.end
                    && rb.start < ra.end
                    && !tied(i, j)
                {
                    return Err(format!(
                        "buffers {i} ({ra:?}, ops {}..={}) and {j} ({rb:?}, ops {}..={}) overlap",
                        a.first, a.last, b.first, b.last
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Buffers placed as one unit: members and their offsets relative to the unit's start (≥ 0).
#[derive(Debug, Clone)]
struct Unit {
    members: Vec<(usize, usize)>,
}

impl Unit {
    fn size(&self, buffers: &[Buffer]) -> usize {
        self.members
            .iter()
            .map(|&(m, rel)| rel + buffers[m].size)
            .max()
            .unwrap_or(0)
    }
    fn first(&self, buffers: &[Buffer]) -> usize {
        self.members
            .iter()
            .map(|&(m, _)| buffers[m].first)
            .min()
            .unwrap_or(0)
    }
    fn last(&self, buffers: &[Buffer]) -> usize {
        self.members
            .iter()
            .map(|&(m, _)| buffers[m].last)
            .max()
            .unwrap_or(0)
    }
    /// Σ size × lifetime of the members.
    fn area(&self, buffers: &[Buffer]) -> usize {
        self.members
            .iter()
            .map(|&(m, _)| buffers[m].size * (buffers[m].last - buffers[m].first + 1))
            .sum()
    }
}

/// Groups tied buffers into units with relative offsets; `Err` if ties contradict each other or
/// are not multiples of [`ALIGN`].
fn units(buffers: &[Buffer], ties: &[Tie]) -> Result<Vec<Unit>, String> {
    let n = buffers.len();
    let mut adj: Vec<Vec<(usize, i64)>> = vec![Vec::new(); n];
    for t in ties {
        if t.from >= n || t.to >= n {
            return Err(format!("tie {t:?} names a missing buffer"));
        }
        if t.offset.rem_euclid(ALIGN as i64) != 0 {
            return Err(format!("tie {t:?} is not a multiple of {ALIGN}"));
        }
        adj[t.from].push((t.to, t.offset));
        adj[t.to].push((t.from, -t.offset));
    }
    let mut rel: Vec<Option<i64>> = vec![None; n];
    let mut out = Vec::new();
    for start in 0..n {
        if rel[start].is_some() {
            continue;
        }
        rel[start] = Some(0);
        let mut stack = vec![start];
        let mut members = vec![start];
        while let Some(i) = stack.pop() {
            let ri = rel[i].unwrap_or(0);
            for &(j, off) in &adj[i] {
                match rel[j] {
                    None => {
                        rel[j] = Some(ri + off);
                        members.push(j);
                        stack.push(j);
                    }
                    Some(rj) if rj != ri + off => {
                        return Err(format!("ties around buffers {i} and {j} contradict"));
                    }
                    Some(_) => {}
                }
            }
        }
        let lo = members
            .iter()
            .map(|&m| rel[m].unwrap_or(0))
            .min()
            .unwrap_or(0);
        members.sort_unstable();
        out.push(Unit {
            members: members
                .into_iter()
                .map(|m| (m, (rel[m].unwrap_or(0) - lo) as usize))
                .collect(),
        });
    }
    Ok(out)
}

/// Places units in `order`, each at the lowest aligned offset where none of its members meets
/// a placed buffer it lives with.
fn place_in_order(buffers: &[Buffer], units: &[Unit], order: &[usize]) -> ArenaPlan {
    let mut offsets = vec![0usize; buffers.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(buffers.len());
    let mut arena = 0usize;
    for &u in order {
        let unit = &units[u];
        // Offsets X of the unit's start that would make a member meet a placed buffer: for
        // member (m, rel) and placed j, X + rel ∈ (start_j − size_m, end_j).
        let mut busy: Vec<(usize, usize)> = Vec::new();
        for &(m, rel) in &unit.members {
            let b = buffers[m];
            if b.size == 0 {
                continue;
            }
            for &j in &placed {
                let pj = buffers[j];
                if pj.size == 0 || !pj.lives_with(&b) {
                    continue;
                }
                let (start, end) = (offsets[j], offsets[j] + pj.size);
                // X ∈ [lo, hi): X + rel + size_m > start and X + rel < end.
                let lo = (start + 1).saturating_sub(rel + b.size);
                let hi = end.saturating_sub(rel);
                if lo < hi {
                    busy.push((lo, hi));
                }
            }
        }
        busy.sort_unstable();
        let mut candidate = 0usize;
        for (lo, hi) in busy {
            if candidate < lo {
                break;
            }
            candidate = candidate.max(align_up(hi));
        }
        for &(m, rel) in &unit.members {
            offsets[m] = candidate + rel;
            if buffers[m].size > 0 {
                arena = arena.max(candidate + rel + buffers[m].size);
                placed.push(m);
            }
        }
    }
    ArenaPlan {
        offsets,
        arena_bytes: arena,
    }
}

/// Plans `buffers` into one arena, trying several placement orders and keeping the smallest.
pub fn plan(buffers: &[Buffer]) -> ArenaPlan {
    plan_tied(buffers, &[]).unwrap_or(ArenaPlan {
        offsets: vec![0; buffers.len()],
        arena_bytes: 0,
    })
}

/// Plans `buffers` with `ties` kept exactly; `Err` if the ties contradict each other.
pub fn plan_tied(buffers: &[Buffer], ties: &[Tie]) -> Result<ArenaPlan, String> {
    let units = units(buffers, ties)?;
    let n = units.len();
    let key = |f: &dyn Fn(&Unit) -> (usize, usize, usize)| -> Vec<usize> {
        let mut o: Vec<usize> = (0..n).collect();
        o.sort_by_key(|&u| (f(&units[u]), u));
        o
    };
    let b = buffers;
    let orders = [
        // Largest first (TFLM's greedy-by-size order).
        key(&|u| (usize::MAX - u.size(b), u.first(b), 0)),
        // Longest-lived first, then largest.
        key(&|u| {
            (
                usize::MAX - (u.last(b) - u.first(b)),
                usize::MAX - u.size(b),
                0,
            )
        }),
        // Largest area (size × lifetime) first.
        key(&|u| (usize::MAX - u.area(b), 0, 0)),
        // In execution order of first use.
        key(&|u| (u.first(b), usize::MAX - u.size(b), 0)),
    ];
    Ok(orders
        .iter()
        .map(|o| place_in_order(buffers, &units, o))
        .min_by_key(|p| p.arena_bytes)
        .unwrap_or(ArenaPlan {
            offsets: vec![0; buffers.len()],
            arena_bytes: 0,
        }))
}

/// The highest number of bytes alive at once, ignoring fragmentation and ties: a lower bound of
/// any plan without ties, used to rank operator orders cheaply.
pub fn live_peak(buffers: &[Buffer]) -> usize {
    let mut delta: HashMap<usize, i64> = HashMap::new();
    for b in buffers {
        *delta.entry(b.first).or_default() += b.size as i64;
        *delta.entry(b.last + 1).or_default() -= b.size as i64;
    }
    let mut times: Vec<_> = delta.into_iter().collect();
    times.sort_unstable();
    let (mut cur, mut peak) = (0i64, 0i64);
    for (_, d) in times {
        cur += d;
        peak = peak.max(cur);
    }
    peak as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn chain_reuses_memory() {
        // a -> op0 -> b -> op1 -> c: a and c can share.
        let bufs = [
            Buffer {
                size: 100,
                first: 0,
                last: 0,
            },
            Buffer {
                size: 50,
                first: 0,
                last: 1,
            },
            Buffer {
                size: 100,
                first: 1,
                last: 1,
            },
        ];
        let p = plan(&bufs);
        p.check(&bufs).unwrap();
        // a and c share bytes; b sits beside them.
        assert_eq!(p.offsets[0], p.offsets[2]);
        assert_eq!(p.arena_bytes, 112 + 50);
    }

    #[test]
    fn in_place_chain_needs_one_buffer() {
        // x -> relu (in place) -> y -> conv (in place, 32 bytes below) -> z.
        let bufs = [
            Buffer {
                size: 256,
                first: 0,
                last: 0,
            },
            Buffer {
                size: 256,
                first: 0,
                last: 1,
            },
            Buffer {
                size: 256,
                first: 1,
                last: 1,
            },
        ];
        let ties = [
            Tie {
                from: 0,
                to: 1,
                offset: 0,
            },
            Tie {
                from: 1,
                to: 2,
                offset: -32,
            },
        ];
        let p = plan_tied(&bufs, &ties).unwrap();
        p.check_tied(&bufs, &ties).unwrap();
        assert_eq!(p.arena_bytes, 256 + 32);
        assert_eq!(p.offsets, vec![32, 32, 0]);
        // Without the ties the check refuses the same offsets.
        assert!(p.check(&bufs).is_err());
    }

    #[test]
    fn contradictory_ties_are_refused() {
        let b = Buffer {
            size: 16,
            first: 0,
            last: 0,
        };
        let ties = [
            Tie {
                from: 0,
                to: 1,
                offset: 0,
            },
            Tie {
                from: 1,
                to: 0,
                offset: 16,
            },
        ];
        assert!(plan_tied(&[b, b], &ties).is_err());
        let odd = [Tie {
            from: 0,
            to: 1,
            offset: 8,
        }];
        assert!(plan_tied(&[b, b], &odd).is_err());
    }

    proptest! {
        #[test]
        fn never_overlaps(spec in proptest::collection::vec((1usize..5000, 0usize..20, 0usize..6), 0..40)) {
            let bufs: Vec<Buffer> = spec.iter().map(|&(size, first, len)| Buffer { size, first, last: first + len }).collect();
            let p = plan(&bufs);
            prop_assert!(p.check(&bufs).is_ok());
            let max_single = bufs.iter().map(|b| b.size).max().unwrap_or(0);
            prop_assert!(p.arena_bytes >= max_single);
            prop_assert!(p.arena_bytes >= live_peak(&bufs) || bufs.is_empty());
        }

        /// Random graphs of ops in execution order, some computing in place: each op reads one or
        /// two earlier tensors and writes one; an in-place op ties its output to an input that
        /// dies there (as the compiler does), at a random aligned distance. No two live tensors
        /// may overlap except tied pairs, and ties must hold exactly.
        #[test]
        fn in_place_graphs_never_overlap(
            spec in proptest::collection::vec(
                (1usize..3000, 0usize..8, 0usize..8, 0usize..4, -4i64..5, 0usize..300),
                1..36,
            )
        ) {
            // Tensor 0 is the graph input; op i writes tensor i + 1.
            let n_ops = spec.len();
            let mut reads: Vec<Vec<usize>> = Vec::new();
            let mut sizes = vec![spec[0].0];
            for (i, &(size, a, b, _, _, _)) in spec.iter().enumerate() {
                let a = i.saturating_sub(a % (i + 1));
                let mut r = vec![a];
                let b = i.saturating_sub(b % (i + 1));
                if b != a {
                    r.push(b);
                }
                reads.push(r);
                sizes.push(size);
            }
            let mut last = vec![0usize; n_ops + 1];
            let mut first = vec![0usize; n_ops + 1];
            for (i, r) in reads.iter().enumerate() {
                first[i + 1] = i;
                last[i + 1] = i;
                for &t in r {
                    last[t] = last[t].max(i);
                }
            }
            last[n_ops] = n_ops - 1; // the graph output lives to the end
            let mut bufs: Vec<Buffer> = (0..=n_ops)
                .map(|t| Buffer { size: sizes[t], first: first[t], last: last[t] })
                .collect();
            let mut ties = Vec::new();
            for (i, &(_, _, _, mode, shift, scratch)) in spec.iter().enumerate() {
                // mode 0: separate; otherwise tie to the first input if it dies here.
                let t = reads[i][0];
                if mode > 0 && last[t] == i && t != n_ops {
                    ties.push(Tie { from: t, to: i + 1, offset: if mode == 1 { 0 } else { shift * 16 } });
                }
                if scratch > 200 {
                    bufs.push(Buffer { size: scratch, first: i, last: i });
                }
            }
            let p = plan_tied(&bufs, &ties).unwrap();
            prop_assert!(p.check_tied(&bufs, &ties).is_ok(), "{:?}", p.check_tied(&bufs, &ties));
            // Every buffer alive at an op is inside the arena.
            prop_assert!(bufs.iter().zip(&p.offsets).all(|(b, &o)| o + b.size <= p.arena_bytes));
        }
    }
}
