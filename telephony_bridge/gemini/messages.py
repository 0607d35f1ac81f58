"""Live API (BidiGenerateContent) messages as typed values.

Client messages are built as JSON text. Server messages arrive as binary frames holding UTF-8
JSON (text is accepted too); :func:`parse_server_message` turns one into a list of events, in
the order a client should act on them, or raises :class:`GeminiProtocolError` and nothing else.
The service reads proto JSON, so both ``lowerCamelCase`` and ``snake_case`` names are accepted,
and ``bytes`` fields in both base64 alphabets, padded or not.

Hostile or broken server input is held to the same rule as Twilio's: one
:class:`~telephony_bridge.errors.GeminiProtocolError` (``kind`` below), never another exception,
never a value that breaks the call core later. A wrong type on any field we read is an error,
not a silent default; fields we do not read are ignored (the API grows)::

    oversize         frame over MAX_MESSAGE_BYTES
    not-json         not UTF-8 JSON, NaN/Infinity, nesting past the decoder's limit, an integer
                     longer than Python's 4300-digit limit
    not-object       JSON that is not an object
    wrong-type       a field we read has the wrong JSON type (or a bool where a number goes)
    too-deep         function-call ``args`` or ``usageMetadata`` nested deeper than MAX_DEPTH
                     (they are kept, and later code may walk them recursively)
    too-long         an id, name or resumption handle longer than MAX_ID_CHARS
    bad-base64       inline audio that is not base64 (either alphabet, padding optional)
    unsupported-mime inline data that is not ``audio/pcm``
    bad-duration     ``goAway.timeLeft`` that is not a finite, non-negative number of seconds
    missing-field    a function call without a name

(Client messages and the server parser stay in one module, a little over the ~450-line
guideline: each server event type sits next to the parser branch that builds it.)
"""

from __future__ import annotations

import binascii
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Union

from ..errors import GeminiProtocolError
from ..strict_json import loads_strict
from . import profiles
from .profiles import ModelProfile

#: Largest server message we parse (a turn's audio can arrive in large chunks).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: Nesting allowed in the free-form objects we keep (function-call args, usage metadata).
MAX_DEPTH = 32
#: Function-call ids and names, cancellation ids, resumption handles.
MAX_ID_CHARS = 4096
#: ``goAway.timeLeft`` is clamped to this (the service gives tens of seconds).
MAX_GO_AWAY_S = 3600.0

# ---------------------------------------------------------------------------------------------
# Client → server


@dataclass(slots=True)
class SetupConfig:
    """Everything that goes into the first (``setup``) message."""

    model: str
    system_instruction: str = ""
    voice: str | None = None
    language: str | None = None
    function_declarations: list[dict[str, Any]] = field(default_factory=list)
    silence_duration_ms: int | None = None
    prefix_padding_ms: int | None = None
    start_sensitivity: str | None = None  # START_SENSITIVITY_LOW / _HIGH
    end_sensitivity: str | None = None  # END_SENSITIVITY_LOW / _HIGH
    session_resumption: bool = True
    resumption_handle: str | None = None
    compression_trigger_tokens: int | None = None
    compression_target_tokens: int | None = None
    input_transcription: bool = True
    output_transcription: bool = True
    #: Optional model features, sent only to a model whose profile accepts them
    #: (:mod:`telephony_bridge.gemini.profiles`): 3.x ``thinkingLevel``, 2.5 ``thinkingBudget``,
    #: 2.5 proactive audio and affective dialog. None: not asked for.
    thinking_level: str | None = None
    thinking_budget: int | None = None
    proactive_audio: bool | None = None
    affective_dialog: bool | None = None


def setup_model(model: str) -> str:
    """The ``setup.model`` value: Vertex resource paths as given, else ``models/{name}``."""
    if model.startswith(("models/", "projects/", "publishers/")):
        return model
    return f"models/{model}"


def declarations_for(profile: ModelProfile, declarations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``functionDeclarations`` with each ``behavior`` kept only where ``profile`` accepts it.

    Tools declare their behaviour explicitly (:class:`telephony_bridge.tools.Tool`); 3.1 takes no
    ``behavior`` field, 3.8 extended thinking no ``BLOCKING``. The input is not modified.
    """
    out = []
    for decl in declarations:
        behavior = decl.get("behavior")
        if behavior is not None and profile.behavior_field(behavior) is None:
            decl = {k: v for k, v in decl.items() if k != "behavior"}
        out.append(decl)
    return out


def dropped_fields(cfg: SetupConfig, profile: ModelProfile | None = None) -> list[str]:
    """The optional fields ``cfg`` asks for that its model's profile would not get (for a warning)."""
    profile = profile or profiles.profile_for(cfg.model)
    asked = [(profiles.THINKING_LEVEL, cfg.thinking_level is not None),
             (profiles.THINKING_BUDGET, cfg.thinking_budget is not None),
             (profiles.PROACTIVE_AUDIO, cfg.proactive_audio is not None),
             (profiles.AFFECTIVE_DIALOG, cfg.affective_dialog is not None)]
    return [name for name, wanted in asked if wanted and not profile.accepts(name)]


def build_setup(cfg: SetupConfig) -> str:
    """The ``setup`` message for ``cfg``, shaped by its model's profile: a field the model would
    reject (a thinking config on 3.8, a ``behavior`` on 3.1, ...) is never sent."""
    profile = profiles.profile_for(cfg.model)
    model = setup_model(cfg.model)
    generation: dict[str, Any] = {"responseModalities": ["AUDIO"]}
    speech: dict[str, Any] = {}
    if cfg.voice:
        speech["voiceConfig"] = {"prebuiltVoiceConfig": {"voiceName": cfg.voice}}
    if cfg.language:
        speech["languageCode"] = cfg.language
    if speech:
        generation["speechConfig"] = speech
    thinking: dict[str, Any] = {}
    if cfg.thinking_level is not None and profile.accepts(profiles.THINKING_LEVEL):
        thinking["thinkingLevel"] = cfg.thinking_level
    if cfg.thinking_budget is not None and profile.accepts(profiles.THINKING_BUDGET):
        thinking["thinkingBudget"] = cfg.thinking_budget
    if thinking:
        generation["thinkingConfig"] = thinking
    if cfg.affective_dialog is not None and profile.accepts(profiles.AFFECTIVE_DIALOG):
        generation["enableAffectiveDialog"] = cfg.affective_dialog
    setup: dict[str, Any] = {"model": model, "generationConfig": generation}
    if cfg.system_instruction:
        setup["systemInstruction"] = {"parts": [{"text": cfg.system_instruction}]}
    if cfg.function_declarations:
        setup["tools"] = [{"functionDeclarations": declarations_for(profile, cfg.function_declarations)}]
    if cfg.proactive_audio is not None and profile.accepts(profiles.PROACTIVE_AUDIO):
        setup["proactivity"] = {"proactiveAudio": cfg.proactive_audio}
    detection: dict[str, Any] = {}
    if cfg.silence_duration_ms is not None:
        detection["silenceDurationMs"] = cfg.silence_duration_ms
    if cfg.prefix_padding_ms is not None:
        detection["prefixPaddingMs"] = cfg.prefix_padding_ms
    if cfg.start_sensitivity:
        detection["startOfSpeechSensitivity"] = cfg.start_sensitivity
    if cfg.end_sensitivity:
        detection["endOfSpeechSensitivity"] = cfg.end_sensitivity
    if detection:
        setup["realtimeInputConfig"] = {"automaticActivityDetection": detection}
    if cfg.session_resumption:
        setup["sessionResumption"] = {"handle": cfg.resumption_handle} if cfg.resumption_handle else {}
    if cfg.compression_trigger_tokens is not None:
        window: dict[str, Any] = {}
        if cfg.compression_target_tokens is not None:
            window["targetTokens"] = cfg.compression_target_tokens
        setup["contextWindowCompression"] = {
            "triggerTokens": cfg.compression_trigger_tokens, "slidingWindow": window,
        }
    if cfg.input_transcription:
        setup["inputAudioTranscription"] = {}
    if cfg.output_transcription:
        setup["outputAudioTranscription"] = {}
    return json.dumps({"setup": setup}, separators=(",", ":"))


class AudioInput:
    """Builds ``realtimeInput.audio`` messages for one sample rate (the per-frame hot path)."""

    __slots__ = ("_prefix",)

    def __init__(self, rate: int = 16000) -> None:
        self._prefix = '{"realtimeInput":{"audio":{"mimeType":"audio/pcm;rate=%d","data":"' % rate

    def message(self, pcm: bytes) -> str:
        return self._prefix + binascii.b2a_base64(pcm, newline=False).decode("ascii") + '"}}}'


def audio_stream_end() -> str:
    return '{"realtimeInput":{"audioStreamEnd":true}}'


def client_text(text: str, *, role: str = "user", turn_complete: bool = True) -> str:
    return json.dumps(
        {"clientContent": {"turns": [{"role": role, "parts": [{"text": text}]}],
                           "turnComplete": turn_complete}},
        separators=(",", ":"),
    )


def client_turns(turns: list[tuple[str, str]], *, turn_complete: bool = True) -> str:
    """Several turns at once, ``(role, text)`` with role ``user`` or ``model``: seeds history."""
    return json.dumps(
        {"clientContent": {"turns": [{"role": role, "parts": [{"text": text}]} for role, text in turns],
                           "turnComplete": turn_complete}},
        separators=(",", ":"),
    )


def tool_response(responses: list[dict[str, Any]]) -> str:
    """``responses``: ``[{"id", "name", "response": {...}, "scheduling"?}]``."""
    return json.dumps({"toolResponse": {"functionResponses": responses}}, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------
# Server → client


@dataclass(frozen=True, slots=True)
class SetupComplete:
    pass


@dataclass(frozen=True, slots=True)
class AudioChunk:
    pcm: bytes
    rate: int


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class InputTranscription:
    text: str


@dataclass(frozen=True, slots=True)
class OutputTranscription:
    text: str


@dataclass(frozen=True, slots=True)
class Interrupted:
    pass


@dataclass(frozen=True, slots=True)
class GenerationComplete:
    pass


@dataclass(frozen=True, slots=True)
class TurnComplete:
    pass


@dataclass(frozen=True, slots=True)
class FunctionCall:
    id: str
    name: str
    args: dict[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class ToolCall:
    calls: tuple[FunctionCall, ...]


@dataclass(frozen=True, slots=True)
class ToolCallCancellation:
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GoAway:
    time_left_s: float


@dataclass(frozen=True, slots=True)
class SessionResumptionUpdate:
    new_handle: str | None
    resumable: bool


@dataclass(frozen=True, slots=True)
class UsageMetadata:
    total_tokens: int
    raw: dict[str, Any] = field(hash=False, compare=False)


ServerEvent = Union[
    SetupComplete, AudioChunk, TextPart, InputTranscription, OutputTranscription, Interrupted,
    GenerationComplete, TurnComplete, ToolCall, ToolCallCancellation, GoAway,
    SessionResumptionUpdate, UsageMetadata,
]

_RATE = re.compile(r"rate=(\d{3,6})", re.ASCII)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$", re.ASCII)


def _get(d: dict[str, Any], camel: str, snake: str) -> Any:
    value = d.get(camel)
    return d.get(snake) if value is None else value


def _depth_ok(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when ``value`` nests no deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= limit:
            return False
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return True


def _short(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise GeminiProtocolError("wrong-type", f"{what} must be a string")
    if len(value) > MAX_ID_CHARS:
        raise GeminiProtocolError("too-long", f"{what}: {len(value)} characters")
    return value


def _text(container: Any, what: str) -> str | None:
    """``{"text": "..."}`` (a transcription): the text, or None when absent or empty."""
    if container is None:
        return None
    if not isinstance(container, dict):
        raise GeminiProtocolError("wrong-type", f"{what} must be an object")
    text = container.get("text")
    if text is None:
        return None
    if not isinstance(text, str):
        raise GeminiProtocolError("wrong-type", f"{what}.text must be a string")
    return text or None


def _flag(d: dict[str, Any], camel: str, snake: str) -> bool:
    value = _get(d, camel, snake)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise GeminiProtocolError("wrong-type", f"{camel} must be a boolean")
    return value


def _b64(data: Any) -> bytes:
    if not isinstance(data, str):
        raise GeminiProtocolError("wrong-type", "inline data must be a base64 string")
    try:
        if "-" in data or "_" in data:
            data = data.replace("-", "+").replace("_", "/")
        pad = -len(data) % 4
        if pad:
            data += "=" * pad
        return binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise GeminiProtocolError("bad-base64", str(exc)) from None


def _duration(value: Any) -> float:
    """Proto JSON ``Duration`` ("50s", "1.5s"; a bare number is accepted), clamped to an hour."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value) if abs(value) < 1e300 else math.inf
    elif isinstance(value, str) and len(value) <= 40:
        m = _DURATION.match(value)
        if m:
            seconds = float(m.group(1))
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise GeminiProtocolError("bad-duration", repr(str(value)[:20]))
    return min(seconds, MAX_GO_AWAY_S)


def _server_content(sc: Any, out: list[ServerEvent]) -> None:
    if not isinstance(sc, dict):
        raise GeminiProtocolError("wrong-type", "serverContent must be an object")
    if _flag(sc, "interrupted", "interrupted"):
        out.append(Interrupted())
    text = _text(_get(sc, "inputTranscription", "input_transcription"), "inputTranscription")
    if text:
        out.append(InputTranscription(text))
    turn = _get(sc, "modelTurn", "model_turn")
    if turn is not None:
        if not isinstance(turn, dict):
            raise GeminiProtocolError("wrong-type", "modelTurn must be an object")
        parts = turn.get("parts")
        if parts is None:
            parts = []
        if not isinstance(parts, list):
            raise GeminiProtocolError("wrong-type", "modelTurn.parts must be a list")
        for part in parts:
            if not isinstance(part, dict):
                raise GeminiProtocolError("wrong-type", "a part must be an object")
            inline = _get(part, "inlineData", "inline_data")
            if inline is not None:
                if not isinstance(inline, dict):
                    raise GeminiProtocolError("wrong-type", "inlineData must be an object")
                mime = _get(inline, "mimeType", "mime_type") or ""
                if not isinstance(mime, str) or not mime.startswith("audio/pcm"):
                    raise GeminiProtocolError("unsupported-mime", str(mime)[:40])
                m = _RATE.search(mime[:200])
                pcm = _b64(inline.get("data"))
                if pcm:
                    out.append(AudioChunk(pcm, int(m.group(1)) if m else 24000))
            else:
                text = part.get("text")
                if text is not None and not isinstance(text, str):
                    raise GeminiProtocolError("wrong-type", "part.text must be a string")
                if text:
                    out.append(TextPart(text))
    text = _text(_get(sc, "outputTranscription", "output_transcription"), "outputTranscription")
    if text:
        out.append(OutputTranscription(text))
    if _flag(sc, "generationComplete", "generation_complete"):
        out.append(GenerationComplete())
    if _flag(sc, "turnComplete", "turn_complete"):
        out.append(TurnComplete())


def _tool_call(tc: Any) -> ToolCall:
    if not isinstance(tc, dict):
        raise GeminiProtocolError("wrong-type", "toolCall must be an object")
    calls = _get(tc, "functionCalls", "function_calls") or []
    if not isinstance(calls, list):
        raise GeminiProtocolError("wrong-type", "functionCalls must be a list")
    parsed = []
    for call in calls:
        if not isinstance(call, dict):
            raise GeminiProtocolError("wrong-type", "a function call must be an object")
        cid, name, args = call.get("id", ""), call.get("name"), call.get("args", {})
        if not isinstance(name, str) or not name or not isinstance(cid, str):
            raise GeminiProtocolError("missing-field", "function call needs a name and an id")
        _short(name, "function call name")
        _short(cid, "function call id")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise GeminiProtocolError("wrong-type", "function call args must be an object")
        if not _depth_ok(args):
            raise GeminiProtocolError("too-deep", "function call args")
        parsed.append(FunctionCall(cid, name, args))
    return ToolCall(tuple(parsed))


def _model_audio(msg: dict[str, Any]) -> list[ServerEvent] | None:
    """The hot path: a message that is exactly one chunk of the model's 24 kHz audio (most of
    what Gemini sends while it talks), ``{"serverContent":{"modelTurn":{"parts":[{"inlineData":
    {"mimeType":"audio/pcm;rate=24000","data":...}}]}}}``: its events, as :func:`_parse` would
    give them. None: any other shape, for the full parse."""
    if len(msg) != 1:
        return None
    sc = msg.get("serverContent")
    if type(sc) is not dict or len(sc) != 1:
        return None
    turn = sc.get("modelTurn")
    if type(turn) is not dict or len(turn) != 1:
        return None
    parts = turn.get("parts")
    if type(parts) is not list or len(parts) != 1:
        return None
    part = parts[0]
    if type(part) is not dict or len(part) != 1:
        return None
    inline = part.get("inlineData")
    if type(inline) is not dict or len(inline) != 2 or inline.get("mimeType") != "audio/pcm;rate=24000":
        return None
    pcm = _b64(inline.get("data"))  # (raises on anything but base64 text, as the full parse does)
    return [AudioChunk(pcm, 24000)] if pcm else []


def _parse(msg: dict[str, Any]) -> list[ServerEvent]:
    audio = _model_audio(msg)
    if audio is not None:
        return audio
    return _parse_any(msg)


def _parse_any(msg: dict[str, Any]) -> list[ServerEvent]:
    """Every field the client reads, in camelCase or snake_case."""
    out: list[ServerEvent] = []
    if _get(msg, "setupComplete", "setup_complete") is not None:
        out.append(SetupComplete())
    sc = _get(msg, "serverContent", "server_content")
    if sc is not None:
        _server_content(sc, out)
    tc = _get(msg, "toolCall", "tool_call")
    if tc is not None:
        out.append(_tool_call(tc))
    cancel = _get(msg, "toolCallCancellation", "tool_call_cancellation")
    if cancel is not None:
        ids = cancel.get("ids", []) if isinstance(cancel, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise GeminiProtocolError("wrong-type", "toolCallCancellation.ids must be strings")
        for i in ids:
            _short(i, "cancelled id")
        out.append(ToolCallCancellation(tuple(ids)))
    ga = _get(msg, "goAway", "go_away")
    if ga is not None:
        if not isinstance(ga, dict):
            raise GeminiProtocolError("wrong-type", "goAway must be an object")
        left = _get(ga, "timeLeft", "time_left")
        out.append(GoAway(_duration(left) if left is not None else 0.0))
    sru = _get(msg, "sessionResumptionUpdate", "session_resumption_update")
    if sru is not None:
        if not isinstance(sru, dict):
            raise GeminiProtocolError("wrong-type", "sessionResumptionUpdate must be an object")
        handle = _get(sru, "newHandle", "new_handle")
        if handle is not None:
            _short(handle, "newHandle")
        out.append(SessionResumptionUpdate(handle or None, _flag(sru, "resumable", "resumable")))
    usage = _get(msg, "usageMetadata", "usage_metadata")
    if usage is not None:
        if not isinstance(usage, dict):
            raise GeminiProtocolError("wrong-type", "usageMetadata must be an object")
        if not _depth_ok(usage):
            raise GeminiProtocolError("too-deep", "usageMetadata")
        total = _get(usage, "totalTokenCount", "total_token_count")
        # An int64 in proto JSON may come as a string; anything else (or absurd) counts as 0.
        if isinstance(total, str) and total.isascii() and total.isdigit() and len(total) <= 19:
            total = int(total)
        if type(total) is not int or not 0 <= total < 2**63:
            total = 0
        out.append(UsageMetadata(total, usage))
    return out


def parse_server_message(data: bytes | str) -> list[ServerEvent]:
    """Parse one server frame into events. Raises only :class:`GeminiProtocolError`."""
    if not isinstance(data, (str, bytes, bytearray)):
        raise GeminiProtocolError("not-json", type(data).__name__)
    if len(data) > MAX_MESSAGE_BYTES:
        raise GeminiProtocolError("oversize", f"{len(data)} bytes")
    try:
        msg = loads_strict(data)
    except (ValueError, TypeError, RecursionError) as exc:
        raise GeminiProtocolError("not-json", type(exc).__name__) from None
    if not isinstance(msg, dict):
        raise GeminiProtocolError("not-object", type(msg).__name__)
    try:
        return _parse(msg)
    except GeminiProtocolError:
        raise
    except Exception as exc:  # defensive: nothing but the typed error leaves a parser
        raise GeminiProtocolError("malformed", type(exc).__name__) from None
