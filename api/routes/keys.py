"""``/v1/keys``: API keys of the caller's tenant (create, list, revoke)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from kernos.api.deps import KernelDep, allowed
from kernos.kernel.identity import Principal
from kernos.policy.keys import ApiKey
from kernos.policy.service import policy_services

router = APIRouter(prefix="/v1/keys", tags=["keys"])


class KeyCreate(BaseModel):
    """``POST /v1/keys``."""

    model_config = ConfigDict(extra="forbid")

    principal: str = Field(min_length=1, max_length=63, description="Who the key acts as.")
    role: str = Field(min_length=1, max_length=63, description="Role granted in the tenant.")
    tenant: str | None = Field(
        default=None,
        max_length=63,
        description="The principal's tenant; default the caller's. Another tenant only for the "
        "local admin (it is created if missing).",
    )
    expires_at: datetime | None = Field(default=None, description="When the key stops working.")
    description: str = Field(default="", max_length=200)


class KeyPublic(BaseModel):
    """An API key as listed (never its token)."""

    key_id: str
    tenant: str
    principal: str
    role: str
    description: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    status: str


class KeyCreated(KeyPublic):
    """A new key with its token: shown in this response only."""

    token: str


class KeyList(BaseModel):
    """The caller's tenant's keys."""

    data: list[KeyPublic]
    count: int


def _public(key: ApiKey, now: datetime) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "tenant": key.tenant,
        "principal": key.principal,
        "role": key.role,
        "description": key.description,
        "created_by": key.created_by,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
        "status": key.status(now),
    }


@router.post(
    "", response_model=KeyCreated, status_code=status.HTTP_201_CREATED, summary="Create a key"
)
async def create_key(
    body: KeyCreate,
    principal: Annotated[Principal, allowed("key:*", "admin")],
    kernel: KernelDep,
) -> KeyCreated:
    """Create a key for a principal (created if missing) with a role in the tenant's policy.

    The token is in this response only; the kernel keeps its SHA-256.
    """
    created = await policy_services(kernel).create_key(
        principal,
        name=body.principal,
        role=body.role,
        tenant=body.tenant,
        expires_at=body.expires_at,
        description=body.description,
    )
    return KeyCreated(**_public(created.key, kernel.clock.now()), token=created.token)


@router.get("", response_model=KeyList, summary="List keys")
async def list_keys(
    principal: Annotated[Principal, allowed("key:*", "read")], kernel: KernelDep
) -> KeyList:
    """The caller's tenant's keys, oldest first."""
    found = await policy_services(kernel).keys.list_keys(tenant=principal.tenant)
    now = kernel.clock.now()
    return KeyList(data=[KeyPublic(**_public(k, now)) for k in found], count=len(found))


@router.post("/{key_id}/revoke", response_model=KeyPublic, summary="Revoke a key")
async def revoke_key(
    key_id: str,
    principal: Annotated[Principal, allowed("key:*", "admin")],
    kernel: KernelDep,
) -> KeyPublic:
    """Revoke now (404 for another tenant's key, 409 if already revoked)."""
    key = await policy_services(kernel).revoke_key(principal, key_id)
    return KeyPublic(**_public(key, kernel.clock.now()))
