"""Shared fixtures.

``redis_url``: a real ``redis-server`` (Debian package ``redis-server``) started from PATH on a
free loopback port for the whole session, without persistence, and stopped at the end. When it
cannot be started (not installed, the ``redis`` Python package missing, it will not start), the
tests that use it are SKIPPED with the reason; they never pass silently. Set
``TELEPHONY_BRIDGE_REQUIRE_REDIS=1`` (CI) to make that a failure instead of a skip.

``log_stream``: the loggers as ``setup_logging`` configures them (ours at DEBUG, the libraries'
at WARNING), into a StringIO; restored afterwards.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator

import pytest

from telephony_bridge.log import LIBRARY_LOGGERS, setup_logging
from telephony_bridge.testing.processes import ProcessUnavailable, start_redis, stop


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    loggers = [logging.getLogger(name) for name in ("telephony_bridge", *LIBRARY_LOGGERS)]
    saved = [(list(x.handlers), x.level, x.propagate) for x in loggers]
    converter = logging.Formatter.converter
    stream = io.StringIO()
    setup_logging("DEBUG", stream=stream)
    try:
        yield stream
    finally:
        for x, (handlers, level, propagate) in zip(loggers, saved):
            x.handlers[:], x.level, x.propagate = handlers, level, propagate
        logging.Formatter.converter = converter



def _unavailable(reason: str) -> None:
    if os.environ.get("TELEPHONY_BRIDGE_REQUIRE_REDIS", "") not in ("", "0"):
        pytest.fail(f"Redis required (TELEPHONY_BRIDGE_REQUIRE_REDIS) but {reason}", pytrace=False)
    pytest.skip(f"Redis store tests skipped: {reason}")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        import redis  # noqa: F401
    except ImportError:
        _unavailable("the 'redis' Python package is not installed (pip install redis)")
    try:
        proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    except ProcessUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield url
    finally:
        stop(proc)
