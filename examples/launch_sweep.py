"""Launch a sweep from a script: the bundled LM, a search space built in code, and what the result holds.

    .venv/bin/python examples/launch_sweep.py                # 6 trials on the bundled data (about 10 minutes)
    .venv/bin/python examples/launch_sweep.py --smoke-test   # 2 trials on a 12-question subset (CI: 2-3 minutes)

It starts the bundled llama.cpp server (the ``local-lm`` extra), runs the sweep into a local MLflow store,
checks every field of the result it relies on, asks the winner a question, and stops the server.  Exit code
0 means every check held.  For LM Studio, use ``sweeps.lm_studio(model=...)`` in place of
``sweeps.bundled_lm()``.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import tempfile
from pathlib import Path

import mlflow

import sweeps
from bibleqa.dataset import write_subset
from bibleqa.dspy_lm import lm_context
from bibleqa.metrics import TRACKED_METRICS

SPACE = {
    "name": "example",
    "objective": {"metric": "theological_match_score", "mode": "max"},
    "seed": 7,
    "optimizers": {  # each optimizer's parameters exist only when it is chosen
        "LabeledFewShot": {"max_labeled_demos": {"int": [1, 3]}},
        "BootstrapFewShot": {"max_bootstrapped_demos": 1, "max_labeled_demos": 1},
    },
    "train_size": {"choice": [4, 8]},  # small: bootstrapping calls the LM once per train example
    "retrieval_k": 1,
    "model_format": "completion",  # the bundled model is a base model
}


def check(condition: bool, what: str) -> None:
    if not condition:
        sys.exit(f"launch_sweep.py: check failed: {what}")


def check_result(result: sweeps.SweepResult, trials: int) -> None:
    """The fields a script relies on, checked against the sweep folder and each other."""
    check(result.n_trials == trials and result.n_failed == 0, f"{trials} finished trials, got {result.n_trials}")
    check(bool(result.parent_run_id) and bool(result.best_run_id), "a parent run and a winner")
    check(result.best_config["optimizer"] in SPACE["optimizers"], "the winner's optimizer is one of the space's")
    check(set(TRACKED_METRICS) <= set(result.best_metrics), "best_metrics holds the plain metric names")
    check(all(0.0 <= result.best_metrics[name] <= 1.0 for name in TRACKED_METRICS), "metrics in [0, 1]")
    check(isinstance(result.pick_is_clear, bool), "pick_is_clear is a bool")
    frame = result.trials_dataframe()
    with open(Path(result.sweep_dir) / "trials.csv", newline="", encoding="utf-8") as handle:
        columns = next(csv.reader(handle))
    check(list(frame.columns) == columns and len(frame) == trials, "trials_dataframe() is trials.csv's table")
    lead = ["rank", SPACE["objective"]["metric"], "trial_id", "run_id", "run_name", "status", "attempts", "seconds"]
    check(columns[:8] == lead and columns[-1] == "error", "the rank and the objective first, the error last")
    check(frame.iloc[0]["run_id"] == result.best_run_id and frame.iloc[0]["rank"] == 1, "ranked: the winner first")
    check(set(result.best_config) | set(TRACKED_METRICS) <= set(columns), "a column per param and metric")
    children = mlflow.MlflowClient(result.tracking_uri).search_runs(
        [result.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'"
    )
    check(set(frame["run_id"]) == {run.info.run_id for run in children}, "one row per child run in MLflow")
    winner = frame[frame["run_id"] == result.best_run_id].iloc[0]
    check(math.isclose(winner["theological_match_score"], result.best_metrics["theological_match_score"]),
          "the winner's row holds its metrics")  # fmt: skip
    check((Path(result.sweep_dir) / "space.yaml").read_text().startswith("name: example"), "space.yaml written")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-test", action="store_true", help="2 trials on a 12-question subset")
    parser.add_argument("--storage", default=None, help="where the sweep folder goes (default: a temp folder)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: one in the storage folder)")
    args = parser.parse_args()
    storage = Path(args.storage or tempfile.mkdtemp(prefix="bibleqa-example-"))
    storage.mkdir(parents=True, exist_ok=True)
    tracking_uri = args.tracking_uri or f"sqlite:///{storage / 'mlflow.db'}"
    trials = 2 if args.smoke_test else 6
    data = str(write_subset(storage / "subset.jsonl", train=8, dev=3, test=1)) if args.smoke_test else None

    with sweeps.bundled_lm() as lm:  # starts and stops the bundled llama.cpp server
        result = sweeps.run_sweep(
            SPACE, lm=lm, trials=trials, data=data, tracking_uri=tracking_uri, storage=str(storage), echo=print
        )
        check_result(result, trials)
        program = result.load_winner()
        with lm_context(lm):
            answer = program(question="Who built the ark?")
    check(isinstance(answer.answer, str) and isinstance(answer.references, list), "the winner answers")

    print(f"winner: run {result.best_run_id} ({result.best_config['optimizer']}), "
          f"theological_match_score {result.best_metrics['theological_match_score']:.3f}, "
          f"pick is {'clear' if result.pick_is_clear else 'not clear'}")  # fmt: skip
    print(f"parent run {result.parent_run_id} in {result.tracking_uri}; folder {result.sweep_dir}")
    print(f"Q: Who built the ark?  A: {answer.answer}")
    print("every check held")


if __name__ == "__main__":
    main()
