"""HTML for the review pages (Jinja2, autoescaped): the list, one call, the login form.

:func:`standalone_view` is the call page as one self-contained file (CSS and JS inline, the
recording as a ``data:`` URI): the demo's ``review.html``.
"""

from __future__ import annotations

import base64
import json
from importlib import resources
from typing import Any

import jinja2

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("telephony_bridge.review", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.ChainableUndefined,
)

ASSETS = {"review.css": "text/css; charset=utf-8", "review.js": "text/javascript; charset=utf-8"}


def asset(name: str) -> str:
    return (resources.files("telephony_bridge.review") / "assets" / name).read_text("utf-8")


def _json_for_script(data: Any) -> str:
    """JSON safe inside <script>: no '<', so no '</script>' can end it early."""
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c").replace("\u2028", "\\u2028")


def login_page(*, base: str = "", next_path: str = "/calls", error: str | None = None) -> str:
    return _env.get_template("login.html").render(base=base, next=next_path, error=error, logout=False)


def list_page(rows: list[dict[str, Any]], *, base: str = "") -> str:
    return _env.get_template("list.html").render(rows=rows, base=base, logout=True)


def view_page(view: dict[str, Any], *, base: str = "", audio_src: str | None = None, inline: bool = False) -> str:
    ctx: dict[str, Any] = {"v": view, "base": base, "logout": not inline, "inline": inline,
                           "data_json": _json_for_script(view),
                           "audio_src": audio_src or f"{base}/calls/{view['call_sid']}/recording.wav"}
    if inline:
        ctx["css"] = asset("review.css")
        ctx["js"] = asset("review.js")
    return _env.get_template("view.html").render(**ctx)


def standalone_view(view: dict[str, Any], wav: bytes | None) -> str:
    """One file: the page, its CSS and JS, and the recording."""
    src = "data:audio/wav;base64," + base64.b64encode(wav).decode("ascii") if wav else ""
    return view_page(view, audio_src=src, inline=True)


def write_standalone(path: Any, record: dict[str, Any], wav_path: Any, report: dict[str, Any] | None = None) -> None:
    """``review.html`` for one call: the page with everything in it (the demo writes it)."""
    from pathlib import Path

    from .data import read_channels
    from .model import call_view

    wav = Path(wav_path).read_bytes() if wav_path is not None and Path(wav_path).is_file() else None
    left, right = read_channels(wav_path) if wav else (None, None)
    Path(path).write_text(standalone_view(call_view(record, left, right, report), wav), encoding="utf-8")
