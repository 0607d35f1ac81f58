"""The hand-off state machine on a fake clock (call/handoff.py through the call core)."""

import json

from telephony_bridge.call import CallConfig, CallCore
from telephony_bridge.call.handoff import HandoffState, build_panel
from telephony_bridge.gemini import messages as gm
from telephony_bridge.persona import load_persona
from telephony_bridge.server import builtin_tool_registry
from telephony_bridge.settings import Settings


def _panel():
    persona = load_persona(None)
    base = gm.SetupConfig(model="models/gemini-3.8-live")
    return persona, build_panel(persona, base, builtin_tool_registry(Settings(gemini_api_key="k", public_url="http://127.0.0.1")), "gemini-3.8-live")


def _core(now=0.0):
    persona, panel = _panel()
    core = CallCore(panel.seat(panel.first).setup, CallConfig(greeting_prompt=None), now=now, panel=panel)
    core.gemini_connected(now)
    core.receive_gemini(json.dumps({"setupComplete": {}}), now)
    core.gemini_out.clear()
    return core


def _tool_call(core, now, to="product", cid="h1"):
    core.receive_gemini(json.dumps({"toolCall": {"functionCalls": [
        {"id": cid, "name": "hand_off", "args": {"to": to, "reason": "problem is clear"}}]}}), now)


def _audio(core, now):
    import base64
    pcm = base64.b64encode(b"\x00\x10" * 480).decode()
    core.receive_gemini(json.dumps({"serverContent": {"modelTurn": {"parts": [
        {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": pcm}}]}}}), now)


def test_panel_seats_have_their_voice_instruction_and_hand_off():
    persona, panel = _panel()
    assert [s.interviewer.voice for s in panel.seats.values()] == ["Charon", "Kore", "Puck"]
    sam = panel.seat("discovery").setup
    assert "You are Sam" in sam.system_instruction and "hand_off" in [d["name"] for d in sam.function_declarations]
    hand = next(d for d in sam.function_declarations if d["name"] == "hand_off")
    assert hand["parameters"]["properties"]["to"]["enum"] == ["product"]
    assert "hand_off" not in [d["name"] for d in panel.seat("gtm").setup.function_declarations]


def _frame(obj):
    return json.dumps(obj)


def test_hand_off_opens_the_next_session_at_once_and_holds_it_until_the_last_word():
    core = _core()
    core.turns_part.caller_speech(0.2)
    _tool_call(core, 1.0)
    answer = json.loads(core.gemini_out.popleft())["toolResponse"]["functionResponses"][0]
    assert answer["name"] == "hand_off" and answer["response"]["status"] == "ok"
    assert "Priya" in answer["response"]["message"]
    assert core.handoff.state is HandoffState.ANSWERED and not core.tool_requests  # never run as a tool
    assert core.handover_wanted(1.0)  # the caller has been quiet 0.8 s
    setup = json.loads(core.begin_handover(1.0))["setup"]
    assert setup["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"] == "Kore"
    assert "You are Priya" in json.dumps(setup["systemInstruction"])
    assert not (setup.get("sessionResumption") or {}).get("handle")
    assert core.outgoing_open and core.turns_part.speaker == "Sam"
    # The outgoing sentence comes on the retiring connection and plays.
    _outgoing_audio(core, 1.05)
    assert core.playout.queue
    # Caller audio while the new session opens is kept, then sent after the seed.
    core.link.caller_audio(b"\xff" * 160)
    assert not core.gemini_out
    core.receive_gemini(_frame({"setupComplete": {}}), 1.1)
    first = json.loads(core.gemini_out[0])["clientContent"]
    assert first["turnComplete"] is True and "Hand-off: Sam" in first["turns"][-1]["parts"][0]["text"]
    assert any("realtimeInput" in m for m in core.gemini_out)
    assert core.handoff.holding
    # Priya's first words arrive while Sam still speaks: held, not mixed into his sentence.
    _audio(core, 1.4)
    core.receive_gemini(_frame({"serverContent": {"outputTranscription": {"text": "Hi, I'm Priya"}}}), 1.4)
    assert len(core.handoff.held) == 2 and core.turns_part.speaker == "Sam"
    core.receive_outgoing(_frame({"serverContent": {"turnComplete": True}}), 2.0)
    assert not core.outgoing_open and not core.handoff.held and core.handoff.state is HandoffState.IDLE
    assert core.turns_part.speaker == "Priya" and core.handoff.current == "product"
    assert core.config.tool_names == frozenset({"save_note", "end_call"})
    assert core.counters["handoffs"] == 1
    assert core.handoff.log[-1]["t_done"] == 2.0


def _outgoing_audio(core, now):
    import base64
    pcm = base64.b64encode(b"\x00\x10" * 480).decode()
    core.receive_outgoing(_frame({"serverContent": {"modelTurn": {"parts": [
        {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": pcm}}]}}}), now)


def test_the_switch_waits_for_a_quiet_caller_and_is_forced_at_max_wait():
    core = _core()
    core.turns_part.caller_speech(0.9)
    _tool_call(core, 1.0)
    assert not core.handover_wanted(1.2)
    assert core.handover_wanted(1.55)  # quiet 0.6 s
    core2 = _core()
    _tool_call(core2, 1.0)
    core2.tools._running["x"] = (None, 1.0)  # a tool still running holds the switch back
    assert not core2.handover_wanted(5.0)
    assert core2.handover_wanted(1.0 + core2.handoff.cfg.max_wait_s)


def test_a_sentence_already_said_before_the_switch_leaves_nothing_to_wait_for():
    core = _core()
    core.turns_part.caller_speech(0.7)
    _tool_call(core, 1.0)
    _audio(core, 1.1)
    core.receive_gemini(_frame({"serverContent": {"turnComplete": True}}), 1.3)
    assert core.handover_wanted(1.4)
    core.begin_handover(1.4)
    assert not core.outgoing_open
    core.receive_gemini(_frame({"setupComplete": {}}), 1.5)
    assert core.handoff.state is HandoffState.IDLE and core.turns_part.speaker == "Priya"


def test_no_sentence_at_all_releases_the_next_interviewer_after_answer_wait():
    core = _core()
    _tool_call(core, 1.0)
    core.begin_handover(1.0)
    core.receive_gemini(_frame({"setupComplete": {}}), 1.1)
    _audio(core, 1.4)
    assert core.handoff.held and core.next_deadline() <= 1.0 + core.handoff.cfg.answer_wait_s
    core.tick(1.0 + core.handoff.cfg.answer_wait_s)
    assert not core.handoff.held and core.turns_part.speaker == "Priya" and core.playout.queue


def test_unknown_target_is_an_error_answer_and_nothing_happens():
    core = _core()
    _tool_call(core, 1.0, to="gtm")  # Sam may hand only to product
    answer = json.loads(core.gemini_out.popleft())["toolResponse"]["functionResponses"][0]
    assert answer["response"]["status"] == "invalid_argument"
    assert core.handoff.state is HandoffState.IDLE and not core.handover_wanted(10.0)


def test_a_failed_connection_leaves_the_outgoing_interviewer_in_charge():
    core = _core()
    _tool_call(core, 1.0)
    assert core.handover_wanted(1.0)
    core.begin_handover(1.0)
    core.handover_failed("refused", 1.2)
    assert core.handoff.current == "discovery" and core.turns_part.speaker == "Sam"
    assert core.session.setup.voice == "Charon" and core.session.can_send()
    assert core.handoff.log[-1]["ok"] is False and not core.outgoing_open


def test_the_seed_carries_the_answer_the_hand_off_came_right_after():
    # The caller's last answer is transcribed before the model calls hand_off, but the bridge
    # files caller text into the transcript only when the agent next speaks: the seed must not
    # lose it, or the next interviewer asks it again.
    core = _core()
    core.turns_part.caller_speech(0.2)
    core.receive_gemini(_frame({"serverContent": {"inputTranscription": {"text": "Small dental practices."}}}), 0.5)
    _tool_call(core, 1.0)
    core.gemini_out.clear()
    assert core.handover_wanted(1.0)
    core.begin_handover(1.0)
    core.receive_gemini(_frame({"setupComplete": {}}), 1.1)
    turns = json.loads(core.gemini_out[0])["clientContent"]["turns"]
    users = [t["parts"][0]["text"] for t in turns if t["role"] == "user"]
    assert users[-2] == "Small dental practices." and users[-1].startswith("[Hand-off")


def _voice(setup_message: str) -> str:
    setup = json.loads(setup_message)["setup"]
    return setup["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"]


def test_a_call_resumed_elsewhere_after_a_hand_off_goes_on_in_the_seat_its_handle_belongs_to():
    # Replica A: Sam hands the call to Priya; Priya's session sends a handle (stored with her seat).
    a = _core()
    _tool_call(a, 1.0)
    _audio(a, 1.02)  # Sam's one sentence, finished before the switch
    a.receive_gemini(_frame({"serverContent": {"turnComplete": True}}), 1.05)
    a.gemini_out.clear()
    assert a.handover_wanted(1.1)
    a.begin_handover(1.1)
    a.receive_gemini(_frame({"setupComplete": {}}), 1.2)
    assert not a.handoff.holding
    a.receive_gemini(_frame({"sessionResumptionUpdate": {"newHandle": "priya-1", "resumable": True}}), 2.0)
    assert (a.new_handle, a.seat) == ("priya-1", "product")
    # Replica B: the stream comes back (drain, a dead replica); the store gives the handle and seat.
    persona, panel = _panel()
    b = CallCore(panel.seat(panel.first).setup, CallConfig(greeting_prompt=None), now=5.0, panel=panel)
    b.resume_stored_session("priya-1", 5.0, seat="product")
    setup = b.gemini_connected(5.0)
    assert _voice(setup) == "Kore" and "You are Priya" in setup  # not Sam (Charon), the panel's first
    assert json.loads(setup)["setup"]["sessionResumption"] == {"handle": "priya-1"}
    assert b.seat == "product" and b.turns_part.speaker == "Priya"
    assert b.config.tool_names == panel.seat("product").tool_names
    assert "hand_off" in json.dumps(json.loads(setup)["setup"]["tools"])  # Priya can hand on to Leo


def test_a_stored_seat_this_panel_does_not_have_leaves_the_first_interviewer():
    persona, panel = _panel()
    b = CallCore(panel.seat(panel.first).setup, CallConfig(greeting_prompt=None), now=0.0, panel=panel)
    b.resume_stored_session("h", 0.0, seat="retired-seat")
    assert b.seat == "discovery" and _voice(b.gemini_connected(0.0)) == "Charon"
    assert any(e["kind"] == "resume_seat_unknown" for e in b.timeline)
