//! The `f16` precision of [`super::quantize_mixed`]: float16 weights, float32 activations and
//! arithmetic (`mote_runtime::ops::float`), mixed per node with the integer schemes.
//!
//! The pass runs on the graph the integer recipes produced (every node int8, int4w or 16x8) and
//! turns the f16 nodes back to float:
//! - their outputs become float32 (no quantization parameters);
//! - CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED weights become IEEE half (round to nearest
//!   even, `half::f16::from_f32`), biases stay float32; constant operands of ADD/SUB/MUL stay
//!   float32;
//! - an input that is quantized gets a DEQUANTIZE to float32 before the node, and a quantized
//!   node reading a float32 tensor gets a QUANTIZE back to exactly the type and parameters that
//!   tensor had in the integer graph, so the neighbours of an f16 node compute what they would
//!   in the integer model;
//! - a graph input read only by f16 nodes, and a graph output produced by one, are float32 (as
//!   in a TFLite float16-weights model); other graph I/O keeps the int8 model's parameters.
//!
//! One conversion per (tensor, target) is inserted, right before its first consumer.

use std::collections::{HashMap, HashSet};

use super::f32s;
use crate::error::CompileError;
use crate::ir::{DataType, Graph, Node, Operator, Quantization, Tensor, TensorId};

/// Operators with a float32 kernel in the runtime (the f16 recipe).
pub(super) fn has_recipe(op: &Operator) -> bool {
    matches!(
        op,
        Operator::Conv2d(_)
            | Operator::DepthwiseConv2d(_)
            | Operator::FullyConnected { .. }
            | Operator::Add { .. }
            | Operator::Sub { .. }
            | Operator::Mul { .. }
            | Operator::Softmax { .. }
            | Operator::Logistic
            | Operator::Tanh
            | Operator::Relu
            | Operator::Relu6
            | Operator::MaxPool2d(_)
            | Operator::AveragePool2d(_)
            | Operator::Reshape
            | Operator::Squeeze
            | Operator::Mean { .. }
    )
}

/// The IEEE half bytes (little endian) of `w`, rounded to nearest even.
pub fn to_f16_bytes(w: &[f32]) -> Vec<u8> {
    w.iter()
        .flat_map(|&x| half::f16::from_f32(x).to_bits().to_le_bytes())
        .collect()
}

/// Where a tensor's values are wanted: float32, or quantized as `(dtype, parameters)`.
#[derive(Debug, Clone, PartialEq)]
enum Want {
    Float,
    Quantized(DataType, Option<Quantization>),
}

/// Turns the nodes of `g` (the integer quantization of `float`) that compute the outputs of
/// `float.nodes[i]` with `f16[i]` into float32 nodes with float16 weights (see the module
/// documentation).
pub(super) fn apply(float: &Graph, mut g: Graph, f16: &[bool]) -> Result<Graph, CompileError> {
    let unsupported = |index: usize, reason: String| CompileError::Unsupported {
        index,
        op: float.nodes[index].op.name().to_string(),
        reason,
    };
    // The integer graph keeps each float node's output tensor id on the node computing it.
    let mut float_out: HashMap<TensorId, usize> = HashMap::new();
    for (i, n) in float.nodes.iter().enumerate() {
        if f16.get(i).copied().unwrap_or(false) {
            float_out.insert(n.outputs[0], i);
        }
    }
    let before: Vec<(DataType, Option<Quantization>)> = g
        .tensors
        .iter()
        .map(|t| (t.dtype, t.quant.clone()))
        .collect();
    let is_f16 = |n: &Node| float_out.contains_key(&n.outputs[0]);
    let mut is_float: HashSet<TensorId> = HashSet::new();
    // Graph inputs read only by f16 nodes become float32.
    for &i in &g.inputs {
        let mut readers = g
            .nodes
            .iter()
            .filter(|n| n.inputs.iter().flatten().any(|&t| t == i))
            .peekable();
        if readers.peek().is_some() && readers.all(is_f16) {
            is_float.insert(i);
        }
    }
    for &i in &is_float {
        let t = &mut g.tensors[i];
        t.dtype = DataType::Float32;
        t.quant = None;
    }
    let mut converted: HashMap<(TensorId, bool), TensorId> = HashMap::new();
    let old_nodes = std::mem::take(&mut g.nodes);
    let mut nodes = Vec::with_capacity(old_nodes.len());
    for mut node in old_nodes {
        let fi = float_out.get(&node.outputs[0]).copied();
        let want_float = fi.is_some();
        for slot in node.inputs.iter_mut() {
            let Some(t) = *slot else { continue };
            if g.tensors[t].is_const() || is_float.contains(&t) == want_float {
                continue;
            }
            let want = if want_float {
                Want::Float
            } else {
                Want::Quantized(before[t].0, before[t].1.clone())
            };
            let c = *converted.entry((t, want_float)).or_insert_with(|| {
                let src = &g.tensors[t];
                let (dtype, quant, op) = match want {
                    Want::Float => (DataType::Float32, None, Operator::Dequantize),
                    Want::Quantized(d, q) => (d, q, Operator::Quantize),
                };
                let tensor = Tensor {
                    name: format!("{}/{}", src.name, dtype.name()),
                    shape: src.shape.clone(),
                    dtype,
                    quant,
                    data: None,
                };
                g.tensors.push(tensor);
                let id = g.tensors.len() - 1;
                nodes.push(Node {
                    op,
                    inputs: vec![Some(t)],
                    outputs: vec![id],
                });
                id
            });
            *slot = Some(c);
        }
        if let Some(index) = fi {
            for &o in &node.outputs {
                let t = &mut g.tensors[o];
                t.dtype = DataType::Float32;
                t.quant = None;
                is_float.insert(o);
            }
            let mac = matches!(
                node.op,
                Operator::Conv2d(_)
                    | Operator::DepthwiseConv2d(_)
                    | Operator::FullyConnected { .. }
            );
            let arith = matches!(
                node.op,
                Operator::Add { .. } | Operator::Sub { .. } | Operator::Mul { .. }
            );
            // Other constant inputs (MEAN's axes, RESHAPE's shape) are not numeric data.
            for (k, slot) in node.inputs.iter().enumerate() {
                let Some(t) = *slot else { continue };
                if !g.tensors[t].is_const() || !(mac || arith) {
                    continue;
                }
                let w = f32s(&float.tensors[t]).ok_or_else(|| {
                    unsupported(index, format!("constant input {k} is not float32"))
                })?;
                let tensor = &mut g.tensors[t];
                tensor.quant = None;
                if mac && k == 1 {
                    tensor.dtype = DataType::Float16;
                    tensor.data = Some(to_f16_bytes(&w));
                } else {
                    tensor.dtype = DataType::Float32;
                    tensor.data = float.tensors[t].data.clone();
                }
            }
        }
        nodes.push(node);
    }
    g.nodes = nodes;
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_rounds_to_nearest_even() {
        // 1 + 2^-11 is halfway between 1 and the next half (1 + 2^-10): ties to even (1.0).
        let b = to_f16_bytes(&[1.0, 1.0 + 2f32.powi(-11), 65504.0, 1e-8]);
        let h: Vec<u16> = b
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(h, [0x3C00, 0x3C00, 0x7BFF, 0x0000]);
    }
}
