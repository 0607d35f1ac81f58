"""Render the emulator's speech clips and the bundled founder recording.

Run ``python -m telephony_bridge.testing.render_clips`` to regenerate:

* ``telephony_bridge/testing/clips/*.pcm`` + ``clips.json``: the interviewer's lines
  (what the emulated Gemini model "says"), raw PCM16 little-endian, 24 kHz, mono, which is
  exactly what Gemini Live streams in ``serverContent.modelTurn.parts[].inlineData``.
* ``telephony_bridge/assets/founder/turnN.ulaw`` + ``turns.json``: the caller side for the
  demo and the end-to-end tests, raw G.711 μ-law, 8 kHz, mono (no header), which is what
  Twilio Media Streams carries.

Only this script needs ``espeak-ng`` (Debian package ``espeak-ng``); tests and runtime read
the committed files. The output of espeak-ng is resampled with scipy (polyphase), trimmed to
50 ms of silence at each end and normalised to a fixed peak, so re-rendering on another machine
gives near-identical files.

The module also holds the tiny G.711 μ-law codec used for the founder files (``ulaw_encode`` /
``ulaw_decode``); it needs numpy only, so tests may import it without espeak-ng.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from math import gcd
from pathlib import Path

import numpy as np

logger = logging.getLogger("telephony_bridge.emulator.render")

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # telephony_bridge/
CLIPS_DIR = PACKAGE_DIR / "testing" / "clips"
FOUNDER_DIR = PACKAGE_DIR / "assets" / "founder"

CLIP_RATE = 24000
FOUNDER_RATE = 8000

AGENT_VOICE = "en-us+f3"
AGENT_SPEED = 165
FOUNDER_VOICE = "en-gb+m3"
FOUNDER_SPEED = 170

# id -> text. The order here is the order of clips.json.
AGENT_LINES: dict[str, str] = {
    "greeting": (
        "Hi, thanks for calling. I'd love to hear about your startup idea. "
        "What problem are you solving?"
    ),
    "q_customer": "Interesting. Who exactly is your customer, and how do they handle this today?",
    "q_competition": "Who else is trying to solve this, and why will you win?",
    "q_business_model": "How will you make money? Who pays, and how much?",
    "q_why_now": "Why is now the right time for this?",
    "q_traction": "Do you have any early customers, or proof that people want this?",
    "q_risk": "What is the biggest risk that could kill the idea?",
    "tool_ack": "Thanks, I've saved your notes. Let's keep going.",
    # A non-blocking call: the model keeps going while the tool runs (Gemini 3.8), and a model
    # that speaks its own fillers (3.8 extended thinking) while a slow one is still out.
    "tool_wait": "Let me look that up while we talk.",
    "tool_filler": "Still checking, one moment.",
    "goodbye": "Thank you, that was really helpful. Good luck with your startup. Goodbye!",
}

# The founder pitches an invented startup; turn N answers the agent's Nth question in the
# default scenario (greeting, q_customer, q_competition, q_business_model, q_why_now).
FOUNDER_LINES: list[str] = [
    "We're building ChairTime. It fills last minute cancellations at dental clinics automatically.",
    "Our customers are small dental practices, with one busy front desk.",
    "Practice software can book visits, but nobody texts the wait list the moment a slot opens.",
    "Clinics pay two hundred dollars a month, and one filled slot covers that.",
    "Patients now expect to book by text, and clinics can't hire more staff.",
]

EDGE_SILENCE_S = 0.05
PEAK = 0.7  # normalised peak, full scale 1.0 (about -3 dBFS)


# --------------------------------------------------------------------------- G.711 μ-law

_ULAW_BIAS = 0x84
_ULAW_CLIP = 32635


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """Encode int16 samples to G.711 μ-law bytes (ITU-T G.711, the 0x84-bias form)."""
    x = np.asarray(pcm, dtype=np.int32)
    sign = np.where(x < 0, 0x80, 0x00)
    mag = np.minimum(np.abs(x), _ULAW_CLIP) + _ULAW_BIAS
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    byte = ~(sign | (exponent << 4) | mantissa) & 0xFF
    return byte.astype(np.uint8).tobytes()


def _ulaw_table() -> np.ndarray:
    b = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = b & 0x80
    exponent = (b >> 4) & 0x07
    mantissa = b & 0x0F
    mag = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(sign != 0, -mag, mag).astype(np.int16)


_ULAW_DECODE = _ulaw_table()


def ulaw_decode(data: bytes) -> np.ndarray:
    """Decode G.711 μ-law bytes to int16 samples."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


# --------------------------------------------------------------------------- rendering


def _resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    from scipy.signal import resample_poly

    g = gcd(rate_in, rate_out)
    return resample_poly(x, rate_out // g, rate_in // g)


def _trim_and_normalise(x: np.ndarray, rate: int) -> np.ndarray:
    """Keep EDGE_SILENCE_S around the speech and scale to PEAK."""
    level = np.abs(x)
    loud = np.nonzero(level > 0.01 * level.max())[0]
    edge = int(EDGE_SILENCE_S * rate)
    if len(loud):
        x = x[max(0, loud[0] - edge) : min(len(x), loud[-1] + 1 + edge)]
    peak = float(np.abs(x).max()) or 1.0
    return x * (PEAK / peak)


def espeak(text: str, voice: str, speed: int, rate_out: int) -> np.ndarray:
    """Speak ``text`` with espeak-ng; return int16 samples at ``rate_out``."""
    from scipy.io import wavfile

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "out.wav"
        subprocess.run([exe, "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True)
        rate_in, data = wavfile.read(wav)
    x = data.astype(np.float64)
    if x.ndim > 1:
        x = x.mean(axis=1)
    x /= 32768.0
    x = _resample(x, rate_in, rate_out)
    x = _trim_and_normalise(x, rate_out)
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def render_agent_clips(out_dir: Path = CLIPS_DIR) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    clips = {}
    for clip_id, text in AGENT_LINES.items():
        pcm = espeak(text, AGENT_VOICE, AGENT_SPEED, CLIP_RATE)
        name = f"{clip_id}.pcm"
        (out_dir / name).write_bytes(pcm.astype("<i2").tobytes())
        clips[clip_id] = {"text": text, "file": name, "seconds": round(len(pcm) / CLIP_RATE, 3)}
        logger.info("clip %s: %.2f s", clip_id, len(pcm) / CLIP_RATE)
    index = {
        "format": "pcm_s16le",
        "sample_rate": CLIP_RATE,
        "channels": 1,
        "voice": f"espeak-ng -v {AGENT_VOICE} -s {AGENT_SPEED}",
        "clips": clips,
    }
    (out_dir / "clips.json").write_text(json.dumps(index, indent=2) + "\n")
    return index


def render_founder(out_dir: Path = FOUNDER_DIR) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    turns = []
    for n, text in enumerate(FOUNDER_LINES, start=1):
        pcm = espeak(text, FOUNDER_VOICE, FOUNDER_SPEED, FOUNDER_RATE)
        name = f"turn{n}.ulaw"
        (out_dir / name).write_bytes(ulaw_encode(pcm))
        turns.append({"file": name, "text": text, "seconds": round(len(pcm) / FOUNDER_RATE, 3)})
        logger.info("founder %s: %.2f s", name, len(pcm) / FOUNDER_RATE)
    index = {
        "format": "mulaw",
        "sample_rate": FOUNDER_RATE,
        "channels": 1,
        "voice": f"espeak-ng -v {FOUNDER_VOICE} -s {FOUNDER_SPEED}",
        "turns": turns,
    }
    (out_dir / "turns.json").write_text(json.dumps(index, indent=2) + "\n")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips-dir", type=Path, default=CLIPS_DIR)
    parser.add_argument("--founder-dir", type=Path, default=FOUNDER_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    agent = render_agent_clips(args.clips_dir)
    founder = render_founder(args.founder_dir)
    total = sum((args.clips_dir / c["file"]).stat().st_size for c in agent["clips"].values())
    print(f"{len(agent['clips'])} clips, {total / 1e6:.2f} MB -> {args.clips_dir}")
    print(f"{len(founder['turns'])} founder turns -> {args.founder_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
