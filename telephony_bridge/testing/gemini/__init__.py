"""An offline Gemini Live API emulator: a real websocket server speaking the real protocol.

Used by the end-to-end tests, ``telephony-bridge demo`` and fault-injection benchmarks as a
stand-in for ``wss://generativelanguage.googleapis.com/ws/…BidiGenerateContent`` and for Vertex
AI's ``wss://{LOCATION}-aiplatform.googleapis.com/ws/…LlmBidiService/BidiGenerateContent``. A
client (ours, or Google's SDK, google-genai, on either backend) talks to it exactly as it talks
to the service:

* Paths (:mod:`.auth`): the Gemini API's ``v1beta`` and ``v1``
  ``…GenerativeService.BidiGenerateContent``, Vertex AI's ``v1beta1`` and ``v1``
  ``…LlmBidiService/BidiGenerateContent``; anything else (or a backend left out of
  ``GeminiEmulator(backends=...)``) is HTTP 404. API key in ``x-goog-api-key`` or ``?key=``; when
  the emulator was given a key, a missing key is HTTP 401 and a wrong one HTTP 403 (at the
  handshake), or, with ``Scenario.key_check="setup"``, as the service does it: the upgrade
  succeeds and the ``setup`` is answered with close 1007 "API key not valid. Please pass a valid
  API key." Given an OAuth endpoint (``oauth=``, :class:`~telephony_bridge.testing.oauth.TokenEndpoint`)
  the Vertex AI path wants ``Authorization: Bearer`` with a live token it issued (else 401);
  Vertex AI express mode takes the key instead.
* The model named in ``setup`` decides how the emulator behaves (:mod:`.models`, reading
  :mod:`telephony_bridge.gemini.profiles`, the table the bridge builds its setups from; an unknown
  name is the newest profile). Per family:

  ====================== ==================================================================
  3.8 Live               undeclared or ``NON_BLOCKING`` tools are non-blocking: the model goes on
                         (a short line, or the next question) and speaks the answer as its
                         ``scheduling`` says (``INTERRUPT`` waits for the caller to finish,
                         ``WHEN_IDLE``, ``SILENT``); ``BLOCKING`` ones keep it silent and are
                         cancelled (``toolCallCancellation``) by caller speech or any
                         ``clientContent``; ``thinkingConfig``, ``proactiveAudio: false`` and
                         ``enableAffectiveDialog`` close with 1007
  3.8 extended thinking  non-blocking only (a ``BLOCKING`` declaration is 1007), ``thinkingLevel``
                         taken, and its own spoken filler while a slow tool runs
  3.1 Flash Live         blocking only (any ``behavior`` is 1007): it waits silently for the answer
                         whatever the caller does, ``scheduling`` ignored; ``thinkingLevel`` taken
  2.5 native audio       (Gemini API and Vertex AI) blocking by default, ``NON_BLOCKING`` opt-in, a
                         barge-in cancels a blocking call, any ``clientContent`` interrupts
  retired                closed with 1008 "models/… is not found for API version v1beta, or is not
                         supported for bidiGenerateContent." (Vertex AI: "Requested entity was not
                         found.")
  ====================== ==================================================================

  On 3.x ``clientContent`` with ``turnComplete: true`` interrupts a reply in progress and
  without it is context (no answer, no interruption); 3.x sends an audio chunk and its
  transcription in one ``serverContent``, 2.5 in separate messages.
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
``server``     :class:`GeminiEmulator`: listening, TLS, refusals, conversations, handles
``auth``       the paths served and the credentials each wants (key, Bearer token)
``models``     the model named in setup: its profile, the setup it refuses, tool behaviour
``connection`` one websocket connection: state, receive loop, setup, dispatch, closing
``turns``      caller audio / activity / text → caller turns (VAD events, barge-in)
``replies``    model turns: think, blocking tool calls, paced speech, interruption, handles
``async_calls`` non-blocking tool calls and their answers' scheduling
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

A connection's behaviour is split over ``connection``, ``turns``, ``replies``, ``async_calls``
and ``faults``: the last four are mixins of one ``_Connection`` and share the state it sets up.
Imports go one way: ``server`` → ``auth`` / ``connection`` → ``models`` / ``turns`` / ``replies`` /
``async_calls`` / ``faults`` → ``scenario`` / ``records`` / ``clips`` / ``wire`` / ``vad``.
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
from .auth import VERTEX_PATH, VERTEX_V1_PATH
from .models import INVALID_RESOURCE_REASON, VERTEX_NOT_FOUND_REASON
from .server import MAX_MESSAGE_BYTES, PATHS, V1_PATH, V1BETA_PATH, VERTEX_PATHS, GeminiEmulator
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
    "INVALID_RESOURCE_REASON",
    "MAX_MESSAGE_BYTES",
    "OUTPUT_MIME",
    "OUTPUT_RATE",
    "PATHS",
    "PERMISSION_REASON",
    "QUOTA_REASON",
    "STALL_KINDS",
    "V1BETA_PATH",
    "V1_PATH",
    "VERTEX_NOT_FOUND_REASON",
    "VERTEX_PATH",
    "VERTEX_PATHS",
    "VERTEX_V1_PATH",
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
