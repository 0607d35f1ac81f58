"""The operator's review pages: every call on one screen, rather than in the logs.

- :mod:`.auth`    the login (operator token in a POST form) and its signed cookie.
- :mod:`.model`   what a page shows, from the call record and its recording (pure).
- :mod:`.data`    where it comes from: store, live calls, recordings, the post-call report.
- :mod:`.render`  Jinja2 templates; the self-contained page for the demo.
- :mod:`.routes`  ``/calls``, ``/calls/{sid}/view``, ``/calls/{sid}/recording.wav``, login, assets.
"""

from __future__ import annotations

from typing import Any


def install_review(app: Any, settings: Any, store: Any, recordings: Any, calls: Any) -> None:
    """Put the review routes in front of the app's (``/calls/login`` must not reach the JSON
    ``GET /calls/{call_sid}``)."""
    from .routes import review_routes

    app.router.routes[0:0] = review_routes(settings, store, recordings, calls)
