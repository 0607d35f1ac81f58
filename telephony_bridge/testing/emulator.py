"""The Gemini Live emulator's old module path, kept for ``python -m`` and existing imports.

The emulator is the package :mod:`telephony_bridge.testing.gemini` (its docstring is the
overview). ``python -m telephony_bridge.testing.emulator`` serves it until Ctrl-C
(:mod:`telephony_bridge.testing.gemini.cli`); everything public is re-exported here.
"""

from __future__ import annotations

import sys

from .gemini import *  # noqa: F403 (re-exported: this module's public names are the package's)
from .gemini import __all__

if __name__ == "__main__":
    sys.exit(main())  # noqa: F405
