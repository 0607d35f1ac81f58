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

Phrases in the agent's voice (the emulator's Gemini TTS, :class:`TtsEmulator`: espeak-ng at
request time, ``--tts-delay-ms`` render time on top), in a panel call whose first interviewer
runs a slow lookup so the bridge's filler covers the silence:
- **cold**: a fresh phrase cache; the call's start asks for its voices' phrases (first need).
  Figures: the TTS render time per phrase, and when the first filler started after the tool
  call (target: the filler deadline, ``filler_after_s`` = 800 ms, + one 20 ms frame) and in
  whose voice.
- **warm**: the same store, a new process view (memory empty): phrases come from the store.
- **outage**: TTS answers 503: the bundled espeak-ng clip plays, within the same deadline.
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
from telephony_bridge.testing.gemini.tts import TtsEmulator
from telephony_bridge.testing.local_call import DEMO_KEY, founder_turns, place_local_call
from telephony_bridge.testing.panel_call import handoff_figures, panel_scenario, questions_asked_twice

TARGET_SILENCE_MS = 400.0
FILLER_DEADLINE_MS = 800.0 + 20.0


async def phrase_call(label: str, store_path: str, *, outage: bool, delay_s: float) -> dict:
    """One panel call with a slow lookup: when its first filler started, and in whose voice."""
    async with TtsEmulator(api_key=DEMO_KEY) as tts:
        tts.outage, tts.delay_s = outage, delay_s
        call = await place_local_call(CallerScript.from_founder_turns(founder_turns()),
                                      panel_scenario(slow_lookup=True), tts=tts, silence_duration_ms=700,
                                      timeout=180, sqlite_path=store_path,
                                      demo_tool_delays_s={"lookup_market": 1.5}, while_up=None)
        core = call.core
        voices = call.bridge.app.state.phrase_voices
        tool = next(e["t"] for e in core.timeline if e["kind"] == "tool_call" and e["name"] == "lookup_market")
        filler = next(e["t"] for e in core.timeline if e["kind"] == "phrase" and e["t"] >= tool)
        return {"label": label, "filler_ms": round((filler - tool) * 1000, 1),
                "source": next((src for src, kind in core.phrases.played if kind == "filler"), None),
                "requests": len(tts.requests), "stats": dict(voices.stats), "render_ms": list(voices.render_ms)}


async def one_call(i: int) -> dict:
    call = await place_local_call(CallerScript.from_founder_turns(founder_turns()), panel_scenario(),
                                  silence_duration_ms=700, timeout=180)
    core = call.core
    return {"call": i, "ended": core.ended, "handoffs": handoff_figures(call.result, core),
            "lost": core.counters["input_dropped_frames"], "twice": questions_asked_twice(core.transcript),
            "speakers": [e.get("speaker") for e in core.transcript if e["role"] == "agent"]}


async def run(calls: int, tts_delay_s: float = 0.0) -> tuple[list[dict], list[dict], float]:
    import tempfile

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        store = f"{tmp}/calls.sqlite3"
        handoffs, cold, outage = await asyncio.gather(
            asyncio.gather(*(one_call(i) for i in range(calls))),
            phrase_call("cold", store, outage=False, delay_s=tts_delay_s),
            phrase_call("outage", f"{tmp}/other.sqlite3", outage=True, delay_s=tts_delay_s))
        warm = await phrase_call("warm", store, outage=False, delay_s=tts_delay_s)
    return list(handoffs), [cold, warm, outage], time.monotonic() - t0


def report(results: list[dict], phrases: list[dict], wall: float) -> tuple[str, bool]:
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
    lines += ["", f"{'phrases':<8} {'first filler after tool call':>28} {'voice':>8} {'TTS requests':>12} "
                  f"{'render ms p50/max':>18}  cache"]
    for p in phrases:
        r = p["render_ms"]
        render = f"{statistics.median(r):.0f}/{max(r):.0f}" if r else "-"
        lines.append(f"{p['label']:<8} {p['filler_ms']:>25} ms {p['source'] or '-':>8} {p['requests']:>12} "
                     f"{render:>18}  {', '.join(f'{k} {v}' for k, v in sorted(p['stats'].items())) or '-'}")
        ok &= p["filler_ms"] <= FILLER_DEADLINE_MS
    by = {p["label"]: p for p in phrases}
    ok &= by["cold"]["source"] == "tts" and by["warm"]["source"] == "tts" and by["outage"]["source"] == "bundled"
    ok &= by["warm"]["requests"] == 0
    lines.append(f"(filler deadline {FILLER_DEADLINE_MS:.0f} ms; cold: rendered at the call's start, first need; "
                 "warm: from the store, no TTS request; outage: TTS 503, the bundled clip)")
    lines.append(f"targets: {'all met' if ok else 'MISSED'}")
    return "\n".join(lines), ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--save", action="store_true")
    parser.add_argument("--tts-delay-ms", type=float, default=0.0, help="the emulated TTS's extra render time")
    args = parser.parse_args()
    results, phrases, wall = asyncio.run(run(args.calls, args.tts_delay_ms / 1000))
    text, ok = report(results, phrases, wall)
    print(text)
    if args.save:
        (Path(__file__).parent / "handoff-latest.txt").write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
