"""The winner rule, the one definition for the sweep's summary and for ``bibleqa-sweep pick``.

The winner is the finished trial with the best objective (``theological_match_score``, highest); ties break
by ``accuracy`` (highest), then fewer ``lm_calls`` (which count every call, cached or not, so a warm cache
changes nothing), then trial id.

Example::

    >>> from sweeps.winner import rank_trials
    >>> from sweeps.records import TrialRecord
    >>> from sweeps.trial_config import TrialConfig
    >>> tie = {"theological_match_score": 0.5, "accuracy": 0.4}
    >>> a = TrialRecord("a", "r1", "n1", TrialConfig("LabeledFewShot"), "FINISHED", {**tie, "lm_calls": 9})
    >>> b = TrialRecord("b", "r2", "n2", TrialConfig("LabeledFewShot"), "FINISHED", {**tie, "lm_calls": 7})
    >>> [record.trial_id for record in rank_trials([a, b], "theological_match_score", "max")]
    ['b', 'a']
"""

from __future__ import annotations

import math

from sweeps.records import TrialRecord


def winner_key(metrics: dict[str, float], trial_id: str, metric: str, mode: str) -> tuple[float, float, float, str]:
    """The sort key of the winner rule (smallest first): ``metric`` by ``mode``, then higher accuracy, then
    fewer LM calls, then trial id."""
    sign = -1.0 if mode == "max" else 1.0
    return (sign * metrics[metric], -metrics.get("accuracy", 0.0), metrics.get("lm_calls", math.inf), trial_id)


def rank_trials(records: list[TrialRecord], metric: str, mode: str) -> list[TrialRecord]:
    """Finished trials, best first, by the winner rule."""
    finished = [record for record in records if record.status == "FINISHED" and metric in record.metrics]
    return sorted(finished, key=lambda record: winner_key(record.metrics, record.trial_id, metric, mode))
