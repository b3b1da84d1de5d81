"""Signed webhooks for asynchronous runs.

A run started with a ``webhook_url`` publishes a ``process.finished`` event in the same
transaction as its end (``kernos.kernel.processes``); ``WebhookNotifier`` is the event bus's
subscriber for that topic, so delivery inherits the bus's guarantees: at least once, retried
with exponential backoff and jitter, dead-lettered (and replayable) after the last attempt,
pending deliveries resumed after a restart. Every attempt is recorded in
``webhook_deliveries``.

Signing has the shape receivers know from Stripe (not the Standard Webhooks header set): a
header ``Kernos-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``, the
secret being the tenant's (``tenant_secret``), derived from a master key kept in
``KERNOS_HOME/secrets/webhook.key`` (created 0600 on first use). ``verify_signature`` is the
receiving side, for Python receivers and our tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from kernos.api.schemas import ProcessPublic
from kernos.kernel import telemetry as names
from kernos.kernel.errors import ConfigError, InvalidInput
from kernos.kernel.genai import inject
from kernos.kernel.processes import FINISHED_TOPIC, TERMINAL
from kernos.kernel.storage.models import ProcessRow, TenantRow, WebhookDeliveryRow

if TYPE_CHECKING:
    from kernos.kernel.events import Event
    from kernos.kernel.kernel import Kernel

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Kernos-Signature"
"""Header carrying ``t=<unix seconds>,v1=<hex HMAC-SHA256>``."""

ID_HEADER = "Kernos-Webhook-Id"
"""Header carrying the notification's id, the same on every retry: receivers deduplicate on it."""

TOLERANCE_SECONDS = 300
"""How old a signature ``verify_signature`` accepts by default (replay protection)."""

SUBSCRIBER = "webhooks"
"""The notifier's subscriber name on the event bus (its deliveries are ``handler:webhooks``)."""

_MASTER = Path("secrets") / "webhook.key"


def master_key(home: Path) -> bytes:
    """The master signing key under ``home``, created (32 random bytes, mode 0600) if missing.

    Written to a temporary file, synced, then linked into place, so the key file is either
    absent or whole: an empty or short key would make every tenant's secret guessable.
    """
    path = home / _MASTER
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_bytes(32).hex())
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process got there first
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigError(
            f"{path} is not a 64-hex-digit key; remove it to make a new one "
            "(every webhook secret changes then)"
        )
    return key


def tenant_secret(master: bytes, tenant: str) -> str:
    """The tenant's webhook signing secret (``whsec_…``): the same for every run of the tenant,
    different across tenants, and never stored."""
    digest = hmac.new(master, f"kernos-webhook:{tenant}".encode(), hashlib.sha256).digest()
    return "whsec_" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(secret: str, body: bytes, *, timestamp: int) -> str:
    """The ``Kernos-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance: float = TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Check a received ``Kernos-Signature`` header against the raw body; raise ``InvalidInput``
    naming what is wrong (malformed, too old, or no matching signature)."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            raise InvalidInput(f"malformed {SIGNATURE_HEADER} header")
        parts.setdefault(name, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError) as exc:
        raise InvalidInput(f"{SIGNATURE_HEADER} header has no timestamp") from exc
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise InvalidInput(f"webhook signature is {current - timestamp:.0f} s old; refused")
    expected = sign(secret, body, timestamp=timestamp).split("v1=", 1)[1].encode()
    given = [v.encode("utf-8", "replace") for v in parts.get("v1", [])]
    if not any(hmac.compare_digest(expected, candidate) for candidate in given):
        raise InvalidInput("webhook signature does not match the body")


_TRACES_KEPT = 10_000  # runs whose webhook is pending, whose trace is kept


class WebhookNotifier:
    """The event-bus subscriber that POSTs a run's result to its webhook, signed.

    A non-2xx answer, a refused connection or a timeout raises, so the bus retries the
    delivery with backoff and finally dead-letters it; each attempt is recorded first.
    """

    def __init__(self, kernel: Kernel, *, timeout: float = 10.0) -> None:
        self._kernel = kernel
        self._allow_private = kernel.settings.webhook_allow_private
        self._master = master_key(kernel.settings.home)
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        # The trace each async run was started in, until its webhook is delivered (in memory:
        # after a restart a delivery starts a trace of its own).
        self._traces: OrderedDict[int, SpanContext] = OrderedDict()

    def remember_trace(self, pid: int) -> None:
        """Deliver ``pid``'s webhook in the current trace (the ``POST /v1/runs`` request's,
        which carries the caller's ``traceparent``)."""
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            self._traces[pid] = context
            while len(self._traces) > _TRACES_KEPT:
                self._traces.popitem(last=False)

    def secret(self, tenant: str) -> str:
        """The signing secret of ``tenant``."""
        return tenant_secret(self._master, tenant)

    def install(self) -> None:
        """Subscribe to ``process.finished`` on the kernel's event bus."""
        self._kernel.events.subscribe(FINISHED_TOPIC, self, name=SUBSCRIBER)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def __call__(self, event: Event) -> None:
        """Deliver the notification of ``event`` once; raise so the bus retries on failure."""
        pid = event.data.get("pid")
        if not isinstance(pid, int) or event.id != f"process.finished:{pid}":
            return  # not the kernel's own notification (outside publishers cannot use it)
        async with self._kernel.db.read() as session:
            found = (
                await session.execute(
                    select(ProcessRow.webhook_url, ProcessRow.tenant_id).where(
                        ProcessRow.pid == pid
                    )
                )
            ).first()
            attempts = len(
                (
                    await session.scalars(
                        select(WebhookDeliveryRow.id).where(
                            WebhookDeliveryRow.pid == pid, WebhookDeliveryRow.event_id == event.id
                        )
                    )
                ).all()
            )
        if found is None or found.webhook_url is None:
            return  # purged, or never asked for one: nothing to deliver
        url, tenant_id = found.webhook_url, found.tenant_id
        info = await self._kernel.processes.get(pid, tenant=event.tenant)
        if info.state not in TERMINAL:
            return
        if not self._allow_private:
            await check_public(url)  # again now: the name may resolve elsewhere than before
        body = json.dumps(
            {
                "id": event.id,
                "type": event.topic,
                "created": event.time.isoformat() if event.time else None,
                "data": ProcessPublic.model_validate(info.as_dict()).model_dump(mode="json"),
            },
            separators=(",", ":"),
        ).encode()
        timestamp = int(self._kernel.clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "kernos-webhooks",
            ID_HEADER: event.id,
            "Kernos-Delivery-Attempt": str(attempts + 1),
            SIGNATURE_HEADER: sign(self.secret(event.tenant), body, timestamp=timestamp),
        }
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        parent = self._traces.get(pid)
        target = urlsplit(url)
        span = self._kernel.telemetry.tracer.start_span(
            names.SPAN_WEBHOOK,
            # No remembered trace: a trace of its own, not whatever the bus task inherited.
            context=trace.set_span_in_context(
                NonRecordingSpan(parent or INVALID_SPAN_CONTEXT), Context()
            ),
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": "POST",
                "server.address": target.hostname or "",
                names.ATTR_PID: pid,
                names.ATTR_TENANT: event.tenant,
                "kernos.webhook.attempt": attempts + 1,
            },
        )
        inject(headers, trace.set_span_in_context(span))
        try:
            response = await self._client.post(url, content=body, headers=headers)
            status = response.status_code
            span.set_attribute("http.response.status_code", status)
            if not 200 <= status < 300:
                # The status only: the receiver's body could be anything an internal service
                # answers, and the delivery record is readable by the tenant.
                error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}".rstrip(": ")
            span.set_attribute("error.type", type(exc).__name__)
        finally:
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, error))
            span.end()
        if error is None:
            self._traces.pop(pid, None)
        elapsed = (time.perf_counter() - started) * 1000
        now = self._kernel.clock.now()

        def record(session: Session) -> None:
            session.add(
                WebhookDeliveryRow(
                    tenant_id=tenant_id,
                    pid=pid,
                    event_id=event.id,
                    url=url,
                    attempt=attempts + 1,
                    status_code=status,
                    error=error,
                    duration_ms=elapsed,
                    at=now,
                )
            )

        await self._kernel.db.write(record)
        if error is not None:
            log.warning(
                "webhook for process %s failed: %s",
                pid,
                error,
                extra={"pid": pid, "tenant": event.tenant},
            )
            raise RuntimeError(f"webhook delivery failed: {error}")


async def deliveries(kernel: Kernel, pid: int, *, tenant: str) -> list[WebhookDeliveryRow]:
    """Every recorded attempt for ``pid``'s webhook, oldest first (tenant-scoped)."""
    async with kernel.db.read() as session:
        rows = await session.scalars(
            select(WebhookDeliveryRow)
            .join(TenantRow, TenantRow.id == WebhookDeliveryRow.tenant_id)
            .where(WebhookDeliveryRow.pid == pid, TenantRow.name == tenant)
            .order_by(WebhookDeliveryRow.id)
        )
        return list(rows.all())


async def check_public(url: str) -> None:
    """Refuse (``InvalidInput``) a webhook URL whose host is or resolves to a loopback,
    private, link-local, multicast or reserved address: a tenant must not make the kernel
    call services on its own network (``KERNOS_WEBHOOK_ALLOW_PRIVATE`` permits it)."""
    host = urlsplit(url).hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError as exc:
        raise InvalidInput(f"webhook host {host!r} does not resolve: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise InvalidInput(
                f"webhook host {host!r} is a private or local address ({address}); "
                "use a public URL, or set KERNOS_WEBHOOK_ALLOW_PRIVATE=true for a trusted network"
            )
