"""The emulator's energy VAD (telephony_bridge/testing/gemini/vad.py), fed arrays: no sockets."""

from __future__ import annotations

import numpy as np
import pytest

from telephony_bridge.testing.gemini.vad import EnergyVAD, SpeechEnd, SpeechStart


def tone(seconds: float, amplitude: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return amplitude * np.sqrt(2) * np.sin(2 * np.pi * 220 * t)  # RMS = amplitude


def test_vad_finds_a_turn_with_exact_times():
    vad = EnergyVAD(silence_duration_ms=300)
    x = np.concatenate([np.zeros(8000), tone(1.0, 0.1), np.zeros(16000)])
    events = []
    for i in range(0, len(x), 333):  # odd chunk sizes: blocks span chunks
        events += vad.feed(x[i : i + 333], 16000)
    assert len(events) == 2
    start, end = events
    assert isinstance(start, SpeechStart) and start.start == pytest.approx(0.5)
    assert start.committed_at == pytest.approx(0.54)
    assert isinstance(end, SpeechEnd)
    assert end.end == pytest.approx(1.5) and end.committed_at == pytest.approx(1.8)
    assert end.peak_rms == pytest.approx(0.1, rel=0.02)


def test_vad_ignores_background_and_clicks():
    rng = np.random.default_rng(1)
    vad = EnergyVAD(silence_duration_ms=200)
    noise = rng.normal(0, 0.015, 16000 * 3)
    click = np.concatenate([np.zeros(1600), tone(0.02, 0.5), np.zeros(1600)])
    assert vad.feed(noise, 16000) == []
    assert vad.feed(click, 16000) == []  # shorter than prefixPaddingMs (40 ms)
    assert vad.flush() == []


def test_vad_hangover_bridges_short_pauses():
    vad = EnergyVAD(silence_duration_ms=500)
    x = np.concatenate([tone(0.5, 0.1), np.zeros(3840), tone(0.5, 0.1), np.zeros(16000)])
    events = vad.feed(x, 16000)
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]
    assert events[1].end == pytest.approx(1.24)
