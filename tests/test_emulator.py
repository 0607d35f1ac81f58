"""The Gemini Live emulator, driven by a raw ``websockets`` client over real loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from telephony_bridge.testing.gemini import (
    API_KEY_INVALID_REASON,
    INVALID_ARGUMENT_REASON,
    PERMISSION_REASON,
    QUOTA_REASON,
    V1_PATH,
    Fault,
    GeminiEmulator,
    Scenario,
    ToolCallStep,
    audio_rate,
    b64decode_any,
    load_clips,
    normalize,
)
from telephony_bridge.testing.render_clips import FOUNDER_DIR, ulaw_decode, ulaw_encode

MODEL = "models/gemini-live-test"
FAST = dict(pace=20.0, think_ms=0.0)


# ----------------------------------------------------------------------------- helpers


def run(coro, timeout: float = 20.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def founder_pcm(turn: int = 1, rate: int = 16000, trailing_silence_s: float = 1.0) -> bytes:
    """A bundled founder turn as PCM16 LE at ``rate``, plus trailing silence."""
    x = ulaw_decode((FOUNDER_DIR / f"turn{turn}.ulaw").read_bytes()).astype(np.float64)
    if rate != 8000:
        x = resample_poly(x, rate // 8000, 1)
    x = np.concatenate([x, np.zeros(int(trailing_silence_s * rate))])
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


def rms16(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def setup_msg(**extra) -> str:
    setup = {"model": MODEL, "generationConfig": {"responseModalities": ["AUDIO"]}}
    setup.update(extra)
    return json.dumps({"setup": setup})


GREET = json.dumps(
    {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "Say hello."}]}],
                       "turnComplete": True}}
)


async def recv_json(ws, timeout: float = 5.0) -> dict:
    frame = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(frame, bytes), "server messages must be binary frames"
    return json.loads(frame.decode("utf-8"))


async def collect(ws, until, timeout: float = 10.0) -> list[dict]:
    """Receive messages until ``until(msg)`` is true (inclusive)."""
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        msg = await recv_json(ws, max(0.01, deadline - time.monotonic()))
        out.append(msg)
        if until(msg):
            return out


def turn_complete(msg: dict) -> bool:
    return msg.get("serverContent", {}).get("turnComplete") is True


def audio_of(msgs: list[dict]) -> bytes:
    pcm = b""
    for m in msgs:
        for part in m.get("serverContent", {}).get("modelTurn", {}).get("parts", []):
            blob = part["inlineData"]
            assert blob["mimeType"] == "audio/pcm;rate=24000"
            pcm += base64.b64decode(blob["data"])
    return pcm


def transcript_of(msgs: list[dict], key: str = "outputTranscription") -> str:
    return "".join(m["serverContent"][key]["text"] for m in msgs if key in m.get("serverContent", {}))


async def send_audio(ws, pcm: bytes, rate: int = 16000, chunk_ms: int = 20, **kw) -> None:
    step = rate * chunk_ms // 1000 * 2
    for i in range(0, len(pcm), step):
        await ws.send(audio_msg(pcm[i : i + step], rate, **kw))


def audio_msg(pcm: bytes, rate: int = 16000, *, snake: bool = False, urlsafe: bool = False,
              media_chunks: bool = False) -> str | bytes:
    data = base64.urlsafe_b64encode(pcm).decode().rstrip("=") if urlsafe else base64.b64encode(pcm).decode()
    blob = {"data": data, "mime_type" if snake else "mimeType": f"audio/pcm;rate={rate}"}
    if media_chunks:
        body = {"mediaChunks": [blob]}
    else:
        body = {"audio": blob}
    msg = json.dumps({"realtime_input" if snake else "realtimeInput": body})
    return msg.encode() if snake else msg  # snake-case client also sends binary frames


async def expect_close(ws, timeout: float = 5.0):
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    return info.value


# ----------------------------------------------------------------------------- handshake & setup


@pytest.mark.parametrize(
    "first",
    [
        GREET,  # not a setup
        "this is not json",
        json.dumps({"setup": {"generationConfig": {}}}),  # no model
        json.dumps({"setup": {"model": 42}}),
        json.dumps({"setup": "models/x"}),
        json.dumps({"setup": {"model": MODEL, "realtimeInputConfig": {
            "automaticActivityDetection": {"silenceDurationMs": "soon"}}}}),
        json.dumps({"setup": {"model": MODEL, "tools": {"functionDeclarations": []}}}),
        b"\xff\xfe not utf-8",
    ],
)
def test_bad_first_message_closes_1007(first):
    async def go():
        async with GeminiEmulator() as emu, connect(emu.url) as ws:
            await ws.send(first)
            closed = await expect_close(ws)
            assert closed.rcvd is not None and closed.rcvd.code == 1007
            assert closed.rcvd.reason
            await emu.sessions[0].wait_closed()
            assert emu.sessions[0].closed_code == 1007

    run(go())


def test_setup_complete_is_a_binary_frame_and_setup_is_recorded():
    async def go():
        async with GeminiEmulator() as emu, connect(emu.url) as ws:
            tools = [{"functionDeclarations": [{"name": "save_note", "parameters": {
                "type": "OBJECT", "properties": {"note_text": {"type": "STRING"}}}}]}]
            await ws.send(setup_msg(
                tools=tools,
                systemInstruction={"parts": [{"text": "Interview the founder."}]},
                realtimeInputConfig={"automaticActivityDetection": {"silenceDurationMs": 700,
                                                                     "prefixPaddingMs": 60}},
                contextWindowCompression={"slidingWindow": {}},
            ))
            frame = await ws.recv()
            assert isinstance(frame, bytes)
            assert json.loads(frame) == {"setupComplete": {}}
            s = emu.sessions[0]
            assert s.model == MODEL and s.setup["model"] == MODEL
            assert s.setup["tools"] == tools  # property names are user data, never renamed
            assert s.setup["systemInstruction"]["parts"][0]["text"] == "Interview the founder."
            assert "contextWindowCompression" in s.setup
            assert (s.silence_duration_ms, s.prefix_padding_ms) == (700, 60)
            assert s.api_version == "v1beta"

    run(go())


def test_default_silence_duration_is_1000ms_and_v1_path_works():
    async def go():
        async with GeminiEmulator() as emu:
            assert emu.url.startswith("ws://127.0.0.1:") and emu.port > 0
            async with connect(emu.url_v1) as ws:
                assert emu.url_v1.endswith(V1_PATH)
                await ws.send(setup_msg())
                assert await recv_json(ws) == {"setupComplete": {}}
            assert emu.sessions[0].silence_duration_ms == 1000
            assert emu.sessions[0].api_version == "v1"

    run(go())


def test_paths_and_api_keys():
    async def status_of(url, **kw):
        with pytest.raises(InvalidStatus) as info:
            async with connect(url, **kw):
                pass
        return info.value.response.status_code

    async def go():
        async with GeminiEmulator(api_key="sekret") as emu:
            base = f"ws://127.0.0.1:{emu.port}"
            assert await status_of(base + "/ws/other") == 404
            assert await status_of(emu.url) == 401
            assert await status_of(emu.url, additional_headers={"x-goog-api-key": "nope"}) == 403
            assert await status_of(emu.url + "?key=nope") == 403
            for url, headers in ((emu.url, {"x-goog-api-key": "sekret"}), (emu.url + "?key=sekret", {})):
                async with connect(url, additional_headers=headers) as ws:
                    await ws.send(setup_msg())
                    assert await recv_json(ws) == {"setupComplete": {}}
            assert len(emu.sessions) == 2
            assert [r[0] for r in emu.rejected] == [404, 401, 403, 403]

    run(go())


def test_unknown_model_and_unknown_fields():
    async def go():
        async with GeminiEmulator(Scenario(known_models=["gemini-live-test"])) as emu:
            async with connect(emu.url) as ws:
                await ws.send(setup_msg(model="models/no-such-model"))
                closed = await expect_close(ws)
                assert closed.rcvd.code == 1008 and "not found" in closed.rcvd.reason
            async with connect(emu.url) as ws:
                await ws.send(setup_msg())
                await recv_json(ws)
                await ws.send(json.dumps({"bogusField": {}}))
                closed = await expect_close(ws)
                assert closed.rcvd.code == 1007 and "bogusField" in closed.rcvd.reason

    run(go())


def test_refusals_the_way_the_service_sends_them():
    """A wrong key answered at setup (1007), a scripted refusal of the setup (permission, invalid
    argument) on every connection, and quota: setupComplete, then 1011."""

    async def go():
        scenario = Scenario(key_check="setup", faults=[
            Fault("reject_setup", code=1008, reason=PERMISSION_REASON, connection=1)])
        async with GeminiEmulator(scenario, api_key="sekret") as emu:
            async with connect(emu.url, additional_headers={"x-goog-api-key": "nope"}) as ws:  # upgrade accepted
                await ws.send(setup_msg())
                closed = await expect_close(ws)
                assert (closed.rcvd.code, closed.rcvd.reason) == (1007, API_KEY_INVALID_REASON)
            async with connect(emu.url + "?key=sekret") as ws:  # connection 1: permission refused
                await ws.send(setup_msg())
                closed = await expect_close(ws)
                assert (closed.rcvd.code, closed.rcvd.reason) == (1008, PERMISSION_REASON)
            async with connect(emu.url, additional_headers={"x-goog-api-key": "sekret"}) as ws:
                await ws.send(setup_msg())
                assert await recv_json(ws) == {"setupComplete": {}}
            assert emu.rejected == [] and len(emu.sessions) == 3
            assert emu.sessions[1].faults_fired == ["reject_setup"]

        invalid = Scenario(faults=[Fault("reject_setup", code=1007, reason=INVALID_ARGUMENT_REASON, connection=None)])
        async with GeminiEmulator(invalid) as emu:
            for _ in range(2):
                async with connect(emu.url) as ws:
                    await ws.send(setup_msg())
                    closed = await expect_close(ws)
                    assert (closed.rcvd.code, closed.rcvd.reason) == (1007, INVALID_ARGUMENT_REASON)

        quota = Scenario(faults=[Fault("close", at_s=0.3, code=1011, reason=QUOTA_REASON, connection=None)])
        async with GeminiEmulator(quota) as emu, connect(emu.url) as ws:
            await ws.send(setup_msg())
            assert await recv_json(ws) == {"setupComplete": {}}
            closed = await expect_close(ws)
            assert closed.rcvd.code == 1011
            assert closed.rcvd.reason.startswith("You exceeded your current quota")
            assert len(closed.rcvd.reason.encode()) <= 123  # a close reason's limit, as the service cuts it

    run(go())


# ----------------------------------------------------------------------------- speaking


def test_greeting_streams_real_speech_with_transcripts():
    clips = load_clips()

    async def go():
        async with GeminiEmulator(Scenario(**FAST)) as emu, connect(emu.url) as ws:
            await ws.send(setup_msg(outputAudioTranscription={}, inputAudioTranscription={}))
            await recv_json(ws)
            await ws.send(GREET)
            msgs = await collect(ws, turn_complete)
            pcm = audio_of(msgs)
            greeting = clips["greeting"]
            assert pcm == greeting.pcm  # the whole clip, in order
            assert rms16(pcm) > 0.05
            chunks = [m for m in msgs if "modelTurn" in m.get("serverContent", {})]
            assert len(chunks) > 10
            assert transcript_of(msgs) == greeting.text
            assert sum("outputTranscription" in m.get("serverContent", {}) for m in msgs) >= 3
            kinds = [next(iter(m["serverContent"])) for m in msgs if "serverContent" in m]
            assert kinds[-2:] == ["generationComplete", "turnComplete"]
            assert msgs[-1]["usageMetadata"]["responseTokenCount"] > 0
            s = emu.sessions[0]
            assert s.replies_started == 1 and s.replies[0].clip == "greeting"
            assert s.client_content[0]["turnComplete"] is True

    run(go())


def test_transcriptions_follow_the_setup():
    async def go():
        async with GeminiEmulator(Scenario(**FAST)) as emu, connect(emu.url) as ws:
            await ws.send(setup_msg())
            await recv_json(ws)
            await ws.send(GREET)
            msgs = await collect(ws, turn_complete)
            assert transcript_of(msgs) == ""
            assert audio_of(msgs)

    run(go())


def test_caller_speech_is_detected_and_answered():
    async def go():
        scenario = Scenario(silence_duration_ms=500, caller_texts=["We build ChairTime."], **FAST)
        async with GeminiEmulator(scenario) as emu, connect(emu.url) as ws:
            await ws.send(setup_msg(outputAudioTranscription={}, inputAudioTranscription={}))
            await recv_json(ws)
            pcm = founder_pcm(1)
            await send_audio(ws, pcm)
            msgs = await collect(ws, turn_complete)
            assert transcript_of(msgs, "inputTranscription") == "We build ChairTime."
            assert transcript_of(msgs) == load_clips()["q_customer"].text
            assert rms16(audio_of(msgs)) > 0.05
            s = emu.sessions[0]
            assert len(s.turns) == 1
            turn = s.turns[0]
            speech_s = json.loads((FOUNDER_DIR / "turns.json").read_text())["turns"][0]["seconds"]
            assert abs(turn.duration - speech_s) < 0.3
            assert turn.source == "vad" and turn.peak_rms > 0.05
            assert 0 <= turn.start <= turn.end <= turn.committed
            assert s.audio_in_seconds == pytest.approx(len(pcm) / 32000)
            assert s.audio_in_bytes == len(pcm)

    run(go())


def test_caller_speech_during_a_reply_interrupts_it():
    clips = load_clips()

    async def go():
        scenario = Scenario(pace=1.0, think_ms=0.0, silence_duration_ms=300)
        async with GeminiEmulator(scenario) as emu, connect(emu.url) as ws:
            await ws.send(setup_msg())
            await recv_json(ws)
            await ws.send(GREET)
            first = await collect(ws, lambda m: "modelTurn" in m.get("serverContent", {}))
            assert audio_of(first)
            await send_audio(ws, founder_pcm(2, trailing_silence_s=0.0)[: 16000 * 2 // 2])  # 0.5 s
            msgs = await collect(ws, lambda m: m.get("serverContent", {}).get("interrupted"))
            assert msgs[-1] == {"serverContent": {"interrupted": True}}
            s = emu.sessions[0]
            assert s.interruptions == 1 and s.replies[0].interrupted
            sent = len(audio_of(first + msgs)) / 48000
            assert sent < clips["greeting"].seconds / 2
            # the barge-in is a caller turn of its own: after the silence, the next reply
            await send_audio(ws, bytes(16000 * 2 // 2))
            after = await collect(ws, lambda m: "modelTurn" in m.get("serverContent", {}))
            assert not any(m.get("serverContent", {}).get("turnComplete") for m in after)
            assert len(s.turns) == 1 and s.turns[0].barged_in
            assert s.replies[-1].clip == "q_customer"

    run(go())


def test_snake_case_urlsafe_base64_and_binary_client_frames():
    async def go():
        async with GeminiEmulator(Scenario(**FAST)) as emu, connect(emu.url) as ws:
            await ws.send(json.dumps({"setup": {
                "model": MODEL,
                "generation_config": {"response_modalities": ["AUDIO"]},
                "realtime_input_config": {"automatic_activity_detection": {"silence_duration_ms": "400"}},
                "output_audio_transcription": {},
                "session_resumption": {},
            }}).encode())
            assert await recv_json(ws) == {"setupComplete": {}}
            s = emu.sessions[0]
            assert s.silence_duration_ms == 400
            assert s.setup["realtimeInputConfig"]["automaticActivityDetection"]["silenceDurationMs"] == "400"
            assert s.raw_setup["realtime_input_config"]
            pcm = founder_pcm(3, trailing_silence_s=0.6)
            datas = [json.loads(audio_msg(pcm[i : i + 640], snake=True, urlsafe=True))
                     ["realtime_input"]["audio"]["data"] for i in range(0, len(pcm), 640)]
            assert not any("=" in d for d in datas)
            assert any("-" in d or "_" in d for d in datas)  # the URL-safe alphabet is exercised
            await send_audio(ws, pcm, snake=True, urlsafe=True)
            msgs = await collect(ws, turn_complete)
            assert audio_of(msgs)
            assert len(s.turns) == 1
            update = await recv_json(ws)
            assert update["sessionResumptionUpdate"]["resumable"] is True
            await ws.send(json.dumps({"client_content": {
                "turns": [{"role": "user", "parts": [{"text": "digit 5"}]}], "turn_complete": True}}).encode())
            msgs = await collect(ws, turn_complete)
            assert transcript_of(msgs) == load_clips()["q_competition"].text
            assert s.client_content[-1]["turnComplete"] is True

    run(go())


def test_base64_and_mime_helpers():
    raw = bytes(range(256)) * 3 + b"\xfb\xff"
    for enc in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode(),
                base64.urlsafe_b64encode(raw).decode().rstrip("="), base64.b64encode(raw).decode().rstrip("=")):
        assert b64decode_any(enc) == raw
    assert audio_rate("audio/pcm;rate=8000") == 8000
    assert audio_rate("audio/pcm; rate=24000") == 24000
    assert audio_rate("audio/pcm") == 16000
    assert audio_rate("image/jpeg") is None
    assert normalize({"function_responses": [{"id": "1", "response": {"snake_key": 1}}]}) == {
        "functionResponses": [{"id": "1", "response": {"snake_key": 1}}]}


def test_8khz_input_is_accepted():
    async def go():
        async with GeminiEmulator(Scenario(silence_duration_ms=400, **FAST)) as emu, connect(emu.url) as ws:
            await ws.send(setup_msg())
            await recv_json(ws)
            pcm = founder_pcm(2, rate=8000, trailing_silence_s=0.6)
            await send_audio(ws, pcm, rate=8000)
            msgs = await collect(ws, turn_complete)
            assert audio_of(msgs)
            s = emu.sessions[0]
            assert s.audio_in_rates == {8000}
            assert s.audio_in_seconds == pytest.approx(len(pcm) / 16000)
            speech_s = json.loads((FOUNDER_DIR / "turns.json").read_text())["turns"][1]["seconds"]
            assert len(s.turns) == 1 and abs(s.turns[0].duration - speech_s) < 0.3

    run(go())


def test_media_chunks_and_audio_stream_end():
    async def go():
        async with GeminiEmulator(Scenario(silence_duration_ms=5000, **FAST)) as emu, connect(emu.url) as ws:
            await ws.send(setup_msg())
            await recv_json(ws)
            await send_audio(ws, founder_pcm(4, trailing_silence_s=0.1), media_chunks=True)
            await ws.send(json.dumps({"realtimeInput": {"audioStreamEnd": True}}))
            msgs = await collect(ws, turn_complete)
            assert audio_of(msgs)
            s = emu.sessions[0]
            assert s.audio_stream_ends == 1
            assert len(s.turns) == 1 and s.turns[0].source == "audio_stream_end"

    run(go())


def test_manual_activity_detection():
    async def go():
        async with GeminiEmulator(Scenario(**FAST)) as emu, connect(emu.url) as ws:
            await ws.send(setup_msg(realtimeInputConfig={"automaticActivityDetection": {"disabled": True}}))
            await recv_json(ws)
            await ws.send(json.dumps({"realtimeInput": {"activityStart": {}}}))
            await send_audio(ws, founder_pcm(2, trailing_silence_s=2.0))
            assert emu.sessions[0].turns == []  # no VAD: silence does not end the turn
            await ws.send(json.dumps({"realtimeInput": {"activityEnd": {}}}))
            msgs = await collect(ws, turn_complete)
            assert audio_of(msgs)
            assert emu.sessions[0].turns[0].source == "manual"

    run(go())


# ----------------------------------------------------------------------------- resumption & tools


def test_resumption_continues_the_conversation_without_a_second_greeting():
    clips = load_clips()

    async def go():
        async with GeminiEmulator(Scenario(silence_duration_ms=400, **FAST)) as emu:
            async with connect(emu.url) as ws:
                await ws.send(setup_msg(sessionResumption={}, outputAudioTranscription={}))
                await recv_json(ws)
                await ws.send(GREET)
                msgs = await collect(ws, lambda m: "sessionResumptionUpdate" in m)
                assert transcript_of(msgs) == clips["greeting"].text
                handle = msgs[-1]["sessionResumptionUpdate"]["newHandle"]
                assert msgs[-1]["sessionResumptionUpdate"]["resumable"] is True
            # the connection drops; the client resumes and, as bridges do, prompts again
            async with connect(emu.url) as ws:
                await ws.send(setup_msg(sessionResumption={"handle": handle}, outputAudioTranscription={}))
                assert await recv_json(ws) == {"setupComplete": {}}
                await ws.send(GREET)
                msgs = await collect(ws, lambda m: "sessionResumptionUpdate" in m)
                assert transcript_of(msgs) == clips["q_customer"].text
                await send_audio(ws, founder_pcm(2, trailing_silence_s=0.6))
                msgs = await collect(ws, turn_complete)
                assert transcript_of(msgs) == clips["q_competition"].text
            s0, s1 = emu.sessions
            assert s1.resumed_from == handle and s1.conversation is not s0.conversation
            assert [r.clip for r in s0.replies + s1.replies] == ["greeting", "q_customer", "q_competition"]
            assert handle in s0.handles_issued
            async with connect(emu.url) as ws:
                await ws.send(setup_msg(sessionResumption={"handle": "no-such-handle"}))
                closed = await expect_close(ws)
                assert closed.rcvd.code == 1008

    run(go())


def blocking(*names: str) -> list[dict]:
    """``setup.tools`` declaring each tool BLOCKING (the test model is taken as 3.8, where an
    undeclared tool is non-blocking: tests/test_emulator_profiles.py covers that)."""
    return [{"functionDeclarations": [{"name": n, "behavior": "BLOCKING"} for n in names]}]


def test_scripted_tool_call():
    clips = load_clips()

    async def go():
        step = ToolCallStep(after_turn=1, name="save_note", args={"note": "dental scheduling"},
                            call_id="call-1")
        async with GeminiEmulator(Scenario(tool_calls=[step], **FAST)) as emu, connect(emu.url) as ws:
            await ws.send(setup_msg(outputAudioTranscription={}, tools=blocking("save_note")))
            await recv_json(ws)
            await ws.send(GREET)
            await collect(ws, turn_complete)
            await ws.send(json.dumps({"clientContent": {
                "turns": [{"role": "user", "parts": [{"text": "It's ChairTime."}]}], "turnComplete": True}}))
            msgs = await collect(ws, lambda m: "toolCall" in m)
            assert msgs[-1] == {"toolCall": {"functionCalls": [
                {"id": "call-1", "name": "save_note", "args": {"note": "dental scheduling"}}]}}
            await asyncio.sleep(0.1)
            assert emu.sessions[0].replies_started == 1  # waits for the response
            await ws.send(json.dumps({"tool_response": {"function_responses": [
                {"id": "call-1", "name": "save_note", "response": {"ok": True}}]}}))
            msgs = await collect(ws, turn_complete)
            assert transcript_of(msgs) == clips["tool_ack"].text
            s = emu.sessions[0]
            assert s.tool_responses == [{"id": "call-1", "name": "save_note", "response": {"ok": True}}]
            # the next caller turn gets the next question in order
            await ws.send(json.dumps({"clientContent": {
                "turns": [{"role": "user", "parts": [{"text": "Dentists."}]}], "turnComplete": True}}))
            msgs = await collect(ws, turn_complete)
            assert transcript_of(msgs) == clips["q_customer"].text

    run(go())


def test_caller_speech_cancels_a_pending_tool_call():
    async def go():
        step = ToolCallStep(after_turn=1, name="lookup", call_id="c1")
        async with GeminiEmulator(Scenario(tool_calls=[step], silence_duration_ms=500, **FAST)) as emu, \
                connect(emu.url) as ws:
            await ws.send(setup_msg(tools=blocking("lookup")))
            await recv_json(ws)
            await send_audio(ws, founder_pcm(1, trailing_silence_s=0.6))
            await collect(ws, lambda m: "toolCall" in m)
            await send_audio(ws, founder_pcm(2, trailing_silence_s=0.0)[:16000])
            msgs = await collect(ws, lambda m: "toolCallCancellation" in m)
            assert msgs[-1] == {"toolCallCancellation": {"ids": ["c1"]}}
            assert emu.sessions[0].tool_cancellations == ["c1"]

    run(go())


# ----------------------------------------------------------------------------- faults


def test_fault_close_1011_then_reconnect_works():
    async def go():
        async with GeminiEmulator(Scenario(faults=[Fault("close", at_s=0.2)], **FAST)) as emu:
            async with connect(emu.url) as ws:
                await ws.send(setup_msg())
                await recv_json(ws)
                closed = await expect_close(ws)
                assert closed.rcvd.code == 1011
            async with connect(emu.url) as ws:  # the fault applies to connection 0 only
                await ws.send(setup_msg())
                assert await recv_json(ws) == {"setupComplete": {}}
            assert emu.sessions[0].closed_code == 1011 and emu.sessions[0].faults_fired == ["close"]

    run(go())


def test_fault_drop_mid_reply_and_refuse():
    async def go():
        faults = [Fault("drop", on_reply=1, after_chunks=3, refuse_s=0.5)]
        async with GeminiEmulator(Scenario(faults=faults, pace=1.0, think_ms=0.0)) as emu:
            async with connect(emu.url) as ws:
                await ws.send(setup_msg())
                await recv_json(ws)
                await ws.send(GREET)
                closed = await expect_close(ws)
                assert closed.rcvd is None  # no close frame: 1006 for the client
            with pytest.raises(InvalidStatus) as info:
                async with connect(emu.url):
                    pass
            assert info.value.response.status_code == 503
            await asyncio.sleep(0.6)
            async with connect(emu.url) as ws:
                await ws.send(setup_msg())
                assert await recv_json(ws) == {"setupComplete": {}}
            s = emu.sessions[0]
            assert s.closed_code == 1006 and s.replies[0].chunks_sent == 3
            assert emu.refused == 1

    run(go())


def test_fault_go_away_then_cut():
    async def go():
        faults = [Fault("go_away", at_s=0.1, time_left_s=0.3)]
        async with GeminiEmulator(Scenario(faults=faults, **FAST)) as emu, connect(emu.url) as ws:
            await ws.send(setup_msg())
            await recv_json(ws)
            t0 = time.monotonic()
            assert await recv_json(ws) == {"goAway": {"timeLeft": "0.3s"}}
            closed = await expect_close(ws)
            assert closed.rcvd.code == 1011 and time.monotonic() - t0 >= 0.25

    run(go())


def test_fault_reject_resume():
    async def go():
        faults = [Fault("reject_resume", connection=None)]
        async with GeminiEmulator(Scenario(faults=faults, **FAST)) as emu:
            async with connect(emu.url) as ws:
                await ws.send(setup_msg(sessionResumption={}))
                await recv_json(ws)
                await ws.send(GREET)
                msgs = await collect(ws, lambda m: "sessionResumptionUpdate" in m)
            async with connect(emu.url) as ws:
                handle = msgs[-1]["sessionResumptionUpdate"]["newHandle"]
                await ws.send(setup_msg(sessionResumption={"handle": handle}))
                closed = await expect_close(ws)
                assert closed.rcvd.code == 1008

    run(go())


# ----------------------------------------------------------------------------- timing


def test_reply_is_paced_in_real_time():
    clip = load_clips()["q_why_now"]  # about 1.9 s

    async def go():
        scenario = Scenario(greeting="q_why_now", pace=1.0, think_ms=0.0, burst_ms=400)
        async with GeminiEmulator(scenario) as emu, connect(emu.url) as ws:
            await ws.send(setup_msg())
            await recv_json(ws)
            await ws.send(GREET)
            times = []
            while True:
                m = await recv_json(ws)
                if "modelTurn" in m.get("serverContent", {}):
                    times.append(time.monotonic())
                if turn_complete(m):
                    break
            chunk_s = 0.04
            assert len(times) == int(np.ceil(clip.seconds / chunk_s))
            # the first 400 ms arrive at once, the rest in real time
            assert times[9] - times[0] < 0.15
            elapsed = times[-1] - times[0]
            expected = (len(times) - 1) * chunk_s - 0.4
            assert expected - 0.05 < elapsed < expected + 0.5

    run(go())


# ----------------------------------------------------------------------------- assets


def test_clips_and_founder_recording():
    clips = load_clips()
    assert {"greeting", "goodbye", "q_customer", "q_competition", "q_business_model", "q_why_now"} <= set(clips)
    assert "startup idea" in clips["greeting"].text
    clip_dir = Path(__file__).resolve().parent.parent / "telephony_bridge" / "testing" / "clips"
    assert sum(p.stat().st_size for p in clip_dir.glob("*.pcm")) < 2_000_000
    for clip in clips.values():
        assert clip.rate == 24000 and len(clip.pcm) % 2 == 0
        assert 1.0 < clip.seconds < 8.0 and rms16(clip.pcm) > 0.05
    founder = json.loads((FOUNDER_DIR / "turns.json").read_text())
    assert 4 <= len(founder["turns"]) <= 5
    for turn in founder["turns"]:
        data = (FOUNDER_DIR / turn["file"]).read_bytes()
        assert 3.0 <= len(data) / 8000 <= 6.0 and turn["text"]
        assert rms16(ulaw_decode(data).astype("<i2").tobytes()) > 0.05


def test_ulaw_codec_matches_g711():
    # reference values from ITU-T G.711 (μ-law): 0 → 0xFF, -1 → 0x7F, max → 0x80, min → 0x00
    assert ulaw_encode(np.array([0, -1, 32767, -32768])) == bytes([0xFF, 0x7F, 0x80, 0x00])
    assert list(ulaw_decode(bytes([0xFF, 0x80, 0x00]))) == [0, 32124, -32124]
    x = np.arange(-32768, 32768, 7, dtype=np.int16)
    err = np.abs(ulaw_decode(ulaw_encode(x)).astype(int) - x)
    assert err.max() <= 1024


# ----------------------------------------------------------------------------- CLI


def test_main_serves_and_prints_its_url():
    proc = subprocess.Popen(
        [sys.executable, "-W", "error", "-m", "telephony_bridge.testing.emulator", "--port", "0", "--log-level", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("ws://127.0.0.1:") and url.endswith("v1beta.GenerativeService.BidiGenerateContent")

        async def go():
            async with connect(url) as ws:
                await ws.send(setup_msg())
                assert await recv_json(ws) == {"setupComplete": {}}

        run(go())
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_stop_closes_connections_with_1001():
    async def go():
        emu = GeminiEmulator()
        await emu.start()
        async with connect(emu.url) as ws:
            await ws.send(setup_msg())
            await recv_json(ws)
            await emu.stop()
            closed = await expect_close(ws)
            assert closed.rcvd.code == 1001
        assert emu.sessions[0].closed_by == "server" and emu.sessions[0].closed_code == 1001

    run(go())


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl CLI to make a test certificate")
def test_tls(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))

    async def go():
        async with GeminiEmulator(ssl=server_ctx) as emu, connect(emu.url, ssl=client_ctx) as ws:
            assert emu.url.startswith("wss://127.0.0.1:")
            await ws.send(setup_msg())
            assert await recv_json(ws) == {"setupComplete": {}}

    run(go())


def test_scenario_reply_order():
    sc = Scenario(replies=["q_customer", "goodbye"])
    assert [sc.reply_clip(i) for i in range(4)] == ["q_customer", "goodbye", "goodbye", "goodbye"]
    sc = Scenario(replies=["q_customer", "goodbye"], when_exhausted="cycle")
    assert [sc.reply_clip(i) for i in range(3)] == ["q_customer", "goodbye", "q_customer"]
    assert Scenario(replies=["goodbye"], when_exhausted="silent").reply_clip(1) is None
    assert Scenario(think_ms=[800, 300]).think_seconds(5) == 0.3
    with pytest.raises(ValueError, match="unknown clips"):
        GeminiEmulator(Scenario(replies=["no_such_clip"]))


def test_scenario_plans_due_tool_steps_before_the_next_reply():
    steps = [ToolCallStep(after_turn=2, name="first"), ToolCallStep(after_turn=2, name="second", then_clip=None)]
    sc = Scenario(tool_calls=steps)
    assert sc.plan_after_caller_turn(1, []) == ("reply", None, None)
    assert sc.plan_after_caller_turn(2, []) == ("tool", "tool_ack", steps[0])
    assert sc.plan_after_caller_turn(3, [0]) == ("tool", None, steps[1])  # a later turn still owes it
    assert sc.plan_after_caller_turn(3, [0, 1]) == ("reply", None, None)


def test_fault_empty_turn_and_no_reply_are_silent_stalls_the_next_attempt_answers():
    clips = load_clips()
    text_turn = json.dumps({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "Go on."}]}],
                                              "turnComplete": True}})

    async def go():
        faults = [Fault("empty_turn", on_reply=1), Fault("no_reply", on_reply=3)]
        async with GeminiEmulator(Scenario(faults=faults, **FAST)) as emu, connect(emu.url) as ws:
            await ws.send(setup_msg(outputAudioTranscription={}))
            await recv_json(ws)
            await ws.send(GREET)
            # Attempt 1: a bare turnComplete, nothing else (python-genai #2117).
            assert await recv_json(ws) == {"serverContent": {"turnComplete": True}}
            s = emu.sessions[0]
            assert s.stalled_attempts == [1] and s.faults_fired == ["empty_turn"] and not s.replies
            # Attempt 2 (the client asks again): the greeting, as if nothing had happened.
            await ws.send(GREET)
            msgs = await collect(ws, turn_complete)
            assert audio_of(msgs) == clips["greeting"].pcm
            # Attempt 3 never starts: nothing at all arrives.
            await ws.send(text_turn)
            with pytest.raises(TimeoutError):
                await recv_json(ws, timeout=0.5)
            assert s.stalled_attempts == [1, 3]
            # Attempt 4: the first question, the one attempt 3 would have asked.
            await ws.send(text_turn)
            msgs = await collect(ws, turn_complete)
            assert transcript_of(msgs) == clips[Scenario().replies[0]].text
            assert [r.kind for r in s.replies] == ["greeting", "reply"]

    run(go())


def test_fault_empty_turn_right_after_a_resumption():
    async def go():
        faults = [Fault("empty_turn", on_reply=1, connection=1)]
        async with GeminiEmulator(Scenario(faults=faults, **FAST)) as emu:
            async with connect(emu.url) as ws:
                await ws.send(setup_msg(sessionResumption={}))
                await recv_json(ws)
                await ws.send(GREET)
                await collect(ws, turn_complete)  # connection 0 greets normally
                update = await recv_json(ws)
                handle = update["sessionResumptionUpdate"]["newHandle"]
            async with connect(emu.url) as ws:
                await ws.send(setup_msg(sessionResumption={"handle": handle}))
                await recv_json(ws)
                await ws.send(GREET)
                assert await recv_json(ws) == {"serverContent": {"turnComplete": True}}
            assert emu.sessions[1].stalled_attempts == [1] and emu.sessions[0].stalled_attempts == []

    run(go())
