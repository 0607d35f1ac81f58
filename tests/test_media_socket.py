"""The media stream's direct mode (media_socket.py) on a real uvicorn server over loopback.

A raw TCP client writes websocket frames byte by byte as it likes (several in one segment, one cut
across segments, pings, fragments, bad UTF-8), so the protocol's own frame cutting is what is
tested, and the ASGI fallback carries the same traffic for a server without direct mode.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from websockets.frames import apply_mask

from telephony_bridge.media_socket import PROTOCOL_PATH, AsgiMediaSocket, DirectMediaSocket, media_socket


def client_frame(payload: bytes, opcode: int = 1, fin: bool = True, mask: bytes | None = None) -> bytes:
    mask = mask or os.urandom(4)
    n = len(payload)
    head = bytes((0x80 * fin | opcode,))
    if n < 126:
        head += bytes((0x80 | n,))
    else:
        head += bytes((0x80 | 126,)) + n.to_bytes(2, "big")
    return head + mask + apply_mask(payload, mask)


class Server:
    """One websocket route: the first frame read over ASGI, the rest through ``media_socket``."""

    def __init__(self, ws: str) -> None:
        self.frames: list[str | bytes] = []
        self.closed = asyncio.Event()
        self.kinds: list[type] = []
        self.fast_at_echo: bool | None = None

        async def route(websocket) -> None:
            await websocket.accept()
            first = await websocket.receive()
            self.frames.append(first["text"])
            sock = media_socket(websocket)
            self.kinds.append(type(sock))
            done = asyncio.get_running_loop().create_future()

            def on_frame(data: str | bytes) -> None:
                self.frames.append(data)
                if data == "echo":  # still cutting frames itself (not handed to websockets) here?
                    self.fast_at_echo = getattr(getattr(sock, "protocol", None), "fast", None)
                    sock.write(deque(["one", "two" * 100, "three"]))
                if data == "bye" and not done.done():
                    done.set_result(None)

            def on_closed() -> None:
                self.closed.set()
                if not done.done():
                    done.set_result(None)

            sock.start(on_frame, on_closed)
            await done
            sock.stop()
            await sock.drain()
            await websocket.close()

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(Starlette(routes=[WebSocketRoute("/ws", route)]), ws=ws, log_level="warning",
                                lifespan="off", ws_max_size=65536, ws_per_message_deflate=False)
        self.server = uvicorn.Server(config)

    async def __aenter__(self) -> "Server":
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        while not self.server.started:
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        await self.task


async def open_raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    return b0 & 0x0F, await reader.readexactly(n)


async def wait_frames(server: Server, n: int) -> None:
    for _ in range(500):
        if len(server.frames) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(server.frames)} frames, wanted {n}: {server.frames!r}")


@pytest.mark.parametrize("ws, kind", [(PROTOCOL_PATH, DirectMediaSocket), ("websockets-sansio", AsgiMediaSocket)])
def test_frames_arrive_whole_in_order_however_the_bytes_are_cut(ws, kind):
    async def main() -> None:
        async with Server(ws) as server:
            reader, writer = await open_raw(server.port)
            writer.write(client_frame(b"start"))
            await wait_frames(server, 1)
            big = ("x" * 300).encode()
            # several frames in one segment, then one frame cut in three writes
            writer.write(client_frame(b"a") + client_frame(big) + client_frame(b"b", opcode=2))
            cut = client_frame(b"cut-across-segments")
            for piece in (cut[:1], cut[1:7], cut[7:]):
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.02)
            direct = kind is DirectMediaSocket
            if direct:  # not UTF-8: handed on as bytes for the parser to count (plain uvicorn closes 1007)
                writer.write(client_frame(b"\xff\xfe"))
            writer.write(client_frame(b"ping-me", opcode=9))  # a ping is answered with a pong
            opcode, payload = await read_frame(reader)
            assert (opcode, payload) == (10, b"ping-me")
            writer.write(client_frame(b"echo"))
            got = [await read_frame(reader) for _ in range(3)]
            assert got == [(1, b"one"), (1, b"two" * 100), (1, b"three")]
            # a fragmented message: the websockets protocol takes over and still delivers it
            writer.write(client_frame(b"frag-", fin=False) + client_frame(b"ment", opcode=0))
            writer.write(client_frame(b"after"))
            writer.write(client_frame(b"bye"))
            await wait_frames(server, 9 + direct)
            assert server.kinds == [kind]
            assert server.fast_at_echo is (True if direct else None)
            assert server.frames == ["start", "a", "x" * 300, b"b", "cut-across-segments", *[b"\xff\xfe"] * direct,
                                     "echo", "frag-ment", "after", "bye"]
            opcode, payload = await read_frame(reader)  # the server closes
            assert opcode == 8 and payload[:2] == (1000).to_bytes(2, "big")
            writer.close()

    asyncio.run(main())


@pytest.mark.parametrize("ws", [PROTOCOL_PATH, "websockets-sansio"])
def test_the_peer_going_away_is_told_once(ws):
    async def main() -> None:
        async with Server(ws) as server:
            reader, writer = await open_raw(server.port)
            writer.write(client_frame(b"start") + client_frame(b"x"))
            await wait_frames(server, 2)
            writer.write(client_frame((1001).to_bytes(2, "big"), opcode=8))  # a close frame
            await asyncio.wait_for(server.closed.wait(), 5)
            opcode, _ = await read_frame(reader)
            assert opcode == 8
            writer.close()
            await asyncio.sleep(0.1)
            assert server.frames == ["start", "x"]

    asyncio.run(main())


def test_an_unmasked_frame_hands_the_stream_to_the_websockets_protocol_which_refuses_it():
    async def main() -> None:
        async with Server(PROTOCOL_PATH) as server:
            reader, writer = await open_raw(server.port)
            writer.write(client_frame(b"start"))
            await wait_frames(server, 1)
            writer.write(b"\x81\x03abc")  # clients must mask (RFC 6455 5.1): 1002
            opcode, payload = await read_frame(reader)
            assert opcode == 8 and payload[:2] == (1002).to_bytes(2, "big")
            await asyncio.wait_for(server.closed.wait(), 5)
            assert server.frames == ["start"]
            writer.close()

    asyncio.run(main())
