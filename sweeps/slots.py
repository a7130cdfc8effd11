"""LM slots: what must never exceed the LM server's parallel slots is the LM calls in flight.

Trials may outnumber the slots, so that one trial's setup, compile bookkeeping and logging overlap with
another's LM work.  Every LM call of every trial, on any node, holds one slot of a named Ray actor while
it is in flight (a DSPy callback around the call).  The actor also measures how busy the slots were.

Example::

    >>> import ray
    >>> from sweeps.slots import LMSlots, SlotCallback
    >>> slots = LMSlots.options(name="demo-slots").remote(2)  # doctest: +SKIP
    >>> lm = build_lm(settings, callbacks=[SlotCallback("demo-slots")])  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import ray
from dspy.utils.callback import BaseCallback

BUNDLED_LM_SLOTS = 1
"""llama.cpp's server as we start it serves one request at a time (16 short calls: 1.6 s one by one,
1.7 s four at a time)."""
LM_STUDIO_SLOTS = 4
"""Recent LM Studio releases serve 4 requests in parallel; older ones 1 (pass --concurrency 1)."""


def auto_slots(lm_studio: bool) -> int:
    """The parallel slots to assume for ``--concurrency auto``."""
    return LM_STUDIO_SLOTS if lm_studio else BUNDLED_LM_SLOTS


@ray.remote(num_cpus=0, max_concurrency=1000)
class LMSlots:
    """A counting semaphore over the LM's slots, shared by every trial of a sweep."""

    def __init__(self, slots: int):
        self.slots = slots
        self._semaphore = asyncio.Semaphore(slots)
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = 0
        self.busy_slot_seconds = 0.0
        self._started: dict[str, float] = {}
        self._first = self._last = None

    async def acquire(self, call_id: str) -> None:
        await self._semaphore.acquire()
        now = time.monotonic()
        self._first = self._first or now
        self._started[call_id] = now
        self.in_flight += 1
        self.calls += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    async def release(self, call_id: str) -> None:
        started = self._started.pop(call_id, None)
        if started is None:
            return
        now = time.monotonic()
        self._last = now
        self.busy_slot_seconds += now - started
        self.in_flight -= 1
        self._semaphore.release()

    async def stats(self) -> dict[str, float]:
        """``lm_calls_through_slots``, ``max_lm_calls_in_flight``, ``lm_slot_busy_share`` (busy slot-time
        over slots × the span from the first call to the last)."""
        span = (self._last - self._first) if self._first and self._last else 0.0
        share = self.busy_slot_seconds / (self.slots * span) if span > 0 else 0.0
        return {
            "lm_slots": self.slots,
            "lm_calls_through_slots": self.calls,
            "max_lm_calls_in_flight": self.max_in_flight,
            "lm_slot_busy_share": min(share, 1.0),
        }


class SlotCallback(BaseCallback):
    """Holds one slot of the named ``LMSlots`` actor for the length of each LM call."""

    def __init__(self, actor_name: str, namespace: str | None = None):
        self.actor_name = actor_name
        self.namespace = namespace
        self._actor: Any = None
        self._lock = threading.Lock()

    def _slots(self) -> Any:
        with self._lock:
            if self._actor is None:
                self._actor = ray.get_actor(self.actor_name, namespace=self.namespace)
            return self._actor

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        ray.get(self._slots().acquire.remote(call_id))

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        self._slots().release.remote(call_id)

    def __getstate__(self) -> dict[str, Any]:
        return {"actor_name": self.actor_name, "namespace": self.namespace}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)
