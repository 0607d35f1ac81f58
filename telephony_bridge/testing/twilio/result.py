"""What a call left behind (:class:`CallResult`): both tracks, the events, the figures.

Both tracks (*sent* and *heard*) sit on one 8 kHz sample clock whose origin is the start of the
first stream; :meth:`CallResult.write_wav` writes them as a stereo WAV (left = caller as sent,
right = agent as heard). Every observation lands in ``CallResult.events`` as
``{"t": seconds since stream start, "kind": ..., "details": {...}}``.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..wav import SAMPLE_RATE, ulaw_to_pcm16, write_stereo_wav


@dataclass
class CallResult:
    """Everything observed on one call. Tracks are 8 kHz μ-law on one clock starting at the
    first stream's start; ``events`` are sorted by ``t`` (seconds on that clock)."""

    call_sid: str
    stream_sids: list[str]
    sent_ulaw: bytes
    heard_ulaw: bytes
    events: list[dict[str, Any]]
    marks_returned: int
    clears: int
    media_sizes_seen: Counter[int]
    twiml: list[str]
    ended_by: str
    streams: list[dict[str, Any]] = field(default_factory=list)
    protocol_errors: list[str] = field(default_factory=list)
    #: ``(t, bytes)`` for every ``media`` message from the bridge, in arrival order.
    media_received: list[tuple[float, int]] = field(default_factory=list)
    #: The caller's own voice on the call clock: ``sent_ulaw`` without the echo (equal to it
    #: when the simulator has no :class:`EchoPath`).
    voice_ulaw: bytes = b""
    #: ``loop.time()`` at t = 0 of the call clock (None if no stream ever started): lines the
    #: tracks up with timestamps taken elsewhere in the process (the emulator, the bridge).
    origin: float | None = None
    #: ``(start, end)`` on the call clock of each stretch of agent audio actually played.
    playback: list[tuple[float, float]] = field(default_factory=list)

    @property
    def duration(self) -> float:
        """Seconds of audio on the call clock."""
        return len(self.sent_ulaw) / SAMPLE_RATE

    def sent_pcm16(self) -> bytes:
        """The caller track as sent, 16-bit little-endian PCM at 8 kHz."""
        return ulaw_to_pcm16(self.sent_ulaw)

    def heard_after(self, t: float, until: float | None = None) -> float:
        """Seconds of agent audio played between ``t`` and ``until`` (call clock)."""
        end = float("inf") if until is None else until
        return sum(max(0.0, min(b, end) - max(a, t)) for a, b in self.playback)

    def heard_pcm16(self) -> bytes:
        """The agent track as heard (silence where nothing played), 16-bit PCM at 8 kHz."""
        return ulaw_to_pcm16(self.heard_ulaw)

    def write_wav(self, path: str | os.PathLike[str]) -> None:
        """Stereo PCM16 8 kHz WAV: left = caller as sent, right = agent as heard."""
        write_stereo_wav(path, self.sent_ulaw, self.heard_ulaw)

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]
