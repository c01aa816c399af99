"""PyTorch DistributedDataParallel (gloo, CPU) peer of bench/dist.sh: the
models of examples/mnist/train_mnist_cnn (--arch cnn: Conv(1,32,5)-ReLU-
MaxPool2 - Conv(32,64,5)-ReLU-MaxPool2 - Linear(1024,256)-ReLU -
Linear(256,10); --arch mlp: 784-U-U-10 with ReLU), Adam (Chainer's defaults:
lr 0.001, betas 0.9/0.999, eps 1e-8), softmax cross entropy, --batch
examples per rank, 1 thread per rank. The first --n training examples are
split over the ranks (DistributedSampler, shuffled); the time is the wall
time of that pass (forward, backward with DDP's bucketed allreduce
overlapping it, step), the slowest rank's, after one warm-up step.

  python ddp_torch.py --arch cnn --world 2 --n 12000
prints one JSON line: {"arch", "world", "n", "batch", "seconds", "updates"}.
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DEFAULT_DATA, load_fashion_mnist  # noqa: E402


def worker(rank, a, port):
    import torch
    import torch.distributed as dist
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=a.world)
    x, t, _, _ = load_fashion_mnist(a.data)
    x, t = torch.from_numpy(x[:a.n].copy()), torch.from_numpy(t[:a.n].astype("int64"))
    if a.arch == "cnn":
        x = x.reshape(-1, 1, 28, 28)

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv1, self.conv2 = nn.Conv2d(1, 32, 5), nn.Conv2d(32, 64, 5)
                self.fc3, self.fc4 = nn.Linear(1024, 256), nn.Linear(256, 10)

            def forward(self, h):
                h = F.max_pool2d(F.relu(self.conv1(h)), 2)
                h = F.max_pool2d(F.relu(self.conv2(h)), 2)
                return self.fc4(F.relu(self.fc3(h.flatten(1))))
    else:
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.l1, self.l2, self.l3 = nn.Linear(784, a.unit), nn.Linear(a.unit, a.unit), nn.Linear(a.unit, 10)

            def forward(self, h):
                return self.l3(F.relu(self.l2(F.relu(self.l1(h)))))
    torch.manual_seed(a.seed)
    model = nn.parallel.DistributedDataParallel(Net())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    g = torch.Generator().manual_seed(a.seed)
    order = torch.randperm(a.n, generator=g)
    mine = order[rank * (a.n // a.world):(rank + 1) * (a.n // a.world)]
    batches = [mine[i:i + a.batch] for i in range(0, len(mine) - a.batch + 1, a.batch)]

    def step(idx):
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), t[idx]).backward()
        opt.step()
    step(batches[0])  # warm-up (not timed)
    dist.barrier()
    t0 = time.perf_counter()
    for idx in batches:
        step(idx)
    dist.barrier()
    sec = time.perf_counter() - t0
    if rank == 0:
        print(json.dumps({"arch": a.arch, "world": a.world, "n": a.n, "batch": a.batch,
                          "seconds": sec, "updates": len(batches)}), flush=True)
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", choices=("cnn", "mlp"), default="cnn")
    p.add_argument("--unit", type=int, default=1000)
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--n", type=int, default=12000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--port", type=int, default=29533)
    p.add_argument("--data", default=os.environ.get("KUSARI_DATA") or DEFAULT_DATA)
    a = p.parse_args()
    import torch.multiprocessing as mp
    mp.spawn(worker, args=(a, a.port), nprocs=a.world, join=True)


if __name__ == "__main__":
    main()
