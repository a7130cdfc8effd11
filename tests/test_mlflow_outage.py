"""The MLflow server goes away mid-sweep: a real ``mlflow server`` (one per test, so that it can be killed and
started again on the same port), real Ray, a FAKE LM (``tests.fakes.ScriptedLMServer``: one fixed answer, no
latency, so the trials are quick and alike).

The server is killed (SIGKILL, its whole process group) when the first trial ends, from the sweep's own
progress line, so the outage falls between the same writes on every run, with no timing:

- back when the third trial ends (``run_sweep``): the sweep never stops, and afterwards MLflow holds every
  trial once, no run RUNNING, the parent FINISHED and summed up, no metric point twice;
- back only after the sweep ended (``bibleqa-sweep run``): the command ends with the line that says how
  many writes wait and the ``sync`` command, exit 3; once the server is back, ``bibleqa-sweep sync``
  delivers everything (the winner's model and its ``champion`` alias included), and a second ``sync``
  changes nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import requests

from bibleqa.lm import LMSettings
from bibleqa.local_lm import free_port
from sweeps import cli, run_sweep
from sweeps.journal import JOURNAL_FILE
from tests.fakes import ScriptedLMServer, completion_body
from tests.helpers import small_data

pytestmark = [pytest.mark.mlflow_server, pytest.mark.ray, pytest.mark.slow]

SPACE = """
objective: {metric: theological_match_score, mode: max}
optimizers:
  LabeledFewShot:
    max_labeled_demos: {int: [0, 3]}
train_size: 2
retrieval_k: 0
model_format: completion
"""
REGISTERED = "bibleqa-outage"


class MlflowServer:
    """A real ``mlflow server`` on a fixed port, in its own process group: ``kill()`` it, ``start()`` it again."""

    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", "1", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                   "--artifacts-destination", str(self.root / "artifacts")]  # fmt: skip
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(self.root / "server.log", "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            env=env)  # fmt: skip
        deadline = time.monotonic() + 90
        while not self.answers():
            assert self.process.poll() is None, (self.root / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow server did not start within 90 s"
            time.sleep(0.3)

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        assert not self.answers()

    def answers(self) -> bool:
        try:
            return requests.get(f"{self.uri}/health", timeout=2).ok
        except requests.RequestException:
            return False


@pytest.fixture
def server(tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    yield server
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=30)


@pytest.fixture
def fake_lm():
    answer = completion_body(" Noah\nReferences: Genesis 6:14")
    fake = ScriptedLMServer([], ["fake-model"], answer=lambda request: (200, answer))
    yield fake
    fake.close()


def children_of(client, result_or_parent) -> list:
    parent = client.get_run(result_or_parent)
    return client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )


def assert_whole_sweep(client, parent_id: str, trials: int, folder: Path) -> list:
    """What MLflow must hold after the sweep, whatever the outage: every trial once, FINISHED, ranked, no
    metric point twice; the parent FINISHED and summed up; the folder's files name real runs."""
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_trials"] == trials
    assert parent.data.tags["mlflow.note.content"].startswith("**Winner: [")
    children = children_of(client, parent_id)
    assert len(children) == trials == len({child.data.tags["trial_id"] for child in children})
    ranks = sorted(child.data.tags["sweep_rank"] for child in children)
    assert ranks == [str(rank) for rank in range(1, trials + 1)]
    for child in children:
        assert child.info.status == "FINISHED"
        for name in ("accuracy", "theological_match_score", "lm_calls"):
            assert len(client.get_metric_history(child.info.run_id, name)) == 1
        assert {"program.json", "question_scores.csv"} <= {f.path for f in client.list_artifacts(child.info.run_id)}
    history = client.get_metric_history(parent_id, "best_theological_match_score")
    assert sorted(point.step for point in history) == list(range(1, trials + 1))  # one step per trial, none twice
    assert {"summary.md", "trials.csv"} <= {f.path for f in client.list_artifacts(parent_id)}
    ids = {child.info.run_id for child in children}
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["best_run_id"] in ids and {row["run_id"] for row in summary["trials"]} == ids
    for name in ("summary.json", "summary.md", "trials.csv"):
        assert "@journal-" not in (folder / name).read_text()
    return children


def test_mlflow_away_for_a_window_mid_sweep(server, fake_lm, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    trials = 5
    seen: list[str] = []

    def echo(line: str) -> None:
        seen.append(line)
        if line.startswith("[1/"):
            server.kill()
        elif line.startswith("[3/"):
            server.start()

    settings = LMSettings(lm_base=fake_lm.base_url, lm_model="fake-model", model_format="completion", cache=False,
                          n_ctx=4096, slots=1)  # fmt: skip
    result = run_sweep(str(space), lm=settings, trials=trials, search="random", seed=1, echo=echo,
                       data=str(small_data(tmp_path, train=4, dev=4, test=1)), tracking_uri=server.uri,
                       storage=str(tmp_path / "results"))  # fmt: skip
    folder = Path(result.sweep_dir)
    assert sum(line.startswith("[") for line in seen) == trials and result.n_failed == 0
    assert result.mlflow_pending == 0
    log = (folder / "sweep.log").read_text()
    assert "is not answering" in log and "answers again" in log  # the outage fell mid-sweep
    client = mlflow.MlflowClient(server.uri)
    children = assert_whole_sweep(client, result.parent_run_id, trials, folder)
    assert result.best_run_id in {child.info.run_id for child in children}
    assert client.get_run(result.best_run_id).outputs.model_outputs  # the winner's model, on its run


def test_mlflow_away_until_after_the_sweep_then_sync(server, fake_lm, tmp_path, monkeypatch, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    trials = 3
    monkeypatch.setenv("TUNE_DISABLE_SIGINT_HANDLER", "1")  # the command sets it: put back after the test
    printed = cli._echo

    def echo(line: str) -> None:
        printed(line)
        if line.startswith("[1/"):
            server.kill()

    monkeypatch.setattr(cli, "_echo", echo)
    data = small_data(tmp_path, train=4, dev=4, test=1)
    storage = tmp_path / "results"
    code = cli.main(["run", str(space), "--trials", str(trials), "--concurrency", "1", "--search", "random",
                     "--seed", "1", "--lm-base", fake_lm.base_url, "--no-cache", "--data", str(data),
                     "--tracking-uri", server.uri, "--storage", str(storage), "--register", REGISTERED])  # fmt: skip
    [folder] = storage.iterdir()
    err = capsys.readouterr().err
    waiting = json.loads((folder / "summary.json").read_text())["mlflow_pending"]
    assert code == 3 and waiting > 0
    [line] = [line for line in err.splitlines() if "write(s) wait" in line]
    assert "WARNING sweeps.journal: MLflow at" in err and "the sweep goes on" in err  # said when it went away
    assert f"{waiting} write(s) wait in {folder / JOURNAL_FILE}" in line
    assert line.endswith(f"bibleqa-sweep sync {folder}")

    server.start()
    assert cli.main(["sync", str(folder)]) == 0
    assert f"delivered {waiting} write(s) to MLflow" in capsys.readouterr().out
    client = mlflow.MlflowClient(server.uri)
    parent_id = json.loads((folder / "parent.json").read_text())["run_id"]
    children = assert_whole_sweep(client, parent_id, trials, folder)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["mlflow_pending"] == 0
    winner = client.get_run(summary["best_run_id"])
    [output] = winner.outputs.model_outputs
    assert winner.info.status == "FINISHED" and summary["model_uri"] == f"models:/{output.model_id}"
    champion = client.get_model_version_by_alias(REGISTERED, "champion")
    assert champion.run_id == winner.info.run_id and len(client.search_model_versions(f"name = '{REGISTERED}'")) == 1
    assert client.get_run(parent_id).data.tags["best_model_uri"] == summary["model_uri"]

    def snapshot() -> list:
        runs = [client.get_run(parent_id), *children]
        return [(run.info.run_id, run.info.status, run.info.end_time, sorted(run.data.tags.items()),
                 sorted(run.data.params.items()),
                 {name: len(client.get_metric_history(run.info.run_id, name)) for name in run.data.metrics})
                for run in runs]  # fmt: skip

    before = snapshot()
    assert cli.main(["sync", str(folder)]) == 0
    assert "nothing waits for MLflow" in capsys.readouterr().out
    assert snapshot() == before and len(children_of(client, parent_id)) == trials
