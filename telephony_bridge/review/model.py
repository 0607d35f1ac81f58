"""What the review page shows, computed from a call record and its recording (no I/O here).

:func:`call_view` returns one JSON-able dict: both channels' levels (one value per 20 ms frame,
0-255, base64), the lanes (each a list of ``{t0, t1, label, kind}`` on the recording's clock,
``t1`` None for an instant), the turns with their latency, the transcript lines with their time,
notes, tools, the report. :func:`list_row` is one line of the ``/calls`` list.

Times: the record's timeline is on the call core's clock (seconds since the websocket opened);
the recording starts at the first caller frame, ``offset_s`` later. Everything here is moved to
the recording's clock, so a line clicked in the transcript seeks the audio to that moment.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import numpy as np

from ..dsp.mulaw import DECODE_FLOAT

FRAME = 160
_LEVEL = np.abs(DECODE_FLOAT) / 32768.0
#: Frame RMS above which a track counts as speaking (the heard track is digital silence otherwise).
AGENT_SPEECH_RMS = 0.01
CALLER_SPEECH_RMS = 0.03
#: Gaps shorter than this do not split a stretch of speech.
MERGE_S = 0.3

LANES = (
    ("agent", "Agent speech (as heard)"),
    ("caller", "Caller speech"),
    ("gate", "Echo gate"),
    ("barge", "Barge-ins and pauses"),
    ("clear", "Clears"),
    ("tools", "Tool calls"),
    ("filler", "Filler and phrases"),
    ("link", "Gemini link: reconnects, handovers"),
    ("latency", "Turn latency"),
)


def _frames(ulaw: bytes) -> np.ndarray:
    n = len(ulaw) // FRAME
    return np.frombuffer(ulaw[:n * FRAME], np.uint8).reshape(n, FRAME) if n else np.zeros((0, FRAME), np.uint8)


def frame_levels(ulaw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Per 20 ms frame: (peak 0..1, RMS 0..1)."""
    f = _frames(ulaw)
    if not len(f):
        return np.zeros(0), np.zeros(0)
    lv = _LEVEL[f]
    return lv.max(axis=1), np.sqrt((lv ** 2).mean(axis=1))


def _b64_levels(peak: np.ndarray) -> str:
    # A square-root scale: quiet speech stays visible next to loud speech.
    q = np.clip(np.sqrt(peak) * 255.0, 0, 255).astype(np.uint8)
    return base64.b64encode(q.tobytes()).decode("ascii")


def speech_spans(rms: np.ndarray, threshold: float) -> list[tuple[float, float]]:
    """Stretches (seconds) where the frame RMS is at or above ``threshold``, short gaps merged."""
    loud = np.flatnonzero(rms >= threshold)
    spans: list[list[float]] = []
    for k in loud:
        t = k * 0.02
        if spans and t - spans[-1][1] <= MERGE_S:
            spans[-1][1] = t + 0.02
        else:
            spans.append([t, t + 0.02])
    return [(round(a, 2), round(b, 2)) for a, b in spans if b - a >= 0.1]


def _ev(t0: float, t1: float | None, label: str, kind: str) -> dict[str, Any]:
    return {"t0": round(t0, 3), "t1": None if t1 is None else round(t1, 3), "label": label, "kind": kind}


def timeline_lanes(events: list[dict[str, Any]], offset: float, end: float) -> dict[str, list[dict[str, Any]]]:
    """The lanes the timeline alone gives (everything but the two speech lanes)."""
    lanes: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in LANES}
    gate_at: tuple[float, str] | None = None
    pause_at: float | None = None
    tools: dict[str, tuple[float, str]] = {}
    phrase: dict[str, Any] | None = None
    connecting: float | None = None
    for e in sorted(events, key=lambda e: e.get("t", 0.0)):
        t = float(e.get("t", 0.0)) - offset
        kind = e.get("kind")
        if kind == "gate":
            if gate_at is not None:
                lanes["gate"].append(_ev(gate_at[0], t, gate_at[1], gate_at[1]))
            gate_at = (t, str(e.get("decision")))
        elif kind == "pause":
            pause_at = t
            lanes["clear"].append(_ev(t, None, "clear (pause)", "pause"))
        elif kind in ("resume", "confirmed", "late_confirm"):
            if pause_at is not None:
                label = "false alarm: resumed" if kind == "resume" else "paused, confirmed"
                lanes["barge"].append(_ev(pause_at, t, label, "false_alarm" if kind == "resume" else "pause"))
                pause_at = None
        elif kind == "interrupted":
            lanes["barge"].append(_ev(t, None, f"barge-in ({e.get('frames_dropped', 0)} frames dropped)", "barge_in"))
        elif kind == "clear":
            lanes["clear"].append(_ev(t, None, "clear (barge-in)", "clear"))
        elif kind == "phrase_stopped":
            lanes["clear"].append(_ev(t, None, "clear (phrase gave way)", "phrase_stopped"))
            if phrase is not None and phrase["t1"] is not None and phrase["t1"] > t:
                phrase["t1"] = round(t, 3)
                phrase["label"] += " (cut short)"
        elif kind == "tool_call":
            tools[str(e.get("id"))] = (t, str(e.get("name")))
        elif kind in ("tool_result", "tool_call_cancelled"):
            start = tools.pop(str(e.get("id")), None)
            if start is not None:
                ms = e.get("duration_ms")
                label = f"{start[1]} {ms:.0f} ms" if isinstance(ms, (int, float)) else f"{start[1]} cancelled"
                lanes["tools"].append(_ev(start[0], t, label, "tool" if kind == "tool_result" else "cancelled"))
        elif kind == "phrase":
            seconds = float(e.get("seconds") or 0.0)
            phrase = _ev(t, t + seconds, str(e.get("phrase")), "phrase")
            lanes["filler"].append(phrase)
        elif kind == "gemini_connecting":
            connecting = t
        elif kind == "gemini_ready":  # the connection's setup, from connecting to ready
            took = f" in {(t - connecting) * 1000:.0f} ms" if connecting is not None else ""
            lanes["link"].append(_ev(t, None, f"connected #{e.get('connection')}{took}", kind))
            connecting = None
        elif kind in ("gemini_closed", "handover_start", "handover_failed",
                      "gemini_connect_failed", "resume_from_store", "gemini_refused"):
            label = kind.replace("_", " ")
            if kind == "gemini_closed":
                label = f"closed {e.get('code')}" + (" (transient)" if e.get("transient") else "")
            lanes["link"].append(_ev(t, None, label, kind))
        elif kind == "agent_turn_start" and e.get("latency_ms") is not None:
            lanes["latency"].append(_ev(t, None, f"turn {e.get('turn')}: {e['latency_ms']:.0f} ms", "latency"))
    if gate_at is not None:
        lanes["gate"].append(_ev(gate_at[0], end, gate_at[1], gate_at[1]))
    if pause_at is not None:
        lanes["barge"].append(_ev(pause_at, end, "paused", "pause"))
    for start, name in tools.values():
        lanes["tools"].append(_ev(start, end, f"{name} (no result)", "cancelled"))
    return lanes


def call_view(record: dict[str, Any], left: bytes | None = None, right: bytes | None = None,
              report: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything the page draws (see the module docstring)."""
    rec_meta = record.get("recording") or {}
    offset = float(rec_meta.get("offset_s") or 0.0)
    events = record.get("timeline") or []
    duration = len(left) / 8000 if left else max([float(e.get("t", 0)) for e in events] or [0.0]) - offset
    lanes = timeline_lanes(events, offset, duration)
    levels: dict[str, str] = {}
    if left is not None and right is not None:
        lp, lr = frame_levels(left)
        rp, rr = frame_levels(right)
        levels = {"left": _b64_levels(lp), "right": _b64_levels(rp)}
        lanes["agent"] = [_ev(a, b, "agent", "agent") for a, b in speech_spans(rr, AGENT_SPEECH_RMS)]
        lanes["caller"] = [_ev(a, b, "caller", "caller") for a, b in speech_spans(lr, CALLER_SPEECH_RMS)]
    else:  # no recording: the bridge's own account of the agent's turns
        starts = {e.get("turn"): float(e["t"]) - offset for e in events if e.get("kind") == "agent_turn_start"}
        for e in events:
            if e.get("kind") == "agent_turn_end" and e.get("turn") in starts:
                lanes["agent"].append(_ev(starts[e["turn"]], float(e["t"]) - offset, f"turn {e['turn']}", "agent"))
    transcript = [{"t": round(max(0.0, float(line.get("t", 0.0)) - offset), 3), "role": line.get("role"),
                   "text": line.get("text", ""), "interrupted": bool(line.get("interrupted"))}
                  for line in record.get("transcript") or []]
    turns = [{"turn": e.get("turn"), "t": round(float(e["t"]) - offset, 3), "latency_ms": e.get("latency_ms")}
             for e in events if e.get("kind") == "agent_turn_start"]
    notes = [{**n, "t": round(float(n.get("t", 0.0)) - offset, 3)} for n in record.get("notes") or []]
    return {
        "call_sid": record.get("call_sid"),
        "caller": record.get("caller") or "",
        "started_at": record.get("started_at"),
        "started": _when(record.get("started_at")),
        "ended": record.get("ended"),
        "duration": round(duration, 2),
        "summary": {**_SUMMARY_DEFAULTS, **(record.get("summary") or {})},
        "levels": levels,
        "frame_s": 0.02,
        "lanes": [{"name": name, "title": title, "events": lanes[name]} for name, title in LANES],
        "turns": turns,
        "transcript": transcript,
        "notes": notes,
        "tools": record.get("tools") or [],
        "report": report,
        "has_audio": bool(levels),
    }


_SUMMARY_DEFAULTS: dict[str, Any] = {
    "agent_turns": 0, "latency_p50_ms": None, "latency_p95_ms": None, "barge_ins": 0, "pauses": 0,
    "false_alarms": 0, "fillers": 0, "reconnects": 0, "handovers": 0, "stalls": 0,
}


def _when(epoch: Any) -> str:
    if not isinstance(epoch, (int, float)):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def list_row(record: dict[str, Any], report: dict[str, Any] | None = None) -> dict[str, Any]:
    """One line of the /calls list."""
    s = record.get("summary") or {}
    rec = record.get("recording") or {}
    timeline = record.get("timeline") or []
    length = rec.get("seconds")
    if length is None and timeline:
        length = max(float(e.get("t", 0.0)) for e in timeline)
    leaning = (report or {}).get("leaning") or {}
    return {
        "call_sid": record.get("call_sid"),
        "started": _when(record.get("started_at")),
        "caller": record.get("caller") or "",
        "length": f"{int(length // 60)}:{int(length % 60):02d}" if isinstance(length, (int, float)) else "",
        "turns": s.get("agent_turns"),
        "p50": s.get("latency_p50_ms"),
        "p95": s.get("latency_p95_ms"),
        "barge_ins": s.get("barge_ins"),
        "false_alarms": s.get("false_alarms"),
        "tools": ", ".join(sorted({str(t.get("name")) for t in record.get("tools") or []})),
        "ended": record.get("ended") or "",
        "leaning": leaning.get("verdict") if isinstance(leaning, dict) else None,
        "recorded": bool(rec),
    }
