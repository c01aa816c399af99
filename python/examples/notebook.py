#!/usr/bin/env python3
"""The seed notebook (train, tune and deploy Chainer's MNIST MLP) as a Python
script on the kusari SDK: each step is the notebook's step with kusari's
names (docs/PYTHON.md maps them line by line).

    python3 python/examples/notebook.py --source examples/mnist      # the notebook's sizes
    python3 python/examples/notebook.py --epochs 1 --sweep-epochs 1 --sweep-runs 2 --score 200   # quick
    python3 python/examples/notebook.py --data DIR --epochs 2 --score 500   # the notebook's sweep on a small data set

--data DIR trains on the MNIST-format files in DIR (train_mnist's --data):
the notebook's shapes, 8 runs over batch size x epochs {5, 10, 20, 40}, stay
cheap on a slice of the data set. --predictions FILE writes the service's
answers and the labels as JSON, to check them against another evaluation of
the downloaded model.

It uses the workspace Workspace.from_config() finds (like the kusari
program): run it where 'kusari workspace create ./ws' was run, or with
KUSARI_WORKSPACE set. The example is built by its environment's 'make'
through the installed kusari.pc, so kusari must be installed (scripts/setup.sh).
"""
import argparse
import gzip
import json
import os
import struct
import sys

from kusari import (BanditPolicy, ComputeTarget, Experiment, HyperDriveConfig, KusariError, PrimaryMetricGoal,
                    RandomParameterSampling, ScriptRunConfig, Workspace, choice)

TEST_IMAGES = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
TEST_LABELS = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">%dI" % ndim, raw[4:4 + 4 * ndim])
    return dims, raw[4 + 4 * ndim:]


def test_set(count):
    """The first count test images (pixels / 255, as the training program
    scales them) and their labels."""
    (n, rows, cols), pix = read_idx(TEST_IMAGES)
    _, labels = read_idx(TEST_LABELS)
    size = rows * cols
    count = min(count, n)
    images = [[p / 255.0 for p in pix[i * size:(i + 1) * size]] for i in range(count)]
    return images, list(labels[:count])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="examples/mnist", help="the example's directory (default examples/mnist)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--sweep-epochs", type=int, nargs="+", default=[5, 10, 20, 40])
    ap.add_argument("--sweep-runs", type=int, default=8)
    ap.add_argument("--sweep-concurrent", type=int, default=4)
    ap.add_argument("--max-nodes", type=int, default=4, help="of the compute target, when it is created")
    ap.add_argument("--score", type=int, default=1000, help="test images to score with the service")
    ap.add_argument("--downloads", default="downloads")
    ap.add_argument("--keep-service", action="store_true")
    ap.add_argument("--data", help="train on the MNIST-format files of this directory (train_mnist --data)")
    ap.add_argument("--predictions", help="write the service's predictions and the labels to this JSON file")
    a = ap.parse_args()
    env = os.path.join(a.source, "kusari-env.json")
    data = ["--data", os.path.abspath(a.data)] if a.data else []

    # workspace and compute target
    ws = Workspace.from_config()
    print("workspace:", ws.path)
    try:
        cpu = ComputeTarget(ws, "cpu")
        print("found compute target cpu")
    except KusariError:
        cpu = ComputeTarget.create(ws, "cpu", max_nodes=a.max_nodes)
        print("created compute target cpu")
    print("compute status:", cpu.get_status())

    # experiment, estimator, submit and wait
    exp = Experiment(ws, "chainer-mnist")
    est = ScriptRunConfig(source_directory=a.source, script="train_mnist", compute_target=cpu, environment=env,
                          arguments=["--epochs", a.epochs, "--batchsize", 128, "--output_dir", "./outputs"] + data)
    run = exp.submit(est)
    run.wait_for_completion(show_output=True)
    metrics = run.get_metrics()
    print("metrics:", metrics)

    # register the model and download its files
    model = run.register_model(model_name="chainer-dnn-mnist", model_path="outputs/model.npz")
    print("registered", model.name, "version", model.version)
    os.makedirs(a.downloads, exist_ok=True)
    for f in run.get_file_names():
        if f.startswith("outputs/model"):
            print("downloaded", f, "to", run.download_file(name=f, output_file_path=a.downloads))

    # the HyperDrive sweep
    sweep_config = ScriptRunConfig(source_directory=a.source, script="train_mnist", compute_target=cpu,
                                   environment=env, arguments=["--output_dir", "./outputs"] + data)
    sampling = RandomParameterSampling({"--batchsize": choice(128, 256), "--epochs": choice(*a.sweep_epochs)})
    policy = BanditPolicy(evaluation_interval=1, slack_factor=0.1, delay_evaluation=3)
    hd = HyperDriveConfig(run_config=sweep_config, hyperparameter_sampling=sampling, policy=policy,
                          primary_metric_name="Accuracy", primary_metric_goal=PrimaryMetricGoal.MAXIMIZE,
                          max_total_runs=a.sweep_runs, max_concurrent_runs=a.sweep_concurrent)
    hd_run = exp.submit(hd)
    print("sweep", hd_run.id)
    hd_run.wait_for_completion(show_output=True)
    print("children:", len(hd_run.get_children()))
    best = hd_run.get_best_run_by_primary_metric()
    best_metrics = best.get_metrics()
    print("best run:", best.id, best.get_tags(), "Accuracy", best_metrics["Accuracy"])
    model = best.register_model(model_name="chainer-dnn-mnist", model_path="outputs/model.npz")
    print("registered the best run's model as", model.id)
    best_dir = os.path.join(a.downloads, "best")
    model.download(target_dir=best_dir)
    print("downloaded the best model to", best_dir)

    # deploy with a key and score test images
    service = model.deploy("mnist-svc", auth=True)
    print("service", service.name, "at", service.scoring_uri, service.state)
    images, labels = test_set(a.score)
    preds = []
    for i in range(0, len(images), 100):
        preds += service.run({"data": images[i:i + 100]})["predictions"]
    right = sum(1 for p, l in zip(preds, labels) if p == l)
    if a.predictions:
        with open(a.predictions, "w") as f:
            json.dump({"predictions": preds, "labels": [int(l) for l in labels]}, f)
    print("service accuracy on %d test images: %.4f" % (len(images), right / len(images)))
    if not a.keep_service:
        service.delete()
        print("deleted the service")


if __name__ == "__main__":
    try:
        main()
    except KusariError as e:
        sys.exit("kusari: error: %s" % e)
