"""The process's circuit breaker on Gemini refusals (pure: the caller passes ``now``).

When the deployment itself is wrong (a model the service no longer serves, a revoked key, a
project without permission) every call is refused the same way. After ``trip_after``
consecutive calls refused for the same configuration reason
(:data:`~telephony_bridge.gemini.refusal.CONFIGURATION_KINDS`) the breaker **opens**: new calls
get the apology straight from the webhook, with no stream and no Gemini connection, until a
**probe** connection (the same setup a call sends) gets ``setupComplete`` again::

    CLOSED ──trip_after consecutive refusals of one configuration kind──▶ OPEN
    OPEN ──probe gets setupComplete, or a call's connection does──▶ CLOSED
    OPEN ──probe refused or failed──▶ OPEN (next probe later: delays grow, capped)

A call whose connection gets ``setupComplete`` resets the count; so does a refusal that is
not about configuration (quota, unreachable). The adapter (the server) runs at most one probe
at a time, when :meth:`probe_due` says so, and reports it with :meth:`probe_finished`.
"""

from __future__ import annotations

from typing import Any

from .refusal import Refusal, RefusalKind

#: Seconds between probes while open: the first, then doubling, capped.
DEFAULT_PROBE_DELAYS = (10.0, 20.0, 40.0, 80.0, 160.0, 300.0)


class RefusalBreaker:
    def __init__(self, trip_after: int = 3, probe_delays: tuple[float, ...] = DEFAULT_PROBE_DELAYS) -> None:
        if not probe_delays or any(d <= 0 for d in probe_delays):
            raise ValueError("probe_delays must be positive")
        #: 0 turns the breaker off: it never opens.
        self.trip_after = trip_after
        self.probe_delays = tuple(probe_delays)
        self.open = False
        #: The refusal that opened the breaker (then the latest probe's, if it was refused).
        self.refusal: Refusal | None = None
        self.opened_at: float | None = None
        self.next_probe_at: float | None = None
        self.probing = False
        self.probes = 0
        self.trips = 0
        self._failed_probes = 0
        self._streak = 0
        self._streak_kind: RefusalKind | None = None

    @property
    def allows_calls(self) -> bool:
        return not self.open

    @property
    def streak(self) -> int:
        """Consecutive calls refused for the same configuration reason (while closed)."""
        return self._streak

    # -- calls --------------------------------------------------------------------------------

    def call_ready(self, now: float) -> None:
        """A call's Gemini connection got ``setupComplete``: the configuration works."""
        self._streak = 0
        self._streak_kind = None
        if self.open:
            self._close()

    def call_refused(self, refusal: Refusal, now: float) -> bool:
        """A call was refused. Returns True when this refusal opened the breaker."""
        if not refusal.configuration:
            self._streak = 0
            self._streak_kind = None
            return False
        if refusal.kind is self._streak_kind:
            self._streak += 1
        else:
            self._streak, self._streak_kind = 1, refusal.kind
        if self.open or self.trip_after <= 0 or self._streak < self.trip_after:
            return False
        self.open = True
        self.trips += 1
        self.refusal = refusal
        self.opened_at = now
        self._failed_probes = 0
        self.next_probe_at = now + self.probe_delays[0]
        return True

    # -- probes -------------------------------------------------------------------------------

    def probe_due(self, now: float) -> bool:
        return self.open and not self.probing and self.next_probe_at is not None and now >= self.next_probe_at

    def probe_started(self, now: float) -> None:
        self.probing = True
        self.probes += 1

    def probe_finished(self, refusal: Refusal | None, now: float) -> None:
        """``None``: the probe got ``setupComplete``. Else why not (a refusal of any kind)."""
        self.probing = False
        if not self.open:
            return
        if refusal is None:
            self._close()
            return
        if refusal.configuration:
            self.refusal = refusal  # the operator may have fixed one thing and broken another
        self._failed_probes += 1
        self.next_probe_at = now + self.probe_delays[min(self._failed_probes, len(self.probe_delays) - 1)]

    def _close(self) -> None:
        self.open = False
        self.next_probe_at = None
        self.opened_at = None
        self._streak = 0
        self._streak_kind = None

    # -- reporting ----------------------------------------------------------------------------

    def snapshot(self, now: float) -> dict[str, Any]:
        """For ``/healthz`` (public: the kind, never the service's words or the key)."""
        if not self.open:
            return {"state": "closed", "streak": self._streak}
        assert self.refusal is not None and self.opened_at is not None
        return {
            "state": "open",
            "kind": self.refusal.kind.value,
            "open_for_s": round(now - self.opened_at, 1),
            "next_probe_in_s": None if self.next_probe_at is None else round(max(0.0, self.next_probe_at - now), 1),
            "probes": self.probes,
        }


__all__ = ["RefusalBreaker", "DEFAULT_PROBE_DELAYS"]
