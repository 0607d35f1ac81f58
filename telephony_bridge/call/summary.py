"""A call's figures: turns, latency p50/p95, barge-ins, levels, frames, and what went wrong.

Logged once at the end of every call (``call.end``), kept in the call record, printed by the demo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .playout import Playout
    from .turns import Turns


#: Per-call event counters (every part counts into the one dict; the summary reads them).
COUNTERS = (
    "twilio_frames_in", "twilio_frames_out", "gemini_chunks_in", "twilio_errors", "gemini_errors",
    "barge_ins", "marks_played", "marks_flushed", "unknown_events", "input_dropped_frames",
    "fillers", "nudges", "apologies", "reconnects", "handovers", "repeated_tool_calls",
    "input_replayed_frames", "phrases",
    "stalls", "stall_nudges", "stall_phrases", "stall_recovered", "stall_apologies",
    "barge_pauses", "barge_false_alarms", "barge_confirmed", "barge_late_confirms",
    "agent_chunks_dropped_closing",
)


def new_counters() -> dict[str, int]:
    return dict.fromkeys(COUNTERS, 0)


def call_summary(turns: Turns, playout: Playout, counters: dict[str, int],
                 protocol_errors: dict[str, int]) -> dict[str, Any]:
    lat = sorted(turns.latencies_ms())

    def pct(p: float) -> float | None:
        if not lat:
            return None
        k = min(len(lat) - 1, max(0, int(round(p / 100 * (len(lat) - 1)))))
        return lat[k]

    caller, agent, c = turns.caller_rms, playout.agent_rms, counters
    return {
        "agent_turns": len(turns.turns),
        "latency_p50_ms": pct(50),
        "latency_p95_ms": pct(95),
        "barge_ins": c["barge_ins"],
        "pauses": c["barge_pauses"],
        "false_alarms": c["barge_false_alarms"],
        "pauses_confirmed": c["barge_confirmed"],
        "late_confirms": c["barge_late_confirms"],
        "caller_rms_mean": round(sum(caller) / len(caller), 4) if caller else 0.0,
        "caller_rms_max": round(max(caller), 4) if caller else 0.0,
        "agent_rms_mean": round(sum(agent) / len(agent), 4) if agent else 0.0,
        "frames_in": c["twilio_frames_in"],
        "frames_out": c["twilio_frames_out"],
        "fillers": c["fillers"],
        "reconnects": c["reconnects"],
        "handovers": c["handovers"],
        "watchdog_nudges": c["nudges"],
        "watchdog_apologies": c["apologies"],
        "stalls": c["stalls"],
        "stall_nudges": c["stall_nudges"],
        "stall_recovered": c["stall_recovered"],
        "stall_apologies": c["stall_apologies"],
        "protocol_errors": dict(protocol_errors),
    }
