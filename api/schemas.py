"""Request and response bodies of the HTTP API (separate from the kernel's records).

Requests refuse unknown fields, so a misspelled option is a 422 rather than silently ignored.
Responses mirror the kernel's ``as_dict()`` forms, which are also what the CLI prints.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StrictBool, UrlConstraints

from kernos.kernel.processes import ProcessState, Signal

MAX_ID = 2**63 - 1
"""Largest id (pid, dead letter, audit seq) a request may name: SQL's BIGINT."""

MAX_WAIT_SECONDS = 300.0
"""Longest a ``POST /v1/runs`` may hold the request open."""


WebhookUrl = Annotated[
    AnyHttpUrl, UrlConstraints(max_length=2048, allowed_schemes=["http", "https"])
]
"""An absolute http(s) URL of at most 2,048 characters."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunCreate(_Request):
    """``POST /v1/runs``: start a process of an agent."""

    agent: str = Field(min_length=1, max_length=64, description="Agent name.", examples=["hello"])
    input: dict[str, Any] | None = Field(
        default=None,
        description="Input of the agent (checked against its input schema).",
        examples=[{"name": "Ada"}],
    )
    priority: int | None = Field(
        default=None, ge=-1000, le=1000, description="Overrides the agent's default priority."
    )
    wait: float | None = Field(
        default=None,
        ge=0,
        le=MAX_WAIT_SECONDS,
        description="Seconds to wait for the process to finish: 200 with the finished process "
        "if it did, else 202 (it runs on; follow Location).",
    )
    webhook_url: WebhookUrl | None = Field(
        default=None,
        description="Asynchronous run: answer 202 at once and POST the finished process to "
        "this URL, signed (`Kernos-Signature`, see `GET /v1/webhooks/secret`), retried with "
        "backoff until a 2xx; every attempt is listed at `/v1/processes/{pid}/webhooks`.",
        examples=["https://example.com/hooks/kernos"],
    )


class SignalRequest(_Request):
    """``POST /v1/processes/{pid}/signal``."""

    signal: Signal = Field(description="suspend, resume or kill (kill takes the children too).")


class DecisionRequest(_Request):
    """``POST /v1/approvals/{id}``: answer a question a process asked a human."""

    approved: StrictBool
    value: Any = Field(default=None, description="The answer's value, handed to the process.")
    comment: str | None = Field(default=None, max_length=2000)


class BudgetsPublic(BaseModel):
    """Per-process limits (``null``: unlimited)."""

    max_tokens: int | None
    max_tool_calls: int | None
    max_wall_seconds: float | None
    max_cost: float | None


class UsagePublic(BaseModel):
    """Resources a process has used."""

    input_tokens: int
    output_tokens: int
    tool_calls: int
    llm_calls: int
    cost: float


class ProcessPublic(BaseModel):
    """A process as the API returns it."""

    pid: int
    tenant: str
    owner: str
    agent: str
    agent_version: str
    parent_pid: int | None
    state: ProcessState
    waiting_on: str | None
    priority: int
    thread_id: str
    correlation_id: str
    input: Any
    output: Any
    error: Any
    budgets: BudgetsPublic
    usage: UsagePublic
    wall_seconds: float
    steps: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class ProcessList(BaseModel):
    """A page of processes, newest first. ``next`` is the URL of the following page (``None``
    on the last); ``count`` is the number on this page."""

    data: list[ProcessPublic]
    count: int
    next: str | None = None


class ApprovalPublic(BaseModel):
    """A question to a human, pending or decided."""

    id: str
    pid: int
    tenant: str
    kind: str
    question: str
    proposed: Any
    required_role: str | None
    status: str
    answer: Any
    decided_by: str | None
    comment: str | None
    created_at: datetime
    decided_at: datetime | None
    deadline: datetime | None = None
    """When the current role's time to answer ends (then it escalates or expires)."""
    level: int = 0
    """How many times it escalated."""
    escalation: list[str] = []
    """The roles it escalates to, in order, after the first."""
    rule: str | None = None
    """The approval rule that required it, if one did."""


class ApprovalList(BaseModel):
    """Approvals, oldest first."""

    data: list[ApprovalPublic]
    count: int


ApprovalStatus = Literal["pending", "approved", "denied", "expired", "all"]
"""Filter of ``GET /v1/approvals``."""


class Health(BaseModel):
    """``GET /healthz``."""

    status: Literal["ok"] = "ok"
    version: str


__all__ = [
    "MAX_WAIT_SECONDS",
    "ApprovalList",
    "ApprovalPublic",
    "ApprovalStatus",
    "BudgetsPublic",
    "DecisionRequest",
    "Health",
    "ProcessList",
    "ProcessPublic",
    "RunCreate",
    "SignalRequest",
    "UsagePublic",
]


class WebhookDeliveryPublic(BaseModel):
    """One attempt to deliver a run's webhook."""

    attempt: int
    url: str
    status_code: int | None = Field(description="The receiver's HTTP status; null if none came.")
    error: str | None = Field(description="Why the attempt failed; null when it succeeded.")
    duration_ms: float
    at: datetime


class WebhookDeliveryList(BaseModel):
    """``GET /v1/processes/{pid}/webhooks``: every attempt, oldest first."""

    data: list[WebhookDeliveryPublic]
    count: int


class WebhookSecret(BaseModel):
    """``GET /v1/webhooks/secret``: how to check that a webhook came from this kernel."""

    tenant: str
    secret: str = Field(description="HMAC-SHA256 key of the tenant's webhook signatures.")
    header: str = Field(description="The header that carries the signature.")
    scheme: str = Field(description="How the signature is computed.")
