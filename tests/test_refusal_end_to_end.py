"""Gemini refusals end to end: the emulator refuses the way the service does, the bridge runs on a
loopback port, the caller simulator plays Twilio (it requests <Connect action> when the stream
closes and drops whatever audio it had not played yet). The caller must hear the whole apology,
the call must end after one stream, and Gemini must see no more attempts than configured.

The refused calls (and a transient 1011 that must still resume) run concurrently, once per module.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import urllib.parse
import xml.etree.ElementTree as ET

import httpx
import numpy as np
import pytest
from twilio.request_validator import RequestValidator

from telephony_bridge import call_state
from telephony_bridge.gemini.reconnect import ReconnectPolicy
from telephony_bridge.prompt_audio import load_phrase_book
from telephony_bridge.settings import Settings
from telephony_bridge.testing import CallerScript, CallerSimulator, Fault, GeminiEmulator, Scenario
from telephony_bridge.testing.emulator import INVALID_ARGUMENT_REASON, PERMISSION_REASON, QUOTA_REASON
from telephony_bridge.testing.local_call import DEMO_KEY, LocalBridge, founder_turns, greetings
from telephony_bridge.testing.simulator import Hangup, Wait, WaitForAgent

LIVE_MODEL = "gemini-3.8-live"
GONE_MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"  # a Live preview the service shut down
WRONG_KEY = "wrong-key-" + "0" * 12
OPERATOR = "operator-" + "ab" * 10
PHRASE = load_phrase_book("en").next("goodbye_error")  # what the caller must hear, byte for byte
#: Every attempt the policy allows: the first connection plus one per backoff delay.
POLICY_ATTEMPTS = 1 + len(ReconnectPolicy().delays)

# kind -> (expected refusal kind, emulator scenario, key the bridge uses, Gemini attempts allowed)
CASES = {
    "model_not_found": ("model_not_found", Scenario(known_models=[LIVE_MODEL]), DEMO_KEY, 1),
    "bad_key": ("bad_key", Scenario(key_check="setup"), WRONG_KEY, 1),  # the service: 1007 at setup
    "bad_key_http": ("bad_key", Scenario(), WRONG_KEY, 1),  # HTTP 403 at the upgrade (a proxy, the issue)
    "permission": ("permission", Scenario(faults=[
        Fault("reject_setup", code=1008, reason=PERMISSION_REASON, connection=None)]), DEMO_KEY, 1),
    "invalid_setup": ("invalid_setup", Scenario(faults=[
        Fault("reject_setup", code=1007, reason=INVALID_ARGUMENT_REASON, connection=None)]), DEMO_KEY, 1),
    # setupComplete, then 1011 with the quota sentence ~0.8 s later, on every connection
    "quota": ("quota", Scenario(faults=[
        Fault("close", at_s=0.8, code=1011, reason=QUOTA_REASON, connection=None)]), DEMO_KEY, 1),
    "unreachable": ("unreachable", Scenario(), DEMO_KEY, POLICY_ATTEMPTS),  # HTTP 503 to every attempt
}


def frame_rms(ulaw: bytes) -> np.ndarray:
    from telephony_bridge.testing.wav import ulaw_to_pcm16

    x = np.frombuffer(ulaw_to_pcm16(ulaw), dtype="<i2").astype(np.float64) / 32768
    n = len(x) // 160
    return np.sqrt(np.mean(x[: n * 160].reshape(n, 160) ** 2, axis=1))


VOICED = 0.01  # frame RMS (full scale 1.0) that counts as sound on the line
PHRASE_VOICED_S = float((frame_rms(PHRASE) > VOICED).sum()) * 0.02


def bridge_settings(emulator: GeminiEmulator, key: str, **extra) -> Settings:
    return Settings(gemini_api_key=key, public_url="http://127.0.0.1", gemini_live_url=emulator.url,
                    gemini_model=extra.pop("gemini_model", GONE_MODEL if key == DEMO_KEY else LIVE_MODEL),
                    twilio_auth_token=secrets.token_hex(16), operator_token=OPERATOR, **extra)


async def refused_call(case: str, stall_s: float = 0.0) -> dict:
    """One refused call. ``stall_s``: the event loop (bridge, caller and emulator alike) stops
    that long 2 s into the apology, as a gen-2 GC pause of a loaded xdist worker does."""
    kind, scenario, key, allowed = CASES[case]
    emulator = GeminiEmulator(scenario, api_key=DEMO_KEY)
    await emulator.start()
    if case == "unreachable":
        emulator.refuse_connections(600.0)
    bridge = LocalBridge(bridge_settings(emulator, key))
    await bridge.start()
    try:
        def on_event(event: dict) -> None:
            if stall_s and event["kind"] == "media_in_first":
                asyncio.get_running_loop().call_later(2.0, time.sleep, stall_s)

        # A caller who would stay on for 30 s: the bridge must end the call, once.
        sim = CallerSimulator(bridge.twiml_url, CallerScript([Wait(30_000), Hangup()]),
                              auth_token=bridge.settings.twilio_auth_token, timeout=60, on_event=on_event)
        result = await sim.run()
        core = await bridge.finished_call(result.call_sid)
        metric = bridge.app.state.metrics.registry.get_sample_value
        refusals = {k: metric("bridge_gemini_refusals_total", {"kind": k}) for k in
                    ("model_not_found", "bad_key", "permission", "invalid_setup", "quota", "unreachable")}
        state = await bridge.app.state.store.get_call_state(result.call_sid)
    finally:
        await bridge.stop()
        await emulator.stop()
    return dict(result=result, core=core, emulator=emulator, kind=kind, allowed=allowed, refusals=refusals,
                state=state, attempts=len(emulator.sessions) + len(emulator.rejected))


async def transient_call() -> dict:
    scenario = Scenario(faults=[Fault("close", on_reply=2, after_chunks=15, code=1011,
                                      reason="Internal error encountered.")])
    emulator = GeminiEmulator(scenario, api_key=DEMO_KEY)
    await emulator.start()
    bridge = LocalBridge(bridge_settings(emulator, DEMO_KEY, gemini_model=LIVE_MODEL, silence_duration_ms=700))
    await bridge.start()
    try:
        sim = CallerSimulator(bridge.twiml_url, CallerScript.from_founder_turns(founder_turns()[:2]),
                              auth_token=bridge.settings.twilio_auth_token, timeout=90)
        result = await sim.run()
        core = await bridge.finished_call(result.call_sid)
    finally:
        await bridge.stop()
        await emulator.stop()
    return dict(result=result, core=core, emulator=emulator)


@pytest.fixture(scope="module")
def calls() -> dict:
    async def all_calls():
        started = time.monotonic()
        results = await asyncio.gather(*(refused_call(c) for c in CASES), transient_call())
        out = dict(zip([*CASES, "transient"], results))
        out["wall_s"] = time.monotonic() - started
        return out

    return asyncio.run(all_calls())


@pytest.mark.parametrize("case", list(CASES))
def test_a_refused_call_plays_the_whole_apology_and_ends_after_one_stream(calls, case):
    check_refused_call(calls[case])


def test_a_stall_of_the_whole_process_mid_apology_leaves_no_hole_in_it():
    # The flake this file had (6 of the 7 refused calls "not byte for byte" in one run, once
    # bad_key_http alone): a pause of the worker's whole event loop a little over the playback
    # lead (160 ms) during the apologies; gen-2 collections of 200-535 ms were measured in the
    # suite's workers during tests (4 workers on 2 cores). The bridge kept only the lead in
    # Twilio's buffer, Twilio played on through the pause and ran dry: a hole in the caller's last
    # words. The last phrase now goes to Twilio whole, so no pause after that can break it up.
    check_refused_call(asyncio.run(refused_call("bad_key_http", stall_s=0.3)))


def check_refused_call(c: dict) -> None:
    result, core, kind = c["result"], c["core"], c["kind"]
    # Gemini: no more attempts than allowed (1, or the reconnect policy's for unreachable).
    assert c["attempts"] == c["allowed"], (c["attempts"], [s.closed_code for s in c["emulator"].sessions],
                                           c["emulator"].rejected)
    assert core.refusal is not None and core.refusal.kind.value == kind
    assert core.ended == f"gemini-refused:{kind}"
    # The caller heard the apology: all of it, byte for byte, and its sound (not silence).
    assert PHRASE in result.heard_ulaw
    t_refused = next(e["t"] for e in core.timeline if e["kind"] == "gemini_refused")
    heard = frame_rms(result.heard_ulaw)[int(t_refused / 0.02):]
    assert float((heard > VOICED).sum()) * 0.02 >= PHRASE_VOICED_S - 1e-9
    (stream,) = result.streams  # exactly one stream, closed only after everything sent had played
    assert stream["ended_by"] == "bridge" and stream["unplayed_bytes"] == 0 and stream["marks_dropped"] == []
    # Twilio's <Connect action> request got <Hangup/>: no second stream, no <Say> (it was heard).
    assert result.ended_by == "bridge" and len(result.stream_sids) == 1
    last = ET.fromstring(result.twiml[-1])
    assert [v.tag for v in last] == ["Hangup"]
    assert call_state.parse(c["state"]).reason == f"gemini-refused:{kind}"
    # Said once: one refusal event on the call, one count on /metrics under its kind.
    assert sum(1 for e in core.timeline if e["kind"] == "gemini_refused") == 1
    assert c["refusals"][kind] == 1 and sum(c["refusals"].values()) == 1


def test_a_transient_1011_in_the_same_run_still_resumes(calls):
    c = calls["transient"]
    core, emulator, result = c["core"], c["emulator"], c["result"]
    assert core.refusal is None and core.ended == "caller-hangup"
    assert len(emulator.sessions) == 2 and emulator.sessions[0].closed_code == 1011
    assert emulator.sessions[1].resumed_from is not None and core.counters["reconnects"] == 1
    assert greetings(emulator) == 1 and len(result.stream_sids) == 1
    assert sum(len(s.turns) for s in emulator.sessions) >= 2  # both answers reached the model


def test_the_refused_calls_ran_concurrently(calls):
    # Each refused call takes its apology's length (~6 s; unreachable ~10 s); together, not in series.
    assert calls["wall_s"] < 60


# ------------------------------------------------------------------------------ breaker


def operator_get(bridge: LocalBridge, path: str) -> httpx.Response:
    return httpx.get(bridge.settings.public(path), headers={"Authorization": f"Bearer {OPERATOR}"},
                     trust_env=False, timeout=5)


def test_the_breaker_answers_new_calls_from_the_webhook_until_a_probe_gets_through():
    async def go():
        emulator = GeminiEmulator(Scenario(known_models=[LIVE_MODEL]), api_key=DEMO_KEY)
        await emulator.start()
        bridge = LocalBridge(bridge_settings(emulator, DEMO_KEY, breaker_calls=2, breaker_probe_s=1.0))
        await bridge.start()
        breaker = bridge.app.state.breaker
        out = {}
        try:
            def caller(script=None):
                return CallerSimulator(bridge.twiml_url, script or CallerScript([Wait(30_000), Hangup()]),
                                       auth_token=bridge.settings.twilio_auth_token, timeout=60)

            # Two calls refused for the same reason (at once, as calls come): the breaker opens
            # as soon as the second refusal is known, while both apologies still play.
            first = asyncio.gather(caller().run(), caller().run())
            deadline = time.monotonic() + 10
            while breaker.allows_calls and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            out["attempts_before"] = len(emulator.sessions) + len(emulator.rejected)
            out["health_open"] = (await asyncio.to_thread(httpx.get, bridge.settings.public("/healthz"),
                                                          trust_env=False)).json()
            # A new call: the apology from the webhook, no stream, no Gemini connection (the
            # first probe is 1 s away: every connection Gemini sees until then is a call's).
            out["third"] = await caller().run()
            out["attempts_after_third"] = len(emulator.sessions) + len(emulator.rejected)
            out["metrics_open"] = (await asyncio.to_thread(operator_get, bridge, "/metrics")).text
            out["first"] = await first
            # The operator fixes it (the service serves the model again): a probe notices.
            emulator.scenario.known_models = [LIVE_MODEL, GONE_MODEL]
            deadline = time.monotonic() + 15
            while not breaker.allows_calls and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            out["closed"] = breaker.allows_calls
            out["probes"] = breaker.probes
            out["health_closed"] = (await asyncio.to_thread(httpx.get, bridge.settings.public("/healthz"),
                                                            trust_env=False)).json()
            out["fourth"] = await caller(CallerScript([WaitForAgent(quiet_ms=500, timeout_ms=10_000), Hangup()])).run()
            out["metrics_closed"] = (await asyncio.to_thread(operator_get, bridge, "/metrics")).text
        finally:
            await bridge.stop()
            await emulator.stop()
        out["sessions"] = emulator.sessions
        return out

    out = asyncio.run(go())
    for result in out["first"]:
        assert len(result.stream_sids) == 1 and PHRASE in result.heard_ulaw
    assert out["attempts_before"] == 2
    gemini = out["health_open"]["gemini"]
    assert out["health_open"]["ok"] is True and gemini["state"] == "open" and gemini["kind"] == "model_not_found"
    third = out["third"]
    assert third.stream_sids == [] and third.ended_by == "bridge"
    (doc,) = third.twiml
    verbs = ET.fromstring(doc)
    assert [v.tag for v in verbs] == ["Say", "Hangup"]
    assert verbs[0].text == load_phrase_book("en").texts("goodbye_error")[0] and verbs[0].get("language") == "en-US"
    assert out["attempts_after_third"] == 2  # Gemini never saw the third call
    assert "bridge_gemini_breaker_open 1.0" in out["metrics_open"]
    assert 'bridge_gemini_refusals_total{kind="model_not_found"} 2.0' in out["metrics_open"]
    assert 'bridge_rejected_total{reason="gemini-refusing",where="webhook"} 1.0' in out["metrics_open"]
    assert out["closed"] and out["probes"] >= 1
    assert out["health_closed"]["gemini"]["state"] == "closed"
    probes = [s for s in out["sessions"][2:-1]]  # between the refused calls and the fourth call
    assert probes and all(s.turns == [] for s in probes)  # setup only: a probe says nothing
    assert any(s.closed_by == "client" and s.model == f"models/{GONE_MODEL}" for s in probes)
    fourth = out["fourth"]
    assert len(fourth.stream_sids) == 1 and fourth.ended_by == "caller" and len(fourth.heard_ulaw) > 0
    assert out["sessions"][-1].replies and out["sessions"][-1].replies[0].kind == "greeting"
    assert "bridge_gemini_breaker_open 0.0" in out["metrics_closed"]
    assert 'bridge_gemini_breaker_probes_total{result="ok"} 1.0' in out["metrics_closed"]


# ------------------------------------------------------------------------------ continue


def test_continue_says_the_apology_only_when_the_stream_could_not_play_it():
    async def go():
        emulator = GeminiEmulator(Scenario(), api_key=DEMO_KEY)
        await emulator.start()
        bridge = LocalBridge(bridge_settings(emulator, DEMO_KEY, gemini_model=LIVE_MODEL))
        await bridge.start()
        store = bridge.app.state.store
        validator = RequestValidator(bridge.settings.twilio_auth_token)
        url = bridge.settings.public("/twiml/continue")
        answers = {}
        try:
            states = {"unheard": call_state.ended("gemini-refused:bad_key", say_goodbye=True),
                      "heard": call_state.ended("gemini-refused:bad_key"),
                      "end_call": call_state.ended("end_call:done")}
            async with httpx.AsyncClient(trust_env=False) as client:
                for name, state in states.items():
                    sid = "CA" + secrets.token_hex(16)
                    await store.set_call_state(sid, state)
                    form = {"CallSid": sid, "From": "+15551230000"}
                    response = await client.post(url, data=form, headers={
                        "X-Twilio-Signature": validator.compute_signature(url, form)})
                    answers[name] = [(v.tag, v.text) for v in ET.fromstring(response.text)]
        finally:
            await bridge.stop()
            await emulator.stop()
        return answers, len(emulator.sessions)

    answers, sessions = asyncio.run(go())
    goodbye = load_phrase_book("en").texts("goodbye_error")[0]
    assert answers["unheard"] == [("Say", goodbye), ("Hangup", None)]
    assert answers["heard"] == [("Hangup", None)] and answers["end_call"] == [("Hangup", None)]
    assert sessions == 0
