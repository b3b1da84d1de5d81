"""Model servers as plugins: ``[[model_servers]]`` settings, the ``register_model_servers`` hook,
and the model runtime sending configured models to them (the registry still choosing and
verifying the version), while the others stay in-process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from kernos.kernel.errors import CheckFailed, ConfigError
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import LOCAL_ADMIN, Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.model_export import export_model
from kernos.kernel.model_records import ModelKind
from kernos.kernel.model_servers import (
    ModelServer,
    ModelServerConfig,
    ModelServerKind,
    build_model_servers,
)
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import Settings, load_settings
from kernos.kernel.storage.models import AuditRow
from kernos.plugins.hazard.train import train

MODEL = "classifier"
ROWS = np.array([[0.4, 14.0, 1.3], [0.5, 41.0, 52.0]], dtype=np.float32)


# -- Settings --------------------------------------------------------------------------------


def test_model_servers_come_from_kernos_toml(tmp_path: Path) -> None:
    (tmp_path / "kernos.toml").write_text(
        "[[model_servers]]\n"
        'name = "triton-a"\nurl = "http://10.0.0.5:8000"\nmodels = ["hazard", "fill"]\n'
        "timeout = 2.5\n"
        "[[model_servers]]\n"
        'name = "triton-b"\nurl = "grpc://10.0.0.6:8001"\nmodels = ["other"]\n'
    )
    settings = load_settings(home=tmp_path)
    http, grpc = settings.model_servers
    assert (http.kind, http.protocol, http.address, http.timeout) == (
        "triton",
        "http",
        "10.0.0.5:8000",
        2.5,
    )
    assert (grpc.protocol, grpc.address, grpc.tls) == ("grpc", "10.0.0.6:8001", False)
    assert ModelServerConfig(name="c", url="host:9", models=["m"]).protocol == "grpc"
    assert ModelServerConfig(name="t", url="https://h:443", models=["m"]).tls


def test_model_servers_from_the_environment(tmp_path: Path, monkeypatch: Any) -> None:
    value = [{"name": "s", "url": "localhost:8001", "protocol": "grpc", "models": ["m"]}]
    monkeypatch.setenv("KERNOS_MODEL_SERVERS", json.dumps(value))
    [server] = load_settings(home=tmp_path).model_servers
    assert server.address == "localhost:8001"


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ('url = "http://h:8000"\nmodels = []', "at least 1 item"),
        ('url = "http://h"\nmodels = ["m"]', "host:port"),
        ('url = "http://h:8000"\nprotocol = "grpc"\nmodels = ["m"]', "protocol is 'grpc'"),
        ('url = "http://h:8000/v2"\nmodels = ["m"]', "no path"),
        ('url = "ftp://h:21"\nmodels = ["m"]', "http(s)://host:port"),
        ('url = "http://h:8000"\nmodels = ["m", "m"]', "listed twice"),
        ('url = "http://h:8000"\nmodels = ["m"]\nprotocol = "rest"', "'http' or 'grpc'"),
        ('url = "http://h:8000"\nmodels = ["m"]\ntimeout = 0', "greater than 0"),
        ('url = "http://h:8000"\nmodels = ["m"]\nmodel = "m"', "unknown setting"),
    ],
)
def test_bad_model_servers_are_refused_clearly(tmp_path: Path, table: str, says: str) -> None:
    (tmp_path / "kernos.toml").write_text(f'[[model_servers]]\nname = "s"\n{table}\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(home=tmp_path)
    message = str(caught.value)
    assert "kernos.toml: model_servers[0]" in message and says in message, message


def test_server_sets_are_checked_against_the_registered_kinds() -> None:
    kinds = PluginManager(entry_points=False).model_server_kinds()
    assert kinds["triton"].plugin == "kernos.plugins.triton"

    def config(name: str, models: list[str], kind: str = "triton") -> ModelServerConfig:
        return ModelServerConfig(name=name, kind=kind, url="http://h:1", models=models)

    for configs, says in (
        ([config("a", ["m"]), config("a", ["n"])], "two servers are named 'a'"),
        ([config("a", ["m"], kind="torchserve")], "known kinds: triton"),
        ([config("a", ["m"]), config("b", ["m"])], "served by both 'a' and 'b'"),
    ):
        with pytest.raises(ConfigError, match=says):
            build_model_servers(configs, kinds)
    [built] = build_model_servers([config("a", ["m"])], kinds)  # opens no connection
    assert built.name == "a" and type(built).__name__ == "TritonServer"


# -- A model server plugin, and the runtime routing to it --------------------------------------


class RepositoryServer(ModelServer):
    """A model server of the test's own: runs the versions of a KServe model repository
    (``kernos models export``'s layout) with onnxruntime, and remembers each request."""

    def __init__(self, config: ModelServerConfig) -> None:
        super().__init__(config)
        self.root = Path(config.options["repository"])
        self.calls: list[tuple[str, str, str | None]] = []
        self.closed = False

    async def infer(self, model: str, version: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        import onnxruntime as ort

        from kernos.kernel.genai import inject

        self.calls.append((model, version, inject({}).get("traceparent")))
        path = self.root / model / version / "model.onnx"
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, dict(inputs)), strict=True))

    async def health(self) -> None:
        return None

    async def close(self) -> None:
        self.closed = True


BUILT: list[RepositoryServer] = []


class RepositoryServers:
    @hookimpl
    def register_model_servers(self, register: Any) -> None:
        def build(config: ModelServerConfig) -> ModelServer:
            BUILT.append(RepositoryServer(config))
            return BUILT[-1]

        register(ModelServerKind(name="repository", build=build, description="test"))


@pytest.fixture
async def kernel(kernos_settings: Settings, tmp_path: Path) -> AsyncIterator[Kernel]:
    BUILT.clear()
    config = {
        "name": "repo",
        "kind": "repository",
        "url": "http://127.0.0.1:9",
        "models": [MODEL],
        "options": {"repository": str(tmp_path / "repo")},
    }
    settings = kernos_settings.model_copy(
        update={"model_servers": [ModelServerConfig.model_validate(config)]}
    )
    plugins = PluginManager(entry_points=False)
    plugins.add(RepositoryServers(), name="repository-servers")
    started = Kernel(settings, plugins=plugins)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def register(kernel: Kernel, tmp_path: Path, name: str, version: str, seed: int) -> Path:
    by = await admin(kernel)
    path = tmp_path / f"{name}-{version}.onnx"
    await asyncio.to_thread(train, path, seed=seed, days=8)
    await kernel.models.register(
        path, name=name, version=version, registered_by=by, kind=ModelKind.ONNX
    )
    return path


async def admin(kernel: Kernel) -> Principal:
    return await kernel.identity.ensure_principal("default", LOCAL_ADMIN, kind=PrincipalKind.PERSON)


async def test_a_configured_model_is_served_by_its_server_others_in_process(
    kernel: Kernel, tmp_path: Path
) -> None:
    by = await admin(kernel)
    for version, seed in (("1", 3), ("2", 4)):
        await register(kernel, tmp_path, MODEL, version, seed)
        await export_model(kernel.models, MODEL, version, repository=tmp_path / "repo", by=by)
    await register(kernel, tmp_path, "local-model", "1", 3)
    await kernel.models.promote(f"{MODEL}@1", "live", by=by)
    await kernel.models.promote(f"{MODEL}@2", "canary:50", by=by)
    await kernel.models.promote("local-model@1", "live", by=by)
    [server] = BUILT
    assert kernel.model_runtime.server_for(MODEL) is server
    assert kernel.model_runtime.server_for("local-model") is None

    answered = {}
    for key in (f"k{i}" for i in range(16)):  # the registry splits the canary as before
        answer = await kernel.model_runtime.infer(MODEL, {"features": ROWS}, key=key)
        answered[key] = answer.version
    assert set(answered.values()) == {"1", "2"}
    assert [(m, v) for m, v, _ in server.calls] == [(MODEL, answered[k]) for k in answered]
    stats = {s.version: s for s in kernel.models.stats(MODEL)}
    assert stats["1"].calls + stats["2"].calls == 16 and stats["1"].errors == 0

    local = await kernel.model_runtime.infer("local-model", {"features": ROWS}, key="k0")
    remote = await kernel.model_runtime.infer(MODEL, {"features": ROWS}, key="k0")
    assert len(server.calls) == 17  # the in-process model never reached the server
    if remote.version == "1":  # the same bytes (seed 3) served both ways
        np.testing.assert_allclose(
            remote.outputs["hazard_probability"], local.outputs["hazard_probability"], atol=1e-6
        )
    await kernel.model_runtime.aclose()  # what the kernel calls when it stops
    assert server.closed and kernel.model_runtime.server_for(MODEL) is None


async def test_a_tampered_artifact_is_refused_before_any_remote_call(
    kernel: Kernel, tmp_path: Path
) -> None:
    by = await admin(kernel)
    path = await register(kernel, tmp_path, MODEL, "1", 3)
    await export_model(kernel.models, MODEL, "1", repository=tmp_path / "repo", by=by)
    await kernel.models.promote(f"{MODEL}@1", "live", by=by)
    await asyncio.to_thread(path.write_bytes, path.read_bytes() + b"\x00")
    with pytest.raises(CheckFailed, match="failed verification"):
        await kernel.model_runtime.infer(MODEL, {"features": ROWS}, key="k")
    [server] = BUILT
    assert server.calls == []
    [stats] = kernel.models.stats(MODEL)
    assert stats.errors == 1
    async with kernel.db.read() as session:
        failed = list(
            await session.scalars(select(AuditRow).where(AuditRow.event == "model.verify_failed"))
        )
    assert [row.target for row in failed] == [f"{MODEL}@1"]
    # An export of the tampered version is refused too, and writes nothing.
    with pytest.raises(CheckFailed, match="export of classifier@1 refused"):
        await export_model(kernel.models, MODEL, "1", repository=tmp_path / "other", by=by)
    assert not (tmp_path / "other").exists()


async def test_a_verified_version_is_checked_once(kernel: Kernel, tmp_path: Path) -> None:
    by = await admin(kernel)
    await register(kernel, tmp_path, MODEL, "1", 3)
    await export_model(kernel.models, MODEL, "1", repository=tmp_path / "repo", by=by)
    await kernel.models.promote(f"{MODEL}@1", "live", by=by)
    verified: list[str] = []
    original = kernel.models.verify

    async def counting(name: str, version: str | None = None, **kw: Any) -> Any:
        verified.append(f"{name}@{version}")
        return await original(name, version, **kw)

    kernel.models.verify = counting  # type: ignore[method-assign]
    for key in ("a", "b", "c"):
        await kernel.model_runtime.infer(MODEL, {"features": ROWS}, key=key)
    assert verified == [f"{MODEL}@1"]
