"""bibleqa.samples: ``sample_predictions.json`` covers every category, right and wrong answers, with each
question's scores.  Expected values come from the bundled dev split and the metrics called here, never from
the sampling code."""

from __future__ import annotations

import json
from collections import Counter

import dspy
import pytest

from bibleqa.dataset import load_dataset
from bibleqa.evaluate import evaluate
from bibleqa.metrics import METRICS
from bibleqa.samples import SAMPLE_SIZE, sample_predictions
from bibleqa.train import write_artifacts

DEV = load_dataset().examples("dev")
BY_QUESTION = {example.question: example for example in DEV}


class RightOnFactualOnly:
    """A stand-in program that flatters itself on the first questions: the gold answer and references for a
    factual question, a wrong answer for a doctrinal one (the issue's winner: 0.00 on doctrinal)."""

    def __call__(self, question: str) -> dspy.Prediction:
        example = BY_QUESTION[question]
        if example.category == "factual":
            return dspy.Prediction(answer=example.answer, references=list(example.references))
        return dspy.Prediction(answer="Moses wrote it down.", references=["Exodus 1:1"])


class SometimesRight:
    """A stand-in program right on every third question of each category, wrong on the others."""

    def __call__(self, question: str) -> dspy.Prediction:
        example = BY_QUESTION[question]
        same_kind = [other.question for other in DEV if other.category == example.category]
        if same_kind.index(question) % 3 == 0:
            return dspy.Prediction(answer=example.answer, references=list(example.references))
        return dspy.Prediction(answer="I cannot say.", references=[])


def right(example, answer: str) -> bool:
    """Whether ``answer`` is right by the accuracy metric itself."""
    return METRICS["accuracy"](example, dspy.Prediction(answer=answer, references=[])) == 1.0


@pytest.mark.parametrize("program", [RightOnFactualOnly(), SometimesRight()], ids=type)
def test_the_sample_covers_every_category_and_both_outcomes_with_their_scores(program, tmp_path):
    evaluation = evaluate(program, DEV)
    write_artifacts(tmp_path, dspy.Predict("question -> answer"), evaluation)
    samples = json.loads((tmp_path / "sample_predictions.json").read_text(encoding="utf-8"))

    questions = samples["questions"]
    assert len(questions) == SAMPLE_SIZE == len(set(questions))
    examples = [BY_QUESTION[question] for question in questions]
    assert samples["ground_truth"] == [example.answer for example in examples]
    assert samples["categories"] == [example.category for example in examples]
    assert samples["ids"] == [example.id for example in examples]
    assert set(samples["categories"]) == {example.category for example in DEV} == {"factual", "doctrinal"}

    # Each prediction is what the program answers, and its scores are the metrics' own on it.
    for example, prediction, scores in zip(examples, samples["predictions"], samples["scores"], strict=True):
        pred = program(question=example.question)
        assert prediction == pred.answer
        assert scores == {name: metric(example, pred) for name, metric in METRICS.items()}

    # Right and wrong answers both appear, and in every category that has both.
    outcomes = {(example.category, right(example, prediction))
                for example, prediction in zip(examples, samples["predictions"], strict=True)}  # fmt: skip
    in_data = {(example.category, right(example, program(question=example.question).answer)) for example in DEV}
    assert outcomes == in_data and {True, False} <= {is_right for _, is_right in outcomes}
    assert samples["outcomes"] == [
        "right" if right(example, prediction) else "wrong"
        for example, prediction in zip(examples, samples["predictions"], strict=True)
    ]

    # It says how it sampled: the size of every group in the data, and how many came from each.
    population = Counter(f"{category}/{'right' if is_right else 'wrong'}"
                         for category, is_right in ((e.category, right(e, program(question=e.question).answer))
                                                    for e in DEV))  # fmt: skip
    assert {name: count for name, count in samples["sampling"]["population"].items() if count} == dict(population)
    assert sum(samples["sampling"]["sampled"].values()) == SAMPLE_SIZE
    assert "stratified" in samples["sampling"]["method"]


def test_the_first_dev_questions_alone_would_have_flattered_the_run():
    # What the old sample took: the first ten dev questions, all factual, so all right for this program.
    assert {example.category for example in DEV[:SAMPLE_SIZE]} == {"factual"}
    samples = sample_predictions(evaluate(RightOnFactualOnly(), DEV).results)
    assert samples["outcomes"].count("wrong") == samples["categories"].count("doctrinal") >= SAMPLE_SIZE // 2 - 1


def test_fewer_questions_than_the_sample_are_all_shown():
    evaluation = evaluate(SometimesRight(), DEV[:4])
    samples = sample_predictions(evaluation.results)
    assert sorted(samples["questions"]) == sorted(example.question for example in DEV[:4])
    assert sample_predictions(evaluation.results, seed=1)["questions"] == samples["questions"]  # grouped, in order
