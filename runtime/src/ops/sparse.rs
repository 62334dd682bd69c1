//! N:M sparse weights: SPARSE_CONV_2D and SPARSE_FULLY_CONNECTED, int8 CONV_2D (one group) and
//! FULLY_CONNECTED whose weights keep at most `N` non-zero values in every group of `M`
//! consecutive input channels, stored without the zeros. The kernels skip the zeros and give the
//! dense int8 op's result on the same (zero-containing) weights, bit for bit.
//!
//! # Encoding
//!
//! The logical filter is `[O, H, W, C]` (FULLY_CONNECTED: `[O, 1, 1, C]`, `C` the input
//! features). Each of its `O·H·W` rows of `C` input channels is cut into `G = ceil(C / M)`
//! groups of `M` channels (the last one shorter when `M` does not divide `C`), and each group
//! stores exactly `N` entries: a value (input 1, int8, `O·H·W·G·N` of them, row by row, group by
//! group) and the position of that value in its group (input 3, uint8: `B = log2(M)` bits per
//! entry, entry `e` in byte `e·B / 8` at bit `e·B mod 8`, least significant first). A group with
//! fewer than `N` non-zero weights is padded with zero values. The op computes, per output,
//! `Σ value · (x[group·M + position] + input_offset)` over its row's entries, then TFLM's int8
//! output stage: the dense sum with the zero weights left out.
//!
//! Inputs: 0 the int8 activations, 1 the values, 2 the optional int32 bias (one per output
//! channel, [`NONE`](crate::format::NONE) when absent), 3 the positions. Parameters:
//! [`SparseParams`]. [`crate::Model::from_bytes`] checks every position (below its group's
//! length) and every count once, so the kernels index nothing unchecked and need no checks that
//! can fail.
//!
//! Storage: `N·(8 + B)/8` bytes per `M` weights instead of `M` (2:4 → 62.5 %, 1:4 → 31 %).

use bytemuck::{Pod, Zeroable};

use super::conv::{
    bias_input, channel_quant, check_axis, check_quant, dims4, requantize, segment, valid_taps,
};
use super::{as_i8, as_i8_mut, OpCtx, OpKind, OpMem};
use crate::error::Error;
use crate::format::DType;

/// Parameters of SPARSE_CONV_2D and SPARSE_FULLY_CONNECTED (FULLY_CONNECTED: strides and
/// dilations 1, no padding, a `1 × 1` filter).
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct SparseParams {
    /// Vertical stride (≥ 1).
    pub stride_h: u32,
    /// Horizontal stride (≥ 1).
    pub stride_w: u32,
    /// Vertical dilation factor (≥ 1).
    pub dilation_h: u32,
    /// Horizontal dilation factor (≥ 1).
    pub dilation_w: u32,
    /// Rows of implicit zero padding above the input.
    pub pad_h: u32,
    /// Columns of implicit zero padding left of the input.
    pub pad_w: u32,
    /// `-input_zero_point`, in `[-127, 128]`.
    pub input_offset: i32,
    /// The output zero point, in `[-128, 127]`.
    pub output_offset: i32,
    /// Lower clamp of the fused activation (quantized).
    pub act_min: i32,
    /// Upper clamp of the fused activation (quantized), `act_min ≤ act_max ≤ 127`.
    pub act_max: i32,
    /// Byte offset in the constant section of `channel_count` Q31 multipliers (`i32`, ≥ 0).
    pub multipliers_offset: u32,
    /// Byte offset in the constant section of `channel_count` shifts (`i32`, in `[-31, 30]`).
    pub shifts_offset: u32,
    /// 1 (per-tensor requantization) or the number of output channels (per channel).
    pub channel_count: u32,
    /// Filter height of the logical `[O, H, W, C]` filter (1 for FULLY_CONNECTED).
    pub filter_h: u32,
    /// Filter width (1 for FULLY_CONNECTED).
    pub filter_w: u32,
    /// Input channels `C` of the filter (= the input's channels; FULLY_CONNECTED: features).
    pub filter_c: u32,
    /// Entries stored per group, `1 ≤ n ≤ m`.
    pub n: u32,
    /// Group length: 2, 4 or 16 (positions of 1, 2 or 4 bits).
    pub m: u32,
}

/// Bits per stored position for group length `m` (2, 4 or 16), else `None`.
pub const fn position_bits(m: usize) -> Option<usize> {
    match m {
        2 => Some(1),
        4 => Some(2),
        16 => Some(4),
        _ => None,
    }
}

/// `(values, position bytes)` of the encoding of `rows` rows of `c` channels as `n`:`m`, or
/// `None` for an invalid `m`, an `n` outside `1..=m`, or an overflow.
pub fn encoded_len(rows: usize, c: usize, n: usize, m: usize) -> Option<(usize, usize)> {
    let bits = position_bits(m)?;
    if n == 0 || n > m {
        return None;
    }
    let values = rows.checked_mul(c.div_ceil(m))?.checked_mul(n)?;
    let index_bytes = values.checked_mul(bits)?.div_ceil(8);
    Some((values, index_bytes))
}

/// The smallest `n` such that every group of `m` consecutive channels of every row of `c`
/// channels in `dense` holds at most `n` non-zero values (at least 1; `None` for a ragged
/// `dense` or `c == 0`).
pub fn min_n(dense: &[i8], c: usize, m: usize) -> Option<usize> {
    if c == 0 || m == 0 || dense.len() % c != 0 {
        return None;
    }
    let mut n = 1;
    for row in dense.chunks_exact(c) {
        for g in row.chunks(m) {
            n = n.max(g.iter().filter(|&&w| w != 0).count());
        }
    }
    Some(n)
}

/// Encodes `dense` (rows of `c` channels) as `n`:`m` into `values` and `positions` (lengths from
/// [`encoded_len`]); `None` if a group holds more than `n` non-zero values or a length is wrong.
pub fn encode(
    dense: &[i8],
    c: usize,
    n: usize,
    m: usize,
    values: &mut [i8],
    positions: &mut [u8],
) -> Option<()> {
    let bits = position_bits(m)?;
    if c == 0 || dense.len() % c != 0 {
        return None;
    }
    let (nv, nb) = encoded_len(dense.len() / c, c, n, m)?;
    if values.len() != nv || positions.len() != nb {
        return None;
    }
    positions.fill(0);
    let mut e = 0usize;
    for row in dense.chunks_exact(c) {
        for g in row.chunks(m) {
            let mut kept = 0;
            for (pos, &w) in g.iter().enumerate() {
                if w == 0 {
                    continue;
                }
                if kept == n {
                    return None;
                }
                *values.get_mut(e + kept)? = w;
                let bit = (e + kept) * bits;
                *positions.get_mut(bit / 8)? |= (pos as u8) << (bit % 8);
                kept += 1;
            }
            // Padding entries: value 0 at position 0 (always inside the group).
            for k in kept..n {
                *values.get_mut(e + k)? = 0;
            }
            e += n;
        }
    }
    Some(())
}

/// The validated shapes of a sparse op.
struct SparseOp<'a> {
    p: &'a SparseParams,
    /// Input `[B, H, W, C]` (FULLY_CONNECTED: `[batches, 1, 1, features]`).
    is: [usize; 4],
    /// Output `[B, OH, OW, O]`.
    os: [usize; 4],
    /// Filter `[O, FH, FW, C]`.
    fs: [usize; 4],
    n: usize,
    m: usize,
    bits: usize,
}

impl SparseOp<'_> {
    /// Entries per filter row (`G·N`).
    fn row_entries(&self) -> usize {
        self.fs[3].div_ceil(self.m.max(1)) * self.n
    }
}

/// Checks an op's parameters, shapes and encoded weights (see the module documentation).
fn sparse_op<'a>(ctx: &OpCtx<'a>) -> Result<SparseOp<'a>, Error> {
    let p: &SparseParams = ctx.params()?;
    if ctx.input_count() != 4 || ctx.desc.output_count != 1 {
        return Err(ctx.param_error("input_count / output_count (input, values, bias, positions)"));
    }
    let input = ctx.required_input(0)?;
    let values = ctx.required_input(1)?;
    let positions = ctx.required_input(3)?;
    let output = ctx.output(0)?;
    ctx.expect_dtype(input, DType::Int8)?;
    ctx.expect_dtype(values, DType::Int8)?;
    ctx.expect_dtype(positions, DType::UInt8)?;
    ctx.expect_dtype(output, DType::Int8)?;
    let (m, n) = (p.m as usize, p.n as usize);
    let bits = position_bits(m).ok_or(ctx.param_error("m (2, 4 or 16)"))?;
    if n == 0 || n > m {
        return Err(ctx.param_error("n (1..=m)"));
    }
    let c = p.filter_c as usize;
    let (fh, fw) = (p.filter_h as usize, p.filter_w as usize);
    if c == 0 || fh == 0 || fw == 0 {
        return Err(ctx.param_error("filter shape"));
    }
    let (is, os) = match ctx.kind {
        OpKind::SparseConv2d => {
            let is = dims4(ctx, input, "a 4-D NHWC input")?;
            let os = dims4(ctx, output, "a 4-D NHWC output")?;
            if is[3] != c || is[0] != os[0] {
                return Err(ctx.param_error("input channels or batches"));
            }
            check_axis(os[1], p.stride_h, fh, p.dilation_h, p.pad_h)
                .map_err(|f| ctx.param_error(f))?;
            check_axis(os[2], p.stride_w, fw, p.dilation_w, p.pad_w)
                .map_err(|f| ctx.param_error(f))?;
            (is, os)
        }
        OpKind::SparseFullyConnected => {
            if fh != 1
                || fw != 1
                || [p.stride_h, p.stride_w, p.dilation_h, p.dilation_w] != [1; 4]
                || p.pad_h != 0
                || p.pad_w != 0
            {
                return Err(ctx.param_error("geometry (FULLY_CONNECTED: 1×1, stride 1, no pad)"));
            }
            let out_f = output.1.dims().last().copied().unwrap_or(0) as usize;
            if out_f == 0 {
                return Err(ctx.shape_error(output.0, "an output ending with the channels"));
            }
            let batches = output.1.elements() / out_f as u64;
            if input.1.elements() != batches.saturating_mul(c as u64) {
                return Err(ctx.shape_error(input.0, "batches × filter_c elements"));
            }
            let batches = usize::try_from(batches).map_err(|_| ctx.param_error("batches"))?;
            ([batches, 1, 1, c], [batches, 1, 1, out_f])
        }
        _ => return Err(ctx.param_error("kind (sparse)")),
    };
    let o = os[3];
    let count = p.channel_count as usize;
    if count != 1 && count != o {
        return Err(ctx.param_error("channel_count (1 or the output channels)"));
    }
    check_quant(p.input_offset, p.output_offset, p.act_min, p.act_max)
        .map_err(|f| ctx.param_error(f))?;
    channel_quant(ctx, p.multipliers_offset, p.shifts_offset, count)?;
    if let Some(b) = ctx.input(2)? {
        ctx.expect_dtype(b, DType::Int32)?;
        if b.1.elements() != o as u64 {
            return Err(ctx.shape_error(b.0, "a bias with one int32 per output channel"));
        }
    }
    let rows = o
        .checked_mul(fh)
        .and_then(|r| r.checked_mul(fw))
        .ok_or(ctx.param_error("filter size"))?;
    let (nv, nb) = encoded_len(rows, c, n, m).ok_or(ctx.param_error("filter size"))?;
    if values.1.elements() != nv as u64 {
        return Err(ctx.shape_error(values.0, "O·H·W·ceil(C/M)·N values"));
    }
    if positions.1.elements() != nb as u64 {
        return Err(ctx.shape_error(positions.0, "ceil(values · log2(M) / 8) position bytes"));
    }
    Ok(SparseOp {
        p,
        is,
        os,
        fs: [o, fh, fw, c],
        n,
        m,
        bits,
    })
}

/// The position of entry `e` (`bits` bits each, `bits` in {1, 2, 4}).
#[inline(always)]
fn position(positions: &[u8], e: usize, bits: usize) -> usize {
    let bit = e * bits;
    let byte = positions.get(bit / 8).copied().unwrap_or(0);
    ((byte >> (bit % 8)) as usize) & ((1 << bits) - 1)
}

/// Checks every stored position against its group's length (the last group of a row may be
/// shorter than `m`), and that the unused bits of the last byte are zero.
fn check_positions(ctx: &OpCtx, op: &SparseOp, positions: &[u8]) -> Result<(), Error> {
    let c = op.fs[3];
    let groups = c.div_ceil(op.m.max(1));
    let rows = op.fs[0] * op.fs[1] * op.fs[2];
    let mut e = 0usize;
    for _ in 0..rows {
        for g in 0..groups {
            let len = (c - g * op.m).min(op.m);
            for _ in 0..op.n {
                if position(positions, e, op.bits) >= len {
                    return Err(ctx.param_error("sparse position outside its group"));
                }
                e += 1;
            }
        }
    }
    // The bits after the last entry are zero (one encoding per weight set).
    let used = e * op.bits;
    let tail = positions.get(used / 8).copied().unwrap_or(0) >> (used % 8);
    if used % 8 != 0 && tail != 0 {
        return Err(ctx.param_error("sparse positions: bits after the last entry"));
    }
    Ok(())
}

/// Checks a sparse op (see the module documentation).
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    let op = sparse_op(ctx)?;
    let positions = ctx
        .const_input(3)?
        .ok_or(ctx.param_error("positions (a constant)"))?;
    ctx.const_input(1)?
        .ok_or(ctx.param_error("values (a constant)"))?;
    check_positions(ctx, &op, positions)
}

/// `Σ value · (x[position] + offset)` over one filter row's entries against the `C` input
/// channels `x` of one input pixel, with TFLM's wrapping 32-bit accumulator. Padding entries
/// (value 0, position 0) add nothing and are not tested for: a branch costs more than their
/// multiply.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn row_dot(
    acc: i32,
    x: &[i8],
    values: &[i8],
    positions: &[u8],
    first: usize,
    n: usize,
    m: usize,
    bits: usize,
    offset: i32,
) -> i32 {
    let mut acc = acc;
    let mask = (1usize << bits) - 1;
    // A bit cursor over the positions: entry e's position starts at bit e·bits.
    let mut bit = first * bits;
    // Entries come `n` per group; `base` is the group's first channel. `values` holds exactly
    // G·N entries and every position is below its group's length (validated), so
    // `base + position < C = x.len()`.
    let (mut base, mut k) = (0usize, 0usize);
    for &w in values {
        let byte = positions.get(bit >> 3).copied().unwrap_or(0);
        let pos = (usize::from(byte) >> (bit & 7)) & mask;
        bit += bits;
        let xv = x.get(base + pos).copied().unwrap_or(0);
        acc = acc.wrapping_add(i32::from(w) * (i32::from(xv) + offset));
        k += 1;
        if k == n {
            k = 0;
            base += m;
        }
    }
    acc
}

/// Runs a sparse op.
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem) -> Result<(), Error> {
    let op = sparse_op(ctx)?;
    let p = op.p;
    let input = as_i8(mem.required_input(0)?);
    let values = as_i8(mem.required_input(1)?);
    let positions = mem.required_input(3)?;
    let bias = bias_input(ctx, &mem)?;
    let count = p.channel_count as usize;
    let (mults, shifts) = channel_quant(ctx, p.multipliers_offset, p.shifts_offset, count)?;
    let out = as_i8_mut(mem.output);
    let [b_n, ih, iw, c] = op.is;
    let [_, oh, ow, o] = op.os;
    let [_, fh, fw, _] = op.fs;
    let re = op.row_entries();
    let (sh, sw) = (p.stride_h as usize, p.stride_w as usize);
    let (dh, dw) = (p.dilation_h as usize, p.dilation_w as usize);
    let mut pixels = out.chunks_exact_mut(o.max(1));
    for b in 0..b_n {
        for oy in 0..oh {
            let origin_y = (oy * sh) as isize - p.pad_h as isize;
            let ky_range = valid_taps(origin_y, dh, ih, fh);
            for ox in 0..ow {
                let origin_x = (ox * sw) as isize - p.pad_w as isize;
                let kx_range = valid_taps(origin_x, dw, iw, fw);
                // Validated: the output holds B·OH·OW·O elements.
                let Some(pixel) = pixels.next() else {
                    return Ok(());
                };
                for (oc, y) in pixel.iter_mut().enumerate() {
                    let mut acc = 0i32;
                    for ky in ky_range.clone() {
                        let iy = (origin_y + (ky * dh) as isize) as usize;
                        for kx in kx_range.clone() {
                            let ix = (origin_x + (kx * dw) as isize) as usize;
                            let x = segment(input, ((b * ih + iy) * iw + ix) * c, c);
                            let first = ((oc * fh + ky) * fw + kx) * re;
                            let w = segment(values, first, re);
                            acc = row_dot(
                                acc,
                                x,
                                w,
                                positions,
                                first,
                                op.n,
                                op.m,
                                op.bits,
                                p.input_offset,
                            );
                        }
                    }
                    let acc = acc.wrapping_add(bias.and_then(|v| v.get(oc)).copied().unwrap_or(0));
                    let k = if count == 1 { 0 } else { oc };
                    let mul = mults.get(k).copied().unwrap_or(0);
                    let shift = shifts.get(k).copied().unwrap_or(0);
                    *y = requantize(acc, mul, shift, p.output_offset, p.act_min, p.act_max);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! A sparse op is the dense int8 op on the same zero-containing weights, bit for bit: both run
    //! through `validate` + `eval` (the dense one on its fastest kernel) on random shapes, N:M
    //! patterns, zero points and requantization.
    extern crate std;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::super::conv::tests::{bytes_i8, cases, Harness};
    use super::super::conv::{ConvParams, LAYOUT_REFERENCE};
    use super::super::fully_connected::FullyConnectedParams;
    use super::*;

    /// Random weights for rows of `c` channels with at most `n` non-zeros per group of `m`
    /// (sometimes fewer: padding entries), as a dense array.
    fn nm_weights(rows: usize, c: usize, n: usize, m: usize) -> impl Strategy<Value = Vec<i8>> {
        let len = rows * c;
        (
            proptest::collection::vec(any::<i8>(), len),
            proptest::collection::vec(any::<u32>(), len),
            0usize..=n,
        )
            .prop_map(move |(w, keys, keep_min)| {
                let mut w = w;
                for r in 0..rows {
                    for g0 in (0..c).step_by(m) {
                        let g1 = (g0 + m).min(c);
                        // Keep the `n` (or fewer) entries with the largest keys.
                        let mut idx: Vec<usize> = (r * c + g0..r * c + g1).collect();
                        idx.sort_by_key(|&i| std::cmp::Reverse(keys[i]));
                        let keep = n.min(idx.len()).max(keep_min.min(idx.len()));
                        let keep = keep.min(n);
                        for &i in &idx[keep..] {
                            w[i] = 0;
                        }
                    }
                }
                w
            })
    }

    fn encoded(w: &[i8], c: usize, n: usize, m: usize) -> (Vec<i8>, Vec<u8>) {
        let (nv, nb) = encoded_len(w.len() / c, c, n, m).unwrap();
        let mut v = std::vec![0i8; nv];
        let mut p = std::vec![0u8; nb];
        encode(w, c, n, m, &mut v, &mut p).unwrap();
        (v, p)
    }

    fn nm() -> impl Strategy<Value = (usize, usize)> {
        prop_oneof![
            3 => (1usize..=3).prop_map(|n| (n, 4)),
            1 => Just((1, 2)),
            1 => (1usize..=8).prop_map(|n| (n, 16)),
        ]
    }

    fn channel_quant(n: usize) -> impl Strategy<Value = (Vec<i32>, Vec<i32>)> {
        proptest::collection::vec(((1i32 << 30)..=i32::MAX, -12i32..=2), n)
            .prop_map(|v| v.into_iter().unzip())
    }

    fn act_range() -> impl Strategy<Value = (i32, i32)> {
        prop_oneof![
            3 => Just((-128, 127)),
            1 => (-128i32..=127).prop_flat_map(|lo| (Just(lo), lo..=127)),
        ]
    }

    /// Runs the sparse op (`kind`, `p`) and returns its output.
    #[allow(clippy::too_many_arguments)]
    fn run_sparse(
        kind: OpKind,
        p: impl Fn(u32, u32) -> SparseParams,
        shapes: [&[u32]; 2],
        x: &[i8],
        enc: &(Vec<i8>, Vec<u8>),
        bias: Option<&[i32]>,
        q: &(Vec<i32>, Vec<i32>),
    ) -> Result<Vec<u8>, Error> {
        let mut h = Harness::new(kind);
        let ms = h.add_i32s(&q.0);
        let ss = h.add_i32s(&q.1);
        h.set_params(&p(ms, ss));
        h.arena_input(shapes[0], DType::Int8, bytes_i8(x));
        h.const_input(&[enc.0.len() as u32], DType::Int8, bytes_i8(&enc.0));
        match bias {
            Some(b) => h.const_input(&[b.len() as u32], DType::Int32, bytemuck::cast_slice(b)),
            None => h.inputs.push(crate::format::NONE),
        }
        h.const_input(&[enc.1.len() as u32], DType::UInt8, &enc.1);
        h.set_output(shapes[1], DType::Int8);
        h.run()
    }

    /// A shape bound: `full` natively, `miri` under Miri.
    const fn dim(full: usize, miri: usize) -> usize {
        cases(full, miri)
    }

    #[derive(Debug, Clone)]
    struct ConvCase {
        input: [u32; 4],
        filter: [u32; 4],
        out: [u32; 2],
        stride: [u32; 2],
        dilation: [u32; 2],
        pad: [u32; 2],
        offsets: (i32, i32),
        act: (i32, i32),
        nm: (usize, usize),
    }

    /// A case, its input, dense N:M weights, optional bias and (multipliers, shifts).
    type Case = (
        ConvCase,
        Vec<i8>,
        Vec<i8>,
        Option<Vec<i32>>,
        (Vec<i32>, Vec<i32>),
    );

    fn conv_case() -> impl Strategy<Value = Case> {
        (
            (
                1u32..=2,
                1u32..=dim(7, 4) as u32,
                1u32..=dim(7, 4) as u32,
                1u32..=dim(20, 6) as u32,
            ),
            (1u32..=dim(6, 3) as u32, 1u32..=3, 1u32..=3),
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
                nm(),
            ),
        )
            .prop_map(
                |((b, h, w, c), (o, fh, fw), (stride, dilation, pad), (out, xo, yo, act, nm))| {
                    ConvCase {
                        input: [b, h, w, c],
                        filter: [o, fh, fw, c],
                        out,
                        stride,
                        dilation,
                        pad,
                        offsets: (xo, yo),
                        act,
                        nm,
                    }
                },
            )
            .prop_flat_map(|k| {
                let n_in = k.input.iter().product::<u32>() as usize;
                let [o, fh, fw, c] = k.filter.map(|d| d as usize);
                (
                    Just(k.clone()),
                    proptest::collection::vec(any::<i8>(), n_in),
                    nm_weights(o * fh * fw, c, k.nm.0, k.nm.1),
                    proptest::option::of(proptest::collection::vec(-100_000i32..=100_000, o)),
                    prop_oneof![channel_quant(o), channel_quant(1)],
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases(300, 3) as u32))]

        #[test]
        fn sparse_conv_is_dense_conv_on_the_same_weights((k, x, w, b, q) in conv_case()) {
            let o = k.filter[0];
            let os = [k.input[0], k.out[0], k.out[1], o];
            // Dense: per-channel quantization broadcast when the sparse op uses one channel.
            let qd: (Vec<i32>, Vec<i32>) = if q.0.len() == 1 {
                (std::vec![q.0[0]; o as usize], std::vec![q.1[0]; o as usize])
            } else {
                q.clone()
            };
            let mut h = Harness::new(OpKind::Conv2d);
            let ms = h.add_i32s(&qd.0);
            let ss = h.add_i32s(&qd.1);
            h.set_params(&ConvParams {
                stride_h: k.stride[0],
                stride_w: k.stride[1],
                dilation_h: k.dilation[0],
                dilation_w: k.dilation[1],
                pad_h: k.pad[0],
                pad_w: k.pad[1],
                input_offset: k.offsets.0,
                output_offset: k.offsets.1,
                act_min: k.act.0,
                act_max: k.act.1,
                multipliers_offset: ms,
                shifts_offset: ss,
                channel_count: o,
                layout: LAYOUT_REFERENCE,
                packed_offset: 0,
                folded_bias_offset: 0,
            });
            h.arena_input(&k.input, DType::Int8, bytes_i8(&x));
            h.const_input(&k.filter, DType::Int8, bytes_i8(&w));
            if let Some(b) = &b {
                h.const_input(&[o], DType::Int32, bytemuck::cast_slice(b));
            }
            h.set_output(&os, DType::Int8);
            let dense = h.run();
            prop_assume!(dense.is_ok(), "shape the dense op refuses");
            let (n, m) = k.nm;
            let enc = encoded(&w, k.input[3] as usize, n, m);
            let params = |ms, ss| SparseParams {
                stride_h: k.stride[0],
                stride_w: k.stride[1],
                dilation_h: k.dilation[0],
                dilation_w: k.dilation[1],
                pad_h: k.pad[0],
                pad_w: k.pad[1],
                input_offset: k.offsets.0,
                output_offset: k.offsets.1,
                act_min: k.act.0,
                act_max: k.act.1,
                multipliers_offset: ms,
                shifts_offset: ss,
                channel_count: q.0.len() as u32,
                filter_h: k.filter[1],
                filter_w: k.filter[2],
                filter_c: k.filter[3],
                n: n as u32,
                m: m as u32,
            };
            let sparse = run_sparse(OpKind::SparseConv2d, params, [&k.input, &os], &x, &enc, b.as_deref(), &q);
            prop_assert_eq!(dense.unwrap(), sparse.unwrap());
        }

        #[test]
        fn sparse_fc_is_dense_fc_on_the_same_weights(
            (batches, out_f, in_f, (n, m), w, x, b, q, xo, yo, act) in
                (1usize..=3, 1usize..=dim(24, 6), 1usize..=dim(70, 12), nm())
                    .prop_flat_map(|(batches, out_f, in_f, (n, m))| (
                        Just(batches), Just(out_f), Just(in_f), Just((n, m)),
                        nm_weights(out_f, in_f, n, m),
                        proptest::collection::vec(any::<i8>(), batches * in_f),
                        proptest::collection::vec(-100_000i32..=100_000, out_f),
                        prop_oneof![channel_quant(out_f), channel_quant(1)],
                        -127i32..=128, -128i32..=127, act_range(),
                    ))
        ) {
            let count = q.0.len() as u32;
            let shapes: [&[u32]; 2] = [&[batches as u32, in_f as u32], &[batches as u32, out_f as u32]];
            let mut h = Harness::new(OpKind::FullyConnected);
            let ms = h.add_i32s(&q.0);
            let ss = h.add_i32s(&q.1);
            h.set_params(&FullyConnectedParams {
                input_offset: xo,
                filter_offset: 0,
                output_offset: yo,
                act_min: act.0,
                act_max: act.1,
                multipliers_offset: ms,
                shifts_offset: ss,
                channel_count: count,
                layout: LAYOUT_REFERENCE,
                packed_offset: 0,
                folded_bias_offset: 0,
            });
            h.arena_input(shapes[0], DType::Int8, bytes_i8(&x));
            h.const_input(&[out_f as u32, in_f as u32], DType::Int8, bytes_i8(&w));
            h.const_input(&[out_f as u32], DType::Int32, bytemuck::cast_slice(&b));
            h.set_output(shapes[1], DType::Int8);
            let dense = h.run().unwrap();
            let enc = encoded(&w, in_f, n, m);
            let params = |ms, ss| SparseParams {
                stride_h: 1,
                stride_w: 1,
                dilation_h: 1,
                dilation_w: 1,
                pad_h: 0,
                pad_w: 0,
                input_offset: xo,
                output_offset: yo,
                act_min: act.0,
                act_max: act.1,
                multipliers_offset: ms,
                shifts_offset: ss,
                channel_count: count,
                filter_h: 1,
                filter_w: 1,
                filter_c: in_f as u32,
                n: n as u32,
                m: m as u32,
            };
            let sparse = run_sparse(OpKind::SparseFullyConnected, params, shapes, &x, &enc, Some(&b), &q).unwrap();
            prop_assert_eq!(dense, sparse);
        }
    }

    #[test]
    fn encoding_round_trips_and_refuses_too_many_non_zeros() {
        // One row of 6 channels, 2:4: groups [1, 0, 0, -2] and [0, 3].
        let w = [1i8, 0, 0, -2, 0, 3];
        assert_eq!(min_n(&w, 6, 4), Some(2));
        assert_eq!(encoded_len(1, 6, 2, 4), Some((4, 1)));
        let (v, p) = encoded(&w, 6, 2, 4);
        assert_eq!(v, std::vec![1, -2, 3, 0]);
        // Positions 0, 3 | 1, 0 (padding) at 2 bits each.
        assert_eq!(p, std::vec![0b00_01_11_00]);
        let mut v1 = [0i8; 2];
        let mut p1 = [0u8; 1];
        assert!(encode(&w, 6, 1, 4, &mut v1, &mut p1).is_none());
    }

    /// One SPARSE_FULLY_CONNECTED with 3 inputs and 2 outputs, 1:2; returns the harness.
    fn small_fc(positions: u8) -> Harness {
        let mut h = Harness::new(OpKind::SparseFullyConnected);
        let ms = h.add_i32s(&[1 << 30]);
        let ss = h.add_i32s(&[0]);
        h.set_params(&SparseParams {
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
            multipliers_offset: ms,
            shifts_offset: ss,
            channel_count: 1,
            filter_h: 1,
            filter_w: 1,
            filter_c: 3,
            n: 1,
            m: 2,
        });
        h.arena_input(&[1, 3], DType::Int8, &[10, 20, 30]);
        // Rows: groups {c0, c1}, {c2}: 2 rows × 2 groups × 1 entry.
        h.const_input(&[4], DType::Int8, bytes_i8(&[2, 4, -2, 6]));
        h.inputs.push(crate::format::NONE);
        h.const_input(&[1], DType::UInt8, &[positions]);
        h.set_output(&[1, 2], DType::Int8);
        h
    }

    #[test]
    fn validation_refuses_positions_outside_their_group() {
        // Entries: row 0 (pos 1 → c1, pos 0 → c2), row 1 (pos 0 → c0, pos 0 → c2).
        let h = small_fc(0b0000_0001);
        // (2·20 + 4·30)·0.5 = 80; (−2·10 + 6·30)·0.5 = 80.
        assert_eq!(h.run().unwrap(), std::vec![80u8, 80]);
        // Entry 1 at position 1 of the last group, which has one channel: refused.
        assert!(small_fc(0b0000_0010).run().is_err());
        assert!(small_fc(0b1000_0000).run().is_err());
        // Wrong value count.
        let mut h = small_fc(0);
        h.tensors[1].shape[0] = 3;
        h.tensors[1].bytes = 3;
        assert!(h.run().is_err());
    }
}
