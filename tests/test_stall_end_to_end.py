"""Silent stalls over real loopback websockets: the emulator stalls on demand, the caller hears
the agent within 1.5 s of finishing instead of 8 s of dead air, and the call goes on."""

import asyncio

from telephony_bridge.testing import CallerScript, Fault, Scenario
from telephony_bridge.testing.local_call import dead_air_after_turns, founder_turns, greetings, place_local_call

SILENCE_MS = 500  # Gemini's end-of-turn silence in these calls: short, so what is left is the stall's


async def call_with(faults, turns=2, **call_overrides):
    script = CallerScript.from_founder_turns(founder_turns()[:turns], think_ms=300, quiet_ms=500)
    call = await place_local_call(script, Scenario(faults=faults), silence_duration_ms=SILENCE_MS,
                                  call_overrides=call_overrides or None)
    return call.result, call.core, call.emulator


def stalls(core):
    return [e for e in core.timeline if e["kind"] == "stall"]


def assert_call_went_on(result, core, emulator, turns=2):
    assert core.ended == "caller-hangup", core.ended
    assert greetings(emulator) == 1
    assert sum(len(s.turns) for s in emulator.sessions) >= turns
    assert len([t for t in core.turns if t.frames_heard > 0]) >= turns + 1


def test_an_empty_turn_after_the_caller_is_recovered_within_a_second_and_a_half():
    result, core, emulator = asyncio.run(call_with([Fault("empty_turn", on_reply=2)]))
    assert emulator.sessions[0].stalled_attempts == [2]
    (stall,) = stalls(core)
    assert stall["reason"] == "empty_turn" and stall["expected"] == "caller"
    assert core.counters["stall_nudges"] == 1 and core.counters["stall_recovered"] == 1
    assert core.counters["nudges"] == 0  # the 8 s watchdog never had to act
    waits = dead_air_after_turns(result)
    assert waits[1] <= 1.5, waits  # the stalled turn: the nudge's answer, heard in time
    assert_call_went_on(result, core, emulator)


def test_a_reply_that_never_starts_is_found_by_the_deadline_and_the_phrase_fills_the_gap():
    result, core, emulator = asyncio.run(call_with([Fault("no_reply", on_reply=2)], turns=1))
    (stall,) = stalls(core)
    assert stall["reason"] == "no_reply"
    assert [e["phrase"] for e in core.timeline if e["kind"] == "phrase"] == ["thinking"]
    assert core.counters["stall_recovered"] == 1
    waits = dead_air_after_turns(result)
    assert waits[1] <= 1.5, waits
    assert_call_went_on(result, core, emulator, turns=1)


def test_an_empty_greeting_is_requested_again_and_greets_once():
    result, core, emulator = asyncio.run(call_with([Fault("empty_turn", on_reply=1)], turns=1))
    (stall,) = stalls(core)
    assert stall["expected"] == "greeting"
    # the nudge repeated the greeting request; the emulated model greeted once, on the second attempt
    assert [r.kind for r in emulator.sessions[0].replies][:1] == ["greeting"]
    assert dead_air_after_turns(result)[0] <= 1.5
    assert_call_went_on(result, core, emulator, turns=1)


def test_two_empty_turns_in_a_row_take_two_nudges():
    result, core, emulator = asyncio.run(call_with([Fault("empty_turn", on_reply=2), Fault("empty_turn", on_reply=3)],
                                                   turns=1))
    assert emulator.sessions[0].stalled_attempts == [2, 3]
    assert len(stalls(core)) == 1 and core.counters["stall_nudges"] == 2
    assert dead_air_after_turns(result)[1] <= 2.0
    assert_call_went_on(result, core, emulator, turns=1)


def test_a_stall_right_after_a_resumption_is_nudged_on_the_new_connection():
    result, core, emulator = asyncio.run(call_with([Fault("close", on_reply=2, after_chunks=15),
                                                    Fault("empty_turn", on_reply=1, connection=1)]))
    assert len(emulator.sessions) == 2 and emulator.sessions[1].resumed_from is not None
    assert emulator.sessions[1].stalled_attempts == [1]
    (stall,) = stalls(core)
    assert stall["expected"] == "resume"
    assert core.counters["reconnects"] == 1 and core.counters["stall_recovered"] == 1
    assert_call_went_on(result, core, emulator)


def test_without_the_stall_watch_the_caller_waits_for_the_watchdog():
    from telephony_bridge.call.stall_watch import StallConfig

    result, core, emulator = asyncio.run(call_with([Fault("empty_turn", on_reply=2)], turns=1,
                                                   stall=StallConfig(enabled=False)))
    assert core.counters["nudges"] == 1 and not stalls(core)
    assert dead_air_after_turns(result)[1] >= 8.0  # what the field reports: eight seconds of nothing
    assert_call_went_on(result, core, emulator, turns=1)
