"""Summing up a finished sweep on its parent run: winner, certainty, test score, artifacts, model.

``sweeps.driver.run_sweep`` calls ``finalize_sweep`` once every trial has ended.  This is the only place
where the test split is used: the winner is scored on it once (``score_on_test``).  In order:

1. rank the trials by the winner rule and measure how sure the pick is (``sweeps.summary``);
2. rebuild the winner from its carried DSPy JSON state and score it on test;
3. log the parent's figures (``best_*``, ``test_*``, totals, slot figures) and tags in one batch (the
   objective's ``best_<objective>`` is the history the trial logger wrote, steps 1..n: not again at step 0);
4. write ``trials.csv``, ``summary.md``, the plots and the winner's ``program.json`` into the sweep folder
   and log them on the parent;
5. log the winner as an MLflow model on the winner's own run, named by its settings (and register it, alias
   ``champion``, with ``--register``);
6. set the verdict (``sweeps.verdict``): the parent's description, every trial's ``sweep_rank``,
   ``is_winner`` and description; and write ``summary.json``.

Every write goes through the sweep's journal (``sweeps.journal``), so a sweep whose MLflow server is away
still sums up: into its folder at once, and into MLflow once it answers.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from bibleqa.dataset import Dataset
from bibleqa.dspy_lm import lm_context
from bibleqa.evaluate import evaluate
from bibleqa.lm import LMSettings
from bibleqa.metrics import LOGGED_METRICS, TRACKED_METRICS
from bibleqa.program import BibleQA, build_program
from bibleqa.tracking import log_batch, source_tags
from sweeps.journal import MLflowJournal
from sweeps.plan import ParentRun, SweepPlan
from sweeps.plots import write_plots
from sweeps.records import TrialRecord
from sweeps.result import PROGRAM_FILE, SweepResult
from sweeps.run_names import model_name
from sweeps.study_store import has_study, load_study
from sweeps.summary import Certainty, certainty, summary_markdown
from sweeps.trial_config import TrialConfig
from sweeps.trials_table import trial_rows
from sweeps.verdict import LoggedModelLink, verdict_tags
from sweeps.winner import rank_trials

logger = logging.getLogger(__name__)

USAGE_TOTALS = ("lm_calls", "lm_cache_hits", "prompt_tokens", "completion_tokens")
BEST_METRICS = (*LOGGED_METRICS, "n_errors", "lm_calls", "lm_cache_hits", "compile_seconds", "eval_seconds")
"""The winner's metrics the parent logs under the ``best_`` prefix."""


def finalize_sweep(
    journal: MLflowJournal, plan: SweepPlan, parent: ParentRun, records: list[TrialRecord], slot_stats: dict[str, float]
) -> SweepResult:
    """Log the summary on the parent run through the sweep's journal (it stays open: the caller ends it) and
    return the ``SweepResult``; ``summary.json`` holds it, with the run ids MLflow gave so far."""
    ranked = rank_trials(records, plan.space.metric, plan.space.mode)
    winner = ranked[0] if ranked else None
    sure = certainty(winner, ranked[1] if len(ranked) > 1 else None, plan.space.metric) if winner else None
    program = rebuild_program(winner) if winner else None
    test_metrics = score_on_test(program, winner.trial, plan.lm, plan.dataset) if winner else {}
    result = SweepResult(
        sweep_name=parent.sweep_name,
        parent_run_id=parent.run_id,
        experiment_id=parent.experiment_id,
        tracking_uri=plan.tracking_uri,
        sweep_dir=str(parent.sweep_dir),
        n_trials=len(records),
        n_failed=sum(record.status != "FINISHED" for record in records),
        test_metrics=test_metrics,
        certainty=sure.sentence(plan.space.metric) if sure else "",
        pick_is_clear=bool(sure and sure.clear),
        slot_stats=slot_stats,
        notes=list(plan.notes),
        trials=trial_rows(records, plan.space.metric, plan.space.mode),
    )
    if winner:
        result.best_run_id, result.best_trial_id = winner.run_id, winner.trial_id
        result.best_config = winner.trial.as_params()
        result.best_metrics = dict(winner.metrics)
        result.top = [top_row(record) for record in ranked[:5]]
    _log_figures(journal, result, records, winner, sure, plan.space.metric)
    _log_artifacts(journal, plan, result, ranked, records, sure)
    model = _log_model(journal, plan, result, winner) if winner and program is not None else None
    tags = verdict_tags(experiment_id=parent.experiment_id, parent_run_id=parent.run_id, metric=plan.space.metric,
                        ranked=ranked, records=records, sure=sure, test_metrics=test_metrics, model=model)  # fmt: skip
    for run_id, run_tags in tags.items():
        log_batch(run_id, tags=run_tags, client=journal)
    return save_result(result, journal)


def save_result(result: SweepResult, journal: MLflowJournal) -> SweepResult:
    """The result with the run ids MLflow gave for the journal's placeholders, and how many writes wait;
    written to ``summary.json`` (and its placeholders settled in ``summary.md`` and ``trials.csv``)."""
    result = SweepResult(**journal.resolve({**result.as_json(), "mlflow_pending": journal.pending()}))
    (Path(result.sweep_dir) / "summary.json").write_text(json.dumps(result.as_json(), indent=2), encoding="utf-8")
    journal.settle_files()
    return result


def top_row(record: TrialRecord) -> dict[str, Any]:
    """A trial's row in the top 5: ids, optimizer, the tracked metrics and ``lm_calls``."""
    return {
        "trial_id": record.trial_id,
        "run_id": record.run_id,
        "optimizer": record.trial.optimizer,
        **{name: record.metrics.get(name) for name in (*TRACKED_METRICS, "lm_calls")},
    }


def rebuild_program(record: TrialRecord) -> BibleQA:
    """The trial's compiled program, rebuilt from its carried DSPy JSON state (never from a pickle)."""
    trial = record.trial
    program = build_program(trial.retrieval_k, trial.chain_of_thought, trial.related_passages)
    with tempfile.TemporaryDirectory(prefix="bibleqa-state-") as scratch:
        state = Path(scratch) / PROGRAM_FILE
        state.write_text(record.artifacts[PROGRAM_FILE], encoding="utf-8")
        program.load(str(state))
    return program


def score_on_test(program: Any, trial: TrialConfig, settings: LMSettings, dataset: Dataset) -> dict[str, float]:
    """The winner's metrics on the test split, as ``test_<metric>``: the only use of test."""
    with lm_context(trial.lm_settings(settings)):
        evaluation = evaluate(program, dataset.examples("test"))
    scores = {f"test_{name}": evaluation.metrics[name] for name in LOGGED_METRICS}
    return {
        **scores,
        "test_n_errors": float(evaluation.n_errors),
        "test_dropped_references": float(evaluation.dropped_references),
    }


def _log_figures(
    journal: MLflowJournal,
    result: SweepResult,
    records: list[TrialRecord],
    winner: TrialRecord | None,
    sure: Certainty | None,
    objective: str,
) -> None:
    """The parent's metrics and tags, in one batch (not ``best_<objective>``: the trial logger wrote its
    history, one step per finished trial, and a value at step 0 would hide it)."""
    totals = {f"total_{name}": sum(record.metrics.get(name, 0.0) for record in records) for name in USAGE_TOTALS}
    metrics: dict[str, float] = {"n_trials": result.n_trials, "n_failed": result.n_failed, **totals,
                                 **result.slot_stats}  # fmt: skip
    tags: dict[str, str] = {}
    if winner is not None:
        metrics.update({f"best_{name}": winner.metrics[name] for name in BEST_METRICS
                        if name in winner.metrics and name != objective})  # fmt: skip
        metrics.update(result.test_metrics)
        if sure:
            metrics["best_ci_low"], metrics["best_ci_high"] = sure.winner_ci
            if sure.difference_ci:
                metrics["runner_up_difference_low"], metrics["runner_up_difference_high"] = sure.difference_ci
        tags = {
            "best_run_id": winner.run_id,
            "best_trial_id": winner.trial_id,
            "pick_is_clear": str(result.pick_is_clear).lower(),
        }
    log_batch(result.parent_run_id, metrics=metrics, tags=tags, client=journal)


def _log_artifacts(
    journal: MLflowJournal,
    plan: SweepPlan,
    result: SweepResult,
    ranked: list[TrialRecord],
    records: list[TrialRecord],
    sure: Certainty | None,
) -> None:
    """``trials.csv``, ``summary.md``, the plots and the winner's ``program.json``: written once, into the
    sweep folder, and logged on the parent from there."""
    folder = Path(result.sweep_dir)
    result.trials_dataframe().to_csv(folder / "trials.csv", index=False)
    markdown = summary_markdown(
        sweep_name=result.sweep_name,
        metric=plan.space.metric,
        ranked=ranked,
        records=records,
        sure=sure,
        test_metrics=result.test_metrics,
        notes=result.notes,
    )
    (folder / "summary.md").write_text(markdown, encoding="utf-8")
    study = load_study(folder, result.sweep_name) if has_study(folder) else None  # the search's own, resumes included
    files = [folder / "trials.csv", folder / "summary.md", *write_plots(records, plan.space, folder, study)]
    if ranked:
        (folder / PROGRAM_FILE).write_text(ranked[0].artifacts[PROGRAM_FILE], encoding="utf-8")
        files.append(folder / PROGRAM_FILE)
    for path in files:
        journal.log_artifact(result.parent_run_id, str(path))


def _log_model(journal: MLflowJournal, plan: SweepPlan, result: SweepResult, winner: TrialRecord) -> LoggedModelLink:
    """The winner as an MLflow model on the winner's own run, named by its settings, with the trial's params
    (MLflow copies the run's) and the source tags; ``--register NAME`` adds it to the registry with alias
    ``champion``.  The parent's ``best_model_uri`` and ``best_model_id`` tags point at it.

    Journaled (``sweeps.winner_model`` delivers it, from the folder's ``program.json``): while MLflow is
    away, the model's id, URI and version are the journal's placeholders, replaced once it answers."""
    name = model_name(winner.trial)
    tags = {
        **source_tags(),
        "sweep": result.sweep_name,
        "trial_id": winner.trial_id,
        "parent_run_id": result.parent_run_id,
    }
    knobs = {knob: getattr(winner.trial, knob) for knob in ("retrieval_k", "chain_of_thought", "related_passages")}
    model_id, model_uri = journal.log_program_model(
        winner.run_id,
        state_file=str(Path(result.sweep_dir) / PROGRAM_FILE),
        knobs=knobs,
        name=name,
        tags=tags,
        status=winner.status,
    )
    result.model_uri = model_uri
    registered = None
    if plan.options.register:
        version = journal.register_model(model_uri, plan.options.register, winner.run_id, "champion")
        registered = f"`{plan.options.register}` version {version}"
    log_batch(result.parent_run_id, tags={"best_model_uri": model_uri, "best_model_id": model_id},
              client=journal)  # fmt: skip
    return LoggedModelLink(model_id, name, model_uri, registered)
