"""The opt-in SMS summary to the caller, sent through Twilio's REST API with the ``twilio`` library.

:class:`SmsSender` wraps ``twilio.rest.Client`` (its ``messages.create``: ``to``, ``from_``,
``body``). The library's client is blocking, so a send runs in a thread. ``api_url``
(``TWILIO_API_URL``) points the library at another origin (a local fake of the Messages
endpoint in tests) through a :class:`~twilio.http.http_client.TwilioHttpClient` that rewrites
``https://api.twilio.com`` (the library's own client does the HTTP; nothing of ours stands in
for it). :func:`sms_text` is the message: the leaning and the open question, short enough for
two SMS segments.
"""

from __future__ import annotations

import asyncio
from typing import Any

from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from .schema import ReportError

TWILIO_API = "https://api.twilio.com"
MAX_SMS_CHARS = 300


class _OriginHttpClient(TwilioHttpClient):
    """The library's HTTP client, with ``https://api.twilio.com`` replaced by ``origin``."""

    def __init__(self, origin: str, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.origin = origin.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.startswith(TWILIO_API):
            url = self.origin + url[len(TWILIO_API):]
        return super().request(method, url, *args, **kwargs)


def sms_text(report: dict[str, Any]) -> str:
    """The summary texted to the founder."""
    if report.get("status") != "ok":
        return "Thanks for your call. Your interview report is on its way."
    leaning = report.get("leaning") or {}
    reasons = leaning.get("reasons") or []
    text = (f"Your idea interview: leaning {str(leaning.get('verdict', '?')).upper()}"
            f"{' - ' + reasons[0] if reasons else ''}. Open question: {report.get('open_question', '')}")
    return text if len(text) <= MAX_SMS_CHARS else text[: MAX_SMS_CHARS - 1] + "…"


class SmsSender:
    def __init__(self, account_sid: str, auth_token: str, from_number: str, *, api_url: str | None = None,
                 timeout_s: float = 15.0) -> None:
        http = _OriginHttpClient(api_url, timeout_s) if api_url else TwilioHttpClient(timeout=timeout_s)
        self.client = Client(account_sid, auth_token, http_client=http)
        self.from_number = from_number

    def _send(self, to: str, body: str) -> str:
        try:
            message = self.client.messages.create(to=to, from_=self.from_number, body=body)
        except TwilioRestException as exc:
            status = int(exc.status or 0)
            raise ReportError("http", f"Twilio HTTP {status} (code {exc.code})", status=status,
                              retryable=status == 429 or status >= 500) from None
        except Exception as exc:  # requests' connection errors, timeouts
            raise ReportError("network", type(exc).__name__) from None
        return str(message.sid)

    def _check(self) -> str:
        try:
            account = self.client.api.v2010.accounts(self.client.username).fetch()
            owned = self.client.incoming_phone_numbers.list(phone_number=self.from_number, limit=1)
        except TwilioRestException as exc:
            raise ReportError("http", f"Twilio HTTP {int(exc.status or 0)} (code {exc.code})",
                              status=int(exc.status or 0)) from None
        except Exception as exc:  # requests' connection errors, timeouts
            raise ReportError("network", type(exc).__name__) from None
        if not owned:
            raise ReportError("config", f"TWILIO_FROM_NUMBER {self.from_number} is not a number of this account")
        return f"Twilio account {account.status}, sending from {self.from_number}"

    async def check(self) -> str:
        """What ``doctor`` says: the account's credentials work and the sender is its number;
        :class:`ReportError` otherwise (nothing is sent)."""
        return await asyncio.to_thread(self._check)

    async def send(self, to: str, body: str) -> str:
        """The message's SID; :class:`ReportError` when Twilio refused or could not be reached."""
        return await asyncio.to_thread(self._send, to, body)


__all__ = ["SmsSender", "sms_text"]
