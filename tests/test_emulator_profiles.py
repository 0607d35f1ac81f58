"""The emulator behaves like the model named in setup (telephony_bridge.gemini.profiles), driven by
a raw websockets client over loopback: setup refusals, tool behaviour and scheduling, what
clientContent interrupts, and the shape of serverContent, per model family."""

from __future__ import annotations

import json

import pytest
from test_emulator import GREET, collect, expect_close, founder_pcm, recv_json, run, send_audio
from websockets.asyncio.client import connect

from telephony_bridge.gemini.profiles import PROFILES
from telephony_bridge.testing.gemini import INVALID_ARGUMENT_REASON, GeminiEmulator, Scenario, ToolCallStep, load_clips

M38, M38ET = "models/gemini-3.8-live", "models/gemini-3.8-live-extended-thinking"
M31 = "models/gemini-3.1-flash-live-preview"
M25 = "models/gemini-2.5-flash-native-audio-preview-12-2025"
CLIPS = load_clips()
FAST = dict(pace=20.0, think_ms=0.0)


def setup(model: str, **extra) -> str:
    body = {"model": model, "generationConfig": {"responseModalities": ["AUDIO"]}, "outputAudioTranscription": {}}
    for key, value in extra.items():
        if key == "generationConfig":
            body["generationConfig"].update(value)
        else:
            body[key] = value
    return json.dumps({"setup": body})


def declare(**behaviors: str | None) -> list[dict]:
    return [{"functionDeclarations": [{"name": n, **({"behavior": b} if b else {})} for n, b in behaviors.items()]}]


def text_turn(text: str, turn_complete: bool = True) -> str:
    return json.dumps({"clientContent": {"turns": [{"role": "user", "parts": [{"text": text}]}],
                                         "turnComplete": turn_complete}})


def answer(call_id: str, name: str = "lookup", scheduling: str | None = None) -> str:
    resp = {"id": call_id, "name": name, "response": {"status": "ok"}}
    if scheduling:
        resp["scheduling"] = scheduling
    return json.dumps({"toolResponse": {"functionResponses": [resp]}})


def label(m: dict) -> str:
    if "toolCall" in m:
        return "toolCall"
    if "toolCallCancellation" in m:
        return "cancel"
    sc = m.get("serverContent")
    if sc is None:
        return next(iter(m))
    names = [("interrupted", "interrupted"), ("inputTranscription", "heard"), ("modelTurn", "audio"),
             ("outputTranscription", "text"), ("generationComplete", "generationComplete"),
             ("turnComplete", "turnComplete")]
    return "+".join(short for key, short in names if key in sc)


def squash(msgs: list[dict]) -> list[str]:
    out: list[str] = []
    for m in msgs:
        name = label(m)
        if not out or out[-1] != name:
            out.append(name)
    return out


def spoken(msgs: list[dict]) -> str:
    return "".join(m["serverContent"]["outputTranscription"]["text"] for m in msgs
                   if "outputTranscription" in m.get("serverContent", {}))


def is_turn_complete(m: dict) -> bool:
    return m.get("serverContent", {}).get("turnComplete") is True


async def quiet(ws, seconds: float) -> list[dict]:
    """Everything received within ``seconds`` (a model that must say nothing sends nothing)."""
    out = []
    try:
        while True:
            out.append(await recv_json(ws, seconds))
    except TimeoutError:
        return out


async def greeted(ws, model: str, **extra) -> None:
    await ws.send(setup(model, **extra))
    assert await recv_json(ws) == {"setupComplete": {}}
    await ws.send(GREET)
    await collect(ws, is_turn_complete)


def emulator(*steps: ToolCallStep, **scenario) -> GeminiEmulator:
    return GeminiEmulator(Scenario(tool_calls=list(steps), **{**FAST, **scenario}))


# ------------------------------------------------------------------------------ setup


REFUSED = [
    (M38, dict(generationConfig={"thinkingConfig": {"thinkingLevel": "low"}}),
     "thinking_level is not supported in gemini-3.8-live. Omit thinking_level (or thinking_config)."),
    (M38, dict(generationConfig={"thinkingConfig": {}}),
     "thinking_level is not supported in gemini-3.8-live. Omit thinking_level (or thinking_config)."),
    ("models/gemini-9-live", dict(generationConfig={"thinking_config": {"thinking_budget": 0}}),  # newest profile
     "thinking_level is not supported in gemini-9-live. Omit thinking_level (or thinking_config)."),
    (M38, dict(proactivity={"proactiveAudio": False}),
     "proactive_audio: false is not supported in gemini-3.8-live: proactive audio is always on. Omit proactivity."),
    (M38, dict(generationConfig={"enableAffectiveDialog": True}),
     "enable_affective_dialog is not supported in gemini-3.8-live. Remove enable_affective_dialog."),
    (M38ET, dict(tools=declare(end_call="BLOCKING")), INVALID_ARGUMENT_REASON),  # "async only"
    (M31, dict(tools=declare(lookup="NON_BLOCKING")), INVALID_ARGUMENT_REASON),  # synchronous only
    (M31, dict(generationConfig={"thinkingConfig": {"thinkingBudget": 128}}),
     "thinking_budget is not supported in gemini-3.1-flash-live-preview. Use thinking_level."),
    (M25, dict(generationConfig={"thinkingConfig": {"thinkingLevel": "low"}}),
     "thinking_level is not supported in gemini-2.5-flash-native-audio-preview-12-2025. Use thinking_budget."),
    (M38, dict(tools=declare(lookup="SOMETIMES")),
     "Invalid value at 'setup.tools[0].function_declarations[0].behavior' ('SOMETIMES')."),
]


@pytest.mark.parametrize("model, extra, reason", REFUSED)
def test_a_setup_field_the_model_does_not_take_closes_1007(model, extra, reason):
    async def go():
        async with emulator() as emu, connect(emu.url) as ws:
            await ws.send(setup(model, **extra))
            closed = await expect_close(ws)
            return closed.rcvd.code, closed.rcvd.reason, emu.sessions[0].profile

    code, got, _profile = run(go())
    assert (code, got) == (1007, reason)


ACCEPTED = [
    (M38, dict(proactivity={"proactiveAudio": True}, tools=declare(a=None, b="BLOCKING", c="NON_BLOCKING")),
     "gemini-3.8-live"),
    (M38ET, dict(generationConfig={"thinkingConfig": {"thinkingLevel": "high"}}, tools=declare(a="NON_BLOCKING")),
     "gemini-3.8-live-extended-thinking"),
    (M31, dict(generationConfig={"thinkingConfig": {"thinkingLevel": "minimal"}}, tools=declare(a=None)),
     "gemini-3.1-flash-live-preview"),
    (M25, dict(generationConfig={"thinkingConfig": {"thinkingBudget": 0}, "enableAffectiveDialog": True},
               proactivity={"proactiveAudio": False}, tools=declare(a="BLOCKING", b="NON_BLOCKING")),
     "gemini-2.5-flash-native-audio-preview-12-2025"),
    ("models/gemini-live-test", {}, "gemini-3.8-live"),  # an unknown name: the newest profile
]


@pytest.mark.parametrize("model, extra, family", ACCEPTED)
def test_what_each_model_takes_is_accepted(model, extra, family):
    async def go():
        async with emulator() as emu, connect(emu.url) as ws:
            await ws.send(setup(model, **extra))
            assert await recv_json(ws) == {"setupComplete": {}}
            return emu.sessions[0].profile

    assert run(go()) == family


@pytest.mark.parametrize("path_attr, version", [("url", "v1beta"), ("url_v1", "v1")])
def test_a_retired_model_is_not_found(path_attr, version):
    retired = [p for p in PROFILES if p.status == "retired"][0].names

    async def go(model):
        async with emulator() as emu, connect(getattr(emu, path_attr)) as ws:
            await ws.send(setup(f"models/{model}"))
            closed = await expect_close(ws)
            return closed.rcvd.code, closed.rcvd.reason

    for model in retired:
        assert run(go(model)) == (1008, f"models/{model} is not found for API version {version}, or is not "
                                        "supported for bidiGenerateContent.")


def test_a_vertex_only_model_is_not_found_on_the_gemini_api():
    async def go():
        async with emulator() as emu, connect(emu.url) as ws:
            await ws.send(setup("models/gemini-live-2.5-flash-native-audio"))
            closed = await expect_close(ws)
            return closed.rcvd.code, closed.rcvd.reason

    assert run(go()) == (1008, "models/gemini-live-2.5-flash-native-audio is not found for API version v1beta, "
                               "or is not supported for bidiGenerateContent.")


# ------------------------------------------------------------------------------ serverContent shape


@pytest.mark.parametrize("model, multi", [(M38, True), (M31, True), (M38ET, True), (M25, False)])
def test_audio_and_transcription_share_a_message_on_3x_only(model, multi):
    async def go():
        async with emulator() as emu, connect(emu.url) as ws:
            await ws.send(setup(model))
            await recv_json(ws)
            await ws.send(GREET)
            return await collect(ws, is_turn_complete)

    msgs = run(go())
    labels = [label(m) for m in msgs]
    assert spoken(msgs) == CLIPS["greeting"].text
    if multi:
        assert "text" not in labels and labels.count("audio+text") == 4
        assert set(labels[:-2]) == {"audio", "audio+text"} and labels[0] == "audio+text"
    else:
        assert "audio+text" not in labels and labels.count("text") == 4
    assert labels[-2:] == ["generationComplete", "turnComplete"]


# ------------------------------------------------------------------------------ non-blocking calls


def test_3_8_an_undeclared_tool_is_non_blocking_and_its_answer_comes_when_idle():
    step = ToolCallStep(after_turn=1, name="lookup", call_id="c1", then_clip="tool_ack")

    async def go():
        async with emulator(step) as emu, connect(emu.url) as ws:
            await greeted(ws, M38, tools=declare(lookup=None))
            await ws.send(text_turn("What's the market?"))
            first = await collect(ws, is_turn_complete)  # the model goes on without the answer
            await ws.send(answer("c1"))  # no scheduling: WHEN_IDLE, and the model is idle
            second = await collect(ws, is_turn_complete)
            return first, second, emu.sessions[0]

    first, second, s = run(go())
    assert first[0] == {"toolCall": {"functionCalls": [{"id": "c1", "name": "lookup", "args": {}}]}}
    assert squash(first) == ["toolCall", "audio+text", "audio", "audio+text", "audio", "audio+text", "audio",
                             "audio+text", "audio", "generationComplete", "turnComplete"]
    assert spoken(first) == CLIPS["tool_wait"].text
    assert spoken(second) == CLIPS["tool_ack"].text and "interrupted" not in squash(second)
    (result,) = s.async_results
    assert result == {"id": "c1", "name": "lookup", "scheduling": "WHEN_IDLE", "at": result["at"]}
    assert not s.tool_cancellations and [r.kind for r in s.replies] == ["greeting", "tool", "result"]


def test_3_8_when_idle_waits_for_the_reply_in_progress_and_interrupt_stops_it():
    async def go(scheduling):
        step = ToolCallStep(after_turn=1, name="lookup", call_id="c1", then_clip="tool_ack")
        async with emulator(step, pace=2.0, greeting="q_why_now") as emu, connect(emu.url) as ws:  # tool_wait: ~1 s
            await greeted(ws, M38)
            await ws.send(text_turn("What's the market?"))
            head = await collect(ws, lambda m: label(m).startswith("audio"))
            await ws.send(answer("c1", scheduling=scheduling))
            rest = await collect(ws, lambda m: is_turn_complete(m) and spoken([m]) == "", timeout=15)
            rest += await collect(ws, is_turn_complete, timeout=15) if scheduling == "WHEN_IDLE" else []
            return head + rest, emu.sessions[0]

    msgs, s = run(go("WHEN_IDLE"))
    labels = squash(msgs)
    assert "interrupted" not in labels and labels.count("turnComplete") == 2
    assert spoken(msgs) == CLIPS["tool_wait"].text + CLIPS["tool_ack"].text  # the whole line, then the answer
    assert s.interruptions == 0

    msgs, s = run(go("INTERRUPT"))
    labels = squash(msgs)
    assert labels.count("interrupted") == 1 and labels.count("turnComplete") == 1
    cut = labels.index("interrupted")
    assert "turnComplete" not in labels[:cut]  # the line was cut short ...
    whole = CLIPS["tool_wait"].text + CLIPS["tool_ack"].text
    assert spoken(msgs).endswith(CLIPS["tool_ack"].text) and len(spoken(msgs)) < len(whole)
    assert s.interruptions == 1 and s.replies[1].interrupted and s.replies[2].kind == "result"


def test_silent_answers_say_nothing():
    # while_running=None: the model goes on with its next question while the note is filed
    step = ToolCallStep(after_turn=1, name="save_note", call_id="n1", while_running=None)

    async def go():
        async with emulator(step) as emu, connect(emu.url) as ws:
            await greeted(ws, M38, tools=declare(save_note="NON_BLOCKING"))
            await ws.send(text_turn("Dentists."))
            first = await collect(ws, is_turn_complete)
            await ws.send(answer("n1", "save_note", "SILENT"))
            return first, await quiet(ws, 0.6), emu.sessions[0]

    first, after, s = run(go())
    assert label(first[0]) == "toolCall" and spoken(first) == CLIPS["q_customer"].text
    assert after == [] and s.async_results[0]["scheduling"] == "SILENT"


@pytest.mark.parametrize("model, waits", [(M38, True), (M25, False)])
def test_interrupt_while_the_caller_speaks(model, waits):
    """3.8 waits for the caller to finish, then answers first; 2.5 talks over them at once."""
    step = ToolCallStep(after_turn=1, name="lookup", call_id="c1", while_running="", then_clip="tool_ack")

    async def go():
        async with emulator(step, silence_duration_ms=400) as emu, connect(emu.url) as ws:
            await greeted(ws, model, tools=declare(lookup="NON_BLOCKING"))
            await ws.send(text_turn("What's the market?"))
            first = await collect(ws, is_turn_complete)  # the call, and nothing said
            speech = founder_pcm(2, trailing_silence_s=0.0)
            await send_audio(ws, speech[:32000])  # a second of the caller's voice: a turn is open
            await ws.send(answer("c1", scheduling="INTERRUPT"))
            during = await quiet(ws, 0.5)
            await send_audio(ws, speech[32000:] + b"\0" * 32000)  # the rest, then silence: the turn ends
            after = await collect(ws, lambda m: spoken([m]) == "" and is_turn_complete(m), timeout=15)
            after += await collect(ws, is_turn_complete, timeout=15) if waits else []
            return first, during, after, emu.sessions[0]

    first, during, after, s = run(go())
    assert squash(first) == ["toolCall", "turnComplete"]
    if waits:
        assert during == []
        assert spoken(after) == CLIPS["tool_ack"].text + CLIPS["q_customer"].text  # the answer first
    else:
        assert spoken(during + after).startswith(CLIPS["tool_ack"].text[:20])
        assert len(during) > 0 and s.turns[-1].end > s.replies[2].first_audio_at  # over the caller


def test_extended_thinking_speaks_its_own_filler_while_a_slow_tool_runs():
    step = ToolCallStep(after_turn=1, name="lookup", call_id="c1", while_running="", then_clip="tool_ack")

    async def go():
        async with emulator(step, model_filler_after_ms=300) as emu, connect(emu.url) as ws:
            await greeted(ws, M38ET, tools=declare(lookup="NON_BLOCKING"))
            await ws.send(text_turn("What's the market?"))
            first = await collect(ws, is_turn_complete)
            filler = await collect(ws, is_turn_complete)
            again = await quiet(ws, 0.6)  # once per call
            await ws.send(answer("c1"))
            return first, filler, again, await collect(ws, is_turn_complete), emu.sessions[0]

    first, filler, again, result, s = run(go())
    assert squash(first) == ["toolCall", "turnComplete"]
    assert spoken(filler) == CLIPS["tool_filler"].text and again == []
    assert spoken(result) == CLIPS["tool_ack"].text
    assert [r.kind for r in s.replies] == ["greeting", "tool", "filler", "result"]


def test_2_5_calls_block_unless_declared_non_blocking():
    async def go(tools):
        step = ToolCallStep(after_turn=1, name="lookup", call_id="c1")
        async with emulator(step) as emu, connect(emu.url) as ws:
            await greeted(ws, M25, tools=tools)
            await ws.send(text_turn("What's the market?"))
            return await collect(ws, lambda m: "toolCall" in m) + await quiet(ws, 0.4)

    assert squash(run(go(declare(lookup=None)))) == ["toolCall"]  # waits for the answer
    assert spoken(run(go(declare(lookup="NON_BLOCKING")))) == CLIPS["tool_wait"].text  # goes on


# ------------------------------------------------------------------------------ blocking calls


@pytest.mark.parametrize("how", ["speech", "context", "turn"])
def test_3_8_new_input_cancels_a_blocking_call_and_its_late_answer_is_ignored(how):
    step = ToolCallStep(after_turn=1, name="lookup", call_id="c1")

    async def go():
        async with emulator(step, silence_duration_ms=400) as emu, connect(emu.url) as ws:
            await greeted(ws, M38, tools=declare(lookup="BLOCKING"))
            await ws.send(text_turn("What's the market?"))
            assert squash(await collect(ws, lambda m: "toolCall" in m) + await quiet(ws, 0.3)) == ["toolCall"]
            if how == "speech":
                await send_audio(ws, founder_pcm(2, trailing_silence_s=0.0)[:16000])
            else:
                await ws.send(text_turn("Actually, never mind.", turn_complete=how == "turn"))
            cancelled = await collect(ws, lambda m: "toolCallCancellation" in m)
            await ws.send(answer("c1"))
            later = await quiet(ws, 0.5)
            return cancelled, later, emu.sessions[0]

    cancelled, later, s = run(go())
    assert cancelled == [{"toolCallCancellation": {"ids": ["c1"]}}]
    assert s.tool_cancellations == ["c1"] and s.ignored_tool_responses == ["c1"]
    if how == "turn":  # a new user turn: answered with the next question, not with the tool's line
        assert spoken(later) == CLIPS["q_customer"].text
    else:
        assert spoken(later) == ""


def test_3_1_waits_for_the_answer_whatever_the_caller_does_and_ignores_scheduling():
    step = ToolCallStep(after_turn=1, name="lookup", call_id="c1", then_clip="tool_ack")

    async def go():
        async with emulator(step, silence_duration_ms=400) as emu, connect(emu.url) as ws:
            await greeted(ws, M31, tools=declare(lookup=None))
            await ws.send(text_turn("What's the market?"))
            await collect(ws, lambda m: "toolCall" in m)
            await send_audio(ws, founder_pcm(2, trailing_silence_s=0.6))  # a whole caller turn meanwhile
            await ws.send(text_turn("Hello?"))
            meanwhile = await quiet(ws, 0.5)
            await ws.send(answer("c1", scheduling="SILENT"))  # ignored: calls are synchronous
            return meanwhile, await collect(ws, is_turn_complete), await quiet(ws, 0.5), emu.sessions[0]

    meanwhile, reply, after, s = run(go())
    assert meanwhile == [] and not s.tool_cancellations
    assert spoken(reply) == CLIPS["tool_ack"].text and after == []  # one answer for everything said
    assert s.async_results == [] and len(s.turns) == 1


def test_2_5_a_barge_in_cancels_a_blocking_call():
    step = ToolCallStep(after_turn=1, name="lookup", call_id="c1")

    async def go():
        async with emulator(step, silence_duration_ms=400) as emu, connect(emu.url) as ws:
            await greeted(ws, M25)
            await ws.send(text_turn("What's the market?"))
            await collect(ws, lambda m: "toolCall" in m)
            await send_audio(ws, founder_pcm(2, trailing_silence_s=0.0)[:16000])
            return await collect(ws, lambda m: "toolCallCancellation" in m)

    assert run(go())[-1] == {"toolCallCancellation": {"ids": ["c1"]}}


# ------------------------------------------------------------------------------ clientContent


@pytest.mark.parametrize("model, context_interrupts", [(M38, False), (M31, False), (M25, True)])
def test_what_client_content_interrupts(model, context_interrupts):
    async def go(turn_complete):
        async with emulator(pace=2.0, greeting="q_competition") as emu, connect(emu.url) as ws:  # ~1.7 s
            await ws.send(setup(model))
            await recv_json(ws)
            await ws.send(GREET)
            head = await collect(ws, lambda m: label(m).startswith("audio"))
            await ws.send(text_turn("[a note for the model]", turn_complete=turn_complete))
            rest = await collect(ws, is_turn_complete, timeout=15) if turn_complete or not context_interrupts \
                else await collect(ws, lambda m: "interrupted" in label(m)) + await quiet(ws, 0.5)
            return head + rest, emu.sessions[0]

    msgs, s = run(go(False))  # context: no answer; 2.5 stops talking, 3.x goes on
    labels = squash(msgs)
    if context_interrupts:
        assert "interrupted" in labels and "turnComplete" not in labels and s.interruptions == 1
    else:
        assert "interrupted" not in labels and spoken(msgs) == CLIPS["q_competition"].text
    assert len(s.replies) == 1

    msgs, s = run(go(True))  # every model: interrupted, then the answer
    labels = squash(msgs)
    assert labels.count("interrupted") == 1 and spoken(msgs).endswith(CLIPS["q_customer"].text)
    assert [r.interrupted for r in s.replies] == [True, False]
