"""One tracked training run, the seed's ``python train_dspy_bible_qa.py --lm-studio``: compile, score on
dev, log to MLflow.

    bibleqa train --lm local          # the bundled LM, the local sqlite:///mlflow.db store

The run is named ``bible_qa_model_<YYYYmmdd_HHMMSS>`` in experiment ``dspy_bible_qa`` (tag
``run_type=train``).  It starts before compiling, so a run that fails midway is still recorded, as
FAILED.  It logs the seed's params and the four metrics on dev, ``sample_predictions.json``,
``question_scores.csv``, the compiled program as DSPy JSON state, and the program as an MLflow model.  The
compile and the dev evaluation are traced (``bibleqa.tracing``): each program call is an MLflow trace of the
run.

Example::

    >>> from bibleqa.train import TrainConfig
    >>> TrainConfig(optimizer="bootstrap").optimizer
    'BootstrapFewShot'
"""

from __future__ import annotations

import csv
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import dspy
import mlflow

from bibleqa.dataset import Dataset, load_dataset
from bibleqa.dspy_lm import build_adapter, build_lm
from bibleqa.errors import UserError
from bibleqa.evaluate import Evaluation, evaluate
from bibleqa.knobs import DEFAULT_VALSET_SIZE, KNOB_DEFAULTS
from bibleqa.lm import LMSettings, health_check
from bibleqa.metrics import LOGGED_METRICS, BootstrapMetric
from bibleqa.optimizers import OPTIMIZER_PARAMS, canonical_optimizer, compile_program
from bibleqa.program import build_program
from bibleqa.samples import sample_predictions
from bibleqa.tracing import dspy_traces
from bibleqa.tracking import (
    DEFAULT_EXPERIMENT,
    ensure_experiment,
    log_batch,
    log_program_model,
    provenance_params,
    resolve_tracking_uri,
)
from bibleqa.usage import UsageMeter

logger = logging.getLogger(__name__)

_NON_NEGATIVE = ("train_size", "max_bootstrapped_demos", "max_labeled_demos", "retrieval_k", "related_passages",
                 "valset_size")  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    """What to compile and how; the same names as the CLI flags' config keys and the MLflow params."""

    optimizer: str = "BootstrapFewShot"
    train_size: int = KNOB_DEFAULTS["train_size"]
    max_bootstrapped_demos: int = OPTIMIZER_PARAMS["BootstrapFewShot"]["max_bootstrapped_demos"]
    max_labeled_demos: int = OPTIMIZER_PARAMS["BootstrapFewShot"]["max_labeled_demos"]
    max_rounds: int = OPTIMIZER_PARAMS["BootstrapFewShot"]["max_rounds"]
    num_candidate_programs: int = OPTIMIZER_PARAMS["BootstrapFewShotWithRandomSearch"]["num_candidate_programs"]
    retrieval_k: int = KNOB_DEFAULTS["retrieval_k"]
    chain_of_thought: bool = KNOB_DEFAULTS["chain_of_thought"]
    related_passages: int = KNOB_DEFAULTS["related_passages"]
    bootstrap_metric: str = KNOB_DEFAULTS["bootstrap_metric"]
    bootstrap_threshold: float = KNOB_DEFAULTS["bootstrap_threshold"]
    valset_size: int = DEFAULT_VALSET_SIZE
    seed: int = 0
    eval_threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "optimizer", canonical_optimizer(self.optimizer))
        for name in _NON_NEGATIVE:
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, but got {getattr(self, name)}")
        if self.train_size < 1:
            raise UserError(f"train_size must be at least 1, but got {self.train_size}")
        BootstrapMetric(self.bootstrap_metric, self.bootstrap_threshold)  # validates both

    def optimizer_params(self) -> dict[str, Any]:
        """The chosen optimizer's own parameters, taken from this config."""
        values = {**asdict(self), **self.extra}
        return {name: values[name] for name in OPTIMIZER_PARAMS[self.optimizer] if name in values}


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    run_id: str
    run_name: str
    experiment_id: str
    tracking_uri: str
    model_uri: str
    metrics: dict[str, float]
    evaluation: Evaluation


def run_name(prefix: str = "bible_qa_model", now: datetime | None = None) -> str:
    """``bible_qa_model_<YYYYmmdd_HHMMSS>``."""
    return f"{prefix}_{(now or datetime.now()).strftime('%Y%m%d_%H%M%S')}"


def run_params(config: TrainConfig, settings: LMSettings, dataset: Dataset) -> dict[str, Any]:
    """Every param a training run logs, under the seed's names."""
    return {
        **settings.as_params(),
        "optimizer": config.optimizer,
        "max_bootstrapped_demos": config.max_bootstrapped_demos,
        "max_labeled_demos": config.max_labeled_demos,
        **config.optimizer_params(),
        "train_size": config.train_size,
        "num_examples": config.train_size,
        "val_size": len(dataset.dev),
        "retrieval_k": config.retrieval_k,
        "chain_of_thought": config.chain_of_thought,
        "related_passages": config.related_passages,
        "bootstrap_metric": config.bootstrap_metric,
        "bootstrap_threshold": config.bootstrap_threshold,
        "seed": config.seed,
        **provenance_params(dataset.sha256, settings.n_ctx),
    }


def compile_and_evaluate(
    config: TrainConfig, dataset: Dataset, lm: Any, adapter: Any, split: str = "dev"
) -> tuple[Any, Evaluation, dict[str, float]]:
    """Compile on the first ``train_size`` train examples, score on ``split``.

    Returns the compiled program, its evaluation and timing/usage figures (``compile_seconds``,
    ``eval_seconds``, ``dropped_references``, and the LM usage of both: ``lm_calls``, ``lm_cache_hits``,
    ``prompt_tokens``, ``completion_tokens``, as ``bibleqa.usage`` counts them).
    """
    trainset = dataset.examples("train", config.train_size)
    valset = dataset.examples("train")[config.train_size : config.train_size + config.valset_size]
    program = build_program(config.retrieval_k, config.chain_of_thought, config.related_passages)
    metric = BootstrapMetric(config.bootstrap_metric, config.bootstrap_threshold)
    with dspy.context(lm=lm, adapter=adapter):
        started = time.perf_counter()
        with UsageMeter(lm) as compile_meter:
            compiled = compile_program(
                program,
                config.optimizer,
                config.optimizer_params(),
                trainset=trainset,
                valset=valset,
                metric=metric,
                seed=config.seed,
                num_threads=config.eval_threads,
            )
        compile_seconds = time.perf_counter() - started
        evaluation = evaluate(compiled, dataset.examples(split), num_threads=config.eval_threads)
    usage = compile_meter.usage + evaluation.usage
    figures = {
        "compile_seconds": compile_seconds,
        "eval_seconds": evaluation.seconds,
        "dropped_references": evaluation.dropped_references,
        **usage.as_dict(),
    }
    return compiled, evaluation, figures


def write_artifacts(directory: Path, program: Any, evaluation: Evaluation) -> list[Path]:
    """Write ``sample_predictions.json`` (``bibleqa.samples``), ``question_scores.csv`` and ``program.json`` into
    ``directory``."""
    samples = directory / "sample_predictions.json"
    content = sample_predictions(evaluation.results)
    samples.write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")
    scores = directory / "question_scores.csv"
    rows = evaluation.question_rows()
    with scores.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["id"])
        writer.writeheader()
        writer.writerows(rows)
    state = directory / "program.json"
    program.save(str(state))
    return [samples, scores, state]


def run_training(
    config: TrainConfig,
    settings: LMSettings,
    *,
    data: str | None = None,
    tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
) -> TrainResult:
    """Compile, evaluate on dev and log one MLflow run; see the module docstring.

    Raises ``UserError`` (bad data, unreachable LM or MLflow) before any run is created.
    """
    dataset = load_dataset(data)
    if config.train_size > len(dataset.train):
        raise UserError(
            f"train_size {config.train_size} is larger than the train split ({len(dataset.train)} items); "
            "pass a smaller --num-examples"
        )
    settings = health_check(settings)
    uri = resolve_tracking_uri(tracking_uri)
    experiment_id = ensure_experiment(uri, experiment)
    lm, adapter = build_lm(settings), build_adapter(settings.model_format)
    name = run_name()
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags={"run_type": "train"}) as run:
        log_batch(run.info.run_id, params=run_params(config, settings, dataset))
        with dspy_traces():  # ends before the model is logged: nothing of it is pickled with the model
            compiled, evaluation, figures = compile_and_evaluate(config, dataset, lm, adapter)
        metrics = {name: evaluation.metrics[name] for name in LOGGED_METRICS}
        log_batch(run.info.run_id, metrics={**metrics, "n_errors": evaluation.n_errors, **figures})
        with tempfile.TemporaryDirectory(prefix="bibleqa-train-") as scratch:
            for path in write_artifacts(Path(scratch), compiled, evaluation):
                mlflow.log_artifact(str(path))
        model_info = log_program_model(compiled)
    logger.info("run %s (%s) finished; model %s", name, run.info.run_id, model_info.model_uri)
    return TrainResult(run.info.run_id, name, experiment_id, uri, model_info.model_uri, metrics, evaluation)
