"""One probe connection to Gemini (an adapter): does the service accept our setup now?

Used by the server while the refusal breaker is open (:mod:`telephony_bridge.gemini.breaker`):
it opens a connection with the same ``setup`` a call would send, waits for ``setupComplete`` (or
the refusal), closes it and says which, classified by :mod:`telephony_bridge.gemini.refusal`.
Bounded: one connection, ``timeout`` seconds at most; the caller spaces probes out.
"""

from __future__ import annotations

import asyncio

from typing import TYPE_CHECKING

from .backend import BackendAuthError
from .client import GeminiLiveClient, closed_during_setup, upgrade_refused
from .refusal import Refusal, RefusalKind, classify_close, classify_handshake, credentials_refused, unreachable

if TYPE_CHECKING:
    from .backend import LiveBackend


def refusal_from_connect_error(exc: BaseException) -> Refusal:
    """Why opening a session failed, as one :class:`Refusal` (``unreachable`` when a retry may
    fix it: refused TCP, timeout, 5xx, a transient close). Shared by the probe and ``doctor``."""
    reason = f"{type(exc).__name__}: {exc}"[:200]
    if isinstance(exc, BackendAuthError):
        verdict = credentials_refused(exc.kind, str(exc))
    elif (close := closed_during_setup(exc)) is not None:
        verdict = classify_close(close[0], close[1], at_setup=True, resuming=False)
        if verdict is None:
            return Refusal(RefusalKind.UNREACHABLE, close[1] or reason, code=close[0])
    elif (refused := upgrade_refused(exc)) is not None:
        verdict = classify_handshake(refused[0], refused[1] or reason)
        if verdict is None:
            return Refusal(RefusalKind.UNREACHABLE, refused[1].strip()[:160] or reason, status=refused[0])
    else:
        verdict = None
    return verdict if verdict is not None else unreachable(reason)


async def probe(backend: LiveBackend, setup_message: str, *, timeout: float = 10.0) -> Refusal | None:
    """None when the service answered ``setupComplete``; else why not."""
    try:
        async with asyncio.timeout(timeout):
            endpoint = await backend.endpoint()  # fresh credentials, as a call would have
            client = await GeminiLiveClient.connect(endpoint, setup_message, timeout=timeout)
    except Exception as exc:  # whatever went wrong, a probe reports it, never raises
        return refusal_from_connect_error(exc)
    try:
        async with asyncio.timeout(2.0):
            await client.close()
    except Exception:
        pass
    return None


__all__ = ["probe", "refusal_from_connect_error"]
