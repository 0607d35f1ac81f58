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


def test_the_default_model_is_gemini_3_8_live_on_the_gemini_api():
    s = load_settings(dict(BASE))
    assert s.gemini_model == "gemini-3.8-live" and s.gemini_backend == "gemini" and not s.vertex
    assert s.demo_tool_delays_s == {}  # the demo knob is never read from the environment
    assert load_settings(dict(BASE, DEMO_TOOL_DELAYS_S="9")).demo_tool_delays_s == {}


def test_vertex_with_application_default_credentials():
    env = dict(BASE, GEMINI_BACKEND="vertex", GOOGLE_CLOUD_PROJECT="my-proj-1",
               GOOGLE_CLOUD_LOCATION="us-central1", GOOGLE_APPLICATION_CREDENTIALS="/secrets/sa.json",
               GOOGLE_CLOUD_QUOTA_PROJECT="billing-proj-1")
    s = load_settings(env)
    assert s.vertex and not s.vertex_express
    assert (s.google_cloud_project, s.google_cloud_location) == ("my-proj-1", "us-central1")
    assert s.google_application_credentials == "/secrets/sa.json" and s.google_cloud_quota_project == "billing-proj-1"
    assert s.gemini_api_key is None  # the project (ADC) wins over a key, as in google-genai
    assert s.gemini_live_url is None  # the backend's own endpoint
    default_location = load_settings(dict(BASE, GEMINI_BACKEND="vertex", GOOGLE_CLOUD_PROJECT="my-proj-1"))
    assert default_location.google_cloud_location == "global"
    del env["GEMINI_API_KEY"]
    assert load_settings(env).google_cloud_project == "my-proj-1"  # no key needed


def test_vertex_express_mode_takes_the_api_key():
    s = load_settings(dict(BASE, GEMINI_BACKEND="Vertex"))
    assert s.vertex_express and s.gemini_api_key == "AIzaSECRETSECRET" and "AIzaSECRET" not in repr(s)


@pytest.mark.parametrize("env, problem", [
    ({"GEMINI_BACKEND": "openai"}, "GEMINI_BACKEND"),
    ({"GEMINI_BACKEND": "vertex", "GEMINI_API_KEY": ""}, "GOOGLE_CLOUD_PROJECT"),
    ({"GEMINI_BACKEND": "vertex", "GOOGLE_CLOUD_PROJECT": "My Project"}, "GOOGLE_CLOUD_PROJECT"),
    ({"GEMINI_BACKEND": "vertex", "GOOGLE_CLOUD_PROJECT": "my-proj-1", "GOOGLE_CLOUD_LOCATION": "evil.com/x"},
     "GOOGLE_CLOUD_LOCATION"),
    ({"GEMINI_BACKEND": "vertex", "GOOGLE_CLOUD_PROJECT": "my-proj-1", "GOOGLE_CLOUD_QUOTA_PROJECT": "x"},
     "GOOGLE_CLOUD_QUOTA_PROJECT"),
])
def test_bad_vertex_settings_are_one_line_naming_the_variable(env, problem):
    with pytest.raises(ConfigError) as info:
        load_settings(dict(BASE, **env))
    assert problem in str(info.value) and "\n" not in str(info.value)
