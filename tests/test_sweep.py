"""End to end: a 6-trial sweep over two optimizer types against the real bundled LM, a real ``mlflow server``
and a real local Ray instance; then ``pick``.  (Sweeps against a FAKE LM, faults among them, are in
``test_sweep_fake_lm.py``.)"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import dspy
import mlflow
import pytest

from bibleqa.lm import LMSettings, build_adapter, build_lm
from bibleqa.metrics import TRACKED_METRICS
from sweeps.pick import pick_run, rank_runs
from sweeps.run import SweepOptions, run_sweep
from sweeps.trial import REPORTED_METRICS
from tests.helpers import SEED_COMPARISON, small_data

pytestmark = [pytest.mark.lm, pytest.mark.mlflow_server, pytest.mark.slow]

SPACE = """
objective: {metric: theological_match_score, mode: max}
seed: 11
optimizers:
  LabeledFewShot:
    max_labeled_demos: {int: [1, 3]}
  BootstrapFewShot:
    max_bootstrapped_demos: {int: [1, 2]}
    max_labeled_demos: {int: [0, 1]}
train_size: {choice: [4, 8]}
retrieval_k: {choice: [0, 1]}
chain_of_thought: false
model_format: completion
"""
RAY_BOOKKEEPING = {"pid", "timestamp", "done", "training_iteration", "time_this_iter_s", "time_total_s",
                   "hostname", "node_ip", "date", "trial_id", "iterations_since_restore"}  # fmt: skip


@pytest.fixture(scope="module")
def sweep(local_lm, mlflow_server, tmp_path_factory):
    directory = tmp_path_factory.mktemp("sweep")
    space = directory / "e2e.yaml"
    space.write_text(SPACE)
    settings = LMSettings(lm_base=local_lm.base_url, lm_model=local_lm.model, model_format="completion")
    lines: list[str] = []
    options = SweepOptions(
        str(space),
        trials=6,
        search="tpe",
        n_startup_trials=3,
        data=str(small_data(directory, train=24, dev=8, test=4)),
        tracking_uri=mlflow_server,
        storage=str(directory / "results"),
        register="bibleqa-e2e",
    )
    summary = run_sweep(options, settings, lm_studio=False, n_ctx=local_lm.n_ctx, echo=lines.append)
    return summary, lines, settings, mlflow_server


def children_of(uri: str, summary) -> list:
    client = mlflow.MlflowClient(uri)
    return client.search_runs(
        [summary.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{summary.parent_run_id}'"
    )


def test_every_trial_is_a_finished_child_run_with_the_names(sweep):
    summary, lines, settings, uri = sweep
    children = children_of(uri, summary)
    assert len(children) == summary.n_trials == 6 and summary.n_failed == 0
    assert len({child.data.params["optimizer"] for child in children}) >= 2
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["run_type"] == "trial"
        optimizer = child.data.params["optimizer"]
        assert re.fullmatch(rf"bible_qa_{optimizer}_{child.data.tags['trial_id']}_\d{{8}}_\d{{6}}", child.info.run_name)
        params = child.data.params
        assert params["model"] == params["lm_studio_model"] == settings.lm_model
        assert params["lm_studio_api_url"] == settings.lm_base and params["model_format"] == "completion"
        assert params["train_size"] == params["num_examples"] and "retrieval_k" in params
        if optimizer == "LabeledFewShot":
            assert "max_bootstrapped_demos" not in params  # only the chosen optimizer's parameters
        else:
            assert {"max_bootstrapped_demos", "max_labeled_demos", "max_rounds"} <= set(params)
        assert set(child.data.metrics) == set(REPORTED_METRICS)
        assert not RAY_BOOKKEEPING & set(child.data.metrics)
        for name in TRACKED_METRICS:
            assert 0.0 <= child.data.metrics[name] <= 1.0
        artifacts = {entry.path for entry in mlflow.MlflowClient(uri).list_artifacts(child.info.run_id)}
        assert {"program.json", "sample_predictions.json", "question_scores.csv"} <= artifacts
    # What a person sees: a line per finished trial.
    assert sum(line.startswith("[") and " trial " in line for line in lines) == 6


def test_the_parent_names_the_winner_by_the_rule(sweep):
    summary, _, _, uri = sweep
    client = mlflow.MlflowClient(uri)
    parent = client.get_run(summary.parent_run_id)
    assert re.fullmatch(r"sweep_e2e_\d{8}_\d{6}", parent.info.run_name)
    assert parent.info.status == "FINISHED" and parent.data.tags["run_type"] == "sweep"
    ranked = rank_runs(children_of(uri, summary), "theological_match_score", "max")
    winner = ranked[0]
    assert parent.data.tags["best_run_id"] == winner.info.run_id == summary.best_run_id
    assert parent.data.tags["best_trial_id"] == winner.data.tags["trial_id"]
    metrics = parent.data.metrics
    for name in TRACKED_METRICS:
        assert metrics[f"best_{name}"] == pytest.approx(winner.data.metrics[name])
        assert f"test_{name}" in metrics
        assert name not in metrics  # so "metrics.accuracy > 0.8" matches trial runs only
    assert metrics["n_trials"] == 6 and metrics["n_failed"] == 0
    assert metrics["total_lm_calls"] == pytest.approx(sum(r.data.metrics["lm_calls"] for r in ranked))
    assert metrics["max_lm_calls_in_flight"] <= 1  # the bundled server has one slot
    assert metrics["best_ci_low"] <= metrics["best_theological_match_score"] <= metrics["best_ci_high"]
    params = parent.data.params
    for name in ("space_file", "space_sha256", "search", "seed", "n_trials_budget", "concurrency", "model",
                 "data_sha256", "dspy_version", "n_ctx"):  # fmt: skip
        assert name in params, name
    artifacts = {entry.path for entry in client.list_artifacts(summary.parent_run_id)}
    assert {
        "trials.csv",
        "summary.md",
        "program.json",
        "optimization_history.png",
        "parallel_coordinates.png",
    } <= artifacts
    summary_md = Path(mlflow.artifacts.download_artifacts(run_id=summary.parent_run_id, artifact_path="summary.md",
                                                         tracking_uri=uri)).read_text()  # fmt: skip
    assert "How sure is the pick?" in summary_md and "> 0.80" in summary_md
    trials_csv = Path(summary.sweep_dir, "trials.csv").read_text().splitlines()
    assert len(trials_csv) == 7 and trials_csv[0].startswith("trial_id,run_id")


def test_the_winners_model_loads_and_answers(sweep):
    summary, _, settings, uri = sweep
    mlflow.set_tracking_uri(uri)
    program = mlflow.dspy.load_model(summary.model_uri)
    mlflow.clear_active_model()
    with dspy.context(lm=build_lm(settings), adapter=build_adapter("completion")):
        prediction = program(question="Who built the ark?")
    assert isinstance(prediction.answer, str) and prediction.answer
    registered = mlflow.MlflowClient(uri).get_model_version_by_alias("bibleqa-e2e", "champion")
    assert registered.version == "1"


def test_the_seed_comparison_code_works_on_trial_runs(sweep, monkeypatch):
    summary, _, settings, uri = sweep
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(SEED_COMPARISON.replace("> 0.8", "> -1"), {})
    trial_ids = {child.info.run_id for child in children_of(uri, summary)}
    shown = set(re.findall(r"Run ID: (\w+)", printed.getvalue()))
    assert trial_ids <= shown and summary.parent_run_id not in shown
    assert f"Model: {settings.lm_model}" in printed.getvalue()


def test_pick_agrees_with_the_parent(sweep, local_lm):
    summary, _, _, uri = sweep
    assert pick_run(tracking_uri=uri).run_id == summary.best_run_id
    assert pick_run(tracking_uri=uri, sweep=summary.parent_run_id).model_uri == summary.model_uri
    command = [sys.executable, "-m", "sweeps.cli", "pick", "--tracking-uri", uri, "--json", "--ask",
               "Who built the ark?", "--lm-base", local_lm.base_url, "--model-format", "completion"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    picked = json.loads(result.stdout)
    assert picked["run_id"] == summary.best_run_id and picked["ask"]["answer"]
    nothing = subprocess.run(
        [sys.executable, "-m", "sweeps.cli", "pick", "--tracking-uri", uri, "--filter", "metrics.accuracy > 2"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert nothing.returncode == 1 and len(nothing.stderr.strip().splitlines()) == 1
    unknown = subprocess.run(
        [sys.executable, "-m", "sweeps.cli", "pick", "--tracking-uri", uri, "--experiment", "no_such_experiment"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert unknown.returncode == 2 and "does not exist" in unknown.stderr


def test_output_json_and_sweep_folder_hold_no_secret(sweep):
    summary, _, _, _ = sweep
    folder = Path(summary.sweep_dir)
    assert {"space.yaml", "sweep.json", "sweep.log", "summary.md", "trials.csv"} <= {p.name for p in folder.iterdir()}
    settings = json.loads((folder / "sweep.json").read_text())
    assert "api_key" not in json.dumps(settings)
    payload = summary.as_json()
    for key in ("parent_run_id", "best_run_id", "best_config", "best_metrics", "n_trials", "n_failed"):
        assert key in payload
