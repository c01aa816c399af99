"""Run: one run of an experiment.

Two ways to get one, as in Azure ML:

- ``Run.get_context()`` inside a training script: the run this process
  belongs to, for logging (``log``, ``log_list``, ``log_row``, ``tag``,
  ``upload_file``). Outside a run it is an offline run that checks its
  arguments and records nothing, like libkusari's C client.
- ``Experiment.submit(config)`` or ``Run(experiment, run_id)``: a handle on a
  run in a workspace, to follow and query it (``wait_for_completion``,
  ``get_metrics``, ``get_file_names``, ``download_file``, ``register_model``,
  ...) through the workspace's transport (the kusari program).
"""
import ctypes
import math
import numbers
import os
import sys

from . import _native
from .errors import KusariError

_NAME_MAX = 255
_TEXT_MAX = 65536


def _name_bytes(what, name):
    if not isinstance(name, str):
        raise TypeError("%s: name must be a str, got %s" % (what, type(name).__name__))
    b = name.encode("utf-8")
    if not 0 < len(b) <= _NAME_MAX or b"\0" in b:
        raise ValueError("%s: name must be 1..%d bytes without NUL, got %r" % (what, _NAME_MAX, name))
    return b


def _value(what, name, value):
    if isinstance(value, float):
        return value
    if isinstance(value, numbers.Real):      # int, bool, numpy scalars, Fraction, ...
        return float(value)
    if hasattr(value, "__float__") and not isinstance(value, (str, bytes, bytearray)):
        try:                                  # 0-d arrays, tensors with one value
            return float(value)
        except (TypeError, ValueError):
            pass
    raise TypeError("%s: value of '%s' must be a number, got %s" % (what, name, type(value).__name__))


def _step(what, step):
    if step is None:
        return -1
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError("%s: step must be a non-negative integer or None, got %r" % (what, step))
    return int(step)


class Run:
    """A run. See the module's docstring."""

    _context = None

    def __init__(self, experiment, run_id, _live=None):
        self._experiment = experiment
        self._id = run_id
        self._lib = None
        self._h = None           # the C client's ks_run* (None: offline or not this process's run)
        self._names = {}         # metric name -> its UTF-8 bytes, checked once
        if _live is not None:
            self._lib, self._h = _live
            self._h = ctypes.c_void_p(self._h)
            self.log = self._fast_log()

    def _fast_log(self):
        """Run.log for a connected run, as a closure: its common case (a
        float, no step, a name seen before) reads only locals and makes one
        ctypes call with ready-made arguments (_native.log_step_fast); the
        rest goes to Run.log."""
        fn = _native.log_step_fast(self._lib)
        h, names, double, nxt = self._h, self._names, ctypes.c_double, ctypes.c_int64(-1)
        full = Run.log.__get__(self)

        def log(name, value, step=None):
            if step is None and value.__class__ is float:
                try:
                    b = names[name]
                except (KeyError, TypeError):
                    return full(name, value, step)
                if fn(h, b, nxt, double(value)):
                    self._check(-1)
                return None
            return full(name, value, step)
        log.__doc__ = Run.log.__doc__
        return log

    # -- the run of this process ------------------------------------------
    @classmethod
    def get_context(cls, allow_offline=True):
        """The run this process belongs to (one object per process).

        Inside a run started by kusari (KUSARI_RUN_ID and
        KUSARI_METRICS_CHANNEL set) it loads libkusari and logs to the run's
        metrics channel; a missing libkusari raises KusariError. Outside a
        run it returns an offline run (or raises KusariError when
        allow_offline is False)."""
        ctx = cls._context
        if ctx is None or ctx._pid != os.getpid():
            ctx = cls._connect()
            cls._context = ctx
        if ctx._h is None and not allow_offline:
            raise KusariError("not inside a kusari run (KUSARI_RUN_ID is not set)",
                              hint="submit the script with 'kusari run submit', or call get_context() without allow_offline=False")
        return ctx

    @classmethod
    def _connect(cls):
        rid = os.environ.get("KUSARI_RUN_ID", "")
        channel = os.environ.get("KUSARI_METRICS_CHANNEL", "")
        live = None
        exp = None
        if rid and channel:
            lib = _native.library()
            h = lib.ks_run_current()
            if not lib.ks_run_is_offline(h):   # else the C client said why on stderr
                live = (lib, h)
                rid = lib.ks_run_id(h).decode("utf-8")
                from .workspace import Experiment, Workspace
                ws = Workspace(os.environ.get("KUSARI_WORKSPACE") or os.environ.get("KUSARI_TRACKING_URI"))
                exp = Experiment(ws, os.environ.get("KUSARI_EXPERIMENT", ""))
        run = cls(exp, rid if live else "", _live=live)
        run._pid = os.getpid()
        return run

    @property
    def id(self):
        """The run id ("" for an offline run)."""
        return self._id

    @property
    def experiment(self):
        """The run's Experiment (None for an offline run)."""
        return self._experiment

    @property
    def offline(self):
        """True when this is an offline run (logging records nothing)."""
        return self._h is None and self._experiment is None

    def __repr__(self):
        if self.offline:
            return "Run(offline)"
        return "Run(id=%r, experiment=%r)" % (self._id, self._experiment.name)

    # -- logging -----------------------------------------------------------
    def _check(self, rc):
        if rc != 0:
            raise KusariError(_native.last_error(self._lib))

    def _writer(self, what):
        if self._h is None and self._experiment is not None:
            raise KusariError("%s: run %s is not the run of this process; only a run's own "
                              "script logs to it" % (what, self._id),
                              hint="log from the training script with Run.get_context()")
        return self._h

    def log(self, name, value, step=None):
        """Appends value to metric name (step: None = the next step of name)."""
        # (inside a run, self.log is _fast_log's closure, which comes here
        # for anything but a float with no step and a known name)
        b = self._name(name)
        value = _value("log", name, value)
        step = _step("log", step)
        if self._h is None:
            self._writer("log")
            return
        self._check(self._lib.ks_run_log_step(self._h, b, step, value))

    def _name(self, name):
        b = _name_bytes("log", name)
        self._names[name] = b
        return b

    def log_list(self, name, values):
        """Logs the values as consecutive steps of metric name."""
        b = _name_bytes("log_list", name)
        vals = [_value("log_list", name, v) for v in values]
        h = self._h
        if h is None:
            self._writer("log_list")
            return
        arr = (ctypes.c_double * len(vals))(*vals)
        self._check(self._lib.ks_run_log_list(h, b, arr, len(vals)))

    def log_row(self, name, **cols):
        """Logs one row of table name: each column as metric 'name/column',
        so rows with the same columns share steps."""
        _name_bytes("log_row", name)
        if not cols:
            raise ValueError("log_row: '%s' needs at least one column, e.g. log_row(%r, epoch=1, loss=0.3)" % (name, name))
        full = {}
        for col, v in cols.items():
            n = "%s/%s" % (name, col)
            full[n] = (_name_bytes("log_row", n), _value("log_row", n, v))
        h = self._h
        if h is None:
            self._writer("log_row")
            return
        for n, (b, v) in full.items():
            self._check(self._lib.ks_run_log_step(h, b, -1, v))

    def tag(self, key, value=None):
        """Sets tag key=value on the run (value: str, or anything str() makes text of)."""
        kb = _name_bytes("tag", key)
        text = "" if value is None else value if isinstance(value, str) else str(value)
        vb = text.encode("utf-8")
        if len(vb) > _TEXT_MAX or b"\0" in vb:
            raise ValueError("tag: value of '%s' must be at most %d bytes without NUL" % (key, _TEXT_MAX))
        h = self._h
        if h is None:
            self._writer("tag")
            return
        self._check(self._lib.ks_run_tag(h, kb, vb))

    def set_tags(self, tags):
        """Sets several tags: a dict of key -> value."""
        for k, v in dict(tags).items():
            self.tag(k, v)

    def upload_file(self, name, path_or_stream):
        """Copies a local file into the run's files as name (e.g. 'outputs/plot.png')."""
        if not isinstance(name, str) or not name:
            raise TypeError("upload_file: name must be a non-empty str, got %r" % (name,))
        path = os.fspath(path_or_stream)
        h = self._h
        if h is None:
            self._writer("upload_file")
            if not os.path.isfile(path):
                raise FileNotFoundError("upload_file: cannot open %s" % path)
            parts = name.split("/")
            if name.startswith("/") or any(p in ("", ".", "..") for p in parts):
                raise ValueError("upload_file: name '%s' must be a relative path without empty, '.' or '..' parts" % name)
            return
        self._check(self._lib.ks_run_upload_file(h, name.encode("utf-8"), os.fsencode(path)))

    def flush(self):
        """Everything logged is already durable (shared pages of the channel file)."""
        if self._h is not None:
            self._check(self._lib.ks_run_flush(self._h))

    def complete(self):
        """Nothing to do: the platform ends the run when its script exits."""
        self.flush()

    # -- following and querying a run (through the workspace's transport) --
    def _t(self, what):
        if self._experiment is None:
            raise KusariError("%s: an offline run has no workspace to ask" % what,
                              hint="submit the script with 'kusari run submit', or use Run(experiment, run_id)")
        return self._experiment.workspace.transport

    def get_details(self):
        """The run as 'kusari run show --json' describes it (a dict)."""
        return self._t("get_details").json("run", "show", self._id)

    def get_status(self):
        """Queued, Preparing, Running, Finalizing, Completed, Failed or Canceled."""
        return self.get_details()["status"]

    def get_tags(self):
        return self.get_details().get("tags") or {}

    def wait_for_completion(self, show_output=False, raise_on_error=True):
        """Waits until the run ends (streaming its output with show_output);
        returns get_details(). A Failed or Canceled run raises KusariError
        unless raise_on_error is False."""
        t = self._t("wait_for_completion")
        args = ["run", "wait", self._id] + (["--show-output"] if show_output else [])
        if show_output:
            rc, err = t.stream(*args)
        else:
            p = t._run(args, check=False)
            rc, err = p.returncode, p.stderr
        if rc not in (0, 1):
            from ._transport import _split_error
            raise KusariError(*_split_error(err))
        details = self.get_details()
        if raise_on_error and details["status"] != "Completed":
            raise KusariError("run %s ended %s: %s" % (self._id, details["status"], details.get("error") or "see its logs"),
                              hint="'kusari run logs %s' shows its output" % self._id)
        return details

    def get_metrics(self, name=None):
        """{metric: value} for metrics logged once, {metric: [values by step]}
        for the others (only name with name=)."""
        args = ["run", "metrics", self._id] + (["--name", name] if name else [])
        res = {}
        for n, rows in self._t("get_metrics").json(*args).items():
            vals = [float(r["value"]) if isinstance(r["value"], str) else r["value"] for r in rows]
            res[n] = vals[0] if len(vals) == 1 else vals
        return res

    def get_file_names(self):
        """Paths of the run's files (outputs/..., logs/..., uploads)."""
        return [f["path"] for f in self._t("get_file_names").json("run", "files", self._id)]

    def download_file(self, name, output_file_path=None):
        """Downloads run file name to output_file_path (a file path, or a
        directory to put it in; default: its base name here)."""
        t = self._t("download_file")
        dest = output_file_path or os.path.basename(name)
        if os.path.isdir(dest):
            dest = os.path.join(dest, os.path.basename(name))
        import shutil
        import tempfile
        tmp = tempfile.mkdtemp(prefix="kusari-dl-", dir=os.path.dirname(os.path.abspath(dest)))
        try:
            t.text("run", "download", self._id, name, "--to", tmp)
            got = os.path.join(tmp, name)
            if not os.path.isfile(got):
                raise KusariError("run %s has no file %s (it is a folder: use download_files)" % (self._id, name))
            os.replace(got, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest

    def download_files(self, prefix="outputs", output_directory="."):
        """Downloads every run file under prefix into output_directory, keeping paths."""
        self._t("download_files").text("run", "download", self._id, prefix, "--to", output_directory)
        return output_directory

    def register_model(self, model_name, model_path, tags=None, description=None):
        """Registers run file or folder model_path as a new version of
        model_name; returns its Model."""
        args = ["model", "register", "--name", model_name, "--run", self._id, "--path", model_path]
        for k, v in (tags or {}).items():
            args += ["--tag", "%s=%s" % (k, v)]
        if description:
            args += ["--description", description]
        last = self._t("register_model").text(*args).strip().splitlines()[-1]
        name, _, version = last.rpartition(":")
        from .compute import Model
        return Model(self._experiment.workspace, name, int(version))

    def cancel(self):
        self._t("cancel").text("run", "cancel", self._id)
