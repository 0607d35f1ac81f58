import pytest

from telephony_bridge.errors import ConfigError
from telephony_bridge.settings import DEFAULT_LIVE_URL, load_settings

BASE = {"GEMINI_API_KEY": "AIzaSECRETSECRET", "PUBLIC_URL": "https://bridge.example.com/",
        "TWILIO_AUTH_TOKEN": "twilio-token-secret-0123"}


def test_defaults_and_derived_urls():
    s = load_settings(dict(BASE))
    assert s.gemini_live_url == DEFAULT_LIVE_URL
    assert s.stream_url == "wss://bridge.example.com/media-stream"
    assert s.public("/twiml") == "https://bridge.example.com/twiml"
    assert s.port == 8080 and s.silence_duration_ms is None  # the persona decides
    assert "AIzaSECRET" not in repr(s) and "twilio-token-secret" not in repr(s)
    # security and limits
    assert s.twilio_signature_check is True and s.twilio_auth_token == "twilio-token-secret-0123"
    assert s.stream_token_secret is None and s.operator_token is None and s.stream_token_ttl_s == 120
    assert s.max_concurrent_calls == 40 and s.max_call_s == 3600 and s.no_media_timeout_s == 10
    assert s.twilio_max_message_bytes == 65536 and s.gemini_max_message_bytes == 4 * 1024 * 1024
    assert s.breaker_calls == 3 and s.breaker_probe_s == 10.0
    tuned = load_settings({**BASE, "GEMINI_BREAKER_CALLS": "0", "GEMINI_PROBE_S": "30"})
    assert tuned.breaker_calls == 0 and tuned.breaker_probe_s == 30.0


@pytest.mark.parametrize("missing", ["GEMINI_API_KEY", "PUBLIC_URL", "TWILIO_AUTH_TOKEN"])
def test_missing_setting_is_one_line_naming_the_variable(missing):
    env = dict(BASE)
    del env[missing]
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert missing in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name,value", [
    ("PORT", "http"), ("PORT", "70000"), ("PUBLIC_URL", "bridge.example.com"),
    ("GEMINI_LIVE_URL", "https://x"), ("GEMINI_LIVE_URL", "wss://x/?key=abc"),
    ("TWILIO_SIGNATURE_CHECK", "maybe"), ("STREAM_TOKEN_SECRET", "short"), ("OPERATOR_TOKEN", "short"),
    ("STREAM_TOKEN_TTL_S", "1"), ("MAX_CONCURRENT_CALLS", "0"), ("MAX_CALL_S", "10"),
    ("NO_MEDIA_TIMEOUT_S", "0"), ("TWILIO_MAX_MESSAGE_BYTES", "1000000"), ("GEMINI_MAX_MESSAGE_BYTES", "1"),
    ("GEMINI_BREAKER_CALLS", "-1"), ("GEMINI_PROBE_S", "0"),
])
def test_invalid_values_are_rejected(name, value):
    with pytest.raises(ConfigError) as info:
        load_settings({**BASE, name: value})
    assert name in str(info.value)


def test_cli_reports_missing_setting(monkeypatch, capsys):
    from telephony_bridge.cli import main

    for var in ("GEMINI_API_KEY", "PUBLIC_URL"):
        monkeypatch.delenv(var, raising=False)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("telephony-bridge: GEMINI_API_KEY is not set") and "\n" not in err


def test_security_settings_from_the_environment():
    s = load_settings({**BASE, "TWILIO_SIGNATURE_CHECK": "on", "STREAM_TOKEN_SECRET": "s" * 40,
                       "OPERATOR_TOKEN": "operator-token-0123456789", "MAX_CONCURRENT_CALLS": "5",
                       "MAX_CALL_S": "900", "NO_MEDIA_TIMEOUT_S": "20", "TWILIO_MAX_MESSAGE_BYTES": "16384",
                       "GEMINI_MAX_MESSAGE_BYTES": "1048576", "STREAM_TOKEN_TTL_S": "60"})
    assert s.stream_token_secret == "s" * 40 and s.operator_token == "operator-token-0123456789"
    assert (s.max_concurrent_calls, s.max_call_s, s.no_media_timeout_s) == (5, 900, 20)
    assert (s.twilio_max_message_bytes, s.gemini_max_message_bytes, s.stream_token_ttl_s) == (16384, 1048576, 60)
    assert "s" * 40 not in repr(s) and "operator-token" not in repr(s)


@pytest.mark.parametrize("value", ["off", "OFF", "false", "0", "no"])
def test_signature_check_off_needs_no_auth_token(value):
    env = {**BASE, "TWILIO_SIGNATURE_CHECK": value}
    del env["TWILIO_AUTH_TOKEN"]
    s = load_settings(env)
    assert s.twilio_signature_check is False and s.twilio_auth_token is None


def test_cli_serve_refuses_to_start_without_the_auth_token(monkeypatch, capsys):
    from telephony_bridge.cli import main

    monkeypatch.setenv("GEMINI_API_KEY", "AIzaSECRETSECRET")
    monkeypatch.setenv("PUBLIC_URL", "https://bridge.example.com")
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("TWILIO_SIGNATURE_CHECK", raising=False)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("telephony-bridge: TWILIO_AUTH_TOKEN is not set") and "\n" not in err
