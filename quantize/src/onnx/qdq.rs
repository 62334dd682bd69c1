//! Quantized ONNX: QuantizeLinear / DequantizeLinear pairs (QDQ), QLinearConv, QLinearMatMul.
//!
//! A `QuantizeLinear` of a float activation makes that IR tensor int8 with the node's scale and
//! zero point, and its output names the same tensor; a `DequantizeLinear` of it names the same
//! tensor again, so the float operator between two QDQ pairs reads and writes int8 tensors: the
//! graph becomes an int8 graph like one imported from an int8 TFLite model. A
//! `DequantizeLinear` of a constant gives a quantized constant (int8 weights per tensor or per
//! channel; int32 biases). uint8 becomes int8 exactly: `q − 128`, zero point `zp − 128`.

use std::rc::Rc;

use super::builder::{input_name, Builder, Value};
use super::ops::{conv_core, fc_core, transpose_kn};
use super::proto::{Attrs, Const};
use crate::error::CompileError;
use crate::ir::{DataType, Graph, Operator, Quantization, TensorId};

type R<T = ()> = Result<T, CompileError>;

/// Converts a Q/DQ/QLinear node.
pub fn convert(b: &mut Builder, a: &Attrs, op: &str, ins: &[String], out: &str) -> R {
    if a.int("block_size", 0).map_err(|e| b.invalid(e))? != 0 {
        return Err(b.unsupported("blocked quantization (block_size)"));
    }
    match op {
        "DequantizeLinear" => dequantize(b, a, ins, out),
        "QuantizeLinear" => quantize(b, a, ins, out),
        "QLinearConv" => qlinear_conv(b, a, ins, out),
        _ => qlinear_matmul(b, ins, out),
    }
}

/// Scale and zero point constants → int8 quantization over a tensor of rank `rank`
/// (`axis` for per-channel), and whether the zero point type is uint8.
fn qparams(
    b: &Builder,
    scale: &Const,
    zp: Option<&Const>,
    axis: i64,
    rank: usize,
    uint8_default: bool,
) -> R<(Quantization, bool)> {
    let scales = scale
        .f32s()
        .filter(|_| matches!(scale.dtype, DataType::Float32 | DataType::Float16))
        .ok_or_else(|| b.invalid("the scale is not a float tensor"))?;
    if scales.is_empty() || scales.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(b.invalid(format!("scales {scales:?} are not all positive and finite")));
    }
    let (zps, uint8) = match zp {
        None => (vec![0; scales.len()], uint8_default),
        Some(z) => {
            let uint8 = match z.dtype {
                DataType::UInt8 => true,
                DataType::Int8 | DataType::Int32 => false,
                other => {
                    return Err(b.unsupported(format!("zero point of type {other}")));
                }
            };
            (z.ints().unwrap_or_default(), uint8)
        }
    };
    if zps.len() != scales.len() {
        return Err(b.invalid(format!(
            "{} scales but {} zero points",
            scales.len(),
            zps.len()
        )));
    }
    let zero_points = zps
        .into_iter()
        .map(|z| if uint8 { z - 128 } else { z })
        .collect();
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    let axis = if scales.len() > 1 {
        usize::try_from(a)
            .ok()
            .filter(|a| *a < rank)
            .ok_or_else(|| b.invalid(format!("axis {axis} out of range for rank {rank}")))?
    } else {
        0
    };
    Ok((
        Quantization {
            scales,
            zero_points,
            axis,
        },
        uint8,
    ))
}

fn dequantize(b: &mut Builder, a: &Attrs, ins: &[String], out: &str) -> R {
    let name = input_name(ins, 0).ok_or_else(|| b.invalid("input 0 is absent"))?;
    let x = b.value(name)?.clone();
    let scale = b.konst(ins, 1)?;
    let zp = b.opt_konst(ins, 2)?;
    let axis = a.int("axis", 1).map_err(|e| b.invalid(e))?;
    match x {
        Value::Const(c) => {
            let (mut q, _) = qparams(b, &scale, zp.as_deref(), axis, c.dims.len(), false)?;
            if !q.is_per_tensor() && c.dims.get(q.axis) != Some(&q.scales.len()) {
                return Err(b.invalid(format!(
                    "{} scales for axis {} of shape {:?}",
                    q.scales.len(),
                    q.axis,
                    c.dims
                )));
            }
            let (dtype, data) = match c.dtype {
                DataType::Int8 | DataType::Int32 => (c.dtype, c.data.clone()),
                // The zero point was shifted by qparams when it is uint8.
                DataType::UInt8 => (DataType::Int8, c.data.iter().map(|v| v ^ 0x80).collect()),
                other => return Err(b.unsupported(format!("dequantizing a {other} constant"))),
            };
            if c.dtype == DataType::UInt8 && zp.as_ref().is_none_or(|z| z.dtype != DataType::UInt8)
            {
                // uint8 data with an int8/absent zero point: shift it here.
                q.zero_points.iter_mut().for_each(|z| *z -= 128);
            }
            let k = Const {
                dims: c.dims.clone(),
                dtype,
                data,
                quant: Some(q),
            };
            b.define(out, Value::Const(Rc::new(k)))
        }
        Value::Act(id) => {
            let rank = b.shape(id).len();
            let (q, _) = qparams(b, &scale, zp.as_deref(), axis, rank, true)?;
            let t = &b.g.tensors[id];
            if t.dtype != DataType::Int8 || t.quant.as_ref() != Some(&q) {
                return Err(b.unsupported(format!(
                    "DequantizeLinear of {:?} whose QuantizeLinear (or QLinear op) has other \
                     parameters, or none",
                    t.name
                )));
            }
            b.define(out, Value::Act(id))
        }
    }
}

fn quantize(b: &mut Builder, a: &Attrs, ins: &[String], out: &str) -> R {
    let x = b.act(ins, 0)?;
    let scale = b.konst(ins, 1)?;
    let zp = b.opt_konst(ins, 2)?;
    if a.int("output_dtype", 0).map_err(|e| b.invalid(e))? != 0 && zp.is_none() {
        return Err(b.unsupported("output_dtype without a zero point"));
    }
    let rank = b.shape(x).len();
    let (q, _) = qparams(b, &scale, zp.as_deref(), 1, rank, true)?;
    if !q.is_per_tensor() {
        return Err(b.unsupported("per-channel quantization of an activation"));
    }
    let t = &b.g.tensors[x];
    if t.is_const() {
        return Err(b.unsupported("quantizing a constant at run time (store it quantized)"));
    }
    match (t.dtype, &t.quant) {
        (DataType::Float32, None) => {
            let t = &mut b.g.tensors[x];
            t.dtype = DataType::Int8;
            t.quant = Some(q);
            b.define(out, Value::Act(x))
        }
        (DataType::Int8, Some(old)) if *old == q => b.define(out, Value::Act(x)),
        (DataType::Int8, Some(_)) => {
            let shape = b.shape(x);
            let y = b.new_act(out, shape, DataType::Int8)?;
            b.g.tensors[y].quant = Some(q);
            b.node(Operator::Quantize, vec![Some(x)], vec![y]);
            b.define(out, Value::Act(y))
        }
        (dt, _) => Err(b.unsupported(format!("quantizing a {dt} tensor"))),
    }
}

/// Checks that activation `id` is int8 with the parameters of `scale`/`zp`; a float graph
/// input is made int8 with them.
fn expect_q(b: &mut Builder, id: TensorId, scale: &Const, zp: Option<&Const>) -> R {
    let rank = b.shape(id).len();
    let (q, _) = qparams(b, scale, zp, 1, rank, true)?;
    let is_input = b.g.inputs.contains(&id);
    let t = &mut b.g.tensors[id];
    match (t.dtype, &t.quant) {
        (DataType::Int8, Some(old)) if *old == q => Ok(()),
        (DataType::Float32, None) if is_input => {
            t.dtype = DataType::Int8;
            t.quant = Some(q);
            Ok(())
        }
        _ => {
            let name = t.name.clone();
            Err(b.unsupported(format!(
                "input {name:?} is not quantized with the op's input scale and zero point"
            )))
        }
    }
}

/// A quantized weight constant from `w` and its scale/zero point (per-channel on `axis`).
fn qweights(b: &Builder, w: &Const, scale: &Const, zp: Option<&Const>, axis: i64) -> R<Const> {
    let (q, _) = qparams(b, scale, zp, axis, w.dims.len(), false)?;
    let (dtype, data) = match w.dtype {
        DataType::Int8 => (DataType::Int8, w.data.clone()),
        DataType::UInt8 => (DataType::Int8, w.data.iter().map(|v| v ^ 0x80).collect()),
        other => return Err(b.unsupported(format!("weights of type {other}"))),
    };
    Ok(Const {
        dims: w.dims.clone(),
        dtype,
        data,
        quant: Some(q),
    })
}

/// Makes the op's output `y` int8 with `scale`/`zp`.
fn set_out(b: &mut Builder, y: TensorId, scale: &Const, zp: Option<&Const>, out: &str) -> R {
    let rank = b.shape(y).len();
    let (q, _) = qparams(b, scale, zp, 1, rank, true)?;
    b.g.tensors[y].dtype = DataType::Int8;
    b.g.tensors[y].quant = Some(q);
    b.define(out, Value::Act(y))
}

/// An int32 bias with scales `in_scale × w_scales`.
fn qbias(c: &Const, in_scale: f32, w: &Quantization) -> Const {
    let mut c = c.clone();
    c.quant = Some(Quantization {
        scales: w.scales.iter().map(|s| s * in_scale).collect(),
        zero_points: vec![0; w.scales.len()],
        axis: 0,
    });
    c
}

fn qlinear_conv(b: &mut Builder, a: &Attrs, ins: &[String], out: &str) -> R {
    let x = b.act(ins, 0)?;
    let (xs, xz) = (b.konst(ins, 1)?, b.opt_konst(ins, 2)?);
    expect_q(b, x, &xs, xz.as_deref())?;
    let w = b.konst(ins, 3)?;
    let (ws, wz) = (b.konst(ins, 4)?, b.opt_konst(ins, 5)?);
    let wq = qweights(b, &w, &ws, wz.as_deref(), 0)?;
    let (ys, yz) = (b.konst(ins, 6)?, b.opt_konst(ins, 7)?);
    let in_scale = b.g.tensors[x].quant.as_ref().map_or(1.0, |q| q.scale());
    let bias = b.opt_konst(ins, 8)?.map(|c| {
        qbias(
            &c,
            in_scale,
            wq.quant
                .as_ref()
                .unwrap_or(&Quantization::per_tensor(1.0, 0)),
        )
    });
    let a2 = Attrs(a.0);
    let y = conv_core(b, &a2, x, &wq, bias.as_ref(), out)?;
    set_out(b, y, &ys, yz.as_deref(), out)
}

fn qlinear_matmul(b: &mut Builder, ins: &[String], out: &str) -> R {
    let x = b.act(ins, 0)?;
    let (xs, xz) = (b.konst(ins, 1)?, b.opt_konst(ins, 2)?);
    expect_q(b, x, &xs, xz.as_deref())?;
    let w = b.konst(ins, 3)?;
    if w.dims.len() != 2 {
        return Err(b.unsupported(format!("B of shape {:?}: only a constant rank-2 B", w.dims)));
    }
    let (ws, wz) = (b.konst(ins, 4)?, b.opt_konst(ins, 5)?);
    let wq = qweights(b, &w, &ws, wz.as_deref(), 1)?;
    let (ys, yz) = (b.konst(ins, 6)?, b.opt_konst(ins, 7)?);
    let y = fc_core(b, x, transpose_kn(&wq), None, out)?;
    set_out(b, y, &ys, yz.as_deref(), out)
}

/// After all nodes: in a graph with int8 activations, gives shape-only and max/relu ops
/// without their own QuantizeLinear their input's parameters, quantizes float biases of int8
/// convolutions and matrix products, and refuses float activations left in the graph.
pub fn finish(g: &mut Graph) -> R {
    let any_int8 = g
        .tensors
        .iter()
        .any(|t| !t.is_const() && t.dtype == DataType::Int8);
    if !any_int8 {
        return Ok(());
    }
    for k in 0..g.nodes.len() {
        let n = &g.nodes[k];
        let out = n.outputs[0];
        let Some(Some(i0)) = n.inputs.first().copied() else {
            continue;
        };
        let inherits = matches!(
            n.op,
            Operator::Reshape
                | Operator::Squeeze
                | Operator::MaxPool2d(_)
                | Operator::Pad
                | Operator::Relu
                | Operator::Relu6
        );
        if inherits && g.tensors[out].quant.is_none() && g.tensors[i0].dtype == DataType::Int8 {
            let q = g.tensors[i0].quant.clone();
            g.tensors[out].dtype = DataType::Int8;
            g.tensors[out].quant = q;
        }
        // Float biases of int8 conv / FC.
        let n = &g.nodes[k];
        if matches!(
            n.op,
            Operator::Conv2d(_) | Operator::DepthwiseConv2d(_) | Operator::FullyConnected { .. }
        ) {
            if let (Some(Some(w)), Some(Some(bid))) = (n.inputs.get(1), n.inputs.get(2)) {
                let (w, bid) = (*w, *bid);
                let in_s = g.tensors[i0].quant.as_ref().map(|q| q.scale());
                let wq = g.tensors[w].quant.clone();
                let bt = &g.tensors[bid];
                if let (Some(in_s), Some(wq), DataType::Float32) = (in_s, wq, bt.dtype) {
                    let v = bt
                        .data
                        .as_deref()
                        .map(super::ops::le_f32s)
                        .unwrap_or_default();
                    let scales: Vec<f32> = (0..v.len())
                        .map(|c| in_s * wq.scales.get(c).copied().unwrap_or(wq.scale()))
                        .collect();
                    let q: Vec<u8> = v
                        .iter()
                        .zip(&scales)
                        .flat_map(|(x, s)| ((x / s).round() as i32).to_le_bytes())
                        .collect();
                    let bt = &mut g.tensors[bid];
                    bt.dtype = DataType::Int32;
                    bt.data = Some(q);
                    bt.quant = Some(Quantization {
                        zero_points: vec![0; scales.len()],
                        scales,
                        axis: 0,
                    });
                }
            }
        }
    }
    requantize_concat_inputs(g);
    fixed_output_quant(g);
    for (index, n) in g.nodes.iter().enumerate() {
        for id in n.inputs.iter().flatten().chain(&n.outputs) {
            let t = &g.tensors[*id];
            if !t.is_const() && t.dtype != DataType::Int8 {
                return Err(CompileError::Unsupported {
                    index,
                    op: n.op.name().to_string(),
                    reason: format!(
                        "tensor {:?} is {} in an int8 (QDQ) model: it has no \
                         QuantizeLinear/DequantizeLinear pair (mixed float/int8 models are not \
                         supported)",
                        t.name, t.dtype
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Concatenation copies bytes, so every int8 input must have the output's scale and zero
/// point: inputs quantized otherwise (onnxruntime gives each its own) are requantized by a
/// QUANTIZE (int8 → int8) node inserted before the concatenation.
fn requantize_concat_inputs(g: &mut Graph) {
    let nodes = std::mem::take(&mut g.nodes);
    for mut n in nodes {
        if matches!(n.op, Operator::Concatenation { .. }) {
            let oq = g.tensors[n.outputs[0]].quant.clone();
            for slot in n.inputs.iter_mut() {
                let Some(i) = *slot else { continue };
                let t = &g.tensors[i];
                if t.dtype != DataType::Int8 || t.is_const() || t.quant == oq || oq.is_none() {
                    continue;
                }
                let mut r = t.clone();
                r.name = format!("{}/requantized", t.name);
                r.quant = oq.clone();
                g.tensors.push(r);
                let id = g.tensors.len() - 1;
                g.nodes.push(crate::ir::Node {
                    op: Operator::Quantize,
                    inputs: vec![Some(i)],
                    outputs: vec![id],
                });
                *slot = Some(id);
            }
        }
        g.nodes.push(n);
    }
}

/// TFLite's int8 LOGISTIC and SOFTMAX write scale 1/256 and zero point −128, TANH 1/128 and
/// 0; where the QDQ model gives the output other parameters (onnxruntime calibrates them),
/// the op writes the fixed ones into a new tensor and a QUANTIZE (int8 → int8) node
/// requantizes it to the model's.
fn fixed_output_quant(g: &mut Graph) {
    let nodes = std::mem::take(&mut g.nodes);
    for mut n in nodes {
        let fixed = match n.op {
            Operator::Logistic | Operator::Softmax { .. } => Some((1.0 / 256.0, -128)),
            Operator::Tanh => Some((1.0 / 128.0, 0)),
            _ => None,
        };
        let out = n.outputs[0];
        let t = &g.tensors[out];
        let Some((s, z)) = fixed else {
            g.nodes.push(n);
            continue;
        };
        let want = Quantization::per_tensor(s, z);
        if t.dtype != DataType::Int8 || t.quant.as_ref().is_none_or(|q| *q == want) {
            g.nodes.push(n);
            continue;
        }
        let mut f = t.clone();
        f.name = format!("{}/fixed", t.name);
        f.quant = Some(want);
        g.tensors.push(f);
        let id = g.tensors.len() - 1;
        n.outputs[0] = id;
        g.nodes.push(n);
        g.nodes.push(crate::ir::Node {
            op: Operator::Quantize,
            inputs: vec![Some(id)],
            outputs: vec![out],
        });
    }
}
