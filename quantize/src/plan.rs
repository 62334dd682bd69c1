//! Arena planning: buffer lifetimes → arena offsets.
//!
//! Every activation tensor and every op's scratch buffer is a [`Buffer`] with a size and a
//! lifetime (the first and last op index during which its bytes must stay intact). Two buffers
//! whose lifetimes intersect may not share bytes. The planner places the largest buffers first,
//! each at the lowest 16-byte aligned offset that conflicts with no placed buffer (greedy by size,
//! best of several orders), and reports the exact arena size: the highest byte any buffer uses.

use mote_runtime::format::ALIGN;

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
        for (i, a) in buffers.iter().enumerate() {
            let ra = self.offsets[i]..self.offsets[i] + a.size;
            if ra.end > self.arena_bytes {
                return Err(format!("buffer {i} ends past the arena"));
            }
            for (j, b) in buffers.iter().enumerate().skip(i + 1) {
                let rb = self.offsets[j]..self.offsets[j] + b.size;
                if a.size > 0
                    && b.size > 0
                    && a.lives_with(b)
                    && ra.start < rb.end
                    && rb.start < ra.end
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

fn align_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Places buffers in `order`, each at the lowest aligned offset free during its lifetime.
fn place_in_order(buffers: &[Buffer], order: &[usize]) -> ArenaPlan {
    let mut offsets = vec![0usize; buffers.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(buffers.len());
    let mut arena = 0usize;
    for &i in order {
        let b = buffers[i];
        if b.size == 0 {
            offsets[i] = 0;
            continue;
        }
        // Conflicting placed intervals, sorted by offset.
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| buffers[j].lives_with(&b))
            .map(|&j| (offsets[j], offsets[j] + buffers[j].size))
            .collect();
        busy.sort_unstable();
        let mut candidate = 0usize;
        for (start, end) in busy {
            if candidate + b.size <= start {
                break;
            }
            candidate = candidate.max(align_up(end));
        }
        offsets[i] = candidate;
        arena = arena.max(candidate + b.size);
        placed.push(i);
    }
    ArenaPlan {
        offsets,
        arena_bytes: arena,
    }
}

/// Plans `buffers` into one arena, trying several placement orders and keeping the smallest.
pub fn plan(buffers: &[Buffer]) -> ArenaPlan {
    let n = buffers.len();
    let mut orders: Vec<Vec<usize>> = Vec::new();
    // Largest first (TFLM's greedy-by-size order).
    let mut by_size: Vec<usize> = (0..n).collect();
    by_size.sort_by_key(|&i| (std::cmp::Reverse(buffers[i].size), buffers[i].first, i));
    orders.push(by_size);
    // Longest-lived first, then largest.
    let mut by_span: Vec<usize> = (0..n).collect();
    by_span.sort_by_key(|&i| {
        let b = buffers[i];
        (
            std::cmp::Reverse(b.last - b.first),
            std::cmp::Reverse(b.size),
            i,
        )
    });
    orders.push(by_span);
    // Largest area (size × lifetime) first.
    let mut by_area: Vec<usize> = (0..n).collect();
    by_area.sort_by_key(|&i| {
        let b = buffers[i];
        (std::cmp::Reverse(b.size * (b.last - b.first + 1)), i)
    });
    orders.push(by_area);
    // In execution order of first use.
    let mut by_time: Vec<usize> = (0..n).collect();
    by_time.sort_by_key(|&i| (buffers[i].first, std::cmp::Reverse(buffers[i].size), i));
    orders.push(by_time);
    orders
        .iter()
        .map(|o| place_in_order(buffers, o))
        .min_by_key(|p| p.arena_bytes)
        .unwrap_or(ArenaPlan {
            offsets: Vec::new(),
            arena_bytes: 0,
        })
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

    proptest! {
        #[test]
        fn never_overlaps(spec in proptest::collection::vec((1usize..5000, 0usize..20, 0usize..6), 0..40)) {
            let bufs: Vec<Buffer> = spec.iter().map(|&(size, first, len)| Buffer { size, first, last: first + len }).collect();
            let p = plan(&bufs);
            prop_assert!(p.check(&bufs).is_ok());
            let max_single = bufs.iter().map(|b| b.size).max().unwrap_or(0);
            prop_assert!(p.arena_bytes >= max_single);
        }
    }
}
