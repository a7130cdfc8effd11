"""The parent run's summary: how sure the pick is, and ``summary.md`` (``trials.csv``'s rows are
``sweeps.trials_table``'s, the plots ``sweeps.plots``').

The winner comes by the rule in ``sweeps.winner``.  With about 70 dev questions two scores 0.1 apart can be
noise, so the summary gives the winner's 95 % bootstrap interval on dev and a paired bootstrap against the
runner-up over the same questions, and says plainly when the pick is not clear.

Example::

    >>> from sweeps.summary import certainty
    >>> from sweeps.records import TrialRecord
    >>> from sweeps.trial_config import TrialConfig
    >>> table = "\\n".join(["id,theological_match_score", "q1,1.0", "q2,0.0"])
    >>> winner = TrialRecord("a", "r1", "n1", TrialConfig("LabeledFewShot"), "FINISHED",
    ...                      artifacts={"question_scores.csv": table})
    >>> certainty(winner, None, "theological_match_score").winner_mean
    0.5
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass

import numpy as np

from bibleqa.metrics import SEED_TARGETS, TRACKED_METRICS
from sweeps.records import TrialRecord

logger = logging.getLogger(__name__)

BOOTSTRAP_RESAMPLES = 2000


def question_scores(record: TrialRecord, metric: str) -> dict[str, float]:
    """``{question id: score}`` from the trial's carried ``question_scores.csv``."""
    text = record.artifacts.get("question_scores.csv", "")
    return {
        row["id"]: float(row[metric]) for row in csv.DictReader(io.StringIO(text)) if row.get(metric) not in (None, "")
    }


@dataclass(frozen=True)
class Certainty:
    """How sure the pick is."""

    winner_mean: float
    winner_ci: tuple[float, float]
    runner_up_mean: float | None = None
    difference_ci: tuple[float, float] | None = None
    share_runner_up_not_worse: float | None = None
    n_questions: int = 0

    @property
    def clear(self) -> bool:
        """True when the paired 95 % interval of (winner - runner-up) excludes 0."""
        return self.difference_ci is not None and self.difference_ci[0] > 0

    def sentence(self, metric: str) -> str:
        low, high = self.winner_ci
        text = (
            f"The winner's {metric} on dev is {self.winner_mean:.3f} "
            f"(95 % bootstrap interval {low:.3f} to {high:.3f}, {self.n_questions} questions)."
        )
        if self.difference_ci is None:
            return text + " There is no runner-up to compare with."
        low_d, high_d = self.difference_ci
        text += (
            f" Against the runner-up ({self.runner_up_mean:.3f}) the paired difference is "
            f"{self.winner_mean - self.runner_up_mean:+.3f} (95 % interval {low_d:+.3f} to {high_d:+.3f})."
        )
        if self.clear:
            return text + " The pick is clear: the interval excludes zero."
        return text + (
            " The pick is NOT clear: the interval includes zero, so the runner-up may be as good "
            f"(it scored at least as well in {self.share_runner_up_not_worse:.0%} of resamples). Treat the top "
            "trials as tied, or score them on more questions."
        )


def certainty(winner: TrialRecord, runner_up: TrialRecord | None, metric: str, seed: int = 0) -> Certainty | None:
    """Bootstrap interval of the winner's mean, and a paired bootstrap against the runner-up."""
    winner_scores = question_scores(winner, metric)
    if not winner_scores:
        return None
    rng = np.random.default_rng(seed)
    ids = sorted(winner_scores)
    values = np.array([winner_scores[i] for i in ids])
    picks = rng.integers(0, len(ids), size=(BOOTSTRAP_RESAMPLES, len(ids)))
    means = values[picks].mean(axis=1)
    winner_ci = (float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975)))
    if runner_up is None:
        return Certainty(float(values.mean()), winner_ci, n_questions=len(ids))
    other = question_scores(runner_up, metric)
    shared = [i for i in ids if i in other]
    if not shared:
        return Certainty(float(values.mean()), winner_ci, n_questions=len(ids))
    difference = np.array([winner_scores[i] - other[i] for i in shared])
    paired = difference[rng.integers(0, len(shared), size=(BOOTSTRAP_RESAMPLES, len(shared)))].mean(axis=1)
    return Certainty(
        winner_mean=float(values.mean()),
        winner_ci=winner_ci,
        runner_up_mean=float(np.mean([other[i] for i in shared])),
        difference_ci=(float(np.quantile(paired, 0.025)), float(np.quantile(paired, 0.975))),
        share_runner_up_not_worse=float((paired <= 0).mean()),
        n_questions=len(ids),
    )


def summary_markdown(
    *,
    sweep_name: str,
    metric: str,
    ranked: list[TrialRecord],
    records: list[TrialRecord],
    sure: Certainty | None,
    test_metrics: dict[str, float],
    notes: list[str],
) -> str:
    """The human summary: the winner's config and metrics against the seed's targets, certainty, top 5."""
    lines = [f"# {sweep_name}", ""]
    failed = [record for record in records if record.status != "FINISHED"]
    lines.append(f"{len(records)} trials: {len(records) - len(failed)} finished, {len(failed)} failed.")
    lines.extend(f"- {note}" for note in notes)
    if not ranked:
        lines += ["", "No trial finished, so there is no winner."]
        return "\n".join(lines) + "\n"
    winner = ranked[0]
    lines += ["", f"## Winner: trial {winner.trial_id} (run {winner.run_id})", "", "| param | value |", "|---|---|"]
    for name, value in winner.trial.as_params().items():
        lines.append(f"| `{name}` | {value} |")
    lines += ["", "| metric | dev | test | seed target | met on dev? |", "|---|---|---|---|---|"]
    for name in TRACKED_METRICS:
        dev = winner.metrics.get(name, float("nan"))
        test = test_metrics.get(f"test_{name}")
        target = SEED_TARGETS[name]
        lines.append(
            f"| `{name}` | {dev:.3f} | {'' if test is None else f'{test:.3f}'} | > {target:.2f} | "
            f"{'yes' if dev > target else 'no'} |"
        )
    lines += ["", "## How sure is the pick?", "", sure.sentence(metric) if sure else "No per-question scores."]
    lines += [
        "",
        "## Top 5",
        "",
        f"| rank | trial | optimizer | {metric} | accuracy | lm_calls |",
        "|---|---|---|---|---|---|",
    ]
    for rank, record in enumerate(ranked[:5], start=1):
        lines.append(
            f"| {rank} | {record.trial_id} | {record.trial.optimizer} | "
            f"{record.metrics.get(metric, float('nan')):.3f} | {record.metrics.get('accuracy', float('nan')):.3f} | "
            f"{int(record.metrics.get('lm_calls', 0))} |"
        )
    if failed:
        lines += ["", "## Failed trials", ""]
        lines += [f"- {record.trial_id} ({record.trial.optimizer}): {record.error}" for record in failed]
    return "\n".join(lines) + "\n"
