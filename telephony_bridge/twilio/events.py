"""Inbound Media Streams messages as typed values.

Twilio sends JSON text frames: ``connected``, ``start``, ``media``, ``dtmf``, ``mark``, ``stop``
(Media Streams "WebSocket messages" reference). ``sequenceNumber``, ``chunk`` and ``timestamp``
are strings holding integers. :func:`parse_event` turns one frame into one event or raises
:class:`~telephony_bridge.errors.TwilioProtocolError`; it never raises anything else.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Union

from ..errors import TwilioProtocolError

#: Largest text frame we parse. A 20 ms frame is ~300 bytes; Twilio never sends more than a few KB.
MAX_MESSAGE_BYTES = 64 * 1024


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


@dataclass(frozen=True, slots=True)
class Media:
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
    if value is None and default is not None:
        return default
    # Twilio documents these as strings; accept plain integers too.
    if isinstance(value, bool):
        raise TwilioProtocolError("wrong-type", f"{key!r} must be an integer string")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= 18:
        return int(value)
    raise TwilioProtocolError("wrong-type", f"{key!r} must be an integer string")


def _parse_media(msg: dict[str, Any]) -> Media:
    media = _obj(msg, "media")
    payload = media.get("payload")
    if not isinstance(payload, str):
        raise TwilioProtocolError("missing-field", "'media.payload' must be a base64 string")
    try:
        audio = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise TwilioProtocolError("bad-base64", str(exc)) from None
    return Media(
        track=_str(media, "track", "inbound"),
        chunk=_intstr(media, "chunk", 0),
        timestamp_ms=_intstr(media, "timestamp", 0),
        payload=audio,
    )


def _parse_start(msg: dict[str, Any]) -> Start:
    start = _obj(msg, "start")
    tracks = start.get("tracks", ["inbound"])
    if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
        raise TwilioProtocolError("wrong-type", "'start.tracks' must be a list of strings")
    params = start.get("customParameters", {})
    if not isinstance(params, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in params.items()
    ):
        raise TwilioProtocolError("wrong-type", "'start.customParameters' must map strings to strings")
    fmt = start.get("mediaFormat", {})
    if not isinstance(fmt, dict):
        raise TwilioProtocolError("wrong-type", "'start.mediaFormat' must be an object")
    encoding = fmt.get("encoding", "audio/x-mulaw")
    rate = fmt.get("sampleRate", 8000)
    channels = fmt.get("channels", 1)
    if encoding != "audio/x-mulaw" or rate != 8000 or channels != 1:
        raise TwilioProtocolError(
            "unsupported-format", f"{encoding!r} {rate!r} Hz {channels!r} ch", fatal=True
        )
    stream_sid = start.get("streamSid", msg.get("streamSid"))
    if not isinstance(stream_sid, str) or not stream_sid:
        raise TwilioProtocolError("missing-field", "'streamSid' is required", fatal=True)
    return Start(
        stream_sid=stream_sid,
        call_sid=_str(start, "callSid"),
        account_sid=_str(start, "accountSid", ""),
        tracks=tuple(tracks),
        custom_parameters=dict(params),
        encoding=encoding,
        sample_rate=rate,
        channels=channels,
    )


def parse_event(data: str | bytes) -> Event:
    """Parse one Media Streams frame. Raises only :class:`TwilioProtocolError`."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise TwilioProtocolError("oversize", f"{len(data)} bytes")
    try:
        msg = json.loads(data)
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
            return Mark(name=_str(_obj(msg, "mark"), "name"))
        if event == "start":
            return _parse_start(msg)
        if event == "connected":
            return Connected(protocol=_str(msg, "protocol", ""), version=_str(msg, "version", ""))
        if event == "dtmf":
            dtmf = _obj(msg, "dtmf")
            digit = _str(dtmf, "digit")
            if len(digit) != 1 or digit not in "0123456789*#ABCDabcdw":
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
    return Unknown(event=event[:64])
