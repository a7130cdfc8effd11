"""One trial: build its LM inside the trial, compile on train, score on dev, report to Tune.

The trial runs in a Ray worker (possibly on another node than the driver).  It builds its LM with
``dspy.context`` (trials run in fresh threads, where ``dspy.configure`` would not reach), holds an LM slot
for every request that goes to the server (``sweeps.slots.SlotHook``, below DSPy's cache), reports its LM
usage as ``bibleqa.usage`` counts it, and carries its artifacts (program JSON state,
``sample_predictions.json``, ``question_scores.csv``) in its final result, so that they reach MLflow without
the driver reading any worker's disk.

Example (what Tune calls; ``context`` is bound with ``tune.with_parameters``)::

    >>> from sweeps.trial import SweepContext, trial_result
    >>> context = SweepContext(lm_settings=lm, data=None, slots_actor=None)  # doctest: +SKIP
    >>> trial_result({"optimizer": "LabeledFewShot", "max_labeled_demos": 2, "seed": 0}, context)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune

from bibleqa.dataset import load_dataset
from bibleqa.dspy_lm import build_adapter, build_lm
from bibleqa.lm import LMSettings
from bibleqa.metrics import LOGGED_METRICS
from bibleqa.train import compile_and_evaluate, write_artifacts
from sweeps.slots import SlotHook
from sweeps.trial_config import TrialConfig

logger = logging.getLogger(__name__)

REPORTED_METRICS = (
    *LOGGED_METRICS,
    "n_errors",
    "dropped_references",
    "lm_calls",
    "lm_cache_hits",
    "prompt_tokens",
    "completion_tokens",
    "compile_seconds",
    "eval_seconds",
)
"""What a trial reports and its MLflow child run logs as metrics (nothing of Ray's bookkeeping)."""
ARTIFACTS_KEY = "artifacts"
NODE_KEY = "ray_node_id"
ENDPOINTS_KEY = "lm_endpoints"
"""The result's requests per LM endpoint (``SlotHook.calls_by_endpoint``); the run's tag of that name."""
ARTIFACT_NAMES = ("program.json", "sample_predictions.json", "question_scores.csv")


class TrialFailed(RuntimeError):
    """The trial ran but produced nothing that can be scored."""


@dataclass(frozen=True)
class SweepContext:
    """What every trial of a sweep shares; picklable, no secret."""

    lm_settings: LMSettings
    data: str | None
    slots_actor: str | None
    slots_namespace: str | None = None
    eval_threads: int = 1
    log_file: str | None = None


def run_trial(config: dict[str, Any], context: SweepContext) -> None:
    """The Tune trainable: compile, evaluate on dev, ``tune.report`` once with metrics and artifacts."""
    tune.report(trial_result(config, context))


def trial_result(config: dict[str, Any], context: SweepContext) -> dict[str, Any]:
    """Run one trial and return its final result: the reported metrics plus ``artifacts`` (name -> text)."""
    _quiet_worker(context.log_file)
    logger.info("trial starts: %s", config)
    trial = TrialConfig.from_ray(config)
    settings = trial.lm_settings(context.lm_settings)
    dataset = load_dataset(context.data)
    # The slot holder is the trial: should this attempt's process or node die mid-call, the driver frees the
    # slots it held by the trial's id (``SlotPool.drop``).
    holder = tune.get_context().get_trial_id() if context.slots_actor else None
    hooks = [SlotHook(context.slots_actor, context.slots_namespace, holder=holder)] if context.slots_actor else []
    lm = build_lm(settings, request_hooks=hooks)
    # No DSPy tracing in a trial (unlike ``bibleqa train``): mlflow.dspy.autolog() calls dspy.settings.configure,
    # which DSPy 3.4 allows only from the thread that first called it, and Tune runs each trial of a reused
    # actor in a new thread, so the actor's second trial would raise.  See bibleqa.tracing.
    try:
        compiled, evaluation, figures = compile_and_evaluate(
            trial.to_train_config(context.eval_threads), dataset, lm, build_adapter(settings.model_format)
        )
    finally:
        for hook in hooks:
            hook.done()
    if evaluation.results and evaluation.n_errors == len(evaluation.results):
        # Scores of 0 from an LM that never answered are not a result: the trial failed.
        raise TrialFailed(f"all {evaluation.n_errors} dev questions failed; the first: {evaluation.results[0].error}")
    metrics = {**evaluation.metrics, "n_errors": evaluation.n_errors, **figures}
    with tempfile.TemporaryDirectory(prefix="bibleqa-trial-") as scratch:
        paths = write_artifacts(Path(scratch), compiled, evaluation)
        artifacts = {path.name: path.read_text(encoding="utf-8") for path in paths}
    return {
        **{name: float(metrics[name]) for name in REPORTED_METRICS},
        ARTIFACTS_KEY: artifacts,
        NODE_KEY: _node_id(),
        ENDPOINTS_KEY: _calls_by_endpoint(hooks),
    }


def _calls_by_endpoint(hooks: list[SlotHook]) -> dict[str, int]:
    """The requests this trial sent to each LM endpoint, as its slot hooks routed them."""
    counts: dict[str, int] = {}
    for hook in hooks:
        for url, calls in hook.calls_by_endpoint.items():
            counts[url] = counts.get(url, 0) + calls
    return counts


def _node_id() -> str:
    """The Ray node this trial ran on ("" outside Ray)."""
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def _quiet_worker(log_file: str | None) -> None:
    """Send this worker's library logs to the sweep's log file (when it is reachable) instead of the console."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    root = logging.getLogger()
    if log_file and not any(getattr(handler, "_bibleqa", False) for handler in root.handlers):
        try:
            handler = logging.FileHandler(log_file)
        except OSError:  # the sweep folder lives on the driver's node
            return
        handler._bibleqa = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    for name in ("dspy", "LiteLLM", "litellm", "httpx", "mlflow", "bm25s"):
        logging.getLogger(name).setLevel(logging.WARNING)
