"""The first screen: a saved view of the MLflow UI that opens on a sweep's trials, ranked, with the columns a
person picks a winner by, and the link to it.

MLflow 3.17 opens an experiment in its GenAI mode, on an empty traces page, with no param or metric column in
its runs table.  Two things of its UI (read from its JavaScript bundle, ``mlflow/server/js/build``) fix that
without a click:

- the URL parameter ``workflowType=machine_learning`` selects the "Model training" mode, whose experiment
  page is the runs table;
- a *shared view*: the UI's "Share" button stores the table's state in the experiment tag
  ``mlflow.sharedViewState.<key>`` (JSON) and links to ``?viewStateShareKey=<key>``.  The state holds the
  search (``searchFilter``, ``orderByKey``, ``orderByAsc``) and the columns (``selectedColumns``), but not
  which runs are expanded: so the view lists the sweep's trials only (the parent holds the verdict, one click
  away), which also shows them flat, ranked, rather than folded under their parent.

The sweep driver saves one view per sweep, keyed by its parent run id, when it creates the parent run; the
command prints the link (``runs_table_url``).

Example::

    >>> view = trials_view("theological_match_score", "max", "abc123")
    >>> view["orderByKey"], view["orderByAsc"], view["selectedColumns"][:2]
    ('metrics.`theological_match_score`', False, ['metrics.`theological_match_score`', 'metrics.`accuracy`'])
    >>> runs_table_url("http://localhost:5000", "1", "abc123")
    'http://localhost:5000/#/experiments/1/runs?workflowType=machine_learning&viewStateShareKey=abc123'
    >>> run_url("http://localhost:5000", "1", "abc123")
    'http://localhost:5000/#/experiments/1/runs/abc123?workflowType=machine_learning'
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

VIEW_TAG_PREFIX = "mlflow.sharedViewState."
"""The experiment tag that holds a shared view, as MLflow's UI names it (``viewStateShareKey`` is the key)."""
MODE = "machine_learning"
"""The UI's "Model training" mode (its other mode, ``genai``, opens on traces)."""
VIEW_PARAMS = ("optimizer", "max_labeled_demos", "max_bootstrapped_demos", "train_size", "retrieval_k")
"""What tells the trials apart at a glance: the optimizer, its demos, the training size and the retrieval
depth.  (Every other param stays one click away, in the column picker.)"""
VIEW_TAGS = ("sweep_rank",)


def trials_view(objective: str, mode: str, parent_run_id: str) -> dict[str, Any]:
    """The UI state of the sweep's runs table: its trials only, best ``objective`` first, with the objective,
    ``accuracy``, the params of ``VIEW_PARAMS``, the rank and the logged model as columns."""
    metrics = [objective] + [name for name in ("accuracy",) if name != objective]
    columns = [
        *(f"metrics.`{name}`" for name in metrics),
        *(f"params.`{name}`" for name in VIEW_PARAMS),
        *(f"tags.`{name}`" for name in VIEW_TAGS),
        "attributes.`Models`",
    ]
    return {
        "searchFilter": f"tags.run_type = 'trial' and tags.mlflow.parentRunId = '{parent_run_id}'",
        "orderByKey": f"metrics.`{objective}`",
        "orderByAsc": mode == "min",
        "selectedColumns": columns,
        "runsHiddenMode": "SHOW_ALL",
    }


def save_trials_view(client: Any, experiment_id: str, parent_run_id: str, objective: str, mode: str) -> str:
    """Store the sweep's view on its experiment (``client`` is an ``MlflowClient``); return its key."""
    client.set_experiment_tag(
        experiment_id, VIEW_TAG_PREFIX + parent_run_id, json.dumps(trials_view(objective, mode, parent_run_id))
    )
    return parent_run_id


def runs_table_url(base_url: str, experiment_id: str, view_key: str | None = None) -> str:
    """The experiment's runs table in "Model training" mode, in the saved view ``view_key`` if given."""
    query = {"workflowType": MODE, **({"viewStateShareKey": view_key} if view_key else {})}
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{urlencode(query)}"


def run_url(base_url: str, experiment_id: str, run_id: str) -> str:
    """A run's page, in "Model training" mode (its sidebar lists runs, models and traces, not GenAI's pages)."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{urlencode({'workflowType': MODE})}"
