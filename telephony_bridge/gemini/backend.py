"""Where a Live connection goes and how it authenticates: the Gemini API or Vertex AI.

A backend answers, for each connection attempt, an :class:`Endpoint` (URL and headers) and, once,
the ``setup.model`` path. Three kinds (google-genai's ``live.py`` builds the same, read there)::

    GeminiApiBackend     wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage.v1beta
                         .GenerativeService.BidiGenerateContent, x-goog-api-key, models/{M}
    VertexExpressBackend wss://aiplatform.googleapis.com/ws/google.cloud.aiplatform.v1beta1
                         .LlmBidiService/BidiGenerateContent, x-goog-api-key, publishers/google/models/{M}
    VertexBackend        the same path on {L}-aiplatform.googleapis.com (aiplatform.googleapis.com
                         for global, aiplatform.{us|eu}.rep.googleapis.com for the multi-regions),
                         Authorization: Bearer <ADC token> (+ x-goog-user-project when the
                         credentials name a quota project),
                         projects/{P}/locations/{L}/publishers/google/models/{M}

Vertex tokens: calls outlive access tokens (about an hour), so :meth:`VertexBackend.endpoint` is
awaited before *every* connection, reconnection and goAway handover and returns a token valid for
at least :data:`REFRESH_MARGIN_S` more. :class:`TokenCache` keeps one token per process and
refreshes it off the event loop (google-auth's refresh is blocking HTTP: ``asyncio.to_thread``),
one refresh at a time however many calls reconnect at once. Every token is registered with the
log redaction (:func:`telephony_bridge.log.register_secret`) and never logged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..log import register_secret, unregister_secret
from .profiles import bare_model

if TYPE_CHECKING:
    from ..settings import Settings

GEMINI_API_URL = (
    "wss://generativelanguage.googleapis.com/ws/"
    "google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
)
VERTEX_PATH = "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"
#: The OAuth scope google-genai asks ADC for.
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
#: A cached token is refreshed when it has less than this left (a setup plus slack).
REFRESH_MARGIN_S = 300.0
_MULTI_REGIONS = frozenset({"us", "eu"})


def vertex_url(location: str) -> str:
    """The Vertex AI Live websocket for ``location`` (as google-genai's ``_api_client`` picks it)."""
    if location == "global":
        host = "aiplatform.googleapis.com"
    elif location in _MULTI_REGIONS:
        host = f"aiplatform.{location}.rep.googleapis.com"
    else:
        host = f"{location}-aiplatform.googleapis.com"
    return f"wss://{host}{VERTEX_PATH}"


def rest_url(live_url: str, model: str, method: str, *, project: str | None = None,
             location: str = "global") -> str:
    """The REST URL of ``model``'s ``method`` (``generateContent``) on the same host as the Live
    websocket ``live_url``: the Gemini API's ``/v1beta/models/...``, or Vertex AI's publisher path
    (with ``project``; express mode without). Credentials: the same headers as the websocket."""
    from urllib.parse import urlsplit

    parts = urlsplit(live_url)
    scheme = "https" if parts.scheme in ("wss", "https") else "http"
    name = bare_model(model)
    if "LlmBidiService" in parts.path:
        prefix = f"/v1/projects/{project}/locations/{location}" if project else "/v1"
        path = f"{prefix}/publishers/google/models/{name}:{method}"
    else:
        path = f"/v1beta/models/{name}:{method}"
    return f"{scheme}://{parts.netloc}{path}"


def vertex_model_path(model: str, project: str | None, location: str) -> str:
    """``projects/{P}/locations/{L}/publishers/google/models/{M}`` (express mode: no project part)."""
    if model.startswith("projects/"):
        return model
    path = model if model.startswith("publishers/") else f"publishers/google/models/{bare_model(model)}"
    if project is None:
        return path
    return f"projects/{project}/locations/{location}/{path}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What one connection attempt needs."""

    url: str
    headers: dict[str, str] = field(repr=False)


class BackendAuthError(Exception):
    """The backend could not produce credentials (no ADC, a bad key file, the token endpoint
    refused). ``kind``: ``no-credentials`` | ``bad-credentials`` | ``network``. The message never
    holds a secret."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class LiveBackend(Protocol):
    name: str

    def model_path(self, model: str) -> str: ...

    async def endpoint(self) -> Endpoint: ...

    def describe(self) -> str: ...


class GeminiApiBackend:
    """The Gemini API: the key in ``x-goog-api-key`` (never in the URL, which proxies log)."""

    name = "gemini-api"

    def __init__(self, api_key: str, url: str | None = None) -> None:
        self._endpoint = Endpoint(url or GEMINI_API_URL, {"x-goog-api-key": api_key})
        register_secret(api_key)

    def model_path(self, model: str) -> str:
        return model if model.startswith("models/") else f"models/{bare_model(model)}"

    async def endpoint(self) -> Endpoint:
        return self._endpoint

    def describe(self) -> str:
        return f"Gemini API at {self._endpoint.url.split('/ws/')[0]}"


class VertexExpressBackend:
    """Vertex AI express mode: an API key, no project, the global endpoint."""

    name = "vertex-express"

    def __init__(self, api_key: str, location: str = "global", url: str | None = None) -> None:
        self.location = location
        self._endpoint = Endpoint(url or vertex_url(location), {"x-goog-api-key": api_key})
        register_secret(api_key)

    def model_path(self, model: str) -> str:
        return vertex_model_path(model, None, self.location)

    async def endpoint(self) -> Endpoint:
        return self._endpoint

    def describe(self) -> str:
        return f"Vertex AI express mode at {self._endpoint.url.split('/ws/')[0]}"


def _utcnow() -> dt.datetime:
    # google-auth keeps ``expiry`` as a naive UTC datetime.
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def needs_refresh(token: str | None, expiry: dt.datetime | None, now: dt.datetime,
                  margin_s: float = REFRESH_MARGIN_S) -> bool:
    """A cached token must be refreshed: none yet, or less than ``margin_s`` left. A token
    without an expiry (some credential types) is refreshed every time, to be safe."""
    if not token or expiry is None:
        return True
    return (expiry - now).total_seconds() < margin_s


class TokenCache:
    """One google-auth credentials object and its current access token.

    ``load``: returns ``(credentials, project)``, blocking (reads a file or asks the metadata
    server), run once off the loop. ``clock``: naive UTC now, for tests on a fake clock.
    """

    def __init__(self, load: Callable[[], tuple[Any, str | None]], *,
                 clock: Callable[[], dt.datetime] = _utcnow, margin_s: float = REFRESH_MARGIN_S) -> None:
        self._load = load
        self._clock = clock
        self._margin_s = margin_s
        self._creds: Any = None
        self._lock = asyncio.Lock()
        self._previous: str | None = None
        #: How many times the token endpoint was asked (tests and doctor read it).
        self.refreshes = 0

    @property
    def credentials(self) -> Any:
        return self._creds

    def _fresh(self) -> bool:
        creds = self._creds
        return creds is not None and not needs_refresh(creds.token, creds.expiry, self._clock(), self._margin_s)

    async def token(self) -> tuple[str, str | None]:
        """``(access token, quota project or None)``, valid for at least the margin."""
        if not self._fresh():
            async with self._lock:  # one refresh for everyone waiting
                if not self._fresh():
                    await asyncio.to_thread(self._refresh)
        creds = self._creds
        return creds.token, getattr(creds, "quota_project_id", None)

    def _refresh(self) -> None:
        """Blocking: load the credentials (first time) and ask the token endpoint."""
        import google.auth.exceptions
        import google.auth.transport.requests

        try:
            if self._creds is None:
                self._creds, _ = self._load()
            old = self._creds.token
            self._creds.refresh(google.auth.transport.requests.Request())
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise BackendAuthError("no-credentials", _first_line(exc)) from None
        except google.auth.exceptions.TransportError as exc:
            raise BackendAuthError("network", f"token endpoint unreachable ({type(exc).__name__})") from None
        except google.auth.exceptions.RefreshError as exc:
            raise BackendAuthError("bad-credentials", f"token refresh refused: {_first_line(exc)}") from None
        except (OSError, ValueError) as exc:  # an unreadable or malformed key file
            raise BackendAuthError("bad-credentials", f"credentials unusable ({type(exc).__name__})") from None
        self.refreshes += 1
        new = self._creds.token
        if not isinstance(new, str) or not new:
            raise BackendAuthError("bad-credentials", "the token endpoint returned no access token")
        register_secret(new)
        # Keep the previous token masked until it expires too (it may still be in flight);
        # forget the one before it, so the redaction set stays small over a long uptime.
        if self._previous and self._previous not in (old, new):
            unregister_secret(self._previous)
        self._previous = old


def _first_line(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return text.splitlines()[0][:160] if text else type(exc).__name__


def adc_loader(credentials_file: str | None, quota_project: str | None = None) -> Callable[[], tuple[Any, str | None]]:
    """google-auth's loading: the given key file, else ADC (env var, gcloud, metadata server).
    ``quota_project`` (GOOGLE_CLOUD_QUOTA_PROJECT) overrides the credentials' own."""

    def load() -> tuple[Any, str | None]:
        creds, project = _load()
        if quota_project and hasattr(creds, "with_quota_project"):
            creds = creds.with_quota_project(quota_project)
        return creds, project

    def _load() -> tuple[Any, str | None]:
        import json

        import google.auth
        import google.auth.exceptions

        scopes = [CLOUD_PLATFORM_SCOPE]
        if not credentials_file:
            return google.auth.default(scopes=scopes)
        # The type-specific loaders: google-auth deprecates its generic file loader.
        try:
            with open(credentials_file, encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError) as exc:
            raise google.auth.exceptions.DefaultCredentialsError(
                f"credentials file {credentials_file} is unreadable ({type(exc).__name__})") from None
        kind = info.get("type") if isinstance(info, dict) else None
        if kind == "service_account":
            from google.oauth2 import service_account

            creds = service_account.Credentials.from_service_account_info(info, scopes=scopes)
            return creds, info.get("project_id")
        if kind == "authorized_user":
            from google.oauth2 import credentials as user_credentials

            return user_credentials.Credentials.from_authorized_user_info(info, scopes=scopes), None
        raise google.auth.exceptions.DefaultCredentialsError(
            f"credentials file {credentials_file} has type {str(kind)[:40]!r}: use a service-account key "
            "or an authorized-user file, or unset GOOGLE_APPLICATION_CREDENTIALS to use the metadata server")

    return load


class VertexBackend:
    """Vertex AI with Application Default Credentials: a Bearer token per connection attempt."""

    name = "vertex"

    def __init__(self, project: str, location: str = "global", *, tokens: TokenCache,
                 url: str | None = None) -> None:
        self.project = project
        self.location = location
        self.url = url or vertex_url(location)
        self.tokens = tokens

    def model_path(self, model: str) -> str:
        return vertex_model_path(model, self.project, self.location)

    async def endpoint(self) -> Endpoint:
        token, quota_project = await self.tokens.token()
        headers = {"Authorization": f"Bearer {token}"}
        if quota_project:
            headers["x-goog-user-project"] = quota_project
        return Endpoint(self.url, headers)

    def describe(self) -> str:
        return f"Vertex AI, project {self.project}, location {self.location}, at {self.url.split('/ws/')[0]}"


def backend_from_settings(settings: Settings) -> LiveBackend:
    """The backend the settings name (no I/O: credentials load on the first connection)."""
    if not settings.vertex:
        if not settings.gemini_api_key:
            raise ValueError("the Gemini API backend needs an API key")
        return GeminiApiBackend(settings.gemini_api_key, settings.gemini_live_url)
    if settings.google_cloud_project is None:
        if not settings.gemini_api_key:
            raise ValueError("Vertex AI express mode needs an API key")
        return VertexExpressBackend(settings.gemini_api_key, settings.google_cloud_location,
                                    settings.gemini_live_url)
    return VertexBackend(settings.google_cloud_project, settings.google_cloud_location,
                         tokens=TokenCache(adc_loader(settings.google_application_credentials,
                                                      settings.google_cloud_quota_project)),
                         url=settings.gemini_live_url)


__all__ = [
    "Endpoint", "LiveBackend", "GeminiApiBackend", "VertexExpressBackend", "VertexBackend", "TokenCache",
    "BackendAuthError", "backend_from_settings", "adc_loader", "needs_refresh", "vertex_url",
    "vertex_model_path", "GEMINI_API_URL", "VERTEX_PATH", "CLOUD_PLATFORM_SCOPE", "REFRESH_MARGIN_S",
]
