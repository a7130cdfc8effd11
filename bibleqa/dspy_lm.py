"""The DSPy LM and adapter for an ``LMSettings``: our own engine per model format, and a meter on every call.

``build_lm`` gives a ``dspy.LM`` whose requests go through ``bibleqa.engines`` (``ChatEngine`` or
``CompletionEngine``) and whose calls an ``LMMeter`` counts (``bibleqa.usage``).  ``request_hooks`` run
around each HTTP request, below DSPy's response cache (a sweep holds an LM slot there).  The program holds no
LM: callers pick one with ``lm_context(settings)`` (``dspy.context``, so other threads and the global
settings are untouched).

Example::

    >>> from bibleqa.lm import lm_studio
    >>> from bibleqa.dspy_lm import build_lm
    >>> lm = build_lm(lm_studio(model="qwen2.5-7b-instruct"))
    >>> type(lm.callbacks[0]).__name__, lm.kwargs["max_tokens"]
    ('LMMeter', 96)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import dspy

from bibleqa.completion import CompletionAdapter
from bibleqa.engines import ChatEngine, CompletionEngine, RequestHook
from bibleqa.errors import UserError
from bibleqa.lm import LMSettings, ModelFormat
from bibleqa.usage import LMMeter


def build_lm(settings: LMSettings, request_hooks: Sequence[RequestHook] = ()) -> dspy.LM:
    """The ``dspy.LM`` for ``settings`` (call ``health_check`` first so that ``lm_model`` is set), with an
    ``LMMeter`` as its callback; ``request_hooks`` run around every request it sends."""
    if settings.lm_model is None:
        raise UserError("no LM model named: pass --lm-model, or run the health check first")
    meter = LMMeter()
    engine_class = CompletionEngine if settings.model_format == "completion" else ChatEngine
    engine = engine_class(settings.lm_base, settings.lm_model, timeout=settings.timeout, hooks=[meter, *request_hooks])
    return dspy.LM(
        f"lm_studio/{settings.lm_model}",
        engine=engine,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        cache=settings.cache,
        num_retries=settings.retries,
        callbacks=[meter],
    )


@contextlib.contextmanager
def lm_context(settings: LMSettings, request_hooks: Sequence[RequestHook] = ()) -> Iterator[dspy.LM]:
    """``with lm_context(settings) as lm:`` runs DSPy calls in this block on the LM and adapter of ``settings``."""
    lm = build_lm(settings, request_hooks)
    with dspy.context(lm=lm, adapter=build_adapter(settings.model_format)):
        yield lm


def build_adapter(model_format: ModelFormat) -> Any:
    """The DSPy adapter for a model format.  The chat format's JSON fallback is off: LM Studio rejects
    ``response_format: json_object`` (dspy#8503)."""
    if model_format == "completion":
        return CompletionAdapter()
    return dspy.ChatAdapter(use_json_adapter_fallback=False)
