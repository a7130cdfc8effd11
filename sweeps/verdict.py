"""The verdict where the eye lands in MLflow: the parent run's description, and each trial's rank.

``sweeps.finalize`` calls ``verdict_tags`` once the winner is known and its model logged.  It returns, per
run id, the tags to set:

- on the parent, ``mlflow.note.content`` (the run's Description in MLflow's UI): the winner with a link to
  its run, its settings, its dev and test scores against the seed's targets, how sure the pick is in
  ``summary.md``'s words ("The pick is clear" / "The pick is NOT clear"), the link to its model, and the
  top 5 (each a link to its run);
- on every trial run, ``sweep_rank`` (1 is the winner; zero-padded to the number of ranked trials, so
  that the runs table sorts it; ``unranked`` for a trial that did not finish), ``is_winner``
  (``true``/``false``), and a description that says how it ranked.

The ranking is ``sweeps.winner.rank_trials``'; the links are relative (``#/experiments/...``), so they work
whatever address the MLflow UI is reached at.

Example::

    >>> from sweeps.records import TrialRecord
    >>> from sweeps.trial_config import TrialConfig
    >>> a = TrialRecord("a", "r1", "n1", TrialConfig("LabeledFewShot"), "FINISHED", {"theological_match_score": 0.5})
    >>> tags = verdict_tags(experiment_id="1", parent_run_id="p", metric="theological_match_score", ranked=[a],
    ...                     records=[a], sure=None, test_metrics={}, model=None)
    >>> tags["r1"]["sweep_rank"], tags["r1"]["is_winner"]
    ('1', 'true')
"""

from __future__ import annotations

from dataclasses import dataclass

from bibleqa.metrics import SEED_TARGETS, TRACKED_METRICS
from sweeps.records import TrialRecord
from sweeps.summary import Certainty

NOTE_TAG = "mlflow.note.content"
"""MLflow's tag for a run's description."""
UNRANKED = "unranked"
DESCRIPTION_LIMIT = 7500
"""Characters of a description: MLflow stores a tag value of up to 8000 characters."""


@dataclass(frozen=True)
class LoggedModelLink:
    """The winner's logged model, as the parent links to it."""

    model_id: str
    name: str
    model_uri: str
    registered: str | None = None
    """``NAME version V``, when ``--register`` registered it (alias ``champion``)."""


def run_link(experiment_id: str, record: TrialRecord) -> str:
    """A markdown link to the trial's run, by its name."""
    return f"[{record.run_name}](#/experiments/{experiment_id}/runs/{record.run_id})"


def verdict_words(sure: Certainty | None) -> str:
    """How sure the pick is, in ``summary.md``'s words (``Certainty.sentence``)."""
    if sure is None:
        return "How sure the pick is is unknown: the trial carried no per-question scores."
    if sure.difference_ci is None:
        return "There is no runner-up to compare with."
    return "The pick is clear." if sure.clear else "The pick is NOT clear."


def parent_description(
    *,
    experiment_id: str,
    metric: str,
    ranked: list[TrialRecord],
    records: list[TrialRecord],
    sure: Certainty | None,
    test_metrics: dict[str, float],
    model: LoggedModelLink | None,
) -> str:
    """The parent run's description (markdown): the verdict first, then the winner's scores and the top 5."""
    finished = len(ranked)
    counts = f"{len(records)} trials, {finished} finished with `{metric}`, {len(records) - finished} did not."
    if not ranked:
        return f"**No trial finished, so there is no winner.** {counts} See `summary.md`."
    winner = ranked[0]
    settings = ", ".join(f"`{name}`={value}" for name, value in winner.trial.as_params().items()
                         if name not in ("num_examples", "seed"))  # fmt: skip
    lines = [
        f"**Winner: {run_link(experiment_id, winner)}** (trial `{winner.trial_id}`, run `{winner.run_id}`), "
        f"`{metric}` {winner.metrics.get(metric, float('nan')):.3f} on dev. **{verdict_words(sure)}**",
        "",
        f"Settings: {settings}.",
        "",
    ]
    if model is not None:
        registered = f"; registered as {model.registered}, alias `champion`" if model.registered else ""
        lines += [f"Model: [{model.name}](#/experiments/{experiment_id}/models/{model.model_id}) "
                  f"(`{model.model_uri}`, on the winner's run{registered}).", ""]  # fmt: skip
    lines += ["| metric | dev | test | seed target | met on dev? |", "|---|---|---|---|---|"]
    for name in TRACKED_METRICS:
        dev = winner.metrics.get(name, float("nan"))
        test = test_metrics.get(f"test_{name}")
        lines.append(
            f"| `{name}` | {dev:.3f} | {'' if test is None else f'{test:.3f}'} | > {SEED_TARGETS[name]:.2f} | "
            f"{'yes' if dev > SEED_TARGETS[name] else 'no'} |"
        )
    if sure is not None:
        lines += ["", sure.sentence(metric)]
    lines += ["", "**Top 5**", "", f"| rank | run | `{metric}` | accuracy | lm_calls |", "|---|---|---|---|---|"]
    for rank, record in enumerate(ranked[:5], start=1):
        lines.append(
            f"| {rank} | {run_link(experiment_id, record)} | {record.metrics.get(metric, float('nan')):.3f} | "
            f"{record.metrics.get('accuracy', float('nan')):.3f} | {int(record.metrics.get('lm_calls', 0))} |"
        )
    lines += ["", f"{counts} Full summary: `summary.md`; every trial: `trials.csv`."]
    return _fit("\n".join(lines))


def trial_description(
    record: TrialRecord, rank: int | None, ranked: list[TrialRecord], metric: str, experiment_id: str, parent: str
) -> str:
    """A trial's description: its rank, its objective against the winner's, and the way back to the sweep."""
    back = f"[the sweep's parent run](#/experiments/{experiment_id}/runs/{parent})"
    if rank is None:
        if record.status == "FINISHED":
            return f"**Not ranked**: the trial finished without reporting `{metric}`. See {back}."
        reason = f": {record.error}" if record.error else ""
        return _fit(f"**Not ranked**: the trial ended {record.status}{reason}. See {back}.")
    value = record.metrics.get(metric, float("nan"))
    if rank == 1:
        return f"**Winner: rank 1 of {len(ranked)}** by `{metric}` ({value:.3f} on dev). See {back} for the verdict."
    best = ranked[0].metrics.get(metric, float("nan"))
    return (
        f"**Rank {rank} of {len(ranked)}** by `{metric}` ({value:.3f} on dev; the winner, "
        f"{run_link(experiment_id, ranked[0])}, has {best:.3f}). See {back}."
    )


def verdict_tags(
    *,
    experiment_id: str,
    parent_run_id: str,
    metric: str,
    ranked: list[TrialRecord],
    records: list[TrialRecord],
    sure: Certainty | None,
    test_metrics: dict[str, float],
    model: LoggedModelLink | None,
) -> dict[str, dict[str, str]]:
    """The tags to set, by run id: the parent's description, and every trial's rank, winner flag and
    description."""
    tags = {
        parent_run_id: {
            NOTE_TAG: parent_description(
                experiment_id=experiment_id,
                metric=metric,
                ranked=ranked,
                records=records,
                sure=sure,
                test_metrics=test_metrics,
                model=model,
            )
        }
    }
    width = len(str(len(ranked)))
    ranks = {record.run_id: rank for rank, record in enumerate(ranked, start=1)}
    for record in records:
        rank = ranks.get(record.run_id)
        tags[record.run_id] = {
            "sweep_rank": UNRANKED if rank is None else str(rank).zfill(width),
            "is_winner": str(rank == 1).lower(),
            NOTE_TAG: trial_description(record, rank, ranked, metric, experiment_id, parent_run_id),
        }
    return tags


def _fit(text: str) -> str:
    if len(text) <= DESCRIPTION_LIMIT:
        return text
    return text[: DESCRIPTION_LIMIT - 40].rstrip() + "\n\n(cut; see `summary.md`)"
