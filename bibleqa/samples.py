"""``sample_predictions.json``: a few dev questions a person can read, drawn so that they do not flatter the run.

Every training run and sweep trial writes it (``bibleqa.train.write_artifacts``).  It keeps the seed's keys,
``questions``, ``predictions`` and ``ground_truth`` (parallel lists), and adds, in the same order, ``ids``,
``categories``, ``outcomes`` (``right`` when the question's ``accuracy`` is 1, else ``wrong``; a question
whose program call failed is wrong) and ``scores`` (the question's score on every metric, as
``question_scores.csv`` has it).  ``sampling`` says how the questions were drawn:

* the scored questions are grouped by category and outcome (``factual/right``, ``factual/wrong``,
  ``doctrinal/right``, ...);
* the groups take turns, one question at a time, until ``SAMPLE_SIZE`` are drawn or none is left; within a
  group the order is random (seeded), so every non-empty group is shown and no group fills the sample;
* ``population`` gives each group's size over all scored questions and ``sampled`` how many were drawn from
  it: the sample's shares are not the run's, and these counts say what the run's are.

Before this, the first ten dev questions were taken: all factual, mostly right, for a run that scored 0 on
the doctrinal ones.

Example::

    >>> from bibleqa.evaluate import QuestionResult
    >>> from bibleqa.samples import sample_predictions
    >>> right = QuestionResult("f1", "Who built the ark?", "Noah", "Noah", [], {"accuracy": 1.0}, category="factual")
    >>> wrong = QuestionResult("d1", "Why?", "Grace.", "No idea", [], {"accuracy": 0.0}, category="doctrinal")
    >>> samples = sample_predictions([right, wrong])
    >>> samples["questions"], samples["outcomes"]
    (['Why?', 'Who built the ark?'], ['wrong', 'right'])
    >>> samples["sampling"]["population"]
    {'doctrinal/right': 0, 'doctrinal/wrong': 1, 'factual/right': 1, 'factual/wrong': 0}
"""

from __future__ import annotations

import random
from typing import Any

from bibleqa.evaluate import QuestionResult

SAMPLE_SIZE = 10
"""Questions in ``sample_predictions.json``: enough to show every category both right and wrong."""
OUTCOMES = ("right", "wrong")


def outcome(result: QuestionResult) -> str:
    """``right`` when the question's ``accuracy`` is 1 (and its call did not fail), else ``wrong``."""
    return "right" if result.error is None and result.scores.get("accuracy", 0.0) >= 1.0 else "wrong"


def sample_predictions(results: list[QuestionResult], limit: int = SAMPLE_SIZE, seed: int = 0) -> dict[str, Any]:
    """The content of ``sample_predictions.json`` for ``results`` (see the module docstring): up to ``limit``
    questions drawn in turn from each (category, outcome) group, at random within a group (``seed``), listed
    group by group."""
    categories = sorted({result.category for result in results})
    groups = {f"{category}/{kind}": [] for category in categories for kind in OUTCOMES}
    for index, result in enumerate(results):
        groups[f"{result.category}/{outcome(result)}"].append(index)
    rng = random.Random(seed)
    queues = {name: rng.sample(members, len(members)) for name, members in groups.items()}
    drawn: dict[str, list[int]] = {name: [] for name in groups}
    while sum(map(len, drawn.values())) < limit and any(queues.values()):
        for name, queue in queues.items():
            if queue and sum(map(len, drawn.values())) < limit:
                drawn[name].append(queue.pop(0))
    chosen = [results[index] for name in groups for index in sorted(drawn[name])]
    return {
        "questions": [result.question for result in chosen],
        "predictions": [result.answer for result in chosen],
        "ground_truth": [result.gold_answer for result in chosen],
        "ids": [result.id for result in chosen],
        "categories": [result.category for result in chosen],
        "outcomes": [outcome(result) for result in chosen],
        "scores": [dict(result.scores) for result in chosen],
        "sampling": {
            "method": (
                f"stratified by category and outcome: the groups take turns until {limit} questions are drawn, "
                f"at random within a group (seed {seed}); right means accuracy 1, a failed call is wrong"
            ),
            "seed": seed,
            "population": {name: len(members) for name, members in groups.items()},
            "sampled": {name: len(indices) for name, indices in drawn.items()},
        },
    }
