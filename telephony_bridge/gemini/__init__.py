"""Gemini Live API, sans I/O: typed messages, session state; plus the asyncio client adapter."""

from .messages import (
    AudioChunk, AudioInput, FunctionCall, GenerationComplete, GoAway, InputTranscription, Interrupted,
    OutputTranscription, ServerEvent, SessionResumptionUpdate, SetupComplete, SetupConfig, TextPart,
    ToolCall, ToolCallCancellation, TurnComplete, UsageMetadata, audio_stream_end, build_setup,
    client_text, parse_server_message, tool_response,
)
from .session import GeminiSession, SessionState

__all__ = [
    "AudioChunk", "AudioInput", "FunctionCall", "GenerationComplete", "GoAway", "InputTranscription",
    "Interrupted", "OutputTranscription", "ServerEvent", "SessionResumptionUpdate", "SetupComplete",
    "SetupConfig", "TextPart", "ToolCall", "ToolCallCancellation", "TurnComplete", "UsageMetadata",
    "audio_stream_end", "build_setup", "client_text", "parse_server_message", "tool_response",
    "GeminiSession", "SessionState",
]
