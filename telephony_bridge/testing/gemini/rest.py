"""The emulator's REST side: ``generateContent`` for the post-call report, with faults.

A small Starlette app on its own loopback port (the Live side is a websockets server, which
speaks HTTP only for the upgrade), started with the emulator when ``GeminiEmulator(rest=True)``.
Paths and credentials as the services have them, checked by the same :func:`.auth.check` as the
Live upgrade::

    POST /v1beta/models/{M}:generateContent                        Gemini API, x-goog-api-key
    POST /v1/publishers/google/models/{M}:generateContent          Vertex AI express mode (key)
    POST /v1/projects/{P}/locations/{L}/publishers/google/models/{M}:generateContent
                                                                   Vertex AI, Authorization: Bearer

The answer is a deterministic report built from the transcript it is given (the ``Founder:``
lines of the user turn) and shaped by the request's own ``responseJsonSchema`` (or
``responseSchema``): every property the schema asks for, enums picked from the schema's values.
A model it does not serve is a 404 in the service's words: a Live model (the profile table's:
they serve ``bidiGenerateContent`` only), or one outside :attr:`RestEmulator.models` when that is
set (Gemini API: "models/X is not found for API version v1beta, or is not supported for
generateContent. …"; Vertex AI: "Publisher Model `…` was not found or your project does not have
access to it. …").
:class:`RestFault` scripts failures for the next requests: ``500``, ``429`` (with
``Retry-After``), ``hang`` (no answer until the client gives up), ``off_schema`` (a 200 whose JSON
does not match the schema).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ...gemini import profiles
from . import auth

RestFaultKind = Literal["500", "429", "hang", "off_schema"]
_GEMINI = re.compile(r"^/(v1beta|v1)/models/([\w.-]+):generateContent$")
_EXPRESS = re.compile(r"^/(v1beta1|v1)/publishers/google/models/([\w.-]+):generateContent$")
_VERTEX = re.compile(r"^/(v1beta1|v1)/projects/([\w.:-]+)/locations/([\w-]+)/publishers/google/models/([\w.-]+)"
                     r":generateContent$")
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}


@dataclass
class RestFault:
    """The next ``times`` requests fail this way."""

    kind: RestFaultKind
    times: int = 1
    retry_after_s: int = 1
    hang_s: float = 3600.0


@dataclass
class RestRequest:
    path: str
    backend: str
    auth: str | None
    status: int
    fault: str | None = None
    body: dict[str, Any] = field(default_factory=dict, repr=False)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}},
                        status_code=status, headers=headers)


# ------------------------------------------------------------------- the deterministic report

_AREA_WORDS = {
    "customer": r"customer|client|user|buyer|practices?\b",
    "competition": r"compet|software|nobody|alternative|instead|already",
    "business_model": r"\bpay|price|month|\$|dollar|subscription|fee|charge",
    "why_now": r"\bnow\b|expect|trend|today|anymore|can't hire",
    "problem": r"cancel|lose|problem|pain|waste|miss|struggl",
}


def founder_lines(body: dict[str, Any]) -> list[str]:
    texts = [p.get("text", "") for c in body.get("contents") or [] if isinstance(c, dict)
             for p in c.get("parts") or [] if isinstance(p, dict)]
    return [line.split(":", 1)[1].strip() for t in texts for line in str(t).splitlines()
            if line.startswith("Founder:") and line.split(":", 1)[1].strip()]


def report_facts(lines: list[str]) -> dict[str, Any]:
    """The report's content from the founder's lines (areas matched by keywords, in order)."""
    used: set[int] = set()
    areas: dict[str, dict[str, str]] = {}
    for area, words in _AREA_WORDS.items():
        pick = next((i for i, line in enumerate(lines) if i not in used and re.search(words, line, re.I)), None)
        if pick is None and area == "problem" and lines:
            pick = 0
        if pick is None:
            areas[area] = {"said": "Not discussed.", "solidity": "not-discussed"}
            continue
        used.add(pick)
        line = lines[pick]
        concrete = re.search(r"\d|hundred|thousand|percent|covers|every|moment", line, re.I)
        areas[area] = {"said": line, "solidity": "solid" if concrete else "plausible"}
    covered = [a for a, v in areas.items() if v["solidity"] != "not-discussed"]
    missing = [a for a in _AREA_WORDS if a not in covered]
    verdict = "go" if len(covered) >= 4 else "undecided" if len(covered) >= 2 else "no-go"
    weakest = next((a for a in _AREA_WORDS if areas[a]["solidity"] == "plausible"), None)
    if missing:
        open_question = f"What about the {missing[0].replace('_', ' ')}? It never came up."
    elif weakest:
        open_question = f"What evidence backs the {weakest.replace('_', ' ')} claim: \"{areas[weakest]['said']}\"?"
    else:
        open_question = "Which of these claims has been tested with paying customers?"
    solid = [a for a in _AREA_WORDS if areas[a]["solidity"] == "solid"]
    strongest = areas[solid[0]]["said"] if solid else (lines[0] if lines else "Nothing was said.")
    return {
        "idea": lines[0] if lines else "No idea was described.",
        **areas,
        "strongest_point": strongest,
        "open_question": open_question,
        "leaning": {"verdict": verdict, "reasons": [
            f"{len(covered)} of {len(_AREA_WORDS)} areas answered",
            f"{len(solid)} answered with specifics" + (f" ({', '.join(s.replace('_', ' ') for s in solid)})" if solid else ""),
        ]},
        "next_steps": [f"Answer the open question: {open_question}",
                       *(f"Cover the {m.replace('_', ' ')}" for m in missing[:2])],
    }


def shape(schema: dict[str, Any], value: Any, name: str = "") -> Any:
    """``value`` made to fit ``schema`` (JSON Schema or the OpenAPI subset, types in any case)."""
    kind = str(schema.get("type", "")).lower()
    if kind == "object":
        src = value if isinstance(value, dict) else {}
        return {k: shape(sub, src.get(k), k) for k, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        items = value if isinstance(value, list) and value else [value if value is not None else name]
        items = items[: int(schema.get("maxItems", len(items)))]
        return [shape(schema.get("items") or {}, v, name) for v in items]
    if kind == "string":
        enum = schema.get("enum")
        if enum:
            return value if value in enum else enum[0]
        text = value if isinstance(value, str) and value else f"({name or 'value'})"
        return text[: int(schema.get("maxLength", len(text)))]
    if kind in ("integer", "number"):
        return value if isinstance(value, (int, float)) else 0
    if kind == "boolean":
        return bool(value)
    return value


def answer_for(body: dict[str, Any]) -> dict[str, Any]:
    """The report for a generateContent body, shaped by its response schema."""
    config = body.get("generationConfig") or {}
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    facts = report_facts(founder_lines(body))
    return shape(schema, facts) if isinstance(schema, dict) else facts


def candidate(text: str) -> dict[str, Any]:
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP",
                            "index": 0}],
            "usageMetadata": {"promptTokenCount": 0, "candidatesTokenCount": 0}}


# ------------------------------------------------------------------------------ the server


def _wants_audio(raw: bytes) -> bool:
    """A TTS request (``generationConfig.responseModalities == ["AUDIO"]``), not a report."""
    try:
        body = json.loads(raw)
        return body.get("generationConfig", {}).get("responseModalities") == ["AUDIO"]
    except (ValueError, AttributeError):
        return False


class RestEmulator:
    """``generateContent`` on a loopback port. ``api_key``/``oauth``: as the Live side checks."""

    def __init__(self, *, api_key: str | None, oauth: auth.TokenChecker | None, backends: frozenset[str],
                 host: str = "127.0.0.1") -> None:
        self.api_key = api_key
        self.oauth = oauth
        self.backends = backends
        self.host = host
        self.port = 0
        self.faults: list[RestFault] = []
        self.requests: list[RestRequest] = []
        self._server: Any = None
        self._stopping: asyncio.Event | None = None
        #: Gemini TTS (:class:`.tts.TtsEmulator`): requests for audio output go to it; None: 400s.
        self.tts: Any = None
        #: The models generateContent serves (bare names); None: any that is not a Live model.
        self.models: list[str] | None = None

    @property
    def url(self) -> str:
        """What the bridge takes as ``GEMINI_REST_URL``."""
        return f"http://{self.host}:{self.port}"

    def fail_next(self, kind: RestFaultKind, times: int = 1, **kw: Any) -> None:
        self.faults.append(RestFault(kind, times, **kw))

    def _take_fault(self) -> RestFault | None:
        while self.faults and self.faults[0].times <= 0:
            self.faults.pop(0)
        if not self.faults:
            return None
        self.faults[0].times -= 1
        return self.faults[0]

    async def _generate(self, request: Request) -> Response:
        path = request.url.path
        try:
            await request.body()  # whole, once (Starlette keeps it for the reads below)
        except ClientDisconnect:  # the client hung up mid-request (a bridge killed in a drain)
            self.requests.append(RestRequest(path, "?", None, 499))
            return Response(status_code=499)
        if m := _GEMINI.match(path):
            backend, ws_path = "gemini-api", auth.V1BETA_PATH
        elif m := _EXPRESS.match(path) or _VERTEX.match(path):
            backend, ws_path = "vertex", auth.VERTEX_PATH
        else:
            self.requests.append(RestRequest(path, "?", None, 404))
            return _error(404, f"Method not found: {path[:80]}")
        if backend not in self.backends:
            self.requests.append(RestRequest(path, backend, None, 404))
            return _error(404, "Not found")
        verdict = auth.check(ws_path, request.url.query, request.headers, api_key=self.api_key, oauth=self.oauth)
        if isinstance(verdict, auth.Refused):
            self.requests.append(RestRequest(path, backend, None, verdict.status))
            return _error(verdict.status, verdict.body)
        assert isinstance(verdict, auth.Admitted)
        if self.tts is not None and _wants_audio(await request.body()):
            return await self.tts.handle(request)  # Gemini TTS: same host, same credentials
        version, model = m.group(1), m.groups()[-1]
        if profiles.lookup(model).known or (self.models is not None and model not in self.models):
            self.requests.append(RestRequest(path, backend, verdict.auth, 404))
            if backend == "vertex":
                resource = path[len(version) + 2:].removesuffix(":generateContent")  # publishers/…, projects/…
                return _error(404, f"Publisher Model `{resource}` was not found or your project does not have "
                                   "access to it. Please ensure you are using a valid model version.")
            return _error(404, f"models/{model} is not found for API version {version}, or is not "
                               "supported for generateContent. Call ListModels to see the list of available "
                               "models and their supported methods.")
        try:
            body = json.loads(await request.body())
            assert isinstance(body, dict) and body.get("contents")
        except (ValueError, AssertionError):
            self.requests.append(RestRequest(path, backend, verdict.auth, 400))
            return _error(400, "Invalid JSON payload received.")
        record = RestRequest(path, backend, verdict.auth, 200, body=body)
        self.requests.append(record)
        fault = self._take_fault()
        if fault is not None:
            record.fault = fault.kind
            if fault.kind == "500":
                record.status = 500
                return _error(500, "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting")
            if fault.kind == "429":
                record.status = 429
                return _error(429, "Resource has been exhausted (e.g. check quota).",
                              headers={"Retry-After": str(fault.retry_after_s)})
            if fault.kind == "hang":
                assert self._stopping is not None
                try:
                    await asyncio.wait_for(self._stopping.wait(), fault.hang_s)
                except TimeoutError:
                    pass
                record.status = 504
                return _error(500, "Deadline expired before operation could complete.")
            if fault.kind == "off_schema":
                return JSONResponse(candidate(json.dumps({"summary": "A founder described an idea.", "score": 7})))
        return JSONResponse(candidate(json.dumps(answer_for(body), ensure_ascii=False)))

    async def start(self) -> None:
        from ..loopback_http import LoopbackServer

        self._stopping = asyncio.Event()
        self._server = LoopbackServer(Starlette(routes=[Route("/{path:path}", self._generate, methods=["POST"])]),
                                      host=self.host, graceful_s=2.0)
        await self._server.start()
        self.port = self._server.port

    async def stop(self) -> None:
        if self._server is None:
            return
        assert self._stopping is not None
        self._stopping.set()  # a hanging request answers now
        await self._server.stop()
        self._server = None


__all__ = ["RestEmulator", "RestFault", "RestRequest", "answer_for", "report_facts", "founder_lines", "shape"]
