"""Tool dispatch, the call's side: which function calls run, which were cancelled, when filler is due.

Gemini's ``toolCall`` never runs anything here: each new call becomes a request in
:attr:`ToolDispatch.requests` that the adapter runs as a task (``ToolRegistry``/``run_tool``) and
answers through :meth:`finished`; a ``toolCallCancellation`` puts the id in
:attr:`cancellations` for the adapter to cancel, and its later result is dropped. A repeated id
is counted and ignored; a call to a tool the persona did not enable is answered at once with an
error the model can talk about (it must never wait).

Filler: while calls run, :meth:`filler_due` says when a short phrase should cover the silence:
``filler_after_s`` after the first call, then every ``filler_repeat_s``, at most ``filler_max``
times per wait, and only when the line is really silent. A blocking call (``blocking_tools``:
effective behaviour on this model) leaves the model mute until its answer, so filler plays when
nothing is audible; during an asynchronous call the model keeps talking, so filler plays only
when it says nothing either (and never on a model that speaks its own fillers).

Answers: ``scheduling`` (INTERRUPT / WHEN_IDLE / SILENT) is sent only for an asynchronous call on
a model that honours it; an unknown tool gets the informative error answer at once.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from ..gemini import messages as gm
from ..gemini.profiles import ModelProfile
from ..log import log_event
from ..tools import unknown_tool
from .config import FRAME_S, CallConfig
from .timeline import Timeline

logger = logging.getLogger("telephony_bridge.call")


class ToolDispatch:
    def __init__(self, config: CallConfig, timeline: Timeline, counters: dict[str, int],
                 profile: ModelProfile | None = None) -> None:
        self.config = config
        self.profile = profile
        self.timeline = timeline
        self.counters = counters
        self.call_sid: str | None = None
        #: Calls for the adapter to run, and ids for it to cancel.
        self.requests: deque[gm.FunctionCall] = deque()
        self.cancellations: deque[str] = deque()
        #: What the tools recorded (``save_note``) and every call with its duration.
        self.notes: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []
        self._running: dict[str, tuple[gm.FunctionCall, float]] = {}
        self._blocking: set[str] = set()  # ids of the running calls that block the model
        self._seen: set[str] = set()
        self._filler_next: float | None = None
        self._fillers_this_wait = 0

    @property
    def running(self) -> bool:
        return bool(self._running)

    @property
    def blocking_running(self) -> bool:
        """A call the model waits for (it says nothing until the answer) is running."""
        return bool(self._blocking)

    def blocks(self, name: str) -> bool:
        """Calls of this tool block the model on this profile."""
        names = self.config.blocking_tools
        return names is None or name in names

    @property
    def seen(self) -> int:
        """How many distinct call ids the model has sent (repeats not counted)."""
        return len(self._seen)

    def called(self, event: gm.ToolCall, now: float) -> list[dict[str, Any]]:
        """A ``toolCall``: queue the new calls; returns the error answers to send at once."""
        errors = []
        known = self.config.tool_names or frozenset()
        for call in event.calls:
            if call.id in self._seen:
                self.counters["repeated_tool_calls"] += 1
                self.timeline.add(now, "tool_call_repeated", id=call.id, name=call.name)
                continue
            self._seen.add(call.id)
            self.timeline.add(now, "tool_call", id=call.id, name=call.name)
            if call.name not in known:
                errors.append({"id": call.id, "name": call.name, "response": unknown_tool(call.name)})
                continue
            if not self._running:
                self._filler_next = now + self.config.filler_after_s
                self._fillers_this_wait = 0
            self._running[call.id] = (call, now)
            if self.blocks(call.name):
                self._blocking.add(call.id)
            self.requests.append(call)
        return errors

    def finished(self, call_id: str, response: dict[str, Any], now: float,
                 scheduling: str | None = None) -> dict[str, Any] | None:
        """The adapter's task returned: the ``functionResponses`` entry to send, or None when
        the call was cancelled meanwhile (the model no longer wants it)."""
        entry = self._running.pop(call_id, None)
        if entry is None:
            return None
        call, started = entry
        blocking = call_id in self._blocking
        self._blocking.discard(call_id)
        ok = "error" not in response
        duration_ms = round((now - started) * 1000, 1)
        self.log.append({"id": call_id, "name": call.name, "args": call.args, "t": self.timeline.t(started),
                         "duration_ms": duration_ms, "ok": ok})
        self.timeline.add(now, "tool_result", id=call_id, name=call.name, duration_ms=duration_ms, ok=ok)
        log_event(logger, "call.tool", call_sid=self.call_sid, tool=call.name, duration_ms=duration_ms, ok=ok)
        reply: dict[str, Any] = {"id": call_id, "name": call.name, "response": response}
        # Scheduling applies to asynchronous calls only, on models that honour it (not 3.1).
        if scheduling and not (blocking and self.config.blocking_tools is not None) \
                and (self.profile is None or self.profile.scheduling):
            reply["scheduling"] = scheduling
        if not self._running:
            self._filler_next = None
        return reply

    def cancelled(self, ids: tuple[str, ...], now: float) -> None:
        """A ``toolCallCancellation``: the adapter cancels the tasks; their results are dropped."""
        for call_id in ids:
            entry = self._running.pop(call_id, None)
            self._blocking.discard(call_id)
            if entry is not None:
                self.cancellations.append(call_id)
                self.log.append({"id": call_id, "name": entry[0].name, "args": entry[0].args,
                                 "t": self.timeline.t(entry[1]), "duration_ms": round((now - entry[1]) * 1000, 1),
                                 "ok": False, "cancelled": True})
            self.timeline.add(now, "tool_call_cancelled", id=call_id)
        if not self._running:
            self._filler_next = None

    # -- filler --------------------------------------------------------------------------------

    def filler_due(self, now: float, audible: bool, model_speaking: bool = False) -> bool:
        """Called on every tick: True when a filler phrase should start now (the caller plays it
        and reports back with :meth:`filler_played`). ``model_speaking``: a model turn is open
        (an asynchronous call's model goes on talking: no filler over it)."""
        due = self._filler_next
        if due is None or now < due:
            return False
        cfg = self.config
        if self._blocking:
            silent = not audible
        elif self.profile is not None and self.profile.speaks_fillers:
            silent = False
        else:
            silent = not audible and not model_speaking
        if self._running and silent and self._fillers_this_wait < cfg.filler_max:
            self._filler_next = now + cfg.filler_repeat_s
            return True
        if self._running:
            self._filler_next = now + FRAME_S * 5
        else:
            self._filler_next = None
        return False

    def filler_played(self) -> None:
        self.counters["fillers"] += 1
        self._fillers_this_wait += 1

    def deadline(self) -> float | None:
        return self._filler_next
