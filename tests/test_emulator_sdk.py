"""Google's own SDK (google-genai) as the emulator's client, on both backends: the Gemini API with
an API key, Vertex AI with service-account credentials whose token_uri is the loopback OAuth
endpoint, and Vertex AI express mode. The SDK builds the URL, headers and setup itself
(google/genai/live.py) and connects over TLS only; it trusts SSL_CERT_FILE."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from google import genai
from google.genai import errors, types
from google.oauth2 import service_account

from telephony_bridge.testing.gemini import GeminiEmulator, Scenario, ToolCallStep, load_clips
from telephony_bridge.testing.oauth import SCOPE, TokenEndpoint
from telephony_bridge.testing.tls import throwaway_tls

KEY = "AIza-sdk-test-" + "k" * 20
CLIPS = load_clips()


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    ctx, cert = throwaway_tls(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return ctx


@pytest.fixture
def oauth():  # type: ignore[no-untyped-def]
    with TokenEndpoint() as endpoint:
        yield endpoint


def client_for(backend: str, emu: GeminiEmulator, oauth: TokenEndpoint) -> genai.Client:
    http = {"base_url": emu.base_url}
    if backend == "gemini-api":
        return genai.Client(api_key=KEY, http_options=http)
    if backend == "express":
        return genai.Client(vertexai=True, api_key=KEY, http_options=http)
    creds = service_account.Credentials.from_service_account_info(oauth.service_account_info(), scopes=[SCOPE])
    return genai.Client(vertexai=True, project="my-proj-1", location="us-central1", credentials=creds,
                        http_options=http)


EXPECTED = {  # backend -> (path, auth, setup.model)
    "gemini-api": ("/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent", "api_key",
                   "models/gemini-3.8-live"),
    "vertex": ("/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent", "bearer",
               "projects/my-proj-1/locations/us-central1/publishers/google/models/gemini-3.8-live"),
    "express": ("/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent", "api_key",
                "publishers/google/models/gemini-3.8-live"),
}


async def until_turn_complete(session) -> tuple[bytes, str, list]:  # type: ignore[no-untyped-def]
    audio, words, calls = b"", "", []
    async for msg in session.receive():
        if msg.tool_call:
            calls.extend(msg.tool_call.function_calls)
        sc = msg.server_content
        if sc is None:
            continue
        if sc.model_turn:
            audio += b"".join(p.inline_data.data for p in sc.model_turn.parts if p.inline_data)
        if sc.output_transcription and sc.output_transcription.text:
            words += sc.output_transcription.text
        if sc.turn_complete:
            return audio, words, calls
    raise AssertionError("the session ended before turnComplete")


@pytest.mark.parametrize("backend", ["gemini-api", "vertex", "express"])
def test_the_sdk_talks_to_the_emulator_tools_and_scheduling_included(backend, tls, oauth):
    step = ToolCallStep(after_turn=1, name="lookup_market", args={"market": "dental"}, call_id="c1",
                        then_clip="tool_ack")
    config = types.LiveConnectConfig(
        response_modalities=["AUDIO"], output_audio_transcription={},
        tools=[types.Tool(function_declarations=[types.FunctionDeclaration(
            name="lookup_market", description="Market figures.", behavior=types.Behavior.NON_BLOCKING)])])

    async def go():  # type: ignore[no-untyped-def]
        async with GeminiEmulator(Scenario(tool_calls=[step], pace=20.0, think_ms=0.0), api_key=KEY, ssl=tls,
                                  oauth=oauth) as emu:
            client = client_for(backend, emu, oauth)
            async with client.aio.live.connect(model="gemini-3.8-live", config=config) as session:
                await session.send_client_content(turns={"role": "user", "parts": [{"text": "Hello."}]})
                greeting = await until_turn_complete(session)
                await session.send_client_content(turns={"role": "user", "parts": [{"text": "Dental software."}]})
                going_on = await until_turn_complete(session)  # non-blocking: the model goes on
                await session.send_tool_response(function_responses=[types.FunctionResponse(
                    id="c1", name="lookup_market", response={"status": "ok"},
                    scheduling=types.FunctionResponseScheduling.WHEN_IDLE)])
                answered = await until_turn_complete(session)
            return greeting, going_on, answered, emu.sessions[0]

    greeting, going_on, answered, s = run(go())
    path, auth, model = EXPECTED[backend]
    assert (s.path, s.auth, s.model, s.profile) == (path, auth, model, "gemini-3.8-live")
    assert s.setup["tools"][0]["functionDeclarations"][0]["behavior"] == "NON_BLOCKING"
    assert greeting[0] == CLIPS["greeting"].pcm and greeting[1] == CLIPS["greeting"].text
    assert [(c.id, c.name, c.args) for c in going_on[2]] == [("c1", "lookup_market", {"market": "dental"})]
    assert going_on[1] == CLIPS["tool_wait"].text
    assert answered[1] == CLIPS["tool_ack"].text and answered[0] == CLIPS["tool_ack"].pcm
    assert s.async_results[0]["scheduling"] == "WHEN_IDLE" and s.tool_responses[0]["id"] == "c1"
    if backend == "vertex":
        assert oauth.grants == ["urn:ietf:params:oauth:grant-type:jwt-bearer"] and len(oauth.issued) == 1


@pytest.mark.parametrize("backend", ["gemini-api", "vertex"])
def test_the_sdk_sees_the_services_refusals(backend, tls, oauth):
    async def go(model: str, config: dict) -> errors.APIError:
        async with GeminiEmulator(Scenario(), api_key=KEY, ssl=tls, oauth=oauth) as emu:
            with pytest.raises(errors.APIError) as info:
                async with client_for(backend, emu, oauth).aio.live.connect(model=model, config=config):
                    pass
            return info.value

    thinking = run(go("gemini-3.8-live", {"response_modalities": ["AUDIO"],
                                           "thinking_config": {"thinking_level": "LOW"}}))
    assert thinking.code == 1007
    assert "thinking_level is not supported in gemini-3.8-live" in str(thinking)
    retired = run(go("gemini-2.0-flash-live-001", {"response_modalities": ["AUDIO"]}))
    assert retired.code == 1008
    expected = ("Requested entity was not found." if backend == "vertex" else
                "models/gemini-2.0-flash-live-001 is not found for API version v1, or is not supported")
    assert expected in str(retired)
