"""Silent stalls in the call core, on a fake clock: found at once, recovered out loud."""

import json

import pytest

from telephony_bridge.call import CallConfig, CallCore
from telephony_bridge.gemini.messages import SetupConfig
from telephony_bridge.metrics import Metrics
from telephony_bridge.call.stall_watch import StallConfig

from test_call_core import START, audio_frame, drain, pcm24_tone, ulaw_tone
from test_call_core_interviewer import first_media_time, return_marks, run_clock

PHRASES = {"filler": b"\x10" * 160 * 25, "thinking": b"\x18" * 160 * 60, "reconnect": b"\x20" * 160 * 40,
           "apology": b"\x30" * 160 * 50, "goodbye_error": b"\x40" * 160 * 60}
EMPTY_TURN = b'{"serverContent":{"turnComplete":true}}'
SPEECH = ulaw_tone(0.02, 0.3)


def make_core(silence_ms=500, greeting=True, metrics=None, **cfg) -> CallCore:
    if not greeting:
        cfg["greeting_prompt"] = None
    core = CallCore(SetupConfig(model="m", silence_duration_ms=silence_ms), CallConfig(playback_lead_s=0.1, **cfg),
                    now=0.0, phrases=PHRASES.get, metrics=metrics)
    core.gemini_connected(0.0)
    core.receive_gemini(b'{"setupComplete":{}}', 0.0)
    core.receive_twilio(START, 0.0)
    drain(core.gemini_out)
    return core


def caller_turn(core, start, seconds=1.0):
    """The caller speaks from ``start`` for ``seconds``; returns their end of speech."""
    run_clock(core, start, start + seconds, caller=SPEECH)
    return start + seconds - 0.02


def texts(core):
    return [m["clientContent"]["turns"][0]["parts"][0]["text"] for m in drain(core.gemini_out)
            if "clientContent" in m]


def kinds(core, prefix="stall"):
    return [(e["kind"], e["t"]) for e in core.timeline if e["kind"].startswith(prefix)]


def phrases_played(core):
    return [e["phrase"] for e in core.timeline if e["kind"] == "phrase"]


def test_an_empty_turn_after_the_caller_is_nudged_at_once_and_the_reply_is_heard():
    core = make_core(greeting=False)
    end = caller_turn(core, 1.0)
    run_clock(core, 2.0, 2.8)
    drain(core.gemini_out)
    core.receive_gemini(EMPTY_TURN, 2.8)  # the silent stall: turnComplete, nothing else
    (nudge,) = texts(core)
    assert "caller is waiting" in nudge
    assert kinds(core) == [("stall", 2.8), ("stall_nudge", 2.8)]
    stall = next(e for e in core.timeline if e["kind"] == "stall")
    assert stall["reason"] == "empty_turn" and stall["waited_ms"] == round((2.8 - end) * 1000)
    run_clock(core, 2.8, 3.1)
    core.receive_gemini(audio_frame(pcm24_tone(1.0)), 3.1)  # the nudge is answered
    msgs = run_clock(core, 3.1, 3.3)
    assert first_media_time(msgs) == pytest.approx(3.1)
    assert kinds(core)[-1] == ("stall_recovered", 3.1)
    assert phrases_played(core) == []  # answered within the second: no phrase needed
    assert core.counters["stalls"] == 1 and core.counters["stall_nudges"] == 1
    assert core.counters["stall_recovered"] == 1
    s = core.summary()
    assert (s["stalls"], s["stall_nudges"], s["stall_recovered"]) == (1, 1, 1)


def test_nudge_without_audio_gets_the_thinking_phrase_after_a_second():
    core = make_core(greeting=False)
    caller_turn(core, 1.0)
    run_clock(core, 2.0, 2.8)
    core.receive_gemini(EMPTY_TURN, 2.8)
    msgs = run_clock(core, 2.8, 4.2)
    assert first_media_time(msgs) == pytest.approx(3.8, abs=0.021)
    assert phrases_played(core) == ["thinking"]
    # The real answer stops the phrase at once.
    core.receive_gemini(audio_frame(pcm24_tone(0.5)), 4.2)
    assert any(m["event"] == "clear" for m in drain(core.twilio_out))
    assert core.counters["stall_recovered"] == 1


def test_no_reply_by_the_deadline_is_found_and_the_phrase_plays_at_once():
    core = make_core(greeting=False)
    end = caller_turn(core, 1.0)
    msgs = run_clock(core, 2.0, 3.5)
    deadline = end + 0.5 + 0.7  # end of speech + silenceDurationMs + no_reply_s
    stall = next(e for e in core.timeline if e["kind"] == "stall")
    assert stall["reason"] == "no_reply" and stall["t"] == pytest.approx(deadline, abs=0.021)
    assert first_media_time(msgs) == pytest.approx(deadline, abs=0.021)
    assert phrases_played(core) == ["thinking"] and len(texts(core)) == 1


def test_retries_are_bounded_then_the_caller_hears_the_apology_and_the_watchdog_stays_quiet():
    core = make_core(greeting=False, reply_watchdog_s=8.0)
    caller_turn(core, 1.0)
    run_clock(core, 2.0, 2.8)
    drain(core.gemini_out)
    core.receive_gemini(EMPTY_TURN, 2.8)
    for t in (3.1, 3.4, 3.7):  # every nudge answered with nothing, at once
        run_clock(core, round(t - 0.3, 2), t)
        core.receive_gemini(EMPTY_TURN, t)
    assert len(texts(core)) == 3
    assert core.counters["stall_apologies"] == 1 and "apology" in phrases_played(core)
    msgs = run_clock(core, 3.7, 14.0)
    return_marks(core, msgs, 14.0)
    assert texts(core) == []  # nothing more: not the watchdog either (the caller was asked to repeat)
    assert core.counters["nudges"] == 0 and core.counters["stalls"] == 1


def test_the_watchdog_does_not_nudge_on_top_of_a_recovery():
    core = make_core(greeting=False, reply_watchdog_s=2.0,
                     stall=StallConfig(no_reply_s=0.7, retry_after_s=1.5, max_nudges=3))
    caller_turn(core, 1.0)
    run_clock(core, 2.0, 6.5)  # the watch's nudges at ~3.2, 4.7, 6.2 fall past the watchdog's 2 s
    assert core.counters["nudges"] == 0
    assert core.counters["stall_nudges"] == 3


def test_the_caller_talking_again_ends_the_recovery():
    core = make_core(greeting=False)
    caller_turn(core, 1.0)
    run_clock(core, 2.0, 2.8)
    core.receive_gemini(EMPTY_TURN, 2.8)
    drain(core.gemini_out)
    caller_turn(core, 3.0, 0.5)  # "hello?": Gemini hears it as a new turn
    assert kinds(core)[-1][0] == "stall_abandoned"
    run_clock(core, 3.5, 3.9)
    assert texts(core) == []  # no nudge while the caller's new turn is pending
    assert phrases_played(core) == []


def test_a_turn_explained_by_a_tool_call_or_transcription_is_no_stall():
    core = make_core(greeting=False, tool_names=frozenset({"lookup_market"}))
    caller_turn(core, 1.0)
    run_clock(core, 2.0, 2.6)
    core.receive_gemini(json.dumps({"toolCall": {"functionCalls": [
        {"id": "c1", "name": "lookup_market", "args": {}}]}}).encode(), 2.6)
    core.receive_gemini(EMPTY_TURN, 2.7)
    caller_turn(core, 5.0)
    run_clock(core, 6.0, 6.6)
    core.receive_gemini(b'{"serverContent":{"outputTranscription":{"text":"Hm."}}}', 6.6)
    core.receive_gemini(EMPTY_TURN, 6.7)
    assert core.counters["stalls"] == 0


def test_a_greeting_stall_repeats_the_greeting_request_and_plays_one_moment():
    core = make_core()
    core.receive_gemini(EMPTY_TURN, 0.3)  # the greeting came back empty
    (nudge,) = texts(core)
    assert nudge == CallConfig().greeting_prompt
    msgs = run_clock(core, 0.3, 1.5)
    assert first_media_time(msgs) == pytest.approx(1.3, abs=0.021)
    assert phrases_played(core) == ["filler"]
    stall = next(e for e in core.timeline if e["kind"] == "stall")
    assert stall["expected"] == "greeting"


def test_a_greeting_that_never_starts_is_found_after_the_first_reply_budget():
    core = make_core()
    msgs = run_clock(core, 0.0, 1.6)
    assert first_media_time(msgs) == pytest.approx(1.5, abs=0.021)
    assert texts(core) == [CallConfig().greeting_prompt]


def test_a_stall_right_after_a_resumption_is_nudged_on_the_new_connection():
    core = make_core(greeting=False)
    caller_turn(core, 1.0)
    core.receive_gemini(audio_frame(pcm24_tone(2.0)), 2.5)  # the agent's question ...
    run_clock(core, 2.5, 3.0)
    assert core.gemini_closed(1011, "internal", 3.0) is True  # ... is cut off
    drain(core.gemini_out)
    run_clock(core, 3.0, 4.0)
    assert texts(core) == []  # nothing to nudge while the link is down
    core.gemini_connected(4.0)
    core.receive_gemini(b'{"setupComplete":{}}', 4.1)
    assert any("repeat" in t for t in texts(core))
    core.receive_gemini(EMPTY_TURN, 4.4)  # the resumed session answers with nothing
    (nudge,) = texts(core)
    assert "go on" in nudge
    stall = next(e for e in core.timeline if e["kind"] == "stall")
    assert stall["expected"] == "resume"


def test_a_nudge_due_during_a_handover_waits_for_the_next_connection():
    core = make_core(greeting=False)
    caller_turn(core, 1.0)  # the reply is due by ~3.2
    core.receive_gemini(b'{"goAway":{"timeLeft":"30s"}}', 2.1)
    run_clock(core, 2.1, 3.0)
    core.begin_handover(3.0)
    drain(core.gemini_out)
    run_clock(core, 3.0, 3.4)
    assert core.counters["stalls"] == 1 and texts(core) == []  # found, but nothing can be sent yet
    core.receive_gemini(b'{"setupComplete":{}}', 3.4)
    run_clock(core, 3.4, 3.6)
    assert any("caller is waiting" in t for t in texts(core))


def test_hanging_up_stands_the_watch_down():
    core = make_core(greeting=False)
    caller_turn(core, 1.0)
    core.request_end_call("done", 2.0)
    run_clock(core, 2.0, 3.6)
    assert core.ended == "end_call:done"
    assert core.counters["stalls"] == 0 and texts(core) == []


def test_stalls_are_counted_on_metrics():
    metrics = Metrics()
    core = make_core(greeting=False, metrics=metrics)
    caller_turn(core, 1.0)
    run_clock(core, 2.0, 2.8)
    core.receive_gemini(EMPTY_TURN, 2.8)
    core.receive_gemini(audio_frame(pcm24_tone(0.5)), 3.1)
    text = metrics.render().decode()
    assert 'bridge_stalls_total{reason="empty_turn"} 1.0' in text
    assert 'bridge_stall_outcomes_total{outcome="recovered"} 1.0' in text
    assert "bridge_stall_nudges_total 1.0" in text


def test_stall_watch_off_leaves_only_the_watchdog():
    core = make_core(greeting=False, stall=StallConfig(enabled=False), reply_watchdog_s=8.0)
    end = caller_turn(core, 1.0)
    run_clock(core, 2.0, 2.8)
    drain(core.gemini_out)
    core.receive_gemini(EMPTY_TURN, 2.8)
    run_clock(core, 2.8, end + 7.9)
    assert texts(core) == []
    run_clock(core, end + 7.9, end + 8.1)
    assert len(texts(core)) == 1 and core.counters["nudges"] == 1 and core.counters["stalls"] == 0


def test_an_empty_turn_before_the_half_second_end_of_turn_guess_still_counts():
    core = make_core(greeting=False, silence_ms=200)  # a short VAD wait: the model answers sooner
    end = caller_turn(core, 1.0)
    run_clock(core, 2.0, 2.3)
    assert core.ending.awaiting_reply_since is None  # the core's own end-of-turn guess needs 0.5 s
    core.receive_gemini(EMPTY_TURN, round(end + 0.35, 2))
    assert core.counters["stalls"] == 1 and len(texts(core)) == 1


def test_the_agents_own_turn_complete_is_not_a_stall_when_the_caller_spoke_over_it():
    core = make_core(greeting=False)
    core.receive_gemini(audio_frame(pcm24_tone(2.0)), 1.0)  # the agent talks ...
    caller_turn(core, 1.2, 0.4)  # ... the caller says something over it ...
    core.receive_gemini(EMPTY_TURN, 2.0)  # ... and the agent's turn ends while it still plays
    run_clock(core, 2.0, 2.4)
    assert core.counters["stalls"] == 0
