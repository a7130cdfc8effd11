"""The LM connection: settings, the health check, and the DSPy LM and adapter for a model format.

LM Studio is the default (``http://localhost:1234/v1``); the bundled llama.cpp server (``bibleqa.local_lm``)
serves the same OpenAI-compatible API.  Two model formats:

* ``chat``: DSPy's ``ChatAdapter`` over litellm's ``lm_studio/`` provider, for instruct models.  The JSON
  fallback is off, because LM Studio rejects ``response_format: json_object`` (dspy#8503).  litellm's
  ``lm_studio/`` provider sends ``max_tokens``; DSPy's ``openai/`` route sends ``max_completion_tokens``,
  which llama.cpp ignores (4,082 tokens were generated for ``max_tokens=20``).
* ``completion``: few-shot documents over ``/v1/completions`` (``bibleqa.completion``), for base models.

The API key never enters a config: it is read from ``LM_STUDIO_API_KEY`` (default ``lm-studio``) when a
request is made, and is never logged, written or printed.

Example::

    >>> from bibleqa.lm import LMSettings, health_check
    >>> settings = LMSettings(lm_base="http://127.0.0.1:1234/v1")
    >>> health_check(settings)  # doctest: +SKIP
    ['gemma-3-270m']
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

import requests

from bibleqa.errors import LMUnavailableError, UserError

logger = logging.getLogger(__name__)

DEFAULT_LM_BASE = "http://localhost:1234/v1"
API_KEY_ENV = "LM_STUDIO_API_KEY"
DEFAULT_API_KEY = "lm-studio"
MODEL_FORMATS = ("chat", "completion")
HEALTH_CHECK_TIMEOUT_S = 5.0

ModelFormat = Literal["chat", "completion"]


def api_key() -> str:
    """The LM API key, from ``LM_STUDIO_API_KEY`` (default ``lm-studio``)."""
    return os.environ.get(API_KEY_ENV) or DEFAULT_API_KEY


@dataclass(frozen=True)
class LMSettings:
    """Where the LM is and how to call it.  ``lm_model=None`` means the server's first model."""

    lm_base: str = DEFAULT_LM_BASE
    lm_model: str | None = None
    model_format: ModelFormat = "chat"
    temperature: float = 0.0
    max_tokens: int = 96
    timeout: float = 60.0
    retries: int = 2
    cache: bool = True

    def __post_init__(self) -> None:
        if self.model_format not in MODEL_FORMATS:
            raise UserError(f"model_format {self.model_format!r} is not one of {', '.join(MODEL_FORMATS)}")
        if not self.lm_base.startswith(("http://", "https://")):
            raise UserError(f"lm_base {self.lm_base!r} is not an http(s) URL; pass e.g. --lm-base {DEFAULT_LM_BASE}")
        if self.max_tokens < 1:
            raise UserError(f"max_tokens must be at least 1, but got {self.max_tokens=}")

    def as_params(self, *, lm_studio: bool) -> dict[str, Any]:
        """The seed's MLflow param names for this LM (no key); ``lm_studio`` says whether it is LM Studio
        (``--lm lmstudio``) rather than the bundled server."""
        return {
            "model": self.lm_model,
            "lm_studio_model": self.lm_model,
            "lm_studio_api_url": self.lm_base,
            "model_format": self.model_format,
            "lm_studio": str(lm_studio).lower(),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "cache": self.cache,
        }


def served_models(lm_base: str, timeout: float = HEALTH_CHECK_TIMEOUT_S) -> list[str]:
    """Ids of the models the server lists at ``GET {lm_base}/models``; raises ``LMUnavailableError``."""
    url = f"{lm_base.rstrip('/')}/models"
    try:
        response = requests.get(url, timeout=timeout, headers={"Authorization": f"Bearer {api_key()}"})
        response.raise_for_status()
        return [entry["id"] for entry in response.json().get("data", [])]
    except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError):
        raise LMUnavailableError(
            f"LM Studio is not reachable at {lm_base}: start its local server, or pass --lm local"
        ) from None


def health_check(settings: LMSettings) -> LMSettings:
    """Check that the server answers and serves the model, in seconds; return settings with the model set.

    Raises ``LMUnavailableError`` with one line: the server is unreachable, it serves no model, or the
    requested model is not among the ones it lists.
    """
    models = served_models(settings.lm_base)
    if not models:
        raise LMUnavailableError(f"the LM server at {settings.lm_base} has no model loaded: load one in LM Studio")
    if settings.lm_model is None:
        return replace(settings, lm_model=models[0])
    if settings.lm_model not in models:
        raise LMUnavailableError(
            f"model {settings.lm_model!r} is not loaded at {settings.lm_base}; it serves: {', '.join(models)} "
            "(pass one with --lm-model)"
        )
    return settings


def build_lm(settings: LMSettings, callbacks: list[Any] | None = None) -> Any:
    """The ``dspy.LM`` for ``settings`` (call ``health_check`` first so that ``lm_model`` is set).

    ``callbacks`` are DSPy callbacks run around every call of this LM (the sweeps use one to hold an LM
    slot while a call is in flight)."""
    import dspy

    if settings.lm_model is None:
        raise UserError("no LM model named: pass --lm-model, or run the health check first")
    common = {
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
        "cache": settings.cache,
        "num_retries": settings.retries,
        "callbacks": callbacks or [],
    }
    if settings.model_format == "completion":
        from bibleqa.completion import CompletionEngine

        engine = CompletionEngine(settings.lm_base, settings.lm_model, timeout=settings.timeout)
        return dspy.LM(f"lm_studio/{settings.lm_model}", engine=engine, **common)
    return dspy.LM(
        f"lm_studio/{settings.lm_model}",
        engine="litellm",
        api_base=settings.lm_base,
        api_key=api_key(),
        timeout=settings.timeout,
        **common,
    )


@contextlib.contextmanager
def lm_context(settings: LMSettings, callbacks: list[Any] | None = None) -> Iterator[Any]:
    """``with lm_context(settings) as lm:`` runs DSPy calls in this block on the LM and adapter of ``settings``
    (with ``dspy.context``, so other threads and the global settings are untouched)."""
    import dspy

    lm = build_lm(settings, callbacks)
    with dspy.context(lm=lm, adapter=build_adapter(settings.model_format)):
        yield lm


def build_adapter(model_format: ModelFormat) -> Any:
    """The DSPy adapter for a model format."""
    if model_format == "completion":
        from bibleqa.completion import CompletionAdapter

        return CompletionAdapter()
    import dspy

    return dspy.ChatAdapter(use_json_adapter_fallback=False)
