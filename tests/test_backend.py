"""Live backends: the Gemini API key, Vertex AI express mode, and Vertex AI with ADC tokens from a
real (loopback) OAuth token endpoint through google-auth's own service-account flow."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import socket
from pathlib import Path

import pytest
from telephony_bridge.testing.oauth import TokenEndpoint, other_private_key_pem, write_json
from websockets.asyncio.server import serve

from telephony_bridge.gemini.backend import (
    GEMINI_API_URL, BackendAuthError, GeminiApiBackend, TokenCache, VertexBackend, VertexExpressBackend,
    adc_loader, backend_from_settings, needs_refresh, vertex_model_path, vertex_url,
)
from telephony_bridge.gemini.client import GeminiLiveClient
from telephony_bridge.gemini.messages import SetupConfig, build_setup
from telephony_bridge.log import JsonFormatter, redact
from telephony_bridge.settings import Settings
from telephony_bridge.testing import GeminiEmulator, Scenario

VERTEX = "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 30))


class FakeClock:
    """Naive UTC, like google-auth's ``expiry``; moved by hand."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)

    def __call__(self) -> dt.datetime:
        return self.now


# ------------------------------------------------------------------------- URLs and paths


@pytest.mark.parametrize("location, url", [
    ("global", "wss://aiplatform.googleapis.com" + VERTEX),
    ("us-central1", "wss://us-central1-aiplatform.googleapis.com" + VERTEX),
    ("europe-west4", "wss://europe-west4-aiplatform.googleapis.com" + VERTEX),
    ("us", "wss://aiplatform.us.rep.googleapis.com" + VERTEX),
    ("eu", "wss://aiplatform.eu.rep.googleapis.com" + VERTEX),
])
def test_vertex_url_per_location(location: str, url: str) -> None:
    assert vertex_url(location) == url


@pytest.mark.parametrize("model, project, path", [
    ("gemini-3.8-live", "p-123456", "projects/p-123456/locations/us-central1/publishers/google/models/gemini-3.8-live"),
    ("models/gemini-3.8-live", "p-123456", "projects/p-123456/locations/us-central1/publishers/google/models/gemini-3.8-live"),
    ("publishers/google/models/gemini-live-2.5-flash-native-audio", "p-123456",
     "projects/p-123456/locations/us-central1/publishers/google/models/gemini-live-2.5-flash-native-audio"),
    ("projects/x-123456/locations/global/publishers/google/models/m", "p-123456",
     "projects/x-123456/locations/global/publishers/google/models/m"),
    ("gemini-3.8-live", None, "publishers/google/models/gemini-3.8-live"),  # express mode
])
def test_vertex_model_path(model: str, project: str | None, path: str) -> None:
    assert vertex_model_path(model, project, "us-central1") == path


def test_key_backends_put_the_key_in_a_header_only() -> None:
    key = "AIza-test-" + "k" * 20
    api = GeminiApiBackend(key)
    ep = run(api.endpoint())
    assert ep.url == GEMINI_API_URL and ep.headers == {"x-goog-api-key": key} and key not in ep.url
    assert key not in repr(ep) and key not in api.describe()
    assert api.model_path("gemini-3.8-live") == "models/gemini-3.8-live"
    express = VertexExpressBackend(key)
    ep = run(express.endpoint())
    assert ep.url == "wss://aiplatform.googleapis.com" + VERTEX and ep.headers == {"x-goog-api-key": key}
    assert express.model_path("gemini-3.8-live") == "publishers/google/models/gemini-3.8-live"
    assert redact(f"key={key}") == "key=***"  # registered with the log redaction


def test_backend_from_settings() -> None:
    base = dict(public_url="https://bridge.example.com")
    assert isinstance(backend_from_settings(Settings(gemini_api_key="k" * 12, **base)), GeminiApiBackend)
    express = backend_from_settings(Settings(gemini_api_key="k" * 12, gemini_backend="vertex", **base))
    assert isinstance(express, VertexExpressBackend)
    vertex = backend_from_settings(Settings(gemini_backend="vertex", google_cloud_project="my-proj-1",
                                            google_cloud_location="us-east4", **base))
    assert isinstance(vertex, VertexBackend) and vertex.url == "wss://us-east4-aiplatform.googleapis.com" + VERTEX
    assert vertex.model_path("gemini-3.8-live") == \
        "projects/my-proj-1/locations/us-east4/publishers/google/models/gemini-3.8-live"
    override = backend_from_settings(Settings(gemini_backend="vertex", google_cloud_project="my-proj-1",
                                              gemini_live_url="ws://127.0.0.1:1/x", **base))
    assert isinstance(override, VertexBackend) and override.url == "ws://127.0.0.1:1/x"


# --------------------------------------------------------------------------- token cache


def test_needs_refresh() -> None:
    now = dt.datetime(2026, 11, 20, 12, 0, 0)
    assert needs_refresh(None, now + dt.timedelta(hours=1), now)
    assert needs_refresh("t", None, now)
    assert not needs_refresh("t", now + dt.timedelta(seconds=301), now)
    assert needs_refresh("t", now + dt.timedelta(seconds=299), now)
    assert needs_refresh("t", now - dt.timedelta(seconds=1), now)


def test_service_account_tokens_are_cached_until_near_expiry_and_refreshed_off_the_loop(tmp_path: Path) -> None:
    with TokenEndpoint(expires_in=3600) as oauth:
        key_file = oauth.write(tmp_path / "sa.json", oauth.service_account_info())
        clock = FakeClock()
        tokens = TokenCache(adc_loader(key_file), clock=clock)
        backend = VertexBackend("my-proj-1", "global", tokens=tokens)

        async def scenario() -> list[dict[str, str]]:
            loop_thread = []

            async def ticker() -> None:  # the loop keeps running while a refresh is in flight
                for _ in range(5):
                    loop_thread.append(1)
                    await asyncio.sleep(0)

            first, _ = await asyncio.gather(asyncio.gather(*[backend.endpoint() for _ in range(20)]), ticker())
            assert len(loop_thread) == 5
            headers = [e.headers for e in first]
            headers.append((await backend.endpoint()).headers)  # cached: no new request
            clock.now += dt.timedelta(seconds=3600 - 200)      # 200 s left: under the margin
            headers.append((await backend.endpoint()).headers)  # a reconnection gets a fresh token
            return headers

        headers = run(scenario())
    assert oauth.grants == ["urn:ietf:params:oauth:grant-type:jwt-bearer"] * 2 and not oauth.rejections
    assert tokens.refreshes == 2 and len(oauth.issued) == 2
    first, fresh = oauth.issued
    assert all(h == {"Authorization": f"Bearer {first}"} for h in headers[:21])  # 20 at once: one refresh
    assert headers[21] == {"Authorization": f"Bearer {fresh}"}
    assert "x-goog-user-project" not in headers[0]  # a service account names no quota project
    # Tokens never reach a log line in clear.
    record = logging.LogRecord("telephony_bridge.x", logging.INFO, __file__, 1, "call.gemini", None, None)
    record.fields = {"headers": headers[21], "old": first}  # type: ignore[attr-defined]
    line = JsonFormatter().format(record)
    assert first not in line and fresh not in line and "***" in line


def test_a_quota_project_goes_in_x_goog_user_project(tmp_path: Path) -> None:
    with TokenEndpoint() as oauth:
        key_file = oauth.write(tmp_path / "sa.json", oauth.service_account_info())
        backend = VertexBackend("my-proj-1", "global", tokens=TokenCache(adc_loader(key_file, "billing-proj-1")))
        ep = run(backend.endpoint())
        # An authorized-user ADC file (gcloud's) names its quota project itself. google-auth always
        # sends those to Google's own token endpoint, so it is only loaded here, never refreshed.
        user_file = oauth.write(tmp_path / "adc.json", oauth.authorized_user_info("billing-proj-2"))
    assert ep.headers == {"Authorization": f"Bearer {oauth.issued[0]}", "x-goog-user-project": "billing-proj-1"}
    creds, _ = adc_loader(user_file)()
    assert creds.quota_project_id == "billing-proj-2" and creds.token is None


def test_refused_missing_and_unreachable_credentials_are_typed_and_secret_free(tmp_path: Path) -> None:
    with TokenEndpoint() as oauth:
        info = oauth.service_account_info()
        key_file = oauth.write(tmp_path / "sa.json", info)
        oauth.refuse = "invalid_grant"
        with pytest.raises(BackendAuthError) as refused:
            run(TokenCache(adc_loader(key_file)).token())
        oauth.refuse = None
        forged = dict(info, private_key=other_private_key_pem())  # the signature does not verify
        with pytest.raises(BackendAuthError) as bad_signature:
            run(TokenCache(adc_loader(oauth.write(tmp_path / "forged.json", forged))).token())
        assert oauth.rejections == ["Invalid JWT Signature."]
    assert refused.value.kind == "bad-credentials" and "invalid_grant" in str(refused.value)
    assert bad_signature.value.kind == "bad-credentials"
    for err in (refused.value, bad_signature.value):
        assert "PRIVATE KEY" not in str(err) and info["private_key"][40:80] not in str(err)

    with pytest.raises(BackendAuthError) as missing:
        run(TokenCache(adc_loader(str(tmp_path / "nope.json"))).token())
    assert missing.value.kind == "no-credentials"
    (tmp_path / "odd.json").write_text(json.dumps({"type": "external_account"}))
    with pytest.raises(BackendAuthError) as odd:
        run(TokenCache(adc_loader(str(tmp_path / "odd.json"))).token())
    assert odd.value.kind == "no-credentials" and "external_account" in str(odd.value)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    closed = dict(info, token_uri=f"http://127.0.0.1:{port}/token")
    with pytest.raises(BackendAuthError) as unreachable:
        run(TokenCache(adc_loader(write_json(tmp_path / "closed.json", closed))).token())
    assert unreachable.value.kind == "network"


# ------------------------------------------------------------------- over a real websocket


def test_vertex_headers_reach_the_wire_and_the_setup_names_the_vertex_model(tmp_path: Path) -> None:
    """A bare websockets server records the handshake; the client never puts a credential in the URL."""
    seen: dict[str, object] = {}

    async def handler(ws) -> None:  # type: ignore[no-untyped-def]
        seen["path"] = ws.request.path
        seen["headers"] = dict(ws.request.headers)
        seen["setup"] = json.loads(await ws.recv())
        await ws.send(b'{"setupComplete": {}}')
        await ws.wait_closed()

    async def scenario(backend: VertexBackend) -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            backend.url = f"ws://127.0.0.1:{port}{VERTEX}"
            setup = build_setup(SetupConfig(model=backend.model_path("gemini-3.8-live")))
            client = await GeminiLiveClient.connect(await backend.endpoint(), setup, timeout=10)
            await client.close()

    with TokenEndpoint() as oauth:
        key_file = oauth.write(tmp_path / "sa.json", oauth.service_account_info())
        backend = VertexBackend("my-proj-1", "us-central1", tokens=TokenCache(adc_loader(key_file, "billing-proj-1")))
        run(scenario(backend))
    headers = {k.lower(): v for k, v in seen["headers"].items()}  # type: ignore[union-attr]
    assert headers["authorization"] == f"Bearer {oauth.issued[0]}"
    assert headers["x-goog-user-project"] == "billing-proj-1"
    assert "x-goog-api-key" not in headers and oauth.issued[0] not in str(seen["path"])
    assert seen["path"] == VERTEX
    assert seen["setup"]["setup"]["model"] == \
        "projects/my-proj-1/locations/us-central1/publishers/google/models/gemini-3.8-live"  # type: ignore[index]


def test_the_client_opens_an_emulator_session_through_a_backend() -> None:
    key = "demo-" + "k" * 12

    async def scenario() -> str:
        async with GeminiEmulator(Scenario(known_models=["gemini-3.8-live"]), api_key=key) as emu:
            backend = GeminiApiBackend(key, emu.url)
            setup = build_setup(SetupConfig(model=backend.model_path("gemini-3.8-live")))
            client = await GeminiLiveClient.connect(await backend.endpoint(), setup, timeout=10)
            await client.close()
            return emu.sessions[0].model  # type: ignore[return-value]

    assert run(scenario()) == "models/gemini-3.8-live"
