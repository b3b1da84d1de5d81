"""Loading plugins and calling their hooks, one plugin at a time.

Built-in plugins are modules named by their import path (the way pytest loads its own) and go
through exactly the same path as third-party plugins found through the ``kernos`` entry-point
group. *Essential* built-ins (the ones that implement the policy, audit and storage stages)
cannot be disabled, and any failure of theirs aborts startup with ``EssentialPluginError``.
Any other plugin that fails to import, implements an unknown hook or raises in a hook is
reported by name and skipped, and whatever it registered in that hook is dropped.
``KERNOS_LOAD_PLUGINS`` restricts which non-essential plugins load.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from kernos.kernel import hookspecs, kernos_version
from kernos.kernel.catalog import AgentSpec, Catalog, ToolSpec
from kernos.kernel.errors import (
    DuplicateRegistration,
    EssentialPluginError,
    InvalidInput,
    PluginError,
)

if TYPE_CHECKING:
    import click

    from kernos.kernel.cli.lazy import LazyCommand
    from kernos.kernel.events import EventSchema, Trigger
    from kernos.kernel.kernel import Kernel
    from kernos.kernel.llm import BackendKind
    from kernos.kernel.memory import EmbedderSpec, MemoryStoreSpec
    from kernos.kernel.memory_records import GraphStoreSpec
    from kernos.kernel.model_servers import ModelServerKind
    from kernos.kernel.syscalls import Provider, Stage

log = logging.getLogger(__name__)


def parse_plugin_list(value: str | None) -> list[str] | None:
    """Parse a ``KERNOS_LOAD_PLUGINS``-style comma list; ``None`` means no restriction."""
    if value is None:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


@dataclass(frozen=True, slots=True)
class Builtin:
    """A first-party plugin named by module path."""

    module: str
    essential: bool = False


BUILTIN_PLUGINS: tuple[Builtin, ...] = (
    # The kernel's own CLI commands: without them there is no `kernos up`.
    Builtin("kernos.kernel.cli.commands", essential=True),
    Builtin("kernos.api.plugin", essential=True),
    # Casbin authorization, the hash-chained audit log, API keys, redaction: deny by default.
    Builtin("kernos.policy.plugin", essential=True),
    # Long-term memory: ChromaDB and offline MiniLM embeddings (built only when first used).
    Builtin("kernos.memory.plugin", essential=True),
    # LLM backend kinds: OpenAI-compatible servers, vLLM, and the labelled simulation.
    Builtin("kernos.plugins.llm_backends"),
    # City-ops routing: fill forecasts and OR-Tools route plans as governed tools.
    Builtin("kernos.plugins.routing.plugin"),
    # Built-in agents: the operator agent behind the console's chat, with its tools.
    Builtin("kernos.agents.plugin"),
    # The hazard classifier tool (an ONNX model from the registry).
    Builtin("kernos.plugins.hazard.plugin"),
    # KServe v2 model servers (Triton, MLServer) for registered classic models: kind `triton`.
    Builtin("kernos.plugins.triton"),
    # The schema of the simulated city's sensor readings (malformed ones are dead-lettered).
    Builtin("kernos.plugins.sensors.plugin"),
    # The city-ops scenario: bin board, fleet, dispatcher agent, `kernos demo waste`.
    Builtin("kernos.plugins.city.plugin"),
    # `kernos console`: the Textual operator console (Textual loads only when it runs).
    Builtin("kernos.tui.plugin"),
)
"""First-party plugins, loaded in this order before any third-party plugin."""

Status = Literal["loaded", "failed", "disabled"]


@dataclass(slots=True)
class PluginInfo:
    """What ``kernos plugins list`` shows for one plugin."""

    name: str
    version: str
    source: Literal["builtin", "entrypoint", "inline"]
    essential: bool
    status: Status = "loaded"
    error: str | None = None
    hooks: list[str] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "essential": self.essential,
            "status": self.status,
            "error": self.error,
            "hooks": self.hooks,
            "tools": self.tools,
            "agents": self.agents,
            "commands": self.commands,
        }


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class PluginManager:
    """Finds, loads and calls Kernos plugins. Build a fresh one per kernel (and per test)."""

    def __init__(
        self,
        *,
        load_plugins: Iterable[str] | None = None,
        builtins: Iterable[Builtin] | None = None,
        entry_points: bool = True,
    ) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._allowed = None if load_plugins is None else set(load_plugins)
        self._builtins = tuple(BUILTIN_PLUGINS if builtins is None else builtins)
        self._use_entry_points = entry_points
        self._infos: dict[str, PluginInfo] = {}
        self._loaded = False

    # -- Loading ----------------------------------------------------------------------------

    @property
    def hook(self) -> Any:
        """pluggy's hook relay, for callers that need a hook's plain multi-call semantics."""
        return self._pm.hook

    def load(self) -> None:
        """Load built-ins, then entry-point plugins; validate hook names. Idempotent."""
        if self._loaded:
            return
        self._loaded = True
        version = kernos_version()
        for builtin in self._builtins:
            self._load_one(
                builtin.module,
                lambda m=builtin.module: importlib.import_module(m),  # type: ignore[misc]
                version=version,
                source="builtin",
                essential=builtin.essential,
            )
        if self._use_entry_points:
            for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT):
                dist_version = ep.dist.version if ep.dist is not None else "unknown"
                self._load_one(ep.name, ep.load, version=dist_version, source="entrypoint")
        self._validate()

    def add(self, plugin: object, *, name: str, essential: bool = False) -> None:
        """Register an in-process plugin object or module (tests, embedding code)."""
        self._load_one(name, lambda: plugin, version="inline", source="inline", essential=essential)
        self._validate()

    def _load_one(
        self,
        name: str,
        loader: Callable[[], object],
        *,
        version: str,
        source: Literal["builtin", "entrypoint", "inline"],
        essential: bool = False,
    ) -> None:
        if name in self._infos:
            if essential or self._infos[name].essential:
                raise DuplicateRegistration(f"two plugins are named {name!r}; rename one")
            # Two installed distributions claim one name: keep the first, report the second.
            log.warning("skipping a second plugin named %r (%s %s)", name, source, version)
            return
        info = PluginInfo(name=name, version=version, source=source, essential=essential)
        self._infos[name] = info
        if not essential and self._allowed is not None and name not in self._allowed:
            info.status = "disabled"
            return
        try:
            plugin = loader()
            self._pm.register(plugin, name=name)
        except Exception as exc:
            self._fail(info, f"could not be loaded: {_describe(exc)}", exc)
            return
        info.hooks = sorted(c.name for c in self._pm.get_hookcallers(plugin) or [])

    def _validate(self) -> None:
        """Fail plugins that implement hooks Kernos does not define (usually a typo)."""
        for hook_name in dir(self._pm.hook):
            caller = getattr(self._pm.hook, hook_name)
            if hook_name.startswith("_") or not isinstance(caller, pluggy.HookCaller):
                continue
            if caller.spec is not None:
                continue
            for impl in caller.get_hookimpls():
                info = self._infos[impl.plugin_name]
                self._fail(info, f"implements unknown hook {hook_name!r}; is it misspelled?", None)
        self._pm.check_pending()

    def _fail(self, info: PluginInfo, reason: str, exc: BaseException | None) -> None:
        message = f"plugin {info.name!r} {reason}"
        if info.essential:
            raise EssentialPluginError(
                f"essential {message}; the kernel cannot start without it. "
                "Reinstall Kernos or fix the plugin."
            ) from exc
        log.warning("skipping %s", message, extra={"plugin": info.name})
        info.status = "failed"
        info.error = reason
        if self._pm.has_plugin(info.name):
            self._pm.unregister(name=info.name)

    # -- Calling hooks, one plugin at a time ------------------------------------------------

    def _impls(self, hook_name: str) -> list[pluggy.HookImpl]:
        caller: pluggy.HookCaller = getattr(self._pm.hook, hook_name)
        # get_hookimpls() is in registration order (pluggy *calls* them in reverse); we call
        # one plugin at a time in load order, so built-ins come first.
        return list(caller.get_hookimpls())

    def _collect(
        self, hook_name: str, add: Callable[[str, Any], None], check: Callable[[Any], None]
    ) -> None:
        """Call a ``register_*`` hook per plugin; keep a plugin's items only if it succeeds."""
        self.load()
        for impl in self._impls(hook_name):
            info = self._infos[impl.plugin_name]
            staged: list[Any] = []

            def register(item: Any, _staged: list[Any] = staged, **where: Any) -> None:
                _staged.append((item, where) if where else item)

            try:
                impl.function(**({"register": register} if "register" in impl.argnames else {}))
                tagged = [self._tag(item, info.name) for item in staged]
                for item in tagged:
                    check(item)
            except Exception as exc:
                self._fail(info, f"failed in {hook_name}: {_describe(exc)}", exc)
                continue
            for item in tagged:
                add(info.name, item)

    @staticmethod
    def _tag(item: Any, plugin: str) -> Any:
        # kernos.kernel.llm (pydantic) is imported only once something needs backends, and
        # `kernos --help` collects commands through here: look, don't import.
        llm = sys.modules.get("kernos.kernel.llm")
        if isinstance(item, ToolSpec | AgentSpec) or (
            llm is not None and isinstance(item, llm.BackendKind)
        ):
            return _replace_plugin(item, plugin)
        return item

    def catalog(self) -> Catalog:
        """Collect every plugin's tools and agents into a new ``Catalog``."""
        catalog = Catalog()
        tools: list[ToolSpec] = []
        agents: list[AgentSpec] = []

        def check_tool(item: Any) -> None:
            if not isinstance(item, ToolSpec):
                raise InvalidInput(f"register_tools expects ToolSpec, got {type(item).__name__}")
            catalog.check_tool(item)
            if any(t.name == item.name for t in tools):
                raise DuplicateRegistration(f"tool {item.name!r} registered twice")

        def add_tool(plugin: str, item: ToolSpec) -> None:
            tools.append(item)
            catalog.add_tool(item)
            self._infos[plugin].tools.append(item.name)

        def check_agent(item: Any) -> None:
            if not isinstance(item, AgentSpec):
                raise InvalidInput(f"register_agents expects AgentSpec, got {type(item).__name__}")
            catalog.check_agent(item)
            if any(a.name == item.name for a in agents):
                raise DuplicateRegistration(f"agent {item.name!r} registered twice")

        def add_agent(plugin: str, item: AgentSpec) -> None:
            agents.append(item)
            catalog.add_agent(item)
            self._infos[plugin].agents.append(item.name)

        for info in self._infos.values():
            info.tools.clear()
            info.agents.clear()
        self._collect("register_tools", add_tool, check_tool)
        self._collect("register_agents", add_agent, check_agent)
        # A plugin that failed in one hook is out entirely, with what it gave in the others.
        failed = {i.name for i in self._infos.values() if i.status == "failed"}
        catalog.tools = {n: t for n, t in catalog.tools.items() if t.plugin not in failed}
        catalog.agents = {n: a for n, a in catalog.agents.items() if a.plugin not in failed}
        return catalog

    def commands(self) -> dict[str, click.Command | LazyCommand]:
        """Collect every plugin's CLI commands by name."""
        import click

        from kernos.kernel.cli.lazy import LazyCommand

        found: dict[str, click.Command | LazyCommand] = {}
        owners: dict[str, str] = {}

        def check(item: Any) -> None:
            if not isinstance(item, click.Command | LazyCommand) or not item.name:
                raise InvalidInput("register_commands expects a named click command or LazyCommand")
            if item.name in found:
                raise DuplicateRegistration(
                    f"command {item.name!r} is already registered by {owners[item.name]!r}"
                )

        def add(plugin: str, item: click.Command | LazyCommand) -> None:
            assert item.name is not None
            found[item.name] = item
            owners[item.name] = plugin
            self._infos[plugin].commands.append(item.name)

        for info in self._infos.values():
            info.commands.clear()
        self._collect("register_commands", add, check)
        return found

    def pipeline_stages(self) -> list[tuple[Stage, dict[str, str]]]:
        """Collect the syscall pipeline stages plugins add, with where each goes."""
        from kernos.kernel.syscalls import Provider, Stage

        found: list[tuple[Stage, dict[str, str]]] = []

        def check(item: Any) -> None:
            if isinstance(item, Provider):
                return  # collected by pipeline_providers()
            stage, where = item if isinstance(item, tuple) else (item, {})
            if not isinstance(stage, Stage):
                raise InvalidInput(f"register_pipeline_stages expects a Stage, got {stage!r}")
            if len(where) != 1 or next(iter(where)) not in ("before", "after", "replace"):
                raise InvalidInput(
                    f"stage {stage.name!r} needs exactly one of before=, after=, replace="
                )

        def add(plugin: str, item: Any) -> None:
            if not isinstance(item, Provider):
                found.append(item if isinstance(item, tuple) else (item, {}))

        self._collect("register_pipeline_stages", add, check)
        return found

    def pipeline_providers(self) -> list[tuple[str, Provider]]:
        """The providers plugins register (authorizer, audit sink, stages), with their plugin.

        One plugin at most provides the authorizer, and one the audit sink.
        """
        from kernos.kernel.syscalls import Provider

        found: list[tuple[str, Provider]] = []

        def check(item: Any) -> None:
            if not isinstance(item, Provider):
                return
            if item.slot == "stage":
                if len(item.where) != 1 or next(iter(item.where)) not in (
                    "before",
                    "after",
                    "replace",
                ):
                    raise InvalidInput(
                        "a stage provider needs exactly one of before=, after=, replace="
                    )
                return
            for plugin, earlier in found:
                if earlier.slot == item.slot:
                    raise DuplicateRegistration(
                        f"the pipeline's {item.slot} is already provided by plugin {plugin!r}"
                    )

        def add(plugin: str, item: Any) -> None:
            if isinstance(item, Provider):
                found.append((plugin, item))

        self._collect("register_pipeline_stages", add, check)
        return found

    def redactors(self) -> list[Any]:
        """Collect the detectors plugins add to the redaction guard (names unique)."""
        found: list[Any] = []

        def check(item: Any) -> None:
            if not callable(getattr(item, "find", None)) or not isinstance(
                getattr(item, "name", None), str
            ):
                raise InvalidInput(
                    f"register_redactors expects a Detector (with .name and .find), got {item!r}"
                )
            if any(d.name == item.name for d in found):
                raise DuplicateRegistration(f"detector {item.name!r} registered twice")

        def add(plugin: str, item: Any) -> None:
            found.append(item)

        self._collect("register_redactors", add, check)
        failed = {i.name for i in self._infos.values() if i.status == "failed"}
        return [d for d in found if getattr(d, "plugin", "") not in failed]

    def model_checks(self) -> list[Any]:
        """Collect the content checks plugins add to model promotion."""
        found: list[Any] = []

        def check(item: Any) -> None:
            if not callable(item):
                raise InvalidInput(f"register_model_checks expects an async callable, got {item!r}")

        def add(plugin: str, item: Any) -> None:
            found.append(item)

        self._collect("register_model_checks", add, check)
        return found

    def event_schemas(self) -> list[EventSchema]:
        """Collect every plugin's event schemas (one per topic across plugins), tagged with
        their plugin."""
        from dataclasses import replace

        from kernos.kernel.events import EventSchema

        found: list[EventSchema] = []

        def check(item: Any) -> None:
            if not isinstance(item, EventSchema):
                raise InvalidInput(
                    f"register_event_schemas expects EventSchema, got {type(item).__name__}"
                )
            if any(s.topic == item.topic for s in found):
                raise DuplicateRegistration(f"topic {item.topic!r} has two event schemas")

        def add(plugin: str, item: EventSchema) -> None:
            found.append(replace(item, plugin=plugin))

        self._collect("register_event_schemas", add, check)
        failed = {info.name for info in self.failures()}
        return [s for s in found if s.plugin not in failed]

    def triggers(self) -> list[Trigger]:
        """Collect every plugin's event triggers (names unique across plugins)."""
        from kernos.kernel.events import Trigger

        found: list[Trigger] = []

        def check(item: Any) -> None:
            if not isinstance(item, Trigger):
                raise InvalidInput(f"register_triggers expects Trigger, got {type(item).__name__}")
            if any(t.name == item.name for t in found):
                raise DuplicateRegistration(f"trigger {item.name!r} registered twice")

        def add(plugin: str, item: Trigger) -> None:
            found.append(_replace_trigger_plugin(item, plugin))

        self._collect("register_triggers", add, check)
        # A plugin that failed in any hook is out entirely, with the triggers it gave.
        failed = {i.name for i in self._infos.values() if i.status == "failed"}
        return [t for t in found if t.plugin not in failed]

    def llm_backend_kinds(self) -> dict[str, BackendKind]:
        """Collect the LLM backend kinds plugins register, by name (unique across plugins),
        each tagged with its plugin."""
        from kernos.kernel.llm import BackendKind

        found: dict[str, BackendKind] = {}
        batch: list[BackendKind] = []  # the kinds of the plugin being checked

        def check(item: Any) -> None:
            if not isinstance(item, BackendKind):
                raise InvalidInput(
                    f"register_llm_backends expects BackendKind, got {type(item).__name__}"
                )
            if not callable(item.build):
                raise InvalidInput(f"backend kind {item.name!r} has no callable build")
            if batch and batch[0].plugin != item.plugin:
                batch.clear()
            owner = found.get(item.name) or next((k for k in batch if k.name == item.name), None)
            if owner is not None:
                raise DuplicateRegistration(
                    f"LLM backend kind {item.name!r} is already registered by {owner.plugin!r}"
                )
            batch.append(item)

        def add(plugin: str, item: BackendKind) -> None:
            found[item.name] = item

        self._collect("register_llm_backends", add, check)
        # A plugin that failed in any hook is out entirely, with the kinds it gave.
        failed = {i.name for i in self._infos.values() if i.status == "failed"}
        return {name: kind for name, kind in found.items() if kind.plugin not in failed}

    def memory_stores(self) -> list[MemoryStoreSpec]:
        """Collect the memory stores plugins register (names unique), tagged with their plugin."""
        from kernos.kernel.memory import MemoryStoreSpec

        return self._named_specs("register_memory_stores", MemoryStoreSpec)

    def embedders(self) -> list[EmbedderSpec]:
        """Collect the embedders plugins register (names unique), tagged with their plugin."""
        from kernos.kernel.memory import EmbedderSpec

        return self._named_specs("register_embedders", EmbedderSpec)

    def graph_stores(self) -> list[GraphStoreSpec]:
        """Collect the LangGraph stores plugins register (names unique), tagged with their
        plugin."""
        from kernos.kernel.memory_records import GraphStoreSpec

        return self._named_specs("register_graph_stores", GraphStoreSpec)

    def model_server_kinds(self) -> dict[str, ModelServerKind]:
        """Collect the model server kinds plugins register, by name (unique across plugins),
        each tagged with its plugin."""
        from kernos.kernel.model_servers import ModelServerKind

        return {k.name: k for k in self._named_specs("register_model_servers", ModelServerKind)}

    def _named_specs(self, hook_name: str, kind: type[Any]) -> list[Any]:
        from dataclasses import replace

        found: list[Any] = []

        def check(item: Any) -> None:
            if not isinstance(item, kind) or not callable(item.build):
                raise InvalidInput(f"{hook_name} expects {kind.__name__}, got {item!r}")
            if any(spec.name == item.name for spec in found):
                raise DuplicateRegistration(f"{kind.__name__} {item.name!r} registered twice")

        def add(plugin: str, item: Any) -> None:
            found.append(replace(item, plugin=plugin))

        self._collect(hook_name, add, check)
        failed = {i.name for i in self._infos.values() if i.status == "failed"}
        return [spec for spec in found if spec.plugin not in failed]

    async def startup(self, kernel: Kernel) -> None:
        """Run every plugin's ``on_startup`` in registration order."""
        await self._lifecycle("on_startup", kernel)

    async def shutdown(self, kernel: Kernel) -> None:
        """Run every plugin's ``on_shutdown``, last-started first; failures are only logged."""
        for impl in reversed(self._impls("on_shutdown")):
            try:
                result = impl.function(**({"kernel": kernel} if "kernel" in impl.argnames else {}))
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("plugin %r failed in on_shutdown", impl.plugin_name)

    async def _lifecycle(self, hook_name: str, kernel: Kernel) -> None:
        self.load()
        for impl in self._impls(hook_name):
            info = self._infos[impl.plugin_name]
            try:
                result = impl.function(**({"kernel": kernel} if "kernel" in impl.argnames else {}))
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                self._fail(info, f"failed in {hook_name}: {_describe(exc)}", exc)

    # -- Reporting --------------------------------------------------------------------------

    def infos(self) -> list[PluginInfo]:
        """Every plugin seen, loaded or not, in load order."""
        self.load()
        return list(self._infos.values())

    def failures(self) -> list[PluginInfo]:
        """Plugins that were skipped because they failed."""
        return [i for i in self.infos() if i.status == "failed"]

    def require(self, name: str) -> PluginInfo:
        """The info of a loaded plugin, or ``PluginError``."""
        info = self._infos.get(name)
        if info is None or info.status != "loaded":
            raise PluginError(f"plugin {name!r} is not loaded")
        return info


def _replace_plugin(
    item: ToolSpec | AgentSpec | BackendKind, plugin: str
) -> ToolSpec | AgentSpec | BackendKind:
    from dataclasses import replace

    return replace(item, plugin=plugin)


def _replace_trigger_plugin(item: Trigger, plugin: str) -> Trigger:
    from dataclasses import replace

    return replace(item, plugin=plugin)
