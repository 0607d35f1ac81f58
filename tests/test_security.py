"""The front door: signed webhooks and streams, stream tokens, limits, operator endpoints, secrets.

HTTP checks go through httpx's ASGI transport (Starlette 1.10's AppClient warns that it wants
``httpx2``, and warnings are errors here); stream checks run the real app on a loopback port
(LocalBridge) against the Gemini Live emulator, so "never reaches Gemini" is observed on the
emulator itself (no connection attempt at all), not inferred.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import secrets
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import replace

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from telephony_bridge import server as server_module
from telephony_bridge.testing.local_call import DEMO_KEY, LocalBridge, founder_turns
from telephony_bridge.errors import ConfigError
from telephony_bridge.log import LIBRARY_LOGGERS
from telephony_bridge.security import (
    TOKEN_PARAMETER, HeaderRedaction, StreamTokens, TwilioSignatures, bearer_matches, operator_only,
    public_request_url,
)
from telephony_bridge.server import BUSY_MESSAGE, call_config, create_app, uvicorn_options, warn_at_startup
from telephony_bridge.settings import Settings
from telephony_bridge.testing import CallerScript, CallerSimulator, GeminiEmulator, Scenario
from telephony_bridge.testing.simulator import Hangup, Say, WaitForAgent

AUTH_TOKEN = "twilio-auth-" + "9f" * 10
OPERATOR = "operator-" + "7e" * 12
PUBLIC = "https://bridge.example.com"
CALL_SID = "CA" + "1" * 32
FORM = {"CallSid": CALL_SID, "AccountSid": "AC" + "2" * 32, "From": "+15551230000", "To": "+15557654321",
        "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01"}


class AppClient:
    """The little of starlette's TestClient these tests need, over httpx.ASGITransport."""

    def __init__(self, app) -> None:
        self.app = app

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        if "headers" in kwargs:  # non-ASCII header values go as latin-1 bytes, as on the wire
            kwargs["headers"] = {k: v if v.isascii() else v.encode("latin-1") for k, v in kwargs["headers"].items()}

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(go())

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.request("POST", path, **kwargs)


def make_settings(**overrides) -> Settings:
    base = dict(gemini_api_key="AIza-test-key-0123456789", public_url=PUBLIC, twilio_auth_token=AUTH_TOKEN)
    base.update(overrides)
    return Settings(**base)


def sign(url: str, params, token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


# -- webhook signatures ------------------------------------------------------------------------


def post(client: AppClient, path: str, form: dict, signature: str | None, **headers) -> httpx.Response:
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return client.post(path, data=form, headers=headers)


def test_a_signed_webhook_gets_connect_twiml_with_a_token_for_this_call():
    app = create_app(make_settings())
    client = AppClient(app)
    response = post(client, "/twiml", FORM, sign(PUBLIC + "/twiml", FORM))
    assert response.status_code == 200
    stream = ET.fromstring(response.text).find("Connect/Stream")
    assert stream.get("url") == "wss://bridge.example.com/media-stream"
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert app.state.stream_tokens.check(params[TOKEN_PARAMETER], CALL_SID) is None
    assert ET.fromstring(response.text).find("Connect").get("action") == PUBLIC + "/twiml/continue"


@pytest.mark.parametrize("case", ["missing", "garbage", "other-token", "tampered-field", "extra-field",
                                  "dropped-field", "host-header-url", "forwarded-url", "continue-unsigned"])
def test_a_bad_or_missing_webhook_signature_is_403_and_logged_without_secrets(case, log_stream):
    client = AppClient(create_app(make_settings()))
    form, path, headers = dict(FORM), "/twiml", {}
    signature = sign(PUBLIC + "/twiml", FORM)
    if case == "missing":
        signature = None
    elif case == "garbage":
        signature = "not-a-signature\u00e9"
    elif case == "other-token":
        signature = sign(PUBLIC + "/twiml", FORM, token="some-other-account-token")
    elif case == "tampered-field":
        form["From"] = "+15550000000"
    elif case == "extra-field":
        form["Digits"] = "1"
    elif case == "dropped-field":
        del form["To"]
    elif case == "host-header-url":
        # Signed over the URL the request claims (Host header): the server must use PUBLIC_URL.
        headers["Host"] = "evil.example"
        signature = sign("http://evil.example/twiml", FORM)
    elif case == "forwarded-url":
        headers.update({"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"})
        signature = sign("https://evil.example/twiml", FORM)
    elif case == "continue-unsigned":
        path, signature = "/twiml/continue", None
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    response = client.post(path, data=form, headers=headers)
    assert response.status_code == 403
    assert "Stream" not in response.text and AUTH_TOKEN not in response.text
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    (line,) = [entry for entry in lines if entry["event"] == "webhook.rejected"]
    assert line["reason"] == ("missing-signature" if signature is None else "bad-signature")
    assert line["path"] == path
    text = log_stream.getvalue()
    assert AUTH_TOKEN not in text and "***" not in text
    if signature:
        assert signature not in text


def test_the_signature_covers_the_public_url_whatever_the_host_header_says():
    client = AppClient(create_app(make_settings()))
    response = post(client, "/twiml", FORM, sign(PUBLIC + "/twiml", FORM), Host="evil.example")
    assert response.status_code == 200


def test_a_public_url_with_a_prefix_and_a_query_string_are_signed_as_twilio_requests_them():
    # Behind a proxy at https://example.com/phone/ that strips /phone before the app sees it.
    app = create_app(make_settings(public_url="https://example.com/phone"))
    client = AppClient(app)
    url = "https://example.com/phone/twiml?campaign=spring"
    response = client.post("/twiml?campaign=spring", data=FORM, headers={"X-Twilio-Signature": sign(url, FORM)})
    assert response.status_code == 200
    assert ET.fromstring(response.text).find("Connect/Stream").get("url") == "wss://example.com/phone/media-stream"
    # the query string is covered: changing it breaks the signature
    response = client.post("/twiml?campaign=autumn", data=FORM, headers={"X-Twilio-Signature": sign(url, FORM)})
    assert response.status_code == 403
    assert public_request_url("https://x.com/p/", "/twiml", "") == "https://x.com/p/twiml"


def test_repeated_form_fields_are_all_covered():
    client = AppClient(create_app(make_settings()))
    pairs = list(FORM.items()) + [("StirVerstat", "A"), ("StirVerstat", "B")]
    params = {}
    for k, v in pairs:
        params.setdefault(k, []).append(v)

    class Multi(dict):
        def getall(self, key):
            return self[key]

    signature = sign(PUBLIC + "/twiml", Multi(params))
    body = urllib.parse.urlencode(pairs)
    headers = {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}
    assert client.post("/twiml", content=body, headers=headers).status_code == 200
    body = urllib.parse.urlencode(pairs[:-1])  # one of the repeated values dropped
    assert client.post("/twiml", content=body, headers=headers).status_code == 403


def test_a_huge_webhook_body_is_refused_unread():
    client = AppClient(create_app(make_settings()))
    response = client.post("/twiml", content=b"a=" + b"x" * 200_000,
                           headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"})
    assert response.status_code == 413


def test_signature_check_off_lets_unsigned_webhooks_through_and_serve_warns_loudly(monkeypatch, log_stream):
    s = make_settings(twilio_auth_token=None, twilio_signature_check=False)
    client = AppClient(create_app(s))
    assert post(client, "/twiml", FORM, None).status_code == 200
    out = io.StringIO()
    lines = warn_at_startup(s, out)
    banner = out.getvalue()
    assert "TWILIO_SIGNATURE_CHECK=off" in banner and "!!" in banner and "Local development only" in banner
    assert any(json.loads(line)["event"] == "serve.insecure" for line in log_stream.getvalue().splitlines())
    assert lines and not warn_at_startup(make_settings(stream_token_secret="s" * 32), io.StringIO())


def test_serve_passes_the_limits_to_uvicorn_and_warns(monkeypatch, capsys):
    from telephony_bridge import serving

    seen = {}
    # serve() runs uvicorn's server through serving.DrainingServer (SIGTERM drains first).
    monkeypatch.setattr(serving.DrainingServer, "run", lambda self, sockets=None: seen.update(
        ws_max_size=self.config.ws_max_size, ws=self.config.ws,
        ws_per_message_deflate=self.config.ws_per_message_deflate))
    root = logging.getLogger("telephony_bridge")
    saved = (list(root.handlers), root.level, root.propagate, logging.Formatter.converter)
    try:
        server_module.serve(make_settings(twilio_auth_token=None, twilio_signature_check=False,
                                          twilio_max_message_bytes=16384))
    finally:
        root.handlers[:], root.level, root.propagate, logging.Formatter.converter = saved
    assert seen["ws_max_size"] == 16384 and seen["ws"] == "telephony_bridge.media_socket:MediaStreamProtocol"
    assert seen["ws_per_message_deflate"] is False
    assert "WARNING: TWILIO_SIGNATURE_CHECK=off" in capsys.readouterr().err


def test_the_check_on_without_an_auth_token_refuses_to_start():
    with pytest.raises(ConfigError) as info:
        create_app(make_settings(twilio_auth_token=None))
    assert "TWILIO_AUTH_TOKEN" in str(info.value) and "\n" not in str(info.value)


# -- capacity ----------------------------------------------------------------------------------


def test_over_capacity_the_webhook_says_busy_and_hangs_up():
    app = create_app(make_settings(max_concurrent_calls=2))
    app.state.calls.active.update({1: object(), 2: object()})
    client = AppClient(app)
    response = post(client, "/twiml", FORM, sign(PUBLIC + "/twiml", FORM))
    assert response.status_code == 200
    root = ET.fromstring(response.text)
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root.find("Say").text == BUSY_MESSAGE
    app.state.calls.active.pop(2)
    response = post(client, "/twiml", FORM, sign(PUBLIC + "/twiml", FORM))
    assert ET.fromstring(response.text).find("Connect") is not None


def test_limits_reach_the_call_core():
    config = call_config(make_settings(max_call_s=900, no_media_timeout_s=7, playback_lead_ms=120))
    assert (config.max_call_s, config.no_media_timeout_s, config.playback_lead_s) == (900.0, 7.0, 0.12)
    assert uvicorn_options(make_settings())["ws_max_size"] == 64 * 1024


# -- operator endpoints ------------------------------------------------------------------------


def test_metrics_are_off_without_an_operator_token_and_healthz_stays_public():
    client = AppClient(create_app(make_settings()))
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer anything"}).status_code == 404
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["ok"] is True


@pytest.mark.parametrize("authorization,status", [
    (None, 401), ("Bearer wrong", 401), (f"Basic {OPERATOR}", 401), (f"Bearer {OPERATOR}x", 401),
    (f"Bearer {OPERATOR[:-1]}", 401), ("Bearer ", 401), ("Bearer \u00e9\u00e9", 401),
    (f"Bearer {OPERATOR}", 200), (f"bearer {OPERATOR}", 200),
])
def test_metrics_need_the_operator_bearer_token(authorization, status):
    client = AppClient(create_app(make_settings(operator_token=OPERATOR)))
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "bridge_" not in response.text
    else:
        assert "bridge_active_calls" in response.text


def test_operator_only_guards_any_endpoint():
    async def record(request: Request):
        return PlainTextResponse("founder's idea")

    for token, expected in ((None, 404), (OPERATOR, 200)):
        app = Starlette(routes=[Route("/calls/{sid}", operator_only(token)(record))])
        client = AppClient(app)
        assert client.get("/calls/CA1", headers={"Authorization": f"Bearer {OPERATOR}"}).status_code == expected
        assert client.get("/calls/CA1").status_code == (404 if token is None else 401)
    assert bearer_matches(f"Bearer  {OPERATOR} ", OPERATOR)
    assert not bearer_matches(None, OPERATOR) and not bearer_matches(f"Bearer {OPERATOR}", "")


# -- stream tokens -----------------------------------------------------------------------------


def test_stream_tokens_bind_call_and_time_and_are_single_use():
    tokens = StreamTokens("k" * 32, ttl_s=60)
    token = tokens.issue(CALL_SID, now=1000.0)
    assert tokens.check(token, "CA" + "9" * 32, now=1001.0) == "bad-mac"
    assert StreamTokens("j" * 32, 60).check(token, CALL_SID, now=1001.0) == "bad-mac"
    assert tokens.check(token, CALL_SID, now=1061.0) == "expired"
    assert tokens.check(token, CALL_SID, now=1001.0) is None
    assert tokens.check(token, CALL_SID, now=1002.0) == "replayed"
    head, expiry, nonce, mac = tokens.issue(CALL_SID, now=1000.0).split(".")
    assert tokens.check(f"{head}.{int(expiry) + 1}.{nonce}.{mac}", CALL_SID, now=1001.0) == "bad-mac"
    assert tokens.check(f"{head}.{expiry}.{nonce}x.{mac}", CALL_SID, now=1001.0) == "bad-mac"
    # two tokens for one call in the same second (a reconnect) are both usable once
    again = [tokens.issue(CALL_SID, now=1000.0) for _ in range(2)]
    assert again[0] != again[1] and all(tokens.check(t, CALL_SID, now=1001.0) is None for t in again)
    assert tokens.check(None, CALL_SID) == "missing" and tokens.check("", CALL_SID) == "missing"
    long_lived = StreamTokens("k" * 32, ttl_s=10_000).issue(CALL_SID, now=1000.0)
    assert tokens.check(long_lived, CALL_SID, now=1000.0) == "malformed"
    # a random secret per instance: tokens do not cross instances (replicas)
    a, b = StreamTokens(None), StreamTokens(None)
    assert b.check(a.issue(CALL_SID), CALL_SID) == "bad-mac"
    # many accepted tokens: the replay memory forgets expired ones
    for i in range(200):
        sid = f"CA{i:032d}"
        assert tokens.check(tokens.issue(sid, now=2000.0 + i), sid, now=2000.0 + i) is None
    assert len(tokens._used) < 200


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120), st.text(max_size=40))
def test_stream_token_check_never_raises(token, call_sid):
    assert StreamTokens("k" * 32).check(token, call_sid) in ("missing", "malformed", "bad-mac", "expired")


def test_signature_helpers_never_raise_on_odd_headers():
    sigs = TwilioSignatures(AUTH_TOKEN)
    for bad in (None, "", "\u00e9" * 10, "x" * 1000, "=="):
        assert not sigs.stream_ok("wss://x/media-stream", bad)
        assert not sigs.webhook_ok("https://x/twiml", [("a", "b")], bad)
    assert sigs.stream_ok("wss://x/media-stream", sign("wss://x/media-stream", {}))


def test_websocket_debug_logs_do_not_show_credential_headers():
    record = logging.LogRecord("websockets.client", logging.DEBUG, __file__, 1, "> %s: %s",
                               ("x-goog-api-key", "AIza-secret"), None)
    HeaderRedaction().filter(record)
    assert record.getMessage() == "> x-goog-api-key: ***"


# -- the stream, over real loopback sockets ----------------------------------------------------


class Rig:
    """Emulator + bridge on loopback; the emulator records every connection attempt."""

    def __init__(self, **overrides) -> None:
        self.overrides = overrides

    async def __aenter__(self) -> Rig:
        self.emulator = GeminiEmulator(Scenario(), api_key=DEMO_KEY)
        self.attempts: list[tuple[str, bool]] = []
        original = self.emulator._process_request

        def spy(connection, request):
            self.attempts.append((request.path, "x-goog-api-key" in request.headers))
            return original(connection, request)

        self.emulator._process_request = spy
        await self.emulator.start()
        settings_ = Settings(gemini_api_key=DEMO_KEY, public_url="http://127.0.0.1", gemini_live_url=self.emulator.url,
                             twilio_auth_token=secrets.token_hex(16), silence_duration_ms=800)
        self.bridge = LocalBridge(replace(settings_, **self.overrides))
        await self.bridge.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.bridge.stop()
        await self.emulator.stop()

    @property
    def settings(self) -> Settings:
        return self.bridge.settings

    def signature(self) -> str:
        return sign(self.settings.stream_url, {}, self.settings.twilio_auth_token)

    async def stream(self, signature: str | None, frames: list) -> int | None:
        """Open the media stream, send ``frames``, return the close code the bridge sent."""
        headers = {"X-Twilio-Signature": signature} if signature is not None else {}
        async with ws_connect(self.settings.stream_url, additional_headers=headers, proxy=None,
                              open_timeout=5, max_size=None) as ws:
            try:
                for frame in frames:
                    await ws.send(frame if isinstance(frame, (str, bytes)) else json.dumps(frame))
                async with asyncio.timeout(5):
                    while True:
                        await ws.recv()
            except ConnectionClosed:
                pass
            return ws.close_code


def start_frame(call_sid: str = CALL_SID, token: str | None = None) -> dict:
    params = {"from": "+15551230000"}
    if token is not None:
        params[TOKEN_PARAMETER] = token
    sid = "MZ" + "3" * 32
    return {"event": "start", "sequenceNumber": "1", "streamSid": sid,
            "start": {"streamSid": sid, "accountSid": "AC" + "2" * 32, "callSid": call_sid, "tracks": ["inbound"],
                      "customParameters": params,
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}


CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}


@pytest.mark.parametrize("case", [
    "no-signature", "bad-signature", "signed-over-other-url", "no-token", "token-for-another-call",
    "forged-token", "expired-token", "replayed-token", "no-start", "oversize-first-frame", "garbage-start",
])
def test_a_stream_that_fails_a_check_is_closed_1008_and_never_reaches_gemini(case, log_stream):
    async def scenario() -> None:
        async with Rig() as rig:
            tokens = rig.bridge.app.state.stream_tokens
            signature = rig.signature()
            frames: list = [CONNECTED, start_frame(token=tokens.issue(CALL_SID))]
            if case == "no-signature":
                signature = None
            elif case == "bad-signature":
                signature = sign(rig.settings.stream_url, {}, "another-auth-token")
            elif case == "signed-over-other-url":
                signature = sign(rig.settings.stream_url + "?x=1", {}, rig.settings.twilio_auth_token)
            elif case == "no-token":
                frames[1] = start_frame()
            elif case == "token-for-another-call":
                frames[1] = start_frame(token=tokens.issue("CA" + "8" * 32))
            elif case == "forged-token":
                frames[1] = start_frame(token=StreamTokens("x" * 32).issue(CALL_SID))
            elif case == "expired-token":
                frames[1] = start_frame(token=tokens.issue(CALL_SID, now=0.0))
            elif case == "replayed-token":
                token = tokens.issue(CALL_SID)
                assert tokens.check(token, CALL_SID) is None  # its first use
                frames[1] = start_frame(token=token)
            elif case == "no-start":
                frames = [CONNECTED] + [{"event": "media", "media": {"payload": "/w=="}}] * 2
            elif case == "oversize-first-frame":
                frames = ["x" * 70_000]
            elif case == "garbage-start":
                frames = [CONNECTED, {"event": "start", "start": {"callSid": CALL_SID, "streamSid": "MZ\"x"}}]
            code = await rig.stream(signature, frames)
            # an oversize frame never gets past the websocket layer (uvicorn's ws_max_size): 1009
            assert code == (1009 if case == "oversize-first-frame" else 1008)
            await asyncio.sleep(0.1)
            assert rig.attempts == [] and rig.emulator.sessions == []
            calls = rig.bridge.app.state.calls
            assert not calls.active and not calls.finished

    asyncio.run(scenario())
    rejected = [json.loads(line) for line in log_stream.getvalue().splitlines()
                if json.loads(line)["event"] == "stream.rejected"]
    assert len(rejected) == 1


def test_a_stream_that_never_starts_is_closed(monkeypatch):
    monkeypatch.setattr(server_module, "START_TIMEOUT_S", 0.3)

    async def scenario() -> None:
        async with Rig() as rig:
            assert await rig.stream(rig.signature(), [CONNECTED]) == 1008
            assert rig.attempts == []

    asyncio.run(scenario())


def test_a_stream_over_capacity_is_closed_and_the_caller_hears_busy():
    async def scenario() -> None:
        async with Rig(max_concurrent_calls=1) as rig:
            rig.bridge.app.state.calls.active[1] = object()
            tokens = rig.bridge.app.state.stream_tokens
            code = await rig.stream(rig.signature(), [CONNECTED, start_frame(token=tokens.issue(CALL_SID))])
            assert code == 1013 and rig.attempts == []
            # Twilio then asks <Connect action>: the caller is told why.
            url = rig.settings.public("/twiml/continue")
            async with httpx.AsyncClient(trust_env=False) as client:
                response = await client.post(url, data=FORM, headers={
                    "X-Twilio-Signature": sign(url, FORM, rig.settings.twilio_auth_token)})
            assert ET.fromstring(response.text).find("Say").text == BUSY_MESSAGE

    asyncio.run(scenario())


# -- secrets: a whole call, scanned ------------------------------------------------------------


#: The emulator plays Google: it receives the key by design, and its websocket server logs
#: request headers at DEBUG. Its records are not the bridge's.
GOOGLE_SIDE = ("telephony_bridge.emulator", "telephony_bridge.testing.emulator")


class _Everything(logging.Handler):
    """Every record from every logger, rendered without redaction (what a handler would see)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(GOOGLE_SIDE):
            return
        fields = getattr(record, "fields", None)
        self.lines.append(f"{record.name} {record.getMessage()} {json.dumps(fields, default=str) if fields else ''}")


def test_a_whole_call_never_shows_the_key_or_the_auth_token(log_stream):
    auth_token = "tw-auth-" + secrets.token_hex(12)
    operator = "op-" + secrets.token_hex(12)
    everything = _Everything()
    root = logging.getLogger()
    # setup_logging stops propagation from ours and the libraries' loggers (and holds the
    # libraries at WARNING): each gets the unredacted handler and DEBUG here.
    stopped = [logging.getLogger(name) for name in ("telephony_bridge", *LIBRARY_LOGGERS)]
    saved_levels = [x.level for x in (root, *stopped)]
    for x in (root, *stopped):
        x.addHandler(everything)
        x.setLevel(logging.DEBUG)
    try:
        responses, result, attempts = asyncio.run(_call_and_probe(auth_token, operator))
    finally:
        for x, level in zip((root, *stopped), saved_levels):
            x.removeHandler(everything)
            x.setLevel(level)

    assert result.ended_by == "caller" and result.stream_sids
    assert any(r.startswith("metrics 200") for r in responses)
    # The key went in the header, never in a URL.
    assert attempts and all(has_header and "key=" not in path for path, has_header in attempts)
    def in_bridge_log(record: dict) -> bool:  # (the libraries' DEBUG lines exist only in this test)
        name = record["logger"]
        return not name.startswith(GOOGLE_SIDE) and not (
            record["level"] == "debug" and name.split(".")[0] in LIBRARY_LOGGERS)

    rendered = "\n".join(line for line in log_stream.getvalue().splitlines() if in_bridge_log(json.loads(line)))
    assert "call.start" in rendered and "call.end" in rendered
    haystacks = {"bridge log": rendered, "all loggers, unredacted": "\n".join(everything.lines),
                 "twiml": "\n".join(result.twiml), "http responses": "\n".join(responses),
                 "simulator events": json.dumps(result.events, default=str)}
    for secret in (DEMO_KEY, auth_token, operator):
        for where, text in haystacks.items():
            assert secret not in text, f"a secret leaked into {where}"
    # Nothing had to be masked either: redaction is a safety net, not the mechanism.
    assert "***" not in rendered


async def _call_and_probe(auth_token: str, operator: str):
    emulator = GeminiEmulator(Scenario(), api_key=DEMO_KEY)
    attempts: list[tuple[str, bool]] = []
    original = emulator._process_request

    def spy(connection, request):
        attempts.append((request.path, "x-goog-api-key" in request.headers))
        return original(connection, request)

    emulator._process_request = spy
    await emulator.start()
    bridge = LocalBridge(Settings(gemini_api_key=DEMO_KEY, public_url="http://127.0.0.1",
                                  gemini_live_url=emulator.url, twilio_auth_token=auth_token,
                                  operator_token=operator, silence_duration_ms=800))
    await bridge.start()
    responses: list[str] = []
    try:
        turn = founder_turns()[0][: 8000 * 3]
        script = CallerScript([WaitForAgent(quiet_ms=600, timeout_ms=15000), Say(turn, after="now"), Hangup()])
        sim = CallerSimulator(bridge.twiml_url, script, auth_token=auth_token, timeout=60)
        result = await sim.run()
        await bridge.finished_call(result.call_sid)
        async with httpx.AsyncClient(trust_env=False) as client:
            base = bridge.settings.public_url
            for name, method, path, headers, data in [
                ("healthz", "GET", "/healthz", {}, None),
                ("metrics", "GET", "/metrics", {"Authorization": f"Bearer {operator}"}, None),
                ("metrics-unauth", "GET", "/metrics", {}, None),
                ("unsigned-webhook", "POST", "/twiml", {}, FORM),
                ("bad-signature", "POST", "/twiml", {"X-Twilio-Signature": "AAAA"}, FORM),
                ("unknown", "GET", "/calls/" + result.call_sid, {}, None),
            ]:
                r = await client.request(method, base + path, headers=headers, data=data)
                responses.append(f"{name} {r.status_code} {dict(r.headers)} {r.text}")
    finally:
        await bridge.stop()
        await emulator.stop()
    return responses, result, attempts


def test_a_secret_that_contains_another_is_masked_whole() -> None:
    from telephony_bridge.log import redact, register_secret, unregister_secret

    short, long = "kkkkkkkkkk-short", "AIza-" + "kkkkkkkkkk-short" + "-tail"
    register_secret(short)
    register_secret(long)
    try:
        assert redact(f"key={long} and {short}") == "key=*** and ***"
    finally:
        unregister_secret(short)
        unregister_secret(long)
