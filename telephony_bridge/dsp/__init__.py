"""Audio for the phone line: G.711 μ-law, streaming resamplers, framing, level meters.

Pure functions and small stateful objects, no I/O. Other packages use:

- :class:`InboundConverter`   Twilio μ-law 8 kHz → Gemini PCM16 LE 16 kHz.
- :class:`OutboundConverter`  Gemini PCM16 LE 24 kHz → Twilio μ-law 8 kHz
  (``flush`` at the end of a turn, ``reset`` on barge-in).
- :class:`Framer`             μ-law stream → exact 160-byte (20 ms) frames.
- :func:`ulaw_to_pcm16`, :func:`pcm16_to_ulaw`, :data:`ULAW_SILENCE`  the codec.
- :func:`rms_ulaw`, :func:`rms_pcm16`  RMS on full scale 1.0; :func:`mean_square_ulaw` its square.

Design notes and measured figures live in the module docstrings
(:mod:`.resample` for the filters) and ``benchmarks/dsp-latest.txt``.
"""

from .converters import InboundConverter, OutboundConverter
from .framer import Framer
from .level import mean_square_ulaw, rms_pcm16, rms_ulaw
from .mulaw import ULAW_SILENCE, pcm16_to_ulaw, ulaw_to_pcm16

__all__ = [
    "InboundConverter",
    "OutboundConverter",
    "Framer",
    "ULAW_SILENCE",
    "pcm16_to_ulaw",
    "ulaw_to_pcm16",
    "rms_pcm16",
    "rms_ulaw",
    "mean_square_ulaw",
]
