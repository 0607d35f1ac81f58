"""Pre-rendered phrases: bundled μ-law files, whole frames, rotation, language fallback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from telephony_bridge import prompt_audio
from telephony_bridge.dsp import rms_ulaw, ulaw_to_pcm16
from telephony_bridge.persona import FILLER_LANGUAGES
from telephony_bridge.prompt_audio import (
    FRAME_BYTES, INDEX_PATH, KINDS, LANGUAGES, MAX_FILLER_S, PHRASES, PHRASES_DIR, PhraseBook,
    load_phrase_book, pad_to_frames,
)

INDEX: dict[str, dict[str, list[dict[str, Any]]]] = json.loads(INDEX_PATH.read_text(encoding="utf-8"))
ENTRIES = [(lang, kind, e) for lang, kinds in INDEX.items() for kind, es in kinds.items() for e in es]


def entry_id(item: tuple[str, str, dict]) -> str:
    return item[2]["file"]


def test_index_covers_every_language_and_kind() -> None:
    assert set(INDEX) == set(LANGUAGES) >= {"en", "es", "de"}
    assert set(LANGUAGES) == set(FILLER_LANGUAGES)  # the persona derives filler_language from these
    for lang in LANGUAGES:
        assert set(INDEX[lang]) == set(KINDS), lang
        assert len(INDEX[lang]["filler"]) >= 3, lang
        # The index says what the source says (no stale render).
        for kind in KINDS:
            assert [e["text"] for e in INDEX[lang][kind]] == PHRASES[lang][kind]


def test_translations_are_not_english() -> None:
    english = {t for kind in KINDS for t in PHRASES["en"][kind]}
    for lang in LANGUAGES:
        if lang != "en":
            assert not english & {t for kind in KINDS for t in PHRASES[lang][kind]}, lang


@pytest.mark.parametrize("item", ENTRIES, ids=entry_id)
def test_clip_is_whole_frames_of_speech(item: tuple[str, str, dict]) -> None:
    lang, kind, entry = item
    path = PHRASES_DIR / entry["file"]
    assert path.parent.name == lang and path.name.startswith(kind + "_") and path.suffix == ".ulaw"
    audio = path.read_bytes()
    assert audio and len(audio) % FRAME_BYTES == 0
    assert entry["seconds"] == pytest.approx(len(audio) / 8000, abs=0.001)
    # Has energy: μ-law RMS well above line noise (0.01-0.02), and a clear peak.
    assert rms_ulaw(audio) > 0.04
    pcm = memoryview(ulaw_to_pcm16(audio)).cast("h")
    assert max(abs(s) for s in pcm) > 0.5 * 32768
    # Trimmed: sound within the first and last 60 ms, no dead air before or after the words
    # (the edges are quiet consonants and fades, so the bar is "not silence", not "loud").
    frames = [rms_ulaw(audio[i:i + FRAME_BYTES]) for i in range(0, len(audio), FRAME_BYTES)]
    assert max(frames[:3]) > 0.005
    assert max(frames[-3:]) > 0.001
    if kind in prompt_audio.SHORT_KINDS:  # they fill a gap in the conversation: short
        assert len(audio) / 8000 <= MAX_FILLER_S


def test_no_stray_files() -> None:
    on_disk = {p.relative_to(PHRASES_DIR).as_posix() for p in PHRASES_DIR.rglob("*.ulaw")}
    assert on_disk == {e["file"] for _, _, e in ENTRIES}


def test_rotation() -> None:
    book = PhraseBook("en")
    fillers = INDEX["en"]["filler"]
    got = [book.next("filler") for _ in range(2 * len(fillers) + 1)]
    expected = [(PHRASES_DIR / e["file"]).read_bytes() for e in fillers]
    assert got == expected + expected + expected[:1]
    assert all(a != b for a, b in zip(got, got[1:]))  # never the same phrase twice in a row
    assert book.texts("filler") == [e["text"] for e in fillers]
    # Each kind rotates on its own; each book (call) has its own rotation.
    assert book.next("apology") == (PHRASES_DIR / INDEX["en"]["apology"][0]["file"]).read_bytes()
    assert PhraseBook("en").next("filler") == expected[0]


def test_next_phrase_carries_text_and_duration() -> None:
    phrase = PhraseBook("de").next_phrase("filler")
    assert phrase.language == "de" and phrase.kind == "filler"
    assert phrase.text == INDEX["de"]["filler"][0]["text"]
    assert phrase.frames * FRAME_BYTES == len(phrase.audio)
    assert phrase.seconds == pytest.approx(INDEX["de"]["filler"][0]["seconds"], abs=0.001)


@pytest.mark.parametrize("language, resolved", [
    ("en", "en"), ("en-US", "en"), ("es-US", "es"), ("es", "es"), ("de-DE", "de"), ("fr-FR", "fr"),
    ("DE", "de"), ("pt_BR", "en"), ("ja-JP", "en"), ("", "en"),
])
def test_language_resolution_and_fallback(language: str, resolved: str) -> None:
    book = PhraseBook(language)
    assert book.language == resolved
    assert book.texts("goodbye_error") == PHRASES[resolved]["goodbye_error"]
    assert len(book.next("goodbye_error")) % FRAME_BYTES == 0


def test_load_phrase_book() -> None:
    assert load_phrase_book("es").language == "es"
    assert load_phrase_book(None).language == "en"


def test_missing_kind_falls_back_to_english(monkeypatch: pytest.MonkeyPatch) -> None:
    partial = json.loads(json.dumps(INDEX))
    del partial["es"]["busy"]
    monkeypatch.setattr(prompt_audio, "_index", lambda: partial)
    prompt_audio._clips.cache_clear()
    try:
        book = PhraseBook("es")
        assert book.language == "es"
        assert book.texts("busy") == PHRASES["en"]["busy"]
        assert book.texts("filler") == PHRASES["es"]["filler"]
    finally:
        prompt_audio._clips.cache_clear()


def test_unknown_kind_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="no phrases of kind 'jingle'"):
        PhraseBook("en").next("jingle")


def test_pad_to_frames() -> None:
    assert pad_to_frames(b"") == b""
    assert pad_to_frames(b"\x01" * 161) == b"\x01" * 161 + b"\xff" * 159
    assert ulaw_to_pcm16(b"\xff") == b"\x00\x00"  # the padding is digital silence


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")), reason="needs espeak-ng and sox")
def test_render_one_language(tmp_path: Path) -> None:
    index = prompt_audio.render(tmp_path, ("de",))
    assert set(index) == {"de"} and set(index["de"]) == set(KINDS)
    for kind in KINDS:
        for entry in index["de"][kind]:
            audio = (tmp_path / entry["file"]).read_bytes()
            assert audio and len(audio) % FRAME_BYTES == 0 and rms_ulaw(audio) > 0.04
    assert json.loads((tmp_path / "index.json").read_text(encoding="utf-8")) == index
