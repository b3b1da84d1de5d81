"""LangChain ⇄ OpenAI wire shapes, for ``KernelChatModel``'s path through the LLM scheduler.

LangChain messages and bound tools become a ``ChatRequest`` (``convert_to_openai_messages``,
``convert_to_openai_tool``); a ``ChatResponse`` becomes an ``AIMessage`` with ``tool_calls``
(arguments parsed from their JSON; unparseable ones land in ``invalid_tool_calls``) and
``usage_metadata``; a streamed ``ChatChunk`` becomes an ``AIMessageChunk`` with
``tool_call_chunks``, which LangChain adds up into the final message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    InvalidToolCall,
    ToolCall,
    ToolCallChunk,
    convert_to_openai_messages,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.utils.function_calling import convert_to_openai_tool

from kernos.kernel.llm import ChatChunk, ChatRequest, ChatResponse

_OPENAI_CHOICES = ("auto", "none", "required")


def openai_tool_choice(choice: Any) -> str | dict[str, Any] | None:
    """LangChain's ``tool_choice`` (``"any"``, ``True``, a tool name, a dict) in OpenAI form."""
    if choice is None or isinstance(choice, dict):
        return choice
    if choice is True or choice == "any":
        return "required"
    if choice is False:
        return "none"
    if isinstance(choice, str):
        if choice in _OPENAI_CHOICES:
            return choice
        return {"type": "function", "function": {"name": choice}}
    raise ValueError(f"unsupported tool_choice {choice!r}")


def chat_request(
    messages: Sequence[BaseMessage],
    *,
    tools: Sequence[Any] = (),
    tool_choice: Any = None,
    stop: list[str] | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    model: str | None = None,
) -> ChatRequest:
    """The ``ChatRequest`` for LangChain ``messages`` with ``tools`` bound (any tool form
    ``convert_to_openai_tool`` takes: ``BaseTool``, function, pydantic model, OpenAI dict)."""
    converted = convert_to_openai_messages(list(messages))
    openai_tools = [convert_to_openai_tool(tool) for tool in tools] or None
    return ChatRequest(
        messages=converted if isinstance(converted, list) else [converted],
        model=model,
        tools=openai_tools,
        tool_choice=openai_tool_choice(tool_choice) if openai_tools else None,
        max_tokens=max_tokens,
        temperature=temperature,
        stop=stop,
    )


def _usage(input_tokens: int, output_tokens: int) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )


def ai_message(response: ChatResponse) -> AIMessage:
    """The ``AIMessage`` of an answer, with its tool calls, usage and where it came from."""
    message = response.message
    calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    for raw in message.get("tool_calls") or []:
        function = raw.get("function") or {}
        name = function.get("name")
        arguments = function.get("arguments") or "{}"
        try:
            args = json.loads(arguments) if isinstance(arguments, str) else arguments
            if not isinstance(args, dict):
                raise ValueError("tool arguments must be a JSON object")
        except ValueError as exc:
            invalid.append(
                InvalidToolCall(
                    name=name,
                    args=arguments if isinstance(arguments, str) else json.dumps(arguments),
                    id=raw.get("id"),
                    error=str(exc),
                    type="invalid_tool_call",
                )
            )
            continue
        calls.append(ToolCall(name=name or "", args=args, id=raw.get("id"), type="tool_call"))
    return AIMessage(
        content=message.get("content") or "",
        tool_calls=calls,
        invalid_tool_calls=invalid,
        usage_metadata=_usage(response.input_tokens, response.output_tokens),
        response_metadata={
            "model_name": response.model,
            "finish_reason": response.finish_reason,
            "kernos_backend": response.backend,
        },
    )


def message_chunk(chunk: ChatChunk, *, message_id: str | None = None) -> AIMessageChunk:
    """The ``AIMessageChunk`` of a streamed piece (OpenAI ``delta`` tool-call shapes)."""
    tool_chunks = [
        ToolCallChunk(
            name=(delta.get("function") or {}).get("name"),
            args=(delta.get("function") or {}).get("arguments"),
            id=delta.get("id"),
            index=delta.get("index"),
            type="tool_call_chunk",
        )
        for delta in chunk.tool_calls
    ]
    usage = None
    if chunk.input_tokens is not None or chunk.output_tokens is not None:
        usage = _usage(chunk.input_tokens or 0, chunk.output_tokens or 0)
    metadata = {"finish_reason": chunk.finish_reason} if chunk.finish_reason else {}
    return AIMessageChunk(
        content=chunk.content,
        tool_call_chunks=tool_chunks,
        usage_metadata=usage,
        response_metadata=metadata,
        id=message_id,
    )
