"""Where the review pages get their data: the store, the live calls, the recordings, the report."""

from __future__ import annotations

import asyncio
import re
import wave
from typing import Any

import numpy as np

from ..dsp import pcm16_to_ulaw
from .model import list_row

_SID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # as the server's: also safe as a file and object name


def safe_sid(value: Any) -> str | None:
    return value if isinstance(value, str) and _SID.fullmatch(value) else None


#: How many calls the list shows.
LIST_LIMIT = 200


async def report_for(store: Any, call_sid: str | None) -> dict[str, Any] | None:
    """The call's post-call report (:mod:`telephony_bridge.report`), None when it has none. A
    store that fails here costs the page its report, not the page."""
    if not call_sid:
        return None
    try:
        report = await store.get_report(call_sid)
    except Exception:
        return None
    return report if isinstance(report, dict) else None


async def call_record(raw_sid: str, store: Any, calls: Any) -> dict[str, Any] | None:
    """A finished call's stored record, or a live call's record so far."""
    sid = safe_sid(raw_sid)
    if sid is None:
        return None
    live = calls.by_call_sid(sid) if calls is not None else None
    if live is not None and live.ended is None:
        return live.record()
    return await store.get_record(sid)


async def recent_rows(store: Any, calls: Any) -> list[dict[str, Any]]:
    records = await store.recent_records(LIST_LIMIT)
    reports = await asyncio.gather(*(report_for(store, r.get("call_sid")) for r in records))
    return [list_row(r, rep) for r, rep in zip(records, reports)]


def read_channels(path: Any) -> tuple[bytes, bytes]:
    """A stereo PCM16 recording as two μ-law tracks (what the levels are computed from)."""
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 2 or w.getsampwidth() != 2:
            raise ValueError("not a stereo PCM16 recording")
        data = w.readframes(w.getnframes())
    x = np.frombuffer(data, dtype="<i2").reshape(-1, 2)
    return pcm16_to_ulaw(x[:, 0].tobytes()), pcm16_to_ulaw(x[:, 1].tobytes())


async def load_channels(record: dict[str, Any], recordings: Any) -> tuple[bytes | None, bytes | None]:
    if recordings is None or not record.get("recording"):
        return None, None
    path = await recordings.wav_path(record["call_sid"])
    if path is None:
        return None, None
    try:
        return await asyncio.to_thread(read_channels, path)
    except (OSError, ValueError, EOFError, wave.Error):
        return None, None
