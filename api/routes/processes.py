"""``/v1/processes``: list, read and signal the caller's tenant's processes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from kernos.api.deps import CurrentPrincipal, ProcessesDep, allowed
from kernos.api.schemas import MAX_ID, ProcessList, ProcessPublic, SignalRequest
from kernos.kernel.identity import Principal
from kernos.kernel.processes import ProcessState

router = APIRouter(prefix="/v1/processes", tags=["processes"])


@router.get("", response_model=ProcessList, summary="List processes")
async def list_processes(
    request: Request,
    principal: Annotated[Principal, allowed("process:*", "read")],
    processes: ProcessesDep,
    state: Annotated[
        ProcessState | None, Query(description="Only processes in this state.")
    ] = None,
    agent: Annotated[str | None, Query(max_length=64, description="Only this agent's.")] = None,
    owner: Annotated[str | None, Query(max_length=63, description="Only this owner's.")] = None,
    before: Annotated[
        int | None,
        Query(ge=1, le=MAX_ID, description="Cursor: only pids below this (from `next`)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most processes returned.")] = 100,
) -> ProcessList:
    """The caller's tenant's processes, newest first, a page at a time (follow ``next``)."""
    found = await processes.list_processes(
        tenant=principal.tenant,
        states=None if state is None else [state],
        agent=agent,
        owner=owner,
        before=before,
        limit=limit + 1,
    )
    page = found[:limit]
    following = None
    if len(found) > limit:
        following = str(request.url.include_query_params(before=page[-1].pid))
    return ProcessList(
        data=[ProcessPublic.model_validate(p.as_dict()) for p in page],
        count=len(page),
        next=following,
    )


@router.get("/{pid}", response_model=ProcessPublic, summary="Get a process")
async def get_process(
    pid: Annotated[int, Path(ge=1, le=MAX_ID)],
    principal: Annotated[Principal, allowed("process:*", "read")],
    processes: ProcessesDep,
) -> ProcessPublic:
    """One process (404 if it is missing or belongs to another tenant)."""
    await processes.authorize(principal, f"process:{pid}", "read")  # a rule may name the pid
    info = await processes.get(pid, tenant=principal.tenant)
    return ProcessPublic.model_validate(info.as_dict())


@router.get("/{pid}/state", summary="Get a process's current checkpoint")
async def get_process_state(
    pid: Annotated[int, Path(ge=1, le=MAX_ID)],
    principal: Annotated[Principal, allowed("process:*", "read")],
    processes: ProcessesDep,
) -> dict[str, Any]:
    """Its LangGraph state at the last checkpoint: ``values`` (long strings and lists
    clipped), the ``next`` nodes, pending ``interrupts``, ``step`` and ``checkpoint_id``
    (``null`` before the first step). 404 if it is missing or another tenant's."""
    await processes.authorize(principal, f"process:{pid}", "read")
    return await processes.checkpoint_state(pid, tenant=principal.tenant)


@router.post("/{pid}/signal", response_model=ProcessPublic, summary="Signal a process")
async def signal_process(
    pid: Annotated[int, Path(ge=1, le=MAX_ID)],
    body: SignalRequest,
    principal: CurrentPrincipal,
    processes: ProcessesDep,
) -> ProcessPublic:
    """Suspend, resume or kill (children too). Suspend and kill take effect at the next step
    boundary, so a running process may still show ``running``. Killing a finished process
    changes nothing and answers 200 with it; suspending or resuming in the wrong state is 409.
    """
    info = await processes.signal(pid, body.signal, by=principal)
    return ProcessPublic.model_validate(info.as_dict())
