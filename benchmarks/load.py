"""Load benchmark: steady two-way audio through the real bridge, N calls at once, N ramped.

    python benchmarks/load.py                        # steps 25 50 75 100 150 200 300; table; saves load-latest.txt
    python benchmarks/load.py --max-calls 100        # stop the ramp at 100
    python benchmarks/load.py --steps 50,300 --window 20
    python benchmarks/load.py --profile /tmp/p.prof --steps 300   # cProfile the bridge during the window

Three processes, as in ``benchmarks/bargein.py``:

- **bridge** (this process): :class:`~telephony_bridge.testing.local_call.LocalBridge`, the real app
  under uvicorn on a loopback port (echo gate, SQLite store, signatures and stream tokens on), pinned
  to CPU 0 when the machine has two or more (``os.sched_setaffinity``), so "% of one core" means one
  core.
- **emulator** (a child, pinned to CPU 1): a *lean* Gemini Live peer. After ``setupComplete`` each
  session alternates a pause (the caller's turn, 3-5 s) and a reply from the emulator's clips
  (24 kHz PCM in 40 ms chunks, kept 400 ms ahead of real time as the service bursts, with an output
  transcription, ``generationComplete``, ``turnComplete`` and a resumption handle), so agent audio
  flows about half the time. It never parses what it receives: it counts it.
- **callers** (a child per step, pinned to CPU 1): N *lean* Twilio callers. Each does the signed
  webhook, opens the signed stream, sends ``connected``/``start`` with the stream token, then streams
  the bundled founder answers, looped with 1 s pauses, one 160-byte ``media`` frame every 20 ms;
  it plays what it receives at 20 ms a frame, returns marks when the audio before them has played
  and honours ``clear`` (what Twilio does). Frames are sent from shared tickers in ten 2 ms phase
  groups, so the calls are not in lockstep. Each stream's socket is read and written in direct mode
  (``gemini/client.py``'s ``LiveConnection``: frames handed over inside ``data_received``, sends
  written at once, no task hop per frame), so the load generator keeps up at the top steps.

Why lean peers: the full :class:`GeminiEmulator` (VAD per frame) and :class:`CallerSimulator` (a
recorded call per caller) cost about as much CPU per call as the bridge itself, so on a 2-core
machine they, not the bridge, would saturate first. The bridge cannot tell: it sees the same
frames, the same JSON, the same pacing.

Each step: calls start over ``--spread`` seconds, ``--warmup`` seconds settle, then the bridge is
measured for ``--window`` seconds with every call up; then all hang up and the next step begins.

Figures per step (bridge process):

- **CPU ms / call-s**: bridge CPU time in the window / (calls x window seconds).
- **CPU %**: bridge CPU time / wall time (of one core); **sys**: the kernel's share of it (socket
  system calls: on loopback the sender also pays for delivering each segment). **core %**: how busy
  the bridge's CPU was (/proc/stat: user, system, irq, softirq; only the bridge is pinned there),
  **irq**: its softirq+irq share (loopback packet delivery, not charged to any process),
  **steal**: time the hypervisor gave to others. The capacity rule uses the larger of CPU % and core %.
- **lag p50/p99/max**: how late a 10 ms sleep wakes in the bridge's event loop.
- **in/out fps**: Twilio frames the bridge read / agent frames it wrote, per call-second (50 in
  means the callers kept up; ~25 out means agent audio flowed half the time).
- **underrun %**: share of agent frames that reached a caller late: 20 ms ticks on which a caller's
  playback buffer was empty in the middle of a reply (audio resumed within 500 ms), over frames played.
- **harness lag p99**: the callers' and emulator's own loop lag, to tell a slow harness from a slow bridge.

**Capacity on one core** is the largest step with bridge CPU <= 80% of a core and loop-lag p99 <= 50 ms.
The 300-call target is reported as met or missed; the benchmark exits 1 only when it crashes or
calls fail (a call ended early, a call never came up, a protocol error).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import random
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any, NamedTuple


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from telephony_bridge.testing.local_call import DEMO_KEY, LocalBridge, founder_turns  # noqa: E402
from telephony_bridge.log import setup_logging  # noqa: E402
from telephony_bridge.settings import Settings  # noqa: E402

CPU_LIMIT = 0.80
LAG_P99_LIMIT_MS = 50.0
TARGET_CALLS = 300
PIPECAT_RATIO_TARGET = 5  # pipecat's CPU per call-second over the bridge's, on the same load
DEFAULT_STEPS = (25, 50, 75, 100, 150, 200, 300)
from probes import LoopLag, Tee, pct  # noqa: E402

GROUPS = 10  # phase groups of the shared tickers
EVENTS = {"media": "media", "mark": 'mark"', "clear": "clear"}


def core_times(cpu: int | None) -> tuple[float, float, float]:
    """(busy, softirq+irq, steal) jiffies of one CPU from /proc/stat (zeros when unavailable)."""
    if cpu is None:
        return (0.0, 0.0, 0.0)
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith(f"cpu{cpu} "):
                    v = [float(x) for x in line.split()[1:]]
                    return (v[0] + v[1] + v[2] + v[5] + v[6], v[5] + v[6], v[7])
    except OSError:
        pass
    return (0.0, 0.0, 0.0)


def tls_args(args: argparse.Namespace) -> list[str]:
    return ["--tls-cert", args.tls_cert, "--tls-key", args.tls_key] if args.tls_cert else []


def make_tls(args: argparse.Namespace) -> None:
    """A self-signed certificate for 127.0.0.1 (openssl), trusted by this process and its
    children through SSL_CERT_FILE: the emulator then serves wss://, as Gemini does."""
    import subprocess
    d = tempfile.mkdtemp(prefix="load-tls-")
    args.tls_cert, args.tls_key = f"{d}/cert.pem", f"{d}/key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", args.tls_key, "-out", args.tls_cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    os.environ["SSL_CERT_FILE"] = args.tls_cert


def rss_mb() -> float:
    """This process's resident set size, MiB (/proc/self/statm)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def pin(cpu: int) -> str:
    """Pin this process to one CPU when the machine has at least two; returns what was done."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (not Linux)"
    cpus = list(range(os.cpu_count() or 1))  # not our own affinity: children inherit the parent's
    if len(cpus) < 2:
        return "not pinned (one CPU)"
    os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})
    return f"CPU {cpus[cpu % len(cpus)]}"


# ------------------------------------------------------------------------------ lean emulator


async def start_callers(me: list[str], twiml_url: str, token: str, n: int, spread: float, start_at: float,
                        args: Any) -> asyncio.subprocess.Process:
    """The callers process for one step: ``n`` calls to ``twiml_url``, starting at ``start_at``."""
    return await asyncio.create_subprocess_exec(
        *me, "--role", "callers", "--twiml-url", twiml_url, "--auth-token", token,
        "--calls", str(n), "--spread", str(spread), "--warmup", str(args.warmup), "--window", str(args.window),
        "--start-at", repr(start_at), "--seed", str(args.seed), stdout=asyncio.subprocess.PIPE)


async def emulator_role(args: argparse.Namespace) -> None:
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed
    from websockets.protocol import State

    from telephony_bridge.testing.gemini import load_clips

    clips = [c for c in load_clips().values() if c.rate == 24000 and 2.0 <= c.seconds <= 6.5]
    chunk_bytes = 24000 * 2 * 40 // 1000

    def reply_messages(pcm: bytes) -> list[str]:
        n = len(pcm) // chunk_bytes * chunk_bytes
        return ['{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=24000",'
                '"data":"' + base64.b64encode(pcm[i:i + chunk_bytes]).decode() + '"}}]}}}'
                for i in range(0, n, chunk_bytes)]

    replies = [(reply_messages(c.pcm), json.dumps({"serverContent": {"outputTranscription": {"text": c.text}}}))
               for c in clips]
    end_msgs = ('{"serverContent":{"generationComplete":true}}', '{"serverContent":{"turnComplete":true}}')
    loop = asyncio.get_running_loop()
    rng = random.Random(args.seed)
    # Sessions replying now, by phase group: [ws, chunks, next index, started at].
    speaking: list[list[list[Any]]] = [[] for _ in range(GROUPS)]
    counts = {"sessions": 0, "received": 0, "sent": 0, "errors": 0}
    ahead_chunks = 10  # 400 ms ahead of real time, as the service bursts the start of a reply

    async def session(ws: Any) -> None:
        counts["sessions"] += 1
        group = counts["sessions"] % GROUPS
        try:
            await ws.recv()  # setup
            await ws.send('{"setupComplete":{}}')
            reader = asyncio.ensure_future(drain(ws))
            turn = rng.randrange(len(replies))
            first = True
            while not reader.done():
                # The caller's turn (the first one: a random phase, so sessions are not in step).
                await asyncio.sleep(rng.uniform(0.5, 4.5) if first else rng.uniform(3.0, 5.0))
                first = False
                if reader.done():
                    break
                chunks, text = replies[turn % len(replies)]
                turn += 1
                done = loop.create_future()
                speaking[group].append([ws, chunks, 0, loop.time(), done])
                await ws.send(text)
                # The reply ends when the ticker has sent it, or the connection closes first (the
                # ticker may never reach a closed connection's reply again: see its skip below).
                await asyncio.wait((done, reader), return_when=asyncio.FIRST_COMPLETED)
                if reader.done():
                    break
                for m in end_msgs:
                    await ws.send(m)
                await ws.send('{"sessionResumptionUpdate":{"newHandle":"h-%s","resumable":true}}'
                              % secrets.token_hex(8))
        except ConnectionClosed:
            pass
        except Exception:
            counts["errors"] += 1
            raise

    gaps: list[float] = []  # ms between consecutive caller-audio messages of a session (steady state)

    async def drain(ws: Any) -> None:
        n = 0
        last = 0.0
        try:
            async for m in ws:
                counts["received"] += 1
                head = m[:64].lower()  # any client's JSON: ours, or google-genai's layout
                if "realtime" in head and ("audio" in head or "media" in head):
                    t = loop.time()
                    n += 1
                    if n > 25:  # past the setup burst (pending audio sent at once)
                        gaps.append(1000 * (t - last))
                    last = t
        except ConnectionClosed:
            pass

    async def ticker() -> None:
        slot = 0.040 / GROUPS
        t0 = loop.time()
        k = 0
        while True:
            k += 1
            delay = t0 + k * slot - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            group = speaking[k % GROUPS]
            if not group:
                continue
            now = loop.time()
            keep = []
            items = group[:]
            group.clear()  # replies that start while we send are appended meanwhile
            for item in items:
                ws, chunks, i, started, done = item
                due = min(len(chunks), int((now - started) / 0.040) + 1 + ahead_chunks)
                if ws.state is not State.OPEN:
                    due = i = len(chunks)  # closed: the reply is over
                elif ws.transport.get_write_buffer_size() > 65536:
                    # This bridge connection is not reading (its process is saturated): it catches
                    # up on a later tick, and meanwhile no other session waits on its backpressure.
                    due = i
                try:
                    while i < due:
                        await ws.send(chunks[i])
                        counts["sent"] += 1
                        i += 1
                except Exception:
                    i = len(chunks)
                item[2] = i
                if i >= len(chunks):
                    if not done.done():
                        done.set_result(None)
                else:
                    keep.append(item)
            group.extend(keep)

    tls = None
    if args.tls_cert:
        import ssl
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    async with serve(session, "127.0.0.1", 0, compression=None, max_size=None, ping_interval=None,
                     ssl=tls) as server:
        port = server.sockets[0].getsockname()[1]
        tick = asyncio.ensure_future(ticker())
        print("READY", f"{'wss' if tls else 'ws'}://127.0.0.1:{port}/ws", flush=True)
        t0, c0 = time.monotonic(), time.process_time()
        lag = LoopLag()
        while True:  # the parent asks for each step's input gaps, then for the report
            cmd = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if cmd != "gaps":
                break
            print(json.dumps({"p99": pct(gaps, 99), "max": max(gaps, default=0.0), "n": len(gaps)}), flush=True)
            gaps.clear()
        tick.cancel()
        # Sessions whose connection the bridge has not closed (a run stopped mid-step) must not
        # hold the exit: close them, wait a little, go.
        server.close()
        try:
            await asyncio.wait_for(server.wait_closed(), 5.0)
        except TimeoutError:
            pass
        out = {"cpu_s": time.process_time() - c0, "wall_s": time.monotonic() - t0, "lag": lag.stop(), **counts}
    print(json.dumps(out), flush=True)


# ------------------------------------------------------------------------------ lean callers


class _Call:
    __slots__ = ("i", "ws", "sid", "k", "pos", "buf", "enqueued", "played", "marks", "dry_since",
                 "underrun_ticks", "underruns", "sent", "media_in", "marks_back", "clears", "ended",
                 "error", "window_played", "window_underrun", "samples", "client", "backlog")

    def __init__(self, i: int) -> None:
        self.i = i
        self.ws: Any = None
        self.sid = "MZ" + secrets.token_hex(16)
        self.k = 0
        self.pos = 0
        self.buf = 0  # frames waiting to play
        self.enqueued = 0
        self.played = 0
        self.marks: list[tuple[int, str]] = []
        self.dry_since: int | None = None
        self.underrun_ticks = 0
        self.underruns = 0
        self.sent = 0
        self.media_in = 0
        self.marks_back = 0
        self.clears = 0
        self.ended: str | None = None
        self.error: str | None = None
        self.window_played = 0
        self.window_underrun = 0
        self.samples = 0  # audio received short of a whole 20 ms frame
        self.client: Any = None  # the stream's socket, read and written without a task hop per frame
        self.backlog: list[str] = []  # messages waiting for the socket's buffer to drain, in order


async def callers_role(args: argparse.Namespace) -> None:
    import httpx
    from twilio.request_validator import RequestValidator
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import ConnectionClosed

    from telephony_bridge.gemini.client import GeminiLiveClient, LiveConnection

    loop = asyncio.get_running_loop()
    pause = b"\xff" * 8000
    audio = b"".join(t + pause for t in founder_turns())
    audio = audio[: len(audio) // 160 * 160]
    payloads = [base64.b64encode(audio[i:i + 160]).decode() for i in range(0, len(audio), 160)]
    nframes = len(payloads)
    validator = RequestValidator(args.auth_token)
    rng = random.Random(args.seed + args.calls)
    calls = [_Call(i) for i in range(args.calls)]
    groups: list[list[_Call]] = [[] for _ in range(GROUPS)]
    window = (args.start_at + args.spread + args.warmup, args.start_at + args.spread + args.warmup + args.window)
    stop_at = window[1] + 0.5
    media_head = '{"event":"media","sequenceNumber":"%d","media":{"track":"inbound","chunk":"%d","timestamp":"%d",' \
                 '"payload":"%s"},"streamSid":"%s"}'
    mark_head = '{"event":"mark","sequenceNumber":"%d","streamSid":"%s","mark":{"name":%s}}'
    name_re = re.compile(r'"name":\s*("(?:[^"\\]|\\.)*")')

    # The callers are the load, not what is measured: each stream is read and written the lean
    # way the bridge's Gemini socket is (gemini/client.py's direct mode: frames handed over inside
    # data_received, sends written at once), so this process keeps up at the top steps.
    def on_message(c: _Call, raw: str) -> None:
        if raw.startswith('{"event":"'):
            e = raw[10:15]
        else:  # another server's JSON layout (pipecat's has spaces)
            e = EVENTS.get(json.loads(raw).get("event", ""), "")
        if e == "media":
            # Count 20 ms of audio, not messages: pipecat's transport sends 40 ms chunks
            # (audio_out_10ms_chunks=4), the bridge 20 ms frames.
            i = raw.find('"payload"')
            if i < 0:
                return
            s0 = raw.index('"', raw.index(":", i + 9)) + 1
            s1 = raw.index('"', s0)
            c.samples += (s1 - s0) * 3 // 4 - (raw[s1 - 1] == "=") - (raw[s1 - 2] == "=")
            frames, c.samples = divmod(c.samples, 160)
            c.media_in += frames
            c.buf += frames
            c.enqueued += frames
        elif e == "mark\"":
            m = name_re.search(raw)
            c.marks.append((c.enqueued, m.group(1) if m else '""'))
            release(c)
        elif e == "clear":
            c.clears += 1
            c.enqueued -= c.buf
            c.buf = 0
            release(c, flushed=True)

    async def receive(c: _Call) -> None:
        def on_frame(data: bytes) -> bool:
            on_message(c, data.decode())
            return True

        client = c.client
        client.go_direct(on_frame)
        while (raw := await client.recv()) is not None:  # frames before direct mode; None: closed
            on_message(c, raw if isinstance(raw, str) else raw.decode())
            client.go_direct(on_frame)
        if c.ended is None:
            c.ended = "bridge-closed" if loop.time() < stop_at else "ok"

    def send(c: _Call, text: str) -> None:
        if c.backlog or not c.client.send_nowait(text):
            c.backlog.append(text)
            if len(c.backlog) == 1:
                asyncio.ensure_future(flush(c))

    async def flush(c: _Call) -> None:
        while c.backlog:
            try:
                await c.ws.send(c.backlog[0])
            except ConnectionClosed:
                c.backlog.clear()
                return
            del c.backlog[0]

    def release(c: _Call, flushed: bool = False) -> None:
        while c.marks and (flushed or c.marks[0][0] <= c.played):
            _, name = c.marks.pop(0)
            c.k += 1
            send(c, mark_head % (c.k, c.sid, name))
            c.marks_back += 1

    async def one(c: _Call) -> None:
        await asyncio.sleep(max(0.0, args.start_at + c.i * args.spread / max(1, args.calls) - loop.time()))
        call_sid = "CA" + secrets.token_hex(16)
        params = {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "From": "+15551230000",
                  "To": "+15557654321", "CallStatus": "in-progress", "Direction": "inbound"}
        try:
            async with httpx.AsyncClient(timeout=30.0, trust_env=False) as http:
                r = await http.post(args.twiml_url, data=params, headers={
                    "X-Twilio-Signature": validator.compute_signature(args.twiml_url, params)})
            r.raise_for_status()
            m = re.search(r'<Stream url="([^"]+)"', r.text)
            if not m:
                raise RuntimeError(f"no <Stream> in TwiML: {r.text[:200]}")
            url = m.group(1).replace("&amp;", "&")
            stream_params = dict(re.findall(r'<Parameter name="([^"]+)" value="([^"]*)"', r.text))
            c.ws = await ws_connect(url, additional_headers={"X-Twilio-Signature": validator.compute_signature(url, {})},
                                    compression=None, proxy=None, open_timeout=30, ping_interval=None, max_size=None,
                                    create_connection=LiveConnection)
            c.client = GeminiLiveClient(c.ws, b"")
            await c.ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            await c.ws.send(json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": c.sid, "start": {
                "accountSid": params["AccountSid"], "streamSid": c.sid, "callSid": call_sid, "tracks": ["inbound"],
                "customParameters": stream_params,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
        except Exception as exc:
            c.error = f"setup: {exc!r}"[:300]
            c.ended = "setup-failed"
            return
        c.k = 1
        c.pos = rng.randrange(nframes)  # each caller starts at its own point in the recording
        groups[c.i % GROUPS].append(c)
        await receive(c)

    async def ticker() -> None:
        slot = 0.020 / GROUPS
        t0 = loop.time()
        k = 0
        while loop.time() < stop_at:
            k += 1
            delay = t0 + k * slot - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tick = k // GROUPS
            now = loop.time()
            in_window = window[0] <= now < window[1]
            for c in groups[k % GROUPS]:
                if c.ended is not None:
                    continue
                c.k += 1
                c.sent += 1
                send(c, media_head % (c.k, c.sent, 20 * c.sent, payloads[c.pos], c.sid))
                c.pos = (c.pos + 1) % nframes
                # Playback: one frame per tick.
                if c.buf:
                    c.buf -= 1
                    c.played += 1
                    if in_window:
                        c.window_played += 1
                    if c.dry_since is not None:
                        gap = tick - c.dry_since
                        if gap <= 25:  # resumed within 500 ms: a gap inside a reply
                            c.underruns += 1
                            c.underrun_ticks += gap
                            if in_window:
                                c.window_underrun += gap
                        c.dry_since = None
                    if c.marks and c.marks[0][0] <= c.played:
                        release(c)
                elif c.dry_since is None and c.played:
                    c.dry_since = tick

    t0, c0 = time.monotonic(), time.process_time()
    lag = LoopLag()
    tick = asyncio.ensure_future(ticker())
    ones = [asyncio.ensure_future(one(c)) for c in calls]
    await asyncio.gather(tick, return_exceptions=True)
    # The ticker stopped at stop_at; hang up the calls still up (a peer that does not close the
    # stream on `stop` is closed from here).
    lags = lag.stop()
    for c in calls:
        if c.ws is not None and c.ended is None:
            try:
                await c.ws.send(json.dumps({"event": "stop", "sequenceNumber": str(c.k + 1), "streamSid": c.sid,
                                            "stop": {"accountSid": "AC" + "0" * 32, "callSid": ""}}))
            except Exception:
                pass
    await asyncio.wait(ones, timeout=5)  # the bridge closes each stream after `stop`
    await asyncio.gather(*(c.ws.close() for c in calls if c.ws is not None), return_exceptions=True)
    await asyncio.wait(ones, timeout=10)
    for task in ones:
        task.cancel()
    print(json.dumps({
        "cpu_s": time.process_time() - c0, "wall_s": time.monotonic() - t0, "lag": lags,
        "calls": [{"ended": c.ended, "error": c.error, "sent": c.sent, "media_in": c.media_in, "played": c.played,
                   "underruns": c.underruns, "underrun_ticks": c.underrun_ticks, "clears": c.clears,
                   "marks_back": c.marks_back, "window_played": c.window_played,
                   "window_underrun": c.window_underrun} for c in calls],
    }), flush=True)


# ------------------------------------------------------------------------------ parent (bridge)


async def bench(args: argparse.Namespace) -> bool:
    me = [sys.executable, str(Path(__file__).resolve())]
    where = pin(0)
    bridge_cpu = int(where.split()[1]) if where.startswith("CPU ") else None
    hz = os.sysconf("SC_CLK_TCK")
    emu = await asyncio.create_subprocess_exec(*me, "--role", "emulator", "--seed", str(args.seed), *tls_args(args),
                                               stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert emu.stdout is not None and emu.stdin is not None
    line = (await emu.stdout.readline()).decode().split()
    if not line or line[0] != "READY":
        raise RuntimeError("the emulator did not start")
    token = secrets.token_hex(16)
    tmp = tempfile.TemporaryDirectory()
    log_path = Path(tmp.name) / "bridge.log"
    log_file = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    setup_logging("WARNING", stream=log_file)
    steps = [n for n in args.steps if n <= args.max_calls]
    bridge = LocalBridge(Settings(
        gemini_api_key=DEMO_KEY, public_url="http://127.0.0.1", gemini_live_url=line[1],
        twilio_auth_token=token, playback_lead_ms=args.lead_ms, gemini_input_chunk_ms=args.input_chunk_ms, max_concurrent_calls=max(steps) + 10,
        sqlite_path=str(Path(tmp.name) / "calls.sqlite3"),
        report=False,  # no REST peer here: the report is not what this measures
    ))
    await bridge.start()
    if args.gc_threshold:
        gc.freeze()  # what start-up allocated is never collected again
        gc.set_threshold(args.gc_threshold, 20, 20)
    calls = bridge.app.state.calls
    loop = asyncio.get_running_loop()
    lag = LoopLag()
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    profiler = None
    profiled_call_s = 1.0
    if args.profile:
        import cProfile
        profiler = cProfile.Profile()

    async def emu_gaps() -> dict[str, float]:
        emu.stdin.write(b"gaps\n")
        await emu.stdin.drain()
        return json.loads((await emu.stdout.readline()).decode())

    rss_base = rss_mb()

    def counters() -> tuple[int, int, int]:
        cores = list(calls.active.values())
        return (sum(c.counters["twilio_frames_in"] for c in cores),
                sum(c.counters["twilio_frames_out"] for c in cores), len(cores))

    print(f"Load benchmark  (python benchmarks/load.py{' ' + ' '.join(args.argv) if args.argv else ''})")
    print(f"machine: {os.cpu_count()} CPUs; bridge {where}, emulator and callers on the other; "
          f"python {sys.version.split()[0]}; uvicorn ws={_ws()}")
    print(f"each step: starts over {args.spread:.0f} s, {args.warmup:.0f} s settle, {args.window:.0f} s measured; "
          f"playback lead {args.lead_ms} ms; echo gate on; agent audio ~half the time; "
          f"Gemini stand-in over {'TLS (wss)' if args.tls_cert else 'plain ws'}")
    print(f"levers: Gemini input chunk {args.input_chunk_ms} ms; event loop {args.loop}; "
          f"gc threshold {args.gc_threshold or 'default'}; "
          f"load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("gap p99/max: ms between a call's consecutive caller-audio messages at the emulator (nominal = the chunk); "
          "KB/call: bridge RSS growth over its idle size / calls; load1: the machine's 1-min load average")
    print()
    head = (f"{'calls':>5s} {'CPU ms/call-s':>13s} {'CPU %':>6s} {'sys':>4s} {'core %':>6s} {'irq':>4s} {'steal':>5s} {'lag p50':>8s} {'p99':>6s} {'max':>6s} "
            f"{'in fps':>7s} {'out fps':>7s} {'underrun %':>10s} {'callers p99':>11s} {'CPU':>5s} "
            f"{'gap p99':>7s} {'max':>6s} {'KB/call':>7s} {'load1':>5s}")
    print(head)
    for n in steps:
        spread = max(args.spread, n / 60)
        start_at = loop.time() + 1.0
        callers = await start_callers(me, bridge.twiml_url, token, n, spread, start_at, args)
        out_task = asyncio.create_task(callers.communicate())
        w0 = start_at + spread + args.warmup
        await asyncio.sleep(max(0.0, w0 - loop.time()))
        gc.collect()
        await emu_gaps()  # drops the gaps seen before the window
        rss0 = rss_mb()
        f0 = counters()
        lag_i = len(lag.lags)
        t0, c0, r0, k0 = loop.time(), time.process_time(), os.times(), core_times(bridge_cpu)
        if profiler is not None and n == steps[-1]:
            profiler.enable()
        await asyncio.sleep(max(0.0, w0 + args.window - loop.time()))
        if profiler is not None and n == steps[-1]:
            profiler.disable()
        wall, cpu, r1, k1 = loop.time() - t0, time.process_time() - c0, os.times(), core_times(bridge_cpu)
        core_busy = (k1[0] - k0[0]) / hz / wall
        core_irq = (k1[1] - k0[1]) / hz / wall
        core_steal = (k1[2] - k0[2]) / hz / wall
        sys_share = (r1.system - r0.system) / max(1e-9, (r1.user - r0.user) + (r1.system - r0.system))
        f1 = counters()
        gaps = await emu_gaps()
        rss1 = rss_mb()
        window_lag = [1000 * x for x in lag.lags[lag_i:]]
        out = json.loads((await out_task)[0].decode())
        deadline = time.monotonic() + 20
        while calls.active and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if calls.active:
            problems.append(f"{n} calls: {len(calls.active)} still active on the bridge 20 s after hang-up")
        up = f0[2] == n and f1[2] == n
        notes = "" if up else f"  only {f0[2]}/{f1[2]} calls up at the window's start/end (setup backlog)"
        bad = [c for c in out["calls"] if c["ended"] != "ok"]
        for c in bad[:5]:
            problems.append(f"{n} calls: a call ended {c['ended']}: {c['error']}")
        if len(bad) > 5:
            problems.append(f"{n} calls: {len(bad) - 5} more calls failed")
        played = sum(c["window_played"] for c in out["calls"])
        under = sum(c["window_underrun"] for c in out["calls"])
        call_s = max(1, f1[2]) * wall
        profiled_call_s = call_s
        row = {
            "calls": n, "cpu_ms_per_call_s": 1000 * cpu / call_s, "cpu_pct": 100 * cpu / wall,
            "lag_p50": pct(window_lag, 50), "lag_p99": pct(window_lag, 99), "lag_max": max(window_lag, default=0.0),
            "sys_pct": 100 * sys_share, "core_pct": 100 * core_busy, "irq_pct": 100 * core_irq,
            "steal_pct": 100 * core_steal, "in_fps": (f1[0] - f0[0]) / call_s, "out_fps": (f1[1] - f0[1]) / call_s,
            "underrun_pct": 100 * under / max(1, played + under),
            "callers_p99": pct([1000 * x for x in out["lag"]], 99),
            "callers_cpu_pct": 100 * out["cpu_s"] / out["wall_s"], "failed": len(bad), "up": up,
            "gap_p99": gaps["p99"], "gap_max": gaps["max"], "rss_mb": rss1,
            "kb_per_call": 1024 * (max(rss0, rss1) - rss_base) / n, "load1": os.getloadavg()[0],
        }
        rows.append(row)
        print(f"{n:5d} {row['cpu_ms_per_call_s']:13.2f} {row['cpu_pct']:5.0f}% {row['sys_pct']:3.0f}% {row['core_pct']:5.0f}% {row['irq_pct']:3.0f}% {row['steal_pct']:4.0f}% {row['lag_p50']:8.1f} "
              f"{row['lag_p99']:6.1f} {row['lag_max']:6.0f} {row['in_fps']:7.1f} {row['out_fps']:7.1f} "
              f"{row['underrun_pct']:10.2f} {row['callers_p99']:9.1f}ms {row['callers_cpu_pct']:4.0f}% "
              f"{row['gap_p99']:7.1f} {row['gap_max']:6.0f} {row['kb_per_call']:7.0f} {row['load1']:5.2f}{notes}",
              flush=True)
    lag.stop()
    await bridge.stop()
    log_file.close()
    emu.stdin.write(b"report\n")
    await emu.stdin.drain()
    emu_out = json.loads((await emu.stdout.read()).decode())
    await emu.wait()
    warnings = [json.loads(x) for x in log_path.read_text().splitlines() if x.startswith("{")]
    tmp.cleanup()
    print(f"{'':5s} (last two columns: the callers process's loop lag and CPU; the emulator averaged "
          f"{100 * emu_out['cpu_s'] / emu_out['wall_s']:.0f}% of a core over the whole run, loop lag p99 "
          f"{pct([1000 * x for x in emu_out['lag']], 99):.1f} ms; {emu_out['sessions']} sessions, "
          f"{emu_out['sent']} audio chunks sent, {emu_out['received']} messages received)")
    print()
    if profiler is not None:
        profiler.dump_stats(args.profile)
        import pstats
        stats = pstats.Stats(profiler)
        ncalls = sum(v[1] for v in stats.stats.values())  # type: ignore[attr-defined]
        # Calls, unlike seconds, hardly move with the machine: an A/B of an adapter change
        # (which core_cost.py --instructions does not see) compares these.
        print(f"cProfile of the bridge during the last window: {args.profile}; "
              f"{ncalls / profiled_call_s:.0f} Python function calls per call-second")
    if warnings:
        kinds: dict[str, int] = {}
        for w in warnings:
            key = w.get("event", "?") + "".join(f" {k}={w[k]}" for k in ("task", "error", "reason") if k in w)
            kinds[key[:160]] = kinds.get(key[:160], 0) + 1
        print(f"bridge warnings ({len(warnings)}):")
        for key, k in sorted(kinds.items(), key=lambda kv: -kv[1])[:10]:
            print(f"  {k:4d} x {key}")
        print()
    fits = [r for r in rows if r["up"] and not r["failed"] and max(r["cpu_pct"], r["core_pct"]) <= 100 * CPU_LIMIT
            and r["lag_p99"] <= LAG_P99_LIMIT_MS]
    cap = max((r["calls"] for r in fits), default=0)
    print(f"capacity on one core: {cap} calls (largest step with bridge CPU <= {100 * CPU_LIMIT:.0f}% of a core "
          f"and loop-lag p99 <= {LAG_P99_LIMIT_MS:.0f} ms)")
    if fits:
        r = max(fits, key=lambda r: r["calls"])
        print(f"  at {r['calls']} calls the bridge spends {r['cpu_ms_per_call_s']:.2f} CPU ms per call-second: "
              f"~{int(1000 * CPU_LIMIT / r['cpu_ms_per_call_s'])} calls would fill {100 * CPU_LIMIT:.0f}% of a core "
              f"at that cost; {TARGET_CALLS} calls need <= {1000 * CPU_LIMIT / TARGET_CALLS:.2f}")
    if max(steps) >= TARGET_CALLS:
        print(f"target {TARGET_CALLS} calls on one core: {'MET' if cap >= TARGET_CALLS else 'MISSED'}")
    else:
        print(f"target {TARGET_CALLS} calls on one core: not measured (ramp stopped at {max(steps)})")
    if problems:
        print(f"{len(problems)} problem(s):")
        for p in problems[:20]:
            print(f"  {p}")
    ours = {r["calls"]: r for r in rows}

    def same_steps(what: str, peer_rows: list[dict[str, Any]], ratio: Callable[[float, float], float],
                   line: Callable[[float, float, float], str]) -> None:
        """A line per step both ran: ``line(peer's CPU ms per call-second, the bridge's, ratio)``;
        the ratio is kept for the rounds' summary under ``what``."""
        for r in peer_rows:
            mine = ours.get(r["calls"])
            if mine is not None and not r["failed"]:
                peer, me = r["cpu_ms_per_call_s"], mine["cpu_ms_per_call_s"]
                x = ratio(peer, me)
                print(f"  at {r['calls']} calls: " + line(peer, me, x))
                args.compared.setdefault((what, r["calls"]), []).append(x)

    if args.floor:
        print()
        args.last_floor = await bench_workers(args, floor_peer(args))
        same_steps("the bridge costs Nx the floor", args.last_floor,
                   lambda peer, me: me / peer, lambda peer, me, x: (
            f"the floor {peer:.2f} CPU ms per call-second, the bridge {me:.2f}: the call logic costs {x:.2f}x "
            f"the floor; at the floor's cost {int(1000 * CPU_LIMIT / peer)} calls would fill "
            f"{100 * CPU_LIMIT:.0f}% of a core"))
    if args.floor_picows:
        # The lever for the Gemini socket, measured where nothing else moves: the floor's CPU with
        # websockets (above) over its CPU with picows.
        floor_rows = {r["calls"]: r for r in args.last_floor}
        print()
        for peer, what in ((floor_picows_peer(args), "its Gemini socket on picows"),
                           (floor_all_picows_peer(args), "both sockets on picows")):
            for r in await bench_workers(args, peer):
                base = floor_rows.get(r["calls"])
                if base is not None and not r["failed"] and not base["failed"]:
                    x = base["cpu_ms_per_call_s"] / r["cpu_ms_per_call_s"]
                    print(f"  at {r['calls']} calls: the floor {base['cpu_ms_per_call_s']:.2f} CPU ms per call-second, "
                          f"{r['cpu_ms_per_call_s']:.2f} with {what}: {x:.2f}x")
                    args.compared.setdefault((f"the floor costs Nx the floor with {what}", r["calls"]), []).append(x)
    if args.pipecat:
        # The bridge as its users run it, measured as pipecat is: `telephony-bridge serve` in its own
        # process on CPU 0, its CPU read from /proc, no probe in its loop (the rows above include
        # this process's 10 ms loop-lag probe and the harness's bookkeeping).
        print()
        served = {r["calls"]: r for r in await bench_workers(argparse.Namespace(**{
            **vars(args), "workers": 1, "steps": args.pipecat_steps or args.steps}))}
        print()
        pipecat_rows = await bench_workers(args, pipecat_peer(args))
        same_steps(f"pipecat costs Nx the bridge (target >= {PIPECAT_RATIO_TARGET}x)",
                   pipecat_rows, lambda peer, me: peer / me, lambda peer, me, x: (
            f"pipecat {peer:.2f} CPU ms per call-second, the bridge {me:.2f}: pipecat costs {x:.1f}x "
            f"(target >= {PIPECAT_RATIO_TARGET}x)"))
        for r in pipecat_rows:
            mine = served.get(r["calls"])
            if mine is not None and not r["failed"] and not mine["failed"]:
                x = r["cpu_ms_per_call_s"] / mine["cpu_ms_per_call_s"]
                print(f"  at {r['calls']} calls: pipecat {r['cpu_ms_per_call_s']:.2f}, `telephony-bridge serve` "
                      f"{mine['cpu_ms_per_call_s']:.2f} CPU ms per call-second, both measured alike: pipecat "
                      f"costs {x:.1f}x")
                args.compared.setdefault(("pipecat costs Nx `telephony-bridge serve`, both in their own process",
                                          r["calls"]), []).append(x)
    return not problems


def print_rounds(compared: dict[tuple[str, int], list[float]]) -> None:
    """Each peer's ratio to the bridge, round by round, and its median (over the rounds)."""
    print()
    print("over the rounds (each ratio from one round's bridge and peer runs):")
    for (what, calls), ratios in compared.items():
        print(f"  at {calls} calls, {what}: " + ", ".join(f"{r:.2f}" for r in ratios)
              + f"; median {statistics.median(ratios):.2f}")


def proc_cpu_s(pid: int) -> float:
    """utime + stime of one process, seconds (/proc/PID/stat)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def proc_children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            out += [int(x) for x in open(f"/proc/{pid}/task/{task}/children").read().split()]
    except OSError:
        pass
    return out


class Peer(NamedTuple):
    """A relay run on the bridge's load in its place: pipecat, or the floor."""

    name: str
    python: str
    script: str  # in benchmarks/, started with --port and --gemini-url
    steps: list[int] | None  # None: the bridge's
    ready_path: str  # answers once the relay listens
    header: str  # what the table is of
    extra: tuple[str, ...] = ()  # more arguments for the script


def pipecat_peer(args: argparse.Namespace) -> Peer:
    return Peer("pipecat", args.pipecat, "pipecat_peer.py", args.pipecat_steps, "docs",
                f"pipecat {_pipecat_version(args.pipecat)} (benchmarks/pipecat_peer.py: TwilioFrameSerializer + "
                "GeminiLiveLLMService at the emulator)")


def floor_peer(args: argparse.Namespace) -> Peer:
    return Peer("the floor", sys.executable, "floor_peer.py", args.floor_steps, "readyz",
                "the floor (benchmarks/floor_peer.py: the thinnest relay of the same messages on the bridge's server "
                "and client stack, no call logic)")


def floor_picows_peer(args: argparse.Namespace) -> Peer:
    return Peer("the floor on picows", sys.executable, "floor_peer.py", args.floor_steps, "readyz",
                "the floor with its Gemini socket on picows (Cython websockets) instead of websockets",
                ("--gemini-client", "picows"))


def floor_all_picows_peer(args: argparse.Namespace) -> Peer:
    return Peer("the floor all on picows", sys.executable, "floor_peer.py", args.floor_steps, "readyz",
                "the floor with both sockets on picows: the media stream on its own port (TwiML points there), "
                "the Gemini socket", ("--twilio-server", "picows"))


async def bench_workers(args: argparse.Namespace, peer: Peer | None = None) -> list[dict[str, Any]]:
    """``telephony-bridge serve --workers N`` as its own process tree (taskset to CPUs 0..N-1),
    or ``peer`` (pipecat, the floor) pinned to CPU 0, with the same emulator and callers: per
    step, each process's CPU and the calls' outcome."""
    import subprocess
    import urllib.request

    me = [sys.executable, str(Path(__file__).resolve())]
    ncpu = os.cpu_count() or 1
    nproc = 1 if peer is not None else args.workers
    cpus = ",".join(str(i) for i in range(min(nproc, ncpu)))
    emu = await asyncio.create_subprocess_exec(*me, "--role", "emulator", "--seed", str(args.seed), *tls_args(args),
                                               stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert emu.stdout is not None and emu.stdin is not None
    line = (await emu.stdout.readline()).decode().split()
    token = secrets.token_hex(16)
    tmp = tempfile.TemporaryDirectory()
    port = 20000 + secrets.randbelow(20000)
    steps = [n for n in args.steps if n <= args.max_calls]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "TWILIO_", "REDIS_"))}
    env.update(GEMINI_API_KEY=DEMO_KEY, PUBLIC_URL=f"http://127.0.0.1:{port}", GEMINI_LIVE_URL=line[1],
               TWILIO_AUTH_TOKEN=token, STREAM_TOKEN_SECRET=secrets.token_urlsafe(32), HOST="127.0.0.1",
               PORT=str(port), LOG_LEVEL="WARNING", CALLS_DB=str(Path(tmp.name) / "calls.sqlite3"),
               MAX_CONCURRENT_CALLS=str(max(steps) + 10), PLAYBACK_LEAD_MS=str(args.lead_ms),
               GEMINI_INPUT_CHUNK_MS=str(args.input_chunk_ms), PYTHONPATH=str(ROOT),
               # As the in-process bridge: no recording, no report, no TTS phrases (no REST peer).
               RECORDINGS="off", REPORT="off", TTS_PHRASES="off")
    log = open(Path(tmp.name) / "serve.log", "wb")  # noqa: SIM115
    if peer is not None:
        cmd = [peer.python, str(ROOT / "benchmarks" / peer.script), "--port", str(port), "--gemini-url", line[1],
               *peer.extra]
    else:
        cmd = [sys.executable, "-m", "telephony_bridge", "serve", "--workers", str(args.workers)]
    serve = subprocess.Popen(["taskset", "-c", cpus, *cmd], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    workers: list[int] = []
    while time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        workers = [c for c in proc_children(serve.pid)
                   if "resource_tracker" not in open(f"/proc/{c}/cmdline").read()] if nproc > 1 else [serve.pid]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/{peer.ready_path if peer else 'readyz'}",
                                        timeout=1):
                pass
        except OSError:
            continue
        if len(workers) >= nproc:
            break
    loop = asyncio.get_running_loop()
    if peer is not None:
        print(f"{peer.header} on CPU {cpus} (taskset), the same emulator and callers")
    else:
        print(f"Load benchmark, workers  (python benchmarks/load.py {' '.join(args.argv)})")
        print(f"machine: {ncpu} CPUs; `telephony-bridge serve --workers {args.workers}` on CPUs {cpus} (taskset), "
              f"emulator and callers on CPU 1 (shared with a worker when N=2); python {sys.version.split()[0]}")
    print(f"Gemini input chunk {args.input_chunk_ms} ms; load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print(f"{'calls':>5s} {'CPU ms/call-s':>13s} {'CPU % per worker':>22s} {'failed':>6s} {'out fps':>7s} {'underrun %':>10s} "
          f"{'callers p99':>11s} {'gap p99':>7s} {'load1':>5s}")
    rows: list[dict[str, Any]] = []
    for n in (peer.steps or steps) if peer is not None else steps:
        spread = max(args.spread, n / 60)
        start_at = loop.time() + 1.0
        callers = await start_callers(me, f"http://127.0.0.1:{port}/twiml", token, n, spread, start_at, args)
        out_task = asyncio.create_task(callers.communicate())
        w0 = start_at + spread + args.warmup
        await asyncio.sleep(max(0.0, w0 - loop.time()))
        emu.stdin.write(b"gaps\n")
        await emu.stdin.drain()
        await emu.stdout.readline()
        c0 = {w: proc_cpu_s(w) for w in workers}
        t0 = loop.time()
        await asyncio.sleep(max(0.0, w0 + args.window - loop.time()))
        wall = loop.time() - t0
        per = {w: (proc_cpu_s(w) - c0[w]) / wall for w in workers}
        emu.stdin.write(b"gaps\n")
        await emu.stdin.drain()
        gaps = json.loads((await emu.stdout.readline()).decode())
        out = json.loads((await out_task)[0].decode())
        bad = [c for c in out["calls"] if c["ended"] != "ok"]
        played = sum(c["window_played"] for c in out["calls"])
        under = sum(c["window_underrun"] for c in out["calls"])
        for c in bad[:3]:
            print(f"  a call ended {c['ended']}: {c['error']}")
        total = sum(per.values())
        rows.append({"calls": n, "cpu_ms_per_call_s": 1000 * total / n, "failed": len(bad), "per": per})
        print(f"{n:5d} {1000 * total / n:13.2f} {' '.join(f'{100 * v:5.0f}%' for v in per.values()):>22s} "
              f"{len(bad):6d} {played / (n * args.window):7.1f} {100 * under / max(1, played + under):10.2f} "
              f"{pct([1000 * x for x in out['lag']], 99):9.1f}ms {gaps['p99']:7.1f} {os.getloadavg()[0]:5.2f}",
              flush=True)
        await asyncio.sleep(3)  # hang-ups
    serve.send_signal(2)
    try:
        serve.wait(30)
    except subprocess.TimeoutExpired:
        serve.kill()
    log.close()
    emu.stdin.write(b"report\n")
    await emu.stdin.drain()
    await emu.stdout.read()
    await emu.wait()
    if peer is not None and (not rows or any(r["failed"] for r in rows)):
        print(f"{peer.name} did not run: " + (Path(tmp.name) / "serve.log").read_text()[-1500:])
    tmp.cleanup()
    return rows


def _pipecat_version(python: str) -> str:
    import subprocess
    try:
        return subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('pipecat-ai'))"],
                              capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        return "?"


def _ws() -> str:
    from telephony_bridge.server import uvicorn_options
    from telephony_bridge.settings import Settings as S
    return str(uvicorn_options(S(gemini_api_key="x", public_url="http://x")).get("ws"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=lambda s: [int(x) for x in s.split(",")], default=list(DEFAULT_STEPS),
                    help="calls at each step, comma-separated (default 25,50,75,100,150,200,300)")
    ap.add_argument("--max-calls", type=int, default=max(DEFAULT_STEPS), help="stop the ramp after this many calls")
    ap.add_argument("--window", type=float, default=10.0, help="seconds measured per step")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds after the last call starts, before measuring")
    ap.add_argument("--spread", type=float, default=3.0, help="seconds over which a step's calls start (at least "
                    "calls/60)")
    ap.add_argument("--lead-ms", type=int, default=160)
    ap.add_argument("--input-chunk-ms", type=int, default=None, help="caller audio per realtimeInput message "
                    "(default: the bridge's GEMINI_INPUT_CHUNK_MS default)")
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default=None,
                    help="the bridge's event loop (default: uvloop when installed, as `serve` runs it)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", help="cProfile the bridge during the last step's window into this file")
    ap.add_argument("--no-save", action="store_true", help="do not write benchmarks/load-latest.txt")
    ap.add_argument("--gc-threshold", type=int, default=20000, help="lever: gc.freeze() after start-up and this "
                    "generation-0 threshold, as `serve` does (0: Python's default, 700)")
    ap.add_argument("--pipecat", metavar="PYTHON", help="also run pipecat (benchmarks/pipecat_peer.py, with this "
                    "interpreter: a venv with pipecat-ai[google,websocket], fastapi, uvicorn) on the same load")
    ap.add_argument("--floor", action="store_true", help="also run the floor (benchmarks/floor_peer.py: the "
                    "thinnest relay of the same messages, no call logic) on the same load")
    ap.add_argument("--floor-picows", action="store_true", help="with --floor: the floor again with its Gemini "
                    "socket on picows, and with both sockets on picows (the media stream served on its own port): "
                    "a lever for the bridge's sockets, measured where nothing else moves")
    ap.add_argument("--floor-steps", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="the floor's steps (default: the bridge's)")
    ap.add_argument("--pipecat-steps", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="pipecat's steps (default: the bridge's)")
    ap.add_argument("--workers", type=int, default=0, help="run `telephony-bridge serve --workers N` as its own "
                    "process tree instead of the in-process bridge (no save)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the bridge and its peers (--floor, --pipecat) this many times in turn and give "
                         "each ratio's median over the rounds: this VM's speed drifts from one minute to the next, "
                         "and a peer runs minutes after the bridge")
    ap.add_argument("--tls", action=argparse.BooleanOptionalAction, default=True,
                    help="the emulator serves wss:// with a self-signed certificate, as Gemini serves TLS (default on)")
    ap.add_argument("--tls-cert", help=argparse.SUPPRESS)
    ap.add_argument("--tls-key", help=argparse.SUPPRESS)
    ap.add_argument("--role", choices=("bench", "emulator", "callers"), default="bench", help=argparse.SUPPRESS)
    ap.add_argument("--twiml-url", help=argparse.SUPPRESS)
    ap.add_argument("--auth-token", help=argparse.SUPPRESS)
    ap.add_argument("--calls", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    raw = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(raw)
    args.argv = raw
    if args.role == "emulator":
        pin(1)
        asyncio.run(emulator_role(args))
        return 0
    if args.role == "callers":
        pin(1)
        asyncio.run(callers_role(args))
        return 0
    tee = Tee()

    if args.input_chunk_ms is None:
        args.input_chunk_ms = Settings.gemini_input_chunk_ms
    try:
        import uvloop
    except ImportError:
        uvloop = None
    if args.loop is None:
        args.loop = "asyncio" if uvloop is None else "uvloop"
    factory = None
    if args.loop == "uvloop":
        if uvloop is None:
            raise SystemExit("--loop uvloop: uvloop is not installed (pip install uvicorn[standard])")
        factory = uvloop.new_event_loop
    if args.floor_picows:
        import importlib.util
        if not args.floor:
            raise SystemExit("--floor-picows runs the floor again on picows: give --floor too")
        if importlib.util.find_spec("picows") is None:
            raise SystemExit("--floor-picows: picows is not installed (pip install picows: a measurement, "
                             "not one of the project's dependencies)")
    if args.tls:
        make_tls(args)
    if args.workers:
        rows = asyncio.run(bench_workers(args))
        return 0 if rows and not any(r["failed"] for r in rows) else 1
    args.compared = {}  # (what the ratio says, calls) -> the ratio, round by round
    ok = True
    with redirect_stdout(tee):
        for round_ in range(args.rounds):
            if args.rounds > 1:
                print(f"{'' if round_ == 0 else chr(10)}== round {round_ + 1} of {args.rounds}")
            with asyncio.Runner(loop_factory=factory) as runner:
                ok = runner.run(bench(args)) and ok
        if args.rounds > 1:
            print_rounds(args.compared)
    if not args.no_save:
        (ROOT / "benchmarks" / "load-latest.txt").write_text(tee.getvalue())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
