"""Helpers shared by the integration tests: a small real data file, and the seed's comparison code."""

from __future__ import annotations

from pathlib import Path

from bibleqa.dataset import write_subset

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
    return write_subset(directory / "small.jsonl", train=train, dev=dev, test=test)
