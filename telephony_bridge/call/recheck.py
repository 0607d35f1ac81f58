"""A timed step that came due but cannot act yet looks again a little later.

The reply watchdog while the link is down or audio plays, end_call while its goodbye is still
being said, the reconnect notice while the caller hears something: each is due at a time its
part's ``deadline()`` reports. Left at that time while blocked, the deadline would stay in the
past and the adapter would tick the call on every loop iteration until the obstacle went (the
deadline property in tests/test_call_core.py fails on two ticks in a row at one instant).
"""

from __future__ import annotations

#: How much later a blocked step looks again.
RECHECK_S = 0.25


class Recheck:
    """When a blocked step may look again (0.0: it never was blocked)."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = 0.0

    def blocked(self, now: float) -> None:
        """Due at ``now`` but could not act: look again :data:`RECHECK_S` later."""
        self.at = now + RECHECK_S

    def waiting(self, now: float) -> bool:
        """Still before the time to look again."""
        return now < self.at

    def deadline(self, due: float) -> float:
        """The step's deadline: its due time, or the time to look again if that is later."""
        return due if due >= self.at else self.at


__all__ = ["RECHECK_S", "Recheck"]
