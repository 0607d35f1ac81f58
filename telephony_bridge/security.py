"""The front door: who may place a call, open a stream or read call data.

A public phone bridge is an open door to a paid API. What is checked, and where::

    POST /twiml, /twiml/continue  X-Twilio-Signature over PUBLIC_URL + path (+ the query string Twilio
                                  requested) and every form field                      bad/missing → 403
    WS   /media-stream  upgrade   X-Twilio-Signature over Settings.stream_url exactly as written in
                                  the TwiML, empty params                              bad → close 1008
                        ``start`` the per-call stream token (<Parameter name="stream_token">): an
                                  HMAC-SHA256 of the CallSid and an expiry under STREAM_TOKEN_SECRET,
                                  single use in this process                           bad → close 1008
    GET  /metrics, /calls/…       Authorization: Bearer OPERATOR_TOKEN, constant time; 404 when unset

Why the stream needs a token on top of the signature: Twilio signs the websocket upgrade over the
URL alone (no params), so that signature is the *same for every call*. Anyone who sees it once
(a proxy log, a packet capture before TLS termination) could replay it forever. The token binds
a stream to one call the webhook answered, for a short time, once.

URLs are always built from the configured public URL, never from ``Host`` or
``X-Forwarded-*`` headers, which the client controls.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from twilio.request_validator import RequestValidator

#: Name of the ``<Parameter>`` that carries the stream token (it comes back in ``start``).
TOKEN_PARAMETER = "stream_token"
#: Largest webhook body read (Twilio's form is ~1-2 KB).
MAX_FORM_BYTES = 64 * 1024
_MAX_SIGNATURE_CHARS = 200
_MAX_TOKEN_CHARS = 200
_SID = re.compile(r"[A-Za-z0-9_-]{1,64}")


# ---------------------------------------------------------------------------------------------
# Twilio request signatures


class TwilioSignatures:
    """``X-Twilio-Signature`` checks (HMAC-SHA1 under the account's auth token)."""

    def __init__(self, auth_token: str) -> None:
        self._validator = RequestValidator(auth_token)

    def _valid(self, url: str, params: Any, signature: str | None) -> bool:
        if not signature or len(signature) > _MAX_SIGNATURE_CHARS:
            return False
        try:
            return bool(self._validator.validate(url, params, signature))
        except Exception:  # a malformed header must read as "invalid", never as a 500
            return False

    def webhook_ok(self, url: str, form: Iterable[tuple[str, str]], signature: str | None) -> bool:
        """``url``: the public URL Twilio requested; ``form``: every field, repeats included."""
        return self._valid(url, ImmutableMultiDict(list(form)), signature)

    def stream_ok(self, stream_url: str, signature: str | None) -> bool:
        """The websocket upgrade: signed over the URL as written in the TwiML, with no params."""
        return self._valid(stream_url, {}, signature)


async def read_form(request: Request, limit: int = MAX_FORM_BYTES) -> list[tuple[str, str]] | None:
    """The url-encoded form as (name, value) pairs; None when the body is over ``limit``.

    Read in chunks and abandoned past the limit, so a huge body never sits in memory.
    """
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)


def public_request_url(public_base: str, path: str, query: str = "") -> str:
    """The URL Twilio requested, rebuilt from our configured public base URL (not from headers).

    ``path`` is the route's own path (a proxy may strip a prefix before we see the request);
    ``query`` is the raw query string of the request line, which Twilio's signature covers.
    """
    url = public_base.rstrip("/") + path
    return f"{url}?{query}" if query else url


# ---------------------------------------------------------------------------------------------
# Per-call stream tokens


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class StreamTokens:
    """Mints and checks per-call stream tokens: ``v1.<expiry>.<nonce>.<mac>``.

    ``mac`` = HMAC-SHA256(secret, ``"v1\\n" + CallSid + "\\n" + expiry + "\\n" + nonce``), URL-safe
    base64, where ``expiry`` is a Unix time in whole seconds and ``nonce`` 8 random bytes (two
    tokens for one call in the same second, e.g. a reconnect, still differ). A token is accepted
    once (per process): a replay is refused until it expires, then refused as expired.

    ``secret=None`` draws a random secret: tokens then only verify in the process that minted
    them, so a deployment with several replicas must set ``STREAM_TOKEN_SECRET`` on all of them.
    """

    def __init__(self, secret: str | bytes | None, ttl_s: float = 120.0) -> None:
        if secret is None:
            secret = secrets.token_bytes(32)
        self._key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        self.ttl_s = ttl_s
        self._used: dict[str, int] = {}  # mac → expiry, for tokens already accepted

    def _mac(self, call_sid: str, expiry: int, nonce: str) -> str:
        message = f"v1\n{call_sid}\n{expiry}\n{nonce}".encode()
        return _b64url(hmac.new(self._key, message, hashlib.sha256).digest())

    def issue(self, call_sid: str, now: float | None = None) -> str:
        now = time.time() if now is None else now
        expiry = int(now + self.ttl_s)
        nonce = _b64url(secrets.token_bytes(8))
        return f"v1.{expiry}.{nonce}.{self._mac(call_sid, expiry, nonce)}"

    def check(self, token: Any, call_sid: str, now: float | None = None) -> str | None:
        """None when ``token`` admits a stream for ``call_sid`` now; else a short reason.

        Reasons (safe to log; they carry no secret): ``missing``, ``malformed``, ``bad-mac``
        (forged, or minted for another call or another secret), ``expired``, ``replayed``.
        """
        now = time.time() if now is None else now
        if not token:
            return "missing"
        if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS or not token.isascii():
            return "malformed"
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != "v1" or not parts[1].isdigit() or len(parts[1]) > 12:
            return "malformed"
        if not isinstance(call_sid, str) or not _SID.fullmatch(call_sid):
            return "malformed"
        expiry = int(parts[1])
        expected = self._mac(call_sid, expiry, parts[2])
        if not hmac.compare_digest(expected.encode("ascii"), parts[3].encode("ascii")):
            return "bad-mac"
        if now > expiry:
            return "expired"
        if expiry > now + self.ttl_s + 60:  # valid MAC but a lifetime we never grant
            return "malformed"
        self._forget_expired(now)
        if expected in self._used:
            return "replayed"
        self._used[expected] = expiry
        return None

    def _forget_expired(self, now: float) -> None:
        if len(self._used) < 64:
            return
        for mac, expiry in list(self._used.items()):
            if expiry < now:
                del self._used[mac]


# ---------------------------------------------------------------------------------------------
# Operator endpoints


def bearer_matches(authorization: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time (length included: both
    sides are hashed first, so the comparison does not stop early on a length mismatch)."""
    if not authorization or not token:
        return False
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    presented = presented.strip()
    return hmac.compare_digest(hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest(),
                               hashlib.sha256(token.encode("utf-8")).digest())


def operator_denied(request: Request, token: str | None) -> Response | None:
    """None when ``request`` may read private data; else the response to send instead.

    With no operator token configured the private endpoints do not exist (404, as if the route
    were absent); with one, a missing or wrong bearer token gets 401.
    """
    if not token:
        return PlainTextResponse("Not Found", status_code=404)
    if not bearer_matches(request.headers.get("authorization"), token):
        return PlainTextResponse("Unauthorized", status_code=401,
                                 headers={"WWW-Authenticate": 'Bearer realm="operator"'})
    return None


Endpoint = Callable[[Request], Awaitable[Response]]


def operator_only(token: str | None) -> Callable[[Endpoint], Endpoint]:
    """Decorator for a Starlette endpoint that serves call data or metrics::

        @operator_only(settings.operator_token)
        async def call_record(request: Request) -> Response: ...
    """

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            denied = operator_denied(request, token)
            if denied is not None:
                return denied
            return await endpoint(request)

        return guarded

    return decorate


class HeaderRedaction(logging.Filter):
    """Masks credential headers in ``websockets``' DEBUG handshake lines (``> name: value``).

    At DEBUG, websockets logs every handshake header, and the Gemini key travels in one
    (``x-goog-api-key``); Twilio's replayable stream signature and operator bearer tokens come in
    others. Installed on the ``websockets.client`` and ``websockets.server`` loggers.
    """

    SENSITIVE = frozenset({"x-goog-api-key", "authorization", "x-twilio-signature", "cookie", "proxy-authorization"})

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (record.msg in ("> %s: %s", "< %s: %s") and isinstance(args, tuple) and len(args) == 2
                and str(args[0]).lower() in self.SENSITIVE):
            record.args = (args[0], "***")
        return True


def install_header_redaction() -> None:
    """Idempotent: add :class:`HeaderRedaction` to the websockets loggers."""
    for name in ("websockets.client", "websockets.server"):
        log = logging.getLogger(name)
        if not any(isinstance(f, HeaderRedaction) for f in log.filters):
            log.addFilter(HeaderRedaction())


def startup_warnings(settings: Any) -> list[str]:
    """Lines ``serve`` prints (and logs) before it starts, loudly."""
    out = []
    if not settings.twilio_signature_check:
        out.append("TWILIO_SIGNATURE_CHECK=off: Twilio signatures are NOT checked. Anyone who finds this "
                   "server can start calls on your Gemini key. Local development only.")
    if settings.stream_token_secret is None:
        out.append("STREAM_TOKEN_SECRET is not set: stream tokens use a random per-process secret, so only "
                   "one replica can serve calls. Set it (the same value everywhere) to run more.")
    return out


__all__ = [
    "MAX_FORM_BYTES", "TOKEN_PARAMETER", "HeaderRedaction", "StreamTokens", "install_header_redaction", "TwilioSignatures", "bearer_matches",
    "operator_denied", "operator_only", "public_request_url", "read_form", "startup_warnings",
]
