"""Metrics: pure functions ``(example, pred, trace=None) -> float`` in [0, 1], named as in the seed.

``example`` is a ``dspy.Example`` made by ``QAItem.to_example``; ``pred`` is anything with ``answer`` (a
string) and ``references`` (a list of reference strings, or one string); ``None``, missing fields and
values of the wrong type all count as an empty prediction and score 0.  Only ``pred.answer`` and
``pred.references`` are read: any reasoning the program produced is never scored.

Each metric's aggregate over a split is the plain mean over its questions; a question whose prediction
failed counts 0 (and is counted in ``n_errors`` by the evaluator).

=========================== ==========================================================================
metric                      rule for one question
=========================== ==========================================================================
accuracy                    1 if the gold answer or an alias occurs in the answer as whole words, and
                            the answer names no rival candidate; else 0.  A rival is a part of the
                            answer, cut at ``,`` ``;`` ``/`` or the word "or", that is one or two words
                            long once the gold answer and aliases are removed: "Noah, Moses, David"
                            hedges and is wrong for "Noah"; "Noah, the son of Lamech" is right.
theological_match_score     F1 between the gold concepts and the concepts the answer expresses through
                            the lexicon (stemmed forms, ``bibleqa.lexicon``).  Items without gold
                            concepts (factual items) score their ``accuracy``, so a short correct
                            factual answer is not punished.  Extra concepts lower precision, so
                            padding an answer never raises it.
key_term_accuracy           share of the gold key terms whose stemmed words occur, in order and
                            adjacent, in the stemmed answer ("justified" matches "justification"'s
                            stem only if the stems agree; "sinners" matches "sinner").
cross_reference_recall      verse-level recall of the gold cross references among the first
                            ``MAX_COUNTED_VERSES`` (20) verses the program returned, in its order, so
                            that returning more verses buys nothing past 20.  A returned reference
                            spanning more than ``MAX_REFERENCE_VERSES`` (5) verses (a chapter, a book)
                            is skipped: it is too vague to count and takes none of the 20 places.
cross_reference_precision   share of all returned verses (vague references and verses past the 20th
                            included) that are gold cross-reference verses; 0 when nothing was returned.
composite_score             mean of accuracy, theological_match_score and key_term_accuracy: the
                            default ``bootstrap_metric``.
=========================== ==========================================================================

Example::

    >>> import dspy
    >>> from bibleqa.metrics import accuracy
    >>> gold = dspy.Example(answer="Noah", aliases=[])
    >>> accuracy(gold, dspy.Prediction(answer="Noah built the ark."))
    1.0
    >>> accuracy(gold, dspy.Prediction(answer="Noah, Moses, David, Abraham"))
    0.0
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bibleqa.lexicon import load_lexicon
from bibleqa.scripture import parse_references, verse_ids
from bibleqa.text import contains_run, stems, tokens

Metric = Callable[..., float]

MAX_REFERENCE_VERSES = 5
"""A returned reference wider than this many verses (a chapter, a book) buys no recall."""
MAX_COUNTED_VERSES = 20
"""Recall counts only the first this-many specific verses the program returns: spam buys nothing."""

_LIST_SEPARATOR = re.compile(r"[,;/\n]|\bor\b")
_RIVAL_MAX_WORDS = 2


def answer_text(pred: Any) -> str:
    """The prediction's answer as a string; "" for None, a missing field or a non-string value."""
    value = _field(pred, "answer")
    return value if isinstance(value, str) else ""


def predicted_references(pred: Any) -> list[str]:
    """The prediction's references as a list of strings; [] when missing or malformed."""
    value = _field(pred, "references")
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [entry for entry in value if isinstance(entry, str)]
    return []


def accuracy(example: Any, pred: Any, trace: Any = None) -> float:
    """1.0 if the answer states the gold answer (or an alias) without hedging among rivals, else 0.0."""
    answer = answer_text(pred).lower()
    golds = [gold for gold in (example.answer, *(example.aliases or ())) if tokens(gold)]
    patterns = [_whole_words(gold) for gold in golds]
    if not any(pattern.search(answer) for pattern in patterns):
        return 0.0
    remainder = answer
    for pattern in patterns:
        remainder = pattern.sub(" ", remainder)
    parts = _LIST_SEPARATOR.split(remainder)
    rivals = [part for part in parts if 0 < len(tokens(part)) <= _RIVAL_MAX_WORDS] if len(parts) > 1 else []
    return 0.0 if rivals else 1.0


def theological_match_score(example: Any, pred: Any, trace: Any = None) -> float:
    """F1 of gold concepts against the answer's concepts; the item's accuracy when it has no concepts."""
    gold = set(example.concepts or ())
    if not gold:
        return accuracy(example, pred, trace)
    expressed = load_lexicon().concepts_in(answer_text(pred))
    hits = len(gold & expressed)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(expressed), hits / len(gold)
    return 2 * precision * recall / (precision + recall)


def key_term_accuracy(example: Any, pred: Any, trace: Any = None) -> float:
    """Share of gold key terms present (stemmed, adjacent) in the answer; accuracy when none are given."""
    terms = [stems(term) for term in example.key_terms or () if stems(term)]
    if not terms:
        return accuracy(example, pred, trace)
    answer_stems = stems(answer_text(pred))
    return sum(contains_run(answer_stems, term) for term in terms) / len(terms)


def cross_reference_recall(example: Any, pred: Any, trace: Any = None) -> float:
    """Share of the gold cross-reference verses among the first 20 returned specific verses."""
    gold = _gold_cross_reference_verses(tuple(example.cross_references or ()))
    if not gold:
        return 0.0
    specific, _ = _returned_verses(pred)
    return len(gold & specific) / len(gold)


def cross_reference_precision(example: Any, pred: Any, trace: Any = None) -> float:
    """Share of every returned verse that is a curated cross-reference verse."""
    gold = _gold_cross_reference_verses(tuple(example.cross_references or ()))
    specific, every = _returned_verses(pred)
    return len(gold & specific) / len(every) if every else 0.0


def composite_score(example: Any, pred: Any, trace: Any = None) -> float:
    """Mean of accuracy, theological_match_score and key_term_accuracy."""
    parts = (accuracy, theological_match_score, key_term_accuracy)
    return sum(metric(example, pred, trace) for metric in parts) / len(parts)


METRICS: dict[str, Metric] = {
    "accuracy": accuracy,
    "theological_match_score": theological_match_score,
    "key_term_accuracy": key_term_accuracy,
    "cross_reference_recall": cross_reference_recall,
    "cross_reference_precision": cross_reference_precision,
    "composite_score": composite_score,
}
"""Every metric by name; the first four are the seed's."""

TRACKED_METRICS = ("accuracy", "theological_match_score", "key_term_accuracy", "cross_reference_recall")
"""The seed's four metrics, in the seed's order."""

SEED_TARGETS = {
    "accuracy": 0.80,
    "theological_match_score": 0.70,
    "key_term_accuracy": 0.85,
    "cross_reference_recall": 0.65,
}
"""The seed's targets: a metric meets its target when it is strictly above it."""


@dataclass(frozen=True)
class BootstrapMetric:
    """The metric the optimizers use to accept demos: ``metric >= threshold`` while bootstrapping.

    DSPy calls a metric with a ``trace`` while it bootstraps demos and accepts any truthy score; a bare
    float metric would accept every score above 0.  With a trace this returns a bool; without one (in
    evaluation and in random search's candidate scoring) the score itself.  Picklable, for Ray.

    >>> BootstrapMetric("accuracy", 1.0).metric_name
    'accuracy'
    """

    metric_name: str = "composite_score"
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.metric_name not in METRICS:
            raise ValueError(f"bootstrap_metric {self.metric_name!r} is not one of {', '.join(METRICS)}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"bootstrap_threshold must be in [0, 1], but got {self.threshold=}")

    def __call__(self, example: Any, pred: Any, trace: Any = None) -> float | bool:
        score = METRICS[self.metric_name](example, pred, trace)
        return score if trace is None else score >= self.threshold


def score_all(example: Any, pred: Any) -> dict[str, float]:
    """Every metric in ``METRICS`` for one question."""
    return {name: metric(example, pred) for name, metric in METRICS.items()}


def _field(pred: Any, name: str) -> Any:
    if pred is None:
        return None
    if isinstance(pred, dict):
        return pred.get(name)
    try:
        return getattr(pred, name, None)
    except Exception:  # a malformed Prediction may raise on attribute access
        return None


@functools.lru_cache(maxsize=64)
def _whole_words(gold: str) -> re.Pattern[str]:
    words = tokens(gold)
    return re.compile(r"(?<![a-z0-9])" + r"[^a-z0-9]+".join(map(re.escape, words)) + r"(?![a-z0-9])")


@functools.lru_cache(maxsize=4096)
def _gold_cross_reference_verses(references: Sequence[str]) -> frozenset[int]:
    return frozenset(verse for reference in references for verse in verse_ids(reference, strict=False))


def _returned_verses(pred: Any) -> tuple[frozenset[int], frozenset[int]]:
    """(verses of the specific returned references, verses of all returned references)."""
    return _verses_of(tuple(predicted_references(pred)))


@functools.lru_cache(maxsize=4096)
def _verses_of(references: tuple[str, ...]) -> tuple[frozenset[int], frozenset[int]]:
    """(the first ``MAX_COUNTED_VERSES`` verses of the specific references, every returned verse)."""
    # Cached: recall and precision parse the same returned references for every question.
    from pythonbible import convert_reference_to_verse_ids

    counted: dict[int, None] = {}
    every: set[int] = set()
    for text in references:
        for reference in parse_references(text, strict=False):
            verses = convert_reference_to_verse_ids(reference)
            every.update(verses)
            if len(verses) > MAX_REFERENCE_VERSES:
                continue
            for verse in verses:
                if len(counted) < MAX_COUNTED_VERSES:
                    counted[verse] = None
    return frozenset(counted), frozenset(every)
