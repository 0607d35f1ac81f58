"""A stereo 8 kHz PCM16 WAV written as the call goes, playable at every moment.

:class:`StereoWav` appends ``(left, right)`` μ-law batches (decoded and interleaved with numpy, one
table lookup per batch) and rewrites the two sizes in the header after every batch, so whatever
is on disk is a complete WAV file: a process killed mid-call leaves the call up to the last
batch (the writer batches once a second). :func:`stereo_pcm16` is the same conversion for a whole
call (the demo's ``call.wav``).
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

import numpy as np

from ..dsp.mulaw import DECODE_INT16

RATE = 8000
CHANNELS = 2
_HEADER = 44


def _header(data_bytes: int) -> bytes:
    block = CHANNELS * 2
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, CHANNELS, RATE, RATE * block, block, 16)
            + b"data" + struct.pack("<I", data_bytes))


def stereo_pcm16(left: bytes, right: bytes) -> bytes:
    """Two μ-law tracks of equal length → interleaved little-endian PCM16 (L, R, L, R ...)."""
    n = len(left)
    out = np.empty((n, 2), dtype="<i2")
    out[:, 0] = DECODE_INT16.take(np.frombuffer(left, np.uint8))
    out[:, 1] = DECODE_INT16.take(np.frombuffer(right, np.uint8))
    return out.tobytes()


def write_stereo(path: str | os.PathLike[str], left: bytes, right: bytes) -> None:
    """A whole call at once (the shorter track padded with μ-law silence)."""
    n = max(len(left), len(right))
    left = bytes(left) + b"\xff" * (n - len(left))
    right = bytes(right) + b"\xff" * (n - len(right))
    with StereoWav(path) as wav:
        wav.append(left, right)


class StereoWav:
    """Append-only stereo WAV whose header is always right (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], *, append: bool = False) -> None:
        """``append``: go on after the audio an earlier stream of the call left in ``path``."""
        self.path = os.fspath(path)
        self.data_bytes = 0
        if append and os.path.isfile(self.path) and os.path.getsize(self.path) >= _HEADER:
            self._f: BinaryIO | None = open(self.path, "r+b")  # noqa: SIM115 - closed by close()
            size = self._f.seek(0, os.SEEK_END)
            self.data_bytes = (size - _HEADER) // 4 * 4
            self._f.truncate(_HEADER + self.data_bytes)
            self._f.seek(0, os.SEEK_END)
            return
        self._f = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        self._f.write(_header(0))
        self._f.flush()

    @property
    def seconds(self) -> float:
        return self.data_bytes / (RATE * CHANNELS * 2)

    def append(self, left: bytes, right: bytes) -> None:
        f = self._f
        if f is None or not left:
            return
        pcm = stereo_pcm16(left, right)
        f.write(pcm)
        self.data_bytes += len(pcm)
        f.seek(4)
        f.write(struct.pack("<I", 36 + self.data_bytes))
        f.seek(40)
        f.write(struct.pack("<I", self.data_bytes))
        f.seek(0, os.SEEK_END)
        f.flush()  # in the kernel's hands: a killed process loses nothing written so far

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> StereoWav:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
