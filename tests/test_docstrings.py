"""The runnable examples in the docstrings of the pure modules (no LM, no server) run and hold."""

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
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    results = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert results.attempted > 0 and results.failed == 0
