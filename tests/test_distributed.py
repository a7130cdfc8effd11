"""Distribution: a sweep over a real two-node Ray cluster on this machine (``ray start --head`` plus a worker
node), against the real bundled LM.  Trials run on both nodes; every artifact still reaches MLflow (it
travels in the trial's result); the LM calls in flight never exceed the slots."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import pytest

from bibleqa.lm import LMSettings
from bibleqa.local_lm import free_port
from sweeps.run import SweepOptions, run_sweep
from tests.helpers import small_data

pytestmark = [pytest.mark.lm, pytest.mark.slow]

RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture
def two_node_cluster(monkeypatch):
    port = free_port()
    # Ray 2.59+ wants token authentication between the nodes of a cluster: one token for the head, the
    # worker and this driver.
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    # Ray's socket paths live in its temp dir and must stay short (a unix socket path holds 107 bytes).
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    head = [RAY, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
            f"--temp-dir={temp_dir}"]  # fmt: skip
    worker = [RAY, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1"]
    try:
        subprocess.run(head, check=True, capture_output=True, env=env, timeout=120)
        subprocess.run(worker, check=True, capture_output=True, env=env, timeout=120)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_trials_spread_over_two_nodes_and_log_everything(two_node_cluster, local_lm, tmp_path):
    space = tmp_path / "spread.yaml"
    space.write_text(
        "optimizers:\n  LabeledFewShot:\n    max_labeled_demos: {int: [1, 3]}\n"
        "train_size: 4\nretrieval_k: {choice: [0, 1]}\nmodel_format: completion\n"
    )
    settings = LMSettings(lm_base=local_lm.base_url, lm_model=local_lm.model, model_format="completion")
    options = SweepOptions(
        str(space),
        trials=4,
        concurrency=1,
        address=two_node_cluster,
        trial_cpus=1.0,  # one trial per node at a time, so that two running trials sit on two nodes
        data=str(small_data(tmp_path, train=8, dev=4, test=2)),
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        storage=str(tmp_path / "results"),
    )
    summary = run_sweep(options, settings, lm_studio=False, n_ctx=local_lm.n_ctx)

    assert summary.n_trials == 4 and summary.n_failed == 0
    client = mlflow.MlflowClient(options.tracking_uri)
    children = client.search_runs(
        [summary.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{summary.parent_run_id}'"
    )
    assert len({child.data.tags["ray_node_id"] for child in children}) == 2
    for child in children:
        artifacts = {entry.path for entry in client.list_artifacts(child.info.run_id)}
        assert {"program.json", "sample_predictions.json", "question_scores.csv"} <= artifacts
    assert summary.slot_stats["max_lm_calls_in_flight"] <= 1
