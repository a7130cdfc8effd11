"""DSPy optimizers by name: the one place that knows how a teleprompter is built and compiled.

Names are DSPy class names; the seed's short names are aliases.  Each optimizer takes only its own
parameters (``OPTIMIZER_PARAMS``); the search-space validator and the trial config use the same table.

Example::

    >>> from bibleqa.optimizers import canonical_optimizer, OPTIMIZER_PARAMS
    >>> canonical_optimizer("bootstrap")
    'BootstrapFewShot'
    >>> sorted(OPTIMIZER_PARAMS["LabeledFewShot"])
    ['max_labeled_demos']
"""

from __future__ import annotations

import logging
from typing import Any

from bibleqa.errors import UserError

logger = logging.getLogger(__name__)

OPTIMIZER_PARAMS: dict[str, dict[str, Any]] = {
    "LabeledFewShot": {"max_labeled_demos": 4},
    "BootstrapFewShot": {"max_bootstrapped_demos": 2, "max_labeled_demos": 2, "max_rounds": 1},
    "BootstrapFewShotWithRandomSearch": {
        "max_bootstrapped_demos": 2,
        "max_labeled_demos": 2,
        "max_rounds": 1,
        "num_candidate_programs": 2,
    },
    "MIPROv2": {
        "max_bootstrapped_demos": 2,
        "max_labeled_demos": 2,
        "auto": "light",
        "num_candidates": None,
        "num_trials": None,
    },
}
"""Each optimizer's parameters and their defaults."""

OPTIMIZER_ALIASES = {
    "labeled": "LabeledFewShot",
    "labeledfewshot": "LabeledFewShot",
    "bootstrap": "BootstrapFewShot",
    "bootstrapfewshot": "BootstrapFewShot",
    "random_search": "BootstrapFewShotWithRandomSearch",
    "bootstrap_random_search": "BootstrapFewShotWithRandomSearch",
    "bootstrapfewshotwithrandomsearch": "BootstrapFewShotWithRandomSearch",
    "mipro": "MIPROv2",
    "miprov2": "MIPROv2",
}
"""The seed's short names (and lower-case spellings) for the DSPy class names."""

MIPRO_AUTO = ("light", "medium", "heavy")


def canonical_optimizer(name: str) -> str:
    """The DSPy class name for ``name`` or one of its aliases; raises ``UserError`` otherwise."""
    if name in OPTIMIZER_PARAMS:
        return name
    canonical = OPTIMIZER_ALIASES.get(name.lower())
    if canonical is None:
        allowed = ", ".join(
            [*OPTIMIZER_PARAMS, *sorted(set(OPTIMIZER_ALIASES) - {k.lower() for k in OPTIMIZER_PARAMS})]
        )
        raise UserError(f"optimizer {name!r} is unknown; use one of {allowed}")
    return canonical


def optimizer_params(optimizer: str, given: dict[str, Any]) -> dict[str, Any]:
    """The optimizer's full parameters: its defaults, overridden by ``given`` (which must be its own)."""
    defaults = OPTIMIZER_PARAMS[optimizer]
    foreign = sorted(set(given) - set(defaults))
    if foreign:
        raise UserError(
            f"{optimizer} does not take {', '.join(foreign)}; it takes {', '.join(defaults) or 'no parameters'}"
        )
    return {**defaults, **given}


def demo_budget(optimizer: str, params: dict[str, Any]) -> int:
    """The most demos a compiled program can carry per predictor.

    LabeledFewShot keeps ``max_labeled_demos``.  DSPy's bootstrapping optimizers keep up to
    ``max_bootstrapped_demos`` bootstrapped demos and fill up with labeled ones to ``max_labeled_demos`` in
    all (``BootstrapFewShot._train``), so the most is the larger of the two, not their sum."""
    if optimizer == "LabeledFewShot":
        return int(params["max_labeled_demos"])
    return max(int(params["max_bootstrapped_demos"]), int(params["max_labeled_demos"]))


def compile_program(
    program: Any,
    optimizer: str,
    params: dict[str, Any],
    *,
    trainset: list[Any],
    valset: list[Any],
    metric: Any,
    seed: int = 0,
    num_threads: int = 1,
) -> Any:
    """Compile ``program`` with ``optimizer``; ``valset`` (from train, never dev) is used only by the
    optimizers that score candidates (random search, MIPROv2).  Returns the compiled program."""
    import dspy.teleprompt as teleprompt

    params = optimizer_params(optimizer, params)
    if optimizer == "LabeledFewShot":
        if params["max_labeled_demos"] == 0:
            return program.deepcopy()
        return teleprompt.LabeledFewShot(k=params["max_labeled_demos"]).compile(program, trainset=trainset, sample=True)
    # The parameter names in OPTIMIZER_PARAMS are DSPy's own keyword arguments.
    if optimizer == "BootstrapFewShot":
        return teleprompt.BootstrapFewShot(metric=metric, **params).compile(program, trainset=trainset)
    if optimizer == "BootstrapFewShotWithRandomSearch":
        return teleprompt.BootstrapFewShotWithRandomSearch(metric=metric, num_threads=num_threads, **params).compile(
            program, trainset=trainset, valset=valset or None
        )
    if optimizer == "MIPROv2":
        auto = params["auto"] if params["num_candidates"] is None else None
        optimizer_object = teleprompt.MIPROv2(
            metric=metric,
            auto=auto,
            num_candidates=params["num_candidates"],
            max_bootstrapped_demos=params["max_bootstrapped_demos"],
            max_labeled_demos=params["max_labeled_demos"],
            num_threads=num_threads,
            seed=seed,
            verbose=False,
        )
        return optimizer_object.compile(
            program,
            trainset=trainset,
            valset=valset or None,
            num_trials=params["num_trials"] if auto is None else None,
            minibatch_size=max(1, min(35, len(valset or trainset))),
        )
    raise UserError(f"optimizer {optimizer!r} is unknown; use one of {', '.join(OPTIMIZER_PARAMS)}")
