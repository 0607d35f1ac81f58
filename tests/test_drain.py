"""Graceful drain (drain.py) on a fake clock, the server's draining answers, and Gemini input
chunking (call/link.py). The real-process rolling restart is in test_scale_out.py."""

from __future__ import annotations

import asyncio
import base64
import json
import xml.etree.ElementTree as ET

import httpx
from twilio.request_validator import RequestValidator

from telephony_bridge.call.config import CallConfig
from telephony_bridge.call.link import Link
from telephony_bridge.call.timeline import Timeline
from telephony_bridge.drain import Drain, DrainPlan, HANDOVER_REASON
from telephony_bridge.gemini import messages as gm
from telephony_bridge.server import create_app
from telephony_bridge.settings import Settings, load_settings
from telephony_bridge.twilio.twiml import redirect_twiml

AUTH = "twilio-auth-" + "5a" * 10
PUBLIC = "https://bridge.example.com"
FORM = {"CallSid": "CA" + "3" * 32, "AccountSid": "AC" + "2" * 32, "From": "+15551230000", "To": "+15557654321",
        "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01"}


# -- the plan ----------------------------------------------------------------------------------------

def test_plan_lets_calls_finish_then_hands_over_at_a_safe_moment_then_at_the_deadline():
    plan = DrainPlan(finish_s=10, handover_s=25, max_s=40)
    assert not plan.draining and not plan.hand_over(100.0, quiet=True) and not plan.done(100.0, 0)
    assert plan.begin(100.0) and not plan.begin(101.0)  # a second SIGTERM does not restart it
    assert plan.draining
    assert not plan.hand_over(109.9, quiet=True)  # calls may still end on their own
    assert plan.hand_over(110.0, quiet=True) and not plan.hand_over(124.9, quiet=False)
    assert plan.hand_over(125.0, quiet=False)  # at the latest
    assert not plan.done(120.0, 2) and plan.done(120.0, 0) and plan.done(140.0, 2)


class _Core:
    def __init__(self, safe: bool) -> None:
        self.safe, self.ended, self.call_sid = safe, None, "CA1"

    def safe_to_move(self, now: float) -> bool:
        return self.safe


class _Bridge:
    def __init__(self, safe: bool) -> None:
        self.core = _Core(safe)
        self.reasons: list[str] = []

    def hand_over(self, reason: str) -> None:
        self.reasons.append(reason)
        self.core.ended = reason


def test_drain_hands_over_each_call_once_with_a_reason_that_keeps_it_active():
    drain = Drain(DrainPlan(finish_s=0, handover_s=5, max_s=10))
    safe, busy = _Bridge(True), _Bridge(False)
    drain.track(safe)
    drain.track(busy)
    drain.plan.begin(0.0)
    assert not drain.step(0.1)
    assert safe.reasons == [HANDOVER_REASON] and busy.reasons == []
    drain.untrack(safe)  # its stream closed: the server's on_finish
    drain.step(0.2)
    assert safe.reasons == [HANDOVER_REASON]  # once
    drain.step(5.0)
    assert busy.reasons == [HANDOVER_REASON]
    drain.untrack(busy)
    assert drain.step(5.1) and drain.handed_over == 2
    assert HANDOVER_REASON.startswith("bridge-closed")  # bridge.py leaves such a call "active"


# -- the server while draining ---------------------------------------------------------------------

def _request(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
            return await c.request(method, path, **kwargs)
    return asyncio.run(go())


def _signed_post(app, path: str) -> httpx.Response:
    sig = RequestValidator(AUTH).compute_signature(PUBLIC + path, FORM)
    return _request(app, "POST", path, data=FORM, headers={"X-Twilio-Signature": sig})


def test_a_draining_server_is_unready_and_redirects_new_and_continuing_calls_elsewhere(tmp_path):
    app = create_app(Settings(gemini_api_key="AIza-test-key-0123456789", public_url=PUBLIC, twilio_auth_token=AUTH,
                              sqlite_path=str(tmp_path / "c.sqlite3")))
    assert _request(app, "GET", "/readyz").status_code == 200
    assert "<Connect" in _signed_post(app, "/twiml").text
    app.state.drain.plan.begin(0.0)
    ready = _request(app, "GET", "/readyz")
    assert ready.status_code == 503 and ready.json()["draining"] is True
    live = _request(app, "GET", "/healthz")
    assert live.status_code == 200 and live.json()["draining"] is True  # alive: not restarted for it
    for path in ("/twiml", "/twiml/continue"):
        r = _signed_post(app, path)
        assert r.status_code == 200 and r.headers["connection"] == "close"
        root = ET.fromstring(r.text)
        redirect = root.find("Redirect")
        assert redirect is not None and redirect.text == PUBLIC + path and redirect.get("method") == "POST"
        assert root.find("Connect") is None


def test_redirect_twiml_pauses_first_when_asked():
    root = ET.fromstring(redirect_twiml("https://x.test/twiml", pause_s=1))
    assert [c.tag for c in root] == ["Pause", "Redirect"] and root[0].get("length") == "1"


def test_drain_settings_come_from_the_environment():
    s = load_settings({"GEMINI_API_KEY": "k" * 39, "PUBLIC_URL": PUBLIC, "TWILIO_AUTH_TOKEN": AUTH,
                       "DRAIN_FINISH_S": "3", "DRAIN_HANDOVER_S": "9", "DRAIN_MAX_S": "20",
                       "GEMINI_INPUT_CHUNK_MS": "70"})
    assert (s.drain_finish_s, s.drain_handover_s, s.drain_max_s) == (3.0, 9.0, 20.0)
    assert s.gemini_input_chunk_ms == 60  # whole 20 ms frames


# -- Gemini input chunks ------------------------------------------------------------------------------

def _ready_link(chunk_ms: int) -> Link:
    counters: dict[str, int] = {k: 0 for k in ("input_dropped_frames", "input_replayed_frames", "reconnects",
                                               "handovers")}
    link = Link(gm.SetupConfig(model="m"), CallConfig(input_chunk_ms=chunk_ms), Timeline(0.0), counters)
    link.connecting(0.0)
    link.session.receive(b'{"setupComplete":{}}', 0.0)
    link.ready(0.0, [])
    link.gemini_out.clear()
    return link


def _pcm(message: str) -> bytes:
    return base64.b64decode(json.loads(message)["realtimeInput"]["audio"]["data"])


def test_caller_audio_goes_to_gemini_in_chunks_of_the_configured_length_in_order():
    frames = [bytes([0x80 + i]) * 160 for i in range(10)]  # distinct μ-law frames
    single = _ready_link(20)
    for f in frames:
        single.caller_audio(f)
    batched = _ready_link(100)
    for f in frames[:4]:
        batched.caller_audio(f)
    assert not batched.gemini_out  # a chunk goes once it is whole
    for f in frames[4:]:
        batched.caller_audio(f)
    assert len(single.gemini_out) == 10 and len(batched.gemini_out) == 2
    whole = b"".join(_pcm(m) for m in single.gemini_out)
    assert b"".join(_pcm(m) for m in batched.gemini_out) == whole  # the same audio, in order
    assert len(_pcm(batched.gemini_out[0])) == 5 * 640  # 100 ms of 16 kHz PCM


def test_the_chunk_short_of_whole_goes_when_the_call_ends():
    frames = [bytes([0x80 + i]) * 160 for i in range(8)]
    single = _ready_link(20)
    batched = _ready_link(100)
    for f in frames:
        single.caller_audio(f)
        batched.caller_audio(f)
    assert len(batched.gemini_out) == 1  # 3 frames wait for the rest of their chunk
    batched.flush_caller_audio()
    assert len(batched.gemini_out) == 2 and len(_pcm(batched.gemini_out[1])) == 3 * 640
    assert b"".join(_pcm(m) for m in batched.gemini_out) == b"".join(_pcm(m) for m in single.gemini_out)
    batched.flush_caller_audio()  # nothing left: nothing more
    assert len(batched.gemini_out) == 2


def test_chunks_kept_while_down_are_replayed_and_counted_in_frames():
    link = _ready_link(100)
    link.resumption_update(gm.SessionResumptionUpdate(new_handle="h1", resumable=True), 0.0)
    assert link.handle_at == 0.0
    for _ in range(5):
        link.caller_audio(b"\xff" * 160)
    link.gemini_out.clear()
    assert link.closed(1011, "internal", 0.2, mid_turn=False) is None
    link.connecting(0.3)
    link.session.receive(b'{"setupComplete":{}}', 0.4)
    link.ready(0.4, [])
    assert sum("realtimeInput" in m for m in link.gemini_out) == 1
    assert link.counters["input_replayed_frames"] == 5
