"""What each Live model family accepts and how it behaves: one table, looked up by model name.

The Live models differ in ways the bridge must respect, or the service refuses the setup (1007)
or the call misbehaves. Facts from Google's docs (checked 2026-11; sources in
``live-api-facts.md`` beside this module)::

    family               status          setup extras          tool behaviour       async  clientContent interrupts
    3.8 Live             stable          none                  NON_BLOCKING default  yes    only with turnComplete
    3.8 Live ext. think. stable          thinkingLevel         NON_BLOCKING only     yes    only with turnComplete
    3.1 Flash Live       legacy preview  thinkingLevel         blocking only         no     only with turnComplete
    2.5 native audio     preview         thinkingBudget,       BLOCKING default,     yes    always (API reference)
      (Gemini API)                       proactivity,          NON_BLOCKING opt-in
                                         affective dialog
    2.5 native audio     stable (GA)     as above              as above              yes    always
      (Vertex AI)

* 3.8 rejects ``thinkingConfig``; proactive audio is always on (``proactiveAudio: false`` is an
  error) and affective dialog is gone, so neither field is ever sent to it.
* On 3.8 a ``BLOCKING`` call is cancelled by the server when new input arrives while it runs, and a
  ``toolResponse`` with ``scheduling: INTERRUPT`` waits for the user to finish speaking.
* From 3.1 on one ``serverContent`` may carry several parts (audio and transcription together).

:func:`lookup` accepts a bare name (``gemini-3.8-live``), ``models/...`` and the Vertex forms
(``publishers/google/models/...``, ``projects/P/locations/L/publishers/google/models/...``). A
dated variant of a family (``gemini-3.8-live-001``) gets the family's profile. A name this table
does not know gets the newest profile (:data:`NEWEST`), with ``known=False`` so ``serve`` can say
so once. Pure and cached: :func:`telephony_bridge.gemini.messages.build_setup` calls it per setup.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

Status = Literal["stable", "preview", "legacy-preview", "retired"]
Backend = Literal["gemini-api", "vertex", "both"]

#: Optional setup fields (their wire names), accepted by some families only.
THINKING_BUDGET = "thinkingBudget"          # generationConfig.thinkingConfig.thinkingBudget (2.5)
THINKING_LEVEL = "thinkingLevel"            # generationConfig.thinkingConfig.thinkingLevel (3.x)
PROACTIVE_AUDIO = "proactiveAudio"          # setup.proactivity.proactiveAudio (2.5)
AFFECTIVE_DIALOG = "enableAffectiveDialog"  # generationConfig.enableAffectiveDialog (2.5)

BLOCKING = "BLOCKING"
NON_BLOCKING = "NON_BLOCKING"


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """One Live model family."""

    #: The family's model id (the canonical name), e.g. ``gemini-3.8-live``.
    family: str
    title: str
    status: Status
    backend: Backend
    #: Exact ids and id prefixes (dated variants) that belong to this family.
    names: tuple[str, ...]
    #: Optional setup fields (see the constants above) this family accepts.
    setup_fields: frozenset[str]
    #: ``functionDeclarations[].behavior`` values this family accepts (empty: never send one).
    declarable_behaviors: frozenset[str]
    #: What an undeclared function call is on this family.
    default_behavior: str
    #: The model keeps talking while a tool runs (NON_BLOCKING calls work).
    async_calls: bool
    #: ``toolResponse.functionResponses[].scheduling`` is honoured (non-blocking calls).
    scheduling: bool
    #: A BLOCKING call still running when new input arrives is cancelled by the server.
    blocking_cancelled_on_input: bool
    #: ``scheduling: INTERRUPT`` waits for the user to finish speaking (else it talks over them).
    interrupt_waits_for_user: bool
    #: Which ``clientContent`` interrupts a reply in progress: ``"always"`` (every message, the
    #: API reference's rule) or ``"turn-complete"`` (only one with ``turnComplete: true``; without
    #: it the server waits for more before answering).
    client_content_interrupts: Literal["always", "turn-complete"]
    #: One ``serverContent`` may carry several parts (audio and its transcription together).
    multi_part_server_content: bool
    #: The model speaks its own fillers while its (asynchronous) tools run ("Checking flight
    #: options now"): the bridge plays none over it.
    speaks_fillers: bool = False
    #: The replacement to suggest when this family is retired or a preview.
    successor: str | None = None

    def accepts(self, setup_field: str) -> bool:
        return setup_field in self.setup_fields

    def behavior_field(self, behavior: str | None) -> str | None:
        """The ``behavior`` to send for a tool that declares ``behavior``; None: send none.

        Sent only where the family accepts that value: 3.1 takes no ``behavior`` at all (its
        calls are blocking), 3.8 extended thinking no ``BLOCKING`` (its calls are all async).
        """
        if behavior is None or behavior not in self.declarable_behaviors:
            return None
        return behavior

    def effective_behavior(self, behavior: str | None) -> str:
        """What a tool declaring ``behavior`` actually is on this family."""
        sent = self.behavior_field(behavior)
        if sent is not None:
            return sent
        if behavior == NON_BLOCKING and not self.async_calls:
            return BLOCKING
        return self.default_behavior


_3X_SHARED = dict(
    declarable_behaviors=frozenset({BLOCKING, NON_BLOCKING}),
    default_behavior=NON_BLOCKING,
    async_calls=True,
    scheduling=True,
    blocking_cancelled_on_input=True,
    interrupt_waits_for_user=True,
    client_content_interrupts="turn-complete",
    multi_part_server_content=True,
)

GEMINI_3_8_LIVE = ModelProfile(
    family="gemini-3.8-live", title="Gemini 3.8 Live", status="stable", backend="both",
    names=("gemini-3.8-live",), setup_fields=frozenset(), **_3X_SHARED,  # type: ignore[arg-type]
)

GEMINI_3_8_LIVE_EXTENDED_THINKING = ModelProfile(
    family="gemini-3.8-live-extended-thinking", title="Gemini 3.8 Live Extended Thinking",
    status="stable", backend="both", names=("gemini-3.8-live-extended-thinking",),
    setup_fields=frozenset({THINKING_LEVEL}),
    **{**_3X_SHARED, "declarable_behaviors": frozenset({NON_BLOCKING}),  # "Async only"
       "blocking_cancelled_on_input": False, "speaks_fillers": True},  # type: ignore[arg-type]
)

GEMINI_3_1_FLASH_LIVE = ModelProfile(
    family="gemini-3.1-flash-live-preview", title="Gemini 3.1 Flash Live", status="legacy-preview",
    backend="gemini-api", names=("gemini-3.1-flash-live",), setup_fields=frozenset({THINKING_LEVEL}),
    declarable_behaviors=frozenset(), default_behavior=BLOCKING, async_calls=False, scheduling=False,
    blocking_cancelled_on_input=False, interrupt_waits_for_user=False,
    client_content_interrupts="turn-complete", multi_part_server_content=True,
    successor="gemini-3.8-live",
)

_2_5_SHARED = dict(
    setup_fields=frozenset({THINKING_BUDGET, PROACTIVE_AUDIO, AFFECTIVE_DIALOG}),
    declarable_behaviors=frozenset({BLOCKING, NON_BLOCKING}),
    default_behavior=BLOCKING,
    async_calls=True,
    scheduling=True,
    blocking_cancelled_on_input=False,
    interrupt_waits_for_user=False,
    client_content_interrupts="always",
    multi_part_server_content=False,
)

GEMINI_2_5_NATIVE_AUDIO = ModelProfile(
    family="gemini-2.5-flash-native-audio-preview-12-2025", title="Gemini 2.5 Flash native audio",
    status="preview", backend="gemini-api", names=("gemini-2.5-flash-native-audio",),
    successor="gemini-3.8-live", **_2_5_SHARED,  # type: ignore[arg-type]
)

VERTEX_2_5_NATIVE_AUDIO = ModelProfile(
    family="gemini-live-2.5-flash-native-audio", title="Gemini Live 2.5 Flash native audio (Vertex AI)",
    status="stable", backend="vertex",
    names=("gemini-live-2.5-flash-native-audio", "gemini-live-2.5-flash-preview-native-audio"),
    **_2_5_SHARED,  # type: ignore[arg-type]
)

#: Shut down 2025-12-09 (Gemini deprecations page): a setup naming them is refused.
RETIRED = ModelProfile(
    family="retired", title="a retired Live model", status="retired", backend="both",
    names=("gemini-2.0-flash-live-001", "gemini-live-2.5-flash-preview", "gemini-2.0-flash-exp"),
    successor="gemini-3.8-live", **_2_5_SHARED,  # type: ignore[arg-type]
)

#: Every profile, newest first. Lookup tries them in this order (longest names first within).
PROFILES: tuple[ModelProfile, ...] = (
    GEMINI_3_8_LIVE_EXTENDED_THINKING, GEMINI_3_8_LIVE, GEMINI_3_1_FLASH_LIVE,
    VERTEX_2_5_NATIVE_AUDIO, GEMINI_2_5_NATIVE_AUDIO, RETIRED,
)
#: What an unknown model name is treated as.
NEWEST = GEMINI_3_8_LIVE
#: The bridge's default model.
DEFAULT_MODEL = NEWEST.family

_VERTEX_PATH = re.compile(r"^(?:projects/[^/]+/locations/[^/]+/)?publishers/[^/]+/models/")


def bare_model(name: str) -> str:
    """``models/x``, ``publishers/google/models/x``, ``projects/p/locations/l/publishers/google/models/x`` → ``x``."""
    name = name.strip()
    m = _VERTEX_PATH.match(name)
    if m:
        return name[m.end():]
    return name.removeprefix("models/")


@dataclass(frozen=True, slots=True)
class Lookup:
    profile: ModelProfile
    #: The bare model id that was looked up.
    model: str
    #: False: the table does not know this name and ``profile`` is :data:`NEWEST`.
    known: bool


@functools.lru_cache(maxsize=64)
def lookup(model: str) -> Lookup:
    """The profile for ``model`` (any of the accepted name forms)."""
    bare = bare_model(model)
    for profile in PROFILES:
        for name in profile.names:
            if bare == name or bare.startswith(name + "-"):
                # "gemini-3.8-live-extended-thinking" must not fall to "gemini-3.8-live": the
                # longer family comes first in PROFILES, so the first match is the right one.
                return Lookup(profile, bare, True)
    return Lookup(NEWEST, bare, False)


def profile_for(model: str) -> ModelProfile:
    return lookup(model).profile


def startup_warning(model: str) -> str | None:
    """What ``serve`` should say about ``model`` once at start-up (None: nothing)."""
    found = lookup(model)
    p = found.profile
    if not found.known:
        return (f"GEMINI_MODEL {found.model!r} is not a Live model this version knows; its setup "
                f"follows the newest profile ({NEWEST.title}): no thinking config, tools declared "
                "BLOCKING/NON_BLOCKING explicitly")
    if p.status == "retired":
        return (f"GEMINI_MODEL {found.model!r} has been shut down: every setup will be refused. "
                f"Use {p.successor}")
    if p.status in ("preview", "legacy-preview"):
        return (f"GEMINI_MODEL {found.model!r} is a {p.status.replace('-', ' ')} model ({p.title}); "
                f"Live previews are being shut down. The stable default is {p.successor or NEWEST.family}")
    return None


def table_markdown() -> str:
    """The README's "Supported Gemini models" table, generated from :data:`PROFILES`."""
    rows = ["| model | status | backend | tools | notes |", "|---|---|---|---|---|"]
    for p in PROFILES:
        if p.status == "retired":
            continue
        if not p.async_calls:
            tools = "blocking only"
        elif BLOCKING not in p.declarable_behaviors:
            tools = "non-blocking only"
        else:
            tools = f"{p.default_behavior.lower().replace('_', '-')} by default, both declarable"
        extras = ", ".join(f"`{f}`" for f in sorted(p.setup_fields)) or "none (no thinking, proactivity, affective dialog)"
        notes = [f"optional setup: {extras}"]
        notes.append("clientContent interrupts only with turnComplete"
                     if p.client_content_interrupts == "turn-complete" else "any clientContent interrupts")
        if p.blocking_cancelled_on_input:
            notes.append("a blocking call is cancelled by new input")
        if p.multi_part_server_content:
            notes.append("audio and transcription in one serverContent")
        backend = {"both": "Gemini API, Vertex AI", "vertex": "Vertex AI", "gemini-api": "Gemini API"}[p.backend]
        rows.append(f"| `{p.family}` | {p.status} | {backend} | {tools} | {'; '.join(notes)} |")
    return "\n".join(rows)


__all__ = [
    "ModelProfile", "Lookup", "PROFILES", "NEWEST", "DEFAULT_MODEL", "lookup", "profile_for", "bare_model",
    "startup_warning", "table_markdown", "GEMINI_3_8_LIVE", "GEMINI_3_8_LIVE_EXTENDED_THINKING",
    "GEMINI_3_1_FLASH_LIVE", "GEMINI_2_5_NATIVE_AUDIO", "VERTEX_2_5_NATIVE_AUDIO", "RETIRED",
    "THINKING_BUDGET", "THINKING_LEVEL", "PROACTIVE_AUDIO", "AFFECTIVE_DIALOG", "BLOCKING", "NON_BLOCKING",
]
