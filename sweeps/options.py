"""A sweep's settings, typed: the keywords of ``run_sweep`` and the flags of ``bibleqa-sweep run``, by the
same names, validated once.

Example::

    >>> from sweeps.options import SweepOptions
    >>> SweepOptions(trials=20, concurrency=2).search
    'tpe'
    >>> SweepOptions(trials=0)
    Traceback (most recent call last):
    ...
    bibleqa.errors.UserError: --trials must be at least 1, but got 0
"""

from __future__ import annotations

from dataclasses import dataclass

from bibleqa.errors import UserError
from bibleqa.tracking import DEFAULT_EXPERIMENT

SEARCH_ALGORITHMS = ("tpe", "random")
"""``--search``: seeded TPE, or seeded random search (the baseline); ``sweeps.search.SAMPLERS`` builds them."""
DEFAULT_SEARCH = SEARCH_ALGORITHMS[0]
DEFAULT_TRIALS = 6
DEFAULT_N_STARTUP_TRIALS = 10
TRIAL_CPUS = 0.25
"""Trials wait on the LM most of the time; a fraction of a CPU lets several overlap."""
DEFAULT_STORAGE = "./sweeps_results"
DEFAULT_LM_OUTAGE_LIMIT = 10.0
"""``--lm-outage-limit``, in minutes: how long a sweep waits for an LM that stopped answering before it stops
(to be resumed).  Long enough to restart LM Studio or reload its model, short enough that a sweep left
overnight does not hold its Ray cluster for nothing."""


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep runs (the space and the LM are given beside it).  ``concurrency`` is each LM endpoint's
    slots (``None``: the endpoint's own); ``allow_mixed_models`` lets a pool's endpoints serve different
    models; ``seed=None`` the space's seed (else 0); ``time_budget`` is in seconds; ``lm_outage_limit`` in
    minutes."""

    trials: int = DEFAULT_TRIALS
    concurrency: int | None = None
    search: str = DEFAULT_SEARCH
    n_startup_trials: int = DEFAULT_N_STARTUP_TRIALS
    max_failures: int = 0
    time_budget: float | None = None
    address: str | None = None
    trial_cpus: float = TRIAL_CPUS
    data: str | None = None
    tracking_uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    seed: int | None = None
    storage: str = DEFAULT_STORAGE
    register: str | None = None
    allow_mixed_models: bool = False
    lm_outage_limit: float = DEFAULT_LM_OUTAGE_LIMIT

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise UserError(f"--trials must be at least 1, but got {self.trials}")
        if self.concurrency is not None and self.concurrency < 1:
            raise UserError(f"--concurrency must be auto or at least 1, but got {self.concurrency}")
        if self.search not in SEARCH_ALGORITHMS:
            raise UserError(f"--search {self.search!r} is not one of {', '.join(SEARCH_ALGORITHMS)}")
        if self.n_startup_trials < 0 or self.max_failures < 0:
            raise UserError("--n-startup-trials and --max-failures must be >= 0")
        if self.trial_cpus <= 0:
            raise UserError(f"--trial-cpus must be a positive number, but got {self.trial_cpus}")
        if self.time_budget is not None and self.time_budget <= 0:
            raise UserError(f"--time-budget must be a positive number of seconds, but got {self.time_budget}")
        if not self.lm_outage_limit > 0:
            raise UserError(f"--lm-outage-limit must be a positive number of minutes, but got {self.lm_outage_limit}")

    def notes(self) -> list[str]:
        """What a person should know about the search before reading its results."""
        if self.search == "tpe" and self.n_startup_trials >= self.trials:
            return [
                f"TPE samples its first {self.n_startup_trials} trials at random (--n-startup-trials), so this "
                f"{self.trials}-trial sweep is plain random search; pass a smaller --n-startup-trials for TPE"
            ]
        return []
