"""Instant barge-in on a fake clock: playout's pause/resume, the onset/confirm/resume machine
(call/barge.py) and the composed core with the real echo gate."""

from __future__ import annotations

import json
from collections import deque

import pytest

from telephony_bridge.call import CallConfig, CallCore
from telephony_bridge.call.barge import BargePause, PauseState
from telephony_bridge.call.config import FRAME_S
from telephony_bridge.call.playout import Playout
from telephony_bridge.call.summary import new_counters
from telephony_bridge.call.timeline import Timeline
from telephony_bridge.call.turns import AgentTurn
from telephony_bridge.echo_gate import EchoGate
from telephony_bridge.gemini.messages import SetupConfig

from test_call_core import START, STREAM_SID, audio_frame, drain, media, pcm24_tone, ulaw_tone

SID = "MZ" + "1" * 32


def numbered(n: int) -> list[bytes]:
    """Frames that say which they are (the first two bytes)."""
    return [i.to_bytes(2, "big") + b"\x80" * 158 for i in range(n)]


class FakeTwilio:
    """Twilio's side of the stream, enough for marks: it plays one queued frame per 20 ms tick,
    echoes each mark once the audio before it has played, and on ``clear`` drops its buffer and
    echoes every pending mark."""

    def __init__(self) -> None:
        self.buffer: deque[tuple[str, object]] = deque()
        self.heard: list[bytes] = []
        self.clears = 0

    def feed(self, out: deque[str]) -> list[str]:
        back = []
        for m in out:
            ev = json.loads(m)
            if ev["event"] == "media":
                import base64
                self.buffer.append(("media", base64.b64decode(ev["media"]["payload"])))
            elif ev["event"] == "mark":
                self.buffer.append(("mark", ev["mark"]["name"]))
            elif ev["event"] == "clear":
                self.clears += 1
                back += [x for k, x in self.buffer if k == "mark"]  # type: ignore[misc]
                self.buffer.clear()
        out.clear()
        return back

    def tick(self) -> list[str]:
        """One 20 ms of playback: returns the marks that came back."""
        back = []
        while self.buffer and self.buffer[0][0] == "mark":
            back.append(self.buffer.popleft()[1])
        if self.buffer:
            self.heard.append(self.buffer.popleft()[1])  # type: ignore[arg-type]
        while self.buffer and self.buffer[0][0] == "mark":
            back.append(self.buffer.popleft()[1])
        return back  # type: ignore[return-value]


class Line:
    """Playout wired to a fake Twilio on a fake clock."""

    def __init__(self, lead: float = 0.1) -> None:
        self.timeline = Timeline(0.0)
        self.turns: list[AgentTurn] = []
        self.done: list[float] = []
        self.p = Playout(CallConfig(playback_lead_s=lead, mark_every_frames=5), self.timeline, new_counters(),
                         now=0.0, on_turn_start=self.start, on_turn_done=self.done.append)
        self.p.start(SID, 0.0)
        self.twilio = FakeTwilio()
        self.now = 0.0

    def start(self, now: float) -> AgentTurn:
        turn = AgentTurn(index=len(self.turns) + 1, started=now)
        self.turns.append(turn)
        return turn

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self.p.pump(self.now)
            for name in self.twilio.feed(self.p.twilio_out):
                self.p.mark_returned(name, self.now)
            self.now = round(self.now + FRAME_S, 6)
            for name in self.twilio.tick():
                self.p.mark_returned(name, self.now)

    def flush_twilio(self) -> None:
        for name in self.twilio.feed(self.p.twilio_out):
            self.p.mark_returned(name, self.now)


def test_pause_stops_forwarding_and_resume_plays_on_from_the_first_unheard_frame():
    line = Line(lead=0.1)
    p = line.p
    frames = numbered(60)
    p.queue.extend(frames)
    p.queue.append(None)
    line.step(20)
    assert p.pausable
    heard_before = len(line.twilio.heard)
    back = p.pause(line.now)
    assert back > 0 and p.paused and not p.pausable
    assert p.deadline() is None  # nothing to forward while paused
    line.flush_twilio()  # the clear reaches Twilio: what it buffered is gone
    assert line.twilio.clears == 1
    line.step(15)  # 300 ms of pause: nothing plays
    assert len(line.twilio.heard) == heard_before
    p.resume(line.now)
    line.step(80)
    heard = [int.from_bytes(f[:2], "big") for f in line.twilio.heard]
    # Every frame heard, in order; the resume repeats at most what played after the last mark.
    assert sorted(set(heard)) == list(range(60))
    repeated = len(heard) - 60
    assert 0 <= repeated <= 5
    assert heard == sorted(heard[:heard_before]) + heard[heard_before:]
    assert heard[heard_before - repeated:heard_before] == heard[heard_before:heard_before + repeated]
    (turn,) = line.turns
    assert turn.frames_sent == 60 and turn.frames_heard == 60  # each frame counted once
    assert line.done  # the turn ended once, heard to the end


def test_pause_after_the_whole_turn_was_forwarded_puts_its_end_back_too():
    line = Line(lead=0.2)
    p = line.p
    p.queue.extend(numbered(8))
    p.queue.append(None)
    line.step(1)  # all 8 frames (160 ms) forwarded at once, the turn's end too
    assert not p.queue and p.sending_turn is False
    back = p.pause(line.now)
    assert back >= 7 and p.queue[-1] is None and p.sending_turn
    line.flush_twilio()
    p.resume(line.now)
    line.step(20)
    heard = [int.from_bytes(f[:2], "big") for f in line.twilio.heard]
    assert sorted(set(heard)) == list(range(8))
    assert len(line.turns) == 1 and line.turns[0].frames_heard == 8 and line.done


def test_interrupt_while_paused_drops_the_frames_put_back():
    line = Line(lead=0.1)
    p = line.p
    p.queue.extend(numbered(50))
    line.step(10)
    p.pause(line.now)
    line.flush_twilio()
    assert p.queue
    p.interrupt(line.now + 0.3)
    assert not p.queue and not p.paused
    line.flush_twilio()
    line.step(10)
    assert len(line.twilio.heard) <= 10


# -- the onset / confirm / resume machine -----------------------------------------------------------

def machine(**kw) -> BargePause:
    args = {"onset_frames": 2, "confirm_s": 0.7, "rearm_s": 0.4}
    args.update(kw)
    return BargePause(timeline=Timeline(0.0), counters=new_counters(), **args)  # type: ignore[arg-type]


def test_onset_needs_consecutive_double_talk_frames():
    b = machine(onset_frames=3)
    assert not b.caller_frame(True, 0.02)
    assert not b.caller_frame(True, 0.04)
    assert not b.caller_frame(False, 0.06)  # a gap starts the count again
    assert not b.caller_frame(True, 0.08)
    assert not b.caller_frame(True, 0.10)
    assert b.caller_frame(True, 0.12)


def test_confirm_within_the_window_records_pause_to_confirm():
    b = machine()
    b.paused(1.0, 7)
    assert b.deadline() == pytest.approx(1.7) and not b.due(1.69)
    assert not b.caller_frame(True, 1.1)  # while paused no new pause
    b.interrupted(1.35)
    assert b.pause_to_confirm_s == [pytest.approx(0.35)]
    assert b.counters["barge_confirmed"] == 1 and b.counters["barge_false_alarms"] == 0
    assert b.state is PauseState.ARMED and b.deadline() is None
    kinds = [e["kind"] for e in b.timeline.events]
    assert kinds == ["pause", "confirmed"]


def test_no_interrupted_resumes_and_a_backchannel_gets_one_pause_until_the_caller_goes_quiet():
    b = machine()
    b.paused(1.0, 7)
    assert b.due(1.7)
    b.resumed(1.7, 30)
    assert b.counters["barge_false_alarms"] == 1 and b.paused_s == [pytest.approx(0.7)]
    # The caller keeps talking ("mm-hm, right"): no new pause...
    t = 1.72
    while t < 3.0:
        assert not b.caller_frame(True, t)
        t += 0.02
    # ...until they have been quiet for rearm_s; then a new onset pauses again.
    while t < 3.3:
        assert not b.caller_frame(False, t)
        t += 0.02
    assert b.state is PauseState.DISARMED
    b.caller_frame(False, 3.42)
    assert b.state is PauseState.ARMED
    assert not b.caller_frame(True, 3.5)
    assert b.caller_frame(True, 3.52)
    # Gemini interrupting soon after a resume: a confirmation that came too late.
    b2 = machine()
    b2.paused(0.0, 1)
    b2.resumed(0.7, 0)
    b2.interrupted(1.0)
    assert b2.counters["barge_late_confirms"] == 1 and b2.timeline.events[-1]["kind"] == "late_confirm"


# -- the core, with the real echo gate ---------------------------------------------------------------

def gated_core(confirm_s: float = 0.7, **config: object) -> CallCore:
    core = CallCore(SetupConfig(model="m"), CallConfig(playback_lead_s=0.1, pause_confirm_s=confirm_s,
                                                       **config),  # type: ignore[arg-type]
                    now=0.0, gate=EchoGate())
    core.gemini_connected(0.0)
    core.receive_gemini(b'{"setupComplete":{}}', 0.0)
    core.receive_twilio(START, 0.0)
    drain(core.gemini_out)
    return core


def run_call(core: CallCore, t0: float, t1: float, caller: dict[int, bytes], twilio: FakeTwilio) -> float:
    """Caller frames every 20 ms from t0 to t1 (loud where ``caller`` says, silence elsewhere),
    timers run, Twilio plays and echoes marks."""
    now = t0
    k = 0
    while now < t1 - 1e-9:
        payload = caller.get(k, b"\xff" * 160)
        core.receive_twilio(media(payload), now)
        deadline = core.next_deadline()
        if deadline is not None and deadline <= now:
            core.tick(now)
        for name in twilio.feed(core.twilio_out):
            core.receive_twilio(json.dumps({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": name}}), now)
        for name in twilio.tick():
            core.receive_twilio(json.dumps({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": name}}), now)
        now = round(now + FRAME_S, 6)
        k += 1
    return now


def test_core_pauses_on_onset_and_gemini_confirms():
    core = gated_core()
    twilio = FakeTwilio()
    core.receive_gemini(audio_frame(pcm24_tone(3.0, amp=0.2)), 0.0)
    loud = ulaw_tone(0.02, 0.5, 700)
    now = run_call(core, 0.0, 1.0, {}, twilio)
    heard = len(twilio.heard)
    now = run_call(core, now, 1.2, {k: loud for k in range(10)}, twilio)  # the caller talks at 1.0 s
    (pause,) = [e for e in core.timeline if e["kind"] == "pause"]
    assert 1.0 < pause["t"] <= 1.06  # two frames of double-talk
    assert twilio.clears == 1 and len(twilio.heard) - heard <= 3  # quiet in the caller's ear at once
    core.receive_gemini(b'{"serverContent":{"interrupted":true}}', 1.3)
    assert [e["kind"] for e in core.timeline if e["kind"] in ("pause", "confirmed", "resume")] == ["pause", "confirmed"]
    assert not core.queue and core.counters["barge_confirmed"] == 1 and core.counters["barge_ins"] == 1
    assert core.turns[-1].interrupted
    summary = core.summary()
    assert summary["pauses"] == 1 and summary["false_alarms"] == 0 and summary["pauses_confirmed"] == 1


def test_core_resumes_a_false_alarm_where_the_caller_stopped_hearing():
    core = gated_core(confirm_s=0.5)
    twilio = FakeTwilio()
    pcm = pcm24_tone(2.0, amp=0.2)
    core.receive_gemini(audio_frame(pcm), 0.0)
    core.receive_gemini(b'{"serverContent":{"generationComplete":true}}', 0.0)
    loud = ulaw_tone(0.02, 0.5, 700)
    now = run_call(core, 0.0, 0.8, {}, twilio)
    now = run_call(core, now, 1.5, {k: loud for k in range(4)}, twilio)  # an 80 ms cough at 0.8 s
    kinds = [e["kind"] for e in core.timeline if e["kind"] in ("pause", "confirmed", "resume")]
    assert kinds == ["pause", "resume"]
    (pause,) = [e for e in core.timeline if e["kind"] == "pause"]
    (resume,) = [e for e in core.timeline if e["kind"] == "resume"]
    assert resume["t"] - pause["t"] == pytest.approx(0.5, abs=0.021)
    run_call(core, now, 3.5, {}, twilio)
    turn = core.turns[-1]
    assert not turn.interrupted and len(core.turns) == 1
    assert turn.frames_heard == turn.frames_sent >= 100  # the whole reply heard, each frame once
    assert len(twilio.heard) - turn.frames_sent <= 5  # repeated: at most one mark's worth
    assert core.counters["barge_false_alarms"] == 1 and core.summary()["false_alarms"] == 1


def test_core_without_pause_setting_waits_for_gemini_as_before():
    core = gated_core(pause_on_onset=False)
    twilio = FakeTwilio()
    core.receive_gemini(audio_frame(pcm24_tone(3.0, amp=0.2)), 0.0)
    loud = ulaw_tone(0.02, 0.5, 700)
    now = run_call(core, 0.0, 1.0, {}, twilio)
    run_call(core, now, 1.4, {k: loud for k in range(20)}, twilio)
    assert twilio.clears == 0 and not any(e["kind"] == "pause" for e in core.timeline)


def test_a_caller_talking_over_the_agent_reaches_gemini_frame_by_frame_with_100_ms_chunks():
    """Batched input (100 ms) would hold the barge-in's first words for up to 80 ms, and Gemini's
    `interrupted` with them: while the agent is paused for the caller, each frame goes on its
    arrival."""
    core = gated_core(input_chunk_ms=100)
    twilio = FakeTwilio()
    core.receive_gemini(audio_frame(pcm24_tone(3.0, amp=0.2)), 0.0)
    now = run_call(core, 0.0, 1.0, {}, twilio)
    before = [m for m in drain(core.gemini_out) if "realtimeInput" in m]
    assert len(before) == 10  # a second of the agent talking: whole chunks
    loud = ulaw_tone(0.02, 0.5, 700)
    sent = []
    for k in range(40):  # the caller talks from 1.0 s on
        core.receive_twilio(media(loud), now)
        audio = [m for m in drain(core.gemini_out) if "realtimeInput" in m]
        sent.append((len(audio), sum(len(m["realtimeInput"]["audio"]["data"]) * 3 // 4 // 640 for m in audio)))
        now = round(now + FRAME_S, 6)
    assert any(e["kind"] == "pause" for e in core.timeline)
    # The onset's first frame waits for the pause (its second double-talk frame), then each
    # frame goes on its arrival, not five to a message.
    assert [n for n, _ in sent[:10]] == [0] + [1] * 9 and [f for _, f in sent[:10]] == [0, 2] + [1] * 8
    # From eager_input_paused_s (0.4 s) after the pause at 1.02 s: whole chunks again.
    assert [n for n, _ in sent[22:]] == [0, 0, 0, 0, 1] * 3 + [0, 0, 0]  # from 1.44 s
    assert sum(f for _, f in sent) == 40 - 3  # every frame once; three wait for their chunk
