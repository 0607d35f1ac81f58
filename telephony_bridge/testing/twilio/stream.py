"""One Media Stream (:class:`_Stream`): open, ``connected``/``start``, receive, ``stop``.

Text JSON frames exactly as Twilio sends them: ``connected``, ``start``, then one ``media``
frame of 160 μ-law bytes every 20 ms for as long as the line is up (the 20 ms clock is in
:mod:`.playback`), ``dtmf`` when scripted (:mod:`.script`), ``stop`` when the caller hangs up.
``sequenceNumber``, ``chunk`` and ``timestamp`` are strings. Frames from the bridge are parsed
here: anything that is not a JSON object for this ``streamSid`` with a known ``event`` is a
protocol error (recorded, never fatal); ``media``, ``mark`` and ``clear`` go to the playback
buffer. :class:`_MediaStream` is a mixin of :class:`~.caller.CallerSimulator`, whose state it
uses.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import secrets
from collections import deque
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from ..wav import FRAME_BYTES, SAMPLE_RATE, ULAW_SILENCE

FRAME_S = FRAME_BYTES / SAMPLE_RATE  # 0.020 s
_SILENCE_FRAME = bytes([ULAW_SILENCE]) * FRAME_BYTES


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


class _Stream:
    """One Media Streams websocket and Twilio's per-stream playback state."""

    def __init__(self, ws: ClientConnection, stream_sid: str, url: str, params: dict[str, str]) -> None:
        self.ws = ws
        self.stream_sid = stream_sid
        self.url = url
        self.custom_parameters = params
        self.seq = 0
        self.t0 = 0.0  # loop time of frame 0
        self.base_frame = 0  # index of frame 0 on the call clock
        self.frames_out = 0
        self.playback = bytearray()
        self.enqueued = 0  # bytes ever queued for playback (mark positions live here)
        self.played = 0  # bytes taken out of the buffer for playback
        self.completed = 0  # bytes whose playback has finished
        self.pending_marks: deque[tuple[int, str]] = deque()
        self.media_in = 0
        self.marks_returned = 0
        self.clears = 0

    def next_seq(self) -> str:
        self.seq += 1
        return str(self.seq)

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(msg, separators=(",", ":")))


class _MediaStream:
    """Media Streams websockets (a mixin of :class:`~.caller.CallerSimulator`)."""

    async def _run_stream(self, url: str, params: dict[str, str]) -> str:
        """Run one Media Stream; return who ended it: ``"caller"`` or ``"bridge"``."""
        if self._hangup.is_set():
            return "caller"
        headers = {}
        if self._validator is not None:
            # The upgrade is signed over the URL exactly as written in the TwiML, no params.
            headers["X-Twilio-Signature"] = self._validator.compute_signature(url, {})
        target = self.url_rewrite(url)
        try:
            ws = await ws_connect(
                target,
                additional_headers=headers,
                user_agent_header="Twilio.TmeWs/1.0",
                compression=None,
                proxy=None,
                open_timeout=10,
                close_timeout=2,
                ping_interval=None,
                max_size=None,
            )
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            self._emit("stream_error", url=url, error=repr(exc))
            return "bridge"

        s = _Stream(ws, _sid("MZ"), url, params)
        self._stream_sids.append(s.stream_sid)
        outcome = "timeout"
        tasks: list[asyncio.Task[Any]] = []
        try:
            if not await self._open_stream(s):
                outcome = "bridge"
                return outcome

            if self._script_task is None:
                # Created before the clock so that a Say(after="now") is queued for frame 0.
                self._script_task = asyncio.create_task(self._run_script(), name="caller-script")
            clock = asyncio.create_task(self._clock(s), name="twilio-clock")
            recv = asyncio.create_task(self._receive(s), name="twilio-receive")
            hang = asyncio.create_task(self._hangup.wait(), name="caller-hangup")
            tasks = [clock, recv, hang]
            script: asyncio.Task[None] | None = self._script_task
            while True:
                waiting: set[asyncio.Task[Any]] = {clock, recv, hang}
                if script is not None and not script.done():
                    waiting.add(script)
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if script is not None and script in done:
                    script.result()  # a failing script fails the run
                    script = None
                if hang in done:
                    outcome = "caller"
                    break
                if recv in done or clock in done:
                    for task in (recv, clock):
                        if task.done() and not task.cancelled():
                            task.result()  # re-raise unexpected errors
                    outcome = "bridge"
                    break
        finally:
            self._stream_up.clear()
            self._stream = None
            for task in tasks:
                task.cancel()
            for task in tasks:
                try:
                    await task
                except (asyncio.CancelledError, ConnectionClosed):
                    pass
            if outcome != "bridge":
                await self._send_stop(s)
            else:
                await ws.close()
            self._end_stream(s, outcome)
        return outcome

    async def _open_stream(self, s: _Stream) -> bool:
        """Send ``connected`` and ``start``; False if the bridge has already closed."""
        try:
            await s.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            await s.send(
                {
                    "event": "start",
                    "sequenceNumber": s.next_seq(),
                    "start": {
                        "accountSid": self.account_sid,
                        "streamSid": s.stream_sid,
                        "callSid": self.call_sid,
                        "tracks": ["inbound"],
                        "customParameters": dict(s.custom_parameters),
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": SAMPLE_RATE, "channels": 1},
                    },
                    "streamSid": s.stream_sid,
                }
            )
        except ConnectionClosed:
            self._emit("stream_error", url=s.url, error="closed by the bridge before start")
            return False
        self._begin_stream(s)
        return True

    def _begin_stream(self, s: _Stream) -> None:
        s.t0 = self._loop.time()
        if self._origin is None:
            self._origin = s.t0
            for event, at in self._unplaced:
                event["t"] = round(at - s.t0, 4)
            self._unplaced.clear()
        # Both tracks continue on the call clock: pad the gap since the last stream.
        base = max(int(round((s.t0 - self._origin) / FRAME_S)), len(self._sent) // FRAME_BYTES)
        pad = base * FRAME_BYTES - len(self._sent)
        self._sent += _SILENCE_FRAME[:1] * pad
        self._voice += _SILENCE_FRAME[:1] * pad
        self._heard += _SILENCE_FRAME[:1] * pad
        if self._echo is not None:
            self._echo.reset()  # the line was down in between
        s.t0 = self._origin + base * FRAME_S if base else s.t0
        s.base_frame = base
        # A reply heard to its end before the stream changed stays heard (a drain handover between
        # turns: the caller answers it); one cut mid-way is not the agent's answer.
        self._agent_spoke = self._agent_spoke and not self._agent_playing
        self._agent_playing = False
        self._stream = s
        self._stream_up.set()
        self._emit(
            "stream_start",
            t=base * FRAME_S,
            stream_sid=s.stream_sid,
            url=s.url,
            custom_parameters=dict(s.custom_parameters),
        )
        self._notify()

    def _end_stream(self, s: _Stream, outcome: str) -> None:
        if self._agent_playing:
            self._agent_playing = False
            self._emit("agent_audio_end", t=self._last_play_end_t, stream_sid=s.stream_sid)
        u = self._utterance
        if u is not None and outcome == "bridge":
            # A person does not stop mid-sentence because the bridge dropped: what they say in
            # the gap is lost, the rest goes on the next stream (if Twilio opens one).
            u.paused_at = self._loop.time()
            self._emit("say_paused", label=u.label, sent_bytes=u.pos, total_bytes=len(u.data))
        elif u is not None:
            self._utterance = None
            self._emit(
                "say_end", label=u.label, truncated=True, sent_bytes=u.pos, total_bytes=len(u.data)
            )
            if not u.done.done():
                u.done.set_result(False)
        dropped_marks = [name for _, name in s.pending_marks]
        record = {
            "stream_sid": s.stream_sid,
            "url": s.url,
            "custom_parameters": dict(s.custom_parameters),
            "t_start": round(s.base_frame * FRAME_S, 4),
            "t_end": self._now_t(),
            "ended_by": outcome,
            "media_out": s.frames_out,
            "media_in": s.media_in,
            "marks_returned": s.marks_returned,
            "clears": s.clears,
            "unplayed_bytes": len(s.playback),
            "marks_dropped": dropped_marks,
            "close_code": s.ws.close_code,
            "close_reason": s.ws.close_reason,
        }
        self._streams.append(record)
        self._emit("stream_end", **record)
        self._notify()

    async def _send_stop(self, s: _Stream) -> None:
        try:
            await s.send(
                {
                    "event": "stop",
                    "sequenceNumber": s.next_seq(),
                    "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
                    "streamSid": s.stream_sid,
                }
            )
            self._emit("stop_sent", stream_sid=s.stream_sid)
        except ConnectionClosed:
            pass
        await s.ws.close()

    async def _receive(self, s: _Stream) -> None:
        try:
            async for raw in s.ws:
                for msg in self._on_message(s, raw):
                    await s.send(msg)
                self._notify()
        except ConnectionClosed:
            pass

    def _on_message(self, s: _Stream, raw: str | bytes) -> list[dict[str, Any]]:
        if isinstance(raw, bytes):
            self._protocol_error(f"binary frame of {len(raw)} bytes (Twilio expects JSON text)")
            return []
        try:
            msg = json.loads(raw)
        except ValueError:
            self._protocol_error(f"not JSON: {raw[:100]!r}")
            return []
        if not isinstance(msg, dict):
            self._protocol_error(f"not a JSON object: {raw[:100]!r}")
            return []
        event = msg.get("event")
        if msg.get("streamSid") != s.stream_sid:
            self._protocol_error(f"{event!r} with streamSid {msg.get('streamSid')!r}, expected {s.stream_sid!r}")
            return []
        if event == "media":
            media = msg.get("media")
            payload = media.get("payload") if isinstance(media, dict) else None
            if not isinstance(payload, str):
                self._protocol_error("media without media.payload")
                return []
            try:
                data = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                self._protocol_error("media.payload is not valid base64")
                return []
            return self._play(s, data)
        if event == "mark":
            mark = msg.get("mark")
            name = mark.get("name") if isinstance(mark, dict) else None
            if not isinstance(name, str):
                self._protocol_error("mark without mark.name")
                return []
            return self._mark(s, name)
        if event == "clear":
            return self._clear(s)
        self._protocol_error(f"unknown event {event!r}")
        return []
