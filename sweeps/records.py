"""What the driver knows of one trial: its MLflow run, its typed config, and, once it ended, its status,
metrics and carried artifacts.

``sweeps.mlflow_logging`` creates a record when the trial's run starts (parsing its config once) and fills
it as Tune reports; the summary (``sweeps.summary``, ``sweeps.finalize``) reads records only.

Example::

    >>> from sweeps.records import TrialRecord
    >>> from sweeps.trial_config import TrialConfig
    >>> record = TrialRecord("t1", "run-1", "bible_qa_LabeledFewShot_t1", TrialConfig("LabeledFewShot"))
    >>> record.status, record.trial.optimizer
    ('RUNNING', 'LabeledFewShot')
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sweeps.trial_config import TrialConfig


@dataclass
class TrialRecord:
    """One trial of a sweep, as the driver knows it."""

    trial_id: str
    run_id: str
    run_name: str
    trial: TrialConfig
    status: str = "RUNNING"
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 1
    node_id: str = ""
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
