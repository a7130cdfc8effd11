"""Trials as MLflow child runs, through Ray's MLflow callback (a subclass of ``MLflowLoggerCallback``).

The parent class does the tracking set-up: ``setup()`` points its ``mlflow_util`` at the sweep's tracking
URI and experiment (by id, so an ``MLFLOW_EXPERIMENT_ID`` in the environment cannot send the trials
elsewhere).  Every write goes through the sweep's journal (``sweeps.journal``: each trial's run is created
in that experiment by id, and a trial run goes on while the MLflow server is away; its run id may be the
journal's placeholder until MLflow answers).  What this subclass adds:

- nested runs: each trial is one child run of the sweep's parent run (tags ``mlflow.parentRunId``,
  ``run_type=trial``, ``trial_id``, and the source tags of ``bibleqa.tracking.source_tags``), named by its
  settings first (``sweeps.run_names``: ``bootstrap b2 l1 k2 n8 #3 bible_qa_<YYYYmmdd_HHMMSS>``), kept
  across retries (``attempt``, ``last_error``), a retry after a lost node included; a failed attempt is
  reported to ``on_trial_lost`` (the sweep frees the LM slots it may have held, ``SlotPool.drop``);
- our params and metrics: the trial config plus the LM params (``model``, ``lm_studio_model``,
  ``lm_studio_api_url``: the pool's URLs comma-joined, ``model_format``), so the seed's comparison code works
  on trial runs as written, and what the trial reported, without Ray's bookkeeping; the tags ``ray_node_id``
  (where the trial ran) and ``lm_endpoints`` (the requests each LM endpoint served it, as JSON);
- batched logging: ``log_batch``, 7 REST calls per trial (create, params, metrics and tags, three artifacts,
  end), where the parent class logs one param or metric per call;
- the sweep's history on the parent: ``best_<objective>``, the best objective so far, at step 1, 2, ...
  as each trial finishes (a failed trial adds no step), so MLflow draws the sweep's progress;
- the records the summary reads (``sweeps.records``; the config is parsed once, here), one progress line per
  finished trial (``echo``), and ``close_open_runs()``: every trial that started ends with a final status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback

from bibleqa.lm import LMSettings
from bibleqa.lm_pool import endpoints_tag, pool_params
from bibleqa.tracking import log_batch, source_tags
from sweeps.journal import MLflowJournal
from sweeps.records import TrialRecord
from sweeps.run_names import trial_run_name
from sweeps.trial import ARTIFACTS_KEY, ENDPOINTS_KEY, NODE_KEY, REPORTED_METRICS
from sweeps.trial_config import TrialConfig

logger = logging.getLogger(__name__)

STOPPED = "stopped by the sweep before it finished"


class SweepMLflowCallback(MLflowLoggerCallback):
    """Logs each trial as a child run of ``parent_run_id`` and records it for the summary."""

    def __init__(
        self,
        *,
        journal: MLflowJournal,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        lm_settings: LMSettings,
        total_trials: int,
        lm_pool: Sequence[LMSettings] = (),
        echo: Callable[[str], None] | None = None,
        objective: str = "theological_match_score",
        mode: str = "max",
        past: Sequence[TrialRecord] = (),
        on_trial_lost: Callable[[str], Any] | None = None,
    ):
        super().__init__(tracking_uri=tracking_uri)
        self._client = journal
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.lm_settings = lm_settings
        self.lm_pool = tuple(lm_pool) or (lm_settings,)
        self.total_trials = total_trials
        self.echo = echo or (lambda line: None)
        # Called with the trial id when an attempt fails: a process or node lost mid-call releases nothing.
        self.on_trial_lost = on_trial_lost or (lambda trial_id: None)
        self.records: dict[str, TrialRecord] = {}
        # Trials that ended before a resume count in the progress line, and in the best-so-far history.
        self._finished = len(past)
        self.objective, self.mode = objective, mode
        self._best: float | None = None
        self._history_steps = 0  # finished trials with the objective so far: the history's last step
        self._source_tags = source_tags()
        for record in past:
            if record.status == "FINISHED":
                self._improve_best(record)

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles the Tuner's callbacks into its ``tuner.pkl`` (for ``Tuner.restore``, which the sweep never
        uses): without ``echo``, which may hold anything (a caller's server, a lock)."""
        return {**self.__dict__, "echo": None}

    def setup(self, *args: Any, **kwargs: Any) -> None:
        self.mlflow_util.setup_mlflow(
            tracking_uri=self.tracking_uri, experiment_id=self.experiment_id, create_experiment_if_not_exists=False
        )

    def log_trial_start(self, trial: Any) -> None:
        record = self.records.get(trial.trial_id)
        if record is not None:  # a retry: keep the same run
            record.attempts += 1
            record.status = "RUNNING"
            self._client.update_run(record.run_id, status="RUNNING")
            self._client.set_tag(record.run_id, "attempt", str(record.attempts))
            return
        config = TrialConfig.from_ray(dict(trial.config))
        name = trial_run_name(config, len(self.records) + 1)
        run_id = self._client.create_run(
            self.experiment_id,
            run_name=name,
            tags={
                **self._source_tags,
                "mlflow.parentRunId": self.parent_run_id,
                "run_type": "trial",
                "trial_id": trial.trial_id,
                "attempt": "1",
            },
        )
        self.records[trial.trial_id] = TrialRecord(trial.trial_id, run_id, name, config)
        trial_pool = [config.lm_settings(endpoint) for endpoint in self.lm_pool]
        params = {**config.as_params(), **pool_params(trial_pool)}
        log_batch(run_id, params=params, client=self._client)

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        record = self.records[trial.trial_id]
        metrics = {name: float(result[name]) for name in REPORTED_METRICS if name in result}
        record.metrics.update(metrics)
        record.node_id = result.get(NODE_KEY) or record.node_id
        tags = {NODE_KEY: record.node_id} if record.node_id else {}
        if ENDPOINTS_KEY in result:
            tags[ENDPOINTS_KEY] = endpoints_tag(result[ENDPOINTS_KEY])
        log_batch(record.run_id, metrics=metrics, tags=tags, client=self._client)
        for name, text in (result.get(ARTIFACTS_KEY) or {}).items():
            self._client.log_text(record.run_id, text, name)
            record.artifacts[name] = text

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.on_trial_lost(trial.trial_id)
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
            self.on_trial_lost(trial.trial_id)
            record.error = trial_error(trial)
            self._end(record, "FAILED")
        else:
            self._end(record, "FINISHED")
            self._log_best_so_far(record)
        self._finished += 1
        self.echo(progress_line(record, self._finished, self.total_trials))

    def close_open_runs(self) -> None:
        """End every trial run still running as KILLED, with ``last_error``: what the sweep stopped (its time
        budget, Ctrl-C, a crash) still has a final status."""
        for record in self.records.values():
            if record.status == "RUNNING":
                record.seconds = time.monotonic() - record.started
                record.error = record.error or STOPPED
                self._end(record, "KILLED")

    def _log_best_so_far(self, record: TrialRecord) -> None:
        """``best_<objective>`` on the parent at the next step: the best objective of the finished trials."""
        if self._improve_best(record):
            self._client.log_metric(
                self.parent_run_id, f"best_{self.objective}", self._best, int(time.time() * 1000), self._history_steps
            )

    def _improve_best(self, record: TrialRecord) -> bool:
        """Take a finished trial into the best so far and the history's step count; ``False`` when it has no
        objective (no step)."""
        value = record.metrics.get(self.objective)
        if value is None:
            return False
        if self._best is None or (value > self._best if self.mode == "max" else value < self._best):
            self._best = value
        self._history_steps += 1
        return True

    def _end(self, record: TrialRecord, status: str) -> None:
        record.status = status
        if status != "FINISHED":
            self._client.set_tag(record.run_id, "last_error", (record.error or "")[:5000])
        # Not mlflow_util.end_run: it costs a GET per run, and would end the process's active run, if any,
        # should the trial's run be gone.
        self._client.set_terminated(record.run_id, status=status)


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
    head = f"[{finished}/{total}] trial {record.trial_id} {record.trial.optimizer:<32}"
    if record.status == "FAILED":
        return f"{head} FAILED after {record.seconds:.0f} s: {record.error}"
    metrics = record.metrics
    return (
        f"{head} theological_match_score={metrics.get('theological_match_score', float('nan')):.3f} "
        f"accuracy={metrics.get('accuracy', float('nan')):.3f} lm_calls={int(metrics.get('lm_calls', 0))} "
        f"({record.seconds:.0f} s)"
    )
