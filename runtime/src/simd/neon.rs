//! aarch64 kernels: Advanced SIMD, with and without the dot-product extension.
//!
//! Matrix kernels read weights packed by [`super::pack_weights`] (16 outputs × 4 bytes per step,
//! i.e. four registers of 4 outputs × 4 bytes) and signed activation bytes:
//! - `sdot` (dotprod): each register of 4 outputs gets the 4-byte dot product with the step's
//!   four activations (broadcast with `ld1r`), exactly, modulo 2³² like TFLM's accumulator;
//! - without it, `smull` makes exact 16-bit products of 2 outputs × 4 bytes and `sadalp` adds
//!   neighbouring pairs into 32-bit lanes; `addp` finishes each output's sum once per tile.
//!
//! Stable Rust has no `sdot` intrinsic (`vdotq_s32` is unstable), so it is a one-instruction
//! `asm!` block. The output stage is TFLM's: `sqrdmulh` is exactly its rounding doubling high
//! multiply, and the rounding right shift is gemmlowp's NEON `RoundingDivideByPOT`.

use core::arch::aarch64::*;
use core::arch::asm;

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
            Tier::NeonDot => dot::gemm(a, w, n, q, o, out_stride),
            _ => plain::gemm(a, w, n, q, o, out_stride),
        }
    }
}

/// Rows × blocks tiling shared by the tiers: calls `$tile::<MR, NB>` over the whole matrix.
macro_rules! tile_loop {
    ($a:expr, $w:expr, $n:expr, $q:expr, $o:expr, $os:expr, $fast:expr, $tile:ident,
     [$(($nb:literal, $mr:literal, [$($m:literal),*])),*]) => {{
        let a: &MatrixA = $a;
        let blocks = $n.div_ceil(BLOCK_N);
        let bstride = a.k_steps * STEP;
        let koff = a.k_offsets.map_or(ptr::null(), |k| k.as_ptr());
        let mut b = 0usize;
        while b < blocks {
            let left = blocks - b;
            $(
                if left >= $nb {
                    let mut r = 0usize;
                    while r < a.rows {
                        let mr = (a.rows - r).min($mr);
                        let w = $w.add(b * bstride);
                        let out = Out { ptr: $o.add(r * $os), stride: $os, n: $n, c0: b * BLOCK_N };
                        let _: bool = $fast;
                        match mr {
                            $($m => {
                                let mut ptrs = [ptr::null::<u8>(); $m];
                                for (p, off) in ptrs.iter_mut().zip(a.row_offsets(r)) {
                                    // check_gemm: every row offset is inside `a.data`.
                                    *p = a.data.as_ptr().add(off);
                                }
                                let rows = Rows { ptr: ptrs, koff, steps: a.k_steps };
                                if koff.is_null() {
                                    $tile::<$m, $nb, false>(&rows, w, bstride, $q, out);
                                } else {
                                    $tile::<$m, $nb, true>(&rows, w, bstride, $q, out);
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

/// Start values, multipliers and shifts of a block of 16 outputs, four registers each.
struct BlockRegs {
    bias: [int32x4_t; 4],
    mult: [int32x4_t; 4],
    shift: [int32x4_t; 4],
    count: usize,
}

impl BlockRegs {
    /// Outputs `c0 .. c0 + min(16, n − c0)`: straight from the arrays for a whole per-channel
    /// block, else through a padded copy.
    ///
    /// # Safety
    /// `q` has passed `Requant::check_lengths` for `n > c0` outputs.
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn new(q: &Requant, c0: usize, n: usize) -> BlockRegs {
        let count = n.saturating_sub(c0).min(BLOCK_N);
        let load4 = |p: *const i32| {
            // SAFETY: 16 entries from `p`: inside an array of at least c0 + 16 entries, or a
            // padded copy.
            unsafe {
                [
                    vld1q_s32(p),
                    vld1q_s32(p.add(4)),
                    vld1q_s32(p.add(8)),
                    vld1q_s32(p.add(12)),
                ]
            }
        };
        if count == BLOCK_N && q.multipliers.len() != 1 {
            let zero = vdupq_n_s32(0);
            return BlockRegs {
                bias: q
                    .bias
                    .map_or([zero; 4], |b| load4(b.as_ptr().wrapping_add(c0))),
                mult: load4(q.multipliers.as_ptr().wrapping_add(c0)),
                shift: load4(q.shifts.as_ptr().wrapping_add(c0)),
                count,
            };
        }
        let bq = BlockQuant::new(q, c0, n);
        BlockRegs {
            bias: load4(bq.bias.as_ptr()),
            mult: load4(bq.mult.as_ptr()),
            shift: load4(bq.shift.as_ptr()),
            count,
        }
    }
}

/// TFLM's output stage for 16 outputs (four registers of 4), stored as `count` bytes at `dst`.
///
/// # Safety
/// `dst .. dst + br.count` must be writable, `count ≤ 16`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn requantize_store(sums: [int32x4_t; 4], br: &BlockRegs, q: &Requant, dst: *mut i8) {
    let out_off = vdupq_n_s32(q.output_offset);
    let lo = vdupq_n_s32(q.act_min);
    let hi = vdupq_n_s32(q.act_max);
    let zero = vdupq_n_s32(0);
    let mut r = [zero; 4];
    for (i, v) in r.iter_mut().enumerate() {
        let left = vmaxq_s32(br.shift[i], zero);
        let neg_right = vminq_s32(br.shift[i], zero);
        let x = vshlq_s32(vaddq_s32(sums[i], br.bias[i]), left);
        let x = vqrdmulhq_s32(x, br.mult[i]);
        let fixup = vshrq_n_s32::<31>(vandq_s32(x, neg_right));
        let x = vrshlq_s32(vqaddq_s32(x, fixup), neg_right);
        *v = vminq_s32(vmaxq_s32(vaddq_s32(x, out_off), lo), hi);
    }
    let h0 = vcombine_s16(vmovn_s32(r[0]), vmovn_s32(r[1]));
    let h1 = vcombine_s16(vmovn_s32(r[2]), vmovn_s32(r[3]));
    let bytes = vcombine_s8(vmovn_s16(h0), vmovn_s16(h1));
    // SAFETY: the caller guarantees `count` writable bytes at `dst`.
    unsafe {
        if br.count == BLOCK_N {
            vst1q_s8(dst, bytes);
        } else {
            let mut tmp = [0i8; 16];
            vst1q_s8(tmp.as_mut_ptr(), bytes);
            core::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, br.count);
        }
    }
}

mod dot {
    use super::*;

    /// `acc + ` the four 4-byte dot products of `w` (4 outputs × 4 bytes) with `x`.
    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    fn sdot(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
        let mut acc = acc;
        // SAFETY: one register-only instruction of the dot-product extension, which this
        // function's target features (and every caller's) guarantee.
        unsafe {
            asm!("sdot {acc:v}.4s, {w:v}.16b, {x:v}.16b", acc = inout(vreg) acc, w = in(vreg) w,
                 x = in(vreg) x, options(pure, nomem, nostack, preserves_flags));
        }
        acc
    }

    /// `MR` rows × `NB` blocks of 16 outputs.
    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    unsafe fn tile<const MR: usize, const NB: usize, const TABLE: bool>(
        a: &Rows<MR>,
        w: *const i8,
        bstride: usize,
        q: &Requant,
        o: Out,
    ) {
        let c0 = o.c0;
        let mut acc = [[[vdupq_n_s32(0); 4]; NB]; MR];
        for s in 0..a.steps {
            // SAFETY: s < steps.
            let off = unsafe { a.offset::<TABLE>(s) };
            let mut wv = [[vdupq_n_s8(0); 4]; NB];
            for (j, wj) in wv.iter_mut().enumerate() {
                for (i, v) in wj.iter_mut().enumerate() {
                    // SAFETY: 16 bytes of block j, step s: inside the packed matrix (checked).
                    *v = unsafe { vld1q_s8(w.add(j * bstride + s * STEP + 16 * i)) };
                }
            }
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: r < MR, s < steps, rows checked by the caller.
                let x = vreinterpretq_s8_s32(vdupq_n_s32(unsafe { a.load_at(r, off) }));
                for (j, rj) in row.iter_mut().enumerate() {
                    for (i, v) in rj.iter_mut().enumerate() {
                        *v = sdot(*v, wv[j][i], x);
                    }
                }
            }
        }
        for j in 0..NB {
            let c = c0 + j * BLOCK_N;
            // SAFETY: the tile's blocks hold at least one output (c < n).
            let br = unsafe { BlockRegs::new(q, c, o.n) };
            for (r, row) in acc.iter().enumerate() {
                // SAFETY: outputs c .. c + count < n of row r (checked).
                unsafe { requantize_store(row[j], &br, q, o.ptr.add(r * o.stride + c)) };
            }
        }
    }

    /// The whole matrix.
    #[target_feature(enable = "neon,dotprod")]
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
                [(2, 2, [1, 2]), (1, 4, [1, 2, 3, 4])]
            );
        }
    }
}

mod plain {
    use super::*;

    /// `MR` rows × `NB` blocks of 16 outputs.
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn tile<const MR: usize, const NB: usize, const TABLE: bool>(
        a: &Rows<MR>,
        w: *const i8,
        bstride: usize,
        q: &Requant,
        o: Out,
    ) {
        let c0 = o.c0;
        let mut acc = [[[vdupq_n_s32(0); 8]; NB]; MR];
        for s in 0..a.steps {
            // SAFETY: s < steps.
            let off = unsafe { a.offset::<TABLE>(s) };
            let mut wv = [[vdupq_n_s8(0); 4]; NB];
            for (j, wj) in wv.iter_mut().enumerate() {
                for (i, v) in wj.iter_mut().enumerate() {
                    // SAFETY: 16 bytes of block j, step s: inside the packed matrix (checked).
                    *v = unsafe { vld1q_s8(w.add(j * bstride + s * STEP + 16 * i)) };
                }
            }
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: r < MR, s < steps, rows checked by the caller.
                let x = vreinterpret_s8_s32(vdup_n_s32(unsafe { a.load_at(r, off) }));
                for (j, rj) in row.iter_mut().enumerate() {
                    for i in 0..4 {
                        let lo = vmull_s8(vget_low_s8(wv[j][i]), x);
                        let hi = vmull_s8(vget_high_s8(wv[j][i]), x);
                        rj[2 * i] = vpadalq_s16(rj[2 * i], lo);
                        rj[2 * i + 1] = vpadalq_s16(rj[2 * i + 1], hi);
                    }
                }
            }
        }
        for j in 0..NB {
            let c = c0 + j * BLOCK_N;
            // SAFETY: the tile's blocks hold at least one output (c < n).
            let br = unsafe { BlockRegs::new(q, c, o.n) };
            for (r, row) in acc.iter().enumerate() {
                let v = &row[j];
                let sums = [
                    vpaddq_s32(v[0], v[1]),
                    vpaddq_s32(v[2], v[3]),
                    vpaddq_s32(v[4], v[5]),
                    vpaddq_s32(v[6], v[7]),
                ];
                // SAFETY: outputs c .. c + count < n of row r (checked).
                unsafe { requantize_store(sums, &br, q, o.ptr.add(r * o.stride + c)) };
            }
        }
    }

    /// The whole matrix.
    #[target_feature(enable = "neon")]
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
                [(2, 1, [1]), (1, 2, [1, 2])]
            );
        }
    }
}

/// 16 bytes at `p`, or the first `n` of them (the rest zero) when `n < 16`.
///
/// # Safety
/// `p .. p + min(n, 16)` must be readable.
#[inline(always)]
unsafe fn load16(p: *const i8, n: usize) -> int8x16_t {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if n >= 16 {
            vld1q_s8(p)
        } else {
            let mut t = [0i8; 16];
            core::ptr::copy_nonoverlapping(p, t.as_mut_ptr(), n);
            vld1q_s8(t.as_ptr())
        }
    }
}

/// Depthwise, 16 channels at a time: `smlal` of the offset inputs and the weights, widened to
/// 16 bits, into 32-bit accumulators.
///
/// # Safety
/// `job` must have passed `DepthwiseJob::check` with `q`, `out` and `os`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn depthwise(job: &DepthwiseJob, q: &Requant, out: &mut [i8], os: usize) {
    let o = out.as_mut_ptr();
    let px = job.pixels();
    let (c, nt) = (job.channels, job.taps.len());
    let off = vdupq_n_s16(job.input_offset as i16);
    for c0 in (0..c).step_by(16) {
        let n = (c - c0).min(16);
        // SAFETY: c0 < c channels, q checked for c.
        let br = unsafe { BlockRegs::new(q, c0, c) };
        for (r, row_off) in px.row_offsets(0).take(job.rows).enumerate() {
            // SAFETY: the pixel's window start plus c0 is inside the input (`check` bounds
            // every tap of every pixel, channels c0 .. c0 + n).
            let base = unsafe { job.input.as_ptr().add(row_off + c0) };
            let mut acc = [vdupq_n_s32(0); 4];
            for t in 0..nt {
                // SAFETY: as above, and tap t's weights of channels c0 .. c0 + n.
                let (x, w) = unsafe {
                    (
                        load16(base.add(job.taps[t] as usize).cast(), n),
                        load16(job.filter.as_ptr().add(t * c + c0), n),
                    )
                };
                let xl = vaddq_s16(vmovl_s8(vget_low_s8(x)), off);
                let xh = vaddq_s16(vmovl_high_s8(x), off);
                let wl = vmovl_s8(vget_low_s8(w));
                let wh = vmovl_high_s8(w);
                acc[0] = vmlal_s16(acc[0], vget_low_s16(xl), vget_low_s16(wl));
                acc[1] = vmlal_high_s16(acc[1], xl, wl);
                acc[2] = vmlal_s16(acc[2], vget_low_s16(xh), vget_low_s16(wh));
                acc[3] = vmlal_high_s16(acc[3], xh, wh);
            }
            // SAFETY: outputs c0 .. c0 + n of pixel r (checked).
            unsafe { requantize_store(acc, &br, q, o.add(r * os + c0)) };
        }
    }
}

/// TFLM's `MultiplyByQuantizedMultiplierSmallerThanOneExp` on 4 lanes with one multiplier
/// (`sqrdmulh`) and one shift (`neg_e` = the shift, ≤ 0) for every lane.
#[inline]
#[target_feature(enable = "neon")]
fn rescale_uniform(v: int32x4_t, m: int32x4_t, neg_e: int32x4_t) -> int32x4_t {
    let h = vqrdmulhq_s32(v, m);
    let fixup = vshrq_n_s32::<31>(vandq_s32(h, neg_e));
    vrshlq_s32(vqaddq_s32(h, fixup), neg_e)
}

/// Element-wise ADD/SUB, 16 elements at a time; returns how many it computed.
///
/// # Safety
/// `x`, `y` readable and `out` writable for `n` elements (`out` may equal `x` or `y`); `p`
/// within `add_params_supported`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn add_sub(
    p: &ArithParams,
    subtract: bool,
    x: *const i8,
    y: *const i8,
    out: *mut i8,
    n: usize,
) -> usize {
    let left = vdupq_n_s32(p.left_shift);
    let (o1, o2) = (vdupq_n_s32(p.input1_offset), vdupq_n_s32(p.input2_offset));
    let (m1, m2, mo) = (
        vdupq_n_s32(p.input1_multiplier),
        vdupq_n_s32(p.input2_multiplier),
        vdupq_n_s32(p.output_multiplier),
    );
    let (e1, e2, eo) = (
        vdupq_n_s32(p.input1_shift),
        vdupq_n_s32(p.input2_shift),
        vdupq_n_s32(p.output_shift),
    );
    let out_off = vdupq_n_s32(p.output_offset);
    let (lo, hi) = (vdupq_n_s32(p.activation_min), vdupq_n_s32(p.activation_max));
    let widen = |v: int8x16_t| {
        let (l, h) = (vmovl_s8(vget_low_s8(v)), vmovl_high_s8(v));
        [
            vmovl_s16(vget_low_s16(l)),
            vmovl_high_s16(l),
            vmovl_s16(vget_low_s16(h)),
            vmovl_high_s16(h),
        ]
    };
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: elements i .. i + 16 < n of each operand (the caller's guarantee).
        let (a, b) = unsafe { (widen(vld1q_s8(x.add(i))), widen(vld1q_s8(y.add(i)))) };
        let mut r = [vdupq_n_s32(0); 4];
        for k in 0..4 {
            let va = rescale_uniform(vshlq_s32(vaddq_s32(a[k], o1), left), m1, e1);
            let vb = rescale_uniform(vshlq_s32(vaddq_s32(b[k], o2), left), m2, e2);
            let raw = if subtract {
                vsubq_s32(va, vb)
            } else {
                vaddq_s32(va, vb)
            };
            let v = vaddq_s32(rescale_uniform(raw, mo, eo), out_off);
            r[k] = vminq_s32(vmaxq_s32(v, lo), hi);
        }
        let h0 = vcombine_s16(vmovn_s32(r[0]), vmovn_s32(r[1]));
        let h1 = vcombine_s16(vmovn_s32(r[2]), vmovn_s32(r[3]));
        // SAFETY: elements i .. i + 16 < n of the output.
        unsafe { vst1q_s8(out.add(i), vcombine_s8(vmovn_s16(h0), vmovn_s16(h1))) };
        i += 16;
    }
    i
}

/// The pooling sum compiled with Advanced SIMD (see `super::pool_sum_body`).
#[target_feature(enable = "neon")]
pub(super) fn pool_sum(pixels: &[i8], acc: &mut [i32]) {
    super::pool_sum_body(pixels, acc)
}

/// The pooling maximum compiled with Advanced SIMD (see `super::pool_max_body`).
#[target_feature(enable = "neon")]
pub(super) fn pool_max(pixels: &[i8], acc: &mut [i8]) {
    super::pool_max_body(pixels, acc)
}
