"""A small TCP reverse proxy over loopback replicas, for tests and benchmarks of scale-out.

What a Kubernetes Service or the compose file's proxy does for the bridge, with real sockets:
each new client connection goes to the next *ready* backend (round robin), whole (HTTP and
websocket upgrades alike: the bytes are copied both ways until either side closes). A backend is
ready while its ``GET /readyz`` answers 200, polled every ``check_s``: a draining replica answers
503 and gets no new connection, while the connections it has go on until it closes them.

    proxy = ReadyProxy([port_a, port_b]); await proxy.start(); ... proxy.port ...; await proxy.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools


class ReadyProxy:
    def __init__(self, backends: list[int], *, host: str = "127.0.0.1", check_s: float = 0.1) -> None:
        self.backends = list(backends)
        self.host = host
        self.check_s = check_s
        self.ready: dict[int, bool] = {p: False for p in self.backends}
        self.port = 0
        #: Connections sent to each backend (what the tests check routing with).
        self.routed: dict[int, int] = {p: 0 for p in self.backends}
        self._rr = itertools.count()
        self._server: asyncio.base_events.Server | None = None
        self._checker: asyncio.Task[None] | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._check_all()
        self._checker = asyncio.ensure_future(self._check_loop())
        self._server = await asyncio.start_server(self._client, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)

    async def _check(self, port: int) -> bool:
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(1.0):
                reader, writer = await asyncio.open_connection(self.host, port)
                writer.write(f"GET /readyz HTTP/1.1\r\nHost: {self.host}\r\nConnection: close\r\n\r\n".encode())
                line = await reader.readline()
                return line.split(b" ")[1:2] == [b"200"]
        except (OSError, TimeoutError, IndexError):
            return False
        finally:  # whatever happened (a replica that hangs, a timeout, a cancelled check)
            if writer is not None:
                writer.close()

    async def _check_all(self) -> None:
        results = await asyncio.gather(*(self._check(p) for p in self.backends))
        self.ready = dict(zip(self.backends, results))

    async def _check_loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_s)
            await self._check_all()

    def _pick(self) -> int | None:
        ready = [p for p in self.backends if self.ready.get(p)]
        return ready[next(self._rr) % len(ready)] if ready else None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            port = self._pick()
            if port is None:
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
                return
            self.routed[port] += 1
            try:
                up_reader, up_writer = await asyncio.open_connection(self.host, port)
            except OSError:
                writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
                return
            try:
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            self._conns.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


__all__ = ["ReadyProxy"]
