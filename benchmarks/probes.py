"""Probes the load benchmarks run inside each of their processes: event-loop lag, GC pauses,
percentiles. Shared by ``bargein.py`` and ``load.py`` (run as scripts, so this folder is on
``sys.path``).
"""

from __future__ import annotations

import asyncio
import gc
import io
import sys
import time
from typing import Any

import numpy as np


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


class GcPauses:
    """Garbage-collector pauses in this process, by generation (a stop-the-world source of lag)."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._t = 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self._t)

    def stop(self) -> dict[int, list[float]]:
        gc.callbacks.remove(self._cb)
        return self.pauses


class LoopLag:
    """How late a 10 ms sleep wakes up: this process's event-loop (and CPU) latency."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.01)
            self.lags.append(loop.time() - t - 0.01)

    def stop(self) -> list[float]:
        self.task.cancel()
        return self.lags


class Tee(io.TextIOBase):
    """Standard output that also keeps what was printed, for a benchmark's ``-latest.txt``
    (``with redirect_stdout(tee): ...``, then ``tee.getvalue()``)."""

    def __init__(self) -> None:
        super().__init__()
        self.kept = io.StringIO()

    def write(self, s: str) -> int:
        sys.__stdout__.write(s)
        self.kept.write(s)
        return len(s)

    def getvalue(self) -> str:
        return self.kept.getvalue()
