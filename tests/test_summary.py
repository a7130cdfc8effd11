"""sweeps.summary: the winner rule, how sure the pick is, and what the parent's summary says.

Expected values come from the data in each test (counts, means, a normal approximation of the bootstrap),
never from the functions under test."""

from __future__ import annotations

import csv
import io
import math
import statistics

import pytest

from sweeps.records import TrialRecord
from sweeps.summary import (
    BOOTSTRAP_RESAMPLES,
    certainty,
    question_scores,
    summary_markdown,
)
from sweeps.trial_config import TrialConfig
from sweeps.winner import rank_trials, winner_key

METRIC = "theological_match_score"


def trial_record(trial_id: str, run_id: str, run_name: str, config: dict, *args, **kwargs) -> TrialRecord:
    """A record whose typed config is Ray's ``config`` parsed as the sweep parses it (LabeledFewShot when the
    config names no optimizer)."""
    return TrialRecord(trial_id, run_id, run_name, TrialConfig.from_ray({"optimizer": "LabeledFewShot", **config}),
                       *args, **kwargs)  # fmt: skip


def record(trial_id: str, scores: list[float], status: str = "FINISHED", **metrics: float) -> TrialRecord:
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=["id", METRIC])
    writer.writeheader()
    writer.writerows({"id": f"q{i:03d}", METRIC: score} for i, score in enumerate(scores))
    mean = sum(scores) / len(scores) if scores else 0.0
    return trial_record(
        trial_id, f"run-{trial_id}", f"name-{trial_id}", {"optimizer": "LabeledFewShot", "max_labeled_demos": 1},
        status, {METRIC: mean, "accuracy": 0.5, "lm_calls": 10, **metrics},
        artifacts={"question_scores.csv": table.getvalue()},
    )  # fmt: skip


def normal_interval(values: list[float]) -> tuple[float, float]:
    """The 95 % normal-approximation interval of the mean: what a bootstrap of the mean should come close to."""
    half = 1.96 * statistics.pstdev(values) / math.sqrt(len(values))
    return statistics.fmean(values) - half, statistics.fmean(values) + half


def test_ties_break_by_accuracy_then_fewer_calls_then_trial_id():
    a = record("a", [0.5, 0.5], accuracy=0.4)
    b = record("b", [0.5, 0.5], accuracy=0.6)
    c = record("c", [0.5, 0.5], accuracy=0.6, lm_calls=5)
    d = record("d", [0.5, 0.5], accuracy=0.6, lm_calls=5)
    best = record("e", [1.0, 0.5])
    failed = record("f", [1.0, 1.0], status="FAILED")
    ranked = rank_trials([a, b, c, d, best, failed], METRIC, "max")
    assert [r.trial_id for r in ranked] == ["e", "c", "d", "b", "a"]
    # min: the lowest objective first; the tie-breaks keep their direction (higher accuracy, fewer calls).
    assert [r.trial_id for r in rank_trials([best, a, b, c], METRIC, "min")] == ["c", "b", "a", "e"]


def test_trials_without_the_objective_or_not_finished_are_not_ranked():
    killed = record("k", [1.0, 1.0], status="KILLED")
    no_metric = trial_record("n", "run-n", "name-n", {"optimizer": "LabeledFewShot"}, "FINISHED", {"accuracy": 1.0})
    fine = record("f", [0.0, 0.0])
    assert [r.trial_id for r in rank_trials([killed, no_metric, fine], METRIC, "max")] == ["f"]


def test_missing_accuracy_and_calls_rank_last_within_a_tie():
    # A trial that reported no accuracy counts as accuracy 0; no lm_calls counts as the most calls.
    bare = trial_record("a", "r", "n", {}, "FINISHED", {METRIC: 0.5})
    with_accuracy = trial_record("b", "r", "n", {}, "FINISHED", {METRIC: 0.5, "accuracy": 0.1})
    with_calls = trial_record("c", "r", "n", {}, "FINISHED", {METRIC: 0.5, "lm_calls": 1e9})
    assert [r.trial_id for r in rank_trials([bare, with_accuracy, with_calls], METRIC, "max")] == ["b", "c", "a"]
    assert winner_key({METRIC: 0.5}, "x", METRIC, "max") > winner_key({METRIC: 0.5, "lm_calls": 3}, "x", METRIC, "max")


def test_question_scores_read_the_carried_table_and_skip_blank_cells():
    table = "id,theological_match_score,accuracy\nq1,0.25,1\nq2,,0\nq3,1.0,1\n"
    carried = trial_record("t", "r", "n", {}, "FINISHED", {}, artifacts={"question_scores.csv": table})
    assert question_scores(carried, METRIC) == {"q1": 0.25, "q3": 1.0}
    assert question_scores(carried, "accuracy") == {"q1": 1.0, "q2": 0.0, "q3": 1.0}
    assert question_scores(trial_record("t", "r", "n", {}), METRIC) == {}


def test_a_winner_within_noise_is_not_crowned():
    # 60 questions; the two trials differ on 6: the winner is better on 4, the runner-up on 2.
    winner_scores = [1, 1, 1, 1, 0, 0] + [1, 0] * 27
    runner_up_scores = [0, 0, 0, 0, 1, 1] + [1, 0] * 27
    differences = [w - r for w, r in zip(winner_scores, runner_up_scores, strict=True)]
    low, high = normal_interval(differences)
    assert low < 0 < high  # the data: a difference of +2/60 that noise explains

    winner, runner_up = record("w", winner_scores), record("r", runner_up_scores)
    sure = certainty(winner, runner_up, METRIC)
    assert not sure.clear
    assert sure.difference_ci[0] < 0 < sure.difference_ci[1]
    assert sure.difference_ci == pytest.approx((low, high), abs=0.03)
    assert sure.winner_mean == pytest.approx(statistics.fmean(winner_scores))
    assert sure.runner_up_mean == pytest.approx(statistics.fmean(runner_up_scores))
    assert sure.winner_ci == pytest.approx(normal_interval(winner_scores), abs=0.03)
    assert sure.n_questions == 60
    # The share of resamples where the runner-up is at least as good: P(mean difference <= 0), about 0.2.
    z = statistics.fmean(differences) / (statistics.pstdev(differences) / math.sqrt(60))
    assert sure.share_runner_up_not_worse == pytest.approx(statistics.NormalDist().cdf(-z), abs=0.08)

    text = summary_markdown(sweep_name="s", metric=METRIC, ranked=[winner, runner_up],
                            records=[winner, runner_up], sure=sure, test_metrics={}, notes=[])  # fmt: skip
    assert sure.sentence(METRIC) in text.splitlines()
    assert "The pick is NOT clear" in text and "The pick is clear" not in text
    assert "paired difference is +0.033" in text  # 2/60
    assert "60 questions" in text


def test_a_winner_better_on_some_questions_and_worse_on_none_is_clear():
    # The data the old noise test used: better on 6 of 60, never worse.  No resample can favour the
    # runner-up except one that draws none of the 6 (probability 0.9 ** 60, about 0.002).
    winner = record("w", [1, 0, 1, 0, 1, 1, 0, 1, 0, 1] * 6)
    runner_up = record("r", [1, 0, 1, 0, 1, 0, 0, 1, 0, 1] * 6)
    sure = certainty(winner, runner_up, METRIC)
    assert sure.clear and sure.difference_ci[0] > 0
    assert sure.share_runner_up_not_worse == pytest.approx(0.9**60, abs=0.005)
    assert "The pick is clear" in sure.sentence(METRIC)


def test_noise_and_a_clear_win():
    noisy = certainty(record("w", [1, 0] * 30), record("r", [0, 1] * 30), METRIC)
    assert not noisy.clear and "NOT clear" in noisy.sentence(METRIC)
    assert noisy.difference_ci[0] < 0 < noisy.difference_ci[1]
    clear = certainty(record("w", [1] * 60), record("r", [0, 1] * 30), METRIC)
    assert clear.clear and "The pick is clear" in clear.sentence(METRIC)
    # Every paired difference is 0 or 1, half of them 1: the interval sits around 0.5, clear of zero.
    assert clear.difference_ci == pytest.approx(normal_interval([1, 0] * 30), abs=0.03)
    assert clear.share_runner_up_not_worse == 0.0
    alone = certainty(record("w", [1, 0]), None, METRIC)
    assert alone.difference_ci is None and "no runner-up" in alone.sentence(METRIC)
    assert not alone.clear


def test_certainty_needs_scores_and_shared_questions():
    assert certainty(trial_record("w", "r", "n", {}, "FINISHED", {METRIC: 1.0}), None, METRIC) is None
    winner = record("w", [1, 1, 0])
    other = trial_record("o", "r", "n", {}, "FINISHED", {METRIC: 1.0},
                        artifacts={"question_scores.csv": f"id,{METRIC}\nx1,1\nx2,0\n"})  # fmt: skip
    sure = certainty(winner, other, METRIC)
    assert sure.difference_ci is None and sure.winner_mean == pytest.approx(2 / 3) and sure.n_questions == 3
    assert sure.winner_ci[0] <= 2 / 3 <= sure.winner_ci[1] and sure.winner_ci[0] < sure.winner_ci[1]


def test_a_constant_score_has_a_point_interval():
    sure = certainty(record("w", [0.5] * 10), record("r", [0.25] * 10), METRIC)
    assert sure.winner_ci == (0.5, 0.5)
    assert sure.difference_ci == (0.25, 0.25)
    assert BOOTSTRAP_RESAMPLES >= 1000  # enough resamples for a stable 2.5 % quantile


def test_the_interval_is_seeded():
    winner, runner_up = record("w", [1, 0, 0, 1, 1] * 4), record("r", [0, 1, 0, 1, 0] * 4)
    assert certainty(winner, runner_up, METRIC, seed=3) == certainty(winner, runner_up, METRIC, seed=3)


def test_the_sentence_reports_the_figures():
    sure = certainty(record("w", [1, 1, 1, 0]), None, METRIC)
    assert sure.sentence(METRIC).startswith(f"The winner's {METRIC} on dev is 0.750 (95 % bootstrap interval ")
    assert "4 questions" in sure.sentence(METRIC)


def test_summary_lists_targets_and_top_five():
    records = [record(str(i), [i / 10, i / 10]) for i in range(7)]
    ranked = rank_trials(records, METRIC, "max")
    text = summary_markdown(sweep_name="sweep_x", metric=METRIC, ranked=ranked, records=records,
                            sure=None, test_metrics={"test_accuracy": 0.25}, notes=["a note"])  # fmt: skip
    lines = text.splitlines()
    assert lines[0] == "# sweep_x"
    assert "7 trials: 7 finished, 0 failed." in lines
    assert "- a note" in lines
    assert "## Winner: trial 6 (run run-6)" in lines
    assert "| `optimizer` | LabeledFewShot |" in lines and "| `max_labeled_demos` | 1 |" in lines
    assert "| `accuracy` | 0.500 | 0.250 | > 0.80 | no |" in lines
    assert "| `theological_match_score` | 0.600 |  | > 0.70 | no |" in lines
    assert "No per-question scores." in lines
    top = [line for line in lines if line.startswith("| ") and " | LabeledFewShot | 0." in line]
    assert top == [f"| {rank} | {6 - rank + 1} | LabeledFewShot | {(6 - rank + 1) / 10:.3f} | 0.500 | 10 |"
                   for rank in range(1, 6)]  # fmt: skip
    assert "## Failed trials" not in text


def test_a_target_is_met_only_above_it():
    at_target = record("a", [0.7, 0.7], accuracy=0.9)
    above = trial_record("b", "r", "n", {"optimizer": "LabeledFewShot"}, "FINISHED", {METRIC: 0.71, "accuracy": 0.8})
    for winner, met in ((at_target, {"theological_match_score": "no", "accuracy": "yes"}),
                        (above, {"theological_match_score": "yes", "accuracy": "no"})):  # fmt: skip
        text = summary_markdown(sweep_name="s", metric=METRIC, ranked=[winner], records=[winner], sure=None,
                                test_metrics={}, notes=[])  # fmt: skip
        for name, answer in met.items():
            [row] = [line for line in text.splitlines() if line.startswith(f"| `{name}` |")]
            assert row.endswith(f"| {answer} |"), row


def test_failed_trials_are_listed_with_their_error():
    ok = record("ok", [1.0])
    failed = trial_record("bad", "run-bad", "n", {"optimizer": "BootstrapFewShot"}, "FAILED", error="HTTP 500")
    killed = trial_record("cut", "run-cut", "n", {"optimizer": "LabeledFewShot"}, "KILLED", error="stopped")
    text = summary_markdown(sweep_name="s", metric=METRIC, ranked=[ok], records=[ok, failed, killed], sure=None,
                            test_metrics={}, notes=[])  # fmt: skip
    assert "3 trials: 1 finished, 2 failed." in text
    assert text.endswith("## Failed trials\n\n- bad (BootstrapFewShot): HTTP 500\n- cut (LabeledFewShot): stopped\n")
    nothing = summary_markdown(sweep_name="s", metric=METRIC, ranked=[], records=[failed], sure=None,
                               test_metrics={}, notes=[])  # fmt: skip
    assert nothing == "# s\n\n1 trials: 0 finished, 1 failed.\n\nNo trial finished, so there is no winner.\n"


def test_the_whole_summary_as_a_person_reads_it():
    winner = trial_record(
        "w1", "run-w1", "name-w1",
        {"optimizer": "LabeledFewShot", "max_labeled_demos": 2, "train_size": 8, "retrieval_k": 1, "seed": 3},
        "FINISHED",
        {METRIC: 0.75, "accuracy": 0.5, "key_term_accuracy": 0.9, "cross_reference_recall": 0.25, "lm_calls": 12},
    )  # fmt: skip
    # A runner-up that reported neither accuracy nor lm_calls: "nan" and 0 in its row.
    runner_up = trial_record("r2", "run-r2", "name-r2", {"optimizer": "BootstrapFewShot"}, "FINISHED", {METRIC: 0.5})
    failed = trial_record("f3", "run-f3", "name-f3", {"optimizer": "MIPROv2"}, "FAILED", error="HTTP 500")
    text = summary_markdown(
        sweep_name="sweep_demo_20260101_000000",
        metric=METRIC,
        ranked=[winner, runner_up],
        records=[winner, runner_up, failed],
        sure=None,
        test_metrics={"test_accuracy": 0.25, "test_theological_match_score": 0.5},
        notes=["TPE samples its first 10 trials at random"],
    )
    assert text == (
        "# sweep_demo_20260101_000000\n"
        "\n"
        "3 trials: 2 finished, 1 failed.\n"
        "- TPE samples its first 10 trials at random\n"
        "\n"
        "## Winner: trial w1 (run run-w1)\n"
        "\n"
        "| param | value |\n"
        "|---|---|\n"
        "| `optimizer` | LabeledFewShot |\n"
        "| `max_labeled_demos` | 2 |\n"
        "| `train_size` | 8 |\n"
        "| `num_examples` | 8 |\n"
        "| `retrieval_k` | 1 |\n"
        "| `related_passages` | 15 |\n"
        "| `chain_of_thought` | False |\n"
        "| `bootstrap_metric` | composite_score |\n"
        "| `bootstrap_threshold` | 0.5 |\n"
        "| `seed` | 3 |\n"
        "\n"
        "| metric | dev | test | seed target | met on dev? |\n"
        "|---|---|---|---|---|\n"
        "| `accuracy` | 0.500 | 0.250 | > 0.80 | no |\n"
        "| `theological_match_score` | 0.750 | 0.500 | > 0.70 | yes |\n"
        "| `key_term_accuracy` | 0.900 |  | > 0.85 | yes |\n"
        "| `cross_reference_recall` | 0.250 |  | > 0.65 | no |\n"
        "\n"
        "## How sure is the pick?\n"
        "\n"
        "No per-question scores.\n"
        "\n"
        "## Top 5\n"
        "\n"
        "| rank | trial | optimizer | theological_match_score | accuracy | lm_calls |\n"
        "|---|---|---|---|---|---|\n"
        "| 1 | w1 | LabeledFewShot | 0.750 | 0.500 | 12 |\n"
        "| 2 | r2 | BootstrapFewShot | 0.500 | nan | 0 |\n"
        "\n"
        "## Failed trials\n"
        "\n"
        "- f3 (MIPROv2): HTTP 500\n"
    )


def test_the_certainty_sentences_word_for_word():
    # Every question scores the same: each interval is a single point, so the sentence follows from the data.
    sure = certainty(record("w", [0.5] * 10), record("r", [0.25] * 10), METRIC)
    assert sure.sentence(METRIC) == (
        "The winner's theological_match_score on dev is 0.500 (95 % bootstrap interval 0.500 to 0.500, "
        "10 questions). Against the runner-up (0.250) the paired difference is +0.250 (95 % interval +0.250 to "
        "+0.250). The pick is clear: the interval excludes zero."
    )
    tied = certainty(record("w", [0.5] * 10), record("r", [0.5] * 10), METRIC)
    assert tied.share_runner_up_not_worse == 1.0  # equal in every resample counts as not worse
    assert tied.sentence("accuracy") == (
        "The winner's accuracy on dev is 0.500 (95 % bootstrap interval 0.500 to 0.500, 10 questions). Against the "
        "runner-up (0.500) the paired difference is +0.000 (95 % interval +0.000 to +0.000). The pick is NOT clear: "
        "the interval includes zero, so the runner-up may be as good (it scored at least as well in 100% of "
        "resamples). Treat the top trials as tied, or score them on more questions."
    )
    alone = certainty(record("w", [1.0] * 4), None, METRIC)
    assert alone.sentence(METRIC) == (
        "The winner's theological_match_score on dev is 1.000 (95 % bootstrap interval 1.000 to 1.000, "
        "4 questions). There is no runner-up to compare with."
    )


def test_every_question_can_be_drawn_in_a_resample():
    # One right answer among five: some resamples draw it, so the interval's top is above zero.
    sure = certainty(record("w", [1, 0, 0, 0, 0]), None, METRIC)
    assert sure.winner_ci[0] == 0.0 and sure.winner_ci[1] > 0.0


def test_equal_trials_keep_the_trial_id_order_whatever_order_they_come_in():
    later, earlier = record("t2", [0.5, 0.5]), record("t1", [0.5, 0.5])
    assert [r.trial_id for r in rank_trials([later, earlier], METRIC, "max")] == ["t1", "t2"]
