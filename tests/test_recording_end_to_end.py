"""Recordings end to end: the caller simulator ⇄ the real bridge ⇄ the emulator, over loopback.

The bridge's stereo file must be what the line carried: left, every byte the simulator sent
(before the echo gate); right, every byte the simulator played, at the sample it played, with a
filler phrase cut short by the answer and a barge-in (pause, clear, confirm) in the call.
"""

from __future__ import annotations

import asyncio
import json
import wave
from pathlib import Path


from telephony_bridge.testing import CallerScript, Hangup, Say, Scenario, ToolCallStep, Wait
from telephony_bridge.testing.local_call import founder_turns, place_local_call
from telephony_bridge.testing.wav import pcm16_to_ulaw

#: The lookup answers this late: the filler (from ~0.8 s, 0.7 s long) is still playing
#: when the answer comes, and gives way to it (a clear).
FILLER_CUT_DELAY_S = 1.05


def read_stereo_ulaw(path: Path) -> tuple[bytes, bytes, wave._wave_params]:
    import numpy as np

    with wave.open(str(path), "rb") as w:
        params = w.getparams()
        data = w.readframes(w.getnframes())
    x = np.frombuffer(data, dtype="<i2").reshape(-1, 2)
    return pcm16_to_ulaw(x[:, 0].tobytes()), pcm16_to_ulaw(x[:, 1].tobytes()), params


def canonical(ulaw: bytes) -> bytes:
    """μ-law has two zeros (0x7F and 0xFF): compare what they sound like."""
    return ulaw.replace(b"\x7f", b"\xff")


def test_the_recording_is_what_the_caller_sent_and_heard_frame_exact(tmp_path: Path) -> None:
    turns = founder_turns()
    scenario = Scenario(
        caller_texts=["one", "two", "three"],
        tool_calls=[ToolCallStep(after_turn=1, name="lookup_market", args={"market": "dental practice software"},
                                 then_clip=None, while_running="")],
    )
    script = CallerScript([Say(turns[0], label="answer"), Wait(4500),
                           Say(turns[1], barge_in_after_ms=400, label="barge-in"), Wait(1500), Hangup()])
    folder = tmp_path / "rec"
    call = asyncio.run(place_local_call(script, scenario, silence_duration_ms=800,
                                        recordings_dir=str(folder),
                                        demo_tool_delays_s={"lookup_market": FILLER_CUT_DELAY_S}))
    result, core = call.result, call.core
    # The call had what makes the right track hard: a filler cut short and a barge-in.
    assert core.counters["fillers"] >= 1, core.timeline
    assert any(e["kind"] == "phrase_stopped" for e in core.timeline)
    assert core.counters["barge_ins"] == 1 and core.counters["barge_pauses"] >= 1
    assert result.clears >= 2
    sid = result.call_sid
    left, right, params = read_stereo_ulaw(folder / f"{sid}.wav")
    assert (params.nchannels, params.sampwidth, params.framerate) == (2, 2, 8000)
    # Left: the caller's line, byte for byte.
    assert canonical(left) == canonical(result.sent_ulaw[:len(left)])
    assert len(result.sent_ulaw) - len(left) <= 160 * 2  # the last frame or two may not arrive
    # Right: what played, where it played.
    heard = result.heard_ulaw[:len(right)]
    diff = [i // 160 for i in range(len(right)) if canonical(right[i:i + 1]) != canonical(heard[i:i + 1])]
    assert not diff, f"{len(set(diff))} frames differ, first at frame {diff[0]}"
    assert sum(1 for b in right if b not in (0xFF, 0x7F)) > 8000 * 3  # seconds of agent audio
    meta = json.loads((folder / f"{sid}.json").read_text())
    assert meta["call_sid"] == sid and abs(meta["seconds"] - len(left) / 8000) < 0.01
    assert 0 <= meta["offset_s"] < 1.0


_KILLED_CALL = """
import asyncio, sys
from telephony_bridge.testing import CallerScript, Hangup, Say, Wait
from telephony_bridge.testing.local_call import founder_turns, place_local_call
turns = founder_turns()
script = CallerScript([Say(turns[0]), Wait(60000), Hangup()])
asyncio.run(place_local_call(script, recordings_dir=sys.argv[1], timeout=120))
"""


def test_a_process_killed_mid_call_leaves_a_playable_recording(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "rec"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_CALL, str(folder)],
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        wav = None
        while time.monotonic() < deadline:
            found = list(folder.glob("*.wav")) if folder.is_dir() else []
            if found and found[0].stat().st_size > 44 + 4 * 8000 * 12:  # twelve seconds written
                wav = found[0]
                break
            assert proc.poll() is None, "the call process died on its own"
            time.sleep(0.1)
        assert wav is not None, "no recording appeared"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    size = wav.stat().st_size
    left, right, params = read_stereo_ulaw(wav)  # the wave module reads it: sizes in the header are right
    assert params.nframes * 4 + 44 == size and params.nframes >= 12 * 8000
    assert not (wav.with_suffix(".json")).exists()  # it never finished
    # The caller spoke (the founder's first answer) and the agent greeted: both tracks have sound.
    assert sum(1 for b in left if b not in (0xFF, 0x7F)) > 8000
    assert sum(1 for b in right if b not in (0xFF, 0x7F)) > 4000


def test_a_call_placed_on_twiml_record_off_is_not_recorded(tmp_path: Path) -> None:
    import secrets

    from telephony_bridge.settings import Settings
    from telephony_bridge.testing import CallerSimulator, GeminiEmulator
    from telephony_bridge.testing.local_call import DEMO_KEY, LocalBridge

    folder = tmp_path / "rec"

    async def go() -> tuple[str, dict]:
        emulator = GeminiEmulator(Scenario(), api_key=DEMO_KEY)
        await emulator.start()
        bridge = LocalBridge(Settings(gemini_api_key=DEMO_KEY, public_url="http://127.0.0.1",
                                      gemini_live_url=emulator.url, twilio_auth_token=secrets.token_hex(16),
                                      recordings_dir=str(folder)))
        await bridge.start()
        try:
            sim = CallerSimulator(bridge.twiml_url + "?record=off", CallerScript([Wait(2500), Hangup()]),
                                  auth_token=bridge.settings.twilio_auth_token, timeout=60)
            result = await sim.run()
            await bridge.finished_call(result.call_sid)
            record = await bridge.app.state.store.get_record(result.call_sid)
        finally:
            await bridge.stop()
            await emulator.stop()
        assert any('name="record" value="off"' in t for t in result.twiml)
        return result.call_sid, record

    sid, record = asyncio.run(go())
    assert "recording" not in record and record["call_sid"] == sid
    assert not list(folder.glob("*.wav"))
