"""Echo (:class:`EchoPath`): what the caller hears comes back in what it sends.

Delayed, filtered and attenuated, as from a phone on speaker. ``CallResult.voice_ulaw`` keeps the
caller's own voice alone. :class:`_Echo` is the running state the 20 ms clock mixes with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..wav import FRAME_BYTES, SAMPLE_RATE, pcm16_to_ulaw, ulaw_to_pcm16


@dataclass(frozen=True)
class EchoPath:
    """Echo of what the caller hears, added to what the caller sends: a phone on speaker, or a
    handset that leaks its earpiece into its microphone.

    Every sample heard comes back ``delay_ms`` later (handset, room and the carrier's buffering;
    the bridge's network legs come on top of it in real life), filtered by ``taps`` (a short FIR
    at 8 kHz: the room or handset response) and ``erl_db`` quieter (echo return loss). The taps
    are scaled to unit power gain (sum of squares 1), so ``erl_db`` is exact for white noise; the
    default taps are a low-pass that passes the agent's speech 3.7 dB louder (12 dB here is about
    8.3 dB of echo return loss for speech). The echo is mixed into every frame the caller sends:
    on top of the caller's own speech, or alone while the caller is silent (the sum is re-encoded
    as μ-law, saturating at full scale). ``CallResult.voice_ulaw`` keeps the caller's own voice.
    """

    delay_ms: float = 120.0
    erl_db: float = 12.0
    taps: tuple[float, ...] = (0.5, 0.7, 0.4, 0.15, -0.1, -0.15, -0.05)

    def __post_init__(self) -> None:
        if not (self.delay_ms >= 0 and self.delay_ms <= 2000):
            raise ValueError(f"EchoPath.delay_ms must be 0-2000, not {self.delay_ms!r}")
        if not (-20 <= self.erl_db <= 120):
            raise ValueError(f"EchoPath.erl_db must be -20..120 dB, not {self.erl_db!r}")
        taps = tuple(float(t) for t in self.taps)
        if not taps or len(taps) > 1024 or not all(np.isfinite(taps)) or not any(taps):
            raise ValueError("EchoPath.taps must be 1-1024 finite numbers, not all zero")
        object.__setattr__(self, "taps", taps)

    @property
    def gain(self) -> np.ndarray:
        """The impulse response actually applied (taps scaled to the echo return loss)."""
        h = np.asarray(self.taps, dtype=np.float64)
        return h / np.sqrt(float(h @ h)) * 10 ** (-self.erl_db / 20)


class _Echo:
    """Running state of an :class:`EchoPath`: the recent heard samples, frame by frame."""

    def __init__(self, path: EchoPath) -> None:
        self.h = path.gain
        self.delay = int(round(path.delay_ms * SAMPLE_RATE / 1000))
        # heard samples: the last (delay + taps - 1) before the current frame, then the frame
        self.hist = np.zeros(self.delay + len(self.h) - 1 + FRAME_BYTES)

    def reset(self) -> None:
        self.hist[:] = 0.0

    def mix(self, voice: bytes, heard: bytes) -> bytes:
        """The frame the caller sends: ``voice`` plus the echo of everything heard up to ``heard``
        (the frame playing now), both 160 bytes of μ-law."""
        n = len(heard)
        self.hist = np.concatenate([self.hist[n:], np.frombuffer(ulaw_to_pcm16(heard), dtype="<i2")])
        seg = self.hist[: FRAME_BYTES + len(self.h) - 1]
        if not seg.any():
            return voice  # no echo yet: the caller's frame goes out untouched
        echo = np.convolve(seg, self.h, mode="valid")[: len(voice)]
        x = np.frombuffer(ulaw_to_pcm16(voice), dtype="<i2") + echo
        return pcm16_to_ulaw(np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes())
