"""RFC 9457 problem details for every error the API returns.

``type`` is ``urn:kernos:error:<code>`` with the ``KernosError`` code (the same codes the CLI
reports, listed in ``docs/errors.md``), so a client can turn a problem back into the matching
error class. Errors that never reach the kernel (no route, bad method, missing token, a body
that fails validation) get problem JSON too, never Starlette's or FastAPI's plain JSON.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kernos.kernel.errors import InvalidInput, KernosError

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
"""Media type of every error response."""

TYPE_PREFIX = "urn:kernos:error:"
"""Prefix of a problem's ``type``; the rest is the error code."""

# Codes for HTTP-level problems that no KernosError raises.
_HTTP_CODES = {
    400: "invalid_input",
    401: "unauthenticated",
    403: "policy_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def problem(
    *,
    status: int,
    code: str,
    detail: str,
    instance: str,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """A problem+json response; ``extra`` adds extension members (such as ``errors``)."""
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + code,
        "title": title or code.replace("_", " ").capitalize(),
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if extra:
        body.update(extra)
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_CONTENT_TYPE
    )


def _instance(request: Request) -> str:
    return request.url.path


async def _kernos_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, KernosError)
    retry_after = getattr(exc, "retry_after", None)
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after else None
    return problem(
        status=exc.http_status,
        code=exc.code,
        detail=str(exc),
        instance=_instance(request),
        headers=headers,
    )


def _field(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc) or "request"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": _field(e.get("loc", ())), "message": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    listed = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(
        status=422,
        code=InvalidInput.code,
        title="Invalid request",
        detail=f"the request is invalid: {listed}",
        instance=_instance(request),
        extra={"errors": errors},
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    detail = str(exc.detail) if exc.detail is not None else phrase
    # Starlette's own "Not Found"/"Method Not Allowed" say nothing about what was asked for.
    if status == 404 and detail == phrase:
        detail = f"no route {request.method} {request.url.path}; see /docs for the API"
    elif status == 405 and detail == phrase:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return problem(
        status=status,
        code=_HTTP_CODES.get(status, "http_error" if status < 500 else "internal_error"),
        title=phrase,
        detail=detail,
        instance=_instance(request),
        headers=exc.headers,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the log only: it may hold data the caller must not see.
    log.error(
        "unhandled error in %s %s",
        request.method,
        request.url.path,
        exc_info=exc,
        extra={"path": request.url.path},
    )
    return problem(
        status=500,
        code="internal_error",
        title="Internal Server Error",
        detail="the kernel failed to handle this request; the kernel log has the details",
        instance=_instance(request),
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error response of ``app`` problem+json."""
    app.add_exception_handler(KernosError, _kernos_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


__all__ = ["PROBLEM_CONTENT_TYPE", "TYPE_PREFIX", "install_problem_handlers", "problem"]
