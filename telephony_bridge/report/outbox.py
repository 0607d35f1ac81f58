"""The durable outbox: deliveries that must happen once, kept in the call store, with leases.

A **delivery** (:class:`Delivery`) is one thing to do for a call, ``kind`` ``report`` (ask Gemini),
``webhook`` (POST the report) or ``sms``, with its payload. Its ``id`` is deterministic
(``{call_sid}:{kind}``) and doubles as the **idempotency key** the receiver sees, so adding it
twice (two replicas, a restart) adds it once.

Claiming takes a **lease**: the claimed delivery's ``ready_at`` moves to ``now + lease_s`` and
its ``owner`` is the claimer. A worker that finishes calls :meth:`complete` / :meth:`retry` /
:meth:`fail`, each conditional on still being the owner; a worker that dies leaves the lease to
run out, and then any worker (this process restarted, another replica) claims it again. So a
delivery is attempted until done, at least once; the receiver's idempotency key turns "at least
once" into "accepted once". ``attempts`` counts claims (a worker that died mid-attempt counts).

Two implementations on the two stores (times are Unix seconds, passed in):

* :class:`SqliteOutbox`: table ``outbox`` in the store's file, claims in ``BEGIN IMMEDIATE``
  transactions (several processes on one file are serialised by SQLite's write lock);
* :class:`RedisOutbox`: a hash ``tb:outbox:{id}`` per delivery and one sorted set
  ``tb:outbox:ready`` (pending ids scored by ``ready_at``); claim, complete and retry are Lua
  scripts, atomic across replicas.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Protocol

from ..store import CallStore, RedisStore, SqliteStore

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    call_sid: str
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    ready_at: float
    owner: str | None
    last_error: str | None
    created: float
    done_at: float | None = None


def delivery_id(call_sid: str, kind: str) -> str:
    return f"{call_sid}:{kind}"


class Outbox(Protocol):
    async def add(self, delivery_id: str, call_sid: str, kind: str, payload: dict[str, Any], now: float,
                  ready_at: float | None = None) -> bool: ...

    async def claim(self, now: float, owner: str, lease_s: float, limit: int = 8,
                    leases: dict[str, float] | None = None) -> list[Delivery]: ...

    async def hurry(self, delivery_id: str, now: float) -> bool:
        """A pending, unclaimed delivery waiting past ``now`` becomes due now."""
        ...

    async def complete(self, delivery_id: str, owner: str, now: float) -> bool: ...

    async def retry(self, delivery_id: str, owner: str, ready_at: float, error: str) -> bool: ...

    async def fail(self, delivery_id: str, owner: str, now: float, error: str) -> bool: ...

    async def get(self, delivery_id: str) -> Delivery | None: ...

    async def next_ready_at(self) -> float | None: ...


# ------------------------------------------------------------------------------- SQLite

_TABLE = """
CREATE TABLE IF NOT EXISTS outbox (
    id         TEXT PRIMARY KEY,
    call_sid   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    status     TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    ready_at   REAL NOT NULL,
    owner      TEXT,
    last_error TEXT,
    created    REAL NOT NULL,
    done_at    REAL
)
"""
_INDEX = "CREATE INDEX IF NOT EXISTS outbox_ready ON outbox (status, ready_at)"
_COLUMNS = "id, call_sid, kind, payload, status, attempts, ready_at, owner, last_error, created, done_at"


def _row(row: tuple[Any, ...]) -> Delivery:
    return Delivery(row[0], row[1], row[2], json.loads(row[3]), *row[4:])


class SqliteOutbox:
    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self._ready = False

    async def _run(self, fn: Any) -> Any:
        if not self._ready:
            await self.store._run(lambda c: (c.execute(_TABLE), c.execute(_INDEX)))
            self._ready = True
        return await self.store._run(fn)

    async def add(self, delivery_id: str, call_sid: str, kind: str, payload: dict[str, Any], now: float,
                  ready_at: float | None = None) -> bool:
        raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        sql = (f"INSERT OR IGNORE INTO outbox ({_COLUMNS}) VALUES (?, ?, ?, ?, '{PENDING}', 0, ?, NULL, NULL, ?, NULL)")
        params = (delivery_id, call_sid, kind, raw, now if ready_at is None else ready_at, now)
        return bool(await self._run(lambda c: c.execute(sql, params).rowcount))

    async def claim(self, now: float, owner: str, lease_s: float, limit: int = 8,
                    leases: dict[str, float] | None = None) -> list[Delivery]:
        """Up to ``limit`` due deliveries, leased to ``owner`` for ``leases[kind]`` (else ``lease_s``)."""
        per_kind = leases or {}

        def claim(c: sqlite3.Connection) -> list[Delivery]:
            c.execute("BEGIN IMMEDIATE")
            try:
                due = list(c.execute(
                    f"SELECT id, kind FROM outbox WHERE status = '{PENDING}' AND ready_at <= ? "
                    "ORDER BY ready_at LIMIT ?", (now, limit)))
                ids = [r[0] for r in due]
                for did, kind in due:
                    c.execute("UPDATE outbox SET owner = ?, ready_at = ?, attempts = attempts + 1 WHERE id = ?",
                              (owner, now + per_kind.get(kind, lease_s), did))
                rows = [c.execute(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (did,)).fetchone() for did in ids]
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return [_row(r) for r in rows]

        return await self._run(claim)

    async def _owned_update(self, delivery_id: str, owner: str, sets: str, params: tuple[Any, ...]) -> bool:
        sql = f"UPDATE outbox SET {sets} WHERE id = ? AND owner = ? AND status = '{PENDING}'"
        return bool(await self._run(lambda c: c.execute(sql, (*params, delivery_id, owner)).rowcount))

    async def hurry(self, delivery_id: str, now: float) -> bool:
        sql = f"UPDATE outbox SET ready_at = ? WHERE id = ? AND status = '{PENDING}' AND owner IS NULL AND ready_at > ?"
        return bool(await self._run(lambda c: c.execute(sql, (now, delivery_id, now)).rowcount))

    async def complete(self, delivery_id: str, owner: str, now: float) -> bool:
        return await self._owned_update(delivery_id, owner, f"status = '{DELIVERED}', done_at = ?", (now,))

    async def retry(self, delivery_id: str, owner: str, ready_at: float, error: str) -> bool:
        return await self._owned_update(delivery_id, owner, "ready_at = ?, owner = NULL, last_error = ?",
                                        (ready_at, error[:300]))

    async def fail(self, delivery_id: str, owner: str, now: float, error: str) -> bool:
        return await self._owned_update(delivery_id, owner, f"status = '{FAILED}', done_at = ?, last_error = ?",
                                        (now, error[:300]))

    async def get(self, delivery_id: str) -> Delivery | None:
        row = await self._run(lambda c: c.execute(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?",
                                                  (delivery_id,)).fetchone())
        return _row(row) if row else None

    async def next_ready_at(self) -> float | None:
        row = await self._run(lambda c: c.execute(
            f"SELECT MIN(ready_at) FROM outbox WHERE status = '{PENDING}'").fetchone())
        return row[0] if row else None


# -------------------------------------------------------------------------------- Redis

OUTBOX_PREFIX = "tb:outbox:"
READY_KEY = "tb:outbox:ready"

_ADD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'call_sid', ARGV[2], 'kind', ARGV[3], 'payload', ARGV[4],
           'status', 'pending', 'attempts', 0, 'ready_at', ARGV[5], 'created', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
return 1
"""
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[4]))
local leases = cjson.decode(ARGV[6])
for _, id in ipairs(ids) do
  local key = ARGV[5] .. id
  local lease = leases[redis.call('HGET', key, 'kind')] or tonumber(ARGV[2])
  local until_at = tostring(tonumber(ARGV[1]) + lease)
  redis.call('ZADD', KEYS[1], until_at, id)
  redis.call('HSET', key, 'owner', ARGV[3], 'ready_at', until_at)
  redis.call('HINCRBY', key, 'attempts', 1)
end
return ids
"""
# KEYS: hash, ready set. ARGV: owner, then what to do.
_SETTLE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'status') ~= 'pending' then
  return 0
end
if ARGV[2] == 'retry' then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[5])
  redis.call('HSET', KEYS[1], 'ready_at', ARGV[3], 'owner', '', 'last_error', ARGV[4])
else
  redis.call('ZREM', KEYS[2], ARGV[5])
  redis.call('HSET', KEYS[1], 'status', ARGV[2], 'done_at', ARGV[3], 'last_error', ARGV[4])
  if tonumber(ARGV[6]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[6]) end
end
return 1
"""


_HURRY = """
if redis.call('HGET', KEYS[1], 'status') ~= 'pending' or (redis.call('HGET', KEYS[1], 'owner') or '') ~= '' then
  return 0
end
if tonumber(redis.call('HGET', KEYS[1], 'ready_at')) <= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[1], 'ready_at', ARGV[1])
return 1
"""


class RedisOutbox:
    def __init__(self, store: RedisStore) -> None:
        self.redis = store._redis
        self.keep_ms = 0 if store.record_ttl_s is None else int(store.record_ttl_s * 1000)
        self._add = self.redis.register_script(_ADD)
        self._claim = self.redis.register_script(_CLAIM)
        self._settle = self.redis.register_script(_SETTLE)
        self._hurry = self.redis.register_script(_HURRY)

    @staticmethod
    def key(delivery_id: str) -> str:
        return OUTBOX_PREFIX + delivery_id

    async def add(self, delivery_id: str, call_sid: str, kind: str, payload: dict[str, Any], now: float,
                  ready_at: float | None = None) -> bool:
        raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        ready = now if ready_at is None else ready_at
        return bool(await self._add(keys=[self.key(delivery_id), READY_KEY],
                                    args=[delivery_id, call_sid, kind, raw, repr(ready), repr(now)]))

    async def claim(self, now: float, owner: str, lease_s: float, limit: int = 8,
                    leases: dict[str, float] | None = None) -> list[Delivery]:
        ids = await self._claim(keys=[READY_KEY], args=[repr(now), repr(lease_s), owner, limit, OUTBOX_PREFIX,
                                                        json.dumps(leases or {"": 0})])
        out = []
        for did in ids:
            d = await self.get(did)
            if d is not None:
                out.append(d)
        return out

    async def _settle_as(self, delivery_id: str, owner: str, what: str, when: float, error: str) -> bool:
        return bool(await self._settle(keys=[self.key(delivery_id), READY_KEY],
                                       args=[owner, what, repr(when), error[:300], delivery_id, self.keep_ms]))

    async def hurry(self, delivery_id: str, now: float) -> bool:
        return bool(await self._hurry(keys=[self.key(delivery_id), READY_KEY], args=[repr(now), delivery_id]))

    async def complete(self, delivery_id: str, owner: str, now: float) -> bool:
        return await self._settle_as(delivery_id, owner, DELIVERED, now, "")

    async def retry(self, delivery_id: str, owner: str, ready_at: float, error: str) -> bool:
        return await self._settle_as(delivery_id, owner, "retry", ready_at, error)

    async def fail(self, delivery_id: str, owner: str, now: float, error: str) -> bool:
        return await self._settle_as(delivery_id, owner, FAILED, now, error)

    async def get(self, delivery_id: str) -> Delivery | None:
        h = await self.redis.hgetall(self.key(delivery_id))
        if not h:
            return None
        return Delivery(h["id"], h["call_sid"], h["kind"], json.loads(h["payload"]), h["status"],
                        int(h.get("attempts", 0)), float(h["ready_at"]), h.get("owner") or None,
                        h.get("last_error") or None, float(h["created"]),
                        float(h["done_at"]) if h.get("done_at") else None)

    async def next_ready_at(self) -> float | None:
        first = await self.redis.zrange(READY_KEY, 0, 0, withscores=True)
        return float(first[0][1]) if first else None


def outbox_for(store: CallStore) -> Outbox:
    if isinstance(store, SqliteStore):
        return SqliteOutbox(store)
    if isinstance(store, RedisStore):
        return RedisOutbox(store)
    raise TypeError(f"no outbox for {type(store).__name__}")


__all__ = ["Delivery", "Outbox", "SqliteOutbox", "RedisOutbox", "outbox_for", "delivery_id",
           "PENDING", "DELIVERED", "FAILED"]
