"""How the emulated model behaves: :class:`Scenario`, its tool-call steps and the reply plan.

A scenario is plain data plus three pure questions the connection asks it: how long to think
before reply *n* (:meth:`Scenario.think_seconds`), which clip is the *n*-th reply
(:meth:`Scenario.reply_clip`) and what answers caller turn *n*: a scripted tool call or the
next reply (:meth:`Scenario.plan_after_caller_turn`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .faults import Fault
from .vad import DEFAULT_THRESHOLD

DEFAULT_REPLIES = ("q_customer", "q_competition", "q_business_model", "q_why_now", "goodbye")


@dataclass
class ToolCallStep:
    """After caller turn ``after_turn`` (1-based, audio or text turns), call a tool.

    (Or after the first turn past it, if that reply was cut off before the call went out.)

    The emulator sends ``toolCall {functionCalls: [{id, name, args}]}``. What follows depends on
    what the call is on the model named in setup (:mod:`.models`: the tool's declared
    ``behavior`` and the family's default):

    * **Blocking**: the model says nothing until the matching ``toolResponse``, then speaks
      ``then_clip`` (``None``: the next reply in order). Where new input cancels a blocking call
      (3.8; and 2.5, where a barge-in interrupts the turn the call belongs to), caller speech or a
      ``clientContent`` while it waits cancels it with ``toolCallCancellation {ids}``; 3.1 waits
      for the answer whatever the caller does.
    * **Non-blocking**: the model keeps going at once with ``while_running`` (a clip; ``None``:
      the next reply in order; ``""``: nothing, the turn ends silent) and speaks ``then_clip`` when
      the answer arrives, as its ``scheduling`` says (``SILENT``: never).

    ``cancel_after_s`` seconds without a response cancels the call (a scripted cancellation).
    """

    after_turn: int
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    then_clip: str | None = "tool_ack"
    call_id: str | None = None
    cancel_after_s: float | None = None
    while_running: str | None = "tool_wait"


#: What the model says next: ``(kind, clip, tool step)``; kind is "greeting", "reply", "tool",
#: "result" (a non-blocking call's answer) or "filler" (the model's own, while a tool runs); clip
#: ``None`` means the next reply in order.
Plan = tuple[str, str | None, ToolCallStep | None]


@dataclass
class Scenario:
    """How the emulated model behaves. Every field has a sensible default."""

    #: Reply clip ids, in order, one per caller turn (after the greeting).
    replies: Sequence[str] = DEFAULT_REPLIES
    #: The clip spoken when the client asks the model to speak first.
    greeting: str = "greeting"
    #: After the last reply: repeat it, start again from the first, or stay silent.
    when_exhausted: Literal["repeat_last", "cycle", "silent"] = "repeat_last"
    #: Sending speed relative to real time (1.0 = real time, 2.0 = twice as fast).
    pace: float = 1.0
    #: Audio sent at once at the start of each reply, ahead of real time (the service does this).
    burst_ms: float = 0.0
    chunk_ms: int = 40
    #: Delay before the first message of each reply; a list gives one value per reply (the last
    #: repeats).
    think_ms: float | Sequence[float] = 300.0
    #: Overrides the setup's silenceDurationMs / prefixPaddingMs when set.
    silence_duration_ms: int | None = None
    prefix_padding_ms: int | None = None
    vad_threshold: float = DEFAULT_THRESHOLD
    #: Barge-in needs this much caller speech (audio time from the VAD's start of speech to the
    #: end of its latest speech block) before ``interrupted`` is sent, as the service's VAD needs
    #: a few hundred ms (field reports: 200-500 ms). A sound over a reply that never gets this
    #: long (a cough, a bark, "mhm") is ignored: no interruption and no caller turn. 0: interrupt
    #: at the start of speech (the VAD's ``prefix_padding_ms``).
    barge_in_speech_ms: float = 300.0
    #: inputTranscription texts for caller turns 1, 2, …; otherwise "[caller speech 2.4 s]".
    caller_texts: Sequence[str] = ()
    #: "auto": send transcriptions only when the setup asked for them (as the service does).
    transcriptions: Literal["auto", "always", "never"] = "auto"
    usage_metadata: bool = True
    tool_calls: Sequence[ToolCallStep] = ()
    faults: Sequence[Fault] = ()
    #: When set, a setup naming another model is closed with 1008 (model not found). Retired
    #: models (``profiles.RETIRED``) are refused either way.
    known_models: Sequence[str] | None = None
    #: Models that speak their own fillers (3.8 extended thinking): the clip said once per
    #: non-blocking call still running after the line has been quiet this long (None: never).
    model_filler: str | None = "tool_filler"
    model_filler_after_ms: float = 1200.0
    #: Where a wrong or missing API key is refused: HTTP 401/403 at the upgrade, or (as the
    #: service does) a close 1007 in answer to ``setup``.
    key_check: Literal["handshake", "setup"] = "handshake"
    #: Resumption handles expire after this long (the service: 2 hours).
    handle_ttl_s: float = 7200.0
    clips_dir: str | Path | None = None
    #: A panel (the bridge's hand_off): per prebuilt voice name, the fields of this scenario that
    #: a session set up with that ``voiceName`` uses instead (``replies``, ``greeting``,
    #: ``tool_calls``, ...), and the voice's clip set (``testing/clips/voices/<Voice>/``, where it
    #: exists) over the default clips. Such a session's first ``clientContent`` turn (the hand-off's
    #: seed, history included) is answered with its ``greeting``: the interviewer's introduction.
    voices: dict[str, dict[str, Any]] = field(default_factory=dict)

    def for_voice(self, voice: str | None) -> Scenario | None:
        """The scenario a session with ``voice`` follows (None: not a panel voice)."""
        overrides = self.voices.get(voice or "")
        if overrides is None:
            return None
        from dataclasses import replace

        return replace(self, voices={}, **overrides)

    def think_seconds(self, reply_number: int) -> float:
        """Think time before reply ``reply_number`` (0-based, per connection)."""
        if isinstance(self.think_ms, (int, float)):
            return float(self.think_ms) / 1000.0
        values = list(self.think_ms)
        if not values:
            return 0.0
        return float(values[min(reply_number, len(values) - 1)]) / 1000.0

    def reply_clip(self, index: int) -> str | None:
        """The clip for the ``index``-th reply (0-based) or ``None`` for silence."""
        replies = list(self.replies)
        if not replies:
            return None
        if index < len(replies):
            return replies[index]
        if self.when_exhausted == "cycle":
            return replies[index % len(replies)]
        if self.when_exhausted == "repeat_last":
            return replies[-1]
        return None

    def plan_after_caller_turn(self, n: int, steps_done: Sequence[int]) -> Plan:
        """What answers caller turn ``n`` (1-based): the first tool step due and not yet in
        ``steps_done`` (indexes into ``tool_calls``), else the next reply in order."""
        for i, step in enumerate(self.tool_calls):
            if step.after_turn <= n and i not in steps_done:
                return ("tool", step.then_clip, step)
        return ("reply", None, None)
