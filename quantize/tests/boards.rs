//! Models on emulated boards: outputs byte-identical to TensorFlow Lite Micro's golden fixtures,
//! and the cost in instructions (qemu).
//!
//! Needs the thumb rustup targets and `qemu-system-arm` (see `targets/boards/ci.sh`), so these
//! tests are `#[ignore]`d in `cargo test --workspace` and run by `targets/boards/ci.sh` with
//! `cargo test --workspace --tests -- --ignored qemu_board_ --test-threads 1 --nocapture` (the
//! same build as `cargo test --workspace`, so nothing is recompiled).
//!
//! Each model runs a few golden cases (zeros, ramp, and the real sample or the first random
//! input) to keep CI short; `MOTE_BOARD_CASES=all` runs every golden case. Each run prints one
//! `| board | … |` row of the instruction table (`ci.sh` collects them).

use std::path::{Path, PathBuf};
use std::time::Duration;

use mote_quantize::board::{board, run_on_board, BoardOptions};
use mote_quantize::compile::{compile_tflite, compile_tflite_opts, CompileOptions};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// TFLM + CMSIS-NN instructions per inference on the M4 (ANCHORS.md), for the report.
fn tflm_cmsis_nn(model: &str) -> Option<u64> {
    match model {
        "kws_ref_model" => Some(7_697_492),
        "pretrainedResnet_quant" => Some(29_859_151),
        "ad01_int8" => Some(583_096),
        "hello_world_int8" => Some(3_582),
        _ => None,
    }
}

/// Indices of the golden cases to run: every one with `MOTE_BOARD_CASES=all`, else zeros, ramp
/// and the real sample (or, without one, the first random case).
fn selected(names: &[&str]) -> Vec<usize> {
    if std::env::var("MOTE_BOARD_CASES").is_ok_and(|v| v == "all") {
        return (0..names.len()).collect();
    }
    let third = if names.contains(&"sample") {
        "sample"
    } else {
        "rand00"
    };
    ["zeros", "ramp", third]
        .iter()
        .filter_map(|want| names.iter().position(|n| n == want))
        .collect()
}

/// Compiles `model` (a shared .tflite), runs the selected golden cases of it on `board_name`, and
/// requires byte-identical outputs. Returns the instructions of the first case.
fn check(board_name: &str, model: &str) -> u64 {
    check_with(board_name, model, false)
}

/// [`check`], with the model compiled ahead of time when `aot` (`mote_runtime::aot`: planned
/// without ops in place, its ops as direct kernel calls, no interpreter in the firmware).
fn check_with(board_name: &str, model: &str, aot: bool) -> u64 {
    let b = board(board_name).expect("known board");
    let golden = root().join("quantize/tests/fixtures/golden").join(model);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(golden.join("cases.json")).unwrap()).unwrap();
    let names: Vec<&str> = meta["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let inputs = std::fs::read(golden.join("inputs.bin")).unwrap();
    let outputs = std::fs::read(golden.join("outputs.bin")).unwrap();
    let in_case = inputs.len() / names.len();
    let out_case = outputs.len() / names.len();
    let cases = selected(&names);
    assert!(!cases.is_empty(), "{model}: no golden cases selected");
    let case_inputs: Vec<u8> = cases
        .iter()
        .flat_map(|&c| &inputs[c * in_case..(c + 1) * in_case])
        .copied()
        .collect();

    // A shared model (`shared:FILE`) or a fixture of the repository.
    let path = meta["model"].as_str().expect("model");
    let path = match path.strip_prefix("shared:") {
        Some(file) => root().join("../shared/models").join(file),
        None => root().join(path),
    };
    let tflite = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let compiled = if aot {
        compile_tflite_opts(&tflite, CompileOptions::ahead_of_time()).expect("compiles")
    } else {
        compile_tflite(&tflite).expect("compiles")
    };
    // A few inferences take seconds under qemu; a hung or crashed firmware fails within this.
    let opts = BoardOptions {
        timeout: Duration::from_secs(120),
        aot,
        ..BoardOptions::default()
    };
    std::fs::create_dir_all(&opts.target_dir).unwrap();
    let suffix = if aot { "-aot" } else { "" };
    let mote = opts.target_dir.join(format!("{model}{suffix}.mote"));
    std::fs::write(&mote, compiled.aligned().as_slice()).unwrap();

    let run = run_on_board(b, Path::new(&mote), &case_inputs, &opts)
        .unwrap_or_else(|e| panic!("{model} on {board_name}: {e}"));
    assert_eq!(
        run.outputs.len(),
        cases.len(),
        "{model} on {board_name}: case count"
    );
    let mut bad = Vec::new();
    for (got, &c) in run.outputs.iter().zip(&cases) {
        let want = &outputs[c * out_case..(c + 1) * out_case];
        if got.as_slice() != want {
            bad.push(format!("case {c} ({})", names[c]));
        }
    }
    assert!(
        bad.is_empty(),
        "{model} on {board_name} ({}): outputs differ from TFLM's in {} of {} cases: {}",
        b.core,
        bad.len(),
        cases.len(),
        bad.join(", ")
    );
    let instr = run.instructions[0];
    let ratio = tflm_cmsis_nn(model)
        .filter(|_| board_name == "mps2-an386")
        .map(|t| format!("{:.2}x of {t}", instr as f64 / t as f64))
        .unwrap_or_else(|| "-".into());
    let shown = format!("{model}{}", if aot { " (AOT)" } else { "" });
    println!(
        "| {board_name:<12} | {:<10} | {shown:<22} | {:>2} | {instr:>12} | {ratio:<19} | {:>8} | {:>7} | {:>6} | {:>6} | {:>5} |",
        b.core,
        cases.len(),
        run.flash_bytes,
        run.model_bytes,
        run.text_bytes,
        run.arena_bytes,
        run.stack.invoke
    );
    // (Ahead-of-time code loads nothing: no load stack.)
    assert!(
        run.stack.invoke > 0 && (aot || run.stack.load > 0),
        "the firmware measures the stack ({:?})",
        run.stack
    );
    instr
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target (run by targets/boards/ci.sh)"]
fn qemu_board_m4_mps2_an386_mlperf_tiny() {
    check("mps2-an386", "kws_ref_model");
    check("mps2-an386", "pretrainedResnet_quant");
    check("mps2-an386", "ad01_int8");
    check("mps2-an386", "hello_world_int8");
    // Ahead of time (DSP kernels only, no reference fallback in the firmware).
    check_with("mps2-an386", "kws_ref_model", true);
    check_with("mps2-an386", "pretrainedResnet_quant", true);
    check_with("mps2-an386", "ad01_int8", true);
}

/// Single-op models compiled ahead of time on the Cortex-M4: the DSP kernels where they take the
/// op, the reference fallback where they do not (depth multiplier 2, channels not a multiple of
/// 4), dilation, padding, pooling, SOFTMAX, SQUEEZE, broadcasting and constant operands of
/// ADD/SUB/MUL, activations, PAD, MEAN, CONCATENATION, two outputs, float input and output;
/// outputs byte-identical to TFLM's.
#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target (run by targets/boards/ci.sh)"]
fn qemu_board_m4_aot_single_ops() {
    for model in [
        "dw_m2_valid_s2",
        "dw_nonsquare_3x1",
        "dw_dil2_valid_relu6",
        "conv_dil2_same",
        "conv_nobias",
        "fc_per_tensor_nobias_keepdims",
        "fc_batch4",
        "maxpool_3x3_same_s2",
        "avgpool_2x2_same_s2",
        "softmax_3d",
        "squeeze_patched",
        "net_cnn",
        "add_bcast_4d",
        "add_const",
        "sub_bcast_c",
        "mul_scalar_const",
        "relu6",
        "logistic",
        "tanh",
        "pad_hw_zp",
        "mean_hw",
        "concat_last_3",
        "net_inception",
        "net_residual",
        "net_two_outputs",
        "conv_float_io",
    ] {
        check_with("mps2-an386", model, true);
    }
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv8m.main target (run by targets/boards/ci.sh)"]
fn qemu_board_m55_mps3_an547_mlperf_tiny() {
    // Helium kernels (`arm-mve`, simd/mve.rs) on both.
    check("mps3-an547", "kws_ref_model");
    check("mps3-an547", "pretrainedResnet_quant");
    // Its 275 KB model lives in the 4 MB SRAM at 0x21000000 (targets/boards/mps3-an547/memory.x),
    // next to the 512 KB ITCM holding the code.
    check("mps3-an547", "ad01_int8");
    check_with("mps3-an547", "kws_ref_model", true);
    check_with("mps3-an547", "pretrainedResnet_quant", true);
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7m target (run by targets/boards/ci.sh)"]
fn qemu_board_m3_lm3s6965_kws() {
    check("lm3s6965evb", "kws_ref_model");
    // Ahead of time with the reference kernels (no DSP extension).
    check_with("lm3s6965evb", "kws_ref_model", true);
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv6m target (run by targets/boards/ci.sh)"]
fn qemu_board_m0_microbit_hello_world() {
    check("microbit", "hello_world_int8");
    check_with("microbit", "hello_world_int8", true);
}

/// Ceiling for the `.text` of the runtime and kernels in the M4 KWS firmware with the
/// interpreter (bytes): the full firmware's `.text` minus that of the same firmware built without
/// the runtime (`baseline`: startup, semihosting reporting, formatting). It only stops
/// regressions: 40,464 B measured (rustc 1.95) plus about 3 KB of headroom. The 16 KB goal is met
/// ahead of time ([`KWS_AOT_TEXT_GOAL`]).
const KWS_RUNTIME_TEXT_CEILING: u64 = 42 * 1024 + 512;

/// The goal for the `.text` of the runtime and kernels in the M4 KWS firmware: 16 KB. The model
/// compiled ahead of time (`mote_runtime::aot`) meets it: 14,080 B measured (rustc 1.95).
const KWS_AOT_TEXT_GOAL: u64 = 16 * 1024;

/// `mote bench KWS.tflite --board mps2-an386 --json` end to end: builds the firmware with only
/// the model's ops, runs it under qemu on a golden input, and reports output, instructions,
/// flash, RAM and per-layer counts; the output must equal TFLM's. Then measures the `.text` of the
/// runtime and kernels (see [`KWS_RUNTIME_TEXT_CEILING`]).
#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target (run by targets/boards/ci.sh)"]
fn qemu_board_mote_bench_cli_kws() {
    let runtime_text = bench_cli_kws(false);
    assert!(
        runtime_text <= KWS_RUNTIME_TEXT_CEILING,
        "runtime + kernels .text {runtime_text} B > {KWS_RUNTIME_TEXT_CEILING} B"
    );
}

/// [`qemu_board_mote_bench_cli_kws`] with `--aot`: the model compiled ahead of time. Its runtime
/// and kernels must fit the 16 KB goal ([`KWS_AOT_TEXT_GOAL`]).
#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target (run by targets/boards/ci.sh)"]
fn qemu_board_mote_bench_cli_kws_aot() {
    let runtime_text = bench_cli_kws(true);
    assert!(
        runtime_text <= KWS_AOT_TEXT_GOAL,
        "ahead-of-time runtime + kernels .text {runtime_text} B > {KWS_AOT_TEXT_GOAL} B"
    );
}

/// Runs `mote bench KWS --board mps2-an386 --json` (with `--aot` when `aot`) on the last golden
/// case, checks the report and the output against TFLM's, and returns the `.text` bytes of the
/// runtime and kernels: the firmware's minus that of the same firmware without the runtime.
fn bench_cli_kws(aot: bool) -> u64 {
    let golden = root().join("quantize/tests/fixtures/golden/kws_ref_model");
    let inputs = std::fs::read(golden.join("inputs.bin")).unwrap();
    let outputs = std::fs::read(golden.join("outputs.bin")).unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(golden.join("cases.json")).unwrap()).unwrap();
    let cases = meta["cases"].as_array().unwrap().len();
    let (in_case, out_case) = (inputs.len() / cases, outputs.len() / cases);
    // The last golden case, raw.
    let opts = BoardOptions::default();
    std::fs::create_dir_all(&opts.target_dir).unwrap();
    let tag = if aot { "-aot" } else { "" };
    let input = opts.target_dir.join(format!("bench-cli-kws{tag}-in.bin"));
    let output = opts.target_dir.join(format!("bench-cli-kws{tag}-out.bin"));
    std::fs::write(&input, &inputs[(cases - 1) * in_case..]).unwrap();
    let model = root().join("../shared/models/kws_ref_model.tflite");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mote"));
    cmd.arg("bench")
        .arg(&model)
        .args(["--board", "mps2-an386", "--json", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&output);
    if aot {
        cmd.arg("--aot");
    }
    let run = cmd.output().expect("runs mote");
    assert!(
        run.status.success(),
        "mote bench --board failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON report");
    let want = &outputs[(cases - 1) * out_case..];
    assert_eq!(
        std::fs::read(&output).unwrap(),
        want,
        "--output differs from TFLM's"
    );
    let instructions = v["instructions"].as_u64().unwrap();
    let flash = v["flash_bytes"].as_u64().unwrap();
    let model_bytes = v["model_bytes"].as_u64().unwrap();
    let text = v["text_bytes"].as_u64().unwrap();
    let ram = v["ram_bytes"].as_u64().unwrap();
    let arena = v["arena_bytes"].as_u64().unwrap();
    let stack = v["stack_bytes"].as_u64().unwrap();
    let layers = v["layers"].as_array().unwrap();
    assert!(
        instructions > 1_000_000,
        "KWS runs millions of instructions"
    );
    assert!(flash > model_bytes && model_bytes > 0 && text > 0 && ram >= arena && arena > 0);
    // KWS's CONV_2D keeps 4 KB of column buffers on the stack.
    assert!(stack > 4096, "invoke stack {stack} B");
    assert_eq!(layers.len(), 13, "KWS has 13 ops");
    assert_eq!(v["aot"].as_bool(), Some(aot));
    let features: Vec<&str> = v["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    if aot {
        assert_eq!(features, ["aot"]);
    } else {
        assert!(features.contains(&"select-ops") && !features.contains(&"op-arith"));
    }

    // The runtime's share of `.text`: this firmware minus the same one without the runtime.
    let b = board("mps2-an386").unwrap();
    let mote = opts.target_dir.join("bench-cli-kws.mote");
    let tflite = std::fs::read(&model).unwrap();
    std::fs::write(&mote, compile_tflite(&tflite).unwrap().aligned().as_slice()).unwrap();
    let baseline_opts = BoardOptions {
        target_dir: opts.target_dir.join("baseline"),
        ..opts.clone()
    };
    let elf = mote_quantize::board::build_firmware(b, &mote, &input, &["baseline"], &baseline_opts)
        .unwrap_or_else(|e| panic!("baseline firmware: {e}"));
    let base = mote_quantize::board::elf_sizes(&elf).unwrap().text;
    let runtime_text = text - base;
    let (how, goal) = if aot {
        ("ahead of time", KWS_AOT_TEXT_GOAL)
    } else {
        ("interpreter", KWS_RUNTIME_TEXT_CEILING)
    };
    println!(
        "mote bench --board mps2-an386 kws_ref_model ({how}): {instructions} instructions, flash \
         {flash} B (model {model_bytes} B), RAM {ram} B (arena {arena} B) + stack {stack} B; .text {text} B = \
         runtime + kernels {runtime_text} B + startup/reporting {base} B (goal 16384 B, bound \
         {goal} B); features {}",
        features.join(",")
    );
    runtime_text
}
