"""Shared parts of the benchmark peers (bench/peers/mlp_*.py).

Every peer runs the training of examples/mnist: MLP 784-U-U-10 with ReLU,
softmax cross entropy (mean over the batch), MomentumSGD(lr=0.01,
momentum=0.9), LeCunNormal weights and zero biases, on the Fashion-MNIST train
set (60000) shuffled each epoch as chainer.iterators.SerialIterator(repeat=True,
shuffle=True) does, then the test accuracy on the 10000 test images.

Thread counts must be fixed before numpy/torch are imported, so each peer
calls setup_threads() first thing: it sets OPENBLAS_NUM_THREADS (and the OMP
and MKL variables) to --threads unless the driver already set them.
"""
import argparse
import gzip
import json
import os
import resource
import statistics
import sys

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"


def parse_args(peer):
    p = argparse.ArgumentParser(description=f"{peer} peer of the kusari MNIST benchmark")
    p.add_argument("--unit", "-u", type=int, default=100)
    p.add_argument("--batch", "-b", type=int, default=128)
    p.add_argument("--epochs", "-e", type=int, default=2)
    p.add_argument("--threads", "-t", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=os.environ.get("KUSARI_DATA") or DEFAULT_DATA)
    return p.parse_args()


def setup_threads(threads):
    """Call before importing numpy/torch. Respects values the driver set."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))


def _read_idx(path, header):
    import numpy as np
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header)


def _find(data, name):
    for cand in (os.path.join(data, name), os.path.join(data, name + ".gz")):
        if os.path.exists(cand):
            return cand
    sys.exit(f"{name}(.gz) not found in {data}")


def load_fashion_mnist(data):
    """chainer.datasets.get_mnist(ndim=1) preprocessing: float32 images
    (N, 784) scaled by `*= 1/255.` and int32 labels."""
    import numpy as np
    out = []
    for split in ("train", "t10k"):
        x = _read_idx(_find(data, f"{split}-images-idx3-ubyte"), 16).reshape(-1, 784)
        x = x.astype(np.float32)
        x *= 1.0 / 255.0
        t = _read_idx(_find(data, f"{split}-labels-idx1-ubyte"), 8).astype(np.int32)
        assert len(x) == len(t)
        out += [x, t]
    return out


class SerialOrder:
    """chainer.iterators.SerialIterator(repeat=True, shuffle=True) over
    indices: a batch that crosses the epoch end takes its rest from the next
    epoch's permutation; is_new_epoch is set for that batch."""

    def __init__(self, n, batch, rng):
        self.n, self.batch, self.rng = n, batch, rng
        self.order = rng.permutation(n)
        self.pos = 0
        self.epoch = 0
        self.is_new_epoch = False

    def next(self):
        import numpy as np
        i, i_end = self.pos, self.pos + self.batch
        parts = []
        self.is_new_epoch = False
        while i_end >= self.n:
            parts.append(self.order[i:self.n])
            self.order = self.rng.permutation(self.n)
            i, i_end = 0, i_end - self.n
            self.epoch += 1
            self.is_new_epoch = True
        parts.append(self.order[i:i_end])
        self.pos = i_end
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def blas_info():
    """What numpy's BLAS runs with (threadpoolctl), for the JSON line."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    for lib in threadpool_info():
        if lib.get("internal_api") in ("openblas", "mkl", "blis"):
            return {"blas": lib.get("internal_api"), "blas_version": lib.get("version"),
                    "blas_threads": lib.get("num_threads"),
                    "blas_coretype": lib.get("architecture")}
    return {}


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def report(peer, args, epoch_seconds, final_loss, test_accuracy, epoch_cpu=None, **extra):
    rec = {
        "peer": peer, "unit": args.unit, "batch": args.batch, "threads": args.threads,
        "epochs": args.epochs,
        "epoch_seconds": [round(s, 4) for s in epoch_seconds],
        "median_epoch_s": round(statistics.median(epoch_seconds), 4),
        # process CPU seconds (all threads): steady on a shared machine for one thread
        **({"median_epoch_cpu_s": round(statistics.median(epoch_cpu), 4)} if epoch_cpu else {}),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "final_loss": round(float(final_loss), 6),
        "test_accuracy": round(float(test_accuracy), 6),
    }
    rec.update(extra)
    print(json.dumps(rec), flush=True)
