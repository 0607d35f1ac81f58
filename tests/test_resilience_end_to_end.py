"""Gemini faults mid-call, over real loopback websockets: the call must go on."""

import asyncio

import pytest

from telephony_bridge.testing import CallerScript, Fault, Scenario
from telephony_bridge.testing.local_call import founder_turns, greetings, place_local_call


async def call_with(faults, turns=2):
    call = await place_local_call(CallerScript.from_founder_turns(founder_turns()[:turns]), Scenario(faults=faults),
                                  silence_duration_ms=700)
    return call.result, call.core, call.emulator


def caller_turns_seen(emulator) -> int:
    return sum(len(s.turns) for s in emulator.sessions)


def assert_call_went_on(result, core, emulator, turns=2):
    assert core.ended == "caller-hangup", core.ended
    assert greetings(emulator) == 1
    assert caller_turns_seen(emulator) >= turns
    # every answer got an agent reply the caller heard
    heard_turns = [t for t in core.turns if t.frames_heard > 0]
    assert len(heard_turns) >= turns + 1


@pytest.mark.parametrize("kind", ["close", "drop"])
def test_transient_close_mid_reply_reconnects_and_resumes(kind):
    result, core, emulator = asyncio.run(call_with([Fault(kind, on_reply=2, after_chunks=15)]))
    assert len(emulator.sessions) == 2
    assert emulator.sessions[1].resumed_from is not None
    assert core.counters["reconnects"] == 1
    assert_call_went_on(result, core, emulator)


def test_go_away_hands_over_without_losing_caller_audio():
    result, core, emulator = asyncio.run(call_with([Fault("go_away", at_s=4.0, time_left_s=6.0)]))
    assert core.counters["handovers"] == 1 and core.counters["reconnects"] == 0
    assert emulator.sessions[1].resumed_from is not None
    assert emulator.sessions[0].closed_by == "server" or emulator.sessions[0].closed_by == "client"
    sent_s = len(result.sent_ulaw) / 8000
    received_s = sum(s.audio_in_seconds for s in emulator.sessions)
    assert received_s >= sent_s - 0.3  # nothing the caller said was lost in the switch
    assert_call_went_on(result, core, emulator)


def test_stale_handle_falls_back_to_a_fresh_seeded_session():
    result, core, emulator = asyncio.run(call_with([Fault("close", on_reply=2, after_chunks=15),
                                                    Fault("reject_resume", connection=None)]))
    codes = [s.closed_code for s in emulator.sessions]
    assert 1008 in codes
    fresh = emulator.sessions[-1]
    assert fresh.resumed_from is None
    seeded = [c for c in fresh.client_content if "Do not greet" in str(c)]
    assert seeded
    assert_call_went_on(result, core, emulator)


def test_gemini_unreachable_for_three_seconds_is_ridden_out():
    result, core, emulator = asyncio.run(call_with([Fault("close", on_reply=2, after_chunks=15, refuse_s=3.0)]))
    assert core.counters["reconnects"] == 1
    phrases = [e for e in core.timeline if e["kind"] == "phrase"]
    assert any(p["phrase"] == "reconnect" for p in phrases) or core.phrases is None
    assert_call_went_on(result, core, emulator)
