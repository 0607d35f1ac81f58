"""The caller simulator's old module path, kept for ``python -m`` and existing imports.

The simulator is the package :mod:`telephony_bridge.testing.twilio` (its docstring is the
overview). ``python -m telephony_bridge.testing.simulator`` places a call that replays a
recording (:mod:`telephony_bridge.testing.twilio.cli`); everything public is re-exported here.
"""

from __future__ import annotations

import sys

from .twilio import *  # noqa: F403 (re-exported: this module's public names are the package's)
from .twilio import __all__

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))  # noqa: F405
