"""Numbers in answers: digits, modern words and the KJV's forms, read as values so they compare by value.

The KJV counts in its own way: units may come before tens ("seven and twenty"), scores count twenties
("threescore and ten"), and "an hundred" is one hundred.  ``number_runs`` finds every number in a list of
word tokens and reads its value:

=========================================  =======
words                                      value
=========================================  =======
``430``, ``1,000``                         430, 1000
``four hundred thirty``                    430
``four hundred and thirty``                430
``nine hundred sixty and nine``            969
``an hundred and seven and twenty``        127
``threescore and ten``, ``fourscore``      70, 80
``threescore years and ten``               70
``an hundred and forty and four thousand`` 144000
``twain``, ``seventh``, ``7th``            2, 7, 7
=========================================  =======

Example::

    >>> from bibleqa.numbers import number_value
    >>> number_value("an hundred and seven and twenty"), number_value("threescore and ten"), number_value("430")
    (127, 70, 430)
    >>> number_value("Noah") is None
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bibleqa.text import tokens

UNITS = {
    "zero": 0, "one": 1, "two": 2, "twain": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
"""Number words below a hundred."""
ORDINALS = {
    "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10,
    "eleventh": 11, "twelfth": 12, "twentieth": 20, "thirtieth": 30, "fortieth": 40, "fiftieth": 50,
}  # fmt: skip
"""Ordinals read as their number ("the seventh day" is day 7).  "first" and "second" are left out: they are
far more often plain words ("first of all", "the second coming") than numbers in an answer."""
SCORES = {"score": 1, "threescore": 3, "fourscore": 4}
"""A score is twenty; "threescore" and "fourscore" are written as one word."""
SCALES = {"hundred": 100, "hundredth": 100, "thousand": 1000, "thousandth": 1000}
_ARTICLES = ("a", "an")
_PRONOUN_ONE_AFTER = frozenset({"no", "every", "any", "some", "each", "the", "that", "this", "which", "such"})
""""one" after these words is a pronoun ("no one", "the one ... the other"), as it is before "another"."""
_ORDINAL_SUFFIXES = ("st", "nd", "rd", "th")


@dataclass(frozen=True)
class NumberRun:
    """A number in a token list: tokens ``start`` to ``end`` (exclusive) read as ``value``."""

    start: int
    end: int
    value: int
    ordinal: bool = False


def _digit_value(token: str) -> tuple[int, bool] | None:
    """(value, ordinal) of "430" or "7th"; None for anything else."""
    if token.isdigit():
        return int(token), False
    if token[:-2].isdigit() and token.endswith(_ORDINAL_SUFFIXES):
        return int(token[:-2]), True
    return None


def _is_number_word(token: str) -> bool:
    return token in UNITS or token in ORDINALS or token in SCORES or token in SCALES


def number_runs(words: Sequence[str]) -> list[NumberRun]:
    """Every number in ``words`` (lower-case word tokens, ``bibleqa.text.tokens``), left to right.

    A run is digits, or number words joined by "and"; "a"/"an" before "hundred" or "thousand" counts as
    one.  An "and" that is not followed by another number word ends the run ("forty days and forty nights"
    is two runs of 40)."""
    runs: list[NumberRun] = []
    index = 0
    while index < len(words):
        token = words[index]
        digits = _digit_value(token)
        if digits is not None:
            runs.append(NumberRun(index, index + 1, *digits))
            index += 1
            continue
        leading_article = token in _ARTICLES and index + 1 < len(words) and words[index + 1] in SCALES
        pronoun = token == "one" and (
            (index > 0 and words[index - 1] in _PRONOUN_ONE_AFTER)
            or (index + 1 < len(words) and words[index + 1] == "another")
        )
        if pronoun or not (_is_number_word(token) or leading_article):
            index += 1
            continue
        end = index + 1
        while end < len(words):
            if _is_number_word(words[end]) or (
                words[end] == "and" and end + 1 < len(words) and _is_number_word(words[end + 1])
            ):
                end += 1
            else:
                break
        value = _read_words(words[index:end])
        # "threescore years and ten": the KJV puts the counted noun between the scores and the units.
        if (
            value is not None
            and words[end - 1] in SCORES
            and end + 2 < len(words)
            and words[end + 1] == "and"
            and UNITS.get(words[end + 2], 20) < 20
        ):
            value += UNITS[words[end + 2]]
            end += 3
        if value is not None:
            runs.append(NumberRun(index, end, value, ordinal=words[end - 1] in ORDINALS))
        index = end
    return runs


def _read_words(words: Sequence[str]) -> int | None:
    total = 0
    current = 0
    seen = False
    for word in words:
        if word in _ARTICLES:
            current += 1
        elif word in UNITS or word in ORDINALS:
            current += UNITS[word] if word in UNITS else ORDINALS[word]
            seen = True
        elif word in SCORES:
            current = (current or 1) * 20 * SCORES[word] if word == "score" else current + 20 * SCORES[word]
            seen = True
        elif word in SCALES:
            if SCALES[word] == 100:
                current = (current or 1) * 100
            else:
                total += (current or 1) * SCALES[word]
                current = 0
            seen = True
    return total + current if seen else None


def number_value(text: str) -> int | None:
    """The value of ``text`` when it is one number and nothing else but filler words; else None.

    >>> number_value("four hundred and thirty"), number_value("forty days"), number_value("two fish")
    (430, None, None)
    """
    words = tokens(text)
    runs = number_runs(words)
    if len(runs) != 1 or runs[0].end - runs[0].start != len(words):
        return None
    return runs[0].value
