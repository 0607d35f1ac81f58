"""Shared fixtures.

``redis_url``: a real ``redis-server`` (Debian package ``redis-server``) started from PATH on a
free loopback port for the whole session, without persistence, and stopped at the end. When it
cannot be started (not installed, the ``redis`` Python package missing, it will not start), the
tests that use it are SKIPPED with the reason; they never pass silently. Set
``TELEPHONY_BRIDGE_REQUIRE_REDIS=1`` (CI) to make that a failure instead of a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_START_TIMEOUT_S = 10.0


def _unavailable(reason: str) -> None:
    if os.environ.get("TELEPHONY_BRIDGE_REQUIRE_REDIS", "") not in ("", "0"):
        pytest.fail(f"Redis required (TELEPHONY_BRIDGE_REQUIRE_REDIS) but {reason}", pytrace=False)
    pytest.skip(f"Redis store tests skipped: {reason}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        _unavailable("redis-server is not on PATH (Debian: apt-get install redis-server)")
    try:
        import redis  # noqa: F401
    except ImportError:
        _unavailable("the 'redis' Python package is not installed (pip install redis)")
    workdir = tmp_path_factory.mktemp("redis")
    log = workdir / "redis.log"
    problem = "it did not start"
    for _attempt in range(3):  # a free port can be taken between probing and binding: retry
        port = _free_port()
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
            break
        _stop(proc)
        problem = f"redis-server did not answer PING on port {port} ({_tail(log) or 'no output'})"
    else:
        _unavailable(problem)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(proc)
