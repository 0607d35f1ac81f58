"""The call core: composes the parts and routes every input to the one that handles it.

Reading :meth:`CallCore.receive_twilio`, :meth:`CallCore.receive_gemini` and :meth:`CallCore.tick`
shows the whole data path; each branch is one call into a part (see the package docstring).

(Over the ~450-line guideline: it is the one place every input and every event between
the parts passes through, and each method here is a short route, not logic of its own.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from math import sqrt
from typing import Any

from ..dsp import mean_square_ulaw
from ..errors import GeminiProtocolError, ProtocolError, TwilioProtocolError
from ..gemini import messages as gm
from ..log import log_event
from ..metrics import Metrics
from ..twilio import events as te
from ..twilio.stream import TwilioStream
from ..echo_gate import GateDecision
from .barge import BargePause
from .config import FRAME_BYTES, CallConfig
from .ending import Ending
from .handoff import Handoff, HandoffState, Panel
from ..gemini.profiles import profile_for
from ..gemini.refusal import Refusal
from .link import Link
from .playout import Playout
from .prompts import Prompts
from .stall_watch import StallState
from .summary import call_summary, new_counters
from .timeline import Timeline
from .tool_dispatch import ToolDispatch
from .turns import AgentTurn, Turns

#: Gemini events that, like the model's audio, need no tick of their own (see tick_wanted).
_TRANSCRIPTIONS = frozenset({gm.OutputTranscription, gm.InputTranscription})

logger = logging.getLogger("telephony_bridge.call")


class CallCore:
    """Joins a Twilio Media Stream to a Gemini Live session. See the package docstring."""

    def __init__(self, setup: gm.SetupConfig, config: CallConfig | None = None, *, now: float,
                 metrics: Metrics | None = None, phrases: Callable[[str], bytes | None] | None = None,
                 gate: Any = None, panel: Panel | None = None) -> None:
        self.config = cfg = config or CallConfig()
        self.metrics = metrics
        #: Pre-rendered μ-law phrases by kind ("filler", "reconnect", "apology", "goodbye_error").
        self.phrases = phrases
        #: The echo gate (see echo_gate.py): decides per caller frame what Gemini hears.
        self.gate = gate
        self.t0 = now
        self.counters = new_counters()
        self.protocol_errors: dict[str, int] = {}
        self.stream = TwilioStream()
        self.records = Timeline(now)
        self.turns_part = Turns(self.records, speech_rms=cfg.speech_rms, metrics=metrics)
        self.playout = Playout(cfg, self.records, self.counters, now=now, gate=gate,
                               on_turn_start=self._agent_turn_started, on_turn_done=self.turns_part.finish_agent)
        #: What the configured model accepts and how it behaves (gemini/profiles.py).
        self.profile = profile_for(setup.model)
        #: Instant barge-in: pause on the caller's onset, confirm or resume (barge.py).
        self.barge = BargePause(onset_frames=cfg.pause_onset_frames, confirm_s=cfg.pause_confirm_s,
                                rearm_s=cfg.pause_rearm_s, timeline=self.records, counters=self.counters,
                                metrics=metrics) if cfg.pause_on_onset else None
        self.link = Link(setup, cfg, self.records, self.counters, metrics)
        vad_s = (1000 if setup.silence_duration_ms is None else setup.silence_duration_ms) / 1000
        #: Caller frames this long after their last speech go to Gemini one by one (config.py).
        self._eager_from = vad_s - cfg.eager_input_before_s
        self._eager_to = vad_s + cfg.eager_input_after_s
        self.tools = ToolDispatch(cfg, self.records, self.counters, self.profile)
        self.prompts = Prompts(self.profile, self.records, self.link.send)
        self.ending = Ending(cfg, self.records, self.counters, now=now, playout=self.playout,
                             turns=self.turns_part, link=self.link, tools=self.tools,
                             play_phrase=self.play_phrase, end=self._end, metrics=metrics,
                             vad_s=vad_s,
                             say=self.say)
        self.stall = self.ending.stall
        self.session = self.link.session
        #: A panel's hand-offs between interviewers (handoff.py); None: one interviewer.
        self.handoff = Handoff(panel, self.link, self.turns_part, self.tools, cfg, self.records,
                               self.counters) if panel is not None else None
        #: Frames for the adapter to write, in order.
        self.twilio_out = self.playout.twilio_out
        self.gemini_out = self.link.gemini_out
        #: Tool calls for the adapter to run, ids for it to cancel.
        self.tool_requests = self.tools.requests
        self.tool_cancellations = self.tools.cancellations
        self.notes = self.tools.notes
        self.tool_log = self.tools.log
        self.timeline = self.records.events
        self.transcript = self.turns_part.transcript
        self.turns: list[AgentTurn] = self.turns_part.turns
        self.caller_rms = self.turns_part.caller_rms
        self.agent_rms = self.playout.agent_rms
        self.call_sid: str | None = None
        self.stream_sid: str | None = None
        self.custom_parameters: dict[str, str] = {}
        self._silence_frame = b"\xff" * FRAME_BYTES
        self._gate_last: Any = None
        self._gate_run = 0  # frames of that decision not yet counted in the metrics
        #: When the last ``interrupted`` arrived, until its ``clear`` is written (see clear_written).
        self.interrupted_at: float | None = None
        self.clear_reactions_s: list[float] = []
        #: The call's recording (recording/core.py), attached by the adapter; see attach_recorder.
        self.recorder: Any = None
        #: False when the last Gemini frame only carried the model's audio or transcription: its
        #: effects are done (playout pumped, the stall watch stepped) and only make the line more
        #: audible, so the adapter need not :meth:`tick` again on its account.
        self.tick_wanted = True
        #: False when the last Twilio frame was caller audio that left every deadline where it
        #: was or moved it later (most frames: the no-media timeout moves on): the adapter's
        #: timer, set at or before :meth:`next_deadline`, is still early enough, so it need not
        #: compute the deadline again (a property test holds this to the real deadlines).
        self.deadline_sooner = True

    # -- state the adapter and tests read -------------------------------------------------------

    @property
    def ended(self) -> str | None:
        return self.ending.ended

    @property
    def new_handle(self) -> str | None:
        """The newest resumable handle, for the adapter to persist (it sets this to None)."""
        return self.link.new_handle

    @new_handle.setter
    def new_handle(self, value: str | None) -> None:
        self.link.new_handle = value

    @property
    def queue(self) -> Any:
        return self.playout.queue

    @property
    def agent_audible(self) -> bool:
        return self.playout.audible

    @property
    def clear_message(self) -> str | None:
        return self.playout.clear_message

    # -- end of call -----------------------------------------------------------------------------

    def end(self, reason: str, now: float) -> None:
        """The adapter ends the call (its own failure, shutdown)."""
        self._end(now, reason)

    def _count_gate(self) -> None:
        if self._gate_run and self.metrics is not None:
            self.metrics.gate[self._gate_last.value].inc(self._gate_run)
        self._gate_run = 0

    def _end(self, now: float, reason: str) -> None:
        if self.ending.ended is None:
            self._count_gate()
            self.ending.ended = reason
            self.link.flush_caller_audio()
            self.turns_part.finish_agent(now)
            self.records.add(now, "call_end", reason=reason)
            log_event(logger, "call.end", call_sid=self.call_sid, reason=reason, **self.summary())

    def request_end_call(self, reason: str, now: float) -> None:
        """The agent decided to end the call (end_call tool): hang up once its goodbye is heard."""
        self.ending.request_end_call(reason, now)

    def resume_stored_session(self, handle: str, now: float, seat: str | None = None) -> None:
        """This call's Gemini session began on another stream or replica: resume, don't greet.
        ``seat``: the panel interviewer whose session ``handle`` is (stored beside it)."""
        if seat is not None and self.handoff is not None:
            self.handoff.resume_seat(seat, now)
        self.link.resume_stored(handle, now)

    @property
    def seat(self) -> str | None:
        """The panel interviewer whose Gemini session this is (None: no panel); stored with each
        new handle, so a call resumed elsewhere goes on in that interviewer's voice."""
        return self.handoff.current if self.handoff is not None else None

    def _protocol_error(self, now: float, err: ProtocolError) -> None:
        key = f"{err.peer}:{err.kind}"
        self.protocol_errors[key] = self.protocol_errors.get(key, 0) + 1
        self.counters["twilio_errors" if err.peer == "twilio" else "gemini_errors"] += 1
        if self.metrics is not None:
            self.metrics.protocol_errors.labels(peer=err.peer, kind=err.kind).inc()
        if self.protocol_errors[key] <= 3:  # a flood of one kind logs three times, then counts
            self.records.add(now, "protocol_error", peer=err.peer, error=err.kind, fatal=err.fatal)
            log_event(logger, "call.protocol_error", logging.WARNING, call_sid=self.call_sid,
                      peer=err.peer, error=err.kind, detail=err.detail[:200], fatal=err.fatal)
        if err.fatal:
            self._end(now, f"{err.peer}-protocol-error")

    # -- Twilio side ---------------------------------------------------------------------------

    def receive_twilio(self, data: str | bytes, now: float) -> None:
        """One text frame from Twilio's websocket."""
        self.deadline_sooner = True
        try:
            event = self.stream.receive(data)
        except TwilioProtocolError as err:
            self._protocol_error(now, err)
            return
        if type(event) is te.Media:
            if self.recorder is not None:
                self.recorder.caller(event.payload, now)  # as received, before the gate
            # gate → turns → link (→ Gemini); True: a deadline may have come sooner
            self.deadline_sooner = self._caller_audio(event.payload, now)
            self.playout.pump(now)
        elif isinstance(event, te.Mark):
            if self.recorder is not None:
                self.recorder.mark_returned(event.name)
            if self.playout.mark_returned(event.name, now):
                self.ending.check(now)
        elif isinstance(event, te.Start):
            self._started(event, now)
        elif isinstance(event, te.Dtmf):
            self.records.add(now, "dtmf", digit=event.digit)
            self.say(f"[The caller pressed the phone key {event.digit}]", now, reply=False)
        elif isinstance(event, te.Stop):
            self.records.add(now, "twilio_stop")
            self._end(now, "caller-hangup")
        elif isinstance(event, te.Unknown):
            self.counters["unknown_events"] += 1
        elif isinstance(event, te.Connected):
            self.records.add(now, "twilio_connected", protocol=event.protocol)

    def receive_twilio_closed(self, now: float) -> None:
        """Twilio's websocket closed (without a ``stop`` if the call is still on)."""
        if self.ended is None:
            self.records.add(now, "twilio_disconnected")
            self._end(now, "twilio-disconnected")

    def _started(self, start: te.Start, now: float) -> None:
        self.call_sid = start.call_sid
        self.stream_sid = start.stream_sid
        self.custom_parameters = start.custom_parameters
        for part in (self.turns_part, self.link, self.tools, self.ending, self.handoff):
            if part is not None:
                part.call_sid = start.call_sid
        self.playout.start(start.stream_sid, now)
        self.records.add(now, "twilio_start", call_sid=start.call_sid, stream_sid=start.stream_sid)
        log_event(logger, "call.start", call_sid=start.call_sid, stream_sid=start.stream_sid)
        self._maybe_greet(now)

    def _caller_audio(self, ulaw: bytes, now: float) -> bool:
        """One caller frame. True when it may have brought :meth:`next_deadline` sooner (a pause,
        a reply awaited, the stall watch stepped); False: every deadline stayed or moved later."""
        sooner = eager = False
        ending, turns = self.ending, self.turns_part
        ending.last_media = now
        self.counters["twilio_frames_in"] += 1
        energy = mean_square_ulaw(ulaw)  # measured once: the level log and the gate share it
        level = sqrt(energy)
        turns.caller_rms.append(level)  # what the line carried, before the gate
        gate = self.gate
        barge = self.barge
        if gate is not None:
            decision = gate.decide(ulaw, now, energy)
            if barge is not None:
                if barge.caller_frame(decision is GateDecision.DOUBLE_TALK, now):
                    self._pause(now)
                    sooner = True
                # Just paused for the caller: Gemini hears them frame by frame, so its
                # `interrupted` (which confirms the pause, barge.py) is not held for a chunk. Only
                # for the speech it needs to tell (eager_input_paused_s), not on every double-talk
                # frame: an echo leak or a caller talking along could last the whole call.
                paused_at = barge.paused_at
                eager = paused_at is not None and now - paused_at < self.config.eager_input_paused_s
            if decision is not self._gate_last:
                # The timeline gets every change of decision: a run-length record of all frames.
                self._count_gate()
                self._gate_last = decision
                self.records.add(now, "gate", decision=decision.value)
            self._gate_run += 1
            if self._gate_run >= 50:  # the metrics in runs (a lock per frame otherwise), a second at most behind
                self._count_gate()
            if not decision.forwarded:
                # Gemini gets silence, not a gap: its VAD must still see the caller's turn end.
                ulaw = self._silence_frame
                level = 0.0  # echo is not the caller speaking (turn latency, watchdog)
        if level >= self.config.speech_rms:
            turns.caller_speech(now)
            ending.awaiting_reply_since = None
            if self.stall.state is not StallState.IDLE:
                self.stall.caller_spoke(now)
                ending.stall_step(now)
                sooner = True
        elif turns.caller_spoke and ending.awaiting_reply_since is None and not self.playout.sending_turn \
                and not self.tools.running and now - turns.last_caller_speech > 0.5:  # type: ignore[operator]
            ending.await_reply(turns.last_caller_speech)  # type: ignore[arg-type]
            ending.expect_reply(turns.last_caller_speech, now)  # type: ignore[arg-type]
            sooner = True
        if not eager:
            last = turns.last_caller_speech
            eager = last is not None and self._eager_from <= now - last < self._eager_to
        self.link.caller_audio(ulaw, eager)
        return sooner

    def _pause(self, now: float) -> None:
        """The caller started talking over the agent: it goes quiet now (barge.py)."""
        playout = self.playout
        if playout.pausable:
            assert self.barge is not None
            self.barge.paused(now, playout.pause(now))

    def _maybe_greet(self, now: float) -> None:
        prompt = self.config.greeting_prompt
        if prompt is not None and self.playout.messages is not None and self.link.greet(prompt, now):
            self.ending.await_reply(now)
            self.ending.expect_reply(now, now, expected="greeting")

    # -- Gemini side ---------------------------------------------------------------------------

    def gemini_connected(self, now: float) -> str:
        """A Gemini websocket is opening: returns the ``setup`` message to send first."""
        return self.link.connecting(now)

    def gemini_connect_failed(self, reason: str, now: float, *, status: int | None = None,
                              body: str = "", refusal: Refusal | None = None) -> bool:
        """An attempt to open a connection failed (refused, timed out, rejected). ``status``/
        ``body``: the HTTP answer when the upgrade was refused; ``refusal``: the adapter already
        knows no retry helps (our credentials were refused). Returns True to try again."""
        refusal = self.link.connect_failed(reason, now, status=status, body=body, refusal=refusal)
        self.stall.link_lost(now)
        if refusal is not None:
            self._refused(refusal, now)
            return False
        return self.ended is None and not self.ending.closing

    def gemini_closed(self, code: int | None, reason: str, now: float) -> bool:
        """The Gemini connection closed. Returns True when the adapter should reconnect.

        Transient closes (1011, 1006, …) reconnect with the newest handle while the caller's
        audio is kept. A rejected handle (1008 while resuming) falls back to a fresh session
        seeded with the transcript so far. A refusal no retry can fix (model not found, bad key,
        quota, …) ends the call after the spoken apology has been heard, never dead air.
        """
        if self.ended is not None or self.ending.closing:
            return False
        turns = self.turns_part
        mid_turn = turns.model_turn_open
        refusal = self.link.closed(code, reason, now, mid_turn=mid_turn)
        self.stall.link_lost(now)
        self.ending.stall_step(now)
        if mid_turn:
            turns.model_turn_open = False
            self._generation_complete(now)
        if refusal is not None:
            self._refused(refusal, now)
            return False
        return True

    def gemini_gave_up(self, now: float) -> None:
        """The reconnect policy ran out: Gemini is unreachable. Apologise, then end the call."""
        self._refused(self.link.unreachable(), now)

    def _refused(self, refusal: Refusal, now: float) -> None:
        """No retry can fix this: say so once (log, metric), apologise, end the call."""
        self.link.refused(refusal, now)
        self.ending.end_with_phrase(now, "goodbye_error", f"gemini-refused:{refusal.kind.value}")

    @property
    def refusal(self) -> Refusal | None:
        """Why Gemini refused this call, once known."""
        return self.link.refusal

    @property
    def closing(self) -> bool:
        """Ending after a last phrase: the call is over once it has been heard (or a cap)."""
        return self.ending.closing

    @property
    def goodbye_unheard(self) -> bool:
        """The call wanted a last phrase and the caller did not hear all of it on the stream."""
        return self.ending.goodbye_unheard

    def receive_gemini(self, data: str | bytes, now: float) -> None:
        """One frame from Gemini's websocket."""
        self.tick_wanted = True
        if self.handoff is not None and self.handoff.holding:
            self.handoff.held.append(data)  # the next interviewer waits for the outgoing one's last word
            return
        try:
            events = self.session.receive(data, now)
        except ProtocolError as err:
            self._protocol_error(now, err)
            return
        turns = self.turns_part
        routine = True  # only the model's audio and transcriptions so far (see tick_wanted)
        for event in events:
            kind = type(event)
            if kind is gm.AudioChunk:
                if not self._agent_audio(event, now):  # → playout (False: refused, a protocol error)
                    routine = False
                continue
            if kind not in _TRANSCRIPTIONS:
                routine = False
            if kind is gm.OutputTranscription:
                turns.model_turn_open = True
                self.stall.model_content(now)
                turns.agent_text(event.text)
            elif kind is gm.InputTranscription:
                turns.caller_text(event.text)
            elif kind is gm.Interrupted:
                self._interrupted(now)
            elif kind is gm.TurnComplete:
                self._turn_complete(now)
            elif kind is gm.GenerationComplete:
                self._generation_complete(now)
            elif kind is gm.SetupComplete:
                handover, reply_requested = self.link.ready(now, self.turns_part.conversation())
                if self.handoff is not None and self.handoff.ready(now):
                    self.ending.await_reply(now)  # the next interviewer introduces themself
                elif not handover:
                    self.stall.link_ready(now, reply_requested=reply_requested)
                self._maybe_greet(now)
            elif kind is gm.ToolCall:
                self._tool_call(event, now)
            elif kind is gm.ToolCallCancellation:
                self.tools.cancelled(event.ids, now)
            elif kind is gm.GoAway:
                self.records.add(now, "go_away", time_left_s=event.time_left_s)
            elif kind is gm.SessionResumptionUpdate:
                self.link.resumption_update(event, now)
            elif kind is gm.TextPart:
                self.records.add(now, "model_text", text=event.text[:200])
        if self.stall.steps:
            self.ending.stall_step(now)
        self.playout.pump(now)
        self.tick_wanted = not routine

    @property
    def outgoing_open(self) -> bool:
        """A hand-off's outgoing connection still carries its interviewer's last sentence."""
        return self.handoff is not None and self.handoff.outgoing_open

    def receive_outgoing(self, data: str | bytes, now: float) -> None:
        """One frame from the connection a hand-off retired: its audio and transcription play to
        the end of the outgoing sentence (handoff.py); nothing else from it counts."""
        handoff = self.handoff
        if handoff is None or not handoff.outgoing_open:
            return
        try:
            events = gm.parse_server_message(data)
        except ProtocolError:
            return
        done = False
        for event in events:
            kind = type(event)
            if kind is gm.AudioChunk:
                self._agent_audio(event, now)
            elif kind is gm.OutputTranscription:
                self.turns_part.agent_text(event.text)
            elif kind is gm.TurnComplete or kind is gm.GenerationComplete:
                done = done or handoff.outgoing_done(now, turn_complete=True)
        if done:
            self._outgoing_finished(now)
        self.playout.pump(now)

    def _outgoing_finished(self, now: float) -> None:
        """The outgoing sentence is over: end its turn, then route the next session's held frames."""
        assert self.handoff is not None
        self.turns_part.model_turn_open = False
        self._generation_complete(now)
        self.turns_part.text_to_next = True
        for frame in self.handoff.finish_outgoing(now):
            self.receive_gemini(frame, now)

    def _agent_audio(self, chunk: gm.AudioChunk, now: float) -> bool:
        """A chunk of the model's audio to the playout. False: refused (not 24 kHz)."""
        self.counters["gemini_chunks_in"] += 1
        if chunk.rate != 24000:
            self._protocol_error(now, GeminiProtocolError("unsupported-rate", str(chunk.rate)))
            return False
        if self.ending.closing:
            # The call is ending on its last phrase (the length limit's goodbye) while the model
            # still talks: the phrase plays whole, the reply is not "agent audio stopping a phrase".
            self.counters["agent_chunks_dropped_closing"] += 1
            return True
        turns = self.turns_part
        turns.generation_done = False  # audio again: a generation is under way
        turns.model_turn_open = True
        self.stall.model_content(now)
        if self.handoff is not None:
            self.handoff.model_content()
        self.playout.agent_pcm(chunk.pcm, now)
        return True

    def _generation_complete(self, now: float) -> None:
        self.turns_part.generation_done = True
        self.playout.end_of_generation()

    def _turn_complete(self, now: float) -> None:
        turns = self.turns_part
        turns.model_turn_open = False
        if self.handoff is not None:
            self.handoff.turn_complete()
        self.records.add(now, "gemini_turn_complete")
        if not turns.generation_done:
            self._generation_complete(now)
        turns.generation_done = False
        turns.record_caller_text(now)
        ending, stall = self.ending, self.stall
        if stall.state is StallState.IDLE and turns.caller_spoke and ending.awaiting_reply_since is None \
                and not self.playout.sending_turn and not self.tools.running \
                and now - turns.last_caller_speech > 0.2:  # type: ignore[operator]
            # The model closed its turn before our 0.5 s end-of-turn guess: it answered the caller.
            ending.expect_reply(turns.last_caller_speech, now)  # type: ignore[arg-type]
        stall.turn_complete(now)
        ending.stall_step(now)
        self._model_quiet(now)

    def _interrupted(self, now: float) -> None:
        """Barge-in: nothing stale may play after this (but a last phrase: it plays whole)."""
        if self.ending.closing:
            self.records.add(now, "interrupted", frames_dropped=0, closing=True)
            return
        self.counters["barge_ins"] += 1
        if self.metrics is not None:
            self.metrics.barge_ins.inc()
        self.interrupted_at = now
        if self.barge is not None:
            self.barge.interrupted(now)
        self.turns_part.agent_interrupted(now)
        self.stall.interrupted(now)
        dropped = self.playout.interrupt(now)
        self.records.add(now, "interrupted", frames_dropped=dropped)
        self.records.add(now, "clear")
        self.turns_part.finish_agent(now)
        self._model_quiet(now)

    def _agent_turn_started(self, now: float) -> AgentTurn:
        """Playout forwarded the first frame of a new agent turn."""
        self.ending.reply_started()
        return self.turns_part.start_agent(now)

    # -- goAway handover -----------------------------------------------------------------------

    def handover_wanted(self, now: float) -> bool:
        """After ``goAway``: time to open the next connection (a quiet moment, or the last call)."""
        link = self.link
        if self.handoff is not None and self.ending.ended is None and self.handoff.wanted(now):
            return True
        if self.ending.ended is not None or not link.handover_pending():
            return False
        return link.handover_now(now, quiet=self.quiet_moment(now))

    def safe_to_move(self, now: float) -> bool:
        """Drain (drain.py): the stream can move to another replica without the caller losing a
        word: a quiet moment, and the caller has said nothing since the newest resumption handle
        (a session resumed from it has heard all of it; no reply to a turn it never heard is due)."""
        last, at = self.turns_part.last_caller_speech, self.link.handle_at
        return self.quiet_moment(now) and at is not None and (last is None or last < at)

    def quiet_moment(self, now: float) -> bool:
        """Nobody speaking, no reply or tool under way: a stream or connection can change now."""
        last = self.turns_part.last_caller_speech
        return ((last is None or now - last > 0.6) and not self.playout.audible
                and not self.turns_part.model_turn_open and not self.tools.running)

    def begin_handover(self, now: float) -> str:
        """Start the next connection; caller audio is kept until it is ready. Returns its setup."""
        if self.handoff is not None and self.handoff.wanted(now):
            return self.handoff.begin(now, self.notes)  # the next interviewer's session
        return self.link.begin_handover(now)

    def handover_failed(self, reason: str, now: float) -> None:
        """The next connection could not be had: carry on with the draining one while it lasts."""
        if self.handoff is not None and self.handoff.state is HandoffState.SWITCHING:
            self.handoff.failed(reason, now)
            return
        self.link.handover_failed(reason, now)

    # -- tools ---------------------------------------------------------------------------------

    def _tool_call(self, event: gm.ToolCall, now: float) -> None:
        """Tool calls run as tasks in the adapter (:attr:`tool_requests`), never on this path."""
        if self.handoff is not None:
            event = self.handoff.take(event, now)  # hand_off is answered here, never run as a tool
        queued, seen = len(self.tools.requests), self.tools.seen
        errors = self.tools.called(event, now)
        if self.tools.seen > seen:
            self.stall.model_content(now)
        if len(self.tools.requests) > queued:
            self.ending.awaiting_reply_since = None
        if errors:
            for reply in errors:
                self.session.tool_answered(reply["id"])
            self.link.send(gm.tool_response(errors))

    def tool_finished(self, call_id: str, response: dict[str, Any], now: float,
                      scheduling: str | None = None) -> None:
        """The adapter's task for ``call_id`` returned (a result or an error dict)."""
        reply = self.tools.finished(call_id, response, now, scheduling)
        if reply is None:
            return  # cancelled meanwhile: the model no longer wants it
        self.session.tool_answered(call_id)
        self.link.send(gm.tool_response([reply]))
        if not self.tools.running:
            self.ending.await_reply(now)
        self._model_quiet(now)

    # -- prompts -------------------------------------------------------------------------------

    def say(self, text: str, now: float, *, reply: bool = True) -> bool:
        """A text turn for the model (DTMF, nudges), never cutting off a reply (call/prompts.py)."""
        return self.prompts.say(text, now, model_turn_open=self.turns_part.model_turn_open,
                                blocking_call_running=self.tools.blocking_running, reply=reply)

    def _model_quiet(self, now: float) -> None:
        """The model's turn closed, or a call it waited for was answered: send held prompts."""
        prompts = self.prompts
        if prompts.held and not prompts.model_busy(model_turn_open=self.turns_part.model_turn_open,
                                                   blocking_call_running=self.tools.blocking_running):
            prompts.flush(now)

    # -- phrases -------------------------------------------------------------------------------

    def play_phrase(self, kind: str, now: float) -> bool:
        """Queue a pre-rendered phrase; it plays when no agent audio is waiting."""
        audio = self.phrases(kind) if self.phrases is not None else None
        if not audio or self.playout.messages is None:
            return False
        seconds = self.playout.queue_phrase(audio)
        self.records.add(now, "phrase", phrase=kind, seconds=seconds)
        self.playout.pump(now)
        return True

    # -- timers --------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        if self.ending.ended is not None:
            return
        barge = self.barge
        if barge is not None and barge.due(now):  # no interrupted in the window: a false alarm
            if self.playout.paused:
                barge.resumed(now, self.playout.resume(now))
            else:
                barge.reset()
        self.playout.pump(now)
        if self.ending.limits(now):  # no media, too long, an ending due
            return
        if self.handoff is not None and self.handoff.outgoing_done(now):
            self._outgoing_finished(now)
        if self.tools.filler_due(now, self.playout.audible, self.turns_part.model_turn_open) \
                and self.play_phrase("filler", now):
            self.tools.filler_played()
        if self.link.notice_due(now, self.playout.audible):  # Gemini down: "one moment"
            self.link.notice_played(self.play_phrase("reconnect", now), now)
        self.ending.stall_step(now)  # silent stalls: found when they happen, recovered out loud
        self.ending.watchdog(now)  # the last resort

    def next_deadline(self) -> float | None:
        """When :meth:`tick` should run next."""
        deadline = self.ending.deadline()
        barge = self.barge.deadline() if self.barge is not None else None
        handoff = self.handoff.deadline() if self.handoff is not None else None
        for d in (self.playout.deadline(), self.tools.deadline(), self.link.deadline(self.ending.last_media), barge,
                  handoff):
            if d is not None and d < deadline:
                deadline = d
        return deadline

    def clear_written(self, now: float) -> None:
        """The adapter wrote a ``clear`` to Twilio's socket: closes the barge-in reaction timer."""
        if self.interrupted_at is not None:
            reaction = now - self.interrupted_at
            self.interrupted_at = None
            self.clear_reactions_s.append(reaction)
            if self.metrics is not None:
                self.metrics.clear_reaction.observe(reaction)

    # -- records -------------------------------------------------------------------------------

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
            "timeline": self.timeline,  # the review page's lanes (review/)
            "caller": self.custom_parameters.get("from", ""),
            **({"panel": {"handoffs": self.handoff.log, "speaking": self.handoff.current}}
               if self.handoff is not None else {}),
        }

    def attach_recorder(self, recorder: Any) -> None:
        """Record this call (recording/core.py): told every caller frame, agent frame, mark, clear."""
        self.recorder = self.playout.recorder = recorder

    def latencies_ms(self) -> list[float]:
        return self.turns_part.latencies_ms()

    def summary(self) -> dict[str, Any]:
        """The call's figures (logged at its end, kept in its record, printed by the demo)."""
        return call_summary(self.turns_part, self.playout, self.counters, self.protocol_errors)
