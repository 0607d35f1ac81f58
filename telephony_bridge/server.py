"""The Starlette app: Twilio's webhook, the Media Stream websocket, health.

Routes::

    POST /twiml            TwiML: <Connect action=/twiml/continue><Stream url=wss://…/media-stream>
                           with a per-call stream token; over capacity: <Say> busy + <Hangup/>;
                           while Gemini refuses every call (the breaker is open): <Say> the
                           apology + <Hangup/>, no stream, no Gemini connection
    POST /twiml/continue   what Twilio asks when our stream ends: a new stream for a call that
                           is still on (a replica died), <Hangup/> for one that ended on purpose
                           (after <Say> of its last phrase if that was not heard on the stream)
    WS   /media-stream     one call: Twilio Media Stream ⇄ Gemini Live
    GET  /healthz          liveness, the number of active calls, the refusal breaker (public)
    GET  /metrics          Prometheus metrics (operator token; 404 when none is set)
    GET  /calls/{sid}      a call's record: transcripts, notes, tool calls (operator token)
    GET  /calls/{sid}/report  the post-call report (operator token; telephony_bridge.report)

Every request is checked at the door before it costs anything (see
:mod:`telephony_bridge.security`): webhooks by Twilio's signature, streams by the upgrade's
signature and then the stream token in ``start``, which this module reads itself before it
hands the socket (and the frames already read) to :class:`~telephony_bridge.bridge.CallBridge`.
No Gemini connection exists until both checks pass.

(A little over the ~450-line guideline: the routes share the app's state — settings, store,
tokens, the refusal breaker and its probe — as closures of :func:`create_app`; the breaker's
wiring is the candidate to move out next.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
from collections import deque
from typing import Any

from prometheus_client import Counter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from . import call_state
from .bridge import CallBridge
from .call import CallConfig, CallCore
from .errors import ConfigError, TwilioProtocolError
from .gemini.backend import LiveBackend, backend_from_settings
from .gemini.breaker import RefusalBreaker
from .gemini.messages import SetupConfig, build_setup
from .gemini.probe import probe
from .gemini.profiles import BLOCKING, profile_for, startup_warning
from .gemini.refusal import Refusal
from .log import log_event, register_secret
from .metrics import Metrics
from .echo_gate import EchoGate
from .media_socket import PROTOCOL_PATH, asgi_frame
from .interview_tools import builtin_tools
from .call.handoff import build_panel
from .persona import Persona, load_persona
from .prompt_audio import load_phrase_book
from .report.service import ReportService
from .store import CallStore, open_store
from .tts_phrases import CallPhrases, PhraseVoices, http_fetcher
from .tools import ToolRegistry, with_delay
from .security import (
    MAX_FORM_BYTES, TOKEN_PARAMETER, StreamTokens, TwilioSignatures, install_header_redaction, operator_only,
    public_request_url, read_form, startup_warnings,
)
from .settings import Settings
from .recording.service import open_recordings, recording_parameters, with_recording_notice
from .review import install_review
from .twilio.events import Connected, Event, Start, Unknown, parse_event
from .twilio.twiml import connect_twiml, hangup_twiml, redirect_twiml
from .drain import Drain, DrainPlan

logger = logging.getLogger("telephony_bridge.server")

#: What a caller hears when every line is taken.
BUSY_MESSAGE = "Sorry, all our lines are busy right now. Please call again in a few minutes."
#: Twilio sends ``connected`` then ``start`` at once; a stream that has not started by then is refused.
START_TIMEOUT_S = 10.0
#: Frames accepted before ``start`` (``connected``, perhaps an event this version does not know).
MAX_FRAMES_BEFORE_START = 4
#: Websocket close codes: policy violation (failed a check), try again later (over capacity).
CLOSE_POLICY = 1008
CLOSE_BUSY = 1013
_SID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: <Say language> for the bundled phrase languages (a persona's own tag wins when it matches).
SAY_LANGUAGES = {"en": "en-US", "es": "es-ES", "de": "de-DE", "fr": "fr-FR"}
#: Breaker probes: the first delay is a setting; then doubling, up to this.
MAX_PROBE_DELAY_S = 300.0
PROBE_TIMEOUT_S = 10.0


def _xml(text: str, status: int = 200) -> Response:
    return Response(text, status_code=status, media_type="application/xml")


def _draining_xml(text: str) -> Response:
    # Connection: close: the next request opens a new connection, which the load balancer sends
    # to a ready replica (a kept-alive one would come back here).
    return Response(text, media_type="application/xml", headers={"Connection": "close"})


def _safe_sid(value: Any) -> str | None:
    """A SID fit for a log line (peer input: anything else is not logged)."""
    return value if isinstance(value, str) and _SID.fullmatch(value) else None


class CallRegistry:
    """Calls in progress and the most recent finished ones (for the demo and tests)."""

    def __init__(self, keep: int = 100) -> None:
        self.active: dict[int, CallCore] = {}
        self.finished: deque[CallCore] = deque(maxlen=keep)

    def by_call_sid(self, call_sid: str) -> CallCore | None:
        for core in list(self.active.values()) + list(self.finished):
            if core.call_sid == call_sid:
                return core
        return None


def call_config(settings: Settings, persona: Persona | None = None, tools: ToolRegistry | None = None) -> CallConfig:
    """The call core's configuration from the settings (limits included), the persona and, for
    which tool calls block the model, the tools' declared behaviour on the configured model."""
    config = CallConfig(
        playback_lead_s=settings.playback_lead_ms / 1000,
        pause_on_onset=settings.barge_pause,
        pause_onset_frames=max(1, round(settings.barge_onset_ms / 20)),
        pause_confirm_s=settings.barge_confirm_ms / 1000,
        max_call_s=float(settings.max_call_s),
        no_media_timeout_s=float(settings.no_media_timeout_s),
        input_chunk_ms=settings.gemini_input_chunk_ms,
    )
    if persona is not None:
        config.greeting_prompt = persona.greeting
        config.tool_names = frozenset(persona.tools)
        if tools is not None:
            profile = profile_for(settings.gemini_model)
            config.blocking_tools = frozenset(
                name for name in persona.tools
                if (tool := tools.get(name)) is not None
                and profile.effective_behavior(tool.behavior.value) == BLOCKING)
    return config


def probe_delays(first_s: float, cap_s: float = MAX_PROBE_DELAY_S) -> tuple[float, ...]:
    """``first_s``, doubling, up to ``cap_s`` (the last one repeats)."""
    delays = [first_s]
    while delays[-1] * 2 < cap_s:
        delays.append(delays[-1] * 2)
    delays.append(max(cap_s, first_s))
    return tuple(delays)


def say_language(persona: Persona, phrase_language: str) -> str:
    """The <Say language> for the phrase book's language."""
    tag = persona.language or ""
    if tag.split("-", 1)[0].lower() == phrase_language and "-" in tag:
        return tag
    return SAY_LANGUAGES.get(phrase_language, "en-US")


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Websocket limits for uvicorn, shared by ``serve`` and any embedded server.

    ``ws_max_size``: a Twilio frame over the limit closes the socket (1009) before it is ever
    buffered whole; the parser's own cap (64 KiB) stands behind it. No permessage-deflate:
    Twilio does not need it and a compressed frame is CPU spent on a peer's behalf.
    ``ws``: uvicorn's websockets-sansio protocol with the media stream's direct mode
    (media_socket.py: no queue, task switch or write system call per frame).
    """
    return {
        "ws": PROTOCOL_PATH,
        "ws_max_size": settings.twilio_max_message_bytes,
        "ws_per_message_deflate": False,
    }


def builtin_tool_registry(settings: Settings) -> ToolRegistry:
    """The built-in tools the server offers; ``settings.demo_tool_delays_s`` (demo and tests
    only) slows some down so filler has something to cover."""
    delays = settings.demo_tool_delays_s
    unknown = sorted(set(delays) - {t.name for t in builtin_tools()})
    if unknown:
        raise ConfigError(f"demo_tool_delays_s names unknown tool {unknown[0]!r}")
    return ToolRegistry(with_delay(t, float(delays.get(t.name, 0.0))) for t in builtin_tools())


def setup_config(settings: Settings, persona: Persona, backend: LiveBackend,
                 declarations: list[dict[str, Any]]) -> SetupConfig:
    """The session setup every call of this server sends (the model path is the backend's)."""
    fields = persona.setup_fields()
    if settings.silence_duration_ms is not None:
        fields["silence_duration_ms"] = settings.silence_duration_ms
    if settings.voice:
        fields["voice"] = settings.voice
    if settings.language:
        fields["language"] = settings.language
    return SetupConfig(model=backend.model_path(settings.gemini_model), function_declarations=declarations,
                       session_resumption=True,
                       compression_trigger_tokens=settings.compression_trigger_tokens,
                       compression_target_tokens=settings.compression_target_tokens, **fields)


def create_app(settings: Settings, *, call_overrides: dict[str, Any] | None = None) -> Starlette:
    """The app. ``call_overrides``: CallConfig fields to change (tests and the demo)."""
    if settings.twilio_signature_check and not settings.twilio_auth_token:
        raise ConfigError("TWILIO_AUTH_TOKEN is not set: the Twilio auth token that signs webhooks "
                          "(TWILIO_SIGNATURE_CHECK=off skips the check, for local development only)")
    for secret in (settings.gemini_api_key, settings.twilio_auth_token, settings.stream_token_secret,
                   settings.operator_token):
        register_secret(secret)
    install_header_redaction()  # websockets logs handshake headers (the Gemini key) at DEBUG
    calls = CallRegistry()
    metrics = Metrics()
    rejected = Counter("bridge_rejected", "Requests and streams refused at the front door",
                       ["where", "reason"], registry=metrics.registry)
    signatures = TwilioSignatures(settings.twilio_auth_token) if settings.twilio_signature_check else None
    tokens = StreamTokens(settings.stream_token_secret, settings.stream_token_ttl_s)
    #: Calls whose stream was refused for capacity: their <Connect action> request hears "busy".
    busy_calls: deque[str] = deque(maxlen=256)
    persona = load_persona(settings.persona_path)
    tools = builtin_tool_registry(settings)
    declarations = tools.declarations(persona.tools)
    backend = backend_from_settings(settings)
    phrases = load_phrase_book(persona.filler_language)
    #: The interview panel's seats (call/handoff.py): each interviewer's voice, instruction, tools.
    panel = build_panel(persona, setup_config(settings, persona, backend, declarations), tools,
                        settings.gemini_model)
    store: CallStore = open_store(settings.redis_url, settings.sqlite_path)
    reports = ReportService(settings, store, backend)  # the worker starts with the lifespan
    #: Phrases in the agent's voice (Gemini TTS, cached in memory and the store; tts_phrases.py).
    phrase_voices = PhraseVoices(http_fetcher(backend)
                                 if settings.tts_phrases else None, store)
    voices = [p.voice for p in persona.panel] or [v for v in (settings.voice or persona.voice,) if v]
    #: What the caller hears (in the persona's language) when the bridge cannot go on and no
    #: stream can carry the pre-rendered phrase: the same words, spoken by Twilio's <Say>.
    goodbye_text = phrases.texts("goodbye_error")[0]
    goodbye_language = say_language(persona, phrases.language)
    breaker = RefusalBreaker(settings.breaker_calls, probe_delays(settings.breaker_probe_s))
    probing: list[asyncio.Task[None]] = []  # the one probe task, while the breaker is open
    recordings = open_recordings(settings)  # None: calls are not recorded (recording/)
    drain = Drain(DrainPlan(settings.drain_finish_s, settings.drain_handover_s, settings.drain_max_s))

    def apology_twiml() -> str:
        return hangup_twiml(say=goodbye_text, language=goodbye_language)

    def configure_call() -> CallConfig:
        config = call_config(settings, persona, tools)
        for name, value in (call_overrides or {}).items():
            setattr(config, name, value)
        return config

    def gemini_outcome(refusal: Refusal | None) -> None:
        """One call's verdict on Gemini (first setupComplete, or why it refused): the breaker's input."""
        now = asyncio.get_running_loop().time()
        if refusal is None:
            was_open = breaker.open
            breaker.call_ready(now)
            if was_open:
                metrics.breaker_open.set(0)
                log_event(logger, "gemini.breaker_closed", by="call")
            return
        if breaker.call_refused(refusal, now):
            metrics.breaker_open.set(1)
            metrics.breaker_trips.labels(kind=refusal.kind.value).inc()
            log_event(logger, "gemini.breaker_open", logging.ERROR, kind=refusal.kind.value,
                      model=settings.gemini_model, reason=refusal.reason, calls=breaker.trip_after,
                      next_probe_in_s=breaker.probe_delays[0])
            if not probing or probing[0].done():  # one probe loop at a time, ever
                probing[:] = [asyncio.get_running_loop().create_task(probe_until_closed(), name="gemini-probe")]

    async def probe_until_closed() -> None:
        """While the breaker is open: one probe connection at a time, spaced out by its delays."""
        loop = asyncio.get_running_loop()
        while breaker.open:
            if not breaker.probe_due(loop.time()):
                assert breaker.next_probe_at is not None
                await asyncio.sleep(max(0.01, breaker.next_probe_at - loop.time()))
                continue
            breaker.probe_started(loop.time())
            result = await probe(backend, build_setup(setup_config(settings, persona, backend, declarations)),
                                 timeout=PROBE_TIMEOUT_S)
            breaker.probe_finished(result, loop.time())
            outcome = "ok" if result is None else result.kind.value
            metrics.breaker_probes.labels(result=outcome).inc()
            log_event(logger, "gemini.probe", logging.INFO if result is None else logging.WARNING,
                      result=outcome, reason=None if result is None else result.reason,
                      next_probe_in_s=None if breaker.next_probe_at is None
                      else round(breaker.next_probe_at - loop.time(), 1))
        metrics.breaker_open.set(0)
        log_event(logger, "gemini.breaker_closed", by="probe")

    async def stop_background() -> None:
        for task in probing:
            task.cancel()
        await asyncio.gather(*probing, return_exceptions=True)
        await phrase_voices.aclose()

    def refuse(where: str, reason: str, **fields: Any) -> None:
        rejected.labels(where=where, reason=reason).inc()
        log_event(logger, f"{where}.rejected", logging.WARNING, reason=reason, **fields)

    async def signed_form(request: Request, path: str) -> dict[str, str] | Response:
        """The webhook's form, once its signature checks out; else the response to send."""
        pairs = await read_form(request, MAX_FORM_BYTES)
        if pairs is None:
            refuse("webhook", "too-large", path=path)
            return PlainTextResponse("Payload Too Large", status_code=413)
        form = dict(pairs)
        if signatures is not None:
            signature = request.headers.get("x-twilio-signature")
            url = public_request_url(settings.public_url, path, request.url.query)
            if not signatures.webhook_ok(url, pairs, signature):
                refuse("webhook", "missing-signature" if not signature else "bad-signature",
                       path=path, call_sid=_safe_sid(form.get("CallSid")))
                return PlainTextResponse("Forbidden", status_code=403)
        return form

    async def twiml(request: Request) -> Response:
        form = await signed_form(request, "/twiml")
        if isinstance(form, Response):
            return form
        call_sid = _safe_sid(form.get("CallSid"))
        if call_sid is None:
            refuse("webhook", "no-call-sid", path="/twiml")
            return PlainTextResponse("Bad Request", status_code=400)
        if drain.draining:  # another replica takes the call (drain.py)
            refuse("webhook", "draining", path="/twiml", call_sid=call_sid)
            return _draining_xml(redirect_twiml(settings.public("/twiml"), pause_s=1))
        if len(calls.active) >= settings.max_concurrent_calls:
            refuse("webhook", "busy", path="/twiml", call_sid=call_sid, active_calls=len(calls.active))
            return _xml(hangup_twiml(say=BUSY_MESSAGE))
        if not breaker.allows_calls:
            # Gemini refuses every call for a configuration reason: no stream, no connection.
            assert breaker.refusal is not None
            refuse("webhook", "gemini-refusing", path="/twiml", call_sid=call_sid, kind=breaker.refusal.kind.value)
            return _xml(apology_twiml())
        log_event(logger, "webhook.twiml", call_sid=call_sid)
        return _xml(connect_twiml(
            settings.stream_url,
            action_url=settings.public("/twiml/continue"),
            parameters={"from": form.get("From", "")[:64], TOKEN_PARAMETER: tokens.issue(call_sid),
                        **recording_parameters(request.query_params)},
        ))

    async def twiml_continue(request: Request) -> Response:
        form = await signed_form(request, "/twiml/continue")
        if isinstance(form, Response):
            return form
        call_sid = _safe_sid(form.get("CallSid"))
        if drain.draining:
            log_event(logger, "webhook.continue", call_sid=call_sid, action="redirect-draining")
            return _draining_xml(redirect_twiml(settings.public("/twiml/continue")))
        if call_sid is not None and call_sid in busy_calls:
            log_event(logger, "webhook.continue", call_sid=call_sid, action="busy")
            return _xml(hangup_twiml(say=BUSY_MESSAGE))
        # A stream that ended while its call is still "active" was cut (a replica died, the
        # network broke): a new stream resumes the Gemini session from the shared store.
        # A call that ended on purpose (end_call, hang-up, an unrecoverable error) hangs up.
        state = await store.get_call_state(call_sid) if call_sid is not None else None
        parsed = call_state.parse(state)
        if parsed.ended:
            # Refused by Gemini, end_call, hung up: once. Say the goodbye if the stream could not.
            log_event(logger, "webhook.continue", call_sid=call_sid, action="hangup", state=state,
                      say=parsed.say_goodbye)
            return _xml(apology_twiml() if parsed.say_goodbye else hangup_twiml())
        if parsed.active and not breaker.allows_calls:
            log_event(logger, "webhook.continue", call_sid=call_sid, action="apology", state=state)
            return _xml(apology_twiml())
        if parsed.active and len(calls.active) < settings.max_concurrent_calls:
            log_event(logger, "webhook.continue", call_sid=call_sid, action="reconnect")
            return _xml(connect_twiml(
                settings.stream_url,
                action_url=settings.public("/twiml/continue"),
                parameters={"from": form.get("From", "")[:64], TOKEN_PARAMETER: tokens.issue(call_sid),
                            **recording_parameters(request.query_params)},
            ))
        log_event(logger, "webhook.continue", call_sid=call_sid, action="hangup", state=state)
        return _xml(hangup_twiml())

    async def healthz(request: Request) -> Response:
        # "ok" is liveness: a process whose Gemini refuses calls is alive (restarting it fixes
        # nothing); "gemini" says whether new calls get a stream or the apology.
        return JSONResponse({"ok": True, "active_calls": len(calls.active), "draining": drain.draining,
                             "gemini": breaker.snapshot(asyncio.get_running_loop().time())})

    async def readyz(request: Request) -> Response:
        # Readiness: unready while draining (the load balancer stops sending new requests).
        if drain.draining:
            return JSONResponse({"ready": False, "draining": True, "active_calls": len(calls.active)},
                                status_code=503)
        return JSONResponse({"ready": True, "active_calls": len(calls.active)})

    @operator_only(settings.operator_token)
    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @operator_only(settings.operator_token)
    async def call_record(request: Request) -> Response:
        call_sid = _safe_sid(request.path_params["call_sid"])
        live = calls.by_call_sid(call_sid) if call_sid else None
        if live is not None and live.ended is None:
            return JSONResponse(live.record())
        record = await store.get_record(call_sid) if call_sid else None
        if record is None:
            return JSONResponse({"error": "no such call"}, status_code=404)
        return JSONResponse(record)

    @operator_only(settings.operator_token)
    async def call_report(request: Request) -> Response:
        call_sid = _safe_sid(request.path_params["call_sid"])
        report = await store.get_report(call_sid) if call_sid else None
        if report is None:
            return JSONResponse({"error": "no report for this call"}, status_code=404)
        return JSONResponse(report)

    async def first_frames(websocket: WebSocket) -> tuple[list[str | bytes], Start | None, str]:
        """Read up to ``start``: (frames read, the start event or None, why not)."""
        frames: list[str | bytes] = []
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                while len(frames) <= MAX_FRAMES_BEFORE_START:
                    message = await websocket.receive()
                    if message["type"] == "websocket.disconnect":
                        return frames, None, "disconnected"
                    data = asgi_frame(message)
                    frames.append(data)
                    try:
                        event: Event = parse_event(data)
                    except TwilioProtocolError as err:
                        if err.fatal:
                            return frames, None, f"bad-frame:{err.kind}"
                        continue
                    if isinstance(event, Start):
                        return frames, event, ""
                    if not isinstance(event, (Connected, Unknown)):
                        return frames, None, "no-start"
        except TimeoutError:
            return frames, None, "start-timeout"
        return frames, None, "no-start"

    async def call_was_live(call_sid: str) -> bool:
        """This stream resumes a call already under way (a reconnect, maybe from another replica)."""
        try:
            return await store.get_call_state(call_sid) == call_state.ACTIVE
        except Exception:  # the store is down: the call still goes on
            return False

    async def media_stream(websocket: WebSocket) -> None:
        await websocket.accept()
        # 1. The upgrade's signature: over the URL exactly as written in the TwiML, no params.
        if signatures is not None:
            signature = websocket.headers.get("x-twilio-signature")
            if not signatures.stream_ok(settings.stream_url, signature):
                refuse("stream", "missing-signature" if not signature else "bad-signature")
                await websocket.close(code=CLOSE_POLICY)
                return
        # 2. The per-call token, which comes in `start`: read up to it ourselves.
        frames, start, why = await first_frames(websocket)
        if start is None:
            refuse("stream", why)
            if why != "disconnected":
                await websocket.close(code=CLOSE_POLICY)
            return
        problem = tokens.check(start.custom_parameters.get(TOKEN_PARAMETER), start.call_sid)
        if problem is not None:
            refuse("stream", f"token-{problem}", call_sid=start.call_sid)
            await websocket.close(code=CLOSE_POLICY)
            return
        # 3. Capacity (the webhook already turned callers away; this covers a burst of answers).
        if drain.draining:  # Twilio asks <Connect action>, which another replica answers
            refuse("stream", "draining", call_sid=start.call_sid)
            await websocket.close(code=CLOSE_BUSY)
            return
        if len(calls.active) >= settings.max_concurrent_calls:
            refuse("stream", "busy", call_sid=start.call_sid)
            busy_calls.append(start.call_sid)
            await websocket.close(code=CLOSE_BUSY)
            return

        key = id(websocket)

        def finished(core: CallCore) -> None:
            drain.untrack(bridge)
            calls.active.pop(key, None)
            calls.finished.append(core)
            metrics.active_calls.dec()
            reports.call_finished(core)  # queues the report; the record is already saved

        recording = await recordings.open_call(start.call_sid, start.custom_parameters, t0=0.0,
                                               resumed=lambda: call_was_live(start.call_sid)) if recordings else None
        # The phrases this call plays: the current interviewer's voice once rendered, else bundled.
        call_phrases = CallPhrases(phrase_voices, load_phrase_book(persona.filler_language), persona.language)
        # Only now does a Gemini connection open (CallBridge.run).
        bridge = CallBridge(websocket, backend=backend,
                            setup=panel.seat(panel.first).setup if panel is not None
                            else setup_config(settings, persona, backend, declarations), panel=panel,
                            config=with_recording_notice(configure_call(), persona, recording), on_finish=finished,
                            recordings=recordings, recording=recording,
                            metrics=metrics, first_frames=frames, phrases=call_phrases, gate=EchoGate(),
                            tools=tools, store=store, gemini_max_message_bytes=settings.gemini_max_message_bytes,
                            on_gemini=gemini_outcome)
        calls.active[key] = bridge.core
        core = bridge.core
        call_phrases.voice_of = lambda: core.session.setup.voice
        call_phrases.caller_text = lambda: next((e["text"] for e in core.transcript if e["role"] == "caller"), None)
        for voice in voices:  # first need: render what is not cached yet, in the background
            for kind in ("filler", "one_moment", "apology"):
                phrase_voices.want(voice, call_phrases.language(), kind)
        drain.track(bridge)
        metrics.active_calls.inc()
        metrics.calls_total.inc()
        await bridge.run()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        if recordings is not None:
            recordings.start()  # orphaned spools uploaded, old recordings deleted
        await reports.start()  # resumes deliveries a previous process left pending
        yield
        await reports.stop()
        if recordings is not None:
            await recordings.stop()
        await stop_background()
        await store.close()

    app = Starlette(lifespan=lifespan, routes=[
        Route("/twiml", twiml, methods=["POST"]),
        Route("/twiml/continue", twiml_continue, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/calls/{call_sid}", call_record, methods=["GET"]),
        Route("/calls/{call_sid}/report", call_report, methods=["GET"]),
        WebSocketRoute("/media-stream", media_stream),
    ])
    app.state.settings = settings
    app.state.store = store
    app.state.persona = persona
    app.state.phrase_voices = phrase_voices
    app.state.backend = backend
    app.state.tools = tools
    app.state.calls = calls
    app.state.metrics = metrics
    app.state.stream_tokens = tokens
    app.state.breaker = breaker
    app.state.recordings = recordings
    app.state.reports = reports
    install_review(app, settings, store, recordings, calls)  # /calls, /calls/{sid}/view (review/)
    app.state.drain = drain
    #: Cancels the breaker's probe task (the lifespan does it; so must an embedder without one).
    app.state.stop_background = stop_background
    return app


def warn_at_startup(settings: Settings, stream: Any = None) -> list[str]:
    """Say what is unsafe about this configuration: on stderr (a banner for the signature
    check) and as WARNING log lines. Returns the lines."""
    stream = sys.stderr if stream is None else stream
    lines = startup_warnings(settings)
    model_line = startup_warning(settings.gemini_model)  # once per process: serve calls this once
    if model_line:
        lines.append(model_line)
    for line in lines:
        if line.startswith("TWILIO_SIGNATURE_CHECK"):
            bar = "!" * 78
            print(f"{bar}\n!! WARNING: {line}\n{bar}", file=stream, flush=True)
        else:
            print(f"warning: {line}", file=stream, flush=True)
        log_event(logger, "serve.insecure" if line.startswith("TWILIO") else "serve.warning",
                  logging.WARNING, message=line)
    return lines


def serve(settings: Settings) -> None:
    from .log import setup_logging

    setup_logging(settings.log_level)
    app = create_app(settings)  # refuses a configuration that cannot check signatures
    warn_at_startup(settings)
    from .serving import run_server

    run_server(app, settings)


__all__: list[Any] = ["create_app", "serve", "CallRegistry", "call_config", "uvicorn_options", "warn_at_startup",
                      "setup_config", "builtin_tool_registry"]
