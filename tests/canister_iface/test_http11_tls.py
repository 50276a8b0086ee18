"""The agent's HTTP/1.1 client over TLS, as on mainnet: a server whose
certificate chains to a trusted CA is served; one that does not, or that
names another host, is refused before a byte of the request is sent."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from canister_iface.http11 import Client


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _authority(tmp: Path, label: str, san: x509.GeneralName) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signs for ``san``: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{label} CA"))
        .issuer_name(_name(f"{label} CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("node"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp / f"{label}-ca.pem", tmp / f"{label}-cert.pem", tmp / f"{label}-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem(key))
    return paths


LOOPBACK = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))


async def _tls_echo(cert: Path, key: Path, seen: list[bytes]) -> tuple[asyncio.Server, str]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            seen.append(head)
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            body = await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    return server, f"https://127.0.0.1:{port}"


async def _post(url: str, body: bytes) -> bytes:
    client = Client(url, max_connections=1, timeout=5.0, keepalive_expiry=5.0, user_agent="t")
    try:
        response = await client.request("POST", "/api/v2/status", body)
        assert response.status == 200
        return bytes(response.content)
    finally:
        await client.aclose()


async def test_a_server_certified_by_a_trusted_ca_is_served_over_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, cert, key = _authority(tmp_path, "trusted", LOOPBACK)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    seen: list[bytes] = []
    server, url = await _tls_echo(cert, key, seen)
    async with server:
        payload = bytes(range(256)) * 8192  # 2 MiB, like a chunk
        assert await _post(url, payload) == payload
    assert len(seen) == 1


async def test_a_certificate_from_an_untrusted_ca_is_refused_before_the_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trusted_ca, _, _ = _authority(tmp_path, "trusted", LOOPBACK)
    _, cert, key = _authority(tmp_path, "impostor", LOOPBACK)
    monkeypatch.setenv("SSL_CERT_FILE", str(trusted_ca))
    seen: list[bytes] = []
    server, url = await _tls_echo(cert, key, seen)
    async with server:
        with pytest.raises(httpx.ConnectError):
            await _post(url, b"secret")
    assert seen == []  # nothing of the request reached the impostor


async def test_a_certificate_for_another_host_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = x509.DNSName("icp-api.io")
    ca, cert, key = _authority(tmp_path, "trusted", other)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    seen: list[bytes] = []
    server, url = await _tls_echo(cert, key, seen)
    async with server:
        with pytest.raises(httpx.ConnectError):
            await _post(url, b"secret")
    assert seen == []
