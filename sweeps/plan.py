"""Everything a sweep settles before it starts anything: ``plan_sweep`` reads the data and the space (every
problem at once), health-checks the LM and the MLflow store, and returns a ``SweepPlan``; a bad input raises
``UserError`` with one line (``SpaceError`` with one per problem), and nothing has been started or written.
``estimate_sweep`` and ``run_sweep`` both begin here.

Example::

    >>> from sweeps.plan import one_lm
    >>> from bibleqa.lm import lm_studio
    >>> one_lm([lm_studio()]).server
    'lmstudio'
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bibleqa.dataset import Dataset, load_dataset
from bibleqa.errors import UserError
from bibleqa.lm import LMSettings, health_check, lm_studio
from bibleqa.tracking import check_tracking, configure_mlflow_http, resolve_tracking_uri
from sweeps.options import SweepOptions
from sweeps.space import SearchSpace, load_space

LMs = LMSettings | Sequence[LMSettings] | None
"""``lm=``: one LM, or a list of them (a pool of endpoints: only one is supported so far), or ``None`` for
LM Studio at its default address."""


@dataclass(frozen=True)
class SweepPlan:
    """A sweep's inputs, checked: the LM is health-checked, with the model set and ``slots`` the sweep's
    concurrency."""

    options: SweepOptions
    space: SearchSpace
    dataset: Dataset
    lm: LMSettings
    tracking_uri: str
    seed: int
    notes: tuple[str, ...]


@dataclass(frozen=True)
class ParentRun:
    """The sweep's parent MLflow run and its folder, once they exist."""

    experiment_id: str
    run_id: str
    sweep_name: str
    sweep_dir: Path


def one_lm(lm: LMs) -> LMSettings:
    """The one LM endpoint of ``lm=``; raises ``UserError`` for a pool of several (not supported yet)."""
    if lm is None:
        return lm_studio()
    if isinstance(lm, LMSettings):
        return lm
    endpoints = list(lm)
    if len(endpoints) != 1 or not isinstance(endpoints[0], LMSettings):
        raise UserError(
            f"lm= takes one LMSettings (a pool of several endpoints is not supported yet), but got {len(endpoints)}"
        )
    return endpoints[0]


def check_storage(storage: str) -> None:
    """Raise ``UserError`` unless the sweep folders can be made under ``storage`` (nothing is created)."""
    path = Path(storage).resolve()
    existing = next(parent for parent in (path, *path.parents) if parent.exists())
    if not existing.is_dir():
        raise UserError(f"--storage {storage}: {existing} is a file, not a folder; pass a writable folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--storage {storage}: {existing} is not writable; pass a writable folder")


def plan_sweep(space: str | Path | Mapping[str, Any], lm: LMs, options: SweepOptions) -> SweepPlan:
    """Check every input of a sweep; see the module docstring.  Lowers MLflow's HTTP retries and timeout for
    this process (``bibleqa.tracking.configure_mlflow_http``), so that an unreachable server fails in seconds."""
    configure_mlflow_http()
    check_storage(options.storage)
    endpoint = one_lm(lm)
    dataset = load_dataset(options.data)
    checked = load_space(space, train_split_size=len(dataset.train), n_ctx=endpoint.n_ctx)
    endpoint = health_check(replace(endpoint, slots=options.concurrency or endpoint.slots))
    uri = resolve_tracking_uri(options.tracking_uri)
    check_tracking(uri)
    seed = options.seed if options.seed is not None else (checked.seed or 0)
    return SweepPlan(options, checked, dataset, endpoint, uri, seed, tuple(options.notes()))
