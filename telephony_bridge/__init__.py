"""telephony-bridge: a phone call (Twilio Media Streams) bridged to a Gemini Live voice agent."""

__version__ = "0.1.0"
