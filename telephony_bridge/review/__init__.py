"""The operator's review pages: /calls and /calls/{sid}/view (see routes.py)."""

from typing import Any


def install_review(app: Any, settings: Any, store: Any, recordings: Any, calls: Any) -> None:
    return None
