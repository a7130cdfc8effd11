"""sweeps: Ray Tune + Optuna sweeps over the ``bibleqa`` program, each trial an MLflow child run.

Data flow: search space (``space``) -> sweep driver (``run``, with ``search`` and ``slots``) -> trial
(``trial``: compile, evaluate) -> report -> MLflow child run (``mlflow_logging``) -> parent summary
(``summary``) -> winner (``pick``).

    bibleqa-sweep validate search_spaces/smoke.yaml
    bibleqa-sweep run search_spaces/smoke.yaml --trials 6 --lm local
    bibleqa-sweep pick --ask "Who built the ark?" --lm local
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
