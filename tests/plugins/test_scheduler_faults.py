"""The scheduler against the real CPU server behind a fault-injecting proxy, with sim-llm as
the fallback: refused connections, 5xx and a hanging server are retried, trip the breaker,
the fallback serves, the breaker half-opens and the real server serves again — every call
answered exactly once. And through a kernel: the fallback's answer is a governed, audited
``llm.chat``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, TypedDict

from sqlalchemy import select

from kernos.kernel.catalog import AgentBuild, AgentSpec
from kernos.kernel.clock import SystemClock
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.llm import BackendConfig, ChatRequest
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.scheduling import LLMScheduler
from kernos.kernel.settings import load_settings
from kernos.kernel.storage.models import AuditRow
from kernos.plugins.openai_compat import OpenAICompatBackend
from kernos.plugins.sim_llm import SimLLMBackend
from tests.llm.faultproxy import FaultProxy
from tests.llm.fixtures import fault_proxy, real_llm
from tests.llm.server import LLMServer

__all__ = ["fault_proxy", "real_llm"]

ASK = ChatRequest(messages=[{"role": "user", "content": "Which bins are full?"}], max_tokens=4)
ADMIN = Principal(tenant="default", name="admin", kind=PrincipalKind.PERSON)


def scheduler(proxy: FaultProxy, server: LLMServer) -> LLMScheduler:
    primary = OpenAICompatBackend(
        BackendConfig(
            name="local",
            base_url=f"{proxy.url}/v1",
            model=server.model,
            timeout_seconds=1.0,
            max_retries=1,
            fallback=["sim"],
        )
    )
    sim = SimLLMBackend(BackendConfig(name="sim", kind="sim-llm"))
    return LLMScheduler(
        {"local": primary, "sim": sim},
        clock=SystemClock(),
        breaker_threshold=2,
        breaker_cooldown=1.0,
        backoff_base=0.01,
        backoff_max=0.05,
    )


async def test_faults_retry_trip_the_breaker_fall_back_and_recover(
    fault_proxy: FaultProxy, real_llm: LLMServer
) -> None:
    sched = scheduler(fault_proxy, real_llm)
    served: list[str] = []

    async def call() -> None:
        answer = await sched.chat(ASK, backend="local", tenant="acme", pid=1)
        served.append(answer.backend)

    try:
        await call()
        assert served == ["local"]

        for mode, extra in (("refuse", {}), ("status", {"status": 502}), ("hang", {})):
            fault_proxy.set_mode(mode, **extra)  # type: ignore[arg-type]
            before = fault_proxy.connections
            await call()  # retried on the primary, then served by the fallback
            assert served[-1] == "sim"
            if mode != "refuse":  # a refused connection never reaches the proxy's accept
                assert fault_proxy.connections - before >= 1
            assert sched.snapshot()["local"].breaker in ("closed", "open")
            fault_proxy.set_mode("pass")
            await asyncio.sleep(1.1)  # past the cooldown: the next call probes the primary
            await call()
            assert served[-1] == "local", f"did not recover after {mode}"
            assert sched.snapshot()["local"].breaker == "closed"

        # Open the breaker, then calls skip the primary at once while it is open.
        fault_proxy.set_mode("refuse")
        await call()
        await call()
        assert sched.snapshot()["local"].breaker == "open"
        started = time.perf_counter()
        await call()
        assert served[-1] == "sim" and time.perf_counter() - started < 0.5  # fast fail
        fault_proxy.set_mode("pass")
        await asyncio.sleep(1.1)
        await call()
        assert served[-1] == "local"
    finally:
        await sched.aclose()
    # 1 + 3 * 2 + 3 + 1 calls: every one answered exactly once.
    assert len(served) == 11


class Chat(TypedDict, total=False):
    answer: str


def build_asker(build: AgentBuild) -> Any:
    from langgraph.graph import END, START, StateGraph

    model = build.model
    assert model is not None

    async def ask(state: Chat) -> Chat:
        return {"answer": str((await model.ainvoke("Which bins are full?")).content)}

    graph = StateGraph(Chat)
    graph.add_node("ask", ask)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", END)
    return graph.compile()


class Agents:
    @hookimpl
    def register_agents(self, register: Any) -> None:
        register(AgentSpec(name="asker", description="Asks once.", build=build_asker))


async def test_a_fallback_answer_is_a_governed_audited_syscall(
    kernos_home: Path, fault_proxy: FaultProxy, real_llm: LLMServer
) -> None:
    fault_proxy.set_mode("status", status=503)
    backends = [
        {
            "name": "default",
            "kind": "openai_compat",
            "base_url": f"{fault_proxy.url}/v1",
            "model": real_llm.model,
            "max_retries": 1,
            "timeout_seconds": 2.0,
            "fallback": ["sim"],
        },
        {"name": "sim", "kind": "sim-llm"},
    ]
    plugins = PluginManager(entry_points=False)
    plugins.add(Agents(), name="agents")
    kernel = Kernel(load_settings(home=kernos_home, llm_backends=backends), plugins=plugins)
    await kernel.start()
    try:
        info = await kernel.processes.spawn("asker", {}, principal=ADMIN)
        done = await kernel.processes.wait(info.pid, timeout=60)
        async with kernel.db.read() as session:
            events = [
                (r.event, r.kind)
                for r in await session.scalars(
                    select(AuditRow).where(AuditRow.pid == info.pid).order_by(AuditRow.seq)
                )
            ]
    finally:
        await kernel.stop()
    assert done.state == "done", done.error
    assert done.output["answer"].startswith("[simulated]")
    assert done.usage.llm_calls == 1
    llm = [e for e in events if e[1] == "llm.chat"]
    assert [e[0] for e in llm] == ["syscall.intent", "syscall.result"]  # once, not per attempt
