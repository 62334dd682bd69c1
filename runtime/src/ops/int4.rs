//! Packed int4 weights with int8 activations (`mote quantize --scheme int4w`): CONV_2D,
//! DEPTHWISE_CONV_2D and FULLY_CONNECTED whose filter is a [`DType::Int4`] constant.
//!
//! Same parameter structs, same TFLM requantization and the same results as the int8 kernels on
//! the sign-extended weights, bit for bit: the op is the int8 op with its weights stored in half
//! the bytes. The weights are read nibble by nibble ([`PackedInt4`]), so no buffer is needed.
//! Only the reference weight layout exists (no packed SIMD copy: that would cost the flash the
//! scheme saves). Per-channel symmetric weights in `[-7, 7]` are what the compiler writes; the
//! kernels accept any nibble.

use super::accumulate::{self, Geometry, PackedInt4};
use super::conv::{
    bias_input, channel_quant, check_axis, check_bias, check_quant, dims4, requantize, ConvParams,
    LAYOUT_REFERENCE,
};
use super::depthwise::DepthwiseParams;
use super::fully_connected::FullyConnectedParams;
use super::inplace::{window_op_in_place, ShiftDirection};
use super::{as_i8, as_i8_mut, OpCtx, OpKind, OpMem};
use crate::error::Error;
use crate::format::DType;

/// Whether op `ctx` is a CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED with int4 weights.
pub(crate) fn applies(ctx: &OpCtx) -> bool {
    matches!(
        ctx.kind,
        OpKind::Conv2d | OpKind::DepthwiseConv2d | OpKind::FullyConnected
    ) && ctx.input_dtype(1) == Some(DType::Int4)
}

/// Input, filter and output dtypes: int8, int4, int8.
fn check_dtypes(ctx: &OpCtx) -> Result<(), Error> {
    ctx.expect_dtype(ctx.required_input(0)?, DType::Int8)?;
    ctx.expect_dtype(ctx.required_input(1)?, DType::Int4)?;
    ctx.expect_dtype(ctx.output(0)?, DType::Int8)?;
    if ctx.desc.output_count != 1 {
        return Err(ctx.param_error("output_count"));
    }
    Ok(())
}

/// The filter as packed nibbles (validated: the tensor's bytes are `ceil(n / 2)`).
fn filter<'a>(ctx: &OpCtx, mem: &OpMem<'a>, n: usize) -> Result<PackedInt4<'a>, Error> {
    PackedInt4::new(mem.required_input(1)?, n).ok_or(ctx.param_error("int4 filter length"))
}

struct ConvOp<'a> {
    p: &'a ConvParams,
    shapes: [[usize; 4]; 3],
}

fn conv_op<'a>(ctx: &OpCtx<'a>) -> Result<ConvOp<'a>, Error> {
    let p: &ConvParams = ctx.params()?;
    check_dtypes(ctx)?;
    let is = dims4(ctx, ctx.required_input(0)?, "a 4-D NHWC input")?;
    let fs = dims4(ctx, ctx.required_input(1)?, "a 4-D OHWI filter")?;
    let os = dims4(ctx, ctx.output(0)?, "a 4-D NHWC output")?;
    let [b, _, _, in_c] = is;
    let [out_c, f_h, f_w, f_ic] = fs;
    if b != os[0] || out_c != os[3] || out_c != p.channel_count as usize {
        return Err(ctx.param_error("output channels or batches"));
    }
    // `checked_rem`: no division by zero when the filter or the input has no channels.
    if in_c.checked_rem(f_ic) != Some(0) || out_c.checked_rem(in_c / f_ic) != Some(0) {
        return Err(ctx.param_error("groups"));
    }
    if p.layout != LAYOUT_REFERENCE || p.packed_offset != 0 || p.folded_bias_offset != 0 {
        return Err(ctx.param_error("layout (int4 weights have the reference layout only)"));
    }
    check_axis(os[1], p.stride_h, f_h, p.dilation_h, p.pad_h).map_err(|f| ctx.param_error(f))?;
    check_axis(os[2], p.stride_w, f_w, p.dilation_w, p.pad_w).map_err(|f| ctx.param_error(f))?;
    check_quant(p.input_offset, p.output_offset, p.act_min, p.act_max)
        .map_err(|f| ctx.param_error(f))?;
    check_bias(ctx, out_c)?;
    channel_quant(ctx, p.multipliers_offset, p.shifts_offset, out_c)?;
    Ok(ConvOp {
        p,
        shapes: [is, fs, os],
    })
}

struct DepthwiseOp<'a> {
    p: &'a DepthwiseParams,
    shapes: [[usize; 4]; 3],
}

fn depthwise_op<'a>(ctx: &OpCtx<'a>) -> Result<DepthwiseOp<'a>, Error> {
    let p: &DepthwiseParams = ctx.params()?;
    check_dtypes(ctx)?;
    let is = dims4(ctx, ctx.required_input(0)?, "a 4-D NHWC input")?;
    let fs = dims4(ctx, ctx.required_input(1)?, "a 4-D 1×H×W×(C·M) filter")?;
    let os = dims4(ctx, ctx.output(0)?, "a 4-D NHWC output")?;
    let m = p.depth_multiplier as usize;
    if is[0] != os[0]
        || fs[0] != 1
        || m == 0
        || is[3].checked_mul(m) != Some(os[3])
        || fs[3] != os[3]
        || os[3] != p.channel_count as usize
    {
        return Err(ctx.param_error("depthwise shapes"));
    }
    check_axis(os[1], p.stride_h, fs[1], p.dilation_h, p.pad_h).map_err(|f| ctx.param_error(f))?;
    check_axis(os[2], p.stride_w, fs[2], p.dilation_w, p.pad_w).map_err(|f| ctx.param_error(f))?;
    check_quant(p.input_offset, p.output_offset, p.act_min, p.act_max)
        .map_err(|f| ctx.param_error(f))?;
    check_bias(ctx, os[3])?;
    channel_quant(ctx, p.multipliers_offset, p.shifts_offset, os[3])?;
    Ok(DepthwiseOp {
        p,
        shapes: [is, fs, os],
    })
}

struct FcOp<'a> {
    p: &'a FullyConnectedParams,
    batches: usize,
    in_f: usize,
    out_f: usize,
}

fn fc_op<'a>(ctx: &OpCtx<'a>) -> Result<FcOp<'a>, Error> {
    let p: &FullyConnectedParams = ctx.params()?;
    check_dtypes(ctx)?;
    let (input, weights, output) = (
        ctx.required_input(0)?,
        ctx.required_input(1)?,
        ctx.output(0)?,
    );
    let (out_f, in_f) = match weights.1.dims() {
        &[o, i] if o > 0 && i > 0 => (o as usize, i as usize),
        _ => return Err(ctx.shape_error(weights.0, "2-D weights [out, in], both non-zero")),
    };
    if output.1.dims().last().copied() != Some(out_f as u32) {
        return Err(ctx.shape_error(output.0, "an output ending with the weights' rows"));
    }
    let batches = output.1.elements() / out_f as u64;
    if input.1.elements() != batches * in_f as u64 {
        return Err(ctx.shape_error(input.0, "batches × the weights' columns elements"));
    }
    check_quant(p.input_offset, p.output_offset, p.act_min, p.act_max)
        .map_err(|f| ctx.param_error(f))?;
    let count = p.channel_count as usize;
    if !(-127..=128).contains(&p.filter_offset)
        || (count != 1 && count != out_f)
        || (count != 1 && p.filter_offset != 0)
    {
        return Err(ctx.param_error("filter_offset / channel_count"));
    }
    if p.layout != LAYOUT_REFERENCE || p.packed_offset != 0 || p.folded_bias_offset != 0 {
        return Err(ctx.param_error("layout (int4 weights have the reference layout only)"));
    }
    check_bias(ctx, out_f)?;
    channel_quant(ctx, p.multipliers_offset, p.shifts_offset, count)?;
    Ok(FcOp {
        p,
        batches: batches as usize,
        in_f,
        out_f,
    })
}

/// Checks an op with int4 weights (see the module documentation).
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    match ctx.kind {
        OpKind::Conv2d => conv_op(ctx).map(|_| ()),
        OpKind::DepthwiseConv2d => depthwise_op(ctx).map(|_| ()),
        OpKind::FullyConnected => fc_op(ctx).map(|_| ()),
        _ => Err(ctx.param_error("kind (int4 weights)")),
    }
}

/// The int8 output stage of TFLM: `i32` wrapping accumulator + bias, requantize, clamp.
#[inline(always)]
fn int8_stage(
    acc: i64,
    bias: Option<&[i32]>,
    c: usize,
    q: (&[i32], &[i32]),
    p: (i32, i32, i32),
) -> i8 {
    // The exact sum truncated to i32 is TFLM's wrapping i32 sum.
    let acc = (acc as i32).wrapping_add(bias.and_then(|b| b.get(c)).copied().unwrap_or(0));
    let m = q.0.get(c).copied().unwrap_or(0);
    let s = q.1.get(c).copied().unwrap_or(0);
    requantize(acc, m, s, p.0, p.1, p.2)
}

/// Runs an op with int4 weights.
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem) -> Result<(), Error> {
    let input = as_i8(mem.required_input(0)?);
    let bias = bias_input(ctx, &mem)?;
    match ctx.kind {
        OpKind::Conv2d => {
            let ConvOp { p, shapes } = conv_op(ctx)?;
            let [is, fs, os] = shapes;
            let q = channel_quant(ctx, p.multipliers_offset, p.shifts_offset, fs[0])?;
            let w = filter(ctx, &mem, fs.iter().product())?;
            conv(p, is, input, fs, &w, bias, q, os, as_i8_mut(mem.output))
        }
        OpKind::DepthwiseConv2d => {
            let DepthwiseOp { p, shapes } = depthwise_op(ctx)?;
            let [is, fs, os] = shapes;
            let q = channel_quant(ctx, p.multipliers_offset, p.shifts_offset, os[3])?;
            let w = filter(ctx, &mem, fs.iter().product())?;
            depthwise(p, is, input, fs, &w, bias, q, os, as_i8_mut(mem.output))
        }
        OpKind::FullyConnected => {
            let FcOp {
                p,
                batches,
                in_f,
                out_f,
            } = fc_op(ctx)?;
            let count = p.channel_count as usize;
            let q = channel_quant(ctx, p.multipliers_offset, p.shifts_offset, count)?;
            let w = filter(ctx, &mem, out_f * in_f)?;
            let out = (p.output_offset, p.act_min, p.act_max);
            let per_channel = count != 1;
            accumulate::fully_connected(
                batches,
                in_f,
                out_f,
                input,
                p.input_offset,
                &w,
                p.filter_offset,
                as_i8_mut(mem.output),
                |acc, c| {
                    let acc = (acc as i32)
                        .wrapping_add(bias.and_then(|b| b.get(c)).copied().unwrap_or(0));
                    let k = if per_channel { c } else { 0 };
                    let m = q.0.get(k).copied().unwrap_or(0);
                    let s = q.1.get(k).copied().unwrap_or(0);
                    requantize(acc, m, s, out.0, out.1, out.2)
                },
            )
        }
        _ => Err(ctx.param_error("kind (int4 weights)")),
    }
}

/// CONV_2D / DEPTHWISE_CONV_2D with int4 weights over its own input (the in-place shift modes
/// of [`crate::format::InPlace`]): `buf[in_at..]` holds the input, the output goes to
/// `buf[out_at..]` on the side `dir` names, band by band ([`window_op_in_place`]), each band
/// computed by the same kernel as [`eval`]'s, so results are bit for bit those of the op run
/// out of place. The filter is read from flash as it is (no buffer).
pub(crate) fn eval_in_place(
    ctx: &OpCtx,
    mem: OpMem,
    dir: ShiftDirection,
    in_at: usize,
    out_at: usize,
) -> Result<(), Error> {
    let bias = bias_input(ctx, &mem)?;
    match ctx.kind {
        OpKind::Conv2d => {
            let ConvOp { p, shapes } = conv_op(ctx)?;
            let [is, fs, os] = shapes;
            let q = channel_quant(ctx, p.multipliers_offset, p.shifts_offset, fs[0])?;
            let w = filter(ctx, &mem, fs.iter().product())?;
            let band = |bp: &ConvParams, bis, inp: &[i8], bos, out: &mut [i8]| {
                conv(bp, bis, inp, fs, &w, bias, q, bos, out)
            };
            let buf = as_i8_mut(mem.output);
            window_op_in_place(p, is, fs, os, buf, in_at, out_at, dir, band)
        }
        OpKind::DepthwiseConv2d => {
            let DepthwiseOp { p, shapes } = depthwise_op(ctx)?;
            let [is, fs, os] = shapes;
            let q = channel_quant(ctx, p.multipliers_offset, p.shifts_offset, os[3])?;
            let w = filter(ctx, &mem, fs.iter().product())?;
            let band = |bp: &DepthwiseParams, bis, inp: &[i8], bos, out: &mut [i8]| {
                depthwise(bp, bis, inp, fs, &w, bias, q, bos, out)
            };
            let buf = as_i8_mut(mem.output);
            window_op_in_place(p, is, fs, os, buf, in_at, out_at, dir, band)
        }
        _ => Err(ctx.param_error("kind (int4 weights in place)")),
    }
}

/// The window geometry of CONV_2D / DEPTHWISE_CONV_2D parameters.
fn geometry(stride: [u32; 2], dilation: [u32; 2], pad: [u32; 2]) -> Geometry {
    Geometry {
        stride: stride.map(|v| v as usize),
        dilation: dilation.map(|v| v as usize),
        pad: pad.map(|v| v as usize),
    }
}

/// CONV_2D with int4 weights `w` (shapes checked by [`conv_op`]; a band's own shapes and top
/// padding in the in-place modes).
#[allow(clippy::too_many_arguments)]
fn conv(
    p: &ConvParams,
    is: [usize; 4],
    input: &[i8],
    fs: [usize; 4],
    w: &PackedInt4,
    bias: Option<&[i32]>,
    q: (&[i32], &[i32]),
    os: [usize; 4],
    output: &mut [i8],
) -> Result<(), Error> {
    let g = geometry(
        [p.stride_h, p.stride_w],
        [p.dilation_h, p.dilation_w],
        [p.pad_h, p.pad_w],
    );
    let out = (p.output_offset, p.act_min, p.act_max);
    accumulate::conv(
        &g,
        is,
        input,
        p.input_offset,
        fs,
        w,
        os,
        output,
        |acc, c| int8_stage(acc, bias, c, q, out),
    )
}

/// DEPTHWISE_CONV_2D with int4 weights `w` (as [`conv`]).
#[allow(clippy::too_many_arguments)]
fn depthwise(
    p: &DepthwiseParams,
    is: [usize; 4],
    input: &[i8],
    fs: [usize; 4],
    w: &PackedInt4,
    bias: Option<&[i32]>,
    q: (&[i32], &[i32]),
    os: [usize; 4],
    output: &mut [i8],
) -> Result<(), Error> {
    let g = geometry(
        [p.stride_h, p.stride_w],
        [p.dilation_h, p.dilation_w],
        [p.pad_h, p.pad_w],
    );
    let out = (p.output_offset, p.act_min, p.act_max);
    let m = p.depth_multiplier as usize;
    accumulate::depthwise(
        &g,
        m,
        is,
        input,
        p.input_offset,
        fs,
        w,
        os,
        output,
        |acc, c| int8_stage(acc, bias, c, q, out),
    )
}

/// Packs int8 values (each in `[-8, 7]`) two per byte in [`DType::Int4`] order; `None` if a
/// value is out of range.
pub fn pack_int4(values: &[i8], out: &mut [u8]) -> Option<()> {
    if out.len() != values.len() / 2 + values.len() % 2 {
        return None;
    }
    for (o, pair) in out.iter_mut().zip(values.chunks(2)) {
        let lo = *pair.first()?;
        let hi = pair.get(1).copied().unwrap_or(0);
        if !(-8..=7).contains(&lo) || !(-8..=7).contains(&hi) {
            return None;
        }
        *o = (lo as u8 & 0x0F) | ((hi as u8) << 4);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    //! An int4 op is the int8 op on the sign-extended weights, bit for bit: both run through
    //! `validate` + `eval` (the int8 one on its fastest kernel) on random shapes and parameters.
    extern crate std;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::super::conv::tests::{bytes_i8, cases, Harness};
    use super::*;

    fn act_range() -> impl Strategy<Value = (i32, i32)> {
        prop_oneof![
            3 => Just((-128, 127)),
            1 => (-128i32..=127).prop_flat_map(|lo| (Just(lo), lo..=127)),
        ]
    }

    /// Small (realistic) biases or any (exercising the wrapping accumulator).
    fn bias(n: usize) -> impl Strategy<Value = Vec<i32>> {
        prop_oneof![
            3 => proptest::collection::vec(-100_000i32..=100_000, n),
            1 => proptest::collection::vec(any::<i32>(), n),
        ]
    }

    /// Per-channel Q31 multipliers (often powers of two: exact ties) and shifts.
    fn channel_quant(n: usize) -> impl Strategy<Value = (Vec<i32>, Vec<i32>)> {
        let one = (
            prop_oneof![
                6 => (1i32 << 30)..=i32::MAX,
                3 => (20u32..=30).prop_map(|b| 1i32 << b),
                1 => 0i32..=(1 << 30),
            ],
            prop_oneof![8 => -14i32..=2, 1 => -31i32..=30],
        );
        proptest::collection::vec(one, n).prop_map(|v| v.into_iter().unzip())
    }

    fn packed(w: &[i8]) -> Vec<u8> {
        let mut out = std::vec![0u8; w.len().div_ceil(2)];
        pack_int4(w, &mut out).unwrap();
        out
    }

    /// Runs `kind` with `params` twice, with int8 and with int4 weights; returns both outputs.
    #[allow(clippy::too_many_arguments)]
    fn both<P: bytemuck::Pod>(
        kind: OpKind,
        params: impl Fn(u32, u32) -> P,
        shapes: [&[u32]; 3],
        x: &[i8],
        w: &[i8],
        b: &[i32],
        q: (&[i32], &[i32]),
    ) -> (Vec<u8>, Vec<u8>) {
        let run = |int4: bool| {
            let mut h = Harness::new(kind);
            let m = h.add_i32s(q.0);
            let s = h.add_i32s(q.1);
            h.set_params(&params(m, s));
            h.arena_input(shapes[0], DType::Int8, bytes_i8(x));
            if int4 {
                h.const_input(shapes[1], DType::Int4, &packed(w));
                let t = h.tensors.len() - 1;
                h.tensors[t].bytes = w.len().div_ceil(2) as u32;
            } else {
                h.const_input(shapes[1], DType::Int8, bytes_i8(w));
            }
            h.const_input(&[b.len() as u32], DType::Int32, bytemuck::cast_slice(b));
            h.set_output(shapes[2], DType::Int8);
            h.run().unwrap()
        };
        (run(false), run(true))
    }

    /// A shape bound: `full` natively, `miri` under Miri.
    const fn dim(full: usize, miri: usize) -> u32 {
        cases(full, miri) as u32
    }

    fn nibbles(n: usize) -> impl Strategy<Value = Vec<i8>> {
        proptest::collection::vec(-8i8..=7, n)
    }

    #[derive(Debug, Clone)]
    struct Window {
        input: [u32; 4],
        filter: [u32; 4],
        out: [u32; 2],
        stride: [u32; 2],
        dilation: [u32; 2],
        pad: [u32; 2],
        offsets: (i32, i32),
        act: (i32, i32),
    }

    fn window(depthwise: bool) -> impl Strategy<Value = Window> {
        (
            // Smaller shapes under Miri (tools/ci/reliability.sh).
            (
                1u32..=2,
                1u32..=dim(7, 4),
                1u32..=dim(7, 4),
                1u32..=dim(9, 4),
            ),
            (1u32..=dim(6, 3), 1u32..=3, 1u32..=3, 1u32..=dim(3, 2)),
            (
                [1u32..=3, 1u32..=3],
                [1u32..=2, 1u32..=2],
                [0u32..=2, 0u32..=2],
            ),
            (
                [1u32..=5, 1u32..=5],
                -127i32..=128,
                -128i32..=127,
                act_range(),
            ),
        )
            .prop_map(
                move |(
                    (b, h, w, c),
                    (o, fh, fw, g),
                    (stride, dilation, pad),
                    (out, xo, yo, act),
                )| {
                    let (input, filter) = if depthwise {
                        // g = depth multiplier.
                        ([b, h, w, c], [1, fh, fw, c * g])
                    } else {
                        // g groups: c·g input channels, o·g output channels.
                        ([b, h, w, c * g], [o * g, fh, fw, c])
                    };
                    Window {
                        input,
                        filter,
                        out,
                        stride,
                        dilation,
                        pad,
                        offsets: (xo, yo),
                        act,
                    }
                },
            )
    }

    /// A window, its input, weights, bias and (multipliers, shifts).
    type WindowCase = (Window, Vec<i8>, Vec<i8>, Vec<i32>, (Vec<i32>, Vec<i32>));

    fn window_case(depthwise: bool) -> impl Strategy<Value = WindowCase> {
        window(depthwise).prop_flat_map(move |w| {
            let n_in = w.input.iter().product::<u32>() as usize;
            let n_w = w.filter.iter().product::<u32>() as usize;
            let oc = if depthwise { w.filter[3] } else { w.filter[0] } as usize;
            (
                Just(w),
                proptest::collection::vec(any::<i8>(), n_in),
                nibbles(n_w),
                bias(oc),
                channel_quant(oc),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases(200, 2) as u32))]

        #[test]
        fn conv_int4_is_conv_int8_on_the_nibbles((c, x, w, b, q) in window_case(false)) {
            let oc = c.filter[0];
            let os = [c.input[0], c.out[0], c.out[1], oc];
            let params = |m, s| ConvParams {
                stride_h: c.stride[0],
                stride_w: c.stride[1],
                dilation_h: c.dilation[0],
                dilation_w: c.dilation[1],
                pad_h: c.pad[0],
                pad_w: c.pad[1],
                input_offset: c.offsets.0,
                output_offset: c.offsets.1,
                act_min: c.act.0,
                act_max: c.act.1,
                multipliers_offset: m,
                shifts_offset: s,
                channel_count: oc,
                layout: LAYOUT_REFERENCE,
                packed_offset: 0,
                folded_bias_offset: 0,
            };
            let (a, b) = both(OpKind::Conv2d, params, [&c.input, &c.filter, &os], &x, &w, &b, (&q.0, &q.1));
            prop_assert_eq!(a, b);
        }

        #[test]
        fn depthwise_int4_is_depthwise_int8_on_the_nibbles((c, x, w, b, q) in window_case(true)) {
            let oc = c.filter[3];
            let os = [c.input[0], c.out[0], c.out[1], oc];
            let params = |m, s| DepthwiseParams {
                stride_h: c.stride[0],
                stride_w: c.stride[1],
                dilation_h: c.dilation[0],
                dilation_w: c.dilation[1],
                pad_h: c.pad[0],
                pad_w: c.pad[1],
                input_offset: c.offsets.0,
                output_offset: c.offsets.1,
                act_min: c.act.0,
                act_max: c.act.1,
                multipliers_offset: m,
                shifts_offset: s,
                channel_count: oc,
                depth_multiplier: oc / c.input[3],
            };
            let (a, b) = both(OpKind::DepthwiseConv2d, params, [&c.input, &c.filter, &os], &x, &w, &b, (&q.0, &q.1));
            prop_assert_eq!(a, b);
        }

        #[test]
        fn fc_int4_is_fc_int8_on_the_nibbles(
            (batches, n, k, x, w, b, q, xo, yo, act) in (1usize..=4, 1usize..=cases(40, 8), 1usize..=cases(70, 12)).prop_flat_map(|(batches, n, k)| (
                Just(batches), Just(n), Just(k),
                proptest::collection::vec(any::<i8>(), batches * k),
                nibbles(n * k),
                bias(n),
                prop_oneof![channel_quant(n), channel_quant(1)],
                -127i32..=128, -128i32..=127, act_range(),
            ))
        ) {
            let count = q.0.len() as u32;
            let params = |m, s| FullyConnectedParams {
                input_offset: xo,
                filter_offset: 0,
                output_offset: yo,
                act_min: act.0,
                act_max: act.1,
                multipliers_offset: m,
                shifts_offset: s,
                channel_count: count,
                layout: LAYOUT_REFERENCE,
                packed_offset: 0,
                folded_bias_offset: 0,
            };
            let shapes: [&[u32]; 3] = [&[batches as u32, k as u32], &[n as u32, k as u32], &[batches as u32, n as u32]];
            let (a, b) = both(OpKind::FullyConnected, params, shapes, &x, &w, &b, (&q.0, &q.1));
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn refuses_a_packed_layout_and_a_wrong_length() {
        let w = [1i8, -2, 3, -4, 5, -6];
        let mut h = Harness::new(OpKind::FullyConnected);
        let m = h.add_i32s(&[1 << 30]);
        let s = h.add_i32s(&[0]);
        let mut p = FullyConnectedParams {
            input_offset: 0,
            filter_offset: 0,
            output_offset: 0,
            act_min: -128,
            act_max: 127,
            multipliers_offset: m,
            shifts_offset: s,
            channel_count: 1,
            layout: LAYOUT_REFERENCE,
            packed_offset: 0,
            folded_bias_offset: 0,
        };
        h.arena_input(&[1, 3], DType::Int8, &[1, 2, 3]);
        h.const_input(&[2, 3], DType::Int4, &packed(&w));
        h.tensors[1].bytes = 3;
        h.set_output(&[1, 2], DType::Int8);
        h.set_params(&p);
        // 1·1 − 2·2 + 3·3 = 6 → ·0.5 = 3; −4 + 10 − 18 = −12 → −6.
        assert_eq!(h.run().unwrap(), std::vec![3u8, (-6i8) as u8]);
        p.layout = super::super::conv::LAYOUT_PACKED;
        h.set_params(&p);
        assert!(h.run().is_err());
        p.layout = LAYOUT_REFERENCE;
        h.set_params(&p);
        h.tensors[1].bytes = 6;
        assert!(h.run().is_err());
    }
}
