"""Dev-set figures of the bundled model at 0, 2 and 4 demos, with and without retrieval.

    .venv/bin/python bench/demos_and_retrieval.py

Starts the bundled LM once, then compiles with LabeledFewShot (so the demo count is exact) on the first 16
train examples and scores the whole dev split for each setting.  Prints one table row per setting.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")

from bibleqa.dataset import load_dataset
from bibleqa.lm import LMSettings, build_adapter, build_lm, health_check
from bibleqa.local_lm import local_lm_server
from bibleqa.metrics import TRACKED_METRICS
from bibleqa.train import TrainConfig, compile_and_evaluate


def main() -> None:
    dataset = load_dataset()
    header = ["demos", "retrieval_k", *TRACKED_METRICS, "n_errors", "lm_calls", "seconds"]
    print(" | ".join(header))
    with local_lm_server() as server:
        settings = health_check(LMSettings(lm_base=server.base_url, model_format="completion", cache=False))
        for retrieval_k in (0, 3):
            for demos in (0, 2, 4):
                config = TrainConfig(optimizer="LabeledFewShot", train_size=16, max_labeled_demos=demos,
                                     retrieval_k=retrieval_k)  # fmt: skip
                started = time.perf_counter()
                lm = build_lm(settings)
                _, evaluation, figures = compile_and_evaluate(config, dataset, lm, build_adapter("completion"))
                row = [demos, retrieval_k, *(f"{evaluation.metrics[m]:.3f}" for m in TRACKED_METRICS),
                       evaluation.n_errors, figures["lm_calls"], f"{time.perf_counter() - started:.0f}"]  # fmt: skip
                print(" | ".join(str(cell) for cell in row), flush=True)


if __name__ == "__main__":
    main()
