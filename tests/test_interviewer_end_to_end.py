"""Tools, filler, notes and end_call over real loopback websockets."""

import asyncio
import secrets

import httpx
import numpy as np

from telephony_bridge.testing import CallerScript, Scenario, ToolCallStep
from telephony_bridge.testing.local_call import founder_turns, place_local_call

OPERATOR = "op-" + secrets.token_hex(8)


def frame_rms(pcm: bytes) -> np.ndarray:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768
    n = len(x) // 160
    return np.sqrt(np.mean(x[: n * 160].reshape(n, 160) ** 2, axis=1))


async def interview(scenario, turns, tmp_path):
    fetched = {}

    async def read_record(bridge, result):
        async with httpx.AsyncClient() as client:
            url = bridge.settings.public(f"/calls/{result.call_sid}")
            fetched["record"] = (await client.get(url, headers={"Authorization": f"Bearer {OPERATOR}"})).json()
            fetched["denied"] = (await client.get(url)).status_code

    # The product's lookup answers at once; the test makes it slow so filler has something to cover.
    call = await place_local_call(CallerScript.from_founder_turns(turns), scenario, while_up=read_record,
                                  silence_duration_ms=700, operator_token=OPERATOR,
                                  sqlite_path=str(tmp_path / "calls.sqlite3"),
                                  demo_tool_delays_s={"lookup_market": 1.5})
    return call.result, call.core, call.emulator, fetched["record"], fetched["denied"]


def test_slow_tool_gets_filler_notes_are_saved_and_end_call_hangs_up(tmp_path):
    turns = founder_turns()[:3]
    # On gemini-3.8-live (the default) lookup_market and save_note are non-blocking: the model may
    # go on talking while they run. Here it says nothing while the slow lookup runs (so the line
    # is really silent and the bridge's filler covers it) and asks the next question when the
    # answer comes (WHEN_IDLE); it saves the note silently and goes straight on (SILENT).
    scenario = Scenario(
        replies=("q_customer", "q_competition", "goodbye"),
        tool_calls=[
            ToolCallStep(after_turn=1, name="lookup_market", args={"market": "dental practice software"},
                         then_clip=None, while_running=""),
            ToolCallStep(after_turn=2, name="save_note", args={"topic": "customer", "fact": "small dental practices"},
                         then_clip=None, while_running=None),
            ToolCallStep(after_turn=3, name="end_call", args={"reason": "interview complete"}, then_clip="goodbye"),
        ],
    )
    result, core, emulator, record, denied = asyncio.run(interview(scenario, turns, tmp_path))

    session = emulator.sessions[0]
    names = [r["name"] for r in session.tool_responses]
    assert "lookup_market" in names and "end_call" in names
    market = next(r for r in session.tool_responses if r["name"] == "lookup_market")
    assert market["response"]["found"] is True and market["response"]["status"] == "ok"
    # Each answer carries its tool's scheduling (lookup: WHEN_IDLE, note: SILENT; end_call is blocking).
    scheduling = {r["name"]: r.get("scheduling") for r in session.tool_responses}
    assert scheduling == {"lookup_market": "WHEN_IDLE", "save_note": "SILENT", "end_call": None}
    # The setup declared every tool's behaviour (the default model is gemini-3.8-live).
    assert session.setup["model"] == "models/gemini-3.8-live"
    declared = {d["name"]: d["behavior"] for d in session.setup["tools"][0]["functionDeclarations"]}
    # (The bundled persona is the founder panel: its first interviewer also has hand_off.)
    assert declared == {"save_note": "NON_BLOCKING", "lookup_market": "NON_BLOCKING", "end_call": "BLOCKING",
                        "hand_off": "BLOCKING"}

    # The slow lookup (1.5 s) got filler: bridge-made audio reached the caller's ear.
    assert core.counters["fillers"] >= 1
    filler_at = next(e["t"] for e in core.timeline if e["kind"] == "phrase" and e["phrase"] == "filler")
    tool_at = next(e["t"] for e in core.timeline if e["kind"] == "tool_call" and e["name"] == "lookup_market")
    assert 0.8 <= round(filler_at - tool_at, 3) <= 1.0  # timeline times are in whole ms
    heard = frame_rms(result.heard_pcm16())
    k = int(filler_at / 0.02)
    assert heard[k + 2: k + 20].max() > 0.02  # audible in the heard track

    # The call ended on the agent's end_call, after its goodbye was heard, and hung up.
    assert core.ended.startswith("end_call")
    assert core.turns[-1].frames_heard > 0 and "Goodbye" in core.transcript[-1]["text"]
    assert result.ended_by == "bridge"
    assert any("<Hangup" in t for t in result.twiml)

    # The record: notes, tools with durations, transcript; private without the operator token.
    assert denied in (401, 403, 404)
    assert record["call_sid"] == result.call_sid
    assert record["notes"][0]["fact"] == "small dental practices"
    tools = {t["name"]: t for t in record["tools"]}
    assert tools["lookup_market"]["duration_ms"] >= 1400
    assert any(e["role"] == "caller" for e in record["transcript"])


def test_a_cancelled_tool_call_cancels_its_task_and_gets_no_response(tmp_path):
    turns = founder_turns()[:2]
    scenario = Scenario(
        replies=("q_customer", "q_competition"),
        tool_calls=[ToolCallStep(after_turn=1, name="lookup_market", args={"market": "dental practice software"},
                                 then_clip=None, cancel_after_s=0.5)],
    )
    result, core, emulator, record, _ = asyncio.run(interview(scenario, turns, tmp_path))
    session = emulator.sessions[0]
    assert session.tool_cancellations  # the model cancelled it after 0.5 s
    assert not [r for r in session.tool_responses if r["name"] == "lookup_market"]
    (entry,) = [t for t in record["tools"] if t["name"] == "lookup_market"]
    assert entry["cancelled"] and entry["duration_ms"] < 1000  # stopped, not run to its 1.5 s end
    assert core.ended == "caller-hangup"
