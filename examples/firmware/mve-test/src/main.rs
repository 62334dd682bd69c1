//! Bit-exactness of the Helium (MVE) kernels on a real Cortex-M55 instruction set: runs
//! `mote_runtime::simd::mve`'s CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED against the
//! portable reference kernels (`mote_runtime::ops`) on many random shapes (channels not multiples
//! of 16, strides, paddings, dilations, input/output offsets, per-channel quantization, batches),
//! plus the layer shapes of the MLPerf Tiny KWS and ResNet-8 models, then exits through
//! semihosting with EXIT_SUCCESS only if every output byte matched.
//!
//! ```sh
//! cd examples/firmware
//! cargo run --release -p mote-mve-test --target thumbv8m.main-none-eabihf   # needs qemu
//! ```
//! (`.cargo/config.toml` sets `-C target-cpu=cortex-m55` and the qemu runner;
//! `targets/boards/ci.sh` runs it with a timeout.)
#![no_std]
#![no_main]

use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hprintln};
use mote_runtime::ops::conv::{conv2d_int8 as conv_ref, ConvParams};
use mote_runtime::ops::depthwise::{depthwise_conv2d_int8 as dw_ref, DepthwiseParams};
use mote_runtime::ops::fully_connected::{fully_connected_int8 as fc_ref, FullyConnectedParams};
use mote_runtime::simd::mve;

/// Random cases of each kernel.
const CASES: usize = 300;
/// Largest tensors a case uses (stack buffers).
const MAX_IN: usize = 8192;
const MAX_FILTER: usize = 48 * 1024;
const MAX_OUT: usize = 8192;
const MAX_CH: usize = 128;

/// xorshift64*, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i64
    }
    fn pick(&mut self, from: &[usize]) -> usize {
        from[self.range(0, from.len() as i64 - 1) as usize]
    }
    fn fill(&mut self, buf: &mut [i8]) {
        for b in buf {
            *b = self.range(-128, 127) as i8;
        }
    }
    /// Per-channel multipliers and shifts, and biases.
    fn quant(&mut self, m: &mut [i32], s: &mut [i32], b: &mut [i32]) {
        for ((m, s), b) in m.iter_mut().zip(s.iter_mut()).zip(b.iter_mut()) {
            *m = self.range(1 << 30, i32::MAX as i64) as i32;
            *s = self.range(-12, 1) as i32;
            *b = self.range(-40000, 40000) as i32;
        }
    }
}

/// Output size and leading padding of one axis, SAME or VALID.
fn axis(same: bool, i: usize, f: usize, stride: usize, dil: usize) -> (usize, u32) {
    let eff = (f - 1) * dil + 1;
    if same {
        let o = i.div_ceil(stride);
        (o, (((o - 1) * stride + eff).saturating_sub(i) / 2) as u32)
    } else {
        ((i + stride).saturating_sub(eff) / stride, 0)
    }
}

/// Stack buffers shared by the cases.
struct Bufs {
    input: [i8; MAX_IN],
    filter: [i8; MAX_FILTER],
    want: [i8; MAX_OUT],
    got: [i8; MAX_OUT],
    mult: [i32; MAX_CH],
    shift: [i32; MAX_CH],
    bias: [i32; MAX_CH],
}

/// One convolution layer shape: `[batches, in_h, in_w, in_c]`, `[out_c, f_h, f_w]`, strides,
/// dilations, SAME padding.
struct Shape {
    input: [usize; 4],
    filter: [usize; 3],
    stride: [usize; 2],
    dil: [usize; 2],
    same: bool,
}

/// Runs one CONV_2D case; `Err` names the mismatch.
fn conv_case(r: &mut Rng, b: &mut Bufs, s: &Shape) -> Result<bool, &'static str> {
    let [batches, in_h, in_w, in_c] = s.input;
    let [out_c, f_h, f_w] = s.filter;
    let (out_h, pad_h) = axis(s.same, in_h, f_h, s.stride[0], s.dil[0]);
    let (out_w, pad_w) = axis(s.same, in_w, f_w, s.stride[1], s.dil[1]);
    let is = [batches, in_h, in_w, in_c];
    let fs = [out_c, f_h, f_w, in_c];
    let os = [batches, out_h, out_w, out_c];
    let (ni, nf, no) = (
        is.iter().product(),
        fs.iter().product(),
        os.iter().product(),
    );
    if ni > MAX_IN || nf > MAX_FILTER || no > MAX_OUT || out_c > MAX_CH {
        return Ok(false);
    }
    let act_min = r.range(-128, 0) as i32;
    let p = ConvParams {
        stride_h: s.stride[0] as u32,
        stride_w: s.stride[1] as u32,
        dilation_h: s.dil[0] as u32,
        dilation_w: s.dil[1] as u32,
        pad_h,
        pad_w,
        input_offset: r.range(-127, 128) as i32,
        output_offset: r.range(-128, 127) as i32,
        act_min,
        act_max: r.range(act_min as i64, 127) as i32,
        multipliers_offset: 0,
        shifts_offset: 0,
        channel_count: out_c as u32,
        layout: 0,
        packed_offset: 0,
        folded_bias_offset: 0,
    };
    r.fill(&mut b.input[..ni]);
    r.fill(&mut b.filter[..nf]);
    r.quant(
        &mut b.mult[..out_c],
        &mut b.shift[..out_c],
        &mut b.bias[..out_c],
    );
    let bias = (r.range(0, 3) != 0).then_some(&b.bias[..out_c]);
    let (m, sh) = (&b.mult[..out_c], &b.shift[..out_c]);
    let (input, filter) = (&b.input[..ni], &b.filter[..nf]);
    conv_ref(
        &p,
        is,
        input,
        fs,
        filter,
        bias,
        m,
        sh,
        os,
        &mut b.want[..no],
    )
    .map_err(|_| "conv: the reference rejected a generated case")?;
    b.got[..no].fill(0x55);
    let handled = mve::conv2d_int8(&p, is, input, fs, filter, bias, m, sh, os, &mut b.got[..no]);
    let k = f_h * f_w * in_c;
    if handled.is_none() {
        // Only receptive fields beyond the buffer fall back.
        return if k > mve::COL_BYTES {
            Ok(false)
        } else {
            Err("conv: Helium kernel declined a shape it handles")
        };
    }
    if b.got[..no] != b.want[..no] {
        hprintln!("conv mismatch: {:?} {:?} {:?}", p, is, fs);
        return Err("conv: output differs from the reference");
    }
    Ok(true)
}

/// Runs one DEPTHWISE_CONV_2D case.
fn dw_case(r: &mut Rng, b: &mut Bufs, s: &Shape) -> Result<bool, &'static str> {
    let [batches, in_h, in_w, c] = s.input;
    let [_, f_h, f_w] = s.filter;
    let (out_h, pad_h) = axis(s.same, in_h, f_h, s.stride[0], s.dil[0]);
    let (out_w, pad_w) = axis(s.same, in_w, f_w, s.stride[1], s.dil[1]);
    let is = [batches, in_h, in_w, c];
    let fs = [1, f_h, f_w, c];
    let os = [batches, out_h, out_w, c];
    let (ni, nf, no) = (
        is.iter().product(),
        fs.iter().product(),
        os.iter().product(),
    );
    if ni > MAX_IN || nf > MAX_FILTER || no > MAX_OUT || c > MAX_CH {
        return Ok(false);
    }
    let act_min = r.range(-128, 0) as i32;
    let p = DepthwiseParams {
        stride_h: s.stride[0] as u32,
        stride_w: s.stride[1] as u32,
        dilation_h: s.dil[0] as u32,
        dilation_w: s.dil[1] as u32,
        pad_h,
        pad_w,
        input_offset: r.range(-127, 128) as i32,
        output_offset: r.range(-128, 127) as i32,
        act_min,
        act_max: r.range(act_min as i64, 127) as i32,
        multipliers_offset: 0,
        shifts_offset: 0,
        channel_count: c as u32,
        depth_multiplier: 1,
    };
    r.fill(&mut b.input[..ni]);
    r.fill(&mut b.filter[..nf]);
    r.quant(&mut b.mult[..c], &mut b.shift[..c], &mut b.bias[..c]);
    let bias = (r.range(0, 3) != 0).then_some(&b.bias[..c]);
    let (m, sh) = (&b.mult[..c], &b.shift[..c]);
    let (input, filter) = (&b.input[..ni], &b.filter[..nf]);
    dw_ref(
        &p,
        is,
        input,
        fs,
        filter,
        bias,
        m,
        sh,
        os,
        &mut b.want[..no],
    )
    .map_err(|_| "depthwise: the reference rejected a generated case")?;
    b.got[..no].fill(0x55);
    mve::depthwise_conv2d_int8(&p, is, input, fs, filter, bias, m, sh, os, &mut b.got[..no])
        .ok_or("depthwise: Helium kernel declined a shape it handles")?;
    if b.got[..no] != b.want[..no] {
        hprintln!("depthwise mismatch: {:?} {:?} {:?}", p, is, fs);
        return Err("depthwise: output differs from the reference");
    }
    Ok(true)
}

/// Runs one FULLY_CONNECTED case.
fn fc_case(
    r: &mut Rng,
    b: &mut Bufs,
    batches: usize,
    inf: usize,
    outf: usize,
) -> Result<bool, &'static str> {
    let (ni, nf, no) = (batches * inf, inf * outf, batches * outf);
    if ni > MAX_IN || nf > MAX_FILTER || no > MAX_OUT || outf > MAX_CH {
        return Ok(false);
    }
    let per_channel = r.range(0, 1) == 1;
    let count = if per_channel { outf } else { 1 };
    let p = FullyConnectedParams {
        input_offset: r.range(-127, 128) as i32,
        filter_offset: 0,
        output_offset: r.range(-128, 127) as i32,
        act_min: r.range(-128, 0) as i32,
        act_max: r.range(1, 127) as i32,
        multipliers_offset: 0,
        shifts_offset: 0,
        channel_count: count as u32,
        layout: 0,
        packed_offset: 0,
        folded_bias_offset: 0,
    };
    r.fill(&mut b.input[..ni]);
    r.fill(&mut b.filter[..nf]);
    r.quant(
        &mut b.mult[..outf],
        &mut b.shift[..outf],
        &mut b.bias[..outf],
    );
    let bias = (r.range(0, 3) != 0).then_some(&b.bias[..outf]);
    let (m, sh) = (&b.mult[..count], &b.shift[..count]);
    let (input, w) = (&b.input[..ni], &b.filter[..nf]);
    fc_ref(
        &p,
        batches,
        inf,
        outf,
        input,
        w,
        bias,
        m,
        sh,
        &mut b.want[..no],
    )
    .map_err(|_| "fully connected: the reference rejected a generated case")?;
    b.got[..no].fill(0x55);
    mve::fully_connected_int8(
        &p,
        batches,
        inf,
        outf,
        input,
        w,
        bias,
        m,
        sh,
        &mut b.got[..no],
    )
    .ok_or("fully connected: Helium kernel declined a shape it handles")?;
    if b.got[..no] != b.want[..no] {
        hprintln!(
            "fully connected mismatch: {:?} {}x{}->{}",
            p,
            batches,
            inf,
            outf
        );
        return Err("fully connected: output differs from the reference");
    }
    Ok(true)
}

/// Random convolution geometry with `in_c` input channels and `out_c` outputs (filter 1-5).
fn random_shape(r: &mut Rng, in_c: usize, out_c: usize) -> Shape {
    Shape {
        input: [
            r.range(1, 2) as usize,
            r.range(1, 9) as usize,
            r.range(1, 9) as usize,
            in_c,
        ],
        filter: [out_c, r.range(1, 5) as usize, r.range(1, 5) as usize],
        stride: [r.range(1, 3) as usize, r.range(1, 3) as usize],
        dil: [r.range(1, 2) as usize, r.range(1, 2) as usize],
        same: r.range(0, 1) == 1,
    }
}

fn run() -> Result<[usize; 3], &'static str> {
    if !mve::HELIUM {
        return Err("built without Helium: the portable stand-ins would be tested, not MVE");
    }
    let mut b = Bufs {
        input: [0; MAX_IN],
        filter: [0; MAX_FILTER],
        want: [0; MAX_OUT],
        got: [0; MAX_OUT],
        mult: [0; MAX_CH],
        shift: [0; MAX_CH],
        bias: [0; MAX_CH],
    };
    let mut r = Rng(0x4D56_4531);
    let mut ran = [0usize; 3];
    let channels = [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 33, 48, 64, 65];
    // The layers of the MLPerf Tiny models: KWS (DS-CNN) and ResNet-8.
    let models = [
        ([1, 49, 10, 1], [64, 10, 4], [2, 2], true),
        ([1, 25, 5, 64], [64, 1, 1], [1, 1], true),
        ([1, 32, 32, 3], [16, 3, 3], [1, 1], true),
        ([1, 16, 16, 16], [32, 3, 3], [2, 2], true),
        ([1, 8, 8, 32], [64, 3, 3], [1, 1], true),
        ([1, 8, 8, 64], [64, 1, 1], [1, 1], true),
    ];
    for (input, filter, stride, same) in models {
        let s = Shape {
            input,
            filter,
            stride,
            dil: [1, 1],
            same,
        };
        ran[0] += usize::from(conv_case(&mut r, &mut b, &s)?);
    }
    let dw = Shape {
        input: [1, 25, 5, 64],
        filter: [64, 3, 3],
        stride: [1, 1],
        dil: [1, 1],
        same: true,
    };
    ran[1] += usize::from(dw_case(&mut r, &mut b, &dw)?);
    for (i, o) in [(640, 128), (128, 8), (64, 12), (64, 10)] {
        ran[2] += usize::from(fc_case(&mut r, &mut b, 1, i, o)?);
    }
    for _ in 0..CASES {
        let (in_c, out_c) = (r.pick(&channels), r.range(1, 40) as usize);
        let s = random_shape(&mut r, in_c, out_c);
        ran[0] += usize::from(conv_case(&mut r, &mut b, &s)?);
        let c = r.pick(&channels);
        let s = random_shape(&mut r, c, 0);
        ran[1] += usize::from(dw_case(&mut r, &mut b, &s)?);
        let (batches, inf, outf) = (r.range(1, 3) as usize, r.range(1, 700), r.range(1, 60));
        ran[2] += usize::from(fc_case(
            &mut r,
            &mut b,
            batches,
            inf as usize,
            outf as usize,
        )?);
    }
    Ok(ran)
}

#[entry]
fn main() -> ! {
    match run() {
        Ok([conv, dw, fc]) => {
            hprintln!(
                "mve-test: {} conv, {} depthwise, {} fully connected cases: all outputs \
                 byte-identical to the reference kernels",
                conv,
                dw,
                fc
            );
            debug::exit(debug::EXIT_SUCCESS);
        }
        Err(e) => {
            hprintln!("error: {}", e);
            debug::exit(debug::EXIT_FAILURE);
        }
    }
    loop {
        cortex_m::asm::wfi();
    }
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    hprintln!("error: hard fault at pc={:#010x}", frame.pc());
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("error: panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
