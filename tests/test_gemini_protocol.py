import base64
import json

import pytest

from telephony_bridge.errors import GeminiProtocolError
from telephony_bridge.gemini import (
    AudioChunk, AudioInput, FunctionCall, GeminiSession, GenerationComplete, GoAway, InputTranscription,
    Interrupted, OutputTranscription, SessionResumptionUpdate, SessionState, SetupComplete, SetupConfig,
    ToolCall, ToolCallCancellation, TurnComplete, UsageMetadata, build_setup, client_text,
    parse_server_message, tool_response,
)
from telephony_bridge.gemini.session import TRANSIENT_CLOSE_CODES


def test_setup_message_has_every_configured_field():
    msg = json.loads(build_setup(SetupConfig(
        model="gemini-x", system_instruction="be brief", voice="Puck", language="en-US",
        function_declarations=[{"name": "save_note", "description": "d", "parameters": {"type": "OBJECT"}}],
        silence_duration_ms=2500, prefix_padding_ms=100, start_sensitivity="START_SENSITIVITY_LOW",
        resumption_handle="h1", compression_trigger_tokens=25000, compression_target_tokens=12000)))
    setup = msg["setup"]
    assert setup["model"] == "models/gemini-x"
    assert setup["generationConfig"] == {"responseModalities": ["AUDIO"], "speechConfig": {
        "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Puck"}}, "languageCode": "en-US"}}
    assert setup["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert setup["tools"][0]["functionDeclarations"][0]["name"] == "save_note"
    assert setup["realtimeInputConfig"]["automaticActivityDetection"] == {
        "silenceDurationMs": 2500, "prefixPaddingMs": 100, "startOfSpeechSensitivity": "START_SENSITIVITY_LOW"}
    assert setup["sessionResumption"] == {"handle": "h1"}
    assert setup["contextWindowCompression"] == {"triggerTokens": 25000, "slidingWindow": {"targetTokens": 12000}}
    assert setup["inputAudioTranscription"] == {} and setup["outputAudioTranscription"] == {}


def test_client_messages():
    pcm = bytes(range(256)) * 2
    msg = json.loads(AudioInput(16000).message(pcm))
    assert msg == {"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000",
                                               "data": base64.b64encode(pcm).decode()}}}
    assert json.loads(client_text("hi")) == {"clientContent": {
        "turns": [{"role": "user", "parts": [{"text": "hi"}]}], "turnComplete": True}}
    assert json.loads(tool_response([{"id": "1", "name": "n", "response": {"ok": 1}}])) == {
        "toolResponse": {"functionResponses": [{"id": "1", "name": "n", "response": {"ok": 1}}]}}


def test_server_content_in_order_camel_and_snake():
    pcm = b"\x01\x00\xff\x7f" * 10
    frame = json.dumps({"serverContent": {
        "inputTranscription": {"text": "hello"},
        "modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000",
                                                "data": base64.b64encode(pcm).decode()}}]},
        "outputTranscription": {"text": "hi there"}, "generationComplete": True, "turnComplete": True},
        "usageMetadata": {"totalTokenCount": 42}}).encode()
    events = parse_server_message(frame)
    assert events[:5] == [InputTranscription("hello"), AudioChunk(pcm, 24000), OutputTranscription("hi there"),
                          GenerationComplete(), TurnComplete()]
    assert isinstance(events[5], UsageMetadata) and events[5].total_tokens == 42
    # snake_case and URL-safe, unpadded base64
    data = base64.urlsafe_b64encode(b"\xfb\xff\xfe").decode().rstrip("=")
    snake = json.dumps({"server_content": {"model_turn": {"parts": [{"inline_data": {
        "mime_type": "audio/pcm;rate=24000", "data": data}}]}, "interrupted": True}})
    assert parse_server_message(snake) == [Interrupted(), AudioChunk(b"\xfb\xff\xfe", 24000)]


def test_tool_calls_go_away_and_resumption():
    events = parse_server_message(json.dumps({"toolCall": {"functionCalls": [
        {"id": "c1", "name": "save_note", "args": {"fact": "x"}}]}}))
    assert events == [ToolCall((FunctionCall("c1", "save_note", {"fact": "x"}),))]
    assert parse_server_message('{"toolCallCancellation":{"ids":["c1"]}}') == [ToolCallCancellation(("c1",))]
    assert parse_server_message('{"goAway":{"timeLeft":"50s"}}') == [GoAway(50.0)]
    assert parse_server_message('{"sessionResumptionUpdate":{"newHandle":"h2","resumable":true}}') == [
        SessionResumptionUpdate("h2", True)]
    assert parse_server_message('{"setupComplete":{}}') == [SetupComplete()]


@pytest.mark.parametrize("frame", [
    b"\xff\xfe", b"[]", b'"x"', b'{"serverContent": 3}',
    b'{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm","data":"***"}}]}}}',
    b'{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"video/mp4","data":"AA"}}]}}}',
    b'{"serverContent":{"modelTurn":{"parts":"no"}}}',
    b'{"toolCall":{"functionCalls":[{"id":"1"}]}}',
    b'{"toolCall":{"functionCalls":[{"id":"1","name":"n","args":[1]}]}}',
    b'{"goAway":{"timeLeft":"soon"}}',
    b'{"sessionResumptionUpdate":{"newHandle":5}}',
    b'{"toolCallCancellation":{"ids":[1]}}',
])
def test_bad_server_frames_raise_one_typed_error(frame):
    with pytest.raises(GeminiProtocolError):
        parse_server_message(frame)


def test_session_state_machine():
    session = GeminiSession(SetupConfig(model="m"))
    assert not session.can_send()
    setup = json.loads(session.connection_opened(0.0))
    assert setup["setup"]["sessionResumption"] == {}
    with pytest.raises(GeminiProtocolError) as info:
        session.receive('{"serverContent":{"turnComplete":true}}', 0.1)
    assert info.value.fatal
    session = GeminiSession(SetupConfig(model="m"))
    session.connection_opened(0.0)
    session.receive('{"setupComplete":{}}', 0.2)
    assert session.state is SessionState.ACTIVE and session.can_send()
    session.receive('{"sessionResumptionUpdate":{"newHandle":"h9","resumable":true}}', 1.0)
    session.receive('{"sessionResumptionUpdate":{"newHandle":"bad","resumable":false}}', 1.1)
    assert session.handle == "h9"
    session.receive('{"toolCall":{"functionCalls":[{"id":"a","name":"n"},{"id":"b","name":"n"}]}}', 2.0)
    session.receive('{"toolCallCancellation":{"ids":["a"]}}', 2.1)
    assert list(session.pending_tool_calls) == ["b"]
    assert session.tool_answered("b") and not session.tool_answered("b")
    session.receive('{"goAway":{"timeLeft":"10s"}}', 5.0)
    assert session.state is SessionState.DRAINING and session.go_away_deadline == 15.0
    assert session.connection_closed(1011, 6.0) is True and session.state is SessionState.IDLE
    # a new connection resumes with the newest handle
    assert json.loads(session.connection_opened(6.1))["setup"]["sessionResumption"] == {"handle": "h9"}
    assert session.connection_closed(1008, 7.0) is False and session.state is SessionState.CLOSED
    assert 1011 in TRANSIENT_CLOSE_CODES and 1007 not in TRANSIENT_CLOSE_CODES


def test_reconnect_policy_bounded_backoff_resets_after_stability():
    from telephony_bridge.gemini.reconnect import ReconnectPolicy

    policy = ReconnectPolicy(delays=(0.1, 0.5, 1.0), stable_after_s=10.0)
    policy.connected(0.0)
    assert policy.next_delay(2.0) == 0.1  # dropped after 2 s: not stable, count goes on
    assert policy.next_delay(2.2) == 0.5  # the attempt failed
    policy.connected(3.0)
    assert policy.next_delay(4.0) == 1.0
    assert policy.next_delay(5.0) is None  # three tries used up
    policy.connected(10.0)
    assert policy.next_delay(25.0) == 0.1  # ten stable seconds reset the count
