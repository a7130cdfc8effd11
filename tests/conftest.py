"""Shared fixtures: a per-test DSPy cache, the real bundled LM server, a real ``mlflow server``, and a
FAKE scripted OpenAI-compatible LM server for fault tests (``fake_lm_server``).

The real servers start once per test session, on free ports, and stop at its end.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TQDM_DISABLE", "1")

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bibleqa.local_lm import LocalServer, free_port, local_lm_server, stop_process
from tests.fakes import ScriptedLMServer


@pytest.fixture(autouse=True)
def dspy_cache_dir(tmp_path: Path) -> Iterator[Path]:
    """Each test gets its own DSPy disk cache (and an empty memory cache), so no test sees another's
    cached LM answers."""
    import dspy

    directory = tmp_path / "dspy_cache"
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(directory))
    yield directory


@pytest.fixture(scope="session")
def local_lm() -> Iterator[LocalServer]:
    """The real bundled llama.cpp server, shared by the whole session."""
    with local_lm_server() as server:
        yield server


@pytest.fixture(scope="session")
def mlflow_server_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's ``mlflow server`` keeps its database, artifacts and log."""
    return tmp_path_factory.mktemp("mlflow_server")


@pytest.fixture(scope="session")
def mlflow_server(mlflow_server_root: Path) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 (one worker, no job execution: ~5 s and 0.5 GB to start)."""
    root = mlflow_server_root
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below, after the server stops
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
        try:
            if requests.get(f"{uri}/health", timeout=2).ok:
                break
        except requests.RequestException:
            pass
        time.sleep(0.3)
    else:
        stop_process(process)
        raise RuntimeError("mlflow server did not start within 90 s")
    yield uri
    stop_process(process)
    log.close()


@pytest.fixture
def fake_lm_server() -> Iterator[Callable[..., ScriptedLMServer]]:
    """Factory for FAKE scripted LM servers (see ``tests.fakes.ScriptedLMServer``); each is shut down after
    the test."""
    servers: list[ScriptedLMServer] = []

    def start(
        script: list[tuple[int, dict[str, Any]]],
        models: list[str] | None = None,
        *,
        answer: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]] | None = None,
        latency: float = 0.0,
    ) -> ScriptedLMServer:
        server = ScriptedLMServer(script, ["fake-model"] if models is None else models, answer=answer, latency=latency)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
