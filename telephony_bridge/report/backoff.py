"""When to try again: backoff with bounded jitter, ``Retry-After``, leases (pure, no clock).

Everything takes the attempt number and, where randomness is involved, a number in [0, 1) from
the caller, so each delay is a plain function and is unit-tested on a fake clock.

* :meth:`RetryPolicy.delay`: ``base * 2**(attempt-1)`` capped at ``cap``, minus up to ``jitter``
  of itself (so replicas retrying the same receiver spread out, and no delay is ever longer than
  the cap); a ``Retry-After`` the peer sent wins when it is longer, up to ``max_retry_after``.
* :func:`parse_retry_after`: seconds or an HTTP-date (RFC 9110 §10.2.3); garbage is ``None``.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    #: Attempts in all (the first one included).
    attempts: int = 3
    base_s: float = 1.0
    cap_s: float = 60.0
    #: Up to this fraction of a delay is taken off at random (0: none; 1: "full jitter").
    jitter: float = 0.25
    #: A peer's Retry-After is honoured up to this.
    max_retry_after_s: float = 300.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_s < 0 or self.cap_s < self.base_s or not 0 <= self.jitter <= 1:
            raise ValueError(f"bad retry policy {self}")

    def exhausted(self, attempt: int) -> bool:
        """``attempt`` (1-based, just made) was the last one."""
        return attempt >= self.attempts

    def delay(self, attempt: int, rand: float, retry_after_s: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based); ``rand`` in [0, 1)."""
        full = min(self.cap_s, self.base_s * (2 ** max(0, attempt - 1)))
        wait = full * (1.0 - self.jitter * min(max(rand, 0.0), 1.0))
        if retry_after_s is not None and retry_after_s > wait:
            wait = min(retry_after_s, self.max_retry_after_s)
        return wait

    def bounds(self, attempt: int) -> tuple[float, float]:
        """The range :meth:`delay` can answer without a Retry-After."""
        full = min(self.cap_s, self.base_s * (2 ** max(0, attempt - 1)))
        return full * (1.0 - self.jitter), full


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """``Retry-After`` as seconds from ``now_epoch``: ``"7"`` or an HTTP-date; else ``None``."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value), 86400))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now_epoch)


__all__ = ["RetryPolicy", "parse_retry_after"]
