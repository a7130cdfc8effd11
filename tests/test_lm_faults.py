"""The LM fails: every request has a timeout and DSPy's bounded retries; an unreachable LM pauses the sweep
at its slots and, past ``--lm-outage-limit``, stops it to be resumed; an LM that answers 500s fails its
trial with the reason; malformed answers are errors of their question, never of the trial.

Everything runs against ``FaultyLMServer``, a FAKE OpenAI-compatible server that the test makes die (its
socket closes), answer 500, hang past the timeout or answer garbage, and then recover.  The engine tests
call DSPy in-process; the sweeps are real (real Ray, a real MLflow sqlite store, ``run_sweep`` or the
``bibleqa-sweep`` command) and the assertions read what MLflow holds afterwards."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dspy
import mlflow
import pytest

from bibleqa.completion import CompletionAdapter
from bibleqa.dataset import load_dataset
from bibleqa.dspy_lm import build_lm
from bibleqa.engines import unreachable
from bibleqa.lm import LMSettings
from bibleqa.program import AnswerBibleQuestion
from sweeps import run_sweep
from sweeps.mlflow_logging import STOPPED
from sweeps.stopped import EXIT_STOPPED, resume_command
from tests.fakes import GARBAGE, FaultyLMServer
from tests.helpers import small_data


@pytest.fixture
def faulty_lm() -> Iterator[type[FaultyLMServer]]:
    """Start FAKE fault servers; each is closed after the test."""
    servers: list[FaultyLMServer] = []

    def start(**options) -> FaultyLMServer:
        server = FaultyLMServer(**options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        with contextlib.suppress(Exception):
            server.close()


class RecordingHook:
    """A request hook that records, per request, whether it failed because the server was unreachable
    (``None``: it did not fail), and sends it to ``route`` when given."""

    def __init__(self, route: str | None = None):
        self.route = route
        self.outcomes: list[bool | None] = []

    @contextlib.contextmanager
    def around_request(self, call_id):
        try:
            yield self.route
        except Exception as error:
            self.outcomes.append(unreachable(error))
            raise
        self.outcomes.append(None)


def ask(fake: FaultyLMServer, question: str = "Who built the ark?", hook: RecordingHook | None = None, **settings):
    """One question to the fake through our DSPy LM (completion format, no cache)."""
    lm_settings = LMSettings(**{"lm_base": fake.base_url, "lm_model": "fake-model", "model_format": "completion",
                                "cache": False, **settings})  # fmt: skip
    lm = build_lm(lm_settings, request_hooks=[hook] if hook else [])
    with dspy.context(lm=lm, adapter=CompletionAdapter()):
        return dspy.Predict(AnswerBibleQuestion)(question=question, passages="")


# ----- the engine: timeouts, retries, what counts as unreachable, malformed answers


def test_a_hung_request_times_out_counts_as_unreachable_and_its_retry_answers(faulty_lm):
    hung = []

    def hang_once(request):
        if not hung:
            hung.append(request)
            return "hang"
        return None

    fake = faulty_lm(hang_s=5.0, fault_for=hang_once)
    hook = RecordingHook()
    started = time.monotonic()
    assert ask(fake, hook=hook, timeout=0.5, retries=1).answer == "Noah"
    assert time.monotonic() - started < 5.0  # the timeout cut the hang short; DSPy waited 1 s to retry
    assert hook.outcomes == [True, None]  # timed out (unreachable), then answered
    assert [request["fault"] for request in fake.requests] == ["hang", "ok"]


def test_a_dead_server_is_unreachable_and_a_500_is_not(faulty_lm):
    fake = faulty_lm()
    fake.fault = "error"
    hook = RecordingHook()
    with pytest.raises(Exception, match="HTTP 500"):
        ask(fake, hook=hook, retries=1)
    assert hook.outcomes == [False, False]  # it answered, with an error: retried once, never "unreachable"
    fake.die()
    with pytest.raises(Exception, match=r"127\.0\.0\.1"):
        ask(fake, hook=hook, retries=0)
    assert hook.outcomes[2:] == [True]
    fake.recover()
    assert ask(fake, hook=hook, retries=0).answer == "Noah"


@pytest.mark.parametrize("kind", range(len(GARBAGE)))
def test_each_malformed_answer_fails_its_question_once_without_retry(faulty_lm, kind):
    fake = faulty_lm()
    fake.fault = "garbage"
    fake._garbage = kind  # start the cycle at this kind of garbage
    hook = RecordingHook()
    with pytest.raises(Exception) as raised:
        ask(fake, hook=hook, retries=2)
    assert not isinstance(raised.value, (AttributeError, TypeError, KeyError, IndexError))  # no engine crash
    # One request, not retried, and never taken for an unreachable server (the pause is for those only).
    assert len(fake.requests) == 1 and len(hook.outcomes) == 1 and True not in hook.outcomes


def test_the_hook_routes_the_request_to_its_endpoint(faulty_lm):
    fake = faulty_lm()
    hook = RecordingHook(route=fake.base_url)
    nowhere = "http://127.0.0.1:9/v1"  # the discard port: nothing answers there
    lm_settings = LMSettings(lm_base=nowhere, lm_model="fake-model", model_format="completion", cache=False)
    with dspy.context(lm=build_lm(lm_settings, request_hooks=[hook]), adapter=CompletionAdapter()):
        assert dspy.Predict(AnswerBibleQuestion)(question="Who built the ark?", passages="").answer == "Noah"
    assert len(fake.requests) == 1 and hook.outcomes == [None]


# ----- sweeps against the fault server

SPACE = (
    "optimizers:\n  LabeledFewShot:\n    max_labeled_demos: {choice: [1, 3]}\n"
    "train_size: 4\nretrieval_k: 0\nmodel_format: completion\n"
)


def children_of(uri: str, experiment_id: str, parent_id: str) -> list:
    return mlflow.MlflowClient(uri).search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )


def the_parent(uri: str):
    client = mlflow.MlflowClient(uri)
    [parent] = client.search_runs(
        [client.get_experiment_by_name("dspy_bible_qa").experiment_id], filter_string="tags.run_type = 'sweep'"
    )
    return parent


def assert_each_trial_once_and_none_running(children: list) -> None:
    trial_ids = [child.data.tags["trial_id"] for child in children]
    assert len(trial_ids) == len(set(trial_ids))
    assert all(child.info.status in ("FINISHED", "FAILED", "KILLED") for child in children)


def outage(fake: FaultyLMServer, after_requests: int, seconds: float | None) -> threading.Thread:
    """Kill the fake once it has had ``after_requests`` POSTs; bring it back ``seconds`` later (``None``:
    leave it dead).  ``fake.died_at`` and ``fake.recovered_at`` say when (``time.monotonic()``)."""
    fake.died_at = fake.recovered_at = None

    def run() -> None:
        deadline = time.monotonic() + 300
        while len(fake.requests) < after_requests and time.monotonic() < deadline:
            time.sleep(0.05)
        fake.die()
        fake.died_at = time.monotonic()
        if seconds is not None:
            time.sleep(seconds)
            fake.recover()
            fake.recovered_at = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.ray
@pytest.mark.slow
def test_a_dead_lm_pauses_the_sweep_and_the_trials_that_waited_finish(faulty_lm, tmp_path):
    fake = faulty_lm(latency=0.3)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = LMSettings(lm_base=fake.base_url, lm_model="fake-model", model_format="completion", cache=False,
                          slots=1, n_ctx=4096)  # fmt: skip
    killer = outage(fake, after_requests=3, seconds=4.0)  # dies mid-trial, while a request is in flight
    lines: list[str] = []
    result = run_sweep(str(space), lm=settings, trials=3, data=str(small_data(tmp_path, train=6, dev=4, test=1)),
                       tracking_uri=uri, storage=str(tmp_path / "results"), echo=lines.append)  # fmt: skip
    killer.join(timeout=5)
    assert fake.died_at is not None and fake.recovered_at is not None

    children = children_of(uri, result.experiment_id, result.parent_run_id)
    assert_each_trial_once_and_none_running(children)
    assert [child.info.status for child in children] == ["FINISHED"] * 3  # none FAILED for the outage
    assert [child.data.metrics["n_errors"] for child in children] == [0.0] * 3  # no question lost to it
    parent = mlflow.MlflowClient(uri).get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["n_trials"] == 3 and parent.data.metrics["n_failed"] == 0
    assert parent.data.metrics["lm_outage_seconds"] > 0
    assert fake.posts_since(fake.recovered_at)  # the LM calls went on after it came back
    [paused] = [line for line in lines if "has not answered since" in line]
    assert paused.startswith(f"the LM at {fake.base_url} has not answered since ") and "pauses" in paused
    assert "the LM answers again: the sweep goes on" in lines


@pytest.mark.ray
@pytest.mark.slow
def test_an_lm_that_stays_away_stops_the_sweep_and_resume_finishes_it(faulty_lm, tmp_path):
    fake = faulty_lm(latency=0.3)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [
        sys.executable, "-m", "sweeps.cli", "run", str(space), "--trials", "3", "--concurrency", "1",
        "--lm-base", fake.base_url, "--no-cache", "--lm-outage-limit", "0.1",
        "--data", str(small_data(tmp_path, train=6, dev=4, test=1)), "--tracking-uri", uri,
        "--storage", str(tmp_path / "results"),
    ]  # fmt: skip
    outage(fake, after_requests=3, seconds=None)
    stopped = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert stopped.returncode == EXIT_STOPPED == 75, stopped.stderr[-3000:]

    parent = the_parent(uri)
    folder = Path(parent.data.tags["sweep_dir"])
    last_line = stopped.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"bibleqa-sweep: the LM at {fake.base_url} has not answered since ")
    assert "(0.1 min, --lm-outage-limit)" in last_line and last_line.endswith(resume_command(folder))
    assert parent.info.status == "KILLED"
    assert parent.data.tags["error"].startswith(f"LMOutage: the LM at {fake.base_url} has not answered since")
    assert parent.data.tags["stopped_summary"].endswith(resume_command(folder))
    children = children_of(uri, parent.info.experiment_id, parent.info.run_id)
    assert_each_trial_once_and_none_running(children)
    statuses = Counter(child.info.status for child in children)
    assert statuses["FAILED"] == 0 and statuses["KILLED"] >= 1  # the trials that waited were stopped, not failed
    for child in children:
        if child.info.status == "KILLED":
            assert child.data.tags["last_error"] == STOPPED
    assert parent.data.metrics["n_killed"] == statuses["KILLED"]
    assert parent.data.metrics["n_trials"] == statuses["FINISHED"]

    fake.recover()
    resumed = subprocess.run([sys.executable, "-m", "sweeps.cli", "resume", str(folder)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    parent = mlflow.MlflowClient(uri).get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["n_trials"] == 3 and parent.data.metrics["n_failed"] == 0
    children = children_of(uri, parent.info.experiment_id, parent.info.run_id)
    assert_each_trial_once_and_none_running(children)
    after = Counter(child.info.status for child in children)
    assert after["FINISHED"] == 3 and after["KILLED"] == statuses["KILLED"] and after["FAILED"] == 0


@pytest.mark.ray
@pytest.mark.slow
def test_500s_fail_their_trial_with_the_reason_and_garbage_and_a_hang_fail_no_trial(faulty_lm, tmp_path):
    """Trials with 3 demos get HTTP 500 on every call: FAILED with the reason, retried once
    (``max_failures=1``).  Trials with 1 demo get garbage for one dev question (an error of that question)
    and one hung request (timed out and retried): FINISHED.  The sweep goes on through all of it."""
    data = small_data(tmp_path, train=6, dev=3, test=1)
    garbled_question = load_dataset(str(data)).dev[0].question
    hung: list[str] = []

    def fault_for(request) -> str | None:
        prompt = request["prompt"]
        if prompt.count("Question:") == 4:  # 3 demos and the question
            return "error"
        if prompt.endswith(f"Question: {garbled_question}\nAnswer:"):
            return "garbage"
        if not hung:
            hung.append(prompt)
            return "hang"
        return None

    fake = faulty_lm(hang_s=4.0, fault_for=fault_for)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = LMSettings(lm_base=fake.base_url, lm_model="fake-model", model_format="completion", cache=False,
                          slots=1, n_ctx=4096, timeout=1.0, retries=1)  # fmt: skip
    # seed 7: the sampler draws max_labeled_demos 3, 3, 1, 1
    result = run_sweep(str(space), lm=settings, trials=4, seed=7, max_failures=1, data=str(data), tracking_uri=uri,
                       storage=str(tmp_path / "results"))  # fmt: skip

    children = children_of(uri, result.experiment_id, result.parent_run_id)
    assert len(children) == 4
    assert_each_trial_once_and_none_running(children)
    by_demos = {demos: [c for c in children if c.data.params["max_labeled_demos"] == demos] for demos in ("1", "3")}
    seen = [(c.data.params["max_labeled_demos"], c.info.status, c.data.tags.get("last_error")) for c in children]
    assert by_demos["1"] and by_demos["3"], f"the seed must give both kinds of trial: {seen}"
    for child in by_demos["3"]:
        assert child.info.status == "FAILED" and child.data.tags["attempt"] == "2"
        assert "HTTP 500" in child.data.tags["last_error"] and "FAKE fault" in child.data.tags["last_error"]
    for child in by_demos["1"]:
        assert child.info.status == "FINISHED"
        assert child.data.metrics["n_errors"] == 1  # the garbled question only; the hung one was retried
    assert len(fake.garbled) == len(by_demos["1"])  # garbage is not retried
    assert [request["fault"] for request in fake.requests].count("hang") == 1
    # The hung prompt timed out and was retried; the other 1-demo trial (the same demos) asked it once.
    assert [request["prompt"] for request in fake.requests].count(hung[0]) == 1 + len(by_demos["1"])
    parent = mlflow.MlflowClient(uri).get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["n_trials"] == 4 and parent.data.metrics["n_failed"] == len(by_demos["3"])
