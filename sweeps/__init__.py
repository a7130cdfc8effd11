"""sweeps: Ray Tune + Optuna sweeps over the ``bibleqa`` program, each trial an MLflow child run.

Data flow: search space (``space``) -> checked plan (``plan``) -> driver (``driver``, with ``tune_run``,
``search`` and ``slots``) -> trial (``trial``: compile, evaluate) -> report -> MLflow child run
(``mlflow_logging``) -> parent summary (``finalize``, ``summary``) -> winner (``winner``, ``pick``).

The public API (what ``__all__`` names; everything else may change)::

    import sweeps
    with sweeps.bundled_lm() as lm:                   # starts and stops the bundled llama.cpp server
        result = sweeps.run_sweep("search_spaces/smoke.yaml", lm=lm, trials=6)
    lm = sweeps.lm_studio(model="mistral-nemo-instruct-2407")   # or base=...; the key from LM_STUDIO_API_KEY
    result = sweeps.run_sweep({"optimizers": {"LabeledFewShot": {"max_labeled_demos": 2}}}, lm=lm, trials=20)
    result.best_run_id, result.best_config, result.best_metrics, result.pick_is_clear, result.parent_run_id
    result.trials_dataframe()                         # one row per trial, the columns of trials.csv
    result.load_winner()                              # the compiled DSPy program
    sweeps.estimate_sweep("search_spaces/smoke.yaml", lm=lm, trials=6)   # what --dry-run prints
    sweeps.resume_sweep("sweeps_results/sweep_smoke_20260101_120000")    # finish a stopped sweep
    except sweeps.SweepStopped as stopped: ...        # the LM stayed away past lm_outage_limit: resume it
    sweeps.sync_sweep("sweeps_results/sweep_smoke_20260101_120000")      # deliver what waits for MLflow

The command line does the same: ``bibleqa-sweep validate|run|resume|sync|pick`` (``sweeps.cli``).

The names load on first use, so that ``import sweeps`` (and the command's ``--help`` and ``validate``) do not
import DSPy, MLflow or Ray.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bibleqa.errors import UserError
    from bibleqa.lm import LMSettings, lm_studio
    from bibleqa.local_lm import bundled_lm
    from sweeps.driver import run_sweep
    from sweeps.estimate import estimate_sweep
    from sweeps.journal import sync_sweep
    from sweeps.result import NoWinner, SweepEstimate, SweepResult
    from sweeps.resume import resume_sweep
    from sweeps.space import SpaceError
    from sweeps.stopped import SweepStopped

_PUBLIC = {
    "run_sweep": "sweeps.driver",
    "estimate_sweep": "sweeps.estimate",
    "resume_sweep": "sweeps.resume",
    "sync_sweep": "sweeps.journal",
    "SweepResult": "sweeps.result",
    "SweepEstimate": "sweeps.result",
    "NoWinner": "sweeps.result",
    "lm_studio": "bibleqa.lm",
    "bundled_lm": "bibleqa.local_lm",
    "LMSettings": "bibleqa.lm",
    "SpaceError": "sweeps.space",
    "SweepStopped": "sweeps.stopped",
    "UserError": "bibleqa.errors",
}
__all__ = [
    "LMSettings",
    "NoWinner",
    "SpaceError",
    "SweepEstimate",
    "SweepResult",
    "SweepStopped",
    "UserError",
    "bundled_lm",
    "estimate_sweep",
    "lm_studio",
    "resume_sweep",
    "run_sweep",
    "sync_sweep",
]


def __getattr__(name: str) -> Any:
    """``sweeps.run_sweep`` and the other public names, imported from their modules on first use."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'sweeps' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
