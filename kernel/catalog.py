"""What plugins contribute: tool and agent definitions, and the catalog that holds them.

These are plain records; the governed runtime (``KernelTool``, ``KernelChatModel``, processes)
is built on them by the kernel core. Each record is tagged with the plugin that registered it,
and a name can be registered once only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kernos.kernel.errors import DuplicateRegistration, InvalidInput

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.tools import BaseTool
    from pydantic import BaseModel

# OpenAI-style tool names (what LLM servers accept), lowercase by house rule.
_TOOL_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_AGENT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Budgets:
    """Per-process limits; ``None`` means unlimited. Enforced by the kernel."""

    max_tokens: int | None = None
    max_tool_calls: int | None = None
    max_wall_seconds: float | None = None
    max_cost: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolSpec:
    """A tool an agent can call, as registered by a plugin.

    ``func`` may be sync or async; it receives the validated arguments as keyword arguments.
    """

    name: str
    description: str
    func: Callable[..., Any]
    args_schema: type[BaseModel] | None = None
    requires_approval: bool = False
    """Ask a human before every call (the policy layer adds rules that decide this too)."""
    timeout: float | None = None
    """Seconds a call may take before it fails (default: the kernel's)."""
    plugin: str = ""

    def __post_init__(self) -> None:
        if not _TOOL_NAME.match(self.name):
            raise InvalidInput(
                f"tool name {self.name!r} must match {_TOOL_NAME.pattern} (what LLM servers accept)"
            )
        if not self.description.strip():
            raise InvalidInput(f"tool {self.name!r} needs a description: the model reads it")

    def json_schema(self) -> dict[str, Any]:
        """JSON schema of the arguments: ``args_schema``'s, or the one inferred from ``func``'s
        signature (what the governed tool validates with)."""
        from kernos.kernel.governed import args_model  # governed builds on this module

        return args_model(self).model_json_schema()


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentBuild:
    """What the kernel hands an agent's graph factory: governed tools and model."""

    tools: list[BaseTool] = field(default_factory=list)
    model: BaseChatModel | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSpec:
    """A named, versioned agent: a LangGraph graph factory plus metadata.

    ``build`` receives an ``AgentBuild`` and returns a compiled LangGraph graph (uncompiled
    builders are not accepted: the kernel attaches its checkpointer when compiling is its job).
    """

    name: str
    description: str
    build: Callable[[AgentBuild], Any]
    version: str = "1"
    tools: tuple[str, ...] = ()
    memory: tuple[str, ...] = ()
    """Shared memory collections of its tenant the agent reads and writes (names, or patterns
    ending in ``*``), besides its own private ones (``private=True``, always allowed): what
    its manifest grants when no policy line names the agent."""
    input_schema: type[BaseModel] | None = None
    priority: int = 0
    budgets: Budgets = field(default_factory=Budgets)
    plugin: str = ""

    def __post_init__(self) -> None:
        if not _AGENT_NAME.match(self.name):
            raise InvalidInput(f"agent name {self.name!r} must match {_AGENT_NAME.pattern}")

    @property
    def ref(self) -> str:
        """``name@version``, as processes record it."""
        return f"{self.name}@{self.version}"


@dataclass(slots=True)
class Catalog:
    """Tools and agents known to a kernel, by name."""

    tools: dict[str, ToolSpec] = field(default_factory=dict)
    agents: dict[str, AgentSpec] = field(default_factory=dict)

    def check_tool(self, spec: ToolSpec) -> None:
        """Raise ``DuplicateRegistration`` if another plugin already owns this tool name."""
        if spec.name in self.tools:
            owner = self.tools[spec.name].plugin
            raise DuplicateRegistration(
                f"tool {spec.name!r} from plugin {spec.plugin!r} is already registered by {owner!r}"
            )

    def check_agent(self, spec: AgentSpec) -> None:
        """Raise ``DuplicateRegistration`` if another plugin already owns this agent name."""
        if spec.name in self.agents:
            owner = self.agents[spec.name].plugin
            raise DuplicateRegistration(
                f"agent {spec.name!r} from plugin {spec.plugin!r} "
                f"is already registered by {owner!r}"
            )

    def add_tool(self, spec: ToolSpec) -> None:
        """Add a tool (see ``check_tool``)."""
        self.check_tool(spec)
        self.tools[spec.name] = spec

    def add_agent(self, spec: AgentSpec) -> None:
        """Add an agent (see ``check_agent``)."""
        self.check_agent(spec)
        self.agents[spec.name] = spec
