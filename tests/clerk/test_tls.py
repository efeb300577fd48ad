"""Every gateway shares one TLS context (``clerksync.clerk.tls``), built once per process
instead of twice per SDK object; it must still verify: an API URL whose certificate no
known authority signed is refused before any request (and its key) is sent."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
from pathlib import Path

import pytest

from clerksync.clerk.gateway import ClerkGateway
from clerksync.clerk.tls import tls_context
from clerksync.errors import ClerkApiError
from tests.support.fakeclerk import SECRET_KEY


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that signs itself, and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_the_shared_context_verifies_certificates_and_host_names() -> None:
    context = tls_context()
    assert context is tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_a_certificate_no_authority_signed_is_refused_before_the_key_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for proxy in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):  # straight to the server
        monkeypatch.delenv(proxy, raising=False)
        monkeypatch.delenv(proxy.lower(), raising=False)
    cert, key = self_signed(tmp_path)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    received: list[bytes] = []
    handshakes_failed: list[str] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            while True:  # each connection the gateway makes (a retry would be refused too)
                try:
                    connection, _ = listener.accept()
                except OSError:  # the listener is closed: the test is over
                    return
                with connection:
                    try:
                        with server_side.wrap_socket(connection, server_side=True) as tls:
                            received.append(tls.recv(65536))
                    except ssl.SSLError as failed:  # the client refused the certificate
                        handshakes_failed.append(str(failed))
                    except OSError:
                        pass

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        gateway = ClerkGateway(SECRET_KEY, api_url=f"https://127.0.0.1:{port}/v1", fail_fast=True)
        try:
            with pytest.raises(ClerkApiError) as refused:
                gateway.get_instance()
        finally:
            gateway.close()
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes a waiting accept()
        server.join(timeout=10)
    assert refused.value.status == 0 and f"https://127.0.0.1:{port}/v1" in str(refused.value)
    assert handshakes_failed, "no TLS handshake reached the server"
    assert received == []  # no request, so no key, went to the server
