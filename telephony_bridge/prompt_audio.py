"""Pre-rendered phrases the bridge plays itself: filler, apology, reconnect, goodbye on error.

Callers don't read error messages, and silence on a phone line sounds like a dropped call, so
the bridge keeps a few short spoken phrases ready to send straight down the line. They are
bundled as raw G.711 μ-law, 8 kHz, mono, no header: exactly a Twilio Media Streams payload,
trimmed of leading and trailing silence and padded with μ-law silence (0xFF) to whole 20 ms
(160-byte) frames, so a clip can be sliced into ``media`` messages without any conversion::

    telephony_bridge/assets/phrases/index.json           lang -> kind -> [{file, text, seconds}]
    telephony_bridge/assets/phrases/<lang>/<kind>_<n>.ulaw

``file`` is relative to ``assets/phrases/``; ``n`` counts from 1. Kinds (:data:`KINDS`):

* ``filler``        several very short phrases ("One moment…"), each at most 1.5 s, played
                    while a slow tool call runs; rotated so the caller does not hear the same
                    one twice in a row.
* ``thinking``      "let me think about that…", at most 1.5 s: the model stalled after the
                    caller's turn and has been nudged (see :mod:`telephony_bridge.call.stall_watch`).
* ``apology``       the model went quiet or misheard: "could you say that again?".
* ``reconnect``     the Gemini connection is being re-established.
* ``goodbye_error`` the call cannot go on; played before hanging up.
* ``busy``          no capacity for the call; played before hanging up.

Languages (:data:`LANGUAGES`): English, Spanish, German, French. A missing language, or a kind
missing in a language, falls back to English.

These clips are the fallback: calls play the same kinds in the agent's own voice and the
caller's language once Gemini TTS has rendered them (:mod:`telephony_bridge.tts_phrases`,
24 languages: :mod:`telephony_bridge.voice_phrases`), and these whenever it has not or cannot.

Runtime needs nothing but the committed files. ``python -m telephony_bridge.prompt_audio
--render`` regenerates them and needs ``espeak-ng`` and ``sox`` (Debian packages of the same
names): espeak-ng speaks each text to a WAV file; sox resamples it to 8 kHz mono, trims the
silence at both ends, fades the edges (no clicks), normalises the peak to -3 dBFS and
encodes μ-law.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

PHRASES_DIR = Path(__file__).resolve().parent / "assets" / "phrases"
INDEX_PATH = PHRASES_DIR / "index.json"

SAMPLE_RATE = 8000
FRAME_BYTES = 160  # 20 ms of μ-law at 8 kHz
ULAW_SILENCE = 0xFF
MAX_FILLER_S = 1.5

KINDS = ("filler", "thinking", "apology", "reconnect", "goodbye_error", "busy")
#: Kinds that fill a gap in the conversation: they must stay short (spoken faster until they fit).
SHORT_KINDS = frozenset({"filler", "thinking"})
LANGUAGES = ("en", "es", "de", "fr")
FALLBACK_LANGUAGE = "en"

# --------------------------------------------------------------------------- texts to render

#: espeak-ng voice per language.
VOICES = {"en": "en-us", "es": "es", "de": "de", "fr": "fr-fr"}
#: Words per minute: fillers a little quicker (they must stay short), the rest at a calm pace.
SPEED = {"filler": 175, "thinking": 175}
DEFAULT_SPEED = 160

# Spanish, German and French use the polite form (usted / Sie / vous): the bridge speaks for a
# service to someone it does not know.
PHRASES: dict[str, dict[str, list[str]]] = {
    "en": {
        "filler": ["One moment…", "Let me look that up…", "Just a second…", "Bear with me…"],
        "thinking": ["Let me think about that…"],
        "apology": ["Sorry, I'm having trouble on my end. Could you say that again?"],
        "reconnect": ["One moment please, the line is reconnecting."],
        "goodbye_error": [
            "I'm sorry, something went wrong on our side. Please call back in a few minutes. Goodbye."
        ],
        "busy": ["Sorry, all our lines are busy right now. Please call back in a few minutes. Goodbye."],
    },
    "es": {
        "filler": ["Un momento…", "Déjeme consultarlo…", "Un segundo…", "Un instante, por favor…"],
        "thinking": ["Déjeme pensarlo…"],
        "apology": ["Disculpe, tengo problemas técnicos por aquí. ¿Podría repetirlo, por favor?"],
        "reconnect": ["Un momento, por favor, la línea se está reconectando."],
        "goodbye_error": [
            "Lo siento, algo ha fallado por nuestra parte. Por favor, vuelva a llamar en unos minutos. Adiós."
        ],
        "busy": [
            "Lo siento, ahora mismo todas las líneas están ocupadas. "
            "Por favor, vuelva a llamar en unos minutos. Adiós."
        ],
    },
    "de": {
        "filler": ["Einen Moment…", "Ich sehe kurz nach…", "Eine Sekunde…", "Einen Augenblick, bitte…"],
        "thinking": ["Lassen Sie mich kurz nachdenken…"],
        "apology": [
            "Entschuldigung, ich habe gerade technische Probleme. Könnten Sie das bitte wiederholen?"
        ],
        "reconnect": ["Einen Moment bitte, die Verbindung wird wiederhergestellt."],
        "goodbye_error": [
            "Es tut mir leid, bei uns ist etwas schiefgelaufen. "
            "Bitte rufen Sie in ein paar Minuten noch einmal an. Auf Wiederhören."
        ],
        "busy": [
            "Es tut mir leid, im Moment sind alle Leitungen besetzt. "
            "Bitte rufen Sie in ein paar Minuten noch einmal an. Auf Wiederhören."
        ],
    },
    "fr": {
        "filler": ["Un instant…", "Je vérifie…", "Une seconde…", "Un petit moment…"],
        "thinking": ["Laissez-moi réfléchir…"],
        "apology": [
            "Désolé, j'ai un problème technique de mon côté. Pourriez-vous répéter, s'il vous plaît ?"
        ],
        "reconnect": ["Un instant, s'il vous plaît, la ligne se reconnecte."],
        "goodbye_error": [
            "Je suis désolé, un problème est survenu de notre côté. "
            "Merci de rappeler dans quelques minutes. Au revoir."
        ],
        "busy": [
            "Désolé, toutes nos lignes sont occupées pour le moment. "
            "Merci de rappeler dans quelques minutes. Au revoir."
        ],
    },
}

# ------------------------------------------------------------------------------- runtime


@dataclass(frozen=True, slots=True)
class Phrase:
    language: str
    kind: str
    text: str
    audio: bytes  # μ-law 8 kHz mono, a whole number of 160-byte frames

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    @property
    def frames(self) -> int:
        return len(self.audio) // FRAME_BYTES


@functools.lru_cache(maxsize=4)
def _index(path: str = str(INDEX_PATH)) -> dict[str, dict[str, list[dict]]]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=16)
def _clips(language: str, kind: str) -> tuple[Phrase, ...]:
    """The phrases of one language and kind, read once per process (empty when not bundled)."""
    entries = _index().get(language, {}).get(kind, [])
    return tuple(
        Phrase(language, kind, e["text"], (PHRASES_DIR / e["file"]).read_bytes()) for e in entries
    )


def resolve_language(language: str | None) -> str:
    """``"es-US"`` → ``"es"``; a language without bundled phrases → ``"en"``."""
    primary = (language or "").split("-", 1)[0].split("_", 1)[0].lower()
    return primary if primary in _index() else FALLBACK_LANGUAGE


class PhraseBook:
    """One call's view of the phrases: a language, and a rotation per kind.

    Cheap to create (the audio is read once per process and shared); make one per call.
    """

    def __init__(self, language: str = "en") -> None:
        self.requested_language = language
        self.language = resolve_language(language)
        self._turn: dict[str, int] = {}

    def _phrases(self, kind: str) -> tuple[Phrase, ...]:
        phrases = _clips(self.language, kind) or _clips(FALLBACK_LANGUAGE, kind)
        if not phrases:
            raise KeyError(f"no phrases of kind {kind!r} (known: {', '.join(KINDS)})")
        return phrases

    def next_phrase(self, kind: str) -> Phrase:
        """The next phrase of ``kind``, rotating through all of them in order."""
        phrases = self._phrases(kind)
        n = self._turn.get(kind, 0)
        self._turn[kind] = n + 1
        return phrases[n % len(phrases)]

    def next(self, kind: str) -> bytes:
        """The next phrase of ``kind`` as μ-law audio (whole 160-byte frames)."""
        return self.next_phrase(kind).audio

    def texts(self, kind: str) -> list[str]:
        """What the phrases of ``kind`` say, in rotation order (for logs and transcripts)."""
        return [p.text for p in self._phrases(kind)]

    def __repr__(self) -> str:
        return f"PhraseBook(language={self.language!r})"


def load_phrase_book(language: str | None = "en") -> PhraseBook:
    return PhraseBook(language or FALLBACK_LANGUAGE)


# ------------------------------------------------------------------------------ rendering


def pad_to_frames(audio: bytes, frame: int = FRAME_BYTES) -> bytes:
    return audio + bytes([ULAW_SILENCE]) * (-len(audio) % frame)


def _spoken(text: str) -> str:
    """The text espeak-ng reads: the ellipsis is for people, not for the synthesiser."""
    return text.replace("…", "").strip()


def render_clip(text: str, voice: str, speed: int, tmp: Path) -> bytes:
    """espeak-ng → WAV → sox (8 kHz mono, trim silence both ends, short fades, -3 dBFS peak, μ-law)."""
    wav, raw = tmp / "speech.wav", tmp / "speech.ulaw"
    _run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), _spoken(text)])
    # -D: no dither, so a re-render on the same tool versions gives identical bytes.
    _run(["sox", "-D", str(wav), "-r", str(SAMPLE_RATE), "-c", "1", "-e", "mu-law", "-b", "8", "-t", "raw",
          str(raw),
          # Trim leading silence and fade in 5 ms; reverse; the same for the (former) end with a
          # 15 ms fade; reverse back. No click where a trim cut, no dead air before the words.
          "silence", "1", "0.01", "0.5%", "fade", "t", "0.005", "reverse",
          "silence", "1", "0.01", "0.5%", "fade", "t", "0.015", "reverse",
          "norm", "-3"])
    return pad_to_frames(raw.read_bytes())


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({done.returncode}): {done.stderr.strip()[:300]}")


def render(out_dir: Path = PHRASES_DIR, languages: tuple[str, ...] = LANGUAGES) -> dict:
    """Render every phrase into ``out_dir`` and write ``index.json``. Needs espeak-ng and sox.

    Everything is rendered into a scratch directory first and moved into place only when all
    clips succeeded, so a failed render never leaves files and index out of step.
    """
    for exe in ("espeak-ng", "sox"):
        if shutil.which(exe) is None:
            raise RuntimeError(f"{exe} is not installed (Debian: apt-get install {exe})")
    index: dict[str, dict[str, list[dict]]] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmpdir, tempfile.TemporaryDirectory(dir=out_dir) as staging:
        tmp, stage = Path(tmpdir), Path(staging)
        for lang in languages:
            (stage / lang).mkdir()
            index[lang] = {}
            for kind in KINDS:
                entries = []
                for n, text in enumerate(PHRASES[lang].get(kind, []), start=1):
                    speed = SPEED.get(kind, DEFAULT_SPEED)
                    audio = render_clip(text, VOICES[lang], speed, tmp)
                    # A filler must stay short: speak faster until it fits.
                    while kind in SHORT_KINDS and len(audio) / SAMPLE_RATE > MAX_FILLER_S and speed < 260:
                        speed += 15
                        audio = render_clip(text, VOICES[lang], speed, tmp)
                    name = f"{kind}_{n}.ulaw"
                    (stage / lang / name).write_bytes(audio)
                    entries.append({"file": f"{lang}/{name}", "text": text,
                                    "seconds": round(len(audio) / SAMPLE_RATE, 3)})
                if entries:
                    index[lang][kind] = entries
        index_path = out_dir / "index.json"
        if index_path.exists():  # keep languages that were not re-rendered this time
            kept = json.loads(index_path.read_text(encoding="utf-8"))
            index = {**{k: v for k, v in kept.items() if k not in index}, **index}
        for lang in languages:
            target = out_dir / lang
            if target.exists():
                shutil.rmtree(target)
            (stage / lang).rename(target)
        index = {lang: index[lang] for lang in sorted(index, key=lambda x: (x != "en", x))}
        index_path.write_text(json.dumps(index, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pre-rendered phrases the bridge plays itself.")
    parser.add_argument("--render", action="store_true",
                        help="regenerate the clips with espeak-ng and sox (otherwise list them)")
    parser.add_argument("--out", type=Path, default=PHRASES_DIR, help="output directory")
    parser.add_argument("--lang", action="append", choices=LANGUAGES,
                        help="render only this language (repeatable)")
    args = parser.parse_args(argv)
    if args.render:
        index = render(args.out, tuple(args.lang or LANGUAGES))
    else:
        index = json.loads((args.out / "index.json").read_text(encoding="utf-8"))
    for lang, kinds in index.items():
        for kind, entries in kinds.items():
            for e in entries:
                print(f"{lang}  {kind:<13} {e['seconds']:5.2f} s  {e['file']:<26} {e['text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
