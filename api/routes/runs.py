"""``POST /v1/runs``: start a process of an agent, optionally waiting for it to finish."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response

from kernos.api.deps import CurrentPrincipal, KernelDep, ProcessesDep
from kernos.api.plugin import webhook_notifier
from kernos.api.schemas import ProcessPublic, RunCreate
from kernos.api.webhooks import check_public
from kernos.kernel.errors import InvalidInput
from kernos.kernel.processes import SETTLED, TERMINAL

router = APIRouter(prefix="/v1/runs", tags=["runs"])


@router.post(
    "",
    status_code=201,
    response_model=ProcessPublic,
    summary="Start a run",
    responses={
        200: {"description": "Waited, and the process finished (done, failed or killed)."},
        202: {
            "description": "Waited, and the process is still live; or asynchronous "
            "(`webhook_url` without `wait`): accepted, the webhook follows. Follow Location."
        },
    },
)
async def create_run(
    body: RunCreate,
    principal: CurrentPrincipal,
    processes: ProcessesDep,
    kernel: KernelDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=200,
            description="Makes a retried POST return the first run instead of starting a "
            "second (per principal; 422 if reused for another agent).",
        ),
    ] = None,
) -> ProcessPublic:
    """Commit a new process for ``agent`` (before it starts) and start it.

    Without ``wait``: 201 and the process as accepted, or 202 with a ``webhook_url`` (the
    finished process is POSTed there, signed). With ``wait``: 200 and the finished process if
    it finished within ``wait`` seconds, else 202 with the process as it is. A
    repeated ``Idempotency-Key`` answers with the first run (``Idempotent-Replayed: true``).
    """
    key = None if idempotency_key is None else f"api:{principal.subject}:{idempotency_key}"
    earlier = None if key is None else await processes.by_spawn_key(key, tenant=principal.tenant)
    if earlier is not None:
        if earlier.agent != body.agent:
            raise InvalidInput(
                f"Idempotency-Key {idempotency_key!r} was used for a run of {earlier.agent!r}; "
                "use a new key for a different request"
            )
        info = earlier
        response.headers["Idempotent-Replayed"] = "true"
        response.status_code = 200
    else:
        if body.webhook_url is not None and not kernel.settings.webhook_allow_private:
            await check_public(str(body.webhook_url))
        info = await processes.spawn(
            body.agent,
            body.input or {},
            principal=principal,
            priority=body.priority,
            idempotency_key=key,
            webhook_url=None if body.webhook_url is None else str(body.webhook_url),
        )
        if body.webhook_url is not None:
            response.status_code = 202
            webhook_notifier(kernel).remember_trace(info.pid)  # the delivery joins this trace
    response.headers["Location"] = f"/v1/processes/{info.pid}"
    if body.wait is not None:
        # SETTLED, not TERMINAL: a process waiting for a human cannot finish within the
        # request, so answer 202 at once instead of holding the connection until `wait`.
        info = await processes.wait(info.pid, timeout=body.wait, until=SETTLED)
        response.status_code = 200 if info.state in TERMINAL else 202
    return ProcessPublic.model_validate(info.as_dict())
