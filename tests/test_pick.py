"""sweeps.pick and ``bibleqa-sweep pick``: the winner of a sweep, read back from MLflow.

The store is a real local MLflow store (SQLite) filled with runs whose metrics the test sets, so the
expected pick follows from the data: the winner rule is the objective, then accuracy, then fewer LM calls,
then trial id.  Run t3 carries a logged model (registered, alias ``champion``); the parent's
``best_model_uri`` tag names another, so a pick whose model is t3's read it from the run itself."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import mlflow
import pytest
from mlflow.entities import LoggedModelOutput

from bibleqa.errors import UserError
from bibleqa.tracking import log_batch
from sweeps.pick import NothingMatched, pick_run

TRIALS = {  # trial id: (theological_match_score, accuracy, lm_calls)
    "t1": (0.50, 0.40, 90),
    "t2": (0.70, 0.30, 80),  # the highest objective
    "t3": (0.70, 0.30, 60),  # tied with t2, fewer calls: the winner
    "t4": (0.10, 0.90, 10),  # the lowest objective
    "t5": (0.10, 0.95, 10),  # tied with t4, higher accuracy: the winner of --mode min
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two sweeps in a SQLite store: an older one with one trial, and the latest with TRIALS plus one
    FAILED trial that would win if it counted."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('pick') / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("dspy_bible_qa")

    def sweep(name: str, trials: dict, failed: bool = False) -> tuple[str, dict[str, str]]:
        parent = client.create_run(experiment_id, run_name=name, tags={"run_type": "sweep"}).info.run_id
        ids = {}
        for trial_id, (score, accuracy, calls) in trials.items():
            tags = {"mlflow.parentRunId": parent, "run_type": "trial", "trial_id": trial_id}
            run = client.create_run(experiment_id, run_name=f"bible_qa_LabeledFewShot_{trial_id}", tags=tags)
            metrics = {"theological_match_score": score, "accuracy": accuracy, "lm_calls": calls}
            log_batch(run.info.run_id, params={"optimizer": "LabeledFewShot", "retrieval_k": 1}, metrics=metrics,
                      client=client)  # fmt: skip
            client.set_terminated(run.info.run_id, status="FINISHED")
            ids[trial_id] = run.info.run_id
        if failed:
            tags = {"mlflow.parentRunId": parent, "run_type": "trial", "trial_id": "t9"}
            run = client.create_run(experiment_id, run_name="bible_qa_failed", tags=tags)
            log_batch(run.info.run_id, metrics={"theological_match_score": 1.0, "accuracy": 1.0}, client=client)
            client.set_terminated(run.info.run_id, status="FAILED")
            ids["t9"] = run.info.run_id
        client.set_tag(parent, "best_run_id", ids.get("t3", ""))
        client.set_tag(parent, "best_model_uri", "models:/m-not-on-the-run")
        client.set_terminated(parent, status="FINISHED")
        return parent, ids

    old_parent, old_ids = sweep("sweep_old", {"t0": (0.99, 0.99, 1)})
    time.sleep(0.05)  # the latest sweep starts later
    parent, ids = sweep("sweep_new", TRIALS, failed=True)
    # The winner's model on the winner's run, as the sweep logs it (a model with no files suffices here).
    model = client.create_logged_model(experiment_id, name="bible_qa_LabeledFewShot_l2", source_run_id=ids["t3"])
    client.log_outputs(ids["t3"], [LoggedModelOutput(model.model_id, 0)])
    client.create_registered_model("pick-test")
    version = client.create_model_version(
        "pick-test", model.artifact_location, run_id=ids["t3"], model_id=model.model_id
    )
    client.set_registered_model_alias("pick-test", "champion", version.version)
    ids["model"] = model.model_uri
    return uri, parent, ids, old_parent, old_ids


def test_the_latest_sweeps_winner_by_the_rule(store):
    uri, parent, ids, _, _ = store
    choice = pick_run(tracking_uri=uri)
    assert choice.run_id == ids["t3"]
    assert choice.parent_run_id == parent
    assert choice.candidates == 5  # finished trials only
    assert choice.model_uri == ids["model"]  # read from the winner's own run, not the parent's tag
    assert choice.program_uri == f"runs:/{ids['t3']}/program.json"
    assert choice.metrics["lm_calls"] == 60 and choice.config["retrieval_k"] == "1"


def test_mode_min_and_another_metric(store):
    uri, _, ids, _, _ = store
    assert pick_run(tracking_uri=uri, mode="min").run_id == ids["t5"]
    assert pick_run(tracking_uri=uri, metric="accuracy").run_id == ids["t5"]
    assert pick_run(tracking_uri=uri, metric="lm_calls", mode="min").run_id == ids["t5"]  # tie t4/t5: accuracy
    with pytest.raises(UserError, match="--mode 'best' is not one of max, min"):
        pick_run(tracking_uri=uri, mode="best")


def test_an_older_sweep_by_its_parent_id(store):
    uri, _, _, old_parent, old_ids = store
    choice = pick_run(tracking_uri=uri, sweep=old_parent)
    assert choice.run_id == old_ids["t0"] and choice.candidates == 1
    assert choice.model_uri is None  # no model on that run


def test_a_filter_narrows_the_candidates(store):
    uri, _, ids, _, _ = store
    choice = pick_run(tracking_uri=uri, filter="metrics.accuracy > 0.35")
    assert choice.run_id == ids["t1"] and choice.candidates == 3  # t1, t4, t5 have accuracy > 0.35
    assert pick_run(tracking_uri=uri, filter="metrics.lm_calls < 70 and metrics.accuracy < 0.35").candidates == 1
    with pytest.raises(UserError, match="MLflow rejected the request"):
        pick_run(tracking_uri=uri, filter="metrics.lm_calls < 20 or metrics.accuracy < 0.35")  # MLflow has no OR
    with pytest.raises(NothingMatched, match="no finished trial of sweep sweep_new has theological_match_score"):
        pick_run(tracking_uri=uri, filter="metrics.accuracy > 2")


def test_a_run_by_its_id(store):
    uri, parent, ids, _, _ = store
    choice = pick_run(tracking_uri=uri, run=ids["t4"])
    assert choice.run_id == ids["t4"] and choice.parent_run_id == parent and choice.candidates == 1
    assert choice.model_uri is None  # no model on that run
    assert pick_run(tracking_uri=uri, run=ids["t3"]).model_uri == ids["model"]
    with pytest.raises(UserError, match=f"run {parent} is a sweep's parent run; pass --sweep {parent} instead"):
        pick_run(tracking_uri=uri, run=parent)
    with pytest.raises(UserError, match="is not a sweep's parent run"):
        pick_run(tracking_uri=uri, sweep=ids["t4"])


def test_a_model_uri_picks_the_run_it_was_logged_on(store):
    uri, parent, ids, _, _ = store
    model_id = ids["model"].removeprefix("models:/")
    for model in ("models:/pick-test@champion", "models:/pick-test/1", ids["model"]):
        choice = pick_run(tracking_uri=uri, model=model)
        assert (choice.run_id, choice.parent_run_id, choice.model_uri) == (ids["t3"], parent, f"models:/{model_id}")
    with pytest.raises(UserError, match="--model 'pick-test@champion' is not a models:/ URI"):
        pick_run(tracking_uri=uri, model="pick-test@champion")
    with pytest.raises(UserError, match="MLflow rejected the request"):
        pick_run(tracking_uri=uri, model="models:/pick-test@no-such-alias")


def pick(uri: str, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "sweeps.cli", "pick", "--tracking-uri", uri, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_the_command_exit_codes(store):
    uri, _, ids, _, _ = store
    by_run = pick(uri, "--run", ids["t1"], "--json")
    assert by_run.returncode == 0, by_run.stderr
    assert json.loads(by_run.stdout)["run_id"] == ids["t1"]
    lowest = pick(uri, "--mode", "min", "--json")
    assert json.loads(lowest.stdout)["run_id"] == ids["t5"]
    for malformed in ("metrics.accuracy >>> 0.5", "accuracy > 0.5", "metrics.accuracy > 'high"):
        result = pick(uri, "--filter", malformed)
        assert result.returncode == 2, (malformed, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bibleqa-sweep: error: MLflow rejected the request: "), lines
    nothing = pick(uri, "--filter", "metrics.accuracy > 2")
    assert nothing.returncode == 1 and len(nothing.stderr.strip().splitlines()) == 1
    unknown = pick(uri, "--run", "0" * 32)
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1
    champion = pick(uri, "--model", "models:/pick-test@champion", "--json")
    assert champion.returncode == 0, champion.stderr
    assert json.loads(champion.stdout)["run_id"] == ids["t3"]
    for bad in ("pick-test@champion", "models:/pick-test@no-such-alias"):
        result = pick(uri, "--model", bad)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, (bad, result.stderr)
