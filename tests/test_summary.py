"""sweeps.summary: the winner rule, and how sure the pick is."""

from __future__ import annotations

import csv
import io

from sweeps.mlflow_logging import TrialRecord
from sweeps.summary import certainty, rank_trials, summary_markdown


def record(trial_id: str, scores: list[float], status: str = "FINISHED", **metrics: float) -> TrialRecord:
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=["id", "theological_match_score"])
    writer.writeheader()
    writer.writerows({"id": f"q{i}", "theological_match_score": score} for i, score in enumerate(scores))
    mean = sum(scores) / len(scores) if scores else 0.0
    return TrialRecord(
        trial_id, f"run-{trial_id}", f"name-{trial_id}", {"optimizer": "LabeledFewShot", "max_labeled_demos": 1},
        status, {"theological_match_score": mean, "accuracy": 0.5, "lm_calls": 10, **metrics},
        artifacts={"question_scores.csv": table.getvalue()},
    )  # fmt: skip


def test_ties_break_by_accuracy_then_fewer_calls_then_trial_id():
    a = record("a", [0.5, 0.5], accuracy=0.4)
    b = record("b", [0.5, 0.5], accuracy=0.6)
    c = record("c", [0.5, 0.5], accuracy=0.6, lm_calls=5)
    d = record("d", [0.5, 0.5], accuracy=0.6, lm_calls=5)
    best = record("e", [1.0, 0.5])
    failed = record("f", [1.0, 1.0], status="FAILED")
    ranked = rank_trials([a, b, c, d, best, failed], "theological_match_score", "max")
    assert [r.trial_id for r in ranked] == ["e", "c", "d", "b", "a"]
    assert [r.trial_id for r in rank_trials([a, best], "theological_match_score", "min")] == ["a", "e"]


def test_a_winner_within_noise_is_not_crowned_silently():
    winner = record("w", [1, 0, 1, 0, 1, 1, 0, 1, 0, 1] * 6)
    runner_up = record("r", [1, 0, 1, 0, 1, 0, 0, 1, 0, 1] * 6)  # 0.1 lower on 60 questions
    sure = certainty(winner, runner_up, "theological_match_score")
    assert sure.winner_ci[0] < sure.winner_mean < sure.winner_ci[1]
    assert sure.difference_ci[0] <= 0 <= sure.difference_ci[1] or sure.difference_ci[0] > 0
    text = summary_markdown(sweep_name="s", metric="theological_match_score", ranked=[winner, runner_up],
                            records=[winner, runner_up], sure=sure, test_metrics={}, notes=[])  # fmt: skip
    assert ("NOT clear" in text) == (not sure.clear)


def test_noise_and_a_clear_win():
    noisy = certainty(record("w", [1, 0] * 30), record("r", [0, 1] * 30), "theological_match_score")
    assert not noisy.clear and "NOT clear" in noisy.sentence("theological_match_score")
    clear = certainty(record("w", [1] * 60), record("r", [0, 1] * 30), "theological_match_score")
    assert clear.clear and "The pick is clear" in clear.sentence("theological_match_score")
    alone = certainty(record("w", [1, 0]), None, "theological_match_score")
    assert alone.difference_ci is None and "no runner-up" in alone.sentence("theological_match_score")


def test_summary_lists_targets_and_top_five():
    records = [record(str(i), [i / 10, i / 10]) for i in range(7)]
    ranked = rank_trials(records, "theological_match_score", "max")
    text = summary_markdown(sweep_name="sweep_x", metric="theological_match_score", ranked=ranked, records=records,
                            sure=None, test_metrics={"test_accuracy": 0.25}, notes=["a note"])  # fmt: skip
    assert "| `accuracy` | 0.500 | 0.250 | > 0.80 | no |" in text
    assert "| `theological_match_score` | 0.600 |  | > 0.70 | no |" in text
    assert text.count(" | LabeledFewShot | 0.") == 5  # the top-5 rows
