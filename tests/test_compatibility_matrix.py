"""The compatibility matrix: one whole interview against every Live model profile, both backends.

Each call, over real loopback websockets (caller simulator ⇄ bridge ⇄ emulator behaving as the
model named in the bridge's setup): the greeting, a caller talking over the agent, a slow tool
(the bridge's filler covers a line the model leaves silent), a 1011 drop mid-reply that resumes, a
``goAway`` handed over at a quiet moment, and a goodbye with ``end_call`` after which the bridge
hangs up. All combinations run at once (they are independent calls), so the matrix costs about
one call's time.
"""

import asyncio

import pytest

from telephony_bridge.gemini import profiles
from telephony_bridge.testing import CallerScript, Fault, Scenario, ToolCallStep
from telephony_bridge.testing.local_call import founder_turns, greetings, place_local_call

#: (model, backend) for every profile, on each backend it is served on.
MATRIX = [
    (p.family, backend)
    for p in profiles.PROFILES if p.status != "retired"
    for backend in (("gemini-api", "vertex") if p.backend == "both" else (p.backend,))
]


def scenario() -> Scenario:
    return Scenario(
        tool_calls=[
            # A lookup that takes 1.5 s while the model says nothing: filler territory.
            ToolCallStep(after_turn=1, name="lookup_market", args={"market": "dental practice software"},
                         then_clip=None, while_running=""),
            ToolCallStep(after_turn=4, name="end_call", args={"reason": "interview complete"}, then_clip="goodbye"),
        ],
        # goAway during the greeting (handed over at the next quiet moment), then a 1011 in the
        # middle of the second reply on the connection that took over.
        faults=[Fault("go_away", at_s=5.0, time_left_s=8.0),
                Fault("close", on_reply=2, after_chunks=10, code=1011, connection=1)],
    )


async def one_call(model: str, backend: str):
    turns = founder_turns()[:4]
    script = CallerScript.from_founder_turns(turns, barge_in_turn=2, barge_in_after_ms=1000)
    return await place_local_call(script, scenario(), vertex=backend == "vertex", gemini_model=model,
                                  silence_duration_ms=700, demo_tool_delays_s={"lookup_market": 1.5},
                                  timeout=120.0)


async def run_matrix():
    return await asyncio.gather(*(one_call(model, backend) for model, backend in MATRIX), return_exceptions=True)


@pytest.fixture(scope="module")
def calls():
    return dict(zip(MATRIX, asyncio.run(run_matrix())))


def test_every_profile_has_a_row():
    families = {model for model, _ in MATRIX}
    assert families == {p.family for p in profiles.PROFILES if p.status != "retired"}
    assert ("gemini-3.8-live", "vertex") in MATRIX and ("gemini-3.8-live", "gemini-api") in MATRIX


@pytest.mark.parametrize("model,backend", MATRIX, ids=[f"{m}@{b}" for m, b in MATRIX])
def test_the_interview_works_on(calls, model, backend):
    call = calls[(model, backend)]
    if isinstance(call, BaseException):
        raise call
    core, emulator, result = call.core, call.emulator, call.result
    profile = profiles.profile_for(model)
    session = emulator.sessions[0]

    # The setup named the model as this backend spells it, with only fields the model takes.
    expected = (f"projects/{emulator_project(call)}/locations/{emulator_location(call)}/publishers/google/models/{model}"
                if backend == "vertex" else f"models/{model}")
    assert session.setup["model"] == expected
    declared = {d["name"]: d.get("behavior") for d in session.setup["tools"][0]["functionDeclarations"]}
    for behavior in declared.values():
        assert behavior is None or behavior in profile.declarable_behaviors

    # Greeted once, across every connection; the caller's barge-in stopped the agent.
    assert greetings(emulator) == 1
    assert core.counters["barge_ins"] >= 1
    # The 1011 resumed with the handle; the goAway was handed over without a drop.
    assert core.counters["reconnects"] >= 1, core.timeline
    assert core.counters["handovers"] >= 1, core.timeline
    assert any(s.resumed_from is not None for s in emulator.sessions[1:])
    # The slow tool ran and its answer reached the model; the silent line got filler (the model
    # says nothing during it here), except on a model that speaks its own fillers.
    answered = [r["name"] for s in emulator.sessions for r in s.tool_responses]
    assert "lookup_market" in answered
    if profile.speaks_fillers:
        assert core.counters["fillers"] == 0
    else:
        assert core.counters["fillers"] >= 1
    # scheduling only where the model honours it.
    for s in emulator.sessions:
        for r in s.tool_responses:
            if not profile.scheduling:
                assert "scheduling" not in r
    # The goodbye was heard and the bridge hung up.
    assert core.ended.startswith("end_call"), core.ended
    assert result.ended_by == "bridge"
    assert any("<Hangup" in t for t in result.twiml)
    assert core.turns[-1].frames_heard > 0
    assert core.protocol_errors == {}


def emulator_project(call) -> str:
    return call.bridge.settings.google_cloud_project


def emulator_location(call) -> str:
    return call.bridge.settings.google_cloud_location
