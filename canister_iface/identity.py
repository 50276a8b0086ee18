"""Who the agent signs requests as: anonymous, Ed25519 or secp256k1 keys.

Keys are loaded from PEM files, including dfx identity files
(``~/.config/dfx/identity/<name>/identity.pem``):

- Ed25519 as dfx writes it: PKCS#8 *v2* with the public key in an explicitly
  tagged ``[1]`` (ring's encoding, which ``cryptography`` refuses as "extra
  data"), plus plain PKCS#8 v1;
- secp256k1 as ``EC PRIVATE KEY`` (SEC1, possibly after an ``EC PARAMETERS``
  block, as ``openssl ecparam -genkey`` writes it) and as PKCS#8.

A key file that group or others can read is refused (a leaked controller key
is a lost canister).  Key material never appears in ``repr``, ``str``, logs or
error messages: identities show only their principal, and parse errors name
the file and the problem, not its content.

Signatures are what the IC verifies (interface spec, "Signatures"): Ed25519
is the 64-byte RFC 8032 signature; ECDSA is the 64-byte ``r ‖ s`` over
SHA-256 with ``s`` normalised to the lower half of the curve order (the IC's
verifier, like Bitcoin's, refuses high-S signatures).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import stat
from abc import ABC, abstractmethod
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from canister_iface.errors import IdentityError
from canister_iface.principal import Principal

# secp256k1's group order; signatures keep s <= n/2.
_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
# ring's PKCS#8 v2 Ed25519 document (what dfx writes): version 1, OID
# 1.3.101.112, the 32-byte seed, then ``[1] { BIT STRING public key }``.
_RING_ED25519_PREFIX = bytes.fromhex("3053020101300506032b657004220420")
_RING_ED25519_PUBLIC = bytes.fromhex("a123032100")
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)
_DFX_NAME = re.compile(r"[A-Za-z0-9._@-]+")


class Identity(ABC):
    """A principal that signs requests; subclasses hold the key privately."""

    __slots__ = ()

    @property
    @abstractmethod
    def principal(self) -> Principal: ...

    @property
    @abstractmethod
    def public_key_der(self) -> bytes | None:
        """The DER ``SubjectPublicKeyInfo`` sent as ``sender_pubkey`` (``None`` if anonymous)."""

    @abstractmethod
    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` (already domain-separated) the way the IC verifies it."""

    @property
    def is_anonymous(self) -> bool:
        return self.public_key_der is None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(principal={self.principal.to_text()!r})"

    def __str__(self) -> str:
        return repr(self)

    # ------------------------------------------------------------- constructors

    @staticmethod
    def anonymous() -> AnonymousIdentity:
        return AnonymousIdentity()

    @staticmethod
    def generate_ed25519() -> Ed25519Identity:
        """A fresh in-memory Ed25519 identity (tests, throwaway callers)."""
        return Ed25519Identity(Ed25519PrivateKey.generate())

    @staticmethod
    def generate_secp256k1() -> Secp256k1Identity:
        return Secp256k1Identity(ec.generate_private_key(ec.SECP256K1()))

    @staticmethod
    def from_pem(data: bytes, *, source: str = "PEM data") -> Identity:
        """Parse an unencrypted Ed25519 or secp256k1 private key PEM.

        ``source`` names the data in error messages (a path, never the data).
        """
        label, der = _private_key_block(data, source)
        if label == "PRIVATE KEY" and der.startswith(_RING_ED25519_PREFIX):
            return _ring_ed25519(der, source)
        try:
            key = serialization.load_der_private_key(der, password=None)
        except (ValueError, TypeError) as exc:
            # The exception text is cryptography's generic wording, but name
            # only its type: nothing derived from the key may reach a message.
            raise IdentityError(
                f"{source}: the {label} block is not a key this agent can read "
                f"({type(exc).__name__}); expected an Ed25519 or secp256k1 private key"
            ) from None
        return _identity_for(key, source)

    @staticmethod
    def from_pem_file(path: str | os.PathLike[str]) -> Identity:
        """Load a private key file, refusing one that group or others may read."""
        file = Path(path).expanduser()
        _check_private(file)
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise IdentityError(
                f"cannot read identity file {file}: {exc.strerror or exc}"
            ) from None
        return Identity.from_pem(data, source=str(file))

    @staticmethod
    def from_dfx(
        name: str | None = None, *, config_root: str | os.PathLike[str] | None = None
    ) -> Identity:
        """Load the dfx identity ``name`` (default: dfx's selected identity).

        dfx keeps identities under ``$DFX_CONFIG_ROOT/.config/dfx`` (``~`` when
        the variable is unset); ``anonymous`` is dfx's built-in anonymous one.
        """
        base = _dfx_config_dir(config_root)
        chosen = name if name is not None else _dfx_default_name(base)
        if not _DFX_NAME.fullmatch(chosen) or chosen in (".", ".."):
            raise IdentityError(f"{chosen!r} is not a dfx identity name (see `dfx identity list`)")
        if chosen == "anonymous":
            return AnonymousIdentity()
        directory = base / "identity" / chosen
        pem = directory / "identity.pem"
        if not pem.exists():
            raise IdentityError(_missing_dfx_pem(chosen, directory))
        return Identity.from_pem_file(pem)


class AnonymousIdentity(Identity):
    """The anonymous principal ``2vxsx-fae``: unsigned requests."""

    __slots__ = ()

    @property
    def principal(self) -> Principal:
        return Principal.anonymous()

    @property
    def public_key_der(self) -> bytes | None:
        return None

    def sign(self, message: bytes) -> bytes:
        raise IdentityError("the anonymous identity cannot sign; requests go unsigned")


class Ed25519Identity(Identity):
    __slots__ = ("__der", "__key", "__principal")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.__key = key
        self.__der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.__principal = Principal.self_authenticating(self.__der)

    @property
    def principal(self) -> Principal:
        return self.__principal

    @property
    def public_key_der(self) -> bytes:
        return self.__der

    def sign(self, message: bytes) -> bytes:
        return self.__key.sign(message)


class Secp256k1Identity(Identity):
    __slots__ = ("__der", "__key", "__principal")

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(key.curve, ec.SECP256K1):
            raise IdentityError(
                f"ECDSA key on curve {key.curve.name}: only secp256k1 ECDSA keys are supported"
            )
        self.__key = key
        self.__der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.__principal = Principal.self_authenticating(self.__der)

    @property
    def principal(self) -> Principal:
        return self.__principal

    @property
    def public_key_der(self) -> bytes:
        return self.__der

    def sign(self, message: bytes) -> bytes:
        r, s = decode_dss_signature(self.__key.sign(message, ec.ECDSA(hashes.SHA256())))
        if s > _SECP256K1_ORDER // 2:
            s = _SECP256K1_ORDER - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


# ------------------------------------------------------------------- parsing


def _private_key_block(data: bytes, source: str) -> tuple[str, bytes]:
    """The first private key block of a PEM file (skipping ``EC PARAMETERS``)."""
    labels = []
    for match in _PEM_BLOCK.finditer(data):
        label = match.group(1).decode("ascii")
        labels.append(label)
        if label == "ENCRYPTED PRIVATE KEY":
            raise IdentityError(
                f"{source} holds an encrypted private key; decrypt it first, e.g. "
                "`openssl pkey -in <encrypted> -out <plain.pem> && chmod 600 <plain.pem>`"
            )
        if label in ("PRIVATE KEY", "EC PRIVATE KEY"):
            try:
                return label, base64.b64decode(match.group(2), validate=False)
            except binascii.Error:
                raise IdentityError(f"{source}: the {label} block is not valid base64") from None
    found = ", ".join(labels) if labels else "no PEM blocks"
    raise IdentityError(
        f"{source} holds no private key (found: {found}); expected a PEM "
        "'PRIVATE KEY' (Ed25519/PKCS#8) or 'EC PRIVATE KEY' (secp256k1) block"
    )


def _ring_ed25519(der: bytes, source: str) -> Ed25519Identity:
    """dfx's Ed25519 PKCS#8 v2 document; the embedded public key must match the seed."""
    seed = der[len(_RING_ED25519_PREFIX) : len(_RING_ED25519_PREFIX) + 32]
    rest = der[len(_RING_ED25519_PREFIX) + 32 :]
    well_formed = len(seed) == 32 and (
        not rest or (rest.startswith(_RING_ED25519_PUBLIC) and len(rest) == 5 + 32)
    )
    if not well_formed:
        raise IdentityError(f"{source}: malformed Ed25519 PKCS#8 v2 private key")
    identity = Ed25519Identity(Ed25519PrivateKey.from_private_bytes(seed))
    if rest and identity.public_key_der[-32:] != rest[5:]:
        raise IdentityError(
            f"{source}: the Ed25519 key's embedded public key does not match its private key "
            "(the file is corrupt)"
        )
    return identity


def _identity_for(key: object, source: str) -> Identity:
    if isinstance(key, Ed25519PrivateKey):
        return Ed25519Identity(key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256K1):
            raise IdentityError(
                f"{source}: ECDSA key on curve {key.curve.name}; only secp256k1 is supported"
            )
        return Secp256k1Identity(key)
    raise IdentityError(
        f"{source}: {type(key).__name__.removeprefix('_')} keys are not supported; "
        "use an Ed25519 or secp256k1 key"
    )


def _check_private(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise IdentityError(f"identity file {path} does not exist") from None
    except OSError as exc:
        raise IdentityError(f"cannot read identity file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise IdentityError(f"identity file {path} is not a regular file")
    if os.name == "posix" and mode & 0o077:
        raise IdentityError(
            f"identity file {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(mode):04o}); a private key must be private to its owner: "
            f"run `chmod 600 {path}`"
        )


# ----------------------------------------------------------------------- dfx


def _dfx_config_dir(config_root: str | os.PathLike[str] | None) -> Path:
    if config_root is not None:
        root = Path(config_root)
    elif os.environ.get("DFX_CONFIG_ROOT"):
        root = Path(os.environ["DFX_CONFIG_ROOT"])
    else:
        root = Path.home()
    return root.expanduser() / ".config" / "dfx"


def _dfx_default_name(base: Path) -> str:
    """dfx's selected identity (``identity.json``'s ``default``), else ``default``."""
    try:
        selected = json.loads((base / "identity.json").read_text("utf-8")).get("default")
    except (OSError, ValueError, AttributeError):
        return "default"
    return selected if isinstance(selected, str) and selected else "default"


def _missing_dfx_pem(name: str, directory: Path) -> str:
    if (directory / "identity.pem.encrypted").exists():
        return (
            f"dfx identity {name!r} is password-protected ({directory}/identity.pem.encrypted), "
            f"which this agent cannot decrypt; export it with `dfx identity export {name} > "
            f"key.pem && chmod 600 key.pem` and use Identity.from_pem_file('key.pem')"
        )
    if (directory / "identity.json").exists():
        return (
            f"dfx identity {name!r} keeps its key in the system keyring or an HSM; export it "
            f"with `dfx identity export {name} > key.pem && chmod 600 key.pem` and use "
            "Identity.from_pem_file('key.pem')"
        )
    return f"no dfx identity named {name!r} (looked in {directory}); `dfx identity list` shows them"
