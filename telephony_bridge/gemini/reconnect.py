"""When to try the Gemini connection again (pure; the adapter sleeps, this decides).

Bounded backoff: a few tries with growing delays; the count resets once a connection has been
stable for ``stable_after_s``. The delays add up to a little over 3 s, so a Gemini outage of
up to ~3 s is ridden out while the caller hears a short "one moment".
"""

from __future__ import annotations


class ReconnectPolicy:
    def __init__(self, delays: tuple[float, ...] = (0.1, 0.5, 1.2, 2.0), stable_after_s: float = 10.0) -> None:
        self.delays = delays
        self.stable_after_s = stable_after_s
        self.failures = 0
        self._connected_at: float | None = None

    def connected(self, now: float) -> None:
        self._connected_at = now

    def next_delay(self, now: float) -> float | None:
        """A connection closed or an attempt failed: seconds to wait, or None to give up."""
        if self._connected_at is not None and now - self._connected_at >= self.stable_after_s:
            self.failures = 0
        self._connected_at = None
        if self.failures >= len(self.delays):
            return None
        delay = self.delays[self.failures]
        self.failures += 1
        return delay
