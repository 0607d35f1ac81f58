"""Testing kit: a Twilio caller simulator and a Gemini Live emulator (real sockets, real protocols)."""

from .simulator import CallerScript, CallerSimulator, CallResult, Dtmf, Hangup, Say, Wait, WaitForAgent
from .emulator import Fault, GeminiEmulator, Scenario, ToolCallStep
