"""The tool registry: what the agent may call, how it is declared, and how a call is run.

A :class:`Tool` is a name, a description, parameters (JSON schema in the Gemini OpenAPI-subset
form, upper-case types: ``{"type": "OBJECT", "properties": {...}, "required": [...]}``), an
async handler, a timeout, and an explicit behaviour: every tool says whether it is ``BLOCKING``
(the model waits for the answer) or ``NON_BLOCKING`` (the model keeps talking while it runs; the
answer is then delivered with the tool's :class:`Scheduling`). Gemini 3.8 Live makes undeclared
calls non-blocking while 2.5 makes them blocking, so no tool relies on a model's default.
:meth:`Tool.declaration` is one ``setup.tools[].functionDeclarations`` entry with its
``behavior``; :func:`telephony_bridge.gemini.messages.build_setup` drops the field for a model
whose profile does not take it (3.1 Flash Live: blocking only; 3.8 extended thinking: async only).

:func:`run_tool` is the only way a handler runs: it checks the arguments against the schema, runs
the handler under the tool's timeout and always returns a JSON-serialisable dict in the
*informative* shape Google's 3.8 guide asks for (given an empty or ambiguous answer, 3.8 re-calls
a tool two to five times in one turn)::

    {"status": "ok" | "no_results" | "invalid_argument" | "unavailable" | "error",
     "retryable": bool,        # would calling again (with other arguments) help?
     "message": "...",         # one sentence for the model: what happened, what to do now
     "error": "<reason code>", # failures only (bad_arguments, timeout, handler_failed, ...)
     ...}                      # the tool's own fields

It never raises, except :class:`asyncio.CancelledError` when the caller cancels the task
(``toolCallCancellation``, end of call). ``"error"`` is present exactly when the tool did not do
its job, which is what the call record's ``ok`` reads.

Who runs it: the call adapter starts one task per function call (never on the receive loop) and
sends the result with the call's id and :attr:`Tool.response_scheduling`. This module knows no
tool: the built-ins live in :mod:`telephony_bridge.interview_tools` and the server registers them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .log import log_event

if TYPE_CHECKING:
    from .store import CallStore

logger = logging.getLogger("telephony_bridge.tools")

#: Gemini function names: start with a letter or underscore; letters, digits, _ . - ; at most 64.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_TYPES = {"OBJECT", "STRING", "INTEGER", "NUMBER", "BOOLEAN", "ARRAY"}
#: Largest handler result sent back to the model (a toolResponse is part of the context).
MAX_RESULT_CHARS = 32 * 1024


class Behavior(str, enum.Enum):
    """``FunctionDeclaration.behavior``. NON_BLOCKING lets the model keep talking while the tool
    runs (2.5 and 3.8 Live; 3.1 Flash Live is blocking only, 3.8 extended thinking async only)."""

    BLOCKING = "BLOCKING"
    NON_BLOCKING = "NON_BLOCKING"


class Scheduling(str, enum.Enum):
    """``FunctionResponse.scheduling``: how a NON_BLOCKING call's answer enters the conversation
    (ignored for blocking calls). On 3.8, INTERRUPT waits for the user to finish speaking."""

    #: Add to the context only; the model says nothing about it unless it comes up.
    SILENT = "SILENT"
    #: Add to the context and speak about it once the model is idle (no talking over anyone).
    WHEN_IDLE = "WHEN_IDLE"
    #: Stop what the model is saying and speak about it now.
    INTERRUPT = "INTERRUPT"


@dataclass(frozen=True)
class ToolContext:
    """What a handler may touch: the call's identity, its notes, the store, and the hang-up."""

    call_sid: str
    notes: list[dict]
    store: "CallStore | None"
    #: Ask the bridge to end the call once the agent's goodbye has been heard.
    request_end_call: Callable[[str], None]
    #: Timestamps for what handlers record (``save_note``'s ``t``). The call core can pass a
    #: call-relative clock; the default is wall-clock seconds since the epoch.
    clock: Callable[[], float] = time.time


Handler = Callable[[dict, ToolContext], Awaitable[dict]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any] = field(compare=False)
    handler: Handler = field(compare=False)
    timeout_s: float = 5.0
    #: Required: BLOCKING or NON_BLOCKING, never the model's default.
    behavior: Behavior = field(kw_only=True)
    #: How a NON_BLOCKING call's answer is delivered (required for those; None for BLOCKING).
    scheduling: Scheduling | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"tool name {self.name!r} is not a valid Gemini function name")
        if not self.description.strip():
            raise ValueError(f"tool {self.name}: description must not be empty")
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise ValueError(f"tool {self.name}: timeout_s must be a positive number")
        object.__setattr__(self, "behavior", Behavior(self.behavior))
        if self.behavior is Behavior.NON_BLOCKING:
            if self.scheduling is None:
                raise ValueError(f"tool {self.name}: a NON_BLOCKING tool must say how its answer is "
                                 "scheduled (SILENT, WHEN_IDLE or INTERRUPT)")
            object.__setattr__(self, "scheduling", Scheduling(self.scheduling))
        elif self.scheduling is not None:
            raise ValueError(f"tool {self.name}: scheduling applies to NON_BLOCKING tools only")
        _check_schema(self.parameters, f"tool {self.name}: parameters")
        if str(self.parameters.get("type", "")).upper() != "OBJECT":
            raise ValueError(f"tool {self.name}: parameters must be an OBJECT schema")

    def declaration(self) -> dict[str, Any]:
        """One ``functionDeclarations`` entry, its ``behavior`` always explicit."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "behavior": self.behavior.value,
        }

    @property
    def response_scheduling(self) -> str | None:
        """The ``scheduling`` of this tool's ``functionResponses`` entry (None for BLOCKING)."""
        return self.scheduling.value if self.scheduling is not None else None


def _check_schema(schema: Any, where: str) -> None:
    """A schema a programmer wrote: wrong shapes are bugs, raised at registration time."""
    if not isinstance(schema, dict):
        raise ValueError(f"{where} must be a dict")
    kind = str(schema.get("type", "")).upper()
    if kind not in _TYPES:
        raise ValueError(f"{where}: unknown type {schema.get('type')!r}")
    if kind == "OBJECT":
        props = schema.get("properties", {})
        if not isinstance(props, dict):
            raise ValueError(f"{where}: properties must be a dict")
        for key, sub in props.items():
            _check_schema(sub, f"{where}.{key}")
        required = schema.get("required", [])
        if not isinstance(required, list) or any(r not in props for r in required):
            raise ValueError(f"{where}: required must list declared properties")
    elif kind == "ARRAY" and "items" in schema:
        _check_schema(schema["items"], f"{where}[]")
    enum_values = schema.get("enum")
    if enum_values is not None and (not isinstance(enum_values, list) or not enum_values):
        raise ValueError(f"{where}: enum must be a non-empty list")


class BadArguments(ValueError):
    """The model's arguments do not fit the tool's schema (reported back to the model)."""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _coerce(schema: dict[str, Any], value: Any, path: str) -> Any:
    """Check ``value`` against ``schema``; return it, with integral floats made ints for INTEGER
    (function-call args travel as a protobuf Struct, whose numbers are all doubles)."""
    kind = str(schema.get("type", "")).upper()
    label = path or "the arguments"
    if value is None:
        if schema.get("nullable"):
            return None
        raise BadArguments(f"{label} must not be null")
    if kind == "STRING":
        if not isinstance(value, str):
            raise BadArguments(f"{label} must be a string, not {_kind(value)}")
    elif kind == "INTEGER":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadArguments(f"{label} must be an integer, not {_kind(value)}")
    elif kind == "NUMBER":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise BadArguments(f"{label} must be a number, not {_kind(value)}")
    elif kind == "BOOLEAN":
        if not isinstance(value, bool):
            raise BadArguments(f"{label} must be true or false, not {_kind(value)}")
    elif kind == "ARRAY":
        if not isinstance(value, list):
            raise BadArguments(f"{label} must be a list, not {_kind(value)}")
        items = schema.get("items")
        if items is not None:
            value = [_coerce(items, v, f"{label}[{i}]") for i, v in enumerate(value)]
    elif kind == "OBJECT":
        if not isinstance(value, dict):
            raise BadArguments(f"{label} must be an object, not {_kind(value)}")
        props: dict[str, Any] = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value or (value[key] is None and not props.get(key, {}).get("nullable")):
                raise BadArguments(f"{_join(path, key)} is required")
        out = dict(value)  # keys the schema does not declare are passed through untouched
        for key, sub in props.items():
            if key in value:
                out[key] = _coerce(sub, value[key], _join(path, key))
        value = out
    enum_values = schema.get("enum")
    if enum_values is not None and value not in enum_values:
        raise BadArguments(f"{label} must be one of {', '.join(map(str, enum_values))}")
    return value


def check_args(tool: Tool, args: Any) -> dict[str, Any]:
    """The arguments, validated against ``tool.parameters``; raises :class:`BadArguments`."""
    if args is None:
        args = {}
    result = _coerce(tool.parameters, args, "")
    assert isinstance(result, dict)
    return result


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def declarations(self, enabled: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """``functionDeclarations`` for ``enabled`` (in that order; None: every tool).

        An enabled name the registry does not know is a configuration mistake (a persona
        naming a tool that does not exist): :class:`ConfigError`, at start-up, not mid-call.
        """
        if enabled is None:
            return [t.declaration() for t in self._tools.values()]
        names = list(dict.fromkeys(enabled))
        unknown = [n for n in names if n not in self._tools]
        if unknown:
            raise ConfigError(
                f"unknown tool {unknown[0]!r} enabled (known: {', '.join(self._tools) or 'none'})")
        return [self._tools[n].declaration() for n in names]


# ------------------------------------------------------------------ informative answers

#: ``status`` values (Google's 3.8 guide: "no_results", "invalid_argument", ...).
STATUSES = frozenset({"ok", "no_results", "invalid_argument", "unavailable", "error"})


def answer(message: str, **fields: Any) -> dict[str, Any]:
    """A successful answer: ``status`` ok, not retryable, ``message`` for the model."""
    return {"status": "ok", "retryable": False, "message": message, **fields}


def no_results(message: str, *, retryable: bool = False, **fields: Any) -> dict[str, Any]:
    """The tool worked and found nothing; ``retryable`` only when other arguments could help."""
    return {"status": "no_results", "retryable": retryable, "message": message, **fields}


def failure(status: str, error: str, message: str, *, retryable: bool = False, **fields: Any) -> dict[str, Any]:
    """The tool did not do its job: ``error`` is a short reason code, ``message`` what to do."""
    return {"status": status, "retryable": retryable, "message": message, "error": error, **fields}


def unknown_tool(name: str) -> dict[str, Any]:
    """The answer to a call of a tool that does not exist (a model hallucination)."""
    return failure("invalid_argument", "unknown_tool",
                   f"There is no tool named {name[:64]!r}. Do not call it again; carry on without it.")


def _informative(tool: Tool, result: dict[str, Any]) -> dict[str, Any] | None:
    """``result`` in the informative shape (status, retryable, message first); None if its
    own status fields have the wrong types."""
    status = result.get("status", "ok")
    retryable = result.get("retryable", False)
    message = result.get("message", f"{tool.name} answered.")
    if not (isinstance(status, str) and isinstance(retryable, bool) and isinstance(message, str)):
        return None
    return {"status": status, "retryable": retryable, "message": message,
            **{k: v for k, v in result.items() if k not in ("status", "retryable", "message")}}


async def run_tool(tool: Tool, args: dict, ctx: ToolContext) -> dict:
    """Run one call of ``tool``: validated args, the tool's timeout, always an informative dict.

    Raises nothing but :class:`asyncio.CancelledError` (the task was cancelled from outside).
    """
    started = time.perf_counter()
    outcome = "ok"
    try:
        try:
            checked = check_args(tool, args)
        except BadArguments as exc:
            outcome = "bad-args"
            return failure("invalid_argument", "bad_arguments",
                           f"{tool.name} was called with bad arguments: {exc}. Fix the arguments and call "
                           "it once more.", retryable=True)
        try:
            async with asyncio.timeout(tool.timeout_s):
                result = await tool.handler(checked, ctx)
        except TimeoutError:
            outcome = "timeout"
            return failure("unavailable", "timeout",
                           f"{tool.name} did not answer within {tool.timeout_s:g} seconds. Do not call it "
                           "again now; tell the caller it is unavailable and carry on without it.")
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception as exc:  # a handler bug must not end the call
            outcome = "exception"
            logger.warning("tool %s raised %s", tool.name, type(exc).__name__, exc_info=True)
            return failure("error", "handler_failed",
                           f"{tool.name} failed ({type(exc).__name__}). Do not call it again; tell the "
                           "caller it did not work and carry on without it.")
        shaped = _informative(tool, result) if isinstance(result, dict) else None
        if shaped is None:
            outcome = "bad-result"
            return failure("error", "bad_result", f"{tool.name} returned no usable result. Carry on without it.")
        try:
            encoded = json.dumps(shaped, allow_nan=False)
        except (TypeError, ValueError):
            outcome = "bad-result"
            return failure("error", "bad_result",
                           f"{tool.name} returned a result that could not be sent. Carry on without it.")
        if len(encoded) > MAX_RESULT_CHARS:
            outcome = "bad-result"
            return failure("error", "too_large", f"{tool.name} returned too much data. Carry on without it.")
        if shaped["status"] != "ok":
            outcome = shaped["status"]
        return shaped
    finally:
        log_event(logger, "tool.run", call_sid=ctx.call_sid, tool=tool.name, outcome=outcome,
                  ms=round((time.perf_counter() - started) * 1000, 1))


def with_delay(tool: Tool, delay_s: float) -> Tool:
    """``tool`` answering ``delay_s`` later: an artificial slow tool for the demo and tests
    (filler needs something to cover). The product's own registry never uses it."""
    if not (delay_s >= 0 and math.isfinite(delay_s)):
        raise ValueError("delay_s must be a non-negative number")
    if delay_s == 0:
        return tool
    inner = tool.handler

    async def delayed(args: dict, ctx: ToolContext) -> dict:
        await asyncio.sleep(delay_s)
        return await inner(args, ctx)

    return dataclasses.replace(tool, handler=delayed, timeout_s=tool.timeout_s + delay_s)


__all__ = ["Behavior", "Scheduling", "ToolContext", "Tool", "ToolRegistry", "run_tool", "check_args",
           "BadArguments", "answer", "no_results", "failure", "unknown_tool", "with_delay", "STATUSES"]
