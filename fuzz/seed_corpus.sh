#!/usr/bin/env bash
# Seeds the fuzz corpora from real models: the .tflite files of ../shared/models, the op fixtures
# (int8 and 16x8) and the default model, and each of them compiled to .mote.
#   fuzz/seed_corpus.sh [path/to/mote]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.."
mote="${1:-$root/target/release/mote}"
mkdir -p "$here/corpus/mote_model" "$here/corpus/tflite_import" "$here/corpus/onnx_import"
shopt -s nullglob
for f in "$root"/../shared/models/*.tflite "$root"/quantize/tests/fixtures/ops/*.tflite "$root"/quantize/tests/fixtures/ops16/*.tflite "$root"/quantize/assets/*_int8.tflite; do
  name="$(basename "$f" .tflite)"
  # The importer's corpus keeps models up to 64 KB (its runs use -max_len=65536): each input is
  # imported and compiled, and the 100 KB-1 MB models cut its speed from ~1,500 to ~20 execs/s.
  if [[ $(stat -c %s "$f") -le 65536 ]]; then
    cp "$f" "$here/corpus/tflite_import/$name.tflite"
  fi
  if [[ $(stat -c %s "$f") -lt 200000 ]]; then
    "$mote" convert "$f" -o "$here/corpus/mote_model/$name.mote" >/dev/null 2>&1 || true
  fi
done
# N:M sparse weights (SPARSE_CONV_2D, SPARSE_FULLY_CONNECTED): the digits CNN pruned 2:4 and 1:4.
cal="$(mktemp)"
head -c 65536 "$root/quantize/assets/digits_test_f32.bin" >"$cal"
for nm in 2:4 1:4; do
  "$mote" quantize "$root/quantize/assets/digits_cnn_float.tflite" --calibration "$cal" --quiet \
    --nm "$nm" -o "$here/corpus/mote_model/digits_nm${nm/:/_}.mote" >/dev/null 2>&1 || true
done
rm -f "$cal"
# ONNX: the node-test, QDQ and digits fixtures.
for f in "$root"/quantize/tests/fixtures/onnx/*.onnx "$root"/quantize/tests/fixtures/onnx/*/*.onnx; do
  cp "$f" "$here/corpus/onnx_import/$(basename "$f")"
done
echo "corpus: $(ls "$here/corpus/mote_model" | wc -l) .mote, $(ls "$here/corpus/tflite_import" | wc -l) .tflite, $(ls "$here/corpus/onnx_import" | wc -l) .onnx"
