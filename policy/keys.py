"""API keys: high-entropy bearer tokens, shown once, stored only as SHA-256 digests.

A token is ``kn_`` followed by 43 URL-safe base64 characters (256 random bits). Because it is
that random, a plain SHA-256 is the right digest: a slow password hash would add nothing but
latency to every request. The database holds the digest, a public ``key_id`` (``key_…``, what
operators list and revoke) and the key's principal, role, expiry and revocation; the token
itself exists only in the response that created it. Lookups go by digest (an index probe on
the hash of a secret leaks nothing usable about the secret).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from kernos.kernel.clock import Clock
from kernos.kernel.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from kernos.kernel.identity import Principal, PrincipalKind, check_name
from kernos.kernel.storage.database import Database
from kernos.kernel.storage.models import ApiKeyRow, PrincipalRow, TenantRow

log = logging.getLogger(__name__)

TOKEN_PREFIX = "kn_"  # noqa: S105  # the public prefix of every key, not a secret
"""Every Kernos API key starts with this (secret scanners and the redactor look for it)."""

_TOKEN = re.compile(r"^kn_[A-Za-z0-9_-]{43}$")
_KEY_ID = re.compile(r"^key_[0-9a-f]{12}$")


def digest(token: str) -> str:
    """The stored SHA-256 of a token (hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh API key token (256 random bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    """What is known about a key after creation (never its token)."""

    key_id: str
    tenant: str
    principal: str
    role: str
    description: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def status(self, now: datetime) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True, kw_only=True)
class CreatedKey:
    """A new key and its token: the only time the token is available."""

    key: ApiKey
    token: str

    def __repr__(self) -> str:  # never show the token in logs or tracebacks
        return f"CreatedKey(key_id={self.key.key_id!r}, principal={self.key.principal!r})"


def _key(row: ApiKeyRow, tenant: str, principal: str) -> ApiKey:
    return ApiKey(
        key_id=row.key_id,
        tenant=tenant,
        principal=principal,
        role=row.role,
        description=row.description,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


class KeyStore:
    """API keys in the kernel database; also the ``Authenticator`` of bearer keys."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create(
        self,
        tenant: str,
        principal: str,
        *,
        role: str,
        created_by: str,
        expires_at: datetime | None = None,
        description: str = "",
        kind: PrincipalKind = PrincipalKind.SERVICE,
    ) -> CreatedKey:
        """Create a key for ``principal`` of ``tenant`` (the principal is created if missing).

        The tenant must exist. The role is recorded with the key; granting it in the policy is
        the caller's business (the policy service does both).
        """
        check_name(principal, what="principal")
        check_name(role, what="role")
        now = self._clock.now()
        if expires_at is not None and expires_at <= now:
            raise InvalidInput(f"the expiry {expires_at.isoformat()} is in the past")
        token = new_token()
        key_id = "key_" + secrets.token_hex(6)

        def job(session: Session) -> ApiKey:
            tenant_row = session.scalar(select(TenantRow).where(TenantRow.name == tenant))
            if tenant_row is None:
                raise NotFound(f"tenant {tenant!r} does not exist; create it first")
            row = session.scalar(
                select(PrincipalRow).where(
                    PrincipalRow.tenant_id == tenant_row.id, PrincipalRow.name == principal
                )
            )
            if row is None:
                row = PrincipalRow(
                    tenant_id=tenant_row.id,
                    name=principal,
                    kind=kind.value,
                    display_name="",
                    created_at=now,
                    disabled=False,
                )
                session.add(row)
                session.flush()
            key = ApiKeyRow(
                key_id=key_id,
                digest=digest(token),
                principal_id=row.id,
                role=role,
                description=description,
                created_by=created_by,
                created_at=now,
                expires_at=expires_at,
                revoked_at=None,
            )
            session.add(key)
            session.flush()
            return _key(key, tenant, principal)

        key = await self._db.write(job)
        log.info(
            "api key created",
            extra={"key_id": key_id, "tenant": tenant, "principal": principal, "role": role},
        )
        return CreatedKey(key=key, token=token)

    async def list_keys(self, *, tenant: str | None = None) -> list[ApiKey]:
        """Keys (of one tenant, or all), oldest first; never their tokens."""
        query = (
            select(ApiKeyRow, TenantRow.name, PrincipalRow.name)
            .join(PrincipalRow, PrincipalRow.id == ApiKeyRow.principal_id)
            .join(TenantRow, TenantRow.id == PrincipalRow.tenant_id)
            .order_by(ApiKeyRow.id)
        )
        if tenant is not None:
            query = query.where(TenantRow.name == tenant)
        async with self._db.read() as session:
            rows = (await session.execute(query)).all()
        return [_key(row, tenant_name, principal) for row, tenant_name, principal in rows]

    async def get(self, key_id: str, *, tenant: str | None = None) -> ApiKey:
        """One key; ``NotFound`` if it does not exist or belongs to another tenant."""
        for key in await self.list_keys(tenant=tenant):
            if key.key_id == key_id:
                return key
        raise NotFound(f"API key {key_id!r} does not exist; see 'kernos keys list'")

    async def revoke(self, key_id: str, *, by: str, tenant: str | None = None) -> ApiKey:
        """Revoke a key now (``Conflict`` if it already is). Idempotence is the caller's."""
        if not _KEY_ID.match(key_id):
            raise InvalidInput(f"{key_id!r} is not a key id (they look like key_0123456789ab)")
        now = self._clock.now()

        def job(session: Session) -> ApiKey:
            query = (
                select(ApiKeyRow, TenantRow.name, PrincipalRow.name)
                .join(PrincipalRow, PrincipalRow.id == ApiKeyRow.principal_id)
                .join(TenantRow, TenantRow.id == PrincipalRow.tenant_id)
                .where(ApiKeyRow.key_id == key_id)
            )
            if tenant is not None:
                query = query.where(TenantRow.name == tenant)
            found = session.execute(query).first()
            if found is None:
                raise NotFound(f"API key {key_id!r} does not exist; see 'kernos keys list'")
            row, tenant_name, principal = found
            if row.revoked_at is not None:
                raise Conflict(f"API key {key_id} was already revoked at {row.revoked_at:%c}")
            row.revoked_at = now
            row.revoked_by = by
            session.flush()
            return _key(row, tenant_name, principal)

        key = await self._db.write(job)
        log.info("api key revoked", extra={"key_id": key_id, "by": by})
        return key

    async def authenticate(self, token: str) -> Principal | None:
        """The principal of an active key; ``None`` for a token that is not a Kernos key.

        Raises ``Unauthenticated`` for a key that was revoked or has expired, or whose
        principal or tenant is disabled, so the caller learns why and what to do.
        """
        if not token.startswith(TOKEN_PREFIX):
            return None
        if not _TOKEN.match(token):
            raise Unauthenticated("the bearer token looks like a Kernos key but is malformed")
        query = (
            select(
                ApiKeyRow.key_id,
                ApiKeyRow.expires_at,
                ApiKeyRow.revoked_at,
                PrincipalRow.name,
                PrincipalRow.kind,
                PrincipalRow.disabled,
                TenantRow.name.label("tenant"),
                TenantRow.disabled.label("tenant_disabled"),
            )
            .join(PrincipalRow, PrincipalRow.id == ApiKeyRow.principal_id)
            .join(TenantRow, TenantRow.id == PrincipalRow.tenant_id)
            .where(ApiKeyRow.digest == digest(token))
        )
        found = await self._db.query(lambda session: session.execute(query).first())
        if found is None:
            return None
        if found.revoked_at is not None:
            raise Unauthenticated(
                f"API key {found.key_id} was revoked at {found.revoked_at.isoformat()}; "
                "ask an admin for a new key"
            )
        if found.expires_at is not None and found.expires_at <= self._clock.now():
            raise Unauthenticated(
                f"API key {found.key_id} expired at {found.expires_at.isoformat()}; "
                "ask an admin for a new key"
            )
        if found.disabled or found.tenant_disabled:
            raise Unauthenticated(f"API key {found.key_id} belongs to a disabled principal")
        return Principal(tenant=found.tenant, name=found.name, kind=PrincipalKind(found.kind))


__all__ = ["TOKEN_PREFIX", "ApiKey", "CreatedKey", "KeyStore", "digest", "new_token"]
