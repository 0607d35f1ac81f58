"""The model's side of a connection: replies, blocking tool calls, interruptions, handles.

When a caller turn ends the "model" answers with real recorded speech (:mod:`.clips`): after
the scenario's think time, 24 kHz PCM16 in ``serverContent.modelTurn.parts[].inlineData``
chunks, paced against ``loop.time()`` (``Scenario.pace``, with ``burst_ms`` sent ahead), with
``outputTranscription`` pieces, then ``generationComplete`` and ``turnComplete`` (carrying
``usageMetadata``), then ``sessionResumptionUpdate`` when the setup asked for resumption. The
transcription rides in the same ``serverContent`` as the audio chunk it belongs to on the models
that send several parts per message (3.x, ``multi_part_server_content``), in messages of its own
on 2.5. A scripted tool step sends ``toolCall`` first; a blocking call then waits for the
matching ``toolResponse`` (a non-blocking one goes on at once: :mod:`.async_calls`).
Barge-in: like the service, the emulator only knows what it has *sent*; interrupting a reply
sends ``serverContent.interrupted`` only if some of it went out, and cancels a pending tool call
with ``toolCallCancellation`` (a later answer to it is ignored). Faults tied to a reply fire from
the chunk loop here; a scripted silent stall is asked for once the think time is over.
:class:`_Replies` is a mixin of :class:`~.connection._Connection`, whose state it uses.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import secrets
from typing import Any

from websockets.exceptions import ConnectionClosed

from ...gemini.profiles import NON_BLOCKING
from . import models
from .clips import Clip
from .faults import STALL_KINDS
from .records import ReplyRecord
from .scenario import Plan, ToolCallStep
from .wire import AUDIO_TOKENS_PER_SECOND, OUTPUT_MIME, OUTPUT_RATE, BadRequest

logger = logging.getLogger("telephony_bridge.emulator")


def _split_words(text: str, pieces: int) -> list[str]:
    """Split ``text`` into about ``pieces`` fragments that concatenate back to it."""
    words = text.split()
    if not words:
        return []
    n = max(1, min(pieces, len(words)))
    bounds = [round(i * len(words) / n) for i in range(n + 1)]
    out = []
    for i in range(n):
        chunk = " ".join(words[bounds[i] : bounds[i + 1]])
        out.append(chunk if i == 0 else " " + chunk)
    return out


class _Replies:
    """Model turns (a mixin of :class:`~.connection._Connection`)."""

    async def _on_tool_response(self, tr: Any) -> None:
        if not isinstance(tr, dict):
            raise BadRequest("Invalid value at 'tool_response': expected an object.")
        responses = tr.get("functionResponses") or []
        if isinstance(responses, dict):
            responses = [responses]
        if not isinstance(responses, list):
            raise BadRequest("Invalid value at 'function_responses': expected a list.")
        for resp in responses:
            if not isinstance(resp, dict):
                raise BadRequest("Invalid value at 'function_responses': expected an object.")
            scheduling = models.scheduling_of(self.profile, resp)  # checks the value too
            rid = resp.get("id")
            self.session.tool_responses.append(resp)
            self.session.record(self.loop.time(), "toolResponse", rid)
            logger.info("session %d: toolResponse %s %s", self.session.index, rid, resp.get("name"))
            if self.pending_tool and rid == self.pending_tool[0]:
                fut = self.pending_tool[1]
                if not fut.done():
                    fut.set_result(resp)
            elif rid in self.async_calls:
                await self._async_result(self.async_calls.pop(rid), resp, scheduling)
            else:  # a cancelled call's late answer, or an id never issued: the model ignores it
                self.session.ignored_tool_responses.append(str(rid))
                self.session.record(self.loop.time(), "toolResponseIgnored", rid)

    # -- replies

    def _plan_after_caller_turn(self, n: int) -> Plan:
        assert self.conv is not None
        return self.sc.plan_after_caller_turn(n, self.conv.tool_steps_done)

    def _start_reply(self, plan: Plan) -> None:
        previous = self.reply_task if self.reply_task and not self.reply_task.done() else None
        self.reply_task = self.loop.create_task(self._reply(plan, previous))

    async def _interrupt(self, why: str) -> bool:
        """Stop the reply in progress. Sends ``interrupted`` if any of it was sent."""
        task = self.reply_task
        if task is None or task.done():
            return False
        rec, sent = self.reply, self.reply_sent_anything
        pending = self.pending_tool
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self.reply_task = None
        if pending is not None:
            self.session.tool_cancellations.append(pending[0])
            await self.send({"toolCallCancellation": {"ids": [pending[0]]}})
            self.session.record(self.loop.time(), "toolCallCancellation", pending[0])
        if rec is None or not sent:
            return pending is not None
        rec.interrupted = True
        rec.done_at = self.now()
        self.session.interruptions += 1
        self.session.record(self.loop.time(), "interrupted", rec.clip)
        logger.info("session %d: interrupted reply %s (%s)", self.session.index, rec.clip, why)
        await self.send({"serverContent": {"interrupted": True}})
        self._handle_update()
        return True

    async def _reply(
        self,
        plan: Plan,
        previous: asyncio.Task[None] | None,
    ) -> None:
        kind, clip_id, step = plan
        if previous is not None:  # NO_INTERRUPTION, or a tool's answer queued behind a reply
            await asyncio.gather(previous, return_exceptions=True)
        s, conv = self.session, self.conv
        assert conv is not None
        rec = ReplyRecord(kind=kind, triggered_at=self.now())  # type: ignore[arg-type]
        self.reply, self.reply_sent_anything = rec, False
        number = len(s.replies)
        cancelled = False
        try:
            await asyncio.sleep(self.sc.think_seconds(number))
            if kind not in ("result", "filler") and await self._stall():
                return
            if step is not None:
                if models.behavior_of(self.profile, self.behaviors, step.name) == NON_BLOCKING:
                    await self._call_async(step, rec)
                    if step.while_running == "":
                        await self._end_turn_quietly(rec)
                        return
                    clip_id = step.while_running  # the model keeps going while the tool runs
                elif not await self._call_tool(step, rec):
                    return
            if clip_id is None:
                clip_id = self.sc.reply_clip(conv.replies_given)
                conv.replies_given += 1
                if clip_id is None:
                    return
            if kind == "greeting":
                conv.greeted = True
            rec.clip = clip_id
            await self._speak(self.clips[clip_id], rec)
        except asyncio.CancelledError:
            cancelled = True
            raise
        except ConnectionClosed:
            return
        finally:
            if self.reply is rec:
                self.reply = None
            if not cancelled and not self.closing:
                self.loop.call_soon(self._idle_check)  # a held tool answer may go now

    def _new_call(self, step: ToolCallStep, rec: ReplyRecord) -> dict[str, Any]:
        """The ``functionCalls`` entry for ``step`` (its id, recorded)."""
        s, conv = self.session, self.conv
        assert conv is not None
        index = list(self.sc.tool_calls).index(step)
        conv.tool_steps_done.append(index)
        call_id = step.call_id or f"call-{conv.id}-{index}-{secrets.token_hex(3)}"
        rec.tool_call_id = call_id
        call = {"id": call_id, "name": step.name, "args": step.args}
        s.tool_calls.append(call)
        s.record(self.loop.time(), "toolCall", call_id)
        logger.info("session %d: toolCall %s %s", s.index, step.name, call_id)
        return call

    async def _call_tool(self, step: ToolCallStep, rec: ReplyRecord) -> bool:
        """A blocking call: send it, wait for its answer. False: it was cancelled."""
        s, conv = self.session, self.conv
        assert conv is not None
        call = self._new_call(step, rec)
        call_id = call["id"]
        fut: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self.pending_tool = (call_id, fut)
        try:
            await self.send({"toolCall": {"functionCalls": [call]}})
            if step.cancel_after_s is None:
                response = await fut
            else:
                try:
                    response = await asyncio.wait_for(fut, step.cancel_after_s)
                except TimeoutError:
                    s.tool_cancellations.append(call_id)
                    await self.send({"toolCallCancellation": {"ids": [call_id]}})
                    return False
        finally:
            self.pending_tool = None
        conv.history.append(("tool", json.dumps(response.get("response"), default=str)[:200]))
        return True

    async def _speak(self, clip: Clip, rec: ReplyRecord) -> None:
        s, sc = self.session, self.sc
        conv = self.conv
        assert conv is not None
        bytes_per_chunk = max(2, int(OUTPUT_RATE * sc.chunk_ms / 1000) * 2)
        chunk_s = bytes_per_chunk / 2 / OUTPUT_RATE
        pcm = clip.pcm
        n_chunks = max(1, math.ceil(len(pcm) / bytes_per_chunk))
        pieces = _split_words(clip.text, 4) if self.want_output_tx else []
        piece_at = [i * n_chunks // max(1, len(pieces)) for i in range(len(pieces))]
        burst = sc.burst_ms / 1000.0
        multi_part = self.profile.multi_part_server_content
        reply_no = len(s.replies) + 1
        s.replies.append(rec)
        s.replies_started += 1
        conv.history.append(("model", clip.text))
        logger.info("session %d: reply %d: %s (%.2f s)", s.index, reply_no, clip.id, clip.seconds)
        s.record(self.loop.time(), "reply", clip.id)
        faults = [f for f in self._faults() if f.on_reply == reply_no and f.at_s is None
                  and f.kind not in ("reject_resume", "reject_setup") and f.kind not in STALL_KINDS]
        t0 = self.loop.time()
        next_piece = 0
        for k in range(n_chunks):
            due = t0 + max(0.0, k * chunk_s - burst) / sc.pace
            delay = due - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            due_text = ""
            while next_piece < len(pieces) and piece_at[next_piece] <= k:
                if multi_part:
                    due_text += pieces[next_piece]
                else:
                    await self._transcript(pieces[next_piece])
                next_piece += 1
            chunk = pcm[k * bytes_per_chunk : (k + 1) * bytes_per_chunk]
            content: dict[str, Any] = {
                "modelTurn": {
                    "parts": [{"inlineData": {"mimeType": OUTPUT_MIME, "data": base64.b64encode(chunk).decode()}}]
                }
            }
            if due_text:  # 3.x: the transcription in the same message as its audio
                content["outputTranscription"] = {"text": due_text}
            await self.send({"serverContent": content})
            self.reply_sent_anything = True
            if rec.first_audio_at is None:
                rec.first_audio_at = self.now()
            rec.chunks_sent += 1
            rec.audio_seconds_sent += len(chunk) / 2 / OUTPUT_RATE
            s.audio_out_seconds += len(chunk) / 2 / OUTPUT_RATE
            for f in faults:
                if rec.chunks_sent == max(1, f.after_chunks):
                    if await self._fire(f):
                        return
        while next_piece < len(pieces):
            await self._transcript(pieces[next_piece])
            next_piece += 1
        await self.send({"serverContent": {"generationComplete": True}})
        done: dict[str, Any] = {"serverContent": {"turnComplete": True}}
        if sc.usage_metadata:
            response_tokens = int(clip.seconds * AUDIO_TOKENS_PER_SECOND)
            prompt = self.prompt_tokens
            done["usageMetadata"] = {
                "promptTokenCount": prompt,
                "responseTokenCount": response_tokens,
                "totalTokenCount": prompt + response_tokens,
                "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": prompt}],
                "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": response_tokens}],
            }
            self.prompt_tokens += response_tokens
        await self.send(done)
        rec.done_at = self.now()
        s.replies_completed += 1
        s.record(self.loop.time(), "turnComplete", clip.id)
        self.reply_sent_anything = False  # fully sent: caller speech now starts a new turn
        self._handle_update()

    async def _end_turn_quietly(self, rec: ReplyRecord) -> None:
        """A non-blocking call and nothing said: the turn ends with the call alone."""
        self.session.replies.append(rec)
        await self.send({"serverContent": {"turnComplete": True}})
        rec.done_at = self.now()
        self.session.record(self.loop.time(), "turnComplete", None)
        self._handle_update()

    async def _transcript(self, text: str) -> None:
        await self.send({"serverContent": {"outputTranscription": {"text": text}}})

    def _handle_update(self) -> None:
        """Queue ``sessionResumptionUpdate`` (turn boundary) when the setup asked for it."""
        if not self.want_resumption or self.conv is None or self.closing:
            return
        handle = self.emu._issue_handle(self.conv)
        self.session.handles_issued.append(handle)
        update = {"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}}
        self.spawn(self._send_quietly(update))

    async def _send_quietly(self, message: dict[str, Any]) -> None:
        try:
            await self.send(message)
        except ConnectionClosed:
            pass
