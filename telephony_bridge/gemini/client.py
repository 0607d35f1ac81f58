"""The asyncio client for the Gemini Live websocket (an adapter: all protocol logic lives in
:mod:`telephony_bridge.gemini.session` and :mod:`telephony_bridge.gemini.messages`).

:meth:`GeminiLiveClient.connect` opens the socket to an :class:`~telephony_bridge.gemini.backend.Endpoint`
(URL and headers from the backend: the key in ``x-goog-api-key``, or Vertex AI's Bearer token;
never a credential in the URL, which proxies and servers log), sends ``setup`` and waits for
``setupComplete``: the Live API accepts nothing else before it.

Server frames are read one of two ways. :meth:`GeminiLiveClient.recv` is websockets' own path:
each frame queued, a future set, the reading task woken, an await per frame. In *direct* mode
(:meth:`GeminiLiveClient.go_direct`, what the bridge uses) each whole data frame is handed to a
callback inside the socket's ``data_received``, as the Twilio side does (media_socket.py): no
queue, no task switch, and the frames cut from the stream here (ws_frames.py) instead of through
websockets' parser; control frames, fragments and anything unusual still go to websockets. A
frame the callback declines, and every frame after it, takes the queued path, so the reader
always sees frames in the order they came. Caller audio goes out the same way, a masked frame
built here and written at once (:meth:`GeminiLiveClient.send_nowait`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode, apply_mask
from websockets.protocol import State

from ..errors import GeminiProtocolError
from ..ws_frames import at_frame_boundary, frame_at, frame_header
from .backend import Endpoint
from .messages import SetupComplete, parse_server_message

#: Gemini's pongs can take many seconds under load; only a long silence means a dead socket.
PING_INTERVAL_S = 20.0
PING_TIMEOUT_S = 60.0
#: One server message can carry a whole sentence of 24 kHz audio.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def upgrade_refused(exc: BaseException) -> tuple[int, str] | None:
    """(HTTP status, body text) when the server answered the websocket upgrade with an error
    instead of 101; None for any other failure (refused TCP, timeout, a close frame)."""
    if isinstance(exc, InvalidStatus):
        response = exc.response
        return response.status_code, (response.body or b"")[:1000].decode("utf-8", "replace")
    return None


def closed_during_setup(exc: BaseException) -> tuple[int, str] | None:
    """(close code, reason) when the server closed the socket before ``setupComplete``."""
    close = getattr(exc, "rcvd", None)
    return (close.code, close.reason or "") if close is not None else None


#: A server frame's payload for direct mode: True if taken, False to queue it (and all after) for recv().
OnFrame = Callable[[bytes], bool]

class LiveConnection(ClientConnection):
    """websockets' client connection plus direct mode (see the module's docstring)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.on_frame: OnFrame | None = None
        #: Direct mode is over for this connection (a frame was declined, or fragmented).
        self.direct_off = False
        #: Whole messages queued for recv(), and taken by it: direct mode starts only when equal.
        self.queued = 0
        self.taken = 0
        #: Frames are cut from the stream here (ws_frames.py), not parsed by websockets.
        self.cutting = False
        self._partial = b""  # the start of a frame not received whole yet, while cutting
        protocol = self.protocol  # (older websockets: max_size)
        self._max_size = getattr(protocol, "max_message_size", getattr(protocol, "max_size", None)) or sys.maxsize

    def data_received(self, data: bytes) -> None:
        on_frame = self.on_frame
        if self.cutting:
            if self._partial:
                data = self._partial + data
                self._partial = b""
            if on_frame is None:  # direct mode ended between two reads
                self.cutting = False
                super().data_received(data)
                return
        elif on_frame is None or not at_frame_boundary(self.protocol):
            super().data_received(data)
            return
        else:
            self.cutting = True
        pos, n = 0, len(data)
        max_size = self._max_size
        while pos < n:
            opcode, head, end = frame_at(data, pos, n, False, max_size)
            if not opcode:  # a fragment, masked, oversized...: websockets handles it, or fails it
                break
            if end > n:
                self._partial = data[pos:]
                return
            if opcode >= 8:  # ping, pong, close: websockets answers it (and may close)
                super().data_received(data[pos:end])
                pos = end
                if self.on_frame is not on_frame or not at_frame_boundary(self.protocol):
                    break
                continue
            if not on_frame(data[head:end]):  # declined: it and all after it queue for recv()
                self.stop_direct()
                break
            pos = end
            if self.on_frame is not on_frame:  # the reader let go of this connection
                break
        else:
            return  # every byte cut: still cutting
        self.cutting = False
        if pos < n:
            super().data_received(data[pos:])

    def process_event(self, event: Any) -> None:
        if type(event) is Frame and event.opcode.value <= 2:  # text, binary, continuation
            on_frame = self.on_frame
            if on_frame is not None:
                data = event.data
                if event.fin and event.opcode is not Opcode.CONT \
                        and on_frame(data if type(data) is bytes else bytes(data)):
                    return
                self.stop_direct()  # declined, or a fragment (websockets' assembler joins it)
            if event.fin:
                self.queued += 1
        super().process_event(event)

    async def recv(self, *args: Any, **kwargs: Any) -> Any:
        message = await super().recv(*args, **kwargs)
        self.taken += 1
        return message

    def stop_direct(self) -> None:
        self.on_frame = None
        self.direct_off = True


class GeminiLiveClient:
    """One websocket connection to the Live API, set up and ready to stream."""

    def __init__(self, ws: LiveConnection, setup_complete_frame: bytes | str) -> None:
        self.ws = ws
        #: The raw ``setupComplete`` frame, for a session state machine that wants to see it.
        self.setup_complete_frame = setup_complete_frame

    @classmethod
    async def connect(cls, endpoint: Endpoint, setup_message: str, *,
                      timeout: float = 15.0, max_message_bytes: int = MAX_MESSAGE_BYTES) -> GeminiLiveClient:
        url = endpoint.url
        ws = await connect(
            url,
            additional_headers=endpoint.headers,
            max_size=max_message_bytes,
            ping_interval=PING_INTERVAL_S,
            ping_timeout=PING_TIMEOUT_S,
            compression=None,  # PCM barely compresses; deflate would cost CPU on every frame
            open_timeout=timeout,
            proxy=None if _is_loopback(url) else True,
            create_connection=LiveConnection,
        )
        try:
            await ws.send(setup_message)
            async with asyncio.timeout(timeout):
                frame = await ws.recv()
            events = parse_server_message(frame)
            if not events or not isinstance(events[0], SetupComplete):
                raise GeminiProtocolError("no-setup-complete", "first server message was not setupComplete",
                                          fatal=True)
        except BaseException:
            await ws.close()
            raise
        return cls(ws, frame)

    async def send(self, message: str) -> None:
        await self.ws.send(message)

    def send_nowait(self, message: str) -> bool:
        """Write ``message`` now, without a task or an await, when nothing stands in the way: no
        fragmented send under way, the socket open and below its write buffer's high-water mark.
        False: nothing was written; :meth:`send` it (it waits for the buffer, or raises the close).
        Caller audio goes out ten times a second per call: this is that path."""
        ws = self.ws
        if ws.send_in_progress is not None or ws.paused or ws.protocol.state is not State.OPEN \
                or ws.protocol.writes or ws.transport.is_closing():
            return False
        # The frame websockets' send_text would build (a masked text frame, RFC 6455 §5.3), built
        # here in one join, and written in one call.
        payload = message.encode()
        mask = os.urandom(4)
        try:
            ws.transport.write(b"".join((frame_header(1, len(payload), True), mask, apply_mask(payload, mask))))
        except (RuntimeError, OSError):
            # The TCP socket under the TLS transport closed before its protocol heard (uvloop:
            # "unable to perform operation on <TCPTransport closed=True>"): this frame went down
            # with the connection, like any written just before a drop; the reader sees the close
            # and the call reconnects and replays its caller audio. Never an error out of here
            # (it would end the call as an internal error from inside the caller's frame).
            pass
        return True

    async def recv(self) -> bytes | str | None:
        """The next server frame; None once the connection has closed (normally or not).
        (A plain await per frame: an async generator around it costs two more per frame.)"""
        try:
            return await self.ws.recv()
        except websockets.ConnectionClosed:
            return None

    def go_direct(self, on_frame: OnFrame) -> bool:
        """From now on, hand whole data frames to ``on_frame`` inside ``data_received`` (see the
        module's docstring); :meth:`recv` then returns only the frames it declines, and None at
        the close. False: not now (frames are still queued for recv(), which must take them
        first, in order) or not on this connection any more (a frame was declined)."""
        ws = self.ws
        if ws.direct_off or ws.queued != ws.taken:
            return False
        ws.on_frame = on_frame
        return True

    @property
    def close_code(self) -> int | None:
        """The close code (1006 when the connection dropped without a close frame)."""
        return self.ws.close_code

    @property
    def close_reason(self) -> str:
        return self.ws.close_reason or ""

    async def close(self) -> None:
        await self.ws.close()
