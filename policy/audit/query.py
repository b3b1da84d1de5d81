"""Reading the audit log: filtered pages and JSON lines, over a read session."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from kernos.kernel.storage.models import AuditRow
from kernos.policy.audit.canonical import COLUMNS, iso_utc

MAX_PAGE = 1000
"""Most records one page returns."""

_AUDIT = cast(Table, AuditRow.__table__)
_c = _AUDIT.c
_PUBLIC = (_c.seq, *(getattr(_c, name) for name in COLUMNS), _c.hash, _c.prev_hash)


def record_dict(row: Any, *, with_body: bool = False) -> dict[str, Any]:
    """A record as JSON-ready dict (``ts`` ISO-8601 UTC), with its hashes (and body)."""
    data: dict[str, Any] = {"seq": row.seq}
    for name in COLUMNS:
        data[name] = getattr(row, name)
    data["ts"] = iso_utc(row.ts)
    data["hash"] = row.hash
    data["prev_hash"] = row.prev_hash
    if with_body:
        data["body"] = row.body
    return data


async def records(
    session: AsyncSession,
    *,
    tenant: str | None = None,
    pid: int | None = None,
    event: str | None = None,
    after: int | None = None,
    limit: int = 100,
    with_body: bool = False,
) -> list[dict[str, Any]]:
    """Records matching the filters, oldest first.

    With ``after`` (a seq; 0 for the start), the first ``limit`` records after it — page on
    with the last one's seq. Without it, the newest ``limit`` records (a tail).
    """
    limit = max(1, min(limit, MAX_PAGE))
    columns = [*_PUBLIC, _c.body] if with_body else list(_PUBLIC)
    query = select(*columns)
    if tenant is not None:
        query = query.where(_c.tenant == tenant)
    if pid is not None:
        query = query.where(_c.pid == pid)
    if event is not None:
        query = query.where(_c.event == event)
    if after is not None:
        query = query.where(_c.seq > after).order_by(_c.seq).limit(limit)
        rows = list((await session.execute(query)).all())
    else:
        query = query.order_by(_c.seq.desc()).limit(limit)
        rows = list(reversed((await session.execute(query)).all()))
    return [record_dict(row, with_body=with_body) for row in rows]


async def export_lines(
    session: AsyncSession, *, tenant: str | None = None, after: int = 0, page: int = MAX_PAGE
) -> AsyncIterator[str]:
    """Every record (with its body) after ``after`` as JSON lines (no newline), oldest first."""
    while True:
        batch = await records(session, tenant=tenant, after=after, limit=page, with_body=True)
        for record in batch:
            yield json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        if len(batch) < page:
            return
        after = batch[-1]["seq"]
