"""What the caller does (:class:`CallerScript`: ``Say``, ``WaitForAgent``, ``Wait``, ``Dtmf``,
``Hangup``) and the part of the simulator that carries it out.

``Say`` waits for the agent to finish (or barges in a set time after the agent's audio starts)
and then speaks its μ-law, one 20 ms frame per tick of the line clock (:meth:`_caller_frame`);
an utterance cut by a dropped stream goes on, minus the gap, on the next one. ``Dtmf`` sends a
``dtmf`` message; ``Hangup`` (or the end of the steps, with ``hangup_at_end``) hangs up.
:class:`_ScriptRunner` is a mixin of :class:`~.caller.CallerSimulator`, whose state it uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Union

from websockets.exceptions import ConnectionClosed

from ..wav import FRAME_BYTES, SAMPLE_RATE
from .stream import _SILENCE_FRAME, FRAME_S

_DTMF_DIGITS = frozenset("0123456789*#ABCD")


@dataclass(frozen=True, repr=False)
class Say:
    """Speak ``ulaw`` (8 kHz μ-law) into the call.

    ``after="agent_done"``: wait until the agent has taken a turn since the caller last
    spoke and finished it (heard buffer empty, no media and nothing played for ``quiet_ms``;
    gives up after ``wait_timeout_ms``), then think for ``think_ms``, then speak.
    ``after="now"``: speak at once (``think_ms`` is not applied).
    ``barge_in_after_ms``: instead, start speaking this long after the agent's next audio
    starts being heard: an interruption. Falls back to speaking after ``wait_timeout_ms``
    if the agent never speaks.
    """

    ulaw: bytes
    after: Literal["agent_done", "now"] = "agent_done"
    think_ms: float = 600
    barge_in_after_ms: float | None = None
    quiet_ms: float = 800
    wait_timeout_ms: float = 15000
    label: str | None = None

    def __post_init__(self) -> None:
        if self.after not in ("agent_done", "now"):
            raise ValueError(f"Say.after must be 'agent_done' or 'now', not {self.after!r}")

    def __repr__(self) -> str:
        extra = f", barge_in_after_ms={self.barge_in_after_ms}" if self.barge_in_after_ms is not None else ""
        return (
            f"Say(<{len(self.ulaw)} bytes, {len(self.ulaw) / SAMPLE_RATE:.2f} s>, after={self.after!r}, "
            f"think_ms={self.think_ms}{extra}, label={self.label!r})"
        )


@dataclass(frozen=True)
class WaitForAgent:
    """Wait until the agent has taken a turn since the caller last spoke and finished it."""

    quiet_ms: float = 800
    timeout_ms: float = 15000


@dataclass(frozen=True)
class Wait:
    """Keep the line open (streaming silence) for ``ms`` milliseconds."""

    ms: float


@dataclass(frozen=True)
class Dtmf:
    """Press a key: Twilio sends a ``dtmf`` message on the stream."""

    digit: str

    def __post_init__(self) -> None:
        if len(self.digit) != 1 or self.digit not in _DTMF_DIGITS:
            raise ValueError(f"not a DTMF digit: {self.digit!r}")


@dataclass(frozen=True)
class Hangup:
    """The caller hangs up: ``stop`` on the stream, then the websocket closes."""


Step = Union[Say, WaitForAgent, Wait, Dtmf, Hangup]


@dataclass
class CallerScript:
    """What the caller does, step by step. ``hangup_at_end``: hang up when the steps run out
    (otherwise stay on the line until the bridge ends the call or the call times out)."""

    steps: list[Step] = field(default_factory=list)
    hangup_at_end: bool = True

    def __post_init__(self) -> None:
        self.steps = list(self.steps)
        for step in self.steps:
            if not isinstance(step, (Say, WaitForAgent, Wait, Dtmf, Hangup)):
                raise TypeError(f"not a script step: {step!r}")

    @classmethod
    def replay(cls, ulaw: bytes, *, tail_ms: float = 0) -> CallerScript:
        """Replay a μ-law recording verbatim from t=0 (the first media frame carries its first
        160 bytes), keep the line open ``tail_ms`` longer, then hang up."""
        steps: list[Step] = [Say(bytes(ulaw), after="now", think_ms=0, label="replay")]
        if tail_ms > 0:
            steps.append(Wait(tail_ms))
        steps.append(Hangup())
        return cls(steps)

    @classmethod
    def from_founder_turns(
        cls,
        turns: Sequence[bytes],
        *,
        think_ms: float = 600,
        barge_in: bool = False,
        barge_in_turn: int | None = None,
        barge_in_after_ms: float = 1200,
        quiet_ms: float = 800,
        wait_timeout_ms: float = 15000,
    ) -> CallerScript:
        """A founder interview: wait for the agent's greeting/question to finish, answer it,
        repeat for every turn, then hang up after the agent's last reply.

        One answer can interrupt the agent instead of waiting: ``barge_in_turn`` (an index
        into ``turns``), or ``barge_in=True`` for the second answer (the first if there is
        only one). It starts ``barge_in_after_ms`` after the agent's audio starts.
        """
        turns = list(turns)
        if barge_in_turn is None and barge_in and turns:
            barge_in_turn = 1 if len(turns) > 1 else 0
        if barge_in_turn is not None and not 0 <= barge_in_turn < len(turns):
            raise ValueError(f"barge_in_turn {barge_in_turn} out of range for {len(turns)} turns")
        steps: list[Step] = []
        for i, ulaw in enumerate(turns):
            steps.append(
                Say(
                    bytes(ulaw),
                    think_ms=think_ms,
                    barge_in_after_ms=barge_in_after_ms if i == barge_in_turn else None,
                    quiet_ms=quiet_ms,
                    wait_timeout_ms=wait_timeout_ms,
                    label=f"turn{i + 1}",
                )
            )
        steps.append(WaitForAgent(quiet_ms=quiet_ms, timeout_ms=wait_timeout_ms))
        steps.append(Hangup())
        return cls(steps)


class _Utterance:
    __slots__ = ("data", "pos", "done", "label", "paused_at")

    def __init__(self, data: bytes, label: str | None, done: asyncio.Future[bool]) -> None:
        self.data = data
        self.pos = 0
        self.label = label
        self.done = done
        #: The stream broke mid-sentence at this loop time: the caller talks on regardless.
        self.paused_at: float | None = None


class _ScriptRunner:
    """Plays the script (a mixin of :class:`~.caller.CallerSimulator`)."""

    async def _run_script(self) -> None:
        for step in self.script.steps:
            if self._hangup.is_set():
                return
            if isinstance(step, Say):
                await self._say(step)
            elif isinstance(step, WaitForAgent):
                await self._wait_agent_done(step.quiet_ms, step.timeout_ms)
            elif isinstance(step, Wait):
                await asyncio.sleep(step.ms / 1000)
            elif isinstance(step, Dtmf):
                await self._dtmf(step.digit)
            elif isinstance(step, Hangup):
                self._request_hangup("script")
                return
        self._emit("script_end", hangup=self.script.hangup_at_end)
        if self.script.hangup_at_end:
            self._request_hangup("script_end")

    def _request_hangup(self, reason: str) -> None:
        if not self._hangup.is_set():
            self._emit("hangup", reason=reason)
            self._hangup.set()

    async def _say(self, step: Say) -> None:
        if step.barge_in_after_ms is not None:
            if await self._wait_for(lambda: self._agent_spoke, step.wait_timeout_ms / 1000):
                delay = self._agent_spoke_at + step.barge_in_after_ms / 1000 - self._loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                self._emit("agent_wait_timeout", step="barge_in", label=step.label)
        elif step.after == "agent_done":
            await self._wait_agent_done(step.quiet_ms, step.wait_timeout_ms, label=step.label)
            if step.think_ms > 0:
                await asyncio.sleep(step.think_ms / 1000)
        await self._speak(step.ulaw, step.label)

    async def _wait_agent_done(self, quiet_ms: float, timeout_ms: float, label: str | None = None) -> bool:
        quiet = quiet_ms / 1000

        def done() -> bool:
            s = self._stream
            now = self._loop.time()
            return (
                s is not None
                and self._agent_spoke
                and not s.playback
                and now - self._last_media_rx >= quiet
                and now - self._last_play_end >= quiet
            )

        if await self._wait_for(done, timeout_ms / 1000):
            self._emit("agent_done", label=label)
            return True
        self._emit("agent_wait_timeout", step="agent_done", label=label)
        return False

    async def _speak(self, ulaw: bytes, label: str | None) -> None:
        if not ulaw:
            return
        await self._stream_up.wait()
        u = _Utterance(bytes(ulaw), label, self._loop.create_future())
        self._utterance = u
        await u.done

    async def _dtmf(self, digit: str) -> None:
        await self._stream_up.wait()
        s = self._stream
        assert s is not None
        try:
            await s.send(
                {
                    "event": "dtmf",
                    "streamSid": s.stream_sid,
                    "sequenceNumber": s.next_seq(),
                    "dtmf": {"track": "inbound_track", "digit": digit},
                }
            )
        except ConnectionClosed:
            return
        self._emit("dtmf", digit=digit, stream_sid=s.stream_sid)

    def _caller_frame(self, t: float) -> bytes:
        """The next 160 bytes the caller says (silence between utterances); ``t`` is the call
        clock time of the frame."""
        frame = _SILENCE_FRAME
        u = self._utterance
        if u is not None and u.paused_at is not None:
            gap = int((self._loop.time() - u.paused_at) / FRAME_S) * FRAME_BYTES
            u.pos = min(len(u.data), u.pos + gap)
            u.paused_at = None
            self._emit("say_resumed", t=t, label=u.label, lost_ms=round(gap / 8, 1))
        if u is not None:
            if u.pos == 0:
                self._emit("say_start", t=t, label=u.label, bytes=len(u.data))
            chunk = u.data[u.pos : u.pos + FRAME_BYTES]
            u.pos += len(chunk)
            frame = chunk + _SILENCE_FRAME[len(chunk) :]
            if u.pos >= len(u.data):
                self._utterance = None
                self._emit("say_end", t=t + len(chunk) / SAMPLE_RATE, label=u.label, truncated=False)
                self._agent_spoke = False  # the caller's last words: a new reference point
                if not u.done.done():
                    u.done.set_result(True)
        return frame
