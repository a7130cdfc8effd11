"""The ``bibleqa`` command: bad input gets one line on stderr, exit code 2, no traceback, and starts nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bibleqa.local_lm import free_port


def bibleqa(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "bibleqa.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    return result, time.monotonic() - started


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("bibleqa: error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_a_broken_data_line_names_file_and_line(tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text('{"id": "a"}\n')
    result, _ = bibleqa("train", "--data", str(data), cwd=tmp_path)
    assert_one_line_error(result, f"{data}:1", "missing")
    assert not (tmp_path / "mlflow.db").exists()


def test_an_unknown_optimizer_lists_the_known_ones(tmp_path):
    result, _ = bibleqa("train", "--optimizer", "Adam", cwd=tmp_path)
    assert_one_line_error(result, "optimizer 'Adam' is unknown", "BootstrapFewShot", "bootstrap")


def test_too_many_training_examples(tmp_path):
    result, _ = bibleqa("train", "--num-examples", "100000", cwd=tmp_path)
    assert_one_line_error(result, "train_size 100000 is larger than the train split", "--num-examples")


def test_lm_studio_not_running_fails_in_seconds(tmp_path):
    base = f"http://127.0.0.1:{free_port()}/v1"
    result, seconds = bibleqa("train", "--lm-base", base, cwd=tmp_path)
    assert_one_line_error(result, f"LM Studio is not reachable at {base}", "--lm local")
    assert seconds < 10
    assert not (tmp_path / "mlflow.db").exists()


def test_conflicting_lm_flags(tmp_path):
    result, _ = bibleqa("train", "--lm", "local", "--lm-base", "http://127.0.0.1:1234/v1", cwd=tmp_path)
    assert_one_line_error(result, "--lm local starts its own")


@pytest.mark.lm
def test_an_unreachable_mlflow_server_fails_within_10_seconds(local_lm, tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    result, seconds = bibleqa("train", "--lm-base", local_lm.base_url, "--tracking-uri", uri, cwd=tmp_path)
    assert_one_line_error(result, f"the MLflow server is not reachable at {uri}")
    assert seconds < 10


def test_help_is_fast_and_names_the_commands(tmp_path):
    result, _ = bibleqa("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "train" in result.stdout and "serve-lm" in result.stdout


def sweep(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "sweeps.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    return result, time.monotonic() - started


def test_sweep_with_lm_studio_down_starts_nothing(tmp_path):
    space = Path(__file__).resolve().parent.parent / "search_spaces" / "smoke.yaml"
    base = f"http://127.0.0.1:{free_port()}/v1"
    result, seconds = sweep("run", str(space), "--lm-base", base, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"bibleqa-sweep: error: LM Studio is not reachable at {base}" in result.stderr
    assert seconds < 15
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "sweeps_results").exists()


def test_sweep_with_a_bad_space_lists_its_problems(tmp_path):
    space = tmp_path / "bad.yaml"
    space.write_text("optimizers:\n  LabeledFewShot:\n    max_labeled_demos: {int: [3, 1]}\nretrieval_k: -1\n")
    result, _ = sweep("run", str(space), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"{space}: optimizers.LabeledFewShot.max_labeled_demos: range [3, 1] is empty or inverted; allowed: low < high",
        f"{space}: retrieval_k: -1 is not allowed; allowed: integers from 0 to 10",
    ]


def test_bad_sweep_flags(tmp_path):
    result, _ = sweep("run", "search_spaces/smoke.yaml", "--concurrency", "many", cwd=tmp_path)
    assert result.returncode == 2 and "--concurrency 'many' is not auto or a positive integer" in result.stderr


@pytest.mark.lm
def test_dry_run_estimates_and_starts_nothing(local_lm, tmp_path):
    space = Path(__file__).resolve().parent.parent / "search_spaces" / "smoke.yaml"
    result, _ = sweep(
        "run", str(space), "--dry-run", "--lm-base", local_lm.base_url, "--model-format", "completion",
        "--output-json", "dry.json", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "nothing was started" in result.stdout and "LM calls" in result.stdout
    assert "plain random search" in result.stdout  # 6 trials <= 10 TPE start-up trials
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "sweeps_results").exists()
    import json

    estimate = json.loads((tmp_path / "dry.json").read_text())
    assert estimate["estimated_lm_calls"] > 6 * 64
    assert estimate["slots"] == 4  # --lm lmstudio (here pointed at the bundled server): auto assumes LM Studio
