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
from array import array
from collections import deque
from dataclasses import dataclass
from typing import Any

from .dsp import Framer, InboundConverter, OutboundConverter, rms_ulaw
from .errors import GeminiProtocolError, ProtocolError, TwilioProtocolError
from .gemini import messages as gm
from .gemini.session import GeminiSession
from .log import log_event
from .metrics import Metrics
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
    #: Caller audio kept while Gemini is not ready yet, sent once it is.
    max_pending_input_s: float = 3.0
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
                 metrics: Metrics | None = None) -> None:
        self.config = config or CallConfig()
        self.metrics = metrics
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
        level = rms_ulaw(ulaw)
        self.caller_rms.append(level)
        if level >= self.config.speech_rms:
            self._last_caller_speech = now
            self._caller_spoke = True
            if self._caller_turn_start is None:
                self._caller_turn_start = now
        pcm = self._inbound.convert(ulaw)
        if not pcm:
            return
        message = self._audio_in.message(pcm)
        if self.session.can_send():
            self.gemini_out.append(message)
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
        self._event(now, "greeting_requested")
        self.gemini_out.append(gm.client_text(self.config.greeting_prompt))

    # -- Gemini side ---------------------------------------------------------------------------

    def gemini_connected(self, now: float) -> str:
        """The Gemini websocket is open: returns the ``setup`` message to send first."""
        self._event(now, "gemini_connected", connection=self.session.connections + 1)
        return self.session.connection_opened(now)

    def gemini_closed(self, code: int | None, reason: str, now: float) -> None:
        transient = self.session.connection_closed(code, now)
        self._event(now, "gemini_closed", code=code, reason=reason[:120], transient=transient)
        log_event(logger, "call.gemini_closed", logging.WARNING, call_sid=self.call_sid,
                  code=code, reason=reason[:120])
        self._end(now, "gemini-closed")

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
                self._event(now, "tool_call_cancelled", ids=list(event.ids))
            elif kind is gm.GoAway:
                self._event(now, "go_away", time_left_s=event.time_left_s)
            elif kind is gm.SessionResumptionUpdate:
                if event.resumable:
                    self._event(now, "resumption_handle")
            elif kind is gm.TextPart:
                self._event(now, "model_text", text=event.text[:200])
        self._pump(now)

    def _setup_complete(self, now: float) -> None:
        self._event(now, "gemini_ready")
        while self._pending_input:
            self.gemini_out.append(self._pending_input.popleft())
        self._maybe_greet(now)

    def _tool_call(self, event: gm.ToolCall, now: float) -> None:
        # No tools are registered at this stage: answer each call with an error the model can
        # talk about, so it never waits for a response that will not come.
        responses = []
        for call in event.calls:
            self._event(now, "tool_call", id=call.id, name=call.name)
            self.session.tool_answered(call.id)
            responses.append({"id": call.id, "name": call.name,
                              "response": {"error": f"no tool named {call.name!r} is available"}})
        if responses:
            self.gemini_out.append(gm.tool_response(responses))

    def _agent_audio(self, chunk: gm.AudioChunk, now: float) -> None:
        self.counters["gemini_chunks_in"] += 1
        if chunk.rate != 24000:
            self._protocol_error(now, GeminiProtocolError("unsupported-rate", str(chunk.rate)))
            return
        if self._generation_done:
            # A new generation starts: the previous one was complete.
            self._generation_done = False
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
        self._event(now, "gemini_turn_complete")
        if not self._generation_done:
            self._generation_complete(now)
        self._generation_done = False
        if self._caller_text:
            self._record_caller_text(now)

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
        dropped = len(self.queue)
        self.queue.clear()
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
        for name, _turn, _frames in self._pending_marks:
            self._flushed_marks.add(name)
        self._pending_marks.clear()
        self._frames_since_mark = 0
        self._playout_end = now
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
        if msgs is None or not queue:
            return
        lead = self.config.playback_lead_s
        if self._playout_end < now:
            self._playout_end = now
        out = self.twilio_out
        every = self.config.mark_every_frames
        while queue and self._playout_end - now < lead:
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

    def _place_mark(self, now: float) -> None:
        assert self._messages is not None
        self._mark_seq += 1
        turn = self._turn.index if self._turn else 0
        name = f"t{turn}.{self._mark_seq}"
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
        if not self._pending_marks and not self.queue:
            self._event(now, "agent_audio_heard_end")
            if self._turn_sent:
                self._finish_agent_turn(now)

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
        return bool(self.queue) or bool(self._pending_marks)

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

    def tick(self, now: float) -> None:
        if self.ended is not None:
            return
        self._pump(now)
        if now - self._last_media >= self.config.no_media_timeout_s:
            self._event(now, "no_media_timeout")
            self._end(now, "no-media")
        elif now - self.t0 >= self.config.max_call_s:
            self._event(now, "max_duration")
            self._end(now, "max-duration")

    def next_deadline(self) -> float | None:
        """When :meth:`tick` should run next."""
        deadline = min(self._last_media + self.config.no_media_timeout_s, self.t0 + self.config.max_call_s)
        if self.queue and self._messages is not None:
            # Top up when Twilio holds half the lead: wakes every lead/2, not every frame.
            deadline = min(deadline, self._playout_end - self.config.playback_lead_s / 2)
        return deadline

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
            "protocol_errors": dict(self.protocol_errors),
        }
