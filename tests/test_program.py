"""bibleqa.program: retrieve, answer through the configured LM, and return canonical references.

The LM is a FAKE scripted server (``fake_lm_server``) that records each prompt, in the completion format."""

from __future__ import annotations

import dspy
import pytest

from bibleqa.lm import LMSettings, lm_context
from bibleqa.program import build_program, canonical_references, format_passages
from bibleqa.retrieval import Passage, retrieve
from tests.fakes import completion_body, prompt_of


def settings_for(fake) -> LMSettings:
    return LMSettings(lm_base=fake.base_url, lm_model="fake-model", model_format="completion", cache=False)


def test_cited_references_come_first_then_the_retrieved_ones_once(fake_lm_server):
    question = "Who built the ark of gopher wood?"
    retrieved = [passage.reference for passage in retrieve(question, 2)]
    assert retrieved[0] == "Genesis 6:14"
    # The FAKE cites a retrieved verse in short form, a verse of its own, and something that is no verse.
    fake = fake_lm_server([(200, completion_body(" Noah \nReferences: Gen 6:14; Heb 11:7; Hezekiah 3:1"))])
    with lm_context(settings_for(fake)):
        prediction = build_program(retrieval_k=2)(question=question)
    assert prediction.answer == "Noah"
    assert prediction.references == ["Genesis 6:14", "Hebrews 11:7", *retrieved[1:]]


def test_the_prompt_holds_the_retrieved_verses_and_none_without_retrieval(fake_lm_server):
    question = "What did God create in the beginning?"
    fake = fake_lm_server([(200, completion_body(" The heaven and the earth"))])
    with lm_context(settings_for(fake)):
        build_program(retrieval_k=3)(question=question)
        without = build_program(retrieval_k=0)(question=question)
    with_passages, no_passages = (prompt_of(request) for request in fake.requests)
    for passage in retrieve(question, 3):
        assert f"{passage.reference}: {passage.text}" in with_passages
    assert "Passages:" in with_passages and "Passages:" not in no_passages
    assert with_passages.endswith(f"Question: {question}\nAnswer:")
    assert without.references == []  # nothing cited, nothing retrieved


def test_a_missing_answer_is_an_empty_string(fake_lm_server):
    fake = fake_lm_server([(200, completion_body("\nReferences: John 3:16"))])
    with lm_context(settings_for(fake)):
        prediction = build_program(retrieval_k=0)(question="Who?")
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
