"""The link: the Gemini Live session as the call sees it, across every connection it takes.

One call may use several websockets to Gemini: a 1011/1006 drop reconnects with the newest
resumption handle, a ``goAway`` hands over to a fresh connection at a quiet moment, a stale
handle (1008 while resuming) falls back to a fresh session seeded with the transcript. The link
keeps the conversation whole across them:

* Caller audio goes through the :class:`~telephony_bridge.dsp.InboundConverter` (8 → 16 kHz) and
  out as ``realtimeInput`` when the session can send; while it cannot (connecting, reconnecting,
  handing over) up to ``max_pending_input_s`` is kept and sent once it can.
* Audio already sent since the newest resumption handle (``replay_input_s``) is kept too: the
  resumed session does not have it, so it is sent again after ``setupComplete``.
* After a reconnect the model is told to repeat a question the drop cut, and a fresh session is
  given the transcript as history; the greeting is asked for once per call, never again.
* While Gemini is down the call wants a short "one moment" (:meth:`notice_due`).

Decisions only: the adapter opens and closes sockets and reports back (``connected``, ``closed``,
``connect_failed``, the handover calls); :attr:`Link.gemini_out` holds what to send, in order.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from ..dsp import InboundConverter
from ..gemini import messages as gm
from ..gemini.refusal import Refusal, classify_close, classify_handshake, unreachable
from ..gemini.session import GeminiSession, SessionState
from ..log import log_event
from ..metrics import Metrics
from .config import FRAME_S, CallConfig
from .recheck import Recheck
from .timeline import Timeline

logger = logging.getLogger("telephony_bridge.call")

class Link:
    def __init__(self, setup: gm.SetupConfig, config: CallConfig, timeline: Timeline,
                 counters: dict[str, int], metrics: Metrics | None = None) -> None:
        self.config = config
        self.timeline = timeline
        self.counters = counters
        self.metrics = metrics
        self.call_sid: str | None = None
        self.session = GeminiSession(setup)
        #: Frames to Gemini, in order (the adapter drains it into the current connection).
        self.gemini_out: deque[str] = deque()
        #: The newest resumable handle, for the adapter to persist (it clears this).
        self.new_handle: str | None = None
        #: When the newest resumable handle came (the resumed session has what came before).
        self.handle_at: float | None = None
        #: The greeting was asked for (or the session began elsewhere): never again.
        self.greeted = False
        self._inbound = InboundConverter()
        self._audio_in = gm.AudioInput(16000)
        #: Caller frames per realtimeInput message (config.input_chunk_ms; 20 ms frames).
        self._chunk_frames = max(1, round(config.input_chunk_ms / 1000 / FRAME_S))
        self._acc = bytearray()
        self._acc_frames = 0
        chunk_s = FRAME_S * self._chunk_frames
        self._pending_input: deque[str] = deque(maxlen=max(1, int(config.max_pending_input_s / chunk_s)))
        #: What was sent since the newest handle, for a resumed session: caller audio as its μ-law
        #: (a fifth of its message: 10 s is 80 KB a call, not 430), other messages as sent.
        self._since_handle: deque[str | bytes] = deque(maxlen=max(1, int(config.replay_input_s / chunk_s)))
        self._handover = False
        self._down_since: float | None = None
        self._notice_played = False
        self._notice_recheck = Recheck()  # due but not played (audio playing, no phrase)
        self._fresh_fallback = False
        self._cut_mid_turn = False
        #: Why Gemini refused this call, once known (see gemini/refusal.py); set once per call.
        self.refusal: Refusal | None = None
        self._last_failure = ""
        #: A panel hand-off's first message for the new session (call/handoff.py): sent first,
        #: instead of the replay a resumed session gets.
        self.seed: str | None = None

    # -- sending -------------------------------------------------------------------------------

    def can_send(self) -> bool:
        return self.session.can_send()

    def caller_audio(self, ulaw: bytes, eager: bool = False) -> None:
        """One caller frame (after the gate) for Gemini: sent, or kept until the session is up.
        ``eager``: what is batched goes now (near the VAD's commit, just after a barge-in pause;
        config.eager_input_*)."""
        if not ulaw:
            return
        if self._chunk_frames > 1:
            # Batched: one realtimeInput per input_chunk_ms (the Live API guide's ~100 ms chunks;
            # five times fewer messages than 20 ms frames). Barge-in does not wait on it (barge.py).
            # The μ-law is kept and resampled once per chunk: the converter streams (its output
            # is the same however the input is cut), so this is one filter call instead of five.
            self._acc += ulaw
            self._acc_frames += 1
            if self._acc_frames >= self._chunk_frames or eager:
                self.flush_caller_audio()
            return
        self._send_caller_chunk(ulaw)

    def flush_caller_audio(self) -> None:
        """What is batched goes now: a whole chunk, an eager frame, or at the call's end the
        frames short of a chunk (up to ``input_chunk_ms`` - 20 ms of the caller's last words)."""
        if self._acc_frames:
            ulaw = bytes(self._acc)
            self._acc.clear()
            self._acc_frames = 0
            self._send_caller_chunk(ulaw)

    def _send_caller_chunk(self, ulaw: bytes) -> None:
        pcm = self._inbound.convert(ulaw)
        message = self._audio_in.message(pcm)
        if self.session.can_send():
            self.gemini_out.append(message)
            self._since_handle.append(ulaw)
        else:
            if len(self._pending_input) == self._pending_input.maxlen:
                self.counters["input_dropped_frames"] += self._chunk_frames
            self._pending_input.append(message)

    def send(self, message: str) -> None:
        """A non-audio message (text, tool responses): sent, or kept until the session is up."""
        if self.session.can_send():
            self.gemini_out.append(message)
        else:
            self._pending_input.append(message)

    def greet(self, prompt: str, now: float) -> bool:
        """Ask the model to speak first, once per call, when the session can send."""
        if self.greeted or not self.session.can_send():
            return False
        self.greeted = True
        self.timeline.add(now, "greeting_requested")
        self.gemini_out.append(gm.client_text(prompt))
        return True

    def resume_stored(self, handle: str, now: float) -> None:
        """The session began on another stream or replica: resume it, don't greet."""
        self.session.handle = handle
        self.greeted = True
        self.timeline.add(now, "resume_from_store")

    def resumption_update(self, event: gm.SessionResumptionUpdate, now: float) -> None:
        if event.resumable and event.new_handle:
            self.new_handle = event.new_handle
            self.handle_at = now
            self._since_handle.clear()
            self.timeline.add(now, "resumption_handle")

    # -- connections ---------------------------------------------------------------------------

    def connecting(self, now: float) -> str:
        """A websocket is opening: returns the ``setup`` message to send first."""
        self.timeline.add(now, "gemini_connecting", connection=self.session.connections + 1,
                          resume=self.session.handle is not None)
        return self.session.connection_opened(now)

    def connect_failed(self, reason: str, now: float, *, status: int | None = None, body: str = "",
                       refusal: Refusal | None = None) -> Refusal | None:
        """An attempt to open a connection failed. ``status``/``body``: the HTTP answer when the
        upgrade was refused; ``refusal``: the adapter already knows no retry helps. Returns the
        refusal when no retry can fix it, else None (the adapter backs off and tries again)."""
        self.timeline.add(now, "gemini_connect_failed", reason=reason[:120], status=status)
        self.session.connection_closed(None, now)
        if self._down_since is None:
            self._down_since = now
        self._last_failure = reason
        if refusal is None and status is not None:
            refusal = classify_handshake(status, body or reason)
        return refusal

    def closed(self, code: int | None, reason: str, now: float, *, mid_turn: bool) -> Refusal | None:
        """The connection closed (``mid_turn``: while the model was replying). Returns None to
        reconnect (transient, or a stale handle: a fresh session), else the refusal that ends it.

        A refusal no retry can fix (model not found, bad key, quota, …) is decided by
        :mod:`telephony_bridge.gemini.refusal`, from the service's words and the code."""
        refusal = classify_close(code, reason, resuming=self.session.handle is not None,
                                 at_setup=self.session.state is SessionState.AWAITING_SETUP_COMPLETE)
        transient = self.session.connection_closed(code, now) and refusal is None
        self._last_failure = f"closed {code} {reason}"
        self.timeline.add(now, "gemini_closed", code=code, reason=reason[:120], transient=transient)
        log_event(logger, "call.gemini_closed", logging.WARNING, call_sid=self.call_sid,
                  code=code, reason=reason[:120], transient=transient)
        self._handover = False
        if mid_turn:
            self._cut_mid_turn = True
        if self._down_since is None:
            self._down_since = now
        self._notice_played = False
        if refusal is not None:
            return refusal
        if not transient:
            # Not transient, yet no refusal: classify_close's stale-handle case (1008 while
            # resuming). Start afresh, seeded with what was said.
            self.session.handle = None
            self.session.state = SessionState.IDLE
            self._fresh_fallback = True
            self.timeline.add(now, "resume_rejected_fresh_session")
        return None

    def unreachable(self) -> Refusal:
        """The reconnect policy ran out: what the call concludes from its last failure."""
        return unreachable(self._last_failure or "no connection")

    def refused(self, refusal: Refusal, now: float) -> None:
        """No retry can fix this: the session is closed; said once per call (log, metric)."""
        self.session.close()
        if self.refusal is not None:
            return
        self.refusal = refusal
        kind = refusal.kind.value
        self.timeline.add(now, "gemini_refused", refusal=kind, code=refusal.code, status=refusal.status)
        log_event(logger, "call.gemini_refused", logging.ERROR, call_sid=self.call_sid, kind=kind,
                  model=self.session.setup.model, code=refusal.code, status=refusal.status,
                  reason=refusal.reason, attempts=self.session.connections)
        if self.metrics is not None:
            self.metrics.gemini_refusals[kind].inc()

    @property
    def handing_over(self) -> bool:
        """A goAway handover has opened the next connection and is waiting for it."""
        return self._handover

    def ready(self, now: float, transcript: list[dict[str, Any]]) -> tuple[bool, bool]:
        """``setupComplete`` on a new connection: replay what the session is missing. Returns
        (it was a goAway handover, the model was asked to go on: a cut question, a fresh session)."""
        resumed = self.session.connections > 1
        self.timeline.add(now, "gemini_ready", connection=self.session.connections,
                          handover=self._handover, resumed=resumed)
        if resumed:
            if self._handover:
                self.counters["handovers"] += 1
            else:
                self.counters["reconnects"] += 1
                if self.metrics is not None:
                    self.metrics.gemini_reconnects.inc()
            down = None if self._down_since is None else round((now - self._down_since) * 1000)
            log_event(logger, "call.gemini_resumed", call_sid=self.call_sid, handover=self._handover,
                      fresh=self._fresh_fallback, down_ms=down)
        handover, fresh = self._handover, self._fresh_fallback
        self._handover = False
        self._down_since = None
        out = self.gemini_out
        if self.seed is not None:
            out.append(self.seed)  # type: ignore[arg-type]
            self.seed = None
            self._since_handle.clear()
            self._cut_mid_turn = False
        elif self._fresh_fallback:
            self._fresh_fallback = False
            self._since_handle.clear()
            out.append(self._context_for_fresh_session(transcript))
        elif resumed and self._since_handle:
            # The caller's audio after the newest handle is not in the resumed state: send it again.
            self.counters["input_replayed_frames"] += len(self._since_handle) * self._chunk_frames
            out.extend(self._kept_messages())
        if resumed and self._cut_mid_turn and not self._fresh_fallback:
            out.append(gm.client_text("[The phone line dropped while you were speaking. Briefly repeat your "
                                      "last question.]"))
        reply_requested = resumed and (fresh or self._cut_mid_turn)
        self._cut_mid_turn = False
        while self._pending_input:
            message = self._pending_input.popleft()
            out.append(message)
            self._since_handle.append(message)
        return handover, reply_requested

    @staticmethod
    def _context_for_fresh_session(transcript: list[dict[str, Any]]) -> str:
        """The transcript so far as history turns, then where to go on from."""
        turns = [("model" if e["role"] == "agent" else "user", e["text"])
                 for e in transcript[-40:] if e.get("text")]
        turns.append(("user", "[The phone line was reconnected. Continue the interview where it left off. "
                              "Do not greet the caller again.]"))
        return gm.client_turns(turns)

    # -- a panel hand-off (call/handoff.py) -----------------------------------------------------

    def sent_since_mark(self) -> list[str]:
        """Caller audio sent since the last handle or :meth:`mark_sent`, oldest first."""
        return self._kept_messages()

    def _kept_messages(self) -> list[str]:
        """:attr:`_since_handle` as messages again: its μ-law through a converter of its own (the
        chunks are contiguous; only the filter's first few milliseconds, without the history it had,
        differ from the first sending), anything else as it was sent."""
        inbound: InboundConverter | None = None
        out: list[str] = []
        for item in self._since_handle:
            if isinstance(item, str):
                out.append(item)
                continue
            if inbound is None:
                inbound = InboundConverter()
            out.append(self._audio_in.message(inbound.convert(item)))
        return out

    def mark_sent(self) -> None:
        self._since_handle.clear()

    def send_first(self, messages: list[str]) -> None:
        """Queue ``messages`` ahead of what waits for the next connection (after its seed)."""
        self._pending_input.extendleft(reversed(messages))

    # -- "one moment" while down ----------------------------------------------------------------

    def notice_due(self, now: float, audible: bool) -> bool:
        if self._down_since is None or self._notice_played \
                or now < self._down_since + self.config.reconnect_notice_after_s or self._notice_recheck.waiting(now):
            return False
        if audible:  # the caller hears something already: look again once it may have ended
            self._notice_recheck.blocked(now)
            return False
        return True

    def notice_played(self, played: bool, now: float) -> None:
        self._notice_played = played
        if not played:
            self._notice_recheck.blocked(now)

    # -- goAway handover -----------------------------------------------------------------------

    def handover_pending(self) -> bool:
        """``goAway`` arrived and no handover has begun."""
        return self.session.state is SessionState.DRAINING and not self._handover

    def handover_now(self, now: float, *, quiet: bool) -> bool:
        """Time to open the next connection: a quiet moment, or the last moment before the cut."""
        if not self.handover_pending():
            return False
        deadline = self.session.go_away_deadline
        if deadline is not None and deadline - now <= self.config.handover_margin_s:
            return True
        return quiet

    def begin_handover(self, now: float) -> str:
        self._handover = True
        self.timeline.add(now, "handover_start")
        return self.session.connection_opened(now)

    def handover_failed(self, reason: str, now: float) -> None:
        """The next connection could not be had: carry on with the draining one while it lasts."""
        self._handover = False
        self.session.state = SessionState.DRAINING
        self.timeline.add(now, "handover_failed", reason=reason[:120])
        while self._pending_input:
            self.gemini_out.append(self._pending_input.popleft())

    def deadline(self, last_media: float) -> float | None:
        deadline = None
        if self._down_since is not None and not self._notice_played:
            deadline = self._notice_recheck.deadline(self._down_since + self.config.reconnect_notice_after_s)
        go_away = self.session.go_away_deadline
        if go_away is not None and self.handover_pending():
            # Look for a quiet moment every 100 ms; hand over before the cut at the latest.
            d = min(go_away - self.config.handover_margin_s, last_media + 0.1)
            deadline = d if deadline is None else min(deadline, d)
        return deadline
