#!/usr/bin/env bash
# Edge boards in CI (called by .ci/run after `cargo test --workspace`, which already checks that
# the committed C header runtime/include/mote.h is current). Installs the cross toolchains and
# emulators, then runs
#  1. the bare-metal firmware on Cortex-M4 (MPS2-AN386), M55 (MPS3-AN547), M3 (LM3S6965) and
#     M0 (micro:bit) under qemu-system-arm: a few golden cases of KWS, ResNet-8, AD (M4, M55)
#     and hello_world, outputs byte-identical to TFLM's (quantize/tests/boards.rs); also compiled
#     ahead of time (mote_runtime::aot, no interpreter linked): KWS and ResNet-8 (M4, M55), AD
#     and 26 fixture models (M4), KWS (M3), hello_world (M0);
#  2. the C API: examples/c/host.c, linked against libmote_runtime.a with only mote.h, runs every
#     golden case of the four models on the host and, cross-compiled, on aarch64 Linux
#     (qemu-aarch64), byte-identical to TFLM's;
#  3. the C firmware for the Cortex-M4F (examples/c/firmware: arm-none-eabi-gcc + newlib, linking
#     libmote_runtime.a with only mote.h, KWS embedded by `mote convert --emit-c`) on every KWS
#     golden case under qemu-system-arm, byte-identical to TFLM's;
#  4. the DSP-extension kernels' bit-exactness tests on armv7 Linux (qemu-arm, real SMLAD);
#  5. the Helium (MVE) kernels' bit-exactness on the Cortex-M55 (examples/firmware/mve-test:
#     random shapes and the model layers against the reference kernels, qemu-system-arm).
# The firmware step also runs `mote bench --board` on KWS and checks the `.text` of the runtime
# and kernels in the M4 KWS firmware (quantize/tests/boards.rs, qemu_board_mote_bench_cli_kws):
# with the interpreter against a regression ceiling, ahead of time (`--aot`) against the 16 KB
# goal (qemu_board_mote_bench_cli_kws_aot).
# Every step fails the script on any difference and is time-bounded; at the end it prints the
# instructions per inference (qemu -icount, deterministic) of every board and model.
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$SECONDS
step() { echo "== boards: $1 (at $((SECONDS - start)) s)"; }

# One target dir for everything (the host build of `cargo test --workspace` is reused).
T=$(realpath -m "${CARGO_TARGET_DIR:-target}")
export CARGO_TARGET_DIR=$T
export MOTE_FIRMWARE_TARGET_DIR=$T/firmware
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step "toolchains"
rustup target add aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf thumbv6m-none-eabi \
    thumbv7m-none-eabi thumbv7em-none-eabihf thumbv8m.main-none-eabihf >/dev/null
need=""
for tool_pkg in qemu-system-arm:qemu-system-arm qemu-arm-static:qemu-user-static \
    qemu-aarch64-static:qemu-user-static gcc:gcc aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu \
    arm-linux-gnueabihf-gcc:gcc-arm-linux-gnueabihf arm-none-eabi-gcc:gcc-arm-none-eabi; do
    command -v "${tool_pkg%%:*}" >/dev/null || need="$need ${tool_pkg#*:}"
done
for dir_pkg in /usr/aarch64-linux-gnu/lib/libc.a:libc6-dev-arm64-cross \
    /usr/arm-linux-gnueabihf/lib/libc.a:libc6-dev-armhf-cross \
    /usr/lib/arm-none-eabi/newlib/thumb/v7e-m+fp/hard/librdimon.a:libnewlib-arm-none-eabi; do
    [ -e "${dir_pkg%%:*}" ] || need="$need ${dir_pkg#*:}"
done
if [ -n "$need" ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    timeout 600 $sudo apt-get update -qq
    # Without recommends: qemu-system-arm's are GUI, EFI and block drivers (~600 MB not needed);
    # the cross gcc's only recommend their libc, listed above.
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive timeout 900 $sudo apt-get install -y -qq \
        --no-install-recommends $need >/dev/null
fi
qemu-system-arm --version | sed -n 1p

step "firmware on Cortex-M4/M55/M3/M0 (qemu-system-arm)"
# `--workspace --tests` is exactly the build `cargo test --workspace` made (with `-p` cargo would
# unify features differently and recompile); the filter picks the ignored board tests.
# Every other test binary runs no test; its "running 0 tests" lines are filtered out.
timeout 1200 cargo test -q --workspace --tests -- --ignored qemu_board_ --test-threads 1 \
    --nocapture 2>&1 | tee "$work/boards.log" | grep -v -e '^running 0 tests$' \
    -e '^test result: ok. 0 passed' -e '^$'
grep -o '| [a-z0-9-]* *| Cortex-.*' "$work/boards.log" >"$work/table" || true
rows=$(wc -l <"$work/table")
# 9 runs with the interpreter, 33 ahead of time (KWS, ResNet-8 and AD on the M4, 26 fixture
# models on the M4, KWS and ResNet-8 on the M55, KWS on the M3, hello_world on the M0).
[ "$rows" = 42 ] || { echo "error: expected 42 board runs, saw $rows" >&2; exit 1; }

step "C API: host.c with libmote_runtime.a on the host and on aarch64 Linux (qemu-aarch64)"
# The .mote files the firmware step compiled (compile_tflite, as `mote convert` does).
models="kws_ref_model pretrainedResnet_quant ad01_int8 hello_world_int8"
timeout 600 cargo rustc -q -p mote-runtime --release --features capi,std --crate-type staticlib
gcc -O2 -std=c11 -Wall -Wextra -Werror -I runtime/include examples/c/host.c \
    "$T/release/libmote_runtime.a" -lpthread -ldl -lm -o "$work/host"
timeout 600 cargo rustc -q -p mote-runtime --release --features capi,std --crate-type staticlib \
    --target aarch64-unknown-linux-gnu
aarch64-linux-gnu-gcc -O2 -std=c11 -Wall -Wextra -Werror -static -I runtime/include \
    examples/c/host.c "$T/aarch64-unknown-linux-gnu/release/libmote_runtime.a" -lpthread -ldl \
    -lm -o "$work/host-aarch64"
for m in $models; do
    g=quantize/tests/fixtures/golden/$m
    printf '%s on the host: ' "$m"
    timeout 120 "$work/host" "$MOTE_FIRMWARE_TARGET_DIR/$m.mote" "$g/inputs.bin" \
        "$g/outputs.bin"
    printf '%s on aarch64: ' "$m"
    timeout 300 qemu-aarch64-static "$work/host-aarch64" "$MOTE_FIRMWARE_TARGET_DIR/$m.mote" \
        "$g/inputs.bin" "$g/outputs.bin"
done

step "C firmware on Cortex-M4F: examples/c/firmware with libmote_runtime.a (qemu-system-arm)"
timeout 600 cargo rustc -q -p mote-runtime --release --features capi,arm-dsp --crate-type staticlib \
    --target thumbv7em-none-eabihf
"$T/debug/mote" convert ../shared/models/kws_ref_model.tflite --emit-c "$work/model.h" >/dev/null
g=quantize/tests/fixtures/golden/kws_ref_model
examples/c/firmware/build.sh "$T/thumbv7em-none-eabihf/release/libmote_runtime.a" \
    "$work/model.h" "$g/inputs.bin" "$g/outputs.bin" "$work/c-firmware.elf"
arm-none-eabi-size "$work/c-firmware.elf"
timeout 300 qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic -monitor none \
    -serial none -semihosting-config enable=on,target=native -icount shift=0 \
    -kernel "$work/c-firmware.elf" >"$work/c-firmware.log"
grep -v ' ok$' "$work/c-firmware.log"
grep -q '^[0-9]* cases, [0-9]* ops: all outputs byte-identical$' "$work/c-firmware.log"

step "DSP-extension kernels on armv7 Linux (qemu-arm)"
timeout 900 cargo test -q -p mote-runtime --features arm-dsp \
    --target armv7-unknown-linux-gnueabihf --lib -- simd::arm_dsp

step "Helium (MVE) kernels on Cortex-M55 (qemu-system-arm)"
# `-C target-cpu=cortex-m55` enables the MVE instructions; cargo reads no config rustflags for the
# dotted thumbv8m triple, and RUSTFLAGS would override the variable.
(cd examples/firmware && env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS \
    CARGO_TARGET_THUMBV8M_MAIN_NONE_EABIHF_RUSTFLAGS="-C target-cpu=cortex-m55" \
    timeout 600 cargo build -q --release -p mote-mve-test --target thumbv8m.main-none-eabihf \
    --target-dir "$MOTE_FIRMWARE_TARGET_DIR")
timeout 300 qemu-system-arm -machine mps3-an547 -cpu cortex-m55 -nographic -monitor none \
    -serial none -semihosting-config enable=on,target=native \
    -kernel "$MOTE_FIRMWARE_TARGET_DIR/thumbv8m.main-none-eabihf/release/mote-mve-test"

echo
echo "Instructions per inference (qemu -icount, deterministic); flash/model/.text/arena/stack in bytes"
echo "(stack: high-water mark of one invoke, measured by painting):"
echo "| board        | core       | model                  | n  | instructions | M4 vs TFLM+CMSIS-NN | flash    | model   | .text  | arena  | stack |"
cat "$work/table"
grep -h '^mote bench --board' "$work/boards.log" || true
echo "== boards: all done in $((SECONDS - start)) s"
