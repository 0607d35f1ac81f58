"""A whole call over real loopback websockets: simulator ⇄ bridge ⇄ emulator."""

import asyncio

import numpy as np
import pytest

from telephony_bridge.testing import CallerScript
from telephony_bridge.testing.local_call import founder_turns, place_local_call


def rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


async def place_call(script, *, silence_ms=800, scenario=None):
    call = await place_local_call(script, scenario, silence_duration_ms=silence_ms)
    return call.result, call.core, call.emulator


def test_an_interview_runs_end_to_end():
    turns = founder_turns()[:2]
    result, core, emulator = asyncio.run(place_call(CallerScript.from_founder_turns(turns)))

    # The caller's turns reached Gemini: the emulator's VAD saw each of them.
    session = emulator.sessions[0]
    assert session.setup["model"].startswith("models/")
    # every setup asks for resumption and a sliding context window (interviews past 15 minutes)
    assert "sessionResumption" in session.setup
    assert session.setup["contextWindowCompression"]["slidingWindow"]["targetTokens"] == 12800
    # The bundled persona is the founder panel: its first interviewer may also hand the call on.
    assert {d["name"] for d in session.setup["tools"][0]["functionDeclarations"]} == {
        "save_note", "lookup_market", "end_call", "hand_off"}
    assert len(session.turns) == len(turns)
    assert session.audio_in_seconds > sum(len(t) for t in turns) / 8000
    # All of it, to the last frame: the chunk short of whole at the hang-up goes too (link.py).
    assert session.audio_in_seconds == pytest.approx(len(result.sent_ulaw) / 8000, abs=1e-6)

    # The agent's speech reached the caller, in 160-byte frames, with real energy.
    assert set(result.media_sizes_seen) == {160}
    heard = result.heard_pcm16()
    assert rms(heard) > 0.02
    # greeting + one reply per caller turn were heard
    assert len(core.turns) == len(turns) + 1
    assert all(t.frames_heard > 0 for t in core.turns)
    assert result.marks_returned > 0

    # Transcripts and latency figures were recorded.
    agent_lines = [e for e in core.transcript if e["role"] == "agent"]
    caller_lines = [e for e in core.transcript if e["role"] == "caller"]
    assert len(agent_lines) == len(turns) + 1 and all(e["text"] for e in agent_lines)
    assert len(caller_lines) == len(turns)
    lat = core.latencies_ms()
    assert len(lat) == len(turns)
    # the emulator waits for 800 ms of silence before it answers: latency can't be less
    assert all(700 < x < 3000 for x in lat), lat
    assert core.ended == "caller-hangup" and result.ended_by == "caller"


def test_caller_talking_over_the_agent_interrupts_it():
    turns = founder_turns()[:2]
    script = CallerScript.from_founder_turns(turns, barge_in=True)
    result, core, emulator = asyncio.run(place_call(script))
    assert emulator.sessions[0].interruptions >= 1
    assert core.counters["barge_ins"] >= 1
    assert result.clears >= 1
    assert any(t.interrupted for t in core.turns)


def test_the_call_also_runs_over_plain_asgi_websockets():
    """Served by a websocket protocol without the direct mode (another server, uvicorn's own
    websockets-sansio), the media stream goes over ASGI (media_socket.AsgiMediaSocket): the same
    call, barge-in and all."""
    turns = founder_turns()[:2]
    script = CallerScript.from_founder_turns(turns, barge_in=True)
    call = asyncio.run(place_local_call(script, silence_duration_ms=800, ws="websockets-sansio"))
    result, core = call.result, call.core
    assert call.bridge.server.config.ws == "websockets-sansio"
    assert set(result.media_sizes_seen) == {160} and rms(result.heard_pcm16()) > 0.02
    assert len(core.turns) >= len(turns) + 1 and core.turns[-1].frames_heard > 0
    assert result.marks_returned > 0
    assert result.clears >= 1 and core.counters["barge_ins"] >= 1 and any(t.interrupted for t in core.turns)
    assert len([e for e in core.transcript if e["role"] == "caller"]) == len(turns)
    assert core.ended == "caller-hangup" and result.ended_by == "caller"
