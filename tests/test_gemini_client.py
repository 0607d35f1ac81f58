"""GeminiLiveClient: send_nowait on a socket that died under it (no exception into the call), and
direct mode on a real websocket (frames inside data_received, in order with what recv() gets)."""

from __future__ import annotations

from websockets.protocol import State

from telephony_bridge.gemini.client import GeminiLiveClient


class _Transport:
    def __init__(self) -> None:
        self.tried: list[bytes] = []

    def is_closing(self) -> bool:
        return False  # uvloop's TLS transport still says open: only the TCP handle under it closed

    def write(self, data: bytes) -> None:
        self.tried.append(data)
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True reading=False>; "
                           "the handler is closed")


class _Protocol:
    state = State.OPEN
    writes: list[bytes] = []


class _DeadUnderTls:
    """The websockets connection's surface send_nowait uses, as uvloop leaves it when the TCP
    socket under a TLS transport has closed and connection_lost has not run yet."""

    send_in_progress = None
    paused = False

    def __init__(self) -> None:
        self.transport = _Transport()
        self.protocol = _Protocol()


def test_a_write_to_a_socket_that_closed_under_tls_is_lost_with_it_not_raised():
    ws = _DeadUnderTls()
    client = GeminiLiveClient(ws, b'{"setupComplete":{}}')  # type: ignore[arg-type]
    assert client.send_nowait('{"realtimeInput":{}}') is True  # gone with the socket: not queued again
    assert len(ws.transport.tried) == 1


# -- direct mode, against a real websockets server on loopback ----------------------------------

import asyncio  # noqa: E402
import json  # noqa: E402

from websockets.asyncio.server import serve  # noqa: E402

from telephony_bridge.gemini.backend import Endpoint  # noqa: E402


def _msg(i: int) -> str:
    return json.dumps({"n": i})


def test_direct_mode_hands_frames_over_in_order_and_the_reader_gets_the_rest():
    async def main():
        async with asyncio.timeout(20):
            await run()

    async def run():
        go: asyncio.Queue = asyncio.Queue()

        async def handler(ws):
            await ws.recv()  # setup
            await ws.send('{"setupComplete":{}}')
            await ws.send(_msg(1))  # queued before direct mode: recv() must take them first
            await ws.send(_msg(2))
            while (batch := await go.get()) is not None:
                for item in batch:
                    await ws.send(item)
            await ws.close(1011, "bye")

        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            client = await GeminiLiveClient.connect(Endpoint(f"ws://127.0.0.1:{port}", {}), '{"setup":{}}')
            seen: list[int] = []

            def on_frame(data: bytes) -> bool:
                assert type(data) is bytes
                n = json.loads(data)["n"]
                if n == 5:
                    return False
                seen.append(n)
                return True

            await asyncio.sleep(0.2)  # frames 1 and 2 are queued now
            assert client.go_direct(on_frame) is False  # not before recv() has taken them
            assert [json.loads(await client.recv())["n"] for _ in range(2)] == [1, 2]
            assert client.go_direct(on_frame) is True
            await go.put([_msg(3), _msg(4)])
            for _ in range(50):
                if len(seen) == 2:
                    break
                await asyncio.sleep(0.02)
            assert seen == [3, 4]  # inside data_received, nothing for recv()
            # A declined frame, and every frame after it (even one the callback would take),
            # reach recv() in order.
            await go.put([_msg(5), _msg(6)])
            frames = [json.loads(await client.recv())["n"] for _ in range(2)]
            assert frames == [5, 6] and seen == [3, 4]
            assert client.go_direct(on_frame) is False  # off for good on this connection
            await go.put(None)
            assert await client.recv() is None
            assert client.close_code == 1011

    asyncio.run(main())


def test_a_fragmented_message_in_direct_mode_reaches_recv_whole():
    async def main():
        async def handler(ws):
            await ws.recv()
            await ws.send('{"setupComplete":{}}')
            await ws.recv()  # the client is in direct mode
            await ws.send(_msg(1))
            await ws.send(['{"n"', ':2}'])  # two frames, one message
            await ws.send(_msg(3))
            await ws.recv()

        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            client = await GeminiLiveClient.connect(Endpoint(f"ws://127.0.0.1:{port}", {}), '{"setup":{}}')
            seen: list[int] = []
            assert client.go_direct(lambda data: seen.append(json.loads(data)["n"]) or True)
            await client.send("ready")
            assert json.loads(await client.recv()) == {"n": 2}
            assert json.loads(await client.recv()) == {"n": 3}
            assert seen == [1]
            await client.close()

    asyncio.run(main())


def test_direct_mode_cuts_big_frames_split_across_reads_and_answers_pings_between_them():
    """Frames of every length class (7-, 16- and 64-bit) arrive whole however TCP splits them,
    a ping from the server is answered while frames are being cut, and the close still reaches
    recv(); caller audio sent with send_nowait reaches the server as the same text."""
    sizes = [10, 300, 70_000, 250_000, 5]

    async def main():
        async with asyncio.timeout(20):
            await run()

    async def run():
        got_by_server: list[str] = []
        pong_in: asyncio.Future = asyncio.get_running_loop().create_future()

        async def handler(ws):
            await ws.recv()
            await ws.send('{"setupComplete":{}}')
            await ws.recv()  # the client is in direct mode
            for i, size in enumerate(sizes):
                await ws.send(json.dumps({"n": i, "pad": "x" * size}))
                if i == 1:
                    waiter = await ws.ping(b"are-you-there")
                    await waiter  # the client answered between data frames
                    pong_in.set_result(True)
            got_by_server.extend([await ws.recv() for _ in range(3)])
            await ws.close(1000, "done")

        async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
            port = server.sockets[0].getsockname()[1]
            client = await GeminiLiveClient.connect(Endpoint(f"ws://127.0.0.1:{port}", {}), '{"setup":{}}')
            seen: list[tuple[int, int]] = []
            cutting: list[bool] = []

            def on_frame(data: bytes) -> bool:
                message = json.loads(data)
                seen.append((message["n"], len(message["pad"])))
                cutting.append(client.ws.cutting)
                return True

            assert client.go_direct(on_frame)
            await client.send("ready")
            for _ in range(200):
                if len(seen) == len(sizes):
                    break
                await asyncio.sleep(0.01)
            assert seen == list(enumerate(sizes)) and all(cutting)
            assert await pong_in
            sent = ["a" * 100, "b" * 1000, "c" * 70_000]
            for text in sent:
                assert client.send_nowait(text)
            assert await client.recv() is None  # the close, after everything was taken directly
            assert client.close_code == 1000
            assert got_by_server == sent

    asyncio.run(main())
