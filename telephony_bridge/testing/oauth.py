"""A real OAuth 2.0 token endpoint on loopback, for google-auth's own flows in the tests.

google-auth's service-account credentials sign a JWT (RS256, with the key file's private key) and
POST it to the key file's ``token_uri`` (grant ``urn:ietf:params:oauth:grant-type:jwt-bearer``);
authorized-user credentials POST their refresh token (grant ``refresh_token``). This server checks
what Google's endpoint checks that matters here (the signature against the public half of a key
generated at test time, issuer, audience, scope, expiry; the refresh token and client) and answers
``{"access_token", "expires_in", "token_type"}``, or an OAuth error when told to refuse.

The Gemini emulator can be given one (``GeminiEmulator(oauth=endpoint)``): on the Vertex AI path it
then accepts exactly the Bearer tokens this endpoint issued and has not seen expire
(:meth:`TokenEndpoint.accepts`), as Vertex AI accepts only live tokens from Google's endpoint. The
endpoint serves from a thread (google-auth's refresh is synchronous), so the token table is locked.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
#: The audience google-auth writes into a service account's assertion (Google's token endpoint),
#: whatever ``token_uri`` the request is posted to.
AUDIENCE = "https://oauth2.googleapis.com/token"


def _b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def write_json(path: Path, info: dict[str, Any]) -> str:
    path.write_text(json.dumps(info))
    return str(path)


def other_private_key_pem() -> str:
    """A private key the endpoint does not know (its signatures must not verify)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


class TokenEndpoint:
    def __init__(self, *, expires_in: int = 3600) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = secrets.token_hex(8)
        self.client_email = "bridge@my-proj-1.iam.gserviceaccount.com"
        self.refresh_token = "1//local-" + secrets.token_urlsafe(16)
        self.client_secret = "local-secret-" + secrets.token_hex(8)
        self.expires_in = expires_in
        #: When set, every request is refused with this OAuth error code (HTTP 400).
        self.refuse: str | None = None
        self.issued: list[str] = []
        self._expiry: dict[str, float] = {}  # token -> time.time() when it stops being accepted
        self._lock = threading.Lock()
        self.grants: list[str] = []
        self.rejections: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def token_uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def __enter__(self) -> TokenEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # -- tokens ------------------------------------------------------------------------------

    def accepts(self, token: str, now: float | None = None) -> bool:
        """``token`` was issued here and has not expired (what a resource server checks)."""
        with self._lock:
            expiry = self._expiry.get(token)
        return expiry is not None and (time.time() if now is None else now) < expiry

    def expire(self, token: str | None = None) -> None:
        """Make ``token`` (None: every token issued so far) expire now, as an hour passing would."""
        with self._lock:
            for t in [token] if token is not None else list(self._expiry):
                if t in self._expiry:
                    self._expiry[t] = 0.0

    # -- credential files --------------------------------------------------------------------

    def service_account_info(self, project: str = "my-proj-1") -> dict[str, Any]:
        pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
        return {
            "type": "service_account", "project_id": project, "private_key_id": self.key_id,
            "private_key": pem, "client_email": self.client_email, "client_id": "1234567890",
            "token_uri": self.token_uri,
        }

    def authorized_user_info(self, quota_project: str | None = "billing-proj-1") -> dict[str, Any]:
        info = {"type": "authorized_user", "client_id": "local-client.apps.googleusercontent.com",
                "client_secret": self.client_secret, "refresh_token": self.refresh_token,
                "token_uri": self.token_uri}
        if quota_project:
            info["quota_project_id"] = quota_project
        return info

    def write(self, path: Path, info: dict[str, Any]) -> str:
        return write_json(path, info)

    # -- the endpoint ------------------------------------------------------------------------

    def _check_assertion(self, assertion: str) -> str | None:
        """None when the JWT is signed by our key and names us correctly, else what is wrong."""
        try:
            head_b64, body_b64, sig_b64 = assertion.split(".")
            header, claims = json.loads(_b64url(head_b64)), json.loads(_b64url(body_b64))
            self.key.public_key().verify(_b64url(sig_b64), f"{head_b64}.{body_b64}".encode(),
                                         padding.PKCS1v15(), hashes.SHA256())
        except Exception:
            return "Invalid JWT Signature."
        now = time.time()
        if header.get("alg") != "RS256" or header.get("kid") != self.key_id:
            return "Invalid JWT header."
        if claims.get("iss") != self.client_email or claims.get("aud") != AUDIENCE:
            return "Invalid JWT issuer or audience."
        if SCOPE not in str(claims.get("scope", "")).split():
            return "Invalid scope."
        if not (claims.get("iat", 0) <= now + 60 and claims.get("exp", 0) > now):
            return "Invalid JWT: expired."
        return None

    def _answer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if self.refuse:
            return 400, {"error": self.refuse, "error_description": "Refused by the test."}
        grant = form.get("grant_type", "")
        self.grants.append(grant)
        if grant == JWT_BEARER:
            problem = self._check_assertion(form.get("assertion", ""))
        elif grant == "refresh_token":
            ok = (form.get("refresh_token") == self.refresh_token
                  and form.get("client_secret") == self.client_secret)
            problem = None if ok else "Bad refresh token."
        else:
            problem = "Unsupported grant type."
        if problem is not None:
            self.rejections.append(problem)
            return 400, {"error": "invalid_grant", "error_description": problem}
        token = "ya29.local-" + secrets.token_urlsafe(24)
        with self._lock:
            self.issued.append(token)
            self._expiry[token] = time.time() + self.expires_in
        return 200, {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                status, body = endpoint._answer(form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
