"""The tool registry, run_tool's error handling, and the three built-in interview tools."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest

from telephony_bridge.errors import ConfigError
from telephony_bridge.gemini.messages import SetupConfig, build_setup, tool_response
from telephony_bridge.interview_tools import MARKET_LATENCY_S, NOTE_TOPICS, load_markets
from telephony_bridge.persona import load_persona
from telephony_bridge.tools import Behavior, Tool, ToolContext, ToolRegistry, default_registry, run_tool

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
    return Tool(name=kw.pop("name", "t"), description="test tool", handler=handler, **kw)


def is_error(result: dict) -> bool:
    return set(result) == {"error"} and isinstance(result["error"], str) and len(result["error"]) > 10


# ---------------------------------------------------------------------------- declarations


def test_default_registry_declarations_shape() -> None:
    reg = default_registry()
    assert reg.names() == ["save_note", "lookup_market", "end_call"]
    decls = reg.declarations()
    assert [d["name"] for d in decls] == reg.names()
    for d in decls:
        assert set(d) == {"name", "description", "parameters"}  # all BLOCKING: no "behavior"
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
    reg = default_registry()
    persona = load_persona(None)
    decls = reg.declarations(persona.tools)
    assert [d["name"] for d in decls] == list(persona.tools)
    setup = json.loads(build_setup(SetupConfig(model="m", function_declarations=decls)))
    assert setup["setup"]["tools"][0]["functionDeclarations"] == decls
    assert [d["name"] for d in reg.declarations(["end_call", "save_note", "end_call"])] == ["end_call", "save_note"]
    assert reg.declarations([]) == []


def test_unknown_enabled_tool_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'web_search'"):
        default_registry().declarations(["save_note", "web_search"])


def test_non_blocking_declaration() -> None:
    t = tool(behavior=Behavior.NON_BLOCKING)
    assert t.declaration()["behavior"] == "NON_BLOCKING"
    assert "behavior" not in tool().declaration()
    assert tool(behavior="NON_BLOCKING").behavior is Behavior.NON_BLOCKING  # type: ignore[arg-type]
    assert Behavior.BLOCKING == "BLOCKING"


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


def test_timeout_returns_error_dict() -> None:
    async def slow(args: dict, ctx: ToolContext) -> dict:
        await asyncio.sleep(30)
        return {}

    started = time.monotonic()
    result = run(run_tool(tool(slow, name="slow_tool", timeout_s=0.05), {}, make_ctx()))
    assert time.monotonic() - started < 2
    assert is_error(result)
    assert "slow_tool" in result["error"] and "0.05 seconds" in result["error"]


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_exception_returns_error_dict_without_internals() -> None:
    async def broken(args: dict, ctx: ToolContext) -> dict:
        raise RuntimeError("database password is hunter2")

    # A handler on the module's logger: works whether or not logging was set up to not propagate.
    capture, log = Capture(), logging.getLogger("telephony_bridge.tools")
    log.addHandler(capture)
    try:
        result = run(run_tool(tool(broken, name="broken"), {}, make_ctx()))
    finally:
        log.removeHandler(capture)
    assert is_error(result)
    assert "broken" in result["error"] and "RuntimeError" in result["error"]
    assert "hunter2" not in result["error"]  # the model (and the caller) never hear internals
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
def test_bad_arguments_return_error_dict(args: Any, problem: str) -> None:
    called: list[dict] = []

    async def handler(a: dict, ctx: ToolContext) -> dict:
        called.append(a)
        return {}

    result = run(run_tool(tool(handler, parameters=SCHEMA), args, make_ctx()))
    assert is_error(result)
    assert problem in result["error"]
    assert called == []  # the handler never sees bad arguments


def test_good_arguments_are_passed_and_integral_floats_become_ints() -> None:
    args = {"name": "n", "count": 3.0, "ratio": 2, "flag": False, "tags": ["x"], "kind": "a", "opt": None,
            "inner": {"x": 1.0}, "extra": "kept"}
    result = run(run_tool(tool(parameters=SCHEMA), args, make_ctx()))
    got = result["args"]
    assert got["count"] == 3 and isinstance(got["count"], int)
    assert got["inner"] == {"x": 1} and isinstance(got["inner"]["x"], int)
    assert got["extra"] == "kept" and got["opt"] is None
    assert args["count"] == 3.0  # the caller's dict is not mutated


def test_none_args_are_empty_args() -> None:
    assert run(run_tool(tool(), None, make_ctx())) == {"args": {}}  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [["a list"], {"x": object()}, {"x": float("nan")}, {"x": "y" * 40000}])
def test_unusable_results_become_error_dicts(bad: Any) -> None:
    async def handler(args: dict, ctx: ToolContext) -> Any:
        return bad

    result = run(run_tool(tool(handler), {}, make_ctx()))
    assert is_error(result)
    tool_response([{"id": "1", "name": "t", "response": result}])  # always sendable


# ------------------------------------------------------------------------------ built-ins


def test_save_note() -> None:
    reg = default_registry()
    ctx = make_ctx(clock=42.0)
    save = reg.get("save_note")
    assert save is not None and save.behavior is Behavior.BLOCKING
    r1 = run(run_tool(save, {"fact": "  Dental clinics lose ten slots a week.  ", "topic": "problem"}, ctx))
    r2 = run(run_tool(save, {"fact": "Clinics pay $200 a month.", "topic": "business_model"}, ctx))
    assert r1 == {"saved": True, "count": 1} and r2 == {"saved": True, "count": 2}
    assert ctx.notes == [
        {"topic": "problem", "fact": "Dental clinics lose ten slots a week.", "t": 42.0},
        {"topic": "business_model", "fact": "Clinics pay $200 a month.", "t": 42.0},
    ]
    assert is_error(run(run_tool(save, {"fact": "x", "topic": "weather"}, ctx)))
    assert is_error(run(run_tool(save, {"fact": "   ", "topic": "other"}, ctx)))
    assert len(ctx.notes) == 2
    long = run(run_tool(save, {"fact": "word " * 500, "topic": "other"}, ctx))
    assert long["saved"] and len(ctx.notes[-1]["fact"]) <= 500


def test_save_note_default_clock_is_wall_time() -> None:
    ctx = ToolContext(call_sid="CA1", notes=[], store=None, request_end_call=lambda r: None)
    run(run_tool(default_registry().get("save_note"), {"fact": "f", "topic": "other"}, ctx))  # type: ignore[arg-type]
    assert abs(ctx.notes[0]["t"] - time.time()) < 60


def test_end_call_requests_the_hang_up() -> None:
    end = default_registry().get("end_call")
    assert end is not None
    ended: list[str] = []
    assert run(run_tool(end, {"reason": "interview complete"}, make_ctx(ended))) == {"ending": True}
    assert run(run_tool(end, {}, make_ctx(ended))) == {"ending": True}
    assert ended == ["interview complete", "end_call"]


def test_lookup_market_found_after_its_latency() -> None:
    lookup = default_registry(market_latency_s=0.2).get("lookup_market")
    assert lookup is not None
    started = time.monotonic()
    result = run(run_tool(lookup, {"market": "dentist software"}, make_ctx()))
    assert time.monotonic() - started >= 0.19
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
    lookup = default_registry(market_latency_s=0).get("lookup_market")
    result = run(run_tool(lookup, {"market": query}, make_ctx()))  # type: ignore[arg-type]
    assert result["found"] is True and result["market"] == market


def test_lookup_market_unknown_gives_suggestions() -> None:
    lookup = default_registry(market_latency_s=0).get("lookup_market")
    unknown = run(run_tool(lookup, {"market": "quantum basket weaving for xyzzy"}, make_ctx()))  # type: ignore[arg-type]
    assert unknown["found"] is False and isinstance(unknown["suggestions"], list)
    near = run(run_tool(lookup, {"market": "solar energy"}, make_ctx()))  # type: ignore[arg-type]
    assert near == {"found": False, "query": "solar energy", "suggestions": ["Residential solar"],
                    "note": near["note"]}
    vague = run(run_tool(lookup, {"market": "software"}, make_ctx()))  # type: ignore[arg-type]
    assert vague["found"] is False and len(vague["suggestions"]) == 3


def test_lookup_market_default_latency_is_slow_but_within_timeout() -> None:
    lookup = default_registry().get("lookup_market")
    assert lookup is not None
    assert MARKET_LATENCY_S == 1.5
    assert lookup.timeout_s > MARKET_LATENCY_S


def test_market_data_set() -> None:
    meta, markets = load_markets()
    assert "illustrative" in meta["source"]
    assert 20 <= len(markets) <= 40
    names = [m["name"] for m in markets]
    assert len(set(names)) == len(names)
    for m in markets:
        assert isinstance(m["tam_usd"], int) and m["tam_usd"] > 0
        assert m["aliases"] and m["players"]
