"""``GET /metrics``: the kernel's metrics in Prometheus text format."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Response
from sqlalchemy import func, select

from kernos.api.deps import KernelDep, allowed
from kernos.kernel.identity import Principal
from kernos.kernel.processes import ProcessState
from kernos.kernel.prometheus import CONTENT_TYPE, Family, families, render
from kernos.kernel.storage.models import ProcessRow, TenantRow
from kernos.kernel.telemetry import ATTR_TENANT

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

    def mine(attributes: Mapping[str, Any]) -> bool:
        tenant = attributes.get(ATTR_TENANT)
        return tenant is None or tenant == principal.tenant

    found = families(kernel.telemetry.collect(), keep=mine)
    async with kernel.db.read() as session:
        counts = dict(
            (
                await session.execute(
                    select(ProcessRow.state, func.count())
                    .join(TenantRow, TenantRow.id == ProcessRow.tenant_id)
                    .where(TenantRow.name == principal.tenant)
                    .group_by(ProcessRow.state)
                )
            ).all()
        )
    processes = Family("kernos_processes", "gauge", "Processes of the tenant by state.")
    for state in ProcessState:
        processes.samples.append(
            ("kernos_processes", {"state": state.value}, float(counts.get(state.value, 0)))
        )
    found = [f for f in found if f.name != processes.name] + [processes]
    return Response(render(found), media_type=CONTENT_TYPE)
