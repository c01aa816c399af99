#!/usr/bin/python3
"""fuzz/make_corpus.py — writes the seed corpora of the fuzz targets under
fuzz/corpus/<target>/ (small, valid or nearly valid inputs, plus the
regression inputs of fixed bugs, named regress-*). Needs python3-numpy.
Run from anywhere: /usr/bin/python3 fuzz/make_corpus.py (Debian python3-numpy). Files the fuzzers found
(crash-* inputs turned into regressions) are kept by hand beside these."""
import gzip, io, json, os, struct, sys
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

def out(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def npz(arrays, compressed):
    b = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(b, **arrays)
    return b.getvalue()

# ---- npz: the keys of Chain{l1: Linear(3, 2), bn: BatchNormalization(2)} and Adam
f4 = np.float32
model = {"l1/W": np.arange(6, dtype=f4).reshape(2, 3), "l1/b": np.zeros(2, f4),
         "bn/gamma": np.ones(2, f4), "bn/beta": np.zeros(2, f4), "bn/avg_mean": np.zeros(2, f4),
         "bn/avg_var": np.ones(2, f4), "bn/N": np.array(3, np.int64)}
opt = {"t": np.array(2, np.int64), "epoch": np.array(1, np.int64)}
for k in ("l1/W", "l1/b", "bn/gamma", "bn/beta"):
    opt[k + "/t"] = np.array(2, np.int64)
    opt[k + "/m"] = np.zeros_like(model[k])
    opt[k + "/v"] = np.zeros_like(model[k])
out("fuzz_npz", "model-stored.npz", npz(model, False))
out("fuzz_npz", "model-deflate.npz", npz(model, True))
out("fuzz_npz", "adam.npz", npz(opt, True))
out("fuzz_npz", "dtypes.npz", npz({"a": np.arange(3, dtype=np.float64), "b": np.arange(4, dtype=np.int32).reshape(2, 2),
                                  "c": np.array(7, np.int64), "e": np.zeros((0, 3), f4)}, False))
# issue 18: a float64 counter far outside int64 (UBSan in npz_objects.c)
out("fuzz_npz", "regress-float-counter.npz", npz({"t": np.array(-7.8e298), "epoch": np.array(np.nan),
                                                  "bn/N": np.array(1e300), **{k: v for k, v in model.items() if k != "bn/N"}}, False))

# a zip directory claiming a 512 MB entry (and a .npy shape to match) in a
# 244-byte file: refused at open, before any allocation of that size
npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", 118) + \
      b"{'descr': '<f4', 'fortran_order': False, 'shape': (134217700,), }".ljust(117) + b"\n" + b"\0" * 8
b = io.BytesIO()
import zipfile
with zipfile.ZipFile(b, "w", zipfile.ZIP_STORED) as z:
    z.writestr(zipfile.ZipInfo("x.npy", date_time=(2026, 1, 1, 0, 0, 0)), npy)
forged = bytearray(b.getvalue())
for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
    struct.pack_into("<I", forged, forged.find(sig) + off, len(npy) - 8 + 536870800)
out("fuzz_npz", "regress-forged-size.npz", bytes(forged))

# ---- idx
def idx(ndims, dims, payload, typ=8):
    return bytes([0, 0, typ, ndims]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(payload)
img = idx(3, (3, 2, 3), range(0, 180, 10))
lab = idx(1, (3,), (7, 0, 9))
out("fuzz_idx", "images", img)
out("fuzz_idx", "labels", lab)
out("fuzz_idx", "images.gz", gzip.compress(img, mtime=0))
out("fuzz_idx", "labels.gz", gzip.compress(lab, mtime=0))
# issue 18: headers with huge dimensions (the reader allocated what they said)
out("fuzz_idx", "regress-huge-dims", idx(3, (1000000, 1000, 1000), range(18)))
out("fuzz_idx", "regress-huge-dims.gz", gzip.compress(idx(1, (4000000000,), (1, 2, 3)), mtime=0))

# ---- channel: 8 bytes of header tail, then 128-byte slots (src/run/channel_impl.h)
SLOT, HEADP, CONTP = 128, 88, 120
def record(kind, name, text=b"", step=-1, value=0.0, t=1.0):
    payload = name + b"\0" + text + b"\0"
    n = 1 if len(payload) <= HEADP else 1 + (len(payload) - HEADP + CONTP - 1) // CONTP
    head = struct.pack("<IIIIqdd", kind, n, len(name), len(text), step, value, t) + payload[:HEADP].ljust(HEADP, b"\0")
    rest = payload[HEADP:]
    conts = b""
    for i in range(n - 1):
        conts += struct.pack("<II", 3, 0) + rest[i * CONTP:(i + 1) * CONTP].ljust(CONTP, b"\0")
    return head + conts
def channel(slots, tail=None):
    if tail is None:
        tail = SLOT + len(slots)
    return struct.pack("<Q", tail) + slots
recs = record(1, b"loss", value=0.5) + record(1, b"accuracy", step=3, value=0.9) + record(2, b"note", b"x" * 300)
out("fuzz_channel", "records", channel(recs))
out("fuzz_channel", "unpublished-slot", channel(record(1, b"a") + b"\0" * SLOT + record(1, b"b")))
# issue 18: the last record's name length points past the end of the file
bad = bytearray(record(1, b"last"))
struct.pack_into("<I", bad, 8, 126)
out("fuzz_channel", "regress-name-past-end", channel(record(1, b"loss") + bytes(bad)))

# ---- model.json (the weights are in the target's model.npz: l1 4->3, l2 3->2, c1 1->2 3x3, bn 2)
mlp = {"format": "kusari-sequential/1", "input": [4],
       "layers": [{"type": "linear", "name": "l1", "in": 4, "out": 3, "nobias": False}, {"type": "relu"},
                  {"type": "linear", "name": "l2", "in": 3, "out": 2, "nobias": False}]}
out("fuzz_model_json", "mlp.json", json.dumps(mlp))
cnn = {"format": "kusari-sequential/1", "input": [1, 3, 4], "input_range": [0, 1],
       "input_preprocessing": "grayscale pixels / 255",
       "layers": [{"type": "convolution_2d", "name": "c1", "in": 1, "out": 2, "ksize": [3, 3], "stride": [1, 1],
                   "pad": [0, 0], "dilate": 1, "groups": 1, "nobias": False},
                  {"type": "batch_normalization", "name": "bn", "size": 2, "eps": 2e-5, "decay": 0.9},
                  {"type": "tanh"}, {"type": "max_pooling_2d", "ksize": [1, 1], "stride": [1, 1], "pad": [0, 0],
                                     "cover_all": True},
                  {"type": "linear", "name": "l1", "in": 4, "out": 3}, {"type": "sigmoid"}, {"type": "dropout"},
                  {"type": "linear", "name": "l2", "in": 3, "out": 2}, {"type": "log_softmax"}]}
out("fuzz_model_json", "cnn.json", json.dumps(cnn))
pool = {"format": "kusari-sequential/1", "root": "predictor", "input": [2, 2, 2],
        "layers": [{"type": "average_pooling_2d", "ksize": 2, "stride": 2, "pad": 0},
                   {"type": "deconvolution_2d", "name": "d", "in": 2, "out": 1, "ksize": 1, "outsize": [0, 0]}]}
out("fuzz_model_json", "root-pool.json", json.dumps(pool))

# ---- sweep files
sweep = {"experiment": "e", "description": "d",
         "run": {"source": ".", "entry": "train", "compute": "cpu", "arguments": ["--out", "./outputs"],
                 "environment": "env.json"},
         "sampling": {"type": "random", "seed": 7,
                      "space": {"--batchsize": {"choice": [128, 256]}, "--lr": {"loguniform": [-6, -1]},
                                "--units": {"randint": [50]}, "--m": {"quniform": [0, 1, 0.1]},
                                "--n": {"normal": [0, 1]}, "--q": {"qlognormal": [0, 1, 1]}}},
         "primary_metric": {"name": "Accuracy", "goal": "maximize"},
         "policy": {"type": "bandit", "evaluation_interval": 1, "slack_factor": 0.1, "delay_evaluation": 3},
         "max_total_runs": 8, "max_concurrent_runs": 4, "max_duration_minutes": 60}
out("fuzz_sweep", "random.json", json.dumps(sweep))
grid = dict(sweep, sampling={"type": "grid", "space": {"--a": {"choice": [1, 2, 3]}, "b": {"choice": ["x", "y"]}}},
            policy={"type": "median_stopping", "evaluation_interval": 2}, max_total_runs=6)
out("fuzz_sweep", "grid.json", json.dumps(grid))
bayes = dict(sweep, sampling={"type": "bayesian", "space": {"--lr": {"uniform": [0.001, 0.1]},
                                                           "--k": {"qloguniform": [0, 3, 1]}}},
             policy={"type": "truncation_selection", "truncation_percentage": 20}, warm_start=["e_1"])
out("fuzz_sweep", "bayesian.json", json.dumps(bayes))

# ---- scoring bodies: the first byte picks the width (1 + b % 8)
out("fuzz_score_body", "rows3", b"\x02" + b'{"data": [[1, 2.5, -3e-2], [0, 0, 1E+3]]}')
out("fuzz_score_body", "ws-and-escapes", b"\x01" + b' \t{ "data" :\n[ [ 1e38 ] , [-0.0] ] } ')
out("fuzz_score_body", "overflow", b"\x00" + b'{"data": [[3.5e38]]}')
