"""RFC 6455 frames cut from, and built for, a byte stream: the per-frame path of the two sockets
read in *direct* mode (the Twilio media stream, media_socket.py, and the Gemini Live socket,
gemini/client.py).

websockets parses a frame through a generator over a stream reader: a ``yield from`` for each of
its header, length, mask and payload, a ``Frame`` and an event per frame. For the frames a call
carries (whole, final, text or binary, no extension) the header is two to ten bytes, and cutting
it here costs a fraction of that. Everything else (a fragment, reserved bits, a wrongly masked or
oversized frame) is not cut: the caller hands the stream to websockets, which handles or fails it
as the RFC says. Control frames are cut only to be handed to websockets whole, which answers
pings and runs the closing handshake.

Cutting may start only where websockets' own parser stands between two frames
(:func:`at_frame_boundary`): bytes it has half-parsed must go on to it.
"""

from __future__ import annotations

import sys
from typing import Any

from websockets.protocol import State
from websockets.streams import StreamReader

#: :func:`frame_at`'s answer when not even the header is here yet (its end is past any data).
MORE = (-1, 0, sys.maxsize)
#: :func:`frame_at`'s answer for a frame the caller must leave to websockets.
UNUSUAL = (0, 0, 0)

_AT_EOF = StreamReader.at_eof.__code__


def frame_at(data: bytes, pos: int, n: int, masked: bool, max_size: int) -> tuple[int, int, int]:
    """The frame starting at ``data[pos]`` (``n = len(data)``): (opcode, start of its payload, end).

    An end past ``n``: the frame is not all here yet. :data:`MORE`: its header is not either.
    :data:`UNUSUAL` (opcode 0): not a whole, final text, binary or control frame masked as
    ``masked`` says, with no reserved bit and a payload of at most ``max_size`` bytes (a control
    frame's at most 125). When ``masked``, the 4-byte mask is the 4 bytes before the payload.
    """
    if n - pos < 2:
        return MORE
    b0 = data[pos]
    b1 = data[pos + 1]
    length = b1 & 0x7F
    head = pos + 2
    if length >= 126:
        if length == 126:
            if n - pos < 4:
                return MORE
            length = (data[pos + 2] << 8) | data[pos + 3]
            head = pos + 4
        else:
            if n - pos < 10:
                return MORE
            length = int.from_bytes(data[pos + 2:pos + 10], "big")
            head = pos + 10
    if masked:
        head += 4
        if not b1 & 0x80:
            return UNUSUAL
    elif b1 & 0x80:
        return UNUSUAL
    opcode = b0 & 0x0F
    if (b0 & 0xF0) != 0x80 or length > max_size \
            or not (opcode == 1 or opcode == 2 or (8 <= opcode <= 10 and length <= 125)):
        return UNUSUAL
    return opcode, head, head + length


def frame_header(opcode: int, n: int, masked: bool) -> bytes:
    """The header of a final, unfragmented frame with an ``n``-byte payload (RFC 6455 §5.2),
    without the mask that follows it when ``masked``."""
    mask_bit = 0x80 if masked else 0
    if n < 126:
        return bytes((0x80 | opcode, mask_bit | n))
    if n < 65536:
        return bytes((0x80 | opcode, mask_bit | 126)) + n.to_bytes(2, "big")
    return bytes((0x80 | opcode, mask_bit | 127)) + n.to_bytes(8, "big")


def at_frame_boundary(protocol: Any) -> bool:
    """websockets' sans-I/O ``protocol`` stands between two frames, open, outside a fragmented
    message, nothing buffered: bytes from here on may be cut by :func:`frame_at`.

    (An empty buffer alone does not tell: the parser takes a frame's header from it before the
    payload has come, and then waits inside ``Frame.parse``; between frames it waits in the
    reader's ``at_eof``.)
    """
    if protocol.state is not State.OPEN or protocol.reader.buffer \
            or getattr(protocol, "current_size", getattr(protocol, "cur_size", None)) is not None:
        return False  # (older websockets: cur_size)
    gen = protocol.parser  # the handshake's parser delegates to the frames' parser: the innermost waits
    for _ in range(8):
        inner = getattr(gen, "gi_yieldfrom", None)
        if inner is None:
            break
        gen = inner
    return getattr(gen, "gi_code", None) is _AT_EOF
