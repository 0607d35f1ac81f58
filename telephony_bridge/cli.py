"""``telephony-bridge`` command line: serve, doctor, demo, emulator, call."""

from __future__ import annotations

import argparse
import sys

from .errors import ConfigError


def _serve(args: argparse.Namespace) -> int:
    from .settings import load_settings

    settings = load_settings()  # a missing setting fails here, before anything heavy is imported
    if args.workers > 1:  # several processes on one port (serving.py)
        from .log import setup_logging
        from .server import warn_at_startup
        from .serving import serve_workers

        setup_logging(settings.log_level)
        warn_at_startup(settings)
        return serve_workers(settings, args.workers)
    from .server import serve

    serve(settings)
    return 0


def _doctor(args: argparse.Namespace) -> int:
    import asyncio

    from .doctor import run_doctor

    return asyncio.run(run_doctor(timeout=args.timeout))


def _demo(args: argparse.Namespace) -> int:
    import asyncio

    from .demo import run_demo

    return asyncio.run(run_demo(out_dir=args.out, quiet=args.quiet, filler=not args.no_filler, stall=args.stall))


def _emulator(args: argparse.Namespace) -> int:
    from .testing.gemini.cli import main

    return main(args.rest) or 0


def _call(args: argparse.Namespace) -> int:
    from .testing.twilio.cli import main

    return main(args.rest) or 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="telephony-bridge",
        description="Bridge Twilio phone calls to a Gemini Live voice agent.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the bridge (settings from the environment)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes sharing the port (SO_REUSEPORT; calls resume across them via the store)")
    p.set_defaults(func=_serve)
    p = sub.add_parser("doctor", help="check this deployment's configuration for real (settings from the environment)")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for each network check")
    p.set_defaults(func=_doctor)
    p = sub.add_parser("demo", help="run a whole interview offline: emulator + bridge + simulated caller")
    p.add_argument("--out", default="demo-output", help="folder for call.wav, transcript.json, timeline.json")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.add_argument("--no-filler", action="store_true", help="no filler phrases while tools run (to compare)")
    p.add_argument("--stall", action="store_true",
                   help="the model answers the greeting request with an empty turn (a silent stall) first")
    p.set_defaults(func=_demo)
    p = sub.add_parser("emulator", help="run the Gemini Live emulator (see --help)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_emulator)
    p = sub.add_parser("call", help="place a simulated Twilio call (see --help)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_call)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"telephony-bridge: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
