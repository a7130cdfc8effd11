"""Stopping a sweep and resuming it (``bibleqa-sweep resume``, ``sweeps.resume_sweep``), against a FAKE LM
server, on real Ray and a real local MLflow store, each checked on what MLflow holds afterwards:

- the driver SIGKILLed mid-sweep, then ``resume``: the same parent run, exactly the budget of counted
  trials, the runs left RUNNING KILLED with ``last_error``, no trial id or config twice, the study's
  RUNNING trials FAIL, the Ray processes the dead driver left are stopped, and no file holds the key;
- Ctrl-C, then ``resume``: the parent ends KILLED with what finished and the resume command is printed;
  a second Ctrl-C exits at once and ``resume`` still works;
- resuming a finished sweep says so and changes nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import optuna
import pytest

from sweeps.study_store import load_study
from tests.fakes import completion_body
from tests.helpers import small_data

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PLANTED_KEY = "sk-planted-resume-9b2f47"
ANSWER = completion_body(" Noah\nReferences: Genesis 6:14")
# A float knob: two trials share a config only if the sampler draws the same numbers again.
SPACE = """
objective: {metric: theological_match_score, mode: max}
seed: 3
optimizers:
  LabeledFewShot:
    max_labeled_demos: {int: [1, 3]}
train_size: 2
retrieval_k: 0
bootstrap_threshold: {float: [0.0, 1.0]}
model_format: completion
"""
TRIALS = 5
COUNTED = ("FINISHED", "FAILED")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


class Sweep:
    """One sweep in ``tmp_path``, run as a person types it, against a FAKE LM."""

    def __init__(self, tmp_path: Path, fake) -> None:
        self.directory = tmp_path
        self.fake = fake
        self.space = tmp_path / "space.yaml"
        self.space.write_text(SPACE)
        self.uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        self.data = small_data(tmp_path, train=4, dev=4, test=1)
        self.env = {**os.environ, "LM_STUDIO_API_KEY": PLANTED_KEY}

    def start(self) -> subprocess.Popen:
        command = [
            sys.executable, "-m", "sweeps.cli", "run", str(self.space), "--trials", str(TRIALS),
            "--concurrency", "1", "--lm-base", self.fake.base_url, "--no-cache", "--data", str(self.data),
            "--tracking-uri", self.uri, "--storage", str(self.directory / "results"),
        ]  # fmt: skip
        # Its own session, as a terminal's foreground job: Ctrl-C reaches the whole process group.
        return subprocess.Popen(command, cwd=self.directory, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip

    def resume(self, folder: Path, output: str = "resumed.json") -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "sweeps.cli", "resume", str(folder), "--output-json",
                   str(self.directory / output)]  # fmt: skip
        # From another directory: nothing of the first start's working directory is needed.
        return subprocess.run(command, cwd="/", env=self.env, capture_output=True, text=True, timeout=600)

    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(self.uri)

    def parents(self) -> list:
        experiment = self.client().get_experiment_by_name("dspy_bible_qa")
        if experiment is None:
            return []
        return self.client().search_runs([experiment.experiment_id], filter_string="tags.run_type = 'sweep'")

    def children(self, parent) -> list:
        return self.client().search_runs(
            [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
        )

    def finished_children(self) -> int:
        parents = self.parents()
        return sum(child.info.status == "FINISHED" for child in self.children(parents[0])) if parents else 0

    def folder(self) -> Path:
        [folder] = (self.directory / "results").iterdir()
        return folder


def process_tree(root: int) -> set[tuple[int, str]]:
    """Every process below ``root``, as (pid, start time), from ``ps``."""
    table = subprocess.run(["ps", "-eo", "pid=,ppid=,lstart="], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in table.splitlines()]
    children: dict[int, list[tuple[int, str]]] = {}
    for pid, ppid, started in rows:
        children.setdefault(int(ppid), []).append((int(pid), started))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child[0])
    return found


def config_of(run) -> tuple:
    return tuple(sorted((k, v) for k, v in run.data.params.items() if k not in ("lm_studio_api_url",)))


def assert_complete_after_resume(sweep: Sweep, parent_id: str) -> list:
    """What MLflow must hold once a stopped sweep is resumed: the same parent, FINISHED, exactly the budget
    of counted trials, every other run KILLED with its reason, no trial id or config twice."""
    [parent] = sweep.parents()
    assert parent.info.run_id == parent_id and parent.info.status == "FINISHED"
    children = sweep.children(parent)
    counted = [child for child in children if child.info.status in COUNTED]
    assert len(counted) == TRIALS and parent.data.metrics["n_trials"] == TRIALS
    for child in children:
        assert child.info.status in (*COUNTED, "KILLED")
        if child.info.status == "KILLED":
            assert child.data.tags["last_error"]
    trial_ids = [child.data.tags["trial_id"] for child in children]
    assert len(set(trial_ids)) == len(trial_ids)
    configs = [config_of(child) for child in children]
    assert len(set(configs)) == len(configs), "a trial config ran twice"
    assert parent.data.tags["best_run_id"] in {child.info.run_id for child in counted}
    assert "error" not in parent.data.tags and parent.data.tags["n_resumes"] == "1"
    # The best-so-far history goes on across the resume: one step per finished trial, before and after it.
    scores = [child.data.metrics["theological_match_score"] for child in counted if child.info.status == "FINISHED"]
    history = sweep.client().get_metric_history(parent_id, "best_theological_match_score")
    assert sorted(point.step for point in history) == list(range(1, len(scores) + 1))
    values = [point.value for point in sorted(history, key=lambda point: point.step)]
    assert values == sorted(values) and values[-1] == max(scores)
    study = load_study(sweep.folder(), parent.info.run_name)
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) >= TRIALS - sum(
        child.info.status == "FAILED" for child in children
    )
    return children


def assert_no_file_holds_the_key(sweep: Sweep, *outputs: str) -> None:
    assert sweep.fake.requests and all(
        r["headers"]["authorization"] == f"Bearer {PLANTED_KEY}" for r in sweep.fake.requests
    )
    written = [path for path in sweep.directory.rglob("*") if path.is_file()]
    names = {path.name for path in written}
    assert {"mlflow.db", "sweep.json", "parent.json", "study.log", "processes.json", "sweep.log"} <= names
    assert [str(path) for path in written if PLANTED_KEY.encode() in path.read_bytes()] == []
    assert all(PLANTED_KEY not in text for text in outputs)


@pytest.fixture
def sweep(fake_lm_server, tmp_path) -> Sweep:
    return Sweep(tmp_path, fake_lm_server([(200, ANSWER)], latency=0.4))


def test_sigkill_of_the_driver_then_resume(sweep):
    process = sweep.start()
    wait_until(lambda: sweep.finished_children() >= 1 or process.poll() is not None, "a trial finished")
    requests = len(sweep.fake.requests)
    wait_until(lambda: len(sweep.fake.requests) > requests, "the next trial reached the LM")
    assert process.poll() is None, process.communicate()[1][-3000:]
    started = process_tree(process.pid)  # Ray's processes, its agents and workers
    assert len(started) >= 3
    process.kill()  # SIGKILL to the driver alone: what it started is left running
    process.communicate(timeout=60)
    folder = sweep.folder()
    assert started & process_tree(1)  # the problem: some of Ray's processes outlive the driver, orphaned
    [parent] = sweep.parents()
    assert parent.info.status == "RUNNING"
    before = sweep.children(parent)
    assert any(child.info.status == "RUNNING" for child in before)

    resumed = sweep.resume(folder)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    output = json.loads((sweep.directory / "resumed.json").read_text())
    assert output["parent_run_id"] == parent.info.run_id and output["n_trials"] == TRIALS
    children = assert_complete_after_resume(sweep, parent.info.run_id)
    for child in before:  # the runs the dead driver left RUNNING were ended, not run again
        if child.info.status == "RUNNING":
            [now] = [c for c in children if c.info.run_id == child.info.run_id]
            assert now.info.status == "KILLED" and "driver stopped" in now.data.tags["last_error"]
    assert not started & process_tree(1)  # reaped by the PIDs the folder recorded
    assert_no_file_holds_the_key(sweep, resumed.stdout, resumed.stderr)

    # Resuming the finished sweep says so and changes nothing.
    again = sweep.resume(folder, "again.json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "finished already" in again.stdout
    [after] = sweep.parents()
    assert after.info.end_time == sweep.parents()[0].info.end_time
    assert [(c.info.run_id, c.info.status) for c in sweep.children(after)] == [
        (c.info.run_id, c.info.status) for c in children
    ]
    assert json.loads((sweep.directory / "again.json").read_text())["parent_run_id"] == parent.info.run_id


def test_ctrl_c_then_resume(sweep):
    process = sweep.start()
    wait_until(lambda: sweep.finished_children() >= 1 or process.poll() is not None, "a trial finished")
    assert process.poll() is None, process.communicate()[1][-3000:]
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    folder = sweep.folder()
    assert f"resume with: bibleqa-sweep resume {folder}" in stderr
    assert "Traceback" not in stderr
    [parent] = sweep.parents()
    assert parent.info.status == "KILLED"
    children = sweep.children(parent)
    assert all(child.info.status in (*COUNTED, "KILLED") for child in children)
    counted = sum(child.info.status in COUNTED for child in children)
    assert 1 <= counted < TRIALS and parent.data.metrics["n_trials"] == counted
    assert parent.data.tags["stopped_summary"].startswith(f"stopped after {counted} of {TRIALS} trials")

    resumed = sweep.resume(folder)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_complete_after_resume(sweep, parent.info.run_id)
    assert_no_file_holds_the_key(sweep, stdout, stderr, resumed.stdout, resumed.stderr)


def test_a_second_ctrl_c_exits_at_once_and_resume_still_works(sweep):
    process = sweep.start()
    wait_until(lambda: len(sweep.fake.requests) >= 2 or process.poll() is not None, "a trial reached the LM")
    os.killpg(process.pid, signal.SIGINT)
    time.sleep(0.3)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-3000:]
    assert "interrupted again: exiting now" in stderr
    [parent] = sweep.parents()
    resumed = sweep.resume(sweep.folder())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_complete_after_resume(sweep, parent.info.run_id)
