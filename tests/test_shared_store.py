"""Two sweeps started together into the same fresh local store (``sqlite:///mlflow.db``, no file yet), from
the same folder with the same space, as two people on one desktop would: real ``bibleqa-sweep run``
processes, real Ray, against a FAKE fixed-latency LM (``bench/fixed_latency_lm.py``).  Checked on what
MLflow holds afterwards: both parents FINISHED and summed up, every trial of each present once, no run left
RUNNING, and neither sweep's output or log has "database is locked" or a traceback.

Before ``bibleqa.tracking.store_lock`` one of the two died in MLflow's schema migration of the new store.
"""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import pytest

from bench.fixed_latency_lm import FixedLatencyLM
from tests.helpers import small_data

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SPACE = """
optimizers:
  LabeledFewShot:
    max_labeled_demos: {int: [1, 3]}
train_size: 4
retrieval_k: {choice: [0, 1]}
model_format: completion
"""
TRIALS = 4
SWEEPS = 2


def test_two_sweeps_at_once_on_a_fresh_sqlite_store_lose_nothing(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "space.yaml").write_text(SPACE)
    data = small_data(tmp_path, train=4, dev=4, test=1)
    fake = FixedLatencyLM(0.05, slots=4).start()  # a FAKE LM: every call answers after 50 ms
    command = [
        sys.executable, "-m", "sweeps.cli", "run", "space.yaml", "--trials", str(TRIALS), "--concurrency", "2",
        "--lm-base", fake.base_url, "--model-format", "completion", "--data", str(data),
        "--tracking-uri", "sqlite:///mlflow.db",  # relative, as the default is: both name the same new file
    ]  # fmt: skip
    assert not (work / "mlflow.db").exists()
    try:
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        sweeps = [subprocess.Popen(command, cwd=work, env=os.environ.copy(), **pipes) for _ in range(SWEEPS)]
        outputs = [process.communicate(timeout=600) for process in sweeps]
    finally:
        fake.stop()
    for process, (stdout, stderr) in zip(sweeps, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
        assert "database is locked" not in stdout + stderr and "Traceback" not in stdout + stderr, stderr[-3000:]

    folders = sorted((work / "sweeps_results").iterdir())
    assert len(folders) == SWEEPS  # one folder each, even when both started in the same second
    for folder in folders:
        log = (folder / "sweep.log").read_text()
        assert "database is locked" not in log and "Traceback" not in log

    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dspy_bible_qa")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert [run.info.run_name for run in runs if run.info.status == "RUNNING"] == []
    parents = [run for run in runs if run.data.tags.get("run_type") == "sweep"]
    assert sorted(parent.info.run_name for parent in parents) == [folder.name for folder in folders]
    for parent in parents:
        assert parent.info.status == "FINISHED" and "error" not in parent.data.tags
        children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        trial_ids = [child.data.tags["trial_id"] for child in children]
        assert len(trial_ids) == TRIALS and len(set(trial_ids)) == TRIALS  # every trial, once
        assert {child.info.status for child in children} == {"FINISHED"}
        # Summed up: the count, the winner among its own trials, the summary on the parent.
        assert parent.data.metrics["n_trials"] == TRIALS
        assert parent.data.tags["best_run_id"] in {child.info.run_id for child in children}
        assert "summary.md" in {entry.path for entry in client.list_artifacts(parent.info.run_id)}
    assert len(runs) == SWEEPS * (TRIALS + 1)  # nothing else landed: no stray run of a dead sweep
