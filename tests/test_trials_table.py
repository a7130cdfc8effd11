"""sweeps.trials_table: ``trials.csv`` is ranked, leads with the rank and the objective, and writes integers
as integers; ``SweepResult.trials_dataframe()`` is the same table.  Read back from the written file."""

from __future__ import annotations

import csv

from sweeps.records import TrialRecord
from sweeps.result import SweepResult
from sweeps.trial_config import TrialConfig
from sweeps.trials_table import trial_rows

METRIC = "theological_match_score"


def finished(trial_id: str, score: float, accuracy: float, lm_calls: float, config: dict) -> TrialRecord:
    metrics = {"accuracy": accuracy, METRIC: score, "n_errors": 0.0, "lm_calls": lm_calls, "eval_seconds": 2.5}
    return TrialRecord(trial_id, f"run-{trial_id}", f"name-{trial_id}", TrialConfig.from_ray(config), "FINISHED",
                       metrics, seconds=12.34)  # fmt: skip


LABELED = {"optimizer": "LabeledFewShot", "max_labeled_demos": 2, "train_size": 8, "retrieval_k": 0}
BOOTSTRAP = {"optimizer": "BootstrapFewShot", "max_bootstrapped_demos": 1, "max_labeled_demos": 0,
             "max_rounds": 1, "train_size": 4, "retrieval_k": 2}  # fmt: skip
# In start order: a failure, a low score, the best, a tie with the best broken by fewer LM calls.
RECORDS = [
    TrialRecord("t0", "run-t0", "name-t0", TrialConfig.from_ray(BOOTSTRAP), "FAILED", error="HTTP 500", attempts=2),
    finished("t1", 0.05, 0.1, 73.0, LABELED),
    finished("t2", 0.30, 0.3, 75.0, BOOTSTRAP),
    finished("t3", 0.30, 0.3, 74.0, LABELED),
]


def written(tmp_path, mode: str = "max") -> list[dict[str, str]]:
    """``trials.csv`` as ``finalize`` writes it, read back as text."""
    result = SweepResult(sweep_name="s", parent_run_id="p", experiment_id="1", tracking_uri="sqlite:///m.db",
                         sweep_dir=str(tmp_path), n_trials=4, n_failed=1,
                         trials=trial_rows(RECORDS, METRIC, mode))  # fmt: skip
    result.trials_dataframe().to_csv(tmp_path / "trials.csv", index=False)
    with open(tmp_path / "trials.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_trials_csv_is_ranked_with_the_rank_and_the_objective_first(tmp_path):
    rows = written(tmp_path)
    with open(tmp_path / "trials.csv", encoding="utf-8") as handle:
        header = handle.readline().strip().split(",")
    assert header[:8] == ["rank", METRIC, "trial_id", "run_id", "run_name", "status", "attempts", "seconds"]
    assert header[8] == "optimizer" and header[-1] == "error"
    # t3 ties t2 on the objective and on accuracy and makes fewer LM calls; t1 is last; t0 failed: unranked.
    assert [(row["rank"], row["trial_id"]) for row in rows] == [("1", "t3"), ("2", "t2"), ("3", "t1"), ("", "t0")]
    assert [row[METRIC] for row in rows] == ["0.3", "0.3", "0.05", ""]
    assert rows[3]["status"] == "FAILED" and rows[3]["error"] == "HTTP 500"
    # Lowest first when the objective is minimised.
    assert [row["trial_id"] for row in written(tmp_path, "min")] == ["t1", "t3", "t2", "t0"]


def test_integers_are_written_as_integers(tmp_path):
    by_id = {row["trial_id"]: row for row in written(tmp_path)}
    labeled, bootstrap, failed = by_id["t3"], by_id["t2"], by_id["t0"]
    # LabeledFewShot has no max_bootstrapped_demos or max_rounds: empty, and BootstrapFewShot's stay integers.
    assert (labeled["max_bootstrapped_demos"], labeled["max_rounds"]) == ("", "")
    assert (bootstrap["max_bootstrapped_demos"], bootstrap["max_rounds"], bootstrap["max_labeled_demos"]) == (
        "1", "1", "0")  # fmt: skip
    assert (labeled["lm_calls"], labeled["n_errors"], labeled["train_size"], labeled["retrieval_k"]) == (
        "74", "0", "8", "0")  # fmt: skip
    assert (failed["attempts"], failed["lm_calls"], failed["max_rounds"]) == ("2", "", "1")
    assert (labeled["seconds"], labeled["eval_seconds"], labeled["accuracy"]) == ("12.3", "2.5", "0.3")
    assert labeled["chain_of_thought"] == "False"


def test_trials_dataframe_is_the_table_of_trials_csv(tmp_path):
    rows = written(tmp_path)
    result = SweepResult(sweep_name="s", parent_run_id="p", experiment_id="1", tracking_uri="sqlite:///m.db",
                         sweep_dir=str(tmp_path), n_trials=4, n_failed=1,
                         trials=trial_rows(RECORDS, METRIC, "max"))  # fmt: skip
    frame = result.trials_dataframe()
    assert list(frame.columns) == list(rows[0])
    assert list(frame["trial_id"]) == [row["trial_id"] for row in rows]
    assert frame["lm_calls"].iloc[0] == 74 and str(frame["lm_calls"].dtype) == "Int64"
