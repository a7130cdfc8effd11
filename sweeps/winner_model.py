"""The winner as an MLflow model on its own run, and its registry version: how the journal delivers them.

``sweeps.finalize`` journals the winner's model (``MLflowJournal.log_program_model``) and, with
``--register``, its registration; ``sweeps.journal`` calls these functions when it delivers them, during the
sweep or later (``bibleqa-sweep sync``).  So the model is built from what the sweep folder keeps: the
winner's DSPy JSON state (``program.json``) and its program knobs, never from a pickle.

Both look first for what an earlier try whose response was lost may have made (``look_first``): the model
by its journal tag, the version by its run and model URI.

Example::

    >>> from sweeps.winner_model import version_filter
    >>> version_filter("bibleqa-champion", "0f3c")
    "name = 'bibleqa-champion' and run_id = '0f3c'"
"""

from __future__ import annotations

import logging
from typing import Any

import mlflow

from bibleqa.program import build_program
from bibleqa.tracking import log_program_model

logger = logging.getLogger(__name__)


def log_winner_model(
    client: Any,
    tracking_uri: str,
    *,
    run_id: str,
    state_file: str,
    knobs: dict[str, Any],
    name: str,
    tags: dict[str, str],
    status: str,
    marker: tuple[str, str],
    look_first: bool = False,
) -> tuple[str, str]:
    """Log the program (built from ``knobs``, loaded from ``state_file``) as model ``name`` on run ``run_id``,
    with ``tags`` and the journal's ``marker`` tag; returns its model id and URI.

    ``mlflow.dspy.log_model`` logs only into the active run, so the ended run is reopened (MLflow sets it
    RUNNING), and ended again afterwards, ``status`` at its old end time, whatever happens in between."""
    key, value = marker
    if look_first:
        experiment_id = client.get_run(run_id).info.experiment_id
        found = client.search_logged_models([experiment_id], filter_string=f"tags.`{key}` = '{value}'")
        if found:
            return found[0].model_id, f"models:/{found[0].model_id}"
    program = build_program(knobs["retrieval_k"], knobs["chain_of_thought"], knobs["related_passages"])
    program.load(state_file)
    mlflow.set_tracking_uri(tracking_uri)
    end_time = client.get_run(run_id).info.end_time
    try:
        with mlflow.start_run(run_id=run_id):
            model_info = log_program_model(program, name=name, tags={**tags, key: value})
    finally:
        client.set_terminated(run_id, status=status, end_time=end_time)
    return model_info.model_id, model_info.model_uri


def version_filter(name: str, run_id: str) -> str:
    """The registry search for the versions of ``name`` made from run ``run_id``."""
    return f"name = '{name}' and run_id = '{run_id}'"


def register_winner_model(client: Any, tracking_uri: str, *, model_uri: str, name: str, run_id: str, alias: str,
                          look_first: bool = False) -> str:  # fmt: skip
    """Register ``model_uri`` under ``name`` (once: an earlier version from it is reused) and point ``alias``
    at the version; returns the version."""
    version = None
    if look_first:
        found = [v for v in client.search_model_versions(version_filter(name, run_id)) if v.source == model_uri]
        version = found[0].version if found else None
    if version is None:
        mlflow.set_tracking_uri(tracking_uri)
        version = mlflow.register_model(model_uri, name).version
    client.set_registered_model_alias(name, alias, version)
    return str(version)
