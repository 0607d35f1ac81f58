"""Playout: the agent's audio on its way to the caller's ear, and what they have actually heard.

Gemini's 24 kHz PCM goes through the :class:`~telephony_bridge.dsp.OutboundConverter` (→ μ-law
8 kHz) and the :class:`~telephony_bridge.dsp.Framer` (160-byte frames) into :attr:`Playout.queue`.
:meth:`Playout.pump` forwards queued frames to Twilio no further ahead of the caller's playback
than ``playback_lead_s`` (Twilio plays what it is sent in order, so ``playout_end`` — when its
buffer runs dry — is known exactly), and tops it up only once it holds half the lead or less:
several frames at a time, which the adapter writes in one system call. A ``None`` in the queue
ends a model turn: the next frame starts a new agent turn (``on_turn_start``).

Marks: one every ``mark_every_frames`` frames and at the end of a turn or phrase. Twilio echoes a
mark when the audio before it has played, in order, so a returned mark credits the frames it
covers to its turn's ``frames_heard``. A ``clear`` makes Twilio send back every pending mark:
those names go to a "flushed" set, and when they come back they mean "dropped", not "played".

Phrases (filler, "one moment", apologies: pre-rendered μ-law) play under the same lead and marks
when no agent audio is waiting; real agent audio stops a phrase at once, including what Twilio
already buffered (``clear``). A *last* phrase (:attr:`Playout.closing`: the apology or goodbye the
call ends on) is not paced: it goes to Twilio whole, at once, under the same marks. Nothing may cut
it short, and Twilio plays what it holds back to back, so a pause on our side (a GC pause, a
starved CPU) longer than the lead can no longer run Twilio's buffer dry and put a hole in the
caller's last words; the call still ends when its last mark comes back.

Barge-in (:meth:`interrupt`): the queue and phrase dropped, the converter and framer reset, media
not yet written to the socket removed, ``clear`` sent, marks flushed: nothing stale plays.

Pause and resume (:meth:`pause`, :meth:`resume`; decided by ``barge.py``): the caller started
talking over the agent, Gemini has not said ``interrupted`` yet. ``clear`` is sent and every
frame of the current turn not yet credited by a returned mark (``_unconfirmed``: forwarded,
maybe buffered by Twilio, maybe in flight) goes back to the head of the queue, the turn's end
with it if it had been forwarded; nothing is forwarded until :meth:`resume` (a false alarm: play
on from the first frame not known to be heard) or :meth:`interrupt` (confirmed: drop it all).
Marks are the only word on what was heard, so a resume may repeat what played after the last
returned mark (at most ``mark_every_frames`` frames plus the mark's trip back) and never skips a
frame. ``frames_sent`` counts each frame once; ``frames_heard`` credits each frame once, from the
marks of the copy that played.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from array import array
from typing import TYPE_CHECKING, Any

from ..dsp import Framer, OutboundConverter, rms_ulaw
from ..twilio.outbound import OutboundMessages
from .config import FRAME_BYTES, FRAME_S, CallConfig
from .timeline import Timeline

if TYPE_CHECKING:
    from .turns import AgentTurn

_SILENCE = b"\xff"


class Playout:
    def __init__(self, config: CallConfig, timeline: Timeline, counters: dict[str, int], *, now: float,
                 gate: Any = None, on_turn_start: Callable[[float], AgentTurn] | None = None,
                 on_turn_done: Callable[[float], None] | None = None) -> None:
        self.config = config
        self.timeline = timeline
        self.counters = counters
        #: The echo gate, told about every frame forwarded, every clear and every returned mark.
        self.gate = gate
        #: Called when the first frame of a new agent turn is forwarded; returns its record.
        self.on_turn_start = on_turn_start
        #: Called when the current agent turn has been sent and heard (or flushed) to the end.
        self.on_turn_done = on_turn_done
        #: Frames to the caller, in order (shared with the core: the adapter drains it).
        self.twilio_out: deque[str] = deque()
        #: Agent frames waiting for their turn to go to Twilio; ``None`` ends a model turn.
        self.queue: deque[bytes | None] = deque()
        self.phrase_queue: deque[bytes] = deque()
        #: When Twilio's buffer runs dry, as far as we have sent.
        self.playout_end = now
        #: RMS of every agent frame forwarded (the call's levels).
        self.agent_rms = array("f")
        self.messages: OutboundMessages | None = None
        self._outbound = OutboundConverter()
        self._framer = Framer(FRAME_BYTES)
        self._turn: AgentTurn | None = None  # the agent turn the forwarded frames belong to
        self._turn_sent = False  # ... and its last frame has been forwarded
        self._frames_since_mark = 0
        self._mark_seq = 0
        #: (name, turn or None for a phrase, frames covered) in the order they were sent.
        self._pending_marks: deque[tuple[str, AgentTurn | None, int]] = deque()
        self._phrase_marks = 0  # how many of those are a phrase's
        self._flushed_marks: set[str] = set()
        #: Frames of the current turn forwarded and not yet credited by a returned mark.
        self._unconfirmed: deque[bytes] = deque()
        #: Paused on the caller's speech onset (barge.py): nothing is forwarded.
        self.paused = False
        #: The call is closing on a last phrase: queued phrases go to Twilio whole, not paced.
        self.closing = False
        #: The call's recording (recording/core.py StereoRecorder), told every frame, mark and clear.
        self.recorder: Any = None

    def start(self, stream_sid: str, now: float) -> None:
        """Twilio's ``start``: frames can be built for this stream now."""
        self.messages = OutboundMessages(stream_sid)
        self.playout_end = now

    # -- queries -------------------------------------------------------------------------------

    @property
    def audible(self) -> bool:
        """True while agent audio is queued or not yet confirmed played by its mark."""
        return bool(self.queue) or bool(self._pending_marks) or bool(self.phrase_queue)

    @property
    def sending_turn(self) -> bool:
        """An agent turn has begun on the line and its last frame is not forwarded yet."""
        return self._turn is not None and not self._turn_sent

    @property
    def clear_message(self) -> str | None:
        return self.messages.clear() if self.messages is not None else None

    @property
    def pausable(self) -> bool:
        """Agent turn audio (not a phrase) is on its way to the caller or waiting for the line."""
        return (not self.paused and self._turn is not None and not self.phrase_queue
                and not self._phrase_marks and (bool(self._unconfirmed) or (bool(self.queue) and not self._turn_sent)))

    def deadline(self) -> float | None:
        """When to top up Twilio's buffer: when it holds half the lead (every lead/2, not every frame)."""
        if self.paused:
            return None
        if (self.queue or self.phrase_queue) and self.messages is not None:
            return self.playout_end - self.config.playback_lead_s / 2
        return None

    # -- agent audio in ------------------------------------------------------------------------

    def agent_pcm(self, pcm: bytes, now: float) -> None:
        """24 kHz PCM16 from Gemini, queued as 160-byte μ-law frames."""
        if self.phrase_queue or self._phrase_marks:
            self.stop_phrase(now)
        ulaw = self._outbound.convert(pcm)
        if ulaw:
            self.queue.extend(self._framer.push(ulaw))

    def end_of_generation(self) -> None:
        """The model's turn has no more audio: flush the converter and framer, end the turn."""
        tail = self._outbound.flush()
        if tail:
            self.queue.extend(self._framer.push(tail))
        last = self._framer.flush()
        if last:
            self.queue.append(last)
        self.queue.append(None)

    def drop_agent_audio(self) -> None:
        """Forget agent audio not yet forwarded (the call is closing with a last phrase)."""
        self.queue.clear()
        self.paused = False

    # -- forwarding ----------------------------------------------------------------------------

    def pump(self, now: float) -> None:
        """Forward queued agent frames while Twilio holds less than the lead."""
        msgs = self.messages
        queue = self.queue
        if msgs is None or self.paused:
            return
        if not queue:
            if self.phrase_queue:
                self._pump_phrase(now)
            return
        lead = self.config.playback_lead_s
        if self.playout_end < now:
            self.playout_end = now
        elif self.playout_end - now > lead * 0.5 + 1e-9:
            # Twilio still holds over half the lead: top it up later, several frames in one
            # write (caller frames call this every 20 ms; one frame each would be a write each).
            return
        out = self.twilio_out
        every = self.config.mark_every_frames
        gate = self.gate
        counters = self.counters
        turn = self._turn
        unconfirmed = self._unconfirmed
        rec = self.recorder
        while queue and self.playout_end + FRAME_S - now <= lead + 1e-9:
            frame = queue.popleft()
            if frame is None:
                if self._frames_since_mark:
                    self._place_mark()
                self._turn_sent = True
                continue
            if turn is None or self._turn_sent:
                turn = self._start_turn(now)
                unconfirmed = self._unconfirmed
            out.append(msgs.media(frame))
            if rec is not None:
                rec.agent_frame(frame, now)
            unconfirmed.append(frame)
            self.agent_rms.append(rms_ulaw(frame))
            if gate is not None:
                gate.agent_frame(frame, self.playout_end)
            self.playout_end += FRAME_S
            turn.frames_sent += 1
            counters["twilio_frames_out"] += 1
            self._frames_since_mark += 1
            if self._frames_since_mark >= every:
                self._place_mark()
        if not queue:
            if self._frames_since_mark:
                self._place_mark()
            if self._turn_sent and not self._pending_marks:
                self._turn_done(now)

    def _start_turn(self, now: float) -> AgentTurn:
        assert self.on_turn_start is not None
        turn = self.on_turn_start(now)
        self._turn = turn
        self._turn_sent = False
        self._unconfirmed = deque()  # an earlier turn's unconfirmed tail is not replayed
        return turn

    def _turn_done(self, now: float) -> None:
        if self.on_turn_done is not None:
            self.on_turn_done(now)

    def _pump_phrase(self, now: float) -> None:
        """Forward bridge-made audio (filler, notices) under the same lead and marks; a last
        phrase (:attr:`closing`) all at once."""
        msgs = self.messages
        assert msgs is not None
        queue = self.phrase_queue
        if self.playout_end < now:
            self.playout_end = now
        lead = float("inf") if self.closing else self.config.playback_lead_s
        out = self.twilio_out
        while queue and self.playout_end + FRAME_S - now <= lead + 1e-9:
            frame = queue.popleft()
            out.append(msgs.media(frame))
            if self.recorder is not None:
                self.recorder.agent_frame(frame, now)
            if self.gate is not None:
                self.gate.agent_frame(frame, self.playout_end)
            self.playout_end += FRAME_S
            self._frames_since_mark += 1
            if self._frames_since_mark >= self.config.mark_every_frames or not queue:
                self._place_mark(phrase=True)

    # -- phrases -------------------------------------------------------------------------------

    def queue_phrase(self, audio: bytes) -> float:
        """Queue pre-rendered μ-law; it plays (from the next :meth:`pump`) when no agent audio is
        waiting. Returns its length in seconds."""
        n = len(audio) - len(audio) % FRAME_BYTES
        frames = [audio[i:i + FRAME_BYTES] for i in range(0, n, FRAME_BYTES)]
        if n < len(audio):
            frames.append(audio[n:] + _SILENCE * (FRAME_BYTES - len(audio) + n))
        self.phrase_queue.extend(frames)
        self.counters["phrases"] += 1
        return round(len(frames) * FRAME_S, 2)

    def phrase_end(self, now: float) -> float:
        """When the phrases sent and queued so far will have played: Twilio's buffer, then ours."""
        return max(self.playout_end, now) + len(self.phrase_queue) * FRAME_S

    def stop_phrase(self, now: float) -> None:
        """Real agent audio arrived: the phrase stops now, including what Twilio buffered."""
        self.phrase_queue.clear()
        if self._phrase_marks and self.messages is not None:
            self.twilio_out.append(self.messages.clear())
            if self.recorder is not None:
                self.recorder.clear(0)
            self._flush_marks(now)
            if self.gate is not None:
                self.gate.agent_flushed(now)
        self.timeline.add(now, "phrase_stopped")

    # -- marks ---------------------------------------------------------------------------------

    def _place_mark(self, phrase: bool = False) -> None:
        assert self.messages is not None
        self._mark_seq += 1
        if phrase:
            name = f"p{self._mark_seq}"
            self._pending_marks.append((name, None, self._frames_since_mark))
            self._phrase_marks += 1
        else:
            turn = self._turn
            name = f"t{turn.index if turn is not None else 0}.{self._mark_seq}"
            self._pending_marks.append((name, turn, self._frames_since_mark))
        self._frames_since_mark = 0
        self.twilio_out.append(self.messages.mark(name))
        if self.recorder is not None:
            self.recorder.mark(name)

    def _flush_marks(self, now: float) -> None:
        for name, _turn, _frames in self._pending_marks:
            self._flushed_marks.add(name)
        self._pending_marks.clear()
        self._unconfirmed.clear()
        self._phrase_marks = 0
        self._frames_since_mark = 0
        self.playout_end = now
        if self.gate is not None:
            self.gate.agent_flushed(now)

    def mark_returned(self, name: str, now: float) -> bool:
        """A Twilio ``mark`` came back. Returns True when everything sent has now been heard."""
        if name in self._flushed_marks:
            self._flushed_marks.discard(name)
            self.counters["marks_flushed"] += 1
            return False
        # Marks come back in the order they were sent; anything before this one has played too.
        pending = self._pending_marks
        while pending:
            pname, turn, frames = pending.popleft()
            self.counters["marks_played"] += 1
            if turn is not None:
                turn.frames_heard += frames
                if turn is self._turn:
                    unconfirmed = self._unconfirmed
                    for _ in range(min(frames, len(unconfirmed))):
                        unconfirmed.popleft()
            elif pname[0] == "p":
                self._phrase_marks -= 1
            if pname == name:
                break
        if self.gate is not None:
            self.gate.playback_confirmed(self.playout_end if not pending else now, now)
        if not pending and not self.queue and not self.phrase_queue:
            self.timeline.add(now, "agent_audio_heard_end")
            if self._turn_sent:
                self._turn_done(now)
            return True
        return False

    # -- barge-in ------------------------------------------------------------------------------

    def interrupt(self, now: float) -> int:
        """Nothing stale may play after this. Returns how many queued frames were dropped."""
        dropped = len(self.queue) + len(self.phrase_queue)
        self.queue.clear()
        self.phrase_queue.clear()
        self._outbound.reset()
        self._framer.reset()
        self._clear_line(now)
        self._turn_sent = True
        self.paused = False
        return dropped

    def _clear_line(self, now: float) -> None:
        """Media not yet handed to the socket is dropped, Twilio told to ``clear`` what it holds,
        pending marks flushed (they stay in the outbox so the books balance)."""
        out = self.twilio_out
        unsent = 0
        if out:
            kept = [m for m in out if not m.startswith('{"event":"media"')]
            unsent = len(out) - len(kept)
            out.clear()
            out.extend(kept)
        if self.messages is not None:
            out.append(self.messages.clear())
            if self.recorder is not None:
                self.recorder.clear(unsent)
        self._flush_marks(now)

    # -- pause and resume (barge.py decides) -----------------------------------------------------

    def pause(self, now: float) -> int:
        """Stop what the caller hears now; keep every frame not known to be heard, in order.
        Returns how many frames went back to the head of the queue."""
        back = self._unconfirmed
        n = len(back)
        if n:
            if self._turn_sent:  # the turn's end had been forwarded: it goes back too
                self.queue.appendleft(None)
                self._turn_sent = False
            self.queue.extendleft(reversed(back))
            if self._turn is not None:
                self._turn.frames_sent -= n
        self._unconfirmed = deque()
        self._clear_line(now)  # the unwritten media's frames are in ``back`` already
        self.paused = True
        return n

    def resume(self, now: float) -> int:
        """Play on (the next :meth:`pump`) from the first frame not known to be heard. Returns
        how many agent frames are waiting."""
        self.paused = False
        if self.playout_end < now:
            self.playout_end = now
        return len(self.queue)
