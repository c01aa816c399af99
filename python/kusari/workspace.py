"""Workspace, Experiment and ScriptRunConfig: the SDK's nouns over a transport
(the kusari program's --json output; see _transport.py)."""
import json
import os
import tempfile

from ._transport import CliTransport, is_server_url
from .errors import KusariError


class Workspace:
    """A kusari workspace: a directory with kusari.db, or the URL of a
    `kusari server` that serves one (``Workspace("http://host:8080",
    auth_token="...")``; the program then works over HTTP, and commands the
    server does not offer yet fail with the program's message)."""

    def __init__(self, path=None, auth_token=None, _transport=None):
        if is_server_url(path):
            self._path = path.rstrip("/")
        else:
            self._path = os.path.abspath(path) if path else None
        self._token = auth_token
        self._transport = _transport

    @classmethod
    def from_config(cls, path=None, auth_token=None):
        """The workspace the kusari program would use here: path when given (a
        directory or a server URL), else the one `kusari workspace show`
        names: $KUSARI_WORKSPACE, $KUSARI_TRACKING_URI, a server saved by
        `kusari workspace connect`, the .kusari/config.json found going up
        from the current directory, or the default one."""
        t = CliTransport(path, token=auth_token)
        info = t.json("workspace", "show")
        if "server" in info:            # served by a tracking server
            return cls(info["server"], auth_token=auth_token,
                       _transport=CliTransport(info["server"], t.program, token=auth_token))
        return cls(info["path"], _transport=CliTransport(info["path"], t.program))

    @property
    def is_remote(self):
        """True when this workspace is a tracking server's."""
        return is_server_url(self._path)

    @property
    def transport(self):
        if self._transport is None:
            self._transport = CliTransport(self._path, token=self._token)
        return self._transport

    @property
    def path(self):
        return self._path

    @property
    def name(self):
        return self.get_details()["name"]

    def get_details(self):
        return self.transport.json("workspace", "show")

    @property
    def experiments(self):
        """{name: Experiment} of the workspace."""
        return {e["name"]: Experiment(self, e["name"]) for e in self.transport.json("experiment", "list")}

    def __repr__(self):
        return "Workspace(%r)" % self._path


class ScriptRunConfig:
    """What to run: a source directory, its entry script, the script's
    arguments, a compute target's name and an environment (a path to a kusari
    environment file, or a dict with its content: pip_packages,
    debian_packages, variables, build, interpreter)."""

    def __init__(self, source_directory=".", script=None, arguments=None, compute_target=None,
                 environment=None, tags=None):
        if not script:
            raise ValueError("ScriptRunConfig: script is required (the entry file in source_directory)")
        self.source_directory = source_directory
        self.script = script
        self.arguments = [str(a) for a in (arguments or [])]
        self.compute_target = getattr(compute_target, "name", compute_target)
        self.environment = environment
        self.tags = dict(tags or {})


class Experiment:
    """An experiment of a workspace (created by its first run)."""

    def __init__(self, workspace, name):
        self.workspace = workspace
        self.name = name

    def __str__(self):
        return self.name

    def __repr__(self):
        return "Experiment(%r)" % self.name

    def submit(self, config, tags=None):
        """Submits config: a ScriptRunConfig (returns its Run) or a
        HyperDriveConfig (returns the sweep's HyperDriveRun)."""
        from .run import Run
        from .hyperdrive import HyperDriveConfig
        if isinstance(config, HyperDriveConfig):
            return config._submit(self)
        if not isinstance(config, ScriptRunConfig):
            raise TypeError("submit: config must be a ScriptRunConfig or a HyperDriveConfig, got %s" % type(config).__name__)
        args = ["run", "submit", "--experiment", self.name, "--source", config.source_directory,
                "--entry", config.script]
        if config.compute_target:
            args += ["--compute", config.compute_target]
        envfile = None
        try:
            env = config.environment
            if isinstance(env, dict):
                fd, envfile = tempfile.mkstemp(prefix="kusari-env-", suffix=".json")
                with os.fdopen(fd, "w") as f:
                    json.dump(env, f)
                env = envfile
            if env:
                args += ["--env", os.fspath(env)]
            for k, v in dict(config.tags, **(tags or {})).items():
                args += ["--tag", "%s=%s" % (k, v)]
            if config.arguments:
                args += ["--"] + config.arguments
            out = self.workspace.transport.text(*args)
        finally:
            if envfile:
                os.unlink(envfile)
        lines = out.strip().splitlines()
        if not lines:
            raise KusariError("run submit printed no run id")
        return Run(self, lines[-1].strip())

    def get_runs(self):
        """The experiment's runs, newest first."""
        from .run import Run
        return [Run(self, r["id"]) for r in self.workspace.transport.json("run", "list", "--experiment", self.name)]
