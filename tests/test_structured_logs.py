"""Library loggers write the bridge's one-line JSON: an asyncio error (e.g. a TLS transport that
died under a write), an exception in the ASGI app reported by a real uvicorn server built as
``serve`` builds it, never a bare multi-line traceback on stderr."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx

from telephony_bridge.log import register_secret, unregister_secret
from telephony_bridge.serving import server_config
from telephony_bridge.settings import Settings


def records(stream) -> list[dict]:
    text = stream.getvalue()
    return [json.loads(line) for line in text.splitlines()]  # every line is JSON, or this raises


def test_an_asyncio_error_is_one_json_line_with_its_traceback_and_no_secret(log_stream):
    secret = "AIza-not-a-real-key-" + "5" * 12
    register_secret(secret)
    loop = asyncio.new_event_loop()
    try:
        try:
            raise RuntimeError(f"unable to perform operation on <TCPTransport closed=True> ({secret})")
        except RuntimeError as exc:
            loop.call_exception_handler({"message": "Fatal error on SSL protocol", "exception": exc})
    finally:
        loop.close()
        unregister_secret(secret)
    [rec] = [r for r in records(log_stream) if r["logger"] == "asyncio"]
    assert rec["level"] == "error" and rec["event"].startswith("Fatal error on SSL protocol")
    assert "RuntimeError: unable to perform operation" in rec["exc"] and "Traceback" in rec["exc"]
    assert secret not in log_stream.getvalue()


def test_library_loggers_hold_warnings_and_above_whatever_our_level(log_stream):
    logging.getLogger("websockets.client").debug("> %s: %s", "Host", "example.com")
    logging.getLogger("uvicorn.error").info("Started server process")
    logging.getLogger("asyncio").warning("Executing <Handle> took 0.120 seconds")
    got = [(r["logger"], r["level"]) for r in records(log_stream)]
    assert got == [("asyncio", "warning")]


def test_an_exception_in_the_app_is_logged_by_uvicorn_as_json(log_stream):
    async def app(scope, receive, send):
        if scope["type"] == "http":
            raise ValueError("boom in the app")

    async def go() -> int:
        config = server_config(app, Settings(public_url="https://bridge.example.com", host="127.0.0.1", port=0), lifespan="off")
        import uvicorn

        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            async with httpx.AsyncClient(trust_env=False) as http:
                return (await http.get(f"http://127.0.0.1:{port}/")).status_code
        finally:
            server.should_exit = True
            await task

    assert asyncio.run(go()) == 500
    errors = [r for r in records(log_stream) if r["logger"].startswith("uvicorn")]
    assert errors and errors[0]["level"] == "error" and "Exception in ASGI application" in errors[0]["event"]
    assert "ValueError: boom in the app" in errors[0]["exc"]
