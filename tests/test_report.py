"""The post-call report's parts: schema, request and answer, backoff, signatures, the client
against the emulator's generateContent (each fault), the outbox worker on a fake clock."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from telephony_bridge.gemini.backend import GeminiApiBackend, VertexExpressBackend
from telephony_bridge.report.backoff import RetryPolicy, parse_retry_after
from telephony_bridge.report.client import ReportClient
from telephony_bridge.report.outbox import DELIVERED, FAILED, PENDING, SqliteOutbox
from telephony_bridge.report.prompt import build_request, interview_text, parse_answer
from telephony_bridge.report.schema import REPORT_SCHEMA, ReportError, validate
from telephony_bridge.report.signing import sign, verify
from telephony_bridge.report.sms import sms_text
from telephony_bridge.report.worker import DeliveryWorker
from telephony_bridge.store import SqliteStore
from telephony_bridge.testing.gemini.rest import RestEmulator, answer_for, candidate

KEY = "test-" + "k" * 10
RECORD = {
    "call_sid": "CA1",
    "transcript": [
        {"role": "agent", "text": "Tell me about your idea.", "t": 0.5},
        {"role": "caller", "text": "We're building ChairTime. It fills last minute cancellations at dental clinics.", "t": 2},
        {"role": "agent", "text": "Who pays?", "t": 6},
        {"role": "caller", "text": "Clinics pay two hundred dollars a month.", "t": 8},
    ],
    "notes": [{"topic": "problem", "fact": "Clinics lose revenue to cancellations"}],
    "tools": [{"name": "lookup_market", "result": {"market": "dental software", "size_usd_bn": 2.1}}],
}


def run(coro):
    return asyncio.run(coro)


# ------------------------------------------------------------------- schema, request, answer


def test_request_carries_who_said_what_notes_tools_and_the_schema() -> None:
    body = build_request(RECORD)
    text = body["contents"][0]["parts"][0]["text"]
    assert "Founder: We're building ChairTime." in text and "Interviewer: Who pays?" in text
    assert "Clinics lose revenue to cancellations" in text and "size_usd_bn" in text
    config = body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] is REPORT_SCHEMA


def test_the_emulators_answer_matches_the_schema_and_the_founders_words() -> None:
    report = parse_answer(json.dumps(candidate(json.dumps(answer_for(build_request(RECORD))))))
    assert report["idea"].startswith("We're building ChairTime")
    assert report["business_model"] == {"said": "Clinics pay two hundred dollars a month.", "solidity": "solid"}
    assert report["customer"]["solidity"] == "not-discussed"
    assert report["leaning"]["verdict"] in ("go", "no-go", "undecided") and report["leaning"]["reasons"]
    assert "customer" in report["open_question"]


@pytest.mark.parametrize("raw, kind", [
    (b"not json", "answer"),
    (json.dumps({"candidates": []}), "answer"),
    (json.dumps(candidate("{not json")), "schema"),
    (json.dumps(candidate(json.dumps({"summary": "x"}))), "schema"),
])
def test_a_bad_answer_is_a_typed_error(raw, kind) -> None:
    with pytest.raises(ReportError) as err:
        parse_answer(raw)
    assert err.value.kind == kind


def test_validate_names_the_wrong_path() -> None:
    good = answer_for(build_request(RECORD))
    assert validate(good) is good
    bad = json.loads(json.dumps(good))
    bad["leaning"]["verdict"] = "maybe"
    with pytest.raises(ReportError, match=r"\$\.leaning\.verdict"):
        validate(bad)
    bad = json.loads(json.dumps(good))
    bad["extra"] = 1
    with pytest.raises(ReportError, match="extra"):
        validate(bad)


def test_interview_text_without_a_transcript() -> None:
    assert "(nothing was said)" in interview_text({})


def test_sms_text_is_short_and_has_the_leaning_and_question() -> None:
    report = {"status": "ok", **answer_for(build_request(RECORD))}
    text = sms_text(report)
    assert len(text) <= 300 and "leaning" in text and "Open question" in text


# ----------------------------------------------------------------------------- backoff


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter() -> None:
    p = RetryPolicy(attempts=10, base_s=2, cap_s=30, jitter=0.25)
    assert [p.delay(a, 0.0) for a in range(1, 7)] == [2, 4, 8, 16, 30, 30]
    for a in range(1, 7):
        lo, hi = p.bounds(a)
        for r in (0.0, 0.3, 0.999):
            assert lo <= p.delay(a, r) <= hi
    assert p.delay(1, 0.999) == pytest.approx(1.5, abs=0.01)
    assert p.exhausted(10) and not p.exhausted(9)


def test_retry_after_wins_when_longer_and_is_capped() -> None:
    p = RetryPolicy(attempts=3, base_s=1, cap_s=10, max_retry_after_s=60)
    assert p.delay(1, 0.0, retry_after_s=7) == 7
    assert p.delay(1, 0.0, retry_after_s=0.1) == 1
    assert p.delay(1, 0.0, retry_after_s=3600) == 60


def test_parse_retry_after() -> None:
    now = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    assert parse_retry_after("7", now) == 7
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now) == pytest.approx(30)
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


# ---------------------------------------------------------------------------- signatures


def test_signature_verifies_and_refuses_tampering_and_replays() -> None:
    secret, body, t = "s" * 32, b'{"a":1}', 1_767_225_600
    header = sign(secret, body, t)
    assert header.startswith(f"t={t},v1=")
    assert verify(secret, body, header, now=t + 10)
    assert not verify(secret, body + b" ", header, now=t + 10)
    assert not verify("x" * 32, body, header, now=t + 10)
    assert not verify(secret, body, header, now=t + 301)  # replayed five minutes later
    assert not verify(secret, body, header.replace(f"t={t}", f"t={t + 5}"), now=t + 10)
    assert not verify(secret, body, "garbage", now=t) and not verify(secret, body, None, now=t)


# ------------------------------------------------------- the client against the emulator


async def _client_run(faults, *, timeout_s=2.0, attempts=3, backend=None, record=RECORD):
    rest = RestEmulator(api_key=KEY, oauth=None, backends=frozenset({"gemini-api", "vertex"}))
    rest.faults.extend(faults)
    await rest.start()
    slept: list[float] = []

    async def fake_sleep(s: float) -> None:
        slept.append(s)

    try:
        async with httpx.AsyncClient() as http:
            client = ReportClient(backend or GeminiApiBackend(KEY, rest_base=rest.url), "gemini-3.8-flash", http,
                                  policy=RetryPolicy(attempts=attempts, base_s=2, cap_s=30, jitter=0.25),
                                  timeout_s=timeout_s, sleep=fake_sleep, rand=lambda: 0.0)
            log: list[dict] = []
            try:
                return await client.generate(record, log), log, slept, rest
            except ReportError as err:
                return err, log, slept, rest
    finally:
        await rest.stop()


def test_client_ok_first_time_on_the_gemini_api_path() -> None:
    report, log, slept, rest = run(_client_run([]))
    assert report["leaning"]["verdict"] and log == [{"attempt": 1, "outcome": "ok", "delay_s": None}]
    assert rest.requests[0].path == "/v1beta/models/gemini-3.8-flash:generateContent"
    assert rest.requests[0].auth == "api_key" and slept == []


def test_client_on_vertex_express() -> None:
    rest_holder = {}

    async def go():
        rest = RestEmulator(api_key=KEY, oauth=None, backends=frozenset({"vertex"}))
        await rest.start()
        rest_holder["r"] = rest
        try:
            async with httpx.AsyncClient() as http:
                client = ReportClient(VertexExpressBackend(KEY, rest_base=rest.url), "gemini-3.8-flash", http)
                return await client.generate(RECORD)
        finally:
            await rest.stop()

    report = run(go())
    assert report["idea"]
    assert rest_holder["r"].requests[0].path == "/v1/publishers/google/models/gemini-3.8-flash:generateContent"


@pytest.mark.parametrize("kind, outcome, delay", [
    ("500", "500", 2.0),
    ("429", "429", 7.0),       # Retry-After: 7 beats the 2 s backoff
    ("hang", "timeout", 2.0),
    ("off_schema", "schema", 2.0),
])
def test_client_retries_each_fault_then_succeeds(kind, outcome, delay) -> None:
    from telephony_bridge.testing.gemini.rest import RestFault

    report, log, slept, _ = run(_client_run([RestFault(kind, retry_after_s=7)], timeout_s=0.5))
    assert isinstance(report, dict), report
    assert [e["outcome"] for e in log] == [outcome, "ok"]
    assert slept == [delay]


def test_client_gives_up_after_the_bounded_attempts() -> None:
    from telephony_bridge.testing.gemini.rest import RestFault

    err, log, slept, rest = run(_client_run([RestFault("500", times=5)], attempts=3))
    assert isinstance(err, ReportError) and err.status == 500
    assert len(log) == 3 and slept == [2.0, 4.0] and len(rest.requests) == 3


def test_client_does_not_retry_a_wrong_key() -> None:
    err, log, slept, _ = run(_wrong_key())
    assert isinstance(err, ReportError) and err.status == 403 and len(log) == 1 and slept == []
    assert KEY not in err.reason and "wrong" not in err.reason


async def _wrong_key():
    rest = RestEmulator(api_key=KEY, oauth=None, backends=frozenset({"gemini-api"}))
    await rest.start()
    slept: list[float] = []
    try:
        async with httpx.AsyncClient() as http:
            client = ReportClient(GeminiApiBackend("wrong-key-123", rest_base=rest.url), "m", http,
                                  sleep=lambda s: slept.append(s) or asyncio.sleep(0))
            log: list[dict] = []
            try:
                await client.generate(RECORD, log)
            except ReportError as err:
                return err, log, slept, rest
    finally:
        await rest.stop()
    raise AssertionError("no error")


# --------------------------------------------------------- the worker on a fake clock


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def test_worker_backoff_and_dead_letter_on_a_fake_clock(tmp_path) -> None:
    async def go():
        store = SqliteStore(str(tmp_path / "o.sqlite3"))
        outbox, clock = SqliteOutbox(store), Clock()
        calls: list[float] = []

        async def always_down(d):
            calls.append(clock.t)
            raise ReportError("network", "ConnectError")

        worker = DeliveryWorker(outbox, {"webhook": always_down},
                                {"webhook": RetryPolicy(attempts=4, base_s=2, cap_s=5, jitter=0.5)},
                                owner="w1", lease_s=30, clock=clock, rand=lambda: 0.5)
        await outbox.add("CA1:webhook", "CA1", "webhook", {"x": 1}, clock.t)
        assert await worker.run_once() == 1
        d = await outbox.get("CA1:webhook")
        assert d.status == PENDING and d.attempts == 1 and d.ready_at == clock.t + 1.5  # 2 * (1 - 0.5*0.5)
        clock.t += 1.4
        assert await worker.run_once() == 0  # not yet
        clock.t += 0.1
        assert await worker.run_once() == 1
        assert (await outbox.get("CA1:webhook")).ready_at == pytest.approx(clock.t + 3.0)
        for _ in range(2):
            clock.t = (await outbox.get("CA1:webhook")).ready_at
            await worker.run_once()
        d = await outbox.get("CA1:webhook")
        assert d.status == FAILED and d.attempts == 4 and "ConnectError" in d.last_error
        assert [round(b - a, 3) for a, b in zip(calls, calls[1:])] == [1.5, 3.0, 3.75]  # cap 5 * 0.75
        assert [h[2] for h in worker.history] == ["retry:network"] * 3 + ["failed:network"]
        await store.close()

    run(go())


def test_a_lease_left_by_a_dead_worker_is_taken_over_once_it_runs_out(tmp_path) -> None:
    async def go():
        store = SqliteStore(str(tmp_path / "o.sqlite3"))
        outbox, clock = SqliteOutbox(store), Clock()
        await outbox.add("CA2:webhook", "CA2", "webhook", {}, clock.t)
        assert await outbox.add("CA2:webhook", "CA2", "webhook", {}, clock.t) is False  # once
        dead = await outbox.claim(clock.t, "dead-replica", 30)
        assert [d.id for d in dead] == ["CA2:webhook"]  # ... and it dies mid-attempt
        done: list[str] = []

        async def ok(d):
            done.append(d.id)

        worker = DeliveryWorker(outbox, {"webhook": ok}, {}, owner="w2", lease_s=30, clock=clock)
        clock.t += 29.9
        assert await worker.run_once() == 0
        clock.t += 0.1
        assert await worker.run_once() == 1 and done == ["CA2:webhook"]
        d = await outbox.get("CA2:webhook")
        assert d.status == DELIVERED and d.attempts == 2 and d.owner == "w2"
        # The dead replica's late answer cannot settle it again.
        assert not await outbox.complete("CA2:webhook", "dead-replica", clock.t)
        assert not await outbox.retry("CA2:webhook", "dead-replica", clock.t, "late")
        await store.close()

    run(go())


def test_worker_run_wakes_when_work_is_added(tmp_path) -> None:
    async def go():
        store = SqliteStore(":memory:")
        outbox = SqliteOutbox(store)
        seen = asyncio.Event()

        async def ok(d):
            seen.set()

        worker = DeliveryWorker(outbox, {"sms": ok}, {}, owner="w", poll_s=30)
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.05)
        await outbox.add("CA3:sms", "CA3", "sms", {}, time.time())
        worker.wake()
        await asyncio.wait_for(seen.wait(), 2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()

    run(go())


# ------------------------------------------------------------- settings and REST endpoints


def test_report_settings() -> None:
    from telephony_bridge.errors import ConfigError
    from telephony_bridge.settings import load_settings

    base = {"GEMINI_API_KEY": KEY, "PUBLIC_URL": "https://bridge.example", "TWILIO_AUTH_TOKEN": "t" * 32}
    s = load_settings(base)
    assert s.report and s.report_model == "gemini-3.8-flash" and s.report_webhook_url is None and not s.report_sms
    with pytest.raises(ConfigError, match="REPORT_WEBHOOK_SECRET"):
        load_settings({**base, "REPORT_WEBHOOK_URL": "https://ops.example/hook"})
    with pytest.raises(ConfigError, match="REPORT_WEBHOOK_SECRET must be at least 32"):
        load_settings({**base, "REPORT_WEBHOOK_URL": "https://ops.example/hook", "REPORT_WEBHOOK_SECRET": "short"})
    with pytest.raises(ConfigError, match="REPORT_WEBHOOK_URL must be"):
        load_settings({**base, "REPORT_WEBHOOK_URL": "ftp://x", "REPORT_WEBHOOK_SECRET": "s" * 32})
    with pytest.raises(ConfigError, match="TWILIO_ACCOUNT_SID"):
        load_settings({**base, "REPORT_SMS": "on"})
    s = load_settings({**base, "REPORT": "off", "REPORT_MODEL": "gemini-3.7-flash", "REPORT_SMS": "on",
                       "TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_FROM_NUMBER": "+15550001111",
                       "REPORT_WEBHOOK_URL": "https://ops.example/hook", "REPORT_WEBHOOK_SECRET": "s" * 32})
    assert not s.report and s.report_model == "gemini-3.7-flash" and s.report_sms
    assert "s" * 32 not in repr(s)


def test_rest_endpoints_per_backend(tmp_path) -> None:
    from telephony_bridge.gemini.backend import TokenCache, VertexBackend, adc_loader
    from telephony_bridge.testing.oauth import TokenEndpoint

    async def go(key_file, issued):
        gem = await GeminiApiBackend(KEY).rest_endpoint("gemini-3.8-flash")
        assert gem.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-3.8-flash:generateContent"
        assert gem.headers == {"x-goog-api-key": KEY}
        exp = await VertexExpressBackend(KEY).rest_endpoint("gemini-3.8-flash")
        assert exp.url == "https://aiplatform.googleapis.com/v1/publishers/google/models/gemini-3.8-flash:generateContent"
        tokens = TokenCache(adc_loader(key_file, "billing-proj-1"))  # one cache: Live and REST share it
        urls = {}
        for loc in ("global", "us", "eu", "europe-west4"):
            backend = VertexBackend("my-proj-1", loc, tokens=tokens)
            live, rest = await backend.endpoint(), await backend.rest_endpoint("gemini-3.8-flash")
            urls[loc] = rest.url
            assert rest.headers == live.headers == {"Authorization": f"Bearer {issued[0]}",
                                                    "x-goog-user-project": "billing-proj-1"}
        assert tokens.refreshes == 1
        tail = "/publishers/google/models/gemini-3.8-flash:generateContent"
        assert urls == {
            "global": "https://aiplatform.googleapis.com/v1/projects/my-proj-1/locations/global" + tail,
            "us": "https://aiplatform.us.rep.googleapis.com/v1/projects/my-proj-1/locations/us" + tail,
            "eu": "https://aiplatform.eu.rep.googleapis.com/v1/projects/my-proj-1/locations/eu" + tail,
            "europe-west4": "https://europe-west4-aiplatform.googleapis.com/v1/projects/my-proj-1/locations/europe-west4"
                            + tail,
        }
        over = await GeminiApiBackend(KEY, rest_base="http://127.0.0.1:9").rest_endpoint("m")
        assert over.url == "http://127.0.0.1:9/v1beta/models/m:generateContent"

    with TokenEndpoint() as oauth:
        key_file = oauth.write(tmp_path / "sa.json", oauth.service_account_info())
        run(go(key_file, oauth.issued))


def test_a_handler_bug_is_retried_after_the_cap_then_dead_lettered(tmp_path) -> None:
    async def go():
        store = SqliteStore(":memory:")
        outbox, clock = SqliteOutbox(store), Clock()

        async def buggy(d):
            raise KeyError("to")

        worker = DeliveryWorker(outbox, {"sms": buggy}, {"sms": RetryPolicy(attempts=2, base_s=1, cap_s=9)},
                                owner="w", clock=clock)
        await outbox.add("CA4:sms", "CA4", "sms", {}, clock.t)
        await worker.run_once()
        d = await outbox.get("CA4:sms")
        assert d.status == PENDING and d.ready_at == clock.t + 9 and d.last_error == "internal: KeyError"
        clock.t += 9
        await worker.run_once()
        assert (await outbox.get("CA4:sms")).status == FAILED
        await store.close()

    run(go())


def test_the_emulator_shapes_its_answer_by_whatever_schema_it_is_given() -> None:
    """responseSchema (the OpenAPI subset, upper-case types) instead of responseJsonSchema."""
    body = build_request(RECORD)
    body["generationConfig"] = {"responseMimeType": "application/json", "responseSchema": {
        "type": "OBJECT", "properties": {
            "idea": {"type": "STRING"},
            "leaning": {"type": "OBJECT", "properties": {"verdict": {"type": "STRING", "enum": ["yes", "no"]}}},
            "score": {"type": "INTEGER"}}}}
    answer = answer_for(body)
    assert set(answer) == {"idea", "leaning", "score"}
    assert answer["idea"].startswith("We're building ChairTime") and answer["leaning"] == {"verdict": "yes"}
    assert answer["score"] == 0


def test_the_emulators_generate_content_checks_credentials_like_live() -> None:
    async def go():
        rest = RestEmulator(api_key=KEY, oauth=None, backends=frozenset({"gemini-api"}))
        await rest.start()
        try:
            async with httpx.AsyncClient() as http:
                url = rest.url + "/v1beta/models/m:generateContent"
                missing = await http.post(url, json=build_request(RECORD))
                wrong = await http.post(url, json=build_request(RECORD), headers={"x-goog-api-key": "nope"})
                vertex = await http.post(rest.url + "/v1/publishers/google/models/m:generateContent",
                                         json=build_request(RECORD), headers={"x-goog-api-key": KEY})
                bad = await http.post(url, content=b"{", headers={"x-goog-api-key": KEY})
            return missing, wrong, vertex, bad
        finally:
            await rest.stop()

    missing, wrong, vertex, bad = run(go())
    assert missing.status_code == 401 and missing.json()["error"]["status"] == "UNAUTHENTICATED"
    assert wrong.status_code == 403 and "API key not valid" in wrong.json()["error"]["message"]
    assert vertex.status_code == 404  # this emulator serves the Gemini API only
    assert bad.status_code == 400


def test_the_emulators_generate_content_takes_a_client_hanging_up_mid_request(capfd) -> None:
    """A bridge killed while it sends a report (the fault matrix's drain row): the emulator
    records the request as abandoned and goes on serving, with no traceback in its log."""
    async def go():
        rest = RestEmulator(api_key=KEY, oauth=None, backends=frozenset({"gemini-api"}))
        await rest.start()
        try:
            reader, writer = await asyncio.open_connection(rest.host, rest.port)
            writer.write(b"POST /v1beta/models/m:generateContent HTTP/1.1\r\nHost: x\r\n"
                         b"x-goog-api-key: " + KEY.encode() + b"\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 5000\r\n\r\n{\"contents\":")
            await writer.drain()
            await asyncio.sleep(0.2)  # the server has the headers and waits for the body
            writer.close()
            for _ in range(200):
                if rest.requests:
                    break
                await asyncio.sleep(0.01)
            async with httpx.AsyncClient() as http:
                after = await http.post(rest.url + "/v1beta/models/m:generateContent",
                                        json=build_request(RECORD), headers={"x-goog-api-key": KEY})
            return [r.status for r in rest.requests], after.status_code
        finally:
            await rest.stop()

    statuses, after = run(go())
    assert statuses == [499, 200] and after == 200
    assert "Traceback" not in capfd.readouterr().err
