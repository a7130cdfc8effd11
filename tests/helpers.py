"""Helpers shared by the integration tests: a small real data file, and the seed's comparison code."""

from __future__ import annotations

import json
from pathlib import Path

from bibleqa.dataset import bundled_data_path

SEED_COMPARISON = """
from mlflow.tracking import MlflowClient

# Initialize client
client = MlflowClient()

# Get experiment by name
experiment = client.get_experiment_by_name("dspy_bible_qa")

# Get runs for the experiment
runs = client.search_runs(
    experiment_ids=[experiment.experiment_id],
    filter_string="metrics.accuracy > 0.8"
)

# Compare runs
for run in runs:
    run_id = run.info.run_id
    metrics = run.data.metrics
    params = run.data.params

    print(f"Run ID: {run_id}")
    print(f"Accuracy: {metrics.get('accuracy')}")
    print(f"Model: {params.get('model')}")
    print("---")
"""


def small_data(directory: Path, train: int = 6, dev: int = 6, test: int = 2) -> Path:
    """A real subset of the bundled data, so an LM-bound test takes seconds, not minutes."""
    wanted = {"train": train, "dev": dev, "test": test}
    kept = []
    for line in bundled_data_path().read_text(encoding="utf-8").splitlines():
        split = json.loads(line)["split"]
        if wanted[split] > 0:
            wanted[split] -= 1
            kept.append(line)
    path = directory / "small.jsonl"
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path
