#!/usr/bin/env bash
# Cross-target determinism (called by tools/ci/reliability.sh): the same .mote file and input
# cases must give byte-identical outputs on
#   x86 reference kernels (MOTE_SIMD=reference), AVX2 and the CPU's best tier (AVX-512 VNNI where
#   present; a tier the CPU lacks falls back to the best), aarch64 NEON+dotprod (qemu-aarch64),
#   Cortex-M4 with the DSP extension (MPS2-AN386) and Cortex-M55 with its Helium kernels (MPS3-AN547, qemu-system-arm).
# Models: kws_ref_model (MLPerf Tiny KWS) and pretrainedResnet_quant (ResNet-8), several golden
# input cases each (MOTE_DETERMINISM_CASES, default 6). Every run prints one line per case
# `case <i> out=<hex of every output>`; the lines of all six runs must be equal. The outputs are
# also compared with TFLM's golden outputs (quantize/tests/fixtures/golden), so that agreeing
# means agreeing on the right answer.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
# shellcheck source=tools/ci/cortex_m_flags.sh
. tools/ci/cortex_m_flags.sh
T=$(realpath -m "${CARGO_TARGET_DIR:-target}")
export CARGO_TARGET_DIR=$T
cases=${MOTE_DETERMINISM_CASES:-6}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS

# The compiler: MOTE_BIN, else the `mote` binary `cargo test --workspace` built (no rebuild),
# else build it.
mote=${MOTE_BIN:-$T/debug/mote}
[ -x "$mote" ] || timeout 1200 cargo build -q --workspace --bin mote

echo "-- building run_cases for x86-64 and aarch64 Linux"
timeout 900 cargo build -q --release -p mote-examples --example run_cases
timeout 900 cargo build -q --release -p mote-examples --example run_cases \
    --target aarch64-unknown-linux-gnu
host="$T/release/examples/run_cases"
arm64="$T/aarch64-unknown-linux-gnu/release/examples/run_cases"

status=0
for m in kws_ref_model pretrainedResnet_quant; do
    g="quantize/tests/fixtures/golden/$m"
    n_all=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['cases']))" \
        "$g/cases.json")
    size=$(stat -c %s "$g/inputs.bin")
    case_bytes=$((size / n_all))
    n=$((cases < n_all ? cases : n_all))
    head -c $((n * case_bytes)) "$g/inputs.bin" >"$work/$m.in"
    "$mote" convert "$root/../shared/models/$m.tflite" -o "$work/$m.mote" >/dev/null

    MOTE_SIMD=reference timeout 300 "$host" "$work/$m.mote" "$work/$m.in" >"$work/$m.x86-reference"
    MOTE_SIMD=avx2 timeout 300 "$host" "$work/$m.mote" "$work/$m.in" >"$work/$m.x86-avx2"
    timeout 300 "$host" "$work/$m.mote" "$work/$m.in" >"$work/$m.x86-best"
    timeout 900 qemu-aarch64-static "$arm64" "$work/$m.mote" "$work/$m.in" >"$work/$m.aarch64-neon"
    for board in mps2-an386:thumbv7em-none-eabihf:cortex-m4 \
        mps3-an547:thumbv8m.main-none-eabihf:cortex-m55; do
        IFS=: read -r name triple cpu <<<"$board"
        # The M55 runs its Helium kernels (as `mote bench --board mps3-an547` builds it).
        features=""
        [ "$name" = mps3-an547 ] && features="--features arm-mve"
        # shellcheck disable=SC2086
        (cd examples/firmware && MOTE_MODEL="$work/$m.mote" MOTE_INPUTS="$work/$m.in" \
            MOTE_BOARD="$name" CARGO_TARGET_THUMBV8M_MAIN_NONE_EABIHF_RUSTFLAGS="-C target-cpu=cortex-m55 $cortex_m_size_flags" \
            timeout 900 cargo build -q --release --target "$triple" --target-dir "$T/determinism-fw" \
            $features)
        elf="$T/determinism-fw/$triple/release/mote-firmware"
        machine=$([ "$name" = mps2-an386 ] && echo mps2-an386 || echo mps3-an547)
        timeout 600 qemu-system-arm -cpu "$cpu" -machine "$machine" -nographic -monitor none \
            -serial none -semihosting-config enable=on,target=native -icount shift=0 \
            -kernel "$elf" >"$work/$m.raw-$cpu"
        # The firmware also prints ticks and a per-op profile; keep the outputs only.
        sed -n 's/^case \([0-9]*\) ticks=[0-9]* out=/case \1 out=/p' "$work/$m.raw-$cpu" \
            >"$work/$m.$cpu"
    done

    # The reference run must also equal TFLM's golden outputs (so "identical" means "right").
    out_bytes=$(($(stat -c %s "$g/outputs.bin") / n_all))
    head -c $((n * out_bytes)) "$g/outputs.bin" | od -An -v -tx1 -w"$out_bytes" | tr -d ' ' |
        awk '{ print "case " NR - 1 " out=" $0 }' >"$work/$m.tflm"

    echo "-- $m: $n cases of $case_bytes input bytes"
    for run in tflm x86-reference x86-avx2 x86-best aarch64-neon cortex-m4 cortex-m55; do
        lines=$(wc -l <"$work/$m.$run")
        digest=$(sha256sum "$work/$m.$run" | cut -c1-16)
        printf '   %-14s %2d cases  sha256 %s\n' "$run" "$lines" "$digest"
        if [ "$lines" != "$n" ]; then
            echo "error: $m on $run printed $lines cases, expected $n" >&2
            status=1
        elif ! cmp -s "$work/$m.x86-reference" "$work/$m.$run"; then
            echo "error: $m: $run differs from the x86 reference kernels:" >&2
            diff "$work/$m.x86-reference" "$work/$m.$run" | head -n 6 | cut -c1-160 >&2
            status=1
        fi
    done
done
[ "$status" = 0 ] && echo "   byte-identical on every target"
exit "$status"
