"""The call core: one phone call joined to one Gemini Live session, sans I/O.

Inputs are Twilio frames, Gemini frames, connection changes and timer ticks, each with the
current time ``now`` (seconds, any monotonic origin). Outputs are queued text frames:
:attr:`CallCore.twilio_out` and :attr:`CallCore.gemini_out`, which the adapter drains in
order, and :meth:`CallCore.next_deadline`, the time at which :meth:`CallCore.tick` wants to
run next. Nothing here sleeps, awaits or touches a socket, so every timer runs on a fake clock.

Data path::

    Twilio media ─▶ μ-law 8k ─▶ InboundConverter ─▶ PCM 16k ─▶ realtimeInput ─▶ Gemini
    Gemini audio ─▶ PCM 24k ─▶ OutboundConverter ─▶ μ-law 8k ─▶ Framer (160 B) ─▶ paced ─▶ Twilio

Pacing: agent frames wait in :attr:`CallCore.queue` and are forwarded no further ahead of the
caller's playback than ``playback_lead_s``. A ``mark`` follows every few frames; Twilio echoes it
when the audio before it has played, which tells us what the caller has actually heard. On
Gemini's ``interrupted`` the queue is dropped, the converter reset and Twilio told to ``clear``;
marks that come back after that mean "flushed", not "played".
"""

from __future__ import annotations

import logging
from math import sqrt
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .dsp import Framer, InboundConverter, OutboundConverter, mean_square_ulaw, rms_ulaw
from .errors import GeminiProtocolError, ProtocolError, TwilioProtocolError
from .gemini import messages as gm
from .gemini.session import GeminiSession, SessionState
from .log import log_event
from .metrics import Metrics
from .stall_watch import NUDGE_TEXT, StallConfig, StallState, StallStep, StallWatch
from .twilio import events as te
from .twilio.outbound import OutboundMessages
from .twilio.stream import TwilioStream

logger = logging.getLogger("telephony_bridge.call")

FRAME_S = 0.02
FRAME_BYTES = 160


@dataclass(slots=True)
class CallConfig:
    #: Forward agent audio at most this far ahead of the caller's playback.
    playback_lead_s: float = 0.16
    #: Place a Twilio mark after every this many agent frames (and at the end of a turn).
    mark_every_frames: int = 5
    #: Caller frames above this RMS (full scale 1.0) count as speech, for latency figures.
    speech_rms: float = 0.05
    #: Caller audio kept while Gemini is not ready (connecting, reconnecting), sent once it is.
    max_pending_input_s: float = 5.0
    #: Caller audio already sent since the newest resumption handle, replayed to a resumed
    #: connection so nothing the caller said after that handle is lost.
    replay_input_s: float = 10.0
    #: Filler phrase when a tool call is still running after this long and nothing plays.
    filler_after_s: float = 0.8
    filler_repeat_s: float = 4.0
    filler_max: int = 3
    #: No agent audio this long after the greeting request or the caller's end of turn:
    #: nudge the model once, then apologise. The last resort: silent stalls are found at once
    #: by the stall watch (``stall``, see stall_watch.py).
    reply_watchdog_s: float = 8.0
    #: Silent stalls (an empty model turn, or no turn at all): detection and audible recovery.
    stall: StallConfig = field(default_factory=StallConfig)
    #: Names of the tools the adapter can run (None: none; calls get an error response).
    tool_names: frozenset[str] | None = None
    #: After end_call: wait this long for a goodbye to start, and at most this long in all.
    end_call_grace_s: float = 1.5
    end_call_timeout_s: float = 15.0
    #: goAway: hand over at a quiet moment, or this long before the cut at the latest.
    handover_margin_s: float = 2.0
    #: While Gemini is down, say "one moment" if nothing else plays after this long.
    reconnect_notice_after_s: float = 0.6
    #: A call longer than this is ended (a runaway call costs money and holds a line).
    max_call_s: float = 3600.0
    #: A stream that sends no media for this long is dead (Twilio sends 50 frames a second).
    no_media_timeout_s: float = 10.0
    #: Text turn that makes the agent speak first; None to wait for the caller.
    greeting_prompt: str | None = "The caller has just connected. Greet them and begin the interview."


@dataclass(slots=True)
class AgentTurn:
    index: int
    started: float  # first frame forwarded to Twilio
    text: str = ""
    frames_sent: int = 0
    frames_heard: int = 0
    interrupted: bool = False
    latency_s: float | None = None
    ended: float | None = None


class CallCore:
    """Joins a Twilio Media Stream to a Gemini Live session. See the module docstring."""

    def __init__(self, setup: gm.SetupConfig, config: CallConfig | None = None, *, now: float,
                 metrics: Metrics | None = None, phrases: Callable[[str], bytes | None] | None = None,
                 gate: Any = None) -> None:
        self.config = config or CallConfig()
        self.metrics = metrics
        #: Pre-rendered μ-law phrases by kind ("filler", "reconnect", "apology", "goodbye_error").
        self.phrases = phrases
        #: The echo gate (see echo_gate.py): decides per caller frame what Gemini hears.
        self.gate = gate
        self._silence_frame = b"\xff" * FRAME_BYTES
        self._gate_last: str | None = None
        self.t0 = now
        self.stream = TwilioStream()
        self.session = GeminiSession(setup)
        self.twilio_out: deque[str] = deque()
        self.gemini_out: deque[str] = deque()
        self.ended: str | None = None

        self._inbound = InboundConverter()
        self._outbound = OutboundConverter()
        self._framer = Framer(FRAME_BYTES)
        self._audio_in = gm.AudioInput(16000)
        self._messages: OutboundMessages | None = None
        self._pending_input: deque[str] = deque(maxlen=max(1, int(self.config.max_pending_input_s / FRAME_S)))
        self._since_handle: deque[str] = deque(maxlen=max(1, int(self.config.replay_input_s / FRAME_S)))
        self._phrase_queue: deque[bytes] = deque()
        self._phrase_seq = 0
        self._model_turn_open = False

        # Tools: requests for the adapter to run, ids for it to cancel, what is running.
        self.tool_requests: deque[gm.FunctionCall] = deque()
        self.tool_cancellations: deque[str] = deque()
        self._tools_running: dict[str, tuple[gm.FunctionCall, float]] = {}
        self._seen_tool_ids: set[str] = set()
        self._filler_next: float | None = None
        self._fillers_this_wait = 0
        self.notes: list[dict[str, Any]] = []
        self.tool_log: list[dict[str, Any]] = []

        # End of call, watchdogs, resilience.
        self._end_requested: tuple[str, float] | None = None
        self._end_turns_at_request = 0
        self._closing: tuple[str, float] | None = None  # ending after a last phrase has played
        self._awaiting_reply_since: float | None = None
        self._nudged = False
        self._handover = False
        self._down_since: float | None = None
        self._notice_played = False
        self._fresh_fallback = False
        self._cut_mid_turn = False
        self.stall = StallWatch(self.config.stall)
        silence_ms = setup.silence_duration_ms
        #: Gemini commits a caller turn this long after their speech ends (unset: assume 1 s).
        self._vad_s = (1000 if silence_ms is None else silence_ms) / 1000
        #: The newest resumable handle, for the adapter to persist (it clears this).
        self.new_handle: str | None = None
        #: Agent frames waiting for their turn to go to Twilio.
        self.queue: deque[bytes | None] = deque()
        self._turn_sent = False  # the current agent turn's last frame has been forwarded
        self._playout_end = now  # when Twilio's buffer runs dry, as far as we have sent
        self._frames_since_mark = 0
        self._mark_seq = 0
        self._pending_marks: deque[tuple[str, int, int]] = deque()  # (name, turn, frames covered)
        self._flushed_marks: set[str] = set()
        self._generation_done = False

        self._last_media = now
        self.call_sid: str | None = None
        self.stream_sid: str | None = None
        self.custom_parameters: dict[str, str] = {}
        self._greeted = False

        # Records.
        self.timeline: list[dict[str, Any]] = []
        self.transcript: list[dict[str, Any]] = []
        self.turns: list[AgentTurn] = []
        self._turn: AgentTurn | None = None
        self._pending_agent_text = ""
        self._caller_text: list[str] = []
        self._caller_turn_start: float | None = None
        self.caller_rms = array("f")
        self.agent_rms = array("f")
        self._last_caller_speech: float | None = None
        self._caller_spoke = False
        self.counters: dict[str, int] = {
            "twilio_frames_in": 0, "twilio_frames_out": 0, "gemini_chunks_in": 0,
            "twilio_errors": 0, "gemini_errors": 0, "barge_ins": 0, "marks_played": 0,
            "marks_flushed": 0, "unknown_events": 0, "input_dropped_frames": 0,
            "fillers": 0, "nudges": 0, "apologies": 0, "reconnects": 0, "handovers": 0,
            "repeated_tool_calls": 0, "input_replayed_frames": 0, "phrases": 0,
            "stalls": 0, "stall_nudges": 0, "stall_phrases": 0, "stall_recovered": 0, "stall_apologies": 0,
        }
        self.protocol_errors: dict[str, int] = {}
        #: When the last ``interrupted`` arrived, until its ``clear`` is written (see clear_written).
        self.interrupted_at: float | None = None
        self.clear_reactions_s: list[float] = []

    # -- records -------------------------------------------------------------------------------

    def _t(self, now: float) -> float:
        return round(now - self.t0, 3)

    def _event(self, now: float, kind: str, **fields: Any) -> None:
        fields["t"] = self._t(now)
        fields["kind"] = kind
        self.timeline.append(fields)

    def end(self, reason: str, now: float) -> None:
        """The adapter ends the call (its own failure, shutdown)."""
        self._end(now, reason)

    def resume_stored_session(self, handle: str, now: float) -> None:
        """This call's Gemini session began on another stream or replica: resume, don't greet."""
        self.session.handle = handle
        self._greeted = True
        self._event(now, "resume_from_store")

    def _end(self, now: float, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
            self._finish_agent_turn(now)
            self._event(now, "call_end", reason=reason)
            log_event(logger, "call.end", call_sid=self.call_sid, reason=reason, **self.summary())

    def _protocol_error(self, now: float, err: ProtocolError) -> None:
        key = f"{err.peer}:{err.kind}"
        self.protocol_errors[key] = self.protocol_errors.get(key, 0) + 1
        self.counters["twilio_errors" if err.peer == "twilio" else "gemini_errors"] += 1
        if self.metrics is not None:
            self.metrics.protocol_errors.labels(peer=err.peer, kind=err.kind).inc()
        if self.protocol_errors[key] <= 3:  # a flood of one kind logs three times, then counts
            self._event(now, "protocol_error", peer=err.peer, error=err.kind, fatal=err.fatal)
            log_event(logger, "call.protocol_error", logging.WARNING, call_sid=self.call_sid,
                      peer=err.peer, error=err.kind, detail=err.detail[:200], fatal=err.fatal)
        if err.fatal:
            self._end(now, f"{err.peer}-protocol-error")

    # -- Twilio side ---------------------------------------------------------------------------

    def receive_twilio(self, data: str | bytes, now: float) -> None:
        """One text frame from Twilio's websocket."""
        try:
            event = self.stream.receive(data)
        except TwilioProtocolError as err:
            self._protocol_error(now, err)
            return
        if type(event) is te.Media:
            self._caller_audio(event.payload, now)
            self._pump(now)
        elif isinstance(event, te.Mark):
            self._mark_returned(event.name, now)
        elif isinstance(event, te.Start):
            self._started(event, now)
        elif isinstance(event, te.Dtmf):
            self._event(now, "dtmf", digit=event.digit)
            self._send_gemini(gm.client_text(f"[The caller pressed the phone key {event.digit}]"))
        elif isinstance(event, te.Stop):
            self._event(now, "twilio_stop")
            self._end(now, "caller-hangup")
        elif isinstance(event, te.Unknown):
            self.counters["unknown_events"] += 1
        elif isinstance(event, te.Connected):
            self._event(now, "twilio_connected", protocol=event.protocol)

    def receive_twilio_closed(self, now: float) -> None:
        """Twilio's websocket closed (without a ``stop`` if the call is still on)."""
        if self.ended is None:
            self._event(now, "twilio_disconnected")
            self._end(now, "twilio-disconnected")

    def _started(self, start: te.Start, now: float) -> None:
        self.call_sid = start.call_sid
        self.stream_sid = start.stream_sid
        self.custom_parameters = start.custom_parameters
        self._messages = OutboundMessages(start.stream_sid)
        self._playout_end = now
        self._event(now, "twilio_start", call_sid=start.call_sid, stream_sid=start.stream_sid)
        log_event(logger, "call.start", call_sid=start.call_sid, stream_sid=start.stream_sid)
        self._maybe_greet(now)

    def _caller_audio(self, ulaw: bytes, now: float) -> None:
        self._last_media = now
        self.counters["twilio_frames_in"] += 1
        energy = mean_square_ulaw(ulaw)  # measured once: the level log and the gate share it
        level = sqrt(energy)
        self.caller_rms.append(level)  # what the line carried, before the gate
        gate = self.gate
        if gate is not None:
            decision = gate.decide(ulaw, now, energy)
            if decision is not self._gate_last:
                # The timeline gets every change of decision: a run-length record of all frames.
                self._gate_last = decision
                self._event(now, "gate", decision=decision.value)
            if self.metrics is not None:
                self.metrics.gate[decision.value].inc()
            if not decision.forwarded:
                # Gemini gets silence, not a gap: its VAD must still see the caller's turn end.
                ulaw = self._silence_frame
                level = 0.0  # echo is not the caller speaking (turn latency, watchdog)
        if level >= self.config.speech_rms:
            self._last_caller_speech = now
            self._caller_spoke = True
            self._awaiting_reply_since = None
            if self.stall.state is not StallState.IDLE:
                self.stall.caller_spoke(now)
                self._stall_step(now)
            if self._caller_turn_start is None:
                self._caller_turn_start = now
        elif self._caller_spoke and self._awaiting_reply_since is None and (self._turn is None or self._turn_sent) \
                and not self._tools_running and now - self._last_caller_speech > 0.5:  # type: ignore[operator]
            self._awaiting_reply_since = self._last_caller_speech
            self.stall.expect_reply(self._last_caller_speech, now, vad_s=self._vad_s)  # type: ignore[arg-type]
        pcm = self._inbound.convert(ulaw)
        if not pcm:
            return
        message = self._audio_in.message(pcm)
        if self.session.can_send():
            self.gemini_out.append(message)
            self._since_handle.append(message)
        else:
            if len(self._pending_input) == self._pending_input.maxlen:
                self.counters["input_dropped_frames"] += 1
            self._pending_input.append(message)

    def _send_gemini(self, message: str) -> None:
        if self.session.can_send():
            self.gemini_out.append(message)
        else:
            self._pending_input.append(message)

    def _maybe_greet(self, now: float) -> None:
        if self._greeted or self.config.greeting_prompt is None:
            return
        if self._messages is None or not self.session.can_send():
            return
        self._greeted = True
        self._awaiting_reply_since = now
        self.stall.expect_reply(now, now, expected="greeting")
        self._event(now, "greeting_requested")
        self.gemini_out.append(gm.client_text(self.config.greeting_prompt))

    # -- Gemini side ---------------------------------------------------------------------------

    def gemini_connected(self, now: float) -> str:
        """A Gemini websocket is opening: returns the ``setup`` message to send first."""
        self._event(now, "gemini_connecting", connection=self.session.connections + 1,
                    resume=self.session.handle is not None)
        return self.session.connection_opened(now)

    def gemini_connect_failed(self, reason: str, now: float) -> None:
        """An attempt to open a connection failed (refused, timed out, rejected)."""
        self._event(now, "gemini_connect_failed", reason=reason[:120])
        self.session.connection_closed(None, now)
        self.stall.link_lost(now)
        if self._down_since is None:
            self._down_since = now

    def gemini_closed(self, code: int | None, reason: str, now: float) -> bool:
        """The Gemini connection closed. Returns True when the adapter should reconnect.

        Transient closes (1011, 1006, …) reconnect with the newest handle while the caller's
        audio is kept. A rejected handle (1008) falls back to a fresh session seeded with the
        transcript so far. Anything else ends the call with a spoken apology, never dead air.
        """
        if self.ended is not None or self._closing is not None:
            return False
        transient = self.session.connection_closed(code, now)
        self._event(now, "gemini_closed", code=code, reason=reason[:120], transient=transient)
        log_event(logger, "call.gemini_closed", logging.WARNING, call_sid=self.call_sid,
                  code=code, reason=reason[:120], transient=transient)
        self._handover = False
        self.stall.link_lost(now)
        self._stall_step(now)
        if self._model_turn_open:
            self._cut_mid_turn = True
            self._model_turn_open = False
            self._generation_complete(now)
        if self._down_since is None:
            self._down_since = now
        self._notice_played = False
        if transient:
            return True
        if code == 1008 and self.session.handle is not None:
            # Stale or unknown handle: start afresh, seeded with what was said.
            self.session.handle = None
            self.session.state = SessionState.IDLE
            self._fresh_fallback = True
            self._event(now, "resume_rejected_fresh_session")
            return True
        self.gemini_gave_up(now, f"gemini-closed-{code}")
        return False

    def gemini_gave_up(self, now: float, reason: str = "gemini-unavailable") -> None:
        """No connection could be had: apologise to the caller, then end the call."""
        self.session.close()
        self._end_with_phrase(now, "goodbye_error", reason)

    def receive_gemini(self, data: str | bytes, now: float) -> None:
        """One frame from Gemini's websocket."""
        try:
            events = self.session.receive(data, now)
        except ProtocolError as err:
            self._protocol_error(now, err)
            return
        for event in events:
            kind = type(event)
            if kind is gm.AudioChunk:
                self._agent_audio(event, now)
            elif kind is gm.OutputTranscription:
                self._model_turn_open = True
                self.stall.model_content(now)
                self._agent_text(event.text, now)
            elif kind is gm.InputTranscription:
                self._caller_text.append(event.text)
            elif kind is gm.Interrupted:
                self._interrupted(now)
            elif kind is gm.TurnComplete:
                self._turn_complete(now)
            elif kind is gm.GenerationComplete:
                self._generation_complete(now)
            elif kind is gm.SetupComplete:
                self._setup_complete(now)
            elif kind is gm.ToolCall:
                self._tool_call(event, now)
            elif kind is gm.ToolCallCancellation:
                self._tool_cancelled(event.ids, now)
            elif kind is gm.GoAway:
                self._event(now, "go_away", time_left_s=event.time_left_s)
            elif kind is gm.SessionResumptionUpdate:
                if event.resumable and event.new_handle:
                    self.new_handle = event.new_handle
                    self._since_handle.clear()
                    self._event(now, "resumption_handle")
            elif kind is gm.TextPart:
                self._event(now, "model_text", text=event.text[:200])
        if self.stall.steps:
            self._stall_step(now)
        self._pump(now)

    def _setup_complete(self, now: float) -> None:
        resumed = self.session.connections > 1
        self._event(now, "gemini_ready", connection=self.session.connections,
                    handover=self._handover, resumed=resumed)
        if resumed:
            if self._handover:
                self.counters["handovers"] += 1
            else:
                self.counters["reconnects"] += 1
                if self.metrics is not None:
                    self.metrics.gemini_reconnects.inc()
            down = None if self._down_since is None else round((now - self._down_since) * 1000)
            log_event(logger, "call.gemini_resumed", call_sid=self.call_sid, handover=self._handover,
                      fresh=self._fresh_fallback, down_ms=down)
        handover, fresh = self._handover, self._fresh_fallback
        self._handover = False
        self._down_since = None
        out = self.gemini_out
        if self._fresh_fallback:
            self._fresh_fallback = False
            self._since_handle.clear()
            out.append(self._context_for_fresh_session())
        elif resumed and self._since_handle:
            # The caller's audio after the newest handle is not in the resumed state: send it again.
            self.counters["input_replayed_frames"] += len(self._since_handle)
            out.extend(self._since_handle)
        if resumed and self._cut_mid_turn and not self._fresh_fallback:
            out.append(gm.client_text("[The phone line dropped while you were speaking. Briefly repeat your "
                                      "last question.]"))
        if not handover:
            self.stall.link_ready(now, reply_requested=resumed and (fresh or self._cut_mid_turn))
        self._cut_mid_turn = False
        while self._pending_input:
            message = self._pending_input.popleft()
            out.append(message)
            self._since_handle.append(message)
        self._maybe_greet(now)

    def _context_for_fresh_session(self) -> str:
        """The transcript so far as history turns, then where to go on from."""
        turns = [("model" if e["role"] == "agent" else "user", e["text"])
                 for e in self.transcript[-40:] if e.get("text")]
        turns.append(("user", "[The phone line was reconnected. Continue the interview where it left off. "
                              "Do not greet the caller again.]"))
        return gm.client_turns(turns)

    # -- goAway handover -----------------------------------------------------------------------

    def handover_wanted(self, now: float) -> bool:
        """After ``goAway``: time to open the next connection (a quiet moment, or the last call)."""
        session = self.session
        if session.state is not SessionState.DRAINING or self._handover or self.ended is not None:
            return False
        deadline = session.go_away_deadline
        if deadline is not None and deadline - now <= self.config.handover_margin_s:
            return True
        caller_quiet = self._last_caller_speech is None or now - self._last_caller_speech > 0.6
        return (caller_quiet and not self.agent_audible and not self._model_turn_open
                and not self._tools_running)

    def begin_handover(self, now: float) -> str:
        """Start the next connection; caller audio is kept until it is ready. Returns its setup."""
        self._handover = True
        self._event(now, "handover_start")
        return self.session.connection_opened(now)

    def handover_failed(self, reason: str, now: float) -> None:
        """The next connection could not be had: carry on with the draining one while it lasts."""
        self._handover = False
        self.session.state = SessionState.DRAINING
        self._event(now, "handover_failed", reason=reason[:120])
        while self._pending_input:
            self.gemini_out.append(self._pending_input.popleft())

    def _tool_call(self, event: gm.ToolCall, now: float) -> None:
        """Tool calls run as tasks in the adapter (:attr:`tool_requests`), never on this path."""
        errors = []
        known = self.config.tool_names or frozenset()
        for call in event.calls:
            if call.id in self._seen_tool_ids:
                self.counters["repeated_tool_calls"] += 1
                self._event(now, "tool_call_repeated", id=call.id, name=call.name)
                continue
            self._seen_tool_ids.add(call.id)
            self.stall.model_content(now)
            self._event(now, "tool_call", id=call.id, name=call.name)
            if call.name not in known:
                # Answer at once with an error the model can talk about; it must never wait.
                self.session.tool_answered(call.id)
                errors.append({"id": call.id, "name": call.name,
                               "response": {"error": f"no tool named {call.name!r} is available"}})
                continue
            if not self._tools_running:
                self._filler_next = now + self.config.filler_after_s
                self._fillers_this_wait = 0
            self._tools_running[call.id] = (call, now)
            self.tool_requests.append(call)
            self._awaiting_reply_since = None
        if errors:
            self._send_gemini(gm.tool_response(errors))

    def tool_finished(self, call_id: str, response: dict[str, Any], now: float,
                      scheduling: str | None = None) -> None:
        """The adapter's task for ``call_id`` returned (a result or an error dict)."""
        entry = self._tools_running.pop(call_id, None)
        if entry is None:
            return  # cancelled meanwhile: the model no longer wants it
        call, started = entry
        self.session.tool_answered(call_id)
        ok = "error" not in response
        duration_ms = round((now - started) * 1000, 1)
        self.tool_log.append({"id": call_id, "name": call.name, "args": call.args, "t": self._t(started),
                              "duration_ms": duration_ms, "ok": ok})
        self._event(now, "tool_result", id=call_id, name=call.name, duration_ms=duration_ms, ok=ok)
        log_event(logger, "call.tool", call_sid=self.call_sid, tool=call.name, duration_ms=duration_ms, ok=ok)
        reply: dict[str, Any] = {"id": call_id, "name": call.name, "response": response}
        if scheduling:
            reply["scheduling"] = scheduling
        self._send_gemini(gm.tool_response([reply]))
        if not self._tools_running:
            self._filler_next = None
            self._awaiting_reply_since = now

    def _tool_cancelled(self, ids: tuple[str, ...], now: float) -> None:
        for call_id in ids:
            entry = self._tools_running.pop(call_id, None)
            if entry is not None:
                self.tool_cancellations.append(call_id)
                self.tool_log.append({"id": call_id, "name": entry[0].name, "args": entry[0].args,
                                      "t": self._t(entry[1]), "duration_ms": round((now - entry[1]) * 1000, 1),
                                      "ok": False, "cancelled": True})
            self._event(now, "tool_call_cancelled", id=call_id)
        if not self._tools_running:
            self._filler_next = None

    def request_end_call(self, reason: str, now: float) -> None:
        """The agent decided to end the call (end_call tool): hang up once its goodbye is heard."""
        if self._end_requested is None:
            self._end_requested = (reason or "end_call", now)
            self._end_turns_at_request = len(self.turns)
            self._event(now, "end_call_requested", reason=reason[:120])

    def _agent_audio(self, chunk: gm.AudioChunk, now: float) -> None:
        self.counters["gemini_chunks_in"] += 1
        if chunk.rate != 24000:
            self._protocol_error(now, GeminiProtocolError("unsupported-rate", str(chunk.rate)))
            return
        self._generation_done = False  # audio again: a generation is under way
        self._model_turn_open = True
        self.stall.model_content(now)
        if self._phrase_queue or self._phrase_marks_pending():
            self._stop_phrase(now)
        ulaw = self._outbound.convert(chunk.pcm)
        if ulaw:
            self.queue.extend(self._framer.push(ulaw))

    def _agent_text(self, text: str, now: float) -> None:
        if self._turn is not None and self._turn.ended is None:
            self._turn.text += text
        else:  # transcription can run ahead of the audio we have forwarded
            self._pending_agent_text += text

    def _generation_complete(self, now: float) -> None:
        self._generation_done = True
        tail = self._outbound.flush()
        if tail:
            self.queue.extend(self._framer.push(tail))
        last = self._framer.flush()
        if last:
            self.queue.append(last)
        self.queue.append(None)

    def _turn_complete(self, now: float) -> None:
        self._model_turn_open = False
        self._event(now, "gemini_turn_complete")
        if not self._generation_done:
            self._generation_complete(now)
        self._generation_done = False
        if self._caller_text:
            self._record_caller_text(now)
        stall = self.stall
        if stall.state is StallState.IDLE and self._caller_spoke and self._awaiting_reply_since is None \
                and (self._turn is None or self._turn_sent) and not self._tools_running \
                and now - self._last_caller_speech > 0.2:  # type: ignore[operator]
            # The model closed its turn before our 0.5 s end-of-turn guess: it answered the caller.
            stall.expect_reply(self._last_caller_speech, now, vad_s=self._vad_s)  # type: ignore[arg-type]
        stall.turn_complete(now)
        self._stall_step(now)

    def _record_caller_text(self, now: float) -> None:
        text = "".join(self._caller_text).strip()
        self._caller_text.clear()
        if text:
            start = self._caller_turn_start if self._caller_turn_start is not None else now
            self.transcript.append({"role": "caller", "text": text, "t": self._t(start)})

    def _interrupted(self, now: float) -> None:
        """Barge-in: nothing stale may play after this."""
        self.counters["barge_ins"] += 1
        if self.metrics is not None:
            self.metrics.barge_ins.inc()
        self.interrupted_at = now
        self._model_turn_open = False
        self.stall.interrupted(now)
        dropped = len(self.queue) + len(self._phrase_queue)
        self.queue.clear()
        self._phrase_queue.clear()
        self._outbound.reset()
        self._framer.reset()
        self._generation_done = False
        # Media not yet handed to the socket is dropped too; marks stay so the books balance.
        if self.twilio_out:
            kept = [m for m in self.twilio_out if not m.startswith('{"event":"media"')]
            self.twilio_out.clear()
            self.twilio_out.extend(kept)
        if self._messages is not None:
            self.twilio_out.append(self._messages.clear())
        self._flush_marks(now)
        if self._turn is not None and self._turn.ended is None:
            self._turn.interrupted = True
        self._event(now, "interrupted", frames_dropped=dropped)
        self._event(now, "clear")
        self._finish_agent_turn(now)
        self._turn_sent = True

    # -- pacing and marks ----------------------------------------------------------------------

    def _pump(self, now: float) -> None:
        """Forward queued agent frames while Twilio holds less than the lead.

        ``None`` in the queue marks the end of a Gemini turn: the next frame starts a new one.
        """
        msgs = self._messages
        queue = self.queue
        if msgs is None:
            return
        if not queue:
            if self._phrase_queue:
                self._pump_phrase(now)
            return
        lead = self.config.playback_lead_s
        if self._playout_end < now:
            self._playout_end = now
        out = self.twilio_out
        every = self.config.mark_every_frames
        while queue and self._playout_end + FRAME_S - now <= lead + 1e-9:
            frame = queue.popleft()
            if frame is None:
                if self._frames_since_mark:
                    self._place_mark(now)
                self._turn_sent = True
                continue
            if self._turn is None or self._turn_sent:
                self._start_agent_turn(now)
            out.append(msgs.media(frame))
            self.agent_rms.append(rms_ulaw(frame))
            if self.gate is not None:
                self.gate.agent_frame(frame, self._playout_end)
            self._playout_end += FRAME_S
            self._turn.frames_sent += 1  # type: ignore[union-attr]
            self.counters["twilio_frames_out"] += 1
            self._frames_since_mark += 1
            if self._frames_since_mark >= every:
                self._place_mark(now)
        if not queue:
            if self._frames_since_mark:
                self._place_mark(now)
            if self._turn_sent and not self._pending_marks:
                self._finish_agent_turn(now)

    def _pump_phrase(self, now: float) -> None:
        """Forward bridge-made audio (filler, notices) under the same lead and marks."""
        msgs = self._messages
        assert msgs is not None
        queue = self._phrase_queue
        if self._playout_end < now:
            self._playout_end = now
        lead = self.config.playback_lead_s
        out = self.twilio_out
        while queue and self._playout_end + FRAME_S - now <= lead + 1e-9:
            frame = queue.popleft()
            out.append(msgs.media(frame))
            if self.gate is not None:
                self.gate.agent_frame(frame, self._playout_end)
            self._playout_end += FRAME_S
            self._frames_since_mark += 1
            if self._frames_since_mark >= self.config.mark_every_frames or not queue:
                self._place_mark(now, phrase=True)

    def play_phrase(self, kind: str, now: float) -> bool:
        """Queue a pre-rendered phrase; it plays when no agent audio is waiting."""
        audio = self.phrases(kind) if self.phrases is not None else None
        if not audio or self._messages is None:
            return False
        self.counters["phrases"] += 1
        self._phrase_seq += 1
        n = len(audio) - len(audio) % FRAME_BYTES
        frames = [audio[i:i + FRAME_BYTES] for i in range(0, n, FRAME_BYTES)]
        if n < len(audio):
            frames.append(audio[n:] + b"\xff" * (FRAME_BYTES - len(audio) + n))
        self._phrase_queue.extend(frames)
        self._event(now, "phrase", phrase=kind, seconds=round(len(frames) * FRAME_S, 2))
        self._pump(now)
        return True

    def _phrase_marks_pending(self) -> bool:
        for _name, turn, _frames in self._pending_marks:
            if turn < 0:
                return True
        return False

    def _stop_phrase(self, now: float) -> None:
        """Real agent audio arrived: the phrase stops now, including what Twilio buffered."""
        self._phrase_queue.clear()
        if self._phrase_marks_pending() and self._messages is not None:
            self.twilio_out.append(self._messages.clear())
            self._flush_marks(now)
            if self.gate is not None:
                self.gate.agent_flushed(now)
        self._event(now, "phrase_stopped")

    def _flush_marks(self, now: float) -> None:
        for name, _turn, _frames in self._pending_marks:
            self._flushed_marks.add(name)
        self._pending_marks.clear()
        self._frames_since_mark = 0
        self._playout_end = now
        if self.gate is not None:
            self.gate.agent_flushed(now)

    def _place_mark(self, now: float, phrase: bool = False) -> None:
        assert self._messages is not None
        self._mark_seq += 1
        turn = -1 if phrase else (self._turn.index if self._turn else 0)
        name = f"p{self._mark_seq}" if phrase else f"t{turn}.{self._mark_seq}"
        self._pending_marks.append((name, turn, self._frames_since_mark))
        self._frames_since_mark = 0
        self.twilio_out.append(self._messages.mark(name))

    def _mark_returned(self, name: str, now: float) -> None:
        if name in self._flushed_marks:
            self._flushed_marks.discard(name)
            self.counters["marks_flushed"] += 1
            return
        # Marks come back in the order they were sent; anything before this one has played too.
        while self._pending_marks:
            pname, turn, frames = self._pending_marks.popleft()
            self.counters["marks_played"] += 1
            for t in reversed(self.turns):
                if t.index == turn:
                    t.frames_heard += frames
                    break
            if pname == name:
                break
        if self.gate is not None:
            self.gate.playback_confirmed(self._playout_end if not self._pending_marks else now, now)
        if not self._pending_marks and not self.queue and not self._phrase_queue:
            self._event(now, "agent_audio_heard_end")
            if self._turn_sent:
                self._finish_agent_turn(now)
            self._check_ending(now)

    def clear_written(self, now: float) -> None:
        """The adapter wrote a ``clear`` to Twilio's socket: closes the barge-in reaction timer."""
        if self.interrupted_at is not None:
            reaction = now - self.interrupted_at
            self.interrupted_at = None
            self.clear_reactions_s.append(reaction)
            if self.metrics is not None:
                self.metrics.clear_reaction.observe(reaction)

    @property
    def clear_message(self) -> str | None:
        return self._messages.clear() if self._messages is not None else None

    @property
    def agent_audible(self) -> bool:
        """True while agent audio is queued or not yet confirmed played by its mark."""
        return bool(self.queue) or bool(self._pending_marks) or bool(self._phrase_queue)

    def _start_agent_turn(self, now: float) -> None:
        self._finish_agent_turn(now)
        self._turn_sent = False
        turn = AgentTurn(index=len(self.turns) + 1, started=now)
        turn.text = self._pending_agent_text
        self._pending_agent_text = ""
        if self._caller_spoke and self._last_caller_speech is not None:
            turn.latency_s = now - self._last_caller_speech
        if self._caller_text:
            self._record_caller_text(now)
        self._caller_spoke = False
        self._awaiting_reply_since = None
        self._nudged = False
        self._caller_turn_start = None
        self.turns.append(turn)
        self._turn = turn
        if turn.latency_s is not None and self.metrics is not None:
            self.metrics.turn_latency.observe(turn.latency_s)
        self._event(now, "agent_turn_start", turn=turn.index,
                    latency_ms=None if turn.latency_s is None else round(turn.latency_s * 1000, 1))
        log_event(logger, "call.agent_turn", call_sid=self.call_sid, turn=turn.index,
                  latency_ms=None if turn.latency_s is None else round(turn.latency_s * 1000, 1),
                  caller_rms=self._recent_rms(self.caller_rms))

    def _finish_agent_turn(self, now: float) -> None:
        turn = self._turn
        if turn is None or turn.ended is not None:
            return
        turn.ended = now
        self.transcript.append({"role": "agent", "text": turn.text.strip(), "t": self._t(turn.started),
                                "interrupted": turn.interrupted})
        self._event(now, "agent_turn_end", turn=turn.index, frames=turn.frames_sent,
                    interrupted=turn.interrupted)

    @staticmethod
    def _recent_rms(levels: array, n: int = 250) -> float:
        tail = levels[-n:]
        return round(max(tail), 4) if tail else 0.0

    # -- timers --------------------------------------------------------------------------------

    def _end_with_phrase(self, now: float, kind: str, reason: str) -> None:
        """End the call after a last phrase has been heard (never dead air)."""
        if self.ended is not None or self._closing is not None:
            return
        self.queue.clear()
        if not self.play_phrase(kind, now):
            self._end(now, reason)
            return
        seconds = len(self._phrase_queue) * FRAME_S
        self._closing = (reason, now + seconds + 3.0)

    def _check_ending(self, now: float) -> None:
        if self.ended is not None:
            return
        if self._closing is not None:
            if not self.agent_audible or now >= self._closing[1]:
                self._end(now, self._closing[0])
            return
        if self._end_requested is not None:
            reason, at = self._end_requested
            quiet = not self.agent_audible and not self._model_turn_open
            goodbye_heard = len(self.turns) > self._end_turns_at_request or now - at >= self.config.end_call_grace_s
            if (quiet and goodbye_heard) or now - at >= self.config.end_call_timeout_s:
                self._end(now, reason if reason.startswith("end_call") else f"end_call:{reason}")

    def tick(self, now: float) -> None:
        if self.ended is not None:
            return
        self._pump(now)
        cfg = self.config
        if now - self._last_media >= cfg.no_media_timeout_s:
            self._event(now, "no_media_timeout")
            self._end(now, "no-media")
            return
        if now - self.t0 >= cfg.max_call_s:
            self._event(now, "max_duration")
            self._end_with_phrase(now, "goodbye_error", "max-duration")
        self._check_ending(now)
        if self.ended is not None or self._closing is not None:
            return
        # Filler while a tool runs and nothing plays.
        if self._filler_next is not None and now >= self._filler_next:
            if self._tools_running and not self.agent_audible and self._fillers_this_wait < cfg.filler_max:
                if self.play_phrase("filler", now):
                    self.counters["fillers"] += 1
                    self._fillers_this_wait += 1
                self._filler_next = now + cfg.filler_repeat_s
            elif self._tools_running:
                self._filler_next = now + FRAME_S * 5
            else:
                self._filler_next = None
        # Gemini down: a short notice if nothing else plays.
        if self._down_since is not None and not self._notice_played \
                and now - self._down_since >= cfg.reconnect_notice_after_s and not self.agent_audible:
            self._notice_played = self.play_phrase("reconnect", now)
        # Silent stalls: found when they happen, recovered out loud (stall_watch.py).
        self._stall_step(now)
        # Reply watchdog, the last resort: nudge once, then apologise.
        since = self._awaiting_reply_since
        if since is not None and now - since >= cfg.reply_watchdog_s and self.session.can_send() \
                and not self.agent_audible and not self._tools_running and not self.stall.recovering:
            if not self._nudged:
                self._nudged = True
                self.counters["nudges"] += 1
                self._event(now, "watchdog_nudge")
                log_event(logger, "call.watchdog", logging.WARNING, call_sid=self.call_sid, action="nudge")
                self.gemini_out.append(gm.client_text("[The caller is waiting for your reply. Please respond.]"))
                self._awaiting_reply_since = now
            else:
                self.counters["apologies"] += 1
                self._event(now, "watchdog_apology")
                log_event(logger, "call.watchdog", logging.WARNING, call_sid=self.call_sid, action="apology")
                self.play_phrase("apology", now)
                self._awaiting_reply_since = None
                self._caller_spoke = False  # asked to say it again: no new nudge cycle until they do
                self._nudged = False

    def _stall_step(self, now: float) -> None:
        """Let the stall watch take what step is due, and carry out what it asks."""
        stall = self.stall
        if stall.state is StallState.IDLE and not stall.steps:
            return
        if self.ended is None and self._closing is None and self._end_requested is None:
            can_nudge = self.session.can_send() and not self._model_turn_open and not self._tools_running \
                and not self._handover
            stall.poll(now, can_nudge)
        else:
            stall.stand_down(now)  # hanging up: no nudges, no phrases over the goodbye
        while stall.steps:
            self._stall_act(stall.steps.popleft(), now)

    def _stall_act(self, step: StallStep, now: float) -> None:
        kind, counters, metrics = step.kind, self.counters, self.metrics
        waited_ms = round(step.waited_s * 1000)
        if kind == "nudge":
            counters["stall_nudges"] += 1
            if metrics is not None:
                metrics.stall_nudges.inc()
            self._event(now, "stall_nudge", attempt=step.nudges, expected=step.expected)
            self._send_gemini(self._nudge_message(step.expected))
        elif kind == "phrase":
            if self.play_phrase(step.phrase or "thinking", now):
                counters["stall_phrases"] += 1
        elif kind == "detected":
            counters["stalls"] += 1
            if metrics is not None:
                metrics.stalls[step.reason].inc()
            self._event(now, "stall", reason=step.reason, expected=step.expected, waited_ms=waited_ms)
            log_event(logger, "call.stall", logging.WARNING, call_sid=self.call_sid, reason=step.reason,
                      expected=step.expected, waited_ms=waited_ms)
        elif kind == "recovered":
            counters["stall_recovered"] += 1
            if metrics is not None:
                metrics.stall_outcomes["recovered"].inc()
            self._event(now, "stall_recovered", nudges=step.nudges, waited_ms=waited_ms)
            log_event(logger, "call.stall_recovered", call_sid=self.call_sid, nudges=step.nudges,
                      waited_ms=waited_ms)
        elif kind == "apology":
            counters["stall_apologies"] += 1
            if metrics is not None:
                metrics.stall_outcomes["apology"].inc()
            self._event(now, "stall_apology", nudges=step.nudges, waited_ms=waited_ms)
            log_event(logger, "call.stall_apology", logging.WARNING, call_sid=self.call_sid,
                      nudges=step.nudges, waited_ms=waited_ms)
            self.play_phrase("apology", now)
            # The caller was asked to say it again: wait for them, not for this turn's reply.
            self._awaiting_reply_since = None
            self._caller_spoke = False
            self._nudged = False
        elif kind == "abandoned":
            if metrics is not None:
                metrics.stall_outcomes["abandoned"].inc()
            self._event(now, "stall_abandoned", nudges=step.nudges, waited_ms=waited_ms)

    def _nudge_message(self, expected: str) -> str:
        """A user text turn that asks the model to speak. ``clientContent`` with ``turnComplete``
        is the form every Live model takes mid-session (3.x: it interrupts a generation in
        progress, which is why the watch never nudges while the model is producing)."""
        if expected == "greeting" and self.config.greeting_prompt:
            return gm.client_text(self.config.greeting_prompt)
        return gm.client_text(NUDGE_TEXT.get(expected, NUDGE_TEXT["caller"]))

    def next_deadline(self) -> float | None:
        """When :meth:`tick` should run next."""
        cfg = self.config
        deadline = min(self._last_media + cfg.no_media_timeout_s, self.t0 + cfg.max_call_s)
        if (self.queue or self._phrase_queue) and self._messages is not None:
            # Top up when Twilio holds half the lead: wakes every lead/2, not every frame.
            deadline = min(deadline, self._playout_end - cfg.playback_lead_s / 2)
        if self._filler_next is not None:
            deadline = min(deadline, self._filler_next)
        if self._awaiting_reply_since is not None:
            deadline = min(deadline, self._awaiting_reply_since + cfg.reply_watchdog_s)
        stall = self.stall.next_deadline()
        if stall is not None and self._closing is None:
            deadline = min(deadline, stall)
        if self._down_since is not None and not self._notice_played:
            deadline = min(deadline, self._down_since + cfg.reconnect_notice_after_s)
        if self._end_requested is not None:
            deadline = min(deadline, max(self._end_requested[1] + cfg.end_call_grace_s,
                                         self._playout_end + 0.1))
        if self._closing is not None:
            deadline = min(deadline, self._closing[1])
        go_away = self.session.go_away_deadline
        if go_away is not None and self.session.state is SessionState.DRAINING and not self._handover:
            # Look for a quiet moment every 100 ms; hand over before the cut at the latest.
            deadline = min(deadline, go_away - cfg.handover_margin_s, self._last_media + 0.1)
        return deadline

    def record(self) -> dict[str, Any]:
        """The call record kept in the store and served at ``/calls/{call_sid}``."""
        return {
            "call_sid": self.call_sid,
            "stream_sid": self.stream_sid,
            "ended": self.ended,
            "transcript": self.transcript,
            "notes": self.notes,
            "tools": self.tool_log,
            "summary": self.summary(),
        }

    # -- summary -------------------------------------------------------------------------------

    def latencies_ms(self) -> list[float]:
        return [round(t.latency_s * 1000, 1) for t in self.turns if t.latency_s is not None]

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms())

        def pct(p: float) -> float | None:
            if not lat:
                return None
            k = min(len(lat) - 1, max(0, int(round(p / 100 * (len(lat) - 1)))))
            return lat[k]

        caller = self.caller_rms
        return {
            "agent_turns": len(self.turns),
            "latency_p50_ms": pct(50),
            "latency_p95_ms": pct(95),
            "barge_ins": self.counters["barge_ins"],
            "caller_rms_mean": round(sum(caller) / len(caller), 4) if caller else 0.0,
            "caller_rms_max": round(max(caller), 4) if caller else 0.0,
            "agent_rms_mean": round(sum(self.agent_rms) / len(self.agent_rms), 4) if self.agent_rms else 0.0,
            "frames_in": self.counters["twilio_frames_in"],
            "frames_out": self.counters["twilio_frames_out"],
            "fillers": self.counters["fillers"],
            "reconnects": self.counters["reconnects"],
            "handovers": self.counters["handovers"],
            "watchdog_nudges": self.counters["nudges"],
            "watchdog_apologies": self.counters["apologies"],
            "stalls": self.counters["stalls"],
            "stall_nudges": self.counters["stall_nudges"],
            "stall_recovered": self.counters["stall_recovered"],
            "stall_apologies": self.counters["stall_apologies"],
            "protocol_errors": dict(self.protocol_errors),
        }
