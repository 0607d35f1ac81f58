"""The review routes: login, /calls, /calls/{sid}/view, /calls/{sid}/recording.wav, assets.

Registered ahead of the JSON ``GET /calls/{call_sid}`` (which keeps its bearer token): the
paths here are distinct from it. With no operator token configured these pages do not exist
(404), like every private endpoint. A page without a valid cookie redirects to the login form;
the recording answers 401.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from ..security import read_form
from . import auth
from .data import call_record, load_channels, recent_rows, report_for
from .model import call_view
from .render import ASSETS, asset, list_page, login_page, view_page

_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Everything comes from the app itself; no inline script runs (the data is JSON, not code).
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self'; "
                               "style-src 'self'; script-src 'self'; frame-ancestors 'none'",
}


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=_SECURITY_HEADERS)


def review_routes(settings: Any, store: Any, recordings: Any, calls: Any) -> list[Route]:
    token = settings.operator_token
    secure = settings.public_url.startswith("https://")
    throttle = auth.LoginThrottle()

    def signed_in(request: Request) -> bool:
        return auth.valid(token, request.cookies.get(auth.COOKIE), time.time())

    def guard(request: Request, page: bool = True) -> Response | None:
        if not token:
            return PlainTextResponse("Not Found", status_code=404)
        if signed_in(request):
            return None
        if page:
            return RedirectResponse(f"/calls/login?next={request.url.path}", status_code=303)
        return PlainTextResponse("Unauthorized", status_code=401)

    async def login_form(request: Request) -> Response:
        if not token:
            return PlainTextResponse("Not Found", status_code=404)
        return _html(login_page(next_path=_safe_next(request.query_params.get("next"))))

    async def login(request: Request) -> Response:
        if not token:
            return PlainTextResponse("Not Found", status_code=404)
        pairs = await read_form(request, 4096)
        if pairs is None:
            return PlainTextResponse("Payload Too Large", status_code=413)
        form = dict(pairs)
        given = form.get("token") or ""
        next_path = _safe_next(form.get("next"))
        client, now = request.client.host if request.client else "?", time.monotonic()
        wait = throttle.retry_after(client, now)
        if wait is not None:
            response = _html(login_page(next_path=next_path, error="Too many wrong tokens: try again later."), 429)
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        if not auth.token_matches(token, given):
            throttle.failed(client, now)
            return _html(login_page(next_path=next_path, error="That is not the operator token."), 401)
        throttle.succeeded(client)
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(auth.COOKIE, auth.issue(token, time.time()), max_age=auth.COOKIE_TTL_S,
                            path="/calls", httponly=True, samesite="strict", secure=secure)
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/calls/login", status_code=303)
        response.delete_cookie(auth.COOKIE, path="/calls", httponly=True, samesite="strict", secure=secure)
        return response

    async def list_calls(request: Request) -> Response:
        denied = guard(request)
        if denied is not None:
            return denied
        return _html(list_page(await recent_rows(store, calls)))

    async def view_call(request: Request) -> Response:
        denied = guard(request)
        if denied is not None:
            return denied
        record = await call_record(request.path_params["call_sid"], store, calls)
        if record is None:
            return _html("<p>No such call.</p>", 404)
        left, right = await load_channels(record, recordings)
        view = call_view(record, left, right, await report_for(store, record["call_sid"]))
        return _html(view_page(view))

    async def recording_wav(request: Request) -> Response:
        denied = guard(request, page=False)
        if denied is not None:
            return denied
        record = await call_record(request.path_params["call_sid"], store, calls)
        path = await recordings.wav_path(record["call_sid"]) if record is not None and recordings else None
        if path is None or path.stat().st_size <= 44:  # a header, no audio
            return PlainTextResponse("Not Found", status_code=404)
        return FileResponse(path, media_type="audio/wav", headers={"Cache-Control": "private, no-store"})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return PlainTextResponse("Not Found", status_code=404)
        return Response(asset(name), media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})

    return [
        Route("/calls", list_calls, methods=["GET"]),
        Route("/calls/login", login_form, methods=["GET"]),
        Route("/calls/login", login, methods=["POST"]),
        Route("/calls/logout", logout, methods=["POST"]),
        Route("/calls/assets/{name}", static, methods=["GET"]),
        Route("/calls/{call_sid}/view", view_call, methods=["GET"]),
        Route("/calls/{call_sid}/recording.wav", recording_wav, methods=["GET"]),
    ]


def _safe_next(value: str | None) -> str:
    """Only our own pages: no open redirect."""
    if value and value.startswith("/calls") and "//" not in value and "\\" not in value:
        return value
    return "/calls"
