"""Scripted failures (:class:`Fault`) and when they fire on a connection.

A fault fires at a time after the connection opened (``at_s``), or during a reply once some
of its audio chunks have gone out (``on_reply`` / ``after_chunks``, checked by the reply
sender in :mod:`.replies`); ``reject_resume`` instead refuses any setup that carries a
resumption handle, and ``reject_setup`` any setup (both checked at setup in
:mod:`.connection`). :class:`_FaultRunner` is the part of a connection that carries them out;
its state lives on :class:`~.connection._Connection`. The silent stalls (``empty_turn``,
``no_reply``) are checked by the reply task once it has thought, before it speaks
(:meth:`_FaultRunner._stall`). The close reasons the service gives for its refusals are here too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Literal

from websockets.exceptions import ConnectionClosed

from .wire import _duration

logger = logging.getLogger("telephony_bridge.emulator")

FaultKind = Literal["close", "drop", "go_away", "refuse", "reject_resume", "reject_setup", "empty_turn", "no_reply"]
#: Silent stalls (python-genai #2117): the model answers with nothing, the socket stays open.
STALL_KINDS = frozenset({"empty_turn", "no_reply"})

# Close reasons the service sends for refusals (quoted from reports against the real service;
# see telephony_bridge/gemini/refusal.py). The model-not-found one is built from the model.
API_KEY_INVALID_REASON = "API key not valid. Please pass a valid API key."
PERMISSION_REASON = "Permission denied on resource project None."
INVALID_ARGUMENT_REASON = "Request contains an invalid argument."
QUOTA_REASON = ("You exceeded your current quota, please check your plan and billing details. For more "
                "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits")


@dataclass
class Fault:
    """A scripted failure.

    Kinds:

    * ``close``: close the websocket with ``code`` (default 1011) and ``reason``.
    * ``drop``: abort the TCP connection, no close frame (the client sees 1006).
    * ``go_away``: send ``goAway {timeLeft}`` with ``time_left_s``, then close with ``code``
      once that time has passed.
    * ``refuse``: refuse new connections (HTTP 503) for ``refuse_s`` seconds.
    * ``reject_resume``: a setup that carries a resumption handle is closed with 1008
      ("stale handle"); no trigger needed.
    * ``reject_setup``: the ``setup`` is answered with a close (``code``, ``reason``) instead of
      ``setupComplete``, as the service refuses a project without permission (1008
      :data:`PERMISSION_REASON`) or a setup it cannot take (1007
      :data:`INVALID_ARGUMENT_REASON`); no trigger needed. A quota the service has run out of
      is a ``close`` instead: ``setupComplete``, then 1011 :data:`QUOTA_REASON` ~0.8 s later.
    * ``empty_turn``: reply attempt ``on_reply`` is a bare ``turnComplete``: no audio, no
      transcription, no error (the silent stall of python-genai #2117).
    * ``no_reply``: reply attempt ``on_reply`` never starts: nothing is sent at all.

    The stall kinds count reply *attempts* on the connection (1-based: the greeting, when the
    client asks the model to speak first, is attempt 1; a stalled attempt counts too, so the
    attempt a nudge triggers is the next one). The model remembers nothing of a stalled attempt:
    the next one says what it would have said. ``connection=1`` with ``on_reply=1`` is a stall
    right after a resumption.

    Trigger (ignored by ``reject_resume`` and ``reject_setup``): ``at_s`` seconds after the connection opened, or
    during reply ``on_reply`` (1-based, counted per connection) once ``after_chunks`` audio
    chunks of it have been sent. ``connection`` restricts the fault to that connection index
    (0-based, as in ``GeminiEmulator.sessions``; default 0, the first connection, so the client's
    reconnect succeeds); ``None`` means every connection. Any kind may
    also open a refusal window of ``refuse_s`` seconds when it fires.
    """

    kind: FaultKind
    at_s: float | None = None
    on_reply: int | None = None
    after_chunks: int = 0
    connection: int | None = 0
    code: int = 1011
    reason: str = "Internal error encountered."
    time_left_s: float = 1.0
    refuse_s: float = 0.0
    refuse_status: int = 503


class _FaultRunner:
    """Fires a connection's faults (a mixin of :class:`~.connection._Connection`)."""

    def _faults(self) -> list[Fault]:
        index = self.session.index
        return [f for f in self.sc.faults if f.connection is None or f.connection == index]

    async def _fault_at(self, fault: Fault) -> None:
        delay = self.session.started_at + (fault.at_s or 0.0) - self.loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await self._fire(fault)

    async def _fire(self, fault: Fault) -> bool:
        """Carry out ``fault``; True if the connection is going away now."""
        s = self.session
        s.faults_fired.append(fault.kind)
        s.record(self.loop.time(), "fault", fault.kind)
        logger.info("session %d: fault %s", s.index, fault.kind)
        if fault.refuse_s > 0 or fault.kind == "refuse":
            self.emu.refuse_connections(fault.refuse_s, fault.refuse_status)
        try:
            if fault.kind == "close":
                self.spawn(self._close_quietly(fault.code, fault.reason))
                return True
            if fault.kind == "drop":
                self.drop()
                return True
            if fault.kind == "go_away":
                await self.send({"goAway": {"timeLeft": _duration(fault.time_left_s)}})
                self.spawn(self._cut_after(fault))
        except ConnectionClosed:
            return True
        return False

    async def _cut_after(self, fault: Fault) -> None:
        await asyncio.sleep(fault.time_left_s)
        await self._close_quietly(fault.code, fault.reason)

    async def _stall(self) -> bool:
        """A scripted silent stall for this reply attempt: True if it stalled (nothing spoken)."""
        s = self.session
        s.reply_attempts += 1
        for f in self._faults():
            if f.kind in STALL_KINDS and f.on_reply == s.reply_attempts:
                s.faults_fired.append(f.kind)
                s.stalled_attempts.append(s.reply_attempts)
                s.record(self.loop.time(), "fault", f.kind)
                logger.info("session %d: reply attempt %d stalls (%s)", s.index, s.reply_attempts, f.kind)
                if f.kind == "empty_turn":
                    await self.send({"serverContent": {"turnComplete": True}})
                    self._handle_update()
                return True
        return False
