"""The live status line (``sweeps.progress``): what it says, from the figures given; that a snapshot that fails
skips a beat and does not stop the sweep; and, against a FAKE LM sweep, that ``bibleqa-sweep run`` prints it
on a terminal (a pseudo-terminal) and not into a pipe, where the output stays one line per finished trial.
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading

import pytest

from sweeps.progress import Progress, StatusLines, status_line
from tests.fakes import ScriptedLMServer, completion_body
from tests.helpers import small_data

STATUS = re.compile(r"^\.\.\. (\d+)/(\d+) trials done.*?, (\d+) running; (\d+) LM calls sent; ", re.M)
TRIAL_LINE = re.compile(r"^\[\d+/\d+\] trial ", re.M)


def test_the_eta_is_the_pace_so_far_times_the_trials_left():
    # 3 of 10 trials done in 5 minutes: 100 s a trial, 7 left.
    line = status_line(Progress(total=10, done=3, failed=1, running=2, lm_calls=812, elapsed=300.0))
    assert line == "... 3/10 trials done (1 failed), 2 running; 812 LM calls sent; 5m00s so far, about 11m40s to go"


def test_the_time_budget_caps_the_eta():
    # At the pace so far 1 h is left, but the budget ends the sweep in 2 minutes.
    line = status_line(Progress(total=4, done=2, failed=0, running=2, lm_calls=7, elapsed=7200.0, budget_left=120.0))
    assert line.endswith("2h00m so far, about 2m00s to go (time budget)")
    line = status_line(Progress(total=4, done=0, failed=0, running=2, lm_calls=7, elapsed=30.0, budget_left=90.0))
    assert line.endswith("30s so far, at most 1m30s to go (time budget)")


def test_no_eta_before_the_first_trial_ends():
    line = status_line(Progress(total=6, done=0, failed=0, running=2, lm_calls=40, elapsed=75.0))
    assert line == "... 0/6 trials done, 2 running; 40 LM calls sent; 1m15s so far, ETA after the first trial ends"


def test_a_snapshot_that_fails_skips_a_line_and_the_next_one_comes():
    calls = iter([RuntimeError("the slots actor is busy"), Progress(2, 1, 0, 1, 5, 61.0)])

    def snapshot() -> Progress:
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    lines: list[str] = []
    with StatusLines(snapshot, lines.append, every=0.01) as status:
        status.wait_for_lines(1)
    assert lines[0] == "... 1/2 trials done, 1 running; 5 LM calls sent; 1m01s so far, about 1m01s to go"


def test_the_period_must_be_positive():
    with pytest.raises(ValueError, match="every=0"):
        StatusLines(lambda: Progress(1, 0, 0, 1, 0, 0.0), print, every=0)


@pytest.fixture(scope="module")
def fake_lm():
    """A FAKE LM that takes 0.3 s a call, so each trial lasts seconds (its dev pass alone is 6 calls)."""
    server = ScriptedLMServer([(200, completion_body(" Noah\nReferences: Genesis 6:14"))], ["fake-model"], latency=0.3)
    yield server
    server.close()


def _sweep_command(fake_lm, directory) -> list[str]:
    space = directory / "space.yaml"
    space.write_text(
        "optimizers:\n  LabeledFewShot:\n    max_labeled_demos: {int: [1, 2]}\n"
        "train_size: {int: [2, 4]}\nmodel_format: completion\n"
    )
    data = small_data(directory, train=4, dev=6, test=1)
    return [
        sys.executable, "-m", "sweeps.cli", "run", str(space), "--trials", "3", "--concurrency", "1",
        "--lm-base", fake_lm.base_url, "--model-format", "completion", "--no-cache", "--retries", "0",
        "--data", str(data), "--tracking-uri", f"sqlite:///{directory / 'mlflow.db'}",
        "--storage", str(directory / "results"), "--status-every", "0.5",
    ]  # fmt: skip


def _run_on_a_terminal(command: list[str], cwd) -> tuple[int, str]:
    """Run ``command`` with its stdout and stderr on a pseudo-terminal; return its exit code and output."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal)
    os.close(terminal)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the last holder of the terminal closed it
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    code = process.wait(timeout=600)
    reader.join(timeout=30)
    os.close(controller)
    return code, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


@pytest.mark.ray
@pytest.mark.slow
def test_a_terminal_gets_status_lines_and_a_pipe_does_not(fake_lm, tmp_path):
    """The same FAKE LM sweep twice, with a status line asked for every 0.5 s: on a pseudo-terminal, and
    piped.  Each trial makes at least 6 calls of 0.3 s, one at a time, so the trials last seconds."""
    (tmp_path / "tty").mkdir()
    code, shown = _run_on_a_terminal(_sweep_command(fake_lm, tmp_path / "tty"), tmp_path / "tty")
    assert code == 0, shown[-3000:]
    statuses = STATUS.findall(shown)
    assert len(TRIAL_LINE.findall(shown)) == 3
    assert statuses, shown[-3000:]
    assert {total for _, total, _, _ in statuses} == {"3"}
    # Done and LM calls only grow; at most two trials (1 slot + 1) run at once.
    done = [int(d) for d, *_ in statuses]
    calls = [int(c) for *_, c in statuses]
    assert done == sorted(done) and calls == sorted(calls) and calls[-1] > 0
    assert all(int(running) <= 2 for _, _, running, _ in statuses)

    (tmp_path / "pipe").mkdir()
    piped = subprocess.run(
        _sweep_command(fake_lm, tmp_path / "pipe"), cwd=tmp_path / "pipe", capture_output=True, text=True, timeout=600
    )
    assert piped.returncode == 0, piped.stderr[-3000:]
    assert len(TRIAL_LINE.findall(piped.stdout)) == 3
    assert STATUS.findall(piped.stdout + piped.stderr) == []
    assert "trials done" not in piped.stdout + piped.stderr
