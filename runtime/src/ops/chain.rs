//! A residual block as one op: CONV_2D → CONV_2D → ADD, the intermediate streamed row by row.
//!
//! Flagged by [`OpFlags::chain`](crate::format::OpFlags) (with `epilogue_add`) on a CONV_2D op.
//! Inputs: 0 = input `x`, 1 = first filter, 2 = first bias (optional), 3 = second filter, 4 =
//! second bias (optional), 5 = the residual (int8, the output's shape). Parameters: the first
//! [`ConvParams`], the second [`ConvParams`], the intermediate's [`MidShape`], then the ADD's
//! [`ArithParams`].
//!
//! The intermediate tensor (the first convolution's output) is never stored whole: the op's
//! scratch holds the few rows of it that the second convolution's current output rows read (a
//! window that slides down), and those output rows ([`MidShape::band_rows`] of them per step). Each intermediate row and each output row is
//! computed by the ordinary CONV_2D kernel on a band of rows, the sums by the ADD kernel — so the
//! bytes equal those of the three separate ops.
//!
//! The output may overwrite the residual (`InPlace::Alias(5)`), and the residual may be `x`
//! itself (a block whose shortcut is its input): then output row `r` is written once every
//! intermediate row that reads `x`'s row `r` has been computed, which [`in_place_ok`] checks.

use core::mem::size_of;

use bytemuck::{Pod, Zeroable};

use super::arith::ArithParams;
use super::conv::{
    channel_quant_validated, conv2d_int8_fast, dims4, kernel_error, packed_filter, ConvParams,
};
use super::inplace::{add_residual, BandKernel, RowGeometry};
use super::{as_i8, as_i8_mut, as_typed, OpCtx, OpKind, OpMem};
use crate::error::Error;
use crate::format::{DType, InPlace, OpDesc, OpFlags, Storage, TensorDesc, NONE};
use crate::simd::Isa;

/// Shape of the intermediate tensor of a residual block (batches are the input's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct MidShape {
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
    /// Channels.
    pub channels: u32,
    /// Output rows computed per step (≥ 1): more rows take more scratch and fewer kernel calls.
    pub band_rows: u32,
}

const CONV: usize = size_of::<ConvParams>();
const MID: usize = size_of::<MidShape>();
const ADD: usize = size_of::<ArithParams>();
/// Length of a residual block's parameters.
pub const PARAMS_LEN: usize = 2 * CONV + MID + ADD;
/// Largest number of output rows a residual block may have (bounds validation time).
pub const MAX_ROWS: usize = 1 << 16;

/// Row geometry of a convolution from `input` to `output` (rows are rows, never pixels).
fn rows(p: &ConvParams, input: [usize; 4], f_h: usize, output: [usize; 4]) -> RowGeometry {
    RowGeometry {
        batches: input[0],
        in_rows: input[1],
        in_row_bytes: input[2] * input[3],
        out_rows: output[1],
        out_row_bytes: output[2] * output[3],
        stride: p.stride_h as usize,
        pad: p.pad_h as usize,
        filter: f_h,
        dilation: p.dilation_h as usize,
    }
}

/// Rows of top padding still above the window of output row `row` (the band's own padding).
fn band_pad(p: &ConvParams, row: usize) -> u32 {
    let above = row.saturating_mul(p.stride_h as usize);
    p.pad_h
        .saturating_sub(u32::try_from(above).unwrap_or(u32::MAX))
}

/// Rows of the intermediate the second convolution reads for `band` consecutive output rows,
/// at most.
fn window_rows(p2: &ConvParams, f2_h: usize, mid_h: usize, band: usize) -> usize {
    let span = f2_h
        .saturating_sub(1)
        .saturating_mul(p2.dilation_h as usize)
        .saturating_add(1)
        .saturating_add(band.saturating_sub(1).saturating_mul(p2.stride_h as usize));
    span.min(mid_h)
}

/// Scratch bytes a residual block computing `band` output rows per step needs: the
/// intermediate's row window and `band` output rows.
pub fn scratch_bytes(
    p2: &ConvParams,
    f2_h: usize,
    mid_shape: [usize; 4],
    output_shape: [usize; 4],
    band: usize,
) -> Option<usize> {
    let [_, mid_h, mid_w, mid_c] = mid_shape;
    let [_, out_h, out_w, out_c] = output_shape;
    let band = band.clamp(1, out_h.max(1));
    window_rows(p2, f2_h, mid_h, band)
        .checked_mul(mid_w.checked_mul(mid_c)?)?
        .checked_add(band.checked_mul(out_w.checked_mul(out_c)?)?)
}

/// Whether the output of a residual block may overwrite its input `x` (when the residual is
/// `x`): output row `r` is written only after every intermediate row reading row `r` of `x`.
/// Needs the output to have `x`'s shape.
pub fn in_place_ok(
    p1: &ConvParams,
    f1_h: usize,
    x_shape: [usize; 4],
    mid_shape: [usize; 4],
    p2: &ConvParams,
    f2_h: usize,
    output_shape: [usize; 4],
) -> bool {
    if x_shape != output_shape || output_shape[1] > MAX_ROWS {
        return false;
    }
    let g1 = rows(p1, x_shape, f1_h, mid_shape);
    let g2 = rows(p2, mid_shape, f2_h, output_shape);
    (0..output_shape[1]).all(|oy| {
        // Intermediate rows computed once output row `oy` is done: [0, end).
        let end = g2.end_row_of(oy);
        // Later intermediate rows read `x` from this row on.
        end >= mid_shape[1] || oy < g1.first_row_of(end)
    })
}

/// Where an operand of a residual block is.
#[derive(Debug, Clone, Copy)]
pub enum Operand<'a> {
    /// A separate tensor.
    Separate(&'a [i8]),
    /// The output buffer (the op computes in place).
    InOutput,
}

/// The parts of a residual block's arguments that describe its two convolutions.
#[derive(Debug, Clone, Copy)]
pub struct BlockShapes {
    /// Output rows computed per step (≥ 1).
    pub band_rows: usize,
    /// The input `x`, NHWC.
    pub input: [usize; 4],
    /// The first filter, OHWI.
    pub filter1: [usize; 4],
    /// The intermediate, NHWC.
    pub mid: [usize; 4],
    /// The second filter, OHWI.
    pub filter2: [usize; 4],
    /// The output, NHWC.
    pub output: [usize; 4],
}

/// A residual block over int8 tensors: `output = ADD(conv2(conv1(x)), residual)`, where
/// `conv1` / `conv2` are band kernels (e.g. `conv2d_int8` with the filter, bias and per-channel
/// arrays bound) run on one intermediate row and one output row at a time, `scratch` holds the
/// row window and one output row ([`scratch_bytes`]). `x` and the residual may be the output's
/// own bytes ([`Operand::InOutput`]; `x` only if [`in_place_ok`]). Errors (never panics) on
/// inconsistent arguments.
#[allow(clippy::too_many_arguments)]
pub fn residual_block_int8(
    p1: &ConvParams,
    p2: &ConvParams,
    shapes: &BlockShapes,
    add: &ArithParams,
    residual_first: bool,
    x: Operand,
    residual: Operand,
    output: &mut [i8],
    scratch: &mut [i8],
    mut conv1: impl BandKernel<ConvParams>,
    mut conv2: impl BandKernel<ConvParams>,
) -> Result<(), Error> {
    let BlockShapes {
        input: xs,
        filter1: f1,
        mid: ms,
        filter2: f2,
        output: os,
        ..
    } = *shapes;
    let n = |s: [usize; 4]| s.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let out_len = n(os).ok_or(kernel_error("output shape"))?;
    if out_len != output.len() || xs[0] != ms[0] || ms[0] != os[0] || os[1] > MAX_ROWS {
        return Err(kernel_error("residual block shapes"));
    }
    if p1.stride_h == 0 || p2.stride_h == 0 || p1.dilation_h == 0 || p2.dilation_h == 0 {
        return Err(kernel_error("residual block strides"));
    }
    let x_rb = xs[2]
        .checked_mul(xs[3])
        .ok_or(kernel_error("input shape"))?;
    let mid_rb = ms[2].checked_mul(ms[3]).ok_or(kernel_error("mid shape"))?;
    let out_rb = os[2] * os[3]; // ≤ out_len
    let x_len = n(xs).ok_or(kernel_error("input shape"))?;
    match x {
        Operand::Separate(v) if v.len() != x_len => return Err(kernel_error("input length")),
        Operand::InOutput if !in_place_ok(p1, f1[1], xs, ms, p2, f2[1], os) => {
            return Err(kernel_error("residual block over its own input"))
        }
        _ => {}
    }
    if let Operand::Separate(r) = residual {
        if r.len() != out_len {
            return Err(kernel_error("residual length"));
        }
    }
    let band = shapes.band_rows.clamp(1, os[1].max(1));
    let window = window_rows(p2, f2[1], ms[1], band);
    let need = scratch_bytes(p2, f2[1], ms, os, band).ok_or(kernel_error("scratch size"))?;
    if scratch.len() < need {
        return Err(kernel_error("scratch size"));
    }
    let (ring, rest) = scratch
        .split_at_mut_checked(window * mid_rb)
        .ok_or(kernel_error("scratch size"))?;
    let temp = rest
        .get_mut(..band * out_rb)
        .ok_or(kernel_error("scratch size"))?;
    let g1 = rows(p1, xs, f1[1], ms);
    let g2 = rows(p2, ms, f2[1], os);
    for b in 0..os[0] {
        // The ring holds intermediate rows [lo, hi) in order.
        let (mut lo, mut hi) = (0usize, 0usize);
        for oy0 in (0..os[1]).step_by(band) {
            let oy1 = (oy0 + band).min(os[1]);
            let first = g2.first_row_of(oy0);
            let end = g2.end_row_of(oy1 - 1).max(first);
            if end - first > window {
                return Err(kernel_error("residual block window"));
            }
            // Drop rows above the window, keep the rest at the ring's start.
            if first > lo {
                if hi > first {
                    // Rows [first, hi) move to the ring's start (inside: hi - lo <= window).
                    // A forward copy rather than `copy_within`, whose outlined range checks
                    // would keep a panic path.
                    let from = (first - lo) * mid_rb;
                    for k in 0..(hi - first) * mid_rb {
                        if let Some(v) = ring.get(from + k).copied() {
                            if let Some(d) = ring.get_mut(k) {
                                *d = v;
                            }
                        }
                    }
                }
                lo = first;
                hi = hi.max(first);
            }
            // Compute the intermediate rows the window still lacks, in one call.
            if hi < end {
                let r0 = g1.first_row_of(hi);
                let r1 = g1.end_row_of(end - 1).max(r0);
                let x_batch = b * xs[1] * x_rb;
                let xin: &[i8] = match x {
                    Operand::Separate(v) => v,
                    Operand::InOutput => output,
                };
                let rows_in = xin
                    .get(x_batch + r0 * x_rb..x_batch + r1 * x_rb)
                    .ok_or(kernel_error("input rows"))?;
                let slots = ring
                    .get_mut((hi - lo) * mid_rb..(end - lo) * mid_rb)
                    .ok_or(kernel_error("ring"))?;
                let bp = ConvParams {
                    pad_h: band_pad(p1, hi),
                    ..*p1
                };
                conv1.run(
                    &bp,
                    [1, r1 - r0, xs[2], xs[3]],
                    rows_in,
                    [1, end - hi, ms[2], ms[3]],
                    slots,
                )?;
                hi = end;
            }
            // The output rows, from the window.
            let bp = ConvParams {
                pad_h: band_pad(p2, oy0),
                ..*p2
            };
            let n_out = (oy1 - oy0) * out_rb;
            let window_rows = ring
                .get(..(end - first) * mid_rb)
                .ok_or(kernel_error("ring"))?;
            let temp_rows = temp.get_mut(..n_out).ok_or(kernel_error("scratch size"))?;
            conv2.run(
                &bp,
                [1, end - first, ms[2], ms[3]],
                window_rows,
                [1, oy1 - oy0, os[2], os[3]],
                temp_rows,
            )?;
            // ADD with the residual rows, into the output rows.
            let at = (b * os[1] + oy0) * out_rb;
            let out = output
                .get_mut(at..at + n_out)
                .ok_or(kernel_error("output row"))?;
            let r = match residual {
                Operand::Separate(r) => {
                    Some(r.get(at..at + n_out).ok_or(kernel_error("residual row"))?)
                }
                Operand::InOutput => None,
            };
            add_residual(add, residual_first, &temp[..n_out], r, out)?;
        }
    }
    Ok(())
}

fn params_at<T: Pod>(ctx: &OpCtx, at: usize) -> Result<T, Error> {
    ctx.params
        .get(at..at + size_of::<T>())
        .map(bytemuck::pod_read_unaligned)
        .ok_or(ctx.param_error("params_len"))
}

/// Parameters and shapes of a residual block, read from its op context.
struct Block {
    p1: ConvParams,
    p2: ConvParams,
    add: ArithParams,
    shapes: BlockShapes,
}

fn read_block(ctx: &OpCtx) -> Result<Block, Error> {
    if ctx.params.len() != PARAMS_LEN {
        return Err(ctx.param_error("params_len"));
    }
    let mid: MidShape = params_at(ctx, 2 * CONV)?;
    let xs = dims4(ctx, ctx.required_input(0)?, "a 4-D NHWC input")?;
    let f1 = dims4(ctx, ctx.required_input(1)?, "a 4-D OHWI filter")?;
    let f2 = dims4(ctx, ctx.required_input(3)?, "a 4-D OHWI filter")?;
    let os = dims4(ctx, ctx.output(0)?, "a 4-D NHWC output")?;
    if mid.band_rows == 0 {
        return Err(ctx.param_error("band_rows"));
    }
    Ok(Block {
        p1: params_at(ctx, 0)?,
        p2: params_at(ctx, CONV)?,
        add: params_at(ctx, 2 * CONV + MID)?,
        shapes: BlockShapes {
            band_rows: mid.band_rows as usize,
            input: xs,
            filter1: f1,
            mid: [
                xs[0],
                mid.height as usize,
                mid.width as usize,
                mid.channels as usize,
            ],
            filter2: f2,
            output: os,
        },
    })
}

/// Checks a residual block (called by `inplace::validate`): each convolution and the ADD as
/// their own ops would be checked, the residual's shape, the in-place layout and the scratch.
pub(crate) fn validate(ctx: &OpCtx, f: &OpFlags) -> Result<(), Error> {
    if ctx.kind != OpKind::Conv2d || !f.epilogue_add {
        return Err(ctx.param_error("flags (a chained CONV_2D needs the ADD epilogue)"));
    }
    if ctx.input_count() != 6 || ctx.desc.output_count != 1 {
        return Err(ctx.param_error("input_count (a residual block takes 6 inputs)"));
    }
    if !matches!(f.in_place, InPlace::Separate | InPlace::Alias(5)) {
        return Err(ctx.param_error("flags (in-place mode of a residual block)"));
    }
    let blk = read_block(ctx)?;
    let [n, mh, mw, mc] = blk.shapes.mid;
    let mid_bytes = [n, mh, mw, mc]
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
        .filter(|&b| b > 0 && b <= u32::MAX as u64)
        .ok_or(ctx.param_error("intermediate shape"))?;
    // The two convolutions as ops of their own, over a table with the intermediate in it.
    let io = ctx.io;
    let (Some(&x), Some(&w1), Some(&b1), Some(&w2), Some(&b2), Some(&out)) = (
        io.first(),
        io.get(1),
        io.get(2),
        io.get(3),
        io.get(4),
        io.get(6),
    ) else {
        return Err(ctx.param_error("io"));
    };
    let desc = |t: u32| -> Result<TensorDesc, Error> {
        ctx.tensors
            .get(t as usize)
            .copied()
            .ok_or(ctx.param_error("tensor index"))
    };
    let mut mid_desc = desc(x)?;
    mid_desc.shape = [n as u32, mh as u32, mw as u32, mc as u32, 0, 0];
    mid_desc.rank = 4;
    mid_desc.dtype = DType::Int8 as u8;
    mid_desc.storage = Storage::Arena as u8;
    mid_desc.bytes = mid_bytes as u32;
    let bias = |t: u32| -> Result<Option<TensorDesc>, Error> {
        if t == NONE {
            Ok(None)
        } else {
            desc(t).map(Some)
        }
    };
    let table = [
        desc(x)?,
        desc(w1)?,
        bias(b1)?.unwrap_or(mid_desc),
        mid_desc,
        desc(w2)?,
        bias(b2)?.unwrap_or(mid_desc),
        desc(out)?,
    ];
    let conv_desc = OpDesc {
        input_count: 3,
        params_len: CONV as u32,
        flags: 0,
        ..*ctx.desc
    };
    let views = [
        ([0, 1, if b1 == NONE { NONE } else { 2 }, 3], 0..CONV),
        ([3, 4, if b2 == NONE { NONE } else { 5 }, 6], CONV..2 * CONV),
    ];
    for (io, range) in views {
        let params = ctx.params.get(range).ok_or(ctx.param_error("params_len"))?;
        super::validate_kind(&OpCtx {
            desc: &conv_desc,
            io: &io,
            params,
            tensors: &table,
            ..*ctx
        })?;
    }
    // The ADD as its own op, and the residual.
    let residual = ctx.required_input(5)?;
    let (ot, o) = ctx.output(0)?;
    ctx.expect_dtype(residual, DType::Int8)?;
    if residual.1.dims() != o.dims() {
        return Err(ctx.shape_error(residual.0, "a residual with the output's shape"));
    }
    let io = if f.residual_first {
        [residual.0, ot, ot]
    } else {
        [ot, residual.0, ot]
    };
    let add_desc = OpDesc {
        kind: OpKind::Add as u16,
        input_count: 2,
        params_len: ADD as u32,
        flags: 0,
        ..*ctx.desc
    };
    let params = ctx
        .params
        .get(2 * CONV + MID..)
        .ok_or(ctx.param_error("params_len"))?;
    super::validate_kind(&OpCtx {
        kind: OpKind::Add,
        desc: &add_desc,
        io: &io,
        params,
        ..*ctx
    })?;
    // Scratch and the in-place layout.
    let BlockShapes {
        input: xs,
        filter1: f1,
        mid: ms,
        filter2: f2,
        output: os,
        ..
    } = blk.shapes;
    if os[1] > MAX_ROWS {
        return Err(ctx.param_error("output rows (a residual block has at most 65536)"));
    }
    let need = scratch_bytes(&blk.p2, f2[1], ms, os, blk.shapes.band_rows)
        .ok_or(ctx.param_error("scratch"))?;
    if (ctx.desc.scratch_bytes as usize) < need {
        return Err(ctx.param_error("scratch_bytes (smaller than the row window)"));
    }
    if x_in_output(ctx, f)? && !in_place_ok(&blk.p1, f1[1], xs, ms, &blk.p2, f2[1], os) {
        return Err(ctx.param_error("flags (the block cannot overwrite its input)"));
    }
    Ok(())
}

/// Whether input 0 is the output's bytes (the residual is the input and the output overwrites it).
fn x_in_output(ctx: &OpCtx, f: &OpFlags) -> Result<bool, Error> {
    let (_, x) = ctx.required_input(0)?;
    let (_, o) = ctx.output(0)?;
    Ok(f.in_place == InPlace::Alias(5)
        && x.storage() == Some(Storage::Arena)
        && x.offset == o.offset
        && x.bytes == o.bytes)
}

/// Whether input `j` of a residual block may overlap its output: the residual when aliased, and
/// the input when it is the residual too.
pub(crate) fn overlap_allowed(
    ctx: &OpCtx,
    f: &OpFlags,
    j: usize,
    inp: &core::ops::Range<usize>,
    out: &core::ops::Range<usize>,
) -> bool {
    f.in_place == InPlace::Alias(5)
        && inp == out
        && (j == 5 || (j == 0 && ctx.io.first() == ctx.io.get(5)))
}

/// Runs a residual block (called by `inplace::eval`).
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem, f: &OpFlags) -> Result<(), Error> {
    let blk = read_block(ctx)?;
    let BlockShapes {
        filter1: f1,
        filter2: f2,
        ..
    } = blk.shapes;
    // `validate` checked both (each convolution through CONV_2D's own `validate`).
    let (m1, s1) =
        channel_quant_validated(ctx, blk.p1.multipliers_offset, blk.p1.shifts_offset, f1[0])?;
    let (m2, s2) =
        channel_quant_validated(ctx, blk.p2.multipliers_offset, blk.p2.shifts_offset, f2[0])?;
    let packed1 = packed_filter(ctx, &blk.p1, f1)?;
    let packed2 = packed_filter(ctx, &blk.p2, f2)?;
    let w1 = as_i8(mem.required_input(1)?);
    let w2 = as_i8(mem.required_input(3)?);
    let bias = |k: usize| -> Result<Option<&[i32]>, Error> {
        match mem.input(k)? {
            None => Ok(None),
            Some(b) => as_typed::<i32>(b).map(Some),
        }
    };
    let (b1, b2) = (bias(2)?, bias(4)?);
    let x = if x_in_output(ctx, f)? {
        Operand::InOutput
    } else {
        Operand::Separate(as_i8(mem.required_input(0)?))
    };
    let residual = match f.in_place {
        InPlace::Alias(_) => Operand::InOutput,
        _ => Operand::Separate(as_i8(mem.required_input(5)?)),
    };
    let isa = Isa::best();
    let conv1 = |bp: &ConvParams, bis, inp: &[i8], bos, out: &mut [i8]| {
        #[cfg(all(target_arch = "arm", feature = "arm-mve"))]
        if crate::simd::mve::conv2d_int8(bp, bis, inp, f1, w1, b1, m1, s1, bos, out).is_some() {
            return Ok(());
        }
        #[cfg(feature = "arm-dsp")]
        if crate::simd::arm_dsp::conv2d_int8(bp, bis, inp, f1, w1, b1, m1, s1, bos, out).is_some() {
            return Ok(());
        }
        conv2d_int8_fast(
            isa,
            packed1.as_ref(),
            bp,
            bis,
            inp,
            f1,
            w1,
            b1,
            m1,
            s1,
            bos,
            out,
        )
    };
    let conv2 = |bp: &ConvParams, bis, inp: &[i8], bos, out: &mut [i8]| {
        #[cfg(all(target_arch = "arm", feature = "arm-mve"))]
        if crate::simd::mve::conv2d_int8(bp, bis, inp, f2, w2, b2, m2, s2, bos, out).is_some() {
            return Ok(());
        }
        #[cfg(feature = "arm-dsp")]
        if crate::simd::arm_dsp::conv2d_int8(bp, bis, inp, f2, w2, b2, m2, s2, bos, out).is_some() {
            return Ok(());
        }
        conv2d_int8_fast(
            isa,
            packed2.as_ref(),
            bp,
            bis,
            inp,
            f2,
            w2,
            b2,
            m2,
            s2,
            bos,
            out,
        )
    };
    residual_block_int8(
        &blk.p1,
        &blk.p2,
        &blk.shapes,
        &blk.add,
        f.residual_first,
        x,
        residual,
        as_i8_mut(mem.output),
        as_i8_mut(mem.scratch),
        conv1,
        conv2,
    )
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::super::arith::add_int8;
    use super::super::conv::conv2d_int8;
    use super::super::conv::tests::{cases, Rng};
    use super::*;

    struct Conv {
        p: ConvParams,
        fs: [usize; 4],
        w: Vec<i8>,
        bias: Option<Vec<i32>>,
        mult: Vec<i32>,
        shift: Vec<i32>,
    }

    fn conv(r: &mut Rng, in_c: usize, out_c: usize, same: bool) -> Conv {
        let (f_h, f_w) = (r.range(1, 3) as usize, r.range(1, 3) as usize);
        let stride = r.range(1, 2) as u32;
        let mut mult = Vec::new();
        let mut shift = Vec::new();
        for _ in 0..out_c {
            let (m, s) = r.quant();
            mult.push(m);
            shift.push(s);
        }
        Conv {
            p: ConvParams {
                stride_h: stride,
                stride_w: stride,
                dilation_h: r.range(1, 2) as u32,
                dilation_w: 1,
                pad_h: if same { r.range(0, 2) as u32 } else { 0 },
                pad_w: if same { r.range(0, 2) as u32 } else { 0 },
                input_offset: r.range(-127, 128) as i32,
                output_offset: r.range(-128, 127) as i32,
                act_min: r.range(-128, 0) as i32,
                act_max: r.range(0, 127) as i32,
                channel_count: out_c as u32,
                ..Zeroable::zeroed()
            },
            fs: [out_c, f_h, f_w, in_c],
            w: (0..out_c * f_h * f_w * in_c)
                .map(|_| r.range(-127, 127) as i8)
                .collect(),
            bias: (r.range(0, 1) == 1)
                .then(|| (0..out_c).map(|_| r.range(-3000, 3000) as i32).collect()),
            mult,
            shift,
        }
    }

    /// Output size of a window op along one axis (TFLM's formula with explicit padding).
    fn out_len(i: usize, f: usize, s: u32, d: u32, pad: u32) -> usize {
        let eff = (f - 1) * d as usize + 1;
        (i + 2 * pad as usize).saturating_sub(eff) / s as usize + 1
    }

    fn run_ref(c: &Conv, is: [usize; 4], x: &[i8]) -> Option<([usize; 4], Vec<i8>)> {
        let oh = out_len(is[1], c.fs[1], c.p.stride_h, c.p.dilation_h, c.p.pad_h);
        let ow = out_len(is[2], c.fs[2], c.p.stride_w, c.p.dilation_w, c.p.pad_w);
        let (pad_h, pad_w) = (c.p.pad_h as usize, c.p.pad_w as usize);
        if is[1] + 2 * pad_h < (c.fs[1] - 1) * (c.p.dilation_h as usize) + 1
            || is[2] + 2 * pad_w < c.fs[2]
        {
            return None;
        }
        let os = [is[0], oh, ow, c.fs[0]];
        let mut out = vec![0i8; os.iter().product()];
        conv2d_int8(
            &c.p,
            is,
            x,
            c.fs,
            &c.w,
            c.bias.as_deref(),
            &c.mult,
            &c.shift,
            os,
            &mut out,
        )
        .ok()?;
        Some((os, out))
    }

    fn band(c: &Conv) -> impl BandKernel<ConvParams> + '_ {
        move |bp: &ConvParams, bis, inp: &[i8], bos, out: &mut [i8]| {
            conv2d_int8(
                bp,
                bis,
                inp,
                c.fs,
                &c.w,
                c.bias.as_deref(),
                &c.mult,
                &c.shift,
                bos,
                out,
            )
        }
    }

    /// Makes `c` a stride-1, undilated convolution with odd filters and SAME padding.
    fn same_shape(c: &mut Conv) {
        c.p.stride_h = 1;
        c.p.stride_w = 1;
        c.p.dilation_h = 1;
        c.p.dilation_w = 1;
        c.p.pad_h = (c.fs[1] as u32 - 1) / 2;
        c.p.pad_w = (c.fs[2] as u32 - 1) / 2;
        if c.fs[1] % 2 == 0 || c.fs[2] % 2 == 0 {
            // Even filters: one column / row of padding fewer at the end; shrink to 1×1.
            let (o, i) = (c.fs[0], c.fs[3]);
            c.fs = [o, 1, 1, i];
            c.w.truncate(o * i);
            c.p.pad_h = 0;
            c.p.pad_w = 0;
        }
    }

    #[test]
    fn block_equals_conv_conv_add() {
        let mut r = Rng(0xb10c);
        let (mut ran, mut in_place) = (0, 0);
        for _ in 0..cases(1500, 2) {
            let xs = [
                r.range(1, 2) as usize,
                r.range(1, 9) as usize,
                r.range(1, 7) as usize,
                r.range(1, 5) as usize,
            ];
            let mid_c = r.range(1, 6) as usize;
            // Half of the blocks keep the input's shape (their residual can be the input).
            let keep = r.range(0, 1) == 1;
            let mut c1 = conv(&mut r, xs[3], mid_c, true);
            if keep {
                same_shape(&mut c1);
            }
            let x: Vec<i8> = (0..xs.iter().product())
                .map(|_| r.range(-128, 127) as i8)
                .collect();
            let Some((ms, mid)) = run_ref(&c1, xs, &x) else {
                continue;
            };
            let out_c = if keep { xs[3] } else { r.range(1, 6) as usize };
            let mut c2 = conv(&mut r, mid_c, out_c, true);
            if keep {
                same_shape(&mut c2);
            }
            let Some((os, y)) = run_ref(&c2, ms, &mid) else {
                continue;
            };
            let add = ArithParams {
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
            let residual: Vec<i8> = if os == xs && r.range(0, 1) == 1 {
                x.clone()
            } else {
                (0..y.len()).map(|_| r.range(-128, 127) as i8).collect()
            };
            let residual_first = r.range(0, 1) == 1;
            let mut want = vec![0i8; y.len()];
            let m = [y.len()];
            if residual_first {
                add_int8(&add, &m, &residual, &m, &y, &m, &mut want).unwrap();
            } else {
                add_int8(&add, &m, &y, &m, &residual, &m, &mut want).unwrap();
            }
            let shapes = BlockShapes {
                band_rows: r.range(1, 4) as usize,
                input: xs,
                filter1: c1.fs,
                mid: ms,
                filter2: c2.fs,
                output: os,
            };
            let need = scratch_bytes(&c2.p, c2.fs[1], ms, os, shapes.band_rows).unwrap();
            let mut scratch = vec![0x55i8; need];
            // Separate operands.
            let mut got = vec![0i8; y.len()];
            residual_block_int8(
                &c1.p,
                &c2.p,
                &shapes,
                &add,
                residual_first,
                Operand::Separate(&x),
                Operand::Separate(&residual),
                &mut got,
                &mut scratch,
                band(&c1),
                band(&c2),
            )
            .unwrap();
            assert_eq!(got, want, "{xs:?} {ms:?} {os:?}");
            // Over the residual.
            let mut got = residual.clone();
            residual_block_int8(
                &c1.p,
                &c2.p,
                &shapes,
                &add,
                residual_first,
                Operand::Separate(&x),
                Operand::InOutput,
                &mut got,
                &mut scratch,
                band(&c1),
                band(&c2),
            )
            .unwrap();
            assert_eq!(got, want);
            // Over the input, when the residual is the input and the layout allows it.
            if residual == x && in_place_ok(&c1.p, c1.fs[1], xs, ms, &c2.p, c2.fs[1], os) {
                let mut got = x.clone();
                residual_block_int8(
                    &c1.p,
                    &c2.p,
                    &shapes,
                    &add,
                    residual_first,
                    Operand::InOutput,
                    Operand::InOutput,
                    &mut got,
                    &mut scratch,
                    band(&c1),
                    band(&c2),
                )
                .unwrap();
                assert_eq!(got, want, "in place {xs:?} {ms:?} {os:?}");
                in_place += 1;
            }
            // Too little scratch is refused.
            if need > 0 {
                let mut small = vec![0i8; need - 1];
                let mut got = vec![0i8; y.len()];
                assert!(residual_block_int8(
                    &c1.p,
                    &c2.p,
                    &shapes,
                    &add,
                    residual_first,
                    Operand::Separate(&x),
                    Operand::Separate(&residual),
                    &mut got,
                    &mut small,
                    band(&c1),
                    band(&c2),
                )
                .is_err());
            }
            ran += 1;
        }
        // Coverage of the native run (Miri runs a handful of cases, for undefined behaviour).
        assert!(
            cfg!(miri) || (ran > 300 && in_place > 30),
            "{ran} blocks, {in_place} in place"
        );
    }

    #[test]
    fn resnet_block_runs_over_its_input() {
        // 32×32×16, two 3×3 stride-1 SAME convolutions: the output can overwrite the input.
        let p = ConvParams {
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            pad_h: 1,
            pad_w: 1,
            channel_count: 16,
            act_max: 127,
            act_min: -128,
            ..Zeroable::zeroed()
        };
        let s = [1, 32, 32, 16];
        assert!(in_place_ok(&p, 3, s, s, &p, 3, s));
        assert_eq!(scratch_bytes(&p, 3, s, s, 1), Some(3 * 512 + 512));
        assert_eq!(scratch_bytes(&p, 3, s, s, 4), Some(6 * 512 + 4 * 512));
        // A 1×1 second convolution would write row r before the first one reads x's row r for
        // intermediate row r + 1: not over the input.
        let pw = ConvParams {
            pad_h: 0,
            pad_w: 0,
            ..p
        };
        assert!(!in_place_ok(&p, 3, s, s, &pw, 1, s));
        // A stride-2 first convolution changes the shape: not over the input.
        let p2 = ConvParams { stride_h: 2, ..p };
        assert!(!in_place_ok(
            &p2,
            3,
            s,
            [1, 16, 32, 16],
            &p,
            3,
            [1, 16, 32, 16]
        ));
    }
}
