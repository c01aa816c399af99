"""Finds libkusari and binds its run client (kusari/run.h) with ctypes.

The run client is what writes a metric into the run's metrics channel: an
atomic add on the channel's tail and a release store of the record's kind
word (src/run/channel.c). Python has no atomic operations on shared memory,
so the package calls the C client rather than writing the channel itself;
see docs/PYTHON.md, "Why a binding".
"""
import ctypes
import ctypes.util
import glob
import os
import shutil

from .errors import KusariError

_SONAMES = ("libkusari.so.0", "libkusari.so")


def _candidates():
    """Paths to try, most explicit first."""
    env = os.environ.get("KUSARI_LIBRARY")
    if env:
        yield env
        return
    dirs = []
    # next to the kusari program that runs us: the platform puts its
    # directory first on PATH (installed: PREFIX/bin -> PREFIX/lib; build
    # tree: build/platform -> build)
    exe = shutil.which("kusari")
    if exe:
        bindir = os.path.dirname(os.path.realpath(exe))
        prefix = os.path.dirname(bindir)
        dirs += [os.path.join(prefix, "lib"), os.path.join(prefix, "lib64")]
        dirs += sorted(glob.glob(os.path.join(prefix, "lib", "*-linux-gnu*")))
        dirs.append(prefix)
    # next to this package when it is the installed copy (PREFIX/share/kusari/python)
    here = os.path.dirname(os.path.abspath(__file__))
    prefix = os.path.normpath(os.path.join(here, "..", "..", "..", ".."))
    dirs += [os.path.join(prefix, "lib"), os.path.join(prefix, "lib64"), prefix]
    for d in dirs:
        for so in _SONAMES:
            yield os.path.join(d, so)
    found = ctypes.util.find_library("kusari")
    if found:
        yield found


_lib = None


def library():
    """The loaded libkusari (a ctypes.CDLL), loading it on first use."""
    global _lib
    if _lib is not None:
        return _lib
    tried = []
    errors = []
    for path in _candidates():
        if path in tried:
            continue
        tried.append(path)
        if os.sep in path and not os.path.exists(path):
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            errors.append("%s: %s" % (path, e))
            continue
        _bind(lib)
        _lib = lib
        return lib
    msg = "cannot load libkusari, which the run client needs to log to this run"
    if errors:
        msg += " (" + "; ".join(errors) + ")"
    else:
        msg += " (looked in: %s)" % ", ".join(tried[:8])
    raise KusariError(msg, hint="install kusari (scripts/setup.sh), or set KUSARI_LIBRARY to the path of libkusari.so "
                            "(for a run: in its environment file's \"variables\")")


def _bind(lib):
    c = ctypes
    lib.ks_run_current.argtypes = []
    lib.ks_run_current.restype = c.c_void_p
    lib.ks_run_is_offline.argtypes = [c.c_void_p]
    lib.ks_run_is_offline.restype = c.c_int
    lib.ks_run_id.argtypes = [c.c_void_p]
    lib.ks_run_id.restype = c.c_char_p
    lib.ks_run_log_step.argtypes = [c.c_void_p, c.c_char_p, c.c_int64, c.c_double]
    lib.ks_run_log_step.restype = c.c_int
    lib.ks_run_log_list.argtypes = [c.c_void_p, c.c_char_p, c.POINTER(c.c_double), c.c_size_t]
    lib.ks_run_log_list.restype = c.c_int
    lib.ks_run_tag.argtypes = [c.c_void_p, c.c_char_p, c.c_char_p]
    lib.ks_run_tag.restype = c.c_int
    lib.ks_run_upload_file.argtypes = [c.c_void_p, c.c_char_p, c.c_char_p]
    lib.ks_run_upload_file.restype = c.c_int
    lib.ks_run_flush.argtypes = [c.c_void_p]
    lib.ks_run_flush.restype = c.c_int
    lib.ks_error_last.argtypes = []
    lib.ks_error_last.restype = c.c_char_p


def log_step_fast(lib):
    """ks_run_log_step for Run.log's fast path, the cheapest ctypes call:
    through PyDLL (the GIL stays held: the call only writes to shared
    memory, so releasing and retaking the GIL would cost more than the call)
    and without argtypes, so ctypes runs no converters. The caller passes
    exactly (c_void_p, bytes, c_int64, c_double)."""
    fn = ctypes.PyDLL(lib._name, handle=lib._handle).ks_run_log_step
    fn.restype = ctypes.c_int
    return fn


def last_error(lib):
    msg = lib.ks_error_last()
    return msg.decode("utf-8", "replace") if msg else "unknown error"
