"""Distribution: ``bibleqa-sweep run --address`` over a real two-node Ray cluster on this machine
(``ray start --head`` plus a worker node, two CPUs each), with a pool of two LM endpoints, one per node: FAKE
fixed-latency servers of one slot each (``bench/fixed_latency_lm.py``), listed in an endpoints file.  Every
other flag is the sweep's default (``--concurrency``, ``--trial-cpus``), but ``--no-cache``: the trials ask
the same few questions, and a call the cache answers reaches no server.

It checks what a cluster is for: the trials ran on both nodes; both endpoints served calls, as each trial's
``lm_endpoints`` tag counts them and as the servers count them; no endpoint ever had more requests at once
than its one slot (the server counts the requests it holds, queued ones included); and every trial has its
MLflow run, FINISHED, with its metrics and artifacts (they travel in the trial's result)."""

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

from bench.fixed_latency_lm import FixedLatencyLM
from bibleqa.local_lm import free_port
from tests.helpers import small_data

pytestmark = [pytest.mark.slow, pytest.mark.ray]

BIN = Path(sys.executable).parent
TRIALS, DEV, TEST = 6, 8, 2


@pytest.fixture
def two_node_cluster():
    """A head and a worker node.  Ray 2.59+ authenticates nodes with a token: the head, the worker and the
    sweep's driver share one (the driver runs as a subprocess, because Ray reads the setting at import)."""
    port = free_port()
    # Ray's socket paths live in its temp dir and must stay short (a unix socket path holds 107 bytes).
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}  # fmt: skip
    head = [str(BIN / "ray"), "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
            f"--temp-dir={temp_dir}"]  # fmt: skip
    worker = [str(BIN / "ray"), "start", f"--address=127.0.0.1:{port}", "--num-cpus=2"]
    try:
        subprocess.run(head, check=True, capture_output=True, env=env, timeout=120)
        subprocess.run(worker, check=True, capture_output=True, env=env, timeout=120)
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_trials_spread_over_two_nodes_and_two_endpoints_with_default_flags(two_node_cluster, tmp_path):
    address, env = two_node_cluster
    space = tmp_path / "spread.yaml"
    space.write_text(
        "optimizers:\n  LabeledFewShot:\n    max_labeled_demos: {int: [1, 3]}\n"
        "train_size: 4\nretrieval_k: {choice: [0, 1]}\nmodel_format: completion\n"
    )
    servers = [FixedLatencyLM(0.05, slots=1).start() for _ in range(2)]  # FAKE: one per node, one slot each
    endpoints = tmp_path / "endpoints.yaml"
    endpoints.write_text("".join(f"- url: {server.base_url}\n  slots: 1\n" for server in servers))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [
        str(BIN / "bibleqa-sweep"), "run", str(space), "--trials", str(TRIALS), "--address", address,
        "--lm-file", str(endpoints), "--no-cache", "--data", str(small_data(tmp_path, train=8, dev=DEV, test=TEST)),
        "--tracking-uri", uri, "--storage", str(tmp_path / "results"), "--output-json", str(tmp_path / "out.json"),
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    finally:
        for server in servers:
            server.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "out.json").read_text())
    assert summary["n_trials"] == TRIALS and summary["n_failed"] == 0

    client = mlflow.MlflowClient(uri)
    children = client.search_runs(
        [summary["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'"
    )
    assert len(children) == TRIALS
    assert len({child.data.tags["ray_node_id"] for child in children}) == 2  # both nodes ran trials
    urls = [server.base_url for server in servers]
    served = {url: 0 for url in urls}
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.params["lm_studio_api_url"] == ",".join(urls)
        assert {"accuracy", "theological_match_score", "lm_calls"} <= set(child.data.metrics)
        artifacts = {entry.path for entry in client.list_artifacts(child.info.run_id)}
        assert {"program.json", "sample_predictions.json", "question_scores.csv"} <= artifacts
        for url, calls in json.loads(child.data.tags["lm_endpoints"]).items():
            served[url] += calls
        sent = child.data.metrics["lm_calls"] - child.data.metrics["lm_cache_hits"]
        assert sum(json.loads(child.data.tags["lm_endpoints"]).values()) == sent
    first, second = servers
    assert served[first.base_url] > 0 and served[second.base_url] > 0  # both endpoints served trials
    # What the trials' tags say each endpoint served is what the servers received; the winner's test
    # questions go to the first endpoint, from the driver, after the trials.
    assert second.posts == served[second.base_url]
    assert served[first.base_url] <= first.posts <= served[first.base_url] + TEST
    assert first.max_in_flight == 1 and second.max_in_flight == 1  # never more than the one slot each
    assert summary["slot_stats"]["lm_calls_through_slots"] == sum(served.values())
