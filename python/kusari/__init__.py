"""kusari: the Python client of the kusari ML platform.

Inside a training script::

    from kusari import Run
    run = Run.get_context()
    run.log("Accuracy", 0.91)

From a notebook or a program::

    from kusari import Workspace, Experiment, ScriptRunConfig
    ws = Workspace.from_config()
    run = Experiment(ws, "mnist").submit(ScriptRunConfig("src", "train.py", compute_target="cpu"))
    run.wait_for_completion(show_output=True)

See docs/PYTHON.md.
"""
from .compute import ComputeTarget, Model, Webservice
from .errors import KusariError
from .hyperdrive import (BanditPolicy, BayesianParameterSampling, GridParameterSampling, HyperDriveConfig,
                         HyperDriveRun, MedianStoppingPolicy, NoTerminationPolicy, PrimaryMetricGoal,
                         RandomParameterSampling, TruncationSelectionPolicy, choice, lognormal, loguniform,
                         normal, qlognormal, qloguniform, qnormal, quniform, randint, uniform)
from .run import Run
from .workspace import Experiment, ScriptRunConfig, Workspace

__version__ = "0.1.0"
__all__ = ["Run", "Workspace", "Experiment", "ScriptRunConfig", "ComputeTarget", "Model", "Webservice", "KusariError",
           "HyperDriveConfig", "HyperDriveRun", "RandomParameterSampling", "GridParameterSampling",
           "BayesianParameterSampling", "BanditPolicy", "MedianStoppingPolicy", "TruncationSelectionPolicy",
           "NoTerminationPolicy", "PrimaryMetricGoal", "choice", "randint", "uniform", "quniform",
           "loguniform", "qloguniform", "normal", "qnormal", "lognormal", "qlognormal"]
