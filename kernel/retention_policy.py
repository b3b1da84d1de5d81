"""The retention policy: how long the kernel keeps what processes, events and memory leave.

Read from the ``[retention]`` table of ``kernos.toml`` or ``KERNOS_RETENTION__…`` variables
(``KERNOS_RETENTION__CHECKPOINTS__KEEP_LAST=1``), as the ``retention`` setting. Durations are
seconds, or a number with a unit (``90s``, ``30m``, ``12h``, ``30d``, ``2w``). Nothing is
deleted unless a rule is configured: every rule defaults to "keep". ``[retention.tenants.NAME]``
overrides any rule for one tenant (a rule left out there is the kernel-wide one).
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> object:
    """Seconds from ``3600``, ``"3600"`` or ``"1h"`` (``s m h d w``); anything else as given
    (pydantic then says what is wrong)."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration: use seconds or 90s, 30m, 12h, 30d, 2w")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
"""A positive number of seconds (``"30d"`` accepted)."""


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


R = TypeVar("R", bound=_Rules)


class CheckpointRetention(_Rules):
    """LangGraph checkpoints of finished (done, failed, killed) processes."""

    keep_last: int | None = Field(default=None, ge=1)
    """Keep only the newest N checkpoints of each namespace of a finished process's thread
    (with their writes and the channel values they use). ``None``: keep all. ``1`` keeps the
    final state, which is all a finished process can still be asked for."""

    max_age: Duration | None = None
    """Seconds after a process finished when all of its checkpoints go (and the process is
    marked purged: no checkpoint or journal write for it is accepted again)."""


class JournalRetention(_Rules):
    """The syscall journal (``syscalls``) of finished processes."""

    max_age: Duration | None = None
    """Seconds after a process finished when its journal rows go (the process is marked
    purged). The audit log keeps its own record of every call."""


class IdempotencyRetention(_Rules):
    """Idempotency records: published events (one per tenant and event id) with their
    delivered deliveries, and the spawn keys of finished processes (run ``Idempotency-Key``s,
    trigger and parent-syscall keys)."""

    max_age: Duration | None = None
    """Seconds an idempotency record is kept: an event older than this whose every delivery
    succeeded (and none changed since) is deleted with its deliveries; a process finished this
    long ago loses its spawn key. A retry after that is treated as new."""


class DeadLetterRetention(_Rules):
    """The dead-letter queue."""

    max_age: Duration | None = None
    """Seconds a dead letter is kept (replayed or not); its delivery goes with it if it is
    still dead."""


class MemoryRetention(_Rules):
    """Long-term memory: a time to live per collection, by name pattern."""

    ttl: dict[str, Duration] = Field(default_factory=dict)
    """``{"PATTERN": seconds}``: documents of a collection whose name matches the pattern
    (``fnmatch``: ``scratch-*``, ``*``) are deleted this long after they were stored. The
    first matching pattern applies, in the order written. Documents stored before Kernos
    stamped a storage time on them carry none and are kept."""

    def ttl_for(self, collection: str) -> float | None:
        """The time to live of ``collection`` (``None``: kept)."""
        for pattern, seconds in self.ttl.items():
            if fnmatch.fnmatchcase(collection, pattern):
                return seconds
        return None


class AuditRetention(_Rules):
    """Archiving the audit log. The hash chain itself is never edited or shortened."""

    archive_after: Duration | None = None
    """Seconds after which a range of records covered by a signed audit checkpoint is written
    to a JSON-lines file in ``archive_dir`` together with that checkpoint (once per
    checkpoint). ``None``: nothing is archived."""

    archive_dir: Path | None = None
    """Folder of the archive files. Default: ``audit-archive`` in ``KERNOS_HOME``."""

    archive_max_age: Duration | None = None
    """Seconds after which an archive file (by the time of its range's last record) is
    deleted; a range that old is never archived again. The chain's rows stay either way.
    ``None``: archive files are kept."""

    @model_validator(mode="after")
    def _ages_in_order(self) -> AuditRetention:
        if self.archive_max_age is not None and (
            self.archive_after is None or self.archive_max_age <= self.archive_after
        ):
            raise ValueError(
                "audit.archive_max_age needs audit.archive_after, and must be longer than it "
                "(an archive is written after archive_after and deleted after archive_max_age)"
            )
        return self


class TenantRetention(_Rules):
    """One tenant's rules (the same kinds as the kernel-wide ones, audit excepted)."""

    checkpoints: CheckpointRetention | None = None
    journal: JournalRetention | None = None
    idempotency: IdempotencyRetention | None = None
    dead_letters: DeadLetterRetention | None = None
    memory: MemoryRetention | None = None


class EffectiveRetention(_Rules):
    """The rules in force for one tenant: the kernel-wide ones with its overrides applied."""

    checkpoints: CheckpointRetention
    journal: JournalRetention
    idempotency: IdempotencyRetention
    dead_letters: DeadLetterRetention
    memory: MemoryRetention

    @property
    def configured(self) -> bool:
        """Whether any rule would delete anything."""
        return any(
            (
                self.checkpoints.keep_last,
                self.checkpoints.max_age,
                self.journal.max_age,
                self.idempotency.max_age,
                self.dead_letters.max_age,
                self.memory.ttl,
            )
        )


def _merged(base: R, override: R | None) -> R:
    """``base`` with the fields ``override`` sets explicitly."""
    if override is None:
        return base
    return base.model_copy(
        update={name: getattr(override, name) for name in override.model_fields_set}
    )


class RetentionPolicy(_Rules):
    """The kernel's retention policy (the ``retention`` setting)."""

    interval: Duration | None = 3600.0
    """Seconds between purge passes on the kernel clock. ``None`` (``0`` in a file or the
    environment): no background purge; ``kernos retention run`` still runs one."""

    batch_size: int = Field(default=1000, ge=1, le=100_000)
    """Most rows one write job deletes (each job is one short transaction of the single
    writer, and carries its own audit record)."""

    checkpoints: CheckpointRetention = Field(default_factory=CheckpointRetention)
    journal: JournalRetention = Field(default_factory=JournalRetention)
    idempotency: IdempotencyRetention = Field(default_factory=IdempotencyRetention)
    dead_letters: DeadLetterRetention = Field(default_factory=DeadLetterRetention)
    memory: MemoryRetention = Field(default_factory=MemoryRetention)
    audit: AuditRetention = Field(default_factory=AuditRetention)
    tenants: dict[str, TenantRetention] = Field(default_factory=dict)
    """Per-tenant overrides, by tenant name."""

    @field_validator("interval", mode="before")
    @classmethod
    def _zero_is_off(cls, value: Any) -> Any:
        if value in (0, "0", "off", "none", ""):
            return None
        return value

    def for_tenant(self, tenant: str) -> EffectiveRetention:
        """The rules in force for ``tenant``."""
        override = self.tenants.get(tenant) or TenantRetention()
        return EffectiveRetention(
            checkpoints=_merged(self.checkpoints, override.checkpoints),
            journal=_merged(self.journal, override.journal),
            idempotency=_merged(self.idempotency, override.idempotency),
            dead_letters=_merged(self.dead_letters, override.dead_letters),
            memory=_merged(self.memory, override.memory),
        )

    @property
    def configured(self) -> bool:
        """Whether any rule of any tenant, or the audit archive, would act."""
        return (
            self.audit.archive_after is not None
            or self.for_tenant("").configured
            or any(self.for_tenant(name).configured for name in self.tenants)
        )

    def archive_path(self, home: Path) -> Path:
        """Where audit archives go."""
        folder = self.audit.archive_dir or home / "audit-archive"
        return folder.expanduser().absolute()


__all__ = [
    "AuditRetention",
    "CheckpointRetention",
    "DeadLetterRetention",
    "Duration",
    "EffectiveRetention",
    "IdempotencyRetention",
    "JournalRetention",
    "MemoryRetention",
    "RetentionPolicy",
    "TenantRetention",
    "parse_duration",
]
