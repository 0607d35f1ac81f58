"""The 24-language phrase table, TTS request/answer handling and caller-language detection."""

import base64
import io
import shutil
import subprocess
import wave

import numpy as np
import pytest

from telephony_bridge.voice_phrases import (
    ESPEAK_VOICES, KINDS, LIVE_LANGUAGES, MAX_PHRASE_S, detect_language, line_ulaw, phrase_table, phrase_text,
    tts_audio, tts_request,
)


def test_every_live_language_has_every_kind_with_a_back_translation():
    table = phrase_table()
    assert len(LIVE_LANGUAGES) == 24 and set(table) == set(LIVE_LANGUAGES)
    for lang in LIVE_LANGUAGES:
        assert set(table[lang]) == set(KINDS), lang
        for kind, (text, back) in table[lang].items():
            assert text.strip() and back.strip(), (lang, kind)
    assert phrase_text("de-AT", "busy").startswith("Leider") and phrase_text("xx", "filler") == "Let me see…"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_every_phrase_can_be_said_in_under_a_second_and_a_half():
    too_long = []
    for lang, kinds in phrase_table().items():
        for kind, (text, _) in kinds.items():
            wav = subprocess.run(["espeak-ng", "-v", ESPEAK_VOICES[lang], "-s", "210", "--stdout",
                                  text.replace("…", "")], capture_output=True, check=True).stdout
            with wave.open(io.BytesIO(wav)) as w:
                x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32)
                rate = w.getframerate()
            loud = np.flatnonzero(np.abs(x) > 0.01 * np.abs(x).max())
            seconds = (loud[-1] - loud[0]) / rate if len(loud) else 0.0
            if seconds >= MAX_PHRASE_S:
                too_long.append((lang, kind, round(seconds, 2), text))
    assert not too_long


def test_tts_request_and_both_answer_formats_become_line_ready_ulaw():
    body = tts_request("One moment…", "Kore", "en-US")
    cfg = body["generationConfig"]
    assert cfg["responseModalities"] == ["AUDIO"]
    assert cfg["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"] == "Kore"
    pcm = (np.sin(np.arange(24000) * 2 * np.pi * 440 / 24000) * 8000).astype("<i2").tobytes()
    l16 = {"candidates": [{"content": {"parts": [{"inlineData": {
        "mimeType": "audio/L16;codec=pcm;rate=24000", "data": base64.b64encode(pcm).decode()}}]}}]}
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(24000), w.writeframes(pcm)
    wav = {"candidates": [{"content": {"parts": [{"inlineData": {
        "mimeType": "audio/wav", "data": base64.b64encode(buf.getvalue()).decode()}}]}}]}
    for answer in (l16, wav):
        audio, rate = tts_audio(answer)
        assert rate == 24000 and audio == pcm
        ulaw = line_ulaw(audio, rate)
        assert len(ulaw) % 160 == 0 and abs(len(ulaw) - 8000) <= 160


@pytest.mark.parametrize("text,lang", [
    ("We are building a tool for the clinics", "en-US"), ("Wir sind ein kleines Team und das ist neu", "de-DE"),
    ("Somos una empresa para las clínicas", "es-US"), ("Nous sommes une équipe pour les cliniques", "fr-FR"),
    ("Мы делаем сервис", "ru-RU"), ("Ми робимо сервіс для їх клінік", "uk-UA"), ("हम एक ऐप बना रहे हैं", "hi-IN"),
    ("आम्ही एक ॲप बनवत आहोत", "mr-IN"), ("私たちはアプリを作っています", "ja-JP"), ("우리는 앱을 만듭니다", "ko-KR"),
    ("เรากำลังสร้างแอป", "th-TH"), ("نحن نبني تطبيقا", "ar-EG"), ("[caller speech 2.4 s]", None),
])
def test_detect_language(text, lang):
    assert detect_language(text) == lang
