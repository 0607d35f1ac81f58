"""The call state kept in the store: how ``/twiml/continue`` (on any replica) knows what to do.

Twilio requests ``<Connect action>`` whenever our stream closes. The state says why it closed::

    "active"                           the stream was cut (a replica died): open a new one
    "ended:<reason>"                   the call ended on purpose: <Hangup/>
    "ended:<reason>;say-goodbye"       ended, but its last phrase was not heard on the stream
                                       (no phrase to play, the stream dropped, no mark came
                                       back): <Say> it, then <Hangup/>

e.g. ``"ended:end_call:done"``, ``"ended:caller-hangup"``,
``"ended:gemini-refused:model_not_found"``.
"""

from __future__ import annotations

from dataclasses import dataclass

ACTIVE = "active"
_ENDED = "ended:"
_SAY = ";say-goodbye"


def ended(reason: str, *, say_goodbye: bool = False) -> str:
    return f"{_ENDED}{reason}{_SAY if say_goodbye else ''}"


@dataclass(frozen=True, slots=True)
class CallState:
    active: bool = False
    ended: bool = False
    reason: str | None = None
    say_goodbye: bool = False


def parse(state: str | None) -> CallState:
    """``None`` (unknown call) and anything unrecognised are neither active nor ended."""
    if state == ACTIVE:
        return CallState(active=True)
    if isinstance(state, str) and state.startswith(_ENDED):
        reason = state[len(_ENDED):]
        say = reason.endswith(_SAY)
        return CallState(ended=True, reason=reason.removesuffix(_SAY), say_goodbye=say)
    return CallState()


__all__ = ["ACTIVE", "CallState", "ended", "parse"]
