"""The call core: one phone call joined to one Gemini Live session, sans I/O.

Theory of operation
===================

Inputs are Twilio frames, Gemini frames, connection changes and timer ticks, each with the
current time ``now`` (seconds, any monotonic origin). Outputs are queued text frames —
``CallCore.twilio_out`` and ``CallCore.gemini_out``, which the adapter (``bridge.py``) drains in
order — tool calls to run (``tool_requests``, ``tool_cancellations``), and
``CallCore.next_deadline()``, when ``tick`` wants to run next. Nothing here sleeps, awaits or
touches a socket, so every timer runs on a fake clock.

The data path, and the part that owns each step::

    Twilio media ─▶ gate (echo_gate.py) ─▶ turns (caller speech) ─▶ link: InboundConverter
                 ─▶ PCM 16k ─▶ realtimeInput ─▶ Gemini
    Gemini audio ─▶ playout: OutboundConverter ─▶ μ-law 8k ─▶ Framer (160 B) ─▶ paced by the
                 lead, marks ─▶ Twilio

The parts, each a class in its own module with its state private:

``config``        :class:`CallConfig`, the frame size.
``timeline``      the call's event log on a call-relative clock; every part writes to it.
``playout``       agent audio to the caller: queue, pacing by ``playback_lead_s``, marks placed
                  and returned (played vs flushed), ``clear``, phrases under the same pacing,
                  what the caller actually heard, barge-in's drop.
``barge``         instant barge-in: pause on the caller's onset (the gate's double-talk), confirm
                  on ``interrupted`` within a window or resume (playout's pause/resume).
``turns``         turn boundaries on both sides: caller speech, agent turns with their latency
                  and heard frames, the model's turn being open, the transcript.
``tool_dispatch`` function calls: queued for the adapter, repeated ids, cancellations, results,
                  when filler is due.
``link``          the Gemini session across connections: setup, resumption handle, caller audio
                  kept while down and replayed after resume, reconnect / stale-handle / goAway
                  handover decisions, recovery prompts, the greeting, "one moment" while down.
``prompts``       text turns for the model (a key press, nudges), held until they would cut no
                  reply off (per the model's profile: what ``clientContent`` interrupts).
``ending``        end_call once the goodbye is heard, a last phrase before hanging up, limits
                  (no media, maximum length), silent stalls (with ``stall_watch``: an empty or
                  missing model turn found when it happens, nudged, covered, apologised for),
                  the reply watchdog as the last resort.
``stall_watch``   the silent-stall state machine ending drives.
``summary``       the call's counters and figures (latency p50/p95, levels, barge-ins, errors).
``core``          :class:`CallCore`: composes the parts and routes inputs to them.

A recording (``recording/core.py``, attached with :meth:`CallCore.attach_recorder`) is told each
caller frame as received, each agent frame playout hands to Twilio, each mark and clear.

Events between the parts (all routed by the core, never by a part calling another's internals):

* playout → turns: the first frame of a new agent turn was forwarded (``on_turn_start``: turns
  opens the turn and measures its latency; ending stops waiting for a reply); the turn has been
  heard or flushed to the end (``on_turn_done``).
* playout → ending: a returned mark emptied the line (is a goodbye or a last phrase done?).
* link → ending: a refusal no retry can fix (``Link.closed`` / ``connect_failed`` return it, classified
  by gemini/refusal.py): said once, then the apology is heard and the call ends.
* Gemini ``interrupted`` → playout drops everything and clears; turns marks the turn cut.
* gate → barge: each caller frame's double-talk; barge → playout (through the core): pause at the
  onset, resume when the window runs out (``tick``), or ``interrupted`` confirms it.
* tool_dispatch → ending: calls running (no watchdog), all answered (wait for the reply).
* ending reads playout (audible?), turns (model mid-reply? a new turn since end_call?), link
  (can send?) and tool_dispatch (running?) to decide; it never changes them except through the
  phrase it asks the core to play.
"""

from .config import FRAME_BYTES, FRAME_S, CallConfig
from .core import CallCore
from .turns import AgentTurn

__all__ = ["AgentTurn", "CallConfig", "CallCore", "FRAME_BYTES", "FRAME_S"]
