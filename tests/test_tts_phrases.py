"""Phrases in the agent's voice: the TTS cache on a fake clock, the emulator's TTS over HTTP."""

import asyncio
import shutil
import time

import pytest

from telephony_bridge.prompt_audio import load_phrase_book
from telephony_bridge.store import SqliteStore
from telephony_bridge.gemini.backend import GeminiApiBackend
from telephony_bridge.testing.gemini.tts import TtsEmulator
from telephony_bridge.tts_phrases import CallPhrases, PhraseVoices, http_fetcher
from telephony_bridge.voice_phrases import MAX_PHRASE_S, TtsError

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_first_need_plays_the_bundled_clip_then_the_agents_voice(tmp_path):
    calls = []

    async def fetch(text, voice, language):
        calls.append((text, voice, language))
        return b"\x01" * 320

    async def scenario():
        store = SqliteStore(str(tmp_path / "c.db"))
        voices = PhraseVoices(fetch, store, clock=Clock())
        phrases = CallPhrases(voices, load_phrase_book("en"), "de-DE", voice_of=lambda: "Kore")
        bundled = phrases("filler")
        assert bundled == load_phrase_book("en").next("filler")  # at once: the filler deadline holds
        await voices.wait_idle()
        assert calls == [("Einen Moment…", "Kore", "de-DE")]
        assert phrases("filler") == b"\x01" * 320
        assert phrases.played == [("bundled", "filler"), ("tts", "filler")]
        assert phrases("goodbye_error") == load_phrase_book("en").next("goodbye_error")  # not a table kind
        # A second process (or a restart) finds it in the store: no TTS request.
        again = PhraseVoices(fetch, store, clock=Clock())
        assert await again.ensure("Kore", "de-DE", "filler") == b"\x01" * 320
        assert len(calls) == 1 and again.stats["store_hits"] == 1
        await store.close()

    asyncio.run(scenario())


def test_a_tts_outage_falls_back_and_is_not_retried_until_the_window_ends():
    clock = Clock()
    attempts = []

    async def fetch(text, voice, language):
        attempts.append(clock.t)
        raise TtsError("HTTP 503")

    async def scenario():
        voices = PhraseVoices(fetch, None, retry_after_s=60.0, clock=clock)
        phrases = CallPhrases(voices, load_phrase_book("en"), "en-US", voice_of=lambda: "Puck")
        assert phrases("apology")
        await voices.wait_idle()
        assert attempts == [0.0] and voices.down
        clock.t = 30.0
        phrases("apology")
        await voices.wait_idle()
        assert attempts == [0.0]  # still inside the window: bundled clip, no request
        clock.t = 61.0
        phrases("apology")
        await voices.wait_idle()
        assert attempts == [0.0, 61.0]
        assert phrases.played == [("bundled", "apology")] * 3

    asyncio.run(scenario())


def test_auto_language_follows_the_callers_first_words():
    seen = []

    async def fetch(text, voice, language):
        seen.append(language)
        return b"\x02" * 160

    async def scenario():
        voices = PhraseVoices(fetch, None, clock=Clock())
        said = {"text": None}
        phrases = CallPhrases(voices, load_phrase_book("en"), "auto", voice_of=lambda: "Kore",
                              caller_text=lambda: said["text"])
        assert phrases.language() == "en-US"  # nothing said yet
        said["text"] = "Somos una empresa para las clínicas dentales"
        assert phrases.language() == "es-US" and phrases.fallback.language == "es"
        phrases("reconnect")
        await voices.wait_idle()
        assert seen == ["es-US"]

    asyncio.run(scenario())


@needs_espeak
def test_emulator_tts_speaks_in_distinct_voices_and_fails_on_outage():
    async def scenario():
        async with TtsEmulator(api_key="demo-kkkkkkkk") as tts:
            fetch = http_fetcher(GeminiApiBackend("demo-kkkkkkkk", rest_base=tts.url))
            kore = await fetch("Einen Moment", "Kore", "de-DE")
            puck = await fetch("Einen Moment", "Puck", "de-DE")
            assert len(kore) % 160 == 0 and 0.2 < len(kore) / 8000 < MAX_PHRASE_S
            assert kore != puck
            assert tts.requests[0] == {"model": "gemini-3.8-flash-lite-tts", "text": "Einen Moment",
                                       "voice": "Kore", "language": "de-DE", "outage": False}
            tts.outage = True
            with pytest.raises(TtsError, match="503"):
                await fetch("Einen Moment", "Kore", "de-DE")
            # The call side during the outage: the bundled clip, at once.
            voices = PhraseVoices(fetch, None)
            phrases = CallPhrases(voices, load_phrase_book("de"), "de-DE", voice_of=lambda: "Kore")
            t0 = time.perf_counter()
            audio = phrases("filler")
            assert time.perf_counter() - t0 < 0.01 and audio
            await voices.wait_idle()
            assert voices.down and voices.stats["tts_failed"] == 1
            await voices.aclose()

    asyncio.run(scenario())
