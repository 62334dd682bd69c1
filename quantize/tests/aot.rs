//! Ahead-of-time code generation (`mote_runtime::aot::rust_source`) on the shared models: what it
//! writes for KWS, and what it refuses (a plan with ops in place, an op it does not cover) with
//! an error naming the op. The generated code itself runs on the emulated boards
//! (`tests/boards.rs`, `check_with(.., true)`), byte-identical to TFLM's outputs.

use std::path::PathBuf;

use mote_quantize::compile::{compile_tflite, compile_tflite_opts, CompileOptions};
use mote_runtime::aot::rust_source;
use mote_runtime::{Error, Model, OpKind};

fn shared(model: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/models")
        .join(format!("{model}.tflite"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn kws_becomes_one_direct_kernel_call_per_op() {
    let compiled =
        compile_tflite_opts(&shared("kws_ref_model"), CompileOptions::ahead_of_time()).unwrap();
    let aligned = compiled.aligned();
    let model = Model::from_bytes(aligned.as_slice()).unwrap();
    let src = rust_source(&model).unwrap();
    let code = &src.code;
    assert!(code.contains(&format!(
        "pub const ARENA_BYTES: usize = {};",
        model.arena_bytes()
    )));
    let input = model.input(0).unwrap();
    assert!(code.contains(&format!(
        "pub const INPUTS: [(usize, usize); 1] = [({}, {})];",
        input.offset, input.bytes
    )));
    // One arm per op, each calling the kernel of its kind with its own descriptor.
    let calls = [
        (OpKind::Conv2d, "aot::conv2d_int8"),
        (OpKind::DepthwiseConv2d, "aot::depthwise_conv2d_int8"),
        (OpKind::AveragePool2d, "aot::pool_int8"),
        (OpKind::Reshape, "aot::copy"),
        (OpKind::FullyConnected, "aot::fully_connected_int8"),
        (OpKind::Softmax, "aot::softmax_int8"),
    ];
    for i in 0..model.ops().len() {
        let kind = model.op_kind(i).unwrap();
        let call = calls.iter().find(|(k, _)| *k == kind).unwrap().1;
        let arm = format!("        {i} => {call}(arena, &OP{i}),");
        assert!(code.contains(&arm), "no `{arm}` in the generated code");
        assert!(
            code.contains(&format!("static OP{i}: ")),
            "op {i}'s descriptor"
        );
    }
    // The DSP kernels take every op of KWS: no reference kernel is linked on a DSP build.
    assert!(!code.contains("_with_reference"), "a reference fallback");
    // The constants: every weight and bias byte of the model, plus multipliers, shifts and
    // parameters; fewer bytes than the .mote file (no tensor table, op table or names).
    let weights: usize = (0..model.tensors().len())
        .filter_map(|t| model.const_data(t))
        .map(<[u8]>::len)
        .sum();
    assert!(
        src.const_bytes > weights && src.const_bytes < model.file_bytes(),
        "{} B of constants; weights and biases {weights} B, file {} B",
        src.const_bytes,
        model.file_bytes()
    );
    // The first conv's filter, byte for byte, as `W0`.
    let filter = model
        .const_data(model.op_io(0).unwrap().0[1] as usize)
        .unwrap();
    let first: Vec<String> = filter[..8].iter().map(|&b| (b as i8).to_string()).collect();
    let w0 = format!(
        "static W0: [i8; {}] = [\n    {},",
        filter.len(),
        first.join(", ")
    );
    assert!(code.contains(&w0), "W0 holds the filter: no `{w0}`");
}

#[test]
fn a_plan_with_ops_in_place_is_refused() {
    // The default plan runs KWS's depthwise and pointwise convolutions in place.
    let compiled = compile_tflite(&shared("kws_ref_model")).unwrap();
    let aligned = compiled.aligned();
    let model = Model::from_bytes(aligned.as_slice()).unwrap();
    match rust_source(&model) {
        Err(Error::InvalidField { field, .. }) => {
            assert!(field.contains("plain plan"), "{field}")
        }
        other => panic!("expected a refusal naming the plan, got {other:?}"),
    }
}

/// Ahead-of-time code is int8 (with float32 only at QUANTIZE / DEQUANTIZE): an int16 model is
/// refused, naming the op and what it expected.
#[test]
fn an_int16_model_is_refused_naming_the_op() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ops16");
    let tflite = std::fs::read(fixtures.join("a16_relu.tflite")).unwrap();
    let compiled = compile_tflite_opts(&tflite, CompileOptions::ahead_of_time()).unwrap();
    let aligned = compiled.aligned();
    let model = Model::from_bytes(aligned.as_slice()).unwrap();
    let err = rust_source(&model).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ShapeMismatch {
                op: 0,
                expected: "int8",
                ..
            }
        ),
        "{err:?}"
    );
    let message = mote_quantize::board::aot_error(&model, err).to_string();
    assert!(
        message.contains("op 0") && message.contains("int8"),
        "{message}"
    );
}

/// ResNet-8's residual ADDs read two arena tensors; both lie outside the output's bytes.
#[test]
fn resnet_adds_read_two_arena_operands() {
    let compiled = compile_tflite_opts(
        &shared("pretrainedResnet_quant"),
        CompileOptions::ahead_of_time(),
    )
    .unwrap();
    let aligned = compiled.aligned();
    let model = Model::from_bytes(aligned.as_slice()).unwrap();
    let code = rust_source(&model).unwrap().code;
    let adds = (0..model.ops().len())
        .filter(|&i| model.op_kind(i) == Some(OpKind::Add))
        .count();
    assert_eq!(adds, 3);
    assert_eq!(code.matches("aot::add_int8(arena, &OP").count(), adds);
    assert_eq!(
        code.matches("inputs: [aot::Operand::Arena(").count(),
        adds,
        "{code}"
    );
}

/// An op the DSP kernels do not take runs the variant that falls back to the reference kernel
/// (linked only then); one they take runs the fast kernel alone.
#[test]
fn ops_the_dsp_kernels_do_not_take_get_the_reference_fallback() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ops");
    for (model, want) in [
        // Depth multiplier 2: no DSP depthwise kernel.
        (
            "dw_m2_valid_s2",
            "aot::depthwise_conv2d_int8_with_reference",
        ),
        ("dw_m1_same_s1_relu6", "aot::depthwise_conv2d_int8(arena"),
        // The DSP convolution takes any clamp.
        ("conv_valid_s2_relu6", "aot::conv2d_int8(arena"),
        ("fc_relu", "aot::fully_connected_int8(arena"),
        // Element-wise ops, a constant operand as an array.
        ("add_const", "aot::Operand::Const(&X0_1)"),
        ("mul_bcast_4d", "aot::mul_int8(arena"),
        ("relu6", "aot::relu6_int8(arena"),
    ] {
        let tflite = std::fs::read(fixtures.join(format!("{model}.tflite"))).unwrap();
        let compiled = compile_tflite_opts(&tflite, CompileOptions::ahead_of_time()).unwrap();
        let aligned = compiled.aligned();
        let m = Model::from_bytes(aligned.as_slice()).unwrap();
        let code = rust_source(&m).unwrap().code;
        assert!(code.contains(want), "{model}: no `{want}` in\n{code}");
    }
}

/// The modules `mote-runtime`'s host test runs (`runtime/tests/aot_host.rs`) are what the
/// generator writes today. To regenerate one, from the repository's root:
///
/// ```sh
/// mote convert quantize/tests/fixtures/ops/NAME.tflite \
///     --emit-aot runtime/tests/fixtures/aot/NAME.rs
/// ```
#[test]
fn committed_aot_modules_are_current() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for name in [
        "net_cnn",
        "dw_m2_valid_s2",
        "add_const",
        "tanh",
        "net_inception",
        "net_two_outputs",
        "conv_float_io",
    ] {
        let tflite = root.join(format!("quantize/tests/fixtures/ops/{name}.tflite"));
        let compiled = compile_tflite_opts(
            &std::fs::read(&tflite).unwrap(),
            CompileOptions::ahead_of_time(),
        )
        .unwrap();
        let aligned = compiled.aligned();
        let model = Model::from_bytes(aligned.as_slice()).unwrap();
        let code = rust_source(&model).unwrap().code;
        let committed = root.join(format!("runtime/tests/fixtures/aot/{name}.rs"));
        assert_eq!(
            std::fs::read_to_string(&committed).unwrap(),
            code,
            "{} is stale: regenerate it with `mote convert {} --emit-aot {}`",
            committed.display(),
            tflite.display(),
            committed.display()
        );
    }
}
