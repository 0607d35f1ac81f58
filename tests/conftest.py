"""Shared fixtures.

``redis_url``: a real ``redis-server`` (Debian package ``redis-server``) started from PATH on a
free loopback port for the whole session, without persistence, and stopped at the end. When it
cannot be started (not installed, the ``redis`` Python package missing, it will not start), the
tests that use it are SKIPPED with the reason; they never pass silently. Set
``TELEPHONY_BRIDGE_REQUIRE_REDIS=1`` (CI) to make that a failure instead of a skip.

``gcs``, ``s3``: a real gcp-storage-emulator / moto S3 server on loopback with the bucket
``call-recordings`` made, the environment pointing the clients at it (test extra packages).

``log_stream``: the loggers as ``setup_logging`` configures them (ours at DEBUG, the libraries'
at WARNING), into a StringIO; restored afterwards.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from telephony_bridge.log import LIBRARY_LOGGERS, setup_logging
from telephony_bridge.testing.processes import ProcessUnavailable, free_port, start_listener, start_redis, stop


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


#: The bucket the ``gcs`` and ``s3`` fixtures create.
RECORDINGS_BUCKET = "call-recordings"


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch) -> Any:
    """gcp-storage-emulator on a free loopback port, STORAGE_EMULATOR_HOST pointing at it, bucket
    ``call-recordings`` made; the google-cloud-storage client."""
    from google.cloud import storage

    port = free_port()
    exe = Path(sys.executable).with_name("gcp-storage-emulator")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "gcp_storage_emulator"]
    proc = start_listener([*cmd, "start", "--host=127.0.0.1", f"--port={port}", "--in-memory"], port,
                          "gcp-storage-emulator", timeout=20)
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        client = storage.Client()
        client.create_bucket(RECORDINGS_BUCKET)
        yield client
    finally:
        stop(proc)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto's S3 server on a free loopback port, the AWS_* variables pointing at it, bucket
    ``call-recordings`` made; the boto3 client."""
    import boto3

    port = free_port()
    proc = start_listener([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port,
                          "moto's server", timeout=30)
    try:
        for name, value in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
                            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(name, value)
        client = boto3.client("s3")
        client.create_bucket(Bucket=RECORDINGS_BUCKET)
        yield client
    finally:
        stop(proc)
