"""The emulator's websocket server: paths, credentials, TLS, scripted refusals, handles.

:class:`GeminiEmulator` listens on loopback (``ws://`` or, given an SSL context, ``wss://``)
at the Gemini API paths (``v1beta`` and ``v1`` ``…GenerativeService.BidiGenerateContent``) and
the Vertex AI ones (``v1beta1`` and ``v1`` ``…LlmBidiService/BidiGenerateContent``); anything
else, or a backend left out of ``backends``, is HTTP 404. Credentials are checked at the upgrade
(:mod:`.auth`): given an ``api_key`` it wants it in ``x-goog-api-key`` or ``?key=`` (missing: 401,
wrong: 403; with ``Scenario.key_check="setup"`` the connection checks a Gemini API key at setup
instead); given an ``oauth`` token endpoint, the Vertex AI path wants ``Authorization: Bearer`` with
a token that endpoint issued and has not seen expire (else 401). A scripted refusal window
(:meth:`GeminiEmulator.refuse_connections`, HTTP 503 by default) comes first. Each accepted
connection is run by a :class:`~.connection._Connection`; the server keeps the recorded sessions,
the conversations and the resumption handles issued (each a snapshot of its conversation).
With ``rest=True`` it also serves REST ``generateContent`` on a second loopback port
(:mod:`.rest`, ``emulator.rest``, ``emulator.rest_url``), for the post-call report.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import secrets
import ssl as ssl_module
import weakref
from collections.abc import Iterable
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from . import auth
from .auth import V1_PATH, V1BETA_PATH, VERTEX_PATH, VERTEX_V1_PATH, Admitted, Refused, TokenChecker
from .clips import CLIPS_DIR, load_clips
from .connection import _Connection
from .records import Conversation, EmulatorSession
from .scenario import Scenario
from .wire import BadRequest

logger = logging.getLogger("telephony_bridge.emulator")

PATHS = (V1BETA_PATH, V1_PATH)
VERTEX_PATHS = (VERTEX_PATH, VERTEX_V1_PATH)
BACKENDS = ("gemini-api", "vertex")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
VOICES_DIR = CLIPS_DIR / "voices"


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
        oauth: TokenChecker | None = None,
        backends: Iterable[str] = BACKENDS,
        rest: bool = False,
    ) -> None:
        self.scenario = scenario or Scenario()
        self.host = host
        self.port = port
        self.api_key = api_key
        self.ssl = ssl
        #: Checks Vertex AI Bearer tokens (a :class:`~telephony_bridge.testing.oauth.TokenEndpoint`).
        self.oauth = oauth
        self.backends = frozenset(backends)
        if not self.backends or not self.backends <= set(BACKENDS):
            raise ValueError(f"backends must be some of {BACKENDS}")
        self.sessions: list[EmulatorSession] = []
        self.conversations: list[Conversation] = []
        self.refused: int = 0
        self.rejected: list[tuple[int, str]] = []  # (HTTP status, path) refused at handshake
        self.clips = load_clips(self.scenario.clips_dir)
        self._voice_clips: dict[str, dict] = {}
        self._check_scenario()
        self._server: Server | None = None
        self._handles: dict[str, tuple[Conversation, float]] = {}
        # connection -> what its upgrade proved (weak: an upgrade that never runs leaves nothing)
        self._admitted: weakref.WeakKeyDictionary[ServerConnection, Admitted] = weakref.WeakKeyDictionary()
        self._refuse_until = 0.0
        self._stopping = False
        self._refuse_status = 503
        self._new_session: asyncio.Condition | None = None  # created in start()
        from .rest import RestEmulator

        #: generateContent (the report), on its own port; None unless ``rest=True``.
        self.rest: RestEmulator | None = (RestEmulator(api_key=api_key, oauth=oauth, backends=self.backends)
                                          if rest else None)

    def clips_for(self, voice: str | None) -> dict:
        """The clips a session with ``voice`` speaks: the voice's own set over the default one."""
        if not voice:
            return self.clips
        if voice not in self._voice_clips:
            folder = VOICES_DIR / voice
            own = load_clips(folder) if (folder / "clips.json").exists() else {}
            self._voice_clips[voice] = {**self.clips, **own}
        return self._voice_clips[voice]

    def _check_scenario(self) -> None:
        for voice in self.scenario.voices:
            sub = self.scenario.for_voice(voice)
            assert sub is not None
            self._check_one(sub, self.clips_for(voice))
        self._check_one(self.scenario, self.clips)

    def _check_one(self, sc: Scenario, clips: dict) -> None:
        names = [sc.greeting, *sc.replies, *(s.then_clip for s in sc.tool_calls if s.then_clip),
                 *(s.while_running for s in sc.tool_calls if s.while_running),
                 *([sc.model_filler] if sc.model_filler else [])]
        missing = sorted({n for n in names if n not in clips})
        if missing:
            raise ValueError(f"scenario names unknown clips: {missing}; have {sorted(clips)}")
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
        if self.rest is not None:
            await self.rest.start()
        logger.info("Gemini Live emulator listening on %s", self.url)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping = True
        if self.rest is not None:
            await self.rest.stop()
        server.close()
        await server.wait_closed()
        logger.info("Gemini Live emulator stopped")

    async def __aenter__(self) -> GeminiEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def origin(self) -> str:
        """``ws://host:port`` (``wss://`` with TLS)."""
        scheme = "wss" if self.ssl else "ws"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The Gemini API (``v1beta``) endpoint."""
        return self.origin + V1BETA_PATH

    @property
    def rest_url(self) -> str | None:
        """``GEMINI_REST_URL`` for a bridge (``rest=True``), else None."""
        return self.rest.url if self.rest is not None else None

    @property
    def url_v1(self) -> str:
        return self.origin + V1_PATH

    @property
    def url_vertex(self) -> str:
        """The Vertex AI (``v1beta1``) endpoint."""
        return self.origin + VERTEX_PATH

    @property
    def base_url(self) -> str:
        """What google-genai takes as ``http_options.base_url`` (it builds the path itself and
        always connects with ``wss://``, so the emulator needs TLS for it)."""
        return self.origin.replace("wss://", "https://", 1).replace("ws://", "http://", 1)

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
        info = auth.PATH_INFO.get(parts.path)
        if info is None or info[0] not in self.backends:
            self.rejected.append((404, parts.path))
            return connection.respond(404, "Not Found\n")
        if asyncio.get_running_loop().time() < self._refuse_until:
            self.refused += 1
            self.rejected.append((self._refuse_status, parts.path))
            logger.info("refusing connection (scripted)")
            return connection.respond(self._refuse_status, "Service Unavailable\n")
        verdict = auth.check(parts.path, parts.query, request.headers, api_key=self.api_key, oauth=self.oauth,
                             key_at_setup=self.scenario.key_check == "setup")
        if isinstance(verdict, Refused):
            self.rejected.append((verdict.status, parts.path))
            return connection.respond(verdict.status, verdict.body + "\n")
        assert isinstance(verdict, Admitted)
        self._admitted[connection] = verdict
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        path = urlsplit(ws.request.path).path if ws.request else ""
        admitted = self._admitted.pop(ws, None) or Admitted(*auth.PATH_INFO[path], None)
        session = EmulatorSession(
            index=len(self.sessions),
            path=path,
            api_version=admitted.api_version,
            backend=admitted.backend,
            auth=admitted.auth,
            quota_project=ws.request.headers.get("x-goog-user-project") if ws.request else None,
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
