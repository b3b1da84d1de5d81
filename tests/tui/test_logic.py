"""The console's plain logic: quantiles from histogram buckets, completion, formatting."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kernos.tui.formatting import age, matches, process_cells
from kernos.tui.metrics import MetricsHistory, parse, quantile
from kernos.tui.slash import COMMANDS, completions, help_lines

EXPOSITION = """\
# HELP kernos_syscall_duration_seconds Syscall latency.
# TYPE kernos_syscall_duration_seconds histogram
kernos_syscall_duration_seconds_bucket{kind="llm.chat",le="0.01"} {a}
kernos_syscall_duration_seconds_bucket{kind="llm.chat",le="0.1"} {b}
kernos_syscall_duration_seconds_bucket{kind="llm.chat",le="+Inf"} {c}
kernos_syscall_duration_seconds_count{kind="llm.chat"} {c}
kernos_syscall_duration_seconds_sum{kind="llm.chat"} 1.0
# HELP kernos_syscalls_total Syscalls.
# TYPE kernos_syscalls_total counter
kernos_syscalls_total{kind="llm.chat"} {c}
# HELP kernos_scheduler_queue_depth Queued.
# TYPE kernos_scheduler_queue_depth gauge
kernos_scheduler_queue_depth{backend="a"} 3
kernos_scheduler_queue_depth{backend="b"} 4
# HELP gen_ai_client_token_usage Tokens.
# TYPE gen_ai_client_token_usage histogram
gen_ai_client_token_usage_bucket{gen_ai_request_model="m",le="+Inf"} 1
gen_ai_client_token_usage_count{gen_ai_request_model="m"} 1
gen_ai_client_token_usage_sum{gen_ai_request_model="m"} {t}
"""


def exposition(a: int, b: int, c: int, t: int) -> str:
    return (
        EXPOSITION.replace("{a}", str(a))
        .replace("{b}", str(b))
        .replace("{c}", str(c))
        .replace("{t}", str(t))
    )


def test_quantiles_interpolate_inside_buckets_like_prometheus() -> None:
    buckets = {0.01: 50.0, 0.1: 90.0, float("inf"): 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.01)
    assert quantile(0.7, buckets) == pytest.approx(0.01 + 0.09 * 0.5)
    assert quantile(0.99, buckets) == pytest.approx(0.1)  # past the last finite bound
    assert quantile(0.5, {}) == 0.0
    assert quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) == 0.0


def test_history_turns_scrapes_into_windows_and_rates() -> None:
    history = MetricsHistory()
    history.add(parse(exposition(10, 10, 10, 100)), at=0.0)
    assert list(history.queue_depth) == [7.0] and not history.p50  # a baseline only
    history.add(parse(exposition(10, 30, 30, 160)), at=2.0)
    # The 20 new observations all fell between 10 ms and 100 ms.
    assert history.p50[-1] == pytest.approx(0.055)
    assert history.throughput[-1] == pytest.approx(10.0)
    assert list(history.tokens["m"]) == [60.0]


def test_completion_of_commands_agents_and_approvals() -> None:
    assert completions("/", agents=[], approvals=[]) == [f"/{c.name}" for c in COMMANDS]
    assert completions("/sp", agents=[], approvals=[]) == ["/spawn"]
    assert completions("/spawn gr", agents=["dispatcher", "greeter"], approvals=[]) == [
        "/spawn greeter"
    ]
    assert completions("/deny 3f", agents=[], approvals=["3fa1", "9b2c"]) == ["/deny 3fa1"]
    assert completions("hello", agents=["a"], approvals=[]) == []
    assert all(line.startswith("/") for line in help_lines())


def test_rows_ages_and_filters() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    process = {
        "pid": 7,
        "agent": "dispatcher",
        "tenant": "city",
        "owner": "ops",
        "state": "waiting",
        "waiting_on": "human",
        "priority": 5,
        "usage": {"input_tokens": 10, "output_tokens": 5, "cost": 0.25},
        "created_at": "2026-01-01T11:00:00+00:00",
    }
    assert process_cells(process, now) == (
        "7",
        "dispatcher",
        "city",
        "waiting(human)",
        "5",
        "15",
        "0.2500",
        "1h",
    )
    assert age("2026-01-01T11:59:58", now) == "2s" and age(None, now) == "-"
    assert matches(process, "DISPATCH human") and not matches(process, "greeter")
