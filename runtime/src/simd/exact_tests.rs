//! The shared property test: every SIMD kernel this machine runs, on random shapes and
//! parameters, gives exactly the bytes of the portable reference kernel.
//!
//! [`for_each_isa`] runs a check once per available tier (and reports which ran); each `proptest!`
//! below generates a random case, runs the reference kernel once and every tier's fast path, and
//! compares byte for byte.

extern crate std;
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;

/// Runs `f` with every tier this CPU has (best first).
pub(crate) fn for_each_isa(mut f: impl FnMut(Isa)) {
    for isa in Isa::available().into_iter().flatten() {
        f(isa);
    }
}

/// A random TFLite-style multiplier (≥ 0; mostly in [2³⁰, 2³¹), often a power of two so that
/// both rounding steps meet exact ties, sometimes 0 or small) and shift.
pub(crate) fn quant_strategy() -> impl Strategy<Value = (i32, i32)> {
    (
        prop_oneof![
            6 => (1i32 << 30)..=i32::MAX,
            3 => (20u32..=30).prop_map(|b| 1i32 << b),
            1 => Just(0i32),
            1 => 0i32..=(1 << 30),
        ],
        prop_oneof![8 => -14i32..=2, 1 => -31i32..=30],
    )
}

/// Per-channel `(multipliers, shifts)` for `n` channels: anything, or (as most layers) every
/// shift a right shift, which lets the AVX-512 output stage round in one step.
pub(crate) fn channel_quant(n: usize) -> impl Strategy<Value = (Vec<i32>, Vec<i32>)> {
    prop_oneof![
        proptest::collection::vec(quant_strategy(), n),
        proptest::collection::vec(quant_strategy().prop_map(|(m, s)| (m, s.clamp(-13, -1))), n),
    ]
    .prop_map(|v| v.into_iter().unzip())
}

/// An activation range `(min, max)` within int8.
pub(crate) fn act_range() -> impl Strategy<Value = (i32, i32)> {
    prop_oneof![
        3 => Just((-128, 127)),
        1 => (-128i32..=127).prop_flat_map(|lo| (Just(lo), lo..=127)),
    ]
}

/// `len` int8 values, full range (weights too: TFLM accepts −128).
pub(crate) fn bytes(len: usize) -> impl Strategy<Value = Vec<i8>> {
    proptest::collection::vec(any::<i8>(), len)
}

/// A bias: small (realistic) or anything (exercises the wrapping accumulator).
pub(crate) fn bias(len: usize) -> impl Strategy<Value = Vec<i32>> {
    prop_oneof![
        3 => proptest::collection::vec(-100_000i32..=100_000, len),
        1 => proptest::collection::vec(any::<i32>(), len),
    ]
}

#[derive(Debug, Clone)]
struct GemmCase {
    rows: usize,
    n: usize,
    k: usize,
    a: Vec<i8>,
    w: Vec<i8>,
    bias: Vec<i32>,
    mult: Vec<i32>,
    shift: Vec<i32>,
    per_tensor: bool,
    out_off: i32,
    act: (i32, i32),
}

fn gemm_case() -> impl Strategy<Value = GemmCase> {
    (
        prop_oneof![3 => 1usize..=20, 1 => Just(1usize)],
        prop_oneof![3 => 1usize..=70, 1 => 71usize..=160],
        // Sometimes 45 to 60 steps: around the AVX-512 16-output kernel's limit (48) for
        // arranging its pair registers once per call.
        prop_oneof![6 => 1usize..=80, 1 => 177usize..=240],
        any::<bool>(),
    )
        .prop_flat_map(|(rows, n, k, per_tensor)| {
            let nq = if per_tensor { 1 } else { n };
            (
                Just((rows, n, k, per_tensor)),
                bytes(rows * k),
                bytes(n * k),
                bias(n),
                channel_quant(nq),
                -128i32..=127,
                act_range(),
            )
        })
        .prop_map(
            |((rows, n, k, per_tensor), a, w, bias, (mult, shift), out_off, act)| GemmCase {
                rows,
                n,
                k,
                a,
                w,
                bias,
                mult,
                shift,
                per_tensor,
                out_off,
                act,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The matrix kernel of every tier equals a direct transcription of its definition, for both
    /// activation encodings, plain and with row lines and step offsets (implicit im2col).
    #[test]
    fn gemm_matches_definition(c in gemm_case(), width in 1usize..=7, gap in 0usize..=9, table in any::<bool>(), run in 1usize..=4) {
        let steps = k_steps(c.k);
        let mut packed = vec![0i8; packed_len(c.n, c.k).unwrap()];
        pack_weights(&c.w, c.n, c.k, &mut packed).unwrap();
        // Rows of `width` per line; when `table`, each row's steps come in runs of `run`
        // adjacent ones (a filter row's bytes), `gap` bytes between runs.
        let gap = if table { gap } else { 0 };
        let step_off: Vec<u32> = (0..steps)
            .map(|s| ((s / run) * (run * BLOCK_K + gap) + (s % run) * BLOCK_K) as u32)
            .collect();
        let row_len = step_off.last().map_or(0, |&o| o as usize + BLOCK_K);
        let x_stride = row_len + 3;
        let y_stride = width * x_stride + gap;
        let offset = |r: usize| (r / width) * y_stride + (r % width) * x_stride;
        let out_stride = c.n + 5;
        for enc in [Encoding::Signed, Encoding::Unsigned] {
            let mut data = vec![0xA5u8; offset(c.rows - 1) + row_len + 2];
            for r in 0..c.rows {
                for kk in 0..c.k {
                    let v = c.a[r * c.k + kk];
                    let at = offset(r) + step_off[kk / BLOCK_K] as usize + kk % BLOCK_K;
                    data[at] = match enc {
                        Encoding::Signed => v as u8,
                        Encoding::Unsigned => (v as u8) ^ 0x80,
                    };
                }
            }
            let q = Requant {
                bias: Some(&c.bias),
                multipliers: &c.mult,
                shifts: &c.shift,
                output_offset: c.out_off,
                act_min: c.act.0,
                act_max: c.act.1,
            };
            // The definition, with the value each encoding stands for.
            let mut want = vec![0x55i8; (c.rows - 1) * out_stride + c.n];
            for r in 0..c.rows {
                for o in 0..c.n {
                    let mut acc = c.bias[o];
                    for kk in 0..c.k {
                        let x = match enc {
                            Encoding::Signed => i32::from(c.a[r * c.k + kk]),
                            Encoding::Unsigned => i32::from(c.a[r * c.k + kk]) + 128,
                        };
                        acc = acc.wrapping_add(x * i32::from(c.w[o * c.k + kk]));
                    }
                    want[r * out_stride + o] = q.apply(acc, o);
                }
            }
            // Padding steps past k read bytes the zero weights ignore.
            let a = MatrixA {
                data: &data,
                first: 0,
                rows: c.rows,
                width,
                x_stride,
                y_stride,
                k_steps: steps,
                k_offsets: if table { Some(&step_off) } else { None },
            };
            let mut got = vec![0x55i8; want.len()];
            gemm_portable(enc, &a, &packed, c.n, &q, &mut got, out_stride);
            prop_assert_eq!(&got, &want, "portable, {:?}", enc);
            // A window starting at row 1 equals the tail.
            if c.rows > 1 {
                let sub = MatrixA { first: 1, rows: c.rows - 1, ..a };
                let mut got = vec![0x55i8; want.len() - out_stride];
                gemm_portable(enc, &sub, &packed, c.n, &q, &mut got, out_stride);
                prop_assert_eq!(&got[..], &want[out_stride..], "portable, first row 1");
            }
            for_each_isa(|isa| {
                if isa.tier().encoding() != enc {
                    return;
                }
                got.iter_mut().for_each(|v| *v = 0x55);
                gemm(isa, &a, &packed, c.n, &q, &mut got, out_stride).unwrap();
                assert_eq!(&got, &want, "{}", isa.name());
                // One byte short of the farthest read is refused.
                let short = MatrixA { data: &data[..offset(c.rows - 1) + row_len - 1], ..a };
                assert!(gemm(isa, &short, &packed, c.n, &q, &mut got, out_stride).is_err());
            });
        }
        let _ = c.per_tensor;
    }
}

#[test]
fn reports_tiers() {
    let names: Vec<&str> = Isa::available()
        .into_iter()
        .flatten()
        .map(Isa::name)
        .collect();
    std::eprintln!("SIMD tiers on this machine: {names:?}");
}

// ---------------------------------------------------------------------------------------------
// CONV_2D and FULLY_CONNECTED: the fast paths (packed weights, folded bias, staging) against the
// reference kernels.

use crate::ops::arith::{add_element, ArithParams};
use crate::ops::conv::{
    conv2d_int8, conv2d_int8_fast, conv_packed, conv_packed_in, expand_filter, AddEpilogue, ConvIo,
    ConvParams, PackedFilter, Segments, LAYOUT_PACKED,
};
use crate::ops::fully_connected::{
    fully_connected_int8, fully_connected_int8_fast, FullyConnectedParams,
};

/// A window geometry along one axis: `(in, filter, stride, dilation, pad_before, out)`.
fn axis() -> impl Strategy<Value = (usize, usize, usize, usize, usize, usize)> {
    (1usize..=9, 1usize..=5, 1usize..=3, 1usize..=3)
        .prop_flat_map(|(input, filter, stride, dil)| {
            let eff = (filter - 1) * dil + 1;
            (Just((input, filter, stride, dil)), 0..eff, 0..eff)
        })
        .prop_filter_map(
            "empty output",
            |((input, filter, stride, dil), before, after)| {
                let eff = (filter - 1) * dil + 1;
                let span = (input + before + after).checked_sub(eff)?;
                Some((input, filter, stride, dil, before, span / stride + 1))
            },
        )
}

/// Everything a window op (CONV_2D, DEPTHWISE_CONV_2D) needs, with random values.
#[derive(Debug, Clone)]
pub(crate) struct WindowCase {
    pub(crate) batches: usize,
    pub(crate) h: (usize, usize, usize, usize, usize, usize),
    pub(crate) w: (usize, usize, usize, usize, usize, usize),
    pub(crate) in_c: usize,
    pub(crate) out_c: usize,
    pub(crate) input: Vec<i8>,
    pub(crate) filter: Vec<i8>,
    pub(crate) bias: Option<Vec<i32>>,
    pub(crate) mult: Vec<i32>,
    pub(crate) shift: Vec<i32>,
    pub(crate) zp_in: i32,
    pub(crate) zp_out: i32,
    pub(crate) act: (i32, i32),
}

impl WindowCase {
    pub(crate) fn input_shape(&self) -> [usize; 4] {
        [self.batches, self.h.0, self.w.0, self.in_c]
    }
    pub(crate) fn output_shape(&self) -> [usize; 4] {
        [self.batches, self.h.5, self.w.5, self.out_c]
    }
}

/// A random window case with `in_c` input channels and `out_c(in_c)` outputs, filter
/// `filter_len(out_c, f_h, f_w, in_c)` bytes.
pub(crate) fn window_case(
    in_c: impl Strategy<Value = usize>,
    out_c: impl Fn(usize) -> BoxedStrategy<usize>,
    filter_len: fn(usize, usize, usize, usize) -> usize,
) -> impl Strategy<Value = WindowCase> {
    window_case_axes(axis(), axis(), in_c, out_c, filter_len)
}

/// [`window_case`] with the geometry of each axis from `h_axis` and `w_axis`.
pub(crate) fn window_case_axes(
    h_axis: impl Strategy<Value = (usize, usize, usize, usize, usize, usize)>,
    w_axis: impl Strategy<Value = (usize, usize, usize, usize, usize, usize)>,
    in_c: impl Strategy<Value = usize>,
    out_c: impl Fn(usize) -> BoxedStrategy<usize>,
    filter_len: fn(usize, usize, usize, usize) -> usize,
) -> impl Strategy<Value = WindowCase> {
    (1usize..=2, h_axis, w_axis, in_c)
        .prop_flat_map(move |(batches, h, w, in_c)| (Just((batches, h, w, in_c)), out_c(in_c)))
        .prop_flat_map(move |((batches, h, w, in_c), out_c)| {
            let n_in = batches * h.0 * w.0 * in_c;
            let n_f = filter_len(out_c, h.1, w.1, in_c);
            (
                Just((batches, h, w, in_c, out_c)),
                bytes(n_in),
                bytes(n_f),
                proptest::option::of(bias(out_c)),
                channel_quant(out_c),
                -128i32..=127,
                -128i32..=127,
                act_range(),
            )
        })
        .prop_map(
            |(
                (batches, h, w, in_c, out_c),
                input,
                filter,
                bias,
                (mult, shift),
                zp_in,
                zp_out,
                act,
            )| {
                WindowCase {
                    batches,
                    h,
                    w,
                    in_c,
                    out_c,
                    input,
                    filter,
                    bias,
                    mult,
                    shift,
                    zp_in,
                    zp_out,
                    act,
                }
            },
        )
}

fn conv_params(c: &WindowCase) -> ConvParams {
    ConvParams {
        stride_h: c.h.2 as u32,
        stride_w: c.w.2 as u32,
        dilation_h: c.h.3 as u32,
        dilation_w: c.w.3 as u32,
        pad_h: c.h.4 as u32,
        pad_w: c.w.4 as u32,
        input_offset: -c.zp_in,
        output_offset: c.zp_out,
        act_min: c.act.0,
        act_max: c.act.1,
        multipliers_offset: 0,
        shifts_offset: 0,
        channel_count: c.out_c as u32,
        layout: LAYOUT_PACKED,
        packed_offset: 0,
        folded_bias_offset: 0,
    }
}

/// Packs an `n × k` matrix and folds its bias, as the compiler does.
pub(crate) fn pack(
    w: &[i8],
    n: usize,
    k: usize,
    bias: Option<&[i32]>,
    input_offset: i32,
) -> (Vec<i8>, Vec<i32>) {
    let mut packed = vec![0i8; packed_len(n, k).unwrap()];
    pack_weights(w, n, k, &mut packed).unwrap();
    let mut folded = vec![0i32; 2 * n];
    let (s, u) = folded.split_at_mut(n);
    fold_bias(w, n, k, bias, input_offset, s, u).unwrap();
    (packed, folded)
}

/// `(input_at, output_at)` in one buffer with the output as close to the input as pixel-order
/// production allows: no output pixel may overlap input bytes that it or a later pixel reads
/// (an earlier one when `reverse`).
pub(crate) fn closest_shift(c: &WindowCase, reverse: bool) -> (usize, usize) {
    let [_, in_h, in_w, in_c] = c.input_shape();
    let [batches, out_h, out_w, out_c] = c.output_shape();
    // Input byte range each output pixel reads (None when its window is all padding).
    let mut reads = Vec::new();
    for b in 0..batches {
        for oy in 0..out_h {
            for ox in 0..out_w {
                let ys: Vec<usize> = (0..c.h.1)
                    .filter_map(|f| {
                        (oy * c.h.2 + f * c.h.3)
                            .checked_sub(c.h.4)
                            .filter(|&y| y < in_h)
                    })
                    .collect();
                let xs: Vec<usize> = (0..c.w.1)
                    .filter_map(|f| {
                        (ox * c.w.2 + f * c.w.3)
                            .checked_sub(c.w.4)
                            .filter(|&x| x < in_w)
                    })
                    .collect();
                reads.push(match (ys.first(), ys.last(), xs.first(), xs.last()) {
                    (Some(&y0), Some(&y1), Some(&x0), Some(&x1)) => Some((
                        ((b * in_h + y0) * in_w + x0) * in_c,
                        ((b * in_h + y1) * in_w + x1 + 1) * in_c,
                    )),
                    _ => None,
                });
            }
        }
    }
    let n = reads.len();
    if !reverse {
        // out_at + (i+1)·out_c ≤ in_at + min read of pixels ≥ i.
        let mut lo = usize::MAX;
        let mut shift = 0usize;
        for i in (0..n).rev() {
            if let Some((a, _)) = reads[i] {
                lo = lo.min(a);
            }
            if lo != usize::MAX {
                shift = shift.max(((i + 1) * out_c).saturating_sub(lo));
            }
        }
        (shift, 0)
    } else {
        // out_at + i·out_c ≥ in_at + max read end of pixels ≤ i.
        let mut hi = 0usize;
        let mut shift = 0usize;
        for (i, r) in reads.iter().enumerate() {
            if let Some((_, e)) = r {
                hi = hi.max(*e);
            }
            shift = shift.max(hi.saturating_sub(i * out_c));
        }
        (0, shift)
    }
}

fn conv_case() -> impl Strategy<Value = WindowCase> {
    window_case(
        prop_oneof![3 => 1usize..=20, 1 => 21usize..=70],
        |_| prop_oneof![3 => 1usize..=40, 1 => 41usize..=80].boxed(),
        |o, h, w, i| o * h * w * i,
    )
}

/// The shapes of a ResNet's small-channel layers, which take their own kernel paths: a first
/// layer on 3 input channels (3×3, stride 1, `SAME` padding: filter rows of 9 bytes, steps
/// that do not pair), and 1×1 stride-2 shortcuts (staging skips every other row).
fn resnet_conv_case() -> impl Strategy<Value = WindowCase> {
    let same_3x3 = || (2usize..=12).prop_map(|n| (n, 3, 1, 1, 1, n));
    let shortcut = || (1usize..=12).prop_map(|n| (n, 1, 2, 1, 0, (n - 1) / 2 + 1));
    prop_oneof![
        window_case_axes(
            same_3x3(),
            same_3x3(),
            prop_oneof![Just(3usize), 1usize..=4],
            |_| prop_oneof![Just(16usize), 1usize..=20].boxed(),
            |o, h, w, i| o * h * w * i,
        ),
        window_case_axes(
            shortcut(),
            shortcut(),
            prop_oneof![Just(16usize), Just(32), 1usize..=40],
            |_| prop_oneof![Just(32usize), Just(64), 1usize..=70].boxed(),
            |o, h, w, i| o * h * w * i,
        ),
    ]
}

fn add_params() -> impl Strategy<Value = ArithParams> {
    (
        -127i32..=128,
        -127i32..=128,
        -128i32..=127,
        (1i32 << 30)..=i32::MAX,
        -8i32..=0,
        (1i32 << 30)..=i32::MAX,
        -8i32..=0,
        (1i32 << 30)..=i32::MAX,
        -20i32..=0,
        act_range(),
    )
        .prop_flat_map(|t| (Just(t), 0u8..3))
        .prop_map(|((o1, o2, oo, m1, s1, m2, s2, mo, so, (lo, hi)), larger)| {
            // As TFLite quantizes most ADDs: the input of the larger scale has the
            // multiplier 2³⁰ and no shift (a pure shift, which kernels may special-case).
            let (s1, m1) = if larger == 1 { (0, 1 << 30) } else { (s1, m1) };
            let (s2, m2) = if larger == 2 { (0, 1 << 30) } else { (s2, m2) };
            ArithParams {
                input1_offset: o1,
                input2_offset: o2,
                output_offset: oo,
                left_shift: 20,
                input1_multiplier: m1,
                input1_shift: s1,
                input2_multiplier: m2,
                input2_shift: s2,
                output_multiplier: mo,
                output_shift: so,
                activation_min: lo,
                activation_max: hi,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(250))]

    /// CONV_2D: every tier's fast path equals the reference kernel, through both memory layouts
    /// (separate slices; one shared buffer, in either production order) and with a fused ADD.
    #[test]
    fn conv_matches_reference(c in conv_case(), add in add_params(), residual_seed in any::<u64>()) {
        check_conv(&c, &add, residual_seed);
    }

    /// CONV_2D at the shapes of a ResNet's small-channel layers (see [`resnet_conv_case`]).
    #[test]
    fn resnet_conv_shapes_match_reference(c in resnet_conv_case(), add in add_params(), residual_seed in any::<u64>()) {
        check_conv(&c, &add, residual_seed);
    }
}

/// `c` with a fused ReLU's clamp (`clamp` picks which): int8's own range at output offset −128
/// (TFLite's usual ReLU output), the bottom at the output offset with a top of 127 or lower, a
/// bottom above the offset, or (the matrix kernels must keep the sign term there) one just below.
fn relu_clamped(mut c: WindowCase, clamp: u8, top: i32) -> WindowCase {
    let zp = c.zp_out;
    (c.zp_out, c.act) = match clamp {
        0 => (-128, (-128, 127)),
        1 => (zp, (zp, 127)),
        2 => (zp, (zp, top.max(zp))),
        3 => (zp, (top.max(zp), 127)),
        _ => (zp.max(-127), (zp.max(-127) - 1, 127)),
    };
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(250))]

    /// CONV_2D with fused-ReLU clamps (see [`relu_clamped`]), whose AVX-512 output stages leave
    /// out the rounding's sign term: every tier equals the reference kernel, at random and at
    /// ResNet shapes.
    #[test]
    fn conv_relu_clamps_match_reference(
        c in prop_oneof![conv_case(), resnet_conv_case()],
        clamp in 0u8..5,
        top in -128i32..=127,
        add in add_params(),
        residual_seed in any::<u64>(),
    ) {
        check_conv(&relu_clamped(c, clamp, top), &add, residual_seed);
    }
}

/// The body of `conv_matches_reference`.
fn check_conv(c: &WindowCase, add: &ArithParams, residual_seed: u64) {
    {
        let add = *add;
        let p = conv_params(c);
        let (is, os) = (c.input_shape(), c.output_shape());
        let fs = [c.out_c, c.h.1, c.w.1, c.in_c];
        let seg = Segments::of(fs, p.dilation_w).unwrap();
        let mut expanded = vec![0i8; c.out_c * seg.k()];
        expand_filter(&c.filter, fs, p.dilation_w, &mut expanded).unwrap();
        let mut want = vec![0i8; os.iter().product()];
        conv2d_int8(
            &p,
            is,
            &c.input,
            fs,
            &c.filter,
            c.bias.as_deref(),
            &c.mult,
            &c.shift,
            os,
            &mut want,
        )
        .unwrap();
        let (packed, folded) = pack(
            &expanded,
            c.out_c,
            seg.k(),
            c.bias.as_deref(),
            p.input_offset,
        );
        let pf = PackedFilter {
            weights: &packed,
            bias_signed: &folded[..c.out_c],
            bias_unsigned: &folded[c.out_c..],
        };
        // A staging limit that fits one or two output rows' windows.
        let row_bytes = ((c.w.5 - 1) * c.w.2 + (c.w.1 - 1) * c.w.3 + 1).max(c.w.4 + c.w.0) * c.in_c;
        let window = ((c.h.1 - 1) * c.h.3 + 1) * row_bytes + 4;
        let band_limit = window + (residual_seed % 2) as usize * c.h.2 * row_bytes;
        // A residual and the expected fused result.
        let residual: Vec<i8> = (0..want.len())
            .map(|i| (residual_seed.wrapping_mul(i as u64 + 1) >> 7) as i8)
            .collect();
        for residual_first in [false, true] {
            let fused_want: Vec<i8> = want
                .iter()
                .zip(&residual)
                .map(|(&cv, &r)| {
                    if residual_first {
                        add_element(&add, r, cv)
                    } else {
                        add_element(&add, cv, r)
                    }
                })
                .collect();
            for_each_isa(|isa| {
                let e = AddEpilogue {
                    params: &add,
                    residual_first,
                    residual: Some(&residual),
                };
                let mut got = vec![0i8; want.len()];
                let io = ConvIo::Split {
                    input: &c.input,
                    output: &mut got,
                };
                conv_packed(isa, &pf, &p, [is, fs, os], &c.mult, &c.shift, io, Some(&e)).unwrap();
                assert_eq!(got, fused_want, "{} fused, separate residual", isa.name());
                let mut got = residual.clone();
                let e = AddEpilogue {
                    residual: None,
                    ..e
                };
                let io = ConvIo::Split {
                    input: &c.input,
                    output: &mut got,
                };
                conv_packed_in(
                    isa,
                    &pf,
                    &p,
                    [is, fs, os],
                    &c.mult,
                    &c.shift,
                    io,
                    Some(&e),
                    band_limit,
                )
                .unwrap();
                assert_eq!(
                    got,
                    fused_want,
                    "{} fused, residual in the output",
                    isa.name()
                );
            });
        }
        for_each_isa(|isa| {
            let mut got = vec![0x55i8; want.len()];
            conv2d_int8_fast(
                Some(isa),
                Some(&pf),
                &p,
                is,
                &c.input,
                fs,
                &c.filter,
                c.bias.as_deref(),
                &c.mult,
                &c.shift,
                os,
                &mut got,
            )
            .unwrap();
            assert_eq!(got, want, "{}", isa.name());
            // One buffer, the output overlapping the input as closely as the production order
            // allows: below it (first to last), then above it (last to first).
            for reverse in [false, true] {
                let (in_at, out_at) = closest_shift(c, reverse);
                let mut buf = vec![0x55i8; (in_at + c.input.len()).max(out_at + want.len())];
                buf[in_at..in_at + c.input.len()].copy_from_slice(&c.input);
                let io = ConvIo::Shared {
                    buf: &mut buf,
                    input_at: in_at,
                    output_at: out_at,
                    reverse,
                };
                conv_packed(isa, &pf, &p, [is, fs, os], &c.mult, &c.shift, io, None).unwrap();
                assert_eq!(
                    &buf[out_at..out_at + want.len()],
                    &want[..],
                    "{} shared",
                    isa.name()
                );
                // Again in bands of one or two output rows.
                let mut buf = vec![0x55i8; (in_at + c.input.len()).max(out_at + want.len())];
                buf[in_at..in_at + c.input.len()].copy_from_slice(&c.input);
                let io = ConvIo::Shared {
                    buf: &mut buf,
                    input_at: in_at,
                    output_at: out_at,
                    reverse,
                };
                conv_packed_in(
                    isa,
                    &pf,
                    &p,
                    [is, fs, os],
                    &c.mult,
                    &c.shift,
                    io,
                    None,
                    band_limit,
                )
                .unwrap();
                assert_eq!(
                    &buf[out_at..out_at + want.len()],
                    &want[..],
                    "{} shared bands",
                    isa.name()
                );
            }
            // `conv_packed` checks what its kernels rely on itself (its matrix kernel calls skip
            // the requantization value scan): an out-of-range shift, and a filter whose channels
            // are not the input's, are errors.
            let mut got = vec![0i8; want.len()];
            let mut bad_shift = c.shift.clone();
            let at = residual_seed as usize % bad_shift.len();
            bad_shift[at] = 31;
            let io = ConvIo::Split {
                input: &c.input,
                output: &mut got,
            };
            let r = conv_packed(isa, &pf, &p, [is, fs, os], &c.mult, &bad_shift, io, None);
            assert!(r.is_err(), "{} out-of-range shift", isa.name());
            let grouped = [fs[0], fs[1], fs[2], fs[3] + 1];
            let io = ConvIo::Split {
                input: &c.input,
                output: &mut got,
            };
            let r = conv_packed(isa, &pf, &p, [is, grouped, os], &c.mult, &c.shift, io, None);
            assert!(r.is_err(), "{} filter channels", isa.name());
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(250))]

    /// FULLY_CONNECTED: every tier's fast path equals the reference kernel.
    #[test]
    fn fully_connected_matches_reference(
        (batches, in_f, out_f) in (1usize..=5, prop_oneof![1usize..=100, (1usize..=40).prop_map(|v| 4 * v)], 1usize..=70),
        per_channel in any::<bool>(),
        seed in any::<u64>(),
        zp in (-128i32..=127, -128i32..=127),
        act in act_range(),
        quant in channel_quant(70),
        with_bias in any::<bool>(),
    ) {
        let mut r = seed;
        let mut next = || { r ^= r << 13; r ^= r >> 7; r ^= r << 17; r };
        let input: Vec<i8> = (0..batches * in_f).map(|_| next() as i8).collect();
        let weights: Vec<i8> = (0..out_f * in_f).map(|_| next() as i8).collect();
        let bias: Vec<i32> = (0..out_f).map(|_| (next() as i32) >> 12).collect();
        let count = if per_channel { out_f } else { 1 };
        let (mult, shift) = (&quant.0[..count], &quant.1[..count]);
        let p = FullyConnectedParams {
            input_offset: -zp.0,
            filter_offset: 0,
            output_offset: zp.1,
            act_min: act.0,
            act_max: act.1,
            multipliers_offset: 0,
            shifts_offset: 0,
            channel_count: count as u32,
            layout: LAYOUT_PACKED,
            packed_offset: 0,
            folded_bias_offset: 0,
        };
        let bias = with_bias.then_some(&bias[..]);
        let mut want = vec![0i8; batches * out_f];
        fully_connected_int8(&p, batches, in_f, out_f, &input, &weights, bias, mult, shift, &mut want).unwrap();
        let (packed, folded) = pack(&weights, out_f, in_f, bias, p.input_offset);
        let pf = PackedFilter { weights: &packed, bias_signed: &folded[..out_f], bias_unsigned: &folded[out_f..] };
        for_each_isa(|isa| {
            let mut got = vec![0x55i8; want.len()];
            fully_connected_int8_fast(Some(isa), Some(&pf), &p, batches, in_f, out_f, &input, &weights, bias, mult, shift, &mut got).unwrap();
            assert_eq!(got, want, "{}", isa.name());
        });
    }
}

/// FULLY_CONNECTED with more batches than one staging buffer holds (the staged path runs in
/// several chunks; rows of 130 bytes are staged on every encoding): every tier equals the
/// reference kernel, per-tensor and per-channel.
#[test]
fn fully_connected_many_batches_in_chunks() {
    let (batches, in_f, out_f) = (520usize, 130usize, 20usize);
    assert!(batches * k_steps(in_f) * BLOCK_K > STAGE_CAPACITY);
    let mut r = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        r
    };
    let input: Vec<i8> = (0..batches * in_f).map(|_| next() as i8).collect();
    let weights: Vec<i8> = (0..out_f * in_f).map(|_| next() as i8).collect();
    let bias: Vec<i32> = (0..out_f).map(|_| (next() as i32) >> 14).collect();
    let mult: Vec<i32> = (0..out_f)
        .map(|_| (1 << 30) + (next() as i32 & 0x3FFF_FFFF))
        .collect();
    let shift: Vec<i32> = (0..out_f).map(|_| -((next() % 12) as i32) - 6).collect();
    for count in [1, out_f] {
        let p = FullyConnectedParams {
            input_offset: 3,
            filter_offset: 0,
            output_offset: -5,
            act_min: -100,
            act_max: 120,
            multipliers_offset: 0,
            shifts_offset: 0,
            channel_count: count as u32,
            layout: LAYOUT_PACKED,
            packed_offset: 0,
            folded_bias_offset: 0,
        };
        let (m, sh) = (&mult[..count], &shift[..count]);
        let mut want = vec![0i8; batches * out_f];
        fully_connected_int8(
            &p,
            batches,
            in_f,
            out_f,
            &input,
            &weights,
            Some(&bias),
            m,
            sh,
            &mut want,
        )
        .unwrap();
        let (packed, folded) = pack(&weights, out_f, in_f, Some(&bias), p.input_offset);
        let pf = PackedFilter {
            weights: &packed,
            bias_signed: &folded[..out_f],
            bias_unsigned: &folded[out_f..],
        };
        for_each_isa(|isa| {
            let mut got = vec![0x55i8; want.len()];
            fully_connected_int8_fast(
                Some(isa),
                Some(&pf),
                &p,
                batches,
                in_f,
                out_f,
                &input,
                &weights,
                Some(&bias),
                m,
                sh,
                &mut got,
            )
            .unwrap();
            assert_eq!(got, want, "{} count {count}", isa.name());
        });
    }
}

// ---------------------------------------------------------------------------------------------
// DEPTHWISE_CONV_2D.

use crate::ops::depthwise::{
    depthwise_conv2d_int8, depthwise_conv2d_int8_fast, depthwise_staged, DepthwiseParams,
    DepthwiseQuant,
};

fn depthwise_case() -> impl Strategy<Value = (WindowCase, usize)> {
    (1usize..=3).prop_flat_map(|m| {
        (
            window_case(
                prop_oneof![3 => 1usize..=24, 1 => 25usize..=80],
                move |in_c| Just(in_c * m).boxed(),
                |o, h, w, _| o * h * w,
            ),
            Just(m),
        )
    })
}

fn depthwise_params(c: &WindowCase, m: usize) -> DepthwiseParams {
    DepthwiseParams {
        stride_h: c.h.2 as u32,
        stride_w: c.w.2 as u32,
        dilation_h: c.h.3 as u32,
        dilation_w: c.w.3 as u32,
        pad_h: c.h.4 as u32,
        pad_w: c.w.4 as u32,
        input_offset: -c.zp_in,
        output_offset: c.zp_out,
        act_min: c.act.0,
        act_max: c.act.1,
        multipliers_offset: 0,
        shifts_offset: 0,
        channel_count: c.out_c as u32,
        depth_multiplier: m as u32,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(250))]

    /// DEPTHWISE_CONV_2D: every tier equals the reference kernel, through separate slices and
    /// one shared buffer (either production order, in bands of one or two rows too).
    #[test]
    fn depthwise_matches_reference((c, m) in depthwise_case(), seed in any::<u64>()) {
        let p = depthwise_params(&c, m);
        let (is, os) = (c.input_shape(), c.output_shape());
        let fs = [1, c.h.1, c.w.1, c.out_c];
        let mut want = vec![0i8; os.iter().product()];
        depthwise_conv2d_int8(&p, is, &c.input, fs, &c.filter, c.bias.as_deref(), &c.mult, &c.shift, os, &mut want).unwrap();
        let row_bytes = ((c.w.5 - 1) * c.w.2 + (c.w.1 - 1) * c.w.3 + 1).max(c.w.4 + c.w.0) * c.in_c;
        let band_limit = ((c.h.1 - 1) * c.h.3 + 1) * row_bytes + 4 + (seed % 2) as usize * c.h.2 * row_bytes;
        let q = DepthwiseQuant { filter: &c.filter, bias: c.bias.as_deref(), multipliers: &c.mult, shifts: &c.shift };
        for_each_isa(|isa| {
            let mut got = vec![0x55i8; want.len()];
            depthwise_conv2d_int8_fast(Some(isa), &p, is, &c.input, fs, &c.filter, c.bias.as_deref(), &c.mult, &c.shift, os, &mut got).unwrap();
            assert_eq!(got, want, "{}", isa.name());
            if m != 1 {
                return;
            }
            for reverse in [false, true] {
                for limit in [super::super::ops::conv::STAGE_BYTES, band_limit] {
                    let (in_at, out_at) = closest_shift(&c, reverse);
                    let mut buf = vec![0x55i8; (in_at + c.input.len()).max(out_at + want.len())];
                    buf[in_at..in_at + c.input.len()].copy_from_slice(&c.input);
                    let io = ConvIo::Shared { buf: &mut buf, input_at: in_at, output_at: out_at, reverse };
                    depthwise_staged(isa, &p, [is, fs, os], &q, io, limit).unwrap();
                    assert_eq!(&buf[out_at..out_at + want.len()], &want[..], "{} shared {reverse} {limit}", isa.name());
                }
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// ADD / SUB.

use crate::ops::arith::sub_element;

/// ADD/SUB parameters anywhere in the validated ranges.
fn any_add_params() -> impl Strategy<Value = ArithParams> {
    (
        (-128i32..=128, -128i32..=128, -128i32..=127, 0i32..=20),
        (quant_strategy(), -31i32..=0),
        (quant_strategy(), -31i32..=0),
        (quant_strategy(), -31i32..=0),
        act_range(),
    )
        .prop_map(
            |((o1, o2, oo, left), ((m1, _), s1), ((m2, _), s2), ((mo, _), so), (lo, hi))| {
                ArithParams {
                    input1_offset: o1,
                    input2_offset: o2,
                    output_offset: oo,
                    left_shift: left,
                    input1_multiplier: m1,
                    input1_shift: s1,
                    input2_multiplier: m2,
                    input2_shift: s2,
                    output_multiplier: mo,
                    output_shift: so,
                    activation_min: lo,
                    activation_max: hi,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// ADD and SUB: every tier equals TFLM's element recipe, out of place and in place.
    #[test]
    fn add_sub_matches_reference(
        p in prop_oneof![3 => add_params(), 2 => any_add_params()],
        // Past 256 elements the AVX-512 tier may take its table path.
        x in prop_oneof![proptest::collection::vec(any::<i8>(), 0..200), proptest::collection::vec(any::<i8>(), 256..700)],
        seed in any::<u64>(),
    ) {
        let y: Vec<i8> = (0..x.len()).map(|i| (seed.wrapping_mul(i as u64 * 2 + 1) >> 11) as i8).collect();
        for subtract in [false, true] {
            let f = |a: i8, b: i8| if subtract { sub_element(&p, a, b) } else { add_element(&p, a, b) };
            let want: Vec<i8> = x.iter().zip(&y).map(|(&a, &b)| f(a, b)).collect();
            let want_swapped: Vec<i8> = x.iter().zip(&y).map(|(&a, &b)| f(b, a)).collect();
            for_each_isa(|isa| {
                let mut got = vec![0x55i8; x.len()];
                add_sub(isa, &p, subtract, &x, &y, &mut got).unwrap();
                assert_eq!(got, want, "{}", isa.name());
                let mut acc = x.clone();
                add_sub_assign(isa, &p, subtract, &mut acc, &y, true).unwrap();
                assert_eq!(acc, want, "{} in place, first", isa.name());
                let mut acc = x.clone();
                add_sub_assign(isa, &p, subtract, &mut acc, &y, false).unwrap();
                assert_eq!(acc, want_swapped, "{} in place, second", isa.name());
            });
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// ADD and SUB on every pair of int8 inputs, with parameters whose sums fall on the output
    /// rounding's boundaries: one operand TFLM's larger-scale input (a shift alone), the other
    /// rescaled to a few units per step, and an output scale of a few units per step, so that
    /// an error of one in a sum changes outputs (random inputs hit a boundary about once in
    /// 2¹⁷ sums).
    #[test]
    fn add_sub_exact_at_rounding_boundaries(
        left in 9i32..=20,
        (m_t, m_o) in (1i32 << 30..=i32::MAX, 1i32 << 30..=i32::MAX),
        (o_t, o_s, o_out) in (-128i32..=127, -128i32..=127, -128i32..=127),
        e_out in 1i32..=3,
        extra in 0i32..=2,
        swap in any::<bool>(),
        act in act_range(),
    ) {
        // The looked-up operand: (x + o)·2^left·m/2³¹ / 2^(left − 1 + extra), a few units per
        // step; the other (y + o)·2^(left − 1) exactly.
        let (t, sh) = ((o_t, m_t, -(left - 1 + extra)), (o_s, 1 << 30, 0));
        let ((o1, m1, s1), (o2, m2, s2)) = if swap { (sh, t) } else { (t, sh) };
        let p = ArithParams {
            input1_offset: o1,
            input2_offset: o2,
            output_offset: o_out,
            left_shift: left,
            input1_multiplier: m1,
            input1_shift: s1,
            input2_multiplier: m2,
            input2_shift: s2,
            output_multiplier: m_o,
            output_shift: -e_out,
            activation_min: act.0,
            activation_max: act.1,
        };
        let x: Vec<i8> = (0..1usize << 16).map(|i| i as u8 as i8).collect();
        let y: Vec<i8> = (0..1usize << 16).map(|i| (i >> 8) as u8 as i8).collect();
        for subtract in [false, true] {
            let f = |a: i8, b: i8| if subtract { sub_element(&p, a, b) } else { add_element(&p, a, b) };
            let want: Vec<i8> = x.iter().zip(&y).map(|(&a, &b)| f(a, b)).collect();
            for_each_isa(|isa| {
                let mut got = vec![0x55i8; x.len()];
                add_sub(isa, &p, subtract, &x, &y, &mut got).unwrap();
                assert_eq!(got, want, "{} subtract={subtract} {p:?}", isa.name());
            });
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// ADD and SUB with a fused ReLU / ReLU6 (the clamp's bottom at the output offset, or int8's
    /// own range with the offset at −128, as TFLite quantizes ReLU outputs), on every pair of
    /// int8 inputs, with sums on the output rounding's boundaries (as
    /// `add_sub_exact_at_rounding_boundaries`): the AVX-512 table path leaves out the output
    /// stage's sign term for these clamps, and its 16-bit form takes left shifts from 16 on.
    #[test]
    fn add_sub_relu_exact_at_rounding_boundaries(
        left in prop_oneof![3 => 16i32..=20, 1 => 9i32..=15],
        (m_t, m_o) in (1i32 << 30..=i32::MAX, 1i32 << 30..=i32::MAX),
        (o_t, o_s, o_out) in (-128i32..=127, -128i32..=127, -128i32..=127),
        e_out in 1i32..=3,
        extra in 0i32..=2,
        swap in any::<bool>(),
        clamp in 0u8..5,
        top in -128i32..=127,
    ) {
        let (t, sh) = ((o_t, m_t, -(left - 1 + extra)), (o_s, 1 << 30, 0));
        let ((o1, m1, s1), (o2, m2, s2)) = if swap { (sh, t) } else { (t, sh) };
        // ReLU with TFLite's usual zero point; ReLU at any zero point; ReLU6-like tops; a
        // bottom above the offset; and one just below it (where the sign term still counts).
        let (o_out, lo, hi) = match clamp {
            0 => (-128, -128, 127),
            1 => (o_out, o_out, 127),
            2 => (o_out, o_out, top.max(o_out)),
            3 => (o_out, top.max(o_out), 127),
            _ => (o_out.max(-127), o_out.max(-127) - 1, 127),
        };
        let p = ArithParams {
            input1_offset: o1,
            input2_offset: o2,
            output_offset: o_out,
            left_shift: left,
            input1_multiplier: m1,
            input1_shift: s1,
            input2_multiplier: m2,
            input2_shift: s2,
            output_multiplier: m_o,
            output_shift: -e_out,
            activation_min: lo,
            activation_max: hi,
        };
        let x: Vec<i8> = (0..1usize << 16).map(|i| i as u8 as i8).collect();
        let y: Vec<i8> = (0..1usize << 16).map(|i| (i >> 8) as u8 as i8).collect();
        for subtract in [false, true] {
            let f = |a: i8, b: i8| if subtract { sub_element(&p, a, b) } else { add_element(&p, a, b) };
            let want: Vec<i8> = x.iter().zip(&y).map(|(&a, &b)| f(a, b)).collect();
            for_each_isa(|isa| {
                let mut got = vec![0x55i8; x.len()];
                add_sub(isa, &p, subtract, &x, &y, &mut got).unwrap();
                assert_eq!(got, want, "{} subtract={subtract} {p:?}", isa.name());
                let mut acc = y.clone();
                add_sub_assign(isa, &p, subtract, &mut acc, &x, false).unwrap();
                assert_eq!(acc, want, "{} in place subtract={subtract} {p:?}", isa.name());
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AVERAGE_POOL_2D and MAX_POOL_2D.

use crate::ops::pool::{average_pool_int8, max_pool_int8, pool_int8_fast, PoolParams};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Pooling: every tier equals the reference kernels (average and max).
    #[test]
    fn pool_matches_reference(
        (batches, in_h, in_w, depth) in (1usize..=2, 1usize..=12, 1usize..=12, prop_oneof![1usize..=20, 21usize..=100]),
        (f_h, f_w, s_h, s_w) in (1u32..=6, 1u32..=6, 1u32..=3, 1u32..=3),
        (pad_h, pad_w) in (0u32..=2, 0u32..=2),
        act in act_range(),
        seed in any::<u64>(),
    ) {
        // Output sizes whose windows all overlap the input.
        let out = |i: usize, f: u32, s: u32, pd: u32| -> usize {
            let span = (i + 2 * pd as usize).saturating_sub(f as usize);
            let mut o = span / s as usize + 1;
            while o > 0 && (o - 1) * s as usize >= i + pd as usize { o -= 1; }
            o
        };
        let (pad_h, pad_w) = (pad_h.min(f_h - 1), pad_w.min(f_w - 1));
        let (out_h, out_w) = (out(in_h, f_h, s_h, pad_h), out(in_w, f_w, s_w, pad_w));
        prop_assume!(out_h > 0 && out_w > 0);
        let p = PoolParams {
            stride_h: s_h, stride_w: s_w, filter_h: f_h, filter_w: f_w, pad_h, pad_w,
            act_min: act.0, act_max: act.1, act_min_f: 0.0, act_max_f: 0.0,
        };
        let is = [batches, in_h, in_w, depth];
        let os = [batches, out_h, out_w, depth];
        let mut r = seed;
        let input: Vec<i8> = (0..is.iter().product()).map(|_| { r = r.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); (r >> 33) as i8 }).collect();
        let n_out: usize = os.iter().product();
        for average in [true, false] {
            let mut want = vec![0i8; n_out];
            if average {
                average_pool_int8(&p, is, &input, os, &mut want);
            } else {
                max_pool_int8(&p, is, &input, os, &mut want);
            }
            for_each_isa(|isa| {
                let mut got = vec![0x55i8; n_out];
                pool_int8_fast(Some(isa), average, &p, is, &input, os, &mut got);
                assert_eq!(got, want, "{} average={average}", isa.name());
            });
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Global and whole-row average pooling (windows spanning full input rows, summed as one
    /// contiguous run; the exact f64 division of the output stage): every tier equals the
    /// reference, including large windows of extreme values (rounding ties, big sums).
    #[test]
    fn whole_row_average_pool_matches_reference(
        (batches, in_h, in_w, depth) in (1usize..=2, 1usize..=40, 1usize..=40, prop_oneof![1usize..=20, Just(64usize), 21usize..=130]),
        f_h_extra in 0u32..=3,
        global in any::<bool>(),
        s_h in 1u32..=3,
        act in act_range(),
        fill in prop_oneof![Just(None), Just(Some(i8::MIN)), Just(Some(i8::MAX)), Just(Some(-1i8)), (any::<i8>()).prop_map(Some)],
        seed in any::<u64>(),
    ) {
        // `global`: one output pixel whose window is the whole plane; else full-width windows
        // of height up to `in_h` sliding down the rows.
        let f_w = in_w as u32;
        let f_h = if global { in_h as u32 + f_h_extra } else { (in_h as u32).min(1 + f_h_extra) };
        let out_h = if global { 1 } else { (in_h - f_h as usize) / s_h as usize + 1 };
        let p = PoolParams {
            stride_h: s_h, stride_w: 1, filter_h: f_h, filter_w: f_w, pad_h: 0, pad_w: 0,
            act_min: act.0, act_max: act.1, act_min_f: 0.0, act_max_f: 0.0,
        };
        let is = [batches, in_h, in_w, depth];
        let os = [batches, out_h, 1, depth];
        let mut r = seed;
        let input: Vec<i8> = (0..is.iter().product())
            .map(|i| {
                r = r.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                // Mostly the fill value (when set), with some noise to make ties and near-ties.
                match fill { Some(v) if i % 7 != 3 => v, _ => (r >> 33) as i8 }
            })
            .collect();
        let n_out: usize = os.iter().product();
        let mut want = vec![0i8; n_out];
        average_pool_int8(&p, is, &input, os, &mut want);
        for_each_isa(|isa| {
            let mut got = vec![0x55i8; n_out];
            pool_int8_fast(Some(isa), true, &p, is, &input, os, &mut got);
            assert_eq!(got, want, "{} {is:?} -> {os:?}", isa.name());
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Staging: [`StageWriter::padded_rows`] (on AVX-512, written in aligned 64-byte chunks)
    /// gives the bytes of [`StageWriter::fill`] and [`StageWriter::copy_xor`] row by row, at any
    /// starting offset in the buffer, with padding rows among the input rows.
    #[test]
    fn padded_rows_match_row_by_row(
        skip in 0usize..130,
        count in 0usize..12,
        left in 0usize..140,
        width in 0usize..300,
        right in 0usize..140,
        pad in any::<u8>(),
        flip in prop_oneof![Just(0u8), Just(0x80u8)],
        seed in any::<u64>(),
    ) {
        let src: Vec<u8> = (0..count * width)
            .map(|i| (seed.wrapping_mul(i as u64 * 2 + 1) >> 11) as u8)
            .collect();
        // Every third row (from a seed-chosen phase) is padding.
        let is_pad = |i: usize| (i as u64 + seed) % 3 == 0;
        let row = |i: usize| (!is_pad(i)).then(|| &src[i * width..(i + 1) * width]);
        let mut want = vec![0xA5u8; skip];
        for i in 0..count {
            match row(i) {
                Some(r) => {
                    want.extend(core::iter::repeat_n(pad, left));
                    want.extend(r.iter().map(|&b| b ^ flip));
                    want.extend(core::iter::repeat_n(pad, right));
                }
                None => want.extend(core::iter::repeat_n(pad, left + width + right)),
            }
        }
        let got = with_stage(want.len() + 64, |stage| {
            let mut w = stage.writer();
            w.fill(skip, 0xA5);
            w.padded_rows(count, row, [left, width, right], pad, flip);
            w.finish().to_vec()
        });
        // The prefix too: the chunks straddling the first row's start leave it alone.
        prop_assert_eq!(got, want);
    }
}
