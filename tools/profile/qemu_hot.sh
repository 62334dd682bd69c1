#!/usr/bin/env bash
# Where a bare-metal firmware spends its instructions under qemu-system-arm: runs the ELF twice
# (once logging translated blocks, once logging every block executed, both without chaining) and
# prints instructions per function and the hottest blocks, joined with the ELF's symbols.
#   tools/profile/qemu_hot.sh ELF [CPU MACHINE]     (default cortex-m4 mps2-an386)
# E.g. the firmware `mote bench MODEL --board mps2-an386` built:
#   tools/profile/qemu_hot.sh "$MOTE_FIRMWARE_TARGET_DIR/thumbv7em-none-eabihf/release/mote-firmware"
# Then `arm-none-eabi-objdump -d --start-address=0x… ELF` shows a hot block. The exec log of a KWS
# run is ~600 MB (in a temporary directory, removed at exit).
set -euo pipefail
elf=$1
cpu=${2:-cortex-m4}
machine=${3:-mps2-an386}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run() {
    timeout 900 qemu-system-arm -cpu "$cpu" -machine "$machine" -nographic -monitor none \
        -serial none -semihosting-config enable=on,target=native -icount shift=0 \
        -d "$1,nochain" -D "$2" -kernel "$elf" >/dev/null
}
run in_asm "$work/asm.log"
run exec "$work/exec.log"
arm-none-eabi-nm -S -C "$elf" >"$work/syms.txt"
python3 - "$work" <<'PY'
import collections, re, sys
work = sys.argv[1]
size, cur = {}, None
for line in open(f"{work}/asm.log"):
    if line.startswith("IN:"):
        cur = None
        continue
    m = re.match(r"0x([0-9a-f]+):\s", line)
    if m:
        a = int(m.group(1), 16)
        if cur is None:
            cur = a
            size[cur] = 0
        size[cur] += 1
    elif not line.strip():
        cur = None
runs = collections.Counter()
for line in open(f"{work}/exec.log"):
    m = re.search(r"\[[0-9a-f]+/([0-9a-f]+)/", line)
    if m:
        runs[int(m.group(1), 16)] += 1
syms = []
for line in open(f"{work}/syms.txt"):
    p = line.split(None, 3)
    if len(p) == 4 and p[2] in "tT":
        syms.append((int(p[0], 16), int(p[1], 16), p[3].strip()))
def owner(a):
    for s, z, n in syms:
        if s <= a < s + z:
            return n
    return "?"
per_fn, blocks = collections.Counter(), []
for a, n in runs.items():
    k = size.get(a, 0) * n
    per_fn[owner(a)] += k
    blocks.append((k, a, n, size.get(a, 0)))
print(f"total instructions: {sum(per_fn.values())}")
print("\ninstructions  function")
for f, k in per_fn.most_common(20):
    print(f"{k:12}  {f}")
print("\ninstructions  block      runs  size  function")
for k, a, n, z in sorted(blocks, reverse=True)[:25]:
    print(f"{k:12}  {a:#08x} {n:7} {z:5}  {owner(a)[:70]}")
PY
