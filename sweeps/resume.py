"""Resuming a stopped sweep: ``resume_sweep(folder)`` finishes the trials its budget asked for, in the same
parent run, continuing the same Optuna study.  ``bibleqa-sweep resume SWEEP_DIR`` is a thin shell over it.

    bibleqa-sweep resume sweeps_results/sweep_smoke_20260101_120000

What it reads is in the sweep folder (``sweeps.sweep_folder``): the settings, the space (refused if it
changed since: its hash is recorded), the parent run and tracking URI, the study, the processes the last
driver started.  In order:

1. the writes that wait in the sweep's journal (``sweeps.journal``: MLflow was away when the sweep ended)
   are delivered; then a sweep whose parent run FINISHED is said to be finished, and nothing else changes;
2. the processes the dead driver left running (its Ray, the bundled LM) are stopped, by the PIDs the folder
   records (``sweeps.processes``); a driver still running is refused;
3. the LM (the sweep's own, or ``lm=``), the data (refused if it changed) and MLflow are checked as for a
   new sweep, and nothing changes if one fails;
4. child runs left RUNNING end KILLED with ``last_error`` saying why, and the study's RUNNING trials FAIL;
5. the trials that ended on their own (FINISHED or FAILED) count; each one stopped under way (KILLED) is
   replaced: a new Tuner runs the rest of the budget, its sampler seeded from (seed, counted trials,
   trials asked), never ``Tuner.restore`` (which re-runs finished trials);
6. the parent is summed up over every counted trial, before and after the resume, and ends FINISHED.

Example::

    >>> import sweeps
    >>> result = sweeps.resume_sweep("sweeps_results/sweep_smoke_20260101_120000")  # doctest: +SKIP
    >>> result.n_trials, result.parent_run_id  # the budget, and the parent run of the first start  # doctest: +SKIP
    (6, '0f3c...')
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import mlflow

from bibleqa.errors import UserError
from bibleqa.lm import LMSettings
from bibleqa.local_lm import DEFAULT_N_CTX, bundled_lm
from bibleqa.tracking import check_tracking, configure_mlflow_http
from sweeps.driver import ends_parent_run, record_driver, settle_result
from sweeps.finalize import finalize_sweep
from sweeps.journal import MLflowJournal
from sweeps.options import SweepOptions
from sweeps.past_trials import child_runs, trial_record
from sweeps.plan import LMs, ParentRun, SweepPlan, lm_endpoints, plan_sweep
from sweeps.processes import reap_processes
from sweeps.result import SweepResult
from sweeps.study_store import asked_trials, fail_running_trials, resume_seed
from sweeps.sweep_folder import PARENT_FILE, SETTINGS_FILE, SPACE_FILE, sweep_log
from sweeps.tune_run import TrialBudget, run_trials

logger = logging.getLogger(__name__)

INTERRUPTED = "the sweep's driver stopped before this trial finished; a resumed sweep ran another trial instead"
COUNTED = ("FINISHED", "FAILED")
"""Trials that ended on their own count towards the budget; those stopped under way (KILLED) are replaced."""


@dataclass(frozen=True)
class SavedSweep:
    """What a sweep folder records about its sweep."""

    folder: Path
    options: SweepOptions
    seed: int
    lm: dict[str, Any]
    space_name: str
    space_sha256: str
    parent: ParentRun
    tracking_uri: str
    pool: list[dict[str, Any]] = field(default_factory=list)


def read_sweep_folder(folder: str | Path) -> SavedSweep:
    """Read the sweep folder; raises ``UserError`` when ``folder`` is not one, or its space changed."""
    folder = Path(folder).resolve()
    settings_file, parent_file, space_file = folder / SETTINGS_FILE, folder / PARENT_FILE, folder / SPACE_FILE
    if not settings_file.is_file() or not space_file.is_file():
        raise UserError(
            f"{folder} is not a sweep folder (it has no {SETTINGS_FILE} and {SPACE_FILE}): pass the folder that "
            "bibleqa-sweep run printed, under its --storage (default ./sweeps_results)"
        )
    if not parent_file.is_file():
        raise UserError(
            f"{folder}: the sweep stopped before its parent run was created, so there is nothing to resume; "
            "start it again with bibleqa-sweep run"
        )
    try:
        settings = json.loads(settings_file.read_text(encoding="utf-8"))
        parent = json.loads(parent_file.read_text(encoding="utf-8"))
        options = SweepOptions(**settings["options"])
        saved = SavedSweep(
            folder=folder,
            options=options,
            seed=int(settings["seed"]),
            lm=dict(settings["lm"]),
            pool=[dict(endpoint) for endpoint in settings.get("pool", [])],  # sweeps before the pool record none
            space_name=settings["space_name"],
            space_sha256=settings["space_sha256"],
            parent=ParentRun(parent["experiment_id"], parent["run_id"], parent["sweep_name"], folder),
            tracking_uri=parent["tracking_uri"],
        )
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(
            f"{folder}: {SETTINGS_FILE} or {PARENT_FILE} is not as bibleqa-sweep run wrote it ({error}); "
            "start the sweep again with bibleqa-sweep run"
        ) from None
    digest = hashlib.sha256(space_file.read_bytes()).hexdigest()
    if digest != saved.space_sha256:
        raise UserError(
            f"{space_file}: the space changed since the sweep started (sha256 {digest[:12]}, recorded "
            f"{saved.space_sha256[:12]}); put the original back, or start a new sweep with bibleqa-sweep run"
        )
    return saved


def resume_sweep(
    folder: str | Path,
    *,
    lm: LMs = None,
    echo: Callable[[str], None] | None = None,
    status_every: float | None = None,
) -> SweepResult:
    """Finish the stopped sweep in ``folder`` (see the module docstring) and return its ``SweepResult``, the
    same parent run's; a finished sweep's result is returned as it was, and nothing changes.

    ``lm=None`` uses the sweep's own LM: the bundled server is started again, an LM Studio server is
    reached at the recorded address (the key from ``LM_STUDIO_API_KEY``); pass ``lm=`` if it moved.
    Raises ``UserError`` before changing anything when the folder is not a sweep, its space or data changed,
    its driver still runs, or the LM or MLflow does not answer.  ``echo`` and ``status_every`` are
    ``run_sweep``'s, and so are the side effects."""
    echo = echo or (lambda line: None)
    saved = read_sweep_folder(folder)
    configure_mlflow_http()
    check_tracking(saved.tracking_uri)
    client = mlflow.MlflowClient(saved.tracking_uri)
    journal = deliver_waiting_writes(saved, client)
    parent_run = _parent_run(client, saved)
    if parent_run.info.status == "FINISHED":
        result = finished_result(saved)
        echo(f"sweep {saved.parent.sweep_name} finished already ({result.n_trials} trials); nothing to resume")
        return result
    reap_processes(saved.folder)
    options = replace(saved.options, tracking_uri=saved.tracking_uri)
    with _sweep_lm(saved, lm) as endpoint:
        plan = plan_sweep(saved.folder / SPACE_FILE, endpoint, options)
        plan = replace(plan, space=replace(plan.space, name=saved.space_name), seed=saved.seed)
        recorded_data = parent_run.data.params.get("data_sha256")
        if recorded_data and recorded_data != plan.dataset.sha256:
            raise UserError(
                f"the data file {options.data or '(the bundled data set)'} changed since the sweep started; "
                "put the original back, or start a new sweep"
            )
        return _continue(journal, plan, saved.parent, parent_run.data.tags, echo, status_every)


def deliver_waiting_writes(saved: SavedSweep, client: Any) -> MLflowJournal:
    """The sweep's journal, with every write that waited for MLflow delivered (so that what MLflow holds
    is the whole sweep before it continues); raises ``UserError`` if MLflow stops answering meanwhile."""
    journal = MLflowJournal(saved.folder, saved.tracking_uri, client=client)
    waiting = journal.pending()
    if journal.deliver(force=True):
        raise UserError(
            f"MLflow at {saved.tracking_uri} stopped answering while the sweep's {waiting} waiting write(s) were "
            f"delivered ({journal.pending()} still wait); try again once it answers"
        )
    journal.settle_files()
    if waiting:
        logger.info("delivered %d write(s) that waited in the sweep's journal", waiting)
    return journal


def finished_result(saved: SavedSweep) -> SweepResult:
    """The result a finished sweep wrote (``summary.json``)."""
    summary = saved.folder / "summary.json"
    if summary.is_file():
        return SweepResult(**json.loads(summary.read_text(encoding="utf-8")))
    return SweepResult(saved.parent.sweep_name, saved.parent.run_id, saved.parent.experiment_id,
                       saved.tracking_uri, str(saved.folder), n_trials=0, n_failed=0)  # fmt: skip


def _continue(
    journal: MLflowJournal,
    plan: SweepPlan,
    parent: ParentRun,
    parent_tags: dict[str, str],
    echo: Callable[[str], None],
    status_every: float | None,
) -> SweepResult:
    folder, budget, client = parent.sweep_dir, plan.options.trials, journal.client  # reads: MLflow's client
    with sweep_log(folder / "sweep.log") as log_handler:
        children = child_runs(client, parent.experiment_id, parent.run_id)
        for run in children:
            if run.info.status == "RUNNING":
                journal.set_tag(run.info.run_id, "last_error", INTERRUPTED)
                journal.set_terminated(run.info.run_id, status="KILLED")
        failed_in_study = fail_running_trials(folder, parent.sweep_name)
        past = [trial_record(client, run) for run in children if run.info.status in COUNTED]
        replaced = len(children) - len(past)
        resumes = int(parent_tags.get("n_resumes", "0")) + 1
        journal.update_run(parent.run_id, status="RUNNING")
        for tag in ("error", "stopped_summary"):
            if tag in parent_tags:
                journal.delete_tag(parent.run_id, tag)
        journal.set_tag(parent.run_id, "n_resumes", str(resumes))
        logger.info("resume %d: %d trials counted, %d stopped under way (%d study trials failed)",
                    resumes, len(past), replaced, failed_in_study)  # fmt: skip
        with ends_parent_run(journal, plan, parent):
            record_driver(folder, plan)
            remaining = max(budget - len(past), 0)
            echo(
                f"resuming sweep {parent.sweep_name}: {len(past)} of {budget} trials done, {replaced} stopped "
                f"under way, {remaining} to run; parent run {parent.run_id}"
            )
            new, slot_stats = [], {}
            if remaining:
                seed = resume_seed(plan.seed, len(past), asked_trials(folder, parent.sweep_name))
                trial_budget = TrialBudget(remaining, past=tuple(past), sampler_seed=seed, session=resumes)
                new, slot_stats = run_trials(
                    plan, parent, journal, log_handler, echo, status_every=status_every, budget=trial_budget
                )
            result = finalize_sweep(journal, plan, parent, past + new, slot_stats)
        result = settle_result(result, journal)
    return result


def _parent_run(client: Any, saved: SavedSweep) -> Any:
    try:
        return client.get_run(saved.parent.run_id)
    except Exception as error:  # MLflow raises its own exception for a missing run
        raise UserError(
            f"{saved.folder}: its parent run {saved.parent.run_id} is not in {saved.tracking_uri} ({error}); "
            "resume with the tracking store the sweep used"
        ) from None


@contextlib.contextmanager
def _sweep_lm(saved: SavedSweep, lm: LMs) -> Iterator[list[LMSettings]]:
    """``lm=`` if given, else the sweep's own LM: the bundled server started again, or the recorded pool."""
    if lm is not None:
        yield lm_endpoints(lm)
        return
    pool = [LMSettings(**endpoint) for endpoint in saved.pool or [saved.lm]]
    if all(endpoint.server != "bundled" for endpoint in pool):
        yield pool
        return
    if len(pool) > 1:
        raise UserError(
            f"{saved.folder}: the sweep's LM pool holds a bundled server, which a resume cannot start again "
            "among others; pass lm= with the pool's endpoints"
        )
    recorded = pool[0]
    call = {name: saved.lm[name] for name in ("temperature", "max_tokens", "timeout", "retries", "cache")}
    with bundled_lm(model_format=recorded.model_format, slots=recorded.slots, n_ctx=recorded.n_ctx or DEFAULT_N_CTX,
                    **call) as settings:  # fmt: skip
        yield settings
