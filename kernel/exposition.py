"""A kernel's whole Prometheus exposition: its metrics plus processes by state.

``GET /metrics`` serves it for the caller's tenant; ``kernos up --metrics-dump FILE`` writes
it for every tenant when the kernel stops. Processes by state are counted in the process
table (they survive restarts, which a counter in memory would not).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from kernos.kernel.prometheus import Family, families, render
from kernos.kernel.storage.models import ProcessRow, TenantRow
from kernos.kernel.telemetry import ATTR_TENANT

if TYPE_CHECKING:
    from kernos.kernel.kernel import Kernel

PROCESSES = "kernos_processes"
"""The family of processes by state."""

# Mirrors kernos.kernel.processes.ProcessState; importing it would load LangGraph.
STATES = ("pending", "running", "waiting", "suspended", "done", "failed", "killed")


async def process_counts(kernel: Kernel, *, tenant: str | None = None) -> dict[str, int]:
    """Processes by state, of one tenant or of all."""
    query = select(ProcessRow.state, func.count()).group_by(ProcessRow.state)
    if tenant is not None:
        query = query.join(TenantRow, TenantRow.id == ProcessRow.tenant_id).where(
            TenantRow.name == tenant
        )
    async with kernel.db.read() as session:
        return {str(state): int(count) for state, count in (await session.execute(query)).all()}


async def exposition(kernel: Kernel, *, tenant: str | None = None) -> str:
    """The text exposition of ``kernel``'s metrics; with ``tenant``, only series of that
    tenant or of none (what that tenant may see)."""

    def mine(attributes: Mapping[str, Any]) -> bool:
        labelled = attributes.get(ATTR_TENANT)
        return labelled is None or labelled == tenant

    found = families(kernel.telemetry.collect(), keep=None if tenant is None else mine)
    counts = await process_counts(kernel, tenant=tenant)
    whose = "the tenant" if tenant is not None else "all tenants"
    processes = Family(PROCESSES, "gauge", f"Processes of {whose} by state.")
    for state in STATES:
        processes.samples.append((PROCESSES, {"state": state}, float(counts.get(state, 0))))
    found = [f for f in found if f.name != PROCESSES] + [processes]
    return render(found)


async def dump(kernel: Kernel, path: Path) -> None:
    """Write the exposition of every tenant to ``path`` (atomically: a scraper of the file
    never reads half of it)."""
    text = await exposition(kernel)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
