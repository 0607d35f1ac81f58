"""ws_frames: the frame cutter and builder of the direct-mode sockets, held to websockets' own
serializer and parser, and the frame-boundary test held to a real websockets protocol."""

from __future__ import annotations

import os

from hypothesis import example, given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode, apply_mask
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from telephony_bridge.ws_frames import MORE, UNUSUAL, at_frame_boundary, frame_at, frame_header

MAX = 1 << 20
LENGTHS = st.one_of(st.integers(0, 300), st.sampled_from([125, 126, 127, 65535, 65536, 70000]))


def _payload(n: int, seed: int) -> bytes:
    return (seed.to_bytes(4, "big") * (n // 4 + 1))[:n]


@settings(max_examples=150, deadline=None)
@given(opcode=st.sampled_from([Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG, Opcode.CLOSE]),
       n=LENGTHS, seed=st.integers(0, 2**32 - 1), masked=st.booleans(), lead=st.binary(max_size=12))
@example(opcode=Opcode.TEXT, n=65536, seed=7, masked=False, lead=b"")  # a 64-bit length
def test_a_frame_websockets_serializes_is_cut_where_it_ends(opcode, n, seed, masked, lead):
    if opcode.value >= 8:
        n = min(n, 125)
        if opcode is Opcode.CLOSE:
            n = max(n, 2)
    payload = _payload(n, seed)
    frame = Frame(opcode, payload).serialize(mask=masked)
    data = lead + frame + b"\x81\x00"  # some bytes before it, the next frame after it
    got, head, end = frame_at(data, len(lead), len(data), masked, MAX)
    assert (got, end) == (opcode.value, len(lead) + len(frame))
    body = data[head:end]
    assert (apply_mask(body, data[head - 4:head]) if masked else body) == payload
    # however little of it has come, it is never cut short
    for k in sorted({len(lead), len(lead) + 1, len(lead) + 2, len(lead) + 3, len(lead) + 9, len(lead) + len(frame) - 1}):
        if len(lead) <= k < len(lead) + len(frame):
            assert frame_at(data[:k], len(lead), k, masked, MAX)[2] > k


def test_a_missing_header_asks_for_more():
    assert frame_at(b"", 0, 0, True, MAX) == MORE
    assert frame_at(b"\x81", 0, 1, True, MAX) == MORE
    assert frame_at(b"\x81\xfe\x01", 0, 3, True, MAX) == MORE  # a 16-bit length, half here
    assert frame_at(b"\x81\x7f" + bytes(7), 0, 9, False, MAX) == MORE  # a 64-bit length, 7 of 8 bytes


@given(n=st.integers(0, 200), seed=st.integers(0, 2**32 - 1))
def test_what_frame_websockets_does_not_send_here_is_left_to_it(n, seed):
    payload = _payload(n, seed)
    def cut(frame: Frame, masked: bool = True, max_size: int = MAX) -> tuple[int, int, int]:
        data = frame.serialize(mask=masked)
        return frame_at(data, 0, len(data), masked, max_size)
    assert cut(Frame(Opcode.TEXT, payload, fin=False)) == UNUSUAL  # the first fragment
    assert cut(Frame(Opcode.CONT, payload)) == UNUSUAL
    compressed = bytearray(Frame(Opcode.TEXT, payload).serialize(mask=True))
    compressed[0] |= 0x40  # RSV1: permessage-deflate, an extension not negotiated here
    assert frame_at(bytes(compressed), 0, len(compressed), True, MAX) == UNUSUAL
    text = Frame(Opcode.TEXT, payload).serialize(mask=True)
    assert frame_at(text, 0, len(text), False, MAX) == UNUSUAL  # masked where it must not be
    plain = Frame(Opcode.TEXT, payload).serialize(mask=False)
    assert frame_at(plain, 0, len(plain), True, MAX) == UNUSUAL  # and the other way round
    if n:
        assert cut(Frame(Opcode.BINARY, payload), max_size=n - 1) == UNUSUAL  # oversized
    reserved = bytes((0x83, 0x80 | min(n, 125))) + bytes(4) + payload[:125]  # opcode 3
    assert frame_at(reserved, 0, len(reserved), True, MAX) == UNUSUAL
    long_ping = bytes((0x89, 0x80 | 126)) + (126).to_bytes(2, "big") + bytes(4) + bytes(126)
    assert frame_at(long_ping, 0, len(long_ping), True, MAX) == UNUSUAL


@settings(max_examples=60, deadline=None)
@given(n=LENGTHS, seed=st.integers(0, 2**32 - 1), masked=st.booleans(), opcode=st.sampled_from([1, 2]))
def test_a_built_frame_is_the_one_websockets_parses(n, seed, masked, opcode):
    payload = _payload(n, seed)
    client, server = _open_pair()
    if masked:  # as the Gemini client sends caller audio: websockets' server side must read it
        mask = os.urandom(4)
        data, peer = frame_header(opcode, n, True) + mask + apply_mask(payload, mask), server
    else:  # as the media socket sends the agent's audio to Twilio
        data, peer = frame_header(opcode, n, False) + payload, client
        assert data == Frame(Opcode(opcode), payload).serialize(mask=False)
    peer.receive_data(data)
    [event] = peer.events_received()
    assert (event.opcode.value, event.data, event.fin) == (opcode, payload, True)


def _open_pair() -> tuple[ClientProtocol, ServerProtocol]:
    client = ClientProtocol(parse_uri("ws://example.invalid/"))
    server = ServerProtocol()
    client.send_request(client.connect())
    for data in client.data_to_send():
        server.receive_data(data)
    [request] = server.events_received()
    server.send_response(server.accept(request))
    for data in server.data_to_send():
        client.receive_data(data)
    client.events_received()
    assert client.state is State.OPEN and server.state is State.OPEN
    return client, server


def test_the_boundary_is_where_websockets_waits_for_a_new_frame_not_an_empty_buffer():
    client, server = _open_pair()
    assert at_frame_boundary(client)
    server.send_text(b"x" * 300)
    [frame] = server.data_to_send()
    client.receive_data(frame[:4])  # the header and its 16-bit length: taken, the buffer empty
    assert not client.reader.buffer
    assert not at_frame_boundary(client)  # but the parser waits inside the frame for its payload
    client.receive_data(frame[4:])
    assert client.events_received()[0].data == b"x" * 300
    assert at_frame_boundary(client)
    server.send_text(b"frag", fin=False)
    for data in server.data_to_send():
        client.receive_data(data)
    assert not at_frame_boundary(client)  # inside a fragmented message
    server.send_continuation(b"ment", fin=True)
    for data in server.data_to_send():
        client.receive_data(data)
    assert at_frame_boundary(client)
    client.receive_data(b"\x88\x02\x03\xe8")  # the server's close
    assert not at_frame_boundary(client)  # closing: nothing more is cut
