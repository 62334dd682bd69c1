//! The ONNX importer on hostile and unsupported input:
//!
//! - a corpus of deterministic mutations of real fixture models (truncations, byte flips,
//!   overwritten runs, random bytes): every one gives `Ok` or an `Err` with a message, never a
//!   panic, and whatever imports also goes through compilation and float preparation without
//!   panicking;
//! - hand-made models that must be refused by name, with the error text checked.
#![cfg(feature = "onnx")]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use mote_quantize::{onnx, CompileError};
use onnx_ir::{
    AttributeProto, AttributeType, GraphProto, Message, ModelProto, NodeProto, TensorProto,
    ValueInfoProto,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

/// xorshift64*: a deterministic byte stream.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutations(model: &[u8], seed: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let n = model.len();
    for k in 0..48 {
        out.push(model[..n * k / 48].to_vec());
    }
    let mut rng = Rng(seed | 1);
    for _ in 0..240 {
        let mut m = model.to_vec();
        let flips = 1 + rng.below(4);
        for _ in 0..flips {
            let at = rng.below(n);
            m[at] = rng.next() as u8;
        }
        out.push(m);
    }
    for _ in 0..40 {
        let mut m = model.to_vec();
        let at = rng.below(n);
        let len = 1 + rng.below(12);
        let v = [0xff, 0x00, 0x7f, 0x80][rng.below(4)];
        for b in m.iter_mut().skip(at).take(len) {
            *b = v;
        }
        out.push(m);
    }
    for len in [0, 1, 2, 7, 64, 1000] {
        out.push((0..len).map(|_| rng.next() as u8).collect());
    }
    out
}

#[test]
fn mutated_models_never_panic() {
    let files = [
        "digits.onnx",
        "digits_qdq.onnx",
        "qdq/cnn_pc_u8.onnx",
        "node/mote_conv_bn_relu_flatten_gemm.onnx",
        "node/mote_pads_bn_concat_softmax.onnx",
    ];
    let (mut ok, mut err, mut panics) = (0, 0, Vec::new());
    for (i, f) in files.iter().enumerate() {
        let bytes = std::fs::read(fixtures().join(f)).expect("fixture");
        for (k, m) in mutations(&bytes, 0x9e37_79b9 + i as u64)
            .into_iter()
            .enumerate()
        {
            let r = catch_unwind(AssertUnwindSafe(|| match onnx::import(&m) {
                Ok(g) => {
                    let _ = mote_quantize::compile::compile(g.clone());
                    #[cfg(feature = "float")]
                    let _ = mote_quantize::float::prepare(&g);
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            }));
            match r {
                Ok(Ok(())) => ok += 1,
                Ok(Err(msg)) => {
                    assert!(!msg.is_empty());
                    err += 1;
                }
                Err(_) => panics.push(format!("{f} mutation {k}")),
            }
        }
    }
    println!(
        "{ok} mutations imported, {err} refused with an error, {} panicked",
        panics.len()
    );
    assert!(panics.is_empty(), "panics: {panics:?}");
    assert!(err > 0);
}

// ---- hand-made models ----

fn vi(name: &str, dims: &[i64]) -> ValueInfoProto {
    let mut v = ValueInfoProto::new();
    v.name = name.into();
    let mut t = onnx_ir::TypeProto::new();
    let tt = t.mut_tensor_type();
    tt.elem_type = 1;
    let mut shape = onnx_ir::TensorShapeProto::new();
    for &d in dims {
        shape.dim.push(Default::default());
        if let Some(dim) = shape.dim.last_mut() {
            dim.set_dim_value(d);
        }
    }
    tt.shape = Some(shape).into();
    v.type_ = Some(t).into();
    v
}

fn f32_tensor(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.dims = dims.to_vec();
    t.data_type = 1;
    t.float_data = v.to_vec();
    t
}

fn node(op: &str, ins: &[&str], outs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.input = ins.iter().map(|s| s.to_string()).collect();
    n.output = outs.iter().map(|s| s.to_string()).collect();
    n.attribute = attrs;
    n
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INTS.into();
    a.ints = v.to_vec();
    a
}

fn int(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INT.into();
    a.i = v;
    a
}

fn model(opset: i64, input: &[i64], nodes: Vec<NodeProto>, inits: Vec<TensorProto>) -> Vec<u8> {
    let mut g = GraphProto::new();
    g.name = "t".into();
    g.input.push(vi("x", input));
    g.output.push(vi("y", &[]));
    g.node = nodes;
    g.initializer = inits;
    let mut m = ModelProto::new();
    m.ir_version = 8;
    m.opset_import.push(Default::default());
    if let Some(o) = m.opset_import.last_mut() {
        o.version = opset;
    }
    m.graph = Some(g).into();
    m.write_to_bytes().expect("encode")
}

fn refused(bytes: &[u8], expected: &str) -> CompileError {
    let e = onnx::import(bytes).expect_err("must be refused");
    let msg = e.to_string();
    assert!(
        msg.contains(expected),
        "{msg:?} does not contain {expected:?}"
    );
    e
}

#[test]
fn unsupported_models_are_refused_by_name() {
    let relu = || vec![node("Relu", &["x"], &["y"], vec![])];
    // The baseline imports.
    onnx::import(&model(13, &[1, 4], relu(), vec![])).expect("relu");

    let e = refused(&model(12, &[1, 4], relu(), vec![]), "ONNX opset 12");
    assert!(matches!(e, CompileError::Unsupported { .. }));
    refused(&model(22, &[1, 4], relu(), vec![]), "opsets 13..=21");

    let e = refused(
        &model(
            13,
            &[1, 4],
            vec![node("LRN", &["x"], &["y"], vec![int("size", 3)])],
            vec![],
        ),
        "op 0 (LRN) is not supported: no converter for the ONNX operator LRN",
    );
    assert!(matches!(e, CompileError::Unsupported { index: 0, .. }));

    let mut ms = node("Gelu", &["x"], &["y"], vec![]);
    ms.domain = "com.microsoft".into();
    refused(
        &model(13, &[1, 4], vec![ms], vec![]),
        "(com.microsoft::Gelu) is not supported",
    );

    let w = f32_tensor("w", &[2, 2, 1, 1], &[1.0; 4]);
    refused(
        &model(
            13,
            &[1, 2, 3, 3],
            vec![node("Conv", &["x", "w"], &["y"], vec![int("foo", 1)])],
            vec![w.clone()],
        ),
        "(Conv) is not supported: attribute \"foo\"",
    );
    // Grouped (not depthwise) convolution.
    refused(
        &model(
            13,
            &[1, 4, 3, 3],
            vec![node("Conv", &["x", "w"], &["y"], vec![int("group", 2)])],
            vec![f32_tensor("w", &[2, 2, 1, 1], &[1.0; 4])],
        ),
        "grouped convolution (group 2 of 4 channels)",
    );
    // 1-D convolution.
    refused(
        &model(
            13,
            &[1, 2, 5],
            vec![node("Conv", &["x", "w"], &["y"], vec![])],
            vec![f32_tensor("w", &[2, 2, 1], &[1.0; 4])],
        ),
        "only 2-D convolutions",
    );
    // Clip to a range other than [0, 6] / [0, ∞).
    refused(
        &model(
            13,
            &[1, 4],
            vec![node("Clip", &["x", "lo", "hi"], &["y"], vec![])],
            vec![
                f32_tensor("lo", &[], &[-1.0]),
                f32_tensor("hi", &[], &[1.0]),
            ],
        ),
        "Clip to [-1, 1]",
    );
    // A layout-changing reshape of an NCHW tensor.
    let mut shape = TensorProto::new();
    shape.name = "s".into();
    shape.dims = vec![3];
    shape.data_type = 7;
    shape.int64_data = vec![1, 2, 18];
    refused(
        &model(
            13,
            &[1, 2, 3, 6],
            vec![node("Reshape", &["x", "s"], &["y"], vec![])],
            vec![shape],
        ),
        "changes its memory order in NHWC",
    );
    // Softmax over a spatial axis.
    refused(
        &model(
            13,
            &[1, 2, 3, 3],
            vec![node("Softmax", &["x"], &["y"], vec![])],
            vec![],
        ),
        "only the last axis",
    );
    // MaxPool pads that are neither SAME nor VALID.
    refused(
        &model(
            13,
            &[1, 1, 4, 4],
            vec![node(
                "MaxPool",
                &["x"],
                &["y"],
                vec![ints("kernel_shape", &[2, 2]), ints("pads", &[1, 0, 0, 0])],
            )],
            vec![],
        ),
        "neither SAME nor VALID",
    );
    // A pool without kernel_shape (found by the onnx_import fuzz target: it underflowed).
    refused(
        &model(
            13,
            &[1, 1, 4, 4],
            vec![node("MaxPool", &["x"], &["y"], vec![])],
            vec![],
        ),
        "attribute kernel_shape is required",
    );
    // A node reading a value nobody defined.
    let e = refused(
        &model(
            13,
            &[1, 4],
            vec![node("Relu", &["nope"], &["y"], vec![])],
            vec![],
        ),
        "input \"nope\" is not defined before it",
    );
    assert!(matches!(e, CompileError::Malformed { .. }));
    // External data.
    let mut ext = f32_tensor("w", &[2, 2, 1, 1], &[]);
    ext.external_data.push(Default::default());
    refused(
        &model(
            13,
            &[1, 2, 3, 3],
            vec![node("Conv", &["x", "w"], &["y"], vec![])],
            vec![ext],
        ),
        "external file",
    );
    // Not ONNX at all.
    refused(
        b"TFL3 definitely not a protobuf \xff\xff\xff\xff",
        "malformed ONNX model",
    );
}
