"""The trials, run by Ray Tune with Optuna's search: Ray (joined or started), the LM slots, the Tuner.

If Ray is already initialised in this process, the sweep uses it and leaves it running; otherwise it starts
a local instance (``address="local"``, or ``address`` to join a cluster) and stops it at the end.  Each trial
is an MLflow child run (``sweeps.mlflow_logging``); at most its ``slots`` requests reach each LM endpoint of
the pool at once (``sweeps.slots``), and one more trial than the pool's slots runs at a time
(``EXTRA_TRIALS``).

Tune reads two settings from the environment when it starts; they are set while the Tuner runs and put back
afterwards: ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1`` (no CSV, JSON or TensorBoard copies of the results,
which carry the artifacts) and ``RAY_AIR_NEW_OUTPUT=0`` (Tune's own progress output stays off).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from sweeps.journal import MLflowJournal
from sweeps.lm_outage import OutageWatch
from sweeps.mlflow_logging import SweepMLflowCallback
from sweeps.plan import ParentRun, SweepPlan
from sweeps.pool_watch import EndpointWatch
from sweeps.processes import descendants, record_processes
from sweeps.progress import Progress, StatusLines, one_line_at_a_time
from sweeps.records import TrialRecord
from sweeps.search import make_searcher
from sweeps.slots import LMSlots, slot_figures
from sweeps.study_store import study_storage
from sweeps.sweep_folder import libraries_logging_to
from sweeps.trial import SweepContext, run_trial

logger = logging.getLogger(__name__)

EXTRA_TRIALS = 1
"""Trials that run at once beyond the LM's slots, so that one trial's set-up and logging overlap with the
others' LM work (the LM calls in flight are still capped by the slots).  Measured with
``bench/lm_bound_trials.py --ways sweep --trials 24`` (4 slots, 0.2 s a call, 2 cores), twice each: slots + 1
and slots x 2 kept the slots equally busy (88-89 % of the LM phase, LM phase 1.12-1.14 x the ideal), and
slots + 1 started 2-3 s sooner (fewer workers to start: 39.7 and 39.9 s wall against 41.6 and 43.0 s).
Fewer trials at once also leave TPE fewer trials to suggest without their results."""
TUNE_ENVIRONMENT = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "RAY_AIR_NEW_OUTPUT": "0"}
WORKER_ENVIRONMENT = {"TQDM_DISABLE": "1", "MLFLOW_LOGGING_LEVEL": "ERROR"}
"""The environment of the Ray workers a sweep starts (none of it is a secret)."""


def trial_dirname(trial: Any) -> str:
    """A trial's folder name: its id only, so that no config value lands in a path."""
    return f"trial_{trial.trial_id}"


@dataclass(frozen=True)
class TrialBudget:
    """What this Tuner runs: ``trials`` new trials, after the ``past`` counted ones (a resumed sweep), its
    sampler seeded with ``sampler_seed`` (``None``: the sweep's seed), as Tune experiment ``session`` (0 for
    the first run, 1 for the first resume, ...)."""

    trials: int
    past: tuple[TrialRecord, ...] = ()
    sampler_seed: int | None = None
    session: int = 0

    @property
    def finished(self) -> int:
        """The trials counted before this Tuner."""
        return len(self.past)


def run_trials(
    plan: SweepPlan,
    parent: ParentRun,
    journal: MLflowJournal,
    log_handler: logging.Handler,
    echo: Callable[[str], None],
    status_every: float | None = None,
    budget: TrialBudget | None = None,
) -> tuple[list[TrialRecord], dict[str, float]]:
    """Run the trials with Tune (``budget``, default: the sweep's whole budget); return their records and
    the slot figures.  Every trial that started ends with a final status, even when the sweep stops early
    (time budget, Ctrl-C, a crash): then KILLED.  Every trial run is written through ``journal``.  The search
    continues the study in the sweep folder.
    ``echo`` gets a line per finished trial and, with ``status_every``, a status line (``sweeps.progress``)
    every ``status_every`` seconds while the trials run, and a line when the LM stops answering and the
    trials pause at their slots (``sweeps.lm_outage``).  Raises ``LMOutage`` when the LM stayed unreachable
    past ``--lm-outage-limit``, after every trial under way was stopped (KILLED)."""
    echo = one_line_at_a_time(echo)
    budget = budget or TrialBudget(plan.options.trials)
    namespace = f"bibleqa-{parent.sweep_dir.name}"
    with _ray(plan, namespace, parent.sweep_dir) as started:
        logger.info("Ray is up (%s); running %d trials", "started" if started else "joined", budget.trials)
        actor_name = f"lm-slots-{parent.sweep_dir.name}"
        # On the driver's node: a trial's node may be lost mid-sweep, and the slots with it.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        slots_actor = LMSlots.options(name=actor_name, namespace=namespace, scheduling_strategy=here).remote(
            [(endpoint.lm_base, endpoint.slots) for endpoint in plan.pool]
        )
        callback = SweepMLflowCallback(
            journal=journal,
            tracking_uri=plan.tracking_uri,
            experiment_id=parent.experiment_id,
            parent_run_id=parent.run_id,
            lm_settings=plan.lm,
            lm_pool=plan.pool,
            total_trials=plan.options.trials,
            echo=echo,
            objective=plan.space.metric,
            mode=plan.space.mode,
            past=budget.past,
            on_trial_lost=lambda trial_id: slots_actor.drop.remote(trial_id),
        )
        context = SweepContext(
            lm_settings=plan.lm,
            data=str(Path(plan.options.data).resolve()) if plan.options.data else None,
            slots_actor=actor_name,
            slots_namespace=namespace,
            log_file=log_handler.baseFilename if isinstance(log_handler, logging.FileHandler) else None,
        )
        watch = OutageWatch(slots_actor, plan.options.lm_outage_limit, echo, endpoints=EndpointWatch(len(plan.pool)))
        started = time.monotonic()

        def progress() -> Progress:
            return _progress(plan, callback, ray.get(slots_actor.stats.remote(), timeout=10), started, budget)

        try:
            # Ray sets up its own console handlers as it starts: back to the sweep log with them.
            status = StatusLines(progress, echo, status_every) if status_every else contextlib.nullcontext()
            with libraries_logging_to(log_handler, ["ray"]), _environment(TUNE_ENVIRONMENT), status:
                _tuner(plan, parent, callback, context, budget, watch).fit()
            slot_stats = slot_figures(ray.get(slots_actor.stats.remote()))
            if watch.outage is not None:
                raise watch.outage
        finally:
            callback.close_open_runs()
            ray.kill(slots_actor)
    return list(callback.records.values()), slot_stats


def _progress(
    plan: SweepPlan, callback: SweepMLflowCallback, slot_stats: dict[str, Any], started: float, trials: TrialBudget
) -> Progress:
    """Where the trials stand, from the callback's records (read from the status thread: a copy first) and
    the trials counted before a resume."""
    statuses = [record.status for record in list(callback.records.values())]
    elapsed = time.monotonic() - started
    budget = plan.options.time_budget
    return Progress(
        total=plan.options.trials,
        done=trials.finished + sum(status != "RUNNING" for status in statuses),
        failed=sum(status == "FAILED" for status in statuses),
        running=statuses.count("RUNNING"),
        lm_calls=int(slot_stats["lm_calls_through_slots"]),
        elapsed=elapsed,
        budget_left=None if budget is None else max(0.0, budget - elapsed),
    )


def _tuner(
    plan: SweepPlan,
    parent: ParentRun,
    callback: SweepMLflowCallback,
    context: SweepContext,
    budget: TrialBudget,
    watch: OutageWatch,
) -> tune.Tuner:
    options = plan.options
    searcher = make_searcher(
        plan.space,
        algorithm=options.search,
        seed=plan.seed,
        n_startup_trials=options.n_startup_trials,
        storage=study_storage(parent.sweep_dir),
        study_name=parent.sweep_name,
        sampler_seed=budget.sampler_seed,
    )
    return tune.Tuner(
        tune.with_resources(tune.with_parameters(run_trial, context=context), {"cpu": options.trial_cpus}),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            num_samples=budget.trials,
            max_concurrent_trials=plan.slots + EXTRA_TRIALS,
            time_budget_s=options.time_budget,
            trial_dirname_creator=trial_dirname,
            # A new trial reuses a finished trial's worker: no new Python process, no second import of DSPy,
            # and the BM25 index already built (each fresh worker cost seconds of idle LM slots).
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            # A resume is a new Tune experiment (never Tuner.restore: it re-runs finished trials).
            name=parent.sweep_dir.name + (f"_resume{budget.session}" if budget.session else ""),
            storage_path=str(parent.sweep_dir / "ray"),
            callbacks=[callback],
            # An LM outage past the limit stops the whole sweep; an endpoint of the pool that goes or comes
            # back is logged (both from one look at the slots a second).
            stop=watch,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=options.max_failures),
        ),
    )


@contextlib.contextmanager
def _ray(plan: SweepPlan, namespace: str, folder: Path) -> Iterator[bool]:
    """Join the Ray this process already runs, or start one and stop it after; yields whether it started.
    A local instance it starts is recorded in the sweep folder, so that a resume can stop it if this
    process dies without stopping it."""
    if ray.is_initialized():
        yield False
        return
    ray.init(
        address=plan.options.address or "local",
        namespace=namespace,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        runtime_env={"env_vars": WORKER_ENVIRONMENT},
    )
    if not plan.options.address:
        record_processes(folder, "ray", _ray_pids())
    try:
        yield True
    finally:
        ray.shutdown()


def _ray_pids() -> list[int]:
    """The processes of the local Ray instance this process started (its GCS, raylet, ...) and those they
    started already: when the driver is SIGKILLed, the GCS and raylet end with it, but the raylet's agents
    (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) live on, orphaned (seen on Ray 2.60)."""
    # Ray has no public accessor for the processes ray.init started; its node object holds them.
    node = getattr(ray._private.worker, "_global_node", None)
    if node is None:
        return []
    started = [process.pid for _, process in node.live_processes()]
    return [*started, *(child for pid in started for child in descendants(pid))]


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then put back what was there."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
