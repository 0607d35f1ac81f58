"""Streaming polyphase resamplers with minimum-phase FIR filters.

Filter design (done once, at import; every converter instance shares the taps)
------------------------------------------------------------------------------
The phone band is 300-3400 Hz and 8 kHz μ-law leaves about 37 dB SNR, so a
resampler only has to be clean in that band and keep everything from 4.6 kHz
up (what would fold into, or image out of, the band) 70 dB down. We design an
equiripple (Parks-McClellan, ``scipy.signal.remez``) low-pass with passband
0-3400 Hz and stopband 4600 Hz-Nyquist at the high rate, then convert it to
minimum phase (``scipy.signal.minimum_phase(..., half=False)``, homomorphic
method, which keeps the magnitude response).

Why minimum phase: a linear-phase filter of this length holds half its length
of audio (1.8 ms inbound, 1.7 ms outbound, before any buffering), and soxr,
which trims its filter delay by withholding output and releases it in blocks,
holds 14-114 ms. The minimum-phase filter puts its energy first: measured with
a streamed impulse (benchmarks/dsp.py, dsp-latest.txt), the response peaks
0.25 ms (inbound) / 0.17 ms (outbound) after the input and its energy centroid
sits at 0.31 / 0.25 ms; nothing else is held. SNR, passband flatness and
stopband rejection depend only on magnitude, so they are what the equiripple
design gives: images ≥ 72 dB down inbound, 4.6-11 kHz ≥ 75 dB down outbound,
passband spread ≤ 0.01 dB (which matters: near μ-law segment edges a tone's
μ-law SNR moves ~10 dB per dB of level, so a 0.04 dB gain error showed up as
-0.3 dB SNR). The phase is non-linear near the band edge, which telephone audio
does not care about; the one visible cost is more overshoot on hard
transients (3.5 dB on a full-scale square wave against 2.2 dB for the
linear-phase prototype), which the converters saturate rather than wrap.

Exact arithmetic, so streaming is byte-exact with one-shot
------------------------------------------------------------
Taps are rounded to multiples of 2**-TAP_FRACTION_BITS (24 bits: about
-150 dB of coefficient noise, far below the stopband), and each polyphase
branch sums to exactly 1. Inputs are integers or half-integers of at most 17
bits (int16 samples, plus the converters' 32768.5 offset), so every product
and every partial sum is a multiple of 2**-25 smaller than 2**19, which
float64 (53-bit mantissa) represents exactly. The dot products therefore have
one possible result whatever order BLAS sums them in and however the stream
is chunked: chunked output equals one-shot output bit for bit, by
construction rather than by luck. The caller rounds the exact result (see
:mod:`.converters`).

Streaming and speed
-------------------
Each resampler keeps only the input history its filter still needs (and, for
the decimator, the 0..factor-1 samples that do not complete an output yet)
at the front of a preallocated float64 work buffer with cached window views.
A call writes the new samples after the history, runs one small GEMM of
overlapping block rows against a block-Toeplitz expansion of the taps
(:class:`_Engine`), and moves the history forward: about five numpy calls per
call. With μ-law included, a 20 ms inbound frame costs about 1.0x and a 40 ms
outbound chunk about 1.05x the CPU of ``soxr.ResampleStream`` HQ doing the same
conversion (dsp-latest.txt has the measured figures).
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
    pass_weight: float,
    branches: int = 1,
    multiple: int = 1,
) -> np.ndarray:
    """Minimum-phase equiripple low-pass, taps on a 2**-TAP_FRACTION_BITS grid.

    ``numtaps`` must be odd (the homomorphic minimum-phase transform wants a
    type I linear-phase prototype); the result is zero-padded to a multiple
    of ``multiple``. ``pass_weight`` < 1 trades passband ripple for stopband
    depth. After quantisation the largest tap of each of the ``branches``
    interleaved branches ``h[p::branches]`` is nudged so that the branch sums
    to exactly 1 (the nudge is about half the response at fs/branches, which
    costs a few dB of stopband; the designs below leave room for it): an interpolator by L uses
    ``branches=L`` (gain L on zero-stuffed input, exactly unity DC gain per
    output phase), a decimator ``branches=1``. Exact unity gain is what lets
    a constant offset ride through the filter unchanged (``bias`` below).
    """
    if numtaps % 2 == 0:
        raise ValueError("numtaps must be odd")
    proto = signal.remez(
        numtaps, [0.0, pass_hz, stop_hz, fs / 2.0], [1.0, 0.0], weight=[pass_weight, 1.0], fs=fs
    )
    h = signal.minimum_phase(proto, method="homomorphic", half=False, n_fft=1 << 16)
    h = np.concatenate([h, np.zeros((-len(h)) % multiple)])
    h *= branches / h.sum()
    scale = float(1 << TAP_FRACTION_BITS)
    h = np.round(h * scale)  # integers: the sums below are exact
    for p in range(branches):
        branch = h[p::branches]
        i = int(np.argmax(np.abs(branch)))
        branch[i] += scale - branch.sum()
        h[p::branches] = branch
    h /= scale
    h.setflags(write=False)
    return h


@dataclass(frozen=True, eq=False)
class PolyphaseFilter:
    """A prototype FIR at the high rate, split for an integer-factor resampler.

    ``taps`` (length a multiple of ``factor``) as returned by
    :func:`design_min_phase_lowpass`. For interpolation, ``phases[c, p]`` is
    the tap applied to history column ``c`` (oldest first) for output phase
    ``p``; for decimation ``reversed_taps`` is ``taps[::-1]``.
    """

    taps: np.ndarray
    factor: int
    phases: np.ndarray = field(init=False, repr=False)
    reversed_taps: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        f = self.factor
        h = np.asarray(self.taps, dtype=np.float64)
        if len(h) % f:
            raise ValueError("len(taps) must be a multiple of factor")
        k = len(h) // f
        # phases[c, p] = h[(k - 1 - c) * f + p]
        phases = np.ascontiguousarray(h.reshape(k, f)[::-1])
        rev = np.ascontiguousarray(h[::-1])
        for a in (h, phases, rev):
            a.setflags(write=False)
        object.__setattr__(self, "taps", h)
        object.__setattr__(self, "phases", phases)
        object.__setattr__(self, "reversed_taps", rev)

    @property
    def length(self) -> int:
        return len(self.taps)


#: 8 kHz → 16 kHz: 59-tap minimum-phase low-pass at 16 kHz, two branches of 30 taps.
INBOUND_FILTER = PolyphaseFilter(
    design_min_phase_lowpass(16000.0, 59, 3400.0, 4600.0, 0.3, branches=2, multiple=2), factor=2
)
#: 24 kHz → 8 kHz: 83-tap minimum-phase low-pass at 24 kHz (84 with padding).
OUTBOUND_FILTER = PolyphaseFilter(
    design_min_phase_lowpass(24000.0, 83, 3400.0, 4600.0, 0.5, branches=1, multiple=3), factor=3
)


class _Engine:
    """``rows`` windows of a work buffer, each dotted with a tap matrix.

    Row ``i`` is ``buf[offset + i*step : offset + i*step + width]`` and yields
    ``taps.shape[1]`` outputs (``taps`` is ``width x outputs_per_row``). Whole
    blocks of ``block`` rows go through one matrix product with a block-Toeplitz
    expansion of the taps (``block_taps``): numpy copies only the few
    overlapping block rows before its GEMM, where the plain product over
    overlapping windows would copy every window (this halves the outbound
    cost). Leftover rows use the plain product. Both give identical results
    because the arithmetic is exact.
    """

    __slots__ = ("taps", "block_taps", "offset", "step", "width", "block", "per_row", "block_width")

    def __init__(self, taps: np.ndarray, offset: int, step: int, block: int) -> None:
        width, per_row = taps.shape
        self.taps, self.offset, self.step, self.width = taps, offset, step, width
        self.block, self.per_row = block, per_row
        self.block_width = (block - 1) * step + width
        t = np.zeros((self.block_width, block * per_row))
        for j in range(block):
            t[j * step : j * step + width, j * per_row : (j + 1) * per_row] = taps
        t.setflags(write=False)
        self.block_taps = t


@lru_cache(maxsize=None)
def _engine(filt: PolyphaseFilter, kind: str, block: int) -> _Engine:
    """One engine (and block-Toeplitz tap matrix) per filter, shared by all instances."""
    if kind == "interp":
        return _Engine(filt.phases, offset=0, step=1, block=block)
    f = filt.factor
    return _Engine(filt.reversed_taps.reshape(-1, 1), offset=f - 1, step=f, block=block)


class _Stream:
    """Per-instance float64 work buffer (history first) and cached views of it."""

    __slots__ = ("engine", "buf", "cap", "_views")

    def __init__(self, engine: _Engine, cap: int, fill: float) -> None:
        self.engine = engine
        self.cap = cap
        self.buf = np.full(cap, fill, dtype=np.float64)
        self._views: dict[object, np.ndarray] = {}

    def ensure(self, size: int, keep: int) -> None:
        if size <= self.cap:
            return
        cap = max(size, 2 * self.cap)
        new = np.zeros(cap, dtype=np.float64)
        new[:keep] = self.buf[:keep]
        self.buf, self.cap, self._views = new, cap, {}

    def slot(self, start: int, stop: int) -> np.ndarray:
        key = ("slot", start, stop)
        v = self._views.get(key)
        if v is None:
            v = self._cache(key, self.buf[start:stop])
        return v

    def _cache(self, key: object, v: np.ndarray) -> np.ndarray:
        if len(self._views) > 64:
            self._views.clear()
        self._views[key] = v
        return v

    def _window(self, key: object, rows: int, offset: int, width: int, row_step: int) -> np.ndarray:
        v = self._views.get(key)
        if v is None:
            v = self._cache(
                key,
                np.ndarray((rows, width), _F64, self.buf.data, offset * _ITEM, (row_step * _ITEM, _ITEM)),
            )
        return v

    def run(self, rows: int) -> np.ndarray:
        """Outputs of rows ``0..rows-1`` (``rows * per_row`` values, a fresh array)."""
        e = self.engine
        nb, rem = divmod(rows, e.block)
        if not rem:  # the usual case: 20 ms and 40 ms chunks are whole blocks
            x = self._window(nb, nb, e.offset, e.block_width, e.block * e.step)
            return np.dot(x, e.block_taps).reshape(-1)
        per = e.per_row
        out = np.empty(rows * per, dtype=np.float64)
        if nb:
            x = self._window(nb, nb, e.offset, e.block_width, e.block * e.step)
            np.dot(x, e.block_taps, out=out[: nb * e.block * per].reshape(nb, e.block * per))
        done = nb * e.block
        x = self._window((done, rem), rem, e.offset + done * e.step, e.width, e.step)
        np.dot(x, e.taps, out=out[done * per :].reshape(rem, per))
        return out


class Interpolator:
    """Streaming integer-factor interpolator (8 kHz → 16 kHz for the inbound path).

    ``process(x)`` returns exactly ``factor * len(x)`` output values for any
    ``len(x)``: nothing is held back except filter history, so the only delay
    is the filter's own. Output values are exact (not rounded); see the module
    docstring.

    ``bias`` is a constant added to every input sample (the history starts
    at, resets to and flushes with ``bias``); because each output phase has
    exactly unity DC gain, every output then carries exactly the same
    ``bias``. The converters use it to get their rounding offset without an
    extra pass over the output (inbound folds it into the μ-law decode table).
    """

    __slots__ = ("filt", "bias", "_k1", "_s", "_primed")

    #: Input samples per block product (tuned with benchmarks/dsp.py).
    BLOCK = 16

    def __init__(self, filt: PolyphaseFilter = INBOUND_FILTER, bias: float = 0.0) -> None:
        self.filt = filt
        self.bias = bias
        self._k1 = filt.phases.shape[0] - 1  # history length
        self._s = _Stream(_engine(filt, "interp", self.BLOCK), self._k1 + 640, bias)
        self._primed = False

    def _advance(self, n: int) -> np.ndarray:
        s, k1 = self._s, self._k1
        y = s.run(n)
        buf = s.buf
        buf[:k1] = buf[n : n + k1]
        self._primed = True
        return y

    def process(self, x: np.ndarray) -> np.ndarray:
        """Filter ``len(x)`` new input samples (``bias`` is added to them)."""
        n = len(x)
        if n == 0:
            return np.empty(0, dtype=np.float64)
        k1, s = self._k1, self._s
        if k1 + n > s.cap:
            s.ensure(k1 + n, k1)
        np.add(x, self.bias, out=s.slot(k1, k1 + n))
        return self._advance(n)

    def process_lookup(self, table: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Filter ``table[codes]`` taken as is: the table must already include ``bias``.

        Saves the intermediate array of a separate lookup (``codes`` must be
        valid indices; the inbound converter passes μ-law bytes).
        """
        n = len(codes)
        if n == 0:
            return np.empty(0, dtype=np.float64)
        k1, s = self._k1, self._s
        if k1 + n > s.cap:
            s.ensure(k1 + n, k1)
        table.take(codes, out=s.slot(k1, k1 + n), mode="clip")
        return self._advance(n)

    def flush(self) -> np.ndarray:
        """Ring out the filter (as if ``len(history)`` zero samples followed), then reset."""
        if not self._primed:
            return np.empty(0, dtype=np.float64)
        y = self.process(np.zeros(self._k1))
        self.reset()
        return y

    def reset(self) -> None:
        self._s.buf[: self._k1] = self.bias
        self._primed = False


class Decimator:
    """Streaming integer-factor decimator (24 kHz → 8 kHz for the outbound path).

    Output ``m`` is the filter evaluated at input sample ``factor*m + factor-1``
    (the newest sample of each group), so an output is produced as soon as its
    group is complete: after ``T`` input samples in total, ``T // factor``
    outputs have been returned. Up to ``factor-1`` samples wait for their group
    (at most 0.08 ms at 24 kHz; none when chunks hold a multiple of 3 samples,
    as Gemini's 40 ms chunks do).

    ``bias`` gives the same outputs as for :class:`Interpolator` (the taps
    sum to exactly 1, so filtering ``x + bias`` is exactly filtering ``x``
    plus ``bias``); it is added to the outputs, the cheaper side here.
    """

    __slots__ = ("filt", "bias", "_h1", "_pending", "_s", "_primed")

    #: Outputs per block product (tuned with benchmarks/dsp.py).
    BLOCK = 16

    def __init__(self, filt: PolyphaseFilter = OUTBOUND_FILTER, bias: float = 0.0) -> None:
        self.filt = filt
        self.bias = bias
        self._h1 = filt.length - 1  # history length
        self._pending = 0  # samples after the history that do not yet complete a group
        self._s = _Stream(_engine(filt, "decim", self.BLOCK), self._h1 + 2048, 0.0)
        self._primed = False

    def process(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        if n == 0:
            return np.empty(0, dtype=np.float64)
        h1, r, f, s = self._h1, self._pending, self.filt.factor, self._s
        start = h1 + r
        total = start + n
        if total > s.cap:
            s.ensure(total, start)
        buf = s.buf
        s.slot(start, total)[:] = x
        q = (r + n) // f
        self._primed = True
        if q:
            y = s.run(q)
            if self.bias:
                y += self.bias
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
        self._s.buf[: self._h1 + self._pending] = 0.0
        self._pending = 0
        self._primed = False
