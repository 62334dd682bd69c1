//! CONV_2D with a fused ADD epilogue: `out = ADD(conv(x), residual)` without storing `conv(x)`.
//!
//! Flagged by [`OpFlags::epilogue_add`](crate::format::OpFlags) on a CONV_2D op. Inputs: 0 =
//! input, 1 = filter, 2 = optional bias (as CONV_2D), 3 = the residual (int8, the output's
//! shape). Parameters: a [`ConvParams`] followed by the ADD's [`ArithParams`]. Each output
//! element is the CONV_2D result requantized to int8 exactly as the separate op would store it,
//! then added to the residual element with TFLM's ADD recipe (the ADD kernel, run over chunks of
//! 128 results kept on the stack) — so the bytes equal those of the two separate ops. The residual may be the output's own bytes (`InPlace::Alias(3)`): each
//! residual element is read just before the output element that replaces it.
//!
//! This is what lets a residual block keep only its input and one intermediate alive: with the
//! output written over the residual, the block's second convolution needs no buffer of its own.

use core::mem::size_of;

use super::arith::ArithParams;
use super::conv::{
    bias_input, channel_quant_validated, check_axis, check_channel_quant, check_quant,
    conv_fast_isa, conv_packed, dims4, dot_offset, elements4, kernel_error, packed_filter,
    requantize, segment, valid_taps, AddEpilogue, ConvIo, ConvParams,
};
use super::inplace::add_residual;
use super::{as_i8, as_i8_mut, OpCtx, OpKind, OpMem};
use crate::error::Error;
use crate::format::{DType, InPlace, OpDesc, OpFlags};
use crate::simd::Isa;

/// Where the residual of a fused ADD comes from.
#[derive(Debug, Clone, Copy)]
pub enum Residual<'a> {
    /// A separate tensor with the output's shape.
    Separate(&'a [i8]),
    /// The output buffer itself holds the residual on entry.
    InOutput,
}

/// Four dot products of one input segment with four equally long weight segments, with TFLM's
/// wrapping 32-bit accumulation of `w·(x + x_offset)`.
#[inline(always)]
fn dot4(x: &[i8], w: [&[i8]; 4], x_offset: i32) -> [i32; 4] {
    let off = x_offset as i16;
    let n = x.len();
    let [w0, w1, w2, w3] = w;
    // Callers pass weight segments of `x`'s length; `get` states it without a panic path.
    let (Some(w0), Some(w1), Some(w2), Some(w3)) =
        (w0.get(..n), w1.get(..n), w2.get(..n), w3.get(..n))
    else {
        return [0; 4];
    };
    let mut a = [0i32; 4];
    for i in 0..n {
        let xv = i32::from(i16::from(x[i]).wrapping_add(off));
        a[0] = a[0].wrapping_add(i32::from(w0[i]) * xv);
        a[1] = a[1].wrapping_add(i32::from(w1[i]) * xv);
        a[2] = a[2].wrapping_add(i32::from(w2[i]) * xv);
        a[3] = a[3].wrapping_add(i32::from(w3[i]) * xv);
    }
    a
}

/// Checks a convolution's shapes and parameters; returns the number of groups.
fn check_shapes(
    p: &ConvParams,
    is: [usize; 4],
    fs: [usize; 4],
    os: [usize; 4],
) -> Result<usize, &'static str> {
    let [batches, _, _, in_c] = is;
    let [out_c, f_h, f_w, f_ic] = fs;
    let [o_batches, out_h, out_w, o_c] = os;
    if batches != o_batches {
        return Err("batch size (input vs output)");
    }
    if out_c != o_c || out_c != p.channel_count as usize {
        return Err("output channels (filter dim 0, output dim 3, channel_count)");
    }
    if f_ic == 0 || in_c == 0 || in_c % f_ic != 0 {
        return Err("input channels (must be a multiple of the filter's input channels)");
    }
    let groups = in_c / f_ic;
    if groups == 0 || out_c % groups != 0 || p.layout > super::conv::LAYOUT_PACKED {
        return Err("output channels (must be a multiple of the number of groups)");
    }
    check_axis(out_h, p.stride_h, f_h, p.dilation_h, p.pad_h)?;
    check_axis(out_w, p.stride_w, f_w, p.dilation_w, p.pad_w)?;
    check_quant(p.input_offset, p.output_offset, p.act_min, p.act_max)?;
    Ok(groups)
}

/// Portable int8 CONV_2D followed by ADD with `residual` (see the module documentation).
/// `residual_first`: the residual is the ADD's first operand. Errors (never panics) on
/// inconsistent shapes, lengths or parameters.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_add_int8(
    p: &ConvParams,
    input_shape: [usize; 4],
    input: &[i8],
    filter_shape: [usize; 4],
    filter: &[i8],
    bias: Option<&[i32]>,
    multipliers: &[i32],
    shifts: &[i32],
    output_shape: [usize; 4],
    add: &ArithParams,
    residual_first: bool,
    residual: Residual,
    output: &mut [i8],
) -> Result<(), Error> {
    let groups = check_shapes(p, input_shape, filter_shape, output_shape).map_err(kernel_error)?;
    let lens_ok = elements4(input_shape) == Some(input.len())
        && elements4(filter_shape) == Some(filter.len())
        && elements4(output_shape) == Some(output.len());
    if !lens_ok {
        return Err(kernel_error("tensor length"));
    }
    if let Residual::Separate(r) = residual {
        if r.len() != output.len() {
            return Err(kernel_error("residual length"));
        }
    }
    let [batches, in_h, in_w, in_c] = input_shape;
    let [out_c, f_h, f_w, f_ic] = filter_shape;
    let [_, out_h, out_w, _] = output_shape;
    if multipliers.len() != out_c || bias.is_some_and(|b| b.len() != out_c) {
        return Err(kernel_error("per-channel array length"));
    }
    check_channel_quant(multipliers, shifts).map_err(kernel_error)?;
    if output.is_empty() {
        return Ok(());
    }
    // check_shapes: groups >= 1 (`max(1)` drops the division-by-zero panic path).
    let per_group = (out_c / groups.max(1)).max(1);
    let (stride_h, stride_w) = (p.stride_h as usize, p.stride_w as usize);
    let (dil_h, dil_w) = (p.dilation_h as usize, p.dilation_w as usize);
    let contiguous_rows = groups == 1 && dil_w == 1;
    // Convolution results waiting for their ADD: `n` of them, for output elements `at..at + n`.
    let mut sums = [0i8; ADD_CHUNK];
    let (mut at, mut n) = (0usize, 0usize);
    for b in 0..batches {
        let in_batch = b * in_h * in_w * in_c;
        for oy in 0..out_h {
            // check_axis: oy·stride ≤ i32::MAX and pad ≤ i32::MAX.
            let y0 = (oy * stride_h) as isize - p.pad_h as isize;
            let rows = valid_taps(y0, dil_h, in_h, f_h);
            for ox in 0..out_w {
                let x0 = (ox * stride_w) as isize - p.pad_w as isize;
                let cols = valid_taps(x0, dil_w, in_w, f_w);
                let mut oc0 = 0;
                while oc0 < out_c {
                    let n_oc = (out_c - oc0).min(4);
                    let mut acc = [0i32; 4];
                    if contiguous_rows && n_oc == 4 && !cols.is_empty() {
                        let n = cols.len() * in_c;
                        for fy in rows.clone() {
                            // valid_taps: 0 ≤ iy < in_h and cols within the row; in_c == f_ic.
                            let iy = (y0 + (fy * dil_h) as isize) as usize;
                            let ix0 = (x0 + cols.start as isize) as usize;
                            let x = segment(input, in_batch + (iy * in_w + ix0) * in_c, n);
                            let w = |k: usize| {
                                let at = ((oc0 + k) * f_h + fy) * f_w * f_ic + cols.start * f_ic;
                                segment(filter, at, n)
                            };
                            let d = dot4(x, [w(0), w(1), w(2), w(3)], p.input_offset);
                            for (a, d) in acc.iter_mut().zip(d) {
                                *a = a.wrapping_add(d);
                            }
                        }
                    } else {
                        for (k, a) in acc.iter_mut().enumerate().take(n_oc) {
                            let oc = oc0 + k;
                            let group = oc / per_group;
                            for fy in rows.clone() {
                                let iy = (y0 + (fy * dil_h) as isize) as usize;
                                let row = in_batch + iy * in_w * in_c;
                                let w_row = (oc * f_h + fy) * f_w * f_ic;
                                for fx in cols.clone() {
                                    let ix = (x0 + (fx * dil_w) as isize) as usize;
                                    // As in conv2d_int8_fast: validated to lie inside.
                                    let x = segment(input, row + ix * in_c + group * f_ic, f_ic);
                                    let w = segment(filter, w_row + fx * f_ic, f_ic);
                                    *a = a.wrapping_add(dot_offset(x, w, p.input_offset));
                                }
                            }
                        }
                    }
                    for (k, &a) in acc.iter().enumerate().take(n_oc) {
                        let oc = oc0 + k;
                        // bias, multipliers and shifts hold out_c entries (checked above).
                        let a = a.wrapping_add(bias.and_then(|b| b.get(oc)).map_or(0, |&b| b));
                        let (Some(&mul), Some(&sh)) = (multipliers.get(oc), shifts.get(oc)) else {
                            continue;
                        };
                        let c = requantize(a, mul, sh, p.output_offset, p.act_min, p.act_max);
                        // One element per (pixel, channel), in output order: flushed through
                        // the ADD kernel a chunk at a time.
                        // n < sums.len(): flushed below when full.
                        if let Some(slot) = sums.get_mut(n) {
                            *slot = c;
                        }
                        n += 1;
                        if n == sums.len() {
                            flush(&mut sums, n, at, output, residual, add, residual_first)?;
                            at += n;
                            n = 0;
                        }
                    }
                    oc0 += n_oc;
                }
            }
        }
    }
    flush(&mut sums, n, at, output, residual, add, residual_first)
}

/// Elements of the stack chunks the fused kernel passes to the ADD kernel.
const ADD_CHUNK: usize = 128;

/// ADDs the `n` convolution results in `conv` to the residual elements `at..at + n` and writes
/// them to `output[at..at + n]`, with the ADD family's kernel.
fn flush(
    conv: &mut [i8; ADD_CHUNK],
    n: usize,
    at: usize,
    output: &mut [i8],
    residual: Residual,
    add: &ArithParams,
    residual_first: bool,
) -> Result<(), Error> {
    let out = output
        .get_mut(at..at + n)
        .ok_or(kernel_error("output length"))?;
    let r = match residual {
        Residual::Separate(r) => Some(r.get(at..at + n).ok_or(kernel_error("residual length"))?),
        Residual::InOutput => None,
    };
    let conv = conv.get(..n).ok_or(kernel_error("output length"))?;
    add_residual(add, residual_first, conv, r, out)
}

const CONV_PARAMS: usize = size_of::<ConvParams>();
const ADD_PARAMS: usize = size_of::<ArithParams>();

/// The CONV_2D part of a fused op, as its own op context, for the CONV_2D validation.
fn with_conv_view<R>(ctx: &OpCtx, f: impl FnOnce(&OpCtx) -> Result<R, Error>) -> Result<R, Error> {
    let io = ctx.io;
    let (Some(&x), Some(&w), Some(&b), Some(&o)) = (io.first(), io.get(1), io.get(2), io.get(4))
    else {
        return Err(ctx.param_error("io"));
    };
    let desc = OpDesc {
        input_count: 3,
        params_len: CONV_PARAMS as u32,
        flags: 0,
        ..*ctx.desc
    };
    let io = [x, w, b, o];
    let params = ctx
        .params
        .get(..CONV_PARAMS)
        .ok_or(ctx.param_error("params_len"))?;
    f(&OpCtx {
        desc: &desc,
        io: &io,
        params,
        ..*ctx
    })
}

/// Checks a CONV_2D with a fused ADD (called by `inplace::validate`).
pub(crate) fn validate(ctx: &OpCtx, f: &OpFlags) -> Result<(), Error> {
    if ctx.kind != OpKind::Conv2d {
        return Err(ctx.param_error("flags (epilogue ADD on a kind other than CONV_2D)"));
    }
    if ctx.input_count() != 4 || ctx.desc.output_count != 1 {
        return Err(ctx.param_error("input_count (CONV_2D + ADD takes 4 inputs)"));
    }
    if ctx.params.len() != CONV_PARAMS + ADD_PARAMS {
        return Err(ctx.param_error("params_len"));
    }
    if !matches!(f.in_place, InPlace::Separate | InPlace::Alias(3)) {
        return Err(ctx.param_error("flags (in-place mode of CONV_2D + ADD)"));
    }
    with_conv_view(ctx, super::validate_kind)?;
    // The ADD as its own op: (conv result, residual) → output, the conv result having the
    // output's shape and type; the residual must have them too (no broadcasting).
    let residual = ctx.required_input(3)?;
    let (ot, out) = ctx.output(0)?;
    ctx.expect_dtype(residual, DType::Int8)?;
    if residual.1.dims() != out.dims() {
        return Err(ctx.shape_error(residual.0, "a residual with the output's shape"));
    }
    let io = if f.residual_first {
        [residual.0, ot, ot]
    } else {
        [ot, residual.0, ot]
    };
    let desc = OpDesc {
        kind: OpKind::Add as u16,
        input_count: 2,
        params_len: ADD_PARAMS as u32,
        flags: 0,
        ..*ctx.desc
    };
    let params = ctx
        .params
        .get(CONV_PARAMS..)
        .ok_or(ctx.param_error("params_len"))?;
    super::validate_kind(&OpCtx {
        kind: OpKind::Add,
        desc: &desc,
        io: &io,
        params,
        ..*ctx
    })
}

/// Runs a CONV_2D with a fused ADD (called by `inplace::eval`).
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem, f: &OpFlags) -> Result<(), Error> {
    let conv: &ConvParams = bytemuck::try_from_bytes(
        ctx.params
            .get(..CONV_PARAMS)
            .ok_or(ctx.param_error("params_len"))?,
    )
    .map_err(|_| ctx.param_error("params"))?;
    let add: &ArithParams = bytemuck::try_from_bytes(
        ctx.params
            .get(CONV_PARAMS..)
            .ok_or(ctx.param_error("params_len"))?,
    )
    .map_err(|_| ctx.param_error("params"))?;
    let is = dims4(ctx, ctx.required_input(0)?, "a 4-D NHWC input")?;
    let fs = dims4(ctx, ctx.required_input(1)?, "a 4-D OHWI filter")?;
    let os = dims4(ctx, ctx.output(0)?, "a 4-D NHWC output")?;
    // `validate` checked them (through CONV_2D's own `validate`).
    let (multipliers, shifts) =
        channel_quant_validated(ctx, conv.multipliers_offset, conv.shifts_offset, fs[0])?;
    let input = as_i8(mem.required_input(0)?);
    let filter = as_i8(mem.required_input(1)?);
    let bias = bias_input(ctx, &mem)?;
    let residual = match f.in_place {
        InPlace::Alias(_) => Residual::InOutput,
        _ => Residual::Separate(as_i8(mem.required_input(3)?)),
    };
    // The SIMD path: the packed convolution with the ADD applied to each staged tile.
    let packed = packed_filter(ctx, conv, fs)?;
    if let (Some(isa), Some(packed)) = (
        conv_fast_isa(Isa::best(), packed.is_some(), conv, [is, fs, os]),
        packed.as_ref(),
    ) {
        let epilogue = AddEpilogue {
            params: add,
            residual_first: f.residual_first,
            residual: match residual {
                Residual::Separate(r) => Some(r),
                Residual::InOutput => None,
            },
        };
        let io = ConvIo::Split {
            input,
            output: as_i8_mut(mem.output),
        };
        let shapes = [is, fs, os];
        return conv_packed(
            isa,
            packed,
            conv,
            shapes,
            multipliers,
            shifts,
            io,
            Some(&epilogue),
        );
    }
    conv2d_add_int8(
        conv,
        is,
        input,
        fs,
        filter,
        bias,
        multipliers,
        shifts,
        os,
        add,
        f.residual_first,
        residual,
        as_i8_mut(mem.output),
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

    #[test]
    fn fused_equals_conv_then_add() {
        let mut r = Rng(0x5eed);
        for case in 0..cases(600, 2) {
            let groups = if r.range(0, 4) == 0 { 2 } else { 1 };
            let f_ic = r.range(1, 6) as usize;
            let in_c = f_ic * groups;
            let out_c = groups * r.range(1, 9) as usize;
            let (f_h, f_w) = (r.range(1, 3) as usize, r.range(1, 3) as usize);
            let (in_h, in_w) = (r.range(1, 7) as usize, r.range(1, 7) as usize);
            let stride = r.range(1, 2) as usize;
            let dil = r.range(1, 2) as usize;
            let (eh, ew) = ((f_h - 1) * dil + 1, (f_w - 1) * dil + 1);
            let (out_h, out_w) = (in_h.div_ceil(stride), in_w.div_ceil(stride));
            let pad = |o: usize, e: usize, i: usize| {
                (((o as i64 - 1) * stride as i64 + e as i64 - i as i64).max(0) / 2) as u32
            };
            let batches = r.range(1, 2) as usize;
            let p = ConvParams {
                stride_h: stride as u32,
                stride_w: stride as u32,
                dilation_h: dil as u32,
                dilation_w: dil as u32,
                pad_h: pad(out_h, eh, in_h),
                pad_w: pad(out_w, ew, in_w),
                input_offset: r.range(-127, 128) as i32,
                output_offset: r.range(-128, 127) as i32,
                act_min: r.range(-128, 0) as i32,
                act_max: r.range(0, 127) as i32,
                multipliers_offset: 0,
                shifts_offset: 0,
                channel_count: out_c as u32,
                layout: 0,
                packed_offset: 0,
                folded_bias_offset: 0,
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
                activation_min: r.range(-128, -100) as i32,
                activation_max: r.range(100, 127) as i32,
            };
            let is = [batches, in_h, in_w, in_c];
            let fs = [out_c, f_h, f_w, f_ic];
            let os = [batches, out_h, out_w, out_c];
            let n = |s: [usize; 4]| s.iter().product::<usize>();
            let input: Vec<i8> = (0..n(is)).map(|_| r.range(-128, 127) as i8).collect();
            let filter: Vec<i8> = (0..n(fs)).map(|_| r.range(-127, 127) as i8).collect();
            let residual: Vec<i8> = (0..n(os)).map(|_| r.range(-128, 127) as i8).collect();
            let bias: Vec<i32> = (0..out_c).map(|_| r.range(-9000, 9000) as i32).collect();
            let (mut mult, mut shift) = (Vec::new(), Vec::new());
            for _ in 0..out_c {
                let (m, s) = r.quant();
                mult.push(m);
                shift.push(s);
            }
            let bias = (r.range(0, 1) == 1).then_some(&bias[..]);
            let mut conv_out = vec![0i8; n(os)];
            conv2d_int8(
                &p,
                is,
                &input,
                fs,
                &filter,
                bias,
                &mult,
                &shift,
                os,
                &mut conv_out,
            )
            .unwrap();
            for residual_first in [false, true] {
                let mut want = vec![0i8; n(os)];
                let sh = [os[0], os[1], os[2], os[3]];
                if residual_first {
                    add_int8(&add, &sh, &residual, &sh, &conv_out, &sh, &mut want).unwrap();
                } else {
                    add_int8(&add, &sh, &conv_out, &sh, &residual, &sh, &mut want).unwrap();
                }
                let mut got = vec![0i8; n(os)];
                conv2d_add_int8(
                    &p,
                    is,
                    &input,
                    fs,
                    &filter,
                    bias,
                    &mult,
                    &shift,
                    os,
                    &add,
                    residual_first,
                    Residual::Separate(&residual),
                    &mut got,
                )
                .unwrap();
                assert_eq!(got, want, "case {case} separate");
                let mut got = residual.clone();
                conv2d_add_int8(
                    &p,
                    is,
                    &input,
                    fs,
                    &filter,
                    bias,
                    &mult,
                    &shift,
                    os,
                    &add,
                    residual_first,
                    Residual::InOutput,
                    &mut got,
                )
                .unwrap();
                assert_eq!(got, want, "case {case} in place");
            }
        }
    }

    #[test]
    fn refuses_inconsistent_arguments() {
        let p = ConvParams {
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            pad_h: 0,
            pad_w: 0,
            input_offset: 0,
            output_offset: 0,
            act_min: -128,
            act_max: 127,
            multipliers_offset: 0,
            shifts_offset: 0,
            channel_count: 1,
            layout: 0,
            packed_offset: 0,
            folded_bias_offset: 0,
        };
        let add = ArithParams {
            input1_offset: 0,
            input2_offset: 0,
            output_offset: 0,
            left_shift: 20,
            input1_multiplier: 1 << 30,
            input1_shift: 0,
            input2_multiplier: 1 << 30,
            input2_shift: 0,
            output_multiplier: 1 << 30,
            output_shift: -19,
            activation_min: -128,
            activation_max: 127,
        };
        let run = |residual: Residual, out: &mut [i8]| {
            conv2d_add_int8(
                &p,
                [1, 1, 2, 1],
                &[1, 2],
                [1, 1, 1, 1],
                &[1],
                None,
                &[1 << 30],
                &[0],
                [1, 1, 2, 1],
                &add,
                false,
                residual,
                out,
            )
        };
        assert!(run(Residual::Separate(&[1, 2]), &mut [0; 2]).is_ok());
        assert!(run(Residual::Separate(&[1]), &mut [0; 2]).is_err());
        assert!(run(Residual::InOutput, &mut [0; 3]).is_err());
    }
}
