"""bibleqa.evaluate and the artifacts of a scored split: a failed question counts 0 and in ``n_errors``;
``question_scores.csv`` has one row per dev question.  Expected figures come from the data."""

from __future__ import annotations

import csv
import json

import dspy
import pytest

from bibleqa.dataset import load_dataset
from bibleqa.dspy_lm import lm_context
from bibleqa.evaluate import evaluate
from bibleqa.lm import LMSettings
from bibleqa.metrics import METRICS
from bibleqa.program import build_program
from bibleqa.train import write_artifacts
from bibleqa.usage import LMUsage
from tests.fakes import completion_body, prompt_of
from tests.helpers import small_data

DEV = load_dataset().examples("dev")[:5]


class AnswersGoldExcept:
    """A stand-in program: answers each question with its gold answer, except the one it fails on."""

    def __init__(self, failing_question: str):
        self.failing_question = failing_question

    def __call__(self, question: str) -> dspy.Prediction:
        if question == self.failing_question:
            raise ConnectionError("the LM went away\nsecond line of the error")
        gold = next(example for example in DEV if example.question == question)
        return dspy.Prediction(answer=gold.answer, references=list(gold.cross_references))


def test_a_failed_question_scores_zero_and_counts_as_an_error():
    failing = DEV[2]
    evaluation = evaluate(AnswersGoldExcept(failing.question), DEV)
    assert evaluation.n_errors == 1
    failed = evaluation.results[2]
    assert failed.error == "ConnectionError: the LM went away"  # one line
    assert set(failed.scores.values()) == {0.0} and set(failed.scores) == set(METRICS)
    assert failed.answer == "" and failed.references == []
    for result, example in zip(evaluation.results, DEV, strict=True):
        assert result.id == example.id and result.gold_answer == example.answer
    # Four gold answers (accuracy 1 each) and one failure, over five questions.
    assert evaluation.metrics["accuracy"] == pytest.approx(4 / 5)
    # Returning the curated cross references recalls all of them.
    assert evaluation.metrics["cross_reference_recall"] == pytest.approx(4 / 5)


def test_no_failure_no_error_and_means_over_every_question():
    evaluation = evaluate(AnswersGoldExcept("no such question"), DEV)
    assert evaluation.n_errors == 0 and all(result.error is None for result in evaluation.results)
    assert evaluation.metrics["accuracy"] == 1.0
    for name in METRICS:
        mean = sum(result.scores[name] for result in evaluation.results) / len(DEV)
        assert evaluation.metrics[name] == pytest.approx(mean)
    assert evaluate(AnswersGoldExcept(""), []).metrics["accuracy"] == 0.0


def test_threads_keep_the_questions_in_order():
    one = evaluate(AnswersGoldExcept(DEV[0].question), DEV)
    three = evaluate(AnswersGoldExcept(DEV[0].question), DEV, num_threads=3)
    assert [r.id for r in three.results] == [r.id for r in one.results]
    assert three.metrics == one.metrics and three.n_errors == one.n_errors == 1


def test_question_scores_csv_has_one_row_per_dev_question(fake_lm_server, tmp_path):
    dev = load_dataset(small_data(tmp_path, train=2, dev=6, test=1)).examples("dev")
    failing = dev[4].question
    gold = {example.question: example.answer for example in dev}

    def answer(request):
        asked = prompt_of(request).rsplit("Question: ", 1)[1].removesuffix("\nAnswer:")
        if asked == failing:
            return 500, {"error": "the FAKE fails this one"}
        return 200, completion_body(f" {gold[asked]}\nReferences: John 3:16")

    fake = fake_lm_server([], answer=answer)
    settings = LMSettings(lm_base=fake.base_url, lm_model="fake-model", model_format="completion", retries=0)
    program = build_program(retrieval_k=0, related_passages=0)
    with lm_context(settings):
        evaluation = evaluate(program, dev)
    # Every call counts, the failed one too (it went to the server); its tokens do not (none were reported).
    assert len(fake.requests) == len(dev)
    assert evaluation.usage == LMUsage(
        lm_calls=len(dev), lm_cache_hits=0, prompt_tokens=10 * (len(dev) - 1), completion_tokens=3 * (len(dev) - 1)
    )
    paths = write_artifacts(tmp_path, program, evaluation)
    assert sorted(path.name for path in paths) == ["program.json", "question_scores.csv", "sample_predictions.json"]

    with (tmp_path / "question_scores.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows] == [example.id for example in dev]
    assert [row["gold_answer"] for row in rows] == [example.answer for example in dev]
    assert set(METRICS) <= set(rows[0])
    for row, example in zip(rows, dev, strict=True):
        if example.question == failing:
            assert "500" in row["error"] and row["answer"] == ""
            assert all(float(row[name]) == 0.0 for name in METRICS)
        else:
            assert row["error"] == "" and row["answer"] == example.answer and float(row["accuracy"]) == 1.0
            assert row["references"] == "John 3:16"

    assert [row["category"] for row in rows] == [example.category for example in dev]

    # Six questions, fewer than a sample: all of them, the five right ones first, then the failed one.
    samples = json.loads((tmp_path / "sample_predictions.json").read_text())
    right = [example for example in dev if example.question != failing]
    assert samples["questions"] == [example.question for example in right] + [failing]
    assert samples["ground_truth"] == [example.answer for example in right] + [dev[4].answer]
    assert samples["predictions"] == [example.answer for example in right] + [""]
    assert samples["outcomes"] == ["right"] * 5 + ["wrong"]
