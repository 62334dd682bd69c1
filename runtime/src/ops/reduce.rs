//! Reductions: MEAN over a set of axes.
//!
//! Bit-exact with TFLM (`reduce_common.cc`, `reference_ops::QuantizedMeanOrSum`): for int8 and
//! int16 every output is `MultiplyByQuantizedMultiplier(sum − input_zp·count, M, S) + output_zp`,
//! clamped, where `sum` is the int32 sum of the `count` reduced elements and `(M, S)` is the
//! multiplier of `input_scale / output_scale` with `1/count` folded in on the host exactly as TFLM
//! folds it (`shift = min(floor(log2 count), 32, 31 + S0)`, `M = (M0 << shift) / count`,
//! `S = S0 − shift`). TFLM takes this path whether or not the input and output quantization
//! match. Float32 sums each output's elements in input order and divides by `count`.
//!
//! The compiler resolves the axes (negative values, duplicates) into [`MeanParams::axes_mask`];
//! the output's flat layout is the same with or without `keep_dims`.

use bytemuck::Pod;

use super::{as_typed, as_typed_mut, OpCtx, OpMem};
use crate::error::Error;
use crate::format::{DType, MAX_RANK};
use crate::quant::multiply_by_quantized_multiplier;

/// Parameters of MEAN.
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct MeanParams {
    /// Bit `k` set: input axis `k` is reduced (bits at or above the input rank must be clear).
    pub axes_mask: u32,
    /// Number of input elements averaged into each output (product of the reduced dimensions).
    pub count: u32,
    /// Input zero point (integer kernels).
    pub input_zero_point: i32,
    /// Output zero point (integer kernels).
    pub output_zero_point: i32,
    /// Q31 multiplier of `input_scale / (output_scale · count)`, as TFLM derives it.
    pub multiplier: i32,
    /// Power-of-two exponent going with `multiplier`, in `-31..=31`.
    pub shift: i32,
}

/// Sizes and strides of a subset of a tensor's axes, walked in row-major order.
#[derive(Debug, Clone, Copy)]
struct Axes {
    n: usize,
    size: [usize; MAX_RANK],
    stride: [usize; MAX_RANK],
}

impl Axes {
    /// Number of positions (1 when there are no axes).
    fn count(&self) -> usize {
        self.size.iter().take(self.n).product()
    }
    /// Offsets of all positions, in row-major order.
    fn offsets(&self) -> Offsets {
        Offsets {
            axes: *self,
            idx: [0; MAX_RANK],
            offset: 0,
            remaining: self.count(),
        }
    }
}

/// Iterator over the offsets of [`Axes::offsets`].
struct Offsets {
    axes: Axes,
    idx: [usize; MAX_RANK],
    offset: usize,
    remaining: usize,
}

impl Iterator for Offsets {
    type Item = usize;
    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let current = self.offset;
        for k in (0..self.axes.n.min(MAX_RANK)).rev() {
            self.idx[k] += 1;
            self.offset = self.offset.wrapping_add(self.axes.stride[k]);
            if self.idx[k] < self.axes.size[k] {
                break;
            }
            self.offset = self
                .offset
                .wrapping_sub(self.axes.stride[k].wrapping_mul(self.axes.size[k]));
            self.idx[k] = 0;
        }
        Some(current)
    }
}

/// Splits `dims` into kept and reduced axes (with row-major strides), or `None` when
/// `dims` has more than [`MAX_RANK`] entries or `axes_mask` names an axis past them.
fn split_axes(dims: &[usize], axes_mask: u32) -> Option<(Axes, Axes)> {
    if dims.len() > MAX_RANK || (axes_mask >> dims.len()) != 0 {
        return None;
    }
    let empty = Axes {
        n: 0,
        size: [0; MAX_RANK],
        stride: [0; MAX_RANK],
    };
    let (mut kept, mut reduced) = (empty, empty);
    let mut stride = 1usize;
    let mut strides = [0usize; MAX_RANK];
    for (slot, &d) in strides.iter_mut().zip(dims).rev() {
        *slot = stride;
        stride = stride.checked_mul(d)?;
    }
    for (k, &d) in dims.iter().enumerate() {
        let a = if axes_mask & (1 << k) != 0 {
            &mut reduced
        } else {
            &mut kept
        };
        // `a.n < dims.len() <= MAX_RANK`; `get_mut` states it without a bounds-check panic.
        if let (Some(size), Some(st), Some(&s)) =
            (a.size.get_mut(a.n), a.stride.get_mut(a.n), strides.get(k))
        {
            *size = d;
            *st = s;
            a.n += 1;
        }
    }
    Some((kept, reduced))
}

/// Integer element types of MEAN.
trait MeanElem: Pod {
    const MIN: i32;
    const MAX: i32;
    fn to_i32(self) -> i32;
    fn from_i32(v: i32) -> Self;
}

impl MeanElem for i8 {
    const MIN: i32 = i8::MIN as i32;
    const MAX: i32 = i8::MAX as i32;
    fn to_i32(self) -> i32 {
        self as i32
    }
    fn from_i32(v: i32) -> Self {
        v as i8
    }
}

impl MeanElem for i16 {
    const MIN: i32 = i16::MIN as i32;
    const MAX: i32 = i16::MAX as i32;
    fn to_i32(self) -> i32 {
        self as i32
    }
    fn from_i32(v: i32) -> Self {
        v as i16
    }
}

/// Checks slice lengths against `dims`; returns the kept and reduced axes.
fn prepare<T, U>(
    p: &MeanParams,
    dims: &[usize],
    input: &[T],
    output: &[U],
) -> Option<(Axes, Axes)> {
    let (kept, reduced) = split_axes(dims, p.axes_mask)?;
    let n_in = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    if input.len() < n_in || output.len() < kept.count() {
        return None;
    }
    Some((kept, reduced))
}

fn mean_int<T: MeanElem>(p: &MeanParams, dims: &[usize], input: &[T], output: &mut [T]) {
    let Some((kept, reduced)) = prepare(p, dims, input, output) else {
        return;
    };
    let n_out = kept.count();
    let count = reduced.count();
    if count == 0 || n_out == 0 || dims.contains(&0) {
        // TFLM leaves zeros when the input is empty.
        output
            .iter_mut()
            .take(n_out)
            .for_each(|o| *o = T::from_i32(0));
        return;
    }
    let bias = (p.input_zero_point as i64).wrapping_mul(count as i64);
    for (o, base) in output.iter_mut().zip(kept.offsets()) {
        let mut sum: i32 = 0;
        for off in reduced.offsets() {
            // `base + off` is a row-major index of `dims` and `input.len() >= n_in`, so `get`
            // always finds it (it only spares the bounds-check panic).
            sum = sum.wrapping_add(input.get(base + off).map_or(0, |v| v.to_i32()));
        }
        let shifted = (sum as i64).wrapping_sub(bias) as i32;
        let v = multiply_by_quantized_multiplier(shifted, p.multiplier, p.shift)
            .wrapping_add(p.output_zero_point);
        *o = T::from_i32(v.clamp(T::MIN, T::MAX));
    }
}

/// MEAN, int8 (TFLM `QuantizedMeanOrSum`). `dims` is the input shape; the output holds one
/// element per position of the kept axes, in row-major order.
pub fn mean_int8(p: &MeanParams, dims: &[usize], input: &[i8], output: &mut [i8]) {
    mean_int(p, dims, input, output)
}

/// MEAN, int16 (TFLM `QuantizedMeanOrSum`).
pub fn mean_int16(p: &MeanParams, dims: &[usize], input: &[i16], output: &mut [i16]) {
    mean_int(p, dims, input, output)
}

/// MEAN, float32 (TFLM `reference_ops::Mean`): each output sums its elements in input order,
/// then divides by the element count.
pub fn mean_f32(p: &MeanParams, dims: &[usize], input: &[f32], output: &mut [f32]) {
    let Some((kept, reduced)) = prepare(p, dims, input, output) else {
        return;
    };
    let count = reduced.count();
    for (o, base) in output.iter_mut().zip(kept.offsets()) {
        let mut sum = 0.0f32;
        for off in reduced.offsets() {
            // Always found: `base + off` is a row-major index of `dims` (see `mean_int`).
            sum += input.get(base + off).copied().unwrap_or(0.0);
        }
        *o = if count > 0 { sum / count as f32 } else { 0.0 };
    }
}

fn dims_of(t: &crate::format::TensorDesc) -> ([usize; MAX_RANK], usize) {
    let mut d = [0usize; MAX_RANK];
    for (o, &v) in d.iter_mut().zip(t.dims()) {
        *o = v as usize;
    }
    (d, t.dims().len())
}

/// Checks a MEAN op.
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    let p: &MeanParams = ctx.params()?;
    if ctx.input_count() != 1 || ctx.desc.output_count != 1 {
        return Err(ctx.param_error("input_count"));
    }
    let input = ctx.required_input(0)?;
    let output = ctx.output(0)?;
    let dtype = input
        .1
        .dtype()
        .ok_or(ctx.shape_error(input.0, "a known dtype"))?;
    if !matches!(dtype, DType::Int8 | DType::Int16 | DType::Float32) {
        return Err(ctx.shape_error(input.0, "int8, int16 or float32"));
    }
    ctx.expect_dtype(output, dtype)?;
    let (dims, rank) = dims_of(input.1);
    let (kept, reduced) =
        split_axes(&dims[..rank], p.axes_mask).ok_or(ctx.param_error("axes_mask"))?;
    if reduced.count() as u64 != p.count as u64 {
        return Err(ctx.param_error("count"));
    }
    if kept.count() as u64 != output.1.elements() {
        return Err(ctx.shape_error(output.0, "the input's shape without the reduced axes"));
    }
    if dtype != DType::Float32 && (!(-31..=31).contains(&p.shift) || p.multiplier < 0) {
        return Err(ctx.param_error("multiplier/shift"));
    }
    Ok(())
}

/// Runs a MEAN op.
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem) -> Result<(), Error> {
    let p: &MeanParams = ctx.params()?;
    let input = ctx.required_input(0)?;
    let (dims, rank) = dims_of(input.1);
    let dims = &dims[..rank];
    let x = mem.required_input(0)?;
    match input.1.dtype() {
        Some(DType::Int8) => mean_int8(p, dims, as_typed(x)?, as_typed_mut(mem.output)?),
        Some(DType::Int16) => mean_int16(p, dims, as_typed(x)?, as_typed_mut(mem.output)?),
        Some(DType::Float32) => mean_f32(p, dims, as_typed(x)?, as_typed_mut(mem.output)?),
        _ => return Err(ctx.shape_error(input.0, "int8, int16 or float32")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's folding of `1/count` into the multiplier (mirrors the compiler).
    fn fold(m: i32, s: i32, count: i64) -> (i32, i32) {
        let mut shift = 63 - (count as u64).leading_zeros() as i32;
        shift = shift.min(32).min(31 + s);
        ((((m as i64) << shift) / count) as i32, s - shift)
    }

    fn params(mask: u32, count: u32, izp: i32, ozp: i32, m: i32, s: i32) -> MeanParams {
        let (multiplier, shift) = if count > 0 {
            fold(m, s, count as i64)
        } else {
            (m, s)
        };
        MeanParams {
            axes_mask: mask,
            count,
            input_zero_point: izp,
            output_zero_point: ozp,
            multiplier,
            shift,
        }
    }

    #[test]
    fn same_quantization_rounds_half_away() {
        // 1x2x2x1 over axes 1,2, scale ratio 1 (M = 2^30, S = 1). Verified against TFLM.
        let p = params(0b0110, 4, 0, 0, 1 << 30, 1);
        let mut out = [0i8; 1];
        mean_int8(&p, &[1, 2, 2, 1], &[-3, -4, -5, 7], &mut out);
        assert_eq!(out[0], -1); // -1.25
        mean_int8(&p, &[1, 2, 2, 1], &[-3, -4, -5, 6], &mut out);
        assert_eq!(out[0], -2); // -1.5 → -2 (TFLM agrees; truncation would give -1)
        mean_int8(&p, &[1, 2, 2, 1], &[3, 4, 5, -6], &mut out);
        assert_eq!(out[0], 2);
    }

    #[test]
    fn keep_dims_and_not_share_layout() {
        // 2x3x4x5 ramp -60..60 over axes 0,1,2 → 5 outputs; means are -2.5 + c.
        let mut x = [0i8; 120];
        for (i, v) in x.iter_mut().enumerate() {
            *v = (i as i32 - 60) as i8;
        }
        let p = params(0b0111, 24, 0, 0, 1 << 30, 1);
        let mut out = [0i8; 5];
        mean_int8(&p, &[2, 3, 4, 5], &x, &mut out);
        assert_eq!(out, [-3, -2, -1, 1, 2]); // TFLM output
    }

    #[test]
    fn differing_quantization_last_axis() {
        // TFLM: input scale 0.5 zp 3, output scale 0.7 zp -2, axis -1 of 2x3x4x5 ramp.
        let mut x = [0i8; 120];
        for (i, v) in x.iter_mut().enumerate() {
            *v = (i as i32 - 60) as i8;
        }
        // QuantizeMultiplier(0.5f32 / 0.7f32) = (1533916918, 0).
        let p = params(0b1000, 5, 3, -2, 1_533_916_918, 0);
        let mut out = [0i8; 24];
        mean_int8(&p, &[2, 3, 4, 5], &x, &mut out);
        assert_eq!(&out[..4], &[-46, -42, -39, -35]);
        assert_eq!(&out[12..16], &[-3, 1, 5, 8]);
        assert_eq!(out[23], 37);
    }

    #[test]
    fn middle_axis_and_clamp() {
        // 2x3x2 over axis 1, scale ratio 4 (M = 2^30, S = 3): outputs clamp at 127.
        let x: [i8; 12] = [10, 20, 30, 40, 50, 60, 1, 2, 3, 4, 5, 6];
        let p = params(0b010, 3, 0, 0, 1 << 30, 3);
        let mut out = [0i8; 4];
        mean_int8(&p, &[2, 3, 2], &x, &mut out);
        // means: (10+30+50)/3=30 → 120 ; (20+40+60)/3=40 → 160 → 127 ; 3 → 12 ; 4 → 16
        assert_eq!(out, [120, 127, 12, 16]);
    }

    #[test]
    fn float_mean() {
        let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let p = MeanParams {
            axes_mask: 0b01,
            count: 2,
            input_zero_point: 0,
            output_zero_point: 0,
            multiplier: 0,
            shift: 0,
        };
        let mut out = [0f32; 3];
        mean_f32(&p, &[2, 3], &x, &mut out);
        assert_eq!(out, [2.5, 3.5, 4.5]);
    }

    #[test]
    fn empty_input_gives_zeros() {
        let p = params(0b10, 0, 5, 5, 1 << 30, 1);
        let mut out = [7i8; 2];
        mean_int8(&p, &[2, 0], &[], &mut out);
        assert_eq!(out, [0, 0]);
    }
}
