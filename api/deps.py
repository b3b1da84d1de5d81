"""Dependencies the routes declare: the kernel, its process manager, the calling principal.

The caller is authenticated by ``Authorization: Bearer <token>``, tried against the app's
authenticators in order (the local admin token today; the policy layer adds API keys). A
missing or unknown token is a 401 problem with ``WWW-Authenticate: Bearer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kernos.kernel.errors import Unauthenticated
from kernos.kernel.identity import Principal
from kernos.kernel.kernel import Kernel
from kernos.kernel.processes import ProcessManager
from kernos.kernel.tokens import Authenticator

_bearer = HTTPBearer(
    auto_error=False,
    description="The local admin token (KERNOS_HOME/admin.token) or an API key.",
)


async def get_kernel(request: Request) -> Kernel:
    """The kernel this app serves."""
    kernel: Kernel = request.app.state.kernel
    return kernel


KernelDep = Annotated[Kernel, Depends(get_kernel)]
"""The kernel this app serves."""


async def get_processes(request: Request) -> ProcessManager:
    """The kernel's process manager (503 problem while the kernel is not running)."""
    kernel: Kernel = request.app.state.kernel
    return kernel.processes


ProcessesDep = Annotated[ProcessManager, Depends(get_processes)]
"""The kernel's process manager."""


def _unauthenticated(detail: str, *, invalid: bool) -> HTTPException:
    challenge = 'Bearer realm="kernos"' + (', error="invalid_token"' if invalid else "")
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": challenge})


async def get_current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The principal the bearer token stands for; 401 when it is missing or unknown."""
    return await _authenticate(request, credentials)


async def _authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise _unauthenticated(
            "this endpoint needs 'Authorization: Bearer <token>': the admin token in "
            "KERNOS_HOME/admin.token, or an API key",
            invalid=False,
        )
    authenticators: Sequence[Authenticator] = [
        *request.app.state.authenticators,
        *request.app.state.kernel.authenticators,
    ]
    for authenticator in authenticators:
        try:
            principal = await authenticator.authenticate(credentials.credentials)
        except Unauthenticated as exc:  # a known key that was revoked or has expired
            raise _unauthenticated(str(exc), invalid=True) from None
        if principal is not None:
            return principal
    raise _unauthenticated("the bearer token is not valid for this kernel", invalid=True)


CurrentPrincipal = Annotated[Principal, Depends(get_current_principal)]
"""Who is calling (authenticated)."""


def allowed(obj: str, action: str) -> Any:
    """A dependency: the caller, once the policy allows it ``action`` on ``obj`` (else 403).

    Use as ``principal: Annotated[Principal, allowed("process:*", "read")]``. Checks that
    depend on a path parameter (one process, one approval) happen in the kernel call itself.
    """

    # One dependency level (not principal -> bearer, kernel): FastAPI's dependency solving
    # is a large part of a cheap request's cost (docs/benchmarks.md, "API load").
    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        principal = await _authenticate(request, credentials)
        kernel: Kernel = request.app.state.kernel
        await kernel.authorize(principal, obj, action)
        return principal

    return Depends(check)


__all__ = [
    "CurrentPrincipal",
    "KernelDep",
    "ProcessesDep",
    "allowed",
    "get_current_principal",
    "get_kernel",
    "get_processes",
]
