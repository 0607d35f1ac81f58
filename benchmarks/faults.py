"""Fault matrix: calls that must go on through every kind of Gemini and bridge failure.

For each fault kind, N simulated calls run through the real bridge against the Gemini Live
emulator over loopback websockets; "kill" runs two real bridge processes sharing a real Redis
and SIGKILLs the one carrying the call. Printed per kind:

  continued   calls whose caller got through the whole script and was answered after the fault
  greet+      greetings repeated (the model greeting a caller it already greeted)
  silence     longest stretch with neither side audible (what a caller hears as a dead line), max over calls
  lost ms     caller audio that never reached Gemini: sent minus received across sessions, plus
              speech during a stream outage (the caller talks on while Twilio reconnects), max
  reconnects  / handovers, summed

"stall" runs --stall-calls calls (default 20) through the emulator's silent stalls (python-genai
#2117: turnComplete with no audio, or no reply at all), cycling through the modes in STALLS; then
"stall-off" runs the same calls with the stall watch off: today's 8 s watchdog alone. For those:

  dead air    from the caller's end of speech (or the start of the call, for the greeting) to the
              next agent audio the caller heard (the phrase counts), worst per call: p50 / p95
  nudges      nudges per stall found
  stalls      stalls the bridge found / stalls the emulator made

Targets: 100% continued; 0 greetings repeated; longest silence <= 1.5 s; no caller audio lost
across a goAway handover (<= 20 ms, one frame); stall dead air p95 <= 1.5 s. Exits 1 when a
target is missed ("stall-off" is the baseline: no targets).

    python benchmarks/faults.py [--calls 3] [--stall-calls 20]
        [--kinds none,1011,drop,goaway,stale,unreachable,kill,stall,stall-off]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import sys
import tempfile
import time
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telephony_bridge.log import setup_logging
from telephony_bridge.testing import CallerScript, CallerSimulator, Fault, GeminiEmulator, Scenario
from telephony_bridge.call.stall_watch import StallConfig
from telephony_bridge.testing.local_call import (
    DEMO_KEY, dead_air_after_turns, founder_turns, greetings, longest_line_silence, place_local_call,
)
from telephony_bridge.testing.processes import free_port, replica_env, start_redis, start_replica, stop
from telephony_bridge.testing.simulator import loopback_rewrite

from probes import Tee  # (benchmarks/ is the script's own directory on sys.path)

TURNS = 3
DRAIN_TURNS = 5  # long enough for two replicas to restart one after the other
SILENCE_MS = 500
DEBUG = False  # Gemini's end-of-turn silence in these calls: short, so gaps are the faults'

FAULTS: dict[str, list[Fault]] = {
    "none": [],
    "1011": [Fault("close", on_reply=2, after_chunks=15, code=1011)],
    "drop": [Fault("drop", on_reply=2, after_chunks=15)],
    "goaway": [Fault("go_away", at_s=4.0, time_left_s=6.0)],
    "stale": [Fault("close", on_reply=2, after_chunks=15), Fault("reject_resume", connection=None)],
    "unreachable": [Fault("close", on_reply=2, after_chunks=15, refuse_s=3.0)],
}

#: Silent stalls, by mode. Reply attempts count on each connection: 1 is the greeting.
STALLS: dict[str, list[Fault]] = {
    "greeting": [Fault("empty_turn", on_reply=1)],
    "empty": [Fault("empty_turn", on_reply=2)],
    "empty x2": [Fault("empty_turn", on_reply=3), Fault("empty_turn", on_reply=4)],
    "no reply": [Fault("no_reply", on_reply=3)],
    # 1011 in the middle of the caller's first answer (greeting 0.3 + 6.3 s, their answer from ~7.6 s
    # to ~12.9 s): the resumed connection's first reply, to that answer, is empty.
    "resumed": [Fault("close", at_s=10.0), Fault("empty_turn", on_reply=1, connection=1)],
}


@dataclass
class Outcome:
    continued: bool
    greetings_repeated: int
    silence_s: float
    lost_ms: float
    reconnects: int = 0
    handovers: int = 0
    notes: list[str] = field(default_factory=list)
    dead_air_s: float = 0.0
    stalls_made: int = 0
    stalls_found: int = 0
    stall_nudges: int = 0
    mode: str = ""
    latencies_ms: list[float] = field(default_factory=list)


def script() -> CallerScript:
    return CallerScript.from_founder_turns(founder_turns()[:TURNS], think_ms=300, quiet_ms=500)


def measure(result: Any, emulator: GeminiEmulator, fault_at: float | None) -> Outcome:
    greeted = greetings(emulator)
    sent_s = len(result.sent_ulaw) / 8000
    received_s = sum(s.audio_in_seconds for s in emulator.sessions)
    answered_after = [e for e in result.events if e["kind"] == "agent_audio_start"
                      and (fault_at is None or e["t"] > fault_at)]
    turns_seen = sum(len(s.turns) for s in emulator.sessions)
    continued = result.ended_by == "caller" and bool(answered_after) and turns_seen >= TURNS
    # Speech the caller went on with while no stream was up never reached anyone: lost too.
    gap_ms = sum(e["details"].get("lost_ms", 0) for e in result.events if e["kind"] == "say_resumed")
    return Outcome(continued, max(0, greeted - 1), longest_line_silence(result),
                   round(max(0.0, sent_s - received_s) * 1000 + gap_ms, 1))


def fault_time(emulator: GeminiEmulator) -> float | None:
    """When the first fault fired, on the caller's clock (both run on this loop's clock)."""
    for s in emulator.sessions:
        for t, name, _ in s.events:
            if name.startswith("fault"):
                return t + s.started_at
    return None


async def one_call(kind: str, faults: list[Fault] | None = None, overrides: dict[str, Any] | None = None,
                   mode: str = "") -> Outcome:
    call = await place_local_call(script(), Scenario(faults=FAULTS[kind] if faults is None else faults),
                                  timeout=120, silence_duration_ms=SILENCE_MS, call_overrides=overrides)
    result, core, emulator = call.result, call.core, call.emulator
    at = fault_time(emulator)
    outcome = measure(result, emulator, None if at is None else at - result.origin)
    outcome.reconnects = core.counters["reconnects"]
    outcome.handovers = core.counters["handovers"]
    outcome.dead_air_s = max(dead_air_after_turns(result))
    # A stalled attempt right after another is the same stall (the nudge's answer was empty too).
    outcome.stalls_made = sum(1 for s in emulator.sessions for a in s.stalled_attempts
                              if a - 1 not in s.stalled_attempts)
    outcome.stalls_found = core.counters["stalls"]
    outcome.stall_nudges = core.counters["stall_nudges"]
    outcome.latencies_ms = core.latencies_ms()
    outcome.mode = mode
    if core.ended != "caller-hangup":
        outcome.notes.append(f"ended {core.ended}")
    return outcome


def stall_calls(n: int, watch: bool) -> list[Any]:
    """``n`` calls cycling through the stall modes, with the stall watch on or off."""
    modes = list(STALLS)
    overrides = None if watch else {"stall": StallConfig(enabled=False)}
    return [one_call("stall", STALLS[modes[i % len(modes)]], overrides, modes[i % len(modes)]) for i in range(n)]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * (len(ordered) - 1)))))]


async def kill_call(redis_url: str, workdir: Path) -> Outcome:
    """Two replicas share Redis; the one carrying the call is SIGKILLed as the caller answers."""
    token = secrets.token_hex(16)
    public = "https://bridge.test"
    emulator = GeminiEmulator(Scenario(), api_key=DEMO_KEY)
    await emulator.start()
    env = replica_env(emulator.url, redis_url, token, workdir, demo_key=DEMO_KEY, public_url=public,
                      silence_ms=SILENCE_MS)
    ports = [free_port(), free_port()]
    replicas = [start_replica(env, p, workdir / f"replica{i}-{p}.log") for i, p in enumerate(ports)]
    alive = {"port": ports[0]}
    killed: dict[str, float | None] = {"at": None}
    says: list[float] = []

    def route(url: str) -> str:
        return loopback_rewrite(f"http://127.0.0.1:{alive['port']}", public)(url)

    def on_event(event: dict[str, Any]) -> None:
        if event["kind"] == "say_start":
            says.append(event["t"])
            if len(says) == 2 and killed["at"] is None:
                replicas[0].send_signal(signal.SIGKILL)
                killed["at"] = event["t"]
                alive["port"] = ports[1]

    try:
        sim = CallerSimulator(f"{public}/twiml", script(), auth_token=token, url_rewrite=route, timeout=120,
                              on_event=on_event)
        result = await sim.run()
    finally:
        for proc in replicas:
            stop(proc)
        await emulator.stop()
    outcome = measure(result, emulator, killed["at"])
    if DEBUG:
        for sess in emulator.sessions:
            print("session", sess.index, sess.resumed_from, sess.closed_code, [e for e in sess.events][:40])
        print("caller", [(e["t"], e["kind"]) for e in result.events if e["kind"] not in ("mark_sent_back",)])
    outcome.reconnects = len(result.stream_sids) - 1
    if len(result.stream_sids) < 2:
        outcome.continued = False
        outcome.notes.append("no second stream")
    return outcome


async def drain_calls(n: int, redis_url: str, workdir: Path) -> list[Outcome]:
    """A rolling restart of two replicas behind a proxy (testing/proxy.py: routes new connections
    to replicas whose /readyz is 200), sharing Redis, with ``n`` calls up: SIGTERM replica 0
    (it drains: unready, its calls handed over at a quiet moment through <Connect action>),
    start it again, then the same for replica 1. Each call must go on to the end of its script."""
    from telephony_bridge.testing.proxy import ReadyProxy

    token = secrets.token_hex(16)
    public = "https://bridge.test"
    emulator = GeminiEmulator(Scenario(), api_key=DEMO_KEY)
    await emulator.start()
    env = replica_env(emulator.url, redis_url, token, workdir, demo_key=DEMO_KEY, public_url=public,
                      silence_ms=SILENCE_MS, DRAIN_FINISH_S="0", DRAIN_HANDOVER_S="20", DRAIN_MAX_S="30")
    ports = [free_port(), free_port()]
    replicas = [start_replica(env, p, workdir / f"drain{i}-{p}.log") for i, p in enumerate(ports)]
    proxy = ReadyProxy(ports)
    await proxy.start()
    route = loopback_rewrite(f"http://127.0.0.1:{proxy.port}", public)
    loop = asyncio.get_running_loop()
    restarts: list[float] = []
    says: list[int] = [0] * n

    async def rolling() -> None:
        while min(says) < 2:  # every call is up and has heard the greeting
            await asyncio.sleep(0.05)
        for i, port in enumerate(ports):
            restarts.append(loop.time())
            replicas[i].send_signal(signal.SIGTERM)
            await loop.run_in_executor(None, replicas[i].wait, 30)
            replicas[i] = await loop.run_in_executor(
                None, start_replica, env, port, workdir / f"drain{i}-{port}-2.log")
            while not proxy.ready.get(port):
                await asyncio.sleep(0.05)

    def on_event(k: int) -> Any:
        def seen(event: dict[str, Any]) -> None:
            if event["kind"] == "say_start":
                says[k] += 1
        return seen

    sims = [CallerSimulator(f"{public}/twiml", CallerScript.from_founder_turns(founder_turns()[:DRAIN_TURNS],
                                                                            think_ms=300, quiet_ms=500),
                            auth_token=token, url_rewrite=route, timeout=180, on_event=on_event(k))
            for k in range(n)]
    try:
        roller = asyncio.ensure_future(rolling())
        results = await asyncio.gather(*(sim.run() for sim in sims))
        rolled = roller.done() and not roller.cancelled() and roller.exception() is None
        roller.cancel()
    finally:
        await proxy.stop()
        for proc in replicas:
            stop(proc)
        await emulator.stop()
    # Caller audio that never reached Gemini, over all calls (sessions are not told apart by call).
    sent_s = sum(len(r.sent_ulaw) for r in results) / 8000
    lost_each_ms = max(0.0, sent_s - sum(x.audio_in_seconds for x in emulator.sessions)) * 1000 / n
    extra_greetings = max(0, greetings(emulator) - n)
    outcomes = []
    for k, result in enumerate(results):
        after = restarts[-1] - result.origin if restarts and result.origin is not None else None
        answered = [e for e in result.events if e["kind"] == "agent_audio_start" and after is not None
                    and e["t"] > after]
        gap_ms = sum(e["details"].get("lost_ms", 0) for e in result.events if e["kind"] == "say_resumed")
        o = Outcome(result.ended_by == "caller" and bool(answered) and rolled, extra_greetings if k == 0 else 0,
                    longest_line_silence(result), round(lost_each_ms + gap_ms, 1))
        o.reconnects = len(result.stream_sids) - 1
        if not rolled:
            o.notes.append("the rolling restart did not finish while the call was up")
        elif not answered:
            o.notes.append("no agent audio after the second restart")
        outcomes.append(o)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3, help="calls per fault kind")
    parser.add_argument("--stall-calls", type=int, default=20, help="calls for the stall rows")
    parser.add_argument("--drain-calls", type=int, default=6, help="calls up across the rolling restart ('drain')")
    parser.add_argument("--kinds", default=",".join([*FAULTS, "kill", "drain", "stall", "stall-off"]))
    args = parser.parse_args(argv)
    setup_logging("ERROR")  # the bridges' structured logs would drown the table
    kinds = [k for k in args.kinds.split(",") if k]
    rows: list[tuple[str, list[Outcome]]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        redis = None
        for kind in kinds:
            if kind == "kill":
                if redis is None:
                    redis = start_redis(workdir)
                outcomes = [asyncio.run(kill_call(redis[1], workdir)) for _ in range(args.calls)]
            elif kind == "drain":
                if redis is None:
                    redis = start_redis(workdir)
                outcomes = asyncio.run(drain_calls(args.drain_calls, redis[1], workdir))
            elif kind in ("stall", "stall-off"):
                async def stall_batch(watch: bool = kind == "stall") -> list[Outcome]:
                    return list(await asyncio.gather(*stall_calls(args.stall_calls, watch)))
                outcomes = asyncio.run(stall_batch())
            else:
                async def batch(kind: str = kind) -> list[Outcome]:
                    return list(await asyncio.gather(*(one_call(kind) for _ in range(args.calls))))
                outcomes = asyncio.run(batch())
            rows.append((kind, outcomes))
            print(f"  {kind}: done ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
        if redis is not None:
            stop(redis[0])

    default = parser.get_default("kinds")
    tee = Tee()
    with redirect_stdout(tee):
        code = report(rows, args)
    if args.kinds == default:  # the whole matrix: the figures the README quotes
        (Path(__file__).resolve().parent / "faults-latest.txt").write_text(tee.getvalue())
    return code


def report(rows: list[tuple[str, list[Outcome]]], args: argparse.Namespace) -> int:
    """The fault matrix, the stall rows and the targets; 1 when one is missed."""
    print(f"fault matrix: {args.calls} call(s) per kind, {TURNS} founder turns each, "
          f"silenceDurationMs {SILENCE_MS}")
    print(f"{'fault':<12} {'continued':>10} {'greet+':>7} {'silence s':>10} {'lost ms':>8} "
          f"{'reconn':>7} {'handover':>9}  notes")
    missed = []
    for kind, outcomes in rows:
        cont = sum(o.continued for o in outcomes)
        greet = sum(o.greetings_repeated for o in outcomes)
        silence = max(o.silence_s for o in outcomes)
        lost = max(o.lost_ms for o in outcomes)
        notes = "; ".join(n for o in outcomes for n in o.notes)
        print(f"{kind:<12} {cont:>4}/{len(outcomes):<5} {greet:>7} {silence:>10.2f} {lost:>8.1f} "
              f"{sum(o.reconnects for o in outcomes):>7} {sum(o.handovers for o in outcomes):>9}  {notes}")
        if kind == "stall-off":
            continue  # the baseline: today's behaviour, no targets
        if cont < len(outcomes):
            missed.append(f"{kind}: {len(outcomes) - cont} call(s) did not continue")
        if greet:
            missed.append(f"{kind}: {greet} greeting(s) repeated")
        if silence > 1.5:
            missed.append(f"{kind}: longest silence {silence:.2f} s > 1.5 s")
        if kind == "goaway" and lost > 20:
            missed.append(f"goaway: {lost:.0f} ms of caller audio lost")
    stall_rows = [(k, o) for k, o in rows if k in ("stall", "stall-off")]
    if stall_rows:
        print()
        print("silent stalls (dead air: caller's end of speech, or call start, to the next agent audio heard;"
              " worst per call)")
        print(f"{'':<10} {'mode':<10} {'calls':>5} {'continued':>10} {'dead air p50':>12} {'p95':>6} {'max':>6} "
              f"{'nudges/stall':>12} {'found/made':>10} {'silence max':>11}")
        for kind, outcomes in stall_rows:
            label = "after" if kind == "stall" else "before"
            for mode in ["all", *STALLS]:
                sel = [o for o in outcomes if mode == "all" or o.mode == mode]
                if not sel:
                    continue
                air = [o.dead_air_s for o in sel]
                found = sum(o.stalls_found for o in sel)
                nudges = sum(o.stall_nudges for o in sel)
                per = f"{nudges / found:.2f}" if found else "-"
                print(f"{label:<10} {mode:<10} {len(sel):>5} {sum(o.continued for o in sel):>4}/{len(sel):<5} "
                      f"{pct(air, 50):>12.2f} {pct(air, 95):>6.2f} {max(air):>6.2f} {per:>12} "
                      f"{found:>4}/{sum(o.stalls_made for o in sel):<5} {max(o.silence_s for o in sel):>11.2f}")
                label = ""
            if kind == "stall":
                p95 = pct([o.dead_air_s for o in outcomes], 95)
                if p95 > 1.5:
                    missed.append(f"stall: dead air p95 {p95:.2f} s > 1.5 s")
                made = sum(o.stalls_made for o in outcomes)
                found = sum(o.stalls_found for o in outcomes)
                if found < made:
                    missed.append(f"stall: {made - found} stall(s) not found")
    healthy = [lat for k, o in rows if k == "none" for c in o for lat in c.latencies_ms]
    if healthy:
        after = [lat - SILENCE_MS for lat in healthy]
        print(f"healthy replies ({len(healthy)} turns, 'none'): caller's end of speech to the first agent frame "
              f"p50 {pct(healthy, 50):.0f} / p95 {pct(healthy, 95):.0f} / max {max(healthy):.0f} ms; "
              f"after the VAD's {SILENCE_MS} ms: p95 {pct(after, 95):.0f} / max {max(after):.0f} ms "
              f"(stall deadline: {StallConfig().no_reply_s * 1000:.0f} ms)")
    print("targets: 100% continued, 0 greetings repeated, silence <= 1.5 s, goAway loses no caller audio, "
          "stall dead air p95 <= 1.5 s")
    if missed:
        print("MISSED: " + "; ".join(missed))
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
