"""Model artifacts: digests, the signed manifest, Ed25519 keys (used by the model registry).

A signature is Ed25519 over the *manifest*: the canonical JSON (sorted keys, no spaces, UTF-8)
of ``{"name", "provenance", "sha256", "size", "version"}``. It binds the registry record to the
bytes (through the digest) and to where they came from, so a changed artifact fails the digest
and a changed record fails the signature. Keys are named by their *fingerprint*: SHA-256 of
the raw 32-byte public key, hex (the same naming the audit checkpoints use). Everything here is
blocking; callers run it with ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kernos.kernel.errors import ConfigError, InvalidInput
from kernos.kernel.model_records import ModelVersion, VerifyProblem, VerifyResult

CHUNK_BYTES = 1 << 20
"""Bytes read at a time while hashing (an artifact can be many GiB)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Digest:
    """An artifact's SHA-256 (hex) and size in bytes."""

    sha256: str
    size: int


def hash_file(path: Path, *, copy_to: Path | None = None) -> Digest:
    """SHA-256 and size of ``path``, read in chunks; with ``copy_to``, copied there in the same
    pass (the digest is of the bytes written). Raises ``OSError`` if it cannot be read."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as source:
        if copy_to is None:
            while chunk := source.read(CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
        else:
            copy_to.parent.mkdir(parents=True, exist_ok=True)
            with copy_to.open("wb") as target:
                while chunk := source.read(CHUNK_BYTES):
                    digest.update(chunk)
                    size += len(chunk)
                    target.write(chunk)
            shutil.copystat(path, copy_to)
    return Digest(sha256=digest.hexdigest(), size=size)


def manifest(
    name: str, version: str, *, sha256: str, size: int, provenance: Mapping[str, Any]
) -> bytes:
    """The canonical bytes a model signature covers."""
    body = {
        "name": name,
        "provenance": dict(provenance),
        "sha256": sha256,
        "size": size,
        "version": version,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key, hex: how the registry names a key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key (PEM, unencrypted) at ``path``; ``InvalidInput`` saying why not."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(
            f"cannot read the signing key {path}: {exc.strerror or exc}; the kernel reads it, "
            "so give a path on the kernel's machine"
        ) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            f"{path} is not an unencrypted PEM private key ({exc}); make one with "
            "`openssl genpkey -algorithm ed25519 -out KEY.pem`"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(f"{path} is not an Ed25519 key; model signatures are Ed25519")
    return key


def load_trusted_keys(paths: Iterable[Path]) -> dict[str, Ed25519PublicKey]:
    """The trusted public keys (PEM files, public or private) by fingerprint.

    Raises ``ConfigError`` naming ``model_trusted_keys`` for a file that is not such a key.
    """
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"model_trusted_keys: cannot read {path}: {exc.strerror or exc}"
            ) from None
        key: Any
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError):
            try:
                key = serialization.load_pem_private_key(data, password=None).public_key()
            except (ValueError, TypeError) as exc:
                raise ConfigError(
                    f"model_trusted_keys: {path} is not a PEM Ed25519 key ({exc})"
                ) from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(f"model_trusted_keys: {path} is not an Ed25519 key")
        keys[fingerprint(key)] = key
    return keys


def sign(key: Ed25519PrivateKey, body: bytes) -> str:
    """The signature over ``body``, hex."""
    return key.sign(body).hex()


def signature_valid(key: Ed25519PublicKey, body: bytes, signature: str) -> bool:
    """Whether ``signature`` (hex) is ``key``'s signature over ``body``."""
    try:
        key.verify(bytes.fromhex(signature), body)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_artifact(model: ModelVersion, trusted: Mapping[str, Ed25519PublicKey]) -> VerifyResult:
    """Re-hash ``model``'s artifact and check its signature against the ``trusted`` keys
    (by fingerprint): every problem found, never an exception."""
    problems: list[VerifyProblem] = []
    details: list[str] = []
    actual: Digest | None = None
    try:
        actual = hash_file(Path(model.path))
    except OSError as exc:
        problems.append(VerifyProblem.MISSING_FILE)
        details.append(f"the artifact {model.path} cannot be read ({exc.strerror or exc})")
    else:
        if actual.sha256 != model.sha256 or actual.size != model.size:
            problems.append(VerifyProblem.BYTES_CHANGED)
            details.append(
                f"the bytes changed: {model.path} hashes to {actual.sha256[:16]}… "
                f"({actual.size} bytes), registered as {model.sha256[:16]}… ({model.size} bytes)"
            )
    if model.signature is not None:
        key = trusted.get(model.key_fingerprint or "")
        body = manifest(
            model.name,
            model.version,
            sha256=model.sha256,
            size=model.size,
            provenance=model.provenance,
        )
        if key is None:
            problems.append(VerifyProblem.UNTRUSTED_KEY)
            details.append(
                f"it was signed by key {(model.key_fingerprint or '?')[:16]}…, which is not in "
                "KERNOS_MODEL_TRUSTED_KEYS"
            )
        elif not signature_valid(key, body, model.signature):
            problems.append(VerifyProblem.BAD_SIGNATURE)
            details.append("the signature does not match the registered record")
    detail = "; ".join(details) if details else f"{model.ref} verified"
    if problems:
        detail += "; re-register the artifact as a new version"
    return VerifyResult(
        name=model.name,
        version=model.version,
        expected_sha256=model.sha256,
        actual_sha256=actual.sha256 if actual is not None else None,
        expected_size=model.size,
        actual_size=actual.size if actual is not None else None,
        signed=model.signature is not None,
        key_fingerprint=model.key_fingerprint,
        problems=tuple(problems),
        detail=detail,
    )
