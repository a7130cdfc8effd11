"""LM slots: what must never exceed the LM server's parallel slots is the requests in flight.

Trials may outnumber the slots, so that one trial's setup, compile bookkeeping and logging overlap with
another's LM work.  Every request to the LM server, from any trial on any node, holds one slot of a named Ray
actor while it is in flight: ``SlotHook`` is a request hook of the trial's LM engine (``bibleqa.engines``),
which runs below DSPy's response cache, so a cache hit holds no slot.  The actor also measures how busy
the slots were.  ``lm_calls_through_slots`` is the requests that went out: the sum over trials of
``lm_calls - lm_cache_hits`` (plus any retried request).

The slots may belong to several LM endpoints (a pool of servers): a request goes to the endpoint whose slot
it holds.  A request that cannot reach its endpoint (refused, reset, timed out) marks it DOWN until its
health check answers again; while every endpoint is DOWN, the requests wait for a slot: the sweep pauses
(``sweeps.tune_run`` stops it when that lasts too long).

``SlotPool`` is the semaphore itself, plain asyncio (tests drive it without Ray, on a clock of their own);
``LMSlots`` is the same class as a Ray actor, which is what a sweep starts.

Example::

    >>> from sweeps.slots import LMSlots, SlotHook
    >>> slots = LMSlots.options(name="demo-slots").remote([("http://127.0.0.1:1234/v1", 2)])  # doctest: +SKIP
    >>> lm = build_lm(settings, request_hooks=[SlotHook("demo-slots")])  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray

from bibleqa.engines import unreachable
from bibleqa.errors import LMUnavailableError
from bibleqa.lm import HEALTH_CHECK_TIMEOUT_S, served_models

logger = logging.getLogger(__name__)


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
HEALTH_BACKOFF_S = (0.5, 10.0)
"""A DOWN endpoint is health-checked after 0.5 s, then twice as long each time up to every 10 s: a restarted
LM Studio or llama.cpp server is noticed within 10 s of answering, and a dead one costs one GET per 10 s."""


@dataclass
class _Endpoint:
    """One LM server of the pool: its slots, whether it answers, and its own figures."""

    lm_base: str
    slots: int
    affinity_s: float
    free: int
    up: bool = True
    in_flight: int = 0
    max_in_flight: int = 0
    calls: int = 0
    down_since: float | None = None
    watcher: asyncio.Task | None = field(default=None, repr=False)


class SlotPool:
    """A counting semaphore over the slots of one or more LM endpoints, shared by every trial of a sweep.

    ``endpoints`` is ``[(lm_base, slots), ...]`` (a single-LM sweep passes one).  ``acquire`` waits for a free
    slot on an endpoint that is UP and returns that endpoint's ``lm_base``; the calls in flight to an endpoint
    never exceed its slots.  Slot affinity, per endpoint: a freed slot is kept for its last holder for
    ``affinity_s`` when others wait (``None``: ``affinity_for(slots)`` of each endpoint).

    A request released with ``unreachable=True`` marks its endpoint DOWN: no new call goes there, and the
    pool asks ``health_check(lm_base)`` after ``backoff[0]`` s, then twice as long each time up to
    ``backoff[1]`` s, until it answers; then the endpoint is UP again.  While every endpoint is DOWN, the
    calls wait at ``acquire``: the sweep pauses.  ``clock`` gives the seconds the figures are measured with,
    ``wall`` the time of day ``lm_down_since`` is given in, ``sleep`` waits between health checks (tests pass a
    fake clock and sleep)."""

    def __init__(
        self,
        endpoints: Sequence[tuple[str, int]],
        affinity_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        health_check: Callable[[str], Awaitable[bool]] | None = None,
        backoff: tuple[float, float] = HEALTH_BACKOFF_S,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        wall: Callable[[], float] = time.time,
    ):
        if not endpoints:
            raise ValueError("a slot pool needs at least one (lm_base, slots) endpoint")
        self._endpoints = {
            lm_base: _Endpoint(lm_base, slots, affinity_for(slots) if affinity_s is None else affinity_s, slots)
            for lm_base, slots in endpoints
        }
        self.slots = sum(endpoint.slots for endpoint in self._endpoints.values())
        self._clock, self._wall, self._sleep = clock, wall, sleep
        self._health_check = health_check or serves_a_model
        self._backoff = backoff
        self._waiters: deque[tuple[asyncio.Future, str]] = deque()
        self._reserved: dict[str, list[tuple[str, asyncio.TimerHandle]]] = {}
        self._last_endpoint: dict[str, str] = {}
        self._started: dict[str, tuple[float, str]] = {}
        self._holders: dict[str, str] = {}  # call in flight -> its holder
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = 0
        self.busy_slot_seconds = 0.0
        self._first: float | None = None
        self._last: float | None = None
        self._all_down_since: float | None = None  # on ``clock``
        self._all_down_wall: float | None = None  # on ``wall``
        self._outage_seconds = 0.0  # every endpoint DOWN, in outages that ended

    async def acquire(self, call_id: str, holder: str = "") -> str:
        """Wait for a slot on an endpoint that is UP; return its ``lm_base``."""
        lm_base = self._take_kept(holder) or self._take_free(holder)
        if lm_base is None:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append((waiter, holder))
            lm_base = await waiter  # the slot is handed over directly
        endpoint = self._endpoints[lm_base]
        now = self._clock()
        if self._first is None:
            self._first = now
        self._started[call_id] = (now, lm_base)
        self._holders[call_id] = holder
        if holder:
            self._last_endpoint[holder] = lm_base
        self.in_flight += 1
        self.calls += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        endpoint.in_flight += 1
        endpoint.calls += 1
        endpoint.max_in_flight = max(endpoint.max_in_flight, endpoint.in_flight)
        return lm_base

    async def release(self, call_id: str, holder: str = "", unreachable: bool = False) -> None:
        """The request ``call_id`` is over; ``unreachable=True``: it failed because its endpoint could not be
        reached (refused, reset, timed out), which marks the endpoint DOWN."""
        started = self._started.pop(call_id, None)
        self._holders.pop(call_id, None)
        if started is None:
            return
        started_at, lm_base = started
        endpoint = self._endpoints[lm_base]
        now = self._clock()
        self._last = now
        self.busy_slot_seconds += now - started_at
        self.in_flight -= 1
        endpoint.in_flight -= 1
        if unreachable:
            self._mark_down(endpoint)
        if endpoint.up and self._waiters and holder and endpoint.affinity_s > 0:
            timer = asyncio.get_running_loop().call_later(endpoint.affinity_s, self._expire, holder, lm_base)
            self._reserved.setdefault(holder, []).append((lm_base, timer))
        else:
            self._hand_over(endpoint)

    async def forget(self, holder: str) -> None:
        """The holder is done (its trial ended): the slots kept for it go to the waiters now."""
        self._last_endpoint.pop(holder, None)
        for lm_base, timer in self._reserved.pop(holder, []):
            timer.cancel()
            self._hand_over(self._endpoints[lm_base])

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

    def _take_kept(self, holder: str) -> str | None:
        kept = self._reserved.get(holder)
        if not kept:
            return None
        lm_base, timer = kept.pop()  # the slot we were keeping warm for this holder
        timer.cancel()
        if not kept:
            del self._reserved[holder]
        return lm_base

    def _take_free(self, holder: str) -> str | None:
        """A free slot on an UP endpoint: the holder's last one if it has one, else the one with most free."""
        open_ = [endpoint for endpoint in self._endpoints.values() if endpoint.up and endpoint.free > 0]
        if not open_:
            return None
        last = self._last_endpoint.get(holder)
        chosen = next((e for e in open_ if e.lm_base == last), None) or max(open_, key=lambda e: e.free)
        chosen.free -= 1
        return chosen.lm_base

    def _expire(self, holder: str, lm_base: str) -> None:
        """The holder did not come back in time: the kept slot goes to the next waiter."""
        kept = self._reserved.get(holder, [])
        for index, (base, _) in enumerate(kept):
            if base == lm_base:
                del kept[index]
                break
        if not kept:
            self._reserved.pop(holder, None)
        self._hand_over(self._endpoints[lm_base])

    def _hand_over(self, endpoint: _Endpoint) -> None:
        """A slot of ``endpoint`` is free: to the first waiter if the endpoint is UP, else back to the free."""
        while endpoint.up and self._waiters:
            waiter, _ = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(endpoint.lm_base)
                return
        endpoint.free += 1

    def _mark_down(self, endpoint: _Endpoint) -> None:
        if not endpoint.up:
            return
        endpoint.up = False
        endpoint.down_since = self._clock()
        logger.warning("LM endpoint %s is unreachable: DOWN; checking it with backoff", endpoint.lm_base)
        for holder, kept in list(self._reserved.items()):  # no slot stays kept on a DOWN endpoint
            for lm_base, timer in [entry for entry in kept if entry[0] == endpoint.lm_base]:
                timer.cancel()
                kept.remove((lm_base, timer))
                endpoint.free += 1
            if not kept:
                del self._reserved[holder]
        if not any(other.up for other in self._endpoints.values()):
            self._all_down_since, self._all_down_wall = self._clock(), self._wall()
            logger.warning("every LM endpoint is DOWN: LM calls wait until one answers")
        endpoint.watcher = asyncio.get_running_loop().create_task(self._watch(endpoint))

    async def _watch(self, endpoint: _Endpoint) -> None:
        """Health-check a DOWN endpoint with backoff until it answers; then it is UP."""
        delay, most = self._backoff
        while True:
            await self._sleep(delay)
            try:
                if await self._health_check(endpoint.lm_base):
                    break
            except Exception:  # a health check that fails to run says the endpoint is not back
                logger.debug("health check of %s failed", endpoint.lm_base, exc_info=True)
            delay = min(delay * 2, most)
        self._mark_up(endpoint)

    def _mark_up(self, endpoint: _Endpoint) -> None:
        now = self._clock()
        logger.warning(
            "LM endpoint %s answers again after %.0f s: UP", endpoint.lm_base, now - (endpoint.down_since or now)
        )
        endpoint.up, endpoint.down_since, endpoint.watcher = True, None, None
        if self._all_down_since is not None:
            self._outage_seconds += now - self._all_down_since
            self._all_down_since = self._all_down_wall = None
        free, endpoint.free = endpoint.free, 0
        for _ in range(free):  # the waiters get the slots it has free
            self._hand_over(endpoint)

    async def stats(self) -> dict[str, Any]:
        """The figures a sweep logs (``SLOT_FIGURES``: ``lm_slots``, ``lm_calls_through_slots``,
        ``max_lm_calls_in_flight``, ``lm_slot_busy_share`` (busy slot-time over slots × the span from the
        first call to the last), ``lm_outage_seconds`` (every endpoint DOWN)), and per endpoint
        ``lm_calls_by_endpoint``, ``max_in_flight_by_endpoint``; the outage under way: ``lm_down`` (the
        endpoints DOWN), ``lm_down_since`` (time of day every endpoint has been DOWN since, or ``None``) and
        ``lm_down_for`` (seconds, 0 when one is UP)."""
        span = (self._last - self._first) if self._first is not None and self._last is not None else 0.0
        share = self.busy_slot_seconds / (self.slots * span) if span > 0 else 0.0
        down_for = self._clock() - self._all_down_since if self._all_down_since is not None else 0.0
        endpoints = self._endpoints.values()
        return {
            "lm_slots": self.slots,
            "lm_calls_through_slots": self.calls,
            "max_lm_calls_in_flight": self.max_in_flight,
            "lm_slot_busy_share": share,  # at most 1: no more than `slots` calls are ever in flight
            "lm_outage_seconds": self._outage_seconds + down_for,
            "lm_calls_by_endpoint": {endpoint.lm_base: endpoint.calls for endpoint in endpoints},
            "max_in_flight_by_endpoint": {endpoint.lm_base: endpoint.max_in_flight for endpoint in endpoints},
            "lm_down": [endpoint.lm_base for endpoint in endpoints if not endpoint.up],
            "lm_down_since": self._all_down_wall,
            "lm_down_for": down_for,
        }


SLOT_FIGURES = (
    "lm_slots",
    "lm_calls_through_slots",
    "max_lm_calls_in_flight",
    "lm_slot_busy_share",
    "lm_outage_seconds",
)
"""The keys of ``SlotPool.stats`` that a sweep logs on its parent run as metrics."""


def slot_figures(stats: dict[str, Any]) -> dict[str, float]:
    """The numbers of ``stats`` that the parent run logs as metrics (``SLOT_FIGURES``)."""
    return {name: float(stats[name]) for name in SLOT_FIGURES if name in stats}


async def serves_a_model(lm_base: str) -> bool:
    """The health check of a DOWN endpoint: ``GET {lm_base}/models`` answers with at least one model
    (``bibleqa.lm.served_models``), so an LM Studio whose model was unloaded stays DOWN."""
    try:
        return bool(await asyncio.to_thread(served_models, lm_base, HEALTH_CHECK_TIMEOUT_S))
    except LMUnavailableError:
        return False


LMSlots = ray.remote(num_cpus=0, max_concurrency=1000)(SlotPool)
"""``SlotPool`` as a Ray actor: ``LMSlots.options(name=...).remote([(lm_base, slots)], affinity_s)``."""


class SlotHook:
    """A request hook that holds one slot of the named ``LMSlots`` actor for the length of each request,
    and sends the request to that slot's endpoint.  ``calls_by_endpoint`` counts the requests it routed to
    each ``lm_base``."""

    def __init__(self, actor_name: str, namespace: str | None = None, holder: str | None = None):
        self.actor_name = actor_name
        self.namespace = namespace
        self.holder = holder or uuid.uuid4().hex  # one per trial's LM: the key of slot affinity
        self.calls_by_endpoint: dict[str, int] = {}
        self._actor: Any = None
        self._lock = threading.Lock()

    def _slots(self) -> Any:
        with self._lock:
            if self._actor is None:
                self._actor = ray.get_actor(self.actor_name, namespace=self.namespace)
            return self._actor

    @contextlib.contextmanager
    def around_request(self, call_id: str | None) -> Iterator[str]:
        """Wait for a slot (while every endpoint is DOWN, that is the pause); yield the ``lm_base`` to send
        the request to.  A request that fails because its endpoint is unreachable marks the endpoint DOWN."""
        request_id = uuid.uuid4().hex  # a retry of the same call is another request, with its own slot
        lm_base = ray.get(self._slots().acquire.remote(request_id, self.holder))
        with self._lock:
            self.calls_by_endpoint[lm_base] = self.calls_by_endpoint.get(lm_base, 0) + 1
        failed_unreachable = False
        try:
            yield lm_base
        except BaseException as error:
            failed_unreachable = unreachable(error)
            raise
        finally:  # in order before our next acquire
            ray.get(self._slots().release.remote(request_id, self.holder, failed_unreachable))

    def done(self) -> None:
        """This holder makes no more calls: release any slot kept for it."""
        ray.get(self._slots().forget.remote(self.holder))

    def __getstate__(self) -> dict[str, Any]:
        return {"actor_name": self.actor_name, "namespace": self.namespace, "holder": self.holder}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)
