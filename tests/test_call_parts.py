"""Each part of the call core on its own, on a fake clock (the composed core: test_call_core.py)."""

import base64
import json

import numpy as np
import pytest

from telephony_bridge.call.config import FRAME_BYTES, FRAME_S, CallConfig
from telephony_bridge.call.ending import Ending
from telephony_bridge.call.link import Link
from telephony_bridge.call.playout import Playout
from telephony_bridge.call.timeline import Timeline
from telephony_bridge.call.tool_dispatch import ToolDispatch
from telephony_bridge.call.turns import AgentTurn, Turns
from telephony_bridge.gemini import messages as gm

SID = "MZ" + "1" * 32


def counters() -> dict[str, int]:
    return {k: 0 for k in ("twilio_frames_out", "marks_played", "marks_flushed", "phrases", "fillers",
                           "repeated_tool_calls", "input_dropped_frames", "input_replayed_frames",
                           "reconnects", "handovers", "nudges", "apologies")}


def pcm24(seconds: float, amp: float = 0.3) -> bytes:
    t = np.arange(int(seconds * 24000)) / 24000
    return (amp * 32767 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()


def kinds(out) -> list[str]:
    return [json.loads(m)["event"] for m in out]


# -- playout ---------------------------------------------------------------------------------------

class PlayoutHarness:
    def __init__(self, lead: float = 0.1) -> None:
        self.timeline = Timeline(0.0)
        self.turns: list[AgentTurn] = []
        self.done: list[float] = []
        self.p = Playout(CallConfig(playback_lead_s=lead, mark_every_frames=5), self.timeline, counters(),
                         now=0.0, on_turn_start=self.start, on_turn_done=self.done.append)
        self.p.start(SID, 0.0)

    def start(self, now: float) -> AgentTurn:
        turn = AgentTurn(index=len(self.turns) + 1, started=now)
        self.turns.append(turn)
        return turn


def test_playout_paces_by_the_lead_and_credits_heard_frames_by_mark():
    h = PlayoutHarness(lead=0.1)
    p = h.p
    p.agent_pcm(pcm24(0.5), 0.0)
    p.end_of_generation()
    p.pump(0.0)
    sent = kinds(p.twilio_out)
    assert sent.count("media") == 5 and sent[-1] == "mark"  # 100 ms ahead, a mark every 5 frames
    assert p.playout_end == pytest.approx(0.1)
    assert len(h.turns) == 1 and h.turns[0].frames_sent == 5
    assert p.deadline() == pytest.approx(0.05)  # top up when half the lead is left
    mark = json.loads(p.twilio_out[-1])["mark"]["name"]
    p.twilio_out.clear()
    assert p.mark_returned(mark, 0.1) is False  # more is queued
    assert h.turns[0].frames_heard == 5
    now = 0.1
    while p.queue:
        now += FRAME_S
        p.pump(now)
    names = [json.loads(m)["mark"]["name"] for m in p.twilio_out if '"mark"' in m]
    assert p.mark_returned(names[-1], now + 0.2) is True  # the last mark: all heard
    assert h.turns[0].frames_heard == h.turns[0].frames_sent >= 25  # 0.5 s, plus the filter tail
    assert h.done and not p.audible
    assert h.timeline.events[-1]["kind"] == "agent_audio_heard_end"


def test_playout_interrupt_drops_unsent_media_and_marks_come_back_flushed():
    h = PlayoutHarness(lead=0.2)
    p = h.p
    p.agent_pcm(pcm24(1.0), 0.0)
    p.pump(0.0)
    mark_names = [json.loads(m)["mark"]["name"] for m in p.twilio_out if '"mark"' in m]
    dropped = p.interrupt(0.05)
    assert dropped > 0 and not p.queue and not p.audible
    out = kinds(p.twilio_out)
    assert "media" not in out and out[-1] == "clear"  # media not yet written never goes out
    assert p.playout_end == 0.05
    assert p.mark_returned(mark_names[0], 0.06) is False
    assert p.counters["marks_flushed"] == 1 and p.counters["marks_played"] == 0
    p.twilio_out.clear()
    p.agent_pcm(pcm24(0.1), 0.1)  # the next reply starts a new turn
    p.pump(0.1)
    assert len(h.turns) == 2


def test_phrase_plays_under_the_lead_and_real_audio_stops_it_with_a_clear():
    h = PlayoutHarness(lead=0.1)
    p = h.p
    seconds = p.queue_phrase(b"\x10" * (FRAME_BYTES * 20 + 7))  # a partial last frame is padded
    assert seconds == pytest.approx(21 * FRAME_S)
    p.pump(0.0)
    assert kinds(p.twilio_out).count("media") == 5 and len(p.phrase_queue) == 16
    assert not h.turns  # a phrase is not an agent turn
    p.twilio_out.clear()
    p.agent_pcm(pcm24(0.2), 0.03)
    assert not p.phrase_queue and kinds(p.twilio_out) == ["clear"]
    assert h.timeline.events[-1]["kind"] == "phrase_stopped"


# -- turns -------------------------------------------------------------------------------------------

def test_the_conversation_carries_caller_words_not_yet_in_the_transcript():
    # What a new session is seeded with (hand-off, stale handle) includes the caller's answer
    # that the transcript files only when the agent next speaks.
    t = Turns(Timeline(0.0), speech_rms=0.05)
    t.caller_speech(1.0)
    t.caller_text("small dental ")
    t.caller_text("practices")
    assert t.transcript == []
    assert t.conversation() == [{"role": "caller", "text": "small dental practices"}]
    t.start_agent(2.0)
    assert [e["text"] for e in t.conversation()] == ["small dental practices"]  # filed once, not twice


def test_turn_latency_runs_from_the_callers_last_speech_and_transcript_keeps_both_sides():
    tl = Timeline(100.0)
    t = Turns(tl, speech_rms=0.05)
    t.caller_speech(101.0)
    t.caller_speech(102.0)
    t.caller_text("my idea ")
    t.caller_text("is shoes")
    t.agent_text("Tell me ")  # transcription ahead of the audio: held for the turn
    turn = t.start_agent(103.5)
    t.agent_text("more.")
    assert turn.latency_s == pytest.approx(1.5) and t.latencies_ms() == [1500.0]
    assert t.transcript == [{"role": "caller", "text": "my idea is shoes", "t": 1.0}]
    t.agent_interrupted(104.0)
    t.finish_agent(104.0)
    t.finish_agent(105.0)  # once only
    assert t.transcript[-1] == {"role": "agent", "text": "Tell me more.", "t": 3.5, "interrupted": True}
    second = t.start_agent(106.0)
    assert second.index == 2 and second.latency_s is None  # the caller did not speak in between


# -- tool dispatch -----------------------------------------------------------------------------------

def call(cid: str, name: str = "lookup") -> gm.FunctionCall:
    return gm.FunctionCall(id=cid, name=name, args={})


def test_tool_dispatch_queues_known_calls_answers_unknown_ones_and_drops_cancelled_results():
    tl = Timeline(0.0)
    d = ToolDispatch(CallConfig(tool_names=frozenset({"lookup"})), tl, counters())
    errors = d.called(gm.ToolCall(calls=(call("1"), call("2", "nope"))), 0.0)
    assert [c.id for c in d.requests] == ["1"] and d.running
    answer = errors[0]["response"]  # the informative shape: a status, whether to retry, a sentence
    assert errors[0]["id"] == "2" and answer["status"] == "invalid_argument" and answer["retryable"] is False
    assert "'nope'" in answer["message"] and answer["error"] == "unknown_tool"
    assert d.called(gm.ToolCall(calls=(call("1"),)), 0.1) == [] and d.counters["repeated_tool_calls"] == 1
    reply = d.finished("1", {"answer": 42}, 1.5, scheduling="WHEN_IDLE")
    assert reply == {"id": "1", "name": "lookup", "response": {"answer": 42}, "scheduling": "WHEN_IDLE"}
    assert d.log[0]["duration_ms"] == 1500.0 and not d.running
    d.called(gm.ToolCall(calls=(call("3"),)), 2.0)
    d.cancelled(("3",), 2.5)
    assert list(d.cancellations) == ["3"] and d.finished("3", {}, 3.0) is None
    assert d.log[-1]["cancelled"] is True


def test_filler_is_due_after_the_delay_repeats_and_is_capped():
    cfg = CallConfig(tool_names=frozenset({"lookup"}), filler_after_s=0.8, filler_repeat_s=4.0, filler_max=2)
    d = ToolDispatch(cfg, Timeline(0.0), counters())
    d.called(gm.ToolCall(calls=(call("1"),)), 0.0)
    assert d.deadline() == pytest.approx(0.8)
    assert not d.filler_due(0.5, audible=False)
    assert not d.filler_due(0.8, audible=True)  # something plays: look again in 100 ms
    assert d.deadline() == pytest.approx(0.9)
    assert d.filler_due(0.9, audible=False)
    d.filler_played()
    assert d.deadline() == pytest.approx(4.9) and d.filler_due(4.9, audible=False)
    d.filler_played()
    assert not d.filler_due(8.9, audible=False)  # capped at filler_max per wait
    d.finished("1", {}, 9.0)
    assert d.deadline() is None and d.counters["fillers"] == 2


# -- link ----------------------------------------------------------------------------------------------

def ready_link(**cfg) -> Link:
    link = Link(gm.SetupConfig(model="m"), CallConfig(**cfg), Timeline(0.0), counters())
    link.connecting(0.0)
    link.session.receive(b'{"setupComplete":{}}', 0.0)
    link.ready(0.0, [])
    return link


def test_link_keeps_caller_audio_while_down_and_replays_it_after_the_newest_handle():
    link = ready_link()
    link.caller_audio(b"\xff" * 160)
    link.session.receive(b'{"sessionResumptionUpdate":{"newHandle":"h1","resumable":true}}', 0.02)
    link.resumption_update(gm.SessionResumptionUpdate(new_handle="h1", resumable=True), 0.02)
    assert link.new_handle == "h1"
    link.gemini_out.clear()
    link.caller_audio(b"\xff" * 160)  # after the handle: kept for replay
    assert len(link.gemini_out) == 1
    link.gemini_out.clear()
    assert link.closed(1011, "internal", 0.1, mid_turn=True) is None  # reconnect
    link.caller_audio(b"\xff" * 160)  # while down: pending
    assert not link.gemini_out and link.notice_due(0.8, audible=False)
    setup = json.loads(link.connecting(0.9))
    assert setup["setup"]["sessionResumption"] == {"handle": "h1"}
    link.session.receive(b'{"setupComplete":{}}', 1.0)
    link.ready(1.0, [])
    out = list(link.gemini_out)
    assert len(out) == 3  # the replayed frame, the repeat-your-question prompt, the pending frame
    assert "realtimeInput" in out[0] and "repeat your last question" in out[1] and "realtimeInput" in out[2]
    assert link.counters["reconnects"] == 1 and link.counters["input_replayed_frames"] == 1


def test_link_replays_the_caller_audio_it_sent_from_mu_law_kept_at_a_fifth_of_the_size():
    link = ready_link(input_chunk_ms=100)
    rng = np.random.default_rng(5)
    for i in range(50):  # a second before the handle: the converter carries its history on
        link.caller_audio(rng.integers(0, 256, 160, dtype=np.uint8).tobytes())
    link.session.receive(b'{"sessionResumptionUpdate":{"newHandle":"h1","resumable":true}}', 0.0)
    link.resumption_update(gm.SessionResumptionUpdate(new_handle="h1", resumable=True), 0.0)
    link.gemini_out.clear()
    speech = (rng.integers(0, 256, 160 * 50, dtype=np.uint8)).tobytes()  # 1 s of caller audio
    for i in range(50):
        link.caller_audio(speech[160 * i:160 * (i + 1)])
    sent = list(link.gemini_out)
    assert len(sent) == 10
    kept = sum(len(x) for x in link._since_handle)
    assert kept == 8000 and kept * 5 < sum(len(m) for m in sent)  # 8 KB a second instead of ~43
    link.gemini_out.clear()
    assert link.closed(1011, "internal", 0.9, mid_turn=False) is None  # reconnect with h1
    link.connecting(1.0)
    link.session.receive(b'{"setupComplete":{}}', 1.1)
    link.ready(1.1, [])
    replayed = list(link.gemini_out)
    assert len(replayed) == 10 and link.counters["input_replayed_frames"] == 50

    def pcm(messages):
        return np.frombuffer(b"".join(base64.b64decode(json.loads(m)["realtimeInput"]["audio"]["data"])
                                      for m in messages), "<i2")

    first, again = pcm(sent), pcm(replayed)
    assert len(first) == len(again) == 16000
    # The replay's filter starts without that history: its first 64 samples (4 ms) may differ,
    # then it is the same audio, sample for sample.
    assert not np.array_equal(first[:64], again[:64]) and np.array_equal(first[64:], again[64:])


def test_link_stale_handle_falls_back_to_a_fresh_session_seeded_with_the_transcript():
    link = ready_link()
    link.session.handle = "old"
    assert link.closed(1008, "invalid handle", 0.1, mid_turn=False) is None  # a fresh session
    assert json.loads(link.connecting(0.2))["setup"]["sessionResumption"] == {}
    link.session.receive(b'{"setupComplete":{}}', 0.3)
    link.gemini_out.clear()
    link.ready(0.3, [{"role": "agent", "text": "What is the problem?"}, {"role": "caller", "text": "Shoes."}])
    turns = json.loads(link.gemini_out[0])["clientContent"]["turns"]
    assert [t["role"] for t in turns] == ["model", "user", "user"] and "Do not greet" in turns[-1]["parts"][0]["text"]
    refusal = link.closed(1008, "models/gemini-9-live is not found for API version v1beta, or is not "
                                "supported for bidiGenerateContent", 0.5, mid_turn=False)
    assert refusal is not None and refusal.kind.value == "model_not_found"
    link.refused(refusal, 0.5)
    link.refused(refusal, 0.6)  # said once per call
    assert [e["kind"] for e in link.timeline.events].count("gemini_refused") == 1


def test_link_hands_over_at_a_quiet_moment_or_at_the_margin():
    link = ready_link(handover_margin_s=2.0)
    link.session.receive(b'{"goAway":{"timeLeft":"10s"}}', 1.0)
    assert link.handover_pending()
    assert not link.handover_now(2.0, quiet=False)
    assert link.deadline(last_media=2.0) == pytest.approx(2.1)
    assert link.handover_now(9.0, quiet=False)  # the last moment before the cut
    assert link.handover_now(2.0, quiet=True)
    link.begin_handover(2.0)
    assert not link.handover_pending() and not link.handover_now(9.5, quiet=True)
    link.handover_failed("refused", 2.5)
    assert link.handover_pending()


# -- ending --------------------------------------------------------------------------------------------

class EndingHarness:
    def __init__(self, **cfg) -> None:
        self.config = CallConfig(**cfg)
        tl = Timeline(0.0)
        self.ended: list[tuple[float, str]] = []
        self.played: list[str] = []
        self.turns = Turns(tl, speech_rms=0.05)
        self.playout = Playout(self.config, tl, counters(), now=0.0, on_turn_start=self.turns.start_agent)
        self.playout.start(SID, 0.0)
        self.link = ready_link()
        self.tools = ToolDispatch(self.config, tl, counters())
        self.e = Ending(self.config, tl, counters(), now=0.0, playout=self.playout, turns=self.turns,
                        link=self.link, tools=self.tools, play_phrase=self.play, end=self.end)

    def play(self, kind: str, now: float) -> bool:
        self.played.append(kind)
        self.playout.queue_phrase(b"\x10" * 1600)
        return True

    def end(self, now: float, reason: str) -> None:
        self.ended.append((now, reason))
        self.e.ended = reason


def test_watchdog_nudges_once_then_apologises():
    h = EndingHarness(reply_watchdog_s=8.0)
    h.e.await_reply(1.0)
    assert h.e.deadline() == pytest.approx(9.0)
    h.e.watchdog(8.9)
    assert h.e.counters["nudges"] == 0
    h.link.gemini_out.clear()
    h.e.watchdog(9.0)
    assert h.e.counters["nudges"] == 1 and "waiting for your reply" in h.link.gemini_out[0]
    h.e.watchdog(17.0)
    assert h.played == ["apology"] and h.e.awaiting_reply_since is None


def test_end_call_waits_for_the_goodbye_then_ends_and_a_last_phrase_ends_when_heard():
    h = EndingHarness(end_call_grace_s=1.5, end_call_timeout_s=15.0)
    h.e.request_end_call("interview complete", 10.0)
    h.e.check(10.5)
    assert not h.ended  # the goodbye has not started, the grace has not run out
    h.e.check(11.5)
    assert h.ended == [(11.5, "end_call:interview complete")]
    h2 = EndingHarness()
    h2.e.end_with_phrase(5.0, "goodbye_error", "gemini-closed-1007")
    assert h2.played == ["goodbye_error"] and h2.e.closing and not h2.ended
    assert h2.e.deadline() == pytest.approx(5.0 + len(h2.playout.phrase_queue) * FRAME_S + 3.0)
    h2.playout.phrase_queue.clear()
    h2.e.check(6.0)
    assert h2.ended == [(6.0, "gemini-closed-1007")]


def test_limits_end_a_dead_stream_and_a_runaway_call():
    h = EndingHarness(no_media_timeout_s=10.0, max_call_s=60.0)
    h.e.last_media = 5.0
    assert not h.e.limits(14.9)
    assert h.e.limits(15.0) and h.ended == [(15.0, "no-media")]
    h2 = EndingHarness(no_media_timeout_s=10.0, max_call_s=60.0)
    h2.e.last_media = 59.0
    assert h2.e.limits(60.0) and h2.played == ["goodbye_error"] and h2.e.closing


# -- prompts and tools under the model profiles ------------------------------------------------------

from telephony_bridge.call.prompts import Prompts  # noqa: E402
from telephony_bridge.gemini import profiles  # noqa: E402


def test_prompts_never_cut_a_reply_off_on_3x_and_wait_for_quiet_on_2_5():
    sent: list[str] = []
    p = Prompts(profiles.GEMINI_3_8_LIVE, Timeline(0.0), sent.append)
    assert p.model_busy(model_turn_open=False, blocking_call_running=True)  # 3.8 cancels it on input
    talking = dict(model_turn_open=True, blocking_call_running=False)
    assert p.say("[key 5]", 1.0, reply=False, **talking)  # context: goes now, no turnComplete
    assert json.loads(sent[-1])["clientContent"]["turnComplete"] is False
    assert not p.say("[please respond]", 1.1, **talking)  # wants an answer: held
    assert p.held == 1 and len(sent) == 1
    p.flush(2.0)
    assert json.loads(sent[-1])["clientContent"]["turnComplete"] is True and p.held == 0
    # While a blocking call runs on 3.8 any input cancels it: even a note waits.
    assert not p.say("[key 6]", 2.5, reply=False, model_turn_open=False, blocking_call_running=True)
    p.flush(3.0)
    sent.clear()
    p25 = Prompts(profiles.GEMINI_2_5_NATIVE_AUDIO, Timeline(0.0), sent.append)
    assert not p25.model_busy(model_turn_open=False, blocking_call_running=True)  # 2.5 does not cancel
    assert not p25.say("[key 5]", 1.0, reply=False, **talking)  # any clientContent interrupts 2.5
    assert not p25.say("[please respond]", 1.1, model_turn_open=False, blocking_call_running=False)  # in order
    p25.flush(2.0)
    assert [json.loads(m)["clientContent"]["turnComplete"] for m in sent] == [False, True]


def test_filler_covers_a_blocking_call_but_not_an_async_one_while_the_model_talks():
    cfg = CallConfig(tool_names=frozenset({"slow", "lookup"}), blocking_tools=frozenset({"slow"}),
                     filler_after_s=0.8)
    d = ToolDispatch(cfg, Timeline(0.0), counters(), profiles.GEMINI_3_8_LIVE)
    d.called(gm.ToolCall(calls=(call("a", "lookup"),)), 0.0)  # asynchronous on 3.8
    assert not d.blocking_running
    assert not d.filler_due(0.8, audible=False, model_speaking=True)  # the model keeps talking
    assert d.filler_due(0.9, audible=False, model_speaking=False)  # ... until it says nothing
    reply = d.finished("a", {"status": "ok"}, 1.0, scheduling="WHEN_IDLE")
    assert reply["scheduling"] == "WHEN_IDLE"
    d.called(gm.ToolCall(calls=(call("b", "slow"),)), 2.0)
    assert d.blocking_running and d.filler_due(2.8, audible=False, model_speaking=True)
    assert "scheduling" not in d.finished("b", {"status": "ok"}, 3.0, scheduling="WHEN_IDLE")  # blocking
    think = ToolDispatch(cfg, Timeline(0.0), counters(), profiles.GEMINI_3_8_LIVE_EXTENDED_THINKING)
    think.called(gm.ToolCall(calls=(call("c", "lookup"),)), 0.0)
    assert not think.filler_due(5.0, audible=False, model_speaking=False)  # it speaks its own fillers
    legacy = ToolDispatch(cfg, Timeline(0.0), counters(), profiles.GEMINI_3_1_FLASH_LIVE)
    legacy.called(gm.ToolCall(calls=(call("d", "lookup"),)), 0.0)
    assert "scheduling" not in legacy.finished("d", {"status": "ok"}, 1.0, scheduling="WHEN_IDLE")  # 3.1: none
