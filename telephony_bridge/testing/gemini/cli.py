"""``python -m telephony_bridge.testing.emulator``: serve the emulator until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from .scenario import Scenario
from .server import GeminiEmulator
from .vad import DEFAULT_THRESHOLD


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m telephony_bridge.testing.emulator",
        description="Serve an offline Gemini Live API emulator until Ctrl-C.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--api-key", default=None, help="require this key (x-goog-api-key or ?key=)")
    p.add_argument("--pace", type=float, default=1.0, help="reply speed vs real time")
    p.add_argument("--burst-ms", type=float, default=0.0, help="reply audio sent ahead at once")
    p.add_argument("--think-ms", type=float, default=300.0, help="delay before each reply")
    p.add_argument("--silence-ms", type=int, default=None, help="override silenceDurationMs")
    p.add_argument("--vad-threshold", type=float, default=DEFAULT_THRESHOLD)
    p.add_argument("--rest", action="store_true",
                   help="also serve generateContent (the post-call report) on a second port: GEMINI_REST_URL")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    scenario = Scenario(
        pace=args.pace,
        burst_ms=args.burst_ms,
        think_ms=args.think_ms,
        silence_duration_ms=args.silence_ms,
        vad_threshold=args.vad_threshold,
    )
    async with GeminiEmulator(scenario, args.host, args.port, args.api_key, rest=args.rest) as emu:
        print(emu.url, flush=True)
        if emu.rest_url:
            print(f"generateContent (GEMINI_REST_URL): {emu.rest_url}", file=sys.stderr, flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0
