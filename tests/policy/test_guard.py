"""The redaction guard in a running kernel: nothing secret reaches the model or the audit log,
and an authorized operator can reveal an original over the API (audited)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypedDict

import httpx
import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from sqlalchemy import select

from kernos.kernel.catalog import AgentBuild, AgentSpec, ToolSpec
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import load_settings
from kernos.kernel.storage.models import AuditRow
from kernos.kernel.tokens import read_admin_token
from kernos.policy.detectors import PatternDetector

SEEN: list[list[BaseMessage]] = []
EFFECTS: list[dict[str, Any]] = []


class RecordingModel(FakeMessagesListChatModel):
    """A scripted model that keeps what it was sent (the one allowed stand-in: the LLM)."""

    async def _agenerate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        SEEN.append(list(messages))
        return await super()._agenerate(messages, *args, **kwargs)


def notify(email: str, bin_id: str) -> str:
    EFFECTS.append({"email": email, "bin": bin_id})
    return "sent"


class State(TypedDict, total=False):
    text: str
    reply: str


def build_writer(build: AgentBuild) -> Any:
    from langgraph.graph import END, START, StateGraph

    async def write(state: State) -> State:
        reply = await build.model.ainvoke([HumanMessage(content=state["text"])])
        await build.tools[0].ainvoke({"email": "ada@example.com", "bin_id": "BIN-4711"})
        return {"reply": str(reply.content)}

    graph = StateGraph(State)
    graph.add_node("write", write)
    graph.add_edge(START, "write")
    graph.add_edge("write", END)
    return graph.compile()


class CityGuards:
    """A third-party detector through the ``register_redactors`` hook."""

    @hookimpl
    def register_redactors(self, register: Any) -> None:
        register(PatternDetector("bin-id", "BIN", pattern=r"\bBIN-\d{4}\b"))

    @hookimpl
    def register_tools(self, register: Any) -> None:
        register(ToolSpec(name="notify", description="Mail a resident.", func=notify))

    @hookimpl
    def register_agents(self, register: Any) -> None:
        register(
            AgentSpec(name="writer", description="Writes.", build=build_writer, tools=("notify",))
        )


@pytest.fixture
async def kernel(kernos_home: Path) -> AsyncIterator[Kernel]:
    from tests.conftest import free_port

    SEEN.clear()
    EFFECTS.clear()
    plugins = PluginManager(entry_points=False)
    plugins.add(CityGuards(), name="city-guards")
    model = RecordingModel(responses=[AIMessage(content="Will do.")])
    settings = load_settings(home=kernos_home, api_port=free_port())
    started = Kernel(settings, plugins=plugins, llm=model, serve_api=True)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def test_secrets_never_reach_the_model_or_the_log_and_can_be_revealed(
    kernel: Kernel,
) -> None:
    text = "Mail ada@example.com that BIN-4711 is full; card 4111 1111 1111 1111 on file."
    admin = await kernel.identity.get_principal("default", "admin")
    info = await kernel.processes.spawn("writer", {"text": text}, principal=admin)
    done = await kernel.processes.wait(info.pid, timeout=30)
    assert done.output is not None and done.output["reply"] == "Will do.", done.error

    [[sent]] = SEEN
    content = str(sent.content)
    for secret in ("ada@example.com", "BIN-4711", "4111 1111 1111 1111"):
        assert secret not in content
    assert "[EMAIL:tok_" in content and "[BIN:tok_" in content and "[CARD:tok_" in content
    assert EFFECTS == [{"email": "ada@example.com", "bin": "BIN-4711"}]  # tools get real values

    async with kernel.db.read() as session:
        rows = (await session.scalars(select(AuditRow).where(AuditRow.pid == info.pid))).all()
    logged = json.dumps([[r.args, r.summary, r.body] for r in rows])
    assert "ada@example.com" not in logged and "BIN-4711" not in logged
    token = next(t for t in content.split() if t.startswith("[EMAIL:"))

    headers = {"Authorization": f"Bearer {read_admin_token(kernel.settings.home)}"}
    base = f"http://127.0.0.1:{kernel.settings.api_port}"
    async with httpx.AsyncClient(base_url=base, headers=headers) as http:
        shown = await http.post("/v1/audit/reveal", json={"token": token, "reason": "test"})
        assert shown.status_code == 200, shown.text
        assert shown.json()["original"] == "ada@example.com"
        missing = await http.post(
            "/v1/audit/reveal", json={"token": "[EMAIL:tok_" + "0" * 20 + "]"}
        )
        assert missing.status_code == 404
    async with kernel.db.read() as session:
        reveals = (
            await session.scalars(select(AuditRow).where(AuditRow.event == "vault.reveal"))
        ).all()
    assert [r.decision for r in reveals] == ["allow", "deny"]
    assert all("ada@example.com" not in (r.body or "") for r in reveals)
