"""``KernosClient``: the one small synchronous HTTP client of a running kernel's API.

Operational CLI commands (and later the console) use it instead of touching the database.
Errors come back as the ``KernosError`` subclass the server raised, matched by the code in
the problem's ``type``, so the CLI exits with the same status a local call would have.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from kernos.kernel.errors import (
    BudgetExceeded,
    Conflict,
    InvalidInput,
    KernelUnavailable,
    KernosError,
    NotFound,
    PolicyDenied,
    all_error_classes,
)
from kernos.kernel.settings import Settings
from kernos.kernel.tokens import read_admin_token

PROBLEM_TYPE_PREFIX = "urn:kernos:error:"
"""Prefix of a problem's ``type``; the rest is the ``KernosError`` code."""

DEFAULT_TIMEOUT = 10.0
"""Seconds to wait for an answer to an ordinary request."""

# When a code is unknown here (an error class of a layer this process has not imported, or an
# HTTP-level problem), the status still says which family the error belongs to.
_BY_STATUS: dict[int, type[KernosError]] = {
    400: InvalidInput,
    401: PolicyDenied,
    403: PolicyDenied,
    404: NotFound,
    405: InvalidInput,
    409: Conflict,
    422: InvalidInput,
    429: BudgetExceeded,
    503: KernelUnavailable,
}


def base_url_for(settings: Settings) -> str:
    """``http://host:port`` of the API the settings describe (a wildcard host means this one)."""
    wildcards = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104  # mapped away
    host = wildcards.get(settings.api_host, settings.api_host)
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if settings.api_tls_cert is not None else "http"
    return f"{scheme}://{host}:{settings.api_port}"


def tls_context(cert: Path) -> ssl.SSLContext:
    """Verification that trusts ``cert`` itself (a self-signed certificate, or the server's
    own chain) as well as the system's roots."""
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=str(cert))
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def error_from_problem(status: int, body: Any) -> KernosError:
    """The ``KernosError`` a problem+json body (or any error response) stands for."""
    if not isinstance(body, Mapping):
        return KernosError(f"the kernel answered HTTP {status} without a problem description")
    kind = str(body.get("type", ""))
    code = kind.removeprefix(PROBLEM_TYPE_PREFIX) if kind.startswith(PROBLEM_TYPE_PREFIX) else ""
    detail = str(body.get("detail") or body.get("title") or f"HTTP {status}")
    by_code = {cls.code: cls for cls in all_error_classes()}
    cls = by_code.get(code) or _BY_STATUS.get(status, KernosError)
    try:
        return cls(detail, code=code or None)
    except TypeError:  # a subclass with its own constructor
        return KernosError(detail, code=code or None)


class KernosClient:
    """Synchronous client of one kernel's HTTP API. Use as a context manager, or ``close()``."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            verify=verify,
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, token: str | None = None) -> KernosClient:
        """A client of the kernel ``settings`` describe, with its home's admin token by default."""
        cert = settings.api_tls_cert
        return cls(
            base_url_for(settings),
            token=token or read_admin_token(settings.home),
            verify=True if cert is None else tls_context(cert),
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> KernosClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KernosClient({self.base_url!r})"

    # -- Transport ----------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(
                method,
                path,
                json=json,
                params=query,
                timeout=timeout if timeout is not None else self._timeout,
            )
        except httpx.ConnectError:
            raise KernelUnavailable(
                f"no kernel is running at {self.base_url}; start one with `kernos up` "
                "(or `kernos serve`)"
            ) from None
        except httpx.TimeoutException:
            waited = timeout if timeout is not None else self._timeout
            raise KernelUnavailable(
                f"the kernel at {self.base_url} did not answer within {waited:g} s"
            ) from None
        except httpx.TransportError as exc:
            raise KernelUnavailable(
                f"lost the connection to the kernel at {self.base_url}: {exc}"
            ) from None
        if response.is_error:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise error_from_problem(response.status_code, body)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Any route, for plugins' commands: the decoded JSON body (``None`` for 204).

        Errors are raised as the ``KernosError`` the server reported, like the typed methods.
        ``timeout`` overrides the client's for this call (a long purge, say).
        """
        response = self._request(method, path, json=json, params=params, timeout=timeout)
        return None if response.status_code == 204 or not response.content else response.json()

    # -- Routes -------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /healthz``."""
        result: dict[str, Any] = self._json("GET", "/healthz")
        return result

    def metrics(self) -> str:
        """``GET /metrics``: the Prometheus text exposition (the caller's tenant)."""
        return self._request("GET", "/metrics").text

    def run(
        self,
        agent: str,
        input: Mapping[str, Any] | None = None,
        *,
        priority: int | None = None,
        wait: float | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/runs``: the process as accepted, or as it is after waiting up to ``wait`` s.

        The returned process's ``state`` says whether it finished.
        """
        body: dict[str, Any] = {"agent": agent, "input": dict(input or {})}
        if priority is not None:
            body["priority"] = priority
        if wait is not None:
            body["wait"] = wait
        # The server holds the request up to `wait` seconds; allow for that plus the usual.
        timeout = self._timeout + (wait or 0.0)
        result: dict[str, Any] = self._json("POST", "/v1/runs", json=body, timeout=timeout)
        return result

    def processes(
        self, *, state: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """``GET /v1/processes``: the caller's tenant's processes, newest first."""
        page = self._json("GET", "/v1/processes", params={"state": state, "limit": limit})
        data: list[dict[str, Any]] = page["data"]
        return data

    def process(self, pid: int) -> dict[str, Any]:
        """``GET /v1/processes/{pid}``."""
        result: dict[str, Any] = self._json("GET", f"/v1/processes/{pid}")
        return result

    def signal(self, pid: int, signal: str) -> dict[str, Any]:
        """``POST /v1/processes/{pid}/signal`` with ``suspend``, ``resume`` or ``kill``."""
        result: dict[str, Any] = self._json(
            "POST", f"/v1/processes/{pid}/signal", json={"signal": signal}
        )
        return result

    def approvals(self, *, status: str = "pending") -> list[dict[str, Any]]:
        """``GET /v1/approvals``: ``status`` is pending, approved, denied or all."""
        page = self._json("GET", "/v1/approvals", params={"status": status})
        data: list[dict[str, Any]] = page["data"]
        return data

    def decide(
        self,
        approval_id: str,
        *,
        approved: bool,
        value: Any = None,
        comment: str | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/approvals/{id}``: approve or deny; the process resumes with the answer."""
        body: dict[str, Any] = {"approved": approved, "value": value}
        if comment is not None:
            body["comment"] = comment
        result: dict[str, Any] = self._json(
            "POST", f"/v1/approvals/{quote(approval_id, safe='')}", json=body
        )
        return result

    def dead_letters(self, *, include_replayed: bool = False) -> list[dict[str, Any]]:
        """``GET /v1/events/dlq``: deliveries that failed every attempt, newest first."""
        page = self._json(
            "GET", "/v1/events/dlq", params={"include_replayed": str(include_replayed).lower()}
        )
        data: list[dict[str, Any]] = page["data"]
        return data

    def events(
        self, *, after: int | None = None, topic: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        """``GET /v1/events``: the newest published events, or those after seq ``after``."""
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        if topic is not None:
            params["topic"] = topic
        result: dict[str, Any] = self._json("GET", "/v1/events", params=params)
        return result

    def whoami(self) -> dict[str, Any]:
        """``GET /v1/whoami``: who the token stands for."""
        result: dict[str, Any] = self._json("GET", "/v1/whoami")
        return result

    def replay(self, dead_letter_id: int) -> dict[str, Any]:
        """``POST /v1/events/dlq/{id}/replay``: deliver a dead letter again."""
        result: dict[str, Any] = self._json("POST", f"/v1/events/dlq/{dead_letter_id}/replay")
        return result


__all__ = ["DEFAULT_TIMEOUT", "KernosClient", "base_url_for", "error_from_problem"]
