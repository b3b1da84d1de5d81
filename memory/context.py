"""Context management for long-running agents: keep a conversation within a token budget.

* ``trim_to_budget`` drops the oldest messages (LangChain's ``trim_messages``, strategy
  ``last``): the leading system message stays, and the kept history starts at a human
  message, so a tool result is never kept without the AI message that called it (pairs are
  cut only at the start, and never in two).
* ``summarize_to_budget`` replaces the oldest span with a summary written by the agent's
  chat model: inside a Kernos process that is the governed ``KernelChatModel``, so the
  summary is an ``llm.chat`` syscall (authorized, budgeted, journalled and replayed like any
  other). Without a configured backend, or if it is unavailable, it trims instead.
* ``context_hook`` packages either as a LangGraph prebuilt agent's ``pre_model_hook``:
  ``create_react_agent(model, tools, pre_model_hook=context_hook(4000, model=model))``.

Token counting: ``count_tokens_approximately`` (LangChain's: about four characters a token,
plus a few per message) by default. The serving model's own tokenizer is usually not at
hand (a remote backend, or none offline), and the MiniLM tokenizer shipped in
``kernos.memory`` is a WordPiece vocabulary of a different model, so it is not more accurate
for the chat model than the approximation while costing a tokenizer load and a pass over every
message; keep headroom under the model's window, or pass ``token_counter`` (any
``Callable[[list[BaseMessage]], int]``, or a LangChain model's ``get_num_tokens_from_messages``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AnyMessage,
    BaseMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    get_buffer_string,
)
from langchain_core.messages.utils import count_tokens_approximately, trim_messages

from kernos.kernel.errors import BackendUnavailable, InvalidInput

log = logging.getLogger(__name__)

TokenCounter = Callable[[list[BaseMessage]], int]
"""Counts the tokens of a list of messages."""

SUMMARY_PROMPT = (
    "You condense the earlier part of a conversation between a user and an AI agent. Write "
    "a short summary that keeps every fact, decision, open question, name, number and tool "
    "result the agent may still need. Write only the summary."
)
SUMMARY_PREFIX = "Summary of the earlier conversation:\n"
_REMOVE_ALL = "__remove_all__"  # langgraph.graph.message.REMOVE_ALL_MESSAGES


def trim_to_budget(
    messages: Sequence[BaseMessage],
    max_tokens: int,
    *,
    token_counter: TokenCounter = count_tokens_approximately,
) -> list[BaseMessage]:
    """The most recent messages that fit in ``max_tokens``, after the leading system message
    (kept whatever it costs); the kept history starts at a human message."""
    if max_tokens < 1:
        raise InvalidInput(f"a token budget must be positive, got {max_tokens}")
    messages = list(messages)
    if token_counter(messages) <= max_tokens:
        return messages
    return trim_messages(
        messages,
        max_tokens=max_tokens,
        token_counter=token_counter,
        strategy="last",
        include_system=True,
        start_on="human",
        allow_partial=False,
    )


async def summarize_to_budget(
    messages: Sequence[BaseMessage],
    max_tokens: int,
    *,
    model: BaseChatModel | None,
    token_counter: TokenCounter = count_tokens_approximately,
    summary_tokens: int = 256,
    prompt: str = SUMMARY_PROMPT,
) -> list[BaseMessage]:
    """``messages`` within ``max_tokens``: the leading system message, a summary of the
    oldest span, and the most recent messages that fit in what the summary leaves.

    The summary is added to the system message (one system message, first: what every chat
    template accepts). ``summary_tokens`` is what the summary may use (the model is asked for
    at most that many). With no ``model``, a model without a backend, or a backend that is
    unavailable, the oldest span is dropped instead (``trim_to_budget``); a policy denial or
    an exhausted budget is raised as it is.
    """
    messages = list(messages)
    if token_counter(messages) <= max_tokens:
        return messages
    if model is None or getattr(model, "model_name", None) == "none":
        return trim_to_budget(messages, max_tokens, token_counter=token_counter)
    system = messages[0] if messages and isinstance(messages[0], SystemMessage) else None
    rest = messages[1:] if system is not None else messages
    head: list[BaseMessage] = [system] if system is not None else []
    room = max_tokens - summary_tokens - (token_counter(head) if head else 0)
    if room < 1:
        raise InvalidInput(
            f"a budget of {max_tokens} tokens leaves no room for messages after the system "
            f"message and a {summary_tokens}-token summary"
        )
    kept = trim_to_budget(rest, room, token_counter=token_counter)
    older = rest[: len(rest) - len(kept)]
    if not older:  # one message alone exceeds the room: nothing to summarize
        return trim_to_budget(messages, max_tokens, token_counter=token_counter)
    try:
        reply = await model.ainvoke(
            [SystemMessage(content=prompt), HumanMessage(content=get_buffer_string(older))],
            max_tokens=summary_tokens,
        )
    except BackendUnavailable as exc:
        log.warning("no summary (%s); trimming the conversation instead", exc)
        return trim_to_budget(messages, max_tokens, token_counter=token_counter)
    summary = SUMMARY_PREFIX + str(reply.text).strip()
    if system is not None:
        text = system.text
        merged: BaseMessage = SystemMessage(content=f"{text}\n\n{summary}" if text else summary)
    else:
        merged = SystemMessage(content=summary)
    return trim_to_budget([merged, *kept], max_tokens, token_counter=token_counter)


def context_hook(
    max_tokens: int,
    *,
    model: BaseChatModel | None = None,
    token_counter: TokenCounter = count_tokens_approximately,
    summary_tokens: int = 256,
    replace_history: bool = False,
) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
    """A ``pre_model_hook`` for LangGraph's prebuilt agents that keeps what the model sees
    within ``max_tokens``: summarized with ``model`` (the agent's governed model) when given,
    else trimmed.

    By default the graph's history is left whole and only the model's input is cut
    (``llm_input_messages``). With ``replace_history``, the history itself is replaced by the
    cut version, so a summary is written once and kept in the checkpoint instead of being
    asked for again before every model call.
    """

    async def hook(state: dict[str, Any]) -> dict[str, Any]:
        messages: list[AnyMessage] = list(state.get("messages") or [])
        if model is None:
            kept = trim_to_budget(messages, max_tokens, token_counter=token_counter)
        else:
            kept = await summarize_to_budget(
                messages,
                max_tokens,
                model=model,
                token_counter=token_counter,
                summary_tokens=summary_tokens,
            )
        if replace_history:
            if kept == messages:
                return {}
            return {"messages": [RemoveMessage(id=_REMOVE_ALL), *kept]}
        return {"llm_input_messages": kept}

    return hook


__all__ = [
    "SUMMARY_PREFIX",
    "SUMMARY_PROMPT",
    "TokenCounter",
    "context_hook",
    "summarize_to_budget",
    "trim_to_budget",
]
