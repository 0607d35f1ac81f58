"""Testing kit: a Twilio caller simulator and a Gemini Live emulator (real sockets, real protocols).

The emulator is the package :mod:`.gemini`, the simulator :mod:`.twilio`; ``emulator.py`` and
``simulator.py`` keep their old module paths (and ``python -m``) working.
"""

# The simulator is loaded on first use (PEP 562), so that importing this package (for
# `processes` or `local_call`, say) does not import the whole kit.
_SIMULATOR_NAMES = ("CallerScript", "CallerSimulator", "CallResult", "Dtmf", "Hangup", "Say", "Wait", "WaitForAgent")
# The emulator likewise.
_EMULATOR_NAMES = ("Fault", "GeminiEmulator", "Scenario", "ToolCallStep")


def __getattr__(name: str) -> object:
    if name in _SIMULATOR_NAMES:
        from . import twilio

        return getattr(twilio, name)
    if name in _EMULATOR_NAMES:
        from . import gemini

        return getattr(gemini, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
