"""What the emulator records, for tests to check: one :class:`EmulatorSession` per connection,
with its caller turns, model replies and the :class:`Conversation` a resumption handle restores.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

from .vad import DEFAULT_PREFIX_PADDING_MS, DEFAULT_SILENCE_DURATION_MS


@dataclass
class CallerTurn:
    """A caller turn found by the VAD (or marked by activityStart/activityEnd).

    ``start``/``end``/``committed`` are seconds since the connection opened: the arrival time of
    the audio chunk that carried that instant (so a client streaming in real time gets its own
    timeline back, within one chunk); ``audio_start``/``audio_end`` are seconds
    into the audio received on this connection. ``end`` is the end of speech; ``committed`` is
    when the turn was declared over (``end`` + silenceDurationMs, or ``audioStreamEnd``).
    """

    number: int
    start: float
    end: float
    committed: float
    audio_start: float
    audio_end: float
    peak_rms: float
    source: Literal["vad", "audio_stream_end", "manual"] = "vad"
    barged_in: bool = False

    @property
    def duration(self) -> float:
        return self.audio_end - self.audio_start


@dataclass
class ReplyRecord:
    """One model turn: what was said, when, and whether it was cut short."""

    kind: Literal["greeting", "reply", "tool", "result", "filler"]
    clip: str | None = None
    triggered_at: float = 0.0
    first_audio_at: float | None = None
    done_at: float | None = None
    chunks_sent: int = 0
    audio_seconds_sent: float = 0.0
    interrupted: bool = False
    tool_call_id: str | None = None


@dataclass
class Conversation:
    """What the model remembers; a resumption handle restores a snapshot of it."""

    id: int
    greeted: bool = False
    replies_given: int = 0
    caller_turns: int = 0
    #: Caller turns in history the client restored (a hand-off's or a stale handle's seed): the
    #: caller's next words are the call's next, whatever this connection counts.
    caller_turns_restored: int = 0
    tool_steps_done: list[int] = field(default_factory=list)
    history: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class EmulatorSession:
    """Everything recorded about one websocket connection."""

    index: int
    path: str = ""
    setup: dict[str, Any] = field(default_factory=dict)  # normalised to lowerCamelCase
    raw_setup: dict[str, Any] = field(default_factory=dict)  # as received
    model: str | None = None
    #: The setup's prebuilt voiceName (a panel call has one per interviewer).
    voice: str | None = None
    #: The profile family the model was taken as (``profiles.lookup``), once setup has named it.
    profile: str | None = None
    api_version: str = "v1beta"
    backend: Literal["gemini-api", "vertex"] = "gemini-api"
    #: What the client proved itself with at the upgrade: "api_key", "bearer", or None.
    auth: Literal["api_key", "bearer"] | None = None
    #: The ``x-goog-user-project`` header, when the client sent one.
    quota_project: str | None = None
    resumed_from: str | None = None
    conversation: Conversation | None = None
    silence_duration_ms: int = DEFAULT_SILENCE_DURATION_MS
    prefix_padding_ms: int = DEFAULT_PREFIX_PADDING_MS
    turns: list[CallerTurn] = field(default_factory=list)
    audio_in_bytes: int = 0
    audio_in_seconds: float = 0.0
    audio_in_chunks: int = 0
    audio_in_rates: set[int] = field(default_factory=set)
    audio_stream_ends: int = 0
    replies: list[ReplyRecord] = field(default_factory=list)
    replies_started: int = 0
    replies_completed: int = 0
    interruptions: int = 0
    audio_out_seconds: float = 0.0
    client_content: list[dict[str, Any]] = field(default_factory=list)
    realtime_text: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_responses: list[dict[str, Any]] = field(default_factory=list)
    tool_cancellations: list[str] = field(default_factory=list)
    #: Non-blocking calls answered: ``{"id", "name", "scheduling", "at"}`` (scheduling None where
    #: the model ignores it), in the order the answers arrived.
    async_results: list[dict[str, Any]] = field(default_factory=list)
    #: Ids of ``toolResponse`` entries that answered no running call (a cancelled one, say).
    ignored_tool_responses: list[str] = field(default_factory=list)
    handles_issued: list[str] = field(default_factory=list)
    faults_fired: list[str] = field(default_factory=list)
    reply_attempts: int = 0  # replies begun (stalled ones included), for the stall faults
    stalled_attempts: list[int] = field(default_factory=list)
    events: list[tuple[float, str, Any]] = field(default_factory=list)
    closed_code: int | None = None
    closed_reason: str | None = None
    closed_by: Literal["server", "client", "drop"] | None = None
    started_at: float = 0.0  # loop.time() when the connection opened
    _closed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._closed.wait(), timeout)

    def record(self, now: float, name: str, detail: Any = None) -> None:
        self.events.append((round(now - self.started_at, 4), name, detail))
