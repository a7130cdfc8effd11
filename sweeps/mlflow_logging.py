"""Trials as MLflow child runs, through Ray's MLflow callback (a subclass of ``MLflowLoggerCallback``).

Each trial is one child run of the sweep's parent run (tags ``mlflow.parentRunId``, ``run_type=trial``,
``trial_id``), named ``bible_qa_<optimizer>_<trial>_<YYYYmmdd_HHMMSS>``.  The same run is kept across
retries, with ``attempt`` and ``last_error`` tags.  Params are the trial config plus the LM params
(``model``, ``lm_studio_model``, ``lm_studio_api_url``, ``model_format``), so the seed's comparison code works
on trial runs as written.  Metrics are what the trial reported, without Ray's bookkeeping.  Everything is
logged with ``log_batch``: 7 REST calls per trial (create, params, metrics and tags, three
artifacts, end).  A failed trial ends FAILED with its error.

It also prints one line per finished trial (the CLI passes ``print``) and keeps each trial's final
result (metrics, config and carried artifacts) for the parent summary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback

from bibleqa.lm import LMSettings
from sweeps.trial import ARTIFACTS_KEY, NODE_KEY, REPORTED_METRICS
from sweeps.trial_config import TrialConfig

logger = logging.getLogger(__name__)


@dataclass
class TrialRecord:
    """What the driver knows of one trial once it has ended."""

    trial_id: str
    run_id: str
    run_name: str
    config: dict[str, Any]
    status: str = "RUNNING"
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 1
    node_id: str = ""
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0


class SweepMLflowCallback(MLflowLoggerCallback):
    """Logs each trial as a child run of ``parent_run_id`` and records it for the summary."""

    def __init__(
        self,
        *,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        lm_settings: LMSettings,
        lm_studio: bool,
        total_trials: int,
        echo: Callable[[str], None] | None = None,
    ):
        super().__init__(tracking_uri=tracking_uri)
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.lm_settings = lm_settings
        self.lm_studio = lm_studio
        self.total_trials = total_trials
        self.echo = echo or (lambda line: None)
        self.records: dict[str, TrialRecord] = {}

    def setup(self, *args: Any, **kwargs: Any) -> None:
        import mlflow

        self._client = mlflow.MlflowClient(self.tracking_uri)
        self._finished = 0

    def _params(self, config: dict[str, Any]) -> dict[str, Any]:
        trial = TrialConfig.from_ray(config)
        return {**trial.as_params(), **trial.lm_settings(self.lm_settings).as_params(lm_studio=self.lm_studio)}

    def log_trial_start(self, trial: Any) -> None:
        from bibleqa.tracking import log_batch

        record = self.records.get(trial.trial_id)
        if record is not None:  # a retry: keep the same run
            record.attempts += 1
            record.status = "RUNNING"
            self._client.update_run(record.run_id, status="RUNNING")
            self._client.set_tag(record.run_id, "attempt", str(record.attempts))
            return
        config = dict(trial.config)
        optimizer = TrialConfig.from_ray(config).optimizer
        name = f"bible_qa_{optimizer}_{trial.trial_id}_{datetime.now().strftime('%Y%m%d_%H%M%S')}"
        run = self._client.create_run(
            self.experiment_id,
            run_name=name,
            tags={
                "mlflow.parentRunId": self.parent_run_id,
                "run_type": "trial",
                "trial_id": trial.trial_id,
                "attempt": "1",
            },
        )
        self.records[trial.trial_id] = TrialRecord(trial.trial_id, run.info.run_id, name, config)
        log_batch(run.info.run_id, params=self._params(config), client=self._client)

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        from bibleqa.tracking import log_batch

        record = self.records[trial.trial_id]
        metrics = {name: float(result[name]) for name in REPORTED_METRICS if name in result}
        record.metrics.update(metrics)
        record.node_id = result.get(NODE_KEY) or record.node_id
        tags = {NODE_KEY: record.node_id} if record.node_id else {}
        log_batch(record.run_id, metrics=metrics, tags=tags, client=self._client)
        for name, text in (result.get(ARTIFACTS_KEY) or {}).items():
            self._client.log_text(record.run_id, text, name)
            record.artifacts[name] = text

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        record = self.records.get(trial.trial_id)
        if record is not None:
            record.error = trial_error(trial)
            self._client.set_tag(record.run_id, "last_error", record.error[:5000])

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        record = self.records.get(trial.trial_id)
        if record is None:
            return
        record.seconds = time.monotonic() - record.started
        if failed:
            record.status = "FAILED"
            record.error = trial_error(trial)
            self._client.set_tag(record.run_id, "last_error", record.error[:5000])
            self._client.set_terminated(record.run_id, status="FAILED")
        else:
            record.status = "FINISHED"
            self._client.set_terminated(record.run_id, status="FINISHED")
        self._finished += 1
        self.echo(progress_line(record, self._finished, self.total_trials))


def trial_error(trial: Any) -> str:
    """The last line of the trial's error (the exception and its message), or a placeholder."""
    path = getattr(trial, "error_file", None)
    if path and Path(path).exists():
        lines = [line for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return lines[-1].strip()
    return "the trial failed without an error message (see the sweep log)"


def progress_line(record: TrialRecord, finished: int, total: int) -> str:
    """One line per finished trial, as a person sees it."""
    head = f"[{finished}/{total}] trial {record.trial_id} {record.config.get('optimizer', '?'):<32}"
    if record.status == "FAILED":
        return f"{head} FAILED after {record.seconds:.0f} s: {record.error}"
    metrics = record.metrics
    return (
        f"{head} theological_match_score={metrics.get('theological_match_score', float('nan')):.3f} "
        f"accuracy={metrics.get('accuracy', float('nan')):.3f} lm_calls={int(metrics.get('lm_calls', 0))} "
        f"({record.seconds:.0f} s)"
    )
