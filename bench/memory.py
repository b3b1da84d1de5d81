"""Long-term memory: embed and insert 10,000 short documents, then query at 10,000.

    python bench/memory.py [--quick]

On a started kernel (embedded Chroma in a temporary home, the offline MiniLM model, the
410-line policy, the audit chain): the documents go in through ``memory.put_as`` — what
``POST /v1/memory/{collection}`` calls — in requests of 1,000 (the API's most), each
authorized and audited; throughput is documents over the whole wall time. Then queries
through ``memory.search_as`` (authorized, audited: two audit commits each) and through the
service alone, latency per query. Baseline in the same run: the same model with every input
padded to 256 tokens, the way Chroma's own ONNX embedding function does it.
Targets (issue 9): at least 200 documents/s; query p99 at most 50 ms at 10,000 documents.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time

import benchlib

STREETS = ["Elm", "Harbour", "Mill", "Station", "Church", "Market", "Bridge", "Park", "Castle"]
THINGS = ["bin", "streetlight", "bench", "hydrant", "drain", "bus shelter", "tree", "sign"]
STATES = [
    "is overflowing",
    "flickers after dark",
    "was vandalised overnight",
    "is blocked by leaves",
    "needs a new coat of paint",
    "leans dangerously",
    "was reported broken twice",
    "smells of sewage",
]
QUERIES = [
    "which rubbish containers are too full?",
    "lamps that blink at night",
    "damaged public furniture",
    "flooding because gutters are clogged",
    "anything that might fall over",
]


def documents(count: int, seed: int = 7) -> list[str]:
    """Short city-ops notes, 10 to 20 words each."""
    rng = random.Random(seed)
    return [
        f"The {rng.choice(THINGS)} on {rng.choice(STREETS)} Street number {rng.randint(1, 300)} "
        f"{rng.choice(STATES)}, reported by crew {rng.randint(1, 40)} on day {i % 365}."
        for i in range(count)
    ]


def padded_baseline(texts: list[str]) -> float:
    """Seconds to embed ``texts`` padded to 256 tokens (Chroma's default function's way)."""
    import numpy as np

    from kernos.memory.minilm import TOKENIZER_PATH, MiniLMEmbedder, default_model_path

    embedder = MiniLMEmbedder(default_model_path(), TOKENIZER_PATH)
    session, tokenizer = embedder._load()
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]", length=256)
    started = time.perf_counter()
    for start in range(0, len(texts), 32):
        encoded = tokenizer.encode_batch(texts[start : start + 32])
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": 0 * ids})
    return time.perf_counter() - started


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def measure(quick: bool) -> list[str]:
    from kernos.kernel.memory import MemoryScope
    from kernos.memory.minilm import TOKENIZER_PATH, MiniLMEmbedder, default_model_path

    size = 2_000 if quick else 10_000
    queries = 50 if quick else 300
    texts = documents(size)
    embedder = MiniLMEmbedder(default_model_path(), TOKENIZER_PATH)
    embedder.embed(texts[:64])  # load the model outside the timings
    sample = texts[: 256 if quick else 1024]
    started = time.perf_counter()
    embedder.embed(sample)
    dynamic_s = time.perf_counter() - started
    padded_s = padded_baseline(sample)
    async with benchlib.temp_kernel(object(), name="bench-none") as kernel:
        admin = benchlib.admin()
        await kernel.memory.search_as(admin, "warmup", "load the model")
        started = time.perf_counter()
        for start in range(0, size, 1000):
            await kernel.memory.put_as(admin, "city", texts[start : start + 1000])
        insert_s = time.perf_counter() - started
        scope = MemoryScope(tenant="default", collection="city")
        assert await kernel.memory.count(scope) == size
        governed: list[float] = []
        raw: list[float] = []
        for i in range(queries):
            query = f"{QUERIES[i % len(QUERIES)]} ({STREETS[i % len(STREETS)]} Street)"
            started = time.perf_counter()
            await kernel.memory.search_as(admin, "city", query, limit=5)
            governed.append(time.perf_counter() - started)
            started = time.perf_counter()
            await kernel.memory.search(scope, query, limit=5)
            raw.append(time.perf_counter() - started)
    rate = size / insert_s
    p99 = percentile(governed, 0.99) * 1000
    ms = 1000.0
    return [
        f"## Long-term memory: {size:,} short documents (MiniLM int8 ONNX, embedded Chroma)",
        "",
        *benchlib.table(
            ["measure", "value", "target"],
            [
                [
                    f"embed + insert {size:,} documents (put_as, 1,000 per request)",
                    f"{insert_s:.1f} s = {rate:,.0f} documents/s",
                    f"≥ 200/s {benchlib.met(rate >= 200)}",
                ],
                [
                    f"query at {size:,}, governed (search_as: authorize + 2 audit commits)",
                    f"p50 {statistics.median(governed) * ms:.1f} ms, p99 {p99:.1f} ms",
                    f"p99 ≤ 50 ms {benchlib.met(p99 <= 50)}",
                ],
                [
                    f"query at {size:,}, the service alone (embed + Chroma)",
                    f"p50 {statistics.median(raw) * ms:.1f} ms, "
                    f"p99 {percentile(raw, 0.99) * ms:.1f} ms",
                    "",
                ],
            ],
        ),
        "",
        *benchlib.table(
            ["embedding only, the same documents", "documents/s", "ratio"],
            [
                [
                    "padded to the longest of each batch (ours)",
                    f"{len(sample) / dynamic_s:,.0f}",
                    f"{padded_s / dynamic_s:.1f}×",
                ],
                [
                    "padded to 256 tokens (Chroma's default function)",
                    f"{len(sample) / padded_s:,.0f}",
                    "1.0×",
                ],
            ],
        ),
        "",
        f"Queries: {queries}, each 5 nearest; documents 10–20 words. Peak RSS "
        f"{benchlib.peak_rss_mib():,.0f} MiB.",
        "",
    ]


def main() -> None:
    args = benchlib.parse_args(__doc__ or "")
    lines = asyncio.run(measure(args.quick))
    benchlib.emit([benchlib.machine_line(), "", *lines])


if __name__ == "__main__":
    main()
