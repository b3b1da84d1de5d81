"""LLM backends against a real CPU server, and the simulated backend's fit to it.

    python bench/llm_backends.py [--quick]

Needs ``.venv-llm`` (``scripts/llm_server.sh setup``). Starts ``transformers serve`` on the
tiny random-weight model of the test suite (``tests/llm/build_tiny_model.py``), once without
and once with ``--continuous-batching``, and drives it through ``OpenAICompatBackend`` (one
shared async HTTP client, no thread pool):

* latency of one request against its output tokens (concurrency 1): the fit ``a + b·tokens``;
* tokens per second with 1, 4, 16 and 64 requests in flight (32 output tokens each): the
  batching exponent ``e`` in ``step(n) = b·n**e`` (a batch of n gives ``n**(1-e)`` times the
  tokens per second of one request);
* the same concurrency sweep on ``sim-llm`` with its default timing (fitted to the
  continuous-batching server): the ratio sim / real says how well the defaults still fit.
"""

from __future__ import annotations

import asyncio
import math
import sys
import tempfile
import time
from pathlib import Path

import benchlib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kernos.kernel.llm import BackendConfig, ChatRequest, LLMBackend  # noqa: E402
from kernos.plugins.openai_compat import OpenAICompatBackend  # noqa: E402
from kernos.plugins.sim_llm import SimLLMBackend  # noqa: E402
from tests.llm.server import llm_server, venv_problem  # noqa: E402

TOKENS = 32
PROMPT = [{"role": "user", "content": "Plan the route for the bins on Main Street."}]


async def one(backend: LLMBackend, tokens: int) -> tuple[float, int]:
    started = time.perf_counter()
    answer = await backend.chat(ChatRequest(messages=PROMPT, max_tokens=tokens))
    return time.perf_counter() - started, answer.output_tokens


async def latency_fit(
    backend: LLMBackend, sizes: list[int], runs: int
) -> tuple[float, float, list[tuple[int, float]]]:
    points = []
    for tokens in sizes:
        samples = [(await one(backend, tokens))[0] for _ in range(runs)]
        points.append((tokens, benchlib.median(samples)))
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    b = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum(
        (x - mean_x) ** 2 for x, _ in points
    )
    return mean_y - b * mean_x, b, points


async def throughput(backend: LLMBackend, concurrency: int, rounds: int) -> float:
    """Output tokens per second with ``concurrency`` requests in flight, ``rounds`` each."""

    async def worker() -> int:
        return sum([(await one(backend, TOKENS))[1] for _ in range(rounds)])

    started = time.perf_counter()
    tokens = sum(await asyncio.gather(*(worker() for _ in range(concurrency))))
    return tokens / (time.perf_counter() - started)


def exponent(rates: dict[int, float]) -> float:
    """Least-squares ``e`` in ``rate(n) = rate(1) * n ** (1 - e)``, through the n = 1 point."""
    xs = [math.log(n) for n in rates if n > 1]
    ys = [math.log(rates[n] / rates[1]) for n in rates if n > 1]
    slope = sum(x * y for x, y in zip(xs, ys, strict=True)) / sum(x * x for x in xs)
    return 1 - slope


async def measure(
    backend: LLMBackend, levels: list[int], rounds: int, sizes: list[int], runs: int
) -> dict[str, object]:
    for _ in range(3):  # warm-up (continuous batching compiles and allocates on first use)
        await one(backend, TOKENS)
    a, b, points = await latency_fit(backend, sizes, runs)
    rates = {n: await throughput(backend, n, rounds) for n in levels}
    return {"a": a, "b": b, "points": points, "rates": rates, "e": exponent(rates)}


async def main() -> None:
    args = benchlib.parse_args(__doc__ or "")
    problem = venv_problem()
    if problem:
        sys.exit(problem)
    levels = [1, 4, 16] if args.quick else [1, 4, 16, 64]
    rounds = 2 if args.quick else 4
    sizes = [1, 16, 64] if args.quick else [1, 8, 32, 128]
    runs = 3 if args.quick else 7
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="kernos-bench-llm-") as tmp:
        for label, batching in (
            ("transformers serve", False),
            ("transformers serve --continuous-batching", True),
        ):
            with llm_server(Path(tmp), continuous_batching=batching) as server:
                config = BackendConfig(
                    name="real", base_url=server.base_url, model=server.model, concurrency=128
                )
                backend = OpenAICompatBackend(config)
                try:
                    results[label] = await measure(backend, levels, rounds, sizes, runs)
                finally:
                    await backend.aclose()
    sim = SimLLMBackend(BackendConfig(name="sim", kind="sim-llm", concurrency=128))
    results["sim-llm (defaults)"] = await measure(sim, levels, rounds, sizes, runs)

    real = results["transformers serve --continuous-batching"]["rates"]
    lines = [
        "## LLM backends: a real CPU server and the simulated backend",
        "",
        benchlib.machine_line(),
        "",
        f"Tiny Llama (2 layers, 64 wide, random weights), {TOKENS} output tokens per request in "
        f"the sweep, {rounds} requests per caller; latency medians of {runs}.",
        "",
    ]
    header = [
        "server",
        "a (s)",
        "b (s/token)",
        *[f"tok/s @{n}" for n in levels],
        "batch exponent e",
    ]
    rows = []
    for label, r in results.items():
        rates = r["rates"]
        assert isinstance(rates, dict)
        rows.append(
            [
                label,
                f"{r['a']:.4f}",
                f"{r['b']:.5f}",
                *[f"{rates[n]:,.0f}" for n in levels],
                f"{r['e']:.2f}",
            ]
        )
    lines += benchlib.table(header, rows)
    sim_rates = results["sim-llm (defaults)"]["rates"]
    assert isinstance(real, dict) and isinstance(sim_rates, dict)
    lines += [
        "",
        "sim-llm / continuous-batching server, tokens per second: "
        + ", ".join(f"{sim_rates[n] / real[n]:.2f}× @{n}" for n in levels),
    ]
    benchlib.emit(lines)


if __name__ == "__main__":
    asyncio.run(main())
