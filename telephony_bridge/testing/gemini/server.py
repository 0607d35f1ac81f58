"""The emulator's websocket server: paths, the API key, TLS, scripted refusals, handles.

:class:`GeminiEmulator` listens on loopback (``ws://`` or, given an SSL context, ``wss://``)
at the ``v1beta`` and ``v1`` ``BidiGenerateContent`` paths; anything else is HTTP 404. When
given a key it wants it in ``x-goog-api-key`` or ``?key=``: missing is HTTP 401, wrong is 403,
at the handshake (``process_request``; with ``Scenario.key_check="setup"`` the connection
checks it at setup instead), as is a scripted refusal window
(:meth:`GeminiEmulator.refuse_connections`, HTTP 503 by default). Each accepted connection is
run by a :class:`~.connection._Connection`; the server keeps the recorded sessions, the
conversations and the resumption handles issued (each a snapshot of its conversation).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import secrets
import ssl as ssl_module
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from .clips import load_clips
from .connection import _Connection
from .records import Conversation, EmulatorSession
from .scenario import Scenario
from .wire import BadRequest

logger = logging.getLogger("telephony_bridge.emulator")

V1BETA_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
V1_PATH = "/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent"
PATHS = (V1BETA_PATH, V1_PATH)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class GeminiEmulator:
    """A loopback Gemini Live server. ``async with GeminiEmulator(scenario) as emu: emu.url``."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        *,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.scenario = scenario or Scenario()
        self.host = host
        self.port = port
        self.api_key = api_key
        self.ssl = ssl
        self.sessions: list[EmulatorSession] = []
        self.conversations: list[Conversation] = []
        self.refused: int = 0
        self.rejected: list[tuple[int, str]] = []  # (HTTP status, path) refused at handshake
        self.clips = load_clips(self.scenario.clips_dir)
        self._check_scenario()
        self._server: Server | None = None
        self._handles: dict[str, tuple[Conversation, float]] = {}
        self._refuse_until = 0.0
        self._stopping = False
        self._refuse_status = 503
        self._new_session: asyncio.Condition | None = None  # created in start()

    def _check_scenario(self) -> None:
        sc = self.scenario
        names = [sc.greeting, *sc.replies, *(s.then_clip for s in sc.tool_calls if s.then_clip)]
        missing = sorted({n for n in names if n not in self.clips})
        if missing:
            raise ValueError(f"scenario names unknown clips: {missing}; have {sorted(self.clips)}")
        if sc.pace <= 0:
            raise ValueError("pace must be positive")
        if sc.chunk_ms <= 0:
            raise ValueError("chunk_ms must be positive")

    # -- lifecycle

    async def start(self) -> None:
        if self._server is not None:
            return
        self._stopping = False
        self._new_session = asyncio.Condition()
        self._server = await serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._process_request,
            max_size=MAX_MESSAGE_BYTES,
            ssl=self.ssl,
            logger=logging.getLogger("telephony_bridge.emulator.ws"),
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        logger.info("Gemini Live emulator listening on %s", self.url)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping = True
        server.close()
        await server.wait_closed()
        logger.info("Gemini Live emulator stopped")

    async def __aenter__(self) -> GeminiEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl else "ws"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{V1BETA_PATH}"

    @property
    def url_v1(self) -> str:
        return self.url.replace(V1BETA_PATH, V1_PATH)

    async def wait_for_session(self, index: int = 0, timeout: float = 10.0) -> EmulatorSession:
        """Wait until connection ``index`` (0-based) has opened."""
        assert self._new_session is not None, "start() the emulator first"
        async with self._new_session:
            await asyncio.wait_for(
                self._new_session.wait_for(lambda: len(self.sessions) > index), timeout
            )
        return self.sessions[index]

    def refuse_connections(self, seconds: float, status: int = 503) -> None:
        """Answer new connection attempts with HTTP ``status`` for ``seconds``."""
        self._refuse_until = asyncio.get_running_loop().time() + seconds
        self._refuse_status = status

    # -- handshake

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path not in PATHS:
            self.rejected.append((404, parts.path))
            return connection.respond(404, "Not Found\n")
        if asyncio.get_running_loop().time() < self._refuse_until:
            self.refused += 1
            self.rejected.append((self._refuse_status, parts.path))
            logger.info("refusing connection (scripted)")
            return connection.respond(self._refuse_status, "Service Unavailable\n")
        if self.api_key is not None and self.scenario.key_check == "handshake":
            key = request.headers.get("x-goog-api-key")
            if key is None:
                key = (parse_qs(parts.query).get("key") or [None])[0]
            if key is None:
                self.rejected.append((401, parts.path))
                return connection.respond(401, "API key required\n")
            if not secrets.compare_digest(key, self.api_key):
                self.rejected.append((403, parts.path))
                return connection.respond(403, "API key not valid. Please pass a valid API key.\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        path = urlsplit(ws.request.path).path if ws.request else ""
        session = EmulatorSession(
            index=len(self.sessions),
            path=path,
            api_version="v1" if path == V1_PATH else "v1beta",
            started_at=loop.time(),
        )
        self.sessions.append(session)
        assert self._new_session is not None
        async with self._new_session:
            self._new_session.notify_all()
        logger.info("session %d: connection from %s", session.index, ws.remote_address)
        await _Connection(self, session, ws).run()

    # -- conversations and handles

    def _issue_handle(self, conversation: Conversation) -> str:
        handle = secrets.token_urlsafe(24)
        self._handles[handle] = (copy.deepcopy(conversation), asyncio.get_running_loop().time())
        return handle

    def _resume(self, handle: str) -> Conversation:
        entry = self._handles.get(handle)
        if entry is None:
            raise BadRequest("Session resumption handle is invalid or expired.", 1008)
        snapshot, issued = entry
        if asyncio.get_running_loop().time() - issued > self.scenario.handle_ttl_s:
            raise BadRequest("Session resumption handle is invalid or expired.", 1008)
        return copy.deepcopy(snapshot)

    def _new_conversation(self) -> Conversation:
        conv = Conversation(id=len(self.conversations))
        self.conversations.append(conv)
        return conv
