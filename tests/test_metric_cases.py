"""The metric contract, held by a case file: tests/cases/metric_cases.yaml (every case must score as
written) and the accuracy calibration cases for sentence golds (tests/cases/calibration.yaml, written from
train items and used to set the thresholds; tests/cases/held_out.yaml, from dev items, never used for
tuning).  The calibration test prints the false-positive and false-negative rates:

    .venv/bin/python -m pytest tests/test_metric_cases.py -s -k rates
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import dspy
import pytest
import yaml

from bibleqa.dataset import load_dataset
from bibleqa.metrics import METRICS, accuracy

CASES_DIR = Path(__file__).parent / "cases"
DATA = {item.id: item for item in load_dataset().items}
FIELDS = ("question", "answer", "aliases", "references", "key_terms", "concepts", "cross_references")

CASE_FILE = yaml.safe_load((CASES_DIR / "metric_cases.yaml").read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = CASE_FILE["cases"]


def example_of(item: str | dict[str, Any]) -> Any:
    """A train item of the data set by id, or an inline gold, as the ``dspy.Example`` the metrics see."""
    if isinstance(item, str):
        assert DATA[item].split == "train", f"{item}: cases are written from train items only"
        return DATA[item].to_example()
    return dspy.Example(**{name: item.get(name, []) for name in FIELDS}).with_inputs("question")


def prediction_of(case: dict[str, Any]) -> Any:
    return dspy.Prediction(answer=case["answer"], references=case.get("references", []))


def case_id(case: dict[str, Any]) -> str:
    item = case["item"] if isinstance(case["item"], str) else case["item"]["answer"][:12]
    return f"{item}:{case['kind']}:{case['answer'][:40]}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_case(case):
    example, prediction = example_of(case["item"]), prediction_of(case)
    scores = {name: METRICS[name](example, prediction) for name in case["expect"]}
    assert scores == pytest.approx({name: float(value) for name, value in case["expect"].items()}, abs=1e-3)


def test_the_case_file_covers_the_contract():
    kinds = Counter(case["kind"] for case in CASES)
    assert len(CASES) >= 80
    for kind in ("paraphrase", "kjv", "multipart", "hedge", "negation", "number", "stuffing", "echo", "empty",
                 "reference", "spam", "swapped_agents", "other_verse"):  # fmt: skip
        assert kinds[kind] >= 1, kind
    named = Counter(name for case in CASES for name in case["expect"])
    for name in ("accuracy", "theological_match_score", "key_term_accuracy", "cross_reference_recall"):
        assert named[name] >= 5, name


def test_every_right_answer_outranks_every_wrong_one():
    # Per item and metric: the cases expected right (accuracy 1) score above the ones expected wrong.
    groups: dict[tuple[str, str], dict[bool, list[float]]] = defaultdict(lambda: {True: [], False: []})
    for case in CASES:
        if "accuracy" not in case["expect"]:
            continue
        key = case["item"] if isinstance(case["item"], str) else case["item"]["answer"]
        example, prediction = example_of(case["item"]), prediction_of(case)
        for name in ("accuracy", "theological_match_score", "key_term_accuracy"):
            groups[key, name][bool(case["expect"]["accuracy"])].append(METRICS[name](example, prediction))
    for (item, name), scores in groups.items():
        if scores[True] and scores[False]:
            assert min(scores[True]) > max(scores[False]), (item, name, scores)


def calibration_cases(name: str) -> list[dict[str, Any]]:
    path = CASES_DIR / name
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rates(cases: list[dict[str, Any]]) -> tuple[float, float, list[str]]:
    """(false-positive rate over the near misses, false-negative rate over the paraphrases, the misses)."""
    wrong_said_right, right_said_wrong, misses = 0, 0, []
    for case in cases:
        example = DATA[case["item"]].to_example()
        said = accuracy(example, dspy.Prediction(answer=case["answer"])) == 1.0
        if said != case["right"]:
            misses.append(f"{'FP' if said else 'FN'} {case['item']} {case['kind']}: {case['answer']}")
            wrong_said_right += said
            right_said_wrong += not said
    near_misses = sum(not case["right"] for case in cases)
    paraphrases = sum(case["right"] for case in cases)
    return wrong_said_right / near_misses, right_said_wrong / paraphrases, misses


@pytest.mark.parametrize(
    ("file", "split", "most_false_negatives"),
    # The false-negative bounds hold today's figures (49 % on the blind, heavily reworded calibration
    # paraphrases; 18 % held out), so a change that loses paraphrases fails here; false positives stay <= 5 %.
    [("calibration.yaml", "train", 0.55), ("held_out.yaml", "dev", 0.30)],
)
def test_calibration_rates(file, split, most_false_negatives):
    cases = calibration_cases(file)
    assert all(DATA[case["item"]].split == split for case in cases)
    assert sum(case["right"] for case in cases) >= (30 if split == "train" else 20)
    assert sum(not case["right"] for case in cases) >= (30 if split == "train" else 20)
    false_positive, false_negative, misses = rates(cases)
    print(f"\n{file} ({split}): false positives {false_positive:.1%}, false negatives {false_negative:.1%}")
    print("\n".join(misses))
    assert false_positive <= 0.05
    assert false_negative <= most_false_negatives
