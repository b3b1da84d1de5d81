"""The hazard classifier: trained on the simulated city, written as ONNX, registered, and
served through a real kernel's registry (canary and shadow honoured, verified before load)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pytest
from sqlalchemy import select

from kernos.edge.hazard import OnnxHazard
from kernos.kernel.catalog import AgentBuild, AgentSpec
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import LOCAL_ADMIN, Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.model_records import ModelKind
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.process_records import ProcessState
from kernos.kernel.settings import Settings
from kernos.kernel.storage.models import AuditRow
from kernos.plugins.hazard import MODEL_NAME
from kernos.plugins.hazard.plugin import ensure_model
from kernos.plugins.hazard.train import dataset, fit, scores, train
from kernos.policy.service import policy_services

NORMAL = {"level": 0.4, "temp_c": 14.0, "voc_ppm": 1.3}
HAZARD = {"level": 0.5, "temp_c": 41.0, "voc_ppm": 52.0}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("hazard") / "hazard.onnx"
    return out, train(out, seed=3, days=20)


def test_training_is_deterministic_and_separates_held_out_data(
    model_file: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    path, report = model_file
    again = tmp_path / "again.onnx"
    train(again, seed=3, days=20)
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(again.read_bytes()).digest()
    held = report["held_out"]
    assert held["positives"] > 100
    assert held["recall"] >= 0.95 and held["precision"] >= 0.95, held
    assert report["pinned_rate"]["positives"] > 0  # the pinned city has incidents too


def test_a_model_without_positives_to_learn_from_flags_nothing() -> None:
    # The labels drive the model: trained where nothing is hazardous, it flags nothing.
    x, y = dataset(5, days=10, hazard_rate=0.02)
    model = fit(x, np.zeros_like(y))
    assert scores(model, x, y)["recall"] == 0.0


def test_the_onnx_file_meets_the_edge_contract(model_file: tuple[Path, dict[str, Any]]) -> None:
    path, _ = model_file
    classifier = OnnxHazard(path)
    flags = classifier.suspects(
        [NORMAL["level"], HAZARD["level"]],
        [NORMAL["temp_c"], HAZARD["temp_c"]],
        [NORMAL["voc_ppm"], HAZARD["voc_ppm"]],
    )
    assert flags == [False, True]


class State(TypedDict, total=False):
    readings: list[dict[str, Any]]
    out: Any


def build_inspector(build: AgentBuild) -> Any:
    from langgraph.graph import END, START, StateGraph

    [tool] = build.tools

    async def classify(state: State) -> State:
        return {"out": await tool.ainvoke({"readings": state["readings"]})}

    graph = StateGraph(State)
    graph.add_node("classify", classify)
    graph.add_edge(START, "classify")
    graph.add_edge("classify", END)
    return graph.compile()


class Inspector:
    @hookimpl
    def register_agents(self, register: Any) -> None:
        register(
            AgentSpec(
                name="inspector",
                description="Classifies readings.",
                build=build_inspector,
                tools=("hazard_classify",),
            )
        )


@pytest.fixture
async def kernel(kernos_settings: Settings) -> AsyncIterator[Kernel]:
    plugins = PluginManager(entry_points=False)
    plugins.add(Inspector(), name="inspector")
    started = Kernel(kernos_settings, plugins=plugins)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def admin(kernel: Kernel) -> Principal:
    return await kernel.identity.ensure_principal("default", LOCAL_ADMIN, kind=PrincipalKind.PERSON)


async def classify(kernel: Kernel, who: Principal, *readings: dict[str, Any]) -> Any:
    body = [{"bin": i, **r} for i, r in enumerate(readings)]
    info = await kernel.processes.spawn("inspector", {"readings": body}, principal=who)
    return await kernel.processes.wait(info.pid, timeout=60)


async def test_the_tool_serves_the_registered_model(kernel: Kernel) -> None:
    by = await admin(kernel)
    live = await ensure_model(kernel, by=by, days=10)
    assert live.kind is ModelKind.ONNX and live.stage.value == "live"
    assert (await ensure_model(kernel, by=by)).sha256 == live.sha256  # no second training
    done = await classify(kernel, by, NORMAL, HAZARD)
    assert done.state is ProcessState.DONE, done.error
    out = done.output["out"]
    assert out["model"] == f"{MODEL_NAME}@1"
    assert [b["hazard"] for b in out["bins"]] == [False, True]
    assert out["bins"][1]["p"] > 0.9 > out["bins"][0]["p"]
    [stats] = kernel.models.stats(MODEL_NAME)
    assert stats.version == "1" and stats.calls == 1 and stats.errors == 0


async def test_canary_and_shadow_versions(kernel: Kernel, tmp_path: Path) -> None:
    by = await admin(kernel)
    await ensure_model(kernel, by=by, days=10)
    for version, seed in (("2", 4), ("3", 5)):
        path = tmp_path / f"v{version}.onnx"
        train(path, seed=seed, days=10)
        await kernel.models.register(
            path, name=MODEL_NAME, version=version, registered_by=by, kind=ModelKind.ONNX
        )
    await kernel.models.promote(f"{MODEL_NAME}@2", "canary:50", by=by)
    await kernel.models.promote(f"{MODEL_NAME}@3", "shadow", by=by)
    answered = set()
    for _ in range(12):
        done = await classify(kernel, by, HAZARD)
        assert done.state is ProcessState.DONE, done.error
        answered.add(done.output["out"]["model"])
    assert answered == {f"{MODEL_NAME}@1", f"{MODEL_NAME}@2"}  # never the shadow
    stats = {s.version: s for s in kernel.models.stats(MODEL_NAME)}
    assert stats["1"].calls + stats["2"].calls == 12
    assert stats["3"].shadow_calls == 12  # every request mirrored to the shadow


async def test_a_tampered_artifact_is_never_run(kernel: Kernel) -> None:
    by = await admin(kernel)
    live = await ensure_model(kernel, by=by, days=10)
    await asyncio.to_thread(_append_a_byte, Path(live.path))
    done = await classify(kernel, by, HAZARD)
    assert done.state is ProcessState.FAILED
    assert "failed verification" in done.error["message"]
    async with kernel.db.read() as session:
        failed = list(
            await session.scalars(select(AuditRow).where(AuditRow.event == "model.verify_failed"))
        )
    assert failed and failed[0].target == f"{MODEL_NAME}@1"


async def test_a_drifting_temperature_sensor_is_flagged(kernel: Kernel) -> None:
    # 300 bins a call, like the dispatcher: two calls make the reference window (500), two
    # more a window to score. Then the temperature sensors read 15 °C high (a recalibration
    # gone wrong): the classifier's inputs drift, and model.drift says which feature did.
    from kernos.kernel.drift import DRIFT_TOPIC
    from kernos.kernel.events import Event

    by = await admin(kernel)
    await ensure_model(kernel, by=by, days=10)
    drifts: list[Event] = []

    async def collect(event: Event) -> None:
        drifts.append(event)

    kernel.events.subscribe(DRIFT_TOPIC, collect, name="drift-watch")
    rng = np.random.default_rng(7)

    def city(offset: float) -> list[dict[str, Any]]:
        return [
            {
                "level": float(rng.uniform(0.05, 0.95)),
                "temp_c": float(rng.normal(12.0, 3.0) + offset),
                "voc_ppm": float(abs(rng.normal(1.5, 0.4))),
            }
            for _ in range(300)
        ]

    for offset in (0.0, 0.0, 0.0, 0.0):
        done = await classify(kernel, by, *city(offset))
        assert done.state is ProcessState.DONE, done.error
    await kernel.events.drain()
    assert drifts == []  # the same sensors: no drift
    for offset in (15.0, 15.0):
        await classify(kernel, by, *city(offset))
    await kernel.events.drain()
    [event] = drifts
    features = event.data["features"]
    assert event.data["model"] == MODEL_NAME
    assert features["temp_c"]["drifted"] and not features["level"]["drifted"]


async def test_the_model_needs_the_agents_grant_too(kernel: Kernel) -> None:
    by = await admin(kernel)
    await ensure_model(kernel, by=by, days=10)
    await policy_services(kernel).engine.add(
        f"p, agent:inspector, default, model:{MODEL_NAME}, call, deny"
    )
    done = await classify(kernel, by, HAZARD)  # the admin may; the agent may not
    assert done.state is ProcessState.DONE, done.error
    assert str(done.output["out"]).startswith("denied: ")
    assert all(s.calls == 0 for s in kernel.models.stats(MODEL_NAME))


def _append_a_byte(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\x00")


async def test_the_model_needs_the_owners_grant(kernel: Kernel) -> None:
    by = await admin(kernel)
    await ensure_model(kernel, by=by, days=10)
    engine = policy_services(kernel).engine
    await engine.grant_role("otto", "operator", "default")
    await engine.add(f"p, otto, default, model:{MODEL_NAME}, call, deny")
    otto = await kernel.identity.ensure_principal("default", "otto", kind=PrincipalKind.PERSON)
    done = await classify(kernel, otto, HAZARD)
    assert done.state is ProcessState.DONE, done.error
    assert str(done.output["out"]).startswith("denied: ")
    assert kernel.models.stats(MODEL_NAME) == [] or all(
        s.calls == 0 for s in kernel.models.stats(MODEL_NAME)
    )
