#!/usr/bin/env python3
"""PyTorch (CPU) peer of the kusari CNN benchmark (bench/bench_cnn.c).

The CNN of examples/mnist/train_mnist_cnn: Conv2d(1, 32, 5)-ReLU-MaxPool2 -
Conv2d(32, 64, 5)-ReLU-MaxPool2 - Linear(1024, U)-ReLU - Linear(U, 10) with
U = --unit (default 256 here), F.cross_entropy (mean), torch.optim.SGD(lr=0.01,
momentum=0.9), LeCunNormal weights (normal, std sqrt(1/fan_in)) and zero
biases, on Fashion-MNIST as (N, 1, 28, 28) shuffled like Chainer's
SerialIterator. --threads sets torch.set_num_threads and
set_num_interop_threads (and the BLAS/OMP variables unless the driver set
them). Prints one JSON line (common.report).
"""
import os
import sys
import time

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
args = common.parse_args("torch")
common.setup_threads(args.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(args.threads)
torch.set_num_interop_threads(args.threads)


class CNN(nn.Module):
    def __init__(self, unit, c1=32, c2=64):
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 5)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.fc3 = nn.Linear(c2 * 16, unit)
        self.fc4 = nn.Linear(unit, 10)
        for m in (self.conv1, self.conv2, self.fc3, self.fc4):
            fan_in = m.weight[0].numel()
            nn.init.normal_(m.weight, 0.0, float(np.sqrt(1.0 / fan_in)))
            nn.init.zeros_(m.bias)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.relu(self.fc3(h.flatten(1)))
        return self.fc4(h)


def main():
    x_train, t_train, x_test, t_test = common.load_fashion_mnist(args.data)
    if TRAIN_SIZE > 0:
        x_train, t_train = x_train[:TRAIN_SIZE], t_train[:TRAIN_SIZE]
    x_train = x_train.reshape(-1, 1, 28, 28)
    x_test = x_test.reshape(-1, 1, 28, 28)
    torch.manual_seed(args.seed)
    rng = np.random.RandomState(args.seed)
    xt = torch.from_numpy(x_train)
    tt = torch.from_numpy(t_train.astype(np.int64))
    model = CNN(args.unit)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    it = common.SerialOrder(len(x_train), args.batch, rng)
    epoch_seconds = []
    epoch_cpu = []
    losses = []
    while it.epoch < args.epochs:
        t0 = time.perf_counter()
        c0 = time.process_time()
        losses = []
        while True:
            idx = torch.from_numpy(it.next())
            x, t = xt[idx], tt[idx]
            loss = F.cross_entropy(model(x), t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if it.is_new_epoch:
                break
        epoch_seconds.append(time.perf_counter() - t0)
        epoch_cpu.append(round(time.process_time() - c0, 4))
        print(f"cnn_torch: epoch {it.epoch}: {epoch_seconds[-1]:.2f} s", file=sys.stderr, flush=True)
    with torch.no_grad():
        pred = torch.cat([model(torch.from_numpy(x_test[i:i + 500])).argmax(dim=1)
                          for i in range(0, len(x_test), 500)]).numpy()
    acc = float((pred == t_test).mean())
    common.report("torch", args, epoch_seconds, np.mean(losses), acc, model="cnn",
                  epoch_cpu_seconds=epoch_cpu, train_size=len(x_train),
                  torch_version=torch.__version__,
                  torch_threads=torch.get_num_threads(),
                  torch_interop_threads=torch.get_num_interop_threads())


if __name__ == "__main__":
    main()
