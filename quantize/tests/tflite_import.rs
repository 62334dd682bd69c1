//! Tests of the TFLite importer (`mote_quantize::tflite`):
//!
//! - every reference model in `../shared/models` imports, with the expected operators, options,
//!   shapes and quantization;
//! - small models built here with the flatbuffers builder import, and broken variants of them
//!   give the expected error text;
//! - a corpus of deterministic mutations of every model (truncations, byte flips, overwritten
//!   offsets, zeroed regions, duplicated slices) never panics, and whatever imports is
//!   consistent.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use flatbuffers::{FlatBufferBuilder, WIPOffset};
use mote_quantize::ir::{Activation, DataType, Graph, Operator, Padding};
use mote_quantize::tflite::{import, import_file};
use mote_quantize::CompileError;

// ---------------------------------------------------------------------------------------------
// Shared reference models.

/// The shared model folder.
fn models_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/models"))
}

/// All `.tflite` files of the shared model folder (name, bytes), or `None` with a message when
/// the folder is absent.
fn shared_models() -> Option<Vec<(String, Vec<u8>)>> {
    let dir = models_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!(
            "SKIPPED: the shared model folder {} is absent; the reference-model tests did not run",
            dir.display()
        );
        return None;
    };
    let mut models: Vec<(String, Vec<u8>)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tflite"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&p).unwrap();
            (name, bytes)
        })
        .collect();
    models.sort();
    Some(models)
}

/// One shared model, imported.
fn shared(name: &str) -> Option<Graph> {
    let path = models_dir().join(name);
    if !path.exists() {
        println!("SKIPPED: {} is absent", path.display());
        return None;
    }
    Some(import_file(&path).unwrap_or_else(|e| panic!("{name}: {e}")))
}

fn op_names(g: &Graph) -> Vec<&str> {
    g.nodes.iter().map(|n| n.op.name()).collect()
}

/// Checks what the importer promises about any graph it returns.
fn check_graph(g: &Graph) {
    let n = g.tensors.len();
    for (i, node) in g.nodes.iter().enumerate() {
        for t in node.inputs.iter().flatten().chain(&node.outputs) {
            assert!(*t < n, "node {i} references tensor {t} of {n}");
        }
    }
    for t in g.inputs.iter().chain(&g.outputs) {
        assert!(*t < n);
    }
    for (i, t) in g.tensors.iter().enumerate() {
        if let (Some(d), false) = (&t.data, matches!(t.dtype, DataType::Other(_))) {
            assert_eq!(d.len(), t.bytes(), "tensor {i} data size");
        }
        if let Some(q) = &t.quant {
            assert!(!q.scales.is_empty());
            assert_eq!(q.scales.len(), q.zero_points.len());
            if !q.is_per_tensor() {
                assert_eq!(t.shape.get(q.axis), Some(&q.scales.len()));
            }
        }
    }
}

#[test]
fn every_shared_model_imports() {
    let Some(models) = shared_models() else {
        return;
    };
    assert!(
        !models.is_empty(),
        "no .tflite file in {}",
        models_dir().display()
    );
    for (name, bytes) in &models {
        let g = import(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_graph(&g);
        assert!(!g.nodes.is_empty(), "{name}");
        assert!(!g.inputs.is_empty() && !g.outputs.is_empty(), "{name}");
        println!(
            "{name}: {} tensors, ops {:?}",
            g.tensors.len(),
            op_names(&g)
        );
    }
}

#[test]
fn kws_ref_model() {
    let Some(g) = shared("kws_ref_model.tflite") else {
        return;
    };
    assert_eq!(
        op_names(&g),
        [
            "CONV_2D",
            "DEPTHWISE_CONV_2D",
            "CONV_2D",
            "DEPTHWISE_CONV_2D",
            "CONV_2D",
            "DEPTHWISE_CONV_2D",
            "CONV_2D",
            "DEPTHWISE_CONV_2D",
            "CONV_2D",
            "AVERAGE_POOL_2D",
            "RESHAPE",
            "FULLY_CONNECTED",
            "SOFTMAX"
        ]
    );
    assert_eq!(g.tensors.len(), 35);
    assert_eq!(g.inputs, [0]);
    assert_eq!(g.outputs, [34]);
    let input = g.tensor(0);
    assert_eq!(input.name, "input_1");
    assert_eq!(input.shape, [1, 49, 10, 1]);
    assert_eq!(input.dtype, DataType::Int8);
    assert_eq!(input.scale_zp(), Some((0.5847029, 83)));
    assert!(!input.is_const());
    let output = g.tensor(34);
    assert_eq!(output.shape, [1, 12]);
    assert_eq!(output.scale_zp(), Some((0.00390625, -128)));

    // First convolution: 10×4 filter, stride 2, SAME, fused ReLU, per-channel weights.
    let conv = &g.nodes[0];
    let Operator::Conv2d(o) = &conv.op else {
        panic!("{:?}", conv.op)
    };
    assert_eq!(
        (
            o.padding,
            o.stride_h,
            o.stride_w,
            o.dilation_h,
            o.dilation_w
        ),
        (Padding::Same, 2, 2, 1, 1)
    );
    assert_eq!((o.activation, o.depth_multiplier), (Activation::Relu, 1));
    let filter = g.tensor(conv.inputs[1].unwrap());
    assert_eq!(filter.shape, [64, 10, 4, 1]);
    assert_eq!(filter.dtype, DataType::Int8);
    assert_eq!(filter.data.as_ref().map(Vec::len), Some(64 * 10 * 4));
    let q = filter.quant.as_ref().unwrap();
    assert_eq!((q.scales.len(), q.axis), (64, 0));
    assert!(q.zero_points.iter().all(|z| *z == 0));
    let bias = g.tensor(conv.inputs[2].unwrap());
    assert_eq!(
        (bias.shape.as_slice(), bias.dtype),
        (&[64][..], DataType::Int32)
    );
    assert_eq!(bias.data.as_ref().map(Vec::len), Some(256));

    // Depthwise: 3×3, multiplier 1, per-channel along axis 3.
    let dw = &g.nodes[1];
    let Operator::DepthwiseConv2d(o) = &dw.op else {
        panic!("{:?}", dw.op)
    };
    assert_eq!(
        (o.padding, o.stride_h, o.depth_multiplier),
        (Padding::Same, 1, 1)
    );
    let filter = g.tensor(dw.inputs[1].unwrap());
    assert_eq!(filter.shape, [1, 3, 3, 64]);
    assert_eq!(filter.quant.as_ref().unwrap().axis, 3);
    assert_eq!(filter.quant.as_ref().unwrap().scales.len(), 64);

    let Operator::AveragePool2d(p) = &g.nodes[9].op else {
        panic!()
    };
    assert_eq!(
        (
            p.padding,
            p.filter_h,
            p.filter_w,
            p.stride_h,
            p.stride_w,
            p.activation
        ),
        (Padding::Valid, 25, 5, 25, 5, Activation::None)
    );
    // RESHAPE keeps its shape input (a constant int32 [2]).
    let shape = g.tensor(g.nodes[10].inputs[1].unwrap());
    assert_eq!(
        (shape.dtype, shape.data.as_ref().map(Vec::len)),
        (DataType::Int32, Some(8))
    );
    assert_eq!(
        g.nodes[11].op,
        Operator::FullyConnected {
            activation: Activation::None,
            keep_num_dims: false
        }
    );
    let weights = g.tensor(g.nodes[11].inputs[1].unwrap());
    assert_eq!(weights.shape, [12, 64]);
    assert!(weights.quant.as_ref().unwrap().is_per_tensor());
    assert_eq!(g.nodes[12].op, Operator::Softmax { beta: 1.0 });
}

#[test]
fn kws_float_model() {
    let Some(g) = shared("kws_ref_model_float32.tflite") else {
        return;
    };
    assert_eq!(op_names(&g).len(), 13);
    assert_eq!(
        op_names(&g)
            .iter()
            .filter(|n| **n == "DEPTHWISE_CONV_2D")
            .count(),
        4
    );
    let input = g.tensor(g.inputs[0]);
    assert_eq!(
        (input.dtype, input.quant.is_none()),
        (DataType::Float32, true)
    );
    assert_eq!(input.shape, [1, 49, 10, 1]);
    // A hybrid model: float activations, int8 weights with one scale each.
    let filter = g.tensor(g.nodes[0].inputs[1].unwrap());
    assert_eq!(filter.dtype, DataType::Int8);
    assert_eq!(filter.data.as_ref().map(Vec::len), Some(64 * 10 * 4));
    assert!(filter.quant.as_ref().unwrap().is_per_tensor());
}

#[test]
fn resnet_and_autoencoder() {
    if let Some(g) = shared("pretrainedResnet_quant.tflite") {
        let names = op_names(&g);
        assert_eq!(names.iter().filter(|n| **n == "CONV_2D").count(), 9);
        assert_eq!(names.iter().filter(|n| **n == "ADD").count(), 3);
        assert_eq!(names[3], "ADD");
        assert_eq!(
            names[12..],
            ["AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]
        );
        assert_eq!(
            g.nodes[3].op,
            Operator::Add {
                activation: Activation::Relu
            }
        );
        let input = g.tensor(g.inputs[0]);
        assert_eq!(input.shape, [1, 32, 32, 3]);
        assert_eq!(input.scale_zp(), Some((1.0, -128)));
    }
    if let Some(g) = shared("ad01_int8.tflite") {
        assert_eq!(op_names(&g), ["FULLY_CONNECTED"; 10]);
        assert_eq!(g.tensor(g.inputs[0]).shape, [1, 640]);
        assert_eq!(g.tensor(g.outputs[0]).shape, [1, 640]);
        let acts: Vec<_> = g
            .nodes
            .iter()
            .map(|n| match n.op {
                Operator::FullyConnected { activation, .. } => activation,
                _ => panic!(),
            })
            .collect();
        assert_eq!(acts[..9], [Activation::Relu; 9]);
        assert_eq!(acts[9], Activation::None);
    }
    if let Some(g) = shared("hello_world_int8.tflite") {
        assert_eq!(op_names(&g), ["FULLY_CONNECTED"; 3]);
        let input = g.tensor(g.inputs[0]);
        assert_eq!(
            (input.shape.as_slice(), input.dtype),
            (&[1, 1][..], DataType::Int8)
        );
        assert_eq!(input.scale_zp().map(|s| s.1), Some(-128));
    }
}

#[test]
fn keyword_scrambled_has_svdf() {
    let Some(g) = shared("keyword_scrambled_8bit.tflite") else {
        return;
    };
    let names = op_names(&g);
    assert_eq!(names.len(), 15);
    assert_eq!(names.iter().filter(|n| **n == "SVDF").count(), 7);
    assert_eq!(names.iter().filter(|n| **n == "FULLY_CONNECTED").count(), 5);
    assert_eq!(
        (names[0], names[13], names[14]),
        ("QUANTIZE", "SOFTMAX", "QUANTIZE")
    );
    assert_eq!(
        g.nodes[1].op,
        Operator::Unsupported {
            name: "SVDF".into()
        }
    );
    let input = g.tensor(g.inputs[0]);
    assert_eq!(
        (input.shape.as_slice(), input.dtype),
        (&[1, 96][..], DataType::Int16)
    );
    assert_eq!(g.tensor(g.outputs[0]).dtype, DataType::Int32);
}

// ---------------------------------------------------------------------------------------------
// Hand-made models.

/// Vtable offset of schema field `id`.
const fn f(id: u16) -> u16 {
    4 + 2 * id
}

/// A scalar field value.
#[derive(Clone, Copy, Debug)]
enum V {
    I8(i8),
    U8(u8),
    I32(i32),
    U32(u32),
    U64(u64),
    F32(f32),
    Bool(bool),
}

fn push(fbb: &mut FlatBufferBuilder, slot: u16, v: V) {
    match v {
        V::I8(x) => fbb.push_slot_always(slot, x),
        V::U8(x) => fbb.push_slot_always(slot, x),
        V::I32(x) => fbb.push_slot_always(slot, x),
        V::U32(x) => fbb.push_slot_always(slot, x),
        V::U64(x) => fbb.push_slot_always(slot, x),
        V::F32(x) => fbb.push_slot_always(slot, x),
        V::Bool(x) => fbb.push_slot_always(slot, x),
    }
}

#[derive(Clone)]
struct TQuant {
    scale: Vec<f32>,
    zero_point: Option<Vec<i64>>,
    dim: i32,
}

fn q(scale: f32, zp: i64) -> Option<TQuant> {
    Some(TQuant {
        scale: vec![scale],
        zero_point: Some(vec![zp]),
        dim: 0,
    })
}

#[derive(Clone)]
struct TTensor {
    shape: Vec<i32>,
    ty: i8,
    buffer: u32,
    name: &'static str,
    quant: Option<TQuant>,
    is_variable: bool,
    sparse: bool,
}

fn tensor(
    name: &'static str,
    shape: &[i32],
    ty: i8,
    buffer: u32,
    quant: Option<TQuant>,
) -> TTensor {
    TTensor {
        shape: shape.to_vec(),
        ty,
        buffer,
        name,
        quant,
        is_variable: false,
        sparse: false,
    }
}

#[derive(Clone)]
struct TOp {
    opcode: u32,
    inputs: Vec<i32>,
    outputs: Vec<i32>,
    /// Union type and the option table's fields.
    options: Option<(u8, Vec<(u16, V)>)>,
}

#[derive(Clone)]
struct TSub {
    tensors: Vec<TTensor>,
    inputs: Vec<i32>,
    outputs: Vec<i32>,
    ops: Vec<TOp>,
}

#[derive(Clone)]
enum TBuf {
    Empty,
    Data(Vec<u8>),
    External { offset: u64, size: u64 },
}

#[derive(Clone)]
struct TModel {
    identifier: &'static str,
    version: u32,
    /// (deprecated_builtin_code, builtin_code, custom_code)
    codes: Vec<(i8, i32, Option<&'static str>)>,
    subgraphs: Vec<TSub>,
    buffers: Vec<TBuf>,
    /// Bytes appended after the flatbuffer (external buffer data).
    tail: Vec<u8>,
}

/// Serialises a model description with the flatbuffers builder.
fn build(m: &TModel) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let codes: Vec<_> = m
        .codes
        .iter()
        .map(|(dep, code, custom)| {
            let custom = custom.map(|c| fbb.create_string(c));
            let t = fbb.start_table();
            push(&mut fbb, f(0), V::I8(*dep));
            if let Some(c) = custom {
                fbb.push_slot_always(f(1), c);
            }
            push(&mut fbb, f(2), V::I32(1));
            push(&mut fbb, f(3), V::I32(*code));
            fbb.end_table(t)
        })
        .collect();
    let codes = fbb.create_vector(&codes);
    let mut subgraphs = Vec::new();
    for sg in &m.subgraphs {
        let mut tensors = Vec::new();
        for t in &sg.tensors {
            let shape = fbb.create_vector(&t.shape);
            let name = fbb.create_string(t.name);
            let quant = t.quant.as_ref().map(|q| {
                let scale = fbb.create_vector(&q.scale);
                let zp = q.zero_point.as_ref().map(|z| fbb.create_vector(z));
                let tq = fbb.start_table();
                fbb.push_slot_always(f(2), scale);
                if let Some(z) = zp {
                    fbb.push_slot_always(f(3), z);
                }
                push(&mut fbb, f(6), V::I32(q.dim));
                fbb.end_table(tq)
            });
            let sparsity = t.sparse.then(|| {
                let s = fbb.start_table();
                fbb.end_table(s)
            });
            let tt = fbb.start_table();
            fbb.push_slot_always(f(0), shape);
            push(&mut fbb, f(1), V::I8(t.ty));
            push(&mut fbb, f(2), V::U32(t.buffer));
            fbb.push_slot_always(f(3), name);
            if let Some(q) = quant {
                fbb.push_slot_always(f(4), q);
            }
            if t.is_variable {
                push(&mut fbb, f(5), V::Bool(true));
            }
            if let Some(s) = sparsity {
                fbb.push_slot_always(f(6), s);
            }
            tensors.push(fbb.end_table(tt));
        }
        let tensors = fbb.create_vector(&tensors);
        let inputs = fbb.create_vector(&sg.inputs);
        let outputs = fbb.create_vector(&sg.outputs);
        let mut ops = Vec::new();
        for o in &sg.ops {
            let inputs = fbb.create_vector(&o.inputs);
            let outputs = fbb.create_vector(&o.outputs);
            let options = o.options.as_ref().map(|(ty, fields)| {
                let t = fbb.start_table();
                for (slot, v) in fields {
                    push(&mut fbb, *slot, *v);
                }
                (*ty, fbb.end_table(t))
            });
            let t = fbb.start_table();
            push(&mut fbb, f(0), V::U32(o.opcode));
            fbb.push_slot_always(f(1), inputs);
            fbb.push_slot_always(f(2), outputs);
            if let Some((ty, opts)) = options {
                push(&mut fbb, f(3), V::U8(ty));
                fbb.push_slot_always(f(4), opts);
            }
            ops.push(fbb.end_table(t));
        }
        let ops = fbb.create_vector(&ops);
        let t = fbb.start_table();
        fbb.push_slot_always(f(0), tensors);
        fbb.push_slot_always(f(1), inputs);
        fbb.push_slot_always(f(2), outputs);
        fbb.push_slot_always(f(3), ops);
        subgraphs.push(fbb.end_table(t));
    }
    let subgraphs = fbb.create_vector(&subgraphs);
    let buffers: Vec<_> = m
        .buffers
        .iter()
        .map(|b| {
            let data = match b {
                TBuf::Data(d) => Some(fbb.create_vector(d)),
                _ => None,
            };
            let t = fbb.start_table();
            if let Some(d) = data {
                fbb.push_slot_always(f(0), d);
            }
            if let TBuf::External { offset, size } = b {
                push(&mut fbb, f(1), V::U64(*offset));
                push(&mut fbb, f(2), V::U64(*size));
            }
            fbb.end_table(t)
        })
        .collect();
    let buffers = fbb.create_vector(&buffers);
    let root = fbb.start_table();
    push(&mut fbb, f(0), V::U32(m.version));
    fbb.push_slot_always(f(1), codes);
    if !m.subgraphs.is_empty() {
        fbb.push_slot_always(f(2), subgraphs);
    }
    fbb.push_slot_always(f(4), buffers);
    let root: WIPOffset<flatbuffers::TableFinishedWIPOffset> = fbb.end_table(root);
    fbb.finish(root, Some(m.identifier));
    let mut out = fbb.finished_data().to_vec();
    out.extend_from_slice(&m.tail);
    out
}

const FLOAT32: i8 = 0;
const INT32: i8 = 2;
const STRING: i8 = 5;
const INT8: i8 = 9;
const FC_OPTIONS: u8 = 8;

/// int8 FULLY_CONNECTED: input [1,4], per-channel weights [3,4] (buffer 1), bias [3] (buffer 2),
/// output [1,3], fused ReLU.
fn fc_model() -> TModel {
    TModel {
        identifier: "TFL3",
        version: 3,
        codes: vec![(9, 9, None)],
        subgraphs: vec![TSub {
            tensors: vec![
                tensor("input", &[1, 4], INT8, 0, q(0.5, -3)),
                tensor(
                    "weights",
                    &[3, 4],
                    INT8,
                    1,
                    Some(TQuant {
                        scale: vec![0.1, 0.2, 0.3],
                        zero_point: Some(vec![0, 0, 0]),
                        dim: 0,
                    }),
                ),
                tensor("bias", &[3], INT32, 2, None),
                tensor("output", &[1, 3], INT8, 0, q(0.25, 5)),
            ],
            inputs: vec![0],
            outputs: vec![3],
            ops: vec![TOp {
                opcode: 0,
                inputs: vec![0, 1, 2],
                outputs: vec![3],
                options: Some((FC_OPTIONS, vec![(f(0), V::I8(1))])),
            }],
        }],
        buffers: vec![
            TBuf::Empty,
            TBuf::Data((1..=12).collect()),
            TBuf::Data(vec![7; 12]),
        ],
        tail: Vec::new(),
    }
}

/// A single-op model: `code` (deprecated, builtin, custom) with `inputs` float tensors of
/// `shape` and one output of `out_shape`.
fn one_op_model(
    code: (i8, i32, Option<&'static str>),
    n_inputs: usize,
    shape: &[i32],
    out_shape: &[i32],
    options: Option<(u8, Vec<(u16, V)>)>,
) -> TModel {
    let mut tensors: Vec<_> = (0..n_inputs)
        .map(|_| tensor("in", shape, FLOAT32, 0, None))
        .collect();
    tensors.push(tensor("out", out_shape, FLOAT32, 0, None));
    let n = n_inputs as i32;
    TModel {
        identifier: "TFL3",
        version: 3,
        codes: vec![code],
        subgraphs: vec![TSub {
            tensors,
            inputs: (0..n).collect(),
            outputs: vec![n],
            ops: vec![TOp {
                opcode: 0,
                inputs: (0..n).collect(),
                outputs: vec![n],
                options,
            }],
        }],
        buffers: vec![TBuf::Empty],
        tail: Vec::new(),
    }
}

/// Imports `m`, expecting an error whose text contains `expected`.
#[track_caller]
fn expect_err(m: &TModel, expected: &str) -> CompileError {
    expect_err_bytes(&build(m), expected)
}

#[track_caller]
fn expect_err_bytes(bytes: &[u8], expected: &str) -> CompileError {
    match import(bytes) {
        Ok(g) => panic!("expected an error containing {expected:?}, got {g:?}"),
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains(expected), "error {text:?} lacks {expected:?}");
            e
        }
    }
}

#[test]
fn hand_made_fc_model() {
    let bytes = build(&fc_model());
    let g = import(&bytes).unwrap();
    check_graph(&g);
    assert_eq!(g.inputs, [0]);
    assert_eq!(g.outputs, [3]);
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(
        g.nodes[0].op,
        Operator::FullyConnected {
            activation: Activation::Relu,
            keep_num_dims: false
        }
    );
    assert_eq!(g.nodes[0].inputs, [Some(0), Some(1), Some(2)]);
    assert_eq!(g.nodes[0].outputs, [3]);
    let w = g.tensor(1);
    assert_eq!(
        (w.name.as_str(), w.shape.as_slice()),
        ("weights", &[3, 4][..])
    );
    assert_eq!(w.data.as_deref(), Some(&(1..=12).collect::<Vec<u8>>()[..]));
    let wq = w.quant.as_ref().unwrap();
    assert_eq!((wq.scales.as_slice(), wq.axis), (&[0.1, 0.2, 0.3][..], 0));
    assert_eq!(g.tensor(0).scale_zp(), Some((0.5, -3)));
    assert_eq!(g.tensor(2).data.as_deref(), Some(&[7u8; 12][..]));
    assert!(g.tensor(2).quant.is_none());
    assert!(g.tensor(3).data.is_none());
}

#[test]
fn malformed_headers() {
    expect_err_bytes(b"", "too short");
    expect_err_bytes(b"\x08\0\0\0TFL", "too short");
    let mut m = fc_model();
    m.identifier = "TFL2";
    expect_err(&m, "file identifier is \"TFL2\", expected \"TFL3\"");
    let mut m = fc_model();
    m.version = 2;
    expect_err(&m, "Model.version is 2");
    let mut m = fc_model();
    m.subgraphs.clear();
    expect_err(&m, "Model.subgraphs is absent");
    // Root offset pointing past the end.
    let mut bytes = build(&fc_model());
    bytes[0..4].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
    expect_err_bytes(&bytes, "flatbuffer verification failed");
    // Truncated.
    let bytes = build(&fc_model());
    expect_err_bytes(&bytes[..bytes.len() / 2], "flatbuffer verification failed");
}

#[test]
fn malformed_indices() {
    let mut m = fc_model();
    m.subgraphs[0].ops[0].inputs[1] = 7;
    expect_err(
        &m,
        "subgraph 0 operator 0 (FULLY_CONNECTED) inputs[1]: tensor index 7 out of range \
         (subgraph 0 has 4 tensors)",
    );
    let mut m = fc_model();
    m.subgraphs[0].ops[0].inputs[0] = -2;
    expect_err(&m, "inputs[0]: tensor index -2 out of range");
    let mut m = fc_model();
    m.subgraphs[0].ops[0].outputs[0] = -1;
    expect_err(&m, "outputs[0]: tensor index -1 out of range");
    let mut m = fc_model();
    m.subgraphs[0].outputs = vec![9];
    expect_err(&m, "subgraph 0 outputs[0]: tensor index 9 out of range");
    let mut m = fc_model();
    m.subgraphs[0].tensors[1].buffer = 5;
    expect_err(
        &m,
        "tensor 1 (\"weights\"): buffer index 5 out of range (model has 3 buffers)",
    );
    let mut m = fc_model();
    m.subgraphs[0].ops[0].opcode = 3;
    expect_err(
        &m,
        "subgraph 0 operator 0: opcode_index 3 out of range (model has 1 operator codes)",
    );
    let mut m = fc_model();
    m.codes[0] = (-5, -3, None);
    expect_err(&m, "operator_codes[0]: builtin code -3 is negative");
}

#[test]
fn malformed_tensors() {
    let mut m = fc_model();
    m.subgraphs[0].tensors[1].shape = vec![3, 5];
    expect_err(
        &m,
        "tensor 1 (\"weights\"): buffer 1 holds 12 bytes, but shape [3, 5] of int8 needs 15",
    );
    let mut m = fc_model();
    m.subgraphs[0].tensors[0].shape = vec![1, -4];
    expect_err(&m, "tensor 0 (\"input\"): shape[1] is -4 (negative)");
    let mut m = fc_model();
    m.subgraphs[0].tensors[3].shape = vec![i32::MAX, i32::MAX, i32::MAX];
    let e = expect_err(&m, "exceeds 2^40 bytes");
    assert!(matches!(e, CompileError::Limit(_)));
    // Huge dimensions are refused even when another one is 0.
    m.subgraphs[0].tensors[3].shape = vec![i32::MAX, i32::MAX, i32::MAX, 0];
    expect_err(&m, "exceeds 2^40 bytes");
    // Quantization.
    let mut m = fc_model();
    m.subgraphs[0].tensors[0].quant = Some(TQuant {
        scale: vec![0.5, 0.5],
        zero_point: Some(vec![0]),
        dim: 1,
    });
    expect_err(&m, "quantization has 2 scales but 1 zero points");
    let mut m = fc_model();
    m.subgraphs[0].tensors[0].quant = Some(TQuant {
        scale: vec![0.5],
        zero_point: None,
        dim: 0,
    });
    expect_err(&m, "quantization has scales but no zero_point");
    let mut m = fc_model();
    m.subgraphs[0].tensors[1].quant = Some(TQuant {
        scale: vec![0.1; 4],
        zero_point: Some(vec![0; 4]),
        dim: 0,
    });
    expect_err(
        &m,
        "tensor 1 (\"weights\"): quantization has 4 scales but dimension 0 of shape [3, 4] is 3",
    );
    let mut m = fc_model();
    m.subgraphs[0].tensors[1].quant.as_mut().unwrap().dim = 5;
    expect_err(&m, "quantized_dimension 5 out of range for rank 2");
    // Empty scale arrays mean "not quantized".
    let mut m = fc_model();
    m.subgraphs[0].tensors[0].quant = Some(TQuant {
        scale: vec![],
        zero_point: Some(vec![]),
        dim: 0,
    });
    assert!(import(&build(&m)).unwrap().tensor(0).quant.is_none());
}

#[test]
fn malformed_options() {
    let mut m = fc_model();
    m.subgraphs[0].ops[0].options = Some((1, vec![(f(0), V::I8(1))]));
    expect_err(
        &m,
        "operator 0 (FULLY_CONNECTED): builtin_options has union type 1, expected \
         FullyConnectedOptions (8)",
    );
    let mut m = fc_model();
    m.subgraphs[0].ops[0].options = Some((FC_OPTIONS, vec![(f(0), V::I8(9))]));
    expect_err(&m, "fused_activation_function 9 is not in the schema");
    let conv = |fields| {
        one_op_model(
            (3, 3, None),
            1,
            &[1, 4, 4, 1],
            &[1, 4, 4, 1],
            Some((1, fields)),
        )
    };
    expect_err(
        &conv(vec![(f(0), V::I8(2))]),
        "padding 2 is not in the schema",
    );
    expect_err(
        &conv(vec![(f(1), V::I32(-1))]),
        "operator 0 (CONV_2D): stride_w is -1 (negative)",
    );
    let concat = |axis| {
        one_op_model(
            (2, 2, None),
            2,
            &[1, 2],
            &[1, 4],
            Some((10, vec![(f(0), V::I32(axis))])),
        )
    };
    expect_err(&concat(2), "axis 2 out of range for the rank-2 output");
    expect_err(&concat(-3), "axis -3 out of range for the rank-2 output");
}

#[test]
fn operator_mapping() {
    let import_op = |m: &TModel| {
        let g = import(&build(m)).unwrap_or_else(|e| panic!("{e}"));
        check_graph(&g);
        g.nodes[0].op.clone()
    };
    // Concatenation axis normalised with the output rank.
    let concat = one_op_model(
        (2, 2, None),
        2,
        &[1, 2],
        &[1, 4],
        Some((10, vec![(f(0), V::I32(-1)), (f(1), V::I8(3))])),
    );
    assert_eq!(
        import_op(&concat),
        Operator::Concatenation {
            axis: 1,
            activation: Activation::Relu6
        }
    );
    // Absent options → schema defaults.
    let dw = one_op_model((4, 4, None), 1, &[1, 4, 4, 2], &[1, 4, 4, 2], None);
    let Operator::DepthwiseConv2d(o) = import_op(&dw) else {
        panic!()
    };
    assert_eq!(
        (
            o.padding,
            o.stride_h,
            o.stride_w,
            o.dilation_h,
            o.dilation_w,
            o.depth_multiplier,
            o.activation
        ),
        (Padding::Same, 0, 0, 1, 1, 0, Activation::None)
    );
    let dw = one_op_model(
        (4, 4, None),
        1,
        &[1, 4, 4, 2],
        &[1, 4, 4, 2],
        Some((
            2,
            vec![
                (f(0), V::I8(1)),
                (f(1), V::I32(2)),
                (f(2), V::I32(3)),
                (f(3), V::I32(4)),
                (f(4), V::I8(2)),
                (f(5), V::I32(5)),
                (f(6), V::I32(6)),
            ],
        )),
    );
    let Operator::DepthwiseConv2d(o) = import_op(&dw) else {
        panic!()
    };
    assert_eq!(
        (
            o.padding,
            o.stride_w,
            o.stride_h,
            o.depth_multiplier,
            o.activation,
            o.dilation_w,
            o.dilation_h
        ),
        (Padding::Valid, 2, 3, 4, Activation::ReluN1To1, 5, 6)
    );
    let pool = one_op_model(
        (17, 17, None),
        1,
        &[1, 4, 4, 2],
        &[1, 2, 2, 2],
        Some((
            5,
            vec![
                (f(0), V::I8(1)),
                (f(1), V::I32(2)),
                (f(2), V::I32(2)),
                (f(3), V::I32(3)),
                (f(4), V::I32(4)),
                (f(5), V::I8(1)),
            ],
        )),
    );
    let Operator::MaxPool2d(p) = import_op(&pool) else {
        panic!()
    };
    assert_eq!(
        (p.filter_w, p.filter_h, p.stride_w, p.activation),
        (3, 4, 2, Activation::Relu)
    );
    let softmax = one_op_model((25, 25, None), 1, &[1, 4], &[1, 4], None);
    assert_eq!(import_op(&softmax), Operator::Softmax { beta: 0.0 });
    let softmax = one_op_model(
        (25, 25, None),
        1,
        &[1, 4],
        &[1, 4],
        Some((9, vec![(f(0), V::F32(0.5))])),
    );
    assert_eq!(import_op(&softmax), Operator::Softmax { beta: 0.5 });
    let mean = one_op_model(
        (40, 40, None),
        2,
        &[1, 4],
        &[1, 1],
        Some((27, vec![(f(0), V::Bool(true))])),
    );
    assert_eq!(import_op(&mean), Operator::Mean { keep_dims: true });
    let sub = one_op_model(
        (41, 41, None),
        2,
        &[1, 4],
        &[1, 4],
        Some((28, vec![(f(0), V::I8(3))])),
    );
    assert_eq!(
        import_op(&sub),
        Operator::Sub {
            activation: Activation::Relu6
        }
    );
    let mul = one_op_model(
        (18, 18, None),
        2,
        &[1, 4],
        &[1, 4],
        Some((21, vec![(f(0), V::I8(4))])),
    );
    assert_eq!(
        import_op(&mul),
        Operator::Mul {
            activation: Activation::Tanh
        }
    );
    for (code, op) in [
        (22, Operator::Reshape),
        (43, Operator::Squeeze),
        (14, Operator::Logistic),
        (28, Operator::Tanh),
        (19, Operator::Relu),
        (21, Operator::Relu6),
        (114, Operator::Quantize),
        (6, Operator::Dequantize),
        (34, Operator::Pad),
        (60, Operator::Pad),
    ] {
        let m = one_op_model((code, code as i32, None), 1, &[1, 4], &[1, 4], None);
        assert_eq!(import_op(&m), op, "code {code}");
    }
    // Builtin codes: max(deprecated_builtin_code, builtin_code); names from the schema.
    for ((dep, code, custom), name) in [
        ((27, 0, None), "SVDF"),
        ((0, 27, None), "SVDF"),
        ((127, 150, None), "GELU"),
        ((127, 207, None), "COMPLEX"),
        ((127, 300, None), "BUILTIN_300"),
        ((32, 32, Some("MyOp")), "CUSTOM(MyOp)"),
        ((32, 0, None), "CUSTOM()"),
        ((12, 12, None), "L2_POOL_2D"),
    ] {
        let m = one_op_model((dep, code, custom), 1, &[1, 4], &[1, 4], None);
        assert_eq!(import_op(&m), Operator::Unsupported { name: name.into() });
    }
    // Old files: only deprecated_builtin_code.
    let m = one_op_model((25, 0, None), 1, &[1, 4], &[1, 4], None);
    assert_eq!(import_op(&m), Operator::Softmax { beta: 0.0 });
}

#[test]
fn fully_connected_variants() {
    // Shuffled weights are refused by name.
    let mut m = fc_model();
    m.subgraphs[0].ops[0].options =
        Some((FC_OPTIONS, vec![(f(1), V::I8(1)), (f(2), V::Bool(true))]));
    assert_eq!(
        import(&build(&m)).unwrap().nodes[0].op,
        Operator::Unsupported {
            name: "FULLY_CONNECTED (weights_format SHUFFLED4x16INT8)".into()
        }
    );
    m.subgraphs[0].ops[0].options = Some((FC_OPTIONS, vec![(f(1), V::I8(7))]));
    expect_err(&m, "weights_format 7 is not in the schema");
    // keep_num_dims, and an absent optional bias.
    let mut m = fc_model();
    m.subgraphs[0].ops[0].options = Some((FC_OPTIONS, vec![(f(2), V::Bool(true))]));
    m.subgraphs[0].ops[0].inputs[2] = -1;
    let g = import(&build(&m)).unwrap();
    assert_eq!(
        g.nodes[0].op,
        Operator::FullyConnected {
            activation: Activation::None,
            keep_num_dims: true
        }
    );
    assert_eq!(g.nodes[0].inputs, [Some(0), Some(1), None]);
    // Sparse or variable inputs make a supported op unsupported.
    let mut m = fc_model();
    m.subgraphs[0].tensors[1].sparse = true;
    m.buffers[1] = TBuf::Data(vec![1, 2, 3]);
    assert_eq!(
        import(&build(&m)).unwrap().nodes[0].op.name(),
        "FULLY_CONNECTED (sparse tensor input)"
    );
    let mut m = fc_model();
    m.subgraphs[0].tensors[0].is_variable = true;
    assert_eq!(
        import(&build(&m)).unwrap().nodes[0].op.name(),
        "FULLY_CONNECTED (variable tensor input)"
    );
}

#[test]
fn external_buffers() {
    // Weights stored after the flatbuffer (Buffer.offset/size, as in models over 2 GB).
    let mut m = fc_model();
    m.buffers[1] = TBuf::External {
        offset: 1 << 20,
        size: 12,
    };
    let len = build(&m).len();
    let offset = len.next_multiple_of(16);
    m.buffers[1] = TBuf::External {
        offset: offset as u64,
        size: 12,
    };
    m.tail = vec![0; offset - len];
    m.tail.extend(100..112u8);
    let bytes = build(&m);
    assert_eq!(bytes.len(), offset + 12);
    let g = import(&bytes).unwrap();
    assert_eq!(
        g.tensor(1).data.as_deref(),
        Some(&(100..112u8).collect::<Vec<_>>()[..])
    );
    // Past the end of the file.
    m.tail.truncate(m.tail.len() - 1);
    expect_err(&m, "buffers[1]: external data at offset");
    m.buffers[1] = TBuf::External {
        offset: u64::MAX - 4,
        size: 12,
    };
    expect_err(&m, "lies outside the");
}

#[test]
fn subgraphs() {
    // A second subgraph that nothing calls is ignored.
    let mut m = fc_model();
    m.subgraphs.push(m.subgraphs[0].clone());
    let g = import(&build(&m)).unwrap();
    assert_eq!(g.nodes.len(), 1);
    // A WHILE in subgraph 0 of a multi-subgraph model is refused.
    let mut m = one_op_model((119, 119, None), 1, &[1], &[1], None);
    m.subgraphs.push(m.subgraphs[0].clone());
    let e = expect_err(&m, "calls another subgraph");
    assert!(matches!(e, CompileError::Unsupported { index: 0, ref op, .. } if op == "WHILE"));
    // Alone, it is only an unsupported operator.
    m.subgraphs.pop();
    assert_eq!(
        import(&build(&m)).unwrap().nodes[0].op,
        Operator::Unsupported {
            name: "WHILE".into()
        }
    );
}

#[test]
fn other_types_and_shared_buffers() {
    // A string constant: size not checked against the shape; type kept by name.
    let mut m = fc_model();
    m.subgraphs[0]
        .tensors
        .push(tensor("s", &[2], STRING, 1, None));
    m.subgraphs[0]
        .tensors
        .push(tensor("i4", &[3, 4], 17, 1, None));
    let g = import(&build(&m)).unwrap();
    assert_eq!(g.tensor(4).dtype, DataType::Other("string"));
    assert_eq!(g.tensor(5).dtype, DataType::Other("int4"));
    // Many tensors sharing one buffer cannot amplify the copied data without bound.
    let mut m = fc_model();
    m.buffers[1] = TBuf::Data(vec![1; 8192]);
    m.subgraphs[0].tensors[1].shape = vec![2048, 4];
    m.subgraphs[0].tensors[1].quant = None;
    for _ in 0..200 {
        m.subgraphs[0]
            .tensors
            .push(tensor("shared", &[8192], INT8, 1, None));
    }
    expect_err(
        &m,
        "constant data shared between tensors adds up to more than",
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile corpus.

/// xorshift64* — deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn u32_at(b: &[u8], p: usize) -> Option<u32> {
    b.get(p..p + 4)
        .map(|s| u32::from_le_bytes(s.try_into().unwrap()))
}

/// Deterministic mutations of `bytes`.
fn mutations(bytes: &[u8], seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng(seed | 1);
    let len = bytes.len();
    let mut out = Vec::new();
    // Truncations.
    for cut in [
        0,
        1,
        4,
        7,
        8,
        12,
        16,
        24,
        len / 7,
        len / 3,
        len / 2,
        len.saturating_sub(1),
    ] {
        out.push((format!("truncate {cut}"), bytes[..cut.min(len)].to_vec()));
    }
    for _ in 0..4 {
        let cut = rng.below(len);
        out.push((format!("truncate {cut}"), bytes[..cut].to_vec()));
    }
    // Random byte flips (biased towards the table area at the start and end).
    for k in 0..10 {
        let mut m = bytes.to_vec();
        let flips = 1 + k % 8;
        for _ in 0..flips {
            let p = match rng.below(3) {
                0 => rng.below(len.min(4096)),
                1 => len - 1 - rng.below(len.min(4096)),
                _ => rng.below(len),
            };
            m[p] ^= 1 << rng.below(8);
        }
        out.push((format!("flip {flips}"), m));
    }
    // Overwritten u32 offsets: at positions holding plausible forward offsets, and at the
    // positions they point to (table starts, vector lengths).
    let root = u32_at(bytes, 0).unwrap_or(0) as usize;
    let mut sites = vec![0, root, root + 4, root + 8];
    let mut p = 4;
    while p + 4 <= len && sites.len() < 4096 {
        if let Some(v) = u32_at(bytes, p) {
            let v = v as usize;
            if v >= 4 && v % 4 == 0 && p + v + 4 <= len {
                sites.push(p);
                sites.push(p + v);
            }
        }
        p += 4;
    }
    let hostile = |rng: &mut Rng, p: usize, old: u32| -> u32 {
        match rng.below(9) {
            0 => 0,
            1 => u32::MAX,
            2 => i32::MAX as u32,
            3 => 0x8000_0000,
            4 => len as u32,
            5 => (len - p.min(len)) as u32,
            6 => old.wrapping_add(4),
            7 => old.wrapping_sub(4),
            _ => rng.next() as u32,
        }
    };
    for _ in 0..14 {
        let mut m = bytes.to_vec();
        let p = sites[rng.below(sites.len())];
        if p + 4 <= len {
            let old = u32_at(&m, p).unwrap();
            let v = hostile(&mut rng, p, old);
            m[p..p + 4].copy_from_slice(&v.to_le_bytes());
        }
        out.push((format!("offset at {p}"), m));
    }
    // Zeroed regions.
    for _ in 0..6 {
        let mut m = bytes.to_vec();
        let start = rng.below(len);
        let n = 1 + rng.below(512.min(len - start));
        m[start..start + n].fill(0);
        out.push((format!("zero {start}+{n}"), m));
    }
    // Duplicated slices: copied over another place, or inserted.
    for k in 0..6 {
        let mut m = bytes.to_vec();
        let src = rng.below(len);
        let n = 1 + rng.below(256.min(len - src));
        let slice = bytes[src..src + n].to_vec();
        let dst = rng.below(len);
        if k % 2 == 0 {
            let end = (dst + n).min(len);
            m[dst..end].copy_from_slice(&slice[..end - dst]);
        } else {
            m.splice(dst..dst, slice);
        }
        out.push((format!("duplicate {src}+{n} at {dst}"), m));
    }
    out
}

#[test]
fn hostile_corpus_never_panics() {
    let mut sources = vec![("hand-made fc".to_string(), build(&fc_model()))];
    match shared_models() {
        Some(models) => sources.extend(models),
        None => println!("(hostile corpus: mutating only the hand-made model)"),
    }
    let (mut total, mut ok, mut panics) = (0usize, 0usize, Vec::new());
    let mut samples = Vec::new();
    let rng_pick = |k: usize| k % 37 == 0;
    let start = std::time::Instant::now();
    // MOTE_TFLITE_FUZZ_ROUNDS=n runs n rounds of mutations with different seeds (default 1).
    let rounds: u64 = std::env::var("MOTE_TFLITE_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for (round, (i, (name, bytes))) in
        (0..rounds).flat_map(|r| sources.iter().enumerate().map(move |s| (r, s)))
    {
        let seed = 0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1) ^ (round << 32);
        for (what, m) in mutations(bytes, seed) {
            total += 1;
            match catch_unwind(AssertUnwindSafe(|| import(&m))) {
                Ok(Ok(g)) => {
                    ok += 1;
                    check_graph(&g);
                }
                Ok(Err(e)) => {
                    if samples.len() < 12 && rng_pick(total) {
                        samples.push(format!("{name}: {what}: {e}"));
                    }
                }
                Err(_) => panics.push(format!("{name} round {round}: {what}")),
            }
        }
    }
    println!(
        "hostile corpus: {total} mutated files, {ok} imported, {} refused, {} panics, {:?}",
        total - ok - panics.len(),
        panics.len(),
        start.elapsed()
    );
    for s in &samples {
        println!("  e.g. {s}");
    }
    assert!(panics.is_empty(), "import panicked on: {panics:#?}");
    if sources.len() > 1 {
        assert!(total >= 200, "only {total} mutations");
    }
}
