"""The adapter's one timer against a real event loop's clock (bridge.due_now)."""

from __future__ import annotations

import asyncio

import pytest

from telephony_bridge.bridge import CLOCK_RESOLUTION_S, due_now


def test_a_deadline_within_the_clocks_resolution_is_due_at_the_deadline():
    assert due_now(None, 5.0) == 5.0  # nothing pending: a tick now finds nothing, harmlessly
    assert due_now(4.9, 5.0) == 5.0  # overdue: now
    assert due_now(5.0, 5.0) == 5.0
    assert due_now(5.0004, 5.0) == 5.0004  # fired "early" by the clock: ticked at the deadline
    assert due_now(5.0 + CLOCK_RESOLUTION_S, 5.0) == 5.0 + CLOCK_RESOLUTION_S
    assert due_now(5.002, 5.0) is None  # moved later: re-armed, not ticked


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_every_timer_the_loop_fires_is_due(loop_kind):
    """uvloop's clock counts whole milliseconds: a timer read as up to half a millisecond early
    used to be re-armed for the same instant and fire again until the millisecond turned."""
    async def fires() -> list[tuple[float, float]]:
        loop = asyncio.get_running_loop()
        seen: list[tuple[float, float]] = []
        for i in range(200):
            done = loop.create_future()
            when = loop.time() + 0.0021 + i * 1.3e-5  # deadlines at every fraction of a millisecond
            loop.call_at(when, lambda w=when: (seen.append((w, loop.time())), done.set_result(None)))
            await done
        return seen

    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        seen = uvloop.run(fires())
    else:
        seen = asyncio.run(fires())
    assert all(due_now(when, now) is not None for when, now in seen)
