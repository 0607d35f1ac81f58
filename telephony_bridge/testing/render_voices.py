"""Render the emulator's panel voices: one small clip set per prebuilt voice name.

A panel call switches Gemini sessions, each with its own ``voiceName``; the emulator speaks each
session's lines from that voice's clip set (``testing/clips/voices/<Voice>/``, the same format as
``testing/clips/``: raw PCM16 LE 24 kHz mono plus ``clips.json``), rendered with a different
espeak-ng voice so a listener, or a test comparing spectra, can tell them apart. Ids not in a
voice's set fall back to the default clips (:meth:`GeminiEmulator.clips_for`).

``python -m telephony_bridge.testing.render_voices`` regenerates them (needs espeak-ng).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .render_clips import CLIP_RATE, CLIPS_DIR, espeak

VOICES_DIR = CLIPS_DIR / "voices"

#: voice name -> (espeak-ng voice, words per minute, {clip id: text}). The scripted founder panel:
#: Sam (Charon, the default clip voice) hands to Priya (Kore), who hands to Leo (Puck).
PANEL_VOICES: dict[str, tuple[str, int, dict[str, str]]] = {
    "Charon": ("en-us+f3", 165, {
        "handoff_sam": "Thank you. Priya will take it from here.",
    }),
    "Kore": ("en-gb+f4", 170, {
        "intro_priya": "Hi, I'm Priya, I look after product. How does it work when a slot opens?",
        "handoff_priya": "Thanks, that's clear. Leo takes over now.",
    }),
    "Puck": ("en-us+m7", 170, {
        "intro_leo": "Hello, I'm Leo, for go to market. How will you make money?",
        "q_why_now_leo": "And why is now the right time?",
        "goodbye_leo": "Thank you, that was really helpful. Good luck. Goodbye!",
    }),
}


def render(out_dir: Path = VOICES_DIR) -> dict[str, dict]:
    out = {}
    for voice, (espeak_voice, speed, lines) in PANEL_VOICES.items():
        folder = out_dir / voice
        folder.mkdir(parents=True, exist_ok=True)
        clips = {}
        for clip_id, text in lines.items():
            pcm = espeak(text, espeak_voice, speed, CLIP_RATE)
            (folder / f"{clip_id}.pcm").write_bytes(pcm.astype("<i2").tobytes())
            clips[clip_id] = {"text": text, "file": f"{clip_id}.pcm", "seconds": round(len(pcm) / CLIP_RATE, 3)}
        index = {"format": "pcm_s16le", "sample_rate": CLIP_RATE, "channels": 1,
                 "voice": f"espeak-ng -v {espeak_voice} -s {speed}", "clips": clips}
        (folder / "clips.json").write_text(json.dumps(index, indent=2) + "\n")
        out[voice] = index
    return out


def main() -> int:
    for voice, index in render().items():
        secs = sum(c["seconds"] for c in index["clips"].values())
        print(f"{voice}: {len(index['clips'])} clips, {secs:.1f} s ({index['voice']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
