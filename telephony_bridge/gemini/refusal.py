"""Which Gemini failures no retry can fix, decided once, here (pure: no I/O, no clock).

The Live API refuses a connection in two places, and says why in words, not only in a code:

* **At the websocket upgrade**, as an HTTP status (:func:`classify_handshake`).
* **With a close frame**, usually right after ``setup`` and before ``setupComplete``
  (:func:`classify_close`). The code alone is not enough: a bad key, a location the API does not
  serve and a malformed setup all close with 1007; a model the service no longer serves, a
  permission problem and a stale resumption handle all close with 1008; an exhausted quota closes
  with 1011, the code of a transient server error. So the close *reason* is read first.

Reasons the service sends (quoted from reports against the real service; a close reason is cut at
123 bytes, so patterns match the front of a sentence, never its end)::

    1008 models/gemini-2.0-flash is not found for API version v1alpha, or is not supported
         for bidiGenerateContent                                        -> model_not_found
    1007 API key not valid. Please pass a valid API key.                 -> bad_key
    1007 API key expired. Please renew the API key.                      -> bad_key
    1008 Your API key was reported as leaked. Please use another API key. -> bad_key
    1008 Permission denied on resource project None.                     -> permission
    1007 User location is not supported for the API use.                 -> permission
    1007 Request contains an invalid argument.   (at setup)              -> invalid_setup
    1011 You exceeded your current quota, please check your plan and billing details. For
         more information on this error, head to: h        (after setupComplete) -> quota
    1008 BidiGenerateContent session not found  (resuming)               -> None: stale handle
    1011 Internal error encountered.                                     -> None: transient

:data:`None` means "retry": a transient close (1011 without a quota reason, 1006, …) or a stale
handle (1008 while resuming), for which the caller keeps today's reconnect-and-resume path. A
:class:`Refusal` means "stop": the call apologises and ends, and the service's own words are
kept in :attr:`Refusal.reason` for the log. ``unreachable`` is never a verdict on one failure:
it is what the call concludes when its reconnect policy runs out (:func:`unreachable`).

Quota is a refusal at once, not after retries: a session opened with the quota spent still gets
``setupComplete`` and is closed ~0.8 s later, every time, until a per-minute or per-day bucket
refills, which is beyond what a caller on the line will wait for.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from .session import TRANSIENT_CLOSE_CODES

#: Keep this much of the service's reason (a close reason is at most 123 bytes anyway).
MAX_REASON_CHARS = 200


class RefusalKind(str, enum.Enum):
    MODEL_NOT_FOUND = "model_not_found"
    BAD_KEY = "bad_key"
    PERMISSION = "permission"
    INVALID_SETUP = "invalid_setup"
    #: 1007/1008 in the middle of a session, for a reason this module does not know.
    INVALID_REQUEST = "invalid_request"
    QUOTA = "quota"
    #: No connection could be had within the reconnect policy (refused, timed out, 5xx).
    UNREACHABLE = "unreachable"


#: Refusals caused by how this deployment is configured (model, key, project, setup): every
#: call will meet them until an operator changes something. The circuit breaker counts these.
CONFIGURATION_KINDS = frozenset({RefusalKind.MODEL_NOT_FOUND, RefusalKind.BAD_KEY, RefusalKind.PERMISSION,
                                 RefusalKind.INVALID_SETUP})


@dataclass(frozen=True, slots=True)
class Refusal:
    kind: RefusalKind
    #: The service's words (close reason or HTTP body), trimmed; never contains our key.
    reason: str = ""
    #: The websocket close code, when the refusal came as a close frame.
    code: int | None = None
    #: The HTTP status, when the upgrade itself was refused.
    status: int | None = None

    @property
    def configuration(self) -> bool:
        return self.kind in CONFIGURATION_KINDS


# Ordered: the first pattern that matches decides (quota before permission: the quota sentence
# mentions "billing"; model before the stale-handle rule: both are 1008).
_PATTERNS: tuple[tuple[RefusalKind, re.Pattern[str]], ...] = (
    (RefusalKind.QUOTA, re.compile(r"exceeded your current quota|RESOURCE_EXHAUSTED|quota exceeded", re.I)),
    (RefusalKind.BAD_KEY, re.compile(r"API[ _]key (?:not valid|expired|not found|invalid)|API_KEY_INVALID|"
                                     r"reported as leaked|unregistered callers|"
                                     r"invalid authentication credentials|UNAUTHENTICATED", re.I)),
    (RefusalKind.PERMISSION, re.compile(r"permission denied|PERMISSION_DENIED|does not have permission|"
                                        r"location is not supported|has not been used in project|"
                                        r"SERVICE_DISABLED|has been disabled|API is disabled", re.I)),
    (RefusalKind.MODEL_NOT_FOUND, re.compile(r"is not found for API version|"
                                             r"not supported for bidiGenerateContent|"
                                             r"Publisher Model .* (?:was )?not found|"
                                             r"\bmodels?/\S+ (?:is )?not found", re.I)),
)


def _trim(text: str) -> str:
    text = " ".join(str(text).split())
    return text[:MAX_REASON_CHARS]


def _by_reason(text: str) -> RefusalKind | None:
    for kind, pattern in _PATTERNS:
        if pattern.search(text):
            return kind
    return None


def classify_close(code: int | None, reason: str, *, at_setup: bool, resuming: bool) -> Refusal | None:
    """A Gemini websocket closed. ``at_setup``: before ``setupComplete`` on this connection;
    ``resuming``: its ``setup`` carried a resumption handle. None: retry (transient or stale
    handle); a :class:`Refusal`: no retry can fix it."""
    text = _trim(reason)
    kind = _by_reason(text)
    if kind is not None:
        return Refusal(kind, text, code=code)
    if code is None or code in TRANSIENT_CLOSE_CODES:
        return None
    if code == 1008 and resuming:
        return None  # the handle was refused ("session not found", expired): start afresh
    if code == 1008 and at_setup and "entity was not found" in text:
        return Refusal(RefusalKind.MODEL_NOT_FOUND, text, code=code)  # Vertex AI's wording
    return Refusal(RefusalKind.INVALID_SETUP if at_setup else RefusalKind.INVALID_REQUEST, text, code=code)


def classify_handshake(status: int, body: str = "") -> Refusal | None:
    """The websocket upgrade was answered with HTTP ``status``. None: retry (5xx, 408, …)."""
    text = _trim(body)
    kind = _by_reason(text)
    if status in (400, 401, 403, 429) and kind is not None:
        return Refusal(kind, text, status=status)
    if status == 401:
        return Refusal(RefusalKind.BAD_KEY, text, status=status)
    if status == 403:
        return Refusal(RefusalKind.PERMISSION, text, status=status)
    if status == 429:
        return Refusal(RefusalKind.QUOTA, text, status=status)
    if status in (400, 404, 405, 426):
        # The request itself is wrong (a 404 is a wrong GEMINI_LIVE_URL path): same next time.
        return Refusal(RefusalKind.INVALID_SETUP, text or f"HTTP {status}", status=status)
    return None


def credentials_refused(kind: str, message: str) -> Refusal | None:
    """Our own side could not produce credentials (``BackendAuthError``: no ADC, a bad key file,
    the token endpoint refused them): as final as a bad key. None for ``network`` (retry)."""
    if kind == "network":
        return None
    return Refusal(RefusalKind.BAD_KEY, _trim(message))


def unreachable(last_failure: str) -> Refusal:
    """The reconnect policy ran out: what the call concludes from its last failure."""
    return Refusal(RefusalKind.UNREACHABLE, _trim(last_failure))


__all__ = ["Refusal", "RefusalKind", "CONFIGURATION_KINDS", "classify_close", "classify_handshake", "credentials_refused",
           "unreachable"]
