"""The emulator's Gemini TTS: ``generateContent`` with audio output, over plain HTTP on loopback.

One :class:`TtsEmulator` holds the voices, faults and request log. The emulator's REST side
(:class:`.rest.RestEmulator`, the same port and authentication as the post-call report's
``generateContent``) hands it every request for audio output, as Gemini's one REST host does;
on its own (``async with``) it serves on a loopback port of its own (``url``: the REST base to
give the bridge as ``GEMINI_REST_URL``). It takes
``POST /v1beta/models/{model}:generateContent`` (and Vertex AI's
``/v1/.../publishers/google/models/{model}:generateContent``) with the Gemini TTS body
(``generationConfig.responseModalities ["AUDIO"]``, ``speechConfig.voiceConfig.prebuiltVoiceConfig
.voiceName``, optional ``languageCode``) and answers like the 2.5/3.1 TTS models:
``candidates[0].content.parts[0].inlineData`` with ``audio/L16;codec=pcm;rate=24000`` base64 PCM.

The speech is espeak-ng rendered at request time (:func:`..render_clips.espeak`): the language
from ``languageCode`` (:data:`~telephony_bridge.voice_phrases.ESPEAK_VOICES`), a variant per
voice name so two voices sound different. Faults: :attr:`TtsEmulator.outage` (HTTP 503
UNAVAILABLE, as the service answers when overloaded) and :attr:`TtsEmulator.delay_s` (render
time). ``api_key``: a missing or wrong ``x-goog-api-key`` is 401/403. Requests are recorded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import zlib
from typing import Any

_PATH = re.compile(r"^/(?:v1beta|v1)/(?:.*/)?models/([A-Za-z0-9._-]+):generateContent$")
#: espeak-ng voice variants (the emulated prebuilt voices differ by variant; language by voice).
_VARIANTS = ("f3", "m3", "f4", "m7", "f2", "m1")
_PANEL = {"Charon": "f3", "Kore": "f4", "Puck": "m7"}


class TtsEmulator:
    def __init__(self, api_key: str | None = None, host: str = "127.0.0.1") -> None:
        self.api_key = api_key
        self.host = host
        self.port = 0
        #: Answer 503 UNAVAILABLE to every request while True.
        self.outage = False
        #: Seconds to wait before answering (the service's render time).
        self.delay_s = 0.0
        self.requests: list[dict[str, Any]] = []
        self._server: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> TtsEmulator:
        from starlette.applications import Starlette
        from starlette.routing import Route

        from ..loopback_http import LoopbackServer

        self._server = LoopbackServer(Starlette(routes=[Route("/{path:path}", self.handle, methods=["POST"])]),
                                      host=self.host)
        await self._server.start()
        self.port = self._server.port
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def handle(self, request: Any) -> Any:
        """A Starlette request for speech -> its answer (what both servers call)."""
        from starlette.responses import JSONResponse

        status, answer = await self._answer(request.method, request.url.path, dict(request.headers),
                                            await request.body())
        return JSONResponse(answer, status_code=status)

    async def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        m = _PATH.match(path.split("?", 1)[0])
        if method != "POST" or m is None:
            return 404, _error(404, "NOT_FOUND", f"{method} {path} is not a generateContent path")
        if self.api_key is not None:
            key = headers.get("x-goog-api-key")
            if key is None:
                return 401, _error(401, "UNAUTHENTICATED", "API key missing.")
            if not secrets.compare_digest(key, self.api_key):
                return 403, _error(403, "PERMISSION_DENIED", "API key not valid.")
        try:
            req = json.loads(body)
            text = "".join(p.get("text", "") for c in req["contents"] for p in c["parts"])
            cfg = req["generationConfig"]
            speech = cfg["speechConfig"]
            voice = speech["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"]
            language = speech.get("languageCode")
        except (ValueError, KeyError, TypeError):
            return 400, _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        if cfg.get("responseModalities") != ["AUDIO"] or not text.strip():
            return 400, _error(400, "INVALID_ARGUMENT", "This model only supports AUDIO output for text input.")
        self.requests.append({"model": m.group(1), "text": text, "voice": voice, "language": language,
                              "outage": self.outage})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.outage:
            return 503, _error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        pcm = await asyncio.get_running_loop().run_in_executor(None, _speak, text, voice, language)
        return 200, {"candidates": [{"content": {"role": "model", "parts": [{"inlineData": {
            "mimeType": "audio/L16;codec=pcm;rate=24000", "data": base64.b64encode(pcm).decode()}}]},
            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": len(text.split()), "candidatesTokenCount": len(pcm) // 960}}


def _speak(text: str, voice: str, language: str | None) -> bytes:
    from ...voice_phrases import ESPEAK_VOICES, table_language
    from ..render_clips import espeak

    base = ESPEAK_VOICES[table_language(language)]
    variant = _PANEL.get(voice) or _VARIANTS[zlib.crc32(voice.encode()) % len(_VARIANTS)]
    return espeak(text.replace("…", ""), f"{base}+{variant}", 185, 24000).astype("<i2").tobytes()


def _error(code: int, status: str, message: str) -> dict:
    return {"error": {"code": code, "message": message, "status": status}}


__all__ = ["TtsEmulator"]
