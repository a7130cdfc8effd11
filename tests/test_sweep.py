"""End to end: a 6-trial sweep over two optimizer types against the real bundled LM, a real ``mlflow server``
and a real local Ray instance; then ``pick``.  The LM is reached through a counting pass-through proxy, so
the tests see what the server saw.  (Sweeps against a FAKE LM, faults among them, are in
``test_sweep_fake_lm.py``.)"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dspy
import mlflow
import pytest

from bibleqa.dataset import load_dataset
from bibleqa.dspy_lm import lm_context
from bibleqa.evaluate import evaluate
from bibleqa.lm import LMSettings
from bibleqa.metrics import TRACKED_METRICS
from sweeps import run_sweep
from sweeps.pick import pick_run, program_from_params
from sweeps.trial import REPORTED_METRICS
from tests.fakes import CountingProxy
from tests.helpers import SEED_COMPARISON, small_data

pytestmark = [pytest.mark.lm, pytest.mark.mlflow_server, pytest.mark.slow, pytest.mark.ray]

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


PLANTED_KEY = "sk-planted-e2e-91c4b7"


@dataclass
class Sweep:
    summary: Any
    lines: list[str]
    settings: LMSettings
    uri: str
    proxy: CountingProxy
    directory: Path
    dataset: Any
    posts_after_sweep: int

    def __iter__(self):  # summary, lines, settings, uri
        return iter((self.summary, self.lines, self.settings, self.uri))


@pytest.fixture(scope="module")
def sweep(local_lm, mlflow_server, tmp_path_factory):
    """The sweep, through a counting pass-through proxy in front of the real LM, with a planted API key and
    every DSPy cache (the driver's and the trials') inside this module's folder."""
    directory = tmp_path_factory.mktemp("sweep")
    space = directory / "e2e.yaml"
    space.write_text(SPACE)
    proxy = CountingProxy(local_lm.base_url)
    settings = LMSettings(lm_base=proxy.base_url, lm_model=local_lm.model, model_format="completion",
                          server="bundled", slots=1, n_ctx=local_lm.n_ctx)  # fmt: skip
    lines: list[str] = []
    data = small_data(directory, train=24, dev=8, test=4)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LM_STUDIO_API_KEY", PLANTED_KEY)
        patch.setenv("DSPY_CACHEDIR", str(directory / "trials_dspy_cache"))  # the Ray workers' cache
        dspy.configure_cache(enable_disk_cache=True, disk_cache_dir=str(directory / "driver_dspy_cache"))
        summary = run_sweep(
            str(space),
            lm=settings,
            trials=6,
            search="tpe",
            n_startup_trials=3,
            data=str(data),
            tracking_uri=mlflow_server,
            storage=str(directory / "results"),
            register="bibleqa-e2e",
            echo=lines.append,
        )
    (directory / "summary.json").write_text(json.dumps(summary.as_json()))
    yield Sweep(summary, lines, settings, mlflow_server, proxy, directory, load_dataset(data), proxy.posts)
    proxy.close()


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
        params = child.data.params
        # Named by the settings that tell trials apart, first (sweeps.run_names), then number and timestamp.
        alias = {"LabeledFewShot": "labeled", "BootstrapFewShot": "bootstrap"}[optimizer]
        label = rf"{alias} (b\d+ )?l\d+ k{params['retrieval_k']} n{params['train_size']}"
        assert re.fullmatch(rf"{label}( \S+)* #\d bible_qa_\d{{8}}_\d{{6}}", child.info.run_name)
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


def winner_by_the_readme(children: list) -> Any:
    """The README's rule, written out: highest theological_match_score, then highest accuracy, then fewest
    lm_calls, then the smallest trial id."""
    tied = children
    for name, pick in (("theological_match_score", max), ("accuracy", max), ("lm_calls", min)):
        best = pick(child.data.metrics[name] for child in tied)
        tied = [child for child in tied if child.data.metrics[name] == best]
    return min(tied, key=lambda child: child.data.tags["trial_id"])


def test_the_parent_names_the_winner_by_the_rule(sweep):
    summary, _, _, uri = sweep
    client = mlflow.MlflowClient(uri)
    parent = client.get_run(summary.parent_run_id)
    assert re.fullmatch(r"sweep_e2e_\d{8}_\d{6}", parent.info.run_name)
    assert parent.info.status == "FINISHED" and parent.data.tags["run_type"] == "sweep"
    children = children_of(uri, summary)
    winner = winner_by_the_readme(children)
    assert parent.data.tags["best_run_id"] == winner.info.run_id == summary.best_run_id
    assert parent.data.tags["best_trial_id"] == winner.data.tags["trial_id"]
    metrics = parent.data.metrics
    for name in TRACKED_METRICS:
        assert metrics[f"best_{name}"] == pytest.approx(winner.data.metrics[name])
        assert name not in metrics  # so "metrics.accuracy > 0.8" matches trial runs only
    assert metrics["n_trials"] == 6 and metrics["n_failed"] == 0
    assert metrics["total_lm_calls"] == pytest.approx(sum(child.data.metrics["lm_calls"] for child in children))
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
    assert f"## Winner: trial {winner.data.tags['trial_id']} (run {winner.info.run_id})" in summary_md
    assert "param_importances.png" not in artifacts  # 6 trials: importances from so few would be noise
    trials_csv = Path(summary.sweep_dir, "trials.csv").read_text().splitlines()
    assert len(trials_csv) == 7 and trials_csv[0].startswith("rank,theological_match_score,trial_id,run_id")
    assert trials_csv[1].startswith(f"1,{summary.best_metrics['theological_match_score']},")
    assert trials_csv[1].split(",")[3] == summary.best_run_id


def winners_program(sweep: Sweep) -> Any:
    """The winner's compiled program, rebuilt from its own child run's program.json."""
    path = mlflow.artifacts.download_artifacts(
        run_id=sweep.summary.best_run_id, artifact_path="program.json", tracking_uri=sweep.uri
    )
    config = mlflow.MlflowClient(sweep.uri).get_run(sweep.summary.best_run_id).data.params
    program = program_from_params(config)
    program.load(path)
    return program


def test_the_test_metrics_are_the_winners_scores_on_the_test_split(sweep):
    # Scored again, with the driver's response cache: every prompt must be one the sweep already sent.
    dspy.configure_cache(enable_disk_cache=True, disk_cache_dir=str(sweep.directory / "driver_dspy_cache"))
    sent = sweep.proxy.posts
    with lm_context(sweep.settings):
        again = evaluate(winners_program(sweep), sweep.dataset.examples("test"))
    assert sweep.proxy.posts == sent  # no new call: the sweep scored this program on these questions
    parent = mlflow.MlflowClient(sweep.uri).get_run(sweep.summary.parent_run_id).data.metrics
    for name in TRACKED_METRICS:
        assert parent[f"test_{name}"] == pytest.approx(again.metrics[name])
    assert parent["test_n_errors"] == again.n_errors


def test_lm_calls_in_flight_never_exceed_the_slot_and_every_trial_call_takes_it(sweep):
    children = children_of(sweep.uri, sweep.summary)
    trial_calls = sum(child.data.metrics["lm_calls"] for child in children)
    # A cache hit sends nothing and holds no slot: what went out is lm_calls - lm_cache_hits.
    sent = sum(child.data.metrics["lm_calls"] - child.data.metrics["lm_cache_hits"] for child in children)
    slot_stats = sweep.summary.slot_stats
    assert trial_calls > 0 and sweep.proxy.posts > 0
    assert sweep.proxy.max_in_flight == 1  # the server's side: one call at a time, as the one slot allows
    assert slot_stats["lm_slots"] == 1 and slot_stats["max_lm_calls_in_flight"] == 1
    assert slot_stats["lm_calls_through_slots"] == sent  # every request of every trial took the slot
    # The server's own count: the trials' requests, then the winner's test questions (a fresh driver cache).
    assert sweep.posts_after_sweep == sent + len(sweep.dataset.test)


def test_the_winners_model_is_the_winners_program(sweep):
    summary, _, settings, uri = sweep
    mlflow.set_tracking_uri(uri)
    model = mlflow.dspy.load_model(summary.model_uri)
    mlflow.clear_active_model()
    rebuilt = winners_program(sweep)
    assert [dict(demo) for demo in model.answer_question.demos] == [dict(d) for d in rebuilt.answer_question.demos]
    # Both send the same prompt for the same question: watch the two requests through the proxy.
    first = sweep.proxy.posts
    with lm_context(replace(settings, cache=False)):
        from_model = model(question="Who built the ark?")
        from_state = rebuilt(question="Who built the ark?")
    assert sweep.proxy.posts == first + 2
    assert sweep.proxy.bodies[-1] == sweep.proxy.bodies[-2]
    assert isinstance(from_model.answer, str) and from_model.references == from_state.references
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


def test_nothing_the_sweep_wrote_holds_the_api_key(sweep, mlflow_server_root):
    summary = sweep.summary
    folder = Path(summary.sweep_dir)
    assert {"space.yaml", "sweep.json", "sweep.log", "summary.md", "trials.csv"} <= {p.name for p in folder.iterdir()}
    payload = summary.as_json()
    for key in ("parent_run_id", "best_run_id", "best_config", "best_metrics", "n_trials", "n_failed"):
        assert key in payload
    written = [path for root in (sweep.directory, mlflow_server_root) for path in root.rglob("*") if path.is_file()]
    names = {path.name for path in written}
    assert {"sweep.json", "sweep.log", "summary.json", "program.json", "mlflow.db"} <= names
    assert any(path.suffix == ".pkl" for path in written)  # the winner's pickled MLflow model
    assert any("trials_dspy_cache" in str(path) for path in written)  # the trials' response cache
    assert [str(path) for path in written if PLANTED_KEY.encode() in path.read_bytes()] == []
