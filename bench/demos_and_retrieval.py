"""Dev-set figures of the bundled model at 0, 2 and 4 demos, with and without retrieval, with and without
related passages.

    .venv/bin/python bench/demos_and_retrieval.py

Starts the bundled LM once, then compiles with LabeledFewShot (so the demo count is exact) on the first 16
train examples and scores the whole dev split for each setting.  Prints one table row per setting.

Each setting calls the LM once per question, with ``related_passages=0``; the row with the default
``related_passages`` re-scores those same answers with the related-passages step applied
(``bibleqa.program.program_references``).  That is exactly what the program computes, because the step
runs after the LM and changes only ``references``; so the two rows share ``lm_calls`` and ``seconds``.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")

import dspy

from bibleqa.dataset import load_dataset
from bibleqa.dspy_lm import build_adapter, build_lm
from bibleqa.evaluate import Evaluation
from bibleqa.lm import LMSettings, health_check
from bibleqa.local_lm import local_lm_server
from bibleqa.metrics import METRICS, TRACKED_METRICS
from bibleqa.program import program_references
from bibleqa.related import DEFAULT_RELATED_PASSAGES
from bibleqa.train import TrainConfig, compile_and_evaluate


def with_related_passages(evaluation: Evaluation, examples: list, related_passages: int) -> dict[str, float]:
    """The split's metrics once each answer's references get ``related_passages`` related passages."""
    totals = dict.fromkeys(METRICS, 0.0)
    for result, example in zip(evaluation.results, examples, strict=True):
        if result.error is not None:
            continue  # a failed question scores 0 either way
        references = program_references(result.references, [], f"{result.question} {result.answer}", related_passages)
        pred = dspy.Prediction(answer=result.answer, references=references)
        for name, metric in METRICS.items():
            totals[name] += metric(example, pred)
    return {name: total / max(len(examples), 1) for name, total in totals.items()}


def main() -> None:
    dataset = load_dataset()
    dev = dataset.examples("dev")
    header = ["demos", "retrieval_k", "related_passages", *TRACKED_METRICS, "n_errors", "lm_calls", "seconds"]
    print(" | ".join(header))
    with local_lm_server() as server:
        settings = health_check(LMSettings(lm_base=server.base_url, model_format="completion", cache=False))
        for retrieval_k in (0, 3):
            for demos in (0, 2, 4):
                config = TrainConfig(optimizer="LabeledFewShot", train_size=16, max_labeled_demos=demos,
                                     retrieval_k=retrieval_k, related_passages=0)  # fmt: skip
                started = time.perf_counter()
                lm = build_lm(settings)
                _, evaluation, figures = compile_and_evaluate(config, dataset, lm, build_adapter("completion"))
                seconds = f"{time.perf_counter() - started:.0f}"
                for related_passages in (0, DEFAULT_RELATED_PASSAGES):
                    metrics = with_related_passages(evaluation, dev, related_passages)
                    if related_passages == 0:  # the re-scoring reproduces the evaluation itself
                        assert all(abs(metrics[m] - evaluation.metrics[m]) < 1e-9 for m in METRICS), metrics
                    row = [demos, retrieval_k, related_passages, *(f"{metrics[m]:.3f}" for m in TRACKED_METRICS),
                           evaluation.n_errors, figures["lm_calls"], seconds]  # fmt: skip
                    print(" | ".join(str(cell) for cell in row), flush=True)


if __name__ == "__main__":
    main()
