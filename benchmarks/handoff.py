"""Panel hand-off benchmark: the scripted founder panel call (two hand-offs), N calls at once.

    python benchmarks/handoff.py              # 3 calls; table; exit 1 if a target is missed
    python benchmarks/handoff.py --save       # also write benchmarks/handoff-latest.txt

Each call is the real thing on loopback: the Gemini Live emulator (panel scenario: Sam/Charon
hands to Priya/Kore, who hands to Leo/Puck; testing/panel_call.py), the bridge under uvicorn and
the Twilio caller simulator playing the bundled founder's five answers.

Per hand-off:
- **silence heard**: from the outgoing interviewer's last audible 20 ms frame to the next one's
  first, on the audio the simulated phone played. Target <= 400 ms. It includes the emulator's
  scripted think time before a reply (``Scenario.think_ms``, 300 ms) and the clips' own edge
  silence (50 ms each end): the bridge's share is ``switch`` (the next session opened, seeded).
- **caller audio lost**: caller frames dropped while the switch was under way
  (``input_dropped_frames``). Target 0.
- **questions asked twice** in the whole call (agent lines ending in '?'). Target 0.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from pathlib import Path

from telephony_bridge.testing import CallerScript
from telephony_bridge.testing.local_call import founder_turns, place_local_call
from telephony_bridge.testing.panel_call import handoff_figures, panel_scenario, questions_asked_twice

TARGET_SILENCE_MS = 400.0


async def one_call(i: int) -> dict:
    call = await place_local_call(CallerScript.from_founder_turns(founder_turns()), panel_scenario(),
                                  silence_duration_ms=700, timeout=180)
    core = call.core
    return {"call": i, "ended": core.ended, "handoffs": handoff_figures(call.result, core),
            "lost": core.counters["input_dropped_frames"], "twice": questions_asked_twice(core.transcript),
            "speakers": [e.get("speaker") for e in core.transcript if e["role"] == "agent"]}


async def run(calls: int) -> tuple[list[dict], float]:
    t0 = time.monotonic()
    results = await asyncio.gather(*(one_call(i) for i in range(calls)))
    return list(results), time.monotonic() - t0


def report(results: list[dict], wall: float) -> tuple[str, bool]:
    lines = [f"handoff benchmark: {len(results)} panel call(s) at once, {wall:.0f} s wall, "
             f"python {platform.python_version()}, load {open('/proc/loadavg').read().split()[0]}", "",
             f"{'call':>4}  {'hand-off':<18} {'silence ms':>10} {'switch ms':>9} {'lost':>4} {'twice':>5}  ended"]
    silences, ok = [], True
    for r in results:
        for h in r["handoffs"]:
            s = h.get("silence_ms")
            silences.append(s if s is not None else float("inf"))
            lines.append(f"{r['call']:>4}  {h['from'] + '->' + h['to']:<18} {s!s:>10} {h['switch_ms']:>9} "
                         f"{r['lost']:>4} {r['twice']:>5}  {r['ended']}")
        ok &= len(r["handoffs"]) == 2 and r["lost"] == 0 and r["twice"] == 0
        lines.append(f"      speakers: {' '.join(x or '?' for x in r['speakers'])}")
    if silences:
        ok &= max(silences) <= TARGET_SILENCE_MS
        lines += ["", f"silence heard between interviewers: median {statistics.median(silences):.0f} ms, "
                      f"max {max(silences):.0f} ms (target <= {TARGET_SILENCE_MS:.0f} ms)",
                  f"caller audio lost: {sum(r['lost'] for r in results)} frames (target 0); "
                  f"questions asked twice: {sum(r['twice'] for r in results)} (target 0)"]
    lines.append(f"targets: {'all met' if ok else 'MISSED'}")
    return "\n".join(lines), ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args()
    results, wall = asyncio.run(run(args.calls))
    text, ok = report(results, wall)
    print(text)
    if args.save:
        (Path(__file__).parent / "handoff-latest.txt").write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
