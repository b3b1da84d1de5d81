"""``GET /metrics``: the kernel's metrics in Prometheus text format."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response

from kernos.api.deps import KernelDep, allowed
from kernos.kernel.exposition import exposition
from kernos.kernel.identity import Principal
from kernos.kernel.prometheus import CONTENT_TYPE

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Text exposition 0.0.4."}},
)
async def get_metrics(
    principal: Annotated[Principal, allowed("metrics:*", "read")], kernel: KernelDep
) -> Response:
    """Every metric the kernel records (syscall latency and counts by kind and outcome, GenAI
    operation duration and token use, scheduler queues, storage commits), plus processes by
    state. Series labelled with a tenant show the caller's tenant only; scrape with a key
    (``Authorization: Bearer``) of a role that may read ``metrics:*``."""
    return Response(await exposition(kernel, tenant=principal.tenant), media_type=CONTENT_TYPE)
