"""The call store contract, run against both implementations (SQLite and a real Redis)."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from telephony_bridge.errors import ConfigError
from telephony_bridge.store import CallStore, RedisStore, SqliteStore, open_store

Factory = Callable[..., CallStore]


def sid() -> str:
    return "CA" + uuid.uuid4().hex  # unique per test: the Redis server is shared by the session


def run(make: Factory, scenario: Callable[[CallStore], Awaitable[Any]], **kw: Any) -> Any:
    """Create the store inside the test's event loop (Redis connections belong to a loop)."""

    async def main() -> Any:
        store = make(**kw)
        try:
            return await asyncio.wait_for(scenario(store), 20)
        finally:
            await store.close()

    return asyncio.run(main())


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    if request.param == "sqlite":
        path = str(tmp_path / "calls.db")

        def make_sqlite(ttl_s: float | None = None) -> CallStore:
            return SqliteStore(path) if ttl_s is None else SqliteStore(path, handle_ttl_s=ttl_s)

        return make_sqlite
    url = request.getfixturevalue("redis_url")  # skips (with the reason) when Redis is unavailable

    def make_redis(ttl_s: float | None = None) -> CallStore:
        return RedisStore(url) if ttl_s is None else RedisStore(url, ttl_s=ttl_s)

    return make_redis


# --------------------------------------------------------------------------------- contract


def test_record_round_trip_and_upsert(make_store: Factory) -> None:
    a, b = sid(), sid()
    record = {"call_sid": a, "transcript": [{"who": "caller", "text": "¿Hola? Grüße — 日本", "t": 1.25}],
              "notes": [], "tool_calls": [{"name": "lookup_market", "ms": 1503.2, "ok": True}], "n": None}

    async def scenario(store: CallStore) -> None:
        assert await store.get_record(a) is None
        await store.save_record(a, record)
        assert await store.get_record(a) == record
        await store.save_record(a, {"replaced": True})  # the whole record, not a merge
        assert await store.get_record(a) == {"replaced": True}
        assert await store.get_record(b) is None

    run(make_store, scenario)


def test_handle_newest_wins(make_store: Factory) -> None:
    a, b = sid(), sid()

    async def scenario(store: CallStore) -> None:
        assert await store.get_resumption_handle(a) is None
        await store.set_resumption_handle(a, "h1")
        await store.set_resumption_handle(a, "h2")
        assert await store.get_resumption_handle(a) == "h2"
        assert await store.get_resumption_handle(b) is None

    run(make_store, scenario)


def test_handle_expires(make_store: Factory) -> None:
    a = sid()

    async def scenario(store: CallStore) -> None:
        await store.set_resumption_handle(a, "short-lived")
        assert await store.get_resumption_handle(a) == "short-lived"
        await asyncio.sleep(0.45)
        assert await store.get_resumption_handle(a) is None

    run(make_store, scenario, ttl_s=0.3)


def test_a_handle_keeps_its_panel_seat_and_a_newer_handle_replaces_both(make_store: Factory) -> None:
    a = sid()

    async def scenario(store: CallStore) -> None:
        assert await store.get_resumption(a) == (None, None)
        await store.set_resumption_handle(a, "h1", seat="product")
        assert await store.get_resumption(a) == ("h1", "product")
        assert await store.get_resumption_handle(a) == "h1"
        await store.set_resumption_handle(a, "h2")  # one interviewer (no panel): no seat
        assert await store.get_resumption(a) == ("h2", None)

    run(make_store, scenario)


def test_a_seat_expires_with_its_handle(make_store: Factory) -> None:
    a = sid()

    async def scenario(store: CallStore) -> None:
        await store.set_resumption_handle(a, "short-lived", seat="gtm")
        await asyncio.sleep(0.45)
        assert await store.get_resumption(a) == (None, None)

    run(make_store, scenario, ttl_s=0.3)


def test_call_state(make_store: Factory) -> None:
    a = sid()

    async def scenario(store: CallStore) -> None:
        assert await store.get_call_state(a) is None
        await store.set_call_state(a, "active")
        assert await store.get_call_state(a) == "active"
        await store.set_call_state(a, "ended:end_call")
        assert await store.get_call_state(a) == "ended:end_call"

    run(make_store, scenario)


def test_phrase_cache_round_trip(make_store: Factory) -> None:
    key = f"tts:gemini-3.8-flash-lite-tts:Kore:de-DE:{secrets.token_hex(6)}"
    audio = bytes(range(256)) * 5  # every byte value survives (μ-law silence is 0xFF)

    async def scenario(store: CallStore) -> None:
        assert await store.get_phrase(key) is None
        await store.set_phrase(key, audio)
        assert await store.get_phrase(key) == audio
        await store.set_phrase(key, audio[:160])
        assert await store.get_phrase(key) == audio[:160]

    run(make_store, scenario)


def test_fields_of_one_call_are_independent(make_store: Factory) -> None:
    a = sid()

    async def scenario(store: CallStore) -> None:
        await store.set_resumption_handle(a, "h")
        assert await store.get_record(a) is None and await store.get_call_state(a) is None
        await store.set_call_state(a, "active")
        await store.save_record(a, {"x": 1})
        assert await store.get_resumption_handle(a) == "h"
        assert await store.get_call_state(a) == "active"
        assert await store.get_record(a) == {"x": 1}

    run(make_store, scenario)


def test_concurrent_writes(make_store: Factory) -> None:
    sids = [sid() for _ in range(40)]

    async def scenario(store: CallStore) -> None:
        await asyncio.gather(*(store.save_record(s, {"i": i}) for i, s in enumerate(sids)),
                             *(store.set_resumption_handle(s, f"h{i}") for i, s in enumerate(sids)))
        records = await asyncio.gather(*(store.get_record(s) for s in sids))
        handles = await asyncio.gather(*(store.get_resumption_handle(s) for s in sids))
        assert records == [{"i": i} for i in range(len(sids))]
        assert handles == [f"h{i}" for i in range(len(sids))]

    run(make_store, scenario)


@pytest.mark.parametrize("bad_sid", ["", " ", "CA 1", "CA\n1", "x" * 129])
def test_bad_call_sid_is_a_value_error(make_store: Factory, bad_sid: str) -> None:
    async def scenario(store: CallStore) -> None:
        with pytest.raises(ValueError):
            await store.get_record(bad_sid)
        with pytest.raises(ValueError):
            await store.set_call_state(bad_sid, "active")

    run(make_store, scenario)


def test_record_must_be_a_dict(make_store: Factory) -> None:
    async def scenario(store: CallStore) -> None:
        with pytest.raises(TypeError):
            await store.save_record(sid(), ["not", "a", "dict"])  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await store.save_record(sid(), {"x": object()})

    run(make_store, scenario)


def test_close_is_idempotent_and_async_with_works(make_store: Factory) -> None:
    a = sid()

    async def main() -> None:
        async with make_store() as store:
            await store.set_call_state(a, "active")
        await store.close()
        async with make_store() as again:
            assert await again.get_call_state(a) == "active"

    asyncio.run(main())


# ----------------------------------------------------------------------------------- SQLite


def test_sqlite_records_survive_reopening_the_file(tmp_path: Path) -> None:
    path, a = str(tmp_path / "calls.db"), sid()

    async def write() -> None:
        store = SqliteStore(path)
        await store.save_record(a, {"notes": [{"topic": "problem", "fact": "f", "t": 1.0}]})
        await store.set_resumption_handle(a, "handle-1")
        await store.set_call_state(a, "ended:caller-hangup")
        await store.close()

    async def read() -> tuple[Any, ...]:
        store = SqliteStore(path)
        try:
            return (await store.get_record(a), await store.get_resumption_handle(a), await store.get_call_state(a))
        finally:
            await store.close()

    asyncio.run(write())
    assert asyncio.run(read()) == (
        {"notes": [{"topic": "problem", "fact": "f", "t": 1.0}]}, "handle-1", "ended:caller-hangup")
    with sqlite3.connect(path) as conn:  # WAL is a property of the file
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_sqlite_a_file_from_before_seats_gains_the_column_and_keeps_its_handles(tmp_path: Path) -> None:
    path, a = str(tmp_path / "calls.db"), sid()
    with sqlite3.connect(path) as conn:  # the schema as it was
        conn.execute("CREATE TABLE calls (call_sid TEXT PRIMARY KEY, record TEXT, handle TEXT, handle_at REAL, "
                     "state TEXT, updated REAL NOT NULL)")
        conn.execute("INSERT INTO calls VALUES (?, NULL, 'old-handle', ?, 'active', ?)", (a, time.time(), time.time()))
    conn.close()

    async def scenario() -> tuple[Any, ...]:
        store = SqliteStore(path)
        try:
            before = await store.get_resumption(a)
            await store.set_resumption_handle(a, "new-handle", seat="product")
            return before, await store.get_resumption(a)
        finally:
            await store.close()

    assert asyncio.run(scenario()) == (("old-handle", None), ("new-handle", "product"))


def test_sqlite_two_stores_share_one_file(tmp_path: Path) -> None:
    path, a = str(tmp_path / "calls.db"), sid()

    async def main() -> None:
        async with SqliteStore(path) as one, SqliteStore(path) as two:
            await one.set_resumption_handle(a, "from-one")
            assert await two.get_resumption_handle(a) == "from-one"

    asyncio.run(main())


def test_sqlite_in_memory() -> None:
    a = sid()

    async def main() -> None:
        async with SqliteStore(":memory:") as store:
            await store.save_record(a, {"ok": True})
            assert await store.get_record(a) == {"ok": True}

    asyncio.run(main())


def test_sqlite_use_after_close_raises() -> None:
    async def main() -> None:
        store = SqliteStore(":memory:")
        await store.close()
        with pytest.raises(RuntimeError, match="closed"):
            await store.get_record(sid())

    asyncio.run(main())


def test_sqlite_bad_path_is_a_config_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "no" / "such" / "dir" / "calls.db")
    with pytest.raises(ConfigError, match="does not exist") as info:
        SqliteStore(missing)
    assert missing in str(info.value)
    not_a_db = tmp_path / "garbage.db"
    not_a_db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match=str(not_a_db)):
        SqliteStore(str(not_a_db))


# ------------------------------------------------------------------------------------ Redis


def test_two_redis_replicas_see_each_others_writes(redis_url: str) -> None:
    a = sid()

    async def main() -> None:
        async with RedisStore(redis_url) as replica_a, RedisStore(redis_url) as replica_b:
            await replica_a.set_resumption_handle(a, "handle-from-a")
            await replica_a.set_call_state(a, "active")
            await replica_a.save_record(a, {"turns": 3})
            assert await replica_b.get_resumption_handle(a) == "handle-from-a"
            assert await replica_b.get_call_state(a) == "active"
            assert await replica_b.get_record(a) == {"turns": 3}
            await replica_b.set_resumption_handle(a, "handle-from-b")  # b resumed and moved on
            assert await replica_a.get_resumption_handle(a) == "handle-from-b"

    asyncio.run(main())


def test_redis_keys_are_namespaced_and_expire(redis_url: str) -> None:
    import redis.asyncio as aioredis

    a = sid()

    async def main() -> None:
        raw = aioredis.from_url(redis_url, decode_responses=True)
        try:
            async with RedisStore(redis_url, ttl_s=7200, record_ttl_s=None) as store:
                await store.set_resumption_handle(a, "h")
                await store.save_record(a, {"x": 1})
                await store.set_call_state(a, "active")
            assert sorted(await raw.keys(f"tb:call:{a}:*")) == [
                f"tb:call:{a}:handle", f"tb:call:{a}:record", f"tb:call:{a}:state"]
            assert 7100_000 < await raw.pttl(f"tb:call:{a}:handle") <= 7200_000
            assert await raw.pttl(f"tb:call:{a}:record") == -1  # record_ttl_s=None: kept
            async with RedisStore(redis_url) as store:  # default: records expire after 7 days
                await store.set_call_state(a, "ended:end_call")
            assert 6 * 86400_000 < await raw.pttl(f"tb:call:{a}:state") <= 7 * 86400_000
        finally:
            await raw.aclose()

    asyncio.run(main())


def test_redis_repr_hides_the_password() -> None:
    pytest.importorskip("redis", reason="the 'redis' Python package is not installed")
    store = RedisStore("redis://user:s3cret@cache.internal:6380/0")
    assert "s3cret" not in repr(store) and "cache.internal:6380" in repr(store)
    asyncio.run(store.close())


# ------------------------------------------------------------------------------- open_store


def test_open_store_picks_the_backend(tmp_path: Path) -> None:
    async def main() -> None:
        sqlite = open_store(None, str(tmp_path / "calls.db"))
        assert isinstance(sqlite, SqliteStore)
        await sqlite.close()
        sqlite = open_store("", str(tmp_path / "calls.db"))
        assert isinstance(sqlite, SqliteStore)
        await sqlite.close()

    asyncio.run(main())
    with pytest.raises(ConfigError, match="REDIS_URL"):
        open_store("http://cache:6379", str(tmp_path / "calls.db"))


def test_open_store_with_redis_url_does_no_io_until_used(tmp_path: Path) -> None:
    pytest.importorskip("redis", reason="the 'redis' Python package is not installed")
    redis_store = open_store("redis://127.0.0.1:1/0", str(tmp_path / "unused.db"))
    assert isinstance(redis_store, RedisStore)
    asyncio.run(redis_store.close())
    assert not (tmp_path / "unused.db").exists()
