"""sweeps.mlflow_logging: the trial logger uses what Ray's MLflow callback sets up (its ``mlflow_util``, the
experiment by id, its client), keeps trials as child runs of the parent (with the checkout's source tags,
named by their settings), ends every run it opened, and logs the sweep's best-so-far on the parent.

Driven by hand, as Tune drives it, with FAKE trials (a name, a config, no error file), against a real local
MLflow store; no Ray instance is needed."""

from __future__ import annotations

from dataclasses import dataclass, field

import mlflow

from bibleqa.lm import LMSettings
from bibleqa.tracking import ensure_experiment, git_commit
from sweeps.journal import MLflowJournal
from sweeps.mlflow_logging import STOPPED, SweepMLflowCallback


@dataclass
class FakeTrial:
    """What the callback reads of a Tune trial."""

    trial_id: str
    config: dict = field(default_factory=lambda: {"optimizer": "LabeledFewShot", "max_labeled_demos": 2, "seed": 0})
    error_file: str | None = None


def test_trials_go_to_the_parents_experiment_as_child_runs_and_every_run_ends(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = ensure_experiment(uri, "sweeps_here")
    elsewhere = ensure_experiment(uri, "not_here")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", elsewhere)  # Ray's util would take it over a name: not over an id
    client = mlflow.MlflowClient(uri)
    parent = client.create_run(experiment_id, run_name="sweep_x").info.run_id
    lines: list[str] = []
    journal = MLflowJournal(tmp_path, uri)  # every write goes through the sweep's journal
    callback = SweepMLflowCallback(journal=journal, tracking_uri=uri, experiment_id=experiment_id, parent_run_id=parent,
                                   lm_settings=LMSettings(lm_model="m"), total_trials=2, echo=lines.append)  # fmt: skip
    callback.setup()
    assert callback.mlflow_util.experiment_id == experiment_id
    done, cut = FakeTrial("t1"), FakeTrial("t2")
    callback.log_trial_start(done)
    callback.log_trial_start(cut)
    callback.log_trial_result(1, done, {"theological_match_score": 0.5, "lm_calls": 7, "pid": 123})
    callback.log_trial_end(done)
    callback.close_open_runs()  # the sweep stopped before t2 ended

    runs = {run.data.tags["trial_id"]: run for run in client.search_runs([experiment_id], "tags.run_type = 'trial'")}
    assert client.search_runs([elsewhere]) == []
    assert set(runs) == {"t1", "t2"}
    assert {run.data.tags["mlflow.parentRunId"] for run in runs.values()} == {parent}
    assert runs["t1"].info.status == "FINISHED" and runs["t1"].data.metrics == {"theological_match_score": 0.5,
                                                                                 "lm_calls": 7.0}  # fmt: skip
    assert runs["t1"].data.params["max_labeled_demos"] == "2" and runs["t1"].data.params["model"] == "m"
    assert runs["t2"].info.status == "KILLED" and runs["t2"].data.tags["last_error"] == STOPPED
    assert [record.status for record in callback.records.values()] == ["FINISHED", "KILLED"]
    assert callback.records["t1"].trial.params == {"max_labeled_demos": 2}  # the typed config, parsed once
    assert lines[0].startswith("[1/2] trial t1 LabeledFewShot")
    callback.close_open_runs()  # nothing left open: nothing changes
    assert client.get_run(runs["t1"].info.run_id).info.status == "FINISHED"


def test_the_parent_logs_the_best_so_far_at_one_step_per_finished_trial(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = ensure_experiment(uri, "sweeps_here")
    client = mlflow.MlflowClient(uri)
    parent = client.create_run(experiment_id, run_name="sweep_x").info.run_id
    journal = MLflowJournal(tmp_path, uri)  # every write goes through the sweep's journal
    callback = SweepMLflowCallback(journal=journal, tracking_uri=uri, experiment_id=experiment_id, parent_run_id=parent,
                                   lm_settings=LMSettings(lm_model="m"), total_trials=4)  # fmt: skip
    callback.setup()
    scores = {"t1": 0.5, "t2": None, "t3": 0.3, "t4": 0.7}  # t2 fails: it adds no step
    for trial_id, score in scores.items():
        trial = FakeTrial(trial_id)
        callback.log_trial_start(trial)
        if score is not None:
            callback.log_trial_result(1, trial, {"theological_match_score": score})
        callback.log_trial_end(trial, failed=score is None)
    history = client.get_metric_history(parent, "best_theological_match_score")
    assert [(point.step, point.value) for point in history] == [(1, 0.5), (2, 0.5), (3, 0.7)]
    runs = client.search_runs([experiment_id], "tags.run_type = 'trial'")
    assert {run.data.tags["mlflow.source.git.commit"] for run in runs} == {git_commit()}  # this checkout's
    assert {run.data.tags["mlflow.source.type"] for run in runs} == {"LOCAL"}
    # Named by their settings first, then the order they started in.
    names = sorted(run.info.run_name for run in runs)
    assert [name.split(" bible_qa_")[0] for name in names] == [f"labeled l2 k3 n16 #{n}" for n in (1, 2, 3, 4)]
