"""The Bible QA program: BM25-retrieve ``retrieval_k`` KJV verses, answer, return ``answer`` and ``references``.

``references`` are the valid references the LM cited, followed by the retrieved verses it did not cite,
each in canonical form ("Romans 5:8").  With ``chain_of_thought`` the predictor also writes a
``reasoning`` field first; the metrics never read it.

The program holds no LM: callers pick one with ``dspy.context(lm=..., adapter=...)`` (see ``bibleqa.lm``).
Its learnable state (demos, instructions) saves as DSPy JSON with ``program.save("program.json")`` and
loads back with ``build_program(...).load("program.json")``.

Example::

    >>> from bibleqa.program import build_program
    >>> program = build_program(retrieval_k=3, chain_of_thought=False)
    >>> program.retrieval_k
    3
"""

from __future__ import annotations

import logging

import dspy
from pythonbible import format_single_reference

from bibleqa.retrieval import Passage, retrieve
from bibleqa.scripture import parse_references

logger = logging.getLogger(__name__)


class AnswerBibleQuestion(dspy.Signature):
    """Answer each Bible question in a few words and cite the verses that support the answer."""

    passages: str = dspy.InputField(desc="KJV verses that may help, one per line; may be empty")
    question: str = dspy.InputField()
    answer: str = dspy.OutputField(desc="a short answer: a name, a number or one short sentence")
    references: str = dspy.OutputField(desc="Bible references separated by ';', e.g. 'John 3:16; Romans 5:8'")


class BibleQA(dspy.Module):
    """Retrieve, then answer.  ``forward(question)`` returns ``dspy.Prediction(answer, references)``."""

    def __init__(self, retrieval_k: int = 3, chain_of_thought: bool = False):
        super().__init__()
        if retrieval_k < 0:
            raise ValueError(f"retrieval_k must be >= 0, but got {retrieval_k=}")
        self.retrieval_k = retrieval_k
        self.chain_of_thought = chain_of_thought
        predictor = dspy.ChainOfThought if chain_of_thought else dspy.Predict
        self.answer_question = predictor(AnswerBibleQuestion)

    def forward(self, question: str) -> dspy.Prediction:
        passages = retrieve(question, self.retrieval_k)
        result = self.answer_question(question=question, passages=format_passages(passages))
        cited = canonical_references(result.references or "")
        retrieved = [passage.reference for passage in passages]
        references = list(dict.fromkeys([*cited, *retrieved]))
        answer = (result.answer or "").strip()
        return dspy.Prediction(answer=answer, references=references, reasoning=getattr(result, "reasoning", None))


def build_program(retrieval_k: int = 3, chain_of_thought: bool = False) -> BibleQA:
    """A fresh, uncompiled program."""
    return BibleQA(retrieval_k=retrieval_k, chain_of_thought=chain_of_thought)


def format_passages(passages: list[Passage]) -> str:
    """Passages as the ``passages`` input: ``"John 11:35: Jesus wept."``, one per line."""
    return "\n".join(f"{passage.reference}: {passage.text}" for passage in passages)


def canonical_references(text: str) -> list[str]:
    """The real references in free text (LM output), in canonical form; anything else is dropped."""
    if isinstance(text, (list, tuple)):
        text = "; ".join(str(entry) for entry in text)
    return [format_single_reference(reference) for reference in parse_references(str(text), strict=False)]
