#!/usr/bin/env python3
"""Builds a scoring request for a deployed MNIST-format model from real test images.

    python3 examples/mnist/score_request.py [--index N] [--count K] [--images PATH] > request.json
    curl -H "Authorization: Bearer $KEY" --data-binary @request.json http://127.0.0.1:PORT/score

Prints {"data": [[...784 numbers...], ...]}: images N to N+K-1 of an idx3 image
file (by default Debian's Fashion-MNIST test set), each flattened row by row
and scaled to [0, 1] (pixel / 255, in float32 as the training programs do),
which is the input_range that examples/mnist/train_mnist and train_mnist_cnn
declare in model.json. Their labels go to stderr. Needs python3 only (its
gzip and struct modules; no numpy).
"""
import argparse
import gzip
import json
import struct
import sys

DEFAULT_IMAGES = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


def read_idx(path):
    """(dims, bytes) of an idx file of unsigned bytes (.gz or not)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError("%s is not an idx file of unsigned bytes" % path)
    ndim = raw[3]
    dims = struct.unpack(">%dI" % ndim, raw[4:4 + 4 * ndim])
    data = raw[4 + 4 * ndim:]
    size = 1
    for d in dims:
        size *= d
    if len(data) != size:
        raise ValueError("%s: %d bytes of data for dims %s" % (path, len(data), dims))
    return dims, data


def f32(v):
    """v rounded to float32."""
    return struct.unpack("<f", struct.pack("<f", v))[0]


# pixel p as the training programs see it: float32(p) * float32(1/255) in
# float32 (the product is exact in a double, then rounded once, as float32
# arithmetic does); "%.9g" gives back exactly that float32, 0 stays "0"
SCALE = f32(1.0 / 255.0)
PIXEL = ["%.9g" % f32(p * SCALE) for p in range(256)]


def labels_path(images):
    """t10k-images-idx3-ubyte(.gz) -> t10k-labels-idx1-ubyte(.gz), if that is the name."""
    if "images-idx3" in images:
        return images.replace("images-idx3", "labels-idx1")
    return None


def main():
    p = argparse.ArgumentParser(description="Print a scoring request {\"data\": [[...], ...]} built from "
                                "MNIST-format test images, scaled to [0, 1] as the examples' models expect.")
    p.add_argument("--index", type=int, default=0, help="first image (default 0)")
    p.add_argument("--count", type=int, default=1, help="number of images (default 1)")
    p.add_argument("--images", default=DEFAULT_IMAGES,
                   help="idx3 image file, .gz or not (default %s)" % DEFAULT_IMAGES)
    a = p.parse_args()
    try:
        dims, data = read_idx(a.images)
    except (OSError, ValueError) as e:
        sys.exit("score_request: cannot read the images: %s\n  hint: give an idx3 file with --images "
                 "(Debian's package dataset-fashion-mnist installs %s)" % (e, DEFAULT_IMAGES))
    if len(dims) != 3:
        sys.exit("score_request: %s holds %d-dimensional data, not images (N, rows, cols)" % (a.images, len(dims)))
    n, width = dims[0], dims[1] * dims[2]
    if a.count < 1 or a.index < 0 or a.index + a.count > n:
        sys.exit("score_request: images %d to %d asked for, but %s has %d (0 to %d)\n"
                 "  hint: choose --index and --count within them" % (a.index, a.index + a.count - 1, a.images, n, n - 1))
    rows = []
    for i in range(a.index, a.index + a.count):
        img = data[i * width:(i + 1) * width]
        rows.append("[" + ", ".join(PIXEL[p] for p in img) + "]")
    sys.stdout.write('{"data": [' + ", ".join(rows) + "]}\n")
    lp = labels_path(a.images)
    if lp:
        try:
            t = list(read_idx(lp)[1][a.index:a.index + a.count])
            print("score_request: images %d to %d of %s; labels %s" % (a.index, a.index + a.count - 1, a.images,
                                                                      json.dumps(t)), file=sys.stderr)
        except (OSError, ValueError):
            pass


if __name__ == "__main__":
    main()
