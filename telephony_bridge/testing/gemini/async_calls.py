"""Non-blocking tool calls: the model keeps going, and speaks the answer as its scheduling says.

On the models where a call is non-blocking (3.8 and 3.8 extended thinking by default, 2.5 when
the tool declares ``behavior: NON_BLOCKING``: :func:`.models.behavior_of`), the reply that makes
the call sends ``toolCall`` and goes on at once (``ToolCallStep.while_running``: a short line,
the next reply, or nothing). The call stays open here until its ``toolResponse``; then its
``scheduling`` (:func:`.models.scheduling_of`; ``WHEN_IDLE`` when absent) decides what the model
does with it (Google's docs, "Tool use with Live API"; the 2.5 → 3.8 migration guide):

* ``SILENT``: nothing is said; the answer only joins the conversation.
* ``WHEN_IDLE``: ``ToolCallStep.then_clip`` is spoken once the model is idle: after the reply in
  progress, and not while the caller speaks.
* ``INTERRUPT``: the reply in progress stops (``serverContent.interrupted``, as for a barge-in) and
  the answer is spoken now; while the *caller* speaks it waits for them to finish and then goes
  before the answer to their turn (``interrupt_waits_for_user``, 3.8), or plays over them (2.5).

A model that speaks its own fillers (``speaks_fillers``, 3.8 extended thinking) says
``Scenario.model_filler`` once per call still running after the line has been quiet for
``Scenario.model_filler_after_ms``. ``ToolCallStep.cancel_after_s`` cancels a non-blocking call
too (``toolCallCancellation``; a later answer is ignored). Held answers live in ``self.held``;
:meth:`_AsyncCalls._idle_check` runs whenever a reply ends and sends the next one that may go.
:class:`_AsyncCalls` is a mixin of :class:`~.connection._Connection`, whose state it uses.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from .records import ReplyRecord
from .scenario import Plan, ToolCallStep

logger = logging.getLogger("telephony_bridge.emulator")

#: How often a filler timer looks at the line (the emulator's own clock, not the client's).
_FILLER_POLL_S = 0.05


@dataclass(slots=True)
class _PendingAsync:
    id: str
    name: str
    step: ToolCallStep
    started: float


@dataclass(slots=True)
class _HeldResult:
    """An answer waiting to be spoken; ``urgent``: INTERRUPT waiting for the caller to finish."""

    call_id: str
    plan: Plan
    urgent: bool


class _AsyncCalls:
    """Non-blocking calls and their answers (a mixin of :class:`~.connection._Connection`)."""

    async def _call_async(self, step: ToolCallStep, rec: ReplyRecord) -> None:
        call = self._new_call(step, rec)
        self.async_calls[call["id"]] = _PendingAsync(call["id"], step.name, step, self.loop.time())
        await self.send({"toolCall": {"functionCalls": [call]}})
        if step.cancel_after_s is not None:
            self.spawn(self._cancel_async_after(call["id"], step.cancel_after_s))
        if self.profile.speaks_fillers and self.sc.model_filler:
            self.spawn(self._model_filler(call["id"]))

    async def _cancel_async_after(self, call_id: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self.async_calls.pop(call_id, None) is None or self.closing:
            return
        self.session.tool_cancellations.append(call_id)
        self.session.record(self.loop.time(), "toolCallCancellation", call_id)
        await self._send_quietly({"toolCallCancellation": {"ids": [call_id]}})

    async def _model_filler(self, call_id: str) -> None:
        after = self.sc.model_filler_after_ms / 1000.0
        quiet_since: float | None = None
        while call_id in self.async_calls and not self.closing:
            now = self.loop.time()
            if self._model_idle() and not self._caller_speaking():
                quiet_since = now if quiet_since is None else quiet_since
                if now - quiet_since >= after:
                    logger.info("session %d: the model fills while %s runs", self.session.index, call_id)
                    self._start_reply(("filler", self.sc.model_filler, None))
                    return
            else:
                quiet_since = None
            await asyncio.sleep(_FILLER_POLL_S)

    # -- answers

    async def _async_result(self, call: _PendingAsync, resp: dict[str, Any], scheduling: str | None) -> None:
        s, conv = self.session, self.conv
        assert conv is not None
        conv.history.append(("tool", json.dumps(resp.get("response"), default=str)[:200]))
        s.async_results.append({"id": call.id, "name": call.name, "scheduling": scheduling,
                                "at": round(self.now(), 3)})
        how = scheduling or "WHEN_IDLE"
        logger.info("session %d: answer to %s (%s)", s.index, call.id, how)
        if how == "SILENT":
            return
        plan: Plan = ("result", call.step.then_clip, None)
        if how == "INTERRUPT" and self.pending_tool is None:
            if self._caller_speaking() and self.profile.interrupt_waits_for_user:
                self.held.append(_HeldResult(call.id, plan, urgent=True))
                return
            if self.reply_sent_anything:
                await self._interrupt("tool answer")
            self._start_reply(plan)  # now (after a reply still thinking, or over the caller on 2.5)
            return
        self.held.append(_HeldResult(call.id, plan, urgent=False))
        self._idle_check()

    def _deliver_urgent(self) -> None:
        """The caller finished: INTERRUPT answers held for them go first."""
        urgent = [h for h in self.held if h.urgent]
        if not urgent:
            return
        self.held = [h for h in self.held if not h.urgent]
        for h in urgent:
            self._start_reply(h.plan)

    def _idle_check(self) -> None:
        """Speak the next held answer if the model is idle and nobody speaks."""
        if self.closing or not self.held or not self._model_idle() or self._caller_speaking():
            return
        held = self.held.pop(0)
        self._start_reply(held.plan)

    def _model_idle(self) -> bool:
        return self.reply_task is None or self.reply_task.done()

    def _caller_speaking(self) -> bool:
        return self.turn_open is not None or self.manual_turn is not None

    # -- what new input does to a blocking call, per model

    def _sync_wait(self) -> bool:
        """A blocking call runs on a model that has no asynchronous calls (3.1): it waits for
        the answer whatever the caller does ("will not start responding until you've sent the
        tool response")."""
        return self.pending_tool is not None and not self.profile.async_calls

    def _input_cancels_call(self) -> bool:
        """A blocking call runs on a model that cancels it on any new input (3.8)."""
        return self.pending_tool is not None and self.profile.blocking_cancelled_on_input
