"""Scoring a program on a split: per-question scores, means in [0, 1], errors counted, LM usage measured.

Unlike ``dspy.Evaluate`` (which reports a percentage and scores a question that raised as a silent 0),
this keeps every question's outcome: its answer, references, each metric, and the error if the program
raised.  A failed question scores 0 on every metric and is counted in ``n_errors``.  ``usage`` is what the
LM's meter counted during the evaluation (``bibleqa.usage``: every call, cached or not).

Example::

    >>> from bibleqa.dataset import load_dataset
    >>> from bibleqa.evaluate import evaluate
    >>> from bibleqa.program import build_program
    >>> from bibleqa.dspy_lm import lm_context
    >>> with lm_context(settings):  # doctest: +SKIP
    ...     result = evaluate(build_program(), load_dataset().examples("dev"))
    >>> result.metrics["accuracy"]  # doctest: +SKIP
    0.3
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import dspy

from bibleqa.metrics import METRICS, answer_text, dropped_references, predicted_references
from bibleqa.usage import LMUsage, UsageMeter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuestionResult:
    """One question's outcome."""

    id: str
    question: str
    gold_answer: str
    answer: str
    references: list[str]
    scores: dict[str, float]
    error: str | None = None
    dropped_references: int = 0
    category: str = ""


@dataclass(frozen=True)
class Evaluation:
    """A program's scores on a list of examples."""

    results: list[QuestionResult]
    metrics: dict[str, float]
    n_errors: int
    usage: LMUsage = field(default_factory=LMUsage)
    seconds: float = 0.0

    @property
    def dropped_references(self) -> int:
        """References the LM cited that named no KJV verse, over every question (``question_scores.csv``
        has them per question)."""
        return sum(result.dropped_references for result in self.results)

    def question_rows(self) -> list[dict[str, Any]]:
        """One flat row per question: id, category, question, gold_answer, answer, references,
        dropped_references, error, every metric."""
        return [
            {
                "id": result.id,
                "category": result.category,
                "question": result.question,
                "gold_answer": result.gold_answer,
                "answer": result.answer,
                "references": "; ".join(result.references),
                "dropped_references": result.dropped_references,
                "error": result.error or "",
                **result.scores,
            }
            for result in self.results
        ]


def evaluate(program: Any, examples: list[Any], num_threads: int = 1) -> Evaluation:
    """Run ``program`` on every example under the current ``dspy.context`` and score it.

    ``num_threads`` > 1 runs questions concurrently (for an LM with several slots); the LM and adapter
    of the caller's context are carried into each worker thread.
    """
    lm, adapter = dspy.settings.lm, dspy.settings.adapter
    started = time.perf_counter()

    def run(example: Any) -> QuestionResult:
        with dspy.context(lm=lm, adapter=adapter):
            return _score_one(program, example)

    with UsageMeter(lm) as meter:
        if num_threads > 1:
            with ThreadPoolExecutor(max_workers=num_threads, thread_name_prefix="bibleqa-eval") as pool:
                results = list(pool.map(run, examples))
        else:
            results = [run(example) for example in examples]
    count = max(len(results), 1)
    metrics = {name: sum(result.scores[name] for result in results) / count for name in METRICS}
    n_errors = sum(result.error is not None for result in results)
    return Evaluation(results, metrics, n_errors, meter.usage, time.perf_counter() - started)


def _score_one(program: Any, example: Any) -> QuestionResult:
    error = None
    try:
        pred = program(question=example.question)
    except Exception as exc:  # one failing question must not end the evaluation
        logger.debug("question %s failed: %s", example.get("id"), exc)
        pred, error = None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    scores = {name: float(metric(example, pred)) if error is None else 0.0 for name, metric in METRICS.items()}
    return QuestionResult(
        id=str(example.get("id", "")),
        question=example.question,
        gold_answer=example.answer,
        answer=answer_text(pred),
        references=predicted_references(pred),
        scores=scores,
        error=error,
        dropped_references=dropped_references(pred),
        category=str(example.get("category", "")),
    )
