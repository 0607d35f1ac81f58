"""The tool registry, run_tool's informative answers, and the three built-in interview tools."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from typing import Any

import pytest

from telephony_bridge.errors import ConfigError
from telephony_bridge.gemini.messages import SetupConfig, build_setup, tool_response
from telephony_bridge.gemini import profiles
from telephony_bridge.interview_tools import NOTE_TOPICS, builtin_registry, load_markets
from telephony_bridge.persona import load_persona
from telephony_bridge.tools import (
    STATUSES, Behavior, Scheduling, Tool, ToolContext, ToolRegistry, run_tool, unknown_tool, with_delay,
)

OBJ: dict[str, Any] = {"type": "OBJECT", "properties": {}, "required": []}


def make_ctx(ended: list[str] | None = None, clock: float = 12.5) -> ToolContext:
    sink = ended if ended is not None else []
    return ToolContext(call_sid="CA123", notes=[], store=None, request_end_call=sink.append,
                       clock=lambda: clock)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


async def ok(args: dict, ctx: ToolContext) -> dict:
    return {"args": args}


def tool(handler: Any = ok, **kw: Any) -> Tool:
    kw.setdefault("parameters", OBJ)
    kw.setdefault("behavior", Behavior.BLOCKING)
    return Tool(name=kw.pop("name", "t"), description="test tool", handler=handler, **kw)


def informative(result: dict) -> bool:
    """The shape every answer has: status, retryable, a sentence for the model, first."""
    return (list(result)[:3] == ["status", "retryable", "message"] and result["status"] in STATUSES
            and isinstance(result["retryable"], bool) and isinstance(result["message"], str)
            and len(result["message"]) > 10)


def is_error(result: dict, error: str | None = None) -> bool:
    """A failure: informative, not ok, with a reason code (what the call record's ``ok`` reads)."""
    return (informative(result) and result["status"] != "ok" and isinstance(result.get("error"), str)
            and (error is None or result["error"] == error))


# ---------------------------------------------------------------------------- declarations


def test_builtin_registry_declarations_shape() -> None:
    reg = builtin_registry()
    assert reg.names() == ["save_note", "lookup_market", "end_call"]
    decls = reg.declarations()
    assert [d["name"] for d in decls] == reg.names()
    # Every tool says what it is; none relies on a model's default (3.8: non-blocking, 2.5: blocking).
    assert [d["behavior"] for d in decls] == ["NON_BLOCKING", "NON_BLOCKING", "BLOCKING"]
    for d in decls:
        assert set(d) == {"name", "description", "parameters", "behavior"}
        assert d["description"].strip()
        params = d["parameters"]
        assert params["type"] == "OBJECT"
        assert set(params["required"]) <= set(params["properties"])
        for prop in params["properties"].values():
            assert prop["type"] in {"STRING", "INTEGER", "NUMBER", "BOOLEAN", "ARRAY", "OBJECT"}
    save = decls[0]["parameters"]
    assert save["required"] == ["fact", "topic"]
    assert save["properties"]["topic"]["enum"] == NOTE_TOPICS
    assert decls[1]["parameters"]["required"] == ["market"]
    assert decls[2]["parameters"]["required"] == []
    assert "goodbye" in decls[2]["description"].lower()
    json.dumps(decls)  # goes into setup as JSON


def test_declarations_for_enabled_tools_go_into_setup() -> None:
    reg = builtin_registry()
    persona = load_persona(None)
    decls = reg.declarations(persona.tools)
    assert [d["name"] for d in decls] == list(persona.tools)
    setup = json.loads(build_setup(SetupConfig(model="gemini-3.8-live", function_declarations=decls)))
    assert setup["setup"]["tools"][0]["functionDeclarations"] == decls
    assert [d["name"] for d in reg.declarations(["end_call", "save_note", "end_call"])] == ["end_call", "save_note"]
    assert reg.declarations([]) == []


def test_unknown_enabled_tool_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'web_search'"):
        builtin_registry().declarations(["save_note", "web_search"])


def test_behavior_is_always_declared_and_scheduling_goes_with_non_blocking() -> None:
    t = tool(behavior=Behavior.NON_BLOCKING, scheduling=Scheduling.WHEN_IDLE)
    assert t.declaration()["behavior"] == "NON_BLOCKING" and t.response_scheduling == "WHEN_IDLE"
    assert tool().declaration()["behavior"] == "BLOCKING" and tool().response_scheduling is None
    nb = tool(behavior="NON_BLOCKING", scheduling="SILENT")  # type: ignore[arg-type]
    assert nb.behavior is Behavior.NON_BLOCKING and nb.scheduling is Scheduling.SILENT
    assert Behavior.BLOCKING == "BLOCKING" and Scheduling.INTERRUPT == "INTERRUPT"
    with pytest.raises(TypeError):  # no behaviour: a model's default would decide
        Tool(name="t", description="d", parameters=OBJ, handler=ok)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="scheduled"):
        tool(behavior=Behavior.NON_BLOCKING)
    with pytest.raises(ValueError, match="NON_BLOCKING tools only"):
        tool(behavior=Behavior.BLOCKING, scheduling=Scheduling.SILENT)
    with pytest.raises(ValueError):
        tool(behavior=Behavior.NON_BLOCKING, scheduling="SOON")  # type: ignore[arg-type]


@pytest.mark.parametrize("model, sent", [
    ("gemini-3.8-live", ["NON_BLOCKING", "NON_BLOCKING", "BLOCKING"]),
    ("gemini-2.5-flash-native-audio-preview-12-2025", ["NON_BLOCKING", "NON_BLOCKING", "BLOCKING"]),
    ("projects/p/locations/global/publishers/google/models/gemini-live-2.5-flash-native-audio",
     ["NON_BLOCKING", "NON_BLOCKING", "BLOCKING"]),
    ("gemini-3.1-flash-live-preview", [None, None, None]),          # blocking only: no field at all
    ("gemini-3.8-live-extended-thinking", ["NON_BLOCKING", "NON_BLOCKING", None]),  # async only
])
def test_setup_sends_a_behavior_only_where_the_model_takes_it(model: str, sent: list[str | None]) -> None:
    decls = builtin_registry().declarations()
    setup = json.loads(build_setup(SetupConfig(model=model, function_declarations=decls)))
    got = setup["setup"]["tools"][0]["functionDeclarations"]
    assert [d.get("behavior") for d in got] == sent
    assert [d["name"] for d in got] == [d["name"] for d in decls]
    assert all(d["behavior"] for d in decls)  # the registry's declarations are untouched
    profile = profiles.profile_for(model)
    effective = [profile.effective_behavior(d["behavior"]) for d in decls]
    if model.startswith("gemini-3.1"):
        assert effective == ["BLOCKING"] * 3
    elif "extended-thinking" in model:
        assert effective == ["NON_BLOCKING"] * 3


@pytest.mark.parametrize("kw", [
    {"name": "has space"},
    {"name": "9starts_with_digit"},
    {"name": "x" * 65},
    {"timeout_s": 0},
    {"timeout_s": float("nan")},
    {"parameters": {"type": "STRING"}},
    {"parameters": {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}, "required": ["b"]}},
    {"parameters": {"type": "OBJECT", "properties": {"a": {"type": "TEXT"}}}},
    {"parameters": {"type": "OBJECT", "properties": {"a": {"type": "STRING", "enum": []}}}},
])
def test_tool_definitions_are_checked(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        tool(**kw)


def test_registry_basics() -> None:
    reg = ToolRegistry()
    a = tool(name="a")
    reg.register(a)
    assert reg.get("a") is a and reg.get("b") is None and "a" in reg and len(reg) == 1
    with pytest.raises(ValueError, match="already registered"):
        reg.register(tool(name="a"))


# -------------------------------------------------------------------------------- run_tool


def test_timeout_returns_an_informative_failure() -> None:
    async def slow(args: dict, ctx: ToolContext) -> dict:
        await asyncio.sleep(30)
        return {}

    started = time.monotonic()
    result = run(run_tool(tool(slow, name="slow_tool", timeout_s=0.05), {}, make_ctx()))
    assert time.monotonic() - started < 2
    assert is_error(result, "timeout") and result["status"] == "unavailable" and not result["retryable"]
    assert "slow_tool" in result["message"] and "0.05 seconds" in result["message"]


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_exception_returns_a_failure_without_internals() -> None:
    async def broken(args: dict, ctx: ToolContext) -> dict:
        raise RuntimeError("database password is hunter2")

    # A handler on the module's logger: works whether or not logging was set up to not propagate.
    capture, log = Capture(), logging.getLogger("telephony_bridge.tools")
    log.addHandler(capture)
    try:
        result = run(run_tool(tool(broken, name="broken"), {}, make_ctx()))
    finally:
        log.removeHandler(capture)
    assert is_error(result, "handler_failed") and result["status"] == "error" and not result["retryable"]
    assert "broken" in result["message"] and "RuntimeError" in result["message"]
    assert "hunter2" not in json.dumps(result)  # the model (and the caller) never hear internals
    assert any(r.exc_info for r in capture.records)  # but the log has the traceback


def test_outer_cancellation_propagates() -> None:
    started = asyncio.Event()
    finished: list[str] = []

    async def slow(args: dict, ctx: ToolContext) -> dict:
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            finished.append("cleaned up")
        return {}

    async def scenario() -> None:
        task = asyncio.create_task(run_tool(tool(slow), {}, make_ctx()))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())
    assert finished == ["cleaned up"]


SCHEMA: dict[str, Any] = {
    "type": "OBJECT",
    "properties": {
        "name": {"type": "STRING"},
        "count": {"type": "INTEGER"},
        "ratio": {"type": "NUMBER"},
        "flag": {"type": "BOOLEAN"},
        "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
        "kind": {"type": "STRING", "enum": ["a", "b"]},
        "opt": {"type": "STRING", "nullable": True},
        "inner": {"type": "OBJECT", "properties": {"x": {"type": "INTEGER"}}, "required": ["x"]},
    },
    "required": ["name", "count"],
}


@pytest.mark.parametrize("args, problem", [
    ({}, "name is required"),
    ({"name": "n"}, "count is required"),
    ({"name": None, "count": 1}, "name is required"),
    ({"name": 5, "count": 1}, "name must be a string"),
    ({"name": "n", "count": "3"}, "count must be an integer"),
    ({"name": "n", "count": 2.5}, "count must be an integer"),
    ({"name": "n", "count": True}, "count must be an integer"),
    ({"name": "n", "count": 1, "ratio": "x"}, "ratio must be a number"),
    ({"name": "n", "count": 1, "flag": "yes"}, "flag must be true or false"),
    ({"name": "n", "count": 1, "tags": "a"}, "tags must be a list"),
    ({"name": "n", "count": 1, "tags": ["a", 1]}, "tags[1] must be a string"),
    ({"name": "n", "count": 1, "kind": "c"}, "kind must be one of a, b"),
    ({"name": "n", "count": 1, "inner": {}}, "inner.x is required"),
    ({"name": "n", "count": 1, "inner": []}, "inner must be an object"),
    (["not", "an", "object"], "the arguments must be an object"),
])
def test_bad_arguments_return_a_retryable_failure(args: Any, problem: str) -> None:
    called: list[dict] = []

    async def handler(a: dict, ctx: ToolContext) -> dict:
        called.append(a)
        return {}

    result = run(run_tool(tool(handler, parameters=SCHEMA), args, make_ctx()))
    assert is_error(result, "bad_arguments") and result["status"] == "invalid_argument"
    assert result["retryable"] is True  # other arguments can help
    assert problem in result["message"]
    assert called == []  # the handler never sees bad arguments


def test_good_arguments_are_passed_and_integral_floats_become_ints() -> None:
    args = {"name": "n", "count": 3.0, "ratio": 2, "flag": False, "tags": ["x"], "kind": "a", "opt": None,
            "inner": {"x": 1.0}, "extra": "kept"}
    result = run(run_tool(tool(parameters=SCHEMA), args, make_ctx()))
    assert informative(result) and result["status"] == "ok" and "error" not in result
    got = result["args"]
    assert got["count"] == 3 and isinstance(got["count"], int)
    assert got["inner"] == {"x": 1} and isinstance(got["inner"]["x"], int)
    assert got["extra"] == "kept" and got["opt"] is None
    assert args["count"] == 3.0  # the caller's dict is not mutated


def test_none_args_are_empty_args() -> None:
    assert run(run_tool(tool(), None, make_ctx()))["args"] == {}  # type: ignore[arg-type]


def test_a_plain_result_gets_the_informative_shape_and_a_handlers_own_status_is_kept() -> None:
    plain = run(run_tool(tool(name="plain"), {}, make_ctx()))
    assert plain == {"status": "ok", "retryable": False, "message": "plain answered.", "args": {}}

    async def empty(args: dict, ctx: ToolContext) -> dict:
        return {"results": [], "message": "Nothing on that date; later dates may help.",
                "status": "no_results", "retryable": True}

    result = run(run_tool(tool(empty), {}, make_ctx()))
    assert informative(result) and list(result) == ["status", "retryable", "message", "results"]
    assert result["status"] == "no_results" and result["retryable"] is True and "error" not in result


def test_unknown_tool_answer() -> None:
    result = unknown_tool("web_search")
    assert is_error(result, "unknown_tool") and "web_search" in result["message"] and not result["retryable"]


@pytest.mark.parametrize("bad", [["a list"], {"x": object()}, {"x": float("nan")}, {"x": "y" * 40000},
                                 {"status": 3}, {"retryable": "no"}, {"message": None}])
def test_unusable_results_become_failures(bad: Any) -> None:
    async def handler(args: dict, ctx: ToolContext) -> Any:
        return bad

    result = run(run_tool(tool(handler), {}, make_ctx()))
    assert is_error(result)
    tool_response([{"id": "1", "name": "t", "response": result}])  # always sendable


# ------------------------------------------------------------------------------ built-ins


def test_save_note() -> None:
    reg = builtin_registry()
    ctx = make_ctx(clock=42.0)
    save = reg.get("save_note")
    # Bookkeeping in the background: the interview goes on, the model says nothing about it.
    assert save is not None and save.behavior is Behavior.NON_BLOCKING and save.scheduling is Scheduling.SILENT
    r1 = run(run_tool(save, {"fact": "  Dental clinics lose ten slots a week.  ", "topic": "problem"}, ctx))
    r2 = run(run_tool(save, {"fact": "Clinics pay $200 a month.", "topic": "business_model"}, ctx))
    assert informative(r1) and r1["status"] == "ok" and r1["count"] == 1 and "error" not in r1
    assert r2["count"] == 2 and "do not mention" in r2["message"].lower()
    assert ctx.notes == [
        {"topic": "problem", "fact": "Dental clinics lose ten slots a week.", "t": 42.0},
        {"topic": "business_model", "fact": "Clinics pay $200 a month.", "t": 42.0},
    ]
    assert is_error(run(run_tool(save, {"fact": "x", "topic": "weather"}, ctx)), "bad_arguments")
    empty = run(run_tool(save, {"fact": "   ", "topic": "other"}, ctx))
    assert is_error(empty, "empty_fact") and empty["retryable"] is True
    assert len(ctx.notes) == 2
    long = run(run_tool(save, {"fact": "word " * 500, "topic": "other"}, ctx))
    assert long["status"] == "ok" and len(ctx.notes[-1]["fact"]) <= 500
    ctx.notes.extend({"topic": "other", "fact": "f", "t": 0.0} for _ in range(300))
    full = run(run_tool(save, {"fact": "one more", "topic": "other"}, ctx))
    assert is_error(full, "notebook_full") and full["retryable"] is False


def test_save_note_default_clock_is_wall_time() -> None:
    ctx = ToolContext(call_sid="CA1", notes=[], store=None, request_end_call=lambda r: None)
    run(run_tool(builtin_registry().get("save_note"), {"fact": "f", "topic": "other"}, ctx))  # type: ignore[arg-type]
    assert abs(ctx.notes[0]["t"] - time.time()) < 60


def test_end_call_requests_the_hang_up() -> None:
    end = builtin_registry().get("end_call")
    # Blocking: the model waits after its goodbye instead of starting a sentence the hang-up cuts.
    assert end is not None and end.behavior is Behavior.BLOCKING and end.response_scheduling is None
    ended: list[str] = []
    first = run(run_tool(end, {"reason": "interview complete"}, make_ctx(ended)))
    assert informative(first) and first["status"] == "ok" and first["ending"] is True
    assert run(run_tool(end, {}, make_ctx(ended)))["ending"] is True
    assert ended == ["interview complete", "end_call"]


def test_lookup_market_answers_at_once_in_the_product() -> None:
    lookup = builtin_registry().get("lookup_market")
    # A lookup in the background: the agent keeps talking, the figures come at the next pause.
    assert lookup is not None and lookup.behavior is Behavior.NON_BLOCKING
    assert lookup.scheduling is Scheduling.WHEN_IDLE
    started = time.monotonic()
    result = run(run_tool(lookup, {"market": "dentist software"}, make_ctx()))
    assert time.monotonic() - started < 0.5  # no artificial sleep in the product
    assert informative(result) and result["status"] == "ok" and "error" not in result
    assert "2.5 billion" in result["message"]
    assert result["found"] is True and result["market"] == "Dental practice software"
    assert result["tam_usd"] == 2_500_000_000 and result["tam_spoken"] == "about 2.5 billion dollars"
    assert isinstance(result["growth_pct_per_year"], (int, float))
    assert result["notable_players"] and "illustrative" in result["source"]


@pytest.mark.parametrize("query, market", [
    ("Online language learning", "Online language learning"),
    ("restuarant POS", "Restaurant point of sale"),
    ("the telemedicine market", "Telehealth"),
    ("EV charging stations", "EV charging"),
    ("insurtech", "Insurance technology"),
])
def test_lookup_market_fuzzy_matches(query: str, market: str) -> None:
    lookup = builtin_registry().get("lookup_market")
    result = run(run_tool(lookup, {"market": query}, make_ctx()))  # type: ignore[arg-type]
    assert result["found"] is True and result["market"] == market


def test_lookup_market_unknown_gives_suggestions() -> None:
    lookup = builtin_registry().get("lookup_market")
    unknown = run(run_tool(lookup, {"market": "quantum basket weaving for xyzzy"}, make_ctx()))  # type: ignore[arg-type]
    # Not an error (the tool worked) and not retryable: 3.8 must not sweep through spellings.
    assert informative(unknown) and unknown["status"] == "no_results" and unknown["retryable"] is False
    assert unknown["found"] is False and isinstance(unknown["suggestions"], list) and "error" not in unknown
    assert "do not search again" in unknown["message"].lower()
    near = run(run_tool(lookup, {"market": "solar energy"}, make_ctx()))  # type: ignore[arg-type]
    assert near == {"status": "no_results", "retryable": False, "message": near["message"], "found": False,
                    "query": "solar energy", "suggestions": ["Residential solar"]}
    assert "Residential solar" in near["message"] and "ask the founder" in near["message"]
    vague = run(run_tool(lookup, {"market": "software"}, make_ctx()))  # type: ignore[arg-type]
    assert vague["found"] is False and len(vague["suggestions"]) == 3
    blank = run(run_tool(lookup, {"market": "   "}, make_ctx()))  # type: ignore[arg-type]
    assert is_error(blank, "empty_market") and blank["retryable"] is True


def test_with_delay_makes_a_slow_tool_for_the_demo() -> None:
    lookup = builtin_registry().get("lookup_market")
    assert lookup is not None
    slow = with_delay(lookup, 0.2)
    assert slow.timeout_s == lookup.timeout_s + 0.2 and slow.scheduling is lookup.scheduling
    assert with_delay(lookup, 0) is lookup
    started = time.monotonic()
    result = run(run_tool(slow, {"market": "dentist software"}, make_ctx()))
    assert time.monotonic() - started >= 0.19 and result["found"] is True
    with pytest.raises(ValueError):
        with_delay(lookup, -1)


def test_tools_module_imports_no_tool() -> None:
    # tools.py is the registry; the built-ins depend on it, never the other way round.
    code = ("import sys, telephony_bridge.tools; "
            "sys.exit('telephony_bridge.interview_tools' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_market_data_set() -> None:
    meta, markets = load_markets()
    assert "illustrative" in meta["source"]
    assert 20 <= len(markets) <= 40
    names = [m["name"] for m in markets]
    assert len(set(names)) == len(names)
    for m in markets:
        assert isinstance(m["tam_usd"], int) and m["tam_usd"] > 0
        assert m["aliases"] and m["players"]
