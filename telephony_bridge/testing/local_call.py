"""A whole call on this machine: the bridge on a loopback port, the Gemini Live emulator and
the Twilio caller simulator talking to it over real websockets.

Used by ``telephony-bridge demo``, the end-to-end tests and the benchmarks, so they all run the
same real pieces the same way. :func:`place_local_call` is the one-liner; :class:`LocalBridge`
is the bridge alone (uvicorn in the current event loop, limits as ``serve`` sets them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn

from ..call import CallCore
from ..server import create_app, uvicorn_options
from ..settings import Settings
from .gemini import GeminiEmulator, Scenario
from .twilio import CallerScript, CallerSimulator, CallResult
from .wav import ulaw_to_pcm16

DEMO_KEY = "demo-" + "k" * 8  # the emulator checks it; it is not a real key


def founder_turns() -> list[bytes]:
    """The bundled founder's answers (μ-law 8 kHz), in order."""
    folder = resources.files("telephony_bridge") / "assets" / "founder"
    index = json.loads((folder / "turns.json").read_text())
    items = index["turns"] if isinstance(index, dict) else index
    return [(folder / item["file"]).read_bytes() for item in items]


def sound(name: str) -> bytes:
    """A short non-turn sound (``cough``, ``mhm``: μ-law 8 kHz) from testing/sounds/."""
    return (resources.files("telephony_bridge") / "testing" / "sounds" / f"{name}.ulaw").read_bytes()


def _bind_loopback() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class LocalBridge:
    """The bridge app served by uvicorn on a loopback port, inside the current event loop."""

    def __init__(self, settings: Settings, *, call_overrides: dict[str, Any] | None = None,
                 ws: str | None = None) -> None:
        self.sock = _bind_loopback()
        port = self.sock.getsockname()[1]
        # No REST endpoint given (GEMINI_REST_URL): nothing to render TTS phrases, so they stay the
        # bundled clips (the emulator's REST side serves TTS when a test attaches a TtsEmulator).
        tts = settings.tts_phrases and settings.gemini_rest_url is not None
        self.settings = replace(settings, public_url=f"http://127.0.0.1:{port}", host="127.0.0.1", port=port,
                                tts_phrases=tts)
        self.app = create_app(self.settings, call_overrides=call_overrides)
        # ``ws``: another uvicorn websocket protocol than serve's (the media stream then runs over
        # plain ASGI: media_socket.AsgiMediaSocket).
        options = {**uvicorn_options(self.settings), **({"ws": ws} if ws else {})}
        config = uvicorn.Config(self.app, **options, log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=3, log_config=None)  # as serve: setup_logging's JSON
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def twiml_url(self) -> str:
        return self.settings.public("/twiml")

    async def start(self) -> None:
        await self.app.state.reports.start()  # lifespan="off": the report worker is started here
        self._task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        deadline = time.monotonic() + 10
        while not self.server.started:
            if self._task.done():
                self._task.result()
            if time.monotonic() > deadline:
                raise RuntimeError("bridge did not start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await self._task
        self.sock.close()
        await self.app.state.stop_background()  # lifespan="off": nobody else stops the probe
        await self.app.state.reports.stop()
        await self.app.state.store.close()

    async def finished_call(self, call_sid: str, timeout: float = 10.0) -> CallCore:
        calls = self.app.state.calls
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for core in calls.finished:
                if core.call_sid == call_sid:
                    return core
            await asyncio.sleep(0.05)
        raise RuntimeError(f"the bridge never finished call {call_sid}")


def longest_line_silence(result: Any) -> float:
    """Longest stretch (s) after the first agent audio where neither the caller nor the agent
    made a sound: what a caller perceives as a dead line."""
    import numpy as np

    def levels(pcm: bytes) -> Any:
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
        n = len(x) // 160
        return np.sqrt(np.mean(x[: n * 160].reshape(n, 160) ** 2, axis=1))

    heard, sent = levels(result.heard_pcm16()), levels(result.sent_pcm16())
    n = min(len(heard), len(sent))
    quiet = (heard[:n] < 0.005) & (sent[:n] < 0.01)
    loud = np.flatnonzero(~quiet)
    first_agent = np.flatnonzero(heard[:n] >= 0.005)
    if not len(first_agent) or not len(loud):
        return 0.0
    longest = run = 0
    for q in quiet[first_agent[0]: loud[-1]]:
        run = run + 1 if q else 0
        longest = max(longest, run)
    return round(longest * 0.02, 2)


def dead_air_after_turns(result: Any, speech_rms: float = 0.05) -> list[float]:
    """For each caller turn: seconds from the caller's end of speech to the next agent audio the
    caller heard (0 if it was already playing; to the end of the call if nothing came). The
    first entry is the greeting's wait, from the start of the call to the first agent audio."""
    import numpy as np

    pcm = ulaw_to_pcm16(result.voice_ulaw) if result.voice_ulaw else b""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    n = len(x) // 160
    levels = np.sqrt(np.mean(x[: n * 160].reshape(n, 160) ** 2, axis=1)) if n else np.zeros(0)
    spans = sorted(result.playback)
    call_end = result.duration

    def wait_from(t: float) -> float:
        for a, b in spans:
            if b > t + 1e-9:
                return round(max(0.0, a - t), 3)
        return round(max(0.0, call_end - t), 3)

    waits = [wait_from(0.0)]
    starts = [e["t"] for e in result.events if e["kind"] == "say_start"]
    ends = [e["t"] for e in result.events if e["kind"] == "say_end"]
    for start, end in zip(starts, ends):
        lo, hi = int(round(start / 0.02)), min(n, int(round(end / 0.02)))
        loud = np.flatnonzero(levels[lo:hi] >= speech_rms)
        if len(loud):
            waits.append(wait_from((lo + loud[-1] + 1) * 0.02))
    return waits


@dataclass
class LocalCall:
    """What one local call left behind: the caller's view, the bridge's, Gemini's."""

    result: CallResult
    core: CallCore
    emulator: GeminiEmulator
    bridge: LocalBridge


#: The Google Cloud project and location of a local Vertex AI call (names only: nothing leaves).
VERTEX_PROJECT = "local-proj-1"
VERTEX_LOCATION = "us-central1"


async def place_local_call(
    script: CallerScript,
    scenario: Scenario | None = None,
    *,
    timeout: float = 90.0,
    call_overrides: dict[str, Any] | None = None,
    simulator: dict[str, Any] | None = None,
    while_up: Callable[[LocalBridge, CallResult], Awaitable[Any]] | None = None,
    vertex: bool = False,
    rest_faults: list[Any] | None = None,
    tts: Any = None,
    ws: str | None = None,
    **settings: Any,
) -> LocalCall:
    """Start the emulator and a bridge, place one call with ``script``, stop both.

    ``settings``: :class:`Settings` fields for the bridge (the key, URLs and a fresh Twilio
    token are filled in); ``simulator``: extra :class:`CallerSimulator` arguments (``echo``,
    ``on_event``); ``while_up``: awaited after the call while the bridge still serves (to read
    ``/calls``, ``/metrics``). ``vertex``: the bridge uses Vertex AI (``GEMINI_BACKEND=vertex``
    with a service-account key file) and the emulator serves only the Vertex AI path, accepting
    only Bearer tokens from a loopback OAuth endpoint (:mod:`.oauth`) that google-auth gets them
    from through the key's ``token_uri``. The emulator also serves ``generateContent`` (the
    post-call report) and the bridge is pointed at it; ``rest_faults``: its
    :class:`~.gemini.rest.RestFault` list.
    ``tts``: a :class:`~.gemini.tts.TtsEmulator` that the emulator's REST side hands Gemini TTS
    requests to, for the bridge's phrases in the agent's voice (without one, TTS phrases are
    off: bundled clips). ``ws``: the bridge's uvicorn websocket protocol (default serve's).
    """
    if tts is not None:
        settings = {"tts_phrases": True, **settings}
    settings.setdefault("tts_phrases", False)
    with contextlib.ExitStack() as stack:
        if vertex:
            from .oauth import TokenEndpoint  # needs cryptography (the test extra)

            oauth = stack.enter_context(TokenEndpoint())
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="tb-vertex-"))
            key_file = oauth.write(Path(folder) / "service-account.json", oauth.service_account_info(VERTEX_PROJECT))
            emulator = GeminiEmulator(scenario or Scenario(), oauth=oauth, backends=("vertex",), rest=True)
            backend: dict[str, Any] = dict(gemini_backend="vertex", google_cloud_project=VERTEX_PROJECT,
                                           google_cloud_location=VERTEX_LOCATION,
                                           google_application_credentials=key_file)
        else:
            emulator = GeminiEmulator(scenario or Scenario(), api_key=DEMO_KEY, rest=True)
            backend = dict(gemini_api_key=DEMO_KEY)
        assert emulator.rest is not None
        emulator.rest.faults.extend(rest_faults or [])
        emulator.rest.tts = tts
        await emulator.start()
        live_url = emulator.url_vertex if vertex else emulator.url
        bridge = LocalBridge(Settings(public_url="http://127.0.0.1", gemini_live_url=live_url,
                                      gemini_rest_url=emulator.rest_url,
                                      twilio_auth_token=settings.pop("twilio_auth_token", None) or secrets.token_hex(16),
                                      **{**backend, **settings}),
                             call_overrides=call_overrides, ws=ws)
        await bridge.start()
        try:
            sim = CallerSimulator(bridge.twiml_url, script, auth_token=bridge.settings.twilio_auth_token,
                                  timeout=timeout, **(simulator or {}))
            result = await sim.run()
            core = await bridge.finished_call(result.call_sid)
            if while_up is not None:
                await while_up(bridge, result)
        finally:
            await bridge.stop()
            await emulator.stop()
        return LocalCall(result, core, emulator, bridge)


def greetings(emulator: GeminiEmulator) -> int:
    """How many times the emulated model greeted, across all connections (more than 1: a bug)."""
    return sum(1 for s in emulator.sessions for r in s.replies if r.kind == "greeting")
