"""sweeps.journal: writes to MLflow journaled first, delivered in order and once, whatever the server does.

Each test writes through a journal to a real local MLflow store (sqlite), reached through a FAKE client
(``FlakyClient``) that passes every call on to a real ``MlflowClient`` but fails the calls a test picks:
before they reach the store (the server is away) or after (the store took the write, and the response was
lost).  What the store holds afterwards is read back with a plain ``MlflowClient``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pytest
import requests
from mlflow.entities import Metric, Param, RunTag
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from bibleqa.tracking import ensure_experiment
from sweeps import cli
from sweeps.journal import JOURNAL_FILE, MLflowJournal, sync_sweep
from sweeps.sweep_folder import PARENT_FILE


class FlakyClient:
    """A FAKE ``MlflowClient``: each call goes to the real client, unless the test said it fails.

    ``away``: every call fails before it reaches the store (connection refused).  ``lose``: the next call to
    that method reaches the store, then its response is lost.  ``refuse``: the next call to that method is
    refused as a bad request.  ``calls`` counts the calls that were tried."""

    def __init__(self, real: Any):
        self.real = real
        self.away = False
        self.lose: set[str] = set()
        self.refuse: set[str] = set()
        self.calls: list[str] = []

    def __getattr__(self, method: str) -> Any:
        target = getattr(self.real, method)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(method)
            if self.away:
                raise requests.ConnectionError("[Errno 111] Connection refused (FAKE)")
            if method in self.refuse:
                self.refuse.discard(method)
                raise mlflow.exceptions.MlflowException("FAKE bad request", error_code=INVALID_PARAMETER_VALUE)
            result = target(*args, **kwargs)
            if method in self.lose:
                self.lose.discard(method)
                raise mlflow.exceptions.MlflowException(
                    "API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/create failed with exception "
                    "('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))"
                )
            return result

        return call


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, str, Any]:
    """A real local MLflow store: its URI, an experiment id, and a plain client to read it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = ensure_experiment(uri, "journal")
    return uri, experiment_id, mlflow.MlflowClient(uri)


def journal_in(folder: Path, uri: str, flaky: FlakyClient, retry_every: float = 0.0) -> MLflowJournal:
    folder.mkdir(exist_ok=True)
    return MLflowJournal(folder, uri, client=flaky, retry_every=retry_every)


def runs_named(client: Any, experiment_id: str, name: str) -> list[Any]:
    return [run for run in client.search_runs([experiment_id]) if run.info.run_name == name]


def test_writes_made_while_mlflow_is_away_are_delivered_in_order_once_it_answers(tmp_path, store):
    uri, experiment_id, reader = store
    flaky = FlakyClient(mlflow.MlflowClient(uri))
    journal = journal_in(tmp_path / "sweep", uri, flaky)
    before = journal.create_run(experiment_id, run_name="made before", tags={"run_type": "trial"})
    flaky.away = True
    during = journal.create_run(experiment_id, run_name="made while away", tags={"run_type": "trial"})
    assert during.startswith("@journal-run-")  # no id from MLflow yet
    for step, value in enumerate([0.2, 0.5, 0.4], start=1):
        journal.log_metric(during, "score", value, 1000 + step, step)
    journal.set_tag(during, "attempt", "1")
    journal.set_tag(during, "attempt", "2")  # the later write wins, as it would have
    journal.log_batch(before, params=[Param("k", "3")], tags=[RunTag("note", f"see run {during}")])
    journal.set_terminated(during, status="FINISHED")
    assert journal.pending() == 8 and reader.search_runs([experiment_id], "attributes.status = 'FINISHED'") == []

    flaky.away = False
    journal.set_tag(before, "last", "written once MLflow answers")  # a write delivers what waited first
    assert journal.pending() == 0
    [run] = runs_named(reader, experiment_id, "made while away")
    assert journal.resolve(during) == run.info.run_id
    history = reader.get_metric_history(run.info.run_id, "score")
    assert [(point.step, point.value) for point in history] == [(1, 0.2), (2, 0.5), (3, 0.4)]
    assert run.data.tags["attempt"] == "2" and run.info.status == "FINISHED"
    first = reader.get_run(before)
    assert first.data.tags["note"] == f"see run {run.info.run_id}"  # the placeholder in a text, replaced
    assert first.data.params == {"k": "3"} and first.data.tags["last"] == "written once MLflow answers"


def test_a_create_whose_response_was_lost_makes_one_run(tmp_path, store):
    uri, experiment_id, reader = store
    flaky = FlakyClient(mlflow.MlflowClient(uri))
    journal = journal_in(tmp_path / "sweep", uri, flaky, retry_every=3600)
    flaky.lose.add("create_run")  # MLflow made the run; the sweep never heard back
    run_key = journal.create_run(experiment_id, run_name="trial one", tags={"run_type": "trial"})
    journal.set_tag(run_key, "attempt", "1")
    assert journal.pending() == 2
    journal.deliver(force=True)
    [run] = runs_named(reader, experiment_id, "trial one")
    assert journal.pending() == 0 and journal.resolve(run_key) == run.info.run_id
    assert run.data.tags["attempt"] == "1"


def test_metrics_whose_response_was_lost_are_not_doubled(tmp_path, store):
    uri, experiment_id, reader = store
    flaky = FlakyClient(mlflow.MlflowClient(uri))
    journal = journal_in(tmp_path / "sweep", uri, flaky, retry_every=3600)
    run_id = journal.create_run(experiment_id, run_name="trial", tags={})
    flaky.lose.add("log_batch")
    journal.log_batch(run_id, metrics=[Metric("accuracy", 0.5, 1234, 0)])
    journal.log_metric(run_id, "best", 0.5, 1235, 1)
    assert journal.pending() == 2
    journal.deliver(force=True)
    assert journal.pending() == 0
    assert [(p.step, p.value) for p in reader.get_metric_history(run_id, "accuracy")] == [(0, 0.5)]
    assert len(reader.get_metric_history(run_id, "best")) == 1


def test_sync_in_a_new_process_delivers_the_rest_and_a_second_sync_changes_nothing(tmp_path, store, monkeypatch):
    uri, experiment_id, reader = store
    folder = tmp_path / "sweep"
    flaky = FlakyClient(mlflow.MlflowClient(uri))
    journal = journal_in(folder, uri, flaky)
    flaky.lose.add("create_run")  # the create reached MLflow just as it went away
    run_key = journal.create_run(experiment_id, run_name="trial", tags={})
    flaky.away = True
    journal.log_batch(run_key, metrics=[Metric("accuracy", 0.75, 99, 0)])
    journal.set_terminated(run_key, status="FINISHED")
    (folder / "summary.json").write_text(json.dumps({"best_run_id": run_key, "mlflow_pending": 3}))
    (folder / PARENT_FILE).write_text(json.dumps({"tracking_uri": uri}))
    del journal  # the sweep's process ended

    first = sync_sweep(folder)
    assert (first.delivered, first.pending, first.rejected) == (3, 0, 0)
    [run] = runs_named(reader, experiment_id, "trial")
    assert run.info.status == "FINISHED" and len(reader.get_metric_history(run.info.run_id, "accuracy")) == 1
    assert json.loads((folder / "summary.json").read_text()) == {"best_run_id": run.info.run_id,
                                                                 "mlflow_pending": 0}  # fmt: skip
    journal_text = (folder / JOURNAL_FILE).read_text()
    second = sync_sweep(folder)
    assert (second.delivered, second.pending) == (0, 0) and (folder / JOURNAL_FILE).read_text() == journal_text
    assert len(reader.search_runs([experiment_id])) == 1


def test_a_refused_write_is_skipped_and_the_rest_are_delivered(tmp_path, store):
    uri, experiment_id, reader = store
    flaky = FlakyClient(mlflow.MlflowClient(uri))
    journal = journal_in(tmp_path / "sweep", uri, flaky)
    run_id = journal.create_run(experiment_id, run_name="trial", tags={})
    flaky.refuse.add("set_tag")
    journal.set_tag(run_id, "bad", "x")
    journal.set_terminated(run_id, status="FINISHED")
    assert journal.pending() == 0 and [entry["op"] for entry in journal.rejected()] == ["set_tag"]
    assert reader.get_run(run_id).info.status == "FINISHED" and "bad" not in reader.get_run(run_id).data.tags


def test_while_mlflow_is_away_a_write_tries_it_at_most_once_per_interval(tmp_path, store):
    uri, experiment_id, _ = store
    flaky = FlakyClient(mlflow.MlflowClient(uri))
    journal = journal_in(tmp_path / "sweep", uri, flaky, retry_every=3600)
    run_id = journal.create_run(experiment_id, run_name="trial", tags={})
    flaky.away = True
    for step in range(20):
        journal.log_metric(run_id, "score", 0.1, 1000 + step, step)
    assert flaky.calls == ["create_run", "log_metric"]  # one failed try, then the writes only wait
    assert journal.pending() == 20
    flaky.away = False
    assert journal.deliver(force=True) == 0


def test_sync_of_a_folder_that_is_no_sweep_says_so_in_one_line(tmp_path, capsys):
    assert cli.main(["sync", str(tmp_path)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert str(tmp_path) in line and "is not a sweep folder" in line and "bibleqa-sweep run printed" in line
