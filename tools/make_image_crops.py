"""Natural-image crops for the ResNet row of quantize/tests/fidelity_table.rs.

Reads the two CC BY 2.0 photographs that scikit-learn ships (sklearn/datasets/images/
china.jpg and flower.jpg; attribution in quantize/tests/fixtures/images/README.md), takes
random square crops of 48-160 px side, box-filters each to 32 x 32 RGB (area averaging) and
writes them as raw uint8 NHWC:

- calibration.u8: crops from the LEFT half of each photo,
- heldout.u8:     crops from the RIGHT half (no pixel in common with any calibration crop).

Run with any Python that has numpy, tensorflow (only for JPEG decoding) and scikit-learn
(only to locate the files), e.g.:

    python tools/make_image_crops.py quantize/tests/fixtures/images
"""

import os
import sys

import numpy as np
import sklearn
import tensorflow as tf

PER_SPLIT = 128  # crops per split (64 per photo)
SEED = 0


def crops(img, n, x0, x1, rng):
    h = img.shape[0]
    out = []
    while len(out) < n:
        s = int(rng.integers(48, 161))
        if x1 - x0 < s or h < s:
            continue
        x = int(rng.integers(x0, x1 - s + 1))
        y = int(rng.integers(0, h - s + 1))
        c = img[y : y + s, x : x + s].astype(np.float64)
        # Area averaging to 32 x 32: output pixel (i, j) averages source rows/cols
        # [i*s/32, (i+1)*s/32) with fractional weights.
        w = np.zeros((32, s))
        for i in range(32):
            a, b = i * s / 32, (i + 1) * s / 32
            for k in range(int(np.floor(a)), int(np.ceil(b))):
                w[i, k] = min(b, k + 1) - max(a, k)
        w /= w.sum(1, keepdims=True)
        r = np.einsum("ik,klc,jl->ijc", w, c, w)
        out.append(np.clip(np.round(r), 0, 255).astype(np.uint8))
    return out


def main():
    dst = sys.argv[1]
    src = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images")
    rng = np.random.default_rng(SEED)
    cal, held = [], []
    for name in ["china.jpg", "flower.jpg"]:
        img = tf.io.decode_jpeg(tf.io.read_file(os.path.join(src, name))).numpy()
        w = img.shape[1]
        cal += crops(img, PER_SPLIT // 2, 0, w // 2, rng)
        held += crops(img, PER_SPLIT // 2, w // 2, w, rng)
    np.stack(cal).tofile(os.path.join(dst, "calibration.u8"))
    np.stack(held).tofile(os.path.join(dst, "heldout.u8"))
    print(len(cal), len(held), "crops of 32x32x3 written to", dst)


if __name__ == "__main__":
    main()
