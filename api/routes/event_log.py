"""``GET /v1/events``: the tenant's published events, newest page first or followed by
``seq`` (what the console's live event view and ``kernos events list`` read)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from kernos.api.deps import KernelDep, allowed
from kernos.api.schemas import MAX_ID
from kernos.kernel.identity import Principal

router = APIRouter(prefix="/v1/events", tags=["events"])


class EventList(BaseModel):
    """Published events, oldest first, each with its ``seq`` (the cursor)."""

    data: list[dict[str, Any]]
    count: int
    last_seq: int | None
    """The highest ``seq`` in ``data``: pass it as ``after`` to read what comes next."""


@router.get("", response_model=EventList, summary="List published events")
async def list_events(
    principal: Annotated[Principal, allowed("event:*", "read")],
    kernel: KernelDep,
    after: Annotated[
        int | None,
        Query(ge=0, le=MAX_ID, description="Only events after this seq, oldest first."),
    ] = None,
    topic: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=128,
            pattern=r"^[A-Za-z0-9_.:-]+\*?$|^\*$",
            description="A topic, or a prefix ending in * (sensor.*).",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most events returned.")] = 100,
) -> EventList:
    """Without ``after``: the newest ``limit`` events of the caller's tenant, oldest first.
    With ``after``: the first ``limit`` events after that ``seq`` (follow ``last_seq``)."""
    found = await kernel.events.published(
        tenant=principal.tenant, after=after, topic=None if topic == "*" else topic, limit=limit
    )
    data = [{"seq": seq, **event.as_dict()} for seq, event in found]
    return EventList(data=data, count=len(data), last_seq=found[-1][0] if found else after)
