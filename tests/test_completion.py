"""bibleqa.completion: the few-shot document format and the engine that sends it as written.

The engine tests run against a FAKE scripted OpenAI-compatible server (``fake_lm_server``)."""

from __future__ import annotations

import pickle

import dspy
import pytest
from dspy.utils.exceptions import AdapterParseError

from bibleqa.completion import STOP_SEQUENCES, CompletionAdapter
from bibleqa.dspy_lm import build_lm
from bibleqa.engines import CompletionEngine
from bibleqa.lm import LMSettings
from bibleqa.program import AnswerBibleQuestion
from tests.fakes import completion_body

DEMO = {"question": "Who built the ark?", "passages": "", "answer": "Noah", "references": ["Genesis 6:14"]}


def test_format_is_a_few_shot_document_ending_at_the_first_output_field():
    [message] = CompletionAdapter().format(
        AnswerBibleQuestion, [DEMO], {"question": "In what town was Jesus born?", "passages": ""}
    )
    assert message["role"] == "user"
    assert message["content"].endswith("Question: In what town was Jesus born?\nAnswer:")
    assert "Question: Who built the ark?\nAnswer: Noah\nReferences: Genesis 6:14" in message["content"]
    assert "Passages:" not in message["content"]  # empty inputs are left out
    assert "BEGIN RESPONSE" not in message["content"]


def test_format_skips_demos_without_outputs_and_shows_passages():
    [message] = CompletionAdapter().format(
        AnswerBibleQuestion, [{"question": "unanswered"}], {"question": "Q?", "passages": "John 11:35: Jesus wept."}
    )
    assert "unanswered" not in message["content"]
    assert "Passages: John 11:35: Jesus wept.\nQuestion: Q?\nAnswer:" in message["content"]


def test_parse_reads_the_continuation_into_fields():
    parsed = CompletionAdapter().parse(AnswerBibleQuestion, " Bethlehem\nReferences: Micah 5:2; Luke 2:4")
    assert parsed == {"answer": "Bethlehem", "references": "Micah 5:2; Luke 2:4"}


def test_parse_tolerates_missing_references_but_not_a_missing_answer():
    assert CompletionAdapter().parse(AnswerBibleQuestion, " Noah") == {"answer": "Noah", "references": ""}
    cot = dspy.ChainOfThought(AnswerBibleQuestion).predict.signature
    with pytest.raises(AdapterParseError):
        CompletionAdapter().parse(cot, " Let me think about the ark.")


def test_engine_sends_the_prompt_exactly_with_cap_and_stops(fake_lm_server):
    fake = fake_lm_server([(200, completion_body(" Noah\nReferences: Genesis 6:14"))])
    lm = build_lm(LMSettings(lm_base=fake.base_url, lm_model="fake-model", model_format="completion", max_tokens=17))
    with dspy.context(lm=lm, adapter=CompletionAdapter()):
        result = dspy.Predict(AnswerBibleQuestion)(question="Who built the ark?", passages="")
    assert result.answer == "Noah"
    [request] = fake.requests
    assert request["path"] == "/v1/completions"
    body = request["body"]
    assert body["prompt"].endswith("Question: Who built the ark?\nAnswer:")
    assert body["max_tokens"] == 17
    assert body["stop"] == list(STOP_SEQUENCES)
    assert lm.history[-1]["usage"]["completion_tokens"] == 3


def test_a_failed_call_is_never_cached(fake_lm_server):
    fake = fake_lm_server([(500, {"error": "boom"}), (200, completion_body(" Noah"))])
    settings = LMSettings(lm_base=fake.base_url, lm_model="fake-model", model_format="completion", retries=0)
    predict = dspy.Predict(AnswerBibleQuestion)
    with dspy.context(lm=build_lm(settings), adapter=CompletionAdapter()):
        with pytest.raises(Exception, match="500"):
            predict(question="Who built the ark?", passages="")
        assert predict(question="Who built the ark?", passages="").answer == "Noah"
        assert predict(question="Who built the ark?", passages="").answer == "Noah"  # now from the cache
    assert len(fake.requests) == 2


def test_transient_errors_are_retried(fake_lm_server):
    fake = fake_lm_server([(503, {"error": "busy"}), (200, completion_body(" Noah"))])
    settings = LMSettings(lm_base=fake.base_url, lm_model="fake-model", model_format="completion", retries=2)
    with dspy.context(lm=build_lm(settings), adapter=CompletionAdapter()):
        assert dspy.Predict(AnswerBibleQuestion)(question="Who built the ark?", passages="").answer == "Noah"
    assert len(fake.requests) == 2


def test_the_key_is_read_at_call_time_sent_as_bearer_and_never_kept(fake_lm_server, monkeypatch):
    fake = fake_lm_server([(200, completion_body(" Noah"))])
    monkeypatch.setenv("LM_STUDIO_API_KEY", "sk-planted-first")
    engine = CompletionEngine(fake.base_url, "fake-model")
    lm = build_lm(LMSettings(lm_base=fake.base_url, lm_model="fake-model", model_format="completion", cache=False))
    with dspy.context(lm=lm, adapter=CompletionAdapter()):
        dspy.Predict(AnswerBibleQuestion)(question="Who built the ark?", passages="")
        monkeypatch.setenv("LM_STUDIO_API_KEY", "sk-planted-second")  # a key changed after the LM was built
        dspy.Predict(AnswerBibleQuestion)(question="Who built the tower?", passages="")
    assert [request["headers"]["authorization"] for request in fake.requests] == [
        "Bearer sk-planted-first",
        "Bearer sk-planted-second",
    ]
    for saved in (repr(engine.dump_state()), pickle.dumps(engine), pickle.dumps(lm.kwargs), repr(lm.dump_state())):
        assert "sk-planted" not in str(saved)
    assert CompletionEngine.load_state(engine.dump_state()).base_url == fake.base_url
