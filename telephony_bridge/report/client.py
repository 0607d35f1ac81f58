"""Asks Gemini's REST ``generateContent`` for the report: bounded retries, timeouts, 429s.

:class:`ReportClient` owns nothing but an :class:`httpx.AsyncClient`; the URL and headers come
from the Live backend (:meth:`~telephony_bridge.gemini.backend.LiveBackend.rest_endpoint`: the same
key, or the same cached Vertex token). One :meth:`~ReportClient.generate` makes up to
``policy.attempts`` attempts, each bounded by ``timeout_s``:

* 200 with a report matching the schema: done;
* 200 with anything else (not JSON, no candidate, off-schema), 5xx, a timeout, a network error,
  429: try again after :meth:`RetryPolicy.delay` (429/503 with ``Retry-After``: at least that);
* any other 4xx (bad key, unknown model, bad request): no retry helps, fail at once.

The last failure is raised as :class:`~.schema.ReportError`; ``attempts`` keeps what each attempt
did (the benchmark prints it). Secrets never reach an error message: only statuses and kinds.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from ..gemini.backend import BackendAuthError, LiveBackend
from .backoff import RetryPolicy, parse_retry_after
from .prompt import build_request, parse_answer
from .schema import ReportError

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def _google_message(body: bytes) -> str:
    """``error.status`` and ``error.message`` of a Google error body, shortened (never the request):
    the message says what is wrong ("models/X is not found for API version v1beta, ...")."""
    try:
        err = json.loads(body).get("error", {})
        status, message = str(err.get("status") or ""), str(err.get("message") or "")
    except (ValueError, AttributeError):
        return ""
    return (f"{status}: {message}" if status and message else status or message)[:240]


class ReportClient:
    def __init__(self, backend: LiveBackend, model: str, http: httpx.AsyncClient, *,
                 policy: RetryPolicy = RetryPolicy(attempts=3, base_s=2.0, cap_s=30.0),
                 timeout_s: float = 60.0,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 rand: Callable[[], float] = random.random) -> None:
        self.backend = backend
        self.model = model
        self.http = http
        self.policy = policy
        self.timeout_s = timeout_s
        self._sleep = sleep
        self._rand = rand

    async def generate(self, record: dict[str, Any], attempts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The report for ``record``; :class:`ReportError` once retries are spent."""
        body = build_request(record)
        log = attempts if attempts is not None else []
        attempt = 0
        while True:
            attempt += 1
            try:
                report = await self._once(body)
            except ReportError as err:
                last = self.policy.exhausted(attempt) or not err.retryable
                delay = None if last else self.policy.delay(attempt, self._rand(), err.retry_after_s)
                log.append({"attempt": attempt, "outcome": err.kind if err.status is None else str(err.status),
                            "delay_s": None if delay is None else round(delay, 3)})
                if last:
                    raise
                assert delay is not None
                await self._sleep(delay)
                continue
            log.append({"attempt": attempt, "outcome": "ok", "delay_s": None})
            return report

    async def probe(self) -> float:
        """One tiny ``generateContent`` to the report model, as ``doctor`` checks it: the seconds
        it took; :class:`ReportError` when the model, the key or the endpoint is wrong."""
        started = time.monotonic()
        await self._post({"contents": [{"role": "user", "parts": [{"text": "Reply with one word: ready."}]}]})
        return time.monotonic() - started

    async def _once(self, body: dict[str, Any]) -> dict[str, Any]:
        return parse_answer(await self._post(body))

    async def _post(self, body: dict[str, Any]) -> bytes:
        """The 200 answer's bytes, else :class:`ReportError` (retryable or not, as the status says)."""
        try:
            endpoint = await self.backend.rest_endpoint(self.model)
        except BackendAuthError as exc:
            raise ReportError("auth", f"{exc.kind}: {exc}", retryable=exc.kind == "network") from None
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self.http.post(endpoint.url, json=body, headers=endpoint.headers,
                                                timeout=self.timeout_s)
                raw = await response.aread()
        except TimeoutError:
            raise ReportError("timeout", f"no answer in {self.timeout_s:g} s") from None
        except httpx.TimeoutException:
            raise ReportError("timeout", f"no answer in {self.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise ReportError("network", type(exc).__name__) from None
        if response.status_code != 200:
            status = response.status_code
            retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
            message = _google_message(raw)
            raise ReportError("http", f"HTTP {status}{' ' + message if message else ''}", status=status,
                              retryable=status in RETRY_STATUSES, retry_after_s=retry_after)
        return raw


__all__ = ["ReportClient", "RETRY_STATUSES"]
