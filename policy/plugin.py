"""The policy layer as an essential built-in plugin.

It provides the pipeline's authorizer (Casbin, with its decision cache) and audit sink (the
hash chain, with redaction into the vault), adds API keys to the kernel's authenticators,
bootstraps a fresh home (an admin key, printed once, and least-privilege keys for the
built-in scenario) and contributes the ``keys``, ``policy`` and ``audit`` commands. Being
essential, it cannot be disabled: a kernel without it would have nothing but the
deny-by-default local-admin authorizer. Heavy imports happen inside the hooks, so that
``kernos --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kernos.kernel.cli.lazy import LazyCommand
from kernos.kernel.hookspecs import hookimpl

if TYPE_CHECKING:
    from kernos.kernel.kernel import Kernel


@hookimpl
def register_pipeline_stages(register: Callable[..., None]) -> None:
    """The Casbin authorizer, the hash-chained audit sink and the redaction guard."""
    from kernos.kernel.syscalls import Provider
    from kernos.policy import service

    register(Provider("authorizer", service.build_authorizer))
    register(Provider("audit_sink", service.build_audit_sink))
    register(Provider("stage", service.build_guard_stage, where={"before": "execute"}))


@hookimpl
async def on_startup(kernel: Kernel) -> None:
    """Accept API keys, and bootstrap a fresh home (idempotent)."""
    from kernos.policy.service import bootstrap, policy_services

    services = policy_services(kernel)
    kernel.authenticators.append(services.keys)
    await bootstrap(kernel, services)


@hookimpl
async def on_shutdown(kernel: Kernel) -> None:
    """Stop the policy engine's refresher and close its read connections."""
    from kernos.policy.service import release

    await release(kernel)


@hookimpl
def register_commands(register: Callable[[LazyCommand], None]) -> None:
    """``keys``, ``policy`` and ``audit``."""
    register(LazyCommand("keys", "kernos.policy.cli_keys:keys", "Create, list, revoke API keys."))
    register(
        LazyCommand("policy", "kernos.policy.cli_policy:policy", "Check and change the policy.")
    )
    register(
        LazyCommand("audit", "kernos.policy.audit.cli:audit", "Tail, export and verify the audit.")
    )
