"""An offline Gemini Live API emulator: a real websocket server speaking the real protocol.

Used by the end-to-end tests, ``telephony-bridge demo`` and fault-injection benchmarks as a
stand-in for ``wss://generativelanguage.googleapis.com/ws/…BidiGenerateContent``. A client (ours,
or Google's SDK) talks to it exactly as it talks to the service:

* Paths: the ``v1beta`` and ``v1`` ``…GenerativeService.BidiGenerateContent`` paths; anything
  else is HTTP 404. API key in ``x-goog-api-key`` or ``?key=``; when the emulator was given a
  key, a missing key is HTTP 401 and a wrong one HTTP 403 (at the handshake), or, with
  ``Scenario.key_check="setup"``, as the service does it: the upgrade succeeds and the ``setup``
  is answered with close 1007 "API key not valid. Please pass a valid API key."
* Every server message is a BINARY frame holding UTF-8 JSON, like Google's. Client messages may
  be text or binary, ``lowerCamelCase`` or ``snake_case`` (proto JSON reads both), and ``bytes``
  fields in the standard or URL-safe base64 alphabet, padded or not.
* The first message must be ``setup`` with a ``model``; anything else, or a malformed setup,
  closes with 1007 and a reason. Then ``{"setupComplete": {}}``. An unknown top-level field,
  bad base64 or a second ``setup`` also close with 1007 (the service's "Invalid JSON payload").
  An unknown or stale ``sessionResumption.handle`` closes with 1008, as does a model outside
  ``Scenario.known_models`` (when that is set).
* Audio in (``realtimeInput.audio``, deprecated ``realtimeInput.mediaChunks``) at whatever rate
  the mimeType names goes through an energy VAD (:mod:`.vad`) honouring
  ``automaticActivityDetection.silenceDurationMs`` / ``prefixPaddingMs``; ``audioStreamEnd``
  ends a turn in progress. With ``automaticActivityDetection.disabled`` the client's
  ``activityStart`` / ``activityEnd`` mark turns instead.
* When a caller turn ends, the "model" answers with real recorded speech (:mod:`.render_clips`):
  24 kHz PCM16 in ``serverContent.modelTurn.parts[].inlineData`` chunks, paced against
  ``loop.time()``, with ``outputTranscription`` pieces, then ``generationComplete`` and
  ``turnComplete`` (carrying ``usageMetadata``), then ``sessionResumptionUpdate`` when the setup
  asked for resumption. A ``clientContent`` with ``turnComplete`` makes it speak first (the
  greeting) or counts as a user text turn.
* Barge-in: caller speech starting while a reply is being sent stops it and sends
  ``serverContent.interrupted``. Like the service, the emulator only knows what it has *sent*:
  audio sent ahead of real time (``Scenario.burst_ms`` / ``pace``) is the client's to drop.
* Transcriptions follow the setup (``inputAudioTranscription`` / ``outputAudioTranscription``)
  unless ``Scenario.transcriptions`` says ``always`` or ``never``.

Everything a test may want to check is recorded on :class:`EmulatorSession` (one per connection).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import bisect
import copy
import functools
import json
import logging
import math
import re
import secrets
import ssl as ssl_module
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .vad import (
    DEFAULT_PREFIX_PADDING_MS,
    DEFAULT_SILENCE_DURATION_MS,
    DEFAULT_THRESHOLD,
    EnergyVAD,
    SpeechEnd,
    SpeechStart,
    pcm16_to_float,
)

logger = logging.getLogger("telephony_bridge.emulator")

V1BETA_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
V1_PATH = "/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent"
PATHS = (V1BETA_PATH, V1_PATH)

CLIPS_DIR = Path(__file__).resolve().parent / "clips"
OUTPUT_RATE = 24000
OUTPUT_MIME = f"audio/pcm;rate={OUTPUT_RATE}"
#: Gemini counts audio at 32 tokens per second (used for the emulated usageMetadata).
AUDIO_TOKENS_PER_SECOND = 32
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

DEFAULT_REPLIES = ("q_customer", "q_competition", "q_business_model", "q_why_now", "goodbye")


# ============================================================================ clips


@dataclass(frozen=True)
class Clip:
    """One recorded line: raw PCM16 LE mono at ``rate`` Hz plus the words it says."""

    id: str
    text: str
    pcm: bytes
    rate: int = OUTPUT_RATE

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / self.rate


@functools.lru_cache(maxsize=8)
def load_clips(directory: str | Path | None = None) -> dict[str, Clip]:
    """Read ``clips.json`` and its ``.pcm`` files (cached per directory)."""
    root = Path(directory) if directory is not None else CLIPS_DIR
    index = json.loads((root / "clips.json").read_text())
    rate = int(index.get("sample_rate", OUTPUT_RATE))
    entries = index.get("clips", index)
    return {
        cid: Clip(cid, entry["text"], (root / entry["file"]).read_bytes(), rate)
        for cid, entry in entries.items()
    }


# ============================================================================ scenario


@dataclass
class ToolCallStep:
    """After caller turn ``after_turn`` (1-based, audio or text turns), call a tool.

    (Or after the first turn past it, if that reply was cut off before the call went out.)

    The emulator sends ``toolCall {functionCalls: [{id, name, args}]}``, waits for the matching
    ``toolResponse``, then speaks ``then_clip`` (``None``: the next reply in order). Caller speech
    while it waits cancels the call with ``toolCallCancellation {ids}``; so does
    ``cancel_after_s`` seconds without a response (a scripted cancellation).
    """

    after_turn: int
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    then_clip: str | None = "tool_ack"
    call_id: str | None = None
    cancel_after_s: float | None = None


FaultKind = Literal["close", "drop", "go_away", "refuse", "reject_resume", "reject_setup", "empty_turn", "no_reply"]
#: Silent stalls (python-genai #2117): the model answers with nothing, the socket stays open.
STALL_KINDS = frozenset({"empty_turn", "no_reply"})

# Close reasons the service sends for refusals (quoted from reports against the real service;
# see telephony_bridge/gemini/refusal.py). The model-not-found one is built from the model.
API_KEY_INVALID_REASON = "API key not valid. Please pass a valid API key."
PERMISSION_REASON = "Permission denied on resource project None."
INVALID_ARGUMENT_REASON = "Request contains an invalid argument."
QUOTA_REASON = ("You exceeded your current quota, please check your plan and billing details. For more "
                "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits")


@dataclass
class Fault:
    """A scripted failure.

    Kinds:

    * ``close``: close the websocket with ``code`` (default 1011) and ``reason``.
    * ``drop``: abort the TCP connection, no close frame (the client sees 1006).
    * ``go_away``: send ``goAway {timeLeft}`` with ``time_left_s``, then close with ``code``
      once that time has passed.
    * ``refuse``: refuse new connections (HTTP 503) for ``refuse_s`` seconds.
    * ``reject_resume``: a setup that carries a resumption handle is closed with 1008
      ("stale handle"); no trigger needed.
    * ``reject_setup``: the ``setup`` is answered with a close (``code``, ``reason``) instead of
      ``setupComplete``, as the service refuses a project without permission (1008
      :data:`PERMISSION_REASON`) or a setup it cannot take (1007
      :data:`INVALID_ARGUMENT_REASON`); no trigger needed. A quota the service has run out of
      is a ``close`` instead: ``setupComplete``, then 1011 :data:`QUOTA_REASON` ~0.8 s later.
    * ``empty_turn``: reply attempt ``on_reply`` is a bare ``turnComplete``: no audio, no
      transcription, no error (the silent stall of python-genai #2117).
    * ``no_reply``: reply attempt ``on_reply`` never starts: nothing is sent at all.

    The stall kinds count reply *attempts* on the connection (1-based: the greeting, when the
    client asks the model to speak first, is attempt 1; a stalled attempt counts too, so the
    attempt a nudge triggers is the next one). The model remembers nothing of a stalled attempt:
    the next one says what it would have said. ``connection=1`` with ``on_reply=1`` is a stall
    right after a resumption.

    Trigger (ignored by ``reject_resume`` and ``reject_setup``): ``at_s`` seconds after the connection opened, or
    during reply ``on_reply`` (1-based, counted per connection) once ``after_chunks`` audio
    chunks of it have been sent. ``connection`` restricts the fault to that connection index
    (0-based, as in ``GeminiEmulator.sessions``; default 0, the first connection, so the client's
    reconnect succeeds); ``None`` means every connection. Any kind may
    also open a refusal window of ``refuse_s`` seconds when it fires.
    """

    kind: FaultKind
    at_s: float | None = None
    on_reply: int | None = None
    after_chunks: int = 0
    connection: int | None = 0
    code: int = 1011
    reason: str = "Internal error encountered."
    time_left_s: float = 1.0
    refuse_s: float = 0.0
    refuse_status: int = 503


@dataclass
class Scenario:
    """How the emulated model behaves. Every field has a sensible default."""

    #: Reply clip ids, in order, one per caller turn (after the greeting).
    replies: Sequence[str] = DEFAULT_REPLIES
    #: The clip spoken when the client asks the model to speak first.
    greeting: str = "greeting"
    #: After the last reply: repeat it, start again from the first, or stay silent.
    when_exhausted: Literal["repeat_last", "cycle", "silent"] = "repeat_last"
    #: Sending speed relative to real time (1.0 = real time, 2.0 = twice as fast).
    pace: float = 1.0
    #: Audio sent at once at the start of each reply, ahead of real time (the service does this).
    burst_ms: float = 0.0
    chunk_ms: int = 40
    #: Delay before the first message of each reply; a list gives one value per reply (the last
    #: repeats).
    think_ms: float | Sequence[float] = 300.0
    #: Overrides the setup's silenceDurationMs / prefixPaddingMs when set.
    silence_duration_ms: int | None = None
    prefix_padding_ms: int | None = None
    vad_threshold: float = DEFAULT_THRESHOLD
    #: inputTranscription texts for caller turns 1, 2, …; otherwise "[caller speech 2.4 s]".
    caller_texts: Sequence[str] = ()
    #: "auto": send transcriptions only when the setup asked for them (as the service does).
    transcriptions: Literal["auto", "always", "never"] = "auto"
    usage_metadata: bool = True
    tool_calls: Sequence[ToolCallStep] = ()
    faults: Sequence[Fault] = ()
    #: When set, a setup naming another model is closed with 1008 (model not found).
    known_models: Sequence[str] | None = None
    #: Where a wrong or missing API key is refused: HTTP 401/403 at the upgrade, or (as the
    #: service does) a close 1007 in answer to ``setup``.
    key_check: Literal["handshake", "setup"] = "handshake"
    #: Resumption handles expire after this long (the service: 2 hours).
    handle_ttl_s: float = 7200.0
    clips_dir: str | Path | None = None

    def think_seconds(self, reply_number: int) -> float:
        """Think time before reply ``reply_number`` (0-based, per connection)."""
        if isinstance(self.think_ms, (int, float)):
            return float(self.think_ms) / 1000.0
        values = list(self.think_ms)
        if not values:
            return 0.0
        return float(values[min(reply_number, len(values) - 1)]) / 1000.0

    def reply_clip(self, index: int) -> str | None:
        """The clip for the ``index``-th reply (0-based) or ``None`` for silence."""
        replies = list(self.replies)
        if not replies:
            return None
        if index < len(replies):
            return replies[index]
        if self.when_exhausted == "cycle":
            return replies[index % len(replies)]
        if self.when_exhausted == "repeat_last":
            return replies[-1]
        return None


# ============================================================================ records


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

    kind: Literal["greeting", "reply", "tool"]
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
    api_version: str = "v1beta"
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


# ============================================================================ protocol helpers


class BadRequest(Exception):
    """A client message the service would refuse; closes the connection with ``code``."""

    def __init__(self, reason: str, code: int = 1007) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


# Fields whose values are user data (not proto messages): their keys are never renamed.
_OPAQUE_KEYS = frozenset(
    {"args", "response", "parametersJsonSchema", "responseJsonSchema", "default", "example"}
)
# Fields that map user names to proto messages: keep the names, normalise the values.
_MAP_KEYS = frozenset({"properties"})


def _camel(key: str) -> str:
    if "_" not in key:
        return key
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def normalize(value: Any) -> Any:
    """Rename snake_case proto field names to lowerCamelCase, leaving user data alone."""
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = _camel(key) if isinstance(key, str) else key
        if name in _OPAQUE_KEYS:
            out[name] = item
        elif name in _MAP_KEYS and isinstance(item, dict):
            out[name] = {k: normalize(v) for k, v in item.items()}
        else:
            out[name] = normalize(item)
    return out


def b64decode_any(data: Any) -> bytes:
    """Decode proto JSON ``bytes``: standard or URL-safe alphabet, padded or not."""
    if not isinstance(data, str):
        raise BadRequest("Invalid value for bytes field: expected a base64 string.")
    s = "".join(data.split()).rstrip("=").replace("-", "+").replace("_", "/")
    if len(s) % 4 == 1:
        raise BadRequest("Invalid value for bytes field: bad base64 length.")
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("Invalid value for bytes field: not base64.") from None


_RATE_RE = re.compile(r"(?:^|;)\s*rate\s*=\s*([^;\s]+)", re.IGNORECASE)


def audio_rate(mime: Any) -> int | None:
    """Sample rate named by an ``audio/pcm;rate=N`` mimeType; ``None`` if it isn't PCM audio."""
    if mime is None:
        return 16000
    if not isinstance(mime, str):
        raise BadRequest("Invalid value for mimeType: expected a string.")
    base = mime.split(";", 1)[0].strip().lower()
    if base not in ("audio/pcm", "audio/l16", "audio/x-pcm"):
        return None
    m = _RATE_RE.search(mime)
    if not m:
        return 16000
    try:
        rate = int(m.group(1))
    except ValueError:
        raise BadRequest(f"Invalid audio sample rate in mimeType {mime!r}.") from None
    if not 1000 <= rate <= 192000:
        raise BadRequest(f"Unsupported audio sample rate {rate}.")
    return rate


def _int_field(obj: dict[str, Any], name: str, default: int | None) -> int | None:
    """Proto JSON int32: a number or a decimal string."""
    if name not in obj or obj[name] is None:
        return default
    value = obj[name]
    if isinstance(value, bool):
        raise BadRequest(f"Invalid value at 'setup...{name}': expected an integer.")
    if isinstance(value, int):
        result = value
    elif isinstance(value, float) and value.is_integer():
        result = int(value)
    elif isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        result = int(value)
    else:
        raise BadRequest(f"Invalid value at 'setup...{name}' ({value!r}): expected an integer.")
    if result < 0:
        raise BadRequest(f"Invalid value at 'setup...{name}': must not be negative.")
    return result


def _dict_field(obj: dict[str, Any], name: str) -> dict[str, Any]:
    value = obj.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"Invalid value at 'setup.{name}': expected an object.")
    return value


def validate_setup(setup: Any) -> dict[str, Any]:
    """Check the types the emulator relies on; return the normalised setup."""
    if not isinstance(setup, dict):
        raise BadRequest("Invalid value at 'setup': expected an object.")
    setup = normalize(setup)
    model = setup.get("model")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest("setup.model is required and must be a non-empty string.")
    for name in (
        "generationConfig",
        "realtimeInputConfig",
        "sessionResumption",
        "contextWindowCompression",
        "inputAudioTranscription",
        "outputAudioTranscription",
    ):
        _dict_field(setup, name)
    ric = _dict_field(setup, "realtimeInputConfig")
    aad = _dict_field(ric, "automaticActivityDetection")
    _int_field(aad, "silenceDurationMs", None)
    _int_field(aad, "prefixPaddingMs", None)
    if "disabled" in aad and not isinstance(aad["disabled"], bool):
        raise BadRequest("Invalid value at 'automaticActivityDetection.disabled': expected bool.")
    handle = _dict_field(setup, "sessionResumption").get("handle")
    if handle is not None and not isinstance(handle, str):
        raise BadRequest("Invalid value at 'setup.sessionResumption.handle': expected a string.")
    tools = setup.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise BadRequest("Invalid value at 'setup.tools': expected a list.")
    si = setup.get("systemInstruction")
    if si is not None and not isinstance(si, (dict, str)):
        raise BadRequest("Invalid value at 'setup.systemInstruction': expected Content.")
    gc = _dict_field(setup, "generationConfig")
    modalities = gc.get("responseModalities")
    if modalities is not None and not isinstance(modalities, list):
        raise BadRequest("Invalid value at 'generationConfig.responseModalities': expected a list.")
    return setup


def _truncate_reason(reason: str) -> str:
    data = reason.encode()
    if len(data) <= 123:
        return reason
    return data[:120].decode(errors="ignore") + "..."


def _text_of(content: Any) -> str:
    """Concatenate the text parts of a Content / list of Content."""
    if isinstance(content, list):
        return " ".join(t for t in (_text_of(c) for c in content) if t)
    if isinstance(content, str):
        return content
    if not isinstance(content, dict):
        return ""
    parts = content.get("parts")
    if isinstance(parts, list):
        texts = [p.get("text") for p in parts if isinstance(p, dict)]
        return " ".join(t for t in texts if isinstance(t, str))
    text = content.get("text")
    return text if isinstance(text, str) else ""


def _split_words(text: str, pieces: int) -> list[str]:
    """Split ``text`` into about ``pieces`` fragments that concatenate back to it."""
    words = text.split()
    if not words:
        return []
    n = max(1, min(pieces, len(words)))
    bounds = [round(i * len(words) / n) for i in range(n + 1)]
    out = []
    for i in range(n):
        chunk = " ".join(words[bounds[i] : bounds[i + 1]])
        out.append(chunk if i == 0 else " " + chunk)
    return out


def _duration(seconds: float) -> str:
    """Proto JSON Duration."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


# ============================================================================ server


class GeminiEmulator:
    """A loopback Gemini Live server. ``async with GeminiEmulator(scenario) as emu: emu.url``."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        *,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.scenario = scenario or Scenario()
        self.host = host
        self.port = port
        self.api_key = api_key
        self.ssl = ssl
        self.sessions: list[EmulatorSession] = []
        self.conversations: list[Conversation] = []
        self.refused: int = 0
        self.rejected: list[tuple[int, str]] = []  # (HTTP status, path) refused at handshake
        self.clips = load_clips(self.scenario.clips_dir)
        self._check_scenario()
        self._server: Server | None = None
        self._handles: dict[str, tuple[Conversation, float]] = {}
        self._refuse_until = 0.0
        self._stopping = False
        self._refuse_status = 503
        self._new_session: asyncio.Condition | None = None  # created in start()

    def _check_scenario(self) -> None:
        sc = self.scenario
        names = [sc.greeting, *sc.replies, *(s.then_clip for s in sc.tool_calls if s.then_clip)]
        missing = sorted({n for n in names if n not in self.clips})
        if missing:
            raise ValueError(f"scenario names unknown clips: {missing}; have {sorted(self.clips)}")
        if sc.pace <= 0:
            raise ValueError("pace must be positive")
        if sc.chunk_ms <= 0:
            raise ValueError("chunk_ms must be positive")

    # -- lifecycle

    async def start(self) -> None:
        if self._server is not None:
            return
        self._stopping = False
        self._new_session = asyncio.Condition()
        self._server = await serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._process_request,
            max_size=MAX_MESSAGE_BYTES,
            ssl=self.ssl,
            logger=logging.getLogger("telephony_bridge.emulator.ws"),
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        logger.info("Gemini Live emulator listening on %s", self.url)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping = True
        server.close()
        await server.wait_closed()
        logger.info("Gemini Live emulator stopped")

    async def __aenter__(self) -> GeminiEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl else "ws"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{V1BETA_PATH}"

    @property
    def url_v1(self) -> str:
        return self.url.replace(V1BETA_PATH, V1_PATH)

    async def wait_for_session(self, index: int = 0, timeout: float = 10.0) -> EmulatorSession:
        """Wait until connection ``index`` (0-based) has opened."""
        assert self._new_session is not None, "start() the emulator first"
        async with self._new_session:
            await asyncio.wait_for(
                self._new_session.wait_for(lambda: len(self.sessions) > index), timeout
            )
        return self.sessions[index]

    def refuse_connections(self, seconds: float, status: int = 503) -> None:
        """Answer new connection attempts with HTTP ``status`` for ``seconds``."""
        self._refuse_until = asyncio.get_running_loop().time() + seconds
        self._refuse_status = status

    # -- handshake

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path not in PATHS:
            self.rejected.append((404, parts.path))
            return connection.respond(404, "Not Found\n")
        if asyncio.get_running_loop().time() < self._refuse_until:
            self.refused += 1
            self.rejected.append((self._refuse_status, parts.path))
            logger.info("refusing connection (scripted)")
            return connection.respond(self._refuse_status, "Service Unavailable\n")
        if self.api_key is not None and self.scenario.key_check == "handshake":
            key = request.headers.get("x-goog-api-key")
            if key is None:
                key = (parse_qs(parts.query).get("key") or [None])[0]
            if key is None:
                self.rejected.append((401, parts.path))
                return connection.respond(401, "API key required\n")
            if not secrets.compare_digest(key, self.api_key):
                self.rejected.append((403, parts.path))
                return connection.respond(403, "API key not valid. Please pass a valid API key.\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        path = urlsplit(ws.request.path).path if ws.request else ""
        session = EmulatorSession(
            index=len(self.sessions),
            path=path,
            api_version="v1" if path == V1_PATH else "v1beta",
            started_at=loop.time(),
        )
        self.sessions.append(session)
        assert self._new_session is not None
        async with self._new_session:
            self._new_session.notify_all()
        logger.info("session %d: connection from %s", session.index, ws.remote_address)
        await _Connection(self, session, ws).run()

    # -- conversations and handles

    def _issue_handle(self, conversation: Conversation) -> str:
        handle = secrets.token_urlsafe(24)
        self._handles[handle] = (copy.deepcopy(conversation), asyncio.get_running_loop().time())
        return handle

    def _resume(self, handle: str) -> Conversation:
        entry = self._handles.get(handle)
        if entry is None:
            raise BadRequest("Session resumption handle is invalid or expired.", 1008)
        snapshot, issued = entry
        if asyncio.get_running_loop().time() - issued > self.scenario.handle_ttl_s:
            raise BadRequest("Session resumption handle is invalid or expired.", 1008)
        return copy.deepcopy(snapshot)

    def _new_conversation(self) -> Conversation:
        conv = Conversation(id=len(self.conversations))
        self.conversations.append(conv)
        return conv


# ============================================================================ one connection


class _Connection:
    """Runs one websocket connection: receive loop, VAD, reply task, faults."""

    def __init__(self, emu: GeminiEmulator, session: EmulatorSession, ws: ServerConnection):
        self.emu = emu
        self.sc = emu.scenario
        self.session = session
        self.ws = ws
        self.loop = asyncio.get_running_loop()
        self.conv: Conversation | None = None
        self.vad: EnergyVAD | None = None
        self.manual_activity = False
        self.no_interruption = False
        self.want_input_tx = False
        self.want_output_tx = False
        self.want_resumption = False
        self.reply_task: asyncio.Task[None] | None = None
        self.reply: ReplyRecord | None = None
        self.reply_sent_anything = False
        self.pending_tool: tuple[str, asyncio.Future[dict[str, Any]]] | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.turn_open: tuple[float, float, bool] | None = None  # (audio start, wall start, barged)
        self.manual_turn: tuple[float, float, bool] | None = None
        self.carry = b""
        self.carry_rate: int | None = None
        self.arrival_audio: list[float] = []  # audio time at the end of each chunk received
        self.arrival_wall: list[float] = []  # ... and when it arrived (seconds since open)
        self.prompt_tokens = 0
        self.closing = False
        self.close_sent: tuple[int, str] | None = None
        self.dropped = False

    def now(self) -> float:
        return self.loop.time() - self.session.started_at

    # -- sending

    async def send(self, message: dict[str, Any]) -> None:
        """Send one server message: a BINARY frame holding UTF-8 JSON."""
        await self.ws.send(json.dumps(message, separators=(",", ":")).encode())

    async def close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        reason = _truncate_reason(reason)
        self.close_sent = (code, reason)
        self.session.record(self.loop.time(), "close", {"code": code, "reason": reason})
        logger.info("session %d: closing %d %s", self.session.index, code, reason)
        await self.ws.close(code, reason)

    def drop(self) -> None:
        self.closing = True
        self.dropped = True
        self.session.record(self.loop.time(), "drop")
        logger.info("session %d: dropping TCP connection", self.session.index)
        self.ws.transport.abort()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # -- main loop

    async def run(self) -> None:
        try:
            await self._run()
        except ConnectionClosed:
            pass
        except BadRequest as exc:
            await self._close_quietly(exc.code, exc.reason)
        except Exception:  # pragma: no cover - a bug in the emulator: tell the client
            logger.exception("session %d: emulator error", self.session.index)
            await self._close_quietly(1011, "Internal error encountered.")
        finally:
            await self._cancel_all()
            s = self.session
            if self.dropped:
                s.closed_code, s.closed_reason, s.closed_by = 1006, "", "drop"
            elif self.close_sent is None and self.emu._stopping:
                s.closed_code, s.closed_reason, s.closed_by = 1001, "", "server"
            elif self.close_sent is not None:
                s.closed_code, s.closed_reason = self.close_sent
                s.closed_by = "server"
            else:
                s.closed_code, s.closed_reason = self.ws.close_code, self.ws.close_reason
                s.closed_by = "client"
            s.record(self.loop.time(), "closed", {"code": s.closed_code, "by": s.closed_by})
            s._closed.set()
            logger.info(
                "session %d: closed code=%s by=%s turns=%d replies=%d interruptions=%d",
                s.index, s.closed_code, s.closed_by, len(s.turns), s.replies_started,
                s.interruptions,
            )

    async def _close_quietly(self, code: int, reason: str) -> None:
        try:
            await self.close(code, reason)
        except ConnectionClosed:
            pass

    async def _cancel_all(self) -> None:
        tasks = [t for t in self.tasks if not t.done()]
        if self.reply_task is not None and not self.reply_task.done():
            tasks.append(self.reply_task)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        first = await self.ws.recv()
        msg = self._decode(first)
        if "setup" not in msg:
            raise BadRequest("The first message must be 'setup'.")
        extra = set(msg) - {"setup"}
        if extra:
            raise BadRequest(f"Invalid JSON payload received. Unknown name {sorted(extra)[0]!r}.")
        await self._on_setup(msg["setup"])
        for fault in self._faults():
            if fault.at_s is not None and fault.kind not in ("reject_resume", "reject_setup"):
                self.spawn(self._fault_at(fault))
        async for raw in self.ws:
            await self._dispatch(self._decode(raw))

    def _decode(self, raw: str | bytes) -> dict[str, Any]:
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            msg = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(f"Invalid JSON payload received: {exc}") from None
        if not isinstance(msg, dict):
            raise BadRequest("Invalid JSON payload received: expected an object.")
        return {_camel(k): v for k, v in msg.items()}

    # -- setup

    async def _on_setup(self, raw: Any) -> None:
        s, sc = self.session, self.sc
        setup = validate_setup(raw)
        s.raw_setup = raw
        s.setup = setup
        s.model = setup["model"]
        s.record(self.loop.time(), "setup", {"model": s.model})
        if self.emu.api_key is not None and sc.key_check == "setup":
            request = self.ws.request
            key = request.headers.get("x-goog-api-key") if request is not None else None
            if key is None and request is not None:
                key = (parse_qs(urlsplit(request.path).query).get("key") or [None])[0]
            if key is None or not secrets.compare_digest(key, self.emu.api_key):
                raise BadRequest(API_KEY_INVALID_REASON, 1007)
        for fault in self._faults():
            if fault.kind == "reject_setup":
                s.faults_fired.append("reject_setup")
                raise BadRequest(fault.reason, fault.code)
        if sc.known_models is not None:
            bare = s.model.removeprefix("models/")
            known = {m.removeprefix("models/") for m in sc.known_models}
            if bare not in known:
                raise BadRequest(
                    f"models/{bare} is not found for API version {s.api_version}, or is not "
                    "supported for bidiGenerateContent.",
                    1008,
                )
        resumption = setup.get("sessionResumption")
        self.want_resumption = resumption is not None
        handle = (resumption or {}).get("handle")
        if handle:
            if any(f.kind == "reject_resume" for f in self._faults()):
                s.faults_fired.append("reject_resume")
                raise BadRequest("Session resumption handle is invalid or expired.", 1008)
            self.conv = self.emu._resume(handle)
            self.emu.conversations.append(self.conv)
            s.resumed_from = handle
        else:
            self.conv = self.emu._new_conversation()
        s.conversation = self.conv

        ric = setup.get("realtimeInputConfig") or {}
        aad = ric.get("automaticActivityDetection") or {}
        silence = _int_field(aad, "silenceDurationMs", DEFAULT_SILENCE_DURATION_MS)
        prefix = _int_field(aad, "prefixPaddingMs", DEFAULT_PREFIX_PADDING_MS)
        if sc.silence_duration_ms is not None:
            silence = sc.silence_duration_ms
        if sc.prefix_padding_ms is not None:
            prefix = sc.prefix_padding_ms
        s.silence_duration_ms, s.prefix_padding_ms = int(silence or 0), int(prefix or 0)
        self.manual_activity = bool(aad.get("disabled", False))
        self.no_interruption = ric.get("activityHandling") == "NO_INTERRUPTION"
        self.vad = EnergyVAD(
            threshold=sc.vad_threshold,
            prefix_padding_ms=s.prefix_padding_ms,
            silence_duration_ms=s.silence_duration_ms,
        )
        if sc.transcriptions == "auto":
            self.want_input_tx = setup.get("inputAudioTranscription") is not None
            self.want_output_tx = setup.get("outputAudioTranscription") is not None
        else:
            self.want_input_tx = self.want_output_tx = sc.transcriptions == "always"
        logger.info(
            "session %d: setup model=%s silence=%dms prefix=%dms resumed=%s",
            s.index, s.model, s.silence_duration_ms, s.prefix_padding_ms, bool(handle),
        )
        await self.send({"setupComplete": {}})
        s.record(self.loop.time(), "setupComplete")

    # -- client messages

    async def _dispatch(self, msg: dict[str, Any]) -> None:
        if self.closing:
            return
        known = {"realtimeInput", "clientContent", "toolResponse", "setup"}
        unknown = set(msg) - known
        if unknown:
            raise BadRequest(f"Invalid JSON payload received. Unknown name {sorted(unknown)[0]!r}.")
        if "setup" in msg:
            raise BadRequest("'setup' may only be sent once, as the first message.")
        if "realtimeInput" in msg:
            await self._on_realtime_input(normalize(msg["realtimeInput"]))
        if "clientContent" in msg:
            await self._on_client_content(normalize(msg["clientContent"]))
        if "toolResponse" in msg:
            await self._on_tool_response(normalize(msg["toolResponse"]))

    async def _on_realtime_input(self, ri: Any) -> None:
        if not isinstance(ri, dict):
            raise BadRequest("Invalid value at 'realtime_input': expected an object.")
        blobs: list[Any] = []
        if "audio" in ri:
            blobs.append(ri["audio"])
        chunks = ri.get("mediaChunks")
        if chunks is not None:
            if not isinstance(chunks, list):
                raise BadRequest("Invalid value at 'realtime_input.media_chunks': expected a list.")
            blobs.extend(chunks)
        for blob in blobs:
            if not isinstance(blob, dict):
                raise BadRequest("Invalid value at 'realtime_input.audio': expected a Blob.")
            rate = audio_rate(blob.get("mimeType"))
            data = b64decode_any(blob.get("data", ""))
            if rate is None:
                logger.debug("session %d: ignoring %s input",
                             self.session.index, blob.get("mimeType"))
                continue
            await self._on_audio(data, rate)
        if ri.get("audioStreamEnd") is True:
            self.session.audio_stream_ends += 1
            if self.vad is not None and not self.manual_activity:
                await self._vad_events(self.vad.flush(), self.now())
        if "activityStart" in ri:
            await self._on_activity_start()
        if "activityEnd" in ri:
            await self._on_activity_end()
        text = ri.get("text")
        if isinstance(text, str) and text:
            self.session.realtime_text.append(text)
            await self._on_text_turn(text)

    async def _on_audio(self, data: bytes, rate: int) -> None:
        s = self.session
        if rate != self.carry_rate:
            self.carry, self.carry_rate = b"", rate
        data = self.carry + data
        if len(data) % 2:
            data, self.carry = data[:-1], data[-1:]
        else:
            self.carry = b""
        s.audio_in_chunks += 1
        s.audio_in_bytes += len(data)
        s.audio_in_seconds += len(data) / 2 / rate
        s.audio_in_rates.add(rate)
        if self.vad is None or self.manual_activity or not data:
            return
        events = self.vad.feed(pcm16_to_float(data), rate)
        now = self.now()
        self.arrival_audio.append(self.vad.time + self.vad.buffered_seconds)
        self.arrival_wall.append(now)
        await self._vad_events(events, now)

    async def _vad_events(self, events: list[Any], wall_now: float) -> None:
        assert self.vad is not None

        def wall(t: float) -> float:
            # Wall time = arrival of the chunk that carried audio time t.
            i = bisect.bisect_left(self.arrival_audio, t - 1e-9)
            return self.arrival_wall[i] if i < len(self.arrival_wall) else wall_now

        for ev in events:
            if isinstance(ev, SpeechStart):
                barged = await self._caller_speech_started()
                self.turn_open = (ev.start, wall(ev.start), barged)
                self.session.record(self.loop.time(), "speech_start", round(ev.start, 3))
            elif isinstance(ev, SpeechEnd):
                barged = self.turn_open[2] if self.turn_open else False
                turn = CallerTurn(
                    number=len(self.session.turns) + 1,
                    start=wall(ev.start),
                    end=wall(ev.end),
                    committed=wall(ev.committed_at),
                    audio_start=ev.start,
                    audio_end=ev.end,
                    peak_rms=ev.peak_rms,
                    source="audio_stream_end" if ev.flushed else "vad",
                    barged_in=barged,
                )
                self.turn_open = None
                await self._caller_turn_done(turn)

    async def _on_activity_start(self) -> None:
        if not self.manual_activity:
            logger.debug("session %d: activityStart with automatic VAD on", self.session.index)
            return
        barged = await self._caller_speech_started()
        self.manual_turn = (self.session.audio_in_seconds, self.now(), barged)

    async def _on_activity_end(self) -> None:
        if not self.manual_activity or self.manual_turn is None:
            return
        audio_start, wall_start, barged = self.manual_turn
        self.manual_turn = None
        turn = CallerTurn(
            number=len(self.session.turns) + 1,
            start=wall_start,
            end=self.now(),
            committed=self.now(),
            audio_start=audio_start,
            audio_end=self.session.audio_in_seconds,
            peak_rms=0.0,
            source="manual",
            barged_in=barged,
        )
        await self._caller_turn_done(turn)

    async def _caller_speech_started(self) -> bool:
        """Speech began: barge in on a reply in progress. Returns True if it interrupted one."""
        if self.no_interruption:
            return False
        return await self._interrupt("caller speech")

    async def _caller_turn_done(self, turn: CallerTurn) -> None:
        s = self.session
        assert self.conv is not None
        s.turns.append(turn)
        self.conv.caller_turns += 1
        n = self.conv.caller_turns
        text = self.sc.caller_texts[n - 1] if n <= len(self.sc.caller_texts) else None
        transcript = text or f"[caller speech {turn.duration:.1f} s]"
        self.conv.history.append(("user", transcript))
        self.prompt_tokens += int(turn.duration * AUDIO_TOKENS_PER_SECOND)
        s.record(self.loop.time(), "turn", {"number": turn.number, "start": round(turn.start, 3),
                                            "end": round(turn.end, 3)})
        logger.info(
            "session %d: caller turn %d %.2f-%.2f s (%.2f s of speech, %s)",
            s.index, turn.number, turn.start, turn.end, turn.duration, turn.source,
        )
        if self.want_input_tx:
            await self.send({"serverContent": {"inputTranscription": {"text": transcript}}})
        self._start_reply(self._plan_after_caller_turn(n))

    async def _on_client_content(self, cc: Any) -> None:
        if not isinstance(cc, dict):
            raise BadRequest("Invalid value at 'client_content': expected an object.")
        turns = cc.get("turns")
        if turns is not None and not isinstance(turns, (list, dict)):
            raise BadRequest("Invalid value at 'client_content.turns': expected a list.")
        self.session.client_content.append(cc)
        text = _text_of(turns or [])
        assert self.conv is not None
        if cc.get("turnComplete") is not True:
            if text:
                self.conv.history.append(("context", text))
            return
        model_turns = sum(1 for t in (turns if isinstance(turns, list) else [turns])
                          if isinstance(t, dict) and t.get("role") == "model")
        if model_turns:
            # The client restored a conversation as history (e.g. after a stale handle): the
            # model has greeted already and continues its questions from where it was.
            self.conv.greeted = True
            self.conv.replies_given = max(self.conv.replies_given, model_turns - 1)
        if not self.conv.greeted and self.conv.caller_turns == 0 and self.conv.replies_given == 0:
            self.conv.history.append(("user", text))
            await self._interrupt("client content")
            self._start_reply(("greeting", self.sc.greeting, None))
            return
        await self._on_text_turn(text)

    async def _on_text_turn(self, text: str) -> None:
        assert self.conv is not None
        await self._interrupt("client content")
        self.conv.caller_turns += 1
        self.conv.history.append(("user", text))
        self.prompt_tokens += max(1, len(text) // 4)
        logger.info("session %d: text turn %r", self.session.index, text[:60])
        self._start_reply(self._plan_after_caller_turn(self.conv.caller_turns))

    async def _on_tool_response(self, tr: Any) -> None:
        if not isinstance(tr, dict):
            raise BadRequest("Invalid value at 'tool_response': expected an object.")
        responses = tr.get("functionResponses") or []
        if isinstance(responses, dict):
            responses = [responses]
        if not isinstance(responses, list):
            raise BadRequest("Invalid value at 'function_responses': expected a list.")
        for resp in responses:
            if not isinstance(resp, dict):
                raise BadRequest("Invalid value at 'function_responses': expected an object.")
            self.session.tool_responses.append(resp)
            self.session.record(self.loop.time(), "toolResponse", resp.get("id"))
            logger.info("session %d: toolResponse %s %s",
                        self.session.index, resp.get("id"), resp.get("name"))
            if self.pending_tool and resp.get("id") == self.pending_tool[0]:
                fut = self.pending_tool[1]
                if not fut.done():
                    fut.set_result(resp)

    # -- replies

    def _plan_after_caller_turn(self, n: int) -> tuple[str, str | None, ToolCallStep | None]:
        assert self.conv is not None
        for i, step in enumerate(self.sc.tool_calls):
            if step.after_turn <= n and i not in self.conv.tool_steps_done:
                return ("tool", step.then_clip, step)
        return ("reply", None, None)

    def _start_reply(self, plan: tuple[str, str | None, ToolCallStep | None]) -> None:
        previous = self.reply_task if self.reply_task and not self.reply_task.done() else None
        self.reply_task = self.loop.create_task(self._reply(plan, previous))

    async def _interrupt(self, why: str) -> bool:
        """Stop the reply in progress. Sends ``interrupted`` if any of it was sent."""
        task = self.reply_task
        if task is None or task.done():
            return False
        rec, sent = self.reply, self.reply_sent_anything
        pending = self.pending_tool
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self.reply_task = None
        if pending is not None:
            self.session.tool_cancellations.append(pending[0])
            await self.send({"toolCallCancellation": {"ids": [pending[0]]}})
            self.session.record(self.loop.time(), "toolCallCancellation", pending[0])
        if rec is None or not sent:
            return pending is not None
        rec.interrupted = True
        rec.done_at = self.now()
        self.session.interruptions += 1
        self.session.record(self.loop.time(), "interrupted", rec.clip)
        logger.info("session %d: interrupted reply %s (%s)", self.session.index, rec.clip, why)
        await self.send({"serverContent": {"interrupted": True}})
        self._handle_update()
        return True

    async def _reply(
        self,
        plan: tuple[str, str | None, ToolCallStep | None],
        previous: asyncio.Task[None] | None,
    ) -> None:
        kind, clip_id, step = plan
        if previous is not None:  # only with activityHandling NO_INTERRUPTION
            await asyncio.gather(previous, return_exceptions=True)
        s, conv = self.session, self.conv
        assert conv is not None
        rec = ReplyRecord(kind=kind, triggered_at=self.now())  # type: ignore[arg-type]
        self.reply, self.reply_sent_anything = rec, False
        number = len(s.replies)
        try:
            await asyncio.sleep(self.sc.think_seconds(number))
            if await self._stall():
                return
            if step is not None:
                if not await self._call_tool(step, rec):
                    return
            if clip_id is None:
                clip_id = self.sc.reply_clip(conv.replies_given)
                conv.replies_given += 1
                if clip_id is None:
                    return
            if kind == "greeting":
                conv.greeted = True
            rec.clip = clip_id
            await self._speak(self.emu.clips[clip_id], rec)
        except ConnectionClosed:
            return
        finally:
            if self.reply is rec:
                self.reply = None

    async def _stall(self) -> bool:
        """A scripted silent stall for this reply attempt: True if it stalled (nothing spoken)."""
        s = self.session
        s.reply_attempts += 1
        for f in self._faults():
            if f.kind in STALL_KINDS and f.on_reply == s.reply_attempts:
                s.faults_fired.append(f.kind)
                s.stalled_attempts.append(s.reply_attempts)
                s.record(self.loop.time(), "fault", f.kind)
                logger.info("session %d: reply attempt %d stalls (%s)", s.index, s.reply_attempts, f.kind)
                if f.kind == "empty_turn":
                    await self.send({"serverContent": {"turnComplete": True}})
                    self._handle_update()
                return True
        return False

    async def _call_tool(self, step: ToolCallStep, rec: ReplyRecord) -> bool:
        s, conv = self.session, self.conv
        assert conv is not None
        index = list(self.sc.tool_calls).index(step)
        conv.tool_steps_done.append(index)
        call_id = step.call_id or f"call-{conv.id}-{index}-{secrets.token_hex(3)}"
        rec.tool_call_id = call_id
        call = {"id": call_id, "name": step.name, "args": step.args}
        fut: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self.pending_tool = (call_id, fut)
        s.tool_calls.append(call)
        s.record(self.loop.time(), "toolCall", call_id)
        logger.info("session %d: toolCall %s %s", s.index, step.name, call_id)
        try:
            await self.send({"toolCall": {"functionCalls": [call]}})
            if step.cancel_after_s is None:
                response = await fut
            else:
                try:
                    response = await asyncio.wait_for(fut, step.cancel_after_s)
                except TimeoutError:
                    s.tool_cancellations.append(call_id)
                    await self.send({"toolCallCancellation": {"ids": [call_id]}})
                    return False
        finally:
            self.pending_tool = None
        conv.history.append(("tool", json.dumps(response.get("response"), default=str)[:200]))
        return True

    async def _speak(self, clip: Clip, rec: ReplyRecord) -> None:
        s, sc = self.session, self.sc
        conv = self.conv
        assert conv is not None
        bytes_per_chunk = max(2, int(OUTPUT_RATE * sc.chunk_ms / 1000) * 2)
        chunk_s = bytes_per_chunk / 2 / OUTPUT_RATE
        pcm = clip.pcm
        n_chunks = max(1, math.ceil(len(pcm) / bytes_per_chunk))
        pieces = _split_words(clip.text, 4) if self.want_output_tx else []
        piece_at = [i * n_chunks // max(1, len(pieces)) for i in range(len(pieces))]
        burst = sc.burst_ms / 1000.0
        reply_no = len(s.replies) + 1
        s.replies.append(rec)
        s.replies_started += 1
        conv.history.append(("model", clip.text))
        logger.info("session %d: reply %d: %s (%.2f s)", s.index, reply_no, clip.id, clip.seconds)
        s.record(self.loop.time(), "reply", clip.id)
        faults = [f for f in self._faults() if f.on_reply == reply_no and f.at_s is None
                  and f.kind not in ("reject_resume", "reject_setup") and f.kind not in STALL_KINDS]
        t0 = self.loop.time()
        next_piece = 0
        for k in range(n_chunks):
            due = t0 + max(0.0, k * chunk_s - burst) / sc.pace
            delay = due - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            while next_piece < len(pieces) and piece_at[next_piece] <= k:
                await self._transcript(pieces[next_piece])
                next_piece += 1
            chunk = pcm[k * bytes_per_chunk : (k + 1) * bytes_per_chunk]
            await self.send(
                {
                    "serverContent": {
                        "modelTurn": {
                            "parts": [
                                {"inlineData": {"mimeType": OUTPUT_MIME,
                                                "data": base64.b64encode(chunk).decode()}}
                            ]
                        }
                    }
                }
            )
            self.reply_sent_anything = True
            if rec.first_audio_at is None:
                rec.first_audio_at = self.now()
            rec.chunks_sent += 1
            rec.audio_seconds_sent += len(chunk) / 2 / OUTPUT_RATE
            s.audio_out_seconds += len(chunk) / 2 / OUTPUT_RATE
            for f in faults:
                if rec.chunks_sent == max(1, f.after_chunks):
                    if await self._fire(f):
                        return
        while next_piece < len(pieces):
            await self._transcript(pieces[next_piece])
            next_piece += 1
        await self.send({"serverContent": {"generationComplete": True}})
        done: dict[str, Any] = {"serverContent": {"turnComplete": True}}
        if sc.usage_metadata:
            response_tokens = int(clip.seconds * AUDIO_TOKENS_PER_SECOND)
            prompt = self.prompt_tokens
            done["usageMetadata"] = {
                "promptTokenCount": prompt,
                "responseTokenCount": response_tokens,
                "totalTokenCount": prompt + response_tokens,
                "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": prompt}],
                "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": response_tokens}],
            }
            self.prompt_tokens += response_tokens
        await self.send(done)
        rec.done_at = self.now()
        s.replies_completed += 1
        s.record(self.loop.time(), "turnComplete", clip.id)
        self.reply_sent_anything = False  # fully sent: caller speech now starts a new turn
        self._handle_update()

    async def _transcript(self, text: str) -> None:
        await self.send({"serverContent": {"outputTranscription": {"text": text}}})

    def _handle_update(self) -> None:
        """Queue ``sessionResumptionUpdate`` (turn boundary) when the setup asked for it."""
        if not self.want_resumption or self.conv is None or self.closing:
            return
        handle = self.emu._issue_handle(self.conv)
        self.session.handles_issued.append(handle)
        update = {"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}}
        self.spawn(self._send_quietly(update))

    async def _send_quietly(self, message: dict[str, Any]) -> None:
        try:
            await self.send(message)
        except ConnectionClosed:
            pass

    # -- faults

    def _faults(self) -> list[Fault]:
        index = self.session.index
        return [f for f in self.sc.faults if f.connection is None or f.connection == index]

    async def _fault_at(self, fault: Fault) -> None:
        delay = self.session.started_at + (fault.at_s or 0.0) - self.loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await self._fire(fault)

    async def _fire(self, fault: Fault) -> bool:
        """Carry out ``fault``; True if the connection is going away now."""
        s = self.session
        s.faults_fired.append(fault.kind)
        s.record(self.loop.time(), "fault", fault.kind)
        logger.info("session %d: fault %s", s.index, fault.kind)
        if fault.refuse_s > 0 or fault.kind == "refuse":
            self.emu.refuse_connections(fault.refuse_s, fault.refuse_status)
        try:
            if fault.kind == "close":
                self.spawn(self._close_quietly(fault.code, fault.reason))
                return True
            if fault.kind == "drop":
                self.drop()
                return True
            if fault.kind == "go_away":
                await self.send({"goAway": {"timeLeft": _duration(fault.time_left_s)}})
                self.spawn(self._cut_after(fault))
        except ConnectionClosed:
            return True
        return False

    async def _cut_after(self, fault: Fault) -> None:
        await asyncio.sleep(fault.time_left_s)
        await self._close_quietly(fault.code, fault.reason)


# ============================================================================ CLI


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m telephony_bridge.testing.emulator",
        description="Serve an offline Gemini Live API emulator until Ctrl-C.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--api-key", default=None, help="require this key (x-goog-api-key or ?key=)")
    p.add_argument("--pace", type=float, default=1.0, help="reply speed vs real time")
    p.add_argument("--burst-ms", type=float, default=0.0, help="reply audio sent ahead at once")
    p.add_argument("--think-ms", type=float, default=300.0, help="delay before each reply")
    p.add_argument("--silence-ms", type=int, default=None, help="override silenceDurationMs")
    p.add_argument("--vad-threshold", type=float, default=DEFAULT_THRESHOLD)
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    scenario = Scenario(
        pace=args.pace,
        burst_ms=args.burst_ms,
        think_ms=args.think_ms,
        silence_duration_ms=args.silence_ms,
        vad_threshold=args.vad_threshold,
    )
    async with GeminiEmulator(scenario, args.host, args.port, args.api_key) as emu:
        print(emu.url, flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
