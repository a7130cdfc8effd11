"""Distribution: ``bibleqa-sweep run --address`` over a real two-node Ray cluster on this machine
(``ray start --head`` plus a worker node), against the real bundled LM.  Trials run on both nodes; every
artifact still reaches MLflow (it travels in the trial's result); the LM calls in flight never exceed the
slot, as the server sees them through a counting pass-through proxy, and every trial's call takes it."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import pytest

from bibleqa.local_lm import free_port
from tests.fakes import CountingProxy
from tests.helpers import small_data

pytestmark = [pytest.mark.lm, pytest.mark.slow, pytest.mark.ray]

BIN = Path(sys.executable).parent


@pytest.fixture
def two_node_cluster():
    """A head and a worker node.  Ray 2.59+ authenticates nodes with a token: the head, the worker and the
    sweep's driver share one (the driver runs as a subprocess, because Ray reads the setting at import)."""
    port = free_port()
    # Ray's socket paths live in its temp dir and must stay short (a unix socket path holds 107 bytes).
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}  # fmt: skip
    head = [str(BIN / "ray"), "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
            f"--temp-dir={temp_dir}"]  # fmt: skip
    worker = [str(BIN / "ray"), "start", f"--address=127.0.0.1:{port}", "--num-cpus=1"]
    try:
        subprocess.run(head, check=True, capture_output=True, env=env, timeout=120)
        subprocess.run(worker, check=True, capture_output=True, env=env, timeout=120)
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_trials_spread_over_two_nodes_and_log_everything(two_node_cluster, local_lm, tmp_path):
    address, env = two_node_cluster
    space = tmp_path / "spread.yaml"
    space.write_text(
        "optimizers:\n  LabeledFewShot:\n    max_labeled_demos: {int: [1, 3]}\n"
        "train_size: 4\nretrieval_k: {choice: [0, 1]}\nmodel_format: completion\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proxy = CountingProxy(local_lm.base_url)
    command = [
        str(BIN / "bibleqa-sweep"), "run", str(space), "--trials", "4", "--concurrency", "1",
        "--address", address, "--trial-cpus", "1",  # one trial per node at a time: two running trials sit on two nodes
        "--lm-base", proxy.base_url, "--model-format", "completion", "--no-cache",  # every call reaches the server
        "--data", str(small_data(tmp_path, train=8, dev=4, test=2)),
        "--tracking-uri", uri, "--storage", str(tmp_path / "results"), "--output-json", str(tmp_path / "out.json"),
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    finally:
        proxy.close()
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "out.json").read_text())

    assert summary["n_trials"] == 4 and summary["n_failed"] == 0
    client = mlflow.MlflowClient(uri)
    children = client.search_runs(
        [summary["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'"
    )
    assert len({child.data.tags["ray_node_id"] for child in children}) == 2
    for child in children:
        artifacts = {entry.path for entry in client.list_artifacts(child.info.run_id)}
        assert {"program.json", "sample_predictions.json", "question_scores.csv"} <= artifacts
    trial_calls = sum(child.data.metrics["lm_calls"] for child in children)
    sent = sum(child.data.metrics["lm_calls"] - child.data.metrics["lm_cache_hits"] for child in children)
    assert trial_calls > 0 and sent == trial_calls  # --no-cache: no call was a cache hit
    assert proxy.max_in_flight == 1  # two nodes, one slot: the server never had two calls at once
    assert proxy.posts == sent + 2  # the trials' requests, then the winner's 2 test questions
    assert summary["slot_stats"]["lm_calls_through_slots"] == sent  # every request on both nodes took it
    assert summary["slot_stats"]["max_lm_calls_in_flight"] == 1
