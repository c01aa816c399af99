#!/usr/bin/env python3
"""bench/python_log.py — the cost of Run.log from CPython (docs/PYTHON.md).

Connects the kusari package to a fresh metrics channel as a run's script is
connected (KUSARI_RUN_ID, KUSARI_METRICS_CHANNEL; the channel is created with
libkusari's ks_run_channel_create), times N run.log calls per repetition,
and checks that the channel holds every record. With --mlflow it also times
N mlflow.log_metric calls into a file store (mlflow must be importable: see
bench/RESULTS.md for the venv) in a temp directory.

  python3 bench/python_log.py [--calls 100000] [--reps 5] [--mlflow] [--mlflow-calls N]
                              [--package DIR]

--package DIR times the kusari package in DIR (a directory holding kusari/)
instead of the repository's python/: to compare two versions of the client
on one machine at one time, e.g. one exported with
`git archive REV python | tar -x -C /tmp/old` (then --package /tmp/old/python).

Run it from the repository with a build in build/ (or set KUSARI_LIBRARY).
"""
import argparse
import ctypes
import os
import platform
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_pkg = os.path.join(HERE, "..", "python")
if "--package" in sys.argv[:-1]:            # before the import of kusari below
    _pkg = sys.argv[sys.argv.index("--package") + 1]
sys.path.insert(0, os.path.abspath(_pkg))
if "KUSARI_LIBRARY" not in os.environ:
    cand = os.path.join(HERE, "..", "build", "libkusari.so.0")
    if os.path.exists(cand):
        os.environ["KUSARI_LIBRARY"] = os.path.abspath(cand)


def channel_records(lib, path):
    """Records in the channel (every record here is one 128-byte slot)."""
    counter = ctypes.c_long(0)
    CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)

    def cb(ctx, rec):
        counter.value += 1
        return 0
    off = ctypes.c_uint64(0)
    lib.ks_run_channel_read.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint64), ctypes.c_int, CB, ctypes.c_void_p]
    rc = lib.ks_run_channel_read(os.fsencode(path), ctypes.byref(off), 1, CB(cb), None)
    if rc != 0:
        raise SystemExit("reading the channel failed: %d" % rc)
    return counter.value


def bench_kusari(calls, reps, tmp):
    from kusari import _native
    lib = _native.library()
    lib.ks_run_channel_create.argtypes = [ctypes.c_char_p]
    path = os.path.join(tmp, "channel")
    if lib.ks_run_channel_create(os.fsencode(path)) != 0:
        raise SystemExit("cannot create a channel: %s" % _native.last_error(lib))
    os.environ["KUSARI_RUN_ID"] = "bench_1"
    os.environ["KUSARI_METRICS_CHANNEL"] = path
    from kusari import Run
    run = Run.get_context()
    assert not run.offline, "the run client did not connect"
    times, cpus = [], []
    for r in range(reps):
        log = run.log
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(calls):
            log("loss", i * 0.5)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        print("kusari run.log      rep %d: %d calls %.3f s wall, %.3f s CPU (%.0f ns/call wall)"
              % (r + 1, calls, times[-1], cpus[-1], times[-1] / calls * 1e9))
    n = channel_records(lib, path)
    if n != calls * reps:
        raise SystemExit("the channel holds %d records, expected %d" % (n, calls * reps))
    print("kusari run.log      median %.3f s wall, %.3f s CPU per %d calls; min %.3f s wall; the channel holds all %d records"
          % (statistics.median(times), statistics.median(cpus), calls, min(times), n))


def bench_mlflow(calls, reps, tmp):
    try:
        import mlflow
    except ImportError:
        print("mlflow is not importable here: no comparison (see bench/RESULTS.md)")
        return
    # mlflow 3 refuses the file store unless told (it wants a database now);
    # the file store is the comparison the issue asks for
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri("file://" + os.path.join(tmp, "mlruns"))
    mlflow.set_experiment("bench")
    times = []
    with mlflow.start_run():
        for r in range(reps):
            t0 = time.perf_counter()
            for i in range(calls):
                mlflow.log_metric("loss", i * 0.5, step=r * calls + i)
            times.append(time.perf_counter() - t0)
            print("mlflow.log_metric   rep %d: %d calls %.3f s (%.0f µs/call)" % (r + 1, calls, times[-1], times[-1] / calls * 1e6))
    print("mlflow %s file store: median %.3f s per %d calls (%.1f s per 100,000 at that rate)"
          % (mlflow.__version__, statistics.median(times), calls, statistics.median(times) / calls * 1e5))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=100000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--mlflow", action="store_true", help="also time mlflow.log_metric with a file store")
    ap.add_argument("--mlflow-calls", type=int, default=10000)
    ap.add_argument("--mlflow-reps", type=int, default=3)
    ap.add_argument("--package", default=_pkg, help="the directory holding the kusari package (default: python/)")
    a = ap.parse_args()
    print("python %s on %s, %s" % (platform.python_version(), platform.machine(), platform.processor() or platform.platform()))
    import kusari
    print("kusari package:", os.path.dirname(kusari.__file__))
    with tempfile.TemporaryDirectory(prefix="kusari-bench-") as tmp:
        bench_kusari(a.calls, a.reps, tmp)
        if a.mlflow:
            bench_mlflow(a.mlflow_calls, a.mlflow_reps, tmp)


if __name__ == "__main__":
    main()
