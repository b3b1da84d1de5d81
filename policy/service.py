"""The policy layer of one kernel: keys, the policy engine, and what the API asks of them.

Kept apart from ``kernos.policy.plugin`` so that loading the plugin (which ``kernos --help``
does) imports nothing heavy.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from kernos.kernel.errors import InvalidInput, NotFound, PolicyDenied
from kernos.kernel.identity import DEFAULT_TENANT, LOCAL_ADMIN, Principal, PrincipalKind
from kernos.kernel.syscalls import AuditRecord, AuditSink, Authorizer, Decision, Stage
from kernos.kernel.tokens import LOCAL_ADMIN_PRINCIPAL, write_private
from kernos.policy.keys import ApiKey, CreatedKey, KeyStore
from kernos.policy.rules import ANY, parse_line

if TYPE_CHECKING:
    from kernos.kernel.catalog import AgentSpec
    from kernos.kernel.kernel import Kernel
    from kernos.policy.approval_book import ApprovalRuleBook
    from kernos.policy.approval_rules import ApprovalRule
    from kernos.policy.engine import PolicyEngine
    from kernos.policy.redaction import Redactor
    from kernos.policy.vault import Vault

log = logging.getLogger(__name__)

SERVICE_KEYS: tuple[tuple[str, str, str], ...] = (
    ("edge-forwarder", "forwarder", "the edge agents' forwarder: publishes sensor events"),
    ("dispatcher", "dispatcher", "the city-ops dispatcher: runs its agent and tools"),
)
"""Least-privilege keys ``kernos up`` creates on a fresh home for the built-in scenario:
(principal, role, description). Their tokens go to ``KERNOS_HOME/keys/<principal>.key``."""


@dataclass(slots=True)
class PolicyServices:
    """What the policy layer keeps per kernel: keys, the policy engine, the approval rules,
    the kernel."""

    kernel: Kernel
    keys: KeyStore
    engine: PolicyEngine
    approval_rules: ApprovalRuleBook

    async def create_key(
        self,
        caller: Principal,
        *,
        name: str,
        role: str,
        tenant: str | None = None,
        expires_at: datetime | None = None,
        description: str = "",
    ) -> CreatedKey:
        """Create a key for ``name`` in ``tenant`` (default the caller's) and grant ``role``.

        Only the local admin (the holder of ``KERNOS_HOME/admin.token``) may create keys in
        another tenant, which is created if missing; tenant admins stay inside their tenant.
        """
        tenant = tenant or caller.tenant
        if tenant != caller.tenant:
            if caller != LOCAL_ADMIN_PRINCIPAL:
                raise NotFound(f"tenant {tenant!r} does not exist")  # never confirm others
            await self.kernel.identity.ensure_tenant(tenant)
        if role not in self.engine.roles:
            raise InvalidInput(
                f"unknown role {role!r}; roles are {', '.join(sorted(self.engine.roles))}"
            )
        created = await self.keys.create(
            tenant,
            name,
            role=role,
            created_by=caller.subject,
            expires_at=expires_at,
            description=description,
        )
        await self.engine.grant_role(name, role, tenant)
        await self._audit(
            caller, "key.created", tenant=tenant, target=created.key.key_id, summary=role
        )
        return created

    async def check(
        self, caller: Principal, *, subject: str, tenant: str, obj: str, action: str
    ) -> Decision:
        """The decision the policy makes for a request (what ``kernos policy check`` shows)."""
        self._own_tenant(caller, tenant)
        return await self.engine.check(subject, tenant, obj, action)

    async def lines(self, caller: Principal) -> list[str]:
        """The lines that apply in the caller's tenant (its own and those for every tenant)."""
        return [line.text for line in await self.engine.list(caller.tenant)]

    async def change(self, caller: Principal, text: str, *, add: bool) -> None:
        """Add or remove a line of the caller's tenant (audited); lines for every tenant
        (``*``) or another tenant only by the local admin."""
        line = parse_line(text, roles=self.engine.roles)
        self._own_tenant(caller, line.tenant)
        changed = await (self.engine.add(text) if add else self.engine.remove(text))
        await self._audit(
            caller,
            "policy.added" if add else "policy.removed",
            tenant=caller.tenant if changed.tenant == ANY else changed.tenant,
            target=changed.text,
        )

    async def list_approval_rules(self, caller: Principal) -> list[ApprovalRule]:
        """The approval rules that apply in the caller's tenant (its own and those for every
        tenant), in the order they are tried."""
        return await self.approval_rules.approval_rules(caller.tenant)

    async def change_approval_rule(
        self, caller: Principal, text: str, *, add: bool
    ) -> ApprovalRule:
        """Add or remove an approval rule of the caller's tenant (audited); rules for every
        tenant (``*``) or another tenant only by the local admin. Returns it, canonical."""
        from kernos.policy.approval_rules import parse_approval_rule

        self._own_tenant(caller, parse_approval_rule(text).tenant)
        book = self.approval_rules
        changed = await (book.add_approval_rule(text) if add else book.remove_approval_rule(text))
        await self._audit(
            caller,
            "approval_rule.added" if add else "approval_rule.removed",
            tenant=caller.tenant if changed.tenant == ANY else changed.tenant,
            target=changed.obj[:128],
            summary=changed.text,
        )
        return changed

    @staticmethod
    def _own_tenant(caller: Principal, tenant: str) -> None:
        if tenant != caller.tenant and caller != LOCAL_ADMIN_PRINCIPAL:
            if tenant == ANY:
                raise PolicyDenied(
                    "only the local admin may change or check lines for every tenant ('*')"
                )
            raise NotFound(f"tenant {tenant!r} does not exist")  # never confirm others

    async def revoke_key(self, caller: Principal, key_id: str) -> ApiKey:
        """Revoke one of the caller's tenant's keys."""
        key = await self.keys.revoke(key_id, by=caller.subject, tenant=caller.tenant)
        await self._audit(caller, "key.revoked", tenant=caller.tenant, target=key_id)
        return key

    async def _audit(
        self, caller: Principal, event: str, *, tenant: str, target: str, summary: str = ""
    ) -> None:
        record = AuditRecord(
            event=event,
            tenant=tenant,
            principal=caller.subject,
            target=target,
            decision="allow",
            summary=summary or None,
        )
        sink = self.kernel.audit_sink
        await self.kernel.db.write(lambda session: sink.append(session, record))


_services: weakref.WeakKeyDictionary[Kernel, PolicyServices] = weakref.WeakKeyDictionary()


def policy_services(kernel: Kernel) -> PolicyServices:
    """The policy layer of a started kernel."""
    found = _services.get(kernel)
    if found is None:
        raise NotFound("the policy plugin is not running in this kernel")
    return found


def agent_manifest(kernel: Kernel) -> Callable[[str], frozenset[tuple[str, str]] | None]:
    """What an agent may do when the policy says nothing about it: its declared tools, the
    model, asking a human, emitting events, spawning children, its own private memory
    (``memory:@AGENT/*``) and the shared collections it declared (``AgentSpec.memory``) —
    each still needs the owner's grant too. Built once per agent spec: it is asked on
    every syscall."""
    common = frozenset(
        {
            ("model:*", "call"),
            ("approval:*", "write"),
            ("event:*", "write"),
            ("agent:*", "spawn"),
        }
    )
    built: dict[str, tuple[AgentSpec, frozenset[tuple[str, str]]]] = {}

    def manifest(agent: str) -> frozenset[tuple[str, str]] | None:
        spec = kernel.catalog.agents.get(agent)
        if spec is None:
            return None
        cached = built.get(agent)
        if cached is None or cached[0] is not spec:  # a catalog change replaces the spec
            memory = (f"@{spec.name}/*", *spec.memory)
            grants = {(f"tool:{t}", "call") for t in spec.tools} | {
                (f"memory:{m}", action) for m in memory for action in ("read", "write")
            }
            cached = built[agent] = (spec, common | grants)
        return cached[1]

    return manifest


async def build_authorizer(kernel: Kernel) -> Authorizer:
    """The Casbin authorizer on the kernel's database (the policy seeded on first use), with
    the approval rules stored there."""
    from kernos.policy.approval_book import ApprovalRuleBook
    from kernos.policy.authorizer import CasbinAuthorizer
    from kernos.policy.engine import PolicyEngine

    engine = await PolicyEngine.open(kernel.db, kernel.settings, clock=kernel.clock)
    rules = ApprovalRuleBook(kernel.db, clock=kernel.clock, roles=lambda: engine.roles)
    await rules.start()
    _services[kernel] = PolicyServices(
        kernel=kernel,
        keys=KeyStore(kernel.db, kernel.clock),
        engine=engine,
        approval_rules=rules,
    )
    return CasbinAuthorizer(engine, manifest=agent_manifest(kernel), approval_rules=rules)


async def build_audit_sink(kernel: Kernel) -> AuditSink:
    """The hash-chained audit sink; arguments and summaries are redacted into the vault."""
    from kernos.policy.audit import HashChainAuditSink
    from kernos.policy.redaction import DetectorRegistry
    from kernos.policy.vault import Vault

    vault = await Vault.open(kernel.settings, kernel.db, clock=kernel.clock)
    registry = DetectorRegistry.with_builtins()
    for detector in kernel.plugins.redactors():
        registry.register(detector)
    redactor = registry.redactor(vault.key)
    guard = Guard(redactor=redactor, vault=vault)
    _guards[kernel] = guard
    return await HashChainAuditSink.open(
        kernel.db, kernel.clock, redact=guard.redact_in, settings=kernel.settings
    )


async def build_guard_stage(kernel: Kernel) -> Stage:
    """The stage that redacts what ``llm.chat`` calls send (built after the audit sink)."""
    from kernos.policy.guard import GuardStage

    guard = guard_of(kernel)
    return GuardStage(guard.redactor, guard.vault, kernel.db)


@dataclass(slots=True)
class Guard:
    """Redaction before the audit log and before any LLM backend, with the vault to reveal."""

    redactor: Redactor
    vault: Vault

    def redact_in(self, session: Session, tenant: str, value: Any) -> Any:
        """Redact ``value`` for ``tenant``, storing new vault entries within ``session``."""
        result = self.redactor.redact(value, tenant=tenant)
        if result.entries:
            self.vault.store(session, result.entries)
        return result.value


_guards: weakref.WeakKeyDictionary[Kernel, Guard] = weakref.WeakKeyDictionary()


def guard_of(kernel: Kernel) -> Guard:
    """The redaction guard of a started kernel."""
    found = _guards.get(kernel)
    if found is None:
        raise NotFound("the policy plugin is not running in this kernel")
    return found


async def release(kernel: Kernel) -> None:
    """Forget a stopping kernel's policy layer and close the engine's connections."""
    _guards.pop(kernel, None)
    services = _services.pop(kernel, None)
    if services is not None:
        await services.engine.close()


async def bootstrap(kernel: Kernel, services: PolicyServices) -> None:
    """Give deny-by-default a way in: the local admin's role, an admin key, service keys.

    Each part happens once per home; later starts find them and change nothing.
    """
    await services.engine.grant_role(LOCAL_ADMIN, "admin", DEFAULT_TENANT)
    existing = await services.keys.list_keys(tenant=DEFAULT_TENANT)
    holders = {key.principal for key in existing if key.revoked_at is None}
    if LOCAL_ADMIN not in holders:
        created = await services.create_key(
            LOCAL_ADMIN_PRINCIPAL,
            name=LOCAL_ADMIN,
            role="admin",
            description="created by kernos init",
        )
        kernel.notices.append(
            f"Admin API key {created.key.key_id} (tenant {DEFAULT_TENANT!r}); its token is "
            f"shown this once, store it now:\n{created.token}"
        )
    keys_dir = kernel.settings.home / "keys"
    await asyncio.to_thread(keys_dir.mkdir, mode=0o700, parents=True, exist_ok=True)
    for name, role, description in SERVICE_KEYS:
        path = keys_dir / f"{name}.key"
        if name in holders and path.exists():
            continue
        created = await services.keys.create(
            DEFAULT_TENANT,
            name,
            role=role,
            created_by=LOCAL_ADMIN_PRINCIPAL.subject,
            description=description,
            kind=PrincipalKind.SERVICE,
        )
        await services.engine.grant_role(name, role, DEFAULT_TENANT)
        await asyncio.to_thread(write_private, path, created.token)
        log.info("service key created", extra={"principal": name, "path": str(path)})
