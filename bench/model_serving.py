"""Model serving: the hazard classifier on a real KServe v2 server against local onnxruntime.

    python bench/model_serving.py [--quick]

Needs ``.venv-kserve`` (``scripts/kserve_server.sh setup``). Trains the hazard classifier
(simulated city), registers it in a kernel on a temporary home, exports it with
``export_model`` and serves the repository with MLServer 1.7.1 (the tests' ONNX runtime, one
process, no worker pool). One request is a 300-row batch (the dispatcher's 300 bins), sent
one at a time; each figure is the median (and p95) of N calls after 10 warm-up calls:

* baseline: ``InferenceSession.run`` in this process (what the model itself costs);
* the kernel's ``ModelRuntime.infer`` in-process (registry routing, stats, a thread hop);
* ``TritonServer.infer`` straight to the server, over HTTP (JSON) and gRPC;
* the kernel's ``ModelRuntime.infer`` routed to that server (what the hazard tool pays).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import benchlib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from kernos.kernel.identity import PrincipalKind  # noqa: E402
from kernos.kernel.kernel import Kernel  # noqa: E402
from kernos.kernel.model_export import export_model  # noqa: E402
from kernos.kernel.model_records import ModelKind  # noqa: E402
from kernos.kernel.model_servers import ModelServerConfig  # noqa: E402
from kernos.kernel.pluginmanager import PluginManager  # noqa: E402
from kernos.kernel.settings import load_settings  # noqa: E402
from kernos.plugins.hazard import MODEL_NAME  # noqa: E402
from kernos.plugins.hazard.train import train  # noqa: E402
from kernos.plugins.triton_server import TritonServer  # noqa: E402
from tests.kserve.server import kserve_server, venv_problem  # noqa: E402

ROWS = 300
WARMUP = 10


async def timed(call: Callable[[], Awaitable[Any]], n: int) -> tuple[float, float]:
    """Median and p95 of ``n`` sequential calls, in milliseconds."""
    for _ in range(WARMUP):
        await call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


async def run(n: int, tmp: Path) -> list[list[str]]:
    model = tmp / "hazard.onnx"
    await asyncio.to_thread(train, model, seed=1, days=10)
    rng = np.random.default_rng(0)
    features = np.column_stack(
        [rng.uniform(0.05, 0.95, ROWS), rng.normal(20, 12, ROWS), abs(rng.normal(10, 20, ROWS))]
    ).astype(np.float32)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])

    async def onnxruntime_direct() -> Any:
        return session.run(None, {"features": features})

    settings = load_settings(home=tmp / "home")
    results: dict[str, tuple[float, float]] = {}
    results["onnxruntime, in this process (baseline)"] = await timed(onnxruntime_direct, n)
    kernel = Kernel(settings, plugins=PluginManager(entry_points=False))
    async with kernel:
        by = await kernel.identity.ensure_principal("default", "bench", kind=PrincipalKind.PERSON)
        await kernel.models.register(
            model, name=MODEL_NAME, version="1", registered_by=by, kind=ModelKind.ONNX
        )
        await kernel.models.promote(f"{MODEL_NAME}@1", "live", by=by)
        await export_model(kernel.models, MODEL_NAME, "1", repository=tmp / "repo")
        inputs = {"features": features}
        results["kernel ModelRuntime, in-process"] = await timed(
            lambda: kernel.model_runtime.infer(MODEL_NAME, inputs, key="k"), n
        )
    with kserve_server(tmp / "repo", tmp) as server:
        for protocol, url in (("HTTP", server.http_url), ("gRPC", server.grpc_url)):
            config = ModelServerConfig(name="kserve", url=url, models=[MODEL_NAME])
            client = TritonServer(config)
            try:
                results[f"TritonServer.infer → MLServer, {protocol}"] = await timed(
                    lambda c=client: c.infer(MODEL_NAME, "1", {"features": features}), n
                )
            finally:
                await client.close()
            remote = Kernel(
                settings.model_copy(update={"model_servers": [config]}),
                plugins=PluginManager(entry_points=False),
            )
            async with remote:
                results[f"kernel ModelRuntime → MLServer, {protocol}"] = await timed(
                    lambda k=remote: k.model_runtime.infer(MODEL_NAME, inputs, key="k"), n
                )
    base = results["onnxruntime, in this process (baseline)"][0]
    kernel_local = results["kernel ModelRuntime, in-process"][0]
    return [
        [name, f"{p50:.2f} ms", f"{p95:.2f} ms", f"{p50 / base:.0f}x", f"{p50 / kernel_local:.1f}x"]
        for name, (p50, p95) in results.items()
    ]


def main() -> None:
    args = benchlib.parse_args(__doc__ or "")
    problem = venv_problem()
    if problem:
        sys.exit(problem)
    n = 30 if args.quick else 300
    with tempfile.TemporaryDirectory(prefix="kernos-bench-") as tmp:
        rows = asyncio.run(run(n, Path(tmp)))
    benchlib.emit(
        [
            f"## Model serving: hazard classifier, {ROWS}-row batch, sequential (median of {n})",
            "",
            *benchlib.table(
                ["path", "median", "p95", "vs onnxruntime", "vs kernel in-process"], rows
            ),
            "",
            benchlib.machine_line(),
        ]
    )


if __name__ == "__main__":
    main()
