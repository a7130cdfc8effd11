"""Distribution: ``bibleqa-sweep run --address`` over a real two-node Ray cluster on this machine
(``ray start --head`` plus a worker node, two CPUs each), with a pool of two LM endpoints, one per node: FAKE
fixed-latency servers of one slot each (``bench/fixed_latency_lm.py``), listed in an endpoints file.  Every
other flag is the sweep's default (``--concurrency``, ``--trial-cpus``), but ``--no-cache``: the trials ask
the same few questions, and a call the cache answers reaches no server.

It checks what a cluster is for: the trials ran on both nodes; both endpoints served calls, as each trial's
``lm_endpoints`` tag counts them and as the servers count them; no endpoint ever had more requests at once
than its one slot (the server counts the requests it holds, queued ones included); and every trial has its
MLflow run, FINISHED, with its metrics and artifacts (they travel in the trial's result).

A lost node (issue 11): against a FAKE fixed-latency LM, the worker node is SIGKILLed, every process of it,
while a trial runs there; with ``--max-failures 1`` that trial runs again on the head, in its one MLflow run."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from bench.fixed_latency_lm import FixedLatencyLM
from bibleqa.local_lm import free_port
from tests.helpers import small_data

pytestmark = [pytest.mark.slow, pytest.mark.ray]

BIN = Path(sys.executable).parent
TRIALS, DEV, TEST = 6, 8, 2


@contextlib.contextmanager
def ray_head(cpus: int) -> Iterator[tuple[str, dict[str, str], list[str]]]:
    """A Ray head node of ``cpus`` CPUs; yields its address, the environment every node and the sweep's driver
    share (Ray 2.59+ authenticates nodes with a token; the driver runs as a subprocess, because Ray reads the
    setting at import), and the command that starts a worker node of ``cpus`` CPUs.  Stops every node after."""
    port = free_port()
    # Ray's socket paths live in its temp dir and must stay short (a unix socket path holds 107 bytes).
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}  # fmt: skip
    head = [str(BIN / "ray"), "start", "--head", f"--port={port}", f"--num-cpus={cpus}", "--include-dashboard=false",
            f"--temp-dir={temp_dir}"]  # fmt: skip
    worker = [str(BIN / "ray"), "start", f"--address=127.0.0.1:{port}", f"--num-cpus={cpus}"]
    try:
        subprocess.run(head, check=True, capture_output=True, env=env, timeout=120)
        yield f"127.0.0.1:{port}", env, worker
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def two_node_cluster():
    """A head and a worker node of two CPUs each."""
    with ray_head(cpus=2) as (address, env, worker):
        subprocess.run(worker, check=True, capture_output=True, env=env, timeout=120)
        yield address, env


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


@pytest.fixture
def head_and_worker_to_lose():
    """A head node and a worker node of one CPU each, the worker run by ``ray start --block`` in its own
    session, so that the test can lose it as a machine is lost: SIGKILL to every process of that session
    (its raylet, its agents, its trial workers), with no goodbye to the head."""
    with ray_head(cpus=1) as (address, env, worker):
        process = subprocess.Popen([*worker, "--block"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)  # fmt: skip
        try:
            for line in process.stdout:  # ray start prints this once the node has joined, then blocks
                if "Ray runtime started" in line:
                    break
            else:
                raise AssertionError("the worker node did not start")
            yield address, env, process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def session_processes(session: int) -> list[tuple[int, str]]:
    """The (pid, command) of every process in session ``session``, from ``ps``."""
    table = subprocess.run(["ps", "-eo", "pid=,sid=,args="], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in table.splitlines()]
    return [(int(pid), args) for pid, sid, args in rows if int(sid) == session]


def wait_until(condition, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.5)


def test_a_trial_on_a_lost_node_is_retried_on_the_head_in_its_one_run(head_and_worker_to_lose, tmp_path):
    """Two trials, one per node (one CPU each); the worker node is lost while its trial runs (every call of a
    FAKE LM takes 1.5 s, so a trial takes seconds of LM time).  With ``--max-failures 1`` the trial runs
    again on the head, in the same MLflow run."""
    address, env, worker = head_and_worker_to_lose
    space = tmp_path / "lost.yaml"
    space.write_text("optimizers:\n  LabeledFewShot:\n    max_labeled_demos: {int: [1, 3]}\n"
                     "train_size: 4\nretrieval_k: 0\nmodel_format: completion\n")  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    fake = FixedLatencyLM(1.5, slots=1).start()  # a FAKE LM: every call takes 1.5 s
    command = [
        str(BIN / "bibleqa-sweep"), "run", str(space), "--trials", "2", "--concurrency", "1", "--max-failures", "1",
        "--address", address, "--trial-cpus", "1",  # one trial per node: both nodes hold one
        "--lm-base", fake.base_url, "--model-format", "completion", "--no-cache",
        "--data", str(small_data(tmp_path, train=4, dev=4, test=1)),
        "--tracking-uri", uri, "--storage", str(tmp_path / "results"), "--output-json", str(tmp_path / "out.json"),
    ]  # fmt: skip
    sweep = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    client = mlflow.MlflowClient(uri)

    def trial_runs() -> list:
        experiment = client.get_experiment_by_name("dspy_bible_qa") if (tmp_path / "mlflow.db").exists() else None
        if experiment is None:
            return []
        return client.search_runs([experiment.experiment_id], filter_string="tags.run_type = 'trial'")

    def worker_runs_a_trial() -> bool:
        return any("ImplicitFunc" in args for _, args in session_processes(worker.pid))

    try:
        # Mid-trial: both trials' runs are open, none has a result, and a trial's process lives on the worker.
        wait_until(lambda: len(trial_runs()) == 2 and worker_runs_a_trial() and len(fake.busy_intervals) >= 1,
                   "a trial runs on the worker and the LM has answered")  # fmt: skip
        assert all(run.info.status == "RUNNING" for run in trial_runs())
        lost = [pid for pid, _ in session_processes(worker.pid)]
        os.killpg(worker.pid, signal.SIGKILL)  # the node is lost: no process of it says goodbye
        worker.wait(timeout=30)  # reaped: `ray start` is this test's child
        stdout, stderr = sweep.communicate(timeout=300)
    finally:
        if sweep.poll() is None:
            sweep.kill()
        fake.stop()
    assert lost and not [pid for pid, _ in session_processes(worker.pid)]
    assert sweep.returncode == 0, stderr[-3000:]
    summary = json.loads((tmp_path / "out.json").read_text())
    runs = trial_runs()
    trial_ids = [run.data.tags["trial_id"] for run in runs]
    assert sorted(trial_ids) == sorted(set(trial_ids)) and len(trial_ids) == 2  # each trial once
    assert [run.info.status for run in runs] == ["FINISHED", "FINISHED"]
    [retried] = [run for run in runs if run.data.tags["attempt"] == "2"]
    [other] = [run for run in runs if run.data.tags["attempt"] == "1"]
    assert retried.data.tags["last_error"]  # what happened to the first attempt
    # Afterwards only the head was left: the retried trial ran where the other one did.
    assert retried.data.tags["ray_node_id"] == other.data.tags["ray_node_id"]
    assert retried.data.metrics["lm_calls"] == other.data.metrics["lm_calls"]  # one attempt's calls, not two
    parent = client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_trials"] == 2
    assert parent.data.metrics["n_failed"] == 0 and summary["n_failed"] == 0
    experiment_runs = client.search_runs([parent.info.experiment_id])
    assert [run.info.run_id for run in experiment_runs if run.info.status == "RUNNING"] == []
    progress = [line for line in stdout.splitlines() if re.match(r"\[\d+/2\] trial ", line)]
    assert [line.split("]")[0] for line in progress] == ["[1/2", "[2/2"], stdout  # the trial counted once
    print(f"last_error: {retried.data.tags['last_error']}\n{stdout}")
