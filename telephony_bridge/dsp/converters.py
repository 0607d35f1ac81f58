"""The two audio paths of a call, bytes in and bytes out.

- :class:`InboundConverter`: Twilio μ-law 8 kHz → Gemini PCM16 LE 16 kHz.
- :class:`OutboundConverter`: Gemini PCM16 LE 24 kHz → Twilio μ-law 8 kHz.

Both are a table decode, one streaming polyphase filter (:mod:`.resample`) and
one table lookup that rounds, saturates and (outbound) μ-law encodes in one
step. Rounding is ``floor(y + 0.5)``; values beyond int16 clip to
-32768/32767 instead of wrapping (these filters overshoot a full-scale
square wave by about 3.5 dB; linear-phase ones with the same band edges
would by about 2.2 dB).

Chunking never changes the output: ``convert(a) + convert(b)`` equals
``convert(a + b)`` byte for byte, for any split (including an odd number of
PCM bytes), because the filter arithmetic is exact (see :mod:`.resample`).
"""

from __future__ import annotations

import numpy as np

from .mulaw import DECODE_FLOAT, ENCODE_UINT16
from .resample import INBOUND_FILTER, OUTBOUND_FILTER, Decimator, Interpolator

__all__ = ["InboundConverter", "OutboundConverter"]

_U8 = np.dtype(np.uint8)
_I16 = np.dtype("<i2")
_INTP = np.dtype(np.intp)


# Rounding + saturation (+ μ-law encoding) in one table lookup: the filter output
# y arrives offset by 32768.5, so int(y) = floor(value + 0.5) + 32768 is a table
# index for in-range values, and take(mode="clip") maps everything below/above
# the table to its first/last entry, i.e. -32768/32767: saturation, not wrap.
_OFFSET = 32768.5
#: index i → int16 sample i - 32768 (little-endian, ready for tobytes).
_SAT_PCM16 = np.arange(-32768, 32768, dtype=np.int64).astype(_I16)
#: index i → μ-law byte of sample i - 32768.
_SAT_ULAW = np.roll(ENCODE_UINT16, 32768)
#: μ-law byte → decoded sample + offset (the inbound filter carries the offset through).
_DECODE_BIASED = DECODE_FLOAT + _OFFSET
for _t in (_SAT_PCM16, _SAT_ULAW, _DECODE_BIASED):
    _t.setflags(write=False)
del _t


class InboundConverter:
    """μ-law 8 kHz → PCM16 LE 16 kHz, streaming.

    ``convert`` returns exactly ``4 * len(ulaw)`` bytes (two 16 kHz samples per
    μ-law byte) on every call: nothing is buffered, the only delay is the
    filter's (impulse peak 0.25 ms, energy centroid 0.31 ms). ``flush`` rings
    out the filter tail (58 samples, 3.6 ms at 16 kHz, then resets); ``reset``
    forgets the history.
    """

    __slots__ = ("_interp",)

    def __init__(self) -> None:
        self._interp = Interpolator(INBOUND_FILTER, bias=_OFFSET)

    def convert(self, ulaw: bytes) -> bytes:
        if not ulaw:
            return b""
        y = self._interp.process_lookup(_DECODE_BIASED, np.frombuffer(ulaw, _U8))
        return _SAT_PCM16.take(y.astype(_INTP), mode="clip").tobytes()

    def flush(self) -> bytes:
        y = self._interp.flush()
        return _SAT_PCM16.take(y.astype(_INTP), mode="clip").tobytes()

    def reset(self) -> None:
        self._interp.reset()


class OutboundConverter:
    """PCM16 LE 24 kHz → μ-law 8 kHz, streaming.

    After ``T`` whole samples in total (``len`` of all input // 2), exactly
    ``T // 3`` μ-law bytes have been returned: 0-2 samples wait for their
    group of three and a dangling odd byte waits for its partner; the filter
    itself delays by 0.17 ms (impulse peak; energy centroid 0.25 ms).
    ``flush`` returns the filter tail (28-29 bytes, 3.5 ms) and resets;
    ``reset`` drops everything, including the odd byte (barge-in).
    """

    __slots__ = ("_dec", "_odd")

    def __init__(self) -> None:
        self._dec = Decimator(OUTBOUND_FILTER, bias=_OFFSET)
        self._odd = b""

    def convert(self, pcm: bytes) -> bytes:
        if self._odd:
            pcm = self._odd + pcm
            self._odd = b""
        nbytes = len(pcm)
        if nbytes & 1:
            self._odd = pcm[-1:]
        n = nbytes >> 1
        if n == 0:
            return b""
        y = self._dec.process(np.frombuffer(pcm, _I16, count=n))
        return _SAT_ULAW.take(y.astype(_INTP), mode="clip").tobytes()

    def flush(self) -> bytes:
        """Return the filter's held tail as μ-law, then reset.

        A dangling odd byte (half a sample) cannot be decoded and is dropped.
        """
        self._odd = b""
        y = self._dec.flush()
        return _SAT_ULAW.take(y.astype(_INTP), mode="clip").tobytes()

    def reset(self) -> None:
        self._dec.reset()
        self._odd = b""
