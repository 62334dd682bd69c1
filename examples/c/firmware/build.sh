#!/usr/bin/env bash
# Builds the C firmware for the Cortex-M4F (MPS2 AN386) with arm-none-eabi-gcc + newlib:
#   build.sh LIBMOTE.a MODEL.h INPUTS.bin OUTPUTS.bin OUT.elf
# MODEL.h comes from `mote convert MODEL.tflite --emit-c model.h` (the file must be named
# model.h: its prefix names MODEL_ARENA_BYTES, MODEL_MODEL_BYTES and model_model); LIBMOTE.a from
# `cargo rustc -p mote-runtime --release --target thumbv7em-none-eabihf --features capi,arm-dsp
# --crate-type staticlib`. Only runtime/include/mote.h is used from the runtime.
# Run with: qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic -monitor none
#   -serial none -semihosting-config enable=on,target=native -icount shift=0 -kernel OUT.elf
set -euo pipefail
[ $# = 5 ] || { echo "usage: $0 LIBMOTE.a MODEL.h INPUTS.bin OUTPUTS.bin OUT.elf" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
lib=$(realpath "$1") model_dir=$(dirname "$(realpath "$2")")
[ "$(basename "$2")" = model.h ] || { echo "error: the model header must be named model.h" >&2; exit 2; }
cpu=(-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16)
arm-none-eabi-gcc "${cpu[@]}" -O2 -std=c11 -Wall -Wextra -Werror -ffunction-sections \
    -fdata-sections -I "$here/../../../runtime/include" -I "$model_dir" -I "$here" \
    -DINPUTS_BIN="\"$(realpath "$3")\"" -DOUTPUTS_BIN="\"$(realpath "$4")\"" \
    -nostartfiles -T "$here/mps2-an386.ld" -Wl,--gc-sections -Wl,--no-warn-execstack \
    "$here/startup.c" "$here/main.c" "$here/golden.S" "$lib" \
    --specs=nano.specs --specs=rdimon.specs -lc -lrdimon -o "$5"
