"""The call store: what must outlive one connection, one process or one replica.

Per call (keyed by Twilio's CallSid):

* the **call record**: one JSON object (transcripts, notes, tool calls, figures), upserted whole
  and served at ``GET /calls/{call_sid}``;
* the newest **resumption handle** of its Gemini session, so a reconnect, or another replica
  after this process died, resumes the conversation where it was (handles are valid for 2 h,
  so they expire with ``ttl_s``);
* the **report** (:mod:`telephony_bridge.report`): ``{"status": "pending"|"ok"|"failed",
  "reason": …, "report": {…the fields…}}``, saved by :meth:`CallStore.save_report`; the report's
  durable outbox (deliveries with leases) lives beside it (:mod:`telephony_bridge.report.outbox`);
* the **call state**: ``"active"`` while the call runs, ``"ended:<reason>"`` once it ended on
  purpose (``"ended:end_call"``, ``"ended:caller-hangup"``), which is how ``/twiml/continue``
  tells "the bridge died, reconnect" from "the call is over, hang up".

One small async interface, :class:`CallStore`, two implementations:

* :class:`SqliteStore` (the default): an embedded file, stdlib :mod:`sqlite3` in WAL mode, one
  connection owned by one worker thread, so the event loop never blocks on disk and calls are
  serialised without a lock. ``":memory:"`` works (tests, throw-away runs). Several processes on
  one host may share a file (WAL + busy timeout), not several hosts.
* :class:`RedisStore`: :mod:`redis.asyncio`, for several replicas behind one number. Keys are
  ``tb:call:{sid}:record|handle|state``; handles expire after ``ttl_s``; records and states
  after ``record_ttl_s`` (default 7 days, ``None`` keeps them) so Redis does not grow forever.

:func:`open_store` picks one from the settings. Backend failures (Redis unreachable, disk full)
propagate as the backend's own exceptions; a caller that must not drop a call for them (the
bridge) catches and logs them. Programming errors: an empty or oversized call SID is a
:class:`ValueError`, a record that is not a dict a :class:`TypeError`.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

from .errors import ConfigError

T = TypeVar("T")

#: Gemini session resumption handles stay valid for 2 hours.
HANDLE_TTL_S = 7200
#: How long Redis keeps call records and states.
RECORD_TTL_S = 7 * 24 * 3600
KEY_PREFIX = "tb:call:"
MAX_SID_CHARS = 128


def _check_sid(call_sid: str) -> str:
    if not isinstance(call_sid, str) or not call_sid or len(call_sid) > MAX_SID_CHARS \
            or any(c.isspace() or not c.isprintable() for c in call_sid):
        raise ValueError(f"invalid call SID {str(call_sid)[:40]!r}")
    return call_sid


def _encode_record(record: dict) -> str:
    if not isinstance(record, dict):
        raise TypeError(f"a call record must be a dict, not {type(record).__name__}")
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


class CallStore(abc.ABC):
    """Per-call record, resumption handle and state. All methods are coroutines."""

    @abc.abstractmethod
    async def save_record(self, call_sid: str, record: dict) -> None:
        """Insert or replace the whole JSON call record."""

    @abc.abstractmethod
    async def get_record(self, call_sid: str) -> dict | None: ...

    @abc.abstractmethod
    async def set_resumption_handle(self, call_sid: str, handle: str, seat: str | None = None) -> None:
        """Keep the newest resumable Gemini handle (expires after the store's handle TTL), with
        the panel seat (interviewer id) whose session it resumes: a call resumed elsewhere must
        go on in that interviewer's voice, instruction and tools, not the panel's first."""

    @abc.abstractmethod
    async def get_resumption(self, call_sid: str) -> tuple[str | None, str | None]:
        """(handle, seat) as last set; (None, None) when there is none or it expired."""

    async def get_resumption_handle(self, call_sid: str) -> str | None:
        return (await self.get_resumption(call_sid))[0]

    @abc.abstractmethod
    async def set_call_state(self, call_sid: str, state: str) -> None:
        """e.g. ``"active"``, ``"ended:end_call"``, ``"ended:caller-hangup"``."""

    @abc.abstractmethod
    async def get_call_state(self, call_sid: str) -> str | None: ...

    # The phrase cache: line-ready μ-law phrases rendered by TTS (tts_phrases.py), shared by the
    # calls (and, on Redis, the replicas) so each (voice, language, text) is rendered once.
    async def get_phrase(self, key: str) -> bytes | None:
        return None

    async def set_phrase(self, key: str, audio: bytes) -> None:
        return None

    @abc.abstractmethod
    async def save_report(self, call_sid: str, report: dict) -> None:
        """Insert or replace the call's post-call report (``status`` ok | failed | pending)."""

    @abc.abstractmethod
    async def get_report(self, call_sid: str) -> dict | None: ...

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections. Idempotent."""

    async def __aenter__(self) -> "CallStore":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# ------------------------------------------------------------------------------- SQLite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call_sid  TEXT PRIMARY KEY,
    record    TEXT,
    handle    TEXT,
    handle_at REAL,
    state     TEXT,
    updated   REAL NOT NULL
)
"""
_REPORTS_SCHEMA = "CREATE TABLE IF NOT EXISTS reports (call_sid TEXT PRIMARY KEY, report TEXT NOT NULL, updated REAL NOT NULL)"


_PHRASE_SCHEMA = "CREATE TABLE IF NOT EXISTS phrases (key TEXT PRIMARY KEY, audio BLOB NOT NULL, updated REAL NOT NULL)"


def _check_phrase_key(key: str) -> str:
    if not isinstance(key, str) or not 0 < len(key) <= 200:
        raise ValueError("a phrase key is a string of 1-200 characters")
    return key


class SqliteStore(CallStore):
    """The embedded default. See the module docstring."""

    def __init__(self, path: str, *, handle_ttl_s: float = HANDLE_TTL_S) -> None:
        self.path = path
        self.handle_ttl_s = handle_ttl_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        try:
            self._conn = self._executor.submit(self._open).result()
        except BaseException:
            self._executor.shutdown(wait=True)
            raise

    def _open(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            parent = Path(self.path).resolve().parent
            if not parent.is_dir():
                raise ConfigError(f"SQLite store {self.path}: directory {parent} does not exist")
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
        except sqlite3.Error as exc:
            raise ConfigError(f"SQLite store {self.path}: cannot open ({exc})") from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across a process crash
            conn.execute(_SCHEMA)
            if "seat" not in {row[1] for row in conn.execute("PRAGMA table_info(calls)")}:
                conn.execute("ALTER TABLE calls ADD COLUMN seat TEXT")  # a file from before seats
            conn.execute(_REPORTS_SCHEMA)
            conn.execute(_PHRASE_SCHEMA)
        except sqlite3.Error as exc:
            conn.close()
            raise ConfigError(f"SQLite store {self.path}: cannot use the file ({exc})") from None
        return conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed or self._conn is None:
            raise RuntimeError("the call store is closed")
        conn = self._conn
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, conn)

    async def _upsert(self, call_sid: str, columns: tuple[str, ...], values: tuple[Any, ...]) -> None:
        """Set some columns of one row, creating the row if needed (the others stay as they are)."""
        sid = _check_sid(call_sid)
        names = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns)
        sql = (f"INSERT INTO calls (call_sid, {names}, updated) VALUES (?, {marks}, ?) "
               f"ON CONFLICT(call_sid) DO UPDATE SET {updates}, updated = excluded.updated")
        params = (sid, *values, time.time())
        await self._run(lambda c: c.execute(sql, params))

    async def _get(self, call_sid: str, columns: str) -> tuple[Any, ...] | None:
        sid = _check_sid(call_sid)
        sql = f"SELECT {columns} FROM calls WHERE call_sid = ?"
        return await self._run(lambda c: c.execute(sql, (sid,)).fetchone())

    async def save_record(self, call_sid: str, record: dict) -> None:
        await self._upsert(call_sid, ("record",), (_encode_record(record),))

    async def get_record(self, call_sid: str) -> dict | None:
        row = await self._get(call_sid, "record")
        return json.loads(row[0]) if row and row[0] is not None else None

    async def set_resumption_handle(self, call_sid: str, handle: str, seat: str | None = None) -> None:
        await self._upsert(call_sid, ("handle", "handle_at", "seat"), (str(handle), time.time(), seat))

    async def get_resumption(self, call_sid: str) -> tuple[str | None, str | None]:
        row = await self._get(call_sid, "handle, handle_at, seat")
        if not row or row[0] is None:
            return None, None
        if time.time() - row[1] >= self.handle_ttl_s:
            return None, None  # Gemini no longer accepts it; a stale handle costs a 1008 round trip
        return row[0], row[2]

    async def set_call_state(self, call_sid: str, state: str) -> None:
        await self._upsert(call_sid, ("state",), (str(state),))

    async def get_call_state(self, call_sid: str) -> str | None:
        row = await self._get(call_sid, "state")
        return row[0] if row else None

    async def recent_records(self, limit: int = 100) -> list[dict]:
        """The newest call records first (the /calls page)."""
        sql = "SELECT record FROM calls WHERE record IS NOT NULL ORDER BY updated DESC LIMIT ?"
        rows = await self._run(lambda c: c.execute(sql, (int(limit),)).fetchall())
        return [json.loads(r[0]) for r in rows]

    async def save_report(self, call_sid: str, report: dict) -> None:
        sid, raw = _check_sid(call_sid), _encode_record(report)
        sql = ("INSERT INTO reports (call_sid, report, updated) VALUES (?, ?, ?) ON CONFLICT(call_sid) "
               "DO UPDATE SET report = excluded.report, updated = excluded.updated")
        await self._run(lambda c: c.execute(sql, (sid, raw, time.time())))

    async def get_report(self, call_sid: str) -> dict | None:
        sid = _check_sid(call_sid)
        row = await self._run(lambda c: c.execute("SELECT report FROM reports WHERE call_sid = ?", (sid,)).fetchone())
        return json.loads(row[0]) if row else None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)

    async def get_phrase(self, key: str) -> bytes | None:
        k = _check_phrase_key(key)
        row = await self._run(lambda c: c.execute("SELECT audio FROM phrases WHERE key = ?", (k,)).fetchone())
        return bytes(row[0]) if row else None

    async def set_phrase(self, key: str, audio: bytes) -> None:
        k, blob = _check_phrase_key(key), bytes(audio)
        await self._run(lambda c: c.execute(
            "INSERT INTO phrases (key, audio, updated) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
            "audio = excluded.audio, updated = excluded.updated", (k, blob, time.time())))

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"


# -------------------------------------------------------------------------------- Redis


class RedisStore(CallStore):
    """Shared by every replica. See the module docstring."""

    def __init__(self, url: str, ttl_s: float = HANDLE_TTL_S, *,
                 record_ttl_s: float | None = RECORD_TTL_S) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError:  # pragma: no cover - depends on the environment
            raise ConfigError("REDIS_URL is set but the 'redis' package is not installed "
                              "(pip install redis)") from None
        self.url = url
        self.ttl_s = ttl_s
        self.record_ttl_s = record_ttl_s
        # No I/O here: connections are opened on first use, inside the running loop.
        self._redis = aioredis.from_url(url, decode_responses=True, socket_connect_timeout=5.0,
                                        socket_timeout=10.0, health_check_interval=30)
        self._closed = False

    @staticmethod
    def key(call_sid: str, field: str) -> str:
        return f"{KEY_PREFIX}{_check_sid(call_sid)}:{field}"

    @staticmethod
    def _px(seconds: float | None) -> int | None:
        return None if seconds is None else max(1, int(seconds * 1000))

    async def save_record(self, call_sid: str, record: dict) -> None:
        await self._redis.set(self.key(call_sid, "record"), _encode_record(record),
                              px=self._px(self.record_ttl_s))

    async def get_record(self, call_sid: str) -> dict | None:
        raw = await self._redis.get(self.key(call_sid, "record"))
        return json.loads(raw) if raw is not None else None

    async def set_resumption_handle(self, call_sid: str, handle: str, seat: str | None = None) -> None:
        # One MULTI: a reader never sees a handle with another session's seat.
        async with self._redis.pipeline(transaction=True) as tx:
            tx.set(self.key(call_sid, "handle"), str(handle), px=self._px(self.ttl_s))
            if seat is None:
                tx.delete(self.key(call_sid, "seat"))
            else:
                tx.set(self.key(call_sid, "seat"), str(seat), px=self._px(self.ttl_s))
            await tx.execute()

    async def get_resumption(self, call_sid: str) -> tuple[str | None, str | None]:
        handle, seat = await self._redis.mget(self.key(call_sid, "handle"), self.key(call_sid, "seat"))
        return (handle, seat) if handle is not None else (None, None)

    async def set_call_state(self, call_sid: str, state: str) -> None:
        await self._redis.set(self.key(call_sid, "state"), str(state), px=self._px(self.record_ttl_s))

    async def get_call_state(self, call_sid: str) -> str | None:
        return await self._redis.get(self.key(call_sid, "state"))

    async def recent_records(self, limit: int = 100) -> list[dict]:
        """The newest call records first (the /calls page): a SCAN over the record keys."""
        keys = [k async for k in self._redis.scan_iter(match=f"{KEY_PREFIX}*:record", count=500)]
        records = []
        for i in range(0, len(keys), 200):
            for raw in await self._redis.mget(keys[i:i + 200]):
                if raw is not None:
                    records.append(json.loads(raw))
        records.sort(key=lambda r: r.get("started_at") or 0, reverse=True)
        return records[:limit]

    async def save_report(self, call_sid: str, report: dict) -> None:
        await self._redis.set(self.key(call_sid, "report"), _encode_record(report), px=self._px(self.record_ttl_s))

    async def get_report(self, call_sid: str) -> dict | None:
        raw = await self._redis.get(self.key(call_sid, "report"))
        return json.loads(raw) if raw is not None else None

    async def get_phrase(self, key: str) -> bytes | None:
        raw = await self._redis.get(f"{KEY_PREFIX}phrase:{_check_phrase_key(key)}")
        return base64.b64decode(raw) if raw is not None else None

    async def set_phrase(self, key: str, audio: bytes) -> None:
        # Base64: the client decodes responses as text. No expiry: the key names the text rendered.
        await self._redis.set(f"{KEY_PREFIX}phrase:{_check_phrase_key(key)}", base64.b64encode(audio).decode())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._redis.aclose()

    def __repr__(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or parts.path  # never the password
        return f"RedisStore({parts.scheme}://{host}{':' + str(parts.port) if parts.port else ''})"


def open_store(redis_url: str | None, sqlite_path: str) -> CallStore:
    """Redis when ``redis_url`` is set (several replicas), else the SQLite file."""
    if redis_url:
        scheme = urlsplit(redis_url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix:// (got {scheme or 'no'} scheme)")
        return RedisStore(redis_url)
    return SqliteStore(sqlite_path)


__all__ = ["CallStore", "SqliteStore", "RedisStore", "open_store", "HANDLE_TTL_S", "RECORD_TTL_S", "KEY_PREFIX"]
