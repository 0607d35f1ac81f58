"""The call core's settings (:class:`CallConfig`) and the Twilio frame size every part shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from .stall_watch import StallConfig

#: One Twilio media frame: 20 ms of μ-law at 8 kHz.
FRAME_S = 0.02
FRAME_BYTES = 160


@dataclass(slots=True)
class CallConfig:
    #: Forward agent audio at most this far ahead of the caller's playback.
    playback_lead_s: float = 0.16
    #: Place a Twilio mark after every this many agent frames (and at the end of a turn).
    mark_every_frames: int = 5
    #: Instant barge-in (barge.py): pause the agent when the caller starts talking over it, on
    #: ``pause_onset_frames`` consecutive frames the echo gate passes as double-talk; confirm on
    #: Gemini's ``interrupted`` within ``pause_confirm_s``, or resume where the caller stopped
    #: hearing. After a resume, no new pause until the caller has been quiet ``pause_rearm_s``.
    #: (Chosen from benchmarks/bargein.py and echo.py: see the README.)
    pause_on_onset: bool = True
    pause_onset_frames: int = 2
    pause_confirm_s: float = 0.7
    pause_rearm_s: float = 0.4
    #: Caller frames above this RMS (full scale 1.0) count as speech, for latency figures.
    speech_rms: float = 0.05
    #: Caller audio kept while Gemini is not ready (connecting, reconnecting), sent once it is.
    max_pending_input_s: float = 5.0
    #: Caller audio already sent since the newest resumption handle, replayed to a resumed
    #: connection so nothing the caller said after that handle is lost.
    replay_input_s: float = 10.0
    #: Caller audio per ``realtimeInput`` message (a multiple of 20 ms; 20: one per Twilio frame).
    input_chunk_ms: int = 20
    #: Around the moment Gemini's VAD should commit the caller's turn (their last speech +
    #: ``silenceDurationMs``), from this long before to this long after, caller frames go one
    #: by one: the frame that completes the silence is not held for the rest of its chunk.
    eager_input_before_s: float = 0.2
    eager_input_after_s: float = 0.2
    #: And for this long after the agent paused for a caller talking over it (call/barge.py):
    #: the speech Gemini needs to send `interrupted` (about 300 ms from the onset).
    eager_input_paused_s: float = 0.4
    #: Filler phrase when a tool call is still running after this long and nothing plays.
    filler_after_s: float = 0.8
    filler_repeat_s: float = 4.0
    filler_max: int = 3
    #: No agent audio this long after the greeting request or the caller's end of turn:
    #: nudge the model once, then apologise. The last resort: silent stalls are found at once
    #: by the stall watch (``stall``, see stall_watch.py).
    reply_watchdog_s: float = 8.0
    #: Silent stalls (an empty model turn, or no turn at all): detection and audible recovery.
    stall: StallConfig = field(default_factory=StallConfig)
    #: Names of the tools the adapter can run (None: none; calls get an error response).
    tool_names: frozenset[str] | None = None
    #: Of those, the ones whose calls block the model on this model profile (it says nothing
    #: until the answer comes: filler covers the silence). The others are asynchronous: the model
    #: keeps talking, and filler plays only if it says nothing. None: all of them block.
    blocking_tools: frozenset[str] | None = None
    #: After end_call: wait this long for a goodbye to start, and at most this long in all.
    end_call_grace_s: float = 1.5
    end_call_timeout_s: float = 15.0
    #: goAway: hand over at a quiet moment, or this long before the cut at the latest.
    handover_margin_s: float = 2.0
    #: While Gemini is down, say "one moment" if nothing else plays after this long.
    reconnect_notice_after_s: float = 0.6
    #: A call longer than this is ended (a runaway call costs money and holds a line).
    max_call_s: float = 3600.0
    #: A stream that sends no media for this long is dead (Twilio sends 50 frames a second).
    no_media_timeout_s: float = 10.0
    #: Text turn that makes the agent speak first; None to wait for the caller.
    greeting_prompt: str | None = "The caller has just connected. Greet them and begin the interview."
