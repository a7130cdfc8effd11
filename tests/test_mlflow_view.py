"""The saved view of a sweep's runs table (``sweeps.mlflow_view``): what MLflow's UI reads from the experiment
tag, and that its search, run by MLflow itself on a real store, lists the sweep's trials only, best first.
(That the UI opens on it is checked by eye, in headless Chromium: ``scripts/screenshots.py``.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow

from sweeps.mlflow_view import VIEW_TAG_PREFIX, runs_table_url, save_trials_view, trials_view

ROOT = Path(__file__).resolve().parent.parent


def _sweep(client: mlflow.MlflowClient, experiment_id: str, scores: list[float]) -> tuple[str, list[str]]:
    """A parent run and one trial run per score (as the sweep tags them); returns their ids."""
    parent = client.create_run(experiment_id, tags={"run_type": "sweep"}).info.run_id
    client.log_metric(parent, "best_theological_match_score", max(scores))
    trials = []
    for score in scores:
        run = client.create_run(experiment_id, tags={"run_type": "trial", "mlflow.parentRunId": parent}).info.run_id
        client.log_metric(run, "theological_match_score", score)
        client.log_param(run, "optimizer", "LabeledFewShot")
        trials.append(run)
    return parent, trials


def test_the_view_lists_this_sweeps_trials_best_first(tmp_path):
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.create_experiment("views", artifact_location=str(tmp_path / "artifacts"))
    parent, trials = _sweep(client, experiment_id, [0.2, 0.5, 0.1])
    _sweep(client, experiment_id, [0.9])  # another sweep: not in this view

    key = save_trials_view(client, experiment_id, parent, "theological_match_score", "max")
    stored = json.loads(client.get_experiment(experiment_id).tags[VIEW_TAG_PREFIX + key])
    order = f"{stored['orderByKey']} {'ASC' if stored['orderByAsc'] else 'DESC'}"
    found = client.search_runs([experiment_id], stored["searchFilter"], order_by=[order])
    assert [run.info.run_id for run in found] == [trials[1], trials[0], trials[2]]
    # The columns name what the runs carry, in the UI's own spelling (type.`key`).
    assert stored["selectedColumns"][:3] == [
        "metrics.`theological_match_score`",
        "metrics.`accuracy`",
        "params.`optimizer`",
    ]


def test_a_min_objective_sorts_up_and_is_the_first_column():
    url = runs_table_url("http://127.0.0.1:5000/", "7", "k")
    assert url == "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning&viewStateShareKey=k"
    view = trials_view("loss", "min", "p")
    assert view["orderByAsc"] is True and view["selectedColumns"][:2] == ["metrics.`loss`", "metrics.`accuracy`"]


def test_the_screenshot_script_says_what_it_does():
    shown = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "screenshots.py"), "--help"], capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    assert "--tracking-uri" in shown.stdout and "--sweep" in shown.stdout and "Chromium" in shown.stdout
