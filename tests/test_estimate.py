"""sweeps.estimate: what ``--dry-run`` says a sweep costs, against what the same sweep then costs.

Against a FAKE LM of fixed latency (``bench/fixed_latency_lm.py``), so the truth is known: the estimate's LM
calls are the calls the server receives, and its time is within 1.5 x of the sweep's wall time, measured in
the same test (on 2 busy cores the sweep's start-up can double and the estimate still holds)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import sweeps
from bench.fixed_latency_lm import FixedLatencyLM
from bibleqa.dataset import load_dataset
from bibleqa.lm import LMSettings
from sweeps.estimate import PROBE_CALLS, lm_calls_per_trial
from sweeps.space import load_space
from tests.helpers import small_data

ROOT = Path(__file__).resolve().parent.parent
LATENCY = 0.5
SPACE = {
    "name": "estimate",
    "optimizers": {"LabeledFewShot": {"max_labeled_demos": {"int": [1, 3]}}},  # no compile call: exact counts
    "train_size": 4,
    "retrieval_k": 1,  # the first call builds the retrieval index: a cold call is slower than the rest
    "related_passages": 0,
    "model_format": "completion",
}


def test_calls_per_trial_come_from_the_registry_and_the_dev_split():
    space = load_space(ROOT / "search_spaces" / "smoke.yaml")  # train_size up to 8; BootstrapFewShot 1 round
    assert lm_calls_per_trial(space, dev_size=70) == {"LabeledFewShot": 0 + 70, "BootstrapFewShot": 8 * 1 + 70}
    default = load_space(ROOT / "search_spaces" / "default.yaml")  # train_size up to 128, up to 2 rounds
    per_trial = lm_calls_per_trial(default, dev_size=70)
    assert per_trial["BootstrapFewShot"] == 128 * 2 + 70
    assert per_trial["BootstrapFewShotWithRandomSearch"] == (8 + 3) * (128 + 16) + 70  # up to 8 candidates


@pytest.mark.slow
@pytest.mark.ray
def test_the_estimate_is_within_one_and_a_half_times_the_sweep_it_estimates(tmp_path):
    fake = FixedLatencyLM(LATENCY, slots=1).start()
    work = tmp_path / "work"
    work.mkdir()
    try:
        data = small_data(work, train=8, dev=12, test=2)
        lm = LMSettings(lm_base=fake.base_url, lm_model="fixed-latency", model_format="completion", cache=False,
                        slots=1)  # fmt: skip
        options = {"trials": 4, "data": str(data), "tracking_uri": f"sqlite:///{work / 'mlflow.db'}",
                   "storage": str(work / "results")}  # fmt: skip
        estimate = sweeps.estimate_sweep(SPACE, lm=lm, **options)
        assert len(fake.busy_intervals) == PROBE_CALLS + 1  # the probe: a warm-up call, then the timed ones
        assert list(work.iterdir()) == [data]  # the estimate wrote nothing
        fake.reset()
        started = time.monotonic()
        result = sweeps.run_sweep(SPACE, lm=lm, **options)
        wall = time.monotonic() - started
    finally:
        fake.stop()
    assert result.n_trials == 4 and result.n_failed == 0
    assert estimate.estimated_lm_calls == len(fake.busy_intervals) == 4 * 12 + 2  # dev per trial, then test
    assert LATENCY <= estimate.seconds_per_call < 1.5 * LATENCY
    assert estimate.measured.startswith(f"{PROBE_CALLS} calls of the program after a warm-up call, uncached")
    assert wall / 1.5 <= estimate.estimated_seconds <= wall * 1.5, (estimate.estimated_seconds, wall)


@pytest.mark.slow
def test_the_estimate_from_a_script_writes_nothing_to_the_console(tmp_path):
    fake = FixedLatencyLM(0.01, slots=1).start()
    script = (
        "import sweeps\n"
        f"lm = sweeps.lm_studio('fixed-latency', {fake.base_url!r}, model_format='completion', cache=False)\n"
        f"estimate = sweeps.estimate_sweep({SPACE!r}, lm=lm, trials=3, data={str(small_data(tmp_path))!r},"
        f" tracking_uri='sqlite:///{tmp_path}/mlflow.db')\n"
        "assert estimate.estimated_lm_calls > 0\n"
    )
    try:
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    finally:
        fake.stop()
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    assert len(load_dataset(small_data(tmp_path)).dev) > 0
