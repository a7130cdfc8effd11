"""The runnable examples in the docstrings of the modules that need no LM or server run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "bibleqa.text",
    "bibleqa.numbers",
    "bibleqa.wording",
    "bibleqa.judgement",
    "bibleqa.lexicon",
    "bibleqa.metrics",
    "bibleqa.scripture",
    "bibleqa.tsk",
    "bibleqa.related",
    "bibleqa.lm",
    "bibleqa.knobs",
    "bibleqa.optimizers",
    "bibleqa.usage",
    "bibleqa.completion",
    "bibleqa.dspy_lm",
    "bibleqa.samples",
    "sweeps.space",
    "sweeps.options",
    "sweeps.plan",
    "sweeps.trial_config",
    "sweeps.records",
    "sweeps.winner",
    "sweeps.trials_table",
    "sweeps.summary",
    "sweeps.plots",
    "sweeps.result",
    "sweeps.sweep_folder",
    "sweeps.progress",
    "sweeps.mlflow_view",
    "sweeps.cli",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    results = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert results.attempted > 0 and results.failed == 0
