"""Running the app: one uvicorn server that drains on SIGTERM, and ``--workers N`` of them.

* :func:`run_server`: uvicorn with the event loop and HTTP parser of ``uvicorn[standard]``
  (uvloop, httptools) when installed. Its first SIGTERM starts the drain (drain.py) instead of
  uvicorn's immediate shutdown; the server exits when the drain is done. A second SIGTERM, or
  SIGINT (Ctrl-C), stops at once as uvicorn does.
* :func:`serve_workers`: N worker processes on one machine, each its own server on the same
  port (``SO_REUSEPORT``: the kernel spreads new connections over them). A call is not tied to a
  process: when its stream ends on one, ``/twiml/continue`` may land on another, which resumes
  the Gemini session from the shared store (SQLite on one host, Redis for several). SIGTERM to
  the parent drains every worker; a worker that dies is started again.

With workers, ``/metrics`` shows the whole machine, whichever worker answers: the workers share
their metrics through a folder (prometheus_client's multiprocess mode, metrics.py), a temporary
one the parent makes and removes, or ``PROMETHEUS_MULTIPROC_DIR`` when it is set (its ``*.db``
files are cleared at start). On Kubernetes run one worker per pod and scale pods (deploy/k8s/).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from .drain import run_drain

#: uvicorn waits this long beyond the drain for connections still open when it stops.
SHUTDOWN_GRACE_S = 5


def _standard(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def server_config(app: Any, settings: Any, **extra: Any) -> uvicorn.Config:
    from .server import uvicorn_options

    return uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning", proxy_headers=True,
        log_config=None,  # its loggers keep setup_logging's JSON handler (log.py)
        loop="uvloop" if _standard("uvloop") else "asyncio",
        http="httptools" if _standard("httptools") else "h11",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S, **uvicorn_options(settings), **extra)


class DrainingServer(uvicorn.Server):
    """uvicorn's server whose first SIGTERM drains the app's calls before it stops."""

    def __init__(self, config: uvicorn.Config, drain: Any) -> None:
        super().__init__(config)
        self.drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self._drain_task is None and self._loop is not None \
                and self.drain is not None and not self.should_exit:
            self._loop.call_soon_threadsafe(self._begin_drain)
            return
        super().handle_exit(sig, frame)

    def _begin_drain(self) -> None:
        if self._drain_task is None:
            self._drain_task = asyncio.ensure_future(run_drain(self.drain, self._drained))

    def _drained(self) -> None:
        self.should_exit = True


def reuseport_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


#: The garbage collector's generation-0 threshold while serving (Python's default: 700). Every
#: audio frame allocates a few short-lived objects; collecting every 700 of them costs 5-9% of
#: the CPU per call (benchmarks/load.py --gc-threshold). What start-up allocated is frozen first.
GC_THRESHOLD = 20000


def run_server(app: Any, settings: Any, sockets: list[socket.socket] | None = None) -> None:
    import gc

    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)
    config = server_config(app, settings)
    DrainingServer(config, getattr(app.state, "drain", None)).run(sockets=sockets)


def _die_with(parent: int) -> None:
    """A worker whose parent dies (killed, OOM) drains and exits, as on SIGTERM, instead of
    holding the port as an orphan no supervisor restarts (Linux ``PR_SET_PDEATHSIG``)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(settings: Any, index: int, parent: int | None = None) -> None:
    from .log import setup_logging
    from .server import create_app

    os.environ["TELEPHONY_BRIDGE_WORKER"] = str(index)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it sends SIGTERM
    if parent is not None:
        _die_with(parent)
    setup_logging(settings.log_level)
    app = create_app(settings)
    run_server(app, settings, sockets=[reuseport_socket(settings.host, settings.port)])


def serve_workers(settings: Any, workers: int) -> int:
    """N worker processes sharing ``settings.port``; returns the exit status."""
    if settings.port == 0:
        raise ValueError("--workers needs a fixed PORT")
    from prometheus_client import multiprocess

    from .metrics import multiprocess_dir

    ctx = multiprocessing.get_context("spawn")
    procs: dict[int, Any] = {}
    stopping = False
    metrics_dir = multiprocess_dir()
    own_dir = metrics_dir is None
    if metrics_dir is None:
        metrics_dir = tempfile.mkdtemp(prefix="telephony-bridge-metrics-")
    else:  # a run before this one left its values there
        for stale in Path(metrics_dir).glob("*.db"):
            stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # the spawned workers inherit it

    def start(i: int) -> None:
        p = ctx.Process(target=_worker, args=(settings, i, os.getpid()), name=f"telephony-bridge-worker-{i}")
        p.start()
        procs[i] = p

    def stop(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for p in procs.values():
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)  # each drains its calls (a second one: at once)

    for i in range(workers):
        start(i)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"telephony-bridge: {workers} workers on {settings.host}:{settings.port}", file=sys.stderr, flush=True)
    try:
        while True:
            alive = [p for p in procs.values() if p.is_alive()]
            if stopping and not alive:
                break
            if not stopping:
                for i, p in list(procs.items()):
                    if not p.is_alive():
                        print(f"telephony-bridge: worker {i} exited ({p.exitcode}); starting it again",
                              file=sys.stderr, flush=True)
                        # Its calls are over: they leave the live gauges (its counters still count).
                        multiprocess.mark_process_dead(p.pid, metrics_dir)
                        start(i)
            time.sleep(0.2)
    finally:
        if own_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


__all__ = ["DrainingServer", "reuseport_socket", "run_server", "serve_workers", "server_config"]
