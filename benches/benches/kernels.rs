//! Each int8 kernel at the shapes of the MLPerf Tiny models, on every SIMD tier this CPU runs
//! and on the portable reference kernel (`reference`), side by side.
//!
//! `cargo bench -p mote-benches --bench kernels` (criterion reports time per call; the group
//! names give the model layer, the function names the tier). Throughput is in MACs (elements
//! for ADD and pooling), so criterion's `elem/s` reads as MAC/s.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use mote_runtime::ops::arith::{add_sub_int8_fast, ArithParams};
use mote_runtime::ops::conv::{
    conv2d_int8_fast, expand_filter, ConvParams, PackedFilter, Segments, LAYOUT_PACKED,
};
use mote_runtime::ops::depthwise::{depthwise_conv2d_int8_fast, DepthwiseParams};
use mote_runtime::ops::fully_connected::{fully_connected_int8_fast, FullyConnectedParams};
use mote_runtime::ops::pool::{pool_int8_fast, PoolParams};
use mote_runtime::simd::{fold_bias, pack_weights, packed_len, Isa};

/// Deterministic bytes (the benchmark does not depend on their values).
fn bytes(n: usize, seed: u32) -> Vec<i8> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as i8
        })
        .collect()
}

/// Every tier this CPU runs, then the reference kernels.
fn tiers() -> Vec<(String, Option<Isa>)> {
    let mut v: Vec<(String, Option<Isa>)> = Isa::available()
        .into_iter()
        .flatten()
        .map(|isa| (isa.name().to_string(), Some(isa)))
        .collect();
    v.push(("reference".to_string(), None));
    v
}

/// A CONV_2D layer: `(name, input NHWC, filter OHWI, stride, pad, output NHWC)`.
type ConvShape = (
    &'static str,
    [usize; 4],
    [usize; 4],
    u32,
    [u32; 2],
    [usize; 4],
);

const CONVS: [ConvShape; 9] = [
    (
        "kws/conv0 10x4 s2",
        [1, 49, 10, 1],
        [64, 10, 4, 1],
        2,
        [4, 1],
        [1, 25, 5, 64],
    ),
    (
        "kws/pointwise 64->64",
        [1, 25, 5, 64],
        [64, 1, 1, 64],
        1,
        [0, 0],
        [1, 25, 5, 64],
    ),
    (
        "resnet/conv0 3x3 3->16",
        [1, 32, 32, 3],
        [16, 3, 3, 3],
        1,
        [1, 1],
        [1, 32, 32, 16],
    ),
    (
        "resnet/3x3 16->16",
        [1, 32, 32, 16],
        [16, 3, 3, 16],
        1,
        [1, 1],
        [1, 32, 32, 16],
    ),
    // One output row of it: what a residual block streamed row by row computes per call.
    (
        "resnet/3x3 16->16 one row",
        [1, 3, 32, 16],
        [16, 3, 3, 16],
        1,
        [0, 1],
        [1, 1, 32, 16],
    ),
    (
        "resnet/3x3 s2 16->32",
        [1, 32, 32, 16],
        [32, 3, 3, 16],
        2,
        [0, 0],
        [1, 16, 16, 32],
    ),
    (
        "resnet/3x3 32->32",
        [1, 16, 16, 32],
        [32, 3, 3, 32],
        1,
        [1, 1],
        [1, 16, 16, 32],
    ),
    (
        "resnet/3x3 64->64",
        [1, 8, 8, 64],
        [64, 3, 3, 64],
        1,
        [1, 1],
        [1, 8, 8, 64],
    ),
    (
        "resnet/1x1 s2 32->64",
        [1, 16, 16, 32],
        [64, 1, 1, 32],
        2,
        [0, 0],
        [1, 8, 8, 64],
    ),
];

fn conv(c: &mut Criterion) {
    for (name, is, fs, stride, [pad_h, pad_w], os) in CONVS {
        let input = bytes(is.iter().product(), 1);
        let filter = bytes(fs.iter().product(), 2);
        let n = fs[0];
        let bias: Vec<i32> = (0..n as i32).map(|i| i * 37 - 500).collect();
        let mult = vec![1_518_500_250i32; n];
        let shift = vec![-8i32; n];
        let p = ConvParams {
            stride_h: stride,
            stride_w: stride,
            dilation_h: 1,
            dilation_w: 1,
            pad_h,
            pad_w,
            input_offset: 7,
            output_offset: -3,
            act_min: -128,
            act_max: 127,
            multipliers_offset: 0,
            shifts_offset: 0,
            channel_count: n as u32,
            layout: LAYOUT_PACKED,
            packed_offset: 0,
            folded_bias_offset: 0,
        };
        let seg = Segments::of(fs, 1).expect("segments");
        let mut expanded = vec![0i8; n * seg.k()];
        expand_filter(&filter, fs, 1, &mut expanded).expect("expand");
        let mut packed = vec![0i8; packed_len(n, seg.k()).expect("size")];
        pack_weights(&expanded, n, seg.k(), &mut packed).expect("pack");
        let mut folded = vec![0i32; 2 * n];
        let (s, u) = folded.split_at_mut(n);
        fold_bias(&expanded, n, seg.k(), Some(&bias), 7, s, u).expect("fold");
        let pf = PackedFilter {
            weights: &packed,
            bias_signed: &folded[..n],
            bias_unsigned: &folded[n..],
        };
        let macs = os.iter().product::<usize>() * fs[1] * fs[2] * fs[3];
        let mut out = vec![0i8; os.iter().product()];
        let mut g = c.benchmark_group(format!("conv/{name}"));
        g.throughput(Throughput::Elements(macs as u64));
        for (tier, isa) in tiers() {
            g.bench_function(BenchmarkId::from_parameter(tier), |b| {
                b.iter(|| {
                    conv2d_int8_fast(
                        isa,
                        Some(&pf),
                        &p,
                        is,
                        &input,
                        fs,
                        &filter,
                        Some(&bias),
                        &mult,
                        &shift,
                        os,
                        &mut out,
                    )
                    .expect("conv")
                })
            });
        }
        g.finish();
    }
}

/// (name, input shape, filter h×w, stride, pad).
type DwShape = (&'static str, [usize; 4], [usize; 2], u32, u32);

fn depthwise(c: &mut Criterion) {
    let shapes: [DwShape; 3] = [
        ("kws/dw 3x3 64", [1, 25, 5, 64], [3, 3], 1, 1),
        ("vww/dw 3x3 s2 16", [1, 48, 48, 16], [3, 3], 2, 0),
        ("vww/dw 3x3 64", [1, 12, 12, 64], [3, 3], 1, 1),
    ];
    for (name, is, [f_h, f_w], stride, pad) in shapes {
        let ch = is[3];
        let out_h = (is[1] + 2 * pad as usize - f_h) / stride as usize + 1;
        let out_w = (is[2] + 2 * pad as usize - f_w) / stride as usize + 1;
        let os = [1, out_h, out_w, ch];
        let fs = [1, f_h, f_w, ch];
        let input = bytes(is.iter().product(), 3);
        let filter = bytes(fs.iter().product(), 4);
        let bias: Vec<i32> = (0..ch as i32).map(|i| i * 11 - 100).collect();
        let mult = vec![1_518_500_250i32; ch];
        let shift = vec![-7i32; ch];
        let p = DepthwiseParams {
            stride_h: stride,
            stride_w: stride,
            dilation_h: 1,
            dilation_w: 1,
            pad_h: pad,
            pad_w: pad,
            input_offset: 5,
            output_offset: 2,
            act_min: -128,
            act_max: 127,
            multipliers_offset: 0,
            shifts_offset: 0,
            channel_count: ch as u32,
            depth_multiplier: 1,
        };
        let macs = os.iter().product::<usize>() * f_h * f_w;
        let mut out = vec![0i8; os.iter().product()];
        let mut g = c.benchmark_group(format!("depthwise/{name}"));
        g.throughput(Throughput::Elements(macs as u64));
        for (tier, isa) in tiers() {
            g.bench_function(BenchmarkId::from_parameter(tier), |b| {
                b.iter(|| {
                    depthwise_conv2d_int8_fast(
                        isa,
                        &p,
                        is,
                        &input,
                        fs,
                        &filter,
                        Some(&bias),
                        &mult,
                        &shift,
                        os,
                        &mut out,
                    )
                    .expect("depthwise")
                })
            });
        }
        g.finish();
    }
}

fn fully_connected(c: &mut Criterion) {
    let shapes: [(&str, usize, usize); 4] = [
        ("ad/640->128", 640, 128),
        ("ad/128->128", 128, 128),
        ("ad/128->640", 128, 640),
        ("kws/64->12", 64, 12),
    ];
    for (name, k, n) in shapes {
        let input = bytes(k, 5);
        let weights = bytes(n * k, 6);
        let bias: Vec<i32> = (0..n as i32).map(|i| i * 5 - 40).collect();
        let p = FullyConnectedParams {
            input_offset: 3,
            filter_offset: 0,
            output_offset: -1,
            act_min: -128,
            act_max: 127,
            multipliers_offset: 0,
            shifts_offset: 0,
            channel_count: 1,
            layout: LAYOUT_PACKED,
            packed_offset: 0,
            folded_bias_offset: 0,
        };
        let mut packed = vec![0i8; packed_len(n, k).expect("size")];
        pack_weights(&weights, n, k, &mut packed).expect("pack");
        let mut folded = vec![0i32; 2 * n];
        let (s, u) = folded.split_at_mut(n);
        fold_bias(&weights, n, k, Some(&bias), 3, s, u).expect("fold");
        let pf = PackedFilter {
            weights: &packed,
            bias_signed: &folded[..n],
            bias_unsigned: &folded[n..],
        };
        let mut out = vec![0i8; n];
        let mut g = c.benchmark_group(format!("fully_connected/{name}"));
        g.throughput(Throughput::Elements((n * k) as u64));
        for (tier, isa) in tiers() {
            g.bench_function(BenchmarkId::from_parameter(tier), |b| {
                b.iter(|| {
                    fully_connected_int8_fast(
                        isa,
                        Some(&pf),
                        &p,
                        1,
                        k,
                        n,
                        &input,
                        &weights,
                        Some(&bias),
                        &[1_518_500_250],
                        &[-9],
                        &mut out,
                    )
                    .expect("fully connected")
                })
            });
        }
        g.finish();
    }
}

fn elementwise(c: &mut Criterion) {
    let p = ArithParams {
        input1_offset: 3,
        input2_offset: -5,
        output_offset: 1,
        left_shift: 20,
        input1_multiplier: 1 << 30,
        input1_shift: 0,
        input2_multiplier: 1_700_000_000,
        input2_shift: -1,
        output_multiplier: 1_600_000_000,
        output_shift: -19,
        activation_min: -128,
        activation_max: 127,
    };
    let shape = [1usize, 32, 32, 16];
    let n: usize = shape.iter().product();
    let (x, y) = (bytes(n, 7), bytes(n, 8));
    let mut out = vec![0i8; n];
    let mut g = c.benchmark_group("add/resnet 32x32x16");
    g.throughput(Throughput::Elements(n as u64));
    for (tier, isa) in tiers() {
        g.bench_function(BenchmarkId::from_parameter(tier), |b| {
            b.iter(|| {
                add_sub_int8_fast(isa, &p, false, &shape, &x, &shape, &y, &shape, &mut out)
                    .expect("add")
            })
        });
    }
    g.finish();

    let p = PoolParams {
        stride_h: 25,
        stride_w: 5,
        filter_h: 25,
        filter_w: 5,
        pad_h: 0,
        pad_w: 0,
        act_min: -128,
        act_max: 127,
        act_min_f: 0.0,
        act_max_f: 0.0,
    };
    let (is, os) = ([1usize, 25, 5, 64], [1usize, 1, 1, 64]);
    let input = bytes(is.iter().product(), 9);
    let mut out = vec![0i8; 64];
    let mut g = c.benchmark_group("average_pool/kws 25x5x64");
    g.throughput(Throughput::Elements(is.iter().product::<usize>() as u64));
    for (tier, isa) in tiers() {
        g.bench_function(BenchmarkId::from_parameter(tier), |b| {
            b.iter(|| pool_int8_fast(isa, true, &p, is, &input, os, &mut out))
        });
    }
    g.finish();
}

criterion_group!(kernels, conv, depthwise, fully_connected, elementwise);
criterion_main!(kernels);
