"""Example Kernos plugin: a greeting tool, an agent that uses it, and a CLI command."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

import click
from pydantic import BaseModel, Field

from kernos.plugins import AgentBuild, AgentSpec, Budgets, ToolSpec, hookimpl


class GreetArgs(BaseModel):
    """Arguments of ``hello_greet``."""

    name: str = Field(min_length=1, max_length=100, description="Who to greet.")


def greet(name: str) -> str:
    """Return a greeting for ``name``."""
    return f"Hello, {name}!"


class HelloState(TypedDict, total=False):
    """State of the ``hello`` agent's graph."""

    name: str
    greeting: str


def build_hello_agent(build: AgentBuild) -> Any:
    """A one-node LangGraph graph that asks the governed ``hello_greet`` tool for a greeting."""
    from langgraph.graph import END, START, StateGraph

    tool = next(t for t in build.tools if t.name == "hello_greet")

    async def say_hello(state: HelloState) -> HelloState:
        return {"greeting": str(await tool.ainvoke({"name": state["name"]}))}

    graph = StateGraph(HelloState)
    graph.add_node("say_hello", say_hello)
    graph.add_edge(START, "say_hello")
    graph.add_edge("say_hello", END)
    return graph.compile()


@hookimpl
def register_tools(register: Callable[[ToolSpec], None]) -> None:
    """Contribute ``hello_greet``."""
    register(
        ToolSpec(
            name="hello_greet",
            description="Greet a person by name.",
            func=greet,
            args_schema=GreetArgs,
        )
    )


@hookimpl
def register_agents(register: Callable[[AgentSpec], None]) -> None:
    """Contribute the ``hello`` agent."""
    register(
        AgentSpec(
            name="hello",
            description="Greets whoever it is given, through the hello_greet tool.",
            build=build_hello_agent,
            tools=("hello_greet",),
            budgets=Budgets(max_tool_calls=1),
        )
    )


@click.command("hello")
@click.argument("name")
def hello_command(name: str) -> None:
    """Print a greeting (from the kernos-hello example plugin)."""
    click.echo(greet(name))


@hookimpl
def register_commands(register: Callable[[click.Command], None]) -> None:
    """Contribute ``kernos hello NAME``."""
    register(hello_command)
