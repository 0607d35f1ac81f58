"""Barge-in benchmark: N concurrent calls through the real bridge, each interrupted mid-reply.

    python benchmarks/bargein.py                 # 100 calls; tables; exit 1 if a target is missed
    python benchmarks/bargein.py --calls 20      # a smaller run
    python benchmarks/bargein.py --echo          # callers on speakerphone (12 dB, 100 ms echo)
    python benchmarks/bargein.py --save          # also write benchmarks/bargein-latest.txt

Three processes, so that the system under test does not share an event loop with the harness,
and the load it sees is what a deployment sees (sockets, JSON, base64, resampling, the echo gate):

- **bridge** (this process): :class:`telephony_bridge.testing.local_call.LocalBridge`, the real app under
  uvicorn on a loopback port, as ``telephony-bridge serve`` runs it (echo gate included).
- **emulator** (a child): :class:`GeminiEmulator` with the default scenario: greets, detects the
  caller's speech with its VAD, sends ``serverContent.interrupted`` when the caller talks over a
  reply. At the end it reports, per Gemini session, when it sent each ``interrupted`` and when
  the next reply's first audio went out.
- **callers** (a child): N :class:`CallerSimulator` calls, all on the line together (starts spread
  over ``--spread`` seconds, shorter than any call, so they are not in lockstep). Each caller
  talks over the greeting 1.0-2.5 s after it starts being heard (a founder answer from the
  bundled recording), stays on the line 1.5 s more and hangs up. The simulator plays what it
  receives in real time, answers marks, honours ``clear``, and records every stretch of agent
  audio it played. ``--echo`` puts every caller on speakerphone (12 dB, 100 ms).

On a 2-core machine the three processes (and anything else running) share two cores: the output
gives each one's CPU and event-loop lag (how late a 10 ms sleep wakes), the bridge's garbage
collection pauses and the load average, so a slow run can be told from a slow bridge.

Figures
-------
- **interrupted -> clear**: the bridge's own reaction time, ``CallCore.clear_reactions_s``: from
  the moment the bridge read ``interrupted`` off Gemini's socket to the moment its ``clear`` was
  written to Twilio's. Target: p99 <= 2 ms.
- **stale audio**: agent audio each caller heard after the emulator *sent* ``interrupted`` and
  before the emulator sent any new audio (so it can only be the interrupted reply): the overlap of
  the simulator's playback with that interval, on the shared monotonic clock (``loop.time()`` is
  ``time.monotonic()`` in every process). It covers the loopback hops both ways, the bridge's
  reaction and whatever Twilio (the simulator) had buffered, which the lead bounds. Target: every
  call <= the playback lead (``--lead-ms``, default the bridge's 160 ms).
- Context, no targets: agent audio heard after the caller started talking (adds the gate's and
  the emulator VAD's detection time); caller began -> first ``double_talk`` in the bridge's
  timeline; and the legs of the interruption: emulator -> bridge (read), bridge -> caller (clear
  processed by the simulator).

Calls are matched to Gemini sessions by session-resumption handle: the bridge keeps the newest
handle Gemini gave it, and the emulator records every handle it issued.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import secrets
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from telephony_bridge.testing.local_call import DEMO_KEY, LocalBridge, founder_turns  # noqa: E402
from telephony_bridge.log import setup_logging  # noqa: E402
from telephony_bridge.settings import Settings  # noqa: E402

from probes import GcPauses, LoopLag, pct  # noqa: E402

CLEAR_P99_TARGET_S = 0.002


# ----------------------------------------------------------------------------------- children


async def emulator_role() -> None:
    from telephony_bridge.testing import GeminiEmulator, Scenario

    emu = GeminiEmulator(Scenario(), api_key=DEMO_KEY)
    await emu.start()
    print("READY", emu.url, flush=True)
    loop = asyncio.get_running_loop()
    t0, c0 = time.monotonic(), time.process_time()
    lag = LoopLag()
    await loop.run_in_executor(None, sys.stdin.readline)  # the parent says when to report
    sessions = []
    for s in emu.sessions:
        base = s.started_at
        sessions.append({
            "handles": list(s.handles_issued),
            "interrupted": [base + t for t, name, _ in s.events if name == "interrupted"],
            "reply_audio": [base + r.first_audio_at for r in s.replies if r.first_audio_at is not None],
            "interruptions": s.interruptions,
        })
    out = {"sessions": sessions, "cpu_s": time.process_time() - c0, "wall_s": time.monotonic() - t0,
           "lag": lag.stop()}
    await emu.stop()
    print(json.dumps(out), flush=True)


async def callers_role(args: argparse.Namespace) -> None:
    from telephony_bridge.testing import CallerScript, CallerSimulator, Hangup, Say, Wait
    from telephony_bridge.testing.simulator import EchoPath

    turns = founder_turns()
    rng = np.random.default_rng(args.seed)
    t0, c0 = time.monotonic(), time.process_time()
    lag = LoopLag()

    async def one(i: int) -> dict[str, Any]:
        await asyncio.sleep(float(rng.uniform(0, args.spread)))
        barge_ms = float(rng.uniform(1000, 2500))
        script = CallerScript([
            Say(turns[i % len(turns)], barge_in_after_ms=barge_ms, label="barge-in"),
            Wait(1500),
            Hangup(),
        ])
        echo = EchoPath(delay_ms=100, erl_db=12.0) if args.echo else None
        sim = CallerSimulator(args.twiml_url, script, auth_token=args.auth_token, timeout=60, echo=echo)
        r = await sim.run()
        say = [e["t"] for e in r.events if e["kind"] == "say_start"]
        clears = [e["t"] for e in r.events if e["kind"] == "clear"]
        return {
            "call_sid": r.call_sid, "origin": r.origin, "playback": r.playback, "clears": r.clears,
            "say_start": say[0] if say else None, "clear_at": clears[0] if clears else None,
            "ended_by": r.ended_by, "barge_ms": barge_ms,
            "protocol_errors": len(r.protocol_errors),
        }

    results = await asyncio.gather(*(one(i) for i in range(args.calls)), return_exceptions=True)
    calls = [r if isinstance(r, dict) else {"error": repr(r)} for r in results]
    print(json.dumps({"calls": calls, "cpu_s": time.process_time() - c0, "wall_s": time.monotonic() - t0,
                      "lag": lag.stop()}), flush=True)


# ----------------------------------------------------------------------------------- parent


def heard_between(playback: list[list[float]], a: float, b: float) -> float:
    return sum(max(0.0, min(e, b) - max(s, a)) for s, e in playback)


async def bench(args: argparse.Namespace) -> bool:
    me = [sys.executable, str(Path(__file__).resolve())]
    emu = await asyncio.create_subprocess_exec(*me, "--role", "emulator", "--nice", str(args.nice),
                                               stdin=asyncio.subprocess.PIPE,
                                               stdout=asyncio.subprocess.PIPE)
    assert emu.stdout is not None and emu.stdin is not None
    line = (await emu.stdout.readline()).decode().split()
    if not line or line[0] != "READY":
        raise RuntimeError("the emulator did not start")
    token = secrets.token_hex(16)
    log_path = ROOT / "benchmarks" / "bargein-bridge.log"
    log_file = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    setup_logging("WARNING", stream=log_file)
    bridge = LocalBridge(Settings(
        gemini_api_key=DEMO_KEY, public_url="http://127.0.0.1", gemini_live_url=line[1],
        twilio_auth_token=token, silence_duration_ms=800, playback_lead_ms=args.lead_ms,
        max_concurrent_calls=args.calls + 10,
    ))
    await bridge.start()
    cores: dict[str, Any] = {}

    def collect() -> None:
        for core in list(bridge.app.state.calls.finished):
            if core.call_sid:
                cores[core.call_sid] = core

    t0, c0, load0 = time.monotonic(), time.process_time(), os.getloadavg()
    lag = LoopLag()
    gcp = GcPauses()
    callers = await asyncio.create_subprocess_exec(
        *me, "--role", "callers", "--nice", str(args.nice), "--twiml-url", bridge.twiml_url, "--auth-token", token,
        "--calls", str(args.calls), "--spread", str(args.spread), "--seed", str(args.seed),
        *(["--echo"] if args.echo else []), stdout=asyncio.subprocess.PIPE)
    out_task = asyncio.create_task(callers.communicate())
    while not out_task.done():
        collect()
        await asyncio.sleep(0.2)
    caller_out = json.loads(out_task.result()[0].decode())
    deadline = time.monotonic() + 15
    want = {c["call_sid"] for c in caller_out["calls"] if "call_sid" in c}
    while not want <= cores.keys() and time.monotonic() < deadline:
        collect()
        await asyncio.sleep(0.1)
    wall, cpu, load1 = time.monotonic() - t0, time.process_time() - c0, os.getloadavg()
    bridge_lag = lag.stop()
    bridge_gc = gcp.stop()
    await bridge.stop()
    log_file.close()
    warnings = [json.loads(x) for x in log_path.read_text().splitlines() if x.startswith("{")]
    log_path.unlink()
    emu.stdin.write(b"report\n")
    await emu.stdin.drain()
    emu_out = json.loads((await emu.stdout.read()).decode())  # its last words, then it exits
    await emu.wait()

    by_handle = {h: s for s in emu_out["sessions"] for h in s["handles"]}
    reactions: list[float] = []
    stale: list[float] = []
    since_talk: list[float] = []
    gate_open: list[float] = []
    legs: dict[str, list[float]] = {"Gemini -> bridge": [], "bridge -> Twilio (caller)": [],
                                    "interrupted sent -> clear at caller": []}
    problems: list[str] = []
    gated = 0
    for c in caller_out["calls"]:
        if "error" in c:
            problems.append(f"caller error: {c['error'][:200]}")
            continue
        core = cores.get(c["call_sid"])
        if core is None:
            problems.append(f"{c['call_sid']}: the bridge never finished it")
            continue
        gated += getattr(core, "gate", None) is not None
        reactions += core.clear_reactions_s
        session = by_handle.get(core.session.handle)
        if session is None or not session["interrupted"]:
            problems.append(f"{c['call_sid']}: not interrupted (handle {'found' if session else 'unmatched'}, "
                            f"clears {c['clears']}, ended by {c['ended_by']})")
            continue
        if c["clears"] < 1 or not core.clear_reactions_s:
            problems.append(f"{c['call_sid']}: interrupted but no clear")
        t_int = session["interrupted"][0] - c["origin"]
        later = [t for t in session["reply_audio"] if t > session["interrupted"][0]]
        t_next = (later[0] - c["origin"]) if later else float("inf")
        stale.append(heard_between(c["playback"], t_int, t_next))
        # Where the time went: emulator -> bridge, the bridge's reaction, bridge -> caller.
        got = [e["t"] for e in core.timeline if e["kind"] == "interrupted"]
        if got and core.clear_reactions_s and c["clear_at"] is not None:
            received = core.t0 + got[0]
            written = received + core.clear_reactions_s[0]
            legs["Gemini -> bridge"].append(received - session["interrupted"][0])
            legs["bridge -> Twilio (caller)"].append(c["origin"] + c["clear_at"] - written)
            legs["interrupted sent -> clear at caller"].append(c["origin"] + c["clear_at"] - session["interrupted"][0])
        if c["say_start"] is not None:
            since_talk.append(heard_between(c["playback"], c["say_start"], t_next))
            began = c["origin"] + c["say_start"]
            opened = [core.t0 + e["t"] for e in core.timeline if e["kind"] == "gate"
                      and e["decision"] == "double_talk" and core.t0 + e["t"] >= began - 0.001]
            if opened:
                gate_open.append(opened[0] - began)
        if c["protocol_errors"]:
            problems.append(f"{c['call_sid']}: {c['protocol_errors']} protocol errors seen by the caller")

    n_ok = len(stale)
    print(f"Barge-in benchmark  (python benchmarks/bargein.py --calls {args.calls}"
          + (" --echo" if args.echo else "") + ")")
    print(f"{args.calls} concurrent calls (starts spread over {args.spread:.1f} s), playback lead {args.lead_ms} ms, "
          f"echo {'12 dB / 100 ms' if args.echo else 'off'}; bridge echo gate: {gated}/{len(cores)} calls")
    print(f"machine: {os.cpu_count()} CPUs; load average {load0[0]:.2f} before, {load1[0]:.2f} after; "
          f"emulator and callers at nice {args.nice:+d}")
    print()
    print(f"{'process':10s} {'CPU s':>7s} {'wall s':>7s} {'CPU':>6s}   event-loop lag ms (10 ms sleeps): p50 / p99 / max")
    for name, c_s, w_s, lags in (("bridge", cpu, wall, bridge_lag),
                                 ("callers", caller_out["cpu_s"], caller_out["wall_s"], caller_out["lag"]),
                                 ("emulator", emu_out["cpu_s"], emu_out["wall_s"], emu_out["lag"])):
        lg = [1000 * x for x in lags]
        print(f"{name:10s} {c_s:7.1f} {w_s:7.1f} {100 * c_s / w_s:5.0f}%   "
              f"{pct(lg, 50):6.1f} / {pct(lg, 99):6.1f} / {max(lg, default=float('nan')):6.1f}")
    gc_line = ", ".join(f"gen{g} {len(p)} x, max {1000 * max(p, default=0):.1f} ms" for g, p in bridge_gc.items())
    print(f"bridge garbage collection: {gc_line}")
    print()
    ms = [1000 * x for x in reactions]
    st = [1000 * x for x in stale]
    tk = [1000 * x for x in since_talk]
    print(f"{'figure':44s} {'n':>4s} {'p50':>7s} {'p90':>7s} {'p99':>7s} {'max':>7s}  target")
    print(f"{'interrupted -> clear (ms, bridge)':44s} {len(ms):4d} {pct(ms, 50):7.3f} {pct(ms, 90):7.3f} "
          f"{pct(ms, 99):7.3f} {max(ms, default=float('nan')):7.3f}  p99 <= {1000 * CLEAR_P99_TARGET_S:.0f}")
    print(f"{'stale audio after interrupted was sent (ms)':44s} {len(st):4d} {pct(st, 50):7.1f} {pct(st, 90):7.1f} "
          f"{pct(st, 99):7.1f} {max(st, default=float('nan')):7.1f}  every call <= {args.lead_ms}")
    print(f"{'agent heard after the caller began (ms)':44s} {len(tk):4d} {pct(tk, 50):7.1f} {pct(tk, 90):7.1f} "
          f"{pct(tk, 99):7.1f} {max(tk, default=float('nan')):7.1f}  (context)")
    go = [1000 * x for x in gate_open]
    print(f"{'caller began -> gate passes it (ms)':44s} {len(go):4d} {pct(go, 50):7.1f} {pct(go, 90):7.1f} "
          f"{pct(go, 99):7.1f} {max(go, default=float('nan')):7.1f}  (context; double_talk in the timeline)")
    for name, xs in legs.items():
        v = [1000 * x for x in xs]
        print(f"{'  ' + name + ' (ms)':44s} {len(v):4d} {pct(v, 50):7.1f} {pct(v, 90):7.1f} "
              f"{pct(v, 99):7.1f} {max(v, default=float('nan')):7.1f}  (context; 1 ms timeline resolution)")
    print()
    if warnings:
        kinds: dict[str, int] = {}
        for w in warnings:
            key = w.get("event", "?") + "".join(f" {k}={w[k]}" for k in ("task", "error", "reason") if k in w)
            kinds[key[:160]] = kinds.get(key[:160], 0) + 1
        print(f"bridge warnings ({len(warnings)}):")
        for key, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:10]:
            print(f"  {n:4d} x {key}")
        print()
    ok = True
    if problems:
        ok = False
        print(f"{len(problems)} problem(s):")
        for p in problems[:20]:
            print(f"  {p}")
    if n_ok < args.calls:
        ok = False
        print(f"only {n_ok} of {args.calls} calls were interrupted and measured")
    if not ms or pct(ms, 99) > 1000 * CLEAR_P99_TARGET_S:
        ok = False
        print("TARGET MISSED: interrupted -> clear p99")
    if not st or max(st) > args.lead_ms + 1e-6:
        ok = False
        over = sum(x > args.lead_ms for x in st)
        print(f"TARGET MISSED: stale audio over the lead in {over} call(s)")
    if ok:
        print("all targets met")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--lead-ms", type=int, default=160)
    ap.add_argument("--spread", type=float, default=5.0, help="seconds over which call starts are spread (all calls "
                    "last longer than this, so all of them overlap)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--echo", action="store_true", help="callers on speakerphone: 12 dB, 100 ms echo")
    ap.add_argument("--save", action="store_true", help="also write benchmarks/bargein-latest.txt")
    ap.add_argument("--nice", type=int, default=0, help="niceness of the emulator and callers processes (0: same "
                    "priority as the bridge)")
    ap.add_argument("--role", choices=("bench", "emulator", "callers"), default="bench", help=argparse.SUPPRESS)
    ap.add_argument("--twiml-url", help=argparse.SUPPRESS)
    ap.add_argument("--auth-token", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.role != "bench" and args.nice:
        os.nice(args.nice)  # the harness stands in for Twilio and Gemini: not the bridge's CPU
    if args.role == "emulator":
        asyncio.run(emulator_role())
        return 0
    if args.role == "callers":
        asyncio.run(callers_role(args))
        return 0
    buf = io.StringIO()

    class Tee(io.TextIOBase):
        def write(self, s: str) -> int:
            sys.__stdout__.write(s)
            buf.write(s)
            return len(s)

    with redirect_stdout(Tee()):
        ok = asyncio.run(bench(args))
    if args.save:
        (ROOT / "benchmarks" / "bargein-latest.txt").write_text(buf.getvalue())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
