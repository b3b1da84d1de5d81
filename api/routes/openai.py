"""The OpenAI-compatible façade: ``/openai/v1/chat/completions`` and ``/openai/v1/models``.

``model`` names a Kernos agent that takes chat messages (a LangGraph ``MessagesState`` graph,
such as the prebuilt tool-calling agent). Each completion is a governed process run as the
caller: authorized (``spawn`` on ``agent:NAME``), audited, budgeted, with every model and tool
call a syscall. The answer is the run's last message. With ``stream: true`` the answer comes
as ``chat.completion.chunk`` server-sent events ending in ``data: [DONE]``; the chunks are sent
once the run has finished (the run's own model calls are not streamed through yet). Errors are
OpenAI-shaped (``{"error": {"message", "type", "code"}}``) so OpenAI clients raise their usual
exceptions.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from kernos.api.deps import CurrentPrincipal, KernelDep, ProcessesDep, allowed
from kernos.kernel.errors import KernosError
from kernos.kernel.identity import Principal
from kernos.kernel.processes import TERMINAL, ProcessState

router = APIRouter(prefix="/openai/v1", tags=["openai"])

MAX_WAIT_SECONDS = 300.0
"""Longest a completion waits for its run."""


class ChatMessage(BaseModel):
    """One message of the conversation (OpenAI's shape; extra fields are kept out)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """``POST /openai/v1/chat/completions`` (sampling options are accepted and ignored: the
    agent decides how its models are called)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=64, description="The agent to run.")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    user: str | None = None


def _openai_error(status: int, message: str, kind: str, code: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": code}},
        status_code=status,
    )


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _answer(output: dict[str, Any] | None) -> str:
    messages = (output or {}).get("messages") or []
    for message in reversed(messages):
        data = message.get("data", message) if isinstance(message, dict) else {}
        if message.get("type") in ("ai", "AIMessageChunk") or data.get("type") == "ai":
            return _text(data.get("content"))
    return ""


@router.get("/models", summary="List agents as models")
async def list_models(
    principal: Annotated[Principal, allowed("agent:*", "read")], kernel: KernelDep
) -> dict[str, Any]:
    """Every installed agent, as an OpenAI model whose id is the agent's name."""
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": spec.plugin or "kernos"}
            for name, spec in sorted(kernel.catalog.agents.items())
        ],
    }


@router.post("/chat/completions", summary="Run an agent as a chat completion", response_model=None)
async def chat_completions(
    body: ChatRequest,
    request: Request,
    principal: CurrentPrincipal,
    processes: ProcessesDep,
) -> JSONResponse | StreamingResponse:
    """Start a process of the agent ``model`` with the messages, wait for it, answer with its
    last message (and the run's token usage)."""
    messages = [{"role": m.role, "content": _text(m.content)} for m in body.messages]
    try:
        info = await processes.spawn(body.model, {"messages": messages}, principal=principal)
        info = await processes.wait(
            info.pid, timeout=MAX_WAIT_SECONDS, until=TERMINAL | {ProcessState.WAITING}
        )
    except KernosError as exc:
        kind = {403: "permission_error", 404: "invalid_request_error"}.get(
            exc.http_status, "api_error"
        )
        code = "model_not_found" if exc.http_status == 404 else exc.code
        return _openai_error(exc.http_status, str(exc), kind, code)
    if info.state is ProcessState.WAITING:
        return _openai_error(
            409,
            f"process {info.pid} is waiting for a human (kernos approvals list); "
            f"follow it at /v1/processes/{info.pid}",
            "conflict_error",
            "waiting_for_human",
        )
    if info.state is not ProcessState.DONE:
        error = info.error or {}
        return _openai_error(
            500 if error.get("code") != "policy_denied" else 403,
            f"process {info.pid} {info.state.value}: {error.get('message', 'no answer')}",
            "api_error",
            str(error.get("code", info.state.value)),
        )
    answer = _answer(info.output)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    usage = {
        "prompt_tokens": info.usage.input_tokens,
        "completion_tokens": info.usage.output_tokens,
        "total_tokens": info.usage.input_tokens + info.usage.output_tokens,
    }
    headers = {"X-Kernos-Pid": str(info.pid)}
    if not body.stream:
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": body.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            },
            headers=headers,
        )

    async def chunks() -> AsyncIterator[str]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            data = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(data)}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        words = answer.split(" ")
        for i, word in enumerate(words):
            yield chunk({"content": word if i == 0 else " " + word})
        yield chunk({}, "stop")
        yield "data: [DONE]\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream", headers=headers)
