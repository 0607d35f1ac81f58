"""A Twilio caller simulator: Twilio and a human caller, as the bridge sees them on the wire.

It places a "call" the way Twilio does and then behaves like a phone:

1. **Webhook.** ``POST`` the TwiML URL with Twilio's form fields (``CallSid``,
   ``AccountSid``, ``From``, ``To``, ``CallStatus``, ``Direction``, ``ApiVersion``),
   signed with ``X-Twilio-Signature`` when an auth token is given.
2. **TwiML.** Execute the returned ``<Response>``: ``<Connect><Stream>`` opens a Media
   Stream; ``<Say>``/``<Pause>`` are recorded (no time passes); ``<Hangup/>`` and
   ``<Reject/>`` end the call; ``<Redirect>`` fetches the next document; the end of the
   document ends the call. When a stream ends because the *bridge* closed the websocket,
   ``<Connect action="...">`` is requested (same call, same fields, signed) and its TwiML
   is executed; without an action Twilio moves on to the next verb.
3. **Media Stream.** Text JSON frames exactly as Twilio sends them: ``connected``,
   ``start``, then one ``media`` frame of 160 μ-law bytes every 20 ms for as long as the
   line is up (μ-law silence between utterances: a phone streams continuously), ``dtmf``
   when scripted, ``stop`` when the caller hangs up. ``sequenceNumber``, ``chunk`` and
   ``timestamp`` are strings. Frames are paced on ``loop.time()``: frame *k* leaves at
   ``t0 + k * 20 ms`` (no drift from cumulative sleeps).
4. **Playback.** ``media`` from the bridge (any size) goes into a playback buffer that
   drains at 8000 bytes/s on the same 20 ms clock into the *heard* track. A ``mark`` is
   echoed once the audio queued before it has finished playing (immediately if nothing is
   queued); ``clear`` drops every unplayed byte and echoes every pending mark at once
   (meaning "flushed", not "played").

5. **Echo** (optional, :class:`EchoPath`): what the caller hears comes back in what it sends,
   delayed, filtered and attenuated, as from a phone on speaker. ``voice_ulaw`` keeps the caller's
   own voice alone.

Both tracks (*sent* and *heard*) sit on one 8 kHz sample clock whose origin is the start of
the first stream; :meth:`CallResult.write_wav` writes them as a stereo WAV (left = caller as
sent, right = agent as heard). Every observation lands in ``CallResult.events`` as
``{"t": seconds since stream start, "kind": ..., "details": {...}}``.

The caller is scripted with :class:`CallerScript` (``Say``, ``WaitForAgent``, ``Wait``,
``Dtmf``, ``Hangup``). Run from the shell to replay a recording verbatim::

    python -m telephony_bridge.testing.simulator --twiml-url http://127.0.0.1:8080/twiml \\
        --audio caller.ulaw --out call.wav

Because tests and demos run on plain loopback, ``url_rewrite`` maps every URL taken from
TwiML (and the TwiML URL itself) to where the request is actually sent; signatures are always
computed over the URL as written (what Twilio would request), never the rewritten one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import os
import secrets
import sys
import urllib.parse
import xml.etree.ElementTree as ET
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import httpx
import numpy as np
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from .wav import FRAME_BYTES, SAMPLE_RATE, ULAW_SILENCE, load_ulaw, pcm16_to_ulaw, ulaw_to_pcm16, write_stereo_wav

__all__ = [
    "CallResult",
    "CallerScript",
    "CallerSimulator",
    "Dtmf",
    "EchoPath",
    "Hangup",
    "Say",
    "SimulatorError",
    "Wait",
    "WaitForAgent",
    "loopback_rewrite",
    "main",
]

FRAME_S = FRAME_BYTES / SAMPLE_RATE  # 0.020 s
_SILENCE_FRAME = bytes([ULAW_SILENCE]) * FRAME_BYTES
#: Playback must stay empty this long (and no media arrive) before ``agent_audio_end``.
AGENT_GAP_S = 0.2
_DTMF_DIGITS = frozenset("0123456789*#ABCD")


class SimulatorError(Exception):
    """The simulator could not place the call at all (for example, nothing listens on the URL)."""


# --------------------------------------------------------------------------- echo


@dataclass(frozen=True)
class EchoPath:
    """Echo of what the caller hears, added to what the caller sends: a phone on speaker, or a
    handset that leaks its earpiece into its microphone.

    Every sample heard comes back ``delay_ms`` later (handset, room and the carrier's buffering;
    the bridge's network legs come on top of it in real life), filtered by ``taps`` (a short FIR
    at 8 kHz: the room or handset response) and ``erl_db`` quieter (echo return loss). The taps
    are scaled to unit power gain (sum of squares 1), so ``erl_db`` is exact for white noise; the
    default taps are a low-pass that passes the agent's speech 3.7 dB louder (12 dB here is about
    8.3 dB of echo return loss for speech). The echo is mixed into every frame the caller sends:
    on top of the caller's own speech, or alone while the caller is silent (the sum is re-encoded
    as μ-law, saturating at full scale). ``CallResult.voice_ulaw`` keeps the caller's own voice.
    """

    delay_ms: float = 120.0
    erl_db: float = 12.0
    taps: tuple[float, ...] = (0.5, 0.7, 0.4, 0.15, -0.1, -0.15, -0.05)

    def __post_init__(self) -> None:
        if not (self.delay_ms >= 0 and self.delay_ms <= 2000):
            raise ValueError(f"EchoPath.delay_ms must be 0-2000, not {self.delay_ms!r}")
        if not (-20 <= self.erl_db <= 120):
            raise ValueError(f"EchoPath.erl_db must be -20..120 dB, not {self.erl_db!r}")
        taps = tuple(float(t) for t in self.taps)
        if not taps or len(taps) > 1024 or not all(np.isfinite(taps)) or not any(taps):
            raise ValueError("EchoPath.taps must be 1-1024 finite numbers, not all zero")
        object.__setattr__(self, "taps", taps)

    @property
    def gain(self) -> np.ndarray:
        """The impulse response actually applied (taps scaled to the echo return loss)."""
        h = np.asarray(self.taps, dtype=np.float64)
        return h / np.sqrt(float(h @ h)) * 10 ** (-self.erl_db / 20)


class _Echo:
    """Running state of an :class:`EchoPath`: the recent heard samples, frame by frame."""

    def __init__(self, path: EchoPath) -> None:
        self.h = path.gain
        self.delay = int(round(path.delay_ms * SAMPLE_RATE / 1000))
        # heard samples: the last (delay + taps - 1) before the current frame, then the frame
        self.hist = np.zeros(self.delay + len(self.h) - 1 + FRAME_BYTES)

    def reset(self) -> None:
        self.hist[:] = 0.0

    def mix(self, voice: bytes, heard: bytes) -> bytes:
        """The frame the caller sends: ``voice`` plus the echo of everything heard up to ``heard``
        (the frame playing now), both 160 bytes of μ-law."""
        n = len(heard)
        self.hist = np.concatenate([self.hist[n:], np.frombuffer(ulaw_to_pcm16(heard), dtype="<i2")])
        seg = self.hist[: FRAME_BYTES + len(self.h) - 1]
        if not seg.any():
            return voice  # no echo yet: the caller's frame goes out untouched
        echo = np.convolve(seg, self.h, mode="valid")[: len(voice)]
        x = np.frombuffer(ulaw_to_pcm16(voice), dtype="<i2") + echo
        return pcm16_to_ulaw(np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes())


# --------------------------------------------------------------------------- script steps


@dataclass(frozen=True, repr=False)
class Say:
    """Speak ``ulaw`` (8 kHz μ-law) into the call.

    ``after="agent_done"``: wait until the agent has taken a turn since the caller last
    spoke and finished it (heard buffer empty, no media and nothing played for ``quiet_ms``;
    gives up after ``wait_timeout_ms``), then think for ``think_ms``, then speak.
    ``after="now"``: speak at once (``think_ms`` is not applied).
    ``barge_in_after_ms``: instead, start speaking this long after the agent's next audio
    starts being heard: an interruption. Falls back to speaking after ``wait_timeout_ms``
    if the agent never speaks.
    """

    ulaw: bytes
    after: Literal["agent_done", "now"] = "agent_done"
    think_ms: float = 600
    barge_in_after_ms: float | None = None
    quiet_ms: float = 800
    wait_timeout_ms: float = 15000
    label: str | None = None

    def __post_init__(self) -> None:
        if self.after not in ("agent_done", "now"):
            raise ValueError(f"Say.after must be 'agent_done' or 'now', not {self.after!r}")

    def __repr__(self) -> str:
        extra = f", barge_in_after_ms={self.barge_in_after_ms}" if self.barge_in_after_ms is not None else ""
        return (
            f"Say(<{len(self.ulaw)} bytes, {len(self.ulaw) / SAMPLE_RATE:.2f} s>, after={self.after!r}, "
            f"think_ms={self.think_ms}{extra}, label={self.label!r})"
        )


@dataclass(frozen=True)
class WaitForAgent:
    """Wait until the agent has taken a turn since the caller last spoke and finished it."""

    quiet_ms: float = 800
    timeout_ms: float = 15000


@dataclass(frozen=True)
class Wait:
    """Keep the line open (streaming silence) for ``ms`` milliseconds."""

    ms: float


@dataclass(frozen=True)
class Dtmf:
    """Press a key: Twilio sends a ``dtmf`` message on the stream."""

    digit: str

    def __post_init__(self) -> None:
        if len(self.digit) != 1 or self.digit not in _DTMF_DIGITS:
            raise ValueError(f"not a DTMF digit: {self.digit!r}")


@dataclass(frozen=True)
class Hangup:
    """The caller hangs up: ``stop`` on the stream, then the websocket closes."""


Step = Union[Say, WaitForAgent, Wait, Dtmf, Hangup]


@dataclass
class CallerScript:
    """What the caller does, step by step. ``hangup_at_end``: hang up when the steps run out
    (otherwise stay on the line until the bridge ends the call or the call times out)."""

    steps: list[Step] = field(default_factory=list)
    hangup_at_end: bool = True

    def __post_init__(self) -> None:
        self.steps = list(self.steps)
        for step in self.steps:
            if not isinstance(step, (Say, WaitForAgent, Wait, Dtmf, Hangup)):
                raise TypeError(f"not a script step: {step!r}")

    @classmethod
    def replay(cls, ulaw: bytes, *, tail_ms: float = 0) -> CallerScript:
        """Replay a μ-law recording verbatim from t=0 (the first media frame carries its first
        160 bytes), keep the line open ``tail_ms`` longer, then hang up."""
        steps: list[Step] = [Say(bytes(ulaw), after="now", think_ms=0, label="replay")]
        if tail_ms > 0:
            steps.append(Wait(tail_ms))
        steps.append(Hangup())
        return cls(steps)

    @classmethod
    def from_founder_turns(
        cls,
        turns: Sequence[bytes],
        *,
        think_ms: float = 600,
        barge_in: bool = False,
        barge_in_turn: int | None = None,
        barge_in_after_ms: float = 1200,
        quiet_ms: float = 800,
        wait_timeout_ms: float = 15000,
    ) -> CallerScript:
        """A founder interview: wait for the agent's greeting/question to finish, answer it,
        repeat for every turn, then hang up after the agent's last reply.

        One answer can interrupt the agent instead of waiting: ``barge_in_turn`` (an index
        into ``turns``), or ``barge_in=True`` for the second answer (the first if there is
        only one). It starts ``barge_in_after_ms`` after the agent's audio starts.
        """
        turns = list(turns)
        if barge_in_turn is None and barge_in and turns:
            barge_in_turn = 1 if len(turns) > 1 else 0
        if barge_in_turn is not None and not 0 <= barge_in_turn < len(turns):
            raise ValueError(f"barge_in_turn {barge_in_turn} out of range for {len(turns)} turns")
        steps: list[Step] = []
        for i, ulaw in enumerate(turns):
            steps.append(
                Say(
                    bytes(ulaw),
                    think_ms=think_ms,
                    barge_in_after_ms=barge_in_after_ms if i == barge_in_turn else None,
                    quiet_ms=quiet_ms,
                    wait_timeout_ms=wait_timeout_ms,
                    label=f"turn{i + 1}",
                )
            )
        steps.append(WaitForAgent(quiet_ms=quiet_ms, timeout_ms=wait_timeout_ms))
        steps.append(Hangup())
        return cls(steps)


# --------------------------------------------------------------------------- result


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


# --------------------------------------------------------------------------- helpers


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def loopback_rewrite(local_url: str, public_url: str | None = None) -> Callable[[str], str]:
    """A ``url_rewrite`` that sends requests for public URLs to a local server.

    Scheme and host of ``local_url`` replace those of each URL (``wss``/``ws`` become the
    websocket flavour of the local scheme). With ``public_url``, only URLs on that host are
    rewritten; others are left as they are.
    """
    local = urllib.parse.urlsplit(local_url)
    secure = local.scheme in ("https", "wss")
    public_host = urllib.parse.urlsplit(public_url).netloc.lower() if public_url else None

    def rewrite(url: str) -> str:
        u = urllib.parse.urlsplit(url)
        if public_host is not None and u.netloc.lower() != public_host:
            return url
        if u.scheme in ("ws", "wss"):
            scheme = "wss" if secure else "ws"
        else:
            scheme = "https" if secure else "http"
        return urllib.parse.urlunsplit((scheme, local.netloc, u.path, u.query, u.fragment))

    return rewrite


class _Utterance:
    __slots__ = ("data", "pos", "done", "label", "paused_at")

    def __init__(self, data: bytes, label: str | None, done: asyncio.Future[bool]) -> None:
        self.data = data
        self.pos = 0
        self.label = label
        self.done = done
        #: The stream broke mid-sentence at this loop time: the caller talks on regardless.
        self.paused_at: float | None = None


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


# --------------------------------------------------------------------------- simulator


class CallerSimulator:
    """Places one call against the bridge and plays the caller's part (see module docstring).

    ``twiml_url`` is the URL Twilio is configured with (it is what the webhook signature
    covers); ``url_rewrite`` maps it, and every URL from TwiML, to where requests really go.
    ``timeout`` bounds the whole call: when it fires, the caller hangs up (``stop``) and the
    result says ``ended_by="timeout"``. ``on_event`` is called with every event as it happens.
    ``echo``: an :class:`EchoPath`; what the caller hears comes back in what it sends.
    """

    def __init__(
        self,
        twiml_url: str,
        script: CallerScript,
        *,
        auth_token: str | None = None,
        url_rewrite: Callable[[str], str] | None = None,
        from_: str = "+15551230000",
        to: str = "+15557654321",
        timeout: float = 120.0,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        echo: EchoPath | None = None,
    ) -> None:
        self.twiml_url = twiml_url
        self.script = script
        self.auth_token = auth_token
        self.url_rewrite = url_rewrite or (lambda url: url)
        self.from_ = from_
        self.to = to
        self.timeout = timeout
        self.on_event = on_event
        #: Echo of what the caller hears mixed into what it sends (None: a perfect headset).
        self.echo = echo
        self._validator = RequestValidator(auth_token) if auth_token else None
        #: Known before :meth:`run` (a bridge test may want to look the call up by it).
        self.call_sid = _sid("CA")
        self.account_sid = _sid("AC")
        self._ran = False

    # ------------------------------------------------------------------ state

    def _reset(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._ran:  # each run is a new call
            self.call_sid = _sid("CA")
        self._ran = True
        self._origin: float | None = None
        self._unplaced: list[tuple[dict[str, Any], float]] = []
        self._events: list[dict[str, Any]] = []
        self._sent = bytearray()
        self._voice = bytearray()
        self._heard = bytearray()
        self._playback: list[list[float]] = []
        self._echo = _Echo(self.echo) if self.echo is not None else None
        self._sizes: Counter[int] = Counter()
        self._media_received: list[tuple[float, int]] = []
        self._twiml: list[str] = []
        self._stream_sids: list[str] = []
        self._streams: list[dict[str, Any]] = []
        self._errors: list[str] = []
        self._marks_returned = 0
        self._clears = 0
        self._stream: _Stream | None = None
        self._stream_up = asyncio.Event()
        self._hangup = asyncio.Event()
        self._changed = asyncio.Event()
        self._script_task: asyncio.Task[None] | None = None
        self._utterance: _Utterance | None = None
        # Agent-side observations (loop times).
        self._agent_playing = False
        self._last_media_rx = float("-inf")
        self._last_play_end = float("-inf")  # loop time at which the last played audio ends
        self._last_play_end_t = 0.0  # same, on the call clock
        # "The agent has taken a turn since the reference point" (caller's last words,
        # stream start, or a clear: interrupted speech is not an answer).
        self._agent_spoke = False
        self._agent_spoke_at = 0.0

    def _now_t(self) -> float | None:
        if self._origin is None:
            return None
        return round(self._loop.time() - self._origin, 4)

    def _emit(self, kind: str, t: float | None = None, **details: Any) -> dict[str, Any]:
        event = {"t": self._now_t() if t is None else round(t, 4), "kind": kind, "details": details}
        if event["t"] is None:
            self._unplaced.append((event, self._loop.time()))
        self._events.append(event)
        if self.on_event is not None:
            self.on_event(event)
        return event

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = self._loop.time() + timeout
        while not predicate():
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return predicate()
        return True

    def _protocol_error(self, message: str) -> None:
        self._errors.append(message)
        self._emit("protocol_error", message=message)

    # ------------------------------------------------------------------ call

    async def run(self) -> CallResult:
        """Place the call, play the script, and return what happened."""
        self._reset()
        ended_by = "bridge"
        timeout_cm = asyncio.timeout(self.timeout)
        try:
            async with timeout_cm:
                ended_by = await self._call()
        except TimeoutError:
            if not timeout_cm.expired():
                raise
            ended_by = "timeout"
            self._emit("timeout", seconds=self.timeout)
        finally:
            script = self._script_task
            if script is not None:
                if not script.done():
                    script.cancel()
                try:
                    await script
                except asyncio.CancelledError:
                    if not script.cancelled():
                        raise
        self._emit("call_end", ended_by=ended_by)
        self._events.sort(key=lambda e: e["t"] if e["t"] is not None else float("-inf"))
        return CallResult(
            call_sid=self.call_sid,
            stream_sids=list(self._stream_sids),
            sent_ulaw=bytes(self._sent),
            heard_ulaw=bytes(self._heard),
            events=self._events,
            marks_returned=self._marks_returned,
            clears=self._clears,
            media_sizes_seen=Counter(self._sizes),
            twiml=list(self._twiml),
            ended_by=ended_by,
            streams=self._streams,
            protocol_errors=list(self._errors),
            media_received=list(self._media_received),
            voice_ulaw=bytes(self._voice),
            origin=self._origin,
            playback=[(round(a, 4), round(b, 4)) for a, b in self._playback],
        )

    def _call_params(self) -> dict[str, str]:
        return {
            "CallSid": self.call_sid,
            "AccountSid": self.account_sid,
            "From": self.from_,
            "To": self.to,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }

    async def _call(self) -> str:
        async with httpx.AsyncClient(timeout=15.0, trust_env=False) as client:
            self._http = client
            fetched = await self._request_twiml(self.twiml_url, "POST")
            while fetched is not None:
                doc_url, root = fetched
                next_request: tuple[str, str] | None = None
                for verb in root:
                    tag = verb.tag
                    if tag == "Connect":
                        stream = verb.find("Stream")
                        if stream is None or not stream.get("url"):
                            self._emit("twiml_unsupported", verb="Connect", reason="no <Stream url>")
                            continue
                        params = {
                            p.get("name", ""): p.get("value", "")
                            for p in stream.findall("Parameter")
                            if p.get("name") is not None
                        }
                        stream_url = urllib.parse.urljoin(doc_url, stream.get("url", ""))
                        outcome = await self._run_stream(stream_url, params)
                        if outcome == "caller":
                            return "caller"
                        action = verb.get("action")
                        if action:
                            next_request = (urllib.parse.urljoin(doc_url, action), verb.get("method", "POST"))
                            break
                    elif tag == "Say":
                        self._emit("twiml_say", text=(verb.text or "").strip())
                    elif tag == "Pause":
                        self._emit("twiml_pause", length=verb.get("length", "1"))
                    elif tag in ("Hangup", "Reject"):
                        self._emit("twiml_hangup", verb=tag)
                        return "bridge"
                    elif tag == "Redirect":
                        next_request = (
                            urllib.parse.urljoin(doc_url, (verb.text or "").strip()),
                            verb.get("method", "POST"),
                        )
                        break
                    else:
                        self._emit("twiml_unsupported", verb=tag)
                if next_request is None:
                    return "bridge"  # end of the document: Twilio hangs up
                if self._hangup.is_set():
                    return "caller"
                fetched = await self._request_twiml(*next_request)
            return "bridge"

    async def _request_twiml(self, url: str, method: str) -> tuple[str, ET.Element] | None:
        """Request TwiML as Twilio does; ``None`` when the answer is not usable TwiML."""
        params = self._call_params()
        method = method.upper()
        headers = {"User-Agent": "TwilioProxy/1.1", "Accept": "*/*"}
        if method == "GET":
            sep = "&" if urllib.parse.urlsplit(url).query else "?"
            signed_url, body = url + sep + urllib.parse.urlencode(params), None
            sig_params: dict[str, str] = {}
        else:
            signed_url, body, sig_params = url, params, params
        if self._validator is not None:
            headers["X-Twilio-Signature"] = self._validator.compute_signature(signed_url, sig_params)
        target = self.url_rewrite(signed_url)
        try:
            response = await self._http.request(method, target, data=body, headers=headers)
        except httpx.TransportError as exc:
            raise SimulatorError(f"{method} {target}: {exc!r}") from exc
        self._emit("webhook", url=url, method=method, status=response.status_code)
        if not 200 <= response.status_code < 300:
            self._emit("webhook_error", url=url, status=response.status_code, body=response.text[:500])
            return None
        text = response.text
        self._twiml.append(text)
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            self._emit("twiml_error", url=url, error=str(exc))
            return None
        if root.tag != "Response":
            self._emit("twiml_error", url=url, error=f"root element is <{root.tag}>, not <Response>")
            return None
        self._emit("twiml", url=url, verbs=[child.tag for child in root])
        return url, root

    # ------------------------------------------------------------------ stream

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
        self._agent_playing = False
        self._agent_spoke = False
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

    # ------------------------------------------------------------------ 20 ms clock

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
        frame = _SILENCE_FRAME
        u = self._utterance
        if u is not None and u.paused_at is not None:
            gap = int((self._loop.time() - u.paused_at) / FRAME_S) * FRAME_BYTES
            u.pos = min(len(u.data), u.pos + gap)
            u.paused_at = None
            self._emit("say_resumed", t=t, label=u.label, lost_ms=round(gap / 8, 1))
        if u is not None:
            if u.pos == 0:
                self._emit("say_start", t=t, label=u.label, bytes=len(u.data))
            chunk = u.data[u.pos : u.pos + FRAME_BYTES]
            u.pos += len(chunk)
            frame = chunk + _SILENCE_FRAME[len(chunk) :]
            if u.pos >= len(u.data):
                self._utterance = None
                self._emit("say_end", t=t + len(chunk) / SAMPLE_RATE, label=u.label, truncated=False)
                self._agent_spoke = False  # the caller's last words: a new reference point
                if not u.done.done():
                    u.done.set_result(True)
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

    # ------------------------------------------------------------------ bridge -> caller

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
            self._sizes[len(data)] += 1
            self._media_received.append((self._now_t() or 0.0, len(data)))
            if s.media_in == 0:
                self._emit("media_in_first", stream_sid=s.stream_sid, bytes=len(data))
            s.media_in += 1
            s.playback += data
            s.enqueued += len(data)
            self._last_media_rx = self._loop.time()
            return []
        if event == "mark":
            mark = msg.get("mark")
            name = mark.get("name") if isinstance(mark, dict) else None
            if not isinstance(name, str):
                self._protocol_error("mark without mark.name")
                return []
            s.pending_marks.append((s.enqueued, name))
            self._emit("mark_received", name=name, queued_bytes=len(s.playback), stream_sid=s.stream_sid)
            return self._release_marks(s)
        if event == "clear":
            dropped = len(s.playback)
            s.playback.clear()
            s.enqueued = s.played
            s.clears += 1
            self._clears += 1
            self._agent_spoke = False  # interrupted speech is not the agent's answer
            self._emit("clear", dropped_bytes=dropped, pending_marks=[n for _, n in s.pending_marks])
            return self._release_marks(s, flushed=True)
        self._protocol_error(f"unknown event {event!r}")
        return []

    # ------------------------------------------------------------------ the caller

    async def _run_script(self) -> None:
        for step in self.script.steps:
            if self._hangup.is_set():
                return
            if isinstance(step, Say):
                await self._say(step)
            elif isinstance(step, WaitForAgent):
                await self._wait_agent_done(step.quiet_ms, step.timeout_ms)
            elif isinstance(step, Wait):
                await asyncio.sleep(step.ms / 1000)
            elif isinstance(step, Dtmf):
                await self._dtmf(step.digit)
            elif isinstance(step, Hangup):
                self._request_hangup("script")
                return
        self._emit("script_end", hangup=self.script.hangup_at_end)
        if self.script.hangup_at_end:
            self._request_hangup("script_end")

    def _request_hangup(self, reason: str) -> None:
        if not self._hangup.is_set():
            self._emit("hangup", reason=reason)
            self._hangup.set()

    async def _say(self, step: Say) -> None:
        if step.barge_in_after_ms is not None:
            if await self._wait_for(lambda: self._agent_spoke, step.wait_timeout_ms / 1000):
                delay = self._agent_spoke_at + step.barge_in_after_ms / 1000 - self._loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                self._emit("agent_wait_timeout", step="barge_in", label=step.label)
        elif step.after == "agent_done":
            await self._wait_agent_done(step.quiet_ms, step.wait_timeout_ms, label=step.label)
            if step.think_ms > 0:
                await asyncio.sleep(step.think_ms / 1000)
        await self._speak(step.ulaw, step.label)

    async def _wait_agent_done(self, quiet_ms: float, timeout_ms: float, label: str | None = None) -> bool:
        quiet = quiet_ms / 1000

        def done() -> bool:
            s = self._stream
            now = self._loop.time()
            return (
                s is not None
                and self._agent_spoke
                and not s.playback
                and now - self._last_media_rx >= quiet
                and now - self._last_play_end >= quiet
            )

        if await self._wait_for(done, timeout_ms / 1000):
            self._emit("agent_done", label=label)
            return True
        self._emit("agent_wait_timeout", step="agent_done", label=label)
        return False

    async def _speak(self, ulaw: bytes, label: str | None) -> None:
        if not ulaw:
            return
        await self._stream_up.wait()
        u = _Utterance(bytes(ulaw), label, self._loop.create_future())
        self._utterance = u
        await u.done

    async def _dtmf(self, digit: str) -> None:
        await self._stream_up.wait()
        s = self._stream
        assert s is not None
        try:
            await s.send(
                {
                    "event": "dtmf",
                    "streamSid": s.stream_sid,
                    "sequenceNumber": s.next_seq(),
                    "dtmf": {"track": "inbound_track", "digit": digit},
                }
            )
        except ConnectionClosed:
            return
        self._emit("dtmf", digit=digit, stream_sid=s.stream_sid)


# --------------------------------------------------------------------------- CLI


def _print_event(event: dict[str, Any]) -> None:
    kind = event["kind"]
    if kind == "mark_received" or (kind == "mark_sent_back" and not event["details"].get("flushed")):
        return  # one per mark: too chatty for a console
    t = event["t"]
    stamp = f"{t:8.3f}" if t is not None else "     ..."
    details = " ".join(f"{k}={v}" for k, v in event["details"].items() if k not in ("custom_parameters",))
    print(f"[{stamp}] {kind} {details}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Place a call that replays a μ-law (or WAV) recording verbatim, then hangs up."""
    parser = argparse.ArgumentParser(
        prog="python -m telephony_bridge.testing.simulator",
        description="Call the bridge as Twilio would, replaying a recording as the caller.",
    )
    parser.add_argument("--twiml-url", required=True, help="where the bridge serves TwiML, e.g. http://127.0.0.1:8080/twiml")
    parser.add_argument("--audio", required=True, help="caller audio: raw 8 kHz μ-law, or a .wav file")
    parser.add_argument("--out", help="write a stereo WAV (left = caller, right = agent as heard)")
    parser.add_argument("--auth-token", default=os.environ.get("TWILIO_AUTH_TOKEN"), help="sign requests (default $TWILIO_AUTH_TOKEN)")
    parser.add_argument(
        "--public-url",
        help="the public TwiML URL Twilio is configured with (what signatures cover); requests still go to --twiml-url",
    )
    parser.add_argument("--no-rewrite", action="store_true", help="use stream/action URLs from TwiML as written")
    parser.add_argument("--tail-ms", type=float, default=0, help="stay on the line this long after the recording")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up on the call after this many seconds")
    parser.add_argument("--quiet", action="store_true", help="do not print events as they happen")
    parser.add_argument("--echo-delay-ms", type=float, help="add echo of what the caller hears, this late")
    parser.add_argument("--echo-erl-db", type=float, help="echo return loss (default 12 dB when echo is on)")
    args = parser.parse_args(argv)
    echo = None
    if args.echo_delay_ms is not None or args.echo_erl_db is not None:
        try:
            echo = EchoPath(
                delay_ms=120.0 if args.echo_delay_ms is None else args.echo_delay_ms,
                erl_db=12.0 if args.echo_erl_db is None else args.echo_erl_db,
            )
        except ValueError as exc:
            parser.error(str(exc))

    ulaw = load_ulaw(args.audio)
    rewrite = None if args.no_rewrite else loopback_rewrite(args.twiml_url, args.public_url)
    sim = CallerSimulator(
        args.public_url or args.twiml_url,
        CallerScript.replay(ulaw, tail_ms=args.tail_ms),
        auth_token=args.auth_token,
        url_rewrite=rewrite,
        timeout=args.timeout,
        on_event=None if args.quiet else _print_event,
        echo=echo,
    )
    try:
        result = asyncio.run(sim.run())
    except SimulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        result.write_wav(args.out)
    heard = sum(1 for b in result.heard_ulaw if b != ULAW_SILENCE) / SAMPLE_RATE
    print(
        f"call {result.call_sid}: {len(result.stream_sids)} stream(s), {result.duration:.2f} s, "
        f"agent audio heard {heard:.2f} s, marks returned {result.marks_returned}, clears {result.clears}, "
        f"media sizes {dict(result.media_sizes_seen)}, ended by {result.ended_by}"
        + (f", wrote {args.out}" if args.out else "")
    )
    if result.protocol_errors:
        print(f"protocol errors: {len(result.protocol_errors)}", file=sys.stderr)
        for message in result.protocol_errors[:10]:
            print(f"  {message}", file=sys.stderr)
    return 0 if not result.protocol_errors else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
