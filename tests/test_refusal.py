"""Gemini refusals: classification on the service's real words, the breaker on a fake clock,
the call state the webhook reads."""

import pytest

from telephony_bridge import call_state
from telephony_bridge.gemini.breaker import RefusalBreaker
from telephony_bridge.gemini.refusal import (
    CONFIGURATION_KINDS, Refusal, RefusalKind, classify_close, classify_handshake, unreachable,
)

K = RefusalKind

# Close frames from the real Live API, as reported (code, reason); the reason is cut at 123
# bytes by the websocket protocol, which is why several end mid-word.
SERVICE_CLOSES = [
    # google/adk-python#3964 and this project's issue 16 (the model names are examples)
    (1008, "models/gemini-2.0-flash-live-001 is not found for API version v1alpha, or is not supported for "
           "bidiGenerateContent", K.MODEL_NOT_FOUND),
    (1008, "models/gemini-2.5-flash-native-audio-preview-09-2025 is not found for API version v1beta, or is "
           "not supported for bidiGe", K.MODEL_NOT_FOUND),
    # Google AI forum, "Gemini Live API: Method doesn't allow unregistered callers via WebSocket"
    # (the codes were not reported; the words decide)
    (1007, "API key not valid. Please pass a valid API key.", K.BAD_KEY),
    (1008, "Method doesn't allow unregistered callers (callers without established identity). Please use API "
           "Key or other form of API consumer", K.BAD_KEY),
    # yagudaev/voiceclaw#155: an expired key closes the setup with 1007
    (1007, "API key expired. Please renew the API key.", K.BAD_KEY),
    # fishjam-cloud/js-server-sdk#283: native-audio models refuse a leaked key with 1008
    (1008, "Your API key was reported as leaked. Please use another API key.", K.BAD_KEY),
    # GoogleCloudPlatform/generative-ai#3061 (Vertex AI)
    (1008, "Permission denied on resource project None.", K.PERMISSION),
    # google-gemini/cookbook#781
    (1007, "User location is not supported for the API use.", K.PERMISSION),
    # kazunori279/interpretab README: quota spent, measured: setupComplete, then this 1011
    (1011, "You exceeded your current quota, please check your plan and billing details. For more information "
           "on this error, head to: h", K.QUOTA),
]


@pytest.mark.parametrize("code,reason,kind", SERVICE_CLOSES)
def test_the_services_close_reasons_are_classified_by_their_words(code, reason, kind):
    for at_setup in (True, False):
        for resuming in (True, False):
            refusal = classify_close(code, reason, at_setup=at_setup, resuming=resuming)
            assert refusal is not None and refusal.kind is kind, (at_setup, resuming)
            assert refusal.code == code and refusal.reason == reason  # the service's words are kept


def test_the_status_name_resource_exhausted_in_a_close_is_quota():
    # sohzm/cheating-daddy#455: the concurrent-session limit surfaces as RESOURCE_EXHAUSTED with 1011
    # (exact sentence not quoted there: the status name is what is matched)
    assert classify_close(1011, "RESOURCE_EXHAUSTED", at_setup=False, resuming=True).kind is K.QUOTA


def test_transient_closes_and_stale_handles_are_not_refusals():
    # pipecat/livekit reports: 1011 "Internal error encountered.", overload, a dropped socket
    assert classify_close(1011, "Internal error encountered.", at_setup=False, resuming=True) is None
    assert classify_close(1011, "Request trace id: 21d399562688c813, [ORIGINAL ERROR] extensible_stubs::"
                          "OVERLOADED_TOO_MANY_RETRIES_PER_REQUEST: You are mos", at_setup=False, resuming=True) is None
    assert classify_close(1006, "", at_setup=False, resuming=True) is None
    assert classify_close(None, "", at_setup=True, resuming=False) is None
    assert classify_close(1001, "", at_setup=False, resuming=False) is None
    # yeyu2/Youtube_demos#5: a stale resumption handle. Resuming: start afresh (not a refusal).
    assert classify_close(1008, "BidiGenerateContent session not found", at_setup=True, resuming=True) is None
    assert classify_close(1008, "Session resumption handle is invalid or expired.", at_setup=True,
                          resuming=True) is None


def test_a_close_with_unknown_words_is_judged_by_its_code_and_when_it_came():
    # google/adk-python#225, the cookbook: a malformed setup
    r = classify_close(1007, "Request contains an invalid argument.", at_setup=True, resuming=False)
    assert r.kind is K.INVALID_SETUP
    r = classify_close(1007, "Invalid JSON payload received. Unknown name \"bogus\"", at_setup=True, resuming=False)
    assert r.kind is K.INVALID_SETUP
    # livekit/agents#4545: mid-session, a feature the model does not support
    r = classify_close(1008, "Operation is not implemented, or supported, or enabled.", at_setup=False,
                       resuming=False)
    assert r.kind is K.INVALID_REQUEST
    r = classify_close(1007, "Request contains an invalid argument.", at_setup=False, resuming=True)
    assert r.kind is K.INVALID_REQUEST
    # Vertex AI's model-not-found wording at setup; while resuming it is a stale handle
    assert classify_close(1008, "Requested entity was not found.", at_setup=True, resuming=False).kind \
        is K.MODEL_NOT_FOUND
    assert classify_close(1008, "Requested entity was not found.", at_setup=True, resuming=True) is None


@pytest.mark.parametrize("status,body,kind", [
    (401, "", K.BAD_KEY),
    (403, "API key not valid. Please pass a valid API key.", K.BAD_KEY),
    # REST shapes of the same refusals (kazunori279/interpretab, Wei-Shaw/sub2api#1709, gemini-cli#25607)
    (400, '{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.",'
          '"status":"INVALID_ARGUMENT","details":[{"reason":"API_KEY_INVALID"}]}}', K.BAD_KEY),
    (401, '{"error":{"status":"UNAUTHENTICATED","details":[{"reason":"ACCESS_TOKEN_TYPE_UNSUPPORTED"}]}}', K.BAD_KEY),
    (403, '{"error":{"code":403,"message":"The caller does not have permission","status":"PERMISSION_DENIED"}}',
     K.PERMISSION),
    (403, "", K.PERMISSION),
    (429, '{"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}}', K.QUOTA),
    (404, "Not Found", K.INVALID_SETUP),
])
def test_refused_upgrades_are_classified_by_status_and_body(status, body, kind):
    refusal = classify_handshake(status, body)
    assert refusal is not None and refusal.kind is kind and refusal.status == status


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_at_the_upgrade_are_retried(status):
    assert classify_handshake(status, "Service Unavailable") is None


def test_reasons_are_trimmed_and_unreachable_keeps_the_last_failure():
    r = classify_close(1008, "models/x is not found for API version v1beta,\n  or not " + "x" * 500, at_setup=True,
                       resuming=False)
    assert "\n" not in r.reason and len(r.reason) <= 200
    u = unreachable("InvalidStatus: server rejected WebSocket connection: HTTP 503")
    assert u.kind is K.UNREACHABLE and "503" in u.reason and not u.configuration
    assert {k for k in K if Refusal(k).configuration} == CONFIGURATION_KINDS
    assert K.QUOTA not in CONFIGURATION_KINDS and K.UNREACHABLE not in CONFIGURATION_KINDS


# ------------------------------------------------------------------------------ breaker

MODEL = Refusal(K.MODEL_NOT_FOUND, "models/m is not found", code=1008)
KEY = Refusal(K.BAD_KEY, "API key not valid.", code=1007)
QUOTA = Refusal(K.QUOTA, "You exceeded your current quota", code=1011)


def test_the_breaker_opens_after_n_consecutive_calls_refused_for_one_configuration_reason():
    b = RefusalBreaker(3, probe_delays=(5.0, 10.0, 20.0))
    assert not b.call_refused(MODEL, 0.0) and not b.call_refused(MODEL, 1.0)
    assert b.allows_calls and b.streak == 2
    assert b.call_refused(MODEL, 2.0)  # the third one opens it
    assert not b.allows_calls and b.refusal is MODEL and b.trips == 1
    assert not b.call_refused(MODEL, 3.0)  # already open: opens once
    snap = b.snapshot(4.0)
    assert snap == {"state": "open", "kind": "model_not_found", "open_for_s": 2.0, "next_probe_in_s": 3.0,
                    "probes": 0}
    assert "reason" not in snap  # public: the kind only


def test_a_different_kind_or_a_working_call_or_a_non_configuration_refusal_restarts_the_count():
    b = RefusalBreaker(2)
    b.call_refused(MODEL, 0.0)
    b.call_refused(KEY, 1.0)  # a different reason: 1 of the new kind
    assert b.allows_calls and b.streak == 1
    b.call_ready(2.0)
    assert b.streak == 0
    b.call_refused(KEY, 3.0)
    b.call_refused(QUOTA, 4.0)  # quota is not configuration (it refills): the streak is broken
    b.call_refused(KEY, 5.0)
    assert b.allows_calls
    assert b.call_refused(KEY, 6.0) and not b.allows_calls
    off = RefusalBreaker(0)
    for t in range(10):
        assert not off.call_refused(MODEL, float(t))
    assert off.allows_calls


def test_probes_are_spaced_out_and_close_the_breaker_when_setup_completes():
    b = RefusalBreaker(1, probe_delays=(5.0, 10.0, 20.0))
    assert b.call_refused(MODEL, 100.0)
    assert not b.probe_due(104.9) and b.probe_due(105.0)
    b.probe_started(105.0)
    assert not b.probe_due(106.0)  # one probe at a time
    b.probe_finished(MODEL, 106.0)
    assert b.next_probe_at == 116.0  # then 10 s
    b.probe_started(116.0)
    b.probe_finished(unreachable("HTTP 503"), 117.0)
    assert b.next_probe_at == 137.0 and b.refusal is MODEL  # a transient failure keeps the kind
    b.probe_started(137.0)
    b.probe_finished(KEY, 138.0)
    assert b.next_probe_at == 158.0 and b.refusal is KEY  # capped at the last delay; the kind follows
    b.probe_started(158.0)
    b.probe_finished(None, 158.5)
    assert b.allows_calls and b.next_probe_at is None and b.probes == 4
    assert b.snapshot(159.0) == {"state": "closed", "streak": 0}


def test_a_call_that_gets_through_closes_an_open_breaker():
    b = RefusalBreaker(1)
    b.call_refused(KEY, 0.0)
    b.call_ready(1.0)  # e.g. a stream resumed through /twiml/continue on a fixed replica
    assert b.allows_calls and not b.probe_due(100.0)


# ------------------------------------------------------------------------------ call state


def test_call_states_round_trip():
    assert call_state.parse(call_state.ACTIVE).active
    s = call_state.parse(call_state.ended("gemini-refused:bad_key", say_goodbye=True))
    assert s.ended and not s.active and s.reason == "gemini-refused:bad_key" and s.say_goodbye
    s = call_state.parse(call_state.ended("end_call:done"))
    assert s.ended and s.reason == "end_call:done" and not s.say_goodbye
    assert call_state.parse("ended:caller-hangup").reason == "caller-hangup"  # written by older versions
    for unknown in (None, "", "weird"):
        s = call_state.parse(unknown)
        assert not s.active and not s.ended
