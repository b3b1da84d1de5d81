"""``ConsoleClient``: the console's asynchronous client of a kernel's HTTP API.

The console must never block its UI thread, so it talks to the kernel with ``httpx``'s
async client from Textual workers on the app's own event loop. Errors come back as the
``KernosError`` the server raised (the same mapping as ``kernos.kernel.client``), and a
kernel that cannot be reached is ``KernelUnavailable``, which the console shows as
"disconnected" while it keeps retrying.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from kernos.kernel.client import base_url_for, error_from_problem, tls_context
from kernos.kernel.errors import KernelUnavailable
from kernos.kernel.settings import Settings
from kernos.kernel.tokens import read_admin_token

DEFAULT_TIMEOUT = 5.0
"""Seconds the console waits for an answer before calling the kernel unreachable."""


class ConsoleClient:
    """Async client of one kernel's API: the routes the console uses, nothing more."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout, verify=verify
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, url: str | None = None, token: str | None = None
    ) -> ConsoleClient:
        """A client of ``url`` (default: the kernel ``settings`` describe), authenticated with
        ``token`` (default: the local admin token of the settings' home)."""
        cert = settings.api_tls_cert
        return cls(
            url or base_url_for(settings),
            token=token or read_admin_token(settings.home),
            verify=True if cert is None else tls_context(cert),
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"ConsoleClient({self.base_url!r})"

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = await self._http.request(method, path, json=json, params=query)
        except httpx.TimeoutException:
            raise KernelUnavailable(f"the kernel at {self.base_url} did not answer") from None
        except httpx.TransportError:
            raise KernelUnavailable(f"no kernel answers at {self.base_url}") from None
        if response.is_error:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise error_from_problem(response.status_code, body)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self._request(method, path, **kwargs)).json()

    async def health(self) -> dict[str, Any]:
        """``GET /healthz``: ``{"status": "ok", "version": ...}``."""
        result: dict[str, Any] = await self._json("GET", "/healthz")
        return result

    async def processes(self, *, limit: int = 500) -> list[dict[str, Any]]:
        """``GET /v1/processes``: the newest ``limit`` processes of the caller's tenant."""
        page = await self._json("GET", "/v1/processes", params={"limit": limit})
        data: list[dict[str, Any]] = page["data"]
        return data

    async def process(self, pid: int) -> dict[str, Any]:
        """``GET /v1/processes/{pid}``."""
        result: dict[str, Any] = await self._json("GET", f"/v1/processes/{pid}")
        return result

    async def signal(self, pid: int, signal: str) -> dict[str, Any]:
        """``POST /v1/processes/{pid}/signal``: ``suspend``, ``resume`` or ``kill``."""
        result: dict[str, Any] = await self._json(
            "POST", f"/v1/processes/{pid}/signal", json={"signal": signal}
        )
        return result

    async def run(self, agent: str, input: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``POST /v1/runs`` without waiting: the process as accepted."""
        body = {"agent": agent, "input": dict(input or {})}
        result: dict[str, Any] = await self._json("POST", "/v1/runs", json=body)
        return result

    async def approvals(self, *, status: str = "pending") -> list[dict[str, Any]]:
        """``GET /v1/approvals`` (oldest first)."""
        page = await self._json("GET", "/v1/approvals", params={"status": status})
        data: list[dict[str, Any]] = page["data"]
        return data

    async def decide(
        self, approval_id: str, *, approved: bool, comment: str | None = None
    ) -> dict[str, Any]:
        """``POST /v1/approvals/{id}``: approve or deny, with an optional comment."""
        body: dict[str, Any] = {"approved": approved, "value": None}
        if comment:
            body["comment"] = comment
        result: dict[str, Any] = await self._json(
            "POST", f"/v1/approvals/{quote(approval_id, safe='')}", json=body
        )
        return result

    async def audit(
        self,
        *,
        pid: int | None = None,
        event: str | None = None,
        after: int | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        """``GET /v1/audit``: the newest ``limit`` records, or those after seq ``after``."""
        params = {"pid": pid, "event": event, "after": after, "limit": limit}
        page = await self._json("GET", "/v1/audit", params=params)
        data: list[dict[str, Any]] = page["data"]
        return data

    async def verify(self) -> dict[str, Any]:
        """``GET /v1/audit/verify``: ``ok``, ``records``, ``first_bad_seq``, ``detail``…"""
        result: dict[str, Any] = await self._json("GET", "/v1/audit/verify")
        return result

    async def dead_letters(self) -> list[dict[str, Any]]:
        """``GET /v1/events/dlq``: dead letters not yet replayed, newest first."""
        page = await self._json("GET", "/v1/events/dlq")
        data: list[dict[str, Any]] = page["data"]
        return data

    async def replay(self, dead_letter_id: int) -> dict[str, Any]:
        """``POST /v1/events/dlq/{id}/replay``."""
        result: dict[str, Any] = await self._json("POST", f"/v1/events/dlq/{dead_letter_id}/replay")
        return result

    async def agents(self) -> list[dict[str, Any]]:
        """``GET /v1/agents``."""
        page = await self._json("GET", "/v1/agents")
        data: list[dict[str, Any]] = page["data"]
        return data

    async def whoami(self) -> dict[str, Any]:
        """``GET /v1/whoami``: principal, tenant, roles, and whether an LLM is configured."""
        result: dict[str, Any] = await self._json("GET", "/v1/whoami")
        return result

    async def process_state(self, pid: int) -> dict[str, Any]:
        """``GET /v1/processes/{pid}/state``: its current checkpoint."""
        result: dict[str, Any] = await self._json("GET", f"/v1/processes/{pid}/state")
        return result

    async def events(self, *, after: int | None = None, limit: int = 100) -> dict[str, Any]:
        """``GET /v1/events``: the newest published events, or those after seq ``after``."""
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        result: dict[str, Any] = await self._json("GET", "/v1/events", params=params)
        return result

    async def metrics(self) -> str:
        """``GET /metrics``: Prometheus text."""
        return (await self._request("GET", "/metrics")).text


__all__ = ["DEFAULT_TIMEOUT", "ConsoleClient"]
