"""The review pages' login: the operator token once, in a POST form, then a signed cookie.

The cookie is ``{expiry}.{HMAC-SHA256(key, expiry)}`` with the key derived from the operator
token (a new token logs everyone out), HttpOnly (no script reads it), SameSite=Strict (no other
site's page can make the browser send it: the forms need no CSRF token), Secure when the bridge
is served over https, and it expires (:data:`COOKIE_TTL_S`). The token never travels in a URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

COOKIE = "tb_review"
COOKIE_TTL_S = 12 * 3600
_CONTEXT = b"telephony-bridge review cookie v1"


def _key(token: str) -> bytes:
    return hmac.new(token.encode("utf-8"), _CONTEXT, hashlib.sha256).digest()


def _sig(token: str, expiry: int) -> str:
    mac = hmac.new(_key(token), str(expiry).encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")


def issue(token: str, now: float, ttl_s: int = COOKIE_TTL_S) -> str:
    """A cookie value good until ``now + ttl_s``."""
    expiry = int(now) + ttl_s
    return f"{expiry}.{_sig(token, expiry)}"


def valid(token: str | None, value: str | None, now: float) -> bool:
    """The cookie was issued with this token and has not expired."""
    if not token or not value or "." not in value or len(value) > 200:
        return False
    raw_expiry, sig = value.split(".", 1)
    if not raw_expiry.isdigit():
        return False
    expiry = int(raw_expiry)
    if expiry <= now:
        return False
    return hmac.compare_digest(sig, _sig(token, expiry))


def token_matches(token: str | None, given: str | None) -> bool:
    """The form's token is the operator token (constant time)."""
    if not token or not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))
