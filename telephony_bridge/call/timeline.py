"""The call's timeline: every part records what it decided, on one call-relative clock.

One list of plain dicts (``{"t": seconds since the call began, "kind": ..., **fields}``), shared
by all parts of the call core and written out by the demo (``timeline.json``) and the records.
"""

from __future__ import annotations

from typing import Any


class Timeline:
    __slots__ = ("t0", "events")

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.events: list[dict[str, Any]] = []

    def t(self, now: float) -> float:
        """``now`` on the call's clock (seconds since it began, to the millisecond)."""
        return round(now - self.t0, 3)

    def add(self, now: float, kind: str, **fields: Any) -> None:
        fields["t"] = round(now - self.t0, 3)
        fields["kind"] = kind
        self.events.append(fields)
