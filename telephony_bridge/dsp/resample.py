"""Streaming polyphase resamplers with minimum-phase FIR filters.

Filter design (done once, at import; every converter instance shares the taps)
------------------------------------------------------------------------------
The phone band is 300-3400 Hz and 8 kHz μ-law leaves about 37 dB SNR, so a
resampler only has to be clean in that band and keep everything from 4.6 kHz
up (what would fold into, or image out of, the band) 70 dB down. We design an
equiripple (Parks-McClellan, ``scipy.signal.remez``) low-pass with passband
0-3400 Hz and stopband 4600 Hz-Nyquist at the high rate, then convert it to
minimum phase (``scipy.signal.minimum_phase(..., half=False)``, homomorphic
method, which keeps the magnitude response). Why minimum phase: a linear-phase
filter of this length delays everything by half its length; a minimum-phase
filter with the same magnitude puts its energy at the start, so the audio held
inside each direction is a fraction of a millisecond (see
``benchmarks/dsp-latest.txt`` for the measured figures). SNR, passband
flatness and stopband rejection depend only on magnitude, so they are
unchanged; the phase becomes non-linear near the band edge, which telephone
audio (and ears) do not care about.

Exact arithmetic, so streaming is byte-exact with one-shot
------------------------------------------------------------
Taps are rounded to multiples of 2**-TAP_FRACTION_BITS (24 bits: about
-150 dB of coefficient noise, far below the stopband). Input samples are
integers of at most 16 bits, so every product and every partial sum is a
multiple of 2**-24 smaller than 2**19, which float64 (53-bit mantissa)
represents exactly. The dot products therefore have exactly one possible
result whatever order BLAS sums them in, and however the stream is chunked:
chunked output equals one-shot output bit for bit, by construction rather
than by luck. The caller rounds the exact result to an integer (see
:mod:`.converters`).

Streaming
---------
Each resampler keeps only the input history its filter still needs (and, for
the decimator, the 0..factor-1 samples that do not complete an output yet),
in a preallocated float64 work buffer. A call runs one matrix product over a
strided window view of that buffer (``rows x taps``), so the per-call cost is
a handful of numpy calls regardless of chunk size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import signal

__all__ = [
    "TAP_FRACTION_BITS",
    "PolyphaseFilter",
    "design_min_phase_lowpass",
    "INBOUND_FILTER",
    "OUTBOUND_FILTER",
    "Interpolator",
    "Decimator",
]

TAP_FRACTION_BITS = 24
_F64 = np.dtype(np.float64)
_ITEM = _F64.itemsize


@lru_cache(maxsize=None)
def design_min_phase_lowpass(
    fs: float,
    numtaps: int,
    pass_hz: float,
    stop_hz: float,
    gain: float,
    pass_weight: float,
) -> np.ndarray:
    """Minimum-phase equiripple low-pass, taps quantised to 2**-TAP_FRACTION_BITS.

    ``numtaps`` must be odd (the homomorphic minimum-phase transform wants a
    type I linear-phase prototype). ``pass_weight`` < 1 trades passband ripple
    (which only has to stay within a fraction of a dB) for stopband depth.
    """
    if numtaps % 2 == 0:
        raise ValueError("numtaps must be odd")
    proto = signal.remez(
        numtaps, [0.0, pass_hz, stop_hz, fs / 2.0], [1.0, 0.0], weight=[pass_weight, 1.0], fs=fs
    )
    h = signal.minimum_phase(proto, method="homomorphic", half=False, n_fft=1 << 16)
    h *= gain / h.sum()  # exact DC gain before quantisation
    scale = float(1 << TAP_FRACTION_BITS)
    h = np.round(h * scale) / scale
    h.setflags(write=False)
    return h


@dataclass(frozen=True)
class PolyphaseFilter:
    """A prototype FIR at the high rate, split for an integer-factor resampler.

    ``taps`` is zero-padded to a multiple of ``factor``. For interpolation,
    ``phases[c, p]`` is the tap applied to history column ``c`` (oldest first)
    for output phase ``p``; for decimation ``reversed_taps`` is ``taps[::-1]``.
    ``interp_bound`` / ``decim_bound`` are the largest absolute output value
    the interpolator / decimator can produce from int16 input (sizes of the
    saturating rounding tables).
    """

    taps: np.ndarray
    factor: int
    phases: np.ndarray = field(init=False, repr=False)
    reversed_taps: np.ndarray = field(init=False, repr=False)
    interp_bound: float = field(init=False)
    decim_bound: float = field(init=False)

    def __post_init__(self) -> None:
        f = self.factor
        h = np.asarray(self.taps, dtype=np.float64)
        pad = (-len(h)) % f
        h = np.concatenate([h, np.zeros(pad)])
        k = len(h) // f
        # phases[c, p] = h[(k - 1 - c) * f + p]
        phases = np.ascontiguousarray(h.reshape(k, f)[::-1])
        rev = np.ascontiguousarray(h[::-1])
        for a in (h, phases, rev):
            a.setflags(write=False)
        object.__setattr__(self, "taps", h)
        object.__setattr__(self, "phases", phases)
        object.__setattr__(self, "reversed_taps", rev)
        object.__setattr__(self, "interp_bound", 32768.0 * float(np.abs(phases).sum(axis=0).max()))
        object.__setattr__(self, "decim_bound", 32768.0 * float(np.abs(h).sum()))

    @property
    def length(self) -> int:
        return len(self.taps)


#: 8 kHz → 16 kHz: 47-tap min-phase low-pass at 16 kHz (gain 2 restores level after zero-stuffing).
INBOUND_FILTER = PolyphaseFilter(
    design_min_phase_lowpass(16000.0, 47, 3400.0, 4600.0, 2.0, 0.1), factor=2
)
#: 24 kHz → 8 kHz: 71-tap min-phase low-pass at 24 kHz.
OUTBOUND_FILTER = PolyphaseFilter(
    design_min_phase_lowpass(24000.0, 71, 3400.0, 4600.0, 1.0, 0.1), factor=3
)


class _WorkBuffer:
    """A float64 buffer with a fixed history prefix and cached window views."""

    __slots__ = ("buf", "views", "cap")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.buf = np.zeros(cap, dtype=np.float64)
        self.views: dict[tuple[int, int], np.ndarray] = {}

    def ensure(self, size: int, keep: int) -> None:
        if size <= self.cap:
            return
        cap = max(size, 2 * self.cap)
        new = np.zeros(cap, dtype=np.float64)
        new[:keep] = self.buf[:keep]
        self.buf, self.cap, self.views = new, cap, {}

    def window(self, offset: int, rows: int, width: int, step: int) -> np.ndarray:
        key = (offset, rows)
        v = self.views.get(key)
        if v is None:
            if len(self.views) > 64:
                self.views.clear()
            v = np.ndarray(
                (rows, width), _F64, self.buf.data, offset * _ITEM, (step * _ITEM, _ITEM)
            )
            self.views[key] = v
        return v


class Interpolator:
    """Streaming integer-factor interpolator (8 kHz → 16 kHz for the inbound path).

    ``process(x)`` returns exactly ``factor * len(x)`` output values for any
    ``len(x)``: nothing is held back except filter history, so the only delay
    is the filter's own (impulse peak 0.19 ms for :data:`INBOUND_FILTER`).
    Output values are exact (not rounded); see the module docstring.
    """

    __slots__ = ("filt", "_k1", "_work", "_primed")

    def __init__(self, filt: PolyphaseFilter = INBOUND_FILTER) -> None:
        self.filt = filt
        self._k1 = filt.phases.shape[0] - 1  # history length
        self._work = _WorkBuffer(self._k1 + 512)
        self._primed = False

    def process(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        if n == 0:
            return np.empty(0, dtype=np.float64)
        k1 = self._k1
        work = self._work
        work.ensure(k1 + n, k1)
        buf = work.buf
        buf[k1 : k1 + n] = x
        win = work.window(0, n, k1 + 1, 1)
        y = np.dot(win, self.filt.phases)
        buf[:k1] = buf[n : n + k1]
        self._primed = True
        return y.reshape(-1)

    def flush(self) -> np.ndarray:
        """Ring out the filter (as if ``len(history)`` zeros followed), then reset."""
        if not self._primed:
            return np.empty(0, dtype=np.float64)
        y = self.process(np.zeros(self._k1))
        self.reset()
        return y

    def reset(self) -> None:
        self._work.buf[: self._k1] = 0.0
        self._primed = False


class Decimator:
    """Streaming integer-factor decimator (24 kHz → 8 kHz for the outbound path).

    Output ``m`` is the filter evaluated at input sample ``factor*m + factor-1``
    (the newest sample of each group), so an output is produced as soon as its
    group is complete: after ``T`` input samples in total, ``T // factor``
    outputs have been returned. Up to ``factor-1`` samples wait for their group
    (0.08 ms at 24 kHz).
    """

    __slots__ = ("filt", "_h1", "_pending", "_work", "_primed")

    def __init__(self, filt: PolyphaseFilter = OUTBOUND_FILTER) -> None:
        self.filt = filt
        self._h1 = filt.length - 1  # history length
        self._pending = 0  # samples after the history that do not yet complete a group
        self._work = _WorkBuffer(self._h1 + 2048)
        self._primed = False

    def process(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        h1, r, f = self._h1, self._pending, self.filt.factor
        if n == 0:
            return np.empty(0, dtype=np.float64)
        work = self._work
        start = h1 + r
        total = start + n
        work.ensure(total, start)
        buf = work.buf
        buf[start:total] = x
        q = (r + n) // f
        self._primed = True
        if q:
            win = work.window(f - 1, q, h1 + 1, f)
            y = np.dot(win, self.filt.reversed_taps)
        else:
            y = np.empty(0, dtype=np.float64)
        consumed = q * f
        keep = total - consumed
        buf[:keep] = buf[consumed:total]
        self._pending = keep - h1
        return y

    def flush(self) -> np.ndarray:
        """Ring out the filter and the incomplete group, then reset.

        Equivalent to appending zeros until every output whose window touches a
        real sample has been produced: ``ceil((pending + history) / factor)``
        outputs.
        """
        if not self._primed:
            return np.empty(0, dtype=np.float64)
        f = self.filt.factor
        r = self._pending
        zeros = -(-(r + self._h1) // f) * f - r
        y = self.process(np.zeros(zeros))
        self.reset()
        return y

    def reset(self) -> None:
        self._work.buf[: self._h1 + self._pending] = 0.0
        self._pending = 0
        self._primed = False
