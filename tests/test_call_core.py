"""The call core on a fake clock: no sockets, no sleeps."""

import base64
import json

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from telephony_bridge.call import CallConfig, CallCore
from telephony_bridge.echo_gate import EchoGate
from telephony_bridge.gemini.messages import SetupConfig

STREAM_SID = "MZ" + "1" * 32
START = json.dumps({"event": "start", "streamSid": STREAM_SID, "start": {
    "streamSid": STREAM_SID, "callSid": "CA" + "2" * 32, "accountSid": "AC" + "3" * 32, "tracks": ["inbound"],
    "customParameters": {}, "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})


def ulaw_tone(seconds: float, amp: float, freq: float = 440.0) -> bytes:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    t = np.arange(int(seconds * 8000)) / 8000
    pcm = (amp * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()
    return audioop.lin2ulaw(pcm, 2)


def pcm24_tone(seconds: float, amp: float = 0.3, freq: float = 300.0) -> bytes:
    t = np.arange(int(seconds * 24000)) / 24000
    return (amp * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def media(payload: bytes, ts: int = 0) -> str:
    return json.dumps({"event": "media", "streamSid": STREAM_SID, "media": {
        "track": "inbound", "chunk": "1", "timestamp": str(ts), "payload": base64.b64encode(payload).decode()}})


def audio_frame(pcm: bytes) -> bytes:
    return json.dumps({"serverContent": {"modelTurn": {"parts": [{"inlineData": {
        "mimeType": "audio/pcm;rate=24000", "data": base64.b64encode(pcm).decode()}}]}}}).encode()


def drain(q) -> list[dict]:
    out = [json.loads(m) for m in q]
    q.clear()
    return out


def ready_core(lead: float = 0.1, now: float = 0.0) -> CallCore:
    core = CallCore(SetupConfig(model="m"), CallConfig(playback_lead_s=lead), now=now)
    setup = json.loads(core.gemini_connected(now))
    assert "setup" in setup
    core.receive_gemini(b'{"setupComplete":{}}', now)
    core.receive_twilio(START, now)
    return core


def test_greeting_waits_for_both_sides_then_caller_audio_flows():
    core = CallCore(SetupConfig(model="m"), CallConfig(), now=0.0)
    core.receive_twilio(START, 0.0)
    for i in range(10):  # caller audio before Gemini is ready is kept, not lost
        core.receive_twilio(media(b"\xff" * 160, i * 20), 0.02 * i)
    assert not core.gemini_out
    core.gemini_connected(0.2)
    core.receive_gemini(b'{"setupComplete":{}}', 0.3)
    msgs = drain(core.gemini_out)
    audio = [m for m in msgs if "realtimeInput" in m]
    assert len(audio) == 10
    assert "clientContent" in msgs[-1]  # greeting after the buffered audio
    core.receive_twilio(media(ulaw_tone(0.02, 0.3)), 0.32)
    (msg,) = drain(core.gemini_out)
    pcm = base64.b64decode(msg["realtimeInput"]["audio"]["data"])
    assert msg["realtimeInput"]["audio"]["mimeType"] == "audio/pcm;rate=16000"
    assert len(pcm) == 640  # 20 ms at 16 kHz, 16-bit


def test_agent_audio_is_paced_within_the_lead_and_marked():
    core = ready_core(lead=0.1)
    core.receive_gemini(audio_frame(pcm24_tone(1.0)), 1.0)
    out = drain(core.twilio_out)
    media_out = [m for m in out if m["event"] == "media"]
    assert 1 <= len(media_out) <= 6  # never more than the lead (100 ms = 5 frames) ahead
    assert all(len(base64.b64decode(m["media"]["payload"])) == 160 for m in media_out)
    now, sent = 1.0, len(media_out)
    marks = [m["mark"]["name"] for m in out if m["event"] == "mark"]
    while core.queue:
        deadline = core.next_deadline()
        assert deadline is not None and deadline > now - 1e-9
        now = deadline
        core.tick(now)
        out = drain(core.twilio_out)
        sent += sum(m["event"] == "media" for m in out)
        marks += [m["mark"]["name"] for m in out if m["event"] == "mark"]
        # the lead bound holds at every step
        assert core.playout.playout_end - now <= 0.1 + 0.02 + 1e-9
    assert sent == 50  # one second of audio, 20 ms frames
    assert 1.7 < now < 2.0  # it took about real time to forward
    assert core.agent_audible
    for name in marks:
        core.receive_twilio(json.dumps({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": name}}), now)
    assert not core.agent_audible
    assert core.counters["marks_played"] == len(marks)


def test_barge_in_clears_drops_queue_and_flushed_marks_are_not_played():
    core = ready_core(lead=0.1)
    core.receive_gemini(audio_frame(pcm24_tone(2.0)), 1.0)
    out = drain(core.twilio_out)
    marks = [m["mark"]["name"] for m in out if m["event"] == "mark"]
    assert core.queue
    core.receive_gemini(b'{"serverContent":{"interrupted":true}}', 1.05)
    out = drain(core.twilio_out)
    assert out[-1] == {"event": "clear", "streamSid": STREAM_SID}
    assert not any(m["event"] == "media" for m in out)
    assert not core.queue and core.next_deadline() == pytest.approx(10.0)  # only the no-media timer is left
    # Twilio returns pending marks after a clear: they mean "flushed"
    for name in marks:
        core.receive_twilio(json.dumps({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": name}}), 1.06)
    assert core.counters["marks_played"] == 0 and core.counters["marks_flushed"] == len(marks)
    assert core.counters["barge_ins"] == 1 and core.turns[-1].interrupted
    # late audio of the interrupted turn leaves no trace: a new turn starts clean
    core.receive_gemini(audio_frame(pcm24_tone(0.04)), 1.2)
    assert core.turns[-1].index == 2


def test_turn_latency_from_caller_end_of_speech_to_first_agent_frame():
    core = ready_core()
    now = 1.0
    for _ in range(50):  # one second of speech
        core.receive_twilio(media(ulaw_tone(0.02, 0.3)), now)
        now += 0.02
    speech_end = now - 0.02
    for _ in range(40):  # 0.8 s of silence
        core.receive_twilio(media(b"\xff" * 160), now)
        now += 0.02
    core.receive_gemini(audio_frame(pcm24_tone(0.2)), now)
    assert core.latencies_ms() == [pytest.approx((now - speech_end) * 1000, abs=0.5)]
    summary = core.summary()
    assert summary["agent_turns"] == 1 and summary["latency_p50_ms"] == pytest.approx(820, abs=1)
    assert 0.15 < summary["caller_rms_max"] < 0.4


def test_transcripts_are_recorded_per_turn():
    core = ready_core()
    core.receive_gemini(json.dumps({"serverContent": {"outputTranscription": {"text": "Hello, "}}}).encode(), 1.0)
    core.receive_gemini(audio_frame(pcm24_tone(0.1)), 1.0)
    core.receive_gemini(json.dumps({"serverContent": {"outputTranscription": {"text": "founder."},
                                                      "turnComplete": True}}).encode(), 1.1)
    for t in np.arange(1.1, 1.6, 0.02):
        core.tick(t)
    for m in drain(core.twilio_out):
        if m["event"] == "mark":
            core.receive_twilio(json.dumps({"event": "mark", "mark": {"name": m["mark"]["name"]}}), 1.6)
    core.receive_gemini(json.dumps({"serverContent": {"inputTranscription": {"text": "I build tools"}}}).encode(), 3)
    core.receive_gemini(audio_frame(pcm24_tone(0.1)), 4.0)
    roles = [(e["role"], e["text"]) for e in core.transcript]
    assert roles[0] == ("agent", "Hello, founder.")
    assert ("caller", "I build tools") in roles


def test_bad_twilio_input_is_counted_and_skipped_and_fatal_input_ends_the_call():
    core = ready_core()
    core.receive_twilio("{not json", 1.0)
    core.receive_twilio('{"event":"media","media":{"payload":"%%%"}}', 1.0)
    core.receive_twilio('{"event":"brandNew"}', 1.0)
    assert core.ended is None
    assert core.counters["twilio_errors"] == 2 and core.counters["unknown_events"] == 1
    core.receive_twilio(START, 1.1)
    assert core.ended == "twilio-protocol-error"


def test_bad_gemini_input_is_counted_and_skipped():
    core = ready_core()
    core.receive_gemini(b"\x00garbage", 1.0)
    core.receive_gemini(b'{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm",'
                        b'"data":"!!"}}]}}}', 1.0)
    assert core.ended is None and core.counters["gemini_errors"] == 2


def test_dtmf_reaches_the_model_as_text_and_stop_ends_the_call():
    core = ready_core()
    drain(core.gemini_out)
    core.receive_twilio('{"event":"dtmf","streamSid":"x","dtmf":{"track":"inbound_track","digit":"7"}}', 1.0)
    (msg,) = drain(core.gemini_out)
    assert "7" in msg["clientContent"]["turns"][0]["parts"][0]["text"]
    core.receive_twilio('{"event":"stop","stop":{"callSid":"CA"}}', 2.0)
    assert core.ended == "caller-hangup"


def test_unknown_tool_calls_get_an_error_response():
    core = ready_core()
    drain(core.gemini_out)
    core.receive_gemini(b'{"toolCall":{"functionCalls":[{"id":"c1","name":"nope","args":{}}]}}', 1.0)
    (msg,) = drain(core.gemini_out)
    resp = msg["toolResponse"]["functionResponses"][0]
    assert resp["id"] == "c1" and "error" in resp["response"]


def test_a_stream_without_media_is_ended_after_the_timeout():
    core = CallCore(SetupConfig(model="m"), CallConfig(no_media_timeout_s=10.0), now=0.0)
    core.receive_twilio(START, 0.0)
    core.receive_twilio(media(b"\xff" * 160), 3.0)
    assert core.next_deadline() == pytest.approx(13.0)
    core.tick(12.9)
    assert core.ended is None
    core.tick(13.0)
    assert core.ended == "no-media"


def test_a_call_longer_than_the_limit_is_ended():
    core = CallCore(SetupConfig(model="m"), CallConfig(max_call_s=60.0), now=100.0)
    core.receive_twilio(START, 100.0)
    t = 100.0
    while core.ended is None and t < 200:
        core.receive_twilio(media(b"\xff" * 160), t)
        core.tick(t)
        t += 1.0
    assert core.ended == "max-duration" and t == pytest.approx(161.0)


def _client_contents(core: CallCore) -> list[dict]:
    return [m["clientContent"] for m in drain(core.gemini_out) if "clientContent" in m]


def test_a_key_press_while_the_model_talks_is_context_on_3x_and_waits_on_2_5():
    core = ready_core()  # model "m": unknown, so the newest profile (3.8)
    assert core.profile.family == "gemini-3.8-live"
    core.gemini_out.clear()
    core.receive_gemini(audio_frame(pcm24_tone(0.2)), 0.1)  # the model is mid-reply
    core.receive_twilio(json.dumps({"event": "dtmf", "streamSid": STREAM_SID,
                                    "dtmf": {"track": "inbound_track", "digit": "5"}}), 0.2)
    (sent,) = _client_contents(core)
    assert sent["turnComplete"] is False  # with turnComplete it would cut the agent off
    core25 = CallCore(SetupConfig(model="gemini-2.5-flash-native-audio-preview-12-2025"), CallConfig(), now=0.0)
    core25.gemini_connected(0.0)
    core25.receive_gemini(b'{"setupComplete":{}}', 0.0)
    core25.receive_twilio(START, 0.0)
    core25.gemini_out.clear()
    core25.receive_gemini(audio_frame(pcm24_tone(0.2)), 0.1)
    core25.receive_twilio(json.dumps({"event": "dtmf", "streamSid": STREAM_SID,
                                      "dtmf": {"track": "inbound_track", "digit": "5"}}), 0.2)
    assert _client_contents(core25) == []  # any clientContent interrupts 2.5: held
    core25.receive_gemini(b'{"serverContent":{"turnComplete":true}}', 1.0)
    (held,) = _client_contents(core25)
    assert held["turnComplete"] is True and "key 5" in held["turns"][0]["parts"][0]["text"]


def test_model_audio_needs_no_tick_of_its_own_and_other_frames_ask_for_one():
    """The adapter ticks after a Gemini frame only when ``tick_wanted``: after the model's audio
    (most frames) a tick at once must find nothing to do, so skipping it loses nothing."""
    core = ready_core(lead=0.16)
    for i in range(20):  # the caller speaks, then goes quiet: a reply is awaited
        core.receive_twilio(media(ulaw_tone(0.02, 0.3)), 0.02 * i)
    for i in range(20, 60):
        core.receive_twilio(media(b"\xff" * 160), 0.02 * i)
    now = 1.2
    for k in range(10):  # a reply streams in, 40 ms a frame
        t = now + 0.04 * k
        core.receive_gemini(audio_frame(pcm24_tone(0.04)), t)
        assert core.tick_wanted is False
        before = (list(core.twilio_out), len(core.queue), len(core.timeline), core.next_deadline())
        core.tick(t)
        assert (list(core.twilio_out), len(core.queue), len(core.timeline), core.next_deadline()) == before
        core.twilio_out.clear()
    core.receive_gemini(json.dumps({"serverContent": {"outputTranscription": {"text": "So tell me"}}}).encode(), 1.6)
    assert core.tick_wanted is False
    for frame in (b'{"serverContent":{"turnComplete":true}}', b'{"serverContent":{"interrupted":true}}',
                  b'{"toolCall":{"functionCalls":[{"id":"1","name":"nope","args":{}}]}}', b'{"bad json'):
        core.receive_gemini(frame, 1.7)
        assert core.tick_wanted is True, frame
    core.receive_gemini(audio_frame(pcm24_tone(0.04)), 1.8)
    assert core.tick_wanted is False
    odd_rate = json.dumps({"serverContent": {"modelTurn": {"parts": [{"inlineData": {
        "mimeType": "audio/pcm;rate=16000", "data": base64.b64encode(b"\0\0" * 320).decode()}}]}}}).encode()
    core.receive_gemini(odd_rate, 1.9)
    assert core.tick_wanted is True


def test_a_tick_never_leaves_a_deadline_in_the_past():
    """The adapter ticks the core at next_deadline(); a deadline that a tick leaves at or before
    ``now`` would have it tick again on every loop iteration. Here the reply watchdog comes due
    while Gemini's link is down (a reconnect that takes its time): it must look again later, not
    at once and forever."""
    core = CallCore(SetupConfig(model="m"), CallConfig(), now=0.0)
    core.gemini_connected(0.0)
    core.receive_gemini(b'{"setupComplete":{}}', 0.0)
    core.receive_twilio(START, 0.0)
    speech, quiet = ulaw_tone(0.02, 0.3), b"\xff" * 160
    now, ticks, link_down_at = 0.0, 0, 5.0
    for i in range(1, 701):  # 14 s of frames: 1 s of speech, then silence; Gemini never answers
        t = i * 0.02
        while (d := core.next_deadline()) is not None and d <= t and core.ended is None:
            now = max(now, d)
            core.tick(now)
            ticks += 1
            after = core.next_deadline()
            assert after is None or after > now, (now, after)
        now = t
        if link_down_at is not None and now >= link_down_at:
            core.gemini_closed(1011, "internal error", now)
            link_down_at = None
        core.receive_twilio(media(speech if t <= 1.0 else quiet), now)
        drain(core.twilio_out)
        core.gemini_out.clear()
    assert core.ended is None
    assert ticks < 200, ticks  # the timers' own pace, not one per frame


# -- deadline_sooner: the adapter skips next_deadline() after most caller frames -----------------

_QUIET, _SPEECH, _HUSH = b"\xff" * 160, ulaw_tone(0.02, 0.3), ulaw_tone(0.02, 0.02)
_PHRASES = {kind: ulaw_tone(0.8, 0.2) for kind in ("filler", "thinking", "reconnect", "apology", "goodbye_error")}
_CALLER = st.tuples(st.just("caller"), st.sampled_from([_QUIET, _SPEECH, _HUSH]), st.sampled_from([1, 3, 8, 30, 60]))
_STEP = st.one_of(
    _CALLER, _CALLER, _CALLER,  # most of a call is caller frames
    st.tuples(st.just("audio"), st.floats(0.02, 1.5)),
    st.tuples(st.just("gemini"), st.sampled_from([
        b'{"serverContent":{"interrupted":true}}', b'{"serverContent":{"turnComplete":true}}',
        b'{"serverContent":{"generationComplete":true}}',
        b'{"toolCall":{"functionCalls":[{"id":"t1","name":"nope","args":{}}]}}',
        b'{"serverContent":{"outputTranscription":{"text":"and so"}}}'])),
    st.tuples(st.just("silence"), st.sampled_from([0.1, 0.5, 2.0, 9.0])),
    st.tuples(st.just("link"), st.sampled_from(["drop", "back"])),  # a 1011, then a resumed session
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_STEP, min_size=1, max_size=25), st.booleans(), st.sampled_from([0.1, 0.16, 0.3]), st.booleans())
# Cases it found, kept: the watchdog due during a stall's recovery; the no-media timeout read short
# of due at its own deadline (float subtraction); a phrase queued behind the agent's end of turn
# (due again at once, then played: one extra tick, not a spin).
@example([("caller", _SPEECH, 1), ("silence", 9.0), ("caller", _QUIET, 1), ("caller", _QUIET, 1)], False, 0.1, False)
@example([("caller", _QUIET, 3), ("silence", 9.0), ("caller", _QUIET, 1), ("silence", 2.0), ("silence", 9.0)],
         False, 0.1, False)
@example([("silence", 2.0), ("gemini", b'{"serverContent":{"turnComplete":true}}'), ("caller", _QUIET, 1),
          ("caller", _QUIET, 1)], False, 0.1, True)
def test_a_caller_frame_that_says_no_deadline_came_sooner_never_brings_one_sooner(steps, gated, lead, phrases):
    """The adapter's timer stays where it was after a caller frame with ``deadline_sooner``
    False: so after such a frame next_deadline() must never be earlier than before it. Driven
    through pauses, barge-ins, awaited replies, stalls, tool calls and timeouts, with the echo
    gate's real decisions, Gemini drops and resumes, the timer run as the adapter runs it
    (ticked at each deadline). And no tick leaves a deadline at or before its ``now``: the
    adapter would tick again on every loop iteration."""
    core = CallCore(SetupConfig(model="m"), CallConfig(playback_lead_s=lead), now=0.0,
                    gate=EchoGate() if gated else None,
                    phrases=_PHRASES.get if phrases else None)  # with them, notices and fillers play
    core.gemini_connected(0.0)
    core.receive_gemini(b'{"setupComplete":{}}', 0.0)
    core.receive_twilio(START, 0.0)
    now = 0.0
    marks: list[str] = []

    def advance_to(t: float) -> None:
        nonlocal now
        again = 0  # ticks in a row at one instant
        while core.ended is None and (d := core.next_deadline()) is not None and d <= t:
            again = again + 1 if d <= now else 0
            # One more tick at the same instant is a step that waited its turn (a phrase behind the
            # agent's end-of-turn marker); a deadline two ticks leave behind is the adapter spinning.
            assert again < 2, ("left in the past", d, now)
            now = max(now, d)
            core.tick(now)
        now = max(now, t)

    def collect() -> None:  # Twilio plays what it got; its marks come back a little later
        for m in drain(core.twilio_out):
            if m["event"] == "mark":
                marks.append(m["mark"]["name"])
            elif m["event"] == "clear":
                marks.clear()

    for step in steps:
        if core.ended is not None:
            break
        kind = step[0]
        if kind == "caller":
            for _ in range(step[2]):
                advance_to(now + 0.02)
                if core.ended is not None:
                    break
                before = core.next_deadline()
                core.receive_twilio(media(step[1]), now)
                if not core.deadline_sooner and core.ended is None:
                    after = core.next_deadline()
                    assert after is not None and before is not None and after >= before - 1e-9, \
                        (before, after, now)
                collect()
                if marks and len(marks) > 2:
                    core.receive_twilio(json.dumps({"event": "mark", "streamSid": STREAM_SID,
                                                    "mark": {"name": marks.pop(0)}}), now)
                    assert core.deadline_sooner  # any other Twilio event: always looked at
        elif kind == "audio":
            core.receive_gemini(audio_frame(pcm24_tone(step[1])), now)
        elif kind == "link":
            if step[1] == "drop":
                core.gemini_closed(1011, "internal error", now)
            else:
                core.gemini_connected(now)
                core.receive_gemini(b'{"setupComplete":{}}', now)
            core.gemini_out.clear()
        elif kind == "gemini":
            core.receive_gemini(step[1], now)
            core.tool_requests.clear()
        else:
            advance_to(now + step[1])
        collect()


def test_frames_near_the_vad_commit_go_one_by_one_the_rest_in_chunks():
    """100 ms chunks, silenceDurationMs 800: a second of speech, then silence. Frames from 0.6 to
    1.0 s after the last speech go at once (the one completing the VAD's silence is not held);
    the rest go five to a message."""
    core = CallCore(SetupConfig(model="m", silence_duration_ms=800), CallConfig(input_chunk_ms=100), now=0.0)
    core.gemini_connected(0.0)
    core.receive_gemini(b'{"setupComplete":{}}', 0.0)
    core.receive_twilio(START, 0.0)
    core.gemini_out.clear()
    speech, quiet = ulaw_tone(0.02, 0.3), b"\xff" * 160
    sent: list[tuple[float, int]] = []  # (when, frames in the message)
    for i in range(1, 126):  # 2.5 s of 20 ms frames: speech until 1.0 s
        now = round(0.02 * i, 2)
        core.receive_twilio(media(speech if now <= 1.0 else quiet), now)
        for m in drain(core.gemini_out):
            if "realtimeInput" in m:
                sent.append((now, len(base64.b64decode(m["realtimeInput"]["audio"]["data"])) // 640))
    assert core.turns_part.last_caller_speech == 1.0
    core.receive_twilio(json.dumps({"event": "stop", "streamSid": STREAM_SID, "stop": {}}), 2.52)
    last = [m for m in drain(core.gemini_out) if "realtimeInput" in m]  # the hang-up's partial chunk
    assert core.ended == "caller-hangup" and len(last) == 1
    assert sum(n for _, n in sent) + len(base64.b64decode(last[0]["realtimeInput"]["audio"]["data"])) // 640 == 125
    eager = [(t, n) for t, n in sent if 1.6 <= t < 2.0]
    assert [t for t, _ in eager] == [round(1.6 + 0.02 * k, 2) for k in range(20)]  # each on its arrival
    assert all(n == 5 for t, n in sent if t < 1.6)  # before the window: whole chunks
    assert all(n == 5 for t, n in sent[len([s for s in sent if s[0] < 2.0]) + 1:])  # after: whole again
