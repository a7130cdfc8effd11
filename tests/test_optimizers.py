"""bibleqa.optimizers: names and aliases, and each optimizer family compiling for real.

MIPROv2 runs against a scripted OpenAI-compatible FAKE (its instruction proposer needs an instruct model,
which the bundled base model is not)."""

from __future__ import annotations

import pytest

from bibleqa.dataset import load_dataset
from bibleqa.errors import UserError
from bibleqa.lm import LMSettings, build_adapter, build_lm
from bibleqa.metrics import BootstrapMetric
from bibleqa.optimizers import canonical_optimizer, compile_program, demo_budget, optimizer_params
from bibleqa.program import build_program
from tests.fakes import EVERY_FIELD_ANSWER, chat_body

DATA = load_dataset()


def test_class_names_and_the_seeds_aliases():
    assert canonical_optimizer("bootstrap") == "BootstrapFewShot"
    assert canonical_optimizer("BootstrapFewShotWithRandomSearch") == "BootstrapFewShotWithRandomSearch"
    assert canonical_optimizer("mipro") == "MIPROv2"
    with pytest.raises(UserError, match="optimizer 'sgd' is unknown"):
        canonical_optimizer("sgd")


def test_parameters_belong_to_their_optimizer():
    assert optimizer_params("LabeledFewShot", {"max_labeled_demos": 3}) == {"max_labeled_demos": 3}
    with pytest.raises(UserError, match="LabeledFewShot does not take max_rounds"):
        optimizer_params("LabeledFewShot", {"max_rounds": 2})
    assert demo_budget("BootstrapFewShot", optimizer_params("BootstrapFewShot", {})) == 4


def compile_against(fake_url: str, optimizer: str, params: dict) -> tuple:
    import dspy

    settings = LMSettings(lm_base=fake_url, lm_model="fake-model", model_format="chat", retries=0)
    lm = build_lm(settings)
    trainset, valset = DATA.examples("train", 6), DATA.examples("train")[6:10]
    with dspy.context(lm=lm, adapter=build_adapter("chat")):
        compiled = compile_program(
            build_program(retrieval_k=1),
            optimizer,
            optimizer_params(optimizer, params),
            trainset=trainset,
            valset=valset,
            metric=BootstrapMetric("accuracy", 1.0),
            seed=3,
        )
    return compiled, lm


def test_mipro_v2_compiles_against_a_scripted_fake(fake_lm_server):
    fake = fake_lm_server([(200, chat_body(EVERY_FIELD_ANSWER))])
    compiled, _ = compile_against(
        fake.base_url, "MIPROv2",
        {"auto": None, "num_candidates": 2, "num_trials": 2, "max_bootstrapped_demos": 1, "max_labeled_demos": 1},
    )  # fmt: skip
    predictor = compiled.answer_question
    assert predictor.signature.instructions  # the proposer's instruction (or the original) is in place
    assert len(fake.requests) > 10  # bootstrapping, proposing and the minibatch trials all called the LM
    assert all(request["path"] == "/v1/chat/completions" for request in fake.requests)
    assert all("response_format" not in request["body"] for request in fake.requests)  # LM Studio rejects it


@pytest.mark.parametrize(
    ("optimizer", "params"),
    [
        ("LabeledFewShot", {"max_labeled_demos": 2}),
        ("BootstrapFewShot", {"max_bootstrapped_demos": 1, "max_labeled_demos": 1}),
        ("BootstrapFewShotWithRandomSearch", {"max_bootstrapped_demos": 1, "max_labeled_demos": 0,
                                              "num_candidate_programs": 1}),
    ],
)  # fmt: skip
def test_each_family_compiles_demos_from_train(fake_lm_server, optimizer, params):
    fake = fake_lm_server([(200, chat_body(EVERY_FIELD_ANSWER))])
    compiled, lm = compile_against(fake.base_url, optimizer, params)
    demos = compiled.answer_question.demos
    assert len(demos) <= demo_budget(optimizer, optimizer_params(optimizer, params))
    if optimizer == "BootstrapFewShotWithRandomSearch":
        # Every candidate (zero-shot, labeled-only, bootstrapped) is scored on the 4 valset examples.
        assert len(lm.history) >= 4 * 4  # (identical prompts come from DSPy's cache, not the server)
    else:
        assert demos
    train_questions = {example.question for example in DATA.examples("train")}
    assert all(demo["question"] in train_questions for demo in demos)  # never dev or test
