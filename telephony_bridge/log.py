"""Structured (one JSON object per line) logging.

``log_event(logger, "call.turn", call_sid=..., latency_ms=...)`` writes an event name plus
fields. Secrets are never passed in; :func:`redact` masks known secret values defensively in
every rendered line anyway.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_SECRETS: set[str] = set()
#: The secrets longest first: one that contains another is masked whole, not around the shorter.
_ORDER: tuple[str, ...] = ()


def register_secret(value: str | None) -> None:
    """Mask this value (e.g. an API key) in every log line from now on."""
    global _ORDER
    if value and len(value) >= 6 and value not in _SECRETS:
        _SECRETS.add(value)
        _ORDER = tuple(sorted(_SECRETS, key=len, reverse=True))


def unregister_secret(value: str | None) -> None:
    """Stop masking ``value`` (a rotated credential that has expired)."""
    global _ORDER
    if value and value in _SECRETS:
        _SECRETS.discard(value)
        _ORDER = tuple(sorted(_SECRETS, key=len, reverse=True))


def redact(text: str) -> str:
    for secret in _ORDER:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(out, default=str, separators=(",", ":")))


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})


#: Libraries whose warnings and errors a call can cause (a TLS socket dying under a write, an
#: exception in the ASGI app, a refused handshake): they get the same one-line JSON as ours, not
#: the bare multi-line tracebacks of Python's last-resort handler or uvicorn's own format.
LIBRARY_LOGGERS = ("asyncio", "uvicorn", "websockets")


def setup_logging(level: str = "INFO", stream: Any = None) -> None:
    """Our loggers at ``level`` and the libraries' at WARNING or above, one JSON object per line.
    (uvicorn must then run with ``log_config=None``: serving.py's ``server_config`` does.)"""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("telephony_bridge")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    for name in LIBRARY_LOGGERS:
        lib = logging.getLogger(name)
        lib.handlers[:] = [handler]
        lib.setLevel(max(logging.WARNING, root.level))
        lib.propagate = False
    logging.Formatter.converter = time.gmtime
