"""Instant barge-in: pause the agent on the caller's speech onset, then confirm or resume.

Gemini's server-side VAD needs a few hundred milliseconds of caller speech before it sends
``interrupted`` (200-500 ms in the field), and until then the caller hears the agent talk over
them. The bridge sees every caller frame first, and its echo gate already tells caller speech
from the agent's own echo, so it pauses the agent itself:

1. **Onset** (:meth:`BargePause.caller_frame`): ``onset_frames`` consecutive caller frames the
   echo gate passes as double-talk (``DOUBLE_TALK``: louder than any echo the agent audio could
   make, while agent audio plays). The core then pauses playout (:meth:`Playout.pause`: ``clear``
   to Twilio, the frames the caller has not heard, known from marks, back to the head of the
   queue, nothing more forwarded) and tells this part (:meth:`paused`).
2. **Confirm** (:meth:`interrupted`): Gemini's ``interrupted`` within ``confirm_s`` of the pause
   is the barge-in as before (queue dropped, converter reset); the pause→confirm time is
   recorded (timeline ``confirmed``, ``bridge_barge_pause_to_confirm_seconds``).
3. **Resume** (:meth:`due` at :meth:`deadline`): no ``interrupted`` within ``confirm_s``: a
   cough, a door, a dog, "mhm". Playback resumes from the first frame not known to be heard
   (timeline ``resume``, ``bridge_barge_false_alarms``): a short pause, no lost words.

Backchannel (the caller keeps talking, Gemini never interrupts): playback resumes at the end of
the window all the same, and no new pause starts until the caller has been quiet for
``rearm_s``. Gemini decides turns: if its VAD did not take the sound for a turn within the
window, the model goes on with its answer and believes it is being heard, so silence from us
would only open a gap between what the model thinks was said and what the caller heard, and a
long "mm-hm, right, yes" (or a television) would silence the agent for as long as it lasts.
Should Gemini interrupt after all, later than the window, that barge-in proceeds as today and
is counted (``late_confirms``): the window is too short for that line.

Settings, from measurement (``benchmarks/bargein.py``, 100 concurrent calls per batch, and
``benchmarks/echo.py``):

* ``onset_frames`` = 2 (40 ms; ``BARGE_ONSET_MS``): the gate's own ``confirm_frames``. The
  caller's onset to the last agent audio they hear is then 40 ms p50, 60 ms p95 whatever
  Gemini's detection delay (200/300/500 ms), against 220-520 ms p50 and 440-560 ms p95 waiting
  for ``interrupted``. A longer rule would not spare the false alarms (a cough, a bark and a
  "hmm" all stay above the gate for 100 ms or more) and would add 20 ms a frame; typing never
  passes the gate; an echoing line gives no pause at ERL >= 10 dB (about 1 a minute at 6 dB).
* ``confirm_s`` = 0.7 s (``BARGE_CONFIRM_MS``): pause→``interrupted`` measured at most
  514 ms (p95 501 ms) with a 500 ms detection delay under 100 calls on loopback; 700 ms leaves
  room for the real round trip to Gemini. A false alarm costs exactly this much of pause (no
  words lost); a confirmation later than this is counted as a late confirm.
* ``rearm_s`` = 0.4 s: longer than the gaps between the syllables of a backchannel, so one
  "mm-hm, right" gives one pause, not a stutter.

Sans I/O: every input carries ``now``; the core owns the playout and the timer (``deadline``).
"""

from __future__ import annotations

import enum
import math
from typing import Any

from ..metrics import Metrics
from .timeline import Timeline

#: An ``interrupted`` this soon after a resume counts as a confirmation that came too late.
LATE_CONFIRM_S = 2.0


class PauseState(enum.Enum):
    ARMED = "armed"  # a new onset pauses the agent
    PAUSED = "paused"  # waiting for Gemini's interrupted
    DISARMED = "disarmed"  # resumed on a false alarm: wait for the caller to go quiet


class BargePause:
    __slots__ = ("onset_frames", "confirm_s", "rearm_s", "timeline", "counters", "metrics", "state",
                 "paused_at", "_run", "_last_onset", "_resumed_at", "pause_to_confirm_s", "paused_s")

    def __init__(self, *, onset_frames: int, confirm_s: float, rearm_s: float, timeline: Timeline,
                 counters: dict[str, int], metrics: Metrics | None = None) -> None:
        self.onset_frames = max(1, onset_frames)
        self.confirm_s = confirm_s
        self.rearm_s = rearm_s
        self.timeline = timeline
        self.counters = counters
        self.metrics = metrics
        self.state = PauseState.ARMED
        self.paused_at: float | None = None
        self._run = 0
        self._last_onset = -math.inf
        self._resumed_at = -math.inf
        #: Every confirmed pause's pause→interrupted time, and every false alarm's pause length.
        self.pause_to_confirm_s: list[float] = []
        self.paused_s: list[float] = []

    # -- caller frames ---------------------------------------------------------------------------

    def caller_frame(self, onset: bool, now: float) -> bool:
        """One caller frame: ``onset`` when the gate passed it as double-talk. Returns True when
        the agent should pause now (the core checks there is agent audio to pause)."""
        state = self.state
        if state is PauseState.PAUSED:
            return False
        if onset:
            self._last_onset = now
            if state is PauseState.ARMED:
                self._run += 1
                return self._run >= self.onset_frames
            return False
        self._run = 0
        if state is PauseState.DISARMED and now - self._last_onset >= self.rearm_s:
            self.state = PauseState.ARMED
        return False

    # -- what the core did -----------------------------------------------------------------------

    def paused(self, now: float, frames_back: int) -> None:
        """Playout paused: ``frames_back`` frames the caller had not heard went back in the queue."""
        self.state = PauseState.PAUSED
        self.paused_at = now
        self._run = 0
        self.counters["barge_pauses"] += 1
        if self.metrics is not None:
            self.metrics.barge_pauses.inc()
        self.timeline.add(now, "pause", frames_back=frames_back)

    def deadline(self) -> float | None:
        return self.paused_at + self.confirm_s if self.paused_at is not None else None

    def due(self, now: float) -> bool:
        """The window ran out with no ``interrupted``: time to resume."""
        return self.paused_at is not None and now >= self.paused_at + self.confirm_s - 1e-9

    def resumed(self, now: float, frames: int) -> None:
        """A false alarm: playout resumed (``frames``: queued agent frames waiting to play)."""
        assert self.paused_at is not None
        paused = now - self.paused_at
        self.paused_s.append(paused)
        self.paused_at = None
        self.state = PauseState.DISARMED
        self._resumed_at = now
        self.counters["barge_false_alarms"] += 1
        if self.metrics is not None:
            self.metrics.barge_false_alarms.inc()
        self.timeline.add(now, "resume", paused_ms=round(paused * 1000, 1), frames=frames)

    def interrupted(self, now: float) -> None:
        """Gemini's ``interrupted`` arrived (the core runs today's barge-in after this)."""
        if self.paused_at is not None:
            dt = now - self.paused_at
            self.pause_to_confirm_s.append(dt)
            self.counters["barge_confirmed"] += 1
            if self.metrics is not None:
                self.metrics.barge_pause_to_confirm.observe(dt)
            self.timeline.add(now, "confirmed", after_ms=round(dt * 1000, 1))
        elif now - self._resumed_at < LATE_CONFIRM_S:
            self.counters["barge_late_confirms"] += 1
            self.timeline.add(now, "late_confirm", after_resume_ms=round((now - self._resumed_at) * 1000, 1))
        self.paused_at = None
        self.state = PauseState.ARMED
        self._run = 0

    def reset(self) -> None:
        """The agent audio went away some other way (the call is closing): no pause pending."""
        self.paused_at = None
        self.state = PauseState.ARMED
        self._run = 0

    @property
    def is_paused(self) -> bool:
        return self.paused_at is not None

    def summary(self) -> dict[str, Any]:
        return {"pauses": self.counters["barge_pauses"], "false_alarms": self.counters["barge_false_alarms"],
                "confirmed": self.counters["barge_confirmed"], "late_confirms": self.counters["barge_late_confirms"]}
