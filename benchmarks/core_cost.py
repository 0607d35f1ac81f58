"""The call core's own CPU per call-second, on a fake clock: no sockets, no event loop, no peers.

    python benchmarks/core_cost.py              # 3 runs of 120 simulated seconds; a table
    python benchmarks/core_cost.py --profile    # cProfile of one run, the 25 costliest functions

``benchmarks/load.py`` measures the whole bridge, and on a small VM its figures move by ±20% with
what the other vCPU does (the harness, anything else). This one measures only the pure part,
:class:`~telephony_bridge.call.CallCore` with the echo gate, as ``serve`` builds it (100 ms
Gemini input chunks, 160 ms lead), on the traffic of ``load.py``'s calls: a caller frame every
20 ms (4 s of speech, 4 s of silence), the agent answering in the silence with 40 ms chunks of
24 kHz audio, marks coming back 160 ms after they were sent. Without sockets or peers its
figure is steadier, though it still moves with the VM (±15% from one half hour to the next):
judge a per-frame change here first, by interleaved A/B runs of the old and new code.

Figure: CPU ms per call-second (``time.process_time``), with the Twilio frames in and out per
second to show the traffic was the intended one.

    python benchmarks/core_cost.py --instructions   # instructions per call-second, under callgrind

``--instructions`` counts instead of timing: the same run under ``valgrind --tool=callgrind``
(Debian's valgrind) at two lengths, the difference divided by the extra simulated seconds, so
start-up (imports, filter design) cancels out. The count is the same from one run to the next
(within about 1%) whatever else the machine does: a per-frame change of a few percent shows in one A/B
pair, where timed runs need many interleaved rounds. It takes about two minutes (both lengths run
at once, ~50x slower than native).
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telephony_bridge.call import CallConfig, CallCore  # noqa: E402
from telephony_bridge.dsp import pcm16_to_ulaw  # noqa: E402
from telephony_bridge.echo_gate import EchoGate  # noqa: E402
from telephony_bridge.gemini.messages import SetupConfig  # noqa: E402

STREAM_SID = "MZ" + "1" * 32
START = json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": STREAM_SID, "start": {
    "streamSid": STREAM_SID, "callSid": "CA" + "2" * 32, "accountSid": "AC" + "3" * 32, "tracks": ["inbound"],
    "customParameters": {}, "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}},
    separators=(",", ":"))


def tone(seconds: float, rate: int, amp: float, freq: float) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def media(payload: bytes, seq: int) -> str:
    """A caller frame as Twilio sends it."""
    return json.dumps({"event": "media", "sequenceNumber": str(seq), "media": {
        "track": "inbound", "chunk": str(seq), "timestamp": str(20 * seq),
        "payload": base64.b64encode(payload).decode()}, "streamSid": STREAM_SID}, separators=(",", ":"))


def run(seconds: float) -> tuple[float, float, float]:
    core = CallCore(SetupConfig(model="m"), CallConfig(playback_lead_s=0.16, input_chunk_ms=100), now=0.0,
                    gate=EchoGate())
    core.gemini_connected(0.0)
    core.receive_gemini(b'{"setupComplete":{}}', 0.0)
    core.receive_twilio(START, 0.0)
    speech = pcm16_to_ulaw(tone(4.0, 8000, 0.2, 440.0))
    talking = [media(speech[i * 160:(i + 1) * 160], i) for i in range(200)]
    quiet = media(b"\xff" * 160, 0)
    chunk = json.dumps({"serverContent": {"modelTurn": {"parts": [{"inlineData": {
        "mimeType": "audio/pcm;rate=24000", "data": base64.b64encode(tone(0.04, 24000, 0.3, 300.0)).decode()}}]}}},
        separators=(",", ":")).encode()
    turn_complete = b'{"serverContent":{"turnComplete":true}}'
    marks: list[tuple[float, str]] = []
    n_in = n_out = 0
    t0 = time.process_time()
    step = 0
    now = 0.0
    while now < seconds:
        now = step * 0.02
        step += 1
        phase = now % 8.0
        core.receive_twilio(talking[step % 200] if phase < 4.0 else quiet, now)
        n_in += 1
        if 4.0 <= phase < 7.6 and step % 2 == 0:
            core.receive_gemini(chunk, now)
        if abs(phase - 7.6) < 0.01:
            core.receive_gemini(turn_complete, now)
        deadline = core.next_deadline()
        if deadline is not None and deadline <= now + 0.02:
            core.tick(max(deadline, now))
        for message in core.twilio_out:
            if message.startswith('{"event":"mark"'):
                marks.append((now + 0.16, json.loads(message)["mark"]["name"]))
            n_out += 1
        core.twilio_out.clear()
        core.gemini_out.clear()
        while marks and marks[0][0] <= now:
            name = marks.pop(0)[1]
            core.receive_twilio(json.dumps({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": name}}), now)
    cpu = time.process_time() - t0
    return 1000 * cpu / seconds, n_in / seconds, n_out / seconds


INSTRUCTION_SECONDS = (10.0, 90.0)  # the two lengths whose difference is counted


def instructions(short_s: float, long_s: float) -> tuple[float, float]:
    """(instructions per simulated call-second, frames in per second) from two callgrind runs."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts in both runs
    with tempfile.TemporaryDirectory() as tmp:
        procs = [subprocess.Popen([valgrind, "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.{i}",
                                   sys.executable, __file__, "--seconds", str(s), "--runs", "1"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i, s in enumerate((short_s, long_s))]
        counts, rates = [], []
        for proc in procs:
            out, err = proc.communicate()
            found = re.search(r"Collected : (\d+)", err)
            if proc.returncode != 0 or found is None:
                raise SystemExit(f"callgrind run failed ({proc.returncode}): {err[-500:]}")
            counts.append(int(found.group(1)))
            row = re.search(r"^\s+1\s+\S+\s+(\S+)", out, re.M)
            rates.append(float(row.group(1)) if row else float("nan"))
    return (counts[1] - counts[0]) / (long_s - short_s), rates[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="simulated seconds per run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--instructions", action="store_true",
                    help="count instructions per call-second under callgrind instead of timing")
    args = ap.parse_args(argv)
    if args.instructions:
        per_s, fin = instructions(*INSTRUCTION_SECONDS)
        print(f"call core + echo gate (python {sys.version.split()[0]}), callgrind, "
              f"{INSTRUCTION_SECONDS[1]:.0f} - {INSTRUCTION_SECONDS[0]:.0f} simulated s")
        print(f"{per_s / 1e6:.2f} M instructions per call-second ({fin:.1f} Twilio frames in per second)")
        return 0
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run, args.seconds)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return 0
    print(f"call core + echo gate, {args.seconds:.0f} simulated s per run (python {sys.version.split()[0]})")
    print("run  CPU ms/call-s  Twilio in/s  Twilio out/s")
    results = []
    for i in range(args.runs):
        ms, fin, fout = run(args.seconds)
        results.append(ms)
        print(f"{i + 1:3d}  {ms:13.3f}  {fin:11.1f}  {fout:12.1f}")
    print(f"median {sorted(results)[len(results) // 2]:.3f} CPU ms per call-second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
