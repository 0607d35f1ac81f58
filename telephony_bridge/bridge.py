"""The per-call asyncio adapter: owns the two sockets, the tasks and the timer of one call.

All decisions are the :class:`~telephony_bridge.call.CallCore`'s. This module feeds it input
with ``loop.time()`` as ``now``, writes what it queued, in order, and sleeps until its next
deadline. One writer per socket at a time (the ``_Writer`` flag), so a ``clear`` can never
overtake the media queued before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.websockets import WebSocket

from .call import CallConfig, CallCore
from .gemini.client import GeminiLiveClient
from .gemini.messages import SetupConfig
from .log import log_event
from .metrics import Metrics

logger = logging.getLogger("telephony_bridge.bridge")


class _Writer:
    """Drains one of the core's outboxes into a socket, one writer at a time, in order.

    ``watch``/``on_watch``: when the message that ``watch()`` returns (compared by identity,
    the core hands out one string object) has been written, ``on_watch`` is called.
    """

    __slots__ = ("queue", "send", "busy", "watch", "on_watch")

    def __init__(self, queue: deque[str], send: Callable[[str], Awaitable[Any]] | None,
                 watch: Callable[[], str | None] | None = None,
                 on_watch: Callable[[], None] | None = None) -> None:
        self.queue = queue
        self.send = send
        self.busy = False
        self.watch = watch
        self.on_watch = on_watch

    async def flush(self) -> None:
        if self.busy or self.send is None:
            return
        self.busy = True
        queue, send = self.queue, self.send
        watched = self.watch() if self.watch is not None else None
        try:
            while queue:
                message = queue.popleft()
                await send(message)
                if message is watched and self.on_watch is not None:
                    self.on_watch()
        finally:
            self.busy = False


class CallBridge:
    """Runs one call: Twilio websocket ⇄ CallCore ⇄ Gemini websocket."""

    def __init__(self, websocket: WebSocket, *, live_url: str, api_key: str, setup: SetupConfig,
                 config: CallConfig, on_finish: Callable[[CallCore], None] | None = None,
                 metrics: Metrics | None = None, first_frames: Sequence[str | bytes] = ()) -> None:
        self.ws = websocket
        self.live_url = live_url
        self.api_key = api_key
        self.loop = asyncio.get_running_loop()
        self.core = CallCore(setup, config, now=self.loop.time(), metrics=metrics)
        self.on_finish = on_finish
        #: Twilio frames the server already read (``connected``, ``start``) to vet the stream.
        self.first_frames = list(first_frames)
        self._wake = asyncio.Event()
        self._gemini: GeminiLiveClient | None = None
        core = self.core
        self._to_twilio = _Writer(core.twilio_out, websocket.send_text, lambda: core.clear_message,
                                  lambda: core.clear_written(self.loop.time()))
        self._to_gemini = _Writer(self.core.gemini_out, None)

    async def run(self) -> None:
        core = self.core
        tasks = [
            asyncio.create_task(self._twilio_loop(), name="twilio"),
            asyncio.create_task(self._gemini_loop(), name="gemini"),
            asyncio.create_task(self._timer_loop(), name="timer"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    exc = task.exception()
                    log_event(logger, "call.task_failed", logging.ERROR, call_sid=core.call_sid,
                              task=task.get_name(), error=repr(exc)[:300])
                    core._end(self.loop.time(), f"internal-error:{task.get_name()}")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if core.ended is None:
                core._end(self.loop.time(), "bridge-closed")
            await self._shutdown()
            if self.on_finish is not None:
                self.on_finish(core)

    async def _shutdown(self) -> None:
        # Best effort: flush what is queued for the caller, then close both sockets.
        try:
            async with asyncio.timeout(2):
                await self._to_twilio.flush()
                await self.ws.close()
        except Exception:  # the caller may already be gone
            pass
        if self._gemini is not None:
            try:
                async with asyncio.timeout(2):
                    await self._gemini.close()
            except Exception:
                pass

    async def _flush(self) -> None:
        await self._to_twilio.flush()
        await self._to_gemini.flush()
        self._wake.set()

    async def _twilio_loop(self) -> None:
        core, ws, loop = self.core, self.ws, self.loop
        receive = ws.receive
        for data in self.first_frames:
            core.receive_twilio(data, loop.time())
        self.first_frames.clear()
        while core.ended is None:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                core.receive_twilio_closed(loop.time())
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            core.receive_twilio(data, loop.time())
            if core.twilio_out:
                await self._to_twilio.flush()
            if core.gemini_out:
                await self._to_gemini.flush()

    async def _gemini_loop(self) -> None:
        core, loop = self.core, self.loop
        setup_message = core.gemini_connected(loop.time())
        try:
            client = await GeminiLiveClient.connect(self.live_url, self.api_key, setup_message)
        except Exception as exc:
            code = getattr(getattr(exc, "rcvd", None), "code", None)
            core.gemini_closed(code, f"connect failed: {type(exc).__name__}", loop.time())
            await self._flush()
            return
        self._gemini = client
        self._to_gemini.send = client.send
        core.receive_gemini(client.setup_complete_frame, loop.time())
        await self._flush()
        async for frame in client.frames():
            core.receive_gemini(frame, loop.time())
            await self._flush()
            if core.ended is not None:
                return
        core.gemini_closed(client.close_code, client.close_reason, loop.time())
        await self._flush()

    async def _timer_loop(self) -> None:
        core, loop, wake = self.core, self.loop, self._wake
        while core.ended is None:
            deadline = core.next_deadline()
            wake.clear()
            if deadline is None:
                await wake.wait()
            else:
                delay = deadline - loop.time()
                if delay > 0:
                    try:
                        async with asyncio.timeout(delay):
                            await wake.wait()
                    except TimeoutError:
                        pass
            core.tick(loop.time())
            if core.twilio_out:
                await self._to_twilio.flush()
            if core.gemini_out:
                await self._to_gemini.flush()
