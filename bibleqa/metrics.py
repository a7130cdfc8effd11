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
accuracy                    1 if the answer is right, else 0, by the rules of ``bibleqa.judgement``:
                            a short gold (a name, a number, a place) must be stated, affirmed, with
                            no rival candidate beside it ("Noah and Moses", "either Noah or Moses",
                            "Not Noah" and "It was not Noah; it was Moses" are wrong; "Noah, a just
                            man", "Noah, not Moses", "Hur and Aaron" for "Aaron and Hur", "430" and
                            "four hundred thirty years" for "four hundred and thirty" are right); a
                            phrase or sentence gold must have its content stated in other words or
                            in the KJV wording of the cited verses, without contradicting it (no
                            negating what the gold affirms, no swapped agents).  Words of the
                            question never count.
theological_match_score     F1 between the gold concepts and the concepts the answer expresses through
                            the lexicon (``bibleqa.lexicon``: KJV forms and stems, numbers by value).
                            A concept mentioned only inside a negation is not expressed, and an answer
                            that negates what the gold affirms (or contradicts it otherwise, as
                            accuracy judges) scores 0.  Items without gold concepts (factual items)
                            score their ``accuracy``, so a short correct factual answer is not
                            punished.  Extra concepts lower precision, so padding never raises it.
theological_precision       the precision behind theological_match_score (the seed's "theological
                            concept precision"): the share of the concepts the answer expresses that
                            are gold concepts; its ``accuracy`` for items without gold concepts; 0
                            when the answer expresses none or contradicts the gold.
key_term_accuracy           share of the gold key terms the answer contains, outside the words the
                            question already gives: a term's words in any order within a short window,
                            KJV forms and stems compared ("life eternal" for "eternal life", "liveth"
                            for "lives"), numbers as whole numbers by value ("430" for "four hundred
                            and thirty", never "thirty" alone).  A hedged or negated answer (as
                            accuracy judges it) scores 0.  When every key term is in the question, or
                            none is given, the item scores its ``accuracy``.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bibleqa.judgement import Gold, Judgement, judge
from bibleqa.lexicon import load_lexicon
from bibleqa.scripture import parse_references, verse_ids
from bibleqa.wording import Wording

Metric = Callable[..., float]

MAX_REFERENCE_VERSES = 5
"""A returned reference wider than this many verses (a chapter, a book) buys no recall."""
MAX_COUNTED_VERSES = 20
"""Recall counts only the first this-many specific verses the program returns: spam buys nothing."""
KEY_TERM_WINDOW = 2
"""A key term's words may stand this many words apart, in any order ("life eternal", "died for us all")."""


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


def dropped_references(pred: Any) -> int:
    """How many references the LM cited that named no KJV verse (the program's ``dropped_references``)."""
    value = _field(pred, "dropped_references")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def accuracy(example: Any, pred: Any, trace: Any = None) -> float:
    """1.0 if the answer is right by ``bibleqa.judgement`` (stated, affirmed, no rival; or the gold's content
    without contradiction), else 0.0."""
    return 1.0 if _judgement(example, pred).right else 0.0


def theological_match_score(example: Any, pred: Any, trace: Any = None) -> float:
    """F1 of gold concepts against the concepts the answer expresses; the item's accuracy when it has none."""
    precision, recall = _concept_precision_recall(example, pred)
    return 2 * precision * recall / (precision + recall) if precision and recall else 0.0


def theological_precision(example: Any, pred: Any, trace: Any = None) -> float:
    """Share of the concepts the answer expresses that are gold concepts; the item's accuracy when it has none."""
    return _concept_precision_recall(example, pred)[0]


def key_term_accuracy(example: Any, pred: Any, trace: Any = None) -> float:
    """Share of the gold key terms (outside the question's words) in the answer; 0 when it hedges or negates."""
    question = Wording.of(str(example.get("question") or ""))
    terms = [Wording.of(term) for term in example.key_terms or () if Wording.of(term).content_keys()]
    terms = [term for term in terms if not _contains_term(question, term)]
    if not terms:
        return accuracy(example, pred, trace)
    reading = Wording.of(answer_text(pred))
    judgement = _judgement(example, pred)
    if judgement.disqualified:
        return 0.0
    # A short answer that states an alias ("Noe") has the key terms it spells differently ("Noah").
    stated_by_alias = judgement.right and Gold.of(example).is_short
    gold_keys = Wording.of(str(example.get("answer") or "")).content_keys()
    found = [_contains_term(reading, term) or (stated_by_alias and term.content_keys() <= gold_keys) for term in terms]
    return sum(found) / len(terms)


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
    "theological_precision": theological_precision,
    "key_term_accuracy": key_term_accuracy,
    "cross_reference_recall": cross_reference_recall,
    "cross_reference_precision": cross_reference_precision,
    "composite_score": composite_score,
}
"""Every metric by name; ``TRACKED_METRICS`` are the seed's four."""

TRACKED_METRICS = ("accuracy", "theological_match_score", "key_term_accuracy", "cross_reference_recall")
"""The seed's four metrics, in the seed's order."""
LOGGED_METRICS = (*TRACKED_METRICS, "theological_precision", "cross_reference_precision")
"""What every training run and sweep trial logs on dev (and the winner on test): the seed's four metrics and
the precisions behind two of them."""

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


def _field(pred: Any, name: str) -> Any:
    if pred is None:
        return None
    if isinstance(pred, dict):
        return pred.get(name)
    try:
        return getattr(pred, name, None)
    except Exception:  # a malformed Prediction may raise on attribute access
        return None


def _judgement(example: Any, pred: Any) -> Judgement:
    return judge(Gold.of(example), answer_text(pred))


def _concept_precision_recall(example: Any, pred: Any) -> tuple[float, float]:
    """(precision, recall) of the answer's expressed concepts against the gold concepts; for an item without
    concepts, its accuracy twice; (0, 0) when the answer contradicts the gold or denies a gold concept."""
    gold = set(example.concepts or ())
    if not gold:
        score = accuracy(example, pred)
        return score, score
    answer = answer_text(pred)
    lexicon = load_lexicon()
    judgement = _judgement(example, pred)
    if judgement.disqualified or lexicon.denied_in(answer) & gold - _denied_by_gold(example):
        return 0.0, 0.0
    expressed = lexicon.concepts_in(answer) | (lexicon.denied_in(answer) & _denied_by_gold(example))
    hits = len(gold & expressed)
    if not hits:
        return 0.0, 0.0
    return hits / len(expressed), hits / len(gold)


def _denied_by_gold(example: Any) -> set[str]:
    """Concepts the gold answer itself mentions only in a negation ("not by works"): an answer that also
    denies them agrees with the gold."""
    return load_lexicon().denied_in(str(example.get("answer") or ""))


def _contains_term(reading: Wording, term: Wording) -> bool:
    """Every content word of ``term`` is in ``reading`` within a short window, in any order; numbers compare
    by value.  (Whether the answer negates the gold is the judgement's business, not the term's.)"""
    keys = [word.key for word in term.words if word.content]
    spots = {key: [i for i, word in enumerate(reading.words) if word.key == key] for key in set(keys)}
    if not all(spots.values()):
        return False
    width = KEY_TERM_WINDOW + len(keys)
    first = spots[keys[0]]
    return any(all(any(abs(i - start) <= width for i in spots[key]) for key in keys) for start in first)


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
