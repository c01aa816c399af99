#!/usr/bin/env python3
"""PyTorch (CPU) peer of the kusari MNIST training.

nn.Linear x3 with ReLU, F.cross_entropy (mean), torch.optim.SGD(lr=0.01,
momentum=0.9) (PyTorch's v = 0.9 v + g; W -= 0.01 v is Chainer's
MomentumSGD with v scaled by -lr), LeCunNormal weights (normal with std
sqrt(1/fan_in)), zero biases. Data lives in torch tensors; a batch is
x[idx], t[idx] as a DataLoader-free loop would do.

--threads sets torch.set_num_threads and torch.set_num_interop_threads (and
OPENBLAS/OMP/MKL_NUM_THREADS unless the driver set them).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

args = common.parse_args("torch")
common.setup_threads(args.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(args.threads)
torch.set_num_interop_threads(args.threads)


class MLP(nn.Module):
    def __init__(self, unit):
        super().__init__()
        self.l1 = nn.Linear(784, unit)
        self.l2 = nn.Linear(unit, unit)
        self.l3 = nn.Linear(unit, 10)
        for lin in (self.l1, self.l2, self.l3):
            nn.init.normal_(lin.weight, 0.0, float(np.sqrt(1.0 / lin.in_features)))
            nn.init.zeros_(lin.bias)

    def forward(self, x):
        h = F.relu(self.l1(x))
        h = F.relu(self.l2(h))
        return self.l3(h)


def main():
    x_train, t_train, x_test, t_test = common.load_fashion_mnist(args.data)
    torch.manual_seed(args.seed)
    rng = np.random.RandomState(args.seed)
    xt = torch.from_numpy(x_train)
    tt = torch.from_numpy(t_train.astype(np.int64))
    model = MLP(args.unit)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    it = common.SerialOrder(len(x_train), args.batch, rng)
    epoch_seconds, epoch_cpu = [], []
    losses = []
    while it.epoch < args.epochs:
        t0, c0 = time.perf_counter(), time.process_time()
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
        epoch_cpu.append(time.process_time() - c0)
    with torch.no_grad():
        pred = model(torch.from_numpy(x_test)).argmax(dim=1).numpy()
    acc = float((pred == t_test).mean())
    common.report("torch", args, epoch_seconds, np.mean(losses), acc, epoch_cpu=epoch_cpu,
                  torch_version=torch.__version__,
                  torch_threads=torch.get_num_threads(),
                  torch_interop_threads=torch.get_num_interop_threads())


if __name__ == "__main__":
    main()
