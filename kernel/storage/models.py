"""SQLAlchemy models of the kernel database (separate from API schemas).

Every schema change comes with an Alembic migration in ``migrations/versions``; a test checks
that migrating an empty database yields exactly these tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so migrations name constraints stably."""

    metadata = MetaData(naming_convention=NAMING)


class TenantRow(Base):
    """A tenant: the unit of isolation for principals, processes, policy and usage."""

    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class PrincipalRow(Base):
    """A person, service or agent that acts within one tenant."""

    __tablename__ = "principals"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_principals_tenant_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class ProcessRow(Base):
    """One running (or finished) instance of an agent: the process table."""

    __tablename__ = "processes"

    pid: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    owner: Mapped[str] = mapped_column(String(63))
    agent: Mapped[str] = mapped_column(String(64))
    agent_version: Mapped[str] = mapped_column(String(32))
    parent_pid: Mapped[int | None] = mapped_column(ForeignKey("processes.pid"), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    waiting_on: Mapped[str | None] = mapped_column(String(16))
    pending_signal: Mapped[str | None] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    thread_id: Mapped[str] = mapped_column(String(64), unique=True)
    correlation_id: Mapped[str] = mapped_column(String(64), index=True)
    input: Mapped[Any] = mapped_column(JSON)
    output: Mapped[Any | None] = mapped_column(JSON)
    error: Mapped[Any | None] = mapped_column(JSON)
    budgets: Mapped[Any] = mapped_column(JSON)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    tool_calls: Mapped[int] = mapped_column(Integer, default=0)
    llm_calls: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    wall_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    steps: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    spawn_key: Mapped[str | None] = mapped_column(String(400), unique=True)
    """Idempotency key of the spawn (trigger + event, parent syscall, API key): one process."""
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    """Where a signed ``process.finished`` notification goes when the process ends."""
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """When retention purged this finished process's checkpoints or journal (migration
    0013): from then on the checkpointer and the journal refuse every write for it."""


class SyscallRow(Base):
    """The syscall journal: intent before a side effect, result after, by deterministic key."""

    __tablename__ = "syscalls"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    pid: Mapped[int] = mapped_column(ForeignKey("processes.pid", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    args: Mapped[Any] = mapped_column(JSON)
    result: Mapped[Any | None] = mapped_column(JSON)
    error: Mapped[Any | None] = mapped_column(JSON)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    trace_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApprovalRow(Base):
    """A question to a human (``human.ask``, or a tool that requires approval), keyed by syscall."""

    __tablename__ = "approvals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    syscall_key: Mapped[str] = mapped_column(String(400), unique=True)
    pid: Mapped[int] = mapped_column(ForeignKey("processes.pid", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    question: Mapped[str] = mapped_column(Text)
    proposed: Mapped[Any | None] = mapped_column(JSON)
    required_role: Mapped[str | None] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(16), index=True)
    interrupt_id: Mapped[str | None] = mapped_column(String(64))
    answer: Mapped[Any | None] = mapped_column(JSON)
    decided_by: Mapped[str | None] = mapped_column(String(127))
    comment: Mapped[str | None] = mapped_column(Text)
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Deadlines and escalation (migration 0010): ``escalation`` is the route of roles (the
    # first one asked, then its escalation chain) and ``level`` the index of the current one.
    # Past ``deadline`` a pending approval moves to the next role (a new deadline
    # ``step_seconds`` on), or expires at the end of the route. ``rule`` is the approval rule
    # that required it, if any.
    step_seconds: Mapped[float | None] = mapped_column(Float)
    escalation: Mapped[Any | None] = mapped_column(JSON)
    level: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rule: Mapped[str | None] = mapped_column(Text)


class ApprovalRuleRow(Base):
    """An approval rule (migration 0010): calls matching it wait for a human of ``role``.

    ``line`` is the rule's canonical one-line form (``a, TENANT, OBJECT, ACTION, CONDITION,
    ROLE[, DEADLINE[, ESCALATION...]]``); the columns are its parsed fields. Rules are tried in
    ``id`` order and the first whose condition holds applies.
    """

    __tablename__ = "approval_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    line: Mapped[str] = mapped_column(String(1000), unique=True)
    tenant: Mapped[str] = mapped_column(String(63))
    object: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(16))
    condition: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(63))
    deadline_seconds: Mapped[float | None] = mapped_column(Float)
    escalation: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditRow(Base):
    """The audit log: append-only, hash-chained (``kernos.policy.audit``).

    ``body`` is the canonical JSON of the record (every column below, ``ts`` as ISO-8601 UTC,
    and ``seq``); ``hash`` is SHA-256 over ``prev_hash`` and ``body``. The columns are copies
    for queries, checked against the body on verify. Rows written by the kernel's plain sink
    (no policy layer) have no hash until the chained sink adopts them.
    """

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    tenant: Mapped[str] = mapped_column(String(63), index=True)
    principal: Mapped[str] = mapped_column(String(127))
    pid: Mapped[int | None] = mapped_column(Integer, index=True)
    syscall_key: Mapped[str | None] = mapped_column(String(400))
    event: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str | None] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(128))
    decision: Mapped[str | None] = mapped_column(String(16))
    rule: Mapped[str | None] = mapped_column(Text)
    args: Mapped[Any | None] = mapped_column(JSON)
    summary: Mapped[str | None] = mapped_column(Text)
    trace_id: Mapped[str | None] = mapped_column(String(32))
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[str | None] = mapped_column(Text)


class TenantUsageRow(Base):
    """Usage summed per tenant (processes hold their own)."""

    __tablename__ = "tenant_usage"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    tool_calls: Mapped[int] = mapped_column(Integer, default=0)
    llm_calls: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)


class CheckpointRow(Base):
    """A LangGraph checkpoint, without the channel values kept in ``checkpoint_blobs``.

    ``checkpoint`` is the saver's serde encoding (its tag in ``type``) of the checkpoint with
    only small scalar channel values inlined; ``metadata`` is JSON so ``list(filter=...)``
    can match it in SQL, and ``run_id`` is copied out of it for ``delete_for_runs``.
    """

    __tablename__ = "checkpoints"

    thread_id: Mapped[str] = mapped_column(Text, primary_key=True)
    checkpoint_ns: Mapped[str] = mapped_column(Text, primary_key=True)
    checkpoint_id: Mapped[str] = mapped_column(Text, primary_key=True)
    parent_checkpoint_id: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(Text, index=True)
    type: Mapped[str] = mapped_column(String(32))
    checkpoint: Mapped[bytes] = mapped_column(LargeBinary)
    metadata_: Mapped[Any] = mapped_column("metadata", JSON)


class CheckpointBlobRow(Base):
    """One channel's value at one version, shared by every checkpoint that has that version."""

    __tablename__ = "checkpoint_blobs"

    thread_id: Mapped[str] = mapped_column(Text, primary_key=True)
    checkpoint_ns: Mapped[str] = mapped_column(Text, primary_key=True)
    channel: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[str] = mapped_column(Text, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    blob: Mapped[bytes] = mapped_column(LargeBinary)


class CheckpointWriteRow(Base):
    """A pending write of a task, linked to the checkpoint it runs from."""

    __tablename__ = "checkpoint_writes"

    thread_id: Mapped[str] = mapped_column(Text, primary_key=True)
    checkpoint_ns: Mapped[str] = mapped_column(Text, primary_key=True)
    checkpoint_id: Mapped[str] = mapped_column(Text, primary_key=True)
    task_id: Mapped[str] = mapped_column(Text, primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    task_path: Mapped[str] = mapped_column(Text, default="")
    channel: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(32))
    blob: Mapped[bytes] = mapped_column(LargeBinary)


class EventRow(Base):
    """A published event, unique per tenant and event id (so publishing is idempotent)."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("tenant_id", "event_id", name="uq_events_tenant_event"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    event_id: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str] = mapped_column(String(128), index=True)
    source: Mapped[str] = mapped_column(String(127))
    data: Mapped[Any] = mapped_column(JSON)
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    traceparent: Mapped[str | None] = mapped_column(String(55))
    """The W3C trace context it was published in (migration 0014): deliveries and the
    processes its triggers start join that trace."""


class EventDeliveryRow(Base):
    """One event to one subscriber or trigger: committed pending before the handler runs."""

    __tablename__ = "event_deliveries"
    __table_args__ = (
        UniqueConstraint("event_seq", "subscriber", name="uq_event_deliveries_event_subscriber"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_seq: Mapped[int] = mapped_column(ForeignKey("events.seq", ondelete="CASCADE"))
    subscriber: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    pid: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DeadLetterRow(Base):
    """A delivery that kept failing, kept for operators to inspect and replay."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("event_deliveries.id", ondelete="CASCADE"), index=True
    )
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    subscriber: Mapped[str] = mapped_column(String(80))
    attempts: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    replayed_by: Mapped[str | None] = mapped_column(String(127))


# -- Audit chain (migration 0006) -----------------------------------------------------------


class AuditCheckpointRow(Base):
    """A signed checkpoint: the Merkle root (RFC 6962) over the record hashes of one range.

    Ranges follow each other without gaps (``first_seq`` is the previous ``last_seq`` + 1);
    the Ed25519 signature covers the range, root, last record's hash, time, key fingerprint
    and the previous checkpoint's id and root. Each one is also exported to a witness.
    """

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    prev_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    first_seq: Mapped[int] = mapped_column(Integer)
    last_seq: Mapped[int] = mapped_column(Integer, unique=True)
    root: Mapped[str] = mapped_column(String(64))
    head_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    key_fingerprint: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))


# -- Policy (migration 0007) ----------------------------------------------------------------


class PolicyRuleRow(Base):
    """One Casbin policy line in ``sqlalchemy_adapter``'s layout (its ``db_class``).

    ``ptype`` is ``p`` or ``g``; ``v0``..``v5`` are the line's fields, unused ones NULL.
    """

    __tablename__ = "policy_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ptype: Mapped[str] = mapped_column(String(255))
    v0: Mapped[str | None] = mapped_column(String(255))
    v1: Mapped[str | None] = mapped_column(String(255))
    v2: Mapped[str | None] = mapped_column(String(255))
    v3: Mapped[str | None] = mapped_column(String(255))
    v4: Mapped[str | None] = mapped_column(String(255))
    v5: Mapped[str | None] = mapped_column(String(255))

    def __str__(self) -> str:
        # The adapter loads a row by parsing str(row) as a CSV policy line.
        values = (self.v0, self.v1, self.v2, self.v3, self.v4, self.v5)
        return ", ".join([self.ptype, *(v for v in values if v is not None)])


class PolicyVersionRow(Base):
    """The policy's version: one row, bumped in the same transaction as every policy change.

    Version 0 means the default policy was never seeded.
    """

    __tablename__ = "policy_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(Integer)
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# -- API keys (migration 0008) --------------------------------------------------------------


class ApiKeyRow(Base):
    """An API key: only its SHA-256 is stored; the token is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    principal_id: Mapped[int] = mapped_column(
        ForeignKey("principals.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(63))
    description: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[str] = mapped_column(String(127))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_by: Mapped[str | None] = mapped_column(String(127))


# -- Tokenization vault (migration 0009) ----------------------------------------------------


class VaultRow(Base):
    """An original value behind a redaction token, AES-GCM encrypted under the vault key.

    ``token`` is an HMAC of (tenant, kind, original), so it is unique across tenants and the
    same value always maps to the same row; ``key_id`` names the key that encrypted it.
    """

    __tablename__ = "vault_entries"

    token: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    key_id: Mapped[str] = mapped_column(String(16))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# -- Model registry (migration 0011) --------------------------------------------------------


class ModelVersionRow(Base):
    """One registered version of a model (an LLM, an ONNX model, any artifact).

    The artifact stays where ``path`` says (an absolute path on the kernel's machine, or a
    copy under ``KERNOS_HOME/models``); ``sha256`` and ``size`` are what it must still hash
    to. ``signature`` (hex) is Ed25519 over the canonical manifest (name, version, sha256,
    size, provenance) by the key whose fingerprint is ``key_fingerprint``. ``stage`` is
    ``registered``, ``shadow``, ``canary`` (with ``canary_percent``), ``live`` or ``retired``.
    """

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_model_versions_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str | None] = mapped_column(String(128))
    key_fingerprint: Mapped[str | None] = mapped_column(String(64))
    provenance: Mapped[Any] = mapped_column(JSON)
    price_per_1k_input: Mapped[float | None] = mapped_column(Float)
    price_per_1k_output: Mapped[float | None] = mapped_column(Float)
    stage: Mapped[str] = mapped_column(String(16), index=True)
    canary_percent: Mapped[int | None] = mapped_column(Integer)
    registered_by: Mapped[str] = mapped_column(String(127))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    promoted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ModelDeploymentRow(Base):
    """A change of a model version's stage, in order: the history rollback reads."""

    __tablename__ = "model_deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    """``promote``, ``rollback`` or ``demote`` (moved aside by another version's change)."""
    stage: Mapped[str] = mapped_column(String(16))
    canary_percent: Mapped[int | None] = mapped_column(Integer)
    previous_stage: Mapped[str] = mapped_column(String(16))
    by: Mapped[str] = mapped_column(String(127))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookDeliveryRow(Base):
    """One attempt to deliver a webhook: every attempt is kept, failed ones too."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    pid: Mapped[int] = mapped_column(ForeignKey("processes.pid", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(2048))
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
