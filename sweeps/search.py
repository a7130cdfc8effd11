"""The search: a define-by-run Optuna space built from a ``SearchSpace``, and the Ray Tune searcher.

``DefineByRunSpace`` is a module-level, picklable class: a lambda or a function defined in ``__main__``
breaks Tune's restore.  The optimizer is chosen first; its parameters are suggested only when it is
chosen; constants are returned as a dict, so every trial config is complete.

Example::

    >>> import optuna
    >>> from sweeps.search import DefineByRunSpace
    >>> from sweeps.space import load_space
    >>> space = DefineByRunSpace(load_space("search_spaces/smoke.yaml"), seed=0)
    >>> study = optuna.create_study(direction="maximize")
    >>> constants = space(study.ask())
    >>> constants["seed"]
    0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from bibleqa.optimizers import OPTIMIZER_PARAMS
from sweeps.options import SEARCH_ALGORITHMS
from sweeps.space import Param, SearchSpace

SAMPLERS: dict[str, Callable[[int, int], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed, n_startup_trials: optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials),
    "random": lambda seed, n_startup_trials: optuna.samplers.RandomSampler(seed=seed),  # the baseline
}
"""Each of ``SEARCH_ALGORITHMS``' seeded Optuna sampler, given the seed and TPE's random start."""


class DefineByRunSpace:
    """``space(optuna_trial) -> constants``: suggests this trial's searchable values on the Optuna trial."""

    def __init__(self, space: SearchSpace, seed: int):
        self.optimizers = space.optimizers
        self.knobs = space.knobs
        self.seed = seed

    def __call__(self, trial: Any) -> dict[str, Any]:
        constants: dict[str, Any] = {"seed": self.seed}
        names = list(self.optimizers)
        if len(names) > 1:
            optimizer = trial.suggest_categorical("optimizer", names)
        else:
            optimizer = constants["optimizer"] = names[0]
        given = self.optimizers[optimizer]
        for name, default in OPTIMIZER_PARAMS[optimizer].items():
            param = given.get(name)
            if param is None:
                constants[name] = default
            elif param.is_constant:
                constants[name] = param.value
            else:
                suggest(trial, param)
        for param in self.knobs.values():
            if param.is_constant:
                constants[param.name] = param.value
            else:
                suggest(trial, param)
        return constants


def suggest(trial: Any, param: Param) -> Any:
    """Suggest ``param`` on an Optuna trial."""
    if param.kind == "int":
        return trial.suggest_int(param.name, int(param.low), int(param.high), step=param.step or 1, log=param.log)
    if param.kind == "float":
        return trial.suggest_float(param.name, float(param.low), float(param.high), log=param.log)
    return trial.suggest_categorical(param.name, list(param.choices))


def make_searcher(
    space: SearchSpace,
    *,
    algorithm: str,
    seed: int,
    n_startup_trials: int,
    storage: optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
    sampler_seed: int | None = None,
) -> OptunaSearch:
    """Ray Tune's ``OptunaSearch`` over ``space``: seeded TPE, or seeded random search (the baseline).

    ``storage`` and ``study_name`` keep the study in a persistent store (``sweeps.study_store``); Ray creates
    it with ``load_if_exists=True``, so a second searcher on the same store continues the study.  The
    sampler draws from ``sampler_seed`` (default ``seed``; a resumed sweep passes a new one), while the
    trials' own ``seed`` stays the sweep's."""
    if algorithm not in SAMPLERS:
        raise ValueError(f"search algorithm {algorithm!r} is not one of {', '.join(SEARCH_ALGORITHMS)}")
    sampler = SAMPLERS[algorithm](seed if sampler_seed is None else sampler_seed, n_startup_trials)
    return OptunaSearch(
        space=DefineByRunSpace(space, seed),
        metric=space.metric,
        mode=space.mode,
        sampler=sampler,
        storage=storage,
        study_name=study_name,
    )


def distribution(param: Param) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution ``suggest`` draws ``param`` from."""
    if param.kind == "int":
        return optuna.distributions.IntDistribution(
            int(param.low), int(param.high), step=param.step or 1, log=param.log
        )
    if param.kind == "float":
        return optuna.distributions.FloatDistribution(float(param.low), float(param.high), log=param.log)
    return optuna.distributions.CategoricalDistribution(list(param.choices))
