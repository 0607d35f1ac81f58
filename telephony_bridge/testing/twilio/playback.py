"""The 20 ms clock of a stream and the playback buffer: what the caller sends and hears.

Frames are paced on ``loop.time()``: frame *k* leaves at ``t0 + k * 20 ms`` (no drift from
cumulative sleeps); each tick sends one caller frame (the script's voice, μ-law silence between
utterances: a phone streams continuously, plus the echo when there is one) and plays one frame.
``media`` from the bridge (any size) goes into a playback buffer that drains at 8000 bytes/s on
the same clock into the *heard* track. A ``mark`` is echoed once the audio queued before it has
finished playing (immediately if nothing is queued); ``clear`` drops every unplayed byte and
echoes every pending mark at once (meaning "flushed", not "played"). :class:`_Playback` is a
mixin of :class:`~.caller.CallerSimulator`, whose state it uses.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from websockets.exceptions import ConnectionClosed

from ..wav import FRAME_BYTES, SAMPLE_RATE
from .stream import _SILENCE_FRAME, FRAME_S, _Stream

#: Playback must stay empty this long (and no media arrive) before ``agent_audio_end``.
AGENT_GAP_S = 0.2


class _Playback:
    """The line clock and the jitter buffer (a mixin of :class:`~.caller.CallerSimulator`)."""

    async def _clock(self, s: _Stream) -> None:
        k = 0
        try:
            while True:
                delay = s.t0 + k * FRAME_S - self._loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                for msg in self._tick(s, k):
                    await s.send(msg)
                k += 1
        except ConnectionClosed:
            return  # the bridge closed the websocket

    def _tick(self, s: _Stream, k: int) -> list[dict[str, Any]]:
        """Frame ``k`` of stream ``s``: one caller frame out, one frame of playback."""
        out: list[dict[str, Any]] = []
        t = (s.base_frame + k) * FRAME_S
        wall = s.t0 + k * FRAME_S

        # Caller -> bridge.
        frame = self._caller_frame(t)
        # What plays this tick (taken from the buffer below, after the marks): with an echo path,
        # the caller's microphone picks it up along with everything heard before.
        n = min(FRAME_BYTES, len(s.playback))
        heard = bytes(s.playback[:n]) + _SILENCE_FRAME[n:] if n else _SILENCE_FRAME
        self._voice += frame
        if self._echo is not None:
            frame = self._echo.mix(frame, heard)
        self._sent += frame
        out.append(
            {
                "event": "media",
                "sequenceNumber": s.next_seq(),
                "media": {
                    "track": "inbound",
                    "chunk": str(k + 1),
                    "timestamp": str(k * 20),
                    "payload": base64.b64encode(frame).decode("ascii"),
                },
                "streamSid": s.stream_sid,
            }
        )
        s.frames_out += 1

        # Playback: everything taken before this tick has finished playing by now.
        s.completed = s.played
        out.extend(self._release_marks(s, t))
        if n:
            del s.playback[:n]
            s.played += n
            self._heard += heard
            spans = self._playback
            if spans and abs(spans[-1][1] - t) < 1e-6:
                spans[-1][1] = t + n / SAMPLE_RATE
            else:
                spans.append([t, t + n / SAMPLE_RATE])
            self._last_play_end = wall + n / SAMPLE_RATE
            self._last_play_end_t = t + n / SAMPLE_RATE
            if not self._agent_playing:
                self._agent_playing = True
                self._emit("agent_audio_start", t=t, stream_sid=s.stream_sid)
            if not self._agent_spoke:
                self._agent_spoke = True
                self._agent_spoke_at = wall
        else:
            self._heard += _SILENCE_FRAME
            if (
                self._agent_playing
                and wall - self._last_play_end >= AGENT_GAP_S
                and wall - self._last_media_rx >= AGENT_GAP_S
            ):
                self._agent_playing = False
                self._emit("agent_audio_end", t=self._last_play_end_t, stream_sid=s.stream_sid)
        self._notify()
        return out

    def _release_marks(self, s: _Stream, t: float | None = None, *, flushed: bool = False) -> list[dict[str, Any]]:
        out = []
        while s.pending_marks and (flushed or s.pending_marks[0][0] <= s.completed):
            _, name = s.pending_marks.popleft()
            out.append(
                {
                    "event": "mark",
                    "sequenceNumber": s.next_seq(),
                    "streamSid": s.stream_sid,
                    "mark": {"name": name},
                }
            )
            s.marks_returned += 1
            self._marks_returned += 1
            self._emit("mark_sent_back", t=t, name=name, flushed=flushed, stream_sid=s.stream_sid)
        return out

    # ------------------------------------------------------------------ bridge -> playback

    def _play(self, s: _Stream, data: bytes) -> list[dict[str, Any]]:
        """``media``: queue ``data`` (already decoded) behind what is waiting to play."""
        self._sizes[len(data)] += 1
        self._media_received.append((self._now_t() or 0.0, len(data)))
        if s.media_in == 0:
            self._emit("media_in_first", stream_sid=s.stream_sid, bytes=len(data))
        s.media_in += 1
        s.playback += data
        s.enqueued += len(data)
        self._last_media_rx = self._loop.time()
        return []

    def _mark(self, s: _Stream, name: str) -> list[dict[str, Any]]:
        """``mark``: echoed once what was queued before it has played (now, if nothing is)."""
        s.pending_marks.append((s.enqueued, name))
        self._emit("mark_received", name=name, queued_bytes=len(s.playback), stream_sid=s.stream_sid)
        return self._release_marks(s)

    def _clear(self, s: _Stream) -> list[dict[str, Any]]:
        """``clear``: drop what has not played; echo every pending mark now (flushed)."""
        dropped = len(s.playback)
        s.playback.clear()
        s.enqueued = s.played
        s.clears += 1
        self._clears += 1
        self._agent_spoke = False  # interrupted speech is not the agent's answer
        self._emit("clear", dropped_bytes=dropped, pending_marks=[n for _, n in s.pending_marks])
        return self._release_marks(s, flushed=True)
