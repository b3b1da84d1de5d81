"""Server-sent event streams of what processes do: per process and per tenant.

The stream is the audit log as it grows (state changes, syscalls, approvals, denials), one SSE
event per record with ``id`` = the record's ``seq``, so a client that reconnects with
``Last-Event-ID`` continues exactly after the last record it saw. A process's stream ends once
the process has finished and its last records are sent; a tenant's runs until the client
leaves. Records are read in pages as they commit (checked every ``POLL_SECONDS``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import StreamingResponse

from kernos.api.deps import ProcessesDep, allowed
from kernos.api.routes.audit import AuditLogDep
from kernos.api.schemas import MAX_ID
from kernos.kernel.identity import Principal
from kernos.kernel.processes import TERMINAL
from kernos.policy.audit import AuditLog

router = APIRouter(prefix="/v1", tags=["streams"])

POLL_SECONDS = 0.2
"""How often a stream looks for new records."""

PAGE = 500
"""Most records read per look."""

HEARTBEAT_SECONDS = 15.0
"""A comment line this often keeps idle connections (and proxies) open."""


def _sse(record: dict[str, Any]) -> str:
    return f"id: {record['seq']}\nevent: {record['event']}\ndata: {json.dumps(record)}\n\n"


def _resume_from(last_event_id: str | None, after: int | None) -> int | None:
    if last_event_id and last_event_id.strip().isdigit():
        return int(last_event_id)
    return after


async def _follow(
    request: Request,
    audit: AuditLog,
    *,
    tenant: str,
    pid: int | None,
    after: int | None,
    finished: Any = None,
) -> AsyncIterator[str]:
    cursor = after or 0
    quiet = 0.0
    while not await request.is_disconnected():
        done = finished is not None and await finished()  # look before reading: no record lost
        page = await audit.records(tenant=tenant, pid=pid, after=cursor, limit=PAGE)
        for record in page:
            cursor = record["seq"]
            yield _sse(record)
        if page:
            quiet = 0.0
            continue
        if done:
            return
        await asyncio.sleep(POLL_SECONDS)
        quiet += POLL_SECONDS
        if quiet >= HEARTBEAT_SECONDS:
            quiet = 0.0
            yield ": keep-alive\n\n"


_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.get("/processes/{pid}/events", summary="Stream a process's events (SSE)")
async def process_events(
    pid: Annotated[int, Path(ge=1, le=MAX_ID)],
    request: Request,
    principal: Annotated[Principal, allowed("process:*", "read")],
    processes: ProcessesDep,
    audit: AuditLogDep,
    last_event_id: Annotated[str | None, Header()] = None,
    after: int | None = None,
) -> StreamingResponse:
    """Every record of the process as it happens; ends when the process has finished. 404 for
    another tenant's process. Resume with ``Last-Event-ID`` (or ``?after=SEQ``)."""
    await processes.get(pid, tenant=principal.tenant)

    async def finished() -> bool:
        return (await processes.get(pid)).state in TERMINAL

    stream = _follow(
        request,
        audit,
        tenant=principal.tenant,
        pid=pid,
        after=_resume_from(last_event_id, after),
        finished=finished,
    )
    return StreamingResponse(stream, media_type="text/event-stream", headers=_HEADERS)


@router.get("/stream", summary="Stream the tenant's events (SSE)")
async def tenant_events(
    request: Request,
    principal: Annotated[Principal, allowed("process:*", "read")],
    audit: AuditLogDep,
    last_event_id: Annotated[str | None, Header()] = None,
    after: int | None = None,
) -> StreamingResponse:
    """Every record of the caller's tenant from now on (or after ``Last-Event-ID`` /
    ``?after=SEQ``), until the client disconnects."""
    start = _resume_from(last_event_id, after)
    if start is None:
        newest = await audit.records(tenant=principal.tenant, limit=1)
        start = newest[-1]["seq"] if newest else 0
    stream = _follow(request, audit, tenant=principal.tenant, pid=None, after=start)
    return StreamingResponse(stream, media_type="text/event-stream", headers=_HEADERS)
