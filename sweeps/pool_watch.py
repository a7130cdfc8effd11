"""Which LM endpoints of the pool are out, told in the sweep's log: ``EndpointWatch`` is a Tune ``Stopper``
that never stops anything; at most once a second the driver's Tune loop asks it, and it asks the slots actor
(``SlotPool.stats``) which endpoints are DOWN.  An endpoint that goes DOWN gets a warning line, "taken out of
the pool", and one that comes back a line "back in the pool".  The slots actor logs the same in its own
Ray worker, whose log is not the sweep's, so the driver says it where a person looks: the console and
``sweep.log``.  (When every endpoint is DOWN, ``sweeps.lm_outage`` says that the sweep pauses.)

Example::

    >>> watch = EndpointWatch(slots_actor=None, pool_size=2)
    >>> watch.look_at({"lm_down": ["http://b:1234/v1"]})  # logs: LM endpoint http://b:1234/v1 is DOWN ...
    >>> sorted(watch.down)
    ['http://b:1234/v1']
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.tune import Stopper

from sweeps.lm_outage import CHECK_EVERY_S

logger = logging.getLogger(__name__)


class EndpointWatch(Stopper):
    """Logs each LM endpoint that goes DOWN or comes back UP; stops nothing."""

    def __init__(self, slots_actor: Any, pool_size: int, clock: Callable[[], float] = time.monotonic):
        self.slots_actor = slots_actor
        self.pool_size = pool_size
        self.down: set[str] = set()
        self._clock = clock
        self._checked = float("-inf")

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        now = self._clock()
        if now - self._checked >= CHECK_EVERY_S:
            self._checked = now
            try:
                self.look_at(ray.get(self.slots_actor.stats.remote(), timeout=10))
            except Exception:  # the actor is busy or gone: ask again next time
                logger.debug("could not ask the LM slots which endpoints are down", exc_info=True)
        return False

    def look_at(self, stats: dict[str, Any]) -> None:
        """Take in the slot pool's ``stats``: log what changed since the last look."""
        down = set(stats.get("lm_down") or ())
        for lm_base in sorted(down - self.down):
            if self.pool_size > 1:  # a pool of one: sweeps.lm_outage says that the sweep pauses
                logger.warning("LM endpoint %s is DOWN: taken out of the pool, %d of %d endpoint(s) left; it is "
                               "health-checked until it answers", lm_base, self.pool_size - len(down),
                               self.pool_size)  # fmt: skip
        for lm_base in sorted(self.down - down):
            if self.pool_size > 1:
                logger.warning("LM endpoint %s answers again: back in the pool", lm_base)
        self.down = down
