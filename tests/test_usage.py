"""bibleqa.usage: every LM call counts, whether the server or DSPy's cache answers it, copies of the LM
included; ``lm_calls - lm_cache_hits`` is what the server received.  Against a FAKE scripted server
(``fake_lm_server``), which counts the requests it receives: expected figures come from the data and the
server, never from the meter."""

from __future__ import annotations

import dspy
import pytest

from bibleqa.dataset import load_dataset
from bibleqa.dspy_lm import build_adapter, build_lm
from bibleqa.lm import LMSettings
from bibleqa.program import AnswerBibleQuestion
from bibleqa.train import TrainConfig, compile_and_evaluate
from bibleqa.usage import LMMeter, LMUsage, UsageMeter, meter_of
from tests.fakes import completion_body
from tests.helpers import small_data

ANSWER = completion_body(" Noah\nReferences: Genesis 6:14", prompt_tokens=10, completion_tokens=3)


def settings_for(fake, **overrides) -> LMSettings:
    return LMSettings(lm_base=fake.base_url, lm_model="fake-model", model_format="completion", **overrides)


def ask(lm, question: str) -> None:
    with dspy.context(lm=lm, adapter=build_adapter("completion")):
        dspy.Predict(AnswerBibleQuestion)(question=question, passages="")


def test_cached_calls_count_as_calls_and_as_cache_hits_with_their_tokens(fake_lm_server):
    fake = fake_lm_server([(200, ANSWER)])
    lm = build_lm(settings_for(fake))
    for question in ("Who built the ark?", "Who built the ark?", "Who slew Goliath?", "Who built the ark?"):
        ask(lm, question)
    assert len(fake.requests) == 2  # two distinct questions reached the server
    # Four calls, two answered by the cache; every answer carries the server's 10 + 3 tokens, cached or not.
    assert meter_of(lm).usage == LMUsage(lm_calls=4, lm_cache_hits=2, prompt_tokens=40, completion_tokens=12)


def test_the_calls_of_a_copy_count_on_the_same_meter(fake_lm_server):
    fake = fake_lm_server([(200, ANSWER)])
    lm = build_lm(settings_for(fake))
    ask(lm, "Who built the ark?")
    copy = lm.copy(rollout_id=1, temperature=1.0)  # what BootstrapFewShot does from its second round on
    assert copy.history == [] and meter_of(copy) is meter_of(lm)
    ask(copy, "Who built the ark?")  # another rollout: not the cached answer
    ask(copy, "Who built the ark?")  # now cached for this rollout
    assert len(fake.requests) == 2
    assert meter_of(lm).usage == LMUsage(lm_calls=3, lm_cache_hits=1, prompt_tokens=30, completion_tokens=9)


def test_a_failed_call_counts_as_a_call_that_reached_the_server(fake_lm_server):
    fake = fake_lm_server([(500, {"error": "the FAKE fails"}), (200, ANSWER)])
    lm = build_lm(settings_for(fake, retries=0))
    with pytest.raises(Exception, match="500"):
        ask(lm, "Who built the ark?")
    ask(lm, "Who built the ark?")  # a failed call is never cached: this one goes out again
    assert len(fake.requests) == 2
    assert meter_of(lm).usage == LMUsage(lm_calls=2, lm_cache_hits=0, prompt_tokens=10, completion_tokens=3)


def test_a_call_that_fails_before_any_request_is_a_call_and_no_cache_hit(fake_lm_server):
    fake = fake_lm_server([(200, ANSWER)])
    lm = build_lm(settings_for(fake))
    with pytest.raises(ValueError, match="n must be a positive integer"):
        lm("Who built the ark?", n=0)  # DSPy refuses it before its cache and before the engine
    assert fake.requests == []
    assert meter_of(lm).usage == LMUsage(lm_calls=1, lm_cache_hits=0, prompt_tokens=0, completion_tokens=0)


def test_a_retried_call_is_one_call_and_more_than_one_request(fake_lm_server):
    fake = fake_lm_server([(503, {"error": "busy"}), (200, ANSWER)])
    lm = build_lm(settings_for(fake, retries=1))
    ask(lm, "Who built the ark?")
    assert len(fake.requests) == 2
    assert meter_of(lm).usage == LMUsage(lm_calls=1, lm_cache_hits=0, prompt_tokens=10, completion_tokens=3)


def test_a_block_measures_only_its_own_calls(fake_lm_server):
    fake = fake_lm_server([(200, ANSWER)])
    lm = build_lm(settings_for(fake))
    ask(lm, "Who built the ark?")
    with UsageMeter(lm) as block:
        ask(lm, "Who built the ark?")
        ask(lm, "Who slew Goliath?")
    assert block.usage == LMUsage(lm_calls=2, lm_cache_hits=1, prompt_tokens=20, completion_tokens=6)
    with UsageMeter(dspy.LM("openai/unmetered")) as unmetered:  # an LM that build_lm did not build
        pass
    assert unmetered.usage == LMUsage() and meter_of(None) is None
    assert LMUsage(1, 2, 3, 4) + LMUsage(10, 20, 30, 40) - LMUsage(1, 1, 1, 1) == LMUsage(10, 21, 32, 43)
    assert LMUsage(1, 0, 7, 2).as_dict() == {"lm_calls": 1, "lm_cache_hits": 0, "prompt_tokens": 7,
                                             "completion_tokens": 2}  # fmt: skip


def test_the_meter_pickles_empty():
    import pickle

    meter = LMMeter()
    meter.on_lm_start("c", None, {})
    meter.on_lm_end("c", ["x"])
    assert pickle.loads(pickle.dumps(meter)).usage == LMUsage()


def test_bootstrap_with_two_rounds_counts_what_the_server_received(fake_lm_server, tmp_path):
    """The issue's accounting test: BootstrapFewShot with ``max_rounds: 2`` against a scripted LM whose every
    answer the metric rejects, so each train example is tried in both rounds (the second round on a copy of
    the LM).  ``lm_calls - lm_cache_hits`` is the server's own count, and ``lm_calls`` does not change when
    the same compile runs again from a warm cache."""
    fake = fake_lm_server(
        [(200, completion_body(" I do not know\nReferences:", prompt_tokens=50, completion_tokens=5))]
    )
    data = load_dataset(small_data(tmp_path, train=6, dev=4, test=1))
    config = TrainConfig(optimizer="BootstrapFewShot", train_size=6, max_bootstrapped_demos=4, max_labeled_demos=0,
                         max_rounds=2, retrieval_k=0, related_passages=0, bootstrap_metric="accuracy",
                         bootstrap_threshold=1.0)  # fmt: skip
    expected_calls = 2 * 6 + 4  # two rounds over the 6 train examples, then the 4 dev questions

    def compile_once() -> dict[str, float]:
        lm = build_lm(settings_for(fake))
        _, _, figures = compile_and_evaluate(config, data, lm, build_adapter("completion"))
        return figures

    cold = compile_once()
    assert len(fake.requests) == expected_calls
    assert cold["lm_calls"] - cold["lm_cache_hits"] == len(fake.requests)
    assert (cold["lm_calls"], cold["lm_cache_hits"]) == (expected_calls, 0)
    assert (cold["prompt_tokens"], cold["completion_tokens"]) == (50 * expected_calls, 5 * expected_calls)

    warm = compile_once()  # the same calls, every one in the cache now
    assert len(fake.requests) == expected_calls  # the server received nothing more
    assert warm["lm_calls"] - warm["lm_cache_hits"] == 0
    assert warm["lm_calls"] == cold["lm_calls"]  # the tie-break does not depend on how warm the cache is
    assert (warm["prompt_tokens"], warm["completion_tokens"]) == (cold["prompt_tokens"], cold["completion_tokens"])
