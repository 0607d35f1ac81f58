"""Prompts: text the bridge says to the model mid-call, sent only when it cuts nothing off.

The bridge speaks to the model in ``clientContent`` user turns: a DTMF key the caller pressed, the
reply watchdog's nudge, the stall watch's nudges. What such a message does to a reply in progress
depends on the model (:mod:`telephony_bridge.gemini.profiles`):

* Gemini 3.x (``client_content_interrupts == "turn-complete"``): a ``clientContent`` with
  ``turnComplete: true`` unconditionally interrupts the current generation; one without it is
  taken as context and the server waits for more before answering.
* Gemini 2.5 (``"always"``): any ``clientContent`` interrupts the current generation.

So a prompt that wants an answer (``reply=True``) waits until the model is quiet — no model turn
open and, where new input cancels a blocking call (3.8), no blocking tool call running — and is
then sent with ``turnComplete: true``. A prompt that is only context (a DTMF note) goes at once
without ``turnComplete`` where that does not interrupt (3.x), or waits for quiet like the others
(2.5). Held prompts go out, in order, the moment the model is quiet (:meth:`Prompts.flush`).

The greeting and the recovery prompts after a reconnect are sent at ``setupComplete``, when a new
connection has nothing to interrupt; the link sends those itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from ..gemini import messages as gm
from ..gemini.profiles import ModelProfile
from .timeline import Timeline

#: Held prompts beyond this are dropped, oldest first (a caller mashing keys while the model talks).
MAX_HELD = 8


class Prompts:
    def __init__(self, profile: ModelProfile, timeline: Timeline, send: Callable[[str], None]) -> None:
        self.profile = profile
        self.timeline = timeline
        self._send = send
        self._held: deque[tuple[str, bool]] = deque(maxlen=MAX_HELD)

    @property
    def held(self) -> int:
        return len(self._held)

    def say(self, text: str, now: float, *, model_turn_open: bool, blocking_call_running: bool,
            reply: bool = True) -> bool:
        """Tell the model ``text``. ``reply``: the model should answer it. Returns True when it
        was sent now, False when it waits for quiet."""
        if not self.model_busy(model_turn_open=model_turn_open, blocking_call_running=blocking_call_running) \
                and not self._held:
            self._send(gm.client_text(text))
            return True
        cancels_call = blocking_call_running and self.profile.blocking_cancelled_on_input
        if not reply and not cancels_call and self.profile.client_content_interrupts == "turn-complete":
            # Context only: interrupts no reply on 3.x. (Any input cancels a 3.8 blocking call,
            # context too, so while one runs even a note waits.)
            self._send(gm.client_text(text, turn_complete=False))
            return True
        self._held.append((text, reply))
        self.timeline.add(now, "prompt_held", held=len(self._held))
        return False

    def flush(self, now: float) -> None:
        """The model is quiet: send what was held, in order (the last one asks for the answer)."""
        held = self._held
        if not held:
            return
        self.timeline.add(now, "prompts_sent", count=len(held))
        while held:
            text, _reply = held.popleft()
            self._send(gm.client_text(text, turn_complete=not held))

    def model_busy(self, *, model_turn_open: bool, blocking_call_running: bool) -> bool:
        """Would a ``clientContent`` now cut something off (a reply, or a blocking call that new
        input cancels)?"""
        if model_turn_open:
            return True
        return blocking_call_running and self.profile.blocking_cancelled_on_input
