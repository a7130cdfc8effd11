"""The LM: one object, ``LMSettings``, says where the LM server is and how to call it, for LM Studio and the
bundled llama.cpp server alike; the health check asks the server which models it serves.

``lm_studio(...)`` describes an LM Studio server (the default, ``http://localhost:1234/v1``, 4 parallel
slots, the ``chat`` format); ``bibleqa.local_lm.bundled_lm()`` starts the bundled server and yields its
``LMSettings`` (1 slot, ``completion``, ``n_ctx`` 4096).  Nothing else tells the two apart: every layer reads
the base URL, model, format, slots and ``n_ctx`` from this object.  ``bibleqa.dspy_lm`` turns it into a DSPy
LM.  Two model formats:

* ``chat``: DSPy's ``ChatAdapter`` over ``POST /v1/chat/completions``, for instruct models;
* ``completion``: few-shot documents over ``POST /v1/completions`` (``bibleqa.completion``), for base models.

The API key never enters a config: it is read from ``LM_STUDIO_API_KEY`` (default ``lm-studio``) when a
request is made, and is never logged, written or printed.

Example::

    >>> from bibleqa.lm import lm_studio
    >>> lm = lm_studio(model="mistral-nemo-instruct-2407")
    >>> lm.lm_base, lm.model_format, lm.slots, lm.server
    ('http://localhost:1234/v1', 'chat', 4, 'lmstudio')
    >>> health_check(lm)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import Any, Literal

import requests

from bibleqa.errors import LMUnavailableError, UserError

logger = logging.getLogger(__name__)

DEFAULT_LM_BASE = "http://localhost:1234/v1"
API_KEY_ENV = "LM_STUDIO_API_KEY"
DEFAULT_API_KEY = "lm-studio"
MODEL_FORMATS = ("chat", "completion")
SERVERS = ("lmstudio", "bundled")
HEALTH_CHECK_TIMEOUT_S = 5.0
LM_STUDIO_SLOTS = 4
"""Recent LM Studio releases serve 4 requests in parallel; older ones 1 (pass ``slots=1``, ``--concurrency 1``)."""

ModelFormat = Literal["chat", "completion"]
Server = Literal["lmstudio", "bundled"]


def api_key() -> str:
    """The LM API key, from ``LM_STUDIO_API_KEY`` (default ``lm-studio``)."""
    return os.environ.get(API_KEY_ENV) or DEFAULT_API_KEY


@dataclass(frozen=True)
class LMSettings:
    """Where the LM is and how to call it.  ``lm_model=None`` means the server's first model.

    ``server`` says which kind of server it is (the MLflow param ``lm_studio`` reads it), ``slots`` how many
    requests it serves at once (a sweep never has more LM calls in flight), ``n_ctx`` its context window in
    tokens when known (the search-space check uses it)."""

    lm_base: str = DEFAULT_LM_BASE
    lm_model: str | None = None
    model_format: ModelFormat = "chat"
    temperature: float = 0.0
    max_tokens: int = 96
    timeout: float = 60.0
    retries: int = 2
    cache: bool = True
    server: Server = "lmstudio"
    slots: int = LM_STUDIO_SLOTS
    n_ctx: int | None = None

    def __post_init__(self) -> None:
        if self.model_format not in MODEL_FORMATS:
            raise UserError(f"model_format {self.model_format!r} is not one of {', '.join(MODEL_FORMATS)}")
        if not self.lm_base.startswith(("http://", "https://")):
            raise UserError(f"lm_base {self.lm_base!r} is not an http(s) URL; pass e.g. --lm-base {DEFAULT_LM_BASE}")
        if self.max_tokens < 1:
            raise UserError(f"max_tokens must be at least 1, but got {self.max_tokens=}")
        if self.server not in SERVERS:
            raise UserError(f"server {self.server!r} is not one of {', '.join(SERVERS)}")
        if self.slots < 1:
            raise UserError(f"slots must be at least 1, but got {self.slots=}; pass --concurrency 1 or more")

    def as_params(self) -> dict[str, Any]:
        """The seed's MLflow param names for this LM (no key); ``lm_studio`` is ``true`` for an LM Studio
        server and ``false`` for the bundled one."""
        return {
            "model": self.lm_model,
            "lm_studio_model": self.lm_model,
            "lm_studio_api_url": self.lm_base,
            "model_format": self.model_format,
            "lm_studio": str(self.server == "lmstudio").lower(),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "cache": self.cache,
        }


def lm_studio(
    model: str | None = None,
    base: str = DEFAULT_LM_BASE,
    *,
    model_format: ModelFormat = "chat",
    slots: int = LM_STUDIO_SLOTS,
    n_ctx: int | None = None,
    **call: Any,
) -> LMSettings:
    """An LM Studio server at ``base`` serving ``model`` (``None``: its first model).  ``call`` takes the
    per-call settings of ``LMSettings`` (``temperature``, ``max_tokens``, ``timeout``, ``retries``,
    ``cache``).  Nothing is contacted until the settings are used; the key comes from ``LM_STUDIO_API_KEY``.

    >>> lm_studio(base="http://10.0.0.5:1234/v1", slots=1, cache=False).slots
    1
    """
    return LMSettings(
        lm_base=base, lm_model=model, model_format=model_format, server="lmstudio", slots=slots, n_ctx=n_ctx, **call
    )


def served_models(lm_base: str, timeout: float = HEALTH_CHECK_TIMEOUT_S) -> list[str]:
    """Ids of the models the server lists at ``GET {lm_base}/models``; raises ``LMUnavailableError``."""
    url = f"{lm_base.rstrip('/')}/models"
    try:
        response = requests.get(url, timeout=timeout, headers={"Authorization": f"Bearer {api_key()}"})
    except requests.RequestException:
        raise LMUnavailableError(
            f"LM Studio is not reachable at {lm_base}: start its local server, or pass --lm local"
        ) from None
    try:
        response.raise_for_status()
        return [entry["id"] for entry in response.json().get("data", [])]
    except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError):
        raise LMUnavailableError(
            f"{lm_base} answers, but not as an OpenAI-compatible LM server (GET {url} gave HTTP "
            f"{response.status_code}, {response.headers.get('Content-Type') or 'no content type'}): pass the "
            "server's base URL, ending in /v1, or --lm local"
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
