"""Model profiles: lookup by any name form, and the setup each profile lets through."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from telephony_bridge.gemini import profiles
from telephony_bridge.gemini.messages import SetupConfig, build_setup, dropped_fields
from telephony_bridge.gemini.profiles import (
    GEMINI_2_5_NATIVE_AUDIO, GEMINI_3_1_FLASH_LIVE, GEMINI_3_8_LIVE, GEMINI_3_8_LIVE_EXTENDED_THINKING, NEWEST,
    RETIRED, VERTEX_2_5_NATIVE_AUDIO, bare_model, lookup, startup_warning, table_markdown,
)
from telephony_bridge.settings import DEFAULT_MODEL

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("name, profile", [
    ("gemini-3.8-live", GEMINI_3_8_LIVE),
    ("models/gemini-3.8-live", GEMINI_3_8_LIVE),
    ("gemini-3.8-live-001", GEMINI_3_8_LIVE),  # a dated variant of the family
    ("gemini-3.8-live-extended-thinking", GEMINI_3_8_LIVE_EXTENDED_THINKING),
    ("projects/my-proj-1/locations/global/publishers/google/models/gemini-3.8-live-extended-thinking",
     GEMINI_3_8_LIVE_EXTENDED_THINKING),
    ("gemini-3.1-flash-live-preview", GEMINI_3_1_FLASH_LIVE),
    ("gemini-2.5-flash-native-audio-preview-12-2025", GEMINI_2_5_NATIVE_AUDIO),
    ("models/gemini-2.5-flash-native-audio-preview-09-2025", GEMINI_2_5_NATIVE_AUDIO),
    ("gemini-live-2.5-flash-native-audio", VERTEX_2_5_NATIVE_AUDIO),
    ("publishers/google/models/gemini-live-2.5-flash-native-audio", VERTEX_2_5_NATIVE_AUDIO),
    ("projects/p-123456/locations/us-central1/publishers/google/models/gemini-live-2.5-flash-preview-native-audio-09-2025",
     VERTEX_2_5_NATIVE_AUDIO),
    ("gemini-live-2.5-flash-preview", RETIRED),
    ("gemini-2.0-flash-live-001", RETIRED),
])
def test_lookup_by_any_name_form(name: str, profile: profiles.ModelProfile) -> None:
    found = lookup(name)
    assert found.profile is profile and found.known


def test_unknown_names_get_the_newest_profile_and_a_warning() -> None:
    found = lookup("models/gemini-4-live-preview")
    assert found.profile is NEWEST is GEMINI_3_8_LIVE and not found.known and found.model == "gemini-4-live-preview"
    warning = startup_warning("gemini-4-live-preview")
    assert warning is not None and "gemini-4-live-preview" in warning and "newest profile" in warning
    assert startup_warning("gemini-3.8-live") is None
    assert "preview" in (startup_warning("gemini-3.1-flash-live-preview") or "")
    assert "gemini-3.8-live" in (startup_warning("gemini-2.5-flash-native-audio-preview-12-2025") or "")
    assert "shut down" in (startup_warning("gemini-2.0-flash-live-001") or "")


def test_bare_model() -> None:
    assert bare_model("  models/x ") == "x"
    assert bare_model("projects/p/locations/l/publishers/google/models/m") == "m"
    assert bare_model("publishers/google/models/m") == "m"
    assert bare_model("m") == "m"


def test_the_default_model_is_gemini_3_8_live() -> None:
    assert DEFAULT_MODEL == "gemini-3.8-live" == NEWEST.family
    assert GEMINI_3_8_LIVE.status == "stable" and GEMINI_3_8_LIVE.default_behavior == "NON_BLOCKING"


def test_the_facts_each_profile_carries() -> None:
    p38, et, p31, p25 = GEMINI_3_8_LIVE, GEMINI_3_8_LIVE_EXTENDED_THINKING, GEMINI_3_1_FLASH_LIVE, GEMINI_2_5_NATIVE_AUDIO
    assert p38.async_calls and p38.blocking_cancelled_on_input and p38.interrupt_waits_for_user
    assert p38.client_content_interrupts == "turn-complete" and p38.multi_part_server_content
    assert p38.setup_fields == frozenset()  # no thinking config, no proactivity, no affective dialog
    assert et.declarable_behaviors == frozenset({"NON_BLOCKING"}) and et.accepts(profiles.THINKING_LEVEL)
    assert not p31.async_calls and p31.declarable_behaviors == frozenset() and p31.status == "legacy-preview"
    assert p25.default_behavior == "BLOCKING" and p25.client_content_interrupts == "always"
    assert not p25.multi_part_server_content and p25.accepts(profiles.AFFECTIVE_DIALOG)
    assert VERTEX_2_5_NATIVE_AUDIO.status == "stable" and VERTEX_2_5_NATIVE_AUDIO.backend == "vertex"


def setup_of(model: str, **kw: object) -> dict:
    return json.loads(build_setup(SetupConfig(model=model, **kw)))["setup"]  # type: ignore[arg-type]


EXTRAS = dict(thinking_level="low", thinking_budget=0, proactive_audio=True, affective_dialog=True)


def test_3_8_gets_none_of_the_fields_it_rejects() -> None:
    setup = setup_of("gemini-3.8-live", **EXTRAS)
    assert "thinkingConfig" not in setup["generationConfig"]
    assert "enableAffectiveDialog" not in setup["generationConfig"] and "proactivity" not in setup
    assert setup["model"] == "models/gemini-3.8-live"
    cfg = SetupConfig(model="gemini-3.8-live", **EXTRAS)  # type: ignore[arg-type]
    assert dropped_fields(cfg) == ["thinkingLevel", "thinkingBudget", "proactiveAudio", "enableAffectiveDialog"]


def test_extended_thinking_and_3_1_take_a_thinking_level_only() -> None:
    for model in ("gemini-3.8-live-extended-thinking", "gemini-3.1-flash-live-preview"):
        setup = setup_of(model, **EXTRAS)
        assert setup["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "low"}
        assert "enableAffectiveDialog" not in setup["generationConfig"] and "proactivity" not in setup


def test_2_5_takes_a_budget_proactivity_and_affective_dialog() -> None:
    setup = setup_of("gemini-2.5-flash-native-audio-preview-12-2025", **EXTRAS)
    assert setup["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 0}
    assert setup["generationConfig"]["enableAffectiveDialog"] is True
    assert setup["proactivity"] == {"proactiveAudio": True}


def test_nothing_optional_is_sent_unless_asked() -> None:
    for profile in profiles.PROFILES:
        setup = setup_of(profile.names[0])
        assert set(setup["generationConfig"]) == {"responseModalities"}
        assert "proactivity" not in setup


def test_vertex_model_paths_pass_through_build_setup() -> None:
    path = "projects/my-proj-1/locations/global/publishers/google/models/gemini-3.8-live"
    assert setup_of(path)["model"] == path
    assert setup_of("publishers/google/models/gemini-3.8-live")["model"] == "publishers/google/models/gemini-3.8-live"


def test_readme_supported_models_table_is_generated_from_the_profiles() -> None:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"<!-- models-table:start -->\n(.*?)\n<!-- models-table:end -->", text, re.S)
    assert m, "README lacks the generated models table"
    assert m.group(1) == table_markdown(), "regenerate: python -c 'from telephony_bridge.gemini.profiles " \
                                           "import table_markdown; print(table_markdown())'"
    for profile in profiles.PROFILES:
        if profile.status != "retired":
            assert f"`{profile.family}`" in m.group(1)


def test_serve_warns_about_an_unknown_model_at_start_up() -> None:
    import io

    from telephony_bridge.server import warn_at_startup
    from telephony_bridge.settings import Settings

    base = dict(gemini_api_key="k" * 12, public_url="https://bridge.example.com", twilio_auth_token="t" * 16,
                stream_token_secret="s" * 32)
    out = io.StringIO()
    lines = warn_at_startup(Settings(gemini_model="gemini-9-live", **base), stream=out)  # type: ignore[arg-type]
    assert len(lines) == 1 and "gemini-9-live" in lines[0] and "newest profile" in out.getvalue()
    assert warn_at_startup(Settings(**base), stream=io.StringIO()) == []  # type: ignore[arg-type]
