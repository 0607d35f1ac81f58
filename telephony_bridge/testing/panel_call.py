"""The scripted panel call: Sam (Charon) hands to Priya (Kore), who hands to Leo (Puck).

:func:`panel_scenario` is the emulator's script for the bundled founder panel (the default
persona) and the bundled founder's five answers; :func:`handoff_figures` measures, per hand-off,
what the caller heard: the silence between the outgoing interviewer's last word and the next
one's first (from the audio the caller received), caller audio lost, and questions asked twice.
Used by the demo, tests/test_panel_end_to_end.py and benchmarks/handoff.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .gemini import Scenario, ToolCallStep

AUDIBLE_RMS = 0.005


def panel_scenario(*, slow_lookup: bool = False, **fields: Any) -> Scenario:
    """Founder turns 1-2 with Sam, 3 with Priya, 4-5 with Leo; two hand-offs, then end_call.
    ``slow_lookup``: after turn 1 Sam looks the market up and says nothing until the answer
    (give the bridge ``demo_tool_delays_s``): the bridge's filler covers the silence."""
    lookup = [ToolCallStep(after_turn=1, name="lookup_market", args={"market": "dental practice software"},
                           then_clip=None, while_running="")] if slow_lookup else []
    sam = {"replies": ("q_customer",),
           "tool_calls": [*lookup, ToolCallStep(after_turn=2, name="hand_off", then_clip="handoff_sam",
                                       args={"to": "product", "reason": "Problem and customer are clear: dental "
                                             "clinics lose revenue on cancellations; product still open."})]}
    return Scenario(
        voices={
            "Charon": sam,
            "Kore": {"greeting": "intro_priya", "replies": ("handoff_priya",),
                     "tool_calls": [ToolCallStep(after_turn=1, name="hand_off", then_clip="handoff_priya",
                                                 args={"to": "gtm", "reason": "It texts the wait list when "
                                                       "a slot opens; business model still open."})]},
            "Puck": {"greeting": "intro_leo", "replies": ("q_why_now_leo", "goodbye_leo"),
                     "tool_calls": [ToolCallStep(after_turn=2, name="end_call", then_clip="goodbye_leo",
                                                 args={"reason": "interview complete"})]},
        },
        **fields,
    )


def _levels(pcm: bytes) -> np.ndarray:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    n = len(x) // 160
    return np.sqrt(np.mean(x[: n * 160].reshape(n, 160) ** 2, axis=1)) if n else np.zeros(0)


def handoff_figures(result: Any, core: Any) -> list[dict[str, Any]]:
    """Per hand-off: ``silence_ms`` the caller heard between the outgoing interviewer's last
    audible 20 ms frame and the next one's first (from the audio the simulated phone played),
    ``switch_ms`` from the switch's start to the new session's ``setupComplete``."""
    levels = _levels(result.heard_pcm16())
    loud = np.flatnonzero(levels >= AUDIBLE_RMS)
    timeline = core.timeline
    starts = [e["t"] for e in timeline if e["kind"] == "agent_turn_start"]
    out: list[dict[str, Any]] = []
    if not len(loud) or not starts:
        return out
    offset = loud[0] * 0.02 - starts[0]  # caller's clock minus the bridge's, at the first agent frame
    for h in (core.handoff.log if core.handoff is not None else []):
        start = h.get("t_start")
        if start is None:
            continue
        entry = {"from": h["from"], "to": h["to"], "ok": h.get("ok", False),
                 "switch_ms": round(((h.get("t_ready") or start) - start) * 1000, 1)}
        done = h.get("t_done")  # the outgoing sentence over: the next interviewer's turn follows
        first_new = next((t for t in starts if done is not None and t >= done), None)
        if first_new is not None:
            # The longest run of inaudible frames within 0.6 s either side of the boundary (the
            # clocks agree to a frame or two; a pause between words is shorter than the gap).
            k = int(round((first_new + offset) / 0.02))
            quiet = levels[max(0, k - 30): k + 30] < AUDIBLE_RMS
            longest = run = 0
            for q in quiet:
                run = run + 1 if q else 0
                longest = max(longest, run)
            entry["silence_ms"] = float(longest * 20)
        out.append(entry)
    return out


def questions_asked_twice(transcript: list[dict[str, Any]]) -> int:
    """Agent questions (lines ending in '?') said more than once in the call."""
    seen: dict[str, int] = {}
    for e in transcript:
        if e.get("role") != "agent":
            continue
        for part in (e.get("text") or "").replace("!", ".").split("."):
            q = " ".join(part.lower().split())
            if q.endswith("?"):
                seen[q] = seen.get(q, 0) + 1
    return sum(1 for n in seen.values() if n > 1)


__all__ = ["panel_scenario", "handoff_figures", "questions_asked_twice"]
