"""The operator agent: the console's chat answers free text with it.

A LangGraph prebuilt tool-calling agent on the kernel's governed chat model, with the
operator tools of :mod:`kernos.tools.operator`. It runs as a process owned by the operator who
asked, so every tool call is authorized for that person, audited, and (for ``kill_process``)
approved by a human before it runs. The console sends the conversation so far as
``{"messages": [...]}``; the answer is the last AI message of the process's output.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from kernos.kernel.catalog import AgentBuild, AgentSpec, Budgets
from kernos.tools.operator import OPERATOR_TOOLS

SYSTEM_PROMPT = (
    "You are the operator assistant of Kernos, a kernel that runs LLM agents as processes. "
    "Answer the operator's questions about processes with the tools (list_processes, "
    "describe_process) rather than guessing, and keep answers short. When the operator asks "
    "for an action, call the tool for it (suspend_process, resume_process, kill_process) with "
    "a one-sentence reason; killing waits for a human's approval, so say that it was proposed. "
    "Never act on a process the operator did not ask about."
)


class Message(BaseModel):
    """One turn of the operator's conversation."""

    role: Literal["user", "assistant"]
    content: str = Field(min_length=1, max_length=8_000)


class OperatorRequest(BaseModel):
    """The operator agent's input: the conversation so far, the newest turn last."""

    messages: list[Message] = Field(min_length=1, max_length=100)


def build_operator(build: AgentBuild) -> Any:
    """The prebuilt tool-calling agent with the operator prompt."""
    import warnings

    from langgraph.prebuilt import create_react_agent

    if build.model is None:  # pragma: no cover - the kernel always hands a model
        raise RuntimeError("the operator agent needs a chat model")
    with warnings.catch_warnings():
        # LangGraph 1.x points to langchain's create_agent; langchain is not a dependency of
        # ours, and the prebuilt agent stays until LangGraph 2.
        warnings.simplefilter("ignore", DeprecationWarning)
        return create_react_agent(build.model, build.tools, prompt=SYSTEM_PROMPT)


OPERATOR_AGENT = AgentSpec(
    name="operator",
    description="Answers operator requests in the console's chat; proposes governed actions.",
    build=build_operator,
    tools=tuple(spec.name for spec in OPERATOR_TOOLS),
    input_schema=OperatorRequest,
    budgets=Budgets(max_tool_calls=20),
)
"""The ``operator`` agent spec."""

__all__ = ["OPERATOR_AGENT", "SYSTEM_PROMPT", "OperatorRequest", "build_operator"]
