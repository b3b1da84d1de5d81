"""Tenants and principals: who acts, and within which tenant.

Every call into the kernel carries a ``Principal``. Tenants and principals are rows in the
kernel database, so everything after this is written tenant-aware from the start; API keys
and Casbin roles attach to them in the policy layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from kernos.kernel.clock import Clock
from kernos.kernel.errors import InvalidInput, NotFound
from kernos.kernel.storage.database import Database
from kernos.kernel.storage.models import PrincipalRow, TenantRow

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")

DEFAULT_TENANT = "default"
"""The tenant a fresh home starts with."""

LOCAL_ADMIN = "admin"
"""The local administrator principal of the default tenant."""


class PrincipalKind(StrEnum):
    """What kind of actor a principal is."""

    PERSON = "person"
    SERVICE = "service"
    AGENT = "agent"


@dataclass(frozen=True, slots=True, kw_only=True)
class Tenant:
    """A tenant as the kernel sees it."""

    name: str
    display_name: str = ""
    disabled: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """The actor every call carries: a person, service or agent within one tenant."""

    tenant: str
    name: str
    kind: PrincipalKind

    @property
    def subject(self) -> str:
        """``tenant/name``: unique across the kernel, used in logs and audit records."""
        return f"{self.tenant}/{self.name}"


def check_name(name: str, *, what: str) -> str:
    """Validate a tenant or principal name (lowercase, 1-63 chars, ``[a-z0-9._-]``)."""
    if not _NAME.match(name):
        raise InvalidInput(
            f"{what} name {name!r} is invalid: use 1-63 lowercase letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return name


class IdentityStore:
    """Tenants and principals in the kernel database."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def ensure_tenant(self, name: str, *, display_name: str = "") -> Tenant:
        """Create the tenant if missing; return it either way."""
        check_name(name, what="tenant")

        def job(session: Session) -> Tenant:
            row = session.scalar(select(TenantRow).where(TenantRow.name == name))
            if row is None:
                row = TenantRow(
                    name=name,
                    display_name=display_name,
                    created_at=self._clock.now(),
                    disabled=False,
                )
                session.add(row)
                session.flush()
            return Tenant(name=row.name, display_name=row.display_name, disabled=row.disabled)

        return await self._db.write(job)

    async def ensure_principal(
        self, tenant: str, name: str, *, kind: PrincipalKind, display_name: str = ""
    ) -> Principal:
        """Create the principal in an existing tenant if missing; return it either way."""
        check_name(name, what="principal")

        def job(session: Session) -> Principal:
            tenant_row = session.scalar(select(TenantRow).where(TenantRow.name == tenant))
            if tenant_row is None:
                raise NotFound(f"tenant {tenant!r} does not exist")
            row = session.scalar(
                select(PrincipalRow).where(
                    PrincipalRow.tenant_id == tenant_row.id, PrincipalRow.name == name
                )
            )
            if row is None:
                row = PrincipalRow(
                    tenant_id=tenant_row.id,
                    name=name,
                    kind=kind.value,
                    display_name=display_name,
                    created_at=self._clock.now(),
                    disabled=False,
                )
                session.add(row)
                session.flush()
            return Principal(tenant=tenant, name=row.name, kind=PrincipalKind(row.kind))

        return await self._db.write(job)

    async def get_principal(self, tenant: str, name: str) -> Principal:
        """The principal ``name`` of ``tenant``; ``NotFound`` if either does not exist."""
        async with self._db.read() as session:
            row = await session.execute(
                select(PrincipalRow.name, PrincipalRow.kind)
                .join(TenantRow, TenantRow.id == PrincipalRow.tenant_id)
                .where(TenantRow.name == tenant, PrincipalRow.name == name)
            )
            found = row.first()
        if found is None:
            raise NotFound(f"principal {name!r} does not exist in tenant {tenant!r}")
        return Principal(tenant=tenant, name=found.name, kind=PrincipalKind(found.kind))

    async def list_tenants(self) -> list[Tenant]:
        """Every tenant, by name."""
        async with self._db.read() as session:
            rows = await session.scalars(select(TenantRow).order_by(TenantRow.name))
            return [
                Tenant(name=r.name, display_name=r.display_name, disabled=r.disabled) for r in rows
            ]

    async def list_principals(self, tenant: str) -> list[Principal]:
        """The principals of one tenant, by name (never another tenant's)."""
        async with self._db.read() as session:
            rows = await session.execute(
                select(PrincipalRow.name, PrincipalRow.kind)
                .join(TenantRow, TenantRow.id == PrincipalRow.tenant_id)
                .where(TenantRow.name == tenant)
                .order_by(PrincipalRow.name)
            )
            return [Principal(tenant=tenant, name=r.name, kind=PrincipalKind(r.kind)) for r in rows]
