"""The Bible QA program: BM25-retrieve ``retrieval_k`` KJV verses, answer, add related passages, return
``answer`` and ``references``.

``references`` are, in this order and without duplicates, each in canonical form ("Romans 5:8"):

1. the valid references the LM cited;
2. the retrieved verses it did not cite;
3. up to ``related_passages`` TSK neighbours of those verses, ranked by the rule in ``bibleqa.related``
   (``related_passages=0`` turns this step off).

The order matters: ``cross_reference_recall`` counts only the first 20 verses.  With ``chain_of_thought``
the predictor also writes a ``reasoning`` field first; the metrics never read it.

The program holds no LM: callers pick one with ``dspy.context(lm=..., adapter=...)`` (see ``bibleqa.lm``).
Its learnable state (demos, instructions) saves as DSPy JSON with ``program.save("program.json")`` and
loads back with ``build_program(...).load("program.json")``; the knobs (``retrieval_k``,
``chain_of_thought``, ``related_passages``) are constructor arguments, not state: rebuild with the run's
params (as ``bibleqa-sweep pick`` does).  A pickled program (``save_program=True``, the MLflow model)
keeps them.

Example::

    >>> from bibleqa.program import build_program
    >>> program = build_program(retrieval_k=3, chain_of_thought=False, related_passages=15)
    >>> program.retrieval_k, program.related_passages
    (3, 15)
"""

from __future__ import annotations

import logging

import dspy
from pythonbible import format_single_reference

from bibleqa.knobs import KNOB_DEFAULTS
from bibleqa.related import related_references
from bibleqa.retrieval import Passage, retrieve
from bibleqa.scripture import read_references

logger = logging.getLogger(__name__)


class AnswerBibleQuestion(dspy.Signature):
    """Answer each Bible question in a few words and cite the verses that support the answer."""

    passages: str = dspy.InputField(desc="KJV verses that may help, one per line; may be empty")
    question: str = dspy.InputField()
    answer: str = dspy.OutputField(desc="a short answer: a name, a number or one short sentence")
    references: str = dspy.OutputField(desc="Bible references separated by ';', e.g. 'John 3:16; Romans 5:8'")


class BibleQA(dspy.Module):
    """Retrieve, answer, add related passages.  ``forward(question)`` returns
    ``dspy.Prediction(answer, references)``."""

    def __init__(
        self,
        retrieval_k: int = KNOB_DEFAULTS["retrieval_k"],
        chain_of_thought: bool = KNOB_DEFAULTS["chain_of_thought"],
        related_passages: int = KNOB_DEFAULTS["related_passages"],
    ):
        super().__init__()
        if retrieval_k < 0:
            raise ValueError(f"retrieval_k must be >= 0, but got {retrieval_k=}")
        if related_passages < 0:
            raise ValueError(f"related_passages must be >= 0, but got {related_passages=}")
        self.retrieval_k = retrieval_k
        self.chain_of_thought = chain_of_thought
        self.related_passages = related_passages
        predictor = dspy.ChainOfThought if chain_of_thought else dspy.Predict
        self.answer_question = predictor(AnswerBibleQuestion)

    def forward(self, question: str) -> dspy.Prediction:
        passages = retrieve(question, self.retrieval_k)
        result = self.answer_question(question=question, passages=format_passages(passages))
        cited, dropped = cited_references(result.references or "")
        retrieved = [passage.reference for passage in passages]
        answer = (result.answer or "").strip()
        references = program_references(cited, retrieved, f"{question} {answer}", self.related_passages)
        return dspy.Prediction(
            answer=answer,
            references=references,
            dropped_references=dropped,
            reasoning=getattr(result, "reasoning", None),
        )


def build_program(
    retrieval_k: int = KNOB_DEFAULTS["retrieval_k"],
    chain_of_thought: bool = KNOB_DEFAULTS["chain_of_thought"],
    related_passages: int = KNOB_DEFAULTS["related_passages"],
) -> BibleQA:
    """A fresh, uncompiled program."""
    return BibleQA(retrieval_k=retrieval_k, chain_of_thought=chain_of_thought, related_passages=related_passages)


def program_references(cited: list[str], retrieved: list[str], query: str, related_passages: int) -> list[str]:
    """The program's ``references``: ``cited``, then ``retrieved``, then up to ``related_passages`` related
    passages of theirs for ``query`` (the question and the answer), each once.

    >>> program_references(["Genesis 6:14"], ["Genesis 6:14", "Genesis 7:1"], "Who built the ark? Noah", 2)
    ['Genesis 6:14', 'Genesis 7:1', '1 Peter 3:20', 'Genesis 7:13']
    """
    references = list(dict.fromkeys([*cited, *retrieved]))
    return references + related_references(references, query, related_passages)


def format_passages(passages: list[Passage]) -> str:
    """Passages as the ``passages`` input: ``"John 11:35: Jesus wept."``, one per line."""
    return "\n".join(f"{passage.reference}: {passage.text}" for passage in passages)


def canonical_references(text: str) -> list[str]:
    """The real references in free text (LM output), in canonical form; anything else is dropped."""
    return cited_references(text)[0]


def cited_references(text: str) -> tuple[list[str], int]:
    """The real references in free text (LM output), in canonical form, and how many parts named no KJV
    verse and were dropped (``"John 3:16; John 3:99"`` -> ``(["John 3:16"], 1)``)."""
    if isinstance(text, (list, tuple)):
        text = "; ".join(str(entry) for entry in text)
    reading = read_references(str(text))
    return [format_single_reference(reference) for reference in reading.references], reading.dropped
