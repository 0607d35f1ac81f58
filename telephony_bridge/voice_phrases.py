"""Phrases in the agent's voice and the caller's language: the table, TTS, language detection.

The table (``assets/phrase_table.tsv``: language, kind, text, back_translation) has every kind in
:data:`KINDS` for each of the 24 languages the native-audio Live models list
(:data:`LIVE_LANGUAGES`, Vertex AI "Configure language and voice"). Each text is short enough to
say in under 1.5 s (tests/test_voice_phrases.py renders every row with espeak-ng to check) and
carries an English back-translation so a reviewer who does not read the language can check it.

TTS: :func:`tts_request` is the ``generateContent`` body for a Gemini TTS model
(:data:`TTS_MODEL`): ``generationConfig.responseModalities ["AUDIO"]`` and
``speechConfig.voiceConfig.prebuiltVoiceConfig.voiceName`` (the agent's Live voice: the TTS
models take the same 30 prebuilt voices). :func:`tts_audio` reads the answer's
``candidates[0].content.parts[].inlineData``: raw PCM16 LE (``audio/L16;codec=pcm;rate=24000``,
the 2.5/3.1 models) or a WAV file (the 3.8 models), and :func:`line_ulaw` makes it line-ready:
resampled to 8 kHz with the bridge's own outbound filter (dsp/), μ-law, whole 20 ms frames.

Caller language with ``language = "auto"``: :func:`detect_language` on the first input
transcription. Chosen for being small and explainable rather than a model: the script decides
where it is unique to one listed language (Thai, Korean, Japanese kana/kanji, Bengali, Tamil,
Telugu, Arabic; Devanagari → Hindi or Marathi by marker words; Cyrillic → Ukrainian if і/ї/є/ґ,
else Russian), and for Latin script a count of each language's commonest short words decides
(ties and nothing found: None, the persona's default stays). Three words are usually enough.
"""

from __future__ import annotations

import base64
import csv
import functools
import io
import re
import wave
from pathlib import Path
from typing import Any

from .dsp import OutboundConverter

TABLE_PATH = Path(__file__).resolve().parent / "assets" / "phrase_table.tsv"
#: The current Gemini TTS model recommended for voice agents (Google: "Gemini 3.8 Flash-Lite
#: TTS ... recommended replacement for gemini-3.1-flash-tts-preview ... conversational voice
#: agent cascades").
TTS_MODEL = "gemini-3.8-flash-lite-tts"
TTS_RATE = 24000
MAX_PHRASE_S = 1.5
KINDS = ("filler", "one_moment", "apology", "busy")

#: The Live API's 24 languages (BCP-47) for the native-audio models.
LIVE_LANGUAGES = (
    "ar-EG", "bn-BD", "de-DE", "en-IN", "en-US", "es-US", "fr-FR", "hi-IN", "id-ID", "it-IT", "ja-JP",
    "ko-KR", "mr-IN", "nl-NL", "pl-PL", "pt-BR", "ro-RO", "ru-RU", "ta-IN", "te-IN", "th-TH", "tr-TR",
    "uk-UA", "vi-VN",
)

#: espeak-ng voice per language (the fallback clips, and the tests' length check).
ESPEAK_VOICES = {
    "ar-EG": "ar", "bn-BD": "bn", "de-DE": "de", "en-IN": "en-gb", "en-US": "en-us", "es-US": "es-419",
    "fr-FR": "fr-fr", "hi-IN": "hi", "id-ID": "id", "it-IT": "it", "ja-JP": "ja", "ko-KR": "ko",
    "mr-IN": "mr", "nl-NL": "nl", "pl-PL": "pl", "pt-BR": "pt-br", "ro-RO": "ro", "ru-RU": "ru",
    "ta-IN": "ta", "te-IN": "te", "th-TH": "th", "tr-TR": "tr", "uk-UA": "uk", "vi-VN": "vi",
}


@functools.lru_cache(maxsize=1)
def phrase_table(path: str = str(TABLE_PATH)) -> dict[str, dict[str, tuple[str, str]]]:
    """language -> kind -> (text, back_translation)."""
    out: dict[str, dict[str, tuple[str, str]]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            out.setdefault(row["language"], {})[row["kind"]] = (row["text"], row["back_translation"])
    return out


def table_language(language: str | None) -> str:
    """The table's row for a BCP-47 tag: exact, else the same primary language, else en-US."""
    table = phrase_table()
    if language in table:
        return language  # type: ignore[return-value]
    primary = (language or "").split("-", 1)[0].lower()
    return next((k for k in LIVE_LANGUAGES if k.split("-", 1)[0] == primary), "en-US")


def phrase_text(language: str | None, kind: str) -> str:
    return phrase_table()[table_language(language)][kind][0]


# ----------------------------------------------------------------------------- TTS


def tts_request(text: str, voice: str, language: str | None = None) -> dict[str, Any]:
    """The ``generateContent`` body that speaks ``text`` in ``voice`` (language optional)."""
    speech: dict[str, Any] = {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": voice}}}
    if language:
        speech["languageCode"] = language
    return {"contents": [{"role": "user", "parts": [{"text": text.replace("…", "...")}]}],
            "generationConfig": {"responseModalities": ["AUDIO"], "speechConfig": speech}}


class TtsError(Exception):
    pass


def tts_audio(answer: Any) -> tuple[bytes, int]:
    """PCM16 LE mono and its rate from a ``generateContent`` answer (L16 or WAV inline data)."""
    try:
        part = next(p for p in answer["candidates"][0]["content"]["parts"] if "inlineData" in p)
        blob = part["inlineData"]
        data = base64.b64decode(blob["data"], validate=False)
        mime = str(blob.get("mimeType", ""))
    except (KeyError, IndexError, TypeError, StopIteration, ValueError) as exc:
        raise TtsError(f"no audio in the answer ({type(exc).__name__})") from None
    if data[:4] == b"RIFF" or "wav" in mime:
        try:
            with wave.open(io.BytesIO(data)) as w:
                if w.getsampwidth() != 2 or w.getnchannels() != 1:
                    raise TtsError("WAV is not 16-bit mono")
                return w.readframes(w.getnframes()), w.getframerate()
        except (wave.Error, EOFError) as exc:
            raise TtsError(f"bad WAV ({exc})") from None
    rate = int(m.group(1)) if (m := re.search(r"rate=(\d+)", mime)) else TTS_RATE
    return data[: len(data) & ~1], rate


def line_ulaw(pcm: bytes, rate: int = TTS_RATE) -> bytes:
    """24 kHz PCM16 → μ-law 8 kHz in whole 160-byte frames (padded with μ-law silence)."""
    if rate != TTS_RATE:
        raise TtsError(f"unsupported TTS rate {rate} (want {TTS_RATE})")
    conv = OutboundConverter()
    ulaw = conv.convert(pcm) + conv.flush()
    return ulaw + b"\xff" * (-len(ulaw) % 160)


# ------------------------------------------------------------------- language detection

_SCRIPTS = (
    (re.compile(r"[\u0E00-\u0E7F]"), "th-TH"), (re.compile(r"[\uAC00-\uD7AF]"), "ko-KR"),
    (re.compile(r"[\u3040-\u30FF\u4E00-\u9FFF]"), "ja-JP"), (re.compile(r"[\u0980-\u09FF]"), "bn-BD"),
    (re.compile(r"[\u0B80-\u0BFF]"), "ta-IN"), (re.compile(r"[\u0C00-\u0C7F]"), "te-IN"),
    (re.compile(r"[\u0600-\u06FF]"), "ar-EG"),
)
_MARATHI = {"आहे", "आहेत", "आणि", "मी", "आम्ही", "नाही", "काय", "हे"}
_WORDS = {
    "en-US": "the and is are we our it to of you that this for with".split(),
    "de-DE": "der die das und ist wir sind nicht ich ein eine mit für".split(),
    "es-US": "el la los las y es que de somos una un por para con".split(),
    "fr-FR": "le la les et est nous sommes une un des pour avec que je".split(),
    "it-IT": "il lo la gli e è che di siamo una un per con non".split(),
    "pt-BR": "o a os as e é que de somos uma um para com não".split(),
    "nl-NL": "de het een en is wij we zijn niet ik met voor van".split(),
    "pl-PL": "i w jest nie to się na że jesteśmy dla z".split(),
    "ro-RO": "și este în nu un o pentru cu suntem că".split(),
    "tr-TR": "ve bir bu için çok biz değil ile da de".split(),
    "id-ID": "dan yang di ini itu kami adalah untuk tidak dengan".split(),
    "vi-VN": "và là của chúng tôi không có một cho những".split(),
}


def detect_language(text: str) -> str | None:
    """The caller's language (one of :data:`LIVE_LANGUAGES`) from transcribed text, or None."""
    for pattern, lang in _SCRIPTS:
        if pattern.search(text):
            return lang
    if re.search(r"[\u0900-\u097F]", text):
        return "mr-IN" if _MARATHI & set(text.split()) else "hi-IN"
    if re.search(r"[\u0400-\u04FF]", text):
        return "uk-UA" if re.search(r"[іїєґІЇЄҐ]", text) else "ru-RU"
    words = re.findall(r"\w+", text.lower())
    scores = {lang: sum(w in vocab for w in words) for lang, vocab in _WORDS.items()}
    best = max(scores.values(), default=0)
    winners = [lang for lang, n in scores.items() if n == best]
    return winners[0] if best > 0 and len(winners) == 1 else None


__all__ = ["LIVE_LANGUAGES", "KINDS", "TTS_MODEL", "phrase_table", "phrase_text", "table_language",
           "tts_request", "tts_audio", "line_ulaw", "detect_language", "TtsError", "ESPEAK_VOICES"]
