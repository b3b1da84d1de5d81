"""Kernos plugin hooks: the kernel's extension points.

Registration hooks are named ``register_*`` and receive a ``register`` callback, so the kernel
can tag each item with the plugin that gave it and refuse duplicates. Lifecycle hooks receive
the kernel. Every hook has a test and is documented in ``docs/plugins.md`` (meta-tests check
both). Later issues add their hooks here together with their tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from kernos.kernel.catalog import AgentSpec, ToolSpec
    from kernos.kernel.cli.lazy import LazyCommand
    from kernos.kernel.events import Trigger
    from kernos.kernel.kernel import Kernel
    from kernos.kernel.llm import BackendKind
    from kernos.kernel.memory import EmbedderSpec, MemoryStoreSpec
    from kernos.kernel.memory_records import GraphStoreSpec
    from kernos.kernel.model_servers import ModelServerKind

PROJECT = "kernos"
"""Pluggy project name and the entry-point group third-party plugins use."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- Registration (called when the kernel or the CLI assembles itself) ----------------------


@hookspec
def register_commands(register: Callable[[click.Command | LazyCommand], None]) -> None:
    """Add ``kernos`` CLI commands: ``register(command)`` with a click command or a LazyCommand."""


@hookspec
def register_tools(register: Callable[[ToolSpec], None]) -> None:
    """Add tools agents can call: ``register(ToolSpec(...))`` once per tool."""


@hookspec
def register_agents(register: Callable[[AgentSpec], None]) -> None:
    """Add agents (LangGraph graph factories with metadata): ``register(AgentSpec(...))``."""


@hookspec
def register_pipeline_stages(register: Callable[..., None]) -> None:
    """Add or replace syscall pipeline stages: ``register(stage, before=|after=|replace=NAME)``."""


@hookspec
def register_redactors(register: Callable[[Any], None]) -> None:
    """Add detectors of secrets or personal data for the redaction guard: ``register(detector)``
    (a ``kernos.policy.detectors.Detector``; names unique across plugins)."""


@hookspec
def register_model_checks(register: Callable[[Any], None]) -> None:
    """Add content checks every model version must pass before promotion: ``register(check)``
    with ``async check(version: ModelVersion) -> None`` that raises to refuse."""


@hookspec
def register_triggers(register: Callable[[Trigger], None]) -> None:
    """Map event patterns to agents the kernel spawns per event: ``register(Trigger(...))``."""


@hookspec
def register_event_schemas(register: Callable[[Any], None]) -> None:
    """Check the events of a topic before they are accepted: ``register(EventSchema(...))``
    (``kernos.kernel.events``); a refused event is stored and dead-lettered with the reason."""


@hookspec
def register_llm_backends(register: Callable[[BackendKind], None]) -> None:
    """Add kinds of LLM backend: ``register(BackendKind(name=..., build=...))``, where
    ``build(config)`` returns an ``LLMBackend`` (kind names unique across plugins)."""


@hookspec
def register_model_servers(register: Callable[[ModelServerKind], None]) -> None:
    """Add kinds of model server: ``register(ModelServerKind(name=..., build=...))``, where
    ``build(config)`` returns a ``ModelServer`` that runs registered models remotely (kind
    names unique across plugins; ``[[model_servers]]`` in ``kernos.toml`` picks them)."""


@hookspec
def register_memory_stores(register: Callable[[MemoryStoreSpec], None]) -> None:
    """Add long-term memory stores: ``register(MemoryStoreSpec(name=..., build=...))``, where
    ``build(settings, embedder)`` returns a ``MemoryStore``; ``KERNOS_MEMORY_STORE`` picks one."""


@hookspec
def register_embedders(register: Callable[[EmbedderSpec], None]) -> None:
    """Add text embedders: ``register(EmbedderSpec(name=..., build=...))``, where
    ``build(settings)`` returns an ``Embedder``; ``KERNOS_MEMORY_EMBEDDER`` picks one."""


@hookspec
def register_graph_stores(register: Callable[[GraphStoreSpec], None]) -> None:
    """Add LangGraph stores for agent graphs: ``register(GraphStoreSpec(name=..., build=...))``,
    where ``build(kernel)`` returns a ``BaseStore``; ``KERNOS_GRAPH_STORE`` picks one."""


# -- Lifecycle --------------------------------------------------------------------------------


@hookspec
def on_startup(kernel: Kernel) -> Awaitable[None] | None:
    """Called once the kernel's storage is ready, before it serves; may be a coroutine."""


@hookspec
def on_shutdown(kernel: Kernel) -> Awaitable[None] | None:
    """Called when the kernel stops, before storage closes; may be a coroutine."""
