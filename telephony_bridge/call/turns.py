"""Turns: who is speaking, each agent turn's latency and what of it was heard, the transcript.

Caller side: every caller frame's level (before the echo gate) is kept in :attr:`Turns.caller_rms`;
a frame at or above ``speech_rms`` (after the gate) is caller speech, which opens a caller turn
and moves the caller's end of speech. Gemini's ``inputTranscription`` pieces are gathered and
written to the transcript when the agent answers (or the model's turn completes).

Agent side: a turn begins when playout forwards its first frame (:meth:`start_agent`); its
latency is from the caller's last speech to that moment, the figure logged per turn
(``call.agent_turn``) and observed in ``bridge_turn_latency_seconds``. ``outputTranscription``
text is attached to the turn being played (or held for the next one when it runs ahead of the
audio). A turn ends when it has been heard to the end, cut by a barge-in, or the call ends.

The model's turn (``model_turn_open``: Gemini is producing; ``generation_done``: its audio is
complete) is tracked here too: the other parts ask whether the model is mid-reply.
"""

from __future__ import annotations

import logging
from array import array
from dataclasses import dataclass
from typing import Any

from ..log import log_event
from ..metrics import Metrics
from .timeline import Timeline

logger = logging.getLogger("telephony_bridge.call")


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
    #: Which panel interviewer spoke (None: a single-interviewer persona).
    speaker: str | None = None


class Turns:
    def __init__(self, timeline: Timeline, *, speech_rms: float, metrics: Metrics | None = None) -> None:
        self.timeline = timeline
        self.speech_rms = speech_rms
        self.metrics = metrics
        self.call_sid: str | None = None
        self.turns: list[AgentTurn] = []
        self.current: AgentTurn | None = None
        self.transcript: list[dict[str, Any]] = []
        #: Every caller frame's RMS as the line carried it (before the gate).
        self.caller_rms = array("f")
        #: When the caller last spoke (a frame at or above ``speech_rms`` after the gate).
        self.last_caller_speech: float | None = None
        #: The caller has spoken since the agent last began a turn.
        self.caller_spoke = False
        #: Gemini is producing a reply (audio or its transcription arrived, no turnComplete yet).
        self.model_turn_open = False
        #: The current generation's audio is complete (``generationComplete`` or its stand-in).
        self.generation_done = False
        self._caller_turn_start: float | None = None
        self._caller_text: list[str] = []
        self._pending_agent_text = ""
        #: The panel interviewer speaking now (set by call/handoff.py; None: no panel).
        self.speaker: str | None = None
        #: Transcription from now on belongs to the next agent turn (after a hand-off's last
        #: sentence, the next interviewer's words must not join it while it still plays).
        self.text_to_next = False

    # -- caller --------------------------------------------------------------------------------

    def caller_speech(self, now: float) -> None:
        """A caller frame (after the gate) was speech."""
        self.last_caller_speech = now
        self.caller_spoke = True
        if self._caller_turn_start is None:
            self._caller_turn_start = now

    def caller_text(self, text: str) -> None:
        self._caller_text.append(text)

    def conversation(self) -> list[dict[str, Any]]:
        """The transcript plus what the caller said that is not filed yet (caller text goes in
        when the agent next speaks): what a new session is seeded with (a hand-off, a stale
        handle's fresh start) must carry the answer that came right before it."""
        pending = "".join(self._caller_text).strip()
        return [*self.transcript, {"role": "caller", "text": pending}] if pending else list(self.transcript)

    def record_caller_text(self, now: float) -> None:
        if not self._caller_text:
            return
        text = "".join(self._caller_text).strip()
        self._caller_text.clear()
        if text:
            start = self._caller_turn_start if self._caller_turn_start is not None else now
            self.transcript.append({"role": "caller", "text": text, "t": self.timeline.t(start)})

    # -- agent ---------------------------------------------------------------------------------

    def agent_text(self, text: str) -> None:
        turn = self.current
        if turn is not None and turn.ended is None and not self.text_to_next:
            turn.text += text
        else:  # transcription can run ahead of the audio we have forwarded
            self._pending_agent_text += text

    def start_agent(self, now: float) -> AgentTurn:
        """Playout forwarded the first frame of a new agent turn."""
        self.finish_agent(now)
        turn = AgentTurn(index=len(self.turns) + 1, started=now, speaker=self.speaker)
        turn.text = self._pending_agent_text
        self._pending_agent_text = ""
        self.text_to_next = False
        if self.caller_spoke and self.last_caller_speech is not None:
            turn.latency_s = now - self.last_caller_speech
        self.record_caller_text(now)
        self.caller_spoke = False
        self._caller_turn_start = None
        self.turns.append(turn)
        self.current = turn
        latency_ms = None if turn.latency_s is None else round(turn.latency_s * 1000, 1)
        if turn.latency_s is not None and self.metrics is not None:
            self.metrics.turn_latency.observe(turn.latency_s)
        if turn.speaker is None:
            self.timeline.add(now, "agent_turn_start", turn=turn.index, latency_ms=latency_ms)
        else:
            self.timeline.add(now, "agent_turn_start", turn=turn.index, latency_ms=latency_ms, speaker=turn.speaker)
        log_event(logger, "call.agent_turn", call_sid=self.call_sid, turn=turn.index,
                  latency_ms=latency_ms, caller_rms=self._recent_rms(self.caller_rms))
        return turn

    def finish_agent(self, now: float) -> None:
        turn = self.current
        if turn is None or turn.ended is not None:
            return
        turn.ended = now
        entry = {"role": "agent", "text": turn.text.strip(), "t": self.timeline.t(turn.started),
                 "interrupted": turn.interrupted}
        if turn.speaker is not None:
            entry["speaker"] = turn.speaker
        self.transcript.append(entry)
        self.timeline.add(now, "agent_turn_end", turn=turn.index, frames=turn.frames_sent,
                          interrupted=turn.interrupted)

    def agent_interrupted(self, now: float) -> None:
        """Barge-in: the agent's turn in progress was cut."""
        self.model_turn_open = False
        self.generation_done = False
        if self.current is not None and self.current.ended is None:
            self.current.interrupted = True

    # -- figures -------------------------------------------------------------------------------

    def latencies_ms(self) -> list[float]:
        return [round(t.latency_s * 1000, 1) for t in self.turns if t.latency_s is not None]

    @staticmethod
    def _recent_rms(levels: array, n: int = 250) -> float:
        tail = levels[-n:]
        return round(max(tail), 4) if tail else 0.0
