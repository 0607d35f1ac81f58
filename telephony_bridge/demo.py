"""``telephony-bridge demo``: a whole phone interview on one machine, no network, no keys.

Starts the Gemini Live emulator and the bridge on free loopback ports, places a simulated
Twilio call from the bundled founder recording, shows progress while it runs, prints a summary
and writes ``demo-output/``: ``call.wav`` (the bridge's recording: left the caller as received,
right the agent as the caller heard it), ``review.html`` (the call's review page, one file),
``transcript.json``, ``timeline.json``, ``report.json`` (the post-call report the emulated
``generateContent`` wrote from the transcript) and ``bridge.log``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from .log import setup_logging
from .settings import Settings
from .testing.local_call import DEMO_KEY, LocalBridge, founder_turns, longest_line_silence

#: How slow the demo's market lookup is (a stand-in for an external API's round trip), seconds.
DEMO_MARKET_DELAY_S = 1.5


def demo_scenario(stall: bool = False) -> Any:
    """The emulated interviewer: saves a note, looks up the market (slowly), ends the call.
    ``stall``: it answers the greeting request with an empty turn first (python-genai #2117)."""
    from .testing import Fault, Scenario, ToolCallStep

    folder = resources.files("telephony_bridge") / "assets" / "founder"
    index = json.loads((folder / "turns.json").read_text())
    texts = [t["text"] for t in (index["turns"] if isinstance(index, dict) else index)]
    if not stall:  # the bundled founder panel: Sam hands to Priya, who hands to Leo (two hand-offs)
        from .testing.panel_call import panel_scenario

        return panel_scenario(caller_texts=texts, slow_lookup=True)
    return Scenario(
        caller_texts=texts,
        tool_calls=[
            # On gemini-3.8-live both are non-blocking: the note is filed while the model goes on
            # with its next question; the slow lookup runs while it says nothing (so the bridge's
            # filler covers the silence) and the next question comes with the figures.
            ToolCallStep(after_turn=1, name="save_note", then_clip=None, while_running=None,
                         args={"topic": "problem", "fact": "Dental clinics lose revenue to last-minute cancellations"}),
            ToolCallStep(after_turn=3, name="lookup_market", args={"market": "dental practice software"},
                         then_clip=None, while_running=""),
            ToolCallStep(after_turn=5, name="end_call", args={"reason": "interview complete"}, then_clip="goodbye"),
        ],
        faults=[Fault("empty_turn", on_reply=1)] if stall else [],
    )


_PROGRESS = {
    "say_start": "caller speaks",
    "agent_audio_start": "agent speaks",
    "clear": "clear: what was playing stopped at once (a barge-in, or filler giving way to the answer)",
    "hangup": "caller hangs up",
}
_STALL_STEPS = {
    "stall": "the model answered with nothing (a silent stall)",
    "stall_nudge": "nudged it",
    "stall_recovered": "it speaks again",
    "stall_apology": "it stayed silent: the caller heard an apology",
}


def write_call_files(out: Path, call_sid: str, core: Any, report: dict[str, Any] | None = None) -> None:
    """``call.wav`` (the bridge's own stereo recording, as ``serve`` makes it) and ``review.html``
    (the /calls/{sid}/view page, self-contained)."""
    import shutil
    import time

    from .review.render import write_standalone

    folder = out / "recordings"
    wav = folder / f"{call_sid}.wav"
    meta_file = folder / f"{call_sid}.json"
    record = core.record()
    record["recording"] = json.loads(meta_file.read_text()) if meta_file.is_file() else None
    record["started_at"] = record["recording"]["started_at"] if record["recording"] else time.time()
    if wav.is_file():
        shutil.copyfile(wav, out / "call.wav")
    write_standalone(out / "review.html", record, wav if wav.is_file() else None, report)


async def run_demo(out_dir: str = "demo-output", quiet: bool = False, filler: bool = True,
                   stall: bool = False) -> int:
    from .testing import CallerScript, CallerSimulator, GeminiEmulator

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_file = open(out / "bridge.log", "w", encoding="utf-8")  # noqa: SIM115 - closed below
    setup_logging("INFO", stream=log_file)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))

    from .testing.gemini.tts import TtsEmulator

    # REST generateContent on one port: the post-call report, and Gemini TTS (phrases in the agent's voice).
    emulator = GeminiEmulator(demo_scenario(stall), api_key=DEMO_KEY, rest=True)
    assert emulator.rest is not None
    emulator.rest.tts = TtsEmulator(api_key=DEMO_KEY)
    await emulator.start()
    bridge = LocalBridge(Settings(
        gemini_api_key=DEMO_KEY,
        public_url="http://127.0.0.1",
        gemini_live_url=emulator.url,
        gemini_rest_url=emulator.rest_url,
        twilio_auth_token=secrets.token_hex(16),
        silence_duration_ms=1200,
        sqlite_path=str(out / "calls.sqlite3"),
        recordings_dir=str(out / "recordings"),  # what `serve` records: call.wav and review.html come from it
        # The bundled lookup answers at once; the demo makes it slow (standing in for an external
        # market-data API) so the filler has something to cover.
        demo_tool_delays_s={"lookup_market": DEMO_MARKET_DELAY_S},
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
        report = await wait_for_report(bridge.app.state.store, result.call_sid)
    finally:
        await bridge.stop()
        await emulator.stop()
        log_file.close()

    write_call_files(out, result.call_sid, core, report)
    (out / "transcript.json").write_text(json.dumps(
        {"call_sid": result.call_sid, "turns": core.transcript}, indent=2))
    (out / "timeline.json").write_text(json.dumps(
        {"call_sid": result.call_sid, "bridge": core.timeline, "caller": result.events}, indent=2))
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))

    summary = core.summary()
    print()
    print("Call summary")
    print(f"  call            {result.call_sid}  (ended by {result.ended_by}: {core.ended})")
    print(f"  agent turns     {summary['agent_turns']}")
    print(f"  caller turns    {sum(len(s.turns) for s in emulator.sessions)} (seen by Gemini's VAD, all sessions)")
    print(f"  latency         p50 {summary['latency_p50_ms']} ms, p95 {summary['latency_p95_ms']} ms"
          "  (caller's end of speech -> first agent frame to Twilio)")
    print(f"  barge-ins       {summary['barge_ins']}")
    print(f"  pauses          {summary['pauses']} on the caller's onset: {summary['pauses_confirmed']} confirmed by "
          f"Gemini, {summary['false_alarms']} false alarm(s) resumed where the caller stopped hearing")
    tools = ", ".join(f"{t['name']} {t['duration_ms']:.0f} ms" for t in core.tool_log) or "none"
    print(f"  tool calls      {tools}")
    sources = getattr(core.phrases, "played", [])
    voice = f", {sum(1 for src, _ in sources if src == 'tts')} in the agent's voice (Gemini TTS)" if sources else ""
    print(f"  filler          {summary['fillers']} phrase(s) while tools ran{voice}"
          f"{'' if filler else ' (filler disabled)'}")
    print(f"  notes saved     {len(core.notes)}")
    if core.handoff is not None:  # the panel: who spoke, and each hand-off as the caller heard it
        from .testing.panel_call import handoff_figures, questions_asked_twice

        spoke = [e.get("speaker") for e in core.transcript if e["role"] == "agent"]
        print(f"  interviewers    {', '.join(dict.fromkeys(x for x in spoke if x))} "
              f"({' '.join(x or '?' for x in spoke)})")
        for h in handoff_figures(result, core):
            print(f"  hand-off        {h['from']} -> {h['to']}: {h.get('silence_ms')} ms silence heard, "
                  f"switch {h['switch_ms']} ms")
        print(f"                  caller audio lost {summary.get('input_dropped_frames', core.counters['input_dropped_frames'])} "
              f"frames; questions asked twice {questions_asked_twice(core.transcript)}")
    print(f"  stalls          {summary['stalls']} (the model answering with nothing): {summary['stall_recovered']} "
          f"recovered, {summary['stall_nudges']} nudge(s), {summary['stall_apologies']} apolog(ies)")
    for e in core.timeline:
        if e["kind"] in _STALL_STEPS:
            print(f"                  {e['t']:6.2f}s  {_STALL_STEPS[e['kind']]}")
    print(f"  longest silence {longest_line_silence(result):.2f} s on the line (neither side audible)")
    print(f"  ending          {core.ended}; the caller's line: {'hung up' if any('<Hangup' in t for t in result.twiml) else result.ended_by}")
    print(f"  audio           {len(result.sent_ulaw) / 8000:.1f} s sent, agent heard in "
          f"{summary['frames_out']} frames of 20 ms")
    leaning = (report or {}).get("leaning") or {}
    print(f"  report          {(report or {}).get('status', 'none')}: leaning {leaning.get('verdict', '-')}"
          f" ({'; '.join(leaning.get('reasons') or []) or (report or {}).get('reason', '')})")
    print(f"  open question   {(report or {}).get('open_question', '-')}")
    print(f"  wrote           {out / 'call.wav'}, {out / 'transcript.json'}, {out / 'timeline.json'}, "
          f"{out / 'report.json'}")
    print(f"  review          {out / 'review.html'}  (open it in a browser: waveforms, lanes, transcript)")
    ok = summary["agent_turns"] > 1 and summary["frames_in"] > 0 and core.ended is not None \
        and (report or {}).get("status") == "ok"
    return 0 if ok else 1


async def wait_for_report(store: Any, call_sid: str, timeout: float = 30.0) -> dict[str, Any] | None:
    """The call's report once it is no longer pending (None: none came in ``timeout``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    report = None
    while loop.time() < deadline:
        report = await store.get_report(call_sid)
        if report is not None and report.get("status") != "pending":
            return report
        await asyncio.sleep(0.05)
    return report


if __name__ == "__main__":  # pragma: no cover
    sys.exit(asyncio.run(run_demo()))
