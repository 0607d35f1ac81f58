"""The Twilio caller simulator against a fake bridge that checks Twilio's wire protocol.

The fake bridge is a real Starlette app served by uvicorn on a free loopback port: a TwiML
webhook and Media Streams websocket endpoints that validate signatures like a bridge does,
record everything the simulator sends, and drive it with odd-sized media, marks and clears.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import socket
import sys
import urllib.parse
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from twilio.request_validator import RequestValidator

from telephony_bridge.testing import (
    CallerScript,
    CallerSimulator,
    CallResult,
    Dtmf,
    Hangup,
    Say,
    Wait,
    WaitForAgent,
)
from telephony_bridge.testing.twilio import EchoPath, SimulatorError, loopback_rewrite, main
from telephony_bridge.testing.wav import (
    load_ulaw,
    pcm16_to_ulaw,
    silence_ulaw,
    tone_ulaw,
    ulaw_to_pcm16,
    write_stereo_wav,
)

PUBLIC = "https://bridge.example"
TOKEN = "0123456789abcdef0123456789abcdef"
SILENCE = 0xFF


# --------------------------------------------------------------------------- fake bridge


@contextlib.asynccontextmanager
async def serve(routes: list[Any]) -> AsyncIterator[int]:
    """Serve a Starlette app on a free loopback port for the duration of the block."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(Starlette(routes=routes), ws="websockets-sansio", log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started
        yield port
    finally:
        server.should_exit = True
        await task
        sock.close()


def twiml_route(path: str, body: str | Callable[[], str], seen: list[dict[str, Any]]) -> Route:
    """A TwiML webhook that validates the signature over the public URL and every form field."""

    async def endpoint(request: Request) -> Response:
        # Starlette's request.form() needs python-multipart, which is not installed.
        form = dict(urllib.parse.parse_qsl((await request.body()).decode(), keep_blank_values=True))
        url = PUBLIC + path
        sig = request.headers.get("x-twilio-signature", "")
        seen.append(
            {
                "path": path,
                "form": form,
                "signature_ok": RequestValidator(TOKEN).validate(url, form, sig),
                "signature_wrong_token_ok": RequestValidator("not-the-token").validate(url, form, sig),
                "user_agent": request.headers.get("user-agent"),
                "content_type": request.headers.get("content-type"),
            }
        )
        text = body() if callable(body) else body
        return Response(text, media_type="application/xml")

    return Route(path, endpoint, methods=["POST"])


class Peer:
    """One accepted Media Stream, as the bridge sees it: everything received, timestamped."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.loop = asyncio.get_running_loop()
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.closed = False
        self.stream_sid = ""

    async def handshake(self) -> tuple[dict[str, Any], dict[str, Any]]:
        connected = json.loads(await self.ws.receive_text())
        start = json.loads(await self.ws.receive_text())
        self.stream_sid = start["streamSid"]
        self.messages += [(self.loop.time(), connected), (self.loop.time(), start)]
        self._reader = asyncio.create_task(self._read())
        return connected, start

    async def _read(self) -> None:
        try:
            while True:
                text = await self.ws.receive_text()
                self.messages.append((self.loop.time(), json.loads(text)))
        except (WebSocketDisconnect, RuntimeError):
            self.closed = True

    def of(self, event: str) -> list[dict[str, Any]]:
        return [m for _, m in self.messages if m.get("event") == event]

    def timed(self, event: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.messages if m.get("event") == event]

    def latest_timestamp_ms(self) -> int:
        return int(self.of("media")[-1]["media"]["timestamp"])

    def marks(self) -> list[str]:
        return [m["mark"]["name"] for m in self.of("mark")]

    def inbound_speech(self) -> list[dict[str, Any]]:
        return [m for m in self.of("media") if set(base64.b64decode(m["media"]["payload"])) != {SILENCE}]

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = self.loop.time() + timeout
        while not predicate():
            assert self.loop.time() < deadline, "fake bridge timed out waiting"
            await asyncio.sleep(0.002)

    async def send(self, msg: dict[str, Any]) -> None:
        msg.setdefault("streamSid", self.stream_sid)
        await self.ws.send_text(json.dumps(msg))

    async def media(self, data: bytes) -> None:
        await self.send({"event": "media", "media": {"payload": base64.b64encode(data).decode()}})

    async def mark(self, name: str) -> None:
        await self.send({"event": "mark", "mark": {"name": name}})

    async def clear(self) -> None:
        await self.send({"event": "clear"})


def stream_route(path: str, handler: Callable[[Peer], Awaitable[None]], log: dict[str, Any]) -> WebSocketRoute:
    """A Media Streams endpoint that rejects bad signatures like a bridge should."""

    async def endpoint(ws: WebSocket) -> None:
        sig = ws.headers.get("x-twilio-signature")
        log.setdefault("ws_signatures", []).append(sig)
        if sig is not None and not RequestValidator(TOKEN).validate(PUBLIC.replace("https", "wss") + path, {}, sig):
            await ws.close(code=1008)
            return
        await ws.accept()
        peer = Peer(ws)
        log.setdefault("peers", []).append(peer)
        await handler(peer)

    return WebSocketRoute(path, endpoint)


def check_inbound_protocol(peer: Peer, start_params: dict[str, str], call_sid: str) -> None:
    """Everything the simulator sent on one stream is exactly what Twilio sends."""
    msgs = [m for _, m in peer.messages]
    assert msgs[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    start = msgs[1]
    assert start["event"] == "start" and start["sequenceNumber"] == "1"
    assert re.fullmatch(r"MZ[0-9a-f]{32}", start["streamSid"])
    assert start["start"]["streamSid"] == start["streamSid"]
    assert start["start"]["callSid"] == call_sid
    assert re.fullmatch(r"AC[0-9a-f]{32}", start["start"]["accountSid"])
    assert start["start"]["tracks"] == ["inbound"]
    assert start["start"]["customParameters"] == start_params
    assert start["start"]["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    # sequenceNumber: strings, 1, 2, 3... over every message after `connected`.
    seqs = [m["sequenceNumber"] for m in msgs[1:]]
    assert all(isinstance(s, str) for s in seqs)
    assert [int(s) for s in seqs] == list(range(1, len(seqs) + 1))
    media = [m for m in msgs if m["event"] == "media"]
    assert media, "no media frames"
    for k, m in enumerate(media):
        assert m["streamSid"] == start["streamSid"]
        assert m["media"]["track"] == "inbound"
        assert m["media"]["chunk"] == str(k + 1)
        assert m["media"]["timestamp"] == str(20 * k)
        assert len(base64.b64decode(m["media"]["payload"])) == 160
    for m in msgs[2:]:
        assert m["streamSid"] == start["streamSid"]


def events(result: CallResult, kind: str) -> list[dict[str, Any]]:
    return [e for e in result.events if e["kind"] == kind]


def connect_twiml(stream_path: str, params: dict[str, str], action: str | None = None, after: str = "") -> str:
    attrs = f' action="{action}"' if action else ""
    ps = "".join(f'<Parameter name="{k}" value="{v}"/>' for k, v in params.items())
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        f'<Connect{attrs}><Stream url="wss://bridge.example{stream_path}">{ps}</Stream></Connect>{after}</Response>'
    )


# --------------------------------------------------------------------------- the full call


GREETING = [tone_ulaw(500, 41.625, 0.5), tone_ulaw(700, 125, 0.5), b"\x10" * 7, tone_ulaw(900, 62.5, 0.5)]
LONG_BYTE, REPLY_BYTE, STREAM2_BYTE = 0x20, 0x30, 0x40


def test_full_call_protocol_marks_clear_and_connect_action(tmp_path: Any) -> None:
    webhooks: list[dict[str, Any]] = []
    log: dict[str, Any] = {}
    answer1, answer2 = tone_ulaw(440, 400, 0.4), tone_ulaw(660, 300, 0.4)

    async def stream1(peer: Peer) -> None:
        log["start1"] = await peer.handshake()
        await peer.until(lambda: len(peer.of("media")) >= 5)
        # Greeting in odd sizes with marks between; the heard track must start at ~T.
        log["greeting_ts_ms"] = peer.latest_timestamp_ms()
        sent_at = peer.loop.time()
        await peer.media(GREETING[0])
        await peer.media(GREETING[1])
        await peer.media(GREETING[2])
        await peer.mark("g1")
        await peer.media(GREETING[3])
        await peer.mark("g2")
        await peer.until(lambda: "g2" in peer.marks())
        times = {m["mark"]["name"]: t for t, m in peer.timed("mark")}
        log["g1_latency"], log["g2_latency"] = times["g1"] - sent_at, times["g2"] - sent_at
        # A mark with nothing queued comes straight back.
        sent_at = peer.loop.time()
        await peer.mark("empty")
        await peer.until(lambda: "empty" in peer.marks())
        log["empty_latency"] = peer.loop.time() - sent_at
        # A long answer, interrupted by clear after 300 ms: pending marks come back at once.
        await peer.media(bytes([LONG_BYTE]) * 16000)
        await peer.mark("long1")
        await peer.media(bytes([LONG_BYTE]) * 3000)
        await peer.mark("long2")
        await asyncio.sleep(0.3)
        cleared_at = peer.loop.time()
        await peer.clear()
        await peer.until(lambda: "long2" in peer.marks())
        log["flush_latency"] = peer.loop.time() - cleared_at
        # The agent's real reply; then the caller answers; then the bridge hangs up the stream.
        await peer.media(bytes([REPLY_BYTE]) * 1600)
        await peer.mark("reply")
        await peer.until(lambda: len(peer.inbound_speech()) >= 20)
        await peer.until(lambda: set(base64.b64decode(peer.of("media")[-1]["media"]["payload"])) == {SILENCE})
        await asyncio.sleep(0.05)
        await peer.ws.close()

    async def stream2(peer: Peer) -> None:
        log["start2"] = await peer.handshake()
        await peer.until(lambda: len(peer.of("media")) >= 3)
        await peer.media(bytes([STREAM2_BYTE]) * 2400)
        await peer.until(lambda: peer.closed or bool(peer.of("stop")), timeout=8)
        await peer.until(lambda: peer.closed, timeout=3)

    script = CallerScript(
        [
            Say(answer1, think_ms=200, quiet_ms=300, label="a1"),
            Say(answer2, think_ms=200, quiet_ms=300, label="a2"),
            Hangup(),
        ]
    )

    seen_live: list[dict[str, Any]] = []

    async def scenario() -> CallResult:
        routes = [
            twiml_route("/twiml", connect_twiml("/stream", {"caller": "founder", "n": "1"}, action=f"{PUBLIC}/action"), webhooks),
            twiml_route("/action", connect_twiml("/stream2", {"leg": "2"}, action="/final"), webhooks),
            twiml_route("/final", "<Response><Hangup/></Response>", webhooks),
            stream_route("/stream", stream1, log),
            stream_route("/stream2", stream2, log),
        ]
        async with serve(routes) as port:
            sim = CallerSimulator(
                f"{PUBLIC}/twiml",
                script,
                auth_token=TOKEN,
                url_rewrite=loopback_rewrite(f"http://127.0.0.1:{port}", PUBLIC),
                timeout=15,
                on_event=seen_live.append,
            )
            return await sim.run()

    result = asyncio.run(scenario())

    # Call shape.
    assert result.ended_by == "caller"
    assert re.fullmatch(r"CA[0-9a-f]{32}", result.call_sid)
    assert len(result.stream_sids) == 2 and len(set(result.stream_sids)) == 2
    assert len(result.twiml) == 2 and "<Connect" in result.twiml[0]
    assert [w["path"] for w in webhooks] == ["/twiml", "/action"], "the caller hung up: /final must not be requested"
    assert result.protocol_errors == []
    assert seen_live and {e["kind"] for e in seen_live} == {e["kind"] for e in result.events}

    # Webhooks: Twilio's form fields, signed over the public URL, same call on the action.
    for w in webhooks:
        assert w["signature_ok"] and not w["signature_wrong_token_ok"]
        assert w["content_type"].startswith("application/x-www-form-urlencoded")
        assert w["form"]["CallSid"] == result.call_sid
        assert w["form"]["CallStatus"] == "in-progress"
        assert w["form"]["Direction"] == "inbound"
        assert w["form"]["ApiVersion"] == "2010-04-01"
        assert w["form"]["From"] == "+15551230000" and w["form"]["To"] == "+15557654321"
        assert re.fullmatch(r"AC[0-9a-f]{32}", w["form"]["AccountSid"])
    assert webhooks[0]["form"] == webhooks[1]["form"]
    # Websocket upgrades signed over the wss:// URL as written (the endpoint rejects bad ones).
    assert len(log["ws_signatures"]) == 2 and all(log["ws_signatures"])

    # Inbound protocol on both streams.
    peer1, peer2 = log["peers"]
    check_inbound_protocol(peer1, {"caller": "founder", "n": "1"}, result.call_sid)
    check_inbound_protocol(peer2, {"leg": "2"}, result.call_sid)
    assert [peer1.stream_sid, peer2.stream_sid] == result.stream_sids
    assert peer1.of("stop") == []  # the bridge closed stream 1
    (stop,) = peer2.of("stop")
    assert stop["stop"] == {"accountSid": webhooks[0]["form"]["AccountSid"], "callSid": result.call_sid}
    assert stop["streamSid"] == peer2.stream_sid
    assert peer2.messages[-1][1]["event"] == "stop", "nothing may follow stop"

    # Pacing: 20 ms frames on an absolute clock (no drift over the stream).
    arrivals = [t for t, _ in peer1.timed("media")]
    assert abs((arrivals[-1] - arrivals[0]) - 0.02 * (len(arrivals) - 1)) < 0.06

    # Marks: returned in order, after their audio played; flushed ones at once on clear.
    assert peer1.marks() == ["g1", "g2", "empty", "long1", "long2", "reply"]
    assert 1333 / 8000 - 0.005 <= log["g1_latency"] <= 1333 / 8000 + 0.07
    assert 1833 / 8000 - 0.005 <= log["g2_latency"] <= 1833 / 8000 + 0.07
    assert log["empty_latency"] < 0.05
    assert log["flush_latency"] < 0.05
    assert result.marks_returned == 6 and result.clears == 1
    flushed = [e["details"]["name"] for e in events(result, "mark_sent_back") if e["details"]["flushed"]]
    assert flushed == ["long1", "long2"]
    (clear,) = events(result, "clear")
    assert clear["details"]["pending_marks"] == ["long1", "long2"]
    assert 16000 + 3000 - 0.3 * 8000 - 400 <= clear["details"]["dropped_bytes"] <= 16000 + 3000 - 0.3 * 8000 + 400

    # Media of any size, counted.
    assert dict(result.media_sizes_seen) == {333: 1, 1000: 1, 7: 1, 500: 1, 16000: 1, 3000: 1, 1600: 1, 2400: 1}
    assert [n for _, n in result.media_received] == [333, 1000, 7, 500, 16000, 3000, 1600, 2400]

    # Heard track: the greeting verbatim, starting where it was sent (within two frames).
    heard = result.heard_ulaw
    greeting = b"".join(GREETING)
    start = heard.find(greeting)
    assert start > 0 and set(heard[:start]) == {SILENCE}
    delay_ms = start / 8 - log["greeting_ts_ms"]
    assert 0 <= delay_ms <= 60, delay_ms
    (first_in,) = [e for e in events(result, "media_in_first") if e["details"]["stream_sid"] == peer1.stream_sid]
    assert abs(start / 8000 - first_in["t"]) <= 0.045
    # The interrupted answer played ~300 ms, then nothing of it after the clear.
    h = np.frombuffer(heard, dtype=np.uint8)
    long_idx = np.flatnonzero(h == LONG_BYTE)
    assert 0.25 <= len(long_idx) / 8000 <= 0.40
    assert np.all(np.diff(long_idx) == 1), "the long answer played contiguously"
    reply_idx = np.flatnonzero(h == REPLY_BYTE)
    assert len(reply_idx) == 1600 and long_idx[-1] < reply_idx[0]
    assert len(np.flatnonzero(h == STREAM2_BYTE)) == 2400

    # Caller behaviour: answered after the agent was done + think time, verbatim in "sent".
    sent = result.sent_ulaw
    assert len(sent) == len(heard) and len(sent) % 160 == 0
    say_starts = {e["details"]["label"]: e["t"] for e in events(result, "say_start")}
    for label, audio in (("a1", answer1), ("a2", answer2)):
        i = round(say_starts[label] * 8000)
        assert sent[i : i + len(audio)] == audio
    reply_end = (reply_idx[-1] + 1) / 8000
    assert reply_end + 0.3 + 0.2 <= say_starts["a1"] <= reply_end + 0.3 + 0.2 + 0.1
    stream2_end = (np.flatnonzero(h == STREAM2_BYTE)[-1] + 1) / 8000
    assert stream2_end + 0.5 <= say_starts["a2"] <= stream2_end + 0.6
    # The caller's answer reached the bridge at the timestamps of the sent track.
    first_speech = peer1.inbound_speech()[0]
    assert abs(int(first_speech["media"]["timestamp"]) / 1000 - say_starts["a1"]) <= 0.02

    # Streams and events.
    assert [s["ended_by"] for s in result.streams] == ["bridge", "caller"]
    assert result.streams[0]["custom_parameters"] == {"caller": "founder", "n": "1"}
    st = events(result, "stream_start")
    assert st[0]["t"] == 0 and st[1]["t"] > result.streams[0]["t_end"] - 0.02
    kinds = [e["kind"] for e in result.events]
    for kind in ("webhook", "twiml", "media_in_first", "agent_audio_start", "agent_audio_end",
                 "mark_sent_back", "clear", "say_start", "say_end", "agent_done", "hangup", "stop_sent"):
        assert kind in kinds, kind
    ts = [e["t"] for e in result.events]
    assert ts == sorted(ts)

    # WAV: stereo PCM16 8 kHz, left = caller as sent, right = agent as heard.
    path = tmp_path / "call.wav"
    result.write_wav(path)
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        assert w.getnframes() == len(sent)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    left, right = pcm[:, 0], pcm[:, 1]
    assert np.array_equal(left, np.frombuffer(result.sent_pcm16(), dtype="<i2"))
    assert np.array_equal(right, np.frombuffer(result.heard_pcm16(), dtype="<i2"))
    i = round(say_starts["a1"] * 8000)
    assert np.abs(left[i : i + 3200]).max() > 5000 and np.abs(right[i : i + 3200]).max() == 0
    assert np.abs(right[start : start + 1000]).max() > 5000 and np.abs(left[start : start + 1000]).max() == 0


# --------------------------------------------------------------------------- barge-in, DTMF


def test_barge_in_starts_after_agent_audio_and_dtmf() -> None:
    log: dict[str, Any] = {}
    interruption = tone_ulaw(300, 300, 0.5)

    async def stream(peer: Peer) -> None:
        await peer.handshake()
        await peer.until(lambda: len(peer.of("media")) >= 3)
        await peer.media(bytes([0x25]) * 16000)  # 2 s of agent audio
        await peer.mark("answer")
        await peer.until(lambda: len(peer.inbound_speech()) >= 1)
        await peer.clear()  # what the bridge does on barge-in
        await peer.until(lambda: bool(peer.of("stop")), timeout=5)
        await peer.until(lambda: peer.closed)

    script = CallerScript([Say(interruption, barge_in_after_ms=400, label="interrupt"), Dtmf("7"), Hangup()])

    async def scenario() -> CallResult:
        webhooks: list[dict[str, Any]] = []
        async with serve([twiml_route("/twiml", connect_twiml("/s", {}), webhooks), stream_route("/s", stream, log)]) as port:
            return await CallerSimulator(
                f"{PUBLIC}/twiml", script, auth_token=TOKEN, url_rewrite=loopback_rewrite(f"http://127.0.0.1:{port}"), timeout=10
            ).run()

    result = asyncio.run(scenario())
    (peer,) = log["peers"]
    assert result.ended_by == "caller"
    (agent_start,) = events(result, "agent_audio_start")
    (say_start,) = events(result, "say_start")
    assert 0.4 <= say_start["t"] - agent_start["t"] <= 0.4 + 0.045
    # The clear cut the agent short: ~400 ms heard of 2 s, the pending mark flushed.
    heard_agent = result.heard_ulaw.count(bytes([0x25]))
    assert 0.38 * 8000 <= heard_agent <= 0.52 * 8000
    assert peer.marks() == ["answer"] and result.clears == 1
    # DTMF exactly as Twilio sends it, between the media frames, then stop.
    (dtmf,) = peer.of("dtmf")
    assert dtmf == {
        "event": "dtmf",
        "streamSid": peer.stream_sid,
        "sequenceNumber": dtmf["sequenceNumber"],
        "dtmf": {"track": "inbound_track", "digit": "7"},
    }
    check_inbound_protocol(peer, {}, result.call_sid)
    assert [e["details"]["digit"] for e in events(result, "dtmf")] == ["7"]
    assert peer.messages[-1][1]["event"] == "stop"


# --------------------------------------------------------------------------- replay verbatim, CLI


def recording(n: int) -> bytes:
    rng = np.random.default_rng(7)
    return rng.integers(0, 255, n, dtype=np.uint8).tobytes()  # never 0xFF: all of it is "speech"


def test_replay_is_verbatim_from_t0_and_cli(tmp_path: Any) -> None:
    audio = recording(6000 + 37)  # 0.755 s, not a whole number of frames
    audio_path = tmp_path / "caller.ulaw"
    audio_path.write_bytes(audio)
    log: dict[str, Any] = {}

    async def stream(peer: Peer) -> None:
        await peer.handshake()
        await peer.until(lambda: bool(peer.of("stop")), timeout=5)
        await peer.until(lambda: peer.closed)

    async def scenario() -> tuple[CallResult, int, list[str]]:
        webhooks: list[dict[str, Any]] = []
        routes = [twiml_route("/twiml", connect_twiml("/s", {"a": "b"}), webhooks), stream_route("/s", stream, log)]
        async with serve(routes) as port:
            result = await CallerSimulator(
                f"http://127.0.0.1:{port}/twiml", CallerScript.replay(audio), timeout=10,
                url_rewrite=loopback_rewrite(f"http://127.0.0.1:{port}"),
            ).run()
            # The command line, as documented (warnings are errors: no runpy double import).
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-W", "error", "-m", "telephony_bridge.testing.simulator",
                "--twiml-url", f"http://127.0.0.1:{port}/twiml", "--audio", str(audio_path),
                "--out", str(tmp_path / "cli.wav"), "--quiet",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 15)
            assert err == b"", err
            assert b"ended by caller" in out
            rc = proc.returncode
        assert all(w["signature_ok"] is False for w in webhooks)  # no token: unsigned
        return result, rc, log["ws_signatures"]

    result, rc, ws_signatures = asyncio.run(scenario())
    assert ws_signatures == [None, None]
    assert rc == 0
    for peer, run in zip(log["peers"], ("api", "cli")):
        media = peer.of("media")
        payload = b"".join(base64.b64decode(m["media"]["payload"]) for m in media)
        assert base64.b64decode(media[0]["media"]["payload"]) == audio[:160], run
        padded = audio + b"\xff" * (-len(audio) % 160)
        assert payload == padded, run  # verbatim, then hang up with no trailing frame
        assert peer.messages[-1][1]["event"] == "stop"
        check_inbound_protocol(peer, {"a": "b"}, peer.messages[1][1]["start"]["callSid"])
        arrivals = np.array([t for t, _ in peer.timed("media")])
        expected = arrivals[0] + 0.02 * np.arange(len(arrivals))
        # Paced from t0, never ahead of it (a burst would show here whatever the machine does);
        # late by a pause of this busy machine at worst, and a late frame does not delay the next.
        assert (arrivals - expected).min() > -0.01, run
        assert np.median(np.abs(arrivals - expected)) < 0.01, run
    assert result.ended_by == "caller"
    assert result.sent_ulaw[: len(audio)] == audio
    with wave.open(str(tmp_path / "cli.wav"), "rb") as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, 8000, len(padded))


# --------------------------------------------------------------------------- echo


def pcm(ulaw: bytes) -> np.ndarray:
    return np.frombuffer(ulaw_to_pcm16(ulaw), dtype="<i2").astype(np.float64)


def test_echo_of_what_the_caller_hears_is_mixed_into_what_it_sends() -> None:
    rng = np.random.default_rng(3)
    agent = pcm16_to_ulaw((rng.standard_normal(8000) * 3000).astype("<i2").tobytes())  # 1 s, white
    voice = tone_ulaw(300, 400, 0.2)
    log: dict[str, Any] = {}

    async def stream(peer: Peer) -> None:
        await peer.handshake()
        await peer.until(lambda: len(peer.of("media")) >= 3)
        await peer.media(agent)
        await peer.until(lambda: bool(peer.of("stop")), timeout=8)
        await peer.until(lambda: peer.closed)

    path = EchoPath(delay_ms=60, erl_db=12.0, taps=(1.0, 0.5, -0.25))
    # silence, then the caller talks over the agent, then stays on the line while the echo dies out
    script = CallerScript([Wait(500), Say(voice, after="now"), Wait(1200), Hangup()])

    async def scenario() -> CallResult:
        webhooks: list[dict[str, Any]] = []
        async with serve([twiml_route("/twiml", connect_twiml("/s", {}), webhooks), stream_route("/s", stream, log)]) as port:
            return await CallerSimulator(
                f"{PUBLIC}/twiml", script, auth_token=TOKEN, url_rewrite=loopback_rewrite(f"http://127.0.0.1:{port}"),
                timeout=10, echo=path,
            ).run()

    result = asyncio.run(scenario())
    (peer,) = log["peers"]
    # What went over the wire is the sent track: the caller's voice plus the echo.
    wire = b"".join(base64.b64decode(m["media"]["payload"]) for m in peer.of("media"))
    assert wire == result.sent_ulaw
    assert len(result.voice_ulaw) == len(result.sent_ulaw) == len(result.heard_ulaw)
    assert result.voice_ulaw.count(voice) == 1 and voice not in result.sent_ulaw  # the voice, echoed over
    # The agent's audio was played once, all of it, in one stretch.
    ((start, end),) = result.playback
    assert end - start == pytest.approx(1.0, abs=1e-6)
    assert result.heard_after(start + 0.75) == pytest.approx(0.25, abs=1e-6)
    assert result.origin is not None
    heard, sent, said = pcm(result.heard_ulaw), pcm(result.sent_ulaw), pcm(result.voice_ulaw)
    first_heard = int(np.flatnonzero(heard)[0])
    assert first_heard == round(start * 8000)
    # Nothing of it comes back before the delay...
    d = 480
    assert np.array_equal(sent[: first_heard + d], said[: first_heard + d])
    assert np.any(sent[first_heard + d : first_heard + d + 3] != said[first_heard + d : first_heard + d + 3])
    # ...and then exactly the filtered, attenuated, delayed copy (to within μ-law rounding).
    echo = np.convolve(heard, path.gain)[: len(heard)]
    echo = np.concatenate([np.zeros(d), echo])[: len(heard)]
    residual = sent - said - echo
    assert np.sqrt(np.mean(residual**2)) < 0.04 * np.sqrt(np.mean(echo[echo != 0] ** 2))
    # Echo return loss: 12 dB below what was heard (white noise through unit-power taps).
    erl = 10 * np.log10(np.sum(heard**2) / np.sum(echo**2))
    assert erl == pytest.approx(12.0, abs=0.5)
    measured = 10 * np.log10(np.sum(heard**2) / np.sum((sent - said) ** 2))
    assert measured == pytest.approx(12.0, abs=0.5)
    # The echo ends one delay (plus the filter) after the agent's audio does.
    tail = int(round(end * 8000)) + d + len(path.taps)
    assert np.array_equal(sent[tail:], said[tail:])


def test_echo_path_validation_and_cli_flags() -> None:
    assert np.sum(EchoPath(erl_db=0.0, taps=(3.0, 4.0)).gain ** 2) == pytest.approx(1.0)
    assert np.sum(EchoPath(erl_db=20.0).gain ** 2) == pytest.approx(0.01)
    for bad in ({"delay_ms": -1.0}, {"erl_db": 500.0}, {"taps": ()}, {"taps": (0.0, 0.0)}, {"taps": (float("nan"),)}):
        with pytest.raises(ValueError):
            EchoPath(**bad)  # type: ignore[arg-type]
    with pytest.raises(SystemExit):  # argparse: bad echo settings are a usage error, before any call
        main(["--twiml-url", "http://127.0.0.1:9/twiml", "--audio", "missing.ulaw", "--echo-erl-db", "500"])


# --------------------------------------------------------------------------- call endings


def test_twiml_hangup_ends_call_without_stream() -> None:
    async def scenario() -> tuple[CallResult, list[dict[str, Any]]]:
        webhooks: list[dict[str, Any]] = []
        body = "<Response><Say>Sorry, we cannot take your call.</Say><Hangup/></Response>"
        async with serve([twiml_route("/twiml", body, webhooks)]) as port:
            result = await CallerSimulator(
                f"{PUBLIC}/twiml", CallerScript([Say(tone_ulaw())]), auth_token=TOKEN,
                url_rewrite=loopback_rewrite(f"http://127.0.0.1:{port}", PUBLIC), timeout=5,
            ).run()
        return result, webhooks

    result, webhooks = asyncio.run(scenario())
    assert result.ended_by == "bridge"
    assert result.stream_sids == [] and result.sent_ulaw == b""
    assert webhooks[0]["signature_ok"]
    assert [e["details"]["text"] for e in events(result, "twiml_say")] == ["Sorry, we cannot take your call."]
    assert events(result, "twiml_hangup")


def test_bridge_close_without_action_continues_with_next_verb() -> None:
    log: dict[str, Any] = {}

    async def stream(peer: Peer) -> None:
        await peer.handshake()
        await peer.until(lambda: len(peer.of("media")) >= 10)
        await peer.ws.close()

    async def scenario() -> CallResult:
        webhooks: list[dict[str, Any]] = []
        body = connect_twiml("/s", {}, after="<Say>Goodbye</Say>")
        async with serve([twiml_route("/twiml", body, webhooks), stream_route("/s", stream, log)]) as port:
            result = await CallerSimulator(
                f"{PUBLIC}/twiml", CallerScript([Wait(5000)]), url_rewrite=loopback_rewrite(f"http://127.0.0.1:{port}"), timeout=5
            ).run()
        assert len(webhooks) == 1
        return result

    result = asyncio.run(scenario())
    assert result.ended_by == "bridge"
    assert len(result.stream_sids) == 1
    kinds = [e["kind"] for e in result.events]
    assert kinds.index("stream_end") < kinds.index("twiml_say")
    assert log["peers"][0].of("stop") == []


def test_timeout_hangs_up_and_silent_agent_does_not_block_say() -> None:
    log: dict[str, Any] = {}
    answer = tone_ulaw(440, 200)

    async def stream(peer: Peer) -> None:  # a bridge that never says anything
        await peer.handshake()
        await peer.until(lambda: peer.closed, timeout=5)

    script = CallerScript([Say(answer, think_ms=0, wait_timeout_ms=300, label="x"), Wait(10_000)])

    async def scenario() -> CallResult:
        async with serve([twiml_route("/twiml", connect_twiml("/s", {}), []), stream_route("/s", stream, log)]) as port:
            return await CallerSimulator(
                f"{PUBLIC}/twiml", script, url_rewrite=loopback_rewrite(f"http://127.0.0.1:{port}"), timeout=1.0
            ).run()

    result = asyncio.run(scenario())
    assert result.ended_by == "timeout"
    assert events(result, "agent_wait_timeout")
    (say_start,) = events(result, "say_start")
    assert 0.3 <= say_start["t"] <= 0.4
    peer = log["peers"][0]
    assert peer.of("stop") and peer.messages[-1][1]["event"] == "stop"
    (timed_out,) = events(result, "timeout")
    assert 0.5 <= timed_out["t"] <= 1.0  # the 1 s budget includes the webhook and the upgrade
    assert abs(result.duration - timed_out["t"]) <= 0.06
    assert result.heard_ulaw == b"\xff" * len(result.sent_ulaw)


def test_bad_messages_from_bridge_are_recorded_not_fatal() -> None:
    log: dict[str, Any] = {}

    async def stream(peer: Peer) -> None:
        await peer.handshake()
        await peer.ws.send_text("not json")
        await peer.ws.send_text(json.dumps({"event": "media", "streamSid": "MZwrong", "media": {"payload": "AAAA"}}))
        await peer.send({"event": "media", "media": {"payload": "!!!"}})
        await peer.send({"event": "mark", "mark": {}})
        await peer.send({"event": "bogus"})
        await peer.media(b"\x00" * 160)
        await peer.until(lambda: bool(peer.of("stop")), timeout=5)

    async def scenario() -> CallResult:
        async with serve([twiml_route("/twiml", connect_twiml("/s", {}), []), stream_route("/s", stream, log)]) as port:
            return await CallerSimulator(
                f"{PUBLIC}/twiml", CallerScript([Wait(300), Hangup()]),
                url_rewrite=loopback_rewrite(f"http://127.0.0.1:{port}"), timeout=5,
            ).run()

    result = asyncio.run(scenario())
    assert result.ended_by == "caller"
    assert len(result.protocol_errors) == 5
    assert dict(result.media_sizes_seen) == {160: 1}
    assert result.heard_ulaw.count(b"\x00") == 160


def test_wrong_token_upgrade_rejected_then_action_followed() -> None:
    """Signatures matter: with the wrong token the bridge rejects the upgrade (HTTP 403);
    Twilio then ends the <Connect> and requests its action URL."""
    log: dict[str, Any] = {}
    webhooks: list[dict[str, Any]] = []

    async def stream(peer: Peer) -> None:  # never reached
        await peer.handshake()

    async def scenario() -> CallResult:
        routes = [
            twiml_route("/twiml", connect_twiml("/s", {}, action="/after"), webhooks),
            twiml_route("/after", "<Response><Hangup/></Response>", webhooks),
            stream_route("/s", stream, log),
        ]
        async with serve(routes) as port:
            return await CallerSimulator(
                f"{PUBLIC}/twiml", CallerScript([Wait(2000)]), auth_token="not-the-token",
                url_rewrite=loopback_rewrite(f"http://127.0.0.1:{port}", PUBLIC), timeout=5,
            ).run()

    result = asyncio.run(scenario())
    assert [w["path"] for w in webhooks] == ["/twiml", "/after"]
    assert not any(w["signature_ok"] for w in webhooks)
    assert len(log["ws_signatures"]) == 1 and "peers" not in log
    (error,) = events(result, "stream_error")
    assert "403" in error["details"]["error"]
    assert result.ended_by == "bridge" and result.stream_sids == []


def test_unreachable_webhook_raises() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    sim = CallerSimulator(f"http://127.0.0.1:{port}/twiml", CallerScript([]), timeout=5)
    with pytest.raises(SimulatorError):
        asyncio.run(sim.run())


# --------------------------------------------------------------------------- pure parts


def test_founder_turns_script() -> None:
    turns = [b"\x01" * 800, b"\x02" * 800, b"\x03" * 800]
    plain = CallerScript.from_founder_turns(turns, think_ms=300)
    assert [type(s) for s in plain.steps] == [Say, Say, Say, WaitForAgent, Hangup]
    assert all(s.after == "agent_done" and s.barge_in_after_ms is None and s.think_ms == 300 for s in plain.steps[:3])
    assert [s.ulaw for s in plain.steps[:3]] == turns
    barged = CallerScript.from_founder_turns(turns, barge_in=True, barge_in_after_ms=900)
    assert [s.barge_in_after_ms for s in barged.steps[:3]] == [None, 900, None]
    assert CallerScript.from_founder_turns(turns, barge_in_turn=2).steps[2].barge_in_after_ms == 1200
    with pytest.raises(ValueError):
        CallerScript.from_founder_turns(turns, barge_in_turn=3)
    with pytest.raises(ValueError):
        Dtmf("x")
    with pytest.raises(ValueError):
        Say(b"", after="later")  # type: ignore[arg-type]
    replay = CallerScript.replay(b"\x00" * 10, tail_ms=500)
    assert replay.steps == [Say(b"\x00" * 10, after="now", think_ms=0, label="replay"), Wait(500), Hangup()]


def test_loopback_rewrite() -> None:
    r = loopback_rewrite("http://127.0.0.1:8080", "https://bridge.example")
    assert r("wss://bridge.example/twilio/stream") == "ws://127.0.0.1:8080/twilio/stream"
    assert r("https://bridge.example/twiml?x=1") == "http://127.0.0.1:8080/twiml?x=1"
    assert r("https://elsewhere.example/twiml") == "https://elsewhere.example/twiml"
    assert loopback_rewrite("http://127.0.0.1:1")("wss://any.host/s") == "ws://127.0.0.1:1/s"


def test_ulaw_codec_and_stereo_wav(tmp_path: Any) -> None:
    assert ulaw_to_pcm16(b"\xff\x7f") == b"\x00\x00\x00\x00"
    assert ulaw_to_pcm16(b"\x00") == (-32124).to_bytes(2, "little", signed=True)
    assert ulaw_to_pcm16(b"\x80") == (32124).to_bytes(2, "little", signed=True)
    assert pcm16_to_ulaw(b"\x00\x00") == b"\xff"
    all_codes = bytes(range(256))
    # Every code survives decode -> encode except the duplicate zero (0x7F decodes to 0 -> 0xFF).
    back = pcm16_to_ulaw(ulaw_to_pcm16(all_codes))
    assert [i for i in range(256) if back[i] != i] == [0x7F]
    assert silence_ulaw(20) == b"\xff" * 160
    tone = tone_ulaw(1000, 100, 0.5)
    pcm = np.frombuffer(ulaw_to_pcm16(tone), dtype="<i2")
    assert len(tone) == 800 and 0.45 * 32767 < np.abs(pcm).max() < 0.55 * 32767
    path = tmp_path / "t.wav"
    write_stereo_wav(path, tone, b"\x80" * 10)
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (2, 2, 8000, 800)
        frames = np.frombuffer(w.readframes(800), dtype="<i2").reshape(-1, 2)
    assert np.array_equal(frames[:, 0], pcm)
    assert np.all(frames[:10, 1] == 32124) and np.all(frames[10:, 1] == 0)
    mono = tmp_path / "mono16k.wav"
    with wave.open(str(mono), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.repeat(pcm, 2).astype("<i2").tobytes())
    loaded = load_ulaw(mono)  # a WAV is converted to 8 kHz μ-law
    assert abs(len(loaded) - len(tone)) <= 2
    raw = tmp_path / "x.ulaw"
    raw.write_bytes(tone)
    assert load_ulaw(raw) == tone  # anything else is raw μ-law


def test_a_starved_simulator_plays_what_the_bridge_sent_meanwhile_without_a_hole() -> None:
    """The simulator's process is starved for 300 ms (a busy machine) while a bridge in another
    thread goes on sending in real time with a 160 ms lead, as the real one does. Twilio would
    have had every frame in time; the simulator, catching up its missed ticks, must take what
    arrived before it plays them, not play holes only it heard."""
    import threading
    import time

    agent = tone_ulaw(440, 2000, 2.0)  # 100 frames
    frames = [agent[i:i + 160] for i in range(0, len(agent), 160)]
    started = threading.Event()
    port_box: list[int] = []
    stop = threading.Event()
    log: dict[str, Any] = {}

    async def stream(peer: Peer) -> None:
        await peer.handshake()
        t0 = peer.loop.time()
        for k, frame in enumerate(frames):  # frame k leaves 160 ms before it is due to play
            delay = t0 + k * 0.02 - 0.16 - peer.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await peer.media(frame)
        await peer.until(lambda: bool(peer.of("stop")), timeout=10)

    def bridge_thread() -> None:
        async def main() -> None:
            async with serve([twiml_route("/twiml", connect_twiml("/s", {}), []), stream_route("/s", stream, log)]) as port:
                port_box.append(port)
                started.set()
                while not stop.is_set():
                    await asyncio.sleep(0.05)
        asyncio.run(main())

    thread = threading.Thread(target=bridge_thread, daemon=True)
    thread.start()
    assert started.wait(10)

    async def scenario() -> CallResult:
        asyncio.get_running_loop().call_later(0.8, time.sleep, 0.3)  # the starved 300 ms
        return await CallerSimulator(
            f"{PUBLIC}/twiml", CallerScript([Wait(3000), Hangup()]), auth_token=TOKEN,
            url_rewrite=loopback_rewrite(f"http://127.0.0.1:{port_box[0]}"), timeout=10,
        ).run()

    try:
        result = asyncio.run(scenario())
    finally:
        stop.set()
        thread.join(10)
    # Played once, all of it, in one stretch: no hole where the simulator was starved.
    ((start, end),) = result.playback
    assert end - start == pytest.approx(2.0, abs=1e-6)
    heard = result.heard_ulaw
    first = round(start * 8000)
    assert heard[first:first + len(agent)] == agent
