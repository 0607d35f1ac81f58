"""The report's shape: one JSON Schema, sent to Gemini and checked on its answer (no I/O).

:data:`REPORT_SCHEMA` goes out as ``generationConfig.responseJsonSchema`` (with
``responseMimeType: application/json``); :func:`validate` checks what comes back against the
same schema (the subset it uses: object/array/string, ``enum``, ``required``,
``additionalProperties: false``, ``minItems``/``maxItems``, ``maxLength``) and raises
:class:`ReportError` (``kind="schema"``) naming the first path that is wrong. A report is never
trusted because the model was asked nicely: the schema is enforced on our side too.
"""

from __future__ import annotations

from typing import Any

#: How solid what the founder said sounded, per area.
SOLIDITY = ("solid", "plausible", "thin", "not-discussed")
#: The leaning.
VERDICTS = ("go", "no-go", "undecided")
#: The areas an interview covers, in order.
AREAS = ("problem", "customer", "competition", "business_model", "why_now")
MAX_TEXT = 600


def _text(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description, "maxLength": MAX_TEXT}


def _area(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"The {name.replace('_', ' ')}: what the founder said and how solid it sounded.",
        "properties": {
            "said": _text("What the founder said about it, in one or two sentences (their words where possible)."),
            "solidity": {"type": "string", "enum": list(SOLIDITY)},
        },
        "required": ["said", "solidity"],
        "additionalProperties": False,
    }


REPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "idea": _text("The idea in one sentence."),
        **{area: _area(area) for area in AREAS},
        "strongest_point": _text("The strongest point the founder made."),
        "open_question": _text("The biggest open question the interview left."),
        "leaning": {
            "type": "object",
            "properties": {
                "verdict": {"type": "string", "enum": list(VERDICTS)},
                "reasons": {"type": "array", "items": _text("One reason."), "minItems": 1, "maxItems": 5},
            },
            "required": ["verdict", "reasons"],
            "additionalProperties": False,
        },
        "next_steps": {"type": "array", "items": _text("One concrete next step."), "minItems": 1, "maxItems": 5},
    },
    "required": ["idea", *AREAS, "strongest_point", "open_question", "leaning", "next_steps"],
    "additionalProperties": False,
}


class ReportError(Exception):
    """The report could not be had. ``kind``: ``schema`` (the answer does not match),
    ``answer`` (no usable candidate: not JSON, blocked, empty), ``http`` (a status the service
    answered), ``timeout``, ``network``, ``auth`` (no credentials). ``retry_after_s``: what a
    429/503 asked for. ``retryable``: whether another attempt may help. Never holds a secret."""

    def __init__(self, kind: str, detail: str, *, retryable: bool = True, status: int | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s

    @property
    def reason(self) -> str:
        return str(self)[:300]


def validate(value: Any, schema: dict[str, Any] = REPORT_SCHEMA) -> dict[str, Any]:
    """``value`` if it matches ``schema``; else :class:`ReportError` ``schema``."""
    problem = _check(value, schema, "$")
    if problem is not None:
        raise ReportError("schema", problem)
    return value


def _check(value: Any, schema: dict[str, Any], path: str) -> str | None:
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return f"{path} is not an object"
        props = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                return f"{path}.{name} is missing"
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(props))
            if extra:
                return f"{path}.{str(extra[0])[:40]} is not in the schema"
        for name, sub in props.items():
            if name in value:
                problem = _check(value[name], sub, f"{path}.{name}")
                if problem:
                    return problem
        return None
    if kind == "array":
        if not isinstance(value, list):
            return f"{path} is not an array"
        if len(value) < schema.get("minItems", 0):
            return f"{path} has fewer than {schema['minItems']} items"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{path} has more than {schema['maxItems']} items"
        for i, item in enumerate(value):
            problem = _check(item, schema.get("items", {}), f"{path}[{i}]")
            if problem:
                return problem
        return None
    if kind == "string":
        if not isinstance(value, str):
            return f"{path} is not a string"
        if "enum" in schema and value not in schema["enum"]:
            return f"{path} is {value[:40]!r}, not one of {schema['enum']}"
        if len(value) > schema.get("maxLength", 1 << 30):
            return f"{path} is longer than {schema['maxLength']} characters"
        if not value.strip():
            return f"{path} is empty"
        return None
    return None


__all__ = ["REPORT_SCHEMA", "ReportError", "validate", "AREAS", "SOLIDITY", "VERDICTS"]
