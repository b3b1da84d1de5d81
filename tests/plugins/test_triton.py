"""The ``triton`` plugin against a real KServe v2 server: MLServer 1.7.1 (from ``.venv-kserve``)
serving the hazard classifier from a model repository ``kernos models export`` writes.

The kernel's registry picks and verifies the version; the server runs it; the answers match
local onnxruntime; the call is a client span in the syscall's trace, and its ``traceparent``
reaches the server."""

from __future__ import annotations

import asyncio
import filecmp
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import select

from kernos.kernel.errors import BackendError
from kernos.kernel.kernel import Kernel
from kernos.kernel.model_export import export_model, write_repository
from kernos.kernel.model_records import ModelKind
from kernos.kernel.model_servers import ModelServerConfig
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.process_records import ProcessState
from kernos.kernel.settings import Settings
from kernos.kernel.storage.models import AuditRow
from kernos.kernel.telemetry import Telemetry
from kernos.plugins.hazard import MODEL_NAME
from kernos.plugins.hazard.train import train
from kernos.plugins.triton_server import TritonServer
from tests.conftest import served_kernel
from tests.kserve.server import KServeServer, free_port, kserve_server, venv_problem
from tests.plugins.test_hazard import Inspector, _append_a_byte, admin, classify

SEEDS = {"1": 3, "2": 4}


@pytest.fixture
def kernos_database_url() -> str | None:
    # The storage backends are not under test here (tests/kernel covers both): SQLite only,
    # so the real server's tests stay short on a 2-core machine.
    return None


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The hazard classifier, two versions, trained on the simulated city."""
    folder = tmp_path_factory.mktemp("hazard")
    files = {}
    for version, seed in SEEDS.items():
        files[version] = folder / f"v{version}.onnx"
        train(files[version], seed=seed, days=10)
    return files


@pytest.fixture(scope="module")
def repository(artifacts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    for version, path in artifacts.items():
        write_repository(root, MODEL_NAME, version, path.read_bytes())
    return root


@pytest.fixture(scope="module")
def mlserver(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KServeServer]:
    problem = venv_problem()
    if problem:
        import os

        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    with kserve_server(repository, tmp_path_factory.mktemp("mlserver"), models=2) as server:
        yield server


@pytest.fixture
def spans() -> Iterator[tuple[Telemetry, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    telemetry = Telemetry(span_processors=[SimpleSpanProcessor(exporter)])
    yield telemetry, exporter
    telemetry.shutdown()


def kernel_for(
    settings: Settings, url: str, telemetry: Telemetry | None = None, *, timeout: float = 10
) -> Kernel:
    config = ModelServerConfig(name="kserve", url=url, models=[MODEL_NAME], timeout=timeout)
    plugins = PluginManager(entry_points=False)
    plugins.add(Inspector(), name="inspector")
    return Kernel(
        settings.model_copy(update={"model_servers": [config]}),
        plugins=plugins,
        telemetry=telemetry,
    )


@pytest.fixture
async def running(
    request: pytest.FixtureRequest,
    kernos_settings: Settings,
    mlserver: KServeServer,
    spans: tuple[Telemetry, InMemorySpanExporter],
) -> AsyncIterator[Kernel]:
    url = mlserver.grpc_url if getattr(request, "param", "http") == "grpc" else mlserver.http_url
    kernel = kernel_for(kernos_settings, url, spans[0])
    await kernel.start()
    try:
        yield kernel
    finally:
        await kernel.stop()


async def deploy(kernel: Kernel, artifacts: dict[str, Path], *versions: str) -> None:
    by = await admin(kernel)
    for version in versions:
        await kernel.models.register(
            artifacts[version],
            name=MODEL_NAME,
            version=version,
            registered_by=by,
            kind=ModelKind.ONNX,
            copy=True,  # the registry's own copy: a test may damage it
        )
    await kernel.models.promote(f"{MODEL_NAME}@{versions[0]}", "live", by=by)


def readings(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "level": float(rng.uniform(0.05, 0.95)),
            "temp_c": float(rng.normal(20.0, 12.0)),
            "voc_ppm": float(abs(rng.normal(10.0, 20.0))),
        }
        for _ in range(n)
    ]


def local(path: Path, features: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"features": features})[0])


@pytest.mark.parametrize("running", ["http", "grpc"], indirect=True)
async def test_the_hazard_tool_answers_through_the_server_like_local_onnxruntime(
    running: Kernel,
    artifacts: dict[str, Path],
    mlserver: KServeServer,
    spans: tuple[Telemetry, InMemorySpanExporter],
) -> None:
    await deploy(running, artifacts, "1")
    rows = readings(300)
    features = np.array([[r["level"], r["temp_c"], r["voc_ppm"]] for r in rows], np.float32)
    expected = local(artifacts["1"], features)

    answer = await running.model_runtime.infer(MODEL_NAME, {"features": features}, key="k")
    remote = answer.outputs["hazard_probability"]
    assert remote.shape == expected.shape == (300,) and remote.dtype == np.float32
    np.testing.assert_allclose(remote, expected, rtol=0, atol=1e-6)

    seen = len(mlserver.traceparents())
    spans[1].clear()
    done = await classify(running, await admin(running), *rows)
    assert done.state is ProcessState.DONE, done.error
    out = done.output["out"]
    assert out["model"] == f"{MODEL_NAME}@1"
    assert [b["p"] for b in out["bins"]] == [round(float(p), 4) for p in expected]

    # One client span, in the syscall's trace, and the server got its traceparent.
    finished = spans[1].get_finished_spans()
    [client] = [s for s in finished if s.kind is SpanKind.CLIENT]
    [syscall] = [s for s in finished if s.name.startswith("kernos.syscall")]
    assert client.name == f"kernos.model.infer {MODEL_NAME}"
    assert client.context.trace_id == syscall.context.trace_id
    assert client.attributes["kernos.model.version"] == "1"
    ctx = client.context
    sent = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
    assert mlserver.traceparents()[seen:] == [sent]
    [stats] = running.models.stats(MODEL_NAME)
    assert stats.calls == 2 and stats.errors == 0


async def test_a_canary_is_split_between_two_remotely_served_versions(
    running: Kernel, artifacts: dict[str, Path]
) -> None:
    await deploy(running, artifacts, "1", "2")
    await running.models.promote(f"{MODEL_NAME}@2", "canary:50", by=await admin(running))
    features = np.array([[r["level"], r["temp_c"], r["voc_ppm"]] for r in readings(50)], "f4")
    expected = {v: local(artifacts[v], features) for v in SEEDS}
    assert np.abs(expected["1"] - expected["2"]).max() > 1e-3  # two different models
    answered = set()
    for i in range(16):
        answer = await running.model_runtime.infer(
            MODEL_NAME, {"features": features}, key=f"req-{i}"
        )
        answered.add(answer.version)
        np.testing.assert_allclose(
            answer.outputs["hazard_probability"], expected[answer.version], atol=1e-6
        )
    assert answered == {"1", "2"}
    stats = {s.version: s for s in running.models.stats(MODEL_NAME)}
    assert stats["1"].calls + stats["2"].calls == 16


async def test_a_tampered_artifact_is_refused_before_any_remote_call(
    running: Kernel, artifacts: dict[str, Path], mlserver: KServeServer
) -> None:
    await deploy(running, artifacts, "1")
    stored = Path((await running.models.get(MODEL_NAME, "1")).path)
    await asyncio.to_thread(_append_a_byte, stored)
    seen = len(mlserver.traceparents())
    done = await classify(running, await admin(running), *readings(3))
    assert done.state is ProcessState.FAILED
    assert "failed verification" in done.error["message"]
    assert len(mlserver.traceparents()) == seen  # nothing was sent


async def test_a_server_that_is_down_fails_the_call_clearly_and_it_is_audited(
    kernos_settings: Settings,
    artifacts: dict[str, Path],
    spans: tuple[Telemetry, InMemorySpanExporter],
) -> None:
    kernel = kernel_for(kernos_settings, f"http://127.0.0.1:{free_port()}", spans[0], timeout=5)
    async with kernel:
        await deploy(kernel, artifacts, "1")
        with pytest.raises(BackendError, match="cannot be reached") as caught:
            await kernel.model_runtime.infer(
                MODEL_NAME, {"features": np.zeros((1, 3), np.float32)}, key="k"
            )
        assert caught.value.retryable
        done = await classify(kernel, await admin(kernel), *readings(2))
        assert done.state is ProcessState.FAILED
        assert "cannot be reached" in done.error["message"], done.error
        async with kernel.db.read() as session:
            failed = list(
                await session.scalars(
                    select(AuditRow).where(
                        AuditRow.event == "syscall.failed", AuditRow.pid == done.pid
                    )
                )
            )
        assert failed and "backend_error" in (failed[0].summary or "")
        client = [s for s in spans[1].get_finished_spans() if s.kind is SpanKind.CLIENT]
        assert client and client[-1].status.status_code is StatusCode.ERROR
        assert client[-1].attributes["error.type"] == "backend_error"


async def test_errors_of_the_server_become_the_kernels(
    mlserver: KServeServer, artifacts: dict[str, Path]
) -> None:
    from kernos.kernel.errors import InvalidInput, NotFound

    for url in (mlserver.http_url, mlserver.grpc_url):
        server = TritonServer(ModelServerConfig(name="s", url=url, models=[MODEL_NAME]))
        try:
            await server.health()
            rows = np.zeros((2, 3), np.float32)
            with pytest.raises(NotFound, match="does not serve hazard-classifier@9"):
                await server.infer(MODEL_NAME, "9", {"features": rows})
            with pytest.raises(InvalidInput, match="takes inputs"):
                await server.infer(MODEL_NAME, "1", {"readings": rows})
        finally:
            await server.close()


async def test_export_writes_the_repository_the_server_serves(
    kernos_settings: Settings, artifacts: dict[str, Path], repository: Path, tmp_path: Path
) -> None:
    kernel = Kernel(kernos_settings, plugins=PluginManager(entry_points=False))
    async with kernel:
        await deploy(kernel, artifacts, "1")
        done = await export_model(kernel.models, MODEL_NAME, None, repository=tmp_path / "r")
    assert done.version == "1" and done.triton_ready
    for name in ("1/model.onnx", "1/model-settings.json", "config.pbtxt"):
        assert filecmp.cmp(tmp_path / "r" / MODEL_NAME / name, repository / MODEL_NAME / name)
    settings = json.loads((tmp_path / "r" / MODEL_NAME / "1" / "model-settings.json").read_text())
    assert settings["parameters"] == {"version": "1", "uri": "./model.onnx"}
    config = (tmp_path / "r" / MODEL_NAME / "config.pbtxt").read_text()
    assert '{ name: "features", data_type: TYPE_FP32, dims: [ -1, 3 ] }' in config


def test_the_export_command_with_its_exit_codes(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    home, repo = tmp_path / "home", tmp_path / "repo"
    work = tmp_path / "work"
    work.mkdir()
    (work / "v1.onnx").write_bytes(artifacts["1"].read_bytes())
    with served_kernel(home) as served:

        def run(*args: str) -> Any:
            return served.kernos("models", *args, cwd=work)

        made = run("register", "v1.onnx", "--name", MODEL_NAME, "--version", "1", "--kind", "onnx")
        assert made.returncode == 0, made.stderr
        ok = run("export", f"{MODEL_NAME}@1", "--repository", str(repo), "--json")
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["files"][0] == str(repo / MODEL_NAME / "1" / "model.onnx")
        text = run("export", MODEL_NAME, "--repository", "repo2")  # relative to the cwd
        assert text.returncode == 0 and "Exported hazard-classifier@1" in text.stdout
        assert (work / "repo2" / MODEL_NAME / "1" / "model.onnx").is_file()
        assert run("export", "nope@1", "--repository", str(repo)).returncode == 2
        (work / "v1.onnx").write_bytes(b"changed")
        damaged = run("export", f"{MODEL_NAME}@1", "--repository", str(tmp_path / "r3"))
        assert damaged.returncode == 1 and "failed verification" in damaged.stderr
        assert not (tmp_path / "r3").exists()
