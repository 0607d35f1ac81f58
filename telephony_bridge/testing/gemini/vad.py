"""Energy-based voice activity detection for the Gemini Live emulator (sans-I/O).

This stands in for the service's automatic activity detection. It is deliberately simple and
fully deterministic, so tests can predict it:

* Audio is cut into 20 ms blocks at whatever rate it arrives (8 kHz → 160 samples, 16 kHz →
  320, ...); each block's RMS is measured on full scale 1.0.
* **Start of speech**: a block with RMS ≥ ``threshold`` (default 0.03) opens a candidate run;
  the run continues while blocks stay ≥ ``release`` (default ``0.7 × threshold`` ≈ 0.021).
  Once the run has lasted ``prefix_padding_ms`` (default 40 ms, at least one block), speech
  start is committed, timestamped at the run's first block. That is the meaning of Gemini's
  ``prefixPaddingMs`` ("the required duration of detected speech before start-of-speech is
  committed").
* **End of speech**: in speech, every block ≥ ``release`` extends the speech (hysteresis, so
  soft word endings don't chop a turn); once ``silence_duration_ms`` of consecutive blocks below
  ``release`` have gone by, end of speech is committed, timestamped at the end of the last
  speech block. ``silenceDurationMs`` is thus the turn-level hangover.
* :meth:`EnergyVAD.flush` (``audioStreamEnd``) ends a turn in progress at once.

Why 0.03/0.021: production notes put line background at 0.01–0.02 RMS and voice above 0.05; the
emulator sits between them so quiet speech still counts while normal line noise never opens or
holds a turn. Background above ``release`` keeps a turn open forever, as with a real VAD in a
noisy room; tests that need that can lower or raise ``threshold`` through the scenario.

Times are **audio time** in seconds: the amount of audio fed so far, not wall-clock time. A
client that stops sending audio stops the clock, and then no turn ends, which is what the real
service does too (the bridge needs its own watchdog for that case).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK_MS = 20
DEFAULT_THRESHOLD = 0.03
DEFAULT_RELEASE_RATIO = 0.7
DEFAULT_PREFIX_PADDING_MS = 40
DEFAULT_SILENCE_DURATION_MS = 1000


@dataclass(frozen=True, slots=True)
class SpeechStart:
    """Start of speech, committed at ``committed_at``; speech began at ``start``."""

    start: float
    committed_at: float


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    """End of speech (``end`` = end of the last speech block), committed at ``committed_at``."""

    start: float
    end: float
    committed_at: float
    peak_rms: float
    flushed: bool = False


VadEvent = SpeechStart | SpeechEnd


def pcm16_to_float(data: bytes) -> np.ndarray:
    """PCM16 little-endian bytes → float64 samples on full scale 1.0."""
    return np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0


def rms(x: np.ndarray) -> float:
    if len(x) == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(x))))


class EnergyVAD:
    """Feed float samples with :meth:`feed`; get :class:`SpeechStart`/:class:`SpeechEnd` events."""

    def __init__(
        self,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        release: float | None = None,
        prefix_padding_ms: float = DEFAULT_PREFIX_PADDING_MS,
        silence_duration_ms: float = DEFAULT_SILENCE_DURATION_MS,
    ) -> None:
        if threshold <= 0:
            raise ValueError("threshold must be positive")
        self.threshold = float(threshold)
        self.release = float(release if release is not None else threshold * DEFAULT_RELEASE_RATIO)
        self.prefix_blocks = max(1, int(np.ceil(prefix_padding_ms / BLOCK_MS)))
        self.silence_blocks = max(1, int(np.ceil(silence_duration_ms / BLOCK_MS)))
        self.time = 0.0  # audio time at the end of the last complete block
        self.in_speech = False
        self._rate: int | None = None
        self._pending = np.zeros(0)
        self._run_start = 0.0
        self._run_blocks = 0
        self._speech_start = 0.0
        self._last_speech_end = 0.0
        self._silent_blocks = 0
        self._peak = 0.0

    @property
    def buffered_seconds(self) -> float:
        """Audio received but not yet analysed (less than one block)."""
        return len(self._pending) / self._rate if self._rate else 0.0

    @property
    def last_speech_end(self) -> float:
        """Audio time at the end of the latest speech block of the speech in progress."""
        return self._last_speech_end

    def feed(self, samples: np.ndarray, rate: int) -> list[VadEvent]:
        """Analyse ``samples`` (float, full scale 1.0) at ``rate`` Hz; return events, in order."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        if rate != self._rate:
            # A new rate: the partial block of the old rate is dropped (its time is kept).
            if self._rate:
                self.time += len(self._pending) / self._rate
            self._pending = np.zeros(0)
            self._rate = rate
        x = np.concatenate([self._pending, np.asarray(samples, dtype=np.float64)])
        block = max(1, rate * BLOCK_MS // 1000)
        n = len(x) // block
        self._pending = x[n * block :]
        events: list[VadEvent] = []
        if n == 0:
            return events
        levels = np.sqrt(np.mean(np.square(x[: n * block].reshape(n, block)), axis=1))
        dur = block / rate
        for level in levels:
            self._block(float(level), dur, events)
        return events

    def flush(self) -> list[VadEvent]:
        """End a turn in progress now (``audioStreamEnd``)."""
        if self._rate:
            self.time += len(self._pending) / self._rate
        self._pending = np.zeros(0)
        self._run_blocks = 0
        if not self.in_speech:
            return []
        self.in_speech = False
        return [SpeechEnd(self._speech_start, self._last_speech_end, self.time, self._peak, True)]

    def _block(self, level: float, dur: float, events: list[VadEvent]) -> None:
        start = self.time
        self.time = start + dur
        if not self.in_speech:
            if self._run_blocks == 0:
                if level >= self.threshold:
                    self._run_start = start
                    self._run_blocks = 1
                    self._peak = level
            elif level >= self.release:
                self._run_blocks += 1
                self._peak = max(self._peak, level)
            else:
                self._run_blocks = 0
            if self._run_blocks >= self.prefix_blocks:
                self.in_speech = True
                self._run_blocks = 0
                self._speech_start = self._run_start
                self._last_speech_end = self.time
                self._silent_blocks = 0
                events.append(SpeechStart(self._speech_start, self.time))
            return
        if level >= self.release:
            self._last_speech_end = self.time
            self._silent_blocks = 0
            self._peak = max(self._peak, level)
            return
        self._silent_blocks += 1
        if self._silent_blocks >= self.silence_blocks:
            self.in_speech = False
            events.append(
                SpeechEnd(self._speech_start, self._last_speech_end, self.time, self._peak)
            )
