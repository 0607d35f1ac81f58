"""The simulator itself (:class:`CallerSimulator`): one call's state, its events, its result.

It composes the parts, each a mixin sharing the state set up in ``_reset``:
:class:`~.webhook._Webhook` (the webhook and TwiML), :class:`~.stream._MediaStream` (Media
Streams websockets), :class:`~.playback._Playback` (the 20 ms clock and the playback buffer) and
:class:`~.script._ScriptRunner` (the caller's script). :meth:`CallerSimulator.run` places the
call and returns a :class:`~.result.CallResult`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from twilio.request_validator import RequestValidator

from .echo import EchoPath, _Echo
from .playback import _Playback
from .result import CallResult
from .script import CallerScript, _ScriptRunner, _Utterance
from .stream import _MediaStream, _sid, _Stream
from .webhook import _Webhook


class CallerSimulator(_Webhook, _MediaStream, _Playback, _ScriptRunner):
    """Places one call against the bridge and plays the caller's part (see the package docstring).

    ``twiml_url`` is the URL Twilio is configured with (it is what the webhook signature
    covers); ``url_rewrite`` maps it, and every URL from TwiML, to where requests really go.
    ``timeout`` bounds the whole call: when it fires, the caller hangs up (``stop``) and the
    result says ``ended_by="timeout"``. ``on_event`` is called with every event as it happens.
    ``echo``: an :class:`EchoPath`; what the caller hears comes back in what it sends.
    """

    def __init__(
        self,
        twiml_url: str,
        script: CallerScript,
        *,
        auth_token: str | None = None,
        url_rewrite: Callable[[str], str] | None = None,
        from_: str = "+15551230000",
        to: str = "+15557654321",
        timeout: float = 120.0,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        echo: EchoPath | None = None,
    ) -> None:
        self.twiml_url = twiml_url
        self.script = script
        self.auth_token = auth_token
        self.url_rewrite = url_rewrite or (lambda url: url)
        self.from_ = from_
        self.to = to
        self.timeout = timeout
        self.on_event = on_event
        #: Echo of what the caller hears mixed into what it sends (None: a perfect headset).
        self.echo = echo
        self._validator = RequestValidator(auth_token) if auth_token else None
        #: Known before :meth:`run` (a bridge test may want to look the call up by it).
        self.call_sid = _sid("CA")
        self.account_sid = _sid("AC")
        self._ran = False

    # ------------------------------------------------------------------ state

    def _reset(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._ran:  # each run is a new call
            self.call_sid = _sid("CA")
        self._ran = True
        self._origin: float | None = None
        self._unplaced: list[tuple[dict[str, Any], float]] = []
        self._events: list[dict[str, Any]] = []
        self._sent = bytearray()
        self._voice = bytearray()
        self._heard = bytearray()
        self._playback: list[list[float]] = []
        self._echo = _Echo(self.echo) if self.echo is not None else None
        self._sizes: Counter[int] = Counter()
        self._media_received: list[tuple[float, int]] = []
        self._twiml: list[str] = []
        self._stream_sids: list[str] = []
        self._streams: list[dict[str, Any]] = []
        self._errors: list[str] = []
        self._marks_returned = 0
        self._clears = 0
        self._stream: _Stream | None = None
        self._stream_up = asyncio.Event()
        self._hangup = asyncio.Event()
        self._changed = asyncio.Event()
        self._script_task: asyncio.Task[None] | None = None
        self._utterance: _Utterance | None = None
        # Agent-side observations (loop times).
        self._agent_playing = False
        self._last_media_rx = float("-inf")
        self._last_play_end = float("-inf")  # loop time at which the last played audio ends
        self._last_play_end_t = 0.0  # same, on the call clock
        # "The agent has taken a turn since the reference point" (caller's last words,
        # stream start, or a clear: interrupted speech is not an answer).
        self._agent_spoke = False
        self._agent_spoke_at = 0.0

    def _now_t(self) -> float | None:
        if self._origin is None:
            return None
        return round(self._loop.time() - self._origin, 4)

    def _emit(self, kind: str, t: float | None = None, **details: Any) -> dict[str, Any]:
        event = {"t": self._now_t() if t is None else round(t, 4), "kind": kind, "details": details}
        if event["t"] is None:
            self._unplaced.append((event, self._loop.time()))
        self._events.append(event)
        if self.on_event is not None:
            self.on_event(event)
        return event

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = self._loop.time() + timeout
        while not predicate():
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return predicate()
        return True

    def _protocol_error(self, message: str) -> None:
        self._errors.append(message)
        self._emit("protocol_error", message=message)

    # ------------------------------------------------------------------ call

    async def run(self) -> CallResult:
        """Place the call, play the script, and return what happened."""
        self._reset()
        ended_by = "bridge"
        timeout_cm = asyncio.timeout(self.timeout)
        try:
            async with timeout_cm:
                ended_by = await self._call()
        except TimeoutError:
            if not timeout_cm.expired():
                raise
            ended_by = "timeout"
            self._emit("timeout", seconds=self.timeout)
        finally:
            script = self._script_task
            if script is not None:
                if not script.done():
                    script.cancel()
                try:
                    await script
                except asyncio.CancelledError:
                    if not script.cancelled():
                        raise
        self._emit("call_end", ended_by=ended_by)
        self._events.sort(key=lambda e: e["t"] if e["t"] is not None else float("-inf"))
        return CallResult(
            call_sid=self.call_sid,
            stream_sids=list(self._stream_sids),
            sent_ulaw=bytes(self._sent),
            heard_ulaw=bytes(self._heard),
            events=self._events,
            marks_returned=self._marks_returned,
            clears=self._clears,
            media_sizes_seen=Counter(self._sizes),
            twiml=list(self._twiml),
            ended_by=ended_by,
            streams=self._streams,
            protocol_errors=list(self._errors),
            media_received=list(self._media_received),
            voice_ulaw=bytes(self._voice),
            origin=self._origin,
            playback=[(round(a, 4), round(b, 4)) for a, b in self._playback],
        )
