"""Prometheus metrics, served at ``GET /metrics``.

Each app gets its own :class:`CollectorRegistry` (several bridges can share a process in tests).
Labelled children are bound once, so the per-frame path does one ``inc()`` on a prebuilt object.

Several processes on one port (``serve --workers N``, serving.py) share one folder in
prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``): each process writes its
values to its own files there and ``/metrics``, whichever worker answers, renders the sum of all
of them. Calls in progress are the sum over the live workers (what the autoscaler reads), the
breaker is open when any worker's is, counters and histograms add up every worker's, a restarted
one's included.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from .gemini.refusal import RefusalKind

#: Gate decisions the echo gate can take for one caller frame.
GATE_DECISIONS = ("forward", "suppress", "double_talk", "cooldown_forward", "cooldown_suppress")
#: How a silent stall was found (call/stall_watch.py) and how it ended.
STALL_REASONS = ("empty_turn", "no_reply")
STALL_OUTCOMES = ("recovered", "apology", "abandoned")


def multiprocess_dir() -> str | None:
    """The folder the processes of this machine's bridge share their metrics in; None: this
    process's metrics are its own. prometheus_client reads it when it is first imported, so it
    is set before a worker starts (serving.serve_workers)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # (multiprocess_mode: how workers' values combine; ignored by a single process)
        self.active_calls = Gauge("bridge_active_calls", "Calls in progress", registry=r, multiprocess_mode="livesum")
        self.calls_total = Counter("bridge_calls", "Calls started", registry=r)
        self.turn_latency = Histogram(
            "bridge_turn_latency_seconds",
            "Caller's end of speech to the first agent frame sent to Twilio",
            buckets=(0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0), registry=r)
        self.barge_ins = Counter("bridge_barge_ins", "Gemini interruptions acted on", registry=r)
        self.clear_reaction = Histogram(
            "bridge_interrupted_to_clear_seconds", "Gemini 'interrupted' received to Twilio 'clear' written",
            buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1), registry=r)
        self.barge_pauses = Counter("bridge_barge_pauses", "Agent paused on the caller's speech onset", registry=r)
        self.barge_false_alarms = Counter(
            "bridge_barge_false_alarms", "Pauses resumed: no Gemini 'interrupted' within the window", registry=r)
        self.barge_pause_to_confirm = Histogram(
            "bridge_barge_pause_to_confirm_seconds", "Agent paused on onset to Gemini's 'interrupted'",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0), registry=r)
        gate = Counter("bridge_gate_decisions", "Echo-gate decisions per caller frame", ["decision"], registry=r)
        self.gate = {d: gate.labels(decision=d) for d in GATE_DECISIONS}
        self.protocol_errors = Counter("bridge_protocol_errors", "Malformed peer messages", ["peer", "kind"],
                                       registry=r)
        self.gemini_reconnects = Counter("bridge_gemini_reconnects", "Gemini reconnections", registry=r)
        refusals = Counter("bridge_gemini_refusals", "Calls Gemini refused, by kind (one per call)", ["kind"],
                           registry=r)
        self.gemini_refusals = {k.value: refusals.labels(kind=k.value) for k in RefusalKind}
        # The process's circuit breaker on refusals (telephony_bridge.gemini.breaker).
        self.breaker_open = Gauge("bridge_gemini_breaker_open",
                                  "1 while new calls get the apology from the webhook (Gemini refuses them)",
                                  registry=r, multiprocess_mode="livemax")
        self.breaker_trips = Counter("bridge_gemini_breaker_trips", "Times the refusal breaker opened, by kind",
                                     ["kind"], registry=r)
        self.breaker_probes = Counter("bridge_gemini_breaker_probes", "Probe connections while open, by result",
                                      ["result"], registry=r)
        stalls = Counter("bridge_stalls", "Silent model stalls found (an empty turn, or no turn by the deadline)",
                         ["reason"], registry=r)
        self.stalls = {k: stalls.labels(reason=k) for k in STALL_REASONS}
        outcomes = Counter("bridge_stall_outcomes", "How silent stalls ended: the model spoke again, the "
                           "caller heard the apology, or the caller spoke first", ["outcome"], registry=r)
        self.stall_outcomes = {k: outcomes.labels(outcome=k) for k in STALL_OUTCOMES}
        self.stall_nudges = Counter("bridge_stall_nudges", "Nudges sent to a stalled model", registry=r)

    def render(self) -> bytes:
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        shared = CollectorRegistry()  # every worker's files, this one's among them
        MultiProcessCollector(shared, path=path)
        return generate_latest(shared)
