"""When the LM stops answering mid-sweep: the sweep pauses at its LM slots, says so, and stops after
``--lm-outage-limit`` minutes, to be resumed.

The pause itself is ``sweeps.slots``: a request that cannot reach the LM marks it DOWN, and the requests
wait for a slot until its health check answers again (DSPy's retry of the failed request is one of them).
``OutageWatch`` is a Tune ``Stopper`` that the driver's Tune loop asks, at most once a second, how long
every LM endpoint has been DOWN (``SlotPool.stats``): it echoes one line when the pause starts and one
when it ends, and past the limit it stops every trial (their runs end KILLED, ``sweeps.mlflow_logging``)
and keeps the ``LMOutage`` that ``sweeps.tune_run`` raises once Tune has stopped.  ``sweeps.driver``
then ends the parent KILLED with a summary, as on Ctrl-C, and raises ``SweepStopped``.

Example::

    >>> from sweeps.lm_outage import LMOutage
    >>> str(LMOutage(["http://127.0.0.1:1234/v1"], since=0.0, minutes=10.0)).split(" since ")[0]
    'the LM at http://127.0.0.1:1234/v1 has not answered'
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import ray
from ray.tune import Stopper

from sweeps.pool_watch import EndpointWatch

logger = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0
"""How often Tune's loop asks the slots actor about an outage (the loop itself runs many times a second)."""


class LMOutage(Exception):
    """Every LM endpoint has been unreachable for ``minutes`` (the limit), since ``since`` (epoch seconds)."""

    def __init__(self, lm_bases: Sequence[str], since: float, minutes: float):
        self.lm_bases, self.since, self.minutes = list(lm_bases), since, minutes
        at = datetime.fromtimestamp(since).strftime("%H:%M:%S")
        super().__init__(
            f"the LM at {', '.join(self.lm_bases)} has not answered since {at} ({minutes:g} min, --lm-outage-limit)"
        )


class OutageWatch(Stopper):
    """A Tune stopper that stops the whole sweep once every LM endpoint has been DOWN for ``limit_minutes``;
    ``outage`` is then the ``LMOutage``.  ``echo`` gets a line when the sweep pauses and when it goes on.  The
    same look at the slots (once a second) goes to ``endpoints``, which logs each endpoint of a pool that goes
    DOWN or comes back (``sweeps.pool_watch``)."""

    def __init__(
        self,
        slots_actor: Any,
        limit_minutes: float,
        echo: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        endpoints: EndpointWatch | None = None,
    ):
        self.slots_actor = slots_actor
        self.endpoints = endpoints
        self.limit_minutes = limit_minutes
        self.echo = echo
        self.outage: LMOutage | None = None
        self._clock = clock
        self._checked = float("-inf")
        self._paused = False

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles the Tuner's stoppers into its ``tuner.pkl`` (for ``Tuner.restore``, which the sweep never
        uses): without ``echo``, which may hold anything (a caller's server, a lock), as the MLflow callback."""
        return {**self.__dict__, "echo": None}

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False  # no single trial is stopped for an outage: the whole sweep is

    def stop_all(self) -> bool:
        if self.outage is not None:
            return True
        now = self._clock()
        if now - self._checked < CHECK_EVERY_S:
            return False
        self._checked = now
        try:
            stats = ray.get(self.slots_actor.stats.remote(), timeout=10)
        except Exception:  # the actor is busy or gone: ask again next time
            logger.warning("could not ask the LM slots about an outage", exc_info=True)
            return False
        if self.endpoints is not None:
            self.endpoints.look_at(stats)
        return self.look_at(stats)

    def look_at(self, stats: dict[str, Any]) -> bool:
        """Take in the slot pool's ``stats``; whether the sweep must stop."""
        down_for, since = stats.get("lm_down_for", 0.0), stats.get("lm_down_since")
        if since is None or down_for <= 0:
            if self._paused:
                self._paused = False
                self.echo("the LM answers again: the sweep goes on")
            return False
        if not self._paused:
            self._paused = True
            at = datetime.fromtimestamp(since).strftime("%H:%M:%S")
            self.echo(
                f"the LM at {', '.join(stats['lm_down'])} has not answered since {at}: the sweep pauses, and "
                f"stops after {self.limit_minutes:g} min (--lm-outage-limit) if it does not come back"
            )
        if down_for >= self.limit_minutes * 60:
            self.outage = LMOutage(stats["lm_down"], since, self.limit_minutes)
            logger.info("%s: stopping the sweep", self.outage)
            return True
        return False
