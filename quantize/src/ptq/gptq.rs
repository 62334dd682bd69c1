//! Data-aware rounding of int4 weights: GPTQ (Frantar et al., "OPTQ: Accurate Quantization for
//! Generative Pre-trained Transformers", ICLR 2023), for CONV_2D, DEPTHWISE_CONV_2D and
//! FULLY_CONNECTED.
//!
//! Rounding each weight to its nearest int4 value minimizes the error of the weights, not of the
//! layer's output. GPTQ rounds the inputs of an output channel one at a time and moves each
//! rounding error onto the not yet rounded weights of that channel, in proportion to how the
//! calibration inputs correlate (the inverse of `H = Σ x xᵀ` over every input patch `x` the
//! layer sees), so the layer's outputs on the calibration data stay close to the float ones.
//! The per-channel scales are fixed first ([`super::clipped_scales`]); GPTQ only chooses the
//! integers.
//!
//! [`gptq_int4`] returns the float graph with those layers' weights replaced by their int4
//! values times the scales: [`super::quantize_mixed`] then quantizes them to exactly these
//! integers: each channel's scale is recomputed from its largest value, so every channel keeps
//! a ±7 (a channel where GPTQ's integers have none is rounded to nearest instead, which has
//! one).

use crate::error::CompileError;
use crate::float::{default_device, FloatExecutor};
use crate::ir::{Conv2dOptions, Graph, Operator, Padding};

use super::{clipped_scales, f32s, Precision};

/// Dampening added to `H`'s diagonal, as a fraction of its mean (the paper's 1 %).
pub const DAMP: f64 = 0.01;

/// One layer's accumulated input statistics.
struct Layer {
    node: usize,
    /// Reduction length of one output channel.
    d: usize,
    /// `H` per group of output channels (one for CONV_2D / FC, one per channel for depthwise),
    /// row-major `d × d`.
    h: Vec<Vec<f64>>,
}

/// The window geometry of a convolution: NHWC input `in_hw × c`, `k` kernel, output `out_hw`;
/// `pad` = (top, left).
struct Window {
    in_hw: (usize, usize),
    c: usize,
    k: (usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
    pad: (usize, usize),
    out_hw: (usize, usize),
}

impl Window {
    /// For NHWC input shape `xs`, OHWI (or 1HWC) filter shape `ws`, output shape `os`.
    fn new(o: &Conv2dOptions, xs: &[usize], ws: &[usize], os: &[usize]) -> Window {
        Window {
            in_hw: (xs[1], xs[2]),
            c: xs[3],
            k: (ws[1], ws[2]),
            stride: (o.stride_h, o.stride_w),
            dilation: (o.dilation_h, o.dilation_w),
            pad: (
                leading_pad(o.padding, xs[1], ws[1], o.stride_h, o.dilation_h),
                leading_pad(o.padding, xs[2], ws[2], o.stride_w, o.dilation_w),
            ),
            out_hw: (os[1], os[2]),
        }
    }

    /// The input pixel (row-major index) kernel tap `(ky, kx)` of output `(oy, ox)` reads,
    /// `None` in the padding.
    fn pixel(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<usize> {
        let iy = (oy * self.stride.0 + ky * self.dilation.0).checked_sub(self.pad.0)?;
        let ix = (ox * self.stride.1 + kx * self.dilation.1).checked_sub(self.pad.1)?;
        (iy < self.in_hw.0 && ix < self.in_hw.1).then_some(iy * self.in_hw.1 + ix)
    }
}

/// The input patches of a layer.
enum Patches {
    /// Every output pixel reads a `kh × kw × c` window (OHWI order).
    Conv(Window),
    /// Depthwise: a `kh × kw` window of one input channel per output channel
    /// (`depth_multiplier` outputs per input channel).
    Depthwise(Window, usize),
    /// FULLY_CONNECTED: rows of `d` inputs.
    Rows,
}

fn leading_pad(padding: Padding, image: usize, filter: usize, stride: usize, dil: usize) -> usize {
    let eff = (filter - 1) * dil + 1;
    match padding {
        Padding::Valid => 0,
        Padding::Same => {
            let out = image.div_ceil(stride);
            ((out - 1) * stride + eff).saturating_sub(image) / 2
        }
    }
}

fn unsupported(index: usize, g: &Graph, reason: impl Into<String>) -> CompileError {
    CompileError::Unsupported {
        index,
        op: g.nodes[index].op.name().to_string(),
        reason: reason.into(),
    }
}

/// Replaces the weights of every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED node with
/// `per_node[i] == Precision::Int4Weights` by their GPTQ int4 rounding (times the scales of
/// [`clipped_scales`]), using the activations `float` computes on `samples` (each one vector per
/// graph input, as [`FloatExecutor::run`] takes them). Other nodes are unchanged.
///
/// Errors: a sample the float executor rejects; [`CompileError::Unsupported`] for a layer
/// whose shapes it cannot read (grouped convolutions, non-constant weights).
pub fn gptq_int4(
    float: &Graph,
    per_node: &[Precision],
    samples: &[Vec<Vec<f32>>],
) -> Result<Graph, CompileError> {
    let mut layers = Vec::new();
    let mut geometry = Vec::new();
    for (i, n) in float.nodes.iter().enumerate() {
        if per_node.get(i) != Some(&Precision::Int4Weights) {
            continue;
        }
        let (Some(Some(x)), Some(Some(w))) = (n.inputs.first(), n.inputs.get(1)) else {
            continue;
        };
        let xs = &float.tensors[*x].shape;
        let ws = &float.tensors[*w].shape;
        let out = n.outputs.first().map(|&o| float.tensors[o].shape.clone());
        let (patches, d, groups) = match (&n.op, xs.len(), ws.len(), out) {
            (Operator::Conv2d(o), 4, 4, Some(os)) if os.len() == 4 && ws[3] == xs[3] => (
                Patches::Conv(Window::new(o, xs, ws, &os)),
                ws[1] * ws[2] * ws[3],
                1,
            ),
            (Operator::DepthwiseConv2d(o), 4, 4, Some(os)) if os.len() == 4 => {
                let mult = o.depth_multiplier.max(1);
                if ws[3] != xs[3] * mult {
                    return Err(unsupported(i, float, "depthwise channels do not match"));
                }
                (
                    Patches::Depthwise(Window::new(o, xs, ws, &os), mult),
                    ws[1] * ws[2],
                    ws[3],
                )
            }
            (Operator::FullyConnected { .. }, _, 2, _) => (Patches::Rows, ws[1], 1),
            (Operator::Conv2d(_) | Operator::DepthwiseConv2d(_), ..) => {
                return Err(unsupported(
                    i,
                    float,
                    "GPTQ needs NHWC input and OHWI weights",
                ))
            }
            _ => continue,
        };
        layers.push(Layer {
            node: i,
            d,
            h: vec![vec![0.0; d * d]; groups],
        });
        geometry.push((*x, patches));
    }
    if layers.is_empty() {
        return Ok(float.clone());
    }
    let exec = FloatExecutor::new(float, default_device());
    let mut patch = Vec::new();
    for s in samples {
        let v = exec.run(s)?;
        for (layer, (x, p)) in layers.iter_mut().zip(&geometry) {
            let Some(x) = v[*x].as_deref() else { continue };
            accumulate(layer, p, x, &mut patch);
        }
    }
    let mut g = float.clone();
    for layer in &layers {
        let n = &float.nodes[layer.node];
        let Some(Some(wid)) = n.inputs.get(1).copied() else {
            continue;
        };
        let wt = &float.tensors[wid];
        let w = f32s(wt)
            .ok_or_else(|| unsupported(layer.node, float, "weights are not float32 constants"))?;
        let depthwise = matches!(n.op, Operator::DepthwiseConv2d(_));
        let axis = if depthwise { 3 } else { 0 };
        let scales = clipped_scales(&w, &wt.shape, axis, 7);
        let channels = wt.shape[axis];
        let mut out = w.clone();
        let mut row = vec![0.0f64; layer.d];
        for (c, &scale) in scales.iter().enumerate() {
            // The channel's weights in reduction order.
            let at = |j: usize| {
                if depthwise {
                    j * channels + c
                } else {
                    c * layer.d + j
                }
            };
            for (j, r) in row.iter_mut().enumerate() {
                *r = f64::from(w[at(j)]);
            }
            let h = &layer.h[if depthwise { c } else { 0 }];
            let mut q = round_channel(&row, h, f64::from(scale), 7.0);
            if q.iter().all(|v| v.abs() < 7) {
                // Keep a ±7 in the channel so that its scale is recomputed exactly (see the
                // module docs): nearest rounding has one, as the scale is at most max|w| / 7.
                q = row
                    .iter()
                    .map(|&v| (v / f64::from(scale)).round().clamp(-7.0, 7.0) as i32)
                    .collect();
            }
            for (j, v) in q.iter().enumerate() {
                out[at(j)] = (*v as f32) * scale;
            }
        }
        g.tensors[wid].data = Some(out.iter().flat_map(|v| v.to_le_bytes()).collect());
    }
    Ok(g)
}

/// Adds the patches of one sample's input `x` to `layer.h`.
fn accumulate(layer: &mut Layer, p: &Patches, x: &[f32], patch: &mut Vec<f64>) {
    let d = layer.d;
    let add = |h: &mut [f64], v: &[f64]| {
        for (i, &a) in v.iter().enumerate() {
            if a == 0.0 {
                continue;
            }
            let hr = &mut h[i * d..(i + 1) * d];
            for (hv, &b) in hr.iter_mut().zip(v) {
                *hv += a * b;
            }
        }
    };
    match *p {
        Patches::Rows => {
            for r in x.chunks_exact(d) {
                patch.clear();
                patch.extend(r.iter().map(|&v| f64::from(v)));
                add(&mut layer.h[0], patch);
            }
        }
        Patches::Conv(ref w) => {
            for oy in 0..w.out_hw.0 {
                for ox in 0..w.out_hw.1 {
                    patch.clear();
                    for ky in 0..w.k.0 {
                        for kx in 0..w.k.1 {
                            match w.pixel(oy, ox, ky, kx) {
                                Some(p) => patch.extend(
                                    x[p * w.c..(p + 1) * w.c].iter().map(|&v| f64::from(v)),
                                ),
                                None => patch.extend(std::iter::repeat_n(0.0, w.c)),
                            }
                        }
                    }
                    add(&mut layer.h[0], patch);
                }
            }
        }
        Patches::Depthwise(ref w, mult) => {
            for oy in 0..w.out_hw.0 {
                for ox in 0..w.out_hw.1 {
                    for ch in 0..w.c {
                        patch.clear();
                        for ky in 0..w.k.0 {
                            for kx in 0..w.k.1 {
                                let v = w.pixel(oy, ox, ky, kx).map_or(0.0, |p| x[p * w.c + ch]);
                                patch.push(f64::from(v));
                            }
                        }
                        for m in 0..mult {
                            add(&mut layer.h[ch * mult + m], patch);
                        }
                    }
                }
            }
        }
    }
}

/// GPTQ on one output channel: `w` (length `d`), `h` its `d × d` input statistics, `scale`
/// its quantization step, values in `[-qmax, qmax]`. Returns the integers.
fn round_channel(w: &[f64], h: &[f64], scale: f64, qmax: f64) -> Vec<i32> {
    let d = w.len();
    let quant = |v: f64| (v / scale).round().clamp(-qmax, qmax);
    let mut h = h.to_vec();
    let mut w = w.to_vec();
    // Inputs the data never excite: plain rounding (the paper zeroes them; rounding keeps the
    // float model's behaviour on inputs the calibration data did not show).
    let mean = (0..d).map(|i| h[i * d + i]).sum::<f64>() / d.max(1) as f64;
    if mean <= 0.0 {
        return w.iter().map(|&v| quant(v) as i32).collect();
    }
    for i in 0..d {
        if h[i * d + i] == 0.0 {
            h[i * d + i] = 1.0;
        }
        h[i * d + i] += DAMP * mean;
    }
    // U: the upper Cholesky factor of H⁻¹ (H⁻¹ = Uᵀ U), as the paper's Algorithm 1 uses it.
    let Some(u) = inverse_cholesky_upper(&h, d) else {
        return w.iter().map(|&v| quant(v) as i32).collect();
    };
    let mut q = vec![0i32; d];
    for j in 0..d {
        let qj = quant(w[j]);
        q[j] = qj as i32;
        let err = (w[j] - qj * scale) / u[j * d + j];
        for k in j + 1..d {
            w[k] -= err * u[j * d + k];
        }
    }
    q
}

/// The upper-triangular `U` with `Uᵀ U = H⁻¹` for symmetric positive definite `H` (`d × d`,
/// row-major); `None` if `H` is not positive definite.
fn inverse_cholesky_upper(h: &[f64], d: usize) -> Option<Vec<f64>> {
    // H = L Lᵀ.
    let l = cholesky_lower(h, d)?;
    // H⁻¹ = L⁻ᵀ L⁻¹: invert L (lower triangular).
    let mut li = vec![0.0f64; d * d];
    for i in 0..d {
        li[i * d + i] = 1.0 / l[i * d + i];
        for j in 0..i {
            let s: f64 = (j..i).map(|k| l[i * d + k] * li[k * d + j]).sum();
            li[i * d + j] = -s / l[i * d + i];
        }
    }
    let mut inv = vec![0.0f64; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = (i..d).map(|k| li[k * d + i] * li[k * d + j]).sum();
            inv[i * d + j] = s;
            inv[j * d + i] = s;
        }
    }
    // H⁻¹ = Uᵀ U with U upper: U = Lᵀ of H⁻¹'s lower Cholesky factor.
    let l2 = cholesky_lower(&inv, d)?;
    let mut u = vec![0.0f64; d * d];
    for i in 0..d {
        for j in 0..=i {
            u[j * d + i] = l2[i * d + j];
        }
    }
    Some(u)
}

/// The lower-triangular `L` with `L Lᵀ = A` for symmetric positive definite `A` (`d × d`,
/// row-major); `None` if `A` is not positive definite.
pub(crate) fn cholesky_lower(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0f64; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s = a[i * d + j] - (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum::<f64>();
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(state: &mut u64) -> f64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    /// `Uᵀ U` equals `H⁻¹`: `H · Uᵀ U = I`.
    #[test]
    fn inverse_cholesky_factor_inverts() {
        let mut s = 7u64;
        let d = 9;
        let x: Vec<f64> = (0..d * 30).map(|_| lcg(&mut s)).collect();
        let mut h = vec![0.0; d * d];
        for r in x.chunks_exact(d) {
            for i in 0..d {
                for j in 0..d {
                    h[i * d + j] += r[i] * r[j];
                }
            }
        }
        let u = inverse_cholesky_upper(&h, d).unwrap();
        for i in 0..d {
            for j in 0..d {
                let v: f64 = (0..d)
                    .map(|k| {
                        h[i * d + k] * (0..d).map(|m| u[m * d + k] * u[m * d + j]).sum::<f64>()
                    })
                    .sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((v - want).abs() < 1e-8, "({i},{j}) {v}");
            }
        }
    }

    /// On correlated inputs GPTQ's integers give a far smaller output error `Σ (x·(w − q s))²`
    /// than rounding to nearest over many random channels (≈ 0.17× in total here; GPTQ is
    /// greedy, so not on every channel), and stay in range.
    #[test]
    fn gptq_beats_nearest_rounding_on_the_output() {
        let mut s = 11u64;
        let d = 16;
        let (mut total_gptq, mut total_nearest) = (0.0, 0.0);
        for _ in 0..50 {
            // Inputs with a shared component (correlated, as neighbouring pixels are).
            let x: Vec<Vec<f64>> = (0..200)
                .map(|_| {
                    let common = lcg(&mut s);
                    (0..d).map(|_| common + 0.3 * lcg(&mut s)).collect()
                })
                .collect();
            let mut h = vec![0.0; d * d];
            for r in &x {
                for i in 0..d {
                    for j in 0..d {
                        h[i * d + j] += r[i] * r[j];
                    }
                }
            }
            let w: Vec<f64> = (0..d).map(|_| lcg(&mut s)).collect();
            let scale = w.iter().fold(0f64, |m, v| m.max(v.abs())) / 7.0;
            let q = round_channel(&w, &h, scale, 7.0);
            assert!(q.iter().all(|v| (-7..=7).contains(v)));
            let err = |q: &[f64]| -> f64 {
                x.iter()
                    .map(|r| {
                        let e: f64 = r
                            .iter()
                            .zip(&w)
                            .zip(q)
                            .map(|((a, b), c)| a * (b - c * scale))
                            .sum();
                        e * e
                    })
                    .sum()
            };
            let gq: Vec<f64> = q.iter().map(|&v| f64::from(v)).collect();
            let nq: Vec<f64> = w
                .iter()
                .map(|v| (v / scale).round().clamp(-7.0, 7.0))
                .collect();
            total_gptq += err(&gq);
            total_nearest += err(&nq);
        }
        let ratio = total_gptq / total_nearest;
        assert!(
            ratio < 0.5,
            "GPTQ output error {ratio:.3}× nearest rounding's"
        );
    }
}
