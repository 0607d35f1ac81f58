"""The emulator's Vertex AI side: the LlmBidiService path, Bearer tokens checked against the loopback
OAuth endpoint that issued them (google-auth's own service-account flow fetches them), express mode
with an API key, the Vertex model paths; then the bridge's VertexBackend against it, and a whole
local call on a Vertex-only configuration."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from google.auth.transport.requests import Request
from google.oauth2 import service_account
from test_emulator import GREET, collect, expect_close, recv_json, turn_complete
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from telephony_bridge.gemini.backend import TokenCache, VertexBackend, adc_loader
from telephony_bridge.gemini.client import GeminiLiveClient
from telephony_bridge.gemini.messages import SetupConfig, build_setup
from telephony_bridge.testing import CallerScript
from telephony_bridge.testing.gemini import GeminiEmulator, Scenario
from telephony_bridge.testing.gemini.auth import INVALID_CREDENTIAL, KEY_INVALID, MISSING_CREDENTIAL
from telephony_bridge.testing.local_call import VERTEX_PROJECT, founder_turns, place_local_call
from telephony_bridge.testing.oauth import SCOPE, TokenEndpoint

KEY = "AIza-express-" + "e" * 20
MODEL = "projects/my-proj-1/locations/us-central1/publishers/google/models/gemini-3.8-live"


def run(coro, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, timeout))


def setup(model: str = MODEL) -> str:
    return json.dumps({"setup": {"model": model, "generationConfig": {"responseModalities": ["AUDIO"]}}})


def fresh_token(oauth: TokenEndpoint) -> str:
    """A token the way the SDK and the bridge get one: google-auth's JWT-bearer grant."""
    creds = service_account.Credentials.from_service_account_info(oauth.service_account_info(), scopes=[SCOPE])
    creds.refresh(Request())
    return creds.token


async def status_of(url: str, headers: dict[str, str]) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, additional_headers=headers):
            pass
    response = info.value.response
    return response.status_code, response.body.decode().strip()


def test_bearer_tokens_must_be_ones_the_endpoint_issued_and_still_live():
    async def go(oauth: TokenEndpoint) -> None:
        token = fresh_token(oauth)
        async with GeminiEmulator(Scenario(), oauth=oauth) as emu:
            url = emu.url_vertex
            assert await status_of(url, {}) == (401, MISSING_CREDENTIAL)
            assert await status_of(url, {"Authorization": "Bearer ya29.made-up"}) == (401, INVALID_CREDENTIAL)
            assert await status_of(url, {"Authorization": "Bearer "}) == (401, INVALID_CREDENTIAL)
            assert await status_of(url, {"x-goog-api-key": KEY}) == (401, INVALID_CREDENTIAL)  # no keys here
            headers = {"Authorization": f"Bearer {token}", "x-goog-user-project": "billing-1"}
            async with connect(url, additional_headers=headers) as ws:
                await ws.send(setup())
                assert await recv_json(ws) == {"setupComplete": {}}
                await ws.send(GREET)
                assert turn_complete((await collect(ws, turn_complete))[-1])
            s = emu.sessions[0]
            assert (s.backend, s.auth, s.api_version, s.model, s.profile, s.quota_project) == (
                "vertex", "bearer", "v1beta1", MODEL, "gemini-3.8-live", "billing-1")
            oauth.expire(token)  # an hour later
            assert await status_of(url, {"Authorization": f"Bearer {token}"}) == (401, INVALID_CREDENTIAL)
            assert [code for code, _ in emu.rejected] == [401] * 5

    with TokenEndpoint() as oauth:
        run(go(oauth))


def test_express_mode_key_and_the_vertex_model_paths():
    async def go() -> None:
        async with GeminiEmulator(Scenario(), api_key=KEY) as emu:
            assert await status_of(emu.url_vertex, {"x-goog-api-key": "AIza-wrong-" + "w" * 20}) == (403, KEY_INVALID)
            assert await status_of(emu.url_vertex, {}) == (401, MISSING_CREDENTIAL)
            cases = [
                ("publishers/google/models/gemini-3.8-live", None),  # express mode's form
                (MODEL, None),
                ("projects/p/locations/global/publishers/google/models/gemini-live-2.5-flash-native-audio", None),
                ("models/gemini-3.8-live", (1007, "Invalid resource field value in the request.")),
                ("gemini-3.8-live", (1007, "Invalid resource field value in the request.")),
                ("publishers/google/models/gemini-2.0-flash-live-001", (1008, "Requested entity was not found.")),
                # Gemini API models (profiles: backend "gemini-api") are not served here
                ("publishers/google/models/gemini-3.1-flash-live-preview", (1008, "Requested entity was not found.")),
            ]
            for model, refusal in cases:
                async with connect(emu.url_vertex, additional_headers={"x-goog-api-key": KEY}) as ws:
                    await ws.send(setup(model))
                    if refusal is None:
                        assert await recv_json(ws) == {"setupComplete": {}}
                    else:
                        closed = await expect_close(ws)
                        assert (closed.rcvd.code, closed.rcvd.reason) == refusal
            families = [s.profile for s in emu.sessions]
            assert families[:3] == ["gemini-3.8-live", "gemini-3.8-live", "gemini-live-2.5-flash-native-audio"]
            assert {s.auth for s in emu.sessions} == {"api_key"}

    run(go())


def test_a_vertex_only_emulator_serves_no_gemini_api_path():
    async def go() -> None:
        async with GeminiEmulator(Scenario(), backends=("vertex",)) as emu:
            assert (await status_of(emu.url, {}))[0] == 404
            async with connect(emu.url_vertex) as ws:  # given no credential to check, it checks none
                await ws.send(setup())
                assert await recv_json(ws) == {"setupComplete": {}}
        with pytest.raises(ValueError):
            GeminiEmulator(backends=("aiplatform",))

    run(go())


def test_the_bridges_vertex_backend_opens_a_session_a_fresh_token_each_time(tmp_path: Path):
    async def go(oauth: TokenEndpoint, key_file: str) -> list[str]:
        async with GeminiEmulator(Scenario(), oauth=oauth, backends=("vertex",)) as emu:
            backend = VertexBackend("my-proj-1", "us-central1", tokens=TokenCache(adc_loader(key_file)),
                                    url=emu.url_vertex)
            setup_msg = build_setup(SetupConfig(model=backend.model_path("gemini-3.8-live")))
            client = await GeminiLiveClient.connect(await backend.endpoint(), setup_msg, timeout=10)
            await client.close()
            oauth.expire()  # the cached token is dead: the service would refuse it now
            assert await status_of(emu.url_vertex, {"Authorization": f"Bearer {oauth.issued[0]}"}) == \
                (401, INVALID_CREDENTIAL)
            return [s.model for s in emu.sessions]

    with TokenEndpoint() as oauth:
        key_file = oauth.write(tmp_path / "sa.json", oauth.service_account_info())
        models = run(go(oauth, key_file))
    assert models == [MODEL]


def test_a_whole_call_on_vertex_ai():
    """The bridge configured for Vertex AI only (GEMINI_BACKEND=vertex, a key file): the greeting,
    one founder turn answered, the caller hangs up."""
    call = run(place_local_call(CallerScript.from_founder_turns(founder_turns()[:1]), Scenario(),
                                vertex=True, silence_duration_ms=700), timeout=90)
    (s,) = call.emulator.sessions
    assert (s.backend, s.auth, s.profile) == ("vertex", "bearer", "gemini-3.8-live")
    assert s.model == f"projects/{VERTEX_PROJECT}/locations/us-central1/publishers/google/models/gemini-3.8-live"
    assert [r.kind for r in s.replies] == ["greeting", "reply"] and s.replies_completed == 2
    assert call.core.ended == "caller-hangup" and call.result.heard_pcm16()
