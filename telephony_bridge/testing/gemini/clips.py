"""The emulated model's voice: recorded lines (:class:`Clip`) read from ``testing/clips/``.

The files are rendered by :mod:`telephony_bridge.testing.render_clips` (raw PCM16 LE mono,
24 kHz, plus ``clips.json`` with the words of each line) and shipped as package data.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from .wire import OUTPUT_RATE

CLIPS_DIR = Path(__file__).resolve().parent.parent / "clips"


@dataclass(frozen=True)
class Clip:
    """One recorded line: raw PCM16 LE mono at ``rate`` Hz plus the words it says."""

    id: str
    text: str
    pcm: bytes
    rate: int = OUTPUT_RATE

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / self.rate


@functools.lru_cache(maxsize=8)
def load_clips(directory: str | Path | None = None) -> dict[str, Clip]:
    """Read ``clips.json`` and its ``.pcm`` files (cached per directory)."""
    root = Path(directory) if directory is not None else CLIPS_DIR
    index = json.loads((root / "clips.json").read_text())
    rate = int(index.get("sample_rate", OUTPUT_RATE))
    entries = index.get("clips", index)
    return {
        cid: Clip(cid, entry["text"], (root / entry["file"]).read_bytes(), rate)
        for cid, entry in entries.items()
    }
