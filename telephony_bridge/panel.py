"""An interview panel: several interviewers who hand the call to each other (``hand_off``).

A persona file may list ``[[interviewers]]``; each is one specialist with their own prebuilt
voice, instructions, topics, tools and the colleagues they may hand the call to::

    [[interviewers]]
    id = "discovery"                  # what hand_off(to=...) names
    name = "Sam"                      # how they introduce themselves; the transcript's speaker
    voice = "Charon"                  # a Live API prebuilt voice (checked against KNOWN_VOICES)
    topics = ["the problem", "the customer"]
    tools = ["save_note", "lookup_market"]   # omit: the persona's top-level tools
    hands_to = ["product", "gtm"]     # omit or []: this interviewer never hands off
    instructions = '''...'''

The first interviewer answers the call. The persona's top-level ``system_instruction`` is what
every interviewer shares (phone style, note taking); each interviewer's own instruction is
composed from it, their ``instructions``, their topics, who else is on the panel and when to
call ``hand_off`` (:meth:`Interviewer.system_instruction`). A file without ``[[interviewers]]``
is a single interviewer, exactly as before.

Errors are :class:`~telephony_bridge.errors.ConfigError` lines naming the file and the field:
an unknown voice, a ``hands_to`` naming no interviewer, a duplicate id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .persona import _Reader

HAND_OFF = "hand_off"

_ID = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_KEYS = {"id", "name", "voice", "instructions", "topics", "tools", "hands_to"}


@dataclass(frozen=True)
class Interviewer:
    id: str
    name: str
    voice: str
    instructions: str
    topics: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    hands_to: tuple[str, ...] = ()

    def system_instruction(self, shared: str, panel: tuple[Interviewer, ...]) -> str:
        """What this interviewer's session is told: shared rules, their role, the panel."""
        others = [p for p in panel if p.id != self.id]
        lines = [shared.strip(), "",
                 f"You are {self.name}, one of {len(panel)} interviewers on a panel. {self.instructions.strip()}"]
        if self.topics:
            lines.append(f"Your topics: {'; '.join(self.topics)}. Leave other topics to your colleagues.")
        if others:
            lines.append("Your colleagues: " + "; ".join(
                f"{p.name} ({p.id}) covers {', '.join(p.topics) or 'their own topics'}" for p in others) + ".")
        if self.hands_to:
            names = ", ".join(f"{p.id} ({p.name})" for p in panel if p.id in self.hands_to)
            lines.append(
                "Handing off: when your topics are covered, tell the founder in one short sentence "
                f"which colleague takes over, then call {HAND_OFF} with `to` one of {names} and a one-sentence "
                "`reason` saying what you learned and what is still open. Call it once; do not say "
                "goodbye for the whole panel.")
        lines.append(
            "If you are taking over from a colleague, the conversation so far is in your history: introduce "
            "yourself in one sentence, then ask about your own topics. Never ask again what was already "
            "answered.")
        return "\n".join(lines)


def parse_interviewers(raw: Any, r: _Reader, *, shared_tools: tuple[str, ...],
                       voices: tuple[str, ...], tool_pattern: re.Pattern[str]) -> tuple[Interviewer, ...]:
    """The ``[[interviewers]]`` array, validated (see the module docstring)."""
    if not isinstance(raw, list) or not raw or not all(isinstance(t, dict) for t in raw):
        raise r.fail("interviewers", "must be an array of tables ([[interviewers]])")
    panel: list[Interviewer] = []
    for i, table in enumerate(raw):
        p = f"interviewers[{i}]."
        r.unknown(table, _KEYS, p)
        ident = r.text(table, "id", p, required=True, max_len=32)
        assert ident is not None
        if not _ID.match(ident):
            raise r.fail(p + "id", f"must be a short lowercase name such as 'product' (got {ident!r:.40})")
        if any(x.id == ident for x in panel):
            raise r.fail(p + "id", f"repeats the interviewer id {ident!r}")
        name = r.text(table, "name", p, required=True, max_len=60)
        voice = r.text(table, "voice", p, required=True, max_len=64)
        if voice not in voices:
            raise r.fail(p + "voice", f"is not a Live API prebuilt voice (got {voice!r:.40}; "
                                      f"known: {', '.join(voices)})")
        instructions = r.text(table, "instructions", p, required=True)
        topics = _strings(table, "topics", p, r)
        tools = _strings(table, "tools", p, r) if "tools" in table else shared_tools
        for tool in tools:
            if not tool_pattern.match(tool) or tool == HAND_OFF:
                raise r.fail(p + "tools", f"has an invalid tool name {tool!r:.40} "
                                          f"({HAND_OFF} comes from hands_to)")
        hands_to = _strings(table, "hands_to", p, r)
        assert name is not None and voice is not None and instructions is not None
        panel.append(Interviewer(ident, name, voice, instructions, topics, tools, hands_to))
    ids = {x.id for x in panel}
    for i, x in enumerate(panel):
        for target in x.hands_to:
            if target not in ids:
                raise r.fail(f"interviewers[{i}].hands_to", f"names an unknown interviewer {target!r} "
                                                            f"(known: {', '.join(sorted(ids))})")
            if target == x.id:
                raise r.fail(f"interviewers[{i}].hands_to", "names the interviewer itself")
    return tuple(panel)


def _strings(table: dict[str, Any], key: str, prefix: str, r: _Reader) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise r.fail(prefix + key, "must be a list of non-empty strings")
    if len(set(value)) != len(value):
        raise r.fail(prefix + key, "lists a name twice")
    return tuple(v.strip() for v in value)


def hand_off_declaration(interviewer: Interviewer, panel: tuple[Interviewer, ...]) -> dict[str, Any]:
    """The ``hand_off`` function declaration for one interviewer (``to``: their allowed targets)."""
    targets = [p for p in panel if p.id in interviewer.hands_to]
    return {
        "name": HAND_OFF,
        "description": ("Hand the call to a colleague on the panel when your topics are covered. Say one "
                        "short sentence to the founder first. Colleagues: "
                        + "; ".join(f"{p.id} = {p.name}, {', '.join(p.topics)}" for p in targets) + "."),
        "parameters": {
            "type": "OBJECT",
            "properties": {
                "to": {"type": "STRING", "enum": [p.id for p in targets],
                       "description": "the id of the colleague who takes over"},
                "reason": {"type": "STRING",
                           "description": "one sentence: what you learned and what is still open"},
            },
            "required": ["to", "reason"],
        },
        # The model waits for the answer (the bridge tells it to say its one line), then is quiet.
        "behavior": "BLOCKING",
    }


__all__ = ["Interviewer", "HAND_OFF", "parse_interviewers", "hand_off_declaration"]
