"""Sweeps against a FAKE LM server, on real Ray and a real local MLflow store: the guarantees that need no
real LM, and the faults a real LM cannot be made to show.

- LM calls in flight never exceed ``--concurrency``, as the server itself counts them, and every request of
  every trial takes a slot;
- trials never see a test question; the winner is scored on test once, after them;
- the API key goes out as the Authorization header and into no file;
- ``--seed`` beats the file's seed, and ``--search random`` runs the seeded random sampler;
- a failed trial is a FAILED run kept across retries; ``--time-budget`` and Ctrl-C end open runs KILLED;
  a crash leaves the parent FAILED with its error.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from bibleqa.dataset import load_dataset
from bibleqa.lm import LMSettings
from sweeps import run_sweep
from sweeps.search import make_searcher
from sweeps.space import load_space
from tests.fakes import ScriptedLMServer, completion_body, prompt_of
from tests.helpers import small_data

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PLANTED_KEY = "sk-planted-sweep-5e1d0c"
ANSWER = completion_body(" Noah\nReferences: Genesis 6:14")
SPACE = """
objective: {metric: theological_match_score, mode: max}
seed: 11
optimizers:
  LabeledFewShot:
    max_labeled_demos: {int: [1, 4]}
  BootstrapFewShot:
    max_bootstrapped_demos: {int: [1, 2]}
    max_labeled_demos: {int: [0, 3]}
train_size: {int: [2, 6]}
retrieval_k: {choice: [0, 1, 2]}
model_format: completion
"""


def children_of(uri: str, experiment_id: str, parent_id: str) -> list:
    client = mlflow.MlflowClient(uri)
    return client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")


@pytest.fixture(scope="module")
def fake_sweep(tmp_path_factory):
    """``bibleqa-sweep run`` as a person types it, against a FAKE LM with 2 slots that takes 0.2 s a call:
    6 trials, 4 at a time, random search with ``--seed 5`` over a space whose file says ``seed: 11``, a
    planted API key, no response cache (so the server sees every call)."""
    directory = tmp_path_factory.mktemp("fake_sweep")
    fake = ScriptedLMServer([(200, ANSWER)], ["fake-model"], latency=0.2)
    space = directory / "fake.yaml"
    space.write_text(SPACE)
    data = small_data(directory, train=8, dev=4, test=3)
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    command = [
        sys.executable, "-m", "sweeps.cli", "run", str(space), "--trials", "6", "--concurrency", "2",
        "--search", "random", "--seed", "5", "--lm-base", fake.base_url, "--model-format", "completion",
        "--no-cache", "--retries", "0", "--data", str(data), "--tracking-uri", uri,
        "--storage", str(directory / "results"), "--output-json", str(directory / "out.json"),
    ]  # fmt: skip
    env = {**os.environ, "LM_STUDIO_API_KEY": PLANTED_KEY}
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=directory, timeout=600)
    finally:
        fake.close()
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((directory / "out.json").read_text())
    children = children_of(uri, summary["experiment_id"], summary["parent_run_id"])
    return summary, children, fake, result, directory, uri, data, space


def test_the_sweep_ran_every_trial(fake_sweep):
    summary, children, _, result, *_ = fake_sweep
    assert summary["n_trials"] == 6 and summary["n_failed"] == 0 and len(children) == 6
    assert all(child.info.status == "FINISHED" for child in children)
    assert len(re.findall(r"^\[\d/6\] trial ", result.stdout, re.M)) == 6


def test_one_more_trial_than_slots_runs_at_a_time(fake_sweep):
    _, children, *_ = fake_sweep
    events = sorted(
        [(child.info.start_time, 1) for child in children] + [(child.info.end_time, -1) for child in children]
    )  # an end and a start at the same millisecond: the end first
    running, most = 0, 0
    for _, change in events:
        running += change
        most = max(most, running)
    assert 2 <= most <= 2 + 1  # --concurrency 2: trials overlapped, never more than three at once


def test_lm_calls_in_flight_never_exceed_the_concurrency_and_every_call_takes_a_slot(fake_sweep):
    summary, children, fake, *_ = fake_sweep
    trial_calls = sum(child.data.metrics["lm_calls"] for child in children)
    sent = sum(child.data.metrics["lm_calls"] - child.data.metrics["lm_cache_hits"] for child in children)
    n_test = len(load_dataset(fake_sweep[6]).test)
    assert trial_calls > 0 and sent == trial_calls  # --no-cache: no call was a cache hit
    assert 1 <= fake.max_in_flight <= 2  # the server's own count: never more than --concurrency 2
    assert summary["slot_stats"]["lm_calls_through_slots"] == sent  # every request of a trial took a slot
    # With no cache, the server saw every call: the trials' (all through slots) and the winner's test scoring.
    assert len(fake.requests) == trial_calls + n_test
    assert summary["slot_stats"]["max_lm_calls_in_flight"] == fake.max_in_flight


def test_trials_never_see_a_test_question(fake_sweep):
    _, _, fake, *_, data, _ = fake_sweep
    test_questions = [item.question for item in load_dataset(data).test]
    asked = [prompt_of(request) for request in fake.requests]
    holding = [index for index, prompt in enumerate(asked) if any(q in prompt for q in test_questions)]
    # Only the last requests, one per test question: the winner's scoring on test, after every trial.
    assert holding == list(range(len(asked) - len(test_questions), len(asked)))
    for question in test_questions:
        assert sum(prompt.endswith(f"Question: {question}\nAnswer:") for prompt in asked) == 1


def test_the_key_is_sent_and_no_file_holds_it(fake_sweep):
    summary, _, fake, result, directory, *_ = fake_sweep
    assert fake.requests and all(r["headers"]["authorization"] == f"Bearer {PLANTED_KEY}" for r in fake.requests)
    written = [path for path in directory.rglob("*") if path.is_file()]
    assert any(path.name == "mlflow.db" for path in written) and any(path.name == "sweep.json" for path in written)
    assert any(path.name == "program.json" for path in written) and any(path.suffix == ".pkl" for path in written)
    assert [str(path) for path in written if PLANTED_KEY.encode() in path.read_bytes()] == []
    assert PLANTED_KEY not in result.stdout + result.stderr
    assert Path(summary["sweep_dir"]).is_relative_to(directory)


def test_the_seed_flag_beats_the_files_seed_and_random_search_ran(fake_sweep):
    summary, children, *_, uri, data, space = fake_sweep
    parent = mlflow.MlflowClient(uri).get_run(summary["parent_run_id"])
    assert parent.data.params["seed"] == "5" and parent.data.params["search"] == "random"
    assert {child.data.params["seed"] for child in children} == {"5"}
    # The configs the trials ran are what seeded random search suggests with seed 5, not 11 (Tune starts
    # them four at a time, so their order is not kept: compare them as sorted lists).
    searched = load_space(space, train_split_size=len(load_dataset(data).train))
    names = ("optimizer", "max_labeled_demos", "max_bootstrapped_demos", "train_size", "retrieval_k")

    def key(config: dict) -> str:
        return json.dumps({name: str(config[name]) for name in names if name in config}, sort_keys=True)

    def suggested(seed: int) -> list[str]:
        searcher = make_searcher(searched, algorithm="random", seed=seed, n_startup_trials=10)
        return sorted(key(searcher.suggest(f"t{index}")) for index in range(6))

    ran = sorted(key(child.data.params) for child in children)
    assert ran == suggested(5)
    assert ran != suggested(11)


def test_when_every_trial_answers_alike_the_parent_says_the_pick_is_not_clear(fake_sweep):
    summary, children, *_, uri, _, _ = fake_sweep
    client = mlflow.MlflowClient(uri)

    def scores(run) -> tuple:
        path = client.download_artifacts(run.info.run_id, "question_scores.csv")
        rows = csv.DictReader(io.StringIO(Path(path).read_text()))
        return tuple(sorted((row["id"], row["theological_match_score"]) for row in rows))

    # By the data: the FAKE LM gives every question the same answer in every trial, so every trial scores
    # alike on every question (the objective; the references differ with retrieval_k), and no winner can
    # be told from its runner-up.
    assert len({scores(child) for child in children}) == 1
    description = client.get_run(summary["parent_run_id"]).data.tags["mlflow.note.content"]
    assert summary["best_run_id"] in description.splitlines()[0]
    assert "**The pick is NOT clear.**" in description.splitlines()[0]
    assert sorted(child.data.tags["sweep_rank"] for child in children) == ["1", "2", "3", "4", "5", "6"]


@pytest.fixture
def fake_lm(fake_lm_server):
    def start(script=None, latency: float = 0.0):
        return fake_lm_server(script or [(200, ANSWER)], latency=latency)

    return start


def options_for(tmp_path: Path, space: str, **overrides) -> tuple[str, dict]:
    """The space file and ``run_sweep``'s keywords for a sweep in ``tmp_path``."""
    path = tmp_path / "space.yaml"
    path.write_text(space)
    defaults = {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "storage": str(tmp_path / "results")}
    if "data" not in overrides:
        defaults["data"] = str(small_data(tmp_path, train=6, dev=2, test=1))
    return str(path), {**defaults, **overrides}


def test_failed_trials_are_failed_runs_kept_across_retries(fake_lm, tmp_path):
    fake = fake_lm([(500, {"error": "the FAKE server always fails"})])
    space = "optimizers:\n  BootstrapFewShot:\n    max_bootstrapped_demos: 1\ntrain_size: 4\nretrieval_k: 0\n"
    path, options = options_for(tmp_path, space, trials=2, max_failures=1)
    settings = LMSettings(
        lm_base=fake.base_url, lm_model="fake-model", model_format="completion", retries=0, n_ctx=4096
    )
    summary = run_sweep(path, lm=settings, **options)
    assert summary.n_trials == 2 and summary.n_failed == 2 and summary.best_run_id is None
    children = children_of(options["tracking_uri"], summary.experiment_id, summary.parent_run_id)
    assert len(children) == 2
    for child in children:
        assert child.info.status == "FAILED"
        assert child.data.tags["attempt"] == "2"  # one retry, the same run
        assert "HTTP 500" in child.data.tags["last_error"]
        assert "the FAKE server always fails" in child.data.tags["last_error"]
        assert (child.data.tags["sweep_rank"], child.data.tags["is_winner"]) == ("unranked", "false")
        assert child.data.tags["mlflow.note.content"].startswith("**Not ranked**: the trial ended FAILED: ")
    # Each attempt asks every dev question once: 2 trials x 2 attempts x 2 dev questions.
    dev = [item.question for item in load_dataset(options["data"]).dev]
    asked = [prompt_of(request) for request in fake.requests]
    assert sum(prompt.endswith(f"Question: {q}\nAnswer:") for prompt in asked for q in dev) == 2 * 2 * 2
    parent = mlflow.MlflowClient(options["tracking_uri"]).get_run(summary.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_failed"] == 2
    assert parent.data.tags["mlflow.note.content"].startswith("**No trial finished, so there is no winner.**")
    assert "best_theological_match_score" not in parent.data.metrics  # no finished trial: no history
    assert "No trial finished" in Path(summary.sweep_dir, "summary.md").read_text()


def test_the_time_budget_ends_open_runs_killed(fake_lm, tmp_path):
    fake = fake_lm(latency=4.0)  # 6 dev questions at 4 s: a trial takes 24 s or more, past the 20 s budget
    space = "optimizers:\n  LabeledFewShot:\n    max_labeled_demos: 1\ntrain_size: 2\nretrieval_k: 0\n"
    path, options = options_for(tmp_path, space, trials=2, time_budget=20.0, data=str(small_data(tmp_path, dev=6)))
    settings = LMSettings(
        lm_base=fake.base_url, lm_model="fake-model", model_format="completion", cache=False, n_ctx=4096
    )
    summary = run_sweep(path, lm=settings, **options)
    children = children_of(options["tracking_uri"], summary.experiment_id, summary.parent_run_id)
    assert fake.requests  # a trial was under way when the budget ran out
    assert children and {child.info.status for child in children} == {"KILLED"}
    for child in children:
        assert child.data.tags["last_error"] == "stopped by the sweep before it finished"
    parent = mlflow.MlflowClient(options["tracking_uri"]).get_run(summary.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_failed"] == len(children)


def test_a_crash_leaves_the_parent_failed_with_its_error(fake_lm, tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("injected crash while scoring the winner on test")

    monkeypatch.setattr("sweeps.finalize.score_on_test", crash)  # a FAKE fault, after the trials finished
    fake = fake_lm()
    space = "optimizers:\n  LabeledFewShot:\n    max_labeled_demos: 1\ntrain_size: 2\nretrieval_k: 0\n"
    path, options = options_for(tmp_path, space, trials=1)
    settings = LMSettings(lm_base=fake.base_url, lm_model="fake-model", model_format="completion", n_ctx=4096)
    with pytest.raises(RuntimeError, match="injected crash"):
        run_sweep(path, lm=settings, **options)
    client = mlflow.MlflowClient(options["tracking_uri"])
    [parent] = client.search_runs(
        [client.get_experiment_by_name("dspy_bible_qa").experiment_id], filter_string="tags.run_type = 'sweep'"
    )
    assert parent.info.status == "FAILED"
    assert parent.data.tags["error"] == "RuntimeError: injected crash while scoring the winner on test"
    [child] = children_of(options["tracking_uri"], parent.info.experiment_id, parent.info.run_id)
    assert child.info.status == "FINISHED"  # the trial itself had finished


def test_ctrl_c_exits_130_and_ends_every_run(fake_lm, tmp_path):
    fake = fake_lm(latency=1.0)
    path = tmp_path / "space.yaml"
    path.write_text("optimizers:\n  LabeledFewShot:\n    max_labeled_demos: {int: [1, 3]}\ntrain_size: 2\n"
                    "retrieval_k: 0\nmodel_format: completion\n")  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [
        sys.executable, "-m", "sweeps.cli", "run", str(path), "--trials", "4", "--concurrency", "1",
        "--lm-base", fake.base_url, "--no-cache", "--data", str(small_data(tmp_path, dev=20)),
        "--tracking-uri", uri, "--storage", str(tmp_path / "results"),
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    ctrl_c_once_the_lm_is_called(process, fake)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == "bibleqa-sweep: interrupted"

    client = mlflow.MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("dspy_bible_qa").experiment_id
    [parent] = client.search_runs([experiment_id], filter_string="tags.run_type = 'sweep'")
    assert parent.info.status == "KILLED" and parent.data.tags["error"].startswith("KeyboardInterrupt")
    children = children_of(uri, experiment_id, parent.info.run_id)
    assert children
    assert_every_run_ended(children)
    assert any(child.info.status == "KILLED" for child in children)  # the one under way when Ctrl-C came


def test_ctrl_c_in_a_script_stops_the_trials_and_the_sweep_sums_up(fake_lm, tmp_path):
    """``run_sweep`` installs no signal handler: Tune's own turns Ctrl-C into a stop, the open runs end KILLED
    (or FAILED, when the trial itself was interrupted), and the sweep returns its result (the README's promise
    for scripts; the command instead exits 130, above)."""
    fake = fake_lm(latency=1.0)
    path, options = options_for(tmp_path, "optimizers:\n  LabeledFewShot:\n    max_labeled_demos: {int: [1, 3]}\n"
                                "train_size: 2\nretrieval_k: 0\nmodel_format: completion\n",
                                trials=4, data=str(small_data(tmp_path, dev=20)))  # fmt: skip
    script = (
        "import sweeps\n"
        f"lm = sweeps.lm_studio('fake-model', {fake.base_url!r}, model_format='completion', cache=False, slots=1)\n"
        f"result = sweeps.run_sweep({path!r}, lm=lm, **{options!r})\n"
        "print('returned', result.n_trials, result.parent_run_id)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    ctrl_c_once_the_lm_is_called(process, fake)
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr[-3000:]
    [returned] = [line for line in stdout.splitlines() if line.startswith("returned ")]
    parent_id = returned.split()[2]
    client = mlflow.MlflowClient(options["tracking_uri"])
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    children = children_of(options["tracking_uri"], parent.info.experiment_id, parent_id)
    assert children and int(returned.split()[1]) == len(children) < 4  # stopped before every trial ran
    assert_every_run_ended(children)
    assert any(child.info.status != "FINISHED" for child in children)  # the one under way when Ctrl-C came


def ctrl_c_once_the_lm_is_called(process: subprocess.Popen, fake) -> None:
    """Ctrl-C, as a terminal sends it to the whole foreground process group, once a trial has reached the LM."""
    deadline = time.monotonic() + 240
    while len(fake.requests) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert len(fake.requests) >= 2, "no trial reached the LM"
    os.killpg(process.pid, signal.SIGINT)


def assert_every_run_ended(children: list) -> None:
    """Every trial run has a final status, and each that did not finish says why."""
    for child in children:
        assert child.info.status in ("FINISHED", "FAILED", "KILLED")
        if child.info.status != "FINISHED":
            assert child.data.tags["last_error"]
