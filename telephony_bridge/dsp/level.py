"""Level meters: RMS on a full scale of 1.0 (= 32768).

These run on every 20 ms frame of every call (caller speech gate, echo gate,
per-call level logs), so the μ-law meters are two C calls each (``audioop``) and
no Python loop over samples. ``ULAW_SQUARES`` (a 256-entry table of squared,
normalised sample values indexed by the μ-law byte) serves numpy users such as
the echo gate's block energies.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .mulaw import DECODE_FLOAT

__all__ = ["rms_ulaw", "mean_square_ulaw", "rms_pcm16", "ULAW_SQUARES"]

#: (decoded sample / 32768)² for each μ-law byte.
ULAW_SQUARES: np.ndarray = (DECODE_FLOAT / 32768.0) ** 2
ULAW_SQUARES.setflags(write=False)

_I16 = np.dtype("<i2")

with warnings.catch_warnings():  # stdlib on 3.11/3.12 (deprecated there), audioop-lts on 3.13+
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

# G.711 decoding to 32-bit samples (the 16-bit value << 16) and an integer RMS over them, both
# in C: a frame's level in ~0.4 µs where two numpy calls on 160 bytes take ~1.5 µs. The RMS is
# truncated to an integer on the 2**31 scale: 1 part in 65536 of one 16-bit step.
_ulaw2lin = audioop.ulaw2lin
_rms = audioop.rms
_SCALE = 1.0 / 2**31


def mean_square_ulaw(b: bytes) -> float:
    """Mean square (energy) of μ-law audio, full scale 1.0. Empty input gives 0.0."""
    r = rms_ulaw(b)
    return r * r


def rms_ulaw(b: bytes) -> float:
    """RMS of μ-law audio, full scale 1.0. Empty input gives 0.0."""
    if not b:
        return 0.0
    return _rms(_ulaw2lin(b, 4), 4) * _SCALE


def rms_pcm16(b: bytes) -> float:
    """RMS of PCM16 little-endian audio, full scale 1.0.

    A trailing odd byte is ignored; input shorter than one sample gives 0.0.
    """
    n = len(b) // 2
    if n == 0:
        return 0.0
    x = np.frombuffer(b, _I16, count=n).astype(np.float64)
    return math.sqrt(float(np.dot(x, x)) / n) / 32768.0
