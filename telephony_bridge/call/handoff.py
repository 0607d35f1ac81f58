"""Hand-off: one interviewer of a panel passes the live call to a colleague (``hand_off``).

The call keeps one Twilio stream; the Gemini side moves to a new session configured for the next
interviewer (their voice, system instruction and tools), seeded with the conversation so far.
The switch reuses the goAway handover's path in the adapter (``handover_wanted`` →
``begin_handover`` → a new connection → ``setupComplete``), so caller audio is kept while the new
connection opens and is sent to it once it is ready: nothing the caller says is lost.

States::

    IDLE ──hand_off call──▶ ANSWERED ──caller quiet, no tool running──▶ SWITCHING
    SWITCHING ──next session's setupComplete──▶ HOLDING (its output held) or IDLE (outgoing done)
    HOLDING ──the outgoing interviewer's sentence is done──▶ IDLE (held output released)
    SWITCHING ──connection failed──▶ IDLE (the outgoing interviewer carries on)

``hand_off(to, reason)`` is answered at once (the model is told to say one sentence naming the
colleague, then stop); a bad target is answered with an error and nothing else happens. The
switch starts right away (the caller quiet for 0.6 s, no tool running): caller audio from then
on is kept for the next session, which opens and is seeded while the outgoing interviewer is
still saying their sentence. That sentence keeps coming from the retiring connection
(:meth:`~telephony_bridge.call.CallCore.receive_outgoing`: audio and transcription only) and
plays to its end; the next interviewer's first words, generated meanwhile, are held
(:attr:`Handoff.held`) and released the moment the outgoing ``turnComplete`` arrives (or no
sentence came within ``answer_wait_s``, or ``max_wait_s``), so they follow the last word with no
think time in between. Only then does the transcript's speaker change.

The seed (one ``clientContent``, sent first on the new connection): the transcript as history
turns (the caller ``user``, each interviewer ``model``, prefixed with their name), then a user
turn with the brief: who handed over and why, the topics covered, the saved notes, and the
instruction to introduce oneself in one sentence and not ask what was already answered.

Decisions only: the adapter's handover code opens and closes the sockets. Time comes in as ``now``.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, replace
from typing import Any

from ..gemini import messages as gm
from ..gemini.session import SessionState
from ..log import log_event
from ..panel import HAND_OFF, Interviewer
from .timeline import Timeline

logger = logging.getLogger("telephony_bridge.call")


@dataclass(frozen=True)
class Seat:
    """One interviewer's Gemini session configuration, ready to open."""

    interviewer: Interviewer
    setup: gm.SetupConfig
    tool_names: frozenset[str]
    blocking_tools: frozenset[str] | None = None


@dataclass(frozen=True)
class Panel:
    """The seats by interviewer id; ``first`` answers the call."""

    seats: dict[str, Seat]
    first: str

    def seat(self, ident: str) -> Seat:
        return self.seats[ident]


class HandoffState(enum.Enum):
    IDLE = "idle"
    ANSWERED = "answered"
    SWITCHING = "switching"
    HOLDING = "holding"


@dataclass(slots=True)
class HandoffConfig:
    #: The caller must have been quiet this long before the switch.
    caller_quiet_s: float = 0.6
    #: After the answer, no sentence starting within this long: the outgoing interviewer is done.
    answer_wait_s: float = 3.0
    #: The outgoing interviewer is done after this long whatever happens; the switch itself
    #: starts by then even if the caller is still talking (their audio is kept either way).
    max_wait_s: float = 12.0
    #: History turns in the seed (the newest ones).
    history_turns: int = 60


class Handoff:
    def __init__(self, panel: Panel, link: Any, turns: Any, tools: Any, config: Any, timeline: Timeline,
                 counters: dict[str, int], handoff_config: HandoffConfig | None = None) -> None:
        self.panel = panel
        self.link = link
        self.turns = turns
        self.tools = tools
        self.call_config = config
        self.timeline = timeline
        self.counters = counters
        self.cfg = handoff_config or HandoffConfig()
        self.state = HandoffState.IDLE
        self.current = panel.first
        self.call_sid: str | None = None
        #: Every hand-off: {"from", "to", "reason", "t_requested", "t_start", "t_ready", "ok"}.
        self.log: list[dict[str, Any]] = []
        self._target: str | None = None
        self._reason = ""
        self._answered_at = 0.0
        self._next_check = 0.0
        self._model_turn_seen = False
        self._sentence_done = False
        #: The outgoing interviewer's sentence is still coming (from the retiring connection).
        self.outgoing_open = False
        #: The next session's frames, held until the outgoing sentence is done.
        self.held: list[str | bytes] = []
        self._previous: tuple[gm.SetupConfig, str | None] | None = None
        turns.speaker = self.interviewer.name
        counters.setdefault("handoffs", 0)
        counters.setdefault("handoff_replayed_frames", 0)

    @property
    def interviewer(self) -> Interviewer:
        return self.panel.seat(self.current).interviewer

    # -- the tool call -------------------------------------------------------------------------

    def take(self, event: gm.ToolCall, now: float) -> gm.ToolCall:
        """Answer the ``hand_off`` calls in ``event`` (sent on the link); returns the other calls."""
        rest = [c for c in event.calls if c.name != HAND_OFF]
        if len(rest) == len(event.calls):
            return event
        replies = []
        for call in event.calls:
            if call.name == HAND_OFF:
                replies.append({"id": call.id, "name": HAND_OFF, "response": self._called(call, now)})
                self.link.session.tool_answered(call.id)
        self.link.send(gm.tool_response(replies))
        return gm.ToolCall(tuple(rest))

    def _called(self, call: gm.FunctionCall, now: float) -> dict[str, Any]:
        to = str(call.args.get("to", "")).strip()
        reason = str(call.args.get("reason", "")).strip()[:500]
        me = self.interviewer
        self.timeline.add(now, "handoff_called", id=call.id, frm=me.id, to=to)
        if self.state is not HandoffState.IDLE:
            return {"status": "error", "retryable": False, "message": "A hand-off is already under way."}
        if to not in me.hands_to or to not in self.panel.seats:
            allowed = ", ".join(me.hands_to) or "nobody"
            return {"status": "invalid_argument", "retryable": True,
                    "message": f"You can hand the call to: {allowed}. Carry on if none fits."}
        self.state = HandoffState.ANSWERED
        self._target, self._reason = to, reason
        self._answered_at = now
        self._next_check = now + 0.05
        self._model_turn_seen = False
        self._sentence_done = False
        # Audio the old session hears from here on is replayed to the next one if the caller spoke.
        self.link.mark_sent()
        name = self.panel.seat(to).interviewer.name
        self.log.append({"from": me.id, "to": to, "reason": reason, "t_requested": self.timeline.t(now)})
        return {"status": "ok", "retryable": False,
                "message": f"{name} takes over now. Say one short sentence telling the founder that {name} "
                           "will continue, then stop talking. Do not ask another question."}

    def model_content(self) -> None:
        """The outgoing model is producing its one sentence (audio)."""
        if self.state is not HandoffState.IDLE:
            self._model_turn_seen = True

    # -- when to switch ------------------------------------------------------------------------

    def wanted(self, now: float) -> bool:
        """Time to open the next interviewer's session: the caller quiet, no tool running."""
        if self.state is not HandoffState.ANSWERED:
            return False
        self._next_check = now + 0.05
        if now >= self._answered_at + self.cfg.max_wait_s:
            return True
        last = self.turns.last_caller_speech
        caller_quiet = last is None or now - last >= self.cfg.caller_quiet_s
        return caller_quiet and not self.tools.running

    def turn_complete(self) -> None:
        """The outgoing model closed its turn before the switch began: its sentence is done."""
        if self.state is HandoffState.ANSWERED and self._model_turn_seen:
            self._sentence_done = True

    def outgoing_done(self, now: float, *, turn_complete: bool = False) -> bool:
        """Is the outgoing sentence over? (its ``turnComplete`` after content, none within
        ``answer_wait_s``, or ``max_wait_s``)."""
        if not self.outgoing_open:
            return False
        at = self._answered_at  # compared as deadline() adds it
        return ((turn_complete and self._model_turn_seen) or now >= at + self.cfg.max_wait_s
                or (not self._model_turn_seen and now >= at + self.cfg.answer_wait_s))

    def deadline(self) -> float | None:
        """While waiting: look again every 50 ms (ANSWERED); the outgoing sentence's time limits."""
        if self.state is HandoffState.ANSWERED:
            return self._next_check
        if self.outgoing_open:
            limit = self._answered_at + self.cfg.max_wait_s
            if not self._model_turn_seen:
                limit = min(limit, self._answered_at + self.cfg.answer_wait_s)
            return limit
        return None

    # -- the switch ----------------------------------------------------------------------------

    def begin(self, now: float, notes: list[dict[str, Any]]) -> str:
        """Retarget the session to the next interviewer; returns the setup for the new connection."""
        assert self._target is not None
        link, session = self.link, self.link.session
        old = self.interviewer
        seat = self.panel.seat(self._target)
        self.state = HandoffState.SWITCHING
        self._previous = (session.setup, session.handle)
        caller_spoke = self.turns.last_caller_speech is not None and self.turns.last_caller_speech > self._answered_at
        replay = link.sent_since_mark() if caller_spoke else []
        session.setup = replace(seat.setup, resumption_handle=None)
        session.handle = None
        link.seed = self._seed(old, seat.interviewer, notes)
        if replay:
            self.counters["handoff_replayed_frames"] += len(replay)
            link.send_first(replay)
        link.mark_sent()
        self._sit(self._target)
        self.outgoing_open = not self._sentence_done
        entry = self.log[-1]
        entry["t_start"] = self.timeline.t(now)
        self.timeline.add(now, "handoff_start", frm=old.id, to=seat.interviewer.id, voice=seat.interviewer.voice)
        log_event(logger, "call.handoff", call_sid=self.call_sid, frm=old.id, to=seat.interviewer.id)
        return link.begin_handover(now)

    def ready(self, now: float) -> bool:
        """``setupComplete`` arrived: True when it was the next interviewer's session."""
        if self.state is not HandoffState.SWITCHING:
            return False
        self._previous = None
        self.counters["handoffs"] += 1
        self.log[-1].update(t_ready=self.timeline.t(now), ok=True)
        self.timeline.add(now, "handoff_ready", to=self.current, holding=self.outgoing_open)
        if self.outgoing_open:
            self.state = HandoffState.HOLDING
        else:
            self._handed_over(now)
        return True

    @property
    def holding(self) -> bool:
        """The next session's frames wait for the outgoing sentence to end."""
        return self.state is HandoffState.HOLDING

    def finish_outgoing(self, now: float) -> list[str | bytes]:
        """The outgoing sentence is over: returns the held frames to route now, in order."""
        self.outgoing_open = False
        self.timeline.add(now, "handoff_outgoing_done", held=len(self.held))
        held, self.held = self.held, []
        if self.state is HandoffState.HOLDING:
            self._handed_over(now)
        return held

    def _handed_over(self, now: float) -> None:
        self.state = HandoffState.IDLE
        self.turns.speaker = self.interviewer.name
        self.log[-1]["t_done"] = self.timeline.t(now)

    def failed(self, reason: str, now: float) -> None:
        """The new connection could not be had: the outgoing interviewer carries on."""
        if self.state is not HandoffState.SWITCHING or self._previous is None:
            return
        session = self.link.session
        session.setup, session.handle = self._previous
        self.turns.speaker = self._sit(self.log[-1]["from"]).interviewer.name
        self.link.seed = None
        self.state = HandoffState.IDLE
        self.outgoing_open = False
        self.held.clear()
        self.log[-1].update(ok=False)
        self.timeline.add(now, "handoff_failed", reason=reason[:120])
        session.state = SessionState.ACTIVE
        self.link.handover_failed(reason, now)
        session.state = SessionState.ACTIVE  # not draining: no goAway is behind this
        self.link.send(gm.client_text("[The colleague could not join. Carry on with your own topics.]"))

    # -- a call resumed on another stream or replica -----------------------------------------

    def resume_seat(self, ident: str, now: float) -> None:
        """The stored session being resumed is ``ident``'s (a hand-off happened before the call
        moved): its voice, instruction and tools from the first connection on. A seat this panel
        does not have (the persona changed) leaves the first interviewer."""
        if ident == self.current:
            return
        if ident not in self.panel.seats:
            self.timeline.add(now, "resume_seat_unknown", seat=ident[:40])
            return
        seat = self._sit(ident)
        self.link.session.setup = replace(seat.setup, resumption_handle=None)
        self.turns.speaker = seat.interviewer.name
        self.timeline.add(now, "resume_seat", seat=ident, voice=seat.interviewer.voice)

    def _sit(self, ident: str) -> Seat:
        """``ident`` is the current interviewer: their tools are the call's."""
        seat = self.panel.seat(ident)
        self.current = ident
        self.call_config.tool_names = seat.tool_names
        self.call_config.blocking_tools = seat.blocking_tools
        return seat

    # -- the seed ------------------------------------------------------------------------------

    def _seed(self, old: Interviewer, new: Interviewer, notes: list[dict[str, Any]]) -> str:
        transcript = self.turns.conversation()
        current = self.turns.current
        if current is not None and current.ended is None and current.text.strip() \
                and current.started < self._answered_at:  # not the hand-off sentence, half said
            transcript.append({"role": "agent", "text": current.text.strip(), "speaker": old.name})
        turns: list[tuple[str, str]] = []
        for e in transcript[-self.cfg.history_turns:]:
            text = (e.get("text") or "").strip()
            if not text:
                continue
            if e.get("role") == "agent":
                turns.append(("model", f"{e.get('speaker') or old.name}: {text}"))
            else:
                turns.append(("user", text))
        turns.append(("user", self.brief(old, new, notes)))
        return gm.client_turns(turns)

    def brief(self, old: Interviewer, new: Interviewer, notes: list[dict[str, Any]]) -> str:
        """The one-paragraph brief the next interviewer starts from."""
        said = "; ".join(str(n.get("text") or n.get("note") or "").strip() for n in notes[-12:]
                         if (n.get("text") or n.get("note")))
        covered = ", ".join(old.topics) or "their topics"
        parts = [f"[Hand-off: {old.name} has handed the interview to you, {new.name}."]
        if self._reason:
            parts.append(f"{old.name}'s reason: {self._reason}")
        parts.append(f"{old.name} covered {covered}.")
        if said:
            parts.append(f"Notes saved so far: {said}.")
        parts.append("Everything above has been said on this call. Introduce yourself to the founder in one "
                     "sentence, then ask your first question on your own topics. Do not greet them as if the "
                     "call had just begun, and do not ask anything that was already answered above.]")
        return " ".join(parts)




def build_panel(persona: Any, base: gm.SetupConfig, registry: Any, model: str) -> Panel | None:
    """The seats of ``persona``'s panel (None without one): ``base`` (the server's setup: model,
    turn-taking, resumption) with each interviewer's voice, instruction and tools, ``hand_off``
    declared for those who may hand over. ``registry``: the server's ToolRegistry."""
    from ..gemini.profiles import BLOCKING, profile_for
    from ..panel import hand_off_declaration

    if not persona.panel:
        return None
    profile = profile_for(model)
    seats = {}
    for person in persona.panel:
        declarations = registry.declarations(person.tools)
        if person.hands_to:
            declarations.append(hand_off_declaration(person, persona.panel))
        blocking = frozenset(name for name in person.tools
                             if (tool := registry.get(name)) is not None
                             and profile.effective_behavior(tool.behavior.value) == BLOCKING)
        setup = replace(base, voice=person.voice, system_instruction=persona.instruction_for(person),
                        function_declarations=declarations)
        seats[person.id] = Seat(person, setup, frozenset(person.tools), blocking)
    return Panel(seats, persona.panel[0].id)


__all__ = ["Handoff", "HandoffConfig", "HandoffState", "Panel", "Seat", "build_panel"]
