"""What a piece of text says, word by word, as the metrics read it: comparison keys, numbers, names,
negation and list structure.

``Wording.of(text)`` reads a text once (cached) into ``Word`` s:

* ``key``: the word's comparison key (``bibleqa.text.word_key``: KJV forms mapped to modern ones, then
  stemmed, one word family as one); ``stem`` the same without merging word families (for the lexicon);
  a number, in digits or words, becomes one word keyed by its value (``"#430"``, an ordinal ``"#7th"``;
  ``bibleqa.numbers``).
* ``content``: not a function word (``bibleqa.text.STOP_WORDS``) and not a negation.
* ``name``: a proper name: a word the KJV writes capitalised mid-sentence (Noah, Sinai, God), or a
  capitalised word the KJV does not have at all (a modern spelling).
* ``negated``: inside the scope of a negation: the ``NEGATION_SCOPE`` content words after "not", "no",
  "never", "without", ... in the same clause ("not by works"), or the content words before "no more" /
  "no longer" ("remember their sin no more"); a negation in a question is rhetorical and governs nothing
  ("Know ye not that ...?").  A clause ends at punctuation and at "but", "yet", "though", ...
* ``segment`` and ``joiner``: the answer cut into list items at ``, ; / & ( )`` and at "and", "or",
  "either", "perhaps", ...; ``joiner`` is what opened the word's item ("Noah or Moses": Moses is in
  segment 1, opened by "or").  ``bibleqa.metrics`` uses this to tell a hedge from an elaboration.

Example::

    >>> from bibleqa.wording import Wording
    >>> words = Wording.of("It was not Noah; it was Moses.").words
    >>> [(word.key, word.negated, word.name) for word in words if word.content]
    [('noah', True, True), ('mose', False, True)]
    >>> [word.key for word in Wording.of("four hundred and thirty years").words]
    ['#430', 'year']
"""

from __future__ import annotations

import collections
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from bibleqa.numbers import number_runs
from bibleqa.scripture import kjv_verses
from bibleqa.text import NEGATORS, STOP_WORDS, stem_key, token_spans, word_key

NEGATION_SCOPE = 3
"""How many content words after a negation it governs, within its clause: "should not perish but" negates
"perish"; "not by works, lest" negates "works"; "no one can serve two masters" and "nobody can serve two
masters" both negate "serve", "two" and "masters"."""

CLAUSE_WORDS = frozenset("but yet though although whereas except rather instead however".split())
LIST_WORDS = frozenset("and or nor either neither perhaps maybe possibly probably".split())
LIST_PUNCTUATION = re.compile(r"[,;/&()\[\]:]")
CLAUSE_PUNCTUATION = re.compile(r"[,;:.!?()\[\]]")
BACKWARD_NEGATIONS = frozenset({("no", "more"), ("no", "longer"), ("not", "again")})


@dataclass(frozen=True)
class Word:
    """One word (or one whole number) of a text, as the metrics read it."""

    text: str
    key: str
    stem: str
    content: bool
    name: bool
    negated: bool
    negation: bool
    number: int | None
    ordinal: bool
    clause: int
    segment: int
    joiner: str
    sentence: int


@dataclass(frozen=True)
class Wording:
    """A text read into ``Word`` s; build it with ``Wording.of``."""

    text: str
    words: tuple[Word, ...]

    @classmethod
    def of(cls, text: str | None) -> Wording:
        return _read(text or "")

    @property
    def keys(self) -> list[str]:
        """Every word's key, in order (function words included)."""
        return [word.key for word in self.words]

    @property
    def stems(self) -> list[str]:
        """Every word's stem (``bibleqa.text.stem_key``: no word families merged), in order."""
        return [word.stem for word in self.words]

    def content_keys(self, *, affirmed_only: bool = False) -> set[str]:
        """Keys of the content words (only those outside a negation's scope with ``affirmed_only``)."""
        return {word.key for word in self.words if word.content and not (affirmed_only and word.negated)}

    def negated_keys(self) -> set[str]:
        return {word.key for word in self.words if word.content and word.negated}

    def names(self) -> set[str]:
        return {word.key for word in self.words if word.name}

    def numbers(self) -> set[int]:
        return {word.number for word in self.words if word.number is not None and not word.ordinal}

    def content_positions(self) -> list[int]:
        return [index for index, word in enumerate(self.words) if word.content]

    def find_content_run(self, keys: list[str]) -> Iterator[int]:
        """Start indexes (into ``words``) where ``keys`` occur as consecutive content words."""
        positions = self.content_positions()
        sequence = [self.words[index].key for index in positions]
        width = len(keys)
        for start in range(len(sequence) - width + 1 if width else 0):
            if sequence[start : start + width] == keys:
                yield positions[start]

    def find_stem_run(self, stems: list[str]) -> Iterator[int]:
        """Start indexes where ``stems`` occur as consecutive word stems (function words included)."""
        sequence = self.stems
        width = len(stems)
        for start in range(len(sequence) - width + 1 if width else 0):
            if sequence[start : start + width] == stems:
                yield start


@functools.lru_cache(maxsize=1)
def kjv_names() -> frozenset[str]:
    """Lower-case words that the KJV writes capitalised at least 3 times as often as not, away from the start
    of a sentence: its proper names (Noah, Sinai, Bethlehem, God, LORD)."""
    capitalised: collections.Counter[str] = collections.Counter()
    lower: collections.Counter[str] = collections.Counter()
    for text in kjv_verses().values():
        for index, (word, before) in enumerate(token_spans(text)):
            if index == 0 or re.search(r"[.!?:;]", before) or not word.isalpha():
                continue
            (capitalised if word[0].isupper() else lower)[word.lower()] += 1
    return frozenset(word for word, count in capitalised.items() if count >= 3 * lower[word] and word not in ("i", "o"))


@functools.lru_cache(maxsize=1)
def kjv_vocabulary() -> frozenset[str]:
    """Every lower-case word of the KJV."""
    return frozenset(word.lower() for text in kjv_verses().values() for word, _ in token_spans(text))


@functools.lru_cache(maxsize=8192)
def _read(text: str) -> Wording:
    spans = token_spans(text)
    lowered = [word.lower() for word, _ in spans]
    runs = {run.start: run for run in number_runs(lowered)}
    names, vocabulary = kjv_names(), kjv_vocabulary()
    raw: list[dict] = []
    clause = segment = sentence = 0
    joiner = ""
    ends: list[str] = []  # how each sentence ends: ".", "!" or "?"
    index = 0
    while index < len(spans):
        word, before = spans[index]
        lower = lowered[index]
        if index and (end := re.findall(r"[.!?]", before)):
            ends.append(end[-1])
            sentence += 1
        if index and (CLAUSE_PUNCTUATION.search(before) or lower in CLAUSE_WORDS):
            clause += 1
        if index and (LIST_PUNCTUATION.search(before) or lower in LIST_WORDS):
            segment += 1
            joiner = lower if lower in LIST_WORDS else LIST_PUNCTUATION.search(before).group()
        elif index and re.search(r"[.!?]", before):
            segment += 1
            joiner = "."
        run = runs.get(index)
        if run is not None:
            key = f"#{run.value}th" if run.ordinal else f"#{run.value}"
            raw.append({"text": " ".join(lowered[run.start : run.end]), "key": key, "stem": key, "content": True,
                        "name": False, "negation": False, "number": run.value, "ordinal": run.ordinal,
                        "clause": clause, "segment": segment, "joiner": joiner, "sentence": sentence})  # fmt: skip
            index = run.end
            continue
        starts_sentence = index == 0 or bool(re.search(r"[.!?]", before))
        is_name = (
            word[0].isupper()
            and lower.isalpha()
            and (lower in names or (not starts_sentence and lower not in vocabulary and lower not in STOP_WORDS))
        )
        after_thou = index > 0 and lowered[index - 1] == "thou"
        raw.append({"text": lower, "key": word_key(lower, after_thou), "stem": stem_key(lower, after_thou),
                    "content": lower not in STOP_WORDS and lower not in NEGATORS and lower not in LIST_WORDS,
                    "name": is_name, "negation": lower in NEGATORS, "number": None, "ordinal": False,
                    "clause": clause, "segment": segment, "joiner": joiner, "sentence": sentence})  # fmt: skip
        index += 1
    ends.append((re.findall(r"[.!?]", text[text.rfind(spans[-1][0]) :]) or ["."])[-1] if spans else ".")
    questions = {number for number, end in enumerate(ends) if end == "?"}
    negated = _negation_scopes(raw, questions)
    return Wording(text, tuple(Word(negated=index in negated, **entry) for index, entry in enumerate(raw)))


def _negation_scopes(raw: list[dict], questions: set[int]) -> set[int]:
    """Indexes of the words a negation governs (see the module docstring).  A negation in a question is
    rhetorical and governs nothing ("Know ye not that your body is the temple of the Holy Ghost?")."""
    negated: set[int] = set()
    for index, entry in enumerate(raw):
        if not entry["negation"] or entry["sentence"] in questions:
            continue
        following = raw[index + 1]["text"] if index + 1 < len(raw) else ""
        step = -1 if (entry["text"], following) in BACKWARD_NEGATIONS else 1
        governed, other = 0, index + step
        while 0 <= other < len(raw) and raw[other]["clause"] == entry["clause"] and governed < NEGATION_SCOPE:
            negated.add(other)
            governed += raw[other]["content"]
            other += step
    return negated
