"""The ``Kernel``: what holds a running Kernos together.

Startup order: plugins load (cheap, no side effects, so a broken essential plugin stops
everything before any state is touched) → home directory → exclusive database lease →
migrations → database and single writer → identity bootstrap (default tenant, local admin) →
``on_startup`` hooks. Stop runs the same in reverse. The kernel core adds processes and the
syscall pipeline on top of this.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

from langchain_core.runnables import Runnable, RunnableLambda
from sqlalchemy import update
from sqlalchemy.orm import Session

from kernos.kernel import kernos_version
from kernos.kernel import telemetry as names
from kernos.kernel.catalog import Catalog
from kernos.kernel.checkpointer import KernosCheckpointSaver
from kernos.kernel.clock import Clock, SystemClock
from kernos.kernel.drift import DriftMonitor, DriftReport
from kernos.kernel.errors import (
    BackendUnavailable,
    ConfigError,
    EssentialPluginError,
    KernelUnavailable,
    LeaseLost,
    PolicyDenied,
)
from kernos.kernel.events import EventBus
from kernos.kernel.governed import KernelChatModel
from kernos.kernel.identity import (
    DEFAULT_TENANT,
    LOCAL_ADMIN,
    IdentityStore,
    Principal,
    PrincipalKind,
)
from kernos.kernel.journal import JournalIndex, UsageBook
from kernos.kernel.llm import build_backends, configured_backends
from kernos.kernel.memory import MemoryService
from kernos.kernel.model_runtime import ModelRuntime
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.processes import ProcessManager
from kernos.kernel.registry import ModelRegistry
from kernos.kernel.retention import Purger
from kernos.kernel.scheduling import LLMScheduler
from kernos.kernel.settings import Settings, shown_url
from kernos.kernel.stages import (
    LocalAdminAuthorizer,
    PlainAuditSink,
    StageServices,
    default_stages,
)
from kernos.kernel.storage import migrate
from kernos.kernel.storage.database import Database
from kernos.kernel.storage.lease import Lease, lease_for
from kernos.kernel.storage.models import ProcessRow
from kernos.kernel.syscalls import (
    AuditRecord,
    AuditSink,
    Authorizer,
    AuthRequest,
    Decision,
    Pipeline,
    Stage,
)
from kernos.kernel.telemetry import Telemetry
from kernos.kernel.tokens import Authenticator

log = logging.getLogger(__name__)


def _no_backend(_messages: Any) -> Any:
    raise BackendUnavailable(
        "no LLM backend is configured: set KERNOS_LLM_BASE_URL and KERNOS_LLM_MODEL "
        "(any OpenAI-compatible server), or pass llm= to the Kernel"
    )


@dataclass(slots=True, kw_only=True)
class KernelSummary:
    """What ``kernos up`` prints when it stops."""

    version: str
    database: str
    schema: str
    started_at: datetime
    uptime_seconds: float
    plugins_loaded: list[str] = field(default_factory=list)
    plugins_failed: dict[str, str] = field(default_factory=dict)
    tools: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    tenants: list[str] = field(default_factory=list)
    writes: int = 0
    commits: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "version": self.version,
            "database": self.database,
            "schema": self.schema,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "uptime_seconds": round(self.uptime_seconds, 3),
            "plugins_loaded": self.plugins_loaded,
            "plugins_failed": self.plugins_failed,
            "tools": self.tools,
            "agents": self.agents,
            "tenants": self.tenants,
            "writes": self.writes,
            "commits": self.commits,
        }


class Kernel:
    """One running Kernos kernel on one database."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        plugins: PluginManager | None = None,
        telemetry: Telemetry | None = None,
        llm: Runnable[Any, Any] | None = None,
        serve_api: bool = False,
    ) -> None:
        self.settings = settings
        self.serve_api = serve_api  # read by the API plugin's on_startup: listen on api_port
        self.clock = clock or SystemClock()
        self.plugins = plugins or PluginManager(load_plugins=settings.load_plugins)
        self._owns_telemetry = telemetry is None
        self.telemetry = telemetry or Telemetry(tracing=settings.tracing)
        self.version = kernos_version()
        self.db = Database(settings, telemetry=self.telemetry)
        self.identity = IdentityStore(self.db, self.clock)
        self.catalog = Catalog()
        self.schema_revision: str | None = None
        self.usage = UsageBook(self.clock)
        self.journal = JournalIndex()
        self.audit_sink: AuditSink = PlainAuditSink(self.clock)
        self.models = ModelRegistry(
            self.db, self.clock, settings=settings, audit=lambda: self.audit_sink
        )
        self.model_runtime = ModelRuntime(self.models, drift=DriftMonitor(self._publish_drift))
        """Registered ONNX models served in-process (``ModelRuntime.infer``), their inputs
        watched for drift (``model.drift`` events)."""
        self.authorizer: Authorizer = LocalAdminAuthorizer()
        self.authenticators: list[Authenticator] = []
        self.notices: list[str] = []
        """One-time messages for whoever started the kernel (a new admin key, say): the CLI
        prints them once; they are never logged, since they may hold a secret."""
        """Bearer-token authenticators plugins add (API keys), tried after the admin token."""
        self.pipeline = Pipeline([])
        self.retention = Purger(self)
        """Retention: purge passes on demand and, when a rule is set, on the kernel clock."""
        self._llm = llm
        self._processes: ProcessManager | None = None
        self._events: EventBus | None = None
        self._memory: MemoryService | None = None
        self._scheduler: LLMScheduler | None = None
        self._default_backend: str | None = None
        self._default_model = "none"
        self._lease: Lease = lease_for(settings.db_url)
        self._started_at: datetime | None = None
        self._started_mono = 0.0
        self._running = False
        self.ready = asyncio.Event()
        self.lease_lost = asyncio.Event()
        """Set when the watchdog finds the database lease gone; ``run`` then stops."""
        self.lease_check_seconds = 2.0
        self._lease_problem = ""
        self._lease_watch: asyncio.Task[None] | None = None
        """Set while the kernel is running (after ``on_startup``), cleared when it stops."""

    @property
    def running(self) -> bool:
        """Whether ``start`` completed and ``stop`` has not run."""
        return self._running

    async def start(self) -> None:
        """Bring the kernel up; on any failure, undo what was done and re-raise."""
        if self._running:
            return
        # Not made current: tasks started here (the API server, the event bus, re-attached
        # processes) would inherit it, and every later request and run join start-up's trace.
        with self.telemetry.tracer.start_span(names.SPAN_KERNEL_START):
            self.plugins.load()
            self.catalog = self.plugins.catalog()
            self._started_at = self.clock.now()
            self._started_mono = self.clock.monotonic()
            try:
                self._prepare_home()
                await asyncio.to_thread(
                    self._lease.acquire, started_at=self._started_at, version=self.version
                )
                self._lease_watch = asyncio.create_task(self._watch_lease(), name="kernos-lease")
                result = await asyncio.to_thread(migrate.upgrade, self.settings.db_url)
                self.schema_revision = result.after
                await self.db.start()
                await self.identity.ensure_tenant(DEFAULT_TENANT, display_name="Default tenant")
                await self.identity.ensure_principal(
                    DEFAULT_TENANT,
                    LOCAL_ADMIN,
                    kind=PrincipalKind.PERSON,
                    display_name="Local admin",
                )
                stages = await self._install_providers()
                self.pipeline = self._build_pipeline(stages)
                self._start_scheduler()
                self._start_model_servers()
                self._memory = MemoryService(
                    self, stores=self.plugins.memory_stores(), embedders=self.plugins.embedders()
                )
                self._processes = ProcessManager(
                    self, KernosCheckpointSaver(self.db, on_checkpoint=self._on_checkpoint)
                )
                self._events = EventBus(
                    self.db,
                    self.clock,
                    self.audit_sink,
                    spawn=self._processes.spawn,
                    max_attempts=self.settings.event_max_attempts,
                    backoff_base=self.settings.event_backoff_seconds,
                )
                self._running = True
                await self.plugins.startup(self)
                for model_check in self.plugins.model_checks():
                    self.models.add_check(model_check)
                for trigger in self.plugins.triggers():  # leaves out plugins that failed
                    self._events.add_trigger(trigger)
                for schema in self.plugins.event_schemas():
                    self._events.add_schema(schema)
                # A plugin that failed to start is out entirely, with its tools and agents.
                failed = {info.name for info in self.plugins.failures()}
                self.catalog.tools = {
                    n: t for n, t in self.catalog.tools.items() if t.plugin not in failed
                }
                self.catalog.agents = {
                    n: a for n, a in self.catalog.agents.items() if a.plugin not in failed
                }
                await self._processes.reattach()
                await self._events.start()  # re-dispatch deliveries a crash left pending
                self.retention.start()
                self.ready.set()
            except BaseException:
                if self._running:
                    # Plugins that started (the API server, say) must let go of what they hold.
                    await self.plugins.shutdown(self)
                await self._teardown()
                raise
        log.info(
            "kernel started",
            extra={"database": self.database_shown, "schema": self.schema_revision},
        )

    def _prepare_home(self) -> None:
        try:
            self.settings.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create KERNOS_HOME {self.settings.home}: {exc.strerror}; "
                "point KERNOS_HOME at a writable folder"
            ) from exc

    async def _install_providers(self) -> list[tuple[Stage, dict[str, str]]]:
        """Let plugins supply the authorizer and the audit sink (the policy layer does), and
        build the stages that need the kernel; returns those stages with where they go."""
        stages: list[tuple[Stage, dict[str, str]]] = []
        for plugin, provider in self.plugins.pipeline_providers():
            slot = provider.slot
            try:
                component = await provider.build(self)
            except Exception as exc:
                raise EssentialPluginError(
                    f"plugin {plugin!r} failed to provide the pipeline's {slot}: {exc}"
                ) from exc
            expected = {"authorizer": Authorizer, "audit_sink": AuditSink, "stage": Stage}[slot]
            if not isinstance(component, expected):
                raise EssentialPluginError(
                    f"plugin {plugin!r} provided {component!r} as the {slot}, "
                    f"not a {expected.__name__}"
                )
            if isinstance(component, Stage):
                stages.append((component, provider.where))
            else:
                setattr(self, slot, component)
            log.info("pipeline %s provided by %s", slot, plugin)
        return stages

    async def authorize(self, principal: Principal, obj: str, action: str) -> Decision:
        """Decide an operator's action (outside any process) within the principal's tenant.

        A denial is audited and raised as ``PolicyDenied``; an allowed action returns the
        decision (the action's own audit record says what was done).
        """
        request = AuthRequest(principal=principal, tenant=principal.tenant, obj=obj, action=action)
        decision = await self.authorizer.authorize(request)
        if decision.allowed:
            return decision
        await self.deny(principal, obj, action, rule=decision.rule)

    async def deny(self, principal: Principal, obj: str, action: str, *, rule: str) -> NoReturn:
        """Audit an operator's refused action, then raise ``PolicyDenied`` naming the rule."""
        record = AuditRecord(
            event="operator.denied",
            tenant=principal.tenant,
            principal=principal.subject,
            target=obj,
            kind=action,
            decision="deny",
            rule=rule,
        )
        await self.db.write(lambda session: self.audit_sink.append(session, record))
        raise PolicyDenied(
            f"{principal.subject} may not {action} {obj} (rule: {rule}); "
            "ask an admin of the tenant for a role that allows it"
        )

    def _build_pipeline(self, provided: list[tuple[Stage, dict[str, str]]]) -> Pipeline:
        services = StageServices(
            db=self.db,
            clock=self.clock,
            telemetry=self.telemetry,
            audit=self.audit_sink,
            usage=self.usage,
            authorizer=self.authorizer,
            journal=self.journal,
            announce=self._announce,
        )
        pipeline = Pipeline(default_stages(services))
        for stage, where in [*self.plugins.pipeline_stages(), *provided]:
            try:
                pipeline.insert(stage, **where)
            except ValueError as exc:
                raise EssentialPluginError(
                    f"cannot add pipeline stage {stage.name!r}: {exc}"
                ) from exc
        return pipeline

    def _on_checkpoint(self, session: Session, config: Any, checkpoint: Any, metadata: Any) -> None:
        """Count a root-graph step on its process, in the checkpoint's own transaction."""
        configurable = config.get("configurable", {})
        if configurable.get("checkpoint_ns"):
            return
        session.execute(
            update(ProcessRow)
            .where(ProcessRow.thread_id == configurable.get("thread_id"))
            .values(steps=ProcessRow.steps + 1, updated_at=self.clock.now())
        )

    @property
    def events(self) -> EventBus:
        """The event bus (``KernelUnavailable`` before start)."""
        if self._events is None:
            raise KernelUnavailable("the kernel is not running; start it first")
        return self._events

    @property
    def memory(self) -> MemoryService:
        """Long-term memory (``KernelUnavailable`` before start)."""
        if self._memory is None:
            raise KernelUnavailable("the kernel is not running; start it first")
        return self._memory

    @property
    def processes(self) -> ProcessManager:
        """The process manager (``KernelUnavailable`` before start)."""
        if self._processes is None:
            raise KernelUnavailable("the kernel is not running; start it first")
        return self._processes

    @property
    def scheduler(self) -> LLMScheduler | None:
        """The LLM scheduler over the configured backends (``None`` when none is configured)."""
        return self._scheduler

    async def _announce(self, topic: str, event_id: str, tenant: str, data: dict[str, Any]) -> None:
        """Publish one of the kernel's own events (``approval.requested``) on the bus."""
        from kernos.kernel.events import Event

        await self.events.publish(
            Event(id=event_id, topic=topic, tenant=tenant, source="kernel", data=data)
        )

    async def _publish_drift(self, report: DriftReport) -> None:
        """Put a drifted window on the event bus (``model.drift``), once it runs."""
        from kernos.kernel.drift import bus_publisher

        await bus_publisher(self.events)(report)

    @property
    def llm_available(self) -> bool:
        """Whether agents get a working chat model (a configured backend, or an injected
        model): the operator agent and every LLM agent need one."""
        return self._llm is not None or self._scheduler is not None

    def _start_scheduler(self) -> None:
        """Build the configured LLM backends (``ConfigError`` naming what is wrong) and the
        scheduler that dispatches ``llm.chat`` to them. Building opens no connection."""
        configs = configured_backends(self.settings)
        if not configs:
            return
        backends = build_backends(configs, self.plugins.llm_backend_kinds())
        if self.telemetry.genai.capture_content:  # captured prompts are masked with these
            self.telemetry.content_detectors = self.plugins.redactors()
        chosen = next((c for c in configs if c.name == "default"), configs[0])
        self._default_backend = chosen.name
        self._default_model = chosen.model or chosen.name
        self._scheduler = LLMScheduler(backends, clock=self.clock, telemetry=self.telemetry)

    def _start_model_servers(self) -> None:
        """Build the configured model servers (``ConfigError`` naming what is wrong) and route
        the models they name to them. Building opens no connection."""
        if not self.settings.model_servers:
            return
        from kernos.kernel.model_servers import build_model_servers

        servers = build_model_servers(
            self.settings.model_servers, self.plugins.model_server_kinds()
        )
        self.model_runtime.use_servers(servers, telemetry=self.telemetry)

    def chat_model(self) -> KernelChatModel:
        """The governed chat model handed to agents: an injected model (``llm=``, tests), else
        the scheduler's ``default`` backend (or the first configured), else one that explains
        how to configure a backend when called."""
        if self._llm is not None:
            return KernelChatModel(
                inner=self._llm, model_name=self.settings.llm_model or "scripted"
            )
        if self._scheduler is not None and self._default_backend is not None:
            return KernelChatModel(
                scheduler=self._scheduler,
                backend=self._default_backend,
                model_name=self._default_model,
            )
        return KernelChatModel(inner=RunnableLambda(_no_backend), model_name="none")

    async def stop(self) -> None:
        """Stop driving processes, run ``on_shutdown`` hooks, commit writes, release the lease."""
        await self.retention.stop()
        if self._events is not None:
            await self._events.stop()
        if self._processes is not None:
            await self._processes.shutdown()
        if self._running:
            await self.plugins.shutdown(self)
        await self._teardown()
        if self._owns_telemetry:
            self.telemetry.shutdown()  # flush exporters; an injected one is its owner's
        log.info("kernel stopped")

    async def _teardown(self) -> None:
        self._running = False
        await self.retention.stop()
        if self._scheduler is not None:
            scheduler, self._scheduler = self._scheduler, None
            await scheduler.aclose()
        await self.model_runtime.aclose()
        if self._memory is not None:
            memory, self._memory = self._memory, None
            await memory.close()
        if self._events is not None:
            await self._events.stop()
        if self._lease_watch is not None:
            self._lease_watch.cancel()
            self._lease_watch = None
        self.ready.clear()
        try:
            await self.db.stop()
        finally:
            await asyncio.to_thread(self._lease.release)

    async def __aenter__(self) -> Kernel:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(
        self, *, duration: float | None = None, stop: asyncio.Event | None = None
    ) -> KernelSummary:
        """Start, serve until ``duration`` seconds pass (on the kernel clock) or ``stop`` is set.

        Returns the summary taken just before stopping.
        """
        await self.start()
        summary: KernelSummary | None = None
        try:
            waiters: list[asyncio.Task[Any]] = [asyncio.create_task(self.lease_lost.wait())]
            if duration is not None:
                waiters.append(asyncio.create_task(self.clock.sleep(duration)))
            if stop is not None:
                waiters.append(asyncio.create_task(stop.wait()))
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            summary = await self.summary()
        finally:
            await self.stop()
        if self.lease_lost.is_set():
            raise LeaseLost(
                f"the kernel stopped because {self._lease_problem}; no two kernels may run on "
                "one database. Check for another kernel before starting this one again"
            )
        return summary

    async def _watch_lease(self) -> None:
        """Stop serving the moment the lease is gone (deleted file, dropped PG connection).

        Real time, not the kernel clock: this is about the OS and the network, and a
        simulated clock that jumps deadline to deadline must not spin on it.
        """
        while True:
            await asyncio.sleep(self.lease_check_seconds)
            problem = await asyncio.to_thread(self._lease.lost)
            if problem is not None:
                log.critical("database lease lost: %s; stopping", problem)
                self._lease_problem = problem
                self.lease_lost.set()
                return

    @property
    def database_shown(self) -> str:
        """The database URL with any password hidden (safe to log)."""
        return shown_url(self.settings.db_url)

    async def summary(self) -> KernelSummary:
        """Counters and contents for ``kernos up``'s closing report."""
        infos = self.plugins.infos()
        tenants: list[str] = []
        if self._running:
            tenants = [t.name for t in await self.identity.list_tenants()]
        stats = self.db.writer_stats
        return KernelSummary(
            version=self.version,
            database=self.database_shown,
            schema=self.schema_revision or "",
            started_at=self._started_at or self.clock.now(),
            uptime_seconds=self.clock.monotonic() - self._started_mono if self._started_at else 0.0,
            plugins_loaded=[i.name for i in infos if i.status == "loaded"],
            plugins_failed={i.name: i.error or "" for i in infos if i.status == "failed"},
            tools=sorted(self.catalog.tools),
            agents=sorted(self.catalog.agents),
            tenants=tenants,
            writes=stats.writes,
            commits=stats.commits,
        )
