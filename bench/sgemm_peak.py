#!/usr/bin/env python3
"""bench/sgemm_peak.py — sgemm GFLOP/s of numpy's own OpenBLAS (the one the
numpy and Chainer peers use; bench/sgemm_peak.c measures the system
OpenBLAS that libkusari links) on 1 and 2 threads: a 2048^3 product and the
GEMMs of one MLP training step with the transposes Chainer uses.

  bench/.venv/bin/python bench/sgemm_peak.py
  OPENBLAS_CORETYPE= bench/.venv/bin/python bench/sgemm_peak.py   # see PEERS.md
"""
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits


def per_call(f, budget=0.3):
    f()
    best = 1e30
    for _ in range(5):
        n, t0 = 0, time.perf_counter()
        while True:
            f()
            n += 1
            t = time.perf_counter()
            if t - t0 >= budget / 5:
                break
        best = min(best, (t - t0) / n)
    return best


def main():
    rng = np.random.RandomState(0)
    info = [lib for lib in threadpool_info() if lib.get("internal_api") == "openblas"]
    core = info[0].get("architecture") if info else "?"
    ver = info[0].get("version") if info else "?"
    print(f"numpy {np.__version__}, OpenBLAS {ver}, core {core}")
    a = rng.rand(2048, 2048).astype(np.float32)
    b = rng.rand(2048, 2048).astype(np.float32)
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            s = per_call(lambda: a.dot(b))
            print(f"threads {threads}: peak (2048^3) {2 * 2048**3 / s * 1e-9:.1f} GFLOP/s")
            for unit, batch in ((100, 128), (1000, 100)):
                step = flops = 0.0
                for fin, fout, first in ((784, unit, True), (unit, unit, False), (unit, 10, False)):
                    x = rng.rand(batch, fin).astype(np.float32)
                    w = rng.rand(fout, fin).astype(np.float32)
                    gy = rng.rand(batch, fout).astype(np.float32)
                    ops = [lambda: x.dot(w.T), lambda: gy.T.dot(x)]
                    if not first:
                        ops.append(lambda: gy.dot(w))
                    for op in ops:
                        step += per_call(op, 0.1)
                        flops += 2.0 * batch * fin * fout
                print(f"  U={unit} batch={batch}: step GEMMs {flops * 1e-6:.1f} MFLOP in "
                      f"{step * 1e6:.0f} us ({flops / step * 1e-9:.1f} GFLOP/s); "
                      f"epoch GEMM-only {step * 60000 / batch:.3f} s")


if __name__ == "__main__":
    main()
