"""The post-call report from a call's end to its delivery: the wiring the server starts.

:class:`ReportService` is what :func:`telephony_bridge.server.create_app` holds. When a call
finishes, :meth:`~ReportService.call_finished` (the bridge's ``on_finish``, after the call record
is saved) adds one ``report`` delivery to the outbox and returns at once: the call record never
waits. The :class:`~.worker.DeliveryWorker` then, durably and with leases:

1. ``report``: reads the call record, asks Gemini (:class:`~.client.ReportClient`, bounded retries),
   saves ``{"status": "ok", …fields}`` or ``{"status": "failed", "reason": …}`` with
   :meth:`~telephony_bridge.store.CallStore.save_report`, then adds the ``webhook`` delivery (when
   ``REPORT_WEBHOOK_URL`` is set) and the ``sms`` one (``REPORT_SMS=on`` and a caller number);
2. ``webhook``: POSTs ``{"delivery_id", "call_sid", "report", "call"}`` signed (:mod:`.signing`),
   with the delivery id as ``Idempotency-Key``; any 2xx is delivered, anything else is retried;
3. ``sms``: texts :func:`~.sms.sms_text` to the caller.

:meth:`start` (the app's lifespan) starts the worker, which first picks up whatever a previous
process left pending; :meth:`stop` cancels it (a claimed delivery's lease runs out and is retried).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

import httpx

from .. import call_state
from ..gemini.backend import LiveBackend
from ..log import log_event, register_secret
from ..store import CallStore
from .backoff import RetryPolicy, parse_retry_after
from .client import ReportClient
from .outbox import Delivery, delivery_id, outbox_for
from .schema import ReportError
from .signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign
from .sms import SmsSender, sms_text

if TYPE_CHECKING:
    from ..call import CallCore
    from ..settings import Settings

logger = logging.getLogger("telephony_bridge.report")

#: Per kind: attempts of the delivery (claims) and their backoff. A ``report`` delivery's own
#: Gemini retries happen inside one attempt (ReportClient), so it is re-run only after a crash.
POLICIES = {
    "report": RetryPolicy(attempts=3, base_s=30.0, cap_s=300.0),
    "webhook": RetryPolicy(attempts=12, base_s=2.0, cap_s=900.0, jitter=0.25),
    "sms": RetryPolicy(attempts=5, base_s=5.0, cap_s=300.0),
}
WEBHOOK_TIMEOUT_S = 10.0
#: A stream that was cut (the call state still "active": a replica died, the network broke) may
#: go on on another replica: its report waits this long, or until that replica ends the call.
STREAM_CUT_GRACE_S = 300.0


def webhook_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed): compact JSON, keys sorted, the same on every retry."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


async def post_webhook(http: httpx.AsyncClient, url: str, secret: str, payload: dict[str, Any], delivery: str,
                       timeout_s: float) -> int:
    """POST one delivery to the receiver, signed now, with ``delivery`` as its idempotency key:
    the 2xx status it answered; :class:`ReportError` otherwise (``http`` with the status and
    any ``Retry-After``, ``timeout``, ``network``). The report worker's and ``doctor``'s ping."""
    body = webhook_body(payload)
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body, int(time.time())),
               IDEMPOTENCY_HEADER: delivery, "User-Agent": "telephony-bridge-report/1"}
    try:
        response = await http.post(url, content=body, headers=headers, timeout=timeout_s)
    except httpx.TimeoutException:
        raise ReportError("timeout", f"the receiver did not answer in {timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise ReportError("network", type(exc).__name__) from None
    if not 200 <= response.status_code < 300:
        raise ReportError("http", f"receiver HTTP {response.status_code}", status=response.status_code,
                          retry_after_s=parse_retry_after(response.headers.get("retry-after"), time.time()))
    return response.status_code


class ReportService:
    def __init__(self, settings: Settings, store: CallStore, backend: LiveBackend, *,
                 policies: dict[str, RetryPolicy] | None = None, client_policy: RetryPolicy | None = None,
                 gemini_timeout_s: float = 60.0, lease_s: float | None = None, poll_s: float = 1.0,
                 webhook_timeout_s: float = WEBHOOK_TIMEOUT_S) -> None:
        from .worker import DeliveryWorker

        self.settings = settings
        self.store = store
        self.outbox = outbox_for(store)
        self.http = httpx.AsyncClient()
        self.webhook_timeout_s = webhook_timeout_s
        register_secret(settings.report_webhook_secret)
        self.client = ReportClient(backend, settings.report_model, self.http, timeout_s=gemini_timeout_s,
                                   **({"policy": client_policy} if client_policy else {}))
        self.sms: SmsSender | None = None
        if settings.report_sms and settings.twilio_account_sid and settings.twilio_auth_token \
                and settings.twilio_from_number:
            self.sms = SmsSender(settings.twilio_account_sid, settings.twilio_auth_token,
                                 settings.twilio_from_number, api_url=settings.twilio_api_url)
        # The lease outlives the longest attempt: a report's Gemini retries, or one webhook POST.
        cp = self.client.policy
        longest = cp.attempts * gemini_timeout_s + (cp.attempts - 1) * cp.cap_s
        self.worker = DeliveryWorker(
            self.outbox, {"report": self._report, "webhook": self._webhook, "sms": self._sms},
            policies or POLICIES, owner=f"bridge-{secrets.token_hex(4)}",
            lease_s=lease_s if lease_s is not None else longest + 30.0,
            leases=None if lease_s is not None else {"webhook": webhook_timeout_s + 30.0, "sms": 60.0},
            poll_s=poll_s)
        self._task: asyncio.Task[None] | None = None
        self._adding: set[asyncio.Task[None]] = set()

    # -- lifecycle

    async def start(self) -> None:
        if self._task is None and self.settings.report:
            self._task = asyncio.get_running_loop().create_task(self.worker.run(), name="report-outbox")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._adding) if t is not None]
        self._task = None
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.http.aclose()

    # -- the call's end

    def call_finished(self, core: CallCore) -> None:
        """The bridge's on_finish: queue the report (a task: this never blocks the call)."""
        if not self.settings.report or core.call_sid is None:
            return
        task = asyncio.get_running_loop().create_task(self.queue(core.call_sid, core.custom_parameters.get("from")))
        self._adding.add(task)
        task.add_done_callback(self._adding.discard)

    async def queue(self, call_sid: str, caller: str | None) -> None:
        """Add the call's report job: due now if the call ended, after the grace if its stream was
        only cut; a call that ends after its stream moved makes an already queued job due now."""
        try:
            now = time.time()
            cut = call_state.parse(await self.store.get_call_state(call_sid)).active
            did = delivery_id(call_sid, "report")
            if await self.outbox.add(did, call_sid, "report", {"caller": caller or None}, now,
                                     ready_at=now + STREAM_CUT_GRACE_S if cut else now):
                await self.store.save_report(call_sid, {"status": "pending", "call_sid": call_sid})
            elif not cut:
                await self.outbox.hurry(did, now)
            self.worker.wake()
        except Exception as exc:
            log_event(logger, "report.queue_failed", logging.ERROR, call_sid=call_sid, error=repr(exc)[:200])

    # -- handlers

    async def _report(self, d: Delivery) -> None:
        record = await self.store.get_record(d.call_sid)
        if record is None:
            raise ReportError("record", "the call record is not in the store yet")
        if call_state.parse(await self.store.get_call_state(d.call_sid)).active \
                and d.attempts < self.worker.policies.get("report", POLICIES["report"]).attempts:
            # Its stream moved to another replica and the call goes on: report when it ends
            # (that replica's queue() hurries this job), or on the last attempt whatever the state.
            raise ReportError("call-active", "the call goes on elsewhere", retry_after_s=STREAM_CUT_GRACE_S)
        attempts: list[dict[str, Any]] = []
        base = {"call_sid": d.call_sid, "model": self.settings.report_model}
        if not any(t.get("role") == "caller" and str(t.get("text") or "").strip()
                   for t in record.get("transcript") or [] if isinstance(t, dict)):
            # Nothing to judge (refused, hung up at once): no Gemini call; the record still goes out.
            report = {"status": "failed", **base, "reason": "no-speech: the caller said nothing"}
        else:
            try:
                fields = await self.client.generate(record, attempts)
                report = {"status": "ok", **base, **fields}
            except ReportError as err:
                report = {"status": "failed", **base, "reason": err.reason}
        report.update(attempts=attempts, generated_at=round(time.time(), 3))
        await self.store.save_report(d.call_sid, report)
        log_event(logger, "report.ready", call_sid=d.call_sid, status=report["status"],
                  attempts=len(attempts), reason=report.get("reason"),
                  verdict=(report.get("leaning") or {}).get("verdict"))
        now = time.time()
        if self.settings.report_webhook_url:
            wid = delivery_id(d.call_sid, "webhook")
            await self.outbox.add(wid, d.call_sid, "webhook",
                                  {"delivery_id": wid, "call_sid": d.call_sid, "report": report, "call": record}, now)
        caller = d.payload.get("caller")
        if self.sms is not None and caller and report["status"] == "ok":
            await self.outbox.add(delivery_id(d.call_sid, "sms"), d.call_sid, "sms",
                                  {"to": caller, "body": sms_text(report)}, now)

    async def _webhook(self, d: Delivery) -> None:
        url, secret = self.settings.report_webhook_url, self.settings.report_webhook_secret
        if not url or not secret:
            raise ReportError("config", "REPORT_WEBHOOK_URL is no longer set", retryable=False)
        await post_webhook(self.http, url, secret, d.payload, d.id, self.webhook_timeout_s)

    async def _sms(self, d: Delivery) -> None:
        if self.sms is None:
            raise ReportError("config", "REPORT_SMS is no longer on", retryable=False)
        await self.sms.send(str(d.payload["to"]), str(d.payload["body"]))


__all__ = ["ReportService", "POLICIES", "post_webhook", "webhook_body"]
