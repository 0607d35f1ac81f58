"""``telephony-bridge demo``: a whole phone interview on one machine, no network, no keys.

Starts the Gemini Live emulator and the bridge on free loopback ports, places a simulated
Twilio call from the bundled founder recording, shows progress while it runs, prints a summary
and writes ``demo-output/``: ``call.wav`` (left: the caller as sent; right: the agent as the
caller heard it), ``transcript.json``, ``timeline.json`` and ``bridge.log``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import sys
import time
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn

from .log import setup_logging
from .server import create_app, uvicorn_options
from .settings import Settings

DEMO_KEY = "demo-" + "k" * 8  # the emulator checks it; it is not a real key


def founder_turns() -> list[bytes]:
    """The bundled founder's answers (μ-law 8 kHz), in order."""
    folder = resources.files("telephony_bridge") / "assets" / "founder"
    index = json.loads((folder / "turns.json").read_text())
    items = index["turns"] if isinstance(index, dict) else index
    return [(folder / item["file"]).read_bytes() for item in items]


def _bind_loopback() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class LocalBridge:
    """The bridge app served by uvicorn on a loopback port, inside the current event loop."""

    def __init__(self, settings: Settings, *, call_overrides: dict[str, Any] | None = None) -> None:
        self.sock = _bind_loopback()
        port = self.sock.getsockname()[1]
        self.settings = replace(settings, public_url=f"http://127.0.0.1:{port}", host="127.0.0.1", port=port)
        self.app = create_app(self.settings, call_overrides=call_overrides)
        config = uvicorn.Config(self.app, **uvicorn_options(self.settings), log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=3)
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def twiml_url(self) -> str:
        return self.settings.public("/twiml")

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        deadline = time.monotonic() + 10
        while not self.server.started:
            if self._task.done():
                self._task.result()
            if time.monotonic() > deadline:
                raise RuntimeError("bridge did not start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await self._task
        self.sock.close()
        await self.app.state.store.close()

    async def finished_call(self, call_sid: str, timeout: float = 10.0) -> Any:
        calls = self.app.state.calls
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for core in calls.finished:
                if core.call_sid == call_sid:
                    return core
            await asyncio.sleep(0.05)
        raise RuntimeError(f"the bridge never finished call {call_sid}")


def demo_scenario() -> Any:
    """The emulated interviewer: saves a note, looks up the market (slowly), ends the call."""
    from .testing import Scenario, ToolCallStep

    folder = resources.files("telephony_bridge") / "assets" / "founder"
    index = json.loads((folder / "turns.json").read_text())
    texts = [t["text"] for t in (index["turns"] if isinstance(index, dict) else index)]
    return Scenario(
        caller_texts=texts,
        tool_calls=[
            ToolCallStep(after_turn=1, name="save_note", then_clip=None,
                         args={"topic": "problem", "fact": "Dental clinics lose revenue to last-minute cancellations"}),
            ToolCallStep(after_turn=3, name="lookup_market", args={"market": "dental practice software"},
                         then_clip=None),
            ToolCallStep(after_turn=5, name="end_call", args={"reason": "interview complete"}, then_clip="goodbye"),
        ],
    )


_PROGRESS = {
    "say_start": "caller speaks",
    "agent_audio_start": "agent speaks",
    "clear": "barge-in: the agent stopped (clear)",
    "hangup": "caller hangs up",
}


def longest_line_silence(result: Any) -> float:
    """Longest stretch (s) after the first agent audio where neither the caller nor the agent
    made a sound: what a caller perceives as a dead line."""
    import numpy as np

    def levels(pcm: bytes) -> Any:
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
        n = len(x) // 160
        return np.sqrt(np.mean(x[: n * 160].reshape(n, 160) ** 2, axis=1))

    heard, sent = levels(result.heard_pcm16()), levels(result.sent_pcm16())
    n = min(len(heard), len(sent))
    quiet = (heard[:n] < 0.005) & (sent[:n] < 0.01)
    loud = np.flatnonzero(~quiet)
    first_agent = np.flatnonzero(heard[:n] >= 0.005)
    if not len(first_agent) or not len(loud):
        return 0.0
    longest = run = 0
    for q in quiet[first_agent[0]: loud[-1]]:
        run = run + 1 if q else 0
        longest = max(longest, run)
    return round(longest * 0.02, 2)


async def run_demo(out_dir: str = "demo-output", quiet: bool = False, filler: bool = True) -> int:
    from .testing import CallerScript, CallerSimulator, GeminiEmulator

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_file = open(out / "bridge.log", "w", encoding="utf-8")  # noqa: SIM115 - closed below
    setup_logging("INFO", stream=log_file)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))

    emulator = GeminiEmulator(demo_scenario(), api_key=DEMO_KEY)
    await emulator.start()
    bridge = LocalBridge(Settings(
        gemini_api_key=DEMO_KEY,
        public_url="http://127.0.0.1",
        gemini_live_url=emulator.url,
        twilio_auth_token=secrets.token_hex(16),
        silence_duration_ms=1200,
        sqlite_path=str(out / "calls.sqlite3"),
    ), call_overrides=None if filler else {"filler_max": 0})
    await bridge.start()
    say(f"Gemini Live emulator on {emulator.url.split('/ws/')[0]}; bridge on {bridge.settings.public_url}")
    say("Placing a call from the bundled founder recording...")

    def progress(event: dict[str, Any]) -> None:
        label = _PROGRESS.get(event.get("kind", ""))
        if label:
            say(f"  {event['t']:6.2f}s  {label}")

    try:
        script = CallerScript.from_founder_turns(founder_turns(), barge_in=True)
        sim = CallerSimulator(bridge.twiml_url, script, auth_token=bridge.settings.twilio_auth_token,
                              timeout=240.0, on_event=progress)
        result = await sim.run()
        core = await bridge.finished_call(result.call_sid)
    finally:
        await bridge.stop()
        await emulator.stop()
        log_file.close()

    result.write_wav(str(out / "call.wav"))
    (out / "transcript.json").write_text(json.dumps(
        {"call_sid": result.call_sid, "turns": core.transcript}, indent=2))
    (out / "timeline.json").write_text(json.dumps(
        {"call_sid": result.call_sid, "bridge": core.timeline, "caller": result.events}, indent=2))

    summary = core.summary()
    print()
    print("Call summary")
    print(f"  call            {result.call_sid}  (ended by {result.ended_by}: {core.ended})")
    print(f"  agent turns     {summary['agent_turns']}")
    print(f"  caller turns    {len(emulator.sessions[0].turns) if emulator.sessions else 0} (seen by Gemini's VAD)")
    print(f"  latency         p50 {summary['latency_p50_ms']} ms, p95 {summary['latency_p95_ms']} ms"
          "  (caller's end of speech -> first agent frame to Twilio)")
    print(f"  barge-ins       {summary['barge_ins']}")
    tools = ", ".join(f"{t['name']} {t['duration_ms']:.0f} ms" for t in core.tool_log) or "none"
    print(f"  tool calls      {tools}")
    print(f"  filler          {summary['fillers']} phrase(s) while tools ran"
          f"{'' if filler else ' (filler disabled)'}")
    print(f"  notes saved     {len(core.notes)}")
    print(f"  longest silence {longest_line_silence(result):.2f} s on the line (neither side audible)")
    print(f"  ending          {core.ended}; the caller's line: {'hung up' if any('<Hangup' in t for t in result.twiml) else result.ended_by}")
    print(f"  audio           {len(result.sent_ulaw) / 8000:.1f} s sent, agent heard in "
          f"{summary['frames_out']} frames of 20 ms")
    print(f"  wrote           {out / 'call.wav'}, {out / 'transcript.json'}, {out / 'timeline.json'}")
    ok = summary["agent_turns"] > 1 and summary["frames_in"] > 0 and core.ended is not None
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(asyncio.run(run_demo()))
