"""LM slots: what must never exceed the LM server's parallel slots is the requests in flight.

Trials may outnumber the slots, so that one trial's setup, compile bookkeeping and logging overlap with
another's LM work.  Every request to the LM server, from any trial on any node, holds one slot of a named Ray
actor while it is in flight: ``SlotHook`` is a request hook of the trial's LM engine (``bibleqa.engines``),
which runs below DSPy's response cache, so a cache hit holds no slot.  The actor also measures how busy
the slots were.  ``lm_calls_through_slots`` is the requests that went out: the sum over trials of
``lm_calls - lm_cache_hits`` (plus any retried request).

``SlotPool`` is the semaphore itself, plain asyncio (tests drive it without Ray, on a clock of their own);
``LMSlots`` is the same class as a Ray actor, which is what a sweep starts.

Example::

    >>> from sweeps.slots import LMSlots, SlotHook
    >>> slots = LMSlots.options(name="demo-slots").remote(2)  # doctest: +SKIP
    >>> lm = build_lm(settings, request_hooks=[SlotHook("demo-slots")])  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import ray


def affinity_for(slots: int) -> float:
    """Slot affinity pays off on a one-slot server, which caches only the prompt it saw last.  A server
    with several slots picks a slot by prompt similarity itself, and there a kept slot would only idle
    between a trial's calls while others wait."""
    return AFFINITY_S if slots == 1 else 0.0


AFFINITY_S = 0.25
"""How long a freed slot stays reserved for the trial that just used it, when others wait.  A trial's next
call follows within milliseconds, and llama.cpp reuses the KV cache of the prompt prefix it saw last: on
the bundled server, 16 questions with the same demos took 1.35 s a call in a row, 2.21 s a call when two
trials' prompts alternated."""


class SlotPool:
    """A counting semaphore over the LM's slots, shared by every trial of a sweep, with slot affinity: a
    freed slot is kept for its last holder for ``affinity_s`` when other holders wait.  ``clock`` gives
    the seconds that ``stats`` measures with."""

    def __init__(self, slots: int, affinity_s: float = AFFINITY_S, clock: Callable[[], float] = time.monotonic):
        self.slots = slots
        self.affinity_s = affinity_s
        self._clock = clock
        self._free = slots
        self._waiters: deque[tuple[asyncio.Future, str]] = deque()
        self._holders: dict[str, str] = {}  # call in flight -> its holder
        self._reserved: dict[str, list[asyncio.TimerHandle]] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = 0
        self.busy_slot_seconds = 0.0
        self._started: dict[str, float] = {}
        self._first: float | None = None
        self._last: float | None = None

    async def acquire(self, call_id: str, holder: str = "") -> None:
        kept = self._reserved.get(holder)
        if kept:
            kept.pop().cancel()  # the slot we were keeping warm for this holder
            if not kept:
                del self._reserved[holder]
        elif self._free > 0:
            self._free -= 1
        else:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append((waiter, holder))
            await waiter  # the slot is handed over directly
        now = self._clock()
        if self._first is None:
            self._first = now
        self._started[call_id] = now
        self._holders[call_id] = holder
        self.in_flight += 1
        self.calls += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    async def release(self, call_id: str, holder: str = "") -> None:
        started = self._started.pop(call_id, None)
        self._holders.pop(call_id, None)
        if started is None:
            return
        now = self._clock()
        self._last = now
        self.busy_slot_seconds += now - started
        self.in_flight -= 1
        if self._waiters and holder and self.affinity_s > 0:
            timer = asyncio.get_running_loop().call_later(self.affinity_s, self._expire, holder)
            self._reserved.setdefault(holder, []).append(timer)
        else:
            self._hand_over()

    async def forget(self, holder: str) -> None:
        """The holder is done (its trial ended): the slots kept for it go to the waiters now."""
        for timer in self._reserved.pop(holder, []):
            timer.cancel()
            self._hand_over()

    async def drop(self, holder: str) -> None:
        """The holder is gone without a word (its trial's process or node died mid-call): its calls in flight
        free their slots, the slots kept for it go to the waiters, and its own waits end.  Without this a
        trial lost mid-call holds its slot for ever, and with one slot every other trial waits for ever."""
        for waiter, waiting in list(self._waiters):
            if waiting == holder:
                waiter.cancel()
        self._waiters = deque((waiter, waiting) for waiter, waiting in self._waiters if waiting != holder)
        for call_id in [call for call, owner in self._holders.items() if owner == holder]:
            await self.release(call_id)  # no waiters of this holder are left, so nothing is kept for it
        await self.forget(holder)

    def _expire(self, holder: str) -> None:
        """The holder did not come back in time: the kept slot goes to the next waiter."""
        kept = self._reserved.get(holder)
        if kept:
            kept.pop(0)
            if not kept:
                del self._reserved[holder]
        self._hand_over()

    def _hand_over(self) -> None:
        while self._waiters:
            waiter, _ = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    async def stats(self) -> dict[str, float]:
        """``lm_calls_through_slots``, ``max_lm_calls_in_flight``, ``lm_slot_busy_share`` (busy slot-time
        over slots × the span from the first call to the last)."""
        span = (self._last - self._first) if self._first is not None and self._last is not None else 0.0
        share = self.busy_slot_seconds / (self.slots * span) if span > 0 else 0.0
        return {
            "lm_slots": self.slots,
            "lm_calls_through_slots": self.calls,
            "max_lm_calls_in_flight": self.max_in_flight,
            "lm_slot_busy_share": share,  # at most 1: no more than `slots` calls are ever in flight
        }


LMSlots = ray.remote(num_cpus=0, max_concurrency=1000)(SlotPool)
"""``SlotPool`` as a Ray actor: ``LMSlots.options(name=...).remote(slots, affinity_s)``."""


class SlotHook:
    """A request hook that holds one slot of the named ``LMSlots`` actor for the length of each request."""

    def __init__(self, actor_name: str, namespace: str | None = None, holder: str | None = None):
        self.actor_name = actor_name
        self.namespace = namespace
        self.holder = holder or uuid.uuid4().hex  # one per trial's LM: the key of slot affinity
        self._actor: Any = None
        self._lock = threading.Lock()

    def _slots(self) -> Any:
        with self._lock:
            if self._actor is None:
                self._actor = ray.get_actor(self.actor_name, namespace=self.namespace)
            return self._actor

    @contextlib.contextmanager
    def around_request(self, call_id: str | None) -> Iterator[None]:
        request_id = uuid.uuid4().hex  # a retry of the same call is another request, with its own slot
        ray.get(self._slots().acquire.remote(request_id, self.holder))
        try:
            yield
        finally:
            ray.get(self._slots().release.remote(request_id, self.holder))  # in order before our next acquire

    def done(self) -> None:
        """This holder makes no more calls: release any slot kept for it."""
        ray.get(self._slots().forget.remote(self.holder))

    def __getstate__(self) -> dict[str, Any]:
        return {"actor_name": self.actor_name, "namespace": self.namespace, "holder": self.holder}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)
