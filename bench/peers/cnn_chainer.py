#!/usr/bin/env python3
"""Chainer 7.8.1 peer of the kusari CNN benchmark (bench/bench_cnn.c).

L.Convolution2D(1, 32, 5)-relu-max_pooling_2d(2) - L.Convolution2D(32, 64, 5)
-relu-max_pooling_2d(2) - L.Linear(1024, U)-relu - L.Linear(U, 10) (Chainer's
default LeCunNormal weights, zero biases), F.softmax_cross_entropy,
MomentumSGD(lr=0.01, momentum=0.9), SerialIterator(repeat, shuffle) and
optimizer.update(lossfun, *concat_examples(batch)) per iteration, as
StandardUpdater does. See mlp_chainer.py for why SETUPTOOLS_USE_DISTUTILS
is set.
"""
import os
import sys
import time
import warnings

# setuptools reads this when the interpreter starts (distutils-precedence.pth):
# setting it later is too late, so restart once with it set (argv untouched)
if os.environ.get("SETUPTOOLS_USE_DISTUTILS") != "stdlib":
    os.environ["SETUPTOOLS_USE_DISTUTILS"] = "stdlib"
    os.execv(sys.executable, [sys.executable] + sys.argv)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

# --train-size N (this peer's own option): train on the first N images
TRAIN_SIZE = 0
if "--train-size" in sys.argv:
    _i = sys.argv.index("--train-size")
    TRAIN_SIZE = int(sys.argv[_i + 1])
    del sys.argv[_i:_i + 2]
# the CNN's defaults (--unit 256, --batch 100) unless given
for _flags, _default in ((("--unit", "-u"), "256"), (("--batch", "-b"), "100")):
    if not any(a in _flags or a.startswith(_flags[0] + "=") for a in sys.argv[1:]):
        sys.argv += [_flags[0], _default]
args = common.parse_args("chainer")
common.setup_threads(args.threads)
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import chainer  # noqa: E402
import chainer.functions as F  # noqa: E402
import chainer.links as L  # noqa: E402
from chainer.dataset import concat_examples  # noqa: E402


class CNN(chainer.Chain):
    def __init__(self, unit, c1=32, c2=64):
        super().__init__()
        with self.init_scope():
            self.conv1 = L.Convolution2D(1, c1, 5)
            self.conv2 = L.Convolution2D(c1, c2, 5)
            self.fc3 = L.Linear(c2 * 16, unit)
            self.fc4 = L.Linear(unit, 10)

    def forward(self, x):
        h = F.max_pooling_2d(F.relu(self.conv1(x)), 2)
        h = F.max_pooling_2d(F.relu(self.conv2(h)), 2)
        h = F.relu(self.fc3(h))
        return self.fc4(h)


def main():
    x_train, t_train, x_test, t_test = common.load_fashion_mnist(args.data)
    if TRAIN_SIZE > 0:
        x_train, t_train = x_train[:TRAIN_SIZE], t_train[:TRAIN_SIZE]
    x_train = x_train.reshape(-1, 1, 28, 28)
    x_test = x_test.reshape(-1, 1, 28, 28)
    np.random.seed(args.seed)
    train = chainer.datasets.TupleDataset(x_train, t_train)
    model = CNN(args.unit)
    opt = chainer.optimizers.MomentumSGD(lr=0.01, momentum=0.9)
    opt.setup(model)
    it = chainer.iterators.SerialIterator(train, args.batch, repeat=True, shuffle=True)
    last = {}

    def lossfun(x, t):
        last["loss"] = F.softmax_cross_entropy(model(x), t)
        return last["loss"]

    epoch_seconds = []
    epoch_cpu = []
    losses = []
    while it.epoch < args.epochs:
        t0 = time.perf_counter()
        c0 = time.process_time()
        losses = []
        while True:
            x, t = concat_examples(it.next())
            opt.update(lossfun, x, t)
            losses.append(float(last["loss"].array))
            if it.is_new_epoch:
                break
        epoch_seconds.append(time.perf_counter() - t0)
        epoch_cpu.append(round(time.process_time() - c0, 4))
        print(f"cnn_chainer: epoch {it.epoch}: {epoch_seconds[-1]:.2f} s", file=sys.stderr, flush=True)
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        pred = np.concatenate([model(x_test[i:i + 500]).array.argmax(axis=1)
                               for i in range(0, len(x_test), 500)])
    acc = float((pred == t_test).mean())
    common.report("chainer", args, epoch_seconds, np.mean(losses), acc, model="cnn",
                  epoch_cpu_seconds=epoch_cpu, train_size=len(x_train),
                  chainer_version=chainer.__version__, numpy_version=np.__version__,
                  **common.blas_info())


if __name__ == "__main__":
    main()
