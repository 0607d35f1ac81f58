"""Testing kit: a Twilio caller simulator and a Gemini Live emulator (real sockets, real protocols)."""

# The simulator is loaded on first use (PEP 562) so that `python -m telephony_bridge.testing.simulator`
# does not find the module already imported by this package (runpy's RuntimeWarning).
_SIMULATOR_NAMES = ("CallerScript", "CallerSimulator", "CallResult", "Dtmf", "Hangup", "Say", "Wait", "WaitForAgent")
# The emulator likewise (`python -m telephony_bridge.testing.emulator`).
_EMULATOR_NAMES = ("Fault", "GeminiEmulator", "Scenario", "ToolCallStep")


def __getattr__(name: str) -> object:
    if name in _SIMULATOR_NAMES:
        from . import simulator

        return getattr(simulator, name)
    if name in _EMULATOR_NAMES:
        from . import emulator

        return getattr(emulator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
