"""bibleqa.lm: the health check (against FAKE servers and a closed port) and the token cap against the
real bundled server."""

from __future__ import annotations

import contextlib
import time

import dspy
import pytest

from bibleqa.dspy_lm import build_adapter, build_lm, lm_context
from bibleqa.errors import LMUnavailableError, UserError
from bibleqa.lm import LMSettings, health_check
from bibleqa.local_lm import free_port
from tests.fakes import chat_body


def test_unreachable_server_fails_in_seconds_with_one_line():
    base = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    with pytest.raises(LMUnavailableError) as raised:
        health_check(LMSettings(lm_base=base))
    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert message == f"LM Studio is not reachable at {base}: start its local server, or pass --lm local"
    assert "\n" not in message


def test_a_model_that_is_not_loaded_lists_the_served_models(fake_lm_server):
    fake = fake_lm_server([(200, {})], models=["qwen2.5-7b-instruct", "mistral-nemo-instruct-2407"])
    with pytest.raises(LMUnavailableError, match=r"it serves: qwen2\.5-7b-instruct, mistral-nemo-instruct-2407"):
        health_check(LMSettings(lm_base=fake.base_url, lm_model="llama-3-8b"))


def test_no_model_named_means_the_first_served_model(fake_lm_server):
    fake = fake_lm_server([(200, {})], models=["first-model", "second-model"])
    assert health_check(LMSettings(lm_base=fake.base_url)).lm_model == "first-model"


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError, match="model_format 'json'"):
        LMSettings(model_format="json")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="not an http"):
        LMSettings(lm_base="localhost:1234")


@pytest.mark.lm
@pytest.mark.parametrize("model_format", ["chat", "completion"])
def test_the_token_cap_holds_against_the_real_server(local_lm, model_format):
    # DSPy's openai/ route sends max_completion_tokens, which llama.cpp ignores (4,082 tokens for a cap of 20).
    settings = health_check(LMSettings(lm_base=local_lm.base_url, model_format=model_format, max_tokens=8, cache=False))
    lm = build_lm(settings)
    signature = dspy.Signature("question -> story", "Tell a very long story about the question.")
    # A story cut at 8 tokens may not parse; the cap is what is tested.
    with dspy.context(lm=lm, adapter=build_adapter(model_format)), contextlib.suppress(Exception):
        dspy.Predict(signature)(question="Who built the ark?")
    usage = lm.history[-1]["usage"]
    assert 0 < usage["completion_tokens"] <= 8


def test_the_key_goes_out_as_the_authorization_header_in_chat_and_health_check(fake_lm_server, monkeypatch):
    monkeypatch.setenv("LM_STUDIO_API_KEY", "sk-planted-chat")
    fake = fake_lm_server([(200, chat_body("[[ ## answer ## ]]\nNoah\n\n[[ ## completed ## ]]"))])
    settings = health_check(LMSettings(lm_base=fake.base_url, model_format="chat", cache=False))
    with lm_context(settings):
        dspy.Predict("question -> answer")(question="Who built the ark?")
    assert [headers["authorization"] for headers in fake.model_requests] == ["Bearer sk-planted-chat"]
    [request] = fake.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer sk-planted-chat"


def test_without_a_key_the_default_is_sent(fake_lm_server, monkeypatch):
    monkeypatch.delenv("LM_STUDIO_API_KEY", raising=False)
    fake = fake_lm_server([(200, {})])
    health_check(LMSettings(lm_base=fake.base_url))
    assert fake.model_requests[0]["authorization"] == "Bearer lm-studio"


def test_a_server_with_no_model_is_named(fake_lm_server):
    fake = fake_lm_server([(200, {})], models=[])
    with pytest.raises(LMUnavailableError, match="has no model loaded"):
        health_check(LMSettings(lm_base=fake.base_url))
