"""Testing kit: a Twilio caller simulator and a Gemini Live emulator (real sockets, real protocols)."""

from .emulator import Fault, GeminiEmulator, Scenario, ToolCallStep

# The simulator is loaded on first use (PEP 562) so that `python -m telephony_bridge.testing.simulator`
# does not find the module already imported by this package (runpy's RuntimeWarning).
_SIMULATOR_NAMES = ("CallerScript", "CallerSimulator", "CallResult", "Dtmf", "Hangup", "Say", "Wait", "WaitForAgent")


def __getattr__(name: str) -> object:
    if name in _SIMULATOR_NAMES:
        from . import simulator

        return getattr(simulator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
