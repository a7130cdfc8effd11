"""A sweep's trials as MLflow holds them: the child runs of its parent, read back as ``TrialRecord``s.

A resumed sweep sums up over every trial, those of the stopped driver included; its records are gone with
it, so they are rebuilt here from what MLflow holds (params, metrics, status, ``last_error``, and the
finished trials' ``program.json`` and ``question_scores.csv``, which the summary needs).  The params are
MLflow strings; each goes back to its Python value (``"3"`` -> 3, ``"True"`` -> True), and only the keys of
the trial config are kept (the LM params beside them are the sweep's).

Example::

    >>> from sweeps.past_trials import param_value
    >>> param_value("3"), param_value("0.5"), param_value("True"), param_value("None"), param_value("light")
    (3, 0.5, True, None, 'light')
"""

from __future__ import annotations

import ast
import tempfile
from pathlib import Path
from typing import Any

from bibleqa.knobs import PROGRAM_KNOBS
from bibleqa.optimizers import OPTIMIZERS, canonical_optimizer
from sweeps.records import TrialRecord
from sweeps.trial_config import TrialConfig

CARRIED_ARTIFACTS = ("program.json", "question_scores.csv")
"""What the summary reads of a finished trial (the winner's program, the per-question scores)."""
PAGE = 1000


def child_runs(client: Any, experiment_id: str, parent_run_id: str) -> list[Any]:
    """Every child run of the parent run, oldest first."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
            max_results=PAGE,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def param_value(text: str) -> Any:
    """An MLflow param (a string) back as the value that was logged."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def trial_config(params: dict[str, str]) -> TrialConfig:
    """The trial config logged as ``params`` (the LM params beside it are left out)."""
    optimizer = canonical_optimizer(params["optimizer"])
    keys = {"optimizer", "seed", *OPTIMIZERS[optimizer].defaults, *PROGRAM_KNOBS}
    return TrialConfig.from_ray({name: param_value(value) for name, value in params.items() if name in keys})


def trial_record(client: Any, run: Any) -> TrialRecord:
    """A child run as the summary's ``TrialRecord``; a finished run's carried artifacts are downloaded."""
    tags = run.data.tags
    record = TrialRecord(
        trial_id=tags.get("trial_id", run.info.run_id),
        run_id=run.info.run_id,
        run_name=run.info.run_name,
        trial=trial_config(run.data.params),
        status=run.info.status,
        metrics=dict(run.data.metrics),
        error=tags.get("last_error"),
        attempts=int(tags.get("attempt", "1")),
        node_id=tags.get("ray_node_id", ""),
    )
    if run.info.end_time and run.info.start_time:
        record.seconds = (run.info.end_time - run.info.start_time) / 1000
    if record.status == "FINISHED":
        with tempfile.TemporaryDirectory(prefix="bibleqa-past-") as scratch:
            for name in CARRIED_ARTIFACTS:
                path = client.download_artifacts(run.info.run_id, name, scratch)
                record.artifacts[name] = Path(path).read_text(encoding="utf-8")
    return record
