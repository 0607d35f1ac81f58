"""The bridge's own phrases spoken in the agent's voice: Gemini TTS, cached, bundled clips behind.

:class:`PhraseVoices` (one per process) renders each (voice, language, kind) of the phrase table
(:mod:`telephony_bridge.voice_phrases`) with Gemini TTS, converts it to line-ready μ-law 8 kHz
and keeps it in memory and in the call store (``get_phrase``/``set_phrase``: SQLite or Redis, so
replicas share it and a restart does not render again). :meth:`PhraseVoices.warm` renders a
panel's voices at start-up; anything not ready is rendered the first time a call needs it, in
the background.

:class:`CallPhrases` is one call's ``phrases(kind)`` for the call core: it must answer at once
(the filler deadline), so it returns the agent's-voice clip when it is already in memory, and
otherwise the bundled espeak-ng clip (:mod:`telephony_bridge.prompt_audio`) while the TTS
rendering runs for next time. TTS down (an error or a timeout) is remembered for
``retry_after_s``: calls meanwhile get the bundled clips without waiting on it.

The voice is the current interviewer's (a panel hand-off changes it); the language is the
persona's, or with ``language = "auto"`` the one :func:`~telephony_bridge.voice_phrases.detect_language`
finds in the caller's first transcribed words.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .log import log_event
from .prompt_audio import PhraseBook, load_phrase_book
from .voice_phrases import (
    KINDS, TTS_MODEL, TtsError, detect_language, line_ulaw, phrase_text, table_language, tts_audio, tts_request,
)

logger = logging.getLogger("telephony_bridge.tts")

#: The call core's phrase kinds → the table's (the rest stay bundled clips: long goodbyes).
KIND_FOR = {"filler": "filler", "thinking": "filler", "reconnect": "one_moment", "apology": "apology",
            "busy": "busy"}

Fetch = Callable[[str, str, str], Awaitable[bytes]]  # (text, voice, language) -> line-ready μ-law


class http_fetcher:  # noqa: N801 - used like a function that returns a Fetch
    """Gemini TTS over ``generateContent`` with the Live backend's credentials (same headers).
    One kept-alive HTTP client (opened on first use, in the running loop); :meth:`aclose` it."""

    def __init__(self, backend: Any, model: str = TTS_MODEL, *, timeout_s: float = 4.0) -> None:
        self.backend, self.model, self.timeout_s = backend, model, timeout_s
        self._client: Any = None

    async def __call__(self, text: str, voice: str, language: str) -> bytes:
        import httpx

        endpoint = await self.backend.rest_endpoint(self.model)  # as the report's: GEMINI_REST_URL
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        answer = await self._client.post(endpoint.url, json=tts_request(text, voice, language), headers=endpoint.headers)
        if answer.status_code != 200:
            raise TtsError(f"HTTP {answer.status_code}")
        pcm, rate = tts_audio(answer.json())
        return line_ulaw(pcm, rate)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


class PhraseVoices:
    def __init__(self, fetch: Fetch | None, store: Any = None, *, model: str = TTS_MODEL,
                 retry_after_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.fetch = fetch
        self.store = store
        self.model = model
        self.retry_after_s = retry_after_s
        self.clock = clock
        self.stats: Counter[str] = Counter()
        #: How long each TTS rendering took (ms), in order.
        self.render_ms: list[float] = []
        self._mem: dict[tuple[str, str, str], bytes] = {}
        #: Phrases asked for and not rendered yet, rendered one at a time by one background task
        #: (a burst of requests at a call's start must not compete with its audio).
        self._wanted: dict[tuple[str, str, str], None] = {}
        self._worker: asyncio.Task[None] | None = None
        self._down_until = 0.0

    def key(self, voice: str, language: str, kind: str) -> str:
        text = phrase_text(language, kind)
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        return f"tts:{self.model}:{voice}:{table_language(language)}:{kind}:{digest}"

    def cached(self, voice: str, language: str, kind: str) -> bytes | None:
        return self._mem.get((voice, table_language(language), kind))

    @property
    def down(self) -> bool:
        return self.clock() < self._down_until

    async def ensure(self, voice: str, language: str, kind: str) -> bytes | None:
        """The phrase in ``voice``: memory, else the store, else rendered now (None: TTS down)."""
        lang = table_language(language)
        slot = (voice, lang, kind)
        if slot in self._mem:
            return self._mem[slot]
        key = self.key(voice, lang, kind)
        if self.store is not None:
            try:
                audio = await self.store.get_phrase(key)
            except Exception as exc:  # the cache is an optimisation: carry on without it
                audio = None
                log_event(logger, "tts.store_failed", logging.WARNING, error=repr(exc)[:200])
            if audio:
                self.stats["store_hits"] += 1
                self._mem[slot] = audio
                return audio
        if self.fetch is None or self.down:
            return None
        started = self.clock()
        try:
            audio = await self.fetch(phrase_text(lang, kind), voice, lang)
        except Exception as exc:
            self._down_until = self.clock() + self.retry_after_s
            self.stats["tts_failed"] += 1
            log_event(logger, "tts.failed", logging.WARNING, voice=voice, language=lang, kind=kind,
                      error=f"{type(exc).__name__}: {exc}"[:200], retry_after_s=self.retry_after_s)
            return None
        self.stats["tts_rendered"] += 1
        self.render_ms.append(round((self.clock() - started) * 1000, 1))
        log_event(logger, "tts.rendered", voice=voice, language=lang, kind=kind,
                  ms=round((self.clock() - started) * 1000), seconds=round(len(audio) / 8000, 2))
        self._mem[slot] = audio
        if self.store is not None:
            try:
                await self.store.set_phrase(key, audio)
            except Exception as exc:
                log_event(logger, "tts.store_failed", logging.WARNING, error=repr(exc)[:200])
        return audio

    def want(self, voice: str, language: str, kind: str) -> None:
        """Render in the background (first need): queued once, rendered one after another."""
        slot = (voice, table_language(language), kind)
        if slot in self._mem or slot in self._wanted or self.down:
            return
        self._wanted[slot] = None
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._render_wanted())

    async def _render_wanted(self) -> None:
        while self._wanted:
            slot = next(iter(self._wanted))
            try:
                if not self.down:
                    await self.ensure(*slot)
            finally:
                self._wanted.pop(slot, None)

    async def warm(self, voices: Iterable[str], language: str, kinds: Iterable[str] = KINDS) -> int:
        """Render (or load) every kind for each voice; returns how many are ready."""
        jobs = [self.ensure(v, language, k) for v in dict.fromkeys(voices) for k in kinds]
        done = await asyncio.gather(*jobs)
        return sum(1 for a in done if a)

    async def aclose(self) -> None:
        """Stop rendering and close the TTS client (the app's shutdown)."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        close = getattr(self.fetch, "aclose", None)
        if close is not None:
            await close()

    async def wait_idle(self) -> None:
        """Until the background renderings have finished (tests, shutdown)."""
        while self._worker is not None and not self._worker.done():
            await asyncio.gather(self._worker, return_exceptions=True)


class CallPhrases:
    """One call's ``phrases(kind)``: the agent's voice when ready, else the bundled clip at once."""

    def __init__(self, voices: PhraseVoices, fallback: PhraseBook, language: str | None, *,
                 voice_of: Callable[[], str | None] = lambda: None,
                 caller_text: Callable[[], str | None] = lambda: None) -> None:
        self.voices = voices
        self.fallback = fallback
        self.auto = language in (None, "auto")
        self._language = None if self.auto else language
        self.voice_of = voice_of
        self.caller_text = caller_text
        #: Where each phrase came from, in order: ("tts" | "bundled", kind).
        self.played: list[tuple[str, str]] = []

    def language(self) -> str:
        """The persona's language; with "auto", the caller's first words decide (once)."""
        if self._language is None and self.auto:
            text = self.caller_text()
            found = detect_language(text) if text else None
            if found is not None:
                self._language = found
                self.fallback = load_phrase_book(found)
        return self._language or "en-US"

    def __call__(self, kind: str) -> bytes | None:
        table_kind = KIND_FOR.get(kind)
        voice = self.voice_of()
        if table_kind is not None and voice:
            language = self.language()
            audio = self.voices.cached(voice, language, table_kind)
            if audio is not None:
                self.played.append(("tts", kind))
                return audio
            self.voices.want(voice, language, table_kind)
        self.played.append(("bundled", kind))
        return self.fallback.next(kind)


__all__ = ["PhraseVoices", "CallPhrases", "http_fetcher", "KIND_FOR"]
