"""The typed trial config: Ray's plain ``config`` dict becomes a ``TrialConfig`` here, once.

Every key keeps its name from the search-space file through the trial config, the MLflow params and the
``trials.csv`` columns (``max_bootstrapped_demos`` everywhere).

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
from bibleqa.lm import LMSettings
from bibleqa.optimizers import OPTIMIZER_PARAMS, canonical_optimizer, optimizer_params
from bibleqa.related import DEFAULT_RELATED_PASSAGES
from bibleqa.train import TrainConfig
from sweeps.space import PROGRAM_KNOBS

KNOBS = PROGRAM_KNOBS


@dataclass(frozen=True)
class TrialConfig:
    """One trial's configuration, validated."""

    optimizer: str
    params: dict[str, Any] = field(default_factory=dict)
    train_size: int = 16
    retrieval_k: int = 3
    related_passages: int = DEFAULT_RELATED_PASSAGES
    chain_of_thought: bool = False
    model_format: str | None = None
    bootstrap_metric: str = "composite_score"
    bootstrap_threshold: float = 0.5
    seed: int = 0

    @classmethod
    def from_ray(cls, config: dict[str, Any]) -> TrialConfig:
        """Build from Ray's flat config; unknown keys raise ``UserError``."""
        optimizer = canonical_optimizer(str(config["optimizer"]))
        own = set(OPTIMIZER_PARAMS[optimizer])
        unknown = sorted(set(config) - own - set(KNOBS) - {"optimizer", "seed"})
        if unknown:
            raise UserError(f"trial config has {', '.join(unknown)}, which {optimizer} does not take")
        knobs = {name: config[name] for name in KNOBS if name in config and config[name] is not None}
        return cls(
            optimizer=optimizer,
            params=optimizer_params(optimizer, {name: config[name] for name in own if name in config}),
            seed=int(config.get("seed", 0)),
            **knobs,
        )

    def as_params(self) -> dict[str, Any]:
        """Flat params, named as in the search-space file."""
        return {
            "optimizer": self.optimizer,
            **self.params,
            "train_size": self.train_size,
            "num_examples": self.train_size,
            "retrieval_k": self.retrieval_k,
            "related_passages": self.related_passages,
            "chain_of_thought": self.chain_of_thought,
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
        extra = {name: value for name, value in self.params.items() if name not in fixed}
        if self.optimizer == "LabeledFewShot":
            fixed.setdefault("max_bootstrapped_demos", 0)
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
            extra=extra,
            **fixed,
        )
