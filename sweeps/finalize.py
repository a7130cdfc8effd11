"""Summing up a finished sweep on its parent run: winner, certainty, test score, artifacts, model.

Called by ``sweeps.run.run_sweep`` once every trial has ended.  This is the only place where the test
split is used: the winner is scored on it once.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from bibleqa.dataset import Dataset
from bibleqa.lm import LMSettings
from bibleqa.metrics import LOGGED_METRICS, TRACKED_METRICS
from bibleqa.tracking import log_batch
from sweeps.mlflow_logging import TrialRecord
from sweeps.run import SweepPlan, SweepSummary, best_metrics_of
from sweeps.summary import certainty, rank_trials, summary_markdown, trials_frame, write_plots
from sweeps.trial_config import TrialConfig

logger = logging.getLogger(__name__)


def finalize_sweep(
    client: Any, plan: SweepPlan, records: list[TrialRecord], slot_stats: dict[str, float]
) -> SweepSummary:
    """Log the summary on the parent run, end it FINISHED, and return the ``SweepSummary``."""
    import mlflow

    from bibleqa.tracking import log_program_model

    space, dataset, settings, options = plan.space, plan.dataset, plan.settings, plan.options
    parent_id, sweep_dir, uri, notes = plan.parent_id, plan.sweep_dir, plan.uri, list(plan.notes)
    ranked = rank_trials(records, space.metric, space.mode)
    n_failed = sum(record.status != "FINISHED" for record in records)
    totals = {
        f"total_{name}": sum(record.metrics.get(name, 0.0) for record in records)
        for name in ("lm_calls", "prompt_tokens", "completion_tokens")
    }
    metrics: dict[str, float] = {"n_trials": len(records), "n_failed": n_failed, **totals, **slot_stats}
    summary = SweepSummary(
        sweep_name=plan.sweep_name,
        parent_run_id=parent_id,
        experiment_id=plan.experiment_id,
        tracking_uri=uri,
        sweep_dir=str(sweep_dir),
        n_trials=len(records),
        n_failed=n_failed,
        slot_stats=slot_stats,
        notes=list(notes),
    )
    sure = None
    program = None
    tags: dict[str, str] = {}
    if ranked:
        winner = ranked[0]
        runner_up = ranked[1] if len(ranked) > 1 else None
        sure = certainty(winner, runner_up, space.metric)
        trial = TrialConfig.from_ray(winner.config)
        program = rebuild_program(winner, trial)
        summary.test_metrics = score_on_test(program, trial, settings, dataset)
        summary.best_run_id, summary.best_trial_id = winner.run_id, winner.trial_id
        summary.best_config = trial.as_params()
        summary.best_metrics = dict(winner.metrics)
        summary.certainty = sure.sentence(space.metric) if sure else ""
        summary.top = [
            {"trial_id": record.trial_id, "run_id": record.run_id, "optimizer": record.config.get("optimizer"),
             **{name: record.metrics.get(name) for name in (*TRACKED_METRICS, "lm_calls")}}
            for record in ranked[:5]
        ]  # fmt: skip
        metrics.update(best_metrics_of(winner.metrics))
        metrics.update(summary.test_metrics)
        if sure:
            metrics["best_ci_low"], metrics["best_ci_high"] = sure.winner_ci
            if sure.difference_ci:
                metrics["runner_up_difference_low"], metrics["runner_up_difference_high"] = sure.difference_ci
        tags = {
            "best_run_id": winner.run_id,
            "best_trial_id": winner.trial_id,
            "pick_is_clear": str(bool(sure and sure.clear)).lower(),
        }
    log_batch(parent_id, metrics=metrics, tags=tags, client=client)

    # The parent's artifacts are written once, into the sweep folder, and logged from there.
    trials_frame(records).to_csv(sweep_dir / "trials.csv", index=False)
    (sweep_dir / "summary.md").write_text(
        summary_markdown(
            sweep_name=plan.sweep_name,
            metric=space.metric,
            ranked=ranked,
            records=records,
            sure=sure,
            test_metrics=summary.test_metrics,
            notes=notes,
        ),
        encoding="utf-8",
    )
    files = [sweep_dir / "trials.csv", sweep_dir / "summary.md", *write_plots(records, space, sweep_dir)]
    if ranked:
        (sweep_dir / "program.json").write_text(ranked[0].artifacts["program.json"], encoding="utf-8")
        files.append(sweep_dir / "program.json")
    for path in files:
        client.log_artifact(parent_id, str(path))

    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=parent_id):
        if program is not None:
            model_info = log_program_model(program)
            summary.model_uri = model_info.model_uri
            client.set_tag(parent_id, "best_model_uri", model_info.model_uri)
            if options.register:
                version = mlflow.register_model(model_info.model_uri, options.register)
                client.set_registered_model_alias(options.register, "champion", version.version)
    (sweep_dir / "summary.json").write_text(json.dumps(summary.as_json(), indent=2), encoding="utf-8")
    return summary


def rebuild_program(record: TrialRecord, trial: TrialConfig) -> Any:
    """The trial's compiled program, rebuilt from its carried DSPy JSON state (never from a pickle)."""
    from bibleqa.program import build_program

    program = build_program(trial.retrieval_k, trial.chain_of_thought, trial.related_passages)
    with tempfile.TemporaryDirectory(prefix="bibleqa-state-") as scratch:
        state = Path(scratch) / "program.json"
        state.write_text(record.artifacts["program.json"], encoding="utf-8")
        program.load(str(state))
    return program


def score_on_test(program: Any, trial: TrialConfig, settings: LMSettings, dataset: Dataset) -> dict[str, float]:
    """The winner's metrics on the test split, as ``test_<metric>``: the only use of test."""
    from bibleqa.evaluate import evaluate
    from bibleqa.lm import lm_context

    model_settings = trial.lm_settings(settings)
    with lm_context(model_settings):
        evaluation = evaluate(program, dataset.examples("test"))
    scores = {f"test_{name}": evaluation.metrics[name] for name in LOGGED_METRICS}
    return {
        **scores,
        "test_n_errors": float(evaluation.n_errors),
        "test_dropped_references": float(evaluation.dropped_references),
    }
