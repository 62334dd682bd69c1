#!/usr/bin/env bash
# The no-panic link check (called by tools/ci/reliability.sh; needs the thumb targets and
# arm-none-eabi-objdump/addr2line from binutils-arm-none-eabi).
#
# examples/firmware/nopanic runs Model::from_bytes + Interpreter::new + invoke on bytes the
# optimiser cannot see; its panic handler calls a symbol that exists nowhere. For each core:
#  1. the firmware must link (no panic path left), except for panic paths whose source lies in a
#     file of examples/firmware/nopanic/known-panics.txt (owned by other work, listed there so the
#     check still guards every other file): then the script links a copy with the symbol defined,
#     finds every call to a panic function in the disassembly, maps it to its source line, and
#     fails if any lies outside the listed files;
#  2. the `deliberate-panic` variant (one unchecked index) must FAIL to link with the undefined
#     symbol, which shows that the check can fail.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
T=$(realpath -m "${CARGO_TARGET_DIR:-target}")
fw_target="$T/nopanic"
known="$root/examples/firmware/nopanic/known-panics.txt"
symbol=mote_panic_path_reachable
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Cargo reads no rustflags for the dotted thumbv8m triple from config files; none is built here.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS

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
                if ((t in p) && !(fn in p)) { split($1, a, ":"); print a[1] }
            }
        }' "$work/dis.txt" | while read -r addr; do
        # Innermost frame inside this repository (inlined frames first).
        arm-none-eabi-addr2line -e "$elf" -i -f -C "0x$addr" | paste - - |
            awk -F'\t' -v r="$root/" 'index($2, r) == 1 { f = $2; sub(r, "", f); print f "\t" $1; exit }'
    done | sort | uniq -c
}

check_target() {
    local target=$1
    echo "-- $target: strict link"
    if (cd examples/firmware && timeout 900 cargo build -q --release -p mote-nopanic \
        --target "$target" --target-dir "$fw_target") >"$work/strict.log" 2>&1; then
        echo "   links: no panic path is reachable from from_bytes/new/invoke"
        return 0
    fi
    if ! grep -q "undefined symbol: $symbol" "$work/strict.log"; then
        cat "$work/strict.log" >&2
        echo "error: the no-panic firmware failed to build for another reason" >&2
        return 1
    fi
    # Where are they? Link a copy with the symbol defined and read its disassembly.
    (cd examples/firmware && RUSTFLAGS="-C link-arg=--defsym=$symbol=0" timeout 900 \
        cargo build -q --release -p mote-nopanic --target "$target" \
        --target-dir "$fw_target-located")
    panic_sites "$fw_target-located/$target/release/mote-nopanic" >"$work/sites.txt"
    echo "   panic paths left (count, file:line, function):"
    sed 's/^/   /' "$work/sites.txt"
    local unexpected=0
    while read -r _count loc _fn; do
        local file=${loc%%:*}
        if ! grep -qxF "$file" <(grep -v '^#' "$known"); then
            echo "error: $target: panic path in $loc, a file not in known-panics.txt" >&2
            unexpected=1
        fi
    done <"$work/sites.txt"
    if [ ! -s "$work/sites.txt" ]; then
        echo "error: $target: the link failed but no panic call site was found" >&2
        return 1
    fi
    [ "$unexpected" = 0 ] || return 1
    echo "   every panic path left lies in a file of known-panics.txt (to be fixed there)"
}

check_target thumbv7em-none-eabihf
check_target thumbv6m-none-eabi

echo "-- thumbv7em-none-eabihf: the deliberate-panic variant must not link"
if (cd examples/firmware && timeout 900 cargo build -q --release -p mote-nopanic \
    --target thumbv7em-none-eabihf --target-dir "$fw_target-deliberate" \
    --features deliberate-panic) >"$work/deliberate.log" 2>&1; then
    echo "error: a firmware with a reachable panic linked: the no-panic check cannot fail" >&2
    exit 1
fi
if ! grep -q "undefined symbol: $symbol" "$work/deliberate.log"; then
    cat "$work/deliberate.log" >&2
    echo "error: the deliberate-panic build failed for another reason than its panic path" >&2
    exit 1
fi
# And the locating pass must name the deliberate index as a panic path of its own.
(cd examples/firmware && RUSTFLAGS="-C link-arg=--defsym=$symbol=0" timeout 900 \
    cargo build -q --release -p mote-nopanic --target thumbv7em-none-eabihf \
    --target-dir "$fw_target-located" --features deliberate-panic)
panic_sites "$fw_target-located/thumbv7em-none-eabihf/release/mote-nopanic" >"$work/sites.txt"
if ! grep "examples/firmware/nopanic/src/main.rs" "$work/sites.txt"; then
    cat "$work/sites.txt" >&2
    echo "error: the locating pass missed the deliberate panic path" >&2
    exit 1
fi
echo "   refused and located, as it must be"
