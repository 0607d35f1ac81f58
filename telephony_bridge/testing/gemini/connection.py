"""One websocket connection: its state, the receive loop, setup and message dispatch.

The first message must be ``setup`` (with a ``model``); then ``setupComplete``, unless the
setup is refused (API key with ``Scenario.key_check="setup"``, a ``reject_setup`` or
``reject_resume`` fault, a retired or unknown model, a field the model does not take: see
:mod:`.models`, a stale handle). From then on the connection behaves like the model the setup
named (``self.profile``, from :mod:`telephony_bridge.gemini.profiles`). Every server
message is a BINARY frame holding UTF-8 JSON. A :class:`~.wire.BadRequest` anywhere closes the
connection with its code and reason; a bug closes it with 1011. The rest of a connection's
behaviour is in four parts that share the state set up in ``_Connection.__init__``:
:class:`~.turns._CallerTurns` (caller audio, VAD, activity and text turns),
:class:`~.replies._Replies` (model replies, blocking tool calls, interruptions, resumption
handles), :class:`~.async_calls._AsyncCalls` (non-blocking calls and their answers' scheduling)
and :class:`~.faults._FaultRunner` (scripted faults).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ...gemini import profiles
from . import models
from .async_calls import _AsyncCalls, _HeldResult, _PendingAsync
from .faults import API_KEY_INVALID_REASON, _FaultRunner
from .records import Conversation, EmulatorSession, ReplyRecord
from .replies import _Replies
from .turns import _CallerTurns
from .vad import DEFAULT_PREFIX_PADDING_MS, DEFAULT_SILENCE_DURATION_MS, EnergyVAD
from .wire import BadRequest, _camel, _int_field, _truncate_reason, normalize, validate_setup

if TYPE_CHECKING:
    from .server import GeminiEmulator

logger = logging.getLogger("telephony_bridge.emulator")


class _Connection(_CallerTurns, _Replies, _AsyncCalls, _FaultRunner):
    """Runs one websocket connection: receive loop, VAD, reply task, faults."""

    def __init__(self, emu: GeminiEmulator, session: EmulatorSession, ws: ServerConnection):
        self.emu = emu
        self.sc = emu.scenario
        self.clips = emu.clips
        #: The session's prebuilt voice follows its own part of a panel scenario.
        self.panel_voice = False
        self.session = session
        self.ws = ws
        self.loop = asyncio.get_running_loop()
        self.conv: Conversation | None = None
        self.vad: EnergyVAD | None = None
        self.manual_activity = False
        self.no_interruption = False
        self.want_input_tx = False
        self.want_output_tx = False
        self.want_resumption = False
        self.reply_task: asyncio.Task[None] | None = None
        self.reply: ReplyRecord | None = None
        self.reply_sent_anything = False
        self.profile: profiles.ModelProfile = profiles.NEWEST  # the model setup named
        self.behaviors: dict[str, str | None] = {}  # declared functions -> their ``behavior``
        self.pending_tool: tuple[str, asyncio.Future[dict[str, Any]]] | None = None  # blocking
        self.async_calls: dict[str, _PendingAsync] = {}  # non-blocking calls still running
        self.held: list[_HeldResult] = []  # their answers, waiting to be spoken
        self.tasks: set[asyncio.Task[Any]] = set()
        self.turn_open: tuple[float, float, bool] | None = None  # (audio start, wall start, barged)
        self.manual_turn: tuple[float, float, bool] | None = None
        self.barge_from: float | None = None  # audio time of speech over a reply, not yet a barge-in
        self.carry = b""
        self.carry_rate: int | None = None
        self.arrival_audio: list[float] = []  # audio time at the end of each chunk received
        self.arrival_wall: list[float] = []  # ... and when it arrived (seconds since open)
        self.prompt_tokens = 0
        self.closing = False
        self.close_sent: tuple[int, str] | None = None
        self.dropped = False

    def now(self) -> float:
        return self.loop.time() - self.session.started_at

    # -- sending

    async def send(self, message: dict[str, Any]) -> None:
        """Send one server message: a BINARY frame holding UTF-8 JSON."""
        await self.ws.send(json.dumps(message, separators=(",", ":")).encode())

    async def close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        reason = _truncate_reason(reason)
        self.close_sent = (code, reason)
        self.session.record(self.loop.time(), "close", {"code": code, "reason": reason})
        logger.info("session %d: closing %d %s", self.session.index, code, reason)
        await self.ws.close(code, reason)

    def drop(self) -> None:
        self.closing = True
        self.dropped = True
        self.session.record(self.loop.time(), "drop")
        logger.info("session %d: dropping TCP connection", self.session.index)
        self.ws.transport.abort()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # -- main loop

    async def run(self) -> None:
        try:
            await self._run()
        except ConnectionClosed:
            pass
        except BadRequest as exc:
            await self._close_quietly(exc.code, exc.reason)
        except Exception:  # pragma: no cover - a bug in the emulator: tell the client
            logger.exception("session %d: emulator error", self.session.index)
            await self._close_quietly(1011, "Internal error encountered.")
        finally:
            await self._cancel_all()
            s = self.session
            if self.dropped:
                s.closed_code, s.closed_reason, s.closed_by = 1006, "", "drop"
            elif self.close_sent is None and self.emu._stopping:
                s.closed_code, s.closed_reason, s.closed_by = 1001, "", "server"
            elif self.close_sent is not None:
                s.closed_code, s.closed_reason = self.close_sent
                s.closed_by = "server"
            else:
                s.closed_code, s.closed_reason = self.ws.close_code, self.ws.close_reason
                s.closed_by = "client"
            s.record(self.loop.time(), "closed", {"code": s.closed_code, "by": s.closed_by})
            s._closed.set()
            logger.info(
                "session %d: closed code=%s by=%s turns=%d replies=%d interruptions=%d",
                s.index, s.closed_code, s.closed_by, len(s.turns), s.replies_started,
                s.interruptions,
            )

    async def _close_quietly(self, code: int, reason: str) -> None:
        try:
            await self.close(code, reason)
        except ConnectionClosed:
            pass

    async def _cancel_all(self) -> None:
        tasks = [t for t in self.tasks if not t.done()]
        if self.reply_task is not None and not self.reply_task.done():
            tasks.append(self.reply_task)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        first = await self.ws.recv()
        msg = self._decode(first)
        if "setup" not in msg:
            raise BadRequest("The first message must be 'setup'.")
        extra = set(msg) - {"setup"}
        if extra:
            raise BadRequest(f"Invalid JSON payload received. Unknown name {sorted(extra)[0]!r}.")
        await self._on_setup(msg["setup"])
        for fault in self._faults():
            if fault.at_s is not None and fault.kind not in ("reject_resume", "reject_setup"):
                self.spawn(self._fault_at(fault))
        async for raw in self.ws:
            await self._dispatch(self._decode(raw))

    def _decode(self, raw: str | bytes) -> dict[str, Any]:
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            msg = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(f"Invalid JSON payload received: {exc}") from None
        if not isinstance(msg, dict):
            raise BadRequest("Invalid JSON payload received: expected an object.")
        return {_camel(k): v for k, v in msg.items()}

    # -- setup

    async def _on_setup(self, raw: Any) -> None:
        s, sc = self.session, self.sc
        setup = validate_setup(raw)
        s.raw_setup = raw
        s.setup = setup
        s.model = setup["model"]
        s.record(self.loop.time(), "setup", {"model": s.model})
        if self.emu.api_key is not None and sc.key_check == "setup":
            request = self.ws.request
            key = request.headers.get("x-goog-api-key") if request is not None else None
            if key is None and request is not None:
                key = (parse_qs(urlsplit(request.path).query).get("key") or [None])[0]
            if key is None or not secrets.compare_digest(key, self.emu.api_key):
                raise BadRequest(API_KEY_INVALID_REASON, 1007)
            s.auth = "api_key"
        for fault in self._faults():
            if fault.kind == "reject_setup":
                s.faults_fired.append("reject_setup")
                raise BadRequest(fault.reason, fault.code)
        voice = (((setup.get("generationConfig") or {}).get("speechConfig") or {}).get("voiceConfig") or {}) \
            .get("prebuiltVoiceConfig", {}).get("voiceName")
        s.voice = voice
        self.clips = self.emu.clips_for(voice)
        own = sc.for_voice(voice)
        if own is not None:
            self.sc = sc = own
            self.panel_voice = True
        self.profile = models.resolve(s.model, s.backend, s.api_version, sc.known_models)
        s.profile = self.profile.family
        models.check_setup(setup, self.profile, s.model)
        self.behaviors = models.declared_behaviors(setup)
        resumption = setup.get("sessionResumption")
        self.want_resumption = resumption is not None
        handle = (resumption or {}).get("handle")
        if handle:
            if any(f.kind == "reject_resume" for f in self._faults()):
                s.faults_fired.append("reject_resume")
                raise BadRequest("Session resumption handle is invalid or expired.", 1008)
            self.conv = self.emu._resume(handle)
            self.emu.conversations.append(self.conv)
            s.resumed_from = handle
        else:
            self.conv = self.emu._new_conversation()
        s.conversation = self.conv

        ric = setup.get("realtimeInputConfig") or {}
        aad = ric.get("automaticActivityDetection") or {}
        silence = _int_field(aad, "silenceDurationMs", DEFAULT_SILENCE_DURATION_MS)
        prefix = _int_field(aad, "prefixPaddingMs", DEFAULT_PREFIX_PADDING_MS)
        if sc.silence_duration_ms is not None:
            silence = sc.silence_duration_ms
        if sc.prefix_padding_ms is not None:
            prefix = sc.prefix_padding_ms
        s.silence_duration_ms, s.prefix_padding_ms = int(silence or 0), int(prefix or 0)
        self.manual_activity = bool(aad.get("disabled", False))
        self.no_interruption = ric.get("activityHandling") == "NO_INTERRUPTION"
        self.vad = EnergyVAD(
            threshold=sc.vad_threshold,
            prefix_padding_ms=s.prefix_padding_ms,
            silence_duration_ms=s.silence_duration_ms,
        )
        if sc.transcriptions == "auto":
            self.want_input_tx = setup.get("inputAudioTranscription") is not None
            self.want_output_tx = setup.get("outputAudioTranscription") is not None
        else:
            self.want_input_tx = self.want_output_tx = sc.transcriptions == "always"
        logger.info(
            "session %d: setup model=%s (%s) silence=%dms prefix=%dms resumed=%s",
            s.index, s.model, s.profile, s.silence_duration_ms, s.prefix_padding_ms, bool(handle),
        )
        await self.send({"setupComplete": {}})
        s.record(self.loop.time(), "setupComplete")

    # -- client messages

    async def _dispatch(self, msg: dict[str, Any]) -> None:
        if self.closing:
            return
        known = {"realtimeInput", "clientContent", "toolResponse", "setup"}
        unknown = set(msg) - known
        if unknown:
            raise BadRequest(f"Invalid JSON payload received. Unknown name {sorted(unknown)[0]!r}.")
        if "setup" in msg:
            raise BadRequest("'setup' may only be sent once, as the first message.")
        if "realtimeInput" in msg:
            await self._on_realtime_input(normalize(msg["realtimeInput"]))
        if "clientContent" in msg:
            await self._on_client_content(normalize(msg["clientContent"]))
        if "toolResponse" in msg:
            await self._on_tool_response(normalize(msg["toolResponse"]))
