"""The tokenization vault: redacted originals, encrypted, revealed only with an audit record.

Redaction replaces a value with a token such as ``[EMAIL:tok_3f9a…]``. The token is an HMAC
of (tenant, kind, original) under a key derived from the vault key, so the same value maps to
the same token within a tenant and to a different one in every other tenant. The original is
kept in the ``vault_entries`` table, AES-GCM encrypted under a second derived key, with the
tenant, kind and token bound in as associated data (a row moved to another tenant or token
no longer decrypts).

The vault key is 32 random bytes in a file (``Settings.vault_key_path``), created with mode
0600 on first use. Losing it makes every redacted value unrevealable, so a missing key file
next to a vault that already holds entries is refused rather than silently replaced.

``Vault.store`` runs inside the caller's write job (the redactor never writes);
``Vault.reveal`` reads the entry and appends its ``vault.reveal`` audit record in one write
job, so every reveal — and every attempt at one — is on the audit log. Who may reveal is
decided by the caller (a Casbin check); the vault takes no decision of its own.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
import stat
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from kernos.kernel.clock import Clock
from kernos.kernel.errors import CheckFailed, ConfigError, InvalidInput, NotFound
from kernos.kernel.identity import Principal
from kernos.kernel.settings import Settings
from kernos.kernel.storage.database import Database
from kernos.kernel.storage.models import VaultRow
from kernos.kernel.syscalls import AuditRecord, AuditSink

log = logging.getLogger(__name__)

KEY_BYTES = 32
"""Size of the vault key file."""

TOKEN_PREFIX = "tok_"  # noqa: S105  # the public prefix of every token, not a secret
TOKEN_HEX = 20
"""Hex digits of HMAC in a token (80 bits: no collision in any tenant's lifetime of values)."""

TOKEN_PATTERN = re.compile(rf"{TOKEN_PREFIX}[0-9a-f]{{{TOKEN_HEX}}}")
"""A bare token."""

PLACEHOLDER_PATTERN = re.compile(rf"\[([A-Z][A-Z0-9_]*):({TOKEN_PATTERN.pattern})\]")
"""A token as it appears in redacted text: ``[KIND:tok_…]`` (groups: kind, token)."""

_NONCE_BYTES = 12
_SEP = "\x1f"  # unit separator: cannot occur in a tenant name or kind

REVEAL_EVENT = "vault.reveal"
"""The audit event of every reveal attempt."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VaultEntry:
    """One original to keep: its token, tenant, kind and the AES-GCM ciphertext."""

    token: str
    tenant: str
    kind: str
    key_id: str
    ciphertext: bytes


def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(master)


class VaultKey:
    """The vault key and the keys derived from it: token HMAC, AES-GCM, key id.

    Pure CPU and thread-safe: the redactor uses it on any thread.
    """

    __slots__ = ("_aead", "_token_key", "key_id")

    def __init__(self, master: bytes) -> None:
        if len(master) != KEY_BYTES:
            raise ConfigError(f"a vault key is {KEY_BYTES} bytes, not {len(master)}")
        self._token_key = _derive(master, b"kernos.vault.token.v1")
        self._aead = AESGCM(_derive(master, b"kernos.vault.aead.v1"))
        self.key_id: str = _derive(master, b"kernos.vault.key-id.v1")[:8].hex()
        """Names the key in every row it encrypted (16 hex digits; not secret)."""

    @classmethod
    def generate(cls) -> VaultKey:
        """A new random key (tests and benchmarks; a kernel loads its key file)."""
        return cls(os.urandom(KEY_BYTES))

    def token(self, tenant: str, kind: str, original: str) -> str:
        """The deterministic token of ``original`` for this tenant and kind."""
        message = f"{tenant}{_SEP}{kind}{_SEP}{original}".encode()
        digest = hmac.new(self._token_key, message, sha256).hexdigest()
        return TOKEN_PREFIX + digest[:TOKEN_HEX]

    def seal(self, original: str, *, tenant: str, kind: str) -> VaultEntry:
        """Encrypt ``original`` into a vault entry under its token."""
        token = self.token(tenant, kind, original)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, original.encode(), _aad(token, tenant, kind))
        return VaultEntry(
            token=token, tenant=tenant, kind=kind, key_id=self.key_id, ciphertext=nonce + sealed
        )

    def open(self, ciphertext: bytes, *, token: str, tenant: str, kind: str) -> str:
        """Decrypt an entry; ``CheckFailed`` if it was not sealed by this key for this token."""
        nonce, sealed = ciphertext[:_NONCE_BYTES], ciphertext[_NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, sealed, _aad(token, tenant, kind)).decode()
        except (InvalidTag, ValueError, UnicodeDecodeError):
            raise CheckFailed(
                f"vault entry {token} does not decrypt: it was altered, or sealed under "
                "another vault key; restore the vault key file it was written with"
            ) from None


def _aad(token: str, tenant: str, kind: str) -> bytes:
    return f"{token}{_SEP}{tenant}{_SEP}{kind}".encode()


# -- The key file ---------------------------------------------------------------------------


def load_vault_key(path: Path) -> VaultKey:
    """Read the key file; ``ConfigError`` if it is missing, unreadable or not 32 bytes."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"vault key file {path} does not exist; restore it from your backup, or set "
            "KERNOS_VAULT_KEY_FILE to where it is"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read vault key file {path}: {exc.strerror or exc}; make it readable by "
            "the user running Kernos (mode 0600)"
        ) from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"vault key file {path} is not a regular file")
    if len(data) != KEY_BYTES:
        raise ConfigError(
            f"vault key file {path} holds {len(data)} bytes, not {KEY_BYTES}; it is damaged "
            "or not a Kernos vault key: restore it from your backup"
        )
    if mode & 0o077:
        log.warning(
            "vault key file %s is readable by other users (mode %o); chmod 600 it",
            path,
            stat.S_IMODE(mode),
        )
    return VaultKey(data)


def create_vault_key(path: Path) -> VaultKey:
    """Create a new key file (mode 0600); if another process just created it, load that one."""
    master = os.urandom(KEY_BYTES)

    def cannot_create(exc: OSError) -> ConfigError:
        return ConfigError(
            f"cannot create vault key file {path}: {exc.strerror or exc}; check that its "
            "directory is writable, or set KERNOS_VAULT_KEY_FILE"
        )

    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise cannot_create(exc) from None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_vault_key(path)
    except OSError as exc:
        raise cannot_create(exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(master)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise ConfigError(f"cannot write vault key file {path}: {exc.strerror or exc}") from None
    log.info("created vault key file %s", path)
    return VaultKey(master)


# -- The vault ------------------------------------------------------------------------------


_TABLE = cast(Table, VaultRow.__table__)
_INSERT_IF_ABSENT: dict[str, Any] = {
    "sqlite": sqlite.insert(_TABLE).on_conflict_do_nothing(index_elements=["token"]),
    "postgresql": postgresql.insert(_TABLE).on_conflict_do_nothing(index_elements=["token"]),
}


class Vault:
    """Stores redacted originals and reveals them (audited), on the kernel database."""

    def __init__(self, db: Database, key: VaultKey, *, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self.key = key
        """The key the redactor derives tokens from and seals entries with."""

    @classmethod
    async def open(cls, settings: Settings, db: Database, *, clock: Clock) -> Vault:
        """The vault of a started database, loading (or on first use creating) its key file.

        ``ConfigError`` if the key file is unreadable or damaged, or missing while the vault
        already holds entries (a new key could not decrypt them).
        """
        path = settings.vault_key_path
        exists = await asyncio.to_thread(path.exists)
        if exists:
            key = await asyncio.to_thread(load_vault_key, path)
        else:
            async with db.read() as session:
                held = await session.scalar(select(func.count()).select_from(VaultRow))
            if held:
                raise ConfigError(
                    f"vault key file {path} is missing, but the vault holds {held} entries "
                    "sealed with it; restore the key file from your backup (or set "
                    "KERNOS_VAULT_KEY_FILE to it); a new key could not reveal them"
                )
            key = await asyncio.to_thread(create_vault_key, path)
        return cls(db, key, clock=clock)

    def store(self, session: Session, entries: list[VaultEntry] | tuple[VaultEntry, ...]) -> None:
        """Insert the entries that are not stored yet, inside the caller's write job.

        Synchronous (the writer's thread): ``await db.write(lambda s: vault.store(s, e))``.
        """
        if not entries:
            return
        now = self._clock.now()
        session.execute(
            _INSERT_IF_ABSENT[session.get_bind().dialect.name],
            [
                {
                    "token": e.token,
                    "tenant": e.tenant,
                    "kind": e.kind,
                    "key_id": e.key_id,
                    "ciphertext": e.ciphertext,
                    "created_at": now,
                }
                for e in entries
            ],
        )

    async def reveal(
        self,
        token: str,
        *,
        tenant: str,
        principal: Principal,
        audit: AuditSink,
        reason: str | None = None,
        rule: str | None = None,
    ) -> str:
        """The original behind ``token`` (bare, or as ``[KIND:tok_…]``) in ``tenant``.

        Appends a ``vault.reveal`` audit record (never the original) in the same write job
        that reads the entry, whether it is revealed or not. ``reason`` (the operator's
        justification) and ``rule`` (the policy rule that allowed the reveal) go on that
        record. Raises ``InvalidInput`` for a malformed token, ``NotFound`` if the tenant has
        no such token (another tenant's token included), ``CheckFailed`` if it does not
        decrypt under this vault's key.
        """
        bare = _parse_token(token)
        key = self.key

        def job(session: Session) -> tuple[bool, str | None, str | None]:
            row = session.execute(
                select(VaultRow.tenant, VaultRow.kind, VaultRow.key_id, VaultRow.ciphertext).where(
                    VaultRow.token == bare
                )
            ).first()
            original: str | None = None
            problem: str | None = None
            kind: str | None = None
            found = row is not None and row.tenant == tenant
            if row is None or row.tenant != tenant:
                problem = "no such token in this tenant"
            else:
                kind = row.kind
                try:
                    original = key.open(row.ciphertext, token=bare, tenant=tenant, kind=row.kind)
                except CheckFailed as exc:
                    problem = exc.message
                    if row.key_id != key.key_id:
                        problem = (
                            f"vault entry {bare} was sealed under vault key {row.key_id}, but "
                            f"the key file holds key {key.key_id}; restore the key it was "
                            "written with"
                        )
            summary = "revealed" if problem is None else f"refused: {problem}"
            if reason:
                summary += f"; reason: {reason}"
            audit.append(
                session,
                AuditRecord(
                    event=REVEAL_EVENT,
                    tenant=tenant,
                    principal=principal.subject,
                    kind=kind,
                    target=bare,
                    decision="allow" if problem is None else "deny",
                    rule=rule,
                    summary=summary[:1000],
                ),
            )
            return found, original, problem

        found, original, problem = await self._db.write(job)
        if not found:
            raise NotFound(f"no vault entry {bare} in tenant {tenant!r}")
        if original is None:
            raise CheckFailed(problem or f"vault entry {bare} could not be revealed")
        return original


def _parse_token(token: str) -> str:
    text = token.strip()
    placeholder = PLACEHOLDER_PATTERN.fullmatch(text)
    if placeholder is not None:
        return placeholder.group(2)
    if TOKEN_PATTERN.fullmatch(text):
        return text
    # The value is not echoed: whatever was pasted here may itself be a secret.
    raise InvalidInput(
        f"that is not a vault token; give tok_ and {TOKEN_HEX} hex digits, or the "
        "[KIND:tok_…] placeholder as it appears in redacted text"
    )
