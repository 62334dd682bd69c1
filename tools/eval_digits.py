#!/usr/bin/env python3
"""Measure the digits demo model with the peer runtimes and write its TFLM golden fixtures.

Run with the peers venv (numpy + ai-edge-litert + tflite-micro; see quantize/assets/README.md),
after tools/train_digits.py:

    python tools/eval_digits.py              # measure, update digits_cnn.json, write the fixtures
    python tools/eval_digits.py --check      # measure and report; write nothing

Reads quantize/assets/{digits_cnn_int8.tflite, digits_cnn_float.tflite, digits_test_int8.bin,
digits_test_f32.bin, digits_test_labels.bin, digits_cnn.json}.

Measures on the whole held-out test set:
  - int8 accuracy with the LiteRT interpreter (ai_edge_litert), with its builtin kernels and with
    its default XNNPACK delegate, and the op list (op details, builtin kernels: no DELEGATE node),
  - float accuracy of the float TFLite model with LiteRT,
  - int8 accuracy with TensorFlow Lite Micro's reference kernels, and how many test images give
    the same int8 output bytes in TFLM and LiteRT,
  - the smallest tensor arena TFLM accepts (binary search to 8 bytes, as shared/tools/peers/golden.py),
and records them in digits_cnn.json ("accuracy", "ops_int8_litert", "tflm_arena_bytes", "eval").

Writes quantize/tests/fixtures/golden/digits_cnn_int8/ in the layout of tools/fixtures/golden.py:
  cases.json   {"model", "model_sha256", "inputs", "outputs", "cases", "tflm_arena_bytes", ...}
  inputs.bin   per case its int8 input bytes (64), in case order
  outputs.bin  per case TFLM's int8 output bytes (10), in case order
Cases: "zeros" (all bytes 0), "ramp" (byte i = (i*7) % 256), "test000".."test099" (the first 100
held-out test images, as in digits_test_int8.bin). Every case is one invoke on a fresh interpreter.
"""
import hashlib
import json
import os
import sys

import numpy as np
from ai_edge_litert import interpreter as litert
from tflite_micro.python.tflite_micro import runtime
from tflite_micro.python.tflite_micro import _version as tflm_version

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ASSETS = os.path.join(REPO, "quantize", "assets")
MODEL_REF = "quantize/assets/digits_cnn_int8.tflite"
GOLDEN = os.path.join(REPO, "quantize", "tests", "fixtures", "golden", "digits_cnn_int8")
N_GOLDEN = 100
ARENA = 1 << 20


class quiet:
    """Silences TFLM's C++ logging, which writes straight to file descriptors 1 and 2."""

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = [os.dup(1), os.dup(2)]
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)

    def __exit__(self, *exc):
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        for fd in self.saved:
            os.close(fd)


def asset(name):
    return os.path.join(ASSETS, name)


def litert_run(path, xs, delegates=True):
    """LiteRT with its default delegate (XNNPACK), or with the builtin kernels only."""
    kw = {} if delegates else {
        "experimental_op_resolver_type": litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    it = litert.Interpreter(model_path=path, num_threads=1, **kw)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    ys = []
    for x in xs:
        it.set_tensor(i["index"], x.reshape(i["shape"]).astype(i["dtype"]))
        it.invoke()
        ys.append(np.array(it.get_tensor(o["index"])).reshape(-1))
    ops = [op["op_name"] for op in it._get_ops_details()]  # noqa: SLF001
    return np.stack(ys), ops, i, o


def tflm_run(path, x, arena=ARENA):
    """One invoke on a fresh TFLM interpreter."""
    with quiet():
        it = runtime.Interpreter.from_file(path, arena_size=arena)
        it.set_input(np.ascontiguousarray(x), 0)
        it.invoke()
        return np.array(it.get_output(0)).reshape(-1)


PROBE = """
import sys, numpy as np
from tflite_micro.python.tflite_micro import runtime
it = runtime.Interpreter.from_file(sys.argv[1], arena_size=int(sys.argv[2]))
it.set_input(np.frombuffer(bytes.fromhex(sys.argv[3]), np.int8).reshape(1, 8, 8, 1), 0)
it.invoke()
"""


def smallest_arena(path, x):
    # Every probe in its own process: with some too-small arenas TFLM's allocator does not
    # fail cleanly but crashes the process (seen at 4,159 bytes for the width-2 model), so a
    # probe that does not exit cleanly counts as "does not fit". The answer is then checked:
    # it fits, and 8 bytes less fails with an ordinary error (not a crash).
    import subprocess

    def run(size):
        return subprocess.run([sys.executable, "-c", PROBE, path, str(size), x.tobytes().hex()],
                              capture_output=True).returncode

    def fits(size):
        return run(size) == 0

    lo, hi = 64, 16 * 1024 * 1024
    if not fits(hi):
        return None
    while hi - lo > 8:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    assert fits(hi) and run(hi - 8) == 1, f"arena search: {hi} bytes fits, {hi - 8} must fail cleanly"
    return hi


def main(argv):
    write = "--check" not in argv
    model = asset("digits_cnn_int8.tflite")
    with open(model, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    with open(asset("digits_cnn.json")) as f:
        meta = json.load(f)
    if meta.get("model_sha256") != sha:
        sys.exit("digits_cnn.json does not describe digits_cnn_int8.tflite: rerun tools/train_digits.py")
    x_q = np.fromfile(asset("digits_test_int8.bin"), np.int8).reshape(-1, 1, 8, 8, 1)
    x_f = np.fromfile(asset("digits_test_f32.bin"), "<f4").reshape(-1, 1, 8, 8, 1)
    y = np.fromfile(asset("digits_test_labels.bin"), np.uint8).astype(np.int64)
    n = len(y)
    assert len(x_q) == n == len(x_f) == meta["n_test"], (len(x_q), len(x_f), n, meta["n_test"])

    # the int8 input really is the float input quantized with the model's input parameters
    s, z = meta["input"]["scale"], meta["input"]["zero_point"]
    back = (x_q.astype(np.float32) - z) * np.float32(s)
    assert np.max(np.abs(back - x_f)) <= s / 2 + 1e-6

    # op list and the reference-like numbers from the builtin kernels (no delegate node in the graph)
    y_lite, ops, in_d, out_d = litert_run(model, x_q, delegates=False)
    assert in_d["dtype"] == np.int8 and out_d["dtype"] == np.int8
    acc_lite = float(np.mean(np.argmax(y_lite, 1) == y))
    y_xnn, _, _, _ = litert_run(model, x_q)
    acc_xnn = float(np.mean(np.argmax(y_xnn, 1) == y))
    xnn_same = int(np.sum(np.all(y_xnn == y_lite, 1)))
    y_lite_f, _, _, _ = litert_run(asset("digits_cnn_float.tflite"), x_f)
    acc_lite_f = float(np.mean(np.argmax(y_lite_f, 1) == y))
    print(f"LiteRT  int8 test acc {acc_lite:.4f} (builtin kernels)  {acc_xnn:.4f} (XNNPACK; "
          f"{xnn_same}/{n} identical outputs)   float test acc {acc_lite_f:.4f}   (n={n})")
    print("LiteRT int8 ops:", " ".join(ops))
    if ops != meta["ops_int8"]:
        sys.exit(f"op list differs from train_digits.py's: {ops} vs {meta['ops_int8']}")

    y_tflm = np.stack([tflm_run(model, x) for x in x_q])
    assert y_tflm.dtype == np.int8 and y_tflm.shape == (n, 10)
    acc_tflm = float(np.mean(np.argmax(y_tflm, 1) == y))
    same = int(np.sum(np.all(y_tflm == y_lite, 1)))
    max_diff = int(np.max(np.abs(y_tflm.astype(np.int32) - y_lite.astype(np.int32))))
    print(f"TFLM    int8 test acc {acc_tflm:.4f}   identical output bytes to LiteRT: {same}/{n} "
          f"(max |diff| {max_diff})")

    # golden cases
    cases = [("zeros", np.zeros((1, 8, 8, 1), np.int8)),
             ("ramp", (np.arange(64) * 7 % 256).astype(np.uint8).view(np.int8).reshape(1, 8, 8, 1))]
    cases += [(f"test{k:03d}", x_q[k]) for k in range(N_GOLDEN)]
    in_blob, out_blob = bytearray(), bytearray()
    for _, x in cases:
        in_blob += x.tobytes()
        out_blob += tflm_run(model, x).astype(np.int8).tobytes()
    assert len(in_blob) == len(cases) * 64 and len(out_blob) == len(cases) * 10
    arena = smallest_arena(model, cases[0][1])
    print(f"TFLM smallest arena: {arena} bytes")

    io_in = {"dtype": "int8", "shape": [1, 8, 8, 1], "scale": meta["input"]["scale"],
             "zero_point": meta["input"]["zero_point"]}
    io_out = {"dtype": "int8", "shape": [1, 10], "scale": meta["output"]["scale"],
              "zero_point": meta["output"]["zero_point"]}
    golden = {
        "model": MODEL_REF,
        "model_sha256": sha,
        "inputs": [io_in],
        "outputs": [io_out],
        "cases": [c for c, _ in cases],
        "tflm_arena_bytes": arena,
        "generator": "tools/eval_digits.py",
        "tflm_version": tflm_version.__version__,
        "test_cases_source": f"testNNN = row NNN of quantize/assets/digits_test_int8.bin "
                             f"(held-out digits test images, labels in digits_test_labels.bin)",
    }
    meta["accuracy"].update(int8_litert_test=acc_lite, int8_litert_xnnpack_test=acc_xnn,
                            float_litert_test=acc_lite_f, int8_tflm_test=acc_tflm)
    meta["ops_int8_litert"] = ops
    meta["tflm_arena_bytes"] = arena
    meta["eval"] = {
        "script": "tools/eval_digits.py",
        "litert": "ai_edge_litert.interpreter, num_threads=1; int8_litert_test with "
                  "OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES (builtin kernels), "
                  "int8_litert_xnnpack_test and float_litert_test with the default XNNPACK delegate",
        "litert_xnnpack_builtin_identical_outputs": f"{xnn_same}/{n}",
        "tflm_version": tflm_version.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "tflm_litert_identical_outputs": f"{same}/{n} (TFLM vs LiteRT builtin kernels)",
        "tflm_litert_max_abs_diff": max_diff,
        "golden_fixtures": os.path.relpath(GOLDEN, REPO),
    }
    if not write:
        print(json.dumps(meta["accuracy"], indent=1))
        return 0
    os.makedirs(GOLDEN, exist_ok=True)
    with open(os.path.join(GOLDEN, "cases.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    for fn, blob in (("inputs.bin", in_blob), ("outputs.bin", out_blob)):
        with open(os.path.join(GOLDEN, fn), "wb") as f:
            f.write(bytes(blob))
    with open(asset("digits_cnn.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.relpath(GOLDEN, REPO)}/ ({len(cases)} cases) and quantize/assets/digits_cnn.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
