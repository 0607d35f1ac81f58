"""Strict JSON decoding for peer input (Twilio and Gemini frames).

``json.loads`` accepts ``NaN``, ``Infinity`` and ``-Infinity``, which no peer may send us, and
``json.loads(s, parse_constant=...)`` builds a new ``JSONDecoder`` on every call, which costs more
than decoding a 300-byte media frame. :func:`loads_strict` is ``json.loads`` with those constants
rejected and the decoder built once. It raises what ``json.loads`` raises (``ValueError``,
``UnicodeDecodeError``, ``RecursionError``); each parser turns that into its typed error.
"""

from __future__ import annotations

import json
from typing import Any


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_scan_once = _DECODER.scan_once  # the C scanner behind decode()


def loads_strict(data: str | bytes | bytearray) -> Any:
    """``json.loads(data)`` without NaN/Infinity, the decoder built once."""
    if isinstance(data, str):
        if data.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
    else:
        data = data.decode(json.detect_encoding(data), "surrogatepass")
    # A document with no whitespace around it (every peer frame) in one scanner call; anything
    # else (spaces, trailing data, an error to report) through decode() and its messages.
    try:
        value, end = _scan_once(data, 0)
    except StopIteration:
        end = -1
    if end == len(data):
        return value
    return _DECODER.decode(data)
