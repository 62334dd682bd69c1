//! float32 CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED, with float32 or float16 weights
//! (`mote quantize --scheme f16`: weights stored as IEEE half, activations and arithmetic in
//! single precision).
//!
//! The arithmetic of TFLM's float reference kernels (`reference_ops::Conv`,
//! `DepthwiseConv`, `FullyConnected`): per output element, `Σ x·w` in `f32` over the filter
//! taps in row-major order (filter row, filter column, input channel), then `+ bias`, then the
//! clamp of the fused activation (`act_min`/`act_max`: ±∞ for none, `[0, ∞]` RELU, `[0, 6]`
//! RELU6). A float16 weight is widened exactly to `f32` ([`f16_to_f32`]) before its product,
//! so an f16 model computes what the f32 model with the rounded weights computes.
//!
//! The ops are chosen by dtype: input 0 [`DType::Float32`] (`applies`). Tensors: input and
//! output float32, weights float32 or float16, optional bias float32 with one value per output
//! channel. The parameter structs are [`FloatConvParams`] and [`FloatFcParams`].
//!
//! No heap, no panics: `validate` (called by [`crate::Model::from_bytes`]) checks shapes and
//! parameters once; the kernels check slice lengths up front and read through `get`.

use super::conv::{check_axis, dims4, elements4, kernel_error, valid_taps};
use super::{as_typed, as_typed_mut, OpCtx, OpKind, OpMem};
use crate::error::Error;
use crate::format::DType;

/// Parameters of a float32 CONV_2D or DEPTHWISE_CONV_2D.
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct FloatConvParams {
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
    /// DEPTHWISE_CONV_2D: output channels per input channel (≥ 1). CONV_2D: 1.
    pub depth_multiplier: u32,
    /// Lower clamp of the fused activation (`-∞` for none).
    pub act_min: f32,
    /// Upper clamp of the fused activation (`+∞` for none), `act_min ≤ act_max`.
    pub act_max: f32,
}

/// Parameters of a float32 FULLY_CONNECTED.
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct FloatFcParams {
    /// Lower clamp of the fused activation (`-∞` for none).
    pub act_min: f32,
    /// Upper clamp of the fused activation (`+∞` for none), `act_min ≤ act_max`.
    pub act_max: f32,
}

/// The IEEE 754 binary16 value with bits `h`, widened to `f32` (exact: every half is an `f32`).
/// NaNs keep their payload with the quiet bit set, as the `half` crate and x86's `vcvtph2ps` do.
pub const fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1F) as u32;
    let man = (h & 0x03FF) as u32;
    let bits = if exp == 0x1F {
        if man == 0 {
            sign | 0x7F80_0000
        } else {
            sign | 0x7FC0_0000 | (man << 13)
        }
    } else if exp != 0 {
        // Rebias the exponent: 15 → 127.
        sign | ((exp + 112) << 23) | (man << 13)
    } else if man == 0 {
        sign
    } else {
        // Subnormal: man · 2^-24 with its top bit at position p (0..=9), normalized.
        let p = 31 - man.leading_zeros();
        sign | ((p + 103) << 23) | ((man << (23 - p)) & 0x007F_FFFF)
    };
    f32::from_bits(bits)
}

/// Where a float kernel reads its weights from, element by element in row-major order.
pub trait FloatWeights {
    /// Number of weights.
    fn len(&self) -> usize;
    /// Whether there are no weights.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Weight `i` as `f32` (0 past the end; the kernels check lengths first).
    fn at(&self, i: usize) -> f32;
    /// `total + Σ x[j]·w[start + j]`, summed in order (0 for weights past the end).
    #[inline(always)]
    fn dot(&self, total: f32, start: usize, x: &[f32]) -> f32 {
        x.iter()
            .enumerate()
            .fold(total, |t, (j, &v)| t + v * self.at(start + j))
    }
}

impl FloatWeights for [f32] {
    fn len(&self) -> usize {
        <[f32]>::len(self)
    }
    #[inline(always)]
    fn at(&self, i: usize) -> f32 {
        self.get(i).copied().unwrap_or(0.0)
    }
    #[inline(always)]
    fn dot(&self, total: f32, start: usize, x: &[f32]) -> f32 {
        let w = self.get(start..).unwrap_or(&[]);
        x.iter().zip(w).fold(total, |t, (&v, &w)| t + v * w)
    }
}

/// float16 weights: little-endian IEEE half, two bytes each (any alignment).
#[derive(Debug, Clone, Copy)]
pub struct F16Weights<'a>(pub &'a [u8]);

impl FloatWeights for F16Weights<'_> {
    fn len(&self) -> usize {
        self.0.len() / 2
    }
    #[inline(always)]
    fn at(&self, i: usize) -> f32 {
        match (self.0.get(2 * i), self.0.get(2 * i + 1)) {
            (Some(&lo), Some(&hi)) => f16_to_f32(u16::from_le_bytes([lo, hi])),
            _ => 0.0,
        }
    }
    #[inline(always)]
    fn dot(&self, total: f32, start: usize, x: &[f32]) -> f32 {
        let w = self.0.get(2 * start..).unwrap_or(&[]);
        x.iter().zip(w.chunks_exact(2)).fold(total, |t, (&v, b)| {
            // `chunks_exact(2)`: two bytes; `get` keeps the panic path out.
            let h = match (b.first(), b.get(1)) {
                (Some(&lo), Some(&hi)) => u16::from_le_bytes([lo, hi]),
                _ => 0,
            };
            t + v * f16_to_f32(h)
        })
    }
}

/// Clamp to the fused activation range (`max` then `min`, as TFLM's
/// `ActivationFunctionWithMinMax`).
#[inline(always)]
fn act(x: f32, lo: f32, hi: f32) -> f32 {
    let x = if x < lo { lo } else { x };
    if x > hi {
        hi
    } else {
        x
    }
}

/// Geometry of a float window op.
fn geometry(p: &FloatConvParams) -> ([usize; 2], [usize; 2], [usize; 2]) {
    (
        [p.stride_h as usize, p.stride_w as usize],
        [p.dilation_h as usize, p.dilation_w as usize],
        [p.pad_h as usize, p.pad_w as usize],
    )
}

/// Input coordinate of output position `o` along one axis, before adding `tap·dilation`.
#[inline(always)]
fn origin(o: usize, stride: usize, pad: usize) -> isize {
    (o * stride) as isize - pad as isize
}

/// float32 CONV_2D (TFLM `reference_ops::Conv`, grouped when the filter has fewer input
/// channels than the input): `input` NHWC `is`, `weights` OHWI `fs`, `output` NHWC `os`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_f32<W: FloatWeights + ?Sized>(
    p: &FloatConvParams,
    is: [usize; 4],
    input: &[f32],
    fs: [usize; 4],
    weights: &W,
    bias: Option<&[f32]>,
    os: [usize; 4],
    output: &mut [f32],
) -> Result<(), Error> {
    let [batches, in_h, in_w, in_c] = is;
    let [out_c, f_h, f_w, f_ic] = fs;
    let [_, out_h, out_w, _] = os;
    if in_c.checked_rem(f_ic) != Some(0) || os[0] != batches || os[3] != out_c {
        return Err(kernel_error("float conv shapes"));
    }
    let groups = in_c.checked_div(f_ic).unwrap_or(0);
    if groups == 0 || out_c.checked_rem(groups) != Some(0) {
        return Err(kernel_error("float conv groups"));
    }
    let per_group = out_c.checked_div(groups).unwrap_or(0);
    if per_group == 0 {
        return Err(kernel_error("float conv groups"));
    }
    if elements4(is) != Some(input.len())
        || elements4(fs) != Some(weights.len())
        || elements4(os) != Some(output.len())
        || bias.is_some_and(|b| b.len() != out_c)
    {
        return Err(kernel_error("float conv lengths"));
    }
    let (stride, dil, pad) = geometry(p);
    let mut o = 0usize;
    for b in 0..batches {
        for oy in 0..out_h {
            let y0 = origin(oy, stride[0], pad[0]);
            let ys = valid_taps(y0, dil[0], in_h, f_h);
            for ox in 0..out_w {
                let x0 = origin(ox, stride[1], pad[1]);
                let xs = valid_taps(x0, dil[1], in_w, f_w);
                for oc in 0..out_c {
                    // `per_group ≥ 1` here (checked above); `checked_div` keeps the panic out.
                    let base_c = oc.checked_div(per_group).unwrap_or(0) * f_ic;
                    let mut total = 0.0f32;
                    for ky in ys.clone() {
                        // In range by `valid_taps`.
                        let iy = (y0 + (ky * dil[0]) as isize) as usize;
                        for kx in xs.clone() {
                            let ix = (x0 + (kx * dil[1]) as isize) as usize;
                            let xi = ((b * in_h + iy) * in_w + ix) * in_c + base_c;
                            let wi = ((oc * f_h + ky) * f_w + kx) * f_ic;
                            // Lengths checked above: the segment is whole.
                            let x = input.get(xi..xi + f_ic).unwrap_or(&[]);
                            total = weights.dot(total, wi, x);
                        }
                    }
                    let bv = bias.and_then(|b| b.get(oc)).copied().unwrap_or(0.0);
                    if let Some(slot) = output.get_mut(o) {
                        *slot = act(total + bv, p.act_min, p.act_max);
                    }
                    o += 1;
                }
            }
        }
    }
    Ok(())
}

/// float32 DEPTHWISE_CONV_2D (TFLM `reference_ops::DepthwiseConv`): `input` NHWC `is`,
/// `weights` `1×H×W×(C·M)` `fs`, `output` NHWC `os` with `C·M` channels; output channel
/// `c·M + m` reads input channel `c`.
#[allow(clippy::too_many_arguments)]
pub fn depthwise_f32<W: FloatWeights + ?Sized>(
    p: &FloatConvParams,
    is: [usize; 4],
    input: &[f32],
    fs: [usize; 4],
    weights: &W,
    bias: Option<&[f32]>,
    os: [usize; 4],
    output: &mut [f32],
) -> Result<(), Error> {
    let [batches, in_h, in_w, in_c] = is;
    let [_, f_h, f_w, f_c] = fs;
    let [_, out_h, out_w, out_c] = os;
    let m = p.depth_multiplier as usize;
    if fs[0] != 1 || m == 0 || in_c.checked_mul(m) != Some(out_c) || f_c != out_c {
        return Err(kernel_error("float depthwise shapes"));
    }
    if os[0] != batches
        || elements4(is) != Some(input.len())
        || elements4(fs) != Some(weights.len())
        || elements4(os) != Some(output.len())
        || bias.is_some_and(|b| b.len() != out_c)
    {
        return Err(kernel_error("float depthwise lengths"));
    }
    let (stride, dil, pad) = geometry(p);
    let mut o = 0usize;
    for b in 0..batches {
        for oy in 0..out_h {
            let y0 = origin(oy, stride[0], pad[0]);
            let ys = valid_taps(y0, dil[0], in_h, f_h);
            for ox in 0..out_w {
                let x0 = origin(ox, stride[1], pad[1]);
                let xs = valid_taps(x0, dil[1], in_w, f_w);
                for oc in 0..out_c {
                    let ic = oc / m;
                    let mut total = 0.0f32;
                    for ky in ys.clone() {
                        let iy = (y0 + (ky * dil[0]) as isize) as usize;
                        for kx in xs.clone() {
                            let ix = (x0 + (kx * dil[1]) as isize) as usize;
                            let x = input
                                .get(((b * in_h + iy) * in_w + ix) * in_c + ic)
                                .copied()
                                .unwrap_or(0.0);
                            total += x * weights.at((ky * f_w + kx) * out_c + oc);
                        }
                    }
                    let bv = bias.and_then(|b| b.get(oc)).copied().unwrap_or(0.0);
                    if let Some(slot) = output.get_mut(o) {
                        *slot = act(total + bv, p.act_min, p.act_max);
                    }
                    o += 1;
                }
            }
        }
    }
    Ok(())
}

/// float32 FULLY_CONNECTED (TFLM `reference_ops::FullyConnected`): `input` `batches × in_f`,
/// `weights` `out_f × in_f`, `output` `batches × out_f`.
#[allow(clippy::too_many_arguments)]
pub fn fully_connected_f32<W: FloatWeights + ?Sized>(
    p: &FloatFcParams,
    batches: usize,
    in_f: usize,
    out_f: usize,
    input: &[f32],
    weights: &W,
    bias: Option<&[f32]>,
    output: &mut [f32],
) -> Result<(), Error> {
    if batches.checked_mul(in_f) != Some(input.len())
        || out_f.checked_mul(in_f) != Some(weights.len())
        || batches.checked_mul(out_f) != Some(output.len())
        || bias.is_some_and(|b| b.len() != out_f)
    {
        return Err(kernel_error("float fully connected lengths"));
    }
    if in_f == 0 {
        return Err(kernel_error("float fully connected: no input features"));
    }
    for (b, x) in input.chunks_exact(in_f).enumerate() {
        for o in 0..out_f {
            let total = weights.dot(0.0, o * in_f, x);
            let bv = bias.and_then(|b| b.get(o)).copied().unwrap_or(0.0);
            if let Some(slot) = output.get_mut(b * out_f + o) {
                *slot = act(total + bv, p.act_min, p.act_max);
            }
        }
    }
    Ok(())
}

/// Whether op `ctx` is a CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED with float32 input.
pub(crate) fn applies(ctx: &OpCtx) -> bool {
    matches!(
        ctx.kind,
        OpKind::Conv2d | OpKind::DepthwiseConv2d | OpKind::FullyConnected
    ) && ctx.input_dtype(0) == Some(DType::Float32)
}

/// Input, weights, output and bias dtypes: float32, float32 or float16, float32, float32
/// (optional, `channels` values). Returns whether the weights are float16.
fn check_io(ctx: &OpCtx, channels: usize) -> Result<bool, Error> {
    if ctx.desc.output_count != 1 || !(2..=3).contains(&ctx.input_count()) {
        return Err(ctx.param_error("input_count / output_count"));
    }
    ctx.expect_dtype(ctx.required_input(0)?, DType::Float32)?;
    ctx.expect_dtype(ctx.output(0)?, DType::Float32)?;
    let w = ctx.required_input(1)?;
    let half = match w.1.dtype() {
        Some(DType::Float16) => true,
        Some(DType::Float32) => false,
        _ => return Err(ctx.shape_error(w.0, "float32 or float16 weights")),
    };
    if ctx.input_count() == 3 {
        if let Some(b) = ctx.input(2)? {
            ctx.expect_dtype(b, DType::Float32)?;
            if b.1.elements() != channels as u64 {
                return Err(ctx.shape_error(b.0, "a bias with one float32 per output channel"));
            }
        }
    }
    Ok(half)
}

/// A clamp range that is not NaN and not empty.
fn check_act(ctx: &OpCtx, lo: f32, hi: f32) -> Result<(), Error> {
    // `!(lo <= hi)` is also true when either is NaN.
    if lo
        .partial_cmp(&hi)
        .is_none_or(|o| o == core::cmp::Ordering::Greater)
    {
        return Err(ctx.param_error("activation range (float: act_min <= act_max, no NaN)"));
    }
    Ok(())
}

/// What a checked float op needs to run.
enum Checked<'a> {
    Conv(&'a FloatConvParams, [[usize; 4]; 3]),
    Depthwise(&'a FloatConvParams, [[usize; 4]; 3]),
    Fc(&'a FloatFcParams, [usize; 3]),
}

fn check<'a>(ctx: &OpCtx<'a>) -> Result<(Checked<'a>, bool), Error> {
    match ctx.kind {
        OpKind::Conv2d | OpKind::DepthwiseConv2d => {
            let p: &FloatConvParams = ctx.params()?;
            let is = dims4(ctx, ctx.required_input(0)?, "a 4-D NHWC input")?;
            let w = ctx.required_input(1)?;
            let fs = dims4(ctx, w, "a 4-D filter")?;
            let os = dims4(ctx, ctx.output(0)?, "a 4-D NHWC output")?;
            let half = check_io(ctx, os[3])?;
            if is[0] != os[0] {
                return Err(ctx.param_error("batches"));
            }
            if ctx.kind == OpKind::Conv2d {
                let [out_c, _, _, f_ic] = fs;
                if out_c != os[3] || p.depth_multiplier != 1 {
                    return Err(ctx.shape_error(w.0, "a filter with the output's channels"));
                }
                let groups = is[3].checked_div(f_ic).unwrap_or(0);
                if is[3].checked_rem(f_ic) != Some(0) || out_c.checked_rem(groups) != Some(0) {
                    return Err(ctx.param_error("groups"));
                }
            } else {
                let m = p.depth_multiplier as usize;
                if fs[0] != 1 || m == 0 || is[3].checked_mul(m) != Some(os[3]) || fs[3] != os[3] {
                    return Err(ctx.param_error("depthwise shapes / depth_multiplier"));
                }
            }
            check_axis(os[1], p.stride_h, fs[1], p.dilation_h, p.pad_h)
                .map_err(|f| ctx.param_error(f))?;
            check_axis(os[2], p.stride_w, fs[2], p.dilation_w, p.pad_w)
                .map_err(|f| ctx.param_error(f))?;
            check_act(ctx, p.act_min, p.act_max)?;
            let shapes = [is, fs, os];
            if ctx.kind == OpKind::Conv2d {
                Ok((Checked::Conv(p, shapes), half))
            } else {
                Ok((Checked::Depthwise(p, shapes), half))
            }
        }
        OpKind::FullyConnected => {
            let p: &FloatFcParams = ctx.params()?;
            let (input, weights, output) = (
                ctx.required_input(0)?,
                ctx.required_input(1)?,
                ctx.output(0)?,
            );
            let (out_f, in_f) = match weights.1.dims() {
                &[o, i] if o > 0 && i > 0 => (o as usize, i as usize),
                _ => return Err(ctx.shape_error(weights.0, "2-D weights [out, in], both non-zero")),
            };
            let half = check_io(ctx, out_f)?;
            if output.1.dims().last().copied() != Some(out_f as u32) {
                return Err(ctx.shape_error(output.0, "an output ending with the weights' rows"));
            }
            let batches = output.1.elements() / out_f as u64;
            if input.1.elements() != batches * in_f as u64 {
                return Err(ctx.shape_error(input.0, "batches × the weights' columns elements"));
            }
            check_act(ctx, p.act_min, p.act_max)?;
            Ok((Checked::Fc(p, [batches as usize, in_f, out_f]), half))
        }
        _ => Err(ctx.param_error("kind (float32 MAC op)")),
    }
}

/// Checks a float32 CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED (see the module
/// documentation); errors name the op and the tensor or field.
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    check(ctx).map(|_| ())
}

fn bias<'a>(ctx: &OpCtx, mem: &OpMem<'a>) -> Result<Option<&'a [f32]>, Error> {
    if ctx.input_count() < 3 {
        return Ok(None);
    }
    match mem.input(2)? {
        None => Ok(None),
        Some(b) => as_typed::<f32>(b).map(Some),
    }
}

/// Runs a float32 MAC op with its float32 or float16 weights.
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem) -> Result<(), Error> {
    let (checked, half) = check(ctx)?;
    let input: &[f32] = as_typed(mem.required_input(0)?)?;
    let w = mem.required_input(1)?;
    let bias = bias(ctx, &mem)?;
    let output: &mut [f32] = as_typed_mut(mem.output)?;
    if half {
        run(checked, input, &F16Weights(w), bias, output)
    } else {
        run(checked, input, as_typed::<f32>(w)?, bias, output)
    }
}

/// Runs a checked op with weights of type `W` (one monomorphized kernel per weight type).
fn run<W: FloatWeights + ?Sized>(
    checked: Checked,
    input: &[f32],
    weights: &W,
    bias: Option<&[f32]>,
    output: &mut [f32],
) -> Result<(), Error> {
    match checked {
        Checked::Conv(p, [is, fs, os]) => conv2d_f32(p, is, input, fs, weights, bias, os, output),
        Checked::Depthwise(p, [is, fs, os]) => {
            depthwise_f32(p, is, input, fs, weights, bias, os, output)
        }
        Checked::Fc(p, [batches, in_f, out_f]) => {
            fully_connected_f32(p, batches, in_f, out_f, input, weights, bias, output)
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use bytemuck::Zeroable;

    use super::super::conv::tests::{Harness, Rng};
    use super::*;

    #[test]
    fn f16_decode_matches_half_on_every_bit_pattern() {
        for h in 0..=u16::MAX {
            let want = half::f16::from_bits(h).to_f32().to_bits();
            assert_eq!(f16_to_f32(h).to_bits(), want, "bits {h:#06x}");
        }
    }

    fn floats(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| (rng.range(-1000, 1000) as f32 / 1000.0) * scale)
            .collect()
    }

    fn f16_bytes(w: &[f32]) -> Vec<u8> {
        w.iter()
            .flat_map(|&x| half::f16::from_f32(x).to_bits().to_le_bytes())
            .collect()
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn to_f32s(b: &[u8]) -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// The weights the kernel sees: rounded to half when `half`, as f64.
    fn seen(w: &[f32], half: bool) -> Vec<f64> {
        w.iter()
            .map(|&x| {
                if half {
                    half::f16::from_f32(x).to_f64()
                } else {
                    f64::from(x)
                }
            })
            .collect()
    }

    /// Compares kernel output `got` with the f64 reference `want` (and `mag`, the sum of the
    /// absolute products of each element, which bounds f32 rounding).
    fn assert_close(got: &[f32], want: &[(f64, f64)], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (&g, &(w, mag))) in got.iter().zip(want).enumerate() {
            let tol = 1e-6 * mag + 1e-6;
            assert!(
                (f64::from(g) - w).abs() <= tol,
                "{what}: element {i}: {g} vs {w} (tol {tol})"
            );
        }
    }

    fn clamp64(x: f64, lo: f32, hi: f32) -> f64 {
        x.max(f64::from(lo)).min(f64::from(hi))
    }

    fn acts(rng: &mut Rng) -> (f32, f32) {
        match rng.range(0, 2) {
            0 => (f32::NEG_INFINITY, f32::INFINITY),
            1 => (0.0, f32::INFINITY),
            _ => (0.0, 6.0),
        }
    }

    /// A straightforward f64 CONV_2D / DEPTHWISE_CONV_2D: every tap, bounds checked per tap.
    #[allow(clippy::too_many_arguments)]
    fn naive_window(
        depthwise: bool,
        p: &FloatConvParams,
        is: [usize; 4],
        x: &[f32],
        fs: [usize; 4],
        w: &[f64],
        bias: Option<&[f32]>,
        os: [usize; 4],
    ) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        for b in 0..os[0] {
            for oy in 0..os[1] {
                for ox in 0..os[2] {
                    for oc in 0..os[3] {
                        let (mut acc, mut mag) = (0f64, 0f64);
                        for ky in 0..fs[1] {
                            for kx in 0..fs[2] {
                                let iy = (oy * p.stride_h as usize + ky * p.dilation_h as usize)
                                    as i64
                                    - i64::from(p.pad_h);
                                let ix = (ox * p.stride_w as usize + kx * p.dilation_w as usize)
                                    as i64
                                    - i64::from(p.pad_w);
                                if iy < 0 || ix < 0 || iy >= is[1] as i64 || ix >= is[2] as i64 {
                                    continue;
                                }
                                let pix = ((b * is[1] + iy as usize) * is[2] + ix as usize) * is[3];
                                if depthwise {
                                    let m = p.depth_multiplier as usize;
                                    let xv = f64::from(x[pix + oc / m]);
                                    let wv = w[(ky * fs[2] + kx) * os[3] + oc];
                                    acc += xv * wv;
                                    mag += (xv * wv).abs();
                                } else {
                                    let groups = is[3] / fs[3];
                                    let g = oc / (os[3] / groups);
                                    for ic in 0..fs[3] {
                                        let xv = f64::from(x[pix + g * fs[3] + ic]);
                                        let wv = w[((oc * fs[1] + ky) * fs[2] + kx) * fs[3] + ic];
                                        acc += xv * wv;
                                        mag += (xv * wv).abs();
                                    }
                                }
                            }
                        }
                        let bv = bias.map_or(0.0, |b| f64::from(b[oc]));
                        out.push((clamp64(acc + bv, p.act_min, p.act_max), mag + bv.abs()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn window_kernels_match_a_naive_f64_reference_on_random_shapes() {
        let mut rng = Rng(0x5EED_F16F_16F1_6F16);
        for case in 0..300 {
            let depthwise = case % 2 == 1;
            let half = case % 4 < 2;
            let batches = rng.range(1, 2) as usize;
            let (in_h, in_w) = (rng.range(1, 9) as usize, rng.range(1, 9) as usize);
            let (f_h, f_w) = (rng.range(1, 4) as usize, rng.range(1, 4) as usize);
            let (sh, sw) = (rng.range(1, 3) as u32, rng.range(1, 3) as u32);
            let (dh, dw) = (rng.range(1, 2) as u32, rng.range(1, 2) as u32);
            let (ph, pw) = (rng.range(0, 2) as u32, rng.range(0, 2) as u32);
            let out_dim = |i: usize, f: usize, s: u32, d: u32, p: u32| {
                let span = (f - 1) * d as usize + 1;
                (i + 2 * p as usize)
                    .checked_sub(span)
                    .map(|r| r / s as usize + 1)
            };
            let (Some(out_h), Some(out_w)) = (
                out_dim(in_h, f_h, sh, dh, ph),
                out_dim(in_w, f_w, sw, dw, pw),
            ) else {
                continue;
            };
            let (in_c, m, groups) = (
                rng.range(1, 6) as usize,
                rng.range(1, 3) as usize,
                rng.range(1, 2) as usize,
            );
            let in_c = in_c * groups;
            let (is, fs, os, kind) = if depthwise {
                (
                    [batches, in_h, in_w, in_c],
                    [1, f_h, f_w, in_c * m],
                    [batches, out_h, out_w, in_c * m],
                    OpKind::DepthwiseConv2d,
                )
            } else {
                let out_c = rng.range(1, 5) as usize * groups;
                (
                    [batches, in_h, in_w, in_c],
                    [out_c, f_h, f_w, in_c / groups],
                    [batches, out_h, out_w, out_c],
                    OpKind::Conv2d,
                )
            };
            let (act_min, act_max) = acts(&mut rng);
            let p = FloatConvParams {
                stride_h: sh,
                stride_w: sw,
                dilation_h: dh,
                dilation_w: dw,
                pad_h: ph,
                pad_w: pw,
                depth_multiplier: if depthwise { m as u32 } else { 1 },
                act_min,
                act_max,
            };
            let x = floats(&mut rng, is.iter().product(), 4.0);
            let w = floats(&mut rng, fs.iter().product(), 1.0);
            let with_bias = rng.range(0, 3) > 0;
            let bias = floats(&mut rng, os[3], 2.0);
            let u = |s: [usize; 4]| s.map(|d| d as u32);
            let mut h = Harness::new(kind);
            h.arena_input(&u(is), DType::Float32, &f32_bytes(&x));
            if half {
                h.const_input(&u(fs), DType::Float16, &f16_bytes(&w));
            } else {
                h.const_input(&u(fs), DType::Float32, &f32_bytes(&w));
            }
            if with_bias {
                h.const_input(&[os[3] as u32], DType::Float32, &f32_bytes(&bias));
            }
            h.set_output(&u(os), DType::Float32);
            h.set_params(&p);
            let got = to_f32s(&h.run().unwrap_or_else(|e| panic!("case {case}: {e:?}")));
            let want = naive_window(
                depthwise,
                &p,
                is,
                &x,
                fs,
                &seen(&w, half),
                with_bias.then_some(&bias[..]),
                os,
            );
            assert_close(
                &got,
                &want,
                &std::format!("case {case} {kind:?} half={half}"),
            );
        }
    }

    #[test]
    fn fully_connected_matches_a_naive_f64_reference_on_random_shapes() {
        let mut rng = Rng(0xF16F_C0DE_0000_0001);
        for case in 0..200 {
            let half = case % 2 == 0;
            let (batches, in_f, out_f) = (
                rng.range(1, 3) as usize,
                rng.range(1, 40) as usize,
                rng.range(1, 12) as usize,
            );
            let (act_min, act_max) = acts(&mut rng);
            let p = FloatFcParams { act_min, act_max };
            let x = floats(&mut rng, batches * in_f, 3.0);
            let w = floats(&mut rng, out_f * in_f, 1.0);
            let bias = floats(&mut rng, out_f, 1.0);
            let mut h = Harness::new(OpKind::FullyConnected);
            h.arena_input(
                &[batches as u32, in_f as u32],
                DType::Float32,
                &f32_bytes(&x),
            );
            let ws = [out_f as u32, in_f as u32];
            if half {
                h.const_input(&ws, DType::Float16, &f16_bytes(&w));
            } else {
                h.const_input(&ws, DType::Float32, &f32_bytes(&w));
            }
            h.const_input(&[out_f as u32], DType::Float32, &f32_bytes(&bias));
            h.set_output(&[batches as u32, out_f as u32], DType::Float32);
            h.set_params(&p);
            let got = to_f32s(&h.run().unwrap());
            let wv = seen(&w, half);
            let mut want = Vec::new();
            for b in 0..batches {
                for o in 0..out_f {
                    let (mut acc, mut mag) = (f64::from(bias[o]), f64::from(bias[o]).abs());
                    for i in 0..in_f {
                        let t = f64::from(x[b * in_f + i]) * wv[o * in_f + i];
                        acc += t;
                        mag += t.abs();
                    }
                    want.push((clamp64(acc, act_min, act_max), mag));
                }
            }
            assert_close(&got, &want, &std::format!("case {case}"));
        }
    }

    /// A valid float16 CONV_2D 1×3×3×2 → 1×2×2×1 (2×2 filter, no bias).
    fn small_conv() -> Harness {
        let mut h = Harness::new(OpKind::Conv2d);
        h.arena_input(&[1, 3, 3, 2], DType::Float32, &f32_bytes(&[0.5; 18]));
        h.const_input(&[1, 2, 2, 2], DType::Float16, &f16_bytes(&[1.0; 8]));
        h.set_output(&[1, 2, 2, 1], DType::Float32);
        h.set_params(&FloatConvParams {
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            pad_h: 0,
            pad_w: 0,
            depth_multiplier: 1,
            act_min: f32::NEG_INFINITY,
            act_max: f32::INFINITY,
        });
        h
    }

    #[test]
    fn misuse_is_refused_naming_the_tensor_or_field() {
        assert_eq!(to_f32s(&small_conv().run().unwrap()), [4.0; 4]);
        // int8 weights under float32 activations.
        let mut h = small_conv();
        h.tensors[1].dtype = DType::Int8 as u8;
        h.tensors[1].bytes = 8;
        assert!(matches!(
            h.run(),
            Err(Error::ShapeMismatch { tensor: 1, .. })
        ));
        // int8 output.
        let mut h = small_conv();
        h.tensors[2].dtype = DType::Int8 as u8;
        h.tensors[2].bytes = 4;
        assert!(matches!(
            h.run(),
            Err(Error::ShapeMismatch { tensor: 2, .. })
        ));
        // A bias with the wrong count.
        let mut h = small_conv();
        h.const_input(&[3], DType::Float32, &f32_bytes(&[0.0; 3]));
        assert!(matches!(
            h.run(),
            Err(Error::ShapeMismatch { tensor: 3, .. })
        ));
        // Empty or NaN clamp ranges, a zero stride, a wrong output size.
        for edit in 0..4 {
            let mut h = small_conv();
            let mut p = FloatConvParams {
                stride_h: 1,
                stride_w: 1,
                dilation_h: 1,
                dilation_w: 1,
                pad_h: 0,
                pad_w: 0,
                depth_multiplier: 1,
                act_min: 0.0,
                act_max: 6.0,
            };
            match edit {
                0 => p.act_min = 7.0,
                1 => p.act_max = f32::NAN,
                2 => p.stride_w = 0,
                _ => p.depth_multiplier = 2,
            }
            h.set_params(&p);
            assert!(h.run().is_err(), "edit {edit}");
        }
        // Params of the wrong struct (the int8 ConvParams) are refused by length.
        let mut h = small_conv();
        h.set_params(&super::super::conv::ConvParams::zeroed());
        assert!(matches!(h.run(), Err(Error::InvalidField { .. })));
    }
}
