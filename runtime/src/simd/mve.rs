//! Cortex-M55 Helium (MVE) kernels: int8 convolution, depthwise convolution and fully connected
//! layers, bit-exact with the reference kernels in `ops/`.
//!
//! Same entry points and contract as `arm_dsp.rs`: every function returns `None` when a shape is
//! outside what it handles (the caller then runs the reference kernel, which rewrites the whole
//! output, so a `None` after some outputs were written is still correct) and never panics: every
//! index is checked (`get`, iterators) and every `asm!` block reads only bytes its Rust wrapper
//! has bounds-checked.
//!
//! # The arithmetic
//! - CONV_2D and FULLY_CONNECTED multiply raw int8 activations by int8 weights, 16 at a time
//!   (`VLDRB.8` + `VMLADAVA.S8`: sixteen products summed into a 32-bit scalar), and add the input
//!   offset afterwards: `Σ (x + off)·w = Σ x·w + off·Σ w` (exact modulo 2³², TFLM's wrapping
//!   accumulator). Padded taps of a convolution window are filled with the raw value `-off` (the
//!   input zero point, an int8), so they contribute `(-off + off)·w = 0` as in the reference.
//!   `Σ w` per output channel is computed once per call (`VADDVA.S8`) for convolutions of two or
//!   more pixels, and in the same loop as the products for single-pixel calls (bands of in-place
//!   pointwise convolutions) and fully connected layers (whose weights are read once).
//! - DEPTHWISE_CONV_2D runs 16 channels per vector pass: `VLDRB.S16` widening loads, `VADD.I16`
//!   of the input offset (`x + off` fits in 16 bits), `VMULLB/VMULLT.S16` widening products
//!   (exact: |x + off| ≤ 255, |w| ≤ 128) and `VADD.I32` into four 32-bit accumulator vectors.
//! - Loops are tail-predicated (`DLSTP`/`LETP` for reductions, `VCTP` for channel tails): lanes
//!   past the end are neither read nor accumulated, so any length works without a scalar tail.
//! - Requantization (TFLM's `MultiplyByQuantizedMultiplier`, then the output offset and the
//!   clamp) runs on four channels per vector for CONV_2D and DEPTHWISE_CONV_2D: `VSHL` (left
//!   shift), `VQRDMULH` (exactly `SaturatingRoundingDoublingHighMul`), and `VRSHL` by the right
//!   shift after subtracting 1 from negative values (round half away from zero, as
//!   `RoundingDivideByPOT`), then `VSTRB.32` narrowing stores. Convolutions accumulate
//!   `CHUNK` output channels (with `off·Σ w + bias` added) before requantizing them.
//!   FULLY_CONNECTED (few outputs) requantizes in scalar code: `ops::conv::requantize`.
//!
//! `arm-mve` needs `-C target-cpu=cortex-m55`: without it the assembler rejects the instructions.
//!
//! Stable Rust has no MVE intrinsics, so each inner loop is one `asm!` block (with `-C
//! target-cpu=cortex-m55`, feature `arm-mve`, on a 32-bit Arm target). Everywhere else the same
//! functions are portable Rust with identical results, so the kernels' bookkeeping (windows,
//! padding, offsets, tails) is tested on every machine, and the instructions themselves under
//! `qemu-system-arm -cpu cortex-m55` (`examples/firmware/mve-test`, run by `targets/boards/ci.sh`).
#![allow(unsafe_code)]

use crate::ops::conv::{requantize, valid_taps, ConvParams};
use crate::ops::depthwise::DepthwiseParams;
use crate::ops::fully_connected::FullyConnectedParams;

/// Largest receptive field (`f_h·f_w·in_c`) CONV_2D handles: bytes of each per-pixel buffer.
pub const COL_BYTES: usize = 1024;

/// Largest number of output channels CONV_2D handles (size of the stack table of `Σ w`).
pub const MAX_CHANNELS: usize = 512;

/// Whether this build runs the Helium instructions (`true`) or their portable stand-ins.
pub const HELIUM: bool = cfg!(all(target_arch = "arm", feature = "arm-mve"));

/// Channels one depthwise vector pass covers.
const DW_LANES: usize = 16;

// ---------------------------------------------------------------------------------------------
// The inner loops: Helium on the M55, portable Rust elsewhere. Each takes slices and reads at
// most the bytes they hold (the wrappers check the lengths before any `asm!`).

#[cfg(all(target_arch = "arm", feature = "arm-mve"))]
mod isa {
    use core::arch::asm;

    /// `[x0·w0, x0·w1, x1·w0, x1·w1]` over the first `n` bytes (`n` ≤ every length, `n` > 0).
    #[inline(always)]
    fn dot_2x2_raw(x0: &[i8], x1: &[i8], w0: &[i8], w1: &[i8], n: usize) -> [i32; 4] {
        let (mut a, mut b, mut c, mut d) = (0i32, 0i32, 0i32, 0i32);
        // SAFETY: a tail-predicated loop over exactly `n` bytes of each slice (`LETP` masks the
        // lanes past `n`, which are not accessed); `n` ≤ each slice's length (checked by the
        // caller) and `n` > 0 (`DLSTP` runs its body at least once). Reads memory only; clobbers
        // only the declared registers (q0-q3, lr, the pointer copies).
        unsafe {
            asm!(
                "dlstp.8 lr, {n}",
                "2:",
                "vldrb.8 q0, [{x0}], #16",
                "vldrb.8 q2, [{w0}], #16",
                "vmladava.s8 r0, q0, q2",
                "vldrb.8 q1, [{x1}], #16",
                "vmladava.s8 r4, q1, q2",
                "vldrb.8 q3, [{w1}], #16",
                "vmladava.s8 r2, q0, q3",
                "vmladava.s8 r8, q1, q3",
                "letp lr, 2b",
                n = in(reg) n,
                x0 = inout(reg) x0.as_ptr() => _,
                x1 = inout(reg) x1.as_ptr() => _,
                w0 = inout(reg) w0.as_ptr() => _,
                w1 = inout(reg) w1.as_ptr() => _,
                inout("r0") a,
                inout("r2") b,
                inout("r4") c,
                inout("r8") d,
                out("lr") _,
                out("q0") _,
                out("q1") _,
                out("q2") _,
                out("q3") _,
                options(readonly, nostack),
            );
        }
        [a, b, c, d]
    }

    /// See the portable `dot_2x2`.
    #[inline(always)]
    pub fn dot_2x2(x0: &[i8], x1: &[i8], w0: &[i8], w1: &[i8]) -> [i32; 4] {
        let n = x0.len().min(x1.len()).min(w0.len()).min(w1.len());
        if n == 0 {
            return [0; 4];
        }
        dot_2x2_raw(x0, x1, w0, w1, n)
    }

    /// See the portable `dot_sum_1x2`.
    #[inline(always)]
    pub fn dot_sum_1x2(x: &[i8], w0: &[i8], w1: &[i8]) -> [i32; 4] {
        let n = x.len().min(w0.len()).min(w1.len());
        if n == 0 {
            return [0; 4];
        }
        let (mut a, mut b, mut s0, mut s1) = (0i32, 0i32, 0i32, 0i32);
        // SAFETY: a tail-predicated loop over exactly `n` > 0 bytes of each slice, `n` ≤ each
        // length (computed above); reads memory only; clobbers only the declared registers.
        unsafe {
            asm!(
                "dlstp.8 lr, {n}",
                "2:",
                "vldrb.8 q0, [{x}], #16",
                "vldrb.8 q1, [{w0}], #16",
                "vmladava.s8 r0, q0, q1",
                "vaddva.s8 r4, q1",
                "vldrb.8 q2, [{w1}], #16",
                "vmladava.s8 r2, q0, q2",
                "vaddva.s8 r8, q2",
                "letp lr, 2b",
                n = in(reg) n,
                x = inout(reg) x.as_ptr() => _,
                w0 = inout(reg) w0.as_ptr() => _,
                w1 = inout(reg) w1.as_ptr() => _,
                inout("r0") a,
                inout("r2") b,
                inout("r4") s0,
                inout("r8") s1,
                out("lr") _,
                out("q0") _,
                out("q1") _,
                out("q2") _,
                options(readonly, nostack),
            );
        }
        [a, b, s0, s1]
    }

    /// See the portable `sum`.
    #[inline(always)]
    pub fn sum(w: &[i8]) -> i32 {
        let n = w.len();
        if n == 0 {
            return 0;
        }
        let mut s = 0i32;
        // SAFETY: a tail-predicated loop over exactly the `n` > 0 bytes of `w`; reads memory
        // only; clobbers only the declared registers.
        unsafe {
            asm!(
                "dlstp.8 lr, {n}",
                "2:",
                "vldrb.8 q0, [{w}], #16",
                "vaddva.s8 r0, q0",
                "letp lr, 2b",
                n = in(reg) n,
                w = inout(reg) w.as_ptr() => _,
                inout("r0") s,
                out("lr") _,
                out("q0") _,
                options(readonly, nostack),
            );
        }
        s
    }

    /// See the portable `dw_taps`.
    #[inline(always)]
    pub fn dw_taps(
        x: &[i8],
        w: &[i8],
        taps: usize,
        strides: (usize, usize),
        channels: usize,
        off: i32,
        acc: &mut [i32; 16],
    ) {
        let (x_step, w_step) = strides;
        let channels = channels.min(16);
        if taps == 0 || channels == 0 {
            return;
        }
        // The last tap reads `channels` bytes at `(taps - 1)·step`: both must be inside.
        let x_end = (taps - 1)
            .checked_mul(x_step)
            .and_then(|e| e.checked_add(channels));
        let w_end = (taps - 1)
            .checked_mul(w_step)
            .and_then(|e| e.checked_add(channels));
        match (x_end, w_end) {
            (Some(xe), Some(we)) if xe <= x.len() && we <= w.len() => {}
            _ => return,
        }
        let lo = channels.min(8);
        let hi = channels - lo;
        // SAFETY: `taps` > 0 iterations; iteration `t` reads bytes `t·step .. t·step + channels`
        // of `x` and `w` (`VCTP` disables the lanes past `channels`: they are not accessed and
        // load as zero), all inside the slices (checked above). `acc` is 64 writable bytes. The
        // loop counter, pointer copies and q0-q6 are declared clobbered.
        unsafe {
            asm!(
                // Even channels of each group of 8 in q0/q2, odd ones in q1/q3 (VMULLB/VMULLT).
                "vld20.32 {{q0, q1}}, [{acc}]",
                "vld21.32 {{q0, q1}}, [{acc}]!",
                "vld20.32 {{q2, q3}}, [{acc}]",
                "vld21.32 {{q2, q3}}, [{acc}]",
                "sub {acc}, #32",
                "2:",
                "vctp.16 {lo}",
                "vpstt",
                "vldrbt.s16 q4, [r0]",
                "vldrbt.s16 q5, [r1]",
                "vadd.i16 q4, q4, {off}",
                "vmullb.s16 q6, q4, q5",
                "vadd.i32 q0, q0, q6",
                "vmullt.s16 q6, q4, q5",
                "vadd.i32 q1, q1, q6",
                "vctp.16 {hi}",
                "vpstt",
                "vldrbt.s16 q4, [r0, #8]",
                "vldrbt.s16 q5, [r1, #8]",
                "vadd.i16 q4, q4, {off}",
                "vmullb.s16 q6, q4, q5",
                "vadd.i32 q2, q2, q6",
                "vmullt.s16 q6, q4, q5",
                "vadd.i32 q3, q3, q6",
                "add r0, {xs}",
                "add r1, {ws}",
                "subs {t}, #1",
                "bne 2b",
                "vst20.32 {{q0, q1}}, [{acc}]",
                "vst21.32 {{q0, q1}}, [{acc}]!",
                "vst20.32 {{q2, q3}}, [{acc}]",
                "vst21.32 {{q2, q3}}, [{acc}]",
                inout("r0") x.as_ptr() => _,
                inout("r1") w.as_ptr() => _,
                t = inout(reg) taps => _,
                xs = in(reg) x_step,
                ws = in(reg) w_step,
                lo = in(reg) lo,
                hi = in(reg) hi,
                off = in(reg) off,
                acc = inout(reg) acc.as_mut_ptr() => _,
                out("q0") _,
                out("q1") _,
                out("q2") _,
                out("q3") _,
                out("q4") _,
                out("q5") _,
                out("q6") _,
                options(nostack),
            );
        }
    }

    /// See the portable `requantize`. TFLM's MultiplyByQuantizedMultiplier, lane by lane: `VSHL`
    /// by the left shift (wrapping), `VQRDMULH` = SaturatingRoundingDoublingHighMul, and
    /// RoundingDivideByPOT as `VRSHL` by the negative right shift after subtracting 1 from
    /// negative values (the fixup that turns round-half-up into round-half-away-from-zero).
    #[inline(always)]
    pub fn requantize(acc: &[i32], mult: &[i32], shift: &[i32], out: &mut [i8], q: [i32; 3]) {
        let n = acc.len().min(mult.len()).min(shift.len()).min(out.len());
        if n == 0 {
            return;
        }
        let [offset, min, max] = q;
        // SAFETY: a tail-predicated loop over exactly `n` > 0 lanes: reads `n` words of `acc`,
        // `mult` and `shift`, writes `n` bytes of `out` (`n` ≤ every length, computed above;
        // `LETP` masks the lanes past `n`, not accessed). Clobbers only declared registers.
        unsafe {
            asm!(
                "vmov.i32 q5, #0",
                "vdup.32 q6, {min}",
                "vdup.32 q7, {max}",
                "dlstp.32 lr, {n}",
                "2:",
                "vldrw.u32 q0, [{acc}], #16",
                "vldrw.u32 q1, [{mult}], #16",
                "vldrw.u32 q2, [{shift}], #16",
                "vmax.s32 q3, q2, q5",
                "vmin.s32 q2, q2, q5",
                "vshl.s32 q0, q0, q3",
                "vqrdmulh.s32 q0, q0, q1",
                "vand q3, q0, q2",
                "vshr.s32 q3, q3, #31",
                "vqadd.s32 q0, q0, q3",
                "vrshl.s32 q0, q0, q2",
                "vadd.i32 q0, q0, {offset}",
                "vmax.s32 q0, q0, q6",
                "vmin.s32 q0, q0, q7",
                "vstrb.32 q0, [r0], #4",
                "letp lr, 2b",
                n = in(reg) n,
                acc = inout(reg) acc.as_ptr() => _,
                mult = inout(reg) mult.as_ptr() => _,
                shift = inout(reg) shift.as_ptr() => _,
                inout("r0") out.as_mut_ptr() => _,
                offset = in(reg) offset,
                min = in(reg) min,
                max = in(reg) max,
                out("lr") _,
                out("q0") _,
                out("q1") _,
                out("q2") _,
                out("q3") _,
                out("q5") _,
                out("q6") _,
                out("q7") _,
                options(nostack),
            );
        }
    }
}

/// Portable equivalents with identical results, for hosts and cores without Helium.
#[cfg(not(all(target_arch = "arm", feature = "arm-mve")))]
mod isa {
    fn dot(x: &[i8], w: &[i8]) -> i32 {
        x.iter().zip(w).fold(0i32, |a, (&x, &w)| {
            a.wrapping_add(i32::from(x) * i32::from(w))
        })
    }

    fn cut(s: &[i8], n: usize) -> &[i8] {
        s.get(..n).unwrap_or_default()
    }

    /// `[x0·w0, x0·w1, x1·w0, x1·w1]` over the common length of the four slices (wrapping).
    pub fn dot_2x2(x0: &[i8], x1: &[i8], w0: &[i8], w1: &[i8]) -> [i32; 4] {
        let n = x0.len().min(x1.len()).min(w0.len()).min(w1.len());
        let (x0, x1, w0, w1) = (cut(x0, n), cut(x1, n), cut(w0, n), cut(w1, n));
        [dot(x0, w0), dot(x0, w1), dot(x1, w0), dot(x1, w1)]
    }

    /// `[x·w0, x·w1, Σ w0, Σ w1]` over the common length of the three slices (wrapping).
    pub fn dot_sum_1x2(x: &[i8], w0: &[i8], w1: &[i8]) -> [i32; 4] {
        let n = x.len().min(w0.len()).min(w1.len());
        let (x, w0, w1) = (cut(x, n), cut(w0, n), cut(w1, n));
        [dot(x, w0), dot(x, w1), sum(w0), sum(w1)]
    }

    /// `Σ w`.
    pub fn sum(w: &[i8]) -> i32 {
        w.iter().fold(0i32, |a, &w| a.wrapping_add(i32::from(w)))
    }

    /// Depthwise taps: for `t` in `0..taps` and channel `c` < `channels` (≤ 16), adds
    /// `(x[t·x_step + c] + off)·w[t·w_step + c]` to `acc[c]`. Does nothing when a tap is out of
    /// bounds.
    pub fn dw_taps(
        x: &[i8],
        w: &[i8],
        taps: usize,
        strides: (usize, usize),
        channels: usize,
        off: i32,
        acc: &mut [i32; 16],
    ) {
        let (x_step, w_step) = strides;
        let channels = channels.min(16);
        if taps == 0 || channels == 0 {
            return;
        }
        let x_end = (taps - 1)
            .checked_mul(x_step)
            .and_then(|e| e.checked_add(channels));
        let w_end = (taps - 1)
            .checked_mul(w_step)
            .and_then(|e| e.checked_add(channels));
        match (x_end, w_end) {
            (Some(xe), Some(we)) if xe <= x.len() && we <= w.len() => {}
            _ => return,
        }
        for t in 0..taps {
            let (Some(x), Some(w)) = (x.get(t * x_step..), w.get(t * w_step..)) else {
                return;
            };
            for (c, (&x, &w)) in x.iter().zip(w).take(channels).enumerate() {
                if let Some(a) = acc.get_mut(c) {
                    *a = a.wrapping_add((i32::from(x) + off) * i32::from(w));
                }
            }
        }
    }

    /// TFLM's int8 output stage for each lane: `out[i] = requantize(acc[i], mult[i], shift[i])`
    /// with `q` = `[output_offset, act_min, act_max]`, over the common length.
    pub fn requantize(acc: &[i32], mult: &[i32], shift: &[i32], out: &mut [i8], q: [i32; 3]) {
        for (((o, &a), &m), &s) in out.iter_mut().zip(acc).zip(mult).zip(shift) {
            *o = crate::ops::conv::requantize(a, m, s, q[0], q[1], q[2]);
        }
    }
}

/// Output channels a convolution accumulates before requantizing them (size of its accumulator
/// buffers).
pub const CHUNK: usize = 64;

/// Per-output-channel requantization data, borrowed from the op.
struct Quant<'a> {
    bias: Option<&'a [i32]>,
    multipliers: &'a [i32],
    shifts: &'a [i32],
    output_offset: i32,
    act_min: i32,
    act_max: i32,
}

impl Quant<'_> {
    /// Output byte of bias entry `out` and multiplier/shift entry `channel` for sum `acc`.
    #[inline(always)]
    fn out(&self, out: usize, channel: usize, acc: i32) -> i8 {
        let acc = match self.bias.and_then(|b| b.get(out)) {
            Some(&b) => acc.wrapping_add(b),
            None => acc,
        };
        let m = self.multipliers.get(channel).copied().unwrap_or(0);
        let s = self.shifts.get(channel).copied().unwrap_or(0);
        requantize(acc, m, s, self.output_offset, self.act_min, self.act_max)
    }
}

/// The raw int8 input value that contributes nothing after the offset is added (`-off`, the
/// input zero point), or `None` if it is not an int8 (then the offset trick does not apply).
fn pad_value(input_offset: i32) -> Option<i8> {
    i8::try_from(input_offset.checked_neg()?).ok()
}

/// Geometry of a convolution window, after the reference kernel's checks.
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
}

impl Window {
    /// The receptive field of output pixel (`oy`, `ox`) of `input` (one batch) as `k` raw bytes:
    /// a slice of `input` itself for an unpadded 1×1 window, else gathered into `col` with padded
    /// taps set to `pad`. `None` if a bound is violated (cannot happen after the caller's checks).
    fn field<'a>(
        &self,
        input: &'a [i8],
        oy: usize,
        ox: usize,
        pad: i8,
        col: &'a mut [i8],
    ) -> Option<&'a [i8]> {
        let c = self.in_c;
        let k = self.f_h * self.f_w * c;
        let iy0 = (oy * self.stride_h) as isize - self.pad_h as isize;
        let ix0 = (ox * self.stride_w) as isize - self.pad_w as isize;
        let rows = valid_taps(iy0, self.dil_h, self.in_h, self.f_h);
        let cols = valid_taps(ix0, self.dil_w, self.in_w, self.f_w);
        let whole = rows.len() == self.f_h && cols.len() == self.f_w;
        if whole && self.f_h == 1 && self.f_w == 1 {
            let at = (iy0 as usize * self.in_w + ix0 as usize) * c;
            return input.get(at..at + c);
        }
        let col = col.get_mut(..k)?;
        if !whole {
            col.fill(pad);
        }
        for fy in rows {
            let iy = (iy0 + (fy * self.dil_h) as isize) as usize;
            let row = iy * self.in_w;
            if self.dil_w == 1 {
                // The valid taps of a filter row are adjacent in the input: one copy.
                let ix = (ix0 + cols.start as isize) as usize;
                let n = cols.len() * c;
                let src = input.get((row + ix) * c..(row + ix) * c + n)?;
                let at = (fy * self.f_w + cols.start) * c;
                col.get_mut(at..at + n)?.copy_from_slice(src);
            } else {
                for fx in cols.clone() {
                    let ix = (ix0 + (fx * self.dil_w) as isize) as usize;
                    let src = input.get((row + ix) * c..(row + ix + 1) * c)?;
                    let at = (fy * self.f_w + fx) * c;
                    col.get_mut(at..at + c)?.copy_from_slice(src);
                }
            }
        }
        Some(col)
    }
}

/// Helium CONV_2D for one group (`groups == 1`), a receptive field of at most [`COL_BYTES`]
/// values and at most [`MAX_CHANNELS`] output channels. Shapes and lengths must already satisfy
/// the reference kernel's checks (the caller runs them); returns `None` when this kernel does
/// not apply.
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
    if f_ic != in_c || k == 0 || k > COL_BYTES || out_c == 0 || out_c > MAX_CHANNELS {
        return None;
    }
    let pixels = out_h.checked_mul(out_w)?;
    let in_batch = in_h.checked_mul(in_w)?.checked_mul(in_c)?;
    if filter.len() != out_c.checked_mul(k)?
        || output.len() != batches.checked_mul(pixels)?.checked_mul(out_c)?
        || input.len() != batches.checked_mul(in_batch)?
        || multipliers.len() != out_c
        || shifts.len() != out_c
        || bias.is_some_and(|b| b.len() != out_c)
        || p.stride_h == 0
        || p.stride_w == 0
        || p.dilation_h == 0
        || p.dilation_w == 0
    {
        return None;
    }
    let pad = pad_value(p.input_offset)?;
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
    };
    let q = Quant {
        bias,
        multipliers,
        shifts,
        output_offset: p.output_offset,
        act_min: p.act_min,
        act_max: p.act_max,
    };
    let call = ConvCall {
        win,
        q,
        pad,
        off: p.input_offset,
        k,
        out_c,
        batches,
        in_batch,
        out_w,
        pixels,
    };
    // Unpadded 1×1 windows are read in place: no gather buffers (and no clearing them).
    if f_h == 1 && f_w == 1 && p.pad_h == 0 && p.pad_w == 0 {
        call.run(input, filter, output, &mut [], &mut [])
    } else {
        let (mut col0, mut col1) = ([0i8; COL_BYTES], [0i8; COL_BYTES]);
        call.run(input, filter, output, &mut col0, &mut col1)
    }
}

/// One CONV_2D call's checked geometry and quantization.
struct ConvCall<'a> {
    win: Window,
    q: Quant<'a>,
    /// Raw value of a padded tap.
    pad: i8,
    /// Input offset.
    off: i32,
    /// Receptive field (bytes of one filter row), > 0.
    k: usize,
    /// Output channels, > 0.
    out_c: usize,
    batches: usize,
    in_batch: usize,
    out_w: usize,
    /// Output pixels per batch.
    pixels: usize,
}

impl ConvCall<'_> {
    /// Every output pixel: pairs of pixels × pairs of channels, with `off·Σ w` computed once
    /// per channel; a call of a single pixel (a band of an in-place pointwise op, say) sums each
    /// weight row in the same pass as its product instead.
    fn run(
        &self,
        input: &[i8],
        filter: &[i8],
        output: &mut [i8],
        col0: &mut [i8],
        col1: &mut [i8],
    ) -> Option<()> {
        let (k, out_w, win, pad) = (self.k, self.out_w, &self.win, self.pad);
        let out_c = self.out_c;
        if self.batches * self.pixels == 1 {
            let input = input.get(..self.in_batch)?;
            let x = win.field(input, 0, 0, pad, col0)?;
            return self.single(x, filter, output);
        }
        // off·Σ w + bias per output channel: what every accumulator of the channel adds.
        let mut offset_sums = [0i32; MAX_CHANNELS];
        for (c, (s, w)) in offset_sums
            .iter_mut()
            .zip(filter.chunks_exact(k.max(1)))
            .enumerate()
        {
            *s = self
                .off
                .wrapping_mul(isa::sum(w))
                .wrapping_add(self.bias(c));
        }
        let offset_sums = offset_sums.get(..out_c)?;
        let qp = [self.q.output_offset, self.q.act_min, self.q.act_max];
        let (mut acc0, mut acc1) = ([0i32; CHUNK], [0i32; CHUNK]);
        let mut out_pixels = output.chunks_exact_mut(out_c.max(1));
        for b in 0..self.batches {
            let input = input.get(b * self.in_batch..(b + 1) * self.in_batch)?;
            let mut px = 0;
            while px < self.pixels {
                let x0 = win.field(input, px / out_w.max(1), px % out_w.max(1), pad, col0)?;
                let out0 = out_pixels.next()?;
                if px + 1 == self.pixels {
                    self.single(x0, filter, out0)?;
                    break;
                }
                let n = px + 1;
                let x1 = win.field(input, n / out_w.max(1), n % out_w.max(1), pad, col1)?;
                let out1 = out_pixels.next()?;
                // Both pixels share every weight load; outputs are requantized a chunk at a time.
                let chunks = filter
                    .chunks((k * CHUNK).max(1))
                    .zip(out0.chunks_mut(CHUNK).zip(out1.chunks_mut(CHUNK)))
                    .zip(offset_sums.chunks(CHUNK));
                for (ch, ((w, (o0, o1)), sums)) in chunks.enumerate() {
                    let mut rows = w.chunks_exact(k.max(1));
                    let mut j = 0;
                    while let Some(w0) = rows.next() {
                        let w1 = rows.next();
                        let [a00, a01, a10, a11] = isa::dot_2x2(x0, x1, w0, w1.unwrap_or(w0));
                        for (j, a0, a1) in [(j, a00, a10), (j + 1, a01, a11)] {
                            if let (Some(&s), Some(p0), Some(p1)) =
                                (sums.get(j), acc0.get_mut(j), acc1.get_mut(j))
                            {
                                *p0 = a0.wrapping_add(s);
                                *p1 = a1.wrapping_add(s);
                            }
                        }
                        j += 2;
                    }
                    let (c0, n) = (ch * CHUNK, o0.len());
                    let (m, sh) = self.channel_quant(c0, n)?;
                    isa::requantize(&acc0, m, sh, o0, qp);
                    isa::requantize(&acc1, m, sh, o1, qp);
                }
                px += 2;
            }
        }
        Some(())
    }

    /// Bias of output channel `c` (0 without a bias).
    #[inline(always)]
    fn bias(&self, c: usize) -> i32 {
        self.q.bias.and_then(|b| b.get(c)).copied().unwrap_or(0)
    }

    /// Multipliers and shifts of output channels `c0..c0 + n`.
    #[inline(always)]
    fn channel_quant(&self, c0: usize, n: usize) -> Option<(&[i32], &[i32])> {
        Some((
            self.q.multipliers.get(c0..c0 + n)?,
            self.q.shifts.get(c0..c0 + n)?,
        ))
    }

    /// One output pixel from its receptive field `x`.
    fn single(&self, x: &[i8], filter: &[i8], out: &mut [i8]) -> Option<()> {
        let k = self.k.max(1);
        let qp = [self.q.output_offset, self.q.act_min, self.q.act_max];
        let mut acc = [0i32; CHUNK];
        for (ch, (w, o)) in filter
            .chunks((k * CHUNK).max(1))
            .zip(out.chunks_mut(CHUNK))
            .enumerate()
        {
            let c0 = ch * CHUNK;
            let mut rows = w.chunks_exact(k);
            let mut j = 0;
            while let Some(w0) = rows.next() {
                let w1 = rows.next();
                let [a0, a1, s0, s1] = isa::dot_sum_1x2(x, w0, w1.unwrap_or(w0));
                for (j, a, s) in [(j, a0, s0), (j + 1, a1, s1)] {
                    if let Some(p) = acc.get_mut(j) {
                        let bias = self.bias(c0 + j);
                        *p = a.wrapping_add(self.off.wrapping_mul(s)).wrapping_add(bias);
                    }
                }
                j += 2;
            }
            let (m, sh) = self.channel_quant(c0, o.len())?;
            isa::requantize(&acc, m, sh, o, qp);
        }
        Some(())
    }
}

/// Helium DEPTHWISE_CONV_2D for depth multiplier 1 (any channel count); `None` when it does not
/// apply. Shapes must already satisfy the reference kernel's checks.
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
    let [batches, in_h, in_w, in_c] = input_shape;
    let [_, f_h, f_w, out_c] = filter_shape;
    let [_, out_h, out_w, _] = output_shape;
    if p.depth_multiplier != 1 || in_c != out_c || in_c == 0 {
        return None;
    }
    let in_batch = in_h.checked_mul(in_w)?.checked_mul(in_c)?;
    if input.len() != batches.checked_mul(in_batch)?
        || filter.len() != f_h.checked_mul(f_w)?.checked_mul(out_c)?
        || output.len()
            != batches
                .checked_mul(out_h)?
                .checked_mul(out_w)?
                .checked_mul(out_c)?
        || multipliers.len() != out_c
        || shifts.len() != out_c
        || bias.is_some_and(|b| b.len() != out_c)
        || !(-255..=255).contains(&p.input_offset)
    {
        return None;
    }
    let qp = [p.output_offset, p.act_min, p.act_max];
    let (stride_h, stride_w) = (p.stride_h as usize, p.stride_w as usize);
    let (dil_h, dil_w) = (p.dilation_h as usize, p.dilation_w as usize);
    // Consecutive valid taps of a filter row: `dil_w` pixels apart in the input, one filter
    // pixel apart in the weights.
    let strides = (dil_w * in_c, out_c);
    let mut out_pixels = output.chunks_exact_mut(out_c.max(1));
    for b in 0..batches {
        let input = input.get(b * in_batch..(b + 1) * in_batch)?;
        for oy in 0..out_h {
            let y0 = (oy * stride_h) as isize - p.pad_h as isize;
            let rows = valid_taps(y0, dil_h, in_h, f_h);
            for ox in 0..out_w {
                let x0 = (ox * stride_w) as isize - p.pad_w as isize;
                let cols = valid_taps(x0, dil_w, in_w, f_w);
                let out = out_pixels.next()?;
                for (g, out) in out.chunks_mut(DW_LANES).enumerate() {
                    let c0 = g * DW_LANES;
                    let mut acc = [0i32; DW_LANES];
                    if let Some(b) = bias.and_then(|b| b.get(c0..c0 + out.len())) {
                        for (a, &b) in acc.iter_mut().zip(b) {
                            *a = b;
                        }
                    }
                    for fy in rows.clone() {
                        let iy = (y0 + (fy * dil_h) as isize) as usize;
                        let ix = (x0 + (cols.start * dil_w) as isize) as usize;
                        let (Some(x), Some(w)) = (
                            input.get((iy * in_w + ix) * in_c + c0..),
                            filter.get((fy * f_w + cols.start) * out_c + c0..),
                        ) else {
                            continue;
                        };
                        isa::dw_taps(
                            x,
                            w,
                            cols.len(),
                            strides,
                            out.len(),
                            p.input_offset,
                            &mut acc,
                        );
                    }
                    let n = out.len();
                    isa::requantize(
                        &acc,
                        multipliers.get(c0..c0 + n)?,
                        shifts.get(c0..c0 + n)?,
                        out,
                        qp,
                    );
                }
            }
        }
    }
    Some(())
}

/// Helium FULLY_CONNECTED for symmetric weights (`filter_offset == 0`); `None` when it does not
/// apply. Lengths must already satisfy the reference kernel's checks.
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
    if p.filter_offset != 0 || in_features == 0 || out_features == 0 {
        return None;
    }
    let per_channel = multipliers.len() != 1;
    if input.len() != batches.checked_mul(in_features)?
        || weights.len() != out_features.checked_mul(in_features)?
        || output.len() != batches.checked_mul(out_features)?
        || multipliers.is_empty()
        || shifts.len() != multipliers.len()
        || (per_channel && multipliers.len() != out_features)
        || bias.is_some_and(|b| b.len() != out_features)
    {
        return None;
    }
    let q = Quant {
        bias,
        multipliers,
        shifts,
        output_offset: p.output_offset,
        act_min: p.act_min,
        act_max: p.act_max,
    };
    let channel = |c: usize| if per_channel { c } else { 0 };
    let off = p.input_offset;
    // Batch by batch with `split_at_checked`: zipped `chunks_exact` would call an out-of-line
    // `Zip::new` that divides by the chunk size (a panic path for the no-panic link check).
    let mut rest = (input, output);
    loop {
        let (xs, os) = rest;
        let (Some((x, x_next)), Some((out, o_next))) = (
            xs.split_at_checked(in_features),
            os.split_at_mut_checked(out_features),
        ) else {
            break;
        };
        rest = (x_next, o_next);
        let mut rows = weights.chunks_exact(in_features.max(1));
        let mut outs = out.chunks_mut(2);
        let mut c = 0;
        while let (Some(w0), Some(o)) = (rows.next(), outs.next()) {
            let w1 = if o.len() == 2 { rows.next() } else { None };
            let [a0, a1, s0, s1] = isa::dot_sum_1x2(x, w0, w1.unwrap_or(w0));
            let accs = [
                a0.wrapping_add(off.wrapping_mul(s0)),
                a1.wrapping_add(off.wrapping_mul(s1)),
            ];
            for (j, (o, acc)) in o.iter_mut().zip(accs).enumerate() {
                *o = q.out(c + j, channel(c + j), acc);
            }
            c += 2;
        }
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
        fn i8s(&mut self, n: usize) -> Vec<i8> {
            (0..n).map(|_| self.range(-128, 127) as i8).collect()
        }
        fn quant(&mut self, n: usize) -> (Vec<i32>, Vec<i32>) {
            let m = (0..n)
                .map(|_| self.range(1 << 30, i32::MAX as i64) as i32)
                .collect();
            let s = (0..n).map(|_| self.range(-12, 1) as i32).collect();
            (m, s)
        }
    }

    /// Output size and leading padding of one axis (SAME or VALID).
    fn axis(r: &mut Rng, i: usize, f: usize, stride: usize, dil: usize) -> (usize, u32) {
        let eff = (f - 1) * dil + 1;
        if r.range(0, 1) == 1 {
            let o = i.div_ceil(stride);
            let total = ((o - 1) * stride + eff).saturating_sub(i);
            (o, (total / 2) as u32)
        } else {
            ((i + stride).saturating_sub(eff) / stride, 0)
        }
    }

    #[test]
    fn conv_matches_reference() {
        let mut r = Rng(0x5EED_0001);
        for case in 0..400 {
            let in_c = [1usize, 2, 3, 5, 8, 16, 17, 33][r.range(0, 7) as usize];
            let out_c = r.range(1, 19) as usize;
            let (f_h, f_w) = (r.range(1, 4) as usize, r.range(1, 4) as usize);
            let (in_h, in_w) = (r.range(1, 8) as usize, r.range(1, 8) as usize);
            let (sh, sw) = (r.range(1, 3) as usize, r.range(1, 3) as usize);
            let (dh, dw) = (r.range(1, 2) as usize, r.range(1, 2) as usize);
            let (out_h, pad_h) = axis(&mut r, in_h, f_h, sh, dh);
            let (out_w, pad_w) = axis(&mut r, in_w, f_w, sw, dw);
            let batches = r.range(1, 2) as usize;
            let act_min = r.range(-128, 0) as i32;
            let p = ConvParams {
                stride_h: sh as u32,
                stride_w: sw as u32,
                dilation_h: dh as u32,
                dilation_w: dw as u32,
                pad_h,
                pad_w,
                input_offset: r.range(-127, 128) as i32,
                output_offset: r.range(-128, 127) as i32,
                act_min,
                act_max: r.range(act_min as i64, 127) as i32,
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
            let input = r.i8s(is.iter().product());
            let filter = r.i8s(fs.iter().product());
            let bias: Vec<i32> = (0..out_c).map(|_| r.range(-30000, 30000) as i32).collect();
            let (m, s) = r.quant(out_c);
            let bias = (r.range(0, 1) == 1).then_some(&bias[..]);
            let n = os.iter().product();
            let (mut want, mut got) = (vec![0i8; n], vec![0i8; n]);
            conv_ref(&p, is, &input, fs, &filter, bias, &m, &s, os, &mut want).unwrap();
            conv2d_int8(&p, is, &input, fs, &filter, bias, &m, &s, os, &mut got).unwrap();
            assert_eq!(got, want, "case {case}: {p:?} {is:?} {fs:?}");
        }
    }

    #[test]
    fn depthwise_matches_reference() {
        let mut r = Rng(0x5EED_0002);
        for case in 0..400 {
            let c = r.range(1, 40) as usize;
            let (f_h, f_w) = (r.range(1, 4) as usize, r.range(1, 4) as usize);
            let (in_h, in_w) = (r.range(1, 7) as usize, r.range(1, 7) as usize);
            let (sh, sw) = (r.range(1, 2) as usize, r.range(1, 3) as usize);
            let (dh, dw) = (r.range(1, 2) as usize, r.range(1, 2) as usize);
            let (out_h, pad_h) = axis(&mut r, in_h, f_h, sh, dh);
            let (out_w, pad_w) = axis(&mut r, in_w, f_w, sw, dw);
            let batches = r.range(1, 2) as usize;
            let act_min = r.range(-128, 0) as i32;
            let p = DepthwiseParams {
                stride_h: sh as u32,
                stride_w: sw as u32,
                dilation_h: dh as u32,
                dilation_w: dw as u32,
                pad_h,
                pad_w,
                input_offset: r.range(-127, 128) as i32,
                output_offset: r.range(-128, 127) as i32,
                act_min,
                act_max: r.range(act_min as i64, 127) as i32,
                multipliers_offset: 0,
                shifts_offset: 0,
                channel_count: c as u32,
                depth_multiplier: 1,
            };
            let is = [batches, in_h, in_w, c];
            let fs = [1, f_h, f_w, c];
            let os = [batches, out_h, out_w, c];
            let input = r.i8s(is.iter().product());
            let filter = r.i8s(fs.iter().product());
            let bias: Vec<i32> = (0..c).map(|_| r.range(-3000, 3000) as i32).collect();
            let bias = (r.range(0, 1) == 1).then_some(&bias[..]);
            let (m, s) = r.quant(c);
            let n = os.iter().product();
            let (mut want, mut got) = (vec![0i8; n], vec![0i8; n]);
            dw_ref(&p, is, &input, fs, &filter, bias, &m, &s, os, &mut want).unwrap();
            depthwise_conv2d_int8(&p, is, &input, fs, &filter, bias, &m, &s, os, &mut got).unwrap();
            assert_eq!(got, want, "case {case}: {p:?} {is:?} {fs:?}");
        }
    }

    #[test]
    fn fully_connected_matches_reference() {
        let mut r = Rng(0x5EED_0003);
        for case in 0..400 {
            let batches = r.range(1, 3) as usize;
            let inf = r.range(1, 100) as usize;
            let outf = r.range(1, 13) as usize;
            let per_channel = r.range(0, 1) == 1;
            let count = if per_channel { outf } else { 1 };
            let p = FullyConnectedParams {
                input_offset: r.range(-127, 128) as i32,
                filter_offset: 0,
                output_offset: r.range(-128, 127) as i32,
                act_min: -128,
                act_max: r.range(0, 127) as i32,
                multipliers_offset: 0,
                shifts_offset: 0,
                channel_count: count as u32,
                layout: 0,
                packed_offset: 0,
                folded_bias_offset: 0,
            };
            let input = r.i8s(batches * inf);
            let w = r.i8s(outf * inf);
            let bias: Vec<i32> = (0..outf).map(|_| r.range(-3000, 3000) as i32).collect();
            let bias = (r.range(0, 1) == 1).then_some(&bias[..]);
            let (m, s) = r.quant(count);
            let n = batches * outf;
            let (mut want, mut got) = (vec![0i8; n], vec![0i8; n]);
            fc_ref(&p, batches, inf, outf, &input, &w, bias, &m, &s, &mut want).unwrap();
            fully_connected_int8(&p, batches, inf, outf, &input, &w, bias, &m, &s, &mut got)
                .unwrap();
            assert_eq!(got, want, "case {case}: {p:?} {batches}x{inf}->{outf}");
        }
    }
}
