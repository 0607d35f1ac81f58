"""The interviewer's built-in tools: ``save_note``, ``lookup_market``, ``end_call``.

Each declares its behaviour explicitly (Gemini 3.8 Live makes an undeclared call non-blocking,
2.5 makes it blocking; we rely on neither), and each answers in the informative shape of
:mod:`telephony_bridge.tools` (``status``, ``retryable``, ``message`` plus its own fields), so the
model knows whether to carry on, ask the founder, or try once more::

    tool           behaviour      scheduling  why
    save_note      NON_BLOCKING   SILENT      bookkeeping: the interview must not pause for it and
                                              the model must not talk about it ("noted!")
    lookup_market  NON_BLOCKING   WHEN_IDLE   a lookup may take a while (an external API): the agent
                                              keeps the conversation going and brings the figures
                                              up at the next pause, never over the founder
                                              (INTERRUPT would cut the agent off, and on 2.5 talk
                                              over the founder)
    end_call       BLOCKING       -           the goodbye comes first (the persona says so) and
                                              nothing after it: the model waits for the answer
                                              instead of starting a new sentence the hang-up would
                                              cut; the bridge hangs up when the goodbye's mark
                                              returns from Twilio

Where a model cannot take a declaration (3.1 Flash Live is blocking only; 3.8 extended thinking
is async only), :func:`telephony_bridge.gemini.messages.build_setup` leaves the field out and the
model's own behaviour applies (see :mod:`telephony_bridge.gemini.profiles`).

* ``save_note(fact, topic)`` appends ``{"topic", "fact", "t"}`` to the call's notes (the call
  record keeps them) and answers with the count.
* ``lookup_market(market)`` matches the name against ``assets/markets.json`` (illustrative figures
  for about 25 markets, names plus aliases, fuzzy matching with :mod:`difflib`) and answers at
  once. An unknown market is ``status: no_results`` with up to three suggestions and
  ``retryable: false``: the model asks the founder instead of sweeping through spellings. (The
  demo and tests slow it down with :func:`telephony_bridge.tools.with_delay` to give the filler
  something to cover; the product never sleeps.)
* ``end_call(reason?)`` asks the bridge to end the call (``ctx.request_end_call(reason)``).
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from pathlib import Path
from typing import Any

from .tools import Behavior, Scheduling, Tool, ToolContext, ToolRegistry, answer, failure, no_results

MARKETS_PATH = Path(__file__).resolve().parent / "assets" / "markets.json"

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
        return failure("invalid_argument", "empty_fact",
                       "The fact was empty. Call save_note again with the fact in one sentence.", retryable=True)
    if len(ctx.notes) >= MAX_NOTES:
        return failure("unavailable", "notebook_full",
                       f"The notebook is full ({MAX_NOTES} notes). Stop saving notes; carry on with the interview.")
    if len(fact) > MAX_FACT_CHARS:
        fact = fact[: MAX_FACT_CHARS - 1].rstrip() + "…"
    ctx.notes.append({"topic": args["topic"], "fact": fact, "t": ctx.clock()})
    return answer("Noted. Do not mention the note; carry on with the interview.", count=len(ctx.notes))


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


def make_lookup_market(data_path: str | None = None) -> Tool:
    """``lookup_market`` (optionally over another data file)."""
    path = str(data_path or MARKETS_PATH)

    async def lookup_market(args: dict, ctx: ToolContext) -> dict:
        name = " ".join(args["market"].split())[:200]
        if not name:
            return failure("invalid_argument", "empty_market",
                           "No market was named. Ask the founder which market they are in, then call "
                           "lookup_market once with it.", retryable=True)
        meta, markets = load_markets(path)
        market, suggestions = match_market(name, markets)
        source = meta.get("source", "illustrative figures")
        if market is None:
            if suggestions:
                message = (f"No figures for {name!r}. Do not search again with other wording. If it "
                           f"is close to one of {', '.join(suggestions)}, ask the founder; otherwise "
                           "carry on without figures.")
            else:
                message = (f"No figures for {name!r}, and nothing close. Do not search again; carry on "
                           "without figures.")
            return no_results(message, found=False, query=name, suggestions=suggestions)
        spoken = _spoken_usd(market["tam_usd"])
        return answer(
            f"{market['name']}: {spoken}, growing about {market['growth_pct']}% a year "
            f"({source}). Give it as a rough sense of scale, not as research.",
            found=True,
            query=name,
            market=market["name"],
            tam_usd=market["tam_usd"],
            tam_spoken=spoken,
            growth_pct_per_year=market["growth_pct"],
            year=meta.get("year"),
            notable_players=list(market.get("players", [])),
            source=source,
        )

    return Tool(
        name="lookup_market",
        description=(
            "Look up the approximate global size (total addressable market, US dollars) and yearly "
            "growth of a market the founder names, plus notable players. It runs in the background: "
            "keep the conversation going, and bring the figures up when there is a pause. Figures are "
            "illustrative: present them as a rough sense of scale, not as research."
        ),
        parameters=LOOKUP_MARKET_PARAMETERS,
        handler=lookup_market,
        timeout_s=5.0,
        behavior=Behavior.NON_BLOCKING,
        scheduling=Scheduling.WHEN_IDLE,
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
    return answer("The call ends once your goodbye has played. Say nothing more.", ending=True)


# ---------------------------------------------------------------------------------- all

def builtin_tools() -> list[Tool]:
    return [
        Tool(
            name="save_note",
            description=(
                "Record one key fact the founder has just stated about their startup, in one short "
                "sentence, with its topic. It runs silently in the background: do not mention it, "
                "carry on with the interview."
            ),
            parameters=SAVE_NOTE_PARAMETERS,
            handler=save_note,
            timeout_s=2.0,
            behavior=Behavior.NON_BLOCKING,
            scheduling=Scheduling.SILENT,
        ),
        make_lookup_market(),
        Tool(
            name="end_call",
            description=(
                "Hang up the phone call. Say a short goodbye to the founder FIRST, then call this. "
                "Use it when the founder wants to stop, or after the wrap-up."
            ),
            parameters=END_CALL_PARAMETERS,
            handler=end_call,
            timeout_s=2.0,
            behavior=Behavior.BLOCKING,
        ),
    ]


def builtin_registry() -> ToolRegistry:
    """A registry holding the three built-ins (what the server serves)."""
    return ToolRegistry(builtin_tools())


__all__ = ["builtin_tools", "builtin_registry", "make_lookup_market", "match_market", "load_markets", "save_note",
           "end_call", "NOTE_TOPICS", "MARKETS_PATH"]
