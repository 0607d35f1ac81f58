"""A throwaway TLS certificate for loopback servers (the emulator over ``wss://``).

google-genai connects over TLS only (it turns any ``base_url`` into ``wss://``) and trusts the
CA file named by ``SSL_CERT_FILE``; so does a ``websockets`` client given
``ssl.create_default_context(cafile=...)``. :func:`throwaway_tls` makes a self-signed certificate
for ``127.0.0.1``, ``::1`` and ``localhost`` (EC P-256, valid one day), writes it as PEM and returns
the server's SSL context and the path a client should trust. Needs ``cryptography`` (the test
extra).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import tempfile
from pathlib import Path


def throwaway_tls(directory: str | Path | None = None) -> tuple[ssl.SSLContext, Path]:
    """``(server SSL context, path of the certificate to trust)``; files go in ``directory``
    (a fresh temporary one when None)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="tb-tls-"))
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
            x509.DNSName("localhost"),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "emulator-cert.pem", folder / "emulator-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx, cert_path


__all__ = ["throwaway_tls"]
