"""Who may connect: the paths the emulator serves and the credentials each wants (no I/O).

Two services, one emulator:

* **Gemini API** (``generativelanguage``): the ``v1beta`` and ``v1``
  ``…GenerativeService.BidiGenerateContent`` paths, an API key in ``x-goog-api-key`` or ``?key=``.
* **Vertex AI** (``aiplatform``): the ``v1beta1`` (google-genai's default) and ``v1``
  ``…LlmBidiService/BidiGenerateContent`` paths, ``Authorization: Bearer <OAuth token>`` (checked
  against a :class:`~telephony_bridge.testing.oauth.TokenEndpoint`: only tokens it issued and has
  not seen expire), or an API key in ``x-goog-api-key`` (Vertex AI express mode).

:func:`check` answers one upgrade request: ``None`` (let it in) or the HTTP status and body the
service would send. Bodies follow the service's words: 401 for a missing credential or a token it
did not issue ("Request had invalid authentication credentials…", Google's UNAUTHENTICATED
sentence), 403 for a wrong key ("API key not valid…"). A credential is only checked when the
emulator was given one to check against (an ``api_key``, an OAuth endpoint); given neither, anyone
may connect, as before.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import parse_qs

V1BETA_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
V1_PATH = "/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent"
VERTEX_PATH = "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"
VERTEX_V1_PATH = "/ws/google.cloud.aiplatform.v1.LlmBidiService/BidiGenerateContent"

Backend = Literal["gemini-api", "vertex"]

#: path -> (backend, API version)
PATH_INFO: dict[str, tuple[Backend, str]] = {
    V1BETA_PATH: ("gemini-api", "v1beta"),
    V1_PATH: ("gemini-api", "v1"),
    VERTEX_PATH: ("vertex", "v1beta1"),
    VERTEX_V1_PATH: ("vertex", "v1"),
}

MISSING_CREDENTIAL = ("Request is missing required authentication credential. Expected OAuth 2 access "
                      "token, login cookie or other valid authentication credential.")
INVALID_CREDENTIAL = ("Request had invalid authentication credentials. Expected OAuth 2 access token, "
                      "login cookie or other valid authentication credential.")
KEY_REQUIRED = "API key required"
KEY_INVALID = "API key not valid. Please pass a valid API key."


class TokenChecker(Protocol):
    def accepts(self, token: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Admitted:
    backend: Backend
    api_version: str
    #: What the client proved itself with: "api_key", "bearer", or None (nothing was checked).
    auth: Literal["api_key", "bearer"] | None


@dataclass(frozen=True, slots=True)
class Refused:
    status: int
    body: str


def request_key(headers: Mapping[str, str], query: str) -> str | None:
    key = headers.get("x-goog-api-key")
    if key is None:
        key = (parse_qs(query).get("key") or [None])[0]
    return key


def bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else ""


def check(path: str, query: str, headers: Mapping[str, str], *, api_key: str | None,
          oauth: TokenChecker | None, key_at_setup: bool = False) -> Admitted | Refused | None:
    """``None``: not a path served here (HTTP 404). ``key_at_setup``: a Gemini API key is checked
    at ``setup`` instead (the connection does it, with close 1007, as the service does)."""
    info = PATH_INFO.get(path)
    if info is None:
        return None
    backend, version = info
    key = request_key(headers, query)
    if backend == "gemini-api":
        if api_key is None or key_at_setup:
            return Admitted(backend, version, None)  # nothing checked here (maybe at setup)
        if key is None:
            return Refused(401, KEY_REQUIRED)
        if not secrets.compare_digest(key, api_key):
            return Refused(403, KEY_INVALID)
        return Admitted(backend, version, "api_key")
    token = bearer(headers)
    if token is not None:
        if oauth is None and api_key is None:
            return Admitted(backend, version, None)
        if oauth is None or not token or not oauth.accepts(token):
            return Refused(401, INVALID_CREDENTIAL)
        return Admitted(backend, version, "bearer")
    if key is not None:  # express mode
        if api_key is None:
            return Admitted(backend, version, None) if oauth is None else Refused(401, INVALID_CREDENTIAL)
        if not secrets.compare_digest(key, api_key):
            return Refused(403, KEY_INVALID)
        return Admitted(backend, version, "api_key")
    if api_key is None and oauth is None:
        return Admitted(backend, version, None)
    return Refused(401, MISSING_CREDENTIAL)


__all__ = [
    "V1BETA_PATH", "V1_PATH", "VERTEX_PATH", "VERTEX_V1_PATH", "PATH_INFO", "Admitted", "Refused", "check",
    "request_key", "bearer", "MISSING_CREDENTIAL", "INVALID_CREDENTIAL", "KEY_REQUIRED", "KEY_INVALID",
]
