"""What ``run_sweep`` returns (``SweepResult``) and what ``estimate_sweep`` returns (``SweepEstimate``).

``as_json()`` is what ``bibleqa-sweep run --output-json`` writes.  A ``SweepResult`` is the same whether
every trial finished, some failed, or none did (then ``best_run_id`` is ``None``).

Example::

    >>> from sweeps.result import SweepResult
    >>> result = SweepResult(sweep_name="sweep_smoke_20260101_000000", parent_run_id="p", experiment_id="1",
    ...                      tracking_uri="sqlite:///mlflow.db", sweep_dir="/tmp/x", n_trials=0, n_failed=0)
    >>> result.pick_is_clear, result.best_run_id, len(result.trials_dataframe())
    (False, None, 0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from bibleqa.errors import BibleQAError
from bibleqa.program import BibleQA, build_program
from bibleqa.tracking import load_program_state
from sweeps.trials_table import trials_frame

PROGRAM_FILE = "program.json"


class NoWinner(BibleQAError):
    """The sweep has no finished trial, so there is no program to load."""


@dataclass
class SweepResult:
    """A finished sweep: its parent run, the winner (config, dev metrics under their plain names, test
    metrics as ``test_<name>``), how sure the pick is, the top 5, the LM slot figures, and one row per trial."""

    sweep_name: str
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    sweep_dir: str
    n_trials: int
    n_failed: int
    best_run_id: str | None = None
    best_trial_id: str | None = None
    best_config: dict[str, Any] = field(default_factory=dict)
    best_metrics: dict[str, float] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)
    model_uri: str | None = None
    certainty: str = ""
    pick_is_clear: bool = False
    top: list[dict[str, Any]] = field(default_factory=list)
    slot_stats: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    trials: list[dict[str, Any]] = field(default_factory=list)
    mlflow_pending: int = 0
    """Writes that wait in the sweep folder's journal for MLflow, which was not answering when the sweep
    ended (``bibleqa-sweep sync`` delivers them); 0 when MLflow holds everything."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def trials_dataframe(self) -> pd.DataFrame:
        """One row per trial, ranked, the same columns as ``trials.csv`` (``sweeps.trials_table``)."""
        return trials_frame(self.trials)

    def load_winner(self) -> BibleQA:
        """The winner's compiled DSPy program, read from the winner's own MLflow run: rebuilt from its config
        and the run's ``program.json`` (its DSPy JSON state, logged beside the run's MLflow model
        ``model_uri``; never unpickled).  Raises ``NoWinner`` when no trial finished."""
        if self.best_run_id is None:
            raise NoWinner(f"sweep {self.sweep_name} has no finished trial, so there is no winner to load")
        config = self.best_config
        program = build_program(config["retrieval_k"], config["chain_of_thought"], config["related_passages"])
        return load_program_state(program, f"runs:/{self.best_run_id}/{PROGRAM_FILE}", self.tracking_uri)


@dataclass(frozen=True)
class SweepEstimate:
    """What a sweep would cost, and what the estimate rests on (``measured``): LM calls per trial for each
    optimizer family (compile at the space's largest ``train_size``, plus one dev pass), the winner's test
    questions, the LM's seconds per call, and the time on the sweep's slots."""

    space: str
    trials: int
    slots: int
    lm_calls_per_trial: dict[str, int]
    test_calls: int
    estimated_lm_calls: int
    seconds_per_call: float
    estimated_seconds: float
    measured: str
    notes: list[str]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)
