"""LM accounting: every call our DSPy LM makes, whether the server or DSPy's response cache answers it.

``LMMeter`` is a DSPy callback (``on_lm_start`` / ``on_lm_end``) that ``bibleqa.dspy_lm.build_lm`` puts on
every LM it builds.  DSPy runs callbacks around ``BaseLM.__call__``, before its cache lookup, and
``LM.copy()`` carries them over, so the meter sees the calls of every copy too (BootstrapFewShot's rounds
after the first, MIPROv2's proposer).  The same meter is a request hook of the LM's engine
(``bibleqa.engines``), which DSPy calls only on a cache miss: a call that ends without error and never
reached the engine was a cache hit.  What it counts:

- ``lm_calls``: every LM call, answered by the server or by the cache, or failed.  A property of the
  configuration, not of how warm the cache was: the last tie-break between equally good trials uses it.
- ``lm_cache_hits``: the calls the response cache answered; they sent nothing and held no LM slot.  So
  ``lm_calls - lm_cache_hits`` is the calls that went to the server: the requests it received, unless a
  call was retried (each retry is one more request).
- ``prompt_tokens``, ``completion_tokens``: the tokens of every answered call as the server reported them
  when it answered; a cache hit counts the tokens of the answer it replays (read from that answer, kept in
  the LM's history with the call's outputs), so they too do not depend on the cache.

Example::

    >>> from bibleqa.usage import LMMeter, LMUsage
    >>> meter = LMMeter()
    >>> meter.on_lm_start("c1", None, {}); meter.on_lm_end("c1", ["Noah"])   # no request went out: cached
    >>> meter.usage
    LMUsage(lm_calls=1, lm_cache_hits=1, prompt_tokens=0, completion_tokens=0)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

from dspy.utils.callback import BaseCallback

HISTORY_LOOKBACK = 64
"""How far back in the LM's history to look for a call's entry; calls of other threads may come after it."""


@dataclass(frozen=True)
class LMUsage:
    """LM calls and tokens (see the module docstring for what each counts)."""

    lm_calls: int = 0
    lm_cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: LMUsage) -> LMUsage:
        return LMUsage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __sub__(self, other: LMUsage) -> LMUsage:
        return LMUsage(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class LMMeter(BaseCallback):
    """Counts an LM's calls, cache hits and tokens; a DSPy callback and a request hook of its engine.

    Thread-safe: a program scored on several threads shares one meter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, Any] = {}  # call id -> the LM (or copy) that makes the call
        self._sent: set[str] = set()
        self._usage = LMUsage()

    @property
    def usage(self) -> LMUsage:
        """The totals so far."""
        with self._lock:
            return self._usage

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        with self._lock:
            self._open[call_id] = instance

    @contextlib.contextmanager
    def around_request(self, call_id: str | None) -> Iterator[None]:
        """The engine is about to send a request for call ``call_id``: it is no cache hit."""
        if call_id is not None:
            with self._lock:
                if call_id in self._open:
                    self._sent.add(call_id)
        yield

    def on_lm_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        with self._lock:
            lm = self._open.pop(call_id, None)
            sent = call_id in self._sent
            self._sent.discard(call_id)
        prompt, completion = _tokens(lm, outputs) if exception is None else (0, 0)
        with self._lock:
            self._usage = self._usage + LMUsage(1, int(exception is None and not sent), prompt, completion)

    def __getstate__(self) -> dict[str, Any]:
        return {}  # counts belong to the process that makes the calls

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()


def meter_of(lm: Any) -> LMMeter | None:
    """The ``LMMeter`` among ``lm``'s callbacks (``None`` for an LM that ``build_lm`` did not build)."""
    return next((callback for callback in getattr(lm, "callbacks", None) or [] if isinstance(callback, LMMeter)), None)


class UsageMeter:
    """The LM usage of a block: ``with UsageMeter(lm) as meter: ...; meter.usage`` (the calls of every copy of
    ``lm`` made inside the block; nothing for an LM without an ``LMMeter``)."""

    def __init__(self, lm: Any):
        self.meter = meter_of(lm)
        self.usage = LMUsage()

    def __enter__(self) -> UsageMeter:
        self._start = self.meter.usage if self.meter else LMUsage()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.meter is not None:
            self.usage = self.meter.usage - self._start


def _tokens(lm: Any, outputs: Any) -> tuple[int, int]:
    """(prompt, completion) tokens of the call that returned ``outputs``: DSPy records the call in the LM's
    history with these very outputs, and the response there keeps the server's usage, cached or not."""
    history = getattr(lm, "history", None) or []
    for entry in reversed(history[-HISTORY_LOOKBACK:]):
        if entry.get("outputs") is outputs:
            usage = getattr(entry.get("response"), "usage", None)
            if usage is not None and hasattr(usage, "input_tokens"):  # an lm15 Response, fresh or cached
                return int(usage.input_tokens or 0), int(usage.output_tokens or 0)
            usage = entry.get("usage") or {}
            return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return 0, 0
