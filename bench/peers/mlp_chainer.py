#!/usr/bin/env python3
"""Chainer 7.8.1 peer of the kusari MNIST training: the real framework.

TupleDataset(x, t) of get_mnist-style arrays, SerialIterator(batch,
repeat=True, shuffle=True), concat_examples, and what StandardUpdater does
per iteration: optimizer.update(lossfun, x, t) (cleargrads, backward,
MomentumSGD(lr=0.01, momentum=0.9) update). MLP of three L.Linear (default
LeCunNormal weights, zero biases) with ReLU, F.softmax_cross_entropy.
No Trainer/extensions (they would add reporting overhead kusari's loop does
not have); epoch time runs from the epoch's first batch to the batch that
sets is_new_epoch.

Chainer 7.8.1 imports numpy.distutils and pkg_resources: it needs numpy < 2,
setuptools < 81 and, with setuptools' own distutils, the stdlib one
(SETUPTOOLS_USE_DISTUTILS=stdlib, set below). See bench/setup-peers.sh.
"""
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

args = common.parse_args("chainer")
common.setup_threads(args.threads)
os.environ.setdefault("SETUPTOOLS_USE_DISTUTILS", "stdlib")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import chainer  # noqa: E402
import chainer.functions as F  # noqa: E402
import chainer.links as L  # noqa: E402
from chainer.dataset import concat_examples  # noqa: E402


class MLP(chainer.Chain):
    def __init__(self, unit):
        super().__init__()
        with self.init_scope():
            self.l1 = L.Linear(784, unit)
            self.l2 = L.Linear(unit, unit)
            self.l3 = L.Linear(unit, 10)

    def forward(self, x):
        h = F.relu(self.l1(x))
        h = F.relu(self.l2(h))
        return self.l3(h)


def main():
    x_train, t_train, x_test, t_test = common.load_fashion_mnist(args.data)
    np.random.seed(args.seed)   # Chainer's initializers and shuffles use it
    train = chainer.datasets.TupleDataset(x_train, t_train)
    model = MLP(args.unit)
    opt = chainer.optimizers.MomentumSGD(lr=0.01, momentum=0.9)
    opt.setup(model)
    it = chainer.iterators.SerialIterator(train, args.batch, repeat=True, shuffle=True)

    last = {}

    def lossfun(x, t):
        last["loss"] = F.softmax_cross_entropy(model(x), t)
        return last["loss"]

    epoch_seconds, epoch_cpu = [], []
    losses = []
    while it.epoch < args.epochs:
        t0, c0 = time.perf_counter(), time.process_time()
        losses = []
        while True:
            x, t = concat_examples(it.next())
            opt.update(lossfun, x, t)
            losses.append(float(last["loss"].array))
            if it.is_new_epoch:
                break
        epoch_seconds.append(time.perf_counter() - t0)
        epoch_cpu.append(time.process_time() - c0)
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        pred = model(x_test).array.argmax(axis=1)
    acc = float((pred == t_test).mean())
    common.report("chainer", args, epoch_seconds, np.mean(losses), acc, epoch_cpu=epoch_cpu,
                  chainer_version=chainer.__version__, numpy_version=np.__version__,
                  **common.blas_info())


if __name__ == "__main__":
    main()
