"""One Gemini Live session (possibly over several connections) as a state machine.

::

    IDLE ──connection_opened──▶ AWAITING_SETUP_COMPLETE ──setupComplete──▶ ACTIVE
    ACTIVE ──goAway──▶ DRAINING          (the connection will be cut after timeLeft)
    any ──connection_closed──▶ IDLE      (transient close: reconnect with the handle)
                              ▶ CLOSED   (permanent close)

The Live API accepts nothing but ``setup`` until ``setupComplete`` arrives, so :meth:`can_send`
is false until then. The newest resumable handle (``sessionResumptionUpdate``) is kept so a new
connection resumes the conversation; tool calls stay pending until answered or cancelled.
"""

from __future__ import annotations

import enum
from dataclasses import replace

from ..errors import GeminiProtocolError
from .messages import (
    FunctionCall, GoAway, ServerEvent, SessionResumptionUpdate, SetupComplete, SetupConfig, ToolCall,
    ToolCallCancellation, build_setup, parse_server_message,
)

#: Close codes after which reconnecting (and resuming) makes sense. 1007 (bad request) and
#: 1008 (policy: model not found, stale handle) are not among them.
TRANSIENT_CLOSE_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 1014})


class SessionState(enum.Enum):
    IDLE = "idle"
    AWAITING_SETUP_COMPLETE = "awaiting-setup-complete"
    ACTIVE = "active"
    DRAINING = "draining"
    CLOSED = "closed"


class GeminiSession:
    def __init__(self, setup: SetupConfig) -> None:
        self.setup = setup
        self.state = SessionState.IDLE
        self.handle: str | None = setup.resumption_handle
        self.pending_tool_calls: dict[str, FunctionCall] = {}
        self.connections = 0
        self.go_away_deadline: float | None = None
        self.last_close_code: int | None = None

    def can_send(self) -> bool:
        return self.state is SessionState.ACTIVE or self.state is SessionState.DRAINING

    def connection_opened(self, now: float) -> str:
        """A websocket is open: returns the ``setup`` message to send first."""
        if self.state is SessionState.CLOSED:
            raise RuntimeError("session is closed")
        self.connections += 1
        self.state = SessionState.AWAITING_SETUP_COMPLETE
        self.go_away_deadline = None
        return build_setup(replace(self.setup, resumption_handle=self.handle))

    def receive(self, data: bytes | str, now: float) -> list[ServerEvent]:
        events = parse_server_message(data)
        for event in events:
            if isinstance(event, SetupComplete):
                if self.state is not SessionState.AWAITING_SETUP_COMPLETE:
                    raise GeminiProtocolError("unexpected-setup-complete")
                self.state = SessionState.ACTIVE
            elif self.state is SessionState.AWAITING_SETUP_COMPLETE:
                raise GeminiProtocolError("before-setup-complete", type(event).__name__, fatal=True)
            elif isinstance(event, SessionResumptionUpdate):
                if event.resumable and event.new_handle:
                    self.handle = event.new_handle
            elif isinstance(event, ToolCall):
                for call in event.calls:
                    self.pending_tool_calls.setdefault(call.id, call)
            elif isinstance(event, ToolCallCancellation):
                for cid in event.ids:
                    self.pending_tool_calls.pop(cid, None)
            elif isinstance(event, GoAway):
                self.state = SessionState.DRAINING
                self.go_away_deadline = now + event.time_left_s
        return events

    def tool_answered(self, call_id: str) -> bool:
        return self.pending_tool_calls.pop(call_id, None) is not None

    def connection_closed(self, code: int | None, now: float) -> bool:
        """The websocket closed. Returns True when a reconnect (with resumption) makes sense."""
        self.last_close_code = code
        transient = code is None or code in TRANSIENT_CLOSE_CODES
        self.state = SessionState.IDLE if transient else SessionState.CLOSED
        return transient

    def close(self) -> None:
        self.state = SessionState.CLOSED
