"""The model registry's rows inside a write job: lookups, stage moves, rollback's target.

Synchronous helpers of a ``Session`` (they run on the single writer's thread, or on rows a
reader loaded); every stage change goes through ``move``, which writes the history row that
``rollback_target`` reads.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from kernos.kernel.errors import Conflict, NotFound
from kernos.kernel.identity import Principal
from kernos.kernel.model_records import DeploymentStage, ModelStage
from kernos.kernel.storage.models import ModelDeploymentRow, ModelVersionRow


def version_row(session: Session, name: str, version: str) -> ModelVersionRow | None:
    """The row of ``name@version``, if registered."""
    return session.scalars(
        select(ModelVersionRow).where(
            ModelVersionRow.name == name, ModelVersionRow.version == version
        )
    ).first()


def version_rows(session: Session, name: str) -> list[ModelVersionRow]:
    """Every version row of ``name``, in registration order."""
    query = select(ModelVersionRow).where(ModelVersionRow.name == name).order_by(ModelVersionRow.id)
    return list(session.scalars(query).all())


def history_query(name: str) -> Select[ModelDeploymentRow]:
    """The stage changes of ``name``'s versions, oldest first (for a sync or async session)."""
    return (
        select(ModelDeploymentRow)
        .where(ModelDeploymentRow.name == name)
        .order_by(ModelDeploymentRow.id)
    )


def move(
    session: Session,
    row: ModelVersionRow,
    *,
    stage: ModelStage,
    canary_percent: int | None = None,
    action: str,
    by: Principal,
    now: datetime,
) -> None:
    """Set a version's stage and write the history row saying so."""
    session.add(
        ModelDeploymentRow(
            name=row.name,
            version=row.version,
            action=action,
            stage=stage.value,
            canary_percent=canary_percent,
            previous_stage=row.stage,
            by=by.subject,
            at=now,
        )
    )
    row.stage = stage.value
    row.canary_percent = canary_percent
    row.promoted_at = now


def rollback_target(
    history: Sequence[ModelDeploymentRow], *, current: str | None, known: Collection[str]
) -> str | None:
    """The version a rollback makes live: the one live before ``current``, as on a stack.

    Each promotion to live pushes its version and each rollback pops the version it replaced,
    so rolling back twice walks two steps back instead of toggling between two versions.
    """
    stack: list[str] = []
    for entry in history:
        if entry.stage != ModelStage.LIVE.value:
            continue
        if entry.action == "rollback" and stack:
            stack.pop()
        if not stack or stack[-1] != entry.version:
            stack.append(entry.version)
    if current is not None and stack and stack[-1] == current:
        stack.pop()
    for version in reversed(stack):
        if version != current and version in known:
            return version
    return None


def apply_promotion(
    session: Session,
    name: str,
    version: str,
    *,
    target: DeploymentStage,
    by: Principal,
    now: datetime,
) -> tuple[ModelVersionRow, bool]:
    """Move ``name@version`` to ``target`` (retiring the live version or canary it replaces);
    returns the row and whether anything changed. ``NotFound``, or ``Conflict`` for a canary
    with no live version beside it."""
    row = version_row(session, name, version)
    if row is None:
        raise NotFound(f"no model version {name}@{version}")
    if (row.stage, row.canary_percent) == (target.stage.value, target.canary_percent):
        return row, False
    others = [r for r in version_rows(session, name) if r.id != row.id]
    if target.stage is ModelStage.CANARY and not any(
        r.stage == ModelStage.LIVE.value for r in others
    ):
        raise Conflict(
            f"{name}@{version} cannot be a canary: {name} has no other live version to split "
            "traffic with; promote one to live first"
        )
    if target.stage in (ModelStage.LIVE, ModelStage.CANARY):
        for other in others:
            if other.stage == target.stage.value:
                move(session, other, stage=ModelStage.RETIRED, action="demote", by=by, now=now)
    move(
        session,
        row,
        stage=target.stage,
        canary_percent=target.canary_percent,
        action="promote",
        by=by,
        now=now,
    )
    return row, True


def apply_rollback(
    session: Session, name: str, *, expected: str, by: Principal, now: datetime
) -> tuple[ModelVersionRow, list[str]]:
    """Make ``expected`` live again and retire the live version; returns its row and the
    retired versions. ``Conflict`` if the rollback target is no longer ``expected``."""
    rows = version_rows(session, name)
    current = [r for r in rows if r.stage == ModelStage.LIVE.value]
    again = rollback_target(
        list(session.scalars(history_query(name)).all()),
        current=current[0].version if current else None,
        known={r.version for r in rows},
    )
    if again != expected:
        raise Conflict(f"{name}'s deployments changed meanwhile; run the rollback again")
    for row in current:
        move(session, row, stage=ModelStage.RETIRED, action="demote", by=by, now=now)
    back = next(r for r in rows if r.version == expected)
    move(session, back, stage=ModelStage.LIVE, action="rollback", by=by, now=now)
    return back, [r.version for r in current]
