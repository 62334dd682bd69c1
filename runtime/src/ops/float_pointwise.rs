//! float32 element-wise and row-wise ops around the float MAC ops ([`super::float`]): ADD, SUB,
//! MUL (with broadcasting), SOFTMAX, LOGISTIC, TANH, RELU and RELU6.
//!
//! The arithmetic of TFLM's float reference kernels: `x + y`, `x − y`, `x · y` then the fused
//! activation clamp; SOFTMAX per row of the last dimension as `exp((x − max)·β) / Σ`; LOGISTIC
//! `1 / (1 + exp(−x))`; TANH `tanh(x)` (`exp`, `tanh` from the `libm` crate, so the results do
//! not depend on the platform's C library). Chosen by dtype: input 0 [`DType::Float32`]
//! (`applies`); pooling, MEAN, RESHAPE, PAD, CONCATENATION, QUANTIZE and DEQUANTIZE have their
//! float32 kernels in their own families.
//!
//! Parameters: ADD/SUB/MUL [`FloatArithParams`], SOFTMAX [`FloatSoftmaxParams`], the
//! activations none (`params_len` 0).

use super::arith::broadcast_shape;
use super::{as_typed, as_typed_mut, OpCtx, OpKind, OpMem};
use crate::error::{Error, Location};
use crate::format::{DType, Storage, MAX_RANK};

/// Parameters of a float32 ADD, SUB or MUL.
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct FloatArithParams {
    /// Lower clamp of the fused activation (`-∞` for none).
    pub act_min: f32,
    /// Upper clamp of the fused activation (`+∞` for none), `act_min ≤ act_max`.
    pub act_max: f32,
}

/// Parameters of a float32 SOFTMAX.
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct FloatSoftmaxParams {
    /// The inverse temperature β (finite).
    pub beta: f32,
}

/// Whether op `ctx` is one of this module's kinds with float32 input 0.
pub(crate) fn applies(ctx: &OpCtx) -> bool {
    matches!(
        ctx.kind,
        OpKind::Add
            | OpKind::Sub
            | OpKind::Mul
            | OpKind::Softmax
            | OpKind::Logistic
            | OpKind::Tanh
            | OpKind::Relu
            | OpKind::Relu6
    ) && ctx.input_dtype(0) == Some(DType::Float32)
}

fn shape_error(field: &'static str) -> Error {
    Error::InvalidField {
        at: Location::Arena,
        field,
    }
}

/// Row-major strides of `shape` right-aligned to `rank` dimensions, 0 where it broadcasts.
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Option<[usize; MAX_RANK]> {
    let rank = out.len();
    if shape.len() > rank || rank > MAX_RANK {
        return None;
    }
    let mut strides = [0usize; MAX_RANK];
    let mut acc = 1usize;
    for i in 0..rank {
        let od = out[rank - 1 - i];
        let d = shape.iter().rev().nth(i).copied().unwrap_or(1);
        if d != od && d != 1 {
            return None;
        }
        strides[rank - 1 - i] = if d == 1 { 0 } else { acc };
        acc = acc.checked_mul(d)?;
    }
    Some(strides)
}

/// Applies `f` element-wise over `a` (`a_shape`) and `b` (`b_shape`) broadcast to `out_shape`
/// (TFLite rules, rank up to [`MAX_RANK`]), then clamps to `[lo, hi]`.
#[allow(clippy::too_many_arguments)]
pub fn broadcast_f32(
    a_shape: &[usize],
    a: &[f32],
    b_shape: &[usize],
    b: &[f32],
    out_shape: &[usize],
    out: &mut [f32],
    (lo, hi): (f32, f32),
    f: impl Fn(f32, f32) -> f32,
) -> Result<(), Error> {
    let count = |s: &[usize]| s.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if count(a_shape) != Some(a.len())
        || count(b_shape) != Some(b.len())
        || count(out_shape) != Some(out.len())
    {
        return Err(shape_error("float broadcast operand size"));
    }
    let rank = out_shape.len();
    let (Some(sa), Some(sb)) = (
        broadcast_strides(a_shape, out_shape),
        broadcast_strides(b_shape, out_shape),
    ) else {
        return Err(shape_error("float broadcast shape"));
    };
    let mut idx = [0usize; MAX_RANK];
    let (mut ia, mut ib) = (0usize, 0usize);
    for o in out.iter_mut() {
        let x = a.get(ia).copied().unwrap_or(0.0);
        let y = b.get(ib).copied().unwrap_or(0.0);
        let v = f(x, y);
        let v = if v < lo { lo } else { v };
        *o = if v > hi { hi } else { v };
        // Advance the odometer, innermost dimension first.
        for d in (0..rank).rev() {
            let (n, da, db) = (
                out_shape.get(d).copied().unwrap_or(1),
                sa.get(d).copied().unwrap_or(0),
                sb.get(d).copied().unwrap_or(0),
            );
            let Some(k) = idx.get_mut(d) else { break };
            *k += 1;
            ia += da;
            ib += db;
            if *k < n {
                break;
            }
            *k = 0;
            ia -= da * n;
            ib -= db * n;
        }
    }
    Ok(())
}

/// float32 SOFTMAX over rows of `depth` elements (TFLM `reference_ops::Softmax`).
pub fn softmax_f32(beta: f32, depth: usize, input: &[f32], output: &mut [f32]) {
    if depth == 0 {
        return;
    }
    for (x, y) in input
        .chunks_exact(depth)
        .zip(output.chunks_exact_mut(depth))
    {
        let max = x.iter().copied().fold(f32::MIN, f32::max);
        let mut sum = 0.0f32;
        for (o, &v) in y.iter_mut().zip(x) {
            *o = libm::expf((v - max) * beta);
            sum += *o;
        }
        for o in y.iter_mut() {
            *o /= sum;
        }
    }
}

/// float32 LOGISTIC of one element: `1 / (1 + exp(−x))`.
#[inline]
pub fn logistic_f32(x: f32) -> f32 {
    1.0 / (1.0 + libm::expf(-x))
}

/// float32 TANH of one element.
#[inline]
pub fn tanh_f32(x: f32) -> f32 {
    libm::tanhf(x)
}

/// float32 RELU of one element (`max(x, 0)`).
#[inline]
pub fn relu_f32(x: f32) -> f32 {
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

/// float32 RELU6 of one element (`min(max(x, 0), 6)`).
#[inline]
pub fn relu6_f32(x: f32) -> f32 {
    let x = relu_f32(x);
    if x > 6.0 {
        6.0
    } else {
        x
    }
}

fn dims_usize(d: &[u32]) -> ([usize; MAX_RANK], usize) {
    let mut out = [0usize; MAX_RANK];
    for (o, &x) in out.iter_mut().zip(d) {
        *o = x as usize;
    }
    (out, d.len().min(MAX_RANK))
}

/// Checks a float32 ADD/SUB/MUL, SOFTMAX or activation op: float32 tensors, shapes, params.
pub(crate) fn validate(ctx: &OpCtx) -> Result<(), Error> {
    let binary = matches!(ctx.kind, OpKind::Add | OpKind::Sub | OpKind::Mul);
    let inputs = if binary { 2 } else { 1 };
    if ctx.input_count() != inputs || ctx.desc.output_count != 1 {
        return Err(ctx.param_error("input_count / output_count"));
    }
    let out = ctx.output(0)?;
    ctx.expect_dtype(out, DType::Float32)?;
    for k in 0..inputs {
        ctx.expect_dtype(ctx.required_input(k)?, DType::Float32)?;
    }
    let in1 = ctx.required_input(0)?;
    match ctx.kind {
        OpKind::Add | OpKind::Sub | OpKind::Mul => {
            let p: &FloatArithParams = ctx.params()?;
            if p.act_min.partial_cmp(&p.act_max).is_none_or(|o| o.is_gt()) {
                return Err(ctx.param_error("activation range (float: act_min <= act_max)"));
            }
            let in2 = ctx.required_input(1)?;
            let (d1, r1) = dims_usize(in1.1.dims());
            let (d2, r2) = dims_usize(in2.1.dims());
            let (rank, shape) = broadcast_shape(&d1[..r1], &d2[..r2])
                .ok_or(ctx.shape_error(in2.0, "a shape that broadcasts with input 1"))?;
            let (o, r) = dims_usize(out.1.dims());
            if o.get(..r).is_none() || o.get(..r) != shape.get(..rank) {
                return Err(ctx.shape_error(out.0, "the broadcast shape of the inputs"));
            }
        }
        OpKind::Softmax => {
            let p: &FloatSoftmaxParams = ctx.params()?;
            if !p.beta.is_finite() {
                return Err(ctx.param_error("beta (finite)"));
            }
            if in1.1.dims() != out.1.dims() || in1.1.dims().last().is_none_or(|&d| d == 0) {
                return Err(ctx.shape_error(out.0, "the input's shape, last dimension non-zero"));
            }
        }
        _ => {
            if !ctx.params.is_empty() {
                return Err(ctx.param_error("params_len (float activations have none)"));
            }
            if in1.1.bytes != out.1.bytes {
                return Err(ctx.shape_error(out.0, "as many elements as the input"));
            }
        }
    }
    Ok(())
}

/// Whether the planner placed the output of a unary op on its input's bytes.
fn in_place(ctx: &OpCtx) -> Result<bool, Error> {
    let (_, i) = ctx.required_input(0)?;
    let (_, o) = ctx.output(0)?;
    Ok(i.storage() == Some(Storage::Arena)
        && o.storage() == Some(Storage::Arena)
        && i.offset == o.offset
        && i.bytes == o.bytes
        && i.bytes > 0)
}

/// Runs a float32 ADD/SUB/MUL, SOFTMAX or activation op (activations in place when the planner
/// shared the buffer).
pub(crate) fn eval(ctx: &OpCtx, mem: OpMem) -> Result<(), Error> {
    match ctx.kind {
        OpKind::Add | OpKind::Sub | OpKind::Mul => {
            let p: &FloatArithParams = ctx.params()?;
            let (_, d1) = ctx.required_input(0)?;
            let (_, d2) = ctx.required_input(1)?;
            let (_, dout) = ctx.output(0)?;
            let (s1, r1) = dims_usize(d1.dims());
            let (s2, r2) = dims_usize(d2.dims());
            let (so, ro) = dims_usize(dout.dims());
            let a: &[f32] = as_typed(mem.required_input(0)?)?;
            let b: &[f32] = as_typed(mem.required_input(1)?)?;
            let out: &mut [f32] = as_typed_mut(mem.output)?;
            let (a_s, b_s, o_s) = (&s1[..r1], &s2[..r2], &so[..ro]);
            let range = (p.act_min, p.act_max);
            match ctx.kind {
                OpKind::Add => broadcast_f32(a_s, a, b_s, b, o_s, out, range, |x, y| x + y),
                OpKind::Sub => broadcast_f32(a_s, a, b_s, b, o_s, out, range, |x, y| x - y),
                _ => broadcast_f32(a_s, a, b_s, b, o_s, out, range, |x, y| x * y),
            }
        }
        OpKind::Softmax => {
            let p: &FloatSoftmaxParams = ctx.params()?;
            let (_, d) = ctx.required_input(0)?;
            let depth = d.dims().last().copied().unwrap_or(0) as usize;
            let x: &[f32] = as_typed(mem.required_input(0)?)?;
            softmax_f32(p.beta, depth, x, as_typed_mut(mem.output)?);
            Ok(())
        }
        _ => {
            let f: fn(f32) -> f32 = match ctx.kind {
                OpKind::Logistic => logistic_f32,
                OpKind::Tanh => tanh_f32,
                OpKind::Relu => relu_f32,
                OpKind::Relu6 => relu6_f32,
                _ => {
                    return Err(Error::UnsupportedOp {
                        op: ctx.index,
                        kind: ctx.desc.kind,
                    })
                }
            };
            if in_place(ctx)? {
                for v in as_typed_mut::<f32>(mem.output)?.iter_mut() {
                    *v = f(*v);
                }
            } else {
                let x: &[f32] = as_typed(mem.required_input(0)?)?;
                for (o, &v) in as_typed_mut::<f32>(mem.output)?.iter_mut().zip(x) {
                    *o = f(v);
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::super::conv::tests::{Harness, Rng};
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn to_f32s(b: &[u8]) -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    fn floats(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| (rng.range(-1000, 1000) as f32 / 1000.0) * scale)
            .collect()
    }

    #[test]
    fn arithmetic_broadcasts_like_a_naive_reference() {
        let mut rng = Rng(0xADD_F32);
        for case in 0..300 {
            let rank = rng.range(1, 4) as usize;
            let out: Vec<usize> = (0..rank).map(|_| rng.range(1, 4) as usize).collect();
            // Each operand: a suffix of the output shape with some dimensions set to 1.
            let operand = |rng: &mut Rng| -> Vec<usize> {
                let r = rng.range(0, rank as i64) as usize;
                out[rank - r..]
                    .iter()
                    .map(|&d| if rng.range(0, 2) == 0 { 1 } else { d })
                    .collect()
            };
            let (sa, sb) = (operand(&mut rng), operand(&mut rng));
            // The output is exactly the broadcast shape of the two.
            let Some((r, bs)) = broadcast_shape(&sa, &sb) else {
                continue;
            };
            let out = bs[..r].to_vec();
            let a = floats(&mut rng, sa.iter().product(), 5.0);
            let b = floats(&mut rng, sb.iter().product(), 5.0);
            let kind = [OpKind::Add, OpKind::Sub, OpKind::Mul][case % 3];
            let range = if case % 2 == 0 {
                (f32::NEG_INFINITY, f32::INFINITY)
            } else {
                (-1.0, 2.5)
            };
            let u = |s: &[usize]| s.iter().map(|&d| d as u32).collect::<Vec<u32>>();
            let mut h = Harness::new(kind);
            h.arena_input(&u(&sa), DType::Float32, &f32_bytes(&a));
            h.arena_input(&u(&sb), DType::Float32, &f32_bytes(&b));
            h.set_output(&u(&out), DType::Float32);
            h.set_params(&FloatArithParams {
                act_min: range.0,
                act_max: range.1,
            });
            let got = to_f32s(&h.run().unwrap_or_else(|e| panic!("case {case}: {e:?}")));
            // Naive: unravel each output index, pick each operand's element.
            let at = |s: &[usize], idx: &[usize]| {
                let off = idx.len() - s.len();
                s.iter().enumerate().fold(0, |acc, (k, &d)| {
                    acc * d + if d == 1 { 0 } else { idx[off + k] }
                })
            };
            for (i, &g) in got.iter().enumerate() {
                let mut idx = std::vec![0usize; r];
                let mut rem = i;
                for k in (0..r).rev() {
                    idx[k] = rem % out[k];
                    rem /= out[k];
                }
                let (x, y) = (a[at(&sa, &idx)], b[at(&sb, &idx)]);
                let v = match kind {
                    OpKind::Add => x + y,
                    OpKind::Sub => x - y,
                    _ => x * y,
                };
                assert_eq!(g, v.max(range.0).min(range.1), "case {case} element {i}");
            }
        }
    }

    #[test]
    fn softmax_and_activations_match_f64() {
        let mut rng = Rng(0x50F7_3A11);
        for case in 0..50 {
            let (rows, depth) = (rng.range(1, 4) as usize, rng.range(1, 20) as usize);
            let x = floats(&mut rng, rows * depth, 8.0);
            let beta = [1.0f32, 0.5, 2.0][case % 3];
            let mut h = Harness::new(OpKind::Softmax);
            h.arena_input(&[rows as u32, depth as u32], DType::Float32, &f32_bytes(&x));
            h.set_output(&[rows as u32, depth as u32], DType::Float32);
            h.set_params(&FloatSoftmaxParams { beta });
            let got = to_f32s(&h.run().unwrap());
            for r in 0..rows {
                let row = &x[r * depth..(r + 1) * depth];
                let max = row.iter().fold(f64::MIN, |m, &v| m.max(f64::from(v)));
                let e: Vec<f64> = row
                    .iter()
                    .map(|&v| ((f64::from(v) - max) * f64::from(beta)).exp())
                    .collect();
                let sum: f64 = e.iter().sum();
                for (k, ev) in e.iter().enumerate() {
                    let g = f64::from(got[r * depth + k]);
                    assert!(
                        (g - ev / sum).abs() < 1e-6,
                        "case {case}: {g} vs {}",
                        ev / sum
                    );
                }
            }
        }
        let x = [-20.0f32, -6.5, -1.0, -0.0, 0.25, 3.0, 6.0, 7.5, 40.0];
        for kind in [OpKind::Logistic, OpKind::Tanh, OpKind::Relu, OpKind::Relu6] {
            let mut h = Harness::new(kind);
            h.arena_input(&[9], DType::Float32, &f32_bytes(&x));
            h.set_output(&[9], DType::Float32);
            // Not on the input's bytes (the harness places outputs at offset 0): not in place.
            h.tensors[1].offset = 64;
            let got = to_f32s(&h.run().unwrap());
            for (&g, &v) in got.iter().zip(&x) {
                let v = f64::from(v);
                let want = match kind {
                    OpKind::Logistic => 1.0 / (1.0 + (-v).exp()),
                    OpKind::Tanh => v.tanh(),
                    OpKind::Relu => v.max(0.0),
                    _ => v.clamp(0.0, 6.0),
                };
                assert!((f64::from(g) - want).abs() < 1e-6, "{kind:?}({v}) = {g}");
            }
        }
    }

    #[test]
    fn misuse_is_refused() {
        // Mismatched element types, params on an activation, an output of the wrong shape.
        let mut h = Harness::new(OpKind::Add);
        h.arena_input(&[2], DType::Float32, &f32_bytes(&[1.0, 2.0]));
        h.arena_input(&[2], DType::Int8, &[1, 2]);
        h.set_output(&[2], DType::Float32);
        h.set_params(&FloatArithParams {
            act_min: f32::NEG_INFINITY,
            act_max: f32::INFINITY,
        });
        assert!(matches!(
            h.run(),
            Err(Error::ShapeMismatch { tensor: 1, .. })
        ));
        let mut h = Harness::new(OpKind::Add);
        h.arena_input(&[2], DType::Float32, &f32_bytes(&[1.0, 2.0]));
        h.arena_input(&[3], DType::Float32, &f32_bytes(&[1.0, 2.0, 3.0]));
        h.set_output(&[3], DType::Float32);
        h.set_params(&FloatArithParams {
            act_min: 0.0,
            act_max: 1.0,
        });
        assert!(h.run().is_err());
        let mut h = Harness::new(OpKind::Relu);
        h.arena_input(&[2], DType::Float32, &f32_bytes(&[1.0, 2.0]));
        h.set_output(&[2], DType::Float32);
        h.set_params(&FloatSoftmaxParams { beta: 1.0 });
        assert!(matches!(h.run(), Err(Error::InvalidField { .. })));
        let mut h = Harness::new(OpKind::Softmax);
        h.arena_input(&[2], DType::Float32, &f32_bytes(&[1.0, 2.0]));
        h.set_output(&[2], DType::Float32);
        h.set_params(&FloatSoftmaxParams { beta: f32::NAN });
        assert!(matches!(h.run(), Err(Error::InvalidField { .. })));
    }
}
