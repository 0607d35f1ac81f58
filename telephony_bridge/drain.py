"""Graceful drain of one replica on SIGTERM (a rolling restart, a scale-down, a node drain).

What a draining replica does, in order:

1. **Unready at once**: ``GET /readyz`` answers 503, so the load balancer (a Kubernetes Service,
   the compose file's proxy) stops sending it new requests. ``/healthz`` (liveness) stays 200.
2. **No new calls**: ``/twiml`` and ``/twiml/continue`` answer ``<Redirect>`` to the same URL on
   the public address (another replica answers it), a new media stream is closed at once (Twilio
   then asks ``<Connect action>``, which the load balancer sends elsewhere).
3. **Live calls finish on their own** for ``finish_s``; those still up then are **handed over**
   at their next safe moment (nobody speaking, no reply or tool under way, and nothing the caller
   said since Gemini's newest resumption handle, so the resumed session has heard it all), or at
   ``handover_s`` at the latest: the stream is closed with the call's state left ``active`` in the shared store,
   Twilio asks ``<Connect action>`` (``/twiml/continue``), another replica opens a new stream and
   resumes the Gemini session from the stored resumption handle (no greeting again). The caller
   hears silence for the reconnect, at most the "one moment" notice.
4. When no call is left (or at ``max_s``) the process exits.

:class:`DrainPlan` decides (pure, time passed in); :func:`run_drain` is the asyncio side.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .log import log_event

if TYPE_CHECKING:
    from .bridge import CallBridge

logger = logging.getLogger("telephony_bridge.drain")

#: The end reason of a handed-over stream: "bridge-closed…" keeps the call's state active.
HANDOVER_REASON = "bridge-closed:drain-handover"


@dataclass(slots=True)
class DrainPlan:
    """When each live call of a draining replica is handed over."""

    finish_s: float = 10.0
    handover_s: float = 25.0
    max_s: float = 40.0
    started_at: float | None = None

    def begin(self, now: float) -> bool:
        """SIGTERM: returns False when the drain had already begun."""
        if self.started_at is not None:
            return False
        self.started_at = now
        return True

    @property
    def draining(self) -> bool:
        return self.started_at is not None

    def hand_over(self, now: float, quiet: bool) -> bool:
        """Should a call still up now be handed over (``quiet``: at a quiet moment)?"""
        if self.started_at is None:
            return False
        waited = now - self.started_at
        return waited >= self.handover_s or (waited >= self.finish_s and quiet)

    def done(self, now: float, live_calls: int) -> bool:
        """Time to exit: no call left, or the drain took its longest."""
        return self.started_at is not None and (live_calls == 0 or now - self.started_at >= self.max_s)


class Drain:
    """One replica's drain: the plan plus the calls it runs (the server tracks them)."""

    def __init__(self, plan: DrainPlan | None = None) -> None:
        self.plan = plan or DrainPlan()
        self.bridges: set[CallBridge] = set()
        self.handed_over = 0

    @property
    def draining(self) -> bool:
        return self.plan.draining

    def track(self, bridge: CallBridge) -> None:
        self.bridges.add(bridge)

    def untrack(self, bridge: CallBridge) -> None:
        self.bridges.discard(bridge)

    def step(self, now: float) -> bool:
        """Hand over the calls due; returns True when the drain is done."""
        for bridge in list(self.bridges):
            core = bridge.core
            if core.ended is None and self.plan.hand_over(now, core.safe_to_move(now)):
                self.handed_over += 1
                log_event(logger, "drain.handover", call_sid=core.call_sid,
                          after_s=round(now - (self.plan.started_at or now), 2))
                bridge.hand_over(HANDOVER_REASON)
        return self.plan.done(now, len(self.bridges))


async def run_drain(drain: Drain, on_done: Callable[[], Any], *, tick_s: float = 0.05) -> None:
    """SIGTERM's task: drain, then ``on_done()`` (the server exits)."""
    loop = asyncio.get_running_loop()
    if not drain.plan.begin(loop.time()):
        return
    log_event(logger, "drain.begin", live_calls=len(drain.bridges))
    while not drain.step(loop.time()):
        await asyncio.sleep(tick_s)
    log_event(logger, "drain.done", handed_over=drain.handed_over, live_calls=len(drain.bridges))
    on_done()


__all__ = ["Drain", "DrainPlan", "HANDOVER_REASON", "run_drain"]
