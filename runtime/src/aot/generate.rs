//! [`rust_source`]: a validated model as the Rust module described in [`super`].

use core::fmt::Write;
use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

use crate::error::Error;
use crate::format::{DType, Storage, TensorDesc};
use crate::ops::concat::ConcatParams;
use crate::ops::conv::ConvParams;
use crate::ops::depthwise::DepthwiseParams;
use crate::ops::fully_connected::FullyConnectedParams;
use crate::ops::{conv, depthwise, fully_connected, pool, OpCtx, OpKind};
use crate::simd::arm_dsp;
use crate::Model;

/// Values per line of the array literals.
const PER_LINE: usize = 24;

/// The module's constants and the arms of its `invoke_op`, built op by op.
#[derive(Default)]
struct Source {
    statics: String,
    arms: String,
    const_bytes: usize,
}

impl Source {
    /// `static NAME: [TY; n] = [...];` with `values`, counted as `size` bytes each.
    fn array<T: core::fmt::Display>(&mut self, name: &str, ty: &str, size: usize, values: &[T]) {
        self.const_bytes += size * values.len();
        let _ = writeln!(self.statics, "static {name}: [{ty}; {}] = [", values.len());
        for line in values.chunks(PER_LINE) {
            let items: Vec<String> = line.iter().map(|v| format!("{v}")).collect();
            let _ = writeln!(self.statics, "    {},", items.join(", "));
        }
        self.statics.push_str("];\n");
    }

    /// The op's parameter words as `static P{op}`; returns a reference to them.
    fn params(&mut self, ctx: &OpCtx) -> String {
        let words: Vec<u32> = ctx
            .params
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let i = ctx.index;
        self.array(&format!("P{i}"), "u32", 4, &words);
        format!("&P{i}")
    }

    /// The op's weights as `static W{op}`; returns a reference to them.
    fn weights(&mut self, ctx: &OpCtx, values: &[i8]) -> String {
        let name = format!("W{}", ctx.index);
        self.array(&name, "i8", 1, values);
        format!("&{name}")
    }

    /// The op's bias as `static B{op}`: `Some(&B{op})`, or `None` without one.
    fn bias(&mut self, ctx: &OpCtx, values: Option<&[i32]>) -> String {
        let Some(values) = values else {
            return "None".into();
        };
        let i = ctx.index;
        self.i32s(&format!("B{i}"), values);
        format!("Some(&B{i})")
    }

    fn i32s(&mut self, name: &str, values: &[i32]) {
        self.array(name, "i32", 4, values);
    }

    /// Per-channel multipliers and shifts as `static M{op}` and `S{op}`: the descriptor's fields.
    fn channel_quant(&mut self, ctx: &OpCtx, m: &[i32], s: &[i32]) -> String {
        let i = ctx.index;
        self.i32s(&format!("M{i}"), m);
        self.i32s(&format!("S{i}"), s);
        format!("multipliers: &M{i}, shifts: &S{i}")
    }

    /// `static OP{op}: aot::{ty} = aot::{ty} {{ {fields} }};` and the arm calling `function`
    /// with it.
    fn op(&mut self, i: u32, ty: &str, fields: &str, function: &str) -> String {
        let _ = writeln!(
            self.statics,
            "static OP{i}: aot::{ty} = aot::{ty} {{ {fields} }};"
        );
        format!("aot::{function}(arena, &OP{i})")
    }
}

fn words_i32(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks_exact(4)
        .map(|w| i32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect()
}

/// Constant int8 input `k` of the op (its weights).
fn const_i8(ctx: &OpCtx, k: usize) -> Result<Vec<i8>, Error> {
    let t = ctx.required_input(k)?;
    ctx.expect_dtype(t, DType::Int8)?;
    let bytes = ctx.const_input(k)?.ok_or_else(|| unsupported(ctx))?;
    Ok(bytes.iter().map(|&b| b as i8).collect())
}

/// The op's optional constant int32 bias (input 2).
fn bias_values(ctx: &OpCtx) -> Result<Option<Vec<i32>>, Error> {
    if ctx.input_count() < 3 {
        return Ok(None);
    }
    let Some(t) = ctx.input(2)? else {
        return Ok(None);
    };
    ctx.expect_dtype(t, DType::Int32)?;
    let bytes = ctx.const_input(2)?.ok_or_else(|| unsupported(ctx))?;
    Ok(Some(words_i32(bytes)))
}

/// Int8 input `k` of an element-wise op or CONCATENATION as an `aot::Operand`: a constant as
/// `static X{op}_{k}`, or its bytes in the arena, which must not overlap the output's (`out`).
fn operand(src: &mut Source, ctx: &OpCtx, k: usize, out: (usize, usize)) -> Result<String, Error> {
    let t = ctx.required_input(k)?;
    ctx.expect_dtype(t, DType::Int8)?;
    if t.1.storage() == Some(Storage::Const) {
        let name = format!("X{}_{k}", ctx.index);
        src.array(&name, "i8", 1, &const_i8(ctx, k)?);
        return Ok(format!("aot::Operand::Const(&{name})"));
    }
    let (at, len) = arena_range(ctx, t)?;
    if spans_overlap((at, len), out) {
        return Err(ctx.param_error("output overlaps an input (AOT needs a plain plan)"));
    }
    Ok(format!("aot::Operand::Arena({at}, {len})"))
}

/// A tensor's shape.
fn dims(t: &TensorDesc) -> Vec<usize> {
    t.dims().iter().map(|&d| d as usize).collect()
}

/// Elements of a shape.
fn elements(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The function of `super` that runs an op of family `name` (`conv2d_int8`, ...): the fast
/// kernel alone when the DSP-extension kernel takes the op (`dsp`), else the variant that falls
/// back to the reference kernel on DSP builds.
fn kernel(name: &str, dsp: bool) -> String {
    if dsp {
        name.into()
    } else {
        format!("{name}_with_reference")
    }
}

/// The error for an op (or a form of it) that ahead-of-time code does not cover.
fn unsupported(ctx: &OpCtx) -> Error {
    Error::UnsupportedOp {
        op: ctx.index,
        kind: ctx.kind as u16,
    }
}

/// Whether two `(offset, length)` spans of the arena share a byte.
fn spans_overlap(a: (usize, usize), b: (usize, usize)) -> bool {
    crate::model::overlaps(&(a.0..a.0 + a.1), &(b.0..b.0 + b.1))
}

/// A tensor's bytes in the arena: `(offset, length)`.
fn arena_range(ctx: &OpCtx, t: (u32, &TensorDesc)) -> Result<(usize, usize), Error> {
    if t.1.storage() != Some(Storage::Arena) {
        return Err(ctx.shape_error(t.0, "a tensor in the arena"));
    }
    Ok((t.1.offset as usize, t.1.bytes as usize))
}

/// The `aot::Place` of the op's input 0 and output 0, both int8.
fn place(ctx: &OpCtx) -> Result<String, Error> {
    let (input, output) = (ctx.required_input(0)?, ctx.output(0)?);
    ctx.expect_dtype(input, DType::Int8)?;
    ctx.expect_dtype(output, DType::Int8)?;
    place_of(ctx, arena_range(ctx, input)?, arena_range(ctx, output)?)
}

fn place_of(ctx: &OpCtx, input: (usize, usize), output: (usize, usize)) -> Result<String, Error> {
    if spans_overlap(input, output) {
        return Err(ctx.param_error("output overlaps the input (AOT needs a plain plan)"));
    }
    Ok(format!(
        "aot::Place {{ op: {}, input: {input:?}, output: {output:?} }}",
        ctx.index
    ))
}

/// The call that runs op `ctx`, its constants added to `src`.
fn op_call(src: &mut Source, ctx: &OpCtx) -> Result<String, Error> {
    let i = ctx.index;
    // Ops in place or fused need the interpreter's band drivers: plan without them.
    if ctx.desc.flags != 0 {
        return Err(ctx.param_error("flags (in place or fused: AOT needs a plain plan)"));
    }
    Ok(match ctx.kind {
        OpKind::Conv2d => {
            let p: &ConvParams = ctx.params()?;
            let [is, fs, os] = conv::conv_shapes(ctx, p)?;
            if fs[3] != is[3] {
                // Grouped convolution.
                return Err(unsupported(ctx));
            }
            let (m, s) = conv::channel_quant(ctx, p.multipliers_offset, p.shifts_offset, fs[0])?;
            let (w, b) = (const_i8(ctx, 1)?, bias_values(ctx)?);
            // The DSP kernel's own checks, on its portable stand-in (the input's values do not
            // matter to them).
            let (x, mut y) = (vec![0i8; elements(&is)], vec![0i8; elements(&os)]);
            let b_ref = b.as_deref();
            let dsp = arm_dsp::conv2d_int8(p, is, &x, fs, &w, b_ref, m, s, os, &mut y).is_some();
            let fields = window_fields(src, ctx, [is, fs, os], &w, b_ref, m, s)?;
            src.op(i, "WindowOp", &fields, &kernel("conv2d_int8", dsp))
        }
        OpKind::DepthwiseConv2d => {
            let p: &DepthwiseParams = ctx.params()?;
            let [is, fs, os] = depthwise::depthwise_shapes(ctx, p)?;
            let (m, s) = conv::channel_quant(ctx, p.multipliers_offset, p.shifts_offset, fs[3])?;
            let (w, b) = (const_i8(ctx, 1)?, bias_values(ctx)?);
            let (x, mut y) = (vec![0i8; elements(&is)], vec![0i8; elements(&os)]);
            let b_ref = b.as_deref();
            let dsp = arm_dsp::depthwise_conv2d_int8(p, is, &x, fs, &w, b_ref, m, s, os, &mut y)
                .is_some();
            let fields = window_fields(src, ctx, [is, fs, os], &w, b_ref, m, s)?;
            src.op(
                i,
                "WindowOp",
                &fields,
                &kernel("depthwise_conv2d_int8", dsp),
            )
        }
        OpKind::FullyConnected => {
            let p: &FullyConnectedParams = ctx.params()?;
            let (batches, ins, outs) = fully_connected::fc_dims(ctx)?;
            let count = p.channel_count as usize;
            let m = ctx.const_array::<i32>(p.multipliers_offset, count)?;
            let s = ctx.const_array::<i32>(p.shifts_offset, count)?;
            let place = place(ctx)?;
            let (w, b) = (const_i8(ctx, 1)?, bias_values(ctx)?);
            let (x, mut y) = (vec![0i8; batches * ins], vec![0i8; batches * outs]);
            let b_ref = b.as_deref();
            let dsp =
                arm_dsp::fully_connected_int8(p, batches, ins, outs, &x, &w, b_ref, m, s, &mut y)
                    .is_some();
            let (w, b) = (src.weights(ctx, &w), src.bias(ctx, b_ref));
            let q = src.channel_quant(ctx, m, s);
            let p = src.params(ctx);
            let dims = [batches, ins, outs];
            let fields = format!(
                "place: {place}, params: {p}, dims: {dims:?}, weights: {w}, bias: {b}, {q}"
            );
            src.op(i, "FcOp", &fields, &kernel("fully_connected_int8", dsp))
        }
        OpKind::AveragePool2d | OpKind::MaxPool2d => {
            let shapes = [
                pool::shape4(ctx.required_input(0)?.1),
                pool::shape4(ctx.output(0)?.1),
            ];
            let avg = ctx.kind == OpKind::AveragePool2d;
            let place = place(ctx)?;
            let p = src.params(ctx);
            let fields = format!("place: {place}, params: {p}, average: {avg}, shapes: {shapes:?}");
            src.op(i, "PoolOp", &fields, "pool_int8")
        }
        OpKind::Softmax => {
            let depth = ctx.required_input(0)?.1.dims().last().copied().unwrap_or(1);
            let place = place(ctx)?;
            let p = src.params(ctx);
            let fields = format!("place: {place}, params: {p}, depth: {depth}");
            src.op(i, "SoftmaxOp", &fields, "softmax_int8")
        }
        OpKind::Add | OpKind::Sub | OpKind::Mul => {
            let output = ctx.output(0)?;
            ctx.expect_dtype(output, DType::Int8)?;
            let out = arena_range(ctx, output)?;
            let mut operands = Vec::new();
            let mut shapes = Vec::new();
            for k in 0..2 {
                shapes.push(dims(ctx.required_input(k)?.1));
                operands.push(operand(src, ctx, k, out)?);
            }
            shapes.push(dims(output.1));
            let p = src.params(ctx);
            let fields = format!(
                "op: {i}, params: {p}, inputs: [{}], output: {out:?}, shapes: [&{:?}, &{:?}, &{:?}]",
                operands.join(", "),
                shapes[0],
                shapes[1],
                shapes[2]
            );
            let function = match ctx.kind {
                OpKind::Add => "add_int8",
                OpKind::Sub => "sub_int8",
                _ => "mul_int8",
            };
            src.op(i, "ArithOp", &fields, function)
        }
        OpKind::Relu | OpKind::Relu6 | OpKind::Logistic | OpKind::Tanh => {
            let place = place(ctx)?;
            let p = src.params(ctx);
            let function = match ctx.kind {
                OpKind::Relu => "relu_int8",
                OpKind::Relu6 => "relu6_int8",
                OpKind::Logistic => "logistic_int8",
                _ => "tanh_int8",
            };
            let fields = format!("place: {place}, params: {p}");
            src.op(i, "UnaryOp", &fields, function)
        }
        OpKind::Pad | OpKind::Mean => {
            let shape = dims(ctx.required_input(0)?.1);
            let place = place(ctx)?;
            let p = src.params(ctx);
            let function = if ctx.kind == OpKind::Pad {
                "pad_int8"
            } else {
                "mean_int8"
            };
            let fields = format!("place: {place}, params: {p}, dims: &{shape:?}");
            src.op(i, "ShapedOp", &fields, function)
        }
        OpKind::Quantize | OpKind::Dequantize => {
            let (input, output) = (ctx.required_input(0)?, ctx.output(0)?);
            let function = match (input.1.dtype(), output.1.dtype()) {
                (Some(DType::Int8), Some(DType::Int8)) => "requantize_i8_i8",
                (Some(DType::Int8), Some(DType::UInt8)) => "requantize_i8_u8",
                (Some(DType::UInt8), Some(DType::Int8)) => "requantize_u8_i8",
                (Some(DType::Float32), Some(DType::Int8)) => "quantize_f32_i8",
                (Some(DType::Int8), Some(DType::Float32)) => "dequantize_i8_f32",
                _ => return Err(unsupported(ctx)),
            };
            let place = place_of(ctx, arena_range(ctx, input)?, arena_range(ctx, output)?)?;
            let p = src.params(ctx);
            let fields = format!("place: {place}, params: {p}");
            src.op(i, "QuantizeOp", &fields, function)
        }
        OpKind::Concatenation => {
            let p: &ConcatParams = ctx.params()?;
            let axis = p.axis as usize;
            let output = ctx.output(0)?;
            ctx.expect_dtype(output, DType::Int8)?;
            let out = arena_range(ctx, output)?;
            let out_dims = dims(output.1);
            let outer: usize = out_dims.iter().take(axis).product();
            let inner: usize = out_dims.iter().skip(axis + 1).product();
            let row = |t: &TensorDesc| t.dims().get(axis).map_or(0, |&d| d as usize) * inner;
            let mut inputs = Vec::new();
            for k in 0..ctx.input_count() {
                let t = ctx.required_input(k)?;
                let operand = operand(src, ctx, k, out)?;
                inputs.push(format!("({operand}, {})", row(t.1)));
            }
            let _ = writeln!(
                src.statics,
                "static IN{i}: [(aot::Operand, usize); {}] = [{}];",
                inputs.len(),
                inputs.join(", ")
            );
            let fields = format!(
                "op: {i}, inputs: &IN{i}, output: {out:?}, outer: {outer}, out_row: {}",
                row(output.1)
            );
            src.op(i, "ConcatOp", &fields, "concat_int8")
        }
        OpKind::Reshape | OpKind::Squeeze => {
            let (input, output) = (ctx.required_input(0)?, ctx.output(0)?);
            let (x, y) = (arena_range(ctx, input)?, arena_range(ctx, output)?);
            if x == y {
                // The data already is where the output lives.
                "Ok(())".into()
            } else {
                let place = place_of(ctx, x, y)?;
                let _ = writeln!(src.statics, "static OP{i}: aot::Place = {place};");
                format!("aot::copy(arena, &OP{i})")
            }
        }
        _ => return Err(unsupported(ctx)),
    })
}

/// The fields of a [`super::WindowOp`] (its constants added to `src`).
fn window_fields(
    src: &mut Source,
    ctx: &OpCtx,
    shapes: [[usize; 4]; 3],
    filter: &[i8],
    bias: Option<&[i32]>,
    m: &[i32],
    s: &[i32],
) -> Result<String, Error> {
    let place = place(ctx)?;
    let (w, b) = (src.weights(ctx, filter), src.bias(ctx, bias));
    let q = src.channel_quant(ctx, m, s);
    let p = src.params(ctx);
    Ok(format!(
        "place: {place}, params: {p}, shapes: {shapes:?}, filter: {w}, bias: {b}, {q}"
    ))
}

/// The `(offset, length)` of each of the model's inputs (`outputs`: outputs) in the arena.
fn io_ranges(model: &Model, outputs: bool) -> Result<Vec<(usize, usize)>, Error> {
    let n = if outputs {
        model.output_count()
    } else {
        model.input_count()
    };
    (0..n)
        .map(|i| {
            let (t, d) = if outputs {
                (model.output_tensor(i), model.output(i))
            } else {
                (model.input_tensor(i), model.input(i))
            };
            match (t, d) {
                (Some(_), Some(d)) if d.storage() == Some(Storage::Arena) => {
                    Ok((d.offset as usize, d.bytes as usize))
                }
                _ => Err(Error::InvalidField {
                    at: crate::Location::Header,
                    field: "model input or output not in the arena",
                }),
            }
        })
        .collect()
}

/// A model compiled ahead of time: the Rust module and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AotSource {
    /// The module's source.
    pub code: String,
    /// Bytes of its constants and parameters (`CONST_BYTES`): the model's flash.
    pub const_bytes: usize,
}

/// Writes `model` (already validated by [`Model::from_bytes`]) as a Rust module that runs it
/// with the kernels called directly (see [`super`]): the constants `ARENA_BYTES`, `INPUTS` and
/// `OUTPUTS` (each model input's and output's offset and length in the arena), `OPS` (the op
/// names in order) and `CONST_BYTES` (the bytes of the arrays: the model's flash), and the
/// functions `invoke_op(arena, i)` and `invoke(arena)`. An op the module does not cover, or a
/// plan with ops in place or fused, is an [`Error`] naming the op.
pub fn rust_source(model: &Model) -> Result<AotSource, Error> {
    let mut src = Source::default();
    let mut names = Vec::new();
    for i in 0..model.ops().len() {
        let ctx = model.op_ctx(i as u32)?;
        let call = op_call(&mut src, &ctx)?;
        let _ = writeln!(src.arms, "        {i} => {call},");
        names.push(format!("{:?}", ctx.kind.name()));
    }
    let (inputs, outputs) = (io_ranges(model, false)?, io_ranges(model, true)?);
    let mut out = String::new();
    let _ = write!(
        out,
        "// Generated by mote_runtime::aot::rust_source (mote-runtime {version}): the model's ops\n\
         // as direct kernel calls. Do not edit; regenerate from the .mote file.\n\
         use mote_runtime::aot;\n\n\
         /// Bytes of the arena the model runs in.\n\
         pub const ARENA_BYTES: usize = {arena};\n\
         /// Each model input's bytes in the arena: offset and length.\n\
         pub const INPUTS: [(usize, usize); {ni}] = {inputs:?};\n\
         /// Each model output's bytes in the arena: offset and length.\n\
         pub const OUTPUTS: [(usize, usize); {no}] = {outputs:?};\n\
         /// The ops, in execution order.\n\
         pub const OPS: [&str; {nops}] = [{names}];\n\
         /// Bytes of the constants and parameters below: the model's flash.\n\
         pub const CONST_BYTES: usize = {const_bytes};\n\n\
         /// Runs op `op` alone (its inputs must already be in `arena`).\n\
         pub fn invoke_op(arena: &mut [u8], op: usize) -> Result<(), mote_runtime::Error> {{\n\
         \x20   match op {{\n{arms}\
         \x20       _ => Err(aot::no_such_op(op)),\n\
         \x20   }}\n\
         }}\n\n\
         /// Runs every op once, in order.\n\
         pub fn invoke(arena: &mut [u8]) -> Result<(), mote_runtime::Error> {{\n\
         \x20   for op in 0..OPS.len() {{\n\
         \x20       invoke_op(arena, op)?;\n\
         \x20   }}\n\
         \x20   Ok(())\n\
         }}\n\n{statics}",
        version = env!("CARGO_PKG_VERSION"),
        arena = model.arena_bytes(),
        ni = inputs.len(),
        no = outputs.len(),
        nops = names.len(),
        names = names.join(", "),
        const_bytes = src.const_bytes,
        arms = src.arms,
        statics = src.statics,
    );
    Ok(AotSource {
        code: out,
        const_bytes: src.const_bytes,
    })
}
