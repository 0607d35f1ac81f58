"""The interviewer's built-in tools: ``save_note``, ``lookup_market``, ``end_call``.

* ``save_note(fact, topic)`` appends ``{"topic", "fact", "t"}`` to the call's notes (the call
  record keeps them) and answers ``{"saved": true, "count": n}``.
* ``lookup_market(market)`` is an example SLOW lookup: it waits :data:`MARKET_LATENCY_S`
  (standing in for an external API, so the bridge's filler audio has something to cover), then
  matches the name against ``assets/markets.json`` (illustrative figures for about 25 markets,
  names plus aliases, fuzzy matching with :mod:`difflib`). Unknown markets answer
  ``{"found": false, "suggestions": [...]}``.
* ``end_call(reason?)`` asks the bridge to end the call (``ctx.request_end_call(reason)``) and
  answers ``{"ending": true}``. The agent says its goodbye *before* calling it (the persona says
  so); the bridge hangs up once that goodbye's mark comes back from Twilio.

All three are BLOCKING: the model waits for the answer, and the bridge covers a slow answer with
filler audio. (NON_BLOCKING would let the model talk over a running tool, but Gemini 3.x Live
models support blocking calls only.)
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import json
import re
from pathlib import Path
from typing import Any

from .tools import Tool, ToolContext

MARKETS_PATH = Path(__file__).resolve().parent / "assets" / "markets.json"

#: ``lookup_market``'s simulated latency (an external API's round trip), seconds.
MARKET_LATENCY_S = 1.5

NOTE_TOPICS = ["problem", "customer", "competition", "business_model", "why_now", "other"]
#: Longest fact kept, and most notes per call (a runaway model must not grow the record forever).
MAX_FACT_CHARS = 500
MAX_NOTES = 200

#: A fuzzy match at or above this score counts as found; suggestions need at least this.
FOUND_SCORE = 0.8
SUGGEST_SCORE = 0.5
#: Suggestions are the best candidates within this score of the best one (at most three).
SUGGEST_SPREAD = 0.1


# ------------------------------------------------------------------------------ save_note

SAVE_NOTE_PARAMETERS: dict[str, Any] = {
    "type": "OBJECT",
    "properties": {
        "fact": {
            "type": "STRING",
            "description": "The fact in one short sentence, in the founder's terms, e.g. "
                           "'Clinics lose about ten appointments a week to cancellations.'",
        },
        "topic": {
            "type": "STRING",
            "enum": NOTE_TOPICS,
            "description": "Which part of the idea the fact is about.",
        },
    },
    "required": ["fact", "topic"],
}


async def save_note(args: dict, ctx: ToolContext) -> dict:
    fact = " ".join(args["fact"].split())
    if not fact:
        return {"error": "The fact was empty; say the fact in one sentence."}
    if len(ctx.notes) >= MAX_NOTES:
        return {"error": f"The notebook is full ({MAX_NOTES} notes); stop saving notes."}
    if len(fact) > MAX_FACT_CHARS:
        fact = fact[: MAX_FACT_CHARS - 1].rstrip() + "…"
    ctx.notes.append({"topic": args["topic"], "fact": fact, "t": ctx.clock()})
    return {"saved": True, "count": len(ctx.notes)}


# --------------------------------------------------------------------------- lookup_market

LOOKUP_MARKET_PARAMETERS: dict[str, Any] = {
    "type": "OBJECT",
    "properties": {
        "market": {
            "type": "STRING",
            "description": "The market or industry the founder named, e.g. 'dental practice "
                           "software' or 'online language learning'.",
        },
    },
    "required": ["market"],
}

_FILLER_WORDS = {"the", "a", "an", "market", "markets", "industry", "sector", "space", "global", "for", "of"}


def _normalise(text: str) -> str:
    words = re.sub(r"[^a-z0-9+]+", " ", text.lower()).split()
    return " ".join(w for w in words if w not in _FILLER_WORDS)


@functools.lru_cache(maxsize=4)
def load_markets(path: str = str(MARKETS_PATH)) -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
    """``(meta, markets)`` from the bundled data set (read once per process)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    meta = {k: v for k, v in data.items() if k != "markets"}
    return meta, tuple(data["markets"])


def _spoken_usd(amount: float) -> str:
    """Round dollars the way people say them: 'about 2.5 billion dollars'."""
    for scale, word in ((1e12, "trillion"), (1e9, "billion"), (1e6, "million"), (1e3, "thousand")):
        if amount >= scale:
            value = amount / scale
            number = f"{value:.1f}".rstrip("0").rstrip(".") if value < 10 else f"{value:.0f}"
            return f"about {number} {word} dollars"
    return f"about {amount:.0f} dollars"


def _score(query: str, key: str) -> float:
    """Similarity of a normalised query and a normalised name/alias, 0..1."""
    whole = difflib.SequenceMatcher(None, query, key).ratio()
    q_words, k_words = query.split(), key.split()
    if not q_words or not k_words:
        return whole
    # Every query word close to some word of the key ("dentist software" ~ "dental software").
    per_word = [max(difflib.SequenceMatcher(None, q, k).ratio() for k in k_words) for q in q_words]
    coverage = sum(per_word) / len(per_word)
    # Penalise keys with many words the query did not mention, so "ai" does not match everything.
    extra = max(0, len(k_words) - len(q_words))
    return max(whole, coverage * (0.95 - 0.05 * extra))


def match_market(name: str, markets: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any] | None, list[str]]:
    """``(market, [])`` for a match, else ``(None, up to three suggested market names)``."""
    query = _normalise(name)
    if not query:
        return None, []
    best: dict[str, float] = {}
    by_name = {m["name"]: m for m in markets}
    for market in markets:
        for key in [market["name"], *market.get("aliases", [])]:
            norm = _normalise(key)
            if norm == query:
                return market, []
            score = _score(query, norm)
            if score > best.get(market["name"], 0.0):
                best[market["name"]] = score
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
    if ranked and ranked[0][1] >= FOUND_SCORE:
        # A clear winner only: two markets within a hair of each other is a question, not a match.
        if len(ranked) == 1 or ranked[0][1] - ranked[1][1] >= 0.02:
            return by_name[ranked[0][0]], []
    if not ranked:
        return None, []
    floor = max(SUGGEST_SCORE, ranked[0][1] - SUGGEST_SPREAD)
    return None, [n for n, s in ranked[:3] if s >= floor]


def make_lookup_market(latency_s: float = MARKET_LATENCY_S, data_path: str | None = None) -> Tool:
    """``lookup_market`` with a given simulated latency (and optionally another data file)."""
    path = str(data_path or MARKETS_PATH)

    async def lookup_market(args: dict, ctx: ToolContext) -> dict:
        name = args["market"].strip()[:200]
        if latency_s > 0:
            await asyncio.sleep(latency_s)  # stands in for an external market-data API
        meta, markets = load_markets(path)
        market, suggestions = match_market(name, markets)
        source = meta.get("source", "illustrative figures")
        if market is None:
            return {"found": False, "query": name, "suggestions": suggestions,
                    "note": "No figures for that market; carry on without them."}
        return {
            "found": True,
            "query": name,
            "market": market["name"],
            "tam_usd": market["tam_usd"],
            "tam_spoken": _spoken_usd(market["tam_usd"]),
            "growth_pct_per_year": market["growth_pct"],
            "year": meta.get("year"),
            "notable_players": list(market.get("players", [])),
            "source": source,
        }

    return Tool(
        name="lookup_market",
        description=(
            "Look up the approximate global size (total addressable market, US dollars) and yearly "
            "growth of a market the founder names, plus notable players. Figures are illustrative: "
            "present them as a rough sense of scale, not as research."
        ),
        parameters=LOOKUP_MARKET_PARAMETERS,
        handler=lookup_market,
        timeout_s=max(5.0, latency_s + 3.0),
    )


# -------------------------------------------------------------------------------- end_call

END_CALL_PARAMETERS: dict[str, Any] = {
    "type": "OBJECT",
    "properties": {
        "reason": {
            "type": "STRING",
            "description": "Why the call ends, e.g. 'interview complete' or 'founder asked to stop'.",
        },
    },
    "required": [],
}


async def end_call(args: dict, ctx: ToolContext) -> dict:
    reason = " ".join(str(args.get("reason") or "").split())[:200] or "end_call"
    ctx.request_end_call(reason)
    return {"ending": True}


# ---------------------------------------------------------------------------------- all

def builtin_tools(*, market_latency_s: float | None = None) -> list[Tool]:
    return [
        Tool(
            name="save_note",
            description=(
                "Record one key fact the founder has just stated about their startup, in one short "
                "sentence, with its topic. Call it quietly while the interview goes on."
            ),
            parameters=SAVE_NOTE_PARAMETERS,
            handler=save_note,
            timeout_s=2.0,
        ),
        make_lookup_market(MARKET_LATENCY_S if market_latency_s is None else market_latency_s),
        Tool(
            name="end_call",
            description=(
                "Hang up the phone call. Say a short goodbye to the founder FIRST, then call this. "
                "Use it when the founder wants to stop, or after the wrap-up."
            ),
            parameters=END_CALL_PARAMETERS,
            handler=end_call,
            timeout_s=2.0,
        ),
    ]


__all__ = ["builtin_tools", "make_lookup_market", "match_market", "load_markets", "save_note", "end_call",
           "MARKET_LATENCY_S", "NOTE_TOPICS", "MARKETS_PATH"]
