import base64
import json
import xml.etree.ElementTree as ET

import pytest

from telephony_bridge.errors import ConfigError, TwilioProtocolError
from telephony_bridge.twilio import (
    Connected, Dtmf, Mark, Media, OutboundMessages, Start, StreamState, Stop, TwilioStream, Unknown,
    connect_twiml, hangup_twiml, parse_event,
)

START = {
    "event": "start", "sequenceNumber": "1", "streamSid": "MZ" + "a" * 32,
    "start": {"streamSid": "MZ" + "a" * 32, "accountSid": "AC" + "b" * 32, "callSid": "CA" + "c" * 32,
              "tracks": ["inbound"], "customParameters": {"from": "+1555"},
              "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
}


def media(payload: bytes, chunk: int = 1, ts: int = 20) -> str:
    return json.dumps({"event": "media", "sequenceNumber": str(chunk + 1), "streamSid": START["streamSid"],
                       "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(ts),
                                 "payload": base64.b64encode(payload).decode()}})


def test_parses_every_inbound_event():
    assert parse_event('{"event":"connected","protocol":"Call","version":"1.0.0"}') == Connected("Call", "1.0.0")
    start = parse_event(json.dumps(START))
    assert isinstance(start, Start)
    assert start.call_sid == "CA" + "c" * 32 and start.custom_parameters == {"from": "+1555"}
    m = parse_event(media(b"\x01\x02\xff", chunk=7, ts=140))
    assert m == Media("inbound", 7, 140, b"\x01\x02\xff")
    assert parse_event('{"event":"mark","mark":{"name":"t1.2"}}') == Mark("t1.2")
    assert parse_event('{"event":"dtmf","dtmf":{"track":"inbound_track","digit":"5"}}') == Dtmf("inbound_track", "5")
    assert parse_event('{"event":"stop","stop":{"accountSid":"AC1","callSid":"CA1"}}') == Stop("CA1", "AC1")
    assert parse_event('{"event":"somethingNew"}') == Unknown("somethingNew")


@pytest.mark.parametrize("frame,kind", [
    ("not json", "not-json"),
    ("[1,2]", "not-object"),
    ('{"no":"event"}', "missing-field"),
    ('{"event":"media"}', "missing-field"),
    ('{"event":"media","media":{"payload":"@@@"}}', "bad-base64"),
    ('{"event":"media","media":{"payload":"AAAA","timestamp":"-5"}}', "wrong-type"),
    ('{"event":"media","media":{"payload":"AAAA","chunk":true}}', "wrong-type"),
    ('{"event":"mark","mark":{"name":3}}', "wrong-type"),
    ('{"event":"dtmf","dtmf":{"digit":"xyz"}}', "bad-digit"),
    ('{"event":"start","start":{"callSid":"CA","streamSid":"MZ","mediaFormat":{"encoding":"audio/pcm"}}}',
     "unsupported-format"),
    ('{"event":"media","media":{"payload":"' + "A" * 70000 + '"}}', "oversize"),
])
def test_bad_frames_raise_one_typed_error(frame, kind):
    with pytest.raises(TwilioProtocolError) as info:
        parse_event(frame)
    assert info.value.kind == kind


def twilio_layout(payload: str, chunk: str = "7", ts: str = "140") -> str:
    """A media frame byte for byte as Twilio lays it out (documented key order, compact JSON)."""
    return ('{"event":"media","sequenceNumber":"8","media":{"track":"inbound","chunk":"%s","timestamp":"%s",'
            '"payload":"%s"},"streamSid":"%s"}' % (chunk, ts, payload, START["streamSid"]))


def test_twilios_own_layout_takes_the_fast_path_and_parses_as_any_other_layout():
    from telephony_bridge.twilio import events
    audio = bytes(range(160))
    frame = twilio_layout(base64.b64encode(audio).decode())
    assert events._TWILIO_MEDIA(frame) is not None  # the pattern matches what Twilio sends
    other = media(audio, chunk=7, ts=140)  # json.dumps: another key order and spaces
    assert events._TWILIO_MEDIA(other) is None
    assert parse_event(frame) == parse_event(other) == Media("inbound", 7, 140, audio)
    # The pattern only saves time: what it lets through is still checked as the full parse checks it.
    with pytest.raises(TwilioProtocolError) as bad:
        parse_event(twilio_layout("AA=A"))
    assert bad.value.kind == "bad-base64"
    with pytest.raises(TwilioProtocolError) as big:
        parse_event(twilio_layout("A" * 12000))
    assert big.value.kind == "payload-too-long"
    with pytest.raises(TwilioProtocolError) as empty:
        parse_event(twilio_layout("===="))
    assert empty.value.kind in ("bad-base64", "empty-payload")


def test_stream_state_machine_orders_events():
    stream = TwilioStream()
    with pytest.raises(TwilioProtocolError) as info:
        stream.receive(media(b"\xff" * 160))
    assert info.value.kind == "media-before-start" and not info.value.fatal
    stream.receive('{"event":"connected","protocol":"Call","version":"1.0.0"}')
    stream.receive(json.dumps(START))
    assert stream.state is StreamState.STREAMING
    assert isinstance(stream.receive(media(b"\xff" * 160, ts=20)), Media)
    assert stream.last_timestamp_ms == 20
    with pytest.raises(TwilioProtocolError) as info:
        stream.receive(json.dumps(START))
    assert info.value.kind == "second-start" and info.value.fatal
    stream.receive('{"event":"stop","stop":{}}')
    assert stream.state is StreamState.STOPPED
    with pytest.raises(TwilioProtocolError):
        stream.receive(media(b"\xff"))


def test_outbound_messages_are_valid_json():
    out = OutboundMessages('MZ"odd\\sid')
    m = json.loads(out.media(b"\x00\x7f\xff" * 50))
    assert m == {"event": "media", "streamSid": 'MZ"odd\\sid',
                 "media": {"payload": base64.b64encode(b"\x00\x7f\xff" * 50).decode()}}
    assert json.loads(out.mark("t1.3")) == {"event": "mark", "streamSid": 'MZ"odd\\sid', "mark": {"name": "t1.3"}}
    assert json.loads(out.clear()) == {"event": "clear", "streamSid": 'MZ"odd\\sid'}


def test_twiml_connect_stream_with_parameters_and_action():
    xml = connect_twiml("wss://bridge.example/media-stream", action_url="https://bridge.example/twiml/continue",
                        parameters={"from": "+15551230000", "token": "abc"})
    root = ET.fromstring(xml)
    connect = root.find("Connect")
    assert connect.get("action") == "https://bridge.example/twiml/continue"
    stream = connect.find("Stream")
    assert stream.get("url") == "wss://bridge.example/media-stream"
    assert {p.get("name"): p.get("value") for p in stream.findall("Parameter")} == {
        "from": "+15551230000", "token": "abc"}
    with pytest.raises(ConfigError):
        connect_twiml("wss://x/media-stream?token=1")
    with pytest.raises(ConfigError):
        connect_twiml("wss://x/media-stream", parameters={"v": "x" * 600})
    assert ET.fromstring(hangup_twiml()).find("Hangup") is not None
    said = ET.fromstring(hangup_twiml(say="Lo siento.", language="es-ES"))
    assert [v.tag for v in said] == ["Say", "Hangup"] and said[0].get("language") == "es-ES"
    assert said[0].text == "Lo siento."
