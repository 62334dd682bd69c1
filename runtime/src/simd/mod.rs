//! SIMD inner loops for the int8 hot paths, one module per instruction set, chosen at run time.
//!
//! The portable reference kernels in [`crate::ops`] define every result; the kernels here only
//! compute the same bytes faster, and `simd::exact_tests` proves it on random shapes for every
//! instruction set the test machine has.
//!
//! # Choosing an instruction set
//! An [`Isa`] is a token: holding one proves the CPU runs its instructions, which is what makes
//! the `unsafe` calls into `#[target_feature]` functions sound. [`Isa::best`] detects the best one
//! at run time with the `std` feature (`is_x86_feature_detected!`,
//! `is_aarch64_feature_detected!`), and from the compile-time `target_feature`s otherwise (e.g.
//! `-C target-cpu=native` on an embedded Linux build, `+dotprod` on a Cortex-A76).
//!
//! | tier | module | int8 multiply-accumulate |
//! |---|---|---|
//! | [`Tier::Sse41`] | `x86` | `pmaddwd` on sign-extended bytes, 4 outputs per register |
//! | [`Tier::Avx2`] | `x86` | `vpmaddwd`, 8 per register |
//! | [`Tier::Avx512Vnni`] | `x86` | `vpdpbusd` (u8 × i8, 4-way), 16 per register |
//! | [`Tier::Neon`] | `neon` | `smull` + `sadalp` |
//! | [`Tier::NeonDot`] | `neon` | `sdot` (4-way) |
//!
//! Cortex-M tiers (DSP extension `SMLAD`, Helium) slot in the same way: a `Tier` variant, a module
//! (`arm_dsp.rs`, `mve.rs`) with the same kernel signatures, an arm in each dispatching `match`
//! below, and detection from `cfg!(target_feature = ...)` in [`Isa::best`]. `mote inspect` and
//! `mote bench` name the kernel each op runs with [`crate::ops::kernel_name`]; with `std`, the
//! environment variable `MOTE_SIMD` lowers the tier (`avx2`, `sse4.1`, `reference`, ...) to compare.
//!
//! # Kernels
//! - [`gemm`]: CONV_2D (implicit im2col: windows read in place from a band of padded input
//!   rows, see `ops::conv`) and FULLY_CONNECTED, tiles of rows × blocks of 16 outputs.
//! - `gemv`: FULLY_CONNECTED with one batch on AVX-512 VNNI, the packed weights read front to
//!   back (one block of 16 outputs at a time), which is what a one-row layer's speed depends on.
//! - [`depthwise`]: DEPTHWISE_CONV_2D (depth multiplier 1), pairs of taps per 16-bit multiply-add.
//! - [`add_sub`] / [`add_sub_assign`]: ADD and SUB of equally shaped operands (also the ADD fused
//!   after a convolution).
//! - [`pool_sum`] / [`pool_max`]: AVERAGE_POOL_2D and MAX_POOL_2D across contiguous channels.
//!
//! Every kernel ends in TFLM's requantization (`MultiplyByQuantizedMultiplier`, both roundings)
//! on vectors. The AVX-512 tier rounds in one step instead of two when a call's bounds (the
//! reduction length, the biases, the shifts) prove that the 32-bit sums cannot overflow: the
//! result is the same integer.
//!
//! # Data layouts chosen by the compiler
//! Matrix kernels (CONV_2D, FULLY_CONNECTED) read weights packed offline by [`pack_weights`] into
//! blocks of 16 outputs × 4 reduction bytes ([`packed_len`] bytes), and a bias with the input zero
//! point folded in by [`fold_bias`] (exact: integer sums are associative modulo 2³²), so the inner
//! loop multiplies raw activation bytes and nothing is repacked at invoke time.
//!
//! # Memory
//! No heap. Activations are staged in stack buffers that are never cleared ([`with_stage`], at
//! most [`STAGE_CAPACITY`] bytes, written front to back through [`StageWriter`]) plus a table of
//! [`MAX_OFFSETS`] step offsets: an invoke on these tiers needs about 80 KiB of stack. Shapes
//! whose smallest unit does not fit run the reference kernels.

#![allow(unsafe_code)]

#[cfg(any(feature = "std", test))]
extern crate std;

/// Cortex-M DSP-extension kernels (`SMLAD`; issue 5). Portable stand-ins for the instructions
/// elsewhere, so they are tested on every machine.
pub mod arm_dsp;
/// Cortex-M55 Helium (MVE) kernels (issue 5). Portable stand-ins for the vector loops elsewhere,
/// so they are tested on every machine.
pub mod mve;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod x86;

#[cfg(test)]
mod exact_tests;
pub(crate) mod gemv;

use core::mem::MaybeUninit;

use crate::error::{Error, Location};
use crate::ops::arith::{add_element, sub_element, ArithParams};
use crate::quant::multiply_by_quantized_multiplier;

/// An instruction-set tier the SIMD kernels are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// x86 SSE4.1 (128-bit).
    Sse41,
    /// x86 AVX2 (256-bit).
    Avx2,
    /// x86 AVX-512 F/BW/VL with VNNI (`vpdpbusd`).
    Avx512Vnni,
    /// aarch64 Advanced SIMD.
    Neon,
    /// aarch64 Advanced SIMD with the dot-product extension (`sdot`).
    NeonDot,
}

impl Tier {
    /// The kernel name shown by `mote inspect` / `mote bench` for this tier.
    pub const fn name(self) -> &'static str {
        match self {
            Tier::Sse41 => "sse4.1",
            Tier::Avx2 => "avx2",
            Tier::Avx512Vnni => "avx512-vnni",
            Tier::Neon => "neon",
            Tier::NeonDot => "neon-dotprod",
        }
    }

    /// How the matrix kernels of this tier read activation bytes.
    pub const fn encoding(self) -> Encoding {
        match self {
            Tier::Avx512Vnni => Encoding::Unsigned,
            _ => Encoding::Signed,
        }
    }
}

/// How activation bytes are fed to the matrix kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The int8 values themselves.
    Signed,
    /// `x + 128` as an unsigned byte (`x ^ 0x80`): what `vpdpbusd` multiplies.
    Unsigned,
}

/// A SIMD tier this CPU is known to run (see the module documentation).
///
/// Only [`Isa::best`] and [`Isa::available`] make one, after checking the CPU; that is the
/// invariant every `unsafe` call in this module relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Isa(Tier);

impl Isa {
    /// The tier.
    pub const fn tier(self) -> Tier {
        self.0
    }

    /// The kernel name of the tier (`avx2`, `neon-dotprod`, ...).
    pub const fn name(self) -> &'static str {
        self.0.name()
    }

    /// The tier the kernels use: the best this CPU runs, or `None` when only the portable
    /// kernels apply.
    ///
    /// With the `std` feature the choice is made once per process, and the environment
    /// variable `MOTE_SIMD` can lower it for comparisons: a tier name (`avx2`, `sse4.1`,
    /// `neon`, ...) that this CPU runs, or `reference` for the portable kernels only.
    pub fn best() -> Option<Isa> {
        #[cfg(feature = "std")]
        {
            use core::sync::atomic::{AtomicU8, Ordering};
            // 0: not chosen yet; 1: none; 2 + i: ALL_TIERS[i].
            static CHOICE: AtomicU8 = AtomicU8::new(0);
            match CHOICE.load(Ordering::Relaxed) {
                0 => {}
                1 => return None,
                v => return ALL_TIERS.get(usize::from(v) - 2).map(|&t| Isa(t)),
            }
            let chosen = Isa::choose(std::env::var("MOTE_SIMD").ok().as_deref());
            let code = chosen.map_or(1, |isa| {
                2 + ALL_TIERS.iter().position(|&t| t == isa.0).unwrap_or(0) as u8
            });
            CHOICE.store(code, Ordering::Relaxed);
            chosen
        }
        #[cfg(not(feature = "std"))]
        {
            Isa::available().into_iter().flatten().next()
        }
    }

    /// The tier `request` names if this CPU runs it (`reference` for none), else the best one.
    pub fn choose(request: Option<&str>) -> Option<Isa> {
        let available = Isa::available();
        let best = available.into_iter().flatten().next();
        match request {
            Some("reference") | Some("off") => None,
            Some(name) => available
                .into_iter()
                .flatten()
                .find(|isa| isa.name() == name)
                .or(best),
            None => best,
        }
    }

    /// Every tier this CPU runs, best first (at most four; the rest `None`).
    pub fn available() -> [Option<Isa>; 4] {
        let mut out = [None; 4];
        let mut n = 0;
        for tier in ALL_TIERS {
            if n < out.len() && supported(tier) {
                out[n] = Some(Isa(tier));
                n += 1;
            }
        }
        out
    }
}

/// Every tier, best first within each architecture.
const ALL_TIERS: [Tier; 5] = [
    Tier::Avx512Vnni,
    Tier::Avx2,
    Tier::Sse41,
    Tier::NeonDot,
    Tier::Neon,
];

/// Whether this CPU runs `tier`: run-time detection with `std` (and in tests), compile-time
/// target features otherwise.
#[allow(unreachable_code)]
fn supported(tier: Tier) -> bool {
    #[cfg(all(
        any(target_arch = "x86", target_arch = "x86_64"),
        any(feature = "std", test)
    ))]
    {
        return match tier {
            Tier::Sse41 => std::is_x86_feature_detected!("sse4.1"),
            Tier::Avx2 => std::is_x86_feature_detected!("avx2"),
            Tier::Avx512Vnni => {
                std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512vl")
                    && std::is_x86_feature_detected!("avx512vnni")
            }
            _ => false,
        };
    }
    #[cfg(all(
        any(target_arch = "x86", target_arch = "x86_64"),
        not(any(feature = "std", test))
    ))]
    {
        return match tier {
            Tier::Sse41 => cfg!(target_feature = "sse4.1"),
            Tier::Avx2 => cfg!(target_feature = "avx2"),
            Tier::Avx512Vnni => cfg!(all(
                target_feature = "avx512f",
                target_feature = "avx512bw",
                target_feature = "avx512vl",
                target_feature = "avx512vnni"
            )),
            _ => false,
        };
    }
    #[cfg(all(target_arch = "aarch64", any(feature = "std", test)))]
    {
        return match tier {
            Tier::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            Tier::NeonDot => {
                std::arch::is_aarch64_feature_detected!("neon")
                    && std::arch::is_aarch64_feature_detected!("dotprod")
            }
            _ => false,
        };
    }
    #[cfg(all(target_arch = "aarch64", not(any(feature = "std", test))))]
    {
        return match tier {
            Tier::Neon => cfg!(target_feature = "neon"),
            Tier::NeonDot => cfg!(all(target_feature = "neon", target_feature = "dotprod")),
            _ => false,
        };
    }
    let _ = tier;
    false
}

fn simd_error(field: &'static str) -> Error {
    Error::InvalidField {
        at: Location::Arena,
        field,
    }
}

// ---------------------------------------------------------------------------------------------
// Offline weight packing (used by the compiler and the tests; no allocation).

/// Outputs per packed block.
pub const BLOCK_N: usize = 16;
/// Reduction bytes per packed step.
pub const BLOCK_K: usize = 4;

/// Number of 4-byte reduction steps covering `k` bytes.
pub const fn k_steps(k: usize) -> usize {
    k.div_ceil(BLOCK_K)
}

/// Bytes of an `n × k` weight matrix packed by [`pack_weights`], or `None` on overflow.
pub fn packed_len(n: usize, k: usize) -> Option<usize> {
    n.div_ceil(BLOCK_N)
        .checked_mul(k_steps(k))?
        .checked_mul(BLOCK_N * BLOCK_K)
}

/// Packs a row-major `n × k` int8 matrix (one row per output: OHWI conv filters, `[out, in]`
/// fully-connected weights) into the layout every matrix kernel reads:
///
/// ```text
/// block b (outputs 16b .. 16b+15), step s (reduction bytes 4s .. 4s+3):
///     packed[(b · steps + s) · 64 + 4 · j + i] = w[16b + j][4s + i]    (0 past n or k)
/// ```
pub fn pack_weights(w: &[i8], n: usize, k: usize, packed: &mut [i8]) -> Result<(), Error> {
    let len = packed_len(n, k).ok_or(simd_error("packed weight size"))?;
    if n.checked_mul(k) != Some(w.len()) || packed.len() != len {
        return Err(simd_error("packed weight length"));
    }
    let steps = k_steps(k);
    packed.fill(0);
    for (row, wr) in w.chunks_exact(k.max(1)).enumerate().take(n) {
        let (b, j) = (row / BLOCK_N, row % BLOCK_N);
        for (kk, &v) in wr.iter().enumerate() {
            let (s, i) = (kk / BLOCK_K, kk % BLOCK_K);
            packed[(b * steps + s) * BLOCK_N * BLOCK_K + BLOCK_K * j + i] = v;
        }
    }
    Ok(())
}

/// The biases the matrix kernels start from: for each output `c`,
/// `signed[c] = bias[c] + input_offset · Σₖ w[c][k]` and
/// `unsigned[c] = signed[c] − 128 · Σₖ w[c][k]`, all modulo 2³² like TFLM's accumulator.
///
/// With them, `Σₖ w·(x + input_offset) + bias` equals `Σₖ w·x + signed` (and `Σₖ w·(x + 128) +
/// unsigned`), when padded taps hold the input zero point (so that `x + input_offset = 0` there).
pub fn fold_bias(
    w: &[i8],
    n: usize,
    k: usize,
    bias: Option<&[i32]>,
    input_offset: i32,
    signed: &mut [i32],
    unsigned: &mut [i32],
) -> Result<(), Error> {
    if n.checked_mul(k) != Some(w.len())
        || signed.len() != n
        || unsigned.len() != n
        || bias.is_some_and(|b| b.len() != n)
    {
        return Err(simd_error("folded bias length"));
    }
    for c in 0..n {
        let row = &w[c * k..(c + 1) * k];
        let sum = row.iter().fold(0i32, |a, &v| a.wrapping_add(i32::from(v)));
        let b = bias.map_or(0, |b| b[c]);
        signed[c] = b.wrapping_add(input_offset.wrapping_mul(sum));
        unsigned[c] = signed[c].wrapping_sub(sum.wrapping_mul(128));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Matrix kernel: out = requantize(A · Wᵀ + bias).

/// The output stage of a matrix kernel: TFLM's per-channel requantization.
#[derive(Debug, Clone, Copy)]
pub struct Requant<'a> {
    /// Start value of each output's accumulator (`n` entries; for the matrix kernels a folded
    /// bias for the encoding), or `None` for zero.
    pub bias: Option<&'a [i32]>,
    /// Q31 multipliers (≥ 0): `n` entries, or 1 for all outputs.
    pub multipliers: &'a [i32],
    /// Shifts in `[-31, 30]`, as many as `multipliers`.
    pub shifts: &'a [i32],
    /// Output zero point.
    pub output_offset: i32,
    /// Lower clamp, in `[-128, 127]`.
    pub act_min: i32,
    /// Upper clamp, in `[act_min, 127]`.
    pub act_max: i32,
}

impl Requant<'_> {
    /// Multiplier and shift of output `c`.
    #[inline(always)]
    fn quant(&self, c: usize) -> (i32, i32) {
        let i = if self.multipliers.len() == 1 { 0 } else { c };
        // `check`: `shifts` is as long as `multipliers`, which holds 1 or `n` entries (c < n);
        // the fallback is never taken after it and keeps this free of panic paths.
        match (self.multipliers.get(i), self.shifts.get(i)) {
            (Some(&m), Some(&s)) => (m, s),
            _ => (0, 0),
        }
    }

    /// The start value of output `c`'s accumulator.
    #[inline(always)]
    fn bias_of(&self, c: usize) -> i32 {
        // `check`: a bias holds `n` entries (c < n).
        self.bias.and_then(|b| b.get(c)).copied().unwrap_or(0)
    }

    /// The scalar output stage (TFLM's), for output `c`.
    #[inline(always)]
    fn apply(&self, acc: i32, c: usize) -> i8 {
        let (m, s) = self.quant(c);
        let v = multiply_by_quantized_multiplier(acc, m, s).wrapping_add(self.output_offset);
        v.max(self.act_min).min(self.act_max) as i8
    }

    fn check(&self, n: usize) -> Result<(), Error> {
        // Non-short-circuiting folds, which the compiler vectorizes.
        let values = self.multipliers.iter().fold(true, |ok, &m| ok & (m >= 0))
            && self
                .shifts
                .iter()
                .fold(true, |ok, &s| ok & (-31..=30).contains(&s));
        if values {
            self.check_lengths(n)
        } else {
            Err(simd_error("requantization parameters"))
        }
    }

    /// [`Requant::check`] without the per-output multiplier and shift ranges: the array lengths
    /// (what the kernels' memory accesses rely on) and the clamp. Out-of-range multipliers or
    /// shifts give wrong numbers, never an out-of-bounds access or a panic (the output stages
    /// use wrapping or saturating arithmetic and vector shifts).
    fn check_lengths(&self, n: usize) -> Result<(), Error> {
        let per = self.multipliers.len();
        let ok = self.bias.is_none_or(|b| b.len() == n)
            && (per == 1 || per == n)
            && self.shifts.len() == per
            && (-128..=127).contains(&self.act_min)
            && (self.act_min..=127).contains(&self.act_max);
        if ok {
            Ok(())
        } else {
            Err(simd_error("requantization parameters"))
        }
    }
}

/// The activation matrix `A` of a matrix-kernel call, read in place.
///
/// Row `r` (`first + r` counted from the start) is the output pixel at line `(first + r) /
/// width`, column `(first + r) % width`; its reduction step `s` is the 4 bytes at
/// `line · y_stride + column · x_stride + k_offset(s)` of `data`, where `k_offset(s)` is
/// `k_offsets[s]`, or `4·s` when `k_offsets` is `None`. A plain row-major matrix is one line
/// (`width = rows`, `x_stride` = row length); a convolution over a padded input reads each
/// pixel's window straight from the input (implicit im2col).
#[derive(Debug, Clone, Copy)]
pub struct MatrixA<'a> {
    /// The bytes, in the kernel's [`Encoding`].
    pub data: &'a [u8],
    /// Index of the first row.
    pub first: usize,
    /// Number of rows.
    pub rows: usize,
    /// Rows per line (≥ 1).
    pub width: usize,
    /// Bytes between neighbouring rows of a line.
    pub x_stride: usize,
    /// Bytes between lines.
    pub y_stride: usize,
    /// Reduction length in 4-byte steps.
    pub k_steps: usize,
    /// Byte offset of each step within a row, or `None` for `4·s`.
    pub k_offsets: Option<&'a [u32]>,
}

impl MatrixA<'_> {
    /// Byte offset of row `r` (counted from `first`), or `None` on overflow.
    #[inline(always)]
    pub(crate) fn row_offset(&self, r: usize) -> Option<usize> {
        let i = self.first.checked_add(r)?;
        let (line, col) = line_col(i, self.width.max(1));
        line.checked_mul(self.y_stride)?
            .checked_add(col.checked_mul(self.x_stride)?)
    }

    /// The byte offsets of rows `r0, r0 + 1, ..` (counted from `first`), one division for the
    /// first and additions after it; the caller stops at the operand's last row.
    #[inline(always)]
    #[cfg_attr(
        not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")),
        allow(dead_code)
    )]
    pub(crate) fn row_offsets(&self, r0: usize) -> impl Iterator<Item = usize> + '_ {
        let w = self.width.max(1);
        let i = self.first.wrapping_add(r0);
        let (mut line, mut col) = line_col(i, w);
        core::iter::from_fn(move || {
            let off = line
                .wrapping_mul(self.y_stride)
                .wrapping_add(col.wrapping_mul(self.x_stride));
            col += 1;
            if col == w {
                col = 0;
                line += 1;
            }
            Some(off)
        })
    }

    fn check(&self) -> Result<(), Error> {
        let bad = || simd_error("matrix operand shape");
        if self.width == 0 {
            return Err(bad());
        }
        let k_end = match self.k_offsets {
            None => self.k_steps.checked_mul(BLOCK_K).ok_or(bad())?,
            Some(offs) => {
                if offs.len() != self.k_steps {
                    return Err(bad());
                }
                // A u32 fold (vectorized) rather than a usize `max`; an empty table reads nothing.
                let max = offs.iter().fold(0u32, |m, &o| m.max(o)) as usize;
                if offs.is_empty() {
                    0
                } else {
                    max + BLOCK_K
                }
            }
        };
        if self.rows == 0 || self.k_steps == 0 {
            return Ok(());
        }
        // The farthest row: the last one, or the end of the line before the last.
        let last = self.rows - 1;
        let mut far = self.row_offset(last).ok_or(bad())?;
        let i = self.first + last;
        let line = line_col(i, self.width).0;
        if line > line_col(self.first, self.width).0 {
            let end_of_prev = line * self.width - 1 - self.first;
            far = far.max(self.row_offset(end_of_prev).ok_or(bad())?);
        }
        match far.checked_add(k_end) {
            Some(end) if end <= self.data.len() => Ok(()),
            _ => Err(bad()),
        }
    }
}

/// `(i / w, i % w)`, without the divisions when `i < w` (a matrix of one line, as every
/// FULLY_CONNECTED operand is: a 64-bit division costs tens of cycles, on every call). `w ≥ 1`.
#[inline(always)]
fn line_col(i: usize, w: usize) -> (usize, usize) {
    if i < w {
        (0, i)
    } else {
        (i / w, i % w)
    }
}

/// Checks the weights and output of a matrix-kernel call with `rows × n` outputs.
fn check_gemm(
    a: &MatrixA,
    packed: &[i8],
    n: usize,
    out: &[i8],
    out_stride: usize,
) -> Result<(), Error> {
    a.check()?;
    let need_w = n
        .div_ceil(BLOCK_N)
        .checked_mul(a.k_steps)
        .and_then(|v| v.checked_mul(BLOCK_N * BLOCK_K));
    let need_out = match a.rows.checked_sub(1) {
        None => Some(0),
        Some(r) => r.checked_mul(out_stride).and_then(|v| v.checked_add(n)),
    };
    let ok = need_w.is_some_and(|v| v <= packed.len())
        && need_out.is_some_and(|v| v <= out.len())
        && (a.rows <= 1 || n <= out_stride);
    if ok {
        Ok(())
    } else {
        Err(simd_error("matrix kernel shape"))
    }
}

/// `out[r·out_stride + c] = requantize(Σₛ A[r][s] · W[c][s] + bias[c])` for `a.rows × n`
/// outputs, with `A` in `isa`'s [`Encoding`] and `W` packed by [`pack_weights`].
///
/// Checks every length and offset once (an error, never a panic), then runs the tier's kernel.
pub fn gemm(
    isa: Isa,
    a: &MatrixA,
    packed: &[i8],
    n: usize,
    q: &Requant,
    out: &mut [i8],
    out_stride: usize,
) -> Result<(), Error> {
    q.check(n)?;
    gemm_checked_quant(isa, a, packed, n, q, out, out_stride)
}

/// [`gemm`] for requantization parameters whose values (multipliers ≥ 0, shifts in
/// `[-31, 30]`) the caller has checked already — for an op of a loaded model, its `validate` in
/// `Model::from_bytes` did, and the model's bytes never change. Skips [`gemm`]'s per-output
/// scan of them (≈ 200 instructions for 128 outputs); every length and offset is still checked.
pub(crate) fn gemm_checked_quant(
    isa: Isa,
    a: &MatrixA,
    packed: &[i8],
    n: usize,
    q: &Requant,
    out: &mut [i8],
    out_stride: usize,
) -> Result<(), Error> {
    check_gemm(a, packed, n, out, out_stride)?;
    q.check_lengths(n)?;
    if a.rows == 0 || n == 0 {
        return Ok(());
    }
    match isa.tier() {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Tier::Sse41 | Tier::Avx2 | Tier::Avx512Vnni => {
            // SAFETY: `isa` proves the CPU runs the tier; `check_gemm` and `check_lengths`
            // proved every read of `a`, `packed` and `q` and every write of `out` the kernels
            // make is in bounds.
            unsafe { x86::gemm(isa.tier(), a, packed, n, q, out, out_stride) }
        }
        #[cfg(target_arch = "aarch64")]
        Tier::Neon | Tier::NeonDot => {
            // SAFETY: as above.
            unsafe { neon::gemm(isa.tier(), a, packed, n, q, out, out_stride) }
        }
        #[allow(unreachable_patterns)]
        _ => gemm_portable(isa.tier().encoding(), a, packed, n, q, out, out_stride),
    }
    Ok(())
}

/// The matrix kernel in plain Rust, reading the same operands (the tests' oracle). Does nothing
/// when the operands are inconsistent.
pub fn gemm_portable(
    enc: Encoding,
    a: &MatrixA,
    packed: &[i8],
    n: usize,
    q: &Requant,
    out: &mut [i8],
    out_stride: usize,
) {
    if check_gemm(a, packed, n, out, out_stride).is_err() || q.check(n).is_err() {
        return;
    }
    let steps = a.k_steps;
    let block = BLOCK_N * BLOCK_K;
    // `check_gemm` proved every range below in bounds (row `r`'s outputs end by
    // `(rows - 1)·out_stride + n ≤ out.len()`, block `b`'s `steps` packed blocks lie in `packed`,
    // each step's 4 bytes lie in `a.data`); the `get`s cannot fail and only keep this kernel
    // free of panic paths.
    for r in 0..a.rows {
        let base = a.row_offset(r).unwrap_or(0);
        let Some(out_row) = out.get_mut(r * out_stride..).and_then(|o| o.get_mut(..n)) else {
            return;
        };
        for (c, o) in out_row.iter_mut().enumerate() {
            let (b, j) = (c / BLOCK_N, c % BLOCK_N);
            let mut acc = q.bias_of(c);
            let blocks = packed.get(b * steps * block..).unwrap_or(&[]);
            for (s, w) in blocks.chunks_exact(block).take(steps).enumerate() {
                let off = base
                    + a.k_offsets
                        .map_or(BLOCK_K * s, |o| o.get(s).map_or(0, |&o| o as usize));
                let (Some(x), Some(w)) = (a.data.get(off..off + BLOCK_K), w.get(BLOCK_K * j..))
                else {
                    continue;
                };
                for (&xb, &wv) in x.iter().zip(w) {
                    let x = match enc {
                        Encoding::Signed => i32::from(xb as i8),
                        Encoding::Unsigned => i32::from(xb),
                    };
                    acc = acc.wrapping_add(x * i32::from(wv));
                }
            }
            *o = q.apply(acc, c);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Depthwise kernel: out = requantize(Σ_taps (x + input_offset) · w + bias), channel by channel.

/// A depthwise convolution (depth multiplier 1) over staged input, read in place.
///
/// Output pixel `r` (line `r / width`, column `r % width`) reads, for tap `t` and channel `c`, the
/// signed byte at `line · y_stride + column · x_stride + taps[t] + c` of `input`; the filter holds
/// `taps.len() × channels` bytes, tap-major (TFLite's `1 × H × W × C`).
#[derive(Debug, Clone, Copy)]
pub struct DepthwiseJob<'a> {
    /// The staged input (int8 bytes; the zero point where a tap falls in the padding).
    pub input: &'a [u8],
    /// Output pixels.
    pub rows: usize,
    /// Pixels per line (≥ 1).
    pub width: usize,
    /// Bytes between neighbouring pixels' windows in a line.
    pub x_stride: usize,
    /// Bytes between lines.
    pub y_stride: usize,
    /// Byte offset of each tap from the pixel's window start.
    pub taps: &'a [u32],
    /// Channels (input = output).
    pub channels: usize,
    /// The filter, `taps.len() × channels`.
    pub filter: &'a [i8],
    /// `−input zero point`, in `[-127, 128]`.
    pub input_offset: i32,
}

impl DepthwiseJob<'_> {
    /// The operand view of the pixels (for their offsets).
    pub(crate) fn pixels(&self) -> MatrixA<'_> {
        MatrixA {
            data: self.input,
            first: 0,
            rows: self.rows,
            width: self.width,
            x_stride: self.x_stride,
            y_stride: self.y_stride,
            k_steps: 0,
            k_offsets: None,
        }
    }

    fn check(&self, q: &Requant, out: &[i8], out_stride: usize) -> Result<(), Error> {
        let bad = || simd_error("depthwise kernel shape");
        let reach = self
            .taps
            .iter()
            .map(|&t| t as usize)
            .max()
            .unwrap_or(0)
            .checked_add(self.channels)
            .ok_or(bad())?;
        // The pixel view with one "step" spanning every tap's channels.
        let span = MatrixA {
            k_steps: 1,
            k_offsets: None,
            ..self.pixels()
        };
        let fits = |end: usize| end <= self.input.len();
        let far = if self.rows == 0 {
            0
        } else {
            let last = self.rows - 1;
            let mut far = span.row_offset(last).ok_or(bad())?;
            let w = self.width.max(1);
            if last / w > 0 {
                far = far.max(span.row_offset(last / w * w - 1).ok_or(bad())?);
            }
            far
        };
        let need_out = match self.rows.checked_sub(1) {
            None => Some(0),
            Some(r) => r
                .checked_mul(out_stride)
                .and_then(|v| v.checked_add(self.channels)),
        };
        let ok = self.width > 0
            && (-127..=128).contains(&self.input_offset)
            && self.taps.len().checked_mul(self.channels) == Some(self.filter.len())
            && (self.rows == 0 || far.checked_add(reach).is_some_and(fits))
            && need_out.is_some_and(|v| v <= out.len())
            && (self.rows <= 1 || self.channels <= out_stride);
        q.check(self.channels)?;
        if ok {
            Ok(())
        } else {
            Err(bad())
        }
    }
}

/// `out[r·out_stride + c] = requantize(Σₜ (x + input_offset) · w[t][c] + bias[c])` for every
/// output pixel `r` and channel `c` of `job`.
///
/// Checks every length and offset once (an error, never a panic), then runs the tier's kernel.
pub fn depthwise(
    isa: Isa,
    job: &DepthwiseJob,
    q: &Requant,
    out: &mut [i8],
    out_stride: usize,
) -> Result<(), Error> {
    job.check(q, out, out_stride)?;
    if job.rows == 0 || job.channels == 0 {
        return Ok(());
    }
    match isa.tier() {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Tier::Sse41 | Tier::Avx2 | Tier::Avx512Vnni if job.taps.len() <= x86::MAX_TAPS => {
            // SAFETY: `isa` proves the CPU runs the tier; `check` proved every read of the
            // input and filter and every write of `out` the kernels make is in bounds.
            unsafe { x86::depthwise(isa.tier(), job, q, out, out_stride) }
        }
        #[cfg(target_arch = "aarch64")]
        Tier::Neon | Tier::NeonDot => {
            // SAFETY: as above.
            unsafe { neon::depthwise(job, q, out, out_stride) }
        }
        #[allow(unreachable_patterns)]
        _ => depthwise_portable(job, q, out, out_stride),
    }
    Ok(())
}

/// The depthwise kernel in plain Rust (the tests' oracle). Does nothing when the operands are
/// inconsistent.
pub fn depthwise_portable(job: &DepthwiseJob, q: &Requant, out: &mut [i8], out_stride: usize) {
    if job.check(q, out, out_stride).is_err() {
        return;
    }
    let px = job.pixels();
    // `check` proved every read of the input and filter and every write of `out` in bounds;
    // the `get`s cannot fail and only keep this kernel free of panic paths.
    for r in 0..job.rows {
        let base = px.row_offset(r).unwrap_or(0);
        let Some(out_row) = out
            .get_mut(r * out_stride..)
            .and_then(|o| o.get_mut(..job.channels))
        else {
            return;
        };
        for (c, o) in out_row.iter_mut().enumerate() {
            let mut acc = q.bias_of(c);
            let filter = job
                .filter
                .get(c..)
                .unwrap_or(&[])
                .iter()
                .step_by(job.channels);
            for (&off, &w) in job.taps.iter().zip(filter) {
                let x = job
                    .input
                    .get(base + off as usize + c)
                    .map_or(0, |&x| x as i8);
                acc = acc.wrapping_add(i32::from(w) * (i32::from(x) + job.input_offset));
            }
            *o = q.apply(acc, c);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Element-wise ADD / SUB (TFLM's int8 recipe, per-tensor parameters).

/// Whether the vector ADD/SUB kernels handle `p` (TFLM's ranges: `left_shift` in `0..=20`,
/// multipliers ≥ 0, shifts in `-31..=0`); others run the portable loop.
fn add_params_supported(p: &ArithParams) -> bool {
    (0..=20).contains(&p.left_shift)
        && [
            (p.input1_multiplier, p.input1_shift),
            (p.input2_multiplier, p.input2_shift),
            (p.output_multiplier, p.output_shift),
        ]
        .iter()
        .all(|&(m, s)| m >= 0 && (-31..=0).contains(&s))
}

/// `out[i] = ADD(x[i], y[i])` (or SUB when `subtract`) with TFLM's int8 recipe
/// ([`crate::ops::arith::add_element`]); the three slices must be equally long.
pub fn add_sub(
    isa: Isa,
    p: &ArithParams,
    subtract: bool,
    x: &[i8],
    y: &[i8],
    out: &mut [i8],
) -> Result<(), Error> {
    if x.len() != out.len() || y.len() != out.len() {
        return Err(simd_error("element-wise operand length"));
    }
    let n = out.len();
    // SAFETY: the three slices hold `n` elements; `out` does not overlap `x` or `y` (Rust
    // borrows), and the kernels read each element before writing it anyway.
    unsafe {
        add_sub_raw(
            isa,
            p,
            subtract,
            x.as_ptr(),
            y.as_ptr(),
            out.as_mut_ptr(),
            n,
        )
    };
    Ok(())
}

/// ADD or SUB whose result replaces `acc`: `acc[i] = op(acc[i], other[i])` when `acc_first`,
/// else `op(other[i], acc[i])` (the in-place form, when the output aliases an operand).
pub fn add_sub_assign(
    isa: Isa,
    p: &ArithParams,
    subtract: bool,
    acc: &mut [i8],
    other: &[i8],
    acc_first: bool,
) -> Result<(), Error> {
    if acc.len() != other.len() {
        return Err(simd_error("element-wise operand length"));
    }
    let n = acc.len();
    let o = acc.as_mut_ptr();
    let (x, y) = if acc_first {
        (o.cast_const(), other.as_ptr())
    } else {
        (other.as_ptr(), o.cast_const())
    };
    // SAFETY: all pointers cover `n` elements; the kernels read element `i` of both operands
    // before writing element `i` of the output, so the output may alias an operand.
    unsafe { add_sub_raw(isa, p, subtract, x, y, o, n) };
    Ok(())
}

/// # Safety
/// `x`, `y` readable and `out` writable for `n` elements; `out` may equal `x` or `y` exactly.
unsafe fn add_sub_raw(
    isa: Isa,
    p: &ArithParams,
    subtract: bool,
    x: *const i8,
    y: *const i8,
    out: *mut i8,
    n: usize,
) {
    let done = if add_params_supported(p) {
        match isa.tier() {
            #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
            // SAFETY: `isa` proves the tier; the caller guarantees the pointers.
            Tier::Sse41 | Tier::Avx2 | Tier::Avx512Vnni => unsafe {
                x86::add_sub(isa.tier(), p, subtract, x, y, out, n)
            },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: as above.
            Tier::Neon | Tier::NeonDot => unsafe { neon::add_sub(p, subtract, x, y, out, n) },
            #[allow(unreachable_patterns)]
            _ => 0,
        }
    } else {
        0
    };
    for i in done..n {
        // SAFETY: i < n (see above); element i is read before it is written.
        unsafe {
            let (a, b) = (*x.add(i), *y.add(i));
            *out.add(i) = if subtract {
                sub_element(p, a, b)
            } else {
                add_element(p, a, b)
            };
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pooling: channel-contiguous sums and maxima over a window's pixels.

/// `acc[c] += Σₚ pixels[p · acc.len() + c]` (wrapping, like TFLM's int32 sum) over every whole
/// pixel of `pixels` — one window row of an NHWC tensor — vectorized across channels.
pub fn pool_sum(isa: Isa, pixels: &[i8], acc: &mut [i32]) {
    match isa.tier() {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        // SAFETY: `isa` proves the CPU runs the tier's instructions; the body is safe Rust.
        Tier::Sse41 | Tier::Avx2 | Tier::Avx512Vnni => unsafe {
            x86::pool_sum(isa.tier(), pixels, acc)
        },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above.
        Tier::Neon | Tier::NeonDot => unsafe { neon::pool_sum(pixels, acc) },
        #[allow(unreachable_patterns)]
        _ => pool_sum_body(pixels, acc),
    }
}

/// `acc[c] = max(acc[c], maxₚ pixels[p · acc.len() + c])` over every whole pixel of `pixels`.
pub fn pool_max(isa: Isa, pixels: &[i8], acc: &mut [i8]) {
    match isa.tier() {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        // SAFETY: `isa` proves the CPU runs the tier's instructions; the body is safe Rust.
        Tier::Sse41 | Tier::Avx2 | Tier::Avx512Vnni => unsafe {
            x86::pool_max(isa.tier(), pixels, acc)
        },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above.
        Tier::Neon | Tier::NeonDot => unsafe { neon::pool_max(pixels, acc) },
        #[allow(unreachable_patterns)]
        _ => pool_max_body(pixels, acc),
    }
}

/// Channels a pooling body keeps in one register block.
const POOL_BLOCK: usize = 16;

/// The body of [`pool_sum`], compiled once per tier with its target features: blocks of 64 (then
/// 16) channels stay in vector registers across the row's pixels.
#[inline(always)]
pub(crate) fn pool_sum_body(pixels: &[i8], acc: &mut [i32]) {
    let n = acc.len();
    if n == 0 {
        return;
    }
    // Blocks of 64 channels first (four vectors' worth of independent sums per pixel on wide
    // tiers), then of 16, then the rest; the same wrapping additions in any case.
    let wide = n / POOL_WIDE_BLOCK * POOL_WIDE_BLOCK;
    let (acc_wide, acc_rest) = acc.split_at_mut(wide);
    for (b, block) in acc_wide.chunks_exact_mut(POOL_WIDE_BLOCK).enumerate() {
        if let Ok(block) = <&mut [i32; POOL_WIDE_BLOCK]>::try_from(block) {
            pool_sum_block(pixels, n, b * POOL_WIDE_BLOCK, block);
        }
    }
    for (c0, block) in acc_rest.chunks_mut(POOL_BLOCK).enumerate() {
        let c0 = wide + c0 * POOL_BLOCK;
        if let Ok(block) = <&mut [i32; POOL_BLOCK]>::try_from(&mut *block) {
            pool_sum_block(pixels, n, c0, block);
        } else {
            for px in pixels.chunks_exact(n) {
                for (a, &v) in block.iter_mut().zip(&px[c0.min(px.len())..]) {
                    *a = a.wrapping_add(i32::from(v));
                }
            }
        }
    }
}

/// Channels a pooling sum keeps in registers at once before falling back to [`POOL_BLOCK`].
const POOL_WIDE_BLOCK: usize = 64;

/// `block[i] += Σₚ pixels[p · n + c0 + i]` over every whole `n`-channel pixel of `pixels`.
#[inline(always)]
fn pool_sum_block<const W: usize>(pixels: &[i8], n: usize, c0: usize, block: &mut [i32; W]) {
    let mut a = *block;
    for px in pixels.chunks_exact(n) {
        if let Some(Ok(p)) = px.get(c0..c0 + W).map(<&[i8; W]>::try_from) {
            for (a, &v) in a.iter_mut().zip(p) {
                *a = a.wrapping_add(i32::from(v));
            }
        }
    }
    *block = a;
}

/// `out[c]` = `acc[c] / count` rounded half away from zero with C truncating division (TFLM's
/// integer average), clamped to `lo..=hi` (within `-128..=127`). Requires `count ≥ 1` and
/// `|acc[c]| + count/2 < 2^32` (true of int8 sums that do not overflow int32, which pooling
/// validation guarantees); other `count`s leave `out` untouched.
pub fn pool_average_finish(isa: Isa, acc: &[i32], count: i32, lo: i32, hi: i32, out: &mut [i8]) {
    match isa.tier() {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        // SAFETY: `isa` proves the CPU runs the tier's instructions; the body is safe Rust.
        Tier::Sse41 | Tier::Avx2 | Tier::Avx512Vnni => unsafe {
            x86::pool_average_finish(isa.tier(), acc, count, lo, hi, out)
        },
        #[allow(unreachable_patterns)]
        _ => pool_average_finish_body(acc, count, lo, hi, out),
    }
}

/// The body of [`pool_average_finish`]: the division in f64, which vectorizes (integer division
/// does not). For |x| < 2^32 and 1 ≤ d < 2^31 the quotient's rounding error
/// (< |x/d| · 2^-53 < 2^-21 / d) is smaller than its distance (≥ 1/d) to any other integer, so
/// truncating it gives the C quotient exactly; `a ± count/2` is exact in f64, and `a = 0` gives
/// `(count/2) / count = 0` whatever the sign.
#[inline(always)]
pub(crate) fn pool_average_finish_body(acc: &[i32], count: i32, lo: i32, hi: i32, out: &mut [i8]) {
    if count < 1 {
        return;
    }
    let (lo, hi) = (lo.max(-128), hi.min(127));
    #[cfg(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64"))]
    {
        let d = f64::from(count);
        let half = f64::from(count / 2);
        let (lo_f, hi_f) = (f64::from(lo), f64::from(hi));
        for (o, &a) in out.iter_mut().zip(acc) {
            let a = f64::from(a);
            let n = if a > 0.0 { a + half } else { a - half };
            // Clamping before truncating equals clamping after (truncation is monotonic and
            // keeps the integer bounds), and makes the conversion a plain vector one.
            let x = (n / d).max(lo_f).min(hi_f);
            // SAFETY: `x` is finite (`d ≥ 1`, `n` finite) and inside `-128.0..=127.0`.
            let q: i32 = unsafe { x.to_int_unchecked() };
            *o = q as i8;
        }
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        // No fast f64 on microcontrollers: C truncating division.
        let half = count / 2;
        for (o, &a) in out.iter_mut().zip(acc) {
            let q = if a > 0 { a + half } else { a - half } / count;
            *o = q.max(lo).min(hi) as i8;
        }
    }
}

/// The body of [`pool_max`] (see [`pool_sum_body`]).
#[inline(always)]
pub(crate) fn pool_max_body(pixels: &[i8], acc: &mut [i8]) {
    let n = acc.len();
    if n == 0 {
        return;
    }
    for (c0, block) in acc.chunks_mut(POOL_BLOCK).enumerate() {
        let c0 = c0 * POOL_BLOCK;
        if let Ok(block) = <&mut [i8; POOL_BLOCK]>::try_from(&mut *block) {
            let mut a = *block;
            for px in pixels.chunks_exact(n) {
                if let Some(Ok(p)) = px
                    .get(c0..c0 + POOL_BLOCK)
                    .map(<&[i8; POOL_BLOCK]>::try_from)
                {
                    for (a, &v) in a.iter_mut().zip(p) {
                        *a = (*a).max(v);
                    }
                }
            }
            *block = a;
        } else {
            for px in pixels.chunks_exact(n) {
                for (a, &v) in block.iter_mut().zip(&px[c0.min(px.len())..]) {
                    *a = (*a).max(v);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Staging buffers that need no clearing.

/// Bytes of the largest staging buffer (see [`with_stage`]).
pub const STAGE_CAPACITY: usize = 64 * 1024;

/// Writes a staging buffer front to back; everything written so far is initialized, so
/// [`StageWriter::finish`] can hand it out as plain bytes without the buffer ever being cleared.
pub struct StageWriter<'a> {
    buf: &'a mut [MaybeUninit<u8>],
    len: usize,
    /// The tier whose wide moves fill and copy (x86; `Isa::best` once per writer).
    #[cfg_attr(
        not(any(target_arch = "x86", target_arch = "x86_64")),
        allow(dead_code)
    )]
    isa: Option<Isa>,
}

impl<'a> StageWriter<'a> {
    /// Bytes still free.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.len)
    }

    /// The free part of the buffer (`len ≤ buf.len()` always holds: `len` only advances by
    /// what fits, so the `get` never fails).
    #[inline(always)]
    fn free(&mut self) -> &mut [MaybeUninit<u8>] {
        self.buf.get_mut(self.len..).unwrap_or(&mut [])
    }

    /// Appends `n` copies of `byte` (fewer if the buffer is full).
    #[inline]
    pub fn fill(&mut self, n: usize, byte: u8) {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        let isa = self.isa;
        let free = self.free();
        let k = n.min(free.len());
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        if let Some(isa) = isa {
            // SAFETY: `isa` proves the tier; `k ≤ free.len()` bytes are writable at `free`;
            // writing initializes them.
            unsafe { x86::fill(isa.tier(), free.as_mut_ptr().cast::<u8>(), k, byte) };
            self.len += k;
            return;
        }
        for b in free.iter_mut().take(k) {
            b.write(byte);
        }
        self.len += k;
    }

    /// Appends `src` with every byte XOR `flip` (truncated if the buffer is full).
    #[inline]
    pub fn copy_xor(&mut self, src: &[u8], flip: u8) {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        let isa = self.isa;
        let free = self.free();
        let k = src.len().min(free.len());
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        if let Some(isa) = isa {
            // SAFETY: `isa` proves the tier; `k` bytes are readable at `src` and writable at
            // `free` (k ≤ both lengths); writing initializes them.
            unsafe {
                x86::copy_xor(
                    isa.tier(),
                    free.as_mut_ptr().cast::<u8>(),
                    src.as_ptr(),
                    k,
                    flip,
                )
            };
            self.len += k;
            return;
        }
        for (b, &v) in free.iter_mut().zip(src) {
            b.write(v ^ flip);
        }
        self.len += k;
    }

    /// Appends `left` bytes of `pad`, then `src` with every byte XOR `flip`, then `right` bytes
    /// of `pad` (a staged row with its padding): the same bytes as [`Self::fill`],
    /// [`Self::copy_xor`], [`Self::fill`], truncated alike if the buffer is full, in one pass.
    #[inline]
    pub fn padded_row(&mut self, left: usize, src: &[u8], right: usize, pad: u8, flip: u8) {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        if self.isa.is_some_and(|i| i.tier() == Tier::Avx512Vnni) {
            let free = self.free();
            let l = left.min(free.len());
            let k = src.len().min(free.len() - l);
            let r = right.min(free.len() - l - k);
            // SAFETY: `self.isa` proves the tier; `l + k + r ≤ free.len()` bytes are writable at
            // `free` and `k ≤ src.len()` readable at `src`; writing initializes them.
            unsafe {
                x86::padded_row(
                    free.as_mut_ptr().cast::<u8>(),
                    [l, r],
                    src.as_ptr(),
                    k,
                    pad,
                    flip,
                )
            };
            self.len += l + k + r;
            return;
        }
        self.fill(left, pad);
        self.copy_xor(src, flip);
        self.fill(right, pad);
    }

    /// Appends `count` staged rows, row `i` from `row(i)`: `Some(src)` is [`Self::padded_row`]
    /// with `left` and `right` bytes of padding around `src` (`src` must hold `width` bytes), and
    /// `None` is `left + width + right` bytes of `pad`. The same bytes as those calls one by one;
    /// when they all fit, in one pass without the per-row bookkeeping.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn padded_rows<'s>(
        &mut self,
        count: usize,
        mut row: impl FnMut(usize) -> Option<&'s [u8]>,
        [left, width, right]: [usize; 3],
        pad: u8,
        flip: u8,
    ) {
        let row_bytes = left.saturating_add(width).saturating_add(right);
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        if self.isa.is_some_and(|i| i.tier() == Tier::Avx512Vnni)
            && count
                .checked_mul(row_bytes)
                .is_some_and(|t| t <= self.remaining())
        {
            let free = self.free().as_mut_ptr().cast::<u8>();
            let row = |i: usize| row(i).filter(|src| src.len() == width).map(<[u8]>::as_ptr);
            // SAFETY: `self.isa` proves the tier; the `count` rows (`count · row_bytes` bytes,
            // checked) are writable at `free`, and each source row holds `width` bytes (filtered:
            // a row of another length is padding); writing initializes them.
            unsafe { x86::padded_rows(free, count, row, [left, width, right], pad, flip) };
            self.len += count * row_bytes;
            return;
        }
        for i in 0..count {
            match row(i) {
                Some(src) => self.padded_row(left, src, right, pad, flip),
                None => self.fill(row_bytes, pad),
            }
        }
    }

    /// The bytes written so far.
    pub fn finish(self) -> &'a mut [u8] {
        // `len ≤ buf.len()` (see `free`): the split never fails.
        let init = match self.buf.split_at_mut_checked(self.len) {
            Some((init, _)) => init,
            None => &mut [],
        };
        // SAFETY: every element of `init` was written by `fill` or `copy_xor` (`len` only
        // advances over written elements), and `MaybeUninit<u8>` has the layout of `u8`.
        unsafe { core::slice::from_raw_parts_mut(init.as_mut_ptr().cast::<u8>(), init.len()) }
    }
}

/// An uninitialized stack buffer for staging activations (see [`with_stage`]).
pub struct Stage<'a> {
    buf: &'a mut [MaybeUninit<u8>],
}

impl Stage<'_> {
    /// Bytes it holds.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// A writer from the start of the buffer (what earlier writers wrote is forgotten).
    pub fn writer(&mut self) -> StageWriter<'_> {
        StageWriter {
            buf: self.buf,
            len: 0,
            isa: Isa::best(),
        }
    }
}

/// Runs `f` with an uninitialized stack buffer of at least `need` bytes (at most
/// [`STAGE_CAPACITY`]), sized in steps so that small ops use little stack. Nothing is cleared:
/// the buffer is written through [`StageWriter`]s.
pub fn with_stage<R>(need: usize, f: impl FnOnce(&mut Stage) -> R) -> R {
    // Not inlined: each size in a frame of its own, so that a small stage's call does not
    // probe (and reserve) the largest one's pages.
    #[inline(never)]
    fn run<const N: usize, R>(f: impl FnOnce(&mut Stage) -> R) -> R {
        let mut buf = [const { MaybeUninit::<u8>::uninit() }; N];
        f(&mut Stage { buf: &mut buf })
    }
    if need <= 1024 {
        run::<1024, R>(f)
    } else if need <= 8 * 1024 {
        run::<{ 8 * 1024 }, R>(f)
    } else if need <= 16 * 1024 {
        run::<{ 16 * 1024 }, R>(f)
    } else if need <= 20 * 1024 {
        // The classes above 16 KiB are as fine as the common sizes need: a frame of more than
        // a page is probed page by page on every call (the 4 KiB-apart probes also compete
        // for one L1 set), so a 20 KiB stage (a 32×32×16 input's padded rows) saves the probes
        // of 11 pages over STAGE_CAPACITY.
        run::<{ 20 * 1024 }, R>(f)
    } else if need <= 32 * 1024 {
        run::<{ 32 * 1024 }, R>(f)
    } else {
        run::<STAGE_CAPACITY, R>(f)
    }
}

/// Most entries of a [`with_offsets`] table.
pub const MAX_OFFSETS: usize = 2048;

/// [`with_offsets`] for a table of `count` segments of `per_seg` consecutive 4-byte steps:
/// entry `g·per_seg + j` is `seg_start(g) + 4·j` (as `u32`). A plain loop per segment, cheaper
/// than a general iterator (this runs on every convolution call). `None` if the table would
/// exceed [`MAX_OFFSETS`] entries.
pub fn with_segment_offsets<R>(
    count: usize,
    per_seg: usize,
    seg_start: impl Fn(usize) -> usize,
    f: impl FnOnce(&[u32]) -> R,
) -> Option<R> {
    let len = count.checked_mul(per_seg).filter(|&l| l <= MAX_OFFSETS)?;
    // A small table (most convolutions: 3 segments of a few dozen steps) in a frame that needs
    // no page-by-page stack probes; the rest in the full one.
    // Each in a frame of its own (not inlined here), so that the small one is not probed.
    #[inline(never)]
    fn in_table<const N: usize, R>(
        len: usize,
        per_seg: usize,
        seg_start: impl Fn(usize) -> usize,
        f: impl FnOnce(&[u32]) -> R,
    ) -> Option<R> {
        let mut buf = [const { MaybeUninit::<u32>::uninit() }; N];
        segment_offsets_in(&mut buf, len, per_seg, seg_start, f)
    }
    if len <= SMALL_OFFSETS {
        in_table::<SMALL_OFFSETS, R>(len, per_seg, seg_start, f)
    } else {
        in_table::<MAX_OFFSETS, R>(len, per_seg, seg_start, f)
    }
}

/// Entries of [`with_segment_offsets`]'s small table (1 KiB).
const SMALL_OFFSETS: usize = 256;

/// [`with_segment_offsets`] in `buf` (`len` ≤ its length, a multiple of `per_seg`).
#[inline(always)]
fn segment_offsets_in<R>(
    buf: &mut [MaybeUninit<u32>],
    len: usize,
    per_seg: usize,
    seg_start: impl Fn(usize) -> usize,
    f: impl FnOnce(&[u32]) -> R,
) -> Option<R> {
    let table = buf.get_mut(..len)?;
    if per_seg > 0 {
        for (g, seg) in table.chunks_exact_mut(per_seg).enumerate() {
            let start = seg_start(g);
            for (j, b) in seg.iter_mut().enumerate() {
                b.write((start + j * BLOCK_K) as u32);
            }
        }
    }
    // SAFETY: `table` is the first `len` elements, every one written above (`len` is a multiple
    // of `per_seg`, so the chunks cover it; none when `len` is 0); `MaybeUninit<u32>` has the
    // layout of `u32`.
    let table = unsafe { core::slice::from_raw_parts(table.as_ptr().cast::<u32>(), len) };
    Some(f(table))
}

/// Runs `f` with the first `len` values of `values` in a table built on the stack without
/// clearing it first; `None` if `len` exceeds [`MAX_OFFSETS`] or `values` ends early.
pub fn with_offsets<R>(
    len: usize,
    values: impl Iterator<Item = u32>,
    f: impl FnOnce(&[u32]) -> R,
) -> Option<R> {
    if len > MAX_OFFSETS {
        return None;
    }
    let mut buf = [const { MaybeUninit::<u32>::uninit() }; MAX_OFFSETS];
    let mut written = 0;
    for (b, v) in buf[..len].iter_mut().zip(values) {
        b.write(v);
        written += 1;
    }
    if written != len {
        return None;
    }
    // SAFETY: the first `len` elements were just written; `MaybeUninit<u32>` has the layout of
    // `u32`.
    let table = unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<u32>(), len) };
    Some(f(table))
}
