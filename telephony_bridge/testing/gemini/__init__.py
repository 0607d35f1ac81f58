"""An offline Gemini Live API emulator: a real websocket server speaking the real protocol.

Used by the end-to-end tests, ``telephony-bridge demo`` and fault-injection benchmarks as a
stand-in for ``wss://generativelanguage.googleapis.com/ws/…BidiGenerateContent``. A client (ours,
or Google's SDK) talks to it exactly as it talks to the service:

* Paths: the ``v1beta`` and ``v1`` ``…GenerativeService.BidiGenerateContent`` paths; anything
  else is HTTP 404. API key in ``x-goog-api-key`` or ``?key=``; when the emulator was given a
  key, a missing key is HTTP 401 and a wrong one HTTP 403 (at the handshake), or, with
  ``Scenario.key_check="setup"``, as the service does it: the upgrade succeeds and the ``setup``
  is answered with close 1007 "API key not valid. Please pass a valid API key."
* Every server message is a BINARY frame holding UTF-8 JSON, like Google's. Client messages may
  be text or binary, ``lowerCamelCase`` or ``snake_case`` (proto JSON reads both), and ``bytes``
  fields in the standard or URL-safe base64 alphabet, padded or not.
* The first message must be ``setup`` with a ``model``; anything else, or a malformed setup,
  closes with 1007 and a reason. Then ``{"setupComplete": {}}``. An unknown top-level field,
  bad base64 or a second ``setup`` also close with 1007 (the service's "Invalid JSON payload").
  An unknown or stale ``sessionResumption.handle`` closes with 1008, as does a model outside
  ``Scenario.known_models`` (when that is set).
* Audio in (``realtimeInput.audio``, deprecated ``realtimeInput.mediaChunks``) at whatever rate
  the mimeType names goes through an energy VAD (:mod:`.vad`) honouring
  ``automaticActivityDetection.silenceDurationMs`` / ``prefixPaddingMs``; ``audioStreamEnd``
  ends a turn in progress. With ``automaticActivityDetection.disabled`` the client's
  ``activityStart`` / ``activityEnd`` mark turns instead.
* When a caller turn ends, the "model" answers with real recorded speech (:mod:`.clips`,
  rendered by :mod:`..render_clips`): 24 kHz PCM16 in
  ``serverContent.modelTurn.parts[].inlineData`` chunks, paced against ``loop.time()``, with
  ``outputTranscription`` pieces, then ``generationComplete`` and ``turnComplete`` (carrying
  ``usageMetadata``), then ``sessionResumptionUpdate`` when the setup asked for resumption. A
  ``clientContent`` with ``turnComplete`` makes it speak first (the greeting) or counts as a
  user text turn.
* Barge-in: caller speech starting while a reply is being sent stops it and sends
  ``serverContent.interrupted``. Like the service, the emulator only knows what it has *sent*:
  audio sent ahead of real time (``Scenario.burst_ms`` / ``pace``) is the client's to drop.
* Transcriptions follow the setup (``inputAudioTranscription`` / ``outputAudioTranscription``)
  unless ``Scenario.transcriptions`` says ``always`` or ``never``.

Everything a test may want to check is recorded on :class:`EmulatorSession` (one per connection).

The parts, one job each:

============== ===========================================================================
``server``     :class:`GeminiEmulator`: listening, paths, API key, TLS, refusals, handles
``connection`` one websocket connection: state, receive loop, setup, dispatch, closing
``turns``      caller audio / activity / text → caller turns (VAD events, barge-in)
``replies``    model turns: think, tool calls, paced speech, interruption, handle updates
``faults``     :class:`Fault` and when it fires
``scenario``   :class:`Scenario`, :class:`ToolCallStep` and the reply plan
``records``    :class:`EmulatorSession`, :class:`CallerTurn`, :class:`ReplyRecord`,
               :class:`Conversation`: what tests check
``wire``       proto JSON in and out: camel/snake names, base64, mimeType, setup checks,
               :class:`BadRequest`
``vad``        the energy VAD standing in for automatic activity detection
``clips``      :class:`Clip`, :func:`load_clips`: the recorded lines the model speaks
``cli``        ``python -m telephony_bridge.testing.emulator``
============== ===========================================================================

A connection's behaviour is split over ``connection``, ``turns``, ``replies`` and ``faults``:
the last three are mixins of one ``_Connection`` and share the state it sets up. Imports go one
way: ``server`` → ``connection`` → ``turns`` / ``replies`` / ``faults`` → ``scenario`` /
``records`` / ``clips`` / ``wire`` / ``vad``.
"""

from .cli import main
from .clips import CLIPS_DIR, Clip, load_clips
from .faults import (
    API_KEY_INVALID_REASON,
    INVALID_ARGUMENT_REASON,
    PERMISSION_REASON,
    QUOTA_REASON,
    STALL_KINDS,
    Fault,
    FaultKind,
)
from .records import CallerTurn, Conversation, EmulatorSession, ReplyRecord
from .scenario import DEFAULT_REPLIES, Plan, Scenario, ToolCallStep
from .server import MAX_MESSAGE_BYTES, PATHS, V1_PATH, V1BETA_PATH, GeminiEmulator
from .wire import (
    AUDIO_TOKENS_PER_SECOND,
    OUTPUT_MIME,
    OUTPUT_RATE,
    BadRequest,
    audio_rate,
    b64decode_any,
    normalize,
    validate_setup,
)

__all__ = [
    "API_KEY_INVALID_REASON",
    "AUDIO_TOKENS_PER_SECOND",
    "CLIPS_DIR",
    "DEFAULT_REPLIES",
    "INVALID_ARGUMENT_REASON",
    "MAX_MESSAGE_BYTES",
    "OUTPUT_MIME",
    "OUTPUT_RATE",
    "PATHS",
    "PERMISSION_REASON",
    "QUOTA_REASON",
    "STALL_KINDS",
    "V1BETA_PATH",
    "V1_PATH",
    "BadRequest",
    "CallerTurn",
    "Clip",
    "Conversation",
    "EmulatorSession",
    "Fault",
    "FaultKind",
    "GeminiEmulator",
    "Plan",
    "ReplyRecord",
    "Scenario",
    "ToolCallStep",
    "audio_rate",
    "b64decode_any",
    "load_clips",
    "main",
    "normalize",
    "validate_setup",
]
