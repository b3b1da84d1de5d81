"""The tokenization vault on SQLite and PostgreSQL: store, reveal (audited), tenants, keys."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kernos.kernel.errors import CheckFailed, ConfigError, InvalidInput, NotFound
from kernos.kernel.identity import Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.settings import Settings, load_settings
from kernos.kernel.storage.models import AuditRow, VaultRow
from kernos.policy.redaction import DetectorRegistry
from kernos.policy.vault import (
    KEY_BYTES,
    REVEAL_EVENT,
    Vault,
    VaultEntry,
    VaultKey,
    create_vault_key,
    load_vault_key,
)

EMAIL = "maria.lopez@citywaste.example.org"
PHONE = "+44 20 7946 0958"
ALICE = Principal(tenant="acme", name="alice", kind=PrincipalKind.PERSON)
GLOBEX_OPS = Principal(tenant="globex", name="ops", kind=PrincipalKind.PERSON)


async def open_vault(kernel: Kernel) -> Vault:
    return await Vault.open(kernel.settings, kernel.db, clock=kernel.clock)


async def stored(kernel: Kernel, vault: Vault, value: object, *, tenant: str) -> object:
    """Redact ``value`` and store its entries the way callers do: inside their write job."""
    result = DetectorRegistry.with_builtins().redactor(vault.key).redact(value, tenant=tenant)
    await kernel.db.write(lambda s: vault.store(s, result.entries))
    return result.value


async def reveal_records(kernel: Kernel) -> list[AuditRow]:
    async with kernel.db.read() as session:
        rows = await session.scalars(
            select(AuditRow).where(AuditRow.event == REVEAL_EVENT).order_by(AuditRow.seq)
        )
        return list(rows)


async def vault_rows(kernel: Kernel) -> list[VaultRow]:
    async with kernel.db.read() as session:
        return list(await session.scalars(select(VaultRow).order_by(VaultRow.token)))


def token_of(text: str, kind: str) -> str:
    start = text.index(f"[{kind}:") + len(kind) + 2
    return text[start : text.index("]", start)]


async def test_round_trip_and_the_reveal_is_audited(kernos_kernel: Kernel) -> None:
    vault = await open_vault(kernos_kernel)
    text = await stored(kernos_kernel, vault, f"call {PHONE} or {EMAIL}", tenant="acme")
    assert isinstance(text, str) and EMAIL not in text
    email_token = token_of(text, "EMAIL")

    rows = await vault_rows(kernos_kernel)
    assert sorted(r.kind for r in rows) == ["EMAIL", "PHONE"]
    assert all(r.tenant == "acme" and r.key_id == vault.key.key_id for r in rows)
    assert all(EMAIL.encode() not in r.ciphertext for r in rows)

    audit = kernos_kernel.audit_sink
    assert await vault.reveal(email_token, tenant="acme", principal=ALICE, audit=audit) == EMAIL
    placeholder = f"[PHONE:{token_of(text, 'PHONE')}]"
    revealed = await vault.reveal(
        placeholder, tenant="acme", principal=ALICE, audit=audit, reason="ticket 48213", rule="r1"
    )
    assert revealed == PHONE

    first, second = await reveal_records(kernos_kernel)
    assert (first.tenant, first.principal, first.target) == ("acme", "acme/alice", email_token)
    assert (first.decision, first.kind, first.summary) == ("allow", "EMAIL", "revealed")
    assert (second.rule, second.summary) == ("r1", "revealed; reason: ticket 48213")
    for record in (first, second):
        columns = [getattr(record, c.key) for c in AuditRow.__table__.columns]
        assert not any(EMAIL in str(v) or PHONE in str(v) for v in columns)


async def test_store_inserts_only_what_is_absent(kernos_kernel: Kernel) -> None:
    vault = await open_vault(kernos_kernel)
    await stored(kernos_kernel, vault, [EMAIL, EMAIL], tenant="acme")
    (row,) = await vault_rows(kernos_kernel)
    created = row.created_at
    # Again in a later job, twice within one job, and with a fresh (re-sealed) entry.
    entry = vault.key.seal(EMAIL, tenant="acme", kind="EMAIL")
    assert entry.token == row.token

    def twice(session: Session) -> None:
        vault.store(session, [entry])
        vault.store(session, (entry,))

    await kernos_kernel.db.write(twice)
    await stored(kernos_kernel, vault, {"to": EMAIL}, tenant="acme")
    (again,) = await vault_rows(kernos_kernel)
    assert again.ciphertext == row.ciphertext and again.created_at == created
    await kernos_kernel.db.write(lambda s: vault.store(s, []))  # nothing to do is fine


async def test_another_tenants_token_is_not_found_and_the_attempt_is_audited(
    kernos_kernel: Kernel,
) -> None:
    vault = await open_vault(kernos_kernel)
    text = await stored(kernos_kernel, vault, EMAIL, tenant="acme")
    token = token_of(str(text), "EMAIL")
    audit = kernos_kernel.audit_sink
    with pytest.raises(NotFound, match=f"no vault entry {token} in tenant 'globex'"):
        await vault.reveal(token, tenant="globex", principal=GLOBEX_OPS, audit=audit)
    unknown = "tok_" + "0" * 20
    with pytest.raises(NotFound):
        await vault.reveal(unknown, tenant="acme", principal=ALICE, audit=audit)
    cross, missing = await reveal_records(kernos_kernel)
    assert (cross.tenant, cross.principal, cross.decision) == ("globex", "globex/ops", "deny")
    assert cross.kind is None  # nothing about the other tenant's entry leaks, not even its kind
    assert cross.summary == "refused: no such token in this tenant"
    assert (missing.target, missing.decision) == (unknown, "deny")
    # The same value in globex is globex's own entry, under another token.
    other = await stored(kernos_kernel, vault, EMAIL, tenant="globex")
    assert token_of(str(other), "EMAIL") != token
    revealed = await vault.reveal(str(other), tenant="globex", principal=GLOBEX_OPS, audit=audit)
    assert revealed == EMAIL


@pytest.mark.parametrize("token", ["", "tok_123", "tok_" + "G" * 20, "[EMAIL:tok_12]", "x" * 500])
async def test_a_malformed_token_is_invalid_input(kernos_kernel: Kernel, token: str) -> None:
    vault = await open_vault(kernos_kernel)
    with pytest.raises(InvalidInput, match="not a vault token"):
        await vault.reveal(token, tenant="acme", principal=ALICE, audit=kernos_kernel.audit_sink)
    assert await reveal_records(kernos_kernel) == []


async def test_an_altered_entry_or_another_key_does_not_decrypt(kernos_kernel: Kernel) -> None:
    vault = await open_vault(kernos_kernel)
    token = token_of(str(await stored(kernos_kernel, vault, EMAIL, tenant="acme")), "EMAIL")
    audit = kernos_kernel.audit_sink
    # Sealed under another key: the key ids say so.
    stranger = Vault(kernos_kernel.db, VaultKey.generate(), clock=kernos_kernel.clock)
    with pytest.raises(CheckFailed, match=f"sealed under vault key {vault.key.key_id}"):
        await stranger.reveal(token, tenant="acme", principal=ALICE, audit=audit)

    def tamper(session: Session) -> None:
        row = session.get(VaultRow, token)
        assert row is not None
        flipped = bytes([row.ciphertext[-1] ^ 1])
        session.execute(
            update(VaultRow)
            .where(VaultRow.token == token)
            .values(ciphertext=row.ciphertext[:-1] + flipped)
        )

    await kernos_kernel.db.write(tamper)
    with pytest.raises(CheckFailed, match="was altered"):
        await vault.reveal(token, tenant="acme", principal=ALICE, audit=audit)
    records = await reveal_records(kernos_kernel)
    assert [r.decision for r in records] == ["deny", "deny"]
    assert all(r.summary and r.summary.startswith("refused: ") for r in records)


# -- The key file ---------------------------------------------------------------------------


async def test_the_key_file_is_created_0600_on_first_use_and_reused(
    kernos_kernel: Kernel,
) -> None:
    path = kernos_kernel.settings.vault_key_path
    assert path == kernos_kernel.settings.home / "vault.key"
    # The policy plugin opened the vault (creating the key) when the kernel started.
    created = path.read_bytes()
    first = await open_vault(kernos_kernel)
    assert path.read_bytes() == created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == KEY_BYTES
    second = await open_vault(kernos_kernel)
    assert second.key.key_id == first.key.key_id
    assert second.key.token("acme", "EMAIL", EMAIL) == first.key.token("acme", "EMAIL", EMAIL)


async def test_a_missing_key_next_to_a_vault_with_entries_is_refused(
    kernos_kernel: Kernel,
) -> None:
    vault = await open_vault(kernos_kernel)
    await stored(kernos_kernel, vault, EMAIL, tenant="acme")
    path = kernos_kernel.settings.vault_key_path
    path.unlink()
    with pytest.raises(ConfigError, match=r"vault key file .*vault\.key is missing, but the vault"):
        await open_vault(kernos_kernel)
    assert not path.exists()  # no new key was made to replace the lost one


async def test_the_key_file_setting(kernos_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().vault_key_path == kernos_home / "vault.key"
    custom = kernos_home.parent / "secrets" / "kernos-vault.key"
    monkeypatch.setenv("KERNOS_VAULT_KEY_FILE", str(custom))
    settings = load_settings()
    assert settings.vault_key_path == custom
    key = create_vault_key(settings.vault_key_path)
    assert load_vault_key(custom).key_id == key.key_id


def _settings_with_key(tmp_path: Path, key_file: Path) -> Settings:
    return load_settings(home=tmp_path / "home", vault_key_file=key_file)


def test_key_file_problems_are_clear_config_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    with pytest.raises(ConfigError, match=r"vault key file .*nope\.key does not exist; restore"):
        load_vault_key(missing)
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 16)
    with pytest.raises(ConfigError, match="holds 16 bytes, not 32"):
        load_vault_key(short)
    directory = tmp_path / "dir.key"
    directory.mkdir()
    with pytest.raises(ConfigError, match=r"cannot read vault key file .*dir\.key"):
        load_vault_key(directory)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot create vault key file"):
        create_vault_key(blocked / "vault.key")
    assert _settings_with_key(tmp_path, short).vault_key_path == short


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_key_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "vault.key"
    create_vault_key(path)
    path.chmod(0)
    try:
        with pytest.raises(ConfigError, match="cannot read vault key file .*Permission denied"):
            load_vault_key(path)
    finally:
        path.chmod(0o600)


def test_a_racing_creator_loads_the_key_already_there(tmp_path: Path) -> None:
    path = tmp_path / "vault.key"
    first = create_vault_key(path)
    assert create_vault_key(path).key_id == first.key_id


async def test_vault_open_reports_an_unreadable_key(kernos_kernel: Kernel, tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(os.urandom(KEY_BYTES - 1))
    settings = _settings_with_key(tmp_path, short)
    with pytest.raises(ConfigError, match="holds 31 bytes"):
        await Vault.open(settings, kernos_kernel.db, clock=kernos_kernel.clock)


def test_vault_key_basics() -> None:
    with pytest.raises(ConfigError, match="32 bytes, not 5"):
        VaultKey(b"short")
    key = VaultKey(b"k" * KEY_BYTES)
    assert key.key_id == VaultKey(b"k" * KEY_BYTES).key_id != VaultKey.generate().key_id
    entry = key.seal("secret", tenant="acme", kind="SECRET")
    assert isinstance(entry, VaultEntry)
    assert entry.token == key.token("acme", "SECRET", "secret")
    # The tenant, kind and token are bound in: a moved entry does not decrypt.
    with pytest.raises(CheckFailed):
        key.open(entry.ciphertext, token=entry.token, tenant="globex", kind="SECRET")
    with pytest.raises(CheckFailed):
        key.open(entry.ciphertext, token=entry.token, tenant="acme", kind="EMAIL")
    assert key.open(entry.ciphertext, token=entry.token, tenant="acme", kind="SECRET") == "secret"
