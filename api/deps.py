"""Dependencies the routes declare: the kernel, its process manager, the calling principal.

The caller is authenticated by ``Authorization: Bearer <token>``, tried against the app's
authenticators in order (the local admin token today; the policy layer adds API keys). A
missing or unknown token is a 401 problem with ``WWW-Authenticate: Bearer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kernos.kernel.identity import Principal
from kernos.kernel.kernel import Kernel
from kernos.kernel.processes import ProcessManager
from kernos.kernel.tokens import Authenticator

_bearer = HTTPBearer(
    auto_error=False,
    description="The local admin token (KERNOS_HOME/admin.token) or an API key.",
)


def get_kernel(request: Request) -> Kernel:
    """The kernel this app serves."""
    kernel: Kernel = request.app.state.kernel
    return kernel


KernelDep = Annotated[Kernel, Depends(get_kernel)]
"""The kernel this app serves."""


def get_processes(kernel: KernelDep) -> ProcessManager:
    """The kernel's process manager (503 problem while the kernel is not running)."""
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
    if credentials is None or not credentials.credentials:
        raise _unauthenticated(
            "this endpoint needs 'Authorization: Bearer <token>': the admin token in "
            "KERNOS_HOME/admin.token, or an API key",
            invalid=False,
        )
    authenticators: Sequence[Authenticator] = request.app.state.authenticators
    for authenticator in authenticators:
        principal = await authenticator.authenticate(credentials.credentials)
        if principal is not None:
            return principal
    raise _unauthenticated("the bearer token is not valid for this kernel", invalid=True)


CurrentPrincipal = Annotated[Principal, Depends(get_current_principal)]
"""Who is calling (authenticated)."""


__all__ = [
    "CurrentPrincipal",
    "KernelDep",
    "ProcessesDep",
    "get_current_principal",
    "get_kernel",
    "get_processes",
]
