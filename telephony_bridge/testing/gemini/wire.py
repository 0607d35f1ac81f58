"""What is on the Live API wire, as the emulator reads and writes it (no I/O).

Client messages are proto JSON: ``lowerCamelCase`` or ``snake_case`` field names (both are
read; :func:`normalize` renames proto fields and leaves user data such as tool ``args``
alone), ``bytes`` fields in the standard or URL-safe base64 alphabet, padded or not
(:func:`b64decode_any`), audio ``mimeType`` ``audio/pcm;rate=N`` (:func:`audio_rate`).
:func:`validate_setup` checks the types the emulator relies on. A message the service would
refuse raises :class:`BadRequest`, which closes the connection with its code (1007 "Invalid
JSON payload", 1008 for a policy refusal). Also here: the output format (24 kHz PCM16), the
close-reason limit (123 bytes) and proto JSON ``Duration``.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

OUTPUT_RATE = 24000
OUTPUT_MIME = f"audio/pcm;rate={OUTPUT_RATE}"
#: Gemini counts audio at 32 tokens per second (used for the emulated usageMetadata).
AUDIO_TOKENS_PER_SECOND = 32


class BadRequest(Exception):
    """A client message the service would refuse; closes the connection with ``code``."""

    def __init__(self, reason: str, code: int = 1007) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


# Fields whose values are user data (not proto messages): their keys are never renamed.
_OPAQUE_KEYS = frozenset(
    {"args", "response", "parametersJsonSchema", "responseJsonSchema", "default", "example"}
)
# Fields that map user names to proto messages: keep the names, normalise the values.
_MAP_KEYS = frozenset({"properties"})


def _camel(key: str) -> str:
    if "_" not in key:
        return key
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def normalize(value: Any) -> Any:
    """Rename snake_case proto field names to lowerCamelCase, leaving user data alone."""
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = _camel(key) if isinstance(key, str) else key
        if name in _OPAQUE_KEYS:
            out[name] = item
        elif name in _MAP_KEYS and isinstance(item, dict):
            out[name] = {k: normalize(v) for k, v in item.items()}
        else:
            out[name] = normalize(item)
    return out


def b64decode_any(data: Any) -> bytes:
    """Decode proto JSON ``bytes``: standard or URL-safe alphabet, padded or not."""
    if not isinstance(data, str):
        raise BadRequest("Invalid value for bytes field: expected a base64 string.")
    s = "".join(data.split()).rstrip("=").replace("-", "+").replace("_", "/")
    if len(s) % 4 == 1:
        raise BadRequest("Invalid value for bytes field: bad base64 length.")
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("Invalid value for bytes field: not base64.") from None


_RATE_RE = re.compile(r"(?:^|;)\s*rate\s*=\s*([^;\s]+)", re.IGNORECASE)


def audio_rate(mime: Any) -> int | None:
    """Sample rate named by an ``audio/pcm;rate=N`` mimeType; ``None`` if it isn't PCM audio."""
    if mime is None:
        return 16000
    if not isinstance(mime, str):
        raise BadRequest("Invalid value for mimeType: expected a string.")
    base = mime.split(";", 1)[0].strip().lower()
    if base not in ("audio/pcm", "audio/l16", "audio/x-pcm"):
        return None
    m = _RATE_RE.search(mime)
    if not m:
        return 16000
    try:
        rate = int(m.group(1))
    except ValueError:
        raise BadRequest(f"Invalid audio sample rate in mimeType {mime!r}.") from None
    if not 1000 <= rate <= 192000:
        raise BadRequest(f"Unsupported audio sample rate {rate}.")
    return rate


def _int_field(obj: dict[str, Any], name: str, default: int | None) -> int | None:
    """Proto JSON int32: a number or a decimal string."""
    if name not in obj or obj[name] is None:
        return default
    value = obj[name]
    if isinstance(value, bool):
        raise BadRequest(f"Invalid value at 'setup...{name}': expected an integer.")
    if isinstance(value, int):
        result = value
    elif isinstance(value, float) and value.is_integer():
        result = int(value)
    elif isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        result = int(value)
    else:
        raise BadRequest(f"Invalid value at 'setup...{name}' ({value!r}): expected an integer.")
    if result < 0:
        raise BadRequest(f"Invalid value at 'setup...{name}': must not be negative.")
    return result


def _dict_field(obj: dict[str, Any], name: str) -> dict[str, Any]:
    value = obj.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"Invalid value at 'setup.{name}': expected an object.")
    return value


def validate_setup(setup: Any) -> dict[str, Any]:
    """Check the types the emulator relies on; return the normalised setup."""
    if not isinstance(setup, dict):
        raise BadRequest("Invalid value at 'setup': expected an object.")
    setup = normalize(setup)
    model = setup.get("model")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest("setup.model is required and must be a non-empty string.")
    for name in (
        "generationConfig",
        "realtimeInputConfig",
        "sessionResumption",
        "contextWindowCompression",
        "inputAudioTranscription",
        "outputAudioTranscription",
    ):
        _dict_field(setup, name)
    ric = _dict_field(setup, "realtimeInputConfig")
    aad = _dict_field(ric, "automaticActivityDetection")
    _int_field(aad, "silenceDurationMs", None)
    _int_field(aad, "prefixPaddingMs", None)
    if "disabled" in aad and not isinstance(aad["disabled"], bool):
        raise BadRequest("Invalid value at 'automaticActivityDetection.disabled': expected bool.")
    handle = _dict_field(setup, "sessionResumption").get("handle")
    if handle is not None and not isinstance(handle, str):
        raise BadRequest("Invalid value at 'setup.sessionResumption.handle': expected a string.")
    tools = setup.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise BadRequest("Invalid value at 'setup.tools': expected a list.")
    si = setup.get("systemInstruction")
    if si is not None and not isinstance(si, (dict, str)):
        raise BadRequest("Invalid value at 'setup.systemInstruction': expected Content.")
    gc = _dict_field(setup, "generationConfig")
    modalities = gc.get("responseModalities")
    if modalities is not None and not isinstance(modalities, list):
        raise BadRequest("Invalid value at 'generationConfig.responseModalities': expected a list.")
    return setup


def _truncate_reason(reason: str) -> str:
    data = reason.encode()
    if len(data) <= 123:
        return reason
    return data[:120].decode(errors="ignore") + "..."


def _text_of(content: Any) -> str:
    """Concatenate the text parts of a Content / list of Content."""
    if isinstance(content, list):
        return " ".join(t for t in (_text_of(c) for c in content) if t)
    if isinstance(content, str):
        return content
    if not isinstance(content, dict):
        return ""
    parts = content.get("parts")
    if isinstance(parts, list):
        texts = [p.get("text") for p in parts if isinstance(p, dict)]
        return " ".join(t for t in texts if isinstance(t, str))
    text = content.get("text")
    return text if isinstance(text, str) else ""


def _duration(seconds: float) -> str:
    """Proto JSON Duration."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
