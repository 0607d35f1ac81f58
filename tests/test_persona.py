"""Persona files: the bundled default, validation errors as one ConfigError line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from telephony_bridge.errors import ConfigError
from telephony_bridge.gemini.messages import SetupConfig, build_setup
from telephony_bridge.persona import DEFAULT_PERSONA_PATH, Persona, filler_language_for, load_persona

MINIMAL = 'name = "Tester"\nsystem_instruction = "Be brief."\n'


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "persona.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_default_persona_is_the_founder_interviewer() -> None:
    p = load_persona(None)
    assert isinstance(p, Persona)
    assert p.language == "en-US" and p.filler_language == "en"
    assert p.voice == "Charon"
    assert p.silence_duration_ms == 2500
    assert p.tools == ("save_note", "lookup_market", "end_call")
    assert p.greeting and "greet" in p.greeting.lower()
    text = p.system_instruction.lower()
    for topic in ("problem", "customer", "competition", "business model", "why now", "one short question"):
        assert topic in text, topic
    for tool in p.tools:
        assert tool in p.system_instruction
    # End-of-call order: the goodbye is said before end_call.
    assert text.index("goodbye") < text.index("then call end_call")
    assert "never read out lists" in text


def test_default_persona_file_is_bundled() -> None:
    assert DEFAULT_PERSONA_PATH.is_file()
    assert load_persona(str(DEFAULT_PERSONA_PATH)) == load_persona(None)


def test_persona_is_frozen() -> None:
    p = load_persona(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.voice = "Puck"  # type: ignore[misc]


def test_minimal_persona_defaults(tmp_path: Path) -> None:
    p = load_persona(write(tmp_path, MINIMAL))
    assert p.name == "Tester" and p.system_instruction == "Be brief."
    assert p.voice is None and p.language is None and p.greeting is None
    assert p.silence_duration_ms == 2500
    assert p.start_sensitivity is None and p.end_sensitivity is None and p.prefix_padding_ms is None
    assert p.tools == () and p.filler_language == "en"


def test_full_persona(tmp_path: Path) -> None:
    p = load_persona(write(tmp_path, MINIMAL + """
voice = "Puck"
language = "es-ES"
greeting = "Saluda."
tools = ["save_note"]
[turn_taking]
silence_duration_ms = 1000
start_sensitivity = "START_SENSITIVITY_HIGH"
end_sensitivity = "END_SENSITIVITY_LOW"
prefix_padding_ms = 40
"""))
    assert (p.voice, p.language, p.filler_language, p.greeting) == ("Puck", "es-ES", "es", "Saluda.")
    assert p.silence_duration_ms == 1000 and p.prefix_padding_ms == 40
    assert p.start_sensitivity == "START_SENSITIVITY_HIGH" and p.end_sensitivity == "END_SENSITIVITY_LOW"
    assert p.tools == ("save_note",)


@pytest.mark.parametrize("language, expected", [
    ("en-US", "en"), ("en-GB", "en"), ("es-US", "es"), ("de-DE", "de"), ("DE", "de"), ("fr-FR", "fr"),
    ("ja-JP", "en"), ("pt-BR", "en"), (None, "en"), ("", "en"),
])
def test_filler_language(language: str | None, expected: str) -> None:
    assert filler_language_for(language) == expected
    assert Persona("n", "i", language=language).filler_language == expected


def test_setup_fields_feed_setup_config() -> None:
    p = load_persona(None)
    setup = build_setup(SetupConfig(model="m", **p.setup_fields()))
    assert '"voiceName":"Charon"' in setup
    assert '"silenceDurationMs":2500' in setup
    assert '"endOfSpeechSensitivity":"END_SENSITIVITY_LOW"' in setup
    assert "languageCode" not in setup  # native-audio models take the language from the instruction
    assert '"languageCode":"en-US"' in build_setup(SetupConfig(model="m", **p.setup_fields(language_code=True)))


@pytest.mark.parametrize("text, field", [
    ('system_instruction = "x"\n', "name"),
    ('name = "x"\n', "system_instruction"),
    ('name = ""\nsystem_instruction = "x"\n', "name"),
    (MINIMAL + "voice = 3\n", "voice"),
    (MINIMAL + 'voice = "Char on"\n', "voice"),
    (MINIMAL + 'language = "english please"\n', "language"),
    (MINIMAL + 'tools = "save_note"\n', "tools"),
    (MINIMAL + 'tools = ["save note"]\n', "tools"),
    (MINIMAL + 'tools = ["a", "a"]\n', "tools"),
    (MINIMAL + "colour = 1\n", "colour"),
    (MINIMAL + "turn_taking = 5\n", "turn_taking"),
    (MINIMAL + '[turn_taking]\nsilence_duration_ms = "long"\n', "turn_taking.silence_duration_ms"),
    (MINIMAL + "[turn_taking]\nsilence_duration_ms = 99999\n", "turn_taking.silence_duration_ms"),
    (MINIMAL + "[turn_taking]\nsilence_duration_ms = true\n", "turn_taking.silence_duration_ms"),
    (MINIMAL + '[turn_taking]\nstart_sensitivity = "LOW"\n', "turn_taking.start_sensitivity"),
    (MINIMAL + '[turn_taking]\nend_sensitivity = "START_SENSITIVITY_LOW"\n', "turn_taking.end_sensitivity"),
    (MINIMAL + "[turn_taking]\nprefix_padding_ms = -1\n", "turn_taking.prefix_padding_ms"),
    (MINIMAL + "[turn_taking]\nsilence_ms = 100\n", "turn_taking.silence_ms"),
])
def test_bad_field_is_one_line_naming_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_persona(path)
    message = str(info.value)
    assert "\n" not in message
    assert path in message
    assert repr(field) in message


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, "name = \n")
    with pytest.raises(ConfigError, match="invalid TOML") as info:
        load_persona(path)
    assert path in str(info.value) and "\n" not in str(info.value)
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_persona(missing)
    assert missing in str(info.value)
    (tmp_path / "bin.toml").write_bytes(b"name = '\xff'\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_persona(str(tmp_path / "bin.toml"))


# ------------------------------------------------------------------------------- the panel

PANEL = '''
name = "Panel"
system_instruction = "Be brief."
tools = ["save_note"]
language = "auto"

[[interviewers]]
id = "a"
name = "Ana"
voice = "Kore"
topics = ["the problem"]
hands_to = ["b"]
instructions = "You open the call."

[[interviewers]]
id = "b"
name = "Ben"
voice = "Puck"
tools = ["save_note", "end_call"]
instructions = "You close it."
'''


def test_the_bundled_default_is_a_three_person_panel() -> None:
    p = load_persona(None)
    assert [(i.id, i.name, i.voice) for i in p.panel] == [
        ("discovery", "Sam", "Charon"), ("product", "Priya", "Kore"), ("gtm", "Leo", "Puck")]
    assert p.voice == "Charon" and "You are Sam" in p.system_instruction
    assert p.interviewer("product").hands_to == ("gtm", "discovery")
    assert "Priya (product)" in p.system_instruction  # each one knows the colleagues


def test_a_panel_file(tmp_path: Path) -> None:
    p = load_persona(write(tmp_path, PANEL))
    assert [i.id for i in p.panel] == ["a", "b"] and p.voice == "Kore" and p.tools == ("save_note",)
    assert p.panel[1].tools == ("save_note", "end_call") and p.panel[0].tools == ("save_note",)
    ben = p.instruction_for(p.panel[1])
    assert ben.startswith("Be brief.") and "You are Ben" in ben and "hand_off" not in ben
    assert "hand_off" in p.system_instruction  # Ana may hand over
    assert p.language == "auto" and p.setup_fields(language_code=True)["language"] is None


def test_a_single_interviewer_file_has_no_panel(tmp_path: Path) -> None:
    p = load_persona(write(tmp_path, 'name = "One"\nsystem_instruction = "Hi."\nvoice = "Zephyr"\n'))
    assert p.panel == () and p.voice == "Zephyr" and p.system_instruction == "Hi."


@pytest.mark.parametrize("change,field,words", [
    (('voice = "Puck"', 'voice = "Pluto"'), "interviewers[1].voice", "not a Live API prebuilt voice"),
    (('hands_to = ["b"]', 'hands_to = ["c"]'), "interviewers[0].hands_to", "unknown interviewer 'c'"),
    (('hands_to = ["b"]', 'hands_to = ["a"]'), "interviewers[0].hands_to", "the interviewer itself"),
    (('id = "b"', 'id = "a"'), "interviewers[1].id", "repeats"),
    (('name = "Ben"\n', ''), "interviewers[1].name", "is required"),
    (('tools = ["save_note", "end_call"]', 'tools = ["hand_off"]'), "interviewers[1].tools", "invalid tool name"),
    (('topics = ["the problem"]', 'topic = ["x"]'), "interviewers[0].topic", "not a persona field"),
])
def test_panel_errors_name_the_field(tmp_path: Path, change: tuple[str, str], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_persona(write(tmp_path, PANEL.replace(*change)))
    assert f"field {field!r}" in str(err.value) and words in str(err.value)
