"""Settings, read from the environment once at start-up.

A missing or invalid setting raises :class:`ConfigError` with a one-line message naming the
variable. Secrets (``GEMINI_API_KEY``, ``TWILIO_AUTH_TOKEN``) are kept out of ``repr``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .errors import ConfigError

DEFAULT_LIVE_URL = (
    "wss://generativelanguage.googleapis.com/ws/"
    "google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
)
#: The Live API's native-audio model at the time of writing (Gemini API changelog, 2025-12-12).
DEFAULT_MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"


@dataclass(frozen=True)
class Settings:
    gemini_api_key: str = field(repr=False)
    public_url: str
    gemini_live_url: str = DEFAULT_LIVE_URL
    gemini_model: str = DEFAULT_MODEL
    twilio_auth_token: str | None = field(default=None, repr=False)
    host: str = "0.0.0.0"
    port: int = 8080
    log_level: str = "INFO"
    #: How far ahead of the caller's playback agent audio is forwarded (bounds stale audio on barge-in).
    playback_lead_ms: int = 160
    #: Gemini's end-of-turn silence: long, because founders think before they answer.
    silence_duration_ms: int = 2500
    voice: str | None = None
    language: str | None = None

    @property
    def public_host(self) -> str:
        return urlsplit(self.public_url).netloc

    @property
    def stream_url(self) -> str:
        """The wss:// URL Twilio opens, exactly as written into the TwiML."""
        parts = urlsplit(self.public_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/media-stream"

    def public(self, path: str) -> str:
        return self.public_url.rstrip("/") + path


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer (got {raw[:20]!r})") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi} (got {value})")
    return value


def _required(env: Mapping[str, str], name: str, hint: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set: {hint}")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    key = _required(env, "GEMINI_API_KEY", "the Gemini API key (https://aistudio.google.com/apikey)")
    public_url = _required(env, "PUBLIC_URL", "the https:// base URL Twilio reaches this server at")
    parts = urlsplit(public_url)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query:
        raise ConfigError(f"PUBLIC_URL must look like https://host[/prefix] (got {public_url[:60]!r})")
    live_url = env.get("GEMINI_LIVE_URL", "").strip() or DEFAULT_LIVE_URL
    if urlsplit(live_url).scheme not in ("ws", "wss"):
        raise ConfigError(f"GEMINI_LIVE_URL must be a ws:// or wss:// URL (got {live_url[:60]!r})")
    if "key=" in live_url:
        raise ConfigError("GEMINI_LIVE_URL must not carry the key: set GEMINI_API_KEY instead")
    return Settings(
        gemini_api_key=key,
        public_url=public_url.rstrip("/"),
        gemini_live_url=live_url,
        gemini_model=env.get("GEMINI_MODEL", "").strip() or DEFAULT_MODEL,
        twilio_auth_token=env.get("TWILIO_AUTH_TOKEN") or None,
        host=env.get("HOST", "").strip() or "0.0.0.0",
        port=_int(env, "PORT", 8080, 0, 65535),
        log_level=env.get("LOG_LEVEL", "").strip() or "INFO",
        playback_lead_ms=_int(env, "PLAYBACK_LEAD_MS", 160, 40, 200),
        silence_duration_ms=_int(env, "SILENCE_DURATION_MS", 2500, 100, 10000),
        voice=env.get("GEMINI_VOICE") or None,
        language=env.get("GEMINI_LANGUAGE") or None,
    )
