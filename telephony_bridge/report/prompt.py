"""The ``generateContent`` request built from a call record, and the report read from its answer.

:func:`build_request` turns the call record (the transcript with who said what, the notes the
interviewer saved, the tool calls and their results) into one request body: a system
instruction, one user turn holding the interview, and ``generationConfig`` asking for JSON that
matches :data:`~.schema.REPORT_SCHEMA` (``responseMimeType: application/json`` +
``responseJsonSchema``). :func:`parse_answer` reads the service's answer: the first candidate's
text parts, as JSON, validated against the schema. Anything else is a :class:`~.schema.ReportError`
(``answer`` or ``schema``), never another exception: the answer is peer input.
"""

from __future__ import annotations

import json
from typing import Any

from .schema import REPORT_SCHEMA, ReportError, validate

SYSTEM_INSTRUCTION = (
    "You review a phone interview in which an AI interviewer tested a founder's startup idea. "
    "Write the report for the founder and the operator from what was said only: quote or "
    "paraphrase the founder, never invent facts. For each area (problem, customer, competition, "
    "business model, why now) say what the founder said and how solid it sounded "
    "(solid, plausible, thin, or not-discussed when it never came up). Then the strongest point, "
    "the biggest open question, a go / no-go / undecided leaning with reasons, and next steps."
)
#: Who said what, as the transcript's roles are named in the prompt.
SPEAKERS = {"caller": "Founder", "agent": "Interviewer"}
#: The transcript is cut (from the middle) past this many characters.
MAX_TRANSCRIPT_CHARS = 60_000


def transcript_lines(record: dict[str, Any]) -> list[str]:
    lines = []
    for turn in record.get("transcript") or []:
        if not isinstance(turn, dict):
            continue
        text = str(turn.get("text") or "").strip()
        if text:
            lines.append(f"{SPEAKERS.get(turn.get('role'), 'Unknown')}: {text}")
    return lines


def interview_text(record: dict[str, Any]) -> str:
    lines = transcript_lines(record)
    body = "\n".join(lines)
    if len(body) > MAX_TRANSCRIPT_CHARS:
        half = MAX_TRANSCRIPT_CHARS // 2
        body = body[:half] + "\n[... transcript shortened ...]\n" + body[-half:]
    parts = ["## Transcript", body or "(nothing was said)"]
    notes = record.get("notes") or []
    if notes:
        parts += ["## Notes the interviewer saved", *(f"- {json.dumps(n, ensure_ascii=False)}" for n in notes)]
    tools = record.get("tools") or []
    if tools:
        parts += ["## Tool calls and results",
                  *(f"- {json.dumps(t, ensure_ascii=False, default=str)[:2000]}" for t in tools)]
    return "\n".join(parts)


def build_request(record: dict[str, Any]) -> dict[str, Any]:
    """The ``generateContent`` body for ``record`` (a call record as the store keeps it)."""
    return {
        "systemInstruction": {"parts": [{"text": SYSTEM_INSTRUCTION}]},
        "contents": [{"role": "user", "parts": [{"text": interview_text(record)}]}],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseJsonSchema": REPORT_SCHEMA,
            "temperature": 0.2,
        },
    }


def parse_answer(raw: bytes | str) -> dict[str, Any]:
    """The validated report from a ``generateContent`` response body."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ReportError("answer", "the response is not JSON") from None
    if not isinstance(body, dict):
        raise ReportError("answer", "the response is not a JSON object")
    candidates = body.get("candidates")
    if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], dict):
        block = (body.get("promptFeedback") or {}).get("blockReason") if isinstance(body.get("promptFeedback"), dict) else None
        raise ReportError("answer", f"no candidate{f' (blocked: {str(block)[:40]})' if block else ''}",
                          retryable=block is None)
    first = candidates[0]
    parts = (first.get("content") or {}).get("parts") if isinstance(first.get("content"), dict) else None
    if not isinstance(parts, list):
        raise ReportError("answer", f"the candidate has no content (finishReason {str(first.get('finishReason'))[:30]})")
    text = "".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)
                   and not p.get("thought"))
    try:
        report = json.loads(text)
    except ValueError:
        raise ReportError("schema", "the candidate's text is not JSON") from None
    return validate(report)


__all__ = ["build_request", "parse_answer", "interview_text", "transcript_lines", "SYSTEM_INSTRUCTION", "SPEAKERS"]
