"""Inbound Media Streams messages as typed values.

Twilio sends JSON text frames: ``connected``, ``start``, ``media``, ``dtmf``, ``mark``, ``stop``
(Media Streams "WebSocket messages" reference). ``sequenceNumber``, ``chunk`` and ``timestamp``
are strings holding integers. :func:`parse_event` turns one frame into one event or raises
:class:`~telephony_bridge.errors.TwilioProtocolError`; it never raises anything else
(``benchmarks/fuzz.py`` and ``tests/test_parser_properties.py`` hold it to that).

What counts as malformed, and what happens (``fatal`` ends the call, the rest are counted and
skipped by the call core)::

    kind                 fatal  when
    oversize             yes    frame over MAX_MESSAGE_BYTES (real frames are ~300 bytes; not Twilio)
    not-json             no     not UTF-8 JSON, NaN/Infinity, nesting past the decoder's limit
    not-object           no     JSON that is not an object
    missing-field        no*    a required field is absent (*fatal for ``start.streamSid``)
    wrong-type           no     a field of the wrong JSON type, an integer string that is not one
    bad-event            no     ``event`` is not a short identifier
    bad-base64           no     ``media.payload`` is not strict base64
    empty-payload        no     ``media.payload`` decodes to nothing (Twilio never sends it)
    payload-too-long     no     over 1 s of audio (8000 μ-law bytes) in one frame: frames are 20 ms
    wrong-track          no     media on a track other than ``inbound`` (a bidirectional stream has
                                only that one; anything else must not reach Gemini as the caller)
    bad-sid              yes    ``streamSid``/``callSid``/``accountSid`` outside [A-Za-z0-9_-]{1,64}
    unsupported-format   yes    ``start.mediaFormat`` is not μ-law 8 kHz mono
    bad-digit, bad-mark  no     a DTMF digit or mark name that cannot be ours / a key

μ-law is one byte per sample, so a payload of any (non-zero) length is whole samples: an odd
size is not an error. An event name this version does not know is not an error either: it
becomes :class:`Unknown` (counted, ignored), because Twilio adds events over time.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Union

from ..errors import TwilioProtocolError
from ..strict_json import loads_strict

#: Largest text frame we parse. A 20 ms frame is ~300 bytes; Twilio never sends more than a few KB.
MAX_MESSAGE_BYTES = 64 * 1024
#: One second of 8 kHz μ-law. Twilio sends 20 ms (160 bytes); more than this in one frame is not
#: Twilio, and skipping it keeps one frame from holding the call core for long.
MAX_PAYLOAD_BYTES = 8000
_MAX_PAYLOAD_B64 = (MAX_PAYLOAD_BYTES + 2) // 3 * 4
#: ``sequenceNumber``/``chunk``/``timestamp``: integers in [0, 2**53] (JSON-safe).
MAX_COUNTER = 2**53
#: Mark names are ours (``t3.17``); anything longer is not one of them.
MAX_MARK_NAME = 256
_SID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_EVENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_DTMF_DIGITS = frozenset("0123456789*#ABCDabcdw")


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: dict[str, str] = field(hash=False)
    encoding: str
    sample_rate: int
    channels: int


class Media(NamedTuple):
    """(A named tuple, not a frozen dataclass: 50 a second per call, built in a third of the time.)"""

    track: str
    chunk: int
    timestamp_ms: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Dtmf:
    track: str
    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    call_sid: str
    account_sid: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """An event name this version does not know. Ignored, but counted."""

    event: str


Event = Union[Connected, Start, Media, Dtmf, Mark, Stop, Unknown]


def _obj(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise TwilioProtocolError("missing-field", f"{key!r} must be an object")
    return value


def _str(parent: dict[str, Any], key: str, default: str | None = None) -> str:
    value = parent.get(key, default)
    if not isinstance(value, str):
        if value is None:
            raise TwilioProtocolError("missing-field", f"{key!r} is required")
        raise TwilioProtocolError("wrong-type", f"{key!r} must be a string")
    return value


def _intstr(parent: dict[str, Any], key: str, default: int | None = None) -> int:
    value = parent.get(key)
    # Twilio documents these as strings (checked first: two per media frame); accept plain
    # integers too. ASCII digits only: str.isdigit() is true for "²" and "١", which int()
    # refuses or reads differently.
    if type(value) is str:
        if 0 < len(value) <= 16 and value.isdigit() and value.isascii():
            return int(value)
    elif value is None and default is not None:
        return default
    elif type(value) is int:
        if 0 <= value <= MAX_COUNTER:
            return value
    raise TwilioProtocolError("wrong-type", f"{key!r} must be an integer string")


def _sid(value: Any, what: str) -> str:
    """A Twilio SID we will echo back (``streamSid``) or log: a short safe token, or fatal."""
    if not isinstance(value, str) or not value:
        raise TwilioProtocolError("missing-field", f"{what!r} is required", fatal=True)
    if not _SID.fullmatch(value):
        raise TwilioProtocolError("bad-sid", f"{what!r} is not a SID", fatal=True)
    return value


def _parse_media(msg: dict[str, Any]) -> Media:
    media = _obj(msg, "media")
    payload = media.get("payload")
    if not isinstance(payload, str):
        raise TwilioProtocolError("missing-field", "'media.payload' must be a base64 string")
    audio = _audio(payload)
    track = _str(media, "track", "inbound")
    if track != "inbound":
        raise TwilioProtocolError("wrong-track", track[:20])
    return Media(track, _intstr(media, "chunk", 0), _intstr(media, "timestamp", 0), audio)


#: A media frame exactly as Twilio lays it out (its documented key order, compact JSON). A frame
#: this matches is valid JSON with no escapes and no repeated keys, and its fields already have the
#: types ``_parse_media`` checks, so the match gives the same :class:`Media` as the full parse at a
#: third of the cost (no dicts built). Anything else (other key order, spaces, extra keys) takes
#: the full parse: the pattern only saves time, it never decides what is valid.
_TWILIO_MEDIA = re.compile(
    r'\{"event":"media","sequenceNumber":"[0-9]{1,16}","media":\{"track":"inbound",'
    r'"chunk":"([0-9]{1,16})","timestamp":"([0-9]{1,16})","payload":"([A-Za-z0-9+/=]+)"\},'
    r'"streamSid":"[A-Za-z0-9_-]{1,64}"\}').fullmatch


def _audio(payload: str) -> bytes:
    """The μ-law bytes of a ``media.payload``: strict base64, not empty, at most a second."""
    if len(payload) > _MAX_PAYLOAD_B64:
        raise TwilioProtocolError("payload-too-long", f"{len(payload)} base64 characters")
    try:
        audio = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise TwilioProtocolError("bad-base64", str(exc)[:80]) from None
    if not audio:
        raise TwilioProtocolError("empty-payload")
    if len(audio) > MAX_PAYLOAD_BYTES:
        raise TwilioProtocolError("payload-too-long", f"{len(audio)} bytes")
    return audio


def _parse_start(msg: dict[str, Any]) -> Start:
    start = _obj(msg, "start")
    # A bad ``start`` is fatal: without it there is no call to carry on with.
    tracks = start.get("tracks", ["inbound"])
    if not isinstance(tracks, list) or not all(isinstance(t, str) and len(t) <= 32 for t in tracks):
        raise TwilioProtocolError("wrong-type", "'start.tracks' must be a list of strings", fatal=True)
    params = start.get("customParameters", {})
    if params is None:
        params = {}
    if not isinstance(params, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in params.items()
    ):
        raise TwilioProtocolError("wrong-type", "'start.customParameters' must map strings to strings",
                                  fatal=True)
    fmt = start.get("mediaFormat", {})
    if not isinstance(fmt, dict):
        raise TwilioProtocolError("wrong-type", "'start.mediaFormat' must be an object", fatal=True)
    encoding = fmt.get("encoding", "audio/x-mulaw")
    rate = fmt.get("sampleRate", 8000)
    channels = fmt.get("channels", 1)
    # ``type(...) is int``: 8000.0 and True (== 1) are not what Twilio sends.
    if encoding != "audio/x-mulaw" or type(rate) is not int or rate != 8000 \
            or type(channels) is not int or channels != 1:
        raise TwilioProtocolError(
            "unsupported-format", f"{str(encoding)[:40]!r} {str(rate)[:12]} Hz {str(channels)[:4]} ch",
            fatal=True,
        )
    stream_sid = _sid(start.get("streamSid", msg.get("streamSid")), "streamSid")
    call_sid = _sid(start.get("callSid"), "callSid")
    account_sid = start.get("accountSid", "")
    if account_sid != "":
        account_sid = _sid(account_sid, "accountSid")
    return Start(
        stream_sid=stream_sid,
        call_sid=call_sid,
        account_sid=account_sid,
        tracks=tuple(tracks),
        custom_parameters=dict(params),
        encoding=encoding,
        sample_rate=rate,
        channels=channels,
    )


def parse_event(data: str | bytes) -> Event:
    """Parse one Media Streams frame. Raises only :class:`TwilioProtocolError`."""
    if not isinstance(data, (str, bytes, bytearray, memoryview)):
        raise TwilioProtocolError("not-json", type(data).__name__)
    if len(data) > MAX_MESSAGE_BYTES:
        raise TwilioProtocolError("oversize", f"{len(data)} bytes", fatal=True)
    if type(data) is str:
        m = _TWILIO_MEDIA(data)
        if m is not None:  # the hot path: 50 a second per call
            chunk, timestamp, payload = m.groups()
            return Media("inbound", int(chunk), int(timestamp), _audio(payload))
    try:
        msg = loads_strict(data if not isinstance(data, memoryview) else bytes(data))
    except (ValueError, TypeError, RecursionError) as exc:
        raise TwilioProtocolError("not-json", type(exc).__name__) from None
    if not isinstance(msg, dict):
        raise TwilioProtocolError("not-object", type(msg).__name__)
    event = msg.get("event")
    if not isinstance(event, str):
        raise TwilioProtocolError("missing-field", "'event' is required")
    try:
        if event == "media":
            return _parse_media(msg)
        if event == "mark":
            name = _str(_obj(msg, "mark"), "name")
            if not name or len(name) > MAX_MARK_NAME:
                raise TwilioProtocolError("bad-mark", f"{len(name)} characters")
            return Mark(name=name)
        if event == "start":
            return _parse_start(msg)
        if event == "connected":
            return Connected(protocol=_str(msg, "protocol", "")[:64], version=_str(msg, "version", "")[:64])
        if event == "dtmf":
            dtmf = _obj(msg, "dtmf")
            digit = _str(dtmf, "digit")
            if digit not in _DTMF_DIGITS:
                raise TwilioProtocolError("bad-digit", repr(digit[:8]))
            return Dtmf(track=_str(dtmf, "track", "inbound_track"), digit=digit)
        if event == "stop":
            stop = msg.get("stop", {})
            if not isinstance(stop, dict):
                raise TwilioProtocolError("wrong-type", "'stop' must be an object")
            return Stop(call_sid=_str(stop, "callSid", ""), account_sid=_str(stop, "accountSid", ""))
    except TwilioProtocolError:
        raise
    except Exception as exc:  # defensive: nothing but the typed error leaves a parser
        raise TwilioProtocolError("malformed", type(exc).__name__) from None
    if not _EVENT_NAME.fullmatch(event):
        raise TwilioProtocolError("bad-event", repr(event[:20]))
    return Unknown(event=event)
