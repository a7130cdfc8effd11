"""Search spaces: reading and validating ``search_spaces/*.yaml``, or the same content as a mapping.

A file is flat YAML (Ray's MLflow callback would turn nesting into ``a/b`` names), for example::

    name: smoke                      # optional: the space's name (a file's name is its stem by default)
    objective: {metric: theological_match_score, mode: max}
    seed: 7
    optimizers:                      # each optimizer's parameters exist only when it is chosen
      LabeledFewShot:
        max_labeled_demos: {int: [1, 4]}
      BootstrapFewShot:
        max_bootstrapped_demos: {int: [1, 3]}
        max_labeled_demos: {int: [0, 2]}
        max_rounds: 1
    train_size: {int: [8, 32], step: 8}
    retrieval_k: {choice: [0, 1, 3]}
    related_passages: {choice: [0, 5, 10, 15]}   # TSK neighbours of the cited verses; 0 turns them off
    chain_of_thought: false
    model_format: completion

A value is a constant, ``{int: [low, high]}`` (with optional ``step`` and ``log``), ``{float: [low, high]}``
(optional ``log``) or ``{choice: [a, b, ...]}``.

``load_space(space)`` takes a file path or a mapping with the same keys (a space built in code), and
returns a ``SearchSpace`` or raises ``SpaceError`` listing every problem, one per line, as
``FILE: key: what is wrong; what is allowed`` (``<mapping NAME>`` in place of ``FILE`` for a mapping).
``bibleqa-sweep validate FILE`` prints them and exits 2.  ``SearchSpace.text`` is the space as YAML: what a
sweep writes to its folder as ``space.yaml`` (a file's own text; a mapping dumped).

Example::

    >>> from sweeps.space import load_space
    >>> space = load_space("search_spaces/smoke.yaml")
    >>> sorted(space.optimizers), space.name
    (['BootstrapFewShot', 'LabeledFewShot'], 'smoke')
    >>> load_space({"name": "tiny", "optimizers": {"LabeledFewShot": {"max_labeled_demos": 2}}}).name
    'tiny'
    >>> load_space({"optimizers": {"Adam": {}}})
    Traceback (most recent call last):
    ...
    sweeps.space.SpaceError: <mapping space>: optimizers.Adam: unknown optimizer; allowed: LabeledFewShot, ...
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bibleqa.errors import UserError
from bibleqa.knobs import KNOB_DEFAULTS, PROGRAM_KNOBS
from bibleqa.lm import LMSettings
from bibleqa.metrics import METRICS
from bibleqa.optimizers import MIPRO_AUTO, OPTIMIZER_PARAMS, canonical_optimizer, demo_budget

TOP_LEVEL_KEYS = ("objective", "seed", "optimizers", *PROGRAM_KNOBS, "name")
OBJECTIVE_MODES = ("max", "min")
MAPPING_NAME = "space"
"""The name of a space given as a mapping without ``name``."""
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A space's name becomes part of run names and of the sweep folder's path."""

# What each parameter may be: its type, and its smallest and largest sensible value.
_INT_BOUNDS = {
    "max_labeled_demos": (0, 16),
    "max_bootstrapped_demos": (0, 16),
    "max_rounds": (1, 5),
    "num_candidate_programs": (1, 32),
    "num_candidates": (1, 32),
    "num_trials": (1, 100),
    "train_size": (1, 10_000),
    "retrieval_k": (0, 10),
    "related_passages": (0, 20),  # recall counts only the first 20 verses: more than 20 can never help
}
_CHOICES = {
    "auto": (*MIPRO_AUTO, None),
    "chain_of_thought": (True, False),
    "model_format": ("chat", "completion", None),
    "bootstrap_metric": tuple(METRICS),
}
_FLOAT_BOUNDS = {"bootstrap_threshold": (0.0, 1.0)}

# Rough prompt sizes, in tokens, for the context check: the instructions, one demo without passages, one
# retrieved verse, and the current question.
PROMPT_TOKENS_FIXED = 60
DEMO_TOKENS = 60
PASSAGE_TOKENS = 50
QUESTION_TOKENS = 30


class SpaceError(UserError):
    """A search-space file is invalid; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Param:
    """One searchable (or constant) parameter."""

    name: str
    kind: str  # "const", "int", "float" or "choice"
    low: float | None = None
    high: float | None = None
    step: int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    value: Any = None

    @property
    def is_constant(self) -> bool:
        return self.kind == "const"

    def largest(self) -> Any:
        """The largest value this parameter can take (for the context-size check)."""
        if self.kind == "const":
            return self.value
        if self.kind == "choice":
            numbers = [choice for choice in self.choices if isinstance(choice, (int, float))]
            return max(numbers) if numbers else None
        return self.high


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space; ``path`` is ``None`` for a space given as a mapping."""

    path: str | None
    name: str
    text: str
    sha256: str
    metric: str
    mode: str
    seed: int | None
    optimizers: dict[str, dict[str, Param]]
    knobs: dict[str, Param] = field(default_factory=dict)


def load_space(
    space: str | Path | Mapping[str, Any], *, train_split_size: int | None = None, n_ctx: int | None = None
) -> SearchSpace:
    """Read and validate a search space, a file path or a mapping; raises ``SpaceError`` with every problem.

    ``train_split_size`` (the number of train items) and ``n_ctx`` (the LM's context window, in tokens)
    enable the checks that ``train_size`` fits the train split and the largest prompt fits the context.
    """
    source = _read(space)
    raw, where = source.raw, source.where
    if not isinstance(raw, dict):
        raise SpaceError([f"{where}: expected a mapping of keys; see search_spaces/default.yaml for the format"])

    problems: list[str] = []
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            problems.append(f"{where}: {key}: unknown key; allowed: {', '.join(TOP_LEVEL_KEYS)}")
    space_name = raw.get("name", source.default_name)
    if "name" in raw and (not isinstance(space_name, str) or not NAME_PATTERN.fullmatch(space_name)):
        problems.append(
            f"{where}: name: {space_name!r} is not allowed; allowed: letters, digits, '_', '.', '-' (at most 64)"
        )

    metric, mode = _objective(raw.get("objective"), where, problems)
    seed = raw.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        problems.append(f"{where}: seed: {seed!r} is not an integer; give an integer, or leave it out")
        seed = None

    optimizers: dict[str, dict[str, Param]] = {}
    raw_optimizers = raw.get("optimizers")
    if not isinstance(raw_optimizers, dict) or not raw_optimizers:
        problems.append(f"{where}: optimizers: missing or empty; list at least one of {', '.join(OPTIMIZER_PARAMS)}")
        raw_optimizers = {}
    for given_name, raw_params in raw_optimizers.items():
        try:
            name = canonical_optimizer(str(given_name))
        except UserError:
            problems.append(
                f"{where}: optimizers.{given_name}: unknown optimizer; allowed: {', '.join(OPTIMIZER_PARAMS)}"
            )
            continue
        raw_params = raw_params or {}
        if not isinstance(raw_params, dict):
            problems.append(f"{where}: optimizers.{given_name}: expected a mapping of its parameters")
            continue
        params = {}
        for param_name, spec in raw_params.items():
            if param_name not in OPTIMIZER_PARAMS[name]:
                problems.append(
                    f"{where}: optimizers.{given_name}.{param_name}: {name} does not take it; "
                    f"it takes {', '.join(OPTIMIZER_PARAMS[name])}"
                )
                continue
            param = _param(param_name, spec, f"{where}: optimizers.{given_name}.{param_name}", problems)
            if param is not None:
                params[param_name] = param
        if name == "MIPROv2":
            _check_mipro(params, f"{where}: optimizers.{given_name}", problems)
        optimizers[name] = params

    knobs = {}
    for knob in PROGRAM_KNOBS:
        spec = raw.get(knob, KNOB_DEFAULTS[knob])
        param = _param(knob, spec, f"{where}: {knob}", problems)
        if param is not None:
            knobs[knob] = param

    if train_split_size is not None and "train_size" in knobs:
        largest = knobs["train_size"].largest()
        if largest is not None and largest > train_split_size:
            problems.append(
                f"{where}: train_size: up to {largest} is larger than the train split ({train_split_size} items); "
                f"allowed: at most {train_split_size}"
            )
    if n_ctx is not None:
        _check_context(optimizers, knobs, n_ctx, where, problems)

    if problems:
        raise SpaceError(problems)
    return SearchSpace(
        path=source.path,
        name=space_name,
        text=source.text,
        sha256=source.sha256,
        metric=metric,
        mode=mode,
        seed=seed,
        optimizers=optimizers,
        knobs=knobs,
    )


@dataclass(frozen=True)
class _Source:
    """A space as read: its parsed content, its YAML text, where its errors point, its default name."""

    raw: Any
    text: str
    sha256: str
    path: str | None
    where: str
    default_name: str


def _read(space: str | Path | Mapping[str, Any]) -> _Source:
    """Parse a space file, or take a mapping as it is; an unreadable file or bad YAML raises ``SpaceError``."""
    if isinstance(space, Mapping):
        given = space.get("name")
        where = f"<mapping {given if isinstance(given, str) else MAPPING_NAME}>"
        raw = dict(space)
        try:
            text = yaml.safe_dump(raw, sort_keys=False)
        except yaml.YAMLError:
            raise SpaceError(
                [f"{where}: holds values YAML cannot write; use numbers, strings, lists, mappings"]
            ) from None
        return _Source(raw, text, hashlib.sha256(text.encode("utf-8")).hexdigest(), None, where, MAPPING_NAME)
    file, where = Path(space), str(space)
    try:
        raw_bytes = file.read_bytes()
    except OSError as error:
        raise SpaceError([f"{where}: cannot read the file ({error.strerror}); pass a search-space YAML file"]) from None
    try:
        raw = yaml.safe_load(raw_bytes)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise SpaceError([f"{where}: not valid YAML{at}; see search_spaces/default.yaml for the format"]) from None
    text = raw_bytes.decode("utf-8", errors="replace")
    return _Source(raw, text, hashlib.sha256(raw_bytes).hexdigest(), str(file.resolve()), where, file.stem)


def prompt_tokens_estimate(demos: int, retrieval_k: int, max_tokens: int) -> int:
    """A rough upper estimate of one call's tokens: prompt with ``demos`` demos and ``retrieval_k`` verses
    for the question and each bootstrapped demo, plus the answer."""
    return (
        PROMPT_TOKENS_FIXED
        + demos * (DEMO_TOKENS + retrieval_k * PASSAGE_TOKENS)
        + (QUESTION_TOKENS + retrieval_k * PASSAGE_TOKENS)
        + max_tokens
    )


def _check_context(
    optimizers: dict[str, dict[str, Param]], knobs: dict[str, Param], n_ctx: int, where: str, problems: list[str]
) -> None:
    retrieval = knobs.get("retrieval_k")
    retrieval_k = int(retrieval.largest() or 0) if retrieval else 0
    for name, params in optimizers.items():
        largest = {
            param_name: int(params[param_name].largest() if param_name in params else default or 0)
            for param_name, default in OPTIMIZER_PARAMS[name].items()
            if param_name in ("max_bootstrapped_demos", "max_labeled_demos")
        }
        demos = demo_budget(name, largest)
        needed = prompt_tokens_estimate(demos, retrieval_k, LMSettings.max_tokens)
        if needed > n_ctx:
            problems.append(
                f"{where}: optimizers.{name}: up to {demos} demos with retrieval_k up to {retrieval_k} need about "
                f"{needed} tokens, more than the LM's context of {n_ctx}; allowed: fewer demos or a smaller retrieval_k"
            )


def _objective(raw: Any, where: str, problems: list[str]) -> tuple[str, str]:
    default = ("theological_match_score", "max")
    if raw is None:
        return default
    if not isinstance(raw, dict) or set(raw) - {"metric", "mode"}:
        problems.append(f"{where}: objective: expected {{metric: NAME, mode: max|min}}")
        return default
    metric, mode = raw.get("metric", default[0]), raw.get("mode", default[1])
    if metric not in METRICS:
        problems.append(f"{where}: objective.metric: {metric!r} is unknown; allowed: {', '.join(METRICS)}")
    if mode not in OBJECTIVE_MODES:
        problems.append(f"{where}: objective.mode: {mode!r} is not allowed; allowed: max, min")
    return metric, mode


def _check_mipro(params: dict[str, Param], where: str, problems: list[str]) -> None:
    has_auto = "auto" in params and not (params["auto"].is_constant and params["auto"].value is None)
    manual = [name for name in ("num_candidates", "num_trials") if name in params]
    if has_auto and manual:
        problems.append(f"{where}: give auto, or num_candidates and num_trials, not both; allowed: one of the two")
    if len(manual) == 1:
        problems.append(f"{where}: {manual[0]} needs its partner; allowed: num_candidates and num_trials together")


def _param(name: str, spec: Any, where: str, problems: list[str]) -> Param | None:
    """Parse one parameter spec, appending problems; None when it is unusable."""
    if isinstance(spec, dict):
        kinds = [kind for kind in ("int", "float", "choice") if kind in spec]
        extra = set(spec) - {"int", "float", "choice", "step", "log"}
        if len(kinds) != 1 or extra:
            problems.append(f"{where}: expected one of {{int: [low, high]}}, {{float: [low, high]}}, {{choice: [...]}}")
            return None
        kind = kinds[0]
        if kind == "choice":
            choices = spec["choice"]
            if not isinstance(choices, list) or not choices:
                problems.append(f"{where}: choice must be a non-empty list")
                return None
            bad = [choice for choice in choices if not _value_ok(name, choice)]
            if bad:
                problems.append(f"{where}: {bad[0]!r} is not allowed; allowed: {_allowed(name)}")
                return None
            if len(set(map(repr, choices))) != len(choices):
                problems.append(f"{where}: choice lists a value twice; list each value once")
                return None
            return Param(name, "choice", choices=tuple(choices))
        bounds = spec[kind]
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(_is_number(b) for b in bounds)):
            problems.append(f"{where}: {kind} needs [low, high] numbers")
            return None
        low, high = bounds
        if kind == "int" and not all(isinstance(b, int) for b in bounds):
            problems.append(f"{where}: int bounds must be integers, but got {bounds}")
            return None
        if low >= high:
            problems.append(f"{where}: range [{low}, {high}] is empty or inverted; allowed: low < high")
            return None
        expected = "int" if name in _INT_BOUNDS else "float" if name in _FLOAT_BOUNDS else None
        if expected is None or (expected == "int" and kind != "int"):
            problems.append(f"{where}: a {kind} range is not allowed; allowed: {_allowed(name)}")
            return None
        lowest, highest = (_INT_BOUNDS | _FLOAT_BOUNDS)[name]
        if low < lowest or high > highest:
            problems.append(f"{where}: range [{low}, {high}] is out of bounds; allowed: {_allowed(name)}")
            return None
        step = spec.get("step")
        log = bool(spec.get("log", False))
        if step is not None and (kind != "int" or not isinstance(step, int) or step < 1):
            problems.append(f"{where}: step must be a positive integer on an int range")
            return None
        if log and low <= 0:
            problems.append(f"{where}: a log range needs low > 0")
            return None
        return Param(name, kind, low=low, high=high, step=step, log=log)
    if not _value_ok(name, spec):
        problems.append(f"{where}: {spec!r} is not allowed; allowed: {_allowed(name)}")
        return None
    return Param(name, "const", value=spec)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _value_ok(name: str, value: Any) -> bool:
    if name in _CHOICES:
        return value in _CHOICES[name] and (value is not None or None in _CHOICES[name])
    if name in _INT_BOUNDS:
        lowest, highest = _INT_BOUNDS[name]
        return isinstance(value, int) and not isinstance(value, bool) and lowest <= value <= highest
    if name in _FLOAT_BOUNDS:
        lowest, highest = _FLOAT_BOUNDS[name]
        return _is_number(value) and lowest <= value <= highest
    return False


def _allowed(name: str) -> str:
    if name in _CHOICES:
        return ", ".join("null" if choice is None else str(choice).lower() for choice in _CHOICES[name])
    if name in _INT_BOUNDS:
        return f"integers from {_INT_BOUNDS[name][0]} to {_INT_BOUNDS[name][1]}"
    if name in _FLOAT_BOUNDS:
        return f"numbers from {_FLOAT_BOUNDS[name][0]} to {_FLOAT_BOUNDS[name][1]}"
    return "nothing"
