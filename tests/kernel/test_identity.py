"""Tenants and principals live in the database and never leak across tenants."""

from __future__ import annotations

import pytest

from kernos.kernel.errors import InvalidInput, NotFound
from kernos.kernel.identity import (
    DEFAULT_TENANT,
    LOCAL_ADMIN,
    Principal,
    PrincipalKind,
    check_name,
)
from kernos.kernel.kernel import Kernel


async def test_a_fresh_kernel_has_the_default_tenant_and_local_admin(kernos_kernel: Kernel) -> None:
    admin = await kernos_kernel.identity.get_principal(DEFAULT_TENANT, LOCAL_ADMIN)
    assert admin == Principal(tenant="default", name="admin", kind=PrincipalKind.PERSON)
    assert admin.subject == "default/admin"


async def test_ensure_is_idempotent_and_tenants_are_isolated(kernos_kernel: Kernel) -> None:
    ids = kernos_kernel.identity
    await ids.ensure_tenant("acme")
    await ids.ensure_tenant("acme")
    await ids.ensure_tenant("globex")
    alice = await ids.ensure_principal("acme", "alice", kind=PrincipalKind.PERSON)
    again = await ids.ensure_principal("acme", "alice", kind=PrincipalKind.PERSON)
    assert alice == again
    await ids.ensure_principal("globex", "dispatcher", kind=PrincipalKind.AGENT)

    assert [t.name for t in await ids.list_tenants()] == ["acme", "default", "globex"]
    assert [p.name for p in await ids.list_principals("acme")] == ["alice"]
    assert [p.kind for p in await ids.list_principals("globex")] == [PrincipalKind.AGENT]
    with pytest.raises(NotFound, match="'alice' does not exist in tenant 'globex'"):
        await ids.get_principal("globex", "alice")
    # The same name in another tenant is another principal.
    bob_g = await ids.ensure_principal("globex", "alice", kind=PrincipalKind.SERVICE)
    assert bob_g.kind is PrincipalKind.SERVICE
    assert (await ids.get_principal("acme", "alice")).kind is PrincipalKind.PERSON


async def test_unknown_tenant_and_bad_names(kernos_kernel: Kernel) -> None:
    with pytest.raises(NotFound, match="tenant 'nope'"):
        await kernos_kernel.identity.ensure_principal("nope", "x", kind=PrincipalKind.PERSON)
    with pytest.raises(InvalidInput, match="tenant name"):
        await kernos_kernel.identity.ensure_tenant("Bad Name")


@pytest.mark.parametrize("name", ["", "-x", "UPPER", "a" * 64, "a b", "a/b"])
def test_check_name_rejects(name: str) -> None:
    with pytest.raises(InvalidInput):
        check_name(name, what="principal")


def test_check_name_accepts() -> None:
    assert check_name("edge-forwarder.1_a", what="principal") == "edge-forwarder.1_a"
