"""What the call sounded like, sample by sample: the caller as received, the agent as heard.

Sans-I/O: :class:`StereoRecorder` is told every caller frame (before the echo gate), every agent
frame handed to Twilio, every ``mark`` placed and echoed and every ``clear``, and decides the two
8 kHz μ-law tracks on one clock: the caller's. Twilio streams the caller's audio continuously,
one 20 ms frame per 20 ms, so sample *n* of the left track is the line at *n* / 8000 s, and the
right track is placed on the same clock by what Twilio says it played:

- An agent frame plays at the next free position of Twilio's buffer (``play_at``) or, when the
  buffer has run dry, at the next caller frame's position (the next tick of the line).
- A ``mark`` echo means the audio before it has played: in a tick, right after that tick's caller
  frame, so the audio ended where the last caller frame received began. The first echo of a run
  (audio that started from an empty buffer) corrects the run's start by what it says (the guess
  can be a frame off: the tick and the frame written race on the wire).
- A ``clear`` drops what was queued and not played: Twilio echoes every pending mark at once, and
  the caller frames received before that burst say how far playback got; frames placed before
  that point played, the rest did not, and what was sent after the clear plays from there on.
  Pause, resume and a phrase stopping are clears too, so the
  right track has what the caller heard: the pause's silence, the replay, the filler cut short.

Per frame the cost is a bytes append (and a small list for agent frames); the writer takes
final samples in batches (:meth:`take`), once a second, and converts them there.
"""

from __future__ import annotations

from collections import deque

from ..dsp import ULAW_SILENCE

#: A Media Streams frame: 20 ms of 8 kHz μ-law.
FRAME = 160
#: A frame written this long after the last caller frame arrived plays a tick later: the next
#: tick has come (its caller frame is on the wire); each 20 ms more, another tick.
LATE_S = 0.0195
TICK_S = FRAME / 8000
#: How far (samples) the first echo of a run may move it: the wire's race, no more.
MAX_SHIFT = 2 * FRAME
#: Audio unconfirmed this long after its time (samples) is taken as placed: marks that never
#: come back must not hold the file back (a crash would lose more than a second).
GIVE_UP = 2 * 8000
_SIL = bytes([ULAW_SILENCE])


class _Batch:
    """What a ``clear`` cut off: its marks' names and frames, until Twilio's echo says where."""

    __slots__ = ("names", "last", "frames", "cut", "at")

    def __init__(self, names: set[str], last: str, frames: list[list], at: int) -> None:
        self.names = names
        self.last = last
        self.frames = frames
        self.cut: int | None = None
        self.at = at  # the line when the clear was sent


class StereoRecorder:
    """Both tracks of one call on the caller's sample clock (see the module docstring)."""

    __slots__ = ("left", "right", "base", "_pending", "_clearing", "_play_at", "_run", "_confirmed",
                 "_last_start", "_last_in", "_fresh", "first_at")

    def __init__(self) -> None:
        #: Caller μ-law from absolute sample ``base`` on (what :meth:`take` has not handed out).
        self.left = bytearray()
        #: Agent μ-law as heard, from ``base`` on, silence where nothing played.
        self.right = bytearray()
        self.base = 0
        #: Agent frames handed to Twilio and not yet known heard: ``[start, frame, run]`` lists,
        #: and mark names (str) where marks were placed, in the order sent.
        self._pending: deque[list | str] = deque()
        self._clearing: deque[_Batch] = deque()
        self._play_at = 0  # where the next agent frame plays if Twilio's buffer is not dry
        self._run = 0  # runs: stretches played back to back (a new one after a gap or a clear)
        self._confirmed = 0  # runs up to this one have had their start corrected by an echo
        self._last_start = 0  # absolute position of the last caller frame received
        self._last_in: float | None = None  # when it arrived
        self._fresh = False  # a caller frame arrived since the last mark echo
        #: ``now`` of the first caller frame: sample 0 on the caller's clock.
        self.first_at: float | None = None

    # -- input ---------------------------------------------------------------------------------

    def caller(self, frame: bytes, now: float) -> None:
        """A caller frame as received (before the echo gate)."""
        left = self.left
        if self._last_in is None:
            self.first_at = now
        self._last_start = self.base + len(left)
        left += frame
        self._last_in = now
        self._fresh = True

    @property
    def samples(self) -> int:
        """Caller samples recorded so far (the length of the line, 8000 a second)."""
        return self.base + len(self.left)

    def agent_frame(self, frame: bytes, now: float) -> None:
        """An agent (or phrase) frame handed to Twilio."""
        line = self.base + len(self.left)
        if self._last_in is not None:
            late = now - self._last_in
            if late >= LATE_S:
                # Ticks came that this process has not read yet (it was busy, or starved, and
                # its timer ran before the socket's frames): Twilio's line moved on regardless.
                line += FRAME * (1 + int((late - LATE_S) / TICK_S))
        start = self._play_at
        if line > start:
            start = line
            self._run += 1
        self._pending.append([start, frame, self._run])
        self._play_at = start + len(frame)

    def mark(self, name: str) -> None:
        """A mark placed after the frames handed over so far."""
        self._pending.append(name)

    def clear(self, unsent: int = 0, now: float | None = None) -> None:
        """A ``clear`` went to Twilio; ``unsent``: how many of the latest agent frames were taken
        back before they reached the socket (they never played)."""
        pending = self._pending
        if unsent:
            kept: list[list | str] = []
            while pending and unsent:
                item = pending.pop()
                if isinstance(item, str):
                    kept.append(item)
                else:
                    unsent -= 1
            pending.extend(reversed(kept))
        names = [m for m in pending if isinstance(m, str)]
        frames = [f for f in pending if not isinstance(f, str)]
        pending.clear()
        self._play_at = 0
        self._run += 1  # whatever comes next starts from an empty buffer
        if frames:
            if names:
                self._clearing.append(_Batch(set(names), names[-1], frames, self.samples))
            else:  # no mark after them: nothing to wait for, they played if their time came
                self._commit_before(frames, self.samples)

    def mark_returned(self, name: str) -> None:
        """Twilio echoed a mark: played, or flushed by a ``clear``."""
        fresh, self._fresh = self._fresh, False
        for batch in self._clearing:
            if name in batch.names:
                if fresh or batch.cut is None:
                    batch.cut = self.samples  # the start of the echo burst: playback stopped here
                if name == batch.last:
                    while self._clearing:  # earlier batches are over too (echoes come in order)
                        done = self._clearing.popleft()
                        cut = done.cut if done.cut is not None else self.samples
                        self._commit_before(done.frames, cut)
                        if done is batch:
                            break
                    self._not_before(cut)
                return
        pending = self._pending
        if name not in pending:
            return
        played: list[list] = []
        while pending:
            item = pending.popleft()
            if isinstance(item, str):
                if item == name:
                    break
            else:
                played.append(item)
        if played:
            last = played[-1]
            run = last[2]
            if run > self._confirmed:
                self._confirmed = run
                shift = self._last_start - (last[0] + len(last[1]))
                if shift and -MAX_SHIFT <= shift <= MAX_SHIFT:
                    self._shift_run(run, shift, played)
            right_put = self._put
            for start, frame, _run in played:
                right_put(start, frame)

    def finish(self) -> None:
        """The call is over: audio still unconfirmed counts as heard where its time had come."""
        end = self.samples
        while self._clearing:
            batch = self._clearing.popleft()
            self._commit_before(batch.frames, batch.cut if batch.cut is not None else end)
        self._commit_before([f for f in self._pending if not isinstance(f, str)], end)
        self._pending.clear()

    # -- output --------------------------------------------------------------------------------

    def horizon(self) -> int:
        """Samples before this are final on both tracks."""
        h = self.base + len(self.left)
        for batch in self._clearing:
            if batch.frames and batch.frames[0][0] < h:
                h = batch.frames[0][0]
        for item in self._pending:
            if not isinstance(item, str):
                if item[0] < h:
                    h = item[0]
                break
        return h

    def take(self, final: bool = False) -> tuple[bytes, bytes]:
        """The final samples not handed out yet: ``(left, right)`` μ-law of equal length. With
        ``final`` (after :meth:`finish`): everything up to the caller track's end."""
        if not final:
            self._give_up(self.base + len(self.left) - GIVE_UP)
        upto = self.base + len(self.left) if final else max(self.base, self.horizon())
        n = upto - self.base
        if n <= 0:
            return b"", b""
        left = bytes(self.left[:n])
        right = bytes(self.right[:n])
        if len(right) < n:
            right += _SIL * (n - len(right))
        del self.left[:n]
        del self.right[:n]
        self.base = upto
        return left, right

    # -- internals -----------------------------------------------------------------------------

    def _put(self, start: int, frame: bytes) -> None:
        right = self.right
        at = start - self.base
        if at < 0:  # before what was handed out already (too late to place): keep the rest
            frame = frame[-at:]
            at = 0
            if not frame:
                return
        if len(right) < at:
            right += _SIL * (at - len(right))
        right[at:at + len(frame)] = frame

    def _commit_before(self, frames: list[list], cut: int) -> None:
        for start, frame, _run in frames:
            if start < cut:
                self._put(start, frame[:cut - start])

    def _give_up(self, before: int) -> None:
        """Twilio never said: audio placed before ``before`` counts as heard where it was placed
        (a clear's as cut where it was sent)."""
        while self._clearing and self._clearing[0].at < before:
            batch = self._clearing.popleft()
            self._commit_before(batch.frames, batch.at)
        pending = self._pending
        while pending:
            item = pending[0]
            if isinstance(item, str):
                if len(pending) == 1 or not any(not isinstance(x, str) for x in pending):
                    break
                pending.popleft()  # a mark whose frames are committed: its echo is moot
                continue
            if item[0] >= before:
                break
            pending.popleft()
            self._put(item[0], item[1])

    def _not_before(self, cut: int) -> None:
        """Audio sent after a clear plays once the clear has been carried out (at ``cut``), not
        sooner: the run placed before it moves there."""
        for item in self._pending:
            if not isinstance(item, str):
                if item[0] < cut and item[2] > self._confirmed:
                    self._shift_run(item[2], cut - item[0], [])
                return

    def _shift_run(self, run: int, shift: int, played: list[list]) -> None:
        for item in played:
            if item[2] == run:
                item[0] += shift
        for item in self._pending:
            if not isinstance(item, str) and item[2] == run:
                item[0] += shift
        if self._run == run:
            self._play_at += shift
