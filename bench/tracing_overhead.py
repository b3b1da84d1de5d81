"""What Kernos tracing adds to a governed tool call: tracing on against off, same process.

    python bench/tracing_overhead.py [--quick]

The syscall benchmark's loop (``syscall_overhead.py``: a trivial tool called N times from the
node of a real kernel process, every call through the whole pipeline) on two kernels started
side by side in this process, on two temporary homes with default settings:

- **off**: ``Telemetry(tracing=False)`` (``KERNOS_TRACING=false``): no spans; metrics stay.
- **on**: Kernos's tracer with a ``BatchSpanProcessor`` (the processor OTLP export uses) into
  an in-memory exporter, so every span is built, ended, queued and exported.
- **on, no commit spans**: the same, minus the single writer's ``kernos.storage.commit`` span
  (two per governed call here; their durations are also in a metric).

Runs alternate between the two kernels (drift hits both). Measured inside the node around the
loop: CPU of the whole process (``time.process_time``: the batch processor's export thread
counts) and wall, per call; then calls/s with 16 processes released together.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import benchlib
import syscall_overhead as loop

TARGET_ADDED = 0.10  # tracing adds at most 10 % to a governed call


class CountingExporter:
    """An in-memory span exporter that keeps only a count (memory stays flat)."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


@contextlib.asynccontextmanager
async def kernel_with(telemetry: Any) -> AsyncIterator[Any]:
    """A started kernel on a fresh temporary home, with ``telemetry``."""
    from kernos.kernel.kernel import Kernel
    from kernos.kernel.pluginmanager import PluginManager
    from kernos.kernel.settings import load_settings

    for key in list(os.environ):  # the developer's shell must not change what we measure
        if key.startswith(("KERNOS_", "OTEL_")):
            del os.environ[key]
    with tempfile.TemporaryDirectory(prefix="kernos-bench-") as tmp:
        plugins = PluginManager(entry_points=False)
        plugins.add(loop.BenchPlugin(), name="bench-agents")
        kernel = Kernel(
            load_settings(home=Path(tmp) / "home", max_running_processes=4096),
            plugins=plugins,
            telemetry=telemetry,
        )
        await kernel.start()
        await benchlib.load_policy(kernel)
        try:
            yield kernel
        finally:
            await kernel.stop()
            telemetry.shutdown()


async def measure(quick: bool) -> list[str]:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from kernos.kernel.telemetry import Telemetry

    calls = 200 if quick else 500
    reps = 3 if quick else 7
    level, total, tput_reps = 16, 256 if quick else 512, 1 if quick else 5
    exporter = CountingExporter()
    off = Telemetry(tracing=False)
    on = Telemetry(span_processors=[BatchSpanProcessor(exporter)])  # type: ignore[arg-type]
    lean = Telemetry(span_processors=[BatchSpanProcessor(CountingExporter())])  # type: ignore[arg-type]
    bare = loop.bare_graph()
    names = ("off", "on", "lean")
    async with kernel_with(off) as k_off, kernel_with(on) as k_on, kernel_with(lean) as k_lean:
        k_lean.db._writer._tracer = None  # no storage-commit spans
        kernels = {"off": k_off, "on": k_on, "lean": k_lean}
        for kernel in kernels.values():
            await loop.governed_loop(kernel, calls)  # warm-up
        samples: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
        for rep in range(reps):
            order = names[rep % 3 :] + names[: rep % 3]
            for name in order:
                samples[name].append(await loop.governed_loop(kernels[name], calls))
        rates: dict[str, list[float]] = {n: [] for n in names}
        per = total // level
        for rep in range(tput_reps):
            order = names[rep % 3 :] + names[: rep % 3]
            for name in order:
                _, gov, _, _ = await loop.throughput(kernels[name], bare, level, per)
                rates[name].append(gov)
        spans_per_call = exporter.spans / max(1, (reps + 1) * calls + tput_reps * total)

    cpu = {n: benchlib.median(c for c, _ in s) / calls for n, s in samples.items()}
    wall = {n: benchlib.median(w for _, w in s) / calls for n, s in samples.items()}
    rate = {n: benchlib.median(r) for n, r in rates.items()}
    added_cpu = cpu["on"] / cpu["off"] - 1
    added_wall = wall["on"] / wall["off"] - 1
    lost_rate = 1 - rate["on"] / rate["off"]
    lean_cpu = cpu["lean"] / cpu["off"] - 1
    return [
        f"## Tracing overhead: governed tool call, Kernos tracing on vs off "
        f"({calls} calls per loop, median of {reps}; {level} processes × {per} calls for "
        f"calls/s, median of {tput_reps})",
        "",
        *benchlib.table(
            ["tracing", "CPU per call", "wall per call", f"calls/s ({level} processes)"],
            [
                [
                    "off (`KERNOS_TRACING=false`)",
                    loop.ms(cpu["off"]),
                    loop.ms(wall["off"]),
                    f"{rate['off']:,.0f}",
                ],
                [
                    "on (batch processor, in-memory export)",
                    loop.ms(cpu["on"]),
                    loop.ms(wall["on"]),
                    f"{rate['on']:,.0f}",
                ],
                [
                    "added by tracing",
                    f"{added_cpu:+.1%}",
                    f"{added_wall:+.1%}",
                    f"{-lost_rate:+.1%}",
                ],
                [
                    "on, no storage-commit spans",
                    loop.ms(cpu["lean"]),
                    loop.ms(wall["lean"]),
                    f"{rate['lean']:,.0f}",
                ],
                [
                    "added without commit spans",
                    f"{lean_cpu:+.1%}",
                    f"{wall['lean'] / wall['off'] - 1:+.1%}",
                    f"{rate['lean'] / rate['off'] - 1:+.1%}",
                ],
            ],
        ),
        "",
        f"Without commit spans: CPU {benchlib.met(lean_cpu <= TARGET_ADDED)}. "
        f"About {spans_per_call:.1f} spans exported per governed call (syscall, execute_tool, "
        "storage commits). "
        f"Target ≤ {TARGET_ADDED:.0%} added: CPU {benchlib.met(added_cpu <= TARGET_ADDED)}, "
        f"wall {benchlib.met(added_wall <= TARGET_ADDED)}, "
        f"throughput {benchlib.met(lost_rate <= TARGET_ADDED)}.",
        "",
    ]


def main() -> None:
    args = benchlib.parse_args(__doc__ or "")
    lines = asyncio.run(measure(args.quick))
    benchlib.emit([benchlib.machine_line(), "", *lines])


if __name__ == "__main__":
    main()
