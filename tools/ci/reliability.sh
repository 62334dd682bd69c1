#!/usr/bin/env bash
# Reliability checks (issue 9), called by .ci/run after targets/boards/ci.sh (whose toolchains,
# emulators and `cargo test --workspace` build it reuses). Installs what it needs, then runs
#  1. the `unsafe` audit and the malformed-input table (quick tests, printed);
#  2. the no-panic link check (tools/ci/nopanic.sh): examples/firmware/nopanic (Model::from_bytes
#     + Interpreter::new + invoke, every op family and the int16/int4/float kernels, on Cortex-M4,
#     M55 and M0) links only if no panic path survives optimisation, in any file (no allowlist);
#     the `deliberate-panic` variant must FAIL to link;
#  3. the three fuzz targets (.mote reader + interpreter, TFLite importer, ONNX importer) for
#     MOTE_FUZZ_SECONDS each (default 60) from corpora seeded with the real models and the ONNX
#     fixtures; a finding fails the script and prints the reproducer;
#  4. the runtime's scalar-path unit tests under Miri;
#  5. determinism: the same .mote files and inputs give byte-identical outputs on x86 (reference,
#     AVX2, best tier), aarch64 NEON (qemu-aarch64), Cortex-M4 and Cortex-M55 (qemu-system-arm).
# Every step is time-bounded and fails the script on any difference.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
start=$SECONDS
step() { echo "== reliability: $1 (at $((SECONDS - start)) s)"; }

T=$(realpath -m "${CARGO_TARGET_DIR:-target}")
export CARGO_TARGET_DIR=$T
fuzz_seconds=${MOTE_FUZZ_SECONDS:-60}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step "toolchains"
rustup target add aarch64-unknown-linux-gnu thumbv6m-none-eabi thumbv7em-none-eabihf \
    thumbv8m.main-none-eabihf >/dev/null
if ! rustup toolchain list | grep -q '^nightly'; then
    timeout 600 rustup toolchain install nightly --profile minimal >/dev/null
fi
timeout 600 rustup component add --toolchain nightly miri rust-src >/dev/null
if ! command -v cargo-fuzz >/dev/null; then
    timeout 900 cargo install cargo-fuzz --locked --version 0.13.2
fi
need=""
for tool_pkg in qemu-system-arm:qemu-system-arm qemu-aarch64-static:qemu-user-static \
    aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu arm-none-eabi-objdump:binutils-arm-none-eabi; do
    command -v "${tool_pkg%%:*}" >/dev/null || need="$need ${tool_pkg#*:}"
done
if [ -n "$need" ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    timeout 600 $sudo apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive timeout 900 $sudo apt-get install -y -qq \
        --no-install-recommends $need >/dev/null
fi

step "unsafe audit and the malformed-input table"
# Same build as `cargo test --workspace`: nothing recompiles.
timeout 600 cargo test -q --workspace --test unsafe_audit
timeout 600 cargo test -q --workspace --test hostile_mote -- malformed_input_table --nocapture \
    2>&1 | grep -v -e '^running 0 tests$' -e '^test result: ok. 0 passed' -e '^$'

step "no-panic link check (Cortex-M4, M55 and M0, release: opt-level 3, fat LTO, codegen-units 1)"
bash tools/ci/nopanic.sh

step "fuzzing: $fuzz_seconds s per target"
bash fuzz/seed_corpus.sh "${MOTE_BIN:-$T/debug/mote}"
# One build of all three targets with the fuzz crate's `onnx` feature (the ONNX importer: onnx-ir
# and its burn-tensor dependency; ~5 min cold on 2 cores), reused by every `fuzz run` below.
targets=$(cd fuzz && cargo +nightly fuzz list)
(cd fuzz && timeout 1800 cargo +nightly fuzz build -O --features onnx --target-dir "$T/fuzz")
for t in $targets; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    echo "-- $t"
    # The TFLite importer compiles every input: inputs above 64 KB (whole float models) made it
    # run ~20 execs/s; its corpus is seeded with models up to that size (fuzz/seed_corpus.sh).
    max_len=()
    [ "$t" = tflite_import ] && max_len=(-max_len=65536)
    if ! (cd fuzz && timeout $((fuzz_seconds + 300)) cargo +nightly fuzz run -O \
        --features onnx --target-dir "$T/fuzz" "$t" "corpus/$t" -- -max_total_time="$fuzz_seconds" \
        -timeout=30 -print_final_stats=1 "${max_len[@]}" >"$work/$t.log" 2>&1); then
        tail -n 60 "$work/$t.log"
        echo "error: fuzz target $t found a crash; reproducer(s):" >&2
        for a in "fuzz/artifacts/$t"/*; do
            [ -e "$a" ] || continue
            echo "  $a ($(stat -c %s "$a") bytes): cd fuzz && cargo +nightly fuzz run -O --features onnx $t ${a#fuzz/}" >&2
            od -A d -t x1 "$a" | head -n 8 >&2
        done
        exit 1
    fi
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb|Done [0-9]+ runs' "$work/$t.log" || true
done

step "Miri: the runtime's scalar-path unit tests"
# Under Miri no SIMD tier is detected, so every kernel runs its portable reference code.
# Property tests run a few cases each (PROPTEST_CASES; proptest needs the file system), and the
# randomized and exhaustive tests run fewer cases under `cfg(miri)` (`ops::conv::tests::cases`
# and `sampled`). The subset: validation helpers and every reference kernel the ops run:
# element-wise, pooling, reduction, activation, CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED,
# their in-place variants, the fused ADD epilogue and residual chains, int4 weights, 16x8 and
# N:M sparse weights.
MIRIFLAGS="-Zmiri-disable-isolation" PROPTEST_CASES=4 \
    timeout 900 cargo +nightly miri test -q -p mote-runtime --lib -- crc32:: fixed_point:: \
    format:: quant::tests ops::pool ops::pad ops::reduce ops::concat ops::arith \
    ops::activation ops::softmax ops::quantize ops::shape ops::conv ops::depthwise \
    ops::fully_connected ops::inplace ops::fused ops::chain ops::int4 ops::int16 \
    ops::accumulate ops::sparse

step "determinism: x86 reference and SIMD, aarch64 NEON, Cortex-M4, Cortex-M55"
bash tools/ci/determinism.sh

echo "== reliability: all done in $((SECONDS - start)) s"
