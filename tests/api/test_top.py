"""``kernos top``: the summary of a real kernel, read over HTTP from ``/metrics``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from kernos.kernel.cli.top import render, summary
from kernos.kernel.exposition import STATES
from kernos.kernel.processes import ProcessState
from kernos.kernel.scrape import parse, quantile
from kernos.kernel.tokens import read_admin_token
from tests.api.test_api import Api, api, free_port, scripted_llm, start_kernel  # api: fixture

__all__ = ["api"]

KERNOS = str(Path(sys.executable).with_name("kernos"))


def _top(home: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNOS_")}
    env.update(KERNOS_HOME=str(home), KERNOS_API_PORT=str(port))
    return subprocess.run(
        [KERNOS, "top", "--once", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_the_exposition_knows_every_process_state() -> None:
    assert tuple(s.value for s in ProcessState) == STATES


async def test_top_once_summarizes_a_running_kernel(kernos_home: Path) -> None:
    port = free_port()
    kernel = await start_kernel(kernos_home, port, llm=scripted_llm())
    try:
        headers = {"Authorization": f"Bearer {read_admin_token(kernos_home)}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as h:
            done = (await h.post("/v1/runs", json={"agent": "calc", "wait": 30})).json()
        assert done["state"] == "done", done
        as_json = await asyncio.to_thread(_top, kernos_home, port, "--json", "--interval", "0")
        as_text = await asyncio.to_thread(_top, kernos_home, port, "--interval", "0")
    finally:
        await kernel.stop()
    assert as_json.returncode == 0, as_json.stderr
    view = json.loads(as_json.stdout)
    assert view["processes"]["done"] == 1 and view["processes"]["running"] == 0
    assert view["syscalls"]["llm.chat"]["count"] == 2
    assert view["syscalls"]["tool.call"]["count"] == 1
    assert 0 < view["syscalls"]["llm.chat"]["p50"] <= view["syscalls"]["llm.chat"]["p99"]
    assert view["syscalls_per_second"] is None  # one scrape: no window to take a rate over
    assert view["tokens"] == {"scripted": {"input": 12, "output": 2}}
    assert as_text.returncode == 0, as_text.stderr
    assert "processes  done 1" in as_text.stdout
    assert "llm.chat" in as_text.stdout and "tool.call" in as_text.stdout


async def test_rates_are_what_happened_between_two_scrapes(api: Api) -> None:
    before = parse((await api.http.get("/metrics")).text)
    created = await api.http.post("/v1/runs", json={"agent": "calc", "wait": 30})
    assert created.json()["state"] == "done", created.text
    after = parse((await api.http.get("/metrics")).text)
    view = summary(after, before, seconds=2.0)
    assert view["syscalls_per_second"] == 1.5  # three syscalls in two seconds
    assert view["syscalls"]["llm.chat"]["per_second"] == 1.0
    assert view["interval_seconds"] == 2.0
    window = after.since(before)
    assert window.syscalls == {"llm.chat": 2.0, "tool.call": 1.0}
    assert "1.5/s" in render(view)
    latency = {
        (s.labels.get("gen_ai_tool_name"), s.labels.get("gen_ai_request_model"))
        for f in text_string_to_metric_families((await api.http.get("/metrics")).text)
        if f.name == "kernos_syscall_duration_seconds"
        for s in f.samples
    }
    assert ("add", None) in latency and (None, "scripted") in latency  # by tool and by model


def test_quantiles_interpolate_inside_a_bucket() -> None:
    buckets = {0.1: 50.0, 0.2: 100.0, float("inf"): 100.0}
    assert quantile(0.5, buckets) == 0.1
    assert abs(quantile(0.75, buckets) - 0.15) < 1e-9
    assert quantile(0.5, {}) == 0.0


def test_backends_show_queue_running_idle_and_breaker() -> None:
    text = (
        "# TYPE kernos_scheduler_queue_depth gauge\n"
        'kernos_scheduler_queue_depth{kernos_backend="vllm"} 3\n'
        "# TYPE kernos_scheduler_inflight gauge\n"
        'kernos_scheduler_inflight{kernos_backend="vllm"} 8\n'
        "# TYPE kernos_scheduler_idle_capacity gauge\n"
        'kernos_scheduler_idle_capacity{kernos_backend="vllm"} 0\n'
        'kernos_scheduler_idle_capacity{kernos_backend="spare"} 4\n'
        "# TYPE kernos_breaker_state gauge\n"
        'kernos_breaker_state{kernos_backend="vllm"} 2\n'
    )
    view = summary(parse(text), None, seconds=None)
    assert view["breakers"] == {"vllm": "open"} and view["idle"] == {"spare": 4, "vllm": 0}
    lines = render(view).splitlines()
    assert lines[-2].split() == ["spare", "0", "0", "4", "closed"]
    assert lines[-1].split() == ["vllm", "3", "8", "0", "open"]
