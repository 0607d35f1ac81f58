"""The Starlette app: Twilio's webhook, the Media Stream websocket, health.

Routes::

    POST /twiml            TwiML: <Connect action=/twiml/continue><Stream url=wss://…/media-stream>
    POST /twiml/continue   what Twilio asks when our stream ends: here, hang up
    WS   /media-stream     one call: Twilio Media Stream ⇄ Gemini Live
    GET  /healthz          liveness and the number of active calls
    GET  /metrics          Prometheus metrics
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from .bridge import CallBridge
from .call import CallConfig, CallCore
from .gemini.messages import SetupConfig
from .log import log_event, register_secret
from .metrics import Metrics
from .prompts import DEFAULT_SYSTEM_INSTRUCTION
from .settings import Settings
from .twilio.twiml import connect_twiml, hangup_twiml

logger = logging.getLogger("telephony_bridge.server")

MAX_FORM_BYTES = 64 * 1024


async def _form(request: Request) -> dict[str, str]:
    """Twilio posts application/x-www-form-urlencoded; parsed here without extra dependencies."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _xml(text: str, status: int = 200) -> Response:
    return Response(text, status_code=status, media_type="application/xml")


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


def create_app(settings: Settings) -> Starlette:
    register_secret(settings.gemini_api_key)
    register_secret(settings.twilio_auth_token)
    calls = CallRegistry()
    metrics = Metrics()

    def setup_config() -> SetupConfig:
        return SetupConfig(
            model=settings.gemini_model,
            system_instruction=DEFAULT_SYSTEM_INSTRUCTION,
            voice=settings.voice,
            language=settings.language,
            silence_duration_ms=settings.silence_duration_ms,
        )

    async def twiml(request: Request) -> Response:
        form = await _form(request)
        call_sid = form.get("CallSid", "")
        log_event(logger, "webhook.twiml", call_sid=call_sid)
        return _xml(connect_twiml(
            settings.stream_url,
            action_url=settings.public("/twiml/continue"),
            parameters={"from": form.get("From", "")[:64]},
        ))

    async def twiml_continue(request: Request) -> Response:
        form = await _form(request)
        log_event(logger, "webhook.continue", call_sid=form.get("CallSid", ""))
        return _xml(hangup_twiml())

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "active_calls": len(calls.active)})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    async def media_stream(websocket: WebSocket) -> None:
        await websocket.accept()
        key = id(websocket)

        def finished(core: CallCore) -> None:
            calls.active.pop(key, None)
            calls.finished.append(core)
            metrics.active_calls.dec()

        config = CallConfig(playback_lead_s=settings.playback_lead_ms / 1000)
        bridge = CallBridge(websocket, live_url=settings.gemini_live_url, api_key=settings.gemini_api_key,
                            setup=setup_config(), config=config, on_finish=finished, metrics=metrics)
        calls.active[key] = bridge.core
        metrics.active_calls.inc()
        metrics.calls_total.inc()
        await bridge.run()

    app = Starlette(routes=[
        Route("/twiml", twiml, methods=["POST"]),
        Route("/twiml/continue", twiml_continue, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        WebSocketRoute("/media-stream", media_stream),
    ])
    app.state.settings = settings
    app.state.calls = calls
    app.state.metrics = metrics
    return app


def serve(settings: Settings) -> None:  # pragma: no cover - exercised by the CLI
    import uvicorn

    from .log import setup_logging

    setup_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, ws="websockets-sansio",
                log_level="warning", proxy_headers=True, timeout_graceful_shutdown=30)


__all__: list[Any] = ["create_app", "serve", "CallRegistry"]
