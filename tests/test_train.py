"""bibleqa.train: one tracked run against the real bundled LM, with a real ``mlflow server`` and with the
local SQLite store; ``bibleqa train``'s flags reaching the run's params, and the run's DSPy traces of its
compile and evaluation, against a scripted FAKE LM."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import dspy
import mlflow
import pytest

from bibleqa.dataset import load_dataset
from bibleqa.lm import LMSettings
from bibleqa.metrics import TRACKED_METRICS
from bibleqa.train import TrainConfig, run_training
from tests.fakes import EVERY_FIELD_ANSWER, chat_body, completion_body
from tests.helpers import SEED_COMPARISON, small_data

CONFIG = TrainConfig(optimizer="LabeledFewShot", train_size=4, max_labeled_demos=2, retrieval_k=1)


@pytest.mark.lm
@pytest.mark.slow
def test_a_run_against_a_real_mlflow_server(local_lm, mlflow_server, tmp_path, monkeypatch):
    settings = LMSettings(lm_base=local_lm.base_url, lm_model=local_lm.model, model_format="completion",
                          server="bundled", slots=1, n_ctx=local_lm.n_ctx)  # fmt: skip
    data = small_data(tmp_path)
    result = run_training(CONFIG, settings, data=str(data), tracking_uri=mlflow_server)
    run = mlflow.MlflowClient(mlflow_server).get_run(result.run_id)

    assert re.fullmatch(r"bible_qa_model_\d{8}_\d{6}", run.info.run_name)
    assert run.info.status == "FINISHED"
    assert run.data.tags["run_type"] == "train"
    experiment = mlflow.MlflowClient(mlflow_server).get_experiment(run.info.experiment_id)
    assert experiment.name == "dspy_bible_qa" and experiment.artifact_location
    params = run.data.params
    assert params["model"] == params["lm_studio_model"] == "gemma-3-270m"
    assert params["lm_studio_api_url"] == local_lm.base_url
    assert params["model_format"] == "completion"
    assert params["optimizer"] == "LabeledFewShot"
    assert params["train_size"] == params["num_examples"] == "4"
    assert params["retrieval_k"] == "1" and params["max_labeled_demos"] == "2"
    assert params["lm_studio"] == "false"
    for name in ("data_sha256", "git_commit", "dspy_version", "mlflow_version", "llama_cpp_python_version",
                 "n_ctx", "temperature", "cache", "litellm_version"):  # fmt: skip
        assert name in params, name
    for name in TRACKED_METRICS:
        assert 0.0 <= run.data.metrics[name] <= 1.0
    assert run.data.metrics == {**run.data.metrics, **result.metrics}

    artifacts = {entry.path for entry in mlflow.MlflowClient(mlflow_server).list_artifacts(result.run_id)}
    assert {"sample_predictions.json", "question_scores.csv", "program.json"} <= artifacts
    samples = json.loads(
        Path(mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="sample_predictions.json",
                                                 tracking_uri=mlflow_server)).read_text()
    )  # fmt: skip
    assert {"questions", "predictions", "ground_truth", "scores", "sampling"} <= set(samples)
    assert len(samples["questions"]) == 6  # fewer dev questions than a sample: all of them

    # A trace per dev question (LabeledFewShot's compile calls no LM); one opened: the answer the run scored.
    client = mlflow.MlflowClient(mlflow_server)
    traces = client.search_traces(locations=[run.info.experiment_id], run_id=result.run_id, max_results=100)
    dev = [item.question for item in load_dataset(data).dev]
    assert sorted(root_span(trace).inputs["question"] for trace in traces) == sorted(dev)
    scores = Path(mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="question_scores.csv",
                                                      tracking_uri=mlflow_server)).read_text()  # fmt: skip
    first = next(csv.DictReader(io.StringIO(scores)))
    trace = client.get_trace(
        next(t.info.trace_id for t in traces if root_span(t).inputs["question"] == first["question"])
    )
    assert root_span(trace).outputs["answer"] == first["answer"]
    assert [span.name for span in trace.data.spans].count("LM.__call__") == 1

    # The MLflow model loads and answers through a configured LM.
    mlflow.set_tracking_uri(mlflow_server)
    loaded = mlflow.dspy.load_model(result.model_uri)
    mlflow.clear_active_model()  # load_model makes it MLflow's "active model", which later metrics would join
    from bibleqa.dspy_lm import build_adapter, build_lm

    with dspy.context(lm=build_lm(settings), adapter=build_adapter("completion")):
        answer = loaded(question="Who built the ark?")
    assert isinstance(answer.answer, str) and answer.answer
    assert len(loaded.answer_question.demos) == 2

    # The seed's "Comparing Different Models" code, as written, against what we logged.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    for threshold, expect_our_run in (("0.8", result.metrics["accuracy"] > 0.8), ("-1", True)):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(SEED_COMPARISON.replace("> 0.8", f"> {threshold}"), {})
        assert (f"Run ID: {result.run_id}" in printed.getvalue()) == expect_our_run
    assert "Model: gemma-3-270m" in printed.getvalue()


@pytest.mark.lm
@pytest.mark.slow
def test_no_file_the_run_writes_holds_the_api_key(local_lm, tmp_path, monkeypatch, dspy_cache_dir):
    planted = "sk-planted-bibleqa-7f3a9c1e"
    monkeypatch.setenv("LM_STUDIO_API_KEY", planted)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = LMSettings(lm_base=local_lm.base_url, lm_model=local_lm.model, model_format="completion",
                          server="bundled", slots=1)  # fmt: skip
    result = run_training(CONFIG, settings, data=str(small_data(tmp_path)))

    assert result.tracking_uri == "sqlite:///mlflow.db"  # MLflow's own default, in the working directory
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.name == "mlflow.db" for path in written)
    assert any(path.suffix == ".pkl" for path in written)  # the pickled MLflow model is among them
    assert dspy_cache_dir.exists()  # so is the DSPy response cache
    leaks = [str(path) for path in written if planted.encode() in path.read_bytes()]
    assert leaks == []


@pytest.mark.slow
def test_the_related_passages_flag_reaches_the_run_and_its_references(fake_lm_server, tmp_path):
    fake = fake_lm_server([(200, chat_body(EVERY_FIELD_ANSWER))])  # answers "Noah", cites Genesis 6:14
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    data = str(small_data(tmp_path, dev=2))
    command = [sys.executable, "-m", "bibleqa.cli", "train", "--lm-base", fake.base_url, "--lm-model", "fake-model",
               "--retries", "0", "--optimizer", "LabeledFewShot", "--num-examples", "2", "--retrieval-k", "1",
               "--related-passages", "7", "--data", data, "--tracking-uri", uri]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr

    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("dspy_bible_qa").experiment_id])
    assert run.data.params["related_passages"] == "7"
    scores = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="question_scores.csv",
                                                      tracking_uri=uri)).read_text()  # fmt: skip
    for row in list(csv.DictReader(io.StringIO(scores))):
        references = row["references"].split("; ")
        assert references[0] == "Genesis 6:14"  # cited, then 1 retrieved (unless the same), then 7 related
        assert len(references) in (1 + 1 + 7, 1 + 7)


def root_span(trace):
    """The span of a trace that has no parent: the program call."""
    (root,) = [span for span in trace.data.spans if span.parent_id is None]
    return root


@pytest.mark.slow
def test_the_compile_and_the_evaluation_are_traced_under_the_run(fake_lm_server, tmp_path):
    data = small_data(tmp_path, train=3, dev=4, test=1)
    dataset = load_dataset(data)
    fake = fake_lm_server([], answer=lambda request: (200, completion_body(" Noah\nReferences: Genesis 6:14")))
    settings = LMSettings(lm_base=fake.base_url, lm_model="fake-model", model_format="completion", retries=0)
    # BootstrapFewShot's teacher answers every train question during the compile: one trace each.
    config = TrainConfig(optimizer="BootstrapFewShot", train_size=3, max_bootstrapped_demos=3, max_labeled_demos=0,
                         retrieval_k=0, related_passages=0)  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_training(config, settings, data=str(data), tracking_uri=uri)

    client = mlflow.MlflowClient(uri)
    traces = client.search_traces(locations=[result.experiment_id], run_id=result.run_id, max_results=100)
    asked = sorted(root_span(trace).inputs["question"] for trace in traces)
    train = [item.question for item in dataset.train[:3]]
    dev = [item.question for item in dataset.dev]
    assert asked == sorted(train + dev)  # every call of the compile and of the dev pass, and nothing else
    assert len(fake.requests) == len(asked)

    # One dev trace, opened: the program's answer, and the LM call under it with the prompt the server got.
    trace = client.get_trace(next(t.info.trace_id for t in traces if root_span(t).inputs["question"] == dev[0]))
    assert root_span(trace).outputs["answer"] == "Noah"
    lm_spans = [span for span in trace.data.spans if span.name == "LM.__call__"]
    assert len(lm_spans) == 1 and dev[0] in json.dumps(lm_spans[0].inputs)
    assert trace.info.request_metadata["mlflow.sourceRun"] == result.run_id

    # MLflow's own compile and eval logging stay off: no extra run, no artifact or param of its own.
    (run,) = client.search_runs([result.experiment_id])
    assert run.info.run_id == result.run_id
    artifacts = {entry.path for entry in client.list_artifacts(result.run_id)}
    assert artifacts == {"sample_predictions.json", "question_scores.csv", "program.json"}
    assert "trainset" not in run.data.params and "eval" not in run.data.metrics
    # Autologging is off again, and nothing of it is left in DSPy's settings.
    assert not [callback for callback in dspy.settings.callbacks if type(callback).__name__ == "MlflowCallback"]
