"""Live progress while the trials run: a status line every ``every`` seconds (trials done and running, LM
calls sent so far, time spent and an ETA), beside the one line per finished trial that ``echo`` always gets.

The command decides who sees it: ``bibleqa-sweep run`` asks for status lines only when its output is a
terminal (``--status-every``, default 30 s), so piped or logged output stays one line per finished trial.
``sweeps.tune_run`` feeds the line from what it already knows: the trial records of the MLflow callback
and the LM slots' count of the calls that went out.

    bibleqa-sweep run search_spaces/smoke.yaml --trials 6 --lm local   # on a terminal

Example::

    >>> from sweeps.progress import Progress, status_line
    >>> status_line(Progress(total=6, done=2, failed=0, running=2, lm_calls=140, elapsed=120.0))
    '... 2/6 trials done, 2 running; 140 LM calls sent; 2m00s so far, about 4m00s to go'
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

DEFAULT_STATUS_EVERY = 30.0
"""Seconds between status lines on a terminal: often enough to show the sweep is alive during a long
trial (MIPROv2 makes hundreds of calls), rarely enough not to bury the per-trial lines."""


@dataclass(frozen=True)
class Progress:
    """Where the sweep stands: trials ``done`` (``failed`` among them) and ``running`` out of ``total``, the
    LM calls sent to the server so far (``lm_calls_through_slots``: cache hits send nothing), the seconds
    since the trials started, and what is left of the time budget (``None``: no budget)."""

    total: int
    done: int
    failed: int
    running: int
    lm_calls: int
    elapsed: float
    budget_left: float | None = None


def status_line(progress: Progress) -> str:
    """One status line.  The ETA is the pace so far (seconds per finished trial, with trials overlapping)
    times the trials left, capped by the time budget; before the first trial ends there is no pace yet.

    >>> status_line(Progress(total=4, done=0, failed=0, running=2, lm_calls=0, elapsed=5.0))
    '... 0/4 trials done, 2 running; 0 LM calls sent; 5s so far, ETA after the first trial ends'
    >>> status_line(Progress(total=4, done=3, failed=1, running=1, lm_calls=9, elapsed=90.0, budget_left=10.0))
    '... 3/4 trials done (1 failed), 1 running; 9 LM calls sent; 1m30s so far, about 10s to go (time budget)'
    """
    failed = f" ({progress.failed} failed)" if progress.failed else ""
    head = (
        f"... {progress.done}/{progress.total} trials done{failed}, {progress.running} running; "
        f"{progress.lm_calls} LM calls sent; {_duration(progress.elapsed)} so far"
    )
    if progress.done == 0:
        if progress.budget_left is not None:
            return f"{head}, at most {_duration(progress.budget_left)} to go (time budget)"
        return f"{head}, ETA after the first trial ends"
    left = progress.elapsed / progress.done * (progress.total - progress.done)
    if progress.budget_left is not None and progress.budget_left < left:
        return f"{head}, about {_duration(progress.budget_left)} to go (time budget)"
    return f"{head}, about {_duration(left)} to go"


def _duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


_ECHO_LOCK = threading.Lock()


def one_line_at_a_time(echo: Callable[[str], None]) -> Callable[[str], None]:
    """``echo`` behind a lock: the status thread and the per-trial lines never write into each other.  (A
    partial of a module function, so Tune can pickle the callback that holds it, as it pickles ``print``.)"""
    return functools.partial(_echo_locked, echo)


def _echo_locked(echo: Callable[[str], None], line: str) -> None:
    with _ECHO_LOCK:
        echo(line)


class StatusLines:
    """Sends ``status_line(snapshot())`` to ``echo`` every ``every`` seconds from a daemon thread, between
    ``start()`` and ``stop()`` (or as a context manager).  A snapshot that raises is logged and skipped: the
    status line never stops a sweep.

    >>> lines = []
    >>> snapshot = lambda: Progress(total=2, done=1, failed=0, running=1, lm_calls=3, elapsed=10.0)
    >>> with StatusLines(snapshot, lines.append, every=0.01) as status:
    ...     status.wait_for_lines(1)
    >>> lines[0]
    '... 1/2 trials done, 1 running; 3 LM calls sent; 10s so far, about 10s to go'
    """

    def __init__(self, snapshot: Callable[[], Progress], echo: Callable[[str], None], every: float):
        if every <= 0:
            raise ValueError(f"status lines need a positive period, but got {every=}")
        self.snapshot = snapshot
        self.echo = echo
        self.every = every
        self.sent = 0
        self._stop = threading.Event()
        self._sent_one = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="sweep-status", daemon=True)

    def start(self) -> StatusLines:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> StatusLines:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for_lines(self, count: int) -> None:
        """Block until ``count`` lines were sent (for tests and examples)."""
        with self._sent_one:
            self._sent_one.wait_for(lambda: self.sent >= count)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                line = status_line(self.snapshot())
            except Exception:  # a busy Ray actor, a record being written: skip this beat, not the sweep
                logger.debug("no status line this time", exc_info=True)
                continue
            self.echo(line)
            with self._sent_one:
                self.sent += 1
                self._sent_one.notify_all()
