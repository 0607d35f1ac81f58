"""Gemini input chunk benchmark (issue 15): the same scripted calls at GEMINI_INPUT_CHUNK_MS
20, 40, 60 and 100: turn latency, what the emulator's VAD saw, and messages sent.

    python benchmarks/input_chunks.py                # 3 rounds; table; exit 1 on a crash or failed call
    python benchmarks/input_chunks.py --rounds 1     # a quicker run
    python benchmarks/input_chunks.py --save         # also write benchmarks/input_chunks-latest.txt

Method
------
Every call is the real offline kit on loopback (:func:`telephony_bridge.testing.local_call.
place_local_call`, as ``telephony-bridge demo`` and the end-to-end tests place one): the Gemini
Live emulator with its energy VAD (``testing/gemini/vad.py``), the bridge under uvicorn and the
Twilio caller simulator. Only ``gemini_input_chunk_ms`` changes between calls. The caller script
is the same for every chunk size: the bundled founder's five answers, each after the agent's
question (600 ms think), except answers 2 and 4, which talk over the agent's question 1.2 s and
1.8 s after it starts being heard (barge-ins); each wait gets 0-100 ms of jitter, seeded per
round, so turns end at different phases of the chunk grid (``caller_script``). ``silenceDurationMs`` is 800 ms. A round runs one call
per chunk size at once (so every chunk size sees the same load); ``--rounds`` rounds in a row.
Everything runs in one process (one event loop): the loop lag is printed for context.

Figures, per chunk size
-----------------------
- **turn latency** (bridge): ``CallCore.latencies_ms()``, what the bridge logs per agent turn
  (``call.agent_turn``): from the caller's last speech frame (>= 0.05 RMS) the bridge received
  to the first agent frame it forwarded to Twilio. **heard**: the same wait on the caller's side,
  from the end of their speech in the audio they sent to the first agent audio the simulator
  played (``local_call.dead_air_after_turns``; includes the playout lead).
- **VAD end of speech**: when the emulator's VAD committed the end of each caller turn
  (``CallerTurn.committed``: the arrival of the chunk whose audio completed the silence; the
  emulator records it), against the caller's real end of speech. The reference is the same VAD
  class with the same setup (threshold, prefixPaddingMs, silenceDurationMs) run offline over the
  caller's voice exactly as the simulator sent it, frame by frame on the call clock: its
  ``end`` is where the speech really ended; the ideal commit is when an unbatched, zero-delay
  link would have let the VAD commit (the block completing silenceDurationMs; the simulator sends
  each 20 ms frame at the start of its slot, so one frame before that block's end). ``after
  end`` is live commit minus real end (silenceDurationMs included); ``late`` is live commit
  minus the ideal commit: what batching, the bridge and the hops add.
- **barge-in**: from the caller's speech onset over the agent (the offline VAD's start of that
  speech) to the emulator sending ``serverContent.interrupted``. The emulator needs
  ``barge_in_speech_ms`` (300 ms) of speech (start of speech to its latest loud block) before it
  interrupts; ``late`` is measured against the moment the caller's audio, run through the same
  VAD offline, first held that much: batching, the hops and the bridge's echo gate (frames it
  takes for echo reach Gemini as silence) add to it.
- **msgs/s**: ``realtimeInput`` audio messages the emulator received per second of call;
  **ms/msg**: the audio each one carried.

Exit status 1 only when a call crashed or failed (not ended by the caller's hang-up, a
protocol error, a missing agent turn); the figures have no targets: they inform the default.
The Live API guides disagree on the best size (Google's ADK guide: 10-20 ms for the lowest
latency, 50-100 ms "balanced"); this measures what the difference costs here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from telephony_bridge.testing import CallerScript, Hangup, Say, WaitForAgent  # noqa: E402
from telephony_bridge.testing.gemini.vad import EnergyVAD, SpeechEnd, SpeechStart, pcm16_to_float  # noqa: E402
from telephony_bridge.testing.local_call import dead_air_after_turns, founder_turns, place_local_call  # noqa: E402
from telephony_bridge.testing.wav import ulaw_to_pcm16  # noqa: E402

from probes import LoopLag, pct  # noqa: E402

CHUNKS_MS = (20, 40, 60, 100)
SILENCE_MS = 800
FRAME_S = 0.02
#: Answers (0-based) that talk over the agent's question, and how long after it is first heard.
BARGE_AFTER_MS = {1: 1200.0, 3: 1800.0}


def caller_script(seed: int) -> CallerScript:
    """The founder's five answers; think time and barge-in moments get 0-100 ms of seeded jitter
    (one seed per round, the same for every chunk size), so the caller's end of speech falls at
    different points of the bridge's chunk grid from turn to turn and round to round."""
    rng = np.random.default_rng(seed)
    steps: list[Any] = []
    for i, ulaw in enumerate(founder_turns()):
        jitter = float(rng.uniform(0, 100))
        barge = BARGE_AFTER_MS.get(i)
        steps.append(Say(ulaw, think_ms=600 + jitter, barge_in_after_ms=None if barge is None else barge + jitter,
                         label=f"turn{i + 1}"))
    steps += [WaitForAgent(), Hangup()]
    return CallerScript(steps)


def spoken_turns(result: Any, session: Any, threshold: float, barge_s: float) -> list[dict[str, float]]:
    """The caller's speech as the emulator's VAD (same settings) finds it in the voice the
    simulator sent, fed frame by frame on the call clock: per turn its ``start`` and ``end``
    (call clock), ``commit`` (when an ideal link would have let the VAD commit its end) and
    ``barge`` (when it would have had ``barge_s`` of speech: the earliest possible interrupted).

    The simulator sends each 20 ms frame at the start of its slot on the call clock, so the VAD
    could have seen the block ending at audio time ``t`` at ``t - 20 ms``: the ideal times are
    block ends minus one frame."""
    vad = EnergyVAD(threshold=threshold, prefix_padding_ms=session.prefix_padding_ms,
                    silence_duration_ms=session.silence_duration_ms)
    x = pcm16_to_float(ulaw_to_pcm16(result.voice_ulaw))
    turns: list[dict[str, float]] = []
    start = barge = None
    for k in range(0, len(x) - 159, 160):
        for ev in vad.feed(x[k:k + 160], 8000):
            if isinstance(ev, SpeechStart):
                start, barge = ev.start, None
            elif isinstance(ev, SpeechEnd):
                turns.append({"start": ev.start, "end": ev.end, "commit": ev.committed_at - FRAME_S,
                              "barge": barge if barge is not None else float("inf")})
                start = None
        if start is not None and barge is None and vad.last_speech_end - start + 1e-9 >= barge_s:
            barge = vad.time - FRAME_S
    return turns


async def one_call(chunk_ms: int, scenario: Any, seed: int) -> dict[str, Any]:
    call = await place_local_call(caller_script(seed), scenario, timeout=150, silence_duration_ms=SILENCE_MS,
                                  gemini_input_chunk_ms=chunk_ms)
    result, core, emu = call.result, call.core, call.emulator
    out: dict[str, Any] = {"chunk": chunk_ms, "problems": []}
    problems = out["problems"]
    if core.ended != "caller-hangup" or result.ended_by != "caller":
        problems.append(f"ended {core.ended} / {result.ended_by}")
    if result.protocol_errors:
        problems.append(f"{len(result.protocol_errors)} protocol errors")
    n_says = len(founder_turns())
    out["latency_ms"] = core.latencies_ms()
    if len(out["latency_ms"]) < n_says:
        problems.append(f"{len(out['latency_ms'])} agent turns after the caller's {n_says}")
    out["heard_ms"] = [1000 * w for w in dead_air_after_turns(result)[1:]]
    origin = result.origin
    sessions = emu.sessions
    if origin is None or not sessions:
        problems.append("no stream or no Gemini session")
        return out
    ref = spoken_turns(result, sessions[0], scenario.vad_threshold, scenario.barge_in_speech_ms / 1000)
    live = sorted(s.started_at + t.committed for s in sessions for t in s.turns if t.source == "vad")
    out["vad_turns"], out["spoken_turns"] = len(live), len(ref)
    out["after_end_ms"], out["late_ms"] = [], []
    for commit in live:
        seg = min(ref, key=lambda e: abs(origin + e["commit"] - commit), default=None)
        if seg is None or abs(origin + seg["commit"] - commit) > 1.0:
            problems.append(f"a VAD turn committed at {commit - origin:.2f} s matches no speech")
            continue
        out["after_end_ms"].append(1000 * (commit - origin - seg["end"]))
        out["late_ms"].append(1000 * (commit - origin - seg["commit"]))
    interrupted = sorted(s.started_at + t for s in sessions for t, name, _ in s.events if name == "interrupted")
    out["barge_ms"], out["barge_late_ms"], out["barge_missed"] = [], [], 0
    barge_labels = {f"turn{i + 1}" for i in BARGE_AFTER_MS}
    for e in result.events:
        if e["kind"] != "say_start" or e["details"].get("label") not in barge_labels:
            continue
        seg = next((g for g in ref if e["t"] - 0.05 <= g["start"] <= e["t"] + 1.0), None)
        hit = next((t for t in interrupted if seg is not None and origin + seg["start"] <= t <= origin + seg["start"] + 3),
                   None)
        if seg is None or hit is None:
            out["barge_missed"] += 1
            continue
        out["barge_ms"].append(1000 * (hit - origin - seg["start"]))
        out["barge_late_ms"].append(1000 * (hit - origin - seg["barge"]))
    out["msgs"] = sum(s.audio_in_chunks for s in sessions)
    out["audio_s"] = sum(s.audio_in_seconds for s in sessions)
    out["call_s"] = result.duration
    return out


async def run(rounds: int, chunks: tuple[int, ...]) -> tuple[list[dict[str, Any]], list[float], float]:
    from telephony_bridge.testing.gemini import Scenario

    scenario = Scenario()  # what place_local_call's emulator runs
    t0 = time.monotonic()
    lag = LoopLag()
    calls: list[dict[str, Any]] = []
    for r in range(rounds):
        got = await asyncio.gather(*(one_call(c, scenario, r) for c in chunks), return_exceptions=True)
        for c, g in zip(chunks, got):
            calls.append(g if isinstance(g, dict) else {"chunk": c, "problems": [f"crashed: {g!r}"[:300]]})
        print(f"round {r + 1}/{rounds} done ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
    return calls, lag.stop(), time.monotonic() - t0


def _ms(xs: list[float], q: float) -> str:
    return f"{pct(xs, q):.0f}" if xs else "-"


def _mean(xs: list[float]) -> str:
    return f"{sum(xs) / len(xs):.0f}" if xs else "-"


def report(calls: list[dict[str, Any]], lags: list[float], wall: float, rounds: int,
           chunks: tuple[int, ...]) -> tuple[str, bool]:
    lag_ms = [1000 * x for x in lags]
    lines = [f"input chunk benchmark: {rounds} round(s) x {len(chunks)} calls at once (one per chunk size), "
             f"the same founder script (5 answers, 2 of them barge-ins), silenceDurationMs {SILENCE_MS}; "
             f"{wall:.0f} s wall, python {platform.python_version()}, {os.cpu_count()} CPUs, "
             f"load {open('/proc/loadavg').read().split()[0]}, loop lag p50/p99 {_ms(lag_ms, 50)}/{_ms(lag_ms, 99)} ms",
             "",
             f"{'':5} {'':5} {'turn latency (bridge) ms':>30}  {'heard ms':>9}  {'VAD end of speech ms':>27}  "
             f"{'barge-in: onset->interrupted ms':>40}  {'':>6} {'':>6}",
             f"{'chunk':>5} {'calls':>5} {'turns':>5} {'mean':>5} {'p50':>5} {'p95':>5} {'max':>5}  {'p50':>4} {'p95':>4}  "
             f"{'turns':>5} {'after end p50/p95':>17} {'late mean/p95/max':>17}  "
             f"{'n':>3} {'miss':>4} {'p50':>5} {'p95':>5} {'max':>5} {'late mean/p95':>13}   {'msgs/s':>6} {'ms/msg':>6}"]
    ok = True
    for c in chunks:
        rs = [r for r in calls if r["chunk"] == c]
        good = [r for r in rs if not r["problems"]]
        ok &= len(good) == len(rs)

        def cat(key: str, rows: list[dict[str, Any]] = rs) -> list[float]:
            return [x for r in rows for x in r.get(key, [])]

        lat, heard, after, late = cat("latency_ms"), cat("heard_ms"), cat("after_end_ms"), cat("late_ms")
        barge, barge_late = cat("barge_ms"), cat("barge_late_ms")
        vad_turns = sum(r.get("vad_turns", 0) for r in rs)
        spoken = sum(r.get("spoken_turns", 0) for r in rs)
        missed = sum(r.get("barge_missed", 0) for r in rs)
        msgs = sum(r.get("msgs", 0) for r in rs)
        call_s = sum(r.get("call_s", 0.0) for r in rs)
        audio_s = sum(r.get("audio_s", 0.0) for r in rs)
        lines.append(
            f"{c:>5} {len(good):>2}/{len(rs):<2} {len(lat):>5} {_mean(lat):>5} {_ms(lat, 50):>5} {_ms(lat, 95):>5} "
            f"{(f'{max(lat):.0f}' if lat else '-'):>5}  {_ms(heard, 50):>4} {_ms(heard, 95):>4}  "
            f"{f'{vad_turns}/{spoken}':>5} {_ms(after, 50) + ' / ' + _ms(after, 95):>17} "
            f"{_mean(late) + '/' + _ms(late, 95) + '/' + (f'{max(late):.0f}' if late else '-'):>17}  "
            f"{len(barge):>3} {missed:>4} {_ms(barge, 50):>5} {_ms(barge, 95):>5} "
            f"{(f'{max(barge):.0f}' if barge else '-'):>5} {_mean(barge_late) + '/' + _ms(barge_late, 95):>13}   "
            f"{(msgs / call_s if call_s else float('nan')):>6.1f} {(1000 * audio_s / msgs if msgs else float('nan')):>6.1f}")
        for r in rs:
            if r["problems"]:
                lines.append(f"      FAILED call (chunk {c} ms): " + "; ".join(r["problems"]))
    lines += ["",
              "turn latency: the bridge's figure (caller's last speech frame -> first agent frame to Twilio); heard: "
              "the caller's end of speech -> first agent audio played",
              f"VAD end of speech: turns = VAD turns / turns in the caller's audio; after end = live commit - real end "
              f"(incl. silenceDurationMs {SILENCE_MS}); late = live commit - ideal commit (when the frame completing "
              "the silence was sent)",
              "barge-in: n measured, miss = no interrupted within 3 s of the onset; the emulator needs 300 ms of speech; "
              "late = interrupted - the ideal (the moment the caller's audio held 300 ms of speech)",
              f"calls: {'all ok' if ok else 'SOME FAILED'}"]
    return "\n".join(lines), ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of one call per chunk size (all at once)")
    parser.add_argument("--chunks", default=",".join(map(str, CHUNKS_MS)), help="chunk sizes in ms (multiples of 20)")
    parser.add_argument("--save", action="store_true", help="also write benchmarks/input_chunks-latest.txt")
    args = parser.parse_args()
    chunks = tuple(int(x) for x in args.chunks.split(","))
    calls, lags, wall = asyncio.run(run(args.rounds, chunks))
    text, ok = report(calls, lags, wall, args.rounds, chunks)
    print(text)
    if args.save:
        (ROOT / "benchmarks" / "input_chunks-latest.txt").write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
