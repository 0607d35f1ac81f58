"""The interviewer's persona: who the agent is, how it speaks and listens, which tools it has.

A persona is a small TOML file (parsed with :mod:`tomllib`); :func:`load_persona` reads one and
returns a frozen :class:`Persona`, or raises :class:`~telephony_bridge.errors.ConfigError` with a
one-line message naming the file and the offending field. ``load_persona(None)`` returns the
bundled default (``personas/default.toml``): a founder interviewer that validates a startup idea.

File format (every key except ``name`` and ``system_instruction`` is optional)::

    name = "Startup idea interviewer"
    voice = "Charon"                # a Gemini prebuilt voice name; omit for the model's default
    language = "en-US"              # BCP-47; omit to let the model follow the caller
    greeting = "The caller has just connected. Greet them ..."   # omit: wait for the caller
    tools = ["save_note", "lookup_market", "end_call"]
    system_instruction = '''...'''

    [turn_taking]                   # Gemini automaticActivityDetection
    silence_duration_ms = 2500      # founders think before they answer
    start_sensitivity = "START_SENSITIVITY_LOW"   # or START_SENSITIVITY_HIGH
    end_sensitivity = "END_SENSITIVITY_LOW"       # or END_SENSITIVITY_HIGH
    prefix_padding_ms = 100

A panel: ``[[interviewers]]`` tables (see :mod:`telephony_bridge.panel`) make the file an
interview panel whose interviewers hand the call to each other (``hand_off``); the top-level
``system_instruction`` is then what they share, and ``voice``/``tools`` default to the first
interviewer's. ``language = "auto"``: the caller's language is taken from their first transcribed
words for the bridge's own phrases (:mod:`telephony_bridge.tts_phrases`).

Unknown keys are errors (a typo must not silently fall back to a default). Tool names are only
checked for shape here; :meth:`telephony_bridge.tools.ToolRegistry.declarations` rejects names
the registry does not know.

Language: native-audio Live models choose their spoken language themselves and do not take
``speechConfig.languageCode`` (Vertex AI "Configure language and voice": "restrict the languages
it speaks in by specifying it in the system instructions"), so the default persona says its
language in the instruction, and :meth:`Persona.setup_fields` leaves the language code out
unless asked. ``language`` still picks the bridge's own pre-rendered phrases
(:attr:`Persona.filler_language`).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .panel import Interviewer, parse_interviewers

DEFAULT_PERSONA_PATH = Path(__file__).resolve().parent / "personas" / "default.toml"

#: Languages with bundled pre-rendered phrases (see :mod:`telephony_bridge.prompt_audio`).
FILLER_LANGUAGES = ("en", "es", "de", "fr")

START_SENSITIVITIES = ("START_SENSITIVITY_LOW", "START_SENSITIVITY_HIGH")
END_SENSITIVITIES = ("END_SENSITIVITY_LOW", "END_SENSITIVITY_HIGH")

#: The Live API's prebuilt voices at the time of writing (Vertex AI "Configure language and
#: voice"). Not enforced: new voices appear; :func:`load_persona` only checks the name's shape.
KNOWN_VOICES = (
    "Achernar", "Achird", "Algenib", "Algieba", "Alnilam", "Aoede", "Autonoe", "Callirrhoe",
    "Charon", "Despina", "Enceladus", "Erinome", "Fenrir", "Gacrux", "Iapetus", "Kore",
    "Laomedeia", "Leda", "Orus", "Pulcherrima", "Puck", "Rasalgethi", "Sadachbia", "Sadaltager",
    "Schedar", "Sulafat", "Umbriel", "Vindemiatrix", "Zephyr", "Zubenelgenubi",
)

_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
_VOICE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_TOOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")

_TOP_KEYS = {"name", "system_instruction", "voice", "language", "greeting", "tools", "turn_taking",
             "announce_recording", "interviewers"}
#: ``language = "auto"``: the caller's language comes from the first input transcription.
AUTO_LANGUAGE = "auto"
_TURN_KEYS = {"silence_duration_ms", "start_sensitivity", "end_sensitivity", "prefix_padding_ms"}


def filler_language_for(language: str | None) -> str:
    """The phrase-book language for a BCP-47 tag: its primary subtag when bundled, else ``en``."""
    if not language:
        return "en"
    primary = language.split("-", 1)[0].lower()
    return primary if primary in FILLER_LANGUAGES else "en"


@dataclass(frozen=True)
class Persona:
    name: str
    system_instruction: str
    voice: str | None = None
    language: str | None = None
    silence_duration_ms: int = 2500
    start_sensitivity: str | None = None
    end_sensitivity: str | None = None
    prefix_padding_ms: int | None = None
    greeting: str | None = None
    tools: tuple[str, ...] = ()
    #: Derived from ``language`` (``"en-US"`` → ``"en"``, unbundled → ``"en"``) when left empty.
    filler_language: str = ""
    #: The agent tells the caller, first thing, that the call is recorded (when it is: see recording/).
    announce_recording: bool = False
    #: The interview panel (see panel.py); empty: a single interviewer. With a panel, ``voice``,
    #: ``tools`` and ``system_instruction`` are the first interviewer's (who answers the call);
    #: ``shared_instruction`` is what every interviewer's instruction is composed from.
    panel: tuple[Interviewer, ...] = ()
    shared_instruction: str = ""

    def __post_init__(self) -> None:
        # A list passed by hand still gives an immutable, hashable persona.
        object.__setattr__(self, "tools", tuple(self.tools))
        if not self.filler_language:
            object.__setattr__(self, "filler_language", filler_language_for(self.language))

    def interviewer(self, ident: str) -> Interviewer | None:
        return next((p for p in self.panel if p.id == ident), None)

    def instruction_for(self, interviewer: Interviewer) -> str:
        return interviewer.system_instruction(self.shared_instruction, self.panel)

    def setup_fields(self, *, language_code: bool = False) -> dict[str, Any]:
        """Keyword arguments for :class:`telephony_bridge.gemini.messages.SetupConfig`.

        ``language`` is included only with ``language_code=True`` (half-cascade models);
        native-audio models take their language from the system instruction.
        """
        return {
            "system_instruction": self.system_instruction,
            "voice": self.voice,
            "language": self.language if language_code and self.language != AUTO_LANGUAGE else None,
            "silence_duration_ms": self.silence_duration_ms,
            "prefix_padding_ms": self.prefix_padding_ms,
            "start_sensitivity": self.start_sensitivity,
            "end_sensitivity": self.end_sensitivity,
        }


class _Reader:
    """Typed field access that turns every problem into one ConfigError line."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"persona {self.source}: field {key!r} {problem}")

    def text(self, table: dict[str, Any], key: str, prefix: str = "", *, required: bool = False,
             max_len: int = 20000) -> str | None:
        name = prefix + key
        value = table.get(key)
        if value is None:
            if required:
                raise self.fail(name, "is required")
            return None
        if not isinstance(value, str):
            raise self.fail(name, f"must be a string (got {type(value).__name__})")
        value = value.strip()
        if not value:
            if required:
                raise self.fail(name, "must not be empty")
            return None
        if len(value) > max_len:
            raise self.fail(name, f"is too long ({len(value)} characters, at most {max_len})")
        return value

    def integer(self, table: dict[str, Any], key: str, prefix: str, lo: int, hi: int) -> int | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(prefix + key, f"must be an integer (got {value!r:.30})")
        if not lo <= value <= hi:
            raise self.fail(prefix + key, f"must be between {lo} and {hi} (got {value})")
        return value

    def choice(self, table: dict[str, Any], key: str, prefix: str, allowed: tuple[str, ...]) -> str | None:
        value = self.text(table, key, prefix)
        if value is not None and value not in allowed:
            raise self.fail(prefix + key, f"must be one of {', '.join(allowed)} (got {value!r:.40})")
        return value

    def unknown(self, table: dict[str, Any], allowed: set[str], prefix: str = "") -> None:
        extra = sorted(set(table) - allowed)
        if extra:
            raise self.fail(prefix + extra[0], f"is not a persona field (known: {', '.join(sorted(allowed))})")


def _parse(data: dict[str, Any], source: str) -> Persona:
    r = _Reader(source)
    r.unknown(data, _TOP_KEYS)
    name = r.text(data, "name", required=True, max_len=200)
    instruction = r.text(data, "system_instruction", required=True)
    greeting = r.text(data, "greeting", max_len=2000)

    voice = r.text(data, "voice", max_len=64)
    if voice is not None and not _VOICE.match(voice):
        raise r.fail("voice", f"must be a prebuilt voice name such as 'Charon' (got {voice!r:.40})")

    language = r.text(data, "language", max_len=35)
    if language is not None and language != AUTO_LANGUAGE and not _LANGUAGE.match(language):
        raise r.fail("language", f"must be a BCP-47 tag such as 'en-US' (got {language!r:.40})")

    tools_raw = data.get("tools", [])
    if not isinstance(tools_raw, list):
        raise r.fail("tools", f"must be a list of tool names (got {type(tools_raw).__name__})")
    tools: list[str] = []
    for item in tools_raw:
        if not isinstance(item, str) or not _TOOL.match(item):
            raise r.fail("tools", f"has an invalid tool name {item!r:.40}")
        if item in tools:
            raise r.fail("tools", f"lists {item!r} twice")
        tools.append(item)

    turn = data.get("turn_taking", {})
    if not isinstance(turn, dict):
        raise r.fail("turn_taking", "must be a table ([turn_taking])")
    r.unknown(turn, _TURN_KEYS, "turn_taking.")
    p = "turn_taking."
    silence = r.integer(turn, "silence_duration_ms", p, 100, 10000)
    padding = r.integer(turn, "prefix_padding_ms", p, 0, 2000)
    start = r.choice(turn, "start_sensitivity", p, START_SENSITIVITIES)
    end = r.choice(turn, "end_sensitivity", p, END_SENSITIVITIES)

    announce = data.get("announce_recording", False)
    if not isinstance(announce, bool):
        raise r.fail("announce_recording", f"must be true or false (got {announce!r:.40})")

    assert name is not None and instruction is not None
    panel: tuple[Interviewer, ...] = ()
    shared = instruction
    if "interviewers" in data:
        panel = parse_interviewers(data["interviewers"], r, shared_tools=tuple(tools), voices=KNOWN_VOICES,
                                   tool_pattern=_TOOL)
        first = panel[0]
        voice, tools = first.voice, list(first.tools)
        instruction = first.system_instruction(shared, panel)
    return Persona(
        name=name,
        system_instruction=instruction,
        voice=voice,
        language=language,
        silence_duration_ms=2500 if silence is None else silence,
        start_sensitivity=start,
        end_sensitivity=end,
        prefix_padding_ms=padding,
        greeting=greeting,
        tools=tuple(tools),
        announce_recording=announce,
        panel=panel,
        shared_instruction=shared,
    )


def load_persona(path: str | None) -> Persona:
    """Read a persona TOML file (``None``: the bundled default). Raises only ConfigError."""
    file = DEFAULT_PERSONA_PATH if path is None else Path(path)
    source = str(file)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"persona {source}: cannot read the file ({exc.strerror or type(exc).__name__})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"persona {source}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"persona {source}: invalid TOML ({exc})") from None
    return _parse(data, source)


__all__ = ["Persona", "Interviewer", "AUTO_LANGUAGE", "load_persona", "filler_language_for", "DEFAULT_PERSONA_PATH", "FILLER_LANGUAGES",
           "KNOWN_VOICES", "START_SENSITIVITIES", "END_SENSITIVITIES"]
