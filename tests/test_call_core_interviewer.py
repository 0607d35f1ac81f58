"""Filler, tools, end_call, watchdogs and resilience in the call core, on a fake clock."""

import json
import logging

import pytest

from telephony_bridge.call import CallConfig, CallCore
from telephony_bridge.gemini.messages import SetupConfig
from telephony_bridge.gemini.session import SessionState
from telephony_bridge.metrics import Metrics
from telephony_bridge.call.stall_watch import StallConfig

from test_call_core import STREAM_SID, START, audio_frame, drain, media, pcm24_tone, ulaw_tone

PHRASES = {"filler": b"\x10" * 160 * 25, "reconnect": b"\x20" * 160 * 40, "apology": b"\x30" * 160 * 50,
           "goodbye_error": b"\x40" * 160 * 60}


def make_core(**cfg) -> CallCore:
    cfg.setdefault("tool_names", frozenset({"lookup_market", "save_note", "end_call"}))
    core = CallCore(SetupConfig(model="m"), CallConfig(playback_lead_s=0.1, **cfg), now=0.0,
                    phrases=PHRASES.get)
    core.gemini_connected(0.0)
    core.receive_gemini(b'{"setupComplete":{}}', 0.0)
    core.receive_twilio(START, 0.0)
    drain(core.gemini_out)
    return core


def tool_call(cid="c1", name="lookup_market", args=None) -> bytes:
    return json.dumps({"toolCall": {"functionCalls": [{"id": cid, "name": name, "args": args or {}}]}}).encode()


def run_clock(core, start, end, step=0.02, caller=b"\xff" * 160):
    """Caller frames every 20 ms (as Twilio sends them) plus the core's own timer."""
    out = []
    t = start
    while t < end - 1e-9:
        core.receive_twilio(media(caller), t)
        core.tick(t)
        out += [(t, m) for m in drain(core.twilio_out)]
        t = round(t + step, 6)
    return out


def return_marks(core, msgs, now):
    for _, m in msgs:
        if m["event"] == "mark":
            core.receive_twilio(json.dumps({"event": "mark", "streamSid": STREAM_SID, "mark": m["mark"]}), now)


def first_media_time(msgs):
    return next((t for t, m in msgs if m["event"] == "media"), None)


def test_filler_starts_between_800_and_1000_ms_after_a_slow_tool_call():
    core = make_core()
    core.receive_gemini(tool_call(), 1.0)
    assert [c.id for c in core.tool_requests] == ["c1"]
    msgs = run_clock(core, 1.0, 2.5)
    start = first_media_time(msgs)
    assert start is not None and 1.8 <= start <= 2.0
    assert core.counters["fillers"] == 1


def test_no_filler_for_a_tool_that_answers_in_300_ms():
    core = make_core()
    core.receive_gemini(tool_call(), 1.0)
    run_clock(core, 1.0, 1.3)
    core.tool_finished("c1", {"found": True}, 1.3)
    (msg,) = [m for m in drain(core.gemini_out) if "toolResponse" in m]
    assert msg["toolResponse"]["functionResponses"][0] == {"id": "c1", "name": "lookup_market",
                                                           "response": {"found": True}}
    msgs = run_clock(core, 1.3, 3.0)
    assert first_media_time(msgs) is None and core.counters["fillers"] == 0
    assert core.tool_log[0]["duration_ms"] == pytest.approx(300, abs=1)


def test_filler_stops_within_one_frame_when_agent_audio_arrives():
    core = make_core()
    core.receive_gemini(tool_call(), 1.0)
    run_clock(core, 1.0, 2.0)  # filler is playing
    assert core.agent_audible
    core.tool_finished("c1", {"ok": 1}, 2.0)
    core.receive_gemini(audio_frame(pcm24_tone(0.5)), 2.0)
    out = drain(core.twilio_out)
    # the very next thing Twilio gets is a clear (its buffered filler goes), then agent audio
    assert out[0] == {"event": "clear", "streamSid": STREAM_SID}
    assert any(m["event"] == "media" for m in out[1:])
    assert not core.playout.phrase_queue


def test_cancellation_cancels_the_handler_and_sends_no_response():
    core = make_core()
    core.receive_gemini(tool_call(), 1.0)
    core.receive_gemini(b'{"toolCallCancellation":{"ids":["c1"]}}', 1.2)
    assert list(core.tool_cancellations) == ["c1"]
    core.tool_finished("c1", {"late": True}, 2.0)  # the task raced the cancellation
    assert not core.gemini_out
    assert core.tool_log[0]["cancelled"]


def test_repeated_call_ids_are_ignored_and_unknown_tools_get_an_error():
    core = make_core()
    core.receive_gemini(tool_call(), 1.0)
    core.receive_gemini(tool_call(), 1.1)
    assert len(core.tool_requests) == 1 and core.counters["repeated_tool_calls"] == 1
    core.receive_gemini(tool_call("c2", "launch_rocket"), 1.2)
    (msg,) = drain(core.gemini_out)
    assert "error" in msg["toolResponse"]["functionResponses"][0]["response"]


def test_end_call_hangs_up_only_after_the_goodbye_mark_returns():
    core = make_core()
    core.receive_gemini(tool_call("e1", "end_call", {"reason": "done"}), 1.0)
    core.request_end_call("done", 1.0)  # what the end_call handler does
    core.tool_finished("e1", {"ending": True}, 1.0)
    core.receive_gemini(audio_frame(pcm24_tone(1.0)), 1.3)  # the goodbye
    core.receive_gemini(b'{"serverContent":{"turnComplete":true}}', 1.35)
    msgs = run_clock(core, 1.3, 3.0)
    assert core.ended is None  # audio played, but no mark has come back yet
    return_marks(core, msgs, 3.0)
    core.tick(3.0)
    assert core.ended == "end_call:done"


def test_end_call_without_a_goodbye_still_ends_after_the_grace():
    core = make_core()
    core.request_end_call("done", 1.0)
    run_clock(core, 1.0, 2.4)
    assert core.ended is None
    run_clock(core, 2.4, 2.6)
    assert core.ended == "end_call:done"


def test_watchdog_nudges_once_then_apologises():
    # The last resort, without the stall watch (test_call_core_stalls.py) in front of it.
    core = make_core(reply_watchdog_s=3.0, stall=StallConfig(enabled=False))
    # the greeting was requested at t=0 and nothing came
    run_clock(core, 0.0, 3.1)
    texts = [m["clientContent"]["turns"][0]["parts"][0]["text"] for m in drain(core.gemini_out)
             if "clientContent" in m]
    assert texts and "waiting" in texts[-1]
    assert core.counters["nudges"] == 1 and core.counters["apologies"] == 0
    msgs = run_clock(core, 3.1, 6.2)
    assert core.counters["apologies"] == 1
    assert first_media_time(msgs) is not None  # the apology clip played


def test_transient_close_keeps_caller_audio_and_replays_what_followed_the_handle():
    core = make_core()
    core.receive_gemini(b'{"sessionResumptionUpdate":{"newHandle":"h1","resumable":true}}', 1.0)
    assert core.new_handle == "h1"
    for i in range(10):  # sent to the old connection after the handle
        core.receive_twilio(media(ulaw_tone(0.02, 0.2)), 1.0 + i * 0.02)
    drain(core.gemini_out)
    assert core.gemini_closed(1011, "internal", 1.2) is True
    for i in range(5):  # while down: kept
        core.receive_twilio(media(ulaw_tone(0.02, 0.2)), 1.2 + i * 0.02)
    assert not core.gemini_out
    setup = json.loads(core.gemini_connected(1.5))
    assert setup["setup"]["sessionResumption"] == {"handle": "h1"}
    core.receive_gemini(b'{"setupComplete":{}}', 1.6)
    audio = [m for m in drain(core.gemini_out) if "realtimeInput" in m]
    assert len(audio) == 15  # 10 replayed + 5 kept
    assert core.counters["reconnects"] == 1 and core.counters["input_dropped_frames"] == 0


def test_reconnect_notice_plays_when_gemini_stays_down():
    core = make_core(reconnect_notice_after_s=0.6)
    core.gemini_closed(1006, "", 1.0)
    msgs = run_clock(core, 1.0, 2.0)
    start = first_media_time(msgs)
    assert start is not None and 1.6 <= start <= 1.64


def test_stale_handle_falls_back_to_a_fresh_session_seeded_with_the_transcript():
    core = make_core()
    core.transcript.append({"role": "agent", "text": "What problem are you solving?", "t": 1})
    core.transcript.append({"role": "caller", "text": "Dental cancellations.", "t": 3})
    core.receive_gemini(b'{"sessionResumptionUpdate":{"newHandle":"h1","resumable":true}}', 4.0)
    core.gemini_closed(1011, "", 5.0)
    core.gemini_connected(5.1)
    assert core.gemini_closed(1008, "stale handle", 5.2) is True
    setup = json.loads(core.gemini_connected(5.3))
    assert setup["setup"]["sessionResumption"] == {}
    core.receive_gemini(b'{"setupComplete":{}}', 5.4)
    (seed,) = [m["clientContent"] for m in drain(core.gemini_out) if "clientContent" in m]
    turns = [(t["role"], t["parts"][0]["text"]) for t in seed["turns"]]
    assert turns[:2] == [("model", "What problem are you solving?"), ("user", "Dental cancellations.")]
    assert turns[-1][0] == "user" and "Do not greet" in turns[-1][1] and seed["turnComplete"] is True


def test_a_permanent_close_ends_the_call_with_a_spoken_apology():
    core = make_core()
    assert core.gemini_closed(1007, "bad request", 1.0) is False
    msgs = run_clock(core, 1.0, 2.4)
    assert first_media_time(msgs) == pytest.approx(1.0)
    assert core.ended is None  # still talking
    return_marks(core, msgs, 2.5)
    core.tick(2.5)
    assert core.ended == "gemini-refused:invalid_request"  # 1007 mid-session, words unknown
    assert not core.goodbye_unheard


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append((record.getMessage(), getattr(record, "fields", {})))


def refused_core(metrics=None):
    """A call whose stream has started while its first Gemini connection is in setup."""
    core = CallCore(SetupConfig(model="models/gone-live-model"), CallConfig(playback_lead_s=0.1), now=0.0,
                    phrases=PHRASES.get, metrics=metrics)
    core.receive_twilio(START, 0.0)
    core.gemini_connected(0.0)
    return core


def test_a_refusal_at_setup_plays_the_goodbye_and_ends_only_when_its_last_mark_returns():
    metrics = Metrics()
    lines = _Lines()
    logging.getLogger("telephony_bridge.call").addHandler(lines)
    try:
        core = refused_core(metrics)
        reason = "models/gone-live-model is not found for API version v1beta, or is not supported for bidiGe"
        assert core.gemini_closed(1008, reason, 0.05) is False  # no retry
        assert core.refusal.kind.value == "model_not_found" and core.refusal.reason == reason
        assert core.closing and core.ended is None
        msgs = run_clock(core, 0.05, 1.4)  # the 1.2 s goodbye_error is sent (whole: a last phrase)
        frames = [m for _, m in msgs if m["event"] == "media"]
        assert len(frames) == 60
        assert core.ended is None  # played, but Twilio has not said so: the stream stays open
        core.gemini_gave_up(1.4)  # a second verdict changes nothing
        return_marks(core, msgs, 1.45)
        assert core.ended == "gemini-refused:model_not_found" and not core.goodbye_unheard
    finally:
        logging.getLogger("telephony_bridge.call").removeHandler(lines)
    (line,) = [f for name, f in lines.lines if name == "call.gemini_refused"]
    assert line["kind"] == "model_not_found" and line["model"] == "models/gone-live-model" and line["code"] == 1008
    assert line["reason"] == reason and line["attempts"] == 1
    value = metrics.registry.get_sample_value
    assert value("bridge_gemini_refusals_total", {"kind": "model_not_found"}) == 1.0
    assert value("bridge_gemini_refusals_total", {"kind": "bad_key"}) == 0.0


def twilio_holes(msgs):
    """Where Twilio's buffer ran dry inside the audio sent (seconds of silence the caller heard).

    Twilio plays what it holds back to back from the first frame: frame *i* plays at ``start +
    i * 20 ms`` if it has arrived by then; one that arrives later leaves a hole and starts there."""
    play_at, holes = None, []
    for t, m in msgs:
        if m["event"] != "media":
            continue
        if play_at is None:
            play_at = t
        elif t > play_at + 1e-9:
            holes.append(round(t - play_at, 3))
            play_at = t
        play_at += 0.02
    return holes


def test_a_stall_on_our_side_puts_no_hole_in_the_goodbye():
    # The bridge's event loop stops for 300 ms in the middle of the apology (a GC pause, a starved
    # CPU): no caller frame is read, no timer runs. Twilio plays on meanwhile from what it holds.
    # Paced at the lead (100 ms here), its buffer ran dry and the caller heard a hole mid-sentence
    # (the flake in test_refusal_end_to_end: "not byte for byte"); the last phrase must be in
    # Twilio's hands whole before such a stall can matter.
    core = refused_core()
    assert core.gemini_closed(1007, "API key not valid. Please pass a valid API key.", 0.05) is False
    msgs = [(0.05, m) for m in drain(core.twilio_out)]
    msgs += run_clock(core, 0.06, 0.5)
    msgs += run_clock(core, 0.8, 1.6)  # nothing between 0.5 and 0.8: the stall
    frames = [m["media"]["payload"] for _, m in msgs if m["event"] == "media"]
    assert len(frames) == 60 and twilio_holes(msgs) == []
    assert core.ended is None  # all played by now, but the stream waits for Twilio to say so
    return_marks(core, msgs, 1.6)
    assert core.ended == "gemini-refused:bad_key" and not core.goodbye_unheard


def test_a_goodbye_whose_marks_never_return_ends_at_the_cap_and_counts_as_unheard():
    core = refused_core()
    core.gemini_closed(1007, "API key not valid. Please pass a valid API key.", 0.0)
    assert core.refusal.kind.value == "bad_key"
    run_clock(core, 0.0, 4.1)  # 1.2 s of phrase + the 3 s cap, no mark ever comes back
    assert core.ended is None
    run_clock(core, 4.1, 4.4)
    assert core.ended == "gemini-refused:bad_key" and core.goodbye_unheard


def test_refused_upgrades_stop_at_once_and_server_errors_are_retried():
    core = refused_core()
    assert core.gemini_connect_failed("InvalidStatus: HTTP 503", 0.1, status=503, body="Service Unavailable")
    assert core.refusal is None and not core.closing
    core.gemini_connected(0.2)
    assert core.gemini_connect_failed("InvalidStatus: HTTP 403", 0.3, status=403,
                                      body="API key not valid. Please pass a valid API key.") is False
    assert core.refusal.kind.value == "bad_key" and core.refusal.status == 403 and core.closing


def test_quota_is_a_refusal_but_an_internal_error_reconnects():
    core = make_core()
    assert core.gemini_closed(1011, "Internal error encountered.", 1.0) is True
    core.gemini_connected(1.1)
    core.receive_gemini(b'{"setupComplete":{}}', 1.2)
    assert core.gemini_closed(1011, "You exceeded your current quota, please check your plan and billing "
                                    "details. For more information on this error, head to: h", 2.0) is False
    assert core.refusal.kind.value == "quota" and core.closing


def test_giving_up_on_reconnects_is_unreachable_with_the_last_failure():
    core = refused_core()
    core.gemini_connect_failed("OSError: [Errno 111] Connect call failed", 0.1)
    core.gemini_gave_up(3.9)
    assert core.refusal.kind.value == "unreachable" and "Errno 111" in core.refusal.reason
    assert core.closing


def test_go_away_hands_over_at_a_quiet_moment_not_mid_sentence():
    core = make_core()
    core.receive_gemini(audio_frame(pcm24_tone(1.0)), 1.0)
    core.receive_gemini(b'{"goAway":{"timeLeft":"30s"}}', 1.0)
    assert core.session.state is SessionState.DRAINING
    assert not core.handover_wanted(1.0)  # the agent is talking
    msgs = run_clock(core, 1.0, 2.2)
    core.receive_gemini(b'{"serverContent":{"turnComplete":true}}', 2.2)
    msgs += run_clock(core, 2.2, 2.3)
    return_marks(core, msgs, 2.3)
    assert core.handover_wanted(2.3)
    drain(core.gemini_out)  # what went to the old connection
    core.begin_handover(2.3)
    core.receive_twilio(media(ulaw_tone(0.02, 0.2)), 2.32)  # kept while the next one sets up
    assert not [m for m in core.gemini_out if "realtimeInput" in m]
    core.receive_gemini(b'{"setupComplete":{}}', 2.5)
    assert len([m for m in drain(core.gemini_out) if "realtimeInput" in m]) >= 1
    assert core.counters["handovers"] == 1 and core.session.state is SessionState.ACTIVE


def test_go_away_hands_over_before_the_cut_even_when_busy():
    core = make_core(handover_margin_s=2.0)
    core.receive_gemini(b'{"goAway":{"timeLeft":"5s"}}', 1.0)
    core.receive_gemini(audio_frame(pcm24_tone(10.0)), 1.0)
    assert core.next_deadline() <= 4.0
    assert not core.handover_wanted(2.0) and core.handover_wanted(4.0)


def test_agent_audio_after_the_max_duration_goodbye_neither_cuts_nor_clears_it():
    # At the length limit the call ends on the goodbye phrase while Gemini is still connected. A
    # reply still streaming in is not "real agent audio stopping a phrase": it must not clear
    # Twilio's buffer or drop the goodbye (the caller would lose the ending, the record say heard).
    core = make_core(max_call_s=5.0)
    msgs = run_clock(core, 0.0, 5.02)
    assert core.closing and core.ended is None
    goodbye = [m for t, m in msgs if t >= 5.0 and m["event"] == "media"]
    assert len(goodbye) == 60  # 1.2 s of goodbye_error, all in Twilio's hands
    core.receive_gemini(audio_frame(pcm24_tone(0.4)), 5.05)  # the model was mid-reply
    later = run_clock(core, 5.06, 5.5)
    assert [m["event"] for _, m in later if m["event"] in ("clear", "media")] == []
    assert core.playout.phrase_queue or not core.playout.queue  # nothing of the reply queued to play
    return_marks(core, msgs, 6.3)
    core.tick(6.3)
    assert core.ended == "max-duration"
    assert core.counters["agent_chunks_dropped_closing"] == 1


def test_an_interruption_during_the_max_duration_goodbye_does_not_clear_it():
    # The caller talks over "we have to end here": Gemini's VAD says interrupted. The call ends
    # anyway; cutting its last words would only leave the caller hanging in silence.
    core = make_core(max_call_s=5.0)
    msgs = run_clock(core, 0.0, 5.02)
    assert core.closing
    core.receive_gemini(b'{"serverContent":{"interrupted":true}}', 5.1)
    later = run_clock(core, 5.12, 5.5)
    assert [m["event"] for _, m in later if m["event"] == "clear"] == []
    assert core.counters["barge_ins"] == 0
    return_marks(core, msgs, 6.3)
    core.tick(6.3)
    assert core.ended == "max-duration"
