//! N:M sparse weights (issue 7) on the project's digits CNN: pruned 2:4 (and 1:4 in the
//! CONV_2D / FULLY_CONNECTED layers whose input channels allow it), fine-tuned with the mask
//! kept, quantized to int8 and compiled. The compiler stores the pruned layers without their
//! zeros, the file shrinks as `mote inspect` reports it, and the sparse model runs bit-exactly
//! as the same quantized graph compiled with dense (zero-containing) weights and as the
//! compiler's op-by-op simulation. Accuracies are printed.
//!
//! ```sh
//! cargo test -p mote-quantize --test sparse -- --nocapture
//! ```
#![cfg(feature = "float")]

use std::path::{Path, PathBuf};
use std::process::Command;

use mote_quantize::compile::{compile, compile_opts, CompileOptions, Compiled};
use mote_quantize::demo::{test_images, train_images, FLOAT_TFLITE, TEST_LABELS, TRAIN_LABELS};
use mote_quantize::fit::finetune::{predict, FinetuneOptions, Targets};
use mote_quantize::fit::search::{calibrate_ranges, run_quantized, top1};
use mote_quantize::fit::sparse::{prune, prune_and_finetune, Sparsity};
use mote_quantize::float::prepare;
use mote_quantize::ir::Graph;
use mote_quantize::write::AlignedBytes;
use mote_runtime::{Interpreter, Model, OpKind};

fn digits_float() -> Graph {
    prepare(&mote_quantize::tflite::import(FLOAT_TFLITE).unwrap()).unwrap()
}

fn labels(l: &[u8]) -> Vec<usize> {
    l.iter().map(|&c| usize::from(c)).collect()
}

/// Runs the `.mote` bytes on the interpreter (whole-model `invoke`); the raw int8 outputs.
fn run_file(qg: &Graph, bytes: &[u8], inputs: &[Vec<f32>]) -> Vec<Vec<i8>> {
    let aligned = AlignedBytes::new(bytes);
    let model = Model::from_bytes(aligned.as_slice()).unwrap();
    let mut arena = AlignedBytes::zeroed(model.arena_bytes());
    let mut it = Interpreter::new(&model, arena.as_mut_slice()).unwrap();
    let (s, z) = qg.tensors[qg.inputs[0]].scale_zp().unwrap();
    inputs
        .iter()
        .map(|x| {
            it.set_input_bytes(0, &mote_quantize::fidelity::quantize_i8(x, s, z))
                .unwrap();
            it.invoke().unwrap();
            it.output::<i8>(0).unwrap().to_vec()
        })
        .collect()
}

fn kinds(c: &Compiled) -> Vec<OpKind> {
    c.ops.iter().map(|o| o.kind).collect()
}

fn quantized(g: &Graph) -> Graph {
    let cal: Vec<Vec<f32>> = train_images().into_iter().take(200).collect();
    let ranges = calibrate_ranges(g, &cal).unwrap();
    mote_quantize::ptq::quantize_int8(g, &ranges).unwrap()
}

/// The checks shared by the one-shot and fine-tuned runs; returns (flash dense, flash sparse,
/// int8 accuracy).
fn check(q: &Graph, sparse_kinds: usize) -> (usize, usize, f64) {
    let test = test_images();
    let truth = labels(TEST_LABELS);
    let sparse = compile(q.clone()).unwrap();
    let dense = compile_opts(
        q.clone(),
        CompileOptions {
            dense_weights: true,
            ..CompileOptions::default()
        },
    )
    .unwrap();
    let n_sparse = kinds(&sparse)
        .iter()
        .filter(|k| matches!(k, OpKind::SparseConv2d | OpKind::SparseFullyConnected))
        .count();
    assert_eq!(n_sparse, sparse_kinds, "{:?}", kinds(&sparse));
    assert!(kinds(&dense)
        .iter()
        .all(|k| !matches!(k, OpKind::SparseConv2d | OpKind::SparseFullyConnected)));
    assert!(
        sparse.bytes.len() < dense.bytes.len(),
        "{} vs {}",
        sparse.bytes.len(),
        dense.bytes.len()
    );
    // Bit-exact: sparse file = dense file with the zeros = the compiler's simulation.
    let a = run_file(q, &sparse.bytes, &test);
    let b = run_file(q, &dense.bytes, &test);
    assert_eq!(a, b);
    let sim = run_quantized(q, &sparse, &test).unwrap();
    let (os, oz) = q.tensors[q.outputs[0]].scale_zp().unwrap();
    for (x, y) in a.iter().zip(&sim) {
        let x: Vec<f32> = x.iter().map(|&v| (i64::from(v) - oz) as f32 * os).collect();
        assert_eq!(&x, y);
    }
    (dense.bytes.len(), sparse.bytes.len(), top1(&sim, &truth))
}

/// One-shot 2:4 and 1:4 pruning of the float model, and 2:4 fine-tuned with the mask kept:
/// smaller files, bit-exact sparse kernels; accuracies are reported (one-shot 2:4 costs this
/// small model 8 points, 1:4 most of its accuracy; fine-tuned 2:4 keeps at least 95 % top-1).
#[test]
fn digits_nm_pruned_models_shrink_and_run_bit_exact() {
    let t0 = std::time::Instant::now();
    let float = digits_float();
    let test = test_images();
    let truth = labels(TEST_LABELS);
    let float_acc = top1(&predict(&float, &test, 64).unwrap(), &truth);
    let base = compile(quantized(&float)).unwrap();
    let base_acc = top1(
        &run_quantized(&quantized(&float), &base, &test).unwrap(),
        &truth,
    );
    // digits: CONV_2D (1 input channel: groups of one, never encoded), DEPTHWISE_CONV_2D (not
    // pruned), CONV_2D, CONV_2D, FULLY_CONNECTED: three layers encoded.
    let mut lines = vec![format!(
        "float {:.2} %, int8 dense {:.2} %, {} bytes",
        100.0 * float_acc,
        100.0 * base_acc,
        base.bytes.len()
    )];
    for (n, m) in [(2, 4), (1, 4)] {
        let mut g = float.clone();
        prune(&mut g, Sparsity::NM { n, m });
        let (dense, sparse, acc) = check(&quantized(&g), 3);
        lines.push(format!(
            "{n}:{m} one-shot: int8 {:.2} %, .mote {dense} bytes with dense zeros -> {sparse} sparse",
            100.0 * acc
        ));
    }
    let opts = FinetuneOptions {
        epochs: 5,
        lr: 1e-2,
        ..FinetuneOptions::default()
    };
    let (tuned, _, loss) = prune_and_finetune(
        &float,
        Sparsity::NM { n: 2, m: 4 },
        &train_images(),
        &Targets::Labels(TRAIN_LABELS),
        &opts,
    )
    .unwrap();
    let tuned_float = top1(&predict(&tuned, &test, 64).unwrap(), &truth);
    let (dense, sparse, acc) = check(&quantized(&tuned), 3);
    lines.push(format!(
        "2:4 + 5 epochs fine-tuning with the mask kept (loss {loss:.3}): float {:.2} %, int8 {:.2} %, .mote {dense} -> {sparse} bytes",
        100.0 * tuned_float,
        100.0 * acc
    ));
    eprintln!(
        "digits:\n  {}\n({:.1} s)",
        lines.join("\n  "),
        t0.elapsed().as_secs_f64()
    );
    // Measured: int8 99.44 % vs float 99.17 % (half the weights of a 10 k-parameter model;
    // one-shot 90.83 %, 1:4 one-shot 28.06 %).
    assert!(
        acc >= 0.95,
        "2:4 fine-tuned int8 {acc} vs float {float_acc}"
    );
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mote-sparse-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn mote(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mote"))
        .args(args)
        .output()
        .expect("run mote");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// `mote quantize --nm 2:4`: the file is smaller than without it, and `mote inspect` names
/// the encoding of each op (2:4 sparse for the pruned layers, dense for the others).
#[test]
fn cli_quantize_nm_and_inspect_show_the_encoding() {
    let model = tmp("digits_float.tflite");
    std::fs::write(&model, FLOAT_TFLITE).unwrap();
    let cal = tmp("cal.f32");
    let b: Vec<u8> = train_images()
        .iter()
        .take(100)
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(&cal, b).unwrap();
    let (dense, sparse) = (tmp("dense.mote"), tmp("sparse.mote"));
    let common = ["quantize", &s(&model), "--calibration", &s(&cal), "--quiet"];
    let (ok, _, err) = mote(&[&common[..], &["-o", &s(&dense)]].concat());
    assert!(ok, "{err}");
    let (ok, out, err) = mote(&[&common[..], &["--nm", "2:4", "-o", &s(&sparse)]].concat());
    assert!(ok, "{err}");
    assert!(out.contains("pruned"), "{out}");
    let flash = |p: &Path| {
        let (ok, json, err) = mote(&["inspect", "--json", &s(p)]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let enc: Vec<String> = v["ops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["weights"].as_str().unwrap().to_string())
            .filter(|w| !w.is_empty())
            .collect();
        (v["flash_bytes"].as_u64().unwrap(), enc)
    };
    let (fd, ed) = flash(&dense);
    let (fs, es) = flash(&sparse);
    assert!(ed.iter().all(|e| e.starts_with("dense int8")), "{ed:?}");
    assert_eq!(
        es.iter().filter(|e| e.starts_with("2:4 sparse")).count(),
        3,
        "{es:?}"
    );
    assert_eq!(fs, std::fs::metadata(&sparse).unwrap().len());
    assert!(fs < fd, "{fs} vs {fd}");
    let (ok, text, err) = mote(&["inspect", &s(&sparse)]);
    assert!(ok, "{err}");
    assert!(
        text.contains("SPARSE_CONV_2D") && text.contains("2:4 sparse"),
        "{text}"
    );
    eprintln!("mote quantize: {fd} bytes dense, {fs} bytes with --nm 2:4\n{text}");
}
