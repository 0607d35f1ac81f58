import pytest

from telephony_bridge.errors import ConfigError
from telephony_bridge.settings import DEFAULT_LIVE_URL, load_settings

BASE = {"GEMINI_API_KEY": "AIzaSECRETSECRET", "PUBLIC_URL": "https://bridge.example.com/"}


def test_defaults_and_derived_urls():
    s = load_settings(dict(BASE))
    assert s.gemini_live_url == DEFAULT_LIVE_URL
    assert s.stream_url == "wss://bridge.example.com/media-stream"
    assert s.public("/twiml") == "https://bridge.example.com/twiml"
    assert s.port == 8080 and s.silence_duration_ms == 2500
    assert "AIzaSECRET" not in repr(s)


@pytest.mark.parametrize("missing", ["GEMINI_API_KEY", "PUBLIC_URL"])
def test_missing_setting_is_one_line_naming_the_variable(missing):
    env = dict(BASE)
    del env[missing]
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert missing in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name,value", [("PORT", "http"), ("PORT", "70000"), ("PUBLIC_URL", "bridge.example.com"),
                                        ("GEMINI_LIVE_URL", "https://x"), ("GEMINI_LIVE_URL", "wss://x/?key=abc")])
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
