"""Settings, read from the environment once at start-up.

A missing or invalid setting raises :class:`ConfigError` with a one-line message naming the
variable. Secrets (``GEMINI_API_KEY``, ``TWILIO_AUTH_TOKEN``, ``STREAM_TOKEN_SECRET``,
``OPERATOR_TOKEN``) are kept out of ``repr``.

Which Gemini Live service (see :mod:`telephony_bridge.gemini.backend`)::

    GEMINI_BACKEND           gemini (default): the Gemini API with GEMINI_API_KEY
                             vertex: Vertex AI. With GOOGLE_CLOUD_PROJECT: Application Default
                             Credentials (GOOGLE_APPLICATION_CREDENTIALS = a service-account key
                             file, or the metadata server on Cloud Run / GKE); without it, express
                             mode with GEMINI_API_KEY (a Vertex AI API key)
    GOOGLE_CLOUD_LOCATION    global (default), a region (us-central1) or us / eu
    GOOGLE_CLOUD_QUOTA_PROJECT  bill usage to this project (x-goog-user-project); default: the
                             credentials' own quota project, if any
    GEMINI_MODEL             default gemini-3.8-live (telephony_bridge.gemini.profiles)
    GEMINI_LIVE_URL          endpoint override (the emulator); default: the backend's

Security settings (see :mod:`telephony_bridge.security`)::

    TWILIO_SIGNATURE_CHECK   on (default) | off. Off is for local development only: ``serve``
                             warns loudly. On without TWILIO_AUTH_TOKEN is a ConfigError: a
                             bridge that cannot check signatures must not start.
    STREAM_TOKEN_SECRET      key of the per-call stream tokens (>= 32 characters). Unset: a
                             random secret per process, which only works with ONE replica (the
                             webhook and the stream of a call may land on different ones).
    STREAM_TOKEN_TTL_S       how long a stream token is valid after the webhook, default 120
    OPERATOR_TOKEN           bearer token for /metrics and /calls (>= 16 characters); unset: off (404)
    MAX_CONCURRENT_CALLS     calls at once before the webhook answers "lines are busy", default 40
    MAX_CALL_S               a call is ended after this long, default 3600
    NO_MEDIA_TIMEOUT_S       a stream silent (no media frames) this long is ended, default 10
    TWILIO_MAX_MESSAGE_BYTES largest websocket frame accepted from Twilio, default 65536
    GEMINI_MAX_MESSAGE_BYTES largest websocket frame accepted from Gemini, default 4 MiB
    GEMINI_BREAKER_CALLS     after this many consecutive calls refused by Gemini for the same
                             configuration reason (model not found, bad key, permission, invalid
                             setup), new calls get the apology from the webhook until a probe
                             connection succeeds; default 3, 0 turns the breaker off
    GEMINI_PROBE_S           first delay between those probes (doubling, capped at 300), default 10

The interviewer and its memory::

    PERSONA_PATH             a persona TOML file (default: the bundled founder interviewer)
    SILENCE_DURATION_MS, GEMINI_VOICE, GEMINI_LANGUAGE  override the persona's values
    TTS_PHRASES              on (default): filler/apology/busy in the agent's voice via Gemini
                             TTS, cached in the store; off: the bundled espeak-ng clips only
    CALLS_DB                 SQLite file for call records and resumption handles,
                             default telephony-bridge.sqlite3
    REDIS_URL                redis://… : keep them in Redis instead, shared by several replicas
    COMPRESSION_TRIGGER_TOKENS, COMPRESSION_TARGET_TOKENS  context window compression (sliding
                             window) so interviews run past Gemini's 15-minute audio cap;
                             defaults 25600 and 12800

The post-call report (see :mod:`telephony_bridge.report`)::

    REPORT                   on (default) | off: ask Gemini's generateContent for a report per call
    REPORT_MODEL             default gemini-3.8-flash
    GEMINI_REST_URL          http(s):// origin override for generateContent (the report and
                             TTS phrases; the emulator)
    REPORT_WEBHOOK_URL       POST the report + call record here (signed, from the durable outbox)
    REPORT_WEBHOOK_SECRET    HMAC-SHA256 key of the Bridge-Signature header (>= 32 characters;
                             required with REPORT_WEBHOOK_URL)
    REPORT_SMS               off (default) | on: a short SMS summary to the caller (Twilio REST)
    TWILIO_ACCOUNT_SID, TWILIO_FROM_NUMBER  the account and the sender of that SMS
    TWILIO_API_URL           origin override for Twilio's REST API (a local fake)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .errors import ConfigError
from .gemini.backend import GEMINI_API_URL
from .gemini.profiles import DEFAULT_MODEL

#: The Gemini API's Live endpoint (GEMINI_BACKEND=gemini).
DEFAULT_LIVE_URL = GEMINI_API_URL
BACKENDS = ("gemini", "vertex")
_LOCATION = re.compile(r"^[a-z][a-z0-9-]{1,40}$")
#: GCP project ids: 6-30 lowercase letters, digits, hyphens (legacy domain-scoped ids have "x.com:").
_PROJECT = re.compile(r"^(?:[a-z0-9.-]{1,63}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")


@dataclass(frozen=True, kw_only=True)
class Settings:
    #: The Gemini API key (backend gemini), or a Vertex AI express-mode key (backend vertex
    #: without a project). None with Vertex AI and Application Default Credentials.
    gemini_api_key: str | None = field(default=None, repr=False)
    public_url: str
    #: None: the backend's own endpoint.
    gemini_live_url: str | None = None
    #: The bridge's phrases in the agent's voice, rendered by Gemini TTS (tts_phrases.py, through
    #: ``gemini_rest_url`` like the report); off: the bundled espeak-ng clips only.
    tts_phrases: bool = True
    gemini_model: str = DEFAULT_MODEL
    #: "gemini" (the Gemini API) or "vertex" (Vertex AI).
    gemini_backend: str = "gemini"
    google_cloud_project: str | None = None
    google_cloud_location: str = "global"
    #: A credentials JSON file for Vertex AI (service-account key); None: google-auth's ADC search
    #: (GOOGLE_APPLICATION_CREDENTIALS, gcloud's file, the metadata server).
    google_application_credentials: str | None = None
    #: Bills Vertex AI usage to this project (``x-goog-user-project``); None: the credentials' own.
    google_cloud_quota_project: str | None = None
    twilio_auth_token: str | None = field(default=None, repr=False)
    host: str = "0.0.0.0"
    port: int = 8080
    log_level: str = "INFO"
    #: How far ahead of the caller's playback agent audio is forwarded (bounds stale audio on barge-in).
    playback_lead_ms: int = 160
    #: Instant barge-in: pause the agent on the caller's speech onset (this much double-talk),
    #: resume if Gemini has not interrupted within the window (call/barge.py).
    barge_pause: bool = True
    barge_onset_ms: int = 40
    barge_confirm_ms: int = 700
    #: Caller audio per realtimeInput message to Gemini (multiple of 20 ms; benchmarks/load.py).
    gemini_input_chunk_ms: int = 100
    #: SIGTERM (drain.py): calls may finish on their own this long, are then handed over to
    #: another replica at a quiet moment, by drain_handover_s at the latest; exit by drain_max_s.
    drain_finish_s: float = 10.0
    drain_handover_s: float = 25.0
    drain_max_s: float = 40.0
    #: Gemini's end-of-turn silence; None: the persona's (2500 ms: founders think).
    silence_duration_ms: int | None = None
    voice: str | None = None
    language: str | None = None
    #: Check X-Twilio-Signature on the webhook and the stream upgrade (off: local development only).
    twilio_signature_check: bool = True
    #: Key of the per-call stream token; None: a random key per app (one replica only).
    stream_token_secret: str | None = field(default=None, repr=False)
    stream_token_ttl_s: int = 120
    #: Bearer token for the private read endpoints (/metrics, /calls); None: those answer 404.
    operator_token: str | None = field(default=None, repr=False)
    max_concurrent_calls: int = 40
    max_call_s: int = 3600
    no_media_timeout_s: int = 10
    #: Largest frame accepted from Twilio (uvicorn's ``ws_max_size``; the parser's hard cap is 64 KiB).
    twilio_max_message_bytes: int = 64 * 1024
    #: Largest frame accepted from Gemini (the client's ``max_size``; a second of audio is ~64 KB).
    gemini_max_message_bytes: int = 4 * 1024 * 1024
    #: Refusal breaker: open after this many consecutive calls refused for one configuration
    #: reason (0: never); probe every breaker_probe_s seconds at first, doubling up to 300.
    breaker_calls: int = 3
    breaker_probe_s: float = 10.0
    #: A persona TOML file; None: the bundled default.
    persona_path: str | None = None
    #: Where call records and resumption handles live (SQLite), unless redis_url is set.
    sqlite_path: str = ":memory:"
    redis_url: str | None = field(default=None, repr=False)
    #: Context window compression: past this many tokens Gemini slides the window down to the target.
    compression_trigger_tokens: int = 25600
    compression_target_tokens: int = 12800
    #: Call recordings (recording/): a folder (the spool when a bucket is set), gs:// or s3:// bucket,
    #: days kept (0: forever). None: calls are not recorded.
    recordings_dir: str | None = None
    recordings_bucket: str | None = None
    recordings_retention_days: float = 30.0
    #: The post-call report (telephony_bridge.report).
    report: bool = True
    report_model: str = "gemini-3.8-flash"
    gemini_rest_url: str | None = None
    report_webhook_url: str | None = None
    report_webhook_secret: str | None = field(default=None, repr=False)
    report_sms: bool = False
    twilio_account_sid: str | None = None
    twilio_from_number: str | None = None
    twilio_api_url: str | None = None
    #: Demo and tests only (never read from the environment): make a tool answer this many
    #: seconds late, {"lookup_market": 1.5}, so filler has something to cover.
    demo_tool_delays_s: Mapping[str, float] = field(default_factory=dict, compare=False)

    @property
    def vertex(self) -> bool:
        return self.gemini_backend == "vertex"

    @property
    def vertex_express(self) -> bool:
        """Vertex AI with an API key (no project, no ADC)."""
        return self.vertex and self.google_cloud_project is None

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


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("on", "true", "1", "yes"):
        return True
    if raw in ("off", "false", "0", "no"):
        return False
    raise ConfigError(f"{name} must be on or off (got {raw[:20]!r})")


def _secret(env: Mapping[str, str], name: str, min_chars: int, hint: str) -> str | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    if len(value) < min_chars:
        raise ConfigError(f"{name} must be at least {min_chars} characters: {hint}")
    return value


def _required(env: Mapping[str, str], name: str, hint: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set: {hint}")
    return value


def _backend(env: Mapping[str, str]) -> dict[str, object]:
    """The Gemini backend's settings: which service, and its credentials."""
    backend = env.get("GEMINI_BACKEND", "").strip().lower() or "gemini"
    if backend not in BACKENDS:
        raise ConfigError(f"GEMINI_BACKEND must be gemini or vertex (got {backend[:20]!r})")
    key = env.get("GEMINI_API_KEY", "").strip() or None
    out: dict[str, object] = {"gemini_backend": backend, "gemini_api_key": key}
    if backend == "gemini":
        if key is None:
            raise ConfigError("GEMINI_API_KEY is not set: the Gemini API key (https://aistudio.google.com/apikey)")
        return out
    project = env.get("GOOGLE_CLOUD_PROJECT", "").strip() or None
    location = env.get("GOOGLE_CLOUD_LOCATION", "").strip().lower() or "global"
    if not _LOCATION.match(location):
        raise ConfigError(f"GOOGLE_CLOUD_LOCATION must be global, us, eu or a region like us-central1 "
                          f"(got {location[:30]!r})")
    if project is None and key is None:
        raise ConfigError("GEMINI_BACKEND=vertex needs GOOGLE_CLOUD_PROJECT (Application Default "
                          "Credentials) or GEMINI_API_KEY (a Vertex AI express-mode key)")
    if project is not None and not _PROJECT.match(project):
        raise ConfigError(f"GOOGLE_CLOUD_PROJECT must be a project id like my-project-123 (got {project[:40]!r})")
    creds = env.get("GOOGLE_APPLICATION_CREDENTIALS", "").strip() or None
    quota = env.get("GOOGLE_CLOUD_QUOTA_PROJECT", "").strip() or None
    if quota is not None and not _PROJECT.match(quota):
        raise ConfigError(f"GOOGLE_CLOUD_QUOTA_PROJECT must be a project id (got {quota[:40]!r})")
    if project is not None:
        out["gemini_api_key"] = None  # the project (ADC) wins over a key, as in google-genai
    out.update(google_cloud_project=project, google_cloud_location=location,
               google_application_credentials=creds, google_cloud_quota_project=quota)
    return out


def _http_url(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip() or None
    if value is not None and (urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc):
        raise ConfigError(f"{name} must be an http:// or https:// URL (got {value[:60]!r})")
    return value


def _report(env: Mapping[str, str], auth_token: str | None) -> dict[str, object]:
    """The post-call report's settings: model, webhook and its secret, the opt-in SMS."""
    out: dict[str, object] = {
        "report": _switch(env, "REPORT", True),
        "report_model": env.get("REPORT_MODEL", "").strip() or "gemini-3.8-flash",
        "gemini_rest_url": _http_url(env, "GEMINI_REST_URL"),
        "report_webhook_url": _http_url(env, "REPORT_WEBHOOK_URL"),
        "report_webhook_secret": _secret(env, "REPORT_WEBHOOK_SECRET", 32,
                                         "python -c 'import secrets; print(secrets.token_urlsafe(32))'"),
        "report_sms": _switch(env, "REPORT_SMS", False),
        "twilio_account_sid": env.get("TWILIO_ACCOUNT_SID", "").strip() or None,
        "twilio_from_number": env.get("TWILIO_FROM_NUMBER", "").strip() or None,
        "twilio_api_url": _http_url(env, "TWILIO_API_URL"),
    }
    if out["report_webhook_url"] and not out["report_webhook_secret"]:
        raise ConfigError("REPORT_WEBHOOK_SECRET is not set: the key that signs REPORT_WEBHOOK_URL deliveries")
    if out["report_sms"]:
        missing = [n for n, v in (("TWILIO_ACCOUNT_SID", out["twilio_account_sid"]),
                                  ("TWILIO_FROM_NUMBER", out["twilio_from_number"]),
                                  ("TWILIO_AUTH_TOKEN", auth_token)) if not v]
        if missing:
            raise ConfigError(f"REPORT_SMS=on needs {missing[0]}")
    return out


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    backend = _backend(env)
    public_url = _required(env, "PUBLIC_URL", "the https:// base URL Twilio reaches this server at")
    parts = urlsplit(public_url)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query:
        raise ConfigError(f"PUBLIC_URL must look like https://host[/prefix] (got {public_url[:60]!r})")
    live_url = env.get("GEMINI_LIVE_URL", "").strip() or None
    if live_url is not None:
        if urlsplit(live_url).scheme not in ("ws", "wss"):
            raise ConfigError(f"GEMINI_LIVE_URL must be a ws:// or wss:// URL (got {live_url[:60]!r})")
        if "key=" in live_url:
            raise ConfigError("GEMINI_LIVE_URL must not carry the key: set GEMINI_API_KEY instead")
    elif backend["gemini_backend"] == "gemini":
        live_url = DEFAULT_LIVE_URL
    signature_check = _switch(env, "TWILIO_SIGNATURE_CHECK", True)
    auth_token = env.get("TWILIO_AUTH_TOKEN", "").strip() or None
    if signature_check and auth_token is None:
        raise ConfigError("TWILIO_AUTH_TOKEN is not set: the Twilio auth token that signs webhooks "
                          "(TWILIO_SIGNATURE_CHECK=off skips the check, for local development only)")
    report = _report(env, auth_token)
    return Settings(
        **report,  # type: ignore[arg-type]
        **backend,  # type: ignore[arg-type]
        public_url=public_url.rstrip("/"),
        gemini_live_url=live_url,
        gemini_model=env.get("GEMINI_MODEL", "").strip() or DEFAULT_MODEL,
        twilio_auth_token=auth_token,
        host=env.get("HOST", "").strip() or "0.0.0.0",
        port=_int(env, "PORT", 8080, 0, 65535),
        log_level=env.get("LOG_LEVEL", "").strip() or "INFO",
        playback_lead_ms=_int(env, "PLAYBACK_LEAD_MS", 160, 40, 200),
        barge_pause=_switch(env, "BARGE_PAUSE", True),
        tts_phrases=_switch(env, "TTS_PHRASES", True),
        barge_onset_ms=_int(env, "BARGE_ONSET_MS", 40, 20, 500),
        barge_confirm_ms=_int(env, "BARGE_CONFIRM_MS", 700, 100, 3000),
        gemini_input_chunk_ms=_int(env, "GEMINI_INPUT_CHUNK_MS", 100, 20, 200) // 20 * 20,
        drain_finish_s=float(_int(env, "DRAIN_FINISH_S", 10, 0, 3600)),
        drain_handover_s=float(_int(env, "DRAIN_HANDOVER_S", 25, 0, 3600)),
        drain_max_s=float(_int(env, "DRAIN_MAX_S", 40, 1, 3600)),
        silence_duration_ms=(_int(env, "SILENCE_DURATION_MS", 2500, 100, 10000)
                             if env.get("SILENCE_DURATION_MS") else None),
        voice=env.get("GEMINI_VOICE") or None,
        language=env.get("GEMINI_LANGUAGE") or None,
        twilio_signature_check=signature_check,
        stream_token_secret=_secret(env, "STREAM_TOKEN_SECRET", 32,
                                    "python -c 'import secrets; print(secrets.token_urlsafe(32))'"),
        stream_token_ttl_s=_int(env, "STREAM_TOKEN_TTL_S", 120, 10, 3600),
        operator_token=_secret(env, "OPERATOR_TOKEN", 16, "a long random string"),
        max_concurrent_calls=_int(env, "MAX_CONCURRENT_CALLS", 40, 1, 10000),
        max_call_s=_int(env, "MAX_CALL_S", 3600, 60, 6 * 3600),
        no_media_timeout_s=_int(env, "NO_MEDIA_TIMEOUT_S", 10, 2, 300),
        twilio_max_message_bytes=_int(env, "TWILIO_MAX_MESSAGE_BYTES", 64 * 1024, 4096, 64 * 1024),
        gemini_max_message_bytes=_int(env, "GEMINI_MAX_MESSAGE_BYTES", 4 * 1024 * 1024,
                                      64 * 1024, 16 * 1024 * 1024),
        breaker_calls=_int(env, "GEMINI_BREAKER_CALLS", 3, 0, 1000),
        breaker_probe_s=float(_int(env, "GEMINI_PROBE_S", 10, 1, 300)),
        persona_path=env.get("PERSONA_PATH", "").strip() or None,
        sqlite_path=env.get("CALLS_DB", "").strip() or "telephony-bridge.sqlite3",
        redis_url=env.get("REDIS_URL", "").strip() or None,
        compression_trigger_tokens=_int(env, "COMPRESSION_TRIGGER_TOKENS", 25600, 1000, 1_000_000),
        compression_target_tokens=_int(env, "COMPRESSION_TARGET_TOKENS", 12800, 500, 1_000_000),
        recordings_dir=(env.get("RECORDINGS_DIR", "").strip() or "recordings") if _switch(env, "RECORDINGS", True) else None,
        recordings_bucket=env.get("RECORDINGS_BUCKET", "").strip() or None,
        recordings_retention_days=float(_int(env, "RECORDINGS_RETENTION_DAYS", 30, 0, 36500)),
    )
