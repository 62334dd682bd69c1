//! In-place execution: ops whose output shares arena bytes with one of their inputs.
//!
//! The compiler marks such ops in [`OpDesc::flags`](crate::format::OpDesc::flags) (decoded as
//! [`OpFlags`]); [`crate::Model::from_bytes`] allows exactly the overlap the mode names and checks
//! here that the kernel will never read a byte it has already overwritten:
//!
//! - **Alias** (`InPlace::Alias(k)`): the output occupies exactly the bytes of input `k`. Each
//!   output element is computed from the input element at the same position (element-wise kinds,
//!   RESHAPE/SQUEEZE, ADD/SUB/MUL when input `k` is not broadcast, QUANTIZE between types of one
//!   size, and the residual of a CONV_2D with a fused ADD), so reading it and then writing it is
//!   safe.
//! - **Shift down / up** (`InPlace::ShiftDown`, `InPlace::ShiftUp`): CONV_2D and
//!   DEPTHWISE_CONV_2D over their own input 0, and QUANTIZE / DEQUANTIZE between types of
//!   different sizes (every element is a row). The output starts `D` bytes below the input
//!   (down; output rows are produced first to last) or above it (up; last to first). The kernel
//!   cuts the output into bands of rows such that each band's bytes lie entirely below (above)
//!   the input rows the band and every later band read, and runs the ordinary kernel on that band
//!   with disjoint borrows — so results are the ordinary kernel's, bit for bit. [`min_shift`]
//!   gives the smallest `D` for which every band can hold at least one row; a 1×1 stride-1
//!   unpadded convolution is treated as one column of pixels, so its bands are runs of pixels.
//!
//! Fused ops have their own modules: a CONV_2D with an ADD epilogue (`ops::fused`) and a residual
//! block CONV_2D → CONV_2D → ADD (`ops::chain`); both may write over their residual (alias).
//!
//! A model input may be overwritten by an in-place op, as in TFLM: set inputs before every
//! [`crate::Interpreter::invoke`].

use core::ops::Range;

use super::arith::{
    add_element, add_int8, add_sub_int8_fast, mul_element, mul_int8, sub_element, ArithParams,
};
use super::conv::{
    bias_input, channel_quant, conv2d_int8_fast, conv2d_int8_fast_in_place, dims4, kernel_error,
    packed_filter, ConvParams,
};
use super::depthwise::{
    depthwise_conv2d_int8, depthwise_conv2d_int8_fast_in_place, DepthwiseParams,
};
use super::quantize::{dequantize, quantize_f32, requantize, QuantElem, QuantizeParams};
use super::{as_i8, as_i8_mut, as_typed, as_typed_mut, chain, fused, OpCtx, OpKind, OpMem};
use crate::error::Error;
use crate::format::{DType, InPlace, OpFlags, Storage, MAX_RANK};
use crate::simd::Isa;

/// Decodes the op's flags, refusing unknown bits.
#[inline(never)]
pub(crate) fn flags(ctx: &OpCtx) -> Result<OpFlags, Error> {
    OpFlags::from_u32(ctx.desc.flags).ok_or(ctx.param_error("flags"))
}

/// Whether the mode of `ctx` lets input `j` (bytes `inp`) overlap the output (bytes `out`).
/// Shift modes are checked in full by [`validate`].
pub(crate) fn overlap_allowed(
    ctx: &OpCtx,
    j: usize,
    inp: &Range<usize>,
    out: &Range<usize>,
) -> bool {
    let Some(f) = OpFlags::from_u32(ctx.desc.flags) else {
        return false;
    };
    if f.chain {
        return chain::overlap_allowed(ctx, &f, j, inp, out);
    }
    match Some(f.in_place) {
        Some(InPlace::Alias(k)) => j == k as usize && inp == out,
        Some(InPlace::ShiftDown | InPlace::ShiftUp) => j == 0,
        _ => false,
    }
}

fn arena_range(ctx: &OpCtx, t: &crate::format::TensorDesc) -> Result<Range<usize>, Error> {
    let start = t.offset as usize;
    let end = start
        .checked_add(t.bytes as usize)
        .ok_or(ctx.param_error("tensor range"))?;
    Ok(start..end)
}

/// The arena bytes op `ctx` writes: its output, or for the shift modes the span from the lower
/// to the upper end of its output and input 0 (the kernel gets that span as one `&mut [u8]`).
#[inline(never)]
pub(crate) fn region(ctx: &OpCtx) -> Result<Range<usize>, Error> {
    let (_, out) = ctx.output(0)?;
    let out = arena_range(ctx, out)?;
    if ctx.desc.flags == 0 {
        // Not in place (most ops): nothing to decode.
        return Ok(out);
    }
    match flags(ctx)?.in_place {
        InPlace::ShiftDown | InPlace::ShiftUp => {
            let (_, inp) = ctx.required_input(0)?;
            let inp = arena_range(ctx, inp)?;
            Ok(out.start.min(inp.start)..out.end.max(inp.end))
        }
        _ => Ok(out),
    }
}

/// Row geometry of a window op: which input rows each output row reads, in bytes.
///
/// For a 1×1, stride 1, unpadded convolution, [`RowGeometry::pointwise`] makes every pixel a row,
/// so that bands can be runs of single pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowGeometry {
    /// Batches (each batch's rows follow the previous batch's).
    pub batches: usize,
    /// Input rows per batch.
    pub in_rows: usize,
    /// Bytes per input row.
    pub in_row_bytes: usize,
    /// Output rows per batch.
    pub out_rows: usize,
    /// Bytes per output row.
    pub out_row_bytes: usize,
    /// Vertical stride (≥ 1).
    pub stride: usize,
    /// Rows of implicit padding above the input.
    pub pad: usize,
    /// Filter height.
    pub filter: usize,
    /// Vertical dilation (≥ 1).
    pub dilation: usize,
}

impl RowGeometry {
    /// The geometry of an int8 NHWC window op with the given shapes and vertical parameters;
    /// pixels become rows when the op is pointwise (`filter_w == 1`, `stride_w == 1`, `pad_w ==
    /// 0` and the same for rows, output as wide as the input).
    #[allow(clippy::too_many_arguments)]
    pub fn window(
        input: [usize; 4],
        output: [usize; 4],
        filter_hw: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
        dilation: [usize; 2],
    ) -> RowGeometry {
        let [batches, in_h, in_w, in_c] = input;
        let [_, out_h, out_w, out_c] = output;
        if Self::is_pointwise(input, output, filter_hw, stride, pad) {
            return Self::pointwise(batches, in_h * in_w, in_c, out_c);
        }
        RowGeometry {
            batches,
            in_rows: in_h,
            in_row_bytes: in_w * in_c,
            out_rows: out_h,
            out_row_bytes: out_w * out_c,
            stride: stride[0],
            pad: pad[0],
            filter: filter_hw[0],
            dilation: dilation[0],
        }
    }

    /// Whether a window op reads exactly the pixel it writes (so pixels can be treated as rows).
    pub fn is_pointwise(
        input: [usize; 4],
        output: [usize; 4],
        filter_hw: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
    ) -> bool {
        filter_hw == [1, 1]
            && stride == [1, 1]
            && pad == [0, 0]
            && input[1] == output[1]
            && input[2] == output[2]
    }

    /// `pixels` pixels per batch, each read alone: every pixel is a row.
    pub fn pointwise(batches: usize, pixels: usize, in_bytes: usize, out_bytes: usize) -> Self {
        RowGeometry {
            batches,
            in_rows: pixels,
            in_row_bytes: in_bytes,
            out_rows: pixels,
            out_row_bytes: out_bytes,
            stride: 1,
            pad: 0,
            filter: 1,
            dilation: 1,
        }
    }

    /// First input row output row `oy` may read (a lower bound, clamped to the input).
    pub fn first_row_of(&self, oy: usize) -> usize {
        (oy as i128 * self.stride as i128 - self.pad as i128).clamp(0, self.in_rows as i128)
            as usize
    }

    /// One past the last input row output row `oy` may read (an upper bound, clamped).
    pub fn end_row_of(&self, oy: usize) -> usize {
        let reach = self.filter.saturating_sub(1) as i128 * self.dilation as i128;
        (oy as i128 * self.stride as i128 - self.pad as i128 + reach + 1)
            .clamp(0, self.in_rows as i128) as usize
    }

    /// `clamp(row·stride − c, 0, in_rows)` in `i64`: exact for a [`RowGeometry::bounded`]
    /// geometry and `row` in `0..=out_rows` (every figure is then below 2³⁴).
    #[inline(never)]
    fn clamped(&self, row: i64, c: i64) -> i64 {
        (row * self.stride as i64 - c).clamp(0, self.in_rows as i64)
    }

    /// [`RowGeometry::first_row_of`] for a bounded geometry (see `clamped`).
    fn first_row(&self, oy: i64) -> i64 {
        self.clamped(oy, self.pad as i64)
    }

    /// [`RowGeometry::end_row_of`] for a bounded geometry (see `clamped`).
    fn end_row(&self, oy: i64) -> i64 {
        self.clamped(oy, self.end_offset())
    }

    /// `c` in `end_row(oy) = clamp(oy·stride − c, 0, in_rows)` (bounded geometry).
    fn end_offset(&self) -> i64 {
        self.pad as i64 - self.filter.saturating_sub(1) as i64 * self.dilation as i64 - 1
    }

    /// The output rows where `clamp(oy·stride − c, 0, in_rows)` changes slope, and their
    /// neighbours, plus the first and last row: the maximum of a function that is linear in
    /// `oy` between kinks is attained at one of these. Needs [`RowGeometry::bounded`].
    fn kinks(&self, c: i64) -> [i64; 6] {
        let s = self.stride.max(1) as i64;
        let ceil = |n: i64| if n <= 0 { 0 } else { (n + s - 1) / s };
        let a = ceil(c);
        let b = ceil(c + self.in_rows as i64);
        [0, self.out_rows as i64 - 1, a - 1, a, b - 1, b]
    }

    /// Whether the geometry is usable (stride, dilation ≥ 1, some output) and small enough for
    /// [`min_shift`]'s `i64` arithmetic to be exact: both spans (`batches · rows · row bytes`),
    /// `out_rows · stride`, the padding and the filter's reach (`(filter − 1) · dilation`) are at
    /// most `u32::MAX` — as for every op of a model, whose tensors and arena offsets are `u32`
    /// and whose window reach is bounded by validation.
    fn bounded(&self) -> bool {
        let small = |v: Option<u64>| v.is_some_and(|v| v <= u64::from(u32::MAX));
        let mul = |a: usize, b: usize| (a as u64).checked_mul(b as u64);
        let span = |rows: usize, bytes: usize| {
            small(mul(self.batches, rows))
                && small(mul(self.batches, rows).and_then(|n| n.checked_mul(bytes as u64)))
        };
        self.stride >= 1
            && self.dilation >= 1
            && self.out_rows > 0
            && self.batches > 0
            && span(self.in_rows, self.in_row_bytes)
            && span(self.out_rows, self.out_row_bytes)
            && small(mul(self.out_rows, self.stride))
            && small(Some(self.pad as u64))
            && small(mul(self.filter.saturating_sub(1), self.dilation))
    }
}

/// Which way an in-place window op walks its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShiftDirection {
    /// Output below the input, rows first to last.
    Down,
    /// Output above the input, rows last to first.
    Up,
}

/// The smallest distance, in bytes, between the start of the input and the start of the output
/// (input start − output start for [`ShiftDirection::Down`], output start − input start for
/// [`ShiftDirection::Up`]) at which an op of geometry `g` can run in place, one band of at least
/// one row at a time. `None` if the geometry is degenerate, larger than `u32` figures (see
/// `RowGeometry::bounded`) or the result exceeds `u32`.
pub fn min_shift(g: &RowGeometry, dir: ShiftDirection) -> Option<u64> {
    // Every figure below is exact in i64 (at most a few times `u32::MAX`, see `bounded`).
    if !g.bounded() {
        return None;
    }
    let irb = g.in_row_bytes as i64;
    let orb = g.out_row_bytes as i64;
    let (ih, oh) = (g.in_rows as i64, g.out_rows as i64);
    let down = dir == ShiftDirection::Down;
    // Per-batch term (linear in the batch index: its maximum is at the first or last batch).
    let per_batch = if down {
        oh * orb - ih * irb
    } else {
        ih * irb - oh * orb
    };
    let batch_max = (per_batch * (g.batches as i64 - 1)).max(0);
    // Per-row term, piecewise linear in the row: its maximum is at a kink.
    let c = if down { g.pad as i64 } else { g.end_offset() };
    let row_max = g
        .kinks(c)
        .iter()
        .filter(|&&oy| (0..oh).contains(&oy))
        .map(|&oy| {
            if down {
                (oy + 1) * orb - g.first_row(oy) * irb
            } else {
                g.end_row(oy) * irb - oy * orb
            }
        })
        .max()?;
    let need = (batch_max + row_max).max(0);
    u32::try_from(need).ok().map(u64::from)
}

/// The bands of output rows an in-place window op computes, in execution order, for the byte
/// distance `shift` (as in [`min_shift`]): `(batch, first row, end row)`. Each band's output
/// bytes lie beyond the input rows it and every later band read.
struct Bands<'g> {
    g: &'g RowGeometry,
    dir: ShiftDirection,
    shift: i64,
    batch: usize,
    /// Down: next first row. Up: next end row.
    next: usize,
}

impl<'g> Bands<'g> {
    fn new(g: &'g RowGeometry, dir: ShiftDirection, shift: u64) -> Self {
        let (batch, next) = match dir {
            ShiftDirection::Down => (0, 0),
            ShiftDirection::Up => (g.batches.saturating_sub(1), g.out_rows),
        };
        Bands {
            g,
            dir,
            shift: i64::try_from(shift).unwrap_or(i64::MAX),
            batch,
            next,
        }
    }
}

impl Iterator for Bands<'_> {
    type Item = (usize, usize, usize);

    fn next(&mut self) -> Option<Self::Item> {
        let g = self.g;
        if g.batches == 0 || g.out_rows == 0 || self.batch >= g.batches {
            return None;
        }
        // Every figure here is at most the buffer's length, which `for_each_band` checked.
        let (irb, orb) = (g.in_row_bytes as i64, g.out_row_bytes.max(1) as i64);
        let (b, ih, oh) = (self.batch as i64, g.in_rows as i64, g.out_rows as i64);
        let shift = self.shift;
        match self.dir {
            ShiftDirection::Down => {
                let oy0 = self.next;
                // Largest end row whose output still lies below the first input row read:
                // (b·oh + oy1)·orb ≤ shift + (b·ih + first_row(oy0))·irb.
                let room = shift + (b * ih + g.first_row(oy0 as i64)) * irb;
                // `max`/`min` rather than `clamp`, which panics on inverted bounds (never here:
                // oy0 < oh).
                let oy1 = (room / orb - b * oh).max(oy0 as i64 + 1).min(oh) as usize;
                if oy1 >= g.out_rows {
                    self.batch += 1;
                    self.next = 0;
                } else {
                    self.next = oy1;
                }
                Some((b as usize, oy0, oy1))
            }
            ShiftDirection::Up => {
                let oy1 = self.next;
                // Smallest first row whose output lies above the last input row read:
                // shift + (b·oh + oy0)·orb ≥ (b·ih + end_row(oy1 − 1))·irb.
                let need = (b * ih + g.end_row(oy1 as i64 - 1)) * irb - shift;
                // As above: oy1 >= 1, and `min`/`max` carry no panic path.
                let oy0 = ((need + orb - 1).div_euclid(orb) - b * oh)
                    .min(oy1 as i64 - 1)
                    .max(0) as usize;
                if oy0 == 0 {
                    if self.batch == 0 {
                        self.batch = g.batches; // done
                    } else {
                        self.batch -= 1;
                        self.next = g.out_rows;
                    }
                } else {
                    self.next = oy0;
                }
                Some((b as usize, oy0, oy1))
            }
        }
    }
}

/// One band of an in-place window op: the input rows it reads and where its output goes, as
/// byte ranges of the shared buffer, and the band's own padding.
struct Band {
    input: Range<usize>,
    output: Range<usize>,
    rows_in: usize,
    rows_out: usize,
    pad: usize,
}

/// Splits `buf` into the band's input (shared) and output (exclusive) slices, which must not
/// overlap.
fn split_band<'b, T>(buf: &'b mut [T], band: &Band) -> Result<(&'b [T], &'b mut [T]), Error> {
    let bad = || kernel_error("in-place band overlaps its input");
    if band.output.end <= band.input.start {
        let (lo, hi) = buf.split_at_mut(band.input.start.min(buf.len()));
        let out = lo.get_mut(band.output.clone()).ok_or_else(bad)?;
        let inp = hi.get(..band.input.len()).ok_or_else(bad)?;
        Ok((inp, out))
    } else if band.output.start >= band.input.end {
        let (lo, hi) = buf.split_at_mut(band.output.start.min(buf.len()));
        let inp = lo.get(band.input.clone()).ok_or_else(bad)?;
        let out = hi.get_mut(..band.output.len()).ok_or_else(bad)?;
        Ok((inp, out))
    } else if band.input.is_empty() || band.output.is_empty() {
        let out = buf.get_mut(band.output.clone()).ok_or_else(bad)?;
        Ok((&[], out))
    } else {
        Err(bad())
    }
}

/// The checks every in-place driver makes before touching `buf` (`buf_len` bytes): the
/// direction and the distance between input (`in_at`) and output (`out_at`) match the op's mode
/// and are at least [`min_shift`], and both lie inside the buffer. Returns the distance.
fn checked_layout(
    g: &RowGeometry,
    dir: ShiftDirection,
    buf_len: usize,
    in_at: usize,
    out_at: usize,
) -> Result<usize, Error> {
    let shift = match dir {
        ShiftDirection::Down => in_at.checked_sub(out_at),
        ShiftDirection::Up => out_at.checked_sub(in_at),
    }
    .ok_or(kernel_error("in-place direction"))?;
    let need = min_shift(g, dir).ok_or(kernel_error("in-place geometry"))?;
    if (shift as u64) < need {
        return Err(kernel_error("in-place shift (smaller than the op needs)"));
    }
    let in_len = g
        .batches
        .checked_mul(g.in_rows)
        .and_then(|n| n.checked_mul(g.in_row_bytes));
    let out_len = g
        .batches
        .checked_mul(g.out_rows)
        .and_then(|n| n.checked_mul(g.out_row_bytes));
    match (in_len, out_len) {
        (Some(i), Some(o))
            if in_at.checked_add(i).is_some_and(|e| e <= buf_len)
                && out_at.checked_add(o).is_some_and(|e| e <= buf_len) =>
        {
            Ok(shift)
        }
        _ => Err(kernel_error("in-place buffer length")),
    }
}

/// The band kernel of [`for_each_band`]: `(band, input rows, output rows)`.
type BandFn<'k, T> = dyn FnMut(&Band, &[T], &mut [T]) -> Result<(), Error> + 'k;

/// The band kernel of [`for_each_staged_pixel_band`]: `(pixels, staged input, output)`.
type PixelBandFn<'k> = dyn FnMut(usize, &[i8], &mut [i8]) -> Result<(), Error> + 'k;

/// Runs `run_band` over the bands of an in-place window op of geometry `g` whose input starts at
/// byte `in_at` and output at byte `out_at` of `buf`, after checking the distance suffices.
///
/// Out of line, over a `dyn` band kernel: one copy serves every op kind (a band runs a whole
/// kernel call, so the indirect call costs nothing measurable).
#[inline(never)]
fn for_each_band<T>(
    g: &RowGeometry,
    dir: ShiftDirection,
    buf: &mut [T],
    in_at: usize,
    out_at: usize,
    run_band: &mut BandFn<T>,
) -> Result<(), Error> {
    let shift = checked_layout(g, dir, buf.len(), in_at, out_at)?;
    if g.out_row_bytes == 0 {
        return Ok(());
    }
    for (b, oy0, oy1) in Bands::new(g, dir, shift as u64) {
        let first = g.first_row(oy0 as i64) as usize;
        let end = (g.end_row(oy1 as i64 - 1) as usize).max(first);
        let in_batch = in_at + b * g.in_rows * g.in_row_bytes;
        let out_batch = out_at + b * g.out_rows * g.out_row_bytes;
        let band = Band {
            input: in_batch + first * g.in_row_bytes..in_batch + end * g.in_row_bytes,
            output: out_batch + oy0 * g.out_row_bytes..out_batch + oy1 * g.out_row_bytes,
            rows_in: end - first,
            rows_out: oy1 - oy0,
            // Rows of the top padding still above this band's first window.
            pad: g.pad.saturating_sub(oy0 * g.stride),
        };
        let (inp, out) = split_band(buf, &band)?;
        run_band(&band, inp, out)?;
    }
    Ok(())
}

/// Bytes of input [`for_each_staged_pixel_band`] copies to the stack per band.
const STAGE_BYTES: usize = 256;

/// A pointwise in-place op (every pixel a row of `g`, see [`RowGeometry::pointwise`]) run in
/// bands of up to [`STAGE_BYTES`] of input whose input is first copied to the stack: a band's
/// output may then overlap its own input, so bands hold several pixels even when the output
/// sits a single pixel from the input, where [`for_each_band`]'s disjoint bands are one pixel
/// each (the per-call setup of a kernel then costs more than its arithmetic on a Cortex-M).
/// `run_band(pixels, input, output)` gets the staged input and the band's output.
///
/// Returns `Ok(false)` (nothing done) when a pixel is larger than the stage or the shift leaves
/// no room for multi-pixel bands; the caller then runs [`for_each_band`].
///
/// Out of line, over a `dyn` band kernel, like [`for_each_band`].
#[inline(never)]
fn for_each_staged_pixel_band(
    g: &RowGeometry,
    dir: ShiftDirection,
    buf: &mut [i8],
    in_at: usize,
    out_at: usize,
    run_band: &mut PixelBandFn,
) -> Result<bool, Error> {
    // The same contract as `for_each_band`.
    checked_layout(g, dir, buf.len(), in_at, out_at)?;
    let (irb, orb) = (g.in_row_bytes, g.out_row_bytes);
    let per_band = STAGE_BYTES / irb.max(1);
    if per_band < 2 || orb == 0 {
        return Ok(false);
    }
    // `checked_layout` bounded both spans (`batches·rows·row bytes`) by the buffer's length.
    let Some(rows) = g.batches.checked_mul(g.in_rows) else {
        return Ok(false);
    };
    if g.out_rows != g.in_rows {
        return Ok(false);
    }
    // Every band's output must leave the input rows not yet staged intact. Down (output below
    // the input, pixels first to last): the output of pixels `..r` ends at or below the input of
    // pixel `r`, i.e. `r·(orb − irb) ≤ in_at − out_at` for every `r ≤ rows`. Up (last to first):
    // the output of pixels `r..` starts at or above the end of the input of pixel `r − 1`, i.e.
    // `r·(irb − orb) ≤ out_at − in_at`. Both are linear in `r`: checking `r = rows` suffices.
    let ok = match dir {
        ShiftDirection::Down => in_at
            .checked_sub(out_at)
            .is_some_and(|d| orb <= irb || (orb - irb).checked_mul(rows).is_some_and(|n| n <= d)),
        ShiftDirection::Up => out_at
            .checked_sub(in_at)
            .is_some_and(|d| irb <= orb || (irb - orb).checked_mul(rows).is_some_and(|n| n <= d)),
    };
    if !ok {
        return Ok(false);
    }
    let mut stage = [0i8; STAGE_BYTES];
    let mut band = |r0: usize, n: usize| -> Result<(), Error> {
        let bad = || kernel_error("in-place staged band");
        let src = buf
            .get(in_at + r0 * irb..in_at + (r0 + n) * irb)
            .ok_or_else(bad)?;
        let staged = stage.get_mut(..n * irb).ok_or_else(bad)?;
        // Equal lengths (`n·irb`); `zip` rather than `copy_from_slice`, which has a panic path.
        for (d, &x) in staged.iter_mut().zip(src) {
            *d = x;
        }
        let out = buf
            .get_mut(out_at + r0 * orb..out_at + (r0 + n) * orb)
            .ok_or_else(bad)?;
        run_band(n, staged, out)
    };
    match dir {
        ShiftDirection::Down => {
            let mut r0 = 0;
            while r0 < rows {
                let n = per_band.min(rows - r0);
                band(r0, n)?;
                r0 += n;
            }
        }
        ShiftDirection::Up => {
            let mut r1 = rows;
            while r1 > 0 {
                let n = per_band.min(r1);
                band(r1 - n, n)?;
                r1 -= n;
            }
        }
    }
    Ok(true)
}

/// The kernel an in-place driver runs on each band: `(params, input shape, input, output
/// shape, output)` with the band's own padding and shapes.
pub trait BandKernel<P> {
    /// Runs one band.
    fn run(
        &mut self,
        p: &P,
        input_shape: [usize; 4],
        input: &[i8],
        output_shape: [usize; 4],
        output: &mut [i8],
    ) -> Result<(), Error>;
}

impl<P, F> BandKernel<P> for F
where
    F: FnMut(&P, [usize; 4], &[i8], [usize; 4], &mut [i8]) -> Result<(), Error>,
{
    fn run(
        &mut self,
        p: &P,
        input_shape: [usize; 4],
        input: &[i8],
        output_shape: [usize; 4],
        output: &mut [i8],
    ) -> Result<(), Error> {
        self(p, input_shape, input, output_shape, output)
    }
}

/// Band shapes of a window op with NHWC `input_shape` / `output_shape`: pixels become rows when
/// the op is pointwise.
fn band_shapes(
    pointwise: bool,
    input_shape: [usize; 4],
    output_shape: [usize; 4],
    band: &Band,
) -> ([usize; 4], [usize; 4]) {
    let [_, _, in_w, in_c] = input_shape;
    let [_, _, out_w, out_c] = output_shape;
    if pointwise {
        ([1, band.rows_in, 1, in_c], [1, band.rows_out, 1, out_c])
    } else {
        (
            [1, band.rows_in, in_w, in_c],
            [1, band.rows_out, out_w, out_c],
        )
    }
}

/// The shapes and window parameters the in-place window drivers need (the rest of an op's
/// parameters stay with its band kernel).
struct WindowShape {
    input: [usize; 4],
    output: [usize; 4],
    filter_hw: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
}

/// A band kernel of [`window_in_place`]: `(pad_h, input shape, input, output shape, output)`,
/// with the band's own top padding and shapes.
type WindowBand<'k> =
    dyn FnMut(u32, [usize; 4], &[i8], [usize; 4], &mut [i8]) -> Result<(), Error> + 'k;

/// The driver behind [`window_op_in_place`] for CONV_2D and DEPTHWISE_CONV_2D: out of
/// line and over a `dyn` band kernel, so that one copy serves both.
#[inline(never)]
fn window_in_place(
    w: &WindowShape,
    buf: &mut [i8],
    in_at: usize,
    out_at: usize,
    dir: ShiftDirection,
    run: &mut WindowBand,
) -> Result<(), Error> {
    let (input_shape, output_shape) = (w.input, w.output);
    if input_shape[0] != output_shape[0] || input_shape[1] == 0 || input_shape[2] == 0 {
        return Err(kernel_error("in-place shapes"));
    }
    let pointwise =
        RowGeometry::is_pointwise(input_shape, output_shape, w.filter_hw, w.stride, w.pad);
    let g = RowGeometry::window(
        input_shape,
        output_shape,
        w.filter_hw,
        w.stride,
        w.pad,
        w.dilation,
    );
    if pointwise {
        let [.., in_c] = input_shape;
        let [.., out_c] = output_shape;
        // Pointwise: no padding.
        let staged =
            for_each_staged_pixel_band(&g, dir, buf, in_at, out_at, &mut |n, inp, out| {
                run(0, [1, n, 1, in_c], inp, [1, n, 1, out_c], out)
            })?;
        if staged {
            return Ok(());
        }
    }
    for_each_band(&g, dir, buf, in_at, out_at, &mut |band, inp, out| {
        let (is, os) = band_shapes(pointwise, input_shape, output_shape, band);
        run(band.pad as u32, is, inp, os, out)
    })
}

/// The window parameters [`window_op_in_place`] reads from CONV_2D's and DEPTHWISE_CONV_2D's
/// parameters, and the copy a band runs with (its own top padding).
pub trait WindowParams: Copy {
    /// `[stride, pad, dilation]`, each `[height, width]`.
    fn window(&self) -> [[usize; 2]; 3];
    /// These parameters with top padding `pad_h`.
    fn with_pad_h(&self, pad_h: u32) -> Self;
}

/// [`WindowParams`] for parameter structs with the window fields of CONV_2D.
macro_rules! window_params {
    ($($t:ty),*) => {$(
        impl WindowParams for $t {
            fn window(&self) -> [[usize; 2]; 3] {
                [
                    [self.stride_h as usize, self.stride_w as usize],
                    [self.pad_h as usize, self.pad_w as usize],
                    [self.dilation_h as usize, self.dilation_w as usize],
                ]
            }
            fn with_pad_h(&self, pad_h: u32) -> Self {
                Self { pad_h, ..*self }
            }
        }
    )*};
}
window_params!(ConvParams, DepthwiseParams);

/// CONV_2D or DEPTHWISE_CONV_2D (`p`: [`ConvParams`] or [`DepthwiseParams`]) computed over its
/// own input: `buf[in_at..]` holds the NHWC input, the output goes to `buf[out_at..]` (below
/// the input for [`ShiftDirection::Down`], above for `Up`, at least [`min_shift`] bytes away).
/// Each band of output rows is computed by `kernel` (e.g. `conv2d_int8` or
/// [`depthwise_conv2d_int8`] with the filter, bias and per-channel arrays bound) with the band's
/// own top padding, so results are the kernel's, bit for bit. Errors (never panics) on
/// inconsistent shapes or too small a shift.
#[allow(clippy::too_many_arguments)]
pub fn window_op_in_place<P: WindowParams>(
    p: &P,
    input_shape: [usize; 4],
    filter_shape: [usize; 4],
    output_shape: [usize; 4],
    buf: &mut [i8],
    in_at: usize,
    out_at: usize,
    dir: ShiftDirection,
    mut kernel: impl BandKernel<P>,
) -> Result<(), Error> {
    let [stride, pad, dilation] = p.window();
    let w = WindowShape {
        input: input_shape,
        output: output_shape,
        filter_hw: [filter_shape[1], filter_shape[2]],
        stride,
        pad,
        dilation,
    };
    window_in_place(
        &w,
        buf,
        in_at,
        out_at,
        dir,
        &mut |pad_h, is, inp, os, out| kernel.run(&p.with_pad_h(pad_h), is, inp, os, out),
    )
}

/// An element-wise op between types of different sizes (QUANTIZE float32 → int8, DEQUANTIZE
/// int8 → float32, ...) computed over its own input: `buf[in_at..]` holds `elements` input
/// elements of `in_size` bytes, the output (`out_size` bytes each) goes to `buf[out_at..]`, at
/// least [`min_shift`] of [`RowGeometry::pointwise`] away. `kernel` converts runs of elements
/// (input bytes → output bytes), so results are its own.
#[allow(clippy::too_many_arguments)]
pub fn elementwise_in_place(
    elements: usize,
    in_size: usize,
    out_size: usize,
    buf: &mut [u8],
    in_at: usize,
    out_at: usize,
    dir: ShiftDirection,
    mut kernel: impl FnMut(&[u8], &mut [u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    let g = RowGeometry::pointwise(1, elements, in_size, out_size);
    if elements == 0 {
        return Ok(());
    }
    for_each_band(&g, dir, buf, in_at, out_at, &mut |_, inp, out| {
        kernel(inp, out)
    })
}

/// QUANTIZE / DEQUANTIZE of `input` into `output` (bytes of the given types; equally many
/// elements), with the family's kernels.
fn convert_bytes(
    kind: OpKind,
    p: &QuantizeParams,
    from: DType,
    to: DType,
    input: &[u8],
    output: &mut [u8],
) -> Result<(), Error> {
    match (kind, from, to) {
        (OpKind::Quantize, DType::Float32, DType::Int8) => {
            quantize_f32::<i8>(p, as_typed(input)?, as_typed_mut(output)?)
        }
        (OpKind::Quantize, DType::Float32, DType::Int16) => {
            quantize_f32::<i16>(p, as_typed(input)?, as_typed_mut(output)?)
        }
        (OpKind::Dequantize, DType::Int8, DType::Float32) => {
            dequantize::<i8>(p, as_typed(input)?, as_typed_mut(output)?)
        }
        (OpKind::Dequantize, DType::UInt8, DType::Float32) => {
            dequantize::<u8>(p, as_typed(input)?, as_typed_mut(output)?)
        }
        (OpKind::Dequantize, DType::Int16, DType::Float32) => {
            dequantize::<i16>(p, as_typed(input)?, as_typed_mut(output)?)
        }
        (OpKind::Quantize, _, _) => requantize_bytes(p, from, to, input, output)?,
        _ => return Err(kernel_error("in-place conversion types")),
    }
    Ok(())
}

/// QUANTIZE int → int of any supported pair, over bytes.
fn requantize_bytes(
    p: &QuantizeParams,
    from: DType,
    to: DType,
    input: &[u8],
    output: &mut [u8],
) -> Result<(), Error> {
    fn to_any<I: QuantElem>(
        p: &QuantizeParams,
        x: &[I],
        to: DType,
        out: &mut [u8],
    ) -> Result<(), Error> {
        match to {
            DType::Int8 => requantize::<I, i8>(p, x, as_typed_mut(out)?),
            DType::UInt8 => requantize::<I, u8>(p, x, as_typed_mut(out)?),
            DType::Int16 => requantize::<I, i16>(p, x, as_typed_mut(out)?),
            DType::Int32 => requantize::<I, i32>(p, x, as_typed_mut(out)?),
            DType::Float32 | DType::Int4 | DType::Float16 | DType::Int64 => {
                return Err(kernel_error("in-place conversion types"))
            }
        }
        Ok(())
    }
    match from {
        DType::Int8 => to_any::<i8>(p, as_typed(input)?, to, output),
        DType::UInt8 => to_any::<u8>(p, as_typed(input)?, to, output),
        DType::Int16 => to_any::<i16>(p, as_typed(input)?, to, output),
        DType::Int32 => to_any::<i32>(p, as_typed(input)?, to, output),
        DType::Float32 | DType::Int4 | DType::Float16 | DType::Int64 => {
            Err(kernel_error("in-place conversion types"))
        }
    }
}

/// Elements of the stack chunk in-place element-wise kernels copy an operand through.
const ELEMENTWISE_CHUNK: usize = 128;

/// `out = ADD(residual, sums)` when `residual_first`, else `ADD(sums, residual)`, where the
/// residual is `residual` or, when `None`, `out`'s own bytes — with the fastest ADD kernel.
pub(crate) fn add_residual(
    p: &ArithParams,
    residual_first: bool,
    sums: &[i8],
    residual: Option<&[i8]>,
    out: &mut [i8],
) -> Result<(), Error> {
    let isa = Isa::best();
    let m = [out.len()];
    match (residual, isa) {
        (Some(r), _) => {
            let (a, b) = if residual_first { (r, sums) } else { (sums, r) };
            add_sub_int8_fast(isa, p, false, &m, a, &m, b, &m, out)
        }
        (None, Some(isa)) => crate::simd::add_sub_assign(isa, p, false, out, sums, residual_first),
        (None, None) => {
            for (chunk, s) in out
                .chunks_mut(ELEMENTWISE_CHUNK)
                .zip(sums.chunks(ELEMENTWISE_CHUNK))
            {
                let mut copy = [0i8; ELEMENTWISE_CHUNK];
                let n = chunk.len();
                copy[..n].copy_from_slice(chunk);
                let (a, b) = if residual_first {
                    (&copy[..n], s)
                } else {
                    (s, &copy[..n])
                };
                let k = [n];
                add_int8(p, &k, a, &k, b, &k, chunk)?;
            }
            Ok(())
        }
    }
}

/// ADD, SUB or MUL of `a` and `b` (equally long, or one a scalar) into `out`, with the family's
/// kernels.
pub(crate) fn binary_int8(
    kind: OpKind,
    p: &ArithParams,
    a: &[i8],
    b: &[i8],
    out: &mut [i8],
) -> Result<(), Error> {
    let (sa, sb, so) = ([a.len()], [b.len()], [out.len()]);
    match kind {
        OpKind::Add => add_sub_int8_fast(Isa::best(), p, false, &sa, a, &sb, b, &so, out),
        OpKind::Sub => add_sub_int8_fast(Isa::best(), p, true, &sa, a, &sb, b, &so, out),
        OpKind::Mul => mul_int8(p, &sa, a, &sb, b, &so, out),
        _ => Err(kernel_error("in-place binary kind")),
    }
}

/// Element-wise ADD, SUB or MUL whose output overwrites one operand (`buf`, which has the
/// output's shape): `other` (shape `other_shape`) is broadcast against it. `buf_first` says whether
/// `buf` is the op's first operand. Results equal the out-of-place kernels'.
pub fn binary_int8_in_place(
    kind: OpKind,
    p: &ArithParams,
    out_shape: &[usize],
    buf: &mut [i8],
    buf_first: bool,
    other_shape: &[usize],
    other: &[i8],
) -> Result<(), Error> {
    let f = match kind {
        OpKind::Add => add_element,
        OpKind::Sub => sub_element,
        OpKind::Mul => mul_element,
        _ => return Err(kernel_error("in-place binary kind")),
    };
    let rank = out_shape.len();
    if rank > MAX_RANK || other_shape.len() > rank {
        return Err(kernel_error("broadcast rank"));
    }
    let count = |s: &[usize]| s.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if count(out_shape) != Some(buf.len()) || count(other_shape) != Some(other.len()) {
        return Err(kernel_error("broadcast operand size"));
    }
    if other.len() == buf.len() && matches!(kind, OpKind::Add | OpKind::Sub) {
        if let Some(isa) = Isa::best() {
            // The SIMD kernel reads each element before writing it: it may run in place.
            let sub = kind == OpKind::Sub;
            return crate::simd::add_sub_assign(isa, p, sub, buf, other, buf_first);
        }
    }
    if other.len() == buf.len() || other.len() == 1 {
        // Same shape or a scalar: the family's kernel over chunks, each operand chunk copied
        // out of the buffer first (so it runs whatever fast path the kernel has).
        let mut tmp = [0i8; ELEMENTWISE_CHUNK];
        for (i, chunk) in buf.chunks_mut(ELEMENTWISE_CHUNK).enumerate() {
            let n = chunk.len();
            tmp[..n].copy_from_slice(chunk);
            let y = if other.len() == 1 {
                other
            } else {
                other
                    .get(i * ELEMENTWISE_CHUNK..i * ELEMENTWISE_CHUNK + n)
                    .ok_or(kernel_error("broadcast operand size"))?
            };
            let (a, b) = if buf_first {
                (&tmp[..n], y)
            } else {
                (y, &tmp[..n])
            };
            binary_int8(kind, p, a, b, chunk)?;
        }
        return Ok(());
    }
    let apply = |x: &mut i8, y: i8| {
        *x = if buf_first { f(p, *x, y) } else { f(p, y, *x) };
    };
    // General broadcast: strides of `other` over the output's dimensions (0 where broadcast).
    let mut strides = [0usize; MAX_RANK];
    let mut acc = 1usize;
    // Innermost first; `rank >= other_shape.len()` (checked above), and the iterators say so
    // without bounds-check panics.
    for ((&d, &od), stride) in other_shape
        .iter()
        .rev()
        .zip(out_shape.iter().rev())
        .zip(strides.iter_mut().take(rank).rev())
    {
        if d != od && d != 1 {
            return Err(kernel_error("broadcast shape"));
        }
        *stride = if d == 1 { 0 } else { acc };
        acc *= d; // bounded by other.len()
    }
    let mut idx = [0usize; MAX_RANK];
    let mut at = 0usize;
    for x in buf.iter_mut() {
        apply(x, *other.get(at).ok_or(kernel_error("broadcast index"))?);
        // Odometer over the output dimensions, last fastest.
        for d in (0..rank).rev() {
            idx[d] += 1;
            at += strides[d];
            if idx[d] < out_shape[d] {
                break;
            }
            at -= strides[d] * out_shape[d];
            idx[d] = 0;
        }
    }
    Ok(())
}

/// QUANTIZE int → int of one element size, overwriting its input: results equal
/// [`requantize`]'s.
pub fn requantize_in_place<I: QuantElem, O: QuantElem>(p: &QuantizeParams, buf: &mut [u8]) {
    let n = core::mem::size_of::<I>();
    if n != core::mem::size_of::<O>() || n == 0 {
        return;
    }
    for chunk in buf.chunks_exact_mut(n) {
        let x: I = bytemuck::pod_read_unaligned(chunk);
        let mut y = [O::from_i32(0)];
        requantize::<I, O>(p, &[x], &mut y);
        chunk.copy_from_slice(bytemuck::bytes_of(&y[0]));
    }
}

fn same_size_requantize(from: DType, to: DType) -> bool {
    from != DType::Float32 && to != DType::Float32 && from.size() == to.size()
}

/// Checks an op whose flags are not zero (called by [`super::validate`]).
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    let f = flags(ctx)?;
    if (f.chain || f.epilogue_add) && !super::select::FUSED {
        return Err(super::select::not_linked(ctx));
    }
    if f.chain {
        chain::validate(ctx, &f)?;
    } else if f.epilogue_add {
        fused::validate(ctx, &f)?;
    } else {
        super::validate_kind(ctx)?;
    }
    if ctx.desc.output_count != 1 {
        return Err(ctx.param_error("output_count (in place)"));
    }
    let (_, out) = ctx.output(0)?;
    let not_supported = || ctx.param_error("flags (in-place mode not supported by this kind)");
    match f.in_place {
        InPlace::Separate => {
            if !f.epilogue_add {
                return Err(ctx.param_error("flags"));
            }
        }
        InPlace::Alias(k) => {
            let k = k as usize;
            if k >= ctx.input_count() {
                return Err(ctx.param_error("flags (alias input)"));
            }
            let (it, inp) = ctx.required_input(k)?;
            if inp.storage() != Some(Storage::Arena)
                || inp.offset != out.offset
                || inp.bytes != out.bytes
            {
                return Err(ctx.shape_error(it, "an input on exactly the output's arena bytes"));
            }
            let ok = match ctx.kind {
                _ if f.epilogue_add => k + 1 == ctx.input_count(),
                OpKind::Relu
                | OpKind::Relu6
                | OpKind::Logistic
                | OpKind::Tanh
                | OpKind::Reshape
                | OpKind::Squeeze => k == 0,
                OpKind::Quantize => {
                    k == 0
                        && matches!((inp.dtype(), out.dtype()), (Some(a), Some(b)) if same_size_requantize(a, b))
                }
                // Validated: both int8, so equal bytes mean an operand that is not broadcast.
                OpKind::Add | OpKind::Sub | OpKind::Mul => k < 2,
                _ => false,
            };
            if !ok {
                return Err(not_supported());
            }
        }
        InPlace::ShiftDown | InPlace::ShiftUp => {
            if f.epilogue_add {
                return Err(not_supported());
            }
            let g = shift_geometry(ctx)?;
            let (_, inp) = ctx.required_input(0)?;
            if inp.storage() != Some(Storage::Arena) {
                return Err(ctx.param_error("flags (shift of a constant input)"));
            }
            for j in 1..ctx.input_count() {
                if let Some((t, d)) = ctx.input(j)? {
                    if d.storage() != Some(Storage::Const) {
                        return Err(ctx.shape_error(t, "a constant (in-place window op)"));
                    }
                }
            }
            let (dir, shift) = shift_of(ctx)?;
            let need = min_shift(&g, dir).ok_or(ctx.param_error("flags (in-place geometry)"))?;
            if shift < need {
                return Err(ctx.param_error("tensor offsets (in-place shift too small)"));
            }
            if ctx.desc.scratch_bytes > 0 {
                let hull = region(ctx)?;
                let s = ctx.desc.scratch_offset as usize;
                let scratch = s..s.saturating_add(ctx.desc.scratch_bytes as usize);
                if scratch.start < hull.end && hull.start < scratch.end {
                    return Err(ctx.param_error("scratch_offset (inside an in-place span)"));
                }
            }
        }
    }
    Ok(())
}

/// Direction and byte distance of a shift-mode op, from its tensors' offsets.
#[inline(never)]
fn shift_of(ctx: &OpCtx) -> Result<(ShiftDirection, u64), Error> {
    let (_, inp) = ctx.required_input(0)?;
    let (ot, out) = ctx.output(0)?;
    let (i, o) = (inp.offset as u64, out.offset as u64);
    match flags(ctx)?.in_place {
        InPlace::ShiftDown if o <= i => Ok((ShiftDirection::Down, i - o)),
        InPlace::ShiftUp if o >= i => Ok((ShiftDirection::Up, o - i)),
        _ => Err(ctx.shape_error(ot, "an output on the side of input 0 its flags name")),
    }
}

/// Row geometry of an op that may run shifted (shapes already validated): CONV_2D and
/// DEPTHWISE_CONV_2D by output rows, QUANTIZE and DEQUANTIZE element by element.
#[inline(never)]
fn shift_geometry(ctx: &OpCtx) -> Result<RowGeometry, Error> {
    if matches!(ctx.kind, OpKind::Quantize | OpKind::Dequantize) {
        let (_, i) = ctx.required_input(0)?;
        let (_, o) = ctx.output(0)?;
        let (Some(a), Some(b)) = (i.dtype(), o.dtype()) else {
            return Err(ctx.param_error("dtype"));
        };
        let n = usize::try_from(i.elements()).map_err(|_| ctx.param_error("elements"))?;
        return Ok(RowGeometry::pointwise(1, n, a.size(), b.size()));
    }
    let is = dims4(ctx, ctx.required_input(0)?, "a 4-D NHWC input")?;
    let fs = dims4(ctx, ctx.required_input(1)?, "a 4-D filter")?;
    let os = dims4(ctx, ctx.output(0)?, "a 4-D NHWC output")?;
    let (stride, pad, dil) = match ctx.kind {
        OpKind::Conv2d => {
            let p: &ConvParams = ctx.params()?;
            (
                [p.stride_h, p.stride_w],
                [p.pad_h, p.pad_w],
                [p.dilation_h, p.dilation_w],
            )
        }
        OpKind::DepthwiseConv2d => {
            let p: &DepthwiseParams = ctx.params()?;
            (
                [p.stride_h, p.stride_w],
                [p.pad_h, p.pad_w],
                [p.dilation_h, p.dilation_w],
            )
        }
        _ => return Err(ctx.param_error("flags (in-place mode not supported by this kind)")),
    };
    let u = |a: [u32; 2]| [a[0] as usize, a[1] as usize];
    Ok(RowGeometry::window(
        is,
        os,
        [fs[1], fs[2]],
        u(stride),
        u(pad),
        u(dil),
    ))
}

/// Runs an op whose flags are not zero (called by [`super::eval`]).
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem) -> Result<(), Error> {
    let f = flags(ctx)?;
    if f.chain || f.epilogue_add {
        // Fused variants: dropped from builds without them (`select-ops`), whose validation
        // refused such models already.
        if !super::select::FUSED {
            return Err(super::select::not_linked(ctx));
        }
        if f.chain {
            return chain::eval(ctx, mem, &f);
        }
        return fused::eval(ctx, mem, &f);
    }
    match (f.in_place, ctx.kind) {
        (
            InPlace::Alias(_),
            OpKind::Relu
            | OpKind::Relu6
            | OpKind::Logistic
            | OpKind::Tanh
            | OpKind::Reshape
            | OpKind::Squeeze,
        ) => {
            // These kernels see that the input is the output's bytes and work in place.
            super::eval_kind(ctx, mem)
        }
        (InPlace::Alias(_), OpKind::Quantize) if super::select::linked(OpKind::Quantize) => {
            let p: &QuantizeParams = ctx.params()?;
            let (_, inp) = ctx.required_input(0)?;
            let (_, out) = ctx.output(0)?;
            let buf = mem.output;
            match (inp.dtype(), out.dtype()) {
                (Some(DType::Int8), Some(DType::Int8)) => requantize_in_place::<i8, i8>(p, buf),
                (Some(DType::Int8), Some(DType::UInt8)) => requantize_in_place::<i8, u8>(p, buf),
                (Some(DType::UInt8), Some(DType::Int8)) => requantize_in_place::<u8, i8>(p, buf),
                (Some(DType::Int16), Some(DType::Int16)) => requantize_in_place::<i16, i16>(p, buf),
                (Some(DType::Int32), Some(DType::Int32)) => requantize_in_place::<i32, i32>(p, buf),
                _ => return Err(ctx.param_error("flags (in-place QUANTIZE types)")),
            }
            Ok(())
        }
        (InPlace::Alias(k), OpKind::Add | OpKind::Sub | OpKind::Mul)
            if super::select::linked(OpKind::Add) =>
        {
            let p: &ArithParams = ctx.params()?;
            let other_k = if k == 0 { 1 } else { 0 };
            let (_, other) = ctx.required_input(other_k)?;
            let (_, out) = ctx.output(0)?;
            let (os, orank) = dims(out.dims());
            let (bs, brank) = dims(other.dims());
            let other_bytes = mem.required_input(other_k)?;
            binary_int8_in_place(
                ctx.kind,
                p,
                &os[..orank],
                as_i8_mut(mem.output),
                k == 0,
                &bs[..brank],
                as_i8(other_bytes),
            )
        }
        (InPlace::ShiftDown | InPlace::ShiftUp, OpKind::Quantize | OpKind::Dequantize)
            if super::select::linked(OpKind::Quantize) =>
        {
            let (dir, _) = shift_of(ctx)?;
            let hull = region(ctx)?;
            let (_, inp) = ctx.required_input(0)?;
            let (_, out) = ctx.output(0)?;
            let (Some(from), Some(to)) = (inp.dtype(), out.dtype()) else {
                return Err(ctx.param_error("dtype"));
            };
            let p: &QuantizeParams = ctx.params()?;
            let n = usize::try_from(inp.elements()).map_err(|_| ctx.param_error("elements"))?;
            let in_at = (inp.offset as usize).saturating_sub(hull.start);
            let out_at = (out.offset as usize).saturating_sub(hull.start);
            elementwise_in_place(
                n,
                from.size(),
                to.size(),
                mem.output,
                in_at,
                out_at,
                dir,
                |x, y| convert_bytes(ctx.kind, p, from, to, x, y),
            )
        }
        (InPlace::ShiftDown | InPlace::ShiftUp, OpKind::Conv2d | OpKind::DepthwiseConv2d)
            if super::select::linked(ctx.kind) =>
        {
            let (dir, _) = shift_of(ctx)?;
            let hull = region(ctx)?;
            let (_, inp) = ctx.required_input(0)?;
            let (_, out) = ctx.output(0)?;
            let in_at = (inp.offset as usize).saturating_sub(hull.start);
            let out_at = (out.offset as usize).saturating_sub(hull.start);
            if super::select::INT4 && super::int4::applies(ctx) {
                return super::int4::eval_in_place(ctx, mem, dir, in_at, out_at);
            }
            let is = dims4(ctx, ctx.required_input(0)?, "a 4-D NHWC input")?;
            let fs = dims4(ctx, ctx.required_input(1)?, "a 4-D filter")?;
            let os = dims4(ctx, ctx.output(0)?, "a 4-D NHWC output")?;
            let filter = as_i8(mem.required_input(1)?);
            let bias = bias_input(ctx, &mem)?;
            let buf = as_i8_mut(mem.output);
            if ctx.kind == OpKind::Conv2d {
                let p: &ConvParams = ctx.params()?;
                let (m, s) = channel_quant(ctx, p.multipliers_offset, p.shifts_offset, fs[0])?;
                let packed = packed_filter(ctx, p, fs)?;
                let kernel = |bp: &ConvParams, bis, inp: &[i8], bos, out: &mut [i8]| {
                    #[cfg(all(target_arch = "arm", feature = "arm-mve"))]
                    if crate::simd::mve::conv2d_int8(bp, bis, inp, fs, filter, bias, m, s, bos, out)
                        .is_some()
                    {
                        return Ok(());
                    }
                    #[cfg(feature = "arm-dsp")]
                    if crate::simd::arm_dsp::conv2d_int8(
                        bp, bis, inp, fs, filter, bias, m, s, bos, out,
                    )
                    .is_some()
                    {
                        return Ok(());
                    }
                    conv2d_int8_fast(
                        Isa::best(),
                        packed.as_ref(),
                        bp,
                        bis,
                        inp,
                        fs,
                        filter,
                        bias,
                        m,
                        s,
                        bos,
                        out,
                    )
                };
                // The SIMD path runs the whole op in one pass over the shared buffer.
                if conv2d_int8_fast_in_place(
                    Isa::best(),
                    packed.as_ref(),
                    p,
                    [is, fs, os],
                    m,
                    s,
                    buf,
                    in_at,
                    out_at,
                    dir,
                )? {
                    return Ok(());
                }
                window_op_in_place(p, is, fs, os, buf, in_at, out_at, dir, kernel)
            } else {
                let p: &DepthwiseParams = ctx.params()?;
                let (m, s) = channel_quant(ctx, p.multipliers_offset, p.shifts_offset, fs[3])?;
                let kernel = |bp: &DepthwiseParams, bis, inp: &[i8], bos, out: &mut [i8]| {
                    #[cfg(all(target_arch = "arm", feature = "arm-mve"))]
                    if crate::simd::mve::depthwise_conv2d_int8(
                        bp, bis, inp, fs, filter, bias, m, s, bos, out,
                    )
                    .is_some()
                    {
                        return Ok(());
                    }
                    #[cfg(feature = "arm-dsp")]
                    if crate::simd::arm_dsp::depthwise_conv2d_int8(
                        bp, bis, inp, fs, filter, bias, m, s, bos, out,
                    )
                    .is_some()
                    {
                        return Ok(());
                    }
                    depthwise_conv2d_int8(bp, bis, inp, fs, filter, bias, m, s, bos, out)
                };
                // The SIMD path runs the whole op in one pass over the shared buffer.
                if depthwise_conv2d_int8_fast_in_place(
                    Isa::best(),
                    p,
                    [is, fs, os],
                    filter,
                    bias,
                    m,
                    s,
                    buf,
                    in_at,
                    out_at,
                    dir,
                )? {
                    return Ok(());
                }
                // On a DSP-extension core without Helium, one plan serves every band.
                #[cfg(all(
                    feature = "arm-dsp",
                    not(all(target_arch = "arm", feature = "arm-mve"))
                ))]
                let done = {
                    let _ = kernel;
                    dsp_depthwise_in_place(
                        p,
                        [is, fs, os],
                        filter,
                        bias,
                        m,
                        s,
                        buf,
                        in_at,
                        out_at,
                        dir,
                    )
                };
                #[cfg(not(all(
                    feature = "arm-dsp",
                    not(all(target_arch = "arm", feature = "arm-mve"))
                )))]
                let done = window_op_in_place(p, is, fs, os, buf, in_at, out_at, dir, kernel);
                done
            }
        }
        _ => Err(ctx.param_error("flags (in-place mode not supported by this kind)")),
    }
}

/// [`window_op_in_place`] for DEPTHWISE_CONV_2D with one DSP-extension plan for every band (its per-op
/// preparation runs once, not once per band), or the reference kernel when the plan does not
/// apply. Out of line: its 4 KB of scratch is on the stack only while it runs.
#[cfg(all(
    feature = "arm-dsp",
    not(all(target_arch = "arm", feature = "arm-mve"))
))]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn dsp_depthwise_in_place(
    p: &DepthwiseParams,
    [is, fs, os]: [[usize; 4]; 3],
    filter: &[i8],
    bias: Option<&[i32]>,
    m: &[i32],
    s: &[i32],
    buf: &mut [i8],
    in_at: usize,
    out_at: usize,
    dir: ShiftDirection,
) -> Result<(), Error> {
    let mut scratch = crate::simd::arm_dsp::Scratch::new();
    let mut plan =
        crate::simd::arm_dsp::DepthwisePlan::new(&mut scratch, p, fs, filter, bias, m, s);
    let kernel = |bp: &DepthwiseParams, bis, inp: &[i8], bos, out: &mut [i8]| {
        if let Some(Some(())) = plan.as_mut().map(|d| d.run(bp, bis, inp, bos, out)) {
            return Ok(());
        }
        depthwise_conv2d_int8(bp, bis, inp, fs, filter, bias, m, s, bos, out)
    };
    window_op_in_place(p, is, fs, os, buf, in_at, out_at, dir, kernel)
}

fn dims(d: &[u32]) -> ([usize; MAX_RANK], usize) {
    let mut out = [0usize; MAX_RANK];
    for (o, &x) in out.iter_mut().zip(d) {
        *o = x as usize;
    }
    (out, d.len().min(MAX_RANK))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::super::conv::conv2d_int8;
    use super::super::conv::tests::{cases, Rng};
    use super::*;

    /// `first_row` in exact i128 arithmetic (the definition), for comparison.
    fn first_row_exact(g: &RowGeometry, oy: i128) -> i128 {
        (oy * g.stride as i128 - g.pad as i128).clamp(0, g.in_rows as i128)
    }

    /// `end_row` in exact i128 arithmetic (the definition), for comparison.
    fn end_row_exact(g: &RowGeometry, oy: i128) -> i128 {
        let reach = (g.filter.saturating_sub(1) as i128) * g.dilation as i128;
        (oy * g.stride as i128 - (g.pad as i128 - reach - 1)).clamp(0, g.in_rows as i128)
    }

    #[test]
    fn unbounded_geometry_has_no_shift() {
        // Geometry beyond `u32` spans is refused rather than computed inexactly.
        let huge = RowGeometry {
            in_rows: 1 << 20,
            in_row_bytes: 1 << 13,
            ..RowGeometry::pointwise(1, 1, 1, 1)
        };
        assert_eq!(min_shift(&huge, ShiftDirection::Down), None);
    }

    /// The smallest shift, found by trying every band start (the definition), for comparison.
    fn brute_min_shift(g: &RowGeometry, dir: ShiftDirection) -> i128 {
        let (irb, orb) = (g.in_row_bytes as i128, g.out_row_bytes as i128);
        let (ih, oh) = (g.in_rows as i128, g.out_rows as i128);
        let mut need = 0i128;
        for b in 0..g.batches as i128 {
            for oy in 0..oh {
                let v = match dir {
                    ShiftDirection::Down => {
                        (b * oh + oy + 1) * orb - (b * ih + first_row_exact(g, oy)) * irb
                    }
                    ShiftDirection::Up => {
                        (b * ih + end_row_exact(g, oy)) * irb - (b * oh + oy) * orb
                    }
                };
                need = need.max(v);
            }
        }
        need
    }

    fn random_geometry(r: &mut Rng) -> RowGeometry {
        RowGeometry {
            batches: r.range(1, 3) as usize,
            in_rows: r.range(1, 12) as usize,
            in_row_bytes: r.range(1, 40) as usize,
            out_rows: r.range(1, 12) as usize,
            out_row_bytes: r.range(1, 40) as usize,
            stride: r.range(1, 3) as usize,
            pad: r.range(0, 4) as usize,
            filter: r.range(1, 5) as usize,
            dilation: r.range(1, 3) as usize,
        }
    }

    #[test]
    fn closed_form_shift_equals_brute_force() {
        let mut r = Rng(0xfeed);
        for _ in 0..cases(20000, 50) {
            let g = random_geometry(&mut r);
            for dir in [ShiftDirection::Down, ShiftDirection::Up] {
                assert_eq!(
                    min_shift(&g, dir).unwrap() as i128,
                    brute_min_shift(&g, dir).max(0),
                    "{g:?} {dir:?}"
                );
            }
        }
    }

    #[test]
    fn known_shifts() {
        // KWS depthwise 3×3, stride 1, SAME: 25×5×64 → two rows (the row above and this one).
        let dw = RowGeometry::window(
            [1, 25, 5, 64],
            [1, 25, 5, 64],
            [3, 3],
            [1, 1],
            [1, 1],
            [1, 1],
        );
        assert_eq!(min_shift(&dw, ShiftDirection::Down), Some(2 * 320));
        assert_eq!(min_shift(&dw, ShiftDirection::Up), Some(2 * 320));
        // Pointwise, same channels: one pixel.
        let pw = RowGeometry::window(
            [1, 25, 5, 64],
            [1, 25, 5, 64],
            [1, 1],
            [1, 1],
            [0, 0],
            [1, 1],
        );
        assert_eq!(min_shift(&pw, ShiftDirection::Down), Some(64));
        // Pointwise halving channels: no shift needed going down.
        let pw = RowGeometry::window([1, 4, 4, 32], [1, 4, 4, 16], [1, 1], [1, 1], [0, 0], [1, 1]);
        assert_eq!(min_shift(&pw, ShiftDirection::Down), Some(16));
        assert_eq!(min_shift(&pw, ShiftDirection::Up), Some(16 * 32 - 15 * 16));
    }

    #[test]
    fn bands_cover_every_row_once() {
        let mut r = Rng(77);
        for _ in 0..cases(5000, 20) {
            let g = random_geometry(&mut r);
            for dir in [ShiftDirection::Down, ShiftDirection::Up] {
                let need = min_shift(&g, dir).unwrap();
                let shift = need + r.range(0, 50) as u64;
                let mut seen = vec![0u8; g.batches * g.out_rows];
                let (irb, orb) = (g.in_row_bytes as i128, g.out_row_bytes as i128);
                let (ih, oh) = (g.in_rows as i128, g.out_rows as i128);
                let s = shift as i128;
                for (b, oy0, oy1) in Bands::new(&g, dir, shift) {
                    assert!(oy0 < oy1 && oy1 <= g.out_rows, "{g:?} {dir:?} {oy0} {oy1}");
                    for oy in oy0..oy1 {
                        seen[b * g.out_rows + oy] += 1;
                    }
                    let (b, oy0, oy1) = (b as i128, oy0 as i128, oy1 as i128);
                    // Output bytes relative to the input's start.
                    match dir {
                        ShiftDirection::Down => {
                            let out_end = -s + (b * oh + oy1) * orb;
                            assert!(out_end <= (b * ih + first_row_exact(&g, oy0)) * irb);
                        }
                        ShiftDirection::Up => {
                            let out_start = s + (b * oh + oy0) * orb;
                            assert!(out_start >= (b * ih + end_row_exact(&g, oy1 - 1)) * irb);
                        }
                    }
                }
                assert!(seen.iter().all(|&n| n == 1), "{g:?} {dir:?} {seen:?}");
            }
        }
    }

    /// Random int8 data, multipliers and shifts for a window op.
    struct Case {
        is: [usize; 4],
        fs: [usize; 4],
        os: [usize; 4],
        input: Vec<i8>,
        filter: Vec<i8>,
        bias: Vec<i32>,
        mult: Vec<i32>,
        shift: Vec<i32>,
    }

    fn out_size(i: usize, f: usize, s: usize, d: usize, same: bool) -> (usize, usize) {
        let eff = (f - 1) * d + 1;
        let o = if same {
            i.div_ceil(s)
        } else {
            (i + s).saturating_sub(eff) / s
        };
        let pad = (((o as i64 - 1) * s as i64 + eff as i64 - i as i64).max(0) / 2) as usize;
        (o, pad)
    }

    /// A case with its stride, padding and dilation.
    type WindowCase = (Case, [usize; 2], [usize; 2], [usize; 2]);

    fn case(r: &mut Rng, depthwise: bool) -> Option<WindowCase> {
        let batches = r.range(1, 2) as usize;
        let (in_h, in_w) = (r.range(1, 9) as usize, r.range(1, 7) as usize);
        let in_c = r.range(1, 6) as usize;
        let pointwise = r.range(0, 3) == 0;
        let (fh, fw) = if pointwise {
            (1, 1)
        } else {
            (r.range(1, 4) as usize, r.range(1, 4) as usize)
        };
        let (sh, sw) = if pointwise {
            (1, 1)
        } else {
            (r.range(1, 3) as usize, r.range(1, 3) as usize)
        };
        let (dh, dw) = (r.range(1, 2) as usize, r.range(1, 2) as usize);
        let same = pointwise || r.range(0, 1) == 1;
        let (out_h, ph) = out_size(in_h, fh, sh, dh, same);
        let (out_w, pw) = out_size(in_w, fw, sw, dw, same);
        if out_h == 0 || out_w == 0 {
            return None;
        }
        let m = if depthwise { r.range(1, 2) as usize } else { 1 };
        let out_c = if depthwise {
            in_c * m
        } else {
            r.range(1, 8) as usize
        };
        let is = [batches, in_h, in_w, in_c];
        let fs = if depthwise {
            [1, fh, fw, out_c]
        } else {
            [out_c, fh, fw, in_c]
        };
        let os = [batches, out_h, out_w, out_c];
        let n = |s: [usize; 4]| s.iter().product::<usize>();
        let mut c = Case {
            is,
            fs,
            os,
            input: (0..n(is)).map(|_| r.range(-128, 127) as i8).collect(),
            filter: (0..n(fs)).map(|_| r.range(-127, 127) as i8).collect(),
            bias: (0..out_c).map(|_| r.range(-5000, 5000) as i32).collect(),
            mult: Vec::new(),
            shift: Vec::new(),
        };
        for _ in 0..out_c {
            let (m, s) = r.quant();
            c.mult.push(m);
            c.shift.push(s);
        }
        Some((c, [sh, sw], [ph, pw], [dh, dw]))
    }

    /// Places input and output in one buffer at the given shift and direction, with poison
    /// around them.
    fn layout(
        in_len: usize,
        out_len: usize,
        dir: ShiftDirection,
        shift: usize,
    ) -> (usize, usize, usize) {
        let margin = 7;
        match dir {
            ShiftDirection::Down => {
                let out_at = margin;
                let in_at = out_at + shift;
                (
                    in_at,
                    out_at,
                    (in_at + in_len).max(out_at + out_len) + margin,
                )
            }
            ShiftDirection::Up => {
                let in_at = margin;
                let out_at = in_at + shift;
                (
                    in_at,
                    out_at,
                    (in_at + in_len).max(out_at + out_len) + margin,
                )
            }
        }
    }

    /// Runs the case in place with the reference kernels as band kernels.
    #[allow(clippy::too_many_arguments)]
    fn run(
        c: &Case,
        cp: &ConvParams,
        dp: &DepthwiseParams,
        depthwise: bool,
        bias: Option<&[i32]>,
        buf: &mut [i8],
        in_at: usize,
        out_at: usize,
        dir: ShiftDirection,
    ) -> Result<(), Error> {
        if depthwise {
            let k = |bp: &DepthwiseParams, bis, inp: &[i8], bos, out: &mut [i8]| {
                depthwise_conv2d_int8(
                    bp, bis, inp, c.fs, &c.filter, bias, &c.mult, &c.shift, bos, out,
                )
            };
            window_op_in_place(dp, c.is, c.fs, c.os, buf, in_at, out_at, dir, k)
        } else {
            let k = |bp: &ConvParams, bis, inp: &[i8], bos, out: &mut [i8]| {
                conv2d_int8(
                    bp, bis, inp, c.fs, &c.filter, bias, &c.mult, &c.shift, bos, out,
                )
            };
            window_op_in_place(cp, c.is, c.fs, c.os, buf, in_at, out_at, dir, k)
        }
    }

    #[test]
    fn in_place_windows_equal_reference() {
        let mut r = Rng(0xdead_beef);
        let mut ran = 0;
        for iter in 0..cases(3000, 3) {
            let depthwise = iter % 2 == 1;
            let Some((c, stride, pad, dil)) = case(&mut r, depthwise) else {
                continue;
            };
            let zp_in = r.range(-128, 127) as i32;
            let zp_out = r.range(-128, 127) as i32;
            let (act_min, act_max) = (r.range(-128, 0) as i32, r.range(0, 127) as i32);
            let out_len: usize = c.os.iter().product();
            let mut want = vec![0i8; out_len];
            let cp = ConvParams {
                stride_h: stride[0] as u32,
                stride_w: stride[1] as u32,
                dilation_h: dil[0] as u32,
                dilation_w: dil[1] as u32,
                pad_h: pad[0] as u32,
                pad_w: pad[1] as u32,
                input_offset: -zp_in,
                output_offset: zp_out,
                act_min,
                act_max,
                multipliers_offset: 0,
                shifts_offset: 0,
                channel_count: c.os[3] as u32,
                layout: 0,
                packed_offset: 0,
                folded_bias_offset: 0,
            };
            let dp = DepthwiseParams {
                stride_h: cp.stride_h,
                stride_w: cp.stride_w,
                dilation_h: cp.dilation_h,
                dilation_w: cp.dilation_w,
                pad_h: cp.pad_h,
                pad_w: cp.pad_w,
                input_offset: cp.input_offset,
                output_offset: cp.output_offset,
                act_min,
                act_max,
                multipliers_offset: 0,
                shifts_offset: 0,
                channel_count: c.os[3] as u32,
                depth_multiplier: (c.os[3] / c.is[3]) as u32,
            };
            let bias = (r.range(0, 1) == 1).then_some(&c.bias[..]);
            if depthwise {
                depthwise_conv2d_int8(
                    &dp, c.is, &c.input, c.fs, &c.filter, bias, &c.mult, &c.shift, c.os, &mut want,
                )
                .unwrap();
            } else {
                conv2d_int8(
                    &cp, c.is, &c.input, c.fs, &c.filter, bias, &c.mult, &c.shift, c.os, &mut want,
                )
                .unwrap();
            }
            let g = RowGeometry::window(c.is, c.os, [c.fs[1], c.fs[2]], stride, pad, dil);
            for dir in [ShiftDirection::Down, ShiftDirection::Up] {
                let need = min_shift(&g, dir).unwrap() as usize;
                for extra in [0, r.range(1, 40) as usize] {
                    let (in_at, out_at, len) = layout(c.input.len(), out_len, dir, need + extra);
                    let mut buf = vec![0x5Au8 as i8; len];
                    buf[in_at..in_at + c.input.len()].copy_from_slice(&c.input);
                    run(&c, &cp, &dp, depthwise, bias, &mut buf, in_at, out_at, dir).unwrap();
                    assert_eq!(
                        &buf[out_at..out_at + out_len],
                        &want[..],
                        "depthwise={depthwise} {dir:?} shift {} is {:?} fs {:?} os {:?} stride {stride:?} pad {pad:?} dil {dil:?}",
                        need + extra,
                        c.is,
                        c.fs,
                        c.os
                    );
                    ran += 1;
                }
                // One byte less than needed is refused.
                if need > 0 {
                    let (in_at, out_at, len) = layout(c.input.len(), out_len, dir, need - 1);
                    let mut buf = vec![0i8; len];
                    let r = run(&c, &cp, &dp, depthwise, bias, &mut buf, in_at, out_at, dir);
                    assert!(r.is_err());
                }
            }
        }
        // Coverage of the native run (Miri runs a handful of cases, for undefined behaviour).
        assert!(cfg!(miri) || ran > 2000, "{ran}");
    }

    /// Pointwise convolutions with wide pixels (a few per staged band, several bands) at the
    /// smallest shift and above, both directions: the staged bands give the reference's bytes.
    #[test]
    fn staged_pointwise_bands_equal_reference() {
        let mut r = Rng(0x5a9e_d0d0);
        let mut staged_runs = 0;
        // Under Miri: two cases of small shapes (the full run is ~10^9 multiply-adds).
        for _ in 0..cases(300, 2) {
            let batches = r.range(1, 2) as usize;
            let (h, w) = (r.range(1, 6) as usize, r.range(1, 5) as usize);
            let in_c = r.range(20, cases(140, 40) as i64) as usize;
            let out_c = r.range(1, cases(160, 8) as i64) as usize;
            let is = [batches, h, w, in_c];
            let fs = [out_c, 1, 1, in_c];
            let os = [batches, h, w, out_c];
            let input: Vec<i8> = (0..batches * h * w * in_c)
                .map(|_| r.range(-128, 127) as i8)
                .collect();
            let filter: Vec<i8> = (0..out_c * in_c)
                .map(|_| r.range(-127, 127) as i8)
                .collect();
            let bias: Vec<i32> = (0..out_c).map(|_| r.range(-5000, 5000) as i32).collect();
            let (mut mult, mut shift) = (Vec::new(), Vec::new());
            for _ in 0..out_c {
                let (m, s) = r.quant();
                mult.push(m);
                shift.push(s);
            }
            let p = ConvParams {
                stride_h: 1,
                stride_w: 1,
                dilation_h: 1,
                dilation_w: 1,
                pad_h: 0,
                pad_w: 0,
                input_offset: r.range(-127, 128) as i32,
                output_offset: r.range(-128, 127) as i32,
                act_min: -128,
                act_max: 127,
                multipliers_offset: 0,
                shifts_offset: 0,
                channel_count: out_c as u32,
                layout: 0,
                packed_offset: 0,
                folded_bias_offset: 0,
            };
            let out_len = batches * h * w * out_c;
            let mut want = vec![0i8; out_len];
            conv2d_int8(
                &p,
                is,
                &input,
                fs,
                &filter,
                Some(&bias),
                &mult,
                &shift,
                os,
                &mut want,
            )
            .unwrap();
            let g = RowGeometry::window(is, os, [1, 1], [1, 1], [0, 0], [1, 1]);
            for dir in [ShiftDirection::Down, ShiftDirection::Up] {
                let need = min_shift(&g, dir).unwrap() as usize;
                for extra in [0, r.range(1, 300) as usize] {
                    let (in_at, out_at, len) = layout(input.len(), out_len, dir, need + extra);
                    let mut buf = vec![0x5Au8 as i8; len];
                    buf[in_at..in_at + input.len()].copy_from_slice(&input);
                    let mut calls = 0;
                    let k = |bp: &ConvParams, bis, inp: &[i8], bos, out: &mut [i8]| {
                        calls += 1;
                        conv2d_int8(
                            bp,
                            bis,
                            inp,
                            fs,
                            &filter,
                            Some(&bias),
                            &mult,
                            &shift,
                            bos,
                            out,
                        )
                    };
                    window_op_in_place(&p, is, fs, os, &mut buf, in_at, out_at, dir, k).unwrap();
                    assert_eq!(
                        &buf[out_at..out_at + out_len],
                        &want[..],
                        "{dir:?} {is:?} {os:?}"
                    );
                    let pixels = batches * h * w;
                    if in_c <= STAGE_BYTES / 2 && pixels > 1 {
                        // Staged: bands of several pixels.
                        assert_eq!(calls, pixels.div_ceil(STAGE_BYTES / in_c));
                        staged_runs += 1;
                    }
                    assert!(buf[..out_at.min(in_at)].iter().all(|&b| b == 0x5A));
                }
            }
        }
        assert!(staged_runs > cases(500, 0), "{staged_runs}");
    }

    /// A conversion case: kind, types, input bytes and the reference output bytes.
    type Conversion = (OpKind, DType, DType, Vec<u8>, Vec<u8>);

    #[test]
    fn conversions_in_place_equal_reference() {
        let mut r = Rng(31);
        for _ in 0..cases(300, 4) {
            let n = r.range(1, 300) as usize;
            let p = QuantizeParams {
                scale: 0.05,
                input_zero_point: r.range(-20, 20) as i32,
                output_zero_point: r.range(-20, 20) as i32,
                multiplier: 0,
                shift: 0,
            };
            let floats: Vec<f32> = (0..n)
                .map(|_| r.range(-9000, 9000) as f32 / 1000.0)
                .collect();
            let ints: Vec<i8> = (0..n).map(|_| r.range(-128, 127) as i8).collect();
            let mut q_want = vec![0i8; n];
            quantize_f32::<i8>(&p, &floats, &mut q_want);
            let mut d_want = vec![0f32; n];
            dequantize::<i8>(&p, &ints, &mut d_want);
            let cases: [Conversion; 2] = [
                (
                    OpKind::Quantize,
                    DType::Float32,
                    DType::Int8,
                    bytemuck::cast_slice(&floats).to_vec(),
                    bytemuck::cast_slice(&q_want).to_vec(),
                ),
                (
                    OpKind::Dequantize,
                    DType::Int8,
                    DType::Float32,
                    bytemuck::cast_slice(&ints).to_vec(),
                    bytemuck::cast_slice(&d_want).to_vec(),
                ),
            ];
            for (kind, from, to, input, want) in cases {
                let g = RowGeometry::pointwise(1, n, from.size(), to.size());
                for dir in [ShiftDirection::Down, ShiftDirection::Up] {
                    // Aligned to 4 so that float elements can be read in place.
                    let need = (min_shift(&g, dir).unwrap() as usize).div_ceil(4) * 4;
                    let (in_at, out_at, len) = layout(input.len(), want.len(), dir, need);
                    let (in_at, out_at) = (in_at + 1, out_at + 1); // layout's margin is 7
                    let mut words = vec![0u32; (len + 8).div_ceil(4)];
                    let buf: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
                    buf[in_at..in_at + input.len()].copy_from_slice(&input);
                    elementwise_in_place(
                        n,
                        from.size(),
                        to.size(),
                        buf,
                        in_at,
                        out_at,
                        dir,
                        |x, y| convert_bytes(kind, &p, from, to, x, y),
                    )
                    .unwrap();
                    assert_eq!(
                        &buf[out_at..out_at + want.len()],
                        &want[..],
                        "{kind:?} {dir:?} n={n}"
                    );
                }
            }
        }
    }

    #[test]
    fn binary_in_place_equals_reference() {
        use super::super::arith::broadcast_binary;
        let mut r = Rng(4242);
        for _ in 0..cases(2000, 12) {
            let rank = r.range(1, 4) as usize;
            let out: Vec<usize> = (0..rank).map(|_| r.range(1, 4) as usize).collect();
            // The other operand: a suffix of the output's dims, some set to 1.
            let k = r.range(0, rank as i64) as usize;
            let other: Vec<usize> = out[rank - k..]
                .iter()
                .map(|&d| if r.range(0, 2) == 0 { 1 } else { d })
                .collect();
            let n: usize = out.iter().product();
            let m: usize = other.iter().product();
            let a: Vec<i8> = (0..n).map(|_| r.range(-128, 127) as i8).collect();
            let b: Vec<i8> = (0..m).map(|_| r.range(-128, 127) as i8).collect();
            let p = ArithParams {
                input1_offset: r.range(-127, 128) as i32,
                input2_offset: r.range(-127, 128) as i32,
                output_offset: r.range(-128, 127) as i32,
                left_shift: 20,
                input1_multiplier: r.range(1 << 30, i32::MAX as i64) as i32,
                input1_shift: r.range(-3, 0) as i32,
                input2_multiplier: r.range(1 << 30, i32::MAX as i64) as i32,
                input2_shift: r.range(-3, 0) as i32,
                output_multiplier: r.range(1 << 30, i32::MAX as i64) as i32,
                output_shift: r.range(-20, -15) as i32,
                activation_min: -128,
                activation_max: 127,
            };
            for kind in [OpKind::Add, OpKind::Sub, OpKind::Mul] {
                let f = match kind {
                    OpKind::Add => add_element,
                    OpKind::Sub => sub_element,
                    _ => mul_element,
                };
                for buf_first in [true, false] {
                    let mut want = vec![0i8; n];
                    if buf_first {
                        broadcast_binary(&out, &a, &other, &b, &out, &mut want, |x, y| f(&p, x, y))
                    } else {
                        broadcast_binary(&other, &b, &out, &a, &out, &mut want, |x, y| f(&p, x, y))
                    }
                    .unwrap();
                    let mut got = a.clone();
                    binary_int8_in_place(kind, &p, &out, &mut got, buf_first, &other, &b).unwrap();
                    assert_eq!(got, want, "{kind:?} {out:?} {other:?} first={buf_first}");
                }
            }
        }
    }

    #[test]
    fn requantize_in_place_equals_reference() {
        let mut r = Rng(5);
        for _ in 0..cases(200, 4) {
            let (m, s) = r.quant();
            let p = QuantizeParams {
                scale: 0.0,
                input_zero_point: r.range(-128, 127) as i32,
                output_zero_point: r.range(-128, 127) as i32,
                multiplier: m,
                shift: s + 8,
            };
            let x: Vec<i8> = (0..64).map(|_| r.range(-128, 127) as i8).collect();
            let mut want = vec![0i8; 64];
            requantize::<i8, i8>(&p, &x, &mut want);
            let mut got: Vec<u8> = bytemuck::cast_slice(&x).to_vec();
            requantize_in_place::<i8, i8>(&p, &mut got);
            assert_eq!(got, bytemuck::cast_slice::<i8, u8>(&want));
            let x16: Vec<i16> = (0..64).map(|_| r.range(-30000, 30000) as i16).collect();
            let mut want16 = vec![0i16; 64];
            requantize::<i16, i16>(&p, &x16, &mut want16);
            let mut got16: Vec<u8> = bytemuck::cast_slice(&x16).to_vec();
            requantize_in_place::<i16, i16>(&p, &mut got16);
            assert_eq!(got16, bytemuck::cast_slice::<i16, u8>(&want16));
        }
    }

    #[test]
    fn hostile_in_place_arguments_never_panic() {
        let mut r = Rng(99);
        let p = ConvParams {
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            pad_h: 1,
            pad_w: 1,
            input_offset: 0,
            output_offset: 0,
            act_min: -128,
            act_max: 127,
            multipliers_offset: 0,
            shifts_offset: 0,
            channel_count: 2,
            layout: 0,
            packed_offset: 0,
            folded_bias_offset: 0,
        };
        for _ in 0..cases(5000, 40) {
            let mut buf = vec![0i8; r.range(0, 200) as usize];
            let is = [1, r.range(0, 5) as usize, r.range(0, 5) as usize, 2];
            let os = [1, r.range(0, 5) as usize, r.range(0, 5) as usize, 2];
            let pp = ConvParams {
                stride_h: r.range(0, 3) as u32,
                pad_h: r.range(0, 3) as u32,
                ..p
            };
            let dir = if r.range(0, 1) == 0 {
                ShiftDirection::Down
            } else {
                ShiftDirection::Up
            };
            let kernel = |bp: &ConvParams, bis, inp: &[i8], bos, out: &mut [i8]| {
                conv2d_int8(
                    bp,
                    bis,
                    inp,
                    [2, 3, 3, 2],
                    &[1; 36],
                    None,
                    &[1 << 30; 2],
                    &[0; 2],
                    bos,
                    out,
                )
            };
            let _ = window_op_in_place(
                &pp,
                is,
                [2, 3, 3, 2],
                os,
                &mut buf,
                r.range(0, 250) as usize,
                r.range(0, 250) as usize,
                dir,
                kernel,
            );
        }
    }
}
