"""The two audio paths of a call, bytes in and bytes out.

- :class:`InboundConverter`: Twilio μ-law 8 kHz → Gemini PCM16 LE 16 kHz.
- :class:`OutboundConverter`: Gemini PCM16 LE 24 kHz → Twilio μ-law 8 kHz.

Both are a table decode, one streaming polyphase filter (:mod:`.resample`) and
one table lookup that rounds, saturates and (outbound) μ-law encodes in one
step. Rounding is ``floor(y + 0.5)``; values beyond int16 clip to
-32768/32767 instead of wrapping (a minimum-phase filter overshoots on a
full-scale square wave by several dB).

Chunking never changes the output: ``convert(a) + convert(b)`` equals
``convert(a + b)`` byte for byte, for any split (including an odd number of
PCM bytes), because the filter arithmetic is exact (see :mod:`.resample`).
"""

from __future__ import annotations

import math

import numpy as np

from .mulaw import DECODE_FLOAT, ENCODE_UINT16
from .resample import INBOUND_FILTER, OUTBOUND_FILTER, Decimator, Interpolator

__all__ = ["InboundConverter", "OutboundConverter"]

_U8 = np.dtype(np.uint8)
_I16 = np.dtype("<i2")
_INTP = np.dtype(np.intp)


def _saturating_table(bound: float) -> tuple[float, np.ndarray]:
    """(offset + 0.5, table) so that ``table[int(y + offset + 0.5)]`` is ``clip(round(y))``.

    ``offset`` exceeds every reachable ``|y|``, so the index is positive and
    ``astype(intp)`` (truncation) is a floor.
    """
    offset = int(math.ceil(bound)) + 2
    values = np.clip(np.arange(-offset, offset + 1, dtype=np.int64), -32768, 32767)
    return offset + 0.5, values


_IN_ADD, _in_values = _saturating_table(INBOUND_FILTER.interp_bound)
_IN_TABLE = _in_values.astype(_I16)
_OUT_ADD, _out_values = _saturating_table(OUTBOUND_FILTER.decim_bound)
_OUT_TABLE = ENCODE_UINT16[_out_values.astype(np.int16).view(np.uint16)]
for _t in (_IN_TABLE, _OUT_TABLE):
    _t.setflags(write=False)
del _in_values, _out_values, _t


class InboundConverter:
    """μ-law 8 kHz → PCM16 LE 16 kHz, streaming.

    ``convert`` returns exactly ``4 * len(ulaw)`` bytes (two 16 kHz samples per
    μ-law byte) on every call: nothing is buffered, the only delay is the
    filter's (impulse peak 0.19 ms). ``flush`` rings out the filter tail
    (46 samples, 2.9 ms at 16 kHz) and ``reset`` forgets the history.
    """

    __slots__ = ("_interp",)

    def __init__(self) -> None:
        self._interp = Interpolator(INBOUND_FILTER)

    def convert(self, ulaw: bytes) -> bytes:
        if not ulaw:
            return b""
        y = self._interp.process(DECODE_FLOAT.take(np.frombuffer(ulaw, _U8)))
        y += _IN_ADD
        return _IN_TABLE.take(y.astype(_INTP)).tobytes()

    def flush(self) -> bytes:
        y = self._interp.flush()
        if not len(y):
            return b""
        y += _IN_ADD
        return _IN_TABLE.take(y.astype(_INTP)).tobytes()

    def reset(self) -> None:
        self._interp.reset()


class OutboundConverter:
    """PCM16 LE 24 kHz → μ-law 8 kHz, streaming.

    After ``T`` whole samples in total (``len`` of all input // 2), exactly
    ``T // 3`` μ-law bytes have been returned: 0-2 samples wait for their
    group of three and a dangling odd byte waits for its partner. ``flush``
    returns the filter tail (up to 24 bytes, 3 ms) and resets; ``reset`` drops
    everything, including the odd byte (barge-in).
    """

    __slots__ = ("_dec", "_odd")

    def __init__(self) -> None:
        self._dec = Decimator(OUTBOUND_FILTER)
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
        if not len(y):
            return b""
        y += _OUT_ADD
        return _OUT_TABLE.take(y.astype(_INTP)).tobytes()

    def flush(self) -> bytes:
        """Return the filter's held tail as μ-law, then reset.

        A dangling odd byte (half a sample) cannot be decoded and is dropped.
        """
        self._odd = b""
        y = self._dec.flush()
        if not len(y):
            return b""
        y += _OUT_ADD
        return _OUT_TABLE.take(y.astype(_INTP)).tobytes()

    def reset(self) -> None:
        self._dec.reset()
        self._odd = b""
