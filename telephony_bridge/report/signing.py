"""Webhook signatures: HMAC-SHA256 over ``"{timestamp}.{body}"``, as Stripe signs its events.

Each delivery carries::

    Bridge-Signature: t=1767225600,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd
    Idempotency-Key:  CA0123...:webhook        (the same on every retry of one delivery)
    Content-Type:     application/json

``t`` is when this attempt was signed (each retry signs afresh), ``v1`` the hex HMAC-SHA256 of
``t``, a dot and the raw body bytes under ``REPORT_WEBHOOK_SECRET``. A receiver recomputes it,
compares in constant time and refuses a timestamp more than ``tolerance_s`` (300 s) away from its
clock, so a request captured and replayed later is refused; a retry within the window is a
duplicate the receiver drops by its ``Idempotency-Key``. :func:`verify` is the same code the README
shows (the README's copy is tested on its own).
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Bridge-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
TOLERANCE_S = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Bridge-Signature`` header value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, body: bytes, header: str | None, tolerance_s: int = TOLERANCE_S,
           now: float | None = None) -> bool:
    """``header`` signs ``body`` with ``secret`` and is at most ``tolerance_s`` old (or ahead)."""
    if not header:
        return False
    try:
        pairs = [part.strip().split("=", 1) for part in header.split(",")]
        items = {k: v for k, v in pairs}
        timestamp = int(items["t"])
    except (KeyError, ValueError):
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        return False  # a replay of an old request (or a clock far off)
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return any(k == "v1" and hmac.compare_digest(expected, v) for k, v in pairs)


__all__ = ["sign", "verify", "SIGNATURE_HEADER", "IDEMPOTENCY_HEADER", "TOLERANCE_S"]
