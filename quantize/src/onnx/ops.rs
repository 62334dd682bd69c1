//! Float operators: one converter per ONNX operator.

use std::rc::Rc;

use onnx_ir::NodeProto;

use super::builder::{input_name, Builder, Value};
use super::layout::{broadcast, moved_axis, nhwc_shape, permute, NCHW_TO_NHWC_AXIS, TO_NHWC};
use super::proto::{checked_elements, tensor_const, Attrs, Const};
use super::qdq;
use crate::error::CompileError;
use crate::ir::{Activation, Conv2dOptions, DataType, Operator, Padding, Pool2dOptions, TensorId};

type R<T = ()> = Result<T, CompileError>;

/// The ONNX operators the importer converts.
pub const SUPPORTED: &[&str] = &[
    "Conv",
    "Gemm",
    "MatMul",
    "BatchNormalization",
    "Relu",
    "Sigmoid",
    "Tanh",
    "Clip",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Add",
    "Sub",
    "Mul",
    "Concat",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Softmax",
    "Pad",
    "Identity",
    "Dropout",
    "Constant",
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
];

/// Converts one node.
pub fn convert(b: &mut Builder, n: &NodeProto) -> R {
    if !SUPPORTED.contains(&n.op_type.as_str()) {
        return Err(b.unsupported(format!("no converter for the ONNX operator {}", n.op_type)));
    }
    let a = Attrs(&n.attribute);
    let known: &[&str] = match n.op_type.as_str() {
        "Conv" | "QLinearConv" => &[
            "auto_pad",
            "dilations",
            "group",
            "kernel_shape",
            "pads",
            "strides",
        ],
        "Gemm" => &["alpha", "beta", "transA", "transB"],
        "BatchNormalization" => &["epsilon", "momentum", "training_mode"],
        "MaxPool" => &[
            "auto_pad",
            "ceil_mode",
            "dilations",
            "kernel_shape",
            "pads",
            "storage_order",
            "strides",
        ],
        "AveragePool" => &[
            "auto_pad",
            "ceil_mode",
            "count_include_pad",
            "dilations",
            "kernel_shape",
            "pads",
            "strides",
        ],
        "Concat" | "Flatten" | "Softmax" => &["axis"],
        "Reshape" => &["allowzero"],
        "Pad" => &["mode"],
        "Dropout" => &["seed"],
        "Constant" => &[
            "value",
            "value_float",
            "value_floats",
            "value_int",
            "value_ints",
        ],
        "QuantizeLinear" => &["axis", "saturate", "block_size", "output_dtype"],
        "DequantizeLinear" => &["axis", "block_size"],
        _ => &[],
    };
    if let Some(x) = a.unknown(known) {
        return Err(b.unsupported(format!("attribute {x:?}")));
    }
    // Only the first output of any operator is produced.
    for (k, o) in n.output.iter().enumerate().skip(1) {
        if !o.is_empty() && b.consumers.get(o).copied().unwrap_or(0) > 0 {
            return Err(b.unsupported(format!(
                "its output {k} ({o:?}) is used; only the first output is supported"
            )));
        }
    }
    let ins = &n.input;
    let out = n
        .output
        .first()
        .map(String::as_str)
        .ok_or_else(|| b.invalid("no outputs"))?;
    match n.op_type.as_str() {
        "Conv" => conv(b, &a, ins, out),
        "Gemm" => gemm(b, &a, ins, out),
        "MatMul" => matmul(b, ins, out),
        "BatchNormalization" => batch_norm(b, &a, ins, out),
        "Relu" => unary(b, ins, out, Operator::Relu),
        "Sigmoid" => unary(b, ins, out, Operator::Logistic),
        "Tanh" => unary(b, ins, out, Operator::Tanh),
        "Clip" => clip(b, ins, out),
        "MaxPool" | "AveragePool" => pool(b, &a, ins, out),
        "GlobalAveragePool" | "GlobalMaxPool" => global_pool(b, ins, out),
        "Add" | "Sub" | "Mul" => arith(b, ins, out),
        "Concat" => concat(b, &a, ins, out),
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => reshape(b, &a, ins, out),
        "Softmax" => softmax(b, &a, ins, out),
        "Pad" => pad(b, &a, ins, out),
        "Identity" | "Dropout" => {
            if n.op_type == "Dropout" {
                if let Some(t) = b.opt_konst(ins, 2)? {
                    if t.ints().is_some_and(|v| v.iter().any(|x| *x != 0)) {
                        return Err(b.unsupported("training_mode = true"));
                    }
                }
            }
            let name = input_name(ins, 0).ok_or_else(|| b.invalid("input 0 is absent"))?;
            let v = b.value(name)?.clone();
            b.define(out, v)
        }
        "Constant" => constant(b, &a, out),
        "QuantizeLinear" | "DequantizeLinear" | "QLinearConv" | "QLinearMatMul" => {
            qdq::convert(b, &a, n.op_type.as_str(), ins, out)
        }
        other => Err(b.unsupported(format!("no converter for the ONNX operator {other}"))),
    }
}

/// Largest kernel size, stride, dilation or pad accepted (keeps all shape arithmetic far from
/// overflow).
const MAX_ATTR: i64 = 1 << 20;

/// Reads a list attribute of `len` non-negative (`min` or more) values, or `default`.
fn list(b: &Builder, a: &Attrs, name: &str, len: usize, default: usize, min: i64) -> R<Vec<usize>> {
    match a.ints(name).map_err(|e| b.invalid(e))? {
        None => Ok(vec![default; len]),
        Some(v) => {
            if v.len() != len || v.iter().any(|x| *x < min || *x > MAX_ATTR) {
                return Err(b.invalid(format!(
                    "attribute {name} is {v:?}; expected {len} values in {min}..={MAX_ATTR}"
                )));
            }
            Ok(v.iter().map(|x| *x as usize).collect())
        }
    }
}

/// The spatial padding of a conv or pool on an `hw` input: `(begin_h, begin_w, end_h, end_w)`
/// in ONNX order.
fn onnx_pads(
    b: &Builder,
    a: &Attrs,
    hw: [usize; 2],
    k: [usize; 2],
    s: &[usize],
    d: &[usize],
) -> R<[usize; 4]> {
    let auto = a.string("auto_pad").map_err(|e| b.invalid(e))?;
    let same = |lower: bool| {
        let mut p = [0usize; 4];
        for i in 0..2 {
            let out = hw[i].div_ceil(s[i]);
            let eff = k[i].saturating_sub(1) * d[i] + 1;
            let total = (out.saturating_sub(1) * s[i] + eff).saturating_sub(hw[i]);
            let small = total / 2;
            let (begin, end) = if lower {
                (total - small, small)
            } else {
                (small, total - small)
            };
            p[i] = begin;
            p[i + 2] = end;
        }
        p
    };
    match auto.as_deref().unwrap_or("NOTSET") {
        "NOTSET" | "" => {
            let p = list(b, a, "pads", 4, 0, 0)?;
            Ok([p[0], p[1], p[2], p[3]])
        }
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" => Ok(same(false)),
        "SAME_LOWER" => Ok(same(true)),
        other => Err(b.invalid(format!("auto_pad {other:?}"))),
    }
}

/// The IR padding equal to `pads`, if any.
fn ir_padding(
    pads: [usize; 4],
    hw: [usize; 2],
    k: [usize; 2],
    s: &[usize],
    d: &[usize],
) -> Option<Padding> {
    if pads == [0; 4] {
        return Some(Padding::Valid);
    }
    for i in 0..2 {
        // TFLite SAME: output ceil(in / stride), the extra pad at the end.
        let out = hw[i].div_ceil(s[i]);
        let total = (out.saturating_sub(1) * s[i] + k[i].saturating_sub(1) * d[i] + 1)
            .saturating_sub(hw[i]);
        let (begin, end) = (total / 2, total - total / 2);
        if (pads[i], pads[i + 2]) != (begin, end) {
            return None;
        }
    }
    Some(Padding::Same)
}

/// Output size of one spatial dimension.
fn out_size(
    b: &Builder,
    inp: usize,
    pad: usize,
    k: usize,
    s: usize,
    d: usize,
    ceil: bool,
) -> R<usize> {
    let eff = k.saturating_sub(1) * d + 1;
    let span = inp + pad;
    if span < eff {
        return Err(b.invalid(format!(
            "window {eff} is larger than the padded input {span}"
        )));
    }
    Ok(if ceil {
        (span - eff).div_ceil(s) + 1
    } else {
        (span - eff) / s + 1
    })
}

/// Refuses a tensor that holds a flattened NCHW tensor in NHWC order.
fn no_flat(b: &Builder, id: TensorId) -> R {
    if b.flat.contains_key(&id) {
        return Err(b.unsupported(
            "its input is an NCHW tensor flattened with spatial size > 1, which only \
             Gemm/MatMul can consume (the IR has no transpose)",
        ));
    }
    Ok(())
}

/// A rank-4 activation input (NHWC in the IR).
fn act4(b: &mut Builder, ins: &[String], what: &str) -> R<(TensorId, [usize; 4])> {
    let x = b.act(ins, 0)?;
    let s = b.shape(x);
    if s.len() != 4 {
        return Err(b.unsupported(format!(
            "only 2-D {what} (rank-4 input) are supported; the input has rank {}",
            s.len()
        )));
    }
    Ok((x, [s[0], s[1], s[2], s[3]]))
}

/// Inserts a zero Pad node (NHWC) before a conv whose pads are neither SAME nor VALID.
fn explicit_pad(
    b: &mut Builder,
    x: TensorId,
    xs: [usize; 4],
    pads: [usize; 4],
) -> R<(TensorId, [usize; 4])> {
    let [t, l, bo, r] = pads.map(|p| p as i32);
    let pid = b.i32_const("pads", vec![4, 2], &[0, 0, t, bo, l, r, 0, 0]);
    let shape = [
        xs[0],
        xs[1] + pads[0] + pads[2],
        xs[2] + pads[1] + pads[3],
        xs[3],
    ];
    let name = format!("{}/pad", b.g.tensors[x].name);
    let y = b.new_act(&name, shape.to_vec(), b.g.tensors[x].dtype)?;
    b.g.tensors[y].quant = b.g.tensors[x].quant.clone();
    b.node(Operator::Pad, vec![Some(x), Some(pid)], vec![y]);
    Ok((y, shape))
}

/// Conv (also used by QLinearConv with int8 constants).
pub fn conv_core(
    b: &mut Builder,
    a: &Attrs,
    x: TensorId,
    w: &Const,
    bias: Option<&Const>,
    out: &str,
) -> R<TensorId> {
    no_flat(b, x)?;
    let xs = b.shape(x);
    if xs.len() != 4 {
        return Err(b.unsupported(format!(
            "only 2-D convolutions (rank-4 input) are supported; the input has rank {}",
            xs.len()
        )));
    }
    let mut xs = [xs[0], xs[1], xs[2], xs[3]];
    if w.dims.len() != 4 {
        return Err(b.invalid(format!("filter shape {:?} is not rank 4", w.dims)));
    }
    let (m, cg, kh, kw) = (w.dims[0], w.dims[1], w.dims[2], w.dims[3]);
    let c = xs[3];
    if xs.contains(&0) || w.dims.contains(&0) || kh > MAX_ATTR as usize || kw > MAX_ATTR as usize {
        return Err(b.invalid(format!(
            "input {:?} or filter {:?} has a zero (or huge) dimension",
            b.onnx_shape(x),
            w.dims
        )));
    }
    let group = a.int("group", 1).map_err(|e| b.invalid(e))?;
    if !(1..=c as i64).contains(&group)
        || c % group as usize != 0
        || cg.checked_mul(group as usize) != Some(c)
        || m % group as usize != 0
    {
        return Err(b.invalid(format!(
            "group {group} does not fit {c} input channels and filter {:?}",
            w.dims
        )));
    }
    let group = group as usize;
    if let Some(k) = a.ints("kernel_shape").map_err(|e| b.invalid(e))? {
        if k != [kh as i64, kw as i64] {
            return Err(b.invalid(format!(
                "kernel_shape {k:?} differs from the filter {:?}",
                w.dims
            )));
        }
    }
    let s = list(b, a, "strides", 2, 1, 1)?;
    let d = list(b, a, "dilations", 2, 1, 1)?;
    let hw = [xs[1], xs[2]];
    let pads = onnx_pads(b, a, hw, [kh, kw], &s, &d)?;
    let ho = out_size(b, xs[1], pads[0] + pads[2], kh, s[0], d[0], false)?;
    let wo = out_size(b, xs[2], pads[1] + pads[3], kw, s[1], d[1], false)?;
    let mut x = x;
    let padding = match ir_padding(pads, hw, [kh, kw], &s, &d) {
        Some(p) => p,
        None => {
            (x, xs) = explicit_pad(b, x, xs, pads)?;
            Padding::Valid
        }
    };
    let depthwise = group > 1 && group == c && cg == 1;
    if group > 1 && !depthwise {
        return Err(b.unsupported(format!(
            "grouped convolution (group {group} of {c} channels); only group 1 and depthwise \
             (group = channels) are supported"
        )));
    }
    let perm: [usize; 4] = if depthwise { [1, 2, 3, 0] } else { TO_NHWC };
    let (data, dims) = permute(&w.data, w.dtype.size(), &w.dims, &perm);
    let quant = w.quant.clone().map(|mut q| {
        q.axis = moved_axis(&perm, q.axis);
        q
    });
    let wid = b.new_const(&format!("{out}/filter"), dims, w.dtype, data, quant);
    let bid = match bias {
        Some(bc) => {
            if bc.elements() != m {
                return Err(b.invalid(format!(
                    "bias has {} values for {m} channels",
                    bc.elements()
                )));
            }
            let mut bc = bc.clone();
            bc.dims = vec![m];
            Some(b.materialize(&format!("{out}/bias"), &bc)?)
        }
        None => None,
    };
    let o = Conv2dOptions {
        padding,
        stride_h: s[0],
        stride_w: s[1],
        dilation_h: d[0],
        dilation_w: d[1],
        activation: Activation::None,
        depth_multiplier: if depthwise { m / c } else { 1 },
    };
    let y = b.new_act(out, vec![xs[0], ho, wo, m], DataType::Float32)?;
    let op = if depthwise {
        Operator::DepthwiseConv2d(o)
    } else {
        Operator::Conv2d(o)
    };
    b.node(op, vec![Some(x), Some(wid), bid], vec![y]);
    Ok(y)
}

fn conv(b: &mut Builder, a: &Attrs, ins: &[String], out: &str) -> R {
    let x = b.act(ins, 0)?;
    let w = b.konst(ins, 1)?;
    let bias = b.opt_konst(ins, 2)?;
    let y = conv_core(b, a, x, &w, bias.as_deref(), out)?;
    b.define(out, Value::Act(y))
}

/// Permutes the columns of row-major `[rows, C·H·W]` weights from NCHW to NHWC order.
fn fold_flat_columns(data: &[u8], esize: usize, rows: usize, [c, h, w]: [usize; 3]) -> Vec<u8> {
    let k = c * h * w;
    let mut out = Vec::with_capacity(data.len());
    for r in 0..rows {
        for hh in 0..h {
            for ww in 0..w {
                for cc in 0..c {
                    let src = (r * k + cc * h * w + hh * w + ww) * esize;
                    out.extend_from_slice(&data[src..src + esize]);
                }
            }
        }
    }
    out
}

/// FullyConnected from `x` (`[.., K]`) and `[N, K]` weights (also used by QLinearMatMul).
pub fn fc_core(
    b: &mut Builder,
    x: TensorId,
    mut w: Const,
    bias: Option<Const>,
    out: &str,
) -> R<TensorId> {
    let xs = b.shape(x);
    if xs.len() == 4 || xs.is_empty() {
        return Err(b.unsupported(format!(
            "a matrix product over the last axis of a rank-{} activation (rank-4 tensors are \
             NHWC in mote)",
            xs.len()
        )));
    }
    let (n, k) = (w.dims[0], w.dims[1]);
    if xs[xs.len() - 1] != k {
        return Err(b.invalid(format!(
            "input {:?} does not fit weights of {k} inputs",
            b.onnx_shape(x)
        )));
    }
    if let Some(chw) = b.flat.get(&x).copied() {
        w.data = fold_flat_columns(&w.data, w.dtype.size(), n, chw);
    }
    let wid = b.new_const(
        &format!("{out}/weights"),
        vec![n, k],
        w.dtype,
        w.data,
        w.quant,
    );
    let bid = match bias {
        Some(bc) => Some(b.materialize(&format!("{out}/bias"), &bc)?),
        None => None,
    };
    let mut shape = xs.clone();
    *shape.last_mut().unwrap_or(&mut 0) = n;
    let y = b.new_act(out, shape, DataType::Float32)?;
    b.node(
        Operator::FullyConnected {
            activation: Activation::None,
            keep_num_dims: xs.len() > 2,
        },
        vec![Some(x), Some(wid), bid],
        vec![y],
    );
    Ok(y)
}

/// `[K, N]` (ONNX MatMul B) → `[N, K]`, keeping quantization (axis moved).
pub fn transpose_kn(w: &Const) -> Const {
    let (data, dims) = permute(&w.data, w.dtype.size(), &w.dims, &[1, 0]);
    Const {
        dims,
        dtype: w.dtype,
        data,
        quant: w.quant.clone().map(|mut q| {
            q.axis = moved_axis(&[1, 0], q.axis);
            q
        }),
    }
}

fn scaled(b: &Builder, c: &Const, f: f32, what: &str) -> R<Const> {
    if f == 1.0 {
        return Ok(c.clone());
    }
    match (c.quant.is_some(), c.f32s()) {
        (false, Some(v)) if matches!(c.dtype, DataType::Float32 | DataType::Float16) => {
            let v: Vec<f32> = v.iter().map(|x| x * f).collect();
            Ok(Const::from_f32(c.dims.clone(), &v))
        }
        _ => Err(b.unsupported(format!("{what} ≠ 1 on quantized or integer constants"))),
    }
}

fn gemm(b: &mut Builder, a: &Attrs, ins: &[String], out: &str) -> R {
    let x = b.act(ins, 0)?;
    if a.int("transA", 0).map_err(|e| b.invalid(e))? != 0 {
        return Err(b.unsupported("transA = 1"));
    }
    let xs = b.shape(x);
    if xs.len() != 2 {
        return Err(b.invalid(format!("input A has rank {}, Gemm needs 2", xs.len())));
    }
    let bm = b.konst(ins, 1)?;
    if bm.dims.len() != 2 {
        return Err(b.invalid(format!("B has shape {:?}, Gemm needs rank 2", bm.dims)));
    }
    let alpha = a.float("alpha", 1.0).map_err(|e| b.invalid(e))?;
    let beta = a.float("beta", 1.0).map_err(|e| b.invalid(e))?;
    let w = if a.int("transB", 0).map_err(|e| b.invalid(e))? != 0 {
        (*bm).clone()
    } else {
        transpose_kn(&bm)
    };
    let w = scaled(b, &w, alpha, "alpha")?;
    let n = w.dims[0];
    let bias = match b.opt_konst(ins, 2)? {
        None => None,
        Some(c) => {
            let mut c = scaled(b, &c, beta, "beta")?;
            let e = c.elements();
            if e == 1 && n != 1 {
                let v = c
                    .f32s()
                    .ok_or_else(|| b.unsupported("a broadcast integer bias"))?;
                c = Const::from_f32(vec![n], &vec![v[0]; n]);
            } else if e != n || c.dims.len() > 2 || (c.dims.len() == 2 && c.dims[0] != 1) {
                return Err(b.unsupported(format!(
                    "bias C of shape {:?}: only [N], [1, N] or a scalar",
                    c.dims
                )));
            }
            c.dims = vec![n];
            Some(c)
        }
    };
    let y = fc_core(b, x, w, bias, out)?;
    b.define(out, Value::Act(y))
}

fn matmul(b: &mut Builder, ins: &[String], out: &str) -> R {
    let x = b.act(ins, 0)?;
    let w = b.konst(ins, 1)?;
    if w.dims.len() != 2 {
        return Err(b.unsupported(format!(
            "B of shape {:?}: only a constant rank-2 B is supported",
            w.dims
        )));
    }
    let y = fc_core(b, x, transpose_kn(&w), None, out)?;
    b.define(out, Value::Act(y))
}

fn batch_norm(b: &mut Builder, a: &Attrs, ins: &[String], out: &str) -> R {
    if a.int("training_mode", 0).map_err(|e| b.invalid(e))? != 0 {
        return Err(b.unsupported("training_mode = 1"));
    }
    let eps = a.float("epsilon", 1e-5).map_err(|e| b.invalid(e))?;
    let x = b.act(ins, 0)?;
    no_flat(b, x)?;
    let xs = b.onnx_shape(x);
    if xs.len() < 2 {
        return Err(b.invalid(format!("input of rank {}", xs.len())));
    }
    let c = xs[1];
    let mut p = Vec::new();
    for k in 1..5 {
        let t = b.konst(ins, k)?;
        let v = t
            .f32s()
            .filter(|v| v.len() == c && matches!(t.dtype, DataType::Float32 | DataType::Float16))
            .ok_or_else(|| b.invalid(format!("input {k} is not {c} float values")))?;
        p.push(v);
    }
    let factor: Vec<f32> = (0..c).map(|i| p[0][i] / (p[3][i] + eps).sqrt()).collect();
    let shift: Vec<f32> = (0..c).map(|i| p[1][i] - p[2][i] * factor[i]).collect();
    // Fold into the producer when this is its only consumer.
    let single = input_name(ins, 0)
        .and_then(|nm| b.consumers.get(nm))
        .copied()
        == Some(1);
    let producer =
        b.g.nodes
            .iter()
            .rposition(|n| n.outputs.first() == Some(&x));
    if let (true, Some(pi)) = (single, producer) {
        if fold_bn(b, pi, &factor, &shift) {
            return b.define(out, Value::Act(x));
        }
    }
    // Mul + Add with per-channel constants.
    let ir_rank = b.shape(x).len();
    let cshape = if ir_rank == 4 {
        vec![c]
    } else {
        let mut s = vec![c];
        s.extend(std::iter::repeat_n(1, xs.len() - 2));
        s
    };
    let shape = b.shape(x);
    let fid = b.f32_const(&format!("{out}/scale"), cshape.clone(), &factor);
    let sid = b.f32_const(&format!("{out}/shift"), cshape, &shift);
    let m = b.new_act(&format!("{out}/mul"), shape.clone(), DataType::Float32)?;
    b.node(
        Operator::Mul {
            activation: Activation::None,
        },
        vec![Some(x), Some(fid)],
        vec![m],
    );
    let y = b.new_act(out, shape, DataType::Float32)?;
    b.node(
        Operator::Add {
            activation: Activation::None,
        },
        vec![Some(m), Some(sid)],
        vec![y],
    );
    b.define(out, Value::Act(y))
}

/// Folds `y = x·factor + shift` (per output channel) into node `pi` when it is a float
/// Conv/Depthwise/FullyConnected without activation. Returns whether it did.
fn fold_bn(b: &mut Builder, pi: usize, factor: &[f32], shift: &[f32]) -> bool {
    let node = b.g.nodes[pi].clone();
    let depthwise = match &node.op {
        Operator::Conv2d(o) if o.activation == Activation::None => false,
        Operator::DepthwiseConv2d(o) if o.activation == Activation::None => true,
        Operator::FullyConnected {
            activation: Activation::None,
            ..
        } => false,
        _ => return false,
    };
    let Some(Some(wid)) = node.inputs.get(1).copied() else {
        return false;
    };
    let w = &b.g.tensors[wid];
    let c = factor.len();
    if w.dtype != DataType::Float32 || w.quant.is_some() || w.data.is_none() {
        return false;
    }
    let out_ch = if depthwise {
        w.shape.last()
    } else {
        w.shape.first()
    };
    if out_ch != Some(&c) {
        return false;
    }
    let bias = match node.inputs.get(2).copied().flatten() {
        Some(bid) => {
            let t = &b.g.tensors[bid];
            if t.dtype != DataType::Float32 || t.quant.is_some() {
                return false;
            }
            match t.data.as_deref().map(le_f32s) {
                Some(v) if v.len() == c => Some(v),
                _ => return false,
            }
        }
        None => None,
    };
    let Some(mut wv) = w.data.as_deref().map(le_f32s) else {
        return false;
    };
    let per = wv.len() / c;
    for (i, v) in wv.iter_mut().enumerate() {
        let ch = if depthwise { i % c } else { i / per.max(1) };
        *v *= factor[ch];
    }
    let nb: Vec<f32> = (0..c)
        .map(|i| bias.as_ref().map_or(0.0, |bv| bv[i]) * factor[i] + shift[i])
        .collect();
    b.g.tensors[wid].data = Some(wv.iter().flat_map(|x| x.to_le_bytes()).collect());
    let name = format!("{}/bias", b.g.tensors[node.outputs[0]].name);
    let bid = b.f32_const(&name, vec![c], &nb);
    let inputs = &mut b.g.nodes[pi].inputs;
    inputs.resize(3, None);
    inputs[2] = Some(bid);
    true
}

fn unary(b: &mut Builder, ins: &[String], out: &str, op: Operator) -> R {
    let x = b.act(ins, 0)?;
    let shape = b.shape(x);
    let y = b.new_act(out, shape, DataType::Float32)?;
    if let Some(f) = b.flat.get(&x).copied() {
        b.flat.insert(y, f);
    }
    b.node(op, vec![Some(x)], vec![y]);
    b.define(out, Value::Act(y))
}

fn clip(b: &mut Builder, ins: &[String], out: &str) -> R {
    let bound = |b: &Builder, k: usize, default: f32| -> R<f32> {
        match b.opt_konst(ins, k)? {
            None => Ok(default),
            Some(c) => c
                .f32s()
                .filter(|v| v.len() == 1)
                .map(|v| v[0])
                .ok_or_else(|| b.invalid(format!("input {k} is not a scalar"))),
        }
    };
    let lo = bound(b, 1, f32::NEG_INFINITY)?;
    let hi = bound(b, 2, f32::INFINITY)?;
    let op = match (lo, hi) {
        (0.0, 6.0) => Operator::Relu6,
        (0.0, h) if h == f32::INFINITY => Operator::Relu,
        _ => {
            return Err(b.unsupported(format!(
                "Clip to [{lo}, {hi}]: only [0, 6] (RELU6) and [0, ∞) (RELU) are supported"
            )))
        }
    };
    unary(b, ins, out, op)
}

fn pool(b: &mut Builder, a: &Attrs, ins: &[String], out: &str) -> R {
    let (x, xs) = act4(b, ins, "pools")?;
    no_flat(b, x)?;
    if xs.contains(&0) {
        return Err(b.invalid(format!("input {:?} has a zero dimension", b.onnx_shape(x))));
    }
    let max = b.op == "MaxPool";
    if a.ints("kernel_shape").map_err(|e| b.invalid(e))?.is_none() {
        return Err(b.invalid("attribute kernel_shape is required"));
    }
    let k = list(b, a, "kernel_shape", 2, 1, 1)?;
    let s = list(b, a, "strides", 2, 1, 1)?;
    let d = list(b, a, "dilations", 2, 1, 1)?;
    if d != [1, 1] {
        return Err(b.unsupported(format!("dilations {d:?}")));
    }
    if max && a.int("storage_order", 0).map_err(|e| b.invalid(e))? != 0 {
        return Err(b.unsupported("storage_order = 1"));
    }
    let hw = [xs[1], xs[2]];
    let pads = onnx_pads(b, a, hw, [k[0], k[1]], &s, &d)?;
    let ceil = a.int("ceil_mode", 0).map_err(|e| b.invalid(e))? != 0;
    let mut o = [0; 2];
    for i in 0..2 {
        o[i] = out_size(b, hw[i], pads[i] + pads[i + 2], k[i], s[i], 1, ceil)?;
        if ceil && o[i] != out_size(b, hw[i], pads[i] + pads[i + 2], k[i], s[i], 1, false)? {
            return Err(b.unsupported("ceil_mode = 1 where it changes the output size"));
        }
    }
    let padding = ir_padding(pads, hw, [k[0], k[1]], &s, &d).ok_or_else(|| {
        b.unsupported(format!(
            "pads {pads:?} are neither SAME nor VALID for this input"
        ))
    })?;
    if !max
        && padding == Padding::Same
        && a.int("count_include_pad", 0).map_err(|e| b.invalid(e))? != 0
    {
        return Err(b.unsupported("count_include_pad = 1 with padding"));
    }
    let p = Pool2dOptions {
        padding,
        stride_h: s[0],
        stride_w: s[1],
        filter_h: k[0],
        filter_w: k[1],
        activation: Activation::None,
    };
    let y = b.new_act(out, vec![xs[0], o[0], o[1], xs[3]], DataType::Float32)?;
    let op = if max {
        Operator::MaxPool2d(p)
    } else {
        Operator::AveragePool2d(p)
    };
    b.node(op, vec![Some(x)], vec![y]);
    b.define(out, Value::Act(y))
}

fn global_pool(b: &mut Builder, ins: &[String], out: &str) -> R {
    let (x, xs) = act4(b, ins, "pools")?;
    if xs.contains(&0) {
        return Err(b.invalid(format!("input {:?} has a zero dimension", b.onnx_shape(x))));
    }
    let y = b.new_act(out, vec![xs[0], 1, 1, xs[3]], DataType::Float32)?;
    if b.op == "GlobalAveragePool" {
        let axes = b.i32_const(&format!("{out}/axes"), vec![2], &[1, 2]);
        b.node(
            Operator::Mean { keep_dims: true },
            vec![Some(x), Some(axes)],
            vec![y],
        );
    } else {
        let p = Pool2dOptions {
            padding: Padding::Valid,
            stride_h: 1,
            stride_w: 1,
            filter_h: xs[1],
            filter_w: xs[2],
            activation: Activation::None,
        };
        b.node(Operator::MaxPool2d(p), vec![Some(x)], vec![y]);
    }
    b.define(out, Value::Act(y))
}

/// Places constant `c` as an operand of an element-wise op whose other operand is `other`.
fn elementwise_const(b: &mut Builder, name: &str, c: &Const, other_rank: usize) -> R<TensorId> {
    if other_rank == 4 && c.dims.len() <= 4 && c.elements() > 1 {
        let mut c4 = c.clone();
        let mut dims = vec![1; 4 - c.dims.len()];
        dims.extend(&c.dims);
        c4.dims = dims;
        return b.materialize(name, &c4);
    }
    if other_rank == 4 && c.dims.len() > 4 {
        return Err(b.unsupported(format!("a constant of rank {} against NCHW", c.dims.len())));
    }
    b.materialize(name, c)
}

fn arith(b: &mut Builder, ins: &[String], out: &str) -> R {
    let names: Vec<&str> = (0..2)
        .map(|k| input_name(ins, k).ok_or_else(|| b.invalid(format!("input {k} is absent"))))
        .collect::<R<_>>()?;
    let v0 = b.value(names[0])?.clone();
    let v1 = b.value(names[1])?.clone();
    let (i0, i1) = match (v0, v1) {
        (Value::Act(x), Value::Act(y)) => {
            let (rx, ry) = (b.shape(x).len(), b.shape(y).len());
            let ex = b.g.tensors[x].elements();
            let ey = b.g.tensors[y].elements();
            if rx != ry && (rx == 4 || ry == 4) && ex > 1 && ey > 1 {
                return Err(b.unsupported(
                    "broadcasting an activation of another rank against an NCHW activation",
                ));
            }
            (x, y)
        }
        (Value::Act(x), Value::Const(c)) => {
            let r = b.shape(x).len();
            let cid = elementwise_const(b, names[1], &c, r)?;
            (x, cid)
        }
        (Value::Const(c), Value::Act(y)) => {
            let r = b.shape(y).len();
            let cid = elementwise_const(b, names[0], &c, r)?;
            (cid, y)
        }
        (Value::Const(_), Value::Const(_)) => {
            return Err(b.unsupported("both inputs are constants (fold them before export)"))
        }
    };
    for id in [i0, i1] {
        if b.g.tensors[id].elements() > 1 {
            no_flat(b, id)?;
        }
    }
    let (s0, s1) = (b.shape(i0), b.shape(i1));
    let shape = broadcast(&s0, &s1)
        .ok_or_else(|| b.invalid(format!("shapes {s0:?} and {s1:?} do not broadcast")))?;
    let y = b.new_act(out, shape, DataType::Float32)?;
    let activation = Activation::None;
    let op = match b.op.as_str() {
        "Add" => Operator::Add { activation },
        "Sub" => Operator::Sub { activation },
        _ => Operator::Mul { activation },
    };
    b.node(op, vec![Some(i0), Some(i1)], vec![y]);
    b.define(out, Value::Act(y))
}

/// `axis` (may be negative) normalised for rank `r`.
fn norm_axis(b: &Builder, axis: i64, r: usize) -> R<usize> {
    let a = if axis < 0 { axis + r as i64 } else { axis };
    if a < 0 || a >= r as i64 {
        return Err(b.invalid(format!("axis {axis} out of range for rank {r}")));
    }
    Ok(a as usize)
}

/// The IR axis of ONNX axis `a` of a rank-`r` tensor.
fn ir_axis(a: usize, r: usize) -> usize {
    if r == 4 {
        NCHW_TO_NHWC_AXIS[a]
    } else {
        a
    }
}

fn concat(b: &mut Builder, a: &Attrs, ins: &[String], out: &str) -> R {
    let axis = a.int("axis", i64::MIN).map_err(|e| b.invalid(e))?;
    if axis == i64::MIN {
        return Err(b.invalid("attribute axis is required"));
    }
    let mut ids = Vec::new();
    for k in 0..ins.len() {
        if input_name(ins, k).is_none() {
            continue;
        }
        let id = b.act(ins, k)?;
        no_flat(b, id)?;
        ids.push(id);
    }
    let first = ids.first().copied().ok_or_else(|| b.invalid("no inputs"))?;
    let r = b.shape(first).len();
    let ax = ir_axis(norm_axis(b, axis, r)?, r);
    let mut shape = b.shape(first);
    for &id in &ids[1..] {
        let s = b.shape(id);
        if s.len() != r || (0..r).any(|d| d != ax && s[d] != shape[d]) {
            return Err(b.invalid(format!(
                "input shapes {:?} and {:?} differ off the axis",
                b.onnx_shape(first),
                b.onnx_shape(id)
            )));
        }
        shape[ax] += s[ax];
    }
    let y = b.new_act(out, shape, DataType::Float32)?;
    b.node(
        Operator::Concatenation {
            axis: ax,
            activation: Activation::None,
        },
        ids.into_iter().map(Some).collect(),
        vec![y],
    );
    b.define(out, Value::Act(y))
}

/// Whether an ONNX rank-4 shape has the same memory order in NCHW and NHWC.
fn layout_free(s: &[usize]) -> bool {
    s.len() != 4 || s[1] == 1 || s[2] * s[3] == 1
}

fn reshape(b: &mut Builder, a: &Attrs, ins: &[String], out: &str) -> R {
    let x = b.act(ins, 0)?;
    let xs = b.onnx_shape(x);
    let n: usize = xs.iter().product();
    let ints = |b: &Builder, k: usize| -> R<Option<Vec<i64>>> {
        match b.opt_konst(ins, k)? {
            None => Ok(None),
            Some(c) => c
                .ints()
                .map(Some)
                .ok_or_else(|| b.invalid(format!("input {k} is not an integer tensor"))),
        }
    };
    let os: Vec<usize> = match b.op.as_str() {
        "Reshape" => {
            let spec = ints(b, 1)?.ok_or_else(|| b.invalid("input 1 (shape) is absent"))?;
            let allowzero = a.int("allowzero", 0).map_err(|e| b.invalid(e))? != 0;
            let mut os = Vec::new();
            let mut infer = None;
            for (i, &v) in spec.iter().enumerate() {
                match v {
                    0 if !allowzero => os.push(*xs.get(i).ok_or_else(|| {
                        b.invalid(format!("shape[{i}] = 0 beyond the input rank"))
                    })?),
                    -1 if infer.is_none() => {
                        infer = Some(i);
                        os.push(1);
                    }
                    v if v >= 0 => os.push(v as usize),
                    v => return Err(b.invalid(format!("shape[{i}] = {v}"))),
                }
            }
            if let Some(i) = infer {
                let rest = checked_elements(&os).map_err(|e| b.invalid(e))?;
                if rest == 0 || n % rest != 0 {
                    return Err(b.invalid(format!("cannot infer -1 in {spec:?} for {xs:?}")));
                }
                os[i] = n / rest;
            }
            os
        }
        "Flatten" => {
            let axis = a.int("axis", 1).map_err(|e| b.invalid(e))?;
            let r = xs.len() as i64;
            let ax = if axis < 0 { axis + r } else { axis };
            if !(0..=r).contains(&ax) {
                return Err(b.invalid(format!("axis {axis} out of range for rank {r}")));
            }
            let head: usize = xs[..ax as usize].iter().product();
            let tail: usize = xs[ax as usize..].iter().product();
            vec![head, tail]
        }
        "Squeeze" => match ints(b, 1)? {
            None => xs.iter().copied().filter(|d| *d != 1).collect(),
            Some(axes) => {
                let mut drop = vec![false; xs.len()];
                for ax in axes {
                    let d = norm_axis(b, ax, xs.len())?;
                    if xs[d] != 1 {
                        return Err(b.invalid(format!("axis {ax} has size {}", xs[d])));
                    }
                    drop[d] = true;
                }
                xs.iter()
                    .zip(&drop)
                    .filter(|(_, d)| !**d)
                    .map(|(s, _)| *s)
                    .collect()
            }
        },
        _ => {
            let axes = ints(b, 1)?.ok_or_else(|| b.invalid("input 1 (axes) is absent"))?;
            let r = xs.len() + axes.len();
            let mut ones = vec![false; r];
            for ax in axes {
                let d = norm_axis(b, ax, r)?;
                if ones[d] {
                    return Err(b.invalid(format!("axis {ax} repeated")));
                }
                ones[d] = true;
            }
            let mut it = xs.iter();
            ones.iter()
                .map(|o| {
                    if *o {
                        1
                    } else {
                        it.next().copied().unwrap_or(1)
                    }
                })
                .collect()
        }
    };
    if checked_elements(&os).map_err(|e| b.invalid(e))? != n {
        return Err(b.invalid(format!("cannot reshape {xs:?} to {os:?}")));
    }
    let flat_in = b.flat.get(&x).copied();
    let mut flat_out = None;
    if let Some(f) = flat_in {
        if os != xs {
            return Err(b.unsupported("reshaping a flattened NCHW tensor again"));
        }
        flat_out = Some(f);
    } else if !layout_free(&xs) {
        if os.len() == 2 && os[0] == xs[0] {
            flat_out = Some([xs[1], xs[2], xs[3]]);
        } else {
            return Err(b.unsupported(format!(
                "reshaping the NCHW tensor {xs:?} to {os:?} changes its memory order in \
                 NHWC (the IR has no transpose)"
            )));
        }
    }
    if !layout_free(&os) {
        return Err(b.unsupported(format!(
            "reshaping {xs:?} to the NCHW shape {os:?} changes its memory order in NHWC \
             (the IR has no transpose)"
        )));
    }
    let ir = if os.len() == 4 { nhwc_shape(&os) } else { os };
    let y = b.new_act(out, ir, DataType::Float32)?;
    if let Some(f) = flat_out {
        b.flat.insert(y, f);
    }
    let op = if b.op == "Squeeze" {
        Operator::Squeeze
    } else {
        Operator::Reshape
    };
    b.node(op, vec![Some(x)], vec![y]);
    b.define(out, Value::Act(y))
}

fn softmax(b: &mut Builder, a: &Attrs, ins: &[String], out: &str) -> R {
    let x = b.act(ins, 0)?;
    let r = b.shape(x).len();
    let axis = a.int("axis", -1).map_err(|e| b.invalid(e))?;
    let ax = ir_axis(norm_axis(b, axis, r)?, r);
    if ax + 1 != r {
        return Err(b.unsupported(format!(
            "softmax over axis {axis} of a rank-{r} tensor: only the last axis (the channel \
             axis for NCHW) is supported"
        )));
    }
    unary(b, ins, out, Operator::Softmax { beta: 1.0 })
}

fn pad(b: &mut Builder, a: &Attrs, ins: &[String], out: &str) -> R {
    let mode = a.string("mode").map_err(|e| b.invalid(e))?;
    if let Some(m) = mode.filter(|m| m != "constant") {
        return Err(b.unsupported(format!("mode {m:?}: only constant padding")));
    }
    let x = b.act(ins, 0)?;
    no_flat(b, x)?;
    let xs = b.onnx_shape(x);
    let r = xs.len();
    let pads = b
        .konst(ins, 1)?
        .ints()
        .ok_or_else(|| b.invalid("pads are not integers"))?;
    let value = match b.opt_konst(ins, 2)? {
        None => 0.0,
        Some(c) => c
            .f32s()
            .filter(|v| v.len() == 1)
            .map(|v| v[0])
            .ok_or_else(|| b.invalid("constant_value is not a scalar"))?,
    };
    let axes: Vec<usize> = match b.opt_konst(ins, 3)? {
        None => (0..r).collect(),
        Some(c) => c
            .ints()
            .ok_or_else(|| b.invalid("axes are not integers"))?
            .into_iter()
            .map(|v| norm_axis(b, v, r))
            .collect::<R<_>>()?,
    };
    if pads.len() != 2 * axes.len() {
        return Err(b.invalid(format!("{} pads for {} axes", pads.len(), axes.len())));
    }
    let mut pp = vec![[0usize; 2]; r];
    for (i, &ax) in axes.iter().enumerate() {
        for (j, v) in [pads[i], pads[i + axes.len()]].into_iter().enumerate() {
            if v > MAX_ATTR {
                return Err(b.invalid(format!("pad {v} is larger than {MAX_ATTR}")));
            }
            pp[ax][j] = usize::try_from(v)
                .map_err(|_| b.unsupported(format!("negative pad {v} (cropping)")))?;
        }
    }
    let order: Vec<usize> = if r == 4 {
        TO_NHWC.to_vec()
    } else {
        (0..r).collect()
    };
    let flat: Vec<i32> = order
        .iter()
        .flat_map(|&d| [pp[d][0] as i32, pp[d][1] as i32])
        .collect();
    let ir_in = b.shape(x);
    let shape: Vec<usize> = order
        .iter()
        .zip(&ir_in)
        .map(|(&d, s)| s + pp[d][0] + pp[d][1])
        .collect();
    let pid = b.i32_const(&format!("{out}/paddings"), vec![r, 2], &flat);
    let mut inputs = vec![Some(x), Some(pid)];
    if value != 0.0 {
        inputs.push(Some(b.f32_const(&format!("{out}/value"), vec![], &[value])));
    }
    let y = b.new_act(out, shape, DataType::Float32)?;
    b.node(Operator::Pad, inputs, vec![y]);
    b.define(out, Value::Act(y))
}

fn constant(b: &mut Builder, a: &Attrs, out: &str) -> R {
    let c = if let Some(t) = a.tensor("value").map_err(|e| b.invalid(e))? {
        tensor_const(t).map_err(|e| b.invalid(e))?
    } else if let Ok(Some(v)) = a.ints("value_ints") {
        Const {
            dims: vec![v.len()],
            dtype: DataType::Int64,
            data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            quant: None,
        }
    } else if a.0.iter().any(|x| x.name == "value_int") {
        let v = a.int("value_int", 0).map_err(|e| b.invalid(e))?;
        Const {
            dims: vec![],
            dtype: DataType::Int64,
            data: v.to_le_bytes().to_vec(),
            quant: None,
        }
    } else if a.0.iter().any(|x| x.name == "value_float") {
        let v = a.float("value_float", 0.0).map_err(|e| b.invalid(e))?;
        Const::from_f32(vec![], &[v])
    } else if let Some(x) = a.0.iter().find(|x| x.name == "value_floats") {
        Const::from_f32(vec![x.floats.len()], &x.floats)
    } else {
        return Err(b.unsupported("a Constant without a tensor, int(s) or float(s) value"));
    };
    b.define(out, Value::Const(Rc::new(c)))
}

/// Little-endian float32 bytes → values.
pub fn le_f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
