"""Twilio Media Streams, sans I/O: typed events, outbound builders, stream state, TwiML."""

from .events import Connected, Dtmf, Event, Mark, Media, Start, Stop, Unknown, parse_event
from .outbound import OutboundMessages
from .stream import StreamState, TwilioStream
from .twiml import connect_twiml, hangup_twiml

__all__ = [
    "Connected", "Dtmf", "Event", "Mark", "Media", "Start", "Stop", "Unknown", "parse_event",
    "OutboundMessages", "StreamState", "TwilioStream", "connect_twiml", "hangup_twiml",
]
