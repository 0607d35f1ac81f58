"""The life of one Media Stream as a state machine.

States and the events each accepts (anything else is a protocol error)::

    AWAITING_START --connected--> AWAITING_START
    AWAITING_START --start------> STREAMING
    STREAMING      --media/dtmf/mark--> STREAMING
    STREAMING      --stop-------> STOPPED
    any            --unknown----> (unchanged, counted)

``connected`` is optional (some proxies drop it). Media before ``start`` is skipped and counted;
a second ``start`` is fatal: it would mean two calls on one socket.
"""

from __future__ import annotations

import enum

from ..errors import TwilioProtocolError
from .events import Connected, Event, Media, Start, Stop, Unknown, parse_event


class StreamState(enum.Enum):
    AWAITING_START = "awaiting-start"
    STREAMING = "streaming"
    STOPPED = "stopped"


class TwilioStream:
    """Validates the order of inbound events for one stream."""

    __slots__ = ("state", "start", "unknown_events", "last_timestamp_ms")

    def __init__(self) -> None:
        self.state = StreamState.AWAITING_START
        self.start: Start | None = None
        self.unknown_events = 0
        self.last_timestamp_ms = -1

    def receive(self, data: str | bytes) -> Event:
        """Parse one frame and check it fits the stream's state."""
        event = parse_event(data)
        state = self.state
        if type(event) is Media:  # the hot path first
            if state is not StreamState.STREAMING:
                raise TwilioProtocolError("media-before-start" if state is StreamState.AWAITING_START
                                          else "media-after-stop")
            self.last_timestamp_ms = event.timestamp_ms
            return event
        if isinstance(event, Start):
            if state is not StreamState.AWAITING_START:
                raise TwilioProtocolError("second-start", event.stream_sid[:40], fatal=True)
            self.state = StreamState.STREAMING
            self.start = event
        elif isinstance(event, Stop):
            self.state = StreamState.STOPPED
        elif isinstance(event, Connected):
            if state is not StreamState.AWAITING_START:
                raise TwilioProtocolError("late-connected")
        elif isinstance(event, Unknown):
            self.unknown_events += 1
        elif state is not StreamState.STREAMING:
            raise TwilioProtocolError("event-before-start" if state is StreamState.AWAITING_START
                                      else "event-after-stop")
        return event
