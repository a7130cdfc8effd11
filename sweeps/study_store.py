"""The sweep's Optuna study, kept in the sweep folder from the first trial on (``study.log``, an Optuna
journal): what the search knows survives a killed driver, ``resume_sweep`` continues it, and the plots and
importances are drawn from it.

- ``study_storage(folder)``: the journal storage ``OptunaSearch`` writes to (Ray 2.60 creates the study with
  ``load_if_exists=True``, so the same call continues it);
- ``fail_running_trials(folder, name)``: trials left RUNNING by a stopped driver become FAIL (they never
  reported, and the sampler must not wait on them);
- ``resume_seed(seed, finished, asked)``: the sampler's seed after a resume, so that a new sampler does not
  draw again the configurations that the first one drew from the same seed.

Example::

    >>> from sweeps.study_store import resume_seed
    >>> resume_seed(11, 3, 4) == resume_seed(11, 3, 4), resume_seed(11, 3, 4) != resume_seed(11, 3, 5) != 11
    (True, True)
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

logger = logging.getLogger(__name__)

STUDY_FILE = "study.log"


def study_storage(folder: Path) -> JournalStorage:
    """The journal storage of the sweep in ``folder`` (the file is created on the first write)."""
    return JournalStorage(JournalFileBackend(str(Path(folder) / STUDY_FILE)))


def has_study(folder: Path) -> bool:
    """Whether the sweep in ``folder`` has written its study yet."""
    return (Path(folder) / STUDY_FILE).exists()


def load_study(folder: Path, name: str) -> optuna.Study:
    """The persisted study ``name`` of the sweep in ``folder``; raises ``KeyError`` when there is none."""
    return optuna.load_study(study_name=name, storage=study_storage(folder))


def fail_running_trials(folder: Path, name: str) -> int:
    """Mark the study's RUNNING trials FAIL (their driver is gone); return how many there were."""
    if not has_study(folder):
        return 0
    study = load_study(folder, name)
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in running:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    if running:
        logger.info("study %s: %d trial(s) left RUNNING by the stopped driver are now FAIL", name, len(running))
    return len(running)


def resume_seed(seed: int, finished: int, asked: int) -> int:
    """The sampler's seed when a sweep resumes with ``finished`` trials counted and ``asked`` trials in its
    study (a resume after a resume that finished nothing still gets a new seed); the same inputs give the
    same seed.  A fresh sampler on the sweep's own ``seed`` would repeat the first draws (TPE's random
    start, or random search): those configurations ran already."""
    return int(np.random.SeedSequence([seed, finished, asked]).generate_state(1)[0])


def asked_trials(folder: Path, name: str) -> int:
    """How many trials the study of the sweep in ``folder`` has handed out (0 without a study)."""
    return len(load_study(folder, name).trials) if has_study(folder) else 0
