"""Instant barge-in end to end: the caller simulator ⇄ the real bridge ⇄ the emulator, loopback.

The emulator's barge-in needs 300 ms of caller speech (``Scenario.barge_in_speech_ms``, as the
service's VAD does) and ignores a shorter sound over its reply. The bridge pauses the agent on
the caller's onset: a real barge-in is confirmed by ``interrupted``; a cough resumes where the
caller stopped hearing, with nothing lost; an echoing line with no caller speech never pauses.
"""

from __future__ import annotations

import asyncio

import httpx

from telephony_bridge.testing import CallerScript, Hangup, Say, Wait, WaitForAgent
from telephony_bridge.testing.local_call import founder_turns, place_local_call, sound

LEAD_MS = 160
OPERATOR = "operator-token-for-tests-0123456789"
FRAME = 160


def frames_heard(result, a: float, b: float) -> list[bytes]:
    """The agent frames the caller heard between ``a`` and ``b`` (call clock), in order."""
    out = []
    for s, e in result.playback:
        s, e = max(s, a), min(e, b)
        k0, k1 = round(s * 50), round(e * 50)
        out += [result.heard_ulaw[k * FRAME:(k + 1) * FRAME] for k in range(k0, k1)]
    return out


def test_a_real_barge_in_pauses_at_once_and_gemini_confirms() -> None:
    turns = founder_turns()
    script = CallerScript([Say(turns[0], label="answer"),
                           Say(turns[1], barge_in_after_ms=1500, label="barge-in"), Wait(1000), Hangup()])
    call = asyncio.run(place_local_call(script, silence_duration_ms=800, playback_lead_ms=LEAD_MS))
    result, core, emulator = call.result, call.core, call.emulator
    (session,) = emulator.sessions
    assert session.interruptions == 1 and core.counters["barge_ins"] == 1
    marks = [e for e in core.timeline if e["kind"] in ("pause", "confirmed", "resume")]
    assert [e["kind"] for e in marks] == ["pause", "confirmed"]
    # The pause came before Gemini's interrupted (the emulator needs 300 ms of speech).
    assert marks[1]["after_ms"] > 100
    (began,) = [e["t"] for e in result.events if e["kind"] == "say_start" and e["details"]["label"] == "barge-in"]
    assert result.heard_after(began - 1.0, began) > 0.9  # the reply was playing
    # Once paused, the caller heard nothing of the interrupted reply: what it heard after its
    # onset is the gate's detection and the clear's trip, not Gemini's 300 ms.
    (t_int,) = [session.started_at + t for t, name, _ in session.events if name == "interrupted"]
    assert result.origin is not None
    assert result.heard_after(t_int - result.origin - 0.1, t_int - result.origin + 0.2) == 0.0
    assert core.summary()["pauses"] == 1 and core.summary()["false_alarms"] == 0


def test_a_cough_over_the_agent_pauses_it_and_it_resumes_with_no_lost_frames() -> None:
    turns = founder_turns()
    script = CallerScript([Say(turns[0], label="answer"),
                           Say(sound("cough"), barge_in_after_ms=1500, label="cough"),
                           WaitForAgent(quiet_ms=800), Hangup()])
    metrics: dict[str, str] = {}

    async def read_metrics(bridge, _result) -> None:
        r = await asyncio.to_thread(httpx.get, bridge.settings.public("/metrics"), trust_env=False, timeout=5,
                                    headers={"Authorization": f"Bearer {OPERATOR}"})
        metrics["text"] = r.text

    call = asyncio.run(place_local_call(script, silence_duration_ms=800, playback_lead_ms=LEAD_MS,
                                        operator_token=OPERATOR, while_up=read_metrics))
    result, core, emulator = call.result, call.core, call.emulator
    (session,) = emulator.sessions
    assert "bridge_barge_false_alarms_total 1.0" in metrics["text"]
    assert "bridge_barge_pauses_total 1.0" in metrics["text"]
    assert "bridge_barge_pause_to_confirm_seconds_count 0.0" in metrics["text"]
    # Gemini (the emulator) ignored the cough: no interruption, no caller turn made of it.
    assert session.interruptions == 0 and len(session.turns) == 1
    assert any(name == "sound_ignored" for _, name, _ in session.events)
    marks = [e for e in core.timeline if e["kind"] in ("pause", "confirmed", "resume")]
    assert [e["kind"] for e in marks] == ["pause", "resume"]
    pause, resume = marks
    assert abs(resume["t"] - pause["t"] - core.config.pause_confirm_s) < 0.1
    reply = core.turns[1]
    assert not reply.interrupted and reply.frames_heard == reply.frames_sent > 100  # all of it, once
    # The caller's ear: the reply stops at the pause and picks up where it stopped being heard
    # (repeating at most what played after the last returned mark), never past it.
    assert result.origin is not None
    t_pause = core.t0 + pause["t"] - result.origin
    t_resume = core.t0 + resume["t"] - result.origin
    before = frames_heard(result, t_pause - 1.0, t_pause + 0.1)
    after = frames_heard(result, t_resume, t_resume + 1.0)
    assert result.heard_after(t_pause + 0.1, t_resume) == 0.0  # quiet while paused
    assert before and after
    assert after[0] in before[-10:], "the resume skipped frames the caller never heard"
    overlap = len(before) - before.index(after[0])
    assert after[:overlap] == before[-overlap:]  # what is repeated is repeated in order
    assert core.summary()["false_alarms"] == 1 and core.counters["barge_ins"] == 0
