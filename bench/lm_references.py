"""Record what the bundled LM answers and cites on train questions: the input of the related-passages step.

    PYTHONPATH=. .venv/bin/python bench/lm_references.py --out bench/lm_references_train.jsonl --limit 160
    PYTHONPATH=. .venv/bin/python bench/related_passages.py --lm-references bench/lm_references_train.jsonl

Compiles as the default ``bibleqa train --lm local`` does (``TrainConfig()``: BootstrapFewShot on the first
16 train examples, the next 16 as its valset), with ``related_passages=0``, then runs the compiled program
on the ``--limit`` train questions after those 32 and writes one JSON line per question: ``id``,
``answer`` and ``references`` (the LM-cited references, then the retrieved verses: exactly what the
related-passages step expands).  Train only: the ranking rule is tuned on it, never on dev or test.
The committed ``bench/lm_references_train.jsonl`` came from this command (161 s on 2 cores, llama.cpp
with the bundled Gemma 3 270M, DSPy's cache on); a rebuilt llama.cpp may answer a little differently.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import dspy

from bibleqa.dataset import load_dataset
from bibleqa.dspy_lm import build_adapter, build_lm
from bibleqa.evaluate import evaluate
from bibleqa.lm import LMSettings, health_check
from bibleqa.local_lm import local_lm_server
from bibleqa.metrics import BootstrapMetric
from bibleqa.optimizers import compile_program
from bibleqa.program import build_program
from bibleqa.train import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=120, help="train questions to run (after the 32 compiled on)")
    args = parser.parse_args()
    started = time.perf_counter()
    config = replace(TrainConfig(), related_passages=0)
    dataset = load_dataset()
    train = dataset.examples("train")
    trainset = train[: config.train_size]
    valset = train[config.train_size : config.train_size + config.valset_size]
    questions = train[config.train_size + config.valset_size :][: args.limit]
    with local_lm_server() as server:
        settings = health_check(LMSettings(lm_base=server.base_url, lm_model=server.model, model_format="completion"))
        with dspy.context(lm=build_lm(settings), adapter=build_adapter(settings.model_format)):
            compiled = compile_program(
                build_program(config.retrieval_k, config.chain_of_thought, config.related_passages),
                config.optimizer,
                config.optimizer_params(),
                trainset=trainset,
                valset=valset,
                metric=BootstrapMetric(config.bootstrap_metric, config.bootstrap_threshold),
                seed=config.seed,
            )
            evaluation = evaluate(compiled, questions)
    with args.out.open("w", encoding="utf-8") as handle:
        for result in evaluation.results:
            record = {"id": result.id, "answer": result.answer, "references": result.references, "error": result.error}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"{len(evaluation.results)} train questions ({evaluation.n_errors} errors) -> {args.out}, "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
