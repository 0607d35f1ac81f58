"""Works the outbox: claims what is due, runs its handler, settles it; resumes after a restart.

:class:`DeliveryWorker` is the asyncio adapter around :mod:`.outbox` and :mod:`.backoff`. Each
:meth:`~DeliveryWorker.run_once` claims the deliveries whose ``ready_at`` has come (new ones,
retries whose backoff is over, leases a dead worker left behind), runs them concurrently and
settles each: handled → :meth:`complete`; :class:`~.schema.ReportError` → :meth:`retry` after the
kind's :class:`~.backoff.RetryPolicy` delay (a ``Retry-After`` the peer sent honoured), or
:meth:`fail` once the policy's attempts are spent or the error says no retry can help.
:meth:`~DeliveryWorker.run` loops until cancelled, sleeping until the next ``ready_at`` (at most
``poll_s``: another replica may have added work) or until :meth:`wake`. The clock (Unix seconds,
shared by replicas), the sleep and the jitter's randomness are injected.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..log import log_event
from .backoff import RetryPolicy
from .outbox import Delivery, Outbox
from .schema import ReportError

logger = logging.getLogger("telephony_bridge.report")

Handler = Callable[[Delivery], Awaitable[Any]]


class DeliveryWorker:
    def __init__(self, outbox: Outbox, handlers: dict[str, Handler], policies: dict[str, RetryPolicy], *,
                 owner: str, lease_s: float = 120.0, leases: dict[str, float] | None = None,
                 poll_s: float = 1.0, batch: int = 8,
                 clock: Callable[[], float] = time.time, rand: Callable[[], float] = random.random) -> None:
        self.outbox = outbox
        self.handlers = handlers
        self.policies = policies
        self.owner = owner
        self.lease_s = lease_s
        #: Per kind (else lease_s): longer than that kind's longest attempt.
        self.leases = dict(leases or {})
        self.poll_s = poll_s
        self.batch = batch
        self.clock = clock
        self.rand = rand
        self._wake = asyncio.Event()
        #: (delivery id, attempt, outcome, delay until the next attempt or None): for tests and the benchmark.
        self.history: list[tuple[str, int, str, float | None]] = []

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """Claim and work what is due now; how many deliveries were worked."""
        claimed = await self.outbox.claim(self.clock(), self.owner, self.lease_s, self.batch, self.leases)
        if claimed:
            await asyncio.gather(*(self._work(d) for d in claimed))
        return len(claimed)

    async def _work(self, delivery: Delivery) -> None:
        handler = self.handlers.get(delivery.kind)
        policy = self.policies.get(delivery.kind, RetryPolicy())
        try:
            if handler is None:
                raise ReportError("config", f"no handler for {delivery.kind!r} deliveries", retryable=False)
            await handler(delivery)
        except ReportError as err:
            now = self.clock()
            if not err.retryable or policy.exhausted(delivery.attempts):
                await self.outbox.fail(delivery.id, self.owner, now, err.reason)
                self.history.append((delivery.id, delivery.attempts, f"failed:{err.kind}", None))
                log_event(logger, "report.delivery_failed", logging.ERROR, id=delivery.id, kind=delivery.kind,
                          attempts=delivery.attempts, reason=err.reason)
                return
            delay = policy.delay(delivery.attempts, self.rand(), err.retry_after_s)
            await self.outbox.retry(delivery.id, self.owner, now + delay, err.reason)
            self.history.append((delivery.id, delivery.attempts, f"retry:{err.kind}", round(delay, 3)))
            log_event(logger, "report.delivery_retry", logging.WARNING, id=delivery.id, kind=delivery.kind,
                      attempt=delivery.attempts, reason=err.reason, retry_in_s=round(delay, 2))
            return
        except asyncio.CancelledError:
            raise  # the lease runs out; another worker (or this one, restarted) takes it again
        except Exception as exc:  # a bug in a handler (or the store failing) must not stop the worker
            error = f"internal: {type(exc).__name__}"
            if policy.exhausted(delivery.attempts):
                await self.outbox.fail(delivery.id, self.owner, self.clock(), error)
            else:
                await self.outbox.retry(delivery.id, self.owner, self.clock() + policy.cap_s, error)
            self.history.append((delivery.id, delivery.attempts, "error", None))
            log_event(logger, "report.delivery_error", logging.ERROR, id=delivery.id, error=repr(exc)[:200])
            return
        settled = await self.outbox.complete(delivery.id, self.owner, self.clock())
        self.history.append((delivery.id, delivery.attempts, "done" if settled else "done-lease-lost", None))
        log_event(logger, "report.delivered", id=delivery.id, kind=delivery.kind, attempts=delivery.attempts,
                  settled=settled)

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.run_once()
                next_at = await self.outbox.next_ready_at()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is down: keep trying
                log_event(logger, "report.outbox_error", logging.ERROR, error=repr(exc)[:200])
                next_at = None
            wait = self.poll_s if next_at is None else min(self.poll_s, max(0.0, next_at - self.clock()))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.01, wait))
            except TimeoutError:
                pass


__all__ = ["DeliveryWorker"]
