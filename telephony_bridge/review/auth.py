"""The review pages' login: the operator token once, in a POST form, then a signed cookie.

The cookie is ``{expiry}.{HMAC-SHA256(key, expiry)}`` with the key derived from the operator
token (a new token logs everyone out), HttpOnly (no script reads it), SameSite=Strict (no other
site's page can make the browser send it: the forms need no CSRF token), Secure when the bridge
is served over https, and it expires (:data:`COOKIE_TTL_S`). The token never travels in a URL.

Guessing is slowed down by :class:`LoginThrottle`: after :data:`MAX_FAILURES` wrong tokens from
one client within :data:`FAILURE_WINDOW_S`, its logins are refused (429, ``Retry-After``) until
the oldest of them leaves the window; a right token clears its record.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import OrderedDict, deque

COOKIE = "tb_review"
COOKIE_TTL_S = 12 * 3600
_CONTEXT = b"telephony-bridge review cookie v1"
MAX_FAILURES = 5
FAILURE_WINDOW_S = 300.0
#: Clients remembered at most (the oldest forgotten first), so a flood of addresses costs bounded memory.
MAX_CLIENTS = 10_000


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


class LoginThrottle:
    """Wrong tokens per client (its address) in a sliding window; time is passed in."""

    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = FAILURE_WINDOW_S,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str, now: float) -> float | None:
        """Seconds until ``client`` may try again; None: it may now."""
        times = self._recent(client, now)
        if times is None or len(times) < self.max_failures:
            return None
        return max(0.0, times[0] + self.window_s - now)

    def failed(self, client: str, now: float) -> None:
        times = self._recent(client, now)
        if times is None:
            times = self._failures[client] = deque(maxlen=self.max_failures)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
        times.append(now)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
