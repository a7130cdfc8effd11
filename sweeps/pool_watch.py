"""Which LM endpoints of the pool are out, told in the sweep's log.  ``EndpointWatch.look_at`` takes the slot
pool's ``stats`` (``SlotPool.stats``), which ``sweeps.lm_outage.OutageWatch`` asks the slots actor for at most
once a second from the driver's Tune loop: an endpoint that goes DOWN gets a warning line, "taken out of the
pool", and one that comes back a line "back in the pool".  The slots actor logs the same in its own Ray
worker, whose log is not the sweep's, so the driver says it where a person looks: the console and
``sweep.log``.  (When every endpoint is DOWN, ``sweeps.lm_outage`` says that the sweep pauses.)

Example::

    >>> watch = EndpointWatch(pool_size=2)
    >>> watch.look_at({"lm_down": ["http://b:1234/v1"]})  # logs: LM endpoint http://b:1234/v1 is DOWN ...
    >>> sorted(watch.down)
    ['http://b:1234/v1']
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


class EndpointWatch:
    """Logs each LM endpoint that goes DOWN or comes back UP."""

    def __init__(self, pool_size: int):
        self.pool_size = pool_size
        self.down: set[str] = set()

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
