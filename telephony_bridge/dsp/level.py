"""Level meters: RMS on a full scale of 1.0 (= 32768).

These run on every 20 ms frame of every call (caller speech gate, echo gate,
per-call level logs), so they are a couple of numpy calls each and no Python
loop over samples. :func:`rms_ulaw` never decodes: it sums a 256-entry table of
squared, normalised sample values indexed by the μ-law byte.
"""

from __future__ import annotations

import math

import numpy as np

from .mulaw import DECODE_FLOAT

__all__ = ["rms_ulaw", "mean_square_ulaw", "rms_pcm16", "ULAW_SQUARES"]

#: (decoded sample / 32768)² for each μ-law byte.
ULAW_SQUARES: np.ndarray = (DECODE_FLOAT / 32768.0) ** 2
ULAW_SQUARES.setflags(write=False)

_U8 = np.dtype(np.uint8)
_I16 = np.dtype("<i2")
# Bound once: ``ndarray.sum()`` is ``np.add.reduce`` behind a Python wrapper (same pairwise sum).
_sum = np.add.reduce
_take = ULAW_SQUARES.take
_frombuffer = np.frombuffer


def mean_square_ulaw(b: bytes) -> float:
    """Mean square (energy) of μ-law audio, full scale 1.0. Empty input gives 0.0."""
    n = len(b)
    if n == 0:
        return 0.0
    return float(_sum(_take(_frombuffer(b, _U8)))) / n


def rms_ulaw(b: bytes) -> float:
    """RMS of μ-law audio, full scale 1.0. Empty input gives 0.0."""
    return math.sqrt(mean_square_ulaw(b))


def rms_pcm16(b: bytes) -> float:
    """RMS of PCM16 little-endian audio, full scale 1.0.

    A trailing odd byte is ignored; input shorter than one sample gives 0.0.
    """
    n = len(b) // 2
    if n == 0:
        return 0.0
    x = np.frombuffer(b, _I16, count=n).astype(np.float64)
    return math.sqrt(float(np.dot(x, x)) / n) / 32768.0
