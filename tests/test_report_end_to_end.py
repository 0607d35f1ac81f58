"""The post-call report end to end: the real emulator (Live + generateContent), the real bridge,
the caller simulator, a real loopback webhook receiver checking signatures with the README's own
snippet, the twilio library against a loopback Messages endpoint, SQLite and a real redis-server,
and a real ``telephony-bridge serve`` process killed while a delivery is pending."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from pathlib import Path

import httpx

from telephony_bridge.report.outbox import DELIVERED, SqliteOutbox
from telephony_bridge.store import SqliteStore
from telephony_bridge.testing import CallerScript, CallerSimulator, GeminiEmulator, Scenario
from telephony_bridge.testing.gemini.rest import RestFault
from telephony_bridge.testing.local_call import DEMO_KEY, founder_turns, place_local_call
from telephony_bridge.testing.processes import free_port, start_replica
from telephony_bridge.testing.receivers import FakeTwilioMessages, WebhookReceiver

SECRET = "whsec-" + "x" * 32
OPERATOR = "operator-token-" + "o" * 8
ACCOUNT = "AC" + "0" * 32
FROM = "+15005550006"
CALLER = "+15551230000"  # the simulator's From
README = Path(__file__).resolve().parent.parent / "README.md"


def readme_verifier():
    """The README's verification snippet, run as written."""
    text = README.read_text()
    code = re.search(r"<!-- verify-snippet -->\s*```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    return namespace["verify_bridge_signature"]


def short_call():
    """Two founder answers (the idea, the price): a call of ~20 s."""
    turns = founder_turns()
    texts = [t["text"] for t in json.loads((Path(__file__).resolve().parent.parent / "telephony_bridge" / "assets"
                                            / "founder" / "turns.json").read_text())["turns"]]
    return CallerScript.from_founder_turns([turns[0], turns[3]]), Scenario(caller_texts=[texts[0], texts[3]])


async def wait_report(store, sid, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = await store.get_report(sid)
        if report and report["status"] != "pending":
            return report
        await asyncio.sleep(0.05)
    raise AssertionError(f"no report for {sid}")



async def settled_attempts(outbox, delivery_id: str, attempts: int, timeout: float):
    """The delivery once it has been tried ``attempts`` times and no worker holds it (or as it is at ``timeout``)."""
    deadline = time.monotonic() + timeout
    d = None
    while time.monotonic() < deadline:
        d = await outbox.get(delivery_id)
        if d is not None and d.attempts >= attempts and d.owner is None:
            break
        await asyncio.sleep(0.05)
    return d

def test_report_delivered_once_signed_readable_and_texted(tmp_path) -> None:
    verify = readme_verifier()
    token = "tw" + secrets.token_hex(15)

    async def go():
        receiver = WebhookReceiver(SECRET, verifier=verify)
        twilio = FakeTwilioMessages(ACCOUNT, token)
        await receiver.start()
        await twilio.start()
        seen: dict = {}

        async def while_up(bridge, result):
            seen["report"] = await wait_report(bridge.app.state.store, result.call_sid)
            await receiver.wait_accepted(1)
            deadline = time.monotonic() + 10
            while not twilio.messages and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            async with httpx.AsyncClient() as http:
                url = bridge.settings.public(f"/calls/{result.call_sid}/report")
                seen["denied"] = (await http.get(url)).status_code
                seen["http"] = (await http.get(url, headers={"Authorization": f"Bearer {OPERATOR}"})).json()
            await asyncio.sleep(1.0)  # time for a duplicate to show, if any were sent

        script, scenario = short_call()
        try:
            call = await place_local_call(
                script, scenario, while_up=while_up, silence_duration_ms=800, operator_token=OPERATOR,
                sqlite_path=str(tmp_path / "calls.sqlite3"), twilio_auth_token=token,
                report_webhook_url=receiver.url, report_webhook_secret=SECRET,
                report_sms=True, twilio_account_sid=ACCOUNT, twilio_from_number=FROM,
                twilio_api_url=twilio.origin)
        finally:
            await receiver.stop()
            await twilio.stop()
        return call, seen, receiver, twilio

    call, seen, receiver, twilio = asyncio.run(go())
    report = seen["report"]
    assert report["status"] == "ok" and report["call_sid"] == call.result.call_sid
    assert report["idea"].startswith("We're building ChairTime")
    assert report["business_model"]["said"] == "Clinics pay two hundred dollars a month, and one filled slot covers that."
    assert report["customer"]["solidity"] == "not-discussed"  # never came up in this call
    assert report["leaning"]["verdict"] in ("go", "undecided", "no-go") and report["open_question"]
    assert seen["denied"] == 401 and seen["http"] == report
    assert call.emulator.rest.requests[0].auth == "api_key"
    # Delivered once, with a valid signature, carrying the report and the call record.
    assert len(receiver.accepted) == 1 and receiver.duplicates == 0
    assert [r.signature_ok for r in receiver.received] == [True]
    got = receiver.received[0]
    payload = got.json()
    assert got.idempotency_key == f"{call.result.call_sid}:webhook" == payload["delivery_id"]
    assert payload["report"] == report and payload["call"]["transcript"]
    # A replay of that request later than the tolerance is refused by the README's snippet.
    assert verify(SECRET, got.body, got.signature)
    assert not verify(SECRET, got.body, got.signature, now=time.time() + 301)
    assert not verify(SECRET, got.body + b" ", got.signature)
    # The SMS went through the twilio library to the caller's number with the summary.
    assert twilio.refused == [] and len(twilio.messages) == 1
    sms = twilio.messages[0]
    assert sms["to"] == CALLER and sms["from"] == FROM
    assert report["leaning"]["verdict"].upper() in sms["body"] and report["open_question"][:40] in sms["body"]
    assert SECRET not in json.dumps(payload)


def test_receiver_down_then_up_delivered_once_on_redis(redis_url) -> None:
    """Redis store (replicas): the receiver refuses connections at the call's end, then answers
    503 once, then is up: one accepted delivery, the outbox says delivered."""

    async def go():
        receiver = WebhookReceiver(SECRET, port=free_port())  # not started: connection refused
        seen: dict = {}

        async def while_up(bridge, result):
            store = bridge.app.state.store
            seen["report"] = await wait_report(store, result.call_sid)
            outbox = bridge.app.state.reports.outbox
            did = f"{result.call_sid}:webhook"
            d = await settled_attempts(outbox, did, 2, timeout=15)
            seen["down_attempts"] = d.attempts
            receiver.fail_with = 503
            await receiver.start()
            deadline = time.monotonic() + 20
            while not receiver.received and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            receiver.fail_with = None
            await receiver.wait_accepted(1, timeout=40)
            await asyncio.sleep(1.0)
            seen["delivery"] = await outbox.get(did)

        script, scenario = short_call()
        try:
            call = await place_local_call(script, scenario, while_up=while_up, silence_duration_ms=800,
                                          redis_url=redis_url, report_webhook_url=receiver.url,
                                          report_webhook_secret=SECRET)
        finally:
            await receiver.stop()
        return call, seen, receiver

    call, seen, receiver = asyncio.run(go())
    assert seen["report"]["status"] == "ok"
    assert seen["down_attempts"] >= 2
    # (The session's redis-server is shared with other tests: count this call's delivery only.)
    mine = [r for r in receiver.received if r.idempotency_key == f"{call.result.call_sid}:webhook"]
    assert [r.status for r in mine] == [503, 200]  # the 503, then the one accepted
    assert all(r.signature_ok for r in mine) and mine[1].accepted
    assert receiver.accepted[f"{call.result.call_sid}:webhook"] is mine[1]
    d = seen["delivery"]
    assert d.status == DELIVERED and d.attempts == seen["down_attempts"] + 2


def test_vertex_report_after_a_429_and_a_failed_report_still_delivered() -> None:
    async def go():
        receiver = WebhookReceiver(SECRET)
        await receiver.start()
        seen: dict = {}

        async def while_up(bridge, result):
            seen["report"] = await wait_report(bridge.app.state.store, result.call_sid)
            await receiver.wait_accepted(1)

        script, scenario = short_call()
        try:
            vertex = await place_local_call(script, scenario, while_up=while_up, silence_duration_ms=800,
                                            vertex=True, rest_faults=[RestFault("429", retry_after_s=1)],
                                            report_webhook_url=receiver.url, report_webhook_secret=SECRET)
            ok_report = seen["report"]
            script, scenario = short_call()
            failed = await place_local_call(script, scenario, while_up=while_up, silence_duration_ms=800,
                                            rest_faults=[RestFault("off_schema", times=3)],
                                            report_webhook_url=receiver.url, report_webhook_secret=SECRET)
        finally:
            await receiver.stop()
        return vertex, ok_report, failed, seen["report"], receiver

    vertex, ok_report, failed, failed_report, receiver = asyncio.run(go())
    assert ok_report["status"] == "ok"
    assert [a["outcome"] for a in ok_report["attempts"]] == ["429", "ok"]
    assert ok_report["attempts"][0]["delay_s"] >= 1.0
    reqs = vertex.emulator.rest.requests
    assert [r.auth for r in reqs] == ["bearer", "bearer"]
    assert reqs[0].path.startswith("/v1/projects/local-proj-1/locations/us-central1/publishers/google/models/")
    assert failed_report["status"] == "failed" and "schema" in failed_report["reason"]
    assert [a["outcome"] for a in failed_report["attempts"]] == ["schema"] * 3
    # The failed report still reaches the operator with the call record, once per call.
    assert len(receiver.accepted) == 2 and receiver.duplicates == 0
    by_call = {json.loads(r.body)["call_sid"]: json.loads(r.body) for r in receiver.accepted.values()}
    assert by_call[failed.result.call_sid]["report"]["status"] == "failed"
    assert by_call[vertex.result.call_sid]["report"]["status"] == "ok"


def test_bridge_process_killed_while_a_delivery_is_pending_delivers_once(tmp_path) -> None:
    """A real ``telephony-bridge serve`` is killed (SIGKILL) while its webhook delivery waits out
    a backoff (the receiver is down); a new process on the same SQLite file resumes it at startup."""
    db = tmp_path / "calls.sqlite3"
    port = free_port()

    async def go():
        receiver = WebhookReceiver(SECRET, port=free_port())
        emulator = GeminiEmulator(short_call()[1], api_key=DEMO_KEY, rest=True)
        await emulator.start()
        token = secrets.token_hex(16)
        env = {"GEMINI_API_KEY": DEMO_KEY, "GEMINI_LIVE_URL": emulator.url, "GEMINI_REST_URL": emulator.rest_url,
               "PUBLIC_URL": f"http://127.0.0.1:{port}", "TWILIO_AUTH_TOKEN": token, "CALLS_DB": str(db),
               "HOST": "127.0.0.1", "SILENCE_DURATION_MS": "800", "LOG_LEVEL": "INFO",
               "REPORT_WEBHOOK_URL": receiver.url, "REPORT_WEBHOOK_SECRET": SECRET}
        first = await asyncio.to_thread(start_replica, env, port, tmp_path / "first.log")
        second = None
        try:
            sim = CallerSimulator(f"http://127.0.0.1:{port}/twiml", short_call()[0], auth_token=token, timeout=90)
            result = await sim.run()
            did = f"{result.call_sid}:webhook"
            store = SqliteStore(str(db))
            outbox = SqliteOutbox(store)
            d = await settled_attempts(outbox, did, 1, timeout=30)
            assert d is not None and d.attempts >= 1, "no pending delivery before the kill"
            first.kill()
            await asyncio.to_thread(first.wait)
            # Counted after the kill: a retry (backoff ~2 s) can land between the read above and the kill.
            killed_at = (await outbox.get(did)).attempts
            # The receiver is up before the second process starts: its resumed delivery must land on
            # its first attempt (were the receiver still down, it would count a second failed one).
            await receiver.start()
            second = await asyncio.to_thread(start_replica, env, port, tmp_path / "second.log")
            await receiver.wait_accepted(1, timeout=40)
            await asyncio.sleep(1.5)
            final = await outbox.get(did)
            report = await store.get_report(result.call_sid)
            await store.close()
            return receiver, final, killed_at, report
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    await asyncio.to_thread(proc.wait, 10)
            await receiver.stop()
            await emulator.stop()

    receiver, final, killed_at, report = asyncio.run(go())
    assert report["status"] == "ok"
    assert len(receiver.accepted) == 1 and receiver.duplicates == 0 and len(receiver.received) == 1
    assert final.status == DELIVERED and final.attempts == killed_at + 1
    assert final.owner != "" and final.owner is not None
