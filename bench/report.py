#!/usr/bin/env python3
"""bench/report.py LOG.jsonl — table of an MLP benchmark run (bench/run.sh):
per config and thread count, the median over repetitions of each contestant's
median seconds per epoch, its ratio to kusari (>1: kusari is faster), CPU
seconds per epoch (user + system of the process: the steady figure for one
thread on a shared machine; counts spinning on two), peak RSS, test accuracy,
for kusari the fraction of the measured sgemm peak and its epoch time over
the GEMM-only epoch measured right after it in the same process (the step's
eight products alone: how close the whole step comes to the machine's GEMM
limit, a ratio the machine's drift moves far less than either time), and the
range of the machine's load average over the runs. kusari-dp is kusari's
data-parallel step (bench_mlp --replicas)."""
import json
import statistics
import sys
from collections import defaultdict

rows = defaultdict(list)
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    d = json.loads(line)
    rows[(d["unit"], d["batch"], d["threads"], d["peer"])].append(d)

configs = sorted({k[:3] for k in rows})
print(f"{'config':<22}{'who':<10}{'s/epoch':>9}{'vs kusari':>11}{'CPU s':>8}{'RSS MB':>9}{'test acc':>10}"
      f"{'GEMM frac':>11}{'/GEMM-only':>12}  runs  load")
for cfg in configs:
    unit, batch, threads = cfg
    k = rows.get(cfg + ("kusari",))
    base = statistics.median(r["median_epoch_s"] for r in k) if k else None
    for who in ["kusari", "kusari-dp", "numpy", "torch", "chainer"]:
        rs = rows.get(cfg + (who,))
        if not rs:
            continue
        med = statistics.median(r["median_epoch_s"] for r in rs)
        rss = max(r["peak_rss_mb"] for r in rs)
        acc = statistics.median(r["test_accuracy"] for r in rs)
        ratio = f"{med / base:.2f}x" if base else "-"
        mine = who.startswith("kusari")
        frac = statistics.median(r["gemm_fraction"] for r in rs) if mine else None
        overs = [r["median_step_over_gemm"] for r in rs if "median_step_over_gemm" in r]
        over = f"{statistics.median(overs):.2f}" if overs else ""
        cpus = [r["median_epoch_cpu_s"] for r in rs if "median_epoch_cpu_s" in r]
        cpu = f"{statistics.median(cpus):.3f}" if cpus else "-"
        loads = [r["load1"] for r in rs if "load1" in r]
        load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"
        name = f"U={unit} b={batch} T={threads}"
        print(f"{name:<22}{who:<10}{med:>9.3f}{ratio:>11}{cpu:>8}{rss:>9.0f}{acc:>10.4f}"
              f"{(f'{frac:.2f}' if frac is not None else ''):>11}{over:>12}  {len(rs):>4}  {load}")
