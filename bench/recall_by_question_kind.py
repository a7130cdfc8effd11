"""cross_reference_recall of one ``bibleqa train`` run, split into questions that name a verse and those that
don't: on dev from the run's ``question_scores.csv``, and (``--test``) on test with the bundled LM.

    .venv/bin/bibleqa train --lm local --tracking-uri sqlite:///bench.db                 # prints RUN_ID
    PYTHONPATH=. .venv/bin/python bench/recall_by_question_kind.py RUN_ID --tracking-uri sqlite:///bench.db --test

A question names a verse when it matches ``\\d+:\\d+`` ("What does Romans 5:8 say ...").  For test, the
program is rebuilt from the run's params and ``program.json`` (as ``bibleqa-sweep pick`` does) and scored
with ``bibleqa.evaluate.evaluate`` on the bundled LM (started here; an LM run: a few minutes).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")

import dspy
import mlflow

from bibleqa.dataset import load_dataset
from bibleqa.dspy_lm import build_adapter, build_lm
from bibleqa.evaluate import evaluate
from bibleqa.lm import LMSettings, health_check
from bibleqa.local_lm import local_lm_server
from sweeps.pick import program_from_params

NAMES_A_VERSE = re.compile(r"\d+:\d+")


def by_kind(rows: Iterable[tuple[str, float, float]]) -> str:
    """``(question, recall, precision)`` rows as one line: all, names a verse, no verse."""
    rows = list(rows)
    parts = []
    for label, keep in (("all", lambda q: True), ("names a verse", NAMES_A_VERSE.search),
                        ("no verse", lambda q: not NAMES_A_VERSE.search(q))):  # fmt: skip
        chosen = [row for row in rows if keep(row[0])]
        recall = sum(row[1] for row in chosen) / max(1, len(chosen))
        parts.append(f"{label} {recall:.3f} (n={len(chosen)})")
    precision = sum(row[2] for row in rows) / max(1, len(rows))
    return "cross_reference_recall: " + ", ".join(parts) + f"; cross_reference_precision {precision:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_id")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--test", action="store_true", help="also score the compiled program on test (LM run)")
    args = parser.parse_args()
    client = mlflow.MlflowClient(args.tracking_uri)
    params = client.get_run(args.run_id).data.params
    print(f"run {args.run_id}: related_passages {params.get('related_passages')}, retrieval_k {params['retrieval_k']}")
    with tempfile.TemporaryDirectory(prefix="bibleqa-bench-") as scratch:
        scores = mlflow.artifacts.download_artifacts(
            run_id=args.run_id, artifact_path="question_scores.csv", dst_path=scratch, tracking_uri=args.tracking_uri
        )
        with open(scores, encoding="utf-8") as handle:
            rows = [(row["question"], float(row["cross_reference_recall"]), float(row["cross_reference_precision"]))
                    for row in csv.DictReader(handle)]  # fmt: skip
        print(f"dev  {by_kind(rows)}")
        if not args.test:
            return
        state = mlflow.artifacts.download_artifacts(
            run_id=args.run_id, artifact_path="program.json", dst_path=scratch, tracking_uri=args.tracking_uri
        )
        program = program_from_params(params)
        program.load(str(Path(state)))
    started = time.perf_counter()
    with local_lm_server() as server:
        settings = health_check(
            LMSettings(lm_base=server.base_url, lm_model=server.model, model_format=params["model_format"],
                       temperature=float(params["temperature"]), max_tokens=int(params["max_tokens"]),
                       cache=params["cache"] == "True")
        )  # fmt: skip
        with dspy.context(lm=build_lm(settings), adapter=build_adapter(settings.model_format)):
            evaluation = evaluate(program, load_dataset().examples("test"))
    rows = [(r.question, r.scores["cross_reference_recall"], r.scores["cross_reference_precision"])
            for r in evaluation.results]  # fmt: skip
    print(f"test {by_kind(rows)}; n_errors {evaluation.n_errors}; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
