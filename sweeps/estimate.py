"""What a sweep would cost, without starting it: ``estimate_sweep`` (``bibleqa-sweep run --dry-run``).

It checks every input as ``run_sweep`` does (``sweeps.plan``), then counts and times:

- LM calls per trial, for each optimizer family of the space: what compiling makes at the space's largest
  parameters and ``train_size`` (the optimizer registry's ``compile_calls``), plus one pass over dev; the
  families are assumed equally likely, and the winner's test questions come once on top;
- seconds per call: the program itself answers ``PROBE_CALLS`` questions (dev, then train), uncached,
  after one warm-up call (which pays for the first connection and the retrieval index); the median is taken;
- time: calls x seconds per call / slots, plus what a sweep spends besides the LM (``SWEEP_OVERHEAD_S``).

Nothing is written, and neither Ray nor any MLflow run is started.

Example::

    >>> import sweeps
    >>> estimate = sweeps.estimate_sweep("search_spaces/smoke.yaml", lm=sweeps.lm_studio(), trials=6)  # doctest: +SKIP
    >>> estimate.measured  # doctest: +SKIP
    '3 calls of the program after a warm-up call, uncached: median 0.61 s a call (0.58-0.66 s)'
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from bibleqa.dspy_lm import lm_context
from bibleqa.knobs import DEFAULT_VALSET_SIZE, KNOB_DEFAULTS
from bibleqa.optimizers import OPTIMIZERS
from bibleqa.program import build_program
from sweeps.options import SweepOptions
from sweeps.plan import LMs, SweepPlan, plan_sweep
from sweeps.result import SweepEstimate
from sweeps.space import SearchSpace

PROBE_CALLS = 3
"""Timed probe calls after the warm-up one: enough for a median, few enough to take seconds."""
SWEEP_OVERHEAD_S = 15.0
"""What a sweep spends besides its LM calls: starting Ray and the trial workers, MLflow logging, the summary,
plots and model.  Measured against a FAKE LM of 0.5 s a call on 2 cores (wall time minus calls x 0.5 s):
14.1 s for 4 trials, 13.4 s for 8 (one more trial than slots runs at once, so each trial's own set-up
overlaps the others' LM work).  ``tests/test_estimate.py`` holds the estimate to 1.5 x of a real sweep."""


def estimate_sweep(space: str | Path | Mapping[str, Any], *, lm: LMs = None, **options: Any) -> SweepEstimate:
    """What ``run_sweep(space, lm=lm, **options)`` would cost (``options`` are ``run_sweep``'s keywords).

    Raises ``UserError`` as ``run_sweep`` does, for the same inputs.  Makes ``PROBE_CALLS + 1`` uncached LM
    calls; writes nothing and starts neither Ray nor any MLflow run."""
    options.pop("echo", None)
    plan = plan_sweep(space, lm, SweepOptions(**options))
    per_trial = lm_calls_per_trial(plan.space, len(plan.dataset.dev))
    test_calls = len(plan.dataset.test)
    total = math.ceil(sum(per_trial.values()) / len(per_trial) * plan.options.trials) + test_calls
    timings = probe_latency(plan)
    seconds_per_call = statistics.median(timings)
    return SweepEstimate(
        space=plan.space.name,
        trials=plan.options.trials,
        slots=plan.slots,
        lm_calls_per_trial=per_trial,
        test_calls=test_calls,
        estimated_lm_calls=total,
        seconds_per_call=seconds_per_call,
        estimated_seconds=total * seconds_per_call / plan.slots + SWEEP_OVERHEAD_S,
        measured=(
            f"{len(timings)} calls of the program after a warm-up call, uncached: median {seconds_per_call:.2f} s "
            f"a call ({min(timings):.2f}-{max(timings):.2f} s)"
        ),
        notes=list(plan.notes),
    )


def lm_calls_per_trial(space: SearchSpace, dev_size: int) -> dict[str, int]:
    """For each optimizer family of the space: compile calls at its largest parameters, plus a dev pass."""
    train_size = _largest(space.knobs.get("train_size"), KNOB_DEFAULTS["train_size"])
    per_trial = {}
    for name, params in space.optimizers.items():
        family = OPTIMIZERS[name]
        largest = {param: _largest(params.get(param), default) for param, default in family.defaults.items()}
        compile_calls = family.compile_calls(largest, train_size=int(train_size), valset_size=DEFAULT_VALSET_SIZE)
        per_trial[name] = compile_calls + dev_size
    return per_trial


def probe_latency(plan: SweepPlan) -> list[float]:
    """Seconds of each of ``PROBE_CALLS`` uncached calls of the program on dev questions, after a warm-up
    call; the program retrieves as many verses as the space allows at most, and adds no related passages
    (they cost no LM call).  A call that fails to parse is timed all the same."""
    model_format = plan.space.knobs["model_format"].value if "model_format" in plan.space.knobs else None
    settings = replace(plan.lm, cache=False, model_format=model_format or plan.lm.model_format)
    program = build_program(int(_largest(plan.space.knobs.get("retrieval_k"), 0)), False, 0)
    examples = [*plan.dataset.examples("dev"), *plan.dataset.examples("train")]
    questions = [example.question for example in examples[: PROBE_CALLS + 1]]
    timings = []
    with lm_context(settings):
        for index, question in enumerate(questions):
            started = time.perf_counter()
            with contextlib.suppress(Exception):
                program(question=question)
            if index > 0:  # the first call is the warm-up
                timings.append(time.perf_counter() - started)
    return timings or [0.0]


def _largest(param: Any, default: Any) -> Any:
    """The largest value a ``Param`` can take, or ``default`` when there is none (or no param)."""
    largest = param.largest() if param is not None else None
    return default if largest is None else largest
