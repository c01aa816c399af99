"""bench/serve/peer_wsgi.py — the serving peer: the same MNIST MLP (model.npz
written by examples/mnist/train_mnist) behind a standard WSGI server
(gunicorn), with the same API as a kusari service:

  POST /score  {"data": [[784 floats], ...]} -> {"predictions": [...], "probabilities": [[...], ...]}
  GET  /health

PEER_BACKEND=torch (default) runs the forward with PyTorch (torch.no_grad,
one thread per worker), PEER_BACKEND=numpy with numpy. MODEL_NPZ names the
weights.

  MODEL_NPZ=outputs/model.npz gunicorn -w 2 -k gthread --threads 4 \
      -b 127.0.0.1:8001 --chdir bench/serve peer_wsgi:app
"""
import json
import os

import numpy as np

_m = np.load(os.environ["MODEL_NPZ"])
_P = {k: np.ascontiguousarray(_m[k], dtype=np.float32) for k in _m.files}
BACKEND = os.environ.get("PEER_BACKEND", "torch")
WIDTH = _P["l1/W"].shape[1]

if BACKEND == "torch":
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    _T = {k: torch.from_numpy(v) for k, v in _P.items()}

    def forward(x):
        with torch.no_grad():
            h = torch.relu(F.linear(torch.from_numpy(x), _T["l1/W"], _T["l1/b"]))
            h = torch.relu(F.linear(h, _T["l2/W"], _T["l2/b"]))
            y = F.linear(h, _T["l3/W"], _T["l3/b"])
            return y.argmax(1).tolist(), torch.softmax(y, 1).tolist()
else:
    def forward(x):
        h = np.maximum(x @ _P["l1/W"].T + _P["l1/b"], 0)
        h = np.maximum(h @ _P["l2/W"].T + _P["l2/b"], 0)
        y = h @ _P["l3/W"].T + _P["l3/b"]
        e = np.exp(y - y.max(1, keepdims=True))
        return y.argmax(1).tolist(), (e / e.sum(1, keepdims=True)).tolist()


def _answer(start_response, code, obj):
    body = json.dumps(obj).encode()
    start_response(code, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):
    path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
    if path == "/health":
        return _answer(start_response, "200 OK", {"status": "ok"})
    if path != "/score":
        return _answer(start_response, "404 Not Found", {"error": "no such path"})
    if method != "POST":
        return _answer(start_response, "405 Method Not Allowed", {"error": "use POST"})
    try:
        n = int(environ.get("CONTENT_LENGTH") or 0)
        x = np.asarray(json.loads(environ["wsgi.input"].read(n))["data"], dtype=np.float32)
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != WIDTH or not np.isfinite(x).all():
            raise ValueError("bad shape or values")
    except Exception as e:  # noqa: BLE001 - any bad input is a 400
        return _answer(start_response, "400 Bad Request", {"error": str(e)})
    pred, prob = forward(x)
    return _answer(start_response, "200 OK", {"predictions": pred, "probabilities": prob})
