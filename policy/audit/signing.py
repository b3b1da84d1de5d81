"""Ed25519 keys for audit checkpoints: generate, load (never from inside ``KERNOS_HOME``).

The signing key is what makes a rewritten history detectable: whoever can write the database
can recompute every hash, but cannot sign a new Merkle root. So it must not live where the
database lives: a key inside ``KERNOS_HOME`` is refused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from kernos.kernel.errors import ConfigError, InvalidInput

log = logging.getLogger(__name__)

_HEX_KEY = re.compile(r"^[0-9a-f]{64}$")


def inside(path: Path, home: Path) -> bool:
    """Whether ``path`` is ``home`` or below it (symbolic links followed)."""
    resolved = path.expanduser().absolute().resolve()
    return resolved.is_relative_to(home.expanduser().absolute().resolve())


def refuse_inside_home(path: Path, home: Path, *, what: str) -> None:
    """``ConfigError`` if ``path`` lies inside ``home``, saying why that is unsafe."""
    if inside(path, home):
        raise ConfigError(
            f"{what} {path} is inside KERNOS_HOME ({home}): whoever can write the database "
            f"can usually read and write there too, and could then forge history; keep the "
            f"{what} elsewhere (a path or secret mount the operator controls)"
        )


def public_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The raw 32-byte public key as lowercase hex."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def fingerprint(public_key_hex: str) -> str:
    """SHA-256 of the raw public key, hex: what checkpoints name their key by."""
    return hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()


def generate_key(out: Path, *, home: Path | None = None) -> str:
    """Write a new Ed25519 private key (PKCS#8 PEM, mode 0600) to ``out``; return its public
    key (hex). Refuses an existing file (``Conflict`` would hide a key mix-up; this is
    ``InvalidInput``) and a path inside ``home``."""
    if home is not None:
        refuse_inside_home(out, home, what="audit signing key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidInput(f"{out} already exists; not overwriting a key") from None
    except OSError as exc:
        raise InvalidInput(f"cannot create {out}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    return public_hex(key)


def load_signing_key(path: Path, *, home: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key at ``path`` (PEM); ``ConfigError`` saying what is wrong."""
    refuse_inside_home(path, home, what="audit signing key")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the audit signing key {path}: {exc.strerror or exc}; "
            "create one with `kernos audit keygen --out PATH`"
        ) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{path} is not an unencrypted PEM private key ({exc}); "
            "create one with `kernos audit keygen --out PATH`"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} holds a {type(key).__name__}; audit checkpoints need Ed25519")
    if hasattr(os, "getuid") and path.stat().st_mode & 0o077:
        log.warning("audit signing key %s is readable by others; chmod 600 it", path)
    return key


def load_public_key(value: str) -> str:
    """A public key given by an operator: 64 hex digits, or a PEM file (public or private)."""
    text = value.strip().lower()
    if _HEX_KEY.match(text):
        return text
    path = Path(value).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(
            f"public key {value!r} is neither 64 hex digits nor a readable PEM file "
            f"({exc.strerror or exc})"
        ) from None
    try:
        if b"PRIVATE KEY" in data:
            private = serialization.load_pem_private_key(data, password=None)
            if isinstance(private, Ed25519PrivateKey):
                return public_hex(private)
        else:
            public = serialization.load_pem_public_key(data)
            if isinstance(public, Ed25519PublicKey):
                return public_hex(public)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{path} is not a PEM key ({exc})") from None
    raise InvalidInput(f"{path} is not an Ed25519 key")


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    """The Ed25519 signature of ``message``, hex."""
    return key.sign(message).hex()


def signature_valid(public_key_hex: str, message: bytes, signature_hex: str) -> bool:
    """Whether ``signature_hex`` is ``public_key_hex``'s signature of ``message``."""
    try:
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        public.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True
