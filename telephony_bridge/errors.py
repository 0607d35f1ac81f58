"""Every exception telephony-bridge raises on purpose.

::

    BridgeError
    ├── ConfigError              a setting is missing or invalid (one line, names the variable)
    └── ProtocolError            a peer sent something we cannot use
        ├── TwilioProtocolError  a Media Streams message from Twilio
        └── GeminiProtocolError  a Live API message from Gemini

A parser of peer input raises nothing but its ``ProtocolError`` subclass. ``fatal`` says
whether the call can go on (skip the message and count it) or must end (cleanly, with audio
to the caller where possible). ``kind`` is a short stable label used in logs and metrics.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of all deliberate telephony-bridge errors."""


class ConfigError(BridgeError):
    """A required setting is missing or has an invalid value."""


class ProtocolError(BridgeError):
    """A peer sent a message we cannot use."""

    peer = "peer"

    def __init__(self, kind: str, detail: str = "", *, fatal: bool = False) -> None:
        self.kind = kind
        self.detail = detail
        self.fatal = fatal
        super().__init__(f"{self.peer} protocol error [{kind}]{': ' + detail if detail else ''}")


class TwilioProtocolError(ProtocolError):
    peer = "twilio"


class GeminiProtocolError(ProtocolError):
    peer = "gemini"
