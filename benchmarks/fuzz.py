"""Fuzz the two peer parsers and the call core: nothing a peer sends may escape.

    python benchmarks/fuzz.py                       # 1,000,000 inputs on 2 processes (a few minutes)
    python benchmarks/fuzz.py -n 20000 -j 1         # a quick look
    python benchmarks/fuzz.py --out benchmarks/fuzz-latest.txt

Every generated input goes through its parser *and* through a live call core:

- Twilio-side inputs: ``parse_event(x)`` must return an event or raise ``TwilioProtocolError``;
  then ``CallCore.receive_twilio(x, now)`` must not raise anything at all.
- Gemini-side inputs: ``parse_server_message(x)`` must return a list of events or raise
  ``GeminiProtocolError``; then ``CallCore.receive_gemini(x, now)`` must not raise.

An *escape* is any other exception (from a parser, from the core, from the log formatter while
the core logs), an input that takes longer than the per-input budget (``--budget``, default 1 s;
a SIGALRM watchdog interrupts a true hang after ``--hang`` seconds), or an outbound message the
core queued that is not a valid JSON object of the right shape (a peer managed to inject into
what we send). The script exits 1 on any escape and prints each one with a reproducer.

Inputs, per side, in proportions that keep the core in deep states (streaming, agent speaking,
tools running, reconnecting) rather than stuck on the first error:

- ``valid``: a well-formed message from a template (drives the call forward);
- ``mutated``: a template, parsed, with 1-3 structural mutations (a value replaced by a hostile
  one: wrong type, huge/negative number, deep nesting, long or odd unicode string, bad base64;
  a key deleted, added, renamed camel↔snake; a list emptied or a value wrapped), re-serialised,
  then sometimes byte-level damage (flips, insertions of ``NaN``/``1e999``/5000-digit numbers,
  truncation, splices, UTF-16);
- ``random``: random bytes, random JSON values, pathological nesting.

Each core lives for one "episode" (a few hundred inputs) on a fake clock that the fuzzer moves
forward (sometimes by 15-100 s jumps, so no-media and call-length timers fire), calling ``tick``,
echoing the core's marks back like Twilio, finishing tool calls, and closing/reopening the
Gemini side the way :class:`~telephony_bridge.bridge.CallBridge` does.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import multiprocessing as mp
import os
import random
import signal
import sys
import time
import traceback
from collections import Counter
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from telephony_bridge.call import CallConfig, CallCore  # noqa: E402
from telephony_bridge.errors import GeminiProtocolError, TwilioProtocolError  # noqa: E402
from telephony_bridge.gemini.messages import SetupConfig, parse_server_message  # noqa: E402
from telephony_bridge.gemini.session import SessionState  # noqa: E402
from telephony_bridge.log import JsonFormatter  # noqa: E402
from telephony_bridge.twilio.events import parse_event  # noqa: E402

EPISODE = 400  # inputs per call core


class Hang(BaseException):
    """Raised by the SIGALRM watchdog (BaseException: no ``except Exception`` may swallow it)."""


def _alarm(signum: int, frame: Any) -> None:
    raise Hang()


# ---------------------------------------------------------------------------------------------
# Templates


def _sid(rng: random.Random, prefix: str) -> str:
    return prefix + "".join(rng.choice("0123456789abcdef") for _ in range(32))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _ulaw(rng: random.Random, n: int) -> bytes:
    if rng.random() < 0.5:
        return bytes([0xFF]) * n  # μ-law silence
    return rng.randbytes(n)  # loud noise: the core hears "speech"


def _pcm24(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


class Templates:
    """Well-formed messages of both sides (fresh objects each time)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.stream_sid = _sid(rng, "MZ")
        self.call_sid = _sid(rng, "CA")
        self.seq = 0
        self.ts = 0
        self.marks: list[str] = []  # names the core sent, for Twilio-like echoes
        self.tool_ids: list[str] = []

    # Twilio
    def connected(self) -> dict[str, Any]:
        return {"event": "connected", "protocol": "Call", "version": "1.0.0"}

    def start(self) -> dict[str, Any]:
        self.seq += 1
        return {"event": "start", "sequenceNumber": str(self.seq), "streamSid": self.stream_sid,
                "start": {"streamSid": self.stream_sid, "accountSid": _sid(self.rng, "AC"), "callSid": self.call_sid,
                          "tracks": ["inbound"], "customParameters": {"from": "+15551230000", "stream_token": "v1.1.x"},
                          "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}

    def media(self) -> dict[str, Any]:
        self.seq += 1
        self.ts += 20
        n = 160 if self.rng.random() < 0.9 else self.rng.choice([1, 80, 159, 161, 320, 1600])
        return {"event": "media", "sequenceNumber": str(self.seq), "streamSid": self.stream_sid,
                "media": {"track": "inbound", "chunk": str(self.seq), "timestamp": str(self.ts),
                          "payload": _b64(_ulaw(self.rng, n))}}

    def mark(self) -> dict[str, Any]:
        name = self.marks.pop(0) if self.marks and self.rng.random() < 0.9 else f"t{self.rng.randint(0, 9)}.{self.rng.randint(0, 99)}"
        return {"event": "mark", "sequenceNumber": str(self.seq), "streamSid": self.stream_sid, "mark": {"name": name}}

    def dtmf(self) -> dict[str, Any]:
        return {"event": "dtmf", "streamSid": self.stream_sid, "sequenceNumber": str(self.seq),
                "dtmf": {"track": "inbound_track", "digit": self.rng.choice("0123456789*#")}}

    def stop(self) -> dict[str, Any]:
        return {"event": "stop", "sequenceNumber": str(self.seq), "streamSid": self.stream_sid,
                "stop": {"accountSid": _sid(self.rng, "AC"), "callSid": self.call_sid}}

    def twilio(self) -> dict[str, Any]:
        r = self.rng.random()
        if r < 0.72:
            return self.media()
        if r < 0.88:
            return self.mark()
        if r < 0.92:
            return self.dtmf()
        if r < 0.965:
            return self.connected()
        if r < 0.97:
            return self.start()  # a second start is fatal: rare, or cores would die young
        if r < 0.99:
            return {"event": self.rng.choice(["somethingNew", "heartbeat", "x"]), "streamSid": self.stream_sid}
        return self.stop()

    # Gemini
    def audio(self) -> dict[str, Any]:
        n = self.rng.choice([960, 1920, 3840]) if self.rng.random() < 0.9 else self.rng.choice([1, 3, 2, 0, 9601])
        rate = 24000 if self.rng.random() < 0.97 else self.rng.choice([16000, 8000, 44100])
        key, mime_key, inline = ("serverContent", "mimeType", "inlineData") if self.rng.random() < 0.8 else \
            ("server_content", "mime_type", "inline_data")
        data = _b64(_pcm24(self.rng, n))
        if self.rng.random() < 0.1:
            data = data.replace("+", "-").replace("/", "_").rstrip("=")
        turn = "modelTurn" if key == "serverContent" else "model_turn"
        return {key: {turn: {"parts": [{inline: {mime_key: f"audio/pcm;rate={rate}", "data": data}}]}}}

    def gemini(self) -> dict[str, Any]:
        rng = self.rng
        r = rng.random()
        if r < 0.55:
            return self.audio()
        if r < 0.62:
            return {"serverContent": {"outputTranscription": {"text": rng.choice(["Hello", " and", " why now?"])}}}
        if r < 0.67:
            return {"serverContent": {"inputTranscription": {"text": rng.choice(["I build", " tools"])}}}
        if r < 0.72:
            return {"serverContent": {"generationComplete": True}}
        if r < 0.78:
            return {"serverContent": {"turnComplete": True}, "usageMetadata": {"totalTokenCount": rng.randint(0, 9999)}}
        if r < 0.82:
            return {"serverContent": {"interrupted": True}}
        if r < 0.86:
            cid = f"call-{rng.randint(0, 50)}"
            self.tool_ids.append(cid)
            return {"toolCall": {"functionCalls": [{"id": cid, "name": rng.choice(["save_note", "nope", "end_call"]),
                                                    "args": {"topic": "market", "text": "big"}}]}}
        if r < 0.88:
            ids = [rng.choice(self.tool_ids)] if self.tool_ids else ["c0"]
            return {"toolCallCancellation": {"ids": ids}}
        if r < 0.90:
            return {"goAway": {"timeLeft": rng.choice(["50s", "1s", "0.5s", "0s"])}}
        if r < 0.95:
            return {"sessionResumptionUpdate": {"newHandle": f"h{rng.randint(0, 999)}", "resumable": True}}
        if r < 0.97:
            return {"setupComplete": {}}
        return {"serverContent": {"modelTurn": {"parts": [{"text": "thinking"}]}}}


# ---------------------------------------------------------------------------------------------
# Mutation


_KEYS = [
    "event", "start", "media", "mark", "stop", "dtmf", "payload", "track", "chunk", "timestamp", "name",
    "streamSid", "callSid", "accountSid", "customParameters", "mediaFormat", "encoding", "sampleRate",
    "channels", "tracks", "digit", "sequenceNumber", "serverContent", "server_content", "modelTurn",
    "model_turn", "parts", "inlineData", "inline_data", "mimeType", "mime_type", "data", "interrupted",
    "turnComplete", "generationComplete", "inputTranscription", "outputTranscription", "text", "toolCall",
    "functionCalls", "id", "args", "toolCallCancellation", "ids", "goAway", "timeLeft",
    "sessionResumptionUpdate", "newHandle", "resumable", "usageMetadata", "totalTokenCount", "setupComplete",
    "__proto__", "", "\u0000",
]


def _deep(n: int, leaf: Any = 1) -> Any:
    value: Any = leaf
    for i in range(n):
        value = [value] if i % 2 else {"a": value}
    return value


def hostile_value(rng: random.Random) -> Any:
    r = rng.randrange(30)
    if r == 0:
        return None
    if r == 1:
        return rng.choice([True, False])
    if r == 2:
        return rng.choice([0, -1, 1, 2**31, 2**53 + 1, 2**63, -(2**63), 10**30, 10**300])
    if r == 3:
        return rng.choice([0.5, -0.0, 1e308, -1e308, 5e-324, 8000.0, 1.0])
    if r == 4:
        return ""
    if r == 5:
        return "x" * rng.choice([1, 64, 65, 500, 4097, 9000, 70000])
    if r == 6:
        return rng.choice(["\u0000", "²", "١٢٣", "\ud7ff", "é", "😀" * 3, "\u202e", "MZ\"odd\\sid", "a\nb", "<x/>"])
    if r == 7:
        return rng.choice(["-5", "1e5", " 12", "0x10", "٣", "12a", "9" * 30, "NaN", "Infinity", "00"])
    if r == 8:
        return []
    if r == 9:
        return {}
    if r == 10:
        return [rng.randint(0, 9) for _ in range(rng.randint(1, 4))]
    if r == 11:
        return {"a": 1, "b": [None]}
    if r == 12:
        return _deep(rng.choice([5, 31, 33, 64, 200, 600]))
    if r == 13:
        return rng.choice(["@@@", "AAA", "A", "====", "AB=C", "YQ", "-_-_", "AAAA" * 3000, "Zm9v\n", "Zm9v===="])
    if r == 14:
        return _b64(rng.randbytes(rng.choice([0, 1, 2, 3, 159, 161, 7999, 8001, 16000])))
    if r == 15:
        return rng.choice(["audio/pcm", "audio/pcm;rate=999999", "audio/pcm;rate=١٢٣٤", "video/mp4", "audio/x-mulaw"])
    if r == 16:
        return rng.choice(["50s", "-1s", "1e400s", "9" * 400 + "s", "0.000001s", "s", "50", "1.5.5s"])
    if r == 17:
        return rng.choice(["media", "start", "stop", "mark", "dtmf", "connected", "clear", "Media", "x" * 80])
    if r == 18:
        return rng.choice(["inbound", "outbound", "both", "inbound_track"])
    if r == 19:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randint(1, 20)))
    if r == 20:
        return rng.randint(-(10**6), 10**6)
    return random_json(rng, 3)


def random_json(rng: random.Random, depth: int) -> Any:
    r = rng.randrange(8 if depth > 0 else 5)
    if r == 0:
        return None
    if r == 1:
        return rng.random() < 0.5
    if r == 2:
        return rng.choice([rng.randint(-1000, 1000), rng.random() * 1e6, 2**64])
    if r == 3:
        return "".join(rng.choice("ab01 _-/+=\"\\\u00e9") for _ in range(rng.randint(0, 12)))
    if r == 4:
        return rng.choice(_KEYS)
    if r in (5, 6):
        return {rng.choice(_KEYS): random_json(rng, depth - 1) for _ in range(rng.randint(0, 4))}
    return [random_json(rng, depth - 1) for _ in range(rng.randint(0, 4))]


def _slots(value: Any, out: list[tuple[Any, Any]]) -> None:
    """Every (container, key-or-index) in a JSON value."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                out.append((node, k))
                stack.append(v)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                out.append((node, i))
                stack.append(v)


def _camel_snake(key: str) -> str:
    if "_" in key:
        head, *rest = key.split("_")
        return head + "".join(p.title() for p in rest)
    return "".join("_" + c.lower() if c.isupper() else c for c in key)


def mutate_structure(rng: random.Random, msg: Any) -> Any:
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        slots: list[tuple[Any, Any]] = []
        _slots(msg, slots)
        if not slots:
            return hostile_value(rng)
        container, key = rng.choice(slots)
        op = rng.randrange(8)
        if op <= 2:
            container[key] = hostile_value(rng)
        elif op == 3:
            del container[key]
        elif op == 4 and isinstance(container, dict):
            container[rng.choice(_KEYS)] = hostile_value(rng)
        elif op == 5 and isinstance(container, dict) and isinstance(key, str):
            container[_camel_snake(key)] = container.pop(key)
        elif op == 6:
            container[key] = [container[key]] if rng.random() < 0.5 else {"value": container[key]}
        else:
            value = container[key]
            if isinstance(value, list):
                if value and rng.random() < 0.5:
                    value.extend(value[: rng.randint(1, 3)])
                else:
                    value.clear()
            elif isinstance(value, str) and value:
                i = rng.randrange(len(value))
                container[key] = value[:i] + rng.choice(["=", "@", "\u00e9", "", "A", "-", "\u0000"]) + value[i + 1:]
            else:
                container[key] = hostile_value(rng)
    return msg


_TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"9" * 5000, b"null", b"{", b"[", b"]",
           b"}", b",", b":", b"\"", b"\\", b"\x00", b"\xff", b"\xc3", b"\"\\ud800\"", b"\"\\u0000\"", b"true"]


def mutate_bytes(rng: random.Random, data: bytes) -> bytes | str:
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4))):
        op = rng.randrange(7)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(pos, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[pos:pos] = rng.choice(_TOKENS)
        elif op == 2:
            del b[pos: pos + rng.randint(1, 16)]
        elif op == 3:
            del b[pos:]
        elif op == 4:
            end = min(len(b), pos + rng.randint(1, 64))
            b[pos:pos] = b[pos:end] * rng.randint(1, 5)
        elif op == 5:
            b[pos:pos] = rng.randbytes(rng.randint(1, 8))
        else:
            # replace a number with a hostile one
            digits = [i for i, c in enumerate(b) if 48 <= c <= 57]
            if digits:
                i = rng.choice(digits)
                b[i:i + 1] = rng.choice([b"1e999", b"-0", b"9" * 4400, b"1.5", b"NaN", b"-1"])
    out = bytes(b)
    r = rng.random()
    if r < 0.4:
        return out.decode("utf-8", "replace")
    if r < 0.45:
        try:
            return out.decode("utf-8").encode("utf-16")
        except UnicodeDecodeError:
            return out
    return out


def random_input(rng: random.Random) -> bytes | str:
    r = rng.randrange(20)
    if r >= 6:
        r = rng.choice((0, 1, 2, 3, 5))
    if r == 0:
        return rng.randbytes(rng.randint(0, 300))
    if r == 1:
        n = rng.choice([10, 100, 1000, 5000, 100_000])
        return rng.choice(["[", "{\"a\":"]) * n + rng.choice(["", "1", "]" * n])
    if r == 2:
        return json.dumps(random_json(rng, 4))
    if r == 3:
        return rng.choice(["", " ", "{}", "[]", "null", "1", "\"x\"", "NaN", "{\"event\":null}", "\ufeff{}",
                           "{\"event\":\"media\"}", "{\"serverContent\":{}}", "{\"setupComplete\":null}"])
    if r == 4:
        return "x" * rng.choice([65536, 65537, 70000])
    return json.dumps(hostile_value(rng))


def generate(rng: random.Random, template: dict[str, Any]) -> tuple[str, bytes | str]:
    r = rng.random()
    if r < 0.35:
        text = json.dumps(template, separators=(",", ":"))
        return "valid", text if rng.random() < 0.5 else text.encode()
    if r < 0.88:
        msg = mutate_structure(rng, template)
        try:
            text = json.dumps(msg, separators=(",", ":"), ensure_ascii=rng.random() < 0.5)
        except (ValueError, RecursionError):
            text = "{}"
        data: bytes | str = text.encode("utf-8", "surrogatepass")
        if rng.random() < 0.3:
            data = mutate_bytes(rng, data)  # type: ignore[arg-type]
        elif rng.random() < 0.5:
            data = text
        return "mutated", data
    return "random", random_input(rng)


# ---------------------------------------------------------------------------------------------
# The run


class _Escapes(logging.Handler):
    """Formats every record the core logs (the JSON formatter is part of the path) and turns a
    formatting failure into an escape instead of logging's stderr traceback."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.format(record)
        except Exception:
            self.errors.append(traceback.format_exc(limit=4))


def _phrases(kind: str) -> bytes | None:
    return b"\x7f" * 1600 if kind != "none" else None


def _check_outbox(core: CallCore, tpl: Templates) -> str | None:
    """Drain the core's outboxes like the adapter would; describe the first malformed message."""
    problem = None
    for message in core.twilio_out:
        try:
            obj = json.loads(message)
            ok = isinstance(obj, dict) and obj.get("event") in ("media", "mark", "clear") \
                and obj.get("streamSid") == core.stream_sid
            if ok and obj["event"] == "mark":
                tpl.marks.append(obj["mark"]["name"])
        except Exception:
            ok = False
        if not ok and problem is None:
            problem = f"bad outbound Twilio message: {message[:200]!r}"
    core.twilio_out.clear()
    for message in core.gemini_out:
        try:
            ok = isinstance(json.loads(message), dict)
        except Exception:
            ok = False
        if not ok and problem is None:
            problem = f"bad outbound Gemini message: {message[:200]!r}"
    core.gemini_out.clear()
    return problem


def run(worker: int, count: int, seed: int, budget: float, hang: float) -> dict[str, Any]:
    rng = random.Random(seed * 1000 + worker)
    sink = _Escapes()
    root = logging.getLogger("telephony_bridge")
    root.handlers[:] = [sink]
    root.setLevel(logging.DEBUG)
    root.propagate = False
    signal.signal(signal.SIGALRM, _alarm)

    escapes: list[dict[str, Any]] = []
    kinds: dict[str, Counter[str]] = {"twilio": Counter(), "gemini": Counter()}
    sources: Counter[str] = Counter()
    ended: Counter[str] = Counter()
    reached: Counter[str] = Counter()  # the cores' own counters, summed: how deep the fuzz got
    slowest = (0.0, "")
    done = 0
    core: CallCore | None = None
    tpl = Templates(rng)
    now = 0.0
    in_episode = 0
    pending_reconnect = False
    t_start = time.perf_counter()

    escaped = Counter()

    def escape(where: str, exc: BaseException | str, data: Any) -> None:
        escaped[where] += 1
        text = exc if isinstance(exc, str) else "".join(traceback.format_exception(exc, limit=-4))
        if len(escapes) < 50:
            escapes.append({"where": where, "error": text[-1500:], "input": repr(data)[:600]})

    while done < count:
        if core is None or in_episode >= EPISODE:
            if core is not None:
                ended[core.ended or "open"] += 1
                reached.update({k: v for k, v in core.counters.items() if v})
            tpl = Templates(rng)
            now = rng.uniform(0, 1e6)
            config = CallConfig(tool_names=frozenset({"save_note", "end_call"}) if rng.random() < 0.5 else None)
            core = CallCore(SetupConfig(model="m"), config, now=now, phrases=_phrases if rng.random() < 0.7 else None)
            in_episode = 0
            pending_reconnect = False
            try:
                core.gemini_connected(now)
                if rng.random() < 0.9:
                    core.receive_gemini(b'{"setupComplete":{}}', now)
                if rng.random() < 0.85:
                    core.receive_twilio(json.dumps(tpl.connected()), now)
                    core.receive_twilio(json.dumps(tpl.start()), now)
                problem = _check_outbox(core, tpl)
                if problem:
                    escape("core-outbox", problem, "(preamble)")
            except BaseException as exc:  # noqa: BLE001 - the point is to see everything
                escape("core-preamble", exc, "")
                core = None
                continue

        # Move the clock: mostly one frame, sometimes long silences (timers must fire cleanly).
        r = rng.random()
        if r < 0.8:
            now += 0.02
        elif r < 0.997:
            now += rng.choice([0.0, 0.0, 0.001, 0.1, 0.5, 1.0, 3.0])
        else:
            now += rng.choice([11.0, 100.0, 4000.0])

        side = "twilio" if rng.random() < 0.55 else "gemini"
        source, data = generate(rng, tpl.twilio() if side == "twilio" else tpl.gemini())
        sources[f"{side}:{source}"] += 1
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, hang)
        try:
            # 1. the parser: an event, or the one typed error
            try:
                if side == "twilio":
                    parse_event(data)
                else:
                    parse_server_message(data)
                kinds[side]["(parsed)"] += 1
            except (TwilioProtocolError if side == "twilio" else GeminiProtocolError) as err:
                kinds[side][err.kind + (" (fatal)" if err.fatal else "")] += 1
            except BaseException as exc:  # noqa: BLE001
                escape(f"parser-{side}", exc, data)
            # 2. the call core: nothing at all may come out
            try:
                if side == "twilio":
                    core.receive_twilio(data, now)
                else:
                    core.receive_gemini(data, now)
                # What the adapter does around input: timers, tools, reconnects, handovers.
                if rng.random() < 0.3:
                    core.next_deadline()
                    core.tick(now)
                if core.tool_requests and rng.random() < 0.5:
                    call = core.tool_requests.popleft()
                    core.tool_finished(call.id, rng.choice([{"ok": True}, {"error": "boom"}]), now,
                                       scheduling=rng.choice([None, "WHEN_IDLE"]))
                core.tool_cancellations.clear()
                if core.new_handle is not None:
                    core.new_handle = None
                if core.ended is None:
                    if pending_reconnect and rng.random() < 0.3:
                        pending_reconnect = False
                        core.gemini_connected(now)
                        if rng.random() < 0.8:
                            core.receive_gemini(b'{"setupComplete":{}}', now)
                    elif not pending_reconnect and rng.random() < 0.004:
                        code = rng.choice([1006, 1011, 1000, 1007, 1008, None])
                        pending_reconnect = core.gemini_closed(code, "fuzz", now)
                    elif core.handover_wanted(now) and core.session.state is SessionState.DRAINING:
                        core.begin_handover(now)
                        if rng.random() < 0.7:
                            core.receive_gemini(b'{"setupComplete":{}}', now)
                        else:
                            core.handover_failed("fuzz", now)
                if rng.random() < 0.01:
                    core.record()
                    core.summary()
                problem = _check_outbox(core, tpl)
                if problem:
                    escape("core-outbox", problem, data)
                if core.ended is not None and rng.random() < 0.05:
                    in_episode = EPISODE  # a finished call: start a new one soon
            except BaseException as exc:  # noqa: BLE001
                escape(f"core-{side}", exc, data)
                core = None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        elapsed = time.perf_counter() - t0
        if elapsed > slowest[0]:
            slowest = (elapsed, repr(data)[:120])
        if elapsed > budget:
            escape(f"budget-{side}", f"took {elapsed:.3f} s (budget {budget} s)", data)
        for err in sink.errors:
            escape("log-format", err, data)
        sink.errors.clear()
        done += 1
        in_episode += 1

    if core is not None:
        ended[core.ended or "open"] += 1
        reached.update({k: v for k, v in core.counters.items() if v})
    return {"worker": worker, "count": done, "escapes": escapes, "escaped": escaped, "kinds": kinds, "sources": sources,
            "ended": ended, "reached": reached, "slowest": slowest, "seconds": time.perf_counter() - t_start}


def _run_star(args: tuple[int, int, int, float, float]) -> dict[str, Any]:
    return run(*args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--count", type=int, default=1_000_000, help="inputs in all (default 1,000,000)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds one input may take (default 1)")
    parser.add_argument("--hang", type=float, default=10.0, help="watchdog: interrupt an input after this long")
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    jobs = max(1, args.jobs)
    shares = [args.count // jobs + (1 if i < args.count % jobs else 0) for i in range(jobs)]
    t0 = time.perf_counter()
    work = [(i, shares[i], seed, args.budget, args.hang) for i in range(jobs)]
    if jobs == 1:
        results = [_run_star(work[0])]
    else:
        with mp.get_context("fork").Pool(jobs) as pool:
            results = pool.map(_run_star, work)
    wall = time.perf_counter() - t0

    total = sum(r["count"] for r in results)
    escapes = [e for r in results for e in r["escapes"]]
    escaped: Counter[str] = Counter()
    for r in results:
        escaped.update(r["escaped"])
    kinds: dict[str, Counter[str]] = {"twilio": Counter(), "gemini": Counter()}
    sources: Counter[str] = Counter()
    ended: Counter[str] = Counter()
    reached: Counter[str] = Counter()
    for r in results:
        for side in kinds:
            kinds[side].update(r["kinds"][side])
        sources.update(r["sources"])
        ended.update(r["ended"])
        reached.update(r["reached"])
    slowest = max(r["slowest"] for r in results)

    lines = [
        "telephony-bridge fuzz: Twilio parser + Gemini parser + call core",
        f"python {sys.version.split()[0]}, seed {seed}, {jobs} process(es), "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC",
        "",
        f"inputs                {total:,} (each through its parser and through a live call core)",
        f"wall time             {wall:.1f} s ({total / wall:,.0f} inputs/s)",
        f"escapes               {sum(escaped.values())}"
        + (" (" + ", ".join(f"{k}: {v}" for k, v in escaped.most_common()) + ")" if escaped else ""),
        f"slowest input         {slowest[0] * 1000:.1f} ms (budget {args.budget * 1000:.0f} ms): {slowest[1]}",
        "",
        "inputs by side and source:",
    ]
    lines += [f"  {k:<22}{v:>10,}" for k, v in sorted(sources.items())]
    for side in ("twilio", "gemini"):
        n = sum(kinds[side].values())
        lines.append(f"{side} parser outcomes ({n:,}):")
        lines += [f"  {k:<28}{v:>10,}  {100 * v / n:5.1f}%" for k, v in kinds[side].most_common()]
    lines.append(f"call cores: {sum(ended.values()):,}; how they ended:")
    lines += [f"  {k:<34}{v:>8,}" for k, v in ended.most_common()]
    lines.append("what the cores did (their counters, summed):")
    lines += [f"  {k:<34}{v:>10,}" for k, v in sorted(reached.items())]
    if escapes:
        lines.append("")
        lines.append("ESCAPES (first 50):")
        for e in escapes:
            lines.append(f"--- {e['where']}")
            lines.append(f"input: {e['input']}")
            lines.append(e["error"].rstrip())
    lines.append("")
    lines.append("FAIL" if escapes else "OK: every input parsed or raised the one typed error; the core never raised")
    report = "\n".join(lines)
    print(report)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(report + "\n")
    return 1 if escapes or escaped else 0


if __name__ == "__main__":
    sys.exit(main())
