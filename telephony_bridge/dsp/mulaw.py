"""G.711 μ-law ⇄ linear PCM16, as lookup tables.

The tables reproduce the reference G.711 routines used by CPython's ``audioop``
(``st_ulaw2linear16`` and ``st_14linear2ulaw`` applied to ``sample >> 2``), so
:func:`ulaw_to_pcm16` and :func:`pcm16_to_ulaw` are bit-exact with
``audioop.ulaw2lin(b, 2)`` and ``audioop.lin2ulaw(b, 2)`` for every one of the
256 codes and 65 536 sample values (tests/test_dsp.py checks all of them).
The product does not import ``audioop``: it is deprecated on 3.11-3.12 and gone
from the standard library on 3.13.

Tables (all built once at import with numpy, read-only):

- :data:`DECODE_INT16`   256 × int16: μ-law byte → linear sample.
- :data:`DECODE_FLOAT`   256 × float64: the same values as floats (exact).
- :data:`ENCODE_UINT16`  65 536 × uint8: linear sample viewed as uint16 → μ-law byte.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ULAW_SILENCE",
    "DECODE_INT16",
    "DECODE_FLOAT",
    "ENCODE_UINT16",
    "encode_int",
    "ulaw_to_pcm16",
    "pcm16_to_ulaw",
]

#: μ-law code for a zero sample (positive zero); what Twilio plays as silence.
ULAW_SILENCE = 0xFF

_BIAS = 0x84  # G.711: 132, added before the segment search (33 on the 14-bit scale)
_CLIP = 8159  # largest 14-bit magnitude that fits the top segment
_SEG_UEND = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)


def _build_decode() -> np.ndarray:
    # G.711 §A: complement, then t = ((mantissa << 3) + BIAS) << segment.
    u = (~np.arange(256, dtype=np.int32)) & 0xFF
    t = ((u & 0x0F) << 3) + _BIAS
    t = t << ((u & 0x70) >> 4)
    out = np.where(u & 0x80, _BIAS - t, t - _BIAS)
    return out.astype(np.int16)


def encode_int(values: np.ndarray) -> np.ndarray:
    """μ-law codes for integer samples in int16 range (any integer dtype), vectorised.

    Same arithmetic as the reference ``st_14linear2ulaw(sample >> 2)``.
    Used to build the tables; per-frame paths use :data:`ENCODE_UINT16`.
    """
    pcm = np.asarray(values, dtype=np.int32) >> 2  # arithmetic shift, as in C
    negative = pcm < 0
    mag = np.where(negative, -pcm, pcm)
    mask = np.where(negative, 0x7F, 0xFF)
    mag = np.minimum(mag, _CLIP) + (_BIAS >> 2)
    seg = np.searchsorted(_SEG_UEND, mag, side="left")  # first i with mag <= SEG_UEND[i]
    seg_c = np.minimum(seg, 7)
    uval = (seg_c << 4) | ((mag >> (seg_c + 1)) & 0x0F)
    uval = np.where(seg >= 8, 0x7F, uval)
    return (uval ^ mask).astype(np.uint8)


DECODE_INT16: np.ndarray = _build_decode()
DECODE_FLOAT: np.ndarray = DECODE_INT16.astype(np.float64)
ENCODE_UINT16: np.ndarray = encode_int(np.arange(65536, dtype=np.uint16).view(np.int16))
for _t in (DECODE_INT16, DECODE_FLOAT, ENCODE_UINT16):
    _t.setflags(write=False)
del _t

_U8 = np.dtype(np.uint8)
_U16 = np.dtype("<u2")


def ulaw_to_pcm16(b: bytes) -> bytes:
    """μ-law bytes → PCM16 little-endian bytes (2 bytes out per byte in)."""
    if not b:
        return b""
    return DECODE_INT16.take(np.frombuffer(b, _U8)).astype("<i2", copy=False).tobytes()


def pcm16_to_ulaw(b: bytes) -> bytes:
    """PCM16 little-endian bytes → μ-law bytes (1 byte out per sample).

    A trailing odd byte (half a sample) is ignored, as ``audioop`` refuses it;
    use :class:`~telephony_bridge.dsp.OutboundConverter` to stream odd chunks.
    """
    n = len(b) // 2
    if n == 0:
        return b""
    return ENCODE_UINT16.take(np.frombuffer(b, _U16, count=n)).tobytes()
