"""A Twilio caller simulator: Twilio and a human caller, as the bridge sees them on the wire.

It places a "call" the way Twilio does and then behaves like a phone:

1. **Webhook.** ``POST`` the TwiML URL with Twilio's form fields (``CallSid``,
   ``AccountSid``, ``From``, ``To``, ``CallStatus``, ``Direction``, ``ApiVersion``),
   signed with ``X-Twilio-Signature`` when an auth token is given.
2. **TwiML.** Execute the returned ``<Response>``: ``<Connect><Stream>`` opens a Media
   Stream; ``<Say>``/``<Pause>`` are recorded (no time passes); ``<Hangup/>`` and
   ``<Reject/>`` end the call; ``<Redirect>`` fetches the next document; the end of the
   document ends the call. When a stream ends because the *bridge* closed the websocket,
   ``<Connect action="...">`` is requested (same call, same fields, signed) and its TwiML
   is executed; without an action Twilio moves on to the next verb.
3. **Media Stream.** Text JSON frames exactly as Twilio sends them: ``connected``,
   ``start``, then one ``media`` frame of 160 μ-law bytes every 20 ms for as long as the
   line is up (μ-law silence between utterances: a phone streams continuously), ``dtmf``
   when scripted, ``stop`` when the caller hangs up. ``sequenceNumber``, ``chunk`` and
   ``timestamp`` are strings. Frames are paced on ``loop.time()``: frame *k* leaves at
   ``t0 + k * 20 ms`` (no drift from cumulative sleeps).
4. **Playback.** ``media`` from the bridge (any size) goes into a playback buffer that
   drains at 8000 bytes/s on the same 20 ms clock into the *heard* track. A ``mark`` is
   echoed once the audio queued before it has finished playing (immediately if nothing is
   queued); ``clear`` drops every unplayed byte and echoes every pending mark at once
   (meaning "flushed", not "played").

5. **Echo** (optional, :class:`EchoPath`): what the caller hears comes back in what it sends,
   delayed, filtered and attenuated, as from a phone on speaker. ``voice_ulaw`` keeps the caller's
   own voice alone.

Both tracks (*sent* and *heard*) sit on one 8 kHz sample clock whose origin is the start of
the first stream; :meth:`CallResult.write_wav` writes them as a stereo WAV (left = caller as
sent, right = agent as heard). Every observation lands in ``CallResult.events`` as
``{"t": seconds since stream start, "kind": ..., "details": {...}}``.

The caller is scripted with :class:`CallerScript` (``Say``, ``WaitForAgent``, ``Wait``,
``Dtmf``, ``Hangup``). Run from the shell to replay a recording verbatim::

    python -m telephony_bridge.testing.simulator --twiml-url http://127.0.0.1:8080/twiml \\
        --audio caller.ulaw --out call.wav

Because tests and demos run on plain loopback, ``url_rewrite`` maps every URL taken from
TwiML (and the TwiML URL itself) to where the request is actually sent; signatures are always
computed over the URL as written (what Twilio would request), never the rewritten one.

The parts, one job each:

============ ==============================================================================
``caller``   :class:`CallerSimulator`: one call's state and events, composing the parts below
``webhook``  the webhook, TwiML, ``<Connect action>``, signatures, :func:`loopback_rewrite`
``stream``   one Media Streams websocket: open, ``connected``/``start``, parse, ``stop``
``playback`` the 20 ms clock: caller frames out, the playback buffer, marks and ``clear``
``script``   :class:`CallerScript` and its steps, and carrying them out
``echo``     :class:`EchoPath`: what the caller hears, back in what it sends
``result``   :class:`CallResult`: both tracks, events, WAV
``cli``      ``python -m telephony_bridge.testing.simulator``
============ ==============================================================================

``webhook``, ``stream``, ``playback`` and ``script`` are mixins of :class:`CallerSimulator` and
share the state it sets up (``CallerSimulator._reset``). Imports go one way: ``caller`` → the
mixins → ``stream`` (frame constants) / ``echo`` / ``result`` / :mod:`..wav`.
"""

from .caller import CallerSimulator
from .cli import main
from .echo import EchoPath
from .result import CallResult
from .script import CallerScript, Dtmf, Hangup, Say, Step, Wait, WaitForAgent
from .webhook import SimulatorError, loopback_rewrite

__all__ = [
    "CallResult",
    "CallerScript",
    "CallerSimulator",
    "Dtmf",
    "EchoPath",
    "Hangup",
    "Say",
    "SimulatorError",
    "Step",
    "Wait",
    "WaitForAgent",
    "loopback_rewrite",
    "main",
]
