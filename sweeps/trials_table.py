"""The table of a sweep's trials: the rows of ``trials.csv`` and of ``SweepResult.trials_dataframe()``.

One row per trial, ranked by the winner rule (``sweeps.winner``): the winner first, then the other finished
trials best first, then the trials that did not finish (or reported no objective), in the order they
started.  The columns, in order:

``rank`` (1 for the winner; empty when unranked), the objective (the space's metric, e.g.
``theological_match_score``), ``trial_id``, ``run_id``, ``run_name``, ``status``, ``attempts``,
``seconds``, ``optimizer``, every optimizer's own params (empty where the trial's optimizer has no such
param), the program knobs, the other metrics, ``error``.  Names are the same as in the search-space file,
the trial config and the MLflow params and metrics.  Counts (``rank``, ``attempts``, demo counts, sizes,
``lm_calls``, tokens, ...) are integers, written without ``.0``.

Example::

    >>> from sweeps.records import TrialRecord
    >>> from sweeps.trial_config import TrialConfig
    >>> low = TrialRecord("a", "r1", "n1", TrialConfig("LabeledFewShot"), "FINISHED", {"accuracy": 0.1})
    >>> high = TrialRecord("b", "r2", "n2", TrialConfig("LabeledFewShot"), "FINISHED", {"accuracy": 0.9})
    >>> rows = trial_rows([low, high], "accuracy", "max")
    >>> [(row["rank"], row["accuracy"], row["trial_id"]) for row in rows]
    [(1, 0.9, 'b'), (2, 0.1, 'a')]
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from sweeps.records import TrialRecord
from sweeps.winner import rank_trials

LEAD_COLUMNS = ("trial_id", "run_id", "run_name", "status", "attempts", "seconds")
"""The columns after ``rank`` and the objective."""
COUNT_METRICS = ("n_errors", "dropped_references", "lm_calls", "lm_cache_hits", "prompt_tokens", "completion_tokens")
"""Metrics that count things: Tune reports them as floats, the table writes them as integers."""


def trial_rows(records: list[TrialRecord], metric: str, mode: str) -> list[dict[str, Any]]:
    """One row per trial, ranked, every row with every column (``None`` where a trial has no value)."""
    ranked = rank_trials(records, metric, mode)
    rank_of = {id(record): rank for rank, record in enumerate(ranked, start=1)}
    ordered = [*ranked, *(record for record in records if id(record) not in rank_of)]
    own = _union(list(record.trial.params) for record in ordered)
    knobs = _union([name for name in record.trial.as_params() if name not in own] for record in ordered)
    others = _union([name for name in record.metrics if name != metric] for record in ordered)
    params = ["optimizer", *own, *(name for name in knobs if name != "optimizer")]
    columns = ["rank", metric, *LEAD_COLUMNS, *params, *others, "error"]
    rows = []
    for record in ordered:
        values = {
            "rank": rank_of.get(id(record)),
            "trial_id": record.trial_id,
            "run_id": record.run_id,
            "run_name": record.run_name,
            "status": record.status,
            "attempts": record.attempts,
            "seconds": round(record.seconds, 1),
            **record.trial.as_params(),
            **{name: _count(value) if name in COUNT_METRICS else value for name, value in record.metrics.items()},
            "error": record.error or "",
        }
        rows.append({column: values.get(column) for column in columns})
    return rows


def trials_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``rows`` as a DataFrame, columns in the rows' order; a column whose values are all integers (or
    missing) has pandas' nullable ``Int64`` type, so that ``to_csv`` writes ``2``, not ``2.0``."""
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        present = [row[column] for row in rows if row.get(column) is not None]
        if present and all(isinstance(value, int) and not isinstance(value, bool) for value in present):
            frame[column] = frame[column].astype("Int64")
    return frame


def _count(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _union(groups: Any) -> list[str]:
    """The names of ``groups`` (lists of names) in order of first appearance."""
    seen: dict[str, None] = {}
    for group in groups:
        seen.update(dict.fromkeys(group))
    return list(seen)
