"""telephony_bridge.dsp: codec, converters, framer, level meters.

Reference values come from ``audioop`` (the G.711 reference in CPython) and
from a direct ``numpy.convolve`` of the whole signal with the designed taps,
which shares no code with the streaming polyphase path under test.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from telephony_bridge.dsp import (
    ULAW_SILENCE,
    Framer,
    InboundConverter,
    OutboundConverter,
    pcm16_to_ulaw,
    rms_pcm16,
    mean_square_ulaw,
    rms_ulaw,
    ulaw_to_pcm16,
)
from telephony_bridge.dsp.resample import INBOUND_FILTER, OUTBOUND_FILTER

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop


# ---------------------------------------------------------------- helpers


def tone(freq: float, rate: int, seconds: float, amplitude: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def pcm(x: np.ndarray) -> bytes:
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


def samples(b: bytes) -> np.ndarray:
    return np.frombuffer(b, "<i2").astype(np.float64)


def ulaw_samples(b: bytes) -> np.ndarray:
    return samples(ulaw_to_pcm16(b))


def round_sat(y: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(y + 0.5), -32768, 32767).astype(np.int16)


def reference_inbound(ulaw: bytes) -> bytes:
    """Zero-stuff to 16 kHz and convolve with the whole prototype filter."""
    x = ulaw_samples(ulaw)
    up = np.zeros(2 * len(x))
    up[::2] = x
    y = np.convolve(up, INBOUND_FILTER.taps)[: len(up)]
    return round_sat(y).astype("<i2").tobytes()


def reference_outbound(pcm_bytes: bytes, tail: bool = False) -> bytes:
    """Convolve at 24 kHz, keep every third sample (the newest of each group)."""
    x = samples(pcm_bytes[: len(pcm_bytes) // 2 * 2])
    h = OUTBOUND_FILTER.taps
    full = np.convolve(x, h)
    n_out = len(x) // 3
    if tail:
        n_out = -(-(len(x) + len(h) - 1) // 3)
        full = np.concatenate([full, np.zeros(3 * n_out - len(full) + 3)])
    y = full[2 : 3 * n_out : 3]
    return pcm16_to_ulaw(round_sat(y).astype("<i2").tobytes())


def band_energy_db(x: np.ndarray, rate: int, lo: float, hi: float) -> float:
    """Energy in [lo, hi] Hz relative to total energy, dB (Hann window)."""
    w = np.hanning(len(x))
    spec = np.abs(np.fft.rfft(x * w)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    band = spec[(f >= lo) & (f <= hi)].sum()
    return 10 * math.log10(band / spec.sum() + 1e-30)


def fitted_gain_db(y: np.ndarray, freq: float, rate: int, amplitude: float) -> float:
    t = np.arange(len(y)) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    return 20 * math.log10(math.hypot(*coef) / amplitude)


rng = np.random.default_rng(20240607)
NOISE_ULAW = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
SPEECHY_PCM24 = pcm(
    tone(440, 24000, 0.5, 9000) + tone(2900, 24000, 0.5, 4000) + rng.normal(0, 1500, 12000)
)


# ---------------------------------------------------------------- codec


def test_ulaw_decode_bit_exact_with_audioop_for_all_codes():
    codes = bytes(range(256))
    assert ulaw_to_pcm16(codes) == audioop.ulaw2lin(codes, 2)


def test_ulaw_encode_bit_exact_with_audioop_for_all_samples():
    every = np.arange(-32768, 32768, dtype="<i2").tobytes()
    assert pcm16_to_ulaw(every) == audioop.lin2ulaw(every, 2)


def test_codec_known_values():
    assert ULAW_SILENCE == 0xFF
    assert ulaw_to_pcm16(bytes([0xFF, 0x7F, 0x80, 0x00])) == np.array(
        [0, 0, 32124, -32124], "<i2"
    ).tobytes()
    assert pcm16_to_ulaw(np.array([0, 32767, -32768], "<i2").tobytes()) == bytes([0xFF, 0x80, 0x00])
    assert ulaw_to_pcm16(b"") == b"" and pcm16_to_ulaw(b"") == b""


def test_pcm16_to_ulaw_ignores_trailing_half_sample():
    data = np.array([1000, -1000], "<i2").tobytes()
    assert pcm16_to_ulaw(data + b"\x7f") == pcm16_to_ulaw(data)


def test_roundtrip_ulaw_pcm_ulaw_is_identity_except_negative_zero():
    codes = bytes(range(256))
    back = pcm16_to_ulaw(ulaw_to_pcm16(codes))
    expected = bytes(0xFF if c == 0x7F else c for c in codes)  # -0 re-encodes as +0
    assert back == expected


# ---------------------------------------------------------------- level meters


def test_rms_pcm16_known_signals():
    assert rms_pcm16(b"") == 0.0
    assert rms_pcm16(b"\x01") == 0.0
    assert rms_pcm16(np.zeros(160, "<i2").tobytes()) == 0.0
    square = np.tile(np.array([16384, -16384], "<i2"), 80).tobytes()
    assert rms_pcm16(square) == pytest.approx(0.5, abs=1e-12)
    sine = pcm(tone(1000, 8000, 1.0, 16384))
    assert rms_pcm16(sine) == pytest.approx(0.5 / math.sqrt(2), rel=1e-4)
    assert rms_pcm16(square + b"\x00") == rms_pcm16(square)


def test_rms_ulaw_known_signals():
    assert rms_ulaw(b"") == 0.0
    assert rms_ulaw(bytes([ULAW_SILENCE]) * 160) == 0.0
    assert rms_ulaw(bytes([0x80, 0x00]) * 80) == pytest.approx(32124 / 32768, abs=1e-12)
    sine = pcm16_to_ulaw(pcm(tone(1000, 8000, 1.0, 16384)))
    assert rms_ulaw(sine) == pytest.approx(0.5 / math.sqrt(2), rel=0.01)


def test_rms_ulaw_matches_rms_of_decoded_audio():
    # audioop's integer RMS on 32-bit samples: truncated at 1 part in 2**31 of full scale
    exact = rms_pcm16(ulaw_to_pcm16(NOISE_ULAW))
    assert 0 <= exact - rms_ulaw(NOISE_ULAW) <= 2**-31
    assert mean_square_ulaw(NOISE_ULAW) == pytest.approx(exact**2, rel=1e-8)


def test_speech_gate_threshold_scale():
    # design.md: voice above 0.05, background 0.01-0.02 (full scale 1.0)
    quiet = pcm16_to_ulaw(pcm(tone(300, 8000, 0.02, 0.015 * 32768 * math.sqrt(2))))
    loud = pcm16_to_ulaw(pcm(tone(300, 8000, 0.02, 0.1 * 32768 * math.sqrt(2))))
    assert rms_ulaw(quiet) < 0.05 < rms_ulaw(loud)


# ---------------------------------------------------------------- inbound


def test_inbound_output_length_is_four_bytes_per_input_byte():
    conv = InboundConverter()
    for n in (0, 1, 2, 159, 160, 161, 1000):
        assert len(conv.convert(NOISE_ULAW[:n])) == 4 * n


def test_inbound_matches_direct_convolution():
    assert InboundConverter().convert(NOISE_ULAW) == reference_inbound(NOISE_ULAW)


@pytest.mark.parametrize("size", [1, 7, 160, 333])
def test_inbound_streaming_equals_one_shot(size):
    whole = InboundConverter().convert(NOISE_ULAW)
    conv = InboundConverter()
    parts = [conv.convert(NOISE_ULAW[i : i + size]) for i in range(0, len(NOISE_ULAW), size)]
    assert b"".join(parts) == whole


def test_inbound_keeps_tone_and_suppresses_images():
    x = tone(1000, 8000, 1.0, 10000)
    y = samples(InboundConverter().convert(pcm16_to_ulaw(pcm(x))))[400:]
    assert abs(fitted_gain_db(y, 1000, 16000, 10000)) < 0.1
    assert band_energy_db(y, 16000, 4600, 8000) < -60


def test_inbound_reset_leaves_no_trace():
    fresh = InboundConverter().convert(NOISE_ULAW[:800])
    conv = InboundConverter()
    conv.convert(bytes([0x80]) * 500)  # loud previous turn
    conv.reset()
    assert conv.convert(NOISE_ULAW[:800]) == fresh


def test_inbound_flush_returns_filter_tail():
    conv = InboundConverter()
    body = conv.convert(NOISE_ULAW[:500])
    tail = conv.flush()
    k = INBOUND_FILTER.phases.shape[0]
    assert len(tail) == 4 * (k - 1)
    padded = NOISE_ULAW[:500] + bytes([ULAW_SILENCE]) * (k - 1)
    assert body + tail == reference_inbound(padded)
    assert any(tail)  # the tail of noise is not silence
    assert conv.flush() == b""
    assert InboundConverter().flush() == b""


def test_inbound_full_scale_square_clips_instead_of_wrapping():
    square = (bytes([0x80]) * 8 + bytes([0x00]) * 8) * 50  # ±32124, 500 Hz
    out = samples(InboundConverter().convert(square))
    up = np.zeros(2 * len(square))
    up[::2] = ulaw_samples(square)
    exact = np.convolve(up, INBOUND_FILTER.taps)[: len(up)]
    assert exact.max() > 32767 and exact.min() < -32768  # the filter does overshoot
    assert np.all(out[exact > 32767] == 32767)
    assert np.all(out[exact < -32768] == -32768)
    assert np.all(np.sign(out[np.abs(exact) > 1000]) == np.sign(exact[np.abs(exact) > 1000]))


# ---------------------------------------------------------------- outbound


def test_outbound_gemini_chunk_gives_exact_frame_count():
    conv = OutboundConverter()
    chunk = SPEECHY_PCM24[:1920]  # 40 ms at 24 kHz
    assert len(conv.convert(chunk)) == 320  # two Twilio frames


def test_outbound_length_tracks_total_samples():
    conv = OutboundConverter()
    total_bytes = 0
    produced = 0
    for size in (1, 2, 3, 5, 6, 7, 1920, 11, 4):
        produced += len(conv.convert(SPEECHY_PCM24[total_bytes : total_bytes + size]))
        total_bytes += size
        assert produced == (total_bytes // 2) // 3


def test_outbound_matches_direct_convolution():
    assert OutboundConverter().convert(SPEECHY_PCM24) == reference_outbound(SPEECHY_PCM24)


@pytest.mark.parametrize("size", [1, 3, 5, 1920, 1921])
def test_outbound_streaming_equals_one_shot_including_odd_bytes(size):
    whole = OutboundConverter().convert(SPEECHY_PCM24)
    conv = OutboundConverter()
    parts = [conv.convert(SPEECHY_PCM24[i : i + size]) for i in range(0, len(SPEECHY_PCM24), size)]
    assert b"".join(parts) == whole


def test_outbound_odd_byte_is_kept_for_next_call():
    data = SPEECHY_PCM24[:2000]
    conv = OutboundConverter()
    a = conv.convert(data[:999])
    b = conv.convert(data[999:])
    assert a + b == OutboundConverter().convert(data)


def test_outbound_keeps_tone_and_suppresses_out_of_band():
    x = tone(1013, 24000, 1.0, 10000)
    y = ulaw_samples(OutboundConverter().convert(pcm(x)))[200:]
    assert abs(fitted_gain_db(y, 1013, 8000, 10000)) < 0.1
    for f in (4700, 6000, 8000, 9500, 11000):
        hot = pcm(tone(f, 24000, 0.5, 30000))
        leak = ulaw_samples(OutboundConverter().convert(hot))[100:]
        level_db = 20 * math.log10(np.sqrt(np.mean(leak**2)) / (30000 / math.sqrt(2)) + 1e-12)
        assert level_db < -60, (f, level_db)


def test_outbound_reset_leaves_no_trace_including_odd_byte():
    fresh = OutboundConverter().convert(SPEECHY_PCM24[:3000])
    conv = OutboundConverter()
    conv.convert(pcm(np.full(1001, 30000.0)) + b"\x55")  # loud turn, 2 pending samples, odd byte
    conv.reset()
    assert conv.convert(SPEECHY_PCM24[:3000]) == fresh
    assert conv.flush() != b""


def test_outbound_flush_returns_held_tail():
    data = SPEECHY_PCM24[: 2 * 1001]  # 1001 samples: 333 outputs, 2 samples pending
    conv = OutboundConverter()
    body = conv.convert(data)
    tail = conv.flush()
    assert len(body) == 333
    assert body + tail == reference_outbound(data, tail=True)
    assert len(tail) == -(-(2 + OUTBOUND_FILTER.length - 1) // 3)
    assert conv.flush() == b""
    assert conv.convert(data) == body  # flush also resets
    assert OutboundConverter().flush() == b""


def test_outbound_full_scale_square_clips_instead_of_wrapping():
    period = np.where((np.arange(48) < 24), 32767.0, -32768.0)  # 500 Hz at 24 kHz
    x = np.tile(period, 40)
    out = ulaw_samples(OutboundConverter().convert(pcm(x)))
    exact = np.convolve(x, OUTBOUND_FILTER.taps)[2 : 3 * len(out) : 3]
    assert exact.max() > 32767 and exact.min() < -32768  # the filter does overshoot
    assert np.all(out[exact > 32767] == 32124)  # top μ-law code, not a wrapped negative
    assert np.all(out[exact < -32768] == -32124)
    assert np.all(np.sign(out[np.abs(exact) > 1000]) == np.sign(exact[np.abs(exact) > 1000]))


def test_converters_do_not_share_state():
    a, b = OutboundConverter(), OutboundConverter()
    a.convert(pcm(np.full(300, 30000.0)))
    assert b.convert(SPEECHY_PCM24[:600]) == OutboundConverter().convert(SPEECHY_PCM24[:600])
    c, d = InboundConverter(), InboundConverter()
    c.convert(bytes([0x80]) * 100)
    assert d.convert(NOISE_ULAW[:100]) == InboundConverter().convert(NOISE_ULAW[:100])


# ---------------------------------------------------------------- framer


def test_framer_cuts_exact_frames_and_holds_remainder():
    fr = Framer()
    assert fr.push(b"\x01" * 100) == []
    assert fr.pending == b"\x01" * 100
    frames = fr.push(b"\x02" * 400)
    assert [len(f) for f in frames] == [160, 160, 160]
    assert frames[0] == b"\x01" * 100 + b"\x02" * 60
    assert fr.pending == b"\x02" * 20


def test_framer_flush_pads_with_silence():
    fr = Framer()
    fr.push(b"\x10" * 170)
    tail = fr.flush()
    assert tail == b"\x10" * 10 + bytes([ULAW_SILENCE]) * 150
    assert fr.pending == b"" and fr.flush() is None


def test_framer_flush_without_padding_and_reset():
    fr = Framer(frame_bytes=4)
    fr.push(b"abcdef")
    assert fr.flush(pad=False) == b"ef"
    fr.push(b"xyz")
    fr.reset()
    assert fr.pending == b"" and fr.flush() is None
    assert fr.push(b"1234") == [b"1234"]


def test_framer_rejects_bad_size():
    with pytest.raises(ValueError):
        Framer(0)


# ---------------------------------------------------------------- filter design invariants


def test_taps_are_dyadic_and_branches_have_exact_unity_gain():
    # The byte-exact streaming argument rests on these two facts.
    for filt, branches in ((INBOUND_FILTER, 2), (OUTBOUND_FILTER, 1)):
        scaled = filt.taps * (1 << 24)
        assert np.array_equal(scaled, np.round(scaled))
        for p in range(branches):
            assert filt.taps[p::branches].sum() == 1.0


def test_filters_are_minimum_phase_and_reject_out_of_band():
    import scipy.signal as ss

    for filt, fs in ((INBOUND_FILTER, 16000), (OUTBOUND_FILTER, 24000)):
        # minimum phase: energy up front; a linear-phase filter this long centres at (N-1)/2
        e = filt.taps**2
        centroid_ms = (np.arange(len(e)) * e).sum() / e.sum() / fs * 1000
        assert centroid_ms < 0.4 < (len(filt.taps) - 2) / 2 / fs * 1000
        w, h = ss.freqz(filt.taps, worN=8192, fs=fs)
        mag = 20 * np.log10(np.abs(h) / np.abs(h[0]) + 1e-12)
        assert mag[w >= 4600].max() < -65
        band = mag[(w >= 300) & (w <= 3300)]
        assert band.max() - band.min() < 0.1


def test_big_chunks_grow_buffers_without_changing_output():
    big = pcm(tone(700, 24000, 2.0, 12000) + rng.normal(0, 800, 48000))
    whole = OutboundConverter().convert(big)
    conv = OutboundConverter()
    parts = [conv.convert(big[:10]), conv.convert(big[10:90001]), conv.convert(big[90001:])]
    assert b"".join(parts) == whole
    ulaw = pcm16_to_ulaw(big)  # 96 000 bytes: far past the inbound work buffer
    conv_in = InboundConverter()
    assert conv_in.convert(ulaw[:5]) + conv_in.convert(ulaw[5:]) == reference_inbound(ulaw)
