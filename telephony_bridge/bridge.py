"""The per-call asyncio adapter: owns the two sockets, the tasks and the timer of one call.

All decisions are the :class:`~telephony_bridge.call.CallCore`'s. This module feeds it input
with ``loop.time()`` as ``now``, writes what it queued, in order, wakes it at its next deadline
(one ``loop.call_at`` handle, moved only when the deadline moves), runs tool calls as tasks, and
keeps the Gemini connection alive: reconnecting with the resumption handle after a drop and
handing over to a fresh connection after ``goAway``.

The Twilio side is callbacks, not a task: each caller frame reaches the core inside the socket's
``data_received`` and what the core queued for the caller is written before it returns, in one
system call (media_socket.py). So a ``clear`` can never overtake the media queued before it, and
a frame costs no task switch. The Gemini socket has one writer at a time (``_Writer``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import websockets
from starlette.websockets import WebSocket

from . import call_state
from .call import CallConfig, CallCore
from .gemini.client import GeminiLiveClient, closed_during_setup, upgrade_refused
from .gemini.messages import SetupConfig
from .gemini.backend import BackendAuthError
from .gemini.reconnect import ReconnectPolicy
from .gemini.refusal import credentials_refused
from .log import log_event
from .media_socket import media_socket
from .metrics import Metrics

if TYPE_CHECKING:
    from .gemini.refusal import Refusal
    from .gemini.backend import LiveBackend
    from .store import CallStore
    from .tools import ToolRegistry

logger = logging.getLogger("telephony_bridge.bridge")

#: uvloop's ``loop.time()`` counts whole milliseconds and its timers fire up to half of one before
#: that clock shows their time; asyncio's loop runs a handle within its own clock's resolution too.
CLOCK_RESOLUTION_S = 0.001


def due_now(deadline: float | None, now: float) -> float | None:
    """The ``now`` to tick the core with when its timer fires at ``now`` (the loop's clock), or
    None when the deadline has moved later than the clock can tell apart. A timer firing within
    the clock's resolution of its deadline is due, and the core is ticked at that deadline: read
    as early, it was re-armed for the same instant and fired again, every loop iteration until
    the millisecond turned (100-170 wasted wake-ups per call-second at 25 calls)."""
    if deadline is None or deadline <= now:
        return now
    return deadline if deadline - now <= CLOCK_RESOLUTION_S + 1e-9 else None


class _Writer:
    """Drains the core's Gemini outbox into the current connection, one writer at a time, in order."""

    __slots__ = ("queue", "send", "send_nowait", "busy", "closed_errors")

    def __init__(self, queue: deque[str], closed_errors: tuple[type[BaseException], ...] = ()) -> None:
        self.queue = queue
        self.send: Callable[[str], Awaitable[Any]] | None = None
        self.send_nowait: Callable[[str], bool] | None = None
        self.busy = False
        #: Errors that mean "the socket is gone": the queue is dropped; the reader of that
        #: socket sees the close and the core decides what happens next.
        self.closed_errors = closed_errors

    def bind(self, client: GeminiLiveClient) -> None:
        """From now on, write to ``client`` (a new connection, a handover's next one)."""
        self.send, self.send_nowait = client.send, client.send_nowait

    def write_now(self) -> bool:
        """Write what can go without waiting. False: the rest needs :meth:`flush` (a task)."""
        queue, nowait = self.queue, self.send_nowait
        if self.busy or nowait is None:  # a flush is under way (it takes it), or no socket yet
            return True
        while queue:
            if not nowait(queue[0]):
                return False
            queue.popleft()
        return True

    async def flush(self) -> None:
        if self.busy or self.send is None:
            return
        self.busy = True
        queue = self.queue
        try:
            while queue:
                await self.send(queue.popleft())  # read each time: a handover may swap the socket
        except self.closed_errors:
            # Caller audio lost here was queued while the session could send, so it sits in the
            # core's replay buffer and reaches the resumed connection.
            queue.clear()
        finally:
            self.busy = False


class _Connection:
    """A Gemini client plus whether its frames still count (not after a handover began)."""

    __slots__ = ("client", "retired")

    def __init__(self, client: GeminiLiveClient) -> None:
        self.client = client
        self.retired = False


class CallBridge:
    """Runs one call: Twilio websocket ⇄ CallCore ⇄ Gemini websocket."""

    def __init__(self, websocket: WebSocket, *, backend: LiveBackend, setup: SetupConfig,
                 config: CallConfig, on_finish: Callable[[CallCore], Any] | None = None,
                 metrics: Metrics | None = None, first_frames: Sequence[str | bytes] = (),
                 phrases: Callable[[str], bytes | None] | None = None, gate: Any = None,
                 tools: ToolRegistry | None = None, store: CallStore | None = None,
                 reconnect: ReconnectPolicy | None = None, gemini_max_message_bytes: int = 4 * 1024 * 1024,
                 on_gemini: Callable[[Refusal | None], Any] | None = None, panel: Any = None,
                 recordings: Any = None, recording: Any = None) -> None:
        self.ws = websocket
        #: The caller's frames in and out: direct on our uvicorn protocol, else over ASGI.
        self.media = media_socket(websocket)
        self.backend = backend
        self.loop = asyncio.get_running_loop()
        self.core = CallCore(setup, config, now=self.loop.time(), metrics=metrics, phrases=phrases, gate=gate,
                             panel=panel)
        #: The core's ending part: ``ending.ended`` is ``core.ended`` without a property call (read
        #: for every caller frame).
        self._ending = self.core.ending
        self.started_at = time.time()
        #: This call's recording (recording/service.py) and the service that files it; None: not recorded.
        self.recordings = recordings
        self.recording = recording
        self.recording_meta: dict[str, Any] | None = None
        if recording is not None:
            recording.t0 = self.core.t0
            self.core.attach_recorder(recording.recorder)
        self.on_finish = on_finish
        #: Twilio frames the server already read (``connected``, ``start``) to vet the stream.
        self.first_frames = list(first_frames)
        self.tools = tools
        self.store = store
        self.reconnect = reconnect or ReconnectPolicy()
        self.gemini_max_message_bytes = gemini_max_message_bytes
        #: Told once that Gemini works for this call (None: first setupComplete) and once why it
        #: refused it (the server's circuit breaker listens).
        self.on_gemini = on_gemini
        self._told_ready = False
        self._told_refusal = False
        #: The core's next deadline and the loop handle that wakes it then.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tick_soon = False  # a tick is asked for on the loop's next iteration
        #: Done once the call is over (ended, or the caller's socket gone): run() winds up.
        self._done: asyncio.Future[None] = self.loop.create_future()
        self._started = asyncio.Event()
        self._conn: _Connection | None = None
        self._handover_task: asyncio.Task[None] | None = None
        #: A panel hand-off's retiring connection, still carrying its interviewer's last sentence.
        self._outgoing: _Connection | None = None
        self._tool_tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        core = self.core
        self._to_gemini = _Writer(core.gemini_out, closed_errors=(websockets.ConnectionClosed,))
        self._gemini_flush: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        core, loop = self.core, self.loop
        for data in self.first_frames:  # read by the server to vet the stream
            core.receive_twilio(data, loop.time())
        self.first_frames.clear()
        self._after()
        self.media.start(self._on_twilio_frame, self._on_twilio_closed)
        gemini = asyncio.create_task(self._gemini_loop(), name="gemini")
        tasks = self._tasks = [gemini]
        if self.recording is not None:
            from .recording.service import flush_every_second
            self._spawn(flush_every_second(self.recording))
        try:
            await asyncio.wait((gemini, self._done), return_when=asyncio.FIRST_COMPLETED)
            if gemini.done() and not gemini.cancelled() and gemini.exception() is not None:
                self._failed("gemini", gemini.exception())  # type: ignore[arg-type]
            # The Gemini side may be over while a last phrase (the apology) still plays: a caller
            # frame (its mark coming back) or the timer (the cap) ends the call then. Closing the
            # stream now would drop it: Twilio discards unplayed audio.
            if core.ended is None and core.closing:
                await self._done
        finally:
            self.media.stop()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            for task in [*tasks, *self._tool_tasks.values(), *self._background]:
                task.cancel()
            if self._handover_task is not None:
                self._handover_task.cancel()
            if self._gemini_flush is not None:  # a write waiting on a full buffer: the call is over
                self._gemini_flush.cancel()
            await asyncio.gather(*tasks, *self._tool_tasks.values(), return_exceptions=True)
            if core.ended is None:
                core.end("bridge-closed", self.loop.time())
            if self.recording is not None:
                self.recording_meta = self.recording.close()
            # The state first: Twilio asks <Connect action> the moment the socket closes.
            await self._save_final()
            await self._shutdown()
            if self.recording is not None and self.recordings is not None:
                self.recording_meta = await self.recordings.finish(self.recording)
            if self.on_finish is not None:
                self.on_finish(core)

    def hand_over(self, reason: str) -> None:
        """Drain (drain.py): end this stream now, the call's stored state left active (``reason``
        starts with "bridge-closed"), so Twilio's <Connect action> resumes it on another replica."""
        if self.core.ended is None:
            self.core.end(reason, self.loop.time())
        self._finish()
        for task in self._tasks:
            task.cancel()

    async def _shutdown(self) -> None:
        # Best effort: flush what is queued for the caller, then close both sockets.
        try:
            async with asyncio.timeout(2):
                self._write_twilio()
                await self.media.drain()
                await self.ws.close()
        except Exception:  # the caller may already be gone
            pass
        conn = self._conn
        if conn is not None:
            try:
                async with asyncio.timeout(2):
                    self._to_gemini.write_now()  # the caller's last partial chunk (Link.flush_caller_audio)
                    await conn.client.close()
            except Exception:
                pass

    async def _save_final(self) -> None:
        core, store = self.core, self.store
        if store is None or core.call_sid is None:
            return
        try:
            async with asyncio.timeout(3):
                record = core.record()
                record["started_at"] = round(self.started_at, 3)
                if self.recording_meta is not None:
                    record["recording"] = self.recording_meta
                await store.save_record(core.call_sid, record)
                if core.refusal is not None:
                    # Refused (whatever closed the stream after that): no new stream for this call,
                    # on any replica; <Say> the apology there if the caller did not hear it here.
                    await store.set_call_state(core.call_sid, call_state.ended(
                        f"gemini-refused:{core.refusal.kind.value}", say_goodbye=core.goodbye_unheard))
                elif core.ended and not core.ended.startswith(("bridge-closed", "internal-error",
                                                                "twilio-disconnected")):
                    # Ended on purpose: Twilio's <Connect action> request gets <Hangup/>.
                    await store.set_call_state(core.call_sid, call_state.ended(
                        core.ended, say_goodbye=core.goodbye_unheard))
        except Exception as exc:
            log_event(logger, "call.store_failed", logging.ERROR, call_sid=core.call_sid, error=repr(exc)[:200])

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _finish(self) -> None:
        if not self._done.done():
            self._done.set_result(None)

    def _failed(self, where: str, exc: BaseException) -> None:
        """A bug in our code while handling input: the call ends cleanly (closing audio, record)."""
        core = self.core
        log_event(logger, "call.task_failed", logging.ERROR, call_sid=core.call_sid, task=where,
                  error=repr(exc)[:300])
        if core.ended is None:
            core.end(f"internal-error:{where}", self.loop.time())
        self._finish()

    async def _after_input(self, tick: bool = True) -> None:
        """After input from a task (Gemini, a tool, a handover): as :meth:`_after`, and the
        Gemini outbox written before returning."""
        if self.core.gemini_out and not self._to_gemini.write_now():
            await self._to_gemini.flush()
        self._after(tick)

    def _after(self, tick: bool = True, schedule: bool = True) -> None:
        """Write what the core queued, start/cancel tools, persist a new handle, move the timer.

        ``tick``: the core ticks on the loop's next iteration, whatever its deadline (after input
        from Gemini, a tool or a handover, as state may have changed that no deadline shows).
        Caller frames do not ask for it: 50 a second, and their effects have deadlines; nor does
        a Gemini frame of the model's audio (``core.tick_wanted``): the core pumped it already.
        ``schedule``: look at the core's next deadline; a caller frame that brought no deadline
        sooner (``core.deadline_sooner``) leaves the timer as it is."""
        core = self.core
        if core.twilio_out:
            self._write_twilio()
        if core.gemini_out:
            self._kick_gemini()
        if core.tool_requests or core.tool_cancellations:
            self._dispatch_tools()
        if core.new_handle is not None:
            handle, core.new_handle = core.new_handle, None
            if self.store is not None and core.call_sid is not None:
                self._spawn(self.store.set_resumption_handle(core.call_sid, handle, seat=core.seat))
        if self._outgoing is not None and not core.outgoing_open:
            self._spawn(self._outgoing.client.close())
            self._outgoing = None
        if not self._started.is_set() and core.call_sid is not None:
            self._started.set()
            if self.store is not None:
                self._spawn(self.store.set_call_state(core.call_sid, call_state.ACTIVE))
        if self._ending.ended is not None:
            self._finish()
        else:
            if tick and not self._tick_soon:
                self._tick_soon = True
                self.loop.call_soon(self._on_tick_soon)
            if schedule:
                self._schedule()

    def _kick_gemini(self) -> None:
        """Write the Gemini outbox now; what cannot go yet (a full buffer) goes from a task."""
        if self._to_gemini.write_now():
            return
        task = self._gemini_flush
        if task is None or task.done():
            self._gemini_flush = self.loop.create_task(self._to_gemini.flush())

    # -- Twilio --------------------------------------------------------------------------------

    def _on_twilio_frame(self, data: str | bytes) -> None:
        """One frame from the caller's socket, inside its ``data_received``."""
        if self._ending.ended is not None:
            return
        core = self.core
        try:
            core.receive_twilio(data, self.loop.time())
            self._after(False, core.deadline_sooner)
        except Exception as exc:
            self._failed("twilio", exc)

    def _on_twilio_closed(self) -> None:
        self.core.receive_twilio_closed(self.loop.time())
        self._finish()

    def _write_twilio(self) -> None:
        """Write what the core queued for the caller, in order; a ``clear`` among it is timed."""
        core = self.core
        out = core.twilio_out
        clear = core.clear_message
        cleared = clear is not None and clear in out
        if not self.media.write(out):  # the socket is gone
            self._on_twilio_closed()
        elif cleared:
            core.clear_written(self.loop.time())

    # -- Gemini --------------------------------------------------------------------------------

    async def _open(self, setup_message: str) -> GeminiLiveClient:
        return await GeminiLiveClient.connect(await self.backend.endpoint(), setup_message,  # fresh credentials
                                              max_message_bytes=self.gemini_max_message_bytes)

    async def _gemini_loop(self) -> None:
        core, loop = self.core, self.loop
        # The CallSid (from `start`) tells us whether this call resumes a session another
        # replica (or an earlier stream) began.
        try:
            async with asyncio.timeout(core.config.no_media_timeout_s):
                await self._started.wait()
        except TimeoutError:
            return
        if self.store is not None and core.call_sid is not None and core.session.handle is None:
            try:
                handle, seat = await self.store.get_resumption(core.call_sid)
            except Exception as exc:
                handle = seat = None
                log_event(logger, "call.store_failed", logging.ERROR, call_sid=core.call_sid, error=repr(exc)[:200])
            if handle:
                core.resume_stored_session(handle, loop.time(), seat=seat)
        while core.ended is None:
            setup_message = core.gemini_connected(loop.time())
            try:
                client = await self._open(setup_message)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"[:200]
                close = closed_during_setup(exc)  # e.g. 1008 model not found, 1007 bad key
                refused = upgrade_refused(exc)  # e.g. HTTP 403, 429
                if isinstance(exc, BackendAuthError):  # no ADC, a bad key file, a refused token
                    retry = core.gemini_connect_failed(reason, loop.time(),
                                                       refusal=credentials_refused(exc.kind, str(exc)))
                elif close is not None:
                    retry = core.gemini_closed(close[0], close[1] or reason, loop.time())
                elif refused is not None:
                    retry = core.gemini_connect_failed(reason, loop.time(), status=refused[0], body=refused[1])
                else:
                    retry = core.gemini_connect_failed(reason, loop.time())
                self._tell_refusal()
                await self._after_input()
                if not retry or not await self._backoff():
                    return
                continue
            self.reconnect.connected(loop.time())
            conn = self._conn = _Connection(client)
            self._to_gemini.bind(client)
            core.receive_gemini(client.setup_complete_frame, loop.time())
            if not self._told_ready and self.on_gemini is not None:
                self._told_ready = True
                self.on_gemini(None)
            await self._after_input()
            # Read until this connection ends; a goAway handover may replace it meanwhile.
            while True:
                await self._read(conn)
                if self._handover_task is not None and not self._handover_task.done():
                    await asyncio.wait([self._handover_task])
                if self._conn is conn or core.ended is not None:
                    break
                conn = self._conn  # type: ignore[assignment]
            if core.ended is not None:
                return
            client = conn.client
            if not core.gemini_closed(client.close_code, client.close_reason, loop.time()):
                self._tell_refusal()
                await self._after_input()
                return
            await self._after_input()
            if not await self._backoff():
                return

    async def _backoff(self) -> bool:
        core, loop = self.core, self.loop
        delay = self.reconnect.next_delay(loop.time())
        if delay is None:
            core.gemini_gave_up(loop.time())
            self._tell_refusal()
            await self._after_input()
            return False
        await asyncio.sleep(delay)
        return core.ended is None

    def _tell_refusal(self) -> None:
        refusal = self.core.refusal
        if refusal is not None and not self._told_refusal and self.on_gemini is not None:
            self._told_refusal = True
            self.on_gemini(refusal)

    async def _read(self, conn: _Connection) -> None:
        """Read ``conn`` until it closes. Its frames go to the core inside the socket's
        ``data_received`` (direct mode, :meth:`_direct_reader`) while that is possible; this
        task takes the rest: frames queued before, and all from a handover's retired connection."""
        core, loop = self.core, self.loop
        client = conn.client
        recv = client.recv
        on_frame = self._direct_reader(conn)
        while True:
            if not conn.retired:
                client.go_direct(on_frame)  # once recv() has taken what was queued; sticky off
            frame = await recv()
            if frame is None:
                break
            if conn.retired:
                if conn is self._outgoing:  # a hand-off: the outgoing interviewer's last sentence
                    core.receive_outgoing(frame, loop.time())
                    await self._after_input()
                    if self._conn is not conn:  # the next session is up: read it, drain this aside
                        self._spawn(self._drain_outgoing(conn))
                        return
                continue  # a handover began: the next connection speaks for the session now
            on_frame(frame)  # as a frame in direct mode
            if core.ended is not None:
                return

    def _direct_reader(self, conn: _Connection) -> Callable[[bytes | str], bool]:
        """What is done with each frame of ``conn`` while it speaks for the session, in direct
        mode and from :meth:`_read` alike: to the core, then what it queued written (what cannot
        go to Gemini yet goes from a task, :meth:`_kick_gemini`). A retired connection's frames
        are declined: the reading task takes them, in order."""
        core, loop, ending = self.core, self.loop, self._ending

        def on_frame(frame: bytes | str) -> bool:
            if conn.retired:
                return False
            if ending.ended is not None:
                return True  # the call is over: nothing more from Gemini counts
            try:
                core.receive_gemini(frame, loop.time())
                self._after(core.tick_wanted)  # the model's audio needs no tick of its own
                if ending.ended is None and core.handover_wanted(loop.time()):
                    self._start_handover()
            except Exception as exc:
                self._failed("gemini", exc)
            return True

        return on_frame

    async def _drain_outgoing(self, conn: _Connection) -> None:
        """A hand-off's retiring connection, read beside the next one until its sentence ends."""
        recv = conn.client.recv
        while (frame := await recv()) is not None:
            if conn is not self._outgoing:
                return
            self.core.receive_outgoing(frame, self.loop.time())
            await self._after_input()

    def _start_handover(self) -> None:
        old = self._conn
        if old is None or (self._handover_task is not None and not self._handover_task.done()):
            return
        # Synchronously: from here the old connection's frames no longer count, caller audio
        # is kept for the next connection, and the core stops asking for a handover.
        old.retired = True
        setup_message = self.core.begin_handover(self.loop.time())
        if self.core.outgoing_open:
            self._outgoing = old
        self._handover_task = asyncio.create_task(self._handover(old, setup_message), name="handover")

    async def _handover(self, old: _Connection, setup_message: str) -> None:
        """goAway: open the next connection with the newest handle, then switch to it."""
        core, loop = self.core, self.loop
        try:
            client = await self._open(setup_message)
        except Exception as exc:
            old.retired = False
            self._outgoing = None
            core.handover_failed(f"{type(exc).__name__}: {exc}", loop.time())
            await self._after_input()
            return
        new = _Connection(client)
        self._conn = new
        self._to_gemini.bind(client)
        self.reconnect.connected(loop.time())
        core.receive_gemini(client.setup_complete_frame, loop.time())
        await self._after_input()
        if self._outgoing is not old:  # a hand-off's old connection closes after its last sentence
            self._spawn(old.client.close())
        log_event(logger, "call.handover", call_sid=core.call_sid)

    # -- tools ---------------------------------------------------------------------------------

    def _dispatch_tools(self) -> None:
        core = self.core
        while core.tool_cancellations:
            task = self._tool_tasks.pop(core.tool_cancellations.popleft(), None)
            if task is not None:
                task.cancel()
        while core.tool_requests:
            call = core.tool_requests.popleft()
            self._tool_tasks[call.id] = asyncio.create_task(self._run_tool(call), name=f"tool:{call.name}")

    async def _run_tool(self, call: Any) -> None:
        from .tools import ToolContext, run_tool, unknown_tool

        core, loop = self.core, self.loop
        tool = self.tools.get(call.name) if self.tools is not None else None
        try:
            if tool is None:
                response: dict[str, Any] = unknown_tool(call.name)
                scheduling = None
            else:
                ctx = ToolContext(
                    call_sid=core.call_sid or "",
                    notes=core.notes,
                    store=self.store,
                    request_end_call=lambda reason: core.request_end_call(reason, loop.time()),
                    clock=lambda: round(loop.time() - core.t0, 3),  # notes on the transcript's clock
                )
                response = await run_tool(tool, dict(call.args), ctx)
                scheduling = tool.response_scheduling
        finally:
            self._tool_tasks.pop(call.id, None)
        core.tool_finished(call.id, response, loop.time(), scheduling=scheduling)
        await self._after_input()

    # -- timer ---------------------------------------------------------------------------------

    def _schedule(self, deadline: float | None = None) -> None:
        """Keep one loop handle at or before the core's next deadline (a deadline in the past runs
        on the loop's next iteration: never a busy loop that starves the sockets).

        Only an earlier deadline moves the handle: most input pushes the deadline later (each
        caller frame moves the no-media timeout), and a handle that fires early costs one tick
        that finds nothing due, where moving it would cost two timer operations per frame."""
        if deadline is None:
            deadline = self.core.next_deadline()
        at = self._timer_at
        if deadline is None or (at is not None and at <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = None if deadline is None else self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        if self._ending.ended is not None:
            return
        deadline = self.core.next_deadline()
        now = due_now(deadline, self.loop.time())
        if now is None:  # the deadline moved later
            self._schedule(deadline)
            return
        self._tick(now)

    def _on_tick_soon(self) -> None:
        self._tick_soon = False
        if self._ending.ended is None:
            self._tick()

    def _tick(self, now: float | None = None) -> None:
        """Tick the core at ``now`` (default: the loop's clock)."""
        core = self.core
        try:
            if now is None:
                now = self.loop.time()
            core.tick(now)
            if core.handover_wanted(now):
                self._start_handover()
            self._after(tick=False)  # also closes a hand-off's retiring connection once its sentence is over
        except Exception as exc:
            self._failed("timer", exc)
