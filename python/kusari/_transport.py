"""The one way the SDK talks to a workspace: the kusari program's --json output.

A workspace served by ``kusari server`` is reached the same way: the program
talks HTTP to the server when KUSARI_TRACKING_URI is set, with the same
output, so everything above this class (which only calls ``json()``,
``text()`` and ``stream()``) works unchanged on either.
"""
import json
import os
import shutil
import subprocess
import sys

from .errors import KusariError


def _split_error(stderr):
    """('what was wrong', 'hint') from the program's 'kusari: error: ...' lines."""
    msg, hint = [], []
    for line in stderr.strip().splitlines():
        s = line.strip()
        if s.startswith("hint:"):
            hint.append(s[5:].strip())
        elif s.startswith("kusari: error:"):
            msg.append(s[len("kusari: error:"):].strip())
        elif hint:
            hint.append(s)
        elif s:
            msg.append(s)
    return " ".join(msg) or "the kusari program failed", " ".join(hint) or None


def is_server_url(s):
    """True for an http:// or https:// address (a tracking server)."""
    return isinstance(s, str) and s.lower().startswith(("http://", "https://"))


class CliTransport:
    """Runs the kusari program (found on PATH, or $KUSARI_BIN) on one workspace:
    a directory (passed as --workspace), or a tracking server's URL (passed as
    KUSARI_TRACKING_URI, with the token as KUSARI_TRACKING_TOKEN), for which
    the program gives the same output as for a local workspace."""

    def __init__(self, workspace=None, program=None, token=None):
        self.workspace = workspace
        self.token = token
        self.program = program or os.environ.get("KUSARI_BIN") or shutil.which("kusari")
        if not self.program:
            raise KusariError("cannot find the kusari program on PATH",
                              hint="install kusari (scripts/setup.sh), add its bin directory to PATH, or set KUSARI_BIN")
        self.env = None
        if is_server_url(workspace):
            self.env = dict(os.environ)
            self.env.pop("KUSARI_WORKSPACE", None)
            self.env["KUSARI_TRACKING_URI"] = workspace
            if token is not None:
                self.env["KUSARI_TRACKING_TOKEN"] = token

    def _argv(self, args):
        argv = [self.program]
        if self.workspace and self.env is None:
            argv += ["--workspace", self.workspace]
        return argv + [str(a) for a in args]

    def _run(self, args, check=True):
        try:
            p = subprocess.run(self._argv(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True, env=self.env)
        except OSError as e:
            raise KusariError("cannot run the kusari program %s: %s" % (self.program, e.strerror),
                              hint="check that it is installed and executable, or set KUSARI_BIN") from None
        if check and p.returncode != 0:
            raise KusariError(*_split_error(p.stderr))
        return p

    def text(self, *args):
        """stdout of 'kusari ARGS' (raises KusariError with its message on failure)."""
        return self._run(args).stdout

    def json(self, *args):
        """The parsed --json output of 'kusari ARGS --json'."""
        out = self.text(*(list(args) + ["--json"]))
        try:
            return json.loads(out)
        except ValueError:
            raise KusariError("the kusari program printed no JSON for '%s'" % " ".join(map(str, args)),
                              hint="is %s the kusari this package belongs to?" % self.program) from None

    def stream(self, *args, out=None):
        """Runs 'kusari ARGS', copying its stdout to out (default sys.stdout) as
        it comes; returns the exit status. stderr is copied to sys.stderr."""
        out = out or sys.stdout
        try:
            p = subprocess.Popen(self._argv(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, universal_newlines=True, bufsize=1, env=self.env)
        except OSError as e:
            raise KusariError("cannot run the kusari program %s: %s" % (self.program, e.strerror),
                              hint="check that it is installed and executable, or set KUSARI_BIN") from None
        for line in p.stdout:
            out.write(line)
            out.flush()
        err = p.stderr.read()
        rc = p.wait()
        return rc, err
