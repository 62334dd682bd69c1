//! x86 kernels: SSE4.1, AVX2 and AVX-512 VNNI.
//!
//! Matrix kernels read weights packed by [`super::pack_weights`] (16 outputs × 4 bytes per step):
//! - AVX-512 VNNI: one 64-byte step is one register; `vpdpbusd` multiplies it by four activation
//!   bytes broadcast to every lane (`x + 128`, unsigned) and adds the 4-byte dot products into 16
//!   accumulators, exactly (each product fits 16 bits, the sum wraps modulo 2³² like TFLM's).
//! - AVX2 / SSE4.1: 16 bytes of a step (4 outputs × 4 bytes) sign-extend to 16-bit lanes;
//!   `pmaddwd` with the four activations (repeated) gives two exact partial sums per output,
//!   added pairwise (`phaddd`) once per tile.
//!
//! The output stage is TFLM's `MultiplyByQuantizedMultiplier` on 32-bit lanes: the high
//! multiply `(a·m + 2³⁰) >> 31` from two `pmuldq` (even and odd lanes), and the rounding right
//! shift with per-lane shift counts (`vpsravd`); SSE4.1 has no per-lane shifts and requantizes
//! in scalar code.

// The AVX-512 intrinsics are stable since Rust 1.89 (the toolchain CI uses is newer); the
// workspace still declares 1.85 for everything else.
#![allow(clippy::incompatible_msrv)]

#[cfg(target_arch = "x86")]
use core::arch::x86::*;
#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;
use core::ptr;

use super::{DepthwiseJob, MatrixA, Requant, Tier, BLOCK_K, BLOCK_N};
use crate::ops::arith::ArithParams;

/// Bytes of one packed step of one block.
const STEP: usize = BLOCK_N * BLOCK_K;

/// Per-block output-stage parameters, padded to 16 lanes (lanes past `count` are zero).
struct BlockQuant {
    bias: [i32; 16],
    mult: [i32; 16],
    shift: [i32; 16],
}

impl BlockQuant {
    #[inline(always)]
    fn new(q: &Requant, c0: usize, n: usize) -> BlockQuant {
        let count = n.saturating_sub(c0).min(BLOCK_N);
        let mut b = BlockQuant {
            bias: [0; 16],
            mult: [0; 16],
            shift: [0; 16],
        };
        for j in 0..count {
            let (m, s) = q.quant(c0 + j);
            b.bias[j] = q.bias_of(c0 + j);
            b.mult[j] = m;
            b.shift[j] = s;
        }
        b
    }
}

/// Where a tile reads its rows: one pointer per row, and the reduction steps' offsets.
#[derive(Clone, Copy)]
struct Rows<const MR: usize> {
    ptr: [*const u8; MR],
    /// Offsets of the steps, or null for `4·s`.
    koff: *const u32,
    steps: usize,
}

impl<const MR: usize> Rows<MR> {
    /// Byte offset of reduction step `s` within a row: from the table when `TABLE` (then `koff`
    /// must not be null), else `4·s`.
    ///
    /// # Safety
    /// `s < steps`.
    #[inline(always)]
    unsafe fn offset<const TABLE: bool>(&self, s: usize) -> usize {
        if TABLE {
            // SAFETY: the table holds `steps` entries (guaranteed by the caller).
            unsafe { *self.koff.add(s) as usize }
        } else {
            s * BLOCK_K
        }
    }

    /// The 4 bytes at `off` in row `r`, as an `i32`.
    ///
    /// # Safety
    /// `r < MR`, `off` a step's [`Self::offset`], and the tile's rows checked against `A`
    /// (`check_gemm`).
    #[inline(always)]
    unsafe fn load_at(&self, r: usize, off: usize) -> i32 {
        // SAFETY: guaranteed by the caller (see above).
        unsafe { ptr::read_unaligned(self.ptr[r].add(off).cast::<i32>()) }
    }
}

/// The output side of a tile: where row `r`'s outputs start, and which outputs it holds.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut i8,
    stride: usize,
    n: usize,
    c0: usize,
}

/// Dispatches to the tier's matrix kernel.
///
/// # Safety
/// The CPU must run `tier`, and the operands must have passed `check_gemm` and `Requant::check_lengths`.
pub(super) unsafe fn gemm(
    tier: Tier,
    a: &MatrixA,
    packed: &[i8],
    n: usize,
    q: &Requant,
    out: &mut [i8],
    out_stride: usize,
) {
    let (w, o) = (packed.as_ptr(), out.as_mut_ptr());
    // SAFETY: the caller guarantees the tier and the bounds (see above).
    unsafe {
        match tier {
            Tier::Avx512Vnni => vnni::gemm(a, w, n, q, o, out_stride),
            Tier::Avx2 => avx2::gemm(a, w, n, q, o, out_stride),
            _ => sse41::gemm(a, w, n, q, o, out_stride),
        }
    }
}

/// Most taps a depthwise kernel keeps its expanded weights for (more run the reference kernel).
pub(super) const MAX_TAPS: usize = 32;

/// 16 bytes at `p`, or the first `n` of them (the rest zero) when `n < 16`.
///
/// # Safety
/// `p .. p + min(n, 16)` must be readable.
#[inline(always)]
unsafe fn load16(p: *const u8, n: usize) -> __m128i {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if n >= 16 {
            _mm_loadu_si128(p.cast())
        } else {
            let mut t = [0u8; 16];
            ptr::copy_nonoverlapping(p, t.as_mut_ptr(), n);
            _mm_loadu_si128(t.as_ptr().cast())
        }
    }
}

/// 8 bytes at `p` (in the low half), or the first `n` of them (the rest zero) when `n < 8`.
///
/// # Safety
/// `p .. p + min(n, 8)` must be readable.
#[inline(always)]
unsafe fn load8(p: *const u8, n: usize) -> __m128i {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if n >= 8 {
            _mm_loadl_epi64(p.cast())
        } else {
            let mut t = [0u8; 16];
            ptr::copy_nonoverlapping(p, t.as_mut_ptr(), n);
            _mm_loadu_si128(t.as_ptr().cast())
        }
    }
}

/// Stores the first `n ≤ 16` bytes of `v` at `p`.
///
/// # Safety
/// `p .. p + n` must be writable.
#[inline(always)]
unsafe fn store16(p: *mut i8, n: usize, v: __m128i) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if n >= 16 {
            _mm_storeu_si128(p.cast(), v);
        } else {
            let mut t = [0i8; 16];
            _mm_storeu_si128(t.as_mut_ptr().cast(), v);
            ptr::copy_nonoverlapping(t.as_ptr(), p, n);
        }
    }
}

/// Dispatches to the tier's depthwise kernel (AVX-512 machines run the AVX2 one).
///
/// # Safety
/// The CPU must run `tier`; `job` must have passed `DepthwiseJob::check` with `q`, `out` and
/// `out_stride`, and have at most [`MAX_TAPS`] taps.
pub(super) unsafe fn depthwise(
    tier: Tier,
    job: &DepthwiseJob,
    q: &Requant,
    out: &mut [i8],
    out_stride: usize,
) {
    let o = out.as_mut_ptr();
    // SAFETY: the caller guarantees the tier and the bounds (see above).
    unsafe {
        match tier {
            Tier::Avx512Vnni => vnni::depthwise(job, q, o, out_stride),
            Tier::Avx2 => avx2::depthwise(job, q, o, out_stride),
            _ => sse41::depthwise(job, q, o, out_stride),
        }
    }
}

/// Element-wise ADD/SUB on the tier's vectors; returns how many leading elements it computed
/// (the caller finishes the rest).
///
/// # Safety
/// The CPU must run `tier`; `x`, `y` readable and `out` writable for `n` elements (`out` may
/// equal `x` or `y`); `p` within `add_params_supported`.
pub(super) unsafe fn add_sub(
    tier: Tier,
    p: &ArithParams,
    subtract: bool,
    x: *const i8,
    y: *const i8,
    out: *mut i8,
    n: usize,
) -> usize {
    // SAFETY: guaranteed by the caller.
    unsafe {
        match tier {
            Tier::Avx512Vnni => vnni::add_sub(p, subtract, x, y, out, n),
            Tier::Avx2 => avx2::add_sub(p, subtract, x, y, out, n),
            _ => sse41::add_sub(p, subtract, x, y, out, n),
        }
    }
}

/// `dst[i] = src[i] ^ flip` for `n` bytes, with the tier's widest registers (the portable
/// loop compiles to 16-byte SSE2 moves, which bound the staging of convolution inputs).
///
/// # Safety
/// The CPU must run `tier`; `src` readable and `dst` writable for `n` bytes, not overlapping.
pub(super) unsafe fn copy_xor(tier: Tier, dst: *mut u8, src: *const u8, n: usize, flip: u8) {
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn avx512(dst: *mut u8, src: *const u8, n: usize, flip: u8) {
        let f = _mm512_set1_epi8(flip as i8);
        let mut i = 0;
        while i + 64 <= n {
            // SAFETY: bytes i .. i + 64 ≤ n of both (the caller's guarantee).
            unsafe {
                let v = _mm512_loadu_si512(src.add(i).cast());
                _mm512_storeu_si512(dst.add(i).cast(), _mm512_xor_si512(v, f));
            }
            i += 64;
        }
        if i < n {
            let k = (u64::MAX >> (64 - (n - i))) as __mmask64;
            // SAFETY: the mask limits both accesses to bytes i .. n.
            unsafe {
                let v = _mm512_maskz_loadu_epi8(k, src.add(i).cast());
                _mm512_mask_storeu_epi8(dst.add(i).cast(), k, _mm512_xor_si512(v, f));
            }
        }
    }
    #[target_feature(enable = "avx2")]
    unsafe fn avx2(dst: *mut u8, src: *const u8, n: usize, flip: u8) {
        let f = _mm256_set1_epi8(flip as i8);
        let mut i = 0;
        while i + 32 <= n {
            // SAFETY: bytes i .. i + 32 ≤ n of both (the caller's guarantee).
            unsafe {
                let v = _mm256_loadu_si256(src.add(i).cast());
                _mm256_storeu_si256(dst.add(i).cast(), _mm256_xor_si256(v, f));
            }
            i += 32;
        }
        for j in i..n {
            // SAFETY: j < n.
            unsafe { *dst.add(j) = *src.add(j) ^ flip };
        }
    }
    // SAFETY: the caller guarantees the tier and the bounds.
    unsafe {
        match tier {
            Tier::Avx512Vnni => avx512(dst, src, n, flip),
            Tier::Avx2 => avx2(dst, src, n, flip),
            _ => {
                for j in 0..n {
                    *dst.add(j) = *src.add(j) ^ flip;
                }
            }
        }
    }
}

/// `n` bytes of `byte` at `dst` (short fills, a staged row's padding, without a `memset` call).
///
/// # Safety
/// The CPU must run `tier`; `dst` writable for `n` bytes.
pub(super) unsafe fn fill(tier: Tier, dst: *mut u8, n: usize, byte: u8) {
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn avx512(dst: *mut u8, n: usize, byte: u8) {
        let v = _mm512_set1_epi8(byte as i8);
        let mut i = 0;
        while i + 64 <= n {
            // SAFETY: bytes i .. i + 64 ≤ n (the caller's guarantee).
            unsafe { _mm512_storeu_si512(dst.add(i).cast(), v) };
            i += 64;
        }
        if i < n {
            let k = (u64::MAX >> (64 - (n - i))) as __mmask64;
            // SAFETY: the mask limits the store to bytes i .. n.
            unsafe { _mm512_mask_storeu_epi8(dst.add(i).cast(), k, v) };
        }
    }
    // SAFETY: the caller guarantees the tier and the bounds.
    unsafe {
        match tier {
            Tier::Avx512Vnni => avx512(dst, n, byte),
            _ => ptr::write_bytes(dst, byte, n),
        }
    }
}

/// `left` bytes of `pad`, `n` bytes of `src` XOR `flip`, `right` bytes of `pad`, at `dst` (one
/// staged row with its padding; AVX-512 BW).
///
/// # Safety
/// The CPU must run AVX-512 F/BW; `src` readable for `n` bytes, `dst` writable for
/// `left + n + right`, not overlapping.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn padded_row(
    dst: *mut u8,
    [left, right]: [usize; 2],
    src: *const u8,
    n: usize,
    pad: u8,
    flip: u8,
) {
    let (p, f) = (_mm512_set1_epi8(pad as i8), _mm512_set1_epi8(flip as i8));
    /// The first `k < 64` bytes of a 64-byte register.
    #[inline(always)]
    fn mask(k: usize) -> __mmask64 {
        (u64::MAX >> (64 - k)) as __mmask64
    }
    // SAFETY: every access below stays in `dst .. dst + left + n + right` and `src .. src + n`
    // (the caller's guarantee): whole 64-byte chunks while they fit, the rest masked.
    unsafe {
        let mut d = dst;
        let mut i = 0;
        while i + 64 <= left {
            _mm512_storeu_si512(d.add(i).cast(), p);
            i += 64;
        }
        if i < left {
            _mm512_mask_storeu_epi8(d.add(i).cast(), mask(left - i), p);
        }
        d = d.add(left);
        let mut i = 0;
        while i + 64 <= n {
            let v = _mm512_loadu_si512(src.add(i).cast());
            _mm512_storeu_si512(d.add(i).cast(), _mm512_xor_si512(v, f));
            i += 64;
        }
        if i < n {
            let k = mask(n - i);
            let v = _mm512_maskz_loadu_epi8(k, src.add(i).cast());
            _mm512_mask_storeu_epi8(d.add(i).cast(), k, _mm512_xor_si512(v, f));
        }
        d = d.add(n);
        let mut i = 0;
        while i + 64 <= right {
            _mm512_storeu_si512(d.add(i).cast(), p);
            i += 64;
        }
        if i < right {
            _mm512_mask_storeu_epi8(d.add(i).cast(), mask(right - i), p);
        }
    }
}

/// `count` staged rows of `left + width + right` bytes from `dst` on: row `i` is
/// [`padded_row`] of `row(i)` (`width` source bytes), or all `pad` for `None`.
///
/// # Safety
/// The CPU must run AVX-512 F/BW; `dst` writable for `count · (left + width + right)` bytes;
/// every pointer `row` returns readable for `width` bytes, not overlapping `dst`'s.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn padded_rows(
    dst: *mut u8,
    count: usize,
    mut row: impl FnMut(usize) -> Option<*const u8>,
    [left, width, right]: [usize; 3],
    pad: u8,
    flip: u8,
) {
    let row_bytes = left + width + right;
    let mut d = dst;
    for i in 0..count {
        // SAFETY: row i's bytes `d .. d + row_bytes` are inside the caller's `dst` range; the
        // source as the caller guarantees.
        unsafe {
            match row(i) {
                Some(src) => padded_row(d, [left, right], src, width, pad, flip),
                None => padded_row(d, [row_bytes, 0], d, 0, pad, flip),
            }
            d = d.add(row_bytes);
        }
    }
}

/// The pooling sum compiled for the tier (see `super::pool_sum_body`).
///
/// # Safety
/// The CPU must run `tier`.
pub(super) unsafe fn pool_sum(tier: Tier, pixels: &[i8], acc: &mut [i32]) {
    #[target_feature(enable = "avx512f,avx512bw")]
    fn avx512(pixels: &[i8], acc: &mut [i32]) {
        super::pool_sum_body(pixels, acc)
    }
    #[target_feature(enable = "avx2")]
    fn avx2(pixels: &[i8], acc: &mut [i32]) {
        super::pool_sum_body(pixels, acc)
    }
    #[target_feature(enable = "sse4.1")]
    fn sse41(pixels: &[i8], acc: &mut [i32]) {
        super::pool_sum_body(pixels, acc)
    }
    // SAFETY: the caller guarantees the tier's features; the bodies are safe Rust.
    unsafe {
        match tier {
            Tier::Avx512Vnni => avx512(pixels, acc),
            Tier::Avx2 => avx2(pixels, acc),
            _ => sse41(pixels, acc),
        }
    }
}

/// The average pool's output stage compiled for the tier (see `super::pool_average_finish_body`).
///
/// # Safety
/// The CPU must run `tier`.
pub(super) unsafe fn pool_average_finish(
    tier: Tier,
    acc: &[i32],
    count: i32,
    lo: i32,
    hi: i32,
    out: &mut [i8],
) {
    #[target_feature(enable = "avx512f,avx512bw")]
    fn avx512(acc: &[i32], count: i32, lo: i32, hi: i32, out: &mut [i8]) {
        super::pool_average_finish_body(acc, count, lo, hi, out)
    }
    #[target_feature(enable = "avx2")]
    fn avx2(acc: &[i32], count: i32, lo: i32, hi: i32, out: &mut [i8]) {
        super::pool_average_finish_body(acc, count, lo, hi, out)
    }
    #[target_feature(enable = "sse4.1")]
    fn sse41(acc: &[i32], count: i32, lo: i32, hi: i32, out: &mut [i8]) {
        super::pool_average_finish_body(acc, count, lo, hi, out)
    }
    // SAFETY: the caller guarantees the tier's features; the bodies are safe Rust.
    unsafe {
        match tier {
            Tier::Avx512Vnni => avx512(acc, count, lo, hi, out),
            Tier::Avx2 => avx2(acc, count, lo, hi, out),
            _ => sse41(acc, count, lo, hi, out),
        }
    }
}

/// The pooling maximum compiled for the tier (see `super::pool_max_body`).
///
/// # Safety
/// The CPU must run `tier`.
pub(super) unsafe fn pool_max(tier: Tier, pixels: &[i8], acc: &mut [i8]) {
    #[target_feature(enable = "avx512f,avx512bw")]
    fn avx512(pixels: &[i8], acc: &mut [i8]) {
        super::pool_max_body(pixels, acc)
    }
    #[target_feature(enable = "avx2")]
    fn avx2(pixels: &[i8], acc: &mut [i8]) {
        super::pool_max_body(pixels, acc)
    }
    #[target_feature(enable = "sse4.1")]
    fn sse41(pixels: &[i8], acc: &mut [i8]) {
        super::pool_max_body(pixels, acc)
    }
    // SAFETY: the caller guarantees the tier's features; the bodies are safe Rust.
    unsafe {
        match tier {
            Tier::Avx512Vnni => avx512(pixels, acc),
            Tier::Avx2 => avx2(pixels, acc),
            _ => sse41(pixels, acc),
        }
    }
}

/// No per-block preparation (for tiers whose tiles build their output stages themselves).
#[inline(always)]
fn no_prep<const NB: usize>(_q: &Requant, _c0: usize, _n: usize, _fast: bool) {}

/// Rows × blocks tiling shared by the tiers: calls `$tile::<MR, NB>` over the whole matrix,
/// with what `$prep::<NB>` made once per group of blocks (shared by all its row tiles).
macro_rules! tile_loop {
    ($a:expr, $w:expr, $n:expr, $q:expr, $o:expr, $os:expr, $fast:expr, $tile:ident, $prep:ident,
     $list:tt) => {
        tile_loop!(@with { false }, $a, $w, $n, $q, $o, $os, $fast, $tile, $prep, $list)
    };
    // `$x`: `$tile`'s fourth generic argument (`FLOOR` for the AVX-512 VNNI tiles, unused by
    // the others), after `MR, NB, TABLE`.
    (@with $x:tt, $a:expr, $w:expr, $n:expr, $q:expr, $o:expr, $os:expr, $fast:expr,
     $tile:ident, $prep:ident, [$(($nb:literal, $mr:literal, [$($m:literal),*])),*]) => {{
        let a: &MatrixA = $a;
        let blocks = $n.div_ceil(BLOCK_N);
        let bstride = a.k_steps * STEP;
        let koff = a.k_offsets.map_or(ptr::null(), |k| k.as_ptr());
        let mut b = 0usize;
        while b < blocks {
            let left = blocks - b;
            $(
                if left >= $nb {
                    // What the tiles of these blocks share (their output stages), once.
                    let pre = $prep::<$nb>($q, b * BLOCK_N, $n, $fast);
                    // The rows' offsets, one division for the whole group rather than per tile.
                    let mut offsets = a.row_offsets(0);
                    let mut r = 0usize;
                    while r < a.rows {
                        let mr = (a.rows - r).min($mr);
                        let w = $w.add(b * bstride);
                        let out = Out { ptr: $o.add(r * $os), stride: $os, n: $n, c0: b * BLOCK_N };
                        match mr {
                            $($m => {
                                let mut ptrs = [ptr::null::<u8>(); $m];
                                for (p, off) in ptrs.iter_mut().zip(offsets.by_ref()) {
                                    // check_gemm: every row offset is inside `a.data`.
                                    *p = a.data.as_ptr().add(off);
                                }
                                let rows = Rows { ptr: ptrs, koff, steps: a.k_steps };
                                if koff.is_null() {
                                    $tile::<$m, $nb, false, $x>(&rows, w, bstride, $q, out, &pre);
                                } else {
                                    $tile::<$m, $nb, true, $x>(&rows, w, bstride, $q, out, &pre);
                                }
                            })*
                            _ => {}
                        }
                        r += mr;
                    }
                    b += $nb;
                    continue;
                }
            )*
        }
    }};
}

pub(super) mod vnni {
    use super::*;

    /// The output stage on 16 lanes.
    #[derive(Clone, Copy)]
    pub(in crate::simd) struct Stage {
        m: __m512i,
        m_odd: __m512i,
        left: __m512i,
        right: __m512i,
        mask: __m512i,
        half: __m512i,
        out_off: __m512i,
        lo: __m512i,
        hi: __m512i,
        /// Some lane shifts left (most layers' multipliers are below one: none does).
        any_left: bool,
        /// The clamp is int8's own range, which the saturating narrowing applies.
        full_range: bool,
        /// The call's accumulators are small enough for the short rounding (see [`fast_ok`]).
        fast: bool,
        /// Short rounding of even lanes `2i` (one per 64-bit lane): `2³¹ + round[2i] · 2³²`,
        /// with `round = 2^(e−1) + output_offset · 2^e` (see [`Stage::apply`]).
        rnd_even: __m512i,
        /// Short rounding of odd lanes `2i + 1`: `2³¹ + round[2i + 1] · 2³²`.
        rnd_odd: __m512i,
    }

    /// `vpermt2d` indices taking the high half of each 64-bit lane, alternately from the two
    /// sources: lane `2i` = high half of the first source's lane `i`, lane `2i + 1` = the
    /// second's.
    const PICK_HIGH: [i32; 16] = [1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31];

    /// Whether every output stage of a kernel call can round in one step: no left shift, every
    /// right shift `e ≥ 1`, and `|h| + 2^(e−1) + 128·2^e < 2³¹` for the bound on `|h|` (the high
    /// product of an accumulator) that `sum_bound` (on the sum of products) and the biases give.
    /// Then `RoundingDivideByPOT(h, e) + output_offset` is exactly
    /// `(h + 2^(e−1) + output_offset·2^e + (h >> 31)) >> e` in 32-bit arithmetic. Also
    /// `|acc| < 2³⁰`, which [`Stage::apply`] needs to compute it in 64-bit lanes.
    fn fast_ok(q: &Requant, sum_bound: u64) -> bool {
        let bias = q.bias.map_or(0u32, |b| {
            b.iter().fold(0u32, |m, v| m.max(v.unsigned_abs()))
        });
        // |acc| ≤ |bias| + sum_bound; |h| ≤ |acc| + 1.
        let h = u64::from(bias).saturating_add(sum_bound).saturating_add(1);
        let off = u64::from(q.output_offset.unsigned_abs());
        // The largest right shift decides (larger e, larger terms); every e must be ≥ 1.
        let (min_s, max_s) = q
            .shifts
            .iter()
            .fold((i32::MAX, i32::MIN), |(lo, hi), &s| (lo.min(s), hi.max(s)));
        let (e_max, e_min) = (-i64::from(min_s), -i64::from(max_s));
        // No shifts at all gives e_min > e_max: refused. `h < 2³⁰` (so |acc| < 2³⁰) lets the
        // quick rounding double the accumulator.
        (1..=e_max).contains(&e_min)
            && e_max <= 30
            && h < 1u64 << 30
            && h + (1u64 << (e_max - 1)) + (off << e_max) < 1u64 << 31
    }

    /// Whether a kernel call's output stages may leave out the short rounding's sign term
    /// (`FLOOR`, see [`Stage::short_c`]): the clamp's bottom is at or above the output offset.
    fn floor_ok(q: &Requant) -> bool {
        q.act_min >= q.output_offset
    }

    /// Lanes `c0 .. c0 + count` of a per-output array (one entry: every lane), zero elsewhere.
    ///
    /// # Safety
    /// `values` holds one entry, or at least `c0 + count` (`count ≤ 16`).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn lanes(values: &[i32], c0: usize, count: usize) -> __m512i {
        if values.len() == 1 {
            _mm512_set1_epi32(values[0])
        } else {
            // SAFETY: the mask limits the read to `count` entries from c0 (the caller's
            // guarantee); masked-off lanes are not accessed.
            unsafe {
                _mm512_maskz_loadu_epi32(((1u32 << count) - 1) as u16, values.as_ptr().add(c0))
            }
        }
    }

    impl Stage {
        /// The output stage of outputs `c0 .. c0 + count` and their start values.
        ///
        /// # Safety
        /// `q` has passed `Requant::check_lengths` for `n ≥ c0 + count` outputs, `count ≤ 16`.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
        pub(in crate::simd) unsafe fn new(
            q: &Requant,
            c0: usize,
            count: usize,
            fast: bool,
        ) -> (Stage, __m512i) {
            // SAFETY: the caller's guarantee (every array holds n or 1 entries).
            let (m, s, bias) = unsafe {
                (
                    lanes(q.multipliers, c0, count),
                    lanes(q.shifts, c0, count),
                    q.bias
                        .map_or(_mm512_setzero_si512(), |b| lanes(b, c0, count)),
                )
            };
            let zero = _mm512_setzero_si512();
            let one = _mm512_set1_epi32(1);
            let right = _mm512_max_epi32(_mm512_sub_epi32(zero, s), zero);
            let mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, right), one);
            let left = _mm512_max_epi32(s, zero);
            let out_off = _mm512_set1_epi32(q.output_offset);
            let any_left = _mm512_test_epi32_mask(left, left) != 0;
            // Lanes past `count` have e = 0: their rounding is garbage but never stored.
            let round = _mm512_add_epi32(
                _mm512_sllv_epi32(one, _mm512_sub_epi32(right, one)),
                _mm512_sllv_epi32(out_off, right),
            );
            let half_qword = _mm512_set1_epi64(1 << 31);
            let stage = Stage {
                rnd_even: _mm512_add_epi64(_mm512_slli_epi64::<32>(round), half_qword),
                rnd_odd: _mm512_add_epi64(
                    _mm512_and_si512(round, _mm512_set1_epi64(-1i64 << 32)),
                    half_qword,
                ),
                m,
                m_odd: _mm512_srli_epi64::<32>(m),
                left,
                right,
                mask,
                half: _mm512_srli_epi32::<1>(mask),
                out_off,
                lo: _mm512_set1_epi32(q.act_min),
                hi: _mm512_set1_epi32(q.act_max),
                any_left,
                full_range: q.act_min == -128 && q.act_max == 127,
                fast: fast && !any_left,
            };
            (stage, bias)
        }

        /// A stage for no outputs (lanes past a block's end).
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
        fn new_zero(q: &Requant) -> Stage {
            let zero = _mm512_setzero_si512();
            Stage {
                m: zero,
                m_odd: zero,
                left: zero,
                right: zero,
                mask: zero,
                half: zero,
                out_off: _mm512_set1_epi32(q.output_offset),
                lo: _mm512_set1_epi32(q.act_min),
                hi: _mm512_set1_epi32(q.act_max),
                any_left: false,
                full_range: q.act_min == -128 && q.act_max == 127,
                fast: true,
                rnd_even: zero,
                rnd_odd: zero,
            }
        }

        /// TFLM's output stage on 16 accumulators, as 16 bytes.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
        pub(in crate::simd) fn apply(&self, acc: __m512i) -> __m128i {
            self.apply_c::<false>(acc)
        }

        /// [`Stage::apply`]; `FLOOR` (for a clamp whose bottom is at or above the output
        /// offset only) with the short rounding's sign term left out ([`Stage::short_c`]).
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
        fn apply_c<const FLOOR: bool>(&self, acc: __m512i) -> __m128i {
            let r = if self.fast {
                self.short_c::<FLOOR>(acc)
            } else {
                self.rounded(acc)
            };
            if self.full_range {
                _mm512_cvtsepi32_epi8(r)
            } else {
                _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_max_epi32(r, self.lo), self.hi))
            }
        }

        /// The output stage's value before the clamp in the short rounding, which the stage
        /// must allow (`fast`).
        ///
        /// The short rounding is `(h + round + (h >> 31)) >> e` (see `fast_ok`), where
        /// h = ⌊(acc·m + 2³⁰) / 2³¹⌋ is the high product. With |acc| < 2³⁰ (`fast_ok`),
        /// `2·acc·m + 2³¹ + round·2³²` fits 64 bits and its high half is h + round: one
        /// multiply-add and a pick of high halves per lane. The sign term comes from `acc`:
        /// acc ≥ 0 gives h ≥ 0 (m ≥ 0), acc < 0 gives h ≤ 0, and when h = 0 the term changes
        /// nothing, since `round` is 2^(e−1) modulo 2^e (so ⌊(round − 1) / 2^e⌋ = ⌊round / 2^e⌋).
        ///
        /// `FLOOR` leaves out the sign term, for a clamp whose bottom is at
        /// or above the output offset (a fused ReLU; [`floor_ok`]): the term only changes
        /// results for h < 0, where both `RoundingDivideByPOT(h, e)` and `⌊(h + 2^(e−1)) /
        /// 2^e⌋` are ≤ 0 (e ≥ 1), so both results are at most the offset and the clamp raises
        /// them to its bottom alike.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
        fn short_c<const FLOOR: bool>(&self, acc: __m512i) -> __m512i {
            let x2 = _mm512_add_epi32(acc, acc);
            let pe = _mm512_add_epi64(_mm512_mul_epi32(x2, self.m), self.rnd_even);
            let po = _mm512_add_epi64(
                _mm512_mul_epi32(_mm512_shuffle_epi32::<0xF5>(x2), self.m_odd),
                self.rnd_odd,
            );
            // SAFETY: 16 lanes of a 16-element array.
            let pick = unsafe { _mm512_loadu_si512(PICK_HIGH.as_ptr().cast()) };
            let hr = _mm512_permutex2var_epi32(pe, pick, po);
            if FLOOR {
                _mm512_srav_epi32(hr, self.right)
            } else {
                _mm512_srav_epi32(
                    _mm512_add_epi32(hr, _mm512_srai_epi32::<31>(acc)),
                    self.right,
                )
            }
        }

        /// The output stage's value before the clamp, in the general rounding (TFLM's two
        /// steps, any shift).
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
        fn rounded(&self, acc: __m512i) -> __m512i {
            let x = if self.any_left {
                _mm512_sllv_epi32(acc, self.left)
            } else {
                acc
            };
            let rnd = _mm512_set1_epi64(1 << 30);
            let pe = _mm512_add_epi64(_mm512_mul_epi32(x, self.m), rnd);
            let po = _mm512_add_epi64(
                _mm512_mul_epi32(_mm512_srli_epi64::<32>(x), self.m_odd),
                rnd,
            );
            // Bits 31..62 of each 64-bit sum: low half for even lanes, high half for odd ones.
            let h = _mm512_mask_blend_epi32(
                0xAAAA,
                _mm512_srli_epi64::<31>(pe),
                _mm512_slli_epi64::<1>(po),
            );
            let shifted = _mm512_srav_epi32(h, self.right);
            let rem = _mm512_and_si512(h, self.mask);
            let thr = _mm512_sub_epi32(self.half, _mm512_srai_epi32::<31>(h));
            let up = _mm512_cmpgt_epi32_mask(rem, thr);
            let r = _mm512_mask_add_epi32(shifted, up, shifted, _mm512_set1_epi32(1));
            _mm512_add_epi32(r, self.out_off)
        }
    }

    /// The output stages and accumulator start values (biases) of `NB` consecutive blocks: the
    /// same for every row tile of those blocks, so built once per group rather than per tile.
    struct Prep<const NB: usize> {
        stages: [Stage; NB],
        bias: [__m512i; NB],
        /// The call's accumulators allow the short rounding (see [`fast_ok`]).
        fast: bool,
    }

    /// The [`Prep`] of the `NB` blocks from output `c0` (each holding at least one of the `n`
    /// outputs).
    ///
    /// # Safety
    /// `q` has passed `Requant::check_lengths` for `n` outputs, and `c0 + 16·(NB − 1) < n`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn prep<const NB: usize>(q: &Requant, c0: usize, n: usize, fast: bool) -> Prep<NB> {
        let mut p = Prep {
            stages: [Stage::new_zero(q); NB],
            bias: [_mm512_setzero_si512(); NB],
            fast,
        };
        // Only single blocks use it (several rebuild their stages per tile: cheaper than
        // copying them, measured).
        if NB == 1 {
            let count = n.saturating_sub(c0).min(BLOCK_N);
            // SAFETY: outputs c0 .. c0 + count ≤ n (the caller's guarantee).
            (p.stages[0], p.bias[0]) = unsafe { Stage::new(q, c0, count, fast) };
        }
        p
    }

    /// `MR` rows × `NB` blocks of 16 outputs.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile<const MR: usize, const NB: usize, const TABLE: bool, const FLOOR: bool>(
        a: &Rows<MR>,
        w: *const i8,
        bstride: usize,
        q: &Requant,
        o: Out,
        pre: &Prep<NB>,
    ) {
        let (c0, fast) = (o.c0, pre.fast);
        let mut acc = [[_mm512_setzero_si512(); NB]; MR];
        for j in 0..NB {
            let bias = if NB == 1 {
                pre.bias[j]
            } else {
                let c = c0 + j * BLOCK_N;
                let count = o.n.saturating_sub(c).min(BLOCK_N);
                // SAFETY: outputs c .. c + count ≤ n (the tile's blocks hold at least one).
                unsafe {
                    q.bias
                        .map_or(_mm512_setzero_si512(), |b| lanes(b, c, count))
                }
            };
            for row in acc.iter_mut() {
                row[j] = bias;
            }
        }
        for s in 0..a.steps {
            // SAFETY: s < steps.
            let off = unsafe { a.offset::<TABLE>(s) };
            let mut wv = [_mm512_setzero_si512(); NB];
            for (j, v) in wv.iter_mut().enumerate() {
                // SAFETY: block j of this tile, step s: inside the packed matrix (checked).
                *v = unsafe { _mm512_loadu_si512(w.add(j * bstride + s * STEP).cast()) };
            }
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: r < MR, s < steps, rows checked by the caller.
                let x4 = unsafe { a.load_at(r, off) };
                let x = _mm512_set1_epi32(x4);
                for j in 0..NB {
                    row[j] = _mm512_dpbusd_epi32(row[j], x, wv[j]);
                }
            }
        }
        for j in 0..NB {
            let c = c0 + j * BLOCK_N;
            let count = o.n.saturating_sub(c).min(BLOCK_N);
            // One block: a local copy of the prepared stage (the output stores, through raw
            // pointers, could alias the caller's). Several: rebuilt here, cheaper than copying
            // them all (measured).
            let stage = if NB == 1 {
                pre.stages[j]
            } else {
                // SAFETY: outputs c .. c + count ≤ n (the tile's blocks hold at least one).
                unsafe { Stage::new(q, c, count, fast) }.0
            };
            for (r, row) in acc.iter().enumerate() {
                let bytes = stage.apply_c::<FLOOR>(row[j]);
                // SAFETY: outputs c0 + 16j .. + count < n of row r (checked); the mask limits
                // the store to `count` bytes.
                unsafe {
                    let dst = o.ptr.add(r * o.stride + c0 + j * BLOCK_N);
                    if count == BLOCK_N {
                        _mm_storeu_si128(dst.cast(), bytes);
                    } else {
                        _mm_mask_storeu_epi8(dst, ((1u32 << count) - 1) as u16, bytes);
                    }
                }
            }
        }
    }

    /// The second accumulator's weights of a step pair: lane `2i` = step `s` of output `2i + 1`,
    /// lane `2i + 1` = step `s + 1` of output `2i` (indices into `[step s | step s + 1]`).
    const PAIR_SWAP: [u32; 16] = [1, 16, 3, 18, 5, 20, 7, 22, 9, 24, 11, 26, 13, 28, 15, 30];

    /// `MR` rows × one block of 16 outputs, two reduction steps per broadcast: 8 activation bytes
    /// (steps `s` and `s + 1`, adjacent in the row) go to every 64-bit lane, so even lanes see
    /// step `s` and odd lanes step `s + 1`. The first accumulator multiplies them by lane `j` =
    /// output `j` (step `s` for even `j`, `s + 1` for odd: one blend of the two steps' weights),
    /// the second by the other step of each output with neighbouring lanes swapped; so output
    /// `j`'s sum is lane `j` of the first plus lane `j ^ 1` of the second (one in-lane shuffle),
    /// and the first starts from the bias. Half the broadcasts of [`tile`] for layers with at
    /// most 16 outputs.
    ///
    /// # Safety
    /// As [`tile`] with `NB = 1`; moreover steps `2j` and `2j + 1` are 4 bytes apart in every row.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile_pairs<const MR: usize, const TABLE: bool, const PRE: bool, const FLOOR: bool>(
        a: &Rows<MR>,
        w: *const i8,
        o: Out,
        stage: &Stage,
        bias: __m512i,
    ) {
        let zero = _mm512_setzero_si512();
        let count = o.n.saturating_sub(o.c0).min(BLOCK_N);
        // A local copy: the output stores (raw pointers) could alias the caller's.
        let stage = *stage;
        let mut acc = [[bias, zero]; MR];
        // SAFETY: 16 lanes of a 16-element array.
        let swap_idx = unsafe { _mm512_loadu_si512(PAIR_SWAP.as_ptr().cast()) };
        // Whole pairs first, without a per-step test; then the odd last step, if any.
        let pairs = a.steps / 2;
        for p in 0..pairs {
            let s = 2 * p;
            // SAFETY: steps s and s + 1 < steps of the block: inside the packed matrix
            // (checked), or (`PRE`) registers s and s + 1 of the arranged pairs.
            let (wa, wb) = unsafe {
                (
                    _mm512_loadu_si512(w.add(s * STEP).cast()),
                    _mm512_loadu_si512(w.add((s + 1) * STEP).cast()),
                )
            };
            let (w0, w1) = if PRE {
                (wa, wb)
            } else {
                pair_of(wa, wb, swap_idx)
            };
            // SAFETY: s < steps.
            let off = unsafe { a.offset::<TABLE>(s) };
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: r < MR; steps s and s + 1 are the 8 bytes at `off` (the caller's
                // guarantee), inside the row (checked).
                let x8 = unsafe { ptr::read_unaligned(a.ptr[r].add(off).cast::<i64>()) };
                let x = _mm512_set1_epi64(x8);
                row[0] = _mm512_dpbusd_epi32(row[0], x, w0);
                row[1] = _mm512_dpbusd_epi32(row[1], x, w1);
            }
        }
        if a.steps % 2 == 1 {
            let s = a.steps - 1;
            let (w0, w1) = if PRE {
                // SAFETY: registers s and s + 1 of the arranged pairs (see `pair_weights`).
                unsafe {
                    (
                        _mm512_loadu_si512(w.add(s * STEP).cast()),
                        _mm512_loadu_si512(w.add((s + 1) * STEP).cast()),
                    )
                }
            } else {
                // SAFETY: step s < steps of the block: inside the packed matrix (checked).
                let wa = unsafe { _mm512_loadu_si512(w.add(s * STEP).cast()) };
                last_of(wa, swap_idx)
            };
            // SAFETY: s < steps.
            let off = unsafe { a.offset::<TABLE>(s) };
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: r < MR, step s inside the row (checked).
                let x4 = i64::from(unsafe { a.load_at(r, off) }) & 0xFFFF_FFFF;
                let x = _mm512_set1_epi64(x4);
                row[0] = _mm512_dpbusd_epi32(row[0], x, w0);
                row[1] = _mm512_dpbusd_epi32(row[1], x, w1);
            }
        }
        for (r, row) in acc.iter().enumerate() {
            // Lane j: output j's two partial sums (and its bias).
            let sums = _mm512_add_epi32(row[0], _mm512_shuffle_epi32::<0xB1>(row[1]));
            let bytes = stage.apply_c::<FLOOR>(sums);
            // SAFETY: outputs c0 .. c0 + count of row r (checked); the mask limits the store.
            unsafe {
                let dst = o.ptr.add(r * o.stride + o.c0);
                if count == BLOCK_N {
                    _mm_storeu_si128(dst.cast(), bytes);
                } else {
                    _mm_mask_storeu_epi8(dst, ((1u32 << count) - 1) as u16, bytes);
                }
            }
        }
    }

    /// [`tile_pairs`] with the signature `tile_loop!` calls (`NB` is always 1 here).
    ///
    /// # Safety
    /// As [`tile_pairs`].
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile_pairs_nb<
        const MR: usize,
        const NB: usize,
        const TABLE: bool,
        const FLOOR: bool,
    >(
        a: &Rows<MR>,
        w: *const i8,
        _bstride: usize,
        _q: &Requant,
        o: Out,
        pre: &Prep<NB>,
    ) {
        // SAFETY: the caller's guarantee (NB = 1: the one block's stage and bias).
        unsafe { tile_pairs::<MR, TABLE, false, FLOOR>(a, w, o, &pre.stages[0], pre.bias[0]) }
    }

    /// [`tile_pairs_nb`] over weights [`pair_weights`] arranged (`w` their first register).
    ///
    /// # Safety
    /// As [`tile_pairs`], with `w` holding the `2·⌈steps / 2⌉` arranged registers.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile_pairs_pre_nb<
        const MR: usize,
        const NB: usize,
        const TABLE: bool,
        const FLOOR: bool,
    >(
        a: &Rows<MR>,
        w: *const i8,
        _bstride: usize,
        _q: &Requant,
        o: Out,
        pre: &Prep<NB>,
    ) {
        // SAFETY: the caller's guarantee (NB = 1: the one block's stage and bias).
        unsafe { tile_pairs::<MR, TABLE, true, FLOOR>(a, w, o, &pre.stages[0], pre.bias[0]) }
    }

    /// The two weight registers [`tile_pairs`] multiplies a pair of steps by: the blend of the
    /// steps' weights `wa` (step `s`) and `wb` (step `s + 1`), and the swapped other step.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    fn pair_of(wa: __m512i, wb: __m512i, swap_idx: __m512i) -> (__m512i, __m512i) {
        (
            _mm512_mask_blend_epi32(0xAAAA, wa, wb),
            _mm512_permutex2var_epi32(wa, swap_idx, wb),
        )
    }

    /// [`pair_of`] for an odd last step `wa`: odd lanes see the (zero) bytes past it, so their
    /// weights are zero.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    fn last_of(wa: __m512i, swap_idx: __m512i) -> (__m512i, __m512i) {
        let zero = _mm512_setzero_si512();
        (
            _mm512_maskz_mov_epi32(0x5555, wa),
            _mm512_permutex2var_epi32(wa, swap_idx, zero),
        )
    }

    /// Most reduction steps whose pair registers [`gemm`] arranges once per call.
    const PAIR_STEPS: usize = 48;

    /// The weight registers of [`tile_pairs`] for one block of `steps ≤ PAIR_STEPS` steps
    /// (`w` its packed weights), arranged once per call rather than once per tile: registers
    /// `2p`, `2p + 1` are [`pair_of`] steps `2p`, `2p + 1`, and an odd last step's are
    /// [`last_of`] it.
    ///
    /// # Safety
    /// `w` holds `steps` packed steps of 64 bytes.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn pair_weights(w: *const i8, steps: usize, out: &mut [__m512i; PAIR_STEPS]) {
        // SAFETY: 16 lanes of a 16-element array.
        let swap_idx = unsafe { _mm512_loadu_si512(PAIR_SWAP.as_ptr().cast()) };
        // SAFETY (the loads): steps s < `steps` (the caller's guarantee).
        let load = |s: usize| unsafe { _mm512_loadu_si512(w.add(s * STEP).cast()) };
        let steps = steps.min(PAIR_STEPS);
        for (p, regs) in out.chunks_exact_mut(2).take(steps / 2).enumerate() {
            let (w0, w1) = pair_of(load(2 * p), load(2 * p + 1), swap_idx);
            regs[0] = w0;
            regs[1] = w1;
        }
        if steps % 2 == 1 {
            let (w0, w1) = last_of(load(steps - 1), swap_idx);
            // `steps` is odd and at most PAIR_STEPS (even): `steps - 1 + 1 < PAIR_STEPS`.
            if let Some(regs) = out.get_mut(steps - 1..steps + 1) {
                regs[0] = w0;
                regs[1] = w1;
            }
        }
    }

    /// Most reduction steps [`gemm_stationary`] keeps in registers.
    const STATIONARY_STEPS: usize = 12;

    /// The whole matrix for a short reduction of `KS` steps in runs of `SEG` adjacent ones
    /// (a filter row's bytes; all `KS` when the steps are the row's first `4·KS` bytes): block
    /// by block, the block's `KS` weight registers and its output stage stay in registers while
    /// every row streams past (per step one broadcast at a constant offset from its run's start
    /// and one `vpdpbusd`, then the output stage). Each row is an independent chain, so the
    /// out-of-order core overlaps rows; no per-tile setup, no weight reloads. For a 3-channel
    /// first layer (9 steps) and 1×1 convolutions of few channels, where row tiles spend more
    /// on setup and stages than on products.
    ///
    /// # Safety
    /// As [`gemm`], with `a.k_steps == KS` and `SEG` dividing `KS`, and [`runs_of`]`(a, SEG)`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn gemm_stationary<const KS: usize, const SEG: usize, const FLOOR: bool>(
        a: &MatrixA,
        w: *const i8,
        n: usize,
        q: &Requant,
        o: *mut i8,
        os: usize,
        fast: bool,
    ) {
        let runs = KS / SEG;
        // Where each run starts in a row (locals, kept in registers rather than re-read through
        // a pointer the output stores might alias).
        let mut starts = [0usize; STATIONARY_STEPS];
        if let Some(t) = a.k_offsets {
            for (g, v) in starts.iter_mut().take(runs).enumerate() {
                // `check_gemm`: the table holds `k_steps == KS` entries.
                *v = t.get(g * SEG).map_or(0, |&x| x as usize);
            }
        }
        let bstride = KS * STEP;
        let mut c0 = 0;
        while c0 < n {
            let count = (n - c0).min(BLOCK_N);
            // SAFETY: outputs c0 .. c0 + count ≤ n (the caller's guarantee).
            let (stage, bias) = unsafe { Stage::new(q, c0, count, fast) };
            let mut wv = [_mm512_setzero_si512(); KS];
            for (s, v) in wv.iter_mut().enumerate() {
                // SAFETY: step s of block c0 / 16: inside the packed matrix (checked).
                *v = unsafe {
                    _mm512_loadu_si512(w.add((c0 / BLOCK_N) * bstride + s * STEP).cast())
                };
            }
            let out = o.wrapping_add(c0);
            // SAFETY: as this function's (the rows, steps and outputs checked).
            unsafe {
                if stage.fast && stage.full_range && count == BLOCK_N {
                    stationary_rows::<KS, SEG, true, FLOOR>(
                        a, &starts, &wv, &stage, bias, out, os, count,
                    )
                } else {
                    stationary_rows::<KS, SEG, false, FLOOR>(
                        a, &starts, &wv, &stage, bias, out, os, count,
                    )
                }
            }
            c0 += BLOCK_N;
        }
    }

    /// The rows of one block of [`gemm_stationary`]; `PLAIN`: the short rounding, int8's own
    /// clamp and a whole block (no tests per row).
    ///
    /// # Safety
    /// As [`gemm_stationary`]; `out` is the block's first output of row 0, `count` its outputs.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn stationary_rows<
        const KS: usize,
        const SEG: usize,
        const PLAIN: bool,
        const FLOOR: bool,
    >(
        a: &MatrixA,
        starts: &[usize; STATIONARY_STEPS],
        wv: &[__m512i; KS],
        stage: &Stage,
        bias: __m512i,
        out: *mut i8,
        os: usize,
        count: usize,
    ) {
        let stage = *stage;
        let mut bases = a.row_offsets(0);
        let mut r = 0;
        // Four rows at a time, their chains interleaved; then the rest one by one.
        while r + 4 <= a.rows {
            let mut rows = [a.data.as_ptr(); 4];
            for p in rows.iter_mut() {
                // check_gemm: every row offset is inside `a.data`, and so is each of its steps.
                *p = p.wrapping_add(bases.next().unwrap_or(0));
            }
            // SAFETY: rows r .. r + 4 (the caller's guarantee).
            unsafe {
                stationary_group::<KS, SEG, PLAIN, FLOOR, 4>(
                    rows,
                    starts,
                    wv,
                    &stage,
                    bias,
                    out.add(r * os),
                    os,
                    count,
                )
            };
            r += 4;
        }
        while r < a.rows {
            let row = a.data.as_ptr().wrapping_add(bases.next().unwrap_or(0));
            // SAFETY: row r (the caller's guarantee).
            unsafe {
                stationary_group::<KS, SEG, PLAIN, FLOOR, 1>(
                    [row],
                    starts,
                    wv,
                    &stage,
                    bias,
                    out.add(r * os),
                    os,
                    count,
                )
            };
            r += 1;
        }
    }

    /// `R` rows of [`stationary_rows`], their reductions interleaved step by step.
    ///
    /// # Safety
    /// As [`stationary_rows`]: `rows` are checked rows of the operand, `out` row 0's first
    /// output of the block.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn stationary_group<
        const KS: usize,
        const SEG: usize,
        const PLAIN: bool,
        const FLOOR: bool,
        const R: usize,
    >(
        rows: [*const u8; R],
        starts: &[usize; STATIONARY_STEPS],
        wv: &[__m512i; KS],
        stage: &Stage,
        bias: __m512i,
        out: *mut i8,
        os: usize,
        count: usize,
    ) {
        // Two chains per row (even and odd steps), half as long.
        let mut acc = [[bias, _mm512_setzero_si512()]; R];
        for (g, &start) in starts.iter().enumerate().take(KS / SEG) {
            let runs = rows.map(|row| row.wrapping_add(start));
            for j in 0..SEG {
                let s = g * SEG + j;
                for (a, run) in acc.iter_mut().zip(runs) {
                    // SAFETY: step g·SEG + j of the row, at 4j from its run's start (checked).
                    let x4 = unsafe { ptr::read_unaligned(run.add(j * BLOCK_K).cast::<i32>()) };
                    a[s % 2] = _mm512_dpbusd_epi32(a[s % 2], _mm512_set1_epi32(x4), wv[s]);
                }
            }
        }
        let mask = ((1u32 << count) - 1) as u16;
        for (i, a) in acc
            .into_iter()
            .map(|a| _mm512_add_epi32(a[0], a[1]))
            .enumerate()
        {
            // SAFETY: outputs of the row in this block (checked); the mask limits the store.
            unsafe {
                let dst = out.add(i * os);
                if PLAIN {
                    _mm_storeu_si128(dst.cast(), _mm512_cvtsepi32_epi8(stage.short_c::<FLOOR>(a)));
                } else if count == BLOCK_N {
                    _mm_storeu_si128(dst.cast(), stage.apply_c::<FLOOR>(a));
                } else {
                    _mm_mask_storeu_epi8(dst, mask, stage.apply_c::<FLOOR>(a));
                }
            }
        }
    }

    /// Whether `a`'s steps come in runs of `seg` adjacent ones (`seg` divides `k_steps`).
    fn runs_of(a: &MatrixA, seg: usize) -> bool {
        a.k_offsets.is_none_or(|t| {
            t.chunks(seg.max(1))
                .all(|c| c.iter().enumerate().all(|(j, &o)| o == c[0] + 4 * j as u32))
        })
    }

    /// Whether consecutive reduction steps `2j`, `2j + 1` are adjacent in every row.
    fn steps_paired(a: &MatrixA) -> bool {
        a.k_offsets
            .is_none_or(|t| t.chunks(2).all(|c| c.len() == 1 || c[1] == c[0] + 4))
    }

    /// The whole matrix.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn gemm(
        a: &MatrixA,
        w: *const i8,
        n: usize,
        q: &Requant,
        o: *mut i8,
        os: usize,
    ) {
        // SAFETY: the caller's guarantees; `FLOOR` exactly when `floor_ok`.
        unsafe {
            if floor_ok(q) {
                gemm_in::<true>(a, w, n, q, o, os)
            } else {
                gemm_in::<false>(a, w, n, q, o, os)
            }
        }
    }

    /// [`gemm`] with output stages `FLOOR` ([`Stage::short_c`]).
    ///
    /// # Safety
    /// As [`gemm`]; `FLOOR` only when [`floor_ok`].
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn gemm_in<const FLOOR: bool>(
        a: &MatrixA,
        w: *const i8,
        n: usize,
        q: &Requant,
        o: *mut i8,
        os: usize,
    ) {
        // Σ x·w over the reduction: x ≤ 255 (unsigned bytes), |w| ≤ 128.
        let fast = fast_ok(q, (a.k_steps as u64) * 4 * 255 * 128);
        if a.rows == 1 {
            // One row (a fully-connected layer): wide tiles, so that more weight streams are
            // in flight per broadcast.
            // SAFETY: tiles stay inside the checked matrix (see `tile`).
            unsafe {
                tile_loop!(
                    @with { FLOOR },
                    a,
                    w,
                    n,
                    q,
                    o,
                    os,
                    fast,
                    tile,
                    prep,
                    [(8, 1, [1]), (4, 1, [1]), (2, 1, [1]), (1, 1, [1])]
                );
            }
            return;
        }
        if a.k_steps <= STATIONARY_STEPS {
            // The longest runs of adjacent steps that divide the reduction (a table-free operand
            // is one run).
            let ks = a.k_steps;
            let seg = (1..=ks)
                .rev()
                .find(|&d| ks % d == 0 && runs_of(a, d))
                .unwrap_or(1);
            macro_rules! stationary {
                ($(($k:literal, $s:literal)),*) => {
                    match (ks, seg) {
                        $(($k, $s) => {
                            // SAFETY: k_steps == KS in runs of SEG (SEG divides it; checked
                            // just above); the operands as for the tiles.
                            unsafe { gemm_stationary::<$k, $s, FLOOR>(a, w, n, q, o, os, fast) };
                            return;
                        })*
                        _ => {}
                    }
                };
            }
            stationary!(
                (1, 1),
                (2, 1),
                (2, 2),
                (3, 1),
                (3, 3),
                (4, 1),
                (4, 2),
                (4, 4),
                (5, 1),
                (5, 5),
                (6, 1),
                (6, 2),
                (6, 3),
                (6, 6),
                (7, 1),
                (7, 7),
                (8, 1),
                (8, 2),
                (8, 4),
                (8, 8),
                (9, 1),
                (9, 3),
                (9, 9),
                (10, 1),
                (10, 2),
                (10, 5),
                (10, 10),
                (11, 1),
                (11, 11),
                (12, 1),
                (12, 2),
                (12, 3),
                (12, 4),
                (12, 6),
                (12, 12)
            );
        }
        if n <= BLOCK_N && steps_paired(a) && a.k_steps <= PAIR_STEPS {
            // The pair registers arranged once (a 16-output layer's 8-row tiles otherwise
            // rearrange them per tile: a blend and a permute per pair).
            let mut pw = [_mm512_setzero_si512(); PAIR_STEPS];
            // SAFETY: the block's `k_steps` packed steps (checked).
            unsafe { pair_weights(w, a.k_steps, &mut pw) };
            let pw = pw.as_ptr().cast::<i8>();
            // SAFETY: the tiles stay inside the checked matrix; steps are paired (checked); the
            // weights are the `2·⌈k_steps / 2⌉ ≤ PAIR_STEPS` arranged registers (n ≤ 16: one
            // block, so `tile_loop!` never offsets `pw`).
            unsafe {
                tile_loop!(
                    @with { FLOOR },
                    a,
                    pw,
                    n,
                    q,
                    o,
                    os,
                    fast,
                    tile_pairs_pre_nb,
                    prep,
                    [(1, 8, [1, 2, 3, 4, 5, 6, 7, 8])]
                );
            }
            return;
        }
        if n <= BLOCK_N && steps_paired(a) {
            // SAFETY: the tiles stay inside the checked matrix; steps are paired (checked).
            unsafe {
                tile_loop!(
                    @with { FLOOR },
                    a,
                    w,
                    n,
                    q,
                    o,
                    os,
                    fast,
                    tile_pairs_nb,
                    prep,
                    // 8 rows: 9 was slower on the ResNet-8 16-channel chain (measured).
                    [(1, 8, [1, 2, 3, 4, 5, 6, 7, 8])]
                );
            }
            return;
        }
        if n <= BLOCK_N {
            // One block whose steps do not pair (a small-channel first layer: each filter
            // row's bytes padded to whole steps): 8-row tiles, whose row pointers stay in
            // registers (15 rows spill them every step; measured).
            // SAFETY: tiles stay inside the checked matrix (see `tile`).
            unsafe {
                tile_loop!(
                    @with { FLOOR },
                    a,
                    w,
                    n,
                    q,
                    o,
                    os,
                    fast,
                    tile,
                    prep,
                    [(1, 8, [1, 2, 3, 4, 5, 6, 7, 8])]
                );
            }
            return;
        }
        // SAFETY: tiles stay inside the checked matrix (see `tile`).
        unsafe {
            tile_loop!(
                @with { FLOOR },
                a,
                w,
                n,
                q,
                o,
                os,
                fast,
                tile,
                prep,
                [
                    (4, 4, [1, 2, 3, 4]),
                    (2, 8, [1, 2, 3, 4, 5, 6, 7, 8]),
                    // 15 rows: 15 accumulators, 15 broadcasts and the weights fill the 32
                    // registers without spilling an accumulator every step.
                    (1, 15, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])
                ]
            );
        }
    }

    /// How one ADD operand is rescaled: `((x + offset) << left) · m / 2³¹`, then divided by
    /// `2^e` (TFLM's `MultiplyByQuantizedMultiplierSmallerThanOneExp`), on 16 lanes.
    #[derive(Clone, Copy)]
    struct Operand {
        offset: __m512i,
        mode: OperandMode,
        /// `left − 1` (shift mode), or `31 − left` (split mode), as a shift count.
        count: __m128i,
        /// Multiplier (general), or its high part `m >> (31 − left)` (split).
        m: __m512i,
        /// Split mode: `m mod 2^(31 − left)` and the rounding `2^(30 − left)`.
        m_low: __m512i,
        round: __m512i,
        left: __m128i,
        e: __m128i,
        e_zero: bool,
        /// `2^(e−1)`: the one-step rounding, exact for the small operands of the shift and
        /// split modes (`|h| ≤ 2^28 + 1`, so `h + 2^(e−1) + (h >> 31)` cannot overflow).
        pot_round: __m512i,
        mask: __m512i,
        half: __m512i,
    }

    /// Cheaper exact forms of the high multiply for an operand `v = x + offset` in `[-256, 256]`.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum OperandMode {
        /// `m = 2³⁰` (TFLM's larger-scale input): the product is exactly `v << (left − 1)`.
        Shift,
        /// `9 ≤ left ≤ 22`: `v·m_high + ((v·m_low + 2^(30−left)) >> (31 − left))`, all in 32 bits.
        Split,
        /// Anything else: the 64-bit high multiply.
        General,
    }

    impl Operand {
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
        fn new(offset: i32, left: i32, m: i32, shift: i32) -> Operand {
            let small = (-128..=128).contains(&offset);
            let mode = if small && m == 1 << 30 && left >= 1 {
                OperandMode::Shift
            } else if small && (9..=22).contains(&left) {
                OperandMode::Split
            } else {
                OperandMode::General
            };
            let d = 31 - left;
            let (count, mm, m_low, round) = match mode {
                OperandMode::Shift => (left - 1, m, 0, 0),
                OperandMode::Split => (d, m >> d, m & ((1 << d) - 1), 1 << (d - 1)),
                OperandMode::General => (0, m, 0, 0),
            };
            let e = (-shift) as u32;
            let mask = ((1u64 << e) - 1) as i32;
            Operand {
                offset: _mm512_set1_epi32(offset),
                mode,
                count: _mm_cvtsi32_si128(count),
                m: _mm512_set1_epi32(mm),
                m_low: _mm512_set1_epi32(m_low),
                round: _mm512_set1_epi32(round),
                left: _mm_cvtsi32_si128(left),
                e: _mm_cvtsi32_si128(e as i32),
                e_zero: e == 0,
                pot_round: _mm512_set1_epi32(if e == 0 { 0 } else { 1 << (e - 1) }),
                mask: _mm512_set1_epi32(mask),
                half: _mm512_set1_epi32(mask >> 1),
            }
        }

        /// The rescaled operand of 16 inputs (already widened to 32 bits).
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
        fn apply(&self, x: __m512i) -> __m512i {
            let v = _mm512_add_epi32(x, self.offset);
            let h = match self.mode {
                OperandMode::Shift => _mm512_sll_epi32(v, self.count),
                OperandMode::Split => {
                    let low = _mm512_add_epi32(_mm512_mullo_epi32(v, self.m_low), self.round);
                    _mm512_add_epi32(
                        _mm512_mullo_epi32(v, self.m),
                        _mm512_sra_epi32(low, self.count),
                    )
                }
                OperandMode::General => high_mul_uniform(_mm512_sll_epi32(v, self.left), self.m),
            };
            if self.e_zero {
                h
            } else if self.mode != OperandMode::General {
                let sign = _mm512_srai_epi32::<31>(h);
                _mm512_sra_epi32(
                    _mm512_add_epi32(_mm512_add_epi32(h, self.pot_round), sign),
                    self.e,
                )
            } else {
                divide_pot_uniform(h, self.e, self.mask, self.half)
            }
        }
    }

    /// `(a·m + 2³⁰) >> 31` with one multiplier (≥ 0) for every lane.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    fn high_mul_uniform(a: __m512i, m: __m512i) -> __m512i {
        let rnd = _mm512_set1_epi64(1 << 30);
        let pe = _mm512_add_epi64(_mm512_mul_epi32(a, m), rnd);
        let po = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64::<32>(a), m), rnd);
        _mm512_mask_blend_epi32(
            0xAAAA,
            _mm512_srli_epi64::<31>(pe),
            _mm512_slli_epi64::<1>(po),
        )
    }

    /// TFLM's `RoundingDivideByPOT` by one exponent for every lane.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    fn divide_pot_uniform(h: __m512i, e: __m128i, mask: __m512i, half: __m512i) -> __m512i {
        let shifted = _mm512_sra_epi32(h, e);
        let rem = _mm512_and_si512(h, mask);
        let thr = _mm512_sub_epi32(half, _mm512_srai_epi32::<31>(h));
        let up = _mm512_cmpgt_epi32_mask(rem, thr);
        _mm512_mask_add_epi32(shifted, up, shifted, _mm512_set1_epi32(1))
    }

    /// ADD/SUB, 16 elements at a time; returns how many it computed.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn add_sub(
        p: &ArithParams,
        subtract: bool,
        x: *const i8,
        y: *const i8,
        out: *mut i8,
        n: usize,
    ) -> usize {
        let a_op = Operand::new(
            p.input1_offset,
            p.left_shift,
            p.input1_multiplier,
            p.input1_shift,
        );
        let b_op = Operand::new(
            p.input2_offset,
            p.left_shift,
            p.input2_multiplier,
            p.input2_shift,
        );
        let mo = _mm512_set1_epi32(p.output_multiplier);
        let eo = (-p.output_shift) as u32;
        let mask_o = ((1u64 << eo) - 1) as i32;
        let (e_o, mask_o, half_o) = (
            _mm_cvtsi32_si128(eo as i32),
            _mm512_set1_epi32(mask_o),
            _mm512_set1_epi32(mask_o >> 1),
        );
        let out_off = _mm512_set1_epi32(p.output_offset);
        let lo = _mm512_set1_epi32(p.activation_min);
        let hi = _mm512_set1_epi32(p.activation_max);
        // One-step output rounding with the offset folded in: both operands small (|s| ≤ 2^28 + 2,
        // so |h| ≤ 2^29 + 5) and `h + 2^(e−1) + |offset|·2^e` below 2^31.
        let small = a_op.mode != OperandMode::General && b_op.mode != OperandMode::General;
        let fast = small
            && (1..=30).contains(&eo)
            && (1u64 << 29)
                + 5
                + (1u64 << (eo - 1))
                + (u64::from(p.output_offset.unsigned_abs()) << eo)
                < 1u64 << 31;
        let round = if fast {
            (1i32 << (eo - 1)) + (p.output_offset << eo)
        } else {
            0
        };
        let round_o = _mm512_set1_epi32(round);
        let mut i = 0;
        if n >= TABLE_MIN && vbmi() {
            let out_stage = OutStage {
                mo,
                fast,
                // No overflow: |round| < 2³¹.
                rnd_qword: _mm512_set1_epi64((1i64 << 31) + (i64::from(round) << 32)),
                e_o,
                mask_o,
                half_o,
                out_off,
                output_offset: p.output_offset,
                lo: p.activation_min,
                hi: p.activation_max,
            };
            // SAFETY: the CPU runs AVX512-VBMI (just checked); the pointers as above.
            i = unsafe { add_sub_tables(&a_op, &b_op, &out_stage, subtract, x, y, out, n) };
        }
        while i + 16 <= n {
            // SAFETY: elements i .. i + 16 < n of each operand (the caller's guarantee).
            let (a, b) = unsafe {
                (
                    _mm512_cvtepi8_epi32(_mm_loadu_si128(x.add(i).cast())),
                    _mm512_cvtepi8_epi32(_mm_loadu_si128(y.add(i).cast())),
                )
            };
            let (a, b) = (a_op.apply(a), b_op.apply(b));
            let raw = if subtract {
                _mm512_sub_epi32(a, b)
            } else {
                _mm512_add_epi32(a, b)
            };
            let h = high_mul_uniform(raw, mo);
            let v = if fast {
                let sign = _mm512_srai_epi32::<31>(h);
                _mm512_sra_epi32(_mm512_add_epi32(_mm512_add_epi32(h, round_o), sign), e_o)
            } else {
                _mm512_add_epi32(divide_pot_uniform(h, e_o, mask_o, half_o), out_off)
            };
            let v = _mm512_min_epi32(_mm512_max_epi32(v, lo), hi);
            // SAFETY: elements i .. i + 16 < n of the output.
            unsafe { _mm_storeu_si128(out.add(i).cast(), _mm512_cvtepi32_epi8(v)) };
            i += 16;
        }
        i
    }

    /// Shortest ADD/SUB the table path takes (building the tables costs about as much as a few
    /// hundred elements of the direct path saves).
    const TABLE_MIN: usize = 256;

    /// Whether the CPU runs AVX512-VBMI (`vpermi2b`), which the table path of [`add_sub`] needs
    /// on top of the tier's features: detected at run time with `std`, else compile time.
    #[inline]
    fn vbmi() -> bool {
        #[cfg(any(feature = "std", test))]
        {
            super::super::std::is_x86_feature_detected!("avx512vbmi")
        }
        #[cfg(not(any(feature = "std", test)))]
        {
            cfg!(target_feature = "avx512vbmi")
        }
    }

    /// The output side of an ADD/SUB: `raw → requantized` on 16 lanes (as [`add_sub`]'s loop).
    struct OutStage {
        mo: __m512i,
        fast: bool,
        /// `2³¹ + round_o·2³²` in every 64-bit lane (the short rounding's constant).
        rnd_qword: __m512i,
        e_o: __m128i,
        mask_o: __m512i,
        half_o: __m512i,
        out_off: __m512i,
        /// The output offset (as `out_off`'s lanes).
        output_offset: i32,
        lo: i32,
        hi: i32,
    }

    impl OutStage {
        /// The requantized sums, before the clamp (which the caller applies after narrowing).
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
        fn apply(&self, raw: __m512i) -> __m512i {
            if self.fast {
                self.short(raw)
            } else {
                let h = high_mul_uniform(raw, self.mo);
                _mm512_add_epi32(
                    divide_pot_uniform(h, self.e_o, self.mask_o, self.half_o),
                    self.out_off,
                )
            }
        }

        /// [`Self::apply`] when `fast`, without testing it.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
        fn short(&self, raw: __m512i) -> __m512i {
            // As `Stage::short`: `|raw| ≤ 2²⁹ + 4 < 2³⁰` (both operands small, `left_shift ≤
            // 20`) and `h + round_o < 2³¹` (`fast`), so `2·raw·m + 2³¹ + round_o·2³²` fits 64
            // bits and its high half is `h + round_o`; the sign of `raw` stands for `h`'s.
            let x2 = _mm512_add_epi32(raw, raw);
            let pe = _mm512_add_epi64(_mm512_mul_epi32(x2, self.mo), self.rnd_qword);
            let po = _mm512_add_epi64(
                _mm512_mul_epi32(_mm512_shuffle_epi32::<0xF5>(x2), self.mo),
                self.rnd_qword,
            );
            // SAFETY: 16 lanes of a 16-element array.
            let pick = unsafe { _mm512_loadu_si512(PICK_HIGH.as_ptr().cast()) };
            let hr = _mm512_permutex2var_epi32(pe, pick, po);
            _mm512_sra_epi32(_mm512_add_epi32(hr, _mm512_srai_epi32::<31>(raw)), self.e_o)
        }

        /// [`Self::short`] of `raw` given `x2 = 2·raw` (exact: `|raw| < 2³⁰`, so `x2` has
        /// `raw`'s sign). `FLOOR` leaves out the sign term, for a clamp whose bottom is at or
        /// above the output offset: the term only changes results for `h < 0`, where both
        /// `RoundingDivideByPOT(h, e)` and `⌊(h + 2^(e−1)) / 2^e⌋` are ≤ 0 (`fast`: e ≥ 1), so
        /// both results are at most the offset and the clamp raises them to its bottom alike.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
        fn short_doubled<const FLOOR: bool>(&self, x2: __m512i) -> __m512i {
            let pe = _mm512_add_epi64(_mm512_mul_epi32(x2, self.mo), self.rnd_qword);
            let po = _mm512_add_epi64(
                _mm512_mul_epi32(_mm512_shuffle_epi32::<0xF5>(x2), self.mo),
                self.rnd_qword,
            );
            // SAFETY: 16 lanes of a 16-element array.
            let pick = unsafe { _mm512_loadu_si512(PICK_HIGH.as_ptr().cast()) };
            let hr = _mm512_permutex2var_epi32(pe, pick, po);
            if FLOOR {
                _mm512_sra_epi32(hr, self.e_o)
            } else {
                _mm512_sra_epi32(_mm512_add_epi32(hr, _mm512_srai_epi32::<31>(x2)), self.e_o)
            }
        }
    }

    /// A rescaled ADD operand as a table: byte plane `k` holds byte `k` of the rescaled value of
    /// every int8 input, indexed by the input's bits (`u = x as u8`), 64 entries a register.
    struct Table {
        planes: [[__m512i; 4]; 4],
    }

    /// The bytes 0, 1, ..., 255.
    const ALL_BYTES: [u8; 256] = {
        let mut t = [0u8; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = i as u8;
            i += 1;
        }
        t
    };

    impl Table {
        /// The table of `op`: [`Operand::apply`] on every int8 value, so each entry is exactly
        /// what the direct path computes for that input.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
        fn new(op: &Operand) -> Table {
            Table::mapped(op, false, 0, false)
        }

        /// The table of `±op.apply(x) + add` (minus when `negate`; 32-bit wrapping), doubled
        /// (modulo 2³²) when `double`.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
        fn mapped(op: &Operand, negate: bool, add: i32, double: bool) -> Table {
            let add = _mm512_set1_epi32(add);
            let mut bytes = [[0u8; 256]; 4];
            for (c, chunk) in ALL_BYTES.chunks_exact(16).enumerate() {
                // SAFETY: 16 readable bytes.
                let u = unsafe { _mm_loadu_si128(chunk.as_ptr().cast()) };
                let v = op.apply(_mm512_cvtepi8_epi32(u));
                let v = if negate {
                    _mm512_sub_epi32(add, v)
                } else {
                    _mm512_add_epi32(v, add)
                };
                let v = if double { _mm512_add_epi32(v, v) } else { v };
                let planes = [
                    v,
                    _mm512_srli_epi32::<8>(v),
                    _mm512_srli_epi32::<16>(v),
                    _mm512_srli_epi32::<24>(v),
                ];
                for (plane, w) in bytes.iter_mut().zip(planes) {
                    // SAFETY: bytes 16c .. 16c + 16 of a 256-byte plane (c < 16).
                    unsafe {
                        _mm_storeu_si128(
                            plane.as_mut_ptr().add(16 * c).cast(),
                            _mm512_cvtepi32_epi8(w),
                        )
                    };
                }
            }
            let mut planes = [[_mm512_setzero_si512(); 4]; 4];
            for (regs, plane) in planes.iter_mut().zip(&bytes) {
                for (j, r) in regs.iter_mut().enumerate() {
                    // SAFETY: bytes 64j .. 64j + 64 of a 256-byte plane (j < 4).
                    *r = unsafe { _mm512_loadu_si512(plane.as_ptr().add(64 * j).cast()) };
                }
            }
            Table { planes }
        }

        /// The rescaled values of 64 inputs as four registers of 16 lanes, in the order
        /// [`unpack4`] leaves them (which [`pack4`] undoes).
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
        fn lookup(&self, idx: __m512i) -> [__m512i; 4] {
            unpack4(self.planes_of(idx))
        }

        /// The byte planes of 64 inputs' table entries (plane `k`, byte `j`: byte `k` of input
        /// `j`'s entry), before [`unpack4`].
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
        fn planes_of(&self, idx: __m512i) -> [__m512i; 4] {
            let high = _mm512_movepi8_mask(idx);
            let mut p = [_mm512_setzero_si512(); 4];
            for (out, t) in p.iter_mut().zip(&self.planes) {
                // Both halves looked up independently (bit 7 of the index ignored), then the
                // inputs with bit 7 set take entries 128..256.
                let lo = _mm512_permutex2var_epi8(t[0], idx, t[1]);
                let hi = _mm512_permutex2var_epi8(t[2], idx, t[3]);
                *out = _mm512_mask_blend_epi8(high, lo, hi);
            }
            p
        }
    }

    /// How the table path rescales one operand: looked up, or (an operand that is a left
    /// shift alone) computed directly in the table's lane order.
    // A short-lived stack value; boxing the table (no heap here) is not an option.
    #[allow(clippy::large_enum_variant)]
    enum Rescaler {
        Table(Table),
        /// `(x + 128 + offset − 128) << (left − 1)` with the shift count in every lane.
        Shift {
            offset: __m512i,
            count: __m512i,
        },
    }

    impl Operand {
        /// `(offset, count)` when the operand is `(x + offset) << count` alone (shift mode with
        /// no division), which [`Rescaler::Shift`] and [`table_shift`] compute directly.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
        fn shift_only(&self) -> Option<(i32, u32)> {
            (self.mode == OperandMode::Shift && self.e_zero).then(|| {
                (
                    _mm_cvtsi128_si32(_mm512_castsi512_si128(self.offset)),
                    _mm_cvtsi128_si32(self.count) as u32,
                )
            })
        }
    }

    impl Rescaler {
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
        fn new(op: &Operand) -> Rescaler {
            if op.mode == OperandMode::Shift && op.e_zero {
                Rescaler::Shift {
                    offset: _mm512_sub_epi32(op.offset, _mm512_set1_epi32(128)),
                    count: _mm512_broadcastd_epi32(op.count),
                }
            } else {
                Rescaler::Table(Table::new(op))
            }
        }

        /// The rescaled values of 64 int8 inputs, in [`unpack4`]'s order.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
        fn values(&self, x: __m512i) -> [__m512i; 4] {
            match self {
                Rescaler::Table(t) => t.lookup(x),
                Rescaler::Shift { offset, count } => {
                    // `x + 128` zero-extended, so `x + offset` is exactly the direct path's `v`.
                    let u = _mm512_xor_si512(x, _mm512_set1_epi8(-128));
                    let zero = _mm512_setzero_si512();
                    let mut v = unpack4([u, zero, zero, zero]);
                    for r in v.iter_mut() {
                        *r = _mm512_sllv_epi32(_mm512_add_epi32(*r, *offset), *count);
                    }
                    v
                }
            }
        }
    }

    /// Four byte planes (byte `k` of 64 values each) into 64 32-bit values: register `q`'s lanes
    /// `4L .. 4L + 4` are values `16L + 4q ..` (the in-lane unpacks keep 128-bit lanes apart).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    fn unpack4(p: [__m512i; 4]) -> [__m512i; 4] {
        let w_lo = _mm512_unpacklo_epi8(p[0], p[1]);
        let w_hi = _mm512_unpackhi_epi8(p[0], p[1]);
        let v_lo = _mm512_unpacklo_epi8(p[2], p[3]);
        let v_hi = _mm512_unpackhi_epi8(p[2], p[3]);
        [
            _mm512_unpacklo_epi16(w_lo, v_lo),
            _mm512_unpackhi_epi16(w_lo, v_lo),
            _mm512_unpacklo_epi16(w_hi, v_hi),
            _mm512_unpackhi_epi16(w_hi, v_hi),
        ]
    }

    /// The inverse of [`unpack4`]'s order, narrowing with signed saturation to 64 bytes in order.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    fn pack4(d: [__m512i; 4]) -> __m512i {
        _mm512_packs_epi16(
            _mm512_packs_epi32(d[0], d[1]),
            _mm512_packs_epi32(d[2], d[3]),
        )
    }

    /// ADD/SUB 64 elements at a time with both operands' rescaling looked up in tables
    /// (`vpermi2b`): the rescaled operand depends on the int8 input alone, so a table of its 256
    /// values, built by the same [`Operand::apply`], gives exactly the direct path's sums; the
    /// output stage is the direct path's. Returns how many elements it computed.
    ///
    /// # Safety
    /// The CPU runs AVX512-VBMI besides the tier's features; the pointers as in [`add_sub`].
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
    unsafe fn add_sub_tables(
        a_op: &Operand,
        b_op: &Operand,
        o: &OutStage,
        subtract: bool,
        x: *const i8,
        y: *const i8,
        out: *mut i8,
        n: usize,
    ) -> usize {
        if o.fast {
            let full = o.lo == -128 && o.hi == 127;
            let floor = o.lo >= o.output_offset;
            // The word form: the doubled shift count reaches the high 16 bits.
            let words = |sh: (i32, u32)| (15..=29).contains(&sh.1);
            macro_rules! words {
                ($t:expr, $neg:expr, $sh:expr, $tx:expr, $hx:expr, $sub:literal) => {
                    match (full, floor) {
                        (true, true) => table_shift_words::<$sub, true, true>(
                            $t, $neg, $sh, o, $tx, $hx, out, n,
                        ),
                        (true, false) => table_shift_words::<$sub, true, false>(
                            $t, $neg, $sh, o, $tx, $hx, out, n,
                        ),
                        (false, true) => table_shift_words::<$sub, false, true>(
                            $t, $neg, $sh, o, $tx, $hx, out, n,
                        ),
                        (false, false) => table_shift_words::<$sub, false, false>(
                            $t, $neg, $sh, o, $tx, $hx, out, n,
                        ),
                    }
                };
            }
            // SAFETY: the caller's guarantees; `o.fast` just checked; `full` and `floor`
            // describe `o`'s clamp; the shift counts are in the word form's range.
            let done = unsafe {
                match (a_op.shift_only(), b_op.shift_only(), subtract) {
                    (None, Some(sh), false) if words(sh) => {
                        Some(words!(a_op, false, sh, x, y, false))
                    }
                    (None, Some(sh), true) if words(sh) => {
                        Some(words!(a_op, false, sh, x, y, true))
                    }
                    (Some(sh), None, _) if words(sh) => {
                        Some(words!(b_op, subtract, sh, y, x, false))
                    }
                    _ => None,
                }
            };
            if let Some(i) = done {
                return i;
            }
            // TFLM's usual pair: one operand a left shift alone, the other looked up.
            // SAFETY: the caller's guarantees; `o.fast` just checked.
            let done = unsafe {
                match (a_op.shift_only(), b_op.shift_only(), subtract, full) {
                    (None, Some(sh), false, true) => {
                        Some(table_shift::<false, true>(a_op, false, sh, o, x, y, out, n))
                    }
                    (None, Some(sh), true, true) => {
                        Some(table_shift::<true, true>(a_op, false, sh, o, x, y, out, n))
                    }
                    (Some(sh), None, _, true) => Some(table_shift::<false, true>(
                        b_op, subtract, sh, o, y, x, out, n,
                    )),
                    (None, Some(sh), false, false) => Some(table_shift::<false, false>(
                        a_op, false, sh, o, x, y, out, n,
                    )),
                    (None, Some(sh), true, false) => {
                        Some(table_shift::<true, false>(a_op, false, sh, o, x, y, out, n))
                    }
                    (Some(sh), None, _, false) => Some(table_shift::<false, false>(
                        b_op, subtract, sh, o, y, x, out, n,
                    )),
                    _ => None,
                }
            };
            if let Some(i) = done {
                return i;
            }
        }
        let (ta, tb) = (Rescaler::new(a_op), Rescaler::new(b_op));
        let full = o.lo == -128 && o.hi == 127;
        let (lo, hi) = (_mm512_set1_epi8(o.lo as i8), _mm512_set1_epi8(o.hi as i8));
        let mut i = 0;
        while i + 64 <= n {
            // SAFETY: elements i .. i + 64 ≤ n of each operand (the caller's guarantee); both are
            // read before the output is written (it may alias either).
            let (xa, yb) = unsafe {
                (
                    _mm512_loadu_si512(x.add(i).cast()),
                    _mm512_loadu_si512(y.add(i).cast()),
                )
            };
            let (a, b) = (ta.values(xa), tb.values(yb));
            let mut v = [_mm512_setzero_si512(); 4];
            for q in 0..4 {
                let raw = if subtract {
                    _mm512_sub_epi32(a[q], b[q])
                } else {
                    _mm512_add_epi32(a[q], b[q])
                };
                v[q] = o.apply(raw);
            }
            let mut bytes = pack4(v);
            if !full {
                bytes = _mm512_min_epi8(_mm512_max_epi8(bytes, lo), hi);
            }
            // SAFETY: elements i .. i + 64 ≤ n of the output.
            unsafe { _mm512_storeu_si512(out.add(i).cast(), bytes) };
            i += 64;
        }
        i
    }

    /// The loop of [`table_shift`] and [`table_shift_words`] over `n` elements of the operands
    /// at `$tx`, `$hx` into `$out`, 64 at a time (two interleaved blocks a step while 128 are
    /// left), each block computed by `$block(x_t, x_h)`; evaluates to how many it computed.
    /// A macro, not a function taking a closure, so the block stays inlined in the caller's
    /// target features.
    macro_rules! two_operand_blocks {
        ($n:expr, $tx:expr, $hx:expr, $out:expr, $block:expr) => {{
            let (n, tx, hx, out, block) = ($n, $tx, $hx, $out, $block);
            let mut i = 0;
            // Two blocks a step: their chains interleave.
            while i + 128 <= n {
                // SAFETY: elements i .. i + 128 ≤ n of each operand (the caller's guarantee); all are
                // read before the output is written (it may alias either).
                let (xt0, xh0, xt1, xh1) = unsafe {
                    (
                        _mm512_loadu_si512(tx.add(i).cast()),
                        _mm512_loadu_si512(hx.add(i).cast()),
                        _mm512_loadu_si512(tx.add(i + 64).cast()),
                        _mm512_loadu_si512(hx.add(i + 64).cast()),
                    )
                };
                let (b0, b1) = (block(xt0, xh0), block(xt1, xh1));
                // SAFETY: elements i .. i + 128 ≤ n of the output.
                unsafe {
                    _mm512_storeu_si512(out.add(i).cast(), b0);
                    _mm512_storeu_si512(out.add(i + 64).cast(), b1);
                }
                i += 128;
            }
            while i + 64 <= n {
                // SAFETY: elements i .. i + 64 ≤ n of each operand (the caller's guarantee); both are
                // read before the output is written (it may alias either).
                let (xt, xh) = unsafe {
                    (
                        _mm512_loadu_si512(tx.add(i).cast()),
                        _mm512_loadu_si512(hx.add(i).cast()),
                    )
                };
                let bytes = block(xt, xh);
                // SAFETY: elements i .. i + 64 ≤ n of the output.
                unsafe { _mm512_storeu_si512(out.add(i).cast(), bytes) };
                i += 64;
            }
            i
        }};
    }

    /// [`table_shift`] in doubled values and 16-bit halves: the table holds `2·T(x_t)` and the
    /// shifted operand is `u << (count + 1)`, so the sums are `2·raw`, which the output stage
    /// doubles anyway ([`OutStage::short_doubled`]); and as `u << (count + 1)` has 16 low zero
    /// bits (`count + 1 ≥ 16`), it is added to the high 16-bit halves of the table's values
    /// alone (`hi16(T + S) = hi16(T) + hi16(S)` modulo 2¹⁶, no carry from the low halves),
    /// between [`unpack4`]'s two levels, where those halves are words in order. Sums equal
    /// [`table_shift`]'s doubled modulo 2³² (and `|raw| < 2³⁰`), hence the same outputs.
    /// `FLOOR`: the clamp's bottom is at or above the output offset. Returns how many elements
    /// it computed.
    ///
    /// # Safety
    /// As [`add_sub_tables`]; `o.fast`; `FULL` when the clamp is `[-128, 127]`, `FLOOR` only
    /// when `o.lo ≥ o.output_offset`; `15 ≤ count ≤ 29`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
    unsafe fn table_shift_words<const SUB: bool, const FULL: bool, const FLOOR: bool>(
        t: &Operand,
        negate_t: bool,
        (offset, count): (i32, u32),
        o: &OutStage,
        tx: *const i8,
        hx: *const i8,
        out: *mut i8,
        n: usize,
    ) -> usize {
        let konst = (offset - 128).wrapping_shl(count);
        let konst = if SUB { konst.wrapping_neg() } else { konst };
        let table = Table::mapped(t, negate_t, konst, true);
        // `u << (count + 1)`'s high half is `u << (count − 15)` (u < 2⁸, count ≤ 29: no bits
        // beyond 32 are lost that the 32-bit form keeps).
        let cnt = _mm_cvtsi32_si128(count as i32 - 15);
        let (lo, hi) = (_mm512_set1_epi8(o.lo as i8), _mm512_set1_epi8(o.hi as i8));
        let (zero, flip) = (_mm512_setzero_si512(), _mm512_set1_epi8(-128));
        let block = |xt: __m512i, xh: __m512i| {
            let p = table.planes_of(xt);
            // `u = x + 128` as words, in the order of the planes' first-level unpacks.
            let u = _mm512_xor_si512(xh, flip);
            let (s_lo, s_hi) = (
                _mm512_sll_epi16(_mm512_unpacklo_epi8(u, zero), cnt),
                _mm512_sll_epi16(_mm512_unpackhi_epi8(u, zero), cnt),
            );
            let w_lo = _mm512_unpacklo_epi8(p[0], p[1]);
            let w_hi = _mm512_unpackhi_epi8(p[0], p[1]);
            let v_lo = _mm512_unpacklo_epi8(p[2], p[3]);
            let v_hi = _mm512_unpackhi_epi8(p[2], p[3]);
            let (v_lo, v_hi) = if SUB {
                (_mm512_sub_epi16(v_lo, s_lo), _mm512_sub_epi16(v_hi, s_hi))
            } else {
                (_mm512_add_epi16(v_lo, s_lo), _mm512_add_epi16(v_hi, s_hi))
            };
            let x2 = [
                _mm512_unpacklo_epi16(w_lo, v_lo),
                _mm512_unpackhi_epi16(w_lo, v_lo),
                _mm512_unpacklo_epi16(w_hi, v_hi),
                _mm512_unpackhi_epi16(w_hi, v_hi),
            ];
            let bytes = pack4(x2.map(|v| o.short_doubled::<FLOOR>(v)));
            if FULL {
                bytes
            } else {
                _mm512_min_epi8(_mm512_max_epi8(bytes, lo), hi)
            }
        };
        two_operand_blocks!(n, tx, hx, out, block)
    }

    /// ADD/SUB with one operand `t` (inputs at `tx`) looked up and the other (at `hx`) a left
    /// shift alone, `(x + offset) << count` with `(offset, count) = sh`, in one straight loop:
    /// `raw = T(x_t) ± (u << count)` with `u = x_h + 128`, where the table holds `±t(x)`
    /// (minus when `negate_t`) plus the shifted operand's constant `(offset − 128) << count`
    /// (negated when `SUB`: the shifted operand is subtracted). Equal to the direct path's
    /// `raw` modulo 2³² (shifts and sums wrap alike), hence equal; the output stage is
    /// [`OutStage::apply`]'s short rounding, then int8's own clamp when `FULL`. Returns how
    /// many elements it computed.
    ///
    /// # Safety
    /// As [`add_sub_tables`]; `o.fast`; `FULL` when the clamp is `[-128, 127]`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
    unsafe fn table_shift<const SUB: bool, const FULL: bool>(
        t: &Operand,
        negate_t: bool,
        (offset, count): (i32, u32),
        o: &OutStage,
        tx: *const i8,
        hx: *const i8,
        out: *mut i8,
        n: usize,
    ) -> usize {
        let konst = (offset - 128).wrapping_shl(count);
        let konst = if SUB { konst.wrapping_neg() } else { konst };
        let table = Table::mapped(t, negate_t, konst, false);
        let cnt = _mm_cvtsi32_si128(count as i32);
        let (lo, hi) = (_mm512_set1_epi8(o.lo as i8), _mm512_set1_epi8(o.hi as i8));
        let (zero, flip) = (_mm512_setzero_si512(), _mm512_set1_epi8(-128));
        let block = |xt: __m512i, xh: __m512i| {
            let tv = table.lookup(xt);
            // `u = x + 128` zero-extended to 32 bits, in the table's lane order.
            let u = unpack4([_mm512_xor_si512(xh, flip), zero, zero, zero]);
            let mut v = [zero; 4];
            for q in 0..4 {
                let shifted = _mm512_sll_epi32(u[q], cnt);
                let raw = if SUB {
                    _mm512_sub_epi32(tv[q], shifted)
                } else {
                    _mm512_add_epi32(tv[q], shifted)
                };
                v[q] = o.short(raw);
            }
            let bytes = pack4(v);
            if FULL {
                bytes
            } else {
                _mm512_min_epi8(_mm512_max_epi8(bytes, lo), hi)
            }
        };
        two_operand_blocks!(n, tx, hx, out, block)
    }

    /// Depthwise, 64 channels at a time: groups of four taps interleaved byte-wise, so that
    /// one `vpdpbusd` adds four taps' exact products per channel. The input bytes enter as
    /// `u = x + 128` (the sign bit flipped), the weights as signed bytes; `Σ w·(x + off)` equals
    /// `Σ w·u + (off − 128)·Σ w` modulo 2³², folded into the bias (padded taps hold the zero
    /// point, taps past the last have zero weights). Accumulator `k`'s lane `i` holds channel
    /// `16·(i/4) + 4k + i%4`; the output stages are built in that order once per block and the
    /// bytes put back in order at the store.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn depthwise(job: &DepthwiseJob, q: &Requant, o: *mut i8, os: usize) {
        let (c, nt) = (job.channels, job.taps.len().min(MAX_TAPS));
        // Column mode (see `dw_columns`): the kernel's width when its taps are columns of at
        // most four rows, one pixel step apart.
        let kw = column_width(job).filter(|_| nt == job.taps.len());
        let groups = kw.unwrap_or(nt.div_ceil(4));
        // Tap `t` of group `g`: four consecutive taps, or the rows of column `g`.
        let group_tap = |g: usize, t: usize| match kw {
            Some(kw) => Some(t * kw + g).filter(|&i| i < nt),
            None => Some(4 * g + t).filter(|&i| i < nt),
        };
        let zero = _mm512_setzero_si512();
        // Σ over the taps of w·(x + off): |w| ≤ 128, |x + off| ≤ 255 < 256.
        let fast = fast_ok(q, (nt as u64) * 2 * 128 * 128);
        for c0 in (0..c).step_by(64) {
            let n = (c - c0).min(64);
            let bmask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
            let load = |p: *const i8| {
                // SAFETY: `n` bytes from `p` (the callers below pass in-bounds rows); masked-off
                // bytes are not accessed.
                unsafe { _mm512_maskz_loadu_epi8(bmask, p) }
            };
            // The block's weights as interleaved groups of four taps, and Σ w per channel.
            let mut w = [[zero; 4]; MAX_TAPS / 4];
            let mut wsum = [zero; 4];
            let ones = _mm512_set1_epi8(1);
            for (g, wg) in w.iter_mut().enumerate().take(groups) {
                let tap = |t: usize| {
                    group_tap(g, t)
                        .map_or(zero, |i| load(job.filter.as_ptr().wrapping_add(i * c + c0)))
                };
                *wg = interleave4(tap(0), tap(1), tap(2), tap(3));
                for (s, v) in wsum.iter_mut().zip(wg.iter()) {
                    *s = _mm512_dpbusd_epi32(*s, ones, *v);
                }
            }
            // Per-channel parameters in the accumulators' order (absent channels: multiplier
            // 0, shift −1, so their lanes stay zero and are never stored).
            let (mut pm, mut ps, mut pb) = ([0i32; 64], [-1i32; 64], [0i32; 64]);
            for slot in 0..64 {
                let (k, i) = (slot / 16, slot % 16);
                let ch = 16 * (i / 4) + 4 * k + i % 4;
                if ch < n {
                    (pm[slot], ps[slot]) = q.quant(c0 + ch);
                    pb[slot] = q.bias.and_then(|b| b.get(c0 + ch)).copied().unwrap_or(0);
                }
            }
            let pq = Requant {
                bias: Some(&pb),
                multipliers: &pm,
                shifts: &ps,
                output_offset: q.output_offset,
                act_min: q.act_min,
                act_max: q.act_max,
            };
            let fold = _mm512_set1_epi32(job.input_offset - 128);
            let mut stages = [
                Stage::new_zero(q),
                Stage::new_zero(q),
                Stage::new_zero(q),
                Stage::new_zero(q),
            ];
            let mut bias = [zero; 4];
            for k in 0..4 {
                // SAFETY: lanes 16k .. 16k + 16 of the 64-entry arrays.
                let (s, b) = unsafe { Stage::new(&pq, 16 * k, 16, fast) };
                stages[k] = s;
                bias[k] = _mm512_add_epi32(b, _mm512_mullo_epi32(wsum[k], fold));
            }
            let block = DwBlock {
                bmask,
                c0,
                stages,
                bias,
            };
            if let Some(kw) = kw {
                // The column's rows: taps 0, kw, 2kw, .. (rows past the kernel's are unused).
                let mut rows = [None; 4];
                for (t, r) in rows.iter_mut().enumerate() {
                    *r = group_tap(0, t)
                        .and_then(|i| job.taps.get(i))
                        .map(|&v| v as usize);
                }
                macro_rules! run_columns {
                    ($($g:literal),*) => {
                        match kw {
                            $($g => {
                                if let Ok(w) = <&[[__m512i; 4]; $g]>::try_from(&w[..$g]) {
                                    // SAFETY: the caller's guarantee (checked job), and
                                    // `column_width`'s: tap (ky, kx) = row ky + kx·x_stride.
                                    unsafe { dw_columns::<$g>(job, &block, w, &rows, o, os) }
                                }
                            })*
                            _ => {}
                        }
                    };
                }
                run_columns!(2, 3, 4, 5, 6, 7, 8);
                continue;
            }
            // The taps' offsets, the group's missing taps at tap 0 (their weights are zero).
            let mut taps = [0usize; MAX_TAPS];
            for (t, off) in taps.iter_mut().enumerate().take(4 * groups) {
                *off = job
                    .taps
                    .get(t)
                    .or(job.taps.first())
                    .map_or(0, |&v| v as usize);
            }
            macro_rules! run {
                ($($g:literal),*) => {
                    match groups {
                        $($g => {
                            let w = <&[[__m512i; 4]; $g]>::try_from(&w[..$g]);
                            let t = <&[usize; 4 * $g]>::try_from(&taps[..4 * $g]);
                            if let (Ok(w), Ok(t)) = (w, t) {
                                // SAFETY: the caller's guarantee (checked job, MAX_TAPS).
                                unsafe { dw_pixels::<$g, { 4 * $g }>(job, &block, w, t, o, os) }
                            }
                        })*
                        _ => {}
                    }
                };
            }
            run!(1, 2, 3, 4, 5, 6, 7, 8);
        }
    }

    /// The output stages of a block's accumulators, stored as bytes in channel order at `dst`
    /// (a macro: as a function the compiler keeps it out of line). The caller's `unsafe` block
    /// guarantees `dst .. dst + n` writable for the block's `n` channels.
    macro_rules! store_block {
        ($block:expr, $acc:expr, $order:expr, $dst:expr) => {{
            let (block, acc): (&DwBlock, &[__m512i; 4]) = ($block, $acc);
            let bytes = _mm512_inserti32x4::<3>(
                _mm512_inserti32x4::<2>(
                    _mm512_inserti32x4::<1>(
                        _mm512_castsi128_si512(block.stages[0].apply(acc[0])),
                        block.stages[1].apply(acc[1]),
                    ),
                    block.stages[2].apply(acc[2]),
                ),
                block.stages[3].apply(acc[3]),
            );
            let bytes = _mm512_permutexvar_epi32($order, bytes);
            let dst: *mut i8 = $dst;
            // The mask limits the store (a whole block stores plainly: masked stores are
            // slower on some cores).
            if block.bmask == u64::MAX {
                _mm512_storeu_si512(dst.cast(), bytes);
            } else {
                _mm512_mask_storeu_epi8(dst, block.bmask, bytes);
            }
        }};
    }

    /// The kernel width `kw ∈ 2..=8` when the job's taps are `kh ≤ 4` rows of `kw` taps, tap
    /// `(ky, kx)` at `taps[ky·kw] + kx·x_stride` (stride = dilation along lines), so that
    /// neighbouring pixels of a line share columns; `None` otherwise.
    fn column_width(job: &DepthwiseJob) -> Option<usize> {
        let (taps, xs) = (job.taps, job.x_stride);
        let first = *taps.first()? as usize;
        let kw = taps
            .iter()
            .enumerate()
            .take_while(|&(i, &t)| Some(t as usize) == i.checked_mul(xs).map(|d| first + d))
            .count();
        let ok = (2..=8).contains(&kw)
            && taps.len() % kw == 0
            && taps.len() / kw <= 4
            && job.width >= 2
            && taps.chunks(kw).all(|row| {
                row.iter()
                    .enumerate()
                    .all(|(i, &t)| Some(t as usize) == (i * xs).checked_add(row[0] as usize))
            });
        ok.then_some(kw)
    }

    /// Every pixel of one 64-channel block in column mode: along a line, pixel `i` reads
    /// columns `i .. i + KW` (each `rows` of one pixel offset, interleaved once and kept for the
    /// next `KW − 1` pixels), weighted by `w[kx]`.
    ///
    /// # Safety
    /// As [`dw_pixels`], and tap `(ky, kx)` of every pixel is `rows[ky] + kx·x_stride` from its
    /// window start (`column_width`).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn dw_columns<const KW: usize>(
        job: &DepthwiseJob,
        block: &DwBlock,
        w: &[[__m512i; 4]; KW],
        rows: &[Option<usize>; 4],
        o: *mut i8,
        os: usize,
    ) {
        let bmask = block.bmask;
        let zero = _mm512_setzero_si512();
        let flip = _mm512_set1_epi8(-128);
        // SAFETY: 16 lanes of a 16-element array.
        let order = unsafe { _mm512_loadu_si512(DW_ORDER.as_ptr().cast()) };
        let (width, xs) = (job.width, job.x_stride);
        // Column `j` of the window starting at `p`: its rows sign-flipped and interleaved.
        let column = |p: *const u8, j: usize| {
            let x = |t: usize| {
                rows[t].map_or(zero, |r| {
                    // SAFETY: tap (t, j) of a pixel of the job: inside the input (checked);
                    // masked-off bytes are not accessed.
                    let v = unsafe {
                        _mm512_maskz_loadu_epi8(bmask, p.wrapping_add(r + j * xs).cast())
                    };
                    _mm512_xor_si512(v, flip)
                })
            };
            interleave4(x(0), x(1), x(2), x(3))
        };
        let mut r = 0;
        let mut line = 0;
        while r < job.rows {
            let count = width.min(job.rows - r);
            let start = job
                .input
                .as_ptr()
                .wrapping_add(line * job.y_stride + block.c0);
            let mut cols = [[zero; 4]; KW];
            for (j, col) in cols.iter_mut().enumerate().take(KW - 1) {
                *col = column(start, j);
            }
            for i in 0..count {
                cols[KW - 1] = column(start, i + KW - 1);
                let mut acc = block.bias;
                for (col, wk) in cols.iter().zip(w.iter()) {
                    for k in 0..4 {
                        acc[k] = _mm512_dpbusd_epi32(acc[k], col[k], wk[k]);
                    }
                }
                // Register renames once unrolled (`copy_within` would be a memmove).
                for j in 0..KW - 1 {
                    cols[j] = cols[j + 1];
                }
                // SAFETY: outputs c0 .. c0 + n of pixel r + i (checked).
                unsafe { store_block!(block, &acc, order, o.add((r + i) * os + block.c0)) };
            }
            r += count;
            line += 1;
        }
    }

    /// Four rows of 64 bytes interleaved: result `k`'s dword `i` holds byte `16·(i/4) + 4k +
    /// i%4` of `a`, `b`, `c` and `d`, in that order.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    fn interleave4(a: __m512i, b: __m512i, c: __m512i, d: __m512i) -> [__m512i; 4] {
        let (ab_lo, ab_hi) = (_mm512_unpacklo_epi8(a, b), _mm512_unpackhi_epi8(a, b));
        let (cd_lo, cd_hi) = (_mm512_unpacklo_epi8(c, d), _mm512_unpackhi_epi8(c, d));
        [
            _mm512_unpacklo_epi16(ab_lo, cd_lo),
            _mm512_unpackhi_epi16(ab_lo, cd_lo),
            _mm512_unpacklo_epi16(ab_hi, cd_hi),
            _mm512_unpackhi_epi16(ab_hi, cd_hi),
        ]
    }

    /// Output dword `d` (channels `4d ..`) is dword `4·(d % 4) + d / 4` of the four
    /// accumulators' bytes side by side.
    const DW_ORDER: [u32; 16] = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15];

    /// The per-block constants of the depthwise kernel.
    struct DwBlock {
        bmask: u64,
        c0: usize,
        stages: [Stage; 4],
        bias: [__m512i; 4],
    }

    /// Every pixel of one 64-channel block, with `G` groups of four taps unrolled.
    ///
    /// # Safety
    /// `job` passed `DepthwiseJob::check` with `o`/`os`; `taps` are its tap offsets (padded with a
    /// valid one); `block.c0 + popcount(block.bmask) ≤ channels`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn dw_pixels<const G: usize, const T: usize>(
        job: &DepthwiseJob,
        block: &DwBlock,
        w: &[[__m512i; 4]; G],
        taps: &[usize; T],
        o: *mut i8,
        os: usize,
    ) {
        let px = job.pixels();
        let bmask = block.bmask;
        let load = |p: *const u8| {
            // SAFETY: the block's channels at a tap of a pixel: inside the input (checked);
            // masked-off bytes are not accessed.
            unsafe { _mm512_maskz_loadu_epi8(bmask, p.cast()) }
        };
        let flip = _mm512_set1_epi8(-128);
        // SAFETY: 16 lanes of a 16-element array.
        let order = unsafe { _mm512_loadu_si512(DW_ORDER.as_ptr().cast()) };
        for (r, row_off) in px.row_offsets(0).take(job.rows).enumerate() {
            let base = job.input.as_ptr().wrapping_add(row_off + block.c0);
            let mut acc = block.bias;
            for (g, wg) in w.iter().enumerate() {
                let x = |t: usize| load(base.wrapping_add(taps[4 * g + t]));
                let v = interleave4(x(0), x(1), x(2), x(3));
                for k in 0..4 {
                    acc[k] = _mm512_dpbusd_epi32(acc[k], _mm512_xor_si512(v[k], flip), wg[k]);
                }
            }
            // SAFETY: outputs c0 .. c0 + n of pixel r (checked).
            unsafe { store_block!(block, &acc, order, o.add(r * os + block.c0)) };
        }
    }
}

mod avx2 {
    use super::*;

    /// The output stage on 8 lanes.
    struct Stage {
        m: __m256i,
        m_odd: __m256i,
        left: __m256i,
        right: __m256i,
        mask: __m256i,
        half: __m256i,
    }

    /// The output stages (two halves of 8 lanes) and start values of outputs `c0 .. c0 +
    /// count`: straight from the arrays for a whole per-channel block, else through a padded
    /// copy.
    ///
    /// # Safety
    /// `q` has passed `Requant::check_lengths` for `n ≥ c0 + count` outputs, `count ≤ 16`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn block_stage(q: &Requant, c0: usize, count: usize) -> ([Stage; 2], [__m256i; 2]) {
        let load = |v: *const i32| {
            // SAFETY: 8 lanes inside an array of at least c0 + 16 entries, or of a padded copy.
            unsafe { _mm256_loadu_si256(v.cast()) }
        };
        if count == BLOCK_N && q.multipliers.len() != 1 {
            // SAFETY: the caller's guarantee: every array holds n ≥ c0 + 16 entries.
            let (m, sh) = unsafe { (q.multipliers.as_ptr().add(c0), q.shifts.as_ptr().add(c0)) };
            let bias = q.bias.map_or([_mm256_setzero_si256(); 2], |b| {
                let b = b.as_ptr().wrapping_add(c0);
                [load(b), load(b.wrapping_add(8))]
            });
            let stages = [
                Stage::new(load(m), load(sh)),
                Stage::new(load(m.wrapping_add(8)), load(sh.wrapping_add(8))),
            ];
            return (stages, bias);
        }
        let bq = BlockQuant::new(q, c0, c0 + count);
        let (m, sh, b) = (bq.mult.as_ptr(), bq.shift.as_ptr(), bq.bias.as_ptr());
        let stages = [
            Stage::new(load(m), load(sh)),
            Stage::new(load(m.wrapping_add(8)), load(sh.wrapping_add(8))),
        ];
        (stages, [load(b), load(b.wrapping_add(8))])
    }

    impl Stage {
        /// The stage of 8 outputs with multipliers `m` and shifts `s`.
        #[inline]
        #[target_feature(enable = "avx2")]
        fn new(m: __m256i, s: __m256i) -> Stage {
            let zero = _mm256_setzero_si256();
            let one = _mm256_set1_epi32(1);
            let right = _mm256_max_epi32(_mm256_sub_epi32(zero, s), zero);
            let mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
            Stage {
                m,
                m_odd: _mm256_srli_epi64::<32>(m),
                left: _mm256_max_epi32(s, zero),
                right,
                mask,
                half: _mm256_srli_epi32::<1>(mask),
            }
        }

        /// `MultiplyByQuantizedMultiplier` on 8 lanes.
        #[inline]
        #[target_feature(enable = "avx2")]
        fn apply(&self, acc: __m256i) -> __m256i {
            let x = _mm256_sllv_epi32(acc, self.left);
            let rnd = _mm256_set1_epi64x(1 << 30);
            let pe = _mm256_add_epi64(_mm256_mul_epi32(x, self.m), rnd);
            let po = _mm256_add_epi64(
                _mm256_mul_epi32(_mm256_srli_epi64::<32>(x), self.m_odd),
                rnd,
            );
            let h =
                _mm256_blend_epi32::<0xAA>(_mm256_srli_epi64::<31>(pe), _mm256_slli_epi64::<1>(po));
            let shifted = _mm256_srav_epi32(h, self.right);
            let rem = _mm256_and_si256(h, self.mask);
            let thr = _mm256_sub_epi32(self.half, _mm256_srai_epi32::<31>(h));
            _mm256_sub_epi32(shifted, _mm256_cmpgt_epi32(rem, thr))
        }
    }

    /// Adds the pairs of partial sums of 8 outputs (two accumulators of 4 outputs × 2).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn combine(lo: __m256i, hi: __m256i) -> __m256i {
        _mm256_permute4x64_epi64::<0xD8>(_mm256_hadd_epi32(lo, hi))
    }

    /// `MR` rows × `NB` blocks of 16 outputs.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn tile<const MR: usize, const NB: usize, const TABLE: bool, const _F: bool>(
        a: &Rows<MR>,
        w: *const i8,
        bstride: usize,
        q: &Requant,
        o: Out,
        _pre: &(),
    ) {
        let c0 = o.c0;
        let mut acc = [[[_mm256_setzero_si256(); 4]; NB]; MR];
        for s in 0..a.steps {
            // SAFETY: s < steps.
            let off = unsafe { a.offset::<TABLE>(s) };
            let mut wv = [[_mm256_setzero_si256(); 4]; NB];
            for (j, wj) in wv.iter_mut().enumerate() {
                for (i, v) in wj.iter_mut().enumerate() {
                    // SAFETY: 16 bytes of block j, step s: inside the packed matrix (checked).
                    *v = _mm256_cvtepi8_epi16(unsafe {
                        _mm_loadu_si128(w.add(j * bstride + s * STEP + 16 * i).cast())
                    });
                }
            }
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: r < MR, s < steps, rows checked by the caller.
                let x4 = unsafe { a.load_at(r, off) };
                let x = _mm256_cvtepi8_epi16(_mm_set1_epi32(x4));
                for (j, rj) in row.iter_mut().enumerate() {
                    for (i, v) in rj.iter_mut().enumerate() {
                        *v = _mm256_add_epi32(*v, _mm256_madd_epi16(wv[j][i], x));
                    }
                }
            }
        }
        let out_off = _mm256_set1_epi32(q.output_offset);
        let lo = _mm256_set1_epi32(q.act_min);
        let hi = _mm256_set1_epi32(q.act_max);
        for j in 0..NB {
            let c = c0 + j * BLOCK_N;
            let count = o.n.saturating_sub(c).min(BLOCK_N);
            // SAFETY: outputs c .. c + count ≤ n (the tile's blocks hold at least one output).
            let (stages, bias) = unsafe { block_stage(q, c, count) };
            for (r, row) in acc.iter().enumerate() {
                let v = &row[j];
                let mut res = [_mm256_setzero_si256(); 2];
                for h in 0..2 {
                    let sum = _mm256_add_epi32(combine(v[2 * h], v[2 * h + 1]), bias[h]);
                    let y = _mm256_add_epi32(stages[h].apply(sum), out_off);
                    res[h] = _mm256_min_epi32(_mm256_max_epi32(y, lo), hi);
                }
                let p16 = _mm256_permute4x64_epi64::<0xD8>(_mm256_packs_epi32(res[0], res[1]));
                let bytes = _mm_packs_epi16(
                    _mm256_castsi256_si128(p16),
                    _mm256_extracti128_si256::<1>(p16),
                );
                // SAFETY: outputs c0 + 16j .. + count < n of row r (checked).
                unsafe {
                    let dst = o.ptr.add(r * o.stride + c0 + j * BLOCK_N);
                    store16(dst, count, bytes);
                }
            }
        }
    }

    /// The whole matrix.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn gemm(
        a: &MatrixA,
        w: *const i8,
        n: usize,
        q: &Requant,
        o: *mut i8,
        os: usize,
    ) {
        // SAFETY: tiles stay inside the checked matrix (see `tile`).
        unsafe {
            tile_loop!(
                a,
                w,
                n,
                q,
                o,
                os,
                false,
                tile,
                no_prep,
                [(2, 1, [1]), (1, 2, [1, 2])]
            );
        }
    }

    /// Depthwise, 16 channels at a time: pairs of taps interleaved in 16-bit lanes, so that
    /// `vpmaddwd` adds two taps' exact products per channel.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn depthwise(job: &DepthwiseJob, q: &Requant, o: *mut i8, os: usize) {
        let px = job.pixels();
        let (c, nt) = (job.channels, job.taps.len().min(MAX_TAPS));
        let off = _mm256_set1_epi16(job.input_offset as i16);
        let out_off = _mm256_set1_epi32(q.output_offset);
        let (lo_clamp, hi_clamp) = (_mm256_set1_epi32(q.act_min), _mm256_set1_epi32(q.act_max));
        let zero = _mm256_setzero_si256();
        for c0 in (0..c).step_by(16) {
            let n = (c - c0).min(16);
            // SAFETY: channels c0 .. c0 + n ≤ c (q checked for c channels).
            let (stages, bias) = unsafe { block_stage(q, c0, n) };
            // The block's weights as interleaved pairs of taps (the last paired with zeros).
            let mut w = [[zero; 2]; MAX_TAPS / 2];
            for (p, wp) in w.iter_mut().enumerate().take(nt.div_ceil(2)) {
                // SAFETY: taps 2p (and 2p + 1 when it exists), channels c0 .. c0 + n: inside
                // the filter (checked).
                let wa = _mm256_cvtepi8_epi16(unsafe {
                    load16(job.filter.as_ptr().add(2 * p * c + c0).cast(), n)
                });
                let wb = if 2 * p + 1 < nt {
                    // SAFETY: as above.
                    _mm256_cvtepi8_epi16(unsafe {
                        load16(job.filter.as_ptr().add((2 * p + 1) * c + c0).cast(), n)
                    })
                } else {
                    zero
                };
                *wp = [_mm256_unpacklo_epi16(wa, wb), _mm256_unpackhi_epi16(wa, wb)];
            }
            for (r, row_off) in px.row_offsets(0).take(job.rows).enumerate() {
                // SAFETY: the pixel's window start plus c0 is inside the input (`check` bounds
                // every tap of every pixel, channels c0 .. c0 + n).
                let base = unsafe { job.input.as_ptr().add(row_off + c0) };
                let (mut lo, mut hi) = (zero, zero);
                for (p, wp) in w.iter().enumerate().take(nt.div_ceil(2)) {
                    // SAFETY: as above.
                    let xa = unsafe { load16(base.add(job.taps[2 * p] as usize), n) };
                    let xa = _mm256_add_epi16(_mm256_cvtepi8_epi16(xa), off);
                    let xb = if 2 * p + 1 < nt {
                        // SAFETY: as above.
                        let xb = unsafe { load16(base.add(job.taps[2 * p + 1] as usize), n) };
                        _mm256_add_epi16(_mm256_cvtepi8_epi16(xb), off)
                    } else {
                        zero
                    };
                    lo = _mm256_add_epi32(
                        lo,
                        _mm256_madd_epi16(_mm256_unpacklo_epi16(xa, xb), wp[0]),
                    );
                    hi = _mm256_add_epi32(
                        hi,
                        _mm256_madd_epi16(_mm256_unpackhi_epi16(xa, xb), wp[1]),
                    );
                }
                // lo holds channels 0..4 | 8..12, hi 4..8 | 12..16.
                let sums = [
                    _mm256_permute2x128_si256::<0x20>(lo, hi),
                    _mm256_permute2x128_si256::<0x31>(lo, hi),
                ];
                let mut res = [zero; 2];
                for h in 0..2 {
                    let y = stages[h].apply(_mm256_add_epi32(sums[h], bias[h]));
                    let y = _mm256_add_epi32(y, out_off);
                    res[h] = _mm256_min_epi32(_mm256_max_epi32(y, lo_clamp), hi_clamp);
                }
                let p16 = _mm256_permute4x64_epi64::<0xD8>(_mm256_packs_epi32(res[0], res[1]));
                let bytes = _mm_packs_epi16(
                    _mm256_castsi256_si128(p16),
                    _mm256_extracti128_si256::<1>(p16),
                );
                // SAFETY: outputs c0 .. c0 + n of pixel r (checked).
                unsafe { store16(o.add(r * os + c0), n, bytes) };
            }
        }
    }

    /// `(a·m + 2³⁰) >> 31` (TFLM's rounding doubling high multiply, `m ≥ 0`) with one
    /// multiplier for every lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn high_mul_uniform(a: __m256i, m: __m256i) -> __m256i {
        let rnd = _mm256_set1_epi64x(1 << 30);
        let pe = _mm256_add_epi64(_mm256_mul_epi32(a, m), rnd);
        let po = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64::<32>(a), m), rnd);
        _mm256_blend_epi32::<0xAA>(_mm256_srli_epi64::<31>(pe), _mm256_slli_epi64::<1>(po))
    }

    /// TFLM's `RoundingDivideByPOT` by one exponent for every lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn divide_pot_uniform(h: __m256i, e: __m128i, mask: __m256i, half: __m256i) -> __m256i {
        let shifted = _mm256_sra_epi32(h, e);
        let rem = _mm256_and_si256(h, mask);
        let thr = _mm256_sub_epi32(half, _mm256_srai_epi32::<31>(h));
        _mm256_sub_epi32(shifted, _mm256_cmpgt_epi32(rem, thr))
    }

    /// One operand's rescale: `((x + offset) << left) · m`, divided by `2^e`.
    struct Rescale {
        offset: __m256i,
        m: __m256i,
        e: __m128i,
        mask: __m256i,
        half: __m256i,
    }

    impl Rescale {
        #[inline]
        #[target_feature(enable = "avx2")]
        fn new(offset: i32, m: i32, shift: i32) -> Rescale {
            let e = (-shift) as u32;
            let mask = ((1u64 << e) - 1) as i32;
            Rescale {
                offset: _mm256_set1_epi32(offset),
                m: _mm256_set1_epi32(m),
                e: _mm_cvtsi32_si128(e as i32),
                mask: _mm256_set1_epi32(mask),
                half: _mm256_set1_epi32(mask >> 1),
            }
        }

        #[inline]
        #[target_feature(enable = "avx2")]
        fn apply(&self, v: __m256i) -> __m256i {
            divide_pot_uniform(high_mul_uniform(v, self.m), self.e, self.mask, self.half)
        }
    }

    /// ADD/SUB, 8 elements at a time; returns how many it computed.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn add_sub(
        p: &ArithParams,
        subtract: bool,
        x: *const i8,
        y: *const i8,
        out: *mut i8,
        n: usize,
    ) -> usize {
        let left = _mm_cvtsi32_si128(p.left_shift);
        let r1 = Rescale::new(p.input1_offset, p.input1_multiplier, p.input1_shift);
        let r2 = Rescale::new(p.input2_offset, p.input2_multiplier, p.input2_shift);
        let ro = Rescale::new(0, p.output_multiplier, p.output_shift);
        let out_off = _mm256_set1_epi32(p.output_offset);
        let lo = _mm256_set1_epi32(p.activation_min);
        let hi = _mm256_set1_epi32(p.activation_max);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: elements i .. i + 8 < n of each operand (the caller's guarantee).
            let (a, b) = unsafe {
                (
                    _mm256_cvtepi8_epi32(_mm_loadl_epi64(x.add(i).cast())),
                    _mm256_cvtepi8_epi32(_mm_loadl_epi64(y.add(i).cast())),
                )
            };
            let a = r1.apply(_mm256_sll_epi32(_mm256_add_epi32(a, r1.offset), left));
            let b = r2.apply(_mm256_sll_epi32(_mm256_add_epi32(b, r2.offset), left));
            let raw = if subtract {
                _mm256_sub_epi32(a, b)
            } else {
                _mm256_add_epi32(a, b)
            };
            let v = _mm256_add_epi32(ro.apply(raw), out_off);
            let v = _mm256_min_epi32(_mm256_max_epi32(v, lo), hi);
            let w = _mm256_packs_epi32(v, v);
            let bytes =
                _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256::<1>(w));
            // Lanes 0..4 of the low half and 0..4 of the high half hold the 8 results.
            let bytes = _mm_unpacklo_epi32(bytes, _mm_srli_si128::<8>(bytes));
            // SAFETY: elements i .. i + 8 < n of the output.
            unsafe { _mm_storel_epi64(out.add(i).cast(), bytes) };
            i += 8;
        }
        i
    }
}

mod sse41 {
    use super::*;

    /// The output stage of 4 outputs. SSE4.1 has no per-lane shifts: each lane's shift is one
    /// `psrad`/`pslld` by its own count, the four results blended.
    struct Stage4 {
        m: __m128i,
        m_odd: __m128i,
        left: [__m128i; 4],
        right: [__m128i; 4],
        mask: __m128i,
        half: __m128i,
        any_left: bool,
    }

    impl Stage4 {
        #[inline]
        #[target_feature(enable = "sse4.1")]
        fn new(mult: &[i32; 4], shift: &[i32; 4]) -> Stage4 {
            // Wrapping, so that shifts outside `[-31, 30]` (refused when the model is loaded)
            // give wrong numbers but never a panic.
            let right = shift.map(|s| s.wrapping_neg().max(0));
            let left = shift.map(|s| s.max(0));
            let mask = right.map(|e| (1u64.wrapping_shl(e as u32).wrapping_sub(1)) as i32);
            // SAFETY: 4 lanes of 4-element arrays.
            let (m, mask) = unsafe {
                (
                    _mm_loadu_si128(mult.as_ptr().cast()),
                    _mm_loadu_si128(mask.as_ptr().cast()),
                )
            };
            Stage4 {
                m,
                m_odd: _mm_srli_epi64::<32>(m),
                left: left.map(|c| _mm_cvtsi32_si128(c)),
                right: right.map(|c| _mm_cvtsi32_si128(c)),
                mask,
                half: _mm_srli_epi32::<1>(mask),
                any_left: left.iter().any(|&l| l != 0),
            }
        }

        /// `MultiplyByQuantizedMultiplier` on 4 lanes.
        #[inline]
        #[target_feature(enable = "sse4.1")]
        fn apply(&self, acc: __m128i) -> __m128i {
            let x = if self.any_left {
                let [a, b, c, d] = self.left.map(|n| _mm_sll_epi32(acc, n));
                _mm_blend_epi16::<0xC0>(
                    _mm_blend_epi16::<0x30>(_mm_blend_epi16::<0x0C>(a, b), c),
                    d,
                )
            } else {
                acc
            };
            let rnd = _mm_set1_epi64x(1 << 30);
            let pe = _mm_add_epi64(_mm_mul_epi32(x, self.m), rnd);
            let po = _mm_add_epi64(_mm_mul_epi32(_mm_srli_epi64::<32>(x), self.m_odd), rnd);
            let h = _mm_blend_epi16::<0xCC>(_mm_srli_epi64::<31>(pe), _mm_slli_epi64::<1>(po));
            let [a, b, c, d] = self.right.map(|e| _mm_sra_epi32(h, e));
            let shifted = _mm_blend_epi16::<0xC0>(
                _mm_blend_epi16::<0x30>(_mm_blend_epi16::<0x0C>(a, b), c),
                d,
            );
            let rem = _mm_and_si128(h, self.mask);
            let thr = _mm_sub_epi32(self.half, _mm_srai_epi32::<31>(h));
            _mm_sub_epi32(shifted, _mm_cmpgt_epi32(rem, thr))
        }
    }

    /// TFLM's output stage for a block of `count ≤ 16` outputs, prepared once per block.
    struct Block16 {
        stages: [Stage4; 4],
        bias: [__m128i; 4],
        count: usize,
    }

    impl Block16 {
        /// The stage of outputs `c0 .. c0 + count`.
        #[inline]
        #[target_feature(enable = "sse4.1")]
        fn new(q: &Requant, c0: usize, count: usize) -> Block16 {
            let bq = BlockQuant::new(q, c0, c0 + count);
            let quad =
                |a: &[i32; 16], i: usize| [a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]];
            let stage = |i: usize| Stage4::new(&quad(&bq.mult, i), &quad(&bq.shift, i));
            let bias = |i: usize| {
                // SAFETY: 4 lanes of a 16-element array at 4i.
                unsafe { _mm_loadu_si128(bq.bias.as_ptr().add(4 * i).cast()) }
            };
            Block16 {
                stages: [stage(0), stage(1), stage(2), stage(3)],
                bias: [bias(0), bias(1), bias(2), bias(3)],
                count,
            }
        }

        /// Requantizes the accumulators of the block (without bias) and stores `count` bytes.
        ///
        /// # Safety
        /// `dst .. dst + count` must be writable.
        #[inline]
        #[target_feature(enable = "sse4.1")]
        unsafe fn store(&self, sums: [__m128i; 4], q: &Requant, dst: *mut i8) {
            let out_off = _mm_set1_epi32(q.output_offset);
            let (lo, hi) = (_mm_set1_epi32(q.act_min), _mm_set1_epi32(q.act_max));
            let mut r = [_mm_setzero_si128(); 4];
            for (i, v) in r.iter_mut().enumerate() {
                if 4 * i >= self.count {
                    break;
                }
                let y = self.stages[i].apply(_mm_add_epi32(sums[i], self.bias[i]));
                *v = _mm_min_epi32(_mm_max_epi32(_mm_add_epi32(y, out_off), lo), hi);
            }
            let bytes = _mm_packs_epi16(_mm_packs_epi32(r[0], r[1]), _mm_packs_epi32(r[2], r[3]));
            // SAFETY: the caller's guarantee.
            unsafe { store16(dst, self.count, bytes) };
        }
    }

    /// `MR` rows × 16 outputs, one row at a time (their output stage prepared once).
    #[inline]
    #[target_feature(enable = "sse4.1")]
    unsafe fn tile<const MR: usize, const NB: usize, const TABLE: bool, const _F: bool>(
        a: &Rows<MR>,
        w: *const i8,
        bstride: usize,
        q: &Requant,
        o: Out,
        _pre: &(),
    ) {
        let c0 = o.c0;
        for j in 0..NB {
            let wb = w.wrapping_add(j * bstride);
            let c = c0 + j * BLOCK_N;
            let block = Block16::new(q, c, o.n.saturating_sub(c).min(BLOCK_N));
            for r in 0..MR {
                let mut acc = [_mm_setzero_si128(); 8];
                for s in 0..a.steps {
                    // SAFETY: s < steps.
                    let off = unsafe { a.offset::<TABLE>(s) };
                    // SAFETY: r < MR, rows checked by the caller.
                    let x4 = unsafe { a.load_at(r, off) };
                    let x = _mm_cvtepi8_epi16(_mm_set1_epi32(x4));
                    for (i, v) in acc.iter_mut().enumerate() {
                        // SAFETY: 8 bytes of block j, step s (checked).
                        let wv = _mm_cvtepi8_epi16(unsafe {
                            _mm_loadl_epi64(wb.add(s * STEP + 8 * i).cast())
                        });
                        *v = _mm_add_epi32(*v, _mm_madd_epi16(wv, x));
                    }
                }
                let sums = [
                    _mm_hadd_epi32(acc[0], acc[1]),
                    _mm_hadd_epi32(acc[2], acc[3]),
                    _mm_hadd_epi32(acc[4], acc[5]),
                    _mm_hadd_epi32(acc[6], acc[7]),
                ];
                // SAFETY: outputs c .. c + count < n of row r (checked).
                unsafe { block.store(sums, q, o.ptr.add(r * o.stride + c)) };
            }
        }
    }

    /// The whole matrix.
    #[target_feature(enable = "sse4.1")]
    pub(super) unsafe fn gemm(
        a: &MatrixA,
        w: *const i8,
        n: usize,
        q: &Requant,
        o: *mut i8,
        os: usize,
    ) {
        // SAFETY: tiles stay inside the checked matrix (see `tile`).
        unsafe {
            tile_loop!(
                a,
                w,
                n,
                q,
                o,
                os,
                false,
                tile,
                no_prep,
                [(1, 8, [1, 2, 3, 4, 5, 6, 7, 8])]
            );
        }
    }

    /// Depthwise, 8 channels at a time (pairs of taps through `pmaddwd`).
    #[target_feature(enable = "sse4.1")]
    pub(super) unsafe fn depthwise(job: &DepthwiseJob, q: &Requant, o: *mut i8, os: usize) {
        let px = job.pixels();
        let (c, nt) = (job.channels, job.taps.len().min(MAX_TAPS));
        let off = _mm_set1_epi16(job.input_offset as i16);
        let zero = _mm_setzero_si128();
        for c0 in (0..c).step_by(8) {
            let n = (c - c0).min(8);
            let block = Block16::new(q, c0, n);
            let mut w = [[zero; 2]; MAX_TAPS / 2];
            for (p, wp) in w.iter_mut().enumerate().take(nt.div_ceil(2)) {
                // SAFETY: taps 2p (and 2p + 1), channels c0 .. c0 + n: inside the filter.
                let wa = _mm_cvtepi8_epi16(unsafe {
                    load8(job.filter.as_ptr().add(2 * p * c + c0).cast(), n)
                });
                let wb = if 2 * p + 1 < nt {
                    // SAFETY: as above.
                    _mm_cvtepi8_epi16(unsafe {
                        load8(job.filter.as_ptr().add((2 * p + 1) * c + c0).cast(), n)
                    })
                } else {
                    zero
                };
                *wp = [_mm_unpacklo_epi16(wa, wb), _mm_unpackhi_epi16(wa, wb)];
            }
            for (r, row_off) in px.row_offsets(0).take(job.rows).enumerate() {
                // SAFETY: the pixel's window start plus c0 is inside the input (`check` bounds
                // every tap of every pixel, channels c0 .. c0 + n).
                let base = unsafe { job.input.as_ptr().add(row_off + c0) };
                let (mut lo, mut hi) = (zero, zero);
                for (p, wp) in w.iter().enumerate().take(nt.div_ceil(2)) {
                    // SAFETY: as above.
                    let xa = unsafe { load8(base.add(job.taps[2 * p] as usize), n) };
                    let xa = _mm_add_epi16(_mm_cvtepi8_epi16(xa), off);
                    let xb = if 2 * p + 1 < nt {
                        // SAFETY: as above.
                        let xb = unsafe { load8(base.add(job.taps[2 * p + 1] as usize), n) };
                        _mm_add_epi16(_mm_cvtepi8_epi16(xb), off)
                    } else {
                        zero
                    };
                    lo = _mm_add_epi32(lo, _mm_madd_epi16(_mm_unpacklo_epi16(xa, xb), wp[0]));
                    hi = _mm_add_epi32(hi, _mm_madd_epi16(_mm_unpackhi_epi16(xa, xb), wp[1]));
                }
                // SAFETY: outputs c0 .. c0 + n of pixel r (checked).
                unsafe { block.store([lo, hi, zero, zero], q, o.add(r * os + c0)) };
            }
        }
    }

    /// `(a·m + 2³⁰) >> 31` with one multiplier for every lane.
    #[inline]
    #[target_feature(enable = "sse4.1")]
    fn high_mul_uniform(a: __m128i, m: __m128i) -> __m128i {
        let rnd = _mm_set1_epi64x(1 << 30);
        let pe = _mm_add_epi64(_mm_mul_epi32(a, m), rnd);
        let po = _mm_add_epi64(_mm_mul_epi32(_mm_srli_epi64::<32>(a), m), rnd);
        _mm_blend_epi16::<0xCC>(_mm_srli_epi64::<31>(pe), _mm_slli_epi64::<1>(po))
    }

    /// One operand's rescale: `((x + offset) << left) · m`, divided by `2^e`.
    struct Rescale {
        offset: __m128i,
        m: __m128i,
        e: __m128i,
        mask: __m128i,
        half: __m128i,
    }

    impl Rescale {
        #[inline]
        #[target_feature(enable = "sse4.1")]
        fn new(offset: i32, m: i32, shift: i32) -> Rescale {
            let e = (-shift) as u32;
            let mask = ((1u64 << e) - 1) as i32;
            Rescale {
                offset: _mm_set1_epi32(offset),
                m: _mm_set1_epi32(m),
                e: _mm_cvtsi32_si128(e as i32),
                mask: _mm_set1_epi32(mask),
                half: _mm_set1_epi32(mask >> 1),
            }
        }

        #[inline]
        #[target_feature(enable = "sse4.1")]
        fn apply(&self, v: __m128i) -> __m128i {
            let h = high_mul_uniform(v, self.m);
            let shifted = _mm_sra_epi32(h, self.e);
            let rem = _mm_and_si128(h, self.mask);
            let thr = _mm_sub_epi32(self.half, _mm_srai_epi32::<31>(h));
            _mm_sub_epi32(shifted, _mm_cmpgt_epi32(rem, thr))
        }
    }

    /// ADD/SUB, 4 elements at a time; returns how many it computed.
    #[target_feature(enable = "sse4.1")]
    pub(super) unsafe fn add_sub(
        p: &ArithParams,
        subtract: bool,
        x: *const i8,
        y: *const i8,
        out: *mut i8,
        n: usize,
    ) -> usize {
        let left = _mm_cvtsi32_si128(p.left_shift);
        let r1 = Rescale::new(p.input1_offset, p.input1_multiplier, p.input1_shift);
        let r2 = Rescale::new(p.input2_offset, p.input2_multiplier, p.input2_shift);
        let ro = Rescale::new(0, p.output_multiplier, p.output_shift);
        let out_off = _mm_set1_epi32(p.output_offset);
        let lo = _mm_set1_epi32(p.activation_min);
        let hi = _mm_set1_epi32(p.activation_max);
        let mut i = 0;
        while i + 4 <= n {
            // SAFETY: elements i .. i + 4 < n of each operand (the caller's guarantee).
            let (a, b) = unsafe {
                (
                    _mm_cvtepi8_epi32(_mm_cvtsi32_si128(ptr::read_unaligned(
                        x.add(i).cast::<i32>(),
                    ))),
                    _mm_cvtepi8_epi32(_mm_cvtsi32_si128(ptr::read_unaligned(
                        y.add(i).cast::<i32>(),
                    ))),
                )
            };
            let a = r1.apply(_mm_sll_epi32(_mm_add_epi32(a, r1.offset), left));
            let b = r2.apply(_mm_sll_epi32(_mm_add_epi32(b, r2.offset), left));
            let raw = if subtract {
                _mm_sub_epi32(a, b)
            } else {
                _mm_add_epi32(a, b)
            };
            let v = _mm_add_epi32(ro.apply(raw), out_off);
            let v = _mm_min_epi32(_mm_max_epi32(v, lo), hi);
            let bytes = _mm_packs_epi16(_mm_packs_epi32(v, v), _mm_setzero_si128());
            // SAFETY: elements i .. i + 4 < n of the output.
            unsafe { ptr::write_unaligned(out.add(i).cast::<i32>(), _mm_cvtsi128_si32(bytes)) };
            i += 4;
        }
        i
    }
}
