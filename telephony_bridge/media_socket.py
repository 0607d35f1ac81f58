"""The Twilio Media Stream's websocket, read and written without a task hop per frame.

A call is 50 Twilio frames a second each way. Through ASGI, uvicorn's websockets-sansio protocol
puts every frame in an ``asyncio.Queue``, pauses reading until the app takes it (two epoll
changes), and wakes the app's task; every frame out is an awaited ``send`` through Starlette's
and uvicorn's wrappers and a write system call of its own. At 300 calls that machinery, not the
call's logic, fills the core (``benchmarks/load.py``).

So the media stream does its handshake and vetting as an ordinary ASGI websocket (the server reads
``connected`` and ``start`` itself), then the bridge switches the connection to *direct* mode:

- :class:`MediaStreamProtocol` is uvicorn's websockets-sansio protocol plus that mode: each frame
  parsed from the socket is handed to the call's callback synchronously, inside ``data_received``.
  Whole, final, masked data frames (all Twilio sends) are cut from the byte stream here; control
  frames (ping, pong, close) go whole to the websockets protocol, and anything unusual
  (fragments, an unmasked or oversized frame) hands the rest of the stream to it for good;
- :class:`DirectMediaSocket` writes everything the call queued as websocket frames in **one**
  ``transport.write``: the agent's frames, the marks and a ``clear`` go out in one system call.

Served by anything else (another ASGI server, uvicorn with ``--ws websockets``), the scope has no
``MEDIA_EXTENSION`` and :class:`AsgiMediaSocket` gives the same interface over plain ASGI.
``serve`` and the offline kit use ``uvicorn_options()`` (server.py), which picks the protocol.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import apply_mask

from .ws_frames import at_frame_boundary, frame_at, frame_header

#: The scope extension through which the protocol offers direct mode to the app.
MEDIA_EXTENSION = "telephony_bridge.media_socket"
#: ``uvicorn.Config(ws=...)``: an import string uvicorn resolves itself.
PROTOCOL_PATH = "telephony_bridge.media_socket:MediaStreamProtocol"

logger = logging.getLogger("telephony_bridge.media_socket")

OnFrame = Callable[[str | bytes], None]
OnClosed = Callable[[], None]


def asgi_frame(message: Any) -> str | bytes:
    """The data of an ASGI ``websocket.receive`` message: its text, else its bytes."""
    text = message.get("text")
    return text if text is not None else message.get("bytes") or b""


def _text_or_bytes(payload: bytes) -> str | bytes:
    """A text frame's payload for the call: a str, or the raw bytes when it is not UTF-8 (the
    call's parser then counts it as a bad frame instead of the socket closing)."""
    try:
        return payload.decode()
    except UnicodeDecodeError:
        return payload


class MediaStreamProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol with a direct mode for one call's media stream.

    Until :meth:`DirectMediaSocket.start`, it is exactly uvicorn's protocol (ASGI messages through
    the queue). From then on, data frames go to ``on_frame`` as they are parsed; the closing
    handshake, pings and pongs stay uvicorn's.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_frame: OnFrame | None = None
        self.on_closed: OnClosed | None = None
        #: Frames are cut here (False once anything unusual handed the stream to ``self.conn``).
        self.fast = True
        self._partial = b""  # the start of a frame not received whole yet
        self._max_size = self.config.ws_max_size

    def data_received(self, data: bytes) -> None:
        if self.on_frame is None or not self.fast:
            super().data_received(data)
            return
        if self._partial:
            data = self._partial + data
            self._partial = b""
        pos, n = 0, len(data)
        max_size = self._max_size
        while pos < n:
            opcode, head, end = frame_at(data, pos, n, True, max_size)
            if not opcode:
                # Not final, reserved bits or opcodes, unmasked, oversized: the websockets
                # protocol takes the rest of the stream (and closes it if it is bad).
                self.fast = False
                super().data_received(data[pos:])
                return
            if end > n:
                break
            if opcode >= 8:  # ping, pong, close, whole: the websockets protocol answers it
                super().data_received(data[pos:end])
                pos = end
                if self.on_frame is None:  # closed
                    break
                continue
            payload = apply_mask(data[head:end], data[head - 4:head])
            pos = end
            if self.close_sent:  # we are closing: data is discarded until the peer's close
                continue
            self.on_frame(_text_or_bytes(payload) if opcode == 1 else payload)  # type: ignore[misc]
            if self.on_frame is None:  # the call let go of the stream
                break
        if pos < n:
            rest = data[pos:]
            if self.on_frame is None:  # direct mode is over: the websockets protocol goes on
                super().data_received(rest)
            else:
                self._partial = rest

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:  # the app's task starts on the next loop iteration
            self.scope["extensions"][MEDIA_EXTENSION] = {"protocol": self}

    def send_receive_event_to_app(self) -> None:
        on_frame = self.on_frame
        if on_frame is None:
            super().send_receive_event_to_app()
            return
        frames = self.frames
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        self.frames = []
        if self.close_sent:
            return
        on_frame(_text_or_bytes(bytes(data)) if self.curr_msg_data_type == "text" else bytes(data))

    def handle_close(self, event: Any) -> None:
        super().handle_close(event)
        self._closed()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._closed()

    def _closed(self) -> None:
        on_closed = self.on_closed
        if on_closed is not None:
            self.on_frame = self.on_closed = None
            on_closed()


class DirectMediaSocket:
    """The call's side of :class:`MediaStreamProtocol` in direct mode."""

    __slots__ = ("protocol",)

    def __init__(self, protocol: MediaStreamProtocol) -> None:
        self.protocol = protocol

    def start(self, on_frame: OnFrame, on_closed: OnClosed) -> None:
        """From now on, frames go to ``on_frame`` (first any the app has not read yet)."""
        p = self.protocol
        queued: list[Any] = []
        while not p.queue.empty():
            queued.append(p.queue.get_nowait())
        p.on_frame, p.on_closed = on_frame, on_closed
        # Cut frames here only from a frame boundary: nothing half-parsed in the protocol.
        p.fast = at_frame_boundary(p.conn)
        for message in queued:
            if message["type"] == "websocket.receive":
                on_frame(asgi_frame(message))
            else:  # websocket.disconnect, already seen by the protocol
                p._closed()
                return
        if p.disconnected:
            p._closed()
            return
        if p.read_paused:
            p.read_paused = False
            p.transport.resume_reading()

    def stop(self) -> None:
        """The call is over: frames still arriving go back to the (unread) ASGI queue."""
        p = self.protocol
        p.on_frame = p.on_closed = None
        partial, p._partial = p._partial, b""
        if partial and not p.transport.is_closing():
            WebSocketsSansIOProtocol.data_received(p, partial)

    def write(self, messages: deque[str]) -> bool:
        """Write every queued message, in order, in one system call; False: the socket is gone."""
        p = self.protocol
        if p.close_sent or p.disconnected or p.transport.is_closing():
            messages.clear()
            return False
        parts: list[bytes] = []
        append = parts.append
        for message in messages:
            payload = message.encode()
            append(frame_header(1, len(payload), False))
            append(payload)
        messages.clear()
        p.transport.write(b"".join(parts))
        return True

    async def drain(self) -> None:
        """Everything written is in the transport already."""


class AsgiMediaSocket:
    """The same interface over plain ASGI (any server): a reader task and an ordered writer task."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self._pending: deque[str] = deque()
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._on_closed: OnClosed | None = None
        self._gone = False

    def start(self, on_frame: OnFrame, on_closed: OnClosed) -> None:
        self._on_closed = on_closed
        self._reader = asyncio.get_running_loop().create_task(self._read(on_frame), name="twilio")

    async def _read(self, on_frame: OnFrame) -> None:
        receive = self.websocket.receive
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    break
                on_frame(asgi_frame(message))
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        self._closed()

    def _closed(self) -> None:
        self._gone = True
        on_closed, self._on_closed = self._on_closed, None
        if on_closed is not None:
            on_closed()

    def stop(self) -> None:
        self._on_closed = None
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()

    def write(self, messages: deque[str]) -> bool:
        if self._gone:
            messages.clear()
            return False
        self._pending.extend(messages)
        messages.clear()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())
        return True

    async def _write(self) -> None:
        pending, send = self._pending, self.websocket.send_text
        try:
            while pending:
                await send(pending.popleft())
        except (WebSocketDisconnect, RuntimeError, OSError):
            pending.clear()
            self._closed()

    async def drain(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)


def media_socket(websocket: WebSocket) -> DirectMediaSocket | AsgiMediaSocket:
    """The fastest way this server offers to carry the call's frames."""
    offer = websocket.scope.get("extensions", {}).get(MEDIA_EXTENSION)
    if offer is not None:
        return DirectMediaSocket(offer["protocol"])
    return AsgiMediaSocket(websocket)
