"""bibleqa.tracking: where runs go, fast failure of an unreachable or hung MLflow server, a model logged
with no LM (nor its key) inside, and the source tags of a real git checkout (or none outside one)."""

from __future__ import annotations

import getpass
import subprocess
import sys
import time

import dspy
import mlflow
import pytest

from bibleqa.dspy_lm import build_lm
from bibleqa.errors import TrackingError
from bibleqa.lm import LMSettings
from bibleqa.local_lm import free_port
from bibleqa.program import build_program
from bibleqa.tracking import (
    DEFAULT_TRACKING_URI,
    TRACKING_CHECK_TIMEOUT_S,
    check_tracking,
    git_commit,
    log_program_model,
    resolve_tracking_uri,
    source_tags,
)
from tests.fakes import SilentServer


def test_the_tracking_uri_is_the_flag_then_the_environment_then_sqlite(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_tracking_uri("sqlite:///flag.db") == "sqlite:///flag.db"
    assert resolve_tracking_uri(None) == "http://env:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri(None) == DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"


def test_a_closed_port_fails_at_once_with_one_line():
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(TrackingError) as raised:
        check_tracking(uri)
    assert time.monotonic() - started < 5
    assert str(raised.value).startswith(f"the MLflow server is not reachable at {uri}: ")
    assert "\n" not in str(raised.value)


def test_a_server_that_never_answers_fails_within_10_seconds():
    silent = SilentServer()
    try:
        started = time.monotonic()
        with pytest.raises(TrackingError, match="not reachable"):
            check_tracking(silent.url)
        seconds = time.monotonic() - started
    finally:
        silent.close()
    assert silent.first_contact is not None  # the connection was accepted: this is a hung server, not a closed port
    assert TRACKING_CHECK_TIMEOUT_S <= seconds < 10


def test_a_local_store_needs_no_check():
    check_tracking("sqlite:////nonexistent/dir/mlflow.db")  # nothing to reach: the store is a file


def test_a_model_is_never_logged_while_an_lm_is_configured(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    lm = build_lm(LMSettings(lm_base="http://127.0.0.1:9/v1", lm_model="m", model_format="completion"))
    with dspy.context(lm=lm), mlflow.start_run() as run, pytest.raises(RuntimeError, match="refusing to log a model"):
        log_program_model(build_program(retrieval_k=0))
    assert mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list") == []
    assert not any(path.suffix == ".pkl" for path in tmp_path.rglob("*"))


def git(directory, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, check=True)
    return result.stdout.strip()


@pytest.fixture
def checkout(tmp_path):
    """A real git checkout holding a package (``pkg/__init__.py``), with an HTTPS remote that carries a
    token, and an ignored ``.venv/`` holding a copy of the package, as an installed copy would sit."""
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / ".gitignore").write_text(".venv/\n")
    installed = root / ".venv" / "lib" / "site-packages" / "pkg"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("")
    git(root, "init", "-q", "-b", "trunk")
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "first")
    git(root, "remote", "add", "origin", "https://someone:ghp_planted_token@example.com/org/repo.git")
    return root, installed


def test_source_tags_come_from_the_checkout_the_package_runs_from(checkout, monkeypatch):
    root, _ = checkout
    monkeypatch.setattr(sys, "argv", [str(root / "pkg" / "cli.py")])
    tags = source_tags(root / "pkg")
    assert tags == {
        "mlflow.source.git.commit": git(root, "rev-parse", "HEAD"),
        "mlflow.source.git.branch": "trunk",
        "mlflow.source.git.repoURL": "https://example.com/org/repo.git",  # the token is never logged
        "mlflow.source.name": "pkg/cli.py",
        "mlflow.source.type": "LOCAL",
        "mlflow.user": getpass.getuser(),
    }
    assert git_commit(root / "pkg") == tags["mlflow.source.git.commit"]
    git(root, "checkout", "-q", "--detach")
    git(root, "remote", "remove", "origin")
    detached = source_tags(root / "pkg")
    assert "mlflow.source.git.branch" not in detached and "mlflow.source.git.repoURL" not in detached
    assert detached["mlflow.source.git.commit"] == tags["mlflow.source.git.commit"]


def test_outside_a_checkout_the_git_tags_are_left_out_not_guessed(checkout, tmp_path, monkeypatch):
    _, installed = checkout
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/bibleqa-sweep"])
    lone = tmp_path / "lone"
    lone.mkdir()
    # A package installed into an ignored folder of some checkout is not that checkout: no commit of it.
    for directory in (lone, installed):
        assert source_tags(directory) == {
            "mlflow.source.name": "bibleqa-sweep",
            "mlflow.source.type": "LOCAL",
            "mlflow.user": getpass.getuser(),
        }
        assert git_commit(directory) is None
