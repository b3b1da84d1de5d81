"""The LLM scheduler against direct calls to the same server, in the same run.

    python bench/scheduler.py [--quick] [--base-url URL --model M] [--sim]

Against an OpenAI-compatible server (``--base-url http://host:port/v1 --model M``; without
them, the tiny CPU ``transformers serve --continuous-batching`` of the test suite when
``.venv-llm`` exists, else the in-process ``sim-llm`` backend, or ``--sim`` to ask for it):

* **Overhead**: N = 1, 16, 64 agents, each sending requests back to back (closed loop), once
  as direct async calls (one ``httpx.AsyncClient``, raw ``POST /chat/completions``; with
  sim-llm, the backend called directly) and once through ``LLMScheduler`` with the
  ``openai_compat`` backend (``concurrency`` = 64). Reports output tokens/s of both, the
  ratio (target ≥ 0.9) and the p50 latency added at N = 1 (target ≤ 5 ms). Runs alternate
  direct / scheduler to spread drift; medians over the repeats.
* **Saturation**: 64 agents on a backend with ``concurrency`` 8, half at priority 10 (tenant
  ``hi``), half at priority 0 (tenant ``lo``); p50/p99 queue wait per class (target: high p99
  ≤ 1/5 of low p99) and requests served per agent (none starves: every agent served).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import benchlib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kernos.kernel.clock import SystemClock  # noqa: E402
from kernos.kernel.llm import (  # noqa: E402
    BackendConfig,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    LLMBackend,
)
from kernos.kernel.scheduling import LLMScheduler  # noqa: E402

PROMPT = [{"role": "user", "content": "Plan the route for the bins on Main Street."}]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run, not numbers to quote")
    parser.add_argument("--base-url", help="OpenAI-compatible base URL (http://host:port/v1)")
    parser.add_argument("--model", help="model name on that server")
    parser.add_argument("--tokens", type=int, default=32, help="output tokens per request")
    parser.add_argument("--sim", action="store_true", help="use the in-process sim-llm backend")
    return parser.parse_args()


class Direct:
    """The baseline: raw async calls, no Kernos in between."""

    def __init__(self, base_url: str | None, model: str | None, sim: LLMBackend | None) -> None:
        self._sim = sim
        self._model = model
        self._client: Any = None
        if sim is None:
            import httpx

            self._url = f"{(base_url or '').rstrip('/')}/chat/completions"
            self._client = httpx.AsyncClient(
                timeout=300, limits=httpx.Limits(max_connections=256, max_keepalive_connections=256)
            )

    async def call(self, tokens: int) -> int:
        if self._sim is not None:
            return (
                await self._sim.chat(ChatRequest(messages=PROMPT, max_tokens=tokens))
            ).output_tokens
        body = {"model": self._model, "messages": PROMPT, "max_tokens": tokens}
        response = await self._client.post(self._url, json=body)
        response.raise_for_status()
        return int(response.json()["usage"]["completion_tokens"])

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


class Timed(LLMBackend):
    """Wraps a backend to note when each request was dispatched (for queue waits)."""

    def __init__(self, inner: LLMBackend) -> None:
        super().__init__(inner.config)
        self.inner = inner
        self.dispatched: dict[int, float] = {}

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.dispatched[id(request)] = time.perf_counter()
        return await self.inner.chat(request)

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        return self.inner.stream(request)

    async def models(self) -> list[str]:
        return await self.inner.models()

    async def aclose(self) -> None:
        await self.inner.aclose()


def build_backend(config: BackendConfig, sim: bool) -> LLMBackend:
    if sim:
        from kernos.plugins.sim_llm import SimLLMBackend

        return SimLLMBackend(config.model_copy(update={"kind": "sim-llm", "base_url": None}))
    from kernos.plugins.openai_compat import OpenAICompatBackend

    return OpenAICompatBackend(config)


async def closed_loop(call: Any, agents: int, per_agent: int) -> tuple[float, list[float], int]:
    """``agents`` callers, ``per_agent`` requests each; (seconds, latencies, tokens)."""
    latencies: list[float] = []
    tokens = 0

    async def agent() -> None:
        nonlocal tokens
        for _ in range(per_agent):
            started = time.perf_counter()
            tokens += await call()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(agent() for _ in range(agents)))
    return time.perf_counter() - started, latencies, tokens


async def overhead(
    args: argparse.Namespace, base_url: str | None, model: str | None, sim: bool
) -> list[str]:
    levels = [1, 16] if args.quick else [1, 16, 64]
    repeats = 2 if args.quick else 3
    config = BackendConfig(
        name="main",
        base_url=base_url or "http://unused/v1",
        model=model,
        concurrency=64,
        queue_limit=100_000,
    )
    backend = build_backend(config, sim)
    scheduler = LLMScheduler({"main": backend}, clock=SystemClock())
    direct = Direct(base_url, model, backend if sim else None)
    rows = []
    added_ms = 0.0
    try:
        await closed_loop(lambda: direct.call(args.tokens), 4, 2)  # warm-up (first request pays)
        for n in levels:
            per_agent = (
                max(2, (8 if args.quick else 32) // n) if n > 1 else (10 if args.quick else 40)
            )
            d_rates, k_rates, d_p50, k_p50 = [], [], [], []
            for _ in range(repeats):
                seconds, lat, tokens = await closed_loop(
                    lambda: direct.call(args.tokens), n, per_agent
                )
                d_rates.append(tokens / seconds)
                d_p50.append(benchlib.median(lat))

                async def through(i: int = 0) -> int:
                    request = ChatRequest(messages=PROMPT, model=model, max_tokens=args.tokens)
                    return (
                        await scheduler.chat(request, backend="main", tenant="t", pid=i)
                    ).output_tokens

                seconds, lat, tokens = await closed_loop(through, n, per_agent)
                k_rates.append(tokens / seconds)
                k_p50.append(benchlib.median(lat))
            d, k = benchlib.median(d_rates), benchlib.median(k_rates)
            added = (benchlib.median(k_p50) - benchlib.median(d_p50)) * 1000
            if n == 1:
                added_ms = added
            rows.append(
                (
                    n,
                    f"{d:,.0f}",
                    f"{k:,.0f}",
                    f"{k / d:.2f}",
                    f"{added:+.2f}",
                    benchlib.met(k / d >= 0.9),
                )
            )
    finally:
        await scheduler.aclose()
        await direct.aclose()
    lines = [
        "### Throughput through the scheduler vs direct calls",
        "",
        *benchlib.table(
            ["agents (N)", "direct tok/s", "scheduler tok/s", "ratio", "p50 added (ms)", "≥ 0.9×"],
            rows,
        ),
        "",
        f"p50 added at N = 1: {added_ms:+.2f} ms — target ≤ 5 ms: {benchlib.met(added_ms <= 5.0)}",
    ]
    return lines


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def saturation(
    args: argparse.Namespace, base_url: str | None, model: str | None, sim: bool
) -> list[str]:
    config = BackendConfig(
        name="main",
        base_url=base_url or "http://unused/v1",
        model=model,
        concurrency=8,
        queue_limit=100_000,
    )
    timed = Timed(build_backend(config, sim))
    scheduler = LLMScheduler({"main": timed}, clock=SystemClock())  # default aging
    agents, duration = 64, (5.0 if args.quick else 30.0)
    waits: dict[str, list[float]] = {"high": [], "low": []}
    served = [0] * agents
    stop = time.perf_counter() + duration

    async def agent(i: int) -> None:
        cls, priority = ("high", 10) if i % 2 == 0 else ("low", 0)
        while time.perf_counter() < stop:
            request = ChatRequest(messages=PROMPT, model=model, max_tokens=args.tokens)
            asked = time.perf_counter()
            await scheduler.chat(request, backend="main", priority=priority, tenant=cls, pid=i)
            waits[cls].append(timed.dispatched.pop(id(request)) - asked)
            served[i] += 1

    try:
        await asyncio.gather(*(agent(i) for i in range(agents)))
    finally:
        await scheduler.aclose()
    hi99, lo99 = _pct(waits["high"], 0.99), _pct(waits["low"], 0.99)
    rows = [
        (cls, len(w), f"{_pct(w, 0.5) * 1000:.1f}", f"{_pct(w, 0.99) * 1000:.1f}")
        for cls, w in waits.items()
    ]
    return [
        f"### Saturation: {agents} agents, concurrency 8, two priority classes, {duration:.0f} s",
        "",
        *benchlib.table(["class", "requests", "p50 queue wait (ms)", "p99 queue wait (ms)"], rows),
        "",
        f"high p99 / low p99 = {hi99 / lo99 if lo99 else 0:.3f} — target ≤ 0.2: "
        f"{benchlib.met(lo99 > 0 and hi99 <= lo99 / 5)}",
        f"requests served per agent: min {min(served)}, max {max(served)} — none starves: "
        f"{benchlib.met(min(served) > 0)}",
    ]


@asynccontextmanager
async def target(
    args: argparse.Namespace,
) -> AsyncIterator[tuple[str | None, str | None, bool, str]]:
    if args.base_url:
        yield args.base_url, args.model, False, f"server {args.base_url} (model {args.model})"
        return
    if not args.sim:
        from tests.llm.server import llm_server, venv_problem

        if venv_problem() is None:
            with (
                tempfile.TemporaryDirectory(prefix="kernos-bench-sched-") as tmp,
                llm_server(Path(tmp), continuous_batching=True) as server,
            ):
                label = "transformers serve --continuous-batching (tiny CPU model)"
                yield server.base_url, server.model, False, label
            return
    yield None, "sim", True, "sim-llm (in process; no server: overhead of the scheduler alone)"


async def main() -> None:
    args = parse_args()
    async with target(args) as (base_url, model, sim, label):
        lines = [
            "## LLM scheduler",
            "",
            benchlib.machine_line(),
            f"Target: {label}; {args.tokens} output tokens per request.",
            "",
            *await overhead(args, base_url, model, sim),
            "",
            *await saturation(args, base_url, model, sim),
        ]
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
