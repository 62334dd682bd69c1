//! Import state and the driver: graph inputs, initializers, nodes in order, outputs, then the
//! activation-fusion and QDQ passes.

use std::collections::HashMap;
use std::rc::Rc;

use onnx_ir::ModelProto;

use super::layout::{moved_axis, nchw_shape, nhwc_shape, permute, TO_NHWC};
use super::proto::{checked_elements, tensor_const, value_info, Const};
use super::{malformed, ops, qdq, OPSETS};
use crate::error::CompileError;
use crate::ir::{Activation, DataType, Graph, Node, Operator, Quantization, Tensor, TensorId};

/// What an ONNX value name refers to.
#[derive(Debug, Clone)]
pub enum Value {
    /// A tensor of the IR graph (an activation; NHWC if rank 4).
    Act(TensorId),
    /// A constant, in ONNX layout, not yet placed in the graph.
    Const(Rc<Const>),
}

/// Import state.
pub struct Builder {
    /// The graph being built.
    pub g: Graph,
    /// ONNX value name → value.
    pub vals: HashMap<String, Value>,
    /// Rank-2 tensors that hold an NCHW tensor flattened in NHWC order: their `[C, H, W]`.
    pub flat: HashMap<TensorId, [usize; 3]>,
    /// Index of the node being converted.
    pub index: usize,
    /// Its ONNX op type.
    pub op: String,
    /// Number of consumers of each ONNX value (node inputs and graph outputs).
    pub consumers: HashMap<String, usize>,
}

impl Builder {
    /// An unsupported-operator error for the current node.
    pub fn unsupported(&self, reason: impl Into<String>) -> CompileError {
        CompileError::Unsupported {
            index: self.index,
            op: self.op.clone(),
            reason: reason.into(),
        }
    }

    /// An invalid-operator error for the current node.
    pub fn invalid(&self, what: impl Into<String>) -> CompileError {
        CompileError::InvalidOp {
            index: self.index,
            op: self.op.clone(),
            what: what.into(),
        }
    }

    /// The value named `name`.
    pub fn value(&self, name: &str) -> Result<&Value, CompileError> {
        self.vals.get(name).ok_or_else(|| {
            malformed(format!(
                "node {} ({}): input {name:?} is not defined before it (graph not \
                 topologically sorted, or a missing initializer)",
                self.index, self.op
            ))
        })
    }

    /// Input `k` of `inputs` as an IR tensor (constants are placed in the graph).
    pub fn act(&mut self, inputs: &[String], k: usize) -> Result<TensorId, CompileError> {
        let name =
            input_name(inputs, k).ok_or_else(|| self.invalid(format!("input {k} is absent")))?;
        match self.value(name)?.clone() {
            Value::Act(id) => Ok(id),
            Value::Const(c) => self.materialize(name, &c),
        }
    }

    /// Input `k` as a constant.
    pub fn konst(&self, inputs: &[String], k: usize) -> Result<Rc<Const>, CompileError> {
        self.opt_konst(inputs, k)?
            .ok_or_else(|| self.invalid(format!("input {k} is absent")))
    }

    /// Optional input `k` as a constant (`None` when absent).
    pub fn opt_konst(
        &self,
        inputs: &[String],
        k: usize,
    ) -> Result<Option<Rc<Const>>, CompileError> {
        let Some(name) = input_name(inputs, k) else {
            return Ok(None);
        };
        match self.value(name)? {
            Value::Const(c) => Ok(Some(c.clone())),
            Value::Act(_) => Err(self.unsupported(format!(
                "input {k} ({name:?}) must be a constant (an initializer or a Constant node)"
            ))),
        }
    }

    /// A new activation tensor.
    pub fn new_act(
        &mut self,
        name: &str,
        shape: Vec<usize>,
        dtype: DataType,
    ) -> Result<TensorId, CompileError> {
        checked_elements(&shape).map_err(|e| CompileError::Limit(format!("{name:?}: {e}")))?;
        self.g.tensors.push(Tensor {
            name: name.to_string(),
            shape,
            dtype,
            quant: None,
            data: None,
        });
        Ok(self.g.tensors.len() - 1)
    }

    /// A new constant tensor (IR layout).
    pub fn new_const(
        &mut self,
        name: &str,
        shape: Vec<usize>,
        dtype: DataType,
        data: Vec<u8>,
        quant: Option<Quantization>,
    ) -> TensorId {
        self.g.tensors.push(Tensor {
            name: name.to_string(),
            shape,
            dtype,
            quant,
            data: Some(data),
        });
        self.g.tensors.len() - 1
    }

    /// A float32 constant.
    pub fn f32_const(&mut self, name: &str, shape: Vec<usize>, v: &[f32]) -> TensorId {
        let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.new_const(name, shape, DataType::Float32, data, None)
    }

    /// An int32 constant.
    pub fn i32_const(&mut self, name: &str, shape: Vec<usize>, v: &[i32]) -> TensorId {
        let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.new_const(name, shape, DataType::Int32, data, None)
    }

    /// Places constant `c` in the graph (rank 4 permuted to NHWC).
    pub fn materialize(&mut self, name: &str, c: &Const) -> Result<TensorId, CompileError> {
        if c.dims.len() == 4 {
            let (data, dims) = permute(&c.data, c.dtype.size(), &c.dims, &TO_NHWC);
            let quant = c.quant.clone().map(|mut q| {
                q.axis = moved_axis(&TO_NHWC, q.axis);
                q
            });
            Ok(self.new_const(name, dims, c.dtype, data, quant))
        } else {
            Ok(self.new_const(
                name,
                c.dims.clone(),
                c.dtype,
                c.data.clone(),
                c.quant.clone(),
            ))
        }
    }

    /// Appends a node. Shape-only ops and max pooling over an int8 tensor produce an int8
    /// tensor with the same quantization (as onnxruntime's operator format leaves them).
    pub fn node(&mut self, op: Operator, inputs: Vec<Option<TensorId>>, outputs: Vec<TensorId>) {
        let same_quant = matches!(
            op,
            Operator::Reshape | Operator::Squeeze | Operator::MaxPool2d(_) | Operator::Pad
        );
        if let (true, Some(Some(i)), Some(&o)) = (same_quant, inputs.first(), outputs.first()) {
            let (dt, q) = (self.g.tensors[*i].dtype, self.g.tensors[*i].quant.clone());
            let out = &mut self.g.tensors[o];
            if dt == DataType::Int8 && q.is_some() && out.quant.is_none() {
                out.dtype = dt;
                out.quant = q;
            }
        }
        self.g.nodes.push(Node {
            op,
            inputs,
            outputs,
        });
    }

    /// Defines ONNX value `name`.
    pub fn define(&mut self, name: &str, v: Value) -> Result<(), CompileError> {
        if name.is_empty() {
            return Ok(());
        }
        if self.vals.insert(name.to_string(), v).is_some() {
            return Err(malformed(format!(
                "node {} ({}): output {name:?} is defined twice",
                self.index, self.op
            )));
        }
        Ok(())
    }

    /// The IR shape of tensor `id`.
    pub fn shape(&self, id: TensorId) -> Vec<usize> {
        self.g.tensors[id].shape.clone()
    }

    /// The ONNX shape of tensor `id` (NCHW for rank 4).
    pub fn onnx_shape(&self, id: TensorId) -> Vec<usize> {
        let s = &self.g.tensors[id].shape;
        if s.len() == 4 {
            nchw_shape(s)
        } else {
            s.clone()
        }
    }
}

/// Input `k`, `None` when absent or empty (an omitted optional input).
pub fn input_name(inputs: &[String], k: usize) -> Option<&str> {
    inputs.get(k).map(String::as_str).filter(|s| !s.is_empty())
}

/// Imports a parsed ONNX model.
pub fn import_model(model: &ModelProto) -> Result<Graph, CompileError> {
    let mut opset = None;
    for o in &model.opset_import {
        if o.domain.is_empty() || o.domain == "ai.onnx" {
            opset = Some(o.version);
        }
    }
    let opset = opset.ok_or_else(|| malformed("no opset_import for the default ONNX domain"))?;
    if !OPSETS.contains(&opset) {
        return Err(CompileError::Unsupported {
            index: 0,
            op: format!("ONNX opset {opset}"),
            reason: format!(
                "opsets {}..={} are supported (re-export the model, or convert it with \
                 onnx.version_converter)",
                OPSETS.start(),
                OPSETS.end()
            ),
        });
    }
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| malformed("ModelProto.graph is absent"))?;
    if !graph.sparse_initializer.is_empty() {
        return Err(CompileError::Unsupported {
            index: 0,
            op: "sparse_initializer".into(),
            reason: "sparse initializers are not supported".into(),
        });
    }
    let mut b = Builder {
        g: Graph::default(),
        vals: HashMap::new(),
        flat: HashMap::new(),
        index: 0,
        op: String::new(),
        consumers: HashMap::new(),
    };
    for t in &graph.initializer {
        let c = tensor_const(t).map_err(|e| malformed(format!("initializer: {e}")))?;
        b.vals.insert(t.name.clone(), Value::Const(Rc::new(c)));
    }
    for vi in &graph.input {
        if b.vals.contains_key(&vi.name) {
            continue;
        }
        let (dtype, shape) = value_info(vi).map_err(|e| malformed(format!("graph input {e}")))?;
        if dtype != DataType::Float32 {
            return Err(CompileError::Unsupported {
                index: 0,
                op: "graph input".into(),
                reason: format!(
                    "input {:?} is {dtype}; only float32 inputs are supported",
                    vi.name
                ),
            });
        }
        let shape = if shape.len() == 4 {
            nhwc_shape(&shape)
        } else {
            shape
        };
        let id = b.new_act(&vi.name, shape, dtype)?;
        b.g.inputs.push(id);
        b.vals.insert(vi.name.clone(), Value::Act(id));
    }
    for n in &graph.node {
        for i in n.input.iter().filter(|s| !s.is_empty()) {
            *b.consumers.entry(i.clone()).or_default() += 1;
        }
    }
    for o in &graph.output {
        *b.consumers.entry(o.name.clone()).or_default() += 1;
    }
    for (i, n) in graph.node.iter().enumerate() {
        b.index = i;
        b.op = n.op_type.clone();
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            b.op = format!("{}::{}", n.domain, n.op_type);
            return Err(b.unsupported("operators outside the default ONNX domain"));
        }
        ops::convert(&mut b, n)?;
    }
    b.index = graph.node.len();
    b.op = "graph output".into();
    for o in &graph.output {
        let id = match b.value(&o.name)?.clone() {
            Value::Act(id) => id,
            Value::Const(_) => {
                return Err(b.unsupported(format!("output {:?} is a constant", o.name)))
            }
        };
        if b.flat.contains_key(&id) {
            return Err(b.unsupported(format!(
                "output {:?} is an NCHW tensor flattened with spatial size > 1 (its NHWC \
                 order differs)",
                o.name
            )));
        }
        // An output that is an input, or listed twice, gets its own tensor.
        let id = if b.g.inputs.contains(&id) || b.g.outputs.contains(&id) {
            let shape = b.shape(id);
            let dtype = b.g.tensors[id].dtype;
            let copy = b.new_act(&o.name, shape, dtype)?;
            b.node(Operator::Reshape, vec![Some(id)], vec![copy]);
            copy
        } else {
            id
        };
        b.g.outputs.push(id);
    }
    let mut g = b.g;
    fuse_activations(&mut g);
    qdq::finish(&mut g)?;
    Ok(g)
}

/// Fuses Relu/Relu6 into the Conv, FullyConnected or element-wise node that produces its
/// input, when that tensor has no other consumer, is not a graph output and carries no
/// quantization of its own.
fn fuse_activations(g: &mut Graph) {
    let mut uses = vec![0usize; g.tensors.len()];
    for n in &g.nodes {
        for i in n.inputs.iter().flatten() {
            uses[*i] += 1;
        }
    }
    for o in &g.outputs {
        uses[*o] += 1;
    }
    let mut producer: Vec<Option<usize>> = vec![None; g.tensors.len()];
    for (k, n) in g.nodes.iter().enumerate() {
        for o in &n.outputs {
            producer[*o] = Some(k);
        }
    }
    let mut removed = vec![false; g.nodes.len()];
    for k in 0..g.nodes.len() {
        let act = match g.nodes[k].op {
            Operator::Relu => Activation::Relu,
            Operator::Relu6 => Activation::Relu6,
            _ => continue,
        };
        let Some(Some(t)) = g.nodes[k].inputs.first().copied() else {
            continue;
        };
        let Some(p) = producer[t] else { continue };
        if uses[t] != 1 || g.tensors[t].quant.is_some() || removed[p] {
            continue;
        }
        let out = g.nodes[k].outputs[0];
        let slot = match &mut g.nodes[p].op {
            Operator::Conv2d(o) | Operator::DepthwiseConv2d(o) => &mut o.activation,
            Operator::FullyConnected { activation, .. }
            | Operator::Add { activation }
            | Operator::Sub { activation }
            | Operator::Mul { activation } => activation,
            _ => continue,
        };
        if *slot != Activation::None {
            continue;
        }
        *slot = act;
        g.nodes[p].outputs[0] = out;
        producer[out] = Some(p);
        removed[k] = true;
    }
    let mut k = 0;
    g.nodes.retain(|_| {
        k += 1;
        !removed[k - 1]
    });
}
