"""Outbound Media Streams messages (``media``, ``mark``, ``clear``) as JSON text.

Built by string formatting around a prefix computed once per stream: this runs 50 times a
second per call, so it avoids building a dict and running ``json.dumps`` for every frame.
Base64 output and our own mark names never need JSON escaping; the stream SID is escaped once.
"""

from __future__ import annotations

import binascii
import json


class OutboundMessages:
    """Builds the JSON text frames the bridge sends to Twilio for one stream."""

    __slots__ = ("stream_sid", "_media_prefix", "_mark_prefix", "_clear")

    def __init__(self, stream_sid: str) -> None:
        self.stream_sid = stream_sid
        sid = json.dumps(stream_sid)
        self._media_prefix = '{"event":"media","streamSid":' + sid + ',"media":{"payload":"'
        self._mark_prefix = '{"event":"mark","streamSid":' + sid + ',"mark":{"name":'
        self._clear = '{"event":"clear","streamSid":' + sid + "}"

    def media(self, ulaw: bytes) -> str:
        return self._media_prefix + binascii.b2a_base64(ulaw, newline=False).decode("ascii") + '"}}'

    def mark(self, name: str) -> str:
        return self._mark_prefix + json.dumps(name) + "}}"

    def clear(self) -> str:
        return self._clear
