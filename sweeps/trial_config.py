"""The typed trial config: Ray's plain ``config`` dict becomes a ``TrialConfig`` here, once per process.

The driver parses a trial's config when its MLflow run starts and carries the ``TrialConfig`` on the trial's
record (``sweeps.records``); the trial parses its own copy in its Ray worker.  Nothing else reads the raw
dict.  Every key keeps its name from the search-space file through the trial config, the MLflow params and
the ``trials.csv`` columns (``max_bootstrapped_demos`` everywhere); the defaults are ``bibleqa.knobs``' and
the optimizer registry's.

Example::

    >>> from sweeps.trial_config import TrialConfig
    >>> trial = TrialConfig.from_ray({"optimizer": "LabeledFewShot", "max_labeled_demos": 2, "train_size": 8,
    ...                               "retrieval_k": 1, "seed": 0})
    >>> trial.as_params()["max_labeled_demos"], trial.to_train_config().optimizer
    (2, 'LabeledFewShot')
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from bibleqa.errors import UserError
from bibleqa.knobs import KNOB_DEFAULTS, PROGRAM_KNOBS
from bibleqa.lm import LMSettings
from bibleqa.optimizers import OPTIMIZERS, canonical_optimizer, optimizer_params
from bibleqa.train import TrainConfig


@dataclass(frozen=True)
class TrialConfig:
    """One trial's configuration, validated."""

    optimizer: str
    params: dict[str, Any] = field(default_factory=dict)
    train_size: int = KNOB_DEFAULTS["train_size"]
    retrieval_k: int = KNOB_DEFAULTS["retrieval_k"]
    related_passages: int = KNOB_DEFAULTS["related_passages"]
    chain_of_thought: bool = KNOB_DEFAULTS["chain_of_thought"]
    model_format: str | None = KNOB_DEFAULTS["model_format"]
    bootstrap_metric: str = KNOB_DEFAULTS["bootstrap_metric"]
    bootstrap_threshold: float = KNOB_DEFAULTS["bootstrap_threshold"]
    seed: int = 0

    @classmethod
    def from_ray(cls, config: dict[str, Any]) -> TrialConfig:
        """Build from Ray's flat config; unknown keys raise ``UserError``."""
        optimizer = canonical_optimizer(str(config["optimizer"]))
        own = set(OPTIMIZERS[optimizer].defaults)
        unknown = sorted(set(config) - own - set(PROGRAM_KNOBS) - {"optimizer", "seed"})
        if unknown:
            raise UserError(f"trial config has {', '.join(unknown)}, which {optimizer} does not take")
        knobs = {name: config[name] for name in PROGRAM_KNOBS if name in config and config[name] is not None}
        return cls(
            optimizer=optimizer,
            params=optimizer_params(optimizer, {name: config[name] for name in own if name in config}),
            seed=int(config.get("seed", 0)),
            **knobs,
        )

    def as_params(self) -> dict[str, Any]:
        """Flat params, named as in the search-space file (``model_format`` only when the trial sets one)."""
        return {
            "optimizer": self.optimizer,
            **self.params,
            "train_size": self.train_size,
            "num_examples": self.train_size,
            "retrieval_k": self.retrieval_k,
            "related_passages": self.related_passages,
            "chain_of_thought": self.chain_of_thought,
            **({"model_format": self.model_format} if self.model_format else {}),
            "bootstrap_metric": self.bootstrap_metric,
            "bootstrap_threshold": self.bootstrap_threshold,
            "seed": self.seed,
        }

    def lm_settings(self, base: LMSettings) -> LMSettings:
        """The sweep's LM settings with this trial's ``model_format`` (when the space sets one)."""
        return replace(base, model_format=self.model_format or base.model_format)

    def to_train_config(self, eval_threads: int = 1) -> TrainConfig:
        """The ``bibleqa`` training config that compiles and scores this trial."""
        fixed = {name: self.params[name] for name in ("max_bootstrapped_demos", "max_labeled_demos", "max_rounds",
                                                        "num_candidate_programs") if name in self.params}  # fmt: skip
        return TrainConfig(
            optimizer=self.optimizer,
            train_size=self.train_size,
            retrieval_k=self.retrieval_k,
            related_passages=self.related_passages,
            chain_of_thought=self.chain_of_thought,
            bootstrap_metric=self.bootstrap_metric,
            bootstrap_threshold=self.bootstrap_threshold,
            seed=self.seed,
            eval_threads=eval_threads,
            extra={name: value for name, value in self.params.items() if name not in fixed},
            **fixed,
        )
