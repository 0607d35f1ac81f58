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
import pytest

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
