//! Cortex-M DSP-extension kernels (M4, M7, M33, M55): int8 convolution, depthwise convolution and
//! fully connected layers on dual 16-bit multiply-accumulates (`SMLAD`), bit-exact with the
//! reference kernels in `ops/`.
//!
//! The trick that makes int8 cheap here: one 32-bit load holds four int8 values; `SXTAB16` adds
//! the input offset while sign-extending bytes 0 and 2 (and, rotated, 1 and 3) into two 16-bit
//! halves, and `SXTB16` does the same for the weights, so the pairs line up and one `SMLAD`
//! performs two exact multiply-accumulates. Inputs are expanded once per output pixel into a
//! bounded stack buffer (`COL_WORDS`), then reused by every output channel.
//!
//! Stable Rust has no DSP intrinsics (`core::arch::arm::__smlad` is unstable), so the four
//! instructions are single-instruction `asm!` blocks that the compiler schedules and allocates
//! around. With the `arm-dsp` feature on a 32-bit Arm target they are the real instructions;
//! elsewhere (host tests) they are portable Rust with the same results, so the kernels are tested
//! on every machine, and under `qemu-arm` on armv7 and `qemu-system-arm` on Cortex-M in CI.
//!
//! Every entry point returns `None` when a shape is outside what it handles (the caller then runs
//! the reference kernel) and never panics: every index below is bounded by checks at the top of
//! the function.
#![allow(unsafe_code)]

use core::mem::MaybeUninit;

use crate::ops::conv::{requantize, valid_taps, ConvParams};
use crate::ops::depthwise::DepthwiseParams;
use crate::ops::fully_connected::FullyConnectedParams;

/// Words of the per-pixel input buffer: 1024 int8 values expand to 512 words of 16-bit pairs.
pub const COL_WORDS: usize = 512;

// ---------------------------------------------------------------------------------------------
// The four instructions.

#[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
mod isa {
    use core::arch::asm;

    /// `SMLAD`: `acc + lo(a)·lo(b) + hi(a)·hi(b)` (16-bit signed halves, wrapping i32).
    #[inline(always)]
    pub fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        let r: i32;
        // SAFETY: a pure register-to-register instruction of the DSP extension (present on
        // every target this module is compiled for with `arm-dsp`); no memory, no flags used.
        unsafe {
            asm!("smlad {r}, {a}, {b}, {acc}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b,
                 acc = in(reg) acc, options(pure, nomem, nostack, preserves_flags));
        }
        r
    }

    /// `SXTB16`: bytes 0 and 2 of `x`, sign-extended into the two halves.
    #[inline(always)]
    pub fn sxtb16(x: u32) -> u32 {
        let r: u32;
        // SAFETY: pure register-to-register DSP instruction; see `smlad`.
        unsafe {
            asm!("sxtb16 {r}, {x}", r = lateout(reg) r, x = in(reg) x,
                 options(pure, nomem, nostack, preserves_flags));
        }
        r
    }

    /// `SXTB16 ..., ROR #8`: bytes 1 and 3 of `x`, sign-extended into the two halves.
    #[inline(always)]
    pub fn sxtb16_ror8(x: u32) -> u32 {
        let r: u32;
        // SAFETY: pure register-to-register DSP instruction; see `smlad`.
        unsafe {
            asm!("sxtb16 {r}, {x}, ror #8", r = lateout(reg) r, x = in(reg) x,
                 options(pure, nomem, nostack, preserves_flags));
        }
        r
    }

    /// `SXTAB16`: the halves of `a` plus bytes 0 and 2 of `x`, sign-extended.
    #[inline(always)]
    pub fn sxtab16(a: u32, x: u32) -> u32 {
        let r: u32;
        // SAFETY: pure register-to-register DSP instruction; see `smlad`.
        unsafe {
            asm!("sxtab16 {r}, {a}, {x}", r = lateout(reg) r, a = in(reg) a, x = in(reg) x,
                 options(pure, nomem, nostack, preserves_flags));
        }
        r
    }

    /// `SXTAB16 ..., ROR #8`: the halves of `a` plus bytes 1 and 3 of `x`, sign-extended.
    #[inline(always)]
    pub fn sxtab16_ror8(a: u32, x: u32) -> u32 {
        let r: u32;
        // SAFETY: pure register-to-register DSP instruction; see `smlad`.
        unsafe {
            asm!("sxtab16 {r}, {a}, {x}, ror #8", r = lateout(reg) r, a = in(reg) a,
                 x = in(reg) x, options(pure, nomem, nostack, preserves_flags));
        }
        r
    }
}

/// Portable equivalents with identical results, for hosts and targets without the DSP extension.
#[cfg(not(all(target_arch = "arm", feature = "arm-dsp")))]
mod isa {
    fn lo(x: u32) -> i32 {
        i32::from(x as u16 as i16)
    }
    fn hi(x: u32) -> i32 {
        i32::from((x >> 16) as u16 as i16)
    }
    fn pack(lo: i32, hi: i32) -> u32 {
        (lo as u32 & 0xFFFF) | ((hi as u32) << 16)
    }
    fn byte(x: u32, k: u32) -> i32 {
        i32::from((x >> (8 * k)) as u8 as i8)
    }
    pub fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        acc.wrapping_add(lo(a) * lo(b)).wrapping_add(hi(a) * hi(b))
    }
    pub fn sxtb16(x: u32) -> u32 {
        pack(byte(x, 0), byte(x, 2))
    }
    pub fn sxtb16_ror8(x: u32) -> u32 {
        pack(byte(x, 1), byte(x, 3))
    }
    pub fn sxtab16(a: u32, x: u32) -> u32 {
        pack(lo(a) + byte(x, 0), hi(a) + byte(x, 2))
    }
    pub fn sxtab16_ror8(a: u32, x: u32) -> u32 {
        pack(lo(a) + byte(x, 1), hi(a) + byte(x, 3))
    }
}

use isa::*;

/// Four int8 values as one little-endian word (a single unaligned `LDR` on Cortex-M4).
#[inline(always)]
fn word(b: &[i8]) -> u32 {
    match b {
        [a, b, c, d, ..] => u32::from_le_bytes([*a as u8, *b as u8, *c as u8, *d as u8]),
        _ => 0,
    }
}

/// The input offset in both halves of a word, for `SXTAB16`.
#[inline(always)]
fn offset_pair(offset: i32) -> u32 {
    let h = offset as u16 as u32;
    h | (h << 16)
}

/// Appends `x + offset` for four int8 values as two words of pairs: (x0, x2), (x1, x3).
#[inline(always)]
fn expand4(col: &mut [u32], x: u32, off2: u32) {
    if let [a, b, ..] = col {
        *a = sxtab16(off2, x);
        *b = sxtab16_ror8(off2, x);
    }
}

/// [`expand4`] over consecutive groups into lane `lane` of the interleaved layout of `lanes`
/// columns (2: [`dot_2x1`]'s, 4: [`dot_4xn`]'s): group `j` of `src` goes to words
/// `2·lanes·j + 2·lane` and `+ 1` of `groups`, for as many whole groups as both hold.
///
/// On a DSP-extension core one `asm!` loop of 6 instructions per group (the compiler's loop took
/// 16, re-checking the slices). Out of line: [`Window::gather`] calls it from two places.
#[inline(never)]
fn expand_groups(src: &[i8], groups: &mut [u32], lane: usize, off2: u32, lanes: usize) {
    let four = lanes == 4;
    let lane = lane.min(if four { 3 } else { 1 });
    let n = (src.len() / 4).min(groups.len() / if four { 8 } else { 4 });
    #[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
    if n > 0 {
        // SAFETY: `n ≥ 1` iterations, each reading 4 bytes of `src` (single-word `LDR`: any
        // alignment; `4n ≤ src.len()`) and writing words `2·lanes·j + 2·lane` and `+ 1` of
        // `groups` (`STRD`, word-aligned; `2·lanes·n ≤ groups.len()` and `2·lane + 1 <
        // 2·lanes`). Flags are clobbered; no stack. r0/r1: an even/odd pair, as `STRD` needs in
        // the Arm (A32) state.
        unsafe {
            let dp = groups.as_mut_ptr().add(2 * lane);
            if four {
                core::arch::asm!(
                    "2:",
                    "ldr {x}, [{sp}], #4",
                    "sxtab16 r0, {off}, {x}",
                    "sxtab16 r1, {off}, {x}, ror #8",
                    "strd r0, r1, [{dp}], #32",
                    "subs {n}, {n}, #1",
                    "bne 2b",
                    sp = inout(reg) src.as_ptr() => _,
                    dp = inout(reg) dp => _,
                    n = inout(reg) n => _,
                    off = in(reg) off2,
                    x = out(reg) _,
                    out("r0") _,
                    out("r1") _,
                    options(nostack),
                );
            } else {
                core::arch::asm!(
                    "2:",
                    "ldr {x}, [{sp}], #4",
                    "sxtab16 r0, {off}, {x}",
                    "sxtab16 r1, {off}, {x}, ror #8",
                    "strd r0, r1, [{dp}], #16",
                    "subs {n}, {n}, #1",
                    "bne 2b",
                    sp = inout(reg) src.as_ptr() => _,
                    dp = inout(reg) dp => _,
                    n = inout(reg) n => _,
                    off = in(reg) off2,
                    x = out(reg) _,
                    out("r0") _,
                    out("r1") _,
                    options(nostack),
                );
            }
        }
    }
    #[cfg(not(all(target_arch = "arm", feature = "arm-dsp")))]
    for (x, g) in src
        .chunks_exact(4)
        .zip(groups.chunks_exact_mut((2 * lanes).max(2)))
        .take(n)
    {
        if let Some(dst) = g.get_mut(2 * lane..) {
            expand4(dst, word(x), off2);
        }
    }
}

/// Sets element `k` of lane `lane` of a buffer of `lanes` interleaved columns (the layout
/// [`Window::gather`] writes) to `v`.
#[inline(always)]
fn set_interleaved(cols: &mut [u32], lane: usize, k: usize, v: i32, lanes: usize) {
    let word = 2 * lanes * (k / 4) + 2 * lane + (k & 1);
    let high = (k & 2) != 0;
    if let Some(w) = cols.get_mut(word) {
        let v = v as u16 as u32;
        *w = if high {
            (*w & 0xFFFF) | (v << 16)
        } else {
            (*w & 0xFFFF_0000) | v
        };
    }
}

/// Dot product of one expanded column (two words per group of four: `(x0, x2), (x1, x3)`)
/// with one weight row.
#[inline(always)]
fn dot_1x1(c: &[u32], w: &[i8]) -> i32 {
    let mut acc = 0i32;
    for (c, w) in c.chunks_exact(2).zip(w.chunks_exact(4)) {
        let Some(&[xa, xb]) = c.first_chunk() else {
            continue;
        };
        let w = word(w);
        acc = smlad(xa, sxtb16(w), acc);
        acc = smlad(xb, sxtb16_ror8(w), acc);
    }
    acc
}

/// Dot products of one weight row with two expanded columns stored interleaved, four words per
/// group of four values (`[c0 (x0, x2), c0 (x1, x3), c1 (x0, x2), c1 (x1, x3)]`, see
/// [`Window::gather`]): `[init + c0·w, init + c1·w]` over the groups both hold.
///
/// On a DSP-extension core the loop is one `asm!` block: two groups per iteration in 18
/// instructions for 16 multiply-accumulates (`LDM` fetches a group of both columns at once),
/// where the compiler's version of the 2×2 tile spilled registers (35).
#[inline(always)]
fn dot_2x1(cols: &[u32], w: &[i8], init: i32) -> [i32; 2] {
    let groups = (cols.len() / 4).min(w.len() / 4);
    let (mut a0, mut a1) = (init, init);
    #[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
    let pairs = groups / 2;
    #[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
    if pairs > 0 {
        // SAFETY: the loop runs `pairs ≥ 1` times and reads 8·pairs words from `cols` (at most
        // 4·groups ≤ cols.len()) and 8·pairs bytes from `w` (at most 4·groups ≤ w.len()), with
        // single-word `LDR`s for the weights (unaligned rows are fine) and `LDM` on the
        // word-aligned `cols`. It writes only registers; flags are clobbered (no
        // `preserves_flags`).
        unsafe {
            core::arch::asm!(
                "2:",
                "ldr {w0}, [{wp}], #4",
                "ldr {w1}, [{wp}], #4",
                "ldm {cp}!, {{r0, r1, r2, r3}}",
                "sxtb16 {t}, {w0}",
                "sxtb16 {w0}, {w0}, ror #8",
                "smlad {a0}, r0, {t}, {a0}",
                "smlad {a0}, r1, {w0}, {a0}",
                "smlad {a1}, r2, {t}, {a1}",
                "smlad {a1}, r3, {w0}, {a1}",
                "ldm {cp}!, {{r0, r1, r2, r3}}",
                "sxtb16 {t}, {w1}",
                "sxtb16 {w1}, {w1}, ror #8",
                "smlad {a0}, r0, {t}, {a0}",
                "smlad {a0}, r1, {w1}, {a0}",
                "smlad {a1}, r2, {t}, {a1}",
                "smlad {a1}, r3, {w1}, {a1}",
                "subs {n}, {n}, #1",
                "bne 2b",
                cp = inout(reg) cols.as_ptr() => _,
                wp = inout(reg) w.as_ptr() => _,
                n = inout(reg) pairs => _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                w0 = out(reg) _,
                w1 = out(reg) _,
                t = out(reg) _,
                out("r0") _,
                out("r1") _,
                out("r2") _,
                out("r3") _,
                options(nostack, readonly),
            );
        }
    }
    #[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
    let done = 2 * pairs;
    #[cfg(not(all(target_arch = "arm", feature = "arm-dsp")))]
    let done = 0;
    let rest = cols.get(4 * done..4 * groups).unwrap_or(&[]);
    let w_rest = w.get(4 * done..4 * groups).unwrap_or(&[]);
    // (Not `zip`: left out of line, its length division kept a panic path in the no-panic link.)
    let mut w_groups = w_rest.chunks_exact(4);
    for c in rest.chunks_exact(4) {
        let (Some(&[x0a, x0b, x1a, x1b]), Some(w)) = (c.first_chunk(), w_groups.next()) else {
            break;
        };
        let w = word(w);
        let (wa, wb) = (sxtb16(w), sxtb16_ror8(w));
        a0 = smlad(x0b, wb, smlad(x0a, wa, a0));
        a1 = smlad(x1b, wb, smlad(x1a, wa, a1));
    }
    [a0, a1]
}

/// Words per channel of the [`ChannelTable`]: the two accumulators, then the output stage.
const CH_WORDS: usize = 6;

/// Per-output-channel table of [`conv2d_int8`]'s fast path, `CH_WORDS` words per channel:
/// `[acc0, acc1, multiplier, constant lo, constant hi, r − 1]`. [`dot_2xn`] writes the two
/// accumulators of a pixel pair, [`requant_2xn`] reads the whole row with one `LDM`. The output
/// stage is [`RightShift`] with the output offset folded into the constant
/// (`+ offset·2^(31+r)`, so the shifted high word already holds `result + offset`); the
/// activation range must be `[-128, 127]` (a single `SSAT`).
struct ChannelTable;

impl ChannelTable {
    /// Writes the table of `channels` channels into the first `stride·channels` words of `buf`
    /// and returns them; `None` (use the general path) unless every channel has a non-negative
    /// multiplier and a shift in `-23..=-1` (so that the folded offset keeps the 64-bit sum in
    /// range: `|x·m| ≤ 2^62`, `offset·2^(31+r) ≤ 2^61`), the output offset lies in `-128..=127`,
    /// the activation range is `[-128, 127]` and `buf`, `multipliers` and `shifts` are long
    /// enough.
    ///
    /// `stride` is the words per row (`CH_WORDS`, or 4 for [`requant_1xn`]'s rows without
    /// accumulators); the stage is the last four words, the words before it are zeroed. Nothing
    /// is cleared beforehand: every word is written once (the band drivers call the kernels once
    /// per band, so this runs often).
    #[allow(clippy::too_many_arguments)]
    fn fill<'a>(
        buf: &'a mut [MaybeUninit<i32>],
        stride: usize,
        channels: usize,
        multipliers: &[i32],
        shifts: &[i32],
        output_offset: i32,
        act: (i32, i32),
    ) -> Option<&'a mut [i32]> {
        if act != (-128, 127) || !(-128..=127).contains(&output_offset) || stride < 4 {
            return None;
        }
        let buf = buf.get_mut(..stride.checked_mul(channels)?)?;
        let quant = multipliers
            .get(..channels)?
            .iter()
            .zip(shifts.get(..channels)?);
        for (row, (&m, &sh)) in buf.chunks_exact_mut(stride.max(4)).zip(quant) {
            if !(-23..=-1).contains(&sh) {
                return None;
            }
            let f = RightShift::new(m, sh)?;
            // + offset·2^(31+r), r − 1 = f.shift.
            let c = f.constant + (i64::from(output_offset) << (32 + f.shift));
            let stage = [m, c as i32, (c >> 32) as i32, f.shift as i32];
            let (lead, last) = row.split_at_mut(stride - 4);
            for w in lead {
                w.write(0);
            }
            for (w, &v) in last.iter_mut().zip(&stage) {
                w.write(v);
            }
        }
        // SAFETY: the loop above wrote every word of `buf` (`channels` rows of `stride`; it
        // returns early otherwise), and `MaybeUninit<i32>` has the layout of `i32`.
        Some(unsafe { &mut *(buf as *mut [MaybeUninit<i32>] as *mut [i32]) })
    }
}

/// [`dot_2x1`] for every output channel at once: for channel `c` (row `c` of `filter`, `k`
/// values long), the first two words of row `c` of `table` (see [`ChannelTable`]) become
/// `bias[c] + [c0·row, c1·row]`, over `channels = table.len() / CH_WORDS` channels. `k` must be
/// a multiple of 8 with `cols.len() == k`, `filter.len() ≥ channels·k`, `bias.len() ≥ channels`;
/// returns `None` otherwise.
///
/// On a DSP-extension core this is one `asm!` block (the channel loop around `dot_2x1`'s loop):
/// per channel 13 instructions besides the multiply-accumulates, where the compiler's loop around
/// `dot_2x1` took over 40 (spills, the bias and accumulator bookkeeping).
#[inline(always)]
fn dot_2xn(cols: &[u32], filter: &[i8], bias: &[i32], table: &mut [i32]) -> Option<()> {
    let k = cols.len();
    let channels = table.len() / CH_WORDS;
    if k == 0 || k % 8 != 0 || filter.len() < channels * k || bias.len() < channels {
        return None;
    }
    #[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
    if channels > 0 {
        let table = table.get_mut(..CH_WORDS * channels)?;
        let range = table.as_mut_ptr_range();
        // The outer loop's state, read and written by the block: columns, next bias, next
        // table row, end of the table, runs of the inner loop (two pairs of groups each, the
        // first run entered in its middle when the pairs are odd), whether they are.
        let pairs = k / 8;
        let mut st: [usize; 6] = [
            cols.as_ptr() as usize,
            bias.as_ptr() as usize,
            range.start as usize,
            range.end as usize,
            pairs.div_ceil(2),
            pairs % 2,
        ];
        // The accumulators are r4/r5: an even/odd pair, as `STRD` needs in the Arm (A32) state.
        // The inner loop does two pairs of groups; an odd `k/8` enters its first run halfway.
        // SAFETY: `channels ≥ 1` outer iterations; each reads one bias (`channels ≤ bias.len()`),
        // runs `k/8 ≥ 1` pairs of groups reading the `k` words of `cols` (word-aligned `LDM`) and
        // `k` bytes of the next filter row (`LDR`s; `channels·k ≤ filter.len()`), and writes the
        // first two words of one `CH_WORDS`-word table row (`STRD`, word-aligned) until the end of
        // `table`. `st` is a live local array it reads and updates. Flags clobbered; no stack.
        unsafe {
            core::arch::asm!(
                "3:",
                "ldr {cp}, [{st}, #4]",
                "ldr r4, [{cp}], #4",
                "str {cp}, [{st}, #4]",
                "mov r5, r4",
                "ldr {cp}, [{st}]",
                "ldr {n}, [{st}, #16]",
                // An odd number of group pairs enters the twice-unrolled loop in its middle.
                "ldr {t}, [{st}, #20]",
                "cmp {t}, #0",
                "bne 4f",
                "2:",
                "ldr {w}, [{wp}], #4",
                "ldm {cp}!, {{r0, r1, r2, r3}}",
                "sxtb16 {t}, {w}",
                "sxtb16 {w}, {w}, ror #8",
                "smlad r4, r0, {t}, r4",
                "smlad r4, r1, {w}, r4",
                "smlad r5, r2, {t}, r5",
                "smlad r5, r3, {w}, r5",
                "ldr {w}, [{wp}], #4",
                "ldm {cp}!, {{r0, r1, r2, r3}}",
                "sxtb16 {t}, {w}",
                "sxtb16 {w}, {w}, ror #8",
                "smlad r4, r0, {t}, r4",
                "smlad r4, r1, {w}, r4",
                "smlad r5, r2, {t}, r5",
                "smlad r5, r3, {w}, r5",
                "4:",
                "ldr {w}, [{wp}], #4",
                "ldm {cp}!, {{r0, r1, r2, r3}}",
                "sxtb16 {t}, {w}",
                "sxtb16 {w}, {w}, ror #8",
                "smlad r4, r0, {t}, r4",
                "smlad r4, r1, {w}, r4",
                "smlad r5, r2, {t}, r5",
                "smlad r5, r3, {w}, r5",
                "ldr {w}, [{wp}], #4",
                "ldm {cp}!, {{r0, r1, r2, r3}}",
                "sxtb16 {t}, {w}",
                "sxtb16 {w}, {w}, ror #8",
                "smlad r4, r0, {t}, r4",
                "smlad r4, r1, {w}, r4",
                "smlad r5, r2, {t}, r5",
                "smlad r5, r3, {w}, r5",
                "subs {n}, {n}, #1",
                "bne 2b",
                "ldr {cp}, [{st}, #8]",
                "strd r4, r5, [{cp}], #24",
                "str {cp}, [{st}, #8]",
                "ldr {n}, [{st}, #12]",
                "cmp {cp}, {n}",
                "bne 3b",
                st = in(reg) st.as_mut_ptr(),
                wp = inout(reg) filter.as_ptr() => _,
                cp = out(reg) _,
                n = out(reg) _,
                out("r4") _,
                out("r5") _,
                w = out(reg) _,
                t = out(reg) _,
                out("r0") _,
                out("r1") _,
                out("r2") _,
                out("r3") _,
                options(nostack),
            );
        }
        return Some(());
    }
    #[cfg(not(all(target_arch = "arm", feature = "arm-dsp")))]
    for ((row, w), &b) in table
        .chunks_exact_mut(CH_WORDS)
        .zip(filter.chunks_exact(k))
        .zip(bias)
    {
        if let [a0, a1, ..] = row {
            [*a0, *a1] = dot_2x1(cols, w, b);
        }
    }
    Some(())
}

/// The output stage of a pixel pair from the [`ChannelTable`] `table` (accumulators filled by
/// [`dot_2xn`]): channel `c` goes to `out0[c]` and `out1[c]`. `None` unless both outputs hold
/// one byte per table row.
///
/// On a DSP-extension core one `asm!` loop of 22 instructions per channel (two outputs): one
/// `LDM` for the row, per output `SMLAL`, the sign correction (3), the shift, `SSAT`, `STRB`.
#[inline(always)]
fn requant_2xn(table: &[i32], out0: &mut [i8], out1: &mut [i8]) -> Option<()> {
    let channels = table.len() / CH_WORDS;
    if out0.len() != channels || out1.len() != channels {
        return None;
    }
    #[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
    if channels > 0 {
        let table = table.get(..CH_WORDS * channels)?;
        let end = table.as_ptr_range().end;
        // `out1[c]` relative to `out0[c + 1]` (the store to `out0` post-increments).
        let delta = (out1.as_mut_ptr() as isize)
            .wrapping_sub(out0.as_mut_ptr() as isize)
            .wrapping_sub(1);
        // SAFETY: `channels ≥ 1` iterations, each reading one whole table row (`LDM` of
        // `CH_WORDS` words on the word-aligned slice, until its end) and writing byte `c` of
        // `out0` and of `out1` (both `channels` long, checked above; `delta` is the distance from
        // `out0[c + 1]` to `out1[c]`). Flags are clobbered; no stack.
        unsafe {
            core::arch::asm!(
                "2:",
                "ldm {p}!, {{r0, r1, r2, r3, r4, r5}}",
                "mov {lo}, r3",
                "mov {hi}, r4",
                "smlal {lo}, {hi}, r0, r2",
                "and r0, r0, #0x80000000",
                "adds {lo}, {lo}, r0",
                "adc {hi}, {hi}, r0, asr #31",
                "asr {hi}, {hi}, r5",
                "ssat {hi}, #8, {hi}",
                "strb {hi}, [{op}], #1",
                "mov {lo}, r3",
                "mov {hi}, r4",
                "smlal {lo}, {hi}, r1, r2",
                "and r1, r1, #0x80000000",
                "adds {lo}, {lo}, r1",
                "adc {hi}, {hi}, r1, asr #31",
                "asr {hi}, {hi}, r5",
                "ssat {hi}, #8, {hi}",
                "strb {hi}, [{op}, {d}]",
                "cmp {p}, {end}",
                "bne 2b",
                p = inout(reg) table.as_ptr() => _,
                end = in(reg) end,
                op = inout(reg) out0.as_mut_ptr() => _,
                d = in(reg) delta,
                lo = out(reg) _,
                hi = out(reg) _,
                out("r0") _,
                out("r1") _,
                out("r2") _,
                out("r3") _,
                out("r4") _,
                out("r5") _,
                options(nostack),
            );
        }
        return Some(());
    }
    let rows = table.chunks_exact(CH_WORDS);
    for (row, (o0, o1)) in rows.zip(out0.iter_mut().zip(out1.iter_mut())) {
        let &[a0, a1, m, lo, hi, shift] = row else {
            continue;
        };
        let c = (i64::from(hi) << 32) | i64::from(lo as u32);
        let stage = |x: i32| {
            let y = i64::from(x) * i64::from(m) + c + (i64::from(x >> 31) << 31);
            (((y >> 32) as i32) >> (shift & 31)).clamp(-128, 127) as i8
        };
        [*o0, *o1] = [stage(a0), stage(a1)];
    }
    Some(())
}

/// The output stage of one output per channel: `out[c]` from `acc[c]` and row `c` of `table`
/// (4 words per row: the last four of a [`ChannelTable`] row, filled with `stride` 4). `None`
/// unless `acc`, `out` and the table have one entry per channel.
///
/// On a DSP-extension core one `asm!` loop of 11 instructions per output.
#[inline(always)]
fn requant_1xn(table: &[i32], acc: &[i32], out: &mut [i8]) -> Option<()> {
    let channels = out.len();
    if acc.len() != channels || table.len() != 4 * channels {
        return None;
    }
    #[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
    if channels > 0 {
        let end = acc.as_ptr_range().end;
        // SAFETY: `channels ≥ 1` iterations, each reading one accumulator (`LDR`, until the end
        // of `acc`), one 4-word table row (`LDM` on the word-aligned slice, `4·channels` words)
        // and writing one byte of `out` (`channels` long). Flags are clobbered; no stack.
        unsafe {
            core::arch::asm!(
                "2:",
                "ldr {x}, [{ap}], #4",
                "ldm {tp}!, {{r0, r1, r2, r3}}",
                "smlal r1, r2, {x}, r0",
                "and {x}, {x}, #0x80000000",
                "adds r1, r1, {x}",
                "adc r2, r2, {x}, asr #31",
                "asr r2, r2, r3",
                "ssat r2, #8, r2",
                "strb r2, [{op}], #1",
                "cmp {ap}, {end}",
                "bne 2b",
                ap = inout(reg) acc.as_ptr() => _,
                tp = inout(reg) table.as_ptr() => _,
                op = inout(reg) out.as_mut_ptr() => _,
                end = in(reg) end,
                x = out(reg) _,
                out("r0") _,
                out("r1") _,
                out("r2") _,
                out("r3") _,
                options(nostack),
            );
        }
        return Some(());
    }
    for ((row, &x), o) in table.chunks_exact(4).zip(acc).zip(out.iter_mut()) {
        let &[m, lo, hi, shift] = row else {
            continue;
        };
        let c = (i64::from(hi) << 32) | i64::from(lo as u32);
        let y = i64::from(x) * i64::from(m) + c + (i64::from(x >> 31) << 31);
        *o = (((y >> 32) as i32) >> (shift & 31)).clamp(-128, 127) as i8;
    }
    Some(())
}

/// The trailing products of a row: `tail` (unexpanded values, at least as many as `w`) times `w`.
#[inline(always)]
fn tail_dot(tail: &[i32], w: &[i8]) -> i32 {
    tail.iter()
        .zip(w)
        .fold(0i32, |a, (&x, &w)| a.wrapping_add(x * i32::from(w)))
}

/// TFLM's output stage ([`requantize`]) for a channel whose shift divides (`-31 ≤ shift ≤ -1`,
/// the usual case: the real multiplier is below ½) and whose multiplier is non-negative, in one
/// 64-bit multiply-accumulate and one shift instead of the two rounding steps.
///
/// `requantize` computes `v = ⌊(x·m + 2^30) / 2^31⌋` (SRDHM, exact in this floor form for
/// `m ≥ 0`) and then `⌊(v + 2^(r-1) − [v < 0]) / 2^r⌋` (RDBP with `r = -shift ≥ 1`, ties away
/// from zero). Since `⌊⌊a / b⌋ + c) / d⌋ = ⌊(a + c·b) / (b·d)⌋`, both steps are one floor:
/// `⌊(x·m + 2^30 + 2^(30+r) − s·2^31) / 2^(31+r)⌋` with `s = [v < 0]`, and `s = [x < 0]` gives the
/// same result (with `m ≥ 0`, `x < 0` makes `v ≤ 0`, and for `v = 0` both `s` round to 0). The
/// sum fits in `i64`; dividing by `2^(31+r)` is taking its high word and shifting by `r − 1`.
#[derive(Clone, Copy)]
struct RightShift {
    multiplier: i32,
    /// `2^30 + 2^(30+r)`.
    constant: i64,
    /// `r − 1`, in `0..=30`.
    shift: u32,
}

impl RightShift {
    /// The fast form of (`multiplier`, `shift`), or `None` when it does not apply.
    #[inline(always)]
    fn new(multiplier: i32, shift: i32) -> Option<Self> {
        if multiplier < 0 || !(-31..=-1).contains(&shift) {
            return None;
        }
        let r = shift.unsigned_abs();
        // 2^30 + 2^(30+r) from 32-bit parts: the low word is 2^30 (+ 2^31 for r = 1), the high
        // word 2^(r-2) (0 for r = 1).
        let p = 1u32 << r;
        let lo = 0x4000_0000u32.wrapping_add(p << 30);
        let hi = p >> 2;
        Some(RightShift {
            multiplier,
            constant: ((u64::from(hi) << 32) | u64::from(lo)) as i64,
            shift: r - 1,
        })
    }

    /// `multiply_by_quantized_multiplier(x, multiplier, shift)`, exactly.
    #[inline(always)]
    fn apply(self, x: i32) -> i32 {
        let y =
            i64::from(x) * i64::from(self.multiplier) + self.constant + (i64::from(x >> 31) << 31);
        ((y >> 32) as i32) >> (self.shift & 31)
    }
}

/// TFLM's output stage for two accumulators of one channel (`acc` already holds the bias).
#[inline(always)]
fn requantize2(acc: [i32; 2], m: i32, shift: i32, off: i32, lo: i32, hi: i32) -> [i8; 2] {
    match RightShift::new(m, shift) {
        Some(f) => acc.map(|a| f.apply(a).wrapping_add(off).max(lo).min(hi) as i8),
        None => acc.map(|a| requantize(a, m, shift, off, lo, hi)),
    }
}

/// The first `n` elements of a stack buffer, zeroed (`None` if `n` exceeds its length): only what a call uses is
/// cleared (the band drivers call the kernels once per band, and clearing whole buffers each
/// time cost more than filling them).
#[inline(always)]
fn zeroed<T: Copy + Default>(buf: &mut [MaybeUninit<T>], n: usize) -> Option<&mut [T]> {
    let s = buf.get_mut(..n)?;
    for x in s.iter_mut() {
        x.write(T::default());
    }
    // SAFETY: every element of `s` was just initialised, and `MaybeUninit<T>` has the layout of
    // `T`, so the slice may be viewed as `[T]` for as long as `buf` is borrowed.
    Some(unsafe { &mut *(s as *mut [MaybeUninit<T>] as *mut [T]) })
}

/// A word scratch buffer viewed as `i32`s (for a [`ChannelTable`] or accumulators carved out of
/// one shared stack buffer).
#[inline(always)]
fn as_i32s(buf: &mut [MaybeUninit<u32>]) -> &mut [MaybeUninit<i32>] {
    // SAFETY: `MaybeUninit<u32>` and `MaybeUninit<i32>` have the same size, alignment and
    // validity (none required), and the new slice covers exactly the same memory, borrowed for
    // as long as `buf`.
    unsafe { &mut *(buf as *mut [MaybeUninit<u32>] as *mut [MaybeUninit<i32>]) }
}

/// A word scratch buffer viewed as its `4·len` bytes (for a zero-padded filter copy or a padding
/// row carved out of one shared stack buffer).
#[inline(always)]
fn as_i8s(buf: &mut [MaybeUninit<u32>]) -> &mut [MaybeUninit<i8>] {
    let len = buf.len() * 4;
    // SAFETY: the `len` bytes start at the buffer's start and end at its end (a `u32` is four
    // bytes), `MaybeUninit<i8>` has alignment 1 and no validity requirement, and the new slice
    // borrows `buf` for its lifetime.
    unsafe { core::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<MaybeUninit<i8>>(), len) }
}

/// Per-output-channel requantization data, borrowed from the op.
struct Quant<'a> {
    bias: Option<&'a [i32]>,
    multipliers: &'a [i32],
    shifts: &'a [i32],
    output_offset: i32,
    act_min: i32,
    act_max: i32,
}

/// Geometry of a window op, after the reference kernel's checks.
#[derive(Clone, Copy)]
struct Window {
    in_h: usize,
    in_w: usize,
    in_c: usize,
    f_h: usize,
    f_w: usize,
    stride_h: usize,
    stride_w: usize,
    dil_h: usize,
    dil_w: usize,
    pad_h: usize,
    pad_w: usize,
    /// Values stored interleaved in the columns (the rest go to the tail): `k / 4 * 4`, or `k`
    /// rounded up to a multiple of 8 when the filter is padded (the values past `k` stay 0).
    k_cols: usize,
    /// Columns interleaved in the buffer [`Window::gather`] writes: 2 ([`dot_2x1`]) or 4
    /// ([`dot_4xn`]).
    lanes: usize,
}

impl Window {
    /// Expands the receptive field of output pixel (`oy`, `ox`) of `input` (one batch) into lane
    /// `lane` (below `self.lanes`) of `cols`, the interleaved layout of [`dot_2x1`] or
    /// [`dot_4xn`] (words `2·lanes·j + 2·lane` and `+ 1` for group `j` of `k / 4`), and the
    /// `k % 4` trailing values into `tail`, padding with zeros. The other lanes are left as they
    /// are.
    #[allow(clippy::too_many_arguments)]
    fn gather(
        &self,
        input: &[i8],
        oy: usize,
        ox: usize,
        off: i32,
        cols: &mut [u32],
        lane: usize,
        tail: &mut [i32; 3],
    ) {
        let y0 = (oy * self.stride_h) as isize - self.pad_h as isize;
        let x0 = (ox * self.stride_w) as isize - self.pad_w as isize;
        let rows = valid_taps(y0, self.dil_h, self.in_h, self.f_h);
        let cols_x = valid_taps(x0, self.dil_w, self.in_w, self.f_w);
        let c = self.in_c;
        let full = self.k_cols;
        let lanes = self.lanes;
        if rows.len() != self.f_h || cols_x.len() != self.f_w {
            // (`max(2)`: shows the chunk size is not 0.)
            for g in cols.chunks_exact_mut((2 * lanes).max(2)).take(full / 4) {
                if let Some(pair) = g.get_mut(2 * lane..2 * lane + 2) {
                    pair.fill(0);
                }
            }
            *tail = [0; 3];
        }
        let off2 = offset_pair(off);
        // A window row of whole groups of four, contiguous in the input (no dilation, no
        // padding columns): expanded in one run, not tap by tap (or, for the KWS first layer's
        // single channel, value by value).
        let row_len = self.f_w * c;
        let whole_rows = row_len % 4 == 0 && self.dil_w == 1 && cols_x.len() == self.f_w;
        for fy in rows {
            let iy = (y0 + (fy * self.dil_h) as isize) as usize;
            if whole_rows {
                let at = (iy * self.in_w + cols_x.start + x0 as usize) * c;
                let src = input.get(at..at + row_len).unwrap_or(&[]);
                let groups = cols.get_mut(fy * row_len * lanes / 2..).unwrap_or(&mut []);
                expand_groups(src, groups, lane, off2, lanes);
                continue;
            }
            for fx in cols_x.clone() {
                let ix = (x0 + (fx * self.dil_w) as isize) as usize;
                let Some(px) = input.get((iy * self.in_w + ix) * c..(iy * self.in_w + ix + 1) * c)
                else {
                    continue;
                };
                let k0 = (fy * self.f_w + fx) * c;
                if c % 4 == 0 {
                    let groups = cols.get_mut(k0 * lanes / 2..).unwrap_or(&mut []);
                    expand_groups(px, groups, lane, off2, lanes);
                } else {
                    for (j, &x) in px.iter().enumerate() {
                        let kk = k0 + j;
                        let v = i32::from(x) + off;
                        if kk < full {
                            set_interleaved(cols, lane, kk, v, lanes);
                        } else if let Some(t) = tail.get_mut(kk - full) {
                            *t = v;
                        }
                    }
                }
            }
        }
    }
}

/// DSP-extension CONV_2D for one group (`groups == 1`) with a receptive field of at most
/// `2·COL_WORDS` values. Shapes and lengths must already satisfy the reference kernel's checks
/// (the caller runs them); returns `None` when this kernel does not apply.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_int8(
    p: &ConvParams,
    input_shape: [usize; 4],
    input: &[i8],
    filter_shape: [usize; 4],
    filter: &[i8],
    bias: Option<&[i32]>,
    multipliers: &[i32],
    shifts: &[i32],
    output_shape: [usize; 4],
    output: &mut [i8],
) -> Option<()> {
    let [batches, in_h, in_w, in_c] = input_shape;
    let [out_c, f_h, f_w, f_ic] = filter_shape;
    let [_, out_h, out_w, _] = output_shape;
    let k = f_h.checked_mul(f_w)?.checked_mul(f_ic)?;
    if f_ic != in_c || k == 0 || k > 2 * COL_WORDS || out_c == 0 {
        return None;
    }
    if filter.len() != out_c * k || output.len() != batches * out_h * out_w * out_c {
        return None;
    }
    if input.len() != batches * in_h * in_w * in_c || multipliers.len() != out_c {
        return None;
    }
    if out_w == 0 {
        // No output (checked above: `output` is empty); below, pixel indices are split into
        // line and column by dividing by `out_w`.
        return Some(());
    }
    let win = Window {
        in_h,
        in_w,
        in_c,
        f_h,
        f_w,
        stride_h: p.stride_h as usize,
        stride_w: p.stride_w as usize,
        dil_h: p.dilation_h as usize,
        dil_w: p.dilation_w as usize,
        pad_h: p.pad_h as usize,
        pad_w: p.pad_w as usize,
        k_cols: k / 4 * 4,
        lanes: 2,
    };
    let q = Quant {
        bias,
        multipliers,
        shifts,
        output_offset: p.output_offset,
        act_min: p.act_min,
        act_max: p.act_max,
    };
    if shifts.len() != out_c || bias.is_some_and(|b| b.len() != out_c) {
        return None;
    }
    // Each output channel's bias (0 without one), in channel order.
    let biases = || {
        bias.unwrap_or(&[])
            .iter()
            .copied()
            .chain(core::iter::repeat(0))
    };
    // One stack buffer of `SCRATCH_WORDS` words holds all of this kernel's scratch, carved as
    // `[columns | channel table | padded filter]`: only what the shape needs is used, and a
    // piece that does not fit falls back to the general path (ResNet-8's largest layer, 3×3×64
    // to 64 channels, needs 576 + 384 words).
    let mut scratch = [MaybeUninit::<u32>::uninit(); SCRATCH_WORDS];
    // Rows with trailing values (ResNet-8's first layer: 3×3×3) are padded with zeros to a
    // multiple of 8 in a copy of the filter at the end of the buffer (room left for the columns
    // and the table), so that they take the fast path below.
    let kp = k.next_multiple_of(8);
    let pad_words = out_c.checked_mul(kp)? / 4;
    let table_words = CH_WORDS.checked_mul(out_c)?;
    let pad = k % 4 != 0
        && bias.is_some()
        && out_c <= ACC_CHANNELS
        && kp
            .checked_add(table_words)?
            .checked_add(pad_words)
            .is_some_and(|w| w <= SCRATCH_WORDS);
    let keep = SCRATCH_WORDS.checked_sub(if pad { pad_words } else { 0 })?;
    let (head, pad_buf) = scratch.split_at_mut_checked(keep)?;
    let mut win = win;
    let (filter, k) = match pad
        .then(|| zeroed(as_i8s(pad_buf), out_c.checked_mul(kp)?))
        .flatten()
    {
        Some(padded) => {
            // (`max(1)`: shows the chunk size is not 0, `k ≥ 1` is checked above.)
            for (i, src) in filter.chunks_exact(k.max(1)).enumerate() {
                let dst = padded.get_mut(i * kp..i * kp + k)?;
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = s;
                }
            }
            win.k_cols = kp;
            (&*padded, kp)
        }
        None => (filter, k),
    };
    let full = win.k_cols;
    let t = k - full;
    if let (Some(bias), true) = (bias, t == 0 && full % 8 == 0 && out_c <= ACC_CHANNELS) {
        let quad = Quad {
            win: Window { lanes: 4, ..win },
            p,
            filter,
            bias,
            multipliers,
            shifts,
        };
        if quad
            .run(head, batches, input, [out_h, out_w, out_c], output)
            .is_some()
        {
            return Some(());
        }
    }
    // Both pixels' columns, interleaved group by group (see `dot_2x1`): the 2·(k/4) groups of
    // four words take `full` words. Only those are zeroed (the band drivers call this once per
    // band: clearing all 4 KB each time cost more than the gathers).
    let (cols, table_buf) = head.split_at_mut_checked(full)?;
    let cols = zeroed(cols, full)?;
    let (mut tail0, mut tail1) = ([0i32; 3], [0i32; 3]);
    // The fast path's channel table (see `ChannelTable`) in the words after the columns: rows of
    // a multiple of 8 values, with a bias, at most `ACC_CHANNELS` channels, every channel's
    // output stage eligible, and the table fitting (`fill` checks the length).
    let act = (p.act_min, p.act_max);
    let mut table = (t == 0 && full % 8 == 0 && bias.is_some() && out_c <= ACC_CHANNELS)
        .then(|| {
            let (m, sh) = (multipliers, shifts);
            let buf = as_i32s(table_buf);
            ChannelTable::fill(buf, CH_WORDS, out_c, m, sh, p.output_offset, act)
        })
        .flatten();
    let pixels = out_h * out_w;
    let in_batch = in_h * in_w * in_c;
    let (off, lo, hi) = (q.output_offset, q.act_min, q.act_max);
    for b in 0..batches {
        let input = input.get(b * in_batch..(b + 1) * in_batch)?;
        let out_b = output.get_mut(b * pixels * out_c..(b + 1) * pixels * out_c)?;
        let mut px_out = out_b.chunks_exact_mut(out_c.max(1));
        let mut px = 0;
        while px < pixels {
            let in_off = p.input_offset;
            win.gather(input, px / out_w, px % out_w, in_off, cols, 0, &mut tail0);
            let out0 = px_out.next()?;
            // Channel by channel in lockstep (lengths checked above): no per-output lookups.
            let rows = filter
                .chunks_exact(k.max(1))
                .zip(multipliers.iter().zip(shifts))
                .zip(biases());
            if px + 1 < pixels {
                let n = px + 1;
                win.gather(input, n / out_w, n % out_w, in_off, cols, 1, &mut tail1);
                let out1 = px_out.next()?;
                if let (Some(table), Some(bias)) = (table.as_deref_mut(), bias) {
                    dot_2xn(cols, filter, bias, table)?;
                    requant_2xn(table, out0, out1)?;
                    px += 2;
                    continue;
                }
                let (t0, t1) = (tail0.get(..t)?, tail1.get(..t)?);
                for (((w, (&m, &sh)), b), (o0, o1)) in rows.zip(out0.iter_mut().zip(out1)) {
                    let a = if t == 0 {
                        // No trailing weights (`k % 4 == 0`, the common case): no tail products.
                        dot_2x1(cols, w, b)
                    } else {
                        let (body, tw) = w.split_at_checked(full)?;
                        let [a0, a1] = dot_2x1(cols, body, b);
                        [
                            a0.wrapping_add(tail_dot(t0, tw)),
                            a1.wrapping_add(tail_dot(t1, tw)),
                        ]
                    };
                    [*o0, *o1] = requantize2(a, m, sh, off, lo, hi);
                }
                px += 2;
                continue;
            }
            // The last pixel alone: lane 1 holds stale values whose sums are dropped.
            let t0 = tail0.get(..t)?;
            for (((w, (&m, &sh)), b), o0) in rows.zip(out0.iter_mut()) {
                let (body, tw) = w.split_at_checked(full)?;
                let [a0, _] = dot_2x1(cols, body, b);
                let a0 = a0.wrapping_add(tail_dot(t0, tw));
                [*o0, _] = requantize2([a0, a0], m, sh, off, lo, hi);
            }
            px += 1;
        }
    }
    Some(())
}

/// The four-pixel fast path of [`conv2d_int8`] (rows of a multiple of 8 values, a bias, every
/// channel's output stage eligible): four pixels' columns ([`Window::gather`] with 4 lanes),
/// [`dot_4xn`], [`requant_4xn`]. Its scratch, `[columns | table | last pixels' outputs]`
/// (`2·k + 8·c + c` words), must fit the buffer it is given (64-channel layers of up to 3×3×32
/// inputs do; larger ones take the two-pixel path).
struct Quad<'a> {
    win: Window,
    p: &'a ConvParams,
    filter: &'a [i8],
    bias: &'a [i32],
    multipliers: &'a [i32],
    shifts: &'a [i32],
}

impl Quad<'_> {
    /// Runs the op on `batches` of `input` into `output` (`[out_h, out_w, out_c]` per batch);
    /// `None` when it does not apply. Writes `output` only when it returns `Some`.
    fn run(
        &self,
        scratch: &mut [MaybeUninit<u32>],
        batches: usize,
        input: &[i8],
        [out_h, out_w, out_c]: [usize; 3],
        output: &mut [i8],
    ) -> Option<()> {
        let win = &self.win;
        let full = win.k_cols;
        if out_w == 0 {
            // No output; below, pixel indices are split into line and column by `out_w`.
            return (output.is_empty()).then_some(());
        }
        let (cols, rest) = scratch.split_at_mut_checked(2 * full)?;
        let (table_buf, rest) = rest.split_at_mut_checked(8 * out_c)?;
        let (m, sh, p) = (self.multipliers, self.shifts, self.p);
        let act = (p.act_min, p.act_max);
        let table = ChannelTable::fill(as_i32s(table_buf), 8, out_c, m, sh, p.output_offset, act)?;
        let last = zeroed(as_i8s(rest), 4 * out_c)?;
        let cols = zeroed(cols, 2 * full)?;
        let mut tail = [0i32; 3];
        let pixels = out_h * out_w;
        let in_batch = win.in_h * win.in_w * win.in_c;
        for b in 0..batches {
            let input = input.get(b * in_batch..(b + 1) * in_batch)?;
            let out_b = output.get_mut(b * pixels * out_c..(b + 1) * pixels * out_c)?;
            let mut px = 0;
            while px < pixels {
                let n = (pixels - px).min(4);
                for lane in 0..n {
                    let q = px + lane;
                    let off = p.input_offset;
                    win.gather(input, q / out_w, q % out_w, off, cols, lane, &mut tail);
                }
                dot_4xn(cols, self.filter, self.bias, table)?;
                let out = out_b.get_mut(px * out_c..(px + n) * out_c)?;
                if n == 4 {
                    requant_4xn(table, out)?;
                } else {
                    // The last pixels: lanes `n..` hold stale columns whose outputs are dropped.
                    requant_4xn(table, last)?;
                    for (o, &v) in out.iter_mut().zip(last.iter()) {
                        *o = v;
                    }
                }
                px += n;
            }
        }
        Some(())
    }
}

/// One step of [`dot_4xn`]'s loop (an `asm!` template piece): four filter values of one output
/// channel (`{wp}`, widened by `SXTB16`) times two 16-bit pairs of each of four pixels (`{cp}`,
/// interleaved by `gather`), into the accumulators r4, r5, r8, r9.
#[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
macro_rules! tile4_step {
    () => {
        concat!(
            "ldr {w}, [{wp}], #4\n",
            "sxtb16 {t}, {w}\n",
            "sxtb16 {w}, {w}, ror #8\n",
            "ldm {cp}!, {{r0, r1, r2, r3}}\n",
            "smlad r4, r0, {t}, r4\n",
            "smlad r4, r1, {w}, r4\n",
            "smlad r5, r2, {t}, r5\n",
            "smlad r5, r3, {w}, r5\n",
            "ldm {cp}!, {{r0, r1, r2, r3}}\n",
            "smlad r8, r0, {t}, r8\n",
            "smlad r8, r1, {w}, r8\n",
            "smlad r9, r2, {t}, r9\n",
            "smlad r9, r3, {w}, r9\n",
        )
    };
}

/// Four pixels' [`dot_2xn`]: for channel `c` (row `c` of `filter`, `k` values long), the first
/// four words of row `c` of `table` (a [`ChannelTable`] of stride 8) become `bias[c] +
/// [c0·row, c1·row, c2·row, c3·row]`, the columns interleaved in eight words per group of four
/// values. `k = cols.len() / 2` must be a multiple of 8, `filter.len() ≥ channels·k`,
/// `bias.len() ≥ channels`; `None` otherwise.
///
/// On a DSP-extension core one `asm!` block: per group 13 instructions for 16
/// multiply-accumulates (one weight word widened once for four pixels, two `LDM`s of the
/// columns), per channel 18 more.
#[inline(always)]
fn dot_4xn(cols: &[u32], filter: &[i8], bias: &[i32], table: &mut [i32]) -> Option<()> {
    let k = cols.len() / 2;
    let channels = table.len() / 8;
    if k == 0 || k % 8 != 0 || filter.len() < channels * k || bias.len() < channels {
        return None;
    }
    #[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
    if channels > 0 {
        let table = table.get_mut(..8 * channels)?;
        let range = table.as_mut_ptr_range();
        let c_range = cols.as_ptr_range();
        // An odd number of pairs of groups enters the twice-unrolled loop in its middle.
        let odd = (k / 8) % 2;
        // SAFETY: `channels ≥ 1` outer iterations; each reads one bias (`channels ≤
        // bias.len()`), runs over the `2·k` words of `cols` (word-aligned `LDM`s, until their
        // end: `k/8` pairs of groups of 16 words) and `k` bytes of the next filter row (`LDR`s;
        // `channels·k ≤ filter.len()`), and writes the first four words of one 8-word table row
        // (`STM`, word-aligned) until the end of `table`. The state is kept in 24 bytes below the
        // stack pointer, restored at the end. Flags clobbered.
        unsafe {
            core::arch::asm!(
                "sub sp, sp, #24",
                "str r0, [sp, #0]",
                "str r1, [sp, #4]",
                "str r2, [sp, #8]",
                "str r3, [sp, #12]",
                "str r4, [sp, #16]",
                "str r5, [sp, #20]",
                "3:",
                "ldr {t}, [sp, #4]",
                "ldr r4, [{t}], #4",
                "str {t}, [sp, #4]",
                "mov r5, r4",
                "mov r8, r4",
                "mov r9, r4",
                "ldr {cp}, [sp, #0]",
                "ldr {t}, [sp, #20]",
                "cmp {t}, #0",
                "bne 4f",
                "2:",
                tile4_step!(),
                tile4_step!(),
                "4:",
                tile4_step!(),
                tile4_step!(),
                "ldr {t}, [sp, #16]",
                "cmp {cp}, {t}",
                "bne 2b",
                "ldr {t}, [sp, #8]",
                "stm {t}!, {{r4, r5, r8, r9}}",
                "add {t}, {t}, #16",
                "str {t}, [sp, #8]",
                "ldr {w}, [sp, #12]",
                "cmp {t}, {w}",
                "bne 3b",
                "add sp, sp, #24",
                wp = inout(reg) filter.as_ptr() => _,
                cp = out(reg) _,
                w = out(reg) _,
                t = out(reg) _,
                inout("r0") c_range.start => _,
                inout("r1") bias.as_ptr() => _,
                inout("r2") range.start => _,
                inout("r3") range.end => _,
                inout("r4") c_range.end => _,
                inout("r5") odd => _,
                out("r8") _,
                out("r9") _,
            );
        }
        return Some(());
    }
    #[cfg(not(all(target_arch = "arm", feature = "arm-dsp")))]
    for ((row, w), &b) in table
        .chunks_exact_mut(8)
        .zip(filter.chunks_exact(k))
        .zip(bias)
    {
        let mut acc = [b; 4];
        for (g, w) in cols.chunks_exact(8).zip(w.chunks_exact(4)) {
            let w = word(w);
            let (wa, wb) = (sxtb16(w), sxtb16_ror8(w));
            for (a, x) in acc.iter_mut().zip(g.chunks_exact(2)) {
                if let [xa, xb] = x {
                    *a = smlad(*xb, wb, smlad(*xa, wa, *a));
                }
            }
        }
        for (r, a) in row.iter_mut().zip(acc) {
            *r = a;
        }
    }
    Some(())
}

/// The output stage of four pixels from a stride-8 [`ChannelTable`] (accumulators filled by
/// [`dot_4xn`]): channel `c` of pixel `l` goes to `out[l·channels + c]`. `None` unless `out`
/// holds four bytes per table row.
///
/// On a DSP-extension core one `asm!` loop of 43 instructions per channel (four outputs): one
/// `LDM` for the row, per output `SMLAL`, the sign correction (3), the shift, `SSAT`, `STRB`.
#[inline(always)]
fn requant_4xn(table: &[i32], out: &mut [i8]) -> Option<()> {
    let channels = table.len() / 8;
    if out.len() != 4 * channels {
        return None;
    }
    #[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
    if channels > 0 {
        let table = table.get(..8 * channels)?;
        let end = table.as_ptr_range().end;
        // SAFETY: `channels ≥ 1` iterations, each reading one whole table row (`LDM` of 8 words
        // on the word-aligned slice, until its end) and writing byte `c` of each pixel's
        // `channels` in `out` (`op + l·channels` for `l < 4`, `op` stepping over the first
        // pixel's: all inside `out`, checked above). The offsets and the end are kept in 16
        // bytes below the stack pointer, restored at the end. Flags are clobbered.
        unsafe {
            core::arch::asm!(
                "sub sp, sp, #16",
                "str r0, [sp, #0]",
                "str r1, [sp, #4]",
                "str r2, [sp, #8]",
                "str r3, [sp, #12]",
                "2:",
                "ldm {p}!, {{r0, r1, r2, r3, r4, r5, r8, r9}}",
                "mov {lo}, r5",
                "mov {hi}, r8",
                "smlal {lo}, {hi}, r1, r4",
                "and r1, r1, #0x80000000",
                "adds {lo}, {lo}, r1",
                "adc {hi}, {hi}, r1, asr #31",
                "asr {hi}, {hi}, r9",
                "ssat {hi}, #8, {hi}",
                "ldr {lo}, [sp, #0]",
                "strb {hi}, [{op}, {lo}]",
                "mov {lo}, r5",
                "mov {hi}, r8",
                "smlal {lo}, {hi}, r2, r4",
                "and r2, r2, #0x80000000",
                "adds {lo}, {lo}, r2",
                "adc {hi}, {hi}, r2, asr #31",
                "asr {hi}, {hi}, r9",
                "ssat {hi}, #8, {hi}",
                "ldr {lo}, [sp, #4]",
                "strb {hi}, [{op}, {lo}]",
                "mov {lo}, r5",
                "mov {hi}, r8",
                "smlal {lo}, {hi}, r3, r4",
                "and r3, r3, #0x80000000",
                "adds {lo}, {lo}, r3",
                "adc {hi}, {hi}, r3, asr #31",
                "asr {hi}, {hi}, r9",
                "ssat {hi}, #8, {hi}",
                "ldr {lo}, [sp, #8]",
                "strb {hi}, [{op}, {lo}]",
                "mov {lo}, r5",
                "mov {hi}, r8",
                "smlal {lo}, {hi}, r0, r4",
                "and r0, r0, #0x80000000",
                "adds {lo}, {lo}, r0",
                "adc {hi}, {hi}, r0, asr #31",
                "asr {hi}, {hi}, r9",
                "ssat {hi}, #8, {hi}",
                "strb {hi}, [{op}], #1",
                "ldr {lo}, [sp, #12]",
                "cmp {p}, {lo}",
                "bne 2b",
                "add sp, sp, #16",
                p = inout(reg) table.as_ptr() => _,
                op = inout(reg) out.as_mut_ptr() => _,
                lo = out(reg) _,
                hi = out(reg) _,
                inout("r0") channels => _,
                inout("r1") 2 * channels => _,
                inout("r2") 3 * channels => _,
                inout("r3") end => _,
                out("r4") _,
                out("r5") _,
                out("r8") _,
                out("r9") _,
            );
        }
        return Some(());
    }
    #[cfg(not(all(target_arch = "arm", feature = "arm-dsp")))]
    for (c, row) in table.chunks_exact(8).enumerate() {
        let (acc, stage) = row.split_at(4);
        for (l, &a) in acc.iter().enumerate() {
            *out.get_mut(l * channels + c)? = stage_row(stage, a);
        }
    }
    Some(())
}

/// Words of the one stack buffer [`conv2d_int8`] and a [`DepthwisePlan`] ([`Scratch`]) carve all
/// their scratch from (4 KB: for a convolution the columns of a receptive field of up to
/// `2·COL_WORDS` values, then the channel table and the padded filter when they fit).
const SCRATCH_WORDS: usize = 2 * COL_WORDS;

/// Most output channels [`conv2d_int8`] runs through [`dot_4xn`] or [`dot_2xn`] (more take the
/// per-channel path).
const ACC_CHANNELS: usize = 128;

/// Most filter taps [`DepthwisePlan`] handles.
const DW_MAX_TAPS: usize = 64;

/// The stack memory a [`DepthwisePlan`] lives in (`SCRATCH_WORDS` words, left uninitialised
/// until the plan writes what it uses). The caller owns it so that one plan serves every band of
/// an in-place op: the per-op preparation (start sums, widened weights, output stage table)
/// then runs once, not once per band.
pub struct Scratch([MaybeUninit<u32>; SCRATCH_WORDS]);

impl Scratch {
    /// Uninitialised scratch (free: nothing is written).
    #[inline(always)]
    pub fn new() -> Self {
        Scratch([MaybeUninit::uninit(); SCRATCH_WORDS])
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

/// A DSP-extension DEPTHWISE_CONV_2D prepared once per op (depth multiplier 1, channels a
/// multiple of 4, the fast output stage of [`ChannelTable`], everything below fitting in one
/// [`Scratch`]: 64 channels of a 3×3 filter take 697 of its 1024 words), then run on any number
/// of inputs or bands of rows ([`DepthwisePlan::run`]).
///
/// The input offset is folded into each channel's starting sum (`bias + offset·Σ w`, CMSIS-NN's
/// "kernel sum"), so the taps multiply raw int8 values; a tap outside the input reads a row of
/// the input zero point, whose offset-corrected value is 0, exactly the reference's padding. The
/// weights are widened to 16-bit pairs once, laid out channel group by channel group so that
/// [`dw_pixel`] reads them sequentially with the accumulators of four channels in registers.
pub struct DepthwisePlan<'a> {
    p: DepthwiseParams,
    c: usize,
    f_h: usize,
    f_w: usize,
    /// `bias + offset·Σ_taps w` per channel (wrapping, as the int32 accumulator).
    start: &'a [i32],
    /// Per group of four channels, per tap: `(w0, w2), (w1, w3)` as 16-bit pairs.
    weights: &'a [u32],
    /// The output stage rows (`[m, constant lo, constant hi, r − 1]`, see [`ChannelTable`]).
    table: &'a [i32],
    /// `c` bytes of the input zero point: the padding row.
    pad_row: &'a [i8],
    /// A pixel's tap offsets from the start of the input (the padding row's distance for
    /// outside taps).
    offs: &'a mut [u32],
}

impl<'a> DepthwisePlan<'a> {
    /// Prepares the op in `scratch`; `None` when the kernel does not apply (the caller then runs
    /// the reference kernel). `filter_shape` is `[1, f_h, f_w, channels]`.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    pub fn new(
        scratch: &'a mut Scratch,
        p: &DepthwiseParams,
        filter_shape: [usize; 4],
        filter: &[i8],
        bias: Option<&[i32]>,
        multipliers: &[i32],
        shifts: &[i32],
    ) -> Option<Self> {
        let [_, f_h, f_w, c] = filter_shape;
        let taps = f_h.checked_mul(f_w)?;
        if p.depth_multiplier != 1 || c % 4 != 0 || c == 0 || taps == 0 || taps > DW_MAX_TAPS {
            return None;
        }
        if filter.len() != taps.checked_mul(c)?
            || multipliers.len() != c
            || shifts.len() != c
            || bias.is_some_and(|b| b.len() != c)
        {
            return None;
        }
        // The padding value: the input zero point (`-input_offset`) as int8.
        let zero_point = i8::try_from(p.input_offset.checked_neg()?).ok()?;
        // `[start | weights | table | padding row | offsets]`: `c + taps·c/2 + 4·c + c/4 + taps`
        // words.
        let (start_buf, rest) = scratch.0.split_at_mut_checked(c)?;
        let (w_buf, rest) = rest.split_at_mut_checked(taps * c / 2)?;
        let (table_buf, rest) = rest.split_at_mut_checked(4 * c)?;
        let (pad_buf, rest) = rest.split_at_mut_checked(c / 4)?;
        let offs = zeroed(rest, taps)?;
        let act = (p.act_min, p.act_max);
        let buf = as_i32s(table_buf);
        let table = &*ChannelTable::fill(buf, 4, c, multipliers, shifts, p.output_offset, act)?;
        let start = zeroed(as_i32s(start_buf), c)?;
        for (s, b) in start.iter_mut().zip(bias.unwrap_or(&[])) {
            *s = *b;
        }
        // Group `g`, tap `t`: words `2·(g·taps + t)` and `+ 1`; each channel's start sum gains
        // `offset·w` for every tap on the way.
        let weights = zeroed(w_buf, taps * c / 2)?;
        let mut dst = weights.chunks_exact_mut(2);
        for (g, s4) in start.chunks_exact_mut(4).enumerate() {
            for t in 0..taps {
                let (Some([d0, d1]), Some(src)) = (dst.next(), filter.get(t * c + 4 * g..)) else {
                    return None;
                };
                let w = word(src);
                (*d0, *d1) = (sxtb16(w), sxtb16_ror8(w));
                for (j, s) in s4.iter_mut().enumerate() {
                    let wj = i32::from((w >> (8 * j)) as u8 as i8);
                    *s = s.wrapping_add(p.input_offset.wrapping_mul(wj));
                }
            }
        }
        let pad_row = zeroed(as_i8s(pad_buf), c)?;
        pad_row.fill(zero_point);
        Some(DepthwisePlan {
            p: *p,
            c,
            f_h,
            f_w,
            start,
            weights,
            table,
            pad_row,
            offs,
        })
    }

    /// Runs the op on `input` (NHWC `input_shape`) into `output` with the padding of `p` (the
    /// in-place drivers' bands change only that) and everything else of the plan's parameters.
    /// `None`, having written nothing, when the shapes do not fit the plan.
    #[inline(never)]
    pub fn run(
        &mut self,
        p: &DepthwiseParams,
        input_shape: [usize; 4],
        input: &[i8],
        output_shape: [usize; 4],
        output: &mut [i8],
    ) -> Option<()> {
        let [batches, in_h, in_w, in_c] = input_shape;
        let [out_b, out_h, out_w, out_c] = output_shape;
        let c = self.c;
        if in_c != c || out_c != c || out_b != batches {
            return None;
        }
        if input.len() != batches * in_h * in_w * c || output.len() != batches * out_h * out_w * c {
            return None;
        }
        let (f_h, f_w) = (self.f_h, self.f_w);
        let q = &self.p;
        let (stride_h, stride_w) = (q.stride_h as usize, q.stride_w as usize);
        let (dil_h, dil_w) = (q.dilation_h as usize, q.dilation_w as usize);
        // Where an outside tap reads: the padding row, as a distance from the input's start
        // (the assembly adds it to the input's address), or a marker (the portable loop).
        #[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
        let pad_off = (self.pad_row.as_ptr() as usize).wrapping_sub(input.as_ptr() as usize) as u32;
        #[cfg(not(all(target_arch = "arm", feature = "arm-dsp")))]
        let pad_off = PAD_TAP;
        let pad = self.pad_row;
        let in_batch = in_h * in_w * c;
        // (`max(1)`: shows the chunk size is not 0; `new` made `c ≥ 4`.)
        let mut out_px = output.chunks_exact_mut(c.max(1));
        for b in 0..batches {
            let input = input.get(b * in_batch..(b + 1) * in_batch)?;
            #[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
            let pad_off = pad_off.wrapping_sub((b * in_batch) as u32);
            for oy in 0..out_h {
                let y0 = (oy * stride_h) as isize - p.pad_h as isize;
                for ox in 0..out_w {
                    let x0 = (ox * stride_w) as isize - p.pad_w as isize;
                    let out = out_px.next()?;
                    let mut o = self.offs.iter_mut();
                    for fy in 0..f_h {
                        let iy = y0 + (fy * dil_h) as isize;
                        for fx in 0..f_w {
                            let ix = x0 + (fx * dil_w) as isize;
                            let inside =
                                iy >= 0 && ix >= 0 && (iy as usize) < in_h && (ix as usize) < in_w;
                            *o.next()? = if inside {
                                ((iy as usize * in_w + ix as usize) * c) as u32
                            } else {
                                pad_off
                            };
                        }
                    }
                    // SAFETY: every offset is an inside tap's or the padding row's (`pad_off`).
                    unsafe {
                        dw_pixel(
                            input,
                            self.offs,
                            pad,
                            self.weights,
                            self.start,
                            self.table,
                            out,
                        )?;
                    }
                }
            }
        }
        Some(())
    }
}

/// The tap offset of the portable [`dw_pixel`] that stands for the padding row.
#[cfg(not(all(target_arch = "arm", feature = "arm-dsp")))]
const PAD_TAP: u32 = u32::MAX;

/// One output pixel of a [`DepthwisePlan`]: for every group of four channels, the starting sums
/// plus the taps (`input[offs[t] + 4g ..]`, or the padding row), then the output stage.
/// `None` (nothing written) unless the buffers fit `out.len()` channels and `offs.len()` taps.
///
/// On a DSP-extension core one `asm!` block: per tap and four channels 10 instructions (the
/// accumulators stay in registers), per output 8.
///
/// # Safety
///
/// Every offset is either the padding row's (the portable `PAD_TAP`, or on a DSP-extension
/// core `pad`'s address minus `input`'s) or has `offs[t] + out.len() ≤ input.len()`:
/// [`DepthwisePlan::run`] computes them so, and the assembly reads there unchecked.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
unsafe fn dw_pixel(
    input: &[i8],
    offs: &[u32],
    pad: &[i8],
    weights: &[u32],
    start: &[i32],
    table: &[i32],
    out: &mut [i8],
) -> Option<()> {
    let (c, taps) = (out.len(), offs.len());
    let groups = c / 4;
    if groups == 0
        || taps == 0
        || c % 4 != 0
        || pad.len() != c
        || weights.len() != 2 * taps * groups
        || start.len() != c
        || table.len() != 4 * c
    {
        return None;
    }
    #[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
    {
        // The state is kept in 24 bytes below the stack pointer, restored at the end; flags
        // are clobbered. r4/r5: an even/odd pair, as `LDRD` needs in the Arm (A32) state.
        // SAFETY: `groups ≥ 1` outer and `taps ≥ 1` inner iterations (checked above). The inner
        // loop reads `offs` (`taps` words), the word at `input + offs[t] + 4g` (in the input or
        // the `c`-byte padding row: the caller's contract) and two words of `weights` (`LDRD`,
        // aligned, `2·taps·groups` in all); the outer one four words of `start` and four rows of
        // `table` (`LDM`, `c` and `4·c` words in all) and writes four bytes of `out` (`c`).
        unsafe {
            core::arch::asm!(
                "sub sp, sp, #24",
                "str r0, [sp, #0]",
                "str r1, [sp, #4]",
                "str r2, [sp, #8]",
                "str r3, [sp, #12]",
                "str r4, [sp, #16]",
                "str r5, [sp, #20]",
                "1:",
                "ldr {n}, [sp, #0]",
                "ldm {n}!, {{r0, r1, r2, r3}}",
                "str {n}, [sp, #0]",
                "ldr {op}, [sp, #4]",
                "ldr {n}, [sp, #16]",
                "2:",
                "ldr r8, [{op}], #4",
                "ldr r8, [{xb}, r8]",
                "ldrd r4, r5, [{wp}], #8",
                "sxtb16 r9, r8",
                "sxtb16 r8, r8, ror #8",
                "smlabb r0, r9, r4, r0",
                "smlatt r2, r9, r4, r2",
                "smlabb r1, r8, r5, r1",
                "smlatt r3, r8, r5, r3",
                "subs {n}, {n}, #1",
                "bne 2b",
                "ldr {n}, [sp, #8]",
                "ldr {op}, [sp, #12]",
                "ldm {n}!, {{r4, r5, r8, r9}}",
                "smlal r5, r8, r0, r4",
                "and r0, r0, #0x80000000",
                "adds r5, r5, r0",
                "adc r8, r8, r0, asr #31",
                "asr r8, r8, r9",
                "ssat r8, #8, r8",
                "strb r8, [{op}], #1",
                "ldm {n}!, {{r4, r5, r8, r9}}",
                "smlal r5, r8, r1, r4",
                "and r1, r1, #0x80000000",
                "adds r5, r5, r1",
                "adc r8, r8, r1, asr #31",
                "asr r8, r8, r9",
                "ssat r8, #8, r8",
                "strb r8, [{op}], #1",
                "ldm {n}!, {{r4, r5, r8, r9}}",
                "smlal r5, r8, r2, r4",
                "and r2, r2, #0x80000000",
                "adds r5, r5, r2",
                "adc r8, r8, r2, asr #31",
                "asr r8, r8, r9",
                "ssat r8, #8, r8",
                "strb r8, [{op}], #1",
                "ldm {n}!, {{r4, r5, r8, r9}}",
                "smlal r5, r8, r3, r4",
                "and r3, r3, #0x80000000",
                "adds r5, r5, r3",
                "adc r8, r8, r3, asr #31",
                "asr r8, r8, r9",
                "ssat r8, #8, r8",
                "strb r8, [{op}], #1",
                "str {n}, [sp, #8]",
                "str {op}, [sp, #12]",
                "add {xb}, {xb}, #4",
                "ldr {n}, [sp, #20]",
                "subs {n}, {n}, #1",
                "str {n}, [sp, #20]",
                "bne 1b",
                "add sp, sp, #24",
                xb = inout(reg) input.as_ptr() => _,
                wp = inout(reg) weights.as_ptr() => _,
                op = out(reg) _,
                n = out(reg) _,
                inout("r0") start.as_ptr() => _,
                inout("r1") offs.as_ptr() => _,
                inout("r2") table.as_ptr() => _,
                inout("r3") out.as_mut_ptr() => _,
                inout("r4") taps => _,
                inout("r5") groups => _,
                out("r8") _,
                out("r9") _,
            );
        }
    }
    #[cfg(not(all(target_arch = "arm", feature = "arm-dsp")))]
    {
        let mut w = weights.chunks_exact(2);
        let mut rows = table.chunks_exact(4);
        for (g, (o, s)) in out
            .chunks_exact_mut(4)
            .zip(start.chunks_exact(4))
            .enumerate()
        {
            let mut acc = [0i32; 4];
            for (a, &s) in acc.iter_mut().zip(s) {
                *a = s;
            }
            for &t in offs {
                let x = if t == PAD_TAP {
                    pad.get(4 * g..4 * g + 4)?
                } else {
                    let at = t as usize + 4 * g;
                    input.get(at..at + 4)?
                };
                let (Some(&[wa, wb]), [x0, x1, x2, x3]) =
                    (w.next().and_then(|w| w.first_chunk()), x)
                else {
                    return None;
                };
                let lo = |v: u32| i32::from(v as u16 as i16);
                let hi = |v: u32| i32::from((v >> 16) as u16 as i16);
                let prod = [
                    i32::from(*x0) * lo(wa),
                    i32::from(*x1) * lo(wb),
                    i32::from(*x2) * hi(wa),
                    i32::from(*x3) * hi(wb),
                ];
                for (a, p) in acc.iter_mut().zip(prod) {
                    *a = a.wrapping_add(p);
                }
            }
            for (o, &a) in o.iter_mut().zip(&acc) {
                *o = stage_row(rows.next()?, a);
            }
        }
    }
    Some(())
}

/// The portable output stage of one accumulator with a 4-word [`ChannelTable`] row.
#[cfg(not(all(target_arch = "arm", feature = "arm-dsp")))]
fn stage_row(row: &[i32], x: i32) -> i8 {
    let &[m, lo, hi, shift] = row else {
        return 0;
    };
    let c = (i64::from(hi) << 32) | i64::from(lo as u32);
    let y = i64::from(x) * i64::from(m) + c + (i64::from(x >> 31) << 31);
    (((y >> 32) as i32) >> (shift & 31)).clamp(-128, 127) as i8
}

/// DSP-extension DEPTHWISE_CONV_2D: a [`DepthwisePlan`] made and run once. `None` when it does
/// not apply (the caller then runs the reference kernel). Shapes must already satisfy the
/// reference kernel's checks.
#[allow(clippy::too_many_arguments)]
pub fn depthwise_conv2d_int8(
    p: &DepthwiseParams,
    input_shape: [usize; 4],
    input: &[i8],
    filter_shape: [usize; 4],
    filter: &[i8],
    bias: Option<&[i32]>,
    multipliers: &[i32],
    shifts: &[i32],
    output_shape: [usize; 4],
    output: &mut [i8],
) -> Option<()> {
    let mut scratch = Scratch::new();
    DepthwisePlan::new(
        &mut scratch,
        p,
        filter_shape,
        filter,
        bias,
        multipliers,
        shifts,
    )?
    .run(p, input_shape, input, output_shape, output)
}

/// DSP-extension FULLY_CONNECTED for symmetric weights (`filter_offset == 0`) and at most
/// `2·COL_WORDS` inputs per batch; `None` when it does not apply. Lengths must already satisfy
/// the reference kernel's checks.
#[allow(clippy::too_many_arguments)]
pub fn fully_connected_int8(
    p: &FullyConnectedParams,
    batches: usize,
    in_features: usize,
    out_features: usize,
    input: &[i8],
    weights: &[i8],
    bias: Option<&[i32]>,
    multipliers: &[i32],
    shifts: &[i32],
    output: &mut [i8],
) -> Option<()> {
    if p.filter_offset != 0 || in_features == 0 || in_features > 2 * COL_WORDS || out_features == 0
    {
        return None;
    }
    if input.len() != batches * in_features
        || weights.len() != out_features * in_features
        || output.len() != batches * out_features
        || multipliers.is_empty()
    {
        return None;
    }
    let per_channel = multipliers.len() != 1;
    let q = Quant {
        bias,
        multipliers,
        shifts,
        output_offset: p.output_offset,
        act_min: p.act_min,
        act_max: p.act_max,
    };
    let channel = |c: usize| if per_channel { c } else { 0 };
    let full = in_features / 4 * 4;
    let t = in_features - full;
    let off2 = offset_pair(p.input_offset);
    // Only the words the rows use (`expand4` then writes every one of them).
    let mut col_buf = [MaybeUninit::<u32>::uninit(); COL_WORDS];
    let col = zeroed(&mut col_buf, full / 2)?;
    for (x, out) in input
        .chunks_exact(in_features.max(1))
        .zip(output.chunks_exact_mut(out_features.max(1)))
    {
        for (x, dst) in x.chunks_exact(4).zip(col.chunks_exact_mut(2)) {
            expand4(dst, word(x), off2);
        }
        let mut tail = [0i32; 3];
        for (d, &x) in tail.iter_mut().zip(&x[full..]) {
            *d = i32::from(x) + p.input_offset;
        }
        let tail = &tail[..t];
        if let Some(bias) = bias.filter(|_| t == 0) {
            if fc_fast(p, col, weights, bias, multipliers, shifts, out).is_some() {
                continue;
            }
        }
        // The general path (trailing values, no bias, an output stage outside `fc_fast`'s).
        let rows = weights.chunks_exact(in_features.max(1));
        for (c, (o, w)) in out.iter_mut().zip(rows).enumerate() {
            let (body, tw) = w.split_at_checked(full)?;
            let acc = dot_1x1(col, body).wrapping_add(tail_dot(tail, tw));
            *o = requant_fc(&q, c, channel(c), acc);
        }
    }
    Some(())
}

/// Outputs [`fully_connected_int8`] computes per block on its fast path (a stack buffer).
const FC_BLOCK: usize = 64;

/// The fast path of [`fully_connected_int8`] for one batch row whose rows have no trailing
/// values (`in_features % 4 == 0`, `col` its expanded input): accumulators (from the bias) a
/// block of outputs at a time, then the asm output stage ([`requant_uniform`] for a per-tensor
/// multiplier, [`requant_1xn`] per channel). `None`, having written nothing, when the output
/// stage is not eligible (see [`ChannelTable::fill`]).
#[allow(clippy::too_many_arguments)]
fn fc_fast(
    p: &FullyConnectedParams,
    col: &[u32],
    weights: &[i8],
    bias: &[i32],
    multipliers: &[i32],
    shifts: &[i32],
    out: &mut [i8],
) -> Option<()> {
    // Inputs per row; the `max(1)`s below only show the chunk sizes are never 0.
    let n = 2 * col.len();
    if n == 0 {
        return None;
    }
    let act = (p.act_min, p.act_max);
    let per_channel = multipliers.len() != 1;
    let mut uniform = [0i32; 4];
    if !per_channel {
        let mut buf = [MaybeUninit::uninit(); 4];
        let row = ChannelTable::fill(&mut buf, 4, 1, multipliers, shifts, p.output_offset, act)?;
        uniform.copy_from_slice(row);
    }
    let mut table_buf = [MaybeUninit::<i32>::uninit(); 4 * FC_BLOCK];
    let mut acc_buf = [MaybeUninit::<i32>::uninit(); FC_BLOCK];
    let blocks = out
        .chunks_mut(FC_BLOCK)
        .zip(weights.chunks(FC_BLOCK.saturating_mul(n).max(1)))
        .zip(bias.chunks(FC_BLOCK));
    for (b, ((out, w), bias)) in blocks.enumerate() {
        let m = out.len();
        let table = if per_channel {
            let (ms, ss) = (
                multipliers.get(b * FC_BLOCK..)?,
                shifts.get(b * FC_BLOCK..)?,
            );
            Some(&*ChannelTable::fill(
                &mut table_buf,
                4,
                m,
                ms,
                ss,
                p.output_offset,
                act,
            )?)
        } else {
            None
        };
        let acc = dot_rows(col, w, bias, acc_buf.get_mut(..m)?)?;
        match table {
            Some(table) => requant_1xn(table, acc, out)?,
            None => requant_uniform(uniform, acc, out)?,
        }
    }
    Some(())
}

/// `acc[r] = bias[r] + col·row r` for the rows of `weights` (each `2·col.len()` int8 values,
/// `col` expanded as for [`dot_1x1`]); returns `acc`, every element written. `None` (nothing
/// written) unless there are at least two rows, a row holds a multiple of 8 values, `weights`
/// starts word-aligned (so does every row; `LDRD` needs it) and holds a row per accumulator, and
/// `bias` a value per accumulator. Rows go by pairs ([`dot_pairs`]); an odd last row is done
/// again with the one before it.
#[inline(always)]
fn dot_rows<'a>(
    col: &[u32],
    weights: &[i8],
    bias: &[i32],
    acc: &'a mut [MaybeUninit<i32>],
) -> Option<&'a mut [i32]> {
    let n = 2 * col.len();
    let rows = acc.len();
    if n == 0
        || n % 8 != 0
        || rows < 2
        || weights.as_ptr() as usize % 4 != 0
        || weights.len() < rows.checked_mul(n)?
        || bias.len() < rows
    {
        return None;
    }
    dot_pairs(col, weights, bias, acc.get_mut(..rows / 2 * 2)?)?;
    if rows % 2 == 1 {
        let last = rows - 2;
        let w = weights.get(last * n..)?;
        dot_pairs(col, w, bias.get(last..)?, acc.get_mut(last..)?)?;
    }
    // SAFETY: the calls above wrote every accumulator (`dot_pairs` writes all it is given, and
    // they were given `..rows/2·2` and, for an odd count, `rows − 2..`), and `MaybeUninit<i32>`
    // has the layout of `i32`.
    Some(unsafe { &mut *(acc as *mut [MaybeUninit<i32>] as *mut [i32]) })
}

/// One step of [`dot_pairs`]'s loop (an `asm!` template piece): eight column values (`{cp}`,
/// 16-bit pairs in r0–r3) times eight weights of each of two rows (`{p0}`, `{p1}`; `LDRD`,
/// widened by `SXTB16`), into the accumulators `{a0}` and `{a1}`.
#[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
macro_rules! pairs_step {
    () => {
        concat!(
            "ldm {cp}!, {{r0, r1, r2, r3}}\n",
            "ldrd r4, r5, [{p0}], #8\n",
            "sxtb16 {t}, r4\n",
            "sxtb16 r4, r4, ror #8\n",
            "smlad {a0}, r0, {t}, {a0}\n",
            "smlad {a0}, r1, r4, {a0}\n",
            "sxtb16 {t}, r5\n",
            "sxtb16 r5, r5, ror #8\n",
            "smlad {a0}, r2, {t}, {a0}\n",
            "smlad {a0}, r3, r5, {a0}\n",
            "ldrd r4, r5, [{p1}], #8\n",
            "sxtb16 {t}, r4\n",
            "sxtb16 r4, r4, ror #8\n",
            "smlad {a1}, r0, {t}, {a1}\n",
            "smlad {a1}, r1, r4, {a1}\n",
            "sxtb16 {t}, r5\n",
            "sxtb16 r5, r5, ror #8\n",
            "smlad {a1}, r2, {t}, {a1}\n",
            "smlad {a1}, r3, r5, {a1}\n",
        )
    };
}

/// [`dot_rows`] for an even number of accumulators (pairs of rows, checked by it: `n = 2·col.len()`
/// a multiple of 8, `weights` word-aligned with `acc.len()` rows, `bias` as many values); writes
/// every accumulator or returns `None`, having written nothing.
///
/// On a DSP-extension core one `asm!` block over all pairs: per 8 values of a pair 19
/// instructions (one `LDM` of the column's two groups shared by both rows, an `LDRD`, two
/// `SXTB16` and four `SMLAD`s per row; the loop runs four such steps), per pair about 22 more.
/// Out of line: [`dot_rows`] calls it twice for an odd number of rows.
#[inline(never)]
fn dot_pairs(
    col: &[u32],
    weights: &[i8],
    bias: &[i32],
    acc: &mut [MaybeUninit<i32>],
) -> Option<()> {
    let n = 2 * col.len();
    let rows = acc.len();
    if n == 0
        || n % 8 != 0
        || rows % 2 != 0
        || weights.as_ptr() as usize % 4 != 0
        || weights.len() < rows.checked_mul(n)?
        || bias.len() < rows
    {
        return None;
    }
    #[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
    if rows > 0 {
        let range = acc.as_mut_ptr_range();
        let p0 = weights.as_ptr();
        // The state is kept in 32 bytes below the stack pointer, restored at the end; flags are
        // clobbered. r4/r5: an even/odd pair, as `LDRD` needs in the Arm (A32) state.
        // SAFETY: `rows/2 ≥ 1` outer iterations, each reading two biases (`rows ≤ bias.len()`),
        // the `n/2` words of `col` (`LDM`, word-aligned, until its end) and the `n` bytes of two
        // rows (`LDRD`, word-aligned: `weights` is, `n` is a multiple of 8; `rows·n` bytes in
        // all), and writing two accumulators (`rows` of them, until the end of `acc`).
        unsafe {
            core::arch::asm!(
                "sub sp, sp, #32",
                "str r0, [sp, #0]",
                "add r0, r0, r5, lsl #1",
                "str r0, [sp, #4]",
                "str r1, [sp, #8]",
                "str r2, [sp, #12]",
                "str r3, [sp, #16]",
                "str r4, [sp, #20]",
                "str r5, [sp, #24]",
                "3:",
                "ldr {t}, [sp, #8]",
                "ldr {a0}, [{t}], #4",
                "ldr {a1}, [{t}], #4",
                "str {t}, [sp, #8]",
                "ldr {cp}, [sp, #0]",
                "ldr {t}, [sp, #20]",
                "cmp {t}, #0",
                "beq 2f",
                "cmp {t}, #2",
                "beq 42f",
                "bhi 43f",
                "b 41f",
                "2:",
                pairs_step!(),
                "43:",
                pairs_step!(),
                "42:",
                pairs_step!(),
                "41:",
                pairs_step!(),
                "ldr {t}, [sp, #4]",
                "cmp {cp}, {t}",
                "bne 2b",
                "ldr {t}, [sp, #12]",
                "str {a0}, [{t}], #4",
                "str {a1}, [{t}], #4",
                "str {t}, [sp, #12]",
                "mov {p0}, {p1}",
                "ldr {a0}, [sp, #24]",
                "add {p1}, {p1}, {a0}",
                "ldr {a0}, [sp, #16]",
                "cmp {t}, {a0}",
                "bne 3b",
                "add sp, sp, #32",
                p0 = inout(reg) p0 => _,
                p1 = inout(reg) p0.wrapping_add(n) => _,
                cp = out(reg) _,
                a0 = out(reg) _,
                a1 = out(reg) _,
                t = out(reg) _,
                inout("r0") col.as_ptr() => _,
                inout("r1") bias.as_ptr() => _,
                inout("r2") range.start => _,
                inout("r3") range.end => _,
                inout("r4") (n / 8) % 4 => _,
                inout("r5") n => _,
            );
        }
    }
    #[cfg(not(all(target_arch = "arm", feature = "arm-dsp")))]
    for ((a, w), &b) in acc.iter_mut().zip(weights.chunks_exact(n)).zip(bias) {
        a.write(dot_1x1(col, w).wrapping_add(b));
    }
    Some(())
}

/// [`requant_1xn`] with one stage row (`[m, constant lo, constant hi, r − 1]`, see
/// [`ChannelTable`]) for every output: `out[i]` from `acc[i]`. `None` unless both are as long.
///
/// On a DSP-extension core one `asm!` loop of 12 instructions per output, the stage in registers.
#[inline(always)]
fn requant_uniform(row: [i32; 4], acc: &[i32], out: &mut [i8]) -> Option<()> {
    if acc.len() != out.len() {
        return None;
    }
    #[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
    if !acc.is_empty() {
        let end = acc.as_ptr_range().end;
        let [m, clo, chi, shift] = row;
        // SAFETY: `acc.len() ≥ 1` iterations, each reading one accumulator (`LDR`, until the end
        // of `acc`) and writing one byte of `out` (as long). Flags are clobbered; no stack.
        unsafe {
            core::arch::asm!(
                "2:",
                "ldr {x}, [{ap}], #4",
                "mov {lo}, {clo}",
                "mov {hi}, {chi}",
                "smlal {lo}, {hi}, {x}, {m}",
                "and {x}, {x}, #0x80000000",
                "adds {lo}, {lo}, {x}",
                "adc {hi}, {hi}, {x}, asr #31",
                "asr {hi}, {hi}, {sh}",
                "ssat {hi}, #8, {hi}",
                "strb {hi}, [{op}], #1",
                "cmp {ap}, {end}",
                "bne 2b",
                ap = inout(reg) acc.as_ptr() => _,
                op = inout(reg) out.as_mut_ptr() => _,
                end = in(reg) end,
                m = in(reg) m,
                clo = in(reg) clo,
                chi = in(reg) chi,
                sh = in(reg) shift,
                x = out(reg) _,
                lo = out(reg) _,
                hi = out(reg) _,
                options(nostack),
            );
        }
        return Some(());
    }
    let [m, lo, hi, shift] = row;
    let c = (i64::from(hi) << 32) | i64::from(lo as u32);
    for (&x, o) in acc.iter().zip(out.iter_mut()) {
        let y = i64::from(x) * i64::from(m) + c + (i64::from(x >> 31) << 31);
        *o = (((y >> 32) as i32) >> (shift & 31)).clamp(-128, 127) as i8;
    }
    Some(())
}

/// FULLY_CONNECTED output stage: bias by output, multiplier by channel (or the single one).
#[inline(always)]
fn requant_fc(q: &Quant, out: usize, channel: usize, acc: i32) -> i8 {
    let acc = match q.bias.and_then(|b| b.get(out)) {
        Some(&b) => acc.wrapping_add(b),
        None => acc,
    };
    let m = q.multipliers.get(channel).copied().unwrap_or(0);
    let s = q.shifts.get(channel).copied().unwrap_or(0);
    requantize(acc, m, s, q.output_offset, q.act_min, q.act_max)
}

/// `multiply_by_quantized_multiplier(x, m, shift)` for a shift in `-31..=0` and `m ≥ 0` as one
/// 64-bit multiply-accumulate, a high word and a shift: [`RightShift`] for `shift ≤ -1`, and for
/// `shift == 0` (the larger ADD input's scale, multiplier ½) `⌊(x·2m + 2^31) / 2^32⌋ =
/// ⌊(x·m + 2^30) / 2^31⌋` (`|x·2m| < 2^63`).
#[derive(Clone, Copy)]
struct Scale {
    multiplier: i64,
    constant: i64,
    /// `-2^31` with a right shift (the `[x < 0]` correction), else 0.
    sign: i64,
    shift: u32,
}

impl Scale {
    /// The scale of (`multiplier`, `shift`), or `None` outside `m ≥ 0`, `-31 ≤ shift ≤ 0`.
    fn new(multiplier: i32, shift: i32) -> Option<Self> {
        if shift == 0 && multiplier >= 0 {
            return Some(Scale {
                multiplier: 2 * i64::from(multiplier),
                constant: 1 << 31,
                sign: 0,
                shift: 0,
            });
        }
        let f = RightShift::new(multiplier, shift)?;
        Some(Scale {
            multiplier: i64::from(multiplier),
            constant: f.constant,
            sign: -(1 << 31),
            shift: f.shift,
        })
    }

    #[inline(always)]
    fn apply(self, x: i32) -> i32 {
        let y = i64::from(x) * self.multiplier + self.constant + (i64::from(x >> 31) & self.sign);
        ((y >> 32) as i32) >> (self.shift & 31)
    }
}

/// DSP-extension int8 ADD of two equally shaped inputs (`arith::add_element` on every element:
/// TFLM's three rescalings, each as one [`Scale`]); `None` (nothing written) when the lengths
/// differ or a scale is outside [`Scale::new`]'s domain.
pub fn add_int8(
    p: &crate::ops::arith::ArithParams,
    input1: &[i8],
    input2: &[i8],
    output: &mut [i8],
) -> Option<()> {
    if input1.len() != output.len() || input2.len() != output.len() {
        return None;
    }
    let s1 = Scale::new(p.input1_multiplier, p.input1_shift)?;
    let s2 = Scale::new(p.input2_multiplier, p.input2_shift)?;
    let so = Scale::new(p.output_multiplier, p.output_shift)?;
    let ls = 1i32.wrapping_shl(p.left_shift as u32);
    let (o1, o2) = (p.input1_offset, p.input2_offset);
    let (off, lo, hi) = (p.output_offset, p.activation_min, p.activation_max);
    for ((&x, &y), o) in input1.iter().zip(input2).zip(output.iter_mut()) {
        let a = s1.apply(o1.wrapping_add(i32::from(x)).wrapping_mul(ls));
        let b = s2.apply(o2.wrapping_add(i32::from(y)).wrapping_mul(ls));
        *o = so
            .apply(a.wrapping_add(b))
            .wrapping_add(off)
            .max(lo)
            .min(hi) as i8;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::ops::conv::conv2d_int8 as conv_ref;
    use crate::ops::depthwise::depthwise_conv2d_int8 as dw_ref;
    use crate::ops::fully_connected::fully_connected_int8 as fc_ref;

    /// xorshift64*, deterministic.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn range(&mut self, lo: i64, hi: i64) -> i64 {
            lo + (self.next() % ((hi - lo + 1) as u64)) as i64
        }
        fn i8s(&mut self, n: usize, lo: i64, hi: i64) -> Vec<i8> {
            (0..n).map(|_| self.range(lo, hi) as i8).collect()
        }
        fn quant(&mut self, n: usize) -> (Vec<i32>, Vec<i32>) {
            let m = (0..n)
                .map(|_| self.range(1 << 30, i32::MAX as i64) as i32)
                .collect();
            let s = (0..n).map(|_| self.range(-12, 1) as i32).collect();
            (m, s)
        }
    }

    #[test]
    fn primitives_match_their_definitions() {
        let mut r = Rng(99);
        for _ in 0..10_000 {
            let (a, b) = (r.next() as u32, r.next() as u32);
            let acc = r.next() as i32;
            let lo = |x: u32| i32::from(x as u16 as i16);
            let hi = |x: u32| i32::from((x >> 16) as u16 as i16);
            let by = |x: u32, k: u32| i32::from((x >> (8 * k)) as u8 as i8);
            assert_eq!(
                smlad(a, b, acc),
                acc.wrapping_add(lo(a) * lo(b)).wrapping_add(hi(a) * hi(b))
            );
            assert_eq!(lo(sxtb16(a)), by(a, 0));
            assert_eq!(hi(sxtb16(a)), by(a, 2));
            assert_eq!(lo(sxtb16_ror8(a)), by(a, 1));
            assert_eq!(hi(sxtb16_ror8(a)), by(a, 3));
            let off = offset_pair(r.range(-127, 128) as i32);
            assert_eq!(lo(sxtab16(off, a)) as i16, (lo(off) + by(a, 0)) as i16);
            assert_eq!(hi(sxtab16_ror8(off, a)) as i16, (hi(off) + by(a, 3)) as i16);
        }
    }

    #[test]
    fn right_shift_matches_requantize() {
        use crate::quant::multiply_by_quantized_multiplier as mbqm;
        let mut r = Rng(0x5EED);
        let edges = [
            i32::MIN,
            i32::MIN + 1,
            -(1 << 30),
            -2,
            -1,
            0,
            1,
            2,
            1 << 30,
            i32::MAX,
        ];
        for shift in -31..=-1 {
            for &m in &[0, 1, 1 << 30, (1 << 30) + 1, i32::MAX - 1, i32::MAX] {
                let f = RightShift::new(m, shift).unwrap();
                for &x in &edges {
                    assert_eq!(f.apply(x), mbqm(x, m, shift), "x {x} m {m} shift {shift}");
                }
            }
            for _ in 0..20_000 {
                let m = r.range(0, i32::MAX as i64) as i32;
                let f = RightShift::new(m, shift).unwrap();
                // Small accumulators (where ties happen) and any i32.
                let x = if r.range(0, 1) == 0 {
                    r.range(-70_000, 70_000) as i32
                } else {
                    r.next() as i32
                };
                assert_eq!(f.apply(x), mbqm(x, m, shift), "x {x} m {m} shift {shift}");
            }
        }
        assert!(RightShift::new(1 << 30, 0).is_none());
        assert!(RightShift::new(-1, -3).is_none());
    }

    #[test]
    fn add_matches_reference() {
        use crate::ops::arith::{add_element, ArithParams};
        let mut r = Rng(0xADD);
        for case in 0..300 {
            let n = r.range(0, 40) as usize;
            let big = r.range(0, 1) == 1;
            let (m1, s1) = (
                r.range(1 << 30, i32::MAX as i64) as i32,
                -r.range(0, 3) as i32,
            );
            let (m2, s2) = (
                r.range(1 << 30, i32::MAX as i64) as i32,
                -r.range(0, 3) as i32,
            );
            let act_min = r.range(-128, 0) as i32;
            let p = ArithParams {
                input1_offset: r.range(-127, 128) as i32,
                input2_offset: r.range(-127, 128) as i32,
                output_offset: r.range(-128, 127) as i32,
                left_shift: if big { 20 } else { r.range(0, 20) as i32 },
                input1_multiplier: if case % 3 == 0 { 1 << 30 } else { m1 },
                input1_shift: if case % 3 == 0 { 0 } else { s1 },
                input2_multiplier: m2,
                input2_shift: s2,
                output_multiplier: r.range(1 << 30, i32::MAX as i64) as i32,
                output_shift: -r.range(0, 30) as i32,
                activation_min: act_min,
                activation_max: r.range(act_min as i64, 127) as i32,
            };
            let a = r.i8s(n, -128, 127);
            let b = r.i8s(n, -128, 127);
            let want: Vec<i8> = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| add_element(&p, x, y))
                .collect();
            let mut got = vec![0i8; n];
            add_int8(&p, &a, &b, &mut got).unwrap();
            assert_eq!(got, want, "case {case}: {p:?}");
        }
        // Extreme accumulators through one scale.
        for shift in -31..=0 {
            for &m in &[0, 1, 1 << 30, i32::MAX] {
                let f = Scale::new(m, shift).unwrap();
                for &x in &[
                    i32::MIN,
                    i32::MIN + 1,
                    -(1 << 30),
                    -1,
                    0,
                    1,
                    1 << 30,
                    i32::MAX,
                ] {
                    let want = crate::quant::multiply_by_quantized_multiplier(x, m, shift);
                    assert_eq!(f.apply(x), want, "x {x} m {m} shift {shift}");
                }
            }
        }
    }

    #[test]
    fn conv_matches_reference() {
        let mut r = Rng(0xC0FFEE);
        for case in 0..600 {
            let in_c = [1usize, 2, 3, 4, 8, 5, 12, 16, 20, 24, 32][r.range(0, 10) as usize];
            let out_c = r.range(1, 9) as usize;
            // Some cases with many channels, where the channel table or the padded filter no
            // longer fits next to the columns in the shared scratch buffer (`SCRATCH_WORDS`).
            let (in_c, out_c) = if case % 40 == 0 {
                (
                    [3usize, 32, 64][r.range(0, 2) as usize],
                    r.range(60, 128) as usize,
                )
            } else {
                (in_c, out_c)
            };
            let (f_h, f_w) = (r.range(1, 4) as usize, r.range(1, 4) as usize);
            let (in_h, in_w) = (r.range(1, 7) as usize, r.range(1, 7) as usize);
            let stride = r.range(1, 2) as u32;
            let dil = r.range(1, 2) as u32;
            let eff_h = (f_h - 1) * dil as usize + 1;
            let eff_w = (f_w - 1) * dil as usize + 1;
            let same = r.range(0, 1) == 1;
            let out_size = |i: usize, eff: usize| {
                if same {
                    i.div_ceil(stride as usize)
                } else {
                    (i + stride as usize).saturating_sub(eff) / stride as usize
                }
            };
            let (out_h, out_w) = (out_size(in_h, eff_h), out_size(in_w, eff_w));
            let pad = |o: usize, eff: usize, i: usize| {
                (((o as i64 - 1) * stride as i64 + eff as i64 - i as i64).max(0) / 2) as u32
            };
            let batches = r.range(1, 2) as usize;
            // Half the cases in the fast path's domain (full activation range, right shifts).
            let fast = r.range(0, 1) == 1;
            let act_min = if fast { -128 } else { r.range(-128, 0) as i32 };
            let act_max = if fast {
                127
            } else {
                r.range(act_min as i64, 127) as i32
            };
            let p = ConvParams {
                stride_h: stride,
                stride_w: stride,
                dilation_h: dil,
                dilation_w: dil,
                pad_h: pad(out_h, eff_h, in_h),
                pad_w: pad(out_w, eff_w, in_w),
                input_offset: r.range(-127, 128) as i32,
                output_offset: r.range(-128, 127) as i32,
                act_min,
                act_max,
                multipliers_offset: 0,
                shifts_offset: 0,
                channel_count: out_c as u32,
                layout: 0,
                packed_offset: 0,
                folded_bias_offset: 0,
            };
            let is = [batches, in_h, in_w, in_c];
            let fs = [out_c, f_h, f_w, in_c];
            let os = [batches, out_h, out_w, out_c];
            let input = r.i8s(is.iter().product(), -128, 127);
            let filter = r.i8s(fs.iter().product(), -127, 127);
            let bias: Vec<i32> = (0..out_c).map(|_| r.range(-30000, 30000) as i32).collect();
            let (m, mut s) = r.quant(out_c);
            if fast {
                s.iter_mut().for_each(|s| *s = -(*s).abs().max(1));
            }
            let bias = (fast || r.range(0, 1) == 1).then_some(&bias[..]);
            let n = os.iter().product();
            let (mut want, mut got) = (vec![0i8; n], vec![0i8; n]);
            conv_ref(&p, is, &input, fs, &filter, bias, &m, &s, os, &mut want).unwrap();
            conv2d_int8(&p, is, &input, fs, &filter, bias, &m, &s, os, &mut got).unwrap();
            assert_eq!(got, want, "case {case}: {p:?} {is:?} {fs:?}");
        }
    }

    #[test]
    fn depthwise_matches_reference() {
        let mut r = Rng(0xD3E7);
        let mut planned = 0;
        for case in 0..800 {
            let c = 4 * [1, 2, 3, 4, 16][r.range(0, 4) as usize];
            let (f_h, f_w) = (r.range(1, 3) as usize, r.range(1, 3) as usize);
            let (in_h, in_w) = (r.range(1, 7) as usize, r.range(1, 7) as usize);
            let stride = r.range(1, 2) as u32;
            let dil = r.range(1, 2) as usize;
            let (eff_h, eff_w) = ((f_h - 1) * dil + 1, (f_w - 1) * dil + 1);
            let pad_h = r.range(0, eff_h as i64 - 1) as u32;
            let pad_w = r.range(0, eff_w as i64 - 1) as u32;
            let out_h = (in_h + 2 * pad_h as usize).saturating_sub(eff_h) / stride as usize + 1;
            let out_w = (in_w + 2 * pad_w as usize).saturating_sub(eff_w) / stride as usize + 1;
            // Mostly in the plan's domain (full activation range, right shifts).
            let fast = r.range(0, 4) != 0;
            let act_min = if fast { -128 } else { r.range(-128, 0) as i32 };
            let p = DepthwiseParams {
                stride_h: stride,
                stride_w: stride,
                dilation_h: dil as u32,
                dilation_w: dil as u32,
                pad_h,
                pad_w,
                input_offset: r.range(-127, 128) as i32,
                output_offset: r.range(-128, 127) as i32,
                act_min,
                act_max: 127,
                multipliers_offset: 0,
                shifts_offset: 0,
                channel_count: c as u32,
                depth_multiplier: 1,
            };
            let batches = r.range(1, 2) as usize;
            let is = [batches, in_h, in_w, c];
            let fs = [1, f_h, f_w, c];
            let os = [batches, out_h, out_w, c];
            let input = r.i8s(is.iter().product(), -128, 127);
            let filter = r.i8s(fs.iter().product(), -127, 127);
            let bias: Vec<i32> = (0..c).map(|_| r.range(-3000, 3000) as i32).collect();
            let bias = (r.range(0, 3) != 0).then_some(&bias[..]);
            let (m, mut s) = r.quant(c);
            if fast || r.range(0, 1) == 1 {
                s.iter_mut().for_each(|s| *s = -(*s).abs().max(1));
            }
            let eligible = act_min == -128 && s.iter().all(|&s| s < 0);
            let n = os.iter().product();
            let (mut want, mut got) = (vec![0i8; n], vec![0i8; n]);
            dw_ref(&p, is, &input, fs, &filter, bias, &m, &s, os, &mut want).unwrap();
            let mut scratch = Scratch::new();
            let Some(mut plan) = DepthwisePlan::new(&mut scratch, &p, fs, &filter, bias, &m, &s)
            else {
                assert!(!eligible, "case {case}: no plan for {p:?} {fs:?}");
                continue;
            };
            planned += 1;
            plan.run(&p, is, &input, os, &mut got).unwrap();
            assert_eq!(got, want, "case {case}: {p:?} {is:?} {fs:?}");
            // The same plan over bands of output rows (as the in-place drivers run it): each
            // band reads only its input rows, with the padding still above it.
            let b_is = [1, in_h, in_w, c];
            let b_os = [1, out_h, out_w, c];
            let first_batch = &want[..out_h * out_w * c];
            let (s_, pad_) = (stride as usize, pad_h as usize);
            let mut got = vec![0i8; out_h * out_w * c];
            let mut oy0 = 0;
            while oy0 < out_h {
                let oy1 = (oy0 + r.range(1, 3) as usize).min(out_h);
                let first = (oy0 * s_).saturating_sub(pad_).min(in_h);
                let end = ((oy1 - 1) * s_ + eff_h)
                    .saturating_sub(pad_)
                    .min(in_h)
                    .max(first);
                let bp = DepthwiseParams {
                    pad_h: pad_.saturating_sub(oy0 * s_) as u32,
                    ..p
                };
                let row = in_w * c;
                let out_row = out_w * c;
                plan.run(
                    &bp,
                    [1, end - first, in_w, c],
                    &input[first * row..end * row],
                    [1, oy1 - oy0, out_w, c],
                    &mut got[oy0 * out_row..oy1 * out_row],
                )
                .unwrap();
                oy0 = oy1;
            }
            assert_eq!(
                got, first_batch,
                "case {case} in bands: {p:?} {b_is:?} {b_os:?}"
            );
        }
        assert!(planned > 400, "only {planned} cases ran the plan");
    }

    #[test]
    fn fully_connected_matches_reference() {
        let mut r = Rng(0xFC);
        for case in 0..300 {
            let batches = r.range(1, 3) as usize;
            // Some inputs up to the widest the kernel takes (`2·COL_WORDS`).
            let inf = if case % 8 == 0 {
                r.range(900, 2 * COL_WORDS as i64) as usize
            } else {
                r.range(1, 70) as usize
            };
            let outf = r.range(1, 11) as usize;
            let per_channel = r.range(0, 1) == 1;
            let count = if per_channel { outf } else { 1 };
            // Half the cases in the fast path's domain (full activation range, right shifts,
            // whole groups of four inputs); more outputs than one block of `FC_BLOCK`.
            let fast = r.range(0, 1) == 1;
            // Mostly multiples of 8 (the one-block row loop of `dot_rows`).
            let inf = match (fast, r.range(0, 3)) {
                (false, _) => inf,
                (true, 0) => inf.div_ceil(4) * 4,
                (true, _) => inf.div_ceil(8) * 8,
            };
            let outf = if fast && r.range(0, 3) == 0 {
                outf + FC_BLOCK
            } else {
                outf
            };
            let count = if per_channel { outf } else { count };
            let p = FullyConnectedParams {
                input_offset: r.range(-127, 128) as i32,
                filter_offset: 0,
                output_offset: r.range(-128, 127) as i32,
                act_min: -128,
                act_max: if fast { 127 } else { r.range(0, 127) as i32 },
                multipliers_offset: 0,
                shifts_offset: 0,
                channel_count: count as u32,
                layout: 0,
                packed_offset: 0,
                folded_bias_offset: 0,
            };
            let input = r.i8s(batches * inf, -128, 127);
            // Some weights not word-aligned (`dot_rows` then leaves them to the general path).
            let skew = usize::from(r.range(0, 5) == 0);
            let w_buf = r.i8s(outf * inf + skew, -127, 127);
            let w = &w_buf[skew..];
            let bias: Vec<i32> = (0..outf).map(|_| r.range(-3000, 3000) as i32).collect();
            let (m, mut s) = r.quant(count);
            if fast {
                s.iter_mut().for_each(|s| *s = -(*s).abs().max(1));
            }
            let n = batches * outf;
            let (mut want, mut got) = (vec![0i8; n], vec![0i8; n]);
            fc_ref(
                &p,
                batches,
                inf,
                outf,
                &input,
                w,
                Some(&bias),
                &m,
                &s,
                &mut want,
            )
            .unwrap();
            fully_connected_int8(
                &p,
                batches,
                inf,
                outf,
                &input,
                w,
                Some(&bias),
                &m,
                &s,
                &mut got,
            )
            .unwrap();
            assert_eq!(got, want, "case {case}: {p:?} {batches}x{inf}->{outf}");
        }
    }
}
