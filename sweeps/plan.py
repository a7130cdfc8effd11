"""Everything a sweep settles before it starts anything: ``plan_sweep`` reads the data and the space (every
problem at once), health-checks the LM and the MLflow store, and returns a ``SweepPlan``; a bad input raises
``UserError`` with one line (``SpaceError`` with one per problem), and nothing has been started or written.
``estimate_sweep`` and ``run_sweep`` both begin here.

The LM is a pool of one or more endpoints (``bibleqa.lm_pool``): every one is health-checked, each keeps its
own slots (``--concurrency`` sets every endpoint's), and they must serve the same model unless the sweep
says ``allow_mixed_models``.

Example::

    >>> from sweeps.plan import lm_endpoints
    >>> from bibleqa.lm import lm_studio
    >>> [endpoint.lm_base for endpoint in lm_endpoints([lm_studio(), lm_studio(base="http://b:1234/v1")])]
    ['http://localhost:1234/v1', 'http://b:1234/v1']
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bibleqa.dataset import Dataset, load_dataset
from bibleqa.errors import UserError
from bibleqa.lm import LMSettings, lm_studio
from bibleqa.lm_pool import check_pool, check_unique
from bibleqa.tracking import check_tracking, configure_mlflow_http, resolve_tracking_uri
from sweeps.options import SweepOptions
from sweeps.space import SearchSpace, load_space

LMs = LMSettings | Sequence[LMSettings] | None
"""``lm=``: one LM, or a list of them (a pool of endpoints serving the same model), or ``None`` for LM Studio
at its default address."""


@dataclass(frozen=True)
class SweepPlan:
    """A sweep's inputs, checked: every LM endpoint of ``pool`` is health-checked, with the model set and
    its ``slots`` (``--concurrency``, or its own)."""

    options: SweepOptions
    space: SearchSpace
    dataset: Dataset
    pool: tuple[LMSettings, ...]
    tracking_uri: str
    seed: int
    notes: tuple[str, ...]

    @property
    def lm(self) -> LMSettings:
        """The settings every trial builds its LM from (the first endpoint's; the slot layer sends each
        request to an endpoint of the pool)."""
        return self.pool[0]

    @property
    def slots(self) -> int:
        """The pool's slots: the LM requests that may be in flight at once, over every endpoint."""
        return sum(endpoint.slots for endpoint in self.pool)


@dataclass(frozen=True)
class ParentRun:
    """The sweep's parent MLflow run and its folder, once they exist."""

    experiment_id: str
    run_id: str
    sweep_name: str
    sweep_dir: Path


def lm_endpoints(lm: LMs) -> list[LMSettings]:
    """The LM endpoints of ``lm=``, unchecked; raises ``UserError`` when ``lm`` is neither an ``LMSettings``
    nor a non-empty list of them."""
    if lm is None:
        return [lm_studio()]
    if isinstance(lm, LMSettings):
        return [lm]
    endpoints = list(lm)
    if not endpoints or not all(isinstance(endpoint, LMSettings) for endpoint in endpoints):
        raise UserError(f"lm= takes an LMSettings or a non-empty list of them, but got {lm!r}")
    return endpoints


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
    endpoints = lm_endpoints(lm)
    check_unique(endpoints)
    dataset = load_dataset(options.data)
    n_ctx = min((endpoint.n_ctx for endpoint in endpoints if endpoint.n_ctx), default=None)
    checked = load_space(space, train_split_size=len(dataset.train), n_ctx=n_ctx)
    pool = check_pool(endpoints, slots=options.concurrency, allow_mixed_models=options.allow_mixed_models)
    uri = resolve_tracking_uri(options.tracking_uri)
    check_tracking(uri)
    seed = options.seed if options.seed is not None else (checked.seed or 0)
    return SweepPlan(options, checked, dataset, pool, uri, seed, tuple(options.notes()))
