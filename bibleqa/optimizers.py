"""DSPy optimizers by name: one registry entry per optimizer family, the one place that knows how a
teleprompter is built and compiled.

Each ``OptimizerFamily`` holds everything about one family: its parameters and their defaults, the seed's
short names for it, the most demos a compiled program can carry, how to compile with it, and how many LM
calls compiling makes (the dry-run estimate).  The search-space validator, the search, the trial config and
the estimate read this table; adding an optimizer is adding one entry (and, in ``sweeps.space``, the bounds
of any new parameter).  The parameter names are DSPy's own keyword arguments.

Example::

    >>> from bibleqa.optimizers import OPTIMIZERS, canonical_optimizer
    >>> canonical_optimizer("bootstrap")
    'BootstrapFewShot'
    >>> sorted(OPTIMIZERS["LabeledFewShot"].defaults)
    ['max_labeled_demos']
    >>> OPTIMIZERS["BootstrapFewShot"].compile_calls({"max_rounds": 2}, train_size=8, valset_size=16)
    16
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bibleqa.errors import UserError

logger = logging.getLogger(__name__)

MIPRO_AUTO = ("light", "medium", "heavy")
MIPRO_LIGHT_CALLS = 650
"""LM calls of a light MIPROv2 run on an instruct model (proposals, bootstrapping and its trials)."""


@dataclass(frozen=True)
class CompileInputs:
    """What every family compiles from: train examples, validation examples (from train, never dev), the
    metric that keeps a demo, the seed, and the threads that may score candidates at once."""

    trainset: list[Any]
    valset: list[Any]
    metric: Any
    seed: int = 0
    num_threads: int = 1


@dataclass(frozen=True)
class OptimizerFamily:
    """One DSPy optimizer family (see the module docstring)."""

    name: str
    defaults: dict[str, Any]
    aliases: tuple[str, ...]
    compile: Callable[[Any, dict[str, Any], CompileInputs], Any]
    """``compile(program, params, inputs) -> compiled program``."""
    demo_budget: Callable[[dict[str, Any]], int]
    """The most demos a compiled program can carry per predictor, for these parameters."""
    compile_calls: Callable[..., int]
    """``compile_calls(params, train_size=, valset_size=)``: about how many LM calls compiling makes."""


def _teleprompt() -> Any:
    """DSPy's optimizers, imported when one compiles: ``validate`` reads this registry and stays fast."""
    import dspy.teleprompt

    return dspy.teleprompt


def _labeled(program: Any, params: dict[str, Any], inputs: CompileInputs) -> Any:
    teleprompt = _teleprompt()
    if params["max_labeled_demos"] == 0:
        return program.deepcopy()
    return teleprompt.LabeledFewShot(k=params["max_labeled_demos"]).compile(
        program, trainset=inputs.trainset, sample=True
    )


def _bootstrap(program: Any, params: dict[str, Any], inputs: CompileInputs) -> Any:
    teleprompt = _teleprompt()
    return teleprompt.BootstrapFewShot(metric=inputs.metric, **params).compile(program, trainset=inputs.trainset)


def _random_search(program: Any, params: dict[str, Any], inputs: CompileInputs) -> Any:
    teleprompt = _teleprompt()
    optimizer = teleprompt.BootstrapFewShotWithRandomSearch(
        metric=inputs.metric, num_threads=inputs.num_threads, **params
    )
    return optimizer.compile(program, trainset=inputs.trainset, valset=inputs.valset or None)


def _mipro(program: Any, params: dict[str, Any], inputs: CompileInputs) -> Any:
    teleprompt = _teleprompt()
    auto = params["auto"] if params["num_candidates"] is None else None
    optimizer = teleprompt.MIPROv2(
        metric=inputs.metric,
        auto=auto,
        num_candidates=params["num_candidates"],
        max_bootstrapped_demos=params["max_bootstrapped_demos"],
        max_labeled_demos=params["max_labeled_demos"],
        num_threads=inputs.num_threads,
        seed=inputs.seed,
        verbose=False,
    )
    return optimizer.compile(
        program,
        trainset=inputs.trainset,
        valset=inputs.valset or None,
        num_trials=params["num_trials"] if auto is None else None,
        minibatch_size=max(1, min(35, len(inputs.valset or inputs.trainset))),
    )


def _bootstrapped_budget(params: dict[str, Any]) -> int:
    """DSPy's bootstrapping optimizers keep up to ``max_bootstrapped_demos`` bootstrapped demos and fill up
    with labeled ones to ``max_labeled_demos`` in all (``BootstrapFewShot._train``): the larger of the two."""
    return max(int(params["max_bootstrapped_demos"]), int(params["max_labeled_demos"]))


FAMILIES = (
    OptimizerFamily(
        name="LabeledFewShot",
        defaults={"max_labeled_demos": 4},
        aliases=("labeled",),
        compile=_labeled,
        demo_budget=lambda params: int(params["max_labeled_demos"]),
        compile_calls=lambda params, *, train_size, valset_size: 0,  # labeling calls no LM
    ),
    OptimizerFamily(
        name="BootstrapFewShot",
        defaults={"max_bootstrapped_demos": 2, "max_labeled_demos": 2, "max_rounds": 1},
        aliases=("bootstrap",),
        compile=_bootstrap,
        demo_budget=_bootstrapped_budget,
        # At most one try per train example per round (it stops early once it has its demos).
        compile_calls=lambda params, *, train_size, valset_size: train_size * int(params.get("max_rounds", 1)),
    ),
    OptimizerFamily(
        name="BootstrapFewShotWithRandomSearch",
        defaults={"max_bootstrapped_demos": 2, "max_labeled_demos": 2, "max_rounds": 1, "num_candidate_programs": 2},
        aliases=("random_search", "bootstrap_random_search"),
        compile=_random_search,
        demo_budget=_bootstrapped_budget,
        # Zero-shot, labeled-only and unshuffled candidates, then num_candidate_programs shuffled ones: each
        # bootstraps on train and is scored on the valset.
        compile_calls=lambda params, *, train_size, valset_size: (
            (int(params.get("num_candidate_programs", 2)) + 3) * (train_size + valset_size)
        ),
    ),
    OptimizerFamily(
        name="MIPROv2",
        defaults={
            "max_bootstrapped_demos": 2,
            "max_labeled_demos": 2,
            "auto": "light",
            "num_candidates": None,
            "num_trials": None,
        },
        aliases=("mipro",),
        compile=_mipro,
        demo_budget=_bootstrapped_budget,
        compile_calls=lambda params, *, train_size, valset_size: MIPRO_LIGHT_CALLS,
    ),
)
OPTIMIZERS: dict[str, OptimizerFamily] = {family.name: family for family in FAMILIES}
"""The registry: each family by its DSPy class name."""
OPTIMIZER_PARAMS: dict[str, dict[str, Any]] = {name: family.defaults for name, family in OPTIMIZERS.items()}
"""Each optimizer's parameters and their defaults (a view of the registry)."""
OPTIMIZER_ALIASES: dict[str, str] = {
    spelling: family.name for family in FAMILIES for spelling in (*family.aliases, family.name.lower())
}
"""The seed's short names (and lower-case spellings) for the DSPy class names."""


def canonical_optimizer(name: str) -> str:
    """The DSPy class name for ``name`` or one of its aliases; raises ``UserError`` otherwise."""
    if name in OPTIMIZERS:
        return name
    canonical = OPTIMIZER_ALIASES.get(name.lower())
    if canonical is None:
        aliases = sorted(spelling for spelling in OPTIMIZER_ALIASES if spelling not in {n.lower() for n in OPTIMIZERS})
        raise UserError(f"optimizer {name!r} is unknown; use one of {', '.join([*OPTIMIZERS, *aliases])}")
    return canonical


def optimizer_params(optimizer: str, given: dict[str, Any]) -> dict[str, Any]:
    """The optimizer's full parameters: its defaults, overridden by ``given`` (which must be its own)."""
    defaults = OPTIMIZERS[optimizer].defaults
    foreign = sorted(set(given) - set(defaults))
    if foreign:
        raise UserError(
            f"{optimizer} does not take {', '.join(foreign)}; it takes {', '.join(defaults) or 'no parameters'}"
        )
    return {**defaults, **given}


def demo_budget(optimizer: str, params: dict[str, Any]) -> int:
    """The most demos a compiled program can carry per predictor (LabeledFewShot keeps
    ``max_labeled_demos``; the bootstrapping families the larger of their two demo counts)."""
    return OPTIMIZERS[optimizer].demo_budget(params)


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
    family = OPTIMIZERS[canonical_optimizer(optimizer)]
    inputs = CompileInputs(trainset, valset, metric, seed, num_threads)
    return family.compile(program, optimizer_params(family.name, params), inputs)
