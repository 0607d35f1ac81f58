"""Placing the call as Twilio does: the webhook, TwiML, ``<Connect action>``, signatures.

``POST`` the TwiML URL with Twilio's form fields (``CallSid``, ``AccountSid``, ``From``, ``To``,
``CallStatus``, ``Direction``, ``ApiVersion``), signed with ``X-Twilio-Signature`` when an auth
token is given. Execute the returned ``<Response>``: ``<Connect><Stream>`` opens a Media Stream
(:mod:`.stream`); ``<Say>``/``<Pause>`` are recorded (no time passes); ``<Hangup/>`` and
``<Reject/>`` end the call; ``<Redirect>`` fetches the next document; the end of the document
ends the call. When a stream ends because the *bridge* closed the websocket, ``<Connect
action="...">`` is requested (same call, same fields, signed) and its TwiML is executed; without
an action Twilio moves on to the next verb.

Because tests and demos run on plain loopback, ``url_rewrite`` (:func:`loopback_rewrite`) maps
every URL taken from TwiML (and the TwiML URL itself) to where the request is actually sent;
signatures are always computed over the URL as written (what Twilio would request), never the
rewritten one. :class:`_Webhook` is a mixin of :class:`~.caller.CallerSimulator`, whose state
it uses.
"""

from __future__ import annotations

import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable

import httpx


class SimulatorError(Exception):
    """The simulator could not place the call at all (for example, nothing listens on the URL)."""


def loopback_rewrite(local_url: str, public_url: str | None = None) -> Callable[[str], str]:
    """A ``url_rewrite`` that sends requests for public URLs to a local server.

    Scheme and host of ``local_url`` replace those of each URL (``wss``/``ws`` become the
    websocket flavour of the local scheme). With ``public_url``, only URLs on that host are
    rewritten; others are left as they are.
    """
    local = urllib.parse.urlsplit(local_url)
    secure = local.scheme in ("https", "wss")
    public_host = urllib.parse.urlsplit(public_url).netloc.lower() if public_url else None

    def rewrite(url: str) -> str:
        u = urllib.parse.urlsplit(url)
        if public_host is not None and u.netloc.lower() != public_host:
            return url
        if u.scheme in ("ws", "wss"):
            scheme = "wss" if secure else "ws"
        else:
            scheme = "https" if secure else "http"
        return urllib.parse.urlunsplit((scheme, local.netloc, u.path, u.query, u.fragment))

    return rewrite


class _Webhook:
    """Webhook requests and the TwiML they return (a mixin of :class:`~.caller.CallerSimulator`)."""

    def _call_params(self) -> dict[str, str]:
        return {
            "CallSid": self.call_sid,
            "AccountSid": self.account_sid,
            "From": self.from_,
            "To": self.to,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }

    async def _call(self) -> str:
        async with httpx.AsyncClient(timeout=15.0, trust_env=False) as client:
            self._http = client
            fetched = await self._request_twiml(self.twiml_url, "POST")
            while fetched is not None:
                doc_url, root = fetched
                next_request: tuple[str, str] | None = None
                for verb in root:
                    tag = verb.tag
                    if tag == "Connect":
                        stream = verb.find("Stream")
                        if stream is None or not stream.get("url"):
                            self._emit("twiml_unsupported", verb="Connect", reason="no <Stream url>")
                            continue
                        params = {
                            p.get("name", ""): p.get("value", "")
                            for p in stream.findall("Parameter")
                            if p.get("name") is not None
                        }
                        stream_url = urllib.parse.urljoin(doc_url, stream.get("url", ""))
                        outcome = await self._run_stream(stream_url, params)
                        if outcome == "caller":
                            return "caller"
                        action = verb.get("action")
                        if action:
                            next_request = (urllib.parse.urljoin(doc_url, action), verb.get("method", "POST"))
                            break
                    elif tag == "Say":
                        self._emit("twiml_say", text=(verb.text or "").strip())
                    elif tag == "Pause":
                        self._emit("twiml_pause", length=verb.get("length", "1"))
                    elif tag in ("Hangup", "Reject"):
                        self._emit("twiml_hangup", verb=tag)
                        return "bridge"
                    elif tag == "Redirect":
                        next_request = (
                            urllib.parse.urljoin(doc_url, (verb.text or "").strip()),
                            verb.get("method", "POST"),
                        )
                        break
                    else:
                        self._emit("twiml_unsupported", verb=tag)
                if next_request is None:
                    return "bridge"  # end of the document: Twilio hangs up
                if self._hangup.is_set():
                    return "caller"
                fetched = await self._request_twiml(*next_request)
            return "bridge"

    async def _request_twiml(self, url: str, method: str) -> tuple[str, ET.Element] | None:
        """Request TwiML as Twilio does; ``None`` when the answer is not usable TwiML."""
        params = self._call_params()
        method = method.upper()
        headers = {"User-Agent": "TwilioProxy/1.1", "Accept": "*/*"}
        if method == "GET":
            sep = "&" if urllib.parse.urlsplit(url).query else "?"
            signed_url, body = url + sep + urllib.parse.urlencode(params), None
            sig_params: dict[str, str] = {}
        else:
            signed_url, body, sig_params = url, params, params
        if self._validator is not None:
            headers["X-Twilio-Signature"] = self._validator.compute_signature(signed_url, sig_params)
        target = self.url_rewrite(signed_url)
        try:
            response = await self._http.request(method, target, data=body, headers=headers)
        except httpx.TransportError as exc:
            raise SimulatorError(f"{method} {target}: {exc!r}") from exc
        self._emit("webhook", url=url, method=method, status=response.status_code)
        if not 200 <= response.status_code < 300:
            self._emit("webhook_error", url=url, status=response.status_code, body=response.text[:500])
            return None
        text = response.text
        self._twiml.append(text)
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            self._emit("twiml_error", url=url, error=str(exc))
            return None
        if root.tag != "Response":
            self._emit("twiml_error", url=url, error=f"root element is <{root.tag}>, not <Response>")
            return None
        self._emit("twiml", url=url, verbs=[child.tag for child in root])
        return url, root
