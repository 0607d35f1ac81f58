"""Echo end to end: a caller on speakerphone (simulator echo) ⇄ the real bridge ⇄ the emulator.

The emulator's VAD hears anything above 0.03 RMS as speech and interrupts its own reply, as the
service does. A 12 dB echo of the agent (speaking at about -18 dBFS) sits right at that level, so
without the echo gate the agent interrupts itself; with it, only the caller can.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from telephony_bridge import server as server_module
from telephony_bridge.testing.local_call import founder_turns, place_local_call
from telephony_bridge.echo_gate import EchoGate, GateDecision
from telephony_bridge.testing import (
    CallerScript,
    Hangup,
    Say,
    Wait,
    WaitForAgent,
)
from telephony_bridge.testing.simulator import EchoPath

ECHO = EchoPath(delay_ms=100, erl_db=12.0)
LEAD_MS = 160


async def place_call(script: CallerScript, echo: EchoPath | None) -> tuple[Any, Any, Any]:
    call = await place_local_call(script, simulator={"echo": echo}, silence_duration_ms=800,
                                  playback_lead_ms=LEAD_MS)
    return call.result, call.core, call.emulator


def answer_then_listen() -> CallerScript:
    """Hear the greeting, answer it, hear the reply to the end, hang up: the caller never talks
    over the agent, so every interruption would be the agent's own echo."""
    turn = founder_turns()[1]
    return CallerScript([Say(turn, label="answer"), WaitForAgent(quiet_ms=800), Hangup()])


class OpenGate(EchoGate):
    """No gate at all: every caller frame (echo included) goes to Gemini."""

    def decide(self, caller_ulaw: bytes, now: float, energy: float | None = None) -> GateDecision:
        super().decide(caller_ulaw, now, energy)
        return GateDecision.FORWARD


def test_echo_alone_never_interrupts_the_agent() -> None:
    result, core, emulator = asyncio.run(place_call(answer_then_listen(), ECHO))
    (session,) = emulator.sessions
    assert session.interruptions == 0
    assert [r.kind for r in session.replies] == ["greeting", "reply"]
    assert session.replies_completed == 2 and not any(r.interrupted for r in session.replies)
    assert len(session.turns) == 1  # the caller's answer, and no turn made of echo
    assert result.clears == 0 and core.counters["barge_ins"] == 0
    # ...and the bridge never paused the agent for its own echo either (instant barge-in).
    assert core.counters["barge_pauses"] == 0 and not any(e["kind"] == "pause" for e in core.timeline)
    # The caller really was on speakerphone: their line carried the agent's echo.
    assert result.sent_ulaw != result.voice_ulaw
    # The gate held the echo back while the agent played, and let the answer through.
    decisions = {e["decision"] for e in core.timeline if e["kind"] == "gate"}
    assert {"suppress", "forward"} <= decisions


def test_without_the_gate_the_same_echo_interrupts_the_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    # The control: proves the echo above is loud enough to matter.
    monkeypatch.setattr(server_module, "EchoGate", OpenGate)
    _, core, emulator = asyncio.run(place_call(CallerScript([Wait(4000), Hangup()]), ECHO))
    assert emulator.sessions[0].interruptions >= 1  # the greeting, cut short by its own echo
    assert core.counters["barge_ins"] >= 1


def test_caller_over_the_agent_interrupts_it_and_hears_no_more_than_the_lead() -> None:
    turns = founder_turns()
    # Answer the greeting; then talk over the reply 1.5 s into it (the gate has heard the echo
    # of the greeting by then), and hang up soon after.
    script = CallerScript([Say(turns[0], label="answer"),
                           Say(turns[1], barge_in_after_ms=1500, label="barge-in"), Wait(1000), Hangup()])
    result, core, emulator = asyncio.run(place_call(script, ECHO))
    (session,) = emulator.sessions
    # One interruption: the caller's, during the reply it talked over (never the echo).
    assert session.interruptions == 1
    interrupted = [r for r in session.replies if r.interrupted]
    assert len(interrupted) == 1 and interrupted[0].kind == "reply"
    assert result.clears >= 1 and core.counters["barge_ins"] == 1
    assert any(e["kind"] == "gate" and e["decision"] == "double_talk" for e in core.timeline)
    # Agent audio the caller heard after the emulator sent `interrupted`, until it sent new audio.
    (t_sent,) = [session.started_at + t for t, name, _ in session.events if name == "interrupted"]
    later = [session.started_at + r.first_audio_at for r in session.replies
             if r.first_audio_at is not None and session.started_at + r.first_audio_at > t_sent]
    assert result.origin is not None
    until = (later[0] - result.origin) if later else None
    stale = result.heard_after(t_sent - result.origin, until)
    assert stale <= LEAD_MS / 1000, f"{stale * 1000:.0f} ms of stale agent audio after the interruption"
    # ...while the reply was playing right up to the caller's barge-in, where the bridge paused
    # it before Gemini's `interrupted` (which then confirmed the pause).
    (began,) = [e["t"] for e in result.events if e["kind"] == "say_start" and e["details"]["label"] == "barge-in"]
    assert result.heard_after(began - 1.0, began) > 0.9
    kinds = [e["kind"] for e in core.timeline if e["kind"] in ("pause", "confirmed", "resume")]
    assert kinds == ["pause", "confirmed"], kinds
