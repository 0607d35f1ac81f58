"""The caller's side of a connection: audio, VAD, activity marks and text, as caller turns.

Audio in (``realtimeInput.audio``, deprecated ``realtimeInput.mediaChunks``) at whatever rate
the mimeType names goes through the energy VAD (:mod:`.vad`); ``audioStreamEnd`` ends a turn
in progress; with automatic activity detection disabled, ``activityStart`` / ``activityEnd``
mark turns instead. Caller speech starting while a reply is being sent interrupts it (unless
``activityHandling`` is ``NO_INTERRUPTION``) once it has lasted the scenario's
``barge_in_speech_ms`` (default 300 ms, as the service's VAD takes a few hundred); a sound over
the reply that stays shorter is ignored altogether, as the service ignores a cough. A finished turn is recorded as a
:class:`~.records.CallerTurn` and answered (:mod:`.replies`). ``clientContent`` with
``turnComplete`` asks for the greeting or counts as a user text turn (interrupting a reply in
progress); so does ``realtimeInput.text``. Without ``turnComplete`` it is context: no answer, and
no interruption on 3.x, while on 2.5 any ``clientContent`` interrupts
(``client_content_interrupts``).

New input and a running blocking call, per model: on 3.8 caller speech or any ``clientContent``
cancels it (``toolCallCancellation``), even with ``NO_INTERRUPTION``; on 2.5 a barge-in or an
interrupting ``clientContent`` does (the turn it belongs to is interrupted); on 3.1 the model
waits for the answer whatever comes, and a turn that ends meanwhile is answered by the reply the
answer releases. :class:`_CallerTurns` is a mixin of :class:`~.connection._Connection`, whose
state it uses.
"""

from __future__ import annotations

import bisect
import logging
from typing import Any

from .records import CallerTurn
from .vad import SpeechEnd, SpeechStart, pcm16_to_float
from .wire import AUDIO_TOKENS_PER_SECOND, BadRequest, _text_of, audio_rate, b64decode_any

logger = logging.getLogger("telephony_bridge.emulator")


class _CallerTurns:
    """Caller input turned into turns (a mixin of :class:`~.connection._Connection`)."""

    async def _on_realtime_input(self, ri: Any) -> None:
        if not isinstance(ri, dict):
            raise BadRequest("Invalid value at 'realtime_input': expected an object.")
        blobs: list[Any] = []
        if "audio" in ri:
            blobs.append(ri["audio"])
        chunks = ri.get("mediaChunks")
        if chunks is not None:
            if not isinstance(chunks, list):
                raise BadRequest("Invalid value at 'realtime_input.media_chunks': expected a list.")
            blobs.extend(chunks)
        for blob in blobs:
            if not isinstance(blob, dict):
                raise BadRequest("Invalid value at 'realtime_input.audio': expected a Blob.")
            rate = audio_rate(blob.get("mimeType"))
            data = b64decode_any(blob.get("data", ""))
            if rate is None:
                logger.debug("session %d: ignoring %s input",
                             self.session.index, blob.get("mimeType"))
                continue
            await self._on_audio(data, rate)
        if ri.get("audioStreamEnd") is True:
            self.session.audio_stream_ends += 1
            if self.vad is not None and not self.manual_activity:
                await self._vad_events(self.vad.flush(), self.now())
        if "activityStart" in ri:
            await self._on_activity_start()
        if "activityEnd" in ri:
            await self._on_activity_end()
        text = ri.get("text")
        if isinstance(text, str) and text:
            self.session.realtime_text.append(text)
            await self._on_text_turn(text)

    async def _on_audio(self, data: bytes, rate: int) -> None:
        s = self.session
        if rate != self.carry_rate:
            self.carry, self.carry_rate = b"", rate
        data = self.carry + data
        if len(data) % 2:
            data, self.carry = data[:-1], data[-1:]
        else:
            self.carry = b""
        s.audio_in_chunks += 1
        s.audio_in_bytes += len(data)
        s.audio_in_seconds += len(data) / 2 / rate
        s.audio_in_rates.add(rate)
        if self.vad is None or self.manual_activity or not data:
            return
        events = self.vad.feed(pcm16_to_float(data), rate)
        now = self.now()
        self.arrival_audio.append(self.vad.time + self.vad.buffered_seconds)
        self.arrival_wall.append(now)
        await self._vad_events(events, now)
        if self.barge_from is not None and self.vad.in_speech:
            await self._barge_check(self.vad.last_speech_end)

    def _replying(self) -> bool:
        return (not self.no_interruption and self.reply_task is not None and not self.reply_task.done()
                and self.sc.barge_in_speech_ms > 0)

    async def _barge_check(self, speech_end: float) -> bool | None:
        """A barge-in is waiting for enough speech: interrupt once the caller has said
        ``barge_in_speech_ms`` of it. Returns None when none is waiting, True when it interrupted
        now, False when the speech (ending at ``speech_end``) is still too short."""
        start = self.barge_from
        if start is None:
            return None
        if speech_end - start + 1e-9 < self.sc.barge_in_speech_ms / 1000:
            return False
        self.barge_from = None
        barged = await self._caller_speech_started()
        if self.turn_open is not None:
            self.turn_open = (*self.turn_open[:2], barged)
        return True

    async def _vad_events(self, events: list[Any], wall_now: float) -> None:
        assert self.vad is not None

        def wall(t: float) -> float:
            # Wall time = arrival of the chunk that carried audio time t.
            i = bisect.bisect_left(self.arrival_audio, t - 1e-9)
            return self.arrival_wall[i] if i < len(self.arrival_wall) else wall_now

        for ev in events:
            if isinstance(ev, SpeechStart):
                # Over a reply, barge-in waits for barge_in_speech_ms of speech (_barge_check).
                self.barge_from = ev.start if self._replying() else None
                barged = False if self.barge_from is not None else await self._caller_speech_started()
                self.turn_open = (ev.start, wall(ev.start), barged)
                self.session.record(self.loop.time(), "speech_start", round(ev.start, 3))
                await self._barge_check(ev.start)
            elif isinstance(ev, SpeechEnd):
                if await self._barge_check(ev.end) is False:
                    # Too short to be a turn over the reply (a cough): the service ignores it.
                    self.turn_open = self.barge_from = None
                    self.session.record(self.loop.time(), "sound_ignored", round(ev.end - ev.start, 3))
                    continue
                barged = self.turn_open[2] if self.turn_open else False
                turn = CallerTurn(
                    number=len(self.session.turns) + 1,
                    start=wall(ev.start),
                    end=wall(ev.end),
                    committed=wall(ev.committed_at),
                    audio_start=ev.start,
                    audio_end=ev.end,
                    peak_rms=ev.peak_rms,
                    source="audio_stream_end" if ev.flushed else "vad",
                    barged_in=barged,
                )
                self.turn_open = None
                await self._caller_turn_done(turn)

    async def _on_activity_start(self) -> None:
        if not self.manual_activity:
            logger.debug("session %d: activityStart with automatic VAD on", self.session.index)
            return
        barged = await self._caller_speech_started()
        self.manual_turn = (self.session.audio_in_seconds, self.now(), barged)

    async def _on_activity_end(self) -> None:
        if not self.manual_activity or self.manual_turn is None:
            return
        audio_start, wall_start, barged = self.manual_turn
        self.manual_turn = None
        turn = CallerTurn(
            number=len(self.session.turns) + 1,
            start=wall_start,
            end=self.now(),
            committed=self.now(),
            audio_start=audio_start,
            audio_end=self.session.audio_in_seconds,
            peak_rms=0.0,
            source="manual",
            barged_in=barged,
        )
        await self._caller_turn_done(turn)

    async def _caller_speech_started(self) -> bool:
        """Speech began: barge in on a reply in progress. Returns True if it interrupted one."""
        if self._sync_wait():
            return False
        if self._input_cancels_call():
            return await self._interrupt("caller speech cancels the blocking call")
        if self.no_interruption:
            return False
        return await self._interrupt("caller speech")

    async def _caller_turn_done(self, turn: CallerTurn) -> None:
        s = self.session
        assert self.conv is not None
        s.turns.append(turn)
        self.conv.caller_turns += 1
        n = self.conv.caller_turns
        said = self.conv.caller_turns_restored + n  # the call's caller turn, for its transcript
        text = self.sc.caller_texts[said - 1] if said <= len(self.sc.caller_texts) else None
        transcript = text or f"[caller speech {turn.duration:.1f} s]"
        self.conv.history.append(("user", transcript))
        self.prompt_tokens += int(turn.duration * AUDIO_TOKENS_PER_SECOND)
        s.record(self.loop.time(), "turn", {"number": turn.number, "start": round(turn.start, 3),
                                            "end": round(turn.end, 3)})
        logger.info(
            "session %d: caller turn %d %.2f-%.2f s (%.2f s of speech, %s)",
            s.index, turn.number, turn.start, turn.end, turn.duration, turn.source,
        )
        if self.want_input_tx:
            await self.send({"serverContent": {"inputTranscription": {"text": transcript}}})
        if self._sync_wait():
            logger.info("session %d: turn %d waits with the model for its tool's answer", s.index, n)
            return
        self._deliver_urgent()
        self._start_reply(self._plan_after_caller_turn(n))

    async def _on_client_content(self, cc: Any) -> None:
        if not isinstance(cc, dict):
            raise BadRequest("Invalid value at 'client_content': expected an object.")
        turns = cc.get("turns")
        if turns is not None and not isinstance(turns, (list, dict)):
            raise BadRequest("Invalid value at 'client_content.turns': expected a list.")
        self.session.client_content.append(cc)
        text = _text_of(turns or [])
        assert self.conv is not None
        if self._input_cancels_call():
            await self._interrupt("client content cancels the blocking call")
        if cc.get("turnComplete") is not True:
            if text:
                self.conv.history.append(("context", text))
            if self.profile.client_content_interrupts == "always" and not self._sync_wait():
                await self._interrupt("client content")
            return
        listed = [t for t in (turns if isinstance(turns, list) else [turns]) if isinstance(t, dict)]
        model_turns = sum(1 for t in listed if t.get("role") == "model")
        if model_turns:  # restored history: its user turns were the caller's (notes are [bracketed])
            self.conv.caller_turns_restored = max(self.conv.caller_turns_restored, sum(
                1 for t in listed if t.get("role") == "user" and not _text_of([t]).lstrip().startswith("[")))
        if model_turns and not self.panel_voice:
            # The client restored a conversation as history (e.g. after a stale handle): the
            # model has greeted already and continues its questions from where it was.
            self.conv.greeted = True
            self.conv.replies_given = max(self.conv.replies_given, model_turns - 1)
        if not self.conv.greeted and self.conv.caller_turns == 0 and self.conv.replies_given == 0:
            self.conv.history.append(("user", text))
            await self._interrupt("client content")
            self._start_reply(("greeting", self.sc.greeting, None))
            return
        await self._on_text_turn(text)

    async def _on_text_turn(self, text: str) -> None:
        assert self.conv is not None
        waiting = self._sync_wait()
        if not waiting:
            await self._interrupt("client content")
        self.conv.caller_turns += 1
        self.conv.history.append(("user", text))
        self.prompt_tokens += max(1, len(text) // 4)
        logger.info("session %d: text turn %r", self.session.index, text[:60])
        if waiting:
            return  # 3.1: answered once the blocking call's answer comes
        self._deliver_urgent()
        self._start_reply(self._plan_after_caller_turn(self.conv.caller_turns))
