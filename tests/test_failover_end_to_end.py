"""A bridge process killed mid-call: Twilio asks <Connect action>, another replica answers,
and the Gemini session resumes from the shared Redis store. Real processes, real Redis."""

import asyncio
import secrets
import signal
import subprocess

from telephony_bridge.testing.local_call import DEMO_KEY, founder_turns, greetings
from telephony_bridge.testing import CallerScript, CallerSimulator, GeminiEmulator, Scenario
from telephony_bridge.testing.panel_call import panel_scenario
from telephony_bridge.testing.processes import free_port, start_replica
from telephony_bridge.testing.simulator import loopback_rewrite

PUBLIC = "https://bridge.test"


def kill_a_replica_mid_call(redis_url, tmp_path, scenario, script, kill_at_say: int, **env_extra):
    """Two replicas on one Redis behind a stand-in load balancer; the first is SIGKILLed when the
    caller starts their ``kill_at_say``-th answer. Returns (caller result, emulator, killed at)."""
    token = secrets.token_hex(16)

    async def run():
        emulator = GeminiEmulator(scenario, api_key=DEMO_KEY)
        await emulator.start()
        env = dict(GEMINI_API_KEY=DEMO_KEY, PUBLIC_URL=PUBLIC, GEMINI_LIVE_URL=emulator.url,
                   TWILIO_AUTH_TOKEN=token, STREAM_TOKEN_SECRET=secrets.token_urlsafe(32), REDIS_URL=redis_url,
                   HOST="127.0.0.1", SILENCE_DURATION_MS="700", LOG_LEVEL="INFO",
                   CALLS_DB=str(tmp_path / "unused.sqlite3"), **env_extra)
        ports = [free_port(), free_port()]
        replicas = [start_replica(env, p, tmp_path / f"replica{i}.log") for i, p in enumerate(ports)]
        alive = {"port": ports[0]}
        killed = {"at": None}

        def route(url: str) -> str:  # the load balancer: whichever replica is alive
            return loopback_rewrite(f"http://127.0.0.1:{alive['port']}", PUBLIC)(url)

        says = []

        def on_event(event):
            if event["kind"] == "say_start":
                says.append(event["t"])
                if len(says) == kill_at_say and killed["at"] is None:
                    replicas[0].send_signal(signal.SIGKILL)  # no goodbye, no state written
                    killed["at"] = event["t"]
                    alive["port"] = ports[1]

        try:
            sim = CallerSimulator(f"{PUBLIC}/twiml", script, auth_token=token, url_rewrite=route, timeout=150,
                                  on_event=on_event)
            result = await sim.run()
        finally:
            for proc in replicas:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in replicas:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            await emulator.stop()
        return result, emulator, killed["at"]

    return asyncio.run(run())


def test_a_killed_replica_hands_the_call_to_another(redis_url, tmp_path):
    result, emulator, killed_at = kill_a_replica_mid_call(
        redis_url, tmp_path, Scenario(), CallerScript.from_founder_turns(founder_turns()[:3]), kill_at_say=2)
    assert killed_at is not None
    # Twilio's side: the stream broke, <Connect action> gave a new stream on the other replica.
    assert len(result.stream_sids) == 2, result.twiml
    assert result.ended_by == "caller"
    # Gemini's side: the second replica resumed the session; nobody was greeted twice.
    assert len(emulator.sessions) >= 2
    assert emulator.sessions[-1].resumed_from is not None
    assert greetings(emulator) == 1
    # The caller kept being answered after the failover.
    after = [e for e in result.events if e["kind"] == "agent_audio_start" and e["t"] > killed_at]
    assert len(after) >= 1


def test_a_panel_call_moved_after_a_hand_off_goes_on_with_the_same_interviewer(redis_url, tmp_path):
    # Sam hands the call to Priya; the replica dies while the founder answers her (their third
    # answer); the other replica must resume Priya's session in Priya's voice (the emulator
    # answers by voice: in Sam's it would replay his script), and the interview goes on to Leo.
    result, emulator, killed_at = kill_a_replica_mid_call(
        redis_url, tmp_path, panel_scenario(), CallerScript.from_founder_turns(founder_turns()), kill_at_say=3,
        TTS_PHRASES="off", REPORT="off", RECORDINGS="off")
    assert killed_at is not None and len(result.stream_sids) == 2, result.twiml
    voices = [s.voice for s in emulator.sessions]
    resumed = [s for s in emulator.sessions if s.resumed_from is not None]
    assert resumed, voices
    assert resumed[0].voice == "Kore", voices  # Priya's session, in Priya's voice
    assert voices[-1] == "Puck" and "Charon" not in voices[2:], voices  # then Leo; Sam never again
