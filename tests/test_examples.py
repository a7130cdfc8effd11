"""examples/launch_sweep.py, as a person runs it: the public API on the bundled LM (the script starts its own
server), a search space built in code, real Ray and a real local MLflow store.  The script checks the
result's fields itself; here its exit code and its output are checked, and that no library wrote to the
console."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.lm, pytest.mark.ray, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "launch_sweep.py"
OWN_LINES = ("note: ", "sweep sweep_example_", "[1/2] trial ", "[2/2] trial ", "winner: run ", "parent run ", "Q: ",
             "every check held")  # fmt: skip


def test_the_launch_example_runs_and_its_checks_hold(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke-test", "--storage", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    lines = result.stdout.splitlines()
    assert lines[-1] == "every check held"
    assert [line for line in lines if not line.startswith(OWN_LINES)] == []
    assert result.stderr == ""  # no library log line reached the console
    [folder] = [path for path in tmp_path.iterdir() if path.name.startswith("sweep_example_")]
    assert {"space.yaml", "sweep.json", "sweep.log", "trials.csv", "summary.md", "program.json"} <= {
        path.name for path in folder.iterdir()
    }
    assert "mlflow" in (folder / "sweep.log").read_text()  # the libraries' lines went to the sweep log instead
