"""bibleqa.optimizers: names and aliases, and each optimizer family compiling against a FAKE LM.

Every family compiles against a scripted OpenAI-compatible FAKE (``fake_lm_server``), never the real LM:
the FAKE answers a question with its gold answer from the data when the prompt has what the test says it
should reward (demos, or the proposed instruction), and "I do not know" otherwise, so that what the
optimizer keeps is decided by our metric, and the tests know from the data what it must keep.  (The real
bundled LM compiles BootstrapFewShot in ``test_sweep.py``; MIPROv2's proposer needs an instruct model,
which the bundled base model is not.)"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from bibleqa.dataset import load_dataset
from bibleqa.dspy_lm import build_adapter, build_lm
from bibleqa.errors import UserError
from bibleqa.lm import LMSettings
from bibleqa.metrics import BootstrapMetric
from bibleqa.optimizers import OPTIMIZER_PARAMS, canonical_optimizer, compile_program, demo_budget, optimizer_params
from bibleqa.program import AnswerBibleQuestion, build_program
from tests.fakes import PROPOSED_INSTRUCTION, chat_body, every_field_answer

DATA = load_dataset()
TRAIN = DATA.examples("train")
TRAINSET, VALSET = TRAIN[:6], TRAIN[6:10]
GOLD = {example.question: example.answer for example in TRAIN}
WRONG = "I do not know"


def test_class_names_and_the_seeds_aliases():
    assert canonical_optimizer("bootstrap") == "BootstrapFewShot"
    assert canonical_optimizer("BootstrapFewShotWithRandomSearch") == "BootstrapFewShotWithRandomSearch"
    assert canonical_optimizer("random_search") == "BootstrapFewShotWithRandomSearch"
    assert canonical_optimizer("mipro") == "MIPROv2" and canonical_optimizer("MiproV2") == "MIPROv2"
    assert canonical_optimizer("labeled") == "LabeledFewShot"
    with pytest.raises(UserError, match="optimizer 'sgd' is unknown; use one of LabeledFewShot, BootstrapFewShot"):
        canonical_optimizer("sgd")


def test_parameters_belong_to_their_optimizer():
    assert optimizer_params("LabeledFewShot", {"max_labeled_demos": 3}) == {"max_labeled_demos": 3}
    assert optimizer_params("BootstrapFewShot", {"max_rounds": 2}) == {
        "max_bootstrapped_demos": 2,
        "max_labeled_demos": 2,
        "max_rounds": 2,
    }
    with pytest.raises(UserError, match="LabeledFewShot does not take max_rounds; it takes max_labeled_demos"):
        optimizer_params("LabeledFewShot", {"max_rounds": 2})


def test_the_demo_budget_is_what_the_parameters_allow():
    # DSPy's bootstrapping fills up to max_labeled_demos in all; bootstrapped demos may exceed it.
    assert demo_budget("LabeledFewShot", {"max_labeled_demos": 3}) == 3
    assert demo_budget("BootstrapFewShot", {"max_bootstrapped_demos": 2, "max_labeled_demos": 5}) == 5
    assert demo_budget("MIPROv2", {"max_bootstrapped_demos": 3, "max_labeled_demos": 0}) == 3


def question_of(request: dict[str, Any]) -> str:
    """The question in the last user message of a chat request (DSPy's ChatAdapter layout)."""
    user = [message["content"] for message in request["body"]["messages"] if message["role"] == "user"][-1]
    match = re.search(r"\[\[ ## question ## \]\]\n(.+?)(?:\n\n|$)", user, re.S)
    return match.group(1).strip() if match else ""


def has_demos(request: dict[str, Any]) -> bool:
    """DSPy's ChatAdapter sends demos as user/assistant pairs before the question."""
    return any(message["role"] == "assistant" for message in request["body"]["messages"])


def has_proposed_instruction(request: dict[str, Any]) -> bool:
    return PROPOSED_INSTRUCTION in request["body"]["messages"][0]["content"]


def gold_when(rewarded: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], tuple[int, dict]]:
    """A FAKE's answer: the gold answer of the asked question when ``rewarded(request)``, else a wrong one."""

    def answer(request: dict[str, Any]) -> tuple[int, dict]:
        gold = GOLD.get(question_of(request))
        return 200, chat_body(every_field_answer(gold if gold and rewarded(request) else WRONG))

    return answer


def compile_against(fake_url: str, optimizer: str, params: dict) -> tuple:
    import dspy

    settings = LMSettings(lm_base=fake_url, lm_model="fake-model", model_format="chat", retries=0)
    lm = build_lm(settings)
    with dspy.context(lm=lm, adapter=build_adapter("chat")):
        compiled = compile_program(
            build_program(retrieval_k=1),
            optimizer,
            params,
            trainset=TRAINSET,
            valset=VALSET,
            metric=BootstrapMetric("accuracy", 1.0),
            seed=3,
        )
    return compiled, lm


def assert_demos_are_train_items(demos: list) -> None:
    """Demos come from the trainset only (never the valset, dev or test), with the gold answer."""
    trainset = {example.question: example.answer for example in TRAINSET}
    for demo in demos:
        assert demo["question"] in trainset
        assert demo["answer"] == trainset[demo["question"]]


def test_labeled_few_shot_keeps_exactly_k_train_items(fake_lm_server):
    fake = fake_lm_server([(200, chat_body(every_field_answer(WRONG)))])
    compiled, _ = compile_against(fake.base_url, "LabeledFewShot", {"max_labeled_demos": 2})
    demos = compiled.answer_question.demos
    assert len(demos) == 2
    assert_demos_are_train_items(demos)
    assert fake.requests == []  # labeling calls no LM
    none, _ = compile_against(fake.base_url, "LabeledFewShot", {"max_labeled_demos": 0})
    assert none.answer_question.demos == []


def test_bootstrap_keeps_one_bootstrapped_demo_and_fills_up_with_labeled_ones(fake_lm_server):
    fake = fake_lm_server([], answer=gold_when(lambda request: True))
    compiled, _ = compile_against(
        fake.base_url, "BootstrapFewShot", {"max_bootstrapped_demos": 1, "max_labeled_demos": 3}
    )
    demos = compiled.answer_question.demos
    bootstrapped = [demo for demo in demos if demo.get("augmented")]
    assert len(bootstrapped) == 1 and len(demos) == 3  # max_labeled_demos caps all demos
    assert_demos_are_train_items(demos)  # the bootstrapped answer is the FAKE's: the gold one
    assert {question_of(request) for request in fake.requests} <= set(GOLD)


def test_bootstrap_keeps_no_demo_the_metric_rejects(fake_lm_server):
    fake = fake_lm_server([], answer=gold_when(lambda request: False))
    compiled, _ = compile_against(
        fake.base_url, "BootstrapFewShot", {"max_bootstrapped_demos": 2, "max_labeled_demos": 0}
    )
    assert compiled.answer_question.demos == []  # every answer was wrong: accuracy 1.0 kept none
    assert len(fake.requests) == len(TRAINSET)  # one try per train item, one round


def test_random_search_keeps_a_candidate_with_demos_scored_on_the_valset(fake_lm_server):
    # The FAKE is right only when the prompt has demos: a zero-shot candidate scores 0 on the valset.
    fake = fake_lm_server([], answer=gold_when(has_demos))
    params = {"max_bootstrapped_demos": 1, "max_labeled_demos": 1, "num_candidate_programs": 1}
    compiled, lm = compile_against(fake.base_url, "BootstrapFewShotWithRandomSearch", params)
    demos = compiled.answer_question.demos
    assert len(demos) == 1  # the budget, max(1, 1): a zero-shot candidate scored 0
    assert_demos_are_train_items(demos)
    valset_questions = {example.question for example in VALSET}
    scored = [entry for entry in lm.history if _asked(entry) in valset_questions]
    # Four candidates (zero-shot, labeled only, unshuffled and one shuffled bootstrap), 4 valset items each.
    assert len(scored) >= 4 * 4


def _asked(entry: dict) -> str:
    return question_of({"body": {"messages": entry["messages"]}})


def test_mipro_v2_keeps_the_instruction_that_scores(fake_lm_server):
    # The FAKE answers right only under the instruction it proposed itself.
    fake = fake_lm_server([], answer=gold_when(has_proposed_instruction))
    params = {"auto": None, "num_candidates": 2, "num_trials": 4, "max_bootstrapped_demos": 1, "max_labeled_demos": 1}
    compiled, _ = compile_against(fake.base_url, "MIPROv2", params)
    predictor = compiled.answer_question
    assert AnswerBibleQuestion.instructions != PROPOSED_INSTRUCTION
    assert predictor.signature.instructions == PROPOSED_INSTRUCTION
    assert_demos_are_train_items([demo for demo in predictor.demos if not demo.get("augmented")])
    assert all(request["path"] == "/v1/chat/completions" for request in fake.requests)
    assert all("response_format" not in request["body"] for request in fake.requests)  # LM Studio rejects it


def test_the_four_families():
    assert set(OPTIMIZER_PARAMS) == {
        "LabeledFewShot",
        "BootstrapFewShot",
        "BootstrapFewShotWithRandomSearch",
        "MIPROv2",
    }
