"""Human-in-the-loop notifications: who must answer an approval hears about it.

The approval stage publishes ``approval.requested`` when a process starts waiting for a human;
the approvals' deadline timer publishes ``approval.escalated`` (the next role of the chain) and
``approval.expired``. ``HitlNotifier`` is the event bus's subscriber for ``approval.#``: it POSTs
each to the webhook configured for the role that must answer now (``KERNOS_HITL_WEBHOOKS``, a
role → URL map, ``*`` for every other role), signed exactly like run webhooks (the tenant's
secret, ``Kernos-Signature``), so a pager, a chat bot or an inspector's app can act on it.
Delivery inherits the bus's guarantees: at least once, retried with backoff, dead-lettered
(and replayable) after the last attempt. The deadlines and the escalation chain themselves are
the approval rules' (``a, TENANT, OBJECT, ACTION, CONDITION, ROLE, DEADLINE, ESCALATION...``).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import httpx

from kernos.api.webhooks import (
    ID_HEADER,
    SIGNATURE_HEADER,
    check_public,
    master_key,
    sign,
    tenant_secret,
)

if TYPE_CHECKING:
    from kernos.kernel.events import Event
    from kernos.kernel.kernel import Kernel

log = logging.getLogger(__name__)

TOPICS = "approval.#"
"""What the notifier listens to: requested, escalated, expired."""
SUBSCRIBER = "hitl"
"""Its subscriber name on the bus (deliveries and dead letters name it)."""


class HitlNotifier:
    """Sends each approval event to the webhook of the role that must answer it."""

    def __init__(self, kernel: Kernel, *, timeout: float = 10.0) -> None:
        self._kernel = kernel
        self._hooks = dict(kernel.settings.hitl_webhooks)
        self._allow_private = kernel.settings.webhook_allow_private
        self._master = master_key(kernel.settings.home)
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    def install(self) -> None:
        """Subscribe to ``approval.#`` (only when a webhook is configured)."""
        if self._hooks:
            self._kernel.events.subscribe(TOPICS, self, name=SUBSCRIBER)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    def url_for(self, role: str | None) -> str | None:
        """The webhook of ``role`` (``*`` when it has none of its own)."""
        return self._hooks.get(role or "operator") or self._hooks.get("*")

    async def __call__(self, event: Event) -> None:
        """POST ``event`` to its role's webhook; raise so the bus retries on failure."""
        if event.source != "kernel":
            return  # the kernel's own notifications only (the topics are reserved as well)
        url = self.url_for(event.data.get("role"))
        if url is None:
            return
        if not self._allow_private:
            await check_public(url)
        body = json.dumps(
            {
                "id": event.id,
                "type": event.topic,
                "created": event.time.isoformat() if event.time else None,
                "tenant": event.tenant,
                "data": event.data,
            },
            separators=(",", ":"),
            default=str,
        ).encode()
        timestamp = int(self._kernel.clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "kernos-hitl",
            ID_HEADER: event.id,
            SIGNATURE_HEADER: sign(
                tenant_secret(self._master, event.tenant), body, timestamp=timestamp
            ),
        }
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise RuntimeError(f"approval notification failed: {type(exc).__name__}") from exc
        if not 200 <= response.status_code < 300:
            log.warning("approval notification %s: HTTP %s", event.id, response.status_code)
            raise RuntimeError(f"approval notification failed: HTTP {response.status_code}")


__all__ = ["SUBSCRIBER", "TOPICS", "HitlNotifier"]
