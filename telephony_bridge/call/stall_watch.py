"""Silent stalls: the model ends its turn without a sound, or never starts one. Sans I/O.

Field reports (python-genai #2117: LiveKit users on ``gemini-3.1-flash-live-preview``, about half
of deployed phone calls hit at least one) describe it: the caller finishes, Gemini sends
``turnComplete`` with no audio at all, no error, and the socket stays open. Silence on a phone
line sounds like a dropped call, so the watch notices the stall when it happens and the call
recovers out loud::

    IDLE ──expect_reply──▶ ARMED ──an empty model turn, or no turn by the deadline──▶ RECOVERING
    ARMED / RECOVERING ──model content (audio, output transcription, tool call)──▶ IDLE
    ARMED / RECOVERING ──the caller speaks, or a barge-in──▶ IDLE (the caller has the floor)
    ARMED / RECOVERING ──link_lost──▶ SUSPENDED ──link_ready──▶ ARMED (a fresh deadline)

An *empty* model turn is a ``turnComplete`` with no audio, no output transcription and no tool
call since the previous one, while a reply is expected (after the caller's end of turn, the
greeting request or a resumed connection that was asked to go on). The *deadline* is the
caller's end of speech + the VAD's ``silenceDurationMs`` (Gemini cannot answer before it has
committed the turn) + :attr:`StallConfig.no_reply_s`, or request + :attr:`StallConfig.first_reply_s`
for a greeting or a resumed connection.

While RECOVERING, :meth:`StallWatch.poll` hands the owner these steps, each one once:

1. ``nudge`` at once: a user text turn asking the model to answer.
2. ``phrase`` ("let me think about that…"; "one moment…" before a greeting) when the nudge has
   brought no audio within :attr:`StallConfig.phrase_after_s`, or at once when the stall was
   found by the deadline: by then the caller has already waited longer than a healthy reply takes.
3. another ``nudge`` after another empty turn (at once: that generation is over; with the phrase
   at once, if it has not played: the caller has waited twice a healthy reply), or after
   :attr:`StallConfig.retry_after_s` of silence (with a short ``phrase`` so the line never goes
   quiet for long), at most :attr:`StallConfig.max_nudges` in all;
4. then ``apology``, and IDLE: the caller is asked to say it again and a new turn begins.

Gemini 3.x reads ``clientContent`` with ``turnComplete: true`` as "interrupt whatever is being
generated" (Google's 3.1 Flash Live and 3.8 Live migration notes), so a nudge must never go out
while the model is producing: the owner passes ``can_nudge`` (link up, no model turn open, no
tool running) and a due nudge waits for it.

Informational steps (``detected``, ``recovered``, ``abandoned``) come out of the same queue, so the
owner's timeline gets every step in order. Time is always passed in.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass


@dataclass(slots=True)
class StallConfig:
    enabled: bool = True
    #: A caller turn: no model turn this long after the VAD could have committed it (the caller's
    #: end of speech + silenceDurationMs). Twice the emulator's slowest reply (0.37 s after commit)
    #: and above Gemini's usual 0.3-0.6 s (see benchmarks/faults.py for the measurement).
    no_reply_s: float = 0.7
    #: The greeting request, or a resumed connection asked to go on: no VAD in front of it, but a
    #: fresh session's first answer is slower; a false alarm here would restart the greeting.
    first_reply_s: float = 1.5
    #: Play the phrase when the first nudge has brought no audio within this long.
    phrase_after_s: float = 1.0
    #: Nudge again after this long without any model content (a text turn is answered in ~1 s).
    retry_after_s: float = 1.5
    #: Nudges per stall, then the apology ("we retry up to 3x", the seeds' production system).
    max_nudges: int = 3


class StallState(enum.Enum):
    IDLE = "idle"
    ARMED = "armed"
    RECOVERING = "recovering"
    SUSPENDED = "suspended"


#: What a stall was found by.
EMPTY_TURN = "empty_turn"
NO_REPLY = "no_reply"

#: What a nudge says, by what the reply was awaited after (a greeting nudge repeats the request).
NUDGE_TEXT = {
    "caller": "[Your reply did not come through and the caller is waiting. Please answer what they just said.]",
    "resume": "[The caller is waiting for you to go on. Please continue.]",
}


@dataclass(frozen=True, slots=True)
class StallStep:
    """One thing that happened or is to be done now.

    ``kind``: ``detected``, ``nudge``, ``phrase``, ``recovered``, ``abandoned``, ``apology``.
    ``expected``: what the reply was awaited after (``caller``, ``greeting``, ``resume``).
    ``waited_s``: since the caller's end of speech (or the request), when the step was taken.
    ``phrase``: for ``phrase``, ``"thinking"`` or ``"filler"``.
    """

    kind: str
    at: float
    expected: str
    reason: str
    nudges: int
    waited_s: float
    phrase: str | None = None


class StallWatch:
    """Finds silent stalls and schedules the recovery. See the module docstring."""

    __slots__ = ("config", "state", "steps", "stalls", "_expected", "_since", "_deadline",
                 "_turn_content", "_reason", "_nudges", "_nudge_due", "_phrase_at", "_phrase_kind",
                 "_retry_at", "_vad_s", "_resume_expected", "_poll_again", "_content_at")

    def __init__(self, config: StallConfig | None = None) -> None:
        self.config = config or StallConfig()
        self.state = StallState.IDLE
        #: Steps for the owner, in order (drain it after every call).
        self.steps: deque[StallStep] = deque()
        #: Stalls found so far.
        self.stalls = 0
        self._expected = "caller"
        self._since = 0.0
        self._deadline: float | None = None
        self._turn_content = False
        self._reason = ""
        self._nudges = 0
        self._nudge_due = False
        self._phrase_at: float | None = None
        self._phrase_kind = "thinking"
        self._retry_at: float | None = None
        self._vad_s = 0.0
        self._resume_expected = False
        self._poll_again: float | None = None
        self._content_at = 0.0

    @property
    def recovering(self) -> bool:
        return self.state is StallState.RECOVERING

    # -- inputs --------------------------------------------------------------------------------

    def expect_reply(self, since: float, now: float, *, expected: str = "caller", vad_s: float = 0.0) -> None:
        """A reply is due: after the caller's end of speech at ``since`` (the VAD commits the turn
        ``vad_s`` later), or after the greeting request / a resumed connection at ``since``."""
        if not self.config.enabled or self.state is StallState.RECOVERING:
            return
        if self.state is StallState.SUSPENDED:
            self._resume_expected = True
            self._vad_s = vad_s
            return
        if self._turn_content:
            if self._content_at >= since:
                return  # a model turn began after the caller finished: that is the reply
            self._turn_content = False  # a straggler from before their turn cannot answer it
        cfg = self.config
        self.state = StallState.ARMED
        self._expected, self._since, self._vad_s = expected, since, vad_s
        if expected == "caller":
            self._deadline = since + vad_s + cfg.no_reply_s
        else:
            self._deadline = since + max(cfg.first_reply_s, vad_s + cfg.no_reply_s)

    def model_content(self, now: float) -> None:
        """Audio, an output transcription or a tool call arrived: the model is answering."""
        self._turn_content = True
        self._content_at = now
        state = self.state
        if state is StallState.ARMED:
            self._reset()
        elif state is StallState.RECOVERING:
            self._step("recovered", now)
            self._reset()

    def turn_complete(self, now: float) -> None:
        """A ``turnComplete``. Empty (nothing since the previous one) while a reply is due: a stall."""
        empty = not self._turn_content
        self._turn_content = False
        if not empty:
            return
        if self.state is StallState.ARMED:
            self._detect(EMPTY_TURN, now)
        elif self.state is StallState.RECOVERING and self._nudges and not self._nudge_due:
            self._retry(now, silent=False)  # the nudge's generation is over: no point waiting

    def interrupted(self, now: float) -> None:
        """``interrupted``: the turn in progress is over (a barge-in), and so is its content."""
        self._turn_content = False
        self.caller_spoke(now)

    def caller_spoke(self, now: float) -> None:
        """The caller is speaking: a new caller turn follows, not a stall."""
        state = self.state
        if state is StallState.SUSPENDED:
            self._resume_expected = False
            return
        if state is StallState.RECOVERING:
            self._step("abandoned", now)
        if state is not StallState.IDLE:
            self._reset()

    def stand_down(self, now: float) -> None:
        """The call is ending: nothing is due any more."""
        if self.state is StallState.RECOVERING:
            self._step("abandoned", now)
        self._resume_expected = False
        self._reset()

    def link_lost(self, now: float) -> None:
        """The Gemini connection dropped: nothing can be nudged; whatever was due is due again
        once a connection is ready (see :meth:`link_ready`)."""
        state = self.state
        if state is StallState.SUSPENDED:
            return
        if state is StallState.RECOVERING:
            self._step("abandoned", now)
        self._resume_expected = state is not StallState.IDLE
        self._reset()
        self.state = StallState.SUSPENDED
        self._turn_content = False

    def link_ready(self, now: float, *, reply_requested: bool = False) -> None:
        """A connection is ready again. ``reply_requested``: the owner asked it to go on (repeat a
        cut-off question, continue a fresh seeded session). A reply that was due is due again."""
        due = reply_requested
        if self.state is StallState.SUSPENDED:
            due = due or self._resume_expected
            self.state = StallState.IDLE
            self._resume_expected = False
        if due and self.state is StallState.IDLE:
            self.expect_reply(now, now, expected="resume", vad_s=self._vad_s)

    # -- outputs -------------------------------------------------------------------------------

    def poll(self, now: float, can_nudge: bool) -> None:
        """Take whatever step is due at ``now`` (appended to :attr:`steps`)."""
        self._poll_again = None
        if self.state is StallState.ARMED:
            if self._deadline is not None and now >= self._deadline - 1e-9:
                self._detect(NO_REPLY, now)
            else:
                return
        if self.state is not StallState.RECOVERING:
            return
        cfg = self.config
        if self._retry_at is not None and now >= self._retry_at - 1e-9:
            self._retry(now, silent=True)
            if self.state is not StallState.RECOVERING:
                return
        if self._nudge_due:
            if self._nudges >= cfg.max_nudges:
                self._step("apology", now)
                self._reset()
                return
            if can_nudge:
                self._nudge_due = False
                self._nudges += 1
                self._step("nudge", now)
                self._retry_at = now + cfg.retry_after_s
                if self._nudges == 1:
                    self._phrase_at = now if self._reason == NO_REPLY else now + cfg.phrase_after_s
            else:
                self._poll_again = now + 0.1  # the model is busy or the link is switching: look again
        if self._phrase_at is not None and now >= self._phrase_at - 1e-9:
            self._phrase_at = None
            self._step("phrase", now, self._phrase_kind)

    def next_deadline(self) -> float | None:
        """When :meth:`poll` has something to do next (None: only after an input)."""
        if self.state is StallState.ARMED:
            return self._deadline
        if self.state is not StallState.RECOVERING:
            return None
        times = [t for t in (self._phrase_at, self._retry_at, self._poll_again) if t is not None]
        return min(times) if times else None

    # -- internals -----------------------------------------------------------------------------

    def _detect(self, reason: str, now: float) -> None:
        self.state = StallState.RECOVERING
        self.stalls += 1
        self._reason = reason
        self._nudges = 0
        self._nudge_due = True
        self._deadline = None
        self._phrase_kind = "filler" if self._expected == "greeting" else "thinking"
        self._step("detected", now)

    def _retry(self, now: float, *, silent: bool) -> None:
        """The last nudge brought nothing: nudge again, or apologise once they are used up."""
        self._retry_at = None
        if self._nudges >= self.config.max_nudges:
            self._step("apology", now)
            self._reset()
            return
        self._nudge_due = True
        if silent and self._phrase_at is None:
            self._phrase_at = now  # a long silence while recovering: say something meanwhile
            self._phrase_kind = "filler"
        elif self._phrase_at is not None:
            # A second empty turn: the caller has waited a healthy reply's time twice over, and
            # the next answer takes another model turn. The phrase that waited on the first
            # nudge plays now (faults.py's "empty x2": 1.44-1.56 s of dead air without it).
            self._phrase_at = now

    def _step(self, kind: str, now: float, phrase: str | None = None) -> None:
        self.steps.append(StallStep(kind, now, self._expected, self._reason, self._nudges,
                                    round(now - self._since, 3), phrase))

    def _reset(self) -> None:
        self.state = StallState.IDLE
        self._deadline = None
        self._reason = ""
        self._nudges = 0
        self._nudge_due = False
        self._phrase_at = None
        self._retry_at = None
        self._poll_again = None
