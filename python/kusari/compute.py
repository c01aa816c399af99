"""ComputeTarget, Model and Webservice: the SDK's nouns for compute targets,
the model registry and scoring services (over the workspace's transport,
like the others; a service is scored over HTTP)."""
from .errors import KusariError


class ComputeTarget:
    """A compute target of a workspace (``kusari compute``)."""

    def __init__(self, workspace, name):
        """Gets an existing target (KusariError if there is none of that name)."""
        self.workspace = workspace
        self.name = name
        self._details = workspace.transport.json("compute", "show", name)

    @classmethod
    def create(cls, workspace, name, type="local", max_nodes=1):
        """Creates a target (type local: at most max_nodes runs at a time)."""
        if isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or max_nodes < 1:
            raise ValueError("ComputeTarget.create: max_nodes must be a positive int, got %r" % (max_nodes,))
        workspace.transport.text("compute", "create", name, "--type", type, "--max-nodes", max_nodes)
        return cls(workspace, name)

    @classmethod
    def list(cls, workspace):
        return [cls(workspace, c["name"]) for c in workspace.transport.json("compute", "list")]

    @property
    def type(self):
        return self._details["type"]

    def get_status(self):
        """The target's current state: max_nodes, busy_nodes, idle_nodes, queued_runs."""
        self._details = self.workspace.transport.json("compute", "show", self.name)
        return self._details

    def __repr__(self):
        return "ComputeTarget(%r, type=%r)" % (self.name, self._details.get("type"))


class Model:
    """A registered model version (``kusari model``); the latest version
    when version is None."""

    def __init__(self, workspace, name, version=None):
        self.workspace = workspace
        ref = name if version is None else "%s:%d" % (name, int(version))
        self._details = workspace.transport.json("model", "show", ref)
        self.name = self._details["name"]
        self.version = int(self._details["version"])

    @classmethod
    def list(cls, workspace, name=None):
        """Every version of every model (or of name), as Model objects."""
        args = ["model", "list"] + (["--name", name] if name else [])
        return [cls(workspace, m["name"], m["version"]) for m in workspace.transport.json(*args)]

    @property
    def id(self):
        return "%s:%d" % (self.name, self.version)

    @property
    def run_id(self):
        return self._details.get("run")

    @property
    def description(self):
        return self._details.get("description")

    @property
    def tags(self):
        return self._details.get("tags") or {}

    def get_file_names(self):
        return [f["path"] for f in self._details.get("files", [])]

    def download(self, target_dir="."):
        """Writes the version's files into target_dir; returns target_dir."""
        self.workspace.transport.text("model", "download", self.id, "--to", target_dir)
        return target_dir

    def __repr__(self):
        return "Model(%r, version=%d)" % (self.name, self.version)

    def __eq__(self, other):
        return isinstance(other, Model) and (self.name, self.version) == (other.name, other.version)

    def __hash__(self):
        return hash((self.name, self.version))

    def deploy(self, name, auth=False, port=0, workers=None):
        """Starts scoring service name serving this version (model.json beside
        model.npz, see docs/SERVING.md); returns its Webservice."""
        args = ["model", "deploy", self.id, "--name", name, "--port", port]
        if auth:
            args.append("--auth")
        if workers:
            args += ["--workers", workers]
        self.workspace.transport.text(*args)
        return Webservice(self.workspace, name)


class Webservice:
    """A scoring service (``kusari service``): POST /score with JSON."""

    def __init__(self, workspace, name):
        self.workspace = workspace
        self.name = name
        self._details = workspace.transport.json("service", "show", name)

    def get_details(self):
        self._details = self.workspace.transport.json("service", "show", self.name)
        return self._details

    @property
    def scoring_uri(self):
        return self._details["scoring_uri"]

    @property
    def state(self):
        return self.get_details()["state"]

    def get_keys(self):
        """(primary_key, secondary_key)."""
        k = self.workspace.transport.json("service", "keys", self.name)
        return k["primary_key"], k["secondary_key"]

    def run(self, input_data, timeout=60):
        """POSTs input_data (a JSON text, or an object to encode) to the
        scoring URI with the service's key when it has auth; returns the
        decoded answer. An HTTP error raises KusariError with the server's
        message."""
        import json
        import urllib.error
        import urllib.request
        body = input_data if isinstance(input_data, (str, bytes)) else json.dumps(input_data)
        if isinstance(body, str):
            body = body.encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self._details.get("auth"):
            headers["Authorization"] = "Bearer " + self.get_keys()[0]
        req = urllib.request.Request(self.scoring_uri, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")
            try:
                text = json.loads(text).get("error", text)
            except (ValueError, AttributeError):
                pass
            raise KusariError("service %s answered %d: %s" % (self.name, e.code, text)) from None
        except urllib.error.URLError as e:
            raise KusariError("cannot reach service %s at %s: %s" % (self.name, self.scoring_uri, e.reason),
                              hint="'kusari service show %s' says its state; 'kusari service start %s' starts it"
                              % (self.name, self.name)) from None

    def stop(self):
        self.workspace.transport.text("service", "stop", self.name)

    def delete(self):
        self.workspace.transport.text("service", "delete", self.name)

    def __repr__(self):
        return "Webservice(%r, %r)" % (self.name, self._details.get("scoring_uri"))
