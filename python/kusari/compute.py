"""ComputeTarget and Model: the SDK's nouns for compute targets and the model
registry (over the workspace's transport, like the others)."""


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
