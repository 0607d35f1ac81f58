"""The post-call report: asked of Gemini when a call ends, kept in the store, delivered once.

::

    schema.py    the report's JSON Schema and its validation (ReportError: the one typed error)
    prompt.py    the generateContent request from a call record; the report from the answer
    backoff.py   retry delays with bounded jitter, Retry-After (pure)
    client.py    ReportClient: generateContent over httpx, bounded retries, timeouts, 429s
    outbox.py    the durable outbox in the store (SQLite table / Redis keys), claims with leases
    signing.py   the webhook's HMAC-SHA256 signature (Bridge-Signature) and verify()
    sms.py       the opt-in SMS summary through the twilio library
    worker.py    DeliveryWorker: claims what is due, runs it, retries with backoff
    service.py   ReportService: the wiring the server starts (call end -> report -> webhook/SMS)
"""

from .schema import REPORT_SCHEMA, ReportError, validate
from .signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign, verify

__all__ = ["REPORT_SCHEMA", "ReportError", "validate", "sign", "verify", "SIGNATURE_HEADER", "IDEMPOTENCY_HEADER"]
