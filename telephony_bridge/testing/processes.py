"""Real server processes for tests and benchmarks: redis-server and bridge replicas.

Nothing here is faked: ``start_redis`` runs Debian's ``redis-server`` on a free loopback port
without persistence; ``start_replica`` runs ``telephony-bridge serve`` as its own process, so a
test can kill it (SIGKILL: no goodbye, no state written) like a crashed machine.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REDIS_START_TIMEOUT_S = 10.0


class ProcessUnavailable(RuntimeError):
    """The program cannot be found or would not start; the message says why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    """A redis-server on a free loopback port: (process, redis:// URL)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise ProcessUnavailable("redis-server is not on PATH (Debian: apt-get install redis-server)")
    log = workdir / "redis.log"
    problem = "it did not start"
    for _attempt in range(3):  # a free port can be taken between probing and binding: retry
        port = free_port()
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(workdir), "--daemonize", "no", "--loglevel", "warning"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None and not _pings(port):
            time.sleep(0.05)
        if proc.poll() is None and _pings(port):
            return proc, f"redis://127.0.0.1:{port}/0"
        stop(proc)
        problem = f"redis-server did not answer PING on port {port} ({_tail(log) or 'no output'})"
    raise ProcessUnavailable(problem)


def start_listener(cmd: list[str], port: int, what: str, timeout: float = 30.0) -> subprocess.Popen:
    """Run ``cmd`` (a server that will listen on loopback ``port``); returns once the port accepts."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(proc)
                raise ProcessUnavailable(f"{what} did not start on port {port}") from None
            time.sleep(0.05)


def replica_env(live_url: str, redis_url: str, token: str, workdir: Path, *, demo_key: str,
                public_url: str = "https://bridge.test", silence_ms: int = 500, **extra: str) -> dict[str, str]:
    """The environment of a ``serve`` replica sharing ``redis_url`` with others (failover, drain)."""
    import secrets

    return dict(GEMINI_API_KEY=demo_key, PUBLIC_URL=public_url, GEMINI_LIVE_URL=live_url, TWILIO_AUTH_TOKEN=token,
                STREAM_TOKEN_SECRET=secrets.token_urlsafe(32), REDIS_URL=redis_url, HOST="127.0.0.1",
                SILENCE_DURATION_MS=str(silence_ms), LOG_LEVEL="INFO", CALLS_DB=str(workdir / "unused.sqlite3"),
                **extra)


def start_replica(env: dict[str, str], port: int, log_path: Path, timeout: float = 20.0) -> subprocess.Popen:
    """``telephony-bridge serve`` on ``port`` with ``env``; returns once /healthz answers."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("GEMINI_", "TWILIO_", "REDIS_", "PUBLIC_URL", "STREAM_TOKEN", "OPERATOR"))}
    # A replica in a test: recordings beside its log (not in the working directory); no report
    # and no TTS phrases unless asked for (there is no REST peer unless GEMINI_REST_URL names one).
    quiet = {"RECORDINGS_DIR": str(log_path.parent / "recordings")}
    if "GEMINI_REST_URL" not in env:
        quiet.update(REPORT="off", TTS_PHRASES="off")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "telephony_bridge", "serve"],
                                env={**base, **quiet, **env, "PORT": str(port)}, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise ProcessUnavailable(f"replica on port {port} did not start: {_tail(log_path)}")
