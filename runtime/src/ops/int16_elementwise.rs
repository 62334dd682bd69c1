//! Element-wise ops on int16 tensors (TFLite's 16x8 scheme): ADD, SUB, MUL (with numpy-style
//! broadcasting), RELU, RELU6, LOGISTIC and TANH.
//!
//! The arithmetic is TFLM's reference arithmetic for `int16_t` tensors:
//! - ADD / SUB (`reference_ops::AddElementwise` / `SubElementwise` and their broadcast forms,
//!   the general-scale path TFLM always takes for int16): the int8 recipe of
//!   [`super::arith`] with `left_shift` 15 instead of 20, clamped to the int16 activation range.
//!   mote requires zero points 0 (the 16x8 scheme's symmetric activations).
//! - MUL (`reference_integer_ops::MulElementwise<int16_t>`): the product rescaled by the Q31
//!   multiplier of `in1_scale · in2_scale / out_scale`; TFLM requires zero points 0.
//! - RELU / RELU6 (`ReluQuantized<int16_t>` / `Relu6Quantized<int16_t>`): as int8, over int16.
//! - LOGISTIC / TANH (`reference_integer_ops::Logistic` / `Tanh` for int16): the input is
//!   rescaled to 1/(3·4096) per unit (`(x · input_multiplier + round) >> input_left_shift`, or
//!   `x · 3` when the scale is a power of two: `input_multiplier` 0), and the result is
//!   interpolated linearly in a 256-entry table of `sigmoid(i / 24)` in unsigned Q0.16, which
//!   the compiler stores in the constant section ([`Sigmoid16Params::table_offset`]); TANH uses
//!   `tanh(x) = 2·sigmoid(2x) − 1` on the same table. Output scale 2⁻¹⁵, zero point 0.
//!
//! Every operation wraps where C's would (never panics); [`validate`] bounds the parameters so
//! that, for models TFLM accepts, nothing wraps.

use super::activation::{Relu6Params, ReluParams};
use super::arith::{broadcast_shape, ArithParams};
use super::{as_typed, as_typed_mut, OpCtx, OpKind, OpMem};
use crate::error::{Error, Location};
use crate::format::{DType, Storage, MAX_RANK};
use crate::quant::{
    multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_smaller_than_one_exp,
};

/// Entries of the sigmoid table of LOGISTIC / TANH (`sigmoid(i / 24)`, `i` in `0..256`).
pub const SIGMOID_TABLE_LEN: usize = 256;

/// Parameters of LOGISTIC and TANH with int16 tensors (TFLM's `OpDataLogistic` / tanh `OpData`
/// for int16).
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct Sigmoid16Params {
    /// Multiplier rescaling the input to 1/(3·4096) per unit, in `0..=32767`; 0 for a
    /// power-of-two input scale (the kernel then multiplies by `3 << input_left_shift`).
    pub input_multiplier: i32,
    /// Right shift after the multiplication, in `0..=31` (`0..=1` when `input_multiplier` is 0).
    pub input_left_shift: i32,
    /// Byte offset in the constant section of the [`SIGMOID_TABLE_LEN`] `u16` table
    /// `sigmoid(i / 24)` in unsigned Q0.16 (see the compiler's
    /// `lower::int16::sigmoid_table`).
    pub table_offset: u32,
    /// Zero.
    pub reserved: u32,
}

/// Whether op `ctx` is an element-wise op with an int16 input 0 (this module's).
pub(crate) fn applies(ctx: &OpCtx) -> bool {
    matches!(
        ctx.kind,
        OpKind::Add
            | OpKind::Sub
            | OpKind::Mul
            | OpKind::Relu
            | OpKind::Relu6
            | OpKind::Logistic
            | OpKind::Tanh
    ) && ctx.input_dtype(0) == Some(DType::Int16)
}

/// One int16 ADD (`left_shift` 15).
#[inline(always)]
pub fn add16(p: &ArithParams, x: i16, y: i16) -> i16 {
    let (a, b) = scaled(p, x, y);
    finish(p, a.wrapping_add(b))
}

/// One int16 SUB.
#[inline(always)]
pub fn sub16(p: &ArithParams, x: i16, y: i16) -> i16 {
    let (a, b) = scaled(p, x, y);
    finish(p, a.wrapping_sub(b))
}

/// One int16 MUL.
#[inline(always)]
pub fn mul16(p: &ArithParams, x: i16, y: i16) -> i16 {
    let a = p.input1_offset.wrapping_add(i32::from(x));
    let b = p.input2_offset.wrapping_add(i32::from(y));
    let v = p
        .output_offset
        .wrapping_add(multiply_by_quantized_multiplier(
            a.wrapping_mul(b),
            p.output_multiplier,
            p.output_shift,
        ));
    v.max(p.activation_min).min(p.activation_max) as i16
}

#[inline(always)]
fn scaled(p: &ArithParams, x: i16, y: i16) -> (i32, i32) {
    let shift = |v: i32| v.wrapping_mul(1i32.wrapping_shl(p.left_shift as u32));
    let s1 = shift(p.input1_offset.wrapping_add(i32::from(x)));
    let s2 = shift(p.input2_offset.wrapping_add(i32::from(y)));
    (
        multiply_by_quantized_multiplier_smaller_than_one_exp(
            s1,
            p.input1_multiplier,
            p.input1_shift,
        ),
        multiply_by_quantized_multiplier_smaller_than_one_exp(
            s2,
            p.input2_multiplier,
            p.input2_shift,
        ),
    )
}

#[inline(always)]
fn finish(p: &ArithParams, raw: i32) -> i16 {
    let v = multiply_by_quantized_multiplier_smaller_than_one_exp(
        raw,
        p.output_multiplier,
        p.output_shift,
    )
    .wrapping_add(p.output_offset);
    v.max(p.activation_min).min(p.activation_max) as i16
}

/// One int16 RELU.
#[inline(always)]
pub fn relu16(p: &ReluParams, x: i16) -> i16 {
    let v = p
        .output_offset
        .wrapping_add(multiply_by_quantized_multiplier(
            i32::from(x).wrapping_sub(p.input_offset),
            p.output_multiplier,
            p.output_shift,
        ));
    v.max(p.activation_min).min(p.activation_max) as i16
}

/// One int16 RELU6: the input code clamped to `[zero, six]` (TFLM does not requantize).
#[inline(always)]
pub fn relu6_16(p: &Relu6Params, x: i16) -> i16 {
    let v = i32::from(x);
    (if v > p.six {
        p.six
    } else if v < p.zero {
        p.zero
    } else {
        v
    }) as i16
}

/// The input rescaled for the table (`input_data` in TFLM's kernels).
#[inline(always)]
fn table_input(p: &Sigmoid16Params, x: i16) -> i32 {
    let (m, s) = if p.input_multiplier == 0 {
        (3i32.wrapping_shl(p.input_left_shift as u32), 0)
    } else {
        (p.input_multiplier, p.input_left_shift)
    };
    let round = if s > 0 {
        1i32.wrapping_shl((s - 1) as u32)
    } else {
        0
    };
    i32::from(x).wrapping_mul(m).wrapping_add(round) >> (s & 31)
}

#[inline(always)]
fn entry(table: &[u16], i: u32) -> u32 {
    u32::from(table.get(i as usize).copied().unwrap_or(0))
}

/// One int16 LOGISTIC with `table` the sigmoid table (output scale 2⁻¹⁵).
#[inline(always)]
pub fn logistic16(p: &Sigmoid16Params, table: &[u16], x: i16) -> i16 {
    let v = table_input(p, x);
    let a = v.unsigned_abs();
    let uh = a >> 9;
    let r = if uh >= 255 {
        0x7FFFu32 << 10
    } else {
        let (ua, ub) = (entry(table, uh), entry(table, uh + 1));
        (ua << 9).wrapping_add((a & 0x1FF).wrapping_mul(ub.wrapping_sub(ua)))
    };
    let r = if v >= 0 {
        r.wrapping_add(1 << 9)
    } else {
        (1u32 << 25).wrapping_sub(r).wrapping_add((1 << 9) - 1)
    };
    (r >> 10) as i16
}

/// One int16 TANH with `table` the sigmoid table (output scale 2⁻¹⁵).
#[inline(always)]
pub fn tanh16(p: &Sigmoid16Params, table: &[u16], x: i16) -> i16 {
    let v = table_input(p, x);
    let a = v.unsigned_abs();
    let uh = a >> 8;
    let r = if uh >= 255 {
        (0xFFFFu32 << 8) as i32
    } else {
        let (ua, ub) = (entry(table, uh), entry(table, uh + 1));
        (ua << 8).wrapping_add((a & 0xFF).wrapping_mul(ub.wrapping_sub(ua))) as i32
    };
    let r = if v >= 0 {
        r.wrapping_sub(1 << 23).wrapping_add(1 << 7)
    } else {
        r.wrapping_neg()
            .wrapping_add(1 << 23)
            .wrapping_add((1 << 7) - 1)
    };
    (r >> 8) as i16
}

fn shape_error(field: &'static str) -> Error {
    Error::InvalidField {
        at: Location::Arena,
        field,
    }
}

/// Applies `f` over `a` and `b` broadcast to `out_shape` (TFLite broadcasting, rank up to
/// [`MAX_RANK`]), writing `out` in row-major order. Errors (never panics) on sizes that do not
/// match their shapes or shapes that do not broadcast.
pub fn broadcast16<F: FnMut(i16, i16) -> i16>(
    a_shape: &[usize],
    a: &[i16],
    b_shape: &[usize],
    b: &[i16],
    out_shape: &[usize],
    out: &mut [i16],
    mut f: F,
) -> Result<(), Error> {
    let rank = out_shape.len();
    if rank > MAX_RANK || a_shape.len() > rank || b_shape.len() > rank {
        return Err(shape_error("broadcast rank"));
    }
    let count = |s: &[usize]| s.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if count(a_shape) != Some(a.len())
        || count(b_shape) != Some(b.len())
        || count(out_shape) != Some(out.len())
    {
        return Err(shape_error("broadcast operand size"));
    }
    if a.len() == out.len() && b.len() == out.len() {
        // Equal sizes over a broadcast-compatible shape: the same element order.
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = f(x, y);
        }
        return Ok(());
    }
    // Per output dimension (outermost first): extent and strides in a and b (0 = broadcast).
    let mut dims = [(1usize, 0usize, 0usize); MAX_RANK];
    let (mut sa, mut sb) = (1usize, 1usize);
    for (i, slot) in dims.iter_mut().take(rank).rev().enumerate() {
        let od = out_shape.iter().rev().nth(i).copied().unwrap_or(1);
        let ad = a_shape.iter().rev().nth(i).copied().unwrap_or(1);
        let bd = b_shape.iter().rev().nth(i).copied().unwrap_or(1);
        if (ad != od && ad != 1) || (bd != od && bd != 1) {
            return Err(shape_error("broadcast shape"));
        }
        *slot = (
            od,
            if ad == 1 { 0 } else { sa },
            if bd == 1 { 0 } else { sb },
        );
        sa = sa.wrapping_mul(ad); // bounded by a.len()
        sb = sb.wrapping_mul(bd); // bounded by b.len()
    }
    let mut idx = [0usize; MAX_RANK];
    let (mut ia, mut ib) = (0usize, 0usize);
    for o in out.iter_mut() {
        let x = *a.get(ia).ok_or(shape_error("broadcast index"))?;
        let y = *b.get(ib).ok_or(shape_error("broadcast index"))?;
        *o = f(x, y);
        // Odometer, innermost dimension first.
        for (&(n, da, db), k) in dims
            .iter()
            .take(rank)
            .rev()
            .zip(idx.iter_mut().take(rank).rev())
        {
            *k += 1;
            ia = ia.wrapping_add(da);
            ib = ib.wrapping_add(db);
            if *k < n {
                break;
            }
            *k = 0;
            ia = ia.wrapping_sub(da.wrapping_mul(n));
            ib = ib.wrapping_sub(db.wrapping_mul(n));
        }
    }
    Ok(())
}

fn dims_usize(d: &[u32]) -> ([usize; MAX_RANK], usize) {
    let mut out = [0usize; MAX_RANK];
    for (o, &x) in out.iter_mut().zip(d) {
        *o = x as usize;
    }
    (out, d.len().min(MAX_RANK))
}

const I16: core::ops::RangeInclusive<i32> = (i16::MIN as i32)..=(i16::MAX as i32);

fn check_act(ctx: &OpCtx, lo: i32, hi: i32) -> Result<(), Error> {
    if lo > hi || !I16.contains(&lo) || !I16.contains(&hi) {
        return Err(ctx.param_error("activation range (int16)"));
    }
    Ok(())
}

/// Checks an int16 element-wise op: int16 tensors, shapes, parameters in the ranges TFLM's
/// `Prepare` produces, and (LOGISTIC / TANH) a sigmoid table inside the constant section.
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    match ctx.kind {
        OpKind::Add | OpKind::Sub | OpKind::Mul => validate_binary(ctx),
        _ => validate_unary(ctx),
    }
}

fn validate_binary(ctx: &OpCtx) -> Result<(), Error> {
    let p: &ArithParams = ctx.params()?;
    if ctx.input_count() != 2 || ctx.desc.output_count != 1 {
        return Err(ctx.param_error("input_count"));
    }
    let (in1, in2, out) = (
        ctx.required_input(0)?,
        ctx.required_input(1)?,
        ctx.output(0)?,
    );
    for t in [in1, in2, out] {
        ctx.expect_dtype(t, DType::Int16)?;
    }
    let (d1, r1) = dims_usize(in1.1.dims());
    let (d2, r2) = dims_usize(in2.1.dims());
    let (rank, shape) = broadcast_shape(&d1[..r1], &d2[..r2])
        .ok_or(ctx.shape_error(in2.0, "a shape that broadcasts with input 1"))?;
    if out.1.dims().len() != rank
        || out
            .1
            .dims()
            .iter()
            .zip(&shape[..rank])
            .any(|(&o, &s)| o as usize != s)
    {
        return Err(ctx.shape_error(out.0, "the broadcast shape of the inputs"));
    }
    if [p.input1_offset, p.input2_offset, p.output_offset] != [0, 0, 0] {
        return Err(ctx.param_error("zero points (int16 activations are symmetric)"));
    }
    check_act(ctx, p.activation_min, p.activation_max)?;
    if p.output_multiplier < 0 {
        return Err(ctx.param_error("output_multiplier"));
    }
    if ctx.kind == OpKind::Mul {
        if !(-31..=30).contains(&p.output_shift) {
            return Err(ctx.param_error("output_shift"));
        }
        return Ok(());
    }
    if !(0..=15).contains(&p.left_shift) {
        return Err(ctx.param_error("left_shift (int16: at most 15)"));
    }
    for (m, s) in [
        (p.input1_multiplier, p.input1_shift),
        (p.input2_multiplier, p.input2_shift),
        (p.output_multiplier, p.output_shift),
    ] {
        if m < 0 || !(-31..=0).contains(&s) {
            return Err(ctx.param_error("multiplier/shift"));
        }
    }
    Ok(())
}

fn validate_unary(ctx: &OpCtx) -> Result<(), Error> {
    if ctx.input_count() != 1 || ctx.desc.output_count != 1 {
        return Err(ctx.param_error("input_count"));
    }
    let (input, output) = (ctx.required_input(0)?, ctx.output(0)?);
    ctx.expect_dtype(input, DType::Int16)?;
    ctx.expect_dtype(output, DType::Int16)?;
    if input.1.dims() != output.1.dims() {
        return Err(ctx.shape_error(output.0, "the shape of the input"));
    }
    match ctx.kind {
        OpKind::Relu => {
            let p: &ReluParams = ctx.params()?;
            if !I16.contains(&p.input_offset)
                || !I16.contains(&p.output_offset)
                || p.output_multiplier < 0
                || !(-31..=30).contains(&p.output_shift)
            {
                return Err(ctx.param_error("relu params"));
            }
            check_act(ctx, p.activation_min, p.activation_max)
        }
        OpKind::Relu6 => {
            let p: &Relu6Params = ctx.params()?;
            if !I16.contains(&p.zero) || !I16.contains(&p.six) {
                return Err(ctx.param_error("relu6 params"));
            }
            Ok(())
        }
        OpKind::Logistic | OpKind::Tanh => {
            let p: &Sigmoid16Params = ctx.params()?;
            let pot_shifts = if ctx.kind == OpKind::Logistic { 0 } else { 1 };
            let ok = match p.input_multiplier {
                0 => (0..=pot_shifts).contains(&p.input_left_shift),
                m => (1..=32767).contains(&m) && (0..=31).contains(&p.input_left_shift),
            };
            if !ok || p.reserved != 0 {
                return Err(ctx.param_error("logistic/tanh params (int16)"));
            }
            ctx.const_array::<u16>(p.table_offset, SIGMOID_TABLE_LEN)
                .map(|_| ())
        }
        _ => Err(Error::UnsupportedOp {
            op: ctx.index,
            kind: ctx.desc.kind,
        }),
    }
}

/// Whether the op runs in place: its input is the output's arena bytes.
fn in_place(ctx: &OpCtx) -> Result<bool, Error> {
    let (_, i) = ctx.required_input(0)?;
    let (_, o) = ctx.output(0)?;
    Ok(i.storage() == Some(Storage::Arena)
        && o.storage() == Some(Storage::Arena)
        && i.offset == o.offset
        && i.bytes == o.bytes
        && i.bytes > 0)
}

fn map16(input: Option<&[i16]>, out: &mut [i16], f: impl Fn(i16) -> i16) {
    match input {
        Some(src) => {
            for (o, &x) in out.iter_mut().zip(src) {
                *o = f(x);
            }
        }
        None => out.iter_mut().for_each(|x| *x = f(*x)),
    }
}

/// Runs an int16 element-wise op (unary ones in place when the planner shared the buffer).
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem) -> Result<(), Error> {
    match ctx.kind {
        OpKind::Add | OpKind::Sub | OpKind::Mul => {
            let p: &ArithParams = ctx.params()?;
            let (_, d1) = ctx.required_input(0)?;
            let (_, d2) = ctx.required_input(1)?;
            let (_, dout) = ctx.output(0)?;
            let (s1, r1) = dims_usize(d1.dims());
            let (s2, r2) = dims_usize(d2.dims());
            let (so, ro) = dims_usize(dout.dims());
            let a: &[i16] = as_typed(mem.required_input(0)?)?;
            let b: &[i16] = as_typed(mem.required_input(1)?)?;
            let out: &mut [i16] = as_typed_mut(mem.output)?;
            let (sa, sb, sout) = (&s1[..r1], &s2[..r2], &so[..ro]);
            match ctx.kind {
                OpKind::Add => broadcast16(sa, a, sb, b, sout, out, |x, y| add16(p, x, y)),
                OpKind::Sub => broadcast16(sa, a, sb, b, sout, out, |x, y| sub16(p, x, y)),
                _ => broadcast16(sa, a, sb, b, sout, out, |x, y| mul16(p, x, y)),
            }
        }
        _ => {
            let input: Option<&[i16]> = if in_place(ctx)? {
                None
            } else {
                Some(as_typed(mem.required_input(0)?)?)
            };
            let out: &mut [i16] = as_typed_mut(mem.output)?;
            if input.is_some_and(|i| i.len() != out.len()) {
                return Err(ctx.param_error("input size"));
            }
            match ctx.kind {
                OpKind::Relu => {
                    let p: &ReluParams = ctx.params()?;
                    map16(input, out, |x| relu16(p, x));
                }
                OpKind::Relu6 => {
                    let p: &Relu6Params = ctx.params()?;
                    map16(input, out, |x| relu6_16(p, x));
                }
                OpKind::Logistic | OpKind::Tanh => {
                    let p: &Sigmoid16Params = ctx.params()?;
                    let t = ctx.const_array::<u16>(p.table_offset, SIGMOID_TABLE_LEN)?;
                    if ctx.kind == OpKind::Logistic {
                        map16(input, out, |x| logistic16(p, t, x));
                    } else {
                        map16(input, out, |x| tanh16(p, t, x));
                    }
                }
                _ => {
                    return Err(Error::UnsupportedOp {
                        op: ctx.index,
                        kind: ctx.desc.kind,
                    })
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    /// The table the compiler stores (see `mote_quantize::lower::int16::sigmoid_table`).
    fn table() -> Vec<u16> {
        let f = |i: f64| 65536.0 / (1.0 + (-i / 24.0).exp());
        (0..SIGMOID_TABLE_LEN)
            .map(|i| {
                if i + 1 == SIGMOID_TABLE_LEN {
                    return u16::MAX;
                }
                let i = i as f64;
                let err = (f(i) + f(i + 1.0)) / 2.0 - f(i + 0.5);
                (f(i) - err / 2.0).round().min(65535.0) as u16
            })
            .collect()
    }

    #[test]
    fn logistic_and_tanh_follow_the_functions() {
        let t = table();
        // Input scale 2^-12 (power of two: multiplier 0, shift 0): x = k / 4096.
        let p = Sigmoid16Params {
            input_multiplier: 0,
            input_left_shift: 0,
            table_offset: 0,
            reserved: 0,
        };
        for k in (-32768i32..=32767).step_by(97) {
            let x = f64::from(k) / 4096.0;
            let l = f64::from(logistic16(&p, &t, k as i16)) / 32768.0;
            assert!(
                (l - 1.0 / (1.0 + (-x).exp())).abs() < 2e-4,
                "logistic({x}) = {l}"
            );
        }
        let p1 = Sigmoid16Params {
            input_left_shift: 1,
            ..p
        };
        for k in (-32768i32..=32767).step_by(89) {
            // Shift 1 with multiplier 0: x · 3 << 1 ... covers the tanh power-of-two case 2^-11.
            let x = f64::from(k) / 2048.0;
            let y = f64::from(tanh16(&p1, &t, k as i16)) / 32768.0;
            assert!((y - x.tanh()).abs() < 4e-4, "tanh({x}) = {y}");
        }
    }

    #[test]
    fn extreme_params_do_not_panic() {
        let t = table();
        for (m, s) in [(0, 31), (i32::MAX, 31), (i32::MIN, 0), (-1, 7)] {
            let p = Sigmoid16Params {
                input_multiplier: m,
                input_left_shift: s,
                table_offset: 0,
                reserved: 0,
            };
            for x in [i16::MIN, -1, 0, 1, i16::MAX] {
                let _ = logistic16(&p, &t, x);
                let _ = tanh16(&p, &t, x);
                let _ = logistic16(&p, &[], x);
            }
        }
        let p = ArithParams {
            input1_offset: i32::MIN,
            input2_offset: i32::MAX,
            output_offset: i32::MAX,
            left_shift: 40,
            input1_multiplier: i32::MAX,
            input1_shift: -40,
            input2_multiplier: i32::MIN,
            input2_shift: 40,
            output_multiplier: i32::MAX,
            output_shift: 31,
            activation_min: i32::MIN,
            activation_max: i32::MAX,
        };
        for x in [i16::MIN, 0, i16::MAX] {
            let _ = (add16(&p, x, x), sub16(&p, x, x), mul16(&p, x, x));
        }
    }

    /// Reference broadcasting by index arithmetic over the padded shapes.
    fn naive(a_s: &[usize], a: &[i16], b_s: &[usize], b: &[i16], o_s: &[usize]) -> Vec<i16> {
        let n: usize = o_s.iter().product();
        let r = o_s.len();
        let pad = |s: &[usize]| {
            let mut v = std::vec![1usize; r - s.len()];
            v.extend_from_slice(s);
            v
        };
        let (pa, pb) = (pad(a_s), pad(b_s));
        (0..n)
            .map(|mut flat| {
                let mut idx = std::vec![0usize; r];
                for d in (0..r).rev() {
                    idx[d] = flat % o_s[d];
                    flat /= o_s[d];
                }
                let off = |p: &[usize]| {
                    idx.iter()
                        .zip(p)
                        .fold(0, |acc, (&i, &d)| acc * d + if d == 1 { 0 } else { i })
                };
                a[off(&pa)].wrapping_sub(b[off(&pb)])
            })
            .collect()
    }

    #[test]
    fn broadcast_matches_naive_on_many_shapes() {
        let mut seed = 7u64;
        let mut rnd = |m: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % m
        };
        for _ in 0..300 {
            let r = 1 + rnd(5);
            let o: Vec<usize> = (0..r).map(|_| 1 + rnd(4)).collect();
            let pick = |rnd: &mut dyn FnMut(usize) -> usize| -> Vec<usize> {
                let k = rnd(r + 1);
                o[r - k..]
                    .iter()
                    .map(|&d| if rnd(2) == 0 { 1 } else { d })
                    .collect()
            };
            let (sa, sb) = (pick(&mut rnd), pick(&mut rnd));
            let Some((rank, shape)) = broadcast_shape(&sa, &sb) else {
                continue;
            };
            let os = &shape[..rank];
            let a: Vec<i16> = (0..sa.iter().product::<usize>())
                .map(|i| (i * 31) as i16)
                .collect();
            let b: Vec<i16> = (0..sb.iter().product::<usize>())
                .map(|i| (i * 7 + 3) as i16)
                .collect();
            let mut out = std::vec![0i16; os.iter().product()];
            broadcast16(&sa, &a, &sb, &b, os, &mut out, |x, y| x.wrapping_sub(y)).unwrap();
            assert_eq!(out, naive(&sa, &a, &sb, &b, os), "{sa:?} {sb:?}");
        }
        let mut out = [0i16; 4];
        assert!(broadcast16(&[3], &[1, 2, 3], &[4], &[0; 4], &[4], &mut out, |x, _| x).is_err());
    }
}
