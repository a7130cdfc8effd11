"""The sweep driver: validate, health-check, start Ray, run Tune with Optuna, and sum up the parent run.

    bibleqa-sweep run search_spaces/smoke.yaml --trials 6 --lm local

``run_sweep`` is the Python API; the CLI is a thin shell over it.  Order of work:

1. read the data and the search space (every problem reported at once), health-check the LM and MLflow:
   nothing starts if any of this fails;
2. ``--dry-run`` stops here, with an estimate of LM calls and time;
3. create the parent run ``sweep_<space>_<YYYYmmdd_HHMMSS>`` (``run_type=sweep``) and the sweep folder
   ``<storage>/<sweep name>`` (its settings and the space, for ``resume``; no secret; the full log);
4. start Ray (``address="local"`` unless ``--address``), and run the trials: each is an MLflow child run;
5. pick the winner, score it once on test, and log the summary, plots and the winner's model on the parent.

Example::

    >>> from sweeps.run import SweepOptions, run_sweep
    >>> from bibleqa.lm import LMSettings
    >>> summary = run_sweep(SweepOptions("search_spaces/smoke.yaml", trials=6),
    ...                     LMSettings(), lm_studio=True)  # doctest: +SKIP
    >>> summary.best_config["optimizer"]  # doctest: +SKIP
    'BootstrapFewShot'
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from bibleqa.dataset import Dataset, load_dataset
from bibleqa.errors import UserError
from bibleqa.lm import LMSettings, health_check
from bibleqa.metrics import LOGGED_METRICS
from bibleqa.tracking import (
    DEFAULT_EXPERIMENT,
    check_tracking,
    configure_mlflow_http,
    ensure_experiment,
    log_batch,
    provenance_params,
    resolve_tracking_uri,
)
from sweeps.space import SearchSpace, load_space

logger = logging.getLogger(__name__)

TRIAL_CPUS = 0.25
"""Trials wait on the LM most of the time; a fraction of a CPU lets several overlap."""
DEFAULT_STORAGE = "./sweeps_results"
EXTRA_TRIALS = 1
"""Trials that run at once beyond the LM's slots, so that one trial's set-up and logging overlap with the
others' LM work (the LM calls in flight are still capped by the slots).  Measured with
``bench/lm_bound_trials.py --ways sweep --trials 24`` (4 slots, 0.2 s a call, 2 cores), twice each: slots + 1
and slots x 2 kept the slots equally busy (88-89 % of the LM phase, LM phase 1.12-1.14 x the ideal), and
slots + 1 started 2-3 s sooner (fewer workers to start: 39.7 and 39.9 s wall against 41.6 and 43.0 s).
Fewer trials at once also leave TPE fewer trials to suggest without their results."""
SECONDS_PER_CALL_FALLBACK = 0.7


@dataclass(frozen=True)
class SweepOptions:
    """The sweep's settings (the CLI flags, typed)."""

    space_file: str
    trials: int = 6
    concurrency: int | None = None  # None: auto (the LM's parallel slots)
    search: str = "tpe"
    n_startup_trials: int = 10
    max_failures: int = 0
    time_budget: float | None = None
    address: str | None = None
    data: str | None = None
    tracking_uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    seed: int | None = None
    storage: str = DEFAULT_STORAGE
    register: str | None = None
    dry_run: bool = False
    eval_threads: int = 1
    trial_cpus: float = TRIAL_CPUS

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise UserError(f"--trials must be at least 1, but got {self.trials}")
        if self.concurrency is not None and self.concurrency < 1:
            raise UserError(f"--concurrency must be auto or at least 1, but got {self.concurrency}")
        if self.search not in ("tpe", "random"):
            raise UserError(f"--search {self.search!r} is not one of tpe, random")
        if self.n_startup_trials < 0 or self.max_failures < 0:
            raise UserError("--n-startup-trials and --max-failures must be >= 0")
        if self.trial_cpus <= 0:
            raise UserError(f"--trial-cpus must be a positive number, but got {self.trial_cpus}")
        if self.time_budget is not None and self.time_budget <= 0:
            raise UserError(f"--time-budget must be a positive number of seconds, but got {self.time_budget}")


@dataclass
class SweepSummary:
    """What a sweep produced; ``as_json()`` is what ``--output-json`` writes."""

    sweep_name: str
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    sweep_dir: str
    n_trials: int
    n_failed: int
    best_run_id: str | None = None
    best_trial_id: str | None = None
    best_config: dict[str, Any] = field(default_factory=dict)
    best_metrics: dict[str, float] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)
    model_uri: str | None = None
    certainty: str = ""
    top: list[dict[str, Any]] = field(default_factory=list)
    slot_stats: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DryRun:
    """What ``--dry-run`` found: the sweep would start, and roughly what it would cost."""

    space: str
    trials: int
    slots: int
    lm_calls_per_trial: dict[str, int]
    estimated_lm_calls: int
    seconds_per_call: float
    estimated_seconds: float
    notes: list[str]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SweepPlan:
    """Everything settled before Ray starts: what the trials and the summary share."""

    options: SweepOptions
    space: SearchSpace
    dataset: Dataset
    settings: LMSettings
    lm_studio: bool
    n_ctx: int | None
    uri: str
    experiment_id: str
    parent_id: str
    sweep_name: str
    sweep_dir: Path
    slots: int
    seed: int
    notes: tuple[str, ...]


def run_sweep(
    options: SweepOptions,
    lm_settings: LMSettings,
    *,
    lm_studio: bool,
    n_ctx: int | None = None,
    echo: Callable[[str], None] | None = None,
) -> SweepSummary | DryRun:
    """Run a sweep (see the module docstring); returns its summary, or the estimate for a dry run.

    Raises ``UserError`` (bad space, data, LM or MLflow) before anything starts.
    """
    from sweeps.slots import auto_slots

    echo = echo or (lambda line: None)
    configure_mlflow_http()
    dataset = load_dataset(options.data)
    space = load_space(options.space_file, train_split_size=len(dataset.train), n_ctx=n_ctx)
    settings = health_check(lm_settings)
    uri = resolve_tracking_uri(options.tracking_uri)
    slots = options.concurrency or auto_slots(lm_studio)
    seed = options.seed if options.seed is not None else (space.seed or 0)
    notes = search_notes(options)
    if options.dry_run:
        check_tracking(uri)  # a dry run writes nothing, not even a new experiment
        return estimate(space, dataset, options, settings, slots, notes)
    experiment_id = ensure_experiment(uri, options.experiment)

    sweep_name = f"sweep_{space.name}_{datetime.now().strftime('%Y%m%d_%H%M%S')}"
    storage = Path(options.storage).resolve()
    sweep_dir = storage / sweep_name
    sweep_dir.mkdir(parents=True, exist_ok=False)
    log_handler = _log_to_file(sweep_dir / "sweep.log")
    _write_resume_files(sweep_dir, space, options, settings, seed, slots, lm_studio, n_ctx)
    for note in notes:
        echo(f"note: {note}")

    import mlflow

    client = mlflow.MlflowClient(uri)
    parent = client.create_run(
        experiment_id, run_name=sweep_name, tags={"run_type": "sweep", "sweep_dir": str(sweep_dir)}
    )
    parent_id = parent.info.run_id
    try:  # from here on, whatever stops the sweep leaves the parent run with a final status
        log_batch(
            parent_id,
            params={
                "space_file": options.space_file,
                "space_sha256": space.sha256,
                "search": options.search,
                "seed": seed,
                "n_trials_budget": options.trials,
                "time_budget_s": options.time_budget,
                "concurrency": slots,
                "n_startup_trials": options.n_startup_trials,
                "max_failures": options.max_failures,
                "objective": f"{space.metric}:{space.mode}",
                **settings.as_params(lm_studio=lm_studio),
                **provenance_params(dataset.sha256, n_ctx),
            },
            client=client,
        )
        echo(f"sweep {sweep_name}: {options.trials} trials, {slots} LM slot(s), parent run {parent_id}")
        plan = SweepPlan(
            options, space, dataset, settings, lm_studio, n_ctx, uri, experiment_id, parent_id, sweep_name,
            sweep_dir, slots, seed, tuple(notes),
        )  # fmt: skip
        from sweeps.finalize import finalize_sweep

        records, slot_stats = _run_trials(plan, echo)
        summary = finalize_sweep(client, plan, records, slot_stats)
    except BaseException as error:
        client.set_tag(parent_id, "error", f"{type(error).__name__}: {error}"[:5000])
        client.set_terminated(parent_id, status="KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
        raise
    finally:
        logging.getLogger().removeHandler(log_handler)
        log_handler.close()
    return summary


def search_notes(options: SweepOptions) -> list[str]:
    """What a person should know about the search before reading its results."""
    notes = []
    if options.search == "tpe" and options.n_startup_trials >= options.trials:
        notes.append(
            f"TPE samples its first {options.n_startup_trials} trials at random (--n-startup-trials), so this "
            f"{options.trials}-trial sweep is plain random search; pass a smaller --n-startup-trials for TPE"
        )
    return notes


def trial_dirname(trial: Any) -> str:
    """A trial's folder name: its id only, so that no config value lands in a path."""
    return f"trial_{trial.trial_id}"


def _run_trials(plan: SweepPlan, echo: Callable[[str], None]) -> tuple[list[Any], dict[str, float]]:
    """Start Ray (unless it runs), run the trials with Tune, and return their records and the slot figures."""
    import os

    import ray
    from ray import tune

    from sweeps.mlflow_logging import SweepMLflowCallback
    from sweeps.search import make_searcher
    from sweeps.slots import LMSlots, affinity_for
    from sweeps.trial import SweepContext, run_trial

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV/JSON/TensorBoard copies of results
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune's own SIGINT handler ends the run quietly and returns as if it had finished: the sweep would then
    # sum up and exit 0.  Without it, Ctrl-C raises KeyboardInterrupt here: open trial runs end KILLED,
    # the parent KILLED, and the command exits 130.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    namespace = f"bibleqa-{plan.sweep_dir.name}"
    logger.info("starting Ray for sweep %s", plan.sweep_name)
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(
            address=plan.options.address or "local",
            namespace=namespace,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            runtime_env={
                "env_vars": {
                    "TQDM_DISABLE": "1",
                    "MLFLOW_LOGGING_LEVEL": "ERROR",
                    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                }
            },
        )
    actor_name = f"lm-slots-{plan.sweep_dir.name}"
    slots_actor = LMSlots.options(name=actor_name, namespace=namespace).remote(plan.slots, affinity_for(plan.slots))
    callback = SweepMLflowCallback(
        tracking_uri=plan.uri,
        experiment_id=plan.experiment_id,
        parent_run_id=plan.parent_id,
        lm_settings=plan.settings,
        lm_studio=plan.lm_studio,
        total_trials=plan.options.trials,
        echo=echo,
    )
    context = SweepContext(
        lm_settings=plan.settings,
        data=str(Path(plan.options.data).resolve()) if plan.options.data else None,
        slots_actor=actor_name,
        slots_namespace=namespace,
        eval_threads=plan.options.eval_threads,
        log_file=str(plan.sweep_dir / "sweep.log"),
    )
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(run_trial, context=context), {"cpu": plan.options.trial_cpus}),
        tune_config=tune.TuneConfig(
            search_alg=make_searcher(
                plan.space,
                algorithm=plan.options.search,
                seed=plan.seed,
                n_startup_trials=plan.options.n_startup_trials,
            ),
            num_samples=plan.options.trials,
            max_concurrent_trials=plan.slots + EXTRA_TRIALS,
            time_budget_s=plan.options.time_budget,
            trial_dirname_creator=trial_dirname,
            # A new trial reuses a finished trial's worker: no new Python process, no second import of DSPy
            # and MLflow, and the BM25 index already built (each fresh worker cost seconds of idle LM slots).
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=plan.sweep_dir.name,
            storage_path=str(plan.sweep_dir / "ray"),
            callbacks=[callback],
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=plan.options.max_failures),
        ),
    )
    # Ray's own logs (a trial's traceback, among them) go to the sweep log, not the console: the person
    # already sees one line per finished trial, and the error is on the trial's MLflow run.
    ray_logger = logging.getLogger("ray")
    console_handlers, ray_logger.handlers = (
        ray_logger.handlers,
        [_log_to_file(plan.sweep_dir / "sweep.log", attach=False)],
    )
    try:
        logger.info("Ray is up; running %d trials", plan.options.trials)
        tuner.fit()
        slot_stats = ray.get(slots_actor.stats.remote())
    finally:
        ray_logger.handlers[0].close()
        ray_logger.handlers = console_handlers
        _close_open_runs(callback)
        ray.kill(slots_actor)
        if started_ray:
            ray.shutdown()
    return list(callback.records.values()), slot_stats


def _close_open_runs(callback: Any) -> None:
    """Every trial that started ends with a final status, even when the sweep stopped it (time budget,
    Ctrl-C): such a run ends KILLED."""
    for record in callback.records.values():
        if record.status == "RUNNING":
            record.status = "KILLED"
            record.error = record.error or "stopped by the sweep before it finished"
            callback._client.set_tag(record.run_id, "last_error", record.error)
            callback._client.set_terminated(record.run_id, status="KILLED")


def estimate(
    space: SearchSpace, dataset: Dataset, options: SweepOptions, settings: LMSettings, slots: int, notes: list[str]
) -> DryRun:
    """LM calls and time a sweep would take: compile calls per optimizer (at the space's largest
    ``train_size``) plus one dev pass, times the latency of one real short call, over the slots."""
    from bibleqa.train import DEFAULT_VALSET_SIZE

    train_size = int(space.knobs["train_size"].largest() or 16) if "train_size" in space.knobs else 16
    dev = len(dataset.dev)
    per_trial = {}
    for name, params in space.optimizers.items():

        def largest(param_name: str, default: int, params: dict = params) -> int:
            param = params.get(param_name)
            return int(param.largest()) if param is not None and param.largest() is not None else default

        if name == "LabeledFewShot":
            compile_calls = 0
        elif name == "BootstrapFewShot":
            compile_calls = train_size * largest("max_rounds", 1)
        elif name == "BootstrapFewShotWithRandomSearch":
            candidates = largest("num_candidate_programs", 2)
            compile_calls = (candidates + 3) * (train_size + DEFAULT_VALSET_SIZE)
        else:  # MIPROv2: a light run is about 650 calls on an instruct model
            compile_calls = 650
        per_trial[name] = compile_calls + dev
    mean_calls = sum(per_trial.values()) / len(per_trial)
    total = math.ceil(mean_calls * options.trials)
    seconds_per_call = _probe_latency(settings)
    return DryRun(
        space=space.path,
        trials=options.trials,
        slots=slots,
        lm_calls_per_trial=per_trial,
        estimated_lm_calls=total,
        seconds_per_call=seconds_per_call,
        estimated_seconds=total * seconds_per_call / slots,
        notes=notes,
    )


def _probe_latency(settings: LMSettings) -> float:
    """Seconds for one short, uncached call (a real one), to scale the estimate."""
    import dspy

    from bibleqa.lm import lm_context

    started = time.perf_counter()
    # The probe measures time; a parse failure of a 16-token answer does not matter.
    with contextlib.suppress(Exception), lm_context(replace(settings, cache=False, max_tokens=16)):
        dspy.Predict("question -> answer")(question="Who built the ark?")
    elapsed = time.perf_counter() - started
    return elapsed if elapsed > 0 else SECONDS_PER_CALL_FALLBACK


def _write_resume_files(
    sweep_dir: Path,
    space: SearchSpace,
    options: SweepOptions,
    settings: LMSettings,
    seed: int,
    slots: int,
    lm_studio: bool,
    n_ctx: int | None,
) -> None:
    """The sweep folder keeps what ``resume`` will need: the space file and the settings.  No secret: the
    API key lives only in the environment."""
    shutil.copyfile(space.path, sweep_dir / "space.yaml")
    (sweep_dir / "sweep.json").write_text(
        json.dumps(
            {
                "options": asdict(options),
                "seed": seed,
                "slots": slots,
                "lm_settings": asdict(settings),
                "lm_studio": lm_studio,
                "n_ctx": n_ctx,
                "space_sha256": space.sha256,
            },
            indent=2,
        ),
        encoding="utf-8",
    )


def _log_to_file(path: Path, attach: bool = True) -> logging.Handler:
    """A handler that appends to the sweep log; attached to the root logger unless ``attach`` is false."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    if attach:
        logging.getLogger().addHandler(handler)
    return handler


def tracking_link(uri: str, experiment_id: str, run_id: str) -> str:
    """Where a person looks at a run: the server's page, or how to open the local store."""
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"mlflow ui --backend-store-uri {uri} --port 5000, then http://localhost:5000/#/experiments/{experiment_id}/runs/{run_id}"


def best_metrics_of(metrics: dict[str, float]) -> dict[str, float]:
    """The winner's metrics under the parent's ``best_`` prefix."""
    names = (*LOGGED_METRICS, "n_errors", "lm_calls", "compile_seconds", "eval_seconds")
    return {f"best_{name}": metrics[name] for name in names if name in metrics}
