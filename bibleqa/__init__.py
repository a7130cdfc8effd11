"""bibleqa: a DSPy Bible question-answering program, its data, metrics and LM connection.

Data flow: data set (``dataset``) -> program (``program``, over ``retrieval`` and the LM from ``lm`` and
``dspy_lm``) -> metrics (``metrics``) -> one tracked MLflow run (``train``).  The sweep package ``sweeps``
calls the same pieces once per trial.

Try it: ``bibleqa train --lm local`` (see the README).
"""

from __future__ import annotations

__version__ = "0.1.0"
