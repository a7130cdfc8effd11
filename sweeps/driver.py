"""The sweep driver: ``run_sweep`` checks everything, opens the parent run and the sweep folder, runs the
trials with Ray Tune, and sums up.  ``bibleqa-sweep run`` is a thin shell over it.

    bibleqa-sweep run search_spaces/smoke.yaml --trials 6 --lm local

Order of work:

1. ``sweeps.plan``: read the data and the space (every problem reported at once), health-check the LM and
   MLflow; nothing starts if any of this fails;
2. create the parent run ``sweep_<space>_<YYYYmmdd_HHMMSS>`` (``run_type=sweep``, with the source tags of
   ``bibleqa.tracking.source_tags``) and the sweep folder
   ``<storage>/<sweep name>`` (``sweeps.sweep_folder``);
3. ``sweeps.tune_run``: run the trials, each an MLflow child run;
4. ``sweeps.finalize``: pick the winner, score it once on test, log the summary, plots and model on the parent.

Every write to MLflow after the parent run's creation goes first to the sweep folder's journal
(``sweeps.journal``): if the MLflow server goes away mid-sweep, the sweep goes on, and what waits is
delivered once it answers, or by ``bibleqa-sweep sync`` (``SweepResult.mlflow_pending`` counts it).

From step 2 on, whatever stops the sweep leaves the parent with a final status: FINISHED, FAILED with the
error in its ``error`` tag, or KILLED on ``KeyboardInterrupt`` (re-raised as ``SweepInterrupted``, a
``KeyboardInterrupt`` that names the folder to resume; ``sweeps.resume`` continues it).

Example::

    >>> import sweeps
    >>> with sweeps.bundled_lm() as lm:  # doctest: +SKIP
    ...     result = sweeps.run_sweep("search_spaces/smoke.yaml", lm=lm, trials=6)
    >>> result.best_config["optimizer"], result.best_metrics["accuracy"]  # doctest: +SKIP
    ('BootstrapFewShot', 0.27)
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow

from bibleqa.lm_pool import pool_params
from bibleqa.local_lm import serving_pid
from bibleqa.tracking import DEFAULT_EXPERIMENT, ensure_experiment, log_batch, provenance_params, source_tags
from sweeps.finalize import finalize_sweep, save_result
from sweeps.journal import MLflowJournal
from sweeps.lm_outage import LMOutage
from sweeps.mlflow_view import save_trials_view
from sweeps.options import (
    DEFAULT_LM_OUTAGE_LIMIT,
    DEFAULT_N_STARTUP_TRIALS,
    DEFAULT_SEARCH,
    DEFAULT_STORAGE,
    DEFAULT_TRIALS,
    TRIAL_CPUS,
    SweepOptions,
)
from sweeps.plan import LMs, ParentRun, SweepPlan, plan_sweep
from sweeps.processes import record_processes, start_record
from sweeps.result import SweepResult
from sweeps.stopped import SweepInterrupted, SweepStopped, sum_up_stopped
from sweeps.sweep_folder import create_sweep_folder, sweep_log, sweep_name, write_parent
from sweeps.tune_run import run_trials

logger = logging.getLogger(__name__)


def run_sweep(
    space: str | Path | Mapping[str, Any],
    *,
    lm: LMs = None,
    trials: int = DEFAULT_TRIALS,
    concurrency: int | None = None,
    search: str = DEFAULT_SEARCH,
    n_startup_trials: int = DEFAULT_N_STARTUP_TRIALS,
    max_failures: int = 0,
    time_budget: float | None = None,
    address: str | None = None,
    trial_cpus: float = TRIAL_CPUS,
    data: str | None = None,
    tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    seed: int | None = None,
    storage: str = DEFAULT_STORAGE,
    register: str | None = None,
    allow_mixed_models: bool = False,
    lm_outage_limit: float = DEFAULT_LM_OUTAGE_LIMIT,
    echo: Callable[[str], None] | None = None,
    status_every: float | None = None,
) -> SweepResult:
    """Run a sweep over ``space`` (a search-space file or a mapping of the same keys) on ``lm`` and return
    its ``SweepResult``, whether every trial finished, some failed, or none did.

    ``lm`` is an ``LMSettings`` (``sweeps.lm_studio(...)``, or what ``sweeps.bundled_lm()`` yields), a list
    of them (a pool of LM servers that serve the same model; each request goes to one with a free slot), or
    ``None`` for LM Studio at its default address.  The other keywords are the flags of
    ``bibleqa-sweep run``: ``concurrency=None`` uses each endpoint's own slots (an int sets every
    endpoint's), ``allow_mixed_models=True`` accepts a pool whose servers serve different models,
    ``seed=None`` the space's seed.
    ``echo`` receives one line per finished trial (the CLI passes ``print``) and, with ``status_every``, a
    status line every ``status_every`` seconds while the trials run (``sweeps.progress``; the CLI asks for
    one every 30 s when its output is a terminal).

    Raises ``UserError`` (a bad space, flag, data file, LM or MLflow store; ``SpaceError`` lists every
    problem of a space) before anything starts.  A failed trial fails that trial only.  When the LM stops
    answering mid-sweep, the trials wait for it; after ``lm_outage_limit`` minutes the sweep stops: the
    trials under way end KILLED, the parent ends KILLED with a summary, and ``SweepStopped`` is raised
    (``resume_sweep(error.sweep_dir)`` continues the sweep).

    Side effects on this process, beyond the parent run, the sweep folder and MLflow's runs: MLflow's
    tracking URI is set to the sweep's (``mlflow.set_tracking_uri``); MLflow's HTTP retries and timeout are
    lowered unless set already (``MLFLOW_HTTP_REQUEST_*``); Ray is started and stopped unless it already
    runs, in which case it is used and left running; while the sweep runs, the libraries' log lines go to
    ``sweep.log`` instead of the console and two Tune settings are in the environment (``sweeps.tune_run``),
    all put back afterwards.  No signal handler is installed: on Ctrl-C, Tune's own handler stops the
    trials (their runs end KILLED) and the sweep sums up what finished.  (``bibleqa-sweep run`` turns
    Tune's handler off, so that Ctrl-C ends the parent KILLED and exits 130.)
    """
    options = SweepOptions(
        trials=trials,
        concurrency=concurrency,
        search=search,
        n_startup_trials=n_startup_trials,
        max_failures=max_failures,
        time_budget=time_budget,
        address=address,
        trial_cpus=trial_cpus,
        data=data,
        tracking_uri=tracking_uri,
        experiment=experiment,
        seed=seed,
        storage=storage,
        register=register,
        allow_mixed_models=allow_mixed_models,
        lm_outage_limit=lm_outage_limit,
    )
    plan = plan_sweep(space, lm, options)
    return _run(plan, echo or (lambda line: None), status_every)


def _run(plan: SweepPlan, echo: Callable[[str], None], status_every: float | None = None) -> SweepResult:
    folder = create_sweep_folder(plan, sweep_name(plan.space.name))
    name = folder.name  # unique in the storage: another sweep may have started in the same second
    with sweep_log(folder / "sweep.log") as log_handler:  # MLflow's first lines (a new store's tables) too
        try:
            experiment_id = ensure_experiment(plan.tracking_uri, plan.options.experiment)
        except BaseException:
            shutil.rmtree(folder)  # nothing has started: leave nothing behind
            raise
        for note in plan.notes:
            echo(f"note: {note}")
        client = mlflow.MlflowClient(plan.tracking_uri)
        tags = {"run_type": "sweep", "sweep_dir": str(folder), **source_tags()}
        # Created directly, not journaled: a sweep whose MLflow does not answer at its start does not start.
        run = client.create_run(experiment_id, run_name=name, tags=tags)
        parent = ParentRun(experiment_id, run.info.run_id, name, folder)
        journal = MLflowJournal(folder, plan.tracking_uri, client=client)  # every later write goes through it
        with ends_parent_run(journal, plan, parent):  # whatever stops the sweep, the parent gets a final status
            write_parent(parent, plan.tracking_uri)
            record_driver(folder, plan)
            log_batch(parent.run_id, params=_parent_params(plan), client=journal)
            save_trials_view(journal, experiment_id, parent.run_id, plan.space.metric, plan.space.mode)
            echo(f"sweep {name}: {plan.options.trials} trials, {plan.slots} LM slot(s) on {len(plan.pool)} "
                 f"endpoint(s), parent run {parent.run_id}, folder {folder}")  # fmt: skip
            records, slot_stats = run_trials(plan, parent, journal, log_handler, echo, status_every=status_every)
            result = finalize_sweep(journal, plan, parent, records, slot_stats)
        result = settle_result(result, journal)
    return result


def settle_result(result: SweepResult, journal: MLflowJournal) -> SweepResult:
    """Once the parent has ended: one more try to deliver what waits, and the result (and ``summary.json``)
    with what MLflow holds.  While MLflow is not answering, ``SweepResult.mlflow_pending`` counts the writes
    that wait (the CLI says so, with the command that delivers them: ``sweeps.journal.waiting_line``)."""
    journal.deliver(force=True)
    return save_result(result, journal)


def record_driver(folder: Path, plan: SweepPlan) -> None:
    """Record this process as the sweep's driver, and the bundled LM server if this process started it, so
    that a resume can stop them if this process dies (``sweeps.processes``)."""
    start_record(folder)
    pids = [pid for pid in (serving_pid(endpoint.lm_base) for endpoint in plan.pool) if pid is not None]
    if pids:
        record_processes(folder, "bundled LM", pids)


@contextlib.contextmanager
def ends_parent_run(journal: MLflowJournal, plan: SweepPlan, parent: ParentRun) -> Iterator[None]:
    """Whatever stops the block, the parent run ends with a final status (journaled, so also while MLflow
    is away): FINISHED; KILLED on Ctrl-C or an LM outage past its limit, after a summary of what finished
    (``sweeps.stopped``; re-raised as ``SweepInterrupted`` or ``SweepStopped``, which name the resume
    command); FAILED on any other error, in its ``error`` tag (re-raised)."""
    try:
        yield
    except (KeyboardInterrupt, LMOutage) as error:
        journal.set_tag(parent.run_id, "error", f"{type(error).__name__}: {error}"[:5000])
        try:
            summary = sum_up_stopped(journal, parent, plan.options.trials)
        finally:
            journal.set_terminated(parent.run_id, status="KILLED")
        logger.info("%s", summary)
        if isinstance(error, LMOutage):
            raise SweepStopped(parent.sweep_dir, str(error), summary) from error
        raise SweepInterrupted(parent.sweep_dir, summary) from error
    except BaseException as error:
        journal.set_tag(parent.run_id, "error", f"{type(error).__name__}: {error}"[:5000])
        journal.set_terminated(parent.run_id, status="FAILED")
        raise
    journal.set_terminated(parent.run_id, status="FINISHED")


def _parent_params(plan: SweepPlan) -> dict[str, Any]:
    options, space = plan.options, plan.space
    return {
        "space_file": space.path or f"<mapping {space.name}>",
        "space_name": space.name,
        "space_sha256": space.sha256,
        "search": options.search,
        "seed": plan.seed,
        "n_trials_budget": options.trials,
        "time_budget_s": options.time_budget,
        "concurrency": ",".join(str(endpoint.slots) for endpoint in plan.pool),  # per endpoint, as the URLs
        "n_startup_trials": options.n_startup_trials,
        "max_failures": options.max_failures,
        "lm_outage_limit": options.lm_outage_limit,
        "objective": f"{space.metric}:{space.mode}",
        **pool_params(plan.pool),
        **provenance_params(plan.dataset.sha256, plan.lm.n_ctx),
    }
