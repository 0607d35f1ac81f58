"""One probe connection to Gemini (an adapter): does the service accept our setup now?

Used by the server while the refusal breaker is open (:mod:`telephony_bridge.gemini.breaker`):
it opens a connection with the same ``setup`` a call would send, waits for ``setupComplete`` (or
the refusal), closes it and says which, classified by :mod:`telephony_bridge.gemini.refusal`.
Bounded: one connection, ``timeout`` seconds at most; the caller spaces probes out.
"""

from __future__ import annotations

import asyncio

from .client import GeminiLiveClient, closed_during_setup, upgrade_refused
from .refusal import Refusal, classify_close, classify_handshake, unreachable


async def probe(url: str, api_key: str, setup_message: str, *, timeout: float = 10.0) -> Refusal | None:
    """None when the service answered ``setupComplete``; else why not (``unreachable`` for a
    failure a retry may fix: refused TCP, timeout, 5xx, a transient close)."""
    try:
        async with asyncio.timeout(timeout):
            client = await GeminiLiveClient.connect(url, api_key, setup_message, timeout=timeout)
    except Exception as exc:  # whatever went wrong, a probe reports it, never raises
        reason = f"{type(exc).__name__}: {exc}"[:200]
        close = closed_during_setup(exc)
        refused = upgrade_refused(exc)
        if close is not None:
            verdict = classify_close(close[0], close[1], at_setup=True, resuming=False)
        elif refused is not None:
            verdict = classify_handshake(refused[0], refused[1] or reason)
        else:
            verdict = None
        return verdict if verdict is not None else unreachable(reason)
    try:
        async with asyncio.timeout(2.0):
            await client.close()
    except Exception:
        pass
    return None


__all__ = ["probe"]
