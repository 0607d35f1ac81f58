"""The echo gate: which caller frames reach Gemini while the agent may be heard (sans I/O).

A phone on speaker (or a leaky handset) sends the agent's own voice back up the line, delayed
and attenuated. Gemini cannot tell that echo from a caller who talks over it, so an ungated echo
makes the agent interrupt itself. The seeds muted the caller while the agent spoke, which also
muted every real barge-in. This gate keeps the seeds' two tiers and adds double-talk detection:
it is handed the exact agent audio the caller hears, with the time each frame starts playing,
and lets a caller frame through when it is louder than any echo that audio could produce.

Inputs (times in seconds on the call core's clock, passed in; nothing here reads a clock):

- :meth:`EchoGate.agent_frame`: every 160-byte agent frame forwarded to Twilio, with ``play_at``,
  the estimated time the caller starts hearing it (the core's playout estimate).
- :meth:`EchoGate.agent_flushed`: barge-in ``clear``; reference audio from ``now`` on never plays.
- :meth:`EchoGate.playback_confirmed`: a Twilio mark came back; how late it is widens the window.
- :meth:`EchoGate.decide`: one caller frame; returns a :class:`GateDecision`.

States, per caller frame::

    agent playing (a reference frame's play time covers now)   -> DOUBLE_TALK | SUPPRESS
    within cooldown_s after the last agent audio played          -> COOLDOWN_FORWARD | COOLDOWN_SUPPRESS
    otherwise (idle)                                             -> FORWARD | SUPPRESS

A frame *passes* when its RMS is at least the state's floor (``speech_rms``; ``cooldown_rms`` in
the cooldown, the seeds' higher second tier) **and** its energy exceeds the most echo the
reference audio in the echo-delay window could produce. Passing frames are forwarded; after
``confirm_frames`` passing frames in a row the caller is *talking*: every frame is forwarded
until ``hold_s`` after the last passing frame (word gaps, soft endings). A talking caller keeps
the gate open across the agent's stop: in the cooldown they need only ``speech_rms`` and the
echo test is waived (the rest of a barge-in after the ``clear`` must not be clipped by the tail
of reference still in the window). A lone loud frame (a click, a bump) is forwarded but opens no
hold, so impulsive noise gets no further than a plain RMS gate would let it.

Echo prediction (the double-talk detector)
------------------------------------------
Reference energy is kept on a 10 ms grid of playout time (mean square per 10 ms block, smoothed
to 20 ms, one caller frame's span). A caller frame arriving at ``now`` can hold echo of the
reference that played ``d`` earlier, for any ``d`` in the echo-delay window: the *lag profile*.

1. **Geigel bound** (always available). Echo <= the *largest* reference energy in the window,
   ``assumed_erl_db`` (6 dB) down: the textbook Geigel detector, on frame energies. It cannot
   leak while the true echo return loss is at least 6 dB, but it asks a caller to be nearly as
   loud as the agent's loudest syllable of the last 300 ms. As soon as a couple of seconds of
   agent audio have played, the bound is tightened from the call itself: echo is part of what the
   caller's line carries while the agent plays, so the 95th percentile of caller energy over the
   window's peak reference (frames where the caller is not talking), plus ``dt_margin_db``,
   bounds the echo gain whatever the delay. Undetected caller speech only loosens it, never past
   the 6 dB assumption. On a handset with its own echo canceller (echo under the line noise, no
   delay to learn) this is what lets a quiet caller through.
2. **Learned echo path** (once the delay is clear). The delay comes from a normalised
   cross-correlation, exponentially weighted over ~``learn_frames`` frames, between the *log*
   energy of caller frames and of the reference at every lag (frames with reference in the window,
   the caller not talking, and no louder than the reference: an echo path does not amplify). Log
   envelopes, so a loud caller frame is one outlier rather than most of the variance; caller
   speech is uncorrelated with the agent, so it lowers the peak without moving it. Once the peak
   passes ``min_correlation``, the gate measures the echo gain at that lag: per frame,
   ``10·log10(caller energy / aligned reference energy)`` into a ring of ``gain_window`` frames.
   The echo threshold is its median plus ``spread_k`` times its upper spread (75th percentile
   minus median) plus ``dt_margin_db`` (median and quartile: caller speech only ever adds energy,
   so it must fill a quarter of the ring to move the threshold; frames of a confirmed-talking
   caller count one in ``talk_sample``, so a path that got louder is still relearned). The
   predicted echo is then the reference energy *at that lag* (±``lag_slack_s``) times that
   gain: the caller only has to beat the echo *of this moment*, not the agent's loudest
   syllable, and that is what makes barge-in work at low echo return loss.

Learning runs every ``learn_batch`` caller frames on a small matrix (the decision path only reads
the current thresholds), and percentiles are refreshed about once a second.

Echo-delay window
-----------------
``echo_delay_min_s``..``echo_delay_max_s`` = 0..360 ms after ``play_at``. The core's playout
estimate leaves out everything after the bridge: the network to Twilio, Twilio's start-up slip on
each agent turn (the phase of its 20 ms packet clock, its jitter buffer: 0-40 ms), the carrier
to the handset, the room or the handset itself (a few ms of acoustic path, plus the phone's own
buffering), and the way back. Round trips to a well-placed server are 50-200 ms with 20-100 ms of
PSTN or mobile buffering on top; the benchmark covers 20-300 ms of true delay, to which the slip
adds up to 40 ms and a caller frame's span 20 ms. When marks come back late (their lateness is
the network round trip plus any slip against our estimate), the window's far edge is extended by
the typical lateness, up to ``max_late_s``. The learned lag is trusted to ±``lag_slack_s``
(30 ms): a turn whose playout slips further than that from the turns before it is covered only
by the lag-free bound for its first echo (``onset_guard_s``), so at 6-10 dB of echo return loss
it can leak a little (the benchmark's 100 ms-slip run: 2% of echo frames at 10 dB).

What Gemini receives while the gate is closed: silence
------------------------------------------------------
A suppressed frame is replaced by μ-law silence of the same length (:func:`gated`), never
dropped. Gemini's server-side VAD measures time in the audio it receives: ``silenceDurationMs``
of end-of-turn silence only elapses while audio keeps arriving. With nothing sent, a caller turn
that was open when the gate closed would never end (the emulator's VAD does exactly that, as the
service does), and the gaps would shift ``prefixPaddingMs`` and every server-side timestamp
against the call. Silence keeps the stream continuous at 50 frames/s, so Gemini sees the end of
the caller's speech on time and its audio clock stays locked to the call; the inbound resampler
keeps its state across the switch. Digital silence rather than comfort noise: it can never be
mistaken for speech, and the service's VAD is trained on far worse switching than a clean mute.

The idle gate (no agent audio for ``cooldown_s``) also sends silence for frames below
``speech_rms`` outside a talking hold: line noise, typing and breathing between turns are not
speech, and the seeds' gate already drew the line at 0.05 RMS. ``hold_s`` after confirmed speech
keeps word endings and pauses inside a sentence. A caller whose whole voice stays below 0.05 RMS
would be muted, so ``speech_rms`` is a setting.

Cost (fake clock, one call, echo of continuous agent playback, learning on; ``benchmarks/echo.py``
gives the distribution): ``decide`` takes its maxima over the reference grid from a Python-list
mirror of it (numpy reductions of a few blocks cost more than the slice) and copies one row into
the learning batch, about 2 µs; with learning amortised (a ~45 µs batch every 25 frames), about
4.7 µs a frame (300 calls x 50 frames/s: 7% of a core). ``agent_frame`` is about 2.4 µs.

Size: this module is over the ~450-line guideline on purpose. A fifth of it is this docstring;
the rest is one detector whose state (the reference grid, the learned path and thresholds) every
method reads and writes, and splitting it would put that state behind accessors on the per-frame
path.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from .dsp.level import ULAW_SQUARES, mean_square_ulaw

__all__ = ["EchoGate", "GateConfig", "GateDecision", "SILENCE_FRAME", "gated"]

FRAME_S = 0.02
BLOCK_S = 0.01  # reference grid resolution
_BLOCK_SAMPLES = 80
_FRAME_BYTES = 160
#: μ-law code for a zero sample.
_ULAW_SILENCE = 0xFF
#: One 20 ms frame of μ-law silence: what Gemini receives in place of a suppressed frame.
SILENCE_FRAME = bytes([_ULAW_SILENCE]) * _FRAME_BYTES

_U8 = np.dtype(np.uint8)
#: ``ndarray.max()`` without its Python wrapper (numpy's ``_amax``): the same C reduction.
_max = np.maximum.reduce
_sum = np.add.reduce
_RING = 1024  # blocks of reference kept: 10.24 s, far more than lead + window
_TINY = 1e-10


def _quantiles(x: np.ndarray, *qs: float) -> list[float]:
    """Percentiles (nearest rank) by partition: a fraction of ``np.percentile``'s cost."""
    n = len(x)
    ranks = [min(n - 1, max(0, int(round(q / 100.0 * (n - 1))))) for q in qs]
    part = np.partition(x, ranks)
    return [float(part[r]) for r in ranks]


def _quantile(x: np.ndarray, q: float) -> float:
    return _quantiles(x, q)[0]


def _ring_put(ring: np.ndarray, n: int, values: np.ndarray) -> None:
    """Store ``values`` at ring slots ``n, n + 1, ...`` (mod its length): one slice unless it wraps."""
    w = len(ring)
    i = n % w
    k = len(values)
    if i + k <= w:
        ring[i : i + k] = values
    else:
        ring[(n + np.arange(k)) % w] = values


class GateDecision(str, enum.Enum):
    """What the gate did with one caller frame (the strings of ``metrics.GATE_DECISIONS``)."""

    FORWARD = "forward"
    SUPPRESS = "suppress"
    DOUBLE_TALK = "double_talk"
    COOLDOWN_FORWARD = "cooldown_forward"
    COOLDOWN_SUPPRESS = "cooldown_suppress"

    @property
    def forwarded(self) -> bool:
        """True when the caller's own audio goes to Gemini (otherwise silence does)."""
        return self in _FORWARDED


_FORWARDED = frozenset({GateDecision.FORWARD, GateDecision.DOUBLE_TALK, GateDecision.COOLDOWN_FORWARD})


def gated(caller_ulaw: bytes, decision: GateDecision) -> bytes:
    """The audio to send Gemini for this frame: the caller's, or silence of the same length."""
    if decision in _FORWARDED:
        return caller_ulaw
    n = len(caller_ulaw)
    return SILENCE_FRAME if n == _FRAME_BYTES else bytes([_ULAW_SILENCE]) * n


@dataclass(frozen=True, slots=True)
class GateConfig:
    """Echo-gate settings. Levels are RMS on full scale 1.0; times in seconds."""

    #: Caller voice: frames at least this loud count as speech (the seeds' first tier).
    speech_rms: float = 0.05
    #: The seeds' second tier: within ``cooldown_s`` after the agent's audio stops, a caller who is
    #: not already talking must be at least this loud (line and room decay, playout slip).
    cooldown_rms: float = 0.08
    cooldown_s: float = 1.5
    #: Echo-delay window after ``play_at`` (see the module docstring).
    echo_delay_min_s: float = 0.0
    echo_delay_max_s: float = 0.36
    #: Mark lateness beyond which the window's far edge is extended, and the most it is extended.
    max_late_s: float = 0.3
    #: Geigel: until the call says otherwise, echo is assumed at most this far below the agent.
    assumed_erl_db: float = 6.0
    #: Lag-free bound: this percentile of caller energy over the window's peak reference (frames
    #: with no talking caller), plus ``dt_margin_db``; never looser than ``assumed_erl_db``.
    bound_percentile: float = 95.0
    min_bound_frames: int = 25
    #: Learned path: threshold = median + ``spread_k`` x (75th percentile - median) + ``dt_margin_db``
    #: of the per-frame echo gains (dB) at the learned lag, over the last ``gain_window`` frames;
    #: frames of a talking caller count one in ``talk_sample``; at least ``min_gain_frames``.
    dt_margin_db: float = 2.0
    spread_k: float = 2.5
    gain_window: int = 250
    talk_sample: int = 4
    min_gain_frames: int = 30
    #: Learn the echo path during the call (False: the fixed Geigel bound only).
    adaptive: bool = True
    #: Consecutive passing frames that make the caller "talking" (opens the hold).
    confirm_frames: int = 2
    #: Keep forwarding this long after the last passing frame while the caller is talking.
    hold_s: float = 0.3
    #: Learning: caller frames per batch, batches between percentile refreshes, correlation time
    #: constant (frames with reference in the window), frames before the delay is trusted, the
    #: correlation it needs, and (once learned) the correlation below which it is forgotten.
    learn_batch: int = 25
    refresh_batches: int = 2
    learn_frames: float = 200.0
    min_learn_frames: int = 50
    min_correlation: float = 0.5
    keep_correlation: float = 0.3
    #: Reference below this RMS (in the aligned 20 ms) does not count towards the echo gain.
    learn_far_rms: float = 0.02
    #: Slack around the learned lag: the echo filter's spread, frame phase, and the playout slip
    #: that differs from one agent turn to the next (Twilio's start-up).
    lag_slack_s: float = 0.03
    #: For this long after a turn's first echo is due, the lag-free bound applies as well.
    onset_guard_s: float = 0.1


class EchoGate:
    """Decides, frame by frame, whether the caller's audio or silence goes to Gemini.

    See the module docstring for the design. One instance per call; not thread-safe.
    """

    def __init__(self, config: GateConfig | None = None) -> None:
        c = self.config = config or GateConfig()
        self._speech_e = c.speech_rms**2
        self._cooldown_e = c.cooldown_rms**2
        self._geigel_gain = 10 ** (-c.assumed_erl_db / 10)  # tightened by learning (bound_db)
        # Lags are whole blocks: a caller frame arriving in block b holds echo of the 20 ms of
        # reference ending at block b - lag; profile position p <-> lag (lag_hi - p).
        self._lag_lo = max(0, int(math.floor(c.echo_delay_min_s / BLOCK_S)))
        self._lag_base_hi = int(math.ceil(c.echo_delay_max_s / BLOCK_S))
        self._lag_cap = self._lag_base_hi + int(math.ceil(c.max_late_s / BLOCK_S))
        self._slack = max(0, int(round(c.lag_slack_s / BLOCK_S)))
        n = self._lag_cap - self._lag_lo + 1
        # Reference grid: block energies (E, a Python list: only ever read one block at a time) and
        # 20 ms smoothed energies (S), a doubled ring so any window is one contiguous slice. S is
        # kept twice with the same floats: a numpy ring (learning copies profiles out of it) and a
        # Python list (the per-frame maxima over a few blocks, cheaper than numpy on tiny slices).
        self._e = [0.0] * _RING
        self._s = np.zeros(2 * _RING)
        self._sl = [0.0] * (2 * _RING)
        self._last_block: int | None = None  # newest block written (absolute index)
        # Playout: start of the current run of agent audio, its end, the end of the previous run.
        self._run_start = -math.inf
        self._play_end = -math.inf
        self._prev_end = -math.inf
        self._late = 0.0  # typical mark lateness (seconds), extends the window
        self._lag_hi = self._lag_base_hi
        # Talking state.
        self._run = 0  # consecutive passing frames
        self._talking = False
        self._hold_until = -math.inf
        # Learning (per lag position over the widest window).
        self._npos = n
        # (Config fields read on every frame, one attribute lookup away: the config is frozen.)
        self._adaptive = c.adaptive
        self._learn_batch = c.learn_batch
        self._onset_guard = c.onset_guard_s
        self._batch_x: list[float] = []
        self._batch_p = np.zeros((max(1, c.learn_batch), n))  # the batch's profiles, row by row
        self._batch_t: list[bool] = []
        self._sx = 0.0
        self._sxx = 0.0
        self._sy = np.zeros(n)
        self._syy = np.zeros(n)
        self._sxy = np.zeros(n)
        self._learned = 0
        self._batches = 0
        self._best: int | None = None  # learned lag (blocks) when confident
        self._corr = 0.0
        # Per-frame echo gains (dB) at the learned lag: a ring of the last gain_window.
        self._gains = np.zeros(c.gain_window)
        self._gain_n = 0
        self._talk_n = 0
        # Lag-free bound: caller energy over the window's peak reference, frames not talking.
        self._bounds = np.zeros(c.gain_window)
        self._bound_n = 0
        self._bound_db: float | None = None
        self._gain_db: float | None = None  # median of the ring (reported as -ERL)
        self._thr_db = 0.0  # echo threshold relative to the aligned reference energy (dB)
        self._thr_gain = 0.0  # 10 ** (thr_db / 10)

    # -- reference (agent) side ------------------------------------------------------------------

    def agent_frame(self, ulaw: bytes, play_at: float) -> None:
        """A 160-byte agent frame the caller will start hearing at ``play_at``."""
        n = len(ulaw)
        if n == 0:
            return
        if n == _FRAME_BYTES:  # the usual case: two 10 ms blocks (mean squares, in C)
            blocks = [mean_square_ulaw(ulaw[:_BLOCK_SAMPLES]), mean_square_ulaw(ulaw[_BLOCK_SAMPLES:])]
        elif n >= _BLOCK_SAMPLES:
            x = ULAW_SQUARES.take(np.frombuffer(ulaw, _U8))
            nb = n // _BLOCK_SAMPLES
            blocks = (x[: nb * _BLOCK_SAMPLES].reshape(nb, _BLOCK_SAMPLES).sum(axis=1) / _BLOCK_SAMPLES).tolist()
        else:
            blocks = [mean_square_ulaw(ulaw)]
        b0 = int(round(play_at / BLOCK_S))
        last = self._last_block
        if last is not None and abs(b0 - (last + 1)) <= 1:
            b0 = last + 1  # contiguous audio: absorb rounding of play_at
        self._write(b0, blocks)
        end = play_at + n / 8000.0
        if play_at > self._play_end + 0.001:  # a new run of agent audio
            if self._play_end > -math.inf:
                self._prev_end = self._play_end
            self._run_start = play_at
        self._play_end = max(self._play_end, end)

    def _write(self, b0: int, blocks: list[float]) -> None:
        e, s, sl = self._e, self._s, self._sl
        last = self._last_block
        if last is None or b0 <= last - _RING or b0 > last + _RING:
            e[:] = [0.0] * _RING
            s[:] = 0.0
            sl[:] = [0.0] * (2 * _RING)
        elif b0 > last + 1:  # a gap: silence on the grid
            for b in range(last + 1, b0):
                i = b % _RING
                e[i] = 0.0
                s[i] = s[i + _RING] = sl[i] = sl[i + _RING] = 0.0
        prev = e[(b0 - 1) % _RING] if last is not None and b0 - 1 <= last else 0.0
        for v in blocks:
            i = b0 % _RING
            e[i] = v
            s[i] = s[i + _RING] = sl[i] = sl[i + _RING] = 0.5 * (prev + v)
            prev = v
            b0 += 1
        self._last_block = b0 - 1

    def agent_flushed(self, now: float) -> None:
        """Twilio was told to ``clear``: reference audio from ``now`` on will never play."""
        cut = int(math.floor(now / BLOCK_S))  # the block playing now stops part-way: keep it
        last = self._last_block
        if last is not None and last > cut:
            e, s, sl = self._e, self._s, self._sl
            for b in range(max(cut + 1, last - _RING + 1), last + 1):
                i = b % _RING
                e[i] = 0.0
                s[i] = s[i + _RING] = sl[i] = sl[i + _RING] = 0.0
            self._last_block = cut
        if self._play_end > now:
            if self._run_start > now:  # the run never started: the previous end stands
                self._play_end = self._prev_end
                self._run_start = -math.inf
            else:
                self._play_end = now

    def playback_confirmed(self, play_end: float, now: float) -> None:
        """A mark came back at ``now`` for audio estimated to end at ``play_end``.

        Its lateness (network round trip plus playout slip) is how much later than ``play_at``
        the echo can arrive; the typical lateness extends the window's far edge.
        """
        late = now - play_end
        if not late >= 0.0:  # also rejects NaN
            return
        late = min(late, self.config.max_late_s)
        # Slow to rise, quick to fall: one late mark (a stall on our side) does not widen it much.
        self._late += (0.1 if late > self._late else 0.3) * (late - self._late)
        self._lag_hi = min(self._lag_cap, self._lag_base_hi + int(math.ceil(self._late / BLOCK_S)))

    # -- caller side -----------------------------------------------------------------------------

    def decide(self, caller_ulaw: bytes, now: float, energy: float | None = None) -> GateDecision:
        """Gate one caller frame that arrived at ``now``.

        ``energy``: the frame's :func:`~telephony_bridge.dsp.mean_square_ulaw`, when the caller
        has it already (the call core measures every frame's level anyway).
        """
        if not caller_ulaw:
            return GateDecision.SUPPRESS
        if energy is None:
            energy = mean_square_ulaw(caller_ulaw)
        c = self.config

        talking = self._talking
        if talking and now >= self._hold_until:
            talking = self._talking = False
        if self._run_start <= now < self._play_end:
            state = 0  # the agent is playing
            floor = self._speech_e
        else:
            ended = self._play_end if now >= self._play_end else self._prev_end
            if now - ended < c.cooldown_s:
                state = 1
                # A caller already talking (a barge-in going on after the clear) needs only to
                # keep talking; anyone else must clear the second tier.
                floor = self._speech_e if talking else self._cooldown_e
            else:
                state = 2
                floor = self._speech_e

        echo = self._predicted_echo(now, energy)  # (always: it also feeds the learning)
        passed = energy >= floor
        if passed and echo > 0.0 and not (talking and state == 1):
            # The agent has stopped and the caller is mid-sentence: the tail of reference still
            # in the window must not cut them off (it is gone within the window anyway).
            passed = energy > echo

        if passed:
            self._run += 1
            if self._run >= c.confirm_frames:
                self._talking = talking = True
            if talking:
                self._hold_until = now + c.hold_s
            forward = True
        else:
            self._run = 0
            forward = talking

        if state == 0:
            return GateDecision.DOUBLE_TALK if forward else GateDecision.SUPPRESS
        if state == 1:
            return GateDecision.COOLDOWN_FORWARD if forward else GateDecision.COOLDOWN_SUPPRESS
        return GateDecision.FORWARD if forward else GateDecision.SUPPRESS

    def _predicted_echo(self, now: float, energy: float) -> float:
        """Energy threshold the echo cannot exceed (0.0 when no reference is in the window)."""
        last = self._last_block
        if last is None:
            return 0.0
        b = int(math.floor(now / BLOCK_S + 1e-6))  # (k * 0.02) / 0.01 must not floor to 2k - 1
        top = b - 1 - self._lag_lo  # newest block whose 20 ms can echo into this frame
        bottom = b - 1 - self._lag_cap  # oldest block (widest window)
        if bottom > last:
            return 0.0
        i = bottom % _RING  # position p <-> lag (lag_cap - p) <-> ring index i + p
        # Positions from w on are blocks never written (or flushed): silence. Energies are >= 0,
        # so a maximum over a range that runs into them is the maximum of its written part.
        w = last - bottom + 1 if top > last else self._npos
        sl = self._sl
        first = self._lag_cap - self._lag_hi  # positions before this are beyond the current window
        best = self._best
        if best is not None:
            p = self._lag_cap - best
            lo = self._aligned_from(p, first)
            hi = min(p + self._slack + 1, w)
            aligned = max(sl[i + lo : i + hi]) if lo < hi else 0.0
            echo = aligned * self._thr_gain
            if now - self._run_start < best * BLOCK_S + self._onset_guard:
                # The first echo of a turn: its playout slip is unknown (Twilio's start-up), so the
                # aligned estimate may look at the silence before it. The lag-free bound covers it.
                echo = max(echo, self._peak(i, first, w) * self._geigel_gain)
        else:
            echo = self._peak(i, first, w) * self._geigel_gain
        if self._adaptive:
            xs = self._batch_x
            n = len(xs)
            self._batch_p[n] = self._s[i : i + self._npos]
            if w < self._npos:
                self._batch_p[n, w:] = 0.0
            xs.append(energy)
            self._batch_t.append(self._talking and now < self._hold_until)
            if n + 1 >= self._learn_batch:
                self._learn()
        return echo

    def _peak(self, i: int, first: int, w: int) -> float:
        """The largest smoothed reference energy over window positions ``first``..``w`` (ring
        index ``i`` + position): what the lag-free bound scales."""
        return max(self._sl[i + first : i + w]) if first < w else 0.0

    def _aligned_from(self, p: int, first: int) -> int:
        """First profile position read around the learned lag's position ``p``: its slack, cut at
        the window's far edge (``first``) unless the whole range lies past it. That happens when a
        lag was learned while late marks had widened the window and the marks then came back on
        time: the echo was measured there, so the gate goes on reading it (an empty range used to
        raise out of the gate and end the call)."""
        lo = max(0, p - self._slack)
        return lo if first > p + self._slack else max(first, lo)

    # -- learning --------------------------------------------------------------------------------

    def _learn(self) -> None:
        c = self.config
        self._batches += 1
        near_all = np.asarray(self._batch_x)
        prof_all = self._batch_p  # (filled row by row; read only here, until the next batch)
        talking = np.asarray(self._batch_t) if True in self._batch_t else None  # (None: nobody talks)
        self._batch_x.clear()
        self._batch_t.clear()
        far = _max(prof_all, 1)  # (ndarray.max(axis=1) without its Python wrapper)
        with_ref = far > c.learn_far_rms**2 * 0.25
        # The delay: frames with agent audio in the window, the caller not known to be talking,
        # and no louder than that audio (an echo path does not amplify: louder is the caller).
        use = with_ref & (near_all <= far)
        if talking is not None:
            use &= ~talking
        n_use = np.count_nonzero(use)
        if n_use == len(use):  # the usual batch over agent audio: no copies
            self._correlate(near_all, prof_all)
            self._bound(near_all, far)
        elif n_use:
            self._correlate(near_all[use], prof_all[use])
            self._bound(near_all[use], far[use])
        if self._learned < c.min_learn_frames:
            return
        vx = self._sxx - self._sx * self._sx
        first = self._lag_cap - self._lag_hi
        vy = self._syy[first:] - self._sy[first:] ** 2
        cov = self._sxy[first:] - self._sx * self._sy[first:]
        corr = cov / np.sqrt(np.maximum(vx * vy, _TINY))
        p = int(np.argmax(corr)) + first
        self._corr = float(corr[p - first])
        if self._corr < (c.keep_correlation if self._best is not None else c.min_correlation):
            self._best = None
            return
        lag = self._lag_cap - p
        if self._best is not None and lag != self._best and self._corr < c.min_correlation:
            lag = self._best  # a weak new peak does not move a learned lag
        p = self._lag_cap - lag
        # The echo gain at that lag, from frames with enough reference to measure it. Frames of
        # a talking caller count one in ``talk_sample``: few enough that a caller who talks over
        # the agent does not raise the threshold against themself, enough that an echo path that
        # got louder (mis-taken for a talking caller) is relearned within seconds.
        aligned = _max(prof_all[:, self._aligned_from(p, first) : p + self._slack + 1], 1)
        ok = with_ref & (aligned > c.learn_far_rms**2)
        if talking is not None:
            for i in np.flatnonzero(ok & talking).tolist():
                self._talk_n += 1
                if self._talk_n % c.talk_sample:
                    ok[i] = False
        k = np.count_nonzero(ok)
        if k:
            _ring_put(self._gains, self._gain_n, 10.0 * np.log10((near_all[ok] + _TINY) / aligned[ok]))
        first = self._gain_n < c.min_gain_frames
        self._gain_n += k
        if self._gain_n < c.min_gain_frames:
            return
        if not first and self._best == lag and self._batches % c.refresh_batches:
            return  # thresholds are refreshed once a second, not on every batch
        p50, p75 = _quantiles(self._gains[: min(self._gain_n, c.gain_window)], 50.0, 75.0)
        self._gain_db = float(p50)
        self._thr_db = float(p50 + c.spread_k * (p75 - p50) + c.dt_margin_db)
        self._thr_gain = 10 ** (self._thr_db / 10)
        self._best = lag

    def _bound(self, near: np.ndarray, far: np.ndarray) -> None:
        """Tighten the Geigel bound from what the caller's line carries while the agent plays.

        Whatever the delay, echo is part of the caller's signal, so a high percentile of caller
        energy over the window's peak reference bounds the echo gain from above. Undetected caller
        speech only loosens the bound (never past ``assumed_erl_db``), so it is safe; when echo is
        below the line noise (handsets with their own echo canceller), no delay can be learned
        but this still says so, and a quiet caller gets through.
        """
        c = self.config
        loud = far > c.learn_far_rms**2
        k = np.count_nonzero(loud)
        if not k:
            return
        w = c.gain_window
        _ring_put(self._bounds, self._bound_n, 10.0 * np.log10((near[loud] + _TINY) / far[loud]))
        first = self._bound_n < c.min_bound_frames
        self._bound_n += k
        if self._bound_n >= c.min_bound_frames and (first or self._batches % c.refresh_batches == 0):
            top = _quantile(self._bounds[: min(self._bound_n, w)], c.bound_percentile)
            self._bound_db = min(-c.assumed_erl_db, top + c.dt_margin_db)
            self._geigel_gain = 10 ** (self._bound_db / 10)

    def _correlate(self, near: np.ndarray, prof: np.ndarray) -> None:
        """Fold frames into the exponentially weighted lag correlation statistics."""
        c = self.config
        k = len(near)
        # Log envelopes: a loud caller frame is one outlier, not most of the variance.
        x = np.log10(near + 1e-7)
        y = np.log10(prof + 1e-7)
        self._learned += k
        a = 1.0 - (1.0 - max(1.0 / c.learn_frames, 1.0 / self._learned)) ** k
        # (Means as add.reduce / k: what ndarray.mean computes, without its Python wrapper.)
        self._sx += a * (float(_sum(x)) / k - self._sx)
        self._sxx += a * (float(x @ x) / k - self._sxx)
        self._sy += a * (_sum(y, 0) / k - self._sy)
        self._syy += a * (_sum(y * y, 0) / k - self._syy)
        self._sxy += a * ((x @ y) / k - self._sxy)

    # -- introspection ---------------------------------------------------------------------------

    @property
    def echo_path(self) -> dict[str, float | None]:
        """What the gate has learned, for logs and benchmarks: echo delay (s) and return loss
        (dB, the median per-frame gain) once a delay is learned, the echo threshold relative to the
        aligned reference (dB), the lag-free bound (dB), the lag correlation, the mark lateness."""
        best = self._best
        return {
            "delay_s": None if best is None else round(best * BLOCK_S, 3),
            "erl_db": None if best is None or self._gain_db is None else round(-self._gain_db, 1),
            "threshold_db": None if best is None else round(self._thr_db, 1),
            "bound_db": None if self._bound_db is None else round(self._bound_db, 1),
            "correlation": round(self._corr, 3),
            "late_s": round(self._late, 3),
        }
