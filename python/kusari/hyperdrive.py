"""HyperDrive-style sweeps (docs/SWEEPS.md) from Python: parameter
expressions, samplings, early-termination policies and HyperDriveConfig,
mapped onto the sweep file that 'kusari sweep submit' reads. The program
checks the file; nothing is validated twice here."""
import json
import os
import tempfile

from .errors import KusariError
from .run import Run


# -- parameter expressions (each returns the sweep file's JSON form) --------
def choice(*options):
    """choice(1, 2, 3) or choice([1, 2, 3])."""
    if len(options) == 1 and isinstance(options[0], (list, tuple, range)):
        options = tuple(options[0])
    return {"choice": list(options)}


def randint(upper):
    return {"randint": [upper]}


def uniform(min_value, max_value):
    return {"uniform": [min_value, max_value]}


def quniform(min_value, max_value, q):
    return {"quniform": [min_value, max_value, q]}


def loguniform(min_value, max_value):
    return {"loguniform": [min_value, max_value]}


def qloguniform(min_value, max_value, q):
    return {"qloguniform": [min_value, max_value, q]}


def normal(mu, sigma):
    return {"normal": [mu, sigma]}


def qnormal(mu, sigma, q):
    return {"qnormal": [mu, sigma, q]}


def lognormal(mu, sigma):
    return {"lognormal": [mu, sigma]}


def qlognormal(mu, sigma, q):
    return {"qlognormal": [mu, sigma, q]}


# -- samplings ---------------------------------------------------------------
class _Sampling:
    type = None

    def __init__(self, parameter_space, seed=None):
        if not isinstance(parameter_space, dict) or not parameter_space:
            raise TypeError("%s: parameter_space must be a non-empty dict of name -> expression"
                            % type(self).__name__)
        self.parameter_space = dict(parameter_space)
        self.seed = seed

    def _json(self):
        d = {"type": self.type, "space": self.parameter_space}
        if self.seed is not None:
            d["seed"] = self.seed
        return d


class RandomParameterSampling(_Sampling):
    type = "random"


class GridParameterSampling(_Sampling):
    type = "grid"


class BayesianParameterSampling(_Sampling):
    type = "bayesian"


# -- early termination policies ----------------------------------------------
class BanditPolicy:
    def __init__(self, evaluation_interval=1, slack_factor=None, slack_amount=None, delay_evaluation=0):
        self._d = {"type": "bandit", "evaluation_interval": evaluation_interval,
                   "delay_evaluation": delay_evaluation}
        if slack_factor is not None:
            self._d["slack_factor"] = slack_factor
        if slack_amount is not None:
            self._d["slack_amount"] = slack_amount


class MedianStoppingPolicy:
    def __init__(self, evaluation_interval=1, delay_evaluation=0):
        self._d = {"type": "median", "evaluation_interval": evaluation_interval,
                   "delay_evaluation": delay_evaluation}


class TruncationSelectionPolicy:
    def __init__(self, truncation_percentage, evaluation_interval=1, delay_evaluation=0):
        self._d = {"type": "truncation", "truncation_percentage": truncation_percentage,
                   "evaluation_interval": evaluation_interval, "delay_evaluation": delay_evaluation}


class NoTerminationPolicy:
    def __init__(self):
        self._d = {"type": "none"}


class PrimaryMetricGoal:
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


class HyperDriveConfig:
    """A sweep: run_config (a ScriptRunConfig) run with sampled parameters."""

    def __init__(self, run_config, hyperparameter_sampling, primary_metric_name, primary_metric_goal,
                 max_total_runs=None, max_concurrent_runs=None, max_duration_minutes=None, policy=None):
        from .workspace import ScriptRunConfig
        if not isinstance(run_config, ScriptRunConfig):
            raise TypeError("HyperDriveConfig: run_config must be a ScriptRunConfig, got %s" % type(run_config).__name__)
        if not isinstance(hyperparameter_sampling, _Sampling):
            raise TypeError("HyperDriveConfig: hyperparameter_sampling must be a Random, Grid or "
                            "BayesianParameterSampling, got %s" % type(hyperparameter_sampling).__name__)
        self.run_config = run_config
        self.sampling = hyperparameter_sampling
        self.primary_metric_name = primary_metric_name
        self.primary_metric_goal = primary_metric_goal
        self.max_total_runs = max_total_runs
        self.max_concurrent_runs = max_concurrent_runs
        self.max_duration_minutes = max_duration_minutes
        self.policy = policy

    def _sweep_file(self, experiment, env_path):
        rc = self.run_config
        run = {"source": os.path.abspath(rc.source_directory), "entry": rc.script}
        if rc.compute_target:
            run["compute"] = rc.compute_target
        if rc.arguments:
            run["arguments"] = rc.arguments
        if env_path:
            run["environment"] = os.path.abspath(env_path)
        d = {"experiment": experiment, "run": run, "sampling": self.sampling._json(),
             "primary_metric": {"name": self.primary_metric_name, "goal": self.primary_metric_goal}}
        for k in ("max_total_runs", "max_concurrent_runs", "max_duration_minutes"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.policy is not None:
            d["policy"] = self.policy._d
        return d

    def _submit(self, experiment):
        tmps = []
        try:
            env = self.run_config.environment
            if isinstance(env, dict):
                fd, p = tempfile.mkstemp(prefix="kusari-env-", suffix=".json")
                with os.fdopen(fd, "w") as f:
                    json.dump(env, f)
                tmps.append(p)
                env = p
            fd, sweep = tempfile.mkstemp(prefix="kusari-sweep-", suffix=".json")
            tmps.append(sweep)
            with os.fdopen(fd, "w") as f:
                json.dump(self._sweep_file(experiment.name, os.fspath(env) if env else None), f)
            out = experiment.workspace.transport.text("sweep", "submit", sweep)
        finally:
            for p in tmps:
                os.unlink(p)
        return HyperDriveRun(experiment, out.strip().splitlines()[-1].strip())


class HyperDriveRun(Run):
    """The parent run of a sweep."""

    def wait_for_completion(self, show_output=False, raise_on_error=True):
        t = self._t("wait_for_completion")
        args = ["sweep", "wait", self._id] + ([] if show_output else ["--quiet"])
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
            raise KusariError("sweep %s ended %s: %s" % (self._id, details["status"], details.get("error") or "see 'kusari sweep show %s'" % self._id))
        return details

    def get_sweep_details(self):
        """The sweep as 'kusari sweep show --json' describes it."""
        return self._t("get_sweep_details").json("sweep", "show", self._id)

    def get_children(self):
        """The child runs, newest first."""
        return [Run(self._experiment, r["id"])
                for r in self._t("get_children").json("run", "list", "--parent", self._id)]

    def get_best_run_by_primary_metric(self, completed_only=False):
        """The child with the best value of the primary metric (None if none logged it)."""
        p = self._t("get_best_run_by_primary_metric")._run(
            ["sweep", "best", self._id] + (["--completed-only"] if completed_only else []), check=False)
        if p.returncode != 0:
            from ._transport import _split_error
            msg, hint = _split_error(p.stderr)
            if "run with a value of" in msg:
                return None
            raise KusariError(msg, hint)
        return Run(self._experiment, p.stdout.strip().splitlines()[-1].strip())

    def cancel(self):
        self._t("cancel").text("sweep", "cancel", self._id)
