"""μ-law / PCM16 helpers and WAV I/O for the testing kit (stdlib only).

Deliberately independent of :mod:`telephony_bridge.dsp`: the caller simulator must
judge the bridge with its own codec, not with the code under test. G.711 μ-law
comes from the stdlib ``audioop`` module (deprecated since 3.11 and removed in 3.13,
where the ``audioop-lts`` package provides the same module); the deprecation
warning is silenced at import only, so tests that run with warnings as errors work.
"""

from __future__ import annotations

import os
import warnings
import wave

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = [
    "ULAW_SILENCE",
    "SAMPLE_RATE",
    "FRAME_BYTES",
    "ulaw_to_pcm16",
    "pcm16_to_ulaw",
    "tone_ulaw",
    "silence_ulaw",
    "write_stereo_wav",
    "read_wav_mono_pcm16",
    "load_ulaw",
]

#: μ-law code for a zero sample (what a quiet phone line carries).
ULAW_SILENCE = 0xFF
#: Twilio Media Streams carry 8 kHz mono μ-law: one byte per sample.
SAMPLE_RATE = 8000
#: One 20 ms Media Streams frame.
FRAME_BYTES = 160


def ulaw_to_pcm16(ulaw: bytes) -> bytes:
    """Decode G.711 μ-law to signed 16-bit little-endian PCM (2 bytes per sample)."""
    return audioop.ulaw2lin(bytes(ulaw), 2)


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    """Encode signed 16-bit little-endian PCM to G.711 μ-law."""
    return audioop.lin2ulaw(bytes(pcm), 2)


def silence_ulaw(ms: float) -> bytes:
    """``ms`` milliseconds of μ-law digital silence at 8 kHz."""
    return bytes([ULAW_SILENCE]) * int(round(ms * SAMPLE_RATE / 1000))


def tone_ulaw(freq: float = 440.0, ms: float = 500.0, amplitude: float = 0.3) -> bytes:
    """A sine tone as 8 kHz μ-law (``amplitude`` as a fraction of full scale)."""
    import math

    n = int(round(ms * SAMPLE_RATE / 1000))
    peak = int(max(0.0, min(1.0, amplitude)) * 32767)
    samples = bytearray()
    for i in range(n):
        v = int(round(peak * math.sin(2 * math.pi * freq * i / SAMPLE_RATE)))
        samples += v.to_bytes(2, "little", signed=True)
    return pcm16_to_ulaw(bytes(samples))


def write_stereo_wav(path: str | os.PathLike[str], left_ulaw: bytes, right_ulaw: bytes) -> None:
    """Write two μ-law tracks as a stereo PCM16 8 kHz WAV (the shorter one padded with silence)."""
    n = max(len(left_ulaw), len(right_ulaw))
    left = bytes(left_ulaw) + bytes([ULAW_SILENCE]) * (n - len(left_ulaw))
    right = bytes(right_ulaw) + bytes([ULAW_SILENCE]) * (n - len(right_ulaw))
    l16 = ulaw_to_pcm16(left)
    r16 = ulaw_to_pcm16(right)
    stereo = audioop.add(audioop.tostereo(l16, 2, 1, 0), audioop.tostereo(r16, 2, 0, 1), 2)
    with wave.open(os.fspath(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(stereo)


def read_wav_mono_pcm16(path: str | os.PathLike[str], rate: int = SAMPLE_RATE) -> bytes:
    """Read a PCM WAV file as mono 16-bit PCM at ``rate`` (channels averaged, resampled)."""
    with wave.open(os.fspath(path), "rb") as w:
        channels, width, src_rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        frames = w.readframes(w.getnframes())
    if width != 2:
        frames = audioop.lin2lin(frames, width, 2)
    if channels == 2:
        frames = audioop.tomono(frames, 2, 0.5, 0.5)
    elif channels != 1:
        raise ValueError(f"{path}: {channels} channels are not supported")
    if src_rate != rate:
        frames, _ = audioop.ratecv(frames, 2, 1, src_rate, rate, None)
    return frames


def load_ulaw(path: str | os.PathLike[str]) -> bytes:
    """Load caller audio: a ``.wav`` file is converted to 8 kHz μ-law; anything else is raw μ-law."""
    if os.fspath(path).lower().endswith(".wav"):
        return pcm16_to_ulaw(read_wav_mono_pcm16(path))
    with open(path, "rb") as f:
        return f.read()
