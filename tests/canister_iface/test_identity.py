"""Identities: PEM formats (dfx's included), permissions, signatures, no leaked keys."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from icp_principal import Principal as IcpPrincipal

from canister_iface.errors import IdentityError, PermanentError
from canister_iface.identity import (
    AnonymousIdentity,
    Ed25519Identity,
    Identity,
    Secp256k1Identity,
)
from canister_iface.principal import Principal

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
NOENC = serialization.NoEncryption()


def _pem(label: str, der: bytes) -> bytes:
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n".encode("ascii")


def _dfx_ed25519_pem(key: Ed25519PrivateKey) -> bytes:
    """PKCS#8 v2 exactly as dfx (ring) writes it: public key in an explicit [1]."""
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, NOENC)
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    der = (
        bytes.fromhex("3053020101300506032b657004220420")
        + seed
        + bytes.fromhex("a123032100")
        + public
    )
    return _pem("PRIVATE KEY", der)


def _write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def _secret_strings(key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> list[str]:
    """Every rendering of the private key an accidental leak could take."""
    if isinstance(key, Ed25519PrivateKey):
        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, NOENC)
    else:
        raw = key.private_numbers().private_value.to_bytes(32, "big")
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, NOENC
    ).decode()
    body = "".join(pem.splitlines()[1:-1])
    return [raw.hex(), base64.b64encode(raw).decode(), body[20:60], repr(raw)[2:30]]


def _assert_no_secret(text: str, key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> None:
    for secret in _secret_strings(key):
        assert secret not in text


# ------------------------------------------------------------------- loading


def test_ed25519_pkcs8_v1_round_trip(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, NOENC)
    identity = Identity.from_pem_file(_write(tmp_path / "id.pem", pem))
    assert isinstance(identity, Ed25519Identity)
    expected_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert identity.public_key_der == expected_der
    signature = identity.sign(b"hello")
    assert len(signature) == 64
    key.public_key().verify(signature, b"hello")


def test_dfx_ed25519_pkcs8_v2(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    identity = Identity.from_pem_file(_write(tmp_path / "identity.pem", _dfx_ed25519_pem(key)))
    assert isinstance(identity, Ed25519Identity)
    key.public_key().verify(identity.sign(b"msg"), b"msg")


def test_dfx_ed25519_with_wrong_public_key_is_refused(tmp_path: Path) -> None:
    pem = _dfx_ed25519_pem(Ed25519PrivateKey.generate())
    der = bytearray(base64.b64decode(b"".join(pem.splitlines()[1:-1])))
    der[-1] ^= 1
    with pytest.raises(IdentityError, match="does not match"):
        Identity.from_pem(_pem("PRIVATE KEY", bytes(der)))


@pytest.mark.parametrize("fmt", ["sec1", "sec1-with-params", "pkcs8"])
def test_secp256k1_formats(tmp_path: Path, fmt: str) -> None:
    key = ec.generate_private_key(ec.SECP256K1())
    if fmt == "pkcs8":
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, NOENC
        )
    else:
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, NOENC
        )
        assert pem.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    if fmt == "sec1-with-params":  # what `openssl ecparam -name secp256k1 -genkey` writes
        pem = _pem("EC PARAMETERS", bytes.fromhex("06052b8104000a")) + pem
    identity = Identity.from_pem_file(_write(tmp_path / "k.pem", pem))
    assert isinstance(identity, Secp256k1Identity)
    assert identity.public_key_der == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_secp256k1_signatures_are_low_s_raw_and_verify() -> None:
    identity = Identity.generate_secp256k1()
    public = serialization.load_der_public_key(identity.public_key_der)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    for index in range(40):  # about half of raw ECDSA signatures are high-S
        message = b"message %d" % index
        signature = identity.sign(message)
        assert len(signature) == 64
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        assert s <= SECP256K1_ORDER // 2
        public.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        with pytest.raises(InvalidSignature):
            public.verify(encode_dss_signature(r, s), message + b"!", ec.ECDSA(hashes.SHA256()))


def test_other_curves_and_key_types_are_refused() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    pem = p256.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, NOENC)
    with pytest.raises(IdentityError, match="only secp256k1"):
        Identity.from_pem(pem)


def test_encrypted_and_garbage_pems_are_refused() -> None:
    key = Ed25519PrivateKey.generate()
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(IdentityError, match="encrypted"):
        Identity.from_pem(encrypted)
    with pytest.raises(IdentityError, match="holds no private key"):
        Identity.from_pem(b"hello")
    with pytest.raises(IdentityError, match="not a key this agent can read"):
        Identity.from_pem(_pem("PRIVATE KEY", b"\x30\x03\x02\x01\x00"))


# ---------------------------------------------------------------- principals


def test_principal_is_self_authenticating_and_matches_icp_py_core() -> None:
    identity = Identity.generate_ed25519()
    der = identity.public_key_der
    assert der is not None
    assert identity.principal.raw == hashlib.sha224(der).digest() + b"\x02"
    assert identity.principal.to_text() == IcpPrincipal(identity.principal.raw).to_str()
    assert Principal.from_text(identity.principal.to_text()) == identity.principal


def test_anonymous_identity() -> None:
    anonymous = Identity.anonymous()
    assert anonymous.principal.to_text() == "2vxsx-fae"
    assert anonymous.public_key_der is None
    assert anonymous.is_anonymous
    with pytest.raises(IdentityError):
        anonymous.sign(b"x")


def test_principal_text_errors() -> None:
    assert Principal.from_text("aaaaa-aa").is_management_canister
    assert Principal.of("rrkah-fqaaa-aaaaa-aaaaq-cai").raw == bytes.fromhex("00000000000000010101")
    with pytest.raises(ValueError, match="checksum"):
        Principal.from_text("rrkah-fqaaa-aaaaa-aaaaq-caa")
    with pytest.raises(ValueError, match="canonical"):
        Principal.from_text("rrkahfqaaa-aaaaa-aaaaq-cai")
    with pytest.raises(ValueError, match="at most 29"):
        Principal(bytes(30))


# --------------------------------------------------------------- permissions


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_readable_by_others_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    key = Ed25519PrivateKey.generate()
    path = _write(tmp_path / "identity.pem", _dfx_ed25519_pem(key), mode)
    with pytest.raises(IdentityError) as caught:
        Identity.from_pem_file(path)
    assert f"chmod 600 {path}" in str(caught.value)
    assert isinstance(caught.value, PermanentError)
    _assert_no_secret(str(caught.value), key)


def test_owner_only_modes_are_accepted(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = _write(tmp_path / "identity.pem", _dfx_ed25519_pem(key), 0o400)
    assert isinstance(Identity.from_pem_file(path), Ed25519Identity)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="does not exist"):
        Identity.from_pem_file(tmp_path / "nope.pem")


# ----------------------------------------------------------------------- dfx


def _dfx_home(tmp_path: Path) -> Path:
    base = tmp_path / ".config" / "dfx"
    (base / "identity").mkdir(parents=True)
    return base


def test_from_dfx_named_and_default(tmp_path: Path) -> None:
    base = _dfx_home(tmp_path)
    ed_key = Ed25519PrivateKey.generate()
    k1_key = ec.generate_private_key(ec.SECP256K1())
    (base / "identity" / "default").mkdir()
    _write(base / "identity" / "default" / "identity.pem", _dfx_ed25519_pem(ed_key))
    (base / "identity" / "ops").mkdir()
    k1_pem = k1_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, NOENC
    )
    _write(base / "identity" / "ops" / "identity.pem", k1_pem)

    assert isinstance(Identity.from_dfx(config_root=tmp_path), Ed25519Identity)
    assert isinstance(Identity.from_dfx("ops", config_root=tmp_path), Secp256k1Identity)
    (base / "identity.json").write_text(json.dumps({"default": "ops"}))
    assert isinstance(Identity.from_dfx(config_root=tmp_path), Secp256k1Identity)
    assert isinstance(Identity.from_dfx("anonymous", config_root=tmp_path), AnonymousIdentity)


def test_from_dfx_uses_dfx_config_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = _dfx_home(tmp_path)
    (base / "identity" / "ci").mkdir()
    _write(
        base / "identity" / "ci" / "identity.pem", _dfx_ed25519_pem(Ed25519PrivateKey.generate())
    )
    monkeypatch.setenv("DFX_CONFIG_ROOT", str(tmp_path))
    assert isinstance(Identity.from_dfx("ci"), Ed25519Identity)


def test_from_dfx_explains_what_it_cannot_load(tmp_path: Path) -> None:
    base = _dfx_home(tmp_path)
    (base / "identity" / "locked").mkdir()
    (base / "identity" / "locked" / "identity.pem.encrypted").write_bytes(b"x")
    (base / "identity" / "keyring").mkdir()
    (base / "identity" / "keyring" / "identity.json").write_text("{}")
    with pytest.raises(IdentityError, match=r"password-protected.*dfx identity export locked"):
        Identity.from_dfx("locked", config_root=tmp_path)
    with pytest.raises(IdentityError, match="keyring"):
        Identity.from_dfx("keyring", config_root=tmp_path)
    with pytest.raises(IdentityError, match="no dfx identity named 'ghost'"):
        Identity.from_dfx("ghost", config_root=tmp_path)
    with pytest.raises(IdentityError, match="not a dfx identity name"):
        Identity.from_dfx("../default", config_root=tmp_path)


# ------------------------------------------------------------- no key leaks


@pytest.mark.parametrize("kind", ["ed25519", "secp256k1"])
def test_no_key_material_in_repr_str_or_logs(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey
    if kind == "ed25519":
        key = Ed25519PrivateKey.generate()
        pem = _dfx_ed25519_pem(key)
    else:
        key = ec.generate_private_key(ec.SECP256K1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, NOENC
        )
    identity = Identity.from_pem_file(_write(tmp_path / "id.pem", pem))
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("identity %s %r", identity, identity)
    rendered = [repr(identity), str(identity), f"{identity}", caplog.text]
    for text in rendered:
        _assert_no_secret(text, key)
    assert identity.principal.to_text() in repr(identity)
    assert not hasattr(identity, "__dict__")  # nothing for vars() or a debugger dump to show


def test_no_key_material_in_parse_errors() -> None:
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, NOENC)
    broken = _pem("PRIVATE KEY", bytes.fromhex("3054020101300506032b657004220420") + seed + b"xx")
    with pytest.raises(IdentityError) as caught:
        Identity.from_pem(broken, source="broken.pem")
    _assert_no_secret(str(caught.value), key)
    _assert_no_secret(repr(caught.value), key)
    assert caught.value.__suppress_context__  # the parser's own exception is not shown
    assert "broken.pem" in str(caught.value)


def test_ed25519_identity_signature_verifies_with_public_der() -> None:
    identity = Identity.generate_ed25519()
    der = identity.public_key_der
    assert der is not None
    public = serialization.load_der_public_key(der)
    assert isinstance(public, Ed25519PublicKey)
    public.verify(identity.sign(b"\x0aic-request" + bytes(32)), b"\x0aic-request" + bytes(32))
