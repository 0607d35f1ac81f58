"""The durable outbox on both stores (SQLite file, real redis-server): once per id, leases,
owner-checked settling, two claimers never given the same delivery, reports kept."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from telephony_bridge.report.outbox import DELIVERED, FAILED, PENDING, outbox_for
from telephony_bridge.store import RedisStore, SqliteStore


@pytest.fixture(params=["sqlite", "redis"])
def stores(request, tmp_path):
    """Two store instances on the same data (two replicas / processes)."""
    if request.param == "sqlite":
        path = str(tmp_path / "calls.sqlite3")
        return lambda: SqliteStore(path)
    url = request.getfixturevalue("redis_url")

    def make():
        return RedisStore(url)
    return make


def test_outbox_lifecycle(stores) -> None:
    async def go():
        a, b = stores(), stores()
        oa, ob = outbox_for(a), outbox_for(b)
        did = f"CA{secrets.token_hex(6)}:webhook"
        t = 2_000_000_000.0 + secrets.randbelow(10_000)  # far from other tests' ids on the shared redis
        assert await oa.add(did, "CA", "webhook", {"k": "v"}, t)
        assert not await ob.add(did, "CA", "webhook", {"k": "other"}, t)
        got = await oa.get(did)
        assert got.payload == {"k": "v"} and got.status == PENDING and got.attempts == 0
        claimed = await oa.claim(t, "A", 10, leases={"webhook": 20})
        mine = [d for d in claimed if d.id == did]
        assert mine and mine[0].owner == "A" and mine[0].attempts == 1 and mine[0].ready_at == t + 20
        assert not [d for d in await ob.claim(t + 19, "B", 10) if d.id == did]
        assert await oa.retry(did, "A", t + 25, "receiver HTTP 503")
        assert not await ob.complete(did, "A", t)  # no longer A's
        again = [d for d in await ob.claim(t + 25, "B", 10) if d.id == did]
        assert again and again[0].attempts == 2 and again[0].last_error == "receiver HTTP 503"
        assert not await oa.complete(did, "A", t + 26)
        assert await ob.complete(did, "B", t + 26)
        assert (await oa.get(did)).status == DELIVERED
        assert not [d for d in await oa.claim(t + 10_000, "A", 10) if d.id == did]
        fid = did.replace("webhook", "sms")
        await oa.add(fid, "CA", "sms", {}, t)
        [d] = [d for d in await oa.claim(t, "A", 10) if d.id == fid]
        assert await oa.fail(fid, "A", t, "Twilio HTTP 400")
        assert (await ob.get(fid)).status == FAILED
        await a.close()
        await b.close()

    asyncio.run(go())


def test_two_claimers_never_share_a_delivery(stores) -> None:
    async def go():
        a, b = stores(), stores()
        oa, ob = outbox_for(a), outbox_for(b)
        tag = secrets.token_hex(4)
        t = 1_000.0  # before anything else on the shared redis is due
        ids = [f"CA{tag}{i}:webhook" for i in range(40)]
        for did in ids:
            await oa.add(did, "CA", "webhook", {}, t)
        got: list[str] = []
        for _ in range(6):
            ra, rb = await asyncio.gather(oa.claim(t, "A", 60, 5), ob.claim(t, "B", 60, 5))
            got += [d.id for d in ra + rb if d.id.startswith(f"CA{tag}")]
        assert sorted(got) == sorted(set(got))  # nobody got one twice
        assert set(got) <= set(ids) and len(got) == min(40, len(got))
        await a.close()
        await b.close()

    asyncio.run(go())


def test_reports_are_kept(stores) -> None:
    async def go():
        a, b = stores(), stores()
        sid = f"CA{secrets.token_hex(6)}"
        assert await a.get_report(sid) is None
        await a.save_report(sid, {"status": "pending"})
        await a.save_report(sid, {"status": "ok", "leaning": {"verdict": "go", "reasons": ["r"]}})
        assert (await b.get_report(sid))["leaning"]["verdict"] == "go"
        await a.close()
        await b.close()

    asyncio.run(go())
