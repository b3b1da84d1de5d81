"""``/v1/events``: the dead-letter queue (inspect and replay).

Event ingest (``POST /v1/events``, batches, rate limits) arrives with the API issue.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from kernos.api.deps import KernelDep, allowed
from kernos.kernel.identity import Principal

router = APIRouter(prefix="/v1/events", tags=["events"])


class DeadLetterList(BaseModel):
    """A page of dead letters."""

    data: list[dict[str, Any]]
    count: int


@router.get("/dlq", response_model=DeadLetterList, summary="List dead letters")
async def list_dead_letters(
    principal: Annotated[Principal, allowed("event:*", "read")],
    kernel: KernelDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most to return.")] = 100,
    include_replayed: Annotated[bool, Query(description="Also those already replayed.")] = False,
) -> DeadLetterList:
    """Deliveries that failed every attempt, newest first, of the caller's tenant."""
    found = await kernel.events.dead_letters(
        tenant=principal.tenant, limit=limit, include_replayed=include_replayed
    )
    return DeadLetterList(data=[d.as_dict() for d in found], count=len(found))


@router.post("/dlq/{dead_letter_id}/replay", summary="Replay a dead letter")
async def replay_dead_letter(
    dead_letter_id: int,
    principal: Annotated[Principal, allowed("event:*", "write")],
    kernel: KernelDep,
) -> dict[str, Any]:
    """Deliver it again with all its attempts. 404 if unknown or another tenant's, 409 if
    it was already replayed."""
    replayed = await kernel.events.replay(dead_letter_id, tenant=principal.tenant, by=principal)
    return replayed.as_dict()
