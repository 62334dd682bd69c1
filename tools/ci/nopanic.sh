#!/usr/bin/env bash
# The no-panic link check (called by tools/ci/reliability.sh; needs the thumb targets and
# arm-none-eabi-objdump/addr2line from binutils-arm-none-eabi).
#
# examples/firmware/nopanic runs Model::from_bytes + Interpreter::new + invoke on bytes the
# optimiser cannot see, with every operator family and the int16 / int4 / float kernels linked;
# its panic handler calls a symbol that exists nowhere. For each core (Cortex-M4F and M55 with the
# DSP-extension kernels, Cortex-M0 with the reference kernels):
#  1. the firmware must link: no panic path is left anywhere on the load-and-run path, in any
#     file (there is no allowlist). When it does not link, the script links a copy with the
#     symbol defined, finds every call to a panic function in the disassembly and prints its
#     source line, then fails;
#  2. the `deliberate-panic` variant (one unchecked index) must FAIL to link with the undefined
#     symbol, and the locating pass must name its line, which shows that the check can fail.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
T=$(realpath -m "${CARGO_TARGET_DIR:-target}")
fw_target="$T/nopanic"
symbol=mote_panic_path_reachable
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Each core's CPU is passed in RUSTFLAGS (which overrides .cargo/config.toml's target rustflags,
# and cargo reads none for the dotted thumbv8m triple anyway), so the strict and the locating
# builds compile the same code.
unset CARGO_ENCODED_RUSTFLAGS
# shellcheck source=tools/ci/cortex_m_flags.sh
. tools/ci/cortex_m_flags.sh
cpu_flags() {
    case $1 in
    thumbv7em-*) echo "-C target-cpu=cortex-m4 $cortex_m_size_flags" ;;
    thumbv8m.main-*) echo "-C target-cpu=cortex-m55 $cortex_m_size_flags" ;;
    thumbv*) echo "$cortex_m_size_flags" ;;
    *) echo "" ;;
    esac
}
# Builds mote-nopanic for target "$1" into target dir "$2" with extra rustflags "$3" and cargo
# arguments "${@:4}".
build() {
    local target=$1 dir=$2 extra=$3
    shift 3
    (cd examples/firmware && RUSTFLAGS="$(cpu_flags "$target") $extra" timeout 900 \
        cargo build -q --release -p mote-nopanic --target "$target" --target-dir "$dir" "$@")
}

# Lists `file:line function` of every call to a core panic function in ELF "$1".
panic_sites() {
    local elf=$1
    arm-none-eabi-objdump -d --no-show-raw-insn -C "$elf" >"$work/dis.txt"
    # Functions that panic: core's panicking entry points and the index/slice failure helpers.
    grep -E '^[0-9a-f]+ <.*(core::panicking|panic_bounds_check|slice_index_fail|_fail>|unwrap_failed|expect_failed|rust_begin_unwind|panic_fmt|do_panic).*>:$' \
        "$work/dis.txt" | sed 's/^[0-9a-f]* <\(.*\)>:$/\1/' >"$work/panicfns.txt"
    awk -v list="$work/panicfns.txt" '
        BEGIN { while ((getline l < list) > 0) p[l] = 1 }
        /^[0-9a-f]+ <.*>:$/ { fn = $0; sub(/^[0-9a-f]+ </, "", fn); sub(/>:$/, "", fn); next }
        /\t(bl|b|b\.w|blx|b\.n)\t/ {
            if (match($0, /<.*>/)) {
                t = substr($0, RSTART + 1, RLENGTH - 2); sub(/\+0x[0-9a-f]+$/, "", t)
                if ((t in p) && !(fn in p)) { split($1, a, ":"); print a[1] "\t" fn }
            }
        }' "$work/dis.txt" | while IFS=$'\t' read -r addr fn; do
        # Innermost frame inside this repository (inlined frames first); for a panic in code
        # outside it (core or a dependency, not inlined), the function that holds the call:
        # look for its callers in the disassembly.
        site=$(arm-none-eabi-addr2line -e "$elf" -i -f -C "0x$addr" | paste - - |
            awk -F'\t' -v r="$root/" 'index($2, r) == 1 { f = $2; sub(r, "", f); print f "\t" $1; exit }')
        echo "${site:-outside the repository, in $fn}"
    done | sort | uniq -c
}

check_target() {
    local target=$1
    echo "-- $target: strict link"
    if build "$target" "$fw_target" "" >"$work/strict.log" 2>&1; then
        echo "   links: no panic path is reachable from from_bytes/new/invoke"
        return 0
    fi
    if ! grep -q "undefined symbol: $symbol" "$work/strict.log"; then
        cat "$work/strict.log" >&2
        echo "error: the no-panic firmware failed to build for another reason" >&2
        return 1
    fi
    # Where are they? Link a copy with the symbol defined and read its disassembly.
    build "$target" "$fw_target-located" "-C link-arg=--defsym=$symbol=0"
    panic_sites "$fw_target-located/$target/release/mote-nopanic" >"$work/sites.txt"
    echo "error: $target: panic paths are reachable (count, file:line, function):" >&2
    sed 's/^/   /' "$work/sites.txt" >&2
    [ -s "$work/sites.txt" ] || echo "   (no call site found in the disassembly)" >&2
    return 1
}

failed=0
for target in thumbv7em-none-eabihf thumbv8m.main-none-eabihf thumbv6m-none-eabi; do
    check_target "$target" || failed=1
done
[ "$failed" = 0 ] || exit 1

echo "-- thumbv7em-none-eabihf: the deliberate-panic variant must not link"
if build thumbv7em-none-eabihf "$fw_target-deliberate" "" --features deliberate-panic \
    >"$work/deliberate.log" 2>&1; then
    echo "error: a firmware with a reachable panic linked: the no-panic check cannot fail" >&2
    exit 1
fi
if ! grep -q "undefined symbol: $symbol" "$work/deliberate.log"; then
    cat "$work/deliberate.log" >&2
    echo "error: the deliberate-panic build failed for another reason than its panic path" >&2
    exit 1
fi
# And the locating pass must name the deliberate index as a panic path of its own.
build thumbv7em-none-eabihf "$fw_target-located" "-C link-arg=--defsym=$symbol=0" \
    --features deliberate-panic
panic_sites "$fw_target-located/thumbv7em-none-eabihf/release/mote-nopanic" >"$work/sites.txt"
if ! grep "examples/firmware/nopanic/src/main.rs" "$work/sites.txt"; then
    cat "$work/sites.txt" >&2
    echo "error: the locating pass missed the deliberate panic path" >&2
    exit 1
fi
echo "   refused and located, as it must be"
