"""The review pages' model and HTML without a browser: lanes from a timeline, the report,
escaping, and the routes' refusals (the browser test covers the drawn page)."""

from __future__ import annotations

import asyncio
import json
import re

from telephony_bridge.review.data import report_for
from telephony_bridge.review.model import call_view, list_row, timeline_lanes
from telephony_bridge.review.render import list_page, view_page
from telephony_bridge.store import SqliteStore


def test_lanes_come_from_the_timeline_on_the_recording_clock() -> None:
    events = [
        {"t": 1.0, "kind": "gate", "decision": "forward"},
        {"t": 2.0, "kind": "gate", "decision": "suppress"},
        {"t": 3.0, "kind": "pause", "frames_back": 4},
        {"t": 3.2, "kind": "resume", "paused_ms": 200.0, "frames": 10},
        {"t": 4.0, "kind": "tool_call", "id": "a", "name": "lookup_market"},
        {"t": 4.8, "kind": "phrase", "phrase": "filler", "seconds": 0.7},
        {"t": 5.2, "kind": "phrase_stopped"},
        {"t": 5.0, "kind": "tool_result", "id": "a", "name": "lookup_market", "duration_ms": 1000.0, "ok": True},
        {"t": 6.0, "kind": "interrupted", "frames_dropped": 3},
        {"t": 6.0, "kind": "clear"},
        {"t": 7.0, "kind": "handover_start"},
        {"t": 7.5, "kind": "agent_turn_start", "turn": 2, "latency_ms": 812.0},
    ]
    lanes = timeline_lanes(events, offset=0.5, end=10.0)
    assert lanes["gate"] == [{"t0": 0.5, "t1": 1.5, "label": "forward", "kind": "forward"},
                             {"t0": 1.5, "t1": 10.0, "label": "suppress", "kind": "suppress"}]
    assert lanes["barge"][0] == {"t0": 2.5, "t1": 2.7, "label": "false alarm: resumed", "kind": "false_alarm"}
    assert lanes["tools"] == [{"t0": 3.5, "t1": 4.5, "label": "lookup_market 1000 ms", "kind": "tool"}]
    assert lanes["filler"] == [{"t0": 4.3, "t1": 4.7, "label": "filler (cut short)", "kind": "phrase"}]
    assert [e["kind"] for e in lanes["clear"]] == ["pause", "phrase_stopped", "clear"]
    assert lanes["link"][0]["label"] == "handover start"
    assert lanes["latency"][0]["label"] == "turn 2: 812 ms"


def test_the_page_shows_the_report_and_escapes_what_callers_said() -> None:
    record = {"call_sid": "CA1", "ended": "caller-hangup", "summary": {"agent_turns": 1},
              "transcript": [{"role": "caller", "text": "</script><img src=x onerror=alert(1)>", "t": 1.0}],
              "timeline": [], "notes": [{"topic": "problem", "fact": "<b>x</b>", "t": 1.0}], "tools": []}
    report = {"status": "ready", "leaning": {"verdict": "promising", "reasons": ["clear pain"]},
              "open_question": "Who pays?"}
    html = view_page(call_view(record, None, None, report))
    assert "<img src=x" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    data = re.search(r'<script type="application/json" id="call-data">(.*?)</script>', html, re.S).group(1)
    assert json.loads(data)["transcript"][0]["text"].startswith("</script>")
    assert "promising" in html and "Who pays?" in html and "clear pain" in html
    row = list_row({**record, "started_at": 0.0}, report)
    assert row["leaning"] == "promising" and "promising" in list_page([row])


def test_the_report_is_read_only_where_the_store_has_it(tmp_path) -> None:
    async def go() -> tuple:
        store = SqliteStore(str(tmp_path / "s.sqlite3"))
        try:
            none = await report_for(store, "CA1")  # this branch's store has no get_report yet
        finally:
            await store.close()

        class WithReports(SqliteStore):
            async def get_report(self, call_sid: str) -> dict | None:
                return {"status": "ready", "leaning": {"verdict": "weak", "reasons": []}}

        store2 = WithReports(str(tmp_path / "s2.sqlite3"))
        try:
            got = await report_for(store2, "CA1")
        finally:
            await store2.close()
        return none, got

    none, got = asyncio.run(go())
    assert none is None and got["leaning"]["verdict"] == "weak"


def test_recent_records_come_newest_first(tmp_path) -> None:
    async def go() -> list:
        store = SqliteStore(str(tmp_path / "s.sqlite3"))
        try:
            for i in range(3):
                await store.save_record(f"CA{i}", {"call_sid": f"CA{i}"})
                await asyncio.sleep(0.01)
            await store.set_resumption_handle("CA9", "h")  # a row without a record: not listed
            return await store.recent_records(2)
        finally:
            await store.close()

    assert [r["call_sid"] for r in asyncio.run(go())] == ["CA2", "CA1"]


def test_recent_records_in_redis_come_newest_first(redis_url: str) -> None:
    from telephony_bridge.store import RedisStore

    async def go() -> list:
        async with RedisStore(redis_url) as store:
            for i, started in enumerate((100.0, 300.0, 200.0)):
                await store.save_record(f"CAreview{i}", {"call_sid": f"CAreview{i}", "started_at": started})
            return [r.get("call_sid") for r in await store.recent_records(500) if str(r.get("call_sid", "")).startswith("CAreview")]

    assert asyncio.run(go()) == ["CAreview1", "CAreview2", "CAreview0"]


def test_login_throttle_on_a_fake_clock() -> None:
    from telephony_bridge.review.auth import LoginThrottle

    t = LoginThrottle(max_failures=3, window_s=60.0, max_clients=2)
    for now in (0.0, 1.0, 2.0):
        assert t.retry_after("a", now) is None
        t.failed("a", now)
    assert t.retry_after("a", 10.0) == 50.0  # the first failure leaves the window at 60
    assert t.retry_after("b", 10.0) is None  # another client is not slowed down
    assert t.retry_after("a", 60.5) is None  # one failure left the window: one more try
    t.failed("a", 61.0)  # 1.0 has left: 2.0 and 61.0 remain
    assert t.retry_after("a", 61.0) is None
    t.failed("a", 61.5)
    assert t.retry_after("a", 61.5) == 0.5  # until 2.0 leaves the window
    t.succeeded("a")
    assert t.retry_after("a", 61.5) is None
    for c in ("x", "y", "z"):  # bounded memory: the oldest client is forgotten
        t.failed(c, 70.0)
    assert "x" not in t._failures and set(t._failures) == {"y", "z"}


def test_the_login_refuses_guessing_with_429_and_retry_after() -> None:
    from starlette.testclient import TestClient

    from telephony_bridge.server import create_app
    from telephony_bridge.settings import Settings

    token = "operator-token-0123456789abcdef"
    app = create_app(Settings(gemini_api_key="k" * 12, public_url="http://127.0.0.1", operator_token=token,
                              twilio_auth_token="t" * 32, sqlite_path=":memory:"))
    with TestClient(app) as http:
        for _ in range(5):
            assert http.post("/calls/login", data={"token": "guess", "next": "/calls"}).status_code == 401
        r = http.post("/calls/login", data={"token": token, "next": "/calls"}, follow_redirects=False)
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert "set-cookie" not in r.headers and token not in r.text
