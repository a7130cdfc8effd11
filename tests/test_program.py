"""bibleqa.program: the references a forward pass returns (cited, retrieved, related), the prompt it sends,
and the knobs and state it keeps.

The LM is DSPy's ``DummyLM`` or a scripted server (``fake_lm_server``), both FAKES that answer from a script;
expected verses come from ``bibleqa.tsk`` and ``bibleqa.retrieval`` directly.
"""

from __future__ import annotations

import pickle

import dspy
import pytest
from dspy.utils.dummies import DummyLM

from bibleqa.dataset import load_dataset
from bibleqa.dspy_lm import lm_context
from bibleqa.lm import LMSettings
from bibleqa.metrics import cross_reference_recall
from bibleqa.program import build_program, canonical_references, format_passages
from bibleqa.related import DEFAULT_RELATED_PASSAGES
from bibleqa.retrieval import Passage, retrieve
from bibleqa.scripture import format_verse_id, verse_ids
from bibleqa.tsk import cross_references
from sweeps.pick import program_from_params
from tests.fakes import completion_body, prompt_of
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


def settings_for(fake) -> LMSettings:
    return LMSettings(lm_base=fake.base_url, lm_model="fake-model", model_format="completion", cache=False)


def test_cited_references_come_first_then_the_retrieved_ones_once(fake_lm_server):
    question = "Who built the ark of gopher wood?"
    retrieved = [passage.reference for passage in retrieve(question, 2)]
    assert retrieved[0] == "Genesis 6:14"
    # The FAKE cites a retrieved verse in short form, a verse of its own, and something that is no verse.
    fake = fake_lm_server([(200, completion_body(" Noah \nReferences: Gen 6:14; Heb 11:7; Hezekiah 3:1"))])
    with lm_context(settings_for(fake)):
        prediction = build_program(retrieval_k=2, related_passages=0)(question=question)
    assert prediction.answer == "Noah"
    assert prediction.references == ["Genesis 6:14", "Hebrews 11:7", *retrieved[1:]]


def test_the_prompt_holds_the_retrieved_verses_and_none_without_retrieval(fake_lm_server):
    question = "What did God create in the beginning?"
    fake = fake_lm_server([(200, completion_body(" The heaven and the earth"))])
    with lm_context(settings_for(fake)):
        build_program(retrieval_k=3, related_passages=0)(question=question)
        without = build_program(retrieval_k=0, related_passages=0)(question=question)
    with_passages, no_passages = (prompt_of(request) for request in fake.requests)
    for passage in retrieve(question, 3):
        assert f"{passage.reference}: {passage.text}" in with_passages
    assert "Passages:" in with_passages and "Passages:" not in no_passages
    assert with_passages.endswith(f"Question: {question}\nAnswer:")
    assert without.references == []  # nothing cited, nothing retrieved


def test_a_missing_answer_is_an_empty_string(fake_lm_server):
    fake = fake_lm_server([(200, completion_body("\nReferences: John 3:16"))])
    with lm_context(settings_for(fake)):
        prediction = build_program(retrieval_k=0, related_passages=0)(question="Who?")
    assert prediction.answer == "" and prediction.references == ["John 3:16"]


def test_canonical_references_keep_real_verses_only():
    assert canonical_references("Jn 3:16; Rom 5:8 and 1 Cor 13:4") == ["John 3:16", "Romans 5:8", "1 Corinthians 13:4"]
    assert canonical_references(["Genesis 1:1", "nowhere 9:9"]) == ["Genesis 1:1"]
    assert canonical_references("no reference here") == []


def test_passages_render_one_per_line():
    passages = [Passage(1, "John 11:35", "Jesus wept.", 2.0), Passage(2, "Genesis 1:1", "In the beginning.", 1.0)]
    assert format_passages(passages) == "John 11:35: Jesus wept.\nGenesis 1:1: In the beginning."
    assert format_passages([]) == ""


def test_settings_and_state():
    with pytest.raises(ValueError, match="retrieval_k must be >= 0"):
        build_program(retrieval_k=-1)
    assert isinstance(build_program(chain_of_thought=True).answer_question, dspy.ChainOfThought)
    assert isinstance(build_program().answer_question, dspy.Predict)


def test_demos_survive_a_save_and_load(tmp_path):
    program = build_program(retrieval_k=1)
    demo = dspy.Example(question="Who built the ark?", passages="", answer="Noah", references="Genesis 6:14")
    program.answer_question.demos = [demo]
    program.save(str(tmp_path / "program.json"))
    loaded = build_program(retrieval_k=1)
    loaded.load(str(tmp_path / "program.json"))
    [restored] = loaded.answer_question.demos
    assert (restored["question"], restored["answer"], restored["references"]) == (
        "Who built the ark?",
        "Noah",
        "Genesis 6:14",
    )
