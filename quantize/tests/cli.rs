//! The `mote` command line: convert, inspect (text and JSON) and run (raw and .npy), end to end.

use std::path::{Path, PathBuf};
use std::process::Command;

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

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mote-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The first golden case of a fixture: (input bytes, expected output bytes).
fn first_case(name: &str, input_len: usize, output_len: usize) -> (Vec<u8>, Vec<u8>) {
    let dir = fixtures().join("golden").join(name);
    let inputs = std::fs::read(dir.join("inputs.bin")).unwrap();
    let outputs = std::fs::read(dir.join("outputs.bin")).unwrap();
    // Case 2 is the first random case (0 = zeros, 1 = ramp).
    (
        inputs[2 * input_len..3 * input_len].to_vec(),
        outputs[2 * output_len..3 * output_len].to_vec(),
    )
}

#[test]
fn convert_inspect_run() {
    let tflite = fixtures().join("ops/net_cnn.tflite");
    let model = tmp("net_cnn.mote");
    let (ok, stdout, stderr) = mote(&["convert", s(&tflite), "-o", s(&model)]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("arena"), "{stdout}");

    let (ok, text, stderr) = mote(&["inspect", s(&model)]);
    assert!(ok, "{stderr}");
    assert!(
        text.contains("CONV_2D") && text.contains("SOFTMAX"),
        "{text}"
    );
    assert!(text.contains("MACs"), "{text}");

    let (ok, json, stderr) = mote(&["inspect", s(&model), "--json"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    for key in [
        "arena_bytes",
        "flash_bytes",
        "macs",
        "ops",
        "inputs",
        "outputs",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {json}");
    }
    let input = &v["inputs"][0];
    for key in ["shape", "dtype", "scale", "zero_point"] {
        assert!(input.get(key).is_some(), "missing inputs[0].{key}");
    }
    assert_eq!(input["dtype"], "int8");
    assert!(v["macs"].as_u64().unwrap() > 0);
    assert_eq!(
        v["flash_bytes"].as_u64().unwrap(),
        std::fs::metadata(&model).unwrap().len()
    );

    // Run with raw bytes and with .npy; both must equal TFLM's output.
    let in_len: u64 = input["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap())
        .product();
    let out_len: u64 = v["outputs"][0]["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap())
        .product();
    let (x, want) = first_case("net_cnn", in_len as usize, out_len as usize);
    let raw_in = tmp("in.bin");
    std::fs::write(&raw_in, &x).unwrap();
    let raw_out = tmp("out.bin");
    let (ok, _, stderr) = mote(&[
        "run",
        s(&model),
        "--input",
        s(&raw_in),
        "--output",
        s(&raw_out),
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read(&raw_out).unwrap(), want);

    let shape: Vec<usize> = input["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let npy_in = tmp("in.npy");
    std::fs::write(&npy_in, mote_quantize::npy::to_npy(&x, "|i1", &shape)).unwrap();
    let npy_out = tmp("out.npy");
    // A .tflite is compiled on the fly by `run` too.
    let (ok, _, stderr) = mote(&[
        "run",
        s(&tflite),
        "--input",
        s(&npy_in),
        "--output",
        s(&npy_out),
    ]);
    assert!(ok, "{stderr}");
    let t = mote_quantize::npy::parse_npy(&std::fs::read(&npy_out).unwrap()).unwrap();
    assert_eq!(t.bytes, want);
    assert_eq!(t.descr.as_deref(), Some("|i1"));
}

#[test]
fn clear_errors() {
    let model = fixtures().join("ops/net_cnn.tflite");
    // Wrong input size.
    let bad_in = tmp("short.bin");
    std::fs::write(&bad_in, [1u8, 2, 3]).unwrap();
    let (ok, _, stderr) = mote(&[
        "run",
        s(&model),
        "--input",
        s(&bad_in),
        "--output",
        s(&tmp("o.bin")),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("3 bytes") && stderr.contains("input 0"),
        "{stderr}"
    );

    // Wrong dtype in a .npy.
    let npy = tmp("f.npy");
    std::fs::write(&npy, mote_quantize::npy::to_npy(&[0u8; 4], "<f4", &[1])).unwrap();
    let (ok, _, stderr) = mote(&[
        "run",
        s(&model),
        "--input",
        s(&npy),
        "--output",
        s(&tmp("o.bin")),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("<f4") && stderr.contains("int8"),
        "{stderr}"
    );

    // Not a model.
    let junk = tmp("junk.tflite");
    std::fs::write(&junk, b"definitely not a flatbuffer").unwrap();
    let (ok, _, stderr) = mote(&["inspect", s(&junk)]);
    assert!(!ok);
    assert!(stderr.starts_with("error:"), "{stderr}");

    // Missing file.
    let (ok, _, stderr) = mote(&["convert", "/nonexistent.tflite", "-o", s(&tmp("x.mote"))]);
    assert!(!ok);
    assert!(stderr.contains("/nonexistent.tflite"), "{stderr}");
}

/// `mote convert --emit-aot`: the model compiled ahead of time, as a Rust module (planned plain:
/// a larger arena than the default plan), and a clear refusal for what it does not cover.
#[test]
fn convert_emit_aot() {
    let model = fixtures().join("ops/net_cnn.tflite");
    let (aot, plain) = (tmp("net_cnn_aot.rs"), tmp("net_cnn_plain.mote"));
    let (ok, stdout, stderr) =
        mote(&["convert", s(&model), "-o", s(&plain), "--emit-aot", s(&aot)]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(s(&aot)), "{stdout}");
    let code = std::fs::read_to_string(&aot).unwrap();
    for item in [
        "pub const ARENA_BYTES",
        "pub fn invoke_op(",
        "pub fn invoke(",
        "0 => aot::conv2d_int8(arena, &OP0),",
    ] {
        assert!(code.contains(item), "no `{item}` in\n{code}");
    }
    // The .mote written beside it is the same plain plan: nothing in place (the default plan
    // of this model shifts three ops in place and aliases one).
    let (ok, inspected, stderr) = mote(&["inspect", s(&plain), "--plan", "--json"]);
    assert!(ok, "{stderr}");
    assert!(inspected.contains("\"in_place\": null"), "{inspected}");
    assert!(!inspected.contains("\"in_place\": \""), "{inspected}");

    let int16 = fixtures().join("ops16/a16_relu.tflite");
    let (ok, _, stderr) = mote(&["convert", s(&int16), "--emit-aot", s(&tmp("a16.rs"))]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot compile the model ahead of time: op 0")
            && stderr.contains("run it with the interpreter"),
        "{stderr}"
    );
}
