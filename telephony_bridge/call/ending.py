"""Ending: how a call ends, and the watchdogs that keep it from ending in dead air.

* ``end_call`` (the agent decided): the call ends once the goodbye has been heard — a new agent
  turn after the request has played out and the model is quiet — or after ``end_call_grace_s``
  with nothing playing, or at the latest ``end_call_timeout_s`` after the request.
* A last phrase (an apology, "we have to end here"): handed to Twilio whole (not paced: a stall
  on our side must not put a hole in it), the call ends when it has been heard, or three seconds
  after it should have (:meth:`Ending.end_with_phrase`).
* Limits: no media for ``no_media_timeout_s`` is a dead stream; a call longer than ``max_call_s``
  is ended with a phrase.
* Silent stalls (:mod:`.stall_watch`): a model turn that ends with nothing, or never starts, is
  found when it happens; the model is nudged at once (never while it is producing: on 3.x a
  ``clientContent`` with ``turnComplete`` interrupts), "let me think about that" covers a nudge
  that brings nothing within a second, up to three nudges, then the apology.
* The reply watchdog, the last resort: after the greeting request or the caller's end of turn,
  no agent audio for ``reply_watchdog_s`` nudges the model once (a text turn), then the caller
  hears an apology.

Ending itself is decided by the core (``end``), which writes the record; this part decides when.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..gemini import messages as gm
from ..log import log_event
from ..metrics import Metrics
from .config import CallConfig
from .recheck import Recheck
from .stall_watch import NUDGE_TEXT, StallState, StallStep, StallWatch
from .timeline import Timeline

if TYPE_CHECKING:
    from .link import Link
    from .playout import Playout
    from .tool_dispatch import ToolDispatch
    from .turns import Turns

logger = logging.getLogger("telephony_bridge.call")


class Ending:
    def __init__(self, config: CallConfig, timeline: Timeline, counters: dict[str, int], *, now: float,
                 playout: Playout, turns: Turns, link: Link, tools: ToolDispatch,
                 play_phrase: Callable[[str, float], bool], end: Callable[[float, str], None],
                 metrics: Metrics | None = None, vad_s: float = 1.0,
                 say: Callable[[str, float], object] | None = None) -> None:
        self.config = config
        #: How a nudge reaches the model (the core's prompts: never cutting a reply off).
        self._say = say
        self.metrics = metrics
        #: Silent stalls: found when they happen, recovered out loud.
        self.stall = StallWatch(config.stall)
        #: Gemini commits a caller turn this long after their speech ends (silenceDurationMs).
        self.vad_s = vad_s
        self.timeline = timeline
        self.counters = counters
        self.call_sid: str | None = None
        self._playout = playout
        self._turns = turns
        self._link = link
        self._tools = tools
        self._play_phrase = play_phrase
        self._end = end
        self.t0 = now
        #: The last caller media frame (any content): a stream without media is dead.
        self.last_media = now
        #: When the call started waiting for the agent to speak (None: not waiting).
        self.awaiting_reply_since: float | None = None
        self._nudged = False
        #: The watchdog was due but could not act (link down, audio playing, a tool, a stall
        #: being recovered): look again at this time, not on every loop iteration.
        self._watchdog_recheck = Recheck()
        self._end_requested: tuple[str, float] | None = None
        self._end_turns_at_request = 0
        self._end_recheck = Recheck()
        #: (reason, deadline): ending after a last phrase has played.
        self._closing: tuple[str, float] | None = None
        # A last phrase before hanging up (apology, goodbye): wanted, and heard to its last mark.
        self._goodbye_wanted = False
        self._goodbye_heard = False
        self.ended: str | None = None

    @property
    def closing(self) -> bool:
        """Ending after a last phrase: the call is over once it has been heard (or a cap)."""
        return self._closing is not None and self.ended is None

    @property
    def goodbye_unheard(self) -> bool:
        """The call wanted a last phrase and the caller did not hear all of it on the stream."""
        return self._goodbye_wanted and not self._goodbye_heard

    # -- waiting for a reply --------------------------------------------------------------------

    def await_reply(self, since: float) -> None:
        self.awaiting_reply_since = since

    def reply_started(self) -> None:
        """An agent turn began (or the caller spoke, or a tool runs): not waiting any more."""
        self.awaiting_reply_since = None
        self._nudged = False

    # -- end of call -----------------------------------------------------------------------------

    def request_end_call(self, reason: str, now: float) -> None:
        """The agent decided to end the call (end_call tool): hang up once its goodbye is heard."""
        if self._end_requested is None:
            self._end_requested = (reason or "end_call", now)
            self._end_turns_at_request = len(self._turns.turns)
            self.timeline.add(now, "end_call_requested", reason=reason[:120])

    def end_with_phrase(self, now: float, kind: str, reason: str) -> None:
        """End the call after a last phrase has been heard (never dead air)."""
        if self.ended is not None or self._closing is not None:
            return
        playout = self._playout
        playout.drop_agent_audio()
        playout.closing = True  # the phrase goes to Twilio whole: no stall of ours can break it up
        self._goodbye_wanted = True
        if not self._play_phrase(kind, now):
            self._end(now, reason)
            return
        self._closing = (reason, playout.phrase_end(now) + 3.0)

    def check(self, now: float) -> None:
        """Has the moment to end come (a last phrase heard, a goodbye heard)?"""
        if self.ended is not None:
            return
        if self._closing is not None:
            if not self._playout.audible or now >= self._closing[1]:
                self._goodbye_heard = not self._playout.audible  # its last mark came back
                self._end(now, self._closing[0])
            return
        if self._end_requested is not None:
            reason, at = self._end_requested
            quiet = not self._playout.audible and not self._turns.model_turn_open
            goodbye_heard = len(self._turns.turns) > self._end_turns_at_request \
                or now >= at + self.config.end_call_grace_s  # (each compared as deadline() adds it)
            if (quiet and goodbye_heard) or now >= at + self.config.end_call_timeout_s:
                self._end(now, reason if reason.startswith("end_call") else f"end_call:{reason}")
            else:
                self._end_recheck.blocked(now)  # the goodbye still playing or being said

    def limits(self, now: float) -> bool:
        """No media, maximum length, an ending due. True when the call ended or is closing."""
        cfg = self.config
        if now >= self.last_media + cfg.no_media_timeout_s:
            self.timeline.add(now, "no_media_timeout")
            self._end(now, "no-media")
            return True
        if now >= self.t0 + cfg.max_call_s:
            self.timeline.add(now, "max_duration")
            self.end_with_phrase(now, "goodbye_error", "max-duration")
        self.check(now)
        return self.ended is not None or self._closing is not None

    # -- the reply watchdog ----------------------------------------------------------------------

    def watchdog(self, now: float) -> None:
        """Nudge once, then apologise."""
        since = self.awaiting_reply_since
        if since is None or now < since + self.config.reply_watchdog_s:  # as deadline() adds it
            return
        if not self._link.can_send() or self._playout.audible or self._tools.running or self.stall.recovering:
            self._watchdog_recheck.blocked(now)  # due, not now: look again later
            return
        if not self._nudged:
            self._nudged = True
            self.counters["nudges"] += 1
            self.timeline.add(now, "watchdog_nudge")
            log_event(logger, "call.watchdog", logging.WARNING, call_sid=self.call_sid, action="nudge")
            self._prompt("[The caller is waiting for your reply. Please respond.]", now)
            self.awaiting_reply_since = now
        else:
            self.counters["apologies"] += 1
            self.timeline.add(now, "watchdog_apology")
            log_event(logger, "call.watchdog", logging.WARNING, call_sid=self.call_sid, action="apology")
            self._play_phrase("apology", now)
            self.awaiting_reply_since = None
            self._turns.caller_spoke = False  # asked to say it again: no new nudge cycle until they do
            self._nudged = False

    # -- silent stalls ---------------------------------------------------------------------------

    def expect_reply(self, since: float, now: float, *, expected: str = "caller") -> None:
        """A reply is due (the caller's end of speech, the greeting request): arm the stall watch."""
        if expected == "greeting":
            self.stall.expect_reply(since, now, expected="greeting")
        else:
            self.stall.expect_reply(since, now, vad_s=self.vad_s)

    def stall_step(self, now: float) -> None:
        """Let the stall watch take what step is due, and carry out what it asks."""
        stall = self.stall
        if stall.state is StallState.IDLE and not stall.steps:
            return
        if self.ended is None and self._closing is None and self._end_requested is None:
            can_nudge = self._link.can_send() and not self._turns.model_turn_open and not self._tools.running \
                and not self._link.handing_over
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
            self.timeline.add(now, "stall_nudge", attempt=step.nudges, expected=step.expected)
            self._prompt(self._nudge_text(step.expected), now)
        elif kind == "phrase":
            if self._play_phrase(step.phrase or "thinking", now):
                counters["stall_phrases"] += 1
        elif kind == "detected":
            counters["stalls"] += 1
            if metrics is not None:
                metrics.stalls[step.reason].inc()
            self.timeline.add(now, "stall", reason=step.reason, expected=step.expected, waited_ms=waited_ms)
            log_event(logger, "call.stall", logging.WARNING, call_sid=self.call_sid, reason=step.reason,
                      expected=step.expected, waited_ms=waited_ms)
        elif kind == "recovered":
            counters["stall_recovered"] += 1
            if metrics is not None:
                metrics.stall_outcomes["recovered"].inc()
            self.timeline.add(now, "stall_recovered", nudges=step.nudges, waited_ms=waited_ms)
            log_event(logger, "call.stall_recovered", call_sid=self.call_sid, nudges=step.nudges,
                      waited_ms=waited_ms)
        elif kind == "apology":
            counters["stall_apologies"] += 1
            if metrics is not None:
                metrics.stall_outcomes["apology"].inc()
            self.timeline.add(now, "stall_apology", nudges=step.nudges, waited_ms=waited_ms)
            log_event(logger, "call.stall_apology", logging.WARNING, call_sid=self.call_sid,
                      nudges=step.nudges, waited_ms=waited_ms)
            self._play_phrase("apology", now)
            # The caller was asked to say it again: wait for them, not for this turn's reply.
            self.awaiting_reply_since = None
            self._turns.caller_spoke = False
            self._nudged = False
        elif kind == "abandoned":
            if metrics is not None:
                metrics.stall_outcomes["abandoned"].inc()
            self.timeline.add(now, "stall_abandoned", nudges=step.nudges, waited_ms=waited_ms)

    def _nudge_text(self, expected: str) -> str:
        """What a nudge says: a user text turn asking the model to speak (sent with
        ``turnComplete``, which on 3.x interrupts a generation in progress: that is why the
        watch never nudges while the model is producing, and why it goes through the prompts)."""
        if expected == "greeting" and self.config.greeting_prompt:
            return self.config.greeting_prompt
        return NUDGE_TEXT.get(expected, NUDGE_TEXT["caller"])

    def _prompt(self, text: str, now: float) -> None:
        if self._say is not None:
            self._say(text, now)
        else:
            self._link.send(gm.client_text(text))

    def deadline(self) -> float:
        cfg = self.config
        deadline = min(self.last_media + cfg.no_media_timeout_s, self.t0 + cfg.max_call_s)
        if self.awaiting_reply_since is not None:
            deadline = min(deadline, self._watchdog_recheck.deadline(self.awaiting_reply_since + cfg.reply_watchdog_s))
        if self._end_requested is not None:
            at = self._end_requested[1]
            deadline = min(deadline, at + cfg.end_call_timeout_s,
                           self._end_recheck.deadline(max(at + cfg.end_call_grace_s, self._playout.playout_end + 0.1)))
        if self._closing is not None:
            deadline = min(deadline, self._closing[1])
        else:
            stall = self.stall.next_deadline()
            if stall is not None:
                deadline = min(deadline, stall)
        return deadline
