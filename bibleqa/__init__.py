"""bibleqa: a DSPy Bible question-answering program, its data, metrics and LM connection.

Data flow: data set (``dataset``) -> program (``program``, over ``retrieval`` and the LM from ``lm``)
-> metrics (``metrics``) -> one tracked MLflow run (``train``).  The sweep package ``sweeps`` calls
the same pieces once per trial.

Try it: ``bibleqa train --lm local`` (see the README).
"""

from __future__ import annotations

import os

# litellm otherwise spends seconds fetching its model cost map from the web at import time.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"
