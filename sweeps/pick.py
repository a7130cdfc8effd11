"""Picking the winner from MLflow, and asking it a question.

    bibleqa-sweep pick                                   # the latest sweep's winner
    bibleqa-sweep pick --filter "metrics.accuracy > 0.8" --metric key_term_accuracy
    bibleqa-sweep pick --ask "Who built the ark?" --lm local
    bibleqa-sweep pick --model models:/bibleqa@champion    # the run a registered model came from

Trials are ranked by the sweep's rule (``--metric``, then accuracy, then fewer LM calls, then trial id).
A pick's ``model_uri`` is the MLflow model logged on the picked run itself (the sweep logs the winner's
there), or ``None``.  ``--model`` takes ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``models:/m-...``
and picks the run the model was logged on.  ``ask`` rebuilds the program from the run's DSPy JSON state
(never from a downloaded pickle) and answers through the configured LM.

Example::

    >>> from sweeps.pick import pick_run
    >>> choice = pick_run(tracking_uri="sqlite:///mlflow.db")  # doctest: +SKIP
    >>> choice.run_id, choice.metrics["theological_match_score"]  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException

from bibleqa.dspy_lm import lm_context
from bibleqa.errors import BibleQAError, UserError
from bibleqa.knobs import KNOB_DEFAULTS
from bibleqa.lm import LMSettings, health_check
from bibleqa.program import BibleQA, build_program
from bibleqa.tracking import (
    DEFAULT_EXPERIMENT,
    check_tracking,
    configure_mlflow_http,
    load_program_state,
    resolve_tracking_uri,
)
from sweeps.winner import winner_key


class NothingMatched(BibleQAError):
    """No run matches the request (the CLI exits 1)."""


@dataclass(frozen=True)
class Pick:
    """The chosen run."""

    run_id: str
    run_name: str
    parent_run_id: str | None
    config: dict[str, str]
    metrics: dict[str, float]
    model_uri: str | None
    program_uri: str
    tracking_uri: str
    candidates: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "run_name": self.run_name,
            "parent_run_id": self.parent_run_id,
            "config": self.config,
            "metrics": self.metrics,
            "model_uri": self.model_uri,
            "program_uri": self.program_uri,
            "candidates": self.candidates,
            **self.extra,
        }


def pick_run(
    *,
    tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    sweep: str | None = "latest",
    run: str | None = None,
    model: str | None = None,
    metric: str = "theological_match_score",
    mode: str = "max",
    filter: str | None = None,
) -> Pick:
    """The best trial run of a sweep (or the run ``run``, or the run that model URI ``model`` was logged on).

    Raises ``UserError`` for an unknown experiment, sweep, run or model, or a bad filter; ``NothingMatched``
    when no finished trial matches.
    """
    configure_mlflow_http()
    uri = resolve_tracking_uri(tracking_uri)
    check_tracking(uri)
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise UserError(f"experiment {experiment!r} does not exist at {uri}; pass --experiment or --tracking-uri")
    if mode not in ("max", "min"):
        raise UserError(f"--mode {mode!r} is not one of max, min")
    try:
        if model:
            run = run_of_model(client, model)
        if run:
            chosen = client.get_run(run)
            return _pick_of(chosen, uri, candidates=1)
        parent = _find_sweep(client, found.experiment_id, sweep or "latest")
        conditions = [f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'", "attributes.status = 'FINISHED'"]
        if filter:
            conditions.append(filter)  # MLflow's filters join clauses with AND only; it rejects OR
        children = client.search_runs([found.experiment_id], filter_string=" and ".join(conditions), max_results=5000)
    except MlflowException as error:
        raise UserError(
            f"MLflow rejected the request: {str(error).splitlines()[0]}; check --run, --model, --sweep and --filter"
        ) from None
    ranked = rank_runs([child for child in children if metric in child.data.metrics], metric, mode)
    if not ranked:
        raise NothingMatched(
            f"no finished trial of sweep {parent.info.run_name} has {metric}"
            + (f" and matches {filter!r}" if filter else "")
        )
    return _pick_of(ranked[0], uri, parent=parent, candidates=len(ranked))


def run_of_model(client: Any, uri: str) -> str:
    """The id of the run a model was logged on, for ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or
    ``models:/m-...``; raises ``UserError`` for anything else (MLflow's own errors pass through)."""
    rest = uri.removeprefix("models:/") if uri.startswith("models:/") else ""
    if not rest:
        raise UserError(
            f"--model {uri!r} is not a models:/ URI; pass models:/NAME@champion, models:/NAME/VERSION or models:/m-..."
        )
    if "@" in rest or "/" in rest:
        name, alias, version = *rest.partition("@")[::2], None
        if not alias:
            name, _, version = rest.rpartition("/")
        registered = (
            client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
        )
        # MLflow 3.17 fills run_id and source (models:/m-...) for a version of a logged model, not model_id.
        source = registered.source or ""
        run_id = registered.run_id
        model_id = registered.model_id or (source.removeprefix("models:/") if source.startswith("models:/m-") else None)
    else:
        run_id, model_id = None, rest
    if not run_id and model_id:
        run_id = client.get_logged_model(model_id).source_run_id
    if not run_id:
        raise UserError(f"model {uri} was not logged on a run; pass --run RUN_ID instead")
    return run_id


def model_on_run(run: Any) -> str | None:
    """The URI of the MLflow model logged on ``run`` itself (the last, if several), or ``None``."""
    outputs = run.outputs.model_outputs if run.outputs else []
    return f"models:/{outputs[-1].model_id}" if outputs else None


def rank_runs(runs: list[Any], metric: str, mode: str) -> list[Any]:
    """MLflow trial runs, best first, by the sweep's winner rule (``sweeps.winner.winner_key``)."""

    def key(run: Any) -> tuple[float, float, float, str]:
        return winner_key(run.data.metrics, run.data.tags.get("trial_id", run.info.run_id), metric, mode)

    return sorted(runs, key=key)


def ask(choice: Pick, question: str, settings: LMSettings) -> Any:
    """Answer ``question`` with the chosen run's program, rebuilt from its JSON state."""
    config = choice.config
    program = load_program_state(program_from_params(config), choice.program_uri, choice.tracking_uri)
    model_format = config.get("model_format") or settings.model_format
    settings = health_check(replace(settings, model_format=model_format))
    with lm_context(settings):
        return program(question=question)


def program_from_params(params: dict[str, str]) -> BibleQA:
    """A fresh program with the knobs a run logged as MLflow params (strings); load its state next.

    >>> program_from_params({"retrieval_k": "2", "chain_of_thought": "False", "related_passages": "5"}).related_passages
    5
    """
    return build_program(
        int(params.get("retrieval_k", KNOB_DEFAULTS["retrieval_k"])),
        params.get("chain_of_thought", "False") == "True",
        # A run logged before the knob existed had no related-passages step: rebuild it as it was scored.
        int(params.get("related_passages", 0)),
    )


def _find_sweep(client: Any, experiment_id: str, sweep: str) -> Any:
    if sweep != "latest":
        run = client.get_run(sweep)
        if run.data.tags.get("run_type") != "sweep":
            raise UserError(f"run {sweep} is not a sweep's parent run; pass a parent run id, or latest")
        return run
    runs = client.search_runs(
        [experiment_id], filter_string="tags.run_type = 'sweep'", order_by=["attributes.start_time DESC"], max_results=1
    )
    if not runs:
        raise NothingMatched("no sweep has run in this experiment yet; run bibleqa-sweep run SPACE_FILE first")
    return runs[0]


def _pick_of(run: Any, uri: str, parent: Any = None, candidates: int = 0) -> Pick:
    parent_id = run.data.tags.get("mlflow.parentRunId") or (parent.info.run_id if parent else None)
    if run.data.tags.get("run_type") == "sweep":
        raise UserError(f"run {run.info.run_id} is a sweep's parent run; pass --sweep {run.info.run_id} instead")
    return Pick(
        run_id=run.info.run_id,
        run_name=run.info.run_name,
        parent_run_id=parent_id,
        config=dict(run.data.params),
        metrics=dict(run.data.metrics),
        model_uri=model_on_run(run),
        program_uri=f"runs:/{run.info.run_id}/program.json",
        tracking_uri=uri,
        candidates=candidates,
    )
