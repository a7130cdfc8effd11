"""Start or stop the MLflow server on a Ray cluster's head: `cluster.yaml` starts it after Ray (its
``head_start_ray_commands``); you stop it before ``ray down``, which stops only Ray.

    python scripts/mlflow_server.py start [--dir ~/bibleqa-mlflow] -- --host 0.0.0.0 --port 5000 --allowed-hosts ...
    python scripts/mlflow_server.py stop [--dir ~/bibleqa-mlflow]

``start`` stops the server a previous ``start`` left (by the process group it recorded in ``DIR/server.pid``,
never by name), starts ``mlflow server`` with the arguments after ``--`` in a session of its own (so that
it outlives the SSH command that started it), logs to ``DIR/server.log``, and waits until it answers
``/health``: a server that cannot start fails ``ray up`` with its log, instead of failing the sweep later.
Runs on Linux and macOS (no ``setsid`` needed).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

START_TIMEOUT_S = 120.0
STOP_GRACE_S = 10.0


def _port_and_host(server_args: list[str]) -> tuple[str, int]:
    """Where the server will answer, from its own ``--host``/``--port`` flags (MLflow's defaults otherwise).

    >>> _port_and_host(["--host", "0.0.0.0", "--port", "5001"])
    ('127.0.0.1', 5001)
    """
    host, port = "127.0.0.1", 5000
    for flag, value in itertools.pairwise(server_args):
        if flag in ("--host", "-h") and value not in ("0.0.0.0", "::"):
            host = value
        if flag in ("--port", "-p"):
            port = int(value)
    return host, port


def _recorded_server(pid_file: Path) -> int | None:
    """The PID (and process group) of the server a previous ``start`` recorded, if it still runs: a reused PID
    of another program is not it.  ``ps`` answers the same on Linux and macOS."""
    try:
        pid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    command = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True).stdout
    return pid if "mlflow" in command else None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(directory: Path) -> bool:
    """Stop the server recorded in ``directory`` and its workers (its process group); True if one ran."""
    pid_file = directory / "server.pid"
    pid = _recorded_server(pid_file)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while _group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return pid is not None


def start(directory: Path, server_args: list[str]) -> str:
    """Start ``mlflow server SERVER_ARGS`` in its own session and return its URL once it answers ``/health``.

    Raises ``RuntimeError`` with the end of its log if it exits or does not answer within 120 s.
    """
    stop(directory)
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "server.log"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # keeps LiteLLM off the web as MLflow imports it
    # The sweeps use none of MLflow's server-side jobs (GenAI judges); without them it starts in ~5 s, 0.5 GB less.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", *server_args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: `stop` ends it and its workers, nothing else
        )
    (directory / "server.pid").write_text(str(process.pid))
    host, port = _port_and_host(server_args)
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited ({process.returncode}):\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/health", timeout=2).ok:
                return url
        time.sleep(0.5)
    stop(directory)
    raise RuntimeError(f"mlflow server did not answer {url}/health within {START_TIMEOUT_S:.0f} s:\n"
                       f"{log_path.read_text()[-3000:]}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Everything after `--` is mlflow's (argparse would not let a positional list follow --dir).
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", type=Path, default=Path("~/bibleqa-mlflow"),
                        help="where the pid file and the log go (default ~/bibleqa-mlflow)")  # fmt: skip
    args = parser.parse_args(argv[:split])
    server_args = argv[split + 1 :]
    directory = args.dir.expanduser()
    if args.action == "stop":
        print("mlflow server stopped" if stop(directory) else "no mlflow server was running")
        return 0
    try:
        print(f"mlflow server answering at {start(directory, server_args)} (log: {directory / 'server.log'})")
    except RuntimeError as error:
        print(f"mlflow_server.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
