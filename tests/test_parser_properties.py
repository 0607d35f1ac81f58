"""Peer input parses or raises the one typed error: properties (hypothesis) and hostile examples.

Invariant, for both parsers, over arbitrary JSON values, arbitrary bytes and text, and valid
messages with random parts replaced: ``parse_event`` returns an event or raises
``TwilioProtocolError``; ``parse_server_message`` returns a list of events or raises
``GeminiProtocolError``; nothing else. What they return is well-formed (the call core relies on
it). ``benchmarks/fuzz.py`` runs the same invariant a million times, the call core included.
"""

from __future__ import annotations

import base64
import json
import math
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telephony_bridge.call import CallConfig, CallCore
from telephony_bridge.errors import GeminiProtocolError, TwilioProtocolError
from telephony_bridge.gemini import messages as gm
from telephony_bridge.gemini.messages import SetupConfig, parse_server_message
from telephony_bridge.twilio import events as te
from telephony_bridge.twilio.events import parse_event
from telephony_bridge.twilio.stream import TwilioStream

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

STREAM_SID = "MZ" + "a" * 32
CALL_SID = "CA" + "b" * 32
PCM = b"\x01\x00\xff\x7f" * 240
TWILIO_TEMPLATES = [
    {"event": "connected", "protocol": "Call", "version": "1.0.0"},
    {"event": "start", "sequenceNumber": "1", "streamSid": STREAM_SID,
     "start": {"streamSid": STREAM_SID, "accountSid": "AC" + "c" * 32, "callSid": CALL_SID, "tracks": ["inbound"],
               "customParameters": {"from": "+1555", "stream_token": "v1.1.abc"},
               "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}},
    {"event": "media", "sequenceNumber": "3", "streamSid": STREAM_SID,
     "media": {"track": "inbound", "chunk": "2", "timestamp": "40", "payload": base64.b64encode(b"\xff" * 160).decode()}},
    {"event": "mark", "sequenceNumber": "4", "streamSid": STREAM_SID, "mark": {"name": "t1.1"}},
    {"event": "dtmf", "streamSid": STREAM_SID, "sequenceNumber": "5", "dtmf": {"track": "inbound_track", "digit": "5"}},
    {"event": "stop", "sequenceNumber": "6", "streamSid": STREAM_SID, "stop": {"accountSid": "AC1", "callSid": CALL_SID}},
]
GEMINI_TEMPLATES = [
    {"setupComplete": {}},
    {"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000",
                                                              "data": base64.b64encode(PCM).decode()}}]}}},
    {"serverContent": {"inputTranscription": {"text": "hi"}, "outputTranscription": {"text": "hello"},
                       "interrupted": True, "generationComplete": True, "turnComplete": True}},
    {"server_content": {"model_turn": {"parts": [{"text": "t"}, {"inline_data": {
        "mime_type": "audio/pcm", "data": base64.urlsafe_b64encode(PCM[:9]).decode().rstrip("=")}}]}}},
    {"toolCall": {"functionCalls": [{"id": "c1", "name": "save_note", "args": {"a": [1, {"b": None}]}}]}},
    {"toolCallCancellation": {"ids": ["c1", "c2"]}},
    {"goAway": {"timeLeft": "50s"}},
    {"sessionResumptionUpdate": {"newHandle": "h1", "resumable": True}},
    {"usageMetadata": {"totalTokenCount": 42, "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 3}]}},
]
KEYS = sorted({k for t in TWILIO_TEMPLATES + GEMINI_TEMPLATES for k in json.dumps(t).split('"')[1::2]
               if re.fullmatch(r"[A-Za-z_]+", k)})

scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**40), max_value=10**40)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
           | st.sampled_from(["", "²", "١٢", "-5", "1e5", "NaN", "@@@", "AAAA", "MZ\"x", "audio/pcm;rate=8000",
                              "50s", "9" * 400 + "s", "x" * 5000]))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8),
                                                                inner, max_size=4),
    max_leaves=25,
)


def _slots(value, out):
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((value, k))
            _slots(v, out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append((value, i))
            _slots(v, out)
    return out


@st.composite
def mutated(draw, templates):
    msg = json.loads(json.dumps(draw(st.sampled_from(templates))))
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(msg, [])
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(["replace", "replace", "delete", "wrap", "add"]))
        if action == "replace":
            container[key] = draw(json_values)
        elif action == "delete":
            del container[key]
        elif action == "wrap":
            container[key] = [container[key]]
        elif isinstance(container, dict):
            container[draw(st.sampled_from(KEYS))] = draw(json_values)
    text = json.dumps(msg, ensure_ascii=draw(st.booleans()))
    return text if draw(st.booleans()) else text.encode()


# -- the invariant -----------------------------------------------------------------------------

_SID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def twilio_ok(data) -> None:
    try:
        event = parse_event(data)
    except TwilioProtocolError as err:
        assert err.kind and isinstance(err.fatal, bool)
        return
    # What comes out is what the core may rely on.
    if isinstance(event, te.Media):
        assert isinstance(event.payload, bytes) and 1 <= len(event.payload) <= te.MAX_PAYLOAD_BYTES
        assert event.track == "inbound"
        assert type(event.chunk) is int and type(event.timestamp_ms) is int
        assert 0 <= event.timestamp_ms <= te.MAX_COUNTER
    elif isinstance(event, te.Start):
        assert _SID.fullmatch(event.stream_sid) and _SID.fullmatch(event.call_sid)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in event.custom_parameters.items())
        assert (event.encoding, event.sample_rate, event.channels) == ("audio/x-mulaw", 8000, 1)
    elif isinstance(event, te.Mark):
        assert isinstance(event.name, str) and 0 < len(event.name) <= te.MAX_MARK_NAME
    elif isinstance(event, te.Dtmf):
        assert len(event.digit) == 1
    elif isinstance(event, te.Unknown):
        assert len(event.event) <= 64
    else:
        assert isinstance(event, (te.Connected, te.Stop))


def gemini_ok(data) -> None:
    try:
        events = parse_server_message(data)
    except GeminiProtocolError as err:
        assert err.kind and isinstance(err.fatal, bool)
        return
    assert isinstance(events, list)
    for event in events:
        if isinstance(event, gm.AudioChunk):
            assert isinstance(event.pcm, bytes) and event.pcm and type(event.rate) is int
        elif isinstance(event, gm.GoAway):
            assert math.isfinite(event.time_left_s) and 0 <= event.time_left_s <= gm.MAX_GO_AWAY_S
        elif isinstance(event, gm.ToolCall):
            for call in event.calls:
                assert isinstance(call.args, dict) and isinstance(call.id, str) and call.name
                json.dumps(call.args)  # no recursion trouble for whoever serialises it later
        elif isinstance(event, gm.UsageMetadata):
            assert type(event.total_tokens) is int and event.total_tokens >= 0
        elif isinstance(event, (gm.InputTranscription, gm.OutputTranscription, gm.TextPart)):
            assert isinstance(event.text, str) and event.text
        elif isinstance(event, gm.SessionResumptionUpdate):
            assert event.new_handle is None or isinstance(event.new_handle, str)
            assert isinstance(event.resumable, bool)


@SETTINGS
@given(json_values)
def test_any_json_value_parses_or_raises_the_typed_error(value):
    text = json.dumps(value)
    twilio_ok(text)
    gemini_ok(text)
    twilio_ok(text.encode())
    gemini_ok(text.encode())


@SETTINGS
@given(st.binary(max_size=400))
def test_any_bytes_parse_or_raise_the_typed_error(data):
    twilio_ok(data)
    gemini_ok(data)


@SETTINGS
@given(st.text(max_size=200))
def test_any_text_parses_or_raises_the_typed_error(text):
    twilio_ok(text)
    gemini_ok(text)


@SETTINGS
@given(mutated(TWILIO_TEMPLATES))
def test_mutated_twilio_messages_parse_or_raise_the_typed_error(data):
    twilio_ok(data)


@SETTINGS
@given(mutated(GEMINI_TEMPLATES))
def test_mutated_gemini_messages_parse_or_raise_the_typed_error(data):
    gemini_ok(data)


def _outcome(parse, msg):
    try:
        return parse(msg)
    except GeminiProtocolError as err:
        return ("error", err.kind)


_b64_texts = st.one_of(st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()),
                       st.binary(max_size=60).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")),
                       st.text(max_size=20))
_mimes = st.sampled_from(["audio/pcm;rate=24000", "audio/pcm;rate=16000", "audio/pcm", "audio/wav", "", None])


@st.composite
def audio_shaped(draw):
    """Messages shaped like a single chunk of the model's audio, each field changed one time in
    eight: a value, a key's spelling, a part or field added or taken away."""
    def odd() -> bool:
        return draw(st.integers(0, 7)) == 0

    def pick(usual, *others):
        return draw(st.sampled_from(others)) if odd() else usual

    inline = {"mimeType": pick("audio/pcm;rate=24000", "audio/pcm;rate=16000", "audio/pcm", "audio/wav", "", None),
              "data": draw(_b64_texts) if not odd() else draw(st.one_of(st.none(), st.integers()))}
    if odd():
        inline[pick("extra", "data", "mimeType", "mime_type")] = draw(_b64_texts)
    if odd():
        del inline[pick("data", "mimeType")]
    part = {pick("inlineData", "inline_data", "text"): inline}
    if odd():
        part["text"] = draw(st.text(max_size=5))
    parts = [part] * pick(1, 0, 2)
    sc = {pick("modelTurn", "model_turn"): {"parts": parts}}
    if odd():
        key = draw(st.sampled_from(["turnComplete", "interrupted", "generationComplete", "outputTranscription"]))
        sc[key] = {"text": "hi"} if key == "outputTranscription" else True
    msg = {pick("serverContent", "server_content"): sc}
    if odd():
        msg[pick("usageMetadata", "goAway", "setupComplete")] = {"totalTokenCount": 3}
    return msg


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(audio_shaped())
def test_the_model_audio_fast_path_parses_as_the_full_parse_does(msg):
    fast = _outcome(gm._model_audio, msg)
    if fast is not None:  # it took the message: the same events, or the same error
        assert fast == _outcome(gm._parse_any, msg)
    assert _outcome(gm._parse, msg) == _outcome(gm._parse_any, msg)
    gemini_ok(json.dumps(msg))


def test_the_model_audio_fast_path_takes_the_usual_chunk():
    msg = {"serverContent": {"modelTurn": {"parts": [{"inlineData": {
        "mimeType": "audio/pcm;rate=24000", "data": base64.b64encode(PCM).decode()}}]}}}
    assert gm._model_audio(msg) == [gm.AudioChunk(PCM, 24000)] == gm._parse_any(msg)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(mutated(TWILIO_TEMPLATES), st.sampled_from([json.dumps(t) for t in TWILIO_TEMPLATES])),
                max_size=30))
def test_stream_state_machine_raises_only_the_typed_error(frames):
    stream = TwilioStream()
    for frame in frames:
        try:
            stream.receive(frame)
        except TwilioProtocolError:
            pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(),
                          st.one_of(mutated(TWILIO_TEMPLATES), mutated(GEMINI_TEMPLATES),
                                    st.sampled_from([json.dumps(t) for t in TWILIO_TEMPLATES + GEMINI_TEMPLATES])),
                          st.floats(0, 2)),
                max_size=40))
def test_the_call_core_never_raises(steps):
    now = 0.0
    core = CallCore(SetupConfig(model="m"), CallConfig(), now=now)
    core.gemini_connected(now)
    core.receive_gemini(b'{"setupComplete":{}}', now)
    core.receive_twilio(json.dumps(TWILIO_TEMPLATES[1]), now)
    for to_twilio, frame, dt in steps:
        now += dt
        if to_twilio:
            core.receive_twilio(frame, now)
        else:
            core.receive_gemini(frame, now)
        core.tick(now)
        for message in core.twilio_out:
            assert json.loads(message)["streamSid"] == STREAM_SID
        core.twilio_out.clear()
        core.gemini_out.clear()


# -- hostile examples, one per decision ---------------------------------------------------------


def media(payload: str, **extra) -> str:
    return json.dumps({"event": "media", "media": {"payload": payload, **extra}})


@pytest.mark.parametrize("frame,kind,fatal", [
    (media(""), "empty-payload", False),
    (media(base64.b64encode(b"\xff" * 8001).decode()), "payload-too-long", False),
    (media("/w==", track="outbound"), "wrong-track", False),
    (media("/w==", timestamp="²"), "wrong-type", False),  # "²".isdigit() is True; int() refuses it
    (media("/w==", timestamp="١٢"), "wrong-type", False),
    (media("/w==", timestamp=-1), "wrong-type", False),
    (media("/w==", chunk=2**60), "wrong-type", False),
    (media("/w=="[:3]), "bad-base64", False),
    (media("/w==\n"), "bad-base64", False),
    ('{"event":"media","media":{"payload":"/w==","timestamp":NaN}}', "not-json", False),
    ('{"event":"media","media":{"payload":"/w==","chunk":Infinity}}', "not-json", False),
    ('{"event":"media","media":{"payload":"/w==","chunk":' + "9" * 5000 + "}}", "not-json", False),
    ("[" * 100_000, "oversize", True),
    ("[" * 60_000 + "]" * 1000, "not-json", False),
    ('{"event":"x' + "y" * 100 + '"}', "bad-event", False),
    ('{"event":"mark","mark":{"name":""}}', "bad-mark", False),
    ('{"event":"mark","mark":{"name":"' + "m" * 300 + '"}}', "bad-mark", False),
    (json.dumps({"event": "start", "start": {**TWILIO_TEMPLATES[1]["start"], "streamSid": 'MZ"},"x":"'}}),
     "bad-sid", True),
    (json.dumps({"event": "start", "start": {**TWILIO_TEMPLATES[1]["start"], "callSid": "CA" + "x" * 100}}),
     "bad-sid", True),
    (json.dumps({"event": "start", "start": {**TWILIO_TEMPLATES[1]["start"],
                                             "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000.0}}}),
     "unsupported-format", True),
    (json.dumps({"event": "start", "start": {**TWILIO_TEMPLATES[1]["start"],
                                             "mediaFormat": {"encoding": "audio/x-mulaw", "channels": True}}}),
     "unsupported-format", True),
    (json.dumps({"event": "start", "start": {**TWILIO_TEMPLATES[1]["start"], "customParameters": {"a": 1}}}),
     "wrong-type", True),
], ids=lambda v: v[:40] if isinstance(v, str) else repr(v))
def test_hostile_twilio_frames(frame, kind, fatal):
    with pytest.raises(TwilioProtocolError) as info:
        parse_event(frame)
    assert (info.value.kind, info.value.fatal) == (kind, fatal)


def test_odd_sized_mulaw_payloads_are_whole_samples():
    assert parse_event(media(base64.b64encode(b"\x01\x02\x03").decode())).payload == b"\x01\x02\x03"
    assert len(parse_event(media(base64.b64encode(b"\xff" * 8000).decode())).payload) == 8000


def test_unknown_well_named_events_are_counted_not_errors():
    assert parse_event('{"event":"futureThing","x":[[[[1]]]]}') == te.Unknown("futureThing")


@pytest.mark.parametrize("frame,kind", [
    (b'{"goAway":{"timeLeft":NaN}}', "not-json"),
    (b'{"goAway":{"timeLeft":1e999}}', "bad-duration"),  # 1e999 is a legal JSON number: inf
    (b'{"goAway":{"timeLeft":-1}}', "bad-duration"),
    (b'{"goAway":{"timeLeft":"' + b"9" * 400 + b's"}}', "bad-duration"),
    (b'{"goAway":{"timeLeft":' + b"9" * 4000 + b"}}", "bad-duration"),
    (b'{"goAway":{"timeLeft":true}}', "bad-duration"),
    (b'{"usageMetadata":{"totalTokenCount":' + b"9" * 5000 + b"}}", "not-json"),
    (b'{"usageMetadata":' + b'{"a":' * 40 + b"1" + b"}" * 40 + b"}", "too-deep"),
    (b'{"toolCall":{"functionCalls":[{"id":"1","name":"n","args":' + b'{"a":[' * 20 + b"1"
     + b"]}" * 20 + b"}]}}", "too-deep"),
    (b'{"toolCall":{"functionCalls":[{"id":"1","name":"' + b"n" * 5000 + b'"}]}}', "too-long"),
    (b'{"sessionResumptionUpdate":{"newHandle":"' + b"h" * 5000 + b'"}}', "too-long"),
    (b'{"sessionResumptionUpdate":{"resumable":"yes"}}', "wrong-type"),
    (b'{"serverContent":{"turnComplete":1}}', "wrong-type"),
    (b'{"serverContent":{"inputTranscription":"hi"}}', "wrong-type"),
    (b'{"serverContent":{"outputTranscription":{"text":5}}}', "wrong-type"),
    (b'{"serverContent":{"modelTurn":{"parts":[{"text":["x"]}]}}}', "wrong-type"),
    (b'{"usageMetadata":[1]}', "wrong-type"),
    (b"[" * 200_000, "not-json"),
    ("\ud800".encode("utf-8", "surrogatepass"), "not-json"),
], ids=lambda v: v[:40].decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
def test_hostile_gemini_frames(frame, kind):
    with pytest.raises(GeminiProtocolError) as info:
        parse_server_message(frame)
    assert info.value.kind == kind


def test_gemini_durations_are_clamped_and_token_counts_sane():
    assert parse_server_message('{"goAway":{"timeLeft":"999999s"}}') == [gm.GoAway(gm.MAX_GO_AWAY_S)]
    (usage,) = parse_server_message('{"usageMetadata":{"totalTokenCount":true}}')
    assert usage.total_tokens == 0
    (usage,) = parse_server_message('{"usageMetadata":{"totalTokenCount":"123"}}')
    assert usage.total_tokens == 123
