"""The processes a sweep's driver started, recorded in the sweep folder (``processes.json``) so that a later
``resume_sweep`` can stop what a dead driver left running: its local Ray instance and the bundled LM server.

A process is known by its PID *and* its start time (``/proc/<pid>/stat``, Linux), so a PID that the system
gave to another process since is never touched; nothing is ever found or killed by name.  Reaping ends a
recorded process and every process below it (Ray's workers hang below its raylet): SIGTERM, then SIGKILL
after ``GRACE_S``.

Example::

    >>> import os
    >>> from sweeps.processes import start_time
    >>> start_time(os.getpid()) is not None
    True
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from bibleqa.errors import UserError

logger = logging.getLogger(__name__)

PROCESSES_FILE = "processes.json"
GRACE_S = 10.0
DRIVER = "driver"


@dataclass(frozen=True)
class RecordedProcess:
    """One process a driver started (or the driver itself): what it is, its PID, its start time."""

    role: str
    pid: int
    start_time: str

    def alive(self) -> bool:
        """Whether this very process still runs (the PID alone could have been reused)."""
        return start_time(self.pid) == self.start_time


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or ``None`` if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5); the command name may hold spaces


def parent_pid(pid: int) -> int | None:
    """The process's parent PID, or ``None`` if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...), from ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = parent_pid(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def read_processes(folder: Path) -> list[RecordedProcess]:
    """The processes recorded in the sweep folder (none when there is no record)."""
    path = Path(folder) / PROCESSES_FILE
    if not path.exists():
        return []
    return [RecordedProcess(**entry) for entry in json.loads(path.read_text(encoding="utf-8"))]


def record_processes(folder: Path, role: str, pids: Iterable[int]) -> None:
    """Add the running processes ``pids`` to the sweep folder's record, as ``role``."""
    recorded = read_processes(folder)
    for pid in pids:
        started = start_time(pid)
        if started is not None:
            recorded.append(RecordedProcess(role, pid, started))
    path = Path(folder) / PROCESSES_FILE
    path.write_text(json.dumps([asdict(entry) for entry in recorded], indent=2), encoding="utf-8")


def start_record(folder: Path) -> None:
    """Begin a new record with this process as the driver (a resume replaces the dead driver's record)."""
    (Path(folder) / PROCESSES_FILE).unlink(missing_ok=True)
    record_processes(folder, DRIVER, [os.getpid()])


def reap_processes(folder: Path) -> list[RecordedProcess]:
    """Stop what the sweep's last driver started and left running; return what was stopped.

    Raises ``UserError`` when that driver still runs in another process (the sweep is not stopped).  When
    it is this very process (a script that resumes its own interrupted sweep), nothing is stopped: what it
    started is still its own."""
    recorded = read_processes(folder)
    drivers = [entry for entry in recorded if entry.role == DRIVER]
    if any(entry.pid == os.getpid() and entry.alive() for entry in drivers):
        return []
    for entry in drivers:
        if entry.alive():
            raise UserError(
                f"{folder}: the sweep is still running (driver pid {entry.pid}); stop it first (Ctrl-C, or "
                f"kill {entry.pid}), then resume"
            )
    stopped = [entry for entry in recorded if entry.role != DRIVER and entry.alive()]
    pids = []
    for entry in stopped:
        pids += [entry.pid, *descendants(entry.pid)]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.1)
    for pid in pids:
        if _running(pid):
            _signal(pid, signal.SIGKILL)
    for entry in stopped:
        logger.info("stopped the %s (pid %d) that the stopped driver left running", entry.role, entry.pid)
    return stopped


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _signal(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, number)
