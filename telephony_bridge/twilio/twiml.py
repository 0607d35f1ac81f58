"""TwiML documents the webhook answers with, built with ``twilio.twiml.voice_response``.

``<Connect><Stream>`` opens a bidirectional Media Stream. The stream URL takes no query string,
so per-call data travels as ``<Parameter>`` elements (name and value each under 500 characters)
and comes back in the ``start`` message's ``customParameters``. When our websocket closes,
Twilio requests ``<Connect action>`` for what to do next.
"""

from __future__ import annotations

from collections.abc import Mapping

from twilio.twiml.voice_response import Connect, VoiceResponse

from ..errors import ConfigError

MAX_PARAMETER_CHARS = 500


def connect_twiml(stream_url: str, *, action_url: str | None = None,
                  parameters: Mapping[str, str] | None = None) -> str:
    if not stream_url.startswith("wss://") and not stream_url.startswith("ws://"):
        raise ConfigError(f"stream URL must be wss:// (got {stream_url.split('?')[0]!r})")
    if "?" in stream_url:
        raise ConfigError("Twilio stream URLs take no query string; use <Parameter>")
    response = VoiceResponse()
    connect = Connect(action=action_url) if action_url else Connect()
    stream = connect.stream(url=stream_url)
    for name, value in (parameters or {}).items():
        if len(name) >= MAX_PARAMETER_CHARS or len(value) >= MAX_PARAMETER_CHARS:
            raise ConfigError(f"<Parameter> {name[:40]!r} is over {MAX_PARAMETER_CHARS} characters")
        stream.parameter(name=name, value=value)
    response.append(connect)
    return str(response)


def hangup_twiml(say: str | None = None, *, language: str | None = None) -> str:
    """``<Say>`` (in ``language``, a BCP-47 tag such as ``en-US``) if given, then ``<Hangup/>``."""
    response = VoiceResponse()
    if say:
        if language:
            response.say(say, language=language)
        else:
            response.say(say)
    response.hangup()
    return str(response)


def redirect_twiml(url: str, *, pause_s: int = 0) -> str:
    """``<Redirect method="POST">``: Twilio asks ``url`` (through the load balancer: another
    replica) what to do, after ``<Pause>`` of ``pause_s`` seconds if given (a draining replica)."""
    response = VoiceResponse()
    if pause_s:
        response.pause(length=pause_s)
    response.redirect(url, method="POST")
    return str(response)
