"""DSPy tracing for ``bibleqa train``: every program call of the compile and of the dev evaluation becomes an
MLflow trace under the training run (the run's "Traces" tab in the MLflow UI).

    bibleqa train --lm local     # then: mlflow ui, the run, "Traces"

``dspy_traces()`` turns ``mlflow.dspy.autolog`` on for the compile and the evaluation, and puts DSPy's
settings back as they were when it ends, so that nothing of it reaches the model the run logs afterwards
(``mlflow.dspy`` pickles ``dspy.settings`` with a model) or the next run in the same process.

What is turned on, and what is not:

* ``log_traces`` and ``log_traces_from_compile``: MLflow leaves compile traces off by default; they show
  what the optimizer tried (BootstrapFewShot's teacher answering the train questions, MIPROv2's proposals).
* ``log_traces_from_eval``: the ``dspy.Evaluate`` calls that some optimizers make inside their compile
  (random search, MIPROv2) are traced, with the metric's score as feedback on each trace.  Our own dev pass
  (``bibleqa.evaluate``) is plain inference and is traced in any case.
* ``log_compiles`` and ``log_evals`` stay off.  With them MLflow would log its own params on our run (the
  compile call's arguments: MLflow refuses a param logged twice with another value, and ours already carry
  the seed's names), its own ``eval`` metric, artifacts (``best_model.json``, ``trainset.json``), and a
  nested run per ``dspy.Evaluate`` inside a compile (``eval_0``, ``eval_1``, ...): extra runs, and
  duplicates of what the run logs itself.

Why sweep trials do not trace: ``mlflow.dspy.autolog()`` calls ``dspy.settings.configure`` (to add its
callback and turn on ``track_usage``), and DSPy 3.4 lets only the thread that first called ``configure``
call it again (any other thread gets ``RuntimeError: dspy.settings can only be changed by the thread that
initially configured it``).  Tune reuses a trial actor for the next trial (``reuse_actors=True`` in
``sweeps.tune_run``) and runs each trial in a new thread of that actor (a function trainable's
``reset_config`` starts a fresh ``RunnerThread``), so the second trial on an actor would fail.

Example::

    >>> from bibleqa.tracing import dspy_traces
    >>> with mlflow.start_run(), dspy_traces():  # doctest: +SKIP
    ...     compiled, evaluation, figures = compile_and_evaluate(config, dataset, lm, adapter)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import dspy
import mlflow

logger = logging.getLogger(__name__)

AUTOLOG_SETTINGS = {
    "log_traces": True,
    "log_traces_from_compile": True,
    "log_traces_from_eval": True,
    "log_compiles": False,
    "log_evals": False,
}
"""What ``dspy_traces()`` passes to ``mlflow.dspy.autolog``; the module docstring says why."""


@contextlib.contextmanager
def dspy_traces() -> Iterator[None]:
    """Trace every DSPy program call made inside the block to the active MLflow run; on exit, wait for the
    traces to be written, turn autologging off and restore DSPy's ``callbacks`` and ``track_usage``.

    Must be entered from the thread that configures DSPy in this process (see the module docstring).
    """
    callbacks, track_usage = list(dspy.settings.callbacks), dspy.settings.track_usage
    mlflow.dspy.autolog(**AUTOLOG_SETTINGS, silent=True)
    try:
        yield
    finally:
        try:
            mlflow.flush_trace_async_logging()  # the traces are on the run before it ends
        finally:
            mlflow.dspy.autolog(disable=True, silent=True)
            dspy.settings.configure(callbacks=callbacks, track_usage=track_usage)
