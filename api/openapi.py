"""The OpenAPI document, with every error response described as what the API really sends.

FastAPI documents only a route's success answer and a 422 in its own validation-error shape;
every error here is RFC 9457 problem JSON (``application/problem+json``, ``kernos.api.problems``)
and the OpenAI-compatible façade answers errors in OpenAI's shape. This fills both in for every
operation, so generated clients and schema-driven tests (Schemathesis, in the suite) see the
responses the API actually gives.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from kernos.api.problems import PROBLEM_CONTENT_TYPE

ERRORS: dict[int, str] = {
    400: "Bad request: the input is invalid for this operation.",
    401: "No valid API key (`Authorization: Bearer …`).",
    403: "The policy does not allow this principal to do this.",
    404: "Not found (or another tenant's: never confirmed).",
    409: "Conflicts with the current state.",
    413: "The request is too large.",
    422: "The request does not match this operation's schema.",
    429: "Rate limited or over budget; `Retry-After` says when to try again.",
    503: "The kernel or a backend cannot serve this now.",
}
"""Error statuses every operation may answer, and what each means."""

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `type` ends in the stable error code.",
    "type": "object",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string", "examples": ["urn:kernos:error:not_found"]},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "For 422: each invalid field.",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}

OPENAI_ERROR_SCHEMA: dict[str, Any] = {
    "title": "OpenAIError",
    "description": "An error in the shape OpenAI's clients expect.",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

_UNAUTHENTICATED = {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect"}


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` describe every operation's error responses."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = PROBLEM_SCHEMA
        schemas["OpenAIError"] = OPENAI_ERROR_SCHEMA
        for path, operations in schema.get("paths", {}).items():
            openai = path.startswith("/openai/")
            media = "application/json" if openai else PROBLEM_CONTENT_TYPE
            ref = {"$ref": "#/components/schemas/" + ("OpenAIError" if openai else "Problem")}
            statuses = {503} if path in _UNAUTHENTICATED else set(ERRORS)
            if path in ("/healthz",):
                statuses = set()
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status in sorted(statuses):
                    entry = responses.setdefault(str(status), {"description": ERRORS[status]})
                    entry["content"] = {media: {"schema": ref}}
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
