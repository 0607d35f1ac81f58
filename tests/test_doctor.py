"""``telephony-bridge doctor`` against the real emulator, a real loopback OAuth endpoint, a closed
port and a dead Redis: each failure is reported as its own kind, and no secret is ever printed."""

from __future__ import annotations

import asyncio
import io
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from telephony_bridge.testing.oauth import TokenEndpoint

from telephony_bridge.doctor import run_doctor
from telephony_bridge.testing import GeminiEmulator, Scenario
from telephony_bridge.testing.receivers import FakeTwilioMessages, WebhookReceiver

KEY = "AIza-doctor-" + "k" * 16
TWILIO = "twilio-token-" + "t" * 16


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def base_env(tmp_path: Path, url: str, **extra: str) -> dict[str, str]:
    env = {"GEMINI_API_KEY": KEY, "PUBLIC_URL": "https://bridge.example.com/phone", "TWILIO_AUTH_TOKEN": TWILIO,
           "GEMINI_LIVE_URL": url, "CALLS_DB": str(tmp_path / "calls.sqlite3"),
           "RECORDINGS_DIR": str(tmp_path / "recordings")}
    env.update(extra)
    return {k: v for k, v in env.items() if v != ""}


def doctor(env: dict[str, str]) -> tuple[int, dict[str, str], str]:
    """Exit code, {check: line}, the whole output."""
    # The report's generateContent: the emulator's (run_against_emulator), else a closed port,
    # never the internet.
    env.setdefault("GEMINI_REST_URL", f"http://127.0.0.1:{closed_port()}")
    out = io.StringIO()
    code = asyncio.run(asyncio.wait_for(run_doctor(env, out, timeout=5.0), 60))
    text = out.getvalue()
    lines = {line.split()[1]: line for line in text.splitlines() if not line.startswith("doctor:")}
    for secret in (KEY, TWILIO):
        assert secret not in text
    return code, lines, text


async def with_emulator(scenario: Scenario, api_key: str | None, fn):  # type: ignore[no-untyped-def]
    async with GeminiEmulator(scenario, api_key=api_key, rest=True) as emu:
        return await asyncio.to_thread(fn, emu)


def run_against_emulator(scenario: Scenario, api_key: str | None, make_env):  # type: ignore[no-untyped-def]
    """The emulator (Live and REST) in this loop; doctor (its own loop) in a thread against it."""
    return asyncio.run(with_emulator(scenario, api_key, lambda emu: doctor({"GEMINI_REST_URL": emu.rest_url,
                                                                              **make_env(emu)})))


def test_a_good_configuration_passes_every_check(tmp_path: Path) -> None:
    code, lines, text = run_against_emulator(
        Scenario(known_models=["gemini-3.8-live"]), KEY, lambda emu: base_env(tmp_path, emu.url))
    assert code == 0, text
    assert list(lines) == ["settings", "public-url", "persona", "tools", "model", "store", "recordings",
                           "credentials", "live-session", "report"]
    assert all(line.startswith("ok ") for line in lines.values()), text
    assert "setupComplete" in lines["live-session"] and "models/gemini-3.8-live" in lines["live-session"]
    assert "https://bridge.example.com/phone/twiml" in lines["public-url"]
    assert "wss://bridge.example.com/phone/media-stream" in lines["public-url"]
    assert "save_note NON_BLOCKING/SILENT" in lines["tools"] and "end_call BLOCKING" in lines["tools"]
    assert "lookup_market NON_BLOCKING/WHEN_IDLE" in lines["tools"]
    assert f"({len(KEY)} characters" in lines["credentials"]
    assert "gemini-3.8-live (Gemini 3.8 Live, stable)" in lines["model"]
    assert f"local {tmp_path / 'recordings'}: a probe written, read back and deleted" in lines["recordings"]
    assert list((tmp_path / "recordings").iterdir()) == []  # the probe is gone again
    assert "gemini-3.8-flash answered in" in lines["report"]
    assert text.rstrip().endswith("doctor: 10 checks, 0 failing")


def test_a_wrong_key_is_bad_key(tmp_path: Path) -> None:
    code, lines, text = run_against_emulator(
        Scenario(), "AIza-the-right-one-" + "r" * 12, lambda emu: base_env(tmp_path, emu.url))
    assert code == 1
    assert lines["live-session"].startswith("FAIL") and "bad-key: HTTP 403" in lines["live-session"], text
    assert "the-right-one" not in text


def test_a_model_the_service_does_not_have_is_model_not_found(tmp_path: Path) -> None:
    code, lines, text = run_against_emulator(
        Scenario(known_models=["gemini-3.8-live"]), KEY,
        lambda emu: base_env(tmp_path, emu.url, GEMINI_MODEL="gemini-3.1-flash-live-preview"))
    assert code == 1
    assert "model-not-found: closed 1008" in lines["live-session"], text
    assert lines["model"].startswith("warn") and "legacy preview" in lines["model"]


def test_an_unknown_model_name_is_a_warning_with_the_newest_profile(tmp_path: Path) -> None:
    code, lines, text = run_against_emulator(
        Scenario(), KEY, lambda emu: base_env(tmp_path, emu.url, GEMINI_MODEL="gemini-9-live"))
    assert code == 0, text
    assert lines["model"].startswith("warn") and "newest profile" in lines["model"]
    assert lines["live-session"].startswith("ok")


def test_nothing_listening_is_network(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{closed_port()}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    code, lines, text = doctor(base_env(tmp_path, url))
    assert code == 1
    assert lines["live-session"].startswith("FAIL") and "network:" in lines["live-session"], text
    assert "ConnectionRefused" in lines["live-session"]
    assert all(lines[c].startswith("ok") for c in ("settings", "persona", "tools", "store", "credentials"))


def test_the_vertex_backend_gets_a_token_from_adc_and_opens_a_session(tmp_path: Path) -> None:
    with TokenEndpoint() as oauth:
        key_file = oauth.write(tmp_path / "sa.json", oauth.service_account_info())
        code, lines, text = run_against_emulator(Scenario(), None, lambda emu: base_env(
            tmp_path, emu.url, GEMINI_API_KEY="", GEMINI_BACKEND="vertex", GOOGLE_CLOUD_PROJECT="my-proj-1",
            GOOGLE_CLOUD_LOCATION="us-central1", GOOGLE_APPLICATION_CREDENTIALS=key_file))
    assert code == 0, text
    assert "backend vertex" in lines["settings"]
    assert "bridge@my-proj-1.iam.gserviceaccount.com" in lines["credentials"] and "valid 59 more minutes" in lines["credentials"]
    assert "projects/my-proj-1/locations/us-central1/publishers/google/models/gemini-3.8-live" in lines["live-session"]
    assert oauth.issued and oauth.issued[0] not in text  # the token itself never appears
    assert "PRIVATE KEY" not in text


def test_refused_credentials_are_bad_credentials_and_skip_the_session(tmp_path: Path) -> None:
    with TokenEndpoint() as oauth:
        key_file = oauth.write(tmp_path / "sa.json", oauth.service_account_info())
        oauth.refuse = "invalid_grant"
        code, lines, text = doctor(base_env(
            tmp_path, f"ws://127.0.0.1:{closed_port()}/x", GEMINI_API_KEY="", GEMINI_BACKEND="vertex",
            GOOGLE_CLOUD_PROJECT="my-proj-1", GOOGLE_APPLICATION_CREDENTIALS=key_file))
    assert code == 1
    assert lines["credentials"].startswith("FAIL") and "bad-credentials" in lines["credentials"], text
    assert "invalid_grant" in lines["credentials"]
    assert lines["live-session"].startswith("FAIL") and "skipped" in lines["live-session"]
    missing = doctor(base_env(tmp_path, "ws://127.0.0.1:1/x", GEMINI_API_KEY="", GEMINI_BACKEND="vertex",
                              GOOGLE_CLOUD_PROJECT="my-proj-1",
                              GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "nope.json")))
    assert "no-credentials" in missing[1]["credentials"]


def test_bad_settings_url_persona_and_store_each_fail_on_their_own_line(tmp_path: Path) -> None:
    code, lines, text = doctor(base_env(tmp_path, "ws://127.0.0.1:1/x", GEMINI_API_KEY=""))
    assert code == 1 and list(lines) == ["settings"] and "GEMINI_API_KEY" in lines["settings"]

    persona = tmp_path / "p.toml"
    persona.write_text('name = "x"\nsystem_instruction = "y"\ntools = ["web_search"]\n')
    code, lines, text = doctor(base_env(
        tmp_path, f"ws://127.0.0.1:{closed_port()}/x", PUBLIC_URL="http://192.168.1.20:8080",
        PERSONA_PATH=str(persona), REDIS_URL=f"redis://:hunter2-password@127.0.0.1:{closed_port()}/0"))
    assert code == 1
    assert lines["public-url"].startswith("FAIL") and "https://" in lines["public-url"]
    assert lines["tools"].startswith("FAIL") and "web_search" in lines["tools"]
    assert lines["store"].startswith("FAIL") and "RedisStore(redis://127.0.0.1" in lines["store"]
    assert "live-session" in lines and "skipped" in lines["live-session"]
    assert "hunter2-password" not in text

    code, lines, _ = doctor(base_env(tmp_path, "ws://127.0.0.1:1/x", PUBLIC_URL="https://localhost"))
    assert lines["public-url"].startswith("FAIL") and "not reachable from Twilio" in lines["public-url"]


@pytest.mark.parametrize("retired", ["gemini-2.0-flash-live-001"])
def test_a_retired_model_fails_the_model_check(tmp_path: Path, retired: str) -> None:
    code, lines, _ = run_against_emulator(
        Scenario(), KEY, lambda emu: base_env(tmp_path, emu.url, GEMINI_MODEL=retired))
    assert code == 1 and lines["model"].startswith("FAIL") and "shut down" in lines["model"]


def test_the_cli_runs_doctor(tmp_path: Path) -> None:
    env = base_env(tmp_path, f"ws://127.0.0.1:{closed_port()}/x")
    proc = subprocess.run([sys.executable, "-W", "error", "-m", "telephony_bridge", "doctor", "--timeout", "3"],
                          env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "FAIL  live-session  network:" in proc.stdout and KEY not in proc.stdout + proc.stderr


# -- recordings: where calls will be kept, probed for real ------------------------------------------


def recordings_lines(tmp_path: Path, **extra: str) -> tuple[int, dict[str, str], str]:
    return run_against_emulator(Scenario(known_models=["gemini-3.8-live"]), KEY,
                                lambda emu: base_env(tmp_path, emu.url, **extra))


def test_a_recordings_folder_that_cannot_be_made_fails_its_own_check(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    code, lines, text = recordings_lines(tmp_path, RECORDINGS_DIR=str(tmp_path / "a-file" / "recordings"))
    assert code == 1 and lines["recordings"].startswith("FAIL ") and "cannot create it" in lines["recordings"]
    assert lines["live-session"].startswith("ok ")  # the other checks still ran


def test_recordings_off_is_ok_and_says_so(tmp_path: Path) -> None:
    code, lines, text = recordings_lines(tmp_path, RECORDINGS="off")
    assert code == 0 and lines["recordings"].startswith("ok ") and "off" in lines["recordings"]


def test_a_gcs_bucket_gets_a_probe_written_read_back_and_deleted(gcs, tmp_path: Path) -> None:
    code, lines, text = recordings_lines(tmp_path, RECORDINGS_BUCKET="gs://call-recordings/calls")
    assert code == 0, text
    assert "gcs gs://call-recordings/calls: a probe written, read back and deleted" in lines["recordings"]
    assert list(gcs.list_blobs(gcs.bucket("call-recordings"))) == []


def test_a_missing_gcs_bucket_fails_before_any_call_ends(gcs, tmp_path: Path) -> None:
    code, lines, text = recordings_lines(tmp_path, RECORDINGS_BUCKET="gs://no-such-bucket/calls")
    assert code == 1 and lines["recordings"].startswith("FAIL "), text
    assert "gs://no-such-bucket/calls: NotFound: 404" in lines["recordings"]


def test_an_s3_bucket_gets_a_probe_and_a_missing_one_fails(s3, tmp_path: Path) -> None:
    code, lines, text = recordings_lines(tmp_path, RECORDINGS_BUCKET="s3://call-recordings/calls/")
    assert code == 0 and "s3 s3://call-recordings/calls/: a probe written" in lines["recordings"], text
    assert "Contents" not in s3.list_objects_v2(Bucket="call-recordings")
    code, lines, text = recordings_lines(tmp_path, RECORDINGS_BUCKET="s3://no-such-bucket")
    assert code == 1 and lines["recordings"].startswith("FAIL ") and "s3://no-such-bucket: " in lines["recordings"], text
    assert "NoSuchBucket" in lines["recordings"]


# -- report: where each call's report goes, tried for real ------------------------------------------

SECRET = "webhook-secret-" + "w" * 24
ACCOUNT = "AC" + "a" * 32
SENDER = "+15550100999"


def report_lines(tmp_path: Path, receiver_secret: str = SECRET, rest_models: list[str] | None = None,
                 numbers: tuple[str, ...] = (SENDER,), twilio_token: str = TWILIO,
                 **extra: str) -> tuple[int, dict[str, str], str, WebhookReceiver]:
    """doctor against the emulator (Live and REST), a webhook receiver and Twilio's REST fake."""
    receiver = WebhookReceiver(receiver_secret)
    twilio = FakeTwilioMessages(ACCOUNT, twilio_token, numbers=numbers)

    async def go():  # type: ignore[no-untyped-def]
        await receiver.start()
        await twilio.start()
        try:
            async with GeminiEmulator(Scenario(), api_key=KEY, rest=True) as emu:
                assert emu.rest is not None
                emu.rest.models = rest_models
                env = base_env(tmp_path, emu.url, **{"GEMINI_REST_URL": emu.rest_url or "",
                                                     "REPORT_WEBHOOK_URL": receiver.url, "REPORT_WEBHOOK_SECRET": SECRET,
                                                     "TWILIO_API_URL": twilio.origin, **extra})
                return await asyncio.to_thread(doctor, env)
        finally:
            await twilio.stop()
            await receiver.stop()

    code, lines, text = asyncio.run(go())
    assert SECRET not in text
    return code, lines, text, receiver


def test_the_report_model_the_webhook_and_the_sms_sender_are_each_tried(tmp_path: Path) -> None:
    code, lines, text, receiver = report_lines(tmp_path, REPORT_SMS="on", TWILIO_ACCOUNT_SID=ACCOUNT,
                                               TWILIO_FROM_NUMBER=SENDER)
    assert code == 0, text
    line = lines["report"]
    assert line.startswith("ok ") and "gemini-3.8-flash answered in" in line, text
    assert f"webhook {receiver.origin} took a signed ping (200)" in line
    assert f"Twilio account active, sending from {SENDER}" in line
    (ping,) = receiver.received
    assert ping.signature_ok and ping.json() == {"delivery_id": ping.idempotency_key, "ping": True}
    assert ping.idempotency_key.startswith("doctor-")


def test_a_report_model_that_is_a_live_model_or_not_served_fails(tmp_path: Path) -> None:
    # A Live model serves bidiGenerateContent only: every report would fail after its call.
    code, lines, text, receiver = report_lines(tmp_path, REPORT_MODEL="gemini-3.8-live")
    assert code == 1 and lines["report"].startswith("FAIL "), text
    assert "REPORT_MODEL gemini-3.8-live: HTTP 404 NOT_FOUND: models/gemini-3.8-live is not found for API version v1beta, " \
           "or is not supported for generateContent" in lines["report"]
    assert receiver.received == []  # nothing past the first failure
    code, lines, text, _ = report_lines(tmp_path, rest_models=["gemini-3.8-flash"], REPORT_MODEL="gemini-3.8-flahs")
    assert code == 1 and "HTTP 404 NOT_FOUND: models/gemini-3.8-flahs is not found" in lines["report"], text
    assert lines["live-session"].startswith("ok ")  # the Live side is another matter


def test_a_webhook_with_another_key_warns_and_one_nobody_answers_fails(tmp_path: Path) -> None:
    code, lines, text, receiver = report_lines(tmp_path, receiver_secret="another-secret-" + "x" * 24)
    assert code == 0 and lines["report"].startswith("warn "), text
    assert "answered HTTP 400 to a signed ping" in lines["report"] and "REPORT_WEBHOOK_SECRET" in lines["report"]
    assert [r.signature_ok for r in receiver.received] == [False]
    port = closed_port()
    code, lines, text, _ = report_lines(tmp_path, REPORT_WEBHOOK_URL=f"http://127.0.0.1:{port}/hooks/reports?token=abc")
    assert code == 1 and lines["report"].startswith("FAIL "), text
    assert f"REPORT_WEBHOOK_URL http://127.0.0.1:{port}: ConnectError" in lines["report"]
    assert "token=abc" not in text  # a URL's query may carry a secret of the receiver's


def test_an_sms_sender_the_account_does_not_own_or_a_wrong_token_fails(tmp_path: Path) -> None:
    sms = dict(REPORT_SMS="on", TWILIO_ACCOUNT_SID=ACCOUNT, TWILIO_FROM_NUMBER=SENDER)
    code, lines, text, _ = report_lines(tmp_path, numbers=("+15550100000",), **sms)
    assert code == 1 and f"REPORT_SMS: TWILIO_FROM_NUMBER {SENDER} is not a number of this account" in lines["report"]
    code, lines, text, _ = report_lines(tmp_path, twilio_token="another-token-" + "z" * 16, **sms)
    assert code == 1 and "REPORT_SMS: Twilio HTTP 401 (code 20003)" in lines["report"], text


def test_report_off_is_ok_and_says_so(tmp_path: Path) -> None:
    code, lines, text, receiver = report_lines(tmp_path, REPORT="off")
    assert code == 0 and lines["report"] == "ok    report        off (REPORT=off)", text
    assert receiver.received == []


def test_a_live_model_as_the_report_model_on_vertex_is_the_publisher_model_404(tmp_path: Path) -> None:
    with TokenEndpoint() as oauth:
        key_file = oauth.write(tmp_path / "sa.json", oauth.service_account_info())
        code, lines, text = run_against_emulator(Scenario(), None, lambda emu: base_env(
            tmp_path, emu.url, GEMINI_API_KEY="", GEMINI_BACKEND="vertex", GOOGLE_CLOUD_PROJECT="my-proj-1",
            GOOGLE_CLOUD_LOCATION="us-central1", GOOGLE_APPLICATION_CREDENTIALS=key_file,
            REPORT_MODEL="gemini-live-2.5-flash-native-audio"))
    assert code == 1 and lines["live-session"].startswith("ok "), text
    assert "HTTP 404 NOT_FOUND: Publisher Model `projects/my-proj-1/locations/us-central1/publishers/google/models/" \
           "gemini-live-2.5-flash-native-audio` was not found or your project does not have access to it" \
           in lines["report"], text
