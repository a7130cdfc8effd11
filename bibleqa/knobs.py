"""The program and training knobs a search space may fix or search, and their defaults: the one definition.

``bibleqa.train.TrainConfig``, ``sweeps.trial_config.TrialConfig``, the search-space validator, the CLI flags
and the dry-run estimate all take their defaults from here.

Example::

    >>> from bibleqa.knobs import KNOB_DEFAULTS
    >>> KNOB_DEFAULTS["train_size"], KNOB_DEFAULTS["retrieval_k"]
    (16, 3)
"""

from __future__ import annotations

from typing import Any

from bibleqa.related import DEFAULT_RELATED_PASSAGES

KNOB_DEFAULTS: dict[str, Any] = {
    "train_size": 16,
    "retrieval_k": 3,
    "related_passages": DEFAULT_RELATED_PASSAGES,
    "chain_of_thought": False,
    "model_format": None,  # None: the LM's own format (completion for the bundled LM, chat for LM Studio)
    "bootstrap_metric": "composite_score",
    "bootstrap_threshold": 0.5,
}
"""Each knob and its value when a config says nothing."""
PROGRAM_KNOBS = tuple(KNOB_DEFAULTS)
DEFAULT_VALSET_SIZE = 16
"""Train examples after the first ``train_size`` that random search and MIPROv2 score candidates on."""
