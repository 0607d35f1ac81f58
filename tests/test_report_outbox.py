"""The durable outbox on both stores (SQLite file, real redis-server): once per id, leases,
owner-checked settling, two claimers never given the same delivery, reports kept."""

from __future__ import annotations

import asyncio
import secrets
import time

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
        claimed = await oa.claim(t, "A", 10, 1000, leases={"webhook": 20})
        mine = [d for d in claimed if d.id == did]
        assert mine and mine[0].owner == "A" and mine[0].attempts == 1 and mine[0].ready_at == t + 20
        assert not [d for d in await ob.claim(t + 19, "B", 10, 1000) if d.id == did]
        assert await oa.retry(did, "A", t + 25, "receiver HTTP 503")
        assert not await ob.complete(did, "A", t)  # no longer A's
        again = [d for d in await ob.claim(t + 25, "B", 10, 1000) if d.id == did]
        assert again and again[0].attempts == 2 and again[0].last_error == "receiver HTTP 503"
        assert not await oa.complete(did, "A", t + 26)
        assert await ob.complete(did, "B", t + 26)
        assert (await oa.get(did)).status == DELIVERED
        assert not [d for d in await oa.claim(t + 10_000, "A", 10, 1000) if d.id == did]
        fid = did.replace("webhook", "sms")
        await oa.add(fid, "CA", "sms", {}, t)
        [d] = [d for d in await oa.claim(t, "A", 10, 1000) if d.id == fid]
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
        t = 1_000.0 + secrets.randbelow(1000) / 1000  # before the other tests' deliveries are due
        ids = [f"CA{tag}{i}:webhook" for i in range(40)]
        for did in ids:
            await oa.add(did, "CA", "webhook", {}, t)
        got: list[tuple[str, str]] = []
        for _ in range(6):
            ra, rb = await asyncio.gather(oa.claim(t, "A", 60, 5), ob.claim(t, "B", 60, 5))
            got += [(d.id, d.owner) for d in ra + rb if d.id.startswith(f"CA{tag}")]
        names = [g[0] for g in got]
        assert sorted(names) == sorted(set(names)) and set(names) == set(ids)  # each once, all of them
        for did, owner in got:  # settle them: a later worker on this store must find nothing due
            assert await oa.complete(did, owner, t)
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


def test_hurry_makes_a_waiting_delivery_due_but_not_a_claimed_one(stores) -> None:
    async def go():
        a = stores()
        o = outbox_for(a)
        did = f"CA{secrets.token_hex(6)}:report"
        t = 3_000_000_000.0
        await o.add(did, "CA", "report", {}, t, ready_at=t + 300)
        assert not await o.hurry(did, t + 400)  # already due by then: nothing to do
        assert await o.hurry(did, t + 1)
        assert (await o.get(did)).ready_at == t + 1
        assert [d.id for d in await o.claim(t + 1, "A", 60, 1000) if d.id == did] == [did]
        assert not await o.hurry(did, t + 2)  # claimed: its lease stands
        assert await o.complete(did, "A", t + 2)
        await a.close()

    asyncio.run(go())


def test_a_cut_stream_waits_for_the_call_to_end_elsewhere(tmp_path) -> None:
    """The stream of a call ended on this replica but the call state is still "active" (it went
    on elsewhere): its report waits the grace; when the call ends there, it is due at once."""
    from telephony_bridge import call_state
    from telephony_bridge.gemini.backend import backend_from_settings
    from telephony_bridge.report.service import STREAM_CUT_GRACE_S, ReportService
    from telephony_bridge.settings import Settings

    async def go():
        store = SqliteStore(str(tmp_path / "c.sqlite3"))
        settings = Settings(gemini_api_key="k" * 12, public_url="http://127.0.0.1", twilio_auth_token="t" * 32)
        service = ReportService(settings, store, backend_from_settings(settings))
        await store.set_call_state("CA9", call_state.ACTIVE)
        before = time.time()
        await service.queue("CA9", "+15551230000")
        d = await service.outbox.get("CA9:report")
        assert d.ready_at >= before + STREAM_CUT_GRACE_S and d.payload == {"caller": "+15551230000"}
        assert (await store.get_report("CA9"))["status"] == "pending"
        await store.set_call_state("CA9", call_state.ended("end_call:done"))
        await service.queue("CA9", "+15551230000")  # the replica that ended it
        assert (await service.outbox.get("CA9:report")).ready_at <= time.time()
        await service.stop()
        await store.close()

    asyncio.run(go())
