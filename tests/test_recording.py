"""The recording core on a fake clock (every input and ``now`` given), the WAV writer, the
settings around it (opt-out, the persona's notice, retention) and the review cookie."""

from __future__ import annotations

import os
import time
import wave
from pathlib import Path

import pytest

from telephony_bridge.call import CallConfig
from telephony_bridge.errors import ConfigError
from telephony_bridge.persona import load_persona
from telephony_bridge.recording import RecordingService, StereoRecorder, StereoWav
from telephony_bridge.recording.service import RECORDING_NOTICE, recording_parameters, with_recording_notice
from telephony_bridge.review import auth

F = 160
SIL = b"\xff" * F


def caller_frames(rec: StereoRecorder, n: int, t: float, byte: int = 0x10) -> float:
    """``n`` caller frames, one per 20 ms from ``t`` (arriving 0.5 ms after their tick)."""
    for _ in range(n):
        rec.caller(bytes([byte]) * F, t + 0.0005)
        t += 0.02
    return t


def agent(i: int) -> bytes:
    return bytes([0x20 + i]) * F


def test_agent_frames_play_from_the_next_tick_and_a_mark_echo_commits_them() -> None:
    rec = StereoRecorder()
    t = caller_frames(rec, 5, 0.0)  # ticks 0..4 sent; now is just after tick 4's frame
    for i in range(3):
        rec.agent_frame(agent(i), t - 0.019)
    rec.mark("m1")
    assert rec.horizon() == 5 * F  # not known heard yet: nothing past the line is final
    t = caller_frames(rec, 4, t)  # ticks 5..8: frames at 5, 6, 7 play; tick 8 echoes the mark
    rec.mark_returned("m1")
    left, right = rec.take()
    assert len(left) == len(right) == 9 * F
    assert right == SIL * 5 + agent(0) + agent(1) + agent(2) + SIL


def test_a_frame_written_after_the_next_tick_came_plays_a_tick_later() -> None:
    rec = StereoRecorder()
    t = caller_frames(rec, 3, 0.0)
    rec.agent_frame(agent(0), t + 0.0002)  # 20.2 ms after the last frame: tick 3 has been sent
    rec.mark("m")
    t = caller_frames(rec, 6, t)
    rec.mark_returned("m")  # echoed in tick 5 (after the caller frame of tick 5)... or later
    rec.finish()
    _, right = rec.take(final=True)
    assert right[4 * F:5 * F] == agent(0) and right.count(agent(0)[:1]) == F


def test_a_frame_written_after_a_stall_plays_where_the_line_is_now_not_one_tick_on() -> None:
    """The process was starved for 200 ms and its timer wrote the agent's next frame before the
    socket's queued caller frames were read: Twilio's line went on meanwhile (ten ticks), its
    buffer ran dry, and the caller heard a hole; the frame plays after it."""
    rec = StereoRecorder()
    t = caller_frames(rec, 3, 0.0)
    rec.agent_frame(agent(0), t - 0.019)  # in time: plays at tick 3
    rec.agent_frame(agent(1), t - 0.019 + 0.2)  # 200 ms later, nothing read meanwhile
    rec.mark("m")
    t = caller_frames(rec, 16, t)  # the queued ticks arrive at last, and go on
    rec.mark_returned("m")
    rec.finish()
    _, right = rec.take(final=True)
    assert right[3 * F:4 * F] == agent(0)
    assert right[4 * F:13 * F] == SIL * 9  # the hole the caller heard
    assert right[13 * F:14 * F] == agent(1) and right.count(agent(1)[:1]) == F


def test_the_first_echo_of_a_run_moves_it_to_where_it_really_played() -> None:
    rec = StereoRecorder()
    t = caller_frames(rec, 3, 0.0)
    rec.agent_frame(agent(0), t - 0.015)  # guessed at 3, but it lost the race: played at 4
    rec.agent_frame(agent(1), t - 0.015)
    rec.mark("m")
    t = caller_frames(rec, 2, t)  # ticks 3, 4
    t = caller_frames(rec, 1, t)  # tick 5: playing frame 1 (at 5); echo comes in tick 6
    t = caller_frames(rec, 1, t)
    rec.mark_returned("m")
    rec.finish()
    _, right = rec.take(final=True)
    assert right == SIL * 4 + agent(0) + agent(1) + SIL


def test_a_clear_drops_what_had_not_played_when_the_flushed_marks_came_back() -> None:
    rec = StereoRecorder()
    t = caller_frames(rec, 2, 0.0)
    for i in range(8):
        rec.agent_frame(agent(i), t - 0.019)
        if i % 4 == 3:
            rec.mark(f"m{i}")
    t = caller_frames(rec, 3, t)  # ticks 2, 3, 4 play frames 0, 1, 2
    rec.clear(0)
    rec.agent_frame(agent(9), t - 0.019)  # the answer, right after the clear
    rec.mark("after")
    t = caller_frames(rec, 1, t)  # tick 5 plays frame 3; then the clear reaches Twilio
    rec.mark_returned("m3")  # the burst of flushed echoes: playback stopped at 6
    rec.mark_returned("m7")
    t = caller_frames(rec, 2, t)  # tick 6 plays the answer; tick 7 echoes its mark
    rec.mark_returned("after")
    t = caller_frames(rec, 1, t)
    rec.finish()
    _, right = rec.take(final=True)
    assert right[:2 * F] == SIL * 2
    assert right[2 * F:6 * F] == agent(0) + agent(1) + agent(2) + agent(3)
    assert agent(4)[:1] not in right and agent(7)[:1] not in right  # dropped by the clear
    assert right[6 * F:7 * F] == agent(9)  # the answer played where the cut filler would have


def test_frames_taken_back_before_the_socket_never_play() -> None:
    rec = StereoRecorder()
    t = caller_frames(rec, 2, 0.0)
    rec.agent_frame(agent(0), t - 0.019)
    rec.mark("a")
    rec.agent_frame(agent(1), t - 0.019)
    rec.agent_frame(agent(2), t - 0.019)
    rec.mark("b")
    rec.clear(unsent=2)  # frames 1 and 2 were still in the outbox
    t = caller_frames(rec, 1, t)
    rec.mark_returned("a")
    rec.mark_returned("b")
    t = caller_frames(rec, 3, t)
    rec.finish()
    _, right = rec.take(final=True)
    assert right == SIL * 2 + agent(0) + SIL * 3


def test_the_wav_on_disk_is_playable_after_every_batch(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    wav = StereoWav(path)
    for k in range(3):
        wav.append(b"\x10" * 8000, b"\x90" * 8000)
        with wave.open(str(path), "rb") as w:  # read while the writer still has it open
            assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, 8000, 8000 * (k + 1))
    wav.close()
    assert path.stat().st_size == 44 + 3 * 8000 * 4


def test_opt_out_notice_and_local_retention(tmp_path: Path) -> None:
    service = RecordingService(str(tmp_path / "rec"), retention_days=30)
    assert service.open("CA1", {"record": "off"}, t0=0.0) is None
    rec = service.open("CA2", {}, t0=0.0)
    assert rec is not None
    assert recording_parameters({"record": "OFF"}) == {"record": "off"} and recording_parameters({}) == {}
    persona = load_persona(None)
    assert persona.announce_recording is True
    config = with_recording_notice(CallConfig(greeting_prompt="Greet them."), persona, rec)
    assert config.greeting_prompt == f"Greet them.\n{RECORDING_NOTICE}"
    assert with_recording_notice(CallConfig(greeting_prompt="Hi."), persona, None).greeting_prompt == "Hi."
    import asyncio

    meta = asyncio.run(service.finish(rec))
    assert meta["call_sid"] == "CA2" and (tmp_path / "rec" / "CA2.wav").is_file()
    old = time.time() - 31 * 86400
    os.utime(tmp_path / "rec" / "CA2.wav", (old, old))
    assert asyncio.run(service.sweep()) == 1
    assert not (tmp_path / "rec" / "CA2.wav").exists() and not (tmp_path / "rec" / "CA2.json").exists()


def test_a_persona_announce_recording_must_be_a_boolean(tmp_path: Path) -> None:
    p = tmp_path / "p.toml"
    p.write_text('name = "x"\nsystem_instruction = "y"\nannounce_recording = "yes"\n')
    with pytest.raises(ConfigError, match="announce_recording"):
        load_persona(str(p))


def test_the_review_cookie_is_signed_with_the_token_and_expires() -> None:
    now = 1_000_000.0
    value = auth.issue("token-a" * 3, now)
    assert auth.valid("token-a" * 3, value, now + 60)
    assert not auth.valid("token-a" * 3, value, now + auth.COOKIE_TTL_S + 1)  # expired
    assert not auth.valid("token-b" * 3, value, now)  # another token: another key
    expiry, sig = value.split(".")
    assert not auth.valid("token-a" * 3, f"{int(expiry) + 9999}.{sig}", now)  # a longer life, forged
    assert not auth.valid("token-a" * 3, None, now) and not auth.valid(None, value, now)
    assert auth.token_matches("abc", "abc") and not auth.token_matches("abc", "abd")
    assert not auth.token_matches("abc", "")


def test_marks_that_never_come_back_hold_the_file_back_two_seconds_at_most() -> None:
    rec = StereoRecorder()
    t = caller_frames(rec, 2, 0.0)
    for i in range(3):
        rec.agent_frame(agent(i), t - 0.019)
    rec.mark("lost")
    t = caller_frames(rec, 50, t)  # a second: still waiting for the echo
    left, right = rec.take()
    assert len(left) == 2 * F and right == SIL * 2
    t = caller_frames(rec, 110, t)  # past two seconds: taken as placed
    left, right = rec.take()
    assert len(left) == len(right) and len(left) > 100 * F
    assert right[:3 * F] == agent(0) + agent(1) + agent(2)
    rec.mark_returned("lost")  # late: changes nothing


def test_a_second_stream_of_a_call_goes_on_in_the_same_file(tmp_path: Path) -> None:
    import asyncio

    service = RecordingService(str(tmp_path))
    first = service.open("CA7", {}, t0=0.0)
    first.recorder.caller(b"\x10" * 8000, 0.5)
    asyncio.run(service.finish(first))
    second = service.open("CA7", {}, t0=100.0)  # the reconnected stream: a new core, a new clock
    second.recorder.caller(b"\x20" * 4000, 100.2)
    meta = asyncio.run(service.finish(second))
    with wave.open(str(tmp_path / "CA7.wav"), "rb") as w:
        assert w.getnframes() == 12000
    assert meta["seconds"] == 1.5 and meta["offset_s"] == -0.8  # its t = 0.2 s is at 1.0 s in the file
