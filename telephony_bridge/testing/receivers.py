"""Loopback HTTP peers of the post-call report: a webhook receiver and Twilio's Messages endpoint.

* :class:`WebhookReceiver`: what an operator runs behind ``REPORT_WEBHOOK_URL``. It checks each
  request's ``Bridge-Signature`` with a verifier (by default
  :func:`telephony_bridge.report.signing.verify`; the tests pass the README's snippet), accepts a
  delivery once per ``Idempotency-Key`` and answers 200 to its duplicates without accepting them
  again, as the README tells receivers to. It can be down (:meth:`~LoopbackServer.stop`: the port
  refuses connections) and up again on the same port.
* :class:`FakeTwilioMessages`: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` as
  Twilio's REST API answers it (HTTP Basic auth with the account SID and auth token, form fields
  ``To``/``From``/``Body``, 201 with a message resource), for the ``twilio`` library to talk to.

Both are Starlette apps served by uvicorn in the current event loop (:class:`LoopbackServer`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .loopback_http import LoopbackServer


@dataclass
class Received:
    at: float
    idempotency_key: str | None
    signature_ok: bool
    accepted: bool
    body: bytes = field(repr=False)
    signature: str | None = field(default=None, repr=False)
    #: What the receiver answered.
    status: int = 200

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver(LoopbackServer):
    """Receives report deliveries. ``fail_with``: answer this status instead (a broken receiver)."""

    def __init__(self, secret: str, *, verifier: Callable[..., bool] | None = None, port: int = 0) -> None:
        from ..report.signing import verify

        self.secret = secret
        self.verifier = verifier or verify
        self.received: list[Received] = []
        self.accepted: dict[str, Received] = {}
        self.fail_with: int | None = None
        #: With fail_with: a Retry-After header to send. delay_s: answer this late (a slow receiver).
        self.retry_after: str | None = None
        self.delay_s = 0.0
        #: Statuses to answer the next requests with, in order, before behaving normally.
        self.answers: list[int] = []
        super().__init__(Starlette(routes=[Route("/hook", self._hook, methods=["POST"])]), port)

    @property
    def url(self) -> str:
        return self.origin + "/hook"

    @property
    def duplicates(self) -> int:
        """Requests for a delivery already accepted (answered 200, dropped)."""
        return sum(1 for r in self.received if r.status == 200 and not r.accepted)

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        ok = bool(self.verifier(self.secret, body, request.headers.get("bridge-signature") or ""))
        key = request.headers.get("idempotency-key")
        entry = Received(time.time(), key, ok, False, body, request.headers.get("bridge-signature"))
        self.received.append(entry)
        if not ok:
            entry.status = 400
            return Response("bad signature", status_code=400)
        status = self.answers.pop(0) if self.answers else self.fail_with
        if status is not None and status != 200:
            entry.status = status
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            return Response("unavailable", status_code=status, headers=headers)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if key is not None and key not in self.accepted:
            entry.accepted = True
            self.accepted[key] = entry
        return JSONResponse({"ok": True})

    async def wait_accepted(self, n: int = 1, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.accepted) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.accepted)} of {n} deliveries accepted in {timeout} s")
            await asyncio.sleep(0.02)


class FakeTwilioMessages(LoopbackServer):
    """Twilio's Messages endpoint on loopback: ``origin`` is what ``TWILIO_API_URL`` takes. Also
    the account itself and its phone numbers (``numbers``), which ``doctor`` reads."""

    def __init__(self, account_sid: str, auth_token: str, numbers: tuple[str, ...] = ()) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.numbers = list(numbers)
        self.messages: list[dict[str, str]] = []
        self.refused: list[int] = []
        super().__init__(Starlette(routes=[
            Route("/2010-04-01/Accounts/{sid}/Messages.json", self._create, methods=["POST"]),
            Route("/2010-04-01/Accounts/{sid}.json", self._account, methods=["GET"]),
            Route("/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json", self._numbers, methods=["GET"])]))

    def _refuse(self) -> Response:
        self.refused.append(401)
        return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)

    async def _account(self, request: Request) -> Response:
        if not self._authorised(request) or request.path_params["sid"] != self.account_sid:
            return self._refuse()
        return JSONResponse({"sid": self.account_sid, "status": "active", "type": "Full",
                             "friendly_name": "bridge test account",
                             "uri": f"/2010-04-01/Accounts/{self.account_sid}.json"})

    async def _numbers(self, request: Request) -> Response:
        if not self._authorised(request) or request.path_params["sid"] != self.account_sid:
            return self._refuse()
        wanted = request.query_params.get("PhoneNumber")
        found = [{"sid": "PN" + hashlib.sha1(n.encode()).hexdigest()[:32], "account_sid": self.account_sid,
                  "phone_number": n, "capabilities": {"sms": True, "voice": True}}
                 for n in self.numbers if wanted is None or n == wanted]
        uri = f"/2010-04-01/Accounts/{self.account_sid}/IncomingPhoneNumbers.json"
        return JSONResponse({"incoming_phone_numbers": found, "page": 0, "page_size": 50, "first_page_uri": uri,
                             "next_page_uri": None, "previous_page_uri": None, "uri": uri, "start": 0,
                             "end": max(len(found) - 1, 0)})

    def _authorised(self, request: Request) -> bool:
        scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return False
        return secrets.compare_digest(user, self.account_sid) and secrets.compare_digest(password, self.auth_token)

    async def _create(self, request: Request) -> Response:
        if not self._authorised(request) or request.path_params["sid"] != self.account_sid:
            return self._refuse()
        form = dict(urllib.parse.parse_qsl((await request.body()).decode("utf-8", "replace")))
        to, from_, body = (str(form.get(k) or "") for k in ("To", "From", "Body"))
        if not to or not from_ or not body:
            self.refused.append(400)
            return JSONResponse({"code": 21604, "message": "A 'To' phone number is required.", "status": 400},
                                status_code=400)
        sid = "SM" + secrets.token_hex(16)
        self.messages.append({"sid": sid, "to": to, "from": from_, "body": body})
        return JSONResponse({"sid": sid, "account_sid": self.account_sid, "to": to, "from": from_, "body": body,
                             "status": "queued", "num_segments": "1", "direction": "outbound-api",
                             "api_version": "2010-04-01",
                             "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json"},
                            status_code=201)


__all__ = ["LoopbackServer", "WebhookReceiver", "FakeTwilioMessages", "Received"]
