"""Text normalisation shared by the metrics, the lexicon and retrieval: one tokenizer, one stemmer.

Example::

    >>> from bibleqa.text import tokens, stems, contains_run
    >>> tokens("God's love, shown!")
    ['god', 's', 'love', 'shown']
    >>> stems("He justified them")
    ['he', 'justifi', 'them']
    >>> contains_run(stems("we are justified by faith"), stems("justified"))
    True
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import Stemmer

_NON_WORD = re.compile(r"[^a-z0-9]+")


def tokens(text: str | None) -> list[str]:
    """Lower-case word tokens: every run of characters other than a-z and 0-9 separates words."""
    return _NON_WORD.sub(" ", (text or "").lower()).split()


@functools.lru_cache(maxsize=1)
def stemmer() -> Stemmer.Stemmer:
    """The shared Snowball English stemmer."""
    return Stemmer.Stemmer("english")


def stems(text: str | None) -> list[str]:
    """Snowball (English) stems of ``tokens(text)``."""
    return stemmer().stemWords(tokens(text))


def contains_run(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    """True when ``needle`` occurs in ``haystack`` as a contiguous run (an empty needle never does)."""
    return find_run(haystack, needle) >= 0


def find_run(haystack: Sequence[str], needle: Sequence[str]) -> int:
    """Index where ``needle`` first occurs in ``haystack`` as a contiguous run, or -1."""
    width = len(needle)
    for start in range(len(haystack) - width + 1 if width else 0):
        if list(haystack[start : start + width]) == list(needle):
            return start
    return -1
