"""The model named in ``setup``: which profile it is, what setup it refuses, how its tools behave.

The emulator behaves like the model the client asks for, read from the same table the bridge
builds its setups from (:mod:`telephony_bridge.gemini.profiles`; an unknown name is the newest
profile, as there). Pure functions, no I/O:

* :func:`resolve`: the profile, or the refusal of a model the service does not serve: a retired
  family (``profiles.RETIRED``), a family the other backend serves (``ModelProfile.backend``: the
  2.5 preview and 3.1 are Gemini API models, ``gemini-live-2.5-flash-native-audio`` a Vertex AI
  one) or one outside ``Scenario.known_models`` closes with 1008 and the service's words (Gemini
  API: "models/X is not found for API version v1beta, or is not supported for
  bidiGenerateContent."; Vertex AI: "Requested entity was not found."). On the Vertex AI path
  the model must be a publisher resource (``projects/P/locations/L/publishers/google/models/M``,
  or ``publishers/google/models/M`` in express mode): anything else is 1007.
* :func:`check_setup`: a setup field the family does not take closes with 1007 and a sentence in
  the service's manner (3.8: "thinking_level is not supported in gemini-3.8-live. Omit
  thinking_level (or thinking_config)."; ``proactiveAudio: false``, where proactive audio is
  always on; ``enableAffectiveDialog`` where it was removed; a ``behavior`` the family cannot
  declare: BLOCKING on 3.8 extended thinking, any on 3.1, "Request contains an invalid argument.").
* :func:`declared_behaviors` / :func:`behavior_of`: what a call of a tool is on this model, from
  its declaration (``ModelProfile.effective_behavior``); a tool the setup did not declare is the
  family's default.
* :func:`scheduling_of`: a ``functionResponses[]`` entry's ``scheduling`` (``WHEN_IDLE`` when
  absent, as documented), or None where the family ignores it (3.1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ...gemini import profiles
from ...gemini.profiles import BLOCKING, NON_BLOCKING, ModelProfile
from .faults import INVALID_ARGUMENT_REASON
from .wire import BadRequest

VERTEX_NOT_FOUND_REASON = "Requested entity was not found."
INVALID_RESOURCE_REASON = "Invalid resource field value in the request."
SCHEDULINGS = frozenset({"INTERRUPT", "WHEN_IDLE", "SILENT"})
DEFAULT_SCHEDULING = "WHEN_IDLE"

_VERTEX_MODEL = re.compile(r"^(?:projects/[^/]+/locations/[^/]+/)?publishers/google/models/[^/]+$")


def not_found(model: str, backend: str, api_version: str) -> BadRequest:
    """The service's close for a model it does not serve (1008)."""
    if backend == "vertex":
        return BadRequest(VERTEX_NOT_FOUND_REASON, 1008)
    bare = profiles.bare_model(model)
    return BadRequest(f"models/{bare} is not found for API version {api_version}, or is not supported "
                      "for bidiGenerateContent.", 1008)


def resolve(model: str, backend: str, api_version: str, known_models: Sequence[str] | None) -> ModelProfile:
    """The profile of ``model`` (a ``setup.model``), or the :class:`BadRequest` that refuses it."""
    if backend == "vertex" and not _VERTEX_MODEL.match(model.strip()):
        raise BadRequest(INVALID_RESOURCE_REASON, 1007)
    found = profiles.lookup(model)
    if found.profile.status == "retired" or found.profile.backend not in ("both", backend):
        raise not_found(model, backend, api_version)
    if known_models is not None and found.model not in {profiles.bare_model(m) for m in known_models}:
        raise not_found(model, backend, api_version)
    return found.profile


def check_setup(setup: dict[str, Any], profile: ModelProfile, model: str) -> None:
    """Refuse (1007) an optional field ``profile`` does not take. ``setup`` is normalised."""
    bare = profiles.bare_model(model)
    gc = setup.get("generationConfig") or {}
    thinking = gc.get("thinkingConfig")
    if thinking is not None:
        level_ok = profile.accepts(profiles.THINKING_LEVEL)
        budget_ok = profile.accepts(profiles.THINKING_BUDGET)
        if not (level_ok or budget_ok):
            raise BadRequest(f"thinking_level is not supported in {bare}. Omit thinking_level (or thinking_config).")
        if not isinstance(thinking, dict):
            raise BadRequest("Invalid value at 'setup.generation_config.thinking_config': expected an object.")
        if "thinkingLevel" in thinking and not level_ok:
            raise BadRequest(f"thinking_level is not supported in {bare}. Use thinking_budget.")
        if "thinkingBudget" in thinking and not budget_ok:
            raise BadRequest(f"thinking_budget is not supported in {bare}. Use thinking_level.")
    if gc.get("enableAffectiveDialog") is not None and not profile.accepts(profiles.AFFECTIVE_DIALOG):
        raise BadRequest(f"enable_affective_dialog is not supported in {bare}. Remove enable_affective_dialog.")
    proactivity = setup.get("proactivity")
    if isinstance(proactivity, dict) and proactivity.get("proactiveAudio") is False \
            and not profile.accepts(profiles.PROACTIVE_AUDIO):
        raise BadRequest(f"proactive_audio: false is not supported in {bare}: proactive audio is always on. "
                         "Omit proactivity.")
    for i, j, decl in _declarations(setup):
        behavior = decl.get("behavior")
        if behavior is None or behavior == "UNSPECIFIED":
            continue
        if behavior not in (BLOCKING, NON_BLOCKING):
            raise BadRequest(f"Invalid value at 'setup.tools[{i}].function_declarations[{j}].behavior' "
                             f"({str(behavior)[:30]!r}).")
        if behavior not in profile.declarable_behaviors:
            raise BadRequest(INVALID_ARGUMENT_REASON)


def _declarations(setup: dict[str, Any]) -> list[tuple[int, int, dict[str, Any]]]:
    out = []
    for i, tool in enumerate(setup.get("tools") or []):
        if not isinstance(tool, dict):
            raise BadRequest(f"Invalid value at 'setup.tools[{i}]': expected a Tool.")
        decls = tool.get("functionDeclarations") or []
        if not isinstance(decls, list):
            raise BadRequest(f"Invalid value at 'setup.tools[{i}].function_declarations': expected a list.")
        for j, decl in enumerate(decls):
            if not isinstance(decl, dict) or not isinstance(decl.get("name"), str):
                raise BadRequest(f"Invalid value at 'setup.tools[{i}].function_declarations[{j}]': needs a name.")
            out.append((i, j, decl))
    return out


def declared_behaviors(setup: dict[str, Any]) -> dict[str, str | None]:
    """Each declared function's ``behavior`` (None: declared without one)."""
    return {decl["name"]: decl.get("behavior") for _, _, decl in _declarations(setup)}


def behavior_of(profile: ModelProfile, declared: dict[str, str | None], name: str) -> str:
    """BLOCKING or NON_BLOCKING: what a call of ``name`` is on this model."""
    behavior = declared.get(name)
    return profile.effective_behavior(None if behavior == "UNSPECIFIED" else behavior)


def scheduling_of(profile: ModelProfile, response: dict[str, Any]) -> str | None:
    """How a non-blocking call's answer is delivered; None where the family ignores scheduling."""
    value = response.get("scheduling")
    if value is not None and value != "SCHEDULING_UNSPECIFIED" and value not in SCHEDULINGS:
        raise BadRequest(f"Invalid value at 'tool_response.function_responses.scheduling' ({str(value)[:30]!r}).")
    if not profile.scheduling:
        return None
    return value if value in SCHEDULINGS else DEFAULT_SCHEDULING


__all__ = [
    "resolve", "not_found", "check_setup", "declared_behaviors", "behavior_of", "scheduling_of",
    "VERTEX_NOT_FOUND_REASON", "INVALID_RESOURCE_REASON", "SCHEDULINGS", "DEFAULT_SCHEDULING",
]
