"""``python -m telephony_bridge.testing.simulator``: place a call that replays a recording."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

from ..wav import SAMPLE_RATE, ULAW_SILENCE, load_ulaw
from .caller import CallerSimulator
from .echo import EchoPath
from .script import CallerScript
from .webhook import SimulatorError, loopback_rewrite


def _print_event(event: dict[str, Any]) -> None:
    kind = event["kind"]
    if kind == "mark_received" or (kind == "mark_sent_back" and not event["details"].get("flushed")):
        return  # one per mark: too chatty for a console
    t = event["t"]
    stamp = f"{t:8.3f}" if t is not None else "     ..."
    details = " ".join(f"{k}={v}" for k, v in event["details"].items() if k not in ("custom_parameters",))
    print(f"[{stamp}] {kind} {details}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Place a call that replays a μ-law (or WAV) recording verbatim, then hangs up."""
    parser = argparse.ArgumentParser(
        prog="python -m telephony_bridge.testing.simulator",
        description="Call the bridge as Twilio would, replaying a recording as the caller.",
    )
    parser.add_argument("--twiml-url", required=True, help="where the bridge serves TwiML, e.g. http://127.0.0.1:8080/twiml")
    parser.add_argument("--audio", required=True, help="caller audio: raw 8 kHz μ-law, or a .wav file")
    parser.add_argument("--out", help="write a stereo WAV (left = caller, right = agent as heard)")
    parser.add_argument("--auth-token", default=os.environ.get("TWILIO_AUTH_TOKEN"), help="sign requests (default $TWILIO_AUTH_TOKEN)")
    parser.add_argument(
        "--public-url",
        help="the public TwiML URL Twilio is configured with (what signatures cover); requests still go to --twiml-url",
    )
    parser.add_argument("--no-rewrite", action="store_true", help="use stream/action URLs from TwiML as written")
    parser.add_argument("--tail-ms", type=float, default=0, help="stay on the line this long after the recording")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up on the call after this many seconds")
    parser.add_argument("--quiet", action="store_true", help="do not print events as they happen")
    parser.add_argument("--echo-delay-ms", type=float, help="add echo of what the caller hears, this late")
    parser.add_argument("--echo-erl-db", type=float, help="echo return loss (default 12 dB when echo is on)")
    args = parser.parse_args(argv)
    echo = None
    if args.echo_delay_ms is not None or args.echo_erl_db is not None:
        try:
            echo = EchoPath(
                delay_ms=120.0 if args.echo_delay_ms is None else args.echo_delay_ms,
                erl_db=12.0 if args.echo_erl_db is None else args.echo_erl_db,
            )
        except ValueError as exc:
            parser.error(str(exc))

    ulaw = load_ulaw(args.audio)
    rewrite = None if args.no_rewrite else loopback_rewrite(args.twiml_url, args.public_url)
    sim = CallerSimulator(
        args.public_url or args.twiml_url,
        CallerScript.replay(ulaw, tail_ms=args.tail_ms),
        auth_token=args.auth_token,
        url_rewrite=rewrite,
        timeout=args.timeout,
        on_event=None if args.quiet else _print_event,
        echo=echo,
    )
    try:
        result = asyncio.run(sim.run())
    except SimulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        result.write_wav(args.out)
    heard = sum(1 for b in result.heard_ulaw if b != ULAW_SILENCE) / SAMPLE_RATE
    print(
        f"call {result.call_sid}: {len(result.stream_sids)} stream(s), {result.duration:.2f} s, "
        f"agent audio heard {heard:.2f} s, marks returned {result.marks_returned}, clears {result.clears}, "
        f"media sizes {dict(result.media_sizes_seen)}, ended by {result.ended_by}"
        + (f", wrote {args.out}" if args.out else "")
    )
    if result.protocol_errors:
        print(f"protocol errors: {len(result.protocol_errors)}", file=sys.stderr)
        for message in result.protocol_errors[:10]:
            print(f"  {message}", file=sys.stderr)
    return 0 if not result.protocol_errors else 1
