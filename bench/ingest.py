"""Event ingest: committing batches of 10,000 events (the most ``POST /v1/events`` accepts).

    python bench/ingest.py [--quick]

On a started kernel (the 410-line policy, the audit chain) with one subscriber, each sample
publishes a batch of new events with ``events.publish_many`` — what the route calls after
validating — and times it until committed; then the same batch again (all duplicates: one
look-up, nothing written). Between samples the kernel drains its deliveries, so a sample never
competes with the previous one's. Medians of 5 (2 with ``--quick``, batches of 2,000).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import benchlib


async def measure(quick: bool) -> list[str]:
    from kernos.kernel.events import Event

    size = 2_000 if quick else 10_000
    samples = 2 if quick else 5
    fresh: list[float] = []
    again: list[float] = []
    async with benchlib.temp_kernel(object(), name="bench-none") as kernel:
        delivered = 0

        async def sink(event: Any) -> None:
            nonlocal delivered
            delivered += 1

        kernel.events.subscribe("sensor.#", sink, name="sink")
        for sample in range(samples):
            batch = [
                Event(
                    id=f"s{sample}-{i}",
                    topic="sensor.bin.fill",
                    tenant="default",
                    source="default/edge-forwarder",
                    data={"bin": i, "level": 0.5, "temp_c": 21.5, "voc_ppm": 1.0, "ts": 60.0},
                )
                for i in range(size)
            ]
            started = time.perf_counter()
            await kernel.events.publish_many(batch)
            fresh.append(time.perf_counter() - started)
            await kernel.events.drain()
            started = time.perf_counter()
            await kernel.events.publish_many(batch)
            again.append(time.perf_counter() - started)
        total = samples * size
    new_s, dup_s = benchlib.median(fresh), benchlib.median(again)
    return [
        f"## Event ingest: batches of {size:,} events (median of {samples})",
        "",
        *benchlib.table(
            ["batch", "commit time", "events/s"],
            [
                [
                    "new events (event + delivery + audit record each)",
                    f"{new_s:.2f} s",
                    f"{size / new_s:,.0f}",
                ],
                ["the same batch again (duplicates)", f"{dup_s:.2f} s", f"{size / dup_s:,.0f}"],
            ],
        ),
        "",
        f"Delivered to the subscriber: {delivered:,} of {total:,} (each once).",
        "",
    ]


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="batches of 2,000: a smoke run")
    args = parser.parse_args()
    lines = asyncio.run(measure(args.quick))
    benchlib.emit([benchlib.machine_line(), "", *lines])


if __name__ == "__main__":
    main()
