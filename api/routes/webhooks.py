"""Webhooks of asynchronous runs: the tenant's signing secret and each run's delivery record."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from kernos.api.deps import KernelDep, ProcessesDep, allowed
from kernos.api.schemas import (
    MAX_ID,
    WebhookDeliveryList,
    WebhookDeliveryPublic,
    WebhookSecret,
)
from kernos.api.webhooks import SIGNATURE_HEADER, deliveries, master_key, tenant_secret
from kernos.kernel.identity import Principal

router = APIRouter(tags=["webhooks"])


@router.get("/v1/webhooks/secret", response_model=WebhookSecret, summary="Webhook signing secret")
async def get_secret(
    principal: Annotated[Principal, allowed("key:webhooks", "admin")], kernel: KernelDep
) -> WebhookSecret:
    """The caller's tenant's signing secret, for receivers to check ``Kernos-Signature``
    (policy object ``key:webhooks``, action ``admin``: admins by default — a reader could
    forge webhooks with it)."""
    return WebhookSecret(
        tenant=principal.tenant,
        secret=tenant_secret(master_key(kernel.settings.home), principal.tenant),
        header=SIGNATURE_HEADER,
        scheme="t=<unix seconds>,v1=<hex HMAC-SHA256(secret, '<t>.' + raw body)>",
    )


@router.get(
    "/v1/processes/{pid}/webhooks",
    response_model=WebhookDeliveryList,
    summary="A run's webhook deliveries",
    tags=["processes"],
)
async def list_deliveries(
    pid: Annotated[int, Path(ge=1, le=MAX_ID)],
    principal: Annotated[Principal, allowed("process:*", "read")],
    processes: ProcessesDep,
    kernel: KernelDep,
) -> WebhookDeliveryList:
    """Every attempt to deliver ``pid``'s webhook, oldest first (404 for another tenant's)."""
    await processes.get(pid, tenant=principal.tenant)
    rows = await deliveries(kernel, pid, tenant=principal.tenant)
    return WebhookDeliveryList(
        data=[
            WebhookDeliveryPublic(
                attempt=r.attempt,
                url=r.url,
                status_code=r.status_code,
                error=r.error,
                duration_ms=r.duration_ms,
                at=r.at,
            )
            for r in rows
        ],
        count=len(rows),
    )
