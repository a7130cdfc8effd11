"""How a trial's MLflow run and the winner's logged model are named: what tells trials apart comes first.

MLflow's runs table cuts a run name to about 20 characters, so a trial run is named by its settings, then
its number in the sweep (the order trials started), then the seed's ``bible_qa_<YYYYmmdd_HHMMSS>``::

    bootstrap b2 l1 k2 n8 #3 bible_qa_20260101_120000

The optimizer by its seed name (``labeled``, ``bootstrap``, ``random_search``, ``mipro``), then its demo
counts (``b`` max_bootstrapped_demos, ``l`` max_labeled_demos), ``k`` (retrieval_k) and ``n`` (train_size);
then, only where they differ from their defaults, the optimizer's other parameters (``rounds`` max_rounds,
``c`` num_candidate_programs or num_candidates, ``t`` num_trials, else ``name=value``: ``auto=medium``),
``cot`` (chain_of_thought) and ``r`` (related_passages).  The full names stay the MLflow params; nothing
parses a run name (``pick`` and the summary use the ``trial_id`` tag).

Example::

    >>> from datetime import datetime
    >>> from sweeps.run_names import trial_run_name, model_name
    >>> from sweeps.trial_config import TrialConfig
    >>> trial = TrialConfig.from_ray({"optimizer": "BootstrapFewShot", "max_bootstrapped_demos": 2,
    ...                               "max_labeled_demos": 1, "train_size": 8, "retrieval_k": 2})
    >>> trial_run_name(trial, 3, datetime(2026, 1, 1, 12, 0, 0))
    'bootstrap b2 l1 k2 n8 #3 bible_qa_20260101_120000'
    >>> model_name(trial)
    'bible_qa_BootstrapFewShot_b2-l1-k2-n8'
"""

from __future__ import annotations

from datetime import datetime

from bibleqa.knobs import KNOB_DEFAULTS
from bibleqa.optimizers import OPTIMIZERS
from sweeps.trial_config import TrialConfig

DEMO_LETTERS = {"max_bootstrapped_demos": "b", "max_labeled_demos": "l"}
"""The demo counts, always shown."""
OTHER_LETTERS = {"max_rounds": "rounds", "num_candidate_programs": "c", "num_candidates": "c", "num_trials": "t"}
"""The optimizers' other parameters, shown only when they differ from the family's default."""


def config_label(trial: TrialConfig) -> list[str]:
    """The words that tell this trial's settings apart, in order (see the module docstring)."""
    family = OPTIMIZERS[trial.optimizer]
    words = [family.aliases[0]]
    words += [f"{letter}{trial.params[name]}" for name, letter in DEMO_LETTERS.items() if name in trial.params]
    words += [f"k{trial.retrieval_k}", f"n{trial.train_size}"]
    for name, value in trial.params.items():
        if name in DEMO_LETTERS or value is None or value == family.defaults.get(name):
            continue
        words.append(f"{OTHER_LETTERS[name]}{value}" if name in OTHER_LETTERS else f"{name}={value}")
    if trial.chain_of_thought != KNOB_DEFAULTS["chain_of_thought"]:
        words.append("cot" if trial.chain_of_thought else "no-cot")
    if trial.related_passages != KNOB_DEFAULTS["related_passages"]:
        words.append(f"r{trial.related_passages}")
    return words


def trial_run_name(trial: TrialConfig, number: int, now: datetime | None = None) -> str:
    """The trial's run name: its settings, ``#number`` (the order it started in), ``bible_qa_<timestamp>``."""
    stamp = (now or datetime.now()).strftime("%Y%m%d_%H%M%S")
    return " ".join([*config_label(trial), f"#{number}", f"bible_qa_{stamp}"])


def model_name(trial: TrialConfig) -> str:
    """The logged model's name: the program, its optimizer and its settings (MLflow allows no dots, slashes,
    colons or quotes in it)."""
    words = [word.replace("=", "-").replace(".", "p") for word in config_label(trial)[1:]]
    return f"bible_qa_{trial.optimizer}_{'-'.join(words)}"
