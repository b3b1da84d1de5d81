"""``kernos audit``: keygen, verify --offline on a database file, and the online commands
against a kernel serving its API over real HTTP (exit statuses 0 intact, 1 damaged, 2 bad)."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from kernos.kernel.errors import KernosError
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import BUILTIN_PLUGINS, PluginManager
from kernos.kernel.settings import load_settings
from kernos.kernel.syscalls import AuditRecord
from kernos.policy.audit import HashChainAuditSink
from kernos.policy.audit.cli import audit


def kernos_audit(*args: str) -> tuple[int, str, str]:
    """Run ``kernos audit ARGS``; a ``KernosError`` exits with its status, as in ``kernos``."""
    result = CliRunner().invoke(audit, list(args))
    if isinstance(result.exception, KernosError):
        return result.exception.exit_status, result.stdout, str(result.exception)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_keygen_writes_a_private_key_outside_home(kernos_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "audit.pem"
    status, stdout, _ = kernos_audit("keygen", "--out", str(out))
    assert status == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert len(stdout.split()[2]) == 64  # "public key HEX"
    assert kernos_audit("keygen", "--out", str(out))[0] == 2  # never overwritten
    kernos_home.mkdir(parents=True)
    status, _, error = kernos_audit("keygen", "--out", str(kernos_home / "k.pem"))
    assert status == 2 and "inside KERNOS_HOME" in error


# The kernel's CLI and API plugins without the policy plugin, so the log holds exactly the
# records these tests append (the policy plugin would add its bootstrap records first).
WITHOUT_POLICY = [b for b in BUILTIN_PLUGINS if b.module != "kernos.policy.plugin"]


async def start(home: Path, *, serve_api: bool = False) -> Kernel:
    plugins = PluginManager(entry_points=False, builtins=WITHOUT_POLICY)
    kernel = Kernel(load_settings(home=home), plugins=plugins, serve_api=serve_api)
    kernel.audit_sink = HashChainAuditSink(kernel.db, kernel.clock)
    await kernel.start()
    return kernel


async def append(kernel: Kernel, count: int, *, tenant: str = "default") -> None:
    def job(session: Session) -> None:
        for pid in range(1, count + 1):
            kernel.audit_sink.append(
                session,
                AuditRecord(
                    event="syscall.intent", tenant=tenant, principal=f"{tenant}/admin", pid=pid
                ),
            )

    await kernel.db.write(job)


def tamper(home: Path, sql: str) -> None:
    engine = create_engine(f"sqlite:///{home / 'kernos.db'}")
    with engine.begin() as conn:
        conn.execute(text(sql))
    engine.dispose()


async def test_verify_offline_reads_a_database_file(kernos_home: Path) -> None:
    kernel = await start(kernos_home)
    try:
        await append(kernel, 30)
    finally:
        await kernel.stop()
    database = str(kernos_home / "kernos.db")
    status, stdout, _ = kernos_audit("verify", "--offline", "--database", database)
    assert status == 0 and "30 records" in stdout
    status, stdout, _ = kernos_audit("verify", "--offline", "--json")  # KERNOS_HOME's database
    assert status == 0 and json.loads(stdout)["records"] == 30
    tamper(kernos_home, "UPDATE audit_log SET principal = 'default/nobody' WHERE seq = 17")
    status, stdout, stderr = kernos_audit("verify", "--offline", "--database", database)
    assert status == 1 and stdout == ""
    [line] = stderr.splitlines()
    assert "seq 17: altered" in line and "principal" in line
    status, stdout, _ = kernos_audit("verify", "--offline", "--json")
    assert status == 1 and json.loads(stdout)["first_bad_seq"] == 17
    assert kernos_audit("verify", "--offline", "--database", str(kernos_home / "no.db"))[0] == 2
    assert kernos_audit("verify", "--database", database)[0] == 2  # needs --offline


@pytest.fixture
async def served(
    kernos_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Kernel, Path]]:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    assert kernos_audit("keygen", "--out", str(secrets / "audit.pem"))[0] == 0
    monkeypatch.setenv("KERNOS_AUDIT_SIGNING_KEY", str(secrets / "audit.pem"))
    monkeypatch.setenv("KERNOS_AUDIT_WITNESS", str(secrets / "witness.jsonl"))
    kernel = await start(kernos_home, serve_api=True)
    try:
        await append(kernel, 12)
        await append(kernel, 3, tenant="other")
        yield kernel, secrets / "witness.jsonl"
    finally:
        await kernel.stop()


async def test_online_commands(served: tuple[Kernel, Path], tmp_path: Path) -> None:
    kernel, witness = served

    async def run(*args: str) -> tuple[int, str, str]:
        return await asyncio.to_thread(kernos_audit, *args)  # the server runs on this loop

    status, stdout, _ = await run("tail", "--limit", "5", "--json")
    records = json.loads(stdout)
    assert status == 0 and [r["seq"] for r in records] == [8, 9, 10, 11, 12]
    assert {r["tenant"] for r in records} == {"default"}  # never another tenant's
    status, stdout, _ = await run("tail", "--pid", "3")
    assert status == 0 and len(stdout.splitlines()) == 2  # header + one record
    assert (await run("tail", "--tenant", "other"))[0] == 2  # not found: never confirmed
    out = tmp_path / "export.jsonl"
    assert (await run("export", "--format", "jsonl", "--out", str(out)))[0] == 0
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["seq"] for r in exported] == list(range(1, 13)) and all(r["body"] for r in exported)

    status, stdout, _ = await run("checkpoint", "--json")
    entry = json.loads(stdout)
    assert status == 0 and (entry["first_seq"], entry["last_seq"]) == (1, 15)
    assert json.loads(witness.read_text()) == entry  # exported to the witness file
    status, stdout, _ = await run("checkpoint")
    assert status == 0 and "nothing new since checkpoint 1" in stdout

    status, stdout, _ = await run("verify")
    assert status == 0 and "15 records, 1 checkpoints" in stdout
    assert (await run("verify", "--witness", str(witness)))[0] == 0
    tamper(kernel.settings.home, "DELETE FROM audit_log WHERE seq = 4")
    status, _, stderr = await run("verify", "--witness", str(witness), "--json")
    assert status == 1 and "seq 4: deleted" in stderr
