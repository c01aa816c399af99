#!/usr/bin/env python3
"""bench/scale/scale.py — the tracking server at scale (issue 12 §5), through
its HTTP API, for kusari's server or MLflow's tracking server alike.

  scale.py seed   --kind mlflow --url URL --runs N          (MLflow only: kusari is
                                                               seeded by bench_search)
  scale.py big    --kind K --url URL --points 1000000       one run with a 1M-point series
  scale.py reads  --kind K --url URL --reps 21              list / run page / series timings
  scale.py ingest --kind K --url URL --clients 50 --seconds 60 --pid PID

Standard library only. Every timing is a client-side wall time over
loopback (an upper bound of the server's time), the median of --reps
requests on a kept-alive connection. The data set is bench_search's: 10
params (p0..p4 numbers, p5..p9 words), 5 metrics (m0..m4) x 100 steps per
run, experiments bench-a and bench-b, tag kind.
"""
import argparse
import http.client
import json
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
import urllib.parse


def val(run, metric, step):
    """bench_search's deterministic value in [0, 1)."""
    x = (run * 2654435761 ^ (metric + 1) * 40503 ^ (step + 1) * 2246822519) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 2246822519) & 0xFFFFFFFF
    x ^= x >> 13
    return (x % 1000000) / 1e6


class Client:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def req(self, method, path, body=None):
        for attempt in range(3):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
                hdr = {"Content-Type": "application/json"} if body is not None else {}
                self.conn.request(method, path, body=body, headers=hdr)
                r = self.conn.getresponse()
                data = r.read()
                if r.status >= 400:
                    raise RuntimeError("%s %s: %d %s" % (method, path, r.status, data[:300]))
                return json.loads(data) if data else None
            except (ConnectionError, http.client.HTTPException, OSError):
                self.conn = None
                if attempt == 2:
                    raise
                time.sleep(0.2)

    def get(self, path, **q):
        return self.req("GET", path + ("?" + urllib.parse.urlencode(q) if q else ""))

    def post(self, path, obj):
        return self.req("POST", path, json.dumps(obj))


# --- the two servers' APIs -------------------------------------------------

class Kusari:
    A = "/api/v1/"

    def __init__(self, url):
        self.c = Client(url)

    def list_page(self):
        return self.c.get(self.A + "runs", experiment="bench-a", filter="metrics.m0 > 0.5 and params.p0 = 7",
                          order_by="metrics.m1 DESC", max_results=50)["runs"]

    def any_run(self):
        return self.c.get(self.A + "runs", experiment="bench-a", max_results=1)["runs"][0]["id"]

    def run_page(self, rid):
        """What the web UI's run page loads: the run, its metrics' latest
        values, and each metric's series (downsampled to 1,000 points)."""
        self.c.get(self.A + "runs/" + rid)
        names = self.c.get(self.A + "runs/" + rid + "/metrics")
        for n in ["m0", "m1", "m2", "m3", "m4"]:
            self.c.get(self.A + "runs/%s/metrics/%s" % (rid, n), max_points=1000)
        return names

    def series(self, rid, name):
        return self.c.get(self.A + "runs/%s/metrics/%s" % (rid, name), max_points=1000)

    def new_run(self, exp):
        return None  # kusari's API creates runs by submitting them: ingest goes to seeded runs

    def ingest_target(self, i):
        """The i-th queued seeded run (of bench-a) (seeded with batch offset 1;
        the big series goes to the 199th, the ingestion clients to 0..49)."""
        runs = self.c.get(self.A + "runs", experiment="bench-a", status="Queued", max_results=200)["runs"]
        return runs[i % len(runs)]["id"]

    def log(self, rid, name, steps, off):
        pts = [{"name": name, "value": (s % 1000) / 1000.0, "step": s} for s in steps]
        self.c.post(self.A + "runs/%s/metrics" % rid, {"from": off, "to": off + 1, "points": pts})


class MLflow:
    A = "/api/2.0/mlflow/"

    def __init__(self, url):
        self.c = Client(url)
        self._exp = {}

    def exp(self, name):
        for _ in range(3):
            if name in self._exp:
                break
            try:
                self._exp[name] = self.c.get(self.A + "experiments/get-by-name", experiment_name=name)["experiment"]["experiment_id"]
            except RuntimeError:
                try:
                    self._exp[name] = self.c.post(self.A + "experiments/create", {"name": name})["experiment_id"]
                except RuntimeError:  # another client made it first
                    pass
        return self._exp[name]

    def list_page(self):
        return self.c.post(self.A + "runs/search", {"experiment_ids": [self.exp("bench-a")],
                                                    "filter": "metrics.m0 > 0.5 and params.p0 = '7'",
                                                    "order_by": ["metrics.m1 DESC"], "max_results": 50}).get("runs", [])

    def any_run(self):
        return self.c.post(self.A + "runs/search", {"experiment_ids": [self.exp("bench-a")],
                                                    "max_results": 1})["runs"][0]["info"]["run_id"]

    def run_page(self, rid):
        """What MLflow's run page loads: the run (with its latest metrics and
        params) and each metric's history, sampled by the server to 1,000
        points (get-history-bulk-interval, what its charts use)."""
        r = self.c.get(self.A + "runs/get", run_id=rid)
        for n in ["m0", "m1", "m2", "m3", "m4"]:
            self.series(rid, n)
        return r

    def series(self, rid, name):
        return self.c.get("/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval", run_ids=rid, metric_key=name,
                          max_results=1000)

    def new_run(self, exp):
        return self.c.post(self.A + "runs/create", {"experiment_id": self.exp(exp),
                                                    "start_time": int(time.time() * 1000)})["run"]["info"]["run_id"]

    def ingest_target(self, i):
        return self.new_run("ingest")

    def log(self, rid, name, steps, off):
        now = int(time.time() * 1000)
        self.c.post(self.A + "runs/log-batch", {"run_id": rid, "metrics": [
            {"key": name, "value": (s % 1000) / 1000.0, "step": s, "timestamp": now} for s in steps]})


def api(kind, url):
    return Kusari(url) if kind == "kusari" else MLflow(url)


# --- commands --------------------------------------------------------------

def seed_part(args, lo, hi, out):
    m = MLflow(args.url)
    for r in range(lo, hi):
        rid = m.new_run("bench-a" if r % 2 else "bench-b")
        params = []
        for k in range(10):
            v = str((r * (k + 3) + k) % (20 if k == 0 else 1000)) if k < 5 else "v%d" % ((r + k) % 10)
            params.append({"key": "p%d" % k, "value": v})
        metrics = [{"key": "m%d" % mm, "value": val(r, mm, t), "step": t, "timestamp": t}
                   for mm in range(5) for t in range(100)]
        m.c.post(m.A + "runs/log-batch", {"run_id": rid, "params": params, "metrics": metrics[:1000],
                                          "tags": [{"key": "kind", "value": "base" if r % 3 else "special"}]})
        if r % 2 == 0:
            m.c.post(m.A + "runs/update", {"run_id": rid, "status": "FINISHED", "end_time": int(time.time() * 1000)})
    out.put(hi - lo)


def cmd_seed(args):
    t0 = time.time()
    m = MLflow(args.url)
    m.exp("bench-a"), m.exp("bench-b")
    q = mp.Queue()
    per = (args.runs + args.procs - 1) // args.procs
    ps = [mp.Process(target=seed_part, args=(args, i * per, min(args.runs, (i + 1) * per), q)) for i in range(args.procs)]
    for p in ps:
        p.start()
    n = sum(q.get() for _ in ps)
    for p in ps:
        p.join()
    dt = time.time() - t0
    print("seed mlflow: %d runs x (10 params + 500 points + 1 tag) through the REST API in %.0f s (%.0f points/s)"
          % (n, dt, n * 500 / dt))


def cmd_big(args):
    """One run with --points points of metric 'big', in batches of 1,000."""
    a = api(args.kind, args.url)
    rid = a.new_run("big") if args.kind == "mlflow" else a.ingest_target(199)
    t0 = time.time()
    off = 1
    for s in range(0, args.points, 1000):
        a.log(rid, "big", range(s, min(args.points, s + 1000)), off)
        off += 1
    dt = time.time() - t0
    print("big %s: %d points into run %s in %.1f s (%.0f points/s, one client)" % (args.kind, args.points, rid, dt,
                                                                                 args.points / dt))
    with open(args.id_file, "w") as f:
        f.write(rid)


def timed(label, fn, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    print("  %-52s median %8.1f ms  min %8.1f ms  max %8.1f ms" % (label, statistics.median(ts), min(ts), max(ts)))
    return statistics.median(ts)


def cmd_reads(args):
    a = api(args.kind, args.url)
    big = open(args.id_file).read().strip()
    rid = a.any_run()
    n = len(a.list_page())
    print("%s (%s), %d reps each:" % (args.kind, args.label, args.reps))
    res = {"list": timed("runs list: page 1, filter metric+param, order metric (%d)" % n, a.list_page, args.reps),
           "run_page": timed("run page: run + 5 series (100 points each)", lambda: a.run_page(rid), args.reps),
           "series": timed("the big series downsampled to <= 1,000 points", lambda: a.series(big, "big"), args.reps)}
    pts = a.series(big, "big")
    npts = len(pts.get("points", [])) if args.kind == "kusari" else len(pts.get("metrics", []))
    print("  (the downsampled series came back with %d points)" % npts)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f)


def rss_kb(pid):
    """RSS of pid and its descendants (MLflow's server is a tree of processes)."""
    total = 0
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    todo = [pid]
    while todo:
        p = todo.pop()
        todo += kids.get(p, [])
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def ingest_proc(args, first, count, stop_at, out):
    a_s = []
    counts = [0] * count
    errors = [0]

    def client(j):
        a = api(args.kind, args.url)
        rid = a.ingest_target(first + j)
        off, step = 1, 0
        name = "ingest%d" % (first + j)
        while time.time() < stop_at:
            try:
                a.log(rid, name, range(step, step + args.batch), off)
                counts[j] += args.batch
            except Exception:  # noqa: BLE001 (counted, reported)
                errors[0] += 1
            off += 1
            step += args.batch

    ths = [threading.Thread(target=client, args=(j,)) for j in range(count)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    out.put((sum(counts), errors[0]))


def cmd_ingest(args):
    per = (args.clients + args.procs - 1) // args.procs
    t0 = time.time()
    stop_at = t0 + args.seconds
    q = mp.Queue()
    ps = []
    for i in range(args.procs):
        n = min(per, args.clients - i * per)
        if n > 0:
            ps.append(mp.Process(target=ingest_proc, args=(args, i * per, n, stop_at, q)))
    if args.kind == "mlflow":
        MLflow(args.url).exp("ingest")
    rss0 = rss_kb(args.pid)
    for p in ps:
        p.start()
    samples = []
    while time.time() < stop_at:
        time.sleep(min(5, max(0.1, stop_at - time.time())))
        samples.append(rss_kb(args.pid))
    got = [q.get() for _ in ps]
    for p in ps:
        p.join()
    dt = time.time() - t0
    pts = sum(g[0] for g in got)
    errs = sum(g[1] for g in got)
    print("ingest %s (%s): %d clients x batches of %d for %.0f s: %d points, %.0f points/s, %d failed requests; "
          "server RSS %.0f MB before, %.0f MB max, %.0f MB at the end"
          % (args.kind, args.label, args.clients, args.batch, dt, pts, pts / dt, errs, rss0 / 1024,
             max(samples or [0]) / 1024, (samples or [0])[-1] / 1024))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["seed", "big", "reads", "ingest"])
    ap.add_argument("--kind", choices=["kusari", "mlflow"], default="kusari")
    ap.add_argument("--url", required=True)
    ap.add_argument("--label", default="")
    ap.add_argument("--runs", type=int, default=10000)
    ap.add_argument("--points", type=int, default=1000000)
    ap.add_argument("--reps", type=int, default=21)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--pid", type=int, default=0)
    ap.add_argument("--id-file", default="big.id")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    {"seed": cmd_seed, "big": cmd_big, "reads": cmd_reads, "ingest": cmd_ingest}[args.cmd](args)


if __name__ == "__main__":
    main()
