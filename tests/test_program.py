"""bibleqa.program: the references a forward pass returns (cited, retrieved, related), and the knobs kept.

The LM is DSPy's ``DummyLM``, a FAKE that answers from a script; expected verses come from ``bibleqa.tsk``
and ``bibleqa.retrieval`` directly.
"""

from __future__ import annotations

import pickle

import dspy
import pytest
from dspy.utils.dummies import DummyLM

from bibleqa.dataset import load_dataset
from bibleqa.metrics import cross_reference_recall
from bibleqa.program import build_program
from bibleqa.related import DEFAULT_RELATED_PASSAGES
from bibleqa.retrieval import retrieve
from bibleqa.scripture import format_verse_id, verse_ids
from bibleqa.tsk import cross_references
from sweeps.pick import program_from_params
from tests.test_related import documented_order

QUESTION = "Who built the ark?"
FAKE_ANSWER = {"answer": "Noah", "references": "Genesis 6:14; Hebrews 11:7; Genesis 6:14"}
CITED = ["Genesis 6:14", "Hebrews 11:7"]


def run_with_fake_lm(program: dspy.Module, answers: list[dict[str, str]], questions: list[str]) -> list:
    with dspy.context(lm=DummyLM(answers)):
        return [program(question=question) for question in questions]


def todays_references(retrieval_k: int) -> list[str]:
    """What the program returned before the related-passages step: cited, then retrieved, each once."""
    retrieved = [passage.reference for passage in retrieve(QUESTION, retrieval_k)]
    return list(dict.fromkeys([*CITED, *retrieved]))


def test_related_passages_follow_the_cited_and_retrieved_verses():
    (pred,) = run_with_fake_lm(build_program(retrieval_k=2, related_passages=6), [FAKE_ANSWER], [QUESTION])
    base = todays_references(2)
    own = {verse for reference in base for verse in verse_ids(reference)}
    neighbours = {target for verse in own for target in cross_references(verse)} - own

    assert pred.answer == "Noah"
    assert pred.references[: len(base)] == base
    related = pred.references[len(base) :]
    assert len(related) == 6 and len(set(related)) == 6
    assert {verse_ids(reference)[0] for reference in related} <= neighbours
    assert related == [format_verse_id(verse) for verse in documented_order(base, f"{QUESTION} Noah")[:6]]


def test_related_passages_zero_is_the_program_without_the_step():
    (pred,) = run_with_fake_lm(build_program(retrieval_k=3, related_passages=0), [FAKE_ANSWER], [QUESTION])
    assert pred.references == todays_references(3)


def test_the_default_is_on():
    assert build_program().related_passages == DEFAULT_RELATED_PASSAGES > 0
    with pytest.raises(ValueError, match="related_passages must be >= 0"):
        build_program(related_passages=-1)


def test_a_saved_and_loaded_program_keeps_the_knob(tmp_path):
    program = build_program(retrieval_k=2, related_passages=7)
    program.answer_question.demos = [dspy.Example(question=QUESTION, passages="", **FAKE_ANSWER)]

    assert pickle.loads(pickle.dumps(program)).related_passages == 7  # Ray, and the MLflow model

    program.save(str(tmp_path / "whole"), save_program=True)
    assert dspy.load(str(tmp_path / "whole"), allow_pickle=True).related_passages == 7

    # The JSON state holds the demos; the knob comes from the run's params, as `pick --ask` rebuilds it.
    program.save(str(tmp_path / "program.json"))
    rebuilt = program_from_params({"retrieval_k": "2", "chain_of_thought": "False", "related_passages": "7"})
    rebuilt.load(str(tmp_path / "program.json"))
    assert (rebuilt.retrieval_k, rebuilt.related_passages) == (2, 7)
    assert len(rebuilt.answer_question.demos) == 1
    # A run logged before the knob existed was scored without the step.
    assert program_from_params({"retrieval_k": "2"}).related_passages == 0


def test_recall_with_the_true_cited_verses_is_earned_from_the_tsk():
    items = load_dataset().train[:8]
    answers = [{"answer": item.answer, "references": "; ".join(item.references)} for item in items]
    questions = [item.question for item in items]
    with_step = run_with_fake_lm(build_program(related_passages=DEFAULT_RELATED_PASSAGES), answers, questions)
    without = run_with_fake_lm(build_program(related_passages=0), answers, questions)

    recalls = []
    for item, pred, plain in zip(items, with_step, without, strict=True):
        own = {verse for reference in item.references for verse in verse_ids(reference)}
        gold = {verse for reference in item.cross_references for verse in verse_ids(reference)}
        reachable = gold & {target for verse in own for target in cross_references(verse)}
        added = {verse for reference in pred.references[len(plain.references) :] for verse in verse_ids(reference)}
        program_verses = {verse for reference in plain.references for verse in verse_ids(reference)}
        assert pred.references[: len(plain.references)] == plain.references
        assert added <= {target for verse in program_verses for target in cross_references(verse)} - program_verses
        assert gold & added <= reachable  # what the step earns, it earns through the TSK
        recalls.append(cross_reference_recall(item.to_example(), pred))
        assert recalls[-1] >= cross_reference_recall(item.to_example(), plain)
    assert sum(recalls) / len(recalls) > 0


def test_cited_references_that_name_no_verse_are_counted_and_reach_question_scores():
    from bibleqa.evaluate import evaluate

    answer = {"answer": "Noah", "references": "Genesis 6:14; Genesis 6:99; Noah 1:1; Hb 11:7"}
    program = build_program(retrieval_k=0, related_passages=0)
    (pred,) = run_with_fake_lm(program, [answer], [QUESTION])
    assert pred.references == ["Genesis 6:14", "Hebrews 11:7"]  # "Hb" is Hebrews; 6:99 and "Noah" name nothing
    assert pred.dropped_references == 2
    example = load_dataset().examples("train", 1)
    with dspy.context(lm=DummyLM([answer])):
        evaluation = evaluate(program, example)
    assert evaluation.dropped_references == 2
    assert evaluation.question_rows()[0]["dropped_references"] == 2
