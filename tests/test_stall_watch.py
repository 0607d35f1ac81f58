"""The stall watch on a fake clock: what it finds, when, and what it asks for."""

import pytest

from telephony_bridge.call.stall_watch import EMPTY_TURN, NO_REPLY, StallConfig, StallState, StallWatch

CFG = StallConfig(no_reply_s=0.7, first_reply_s=1.5, phrase_after_s=1.0, retry_after_s=1.5, max_nudges=3)


def steps(watch):
    out = [(s.kind, round(s.at, 3)) + ((s.phrase,) if s.phrase else ()) for s in watch.steps]
    watch.steps.clear()
    return out


def run(watch, start, end, can_nudge=True, step=0.01):
    """Poll every 10 ms, as the owner's timer would; the steps taken, in order."""
    out = []
    t = start
    while t <= end + 1e-9:
        watch.poll(round(t, 3), can_nudge)
        out += steps(watch)
        t += step
    return out


def test_an_empty_turn_after_the_caller_is_a_stall_nudged_at_once():
    w = StallWatch(CFG)
    w.expect_reply(since=10.0, now=10.5, vad_s=0.5)
    assert w.state is StallState.ARMED and w.next_deadline() == pytest.approx(11.2)
    w.turn_complete(10.8)
    w.poll(10.8, True)
    assert steps(w) == [("detected", 10.8), ("nudge", 10.8)]
    assert w.stalls == 1 and w.recovering
    # The nudge is answered within the phrase's second: the caller never hears the phrase.
    assert w.next_deadline() == pytest.approx(11.8)
    w.model_content(11.15)
    assert steps(w) == [("recovered", 11.15)]
    assert w.state is StallState.IDLE and w.next_deadline() is None
    assert run(w, 11.15, 14.0) == []


def test_steps_carry_what_was_waited_for_and_how_long():
    w = StallWatch(CFG)
    w.expect_reply(since=10.0, now=10.5, vad_s=0.5)
    w.turn_complete(10.8)
    w.poll(10.8, True)
    detected, nudge = list(w.steps)
    assert (detected.reason, detected.expected, detected.waited_s, detected.nudges) == (EMPTY_TURN, "caller", 0.8, 0)
    assert nudge.nudges == 1


def test_no_turn_by_the_deadline_is_a_stall_and_the_phrase_plays_at_once():
    w = StallWatch(CFG)
    w.expect_reply(since=10.0, now=10.5, vad_s=0.5)
    assert run(w, 10.5, 11.19) == []
    got = run(w, 11.19, 11.25)
    assert got == [("detected", 11.2), ("nudge", 11.2), ("phrase", 11.2, "thinking")]
    assert list(w.steps) == [] and w.recovering


def test_a_nudge_that_brings_nothing_gets_the_phrase_after_a_second_then_retries_then_apologises():
    w = StallWatch(CFG)
    w.expect_reply(since=0.0, now=0.5, vad_s=0.5)
    w.turn_complete(0.8)
    got = run(w, 0.8, 10.0)
    assert got == [("detected", 0.8), ("nudge", 0.8), ("phrase", 1.8, "thinking"),
                   ("nudge", 2.3), ("phrase", 2.3, "filler"),  # 1.5 s of nothing: again, and say something
                   ("nudge", 3.8), ("phrase", 3.8, "filler"),
                   ("apology", 5.3)]
    assert w.state is StallState.IDLE and w.stalls == 1


def test_an_empty_answer_to_a_nudge_is_retried_at_once_and_the_nudges_are_bounded():
    w = StallWatch(CFG)
    w.expect_reply(since=0.0, now=0.5, vad_s=0.5)
    w.turn_complete(0.8)
    w.poll(0.8, True)
    w.turn_complete(1.1)  # the nudge's answer: empty too
    w.poll(1.1, True)
    w.turn_complete(1.4)
    w.poll(1.4, True)
    # the second empty turn: the phrase that waited on the first nudge plays at once
    assert steps(w) == [("detected", 0.8), ("nudge", 0.8), ("nudge", 1.1), ("phrase", 1.1, "thinking"),
                        ("nudge", 1.4)]
    w.turn_complete(1.7)  # the third nudge fails as well: no fourth
    w.poll(1.7, True)
    assert steps(w) == [("apology", 1.7)]
    assert w.stalls == 1


def test_a_second_empty_turn_answered_on_the_retry_is_one_stall_two_nudges():
    w = StallWatch(CFG)
    w.expect_reply(since=0.0, now=0.5, vad_s=0.5)
    w.turn_complete(0.8)
    w.poll(0.8, True)
    w.turn_complete(1.1)
    w.poll(1.1, True)
    w.model_content(1.45)
    assert [s.kind for s in w.steps] == ["detected", "nudge", "nudge", "phrase", "recovered"]
    assert w.steps[-1].nudges == 2 and w.stalls == 1


def test_a_turn_with_audio_transcription_or_a_tool_call_is_not_a_stall():
    w = StallWatch(CFG)
    w.expect_reply(since=0.0, now=0.5, vad_s=0.5)
    w.model_content(0.8)  # audio (or an output transcription, or a tool call)
    w.turn_complete(2.0)
    assert run(w, 2.0, 6.0) == [] and w.stalls == 0
    # A turn already under way when the reply becomes due is the reply ...
    w.model_content(7.0)
    w.expect_reply(since=6.5, now=7.1, vad_s=0.5)
    assert w.state is StallState.IDLE
    w.turn_complete(8.0)
    # ... but content from before the caller's turn (a late transcription) does not answer it.
    w.model_content(8.1)
    w.expect_reply(since=9.0, now=9.5, vad_s=0.5)
    w.turn_complete(9.8)
    w.poll(9.8, True)
    assert [s.kind for s in w.steps] == ["detected", "nudge"]


def test_an_empty_turn_nobody_was_waiting_for_is_ignored():
    w = StallWatch(CFG)
    w.turn_complete(1.0)  # e.g. a second turnComplete after the agent's own turn
    assert run(w, 1.0, 3.0) == [] and w.stalls == 0


def test_the_caller_speaking_cancels_the_wait_and_the_recovery():
    w = StallWatch(CFG)
    w.expect_reply(since=0.0, now=0.5, vad_s=0.5)
    w.caller_spoke(0.9)  # they went on talking: the VAD will commit a longer turn
    assert run(w, 0.9, 3.0) == []
    w.expect_reply(since=3.0, now=3.5, vad_s=0.5)
    w.turn_complete(3.8)
    w.poll(3.8, True)
    steps(w)
    w.caller_spoke(4.0)
    assert steps(w) == [("abandoned", 4.0)]
    assert run(w, 4.0, 8.0) == []


def test_a_barge_in_ends_the_turn_content_so_a_later_empty_turn_still_counts():
    w = StallWatch(CFG)
    w.model_content(1.0)  # the agent speaks ...
    w.interrupted(1.5)  # ... and is interrupted (no turnComplete follows it)
    w.expect_reply(since=3.0, now=3.5, vad_s=0.5)
    w.turn_complete(3.8)
    w.poll(3.8, True)
    assert [k for k, *_ in steps(w)] == ["detected", "nudge"]


def test_a_nudge_waits_while_the_model_cannot_take_one():
    w = StallWatch(CFG)
    w.expect_reply(since=0.0, now=0.5, vad_s=0.5)
    w.turn_complete(0.8)
    assert run(w, 0.8, 1.0, can_nudge=False) == [("detected", 0.8)]
    assert w.next_deadline() == pytest.approx(1.1, abs=0.011)  # it looks again soon
    assert run(w, 1.01, 1.01) == [("nudge", 1.01)]


def test_greeting_stall_uses_the_longer_first_reply_budget_and_the_filler_phrase():
    w = StallWatch(CFG)
    w.expect_reply(since=2.0, now=2.0, expected="greeting")
    assert w.next_deadline() == pytest.approx(3.5)
    got = run(w, 2.0, 3.6)
    assert got == [("detected", 3.5), ("nudge", 3.5), ("phrase", 3.5, "filler")]
    assert w.stalls == 1


def test_link_lost_suspends_and_a_ready_link_rearms_what_was_due():
    w = StallWatch(CFG)
    w.expect_reply(since=0.0, now=0.5, vad_s=0.5)
    w.link_lost(0.7)
    assert w.state is StallState.SUSPENDED
    assert run(w, 0.7, 5.0) == []  # nothing is found or nudged while the link is down
    w.link_ready(5.0)
    assert w.state is StallState.ARMED
    assert w.next_deadline() == pytest.approx(6.5)  # the fresh connection's first reply
    w.turn_complete(5.4)  # a stall right after the resumption
    w.poll(5.4, True)
    assert [(s.kind, s.expected) for s in w.steps] == [("detected", "resume"), ("nudge", "resume")]


def test_a_ready_link_asked_to_go_on_expects_a_reply_even_if_none_was_due():
    w = StallWatch(CFG)
    w.link_lost(1.0)
    w.link_ready(2.0)
    assert w.state is StallState.IDLE  # nothing was due: nothing to wait for
    w.link_lost(3.0)
    w.link_ready(4.0, reply_requested=True)  # e.g. "repeat your last question"
    assert w.state is StallState.ARMED


def test_the_caller_speaking_while_the_link_is_down_drops_what_was_due():
    w = StallWatch(CFG)
    w.expect_reply(since=0.0, now=0.5, vad_s=0.5)
    w.link_lost(0.7)
    w.caller_spoke(1.0)
    w.link_ready(2.0)
    assert w.state is StallState.IDLE
    w.link_lost(3.0)
    w.expect_reply(since=3.2, now=3.8, vad_s=0.5)  # they finished while the link was down
    w.link_ready(4.0)
    assert w.state is StallState.ARMED and w.next_deadline() == pytest.approx(5.5)


def test_disabled_watch_finds_nothing():
    w = StallWatch(StallConfig(enabled=False))
    w.expect_reply(since=0.0, now=0.5, vad_s=0.5)
    w.turn_complete(0.8)
    assert run(w, 0.8, 12.0) == [] and w.stalls == 0


def test_no_nudges_allowed_means_the_apology_at_once():
    w = StallWatch(StallConfig(max_nudges=0))
    w.expect_reply(since=0.0, now=0.5, vad_s=0.5)
    w.turn_complete(0.8)
    w.poll(0.8, True)
    assert steps(w) == [("detected", 0.8), ("apology", 0.8)]


def test_deadline_found_stall_with_found_reason():
    w = StallWatch(CFG)
    w.expect_reply(since=0.0, now=0.5, vad_s=2.5)  # the persona's 2.5 s: the VAD's wait comes first
    assert w.next_deadline() == pytest.approx(3.2)
    w.poll(3.2, True)
    assert w.steps[0].reason == NO_REPLY and w.steps[0].waited_s == pytest.approx(3.2)
