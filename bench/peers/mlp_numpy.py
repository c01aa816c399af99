#!/usr/bin/env python3
"""numpy peer: exactly the numpy calls Chainer 7.8.1 makes on CPU for the
kusari MNIST training (so it is "Chainer without the framework overhead").

  Linear      forward  y = x.dot(W.T).astype(x.dtype, copy=False); y += b
              backward gx = gy.dot(W); gW = gy.T.dot(x); gb = gy.sum(axis=0)
              (no gx for the first layer: its input needs no gradient)
  ReLU        forward  numpy.maximum(x, 0, dtype=x.dtype); backward gy * (y > 0)
  softmax_cross_entropy (reduce='mean', normalize=True)
              log_y = x - logsumexp(x)  (m = max; exp(x - m); log(sum) + m)
              loss = -sum(log_y[i, t_i]) / N;  y = exp(log_y) cached
              backward gx = y; gx[i, t_i] -= 1; gx *= gloss / N
  MomentumSGD v *= 0.9; v -= 0.01 * g; W += v
  Converter   concat_examples: x[idx], t[idx] (fancy indexing, new arrays)

Usage: mlp_numpy.py --unit 100 --batch 128 --epochs 2 --threads 1
(OPENBLAS_NUM_THREADS is set from --threads unless already in the env.)
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

args = common.parse_args("numpy")
common.setup_threads(args.threads)

import numpy as np  # noqa: E402


def lecun_normal(rng, out_size, in_size):
    # chainer.initializers.LeCunNormal: Normal(sqrt(1 / fan_in)), drawn in
    # float64 and stored in float32
    w = rng.normal(loc=0.0, scale=np.sqrt(1.0 / in_size), size=(out_size, in_size))
    return w.astype(np.float32)


def logsumexp(x):
    m = x.max(axis=1, keepdims=True)
    y = x - m
    np.exp(y, out=y)
    s = y.sum(axis=1, keepdims=True)
    np.log(s, out=s)
    m += s
    return m


class MLP:
    def __init__(self, unit, rng):
        sizes = [(unit, 784), (unit, unit), (10, unit)]
        self.W = [lecun_normal(rng, o, i) for o, i in sizes]
        self.b = [np.zeros(o, dtype=np.float32) for o, _ in sizes]
        self.vW = [np.zeros_like(w) for w in self.W]
        self.vb = [np.zeros_like(b) for b in self.b]

    def forward(self, x):
        hs = [x]
        h = x
        for k in range(3):
            y = h.dot(self.W[k].T).astype(h.dtype, copy=False)
            y += self.b[k]
            if k < 2:
                y = np.maximum(y, 0, dtype=y.dtype)
            hs.append(y)
            h = y
        return hs

    def train_step(self, x, t):
        hs = self.forward(x)
        logits = hs[-1]
        # softmax_cross_entropy forward
        log_y = logits - logsumexp(logits)
        y = np.exp(log_y)
        n = len(t)
        t_valid = t != -1
        log_p = log_y[np.arange(n), t * t_valid]
        log_p *= t_valid
        coeff = 1.0 / max(int(t_valid.sum()), 1)
        loss = log_p.sum(keepdims=True) * (-coeff)
        # backward (gloss = 1)
        gloss = np.ones_like(loss)
        gx = y
        gx[np.arange(n), np.maximum(t, 0)] -= 1
        gx *= t_valid.reshape((n, 1))
        gx *= gloss * coeff
        gy = gx
        gW = [None] * 3
        gb = [None] * 3
        for k in (2, 1, 0):
            h_in = hs[k]
            gW[k] = gy.T.dot(h_in).astype(self.W[k].dtype, copy=False)
            gb[k] = gy.sum(axis=0)
            if k > 0:
                gh = gy.dot(self.W[k]).astype(gy.dtype, copy=False)
                gy = np.asarray(gh * (h_in > 0), dtype=gh.dtype)  # ReLUGrad2
        # MomentumSGD, parameter by parameter as Chainer's optimizer walks them
        for k in range(3):
            for p, v, g in ((self.W[k], self.vW[k], gW[k]), (self.b[k], self.vb[k], gb[k])):
                v *= 0.9
                v -= 0.01 * g
                p += v
        return float(loss[0])

    def accuracy(self, x, t):
        correct = 0
        for i in range(0, len(x), 1000):
            logits = self.forward(x[i:i + 1000])[-1]
            correct += int((logits.argmax(axis=1) == t[i:i + 1000]).sum())
        return correct / len(x)


def main():
    x_train, t_train, x_test, t_test = common.load_fashion_mnist(args.data)
    rng = np.random.RandomState(args.seed)
    model = MLP(args.unit, rng)
    it = common.SerialOrder(len(x_train), args.batch, rng)
    epoch_seconds, epoch_cpu = [], []
    losses = []
    while it.epoch < args.epochs:
        t0, c0 = time.perf_counter(), time.process_time()
        losses = []
        while True:
            idx = it.next()
            losses.append(model.train_step(x_train[idx], t_train[idx]))
            if it.is_new_epoch:
                break
        epoch_seconds.append(time.perf_counter() - t0)
        epoch_cpu.append(time.process_time() - c0)
    acc = model.accuracy(x_test, t_test)
    common.report("numpy", args, epoch_seconds, np.mean(losses), acc, epoch_cpu=epoch_cpu,
                  numpy_version=np.__version__, **common.blas_info())


if __name__ == "__main__":
    main()
