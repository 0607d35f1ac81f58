"""``telephony-bridge doctor``: check a deployment's configuration for real, one line per check.

Reads the settings the way ``serve`` does, then checks what ``serve`` would only find out when
the first caller rings::

    settings      every variable parses (a ConfigError stops here)
    public-url    https, a host Twilio can reach (not loopback or private), the URLs to configure
    model         the model's profile: stable, a preview being shut down, retired, or unknown
    persona       the persona file loads
    tools         the persona's tools exist; how each is declared to this model
    store         the call store answers (SQLite file or Redis)
    recordings    where recordings go takes a probe: written, read back and deleted (the folder, or
                  the gs:// or s3:// bucket), so a missing bucket or permission shows before a call
    credentials   the API key is set, or Vertex AI's Application Default Credentials give a token
    report        the post-call report's way out: its model answers a one-line generateContent
                  (with the configured backend and key), REPORT_WEBHOOK_URL takes a signed ping
                  (``{"delivery_id": "doctor-…", "ping": true}``: answer it 2xx), and with
                  REPORT_SMS=on the Twilio account's credentials work and TWILIO_FROM_NUMBER is its
    live-session  a real Live session opens with the configured backend and the exact setup the
                  bridge sends: setupComplete, or the kind of refusal (model-not-found, bad-key,
                  bad-credentials, permission-denied, rejected-setup, wrong-endpoint, network, ...)

Each line is ``ok``, ``warn`` or ``FAIL``; the exit status is 1 when any check failed. No
secret is ever printed: keys and tokens are described by length at most, and every line goes
through the log redaction as a safety net.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import urlsplit

from .errors import ConfigError
from .log import redact, register_secret

#: The call SID the store probe reads (never written).
PROBE_SID = "doctor-probe"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # "ok" | "warn" | "FAIL"
    detail: str

    def line(self) -> str:
        return redact(f"{self.status:<5} {self.name:<13} {self.detail}")


#: What ``doctor`` calls each refusal kind (gemini/refusal.py decides the kind).
_LABELS = {"model_not_found": "model-not-found", "bad_key": "bad-key", "permission": "permission-denied",
           "invalid_setup": "rejected-setup", "invalid_request": "refused", "quota": "quota",
           "unreachable": "network"}


def classify_connect_error(exc: BaseException) -> tuple[str, str]:
    """``(kind, detail)`` for a failed Live connection or setup, by the one refusal classifier
    the calls use (:func:`telephony_bridge.gemini.probe.refusal_from_connect_error`)."""
    from .gemini.probe import refusal_from_connect_error

    refusal = refusal_from_connect_error(exc)
    where = (f"HTTP {refusal.status}: " if refusal.status is not None
             else f"closed {refusal.code}: " if refusal.code is not None else "")
    label = _LABELS.get(refusal.kind.value, refusal.kind.value)
    if label == "network" and ((refusal.status or 0) >= 500 or refusal.code in (1011, 1013)):
        label = "unavailable"
    return label, f"{where}{refusal.reason}"[:200]


def _public_url(settings: Any) -> CheckResult:
    parts = urlsplit(settings.public_url)
    where = f"webhook POST {settings.public('/twiml')}, stream {settings.stream_url}"
    if parts.scheme != "https":
        return CheckResult("public-url", "FAIL",
                           f"{parts.scheme}:// — Twilio needs an https:// webhook and a wss:// stream ({where})")
    host = parts.hostname or ""
    local = host == "localhost" or host.endswith((".local", ".internal", ".localhost"))
    try:
        ip = ipaddress.ip_address(host)
        local = local or ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_unspecified
    except ValueError:
        if "." not in host:
            local = True  # a bare name resolves only inside some network
    if local:
        return CheckResult("public-url", "FAIL", f"{host} is not reachable from Twilio's servers ({where})")
    return CheckResult("public-url", "ok", where)


def _model(settings: Any, setup: Any) -> CheckResult:
    from .gemini.messages import dropped_fields
    from .gemini.profiles import lookup, startup_warning

    found = lookup(settings.gemini_model)
    note = startup_warning(settings.gemini_model)
    dropped = dropped_fields(setup, found.profile) if setup is not None else []
    if dropped:
        note = ((note + "; ") if note else "") + f"not sent to this model: {', '.join(dropped)}"
    if found.profile.status == "retired":
        return CheckResult("model", "FAIL", note or found.model)
    if note:
        return CheckResult("model", "warn", note)
    return CheckResult("model", "ok", f"{found.model} ({found.profile.title}, {found.profile.status})")


def _tools_line(registry: Any, names: tuple[str, ...], model: str) -> str:
    from .gemini.profiles import profile_for

    profile = profile_for(model)
    parts = []
    for name in names:
        tool = registry.get(name)
        declared = tool.behavior.value + (f"/{tool.scheduling.value}" if tool.scheduling else "")
        effective = profile.effective_behavior(tool.behavior.value)
        sent = profile.behavior_field(tool.behavior.value)
        suffix = "" if sent == tool.behavior.value else f" (sent without behavior: {effective} on this model)"
        parts.append(f"{name} {declared}{suffix}")
    return ", ".join(parts) or "none"


async def _store(settings: Any, timeout: float) -> CheckResult:
    from .store import open_store

    try:
        store = open_store(settings.redis_url, settings.sqlite_path)
    except ConfigError as exc:
        return CheckResult("store", "FAIL", str(exc))
    try:
        async with asyncio.timeout(timeout):
            await store.get_call_state(PROBE_SID)
        return CheckResult("store", "ok", f"{store!r} answers")
    except Exception as exc:
        return CheckResult("store", "FAIL", f"{store!r}: {type(exc).__name__}: {str(exc)[:120]}")
    finally:
        try:
            await store.close()
        except Exception:
            pass


#: The object the recordings check writes, reads back and deletes (never a CallSid: those start "CA").
PROBE_RECORDING = "doctor-probe"


async def _recordings(settings: Any, timeout: float) -> CheckResult:
    """Recordings on: a probe written where calls will be kept (the folder, or the bucket through
    its spool), read back and deleted, so a bucket without the right permission, a missing
    bucket or a read-only folder shows here and not at the end of the first call."""
    from .recording.service import open_recordings
    from .recording.wavfile import write_stereo

    if not settings.recordings_dir:
        return CheckResult("recordings", "ok", "off (RECORDINGS=off)")
    where = settings.recordings_bucket or os.path.abspath(settings.recordings_dir)

    def probe() -> str:
        service = open_recordings(settings)
        assert service is not None
        sink = service.sink
        src, back = service.spool / f"{PROBE_RECORDING}.upload", service.spool / f"{PROBE_RECORDING}.back"
        started = time.perf_counter()
        try:
            write_stereo(src, b"\xff" * 80, b"\xff" * 80)  # 10 ms of silence, as a call's file is written
            written = src.read_bytes()
            sink.put(PROBE_RECORDING, str(src), {"probe": True})
            if not sink.fetch(PROBE_RECORDING, str(back)):
                raise OSError(f"{PROBE_RECORDING}.wav written but not found again")
            if back.read_bytes() != written:
                raise OSError(f"{PROBE_RECORDING}.wav read back different from what was written")
            sink.delete(PROBE_RECORDING)
        finally:
            src.unlink(missing_ok=True)
            back.unlink(missing_ok=True)
        return f"{sink.kind} {where}: a probe written, read back and deleted in " \
               f"{(time.perf_counter() - started) * 1000:.0f} ms, retention {settings.recordings_retention_days:g} days"

    try:
        async with asyncio.timeout(timeout):
            return CheckResult("recordings", "ok", await asyncio.to_thread(probe))
    except ConfigError as exc:
        return CheckResult("recordings", "FAIL", str(exc))
    except TimeoutError:
        return CheckResult("recordings", "FAIL", f"{where}: no answer in {timeout:g} s")
    except Exception as exc:
        return CheckResult("recordings", "FAIL", f"{where}: {type(exc).__name__}: {str(exc)[:300]}")


async def _report(settings: Any, backend: Any, timeout: float) -> CheckResult:
    """Where each call's report goes, tried the way the report worker will (report/service.py):
    a wrong REPORT_MODEL, a webhook nobody answers or a Twilio sender the account does not own
    show here, not as a failed report after the first interview."""
    import secrets

    import httpx

    from .report.client import ReportClient
    from .report.schema import ReportError
    from .report.service import post_webhook
    from .report.sms import SmsSender

    if not settings.report:
        return CheckResult("report", "ok", "off (REPORT=off)")
    parts: list[str] = []
    warnings: list[str] = []
    async with httpx.AsyncClient() as http:
        client = ReportClient(backend, settings.report_model, http, timeout_s=timeout)
        try:
            took = await client.probe()
        except ReportError as err:
            return CheckResult("report", "FAIL", f"REPORT_MODEL {settings.report_model}: {err.detail}")
        parts.append(f"{settings.report_model} answered in {took * 1000:.0f} ms")
        url, secret = settings.report_webhook_url, settings.report_webhook_secret
        if url and secret:
            ping = f"doctor-{secrets.token_hex(6)}"
            try:  # the report worker's own delivery path
                status = await post_webhook(http, url, secret, {"delivery_id": ping, "ping": True}, ping, timeout)
                parts.append(f"webhook {_origin(url)} took a signed ping ({status})")
            except ReportError as err:
                if err.kind != "http":
                    return CheckResult("report", "FAIL", f"REPORT_WEBHOOK_URL {_origin(url)}: {err.detail}"
                                                         f" (reports will wait in the outbox)")
                warnings.append(f"webhook {_origin(url)} answered HTTP {err.status} to a signed ping "
                                f"(a receiver checking Bridge-Signature with another key than "
                                f"REPORT_WEBHOOK_SECRET answers so; reports are retried until 2xx)")
    if settings.report_sms:
        sender = SmsSender(settings.twilio_account_sid or "", settings.twilio_auth_token or "",
                           settings.twilio_from_number or "", api_url=settings.twilio_api_url, timeout_s=timeout)
        try:
            parts.append(await sender.check())
        except ReportError as err:
            return CheckResult("report", "FAIL", f"REPORT_SMS: {err.detail}")
    return CheckResult("report", "warn" if warnings else "ok", "; ".join(parts + warnings))


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL: its path may carry a token."""
    split = urlsplit(url)
    return f"{split.scheme}://{split.netloc.rpartition('@')[2]}"


async def _credentials(settings: Any, backend: Any) -> CheckResult:
    from .gemini.backend import BackendAuthError, VertexBackend

    if not isinstance(backend, VertexBackend):
        which = "a Vertex AI express-mode key" if settings.vertex else "the Gemini API key"
        return CheckResult("credentials", "ok", f"GEMINI_API_KEY set ({len(settings.gemini_api_key)} characters, {which})")
    try:
        _, quota = await backend.tokens.token()
    except BackendAuthError as exc:
        return CheckResult("credentials", "FAIL", f"{exc.kind}: {exc}")
    creds = backend.tokens.credentials
    who = getattr(creds, "service_account_email", None) or type(creds).__name__
    left = ""
    expiry = getattr(creds, "expiry", None)
    if expiry is not None:
        from .gemini.backend import _utcnow

        left = f", valid {max(0, int((expiry - _utcnow()).total_seconds() // 60))} more minutes"
    source = settings.google_application_credentials or "Application Default Credentials"
    return CheckResult("credentials", "ok", f"access token for {who} from {source}{left}"
                                            f"{', quota project ' + quota if quota else ''}")


async def _live_session(settings: Any, backend: Any, setup_message: str, timeout: float) -> CheckResult:
    from .gemini.client import GeminiLiveClient

    started = time.perf_counter()
    try:
        endpoint = await backend.endpoint()
        client = await GeminiLiveClient.connect(endpoint, setup_message, timeout=timeout)
    except Exception as exc:
        kind, detail = classify_connect_error(exc)
        return CheckResult("live-session", "FAIL", f"{kind}: {detail} ({backend.describe()})")
    ms = (time.perf_counter() - started) * 1000
    try:
        await client.close()
    except Exception:
        pass
    model = json.loads(setup_message)["setup"]["model"]
    return CheckResult("live-session", "ok", f"setupComplete in {ms:.0f} ms for {model} ({backend.describe()})")


def _register_secrets(settings: Any) -> None:
    for value in (settings.gemini_api_key, settings.twilio_auth_token, settings.stream_token_secret,
                  settings.operator_token):
        register_secret(value)
    if settings.redis_url:
        register_secret(urlsplit(settings.redis_url).password)


async def run_doctor(env: Mapping[str, str] | None = None, out: TextIO | None = None,
                     timeout: float = 15.0) -> int:
    """Run every check, print one line each to ``out``; 0 when nothing failed, else 1."""
    from .gemini.backend import backend_from_settings
    from .gemini.messages import build_setup
    from .persona import load_persona
    from .server import builtin_tool_registry, setup_config
    from .settings import load_settings

    out = sys.stdout if out is None else out
    env = os.environ if env is None else env
    results: list[CheckResult] = []

    def report(result: CheckResult) -> None:
        results.append(result)
        print(result.line(), file=out, flush=True)

    try:
        settings = load_settings(env)
    except ConfigError as exc:
        report(CheckResult("settings", "FAIL", str(exc)))
        return 1
    _register_secrets(settings)
    backend = backend_from_settings(settings)
    report(CheckResult("settings", "ok", f"backend {backend.name}, model {settings.gemini_model}, "
                                         f"signature check {'on' if settings.twilio_signature_check else 'OFF'}"))
    report(_public_url(settings))

    setup = setup_message = None
    persona = registry = None
    try:
        persona = load_persona(settings.persona_path)
        report(CheckResult("persona", "ok", f"{persona.name!r} from {settings.persona_path or 'the bundled default'}"))
    except ConfigError as exc:
        report(CheckResult("persona", "FAIL", str(exc)))
    if persona is not None:
        try:
            registry = builtin_tool_registry(settings)
            declarations = registry.declarations(persona.tools)
            setup = setup_config(settings, persona, backend, declarations)
            setup_message = build_setup(setup)
            report(CheckResult("tools", "ok", _tools_line(registry, persona.tools, settings.gemini_model)))
        except ConfigError as exc:
            report(CheckResult("tools", "FAIL", str(exc)))
    report(_model(settings, setup))
    report(await _store(settings, timeout))
    report(await _recordings(settings, timeout))
    credentials = await _credentials(settings, backend)
    report(credentials)
    if setup_message is None:
        report(CheckResult("live-session", "FAIL", "skipped: no setup to send (fix the persona/tools first)"))
    elif credentials.status == "FAIL":
        report(CheckResult("live-session", "FAIL", "skipped: no credentials"))
    else:
        report(await _live_session(settings, backend, setup_message, timeout))
    if credentials.status == "FAIL" and settings.report:
        report(CheckResult("report", "FAIL", "skipped: no credentials"))
    else:
        report(await _report(settings, backend, timeout))
    failed = [r for r in results if r.status == "FAIL"]
    print(f"doctor: {len(results)} checks, {len(failed)} failing", file=out, flush=True)
    return 1 if failed else 0


__all__ = ["run_doctor", "classify_connect_error", "CheckResult", "PROBE_SID"]
